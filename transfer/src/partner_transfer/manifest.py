"""The custody manifest: one JSON line per transfer, appended to a local file.

Each line records when, which direction, which local file and object (bucket, key, version
id), size, checksum and algorithm, KMS key, the caller's ARN from STS, and the result. It never
holds credentials. With ``--commit-manifest`` an upload batch also sends a batch manifest as
its last object, a commit marker an importer can wait for (see :func:`batch_manifest`).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Batch manifests go under the upload prefix, in this folder, named <batch id>.json.
BATCH_FOLDER = "_manifests/"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Record:
    """One transfer. ``result`` is ``ok``, ``skipped`` (already there with the same checksum)
    or ``failed`` (then ``error`` holds the one-line message and ``exit_code`` its class)."""

    time: str
    batch_id: str
    direction: str  # "upload" | "download"
    local_path: str
    bucket: str
    key: str
    version_id: str | None
    size: int | None
    checksum: str | None
    checksum_algorithm: str | None
    kms_key_arn: str | None
    caller_arn: str | None
    result: str
    error: str | None = None
    exit_code: int | None = None
    client: str = ""


class ManifestWriter:
    """Appends :class:`Record` lines to ``path`` (created 0600); safe across threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh: Any = None

    def __enter__(self) -> ManifestWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fh = os.fdopen(fd, "a", encoding="utf-8")
        return self

    def write(self, record: Record) -> None:
        line = json.dumps(asdict(record), separators=(",", ":"), sort_keys=True) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """All records in a manifest file (for tests and audits)."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def batch_manifest(
    batch_id: str, records: list[Record], *, caller_arn: str | None, created_at: str
) -> bytes:
    """The commit marker's body: the batch's successful objects, in order, as JSON."""
    files: list[dict[str, Any]] = [
        {
            "key": r.key,
            "version_id": r.version_id,
            "size": r.size,
            "checksum": r.checksum,
            "checksum_algorithm": r.checksum_algorithm,
            "result": r.result,
        }
        for r in records
        if r.result in ("ok", "skipped")
    ]
    document = {
        "batch_id": batch_id,
        "created_at": created_at,
        "caller_arn": caller_arn,
        "file_count": len(files),
        "total_bytes": sum(f["size"] or 0 for f in files),
        "files": files,
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
