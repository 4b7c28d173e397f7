"""AWS service events -> EventBridge -> SQS, as AWS delivers them: what moto 5.2.5 gets wrong,
filled in. S3's Object Created events are built here; GuardDuty's scan results are built by
:mod:`localaws.malware_scan` and delivered by the same :func:`put_event`.

Gaps in moto 5.2.5 (``moto/s3/notifications.py``, ``moto/events/models.py``), for a bucket
with EventBridge notifications on (our customer buckets) and a rule with an SQS target and an
input transformer (our ingestion handoff rule):

1. The event goes to the EventBridge of the *uploader's* account, so an upload by a partner in
   another account reaches no rule at all (AWS: the bucket owner's account).
2. The event is not what S3 sends: ``requester`` is always ``123456789012`` and
   ``source-ip-address`` always ``1.2.3.4``, ``time`` is an epoch number (AWS: ISO 8601),
   the object's ``etag`` is spelled ``eTag``, and ``id`` is the same for every event.
3. The target's input transformer is not applied (the queue gets the whole event); and
   moto's renderer, where used, inserts string values without JSON quotes and leaves
   placeholders of missing paths in place, so a JSON template like ours yields invalid JSON.
4. A multipart upload's completion notifies twice: an ``ObjectCreated:Put`` (moto stores the
   object through its PutObject path) and the ``ObjectCreated:CompleteMultipartUpload``; S3
   sends the second only, so every multipart upload reached the importer twice.
5. Delivery ignores the queue's policy and its KMS key: EventBridge must be admitted by the
   queue policy (``events.amazonaws.com``, ``aws:SourceArn`` = the rule) and by the key policy
   of an encrypted queue (``kms:GenerateDataKey`` and ``kms:Decrypt``), or AWS drops the event
   (after the target's retries) and the queue never sees it.

Fill: :func:`install` replaces moto's EventBridge notification with :func:`notify`, which
builds S3's event as documented (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html:
bucket owner's account and region, a fresh ``id``, ISO ``time``, ``requester`` = the caller's
account, ``source-ip-address`` = the request's source address, ``reason`` from the
operation), and hands it to :func:`put_event`, which matches any service's event against the
enabled rules of the owner's default event bus, renders each SQS target's input
(:func:`render_input`, EventBridge's input-transformer rules), and delivers it only if the
queue policy and the queue key's policy admit EventBridge for that rule (evaluated with
:mod:`localaws.policy`; the SQS encryption context ``aws:sqs:arn`` = the queue ARN is the
documented practice, not a documented fact). Every delivery and refusal is recorded with the
event's detail-type and the object it is about; ``GET /localaws/event-deliveries``
(``localaws.server.DELIVERIES_PATH``) lists them, so a run can say why a message never arrived.

Not modelled: other targets than SQS (moto's handling is kept for them), custom event buses,
retries and the rule's dead-letter queue, delivery delays (delivery is synchronous with the
upload), ``Object Deleted`` and other non-creation events' fields beyond the common ones.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from moto.events.models import events_backends
from moto.kms.models import kms_backends
from moto.s3 import notifications
from moto.s3.models import S3Backend
from moto.sqs.models import sqs_backends

from localaws import permissions
from localaws.policy import Decision, Request, evaluate

log = logging.getLogger("localaws.events")
EVENTS = "events.amazonaws.com"

# S3's "reason" for each creation event (the API that created the object).
_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver an event to a target: ``outcome`` ``delivered`` or
    ``refused`` (with the reason); ``object`` what the event is about (``s3://bucket/key``),
    ``event`` its detail-type (``Object Created``, GuardDuty's scan result...)."""

    time: str
    rule: str
    target: str
    object: str
    outcome: str
    reason: str = ""
    message_id: str = ""
    event: str = ""


_deliveries: list[Delivery] = []
_lock = threading.Lock()
# Set while moto completes a multipart upload (its inner PutObject must not notify).
_completing_multipart: ContextVar[bool] = ContextVar("localaws_completing_multipart",
                                                     default=False)


def completing_multipart() -> bool:
    """Whether moto is inside a multipart completion (its inner PutObject is no upload of its
    own: S3 notifies CompleteMultipartUpload only)."""
    return _completing_multipart.get()


def deliveries() -> list[dict[str, str]]:
    with _lock:
        return [asdict(d) for d in _deliveries]


def _record(delivery: Delivery) -> None:
    with _lock:
        _deliveries.append(delivery)
    if delivery.outcome == "refused":
        log.warning("EventBridge delivery refused: %s", delivery)


