"""The state of one local run, and the helpers every step uses to reach the emulator.

A run lives in a run directory (default ``<repo>/.localrun``): the emulator's state and log,
its TLS files, the CDK cloud assembly (its own ``cdk.out``, so a local run never races a
concurrent ``cdk synth`` in the repository), the stack outputs, the CLI logs and ``run.json``
(customer, outputs, step results). ``python -m localrun down`` removes all of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
import botocore.loaders
import botocore.session
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from localaws import server
from localaws.server import REGION, Emulator
from stacks.config import CustomerConfig, RegistryError, load_registry

REPO_ROOT = Path(__file__).resolve().parents[1]
# One loader of the service models for every client: each new botocore session would parse
# them again.
_LOADER = botocore.loaders.create_loader()
DEFAULT_RUN_DIR = REPO_ROOT / ".localrun"
STATE_FILE = "run.json"
# An IAM user with every permission, for operator work while the emulator's permission checks
# are on (the dummy operator key is unknown to IAM, so checks refuse it).
ADMIN_USER_NAME = "localrun-admin"

# "not-applicable": the step does not exist for this customer (rotation of a partner that has no
# access key of ours); the summary says why.
Status = Literal["ok", "failed", "not-implemented", "not-applicable"]


def denied(call: Callable[[], object]) -> bool:
    """Whether ``call`` was refused by a policy: ``AccessDenied`` (query and REST protocols),
    ``AccessDeniedException`` (JSON protocols), or S3's bare ``403`` for a bucket policy."""
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException", "403")
    return False


def refused_403(call: Callable[[], object]) -> bool:
    """Whether ``call`` was answered HTTP 403 for any reason: a policy, or credentials IAM no
    longer accepts (a deactivated key is refused as invalid, not as denied)."""
    try:
        call()
    except ClientError as error:
        return error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return False


