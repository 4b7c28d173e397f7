"""The audit trail's evidence: its log files, read by the trail's key layout, and proof that
they are intact (CloudTrail log-file validation, checked here).

CloudTrail writes each log file once, then every hour a **digest file** per region listing the
log files it delivered in that hour with the SHA-256 of each (uncompressed), the previous
digest's location, SHA-256 and signature, and it signs each digest (SHA256withRSA) with a key
whose public half ``cloudtrail:ListPublicKeys`` publishes. This module checks all of it for
the hours a question needs, the way ``aws cloudtrail validate-logs`` does:

- every log file read has a digest that lists it, with the same SHA-256 (else ``ALTERED`` or
  ``NOT IN A DIGEST``); every log file a digest lists for those hours is in the bucket (else
  ``MISSING``);
- every digest in the window is where it says it is (``MOVED``), signed by a key AWS publishes
  for its region (``KEY UNKNOWN``), and its signature verifies (``BAD SIGNATURE``);
- the digests form one chain: each names the previous one, which exists and has the SHA-256
  and signature recorded (``CHAIN BROKEN``); the chain is followed one link past the window
  on both sides; a digest no newer digest points to is reported (``OFF THE CHAIN``), and so is
  a chain that stops (``NO DIGEST SINCE``: CloudTrail writes one every hour, even empty);
- Object Lock keeps every version: a log file or digest with a newer version (``OVERWRITTEN``)
  or hidden by a delete marker (``DELETED``) is reported, and the version CloudTrail wrote (the
  oldest) is the one checked and read.

A finding is one line, and none is skipped. Log files delivered after the newest digest are
reported as ``AWAITING DIGEST`` (not a break: the next hourly digest will list them).

Reading does not scan the bucket: log files are listed by hour
(``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_YYYYMMDDTHH``),
digests by day, only for the hours asked. Everything here takes its clients as parameters
and is the same against AWS and the local emulator.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from phi_core import trail_files

# CloudTrail delivers a log file "about every 5 minutes" after the call (not guaranteed);
# allow this much between an event and the log file that holds it.
DELIVERY_LAG = timedelta(minutes=15)
# Digests are hourly; allow this much past the last log file for the digest that lists it.
DIGEST_LAG = timedelta(hours=2)
# Parallel reads of log files (S3 latency dominates a small file's read), and how many read
# files may wait to be parsed (the memory bound of a long window).
READERS = 8
READ_AHEAD = 64


class EvidenceError(Exception):
    """The trail or its bucket cannot be read at all (one line)."""


# --- the trail --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrailInfo:
    """The trail as DescribeTrails reports it."""

    name: str
    arn: str
    account: str
    home_region: str
    bucket: str
    prefix: str  # empty, or ending in "/"
    kms_key_id: str | None
    log_validation: bool
    multi_region: bool


def describe_trail(cloudtrail: Any, name: str) -> TrailInfo:
    """The trail ``name`` (as seen from the client's region: a multi-region trail of another
    home region included). Raises :class:`EvidenceError` when there is none."""
    try:
        trails = cloudtrail.describe_trails(trailNameList=[name],
                                            includeShadowTrails=True)["trailList"]
    except ClientError as err:
        raise EvidenceError(f"cannot describe trail {name}: {_client_error(err)}") from None
    trail = next((t for t in trails if t.get("Name") == name or t.get("TrailARN") == name),
                 None)
    if trail is None:
        raise EvidenceError(f"no trail {name} in region {cloudtrail.meta.region_name}: deploy "
                            "the audit stack (cdk deploy AuditStack), or pass --trail NAME")
    arn = str(trail["TrailARN"])
    prefix = str(trail.get("S3KeyPrefix") or "")
    return TrailInfo(
        name=str(trail["Name"]), arn=arn, account=arn.split(":")[4],
        home_region=str(trail.get("HomeRegion") or arn.split(":")[3]),
        bucket=str(trail["S3BucketName"]), prefix=f"{prefix.rstrip('/')}/" if prefix else "",
        kms_key_id=trail.get("KmsKeyId"),
        log_validation=bool(trail.get("LogFileValidationEnabled")),
        multi_region=bool(trail.get("IsMultiRegionTrail")))


# --- findings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem with the evidence, or a note. ``broken``: the evidence cannot be trusted as
    it stands."""

    kind: str
    subject: str
    detail: str
    broken: bool = True

    def line(self) -> str:
        return f"{self.kind}: {self.subject}: {self.detail}"


