"""Reading a TOML file an operator wrote (a customer file, the accounts file): every way it can
be unreadable is one line naming the file, never a traceback."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


class UnreadableFile(Exception):
    """The file cannot be read as TOML; ``line`` is ``<file>: (file): <why>``."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


def read_toml(path: Path, *, max_bytes: int, too_large: str = "") -> dict[str, Any]:
    """The parsed file. ``too_large``: what to add when the file is over ``max_bytes``."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UnreadableFile(f"{source}: (file): cannot be read ({err.strerror})") from None
    if len(raw) > max_bytes:
        raise UnreadableFile(f"{source}: (file): larger than {max_bytes} bytes{too_large}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UnreadableFile(f"{source}: (file): not UTF-8 text (byte {err.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UnreadableFile(f"{source}: (file): not valid TOML ({err})") from None
    except RecursionError:  # tomllib recurses per nesting level: 4 KB of "[" exhausts it
        raise UnreadableFile(f"{source}: (file): not valid TOML (nested too deeply)") from None