@dataclass
class StepResult:
    """One step's outcome. ``proved`` lists, one line each, what the step showed to be true."""

    name: str
    status: Status
    seconds: float
    proved: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None  # role sessions

    def __repr__(self) -> str:  # never print a secret key, even in a traceback
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key=***)"

    @classmethod
    def from_sts(cls, credentials: dict[str, Any]) -> Credentials:
        """From an AssumeRole answer's ``Credentials`` (or the emulator's service session)."""
        return cls(credentials["AccessKeyId"], credentials["SecretAccessKey"],
                   credentials.get("SessionToken"))

    def environment(self) -> dict[str, str]:
        """The variables boto3's default chain reads these credentials from."""
        env = {"AWS_ACCESS_KEY_ID": self.access_key_id,
               "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


@dataclass
class LocalRun:
    """Everything a step needs: where the emulator is, which customer, what was deployed."""

    run_dir: Path
    customer: str
    emulator: Emulator
    outputs: dict[str, str] = field(default_factory=dict)
    audit_outputs: dict[str, str] = field(default_factory=dict)
    results: list[StepResult] = field(default_factory=list)
    # The database the importer writes to: a DSN given by the user (``--dsn``; kept in memory
    # only, it may hold a password), else the embedded server the run starts
    # (localrun.postgres) in ``<run_dir>/postgres``. ``database`` says which, for humans.
    dsn: str | None = field(default=None, repr=False)
    database: str = ""
    # The background ``cdk synth`` (localrun.flow.Synth) started before the emulator, if any.
    synth: Any = field(default=None, repr=False, compare=False)
    # The partner as the round trip set it up (localrun.partner.Partner; in memory only: it
    # holds the partner's credentials), for the steps after it.
    partner: Any = field(default=None, repr=False, compare=False)
    # Sessions of our account roles by user (localrun.identities; in memory only).
    sessions: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    clients: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False, compare=False)

    # --- environment and clients ---------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (CDK CLI, AWS CLI, boto3): the emulator, dummy operator
        credentials, the CA bundle, the pinned CDK CLI and this venv's python3 first on PATH."""
        env = server.client_environment(self.emulator)
        python_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join(
            [str(REPO_ROOT / "node_modules" / ".bin"), python_bin, env.get("PATH", "")]
        )
        env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "1"
        return env

    @property
    def config(self) -> CustomerConfig:
        """The customer's registry entry (``customers/<slug>.toml``, or the run's copy of the
        registry when it has one: localrun.partner_ca)."""
        copy = self.run_dir / "registry"
        try:
            return load_registry(copy if copy.is_dir() else REPO_ROOT / "customers")[
                self.customer]
        except (RegistryError, KeyError) as error:
            raise RuntimeError(f"customer {self.customer!r} is not in the registry: {error}")\
                from None

    def client(self, service: str, credentials: Credentials | None = None, *,
               account: str | None = None, source_address: str | None = None) -> Any:
        """A boto3 client for the emulator; operator credentials unless others are given.
        Made once per combination of arguments (a client costs ~0.2 s of CPU to build).

        ``account`` (checks off only): act as that account's administrator (moto's
        ``x-moto-account-id`` header; with checks on the header would override the signing
        key's account, so it is never combined with them). ``source_address``: connect through
        the emulator's listener for that address (``aws:SourceIp``), default the real
        127.0.0.1.
        """
        credentials = credentials or Credentials(
            server.OPERATOR_ACCESS_KEY_ID, server.OPERATOR_SECRET_ACCESS_KEY
        )
        cache_key = (service, credentials, account, source_address)
        if cache_key in self.clients:
            return self.clients[cache_key]
        core = botocore.session.get_session()
        core.register_component("data_loader", _LOADER)
        session = boto3.session.Session(
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            region_name=REGION, botocore_session=core,
        )
        client: BaseClient = session.client(
            service, endpoint_url=self.emulator.url_from(source_address),
            verify=self.emulator.ca_bundle or True,
        )
        if account is not None:
            def name_account(request: Any, **_: Any) -> None:
                request.headers["x-moto-account-id"] = account

            client.meta.events.register("before-sign.*.*", name_account)
        self.clients[cache_key] = client
        return client

    def service_role_credentials(self, service: str, role_arn: str,
                                 session_name: str) -> Credentials:
        """A session of ``role_arn`` as ``service`` would get it (the emulator checks the
        role's trust policy admits that service; see localaws.permissions)."""
        return Credentials.from_sts(server.service_role_session(
            self.emulator, service=service, role_arn=role_arn, session_name=session_name))

    @contextlib.contextmanager
    def environment(self, **extra: str) -> Iterator[None]:
        """Temporarily point *this process's* environment at the emulator, for code that builds
        its own clients from the environment (the rotation handler, the transfer client)."""
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update({**self.env, **extra})
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    # --- permission checks and identities ---------------------------------------------------

    @contextlib.contextmanager
    def permission_checks(self) -> Iterator[None]:
        """Switch the emulator's IAM permission checks on for the block, off afterwards.

        Inside, only keys IAM knows are accepted: the partner's key, or
        :meth:`admin_credentials` for operator work. Create users before entering.
        """
        server.set_permission_checks(self.emulator, enabled=True)
        try:
            yield
        finally:
            server.set_permission_checks(self.emulator, enabled=False)

    def admin_credentials(self) -> Credentials:
        """A fresh key of an IAM user allowed everything, for operator work while permission
        checks are on (the user is created on first use). Call it with checks off; earlier
        keys of that user are deleted, so IAM's two-keys-per-user limit is never hit."""
        iam = self.client("iam")
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_user(UserName=ADMIN_USER_NAME)
            iam.put_user_policy(
                UserName=ADMIN_USER_NAME, PolicyName="everything",
                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
            )
        for old in iam.list_access_keys(UserName=ADMIN_USER_NAME)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=ADMIN_USER_NAME, AccessKeyId=old["AccessKeyId"])
        key = iam.create_access_key(UserName=ADMIN_USER_NAME)["AccessKey"]
        return Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def partner_secret(self, stage: str = "AWSCURRENT") -> dict[str, Any]:
        """The partner's secret (docs/rotation.md), read as the operator with checks off."""
        arn = self.outputs["PartnerSecretArn"]
        value = self.client("secretsmanager").get_secret_value(SecretId=arn, VersionStage=stage)
        secret: dict[str, Any] = json.loads(value["SecretString"])
        return secret

    def partner_credentials(self, stage: str = "AWSCURRENT") -> Credentials:
        """The partner's access key, as the transfer client would get it from the hand-over."""
        secret = self.partner_secret(stage)
        return Credentials(secret["access_key_id"], secret["secret_access_key"])

    # --- persistence -----------------------------------------------------------------------

    def save(self) -> None:
        state = {
            "customer": self.customer,
            "outputs": self.outputs,
            "audit_outputs": self.audit_outputs,
            "database": self.database,
            "results": [asdict(r) for r in self.results],
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (self.run_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> LocalRun | None:
        emulator = Emulator.load(run_dir)
        try:
            state = json.loads((run_dir / STATE_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if emulator is None:
            return None
        return cls(
            run_dir=run_dir,
            customer=state["customer"],
            emulator=emulator,
            outputs=dict(state.get("outputs") or {}),
            audit_outputs=dict(state.get("audit_outputs") or {}),
            database=str(state.get("database") or ""),
            results=[StepResult(**r) for r in state.get("results") or []],
        )

