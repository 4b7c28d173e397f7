"""The one seam to AWS: :func:`make_clients` builds every boto3 client the tool uses.

Tests and local runs point the tool elsewhere through the profile's ``endpoint_url``; nothing
else in the package creates a session or a client.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError, SSLError
from botocore.utils import determine_content_length

from partner_transfer import __version__
from partner_transfer.errors import ExitCode, TransferError, mask_access_key
from partner_transfer.profile import (
    Auth,
    AuthMethod,
    Profile,
    RetryMode,
    load_secret_credentials,
)

ASSUME_ROLE_SECONDS = 3600
ROLES_ANYWHERE_SECONDS = 3600


@dataclass
class Clients:
    """The clients for one run: ``s3`` (pool sized for the run's concurrency) and ``sts``."""

    session: boto3.Session
    s3: Any
    sts: Any
    access_key_hint: str

    def client(self, service: str, **kwargs: Any) -> Any:
        """Another client from the same session (e.g. ``cloudformation`` for profile init)."""
        return self.session.client(service, **kwargs)


def client_config(
    *,
    region: str,
    concurrency: int = 8,
    retry_mode: RetryMode = RetryMode.STANDARD,
    max_attempts: int = 5,
    path_style: bool = False,
) -> Config:
    """botocore config: retries, a connection pool of ``concurrency + 2`` (at least 10).

    Request checksums are ``when_required`` because the client always sends its own
    precomputed CRC64NVME; response checksums stay ``when_supported`` so botocore also
    validates whole-object GETs as they stream.

    Payload signing is off: every body travels with a signed ``x-amz-checksum-crc64nvme``
    header that S3 verifies, and on AWS the bucket policy demands TLS. That is botocore's own
    default for checksummed uploads over HTTPS, which it cannot see here because the client
    sets the checksum header itself (it would otherwise SHA-256 every body a second time).
    Over plain HTTP, i.e. a local emulator, bodies are therefore not signed either.
    """
    return Config(
        region_name=region,
        retries={"mode": retry_mode.value, "max_attempts": max_attempts},
        max_pool_connections=max(10, concurrency + 2),
        connect_timeout=10,
        read_timeout=60,
        tcp_keepalive=True,
        user_agent_appid=f"partner-transfer-{__version__}",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_supported",
        s3={
            "payload_signing_enabled": False,
            **({"addressing_style": "path"} if path_style else {}),
        },
    )


def make_session(
    auth: Auth,
    *,
    region: str,
    sts_endpoint_url: str | None = None,
    bucket: str | None = None,
    rolesanywhere_endpoint_url: str | None = None,
    session_seconds: int = ROLES_ANYWHERE_SECONDS,
) -> boto3.Session:
    """A boto3 session for ``auth``; credentials are resolved lazily by botocore.

    ``credentials-file`` reads the key pair at run time (``bucket``, when given, must match the
    file's); ``assume-role`` returns auto-refreshing credentials with the external id;
    ``roles-anywhere`` checks the certificate files, then returns auto-refreshing credentials
    from IAM Roles Anywhere (``rolesanywhere_endpoint_url``, default AWS's regional endpoint;
    sessions of ``session_seconds``, default 3600). Both fetch the first credentials now, so
    a refusal is one line here rather than a failure in the middle of a transfer.
    """
    if auth.method is AuthMethod.ROLES_ANYWHERE:
        return _roles_anywhere_session(
            auth, region=region, endpoint_url=rolesanywhere_endpoint_url, seconds=session_seconds
        )
    if auth.method is AuthMethod.CREDENTIALS_FILE:
        assert auth.credentials_file is not None
        creds = load_secret_credentials(auth.credentials_file, bucket=bucket)
        return boto3.Session(
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            region_name=region,
        )
    base = boto3.Session(profile_name=auth.aws_profile, region_name=region)
    if auth.method is not AuthMethod.ASSUME_ROLE:
        return base
    sts = base.client("sts", endpoint_url=sts_endpoint_url, config=client_config(region=region))

    def refresh() -> dict[str, str]:
        assert auth.role_arn and auth.external_id
        c = sts.assume_role(
            RoleArn=auth.role_arn,
            RoleSessionName=auth.session_name,
            ExternalId=auth.external_id,
            DurationSeconds=ASSUME_ROLE_SECONDS,
        )["Credentials"]
        expiry: datetime = c["Expiration"]
        return {
            "access_key": c["AccessKeyId"],
            "secret_key": c["SecretAccessKey"],
            "token": c["SessionToken"],
            "expiry_time": expiry.isoformat(),
        }

    try:
        first = refresh()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in ("AccessDenied", "AccessDeniedException"):
            raise
        raise TransferError(
            ExitCode.ACCESS_DENIED,
            f"could not assume role {auth.role_arn} ({auth.describe()}): check role_arn and "
            "external_id in the profile, and that your operator trusts your principal",
        ) from None
    return _refreshing_session(first, refresh, method="assume-role", region=region)


def _refreshing_session(
    first: dict[str, str], refresh: Callable[[], dict[str, str]], *, method: str, region: str
) -> boto3.Session:
    """A session whose credentials start as ``first`` and renew through ``refresh`` before
    they expire (botocore refreshes 15 minutes ahead, and at the latest 10 minutes ahead)."""
    credentials = RefreshableCredentials.create_from_metadata(
        metadata=first, refresh_using=refresh, method=method
    )
    core = botocore.session.get_session()
    # botocore has no public setter for refreshable credentials on a session; this attribute is
    # what its own AssumeRole provider fills in.
    core._credentials = credentials
    return boto3.Session(botocore_session=core, region_name=region)


# -- IAM Roles Anywhere -------------------------------------------------------------------------


@dataclass(frozen=True)
class X509Material:
    """The checked contents of the roles-anywhere files: PEM bytes as read, and the
    certificate's subject for messages. ``repr`` hides the key and its passphrase."""

    certificate: bytes
    private_key: bytes = field(repr=False)
    chain: bytes | None
    subject: str
    passphrase: str | None = field(default=None, repr=False)


def _read_pem_file(path: Path, what: str, field_name: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TransferError(
            ExitCode.CONFIG,
            f"{what} {path} does not exist: fix auth.{field_name} in the connection profile",
        ) from None
    except IsADirectoryError:
        raise TransferError(
            ExitCode.CONFIG,
            f"{what} {path} is a folder, not a file: fix auth.{field_name} in the connection "
            "profile",
        ) from None
    except OSError as exc:
        raise TransferError(
            ExitCode.CONFIG,
            f"{what} {path} cannot be read ({exc.strerror or exc}): check its permissions",
        ) from None


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _key_kind(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import dsa, ed448, ed25519, x448, x25519

    kinds = (
        (ed25519.Ed25519PrivateKey, "Ed25519"),
        (ed448.Ed448PrivateKey, "Ed448"),
        (x25519.X25519PrivateKey, "X25519"),
        (x448.X448PrivateKey, "X448"),
        (dsa.DSAPrivateKey, "DSA"),
    )
    return next((name for kind, name in kinds if isinstance(key, kind)), type(key).__name__)


def load_x509_material(auth: Auth, *, now: datetime | None = None) -> X509Material:
    """Read and check the roles-anywhere certificate, private key and chain files.

    Every refusal is ``TransferError(CONFIG)`` with one line naming the file and the rule:
    missing or unreadable; not a PEM certificate; a CA certificate; not yet valid or expired
    (at ``now``, default the current time); a private key readable by group or others (POSIX
    only, as ssh refuses them); not a PEM private key, or encrypted without a passphrase; not
    RSA or EC; not the certificate's key; a chain file without PEM certificates.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    assert auth.certificate is not None and auth.private_key is not None
    cert_path, key_path = auth.certificate, auth.private_key
    now = now or datetime.now(UTC)

    cert_pem = _read_pem_file(cert_path, "certificate file", "certificate")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        swapped = b"PRIVATE KEY-----" in cert_pem
        hint = (
            ": it holds a private key; are certificate and private_key swapped?"
            if swapped
            else ": expected -----BEGIN CERTIFICATE-----"
        )
        raise TransferError(
            ExitCode.CONFIG, f"certificate file {cert_path} is not a PEM certificate{hint}"
        ) from None
    subject = cert.subject.rfc4514_string() or "(empty subject)"
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    except ValueError as exc:  # a malformed or duplicated extension
        raise TransferError(
            ExitCode.CONFIG, f"certificate file {cert_path} ({subject}) cannot be read: {exc}"
        ) from None
    if is_ca:
        raise TransferError(
            ExitCode.CONFIG,
            f"certificate {cert_path} ({subject}) is a CA certificate: use the end-entity "
            "certificate your CA issued for this client, not the CA's own",
        )
    if now < cert.not_valid_before_utc:
        raise TransferError(
            ExitCode.CONFIG,
            f"certificate {cert_path} ({subject}) is not valid until "
            f"{_when(cert.not_valid_before_utc)}: check this machine's clock, or wait",
        )
    if now > cert.not_valid_after_utc:
        raise TransferError(
            ExitCode.CONFIG,
            f"certificate {cert_path} ({subject}) expired on {_when(cert.not_valid_after_utc)}: "
            "ask your CA for a new certificate",
        )

    if os.name != "nt":
        try:
            mode = key_path.stat().st_mode & 0o777
        except OSError:
            mode = 0  # reading it below gives the precise error
        if mode & 0o077:
            raise TransferError(
                ExitCode.CONFIG,
                f"private key file {key_path} is accessible by group or others (mode "
                f"{mode:04o}): run `chmod 600 {key_path}`",
            )
    key_pem = _read_pem_file(key_path, "private key file", "private_key")
    passphrase: str | None = None
    if auth.private_key_passphrase_env:
        passphrase = os.environ.get(auth.private_key_passphrase_env)
        if not passphrase:
            raise TransferError(
                ExitCode.CONFIG,
                f"private key {key_path}: environment variable "
                f"{auth.private_key_passphrase_env} (auth.private_key_passphrase_env) is not "
                "set: set it to the key's passphrase",
            )
    encrypted = b"ENCRYPTED" in key_pem
    try:
        key = serialization.load_pem_private_key(
            key_pem, password=passphrase.encode() if passphrase and encrypted else None
        )
    except TypeError:  # cryptography's answer for an encrypted key without a password
        raise TransferError(
            ExitCode.CONFIG,
            f"private key file {key_path} is encrypted: set auth.private_key_passphrase_env to "
            "the name of an environment variable holding its passphrase, or decrypt it "
            "(`openssl pkey -in KEY -out KEY.plain`, then `chmod 600`)",
        ) from None
    except ValueError:
        if encrypted and passphrase:
            rule = "cannot be decrypted with the passphrase in " + str(
                auth.private_key_passphrase_env
            )
        elif b"-----BEGIN CERTIFICATE" in key_pem:
            rule = (
                "is not a PEM private key: it holds a certificate; are certificate and "
                "private_key swapped?"
            )
        else:
            rule = "is not a PEM private key: expected -----BEGIN PRIVATE KEY-----"
        raise TransferError(ExitCode.CONFIG, f"private key file {key_path} {rule}") from None
    except Exception as exc:  # cryptography.exceptions.UnsupportedAlgorithm, and kin
        raise TransferError(
            ExitCode.CONFIG,
            f"private key file {key_path} is not a usable PEM private key ({exc})",
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TransferError(
            ExitCode.CONFIG,
            f"private key {key_path} has key type {_key_kind(key)}: IAM Roles Anywhere signs "
            "with RSA or EC keys only",
        )
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise TransferError(
            ExitCode.CONFIG,
            f"private key {key_path} does not match certificate {cert_path} ({subject}): "
            "its public key differs; use the key the certificate was issued for",
        )

    chain_pem: bytes | None = None
    if auth.certificate_chain is not None:
        chain_path = auth.certificate_chain
        chain_pem = _read_pem_file(chain_path, "certificate chain file", "certificate_chain")
        try:
            x509.load_pem_x509_certificates(chain_pem)
        except ValueError:
            raise TransferError(
                ExitCode.CONFIG,
                f"certificate chain file {chain_path} holds no PEM certificates: expected "
                "one or more -----BEGIN CERTIFICATE----- blocks (your CA's intermediates)",
            ) from None
    # The library decrypts the key again itself, and refuses a passphrase for a key that is
    # not encrypted: pass one only where it is needed.
    return X509Material(cert_pem, key_pem, chain_pem, subject, passphrase if encrypted else None)


def _sha256_signer() -> type:
    from iam_rolesanywhere_session.iam_rolesanywhere_session import IAMRolesAnywhereSigner

    class Sha256Signer(IAMRolesAnywhereSigner):  # type: ignore[misc]
        @property
        def algorithm(self) -> str:
            return f"AWS4-X509-{self.private_key_type}-SHA256"

    return Sha256Signer


def _roles_anywhere_session(
    auth: Auth, *, region: str, endpoint_url: str | None, seconds: int
) -> boto3.Session:
    from iam_rolesanywhere_session import IAMRolesAnywhereSession
    from iam_rolesanywhere_session.exceptions import CredentialsRetrievalError

    assert auth.role_arn and auth.trust_anchor_arn and auth.profile_arn
    # The library logs a refusal at ERROR; without a handler of its own Python would print that
    # to stderr next to our one line. --debug's root handler still shows it.
    library_log = logging.getLogger("iam_rolesanywhere_session")
    if not library_log.handlers:
        library_log.addHandler(logging.NullHandler())
    material = load_x509_material(auth)
    endpoint = urlsplit(endpoint_url).netloc if endpoint_url else None
    roles_anywhere = IAMRolesAnywhereSession(
        profile_arn=auth.profile_arn,
        role_arn=auth.role_arn,
        trust_anchor_arn=auth.trust_anchor_arn,
        certificate=material.certificate,
        private_key=material.private_key,
        certificate_chain=material.chain,
        private_key_passphrase=material.passphrase,
        region=region,
        endpoint=endpoint,
        verify=os.environ.get("AWS_CA_BUNDLE") or True,
        session_duration=seconds,
    )
    # iam-rolesanywhere-session 3.0.0 names the signing algorithm after the hash the CA signed
    # the certificate with (AWS4-X509-ECDSA-SHA384 for a SHA-384-signed one) while it always
    # signs with SHA-256; AWS documents AWS4-X509-RSA-SHA256 and AWS4-X509-ECDSA-SHA256 only
    # (https://docs.aws.amazon.com/rolesanywhere/latest/userguide/authentication-sign-process.html),
    # as AWS's own signing helper sends. Name what is signed.
    roles_anywhere._request_signer.__class__ = _sha256_signer()
    where = endpoint or f"the {region} endpoint"
    # The library offers its CreateSession call only inside a credentials object; botocore
    # keeps that call in ``_refresh_using``. Wrapped here so that every refusal, the first or
    # one an hour into a transfer, is one line with its exit code.
    create_session: Callable[[], Any] = roles_anywhere.get_refreshable_credentials()._refresh_using

    def refresh() -> dict[str, str]:
        try:
            return dict(create_session())
        except CredentialsRetrievalError as exc:
            message = " ".join(str(exc.message).split())
            if exc.status_code >= 500:
                raise TransferError(
                    ExitCode.NETWORK,
                    f"IAM Roles Anywhere at {where} failed (HTTP {exc.status_code}: "
                    f"{message}); try again later",
                ) from None
            if exc.status_code < 400:
                raise TransferError(
                    ExitCode.FAILURE,
                    f"IAM Roles Anywhere at {where} answered without credentials (HTTP "
                    f"{exc.status_code}: {message})",
                ) from None
            raise TransferError(
                ExitCode.ACCESS_DENIED,
                f"IAM Roles Anywhere refused a session for certificate {auth.certificate} "
                f"(subject {material.subject}): {message}; check trust_anchor_arn, "
                "profile_arn, role_arn and that your operator registered this certificate's "
                "subject",
            ) from None
        except SSLError as exc:
            raise TransferError(
                ExitCode.NETWORK,
                f"TLS failure talking to IAM Roles Anywhere at {where} ({exc}); for a local "
                "emulator, set AWS_CA_BUNDLE to its CA file",
            ) from None
        except BotoCoreError as exc:
            raise TransferError(
                ExitCode.NETWORK,
                f"network failure talking to IAM Roles Anywhere at {where} ({exc}); check "
                "your connection and re-run",
            ) from None

    return _refreshing_session(refresh(), refresh, method="roles-anywhere", region=region)


SMALL_BODY = 1024 * 1024


def _no_expect_for_small_bodies(params: dict[str, Any], model: Any, **_: Any) -> None:
    """Send small PutObject bodies at once instead of waiting for ``100 Continue``.

    botocore asks for ``Expect: 100-continue`` on every upload, which costs a round trip per
    request; it only pays off for large bodies (parts), where an early refusal saves sending
    megabytes.
    """
    if model.name != "PutObject":
        return
    size = determine_content_length(params.get("body"))
    if size is not None and size <= SMALL_BODY:
        params.get("headers", {}).pop("Expect", None)


def make_clients(profile: Profile, *, concurrency: int | None = None) -> Clients:
    """Build the session and the S3/STS clients for ``profile``.

    ``concurrency`` (default: the profile's tuning) sizes the HTTP connection pool. Region,
    endpoint URL, retry mode and attempts come from the profile.
    """
    tuning = profile.tuning
    session = make_session(
        profile.auth,
        region=profile.region,
        sts_endpoint_url=profile.sts_endpoint_url or profile.endpoint_url,
        bucket=profile.bucket,
        rolesanywhere_endpoint_url=profile.resolved_rolesanywhere_endpoint_url(),
    )
    config = client_config(
        region=profile.region,
        concurrency=concurrency or tuning.concurrency,
        retry_mode=tuning.retry_mode,
        max_attempts=tuning.max_attempts,
        path_style=profile.endpoint_url is not None,
    )
    s3 = session.client("s3", endpoint_url=profile.endpoint_url, config=config)
    # On "before-call.s3", after botocore's own handler there that adds the header.
    s3.meta.events.register_last("before-call.s3", _no_expect_for_small_bodies)
    sts = session.client(
        "sts", endpoint_url=profile.sts_endpoint_url or profile.endpoint_url, config=config
    )
    frozen = session.get_credentials()
    hint = mask_access_key(frozen.access_key) if frozen is not None else ""
    return Clients(session=session, s3=s3, sts=sts, access_key_hint=hint)


def make_operator_client(
    service: str, *, aws_profile: str | None, region: str | None, endpoint_url: str | None
) -> Any:
    """A client with the operator's own credentials (default chain or ``aws_profile``), for
    reading stack outputs when generating a profile."""
    session = boto3.Session(profile_name=aws_profile, region_name=region)
    # botocore reads only AWS_DEFAULT_REGION; the AWS CLI v2 and the other SDKs also read
    # AWS_REGION, and let it win.
    chosen = region or os.environ.get("AWS_REGION") or session.region_name
    if not chosen:
        raise TransferError(
            ExitCode.USAGE,
            "no region: pass --region (the stack's region) or set AWS_REGION",
        )
    return session.client(service, endpoint_url=endpoint_url, config=client_config(region=chosen))
