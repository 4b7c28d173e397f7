"""Files that hold secrets or names of health data: created for their owner only."""

from __future__ import annotations

import os
from pathlib import Path


class PrivateFileError(Exception):
    """The file could not be created; the message says why in one line."""


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 (whatever the umask) holding ``text``; never overwrite an
    existing file or follow a symlink, and leave nothing behind if the write fails."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise PrivateFileError(f"{path} already exists; refusing to overwrite it") from None
    except OSError as err:
        raise PrivateFileError(f"cannot create {path}: {err.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as err:
        path.unlink(missing_ok=True)
        raise PrivateFileError(f"cannot write {path}: {err.strerror}") from None
