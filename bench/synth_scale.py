"""Synth cost at scale: how one-customer and all-customer synth grow with the registry.

    .venv/bin/python bench/synth_scale.py                 # N = 1, 10, 100, 500
    .venv/bin/python bench/synth_scale.py --sizes 1 10    # a quick run
    .venv/bin/python bench/synth_scale.py --phases 100    # where the time goes, for N = 100

For each N it writes N synthetic customers (all three access modes, mixed directions, source
IPs and principal counts) to a temporary registry, then runs ``app.py`` the way the CDK CLI
does (context through CDK_CONTEXT_JSON, output through CDK_OUTDIR) and reports wall time and
peak memory (resident set of python + the jsii node process, sampled every 20 ms), for:

- one customer (``-c customer=<slug>``): must not grow with N;
- all customers (``-c customer=all``), with the compliance gate on: grows linearly.

It also reports the largest template, resource count and policy sizes against AWS's limits.
Prints figures; asserts nothing (timings belong in docs/benchmarks.md, never in tests).

Every run is repeated ``--repeat`` times (one customer and all customers alike) and the
summary gives min / median / max. Each run also prints its CPU seconds (user + system of
python and node, from /proc), the machine's load average before and after it, and how many
cores' worth of CPU *other* processes used while it ran and the hypervisor stole (/proc/stat):
a wall time far above the CPU time, or other work above ~0.2 cores, means the figure measured
the machine, not the app (the load average alone cannot tell: it lags by minutes and counts
the synth itself, about 1.5 on two cores). The subprocesses get the caller's environment,
PYTHONDONTWRITEBYTECODE and PYTHONOPTIMIZE included; the first line says which were set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a script run from anywhere, importing the project's modules

TEMPLATE_BODY_LIMIT = 1_000_000  # bytes, via S3 (51,200 inline)
RESOURCE_LIMIT = 500


def synthetic_customer(index: int) -> str:
    """A valid registry file; modes and options rotate so every combination appears."""
    slug = f"c{index:04d}"
    mode = ("iam-user", "cross-account", "assume-role")[index % 3]
    directions = ('"inbound", "outbound"', '"inbound"', '"outbound"')[index // 3 % 3]
    lines = [
        f'slug = "{slug}"',
        f'access = "{mode}"',
        f"directions = [{directions}]",
        f'contacts = ["ops@{slug}.example"]',
    ]
    if mode != "iam-user":
        count = 1 + index % 4
        principals = [
            f'"arn:aws:iam::{100000000000 + index:012d}:role/transfer-{i}"' for i in range(count)
        ]
        lines.append(f"partner_principals = [{', '.join(principals)}]")
    if mode == "assume-role":
        lines.append(f'external_id = "{slug}-external-id-0001"')
    if index % 2:
        lines.append(f'allowed_source_ips = ["198.51.{index % 256}.0/24"]')
    return "\n".join(lines) + "\n"


CUSTOMERS_PER_ACCOUNT = 250  # with the quotas accounts_file raises
CUSTOMERS_PER_PIPELINE = 500  # one pipeline's template holds ~800 (docs/benchmarks.md)


def default_accounts(count: int) -> int:
    """Enough exchange accounts for ``count`` customers: the implicit account (no accounts
    file) has AWS's default quotas, which 25 malware-scanned customers already fill."""
    return 0 if count <= 20 else -(-count // CUSTOMERS_PER_ACCOUNT)


def write_registry(directory: Path, count: int, accounts: int = 0) -> list[str]:
    """N customer files; with ``accounts`` > 0, an accounts.toml next to them (a pipeline
    account, a log archive and that many exchange accounts, the quotas 250 customers each
    need raised, as many pipelines as 500 customers each need) and each customer placed
    round-robin."""
    directory.mkdir(parents=True, exist_ok=True)
    slugs = []
    for index in range(count):
        text = synthetic_customer(index)
        slug = text.split('"')[1]
        if accounts:
            text += f'account = "exchange-{index % accounts + 1}"\n'
        (directory / f"{slug}.toml").write_text(text)
        slugs.append(slug)
    if accounts:
        pipelines = max(1, -(-count // CUSTOMERS_PER_PIPELINE))
        (directory.parent / "accounts.toml").write_text(accounts_file(accounts, pipelines))
    return slugs


def accounts_file(count: int, pipelines: int = 1) -> str:
    raised = ("quotas = { guardduty_protected_buckets = 1000, eventbridge_rules = 2000, "
              "iam_groups = 500 }")
    lines = [
        "[pipeline]", 'label = "tooling"', 'account_id = "500000000000"',
        'region = "eu-west-2"', 'repository = "example/phi-exchange"',
        'connection_arn = "arn:aws:codeconnections:eu-west-2:500000000000:connection/'
        '0a1b2c3d-0000-4000-8000-00000000abcd"', "",
        "[log_archive]", 'label = "log-archive"', 'account_id = "900000000000"',
        'region = "eu-west-2"', "",
    ]
    for i in range(1, count + 1):
        lines += ["[[exchange]]", f'label = "exchange-{i}"',
                  f'account_id = "{100000000000 + i:012d}"', 'region = "eu-west-2"', raised,
                  f"pipeline = {1 + (i - 1) * min(pipelines, count) // count}", ""]
    return "\n".join(lines)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_rss_kib(pid: int, cpu_ticks: dict[int, int] | None = None) -> int:
    """Resident memory of ``pid`` and all its descendants, from /proc. With ``cpu_ticks``,
    also records each process's user + system CPU ticks so far (the last sample is kept)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
            )
            if cpu_ticks is not None:
                # Fields after the parenthesized command name: utime and stime are the 12th
                # and 13th (stat fields 14 and 15).
                fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
                cpu_ticks[current] = int(fields[11]) + int(fields[12])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pending.extend(int(c) for c in children)
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            continue
    return total


def machine_ticks() -> tuple[int, int]:
    """CPU ticks the whole machine (all cores) has spent busy, and stolen by the hypervisor
    (a virtual machine's cores running someone else's work), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq, steal  # guest time is counted in user


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass
class Run:
    """One synth: wall and CPU seconds, peak MiB, load average before and after, and the CPU
    other processes used meanwhile (in cores: 1.0 = one core busy the whole run)."""

    seconds: float
    mib: int
    cpu_seconds: float
    load_before: float
    load_after: float
    other_cores: float
    steal_cores: float

    def line(self, label: str) -> str:
        return (
            f"  {label:<14} {self.seconds:7.1f} s wall {self.cpu_seconds:7.1f} s CPU "
            f"{self.mib:6} MiB  load {self.load_before:4.2f} -> {self.load_after:4.2f}  "
            f"other work {self.other_cores:4.2f} cores, stolen {self.steal_cores:4.2f}"
        )


def spread(values: list[float]) -> str:
    """min / median / max, or the single value."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


def run_synth(registry: Path, customer: str, outdir: Path, processes: int | None = None) -> Run:
    """Run app.py as the CLI would; time it, with the machine's state around it. ``customer``
    "pipeline" synthesizes the pipeline app (``-c pipeline=1``: every account's stages).
    ``processes``: ``-c synth_processes`` (default: app.py's, one per core)."""
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    context.update(registry=str(registry))
    if processes is not None:
        context.update(synth_processes=processes)
    if customer == "pipeline":
        context.update(pipeline=1)
    else:
        context.update(customer=customer)
    env = dict(
        os.environ,
        CDK_CONTEXT_JSON=json.dumps(context),
        CDK_OUTDIR=str(outdir),
        PATH=f"{REPO / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="1",
    )
    load_before = load_average()
    busy_before, steal_before = machine_ticks()
    cpu_ticks: dict[int, int] = {}
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss_kib(process.pid, cpu_ticks))
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    busy_after, steal_after = machine_ticks()
    busy = (busy_after - busy_before) / CLOCK_TICKS
    if process.returncode != 0:
        errors = process.stderr.read().decode() if process.stderr else ""
        raise SystemExit(f"synth failed: {errors[-2000:]}")
    cpu = sum(cpu_ticks.values()) / CLOCK_TICKS  # to the last 20 ms sample
    return Run(
        seconds=elapsed,
        mib=peak // 1024,
        cpu_seconds=cpu,
        load_before=load_before,
        load_after=load_average(),
        # This script's own sampling (a few % of a core) counts as other work.
        other_cores=max(0.0, busy - cpu) / elapsed,
        steal_cores=(steal_after - steal_before) / CLOCK_TICKS / elapsed,
    )


def template_figures(outdir: Path) -> dict[str, int]:
    from stacks.policy_limits import _worst_case

    largest_template = largest_resources = 0
    largest = {"bucket": 0, "key": 0, "managed": 0, "trust": 0}
    for path in outdir.rglob("*.template.json"):
        body = path.read_text()
        template = json.loads(body)
        largest_template = max(largest_template, len(body.encode()))
        largest_resources = max(largest_resources, len(template.get("Resources", {})))
        for resource in template["Resources"].values():
            props = resource.get("Properties", {})
            for kind, resource_type, field in [
                ("bucket", "AWS::S3::BucketPolicy", "PolicyDocument"),
                ("key", "AWS::KMS::Key", "KeyPolicy"),
                ("managed", "AWS::IAM::ManagedPolicy", "PolicyDocument"),
                ("trust", "AWS::IAM::Role", "AssumeRolePolicyDocument"),
            ]:
                if resource["Type"] == resource_type and field in props:
                    size = len(json.dumps(_worst_case(props[field]), separators=(",", ":")))
                    largest[kind] = max(largest[kind], size)
    return {
        "template_bytes": largest_template,
        "resources": largest_resources,
        **{f"{k}_policy": v for k, v in largest.items()},
    }


def phases(count: int) -> None:
    """Where the time goes for all customers: construct creation (Python <-> jsii calls),
    synth without the gate, and the gate's share."""
    import aws_cdk as cdk

    from stacks import compliance
    from stacks.app_builder import build_app
    from stacks.config import load_registry

    context = json.loads((REPO / "cdk.json").read_text())["context"]
    with tempfile.TemporaryDirectory() as tmp:
        registry = Path(tmp) / "customers"
        write_registry(registry, count)
        t0 = time.perf_counter()
        customers = list(load_registry(registry).values())
        t1 = time.perf_counter()
        original_gate = compliance.add_gate
        for gated in (False, True):
            if not gated:
                compliance.add_gate = lambda scope: None  # type: ignore[assignment]
            t2 = time.perf_counter()
            app = build_app(
                customers,
                all_customers=True,
                context=context,
                outdir=str(Path(tmp) / f"out-{gated}"),
            )
            t3 = time.perf_counter()
            app.synth()
            t4 = time.perf_counter()
            compliance.add_gate = original_gate  # type: ignore[assignment]
            print(
                f"N={count} gate={'on ' if gated else 'off'}: registry {t1 - t0:6.2f} s, "
                f"constructs {t3 - t2:6.2f} s, synth {t4 - t3:6.2f} s"
            )
        assert cdk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 500])
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per N and kind (min / median / max)"
    )
    parser.add_argument("--phases", type=int, metavar="N", help="time the phases for N")
    parser.add_argument("--accounts", type=int, metavar="K",
                        help="place the customers over K exchange accounts (accounts.toml; "
                        "default: one per 250 customers, none up to 20)")
    parser.add_argument("--processes", type=int, metavar="P",
                        help="synthesize 'all' in P processes (-c synth_processes; default: "
                        "app.py's, one per core)")
    parser.add_argument("--pipeline", action="store_true",
                        help="with --accounts: 'all' is the pipeline app (-c pipeline=1: "
                        "every account's stages and the pipeline)")
    args = parser.parse_args()
    if args.phases:
        phases(args.phases)
        return
    flags = ("PYTHONDONTWRITEBYTECODE", "PYTHONOPTIMIZE", "NODE_OPTIONS")
    print(
        f"{os.cpu_count()} cores; "
        + ", ".join(f"{flag}={os.environ.get(flag, '(unset)')}" for flag in flags),
        flush=True,
    )
    rows = []
    for count in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            registry = Path(tmp) / "customers"
            accounts = default_accounts(count) if args.accounts is None else args.accounts
            slugs = write_registry(registry, count, accounts)
            one: list[Run] = []
            every: list[Run] = []
            for i in range(args.repeat):
                one.append(run_synth(registry, slugs[-1], Path(tmp) / f"one{i}"))
                print(one[-1].line(f"N={count} one #{i + 1}"), flush=True)
            for i in range(args.repeat):
                every.append(run_synth(registry, "pipeline" if args.pipeline else "all",
                                       Path(tmp) / f"all{i}", args.processes))
                print(every[-1].line(f"N={count} all #{i + 1}"), flush=True)
            figures = template_figures(Path(tmp) / "all0")
            if args.pipeline:
                for pipeline in sorted((Path(tmp) / "all0").glob("PipelineStack*.template.json")):
                    print(f"{pipeline.name}: {pipeline.stat().st_size / 1024:.0f} KB", flush=True)
        all_median = statistics.median(r.seconds for r in every)
        rows.append(
            f"{count:>5} {spread([r.seconds for r in one]):>20} "
            f"{max(r.mib for r in one):>9} {spread([r.seconds for r in every]):>20} "
            f"{statistics.median(r.cpu_seconds for r in every):>10.1f} "
            f"{max(r.mib for r in every):>9} {all_median / count:>7.2f} "
            f"{figures['template_bytes'] / 1024:>8.0f} "
            f"{figures['resources']:>4} {figures['bucket_policy']:>7} "
            f"{figures['key_policy']:>6} {figures['managed_policy']:>8} "
            f"{figures['trust_policy']:>6}"
        )
    print(
        f"\n{'N':>5} {'one: s (min/med/max)':>20} {'one: MiB':>9} "
        f"{'all: s (min/med/max)':>20} {'all: CPU s':>10} {'all: MiB':>9} "
        f"{'s/cust':>7} {'tmpl KB':>8} {'res':>4} {'bucket':>7} {'key':>6} {'managed':>8} "
        f"{'trust':>6}"
    )
    print("\n".join(rows))
    print(
        f"limits: template body {TEMPLATE_BODY_LIMIT // 1000} KB (via S3), "
        f"{RESOURCE_LIMIT} resources; bucket policy 20,480; key policy 32,768; "
        "managed policy 6,144; role trust policy 2,048 (characters)"
    )


if __name__ == "__main__":
    main()
