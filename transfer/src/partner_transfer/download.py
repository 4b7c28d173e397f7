"""Downloads: plan (keys to local paths, refused locally before any request), fetch into a
private temporary file, verify against the stored checksum, then rename into place."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partner_transfer import checksums, crt, engine, keys, s3args
from partner_transfer.batch import Batches, LargeWork, Run, SmallWork
from partner_transfer.errors import ExitCode, TransferError, local_io_error
from partner_transfer.remote import Remote
from partner_transfer.results import FileResult

if TYPE_CHECKING:
    from partner_transfer.context import Connection


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents; a file in the way is a local I/O error naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        blocker = next(
            (p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder
        )
        raise local_io_error(OSError(errno.ENOTDIR, "Not a directory"), blocker) from exc
    except OSError as exc:
        raise local_io_error(exc, folder) from None


def get_small(
    conn: Connection, key: str, final: Path, *, allow_unverified: bool
) -> engine.Downloaded:
    """One GetObject (through the CRT) written straight into a private temporary file, which
    is then hashed from the page cache, checked against the object's full-object checksum,
    fsync'ed and renamed into place."""
    with engine.temp_file(final) as (fd, tmp):
        received = {"bytes": 0}
        failures: list[OSError] = []

        def write(chunk: bytes, offset: int) -> None:
            # Runs on the CRT's thread: keep the first local failure for this thread to raise.
            if failures:
                return
            try:
                engine.write_all(fd, chunk, offset)
            except OSError as exc:
                failures.append(exc)
                return
            received["bytes"] += len(chunk)
            conn.reporter.advance(len(chunk))

        resp = conn.crt.request(
            "GetObject",
            "GET",
            key,
            headers=s3args.read_object_headers(conn.target),
            on_body=write,
        ).result()
        if failures:
            raise failures[0]
        head = crt.head_fields(resp.headers)
        size = received["bytes"]
        if size != head.get("ContentLength", size):
            raise TransferError(ExitCode.NETWORK, f"short read for {key}; re-run the download")
        expected = checksums.expected_checksums(head)
        actual = {a: checksums.digest_path(tmp, a) for a in engine.algorithms(expected)}
        algorithm, value, source = engine.check(key, expected, actual, allow_unverified)
        if conn.options.fsync:
            os.fsync(fd)
        os.replace(tmp, final)
    return engine.Downloaded(head.get("VersionId"), size, value, algorithm, source)


def get_large(
    conn: Connection,
    key: str,
    final: Path,
    head: dict[str, Any],
    *,
    allow_unverified: bool,
    pool: ThreadPoolExecutor,
    run: Run,
) -> engine.Downloaded:
    """A large object in concurrent ranged GETs (:mod:`partner_transfer.ranged`), every range
    pinned to the HEAD's ETag, each chunk hashed and written into a private temporary file as
    it arrives; the object's CRC64NVME combined from the chunks' is checked against the
    full-object checksum (other algorithms, from other tools' uploads, are hashed from the page
    cache), then the file is fsync'ed and renamed into place."""
    size = int(head["ContentLength"])
    headers = dict(s3args.owner_header(conn.target))
    if head.get("ETag"):
        headers["If-Match"] = str(head["ETag"])
    expected = checksums.expected_checksums(head)
    with engine.temp_file(final) as (fd, tmp):
        crc = conn.ranged.download(
            key,
            fd,
            size,
            headers=headers,
            part_size=conn.part_size,
            pool=pool,
            connections=conn.concurrency,
            stop=run.stop,
            on_progress=conn.reporter.advance,
        )
        if os.fstat(fd).st_size != size:
            raise TransferError(ExitCode.NETWORK, f"short read for {key}; re-run the download")
        actual = {checksums.ALGORITHM: checksums.encode_int(crc)}
        others = [a for a in engine.algorithms(expected) if a not in actual]
        actual.update(checksums.digest_fd(fd, others) if others else {})
        algorithm, value, source = engine.check(key, expected, actual, allow_unverified)
        if conn.options.fsync:
            os.fsync(fd)
        os.replace(tmp, final)
    return engine.Downloaded(head.get("VersionId"), size, value, algorithm, source)


@dataclass(frozen=True)
class DownloadItem:
    key: str
    dest: Path
    size: int | None


