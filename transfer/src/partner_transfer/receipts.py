"""Signed receipts: what the exchange received, checked offline against what this host sent.

After our importer has verified and loaded a file (or stopped it at the malware gate), it
writes a **receipt** under ``receipts/`` of the customer's bucket: one JSON object per file
version, at ``receipts/<key below inbound/>/<version id>.json``, the AS2 MDN idea on S3. Its
body is an envelope::

    {"receipt": {...}, "canonicalization": "RFC 8785",
     "signature": {"algorithm": "ECDSA_SHA_256", "key_id": "arn:aws:kms:...", "value": "<base64>"}}

``signature.value`` is an ECDSA P-256 / SHA-256 signature (DER, base64) by the exchange's KMS
key over the receipt's canonical bytes: the RFC 8785 JSON Canonicalization Scheme of
``receipt`` (UTF-8, sorted keys, no whitespace, ECMAScript number forms), computed here with
the ``rfc8785`` package. Anyone holding the public key (the onboarding kit's
``receipt-public-key.pem``) can check a receipt without any AWS call; only the importer's role
can make one (docs/security.md).

:func:`parse_and_verify` checks one receipt object (:class:`ReceiptError` names the rule it
breaks); :func:`reconcile` matches the verified receipts with this host's custody manifest:
every upload older than a grace period must have a receipt, for the same version, size and
checksum. Everything here is pure: :mod:`partner_transfer.receipt_check` reads the bucket.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from phi_core import malware_gate, naming

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
# A receipt object is its signed body (at most MAX_MESSAGE_BYTES canonical) in an indented
# envelope; anything much larger under receipts/ is not a receipt and is not downloaded.
MAX_RECEIPT_OBJECT_BYTES = 64 * 1024
# Every field a receipt carries, in the order a person reads it.
FIELDS = ("type", "version", "outcome", "bucket", "key", "version_id", "size", "checksum",
          "uploader", "received_at", "scan", "imported_at", "import_id", "row_count",
          "issued_at")
# S3's version id of an object written while versioning was off.
NULL_VERSION = "null"

# The rules a receipt object can break (ReceiptError.rule), as the report names them.
RULE_FORMAT = "format"  # not JSON, not an envelope, not RFC 8785 / ECDSA_SHA_256, too large
RULE_FIELDS = "fields"  # a field missing or of the wrong kind
RULE_SIGNATURE = "signature"  # the signature does not verify with the exchange's key
RULE_LOCATION = "location"  # a valid receipt stored where the exchange does not write it


class ReceiptError(ValueError):
    """A receipt object that is not well formed, whose signature does not verify, or that is
    stored where the exchange would not have written it; ``rule`` is one of the ``RULE_*``
    names and ``str()`` the one-line reason."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def canonical_bytes(receipt: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: RFC 8785 (JCS) of the receipt."""
    return bytes(rfc8785.dumps(dict(receipt)))


def envelope(receipt: Mapping[str, Any], *, key_id: str, signature: bytes) -> dict[str, Any]:
    return {"receipt": dict(receipt), "canonicalization": CANONICALIZATION,
            "signature": {"algorithm": SIGNING_ALGORITHM, "key_id": key_id,
                          "value": base64.b64encode(signature).decode("ascii")}}


# --- the exchange's public key ----------------------------------------------------------------


