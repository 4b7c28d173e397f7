"""Synthesizes the access-matrix stacks once per test session (the audit stack, the registry,
and one variant for every access mode, direction set and offboarded state), with the
compliance gate on, and evaluates the matrix once. The matrix, mutation, evaluator and
scanner tests read those results; only the hostile-input suite synthesizes its own
(generated) customers."""

from __future__ import annotations

import os
import random
import string
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
from stacks.config import RESERVED_SLUGS, CustomerConfig, parse_customer

_SIZE_LINES: list[str] = []


@pytest.fixture(scope="session")
def matrix_customer_list() -> list[CustomerConfig]:
    return matrix_customers()


def _random_slugs(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    """Valid slugs of spread lengths, always one of nine letters (the length whose CDK stage
    path once looked like an AWS secret key to checkov), none of them ``taken``."""
    alphabet = string.ascii_lowercase + string.digits
    slugs = ["".join(rng.choice(string.ascii_lowercase) for _ in range(9))]
    while len(slugs) < count:
        length = rng.randint(2, 20)
        middle = "".join(rng.choice(alphabet + "-") for _ in range(length - 2))
        slug = (rng.choice(string.ascii_lowercase) + middle + rng.choice(alphabet)).replace(
            "--", "-a")
        if slug not in RESERVED_SLUGS and slug not in taken:
            slugs.append(slug)
    return slugs


@pytest.fixture(scope="session")
def random_slug_customers(matrix_customer_list: list[CustomerConfig]) -> list[CustomerConfig]:
    """Two customers of random valid slugs per access mode (tests/security/test_scanners.py):
    a new customer's name must never turn the scanners red."""
    rng = random.Random(int(os.environ.get("SCANNER_SLUG_SEED", "2026")))  # noqa: S311
    base = {"iam-user": {}, "cross-account": {
        "partner_principals": ["arn:aws:iam::111122223333:role/transfer"]},
        "assume-role": {"partner_principals": ["444455556666"],
                        "external_id": "random-slug-external-id-0001"}}
    taken = {c.slug for c in matrix_customer_list}
    customers = []
    for mode, extra in base.items():
        for slug in _random_slugs(rng, 2, taken):
            taken.add(slug)
            customers.append(parse_customer({"slug": slug, "access": mode,
                                             "contacts": ["ops@example.org"], **extra},
                                            source=f"(random) {slug}"))
    return customers


@pytest.fixture(scope="session")
def matrix_app(matrix_customer_list: list[CustomerConfig],
               random_slug_customers: list[CustomerConfig],
               tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    # One synth (and one scanner run) for both: the random-slug customers' stacks are in the
    # app, but the access matrix reads only the matrix customers'.
    return synthesize([*matrix_customer_list, *random_slug_customers],
                      Path(tmp_path_factory.mktemp("security-cdk.out")))


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
