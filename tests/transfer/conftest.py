"""Fixtures for the transfer client: one moto S3 server process per test session (per xdist
worker), a bucket per test, a fault-injecting HTTP proxy, and helpers to run the CLI.

Every test talks HTTP to a real server process on 127.0.0.1; credentials are dummies set in
the environment here, never real ones.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from rich.console import Console

from partner_transfer.cli import run

ACCOUNT = "123456789012"
REGION = "eu-west-2"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
MIB = 1024 * 1024
# Access key ids must not be "testing": the CRT client rejects it (FIELD_NOTES).
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKEADMIN0000001",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-key-for-tests-only-000000000",
    "AWS_DEFAULT_REGION": REGION,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def dummy_aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Dummy credentials, empty AWS config files and a private state dir: nothing touches ~."""
    home = tmp_path_factory.mktemp("aws-home")
    env = {
        **DUMMY_ENV,
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "XDG_STATE_HOME": str(home / "state"),  # never the real ~/.local/state
    }
    saved = {k: os.environ.get(k) for k in [*env, "AWS_PROFILE", "AWS_SESSION_TOKEN"]}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.update(env)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def moto_endpoint(dummy_aws_env: None) -> Iterator[str]:
    """Start ``moto_server -H 127.0.0.1 -p PORT`` for the session and stop it afterwards."""
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()  # noqa: S310 - our http server
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)
    yield endpoint
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@dataclass(frozen=True)
class TlsServer:
    endpoint: str  # https://localhost:PORT
    ca_bundle: Path  # the throwaway CA that signed the server's certificate


