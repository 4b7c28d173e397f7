"""Faults injected between the client and a real S3 server: corrupted bytes, dropped
connections, a killed client. The end state is always either exactly the original bytes or
nothing under the final name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.transfer.conftest import MIB, Proxy, Workspace, cli, put_outbound

pytestmark = pytest.mark.e2e  # talks to a moto server process over HTTP


def _dir_names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


@pytest.mark.parametrize("size", [1000, 12 * MIB], ids=["single-get", "ranged-gets"])
def test_corrupted_download_is_caught_and_never_lands(
    ws: Workspace, s3: Any, proxy: Proxy, size: int
) -> None:
    data = os.urandom(size)
    put_outbound(s3, ws.bucket, "outbound/report.bin", data)
    dest_dir = ws.root / "in"
    dest_dir.mkdir()
    (dest_dir / "report.bin").write_bytes(b"previous good copy")
    proxy.faults.corrupt_get = lambda path: path.endswith("/outbound/report.bin")
    result = cli(
        "download",
        "--profile",
        ws.profile(endpoint=proxy.endpoint),
        "outbound/report.bin",
        dest_dir,
    )
    assert result.code == 8, result.err
    assert "checksum mismatch" in result.err
    assert result.err.count("\n") == 1
    # The earlier file is untouched and no temporary is left behind.
    assert (dest_dir / "report.bin").read_bytes() == b"previous good copy"
    assert _dir_names(dest_dir) == ["report.bin"]
    (record,) = ws.records()
    assert record["result"] == "failed" and record["exit_code"] == 8

    proxy.faults.corrupt_get = None
    result = cli(
        "download",
        "--profile",
        ws.profile(endpoint=proxy.endpoint),
        "outbound/report.bin",
        dest_dir,
    )
    assert result.code == 0, result.err
    assert (dest_dir / "report.bin").read_bytes() == data


def test_corrupted_upload_part_is_caught_against_the_assembled_checksum(
    ws: Workspace, proxy: Proxy
) -> None:
    # moto does not verify part checksums (S3 does); the client still compares the checksum S3
    # computed for the assembled object with the file's.
    ws.file("big.bin", os.urandom(11 * MIB))
    proxy.faults.corrupt_part = lambda n: n == 2
    result = cli("upload", "--profile", ws.profile(endpoint=proxy.endpoint), ws.root / "big.bin")
    assert result.code == 8, result.err
    assert "checksum mismatch" in result.err


def _stored_parts(s3: Any, bucket: str, key: str) -> tuple[str, int]:
    (upload,) = s3.list_multipart_uploads(Bucket=bucket, Prefix=key)["Uploads"]
    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload["UploadId"]).get("Parts", [])
    return upload["UploadId"], len(parts)


def test_dropped_connection_mid_upload_then_resume(ws: Workspace, s3: Any, proxy: Proxy) -> None:
    data = os.urandom(26 * MIB)  # six parts of 5 MiB, the last one short
    ws.file("big.bin", data)
    profile = ws.profile(endpoint=proxy.endpoint, concurrency=2, max_attempts=2)
    proxy.faults.drop_parts_after = 3  # every later part has its connection cut mid-body

    first = cli("upload", "--profile", profile, ws.root / "big.bin")
    assert first.code == 9, first.err
    assert "resume" in first.err
    upload_id, stored = _stored_parts(s3, ws.bucket, "inbound/big.bin")
    assert stored == 3
    journals = list((ws.state / "uploads").glob("*.jsonl"))
    assert len(journals) == 1

    proxy.faults.drop_parts_after = None
    proxy.faults.requests.clear()
    second = cli("upload", "--profile", profile, ws.root / "big.bin")
    assert second.code == 0, second.err
    assert "resumed: 3 part(s) already stored" in second.out
    assert len(proxy.faults.log("UploadPart")) == 3  # only the missing parts were sent
    assert proxy.faults.log("CreateMultipartUpload") == []
    assert s3.get_object(Bucket=ws.bucket, Key="inbound/big.bin")["Body"].read() == data
    assert s3.list_multipart_uploads(Bucket=ws.bucket).get("Uploads", []) == []
    assert not journals[0].exists()
    assert upload_id  # the same upload was completed, not a new one


def test_changed_file_abandons_the_old_upload(ws: Workspace, s3: Any, proxy: Proxy) -> None:
    ws.file("big.bin", os.urandom(16 * MIB))
    profile = ws.profile(endpoint=proxy.endpoint, concurrency=1, max_attempts=1)
    proxy.faults.drop_parts_after = 1
    assert cli("upload", "--profile", profile, ws.root / "big.bin").code == 9
    old_id, _ = _stored_parts(s3, ws.bucket, "inbound/big.bin")

    new = os.urandom(16 * MIB)
    ws.file("big.bin", new)
    proxy.faults.drop_parts_after = None
    result = cli("upload", "--profile", profile, ws.root / "big.bin")
    assert result.code == 0, result.err
    assert "resumed" not in result.out
    assert s3.get_object(Bucket=ws.bucket, Key="inbound/big.bin")["Body"].read() == new
    uploads = s3.list_multipart_uploads(Bucket=ws.bucket).get("Uploads", [])
    assert old_id not in [u["UploadId"] for u in uploads]


def test_kill_9_mid_upload_then_resume(ws: Workspace, s3: Any, proxy: Proxy) -> None:
    data = os.urandom(30 * MIB)  # six parts
    ws.file("big.bin", data)
    profile = ws.profile(endpoint=proxy.endpoint, concurrency=1)
    proxy.faults.part_delay = 0.3
    exe = Path(sys.executable).with_name("partner-transfer")
    proc = subprocess.Popen(
        [str(exe), "upload", "--profile", str(profile), "-q", str(ws.root / "big.bin")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Wait until the journal holds two acknowledged parts, then kill without warning.
    deadline = time.monotonic() + 60
    journal_lines = 0
    while journal_lines < 3 and time.monotonic() < deadline and proc.poll() is None:
        files = list((ws.state / "uploads").glob("*.jsonl"))
        journal_lines = len(files[0].read_text().splitlines()) if files else 0
        time.sleep(0.02)
    assert proc.poll() is None, "the upload finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    _, stored = _stored_parts(s3, ws.bucket, "inbound/big.bin")
    assert 2 <= stored < 6
    proxy.faults.part_delay = 0
    proxy.faults.requests.clear()
    result = cli("upload", "--profile", profile, ws.root / "big.bin")
    assert result.code == 0, result.err
    assert "resumed" in result.out
    assert len(proxy.faults.log("UploadPart")) <= 6 - 2
    assert s3.get_object(Bucket=ws.bucket, Key="inbound/big.bin")["Body"].read() == data
    assert s3.list_multipart_uploads(Bucket=ws.bucket).get("Uploads", []) == []


def _replace_part_at_complete(
    s3: Any, ws: Workspace, number: int, times: int
) -> Any:
    """An ``on_request`` hook: before the first ``times`` CompleteMultipartUploads reach S3,
    part ``number`` is replaced with other bytes of the same size (a stale request landing)."""
    left = [times]

    def hook(kind: str, query: dict[str, list[str]]) -> None:
        if kind == "CompleteMultipartUpload" and left[0] > 0:
            left[0] -= 1
            s3.upload_part(
                Bucket=ws.bucket,
                Key="inbound/big.bin",
                UploadId=query["uploadId"][0],
                PartNumber=number,
                Body=os.urandom(5 * MIB),
            )

    return hook


def test_part_replaced_before_complete_is_sent_again(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    data = os.urandom(16 * MIB)
    ws.file("big.bin", data)
    proxy.faults.on_request = _replace_part_at_complete(s3, ws, number=2, times=1)
    result = cli("upload", "--profile", ws.profile(endpoint=proxy.endpoint), ws.root / "big.bin")
    assert result.code == 0, result.err
    assert s3.get_object(Bucket=ws.bucket, Key="inbound/big.bin")["Body"].read() == data
    sent = [int(r["query"]["partNumber"][0]) for r in proxy.faults.log("UploadPart")]
    assert sorted(sent) == [1, 2, 2, 3, 4]  # only the replaced part went twice
    assert len(proxy.faults.log("CompleteMultipartUpload")) == 2
    assert list((ws.state / "uploads").glob("*.jsonl")) == []


def test_part_acknowledged_under_a_stale_etag_is_sent_again(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    # Under SSE-KMS the same bytes sent twice get two ETags: the one recorded is stale.
    data = os.urandom(16 * MIB)
    ws.file("big.bin", data)
    stale = {3}  # only the first answer for part 3

    def once(number: int) -> bool:
        hit = number in stale
        stale.discard(number)
        return hit

    proxy.faults.stale_part_etag = once
    result = cli("upload", "--profile", ws.profile(endpoint=proxy.endpoint), ws.root / "big.bin")
    assert result.code == 0, result.err
    assert s3.get_object(Bucket=ws.bucket, Key="inbound/big.bin")["Body"].read() == data
    sent = [int(r["query"]["partNumber"][0]) for r in proxy.faults.log("UploadPart")]
    assert sorted(sent) == [1, 2, 3, 3, 4]
    assert len(proxy.faults.log("CompleteMultipartUpload")) == 2


def test_part_replaced_twice_fails_and_keeps_the_journal(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    ws.file("big.bin", os.urandom(16 * MIB))
    profile = ws.profile(endpoint=proxy.endpoint)
    proxy.faults.on_request = _replace_part_at_complete(s3, ws, number=2, times=2)
    result = cli("upload", "--profile", profile, ws.root / "big.bin")
    assert result.code != 0
    assert "InvalidPart" in result.err and result.err.count("\n") == 1
    assert "Traceback" not in result.err
    assert s3.list_object_versions(Bucket=ws.bucket, Prefix="inbound/big.bin").get(
        "Versions", []
    ) == []
    assert len(list((ws.state / "uploads").glob("*.jsonl"))) == 1
    proxy.faults.on_request = None
    again = cli("upload", "--profile", profile, ws.root / "big.bin")
    assert again.code == 0, again.err
    assert "resumed" in again.out


def test_cleanup_aborts_abandoned_uploads(ws: Workspace, s3: Any, proxy: Proxy) -> None:
    ws.file("big.bin", os.urandom(11 * MIB))
    profile = ws.profile(endpoint=proxy.endpoint, concurrency=1, max_attempts=1)
    proxy.faults.drop_parts_after = 1
    assert cli("upload", "--profile", profile, ws.root / "big.bin").code == 9
    # An upload S3 holds that no journal knows (e.g. from another machine).
    s3.create_multipart_upload(Bucket=ws.bucket, Key="inbound/orphan.bin")
    assert len(s3.list_multipart_uploads(Bucket=ws.bucket)["Uploads"]) == 2

    dry = cli("cleanup", "--profile", profile, "--remote", "--dry-run")
    assert dry.code == 0 and "would abort upload of inbound/big.bin" in dry.out
    assert len(s3.list_multipart_uploads(Bucket=ws.bucket)["Uploads"]) == 2
    result = cli("cleanup", "--profile", profile, "--remote")
    assert result.code == 0, result.err
    assert "aborted upload of inbound/big.bin" in result.out
    assert "aborted remote upload of inbound/orphan.bin" in result.out
    assert s3.list_multipart_uploads(Bucket=ws.bucket).get("Uploads", []) == []
    assert list((ws.state / "uploads").glob("*.jsonl")) == []


def test_ctrl_c_mid_upload_exits_130_and_keeps_the_journal(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    # Five parts of 16 MiB over one connection: part 2 reaches the proxy only after part 1 is
    # stored and in the journal. The signal is sent from the proxy while it holds part 2, so
    # the upload is certainly in flight, however loaded the machine (a test that polled the
    # journal and then signalled sometimes found the upload already finished).
    # The client gets Ctrl-C's default handling even when this suite was started in the
    # background by a shell without job control: such a shell starts it with SIGINT ignored,
    # every child inherits that, and Python then keeps ignoring it (the upload exited 0).
    ws.file("big.bin", os.urandom(80 * MIB))
    profile = ws.profile(endpoint=proxy.endpoint, concurrency=1)
    exe = Path(sys.executable).with_name("partner-transfer")
    running: list[subprocess.Popen[str]] = []
    signalled = threading.Event()

    def interrupt_at_part_2(kind: str, query: dict[str, list[str]]) -> None:
        if kind == "UploadPart" and query.get("partNumber") == ["2"] and running:
            running[0].send_signal(signal.SIGINT)
            signalled.set()
            time.sleep(1.0)  # part 2 is held while the client handles the signal

    proxy.faults.on_request = interrupt_at_part_2
    with_default_sigint = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL);"
                           " os.execv(sys.argv[1], sys.argv[1:])")
    proc = subprocess.Popen(
        [sys.executable, "-c", with_default_sigint,
         str(exe), "upload", "--profile", str(profile), str(ws.root / "big.bin")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running.append(proc)
    _, err = proc.communicate(timeout=60)
    assert signalled.is_set(), f"the upload never sent part 2: {err}"
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "re-run the same command to resume" in err
    assert len(list((ws.state / "uploads").glob("*.jsonl"))) == 1
    proxy.faults.on_request = None
    result = cli("upload", "--profile", profile, ws.root / "big.bin")
    assert result.code == 0, result.err
    assert "resumed" in result.out
