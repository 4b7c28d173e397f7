"""Where the test suite's CPU goes, by kind of process: runs pytest (as ``make test`` does, two
workers) and samples every process's CPU time from ``/proc`` until it ends.

    .venv/bin/python bench/suite_cpu.py                   # the whole suite
    .venv/bin/python bench/suite_cpu.py -- tests/security # pytest arguments after --

Why sample ``/proc`` instead of timing pytest: the local emulator and the moto servers are
daemonized (``time`` never counts them), and a per-test ``--durations`` shows wall time shared
with whatever else was running. A process shorter than the sampling interval is undercounted
(it is counted up to its last sample); a process that existed before the run counts only what
it used during it. Every process of the machine is sampled: run it on an otherwise idle one.
Linux only. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")

# (substring of the command line, category), the first match wins.
CATEGORIES = (
    ("jsii", "Node: jsii kernels (the CDK for Python, in-process synths)"),
    ("program.js", "Node: jsii kernels (the CDK for Python, in-process synths)"),
    ("evaluate.mjs", "Node: the IAM evaluator (access matrix)"),
    ("node_modules/.bin/cdk", "Node: the CDK CLI"),
    ("checkov", "checkov"),
    ("cfn-lint", "cfn-lint"),
    ("localaws.server", "the local emulator (localaws + moto)"),
    ("moto_server", "moto_server"),
    ("postgres", "PostgreSQL"),
    ("exec(eval(sys.stdin", "pytest workers"),
    ("-m localrun", "the localrun CLI"),
    ("partner-transfer", "partner-transfer"),
    ("app.py", "the CDK app under the CLI"),
)


def category(cmdline: str) -> str:
    for needle, name in CATEGORIES:
        if needle in cmdline:
            return name
    program = cmdline.split(" ", 1)[0].rsplit("/", 1)[-1]
    return f"other: {program or '?'}"


def snapshot() -> dict[tuple[str, str], tuple[str, float]]:
    """(pid, start time) -> (category, CPU seconds so far) of every process."""
    seen = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip() or f"[{Path(f'/proc/{pid}/comm').read_text().strip()}]"
        except OSError:
            continue  # ended meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
        seen[(pid, fields[19])] = (category(cmdline), seconds)
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples")
    parser.add_argument("pytest_args", nargs="*", help="after --: pytest's arguments")
    args = parser.parse_args()

    before = snapshot()  # processes already running count only from here
    last: dict[tuple[str, str], tuple[str, float]] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for key, (name, seconds) in snapshot().items():
                # An exited, unreaped process has no command line any more: it keeps the
                # kind it was first seen as.
                last[key] = (last[key][0] if key in last else name, seconds)
            done.wait(args.interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q",
               *args.pytest_args]
    returncode = subprocess.run(command, cwd=REPO, check=False).returncode  # noqa: S603
    wall = time.monotonic() - started
    done.set()
    sampler.join()

    totals: dict[str, float] = {}
    for key, (name, seconds) in last.items():
        totals[name] = totals.get(name, 0.0) + seconds - before.get(key, (name, 0.0))[1]
    print(f"\npytest exit {returncode}, wall {wall:.0f} s; CPU by process kind "
          f"(sampled every {args.interval} s):")
    for name, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        if seconds >= 0.5:
            print(f"  {seconds:7.1f} s  {name}")
    print(f"  {sum(totals.values()):7.1f} s  in all ({sum(totals.values()) / wall:.2f} cores "
          "busy on average)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