@dataclass
class Evidence:
    """What was checked for a window of one trail and region, and what was found."""

    trail: str
    bucket: str
    region: str
    start: str
    end: str
    log_files: int = 0
    digests: int = 0
    chain_first: str | None = None
    chain_last: str | None = None
    fingerprints: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not any(f.broken for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"trail": self.trail, "bucket": self.bucket, "region": self.region,
                "window": [self.start, self.end], "log_files_checked": self.log_files,
                "digests_checked": self.digests,
                "chain": [self.chain_first, self.chain_last],
                "public_keys": self.fingerprints, "intact": self.intact,
                "findings": [{"kind": f.kind, "subject": f.subject, "detail": f.detail,
                              "broken": f.broken, "line": f.line()} for f in self.findings]}


# --- the bucket, by the trail's layout --------------------------------------------------------


@dataclass
class Stored:
    """One key of the custody bucket: the version CloudTrail wrote (the oldest), and what
    happened to the key since."""

    key: str
    version_id: str | None
    last_modified: datetime
    versions: int = 1
    deleted: bool = False  # the newest entry is a delete marker


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _hours(start: datetime, end: datetime) -> list[datetime]:
    hour = _utc(start).replace(minute=0, second=0, microsecond=0)
    out = []
    while hour <= _utc(end):
        out.append(hour)
        hour += timedelta(hours=1)
    return out


def _days(start: datetime, end: datetime) -> list[datetime]:
    day = _utc(start).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    while day <= _utc(end):
        out.append(day)
        day += timedelta(days=1)
    return out


