"""What a command returns: one :class:`FileResult` per file, and the rule that turns a batch's
failures into one error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from partner_transfer.errors import ExitCode, TransferError

# Results that count as failures for the exit code and the summary.
FAILED = "failed"
REFUSED = "refused"
FAILURE_RESULTS = frozenset({FAILED, REFUSED, "mismatch", "missing"})


@dataclass
class FileResult:
    """What happened to one file. ``result``: ok, skipped, failed, refused (a local rule kept
    the file out: not a regular file, a symlink loop, a key that would leave the destination),
    would-upload, would-download, would-skip, match, mismatch, missing (the last three from
    verify)."""

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

    @property
    def failed(self) -> bool:
        return self.error is not None or self.result in FAILURE_RESULTS


def batch_error(results: Sequence[FileResult]) -> TransferError | None:
    """The first failure's error, with a count when several files failed; ``None`` if none."""
    failures = [r for r in results if r.failed]
    if not failures:
        return None
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
    return err
