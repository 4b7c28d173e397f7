"""Lambda entry point ``key_rotation.handler.main`` (asset root ``lambdas/``).

Thin on purpose: parse the environment into :class:`RotationSettings`, build the boto3 clients,
call :func:`key_rotation.rotation.handle_event`. Events:

- from Secrets Manager rotation: ``{"SecretId": arn, "ClientRequestToken": token,
  "Step": "createSecret" | "setSecret" | "testSecret" | "finishSecret"}``;
- from the daily EventBridge schedule: ``{"action": "sweep"}``.

Environment: ``SECRET_ARN``, ``USER_NAME``, ``CUSTOMER_SLUG``, ``NOTICES_TOPIC_ARN`` (required);
``GRACE_DAYS`` and ``DELETE_AFTER_DAYS`` (defaults: :mod:`phi_core.defaults`),
``TEST_ATTEMPTS`` (default 12), ``TEST_RETRY_SECONDS`` (default 5), ``LOG_LEVEL`` (default INFO).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from key_rotation.rotation import AwsClients, RotationSettings, handle_event
from phi_core import defaults

logger = logging.getLogger("key_rotation")

_REQUIRED = ("SECRET_ARN", "USER_NAME", "CUSTOMER_SLUG", "NOTICES_TOPIC_ARN")
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
# The key under test gets a single attempt per call: testSecret does its own, slower retries.
_TEST_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 1})


def settings_from_env(env: Mapping[str, str]) -> RotationSettings:
    """Parse the function's environment; one ValueError lists every problem."""
    problems = [f"{name} is required" for name in _REQUIRED if not env.get(name)]

    def number(name: str, default: float, low: float, kind: type[int] | type[float]) -> Any:
        raw = env.get(name, "")
        if raw == "":
            return default
        try:
            value = kind(raw)
        except ValueError:
            problems.append(f"{name} must be a {kind.__name__} (got {raw!r})")
            return default
        if value < low:
            problems.append(f"{name} must be at least {low} (got {raw!r})")
            return default
        return value

    settings = RotationSettings(
        secret_arn=env.get("SECRET_ARN", ""),
        user_name=env.get("USER_NAME", ""),
        customer_slug=env.get("CUSTOMER_SLUG", ""),
        notices_topic_arn=env.get("NOTICES_TOPIC_ARN", ""),
        grace_days=number("GRACE_DAYS", defaults.GRACE_DAYS, 1, int),
        delete_after_days=number("DELETE_AFTER_DAYS", defaults.DELETE_AFTER_DAYS, 1, int),
        test_attempts=number("TEST_ATTEMPTS", 12, 1, int),
        test_retry_seconds=number("TEST_RETRY_SECONDS", 5.0, 0, float),
    )
    if problems:
        raise ValueError("key rotation settings: " + "; ".join(problems))
    return settings


@functools.cache
def _session() -> boto3.session.Session:
    # One session per warm container: loading the service models is the slow part of making
    # a client. Clients themselves are made per invocation.
    return boto3.session.Session()


def build_clients(session: boto3.session.Session | None = None) -> AwsClients:
    """Clients for the function's own role, and a factory for clients signing with a key."""
    session = session or _session()

    def sts_for_key(access_key_id: str, secret_access_key: str) -> Any:
        # Explicit credentials replace the session's entirely (aws_session_token=None), so the
        # function's own role never signs the request made with the key under test.
        return session.client("sts", aws_access_key_id=access_key_id,
                              aws_secret_access_key=secret_access_key,
                              aws_session_token=None, config=_TEST_CLIENT_CONFIG)

    return AwsClients(
        secretsmanager=session.client("secretsmanager", config=_CLIENT_CONFIG),
        iam=session.client("iam", config=_CLIENT_CONFIG),
        sns=session.client("sns", config=_CLIENT_CONFIG),
        sts_for_key=sts_for_key,
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def main(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logger.setLevel(level if level in logging.getLevelNamesMapping() else logging.INFO)
    settings = settings_from_env(os.environ)
    return handle_event(event, settings, build_clients(), now=_utcnow)
