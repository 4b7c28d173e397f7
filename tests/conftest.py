"""Test-suite wiring shared by every directory.

``make test`` runs two pytest-xdist workers with ``--dist loadgroup``. Session fixtures live
per worker, so every test that reads one synthesized app is sent to the same worker: the app
is synthesized (and the access matrix evaluated) once, not once per worker.
"""

from __future__ import annotations

import pytest

# Session fixture -> the worker group of every test that uses it.
SYNTHESIZED_APPS = {
    "matrix_app": "security-app",  # tests/security/conftest.py: audit + registry + variants
    "stack_artifacts": "infra-app",  # tests/infra/conftest.py: audit + registry + extras
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, group in SYNTHESIZED_APPS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))
                break
