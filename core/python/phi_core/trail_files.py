"""CloudTrail's file formats, once: where a trail puts its log and digest files, and what it
signs in a digest.

The custody command reads and verifies the files by these rules (``admin.trail_evidence``); the
local emulator writes them by the same rules (``localaws.cloudtrail``), so the two cannot drift
apart and the emulator's files are checked as AWS's would be. Sources: the CloudTrail user
guide, "Finding your CloudTrail log files", "CloudTrail digest file structure" and "Custom
implementations of CloudTrail log file integrity validation"; the AWS CLI's
``cloudtrail validate-logs`` (``awscli/customizations/cloudtrail/validation.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

SIGNATURE_ALGORITHM = "SHA256withRSA"
# The digest's signature travels as user metadata of the digest object.
SIGNATURE_METADATA = "signature"
SIGNATURE_ALGORITHM_METADATA = "signature-algorithm"
_LOG_TIME = "%Y%m%dT%H%MZ"
_DIGEST_TIME = "%Y%m%dT%H%M%SZ"


def log_files_base(prefix: str, account: str, region: str) -> str:
    """``[prefix]AWSLogs/<account>/CloudTrail/<region>/`` (``prefix``: the trail's S3 key
    prefix, empty or ending in ``/``)."""
    return f"{prefix}AWSLogs/{account}/CloudTrail/{region}/"


def digests_base(prefix: str, account: str, region: str) -> str:
    return f"{prefix}AWSLogs/{account}/CloudTrail-Digest/{region}/"


def log_file_key(prefix: str, account: str, region: str, delivered: datetime,
                 unique: str) -> str:
    """A log file delivered at ``delivered``: ``.../YYYY/MM/DD/<account>_CloudTrail_<region>_
    YYYYMMDDTHHMMZ_<unique>.json.gz``."""
    moment = delivered.astimezone(UTC)
    return (f"{log_files_base(prefix, account, region)}{moment:%Y/%m/%d}/"
            f"{account}_CloudTrail_{region}_{moment:{_LOG_TIME}}_{unique}.json.gz")


def log_files_of_hour(prefix: str, account: str, region: str, hour: datetime) -> str:
    """The key prefix of every log file delivered in ``hour``: a listing reads only that
    hour, whatever the bucket holds."""
    moment = hour.astimezone(UTC)
    return (f"{log_files_base(prefix, account, region)}{moment:%Y/%m/%d}/"
            f"{account}_CloudTrail_{region}_{moment:%Y%m%dT%H}")


def digest_key(prefix: str, account: str, region: str, trail_name: str, home_region: str,
               end: datetime) -> str:
    """The digest of ``region`` ending at ``end``: ``.../YYYY/MM/DD/<account>_CloudTrail-
    Digest_<region>_<trail>_<home region>_YYYYMMDDTHHMMSSZ.json.gz``."""
    moment = end.astimezone(UTC)
    return (f"{digests_base(prefix, account, region)}{moment:%Y/%m/%d}/"
            f"{account}_CloudTrail-Digest_{region}_{trail_name}_{home_region}_"
            f"{moment:{_DIGEST_TIME}}.json.gz")


def log_time(key: str) -> datetime | None:
    """The delivery time in a log file's name (None: not a log file's name)."""
    for part in reversed(key.rsplit("/", 1)[-1].split("_")):
        try:
            return datetime.strptime(part, _LOG_TIME).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def digest_time(key: str) -> datetime | None:
    """The end time in a digest file's name (None: not a digest file's name)."""
    stem = key.rsplit("/", 1)[-1].removesuffix(".json.gz").removesuffix("_backfill")
    try:
        return datetime.strptime(stem.rsplit("_", 1)[-1], _DIGEST_TIME).replace(tzinfo=UTC)
    except ValueError:
        return None


def digest_signing_string(digest: Mapping[str, Any], raw: bytes) -> bytes:
    """What CloudTrail signs for a digest (``raw``: the digest's uncompressed bytes):
    ``digestEndTime``, ``bucket/key``, the hex SHA-256 of ``raw`` and the previous digest's
    signature (``null`` in a starting digest), one per line."""
    previous = digest.get("previousDigestSignature")
    return (f"{digest['digestEndTime']}\n{digest['digestS3Bucket']}/{digest['digestS3Object']}"
            f"\n{hashlib.sha256(raw).hexdigest()}\n"
            f"{previous if previous is not None else 'null'}").encode()
