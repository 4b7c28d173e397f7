"""Checksums as S3 spells them: base64 of the big-endian digest, per algorithm.

The client's own algorithm is CRC64NVME (:data:`ALGORITHM`): S3 supports it as a *full-object*
checksum for multipart uploads (the SHA family is composite-only there), verifies it on upload,
stores it, and returns it on HEAD/GET. awscrt computes it at several GiB/s and can combine the
CRCs of adjacent blocks, so parts are hashed independently and the object's CRC is derived
without re-reading anything.

To verify objects written by other tools, :func:`new_hasher` also covers S3's other algorithms
(CRC32, CRC32C, SHA1, SHA256) for full-object checksums.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from awscrt import checksums as crt

ALGORITHM = "CRC64NVME"
ALGORITHMS = ("CRC64NVME", "CRC32C", "CRC32", "SHA256", "SHA1")
FULL_OBJECT = "FULL_OBJECT"
COMPOSITE = "COMPOSITE"
# User metadata key holding the client's full-object CRC64NVME (x-amz-meta-...). S3's own stored
# checksum takes precedence; this covers S3-compatible servers that do not store checksums.
METADATA_KEY = "partner-transfer-crc64nvme"
READ_BLOCK = 8 * 1024 * 1024
MAP_BLOCK = 64 * 1024 * 1024  # hashed at a time from a mapped file


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview) -> None: ...

    def value(self) -> str: ...


class _Crc:
    def __init__(self, fn: Any, width: int) -> None:
        self._fn = fn
        self._width = width
        self._crc = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._crc = self._fn(data, self._crc)

    def value(self) -> str:
        return encode_int(self._crc, self._width)


class _Hash:
    def __init__(self, name: str) -> None:
        self._h = hashlib.new(name, usedforsecurity=False)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def value(self) -> str:
        return base64.b64encode(self._h.digest()).decode("ascii")


def new_hasher(algorithm: str) -> Hasher:
    """A streaming hasher for one of S3's checksum algorithms (``ValueError`` for others)."""
    if algorithm == "CRC64NVME":
        return _Crc(crt.crc64nvme, 8)
    if algorithm == "CRC32C":
        return _Crc(crt.crc32c, 4)
    if algorithm == "CRC32":
        return _Crc(zlib.crc32, 4)
    if algorithm in ("SHA256", "SHA1"):
        return _Hash(algorithm.lower())
    raise ValueError(f"unsupported checksum algorithm {algorithm!r}")


def encode_int(crc: int, width: int = 8) -> str:
    """A CRC as S3 prints it: base64 of ``width`` big-endian bytes."""
    return base64.b64encode(crc.to_bytes(width, "big")).decode("ascii")


def crc64nvme(data: bytes | bytearray | memoryview) -> int:
    """CRC64NVME of one buffer, as an integer."""
    return int(crt.crc64nvme(data))


def crc64nvme_update(data: bytes | bytearray | memoryview, previous: int) -> int:
    """CRC64NVME of ``A || data`` from ``previous``, the CRC of ``A``."""
    return int(crt.crc64nvme(data, previous))


def combine_crc64nvme(first: int, second: int, second_length: int) -> int:
    """CRC64NVME of ``A || B`` from the CRCs of ``A`` and ``B`` (``B`` has ``second_length``)."""
    return int(crt.combine_crc64nvme(first, second, second_length))


def combine_all(crcs_and_lengths: Iterable[tuple[int, int]]) -> int:
    """CRC64NVME of consecutive blocks, given each block's (crc, length) in order."""
    total = 0
    for crc, length in crcs_and_lengths:
        total = combine_crc64nvme(total, crc, length)
    return total


@dataclass(frozen=True)
class FileDigest:
    """A local file's size, full CRC64NVME, and the CRC64NVME of each ``part_size`` part."""

    size: int
    checksum: str
    part_size: int
    part_checksums: tuple[str, ...]


