"""Custody at scale: how long ``phi-exchange-admin custody`` takes against a custody bucket that
holds a month of a busy partner's CloudTrail data events.

    .venv/bin/python bench/custody_bench.py                        # 30 days x 20,000 uploads/day
    .venv/bin/python bench/custody_bench.py --days 3 --files-per-day 2000 --scan-days 1  # quick
    .venv/bin/python bench/custody_bench.py --profile "one object, one day"    # where time goes

(``--profile``: cProfile of the command's main thread; the 8 reader threads show as waits.
``--breakdown``: the command's per-event steps timed one by one with its own functions on the
log files of the one object's day, and custody_trail's access-log match per pair compared.)

**Generation.** In one process, under ``moto.mock_aws`` with the emulator's CloudTrail patch
(``localaws.cloudtrail.install(clock=False)``: ``cloudtrail:ListPublicKeys`` publishes the
emulator's key ring, no delivery clock), it creates a versioned custody bucket whose policy lets
CloudTrail write, a trail with log-file validation on, and a versioned data bucket, then delivers
``--days`` of the partner's data events through the emulator's own writer
(``localaws.cloudtrail.TrailWriter`` into ``MotoSink``, signed by the key ring that
ListPublicKeys publishes), as CloudTrail does: one log file per 5 minutes (288 a day; none when
a slot has no event), delivered 3 minutes after its slot ends, and a digest file every hour,
chained and signed. A busy partner sends ``--files-per-day`` uploads spread evenly over the day;
each is three events: the partner's PutObject (an IAM user, with the version id and size), the
importer's HeadObject 20 s later and its GetObject of that version 21 s later (an assumed role).
Records are CloudTrail's format as the emulator writes it (``localaws.cloudtrail.data_event``):
one template record per event kind is built once, and each event copies it, varying only the
time, key, version id, size, request id, event id and ``x-amz-id-2`` (random, as AWS's are, so
the files compress as real ones do). "The one object" is a real object of the data bucket, with
two versions uploaded through S3 and dated mid-month (moto's ``LastModified`` is set to the
upload time of the records); its PutObject events carry those version ids and sizes, and the
importer's reads follow each. Generation time is reported apart from the measurements.

**Measurement.** Each scenario runs ``admin.cli.main`` in-process, the operator CLI's real code
path (``--bucket``, ``--trail``, ``--region``, ``--json``; moto's mocked boto3, no endpoint), in
a forked child of the generating process, so that every scenario starts from the same state and
its memory is its own: peak RSS is the child's (``wait4``), reported above the generated state it
inherited (the custody bucket lives in this process only because moto does; on AWS it does not).
Wall time covers ``main`` only; CPU is the child's (user + system). Requests and bytes are
counted on the CLI's own boto3 clients (every request by operation; GetObject bytes looked up
per key, compressed as stored and uncompressed), so they are what the command asked AWS for;
the command's own note (``N listing(s) and M read(s)``) is cross-checked where it prints one.
"In emulator" is the CPU time spent inside moto answering those requests (its in-process S3,
``time.thread_time`` around moto's botocore stubber, summed over threads), which real S3 does
not spend in the operator's process: CPU minus it is the command's own work. Scenarios:

- **one object**: ``custody acme KEY``, the default window (an hour before the first version to
  two hours after the last);
- **one object, one day**: the same with ``--since``/``--until`` one day apart;
- **prefix, N days**: ``custody acme --prefix inbound/ --since T --until T+N days`` from the
  month's second day, every event of the partner in N days (each ``--scan-days``). The whole
  month is extrapolated per log file read from the largest N, not measured, unless
  ``--full-scan`` runs it: bytes, events and time are per log file read, memory per event
  matched (the source keeps only the matches and each file's hash), and a month's window lists
  ``--days`` + 1 days of log files (windows over 36 h are listed by day; only the window's hours
  are read). The default month would need about 3 GiB for its 1.8 million matches: not the
  default.

The emulator does not model S3's latency, so the same requests are also priced with a model
(``--latency-ms``, an assumption, not a measurement): every request is sequential except the
log files and digests a scenario reads 8 at a time (``READERS``), plus the local CPU measured
outside the emulator.

What differs from the deployment: moto's ``ListObjectVersions`` deep-copies every version of
the bucket (bodies included) on each page, whatever the prefix, which would make each hour's
listing cost the whole month; the bench narrows it to the keys under the prefix before moto's
own code runs (real S3 lists by key index). Server access logging is off on the data bucket
(the command's access-log reading is not measured). The files are SSE-S3 (the deployed trail's
SSE-KMS adds S3's KMS call to each GET on AWS). One trail, one region, one partner: on a
deployment the trail's log files hold every partner's events.

Exits 1 when a scenario's command fails, when the trail's evidence is not intact, or when the
one object's versions are not found in the events: a benchmark of a broken path measures
nothing. Otherwise it prints figures and asserts nothing about them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import gc
import hashlib
import io
import json
import math
import os
import pstats
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "core", "python")]  # run from anywhere

ACCOUNT = "123456789012"  # moto's default account
SLUG = "acme"  # a customer of the project's registry (customers/acme.toml)
CUSTODY_BUCKET = "phi-exchange-audit-custodybucket-bench0001"
OBJECT_KEY = "inbound/eligibility/member-roster.csv"
PARTNER_IP = "203.0.113.10"
IMPORTER_IP = "10.20.1.37"
SLOT_SECONDS = 300  # CloudTrail: a log file about every 5 minutes
DELIVERY_DELAY = timedelta(minutes=3)  # a slot's log file is delivered this long after it ends
HEAD_LAG, GET_LAG = 20, 21  # seconds from an upload to the importer's HeadObject, GetObject


# --- the emulator ------------------------------------------------------------------------------


def narrow_moto_listing() -> None:
    """moto 5.2.5's ListObjectVersions deep-copies every version in the bucket on each page
    before filtering by prefix: give it only the keys under the prefix (module docstring)."""
    from moto.s3.models import S3Backend
    from moto.s3.utils import _VersionedKeyStore

    original = S3Backend.list_object_versions

    def list_object_versions(self: Any, bucket_name: str, delimiter: str | None = None,
                             key_marker: str | None = None, max_keys: int | None = 1000,
                             prefix: str = "", version_id_marker: str | None = None) -> Any:
        bucket = self.get_bucket(bucket_name)
        everything = bucket.keys
        view = _VersionedKeyStore()
        for name in everything:
            if name.startswith(prefix or ""):
                dict.__setitem__(view, name, dict.__getitem__(everything, name))
        bucket.keys = view  # the command lists one prefix at a time, never while reading
        try:
            return original(self, bucket_name, delimiter=delimiter, key_marker=key_marker,
                            max_keys=max_keys, prefix=prefix,
                            version_id_marker=version_id_marker)
        finally:
            bucket.keys = everything

    S3Backend.list_object_versions = list_object_versions  # type: ignore[method-assign]


class EmulatorClock:
    """CPU seconds spent inside moto answering requests (its botocore stubber), summed over
    the threads that asked (``time.thread_time``: a thread waiting for the GIL is not
    counted)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()

    def install(self) -> None:
        from moto.core.botocore_stubber import BotocoreStubber

        original = BotocoreStubber.__call__
        clock = self

        def timed(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return original(stubber, event_name, request, **kwargs)
            finally:
                elapsed = time.thread_time() - started
                with clock._lock:
                    clock.seconds += elapsed

        BotocoreStubber.__call__ = timed  # type: ignore[method-assign]


@dataclass
class Sizes:
    """Compressed and uncompressed size of every file delivered, and the events of each log
    file, by key."""

    by_key: dict[str, tuple[int, int]] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)


