"""AWS's own records in the custody command: who did what to an object, from where, as
CloudTrail and S3's server access logs recorded it, and whether the trail's evidence is intact.

For one object (:func:`add_aws_records`) the window comes from its versions' times (the
earliest minus :data:`BEFORE`, the latest plus :data:`AFTER`, or ``--since``/``--until``);
every CloudTrail data event on the key in that window is listed, and each version is matched
with the event that wrote it (``x-amz-version-id`` in the event's response): AWS's principal
and source address for that version, compared with what the uploader's records claim
(principal) and with what S3 stores (size: the bytes the request carried, or the sum of a
multipart upload's parts). A disagreement is flagged on the version. For a prefix or a
whole bucket and a time range (:func:`window_report`), the events are a table or JSON lines.

The events come from an :class:`admin.trail_events.EventSource` (the custody bucket, or
Athena); the evidence check is always made on the log files the events came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from botocore.exceptions import ClientError

from admin.custody import CustodyReport, VersionCustody
from admin.trail_events import (
    VERSION_WRITES,
    AccessLogRecord,
    EventQuery,
    EventSource,
    TrailEvent,
    parse_time,
    read_access_logs,
)
from admin.trail_evidence import Evidence, EvidenceError

# The default window around an object's versions: a multipart upload starts before the
# version's time; the importer and other readers come after it.
BEFORE = timedelta(hours=1)
AFTER = timedelta(hours=2)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class AccessLogs:
    """Where the data bucket's server access logs go (GetBucketLogging), or why not read."""

    bucket: str | None
    prefix: str = ""
    problem: str | None = None


def access_log_location(s3: Any, bucket: str) -> AccessLogs:
    try:
        enabled = s3.get_bucket_logging(Bucket=bucket).get("LoggingEnabled")
    except ClientError as err:
        error = err.response.get("Error", {})
        return AccessLogs(None, problem=f"GetBucketLogging: {error.get('Code')}")
    if not enabled:
        return AccessLogs(None, problem="server access logging is off for the bucket")
    return AccessLogs(str(enabled["TargetBucket"]), str(enabled.get("TargetPrefix") or ""))


@dataclass
class TrailSection:
    """AWS's records for the report: events, access-log records, the evidence."""

    source: str
    trail: str
    start: str
    end: str
    events: list[TrailEvent]
    evidence: Evidence | None
    access_logs: AccessLogs
    access_log: list[AccessLogRecord] = field(default_factory=list)
    access_log_objects: int = 0
    log_files_read: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.evidence is None or self.evidence.intact

    @cached_property
    def _logged_requests(self) -> frozenset[str]:
        # Read once the access log is attached (_section), then asked once per event.
        return frozenset(str(r.get("request_id")) for r in self.access_log)

    def in_access_log(self, event: TrailEvent) -> bool:
        """The access log has a record of the event's request (same request id)."""
        return event.request_id in self._logged_requests

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "trail": self.trail, "window": [self.start, self.end],
            "events": [e.to_json() | {"in_access_log": self.in_access_log(e)}
                       for e in self.events],
            "access_log": {"bucket": self.access_logs.bucket,
                           "prefix": self.access_logs.prefix,
                           "problem": self.access_logs.problem,
                           "objects_read": self.access_log_objects,
                           "records": [r.to_json() for r in self.access_log]},
            "evidence": self.evidence.to_json() if self.evidence else None,
            "log_files_read": self.log_files_read, "seconds": round(self.seconds, 3),
            "notes": self.notes,
        }

    def format_lines(self, subject: str) -> list[str]:
        lines = [f"AWS's records of {subject}, {self.start} to {self.end}"]
        lines.append(f"  CloudTrail data events ({len(self.events)}; trail {self.trail}, "
                     f"read from the {self.source}, {self.log_files_read} log file(s)):")
        lines.extend(format_event(e, self.in_access_log(e)) for e in self.events)
        if not self.events:
            lines.append("    none in this window")
        if self.access_logs.bucket is None:
            lines.append(f"  server access log: not read ({self.access_logs.problem})")
        else:
            lines.append(f"  server access log (s3://{self.access_logs.bucket}/"
                         f"{self.access_logs.prefix}, {len(self.access_log)} record(s) in "
                         f"{self.access_log_objects} log object(s); S3 delivers within hours, "
                         "best effort):")
            lines.extend(format_access_log(r) for r in self.access_log)
        lines.extend(f"  note: {n}" for n in self.notes)
        lines.extend(format_evidence(self.evidence))
        return lines


