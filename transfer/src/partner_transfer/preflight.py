"""Before the first transfer: who the caller is (STS) and whether the bucket is where the
profile says (HeadBucket).

Both answers change only when the credentials or the profile change, so a successful check is
remembered for a day in ``<state_dir>/preflight.json``, keyed by a hash of the endpoint, bucket,
region, owner and access key id; a later failure that either check would have caught
(credentials, access, region) forgets it. This takes two requests and the STS client off the
path of every command but the first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from typing import TYPE_CHECKING

from partner_transfer.errors import ExitCode, TransferError, wrong_region

if TYPE_CHECKING:
    from pathlib import Path

    from partner_transfer.context import Connection


CACHE_NAME = "preflight.json"
CACHE_SECONDS = 24 * 3600


class Preflight:
    """Checks credentials and the bucket's region once per process, or reuses a recent check."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.known_caller_arn: str | None = None
        self._region_checked = False
        self._cache_key = ""

    @property
    def _cache_path(self) -> Path:
        return self._conn.state_dir / CACHE_NAME

    def _key(self) -> str:
        profile = self._conn.profile
        identity = "\0".join(
            [
                profile.endpoint_url or "",
                profile.sts_endpoint_url or "",
                profile.bucket,
                profile.region,
                profile.bucket_owner,
                self._conn.access_key_id(),
            ]
        )
        return hashlib.sha256(identity.encode()).hexdigest()

    def _remembered(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self._cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # no cache, or an unreadable one: check for real
        return data if isinstance(data, dict) else {}

    def _recall(self) -> bool:
        entry = self._remembered().get(self._cache_key)
        if not isinstance(entry, dict):
            return False
        arn, checked = entry.get("caller_arn"), entry.get("checked_at")
        if not isinstance(arn, str) or not isinstance(checked, int | float):
            return False
        if not 0 <= time.time() - checked < CACHE_SECONDS:
            return False
        self.known_caller_arn = arn
        return True

    def _remember(self) -> None:
        now = time.time()
        entries = {
            k: v
            for k, v in self._remembered().items()
            if isinstance(v, dict) and now - float(v.get("checked_at", 0)) < CACHE_SECONDS  # type: ignore[arg-type]
        }
        entries[self._cache_key] = {"caller_arn": self.known_caller_arn, "checked_at": now}
        self._write(entries)

    def forget(self) -> None:
        """Drop this connection's remembered check (a failure it should have caught)."""
        if self._cache_key:
            entries = self._remembered()
            if entries.pop(self._cache_key, None) is not None:
                self._write(entries)
        self._region_checked = False

    def _write(self, entries: dict[str, dict[str, object]]) -> None:
        # The cache only saves requests: a state folder that cannot take it costs speed, not
        # correctness, and the transfer's own writes there report the real problem.
        with contextlib.suppress(OSError):
            self._cache_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self._cache_path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entries, fh)
            os.replace(tmp, self._cache_path)

    def caller_arn(self) -> str:
        """The caller's ARN from STS GetCallerIdentity (also proves the credentials work)."""
        if self.known_caller_arn is None:
            try:
                self.known_caller_arn = str(self._conn.clients.sts.get_caller_identity()["Arn"])
            except TransferError:
                raise
            except Exception as exc:
                raise self._conn.classify(exc, "authenticate") from None
        return self.known_caller_arn

    def run(self) -> None:
        """Check credentials (STS) and that the bucket is where the profile says (HeadBucket).

        A refused HeadBucket (403) is fine: partners may lack ListBucket on the bucket root.
        """
        if self._region_checked:
            return
        self._cache_key = self._key()
        if self._recall():
            self._region_checked = True
            return
        from botocore.exceptions import ClientError

        self.caller_arn()
        profile = self._conn.profile
        region = ""
        try:
            resp = self._conn.clients.s3.head_bucket(
                Bucket=profile.bucket, ExpectedBucketOwner=profile.bucket_owner
            )
            region = resp.get("BucketRegion") or resp["ResponseMetadata"]["HTTPHeaders"].get(
                "x-amz-bucket-region", ""
            )
        except ClientError as exc:
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            region = headers.get("x-amz-bucket-region", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                raise TransferError(
                    ExitCode.NOT_FOUND,
                    f"bucket {profile.bucket} does not exist: check `bucket` in the "
                    "connection profile",
                ) from None
            if status not in (403, 301, 400):
                raise self._conn.classify(exc, "reach") from None
        except TransferError:
            raise
        except Exception as exc:
            raise self._conn.classify(exc, "reach") from None
        if region and region != profile.region:
            raise wrong_region(profile.bucket, region, profile.region)
        self._region_checked = True
        self._remember()
