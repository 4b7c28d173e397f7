"""Where every registered customer stands: access mode, deployed or offboarded, the age of
the partner's current access key and the days to its next rotation (iam-user), when the
partner's CA expires (roles-anywhere: certificate expiry is what replaces key rotation), and
the last upload, from the best custody data at hand.

Last upload, best evidence first: the importer's custody table (``--dsn``: the S3 event time
of the newest imported version), the partner's client manifests (``--manifest``: the newest
``upload`` that succeeded), and the bucket itself (the newest object under the upload prefix,
batch manifests excluded; operators may list). When several are given, the newest time wins
and its source is named. Key ages and rotation dates come from :mod:`admin.keys`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from admin import keys, offboarding
from admin.stack_outputs import LifecycleError, StackOutputs, describe_outputs
from phi_core import naming
from phi_core.defaults import CA_EXPIRY_NOTICE_DAYS
from stacks.certificates import CaCertificate
from stacks.config import AccessMode, CustomerConfig, Direction

DEFAULT_MAX_LISTED = 10_000
MANIFEST_FOLDER = "_manifests/"


@dataclass(frozen=True)
class LastUpload:
    """The newest upload found: when, which key, from which source. ``partial`` when the
    bucket listing stopped at its limit (the newest object may be among those not listed)."""

    time: datetime
    key: str
    source: str
    partial: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"time": _iso(self.time), "key": self.key, "source": self.source,
                "partial": self.partial}


@dataclass(frozen=True)
class CustomerStatus:
    """One customer's line. ``state``: ``active``, ``offboarded`` (the bucket carries the
    offboarding deny, or the registry says so), ``not deployed``, ``unknown`` (the stack could
    not be read, or is not usable: see the notes). ``notes``: anything that
    could not be read, and inconsistencies worth acting on."""

    slug: str
    access: AccessMode
    state: str
    bucket: str | None = None
    current_key_id: str | None = None
    key_age_days: int | None = None
    days_to_rotation: int | None = None
    next_rotation: date | None = None
    last_upload: LastUpload | None = None
    uploads: bool = True  # False: the customer has no upload folder
    # roles-anywhere: the registered CA certificates, and the days until the first expires
    ca_certificates: tuple[CaCertificate, ...] = ()
    days_to_ca_expiry: int | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.slug, "access_mode": self.access.value, "state": self.state,
            "bucket": self.bucket, "current_key_id": self.current_key_id,
            "key_age_days": self.key_age_days, "days_to_rotation": self.days_to_rotation,
            "next_rotation": self.next_rotation.isoformat() if self.next_rotation else None,
            "last_upload": self.last_upload.to_json() if self.last_upload else None,
            "has_upload_folder": self.uploads,
            "ca_certificates": [{"subject": c.subject, "not_after": _iso(c.not_after),
                                 "sha256_fingerprint": c.sha256_fingerprint, "key": c.key}
                                for c in self.ca_certificates],
            "days_to_ca_expiry": self.days_to_ca_expiry, "notes": list(self.notes),
        }


ImporterLookup = Callable[[str, str], LastUpload | None]


def customer_status(customer: CustomerConfig, *, cloudformation: Any, s3: Any, iam: Any,
                    secretsmanager: Any, now: datetime,
                    importer: ImporterLookup | None = None,
                    manifests: Sequence[Path] = (),
                    max_listed: int = DEFAULT_MAX_LISTED) -> CustomerStatus:
    """Read one customer's status. Errors reading one source become notes; the other sources
    are still read. ``importer`` (default none) looks up the newest imported version of
    ``(customer, bucket)``; ``manifests`` (default none) are client custody manifests;
    ``max_listed`` (default 10,000) bounds the bucket listing."""
    status = _with_ca(CustomerStatus(slug=customer.slug, access=customer.access,
                                     state="not deployed",
                                     uploads=customer.allows(Direction.INBOUND)), customer, now)
    try:
        outputs = describe_outputs(cloudformation, customer.slug)
    except LifecycleError as err:
        return replace(status, state="unknown", notes=(*status.notes, str(err)))
    except ClientError as err:
        return replace(status, state="unknown",
                       notes=(*status.notes, f"stack not read: {_error_line(err)}"))
    if outputs is None:
        missing = f"stack {naming.stack_name(customer.slug)} does not exist"
        return replace(status, notes=(*status.notes, missing))
    notes: list[str] = list(status.notes)
    in_registry = bool(getattr(customer, "offboarded", False))
    status = replace(status, bucket=outputs.bucket, state="active",
                     uploads=outputs.inbound_prefix is not None)
    try:
        denied = offboarding.has_deny(offboarding.read_bucket_policy(s3, outputs.bucket))
    except ClientError as err:
        notes.append(f"bucket policy not read: {_error_line(err)}")
        denied = False
    if outputs.offboarded or denied or in_registry:
        status = replace(status, state="offboarded")
    if denied and not (in_registry or outputs.offboarded):
        notes.append("offboarded by command; the registry does not record it yet (a deploy "
                     "would remove the deny): see docs/offboarding.md")
    if in_registry and not outputs.offboarded:
        notes.append("the registry says offboarded but the deployed stack still grants "
                     f"access: cdk deploy CustomerStack -c customer={customer.slug}")
    if outputs.offboarded:
        return replace(status, notes=tuple(notes))

    if customer.access is AccessMode.IAM_USER:
        status = _with_key(status, customer, iam=iam, secretsmanager=secretsmanager, now=now,
                           notes=notes)
    if outputs.inbound_prefix:
        status = replace(status, last_upload=_last_upload(
            customer, outputs, s3=s3, importer=importer, manifests=manifests,
            max_listed=max_listed, notes=notes))
    return replace(status, notes=tuple(notes))


def _with_ca(status: CustomerStatus, customer: CustomerConfig,
             now: datetime) -> CustomerStatus:
    """roles-anywhere: the partner's CA from the registry (what the trust anchor holds once
    deployed), with a note on each certificate and a warning inside the notice window."""
    settings = customer.roles_anywhere
    if settings is None:
        return status
    valid = [c for c in settings.certificates if c.not_before <= now < c.not_after]
    # The partner's access ends when the last valid CA expires: in a rollover the old CA
    # expiring soon is no warning, its successor is there.
    days = max(c.days_left(now) for c in valid) if valid else 0
    notes = [f"CA {c.subject} ({c.key}, SHA-256 {c.sha256_fingerprint}) "
             + (f"expires {c.not_after:%Y-%m-%d} ({c.days_left(now)} d)" if c in valid else
                f"expired on {c.not_after:%Y-%m-%d}: remove it from the bundle"
                if c.not_after <= now else f"is valid from {c.not_before:%Y-%m-%d}")
             for c in settings.certificates]
    if days <= CA_EXPIRY_NOTICE_DAYS and not customer.offboarded:
        notes.append(f"the partner's CA expires in {days} d: every session ends then; add "
                     f"its successor CA to {settings.ca_file or 'roles_anywhere.ca_bundle'} "
                     "(both certificates in the bundle) and deploy (docs/onboarding.md, "
                     "\"Certificate expiry\")")
    return replace(status, ca_certificates=settings.certificates, days_to_ca_expiry=days,
                   notes=(*status.notes, *notes))


def _with_key(status: CustomerStatus, customer: CustomerConfig, *, iam: Any,
              secretsmanager: Any, now: datetime, notes: list[str]) -> CustomerStatus:
    try:
        report = keys.customer_report(customer, iam=iam, secretsmanager=secretsmanager, now=now)
    except ClientError as err:
        notes.append(f"access keys not read: {_error_line(err)}")
        return status
    if report.problem:
        notes.append(report.problem)
    current = next((k for k in report.keys if k.state == "current"), None)
    if current is not None and current.status != "Active":
        notes.append(f"the current key {current.access_key_id} is {current.status}")
    return replace(
        status,
        current_key_id=current.access_key_id if current else None,
        key_age_days=current.age_days if current else None,
        days_to_rotation=report.days_to_rotation if report.rotation_enabled else None,
        next_rotation=report.next_rotation.date() if (report.next_rotation
                                                      and report.rotation_enabled) else None)


def _last_upload(customer: CustomerConfig, outputs: StackOutputs, *, s3: Any,
                 importer: ImporterLookup | None, manifests: Sequence[Path], max_listed: int,
                 notes: list[str]) -> LastUpload | None:
    found: list[LastUpload] = []
    if importer is not None:
        try:
            imported = importer(customer.slug, outputs.bucket)
        except LifecycleError as err:
            notes.append(str(err))
            imported = None
        if imported:
            found.append(imported)
    if manifests:
        from_manifests = last_manifest_upload(manifests, outputs.bucket)
        if from_manifests:
            found.append(from_manifests)
    if importer is None or not found:
        try:
            listed = last_listed_upload(s3, outputs.bucket, outputs.inbound_prefix or "",
                                        max_listed=max_listed)
        except ClientError as err:
            notes.append(f"bucket not listed: {_error_line(err)}")
            listed = None
        if listed:
            found.append(listed)
    return max(found, key=lambda u: u.time) if found else None


def last_listed_upload(s3: Any, bucket: str, prefix: str, *,
                       max_listed: int = DEFAULT_MAX_LISTED) -> LastUpload | None:
    """The newest object under ``prefix`` (batch manifests excluded), from ListObjectsV2,
    looking at no more than ``max_listed`` (default 10,000) objects."""
    newest: dict[str, Any] | None = None
    listed = 0
    partial = False
    for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix,
            PaginationConfig={"PageSize": min(1000, max_listed)}):
        for item in page.get("Contents", []):
            listed += 1
            manifest = f"/{MANIFEST_FOLDER}" in f"/{item['Key']}"
            if not manifest and (newest is None
                                 or item["LastModified"] > newest["LastModified"]):
                newest = item
        if listed >= max_listed and page.get("IsTruncated"):
            partial = True
            break
    if newest is None:
        return None
    return LastUpload(time=_utc(newest["LastModified"]), key=newest["Key"],
                      source="bucket listing", partial=partial)


def last_manifest_upload(paths: Sequence[Path], bucket: str) -> LastUpload | None:
    """The newest successful upload to ``bucket`` in client custody manifests (JSON lines;
    lines that are not such records are skipped)."""
    newest: LastUpload | None = None
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise LifecycleError(f"cannot read manifest {path}: {err.strerror}") from None
        for line in lines:
            try:
                record = json.loads(line)
                if (record.get("direction") != "upload" or record.get("result") != "ok"
                        or record.get("bucket") != bucket):
                    continue
                moment = _utc(datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")))
                key = str(record["key"])
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if newest is None or moment > newest.time:
                newest = LastUpload(time=moment, key=key, source=f"client manifest {path.name}")
    return newest


LAST_IMPORT_SQL = ("SELECT key, event_time FROM custody WHERE customer = %s AND bucket = %s "
                   "ORDER BY event_time DESC, id DESC LIMIT 1")


def last_imported_upload(conn: Any, customer: str, bucket: str) -> LastUpload | None:
    """The newest version the importer loaded for ``customer`` from ``bucket`` (its S3 event
    time), from the custody table (``importer/schema.sql``)."""
    with conn.cursor() as cur:
        cur.execute(LAST_IMPORT_SQL, (customer, bucket))
        row = cur.fetchone()
    if row is None:
        return None
    return LastUpload(time=_utc(row[1]), key=str(row[0]), source="importer custody table")


def format_status(statuses: Sequence[CustomerStatus], *, now: datetime) -> str:
    """A table, one line per customer, then the notes."""
    header = ("CUSTOMER", "ACCESS", "STATE", "KEY AGE", "ROTATION IN", "CA EXPIRES IN",
              "LAST UPLOAD")
    rows = [header]
    for s in statuses:
        rows.append((
            s.slug, s.access.value, s.state,
            f"{s.key_age_days} d" if s.key_age_days is not None else "-",
            f"{s.days_to_rotation} d" if s.days_to_rotation is not None else "-",
            f"{s.days_to_ca_expiry} d" if s.days_to_ca_expiry is not None else "-",
            _describe_upload(s, now),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1]
             for row in rows]
    for s in statuses:
        lines += [f"{s.slug}: {note}" for note in s.notes]
    return "\n".join(line.rstrip() for line in lines)


def _describe_upload(status: CustomerStatus, now: datetime) -> str:
    if not status.uploads:
        return "n/a (no upload folder)"
    upload = status.last_upload
    if upload is None:
        return "none" if status.state != "not deployed" else "-"
    ago = (now.date() - upload.time.date()).days
    partial = ", partial listing" if upload.partial else ""
    return (f"{upload.time:%Y-%m-%d %H:%M} UTC ({ago} d ago) {upload.key} "
            f"[{upload.source}{partial}]")


def _error_line(err: ClientError) -> str:
    error = err.response.get("Error", {})
    return f"{err.operation_name}: {error.get('Code', 'Error')}"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")
