"""AWS's own records of what happened to objects: CloudTrail data events and S3 server access
logs, read for a key or a prefix and a time window.

Two sources of CloudTrail events stand behind one interface (:class:`EventSource`):

- :class:`S3TrailSource` reads the trail's log files in its custody bucket, only the hours of
  the window (the trail's key layout names the delivery hour), and checks with
  :mod:`admin.trail_evidence` that every file it read is intact. Its cost grows with the
  events per hour in the window, not with the size of the bucket.
- :class:`AthenaTrailSource` asks Athena (the table AWS documents for CloudTrail logs, with
  partition projection by day) for the matching events and the log file each came from
  (``"$path"``), then checks those files the same way. For prefixes, long windows and large
  estates (docs/custody.md: which source past which size).

CloudTrail Lake (an event data store instead of the bucket) is the third option AWS offers;
it is documented in docs/custody.md, not implemented: its events carry no log file to verify
(Lake has its own integrity validation), so the evidence check would differ.

Server access logs (:func:`read_access_logs`) are the second, independent record: S3 writes
them to the customer's log bucket, best effort, within hours.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import unquote

from botocore.exceptions import ClientError

from admin import trail_evidence
from admin.trail_evidence import DELIVERY_LAG, Evidence, EvidenceError, TrailInfo, TrailStore
from phi_core import trail_files

# The object-level events custody cares about (others are kept, and shown, too).
WRITES = ("PutObject", "CompleteMultipartUpload", "CopyObject", "UploadPart",
          "UploadPartCopy", "CreateMultipartUpload", "AbortMultipartUpload")
DELETES = ("DeleteObject", "DeleteObjects")
VERSION_WRITES = ("PutObject", "CompleteMultipartUpload", "CopyObject")
# Windows longer than this list the trail's log files by day rather than by hour.
BY_DAY_AFTER = timedelta(hours=36)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; a bare date is midnight UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrailEvent:
    """One CloudTrail data event, as custody reads it. ``principal_arn`` is None for a caller
    of another account in the bucket owner's trail (CloudTrail records only its account and
    principal id there)."""

    time: str
    name: str
    bucket: str
    key: str | None
    principal_type: str
    principal_arn: str | None
    account: str
    principal_id: str
    session_issuer: str | None
    source_ip: str
    user_agent: str
    tls_version: str | None
    cipher: str | None
    request_id: str
    event_id: str
    version_id: str | None
    bytes_in: int | None
    bytes_out: int | None
    encryption: str | None
    kms_key_id: str | None
    upload_id: str | None
    error_code: str | None
    log_file: str | None
    keys: tuple[str, ...] = ()  # DeleteObjects: every key it named

    @classmethod
    def from_record(cls, record: Mapping[str, Any], log_file: str | None) -> TrailEvent:
        identity = record.get("userIdentity") or {}
        parameters = record.get("requestParameters") or {}
        response = record.get("responseElements") or {}
        additional = record.get("additionalEventData") or {}
        tls = record.get("tlsDetails") or {}
        issuer = ((identity.get("sessionContext") or {}).get("sessionIssuer") or {})
        version = (response.get("x-amz-version-id") if isinstance(response, dict) else None) \
            or parameters.get("versionId")
        names: list[str] = []
        delete = parameters.get("delete")
        if isinstance(delete, dict):
            objects = delete.get("Object") or []
            objects = objects if isinstance(objects, list) else [objects]
            names = [str(o.get("Key")) for o in objects if isinstance(o, dict)]

        def number(value: Any) -> int | None:
            try:
                return int(value) if value is not None else None
            except (TypeError, ValueError):
                return None

        encryption = (response.get("x-amz-server-side-encryption")
                      if isinstance(response, dict) else None) or parameters.get(
            "x-amz-server-side-encryption")
        kms = (response.get("x-amz-server-side-encryption-aws-kms-key-id")
               if isinstance(response, dict) else None) or parameters.get(
            "x-amz-server-side-encryption-aws-kms-key-id")
        return cls(
            time=str(record.get("eventTime", "")), name=str(record.get("eventName", "")),
            bucket=str(parameters.get("bucketName", "")),
            key=parameters.get("key"),
            principal_type=str(identity.get("type", "")),
            principal_arn=identity.get("arn"),
            account=str(identity.get("accountId", "")),
            principal_id=str(identity.get("principalId", "")),
            session_issuer=issuer.get("arn"),
            source_ip=str(record.get("sourceIPAddress", "")),
            user_agent=str(record.get("userAgent", "")),
            tls_version=tls.get("tlsVersion"),
            cipher=tls.get("cipherSuite") or additional.get("CipherSuite"),
            request_id=str(record.get("requestID", "")),
            event_id=str(record.get("eventID", "")),
            version_id=str(version) if version else None,
            bytes_in=number(additional.get("bytesTransferredIn")),
            bytes_out=number(additional.get("bytesTransferredOut")),
            encryption=str(encryption) if encryption else None,
            kms_key_id=str(kms) if kms else None,
            upload_id=parameters.get("uploadId"),
            error_code=record.get("errorCode"),
            log_file=log_file, keys=tuple(names))

    @property
    def principal(self) -> str:
        """Who, as AWS recorded it: the ARN, else the account and principal id."""
        if self.principal_arn:
            return self.principal_arn
        if self.account == "ANONYMOUS_PRINCIPAL":
            return "anonymous"
        return f"account {self.account} (principal id {self.principal_id})"

    def touches(self, key: str | None, prefix: str | None) -> bool:
        names = [self.key] if self.key else []
        names.extend(self.keys)
        if key is not None:
            return key in names
        if prefix is not None:
            return any(n.startswith(prefix) for n in names if n)
        return True

    def to_json(self) -> dict[str, Any]:
        # Field by field: dataclasses.asdict deep-copies, ~14x slower on a long window.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["keys"] = list(self.keys)
        data["principal"] = self.principal
        return data


@dataclass(frozen=True)
class EventQuery:
    """Events on ``bucket`` for one ``key`` or under a ``prefix`` (or every key), whose
    eventTime is in [start, end]."""

    bucket: str
    start: datetime
    end: datetime
    key: str | None = None
    prefix: str | None = None

    def may_match(self, record: Mapping[str, Any]) -> bool:
        """A cheap first look at a raw record: on this bucket, and naming the key (or a key
        under the prefix), or a batch delete. :meth:`matches` decides."""
        parameters = record.get("requestParameters")
        if not isinstance(parameters, dict) or parameters.get("bucketName") != self.bucket:
            return False
        if "delete" in parameters:
            return True
        key = parameters.get("key")
        if self.key is not None:
            return bool(key == self.key)
        if self.prefix:
            return isinstance(key, str) and key.startswith(self.prefix)
        return True

    def matches(self, event: TrailEvent) -> bool:
        if event.bucket != self.bucket or not event.touches(self.key, self.prefix):
            return False
        try:
            moment = parse_time(event.time)
        except ValueError:
            return False
        return self.start <= moment <= self.end


@dataclass
class SourceResult:
    """What a source found: the events (oldest first), the evidence of the files they came
    from, and how much was read."""

    source: str
    events: list[TrailEvent]
    evidence: Evidence | None
    log_files_read: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


class EventSource(Protocol):
    """Where CloudTrail events come from (the custody bucket, Athena, ...)."""

    name: str

    def events(self, query: EventQuery) -> SourceResult: ...


def _records(raw: bytes) -> list[dict[str, Any]]:
    try:
        document = json.loads(raw)
    except ValueError:
        return []
    records = document.get("Records") if isinstance(document, dict) else None
    return [r for r in records or [] if isinstance(r, dict)]


class S3TrailSource:
    """CloudTrail events read from the custody bucket by the trail's key layout (module
    docstring), with the evidence checked for every file read."""

    name = "custody bucket"

    def __init__(self, s3: Any, cloudtrail: Any, trail: TrailInfo, region: str, *,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.s3, self.cloudtrail, self.trail, self.region = s3, cloudtrail, trail, region
        self.now = now

    def events(self, query: EventQuery) -> SourceResult:
        started = time.monotonic()
        store = TrailStore(self.s3, self.trail, self.region)
        last = query.end + DELIVERY_LAG
        if last - query.start > BY_DAY_AFTER:
            # Long windows: one listing per day instead of 24 (the files are read anyway).
            first = query.start.astimezone(UTC).replace(hour=0, minute=0, second=0,
                                                        microsecond=0)
            listed = (first, last.astimezone(UTC).replace(hour=23, minute=59, second=59))
            files = store.log_files_by_day(query.start, last)
        else:
            listed = (query.start, last)
            files = store.log_files(query.start, last)
        # Each file is hashed (for the evidence) and filtered as it arrives; only the hashes
        # and the matching events are kept, so memory follows the answer, not the window.
        hashes: dict[str, str] = {}
        found: list[TrailEvent] = []
        # A long window is listed by whole days (the listing also finds what is missing),
        # but only the files delivered in its hours are read.
        first_hour = query.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        to_read = [s for s in sorted(files.values(), key=lambda s: s.key)
                   if (when := trail_files.log_time(s.key)) is None
                   or first_hour <= when <= last]
        for key, (raw, _) in store.read_each(to_read):
            hashes[key] = trail_evidence.log_file_hash(raw)
            for record in _records(raw):
                if query.may_match(record):
                    event = TrailEvent.from_record(record, key)
                    if query.matches(event):
                        found.append(event)
        found.sort(key=lambda e: e.time)
        evidence = trail_evidence.verify(store, self.cloudtrail, start=query.start,
                                         end=query.end, log_files=files, log_hashes=hashes,
                                         listed_hours=listed, now=self.now)
        return SourceResult(self.name, found, evidence, log_files_read=len(hashes),
                            notes=[f"{store.listings} listing(s) and {store.reads} read(s) of "
                                   f"s3://{self.trail.bucket}"],
                            seconds=time.monotonic() - started)


# --- Athena -----------------------------------------------------------------------------------

# The table AWS documents for CloudTrail logs with partition projection (one region):
# https://docs.aws.amazon.com/athena/latest/ug/create-cloudtrail-table-partition-projection.html
ATHENA_TABLE_DDL = """\
CREATE EXTERNAL TABLE IF NOT EXISTS {table} (
    eventversion STRING,
    useridentity STRUCT<type: STRING, principalid: STRING, arn: STRING, accountid: STRING,
        invokedby: STRING, accesskeyid: STRING, username: STRING,
        sessioncontext: STRUCT<attributes: STRUCT<mfaauthenticated: STRING,
            creationdate: STRING>, sessionissuer: STRUCT<type: STRING, principalid: STRING,
            arn: STRING, accountid: STRING, username: STRING>>>,
    eventtime STRING, eventsource STRING, eventname STRING, awsregion STRING,
    sourceipaddress STRING, useragent STRING, errorcode STRING, errormessage STRING,
    requestparameters STRING, responseelements STRING, additionaleventdata STRING,
    requestid STRING, eventid STRING, readonly STRING,
    resources ARRAY<STRUCT<arn: STRING, accountid: STRING, type: STRING>>,
    eventtype STRING, apiversion STRING, recipientaccountid STRING,
    serviceeventdetails STRING, sharedeventid STRING, vpcendpointid STRING,
    tlsdetails STRUCT<tlsversion: STRING, ciphersuite: STRING,
        clientprovidedhostheader: STRING>
)
PARTITIONED BY (`timestamp` STRING)
ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe'
STORED AS INPUTFORMAT 'com.amazon.emr.cloudtrail.CloudTrailInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://{bucket}/{prefix}AWSLogs/{account}/CloudTrail/{region}'
TBLPROPERTIES (
    'projection.enabled'='true',
    'projection.timestamp.format'='yyyy/MM/dd',
    'projection.timestamp.interval'='1',
    'projection.timestamp.interval.unit'='DAYS',
    'projection.timestamp.range'='{first_day},NOW',
    'projection.timestamp.type'='date',
    'storage.location.template'='s3://{bucket}/{prefix}AWSLogs/{account}/CloudTrail/{region}/${{timestamp}}')
