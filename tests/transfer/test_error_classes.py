"""Every failure class produces its one-line message and its exit code, with no traceback,
against a real server process (moto enforcing IAM where access is the point)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.transfer.conftest import (
    ACCOUNT,
    MIB,
    Workspace,
    admin_client,
    cli,
    free_port,
    put_outbound,
)

pytestmark = pytest.mark.e2e  # talks to a moto server process over HTTP


def one_line(text: str) -> str:
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def _partner_user(endpoint: str, bucket: str, name: str) -> dict[str, str]:
    """An IAM user allowed to write inbound/ only (no list, no outbound), and its key."""
    iam = admin_client(endpoint, "iam")
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                "Resource": f"arn:aws:s3:::{bucket}/inbound/*",
            }
        ],
    }
    iam.put_user_policy(UserName=name, PolicyName="inbound", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


def _secret_file(ws: Workspace, creds: dict[str, str]) -> Path:
    """A credentials file with the rotation secret's structure."""
    secret = {
        "user_name": "phi-exchange-acme-partner",
        **creds,
        "bucket": ws.bucket,
        "region": "eu-west-2",
        "bucket_owner": ACCOUNT,
        "kms_key_arn": "unused-here",
        "inbound_prefix": "inbound/",
        "outbound_prefix": "outbound/",
        "created_at": "2026-11-28T00:00:00Z",
    }
    path = ws.root / "acme-credentials.json"
    path.write_text(json.dumps(secret))
    return path


def test_access_denied_names_principal_bucket_and_prefix(
    ws: Workspace, s3: Any, moto_auth: Callable[[], None]
) -> None:
    put_outbound(s3, ws.bucket, "outbound/r.csv", b"r")
    creds = _partner_user(ws.endpoint, ws.bucket, f"partner-{ws.bucket[4:14]}")
    secret = _secret_file(ws, creds)
    profile = ws.profile(auth=f'method = "credentials-file"\ncredentials_file = "{secret}"')
    ws.file("ok.csv", b"fine")
    moto_auth()

    allowed = cli("upload", "--profile", profile, ws.root / "ok.csv")
    assert allowed.code == 0, allowed.err  # the grant works: the denial below is about scope
    denied = cli("download", "--profile", profile, "outbound/r.csv", ws.root / "r.csv")
    assert denied.code == 5
    line = one_line(denied.err)
    assert line.startswith("partner-transfer: access denied:")
    assert f"arn:aws:iam::{ACCOUNT}:user/partner-" in line
    assert f"s3://{ws.bucket}/outbound/r.csv" in line
    assert not (ws.root / "r.csv").exists()


def test_rotated_key_says_fetch_the_new_one(ws: Workspace, moto_auth: Callable[[], None]) -> None:
    name = f"rotated-{ws.bucket[4:14]}"
    creds = _partner_user(ws.endpoint, ws.bucket, name)
    admin_client(ws.endpoint, "iam").delete_access_key(
        UserName=name, AccessKeyId=creds["access_key_id"]
    )
    secret = _secret_file(ws, creds)
    profile = ws.profile(auth=f'method = "credentials-file"\ncredentials_file = "{secret}"')
    ws.file("a.csv", b"a")
    moto_auth()
    result = cli("upload", "--profile", profile, ws.root / "a.csv")
    assert result.code == 4
    line = one_line(result.err)
    masked = f"{creds['access_key_id'][:4]}…{creds['access_key_id'][-4:]}"
    assert masked in line
    assert "rotated" in line and "rotation secret" in line
    assert creds["secret_access_key"] not in line
    assert creds["access_key_id"] not in line


def test_wrong_secret_is_a_credentials_error(ws: Workspace, moto_auth: Callable[[], None]) -> None:
    creds = _partner_user(ws.endpoint, ws.bucket, f"wrongsecret-{ws.bucket[4:14]}")
    creds["secret_access_key"] = "x" * 40
    profile = ws.profile(
        auth=f'method = "credentials-file"\ncredentials_file = "{_secret_file(ws, creds)}"'
    )
    ws.file("a.csv", b"a")
    moto_auth()
    result = cli("upload", "--profile", profile, ws.root / "a.csv")
    assert result.code == 4
    assert "rotated" in one_line(result.err)


def test_wrong_region_says_which_region(ws: Workspace) -> None:
    ws.file("a.csv", b"a")
    result = cli("upload", "--profile", ws.profile(region="us-east-1"), ws.root / "a.csv")
    assert result.code == 10
    line = one_line(result.err)
    assert "is in eu-west-2 but the profile says us-east-1" in line
    assert 'region = "eu-west-2"' in line


