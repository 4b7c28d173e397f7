"""The progress bar shown on a terminal (imported only then: rich costs start-up time)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class RichReporter:
    """A bytes bar with speed and ETA, and a files counter, on stderr."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TextColumn("{task.fields[files]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._files_total = 0
        self._files_done = 0

    def start(self, description: str, total_bytes: int, total_files: int) -> None:
        self._files_total, self._files_done = total_files, 0
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(
            description, total=total_bytes, files=f"0/{total_files} files"
        )

    def advance(self, nbytes: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, nbytes)

    def file_done(self) -> None:
        if self._task is not None:
            self._files_done += 1
            self._progress.update(self._task, files=f"{self._files_done}/{self._files_total} files")

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()