class TrailStore:
    """The custody bucket of ``trail``, for the log files of ``region``."""

    def __init__(self, s3: Any, trail: TrailInfo, region: str) -> None:
        self.s3, self.trail, self.region = s3, trail, region
        self.logs_base = trail_files.log_files_base(trail.prefix, trail.account, region)
        self.digests_base = trail_files.digests_base(trail.prefix, trail.account, region)
        self.listings = 0
        self.reads = 0

    def _list(self, prefix: str) -> dict[str, Stored]:
        """Every key under ``prefix`` with its versions (ListObjectVersions)."""
        # key -> its versions in S3's listing order (newest first), and whether a delete marker
        # is its latest version
        versions: dict[str, list[tuple[datetime, str | None]]] = {}
        hidden: set[str] = set()
        try:
            paginator = self.s3.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=self.trail.bucket, Prefix=prefix):
                self.listings += 1
                for item in page.get("Versions", []):
                    versions.setdefault(item["Key"], []).append(
                        (_utc(item["LastModified"]), item.get("VersionId")))
                for item in page.get("DeleteMarkers", []):
                    if item.get("IsLatest"):
                        hidden.add(item["Key"])
        except ClientError as err:
            raise EvidenceError(f"cannot list s3://{self.trail.bucket}/{prefix}: "
                                f"{_client_error(err)}") from None
        stored = {}
        for key, listed in versions.items():
            # The version CloudTrail wrote is the oldest: S3 lists newest first, and a rewrite
            # within the same second as the delivery ties on time, so the listing order decides.
            time, version_id = listed[-1]
            stored[key] = Stored(key, version_id, time, versions=len(listed),
                                 deleted=key in hidden)
        return stored

    def log_files(self, start: datetime, end: datetime) -> dict[str, Stored]:
        """Log files whose name carries a delivery time in the hours of [start, end]."""
        out: dict[str, Stored] = {}
        account = self.trail.account
        for hour in _hours(start, end):
            out.update(self._list(trail_files.log_files_of_hour(
                self.trail.prefix, account, self.region, hour)))
        return out

    def log_files_by_day(self, start: datetime, end: datetime) -> dict[str, Stored]:
        """Log files of every day of [start, end] (fewer listings for long windows)."""
        out: dict[str, Stored] = {}
        for day in _days(start, end):
            out.update(self._list(f"{self.logs_base}{day:%Y/%m/%d}/"))
        return out

    def digest_files(self, start: datetime, end: datetime) -> dict[str, Stored]:
        """This trail's digests of the region ending in [start, end]."""
        out: dict[str, Stored] = {}
        marker = f"_CloudTrail-Digest_{self.region}_{self.trail.name}_"
        for day in _days(start, end):
            for key, stored in self._list(f"{self.digests_base}{day:%Y/%m/%d}/").items():
                when = trail_files.digest_time(key)
                if marker in key and when is not None and _utc(start) <= when <= _utc(end):
                    out[key] = stored
        return out

    def read(self, stored: Stored) -> tuple[bytes, dict[str, str]]:
        """The uncompressed bytes of the version CloudTrail wrote, and its user metadata."""
        extra = {"VersionId": stored.version_id} if stored.version_id else {}
        try:
            answer = self.s3.get_object(Bucket=self.trail.bucket, Key=stored.key, **extra)
            body = answer["Body"].read()
        except ClientError as err:
            raise EvidenceError(f"cannot read s3://{self.trail.bucket}/{stored.key}: "
                                f"{_client_error(err)}") from None
        self.reads += 1
        try:
            raw = gzip.decompress(body)
        except (OSError, EOFError):
            raw = body  # not gzip: its hash will not match, which is the finding
        return raw, {k.lower(): v for k, v in (answer.get("Metadata") or {}).items()}

    def exists(self, key: str) -> Stored | None:
        """A key outside the listed hours (the digest just before the window)."""
        return self._list(key).get(key)

    def read_many(self, stored: Iterable[Stored]) -> dict[str, tuple[bytes, dict[str, str]]]:
        """:meth:`read` of each, in parallel; in the order given."""
        return {key: answer for key, answer in self.read_each(stored)}

    def read_each(self, stored: Iterable[Stored]
                  ) -> Iterator[tuple[str, tuple[bytes, dict[str, str]]]]:
        """:meth:`read` of each, :data:`READERS` at a time, in the order given, yielded as
        they come: at most :data:`READ_AHEAD` files are held at once, whatever the window."""
        items = list(stored)
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            for first in range(0, len(items), READ_AHEAD):
                batch = items[first:first + READ_AHEAD]
                yield from zip((s.key for s in batch), pool.map(self.read, batch),
                               strict=True)


# --- public keys and signatures ---------------------------------------------------------------


def public_keys(cloudtrail: Any, start: datetime, end: datetime) -> dict[str, rsa.RSAPublicKey]:
    """Fingerprint -> public key of every key ListPublicKeys returns for [start, end] in the
    client's region. The fingerprint is the MD5 of the DER bytes (PKCS #1 or SPKI, both
    accepted); a key whose bytes do not match its stated fingerprint is not trusted."""
    keys: dict[str, rsa.RSAPublicKey] = {}
    request: dict[str, Any] = {"StartTime": start, "EndTime": end}
    try:
        while True:
            answer = cloudtrail.list_public_keys(**request)
            for item in answer.get("PublicKeyList", []):
                der = bytes(item["Value"])
                if hashlib.md5(der, usedforsecurity=False).hexdigest() != item.get(
                        "Fingerprint"):
                    continue
                key = serialization.load_der_public_key(der)
                if isinstance(key, rsa.RSAPublicKey):
                    keys[str(item["Fingerprint"])] = key
            token = answer.get("NextToken")
            if not token:
                return keys
            request["NextToken"] = token
    except ClientError as err:
        raise EvidenceError(f"cloudtrail:ListPublicKeys: {_client_error(err)}") from None


