"""Per-run options of :class:`~partner_transfer.api.Client`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Options:
    """Per-run options. Defaults: the profile's tuning, no filters, real run, verification on.

    ``concurrency``/``part_size``: override the profile's tuning. ``include``/``exclude``:
    glob patterns on relative paths or base names. ``dry_run``: plan and print, change nothing
    (may still list or HEAD to decide what sync would do). ``allow_unverified`` (default False):
    accept downloads of objects that carry no full-object checksum. ``commit_manifest``
    (default False): after a fully successful upload batch, upload its batch manifest last.
    ``state_dir``/``manifest``: override the profile's. ``fsync`` (default True): flush
    downloads to disk before renaming them into place.
    """

    concurrency: int | None = None
    part_size: int | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    dry_run: bool = False
    allow_unverified: bool = False
    commit_manifest: bool = False
    state_dir: Path | None = None
    manifest: Path | None = None
    fsync: bool = True
