"""The Python API: :class:`Client` runs upload, download, sync, verify, ls, cleanup and the
receipts check.

Each method plans first (every key and destination is checked locally, nothing is sent if a
rule for the whole command is broken), then transfers on one thread pool, appends one custody
record per transfer, and returns one :class:`~partner_transfer.results.FileResult` per file.
Failures of a single file (checksum mismatch, missing object, a file a local rule kept out) are
recorded and the batch goes on; failures that would repeat for every file (credentials,
access, region, network) stop the batch. :meth:`Client.raise_for` turns a batch's failures
into one :class:`~partner_transfer.errors.TransferError` with the first failure's exit code.

The work itself lives in one module per seam: :mod:`~partner_transfer.preflight`,
:mod:`~partner_transfer.batch`, :mod:`~partner_transfer.upload`,
:mod:`~partner_transfer.download`, :mod:`~partner_transfer.verify`,
:mod:`~partner_transfer.cleanup` and :mod:`~partner_transfer.receipt_check`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partner_transfer.batch import Batches
from partner_transfer.context import Connection
from partner_transfer.options import Options
from partner_transfer.profile import Profile
from partner_transfer.remote import Remote
from partner_transfer.results import FileResult, batch_error

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from partner_transfer.clients import Clients
    from partner_transfer.download import DownloadItem, Downloads
    from partner_transfer.progress import Reporter
    from partner_transfer.receipts import Report
    from partner_transfer.upload import UploadItem, Uploads

__all__ = ["Client", "FileResult", "Options"]


def __getattr__(name: str) -> Any:
    # part_size_for lives with the uploads, which a command imports only when it uploads.
    if name == "part_size_for":
        from partner_transfer.upload import part_size_for

        return part_size_for
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Client:
    """Transfers for one connection profile.

    ``clients`` (default: built from the profile by
    :func:`~partner_transfer.clients.make_clients`, the one seam) and ``reporter`` (default: no
    progress output) can be injected; ``on_outcome`` is called with each file's result as it
    finishes. The caller's ARN and the bucket's region are checked once, before the first
    transfer.
    """

    def __init__(
        self,
        profile: Profile,
        options: Options | None = None,
        *,
        clients: Clients | None = None,
        reporter: Reporter | None = None,
        on_outcome: Callable[[FileResult], None] | None = None,
    ) -> None:
        self.profile = profile
        self.options = options or Options()
        self._conn = Connection(
            profile, self.options, clients=clients, reporter=reporter, on_result=on_outcome
        )
        self._remote = Remote(self._conn)
        self._batches = Batches(self._conn)
        self._uploads_: Uploads | None = None
        self._downloads_: Downloads | None = None

    # Each command imports only the modules it uses (start-up is part of every command's time).
    @property
    def _uploads(self) -> Uploads:
        if self._uploads_ is None:
            from partner_transfer.upload import Uploads

            self._uploads_ = Uploads(self._conn, self._batches, self._remote)
        return self._uploads_

    @property
    def _downloads(self) -> Downloads:
        if self._downloads_ is None:
            from partner_transfer.download import Downloads

            self._downloads_ = Downloads(self._conn, self._batches, self._remote)
        return self._downloads_

    @property
    def clients(self) -> Clients:
        return self._conn.clients

    @property
    def concurrency(self) -> int:
        return self._conn.concurrency

    @property
    def part_size(self) -> int:
        return self._conn.part_size

    @property
    def state_dir(self) -> Path:
        return self._conn.state_dir

    @property
    def manifest_path(self) -> Path:
        return self._conn.manifest_path

    def caller_arn(self) -> str:
        """The caller's ARN from STS GetCallerIdentity (also proves the credentials work)."""
        return self._conn.preflight.caller_arn()

    def preflight(self) -> None:
        """Check credentials and that the bucket is where the profile says."""
        self._conn.preflight.run()

    def plan_upload(self, paths: Sequence[Path], to: str | None = None) -> list[UploadItem]:
        """Local files and the keys they would be uploaded as (see :meth:`upload`)."""
        return self._uploads.plan(paths, to)

    def upload(
        self, paths: Sequence[Path], to: str | None = None, *, skip_identical: bool = False
    ) -> list[FileResult]:
        """Upload files and directories under ``to`` (default: the inbound prefix).

        ``skip_identical`` (default False; True for sync) skips files whose object already has
        the same full-object checksum.
        """
        return self._uploads.upload(paths, to, skip_identical=skip_identical)

    def plan_download(self, source: str, dest: Path) -> list[DownloadItem]:
        """Objects under ``source`` and where they would land (see :meth:`download`)."""
        return self._downloads.plan(source, dest)

    def download(
        self, source: str, dest: Path, *, skip_identical: bool = False
    ) -> list[FileResult]:
        """Download a key or a prefix to ``dest``, verifying every file before it appears.

        ``skip_identical`` (default False; True for sync) keeps local files whose content has
        the object's stored checksum.
        """
        return self._downloads.download(source, dest, skip_identical=skip_identical)

    def verify(self, paths: Sequence[Path], prefix: str | None = None) -> list[FileResult]:
        """Compare local files with the checksums S3 stored, without downloading."""
        from partner_transfer import verify

        return verify.verify(self._conn, self._remote, paths, prefix)

    def ls(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """Objects under ``prefix`` (default: every allowed prefix): key, size, last modified."""
        from partner_transfer import keys

        allowed = self.profile.upload_prefixes + self.profile.download_prefixes
        prefixes = (
            [keys.check_prefix(prefix, allowed, "list")] if prefix is not None else list(allowed)
        )
        self.preflight()
        return [obj for p in prefixes for obj in self._remote.objects(p)]

    def cleanup(self, *, remote: bool = False, older_than_days: float = 0) -> list[str]:
        """Abandon interrupted uploads (see :func:`partner_transfer.cleanup.cleanup`)."""
        from partner_transfer import cleanup

        return cleanup.cleanup(self._conn, remote=remote, older_than_days=older_than_days)

    def check_receipts(
        self,
        public_keys: Sequence[ec.EllipticCurvePublicKey],
        *,
        grace: timedelta = timedelta(minutes=60),
        since: datetime | None = None,
        now: datetime | None = None,
    ) -> Report:
        """Read the exchange's receipts under ``receipts/``, verify each signature offline with
        ``public_keys`` (:func:`partner_transfer.receipts.load_public_key`), and match them with
        this host's custody manifest: see :func:`partner_transfer.receipt_check.check`.
        ``grace`` (default 60 minutes): how long an upload may wait for its receipt;
        ``since`` (default: all): only uploads at or after it; ``now`` (default: the clock)."""
        from partner_transfer import receipt_check

        return receipt_check.check(
            self._conn, public_keys, now=now or datetime.now(UTC), grace=grace, since=since
        )

    @staticmethod
    def raise_for(results: Sequence[FileResult]) -> None:
        """Raise the first failure's class, with a count when several files failed."""
        err = batch_error(results)
        if err is not None:
            raise err
