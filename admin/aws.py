"""The operator side's one seam to AWS (the operator CLI and the importer): every boto3
client is made here, so a local emulator or a test points everything elsewhere through this
single function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config


@dataclass(frozen=True)
class AwsOptions:
    """``region`` and ``profile`` (default: boto3's usual resolution from the environment and
    ~/.aws); ``endpoint_url`` (default: the real AWS endpoints) for a local emulator;
    ``max_attempts`` (default 5) per call with standard-mode retries (throttling and 5xx are
    retried with backoff)."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = 5


def make_client(service: str, options: AwsOptions) -> Any:
    """A boto3 client for ``service``. S3 clients use path-style addressing when an endpoint
    URL is given (emulators rarely resolve virtual-host names) and validate response checksums
    whenever S3 returns them."""
    config = Config(
        retries={"mode": "standard", "max_attempts": options.max_attempts},
        response_checksum_validation="when_supported",
        s3={"addressing_style": "path"} if options.endpoint_url else None,
    )
    session = boto3.session.Session(profile_name=options.profile, region_name=options.region)
    return session.client(service, endpoint_url=options.endpoint_url, config=config)
