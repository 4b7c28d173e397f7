"""Uploads: plan (local files to keys, refused locally before any request), send (one
PutObject per small file, a resumable multipart upload per large one), and the commit marker."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partner_transfer import checksums, engine, keys, s3args
from partner_transfer.batch import Batches, LargeWork, Run, SmallWork
from partner_transfer.checksums import ALGORITHM
from partner_transfer.errors import ExitCode, TransferError
from partner_transfer.manifest import BATCH_FOLDER, Record, batch_manifest, utc_now
from partner_transfer.profile import MAX_PARTS, MIB
from partner_transfer.remote import Remote
from partner_transfer.results import FileResult

if TYPE_CHECKING:
    from partner_transfer.context import Connection


def part_size_for(size: int, preferred: int) -> int:
    """``preferred``, grown in whole MiB when the file would need more than 10,000 parts."""
    if size <= preferred * MAX_PARTS:
        return preferred
    needed = -(-size // MAX_PARTS)
    return -(-needed // MIB) * MIB


@dataclass(frozen=True)
class FileState:
    """What must stay the same from the start to the end of a file's upload."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileState:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)

    def difference(self, now: FileState) -> str:
        """How ``now`` differs from this state, for messages ("" when it does not)."""
        if now.inode != self.inode:
            return "it was replaced by another file"
        if now.size != self.size:
            return f"{self.size} bytes when it started, {now.size} bytes at the end"
        if now.mtime_ns != self.mtime_ns:
            return "it was modified"
        return ""


def read_whole(path: Path) -> tuple[bytes, FileState]:
    """The whole content of a regular file and its state when reading began; refuses a file
    that changed while it was being read (it grew, shrank, or was modified)."""
    # O_NONBLOCK: a path that became a FIFO after planning must not block the open.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise keys.refused(f"{path} is not a regular file; not sent")
        start = FileState.of(st)
        chunks = []
        while block := os.read(fd, max(st.st_size, 65536)):
            chunks.append(block)
        data = b"".join(chunks)
        end = FileState.of(os.fstat(fd))
    finally:
        os.close(fd)
    detail = start.difference(end) or (
        "" if len(data) == start.size else f"{start.size} bytes when it started, {len(data)} read"
    )
    if detail:
        raise engine.changed(path, detail)
    return data, start


def put_small(conn: Connection, key: str, data: bytes, checksum: str) -> engine.Uploaded:
    """One PutObject (through the CRT) with SSE-KMS, owner and the CRC64NVME S3 verifies."""
    resp = conn.crt.request(
        "PutObject",
        "PUT",
        key,
        headers=s3args.put_object_headers(conn.target, checksum),
        body=data,
    ).result()
    returned = resp.headers.get(f"x-amz-checksum-{ALGORITHM.lower()}")
    if returned and returned != checksum:
        raise TransferError(
            ExitCode.CHECKSUM,
            f"checksum mismatch: S3 stored {returned} for {key}, the file's CRC64NVME is "
            f"{checksum}; re-run the upload",
        )
    conn.reporter.advance(len(data))
    return engine.Uploaded(resp.headers.get("x-amz-version-id"), resp.headers.get("etag"))


def unchanged_since(path: Path, start: FileState) -> str:
    """ "" if ``path`` is still in ``start``'s state, else how it differs."""
    try:
        return start.difference(FileState.of(os.stat(path)))
    except FileNotFoundError:
        return "it was deleted"


@dataclass(frozen=True)
class UploadItem:
    local: keys.LocalFile
    key: str
    size: int


