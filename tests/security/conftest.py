"""Synthesizes the access-matrix stacks once per test session (the audit stack, the registry,
and one variant for every access mode, direction set and offboarded state), with the
compliance gate on, and evaluates the matrix once. The matrix, mutation, evaluator and
scanner tests read those results; only the hostile-input suite synthesizes its own
(generated) customers."""

from __future__ import annotations

from pathlib import Path

import pytest

from security.access_matrix import (
    MatrixResult,
    Universe,
    build_requests,
    build_universe,
    matrix_customers,
    run_matrix,
)
from security.matrix_model import MatrixRequest
from security.synth import SynthesizedApp, synthesize
from stacks.config import CustomerConfig

_SIZE_LINES: list[str] = []


@pytest.fixture(scope="session")
def matrix_customer_list() -> list[CustomerConfig]:
    return matrix_customers()


@pytest.fixture(scope="session")
def matrix_app(matrix_customer_list: list[CustomerConfig],
               tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    return synthesize(matrix_customer_list, Path(tmp_path_factory.mktemp("security-cdk.out")))


@pytest.fixture(scope="session")
def universe(matrix_customer_list: list[CustomerConfig], matrix_app: SynthesizedApp) -> Universe:
    return build_universe(matrix_customer_list, matrix_app)


@pytest.fixture(scope="session")
def matrix_requests(universe: Universe) -> list[MatrixRequest]:
    return list(build_requests(universe))


@pytest.fixture(scope="session")
def matrix(universe: Universe, matrix_requests: list[MatrixRequest]) -> MatrixResult:
    result = run_matrix(universe, requests=matrix_requests)
    _SIZE_LINES.append(result.size_line())
    return result


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The matrix size, in every run's summary (not only with -s)."""
    for line in _SIZE_LINES:
        terminalreporter.write_line(line)