class Downloads:
    """Download and sync-down for one connection."""

    def __init__(self, conn: Connection, batches: Batches, remote: Remote) -> None:
        self._conn = conn
        self._batches = batches
        self._remote = remote

    def source(self, source: str) -> tuple[str, bool]:
        """``source`` checked against the profile's download prefixes, before any request:
        (the normalized prefix, True) or (the key, False)."""
        allowed = self._conn.profile.download_prefixes
        if source and not source.endswith("/") and source + "/" in allowed:
            source += "/"
        if source == "" or source.endswith("/"):
            return keys.check_prefix(source or (allowed or ("",))[0], allowed, "download"), True
        return keys.check_key(source, allowed, "download"), False

    def plan(self, source: str, dest: Path | str) -> list[DownloadItem]:
        """Objects under ``source`` and their local paths; keys a local rule refuses are left
        out (see :meth:`plan_with_refusals`)."""
        return self.plan_with_refusals(source, dest)[0]

    def plan_with_refusals(
        self, source: str, dest: Path | str
    ) -> tuple[list[DownloadItem], list[FileResult]]:
        """Objects under ``source`` (a key, or a prefix ending in ``/``) and their local paths,
        and one ``refused`` result per object a local rule keeps out.

        A single key lands at ``dest``, or at ``dest/<name>`` when ``dest`` is a folder or ends
        with a separator (the folder is created, as ``aws s3 cp`` does); a prefix's objects land
        under ``dest`` by their names relative to the prefix. Keys outside the outbound prefix,
        names escaping ``dest`` and symlinks inside it are refused: for a prefix, each such
        object is reported and the others still transfer; a single key refused stops the
        command.
        """
        allowed = self._conn.profile.download_prefixes
        wants_folder = isinstance(dest, str) and dest.endswith(("/", os.sep))
        dest = Path(dest)
        checked, is_prefix = self.source(source)
        if is_prefix:
            prefix = checked
            items: list[DownloadItem] = []
            refused: list[FileResult] = []
            for obj in self._remote.objects(prefix):
                key = obj["Key"]
                if key.endswith("/"):
                    continue  # a "folder" marker, no data
                rel = keys.relative_to_prefix(key, prefix)
                try:
                    keys.check_key(key, allowed, "download")
                    final = keys.safe_destination(dest, rel)
                except TransferError as err:
                    where = str(dest / rel) if rel else str(dest)
                    refused.append(FileResult("download", where, key, "refused", error=err))
                    continue
                items.append(DownloadItem(key, final, int(obj["Size"])))
            if not items and not refused:
                raise TransferError(ExitCode.NOT_FOUND, f"no objects under {prefix}")
            return items, refused
        key = checked
        name = key.rsplit("/", 1)[-1]
        if wants_folder or dest.is_dir():
            final = keys.safe_destination(dest, name)
        else:
            final = keys.safe_destination(dest.parent, dest.name)
        return [DownloadItem(key, final, None)], []

    def download(
        self, source: str, dest: Path | str, *, skip_identical: bool = False
    ) -> list[FileResult]:
        """Download a key or a prefix to ``dest``, verifying every file before it appears.

        ``skip_identical`` (default False; True for sync) keeps local files whose content has
        the object's stored checksum.
        """
        conn = self._conn
        self.source(source)  # refuse locally, before any request
        if not conn.options.dry_run:
            conn.preflight.run()
        items, refused = self.plan_with_refusals(source, dest)
        if conn.options.dry_run:
            return self._dry_run(items, refused, skip_identical)
        for folder in sorted({item.dest.parent for item in items}):
            make_folder(folder)
        small: list[SmallWork] = []
        large: list[LargeWork] = []
        for item in items:
            if item.size is not None and item.size <= conn.part_size:
                small.append((str(item.dest), item.key, self._small_work(item, skip_identical)))
            else:
                large.append((str(item.dest), item.key, self._large_work(item, skip_identical)))
        try:
            return self._batches.run(
                "download",
                small,
                large,
                refused=refused,
                total_bytes=sum(i.size or 0 for i in items),
                description=f"download {len(items)} file(s)",
            )
        finally:
            conn.close_idle()

    def _not_found(self, key: str) -> TransferError:
        return TransferError(
            ExitCode.NOT_FOUND, f"not found: s3://{self._conn.profile.bucket}/{key}"
        )

    def _local_identical(
        self, item: DownloadItem
    ) -> tuple[FileResult | None, dict[str, Any] | None]:
        if not item.dest.is_file() or item.dest.is_symlink():
            return None, None
        found = self._remote.stored_checksums(item.key)
        if found is None:
            raise self._not_found(item.key)
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
        self._conn.reporter.advance(size)
        return FileResult(
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

    def _small_work(self, item: DownloadItem, skip: bool) -> Callable[[], FileResult]:
        def work() -> FileResult:
            if skip:
                same, _ = self._local_identical(item)
                if same is not None:
                    return same
            if self._batches.active()[1].stop.is_set():
                raise engine.Stopped()
            got = get_small(
                self._conn,
                item.key,
                item.dest,
                allow_unverified=self._conn.options.allow_unverified,
            )
            return self._downloaded(item, got)

        return work

    def _large_work(
        self, item: DownloadItem, skip: bool
    ) -> Callable[[ThreadPoolExecutor, Run], FileResult]:
        def work(pool: ThreadPoolExecutor, run: Run) -> FileResult:
            conn = self._conn
            head: dict[str, Any] | None = None
            if skip:
                same, head = self._local_identical(item)
                if same is not None:
                    return same
            if head is None:
                found = self._remote.stored_checksums(item.key)
                if found is None:
                    raise self._not_found(item.key)
                head = found[1]
            size = int(head["ContentLength"])
            allow = conn.options.allow_unverified
            if size <= conn.part_size:
                got = get_small(conn, item.key, item.dest, allow_unverified=allow)
            else:
                if run.stop.is_set():
                    raise engine.Stopped()
                got = get_large(
                    conn, item.key, item.dest, head, allow_unverified=allow, pool=pool, run=run
                )
            return self._downloaded(item, got)

        return work

    def _downloaded(self, item: DownloadItem, got: engine.Downloaded) -> FileResult:
        note = "" if got.verified_against == "s3" else f"verified against: {got.verified_against}"
        return FileResult(
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

    def _dry_run(
        self, items: Sequence[DownloadItem], refused: Sequence[FileResult], skip: bool
    ) -> list[FileResult]:
        results = list(refused)
        for refusal in refused:
            self._conn.emit(refusal)
        for item in items:
            plan = "would-download"
            if skip and self._local_identical(item)[0] is not None:
                plan = "would-skip"
            planned = FileResult("download", str(item.dest), item.key, plan, item.size)
            results.append(planned)
            self._conn.emit(planned)
        return results
