"""Pure rules that map local files to object keys and object keys to local files.

Partners may upload only under their inbound prefix and download only from their outbound
prefix. The client refuses anything else before any request is sent, and refuses object keys
that would land outside the download folder (``..``, absolute paths, drive letters) or pass
through a symlink inside it.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from partner_transfer.errors import ExitCode, TransferError

# Temporary download names: ".<name>.<random>.partner-transfer-tmp" next to the final file.
TEMP_SUFFIX = ".partner-transfer-tmp"


def refused(message: str) -> TransferError:
    return TransferError(ExitCode.REFUSED, f"refused: {message}")


def _bad_segment(segment: str) -> bool:
    return segment in ("", ".", "..") or "\\" in segment or "\x00" in segment


def normalize_prefix(prefix: str) -> str:
    """``"inbound/batch"`` -> ``"inbound/batch/"``; refuses ``..``, ``.``, ``//`` and leading ``/``.

    The empty string stays empty (the bucket root).
    """
    if prefix == "":
        return ""
    if prefix.startswith("/"):
        raise refused(f"key prefix {prefix!r} must not start with '/'")
    segments = prefix.rstrip("/").split("/")
    if any(_bad_segment(s) for s in segments):
        raise refused(f"key prefix {prefix!r} has an empty, '.' or '..' segment")
    return "/".join(segments) + "/"


def check_key(key: str, allowed: Sequence[str], direction: str) -> str:
    """Return ``key`` if it lies under one of the ``allowed`` prefixes, else refuse locally.

    ``direction`` ("upload" or "download") only shapes the message.
    """
    if not allowed:
        raise refused(f"this profile allows no {direction}s (no prefix for that direction)")
    segments = key.split("/")
    if (
        key.startswith("/")
        or any(_bad_segment(s) for s in segments[:-1])
        or _bad_segment(segments[-1])
    ):
        raise refused(f"object key {key!r} has an empty, '.' or '..' segment")
    if not any(key.startswith(p) for p in allowed):
        where = " or ".join(allowed)
        raise refused(f"{direction}s are allowed only under {where}; {key!r} is outside")
    return key


def check_prefix(prefix: str, allowed: Sequence[str], direction: str) -> str:
    """Normalize ``prefix`` and refuse it unless it is inside one of the ``allowed`` prefixes."""
    norm = normalize_prefix(prefix)
    if not allowed:
        raise refused(f"this profile allows no {direction}s (no prefix for that direction)")
    if not any(norm.startswith(p) for p in allowed):
        where = " or ".join(allowed)
        raise refused(f"{direction}s are allowed only under {where}; {prefix!r} is outside")
    return norm


@dataclass(frozen=True)
class LocalFile:
    """A file to send: its path and its name relative to the argument it came from (POSIX).

    ``refusal`` (default none) says why a local rule keeps this entry out instead: it is not a
    regular file (FIFO, socket, device), a symlink loop, or a symlink to nothing.
    """

    path: Path
    relative: str
    refusal: str | None = None


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def refusal_of(path: Path) -> str | None:
    """Why ``path`` cannot be sent as a file, or ``None`` for a regular file (or a symlink to
    one). Folders are the caller's business."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop; not sent"
        if os.path.islink(path):
            return f"a symlink to {os.readlink(path)!r}, which does not exist; not sent"
        raise
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"{kind}, not a regular file; not sent"


def matches(relative: str, patterns: Iterable[str]) -> bool:
    """True if a glob matches the relative POSIX path (``batch/sub/*.csv``), the same path
    inside the given directory (``sub/*.csv``), or the base name (``*.csv``)."""
    names = {relative, relative.split("/", 1)[-1], relative.rsplit("/", 1)[-1]}
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)


def select_files(
    paths: Sequence[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[LocalFile]:
    """Expand files and directories (recursively) into :class:`LocalFile` entries.

    A file keeps its base name; a directory keeps its own name as the first component, so
    ``upload ./batch-7`` writes ``<prefix>batch-7/...``. ``include`` (default: everything) keeps
    only matching files, then ``exclude`` drops matches. Symlinked directories are not followed
    (no loops); symlinked files are read through. Leftover temporary download files are skipped.
    Entries that are not regular files (FIFOs, sockets, devices), symlink loops and dangling
    symlinks come back with a ``refusal``, never silently dropped.
    Raises ``TransferError(NOT_FOUND)`` for a path that does not exist.
    """
    out: list[LocalFile] = []
    for given in paths:
        if not given.exists() and not os.path.islink(given):
            raise TransferError(ExitCode.NOT_FOUND, f"no such file or directory: {given}")
        refusal = refusal_of(given)
        if refusal is not None or not given.is_dir():
            candidates = [(given, given.name, refusal)]
        else:
            base = given.resolve().name
            candidates = []
            for root, dirs, files in os.walk(given, followlinks=False):
                dirs.sort()
                rel_root = Path(root).relative_to(given).as_posix()
                for name in sorted(files):
                    rel = name if rel_root == "." else f"{rel_root}/{name}"
                    full = Path(root) / name
                    candidates.append((full, f"{base}/{rel}", refusal_of(full)))
        for path, rel, why in candidates:
            if rel.endswith(TEMP_SUFFIX):
                continue
            if include and not matches(rel, include):
                continue
            if exclude and matches(rel, exclude):
                continue
            out.append(LocalFile(path, rel, why))
    return out


def upload_key(prefix: str, relative: str) -> str:
    """Object key for a local file: ``prefix`` + its relative POSIX name."""
    return prefix + relative


def relative_to_prefix(key: str, prefix: str) -> str:
    """The part of ``key`` after ``prefix``; the key's base name when the key is the prefix."""
    if prefix and not prefix.endswith("/"):
        # A single-object key given as the "prefix": keep its base name.
        return PurePosixPath(key).name
    return key[len(prefix) :]


def safe_destination(dest_root: Path, relative: str) -> Path:
    """Where an object lands under ``dest_root``, refusing any escape from it.

    Refuses: absolute names, ``..``/``.``/empty segments, backslashes or drive letters, and
    any existing symlink between ``dest_root`` and the file (including the file itself).
    ``dest_root`` itself may be a symlink: it is the user's own choice of folder.
    """
    segments = relative.split("/")
    if (
        not relative
        or relative.startswith("/")
        or any(_bad_segment(s) for s in segments)
        or any(":" in s and len(s) >= 2 and s[1] == ":" for s in segments[:1])
    ):
        raise refused(f"object name {relative!r} would escape the destination folder")
    root = dest_root.resolve()
    target = root.joinpath(*segments)
    current = root
    for segment in segments:
        current = current / segment
        if current.is_symlink():
            raise refused(f"{current} is a symlink; downloads never write through symlinks")
    if os.path.commonpath([root, target.resolve()]) != str(root):
        raise refused(f"object name {relative!r} would escape the destination folder")
    return target
