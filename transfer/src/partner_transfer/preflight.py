"""Before the first transfer: who the caller is (STS) and whether the bucket is where the
profile says (HeadBucket)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from partner_transfer.errors import ExitCode, TransferError, wrong_region

if TYPE_CHECKING:
    from partner_transfer.context import Connection


class Preflight:
    """Checks credentials and the bucket's region once per process."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.known_caller_arn: str | None = None
        self._region_checked = False

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
        from botocore.exceptions import ClientError

        self.caller_arn()
        if self._region_checked:
            return
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
