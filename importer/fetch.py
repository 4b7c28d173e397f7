"""Fetch one object version into a private temporary file and verify it before anyone reads it.

Verification reuses the transfer client's helpers (:mod:`partner_transfer.checksums`): every
full-object checksum the GetObject response carries (S3's stored one and the uploader's copy
in user metadata) must equal the checksum of the bytes received. An object with none of them is
refused (:class:`~importer.errors.Unverifiable`): the importer never loads unverified bytes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from botocore.exceptions import ClientError, FlexibleChecksumError

from importer.errors import ChecksumMismatch, ObjectMissing, Unverifiable
from importer.message import NULL_VERSION
from partner_transfer import checksums
from partner_transfer.checksums import ALGORITHM, METADATA_KEY

CHUNK = 1024 * 1024
# Object metadata key an uploading tool may set to name its principal (x-amz-meta-uploader-arn).
UPLOADER_METADATA_KEY = "uploader-arn"
_MISSING = {"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404", "NotFound"}


@dataclass
class Fetched:
    """A verified object version in a temporary file (mode 0600) that :meth:`discard` removes;
    use it as a context manager.

    ``checksum``/``checksum_algorithm``: the verified value, S3's stored one when there is one
    (``checksum_source`` ``"s3"``), else the uploader's recorded one (``"metadata"``).
    ``recorded_checksum``: the uploader's CRC64NVME from user metadata, if any.
    ``kms_key_id``: GetObject's ``SSEKMSKeyId``.
    """

    path: Path
    bucket: str
    key: str
    version_id: str
    size: int
    etag: str | None
    checksum: str
    checksum_algorithm: str
    checksum_source: str
    recorded_checksum: str | None
    kms_key_id: str | None
    server_side_encryption: str | None
    last_modified: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def uploader_from_metadata(self) -> str | None:
        return _lookup(self.metadata, UPLOADER_METADATA_KEY)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Fetched:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


def _lookup(metadata: dict[str, str], name: str) -> str | None:
    # Header names are case-insensitive; some servers return metadata keys capitalized.
    return next((v for k, v in metadata.items() if k.lower() == name), None)


def fetch_verified(
    s3: Any,
    bucket: str,
    key: str,
    version_id: str | None,
    *,
    directory: Path | None = None,
    expected_size: int | None = None,
) -> Fetched:
    """GetObject ``bucket``/``key`` at ``version_id`` (``None``: the current version), stream
    it into a temporary file in ``directory`` (default: the system's temporary directory)
    while hashing it, and return it only if every full-object checksum matches.

    Raises :class:`ObjectMissing` (no such bucket, key or version), :class:`ChecksumMismatch`
    (also when ``expected_size``, default unchecked, differs from the object's size),
    :class:`Unverifiable` (no full-object checksum); other errors (throttling, network,
    access) propagate unchanged, and no temporary file is left behind on any failure.
    """
    args: dict[str, Any] = {"Bucket": bucket, "Key": key, "ChecksumMode": "ENABLED"}
    if version_id and version_id != NULL_VERSION:
        args["VersionId"] = version_id
    where = f"s3://{bucket}/{key} (version {version_id or NULL_VERSION})"
    try:
        resp = s3.get_object(**args)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _MISSING or status == 404:
            raise ObjectMissing(f"{where} does not exist ({code or status})") from None
        raise
    length = int(resp.get("ContentLength", -1))
    if expected_size is not None and length != expected_size:
        resp["Body"].close()
        raise ChecksumMismatch(
            f"{where} is {length} bytes but the event announced {expected_size}")
    expected = checksums.expected_checksums(resp)
    if not expected:
        resp["Body"].close()
        raise Unverifiable(
            f"{where} has no full-object checksum (S3 stored none, or a composite one, and no "
            f"{METADATA_KEY} metadata): upload it again with partner-transfer")
    algorithms = list(dict.fromkeys([ALGORITHM, *(e.algorithm for e in expected)]))
    hashers = {a: checksums.new_hasher(a) for a in algorithms}
    fd, name = tempfile.mkstemp(prefix="importer-", suffix=".part", dir=directory)
    path = Path(name)
    size = 0
    try:
        body = resp["Body"]
        try:
            for chunk in body.iter_chunks(CHUNK):
                os.write(fd, chunk)
                for hasher in hashers.values():
                    hasher.update(chunk)
                size += len(chunk)
        except FlexibleChecksumError as exc:
            # botocore checks S3's stored checksum as the body streams, before ours.
            raise ChecksumMismatch(f"{where}: received bytes do not match S3's stored "
                                   f"checksum ({exc})") from None
        finally:
            body.close()
        if size != length:
            raise ConnectionError(f"short read of {where}: {size} of {length} bytes")
        actual = {a: h.value() for a, h in hashers.items()}
        for e in expected:
            if actual[e.algorithm] != e.value:
                origin = "stored by S3" if e.source == "s3" else "recorded by the uploader"
                raise ChecksumMismatch(
                    f"{where}: received bytes have {e.algorithm} {actual[e.algorithm]}, the "
                    f"value {origin} is {e.value}")
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    first = expected[0]
    metadata = {str(k): str(v) for k, v in (resp.get("Metadata") or {}).items()}
    return Fetched(
        path=path, bucket=bucket, key=key,
        version_id=str(resp.get("VersionId") or version_id or NULL_VERSION),
        size=size, etag=resp.get("ETag"), checksum=first.value,
        checksum_algorithm=first.algorithm, checksum_source=first.source,
        recorded_checksum=_lookup(metadata, METADATA_KEY),
        kms_key_id=resp.get("SSEKMSKeyId"),
        server_side_encryption=resp.get("ServerSideEncryption"),
        last_modified=resp.get("LastModified"), metadata=metadata,
    )
