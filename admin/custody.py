"""The chain of custody of one object: every version, and what each record says about it.

For a customer's object key this joins, per version:

- **S3**: the version list (time, size, ETag, delete markers), and per version HeadObject: the
  full-object checksum S3 verified on upload and stored, the encryption and its KMS key, the
  uploader's checksum in user metadata (``partner-transfer-crc64nvme``) and, if a tool set
  it, ``uploader-arn``;
- **client manifests** (``--manifest``, the partner's or operator's local JSON-lines custody
  log): who (caller ARN from STS) transferred which version when, with which checksum;
- **batch manifests** in the bucket (``<prefix>_manifests/<batch>.json``, the client's commit
  markers): the batch, its caller ARN, each file's version and checksum;
- **the importer** (``--dsn``): the custody row, if that version was imported, with AWS's
  record of the requester (the S3 event's account and source address);
- **a local file** (``--local-file``): its checksum, to say whether it is that version.

Every checksum a record states is compared with S3's stored one (the reference); a record
that disagrees makes the report inconsistent. Who uploaded is shown twice, labelled: AWS's
record (the fact) and what the uploader's own records claim (manifests, object metadata),
never one in place of the other. Nothing here writes anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from partner_transfer import checksums
from partner_transfer.checksums import ALGORITHM, METADATA_KEY
from partner_transfer.manifest import BATCH_FOLDER, read_manifest

# Batch manifests read per prefix at most, newest first (each is one small GetObject).
MAX_BATCH_MANIFESTS = 200
# Object metadata key an uploading tool may set to name its principal (as the importer reads).
UPLOADER_METADATA_KEY = "uploader-arn"
LOCAL_FILE = "local file"
# A batch manifest is written after its files; allow for clock skew when pruning by time.
_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Claim:
    """What one record says about a version. ``matches``: its checksum equals the stored one
    (``None`` when it states none, or one of another algorithm)."""

    source: str  # "object metadata" | "client manifest" | "batch manifest" | "importer" | ...
    where: str  # the file, key or row the claim comes from
    checksum: str | None = None
    algorithm: str | None = None
    uploader: str | None = None
    time: str | None = None
    detail: str = ""
    matches: bool | None = None
    size: int | None = None


@dataclass
class VersionCustody:
    """One version of the object. ``present`` False: records name it but S3 no longer has
    it (expired by the noncurrent-version lifecycle, or never existed)."""

    version_id: str
    present: bool = True
    is_latest: bool = False
    delete_marker: bool = False
    last_modified: str | None = None
    size: int | None = None
    etag: str | None = None
    stored_checksum: str | None = None
    stored_algorithm: str | None = None
    checksum_type: str | None = None
    server_side_encryption: str | None = None
    kms_key_id: str | None = None
    claims: list[Claim] = field(default_factory=list)
    imported: dict[str, Any] | None = None
    # The malware gate's record (importer/store.gate_chain): scan, stop, receipt.
    gate: dict[str, Any] | None = None
    # AWS's record of the request that wrote the version (the S3 event, as the importer kept
    # it): the requesting account or service, and its source address.
    requester: str | None = None
    source_ip: str | None = None
    # AWS's record of the request that wrote it (CloudTrail, admin.custody_trail), and what
    # disagrees with AWS's records or the stored object (size, principal).
    aws_write: dict[str, Any] | None = None
    # Why S3's own description of the version could not be read (HeadObject refused: the
    # operator role never reads an inbound version, and HeadObject is s3:GetObject in IAM).
    unread: str | None = None
    aws_note: str | None = None
    disagreements: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        """No record disagrees with the stored checksum or size, nor with AWS's record of
        the principal (a local file is no record: it may simply be another version)."""
        return not self.disagreements and all(
            c.matches is not False for c in self.claims if c.source != LOCAL_FILE)

    @property
    def same_as_local_file(self) -> bool | None:
        """The local file has this version's content (``None``: no local file compared)."""
        local = [c.matches for c in self.claims if c.source == LOCAL_FILE]
        return local[0] if local else None

    @property
    def claimed_uploaders(self) -> list[str]:
        """Who the uploader's own records say uploaded it (a claim, not AWS's record)."""
        return list(dict.fromkeys(c.uploader for c in self.claims if c.uploader))


