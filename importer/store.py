"""PostgreSQL side: the strict CSV reader, the one-transaction loads, and custody look-ups.

Every load is one transaction. Data rows are copied first (``COPY``), then the custody row is
inserted with ``ON CONFLICT (bucket, key, version_id) DO NOTHING``: if another delivery of the
same version got there first, the transaction is rolled back and nothing of this one remains.
Two concurrent deliveries of one version serialize on the unique index; exactly one commits.
A parse error anywhere in the file aborts the copy and rolls back everything.

Connections are expected in autocommit mode (``psycopg.connect(dsn, autocommit=True)``):
:func:`load_csv` and :func:`load_batch_manifest` open their own transaction.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from importer.errors import MalformedFile
from importer.fetch import Fetched
from importer.message import IngestionEvent

SCHEMA_PATH = Path(__file__).with_name("schema.sql")
# The longest field the reader accepts (csv's default is 128 KiB).
FIELD_SIZE_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Uploader:
    """Who the uploader's own records say uploaded the version: a claim, not AWS's record.
    ``source`` is ``batch-manifest`` (the caller ARN in the client's commit marker, imported
    earlier), ``object-metadata`` (``x-amz-meta-uploader-arn``) or ``unknown``. AWS's record
    of the requester (the S3 event's account and source address) is kept beside it, in its own
    columns, never replaced by a claim."""

    arn: str | None
    source: str
    batch_id: str | None = None


@dataclass(frozen=True)
class LoadResult:
    """``loaded`` False means the version was already recorded and nothing was written."""

    loaded: bool
    custody_id: int | None
    row_count: int
    uploader: Uploader | None = None


def apply_schema(conn: psycopg.Connection[Any]) -> None:
    """Create or update the importer's tables, triggers and view (idempotent)."""
    with conn.transaction():
        conn.execute(SCHEMA_PATH.read_text(encoding="utf-8").encode("utf-8"))


def is_loaded(conn: psycopg.Connection[Any], bucket: str, key: str, version_id: str) -> bool:
    """True if this object version has a custody row or a batch-manifest row already."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM custody WHERE bucket = %(b)s AND key = %(k)s "
        "AND version_id = %(v)s) OR EXISTS (SELECT 1 FROM batch_manifest WHERE bucket = %(b)s "
        "AND key = %(k)s AND version_id = %(v)s)",
        {"b": bucket, "k": key, "v": version_id},
    ).fetchone()
    return bool(row and row[0])


# --- the strict CSV reader ------------------------------------------------------------------


@contextlib.contextmanager
def open_csv(path: Path) -> Iterator[tuple[list[str], Iterator[list[str]]]]:
    """Open a strict CSV file: yields its header and an iterator over its data rows.

    Rules (each violation raises :class:`MalformedFile` naming the line): UTF-8 (a leading
    byte-order mark is dropped); a header row whose names are non-empty and unique; every row
    has as many fields as the header (a blank line is a row with none); quoting per RFC 4180
    (``csv``'s strict mode); no NUL bytes; fields up to ``FIELD_SIZE_LIMIT`` characters. The
    iterator raises as it reaches a bad row, so a caller inside a transaction writes nothing
    of a bad file.
    """
    csv.field_size_limit(FIELD_SIZE_LIMIT)
    # newline="" as the csv module requires.
    with path.open(encoding="utf-8-sig", errors="strict", newline="") as text:
        reader = csv.reader(text, strict=True)

        def next_row() -> list[str] | None:
            try:
                row = next(reader)
            except StopIteration:
                return None
            except UnicodeDecodeError:
                raise MalformedFile(f"line {reader.line_num + 1}: not UTF-8") from None
            except csv.Error as exc:
                raise MalformedFile(f"line {reader.line_num}: {exc}") from None
            # PostgreSQL text and jsonb cannot hold NUL, and no CSV producer means it.
            if any("\x00" in value for value in row):
                raise MalformedFile(f"line {reader.line_num}: NUL character")
            return row

        header = next_row()
        if header is None:
            raise MalformedFile("empty file: a header row is required")
        if any(not name.strip() for name in header):
            raise MalformedFile("line 1: the header has an empty column name")
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise MalformedFile(f"line 1: duplicate column names {', '.join(duplicates)}")

        def rows() -> Iterator[list[str]]:
            while (row := next_row()) is not None:
                if len(row) != len(header):
                    raise MalformedFile(f"line {reader.line_num}: {len(row)} fields, the "
                                        f"header has {len(header)}")
                yield row

        yield header, rows()


# --- loads ----------------------------------------------------------------------------------


def claimed_uploader(conn: psycopg.Connection[Any], fetched: Fetched) -> Uploader:
    """What the uploader's own records claim: an imported batch manifest listing this version,
    else the object's ``uploader-arn`` metadata, else nothing."""
    row = conn.execute(
        "SELECT bm.caller_arn, bm.batch_id FROM batch_manifest_file f "
        "JOIN batch_manifest bm ON bm.id = f.manifest_id "
        "WHERE bm.bucket = %s AND f.key = %s AND f.version_id = %s AND bm.caller_arn IS NOT NULL "
        "ORDER BY bm.id LIMIT 1",
        (fetched.bucket, fetched.key, fetched.version_id),
    ).fetchone()
    if row is not None:
        return Uploader(row[0], "batch-manifest", row[1])
    if fetched.uploader_from_metadata:
        return Uploader(fetched.uploader_from_metadata, "object-metadata")
    return Uploader(None, "unknown")


class _AlreadyLoaded(Exception):
    """Raised inside a load's transaction to roll it back: another delivery won."""


def load_csv(
    conn: psycopg.Connection[Any], event: IngestionEvent, fetched: Fetched
) -> LoadResult:
    """Load a verified CSV file and its custody row in one transaction (all or nothing).

    Returns ``loaded=False`` without writing anything when the version is already recorded.
    Raises :class:`MalformedFile` (nothing written) for a file :func:`open_csv` refuses.
    """
    count = 0
    try:
        with open_csv(fetched.path) as (header, rows), conn.transaction(), \
                conn.cursor() as cur:
            uploader = claimed_uploader(conn, fetched)
            custody_id = _next_id(cur, "custody")
            with cur.copy("COPY inbound_rows (custody_id, row_number, data) FROM STDIN") as copy:
                for count, row in enumerate(rows, start=1):
                    copy.write_row((custody_id, count, Jsonb(dict(zip(header, row, strict=True)))))
            inserted = cur.execute(
                "INSERT INTO custody (id, customer, bucket, key, version_id, size, etag, "
                "checksum, checksum_algorithm, checksum_source, kms_key_id, uploader_arn, "
                "uploader_source, batch_id, event_id, event_time, requester, source_ip, "
                "row_count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, %s) ON CONFLICT ON CONSTRAINT custody_object_version DO NOTHING "
                "RETURNING id",
                (custody_id, event.customer, fetched.bucket, fetched.key, fetched.version_id,
                 fetched.size, fetched.etag, fetched.checksum, fetched.checksum_algorithm,
                 fetched.checksum_source, fetched.kms_key_id, uploader.arn, uploader.source,
                 uploader.batch_id, event.event_id, event.time, event.requester,
                 event.source_ip, count),
            ).fetchone()
            if inserted is None:
                raise _AlreadyLoaded()
    except _AlreadyLoaded:
        return LoadResult(False, None, 0)
    return LoadResult(True, custody_id, count, uploader)


def _next_id(cur: psycopg.Cursor[Any], table: str) -> int:
    row = cur.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, 'id'))", (table,)).fetchone()
    assert row is not None
    return int(row[0])


