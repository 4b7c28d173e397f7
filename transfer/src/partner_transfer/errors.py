"""Failure classes, their exit codes, and the one-line messages users see.

Every expected failure becomes a :class:`TransferError` carrying an :class:`ExitCode` and one
line that says what happened and what to do. :func:`classify` turns botocore's exceptions into
those; it is pure (no I/O), so every message is unit-tested.
"""

from __future__ import annotations

import enum
import errno
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.exceptions import ClientError


@enum.unique
class ExitCode(enum.IntEnum):
    """Process exit codes, one per failure class (documented in docs/client.md)."""

    OK = 0
    FAILURE = 1  # unexpected: a bug or an unclassified server answer
    USAGE = 2  # bad command line (argparse uses 2 as well)
    CONFIG = 3  # connection profile or AWS profile missing or invalid
    CREDENTIALS = 4  # no credentials, or the key is expired, rotated or wrong
    ACCESS_DENIED = 5  # the principal may not do this on this bucket/prefix
    REFUSED = 6  # refused locally: key outside the allowed prefixes, unsafe local path
    NOT_FOUND = 7  # no such local file, bucket, key or prefix
    CHECKSUM = 8  # bytes did not match the stored checksum (nothing left under the final name)
    NETWORK = 9  # endpoint unreachable, connection dropped, service errors after retries
    WRONG_REGION = 10  # the bucket lives in another region than the profile says
    LOCAL_IO = 11  # the local file system failed: disk full, permission denied, folder vs file
    CHANGED = 12  # a local file changed while it was being uploaded
    # receipts verify: a disagreement with the exchange (a missing, different or rejected
    # receipt), and broken evidence (a receipt that fails its checks), never a setup failure.
    RECEIPTS_DISAGREE = 13
    RECEIPT_BROKEN = 14
    INTERRUPTED = 130  # Ctrl-C


@dataclass
class TransferError(Exception):
    """An expected failure: ``message`` is the single line shown to the user."""

    code: ExitCode
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ErrorContext:
    """What the client was doing when a call failed; every field is optional (default empty)."""

    operation: str = ""  # "upload", "download", "list", ...
    bucket: str = ""
    key: str = ""
    principal: str = ""  # caller ARN from STS, when known
    region: str = ""  # the profile's region
    credential_source: str = ""  # e.g. "credentials file ~/acme.json", "AWS profile acme"
    access_key_hint: str = ""  # masked access key id, e.g. "AKIA…WXYZ"


_CREDENTIAL_REJECTED = {"InvalidAccessKeyId", "InvalidClientTokenId", "UnrecognizedClientException"}
_CREDENTIAL_EXPIRED = {
    "ExpiredToken",
    "ExpiredTokenException",
    "TokenRefreshRequired",
    "RequestExpired",
}
_ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "AllAccessDisabled", "403"}
_WRONG_REGION = {
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
    "301",
}
_CHECKSUM = {"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "InvalidChecksum"}
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "404", "NotFound", "NoSuchVersion"}
_SERVICE = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "500",
    "502",
    "503",
    "504",
}
_REGION_IN_MESSAGE = re.compile(r"expecting '([a-z0-9-]+)'")


def mask_access_key(access_key_id: str) -> str:
    """``AKIAIOSFODNN7EXAMPLE`` -> ``AKIA…MPLE``: enough to tell keys apart, not to use one."""
    if len(access_key_id) <= 8:
        return "…"
    return f"{access_key_id[:4]}…{access_key_id[-4:]}"


def _target(ctx: ErrorContext) -> str:
    if ctx.bucket and ctx.key:
        return f"s3://{ctx.bucket}/{ctx.key}"
    if ctx.bucket:
        return f"s3://{ctx.bucket}"
    return "the bucket"


def _who(ctx: ErrorContext) -> str:
    if ctx.principal:
        return ctx.principal
    if ctx.access_key_hint:
        return f"access key {ctx.access_key_hint}"
    return "your principal"