@dataclass
class CustodyReport:
    customer: str
    bucket: str
    key: str
    versions: list[VersionCustody]
    local_file: str | None = None
    local_checksum: str | None = None
    importer_consulted: bool = False
    notes: list[str] = field(default_factory=list)
    # AWS's records (admin.custody_trail.TrailSection), when read.
    trail: Any = None

    @property
    def consistent(self) -> bool:
        return all(v.consistent for v in self.versions)

    @property
    def evidence_intact(self) -> bool | None:
        """The trail's evidence checked out (None: not read)."""
        return None if self.trail is None else bool(self.trail.intact)

    def to_json(self) -> dict[str, Any]:
        trail, self.trail = self.trail, None
        try:
            document = asdict(self)
        finally:
            self.trail = trail
        document["trail"] = trail.to_json() if trail is not None else None
        document["evidence_intact"] = self.evidence_intact
        document["consistent"] = self.consistent
        for version, data in zip(self.versions, document["versions"], strict=True):
            data["consistent"] = version.consistent
            data["same_as_local_file"] = version.same_as_local_file
            data["claimed_uploaders"] = version.claimed_uploaders
        return document


class CustodyError(Exception):
    """An expected failure of the custody command (one line)."""


# --- building the report ----------------------------------------------------------------------


def custody_report(
    s3: Any,
    *,
    customer: str,
    bucket: str,
    key: str,
    version_id: str | None = None,
    local_file: Path | None = None,
    manifests: Sequence[Path] = (),
    importer_rows: Callable[[str, str], dict[str, dict[str, Any]]] | None = None,
    verify_bytes: bool = False,
) -> CustodyReport:
    """The custody of ``bucket``/``key`` (every version, or only ``version_id``).

    ``manifests``: client custody manifests to search (default none). ``importer_rows``:
    ``(bucket, key) -> {version id: custody_chain row}`` (default: the importer is not asked).
    ``local_file`` (default none): compared with every version. ``verify_bytes`` (default
    False): also read each version and recompute its checksum.
    """
    listed = _list_versions(s3, bucket, key)
    versions: dict[str, VersionCustody] = {v.version_id: v for v in listed}
    report = CustodyReport(customer=customer, bucket=bucket, key=key, versions=[],
                           importer_consulted=importer_rows is not None)

    def version(vid: str | None) -> VersionCustody:
        vid = vid or "null"
        if vid not in versions:
            versions[vid] = VersionCustody(version_id=vid, present=False)
        return versions[vid]

    for v in listed:
        if not v.delete_marker:
            _describe_stored(s3, bucket, key, v, verify_bytes)
    for path in manifests:
        for record in _manifest_records(path):
            if record.get("bucket") != bucket or record.get("key") != key:
                continue
            if record.get("result") not in ("ok", "skipped"):
                report.notes.append(
                    f"{path}: a failed {record.get('direction')} at {record.get('time')}: "
                    f"{record.get('error')}")
                continue
            # A download's caller read the version: it is no claim about who wrote it.
            upload = record.get("direction") == "upload"
            version(record.get("version_id")).claims.append(Claim(
                source="client manifest", where=str(path),
                checksum=record.get("checksum"), algorithm=record.get("checksum_algorithm"),
                uploader=record.get("caller_arn") if upload else None,
                time=record.get("time"), size=_size(record.get("size")),
                detail=f"{record.get('direction')} {record.get('result')}, batch "
                       f"{record.get('batch_id')}, "
                       + (f"from {record.get('local_path')}" if upload else
                          f"by {record.get('caller_arn')} to {record.get('local_path')}")))
    since = min((_parse_time(v.last_modified) for v in listed if v.last_modified),
                default=None)
    for claim_version, claim in _batch_manifest_claims(s3, bucket, key, since, report.notes):
        version(claim_version).claims.append(claim)
    if importer_rows is not None:
        for vid, row in importer_rows(bucket, key).items():
            _add_importer_row(version(vid), row)
    if local_file is not None:
        _compare_local_file(report, versions.values(), local_file)
    for v in versions.values():
        _judge(v)
    ordered = listed + [v for vid, v in versions.items() if not v.present]
    if version_id is not None:
        ordered = [v for v in ordered if v.version_id == version_id]
        if not ordered:
            raise CustodyError(f"no version {version_id} of s3://{bucket}/{key} in the bucket "
                               "or in any record")
    report.versions = ordered
    return report


