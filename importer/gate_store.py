"""PostgreSQL side of the malware gate: arrivals, scan results, stops and receipts.

An object version is decided when both halves are recorded: its arrival (the S3 Object Created
event: AWS's record of the uploader) and GuardDuty's verdict (the scan-result event). The two
messages arrive in either order, possibly at two importers at once; :func:`record_half` records
one half and reads the other under a transaction-scoped advisory lock on the version, so
exactly one of the two deliveries finds both. Every table is append-only (schema.sql).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from importer.message import IngestionEvent, ScanResultEvent


@dataclass(frozen=True)
class Arrival:
    """What AWS recorded when the version arrived (the S3 event)."""

    customer: str
    bucket: str
    key: str
    version_id: str
    size: int
    etag: str | None
    event_id: str
    time: datetime
    requester: str | None
    source_ip: str | None


@dataclass(frozen=True)
class Verdict:
    """GuardDuty's recorded verdict on the version."""

    scan_status: str
    result: str
    threats: tuple[str, ...]
    time: datetime
    clean: bool


def arrival_of(event: IngestionEvent, version_id: str) -> Arrival:
    return Arrival(customer=event.customer, bucket=event.bucket, key=event.key,
                   version_id=version_id, size=event.size, etag=event.etag,
                   event_id=event.event_id, time=event.time, requester=event.requester,
                   source_ip=event.source_ip)


def record_half(conn: psycopg.Connection[Any],
                event: IngestionEvent | ScanResultEvent,
                version_id: str) -> tuple[Arrival | None, Verdict | None]:
    """Record ``event`` (an arrival or a verdict; a redelivery records nothing new) and return
    both halves of the version as recorded now. One transaction, serialized per version."""
    with conn.transaction():
        # PostgreSQL text cannot hold NUL: the version's name as a JSON array is unambiguous.
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                     (json.dumps([event.bucket, event.key, version_id]),))
        if isinstance(event, ScanResultEvent):
            conn.execute(
                "INSERT INTO scan_result (customer, bucket, key, version_id, scan_status, "
                "result, threats, plan, event_id, event_time) VALUES (%s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, %s) ON CONFLICT ON CONSTRAINT scan_result_object_version "
                "DO NOTHING",
                (event.customer, event.bucket, event.key, version_id, event.scan_status,
                 event.result, Jsonb(list(event.threats)), event.plan, event.event_id,
                 event.time))
        else:
            conn.execute(
                "INSERT INTO arrival (customer, bucket, key, version_id, size, etag, event_id, "
                "event_time, requester, source_ip) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s) ON CONFLICT ON CONSTRAINT arrival_object_version DO NOTHING",
                (event.customer, event.bucket, event.key, version_id, event.size, event.etag,
                 event.event_id, event.time, event.requester, event.source_ip))
        return (recorded_arrival(conn, event.bucket, event.key, version_id),
                recorded_verdict(conn, event.bucket, event.key, version_id))


def recorded_arrival(conn: psycopg.Connection[Any], bucket: str, key: str,
                     version_id: str) -> Arrival | None:
    row = conn.execute(
        "SELECT customer, size, etag, event_id, event_time, requester, source_ip FROM arrival "
        "WHERE bucket = %s AND key = %s AND version_id = %s", (bucket, key, version_id),
    ).fetchone()
    if row is None:
        return None
    return Arrival(customer=row[0], bucket=bucket, key=key, version_id=version_id,
                   size=row[1], etag=row[2], event_id=row[3], time=row[4], requester=row[5],
                   source_ip=row[6])


def recorded_verdict(conn: psycopg.Connection[Any], bucket: str, key: str,
                     version_id: str) -> Verdict | None:
    row = conn.execute(
        "SELECT scan_status, result, threats, event_time FROM scan_result "
        "WHERE bucket = %s AND key = %s AND version_id = %s", (bucket, key, version_id),
    ).fetchone()
    if row is None:
        return None
    threats = row[2] if isinstance(row[2], list) else json.loads(row[2] or "[]")
    return Verdict(scan_status=row[0], result=row[1], threats=tuple(threats), time=row[3],
                   clean=row[0] == "COMPLETED" and row[1] == "NO_THREATS_FOUND")


def _recorded(conn: psycopg.Connection[Any], table: str, bucket: str, key: str,
              version_id: str) -> bool:
    """Whether ``table`` (one of this module's, never user input) has a row of the version."""
    row = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM {table} WHERE bucket = %s AND key = %s AND "  # noqa: S608
        "version_id = %s)", (bucket, key, version_id)).fetchone()
    return bool(row and row[0])


def is_stopped(conn: psycopg.Connection[Any], bucket: str, key: str, version_id: str) -> bool:
    return _recorded(conn, "gate_stop", bucket, key, version_id)


def record_stop(conn: psycopg.Connection[Any], arrival: Arrival, *, result: str, reason: str,
                threats: tuple[str, ...], notified: list[str]) -> None:
    conn.execute(
        "INSERT INTO gate_stop (customer, bucket, key, version_id, result, reason, threats, "
        "requester, source_ip, received_at, notified) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
        "%s, %s, %s) ON CONFLICT ON CONSTRAINT gate_stop_object_version DO NOTHING",
        (arrival.customer, arrival.bucket, arrival.key, arrival.version_id, result, reason,
         Jsonb(list(threats)), arrival.requester, arrival.source_ip, arrival.time, notified))


def custody_of(conn: psycopg.Connection[Any], bucket: str, key: str,
               version_id: str) -> dict[str, Any] | None:
    """The custody row of an imported version (its id, checksum, row count, import time)."""
    row = conn.execute(
        "SELECT id, size, checksum, checksum_algorithm, row_count, imported_at FROM custody "
        "WHERE bucket = %s AND key = %s AND version_id = %s", (bucket, key, version_id),
    ).fetchone()
    if row is None:
        return None
    return {"id": row[0], "size": row[1], "checksum": row[2], "checksum_algorithm": row[3],
            "row_count": row[4], "imported_at": row[5]}


def manifest_of(conn: psycopg.Connection[Any], bucket: str, key: str,
                version_id: str) -> dict[str, Any] | None:
    """The batch-manifest row of an imported commit marker."""
    row = conn.execute(
        "SELECT id, checksum, checksum_algorithm, file_count, imported_at FROM batch_manifest "
        "WHERE bucket = %s AND key = %s AND version_id = %s", (bucket, key, version_id),
    ).fetchone()
    if row is None:
        return None
    return {"id": row[0], "checksum": row[1], "checksum_algorithm": row[2],
            "row_count": row[3], "imported_at": row[4]}


def has_receipt(conn: psycopg.Connection[Any], bucket: str, key: str, version_id: str) -> bool:
    return _recorded(conn, "receipt", bucket, key, version_id)


def record_receipt(conn: psycopg.Connection[Any], body: dict[str, Any], *, receipt_key: str,
                   signature: str, signing_key: str) -> None:
    conn.execute(
        "INSERT INTO receipt (bucket, key, version_id, outcome, receipt_key, body, signature, "
        "signing_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT ON CONSTRAINT "
        "receipt_object_version DO NOTHING",
        (body["bucket"], body["key"], body["version_id"], body["outcome"], receipt_key,
         Jsonb(body), signature, signing_key))
