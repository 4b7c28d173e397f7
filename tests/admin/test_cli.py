"""The operator CLI against moto: each command's good case, its refusals, and exit statuses."""

from __future__ import annotations

import json
import os
import select
import stat
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from admin.cli import main
from admin.keys import key_state
from phi_core import naming
from stacks.config import Rotation

REGION = "us-east-1"
SLUG = "acme"

ACME = """\
slug = "acme"
access = "iam-user"
contacts = ["secops@acme.example"]

[rotation]
interval_days = 365
grace_days = 14
delete_after_days = 30
"""
GLOBEX = """\
slug = "globex"
access = "cross-account"
partner_principals = ["arn:aws:iam::111122223333:role/globex-file-transfer"]
contacts = ["integration@globex.example"]
"""


@dataclass
class Deployed:
    sm: Any
    iam: Any
    secret_name: str
    user_name: str
    key_id: str
    secret_access_key: str
    document: dict[str, Any]


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    directory = tmp_path / "customers"
    directory.mkdir()
    (directory / "acme.toml").write_text(ACME)
    (directory / "globex.toml").write_text(GLOBEX)
    return directory


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def deploy(*, rotation_enabled: bool = True) -> Deployed:
    """What the customer stack creates for acme: the user, its first key and the secret."""
    iam = boto3.client("iam", region_name=REGION)
    sm = boto3.client("secretsmanager", region_name=REGION)
    user_name = naming.partner_user_name(SLUG)
    iam.create_user(UserName=user_name)
    key = iam.create_access_key(UserName=user_name)["AccessKey"]
    document = {"user_name": user_name, "access_key_id": key["AccessKeyId"],
                "secret_access_key": key["SecretAccessKey"],
                "bucket": naming.data_bucket_name(SLUG, "123456789012", REGION),
                "region": REGION, "bucket_owner": "123456789012",
                "kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/example",
                "inbound_prefix": "inbound/", "outbound_prefix": "outbound/"}
    secret_name = naming.partner_secret_name(SLUG)
    sm.create_secret(Name=secret_name, SecretString="{}")
    if rotation_enabled:
        # moto has no rotation function to call: configuring rotation makes an empty current
        # version, which the put below replaces, as the function would.
        sm.rotate_secret(SecretId=secret_name, RotationRules={"AutomaticallyAfterDays": 365})
    sm.put_secret_value(SecretId=secret_name, SecretString=json.dumps(document))
    return Deployed(sm, iam, secret_name, user_name, key["AccessKeyId"],
                    key["SecretAccessKey"], document)


@pytest.fixture
def deployed(aws: None) -> Deployed:
    return deploy()