def _list_versions(s3: Any, bucket: str, key: str) -> list[VersionCustody]:
    """Every version and delete marker of exactly ``key``, newest first."""
    found: list[VersionCustody] = []
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=key):
        for item in page.get("Versions", []):
            if item["Key"] == key:
                found.append(VersionCustody(
                    version_id=str(item.get("VersionId") or "null"),
                    is_latest=bool(item.get("IsLatest")), last_modified=_iso(item["LastModified"]),
                    size=int(item.get("Size", 0)), etag=item.get("ETag")))
        for item in page.get("DeleteMarkers", []):
            if item["Key"] == key:
                found.append(VersionCustody(
                    version_id=str(item.get("VersionId") or "null"),
                    is_latest=bool(item.get("IsLatest")), delete_marker=True,
                    last_modified=_iso(item["LastModified"])))
    # S3 lists each key's versions newest first; merge the delete markers in by time (the
    # sort is stable, so versions of the same second keep S3's order).
    found.sort(key=lambda v: _parse_time(v.last_modified), reverse=True)
    return found


def _refused(err: ClientError) -> bool:
    error = err.response.get("Error", {})
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 403 or error.get("Code") in ("AccessDenied", "403")


def _describe_stored(
        s3: Any, bucket: str, key: str, v: VersionCustody, verify_bytes: bool) -> None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=v.version_id,
                              ChecksumMode="ENABLED")
    except ClientError as err:
        if not _refused(err):
            raise
        v.unread = ("HeadObject refused to this caller (it is s3:GetObject in IAM, which the "
                    "operator role has for no inbound/ version): S3's stored checksum, key and "
                    "metadata are not shown; the importer's row (--dsn) records S3's checksum")
        return
    v.server_side_encryption = head.get("ServerSideEncryption")
    v.kms_key_id = head.get("SSEKMSKeyId")
    v.checksum_type = head.get("ChecksumType")
    expected = checksums.expected_checksums(head)
    stored = next((e for e in expected if e.source == "s3"), None)
    if stored is not None:
        v.stored_checksum, v.stored_algorithm = stored.value, stored.algorithm
    metadata = head.get("Metadata") or {}
    recorded = _lookup(metadata, METADATA_KEY)
    uploader = _lookup(metadata, UPLOADER_METADATA_KEY)
    if recorded or uploader:
        v.claims.append(Claim(
            source="object metadata", where=f"x-amz-meta-{METADATA_KEY}",
            checksum=recorded, algorithm=ALGORITHM if recorded else None, uploader=uploader))
    if verify_bytes and v.stored_algorithm:
        hasher = checksums.new_hasher(v.stored_algorithm)
        try:
            body = s3.get_object(Bucket=bucket, Key=key, VersionId=v.version_id)["Body"]
        except ClientError as err:
            if not _refused(err):
                raise
            v.unread = "GetObject refused to this caller: --verify-bytes did not recompute"
            return
        try:
            for chunk in body.iter_chunks(1024 * 1024):
                hasher.update(chunk)
        finally:
            body.close()
        v.claims.append(Claim(source="stored bytes", where="GetObject, recomputed now",
                              checksum=hasher.value(), algorithm=v.stored_algorithm))


def _manifest_records(path: Path) -> list[dict[str, Any]]:
    try:
        return read_manifest(path)
    except FileNotFoundError:
        raise CustodyError(f"no such manifest: {path}") from None
    except (OSError, ValueError) as exc:
        raise CustodyError(f"cannot read manifest {path}: {exc}") from None