def counting_sink(sizes: Sizes) -> Any:
    from localaws.cloudtrail import MotoSink

    class CountingSink(MotoSink):
        def put(self, trail: Any, key: str, body: bytes, **kwargs: Any) -> None:
            super().put(trail, key, body, **kwargs)
            # gzip's trailer ends with the uncompressed size (mod 2**32; files are far smaller)
            sizes.by_key[key] = (len(body), int.from_bytes(body[-4:], "little"))

    return CountingSink()


# --- the month's events ------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Version:
    version_id: str
    time: datetime
    size: int


@dataclass
class Estate:
    region: str
    start: datetime
    end: datetime
    files_per_day: int
    data_bucket: str
    trail_name: str
    versions: list[Version]
    log_files: int = 0
    digests: int = 0
    events: int = 0
    stored_bytes: int = 0
    raw_bytes: int = 0
    seconds: float = 0.0
    sizes: Sizes = field(default_factory=Sizes)


def _identities() -> tuple[Any, Any]:
    from localaws.cloudtrail import Identity
    from phi_core import naming

    user = naming.partner_user_name(SLUG)
    partner = Identity(ACCOUNT, {
        "type": "IAMUser", "principalId": "AIDAEXAMPLEPARTNER01", "accountId": ACCOUNT,
        "arn": f"arn:aws:iam::{ACCOUNT}:user/{user}", "accessKeyId": "AKIAEXAMPLEPARTNER01",
        "userName": user})
    role = f"arn:aws:iam::{ACCOUNT}:role/{naming.IMPORTER_ROLE_NAME}"
    importer = Identity(ACCOUNT, {
        "type": "AssumedRole", "principalId": "AROAEXAMPLEIMPORTER1:importer",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{naming.IMPORTER_ROLE_NAME}/importer",
        "accountId": ACCOUNT, "accessKeyId": "ASIAEXAMPLEIMPORTER1",
        "sessionContext": {"sessionIssuer": {
            "type": "Role", "principalId": "AROAEXAMPLEIMPORTER1", "arn": role,
            "accountId": ACCOUNT, "userName": naming.IMPORTER_ROLE_NAME},
            "attributes": {"mfaAuthenticated": "false"}}})
    return partner, importer


