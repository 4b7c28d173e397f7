"""The importer's one seam to AWS: every boto3 client is made here, so tests and local runs
point the whole importer elsewhere with one endpoint URL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config


@dataclass(frozen=True)
class AwsOptions:
    """``region`` (default: boto3's resolution from the environment), ``endpoint_url``
    (default: the real AWS endpoints) for an emulator, ``max_attempts`` (default 5) per call
    with standard-mode retries (throttling and 5xx are retried with backoff)."""

    region: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = 5


def make_client(service: str, options: AwsOptions) -> Any:
    """A boto3 client for ``service``. S3 clients use path-style addressing when an endpoint
    URL is given (emulators rarely resolve virtual-host names) and validate response
    checksums whenever S3 returns them."""
    s3_config: dict[str, Any] = {"addressing_style": "path"} if options.endpoint_url else {}
    config = Config(
        region_name=options.region,
        retries={"mode": "standard", "max_attempts": options.max_attempts},
        response_checksum_validation="when_supported",
        s3=s3_config or None,
    )
    return boto3.session.Session().client(
        service, endpoint_url=options.endpoint_url, config=config)
