"""Local failures and hostile local inputs (issue 16): a success means the whole file arrived,
every entry that cannot be sent is refused and counted, and every local file-system failure is
one line with its own exit code, losing nothing. Against a real moto server process."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from partner_transfer.errors import ErrorContext, ExitCode, classify
from partner_transfer.keys import TEMP_SUFFIX
from partner_transfer.profile import parse_profile
from tests.transfer.conftest import (
    ACCOUNT,
    KEY_ARN,
    MIB,
    REGION,
    Proxy,
    Workspace,
    cli,
    put_outbound,
)

pytestmark = pytest.mark.e2e  # talks to a moto server process over HTTP


def last_line(text: str) -> str:
    assert "Traceback" not in text
    return text.strip().splitlines()[-1]


def objects(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return [o["Key"] for o in listed]


# -- a success means the whole file arrived ------------------------------------------------------


def grow_on(kind: str, path: Path, nth: int = 1) -> Any:
    """A proxy hook that appends to ``path`` when the ``nth`` request of ``kind`` arrives."""
    seen = {"count": 0}

    def hook(request_kind: str, query: dict[str, list[str]]) -> None:
        if request_kind == kind:
            seen["count"] += 1
            if seen["count"] == nth:
                with path.open("ab") as fh:
                    fh.write(os.urandom(MIB))

    return hook


def test_a_file_growing_during_a_multipart_upload_is_refused_and_nothing_completes(
    ws: Workspace, s3: Any, proxy: Proxy
) -> None:
    path = ws.file("export.csv", os.urandom(11 * MIB))  # three 5 MiB parts
    proxy.faults.on_request = grow_on("UploadPart", path, nth=2)
    result = cli("upload", "--profile", ws.profile(endpoint=proxy.endpoint), path)
    assert result.code == ExitCode.CHANGED, result.err
    line = last_line(result.err)
    assert str(path) in line and "changed while it was being uploaded" in line
    assert "uploaded " not in result.out
    assert objects(s3, ws.bucket) == []  # aborted: no object, no upload left open
    assert s3.list_multipart_uploads(Bucket=ws.bucket).get("Uploads", []) == []
    assert list((ws.state / "uploads").glob("*.jsonl")) == []
    assert [r["result"] for r in ws.records()] == ["failed"]


def test_a_file_growing_during_a_single_request_upload_is_not_reported_as_uploaded(
    ws: Workspace, proxy: Proxy
) -> None:
    path = ws.file("small.csv", os.urandom(100_000))
    proxy.faults.on_request = grow_on("PutObject", path)
    result = cli(
        "upload", "--commit-manifest", "--profile", ws.profile(endpoint=proxy.endpoint), path
    )
    assert result.code == ExitCode.CHANGED, result.err
    line = last_line(result.err)
    assert str(path) in line and "not recorded as uploaded" in line
    assert "uploaded " not in result.out
    assert [r["result"] for r in ws.records()] == ["failed"]  # no commit marker either
    assert proxy.faults.log("PutObject")[-1]["path"].endswith("small.csv")


# -- entries that are not regular files ---------------------------------------------------------


def test_a_fifo_given_as_a_source_is_refused(ws: Workspace) -> None:
    fifo = ws.root / "pipe"
    os.mkfifo(fifo)
    result = cli("upload", "--profile", ws.profile(), fifo)
    assert result.code == ExitCode.REFUSED, result.err
    line = last_line(result.err)
    assert str(fifo) in line and "FIFO" in line


def test_a_symlink_loop_is_reported_as_a_loop(ws: Workspace) -> None:
    loop = ws.root / "loop.csv"
    loop.symlink_to(loop)
    result = cli("upload", "--profile", ws.profile(), loop)
    assert result.code == ExitCode.REFUSED, result.err
    line = last_line(result.err)
    assert "symlink loop" in line and str(loop) in line
    assert "no such file" not in result.err


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "folder" / "listener.sock"
    path.parent.mkdir(exist_ok=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    yield path
    server.close()


def test_a_folder_upload_counts_and_reports_what_it_skipped(
    ws: Workspace, s3: Any, unix_socket: Path
) -> None:
    folder = unix_socket.parent
    (folder / "data.csv").write_bytes(b"id\n1\n")
    os.mkfifo(folder / "pipe")
    (folder / "loop").symlink_to(folder / "loop")
    result = cli("upload", "--profile", ws.profile(), folder)
    assert result.code == ExitCode.REFUSED, result.err
    assert "1 ok, 3 refused" in result.err
    for name in ("pipe", "loop", "listener.sock"):
        assert str(folder / name) in result.err
    assert objects(s3, ws.bucket) == ["inbound/folder/data.csv"]
    assert sorted(r["result"] for r in ws.records()) == ["ok", "refused", "refused", "refused"]


# -- a refused key in a prefix download ---------------------------------------------------------


def test_a_refused_key_in_a_prefix_download_does_not_stop_the_others(
    ws: Workspace, s3: Any
) -> None:
    put_outbound(s3, ws.bucket, "outbound/a.csv", b"a")
    put_outbound(s3, ws.bucket, "outbound/x/../../escape.csv", b"evil")
    put_outbound(s3, ws.bucket, "outbound/z.csv", b"z")
    dest = ws.root / "dest"
    result = cli("download", "--profile", ws.profile(), "outbound/", dest)
    assert result.code == ExitCode.REFUSED, result.err
    assert "outbound/x/../../escape.csv" in last_line(result.err)
    assert (dest / "a.csv").read_bytes() == b"a"
    assert (dest / "z.csv").read_bytes() == b"z"
    assert not (ws.root / "escape.csv").exists()
    assert sorted(r["result"] for r in ws.records()) == ["ok", "ok", "refused"]


# -- local file-system failures ------------------------------------------------------------------


def no_temporary_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


def test_a_folder_where_the_downloaded_file_goes_is_a_local_io_error(
    ws: Workspace, s3: Any
) -> None:
    put_outbound(s3, ws.bucket, "outbound/r.csv", b"report")
    dest = ws.root / "dest"
    (dest / "r.csv").mkdir(parents=True)  # download KEY dest/ puts the file at dest/r.csv
    result = cli("download", "--profile", ws.profile(), "outbound/r.csv", f"{dest}/")
    assert result.code == ExitCode.LOCAL_IO, result.err
    line = last_line(result.err)
    assert str(dest / "r.csv") in line and "folder is in the way" in line
    assert "unexpected error" not in result.err
    assert no_temporary_files(dest)


def test_a_file_where_the_download_folder_goes_is_a_local_io_error(
    ws: Workspace, s3: Any
) -> None:
    put_outbound(s3, ws.bucket, "outbound/sub/r.csv", b"report")
    dest = ws.root / "dest"
    dest.mkdir()
    (dest / "sub").write_bytes(b"keep me")
    result = cli("download", "--profile", ws.profile(), "outbound/", dest)
    assert result.code == ExitCode.LOCAL_IO, result.err
    line = last_line(result.err)
    assert str(dest / "sub") in line and "file is in the way" in line
    assert (dest / "sub").read_bytes() == b"keep me"


def test_download_key_into_a_folder_named_with_a_trailing_separator_creates_it(
    ws: Workspace, s3: Any
) -> None:
    put_outbound(s3, ws.bucket, "outbound/r.csv", b"report")
    result = cli("download", "--profile", ws.profile(), "outbound/r.csv", f"{ws.root}/new/")
    assert result.code == 0, result.err
    assert (ws.root / "new" / "r.csv").read_bytes() == b"report"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real file system that runs out of space (needs root, as CI has)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("size", [2 * MIB, 12 * MIB], ids=["single-get", "ranged-gets"])
def test_disk_full_keeps_the_earlier_file_and_leaves_no_temporary_file(
    ws: Workspace, s3: Any, small_disk: Path, size: int
) -> None:
    put_outbound(s3, ws.bucket, "outbound/big.bin", os.urandom(size))
    earlier = small_disk / "big.bin"
    earlier.write_bytes(b"the earlier version")
    result = cli("download", "--profile", ws.profile(), "outbound/big.bin", earlier)
    assert result.code == ExitCode.LOCAL_IO, result.err
    line = last_line(result.err)
    assert str(earlier) in line and "disk is full" in line
    assert earlier.read_bytes() == b"the earlier version"
    assert no_temporary_files(small_disk)


def test_permission_denied_is_a_local_io_error_naming_the_path() -> None:
    # Tests run as root, which no permission bit stops: classify the error the OS raises.
    error = PermissionError(errno.EACCES, "Permission denied", "/data/export.csv")
    result = classify(error, ErrorContext())
    assert result.code is ExitCode.LOCAL_IO
    assert "/data/export.csv" in result.message and "permission" in result.message
    assert "unexpected" not in result.message


def test_a_profile_path_that_is_a_folder_is_a_config_error(ws: Workspace) -> None:
    result = cli("ls", "--profile", ws.root)
    assert result.code == ExitCode.CONFIG, result.err
    line = last_line(result.err)
    assert str(ws.root) in line and "is a folder" in line


def test_a_deeply_nested_profile_is_a_config_error(ws: Workspace) -> None:
    profile = ws.root / "deep.toml"
    profile.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    result = cli("ls", "--profile", profile)
    assert result.code == ExitCode.CONFIG, result.err
    assert str(profile) in last_line(result.err)
    assert "unexpected" not in result.err


# -- strict profile values, AWS_REGION ----------------------------------------------------------

BASE = {
    "customer": "acme",
    "bucket": f"phi-acme-{ACCOUNT}-{REGION}",
    "region": REGION,
    "bucket_owner": ACCOUNT,
    "kms_key_arn": KEY_ARN,
    "inbound_prefix": "inbound/",
}


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"transfer": {"concurrency": True}}, "concurrency must be an integer"),
        ({"transfer": {"max_attempts": False}}, "max attempts must be an integer"),
        ({"transfer": {"part_size_mib": True}}, "part size must be an integer"),
        ({"state_dir": 5}, "state_dir must be a non-empty string"),
        ({"manifest": True}, "manifest must be a non-empty string"),
        ({"auth": {"method": 5}}, "auth.method"),
    ],
)
def test_profile_values_of_the_wrong_type_are_refused(
    extra: dict[str, Any], problem: str
) -> None:
    from partner_transfer.errors import TransferError

    with pytest.raises(TransferError) as caught:
        parse_profile({**BASE, **extra}, source="p.toml")
    assert caught.value.code is ExitCode.CONFIG
    assert problem in caught.value.message


def test_profile_values_of_the_right_type_are_accepted() -> None:
    profile = parse_profile(
        {**BASE, "state_dir": "/tmp/s", "transfer": {"concurrency": 3}}, source="p.toml"
    )
    assert profile.tuning.concurrency == 3 and profile.state_dir == Path("/tmp/s")


def test_aws_region_is_honoured_like_aws_default_region(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    result = cli(
        "profile", "init", "--stack", "PhiExchange-absent", "--endpoint-url", ws.endpoint,
        "-o", ws.root / "p.toml",
    )
    # The region was found: the request reached CloudFormation, which has no such stack.
    assert "no region" not in result.err, result.err
    assert result.code != ExitCode.USAGE


def test_no_region_at_all_is_a_usage_error(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    result = cli(
        "profile", "init", "--stack", "PhiExchange-absent", "--endpoint-url", ws.endpoint,
        "-o", ws.root / "p.toml",
    )
    assert result.code == ExitCode.USAGE
    assert "AWS_REGION" in last_line(result.err)