"""

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
ATHENA_COLUMNS = (
    ('"$path"', "log_file"), ("eventtime", "eventtime"), ("eventname", "eventname"),
    ("eventid", "eventid"), ("requestid", "requestid"), ("awsregion", "awsregion"),
    ("sourceipaddress", "sourceipaddress"), ("useragent", "useragent"),
    ("errorcode", "errorcode"), ("useridentity.type", "identity_type"),
    ("useridentity.arn", "identity_arn"), ("useridentity.accountid", "identity_account"),
    ("useridentity.principalid", "identity_principal_id"),
    ("useridentity.sessioncontext.sessionissuer.arn", "session_issuer"),
    ("tlsdetails.tlsversion", "tls_version"), ("tlsdetails.ciphersuite", "cipher"),
    ("requestparameters", "requestparameters"), ("responseelements", "responseelements"),
    ("additionaleventdata", "additionaleventdata"),
)


def sql_literal(value: str) -> str:
    """A Presto/Trino string literal."""
    return "'" + value.replace("'", "''") + "'"


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def athena_query(table: str, query: EventQuery) -> tuple[str, list[str]]:
    """The SQL for ``query`` against the CloudTrail table ``table`` (``db.table``), and its
    execution parameters (string literals, in order). Only the days of the window are
    scanned (partition projection on ``timestamp``)."""
    if not IDENTIFIER.match(table):
        raise ValueError(f"not a table name: {table!r}")
    days = []
    day = query.start.astimezone(UTC).date()
    last = (query.end + DELIVERY_LAG).astimezone(UTC).date()
    while day <= last:
        days.append(day.strftime("%Y/%m/%d"))
        day += timedelta(days=1)
    columns = ",\n       ".join(f"{expr} AS {alias}" for expr, alias in ATHENA_COLUMNS)
    where = [
        '"timestamp" BETWEEN ? AND ?',
        "eventsource = 's3.amazonaws.com'",
        "json_extract_scalar(requestparameters, '$.bucketName') = ?",
        "from_iso8601_timestamp(eventtime) BETWEEN from_iso8601_timestamp(?) "
        "AND from_iso8601_timestamp(?)",
    ]
    parameters = [sql_literal(days[0]), sql_literal(days[-1]), sql_literal(query.bucket),
                  sql_literal(_iso(query.start)), sql_literal(_iso(query.end))]
    if query.key is not None:
        where.append("(json_extract_scalar(requestparameters, '$.key') = ? "
                     "OR strpos(requestparameters, ?) > 0)")
        parameters += [sql_literal(query.key), sql_literal(json.dumps(query.key))]
    elif query.prefix:
        where.append("(json_extract_scalar(requestparameters, '$.key') LIKE ? ESCAPE '\\' "
                     "OR eventname = 'DeleteObjects')")
        parameters.append(sql_literal(_like_prefix(query.prefix)))
    sql = (f"SELECT {columns}\nFROM {table}\nWHERE " + "\n  AND ".join(where)
           + "\nORDER BY eventtime")
    return sql, parameters


def record_from_athena_row(row: Mapping[str, str | None]) -> tuple[dict[str, Any], str | None]:
    """A CloudTrail record (the fields custody reads) rebuilt from one result row, and the
    log file it came from."""
    def document(name: str) -> Any:
        text = row.get(name)
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None

    identity: dict[str, Any] = {"type": row.get("identity_type"), "arn": row.get("identity_arn"),
                "accountId": row.get("identity_account"),
                "principalId": row.get("identity_principal_id")}
    if row.get("session_issuer"):
        identity["sessionContext"] = {"sessionIssuer": {"arn": row["session_issuer"]}}
    record: dict[str, Any] = {
        "eventTime": row.get("eventtime"), "eventName": row.get("eventname"),
        "eventID": row.get("eventid"), "requestID": row.get("requestid"),
        "awsRegion": row.get("awsregion"), "sourceIPAddress": row.get("sourceipaddress"),
        "userAgent": row.get("useragent"), "errorCode": row.get("errorcode"),
        "userIdentity": {k: v for k, v in identity.items() if v is not None},
        "tlsDetails": {"tlsVersion": row.get("tls_version"), "cipherSuite": row.get("cipher")},
        "requestParameters": document("requestparameters"),
        "responseElements": document("responseelements"),
        "additionalEventData": document("additionaleventdata"),
    }
    return record, row.get("log_file")


def rows_from_results(pages: Iterable[Mapping[str, Any]]) -> list[dict[str, str | None]]:
    """GetQueryResults pages -> rows keyed by column name (the first row of the first page is
    the header, as Athena returns it for a SELECT)."""
    rows: list[dict[str, str | None]] = []
    header: list[str] | None = None
    for page in pages:
        names = [c["Name"] for c in page.get("ResultSet", {}).get(
            "ResultSetMetadata", {}).get("ColumnInfo", [])]
        for row in page.get("ResultSet", {}).get("Rows", []):
            values = [d.get("VarCharValue") for d in row.get("Data", [])]
            if header is None:
                header = names or [str(v) for v in values]
                if values == header:
                    continue
            rows.append(dict(zip(header, values, strict=False)))
    return rows


def _s3_key(path: str | None, bucket: str) -> str | None:
    prefix = f"s3://{bucket}/"
    return path[len(prefix):] if path and path.startswith(prefix) else None


class AthenaTrailSource:
    """CloudTrail events from Athena (module docstring), with the evidence of the log files
    they came from checked in the custody bucket. ``table``: ``database.table`` created with
    :data:`ATHENA_TABLE_DDL`; ``workgroup`` (default ``primary``) and ``output`` (an
    ``s3://`` location for results; default: the workgroup's)."""

    name = "athena"

    def __init__(self, athena: Any, s3: Any, cloudtrail: Any, trail: TrailInfo, region: str,
                 *, table: str, workgroup: str = "primary", output: str | None = None,
                 poll_seconds: float = 1.0, timeout_seconds: float = 600,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.athena, self.s3, self.cloudtrail = athena, s3, cloudtrail
        self.trail, self.region, self.table = trail, region, table
        self.workgroup, self.output = workgroup, output
        self.poll_seconds, self.timeout_seconds, self.now = poll_seconds, timeout_seconds, now

    def run(self, sql: str, parameters: Sequence[str]) -> list[dict[str, str | None]]:
        request: dict[str, Any] = {"QueryString": sql, "WorkGroup": self.workgroup,
                                   "ExecutionParameters": list(parameters)}
        if self.output:
            request["ResultConfiguration"] = {"OutputLocation": self.output}
        try:
            execution = self.athena.start_query_execution(**request)["QueryExecutionId"]
            deadline = time.monotonic() + self.timeout_seconds
            while True:
                status = self.athena.get_query_execution(QueryExecutionId=execution)[
                    "QueryExecution"]["Status"]
                if status["State"] == "SUCCEEDED":
                    break
                if status["State"] in ("FAILED", "CANCELLED"):
                    raise EvidenceError(f"Athena query {execution} {status['State']}: "
                                        f"{status.get('StateChangeReason', '')}")
                if time.monotonic() > deadline:
                    raise EvidenceError(f"Athena query {execution} still running after "
                                        f"{self.timeout_seconds:.0f} s")
                time.sleep(self.poll_seconds)
            pages = self.athena.get_paginator("get_query_results").paginate(
                QueryExecutionId=execution)
            return rows_from_results(pages)
        except ClientError as err:
            error = err.response.get("Error", {})
            raise EvidenceError(f"Athena: {error.get('Code')}: {error.get('Message')}") \
                from None

    def events(self, query: EventQuery) -> SourceResult:
        started = time.monotonic()
        sql, parameters = athena_query(self.table, query)
        events = []
        paths: set[str] = set()
        for row in self.run(sql, parameters):
            record, path = record_from_athena_row(row)
            key = _s3_key(path, self.trail.bucket)
            event = TrailEvent.from_record(record, key)
            if query.matches(event):
                events.append(event)
                if key:
                    paths.add(key)
        store = TrailStore(self.s3, self.trail, self.region)
        # The window's log files are listed by day (no file is read for that); the files
        # Athena drew events from are read and checked like the S3 source's, and every file
        # a digest of the window lists must still be in the bucket.
        last = query.end + DELIVERY_LAG
        files = store.log_files_by_day(query.start, last)
        hashes = {k: trail_evidence.log_file_hash(raw) for k, (raw, _) in
                  store.read_each(files[k] for k in sorted(paths) if k in files)}
        day_start = query.start.astimezone(UTC).replace(hour=0, minute=0, second=0,
                                                        microsecond=0)
        day_end = last.astimezone(UTC).replace(hour=23, minute=59, second=59)
        evidence = trail_evidence.verify(
            store, self.cloudtrail, start=query.start, end=query.end, log_files=files,
            log_hashes=hashes, listed_hours=(day_start, day_end), now=self.now)
        missing = sorted(paths - set(files))
        for key in missing:
            evidence.findings.append(trail_evidence.Finding(
                "MISSING", key, "Athena returned events from this log file, which is no "
                "longer in the bucket"))
        return SourceResult(self.name, sorted(events, key=lambda e: e.time),
                            evidence, log_files_read=len(hashes),
                            notes=[f"Athena table {self.table}; {len(paths)} log file(s) "
                                   "named by the results were checked"],
                            seconds=time.monotonic() - started)


# --- server access logs ------------------------------------------------------------------------

_ACCESS_LOG_FIELDS = (
    "bucket_owner", "bucket", "time", "remote_ip", "requester", "request_id", "operation",
    "key", "request_uri", "http_status", "error_code", "bytes_sent", "object_size",
    "total_time", "turn_around_time", "referer", "user_agent", "version_id", "host_id",
    "signature_version", "cipher_suite", "authentication_type", "host_header",
    "tls_version", "access_point_arn", "acl_required", "source_region",
)
_TOKEN = re.compile(r'\[[^\]]*\]|"(?:[^"\\]|\\.)*"|\S+')


@dataclass(frozen=True)
class AccessLogRecord:
    """One S3 server access log record (fields as S3 documents them; ``-`` becomes None)."""

    fields: dict[str, str | None]
    log_object: str

    def get(self, name: str) -> str | None:
        return self.fields.get(name)

    def to_json(self) -> dict[str, Any]:
        return {"log_object": self.log_object, **self.fields}


def parse_access_log_line(line: str, log_object: str = "") -> AccessLogRecord | None:
    tokens = _TOKEN.findall(line.strip())
    if len(tokens) < 18:
        return None
    values: dict[str, str | None] = {}
    for name, token in zip(_ACCESS_LOG_FIELDS, tokens, strict=False):
        if token.startswith("[") and token.endswith("]"):
            token = token[1:-1]
        elif token.startswith('"') and token.endswith('"'):
            token = token[1:-1].replace('\\"', '"')
        values[name] = None if token == "-" else token  # noqa: S105 - not a password
    return AccessLogRecord(values, log_object)


def access_log_time(record: AccessLogRecord) -> datetime | None:
    text = record.get("time")
    try:
        return datetime.strptime(str(text), "%d/%b/%Y:%H:%M:%S %z") if text else None
    except ValueError:
        return None


def read_access_logs(s3: Any, log_bucket: str, log_prefix: str, query: EventQuery, *,
                     lag: timedelta = timedelta(hours=3)) -> tuple[list[AccessLogRecord], int]:
    """The access-log records of ``query`` in ``log_bucket`` under ``log_prefix``, read by the
    hour in the log objects' names (``<prefix>YYYY-mm-DD-HH-...``) from the window's start
    to its end plus ``lag`` (S3 delivers within hours). Returns the records and the number
    of log objects read."""
    found: list[AccessLogRecord] = []
    objects = 0
    hour = query.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    last = (query.end + lag).astimezone(UTC)
    keys: list[str] = []
    try:
        paginator = s3.get_paginator("list_objects_v2")
        while hour <= last:
            for page in paginator.paginate(Bucket=log_bucket,
                                           Prefix=f"{log_prefix}{hour:%Y-%m-%d-%H}"):
                keys.extend(item["Key"] for item in page.get("Contents", []))
            hour += timedelta(hours=1)
        def read(key: str) -> bytes:
            body: bytes = s3.get_object(Bucket=log_bucket, Key=key)["Body"].read()
            return body

        # S3 writes many small log objects an hour for a busy bucket: read them in parallel.
        with ThreadPoolExecutor(max_workers=trail_evidence.READERS) as pool:
            bodies = list(zip(keys, pool.map(read, keys), strict=True))
        for key, body in bodies:
            objects += 1
            for line in body.decode(errors="replace").splitlines():
                record = parse_access_log_line(line, key)
                if record is None or record.get("bucket") != query.bucket:
                    continue
                # The log's key field is URL-encoded.
                name = unquote(record.get("key") or "")
                if query.key is not None and name != query.key:
                    continue
                if query.prefix and not name.startswith(query.prefix):
                    continue
                moment = access_log_time(record)
                if moment is None or not (query.start <= moment <= query.end):
                    continue
                found.append(record)
    except ClientError as err:
        error = err.response.get("Error", {})
        raise EvidenceError(f"cannot read access logs in s3://{log_bucket}/{log_prefix}: "
                            f"{error.get('Code')}: {error.get('Message')}") from None
    found.sort(key=lambda r: access_log_time(r) or query.start)
    return found, objects