def part_ranges(size: int, part_size: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of each part; an empty object has no parts."""
    if part_size <= 0:
        raise ValueError("part_size must be positive")
    return [(off, min(part_size, size - off)) for off in range(0, size, part_size)]


def digest_file(path: Path, part_size: int) -> FileDigest:
    """Hash ``path`` in one pass: each part's CRC64NVME and the combined full-object CRC.

    The file is mapped, so the CRC reads the page cache in place (no copy into Python); a
    file that cannot be mapped is read in blocks."""
    crcs: list[tuple[int, int]] = []
    with path.open("rb", buffering=0) as fh, mapped(fh.fileno()) as view:
        if view is not None:
            for offset in range(0, len(view), part_size):
                with view[offset : offset + part_size] as part:
                    crcs.append((crt.crc64nvme(part), len(part)))
            size = sum(length for _, length in crcs)
        else:
            size = _digest_blocks(fh, part_size, crcs)
    return FileDigest(
        size=size,
        checksum=encode_int(combine_all(crcs)),
        part_size=part_size,
        part_checksums=tuple(encode_int(c) for c, _ in crcs),
    )


def _digest_blocks(fh: Any, part_size: int, crcs: list[tuple[int, int]]) -> int:
    size = 0
    while True:
        part_crc = 0
        part_len = 0
        while part_len < part_size:
            block = fh.read(min(READ_BLOCK, part_size - part_len))
            if not block:
                break
            part_crc = crt.crc64nvme(block, part_crc)
            part_len += len(block)
        if part_len == 0:
            break
        crcs.append((part_crc, part_len))
        size += part_len
        if part_len < part_size:
            break
    return size


@contextlib.contextmanager
def mapped(fd: int) -> Iterator[memoryview | None]:
    """A read-only view of the whole file behind ``fd`` for the ``with`` block (``None``: an
    empty file, or one that cannot be mapped). Hashing it reads the page cache in place."""
    import mmap

    try:
        size = os.fstat(fd).st_size
        mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ) if size else None
    except (OSError, ValueError):
        mapping = None
    if mapping is None:
        yield None
        return
    with mapping, memoryview(mapping) as view:
        yield view


def digest_fd(fd: int, algorithms: Iterable[str]) -> dict[str, str]:
    """Full-object checksums of the file behind ``fd`` with each of ``algorithms``, in one
    pass over the page cache (mapped: no copy into Python)."""
    hashers = {a: new_hasher(a) for a in dict.fromkeys(algorithms)}
    with mapped(fd) as view:
        if view is not None:
            for offset in range(0, len(view), MAP_BLOCK):
                with view[offset : offset + MAP_BLOCK] as block:
                    for hasher in hashers.values():
                        hasher.update(block)
        else:
            offset = 0
            while data := os.pread(fd, READ_BLOCK, offset):
                for hasher in hashers.values():
                    hasher.update(data)
                offset += len(data)
    return {a: h.value() for a, h in hashers.items()}


def digest_path(path: Path, algorithm: str) -> str:
    """Full-object checksum of a local file with any of S3's algorithms."""
    hasher = new_hasher(algorithm)
    with path.open("rb", buffering=0) as fh:
        while block := fh.read(READ_BLOCK):
            hasher.update(block)
    return hasher.value()


@dataclass(frozen=True)
class Expected:
    """A full-object checksum to compare received or local bytes against."""

    algorithm: str
    value: str
    # "s3" (stored and verified by S3), "metadata" (recorded by the uploader), or "manifest"
    # (this host's custody manifest, for objects the caller may write but not read back)
    source: str


def expected_checksums(response: Mapping[str, Any]) -> list[Expected]:
    """Full-object checksums found in a HeadObject/GetObject response, S3's own first.

    A composite checksum (``value-N``, the checksum of part checksums) cannot be compared with
    the bytes of the whole object, so it is left out; ``ChecksumType`` absent means full-object
    (single-part uploads, and servers that do not report the type).
    """
    found: list[Expected] = []
    ctype = response.get("ChecksumType")
    for algorithm in ALGORITHMS:
        value = response.get(f"Checksum{algorithm}")
        if not value or "-" in str(value) or ctype == COMPOSITE:
            continue
        found.append(Expected(algorithm, str(value), "s3"))
    metadata = response.get("Metadata") or {}
    # Header names are case-insensitive; some servers return metadata keys capitalized.
    recorded = next((v for k, v in metadata.items() if k.lower() == METADATA_KEY), None)
    if recorded:
        found.append(Expected(ALGORITHM, str(recorded), "metadata"))
    return found
