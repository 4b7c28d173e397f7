"""The data path for single-request operations: the AWS Common Runtime's S3 client (awscrt).

Why not botocore here: profiles of many small files showed about 1 ms of botocore CPU per
request (serializing, signing, event hooks, parsing) and a client build of ~0.15 s per process,
on a path where the bytes themselves cost microseconds. The CRT signs, sends and parses in C on
its own event-loop thread and keeps a pool of connections; this module only builds the request
line and headers (from the same pure builders' values as the botocore path: SSE-KMS, expected
bucket owner, CRC64NVME) and reads the few response headers and XML fields the client uses.
Multipart uploads (resume needs the upload id and the stored parts), ranged downloads, STS and
cleanup stay on botocore, built only when a command needs them.

Every request made here goes through :meth:`CrtS3.request`; failures become the same
``ClientError`` shapes botocore raises, so :func:`partner_transfer.errors.classify` names them.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

from awscrt import auth, http, io, s3

from partner_transfer.errors import ExitCode, TransferError
from partner_transfer.profile import Profile

_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
# CRT error names for failures of the local file system (aws-c-common's error list).
_LOCAL_FAILURES = (
    "AWS_ERROR_NO_SPACE",
    "AWS_ERROR_NO_PERMISSION",
    "AWS_ERROR_FILE",
    "AWS_ERROR_DIRECTORY",
    "AWS_ERROR_MAX_FDS",
    "AWS_ERROR_PATH",
)

KeyPair = tuple[str, str, str | None]  # access key id, secret, session token
# Static keys, or a function the CRT calls whenever it signs (refreshing credentials).
Credentials = KeyPair | Callable[[], KeyPair]


@dataclass
class Response:
    """One response: status, headers (lower-case names) and the body when it was collected."""

    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class _Exchange:
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0
    chunks: list[bytes] = field(default_factory=list)


def env_credentials() -> tuple[str, str, str | None] | None:
    """The key pair in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), if
    both are set: the first source botocore's default chain reads, read here without
    importing botocore."""
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return key, secret, os.environ.get("AWS_SESSION_TOKEN") or None
    return None


class CrtS3:
    """Single requests to the profile's bucket through one awscrt ``S3Client`` per process.

    ``credentials`` returns (access key id, secret, session token) and is called by the CRT
    whenever it signs; ``concurrency`` caps the connections; ``max_attempts`` (default 5)
    includes the first try.
    """

    def __init__(
        self,
        profile: Profile,
        credentials: Credentials,
        *,
        concurrency: int,
        max_attempts: int = 5,
    ) -> None:
        self.bucket = profile.bucket
        endpoint = profile.endpoint_url
        if endpoint:
            scheme, _, rest = endpoint.partition("://")
            self.host = rest.rstrip("/")
            self._path_prefix = f"/{self.bucket}"
            tls = scheme == "https"
        else:
            suffix = "amazonaws.com.cn" if profile.region.startswith("cn-") else "amazonaws.com"
            if "." in self.bucket:  # a dotted name breaks the wildcard certificate
                self.host = f"s3.{profile.region}.{suffix}"
                self._path_prefix = f"/{self.bucket}"
            else:
                self.host = f"{self.bucket}.s3.{profile.region}.{suffix}"
                self._path_prefix = ""
            tls = True
        self.tls = tls
        self.region = profile.region

        if isinstance(credentials, tuple):
            key, secret, token = credentials
            provider = auth.AwsCredentialsProvider.new_static(key, secret, token)
        else:
            fetch = credentials

            def provide() -> auth.AwsCredentials:
                key, secret, token = fetch()
                return auth.AwsCredentials(key, secret, token)

            provider = auth.AwsCredentialsProvider.new_delegate(provide)
        self._provider = provider
        loop = io.EventLoopGroup(1)
        bootstrap = io.ClientBootstrap(loop, io.DefaultHostResolver(loop))
        self._client = s3.S3Client(
            bootstrap=bootstrap,
            region=profile.region,
            signing_config=s3.create_default_s3_signing_config(
                region=profile.region, credential_provider=provider
            ),
            tls_mode=s3.S3RequestTlsMode.ENABLED if tls else s3.S3RequestTlsMode.DISABLED,
            tls_connection_options=_tls_options(self.host) if tls else None,
            max_active_connections_override=max(concurrency, 1),
            # The CRT reads max_retries=0 as "its default" (5 retries, backoff up to 20 s) and
            # cannot be told not to retry: one attempt in the profile becomes two here.
            retry_config=s3.S3RetryConfig(max_retries=max(max_attempts - 1, 1)),
            connect_timeout_ms=10_000,
        )

    def path(self, key: str = "") -> str:
        return f"{self._path_prefix}/{quote(key, safe='/~')}"

    def sign(self, method: str, key: str, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` plus Host and the SigV4 headers for a body-less request on ``key``,
        signed as the CRT client signs (S3's rules, unsigned payload), for requests sent
        outside the CRT (:mod:`partner_transfer.ranged`)."""
        request = http.HttpRequest(
            method, self.path(key), http.HttpHeaders([("Host", self.host), *headers.items()])
        )
        config = s3.create_default_s3_signing_config(
            region=self.region, credential_provider=self._provider
        )  # a new config per request: it carries the signing time
        signed = auth.aws_sign_request(request, config).result()
        return dict(signed.headers)

    def request(
        self,
        operation: str,
        method: str,
        key: str | None,
        *,
        query: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        stream: BinaryIO | None = None,
        length: int = 0,
        on_body: Callable[[bytes, int], None] | None = None,
    ) -> Future[Response]:
        """Send one request; the future holds the :class:`Response` or the failure.

        The body is ``body``, or ``length`` bytes read from ``stream`` (its ``readinto`` is
        called on the CRT's thread, once, before the request is sent: the CRT keeps the bytes
        for its retries). ``on_body`` (default: collect the body into the response) receives
        each response body chunk with its offset; it runs on the CRT's thread.
        """
        target = self.path(key) if key is not None else self._path_prefix + "/"
        if query:
            target += "?" + "&".join(f"{k}={quote(v, safe='')}" if v else k for k, v in query)
        all_headers = [("Host", self.host)]
        all_headers += list((headers or {}).items())
        if body is not None:
            import io as pyio

            stream, length = pyio.BytesIO(body), len(body)
        if stream is not None:
            all_headers.append(("Content-Length", str(length)))
        request = http.HttpRequest(method, target, http.HttpHeaders(all_headers), stream)
        exchange = _Exchange()
        result: Future[Response] = Future()

        def on_headers(status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
            exchange.status = status_code
            exchange.headers.update((k.lower(), v) for k, v in headers)

        def collect(chunk: bytes, offset: int, **_: Any) -> None:
            if on_body is not None:
                on_body(chunk, offset)
            else:
                exchange.chunks.append(bytes(chunk))

        def on_done(error: BaseException | None = None, **kwargs: Any) -> None:
            if error is None:
                result.set_result(
                    Response(exchange.status, exchange.headers, b"".join(exchange.chunks))
                )
            else:
                result.set_exception(_failure(error, operation, kwargs))

        self._client.make_request(
            type=s3.S3RequestType.DEFAULT,
            operation_name=operation,
            request=request,
            on_headers=on_headers,
            on_body=collect,
            on_done=on_done,
        )
        return result

    def download_to_file(
        self,
        key: str,
        path: str,
        *,
        headers: Mapping[str, str],
        part_size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> Future[None]:
        """GetObject of a large object, split by the CRT into concurrent ranged GETs written
        straight into ``path`` (in C, no Python per byte). ``headers`` go on every ranged
        request: with ``If-Match`` they pin every range to one version."""
        all_headers = [("Host", self.host), *headers.items()]
        request = http.HttpRequest("GET", self.path(key), http.HttpHeaders(all_headers))
        result: Future[None] = Future()

        def on_done(error: BaseException | None = None, **kwargs: Any) -> None:
            if error is None:
                result.set_result(None)
            else:
                result.set_exception(_failure(error, "GetObject", kwargs))

        def progress(progress: int, **_: Any) -> None:
            if on_progress is not None:
                on_progress(progress)

        self._client.make_request(
            type=s3.S3RequestType.GET_OBJECT,
            request=request,
            recv_filepath=path,
            part_size=part_size,
            on_done=on_done,
            on_progress=progress,
        )
        return result

    # -- the operations the client uses -----------------------------------------------------

    def list_objects(self, prefix: str, owner: str) -> list[dict[str, Any]]:
        """Every object under ``prefix`` (ListObjectsV2, all pages): Key, Size,
        LastModified, as botocore returns them."""
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            query = [("list-type", "2"), ("encoding-type", "url"), ("prefix", prefix)]
            if token:
                query.append(("continuation-token", token))
            resp = self.request(
                "ListObjectsV2",
                "GET",
                None,
                query=sorted(query),
                headers={"x-amz-expected-bucket-owner": owner},
            ).result()
            root = ET.fromstring(resp.body)  # noqa: S314 - S3's own XML, no entities
            for item in _iter(root, "Contents"):
                found.append(
                    {
                        "Key": unquote(_text(item, "Key")),
                        "Size": int(_text(item, "Size") or 0),
                        "LastModified": _timestamp(_text(item, "LastModified")),
                    }
                )
            token = _text(root, "NextContinuationToken")
            if _text(root, "IsTruncated") != "true" or not token:
                return found

    # -- multipart uploads (resumable: the upload id and the parts live in our journal) --------

    def create_multipart_upload(self, key: str, headers: Mapping[str, str]) -> tuple[str, str]:
        """CreateMultipartUpload: (upload id, the checksum algorithm the server acknowledged,
        "" if none)."""
        resp = self.request(
            "CreateMultipartUpload", "POST", key, query=[("uploads", "")], headers=headers
        ).result()
        root = _result_xml(resp, "CreateMultipartUpload")
        return _text(root, "UploadId"), resp.headers.get("x-amz-checksum-algorithm", "")

    def upload_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        stream: BinaryIO,
        length: int,
        headers: Mapping[str, str],
    ) -> Future[Response]:
        """UploadPart of ``length`` bytes read from ``stream`` (see :meth:`request`)."""
        return self.request(
            "UploadPart",
            "PUT",
            key,
            query=[("partNumber", str(number)), ("uploadId", upload_id)],
            headers=headers,
            stream=stream,
            length=length,
        )

    def list_parts(self, key: str, upload_id: str, owner: str) -> dict[int, dict[str, Any]]:
        """Every part S3 holds for the upload (ListParts, all pages): number -> PartNumber,
        ETag, Size and Checksum* as botocore returns them."""
        parts: dict[int, dict[str, Any]] = {}
        marker = ""
        while True:
            query = [("uploadId", upload_id)]
            if marker:
                query.append(("part-number-marker", marker))
            resp = self.request(
                "ListParts",
                "GET",
                key,
                query=query,
                headers={"x-amz-expected-bucket-owner": owner},
            ).result()
            root = _result_xml(resp, "ListParts")
            for item in _iter(root, "Part"):
                part: dict[str, Any] = {
                    "PartNumber": int(_text(item, "PartNumber")),
                    "ETag": _text(item, "ETag"),
                    "Size": int(_text(item, "Size") or 0),
                }
                for child in item:
                    name = child.tag.removeprefix(_S3_NS)
                    if name.startswith("Checksum"):
                        part[name] = child.text or ""
                parts[part["PartNumber"]] = part
            marker = _text(root, "NextPartNumberMarker")
            if _text(root, "IsTruncated") != "true" or not marker:
                return parts

    def complete_multipart_upload(
        self, key: str, upload_id: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        """CompleteMultipartUpload: ETag, VersionId and the stored Checksum*/ChecksumType, as
        botocore returns them. S3 can answer 200 with an error in the body; that is a failure
        here too."""
        resp = self.request(
            "CompleteMultipartUpload",
            "POST",
            key,
            query=[("uploadId", upload_id)],
            headers=headers,
            body=body,
        ).result()
        root = _result_xml(resp, "CompleteMultipartUpload")
        out: dict[str, Any] = {"ETag": _text(root, "ETag")}
        for child in root:
            name = child.tag.removeprefix(_S3_NS)
            if name.startswith("Checksum") and child.text:
                out[name] = child.text
        if "x-amz-version-id" in resp.headers:
            out["VersionId"] = resp.headers["x-amz-version-id"]
        return out

    def abort_multipart_upload(self, key: str, upload_id: str, owner: str) -> None:
        self.request(
            "AbortMultipartUpload",
            "DELETE",
            key,
            query=[("uploadId", upload_id)],
            headers={"x-amz-expected-bucket-owner": owner},
        ).result()


def _tls_options(host: str) -> io.TlsConnectionOptions | None:
    """TLS options honouring ``AWS_CA_BUNDLE`` as botocore does (the local emulator's own CA,
    a corporate proxy's); ``None``: the CRT's defaults and the system trust store."""
    bundle = os.environ.get("AWS_CA_BUNDLE")
    if not bundle:
        return None
    options = io.TlsContextOptions()
    options.override_default_trust_store_from_path(ca_filepath=bundle)
    connection = io.ClientTlsContext(options).new_connection_options()
    connection.set_server_name(host.rsplit(":", 1)[0] if host.count(":") == 1 else host)
    return connection


def head_fields(headers: Mapping[str, str]) -> dict[str, Any]:
    """A HeadObject/GetObject response's headers in botocore's shape (the fields this client
    reads: ContentLength, ETag, VersionId, Checksum*, ChecksumType, Metadata)."""
    out: dict[str, Any] = {"Metadata": {}}
    for name, value in headers.items():
        if name.startswith("x-amz-meta-"):
            out["Metadata"][name[len("x-amz-meta-") :]] = value
        elif name.startswith("x-amz-checksum-") and name != "x-amz-checksum-type":
            out["Checksum" + name[len("x-amz-checksum-") :].upper()] = value
    if "content-length" in headers:
        out["ContentLength"] = int(headers["content-length"])
    for name, field_name in (
        ("etag", "ETag"),
        ("x-amz-version-id", "VersionId"),
        ("x-amz-checksum-type", "ChecksumType"),
    ):
        if name in headers:
            out[field_name] = headers[name]
    return out


def _result_xml(resp: Response, operation: str) -> ET.Element:
    """The XML body of a successful answer; an ``<Error>`` body (S3 sends some failures of
    CompleteMultipartUpload with status 200) raises the ``ClientError`` botocore would."""
    root = ET.fromstring(resp.body)  # noqa: S314 - S3's own XML, no entities
    if root.tag.removeprefix(_S3_NS) == "Error":
        raise client_error(
            resp.status, _text(root, "Code"), _text(root, "Message"), resp.headers, operation
        )
    return root


def _iter(node: ET.Element, name: str) -> list[ET.Element]:
    """Descendants named ``name``, with or without S3's namespace."""
    return [e for e in node.iter() if e.tag in (f"{_S3_NS}{name}", name)]


def _text(node: ET.Element, name: str) -> str:
    found = node.find(f"{_S3_NS}{name}")
    if found is None:
        found = node.find(name)
    return (found.text or "") if found is not None else ""


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def error_fields(body: bytes, default_code: str) -> tuple[str, str]:
    """(Code, Message) of an S3 error body; ``default_code`` (e.g. the status) without one."""
    if body:
        try:
            root = ET.fromstring(body)  # noqa: S314 - S3's own XML, no entities
        except ET.ParseError:
            return default_code, ""
        return _text(root, "Code") or default_code, _text(root, "Message")
    return default_code, ""


def client_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | Sequence[Any], operation: str
) -> Exception:
    """The ``ClientError`` botocore raises for an S3 error answer."""
    from botocore.exceptions import ClientError

    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return ClientError(
        {
            "Error": {"Code": code or str(status), "Message": message},
            "ResponseMetadata": {
                "HTTPStatusCode": status,
                "HTTPHeaders": {k.lower(): v for k, v in pairs},
            },
        },
        operation,
    )


def _failure(error: BaseException, operation: str, details: Mapping[str, Any]) -> Exception:
    """A CRT failure as the exception botocore would raise: ``ClientError`` for an S3 error
    response, a ``NETWORK`` error for a connection that failed."""
    status = getattr(error, "status_code", None)
    headers = details.get("error_headers") or getattr(error, "headers", None) or []
    body = details.get("error_body") or getattr(error, "body", None) or b""
    if status:
        code, message = error_fields(body, str(status))
        return client_error(int(status), code, message, dict(headers), operation)
    name = getattr(error, "name", type(error).__name__)
    if name.startswith(_LOCAL_FAILURES):
        return TransferError(
            ExitCode.LOCAL_IO,
            f"local file system error while writing the download ({name}: {error}); no file "
            "under its final name was changed",
        )
    return TransferError(
        ExitCode.NETWORK,
        f"network failure talking to S3 ({name}: {error}); check your connection and re-run: "
        "interrupted uploads resume from the parts already stored",
    )