def signature_valid(key: rsa.RSAPublicKey, signature_hex: str, data: bytes) -> bool:
    try:
        key.verify(bytes.fromhex(signature_hex), data, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


# --- verification -----------------------------------------------------------------------------


@dataclass
class _Digest:
    stored: Stored
    raw: bytes
    document: dict[str, Any]
    signature: str | None

    @property
    def key(self) -> str:
        return self.stored.key

    @property
    def end(self) -> datetime:
        return trail_files.digest_time(self.key) or self.stored.last_modified


def _short(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def verify(
    store: TrailStore, cloudtrail: Any, *, start: datetime, end: datetime,
    log_files: Mapping[str, Stored], log_hashes: Mapping[str, str],
    listed_hours: tuple[datetime, datetime],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Evidence:
    """Check the evidence for the log files read, ``log_hashes`` (key -> hex SHA-256 of the
    uncompressed file, :func:`log_file_hash`), of the window [start, end] (see the module
    docstring). ``log_files``: every log file listed for the hours ``listed_hours`` (first,
    last), so that a digest entry of those hours that is not among them is a missing file."""
    trail = store.trail
    evidence = Evidence(trail=trail.name, bucket=trail.bucket, region=store.region,
                        start=_iso(start), end=_iso(end), log_files=len(log_hashes))
    if not trail.log_validation:
        evidence.findings.append(Finding(
            "UNVERIFIABLE", trail.name, "log-file validation is off: CloudTrail writes no "
            "digest, so nothing proves these log files are the ones it delivered"))
        return evidence
    first_hour, last_hour = listed_hours
    times = [t for t in (trail_files.log_time(k) for k in log_files) if t is not None]
    earliest = min([*times, _utc(start)])
    latest = max([*times, _utc(end) + DELIVERY_LAG])
    listed = store.digest_files(earliest - timedelta(hours=1), latest + DIGEST_LAG)
    evidence.findings.extend(_version_findings(listed.values(), "digest file"))
    ordered = sorted(listed.values(), key=lambda s: trail_files.digest_time(s.key) or start)
    digests = {s.key: _Digest(s, raw, _document(raw), metadata.get(trail_files.SIGNATURE_METADATA))
               for s, (raw, metadata) in zip(ordered, store.read_many(ordered).values(),
                                             strict=True)}
    # The digest just before the first listed one anchors the chain outside the window.
    anchor = _anchor(store, digests, evidence)
    evidence.digests = len(digests)
    chain = list(digests.values())
    if chain:
        evidence.chain_first, evidence.chain_last = chain[0].key, chain[-1].key
    _check_signatures(store, cloudtrail, [*([anchor] if anchor else []), *chain], evidence)
    gaps = _check_chain(chain, anchor, evidence)
    last_log = max([*times, _utc(end)])
    if chain and chain[-1].end < min(now() - timedelta(minutes=75), last_log):
        evidence.findings.append(Finding(
            "NO DIGEST SINCE", _short(chain[-1].key), f"the newest digest ends "
            f"{_iso(chain[-1].end)}; CloudTrail writes one every hour, so later digests are "
            "missing (deleted, or delivery failed)"))
    elif not chain:
        evidence.findings.append(Finding(
            "NO DIGEST", f"{store.digests_base}", f"no digest file of trail {trail.name} "
            f"ends between {_iso(earliest)} and {_iso(latest + DIGEST_LAG)}",
            broken=bool(log_files)))
    _check_log_files(store, chain, log_files, log_hashes, (first_hour, last_hour), gaps,
                     evidence)
    return evidence


def log_file_hash(raw: bytes) -> str:
    """What a digest records of a log file: the hex SHA-256 of its uncompressed bytes."""
    return hashlib.sha256(raw).hexdigest()


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _document(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _read_digest(store: TrailStore, stored: Stored) -> tuple[bytes, dict[str, Any], str | None]:
    raw, metadata = store.read(stored)
    return raw, _document(raw), metadata.get(trail_files.SIGNATURE_METADATA)


def _anchor(store: TrailStore, digests: Mapping[str, _Digest],
            evidence: Evidence) -> _Digest | None:
    if not digests:
        return None
    oldest = next(iter(digests.values()))
    previous = oldest.document.get("previousDigestS3Object")
    if not previous or previous in digests:
        return None
    stored = store.exists(str(previous))
    if stored is None:
        return None  # reported by _check_chain as a missing link
    evidence.findings.extend(_version_findings([stored], "digest file"))
    return _Digest(stored, *_read_digest(store, stored))


def _version_findings(stored: Iterable[Stored], what: str) -> list[Finding]:
    findings = []
    for s in stored:
        if s.deleted:
            findings.append(Finding("DELETED", s.key, f"the {what} is hidden by a delete marker "
                                    "(the version CloudTrail wrote remains and is the one "
                                    "checked)"))
        if s.versions > 1:
            findings.append(Finding("OVERWRITTEN", s.key, f"the {what} has {s.versions} "
                                    "versions; CloudTrail writes each once (the first is "
                                    "the one checked)"))
    return findings


def _check_signatures(store: TrailStore, cloudtrail: Any, digests: Sequence[_Digest],
                      evidence: Evidence) -> None:
    if not digests:
        return
    starts = [d.document.get("digestStartTime") for d in digests]
    start = min([_parse(s) for s in starts if s] + [digests[0].end - timedelta(hours=1)])
    keys = public_keys(cloudtrail, start, digests[-1].end)
    used: list[str] = []
    for digest in digests:
        document, name = digest.document, _short(digest.key)
        if not document:
            evidence.findings.append(Finding("BAD DIGEST", name, "not a JSON digest file"))
            continue
        if (document.get("digestS3Bucket"), document.get("digestS3Object")) != (
                store.trail.bucket, digest.key):
            evidence.findings.append(Finding(
                "MOVED", name, f"the digest says it was delivered to "
                f"s3://{document.get('digestS3Bucket')}/{document.get('digestS3Object')}"))
            continue
        fingerprint = str(document.get("digestPublicKeyFingerprint"))
        key = keys.get(fingerprint)
        if key is None:
            evidence.findings.append(Finding(
                "KEY UNKNOWN", name, f"signed with key {fingerprint}, which "
                f"cloudtrail:ListPublicKeys does not return for {store.region}"))
            continue
        if not digest.signature:
            evidence.findings.append(Finding("BAD SIGNATURE", name,
                                             "no x-amz-meta-signature on the object"))
            continue
        signed = trail_files.digest_signing_string(document, digest.raw)
        if not signature_valid(key, digest.signature, signed):
            evidence.findings.append(Finding(
                "BAD SIGNATURE", name, f"the signature does not verify with public key "
                f"{fingerprint}: the digest or its signature was changed"))
            continue
        if fingerprint not in used:
            used.append(fingerprint)
    evidence.fingerprints = used


@dataclass
class _Gap:
    """A missing digest: log files delivered in (after, until] have none."""

    after: datetime | None
    until: datetime
    finding: int  # index in Evidence.findings
    files: int = 0


def _check_chain(chain: Sequence[_Digest], anchor: _Digest | None,
                 evidence: Evidence) -> list[_Gap]:
    """Check each link; returns the gaps a missing digest leaves."""
    by_key = {d.key: d for d in chain}
    if anchor is not None:
        by_key[anchor.key] = anchor
    pointed: set[str] = set()
    gaps: list[_Gap] = []
    for newer in reversed(chain):
        name, document = _short(newer.key), newer.document
        previous = document.get("previousDigestS3Object")
        if not document:
            continue
        if previous is None:
            if newer is not chain[0]:
                evidence.findings.append(Finding(
                    "CHAIN BROKEN", name, "it starts a new chain (no previous digest): "
                    "logging or log-file validation was off before it, and log files of that "
                    "gap have no digest"))
            else:
                evidence.findings.append(Finding(
                    "CHAIN STARTS", name, "the first digest of this trail (validation or "
                    "logging started then)", broken=False))
            continue
        pointed.add(str(previous))
        older = by_key.get(str(previous))
        if older is None:
            missing_end = trail_files.digest_time(str(previous)) or newer.end
            before = [d for d in chain if d.end < missing_end]
            if before:
                pointed.add(before[-1].key)  # orphaned by this gap, not off the chain
            start = document.get("digestStartTime")
            gaps.append(_Gap(before[-1].end if before else None,
                             _parse(start) if start else newer.end, len(evidence.findings)))
            evidence.findings.append(Finding(
                "CHAIN BROKEN", name, f"its previous digest {_short(str(previous))} is not "
                "in the bucket"))
            continue
        if hashlib.sha256(older.raw).hexdigest() != document.get("previousDigestHashValue"):
            evidence.findings.append(Finding(
                "CHAIN BROKEN", name, f"the previous digest {_short(older.key)} has SHA-256 "
                f"{hashlib.sha256(older.raw).hexdigest()[:16]}…, not the recorded "
                f"{str(document.get('previousDigestHashValue'))[:16]}…"))
        elif older.signature != document.get("previousDigestSignature"):
            evidence.findings.append(Finding(
                "CHAIN BROKEN", name, f"the previous digest {_short(older.key)} carries "
                "another signature than the one recorded"))
    for digest in chain[:-1]:
        if digest.key not in pointed:
            evidence.findings.append(Finding(
                "OFF THE CHAIN", _short(digest.key), "no newer digest names it: it was not "
                "written by the trail in this sequence"))
    return gaps


def _check_log_files(store: TrailStore, chain: Sequence[_Digest],
                     log_files: Mapping[str, Stored], log_hashes: Mapping[str, str],
                     listed_hours: tuple[datetime, datetime], gaps: Sequence[_Gap],
                     evidence: Evidence) -> None:
    listed: dict[str, tuple[str, str]] = {}
    for digest in chain:
        for entry in digest.document.get("logFiles") or []:
            if isinstance(entry, dict) and entry.get("s3Bucket") == store.trail.bucket:
                listed[str(entry.get("s3Object"))] = (str(entry.get("hashValue")), digest.key)
    evidence.findings.extend(_version_findings(log_files.values(), "log file"))
    newest_end = chain[-1].end if chain else None
    for key, sha in sorted(log_hashes.items()):
        if key in listed:
            expected, digest_key = listed[key]
            if sha != expected:
                evidence.findings.append(Finding(
                    "ALTERED", key, f"SHA-256 {sha[:16]}… differs from {expected[:16]}… in "
                    f"digest {_short(digest_key)}"))
            continue
        when = trail_files.log_time(key)
        gap = next((g for g in gaps if when is not None and (g.after is None or when > g.after
                                                              - timedelta(minutes=1))
                    and when <= g.until), None)
        if gap is not None:
            gap.files += 1
            continue
        if newest_end is None or (when is not None and when >= newest_end - timedelta(
                minutes=1)):
            evidence.findings.append(Finding(
                "AWAITING DIGEST", key, "delivered after the newest digest; the next hourly "
                "digest will list it", broken=False))
        else:
            evidence.findings.append(Finding(
                "NOT IN A DIGEST", key, "no digest lists this log file: CloudTrail did not "
                "deliver it in this chain"))
    first_hour = _utc(listed_hours[0]).replace(minute=0, second=0, microsecond=0)
    last_hour = _utc(listed_hours[1])
    for key in sorted(listed):
        when = trail_files.log_time(key)
        if key in log_files or when is None or not (first_hour <= when <= last_hour):
            continue
        if not key.startswith(store.logs_base):
            continue
        evidence.findings.append(Finding(
            "MISSING", key, f"listed in digest {_short(listed[key][1])} but not in the bucket"))
    for gap in gaps:
        if gap.files:
            finding = evidence.findings[gap.finding]
            evidence.findings[gap.finding] = Finding(
                finding.kind, finding.subject, f"{finding.detail}; the {gap.files} log "
                f"file(s) it listed are unverified")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _client_error(err: ClientError) -> str:
    error = err.response.get("Error", {})
    return f"{error.get('Code', 'Error')}: {' '.join(str(error.get('Message', '')).split())}"