def _batch_manifest_prefixes(key: str) -> list[str]:
    """``<ancestor>/_manifests/`` for every folder above ``key``, nearest first."""
    parts = key.split("/")[:-1]
    return ["/".join(parts[:n]) + "/" + BATCH_FOLDER for n in range(len(parts), 0, -1)]


def _batch_manifest_claims(
    s3: Any, bucket: str, key: str, since: datetime | None, notes: list[str]
) -> Iterable[tuple[str | None, Claim]]:
    for prefix in _batch_manifest_prefixes(key):
        candidates = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if item["Key"].endswith(".json") and "/" not in item["Key"][len(prefix):] and (
                        since is None or item["LastModified"] >= since - _SKEW):
                    candidates.append(item)
        candidates.sort(key=lambda item: item["LastModified"], reverse=True)
        if len(candidates) > MAX_BATCH_MANIFESTS:
            notes.append(f"{len(candidates) - MAX_BATCH_MANIFESTS} older batch manifest(s) "
                         f"under {prefix} were not read")
        for item in candidates[:MAX_BATCH_MANIFESTS]:
            try:
                body = s3.get_object(Bucket=bucket, Key=item["Key"], ChecksumMode="ENABLED")
                document = json.loads(body["Body"].read())
            except (ClientError, ValueError) as exc:
                notes.append(f"batch manifest {item['Key']} could not be read: {exc}")
                continue
            if not isinstance(document, dict):
                continue
            for entry in document.get("files") or []:
                if isinstance(entry, dict) and entry.get("key") == key:
                    yield entry.get("version_id"), Claim(
                        source="batch manifest", where=item["Key"],
                        checksum=entry.get("checksum"), algorithm=entry.get("checksum_algorithm"),
                        uploader=document.get("caller_arn"), time=document.get("created_at"),
                        size=_size(entry.get("size")),
                        detail=f"batch {document.get('batch_id')}")


def _add_importer_row(v: VersionCustody, row: dict[str, Any]) -> None:
    if row.get("gate"):
        v.gate = {part: ({k: _iso(x) if k.endswith("_at") else x for k, x in value.items()}
                         if value else None) for part, value in row["gate"].items()}
    if "id" not in row:  # stopped at the gate, or still waiting for its scan
        return
    v.imported = {
        "custody_id": row["id"], "imported_at": _iso(row["imported_at"]),
        "row_count": row["row_count"], "event_id": row["event_id"],
        "event_time": _iso(row["event_time"]), "requester": row["requester"],
        "source_ip": row["source_ip"],
        "claimed_uploader_arn": row["claimed_uploader_arn"],
        "claimed_uploader_source": row["claimed_uploader_source"],
        "checksum": row["checksum"], "checksum_algorithm": row["checksum_algorithm"],
        "checksum_source": row["checksum_source"], "kms_key_id": row["kms_key_id"],
    }
    v.requester, v.source_ip = row["requester"], row["source_ip"]
    v.claims.append(Claim(
        source="importer", where=f"custody row {row['id']}", checksum=row["checksum"],
        algorithm=row["checksum_algorithm"], uploader=row["claimed_uploader_arn"],
        time=_iso(row["imported_at"]),
        detail=f"{row['row_count']} row(s); uploader claimed by "
               f"{row['claimed_uploader_source']}"))


def _compare_local_file(
        report: CustodyReport, versions: Iterable[VersionCustody], path: Path) -> None:
    if not path.is_file():
        raise CustodyError(f"no such local file: {path}")
    report.local_file = str(path)
    report.local_checksum = checksums.digest_path(path, ALGORITHM)
    digests = {ALGORITHM: report.local_checksum}
    for v in versions:
        algorithm = v.stored_algorithm or ALGORITHM
        if v.delete_marker or (v.present and v.stored_algorithm is None and not v.claims):
            continue
        if algorithm not in digests:
            digests[algorithm] = checksums.digest_path(path, algorithm)
        v.claims.append(Claim(source=LOCAL_FILE, where=str(path),
                              checksum=digests[algorithm], algorithm=algorithm))


