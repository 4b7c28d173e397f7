"""Test-suite wiring shared by every directory.

``make test`` runs two pytest-xdist workers with ``--dist loadgroup``. Session and module
fixtures live per worker, so every test that reads one expensive fixture (a synthesized app, a
deployed emulator) is sent to the same worker: it is built once, not once per worker.
"""

from __future__ import annotations

import functools

import botocore.loaders
import botocore.session
import pytest

from tests.demo_runs import acme_demo  # noqa: F401 - a session fixture, shared by two dirs

# Every new botocore session builds its own loader, which parses the service models (JSON) again:
# the suite creates thousands of sessions in-process (the client's, the operator CLI's and the
# rotation handler's, run once per test), and py-spy found a quarter of the workers' samples in
# that parsing. One loader per search path for the whole run: a cache of files that never change.
botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)  # type: ignore[attr-defined]

# Tests that change what other tests of their group read: they run after the rest of it.
RUN_LAST = ("tests/admin/test_lifecycle_e2e.py",)  # offboards the shared acme run

# Expensive session/module fixture -> the worker group of every test that uses it, the most
# expensive first (measured: the matrix group ~200 s of a worker, a local run ~60 s). A
# parametrized fixture gets one group per parameter (each parameter is its own deploy).
EXPENSIVE_FIXTURES = {
    "matrix_app": "security-app",  # tests/security/conftest.py: audit + registry + variants
    "acme_demo": "e2e-acme",  # tests/demo_runs.py: the acme demo, deployed on the emulator
    "run": "e2e-mode",  # tests/localaws/test_e2e_modes.py: one deploy per access mode
    "stack_artifacts": "infra-app",  # tests/infra/conftest.py: audit + registry + extras
    # The same group: one test compares the CLI's template with the app's, and a module
    # fixture in two groups is built twice (measured: the CLI's synth ran on both workers).
    "acme_synth": "infra-app",  # tests/infra/test_cdk_cli.py: the CDK CLI's synth
    "role_template": "rotation-role",  # tests/localaws/test_rotation_role.py
    "sources": "packaging",  # tests/packaging: the built distributions
}


# tryfirst: xdist's own collection hook reads the xdist_group markers; a conftest hook runs
# after it unless told otherwise, and its markers were then silently ignored (measured: the
# access matrix was evaluated on both workers).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The expensive groups first (xdist hands out work in this order: a long group started
    # last leaves the other worker idle at the end); RUN_LAST after the rest. Stable: the
    # order within each group is kept.
    ranks = {fixture: rank for rank, fixture in enumerate(EXPENSIVE_FIXTURES)}
    items.sort(key=lambda item: (
        min((ranks[f] for f in getattr(item, "fixturenames", ()) if f in ranks),
            default=len(ranks)),
        item.nodeid.split("::")[0] in RUN_LAST))
    for item in items:
        for fixture, group in EXPENSIVE_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                callspec = getattr(item, "callspec", None)
                if callspec is not None and fixture in callspec.params:
                    group = f"{group}-{callspec.params[fixture]}"
                item.add_marker(pytest.mark.xdist_group(group))
                break