# --- the event --------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def s3_event(bucket: Any, event_name: str, key: Any,
             environ: Mapping[str, Any] | None) -> dict[str, Any]:
    """S3's EventBridge event for ``key`` of ``bucket``, from the current request."""
    caller = permissions.request_caller(environ, bucket.partition)
    obj: dict[str, Any] = {"key": key.name, "size": key.size,
                           "etag": key.etag.replace('"', ""),
                           "sequencer": uuid.uuid4().hex[:18].upper()}
    if bucket.is_versioned and key.version_id:
        obj["version-id"] = key.version_id
    detail: dict[str, Any] = {
        "version": "0", "bucket": {"name": bucket.name}, "object": obj,
        "request-id": uuid.uuid4().hex[:16].upper(),
        "requester": caller.account if caller else bucket.account_id,
        "reason": _REASONS.get(event_name, event_name.split(":")[-1]),
    }
    if environ is not None and environ.get("REMOTE_ADDR"):
        detail["source-ip-address"] = str(environ["REMOTE_ADDR"])
    return {
        "version": "0", "id": str(uuid.uuid4()),
        "detail-type": notifications._detail_type(event_name), "source": "aws.s3",
        "account": bucket.account_id, "time": _iso(datetime.now(UTC)),
        "region": bucket.region_name, "resources": [bucket.arn], "detail": detail,
    }


# --- the input transformer -------------------------------------------------------------------


_INDEX = re.compile(r"\[(\d+)\]")


def _path_value(event: Mapping[str, Any], path: str) -> Any:
    """A JSON path of the forms EventBridge input paths use: dot notation with array indices
    (``$.a.b-c``, ``$.resources[0]``); None if absent."""
    if path == "$":
        return event
    value: Any = event
    for part in path.removeprefix("$.").split("."):
        name, _, indices = part.partition("[")
        if name:
            if not isinstance(value, Mapping) or name not in value:
                return None
            value = value[name]
        for index in _INDEX.findall("[" + indices if indices else ""):
            if not isinstance(value, list) or int(index) >= len(value):
                return None
            value = value[int(index)]
    return value


_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.:-]+)>")


def render_input(template: str, paths: Mapping[str, str], event: Mapping[str, Any]) -> str:
    """EventBridge's input transformer
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html):
    paths in dot notation with array indices; a placeholder outside a JSON string becomes the
    value as JSON (a string quoted, a missing path ``null``); inside a string, the value's
    text, escaped for that string.
    ``<aws.events.event.json>`` is the whole event."""
    values: dict[str, Any] = {name: _path_value(event, path) for name, path in paths.items()}
    values.setdefault("aws.events.event.json", event)
    out: list[str] = []
    in_string = escaped = False
    position = 0
    while position < len(template):
        char = template[position]
        match = _PLACEHOLDER.match(template, position) if char == "<" else None
        if match and match.group(1) in values:
            value = values[match.group(1)]
            if in_string:
                text = value if isinstance(value, str) else json.dumps(value)
                out.append(json.dumps(text)[1:-1])
            else:
                out.append(json.dumps(value))
            position = match.end()
            continue
        out.append(char)
        if in_string and not escaped and char == '"':
            in_string = False
        elif not in_string and char == '"':
            in_string = True
        escaped = in_string and char == "\\" and not escaped
        position += 1
    return "".join(out)


def target_input(target: Mapping[str, Any], event: Mapping[str, Any]) -> str:
    """What a target receives: its InputTransformer's output, its constant Input, or the
    event."""
    transformer = target.get("InputTransformer")
    if transformer:
        return render_input(transformer["InputTemplate"],
                            transformer.get("InputPathsMap") or {}, event)
    if target.get("Input") is not None:
        return str(target["Input"])
    return json.dumps(event)


# --- delivery --------------------------------------------------------------------------------


def _service_request(action: str, resource: str, rule_arn: str, account: str,
                     **context: str) -> Request:
    base = {"aws:SourceArn": rule_arn, "aws:SourceAccount": account,
            "aws:SecureTransport": "true", "aws:PrincipalIsAWSService": "true"}
    return Request(action=action, resource=resource, service=EVENTS,
                   context={k: [v] for k, v in {**base, **context}.items()})


def usable_key(account: str, region: str, key_id: str) -> tuple[Any, str]:
    """The enabled KMS key ``key_id`` (an id, alias or ARN; an ARN names its own account and
    region) and "", or None and why AWS would refuse to use it (missing, disabled)."""
    if key_id.startswith("arn:"):
        account, region = key_id.split(":")[4], key_id.split(":")[3]
    try:
        key = kms_backends[account][region].describe_key(key_id)
    except Exception:  # moto raises several not-found errors
        return None, f"the key {key_id} does not exist"
    if not key.enabled:
        return None, f"the key {key.arn} is disabled"
    return key, ""


