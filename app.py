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
``audit_retention_days``, ``audit_lock_mode`` and ``security_contacts`` (cdk.json);
``synth_processes`` (``-c customer=all`` and ``-c pipeline=1``: how many processes
synthesize the customers, or the pipelines; default one per core once each has 40 customers,
or a pipeline; 1: one process).

Every synth fails on a template over CloudFormation's 1 MB, and on one the CDK's CloudFormation
template validation (resource schemas and the CDK's deploy rules; cdk.json's
``@aws-cdk/core:validateAgainstDefaultRules`` makes its errors fail synth) refuses. That
validation costs a quarter of a bulk synth, so it runs where a template is new: one customer's
synth (what ``cdk deploy CustomerStack -c customer=<slug>`` deploys), the account stacks', and
``make test``, which synthesizes every registry customer and every template shape with it;
``-c customer=all`` and ``-c pipeline=1`` synthesize those same shapes again, and skip it
unless ``-c template_validation=all`` (the pipeline's synth step sets it: what it deploys is
validated; it has time to spare).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from phi_core import placement
from stacks import assembly_shards, policy_limits
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
        # The cores this process may run on (a container's limit, not the host's count).
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count() or 1)
        requested = _positive_int(context, "synth_processes")
        validate_all = _validate_all(context)
        if context.try_get_context("pipeline"):  # the pipelines, holding every account's stage
            registry = load_registry(registry_dir)
            where, _ = placement.check((c.placed for c in registry.values()), accounts)
            customers = list(registry.values())
            numbers = list(range(1, accounts.pipelines + 1))
            return _synth_in_shards(
                numbers, assembly_shards.shard_count(len(numbers), cores, requested, per_shard=1),
                lambda run, _first, outdir: build_pipeline_app(
                    customers, where, audit_settings=audit, numbers=run, outdir=outdir,
                    template_validation=validate_all))
        if not slug:
            registered = read_registry(registry_dir).customers
            print("note: no -c customer=<slug|all>: synthesizing the account stacks only; "
                  f"registered customers: {', '.join(sorted(registered))}", file=sys.stderr)
            app = build_app([], audit_settings=audit, accounts=accounts)
        elif slug == "all":  # every customer: one broken file stops synth (and CI)
            registry = load_registry(registry_dir)
            where, _ = placement.check((c.placed for c in registry.values()), accounts)
            customers = list(registry.values())
            return _synth_in_shards(
                customers, assembly_shards.shard_count(len(customers), cores, requested),
                lambda run, first, outdir: build_app(
                    run, audit_settings=audit, all_customers=True, placement=where,
                    account_stacks=first, outdir=outdir, template_validation=validate_all))
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
    return _synth(app)


SHARD_ENV = "PHI_EXCHANGE_SYNTH_SHARD"  # "<index>/<count>": this process synthesizes one shard


def _synth(app: cdk.App) -> int:
    oversized = policy_limits.oversized_templates(app.synth())
    if oversized:
        print(f"error: {RegistryError(oversized, subject='synthesized templates')}",
              file=sys.stderr)
        return 1
    return 0


def _synth_in_shards(units: list[Any], count: int,
                     build: Callable[[list[Any], bool, str | None], cdk.App]) -> int:
    """Synthesize ``build(run, first, outdir)`` for ``units`` (customers, or pipeline numbers)
    split into ``count`` runs, each in its own process (:mod:`stacks.assembly_shards`): the
    other runs start first, each an ``app.py`` of its own writing to a directory inside the
    output; this process builds the first run (``first``: with the account stacks)
    meanwhile, then joins theirs. Every run is finished before the synth fails, so every
    run's problems are printed (each process prints its own), and a process that ends
    without saying why (a signal, the OOM killer) is named."""
    if SHARD_ENV in os.environ:  # this process is one of the other runs
        index, of = (int(n) for n in os.environ[SHARD_ENV].split("/"))
        return _synth(build(assembly_shards.split(units, of)[index], False, None))
    if count == 1:
        return _synth(build(units, True, None))
    outdir = Path(os.environ.get("CDK_OUTDIR") or tempfile.mkdtemp(prefix="cdk.out"))
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in outdir.glob(".shard-*"):  # an interrupted synth's
        shutil.rmtree(stale, ignore_errors=True)
    shard_dirs = [outdir / f".shard-{index}" for index in range(1, count)]
    workers = [subprocess.Popen(  # noqa: S603 - this same script, by our own interpreter
        [sys.executable, *sys.argv],
        env={**os.environ, SHARD_ENV: f"{index}/{count}", "CDK_OUTDIR": str(directory)})
        for index, directory in enumerate(shard_dirs, start=1)]
    try:
        try:
            status = _synth(build(assembly_shards.split(units, count)[0], True, str(outdir)))
        except (RegistryError, placement.PlacementError) as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
        for index, worker in enumerate(workers, start=1):
            code = worker.wait()
            if code < 0:
                print(f"error: synth process {index + 1} of {count} was stopped by signal "
                      f"{-code}", file=sys.stderr)
            status = status or code
        if status:
            return 1
        assembly_shards.join(outdir, shard_dirs)
        return 0
    except assembly_shards.ShardError as err:
        print(f"error: synth in {count} processes: {err}", file=sys.stderr)
        return 1
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for directory in shard_dirs:  # a failed shard's partial output
            shutil.rmtree(directory, ignore_errors=True)


def _validate_all(context: Any) -> bool:
    """``-c template_validation=all``: the bulk synths validate every template too (the
    pipeline's synth step does, for the templates it deploys)."""
    value = context.try_get_context("template_validation")
    if value is None:
        return False
    if value != "all":
        raise RegistryError([f"-c template_validation={value}: the only value is 'all' "
                             "(validate every template of -c customer=all or -c pipeline=1)"],
                            subject="context")
    return True


def _positive_int(context: Any, key: str) -> int | None:
    value = context.try_get_context(key)
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise RegistryError([f"-c {key}={value}: must be a whole number, 1 or more"],
                            subject="context")
    return number


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
