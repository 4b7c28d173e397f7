#!/usr/bin/env python3
"""CDK entry point: the only place that reads the outside world.

    cdk deploy AuditStack                          # once per account and region, first
    cdk synth  CustomerStack -c customer=acme      # one customer (stack PhiExchange-acme)
    cdk synth  -c customer=all                     # every registered customer, one stage each
    cdk deploy PipelineStack -c pipeline=1         # the pipeline (accounts.toml's [pipeline])

Context: ``customer`` (a registered slug, or ``all``; absent: the account stacks alone);
``pipeline`` (set: the CDK pipeline and every account's stage instead);
``registry`` (default ``customers``); ``accounts`` (default ``accounts.toml`` next to the
registry; absent: every customer goes to the deploying credentials' account);
``audit_retention_days``, ``audit_lock_mode`` and ``security_contacts`` (cdk.json).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from phi_core import placement
from stacks import policy_limits
from stacks.app_builder import build_app, build_pipeline_app
from stacks.config import (
    RegistryError,
    load_registry,
    one_customer,
    parse_audit_settings,
    read_registry,
)


def main() -> int:
    # A throwaway App reads the context the CLI passes (-c key=value and cdk.json).
    context = cdk.App().node
    slug = context.try_get_context("customer")
    registry_dir = Path(context.try_get_context("registry") or "customers")
    try:
        audit = parse_audit_settings({
            key: value for key in ("audit_retention_days", "audit_lock_mode", "security_contacts")
            if (value := context.try_get_context(key)) is not None
        })
        accounts = _accounts(context, registry_dir)
        if context.try_get_context("pipeline"):  # the pipeline, holding every account's stage
            registry = load_registry(registry_dir)
            where, _ = placement.check((c.placed for c in registry.values()), accounts)
            app = build_pipeline_app(list(registry.values()), where, audit_settings=audit)
        elif not slug:
            registered = read_registry(registry_dir).customers
            print("note: no -c customer=<slug|all>: synthesizing the account stacks only; "
                  f"registered customers: {', '.join(sorted(registered))}", file=sys.stderr)
            app = build_app([], audit_settings=audit, accounts=accounts)
        elif slug == "all":  # every customer: one broken file stops synth (and CI)
            registry = load_registry(registry_dir)
            where, _ = placement.check((c.placed for c in registry.values()), accounts)
            app = build_app(list(registry.values()), audit_settings=audit, all_customers=True,
                            placement=where)
        else:  # one customer: another customer's broken file is only a warning
            read = read_registry(registry_dir)
            customer, warnings = one_customer(read, slug, option="-c customer")
            where, others = placement.check((c.placed for c in read.customers.values()),
                                            accounts, only=slug)
            for warning in [*warnings, *others]:
                print(f"warning: {warning}", file=sys.stderr)
            app = build_app([customer], audit_settings=audit, placement=where)
    except (RegistryError, placement.PlacementError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    oversized = policy_limits.oversized_templates(app.synth())
    if oversized:
        print(f"error: {RegistryError(oversized, subject='synthesized templates')}",
              file=sys.stderr)
        return 1
    return 0


def _accounts(context: Any, registry_dir: Path) -> placement.Accounts:
    """The accounts file named by ``-c accounts=...`` (it must exist), else ``accounts.toml``
    next to the registry if there is one, else the one implicit account."""
    given = context.try_get_context("accounts")
    path = Path(given) if given else registry_dir.parent / placement.ACCOUNTS_FILE
    if given or path.exists():
        return placement.load_accounts(path)
    return placement.Accounts.implicit()


if __name__ == "__main__":
    sys.exit(main())