def format_event(event: TrailEvent, in_access_log: bool | None = None) -> str:
    """One event, two lines: what and who, then from where and how."""
    what = f"{event.name}" + (f" FAILED {event.error_code}" if event.error_code else "")
    version = f" version {event.version_id}" if event.version_id else ""
    head = (f"    {event.time}  {what}{version}  by {event.principal} "
            f"({event.principal_type})")
    details = [f"from {event.source_ip}"]
    if event.tls_version:
        details.append(f"{event.tls_version} {event.cipher or ''}".strip())
    details.append(f"request {event.request_id}")
    if event.bytes_in:
        details.append(f"{event.bytes_in} bytes in")
    if event.bytes_out:
        details.append(f"{event.bytes_out} bytes out")
    if event.encryption:
        details.append(f"{event.encryption}" + (f" {event.kms_key_id}" if event.kms_key_id
                                                 else ""))
    if event.session_issuer:
        details.append(f"role {event.session_issuer}")
    if in_access_log is not None:
        details.append("in access log" if in_access_log else "not (yet) in access log")
    details.append(f"agent {event.user_agent.split(' ', 1)[0]}")
    return head + "\n        " + ", ".join(details)


def format_access_log(record: AccessLogRecord) -> str:
    return (f"    [{record.get('time')}] {record.get('operation')} {record.get('http_status')}"
            f" from {record.get('remote_ip')} by {record.get('requester') or 'anonymous'}, "
            f"request {record.get('request_id')}, version {record.get('version_id') or '-'}, "
            f"{record.get('bytes_sent') or 0} bytes sent, {record.get('tls_version') or '-'}")


def format_evidence(evidence: Evidence | None) -> list[str]:
    if evidence is None:
        return ["  trail evidence: not checked"]
    if evidence.intact:
        fingerprints = ", ".join(evidence.fingerprints) or "none needed"
        lines = [f"  trail evidence: INTACT: {evidence.log_files} log file(s) each match "
                 f"their digest; {evidence.digests} digest(s) in one chain, signatures valid "
                 f"(public key {fingerprints}, from cloudtrail:ListPublicKeys)"]
        if evidence.chain_first:
            lines.append(f"    chain {evidence.chain_first.rsplit('/', 1)[-1]} .. "
                         f"{(evidence.chain_last or '').rsplit('/', 1)[-1]}")
    else:
        broken = sum(1 for f in evidence.findings if f.broken)
        lines = [f"  trail evidence: BROKEN ({broken} finding(s)); {evidence.log_files} log "
                 f"file(s), {evidence.digests} digest(s) checked"]
    lines.extend(f"    {f.line()}" for f in evidence.findings)
    return lines


# --- one object ------------------------------------------------------------------------------


def object_window(report: CustodyReport, since: datetime | None,
                  until: datetime | None) -> tuple[datetime, datetime]:
    times = [datetime.fromisoformat(v.last_modified.replace("Z", "+00:00"))
             for v in report.versions if v.last_modified]
    now = datetime.now(UTC)
    start = since or (min(times) - BEFORE if times else now - timedelta(days=1))
    end = until or (min(max(times) + AFTER, now) if times else now)
    return start, max(end, start)


def add_aws_records(report: CustodyReport, source: EventSource, s3: Any, *,
                    trail_name: str, since: datetime | None = None,
                    until: datetime | None = None) -> TrailSection:
    """Read AWS's records of the report's object and attach them (module docstring)."""
    start, end = object_window(report, since, until)
    section = _section(source, s3, EventQuery(bucket=report.bucket, start=start, end=end,
                                              key=report.key), trail_name)
    for version in report.versions:
        _compare(version, section.events)
    report.trail = section
    return section


def _section(source: EventSource, s3: Any, query: EventQuery, trail_name: str) -> TrailSection:
    """The events of ``query`` from ``source`` with their evidence, and the bucket's access
    log records of the same window."""
    result = source.events(query)
    logs = access_log_location(s3, query.bucket)
    section = TrailSection(source=source.name, trail=trail_name, start=_iso(query.start),
                           end=_iso(query.end), events=result.events, evidence=result.evidence,
                           access_logs=logs, log_files_read=result.log_files_read,
                           seconds=result.seconds, notes=list(result.notes))
    if logs.bucket is not None:
        try:
            section.access_log, section.access_log_objects = read_access_logs(
                s3, logs.bucket, logs.prefix, query)
        except EvidenceError as err:
            section.access_logs = AccessLogs(None, problem=str(err))
    return section


