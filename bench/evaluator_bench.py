"""The access matrix's IAM evaluator: dump its batches, profile them, prove a speed-up changes
no decision, time it.

    .venv/bin/python bench/evaluator_bench.py dump /tmp/batches              # registry + variants
    .venv/bin/python bench/evaluator_bench.py dump /tmp/batches --variants-only   # quicker
    .venv/bin/python bench/evaluator_bench.py equal /tmp/batches/matrix.json
    .venv/bin/python bench/evaluator_bench.py equal /tmp/batches/matrix.json --against OLD.mjs
    .venv/bin/python bench/evaluator_bench.py time /tmp/batches/mutations.json --rounds 3
    node --cpu-prof --cpu-prof-dir=/tmp/prof security/evaluate.mjs < /tmp/batches/matrix.json

``dump`` synthesizes the matrix's stacks (as ``tests/security/conftest.py`` does), times the
Python side (``build_requests``, ``plan_requests`` with ``to_evaluator_request``, the batch's
JSON, ``result_of``) and writes the exact JSON ``security.evaluator.evaluate`` sends to
``security/evaluate.mjs``: ``matrix.json`` (every distinct request of the matrix) and
``mutations.json`` (every request ``security.matrix_mutations.run_mutations`` re-evaluates for
``MUTATIONS``).

``equal`` runs one batch twice, with the evaluator's memoization on and off
(``IAM_SIMULATE_NO_MEMO=1``), or against another copy of ``evaluate.mjs`` (``--against``, for
instance the previous commit's, placed in ``security/``), and compares every result: decision,
allow and deny statements, ignored context keys, error and fallback. Exit 1 on any difference.

``time`` alternates the two runs (same conditions, side by side) and prints wall time and CPU
time (user + sys of Node and its worker threads) of each. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a script run from anywhere, importing the project's modules

from security import evaluator  # noqa: E402

COMPARED = ("decision", "allow", "deny", "ignoredContextKeys", "error", "fallback")


@contextmanager
def clock(label: str, figures: dict[str, tuple[float, float]]) -> Iterator[None]:
    """Records the wall and CPU seconds (this process and its children) of the block."""
    wall, cpu = time.monotonic(), _cpu()
    yield
    figures[label] = (time.monotonic() - wall, _cpu() - cpu)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def dump(outdir: Path, *, variants_only: bool) -> None:
    from security.access_matrix import (
        build_requests,
        build_universe,
        matrix_customers,
        plan_requests,
        result_of,
    )
    from security.matrix_mutations import MUTATIONS, plan_mutations
    from security.synth import synthesize

    figures: dict[str, tuple[float, float]] = {}
    customers = matrix_customers(None if variants_only else REPO / "customers")
    with tempfile.TemporaryDirectory(prefix="evaluator-bench-") as cdk_out, \
            clock("synthesize + build_universe", figures):
        universe = build_universe(customers, synthesize(customers, Path(cdk_out)))
    with clock("build_requests", figures):
        requests = list(build_requests(universe))
    batch = evaluator.Batch(policies=dict(universe.documents))
    with clock("plan_requests (with to_evaluator_request)", figures):
        plan = plan_requests(requests, batch)
    with clock("batch JSON (as_json + json.dumps)", figures):
        payload = evaluator.batch_json(batch)
    with clock("result_of (the rules' expectations)", figures):
        result_of(requests, plan, [evaluator.Decision("ImplicitlyDenied")] * len(batch.requests),
                  started=time.monotonic(), evaluator_seconds=0.0, evaluated=len(batch.requests))
    with clock("plan_mutations (MUTATIONS)", figures):
        mutation_batch, _ = plan_mutations(universe, requests, MUTATIONS)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "matrix.json").write_text(payload)
    (outdir / "mutations.json").write_text(evaluator.batch_json(mutation_batch))
    print(f"{len(requests)} matrix requests, {len(batch.requests)} distinct ones to evaluate; "
          f"{len(mutation_batch.requests)} for the mutations")
    for label, (wall, cpu) in figures.items():
        print(f"  {label:45} wall {wall:7.2f} s   CPU {cpu:7.2f} s")
    print(f"batches: {outdir / 'matrix.json'}, {outdir / 'mutations.json'}")


def _runner(against: Path | None) -> Callable[[str], dict[str, Any]]:
    """The run to compare with: another evaluate.mjs (memoized as it is), or this one without
    memoization."""
    if against is None:
        return lambda payload: evaluator.run_batch_json(payload, memoize=False)
    script = against.resolve()
    if script.parent != evaluator.SECURITY_DIR:
        sys.exit(f"{against}: place it in {evaluator.SECURITY_DIR} (it resolves the package "
                 "from its own directory)")
    return lambda payload: evaluator.run_batch_json(payload, script=script)


def equal(batch_file: Path, *, against: Path | None) -> int:
    payload = batch_file.read_text()
    count = len(json.loads(payload)["requests"])
    figures: dict[str, tuple[float, float]] = {}
    with clock("this evaluate.mjs, memoized", figures):
        fast = evaluator.run_batch_json(payload)
    other = f"{against}" if against else "this evaluate.mjs, IAM_SIMULATE_NO_MEMO=1"
    with clock(other, figures):
        plain = _runner(against)(payload)
    differences = [
        (index, field, a.get(field), b.get(field))
        for index, (a, b) in enumerate(zip(fast["results"], plain["results"], strict=True))
        for field in COMPARED if a.get(field) != b.get(field)
    ]
    print(f"{batch_file}: {count} requests, {len(fast['results'])} and {len(plain['results'])} "
          f"results compared field by field ({', '.join(COMPARED)})")
    for label, (wall, cpu) in figures.items():
        print(f"  {label}: wall {wall:.1f} s, CPU {cpu:.1f} s")
    decisions: dict[str, int] = {}
    for result in fast["results"]:
        decisions[result["decision"]] = decisions.get(result["decision"], 0) + 1
    print(f"  decisions: {decisions}; "
          f"{sum(1 for r in fast['results'] if r.get('fallback'))} by the fallback")
    print(f"  memoized: {fast.get('memoized')} and {plain.get('memoized')}")
    for index, field, a, b in differences[:20]:
        print(f"  DIFFERS request {index} {field}: {a!r} != {b!r}")
    print(f"{len(differences)} differences")
    return 1 if differences or len(fast["results"]) != count else 0


def timing(batch_file: Path, *, against: Path | None, rounds: int) -> None:
    payload = batch_file.read_text()
    other = f"{against}" if against else "IAM_SIMULATE_NO_MEMO=1"
    runs: dict[str, list[tuple[float, float]]] = {"memoized": [], other: []}
    for _ in range(rounds):
        for label, run in (("memoized", evaluator.run_batch_json), (other, _runner(against))):
            figures: dict[str, tuple[float, float]] = {}
            with clock(label, figures):
                run(payload)
            runs[label].append(figures[label])
            print(f"  {label}: wall {figures[label][0]:.1f} s, CPU {figures[label][1]:.1f} s",
                  flush=True)
    print(f"{batch_file} ({os.cpu_count()} cores), median of {rounds}:")
    for label, figures_of in runs.items():
        print(f"  {label:30} wall {statistics.median(w for w, _ in figures_of):7.1f} s   "
              f"CPU {statistics.median(c for _, c in figures_of):7.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dump_parser = commands.add_parser("dump", help="write the matrix's and the mutations' batch")
    dump_parser.add_argument("outdir", type=Path)
    dump_parser.add_argument("--variants-only", action="store_true",
                             help="the built-in variants without the registry (quicker)")
    for name, text in (("equal", "compare every result, memoization on and off"),
                       ("time", "time both runs, alternating")):
        command = commands.add_parser(name, help=text)
        command.add_argument("batch", type=Path)
        command.add_argument("--against", type=Path,
                             help="another evaluate.mjs in security/ (default: this one, "
                             "IAM_SIMULATE_NO_MEMO=1)")
        if name == "time":
            command.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.command == "dump":
        dump(args.outdir, variants_only=args.variants_only)
        return 0
    if args.command == "equal":
        return equal(args.batch, against=args.against)
    timing(args.batch, against=args.against, rounds=args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