@pytest.fixture(scope="session")
def moto_tls(dummy_aws_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """A moto server process that speaks only TLS, as the local emulator and S3 do, with a
    certificate for ``localhost`` from a throwaway CA (:mod:`localaws.tls`)."""
    import ssl

    from localaws import tls

    files = tls.generate(tmp_path_factory.mktemp("tls"))
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [
            str(server), "-H", "127.0.0.1", "-p", str(port),
            "-c", str(files.server_cert), "-k", str(files.server_key),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"https://localhost:{port}"
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1, context=context).close()  # noqa: S310 - our server
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto_server (TLS) did not start") from None
            time.sleep(0.1)
    yield TlsServer(endpoint, files.ca_cert)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def admin_client(endpoint: str, service: str = "s3") -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    """An operator-side client for arranging and inspecting test state."""
    return admin_client(moto_endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh versioned bucket named like a customer bucket."""
    name = f"phi-t{uuid.uuid4().hex[:10]}-{ACCOUNT}-{REGION}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@dataclass
class Workspace:
    """A test's files: a profile writer and the paths the CLI uses."""

    root: Path
    bucket: str
    endpoint: str

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def manifest(self) -> Path:
        return self.state / "manifest.jsonl"

    def profile(
        self,
        name: str = "profile.toml",
        *,
        endpoint: str | None = None,
        sts_endpoint: str | None = None,
        inbound: str | None = "inbound/",
        outbound: str | None = "outbound/",
        region: str = REGION,
        auth: str = "",
        concurrency: int = 4,
        part_size_mib: int = 5,
        max_attempts: int = 2,
    ) -> Path:
        lines = [
            'customer = "acme"',
            f'bucket = "{self.bucket}"',
            f'region = "{region}"',
            f'bucket_owner = "{ACCOUNT}"',
            f'kms_key_arn = "{KEY_ARN}"',
            f'endpoint_url = "{endpoint or self.endpoint}"',
            f'state_dir = "{self.state}"',
        ]
        if sts_endpoint:
            lines.append(f'sts_endpoint_url = "{sts_endpoint}"')
        if inbound:
            lines.append(f'inbound_prefix = "{inbound}"')
        if outbound:
            lines.append(f'outbound_prefix = "{outbound}"')
        lines += ["", "[auth]", auth or 'method = "default"', ""]
        lines += [
            "[transfer]",
            f"concurrency = {concurrency}",
            f"part_size_mib = {part_size_mib}",
            f"max_attempts = {max_attempts}",
        ]
        path = self.root / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def file(self, relative: str, data: bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def records(self) -> list[dict[str, Any]]:
        if not self.manifest.exists():
            return []
        return [json.loads(line) for line in self.manifest.read_text().splitlines()]


@pytest.fixture
def ws(tmp_path: Path, bucket: str, moto_endpoint: str) -> Workspace:
    return Workspace(tmp_path, bucket, moto_endpoint)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def cli(*argv: str | Path) -> CliResult:
    """Run the CLI in this process, capturing its two streams."""
    out, err = io.StringIO(), io.StringIO()
    code = run(
        [str(a) for a in argv],
        out=Console(file=out, width=400, soft_wrap=True),
        err=Console(file=err, width=400, soft_wrap=True),
    )
    return CliResult(int(code), out.getvalue(), err.getvalue())


def cli_subprocess(*argv: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a separate process."""
    exe = Path(sys.executable).with_name("partner-transfer")
    return subprocess.run(
        [str(exe), *map(str, argv)], capture_output=True, text=True, timeout=timeout, check=False
    )


def put_outbound(s3: Any, bucket: str, key: str, data: bytes, **extra: Any) -> dict[str, Any]:
    """Operator-side upload with the full-object CRC64NVME S3 computes (what our importer does)."""
    return dict(
        s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="CRC64NVME", **extra)
    )


# -- fault-injecting proxy -------------------------------------------------------------------


@dataclass
class Faults:
    """What the proxy does to traffic. All counters are guarded by ``lock``."""

    corrupt_get: Callable[[str], bool] | None = None  # path -> flip one byte of the body
    corrupt_part: Callable[[int], bool] | None = None  # part number -> flip one byte uploaded
    drop_parts_after: int | None = None  # after N admitted UploadParts, cut the rest mid-body
    drop_puts: bool = False  # cut every PutObject mid-body
    part_delay: float = 0.0  # seconds to hold each UploadPart before forwarding
    # part number -> answer its UploadPart with an ETag S3 does not hold (as if the part were
    # replaced after this answer, e.g. by a request still in flight from a killed run)
    stale_part_etag: Callable[[int], bool] | None = None
    # Called with (kind, query) once a request's body has arrived, before it is forwarded:
    # lets a test act at a precise point of a transfer (e.g. grow the file being sent).
    on_request: Callable[[str, dict[str, list[str]]], None] | None = None
    get_status_200: bool = False  # answer ranged GETs 200 + Content-Range, as rclone does
    drop_range: bool = False  # forward GETs without their Range header (a server ignoring it)
    # (path, Range header) -> send only this many body bytes, then cut the connection
    cut_get: Callable[[str, str], int | None] | None = None
    complete_error_200: int = 0  # answer this many CompleteMultipartUploads 200 + <Error>
    parts_admitted: int = 0  # UploadPart requests let through so far
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def log(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["kind"] == kind]


def _kind(method: str, query: dict[str, list[str]]) -> str:
    if method == "PUT" and "partNumber" in query:
        return "UploadPart"
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if method == "POST" and "uploadId" in query:
        return "CompleteMultipartUpload"
    if method == "GET" and "uploadId" in query:
        return "ListParts"
    if method == "PUT":
        return "PutObject"
    return method


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (~40 ms a response).
    disable_nagle_algorithm = True
    upstream: tuple[str, int]
    faults: Faults

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _proxy(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        kind = _kind(self.command, query)
        length = int(self.headers.get("Content-Length") or 0)
        faults = self.faults
        headers = {k.lower(): v for k, v in self.headers.items()}
        with faults.lock:
            faults.requests.append(
                {"kind": kind, "path": parts.path, "headers": headers, "query": query}
            )
            drop = False
            if kind == "UploadPart" and faults.drop_parts_after is not None:
                drop = faults.parts_admitted >= faults.drop_parts_after
            if kind == "PutObject" and faults.drop_puts:
                drop = True
            if kind == "UploadPart" and not drop:
                faults.parts_admitted += 1
        if drop:
            self.rfile.read(length // 2)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = self.rfile.read(length) if length else b""
        if faults.on_request is not None:
            faults.on_request(kind, query)
        if kind == "CompleteMultipartUpload" and faults.complete_error_200:
            with faults.lock:
                faults.complete_error_200 -= 1
            error = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
                b"<Message>We encountered an internal error. Please try again.</Message></Error>"
            )
            self.send_response(200)
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        if kind == "UploadPart":
            if faults.part_delay:
                time.sleep(faults.part_delay)
            number = int(query["partNumber"][0])
            if faults.corrupt_part and faults.corrupt_part(number) and body:
                body = bytes([body[0] ^ 0xFF]) + body[1:]
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        dropped = ("expect", "range") if faults.drop_range else ("expect",)
        forward = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
        conn.request(self.command, self.path, body=body, headers=forward)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if (
            self.command == "GET"
            and resp.status in (200, 206)
            and data
            and faults.corrupt_get
            and faults.corrupt_get(parts.path)
        ):
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
        status = resp.status
        if status == 206 and faults.get_status_200:
            status = 200
        cut = None
        if self.command == "GET" and status in (200, 206) and faults.cut_get is not None:
            cut = faults.cut_get(parts.path, headers.get("range", ""))
        stale_etag = (
            kind == "UploadPart"
            and faults.stale_part_etag is not None
            and faults.stale_part_etag(int(query["partNumber"][0]))
        )
        self.send_response(status)
        for k, v in resp.getheaders():
            if k.lower() in ("transfer-encoding", "connection", "content-length"):
                continue
            if k.lower() == "etag" and stale_etag:
                v = '"' + "0" * 32 + '"'
            self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if cut is not None:
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy


@dataclass
class Proxy:
    endpoint: str
    faults: Faults


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[Proxy]:
    """A reverse proxy in front of the moto server that records requests and injects faults."""
    upstream = urlsplit(moto_endpoint)
    faults = Faults()
    handler = type(
        "Handler",
        (_ProxyHandler,),
        {"upstream": (upstream.hostname, upstream.port), "faults": faults},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Proxy(f"http://127.0.0.1:{server.server_address[1]}", faults)
    server.shutdown()
    server.server_close()


# -- moto auth (IAM policies enforced) ----------------------------------------------------------


def set_moto_auth(endpoint: str, enabled: bool) -> None:
    request = urllib.request.Request(  # noqa: S310 - the local moto server started above
        f"{endpoint}/moto-api/reset-auth",
        data=b"0" if enabled else b"inf",
        headers={"Content-Type": "text/plain"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - the local moto server


@pytest.fixture
def moto_auth(moto_endpoint: str) -> Iterator[Callable[[], None]]:
    """Call the yielded function to make moto enforce IAM; always switched off afterwards."""
    yield lambda: set_moto_auth(moto_endpoint, True)
    set_moto_auth(moto_endpoint, False)

