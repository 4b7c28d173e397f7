"""Emulators for the localaws tests: real ``python -m localaws.server`` processes.

Each runs in its own process, so localaws's patches to moto never reach this pytest process
(other test suites use moto in-process and must see moto as it is). One TLS emulator and one
plain-HTTP emulator per test session (per xdist worker). The TLS emulator also listens for
requests "from" :data:`PARTNER_ADDRESS` (``--source-address``).
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

Credentials = tuple[str, str] | tuple[str, str, str]  # key id, secret[, session token]
# The source address of the TLS emulator's second listener (aws:SourceIp of its requests).
PARTNER_ADDRESS = "203.0.113.7"


def session(credentials: Credentials, region: str = REGION) -> boto3.session.Session:
    """A boto3 session with these credentials (its service models come from the run's one
    loader: tests/conftest.py)."""
    key_id, secret, *token = credentials
    return boto3.session.Session(
        aws_access_key_id=key_id, aws_secret_access_key=secret,
        aws_session_token=token[0] if token else None, region_name=region,
    )


class Aws:
    """Clients for one emulator, as the operator unless credentials are given."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._clients: dict[tuple[Any, ...], Any] = {}

    def client(self, service: str, credentials: Credentials | None = None, *,
               account: str | None = None, source_address: str | None = None) -> Any:
        """As the operator unless ``credentials`` are given; ``account``: as that account's
        administrator (checks off only); ``source_address``: through that listener. Clients
        are made once per combination."""
        credentials = credentials or (
            server.OPERATOR_ACCESS_KEY_ID, server.OPERATOR_SECRET_ACCESS_KEY
        )
        cache_key = (service, credentials, account, source_address)
        if cache_key in self._clients:
            return self._clients[cache_key]
        client = session(credentials).client(
            service, endpoint_url=self.emulator.url_from(source_address),
            verify=self.emulator.ca_bundle or True)
        self._clients[cache_key] = client
        if account is not None:
            def name_account(request: Any, **_: Any) -> None:
                request.headers["x-moto-account-id"] = account

            client.meta.events.register("before-sign.*.*", name_account)
        return client

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

    def user_with_key(self, name: str, policy: dict[str, Any] | None = None, *,
                      account: str | None = None) -> Credentials:
        iam = self.client("iam", account=account)
        iam.create_user(UserName=name)
        if policy is not None:
            iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def role(self, name: str, trust: dict[str, Any], policy: dict[str, Any] | None = None, *,
             account: str | None = None, max_session: int = 3600) -> str:
        """A role (checks off); returns its ARN."""
        iam = self.client("iam", account=account)
        arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                                   MaxSessionDuration=max_session)["Role"]["Arn"]
        if policy is not None:
            iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        return arn

    @contextlib.contextmanager
    def permission_checks(self) -> Iterator[None]:
        server.set_permission_checks(self.emulator, enabled=True)
        try:
            yield
        finally:
            server.set_permission_checks(self.emulator, enabled=False)


def _emulator(tmp_path_factory: pytest.TempPathFactory, *, tls_enabled: bool) -> Iterator[Aws]:
    run_dir: Path = tmp_path_factory.mktemp("emulator-tls" if tls_enabled else "emulator-http")
    emulator = server.start(run_dir, tls_enabled=tls_enabled,
                            source_addresses=(PARTNER_ADDRESS,) if tls_enabled else ())
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


def log_access(s3: Any, bucket: str) -> str:
    """Server access logging of ``bucket`` into a new bucket (returned), under
    ``data-bucket/``, with the delivery grant S3 needs."""
    logs = f"{bucket}-logs"
    s3.create_bucket(Bucket=logs)
    s3.put_bucket_policy(Bucket=logs, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
        "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{logs}/*"}]}))
    s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={"LoggingEnabled": {
        "TargetBucket": logs, "TargetPrefix": "data-bucket/"}})
    return logs
