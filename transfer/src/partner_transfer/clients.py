"""The one seam to AWS: :func:`make_clients` builds every boto3 client the tool uses.

Tests and local runs point the tool elsewhere through the profile's ``endpoint_url``; nothing
else in the package creates a session or a client.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import ClientError
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
    auth: Auth, *, region: str, sts_endpoint_url: str | None = None, bucket: str | None = None
) -> boto3.Session:
    """A boto3 session for ``auth``; credentials are resolved lazily by botocore.

    ``credentials-file`` reads the key pair at run time (``bucket``, when given, must match the
    file's); ``assume-role`` returns auto-refreshing credentials with the external id.
    """
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
    credentials = RefreshableCredentials.create_from_metadata(
        metadata=first, refresh_using=refresh, method="assume-role"
    )
    core = botocore.session.get_session()
    # botocore has no public setter for refreshable credentials on a session; this attribute is
    # what its own AssumeRole provider fills in.
    core._credentials = credentials
    return boto3.Session(botocore_session=core, region_name=region)


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