def _p256(key: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ReceiptError(RULE_FORMAT, "not an ECC NIST P-256 public key (the exchange signs "
                           "with ECC_NIST_P256)")
    return key


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """The exchange's receipt key from its PEM (SubjectPublicKeyInfo, as KMS GetPublicKey
    returns it in DER); anything else is a :class:`ReceiptError`."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnicodeError) as err:
        reason = " ".join(str(err).split())[:120]
        raise ReceiptError(RULE_FORMAT, f"not a PEM public key ({reason})") from None
    return _p256(key)


def public_key_pem(der: bytes) -> bytes:
    """KMS GetPublicKey's DER (SubjectPublicKeyInfo) as PEM, for the kit; refuses
    (:class:`ReceiptError`) anything but an ECC NIST P-256 key."""
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError) as err:
        reason = " ".join(str(err).split())[:120]
        raise ReceiptError(RULE_FORMAT, f"not a DER public key ({reason})") from None
    return pem_of(_p256(key))


def pem_of(key: ec.EllipticCurvePublicKey) -> bytes:
    """The key as PEM (SubjectPublicKeyInfo): the same bytes for the same key."""
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the key's DER (SubjectPublicKeyInfo), lower-case hex: what
    ``openssl pkey -pubin -in receipt-public-key.pem -outform DER | sha256sum`` prints, and
    what ``aws kms get-public-key`` gives once base64-decoded and hashed. Read it aloud to
    check a key that arrived by e-mail."""
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


# --- one receipt ------------------------------------------------------------------------------


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
    def size(self) -> int | None:
        size = self.body.get("size")
        return size if isinstance(size, int) else None

    @property
    def checksum(self) -> tuple[str | None, str | None]:
        checksum = self.body.get("checksum") or {}
        return checksum.get("algorithm"), checksum.get("value")

    @property
    def scan_result(self) -> str:
        return str((self.body.get("scan") or {}).get("result") or NOT_SCANNED)

    @property
    def threats(self) -> list[str]:
        return [str(t) for t in (self.body.get("scan") or {}).get("threats") or [] if t]


PublicKeys = ec.EllipticCurvePublicKey | Sequence[ec.EllipticCurvePublicKey]


def parse_and_verify(data: bytes, public_keys: PublicKeys, *, object_key: str = "",
                     bucket: str | None = None) -> Receipt:
    """Parse a receipt object's body and verify its signature with any of ``public_keys``
    (several during a key replacement). With ``object_key`` (where it was read), the receipt
    must be stored where the exchange writes it
    (:func:`phi_core.malware_gate.receipt_object_key`); with ``bucket``, it must be a receipt
    of that bucket. :class:`ReceiptError` says in one line which rule is broken (``format``,
    ``fields``, ``signature`` or ``location``)."""
    keys = ([public_keys] if isinstance(public_keys, ec.EllipticCurvePublicKey)
            else list(public_keys))
    if len(data) > MAX_RECEIPT_OBJECT_BYTES:
        raise ReceiptError(RULE_FORMAT, f"{len(data)} bytes: too large to be a receipt")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ReceiptError(RULE_FORMAT, "not a JSON document") from None
    if not isinstance(document, dict) or not isinstance(document.get("receipt"), dict):
        raise ReceiptError(RULE_FORMAT, "not a receipt envelope (no receipt object)")
    signature = document.get("signature")
    if not isinstance(signature, dict) or signature.get("algorithm") != SIGNING_ALGORITHM:
        raise ReceiptError(RULE_FORMAT, f"no {SIGNING_ALGORITHM} signature")
    if document.get("canonicalization") != CANONICALIZATION:
        raise ReceiptError(RULE_FORMAT, f"canonicalization is not {CANONICALIZATION}")
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptError(RULE_FORMAT, "the signature is not base64") from None
    body: dict[str, Any] = document["receipt"]
    problems = _shape_problems(body)
    if problems:
        raise ReceiptError(RULE_FIELDS, "; ".join(problems))
    try:
        message = canonical_bytes(body)
    except (rfc8785.CanonicalizationError, ValueError, TypeError, RecursionError) as err:
        raise ReceiptError(RULE_FORMAT, f"no RFC 8785 form ({type(err).__name__})") from None
    if not any(_verifies(key, value, message) for key in keys):
        raise ReceiptError(RULE_SIGNATURE, "the signature does not verify with the exchange's "
                           "public key: the receipt was altered, or not issued by the exchange")
    if bucket is not None and body["bucket"] != bucket:
        raise ReceiptError(RULE_LOCATION, f"a receipt of bucket {body['bucket']}, not of "
                           f"{bucket}")
    if object_key:
        expected = malware_gate.receipt_object_key(body["key"], body["version_id"])
        if object_key != expected:
            raise ReceiptError(RULE_LOCATION, f"a receipt of {body['key']} (version "
                               f"{body['version_id']}), which the exchange writes at "
                               f"{expected}, not here")
    return Receipt(body=body, object_key=object_key)


def _verifies(key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _is_int(value: object) -> bool:
    # JSON's true/false arrive as bool, which Python counts as int.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_time(value: object) -> bool:
    return isinstance(value, str) and parse_time(value) is not None


def _shape_problems(body: Mapping[str, Any]) -> list[str]:
    """What is wrong with the fields of a receipt (importer/gate.py ``receipt_body`` writes
    them): empty when nothing is."""
    problems = [f"{name}: missing" for name in FIELDS if name not in body]
    if problems:
        return problems
    if body["type"] != RECEIPT_TYPE or not _is_int(body["version"]) or (
            body["version"] != RECEIPT_VERSION):
        problems.append(f"type: not a {RECEIPT_TYPE} version {RECEIPT_VERSION}")
    if body["outcome"] not in OUTCOMES:
        problems.append(f"outcome: {str(body['outcome'])[:40]!r} is not one of "
                        f"{', '.join(OUTCOMES)}")
    for name in ("bucket", "key", "version_id"):
        if not isinstance(body[name], str) or not body[name]:
            problems.append(f"{name}: must be a non-empty string")
    if isinstance(body["key"], str) and not body["key"].startswith(naming.INBOUND_PREFIX):
        problems.append(f"key: not under {naming.INBOUND_PREFIX}")
    if body["size"] is not None and not (_is_int(body["size"]) and body["size"] >= 0):
        problems.append("size: must be a number of bytes")
    checksum = body["checksum"]
    if checksum is not None and not (isinstance(checksum, dict) and all(
            isinstance(checksum.get(name), str) for name in ("algorithm", "value"))):
        problems.append("checksum: must be an algorithm and a value")
    if not isinstance(body["uploader"], dict):
        problems.append("uploader: must be an object")
    scan = body["scan"]
    if not (isinstance(scan, dict) and isinstance(scan.get("result"), str)
            and isinstance(scan.get("threats"), list)):
        problems.append("scan: must be an object with a result and threats")
    for name in ("received_at", "issued_at"):
        if not _is_time(body[name]):
            problems.append(f"{name}: must be a time")
    if body["outcome"] == IMPORTED and not (
            _is_time(body["imported_at"]) and _is_int(body["import_id"])
            and _is_int(body["row_count"])):
        problems.append("imported_at, import_id, row_count: an imported receipt has them all")
    return problems


# --- reconciliation with this host's custody manifest -----------------------------------------


@dataclass(frozen=True)
class Upload:
    """One version this host sent, as its custody manifest recorded it (``result`` ``ok``)."""

    key: str
    version_id: str
    time: str
    size: int | None
    checksum_algorithm: str | None
    checksum: str | None

    @property
    def sent(self) -> datetime | None:
        return parse_time(self.time)


def uploads_of(records: Iterable[Mapping[str, Any]], *,
               bucket: str) -> tuple[list[Upload], dict[tuple[str, str], str]]:
    """This host's uploads to ``bucket`` from custody-manifest records (``direction`` upload,
    ``result`` ok; the first record of a version counts), and the versions it recorded as
    *failed* (a file that changed while it was sent leaves a version: S3 holds it, the client
    did not count it as sent), with the recorded error."""
    uploads: dict[tuple[str, str], Upload] = {}
    failed: dict[tuple[str, str], str] = {}
    for record in records:
        if record.get("direction") != "upload" or record.get("bucket") != bucket:
            continue
        where = (str(record.get("key")), str(record.get("version_id") or NULL_VERSION))
        if record.get("result") == "ok":
            size = record.get("size")
            uploads.setdefault(where, Upload(
                key=where[0], version_id=where[1], time=str(record.get("time") or ""),
                size=size if _is_int(size) else None,
                checksum_algorithm=_str_or_none(record.get("checksum_algorithm")),
                checksum=_str_or_none(record.get("checksum"))))
        elif record.get("result") == "failed" and record.get("version_id"):
            failed.setdefault(where, str(record.get("error") or "failed"))
    return list(uploads.values()), failed


def _str_or_none(value: object) -> str | None:
    return str(value) if value is not None else None


# Finding kinds, and how the report labels them.
OK = "ok"
PENDING = "pending"
MISSING = "missing"
MISMATCH = "mismatch"
STOPPED = "rejected"
BROKEN = "broken"
UNKNOWN = "unknown"
LABELS = {OK: "ok", PENDING: "pending", MISSING: "MISSING", MISMATCH: "CHECKSUM DIFFERS",
          STOPPED: "REJECTED", UNKNOWN: "no upload"}
BROKEN_LABELS = {RULE_SIGNATURE: "BAD SIGNATURE", RULE_LOCATION: "MISPLACED",
                 RULE_FORMAT: "MALFORMED", RULE_FIELDS: "MALFORMED"}
# Kinds that mean "the exchange and this host disagree" (exit 3), and "the evidence itself is
# broken" (exit 4, which wins).
DISAGREEMENTS = frozenset({MISSING, MISMATCH, STOPPED})
EVIDENCE_BROKEN = frozenset({BROKEN})
# The summary's order: what is fine first, then what is not, the worst last.
REPORT_ORDER = ("ok", "pending", "no upload", "REJECTED", "CHECKSUM DIFFERS", "MISSING",
                "MALFORMED", "MISPLACED", "BAD SIGNATURE")


@dataclass(frozen=True)
class Finding:
    """One line of the report. ``kind``: ``ok`` (imported, same size and checksum), ``pending``
    (no receipt yet, within the grace period), ``missing`` (none after it), ``mismatch``
    (another size or checksum, or none), ``rejected`` (stopped at the malware gate), ``broken``
    (a receipt object that fails a rule: ``rule`` names it), ``unknown`` (a receipt for a
    version this host's manifest does not list as sent). ``subject`` is the upload
    (``key (version V)``) or, for ``broken``, the receipt object's key."""

    kind: str
    subject: str
    message: str
    rule: str = ""

    @property
    def label(self) -> str:
        return BROKEN_LABELS.get(self.rule, "MALFORMED") if self.kind == BROKEN else LABELS[
            self.kind]

    @property
    def problem(self) -> bool:
        return self.kind in DISAGREEMENTS | EVIDENCE_BROKEN

    @property
    def line(self) -> str:
        return f"{self.label} {self.subject}: {self.message}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    receipts_read: int = 0

    def count(self, kind: str) -> int:
        return sum(f.kind == kind for f in self.findings)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.problem]

    @property
    def evidence_broken(self) -> bool:
        return any(f.kind in EVIDENCE_BROKEN for f in self.findings)

    @property
    def disagrees(self) -> bool:
        return any(f.kind in DISAGREEMENTS for f in self.findings)


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time (``Z`` or an offset; none means UTC), or None."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError, AttributeError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def reconcile(uploads: Iterable[Upload], receipts: Iterable[Receipt],
              broken: Iterable[tuple[str, ReceiptError]], *, now: datetime, grace: timedelta,
              since: datetime | None = None,
              failed: Mapping[tuple[str, str], str] | None = None) -> Report:
    """Match this host's uploads with the verified receipts (all of one bucket:
    :func:`parse_and_verify` with ``bucket``).

    Per upload (version): its receipt, imported with the same size and checksum (``ok``);
    stopped at the malware gate (``rejected``); with another size or checksum, or none
    (``mismatch``); no receipt yet but sent less than ``grace`` ago (``pending``); none
    (``missing``). ``broken`` lists (receipt object key, error) of receipt objects that failed
    a rule. Receipts for versions this host never sent are ``unknown`` (another host of the
    partner, a tool, or a version ``failed`` says this host gave up on). Uploads sent before
    ``since``, and receipts of arrivals before it, are not asked about."""
    report = Report()
    by_version = {(r.key, r.version_id): r for r in receipts}
    broken = list(broken)
    for object_key, error in broken:
        report.findings.append(Finding(BROKEN, object_key, f"{error.rule}: {error}",
                                       rule=error.rule))
    # An upload whose receipt object is broken has its one line already.
    reported = {object_key for object_key, _ in broken}
    matched: set[tuple[str, str]] = set()
    for upload in uploads:
        sent = upload.sent
        if since is not None and sent is not None and sent < since:
            continue
        where = f"{upload.key} (version {upload.version_id})"
        receipt = by_version.get((upload.key, upload.version_id))
        if receipt is None and malware_gate.receipt_object_key(
                upload.key, upload.version_id) in reported:
            continue
        if receipt is None:
            if sent is not None and now - sent < grace:
                report.findings.append(Finding(
                    PENDING, where, f"no receipt yet (sent {upload.time}, within the "
                    f"{_minutes(grace)} grace period)"))
            else:
                report.findings.append(Finding(
                    MISSING, where, f"no receipt (sent {upload.time or 'at an unknown time'}):"
                    " the exchange has not confirmed it; ask its operators whether it arrived"))
            continue
        matched.add((upload.key, upload.version_id))
        report.findings.append(_compare(upload, receipt, where))
    for (key, version), receipt in sorted(by_version.items()):
        if (key, version) in matched or (since is not None and not _after(receipt, since)):
            continue
        why = (failed or {}).get((key, version))
        known = (f"this host recorded as failed ({why}): the exchange holds that version; "
                 "tell them if it must not be used" if why
                 else "this host's manifest does not list as sent: another host or tool of "
                 "yours may have sent it")
        report.findings.append(Finding(
            UNKNOWN, f"{key} (version {version})", f"a receipt ({receipt.outcome}) for a version "
            f"{known}"))
    return report


