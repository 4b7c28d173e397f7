"""The batch runner shared by uploads and downloads: one thread pool, one custody record per
file, and a stop flag that the first failure repeating for every file (credentials, access,
region, network) raises for the rest."""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from partner_transfer import __version__, engine
from partner_transfer.errors import ExitCode, TransferError
from partner_transfer.manifest import ManifestWriter, Record, utc_now
from partner_transfer.results import FileResult

if TYPE_CHECKING:
    from partner_transfer.context import Connection

# Failures that would repeat for every other file: stop the batch at the first one.
FATAL = frozenset(
    {
        ExitCode.CONFIG,
        ExitCode.CREDENTIALS,
        ExitCode.ACCESS_DENIED,
        ExitCode.WRONG_REGION,
        ExitCode.NETWORK,
        ExitCode.INTERRUPTED,
    }
)
# Failures the preflight checks for: a remembered preflight must be redone after one.
FORGETS_PREFLIGHT = frozenset({ExitCode.CREDENTIALS, ExitCode.ACCESS_DENIED, ExitCode.WRONG_REGION})
# Results written to the custody manifest (the rest are plans: dry runs, verify).
RECORDED = frozenset({"ok", "skipped", "failed", "refused"})

SmallWork = tuple[str, str, Callable[[], FileResult]]
LargeWork = tuple[str, str, Callable[[ThreadPoolExecutor, "Run"], FileResult]]


@dataclass
class Run:
    """One batch's shared state."""

    batch_id: str
    writer: ManifestWriter | None
    stop: threading.Event = field(default_factory=threading.Event)
    results: list[FileResult] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def new_batch_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


class Batches:
    """Runs batches for one connection; remembers the last batch id (for commit markers)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pool: ThreadPoolExecutor | None = None
        self._run: Run | None = None
        self.last_batch_id = ""

    def active(self) -> tuple[ThreadPoolExecutor, Run]:
        assert self._pool is not None and self._run is not None, "outside a batch"
        return self._pool, self._run

    def record(self, run: Run, result: FileResult) -> None:
        """Write ``result`` to the custody manifest, keep it, and stop the batch if it is fatal."""
        conn = self._conn
        error = result.error
        if run.writer is not None and result.result in RECORDED:
            run.writer.write(
                Record(
                    time=utc_now(),
                    batch_id=run.batch_id,
                    direction=result.direction,
                    local_path=result.local_path,
                    bucket=conn.profile.bucket,
                    key=result.key,
                    version_id=result.version_id,
                    size=result.size,
                    checksum=result.checksum,
                    checksum_algorithm=result.algorithm,
                    kms_key_arn=conn.profile.kms_key_arn,
                    caller_arn=conn.caller_arn,
                    result=result.result,
                    error=error.message if error else None,
                    exit_code=int(error.code) if error else None,
                    client=f"partner-transfer/{__version__}",
                )
            )
        with run.lock:
            run.results.append(result)
        if error is not None and error.code in FATAL:
            run.stop.set()
            if error.code in FORGETS_PREFLIGHT:
                conn.preflight.forget()
        conn.emit(result)
        conn.reporter.file_done()

    def _guard(
        self, run: Run, direction: str, local: str, key: str, work: Callable[[], FileResult]
    ) -> None:
        """Run one file's work; turn its failure into a recorded ``failed`` result."""
        if run.stop.is_set():
            return
        try:
            result = work()
        except engine.Stopped:
            return
        except Exception as exc:
            err = self._conn.classify(exc, direction, key)
            result = FileResult(direction, local, key, "failed", error=err)
        self.record(run, result)

    def run(
        self,
        direction: str,
        small: Sequence[SmallWork],
        large: Sequence[LargeWork],
        *,
        refused: Sequence[FileResult] = (),
        total_bytes: int,
        description: str,
    ) -> list[FileResult]:
        """Small files run one per pool task; large ones run one at a time, parts on the pool.

        ``refused`` (default none): files a local rule kept out, recorded first.
        """
        conn = self._conn
        run = Run(batch_id=new_batch_id(), writer=None)
        self._run = run
        with (
            ManifestWriter(conn.manifest_path) as writer,
            ThreadPoolExecutor(conn.concurrency, thread_name_prefix="partner-transfer") as pool,
            conn.reporter,
        ):
            run.writer = writer
            self._pool = pool
            conn.reporter.start(description, total_bytes, len(small) + len(large))
            for result in refused:
                self.record(run, result)
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
        self.last_batch_id = run.batch_id
        order = {key: i for i, (_, key, _) in enumerate([*small, *large])}
        refused_first = {r.key: -1 for r in refused}
        return sorted(
            run.results, key=lambda r: refused_first.get(r.key, order.get(r.key, len(order)))
        )

    def record_alone(self, result: FileResult, batch_id: str) -> None:
        """Record one result outside a batch (the commit marker)."""
        run = Run(batch_id=batch_id, writer=None)
        with ManifestWriter(self._conn.manifest_path) as writer:
            run.writer = writer
            self.record(run, result)