class Uploads:
    """Upload and sync-up for one connection."""

    def __init__(self, conn: Connection, batches: Batches, remote: Remote) -> None:
        self._conn = conn
        self._batches = batches
        self._remote = remote

    def plan(self, paths: Sequence[Path], to: str | None = None) -> list[UploadItem]:
        """Map local files to keys under ``to`` (default: the inbound prefix); refuse locally
        keys outside the allowed prefixes and two files mapping to one key. Entries that are
        not regular files are left out (see :meth:`plan_with_refusals`)."""
        return self.plan_with_refusals(paths, to)[0]

    def plan_with_refusals(
        self, paths: Sequence[Path], to: str | None = None
    ) -> tuple[list[UploadItem], list[FileResult]]:
        """The files to send, and one ``refused`` result per entry a local rule keeps out (not
        a regular file, a symlink loop, a dangling symlink)."""
        conn = self._conn
        allowed = conn.profile.upload_prefixes
        prefix = keys.check_prefix(
            to if to is not None else (allowed or ("",))[0], allowed, "upload"
        )
        files = keys.select_files(paths, conn.options.include, conn.options.exclude)
        items: list[UploadItem] = []
        refused: list[FileResult] = []
        seen: dict[str, Path] = {}
        for f in files:
            key = keys.check_key(keys.upload_key(prefix, f.relative), allowed, "upload")
            if f.refusal is not None:
                err = keys.refused(f"{f.path} is {f.refusal}")
                refused.append(FileResult("upload", str(f.path), key, "refused", error=err))
                continue
            if key in seen:
                raise keys.refused(f"{f.path} and {seen[key]} would both be uploaded as {key}")
            seen[key] = f.path
            items.append(UploadItem(f, key, f.path.stat().st_size))
        return items, refused

    def upload(
        self, paths: Sequence[Path], to: str | None = None, *, skip_identical: bool = False
    ) -> list[FileResult]:
        """Upload files and directories under ``to`` (default: the inbound prefix).

        ``skip_identical`` (default False; True for sync) skips files whose object already has
        the same full-object checksum.
        """
        conn = self._conn
        items, refused = self.plan_with_refusals(paths, to)
        if conn.options.dry_run:
            return self._dry_run(items, refused, skip_identical)
        conn.preflight.run()
        existing = self._existing_sizes(items) if skip_identical else {}

        def small_work(item: UploadItem) -> Callable[[], FileResult]:
            return lambda: self._small(item, skip_identical, existing)

        def large_work(item: UploadItem) -> Callable[[ThreadPoolExecutor, Run], FileResult]:
            return lambda pool, run: self._large(item, pool, run, skip_identical, existing)

        part_size = conn.part_size
        small: list[SmallWork] = [
            (str(i.local.path), i.key, small_work(i)) for i in items if i.size <= part_size
        ]
        large: list[LargeWork] = [
            (str(i.local.path), i.key, large_work(i)) for i in items if i.size > part_size
        ]
        results = self._batches.run(
            "upload",
            small,
            large,
            refused=refused,
            total_bytes=sum(i.size for i in items),
            description=f"upload {len(items)} file(s)",
        )
        if (
            conn.options.commit_manifest
            and results
            and all(r.result in ("ok", "skipped") for r in results)
        ):
            results.append(self._commit_marker(results, to))
        return results

    def _existing_sizes(self, items: Sequence[UploadItem]) -> dict[str, int] | None:
        """Sizes of objects already under the batch's prefixes (``None`` if listing is denied:
        then every file is checked with HEAD)."""
        # S3 prefixes are plain string prefixes, so a character-wise common prefix is exact.
        prefixes = {os.path.commonprefix([i.key for i in items])} if items else set()  # noqa: RUF071
        sizes: dict[str, int] = {}
        try:
            for prefix in prefixes:
                for obj in self._remote.objects(prefix):
                    sizes[obj["Key"]] = int(obj["Size"])
        except TransferError as err:
            if err.code is ExitCode.ACCESS_DENIED:
                return None
            raise
        return sizes

    def _identical_remote(
        self, item: UploadItem, crc: str, existing: dict[str, int] | None
    ) -> dict[str, Any] | None:
        """The HEAD of the object if it already holds exactly this file, else ``None``."""
        if existing is not None and existing.get(item.key) != item.size:
            return None
        found = self._remote.stored_checksums(item.key)
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

    def _skipped(self, item: UploadItem, crc: str, head: dict[str, Any]) -> FileResult:
        return FileResult(
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

    def _small(
        self, item: UploadItem, skip_identical: bool, existing: dict[str, int] | None
    ) -> FileResult:
        conn = self._conn
        _, run = self._batches.active()
        path = item.local.path
        data, start = read_whole(path)
        crc = checksums.encode_int(checksums.crc64nvme(data))
        if skip_identical and (head := self._identical_remote(item, crc, existing)) is not None:
            conn.reporter.advance(len(data))
            return self._skipped(item, crc, head)
        if run.stop.is_set():
            raise engine.Stopped()
        up = put_small(conn, item.key, data, crc)
        if detail := unchanged_since(path, start):
            # A single request cannot be taken back, and partners may not delete under
            # inbound/: say which version holds the incomplete copy.
            version = f" (version {up.version_id})" if up.version_id else ""
            raise TransferError(
                ExitCode.CHANGED,
                f"{path} changed while it was being uploaded ({detail}): "
                f"s3://{conn.profile.bucket}/{item.key}{version} holds the content from when "
                "the upload started and is not recorded as uploaded; upload the file again "
                "when it is complete",
            )
        return FileResult(
            "upload", str(path), item.key, "ok", len(data), crc, ALGORITHM, up.version_id
        )

    def _large(
        self,
        item: UploadItem,
        pool: ThreadPoolExecutor,
        run: Run,
        skip_identical: bool,
        existing: dict[str, int] | None,
    ) -> FileResult:
        conn = self._conn
        path = item.local.path
        part_size = part_size_for(item.size, conn.part_size)
        start = FileState.of(os.stat(path))
        digest = checksums.digest_file(path, part_size)
        if detail := unchanged_since(path, start) or (
            "" if digest.size == start.size else "it changed size while it was being hashed"
        ):
            raise engine.changed(path, detail)

        def unchanged() -> None:
            if detail := unchanged_since(path, start):
                raise engine.changed(path, detail)

        if (
            skip_identical
            and (head := self._identical_remote(item, digest.checksum, existing)) is not None
        ):
            conn.reporter.advance(digest.size)
            return self._skipped(item, digest.checksum, head)
        up = engine.upload_multipart(
            conn.engine(pool, run), item.key, path, digest, start.mtime_ns, unchanged
        )
        note = f"resumed: {up.resumed_parts} part(s) already stored" if up.resumed_parts else ""
        if not up.server_confirmed:
            note = (note + "; " if note else "") + "server did not report its checksum"
        return FileResult(
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

    def _commit_marker(self, results: list[FileResult], to: str | None) -> FileResult:
        conn = self._conn
        allowed = conn.profile.upload_prefixes
        prefix = keys.check_prefix(to if to is not None else allowed[0], allowed, "upload")
        batch_id = self._batches.last_batch_id
        key = f"{prefix}{BATCH_FOLDER}{batch_id}.json"
        records = [
            Record(
                time="",
                batch_id=batch_id,
                direction="upload",
                local_path=r.local_path,
                bucket=conn.profile.bucket,
                key=r.key,
                version_id=r.version_id,
                size=r.size,
                checksum=r.checksum,
                checksum_algorithm=r.algorithm,
                kms_key_arn=None,
                caller_arn=None,
                result=r.result,
            )
            for r in results
        ]
        body = batch_manifest(batch_id, records, caller_arn=conn.caller_arn, created_at=utc_now())
        crc = checksums.encode_int(checksums.crc64nvme(body))
        try:
            up = put_small(conn, key, body, crc)
        except Exception as exc:
            err = conn.classify(exc, "upload", key)
            return FileResult("upload", "(batch manifest)", key, "failed", error=err)
        result = FileResult(
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
        self._batches.record_alone(result, batch_id)
        return result

    def _dry_run(
        self, items: Sequence[UploadItem], refused: Sequence[FileResult], skip_identical: bool
    ) -> list[FileResult]:
        conn = self._conn
        results = list(refused)
        for refusal in refused:
            conn.emit(refusal)
        existing = self._existing_sizes(items) if skip_identical and items else {}
        for item in items:
            plan = "would-upload"
            if skip_identical:
                crc = checksums.digest_file(
                    item.local.path, part_size_for(item.size, conn.part_size)
                ).checksum
                if self._identical_remote(item, crc, existing) is not None:
                    plan = "would-skip"
            planned = FileResult("upload", str(item.local.path), item.key, plan, item.size)
            results.append(planned)
            conn.emit(planned)
        return results
