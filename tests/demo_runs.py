"""The acme local run (``python -m localrun up --customer acme``), once per test session.

The end-to-end checks (tests/localaws/test_e2e.py) and the lifecycle tests
(tests/admin/test_lifecycle_e2e.py: onboard, status, offboard) read the same deployment: a run
costs ~40 s of two cores, and the suite has a budget. tests/conftest.py sends every test that
uses it to one worker and orders the lifecycle tests (which offboard the customer) last.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The whole flow takes ~40 s on a quiet two-core machine; the timeout bounds it on a loaded
# one (no timing is asserted).
UP_TIMEOUT_SECONDS = 300


def localrun(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localrun", *args], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=timeout, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )


@dataclass(frozen=True)
class DemoRun:
    run_dir: Path
    seconds: float
    stdout: str


@pytest.fixture(scope="session")
def acme_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    run_dir = tmp_path_factory.mktemp("localrun-acme") / "run"
    started = time.monotonic()
    up = localrun("up", "--customer", "acme", "--run-dir", str(run_dir),
                  timeout=UP_TIMEOUT_SECONDS)
    elapsed = time.monotonic() - started
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield DemoRun(run_dir, elapsed, up.stdout)
    finally:
        down = localrun("down", "--run-dir", str(run_dir))
        assert down.returncode == 0, down.stdout + down.stderr
        assert not run_dir.exists()
