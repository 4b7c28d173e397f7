"""The data path of large files: multipart uploads sent part by part through the CRT (hashed as
each part is read), and downloads in ranged GETs written into the file as the bytes arrive.
Against real moto server processes, over HTTP through the fault proxy and over TLS."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from partner_transfer import Client, Options, load_profile
from partner_transfer.errors import ExitCode, TransferError
from partner_transfer.keys import TEMP_SUFFIX
from tests.transfer.conftest import (
    ACCOUNT,
    MIB,
    REGION,
    Proxy,
    TlsServer,
    Workspace,
    cli,
    put_outbound,
)

pytestmark = pytest.mark.e2e  # talks to moto server processes

# Three ranges (or parts) of 5 MiB, the last one short: the profiles here use 5 MiB parts.
SIZE = 12 * MIB + 17


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- over TLS -------------------------------------------------------------------------------------


@pytest.fixture
def tls_ws(
    tmp_path: Path, moto_tls: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Workspace, Any]]:
    """A workspace on the TLS-only moto server, trusted through AWS_CA_BUNDLE (as partners
    trust a corporate proxy's CA), and an operator-side client for it."""
    monkeypatch.setenv("AWS_CA_BUNDLE", str(moto_tls.ca_bundle))
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_tls.endpoint,
        region_name=REGION,
        verify=str(moto_tls.ca_bundle),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    bucket = f"phi-t{uuid.uuid4().hex[:10]}-{ACCOUNT}-{REGION}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    yield Workspace(tmp_path, bucket, moto_tls.endpoint), s3


def test_large_files_go_up_in_parts_and_down_in_ranges_over_tls(
    tls_ws: tuple[Workspace, Any],
) -> None:
    ws, s3 = tls_ws
    data = os.urandom(SIZE)
    ws.file("big.bin", data)
    up = cli("upload", "--profile", ws.profile(), ws.root / "big.bin")
    assert up.code == 0, up.err
    stored = s3.head_object(Bucket=ws.bucket, Key="inbound/big.bin", ChecksumMode="ENABLED")
    assert stored["ContentLength"] == SIZE
    assert stored["ETag"].endswith('-3"')  # three parts

    put_outbound(s3, ws.bucket, "outbound/big.bin", data)
    down = cli("download", "--profile", ws.profile(), "outbound/big.bin", ws.root / "got.bin")
    assert down.code == 0, down.err
    assert (ws.root / "got.bin").read_bytes() == data
    assert [r["result"] for r in ws.records()] == ["ok", "ok"]


def test_ranged_gets_refuse_a_certificate_they_cannot_verify(
    tls_ws: tuple[Workspace, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, s3 = tls_ws
    put_outbound(s3, ws.bucket, "outbound/big.bin", os.urandom(SIZE))
    client = Client(load_profile(ws.profile()))
    crt = client._conn.crt  # built while the CA is trusted
    monkeypatch.delenv("AWS_CA_BUNDLE")  # the ranged GETs now know only the system's CAs
    from partner_transfer.ranged import RangedGets

    gets = RangedGets(crt, max_attempts=1)
    fd = os.open(ws.root / "out.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with ThreadPoolExecutor(2) as pool, pytest.raises(TransferError) as caught:
            gets.download(
                "outbound/big.bin",
                fd,
                SIZE,
                headers={},
                part_size=5 * MIB,
                pool=pool,
                connections=2,
                stop=threading.Event(),
            )
    finally:
        os.close(fd)
        gets.close()
    assert caught.value.code is ExitCode.NETWORK
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    assert os.path.getsize(ws.root / "out.bin") == 0


# -- servers' ways of answering a range -----------------------------------------------------------


def test_a_range_answered_200_with_its_content_range_is_accepted(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    # rclone serve s3 answers ranged GETs with 200 and the right Content-Range.
    data = os.urandom(SIZE)
    put_outbound(s3, ws.bucket, "outbound/big.bin", data)
    proxy.faults.get_status_200 = True
    result = cli(
        "download",
        "--profile",
        ws.profile(endpoint=proxy.endpoint),
        "outbound/big.bin",
        ws.root / "got.bin",
    )
    assert result.code == 0, result.err
    assert (ws.root / "got.bin").read_bytes() == data


def test_a_server_ignoring_the_range_fails_the_download_and_nothing_lands(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    put_outbound(s3, ws.bucket, "outbound/big.bin", os.urandom(SIZE))
    proxy.faults.drop_range = True  # every GET answers the whole object
    dest = ws.root / "in"
    dest.mkdir()
    result = cli(
        "download", "--profile", ws.profile(endpoint=proxy.endpoint), "outbound/big.bin", dest
    )
    assert result.code == ExitCode.NETWORK, result.err
    assert "another range" in result.err
    assert _names(dest) == []


def test_a_range_cut_mid_body_resumes_from_the_first_missing_byte(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    data = os.urandom(SIZE)
    put_outbound(s3, ws.bucket, "outbound/big.bin", data)
    cut_at = MIB + 5
    done: list[str] = []

    def cut(path: str, byte_range: str) -> int | None:
        if byte_range == f"bytes={5 * MIB}-{10 * MIB - 1}" and not done:
            done.append(byte_range)
            return cut_at
        return None

    proxy.faults.cut_get = cut
    result = cli(
        "download",
        "--profile",
        ws.profile(endpoint=proxy.endpoint, max_attempts=2),
        "outbound/big.bin",
        ws.root / "got.bin",
    )
    assert result.code == 0, result.err
    assert (ws.root / "got.bin").read_bytes() == data
    ranges = [r["headers"].get("range") for r in proxy.faults.log("GET")]
    assert f"bytes={5 * MIB + cut_at}-{10 * MIB - 1}" in ranges  # only the missing bytes


def test_an_object_replaced_during_a_download_fails_it_and_nothing_lands(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    put_outbound(s3, ws.bucket, "outbound/big.bin", os.urandom(SIZE))
    dest = ws.root / "in"
    dest.mkdir()
    (dest / "big.bin").write_bytes(b"previous good copy")
    replaced: list[bool] = []

    def replace(kind: str, _query: dict[str, list[str]]) -> None:
        if kind == "GET" and not replaced:
            replaced.append(True)
            put_outbound(s3, ws.bucket, "outbound/big.bin", os.urandom(SIZE))

    proxy.faults.on_request = replace
    result = cli(
        "download", "--profile", ws.profile(endpoint=proxy.endpoint), "outbound/big.bin", dest
    )
    assert result.code == ExitCode.NETWORK, result.err
    assert "changed on the server" in result.err
    assert (dest / "big.bin").read_bytes() == b"previous good copy"
    assert not [n for n in _names(dest) if n.endswith(TEMP_SUFFIX)]


# -- uploads --------------------------------------------------------------------------------------


def test_a_part_changed_in_place_is_never_sent(ws: Workspace, s3: Any, proxy: Proxy) -> None:
    path = ws.file("export.csv", os.urandom(SIZE))
    stat = path.stat()

    def rewrite_part_3(kind: str, query: dict[str, list[str]]) -> None:
        if kind == "UploadPart" and query["partNumber"] == ["1"]:
            with path.open("r+b") as fh:  # same size, and the old modification time put back
                fh.seek(11 * MIB)
                fh.write(os.urandom(4096))
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    proxy.faults.on_request = rewrite_part_3
    result = cli("upload", "--profile", ws.profile(endpoint=proxy.endpoint, concurrency=1), path)
    assert result.code == ExitCode.CHANGED, result.err
    assert "part 3 differs from when the upload started" in result.err
    sent = [r["path"] for r in proxy.faults.log("UploadPart")]
    assert len(sent) == 2  # parts 1 and 2; part 3 failed as it was read, before a byte left
    assert s3.list_multipart_uploads(Bucket=ws.bucket).get("Uploads", []) == []
    assert list((ws.state / "uploads").glob("*.jsonl")) == []


def test_completion_answered_200_with_an_error_is_retried_then_resumed(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    # S3 can report a failed CompleteMultipartUpload with status 200 and an <Error> body.
    data = os.urandom(SIZE)
    ws.file("big.bin", data)
    profile = ws.profile(endpoint=proxy.endpoint, max_attempts=2)
    proxy.faults.complete_error_200 = 1
    retried = cli("upload", "--profile", profile, ws.root / "big.bin")
    assert retried.code == 0, retried.err
    assert len(proxy.faults.log("CompleteMultipartUpload")) == 2

    proxy.faults.requests.clear()
    proxy.faults.complete_error_200 = 2  # every attempt fails
    first = cli("upload", "--profile", profile, "--to", "inbound/again/", ws.root / "big.bin")
    assert first.code == ExitCode.NETWORK, first.err
    assert len(list((ws.state / "uploads").glob("*.jsonl"))) == 1  # kept for the re-run
    second = cli("upload", "--profile", profile, "--to", "inbound/again/", ws.root / "big.bin")
    assert second.code == 0, second.err
    assert "resumed: 3 part(s) already stored" in second.out
    assert s3.get_object(Bucket=ws.bucket, Key="inbound/again/big.bin")["Body"].read() == data


# -- no botocore client on the data path ----------------------------------------------------------


class _NoBotocore:
    """Stands in for the botocore clients: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the data path used a botocore client ({name})")


def test_large_uploads_and_downloads_need_no_botocore_client(ws: Workspace, s3: Any) -> None:
    profile = load_profile(ws.profile())
    Client(profile).preflight()  # remembered, as after any first command
    data = os.urandom(SIZE)
    ws.file("big.bin", data)
    put_outbound(s3, ws.bucket, "outbound/big.bin", data)

    client = Client(profile, Options(), clients=_NoBotocore())  # type: ignore[arg-type]
    uploaded = client.upload([ws.root / "big.bin"])
    downloaded = client.download("outbound/big.bin", ws.root / "got.bin")
    assert [r.result for r in uploaded + downloaded] == ["ok", "ok"], uploaded + downloaded
    assert s3.get_object(Bucket=ws.bucket, Key="inbound/big.bin")["Body"].read() == data
    assert (ws.root / "got.bin").read_bytes() == data


def test_one_attempt_in_the_profile_is_not_the_crt_default_of_six(
    ws: Workspace, proxy: Proxy
) -> None:
    # awscrt reads "0 retries" as "its default" (5, with backoff up to 20 s): the client asks
    # for the fewest it can, one.
    ws.file("small.csv", os.urandom(100_000))
    proxy.faults.drop_puts = True  # every PutObject's connection is cut mid-body
    profile = ws.profile(endpoint=proxy.endpoint, max_attempts=1)
    result = cli("upload", "--profile", profile, ws.root / "small.csv")
    assert result.code == ExitCode.NETWORK, result.err
    assert 1 <= len(proxy.faults.log("PutObject")) <= 2


def test_transfers_import_no_botocore(ws: Workspace, s3: Any) -> None:
    # botocore costs every command its import; the data path needs none of it (STS, cleanup
    # and credential sources other than the environment or a credentials file do).
    profile = ws.profile()
    Client(load_profile(profile)).preflight()  # remembered, as after any first command
    ws.file("big.bin", os.urandom(SIZE))
    put_outbound(s3, ws.bucket, "outbound/big.bin", os.urandom(SIZE))
    script = (
        "import sys\n"
        "from partner_transfer.cli import run\n"
        f"up = run(['upload', '-q', '--profile', {str(profile)!r}, {str(ws.root / 'big.bin')!r}])\n"
        f"down = run(['download', '-q', '--profile', {str(profile)!r}, 'outbound/big.bin', "
        f"{str(ws.root / 'got.bin')!r}])\n"
        "print(up, down, sorted({m.split('.')[0] for m in sys.modules} & {'botocore', 'boto3'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.split() == ["0", "0", "[]"], done.stdout + done.stderr


# -- interrupted ---------------------------------------------------------------------------------


class _StallingServer:
    """Answers every ranged GET with its headers and the first bytes of the range, then holds
    the connection open without sending more (a stalled download)."""

    def __init__(self, size: int) -> None:
        import socket

        self.size = size
        self.served = threading.Semaphore(0)  # released once for each body started
        self.release = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(sock,), daemon=True).start()

    def _answer(self, sock: Any) -> None:
        import re

        with sock:
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            found = re.search(rb"(?i)range: bytes=(\d+)-(\d+)", head)
            assert found is not None
            start, end = int(found[1]), int(found[2])
            sock.sendall(
                f"HTTP/1.1 206 Partial Content\r\nContent-Length: {end - start + 1}\r\n"
                f"Content-Range: bytes {start}-{end}/{self.size}\r\n\r\n".encode()
                + b"x" * 10
            )
            self.served.release()
            self.release.wait(30)

    def close(self) -> None:
        self.release.set()
        self.listener.close()


def test_an_interrupted_ranged_download_stops_its_workers_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C while the connections wait for bytes: the download must not return (and so its
    # caller must not close the temporary file's descriptor) while a worker could still write.
    from partner_transfer import ranged

    server = _StallingServer(4 * MIB)

    class Endpoint:  # what RangedGets uses of the CRT client
        host = f"127.0.0.1:{server.port}"
        tls = False

        def path(self, key: str) -> str:
            return f"/{key}"

        def sign(self, method: str, key: str, headers: dict[str, str]) -> dict[str, str]:
            return dict(headers)

    real_wait = ranged.wait
    interrupted: list[bool] = []

    def wait(futures: Any, **kwargs: Any) -> Any:
        if not interrupted:
            interrupted.append(True)
            for _ in range(4):  # every connection has its first bytes...
                assert server.served.acquire(timeout=10)
            time.sleep(0.3)  # ... and waits for the rest
            raise KeyboardInterrupt
        return real_wait(futures, **kwargs)

    monkeypatch.setattr(ranged, "wait", wait)
    submitted: list[Any] = []

    class Pool(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            future = super().submit(fn, *args, **kwargs)
            submitted.append(future)
            return future

    gets = ranged.RangedGets(Endpoint(), max_attempts=3)  # type: ignore[arg-type]
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT, 0o600)
    pool = Pool(4)
    try:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            gets.download(
                "k",
                fd,
                4 * MIB,
                headers={},
                part_size=MIB,
                pool=pool,
                connections=4,
                stop=threading.Event(),
            )
        assert submitted and all(f.done() for f in submitted)
        # The stalled reads were cut, not waited out (the read timeout is 60 s), and no range
        # was tried again once the download was stopped.
        assert time.monotonic() - started < ranged.READ_TIMEOUT / 4
        assert not any(isinstance(f.exception(), TransferError) for f in submitted)
    finally:
        server.close()
        pool.shutdown()
        os.close(fd)
        gets.close()