def parse_batch_manifest(path: Path) -> dict[str, Any]:
    """A client batch manifest (``partner_transfer.manifest.batch_manifest``), checked:
    ``batch_id`` a string, ``files`` a list of objects each with a string ``key``."""
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedFile(f"batch manifest is not UTF-8 JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("batch_id"), str):
        raise MalformedFile("batch manifest has no batch_id")
    files = document.get("files")
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("key"), str) for f in files):
        raise MalformedFile("batch manifest's files must be a list of objects with a key")
    caller = document.get("caller_arn")
    if caller is not None and not isinstance(caller, str):
        raise MalformedFile("batch manifest's caller_arn must be a string")
    return document


def load_batch_manifest(
    conn: psycopg.Connection[Any], event: IngestionEvent, fetched: Fetched
) -> LoadResult:
    """Record a verified batch manifest and the files it lists in one transaction.

    ``row_count`` of the result is the number of files listed. Idempotent like
    :func:`load_csv`. Custody rows of files imported before it are not changed (they are
    append-only); the ``custody_chain`` view joins them with it.
    """
    document = parse_batch_manifest(fetched.path)
    files: list[dict[str, Any]] = document["files"]

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    def integer(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    try:
        with conn.transaction(), conn.cursor() as cur:
            manifest_id = _next_id(cur, "batch_manifest")
            cur.executemany(
                "INSERT INTO batch_manifest_file (manifest_id, position, key, version_id, size, "
                "checksum, checksum_algorithm) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(manifest_id, n, f["key"], text(f.get("version_id")), integer(f.get("size")),
                  text(f.get("checksum")), text(f.get("checksum_algorithm")))
                 for n, f in enumerate(files, start=1)],
            )
            inserted = cur.execute(
                "INSERT INTO batch_manifest (id, customer, bucket, key, version_id, checksum, "
                "checksum_algorithm, batch_id, caller_arn, created_at, file_count, event_id, "
                "event_time) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT ON CONSTRAINT batch_manifest_object_version DO NOTHING RETURNING id",
                (manifest_id, event.customer, fetched.bucket, fetched.key, fetched.version_id,
                 fetched.checksum, fetched.checksum_algorithm, document["batch_id"],
                 document.get("caller_arn"), text(document.get("created_at")), len(files),
                 event.event_id, event.time),
            ).fetchone()
            if inserted is None:
                raise _AlreadyLoaded()
    except _AlreadyLoaded:
        return LoadResult(False, None, 0)
    return LoadResult(True, manifest_id, len(files),
                      Uploader(document.get("caller_arn"), "batch-manifest", document["batch_id"]))


