"""Progress reporting: a rich bar on a terminal, nothing in quiet mode or when piped.

rich is imported only when a bar is shown: scripts and pipes do not pay for it at start-up.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol


class Reporter(Protocol):
    """What the transfer code calls; implementations must be thread-safe."""

    def start(self, description: str, total_bytes: int, total_files: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def file_done(self) -> None: ...

    def __enter__(self) -> Reporter: ...

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class NullReporter:
    """Reports nothing (quiet mode, scripts, tests)."""

    def start(self, description: str, total_bytes: int, total_files: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def file_done(self) -> None:
        pass

    def __enter__(self) -> NullReporter:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


def make_reporter(console: Any, *, quiet: bool) -> Reporter:
    """A rich bar when ``console`` (a rich ``Console``) is an interactive terminal and not
    ``quiet``."""
    if quiet or not getattr(console, "is_terminal", False):
        return NullReporter()
    from partner_transfer.rich_progress import RichReporter

    return RichReporter(console)
