"""The transfer engine: resumable multipart uploads, and the temporary-file discipline of
downloads.

Uploads above one part drive CreateMultipartUpload/UploadPart/ListParts/CompleteMultipartUpload
as single requests through the CRT (:class:`~partner_transfer.crt.CrtS3`), because resuming
needs the upload id and the parts S3 already holds: boto3's transfer manager keeps neither, and
the CRT's own multipart upload exposes no resume token in aws-crt-python (0.38), nor could one
survive a killed process. Each part is read from the file straight into the CRT's send buffer
and hashed as it is read (:class:`PartReader`). Downloads (see
:mod:`partner_transfer.download`) write into a private temporary file from :func:`temp_file`
and are renamed into place only when verified.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partner_transfer import checksums, journal, s3args
from partner_transfer.checksums import ALGORITHM, Expected, FileDigest
from partner_transfer.errors import ExitCode, TransferError, is_client_error, local_io_error
from partner_transfer.keys import TEMP_SUFFIX
from partner_transfer.manifest import utc_now

if TYPE_CHECKING:
    from partner_transfer.crt import CrtS3


class Stopped(Exception):
    """Raised inside workers once the batch has been told to stop."""


@dataclass
class Engine:
    """Shared state for one run: the CRT S3 client, the bucket side, the pool and a stop flag.

    ``fsync`` (default True) flushes downloads to disk before the rename, so a crash never
    leaves a short file under the final name.
    """

    s3: CrtS3
    target: s3args.Target
    pool: ThreadPoolExecutor
    state_dir: Path
    advance: Callable[[int], None]
    stop: threading.Event
    fsync: bool = True

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped()


@dataclass(frozen=True)
class Uploaded:
    version_id: str | None
    etag: str | None
    resumed_parts: int = 0
    server_confirmed: bool = True


def _error_code(exc: BaseException) -> str:
    """The S3 error code of a ``ClientError``; "" for anything else."""
    if not is_client_error(exc):
        return ""
    return str(exc.response.get("Error", {}).get("Code", ""))  # type: ignore[attr-defined]


def _run_all(engine: Engine, tasks: list[Callable[[], None]]) -> None:
    """Run ``tasks`` on the pool; on the first failure stop the rest and re-raise it."""
    futures: list[Future[None]] = [engine.pool.submit(t) for t in tasks]
    done, pending = wait(futures, return_when=FIRST_EXCEPTION)
    failed = [f for f in done if f.exception() is not None]
    if failed:
        for f in pending:
            f.cancel()
        wait(pending)
        errors = [f.exception() for f in futures if f.done() and not f.cancelled()]
        real = [e for e in errors if e is not None and not isinstance(e, Stopped)]
        first = failed[0].exception()
        raise real[0] if real else (first or Stopped())


# -- uploads ------------------------------------------------------------------------------------


def _stored_parts(engine: Engine, key: str, upload_id: str) -> dict[int, dict[str, Any]]:
    return engine.s3.list_parts(key, upload_id, engine.target.bucket_owner)


def abort_quietly(engine: Engine, key: str, upload_id: str) -> bool:
    """Abort an upload; True if S3 no longer holds it (aborted now or already gone)."""
    try:
        engine.s3.abort_multipart_upload(key, upload_id, engine.target.bucket_owner)
    except Exception as exc:
        if not is_client_error(exc):
            raise
        return _error_code(exc) in ("NoSuchUpload", "404")
    return True


def _reusable(
    jr: journal.Journal, stored: dict[int, dict[str, Any]], digest: FileDigest
) -> set[int]:
    """Parts recorded in the journal that S3 still holds with the same ETag, size and CRC."""
    ranges = checksums.part_ranges(digest.size, digest.part_size)
    keep: set[int] = set()
    for number, rec in jr.parts.items():
        s = stored.get(number)
        if s is None or not 1 <= number <= len(ranges):
            continue
        stored_crc = s.get(f"Checksum{ALGORITHM}")
        if (
            s.get("ETag") == rec.etag
            and int(s.get("Size", -1)) == ranges[number - 1][1]
            and rec.checksum == digest.part_checksums[number - 1]
            and stored_crc in (None, rec.checksum)
        ):
            keep.add(number)
    return keep


def _open_journal(
    engine: Engine, key: str, path: Path, digest: FileDigest, mtime_ns: int
) -> tuple[journal.Journal, set[int], bool]:
    """Resume the journaled upload for this file if it is still valid, else start a new one.

    Returns the journal, the part numbers S3 already holds, and whether the server said it
    tracks the checksum (a resumed upload is assumed to, as S3 does).
    """
    local = str(path.resolve())
    identity = journal.UploadIdentity(
        bucket=engine.target.bucket,
        key=key,
        local_path=local,
        size=digest.size,
        mtime_ns=mtime_ns,
        checksum=digest.checksum,
        part_size=digest.part_size,
    )
    jpath = journal.journal_path(engine.state_dir, engine.target.bucket, key, local)
    old = journal.load(jpath)
    if old is not None:
        if old.identity == identity:
            try:
                stored = _stored_parts(engine, key, old.upload_id)
            except Exception as exc:
                if _error_code(exc) not in ("NoSuchUpload", "404"):
                    raise
            else:
                keep = _reusable(old, stored, digest)
                old.parts = {n: p for n, p in old.parts.items() if n in keep}
                return old, keep, True
        else:
            # The file (or part size) changed since the interrupted run: its parts are useless.
            abort_quietly(engine, old.identity.key, old.upload_id)
        old.remove()
    upload_id, algorithm = engine.s3.create_multipart_upload(
        key, s3args.create_multipart_headers(engine.target, digest.checksum)
    )
    tracks = algorithm == ALGORITHM
    return journal.create(jpath, identity, upload_id, utc_now()), set(), tracks


def changed(path: Path, detail: str) -> TransferError:
    """The error for a local file that changed while it was being uploaded."""
    return TransferError(
        ExitCode.CHANGED,
        f"{path} changed while it was being uploaded ({detail}): not uploaded, nothing was "
        "completed under its key; re-run when the file is complete",
    )


class PartReader:
    """The bytes of one part, read from the file straight into the CRT's send buffer (one copy,
    the GIL released) and hashed as they pass, while they are hot in the CPU's caches.

    The CRT reads a part once, before sending it (and keeps it for retries). When the last byte
    is read, the part's CRC64NVME is compared with the one taken before the upload started and
    sent in the request's header: a part that differs (or a file that shrank) fails the read,
    so the CRT never sends it, and :attr:`changed` says why the request failed. This replaces
    a second read of each part into Python and a second pass to hash it.
    """

    def __init__(self, fd: int, offset: int, length: int, expected: str) -> None:
        self._fd = fd
        self._offset = offset
        self._length = length
        self._expected = expected
        self._pos = 0
        self._crc = 0
        self.changed = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._length - self._pos)
        got = 0
        while got < want:
            n = os.preadv(self._fd, [view[got:want]], self._offset + self._pos + got)
            if n == 0:
                break  # the file is shorter than when the upload started
            got += n
        self._crc = checksums.crc64nvme_update(view[:got], self._crc)
        self._pos += got
        if got < want or (
            self._pos == self._length and checksums.encode_int(self._crc) != self._expected
        ):
            self.changed = True
            raise OSError("the part differs from when the upload started")
        return got

    def read(self, size: int = -1) -> bytes:
        buf = bytearray(self._length - self._pos if size < 0 else size)
        return bytes(buf[: self.readinto(buf)])

    def seek(self, offset: int, whence: int = 0) -> int:
        """Only back to the start (a retry that reads again hashes again)."""
        if offset != 0 or whence != 0:
            raise OSError("a part can only be read again from its start")
        self._pos, self._crc = 0, 0
        return 0


def upload_multipart(
    engine: Engine,
    key: str,
    path: Path,
    digest: FileDigest,
    mtime_ns: int,
    unchanged: Callable[[], None],
) -> Uploaded:
    """Upload ``path`` in parts, resuming a journaled upload of the same file if there is one.

    Each part is hashed as it is read for sending (:class:`PartReader`); a part whose CRC
    differs from the digest taken before the upload means the file is changing. ``unchanged``
    raises if the file's size or modification time differ from when the upload started; it
    runs before the upload is completed. A changed file stops the upload: it is aborted (S3
    keeps nothing) and its journal removed.
    """
    jr, keep, tracks_checksum = _open_journal(engine, key, path, digest, mtime_ns)
    try:
        return _send_parts(engine, key, path, digest, jr, keep, tracks_checksum, unchanged)
    except TransferError as err:
        if err.code is ExitCode.CHANGED:
            abort_quietly(engine, key, jr.upload_id)
            jr.remove()
        raise


def _send_parts(
    engine: Engine,
    key: str,
    path: Path,
    digest: FileDigest,
    jr: journal.Journal,
    keep: set[int],
    tracks_checksum: bool,
    unchanged: Callable[[], None],
) -> Uploaded:
    ranges = checksums.part_ranges(digest.size, digest.part_size)
    engine.advance(sum(ranges[n - 1][1] for n in keep))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:

        def send(number: int, counted: bool = True) -> Callable[[], None]:
            offset, length = ranges[number - 1]
            expected = digest.part_checksums[number - 1]

            def task() -> None:
                engine.check_stop()
                reader = PartReader(fd, offset, length, expected)
                try:
                    resp = engine.s3.upload_part(
                        key,
                        jr.upload_id,
                        number,
                        reader,  # type: ignore[arg-type]  # readinto is all the CRT uses
                        length,
                        s3args.upload_part_headers(engine.target, expected),
                    ).result()
                except Exception:
                    if reader.changed:
                        raise changed(
                            path, f"part {number} differs from when the upload started"
                        ) from None
                    raise
                jr.record(journal.PartRecord(number, resp.headers["etag"], expected))
                if counted:
                    engine.advance(length)

            return task

        _run_all(engine, [send(n) for n in range(1, len(ranges) + 1) if n not in keep])
        engine.check_stop()
        unchanged()
        try:
            resp = _complete(engine, key, digest, jr)
        except Exception as exc:
            if _error_code(exc) != "InvalidPart":
                raise
            # S3 holds a part other than the one this run sent. The usual cause: a part the
            # interrupted run still had in flight reached S3 after this run sent it again
            # (under SSE-KMS a part's ETag is not its MD5, so even the same bytes get a new
            # one). Ask S3 what it holds, send again every part it does not hold as this run
            # recorded it, and complete again. A second refusal is an error; the journal
            # stays, so the next run resumes.
            resend = _reconcile_parts(engine, key, digest, jr)
            _run_all(engine, [send(n, counted=False) for n in sorted(resend)])
            engine.check_stop()
            unchanged()
            resp = _complete(engine, key, digest, jr)
    finally:
        os.close(fd)
    jr.remove()
    confirmed = _confirm_stored_checksum(engine, key, resp, digest.checksum, tracks_checksum)
    return Uploaded(resp.get("VersionId"), resp.get("ETag"), len(keep), confirmed)


def _complete(
    engine: Engine, key: str, digest: FileDigest, jr: journal.Journal
) -> dict[str, Any]:
    parts = [(n, p.etag, p.checksum) for n, p in jr.parts.items()]
    return engine.s3.complete_multipart_upload(
        key,
        jr.upload_id,
        s3args.complete_multipart_headers(engine.target, digest.checksum, digest.size),
        s3args.complete_multipart_body(parts),
    )


def _reconcile_parts(
    engine: Engine, key: str, digest: FileDigest, jr: journal.Journal
) -> set[int]:
    """Keep in the journal only the parts S3 holds as this run recorded them (same ETag, size
    and CRC64NVME); return the numbers of all the others, to be sent again."""
    keep = _reusable(jr, _stored_parts(engine, key, jr.upload_id), digest)
    jr.parts = {n: p for n, p in jr.parts.items() if n in keep}
    count = len(checksums.part_ranges(digest.size, digest.part_size))
    return set(range(1, count + 1)) - keep


def _confirm_stored_checksum(
    engine: Engine, key: str, resp: dict[str, Any], checksum: str, tracks_checksum: bool
) -> bool:
    """Compare S3's full-object checksum with the file's; True if S3 reported one and it matched.

    S3 returns it from CompleteMultipartUpload. A server that acknowledged the checksum
    algorithm when the upload was created but does not return it there is asked once (HEAD);
    one that never acknowledged it cannot confirm anything and is not asked.
    """
    stored = resp.get(f"Checksum{ALGORITHM}")
    if stored is None and tracks_checksum:
        from partner_transfer.crt import head_fields

        try:
            answer = engine.s3.request(
                "HeadObject", "HEAD", key, headers=s3args.read_object_headers(engine.target)
            ).result()
        except Exception as exc:
            if not is_client_error(exc):
                raise
            return False  # e.g. a write-only partner may not read inbound/: S3 verified it anyway
        head = head_fields(answer.headers)
        if (
            head.get("VersionId")
            and resp.get("VersionId")
            and head["VersionId"] != resp["VersionId"]
        ):
            return False  # overwritten meanwhile: nothing to compare
        found = [e for e in checksums.expected_checksums(head) if e.source == "s3"]
        stored = next((e.value for e in found if e.algorithm == ALGORITHM), None)
    if stored is None:
        return False
    if stored != checksum:
        raise TransferError(
            ExitCode.CHECKSUM,
            f"checksum mismatch: S3 assembled s3://{engine.target.bucket}/{key} with CRC64NVME "
            f"{stored} but the file's is {checksum}; re-run the upload",
        )
    return True


# -- downloads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Downloaded:
    version_id: str | None
    size: int
    checksum: str  # the verified value (of ``algorithm``)
    algorithm: str
    verified_against: str  # "s3", "metadata", or "none" (unverified, only when allowed)


def write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset``. A full disk first shortens a write and only fails
    the next one, so a single ``pwrite`` can silently drop the tail."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


@contextlib.contextmanager
def temp_file(final: Path) -> Iterator[tuple[int, Path]]:
    """A private (0600) temporary file beside ``final`` (whose folder must exist); removed
    unless renamed into place. A local file-system failure inside (disk full, a folder where
    the file should go, ...) becomes one ``LOCAL_IO`` error naming ``final``."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=TEMP_SUFFIX, dir=final.parent)
    except OSError as exc:
        raise local_io_error(exc, final.parent) from None
    tmp = Path(name)
    try:
        yield fd, tmp
    except TransferError:
        raise
    except (ConnectionError, TimeoutError):
        raise
    except OSError as exc:
        raise local_io_error(exc, final) from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        tmp.unlink(missing_ok=True)