def _key(ctx: ErrorContext) -> str:
    return f"access key {ctx.access_key_hint}" if ctx.access_key_hint else "the access key"


def _bucket_region(error: ClientError) -> str:
    headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = headers.get("x-amz-bucket-region") or error.response.get("Error", {}).get("Region")
    if region:
        return str(region)
    match = _REGION_IN_MESSAGE.search(str(error.response.get("Error", {}).get("Message", "")))
    return match.group(1) if match else ""


def wrong_region(bucket: str, bucket_region: str, profile_region: str) -> TransferError:
    """The error for a bucket that lives in another region than the profile says."""
    where = f"in {bucket_region}" if bucket_region else "in another region"
    return TransferError(
        ExitCode.WRONG_REGION,
        f"wrong region: bucket {bucket} is {where} but the profile says {profile_region or '?'}; "
        f'set region = "{bucket_region or "<the bucket region>"}" in the connection profile',
    )


# What to do about a local file-system failure, by errno; the default names the OS's reason.
_LOCAL_ADVICE = {
    errno.ENOSPC: "the disk is full: free space and re-run",
    errno.EDQUOT: "the disk quota is exhausted: free space and re-run",
    errno.EFBIG: "the file is larger than this file system or process allows",
    errno.EACCES: "permission denied: check the permissions of the path and its folders",
    errno.EPERM: "the operation is not permitted on this path",
    errno.EROFS: "the file system is read-only: choose another destination",
    errno.EISDIR: "a folder is in the way where a file is expected: move it or pick another "
    "destination",
    errno.ENOTDIR: "a file is in the way where a folder is expected: move it or pick another "
    "destination",
    errno.EEXIST: "something is in the way: move it or pick another destination",
    errno.ELOOP: "the path is a symlink loop",
    errno.ENAMETOOLONG: "the name is too long for this file system",
    errno.EIO: "the device reported an I/O error: check the disk",
}


def local_io_error(error: OSError, path: object = None) -> TransferError:
    """A local file-system failure as one line naming ``path`` (default: the error's own
    filename) and what to do. Files under their final names are never touched by a failed
    transfer, so the message can say nothing was lost."""
    where = path if path is not None else error.filename
    reason = _LOCAL_ADVICE.get(error.errno or 0) or (error.strerror or type(error).__name__)
    name = f"{where}: " if where else ""
    return TransferError(
        ExitCode.LOCAL_IO,
        f"local file system error: {name}{reason} [{error.strerror or error}]; no file under its "
        "final name was changed",
    )


def is_client_error(error: BaseException) -> bool:
    """True for botocore's ``ClientError`` (the CRT data path raises it too), without importing
    botocore when nothing has loaded it: then no such error can exist."""
    module = sys.modules.get("botocore.exceptions")
    return module is not None and isinstance(error, module.ClientError)


