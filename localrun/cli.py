"""``python -m localrun up | down | status | env``.

    up      start the emulator, deploy the access, audit and customer stacks with the real
            CDK CLI (the last two through the account's deployment roles), check them, run
            the partner round trip (as the partner, in its access mode), the importer (as
            the importer role, each upload scanned and receipted), the malware gate (the
            EICAR test file stopped), the inbound-originals check, a key rotation (iam-user)
            and custody from the trail, print a summary. The emulator keeps running
            afterwards (also after a failure, for inspection) until ``down``.
    down    stop the emulator and remove the run directory.
    status  say whether an emulator is running and what the last run did.
    env     print ``export`` lines that point a shell (aws CLI, boto3, cdk) at the emulator.

Exit codes: 0 success (steps not implemented yet are reported, not failed), 1 a step failed,
2 usage error (unknown customer, run already up, ...).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from localaws import MOTO_VERSION, server
from localrun import flow, partner_ca, postgres
from localrun.context import DEFAULT_RUN_DIR, REPO_ROOT, LocalRun, StepResult
from localrun.importer import POSTGRES_STATE
from localrun.partner import source_addresses
from stacks.config import CustomerConfig, RegistryError, load_registry

# Written by `up` into the run directory: `down` deletes only directories that carry it, so a
# mistyped --run-dir can never remove anything else.
MARKER = ".localrun-run-dir"


def _print(message: str = "") -> None:
    print(message, flush=True)


def _find_customer(slug: str) -> CustomerConfig | str:
    """The registry entry, or the one-line reason there is none."""
    try:
        registry = load_registry(REPO_ROOT / "customers")
    except RegistryError as error:
        return " ".join(str(error).split())
    if slug not in registry:
        return f"unknown customer {slug!r}; registered: {', '.join(sorted(registry))}"
    return registry[slug]


DSN_ENV = "LOCALRUN_DSN"


def _stop_everything(run_dir: Path) -> list[str]:
    """Stop the run's emulator and embedded PostgreSQL; returns what was running."""
    stopped = ["the emulator"] if server.stop(run_dir) else []
    if postgres.stop(run_dir / POSTGRES_STATE):
        stopped.append("the embedded PostgreSQL")
    return stopped


def up(customer: str, run_dir: Path, dsn: str | None = None) -> int:
    config = _find_customer(customer)
    if isinstance(config, str):
        _print(f"error: {config}")
        return 2
    existing = server.Emulator.load(run_dir)
    if existing and server.is_healthy(existing):
        _print(f"error: a local run is already up at {existing.url}; "
               f"stop it first: python -m localrun down --run-dir {run_dir}")
        return 2
    if run_dir.exists() and (run_dir / MARKER).exists():
        _stop_everything(run_dir)  # an emulator that no longer answers, its database, if any
        shutil.rmtree(run_dir)  # leftovers of an earlier run
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / MARKER).write_text("created by python -m localrun up; removed by down\n")

    started = time.monotonic()
    # The synth needs no emulator: it runs while the emulator starts (localrun.flow.Synth).
    try:
        partner_ca.prepare(run_dir, REPO_ROOT / "customers", config)
        synth = flow.Synth(run_dir, customer)
    except (flow.StepFailed, partner_ca.LocalRegistryError, OSError) as error:
        _print(f"error: {error}")
        return 1
    _print(f"Synthesizing the app for '{customer}' in the background; starting the emulator "
           f"(moto {MOTO_VERSION} + localaws, TLS) ...")
    # A listener per allowed partner network, so the partner can be shown from inside it.
    addresses = source_addresses(config.allowed_source_ips)
    try:
        emulator = server.start(run_dir, source_addresses=addresses)
    except (server.EmulatorError, OSError) as error:
        synth.stop()
        _print(f"error: the emulator did not start: {error}")
        _print(f"Clean up: python -m localrun down --run-dir {run_dir}")
        return 1
    _print(f"  up at {emulator.url} in {time.monotonic() - started:.1f} s "
           f"(CA {emulator.ca_bundle}, log {run_dir / server.LOG_FILE})")
    for address, url in emulator.source_endpoints.items():
        _print(f"  requests to {url} come from {address} (aws:SourceIp)")
    run = LocalRun(run_dir=run_dir, customer=customer, emulator=emulator, synth=synth, dsn=dsn)
    run.save()

    def report(result: StepResult) -> None:
        _print(f"[{result.status}] {result.name} ({result.seconds:.1f} s)")
        if result.status == "failed":
            _print(f"  {result.detail}")

    _print(f"Running the steps for customer '{customer}' ...")
    ok = flow.run_steps(run, on_result=report)
    _print()
    _print(flow.summary(run, total_seconds=time.monotonic() - started))
    return 0 if ok else 1


def down(run_dir: Path) -> int:
    if run_dir.exists() and not (run_dir / MARKER).exists():
        _print(f"error: {run_dir} was not created by `localrun up`; not touching it")
        return 2
    stopped = _stop_everything(run_dir)
    existed = run_dir.exists()
    if existed:
        shutil.rmtree(run_dir)
    _print((f"Stopped {' and '.join(stopped)}" if stopped else "Nothing was running")
           + (f"; removed {run_dir}." if existed else "; nothing to remove."))
    return 0


def status(run_dir: Path) -> int:
    emulator = server.Emulator.load(run_dir)
    if emulator is None or not server.is_healthy(emulator):
        _print(f"No local run is up ({run_dir}).")
        return 1
    _print(f"Emulator up at {emulator.url} (pid {emulator.pid}).")
    run = LocalRun.load(run_dir)
    if run is not None:
        _print(flow.summary(run))
    return 0


def env(run_dir: Path) -> int:
    emulator = server.Emulator.load(run_dir)
    if emulator is None:
        print("echo 'no local run is up' >&2; false")
        return 1
    variables = server.client_environment(emulator, base={})
    for name in sorted(variables):
        print(f"export {name}={shlex.quote(variables[name])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localrun", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start, deploy, prove, summarize")
    up_parser.add_argument("--customer", default="acme", help="registered slug (default: acme)")
    up_parser.add_argument("--dsn", default=os.environ.get(DSN_ENV) or None,
                           help="PostgreSQL for the importer (libpq string; the run uses a "
                           f"fresh schema there); default ${DSN_ENV}, else an embedded server "
                           "started in the run directory")
    for name in ("up", "down", "status", "env"):
        sub = up_parser if name == "up" else commands.add_parser(name)
        sub.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR,
                         help=f"default: {DEFAULT_RUN_DIR}")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    if args.command == "up":
        return up(args.customer, run_dir, args.dsn)
    if args.command == "down":
        return down(run_dir)
    if args.command == "status":
        return status(run_dir)
    return env(run_dir)


if __name__ == "__main__":
    sys.exit(main())