def check(
    key: str, expected: list[Expected], actual: dict[str, str], allow_unverified: bool
) -> tuple[str, str, str]:
    """(algorithm, value, source) of the check that passed, or raise on any mismatch."""
    for e in expected:
        if actual.get(e.algorithm) != e.value:
            raise TransferError(
                ExitCode.CHECKSUM,
                f"checksum mismatch for {key}: received bytes have {e.algorithm} "
                f"{actual.get(e.algorithm)}, the {'stored' if e.source == 's3' else 'recorded'} "
                f"value is {e.value}; nothing was written under the final name; re-run the "
                "download",
            )
    if not expected:
        if not allow_unverified:
            raise TransferError(
                ExitCode.CHECKSUM,
                f"{key} has no full-object checksum to verify against (uploaded by another tool "
                "with a composite or no checksum); ask the sender to re-upload it with "
                "partner-transfer, or pass --allow-unverified",
            )
        return ALGORITHM, actual[ALGORITHM], "none"
    first = expected[0]
    return first.algorithm, first.value, first.source


def algorithms(expected: list[Expected]) -> list[str]:
    names = [ALGORITHM] + [e.algorithm for e in expected]
    return list(dict.fromkeys(names))


def _finish(engine: Engine, fd: int, tmp: Path, final: Path) -> None:
    if engine.fsync:
        os.fsync(fd)
    os.replace(tmp, final)
