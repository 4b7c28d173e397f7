"""The resume journal: one small JSON-lines file per multipart upload in progress.

Line 1 describes the upload (bucket, key, local file identity, full checksum, part size,
upload id). Each later line records one part S3 acknowledged (number, ETag, CRC64NVME). Lines
are appended and flushed as parts complete, so a killed process loses at most the parts in
flight; a torn last line is ignored. A journal is only a hint: on resume every recorded part is
checked against S3's ListParts (same ETag and size) before it is reused, and S3 checks the
full-object checksum when the upload completes.

The file is deleted when the upload completes, or when it is abandoned (the local file changed,
S3 no longer knows the upload id, or ``partner-transfer cleanup``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

JOURNAL_DIR = "uploads"
VERSION = 1


@dataclass(frozen=True)
class UploadIdentity:
    """What must be unchanged for stored parts to be reused."""

    bucket: str
    key: str
    local_path: str
    size: int
    mtime_ns: int
    checksum: str  # full-object CRC64NVME of the local file
    part_size: int


@dataclass(frozen=True)
class PartRecord:
    number: int
    etag: str
    checksum: str


@dataclass
class Journal:
    """An open journal; :meth:`record` is safe to call from worker threads."""

    path: Path
    identity: UploadIdentity
    upload_id: str
    created_at: str
    parts: dict[int, PartRecord] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, part: PartRecord) -> None:
        line = json.dumps({"part": asdict(part)}, separators=(",", ":")) + "\n"
        with self._lock:
            self.parts[part.number] = part
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def journal_dir(state_dir: Path) -> Path:
    return state_dir / JOURNAL_DIR


def journal_path(state_dir: Path, bucket: str, key: str, local_path: str) -> Path:
    """One journal per (bucket, key, absolute local path); the name is a hash of the three."""
    digest = hashlib.sha256(f"{bucket}\0{key}\0{local_path}".encode()).hexdigest()[:40]
    return journal_dir(state_dir) / f"{digest}.jsonl"


def create(path: Path, identity: UploadIdentity, upload_id: str, created_at: str) -> Journal:
    """Write a new journal (atomically replacing any old one) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    header = {
        "version": VERSION,
        "identity": asdict(identity),
        "upload_id": upload_id,
        "created_at": created_at,
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(header, separators=(",", ":")) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return Journal(path=path, identity=identity, upload_id=upload_id, created_at=created_at)


def load(path: Path) -> Journal | None:
    """Read a journal; ``None`` if it is missing or its header is unreadable."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    try:
        header = json.loads(lines[0])
        if header.get("version") != VERSION:
            return None
        journal = Journal(
            path=path,
            identity=UploadIdentity(**header["identity"]),
            upload_id=str(header["upload_id"]),
            created_at=str(header["created_at"]),
        )
    except (IndexError, KeyError, TypeError, ValueError):
        return None
    for line in lines[1:]:
        try:
            part = PartRecord(**json.loads(line)["part"])
        except (KeyError, TypeError, ValueError):
            continue  # a line torn by a kill mid-write
        journal.parts[part.number] = part
    return journal


def list_journals(state_dir: Path) -> Iterator[tuple[Path, Journal | None]]:
    """Every journal file under ``state_dir`` with its parsed content (``None`` if unreadable)."""
    directory = journal_dir(state_dir)
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.jsonl")):
        yield path, load(path)
