"""Pure builders of S3 request arguments. Every write carries the same guarantees:

* ``ServerSideEncryption="aws:kms"`` with ``SSEKMSKeyId`` = the customer's key (the bucket
  policy refuses anything else);
* ``ExpectedBucketOwner`` = the customer's account (a bucket of the same name in another
  account is refused by S3);
* a precomputed CRC64NVME that S3 verifies against the bytes it receives; multipart uploads
  declare ``ChecksumType="FULL_OBJECT"`` and send the whole file's CRC on completion;
* the same CRC in user metadata, for servers that do not store checksums.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from partner_transfer.checksums import ALGORITHM, FULL_OBJECT, METADATA_KEY


@dataclass(frozen=True)
class Target:
    """The bucket side of every request: name, owner account and KMS key."""

    bucket: str
    bucket_owner: str
    kms_key_arn: str


def _common(target: Target, key: str) -> dict[str, Any]:
    return {"Bucket": target.bucket, "Key": key, "ExpectedBucketOwner": target.bucket_owner}


def encryption_args(target: Target) -> dict[str, Any]:
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": target.kms_key_arn}


def put_object_args(
    target: Target, key: str, checksum: str, *, content_type: str | None = None
) -> dict[str, Any]:
    """PutObject arguments except ``Body``."""
    args = {
        **_common(target, key),
        **encryption_args(target),
        "ChecksumAlgorithm": ALGORITHM,
        f"Checksum{ALGORITHM}": checksum,
        "Metadata": {METADATA_KEY: checksum},
    }
    if content_type:
        args["ContentType"] = content_type
    return args


def create_multipart_args(target: Target, key: str, checksum: str) -> dict[str, Any]:
    """CreateMultipartUpload arguments for a full-object CRC64NVME upload."""
    return {
        **_common(target, key),
        **encryption_args(target),
        "ChecksumAlgorithm": ALGORITHM,
        "ChecksumType": FULL_OBJECT,
        "Metadata": {METADATA_KEY: checksum},
    }


def upload_part_args(
    target: Target, key: str, upload_id: str, number: int, checksum: str
) -> dict[str, Any]:
    """UploadPart arguments except ``Body`` (SSE-KMS is set once, at creation)."""
    return {
        **_common(target, key),
        "UploadId": upload_id,
        "PartNumber": number,
        "ChecksumAlgorithm": ALGORITHM,
        f"Checksum{ALGORITHM}": checksum,
    }


def complete_multipart_args(
    target: Target,
    key: str,
    upload_id: str,
    parts: Iterable[tuple[int, str, str]],
    checksum: str,
    size: int,
) -> dict[str, Any]:
    """CompleteMultipartUpload arguments; ``parts`` are (number, ETag, CRC64NVME) in any order.

    S3 checks the full-object ``checksum`` against the parts and ``size`` against their total.
    """
    ordered = sorted(parts)
    return {
        **_common(target, key),
        "UploadId": upload_id,
        "MultipartUpload": {
            "Parts": [
                {"PartNumber": n, "ETag": etag, f"Checksum{ALGORITHM}": crc}
                for n, etag, crc in ordered
            ]
        },
        f"Checksum{ALGORITHM}": checksum,
        "ChecksumType": FULL_OBJECT,
        "MpuObjectSize": size,
    }


def head_object_args(target: Target, key: str) -> dict[str, Any]:
    """HeadObject arguments asking for the stored checksum."""
    return {**_common(target, key), "ChecksumMode": "ENABLED"}


def get_object_args(
    target: Target,
    key: str,
    *,
    byte_range: tuple[int, int] | None = None,
    if_match: str | None = None,
) -> dict[str, Any]:
    """GetObject arguments: the whole object with its checksum, or an inclusive byte range
    pinned to one ETag (so a concurrent overwrite fails the download instead of mixing
    versions)."""
    args = _common(target, key)
    if byte_range is None:
        args["ChecksumMode"] = "ENABLED"
    else:
        args["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
    if if_match:
        args["IfMatch"] = if_match
    return args


def list_parts_args(target: Target, key: str, upload_id: str) -> dict[str, Any]:
    return {**_common(target, key), "UploadId": upload_id}


def abort_multipart_args(target: Target, key: str, upload_id: str) -> dict[str, Any]:
    return {**_common(target, key), "UploadId": upload_id}


# -- the same requests as HTTP headers, for the CRT data path (partner_transfer.crt) -------------


def owner_header(target: Target) -> dict[str, str]:
    return {"x-amz-expected-bucket-owner": target.bucket_owner}


def put_object_headers(target: Target, checksum: str) -> dict[str, str]:
    """PutObject headers: the same guarantees as :func:`put_object_args`."""
    return {
        **owner_header(target),
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": target.kms_key_arn,
        "x-amz-sdk-checksum-algorithm": ALGORITHM,
        f"x-amz-checksum-{ALGORITHM.lower()}": checksum,
        f"x-amz-meta-{METADATA_KEY}": checksum,
    }


def read_object_headers(target: Target) -> dict[str, str]:
    """HeadObject/GetObject headers asking for the stored checksum."""
    return {**owner_header(target), "x-amz-checksum-mode": "ENABLED"}


def create_multipart_headers(target: Target, checksum: str) -> dict[str, str]:
    """CreateMultipartUpload headers: the same guarantees as :func:`create_multipart_args`."""
    return {
        **owner_header(target),
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": target.kms_key_arn,
        "x-amz-checksum-algorithm": ALGORITHM,
        "x-amz-checksum-type": FULL_OBJECT,
        f"x-amz-meta-{METADATA_KEY}": checksum,
    }


def upload_part_headers(target: Target, checksum: str) -> dict[str, str]:
    """UploadPart headers: the same as :func:`upload_part_args` (the part's CRC64NVME, which
    S3 verifies; no SSE-KMS headers, S3 rejects them on parts)."""
    return {
        **owner_header(target),
        "x-amz-sdk-checksum-algorithm": ALGORITHM,
        f"x-amz-checksum-{ALGORITHM.lower()}": checksum,
    }


def complete_multipart_headers(target: Target, checksum: str, size: int) -> dict[str, str]:
    """CompleteMultipartUpload headers: the full-object CRC64NVME and size S3 checks against
    the parts (as :func:`complete_multipart_args`)."""
    return {
        **owner_header(target),
        f"x-amz-checksum-{ALGORITHM.lower()}": checksum,
        "x-amz-checksum-type": FULL_OBJECT,
        "x-amz-mp-object-size": str(size),
    }


def complete_multipart_body(parts: Iterable[tuple[int, str, str]]) -> bytes:
    """CompleteMultipartUpload's XML body; ``parts`` are (number, ETag, CRC64NVME) in any
    order (S3 wants them ascending)."""
    from xml.sax.saxutils import escape

    items = "".join(
        f"<Part><PartNumber>{number}</PartNumber><ETag>{escape(etag)}</ETag>"
        f"<Checksum{ALGORITHM}>{escape(crc)}</Checksum{ALGORITHM}></Part>"
        for number, etag, crc in sorted(parts)
    )
    return (
        '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"{items}</CompleteMultipartUpload>"
    ).encode()
