"""Fixtures of the operator CLI's tests: real servers for the custody command (PostgreSQL and
moto, one of each for this package, started only when a test asks for them), and moto
in-process for the lifecycle commands (test_cli.py keeps its own, in its own region)."""

from collections.abc import Iterator

import pytest
from moto import mock_aws

from tests.admin.lifecycle_support import REGION
from tests.importer.support import customer, emulator, importer, queues  # noqa: F401 - fixtures
from tests.servers import aws_env, db, dsn, moto_endpoint, postgres  # noqa: F401 - fixtures


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in-process, in the lifecycle tests' region, with no AWS profile in the way."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield
