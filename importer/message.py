"""The ingestion message, parsed and checked without any I/O.

The body is what the customer stack's EventBridge input transformer writes
(``stacks/components/ingestion_handoff.py``)::

    {"customer": "acme", "account": "123456789012", "region": "eu-west-2",
     "bucket": "phi-acme-123456789012-eu-west-2", "key": "inbound/claims.csv",
     "version_id": "3sL4...", "size": 1234, "etag": "\"9b2c...\"",
     "time": "2025-03-01T04:12:09Z", "event_id": "c988...", "requester": "123456789012",
     "source_ip": "198.51.100.7"}

S3's EventBridge events carry the object key as stored (not URL-encoded) and the requester as
an account id or a service principal, not a full ARN. The rule also sends ``"kind":
"object-created"`` and ``"scan"``: ``required`` (the file waits for the malware gate) or
``opted-out`` (the registry opted the customer out); a message without ``scan`` waits for the
gate too.

The customer's scan-result rule (``stacks/components/malware_gate.py``) sends GuardDuty's
verdict on one version::

    {"customer": "acme", "kind": "scan-result", "account": "123456789012",
     "region": "eu-west-2", "bucket": "phi-acme-123456789012-eu-west-2",
     "key": "inbound/claims.csv", "version_id": "3sL4...", "etag": "9b2c...",
     "time": "2025-03-01T04:12:41Z", "event_id": "72c7...", "scan_status": "COMPLETED",
     "scan_result": "NO_THREATS_FOUND", "threats": null,
     "plan": ["arn:aws:guardduty:eu-west-2:123456789012:malware-protection-plan/..."]}

(GuardDuty's "Object Scan Result" event, fields as documented in
https://docs.aws.amazon.com/guardduty/latest/ug/monitor-with-eventbridge-s3-malware-protection.html.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from importer.errors import InvalidMessage
from partner_transfer.manifest import BATCH_FOLDER
from phi_core import identifiers, naming

# Every field the handoff rule sends, in its order.
FIELDS = (
    "customer", "account", "region", "bucket", "key", "version_id", "size", "etag", "time",
    "event_id", "requester", "source_ip",
)
# S3's name for the version of an object written while versioning was off.
NULL_VERSION = "null"
OBJECT_CREATED = "object-created"
SCAN_RESULT = "scan-result"
SCAN_REQUIRED = "required"
SCAN_OPTED_OUT = "opted-out"
# GuardDuty's scanStatus of a scan that ran to the end; anything else is not a verdict.
SCAN_COMPLETED = "COMPLETED"
CLEAN = "NO_THREATS_FOUND"


@dataclass(frozen=True)
class IngestionEvent:
    """One new inbound object version. ``version_id`` is ``None`` only for an unversioned
    bucket (customer buckets are versioned); ``etag``, ``requester`` and ``source_ip`` are
    ``None`` when the event did not carry them."""

    customer: str
    bucket: str
    key: str
    version_id: str | None
    size: int
    etag: str | None
    time: datetime
    event_id: str
    requester: str | None
    source_ip: str | None
    scan_required: bool = True

    @property
    def is_batch_manifest(self) -> bool:
        """True for the client's commit markers: ``<prefix>_manifests/<batch>.json``."""
        folder, _, name = self.key.rpartition("/")
        return (folder + "/").endswith("/" + BATCH_FOLDER) and name.endswith(".json")

    @property
    def is_folder_marker(self) -> bool:
        """True for a zero-byte ``.../`` key some tools create to show a folder."""
        return self.key.endswith("/")

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.key} (version {self.version_id or NULL_VERSION})"


@dataclass(frozen=True)
class ScanResultEvent:
    """GuardDuty's verdict on one inbound object version. ``result`` is the
    ``scanResultStatus`` when there is one (``ACCESS_DENIED`` of a skipped scan too), else the
    ``scanStatus`` (``SKIPPED``, ``FAILED``); only ``NO_THREATS_FOUND`` of a completed scan is
    :attr:`clean`."""

    customer: str
    bucket: str
    key: str
    version_id: str
    etag: str | None
    time: datetime
    event_id: str
    scan_status: str
    result: str
    threats: tuple[str, ...]
    plan: str | None

    @property
    def clean(self) -> bool:
        return self.scan_status == SCAN_COMPLETED and self.result == CLEAN

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.key} (version {self.version_id})"