def run(capsys: pytest.CaptureFixture[str], registry: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--registry", str(registry), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_refusal(err: str, *fragments: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


# --- rotate ---------------------------------------------------------------------------------


def test_rotate_starts_a_rotation_and_says_which_version(
        deployed: Deployed, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, registry, "rotate", SLUG)

    assert code == 0, err
    versions = deployed.sm.describe_secret(SecretId=deployed.secret_name)["VersionIdsToStages"]
    started = [v for v in versions if f"new version {v}" in out]
    assert len(started) == 1
    assert deployed.secret_name in out and "14 days" in out


def test_rotate_refuses_when_rotation_is_not_configured(
        aws: None, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deploy(rotation_enabled=False)

    code, _out, err = run(capsys, registry, "rotate", SLUG)

    assert code == 1
    assert_one_line_refusal(err, "rotation is not configured")


def test_rotate_refuses_while_a_rotation_is_unfinished(
        deployed: Deployed, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pending = deployed.sm.put_secret_value(
        SecretId=deployed.secret_name, SecretString=json.dumps(deployed.document),
        VersionStages=["AWSPENDING"])["VersionId"]
    before = deployed.sm.describe_secret(SecretId=deployed.secret_name)["VersionIdsToStages"]

    code, _out, err = run(capsys, registry, "rotate", SLUG)

    assert code == 1
    assert_one_line_refusal(err, "unfinished", f"--remove-from-version-id {pending}")
    after = deployed.sm.describe_secret(SecretId=deployed.secret_name)["VersionIdsToStages"]
    assert after == before


@pytest.mark.parametrize(("slug", "expected"), [
    ("globex", "uses access = 'cross-account'"),
    ("nobody", "SLUG=nobody: customer: not registered"),
])
def test_rotate_refuses_customers_without_a_key_of_ours(
        aws: None, registry: Path, capsys: pytest.CaptureFixture[str],
        slug: str, expected: str) -> None:
    code, out, err = run(capsys, registry, "rotate", slug)

    assert (code, out) == (1, "")
    assert_one_line_refusal(err, expected)


def test_rotate_before_the_stack_is_deployed_fails_in_one_line(
        aws: None, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, registry, "rotate", SLUG)

    assert code == 1
    assert_one_line_refusal(err, "DescribeSecret: ResourceNotFoundException")


def test_a_broken_neighbour_file_is_a_warning_not_a_refusal(
        aws: None, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A command about one healthy customer works while another customer's file is broken;
    the broken file is named, with the program's prefix."""
    (registry / "broken.toml").write_text('slug = "broken"\naccess = "carrier-pigeon"\n')

    code, _out, err = run(capsys, registry, "rotate", SLUG)

    lines = err.strip().splitlines()
    assert any(line.startswith("phi-exchange-admin: warning: ") and
               "broken.toml: access: must be one of" in line for line in lines)
    # It went on to AWS for the healthy customer (nothing is deployed here).
    assert lines[-1].startswith("phi-exchange-admin: ") and "DescribeSecret" in lines[-1]
    assert code == 1 and "Traceback" not in err


def test_the_broken_customer_itself_is_refused_with_its_problems(
        aws: None, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (registry / "broken.toml").write_text('slug = "broken"\naccess = "carrier-pigeon"\n')

    code, out, err = run(capsys, registry, "rotate", "broken")

    assert (code, out) == (1, "")
    assert err.startswith("phi-exchange-admin: ") and "broken.toml: access: must be one of" in err
    assert "Traceback" not in err


def test_the_registry_is_found_from_any_directory(
        aws: None, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --registry: PHI_EXCHANGE_REGISTRY, else the project's customers/, whatever the
    current directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PHI_EXCHANGE_REGISTRY", raising=False)
    code, out, err = main_output(capsys, "cost", "acme", "--stored-gb", "1", "--uploaded-gb",
                                 "1", "--files-uploaded", "1")
    assert code == 0 and "acme" in out, err
    monkeypatch.setenv("PHI_EXCHANGE_REGISTRY", str(tmp_path / "nowhere"))
    code, _out, err = main_output(capsys, "cost", "acme", "--stored-gb", "1", "--uploaded-gb",
                                  "1", "--files-uploaded", "1")
    assert code == 1
    assert_one_line_refusal(err, "PHI_EXCHANGE_REGISTRY")


def test_no_region_is_one_line_that_says_what_to_set(
        registry: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(registry / "no-such-config"))
    code, out, err = run(capsys, registry, "rotate", SLUG)
    assert (code, out) == (1, "")
    assert_one_line_refusal(err, "no AWS region: pass --region REGION, or set AWS_REGION")


def main_output(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- credentials ----------------------------------------------------------------------------


def test_credentials_refuse_to_go_to_a_pipe(
        deployed: Deployed, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, registry, "credentials", SLUG)

    assert (code, out) == (1, "")
    assert_one_line_refusal(err, "refusing", "--output FILE")
    assert deployed.secret_access_key not in err


def test_credentials_to_a_file_are_private_and_complete(
        deployed: Deployed, registry: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "acme-credentials.json"

    code, out, err = run(capsys, registry, "credentials", SLUG, "--output", str(target))

    assert code == 0, err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text()) == deployed.document
    assert deployed.key_id in err
    assert deployed.secret_access_key not in out + err


def test_credentials_never_overwrite_a_file(
        deployed: Deployed, registry: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "existing.json"
    target.write_text("keep me")

    code, _out, err = run(capsys, registry, "credentials", SLUG, "--output", str(target))

    assert code == 1
    assert_one_line_refusal(err, "already exists")
    assert target.read_text() == "keep me"


def test_credentials_to_a_terminal_show_the_document(
        deployed: Deployed, registry: Path) -> None:
    controller, terminal = os.openpty()
    try:
        with os.fdopen(terminal, "w") as tty, redirect_stdout(tty):
            code = main(["--registry", str(registry), "credentials", SLUG])
        shown = b""
        while select.select([controller], [], [], 0.5)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # Linux: EIO once the terminal side is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)

    assert code == 0
    assert json.loads(shown.decode().replace("\r\n", "\n")) == deployed.document


def test_credentials_refuse_a_secret_that_holds_no_key(
        deployed: Deployed, registry: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    deployed.sm.put_secret_value(SecretId=deployed.secret_name, SecretString="not json")
    target = tmp_path / "out.json"

    code, _out, err = run(capsys, registry, "credentials", SLUG, "--output", str(target))

    assert code == 1
    assert_one_line_refusal(err, "does not hold an access key document")
    assert not target.exists()


# --- keys -----------------------------------------------------------------------------------


def rotate_by_hand(deployed: Deployed) -> str:
    """What a finished rotation leaves: a new current key, the first key still active."""
    new = deployed.iam.create_access_key(UserName=deployed.user_name)["AccessKey"]
    document = dict(deployed.document, access_key_id=new["AccessKeyId"],
                    secret_access_key=new["SecretAccessKey"])
    deployed.sm.put_secret_value(SecretId=deployed.secret_name,
                                 SecretString=json.dumps(document))
    return str(new["AccessKeyId"])


def test_keys_reports_each_key_with_its_state_and_the_rotation_dates(
        deployed: Deployed, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new_id = rotate_by_hand(deployed)

    code, out, err = run(capsys, registry, "keys", "--json")

    assert code == 0, err
    (report,) = json.loads(out)  # globex (cross-account) is not listed
    assert report["customer"] == SLUG and report["rotation_enabled"] is True
    assert 364 <= report["days_to_rotation"] <= 365
    states = {k["access_key_id"]: (k["status"], k["age_days"], k["state"])
              for k in report["keys"]}
    assert states[new_id] == ("Active", 0, "current")
    status, age, state = states[deployed.key_id]
    assert (status, age) == ("Active", 0)
    assert state.startswith("previous, in grace period until") and "(14 days left)" in state


def test_keys_table_names_every_key_and_no_secret(
        deployed: Deployed, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new_id = rotate_by_hand(deployed)

    code, out, _err = run(capsys, registry, "keys")

    assert code == 0
    assert deployed.key_id in out and new_id in out and "every 365 days" in out
    assert deployed.secret_access_key not in out


def test_keys_reports_a_customer_whose_stack_is_not_deployed(
        aws: None, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, registry, "keys")

    assert code == 0
    assert f"not deployed: no secret {naming.partner_secret_name(SLUG)}" in out


def test_keys_with_no_iam_user_customer_says_so(
        aws: None, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (registry / "acme.toml").unlink()

    code, out, _err = run(capsys, registry, "keys")

    assert (code, out.strip()) == (0, f"no customer in {registry} uses access = 'iam-user'")


NOW = datetime(2025, 6, 1, tzinfo=UTC)
CURRENT_CREATED = NOW - timedelta(days=20)


@pytest.mark.parametrize(("created", "active", "now", "expected"), [
    (CURRENT_CREATED - timedelta(days=365), True, CURRENT_CREATED + timedelta(days=13),
     "previous, in grace period until 2025-05-26 (1 days left)"),
    (CURRENT_CREATED - timedelta(days=365), True, CURRENT_CREATED + timedelta(days=14),
     "previous, grace period ended 2025-05-26: deactivated by the next sweep"),
    (CURRENT_CREATED - timedelta(days=365), False, CURRENT_CREATED + timedelta(days=43),
     "deactivated, deleted on or after 2025-06-25"),
    (CURRENT_CREATED - timedelta(days=365), False, CURRENT_CREATED + timedelta(days=44),
     "deactivated, deleted by the next sweep"),
    (CURRENT_CREATED + timedelta(days=1), True, NOW,
     "never announced (left by an interrupted rotation?)"),
])
def test_key_state_follows_the_sweep_timeline(created: datetime, active: bool, now: datetime,
                                              expected: str) -> None:
    state = key_state(access_key_id="AKIAOLD", active=active, created=created,
                      current_key_id="AKIACURRENT", current_created=CURRENT_CREATED,
                      pending_key_ids=frozenset(), rotation=Rotation(), now=now)
    assert state == expected


# --- global options -------------------------------------------------------------------------


def test_global_options_are_accepted_after_the_command(
        deployed: Deployed, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["keys", "--json", "--registry", str(registry), "--region", REGION])

    assert code == 0
    assert json.loads(capsys.readouterr().out)[0]["customer"] == SLUG


def test_unknown_profile_fails_in_one_line(
        aws: None, registry: Path, capsys: pytest.CaptureFixture[str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))

    code, _out, err = run(capsys, registry, "--profile", "nobody", "keys")

    assert code == 1
    assert_one_line_refusal(err, "nobody")


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])

    assert caught.value.code == 2
    assert "usage:" in capsys.readouterr().err