def _judge(v: VersionCustody) -> None:
    """Compare each claim's checksum with the stored one; without a stored one (a version S3
    no longer has), with the first stated one of the same algorithm."""
    reference, algorithm = v.stored_checksum, v.stored_algorithm
    if reference is None:
        first = next((c for c in v.claims if c.checksum and c.source != LOCAL_FILE), None)
        if first is None:
            return  # nothing to compare; sizes neither (S3 no longer has the version)
        reference, algorithm = first.checksum, first.algorithm
    judged = []
    for c in v.claims:
        if c.checksum is None or c.algorithm != algorithm:
            judged.append(c)
        else:
            judged.append(Claim(**{**asdict(c), "matches": c.checksum == reference}))
    v.claims = judged
    for c in v.claims:
        if c.size is not None and v.size is not None and v.present and c.size != v.size:
            v.disagreements.append(f"SIZE: the {c.source} ({c.where}) says {c.size} bytes; "
                                   f"S3 stores {v.size}")


def find_key_for_local_file(path: Path, manifests: Sequence[Path], bucket: str) -> str:
    """The one key the manifests record for a file with ``path``'s content in ``bucket``."""
    if not path.is_file():
        raise CustodyError(f"no such local file: {path}")
    crc = checksums.digest_path(path, ALGORITHM)
    keys = sorted({
        str(r["key"]) for m in manifests for r in _manifest_records(m)
        if r.get("bucket") == bucket and r.get("checksum") == crc
        and r.get("result") in ("ok", "skipped")})
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise CustodyError(f"no manifest records a transfer of {path} (CRC64NVME {crc}) in "
                           f"{bucket}: give the object KEY, or the client's --manifest")
    raise CustodyError(f"{path} was transferred as several keys ({', '.join(keys)}): give the "
                       "KEY")


# --- text -------------------------------------------------------------------------------------


def format_report(report: CustodyReport) -> str:
    """One header, then one block per version, newest first."""
    count = len(report.versions)
    lines = [f"custody of s3://{report.bucket}/{report.key} (customer {report.customer}): "
             f"{count} version{'s' if count != 1 else ''}"]
    if report.local_file:
        lines.append(f"local file {report.local_file}: CRC64NVME {report.local_checksum}")
    for v in report.versions:
        lines += ["", *_format_version(v, report.importer_consulted)]
    if report.trail is not None:
        lines += ["", *report.trail.format_lines(f"s3://{report.bucket}/{report.key}")]
    if report.notes:
        lines += ["", "notes:", *(f"  {n}" for n in report.notes)]
    lines += ["", "consistent: every record agrees with the stored checksum"
              + (", size and AWS's records" if report.trail is not None else "")
              if report.consistent else "INCONSISTENT: a record disagrees with the stored "
              "checksum, size or AWS's records (marked MISMATCH or DISAGREES above)"]
    if report.evidence_intact is not None:
        lines.append("evidence: the trail's log files and digests are intact"
                     if report.evidence_intact else "EVIDENCE BROKEN: the trail's log files or "
                     "digests are not intact (see trail evidence above)")
    return "\n".join(lines)