class Templates:
    """One record per event kind, built once by the emulator's ``data_event``; :meth:`put`,
    :meth:`head` and :meth:`get` copy one and vary what differs between requests."""

    def __init__(self, bucket: str, region: str) -> None:
        from localaws.cloudtrail import ServedRequest, data_event

        partner, importer = _identities()
        host = f"{bucket}.s3.{region}.amazonaws.com"
        kms = f"arn:aws:kms:{region}:{ACCOUNT}:key/00000000-1111-2222-3333-444444444444"
        now = datetime(2026, 1, 1, tzinfo=UTC)

        def served(method: str, identity: Any, ip: str, agent: str, query: dict[str, list[str]],
                   request: dict[str, str], response: dict[str, str]) -> Any:
            return ServedRequest(
                bucket=bucket, key="inbound/x", owner=ACCOUNT, region=region, partition="aws",
                method=method, query=query, request_headers={"host": host, **request},
                status=200, response_headers=response, received=now, completed=now,
                bytes_in=1, bytes_out=1, source_ip=ip, user_agent=agent, request_id="R",
                host_id="H", identity=identity, access_key_id=identity.record["accessKeyId"],
                tls_version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256",
                signature_version="SigV4", auth_method="AuthHeader")

        encrypted = {"x-amz-server-side-encryption": "aws:kms",
                     "x-amz-server-side-encryption-aws-kms-key-id": kms,
                     "x-amz-server-side-encryption-bucket-key-enabled": "true"}
        self._put = data_event(served(
            "PUT", partner, PARTNER_IP, "partner-transfer/0.1.0 awscrt/0.38.1", {},
            {"x-amz-server-side-encryption": "aws:kms",
             "x-amz-server-side-encryption-aws-kms-key-id": kms},
            {"x-amz-version-id": "V", **encrypted}), "PutObject", ACCOUNT)
        agent = "Boto3/1.44.8 md/Botocore#1.44.8 ua/2.1 os/linux lang/python#3.12 exec-env/AWS_ECS"
        self._head = data_event(served("HEAD", importer, IMPORTER_IP, agent, {"versionId": ["V"]},
                                       {}, encrypted), "HeadObject", ACCOUNT)
        self._get = data_event(served("GET", importer, IMPORTER_IP, agent, {"versionId": ["V"]},
                                      {}, encrypted), "GetObject", ACCOUNT)
        self._arn = f"arn:aws:s3:::{bucket}/"
        self._bucket_resource = self._put["resources"][-1]

    def _vary(self, template: dict[str, Any], when: str, key: str,
              random: bytes) -> dict[str, Any]:
        record = template.copy()
        record["eventTime"] = when
        record["requestID"] = random[:8].hex().upper()
        h = random[8:24].hex()
        record["eventID"] = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
        record["resources"] = [{"type": "AWS::S3::Object", "ARN": self._arn + key},
                               self._bucket_resource]
        record["additionalEventData"] = {**template["additionalEventData"],
                                         "x-amz-id-2": base64.b64encode(random[24:72]).decode()}
        record["requestParameters"] = {**template["requestParameters"], "key": key}
        return record

    def put(self, when: str, key: str, version: str, size: int, random: bytes) -> dict[str, Any]:
        record = self._vary(self._put, when, key, random)
        record["responseElements"] = {**self._put["responseElements"],
                                      "x-amz-version-id": version}
        record["additionalEventData"]["bytesTransferredIn"] = size
        record["additionalEventData"]["bytesTransferredOut"] = 0
        return record

    def head(self, when: str, key: str, version: str, size: int,
             random: bytes) -> dict[str, Any]:
        record = self._vary(self._head, when, key, random)
        record["requestParameters"]["versionId"] = version
        record["additionalEventData"]["bytesTransferredIn"] = 0
        record["additionalEventData"]["bytesTransferredOut"] = 0
        return record

    def get(self, when: str, key: str, version: str, size: int, random: bytes) -> dict[str, Any]:
        record = self._vary(self._get, when, key, random)
        record["requestParameters"]["versionId"] = version
        record["additionalEventData"]["bytesTransferredIn"] = 0
        record["additionalEventData"]["bytesTransferredOut"] = size
        return record


RANDOM_PER_EVENT = 72