def parse_message(body: str) -> IngestionEvent | ScanResultEvent:
    """Parse and check one message body; :class:`InvalidMessage` lists every problem.

    Rules: a JSON object; ``customer`` a valid slug; ``account`` and ``region`` the event's
    (where the bucket lives); ``bucket`` exactly that customer's data bucket there (by
    :func:`phi_core.naming.data_bucket_name`: a prefix match would take another customer's
    bucket, ``phi-acme-corp-...``, or the log bucket, ``phi-acme-logs-...``, for acme's);
    ``key`` under ``inbound/``; ``size`` a non-negative integer; ``time`` an ISO 8601
    timestamp with a zone; ``event_id`` non-empty; ``version_id``, ``etag``, ``requester``,
    ``source_ip`` strings or null. Unknown fields are ignored, so the rule may send more.
    """
    try:
        data: Any = json.loads(body)
    except (ValueError, TypeError) as exc:
        raise InvalidMessage(f"message body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidMessage("message body is not a JSON object")
    problems: list[str] = []

    def text(name: str, *, required: bool) -> str | None:
        value = data.get(name)
        if value is None or value == "":
            if required:
                problems.append(f"{name}: required")
            return None
        if not isinstance(value, str):
            problems.append(f"{name}: must be a string (got {type(value).__name__})")
            return None
        return value

    kind = text("kind", required=False) or OBJECT_CREATED
    if kind not in (OBJECT_CREATED, SCAN_RESULT):
        problems.append(f"kind: {kind!r} is neither {OBJECT_CREATED} nor {SCAN_RESULT}")
    customer = text("customer", required=True)
    account = text("account", required=True)
    region = text("region", required=True)
    bucket = text("bucket", required=True)
    key = text("key", required=True)
    version_id = text("version_id", required=False)
    etag = text("etag", required=False)
    event_id = text("event_id", required=True)
    requester = text("requester", required=False)
    source_ip = text("source_ip", required=False)
    moment = text("time", required=True)

    if customer is not None and not identifiers.is_slug(customer):
        problems.append(f"customer: {customer!r} is not a customer slug")
    if account is not None and not identifiers.is_account_id(account):
        problems.append(f"account: {account!r} is not a 12-digit account id")
    elif region is not None and not identifiers.is_region(region):
        problems.append(f"region: {region!r} is not a region name")
    elif customer and account and region and bucket and bucket != naming.data_bucket_name(
            customer, account, region):
        problems.append(f"bucket: {bucket!r} is not the data bucket of customer {customer!r} "
                        f"in {account} {region}")
    if key is not None and not key.startswith(naming.INBOUND_PREFIX):
        problems.append(f"key: {key!r} is not under {naming.INBOUND_PREFIX}")
    when = _time(moment, problems)
    if kind == SCAN_RESULT:
        return _scan_result(data, text, customer, bucket, key, version_id, etag, event_id,
                            when, problems)
    size = data.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        problems.append(f"size: must be a non-negative integer (got {size!r})")
    scan = text("scan", required=False) or SCAN_REQUIRED
    if scan not in (SCAN_REQUIRED, SCAN_OPTED_OUT):
        problems.append(f"scan: {scan!r} is neither {SCAN_REQUIRED} nor {SCAN_OPTED_OUT}")
    if problems:
        raise InvalidMessage("invalid ingestion message: " + "; ".join(problems))
    assert customer and bucket and key and event_id and when is not None
    assert isinstance(size, int)
    return IngestionEvent(
        customer=customer, bucket=bucket, key=key,
        version_id=None if version_id == NULL_VERSION else version_id,
        size=size, etag=etag, time=when, event_id=event_id, requester=requester,
        source_ip=source_ip, scan_required=scan != SCAN_OPTED_OUT,
    )


def _time(moment: str | None, problems: list[str]) -> datetime | None:
    when: datetime | None = None
    if moment is not None:
        try:
            when = datetime.fromisoformat(moment)
        except ValueError:
            problems.append(f"time: {moment!r} is not an ISO 8601 timestamp")
        else:
            if when.tzinfo is None:
                problems.append(f"time: {moment!r} has no time zone")
    return when


def _scan_result(data: dict[str, Any], text: Any, customer: str | None, bucket: str | None,
                 key: str | None, version_id: str | None, etag: str | None,
                 event_id: str | None, when: datetime | None,
                 problems: list[str]) -> ScanResultEvent:
    """The rest of a scan-result message: the version (required: GuardDuty scans one), the
    scan's status and result, the threats' names."""
    if version_id is None:
        problems.append("version_id: required in a scan result")
    scan_status = text("scan_status", required=True)
    result = text("scan_result", required=False)
    if scan_status == SCAN_COMPLETED and result is None:
        problems.append("scan_result: required when scan_status is COMPLETED")
    threats = data.get("threats")
    names: list[str] = []
    if threats is not None:
        if not isinstance(threats, list) or not all(
                isinstance(t, dict) and isinstance(t.get("name", ""), str) for t in threats):
            problems.append("threats: must be a list of objects with a name, or null")
        else:
            names = [str(t.get("name", "")) for t in threats]
    # The event's resources: a list holding the plan's ARN.
    resources = data.get("plan")
    plans = resources if isinstance(resources, list) else [resources]
    if not all(p is None or isinstance(p, str) for p in plans):
        problems.append("plan: must be the event's resources (ARN strings)")
    plan = next((p for p in plans if isinstance(p, str)), None)
    if problems:
        raise InvalidMessage("invalid scan-result message: " + "; ".join(problems))
    assert customer and bucket and key and event_id and version_id and scan_status
    assert when is not None
    return ScanResultEvent(
        customer=customer, bucket=bucket, key=key, version_id=version_id, etag=etag,
        time=when, event_id=event_id, scan_status=scan_status,
        # GuardDuty names the reason of a skipped scan in its result (ACCESS_DENIED with
        # SKIPPED): kept, so the stop, the notice and the receipt say why.
        result=result or scan_status,
        threats=tuple(names), plan=plan)
