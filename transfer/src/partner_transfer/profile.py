"""The connection profile: one small TOML file per customer that says where and how to connect.

It holds no secrets. Credentials come from boto3's normal chain, a named AWS profile, a
credentials JSON file with the rotation secret's structure (referenced by path, read at run
time), a role assumed with an external id, or IAM Roles Anywhere with the partner's X.509
certificate and private key (referenced by path). See docs/client.md for the format.

Profiles are generated from the customer stack's outputs (:func:`profile_from_outputs`), or
from the rotation secret an operator hands over (:func:`profile_from_secret`), and rendered by
:func:`render_profile`. Loading validates every field and reports every problem at once.
"""

from __future__ import annotations

import enum
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from partner_transfer.errors import ExitCode, TransferError
from phi_core import outputs as stack_outputs
from phi_core import secret as secret_schema
from phi_core.vocabulary import AccessMode

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
PROFILE_ENV = "PARTNER_TRANSFER_PROFILE"

_ACCOUNT = re.compile(r"^[0-9]{12}$")
_KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$")
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# IAM Roles Anywhere resources: group 1 partition, 2 region, 3 account.
_TRUST_ANCHOR_ARN = re.compile(
    rf"^arn:(aws[a-z-]*):rolesanywhere:([a-z0-9-]+):([0-9]{{12}}):trust-anchor/{_UUID}$"
)
_RA_PROFILE_ARN = re.compile(
    rf"^arn:(aws[a-z-]*):rolesanywhere:([a-z0-9-]+):([0-9]{{12}}):profile/{_UUID}$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_KEY_FIELDS = (secret_schema.ACCESS_KEY_ID, secret_schema.SECRET_ACCESS_KEY)


class AuthMethod(enum.StrEnum):
    """Where credentials come from."""

    DEFAULT = "default"  # boto3's chain: env vars, ~/.aws, SSO, instance role, ...
    AWS_PROFILE = "aws-profile"  # a named profile in ~/.aws/config or credentials
    CREDENTIALS_FILE = "credentials-file"  # JSON with the rotation secret's structure
    ASSUME_ROLE = "assume-role"  # assume role_arn with external_id (source: aws_profile or chain)
    ROLES_ANYWHERE = "roles-anywhere"  # IAM Roles Anywhere: the partner's X.509 certificate


class RetryMode(enum.StrEnum):
    STANDARD = "standard"
    ADAPTIVE = "adaptive"


@dataclass(frozen=True)
class Auth:
    """How to obtain credentials; ``method`` decides which other fields are used.

    ``aws_profile`` (default none): the named profile for ``aws-profile``, or the source
    credentials for ``assume-role``. ``credentials_file``: path to the rotation secret JSON.
    ``role_arn``: the role for ``assume-role`` and ``roles-anywhere``; ``external_id``: for
    ``assume-role``. ``session_name`` (default ``"partner-transfer"``): the assumed-role
    session name, visible in CloudTrail (``assume-role`` only).

    ``roles-anywhere``: ``certificate`` (PEM end-entity certificate issued by the partner's CA),
    ``private_key`` (its PEM private key, RSA or EC), ``certificate_chain`` (default none: PEM
    intermediates between the certificate and the trust anchor), ``trust_anchor_arn`` and
    ``profile_arn`` (the IAM Roles Anywhere resources our stack created), and
    ``private_key_passphrase_env`` (default none: the key is unencrypted), the name of an
    environment variable holding the key's passphrase.
    """

    method: AuthMethod = AuthMethod.DEFAULT
    aws_profile: str | None = None
    credentials_file: Path | None = None
    role_arn: str | None = None
    external_id: str | None = None
    session_name: str = "partner-transfer"
    certificate: Path | None = None
    private_key: Path | None = None
    certificate_chain: Path | None = None
    trust_anchor_arn: str | None = None
    profile_arn: str | None = None
    private_key_passphrase_env: str | None = None

    def describe(self) -> str:
        """Where credentials come from, for messages (never the credentials themselves)."""
        if self.method is AuthMethod.CREDENTIALS_FILE:
            return f"credentials file {self.credentials_file}"
        if self.method is AuthMethod.AWS_PROFILE:
            return f"AWS profile {self.aws_profile}"
        if self.method is AuthMethod.ASSUME_ROLE:
            source = f"AWS profile {self.aws_profile}" if self.aws_profile else "default chain"
            return f"role {self.role_arn} via {source}"
        if self.method is AuthMethod.ROLES_ANYWHERE:
            return f"certificate {self.certificate} via IAM Roles Anywhere"
        return "boto3 default credential chain"


@dataclass(frozen=True)
class Tuning:
    """Transfer tuning. Defaults come from measurement (docs/benchmarks.md).

    ``concurrency`` (default 8): parallel requests, and the HTTP connection pool size.
    ``part_size`` (default 16 MiB): multipart part and download range size; files up to one part
    go in a single request. ``retry_mode`` (default standard) and ``max_attempts`` (default 5)
    configure botocore's retries.
    """

    concurrency: int = 8
    part_size: int = 16 * MIB
    retry_mode: RetryMode = RetryMode.STANDARD
    max_attempts: int = 5


@dataclass(frozen=True)
class Profile:
    """Everything the client needs to reach one customer's bucket, and nothing secret.

    ``inbound_prefix``/``outbound_prefix`` are ``None`` when that direction is not enabled.
    ``endpoint_url`` (default none: AWS) points every client at another S3 API, e.g. a local
    emulator; ``sts_endpoint_url`` (default: ``endpoint_url``) does the same for STS alone, for
    S3 servers that do not implement STS. ``rolesanywhere_endpoint_url`` (default:
    ``endpoint_url`` when set, else AWS's regional IAM Roles Anywhere endpoint) is where the
    ``roles-anywhere`` method asks for sessions; it must be ``https://HOST[:PORT]``, since the
    service is only reached over TLS. ``state_dir`` (default
    ``$XDG_STATE_HOME/partner-transfer/<customer>``) holds resume journals; ``manifest``
    (default ``<state_dir>/manifest.jsonl``) is the custody log. ``receipt_public_key``
    (default none) is the exchange's receipt key (PEM, the onboarding kit's
    ``receipt-public-key.pem``) that ``receipts verify`` checks signatures with.
    """

    customer: str
    bucket: str
    region: str
    bucket_owner: str
    kms_key_arn: str
    inbound_prefix: str | None = None
    outbound_prefix: str | None = None
    endpoint_url: str | None = None
    sts_endpoint_url: str | None = None
    rolesanywhere_endpoint_url: str | None = None
    auth: Auth = field(default_factory=Auth)
    tuning: Tuning = field(default_factory=Tuning)
    state_dir: Path | None = None
    manifest: Path | None = None
    receipt_public_key: Path | None = None

    @property
    def upload_prefixes(self) -> tuple[str, ...]:
        return (self.inbound_prefix,) if self.inbound_prefix else ()

    @property
    def download_prefixes(self) -> tuple[str, ...]:
        return (self.outbound_prefix,) if self.outbound_prefix else ()

    def resolved_rolesanywhere_endpoint_url(self) -> str | None:
        """Where ``roles-anywhere`` asks for sessions; ``None``: AWS's regional endpoint."""
        return self.rolesanywhere_endpoint_url or self.endpoint_url

    def resolved_state_dir(self) -> Path:
        if self.state_dir:
            return self.state_dir
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "partner-transfer" / self.customer

    def resolved_manifest(self) -> Path:
        return self.manifest or self.resolved_state_dir() / "manifest.jsonl"


def config_error(problems: list[str], source: str) -> TransferError:
    joined = "; ".join(problems)
    return TransferError(ExitCode.CONFIG, f"invalid connection profile {source}: {joined}")


_TOP_KEYS = {
    "customer",
    "bucket",
    "region",
    "bucket_owner",
    "kms_key_arn",
    "inbound_prefix",
    "outbound_prefix",
    "endpoint_url",
    "sts_endpoint_url",
    "rolesanywhere_endpoint_url",
    "state_dir",
    "manifest",
    "receipt_public_key",
    "auth",
    "transfer",
}
# Fields only the roles-anywhere method uses, and the fields it does not use.
_RA_KEYS = (
    "certificate",
    "private_key",
    "certificate_chain",
    "trust_anchor_arn",
    "profile_arn",
    "private_key_passphrase_env",
)
_NOT_RA_KEYS = ("aws_profile", "credentials_file", "external_id", "session_name")
_AUTH_KEYS = {
    "method",
    "aws_profile",
    "credentials_file",
    "role_arn",
    "external_id",
    "session_name",
    *_RA_KEYS,
}
_TUNING_KEYS = {"concurrency", "part_size_mib", "retry_mode", "max_attempts"}


def _str(
    data: Mapping[str, Any], name: str, problems: list[str], required: bool, where: str = ""
) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            problems.append(f"{where}{name} is required")
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{where}{name} must be a non-empty string, not {_toml_type(value)}")
        return None
    return value


def _toml_type(value: Any) -> str:
    """How TOML would call ``value``'s type, for messages."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return "an empty string"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _integer(value: Any) -> bool:
    # TOML's true/false arrive as bool, which Python counts as int: refuse them explicitly.
    return isinstance(value, int) and not isinstance(value, bool)


def _path(value: str | None, base: Path | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


def parse_profile(
    data: Mapping[str, Any], *, source: str = "", base: Path | None = None
) -> Profile:
    """Validate a parsed profile mapping; relative paths resolve against ``base``.

    Raises one ``TransferError(CONFIG)`` naming every problem.
    """
    problems: list[str] = [f"unknown field {k!r}" for k in data if k not in _TOP_KEYS]
    customer = _str(data, "customer", problems, True)
    bucket = _str(data, "bucket", problems, True)
    region = _str(data, "region", problems, True)
    owner = _str(data, "bucket_owner", problems, True)
    key_arn = _str(data, "kms_key_arn", problems, True)
    inbound = _str(data, "inbound_prefix", problems, False)
    outbound = _str(data, "outbound_prefix", problems, False)
    endpoint = _str(data, "endpoint_url", problems, False)
    sts_endpoint = _str(data, "sts_endpoint_url", problems, False)
    ra_endpoint = _str(data, "rolesanywhere_endpoint_url", problems, False)
    state_dir = _str(data, "state_dir", problems, False)
    manifest = _str(data, "manifest", problems, False)
    receipt_key = _str(data, "receipt_public_key", problems, False)
    if bucket and not _BUCKET.match(bucket):
        problems.append(f"bucket {bucket!r} is not a valid bucket name")
    if region and not _REGION.match(region):
        problems.append(f"region {region!r} is not a region name like eu-west-2")
    if owner and not _ACCOUNT.match(owner):
        problems.append("bucket_owner must be a 12-digit account id")
    if key_arn and not _KMS_ARN.match(key_arn):
        problems.append("kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)")
    for name, prefix in (("inbound_prefix", inbound), ("outbound_prefix", outbound)):
        if prefix is not None and (not prefix.endswith("/") or prefix.startswith("/")):
            problems.append(f"{name} must end with '/' and not start with it")
    if inbound is None and outbound is None:
        problems.append("at least one of inbound_prefix and outbound_prefix is required")
    for name, url in (("endpoint_url", endpoint), ("sts_endpoint_url", sts_endpoint)):
        if url and not url.startswith(("http://", "https://")):
            problems.append(f"{name} must start with http:// or https://")

    auth_data = data.get("auth", {})
    auth = Auth()
    if not isinstance(auth_data, Mapping):
        problems.append("[auth] must be a table")
    else:
        problems += [f"unknown field auth.{k}" for k in auth_data if k not in _AUTH_KEYS]
        method_name = auth_data.get("method", AuthMethod.DEFAULT.value)
        try:
            if not isinstance(method_name, str):
                raise ValueError(method_name)
            method = AuthMethod(method_name)
        except ValueError:
            choices = ", ".join(m.value for m in AuthMethod)
            problems.append(f"auth.method {method_name!r} is not one of {choices}")
            method = AuthMethod.DEFAULT
        aws_profile = _str(
            auth_data, "aws_profile", problems, method is AuthMethod.AWS_PROFILE, "auth."
        )
        cred_file = _str(
            auth_data, "credentials_file", problems, method is AuthMethod.CREDENTIALS_FILE, "auth."
        )
        roles_anywhere = method is AuthMethod.ROLES_ANYWHERE
        role_arn = _str(
            auth_data,
            "role_arn",
            problems,
            method in (AuthMethod.ASSUME_ROLE, AuthMethod.ROLES_ANYWHERE),
            "auth.",
        )
        certificate = _str(auth_data, "certificate", problems, roles_anywhere, "auth.")
        private_key = _str(auth_data, "private_key", problems, roles_anywhere, "auth.")
        chain = _str(auth_data, "certificate_chain", problems, False, "auth.")
        anchor_arn = _str(auth_data, "trust_anchor_arn", problems, roles_anywhere, "auth.")
        ra_profile_arn = _str(auth_data, "profile_arn", problems, roles_anywhere, "auth.")
        passphrase_env = _str(auth_data, "private_key_passphrase_env", problems, False, "auth.")
        external_id = _str(
            auth_data, "external_id", problems, method is AuthMethod.ASSUME_ROLE, "auth."
        )
        session_name = (
            _str(auth_data, "session_name", problems, False, "auth.") or "partner-transfer"
        )
        if role_arn and not _ROLE_ARN.match(role_arn):
            problems.append("auth.role_arn must be an IAM role ARN")
        if roles_anywhere:
            problems += [
                f"auth.{k} is not used by method roles-anywhere: remove it"
                for k in _NOT_RA_KEYS
                if k in auth_data
            ]
            problems += _roles_anywhere_problems(
                anchor_arn, ra_profile_arn, role_arn, passphrase_env, region
            )
        else:
            problems += [
                f"auth.{k} is only for method roles-anywhere: remove it or set "
                'method = "roles-anywhere"'
                for k in _RA_KEYS
                if k in auth_data
            ]
        for secret in ("aws_secret_access_key", "secret_access_key", "access_key_id"):
            if secret in auth_data:
                problems.append(f"auth.{secret}: secrets never go in the profile")
        auth = Auth(
            method=method,
            aws_profile=aws_profile,
            credentials_file=_path(cred_file, base),
            role_arn=role_arn,
            external_id=external_id,
            session_name=session_name,
            certificate=_path(certificate, base),
            private_key=_path(private_key, base),
            certificate_chain=_path(chain, base),
            trust_anchor_arn=anchor_arn,
            profile_arn=ra_profile_arn,
            private_key_passphrase_env=passphrase_env,
        )
    problems += _rolesanywhere_endpoint_problems(auth.method, ra_endpoint, endpoint)

    tuning_data = data.get("transfer", {})
    tuning = Tuning()
    if not isinstance(tuning_data, Mapping):
        problems.append("[transfer] must be a table")
    else:
        problems += [f"unknown field transfer.{k}" for k in tuning_data if k not in _TUNING_KEYS]
        try:
            tuning = make_tuning(
                concurrency=tuning_data.get("concurrency"),
                part_size_mib=tuning_data.get("part_size_mib"),
                retry_mode=tuning_data.get("retry_mode"),
                max_attempts=tuning_data.get("max_attempts"),
            )
        except TransferError as exc:
            problems.append(exc.message)

    if problems:
        raise config_error(problems, source)
    assert customer and bucket and region and owner and key_arn  # guaranteed by problems
    return Profile(
        customer=customer,
        bucket=bucket,
        region=region,
        bucket_owner=owner,
        kms_key_arn=key_arn,
        inbound_prefix=inbound,
        outbound_prefix=outbound,
        endpoint_url=endpoint,
        sts_endpoint_url=sts_endpoint,
        rolesanywhere_endpoint_url=ra_endpoint,
        auth=auth,
        tuning=tuning,
        state_dir=_path(state_dir, base),
        manifest=_path(manifest, base),
        receipt_public_key=_path(receipt_key, base),
    )


def _roles_anywhere_problems(
    anchor_arn: str | None,
    profile_arn: str | None,
    role_arn: str | None,
    passphrase_env: str | None,
    region: str | None,
) -> list[str]:
    """The roles-anywhere fields' own rules: ARN shapes, and every ARN in the profile's region
    (IAM Roles Anywhere is regional) and in one partition and account."""
    problems: list[str] = []
    found: dict[str, tuple[str, str, str]] = {}  # field -> (partition, region, account)
    for name, value, pattern, kind in (
        ("trust_anchor_arn", anchor_arn, _TRUST_ANCHOR_ARN, "trust-anchor"),
        ("profile_arn", profile_arn, _RA_PROFILE_ARN, "profile"),
    ):
        if value is None:
            continue
        match = pattern.match(value)
        if match is None:
            problems.append(
                f"auth.{name} must be an IAM Roles Anywhere {kind} ARN "
                f"(arn:aws:rolesanywhere:REGION:ACCOUNT:{kind}/UUID)"
            )
            continue
        partition, arn_region, account = match.groups()
        found[name] = (partition, arn_region, account)
        if region and arn_region != region:
            problems.append(
                f"auth.{name} is in region {arn_region}, not the profile's region {region}: "
                "IAM Roles Anywhere is regional, use the ARNs from this customer's stack"
            )
    if role_arn and _ROLE_ARN.match(role_arn):
        partition, _, _, account = role_arn.split(":")[1:5]
        found["role_arn"] = (partition, "", account)
    if len({(p, a) for p, _, a in found.values()}) > 1:
        names = ", ".join(f"auth.{n}" for n in found)
        problems.append(
            f"{names} are not all in one partition and account: use the ARNs from this "
            "customer's stack"
        )
    if passphrase_env is not None and not _ENV_NAME.match(passphrase_env):
        problems.append(
            "auth.private_key_passphrase_env must be the name of an environment variable "
            "(letters, digits, _), not the passphrase itself"
        )
    return problems


def _rolesanywhere_endpoint_problems(
    method: AuthMethod, ra_endpoint: str | None, endpoint: str | None
) -> list[str]:
    """``rolesanywhere_endpoint_url`` (or ``endpoint_url``, its default) must be
    ``https://HOST[:PORT]``: the session request is always made over TLS to ``/sessions``."""
    if method is not AuthMethod.ROLES_ANYWHERE:
        if ra_endpoint is not None:
            return ["rolesanywhere_endpoint_url is only for auth.method roles-anywhere: remove it"]
        return []
    url, name = (ra_endpoint, "rolesanywhere_endpoint_url")
    if url is None:
        url, name = (endpoint, "endpoint_url")
    if url is None:
        return []
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        hint = " (or set rolesanywhere_endpoint_url)" if name == "endpoint_url" else ""
        return [
            f"{name} must be https://HOST[:PORT] for auth.method roles-anywhere: IAM Roles "
            f"Anywhere is reached over TLS only{hint}"
        ]
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return [f"{name} must be https://HOST[:PORT] with no path for auth.method roles-anywhere"]
    return []


def make_tuning(
    *,
    concurrency: Any = None,
    part_size_mib: Any = None,
    retry_mode: Any = None,
    max_attempts: Any = None,
    base: Tuning | None = None,
) -> Tuning:
    """A :class:`Tuning` from optional overrides on top of ``base`` (default: the defaults)."""
    tuning = base or Tuning()
    problems: list[str] = []
    if concurrency is not None:
        if not _integer(concurrency) or not 1 <= concurrency <= 64:
            problems.append("concurrency must be an integer from 1 to 64")
        else:
            tuning = replace(tuning, concurrency=concurrency)
    if part_size_mib is not None:
        if not _integer(part_size_mib) or not 5 <= part_size_mib <= 5120:
            problems.append("part size must be an integer number of MiB from 5 to 5120")
        else:
            tuning = replace(tuning, part_size=part_size_mib * MIB)
    if retry_mode is not None:
        try:
            if not isinstance(retry_mode, str):
                raise ValueError(retry_mode)
            tuning = replace(tuning, retry_mode=RetryMode(retry_mode))
        except ValueError:
            problems.append("retry mode must be standard or adaptive")
    if max_attempts is not None:
        if not _integer(max_attempts) or not 1 <= max_attempts <= 20:
            problems.append("max attempts must be an integer from 1 to 20")
        else:
            tuning = replace(tuning, max_attempts=max_attempts)
    if problems:
        raise TransferError(ExitCode.USAGE, "; ".join(problems))
    return tuning


def find_profile_path(explicit: str | None) -> Path:
    """``--profile`` if given, else ``$PARTNER_TRANSFER_PROFILE``; refuses when neither is set."""
    chosen = explicit or os.environ.get(PROFILE_ENV)
    if not chosen:
        raise TransferError(
            ExitCode.CONFIG,
            f"no connection profile: pass --profile FILE or set {PROFILE_ENV} "
            "(create one with `partner-transfer profile init`)",
        )
    return Path(chosen).expanduser()


def load_profile(path: Path) -> Profile:
    """Read and validate a TOML profile; ``TransferError(CONFIG)`` if missing or invalid."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TransferError(
            ExitCode.CONFIG,
            f"connection profile {path} does not exist: create it with "
            "`partner-transfer profile init`",
        ) from None
    except IsADirectoryError:
        raise TransferError(
            ExitCode.CONFIG,
            f"connection profile {path} is a folder, not a file: pass the profile's TOML file "
            "with --profile",
        ) from None
    except OSError as exc:
        raise TransferError(
            ExitCode.CONFIG,
            f"connection profile {path} cannot be read ({exc.strerror or exc}): check the path "
            "and its permissions",
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise config_error([f"not valid TOML ({exc})"], str(path)) from None
    except RecursionError:
        raise config_error(
            ["not valid TOML for a profile (nested too deeply to read)"], str(path)
        ) from None
    return parse_profile(data, source=str(path), base=path.parent)


@dataclass(frozen=True)
class SecretCredentials:
    """The two fields of the rotation secret that sign requests. ``repr`` hides the secret."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


def _read_json(
    path: Path, what: str, missing_hint: str, missing: ExitCode = ExitCode.CONFIG
) -> Any:
    """A JSON document from ``path``; every way it can fail is one line (``missing``, default
    ``CONFIG``, when there is no such file; ``CONFIG`` otherwise)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TransferError(missing, f"{what} {path} does not exist: {missing_hint}") from None
    except IsADirectoryError:
        raise TransferError(
            ExitCode.CONFIG, f"{what} {path} is a folder, not a file: {missing_hint}"
        ) from None
    except OSError as exc:
        raise TransferError(
            ExitCode.CONFIG,
            f"{what} {path} cannot be read ({exc.strerror or exc}): check its permissions",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise TransferError(ExitCode.CONFIG, f"{what} {path} is not valid JSON") from None


def read_secret_file(path: Path) -> dict[str, Any]:
    """The partner secret schema (the rotation secret / key hand-over JSON), parsed and checked:
    the one place that reads it. ``TransferError(CONFIG)`` if missing or malformed."""
    data = _read_json(
        path,
        "credentials file",
        "save the rotation secret your operator sent there, or fix auth.credentials_file",
    )
    try:
        secret_schema.parse_partner_secret(data, require=_KEY_FIELDS)
    except secret_schema.SecretError:
        raise TransferError(
            ExitCode.CONFIG,
            f"credentials file {path} lacks access_key_id/secret_access_key",
        ) from None
    assert isinstance(data, dict)
    return data


def load_secret_credentials(path: Path, *, bucket: str | None = None) -> SecretCredentials:
    """The access key pair from a rotation-secret file; refuses a file for another bucket."""
    data = read_secret_file(path)
    if bucket and data.get(secret_schema.BUCKET) and data[secret_schema.BUCKET] != bucket:
        raise TransferError(
            ExitCode.CONFIG,
            f"credentials file {path} is for bucket {data['bucket']}, not {bucket}: "
            "use the file for this customer",
        )
    return SecretCredentials(
        data[secret_schema.ACCESS_KEY_ID], data[secret_schema.SECRET_ACCESS_KEY]
    )


# -- generation ---------------------------------------------------------------------------------


def read_stack_outputs_file(path: Path, stack: str | None) -> dict[str, str]:
    """The stack outputs schema (a ``cdk deploy --outputs-file`` JSON document), parsed: the
    one place that reads it. Returns one stack's outputs (see :func:`select_stack_outputs`);
    :func:`profile_from_outputs` maps them to a profile."""
    document = _read_json(
        path, "outputs file", "pass the cdk outputs JSON file", missing=ExitCode.NOT_FOUND
    )
    if not isinstance(document, Mapping):
        raise TransferError(ExitCode.CONFIG, f"{path} is not a cdk outputs JSON file")
    return select_stack_outputs(document, stack)


def select_stack_outputs(document: Mapping[str, Any], stack: str | None) -> dict[str, str]:
    """Pick one stack's outputs from a ``cdk deploy --outputs-file`` document.

    ``stack`` (default: the only customer stack in the file) names the stack.
    """
    try:
        outputs = stack_outputs.outputs_of_stack(document, stack, source="the outputs file")
    except stack_outputs.OutputsError as err:
        code = ExitCode.USAGE if stack is None else ExitCode.NOT_FOUND
        hint = ": pass --stack NAME" if stack is None else ""
        raise TransferError(code, f"{err}{hint}") from None
    return {str(k): str(v) for k, v in outputs.items()}


def profile_from_outputs(
    outputs: Mapping[str, str],
    *,
    aws_profile: str | None = None,
    credentials_file: Path | None = None,
    endpoint_url: str | None = None,
    receipt_public_key: Path | None = None,
    certificate: Path | None = None,
    private_key: Path | None = None,
    certificate_chain: Path | None = None,
) -> Profile:
    """A profile from the customer stack's outputs plus the partner's choice of credentials
    (and, optionally, the path of the exchange's receipt key, ``receipt_public_key``).

    ``iam-user`` needs ``credentials_file`` (the rotation secret JSON) or ``aws_profile``;
    ``assume-role`` takes the role and external id from the outputs and uses ``aws_profile``
    (default: the default chain) as source credentials; ``cross-account`` uses ``aws_profile``
    or the default chain. ``roles-anywhere`` takes the role, trust anchor and profile ARNs
    from the outputs and needs ``certificate`` and ``private_key`` (``certificate_chain``
    optional); those three are refused in the other modes (``TransferError(USAGE)``).
    """
    try:
        parsed = stack_outputs.parse_stack_outputs(outputs, source="the outputs file")
    except stack_outputs.OutputsError as err:
        raise TransferError(ExitCode.CONFIG, f"{err}: is it a customer stack?") from None
    if parsed.offboarded:
        raise TransferError(
            ExitCode.CONFIG, f"customer {parsed.slug} is offboarded: its stack grants no access"
        )
    x509_options = {
        "--certificate": certificate,
        "--private-key": private_key,
        "--certificate-chain": certificate_chain,
    }
    if parsed.access is not AccessMode.ROLES_ANYWHERE:
        given = [name for name, value in x509_options.items() if value is not None]
        if given:
            raise TransferError(
                ExitCode.USAGE,
                f"{', '.join(given)}: only for roles-anywhere access; this stack's access mode "
                f"is {parsed.access.value}",
            )
    auth: Auth
    if parsed.access is AccessMode.IAM_USER:
        if credentials_file is not None:
            auth = Auth(AuthMethod.CREDENTIALS_FILE, credentials_file=credentials_file)
        elif aws_profile:
            auth = Auth(AuthMethod.AWS_PROFILE, aws_profile=aws_profile)
        else:
            raise TransferError(
                ExitCode.USAGE,
                "iam-user access needs --credentials-file FILE (the rotation secret JSON your "
                f"operator sent; user {parsed.user_name or '?'}) or --aws-profile NAME",
            )
    elif parsed.access is AccessMode.ASSUME_ROLE:
        auth = Auth(
            AuthMethod.ASSUME_ROLE,
            aws_profile=aws_profile,
            role_arn=parsed.role_arn,
            external_id=parsed.external_id,
        )
    elif parsed.access is AccessMode.ROLES_ANYWHERE:
        missing = [name for name in ("--certificate", "--private-key") if not x509_options[name]]
        if missing:
            raise TransferError(
                ExitCode.USAGE,
                "roles-anywhere access needs --certificate FILE (the PEM certificate your CA "
                "issued for this client) and --private-key FILE (its PEM private key); "
                f"missing {' and '.join(missing)}",
            )
        if credentials_file is not None:
            raise TransferError(
                ExitCode.USAGE,
                "--credentials-file: not used by roles-anywhere access (the certificate and "
                "its private key are the credentials)",
            )
        auth = Auth(
            AuthMethod.ROLES_ANYWHERE,
            role_arn=parsed.role_arn,
            certificate=certificate,
            private_key=private_key,
            certificate_chain=certificate_chain,
            trust_anchor_arn=parsed.trust_anchor_arn,
            profile_arn=parsed.profile_arn,
        )
    else:
        auth = Auth(AuthMethod.AWS_PROFILE, aws_profile=aws_profile) if aws_profile else Auth()
    profile = Profile(
        customer=parsed.slug,
        bucket=parsed.bucket,
        region=parsed.region,
        bucket_owner=parsed.account,
        kms_key_arn=parsed.kms_key_arn,
        inbound_prefix=parsed.inbound_prefix,
        outbound_prefix=parsed.outbound_prefix,
        endpoint_url=endpoint_url,
        auth=auth,
        receipt_public_key=receipt_public_key,
    )
    return _revalidate(profile)


def profile_from_secret(
    secret: Mapping[str, Any],
    credentials_file: Path,
    *,
    customer: str | None = None,
    endpoint_url: str | None = None,
    receipt_public_key: Path | None = None,
) -> Profile:
    """A profile from the rotation secret (iam-user mode), referencing the file, not copying keys.

    ``customer`` (default: derived from the bucket name ``phi-<slug>-...``) names the profile;
    ``receipt_public_key`` (default none) is the path of the exchange's receipt key.
    """
    if not (secret.get("inbound_prefix") or secret.get("outbound_prefix")):
        # Current secrets hold only values fixed for the stack's life (docs/rotation.md); the
        # prefixes follow the registry's directions and come with the onboarding kit.
        raise TransferError(
            ExitCode.CONFIG,
            "the key hand-over file names no prefixes: create the profile from your onboarding "
            "kit's outputs file instead: partner-transfer profile init --outputs-file "
            f"<slug>-outputs.json --credentials-file {credentials_file} -o <slug>.toml",
        )
    bucket = str(secret.get(secret_schema.BUCKET, ""))
    slug = customer or (bucket.split("-")[1] if bucket.startswith("phi-") else bucket)
    profile = Profile(
        customer=slug,
        bucket=bucket,
        region=str(secret.get(secret_schema.REGION, "")),
        bucket_owner=str(secret.get(secret_schema.BUCKET_OWNER, "")),
        kms_key_arn=str(secret.get(secret_schema.KMS_KEY_ARN, "")),
        inbound_prefix=secret.get("inbound_prefix") or None,
        outbound_prefix=secret.get("outbound_prefix") or None,
        endpoint_url=endpoint_url,
        auth=Auth(AuthMethod.CREDENTIALS_FILE, credentials_file=credentials_file),
        receipt_public_key=receipt_public_key,
    )
    return _revalidate(profile)


def _revalidate(profile: Profile) -> Profile:
    parsed = tomllib.loads(render_profile(profile))
    return parse_profile(parsed, source="(generated)")


def _toml_str(value: str) -> str:
    # A JSON string literal is a valid TOML basic string (same escapes, \uXXXX included).
    return json.dumps(value, ensure_ascii=False)


def render_profile(profile: Profile, *, comment: str = "") -> str:
    """The profile as TOML text, with every optional field shown (commented out when unset)."""
    lines = [f"# {line}" for line in comment.splitlines()] if comment else []
    lines.append("# partner-transfer connection profile. No secrets: see docs/client.md.")

    def put(name: str, value: str | None, hint: str = "") -> None:
        if value is None:
            lines.append(f"# {name} = {_toml_str(hint)}" if hint else f"# {name} =")
        else:
            lines.append(f"{name} = {_toml_str(value)}")

    put("customer", profile.customer)
    put("bucket", profile.bucket)
    put("region", profile.region)
    put("bucket_owner", profile.bucket_owner)
    put("kms_key_arn", profile.kms_key_arn)
    put("inbound_prefix", profile.inbound_prefix, "inbound/")
    put("outbound_prefix", profile.outbound_prefix, "outbound/")
    put("endpoint_url", profile.endpoint_url, "http://127.0.0.1:5000")
    if profile.sts_endpoint_url:
        put("sts_endpoint_url", profile.sts_endpoint_url)
    if profile.rolesanywhere_endpoint_url:
        put("rolesanywhere_endpoint_url", profile.rolesanywhere_endpoint_url)
    put("state_dir", str(profile.state_dir) if profile.state_dir else None)
    put("manifest", str(profile.manifest) if profile.manifest else None)
    key = profile.receipt_public_key
    put("receipt_public_key", str(key) if key else None)
    auth = profile.auth
    lines += ["", "[auth]"]
    put("method", auth.method.value)
    if auth.method is AuthMethod.ROLES_ANYWHERE:
        put("certificate", str(auth.certificate) if auth.certificate else None)
        put("private_key", str(auth.private_key) if auth.private_key else None)
        chain = auth.certificate_chain
        put("certificate_chain", str(chain) if chain else None, "intermediates.pem")
        put("trust_anchor_arn", auth.trust_anchor_arn)
        put("profile_arn", auth.profile_arn)
        put("role_arn", auth.role_arn)
        if auth.private_key_passphrase_env:
            put("private_key_passphrase_env", auth.private_key_passphrase_env)
    else:
        put("aws_profile", auth.aws_profile)
        put("credentials_file", str(auth.credentials_file) if auth.credentials_file else None)
        put("role_arn", auth.role_arn)
        put("external_id", auth.external_id)
        if auth.session_name != "partner-transfer":
            put("session_name", auth.session_name)
    t = profile.tuning
    lines += [
        "",
        "[transfer]",
        f"concurrency = {t.concurrency}",
        f"part_size_mib = {t.part_size // MIB}",
        f'retry_mode = "{t.retry_mode.value}"',
        f"max_attempts = {t.max_attempts}",
    ]
    return "\n".join(lines) + "\n"