# --- custody look-ups (for the operator's custody command) -----------------------------------


def custody_chain(
    conn: psycopg.Connection[Any], bucket: str, key: str
) -> dict[str, dict[str, Any]]:
    """Every imported version of ``bucket``/``key``, by version id, as ``custody_chain`` rows
    (the custody columns plus ``batch_manifest_*`` and ``claimed_uploader_*``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT * FROM custody_chain WHERE bucket = %s AND key = %s ORDER BY id", (bucket, key))
        return {str(row["version_id"]): dict(row) for row in cur.fetchall()}


def gate_chain(conn: psycopg.Connection[Any], bucket: str, key: str) -> dict[str, dict[str, Any]]:
    """The malware gate's record of every version of ``bucket``/``key``, by version id:
    ``scan`` (GuardDuty's verdict as the importer received it), ``stopped`` (the stop, its
    reason and who was told) and ``receipt`` (where the signed receipt was written); each None
    when there is none."""
    found: dict[str, dict[str, Any]] = {}

    def entry(version_id: str) -> dict[str, Any]:
        return found.setdefault(version_id, {"scan": None, "stopped": None, "receipt": None})

    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(
                "SELECT version_id, scan_status, result, threats, event_time FROM scan_result "
                "WHERE bucket = %s AND key = %s", (bucket, key)):
            entry(row["version_id"])["scan"] = {
                "status": row["scan_status"], "result": row["result"],
                "threats": list(row["threats"] or []), "scanned_at": row["event_time"]}
        for row in cur.execute(
                "SELECT version_id, result, reason, notified, stopped_at FROM gate_stop "
                "WHERE bucket = %s AND key = %s", (bucket, key)):
            entry(row["version_id"])["stopped"] = {
                "result": row["result"], "reason": row["reason"],
                "notified": list(row["notified"]), "stopped_at": row["stopped_at"]}
        for row in cur.execute(
                "SELECT version_id, outcome, receipt_key, issued_at FROM receipt "
                "WHERE bucket = %s AND key = %s", (bucket, key)):
            entry(row["version_id"])["receipt"] = {
                "outcome": row["outcome"], "key": row["receipt_key"],
                "issued_at": row["issued_at"]}
    return found