def _refusal(queue: Any, rule_arn: str, account: str, region: str) -> str | None:
    """Why AWS would not let EventBridge put the event in ``queue`` (None: it would)."""
    policy = json.loads(queue.policy) if queue.policy else {}
    send = _service_request("sqs:SendMessage", queue.queue_arn, rule_arn, account)
    if evaluate(policy, send) is not Decision.ALLOW:
        return (f"the policy of queue {queue.name} does not allow {EVENTS} sqs:SendMessage "
                f"for {rule_arn}")
    key_id = getattr(queue, "kms_master_key_id", None)
    if not key_id:
        return None
    key, unusable = usable_key(account, region, str(key_id))
    if key is None:
        return f"{unusable} (the key of queue {queue.name})"
    key_policy = json.loads(key.policy) if isinstance(key.policy, str) else key.policy
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        request = _service_request(action, key.arn, rule_arn, account, **{
            "kms:EncryptionContext:aws:sqs:arn": queue.queue_arn})
        if evaluate(key_policy, request) is not Decision.ALLOW:
            return (f"the policy of key {key.arn} (queue {queue.name}) does not allow "
                    f"{EVENTS} {action} for {rule_arn}")
    return None


def put_event(event: Mapping[str, Any], *, about: str) -> list[Delivery]:
    """Deliver an AWS service's ``event`` (its ``account`` and ``region`` name the bus: the
    default bus there) to the SQS targets of the matching enabled rules, each only if the
    queue's and its key's policies admit EventBridge for that rule; record and return every
    attempt. ``about`` names what the event concerns in the record (``s3://bucket/key``)."""
    account, region = str(event["account"]), str(event["region"])
    detail_type = str(event.get("detail-type", ""))
    bus = events_backends[account][region].event_buses.get("default")
    if bus is None:
        return []
    attempts = []
    for rule in list(bus.rules.values()):
        if rule.state != "ENABLED" or not rule.event_pattern.matches_event(
                event):  # type: ignore[arg-type]
            continue
        for target in rule.targets:
            arn = str(target["Arn"])
            parts = arn.split(":")
            if parts[2] != "sqs":
                continue  # not modelled here (our rules target queues only)
            queue = sqs_backends[parts[4]][parts[3]].queues.get(parts[5])
            if queue is None:
                reason = f"queue {arn} does not exist"
            else:
                reason = _refusal(queue, rule.arn, account, region) or ""
            if reason:
                attempt = Delivery(_iso(datetime.now(UTC)), rule.arn, arn, about, "refused",
                                   reason, event=detail_type)
            else:
                message = sqs_backends[parts[4]][parts[3]].send_message(
                    queue_name=parts[5], message_body=target_input(target, event))
                attempt = Delivery(_iso(datetime.now(UTC)), rule.arn, arn, about,
                                   "delivered", message_id=message.id, event=detail_type)
            _record(attempt)
            attempts.append(attempt)
    return attempts


def notify(bucket: Any, event_name: str, key: Any) -> None:
    """Build S3's event for this request and deliver it (:func:`put_event`) on the bucket
    owner's default event bus (module docstring)."""
    event = s3_event(bucket, event_name, key, permissions._current_environ.get())
    put_event(event, about=f"s3://{bucket.name}/{key.name}")


def _send_event_bridge_message(account_id: str, bucket: Any, event_name: str,
                               key: Any) -> None:
    """Replaces ``moto.s3.notifications._send_event_bridge_message``. Asynchronous in AWS, so
    a failure here never fails the upload: it is logged and recorded."""
    if completing_multipart() and event_name == "s3:ObjectCreated:Put":
        return  # moto's inner PutObject of a multipart completion: S3 sends no such event
    try:
        notify(bucket, event_name, key)
    except Exception as error:
        log.exception("EventBridge notification of s3://%s/%s failed", bucket.name, key.name)
        _record(Delivery(_iso(datetime.now(UTC)), "", "", f"s3://{bucket.name}/{key.name}",
                         "refused", f"{type(error).__name__}: {error}"))


def deliveries_endpoint(environ: Mapping[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(deliveries()).encode()]


_moto_complete_multipart_upload = S3Backend.complete_multipart_upload


def _complete_multipart_upload(self: S3Backend, *args: Any, **kwargs: Any) -> Any:
    """Replaces ``S3Backend.complete_multipart_upload``: marks the call, see gap 4."""
    token = _completing_multipart.set(True)
    try:
        return _moto_complete_multipart_upload(self, *args, **kwargs)
    finally:
        _completing_multipart.reset(token)


def install() -> None:
    # moto.s3.notifications.send_event calls this module-level function by name.
    notifications._send_event_bridge_message = _send_event_bridge_message
    S3Backend.complete_multipart_upload = _complete_multipart_upload  # type: ignore[method-assign]