def _compare(version: VersionCustody, events: Sequence[TrailEvent]) -> None:
    if version.delete_marker:
        deleted = next((e for e in events if e.name == "DeleteObject" and not e.error_code
                        and e.version_id == version.version_id), None)
        if deleted:
            version.aws_write = _written(deleted, None)
        return
    writer = next((e for e in events if e.name in VERSION_WRITES and not e.error_code
                   and e.version_id == version.version_id), None)
    if writer is None:
        if version.present:
            version.aws_note = ("no CloudTrail event in the window wrote this version (it was "
                                "written outside the window: widen it with --since/--until; "
                                "or its log file is not delivered yet)")
        return
    size = writer.bytes_in
    if writer.name == "CompleteMultipartUpload":
        parts = [e for e in events if e.name in ("UploadPart", "UploadPartCopy")
                 and e.upload_id == writer.upload_id and not e.error_code]
        size = sum(e.bytes_in or 0 for e in parts) if parts else None
    if writer.name == "CopyObject":
        size = None  # the bytes come from the source object, not the request
    version.aws_write = _written(writer, size)
    if size is not None and version.size is not None and size != version.size:
        version.disagreements.append(
            f"SIZE: CloudTrail recorded {size} bytes sent by {writer.principal} "
            f"({writer.name}, request {writer.request_id}); S3 stores {version.size}")
    for claimed in version.claimed_uploaders:
        if not _same_principal(claimed, writer):
            version.disagreements.append(
                f"PRINCIPAL: the uploader's records claim {claimed}; CloudTrail recorded "
                f"{writer.principal} ({writer.name}, request {writer.request_id})")


def _written(event: TrailEvent, size: int | None) -> dict[str, Any]:
    return {"event": event.name, "time": event.time, "principal": event.principal,
            "principal_type": event.principal_type, "account": event.account,
            "principal_id": event.principal_id, "source_ip": event.source_ip,
            "user_agent": event.user_agent, "tls_version": event.tls_version,
            "cipher": event.cipher, "request_id": event.request_id,
            "bytes": size, "encryption": event.encryption, "kms_key_id": event.kms_key_id,
            "log_file": event.log_file}


def _same_principal(claimed: str, event: TrailEvent) -> bool:
    if event.principal_arn:
        return claimed == event.principal_arn
    # Another account's caller: CloudTrail gives the bucket owner its account and principal
    # id (for a role session, "<role id>:<session name>").
    parts = claimed.split(":")
    account = parts[4] if len(parts) > 5 else None
    if account != event.account:
        return False
    if ":" in event.principal_id and "assumed-role/" in claimed:
        return claimed.rsplit("/", 1)[-1] == event.principal_id.split(":", 1)[1]
    return True


# --- a prefix (or a bucket) and a time range ---------------------------------------------------


@dataclass
class WindowReport:
    bucket: str
    prefix: str | None
    section: TrailSection


def window_report(source: EventSource, s3: Any, *, bucket: str, prefix: str | None,
                  start: datetime, end: datetime, trail_name: str) -> WindowReport:
    query = EventQuery(bucket=bucket, start=start, end=end, prefix=prefix or None)
    return WindowReport(bucket, prefix, _section(source, s3, query, trail_name))


_COLUMNS = ("time", "event", "key", "version", "principal", "source ip", "bytes", "request")


def format_table(report: WindowReport) -> str:
    section = report.section
    rows = [(e.time, e.name + (f" ({e.error_code})" if e.error_code else ""),
             e.key or ",".join(e.keys) or "-", e.version_id or "-", e.principal,
             e.source_ip, str(e.bytes_in or e.bytes_out or 0), e.request_id)
            for e in section.events]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(_COLUMNS)]
    widths[4] = min(widths[4], 60)
    where = f"s3://{report.bucket}/{report.prefix or ''}"
    lines = [f"CloudTrail data events on {where}, {section.start} to {section.end} "
             f"(trail {section.trail}, read from the {section.source}, "
             f"{section.log_files_read} log file(s)): {len(rows)}"]
    lines.append("  ".join(c.upper().ljust(w) for c, w in zip(_COLUMNS, widths, strict=True))
                 .rstrip())
    for row in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if section.access_logs.bucket is None:
        lines.append(f"server access log: not read ({section.access_logs.problem})")
    else:
        lines.append(f"server access log: {len(section.access_log)} record(s) in "
                     f"{section.access_log_objects} log object(s) of "
                     f"s3://{section.access_logs.bucket}/{section.access_logs.prefix}")
    lines.extend(line.strip() for line in format_evidence(section.evidence))
    return "\n".join(lines)


def json_lines(report: WindowReport) -> Iterable[str]:
    """One JSON object per line: each event (``"type": "event"``), each access-log record
    (``"access-log"``), then the evidence (``"evidence"``)."""
    section = report.section
    for event in section.events:
        yield json.dumps({"type": "event", **event.to_json(),
                          "in_access_log": section.in_access_log(event)})
    for record in section.access_log:
        yield json.dumps({"type": "access-log", **record.to_json()})
    yield json.dumps({"type": "evidence", "window": [section.start, section.end],
                      "source": section.source,
                      **(section.evidence.to_json() if section.evidence else {"intact": None})})


def parse_cli_time(text: str) -> datetime:
    """``--since``/``--until``: ISO 8601, ``Z`` or offset; a date alone is midnight UTC."""
    return parse_time(text)