def _format_version(v: VersionCustody, importer_consulted: bool) -> list[str]:
    state = "current" if v.is_latest else "noncurrent"
    if not v.present:
        state = "not in the bucket (expired or deleted)"
    if v.delete_marker:
        lines = [f"version {v.version_id} ({state}): delete marker, {v.last_modified}"]
        if v.aws_write:
            lines.append(f"  deleted by  {_aws_write_line(v.aws_write)}")
        return lines
    lines = [f"version {v.version_id} ({state})"]
    if v.present and v.unread and v.stored_algorithm is None:
        lines.append(f"  stored      {v.last_modified}, {v.size} bytes, ETag {v.etag}")
        lines.append(f"  not read    {v.unread}")
    elif v.present:
        lines.append(f"  stored      {v.last_modified}, {v.size} bytes, ETag {v.etag}")
        if v.unread:
            lines.append(f"  not read    {v.unread}")
        lines.append(f"  encryption  {v.server_side_encryption or 'none reported'}"
                     + (f", KMS key {v.kms_key_id}" if v.kms_key_id else ""))
        stored = (f"{v.stored_algorithm} {v.stored_checksum} (stored by S3, "
                  f"{v.checksum_type or 'FULL_OBJECT'})" if v.stored_checksum
                  else "none stored by S3 (composite or absent)")
        lines.append(f"  checksum    {stored}")
    if v.requester:
        aws = f"{v.requester}" + (f" from {v.source_ip}" if v.source_ip else "")
        lines.append(f"  requester   {aws} (AWS's record: the S3 event)")
    elif not v.aws_write:
        lines.append("  requester   " + ("not recorded" if v.imported else
                                         "not in these records (the importer has it; "
                                         "CloudTrail has the full principal)"))
    if v.aws_write:
        w = v.aws_write
        lines.append(f"  written by  {_aws_write_line(w)}")
        lines.append(f"              {w['tls_version'] or 'no TLS'} {w['cipher'] or ''}, "
                     + (f"{w['bytes']} bytes sent, " if w["bytes"] is not None else "")
                     + f"{w['encryption'] or 'no encryption header'}"
                     + (f" {w['kms_key_id']}" if w["kms_key_id"] else "")
                     + f", agent {str(w['user_agent']).split(' ', 1)[0]}")
    elif v.aws_note:
        lines.append(f"  written by  {v.aws_note}")
    lines.append(f"  claimed by  {', '.join(v.claimed_uploaders) or 'nobody'} "
                 "(the uploader's own records: a claim)")
    gate = v.gate or {}
    if gate.get("scan"):
        scan = gate["scan"]
        threats = f" ({', '.join(scan['threats'])})" if scan["threats"] else ""
        lines.append(f"  scanned     {scan['result']}{threats} by GuardDuty, {scan['scanned_at']}")
    if v.imported:
        i = v.imported
        lines.append(f"  imported    {i['imported_at']}, {i['row_count']} row(s), custody row "
                     f"{i['custody_id']}")
    elif gate.get("stopped"):
        stop = gate["stopped"]
        lines.append(f"  imported    NO: stopped at the malware gate {stop['stopped_at']}: "
                     f"{stop['reason']}; told {len(stop['notified'])} topic(s)")
    else:
        lines.append("  imported    " + ("no" if importer_consulted
                                          else "not asked (give --dsn)"))
    if gate.get("receipt"):
        receipt = gate["receipt"]
        lines.append(f"  receipt     {receipt['outcome']}, signed, {receipt['key']} "
                     f"({receipt['issued_at']})")
    if v.same_as_local_file is not None:
        lines.append("  local file  " + ("same content as this version" if v.same_as_local_file
                                         else "different content"))
    records = [c for c in v.claims if c.source != LOCAL_FILE]
    lines.append("  records" + ("      none" if not records else ""))
    for c in records:
        verdict = {True: "matches", False: "MISMATCH", None: "not compared"}[c.matches]
        said = f"{c.algorithm} {c.checksum}" if c.checksum else "no checksum"
        extra = ", ".join(x for x in (c.time, c.uploader, c.detail) if x)
        lines.append(f"    {c.source}: {said}: {verdict}")
        lines.append(f"      {c.where}" + (f" ({extra})" if extra else ""))
    lines.extend(f"  DISAGREES   {d}" for d in v.disagreements)
    return lines


def _aws_write_line(w: dict[str, Any]) -> str:
    return (f"{w['principal']} ({w['principal_type']}) from {w['source_ip']} (AWS's record: "
            f"CloudTrail {w['event']} {w['time']}, request {w['request_id']})")


# --- helpers ----------------------------------------------------------------------------------


def _size(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _lookup(metadata: dict[str, Any], name: str) -> str | None:
    return next((str(v) for k, v in metadata.items() if k.lower() == name), None)


def _iso(moment: Any) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, datetime):
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        return moment.isoformat().replace("+00:00", "Z")
    return str(moment)


def _parse_time(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)
