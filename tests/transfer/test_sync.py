"""sync sends only what differs, judged by the full-object checksum, and a second run with
nothing changed sends nothing."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.transfer.conftest import MIB, Proxy, Workspace, cli, put_outbound

pytestmark = pytest.mark.e2e  # talks to a moto server process over HTTP


def test_sync_up_is_idempotent(ws: Workspace, s3: Any, proxy: Proxy) -> None:
    ws.file("s/a.csv", b"a")
    ws.file("s/big.bin", os.urandom(7 * MIB))
    ws.file("s/empty", b"")
    profile = ws.profile(endpoint=proxy.endpoint)
    first = cli("sync", "up", "--profile", profile, ws.root / "s")
    assert first.code == 0, first.err
    versions = {
        k: s3.head_object(Bucket=ws.bucket, Key=k)["VersionId"]
        for k in ("inbound/s/a.csv", "inbound/s/big.bin", "inbound/s/empty")
    }

    proxy.faults.requests.clear()
    second = cli("sync", "up", "--profile", profile, ws.root / "s")
    assert second.code == 0, second.err
    writes = [r for r in proxy.faults.requests if r["kind"] not in ("GET", "HEAD", "POST")]
    assert writes == []
    assert second.out.count("unchanged") == 3
    for key, version in versions.items():
        assert s3.head_object(Bucket=ws.bucket, Key=key)["VersionId"] == version
    assert [r["result"] for r in ws.records()[-3:]] == ["skipped"] * 3


def test_sync_up_sends_changed_files_even_with_the_same_size(ws: Workspace, s3: Any) -> None:
    ws.file("s/a.csv", b"aaaa")
    ws.file("s/b.csv", b"bbbb")
    assert cli("sync", "up", "--profile", ws.profile(), ws.root / "s").code == 0
    ws.file("s/a.csv", b"AAAA")  # same size, new content
    result = cli("sync", "up", "--profile", ws.profile(), ws.root / "s")
    assert result.code == 0, result.err
    assert "uploaded" in result.out and result.out.count("unchanged") == 1
    assert s3.get_object(Bucket=ws.bucket, Key="inbound/s/a.csv")["Body"].read() == b"AAAA"


def test_sync_down_is_idempotent_and_repairs_local_changes(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    put_outbound(s3, ws.bucket, "outbound/r/a.csv", b"remote a")
    put_outbound(s3, ws.bucket, "outbound/r/big.bin", big := os.urandom(6 * MIB))
    profile = ws.profile(endpoint=proxy.endpoint)
    dest = ws.root / "local"
    assert cli("sync", "down", "--profile", profile, "outbound/r/", dest).code == 0

    proxy.faults.requests.clear()
    again = cli("sync", "down", "--profile", profile, "outbound/r/", dest)
    assert again.code == 0, again.err
    gets = [r for r in proxy.faults.requests if r["kind"] == "GET" and "list-type" not in r["path"]]
    assert not [g for g in gets if g["path"].endswith((".csv", ".bin"))]  # no object bodies
    assert again.out.count("unchanged") == 2

    (dest / "a.csv").write_bytes(b"local edit")
    fixed = cli("sync", "down", "--profile", profile, "outbound/r/", dest)
    assert fixed.code == 0, fixed.err
    assert (dest / "a.csv").read_bytes() == b"remote a"
    assert (dest / "big.bin").read_bytes() == big


def test_sync_dry_run_reports_what_would_change(ws: Workspace) -> None:
    ws.file("s/a.csv", b"a")
    ws.file("s/b.csv", b"b")
    assert (
        cli("upload", "--profile", ws.profile(), ws.root / "s/a.csv", "--to", "inbound/s/").code
        == 0
    )
    result = cli("sync", "up", "--profile", ws.profile(), "--dry-run", ws.root / "s")
    assert result.code == 0, result.err
    assert "would-skip" in result.out and "would-upload" in result.out
    assert len(ws.records()) == 1  # only the real upload above
