"""Emulators for the localaws tests: real ``python -m localaws.server`` processes.

Each runs in its own process, so localaws's patches to moto never reach this pytest process
(other test suites use moto in-process and must see moto as it is). One TLS emulator and one
plain-HTTP emulator per test session (per xdist worker).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from localaws import server
from localaws.server import REGION, Emulator

Credentials = tuple[str, str]


class Aws:
    """Clients for one emulator, as the operator unless credentials are given."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def client(self, service: str, credentials: Credentials | None = None) -> Any:
        key_id, secret = credentials or (
            server.OPERATOR_ACCESS_KEY_ID, server.OPERATOR_SECRET_ACCESS_KEY
        )
        return boto3.session.Session(
            aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=REGION
        ).client(service, endpoint_url=self.emulator.url,
                 verify=self.emulator.ca_bundle or True)

    def deploy(self, template: dict[str, Any], *, change_set: bool = False) -> dict[str, Any]:
        """CreateStack, or a CREATE change set executed (what ``cdk deploy`` does by default);
        returns the described stack."""
        cloudformation = self.client("cloudformation")
        name = f"test-{uuid.uuid4().hex[:12]}"
        body = json.dumps(template)
        if change_set:
            cloudformation.create_change_set(
                StackName=name, ChangeSetName="deploy", ChangeSetType="CREATE",
                TemplateBody=body, Capabilities=["CAPABILITY_NAMED_IAM"])
            cloudformation.execute_change_set(StackName=name, ChangeSetName="deploy")
        else:
            cloudformation.create_stack(StackName=name, TemplateBody=body,
                                        Capabilities=["CAPABILITY_NAMED_IAM"])
        stack: dict[str, Any] = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        return stack

    def user_with_key(self, name: str, policy: dict[str, Any] | None = None) -> Credentials:
        iam = self.client("iam")
        iam.create_user(UserName=name)
        if policy is not None:
            iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    @contextlib.contextmanager
    def permission_checks(self) -> Iterator[None]:
        server.set_permission_checks(self.emulator, enabled=True)
        try:
            yield
        finally:
            server.set_permission_checks(self.emulator, enabled=False)


def _emulator(tmp_path_factory: pytest.TempPathFactory, *, tls_enabled: bool) -> Iterator[Aws]:
    run_dir: Path = tmp_path_factory.mktemp("emulator-tls" if tls_enabled else "emulator-http")
    emulator = server.start(run_dir, tls_enabled=tls_enabled)
    try:
        yield Aws(emulator)
    finally:
        server.stop(run_dir)


@pytest.fixture(scope="session")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    """The emulator over TLS, as the local run uses it."""
    yield from _emulator(tmp_path_factory, tls_enabled=True)


@pytest.fixture(scope="session")
def aws_plain_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    """The same emulator over plain HTTP: what a TLS-only policy must refuse."""
    yield from _emulator(tmp_path_factory, tls_enabled=False)


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Globally unique, S3-safe names (buckets are global within an emulator)."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"