def _compare(upload: Upload, receipt: Receipt, where: str) -> Finding:
    algorithm, value = receipt.checksum
    ours = (upload.checksum_algorithm, upload.checksum)
    if value is None or (algorithm, value) != ours or (
            receipt.size is not None and upload.size is not None and receipt.size != upload.size):
        theirs = f"{algorithm} {value}" if value else "no checksum"
        outcome = " (and rejected it)" if receipt.outcome == REJECTED else ""
        return Finding(MISMATCH, where, f"the exchange received {theirs}, {receipt.size} bytes"
                       f"{outcome}; this host sent {ours[0]} {ours[1]}, {upload.size} bytes: "
                       "the version they hold is not the file you sent; tell their operators")
    if receipt.outcome == REJECTED:
        threats = ", ".join(receipt.threats)
        return Finding(STOPPED, where, f"stopped at the malware gate and NOT imported "
                       f"({receipt.scan_result}" + (f": {threats}" if threats else "")
                       + f"; received {receipt.body['received_at']}); scan the file on your "
                       "side and send a clean copy")
    scan = receipt.scan_result
    return Finding(OK, where, f"received {receipt.body['received_at']}, {algorithm} {value}, "
                   f"scan {scan}, imported {receipt.body['imported_at']} "
                   f"({receipt.body['row_count']} rows, import #{receipt.body['import_id']})")


def _after(receipt: Receipt, since: datetime) -> bool:
    received = parse_time(str(receipt.body.get("received_at", "")))
    return received is None or received >= since


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)}-minute"
