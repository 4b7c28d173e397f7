"""``phi-exchange-admin placement``: every exchange account's quota use, where a new customer
fits, and recording that choice in its registry file. Offline: reads the registry and the
accounts file, never AWS. The counting rules are :mod:`phi_core.placement`'s, the same the
app checks at synth."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from phi_core import placement
from stacks.config import CustomerConfig

NEAR = 0.8  # a quota at 80% of its limit is shown as "near": time to request an increase


def accounts_for(registry: Path, given: Path | None) -> placement.Accounts:
    """``--accounts FILE`` (it must exist), else ``accounts.toml`` next to the registry, else
    the one implicit account (as the app decides at synth)."""
    path = given or registry.parent / placement.ACCOUNTS_FILE
    if given is not None or path.exists():
        return placement.load_accounts(path)
    return placement.Accounts.implicit()


def survey(customers: Mapping[str, CustomerConfig], accounts: placement.Accounts,
           *, leave_out: str | None = None) -> placement.Placement:
    """Every customer but ``leave_out``, placed and counted."""
    return placement.evaluate(
        (c.placed for slug, c in customers.items() if slug != leave_out), accounts)


def render(report: placement.Placement) -> str:
    lines = []
    accounts = report.accounts
    if accounts.log_archive is not None:
        lines.append(f"log archive: {accounts.log_archive.described}: holds every exchange "
                     "account's evidence (LogArchiveStack)")
    for account in accounts.exchange:
        placed = sorted(s for s, label in report.where.items() if label == account.label)
        lines.append(f"{account.described}: {len(placed)} customer"
                     f"{'s' if len(placed) != 1 else ''}")
        for u in report.usage:
            if u.account is not account or u.used == 0:
                continue
            share = u.used / u.limit if u.limit else 1.0
            state = "OVER" if u.over else "near" if share >= NEAR else ""
            lines.append(f"  {u.quota.title:<62} {u.used:>7,} / {u.limit:<9,} {share:>4.0%}"
                         f" {state}".rstrip())
    return "\n".join(lines)


def as_json(report: placement.Placement) -> dict[str, Any]:
    return {
        "accounts": [
            {"label": a.label, "account_id": a.account_id, "region": a.region,
             "customers": sorted(s for s, label in report.where.items() if label == a.label)}
            for a in report.accounts.exchange],
        "usage": [
            {"quota": u.quota.key, "title": u.quota.title,
             "accounts": [u.account.label], "used": u.used, "limit": u.limit,
             "over": u.over}
            for u in report.usage],
        "problems": [*report.unplaced, *report.exceeded],
    }


def propose_for(customer: CustomerConfig, customers: Mapping[str, CustomerConfig],
                accounts: placement.Accounts) -> str | None:
    """The exchange account where ``customer`` fits best, counting everyone else."""
    report = survey(customers, accounts, leave_out=customer.slug)
    return placement.propose(accounts, report.usage, customer.placed.footprint)


_SLUG_LINE = re.compile(r"^slug\s*=.*$", re.MULTILINE)


def record(path: Path, label: str) -> None:
    """Write ``account = "<label>"`` into a customer file, after its slug line, keeping
    everything else as written (comments included). The result is parsed back before it
    replaces the file, so a file this cannot edit safely is left as it was."""
    text = path.read_text(encoding="utf-8")
    match = _SLUG_LINE.search(text)
    if match is None:
        raise ValueError(f"{path}: slug: no top-level 'slug = ...' line to put the account after")
    edited = text[:match.end()] + f'\naccount = "{label}"' + text[match.end():]
    try:
        if tomllib.loads(edited).get("account") != label:
            raise ValueError
    except (tomllib.TOMLDecodeError, ValueError):
        raise ValueError(f"{path}: account: could not be added safely; add "
                         f'account = "{label}" after the slug line by hand') from None
    tmp = path.with_name(f".{path.name}.placement")
    tmp.write_text(edited, encoding="utf-8")
    os.replace(tmp, path)
