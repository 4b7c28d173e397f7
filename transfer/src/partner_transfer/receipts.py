"""Signed receipts: what the exchange received, checked offline against what this host sent.

After our importer has verified and loaded a file (or stopped it at the malware gate), it
writes a **receipt** under ``receipts/`` of the customer's bucket: one JSON object per file
version, the AS2 MDN idea on S3. Its body is an envelope::

    {"receipt": {...}, "canonicalization": "RFC 8785",
     "signature": {"algorithm": "ECDSA_SHA_256", "key_id": "arn:aws:kms:...", "value": "<base64>"}}

``signature.value`` is an ECDSA P-256 / SHA-256 signature (DER, base64) by the exchange's KMS
key over the receipt's canonical bytes: the RFC 8785 JSON Canonicalization Scheme of
``receipt`` (UTF-8, sorted keys, no whitespace, ECMAScript number forms), computed here with
the ``rfc8785`` package. Anyone holding the public key (the onboarding kit's
``receipt-public-key.pem``) can check a receipt without any AWS call; only the importer's role
can make one (docs/security.md).

:func:`reconcile` matches receipts with this host's custody manifest: every upload older than a
grace period must have a receipt, for the same version and checksum.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

RECEIPT_TYPE = "phi-exchange-receipt"
RECEIPT_VERSION = 1
CANONICALIZATION = "RFC 8785"
SIGNING_ALGORITHM = "ECDSA_SHA_256"
IMPORTED = "imported"
REJECTED = "rejected"
OUTCOMES = (IMPORTED, REJECTED)
NOT_SCANNED = "NOT_SCANNED"
# The largest message KMS signs without a digest (MessageType RAW).
MAX_MESSAGE_BYTES = 4096
# Every field a receipt carries, in the order a person reads it.
FIELDS = ("type", "version", "outcome", "bucket", "key", "version_id", "size", "checksum",
          "uploader", "received_at", "scan", "imported_at", "import_id", "row_count",
          "issued_at")


class ReceiptError(ValueError):
    """A receipt that is not well formed, or whose signature does not verify."""


def canonical_bytes(receipt: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: RFC 8785 (JCS) of the receipt."""
    return bytes(rfc8785.dumps(dict(receipt)))


def envelope(receipt: Mapping[str, Any], *, key_id: str, signature: bytes) -> dict[str, Any]:
    return {"receipt": dict(receipt), "canonicalization": CANONICALIZATION,
            "signature": {"algorithm": SIGNING_ALGORITHM, "key_id": key_id,
                          "value": base64.b64encode(signature).decode("ascii")}}


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """The exchange's receipt key from its PEM (SubjectPublicKeyInfo, as KMS GetPublicKey
    returns it in DER); anything else is a :class:`ReceiptError`."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as err:
        raise ReceiptError(f"not a PEM public key ({err})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ReceiptError("not an ECC NIST P-256 public key (the exchange signs with "
                           "ECC_NIST_P256)")
    return key


def public_key_pem(der: bytes) -> bytes:
    """KMS GetPublicKey's DER (SubjectPublicKeyInfo) as PEM, for the kit."""
    key = serialization.load_der_public_key(der)
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Receipt:
    """A receipt whose signature verified: what the exchange says it received."""

    body: dict[str, Any]
    object_key: str  # where it was read, receipts/...

    @property
    def key(self) -> str:
        return str(self.body["key"])

    @property
    def version_id(self) -> str:
        return str(self.body["version_id"])

    @property
    def outcome(self) -> str:
        return str(self.body["outcome"])

    @property
    def checksum(self) -> tuple[str | None, str | None]:
        checksum = self.body.get("checksum") or {}
        return checksum.get("algorithm"), checksum.get("value")

    @property
    def scan_result(self) -> str:
        return str((self.body.get("scan") or {}).get("result") or NOT_SCANNED)


