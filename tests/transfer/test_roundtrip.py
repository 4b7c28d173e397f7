"""Round trips through a real S3 API server process over HTTP: what goes up comes back
byte for byte, with the request headers the bucket policy demands."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import boto3
import pytest
from awscrt import checksums as crt
from botocore.config import Config

from tests.transfer.conftest import (
    ACCOUNT,
    KEY_ARN,
    MIB,
    REGION,
    Proxy,
    Workspace,
    cli,
    cli_subprocess,
    put_outbound,
)

pytestmark = pytest.mark.e2e  # talks to a moto server process over HTTP


def crc(data: bytes) -> str:
    return base64.b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()


SIZES = {
    "empty": 0,
    "small": 1234,
    "one-part-exactly": 5 * MIB,  # the largest single PutObject with 5 MiB parts
    "multipart": 12 * MIB + 17,  # three parts, the last one short
}


@pytest.mark.parametrize("name", SIZES)
def test_upload_stores_exact_bytes_with_full_object_checksum(
    ws: Workspace, s3: Any, name: str
) -> None:
    data = os.urandom(SIZES[name])
    ws.file(f"send/{name}.bin", data)
    result = cli("upload", "--profile", ws.profile(), ws.root / f"send/{name}.bin")
    assert result.code == 0, result.err
    key = f"inbound/{name}.bin"
    head = s3.head_object(Bucket=ws.bucket, Key=key, ChecksumMode="ENABLED")
    assert s3.get_object(Bucket=ws.bucket, Key=key)["Body"].read() == data
    assert head["ChecksumCRC64NVME"] == crc(data)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == KEY_ARN
    assert head["Metadata"]["partner-transfer-crc64nvme"] == crc(data)
    if SIZES[name] > 5 * MIB:
        assert head["ChecksumType"] == "FULL_OBJECT"
        assert head["ETag"].endswith('-3"')


@pytest.mark.parametrize("name", SIZES)
def test_download_returns_exact_bytes(ws: Workspace, s3: Any, name: str) -> None:
    data = os.urandom(SIZES[name])
    put_outbound(s3, ws.bucket, f"outbound/{name}.bin", data)
    dest = ws.root / "got" / f"{name}.bin"
    result = cli("download", "--profile", ws.profile(), f"outbound/{name}.bin", dest)
    assert result.code == 0, result.err
    assert dest.read_bytes() == data
    assert dest.stat().st_mode & 0o777 == 0o600  # PHI is private to the user
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary left


def test_directory_round_trip_keeps_tree_and_filters(ws: Workspace, s3: Any) -> None:
    files = {
        "batch/a.csv": b"a,b\n1,2\n",
        "batch/sub/b.csv": os.urandom(7 * MIB),
        "batch/sub/skip.tmp": b"scratch",
        "batch/empty.csv": b"",
    }
    for rel, data in files.items():
        ws.file(rel, data)
    up = cli("upload", "--profile", ws.profile(), "--exclude", "*.tmp", ws.root / "batch")
    assert up.code == 0, up.err
    listed = s3.list_objects_v2(Bucket=ws.bucket, Prefix="inbound/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        "inbound/batch/a.csv",
        "inbound/batch/empty.csv",
        "inbound/batch/sub/b.csv",
    ]
    # Serve the same objects back through outbound/ as the operator would.
    for obj in listed:
        body = s3.get_object(Bucket=ws.bucket, Key=obj["Key"])["Body"].read()
        put_outbound(s3, ws.bucket, "outbound/" + obj["Key"].removeprefix("inbound/"), body)
    down = cli("download", "--profile", ws.profile(), "outbound/", ws.root / "back")
    assert down.code == 0, down.err
    for rel in ("batch/a.csv", "batch/sub/b.csv", "batch/empty.csv"):
        assert (ws.root / "back" / rel).read_bytes() == files[rel]
    assert not (ws.root / "back/batch/sub/skip.tmp").exists()


def test_every_write_carries_kms_owner_and_checksum_headers(ws: Workspace, proxy: Proxy) -> None:
    ws.file("send/small.bin", b"x" * 100)
    ws.file("send/big.bin", os.urandom(11 * MIB))
    result = cli("upload", "--profile", ws.profile(endpoint=proxy.endpoint), ws.root / "send")
    assert result.code == 0, result.err
    faults = proxy.faults
    for kind in ("PutObject", "CreateMultipartUpload"):
        for request in faults.log(kind):
            headers = request["headers"]
            assert headers["x-amz-server-side-encryption"] == "aws:kms"
            assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == KEY_ARN
            assert headers["x-amz-expected-bucket-owner"] == ACCOUNT
    assert len(faults.log("PutObject")) == 1
    assert faults.log("PutObject")[0]["headers"]["x-amz-checksum-crc64nvme"] == crc(b"x" * 100)
    assert "expect" not in faults.log("PutObject")[0]["headers"]  # no 100-continue round trip
    assert faults.log("CreateMultipartUpload")[0]["headers"]["x-amz-checksum-type"] == "FULL_OBJECT"
    parts = faults.log("UploadPart")
    assert len(parts) == 3
    assert all("x-amz-checksum-crc64nvme" in p["headers"] for p in parts)
    assert all(p["headers"]["x-amz-expected-bucket-owner"] == ACCOUNT for p in parts)
    complete = faults.log("CompleteMultipartUpload")[0]["headers"]
    assert complete["x-amz-checksum-type"] == "FULL_OBJECT"
    assert complete["x-amz-checksum-crc64nvme"] == crc((ws.root / "send/big.bin").read_bytes())
    assert complete["x-amz-mp-object-size"] == str(11 * MIB)


def test_manifest_records_each_transfer(ws: Workspace, s3: Any) -> None:
    data = os.urandom(6 * MIB)
    ws.file("m/one.bin", data)
    ws.file("m/two.txt", b"two")
    assert cli("upload", "--profile", ws.profile(), ws.root / "m").code == 0
    put_outbound(s3, ws.bucket, "outbound/reply.txt", b"reply")
    assert cli("download", "--profile", ws.profile(), "outbound/reply.txt", ws.root).code == 0

    records = ws.records()
    assert [(r["direction"], r["key"], r["result"]) for r in records] == [
        ("upload", "inbound/m/two.txt", "ok"),
        ("upload", "inbound/m/one.bin", "ok"),
        ("download", "outbound/reply.txt", "ok"),
    ]
    one = records[1]
    head = s3.head_object(Bucket=ws.bucket, Key="inbound/m/one.bin")
    assert one["version_id"] == head["VersionId"]
    assert one["size"] == len(data)
    assert one["checksum"] == crc(data)
    assert one["checksum_algorithm"] == "CRC64NVME"
    assert one["kms_key_arn"] == KEY_ARN
    assert one["bucket"] == ws.bucket
    assert one["local_path"] == str(ws.root / "m/one.bin")
    assert one["caller_arn"].startswith(f"arn:aws:sts::{ACCOUNT}:") or one["caller_arn"].startswith(
        f"arn:aws:iam::{ACCOUNT}:"
    )
    assert one["time"].endswith("Z")
    assert records[2]["local_path"] == str(ws.root / "reply.txt")
    assert records[2]["checksum"] == crc(b"reply")
    assert len({r["batch_id"] for r in records}) == 2
    text = ws.manifest.read_text()
    assert "fake-secret" not in text and "AKIAFAKE" not in text  # never credentials


def test_failed_transfer_is_recorded_with_its_exit_code(ws: Workspace) -> None:
    result = cli("download", "--profile", ws.profile(), "outbound/nothing.txt", ws.root / "x")
    assert result.code == 7
    (record,) = ws.records()
    assert record["result"] == "failed"
    assert record["exit_code"] == 7
    assert "not found" in record["error"]


def test_commit_manifest_is_uploaded_last_and_lists_the_batch(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    ws.file("b/x.csv", b"x")
    ws.file("b/y.csv", os.urandom(6 * MIB))
    profile = ws.profile(endpoint=proxy.endpoint)
    result = cli(
        "upload",
        "--profile",
        profile,
        "--to",
        "inbound/2026-11/",
        "--commit-manifest",
        ws.root / "b",
    )
    assert result.code == 0, result.err
    writes = [
        r for r in proxy.faults.requests if r["kind"] in ("PutObject", "CompleteMultipartUpload")
    ]
    last = writes[-1]
    assert last["kind"] == "PutObject"
    assert "/inbound/2026-11/_manifests/" in last["path"]
    key = last["path"].split(f"/{ws.bucket}/", 1)[1]
    document = json.loads(s3.get_object(Bucket=ws.bucket, Key=key)["Body"].read())
    assert sorted(f["key"] for f in document["files"]) == [
        "inbound/2026-11/b/x.csv",
        "inbound/2026-11/b/y.csv",
    ]
    assert document["file_count"] == 2
    assert document["total_bytes"] == 1 + 6 * MIB
    assert key == f"inbound/2026-11/_manifests/{document['batch_id']}.json"


def test_commit_manifest_is_withheld_when_a_file_fails(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    ws.file("c/ok.csv", b"fine")
    ws.file("c/big.bin", os.urandom(11 * MIB))
    proxy.faults.corrupt_part = lambda n: n == 2
    result = cli(
        "upload",
        "--profile",
        ws.profile(endpoint=proxy.endpoint),
        "--commit-manifest",
        ws.root / "c",
    )
    assert result.code == 8
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=ws.bucket).get("Contents", [])]
    assert not any("_manifests/" in k for k in keys)


def test_dry_run_changes_nothing(ws: Workspace, s3: Any, proxy: Proxy) -> None:
    ws.file("d/a.csv", b"a")
    profile = ws.profile(endpoint=proxy.endpoint)
    result = cli("upload", "--profile", profile, "--dry-run", ws.root / "d")
    assert result.code == 0, result.err
    assert "would-upload" in result.out and "inbound/d/a.csv" in result.out
    assert proxy.faults.requests == []
    assert not ws.manifest.exists()
    put_outbound(s3, ws.bucket, "outbound/r.csv", b"r")
    result = cli("download", "--profile", profile, "--dry-run", "outbound/", ws.root / "dl")
    assert result.code == 0, result.err
    assert "would-download" in result.out
    assert not (ws.root / "dl").exists()
    assert {r["kind"] for r in proxy.faults.requests} == {"GET"}  # listing only


def test_ls_lists_allowed_prefixes(ws: Workspace, s3: Any) -> None:
    put_outbound(s3, ws.bucket, "outbound/r1.csv", b"12345")
    s3.put_object(Bucket=ws.bucket, Key="elsewhere/x", Body=b"x")
    result = cli("ls", "--profile", ws.profile())
    assert result.code == 0, result.err
    assert "outbound/r1.csv" in result.out
    assert "elsewhere/x" not in result.out
    assert cli("ls", "--profile", ws.profile(), "elsewhere/").code == 6


def test_download_accepts_objects_from_other_tools_with_their_checksum(
    ws: Workspace, s3: Any
) -> None:
    # boto3's default: a full-object CRC32 computed by botocore.
    s3.put_object(
        Bucket=ws.bucket, Key="outbound/crc32.bin", Body=b"data", ChecksumAlgorithm="CRC32"
    )
    result = cli("download", "--profile", ws.profile(), "outbound/crc32.bin", ws.root / "c.bin")
    assert result.code == 0, result.err
    assert "CRC32=" in result.out
    assert (ws.root / "c.bin").read_bytes() == b"data"


def test_download_refuses_objects_without_checksum_unless_allowed(ws: Workspace) -> None:
    plain = boto3.client(
        "s3",
        endpoint_url=ws.endpoint,
        region_name=REGION,
        config=Config(request_checksum_calculation="when_required"),
    )
    plain.put_object(Bucket=ws.bucket, Key="outbound/plain.bin", Body=b"plain")
    head = plain.head_object(Bucket=ws.bucket, Key="outbound/plain.bin", ChecksumMode="ENABLED")
    assert not any(k.startswith("Checksum") for k in head)
    dest = ws.root / "p.bin"
    result = cli("download", "--profile", ws.profile(), "outbound/plain.bin", dest)
    assert result.code == 8
    assert "--allow-unverified" in result.err
    assert not dest.exists()
    result = cli(
        "download", "--profile", ws.profile(), "--allow-unverified", "outbound/plain.bin", dest
    )
    assert result.code == 0, result.err
    assert dest.read_bytes() == b"plain"


def test_python_api_matches_cli(ws: Workspace, s3: Any) -> None:
    from partner_transfer import Client, Options, load_profile

    ws.file("api/a.txt", b"api")
    client = Client(load_profile(ws.profile()), Options())
    (outcome,) = client.upload([ws.root / "api/a.txt"])
    assert outcome.result == "ok"
    assert outcome.key == "inbound/a.txt"
    assert outcome.checksum == crc(b"api")
    assert s3.get_object(Bucket=ws.bucket, Key="inbound/a.txt")["Body"].read() == b"api"


def test_console_script_runs_as_a_process(ws: Workspace) -> None:
    ws.file("proc.txt", b"process")
    done = cli_subprocess("upload", "--profile", ws.profile(), "-q", ws.root / "proc.txt")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    missing = cli_subprocess("upload", "--profile", ws.root / "nope.toml", ws.root / "proc.txt")
    assert missing.returncode == 3
    assert missing.stderr.count("\n") == 1
    assert "Traceback" not in missing.stderr


def test_sts_can_live_at_its_own_endpoint(ws: Workspace, proxy: Proxy) -> None:
    ws.file("s.txt", b"s")
    profile = ws.profile(endpoint=proxy.endpoint, sts_endpoint=ws.endpoint)
    result = cli("upload", "--profile", profile, ws.root / "s.txt")
    assert result.code == 0, result.err
    assert [r["path"] for r in proxy.faults.requests if r["kind"] == "POST"] == []  # no STS
    assert len(proxy.faults.log("PutObject")) == 1
    (record,) = ws.records()
    assert record["caller_arn"]