class Uploads:
    """The partner's uploads: upload ``i`` at ``start + i * interval``; its key, version id
    and size follow from ``i``."""

    def __init__(self, start: datetime, files_per_day: int, count: int) -> None:
        self.start, self.count = start.timestamp(), count
        self.interval = 86400 / files_per_day

    def between(self, first: float, last: float) -> range:
        """Uploads whose time is in [first, last)."""
        lo = max(0, math.ceil((first - self.start) / self.interval))
        hi = min(self.count, math.ceil((last - self.start) / self.interval))
        return range(lo, max(lo, hi))

    def time(self, i: int) -> int:
        return int(self.start + i * self.interval)

    @staticmethod
    def key(i: int, when: int) -> str:
        day = time.strftime("%Y-%m-%d", time.gmtime(when))
        return f"inbound/claims/{day}/claims-{i:07d}.csv"

    @staticmethod
    def version(i: int) -> str:
        digest = hashlib.blake2b(i.to_bytes(8, "little"), digest_size=24).digest()
        return base64.urlsafe_b64encode(digest).decode()

    @staticmethod
    def size(i: int) -> int:
        return 2_000 + (i * 7919) % 500_000


def generate(args: argparse.Namespace, start: datetime, days: int) -> Estate:
    """The buckets, the trail, the one object and the month's trail files (module docstring)."""
    import boto3

    from localaws import cloudtrail
    from phi_core import naming

    started = time.perf_counter()
    region = args.region
    end = start + timedelta(days=days)
    s3 = boto3.client("s3", region_name=region)
    trails = boto3.client("cloudtrail", region_name=region)
    data_bucket = naming.data_bucket_name(SLUG, ACCOUNT, region)
    for bucket in (CUSTODY_BUCKET, data_bucket):
        location = ({} if region == "us-east-1" else
                    {"CreateBucketConfiguration": {"LocationConstraint": region}})
        s3.create_bucket(Bucket=bucket, **location)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    trail_name = naming.TRAIL_NAME
    trail_arn = f"arn:aws:cloudtrail:{region}:{ACCOUNT}:trail/{trail_name}"
    s3.put_bucket_policy(Bucket=CUSTODY_BUCKET, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
        "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{CUSTODY_BUCKET}/AWSLogs/*",
        "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control",
                                       "aws:SourceArn": trail_arn}}}]}))
    created = trails.create_trail(Name=trail_name, S3BucketName=CUSTODY_BUCKET,
                                  EnableLogFileValidation=True, IsMultiRegionTrail=True)
    assert created["TrailARN"] == trail_arn, created["TrailARN"]

    # The one object: two versions mid-month, their LastModified set to the records' times.
    middle = start + timedelta(days=days // 2, hours=10, minutes=17, seconds=3)
    versions = []
    for n, moment in enumerate((middle, middle + timedelta(minutes=25, seconds=48))):
        body = b"member_id,plan,effective\n" + b"".join(
            f"M{n}{i:07d},PPO-{i % 7},2026-01-01\n".encode() for i in range(1500 + 700 * n))
        answer = s3.put_object(Bucket=data_bucket, Key=OBJECT_KEY, Body=body,
                               ChecksumAlgorithm="CRC64NVME")
        versions.append(Version(answer["VersionId"], moment, len(body)))
    from moto.s3.models import s3_backends

    stored = s3_backends[ACCOUNT]["aws"].buckets[data_bucket].keys.getlist(OBJECT_KEY)
    for fake in stored:
        version = next(v for v in versions if v.version_id == fake.version_id)
        fake.last_modified = version.time.replace(tzinfo=None)  # moto keeps naive UTC

    # The key ring ListPublicKeys publishes, valid from before the month.
    keys = cloudtrail.KeyRing(clock=lambda: start - timedelta(hours=1))
    cloudtrail.recorder().keys = keys
    estate = Estate(region, start, end, args.files_per_day, data_bucket, trail_name, versions)
    writer = cloudtrail.TrailWriter(
        cloudtrail.Trail(name=trail_name, arn=trail_arn, account=ACCOUNT, home_region=region,
                         bucket=CUSTODY_BUCKET, log_validation=True),
        counting_sink(estate.sizes), keys, started=start)
    templates = Templates(data_bucket, region)
    uploads = Uploads(start, args.files_per_day, days * args.files_per_day)

    # The one object's own events, by slot.
    special: dict[int, list[tuple[int, Callable[..., dict[str, Any]], str, int]]] = {}
    for version in versions:
        at = int(version.time.timestamp())
        for lag, kind in ((0, templates.put), (HEAD_LAG, templates.head),
                          (GET_LAG, templates.get)):
            slot = int((at + lag - start.timestamp()) // SLOT_SECONDS)
            special.setdefault(slot, []).append((at + lag, kind, version.version_id,
                                                 version.size))

    iso_cache: dict[int, str] = {}

    def iso(second: int) -> str:
        text = iso_cache.get(second)
        if text is None:
            text = iso_cache[second] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        return text

    next_digest = start + timedelta(hours=1)
    slots = days * 86400 // SLOT_SECONDS
    for slot in range(slots):
        first = start.timestamp() + slot * SLOT_SECONDS
        last = first + SLOT_SECONDS
        plan: list[tuple[int, Callable[..., dict[str, Any]], int]] = []
        for lag, kind in ((0, templates.put), (HEAD_LAG, templates.head),
                          (GET_LAG, templates.get)):
            plan.extend((i, kind, lag) for i in uploads.between(first - lag, last - lag))
        extra = special.get(slot, [])
        random = os.urandom(RANDOM_PER_EVENT * (len(plan) + len(extra)))
        records = []
        offset = 0
        for i, kind, lag in plan:
            at = uploads.time(i)
            records.append(kind(iso(at + lag), uploads.key(i, at), uploads.version(i),
                                uploads.size(i), random[offset:offset + RANDOM_PER_EVENT]))
            offset += RANDOM_PER_EVENT
        for at, kind, version_id, size in extra:
            records.append(kind(iso(at), OBJECT_KEY, version_id, size,
                                random[offset:offset + RANDOM_PER_EVENT]))
            offset += RANDOM_PER_EVENT
        delivered = datetime.fromtimestamp(last, UTC) + DELIVERY_DELAY
        while next_digest <= delivered:
            writer.deliver_digest(region, next_digest)
            estate.digests += 1
            next_digest += timedelta(hours=1)
        if records:
            key = writer.deliver_log_file(region, records, delivered)
            estate.sizes.events[key] = len(records)
            estate.log_files += 1
            estate.events += len(records)
    while next_digest <= end + timedelta(hours=3):  # the digests listing the last log files
        writer.deliver_digest(region, next_digest)
        estate.digests += 1
        next_digest += timedelta(hours=1)
    estate.stored_bytes = sum(c for c, _ in estate.sizes.by_key.values())
    estate.raw_bytes = sum(u for _, u in estate.sizes.by_key.values())
    estate.seconds = time.perf_counter() - started
    return estate


# --- one scenario, in a forked child ------------------------------------------------------------


class Requests:
    """Every request the CLI's clients send, by service and operation, and the bytes of the
    custody bucket's files it GETs."""

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        self.count: Counter[str] = Counter()
        self.compressed = 0
        self.uncompressed = 0
        self.parsed = 0  # events in the log files read
        self._lock = threading.Lock()

    def __call__(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        name = f"{model.service_model.service_name}:{model.name}"
        if params.get("Bucket") == CUSTODY_BUCKET:
            name += " (custody)"
        with self._lock:
            self.count[name] += 1
            if name == "s3:GetObject (custody)":
                key = str(params.get("Key"))
                compressed, uncompressed = self.sizes.by_key.get(key, (0, 0))
                self.compressed += compressed
                self.uncompressed += uncompressed
                self.parsed += self.sizes.events.get(key, 0)

    def install(self) -> None:
        import admin.cli

        original = admin.cli.make_client

        def make_client(service: str, options: Any) -> Any:
            client = original(service, options)
            client.meta.events.register("before-parameter-build", self)
            return client

        admin.cli.make_client = make_client


class EventCounter(io.TextIOBase):
    """stdout of ``custody --prefix --json``: counts the event lines, keeps the last line (the
    evidence) and nothing else (a month is gigabytes of JSON lines)."""

    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0
        self.last = ""

    def write(self, text: str) -> int:
        self.bytes += len(text)
        if text.startswith('{"type": "event"'):
            self.events += 1
        elif text.strip():
            self.last = text
        return len(text)


@dataclass
class Scenario:
    name: str
    window: str
    argv: list[str]
    prefix: bool


def run_command(scenario: Scenario, estate: Estate, emulator: EmulatorClock,
                profile: bool) -> dict[str, Any]:
    """In the child: the command, and what it read and found."""
    from admin.cli import main

    requests = Requests(estate.sizes)
    requests.install()
    out: io.StringIO | EventCounter = EventCounter() if scenario.prefix else io.StringIO()
    err = io.StringIO()
    profiler = cProfile.Profile() if profile else None
    emulator.seconds = 0.0
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if profiler:
            profiler.enable()
        code = main(scenario.argv)
        if profiler:
            profiler.disable()
    wall = time.perf_counter() - started
    result: dict[str, Any] = {
        "code": code, "stderr": err.getvalue()[-2000:], "wall": wall,
        "emulator": emulator.seconds, "requests": dict(requests.count),
        "compressed": requests.compressed, "uncompressed": requests.uncompressed,
        "parsed": requests.parsed}
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(35)
        result["profile"] = text.getvalue()
    if isinstance(out, EventCounter):
        result["events"] = out.events
        result["output_bytes"] = out.bytes
        evidence = json.loads(out.last) if out.last.startswith("{") else {}
        result["evidence"] = evidence
        result["notes"] = []
        result["found_versions"] = []
    else:
        document = json.loads(out.getvalue()) if out.getvalue().startswith("{") else {}
        trail = document.get("trail") or {}
        result["events"] = len(trail.get("events") or [])
        result["output_bytes"] = len(out.getvalue())
        result["evidence"] = trail.get("evidence") or {}
        result["notes"] = trail.get("notes") or []
        result["found_versions"] = [v["version_id"] for v in document.get("versions", [])
                                    if v.get("aws_write")]
    return result


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure(scenario: Scenario, estate: Estate, emulator: EmulatorClock,
            profile: bool = False) -> dict[str, Any]:
    """Run ``scenario`` in a forked child; its result, CPU and peak memory."""
    gc.collect()
    gc.freeze()  # the generated state: no collector pass in the child copies it
    baseline = rss_kib()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        try:
            result = run_command(scenario, estate, emulator, profile)
        except BaseException as err:  # reported by the parent
            result = {"code": -1, "stderr": f"{type(err).__name__}: {err}"}
        with os.fdopen(write_end, "w") as pipe:
            json.dump(result, pipe)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    _, status, usage = os.wait4(pid, 0)
    gc.unfreeze()
    result = json.loads(text) if text else {"code": -1, "stderr": f"child status {status}"}
    result["cpu"] = usage.ru_utime + usage.ru_stime
    result["peak_kib"] = usage.ru_maxrss
    result["growth_kib"] = max(0, usage.ru_maxrss - baseline)
    return result


def check(scenario: Scenario, result: Mapping[str, Any], estate: Estate) -> list[str]:
    """Why this run does not measure the working path (empty: it does)."""
    problems = []
    if result.get("code") != 0:
        problems.append(f"exit status {result.get('code')}: {result.get('stderr', '').strip()}")
    evidence = result.get("evidence") or {}
    if evidence.get("intact") is not True:
        broken = [f["line"] for f in evidence.get("findings", []) if f.get("broken")][:5]
        problems.append(f"evidence not intact: {broken or evidence}")
    if not scenario.prefix:
        expected = {v.version_id for v in estate.versions}
        if set(result.get("found_versions") or []) != expected:
            problems.append(f"AWS's write of versions {sorted(expected)} not found; found "
                            f"{result.get('found_versions')}")
    return problems


# --- where the command's own CPU goes -----------------------------------------------------------


def breakdown(estate: Estate) -> list[tuple[str, float, int]]:
    """The command's per-event steps, timed on the log files of the one object's day with
    the command's own functions: (step, CPU seconds, items)."""
    import gzip

    from moto.s3.models import s3_backends

    from admin.custody_trail import AccessLogs, TrailSection
    from admin.trail_events import AccessLogRecord, EventQuery, TrailEvent, _records

    day = estate.versions[0].time.strftime("%Y/%m/%d")
    bucket = s3_backends[ACCOUNT]["aws"].buckets[CUSTODY_BUCKET]
    bodies = [bucket.keys.getlist(k)[0].value for k in list(bucket.keys)
              if "/CloudTrail/" in k and f"/{day}/" in k]
    steps: list[tuple[str, float, int]] = []

    def timed(name: str, step: Callable[[], Any], items: int) -> Any:
        started = time.process_time()
        value = step()
        steps.append((name, time.process_time() - started, items))
        return value

    raws = timed("gzip.decompress", lambda: [gzip.decompress(b) for b in bodies], len(bodies))
    timed("SHA-256 (digest check)", lambda: [hashlib.sha256(r).digest() for r in raws],
          len(raws))
    records = timed("json.loads (trail_events._records)", lambda: [_records(r) for r in raws],
                    len(raws))
    count = sum(len(r) for r in records)
    steps[:] = [(n, s, count) for n, s, _ in steps]
    events = timed("TrailEvent.from_record, every record",
                   lambda: [TrailEvent.from_record(r, "k") for rs in records for r in rs], count)
    query = EventQuery(bucket=estate.data_bucket, start=estate.start, end=estate.end,
                       key=OBJECT_KEY)
    timed("EventQuery.matches, every event", lambda: [e for e in events if query.matches(e)],
          count)
    timed("instead: requestParameters.key test, then from_record", lambda: [
        TrailEvent.from_record(r, "k") for rs in records for r in rs
        if (r.get("requestParameters") or {}).get("key") == OBJECT_KEY], count)
    timed("--prefix --json: to_json + json.dumps, every event",
          lambda: [json.dumps(e.to_json()) for e in events], count)
    # custody_trail's access-log match, as if the day's requests were all in the access log:
    # an event not (yet) in it is compared with every record.
    sample = events[:200]
    logs = [AccessLogRecord({"request_id": f"{e.request_id}-other"}, "log") for e in events]
    section = TrailSection(source="s", trail="t", start="", end="", events=sample,
                           evidence=None, access_logs=AccessLogs("logs"), access_log=logs)
    timed(f"in_access_log, {len(sample)} events not in {len(logs):,} access-log records "
          "(per pair)", lambda: [section.in_access_log(e) for e in sample],
          len(sample) * len(logs))
    return steps


# --- report --------------------------------------------------------------------------------------


def reads(result: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    """(log files, digests, listings, GETs) of the custody bucket, and every request the
    command sent (the data bucket's and CloudTrail's too)."""
    evidence = result.get("evidence") or {}
    requests = result.get("requests") or {}
    return (int(evidence.get("log_files_checked") or 0), int(evidence.get("digests_checked") or 0),
            int(requests.get("s3:ListObjectVersions (custody)", 0)),
            int(requests.get("s3:GetObject (custody)", 0)), sum(requests.values()))


def rounds(result: Mapping[str, Any], readers: int) -> int:
    """Requests one after another: each listing and lone request, and the batches of
    ``readers`` parallel reads of log files and of digests."""
    logs, digests, _, _, total = reads(result)
    return total - logs - digests + math.ceil(logs / readers) + math.ceil(digests / readers)


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.0f} kB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30, help="days of events (default 30)")
    parser.add_argument("--files-per-day", type=int, default=20_000,
                        help="the partner's uploads a day, 3 events each (default 20,000)")
    parser.add_argument("--scan-days", type=int, nargs="+", default=[1, 7], metavar="N",
                        help="prefix scans of N days from the month's second day (default 1 7)")
    parser.add_argument("--full-scan", action="store_true",
                        help="also scan the whole month (memory: ~all its files, uncompressed)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--end", help="the month's end, a date (default: yesterday, UTC)")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[20, 50],
                        help="S3 request latencies for the model (default 20 50; an assumption)")
    parser.add_argument("--throughput-mbs", type=float, default=100.0,
                        help="aggregate GET throughput for the model, MB/s (default 100; an "
                        "assumption)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the command's per-event steps on one day's log files")
    parser.add_argument("--profile", metavar="SCENARIO",
                        help="profile this scenario (cProfile, cumulative) and print the top")
    args = parser.parse_args()

    from admin import trail_evidence

    readers = trail_evidence.READERS  # the command's parallel reads, for the model
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = (datetime.fromisoformat(args.end).replace(tzinfo=UTC) if args.end
           else today - timedelta(days=1))
    start = end - timedelta(days=args.days)

    import moto

    from localaws import cloudtrail

    os.environ.setdefault("AWS_DEFAULT_REGION", args.region)
    failures: list[str] = []
    with moto.mock_aws():
        cloudtrail.install(clock=False)
        narrow_moto_listing()
        emulator = EmulatorClock()
        emulator.install()
        print(f"generating {args.days} days x {args.files_per_day:,} uploads/day ...",
              file=sys.stderr)
        estate = generate(args, start, args.days)
        per_file = estate.events / max(1, estate.log_files)
        stored_per_file = estate.stored_bytes / max(1, estate.log_files + estate.digests)
        print(f"## Generated\n\n{args.days} days from {_iso(start)} to {_iso(estate.end)}, "
              f"{args.files_per_day:,} uploads a day (3 events each), region {args.region}: "
              f"{estate.events:,} events in {estate.log_files:,} log files and "
              f"{estate.digests:,} digest files; {mb(estate.stored_bytes)} stored (gzip), "
              f"{mb(estate.raw_bytes)} uncompressed; {per_file:,.0f} events and "
              f"{stored_per_file / 1e3:,.1f} kB per file on average. Generation took "
              f"{estate.seconds:,.1f} s "
              f"(RSS now {rss_kib() / 1024:,.0f} MiB).\n")
        first = estate.versions[0].time
        print(f"The one object: s3://{estate.data_bucket}/{OBJECT_KEY}, versions "
              + ", ".join(f"{v.version_id} at {_iso(v.time)} ({v.size:,} bytes)"
                          for v in estate.versions) + ".\n")
        common = ["--bucket", estate.data_bucket, "--trail", estate.trail_name,
                  "--region", args.region, "--json"]
        day = first.replace(hour=0, minute=0, second=0)
        scenarios = [
            Scenario("one object", "its versions' hours", ["custody", SLUG, OBJECT_KEY, *common],
                     prefix=False),
            Scenario("one object, one day", "24 h",
                     ["custody", SLUG, OBJECT_KEY, *common, "--since", _iso(day),
                      "--until", _iso(day + timedelta(days=1))], prefix=False),
        ]
        spans = sorted(set(args.scan_days + ([args.days] if args.full_scan else [])))
        for days in spans:
            # From the month's second day (the digest before the window exists, as it does
            # mid-trail), unless the scan needs the whole month.
            since = start + timedelta(days=1 if days < args.days else 0)
            scenarios.append(Scenario(
                f"prefix, {days} day{'s' if days > 1 else ''}", f"{days * 24} h",
                ["custody", SLUG, "--prefix", "inbound/", "--since", _iso(since), "--until",
                 _iso(since + timedelta(days=days)), *common], prefix=True))
        results: dict[str, dict[str, Any]] = {}
        for scenario in scenarios:
            print(f"running: {scenario.name}", file=sys.stderr)
            result = measure(scenario, estate, emulator, profile=args.profile == scenario.name)
            results[scenario.name] = result
            for problem in check(scenario, result, estate):
                failures.append(f"{scenario.name}: {problem}")
            if "profile" in result:
                print(f"### Profile: {scenario.name}\n\n```\n{result['profile']}```\n")
        steps = breakdown(estate) if args.breakdown else []

    print("## Measured\n")
    print("| scenario | window | log files read | digests read | listings | GETs | all requests "
          "| bytes read (gzip) | uncompressed | events in files read | events matched | wall s "
          "| CPU s | in emulator s | peak RSS MiB (above generated state) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for scenario in scenarios:
        r = results[scenario.name]
        logs, digests, listings, gets, total = reads(r)
        print(f"| {scenario.name} | {scenario.window} | {logs:,} | {digests:,} | {listings:,} "
              f"| {gets:,} | {total:,} | {mb(r.get('compressed', 0))} "
              f"| {mb(r.get('uncompressed', 0))} | {r.get('parsed', 0):,} | {r.get('events', 0):,} "
              f"| {r.get('wall', 0):.2f} | {r.get('cpu', 0):.2f} | {r.get('emulator', 0):.2f} "
              f"| {r['peak_kib'] / 1024:,.0f} ({r['growth_kib'] / 1024:,.0f}) |")
    for scenario in scenarios:
        notes = results[scenario.name].get("notes") or []
        listings, gets = reads(results[scenario.name])[2:4]
        if notes:
            print(f"\n{scenario.name}: the command's note: {'; '.join(notes)} (counted on its "
                  f"clients: {listings} ListObjectVersions pages, {gets} GetObject)")

    scans = [s for s in scenarios if s.prefix]
    extrapolated: tuple[str, float, float, float] | None = None  # name, rounds, CPU, bytes
    if scans and not args.full_scan:
        # A window of the whole month lists its days and the day its delivery lag reaches
        # (by day: BY_DAY_AFTER), on a trail that keeps logging: days + 1 days of log files.
        largest = max(scans, key=lambda s: int(s.window.split()[0]))
        r = results[largest.name]
        logs = reads(r)[0]
        month_files = (args.days + 1) * estate.log_files / args.days
        factor = month_files / max(1, logs)
        matched = r.get("events", 0) * args.days * 24 / int(largest.window.split()[0])
        print(f"\nWhole month ({args.days} days), extrapolated per log file from "
              f"'{largest.name}' (not measured): the window lists {args.days + 1} days of log "
              f"files, {month_files:,.0f} (x{factor:.2f} the {logs:,} read), "
              f"{mb(r.get('compressed', 0) * factor)} read "
              f"({mb(r.get('uncompressed', 0) * factor)} uncompressed), "
              f"{r.get('parsed', 0) * factor:,.0f} events parsed, {matched:,.0f} matched; "
              f"{r.get('wall', 0) * factor:,.0f} s wall, {r.get('cpu', 0) * factor:,.0f} s CPU "
              f"({max(0.0, r.get('cpu', 0) - r.get('emulator', 0)) * factor:,.0f} s outside the "
              f"emulator), ~{r['growth_kib'] * factor / 1024 / 1024:,.1f} GiB of memory above "
              "the generated state.")
        extrapolated = (f"prefix, whole month (x{factor:.2f} '{largest.name}')",
                        rounds(r, readers) * factor,
                        max(0.0, r.get("cpu", 0) - r.get("emulator", 0)) * factor,
                        r.get("compressed", 0) * factor)

    print("\n## On AWS (model, not measured)\n")
    print(f"Requests one after another (listings, lone requests, batches of {readers} parallel "
          f"reads) x latency, plus bytes at {args.throughput_mbs:g} MB/s, plus the local CPU "
          "measured outside the emulator (CPU s - in emulator s).\n")
    latencies = args.latency_ms
    print("| scenario | sequential rounds | local CPU s | "
          + " | ".join(f"est. s at {lat:g} ms" for lat in latencies) + " |")
    print("|---|---|---|" + "---|" * len(latencies))
    rows = [(s.name, float(rounds(results[s.name], readers)),
             max(0.0, results[s.name].get("cpu", 0) - results[s.name].get("emulator", 0)),
             float(results[s.name].get("compressed", 0))) for s in scenarios]
    for name, sequential, local, compressed in [*rows, *([extrapolated] if extrapolated else [])]:
        transfer = compressed / (args.throughput_mbs * 1e6)
        estimates = [sequential * lat / 1000 + transfer + local for lat in latencies]
        print(f"| {name} | {sequential:,.0f} | {local:.2f} | "
              + " | ".join(f"{e:,.1f}" for e in estimates) + " |")

    if steps:
        print("\n## The command's steps, on the log files of one day (CPU)\n")
        print("| step | s | events | per event |")
        print("|---|---|---|---|")
        for name, seconds, items in steps:
            each = seconds / max(1, items) * 1e9
            print(f"| {name} | {seconds:.2f} | {items:,} | {each:,.0f} ns |")

    if failures:
        print("\nFAILED: the command did not do its job; these figures measure a broken path:",
              file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
