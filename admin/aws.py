"""The one place the operator CLI makes boto3 clients: profile, region, endpoint URL and retries
are decided here and nowhere else, so a local emulator or a test points everything elsewhere
through this single seam."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


@dataclass(frozen=True)
class AwsOptions:
    """``region`` and ``profile`` (default: boto3's usual resolution from the environment and
    ~/.aws); ``endpoint_url`` (default: the real AWS endpoints) for a local emulator."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None


def make_client(service: str, options: AwsOptions) -> Any:
    """A boto3 client for ``service`` with standard-mode retries (5 attempts)."""
    session = boto3.session.Session(profile_name=options.profile, region_name=options.region)
    return session.client(service, endpoint_url=options.endpoint_url, config=_CONFIG)
