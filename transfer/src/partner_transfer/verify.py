"""Verify: compare local files with the checksums S3 stored, without downloading."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from partner_transfer import checksums, keys
from partner_transfer.errors import ExitCode, TransferError
from partner_transfer.remote import Remote
from partner_transfer.results import FileResult

if TYPE_CHECKING:
    from pathlib import Path

    from partner_transfer.context import Connection


def origin(e: checksums.Expected) -> str:
    """Where an expected checksum came from, for messages."""
    if e.source == "manifest":
        return "this host's custody manifest recorded (S3 verified it at upload)"
    return "S3 stored" if e.source == "s3" else "the uploader recorded"


def verify(
    conn: Connection, remote: Remote, paths: Sequence[Path], prefix: str | None = None
) -> list[FileResult]:
    """Compare local files with the checksums S3 stored, without downloading.

    Files map to keys as in upload, under ``prefix`` (default: the inbound prefix, else the
    outbound one). Results: match, mismatch, missing (no such object), or failed.
    """
    allowed = conn.profile.upload_prefixes + conn.profile.download_prefixes
    chosen = keys.check_prefix(prefix if prefix is not None else allowed[0], allowed, "verif")
    files = keys.select_files(paths, conn.options.include, conn.options.exclude)
    conn.preflight.run()
    results: list[FileResult] = []

    def one(f: keys.LocalFile) -> FileResult:
        key = keys.check_key(keys.upload_key(chosen, f.relative), allowed, "verif")
        if f.refusal is not None:
            err = keys.refused(f"{f.path} is {f.refusal}")
            return FileResult("verify", str(f.path), key, "refused", error=err)
        try:
            found = remote.stored_checksums(key)
            if found is None:
                return FileResult("verify", str(f.path), key, "missing")
            expected, head = found
            if not expected:
                reason = (
                    f"{key} cannot be read back (inbound is write-only) and this host's "
                    "custody manifest has no record of uploading it"
                    if head.get("unreadable")
                    else f"{key} has no full-object checksum to compare"
                )
                return FileResult(
                    "verify",
                    str(f.path),
                    key,
                    "failed",
                    error=TransferError(ExitCode.CHECKSUM, reason),
                )
            for e in expected:
                local = checksums.digest_path(f.path, e.algorithm)
                if local != e.value:
                    return FileResult(
                        "verify",
                        str(f.path),
                        key,
                        "mismatch",
                        f.path.stat().st_size,
                        local,
                        e.algorithm,
                        head.get("VersionId"),
                        note=f"{origin(e)} {e.algorithm} {e.value}",
                    )
            return FileResult(
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
            return FileResult(
                "verify", str(f.path), key, "failed", error=conn.classify(exc, "verify", key)
            )

    with ThreadPoolExecutor(conn.concurrency) as pool:
        for result in pool.map(one, files):
            results.append(result)
            conn.emit(result)
    return results
