"""``partner-transfer receipts verify``: read the receipts under ``receipts/``, check each one
offline with the exchange's public key, and reconcile them with this host's custody manifest
(:mod:`partner_transfer.receipts` holds the rules; this module reads the bucket and the files).

The partner may list ``receipts/`` and read its objects (phi_core.partner_policy,
``ReadReceipts``); nothing here writes anything, locally or remotely.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partner_transfer import checksums, crt, receipts, s3args
from partner_transfer.errors import ExitCode, TransferError
from phi_core import naming

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from partner_transfer.context import Connection

# Exit status of the check (docs/client.md): codes of their own, so that a script tells them
# from a configuration (3) or credentials (4) failure.
DISAGREES = int(ExitCode.RECEIPTS_DISAGREE)  # missing after the grace, different, rejected
EVIDENCE_BROKEN = int(ExitCode.RECEIPT_BROKEN)  # fails verification, malformed or misplaced
RECEIPTS_PREFIX = naming.RECEIPTS_PREFIX
DEFAULT_GRACE_MINUTES = 60
CLOCK_SKEW = timedelta(minutes=15)  # the most SigV4 lets a signer's clock be off


def exit_status(report: receipts.Report) -> int:
    """0 when every upload is receipted and every receipt verifies; 14 when a receipt object
    is broken (it wins); 13 when an upload has no receipt after the grace period, another size
    or checksum, or was rejected at the malware gate."""
    if report.evidence_broken:
        return EVIDENCE_BROKEN
    return DISAGREES if report.disagrees else int(ExitCode.OK)


def read_public_keys(paths: Sequence[Path]) -> list[ec.EllipticCurvePublicKey]:
    """The exchange's receipt keys from PEM files; one line (``CONFIG``) naming the file
    when one is missing, unreadable or not an ECC NIST P-256 public key."""
    keys = []
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise TransferError(
                ExitCode.CONFIG, f"receipt public key {path} does not exist: pass the kit's "
                "receipt-public-key.pem with --public-key, or ask your operator for it") from None
        except OSError as exc:
            raise TransferError(
                ExitCode.CONFIG, f"receipt public key {path} cannot be read "
                f"({exc.strerror or exc})") from None
        try:
            keys.append(receipts.load_public_key(data))
        except receipts.ReceiptError as err:
            raise TransferError(ExitCode.CONFIG, f"receipt public key {path}: {err}") from None
    return keys


def read_custody_manifest(path: Path) -> list[dict[str, Any]]:
    """The custody manifest's records; one line when it is missing or a line is not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TransferError(
            ExitCode.NOT_FOUND, f"no custody manifest at {path}: this host has sent nothing "
            "with this profile; pass --manifest FILE (the manifest of the host that sent the "
            "files)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TransferError(ExitCode.LOCAL_IO, f"custody manifest {path} cannot be read "
                            f"({getattr(exc, 'strerror', None) or exc})") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict):
            raise TransferError(ExitCode.LOCAL_IO, f"custody manifest {path} line {number} is "
                                "not a JSON record: repair or remove that line")
        records.append(record)
    return records


def check(conn: Connection, public_keys: Sequence[ec.EllipticCurvePublicKey], *,
          now: datetime, grace: timedelta, since: datetime | None = None) -> receipts.Report:
    """List ``receipts/``, download each receipt (those written at or after ``since`` only),
    verify it offline, and reconcile with the custody manifest at ``conn.manifest_path``."""
    profile = conn.profile
    if not profile.inbound_prefix:
        raise TransferError(ExitCode.REFUSED, "this profile has no upload folder: receipts "
                            "confirm files you send, and this partner sends none")
    records = read_custody_manifest(conn.manifest_path)
    uploads, failed = receipts.uploads_of(records, bucket=profile.bucket)
    conn.preflight.run()
    try:
        listed = conn.crt.list_objects(RECEIPTS_PREFIX, profile.bucket_owner)
    except Exception as exc:
        raise conn.classify(exc, "list", RECEIPTS_PREFIX) from None
    # A receipt is written after its upload, by S3's clock; the manifest's times are this
    # host's. SigV4 refuses requests from a clock more than 15 minutes off, so receipts written
    # up to 15 minutes before ``since`` may still be for uploads at or after it.
    floor = since - CLOCK_SKEW if since is not None else None
    wanted = [o for o in listed if floor is None or o["LastModified"] >= floor]
    verified: list[receipts.Receipt] = []
    broken: list[tuple[str, receipts.ReceiptError]] = []
    for key, data in _fetch(conn, wanted):
        if data is None:
            broken.append((key, receipts.ReceiptError(
                receipts.RULE_FORMAT, f"too large to be a receipt (over "
                f"{receipts.MAX_RECEIPT_OBJECT_BYTES} bytes); not downloaded")))
            continue
        try:
            verified.append(receipts.parse_and_verify(data, public_keys, object_key=key,
                                                      bucket=profile.bucket))
        except receipts.ReceiptError as err:
            broken.append((key, err))
    report = receipts.reconcile(uploads, verified, broken, now=now, grace=grace, since=since,
                                failed=failed)
    report.receipts_read = len(wanted)
    return report


def _fetch(conn: Connection,
           listed: Sequence[dict[str, Any]]) -> Iterable[tuple[str, bytes | None]]:
    """(key, body) of each listed object, ``None`` for one too large to be a receipt; GETs run
    a window at a time (the CRT client queues and parallelizes them)."""
    window = max(4 * conn.concurrency, 16)
    small = [o for o in listed if int(o["Size"]) <= receipts.MAX_RECEIPT_OBJECT_BYTES]
    for obj in listed:
        if int(obj["Size"]) > receipts.MAX_RECEIPT_OBJECT_BYTES:
            yield str(obj["Key"]), None
    headers = s3args.read_object_headers(conn.target)
    for start in range(0, len(small), window):
        batch = [str(o["Key"]) for o in small[start:start + window]]
        pending = [(key, conn.crt.request("GetObject", "GET", key, headers=headers))
                   for key in batch]
        for key, future in pending:
            try:
                resp = future.result()
            except Exception as exc:
                raise conn.classify(exc, "read", key) from None
            _check_transport(conn, key, resp)
            yield key, resp.body


def _check_transport(conn: Connection, key: str, resp: Any) -> None:
    """Bytes damaged on the way are not a forged receipt: compare them with the checksum S3
    stored (the importer writes receipts with CRC64NVME) before the signature is judged."""
    for expected in checksums.expected_checksums(crt.head_fields(resp.headers)):
        hasher = checksums.new_hasher(expected.algorithm)
        hasher.update(resp.body)
        if hasher.value() != expected.value:
            raise TransferError(
                ExitCode.CHECKSUM, f"checksum mismatch: the bytes received for "
                f"s3://{conn.profile.bucket}/{key} do not match the {expected.algorithm} S3 "
                "stored (damaged on the way); re-run the command")
        return