def classify(error: BaseException, ctx: ErrorContext) -> TransferError:
    """Map an exception from boto3/botocore to a :class:`TransferError` with a one-line message.

    Unknown exceptions become ``ExitCode.FAILURE`` with their text, still on one line.
    """
    if isinstance(error, TransferError):
        return error
    # Imported here, on failures only: the data path runs without botocore.
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        FlexibleChecksumError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )

    source = f" ({ctx.credential_source})" if ctx.credential_source else ""
    if isinstance(error, ClientError):
        err = error.response.get("Error", {})
        code = str(err.get("Code", ""))
        server_message = str(err.get("Message", "")).strip()
        detail = f" [{code}: {server_message}]" if server_message else f" [{code}]"
        if code in _CREDENTIAL_REJECTED:
            return TransferError(
                ExitCode.CREDENTIALS,
                f"{_key(ctx)}{source} was rejected: it has been rotated or deleted; fetch the "
                "current key from the rotation secret (ask your operator) and update your "
                "credentials",
            )
        if code == "SignatureDoesNotMatch":
            return TransferError(
                ExitCode.CREDENTIALS,
                f"the secret key does not match {_key(ctx)}{source}: "
                "the key was rotated or mistyped; fetch the current key from the rotation "
                "secret (ask your operator)",
            )
        if code in _CREDENTIAL_EXPIRED:
            return TransferError(
                ExitCode.CREDENTIALS,
                f"your temporary credentials have expired{source}: refresh them (e.g. "
                "`aws sso login`, or re-run to assume the role again) and retry",
            )
        if code in _WRONG_REGION:
            return wrong_region(ctx.bucket, _bucket_region(error), ctx.region)
        if code in _ACCESS_DENIED:
            return TransferError(
                ExitCode.ACCESS_DENIED,
                f"access denied: {_who(ctx)} may not {ctx.operation or 'access'} "
                f"{_target(ctx)}{detail}; check that the key is under your allowed prefix and "
                "that the profile's bucket owner and KMS key are right, or ask your operator to "
                "check the grants",
            )
        if code in _CHECKSUM:
            return TransferError(
                ExitCode.CHECKSUM,
                f"checksum mismatch: S3 refused {_target(ctx)} because the bytes it received "
                f"do not match the checksum sent{detail}; the local file may be changing, or "
                "the network corrupted it: re-run the command",
            )
        if code == "NoSuchBucket":
            return TransferError(
                ExitCode.NOT_FOUND,
                f"bucket {ctx.bucket} does not exist: check `bucket` in the connection profile",
            )
        if code in _NOT_FOUND:
            return TransferError(ExitCode.NOT_FOUND, f"not found: {_target(ctx)}")
        if code in {"PreconditionFailed", "412"}:
            return TransferError(
                ExitCode.NETWORK,
                f"{_target(ctx)} changed on the server during the transfer; re-run the command",
            )
        if code in _SERVICE:
            return TransferError(
                ExitCode.NETWORK,
                f"S3 kept failing for {_target(ctx)} after retries{detail}; try again later",
            )
        return TransferError(
            ExitCode.FAILURE,
            f"S3 refused {ctx.operation or 'the request'} on {_target(ctx)}{detail}",
        )
    if isinstance(error, FlexibleChecksumError):
        return TransferError(
            ExitCode.CHECKSUM,
            f"checksum mismatch: the bytes received for {_target(ctx)} do not match the checksum "
            "S3 stored; nothing was written under the final name; re-run the download",
        )
    if isinstance(error, ProfileNotFound):
        name = error.kwargs.get("profile", "NAME")
        return TransferError(
            ExitCode.CONFIG,
            f"AWS profile {name!r} is not in your AWS config: create it with `aws configure "
            f"--profile {name}` or fix auth.aws_profile in the connection profile",
        )
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return TransferError(
            ExitCode.CREDENTIALS,
            f"no AWS credentials found{source}: set the [auth] section of the connection "
            "profile (credentials file, AWS profile or role)",
        )
    if isinstance(
        error,
        EndpointConnectionError | ConnectionClosedError | ReadTimeoutError | ConnectTimeoutError,
    ):
        return TransferError(
            ExitCode.NETWORK,
            f"network failure talking to S3 ({error}); check your connection and re-run: "
            "interrupted uploads resume from the parts already stored",
        )
    if isinstance(error, FileNotFoundError) and error.filename:
        return TransferError(ExitCode.NOT_FOUND, f"no such file or directory: {error.filename}")
    if isinstance(error, ConnectionError | TimeoutError):
        return TransferError(ExitCode.NETWORK, f"network failure ({error}); re-run the command")
    if isinstance(error, OSError):
        return local_io_error(error, error.filename)
    text = " ".join(str(error).split()) or type(error).__name__
    return TransferError(ExitCode.FAILURE, f"unexpected error: {type(error).__name__}: {text}")
