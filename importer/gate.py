"""The AWS side of the malware gate and the receipts: the scan tag, the signed receipt, the
notices of a stopped file.

- :func:`scan_tag` reads ``GuardDutyMalwareScanStatus`` of the version (GetObjectTagging): the
  importer loads a version only when GuardDuty's scan-result event *and* the tag both say
  ``NO_THREATS_FOUND`` (a forged message alone cannot pass the gate; only the scanner's role can
  tag an inbound object: phi_core.malware_gate).
- :class:`ReceiptIssuer` builds the receipt, signs its RFC 8785 bytes with the receipt key
  (``kms:Sign``, ``ECDSA_SHA_256``, by its alias) and writes it under ``receipts/`` of the
  customer's bucket (the bucket's default encryption: the customer's key).
- :class:`Notifier` tells the security topic and the customer's gate-notices topic about a
  stopped file: what, when, from whom (AWS's record), what GuardDuty found. No file contents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from importer.gate_store import Arrival, Verdict
from partner_transfer import receipts
from partner_transfer.checksums import expected_checksums
from phi_core import malware_gate, naming

MAX_THREATS = 10
MAX_THREAT_NAME = 120
OPTED_OUT_REASON = "the registry opted this partner out of the malware gate"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def account_and_region(customer: str, bucket: str) -> tuple[str, str]:
    """The account and region of a data bucket the message parser accepted
    (``phi-<slug>-<account>-<region>``, :func:`phi_core.naming.data_bucket_name`)."""
    rest = bucket.removeprefix(f"{naming.BUCKET_NAME_PREFIX}{customer}-")
    return rest[:12], rest[13:]


def scan_tag(s3: Any, bucket: str, key: str, version_id: str) -> str | None:
    """The version's ``GuardDutyMalwareScanStatus`` tag, or None."""
    tags = s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=version_id)["TagSet"]
    return next((t["Value"] for t in tags if t["Key"] == malware_gate.SCAN_TAG_KEY), None)


def stored_checksum(s3: Any, bucket: str, key: str,
                    version_id: str) -> tuple[str | None, str | None]:
    """S3's stored full-object checksum of a version, read with HeadObject (never the bytes:
    a stopped file is not downloaded)."""
    head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id, ChecksumMode="ENABLED")
    found = expected_checksums(head)
    return (found[0].algorithm, found[0].value) if found else (None, None)


@dataclass(frozen=True)
class Imported:
    """What the import recorded: custody (or batch-manifest) id, rows, time, checksum."""

    import_id: int
    row_count: int
    imported_at: datetime
    checksum_algorithm: str
    checksum: str
    size: int


def receipt_body(arrival: Arrival, *, outcome: str, verdict: Verdict | None,
                 imported: Imported | None, checksum: tuple[str | None, str | None],
                 issued_at: datetime, opt_out_reason: str | None = None) -> dict[str, Any]:
    """The receipt (partner_transfer.receipts.FIELDS): AWS's record of the arrival, the
    scan's verdict, the import. ``verdict`` None: the customer opted out of the gate."""
    algorithm, value = checksum
    if verdict is None:
        scan: dict[str, Any] = {"result": receipts.NOT_SCANNED, "status": None,
                                "threats": [], "scanned_at": None,
                                "reason": f"{OPTED_OUT_REASON}: {opt_out_reason}"
                                if opt_out_reason else OPTED_OUT_REASON}
    else:
        scan = {"result": verdict.result, "status": verdict.scan_status,
                "threats": [t[:MAX_THREAT_NAME] for t in verdict.threats[:MAX_THREATS]],
                "scanned_at": iso(verdict.time), "reason": None}
    return {
        "type": receipts.RECEIPT_TYPE,
        "version": receipts.RECEIPT_VERSION,
        "outcome": outcome,
        "bucket": arrival.bucket,
        "key": arrival.key,
        "version_id": arrival.version_id,
        "size": imported.size if imported else arrival.size,
        "checksum": {"algorithm": algorithm, "value": value} if value else None,
        "uploader": {"requester": arrival.requester, "source_ip": arrival.source_ip},
        "received_at": iso(arrival.time),
        "scan": scan,
        "imported_at": iso(imported.imported_at) if imported else None,
        "import_id": imported.import_id if imported else None,
        "row_count": imported.row_count if imported else None,
        "issued_at": iso(issued_at),
    }


@dataclass
class ReceiptIssuer:
    """Signs receipts with the key ``signing_key`` (default: the receipt key's alias, the only
    name the importer's role may sign by) and writes them to the customer's bucket."""

    s3: Any
    kms: Any
    signing_key: str = naming.RECEIPT_SIGNING_KEY_ALIAS

    def issue(self, body: dict[str, Any]) -> tuple[str, str, str]:
        """Sign and write ``body``; returns (receipt object key, base64 signature, the ARN of
        the key that signed)."""
        message = receipts.canonical_bytes(body)
        if len(message) > receipts.MAX_MESSAGE_BYTES:
            raise ValueError(f"receipt of {body['key']} is {len(message)} bytes, over KMS's "
                             f"{receipts.MAX_MESSAGE_BYTES} for a RAW message")
        signed = self.kms.sign(KeyId=self.signing_key, Message=message,
                               MessageType=malware_gate.RECEIPT_MESSAGE_TYPE,
                               SigningAlgorithm=malware_gate.RECEIPT_SIGNING_ALGORITHM)
        document = receipts.envelope(body, key_id=str(signed["KeyId"]),
                                     signature=bytes(signed["Signature"]))
        object_key = malware_gate.receipt_object_key(body["key"], body["version_id"])
        self.s3.put_object(Bucket=body["bucket"], Key=object_key,
                           Body=json.dumps(document, indent=2, sort_keys=True).encode(),
                           ContentType="application/json", ChecksumAlgorithm="CRC64NVME")
        return object_key, document["signature"]["value"], str(signed["KeyId"])


@dataclass
class Notifier:
    """Publishes a notice of a stopped file to the security topic and to the customer's
    gate-notices topic (both named by convention in the bucket's account and region)."""

    sns: Any
    partition: str = "aws"

    def topics(self, arrival: Arrival) -> list[str]:
        account, region = account_and_region(arrival.customer, arrival.bucket)
        base = f"arn:{self.partition}:sns:{region}:{account}:"
        return [base + naming.SECURITY_TOPIC_NAME,
                base + naming.gate_notices_topic_name(arrival.customer)]

    def notify(self, arrival: Arrival, *, result: str, reason: str,
               threats: tuple[str, ...]) -> list[str]:
        found = f" ({', '.join(threats)})" if threats else ""
        subject = f"PHI exchange: a file from {arrival.customer} was stopped at the malware gate"
        message = (
            f"A file from partner {arrival.customer} was stopped at the malware gate and NOT "
            f"imported.\n\nObject: s3://{arrival.bucket}/{arrival.key}\nVersion: "
            f"{arrival.version_id}\nSize: {arrival.size} bytes\nReceived: {iso(arrival.time)} "
            f"(AWS's record: requester {arrival.requester or 'unknown'}, source address "
            f"{arrival.source_ip or 'unknown'})\nVerdict: {result}{found}\nWhy stopped: "
            f"{reason}\n\nThe version stays in the bucket, where nothing imports it; the partner "
            "receives a signed receipt saying it was rejected. Operators: docs/custody.md, "
            "\"The malware gate\".")
        topics = self.topics(arrival)
        for topic in topics:
            self.sns.publish(TopicArn=topic, Subject=subject[:100], Message=message)
        return topics
