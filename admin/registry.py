"""The operator commands' one way to find the registry and a customer in it.

The registry is, in order: ``--registry DIR``; the ``PHI_EXCHANGE_REGISTRY`` environment
variable; the ``customers/`` folder of the project this package was installed from (so the
commands work from any directory). A command about one customer works while another
customer's file is broken: the broken file is named in a warning on stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from stacks.config import CustomerConfig, RegistryError, load_one_customer, read_registry

REGISTRY_ENV = "PHI_EXCHANGE_REGISTRY"
PROJECT_REGISTRY = Path(__file__).resolve().parents[1] / "customers"


def registry_dir(given: str | None) -> Path:
    """Where the registry is (see the module docstring)."""
    if given:
        return Path(given)
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    return PROJECT_REGISTRY


def registered_customer(given: str | None, slug: str, *, error: type[Exception],
                        prog: str = "phi-exchange-admin") -> CustomerConfig:
    """The customer ``slug``; warnings about other customers' broken files on stderr; its own
    problems, or an unknown slug, raise ``error`` with one line each."""
    directory = registry_dir(given)
    try:
        customer, warnings = load_one_customer(directory, slug, option="SLUG")
    except RegistryError as err:
        raise error("; ".join(err.problems) + _where(directory)) from None
    for warning in warnings:
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    return customer


def healthy_customers(given: str | None, *,
                      prog: str = "phi-exchange-admin") -> dict[str, CustomerConfig]:
    """Every healthy customer; each problem of a broken file as a warning on stderr (a report
    about the others is still worth having)."""
    directory = registry_dir(given)
    read = read_registry(directory)
    for problem in read.problems:
        print(f"{prog}: warning: {problem} (this file is skipped)", file=sys.stderr)
    return read.customers


def _where(directory: Path) -> str:
    if (directory / ".").exists():
        return ""
    return (f" (no registry at {directory}: pass --registry DIR or set {REGISTRY_ENV})")
