"""The Python API: :class:`Client` runs upload, download, sync, verify, ls and cleanup.

Each method plans first (every key and destination is checked locally, nothing is sent if
anything is refused), then transfers on one thread pool, appends one custody record per
transfer, and returns one :class:`Outcome` per file. Failures of a single file (checksum
mismatch, missing object) are recorded and the batch goes on; failures that would repeat for
every file (credentials, access, region, network) stop the batch. :meth:`Client.raise_for`
turns a batch's failures into one :class:`TransferError` with the first failure's exit code.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from partner_transfer import __version__, checksums, engine, journal, keys, s3args
from partner_transfer.checksums import ALGORITHM
from partner_transfer.clients import Clients, make_clients
from partner_transfer.errors import ErrorContext, ExitCode, TransferError, classify, wrong_region
from partner_transfer.manifest import (
    BATCH_FOLDER,
    ManifestWriter,
    Record,
    batch_manifest,
    read_manifest,
    utc_now,
)
from partner_transfer.profile import Profile
from partner_transfer.progress import NullReporter, Reporter

# Failures that would repeat for every other file: stop the batch at the first one.
FATAL = {
    ExitCode.CONFIG,
    ExitCode.CREDENTIALS,
    ExitCode.ACCESS_DENIED,
    ExitCode.WRONG_REGION,
    ExitCode.NETWORK,
    ExitCode.INTERRUPTED,
}


@dataclass(frozen=True)
class Options:
    """Per-run options. Defaults: the profile's tuning, no filters, real run, verification on.

    ``concurrency``/``part_size``: override the profile's tuning. ``include``/``exclude``:
    glob patterns on relative paths or base names. ``dry_run``: plan and print, change nothing
    (may still list or HEAD to decide what sync would do). ``allow_unverified`` (default False):
    accept downloads of objects that carry no full-object checksum. ``commit_manifest``
    (default False): after a fully successful upload batch, upload its batch manifest last.
    ``state_dir``/``manifest``: override the profile's. ``fsync`` (default True): flush
    downloads to disk before renaming them into place.
    """

    concurrency: int | None = None
    part_size: int | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    dry_run: bool = False
    allow_unverified: bool = False
    commit_manifest: bool = False
    state_dir: Path | None = None
    manifest: Path | None = None
    fsync: bool = True


@dataclass
class Outcome:
    """What happened to one file. ``result``: ok, skipped, failed, would-upload, would-download,
    would-skip, match, mismatch, missing (the last three from verify)."""

    direction: str
    local_path: str
    key: str
    result: str
    size: int | None = None
    checksum: str | None = None
    algorithm: str | None = None
    version_id: str | None = None
    error: TransferError | None = None
    note: str = ""


@dataclass(frozen=True)
class _UploadItem:
    local: keys.LocalFile
    key: str
    size: int


@dataclass(frozen=True)
class _DownloadItem:
    key: str
    dest: Path
    size: int | None


@dataclass
class _Run:
    """One batch's shared state."""

    batch_id: str
    writer: ManifestWriter | None
    stop: threading.Event = field(default_factory=threading.Event)
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Client:
    """Transfers for one connection profile.

    ``clients`` (default: built from the profile by :func:`make_clients`, the one seam) and
    ``reporter`` (default: no progress output) can be injected. The caller's ARN is fetched from
    STS once, on first use, and the bucket's region is checked once before the first transfer.
    """

    def __init__(
        self,
        profile: Profile,
        options: Options | None = None,
        *,
        clients: Clients | None = None,
        reporter: Reporter | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.profile = profile
        self.options = options or Options()
        self.concurrency = self.options.concurrency or profile.tuning.concurrency
        self.part_size = self.options.part_size or profile.tuning.part_size
        self.reporter: Reporter = reporter or NullReporter()
        self.on_outcome = on_outcome
        self._clients = clients
        self._caller_arn: str | None = None
        self._region_checked = False
        self.target = s3args.Target(profile.bucket, profile.bucket_owner, profile.kms_key_arn)
        self.state_dir = self.options.state_dir or profile.resolved_state_dir()
        self.manifest_path = (
            self.options.manifest or profile.manifest or self.state_dir / "manifest.jsonl"
        )
        self._pool: ThreadPoolExecutor | None = None
        # (manifest size when read, last upload record per key): see _uploads_recorded.
        self._recorded: tuple[int, dict[str, dict[str, Any]]] | None = None
        self._recorded_lock = threading.Lock()
        self._current_run: _Run | None = None
        self._last_batch_id = ""

    # -- connection ------------------------------------------------------------------------

    @property
    def clients(self) -> Clients:
        if self._clients is None:
            try:
                self._clients = make_clients(self.profile, concurrency=self.concurrency)
            except Exception as exc:
                raise self._classify(exc, "connect") from None
        return self._clients

    def _ctx(self, operation: str, key: str = "") -> ErrorContext:
        return ErrorContext(
            operation=operation,
            bucket=self.profile.bucket,
            key=key,
            principal=self._caller_arn or "",
            region=self.profile.region,
            credential_source=self.profile.auth.describe(),
            access_key_hint=self._clients.access_key_hint if self._clients else "",
        )

    def _classify(self, exc: BaseException, operation: str, key: str = "") -> TransferError:
        return classify(exc, self._ctx(operation, key))

    def caller_arn(self) -> str:
        """The caller's ARN from STS GetCallerIdentity (also proves the credentials work)."""
        if self._caller_arn is None:
            try:
                self._caller_arn = str(self.clients.sts.get_caller_identity()["Arn"])
            except TransferError:
                raise
            except Exception as exc:
                raise self._classify(exc, "authenticate") from None
        return self._caller_arn

    def preflight(self) -> None:
        """Check credentials (STS) and that the bucket is where the profile says (HeadBucket).

        A refused HeadBucket (403) is fine: partners may lack ListBucket on the bucket root.
        """
        self.caller_arn()
        if self._region_checked:
            return
        region = ""
        try:
            resp = self.clients.s3.head_bucket(
                Bucket=self.profile.bucket, ExpectedBucketOwner=self.profile.bucket_owner
            )
            region = resp.get("BucketRegion") or resp["ResponseMetadata"]["HTTPHeaders"].get(
                "x-amz-bucket-region", ""
            )
        except ClientError as exc:
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            region = headers.get("x-amz-bucket-region", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                raise TransferError(
                    ExitCode.NOT_FOUND,
                    f"bucket {self.profile.bucket} does not exist: check `bucket` in the "
                    "connection profile",
                ) from None
            if status not in (403, 301, 400):
                raise self._classify(exc, "reach") from None
        except Exception as exc:
            raise self._classify(exc, "reach") from None
        if region and region != self.profile.region:
            raise wrong_region(self.profile.bucket, region, self.profile.region)
        self._region_checked = True

    # -- shared batch machinery ------------------------------------------------------------

    def _engine(self, pool: ThreadPoolExecutor, run: _Run) -> engine.Engine:
        return engine.Engine(
            s3=self.clients.s3,
            target=self.target,
            pool=pool,
            state_dir=self.state_dir,
            advance=self.reporter.advance,
            stop=run.stop,
            fsync=self.options.fsync,
        )

    def _active(self) -> tuple[ThreadPoolExecutor, _Run]:
        assert self._pool is not None and self._current_run is not None, "outside a batch"
        return self._pool, self._current_run

    def _record(self, run: _Run, outcome: Outcome, direction: str) -> None:
        error = outcome.error
        if run.writer is not None and outcome.result in ("ok", "skipped", "failed"):
            run.writer.write(
                Record(
                    time=utc_now(),
                    batch_id=run.batch_id,
                    direction=direction,
                    local_path=outcome.local_path,
                    bucket=self.profile.bucket,
                    key=outcome.key,
                    version_id=outcome.version_id,
                    size=outcome.size,
                    checksum=outcome.checksum,
                    checksum_algorithm=outcome.algorithm,
                    kms_key_arn=self.profile.kms_key_arn,
                    caller_arn=self._caller_arn,
                    result=outcome.result,
                    error=error.message if error else None,
                    exit_code=int(error.code) if error else None,
                    client=f"partner-transfer/{__version__}",
                )
            )
        with run.lock:
            run.outcomes.append(outcome)
        if error is not None and error.code in FATAL:
            run.stop.set()
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        self.reporter.file_done()

    def _guard(
        self, run: _Run, direction: str, local: str, key: str, work: Callable[[], Outcome]
    ) -> None:
        """Run one file's work; turn its failure into a recorded ``failed`` outcome."""
        if run.stop.is_set():
            return
        try:
            outcome = work()
        except engine.Stopped:
            return
        except Exception as exc:
            err = self._classify(exc, direction, key)
            outcome = Outcome(direction, local, key, "failed", error=err)
        self._record(run, outcome, direction)

    def _batch(
        self,
        direction: str,
        small: Sequence[tuple[str, str, Callable[[], Outcome]]],
        large: Sequence[tuple[str, str, Callable[[ThreadPoolExecutor, _Run], Outcome]]],
        *,
        total_bytes: int,
        description: str,
    ) -> list[Outcome]:
        """Small files run one per pool task; large ones run one at a time, parts on the pool."""
        run = _Run(batch_id=_batch_id(), writer=None)
        self._current_run = run
        with (
            ManifestWriter(self.manifest_path) as writer,
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="partner-transfer") as pool,
            self.reporter,
        ):
            run.writer = writer
            self._pool = pool
            self.reporter.start(description, total_bytes, len(small) + len(large))
            futures: list[Future[None]] = []
            try:
                for local, key, work in small:
                    futures.append(pool.submit(self._guard, run, direction, local, key, work))
                for local, key, big in large:
                    self._guard(run, direction, local, key, functools.partial(big, pool, run))
                for f in futures:
                    f.result()
            except KeyboardInterrupt:
                run.stop.set()
                for f in futures:
                    f.cancel()
                raise TransferError(
                    ExitCode.INTERRUPTED,
                    "interrupted: re-run the same command to resume (stored parts are kept)",
                ) from None
        self._last_batch_id = run.batch_id
        return sorted(run.outcomes, key=_order_of(small, large))

    # -- upload ----------------------------------------------------------------------------

    def plan_upload(self, paths: Sequence[Path], to: str | None = None) -> list[_UploadItem]:
        """Map local files to keys under ``to`` (default: the inbound prefix); refuse locally
        keys outside the allowed prefixes and two files mapping to one key."""
        allowed = self.profile.upload_prefixes
        prefix = keys.check_prefix(
            to if to is not None else (allowed or ("",))[0], allowed, "upload"
        )
        files = keys.select_files(paths, self.options.include, self.options.exclude)
        items: list[_UploadItem] = []
        seen: dict[str, Path] = {}
        for f in files:
            key = keys.check_key(keys.upload_key(prefix, f.relative), allowed, "upload")
            if key in seen:
                raise keys.refused(f"{f.path} and {seen[key]} would both be uploaded as {key}")
            seen[key] = f.path
            items.append(_UploadItem(f, key, f.path.stat().st_size))
        return items

    def upload(
        self, paths: Sequence[Path], to: str | None = None, *, skip_identical: bool = False
    ) -> list[Outcome]:
        """Upload files and directories under ``to`` (default: the inbound prefix).

        ``skip_identical`` (default False; True for sync) skips files whose object already has
        the same full-object checksum.
        """
        items = self.plan_upload(paths, to)
        if self.options.dry_run:
            return self._dry_run_upload(items, skip_identical)
        self.preflight()
        existing = self._existing_sizes(items) if skip_identical else {}

        def small_work(item: _UploadItem) -> Callable[[], Outcome]:
            return lambda: self._upload_small(item, skip_identical, existing)

        def large_work(item: _UploadItem) -> Callable[[ThreadPoolExecutor, _Run], Outcome]:
            return lambda pool, run: self._upload_large(item, pool, run, skip_identical, existing)

        small = [
            (str(i.local.path), i.key, small_work(i)) for i in items if i.size <= self.part_size
        ]
        large = [
            (str(i.local.path), i.key, large_work(i)) for i in items if i.size > self.part_size
        ]
        outcomes = self._batch(
            "upload",
            small,
            large,
            total_bytes=sum(i.size for i in items),
            description=f"upload {len(items)} file(s)",
        )
        if (
            self.options.commit_manifest
            and outcomes
            and all(o.result in ("ok", "skipped") for o in outcomes)
        ):
            outcomes.append(self._upload_batch_manifest(outcomes, to))
        return outcomes

    def _existing_sizes(self, items: Sequence[_UploadItem]) -> dict[str, int] | None:
        """Sizes of objects already under the batch's prefixes (``None`` if listing is denied:
        then every file is checked with HEAD)."""
        # S3 prefixes are plain string prefixes, so a character-wise common prefix is exact.
        prefixes = {os.path.commonprefix([i.key for i in items])} if items else set()  # noqa: RUF071
        sizes: dict[str, int] = {}
        try:
            for prefix in prefixes:
                for obj in self._list(prefix):
                    sizes[obj["Key"]] = int(obj["Size"])
        except TransferError as err:
            if err.code is ExitCode.ACCESS_DENIED:
                return None
            raise
        return sizes

    def _remote_checksums(self, key: str) -> tuple[list[checksums.Expected], dict[str, Any]] | None:
        """Full-object checksums S3 holds for ``key``; ``None`` if there is no such object.

        Partners may not read back what they sent (inbound is write-only, so a leaked key cannot
        fetch earlier uploads). When HEAD is refused for a key under an upload prefix, the
        object's existence and size come from the listing, and its checksum from this host's
        custody manifest: S3 verified that checksum when the upload completed.
        """
        try:
            head = self.clients.s3.head_object(**s3args.head_object_args(self.target, key))
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                return None
            if status == 403 and key.startswith(self.profile.upload_prefixes or ("\0",)):
                return self._uploaded_per_manifest(key)
            raise
        return checksums.expected_checksums(head), head

    def _uploaded_per_manifest(
        self, key: str
    ) -> tuple[list[checksums.Expected], dict[str, Any]] | None:
        listed = next((o for o in self._list(key) if o["Key"] == key), None)
        if listed is None:
            return None
        size = int(listed["Size"])
        record = self._uploads_recorded().get(key)
        if record is not None and record.get("size") != size:
            record = None  # the object is not what this host last uploaded
        if record is None:
            return [], {"ContentLength": size, "unreadable": True}
        expected = checksums.Expected(str(record["checksum_algorithm"]), str(record["checksum"]),
                                      "manifest")
        return [expected], {"ContentLength": size, "VersionId": record.get("version_id")}

    def _identical_remote(
        self, item: _UploadItem, crc: str, existing: dict[str, int] | None
    ) -> dict[str, Any] | None:
        """The HEAD of the object if it already holds exactly this file, else ``None``."""
        if existing is not None and existing.get(item.key) != item.size:
            return None
        found = self._remote_checksums(item.key)
        if found is None:
            return None
        expected, head = found
        if int(head.get("ContentLength", -1)) != item.size or not expected:
            return None
        local = {ALGORITHM: crc}
        for e in expected:
            if e.algorithm not in local:
                local[e.algorithm] = checksums.digest_path(item.local.path, e.algorithm)
            if local[e.algorithm] != e.value:
                return None
        return head

    def _uploads_recorded(self) -> dict[str, dict[str, Any]]:
        """This host's last successful upload record per key of this bucket, from the custody
        manifest; read once, and again only when the manifest has grown."""
        size = self.manifest_path.stat().st_size if self.manifest_path.exists() else 0
        with self._recorded_lock:
            if self._recorded is None or self._recorded[0] != size:
                index: dict[str, dict[str, Any]] = {}
                for r in read_manifest(self.manifest_path) if size else []:
                    if (r.get("direction") == "upload" and r.get("result") in ("ok", "skipped")
                            and r.get("bucket") == self.profile.bucket and r.get("checksum")):
                        index[str(r["key"])] = r
                self._recorded = (size, index)
            return self._recorded[1]

    def _skipped(self, item: _UploadItem, crc: str, head: dict[str, Any]) -> Outcome:
        return Outcome(
            "upload",
            str(item.local.path),
            item.key,
            "skipped",
            item.size,
            crc,
            ALGORITHM,
            head.get("VersionId"),
            note="already there with the same checksum",
        )

    def _upload_small(
        self, item: _UploadItem, skip_identical: bool, existing: dict[str, int] | None
    ) -> Outcome:
        pool, run = self._active()
        data = item.local.path.read_bytes()
        crc = checksums.encode_int(checksums.crc64nvme(data))
        if skip_identical and (head := self._identical_remote(item, crc, existing)) is not None:
            self.reporter.advance(len(data))
            return self._skipped(item, crc, head)
        eng = self._engine(pool, run)
        up = engine.put_small(eng, item.key, data, crc)
        return Outcome(
            "upload", str(item.local.path), item.key, "ok", len(data), crc, ALGORITHM, up.version_id
        )

    def _upload_large(
        self,
        item: _UploadItem,
        pool: ThreadPoolExecutor,
        run: _Run,
        skip_identical: bool,
        existing: dict[str, int] | None,
    ) -> Outcome:
        path = item.local.path
        part_size = part_size_for(item.size, self.part_size)
        mtime_ns = path.stat().st_mtime_ns
        digest = checksums.digest_file(path, part_size)
        if (
            skip_identical
            and (head := self._identical_remote(item, digest.checksum, existing)) is not None
        ):
            self.reporter.advance(digest.size)
            return self._skipped(item, digest.checksum, head)
        up = engine.upload_multipart(self._engine(pool, run), item.key, path, digest, mtime_ns)
        note = f"resumed: {up.resumed_parts} part(s) already stored" if up.resumed_parts else ""
        if not up.server_confirmed:
            note = (note + "; " if note else "") + "server did not report its checksum"
        return Outcome(
            "upload",
            str(path),
            item.key,
            "ok",
            digest.size,
            digest.checksum,
            ALGORITHM,
            up.version_id,
            note=note,
        )

    def _upload_batch_manifest(self, outcomes: list[Outcome], to: str | None) -> Outcome:
        allowed = self.profile.upload_prefixes
        prefix = keys.check_prefix(to if to is not None else allowed[0], allowed, "upload")
        batch_id = self._last_batch_id
        key = f"{prefix}{BATCH_FOLDER}{batch_id}.json"
        records = [
            Record(
                time="",
                batch_id=batch_id,
                direction="upload",
                local_path=o.local_path,
                bucket=self.profile.bucket,
                key=o.key,
                version_id=o.version_id,
                size=o.size,
                checksum=o.checksum,
                checksum_algorithm=o.algorithm,
                kms_key_arn=None,
                caller_arn=None,
                result=o.result,
            )
            for o in outcomes
        ]
        body = batch_manifest(batch_id, records, caller_arn=self._caller_arn, created_at=utc_now())
        crc = checksums.encode_int(checksums.crc64nvme(body))
        run = _Run(batch_id=batch_id, writer=None)
        with ThreadPoolExecutor(1) as pool:
            try:
                up = engine.put_small(self._engine(pool, run), key, body, crc)
            except Exception as exc:
                err = self._classify(exc, "upload", key)
                return Outcome("upload", "(batch manifest)", key, "failed", error=err)
        outcome = Outcome(
            "upload",
            "(batch manifest)",
            key,
            "ok",
            len(body),
            crc,
            ALGORITHM,
            up.version_id,
            note="commit marker",
        )
        with ManifestWriter(self.manifest_path) as writer:
            run.writer = writer
            self._record(run, outcome, "upload")
        return outcome

    def _dry_run_upload(self, items: Sequence[_UploadItem], skip_identical: bool) -> list[Outcome]:
        outcomes = []
        existing = self._existing_sizes(items) if skip_identical and items else {}
        for item in items:
            result = "would-upload"
            if skip_identical:
                crc = checksums.digest_file(
                    item.local.path, part_size_for(item.size, self.part_size)
                ).checksum
                if self._identical_remote(item, crc, existing) is not None:
                    result = "would-skip"
            outcome = Outcome("upload", str(item.local.path), item.key, result, item.size)
            outcomes.append(outcome)
            if self.on_outcome:
                self.on_outcome(outcome)
        return outcomes

    # -- download --------------------------------------------------------------------------

    def _list(self, prefix: str) -> Iterable[dict[str, Any]]:
        paginator = self.clients.s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(
                Bucket=self.profile.bucket,
                Prefix=prefix,
                ExpectedBucketOwner=self.profile.bucket_owner,
            ):
                yield from page.get("Contents", [])
        except Exception as exc:
            raise self._classify(exc, "list", prefix) from None

    def plan_download(self, source: str, dest: Path) -> list[_DownloadItem]:
        """Objects under ``source`` (a key, or a prefix ending in ``/``) and their local paths.

        A single key lands at ``dest`` (or ``dest/<name>`` when ``dest`` is a directory); a
        prefix's objects land under ``dest`` by their names relative to the prefix. Keys outside
        the outbound prefix, names escaping ``dest`` and symlinks inside it are refused.
        """
        allowed = self.profile.download_prefixes
        checked, is_prefix = self._download_source(source)
        if is_prefix:
            prefix = checked
            items = []
            for obj in self._list(prefix):
                key = obj["Key"]
                if key.endswith("/"):
                    continue  # a "folder" marker, no data
                keys.check_key(key, allowed, "download")
                rel = keys.relative_to_prefix(key, prefix)
                items.append(_DownloadItem(key, keys.safe_destination(dest, rel), int(obj["Size"])))
            if not items:
                raise TransferError(ExitCode.NOT_FOUND, f"no objects under {prefix}")
            return items
        key = checked
        name = key.rsplit("/", 1)[-1]
        if dest.is_dir() or str(dest).endswith(os.sep):
            final = keys.safe_destination(dest, name)
        else:
            final = keys.safe_destination(dest.parent, dest.name)
        return [_DownloadItem(key, final, None)]

    def _download_source(self, source: str) -> tuple[str, bool]:
        """``source`` checked against the profile's download prefixes, before any request:
        (the normalized prefix, True) or (the key, False)."""
        allowed = self.profile.download_prefixes
        if source and not source.endswith("/") and source + "/" in allowed:
            source += "/"
        if source == "" or source.endswith("/"):
            return keys.check_prefix(source or (allowed or ("",))[0], allowed, "download"), True
        return keys.check_key(source, allowed, "download"), False

    def download(self, source: str, dest: Path, *, skip_identical: bool = False) -> list[Outcome]:
        """Download a key or a prefix to ``dest``, verifying every file before it appears.

        ``skip_identical`` (default False; True for sync) keeps local files whose content has
        the object's stored checksum.
        """
        self._download_source(source)  # refuse locally, before any request
        if not self.options.dry_run:
            self.preflight()
        items = self.plan_download(source, dest)
        if self.options.dry_run:
            return self._dry_run_download(items, skip_identical)
        for folder in sorted({item.dest.parent for item in items}):
            folder.mkdir(parents=True, exist_ok=True)
        small = []
        large = []
        for item in items:
            if item.size is not None and item.size <= self.part_size:
                small.append(
                    (str(item.dest), item.key, self._small_download_work(item, skip_identical))
                )
            else:
                large.append(
                    (str(item.dest), item.key, self._large_download_work(item, skip_identical))
                )
        total = sum(i.size or 0 for i in items)
        return self._batch(
            "download",
            small,
            large,
            total_bytes=total,
            description=f"download {len(items)} file(s)",
        )

    def _local_identical(self, item: _DownloadItem) -> tuple[Outcome | None, dict[str, Any] | None]:
        if not item.dest.is_file() or item.dest.is_symlink():
            return None, None
        found = self._remote_checksums(item.key)
        if found is None:
            raise TransferError(
                ExitCode.NOT_FOUND, f"not found: s3://{self.profile.bucket}/{item.key}"
            )
        expected, head = found
        size = item.dest.stat().st_size
        if not expected or size != int(head.get("ContentLength", -1)):
            return None, head
        values = {}
        for e in expected:
            if e.algorithm not in values:
                values[e.algorithm] = checksums.digest_path(item.dest, e.algorithm)
            if values[e.algorithm] != e.value:
                return None, head
        first = expected[0]
        self.reporter.advance(size)
        return Outcome(
            "download",
            str(item.dest),
            item.key,
            "skipped",
            size,
            first.value,
            first.algorithm,
            head.get("VersionId"),
            note="already there with the same checksum",
        ), head

    def _small_download_work(self, item: _DownloadItem, skip: bool) -> Callable[[], Outcome]:
        def work() -> Outcome:
            if skip:
                same, _ = self._local_identical(item)
                if same is not None:
                    return same
            eng = self._engine(*self._active())
            got = engine.download_small(
                eng, item.key, item.dest, allow_unverified=self.options.allow_unverified
            )
            return self._downloaded(item, got)

        return work

    def _large_download_work(
        self, item: _DownloadItem, skip: bool
    ) -> Callable[[ThreadPoolExecutor, _Run], Outcome]:
        def work(pool: ThreadPoolExecutor, run: _Run) -> Outcome:
            head: dict[str, Any] | None = None
            if skip:
                same, head = self._local_identical(item)
                if same is not None:
                    return same
            if head is None:
                found = self._remote_checksums(item.key)
                if found is None:
                    raise TransferError(
                        ExitCode.NOT_FOUND, f"not found: s3://{self.profile.bucket}/{item.key}"
                    )
                head = found[1]
            eng = self._engine(pool, run)
            size = int(head["ContentLength"])
            if size <= self.part_size:
                got = engine.download_small(
                    eng, item.key, item.dest, allow_unverified=self.options.allow_unverified
                )
            else:
                got = engine.download_ranged(
                    eng,
                    item.key,
                    item.dest,
                    head,
                    self.part_size,
                    allow_unverified=self.options.allow_unverified,
                )
            return self._downloaded(item, got)

        return work

    def _downloaded(self, item: _DownloadItem, got: engine.Downloaded) -> Outcome:
        note = "" if got.verified_against == "s3" else f"verified against: {got.verified_against}"
        return Outcome(
            "download",
            str(item.dest),
            item.key,
            "ok",
            got.size,
            got.checksum,
            got.algorithm,
            got.version_id,
            note=note,
        )

    def _dry_run_download(self, items: Sequence[_DownloadItem], skip: bool) -> list[Outcome]:
        outcomes = []
        for item in items:
            result = "would-download"
            if skip and self._local_identical(item)[0] is not None:
                result = "would-skip"
            outcome = Outcome("download", str(item.dest), item.key, result, item.size)
            outcomes.append(outcome)
            if self.on_outcome:
                self.on_outcome(outcome)
        return outcomes

    # -- verify, ls, cleanup ---------------------------------------------------------------

    def verify(self, paths: Sequence[Path], prefix: str | None = None) -> list[Outcome]:
        """Compare local files with the checksums S3 stored, without downloading.

        Files map to keys as in upload, under ``prefix`` (default: the inbound prefix, else the
        outbound one). Results: match, mismatch, missing (no such object), or failed.
        """
        allowed = self.profile.upload_prefixes + self.profile.download_prefixes
        chosen = keys.check_prefix(prefix if prefix is not None else allowed[0], allowed, "verif")
        files = keys.select_files(paths, self.options.include, self.options.exclude)
        self.preflight()
        outcomes: list[Outcome] = []

        def one(f: keys.LocalFile) -> Outcome:
            key = keys.check_key(keys.upload_key(chosen, f.relative), allowed, "verif")
            try:
                found = self._remote_checksums(key)
                if found is None:
                    return Outcome("verify", str(f.path), key, "missing")
                expected, head = found
                if not expected:
                    reason = (
                        f"{key} cannot be read back (inbound is write-only) and this host's "
                        "custody manifest has no record of uploading it"
                        if head.get("unreadable")
                        else f"{key} has no full-object checksum to compare"
                    )
                    return Outcome(
                        "verify",
                        str(f.path),
                        key,
                        "failed",
                        error=TransferError(ExitCode.CHECKSUM, reason),
                    )
                for e in expected:
                    local = checksums.digest_path(f.path, e.algorithm)
                    if local != e.value:
                        return Outcome(
                            "verify",
                            str(f.path),
                            key,
                            "mismatch",
                            f.path.stat().st_size,
                            local,
                            e.algorithm,
                            head.get("VersionId"),
                            note=f"{_origin(e)} {e.algorithm} {e.value}",
                        )
                return Outcome(
                    "verify",
                    str(f.path),
                    key,
                    "match",
                    int(head["ContentLength"]),
                    expected[0].value,
                    expected[0].algorithm,
                    head.get("VersionId"),
                )
            except TransferError:
                raise
            except Exception as exc:
                return Outcome(
                    "verify", str(f.path), key, "failed", error=self._classify(exc, "verify", key)
                )

        with ThreadPoolExecutor(self.concurrency) as pool:
            for outcome in pool.map(one, files):
                outcomes.append(outcome)
                if self.on_outcome:
                    self.on_outcome(outcome)
        return outcomes

    def ls(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """Objects under ``prefix`` (default: every allowed prefix): key, size, last modified."""
        allowed = self.profile.upload_prefixes + self.profile.download_prefixes
        prefixes = (
            [keys.check_prefix(prefix, allowed, "list")] if prefix is not None else list(allowed)
        )
        self.preflight()
        return [obj for p in prefixes for obj in self._list(p)]

    def cleanup(self, *, remote: bool = False, older_than_days: float = 0) -> list[str]:
        """Abandon interrupted uploads: abort each journaled upload and delete its journal.

        ``remote`` (default False) also aborts multipart uploads S3 holds under the upload
        prefixes that were started more than ``older_than_days`` (default 0) days ago, journal
        or not. Returns one line per action.
        """
        done: list[str] = []
        now = time.time()
        run = _Run(batch_id="cleanup", writer=None)
        with ThreadPoolExecutor(1) as pool:
            eng = self._engine(pool, run)
            for path, jr in journal.list_journals(self.state_dir):
                if jr is None:
                    path.unlink(missing_ok=True)
                    done.append(f"removed unreadable journal {path.name}")
                    continue
                if now - path.stat().st_mtime < older_than_days * 86400:
                    continue
                if self.options.dry_run:
                    done.append(
                        f"would abort upload of {jr.identity.key} ({jr.identity.local_path})"
                    )
                    continue
                try:
                    engine.abort_quietly(eng, jr.identity.key, jr.upload_id)
                except Exception as exc:
                    raise self._classify(exc, "abort the upload of", jr.identity.key) from None
                jr.remove()
                done.append(f"aborted upload of {jr.identity.key} ({jr.identity.local_path})")
            if remote:
                for prefix in self.profile.upload_prefixes:
                    done += self._cleanup_remote(eng, prefix, now - older_than_days * 86400)
        return done

    def _cleanup_remote(self, eng: engine.Engine, prefix: str, cutoff: float) -> list[str]:
        done = []
        paginator = self.clients.s3.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(
                Bucket=self.profile.bucket,
                Prefix=prefix,
                ExpectedBucketOwner=self.profile.bucket_owner,
            ):
                for up in page.get("Uploads", []):
                    if up["Initiated"].timestamp() > cutoff:
                        continue
                    if self.options.dry_run:
                        done.append(f"would abort remote upload of {up['Key']}")
                        continue
                    engine.abort_quietly(eng, up["Key"], up["UploadId"])
                    done.append(f"aborted remote upload of {up['Key']}")
        except TransferError:
            raise
        except Exception as exc:
            raise self._classify(exc, "list uploads under", prefix) from None
        return done

    @staticmethod
    def raise_for(outcomes: Sequence[Outcome]) -> None:
        """Raise the first failure's class, with a count when several files failed."""
        failures = [
            o for o in outcomes if o.error is not None or o.result in ("mismatch", "missing")
        ]
        if not failures:
            return
        first = failures[0]
        if first.error is not None:
            err = first.error
        elif first.result == "mismatch":
            err = TransferError(
                ExitCode.CHECKSUM,
                f"checksum mismatch: {first.local_path} differs from {first.key} "
                f"({first.note}); upload it again, or download the object to compare",
            )
        else:
            err = TransferError(
                ExitCode.NOT_FOUND, f"not found: {first.key} (no such object; upload it first)"
            )
        if len(failures) > 1:
            err = replace(err, message=f"{err.message} (and {len(failures) - 1} more failure(s))")
        raise err


def _origin(e: checksums.Expected) -> str:
    if e.source == "manifest":
        return "this host's custody manifest recorded (S3 verified it at upload)"
    return "S3 stored" if e.source == "s3" else "the uploader recorded"


def part_size_for(size: int, preferred: int) -> int:
    """``preferred``, grown in whole MiB when the file would need more than 10,000 parts."""
    from partner_transfer.profile import MAX_PARTS, MIB

    if size <= preferred * MAX_PARTS:
        return preferred
    needed = -(-size // MAX_PARTS)
    return -(-needed // MIB) * MIB


def _batch_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def _order_of(
    small: Sequence[tuple[str, str, Any]], large: Sequence[tuple[str, str, Any]]
) -> Callable[[Outcome], int]:
    order = {key: i for i, (_, key, _) in enumerate([*small, *large])}
    return lambda o: order.get(o.key, len(order))