def parse_and_verify(data: bytes, public_key: ec.EllipticCurvePublicKey, *,
                     object_key: str = "") -> Receipt:
    """Parse a receipt object's body and verify its signature; :class:`ReceiptError` says in
    one line what is wrong (not JSON, a missing field, a signature that does not verify)."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ReceiptError("not a JSON receipt") from None
    if not isinstance(document, dict) or not isinstance(document.get("receipt"), dict):
        raise ReceiptError("not a receipt envelope (no receipt object)")
    signature = document.get("signature")
    if not isinstance(signature, dict) or signature.get("algorithm") != SIGNING_ALGORITHM:
        raise ReceiptError(f"no {SIGNING_ALGORITHM} signature")
    if document.get("canonicalization") != CANONICALIZATION:
        raise ReceiptError(f"canonicalization is not {CANONICALIZATION}")
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptError("the signature is not base64") from None
    body: dict[str, Any] = document["receipt"]
    problems = _shape_problems(body)
    if problems:
        raise ReceiptError("; ".join(problems))
    try:
        public_key.verify(value, canonical_bytes(body), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ReceiptError("the signature does not verify with the exchange's public key: "
                           "the receipt was altered or not issued by the exchange") from None
    return Receipt(body=body, object_key=object_key)


def _shape_problems(body: Mapping[str, Any]) -> list[str]:
    problems = [f"{name}: missing" for name in FIELDS if name not in body]
    if problems:
        return problems
    if body["type"] != RECEIPT_TYPE or body["version"] != RECEIPT_VERSION:
        problems.append(f"type: not a {RECEIPT_TYPE} version {RECEIPT_VERSION}")
    if body["outcome"] not in OUTCOMES:
        problems.append(f"outcome: {body['outcome']!r} is not one of {', '.join(OUTCOMES)}")
    for name in ("bucket", "key", "version_id"):
        if not isinstance(body[name], str) or not body[name]:
            problems.append(f"{name}: must be a non-empty string")
    return problems


# --- reconciliation with this host's custody manifest -----------------------------------------


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``kind`` is ``ok``, ``stopped``, ``missing``, ``mismatch``,
    ``forged``, ``pending`` or ``unknown`` (a receipt for a version this host did not send)."""

    kind: str
    key: str
    version_id: str
    message: str


PROBLEMS = frozenset({"missing", "mismatch", "forged"})


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(f.kind == kind for f in self.findings)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.kind in PROBLEMS]


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def reconcile(uploads: Iterable[Mapping[str, Any]], receipts: Iterable[Receipt],
              forged: Iterable[tuple[str, str]], *, bucket: str, now: datetime,
              grace: timedelta, since: datetime | None = None) -> Report:
    """Match this host's successful uploads (custody-manifest records) with the verified
    receipts of ``bucket``.

    Per upload (version): its receipt, imported with the same checksum (``ok``); stopped at the
    malware gate (``stopped``); with another checksum (``mismatch``); none yet but younger
    than ``grace`` (``pending``); none (``missing``). ``forged`` lists (receipt object key,
    why) of receipts that did not verify. Receipts for versions this host never sent are
    ``unknown`` (another host of the partner, or a tool). Uploads before ``since`` are not
    asked about."""
    report = Report()
    by_version = {(r.key, r.version_id): r for r in receipts if r.body.get("bucket") == bucket}
    for object_key, why in forged:
        report.findings.append(Finding("forged", object_key, "", f"{object_key}: {why}"))
    matched: set[tuple[str, str]] = set()
    for upload in uploads:
        key, version = str(upload.get("key")), upload.get("version_id")
        if upload.get("bucket") != bucket or not version:
            continue
        sent = _parse_time(str(upload.get("time", "")))
        if since is not None and sent is not None and sent < since:
            continue
        version = str(version)
        receipt = by_version.get((key, version))
        where = f"{key} (version {version})"
        if receipt is None:
            if sent is not None and now - sent < grace:
                report.findings.append(Finding(
                    "pending", key, version, f"{where}: no receipt yet (sent "
                    f"{upload.get('time')}, within the {_minutes(grace)} grace period)"))
            else:
                report.findings.append(Finding("missing", key, version,
                                               f"{where}: NO RECEIPT (sent "
                                               f"{upload.get('time')}); ask the exchange's "
                                               "operators whether it was received"))
            continue
        matched.add((key, version))
        algorithm, value = receipt.checksum
        ours = (upload.get("checksum_algorithm"), upload.get("checksum"))
        if value is not None and (algorithm, value) != ours:
            report.findings.append(Finding("mismatch", key, version,
                                           f"{where}: CHECKSUM DIFFERS: the exchange received "
                                           f"{algorithm} {value}, this host sent {ours[0]} "
                                           f"{ours[1]}"))
        elif receipt.outcome == REJECTED:
            threats = ", ".join(t for t in receipt.body["scan"].get("threats") or [] if t)
            report.findings.append(Finding("stopped", key, version,
                                           f"{where}: stopped at the malware gate "
                                           f"({receipt.scan_result}"
                                           + (f": {threats}" if threats else "")
                                           + "); not imported"))
        else:
            report.findings.append(Finding("ok", key, version,
                                           f"{where}: received {receipt.body['received_at']}, "
                                           f"{algorithm} {value}, scan {receipt.scan_result}, "
                                           f"imported {receipt.body['imported_at']} "
                                           f"({receipt.body['row_count']} rows, import "
                                           f"#{receipt.body['import_id']})"))
    for (key, version), receipt in sorted(by_version.items()):
        if (key, version) not in matched and (since is None or _after(receipt, since)):
            report.findings.append(Finding("unknown", key, version,
                                           f"{key} (version {version}): a receipt "
                                           f"({receipt.outcome}) for a version this host's "
                                           "manifest does not list"))
    return report


def _after(receipt: Receipt, since: datetime) -> bool:
    received = _parse_time(str(receipt.body.get("received_at", "")))
    return received is None or received >= since


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)}-minute"
