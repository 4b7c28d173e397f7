#!/usr/bin/env python3
"""CDK entry point: the only place that reads the outside world.

    cdk synth CustomerStack -c customer=acme     # one customer (stack PhiExchange-acme)
    cdk synth --all -c customer=all              # every registered customer, one stage each

Context: ``customer`` (a registered slug, or ``all``); ``registry`` (default ``customers``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk

from stacks.app_builder import build_customer_app
from stacks.config import RegistryError, load_registry, select_customer


def main() -> int:
    # A throwaway App reads the context the CLI passes (-c key=value and cdk.json).
    context_reader = cdk.App()
    slug = context_reader.node.try_get_context("customer")
    registry_dir = Path(context_reader.node.try_get_context("registry") or "customers")
    try:
        registry = load_registry(registry_dir)
        if not slug:
            known = ", ".join(sorted(registry))
            raise RegistryError([f"-c customer=<slug>: customer: required; registered "
                                 f"customers: {known} (or 'all')"])
        if slug == "all":
            app = build_customer_app(list(registry.values()), all_customers=True)
        else:
            app = build_customer_app([select_customer(registry, slug)])
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