def test_missing_connection_profile(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARTNER_TRANSFER_PROFILE", raising=False)
    result = cli("ls")
    assert result.code == 3
    assert "--profile" in one_line(result.err)
    result = cli("ls", "--profile", ws.root / "absent.toml")
    assert result.code == 3
    assert "profile init" in one_line(result.err)


def test_profile_from_environment_variable(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNER_TRANSFER_PROFILE", str(ws.profile()))
    assert cli("ls").code == 0


def test_missing_aws_named_profile(ws: Workspace) -> None:
    profile = ws.profile(auth='method = "aws-profile"\naws_profile = "acme-partner"')
    ws.file("a.csv", b"a")
    result = cli("upload", "--profile", profile, ws.root / "a.csv")
    assert result.code == 3
    line = one_line(result.err)
    assert "acme-partner" in line and "aws configure" in line


def test_named_aws_profile_is_used(ws: Workspace, s3: Any) -> None:
    config = Path(os.environ["AWS_CONFIG_FILE"])
    config.write_text(
        "[profile acme-named]\n"
        "aws_access_key_id = AKIAFAKENAMED0000001\n"
        "aws_secret_access_key = fake-named-secret-0000000000000000000000\n"
    )
    try:
        profile = ws.profile(auth='method = "aws-profile"\naws_profile = "acme-named"')
        ws.file("n.csv", b"n")
        assert cli("upload", "--profile", profile, ws.root / "n.csv").code == 0
        assert s3.head_object(Bucket=ws.bucket, Key="inbound/n.csv")["ContentLength"] == 1
    finally:
        config.write_text("")


def test_invalid_profile_lists_every_problem(ws: Workspace) -> None:
    path = ws.root / "bad.toml"
    path.write_text(
        'bucket = "UPPER"\nregion = "mars"\ncolour = "blue"\n[auth]\nmethod = "magic"\n'
    )
    result = cli("ls", "--profile", path)
    assert result.code == 3
    line = one_line(result.err)
    for fragment in (
        "customer is required",
        "bucket 'UPPER'",
        "region 'mars'",
        "colour",
        "auth.method 'magic'",
    ):
        assert fragment in line


def test_missing_credentials_file(ws: Workspace) -> None:
    profile = ws.profile(
        auth=f'method = "credentials-file"\ncredentials_file = "{ws.root}/no.json"'
    )
    ws.file("a.csv", b"a")
    result = cli("upload", "--profile", profile, ws.root / "a.csv")
    assert result.code == 3
    assert "no.json does not exist" in one_line(result.err)


def test_endpoint_unreachable_is_a_network_error(ws: Workspace) -> None:
    profile = ws.profile(endpoint=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    ws.file("a.csv", b"a")
    result = cli("upload", "--profile", profile, ws.root / "a.csv")
    assert result.code == 9
    assert "network failure" in one_line(result.err)


def test_checksum_mismatch_on_verify(ws: Workspace) -> None:
    ws.file("v/a.csv", b"original")
    assert cli("upload", "--profile", ws.profile(), ws.root / "v").code == 0
    ok = cli("verify", "--profile", ws.profile(), ws.root / "v")
    assert ok.code == 0, ok.err
    assert "match" in ok.out
    ws.file("v/a.csv", b"tampered")
    bad = cli("verify", "--profile", ws.profile(), ws.root / "v")
    assert bad.code == 8
    assert "checksum mismatch" in one_line(bad.err)


def test_verify_reports_missing_objects(ws: Workspace) -> None:
    ws.file("never/sent.csv", b"x")
    result = cli("verify", "--profile", ws.profile(), ws.root / "never")
    assert result.code == 7
    assert "inbound/never/sent.csv" in one_line(result.err)


def test_not_found_key_and_local_path(ws: Workspace) -> None:
    result = cli("download", "--profile", ws.profile(), "outbound/none.csv", ws.root)
    assert result.code == 7
    assert "not found" in one_line(result.err)
    result = cli("upload", "--profile", ws.profile(), ws.root / "nothing-here")
    assert result.code == 7
    assert "no such file" in one_line(result.err)


def test_nonexistent_bucket(ws: Workspace) -> None:
    ws.bucket = f"phi-gone-{ACCOUNT}-eu-west-2"
    ws.file("a.csv", b"a")
    result = cli("upload", "--profile", ws.profile(), ws.root / "a.csv")
    assert result.code == 7
    assert "does not exist" in one_line(result.err)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["upload", "--to", "outbound/"], "uploads are allowed only under inbound/"),
        (["upload", "--to", "inbound/../outbound/"], "'..' segment"),
        (["upload", "--to", "/inbound/"], "must not start with '/'"),
    ],
)
def test_upload_outside_inbound_is_refused_before_any_request(
    ws: Workspace, argv: list[str], fragment: str
) -> None:
    ws.file("a.csv", b"a")
    profile = ws.profile(endpoint=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    result = cli(*argv[:1], "--profile", profile, *argv[1:], ws.root / "a.csv")
    assert result.code == 6
    assert fragment in one_line(result.err)


def test_outbound_only_partner_cannot_upload(ws: Workspace) -> None:
    ws.file("a.csv", b"a")
    result = cli("upload", "--profile", ws.profile(inbound=None), ws.root / "a.csv")
    assert result.code == 6
    assert "allows no uploads" in one_line(result.err)


def test_download_outside_outbound_is_refused(ws: Workspace, s3: Any) -> None:
    s3.put_object(Bucket=ws.bucket, Key="inbound/theirs.csv", Body=b"x")
    result = cli("download", "--profile", ws.profile(), "inbound/theirs.csv", ws.root)
    assert result.code == 6
    assert "downloads are allowed only under outbound/" in one_line(result.err)


@pytest.mark.parametrize("key", ["outbound/../../escape.csv", "outbound/a/../../x.csv"])
def test_download_keys_escaping_the_destination_are_refused(
    ws: Workspace, s3: Any, key: str
) -> None:
    put_outbound(s3, ws.bucket, "outbound/fine.csv", b"fine")
    put_outbound(s3, ws.bucket, key, b"evil")
    dest = ws.root / "dest"
    result = cli("download", "--profile", ws.profile(), "outbound/", dest)
    assert result.code == 6
    assert "segment" in result.err.strip().splitlines()[-1]
    assert "Traceback" not in result.err
    assert (dest / "fine.csv").read_bytes() == b"fine"  # the refused key stops nothing else
    assert not (ws.root / "escape.csv").exists()


def test_download_through_symlink_in_destination_is_refused(ws: Workspace, s3: Any) -> None:
    put_outbound(s3, ws.bucket, "outbound/reports/r.csv", b"r")
    dest = ws.root / "dest"
    outside = ws.root / "outside"
    outside.mkdir()
    dest.mkdir()
    (dest / "reports").symlink_to(outside)
    result = cli("download", "--profile", ws.profile(), "outbound/", dest)
    assert result.code == 6
    assert "symlink" in one_line(result.err)
    assert list(outside.iterdir()) == []


def test_usage_errors_exit_2_on_one_line(ws: Workspace) -> None:
    result = cli("upload", "--profile", ws.profile(), "--concurrency", "0", ws.root)
    assert result.code == 2
    assert "concurrency" in one_line(result.err)
    with pytest.raises(SystemExit) as exc:
        cli("upload")
    assert exc.value.code == 2


def test_first_failure_class_decides_the_exit_code(ws: Workspace, s3: Any) -> None:
    put_outbound(s3, ws.bucket, "outbound/a.bin", os.urandom(100))
    put_outbound(s3, ws.bucket, "outbound/b.bin", os.urandom(6 * MIB))
    (ws.root / "d").mkdir()
    (ws.root / "d/a.bin").mkdir()  # a directory where a file must go: fails that one file
    result = cli("download", "--profile", ws.profile(), "outbound/", ws.root / "d")
    assert result.code != 0
    assert "Traceback" not in result.err
    assert (ws.root / "d/b.bin").stat().st_size == 6 * MIB  # the batch went on


def _write_only_partner(endpoint: str, bucket: str, name: str) -> dict[str, str]:
    """A partner as the stack grants it: write inbound/ and list it, but never read it back."""
    iam = admin_client(endpoint, "iam")
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow",
             "Action": ["s3:PutObject", "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts"],
             "Resource": f"arn:aws:s3:::{bucket}/inbound/*"},
            {"Effect": "Allow", "Action": "s3:ListBucket",
             "Resource": f"arn:aws:s3:::{bucket}"},
            {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"},
        ],
    }
    iam.put_user_policy(UserName=name, PolicyName="inbound", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


def test_write_only_partner_syncs_and_verifies_from_its_custody_manifest(
    ws: Workspace, moto_auth: Callable[[], None]
) -> None:
    creds = _write_only_partner(ws.endpoint, ws.bucket, f"writeonly-{ws.bucket[4:14]}")
    profile = ws.profile(
        auth=f'method = "credentials-file"\ncredentials_file = "{_secret_file(ws, creds)}"')
    data = ws.file("batch/claims.csv", b"id,amount\n1,10\n")
    moto_auth()
    first = cli("upload", "--profile", profile, data)
    assert first.code == 0, first.err
    # HEAD is refused (inbound is write-only): sync falls back to listing + the manifest.
    again = cli("sync", "up", "--profile", profile, data)
    assert again.code == 0, again.err
    assert [r["result"] for r in ws.records()] == ["ok", "skipped"]
    verified = cli("verify", "--profile", profile, data)
    assert verified.code == 0, verified.err
    assert "match" in verified.out and "mismatch" not in verified.out, verified.out
    # A changed file of the same size is sent again: the manifest's checksum differs.
    data.write_bytes(b"id,amount\n1,99\n")
    changed = cli("sync", "up", "--profile", profile, data)
    assert changed.code == 0, changed.err
    assert [r["result"] for r in ws.records()][-1] == "ok"
    stale = ws.file("old/claims.csv", b"id,amount\n1,10\n")  # the first version's bytes
    mismatch = cli("verify", "--profile", profile, stale)
    assert mismatch.code == 8, mismatch.out + mismatch.err
    assert "mismatch" in mismatch.out + mismatch.err
