"""What SNS was asked to publish, readable from outside the emulator.

Gap in moto 5.2.5: SNS keeps every message published to a topic (``Topic.sent_notifications``,
whether or not anyone is subscribed; e-mail subscriptions stay pending and nothing is sent), but
no API reads them back. moto's ``/moto-api/data.json`` would, but it serializes every
attribute of every model instance of every service: it reads the bytes of every S3 object
version and evaluates properties that have side effects (a CloudFormation stack's resource map
creates resources on first access).

Fill: ``GET /localaws/sns-published?topic=<ARN>`` (``localaws.server.PUBLISHED_PATH``) lists
the messages published to that topic, oldest first: ``message_id``, ``subject``, ``message``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from moto.sns.models import sns_backends


def published(topic_arn: str) -> list[dict[str, Any]] | None:
    """The messages published to ``topic_arn``; None if there is no such topic."""
    parts = topic_arn.split(":")
    if len(parts) != 6 or parts[2] != "sns":
        return None
    topic = sns_backends[parts[4]][parts[3]].topics.get(topic_arn)
    if topic is None:
        return None
    return [{"message_id": message_id, "subject": subject, "message": message}
            for message_id, message, subject, *_ in list(topic.sent_notifications)]


def published_endpoint(environ: Mapping[str, Any], start_response: Any) -> list[bytes]:
    topic = (parse_qs(str(environ.get("QUERY_STRING", ""))).get("topic") or [""])[0]
    messages = published(topic)
    if messages is None:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [json.dumps({"error": f"no topic {topic!r}"}).encode()]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(messages).encode()]
