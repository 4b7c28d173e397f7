"""``phi-exchange-admin offboard`` against moto: what it revokes per access mode, what it keeps,
its confirmation and refusals, and the final custody report. The same command against the
deployed stack in the local emulator, with permission checks on, is in
``test_lifecycle_e2e.py``."""

from __future__ import annotations

import argparse
import io
import json
import stat
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from admin import lifecycle_cli, offboarding
from admin.stack_outputs import LifecycleError, parse_outputs
from phi_core import naming
from tests.admin.lifecycle_support import (
    ACCOUNT,
    REGION,
    REPO,
    Deployed,
    bucket_policy,
    deploy,
    outputs_for,
    registry,
    run,
)

CUSTOMERS = REPO / "customers"


@pytest.fixture
def acme(aws: None) -> Deployed:
    # Rotation off: moto cannot cancel a rotation that has no function (the emulator test
    # covers the cancellation against the deployed rotation schedule).
    return deploy(registry()["acme"], rotation=False)


def sids(bucket: str) -> list[str]:
    return [s.get("Sid", "") for s in bucket_policy(bucket)["Statement"]]


def deny_of(bucket: str) -> dict[str, object]:
    (deny,) = [s for s in bucket_policy(bucket)["Statement"]
               if s.get("Sid") == offboarding.DENY_SID]
    return deny


def key_statuses(user: str) -> set[str]:
    keys = boto3.client("iam", region_name=REGION).list_access_keys(UserName=user)
    return {k["Status"] for k in keys["AccessKeyMetadata"]}


# --- what is revoked ------------------------------------------------------------------------


def test_iam_user_offboard_denies_the_user_in_the_bucket_and_deactivates_its_keys(
        acme: Deployed) -> None:
    ran = run(CUSTOMERS, ["offboard", "acme", "--yes"])

    assert ran.code == 0, ran.err
    deny = deny_of(acme.bucket)
    assert deny["Effect"] == "Deny" and deny["Action"] == ["s3:*"]
    assert deny["Resource"] == [f"arn:aws:s3:::{acme.bucket}", f"arn:aws:s3:::{acme.bucket}/*"]
    assert deny["Condition"] == {"ArnLike": {"aws:PrincipalArn": [
        f"arn:aws:iam::{ACCOUNT}:user/phi-exchange-acme-partner"]}}
    assert sids(acme.bucket)[0] == "StackStatement"  # the stack's statements are kept
    assert key_statuses("phi-exchange-acme-partner") == {"Inactive"}
    assert f"access key {acme.access_key_id} deactivated" in ran.out
    assert "rotation was already off" in ran.out
    # The next steps: the registry change and deploy, and the keys CloudFormation cannot delete.
    assert "offboarded = true" in ran.out and "cdk deploy CustomerStack -c customer=acme" in ran.out
    assert (f"aws iam delete-access-key --user-name phi-exchange-acme-partner --access-key-id "
            f"{acme.access_key_id}") in ran.out


@pytest.mark.parametrize("slug", ["initech", "hooli"])  # assume-role, roles-anywhere
def test_offboard_closes_our_partner_roles_trust_and_denies_the_role(aws: None,
                                                                     slug: str) -> None:
    """Nobody may assume the role any more: not the partner's principal with the external id
    (assume-role), not IAM Roles Anywhere for any certificate (roles-anywhere)."""
    deployed = deploy(registry()[slug])

    ran = run(CUSTOMERS, ["offboard", slug, "--yes"])

    assert ran.code == 0, ran.err
    role = boto3.client("iam", region_name=REGION).get_role(
        RoleName=f"phi-exchange-{slug}-partner")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust == offboarding.DENY_ALL_TRUST_POLICY
    assert deny_of(deployed.bucket)["Condition"] == {"ArnLike": {"aws:PrincipalArn": [
        f"arn:aws:iam::{ACCOUNT}:role/phi-exchange-{slug}-partner"]}}


def test_cross_account_offboard_denies_registered_and_still_granted_principals(
        aws: None, tmp_path: Path) -> None:
    directory = tmp_path / "customers"
    directory.mkdir()
    (directory / "hooli.toml").write_text(
        'slug = "hooli"\naccess = "cross-account"\ncontacts = ["ops@hooli.example"]\n'
        'partner_principals = ["777788889999", "arn:aws:iam::777788889999:user/hooli-batch"]\n')
    from stacks.config import load_registry

    hooli = deploy(load_registry(directory)["hooli"])
    # The deployed policy still grants a principal the registry no longer lists.
    policy = bucket_policy(hooli.bucket)
    policy["Statement"].append({
        "Sid": "PartnerWriteInbound", "Effect": "Allow",
        "Principal": {"AWS": ["arn:aws:iam::999988887777:root",
                              "arn:aws:iam::777788889999:user/hooli-batch"]},
        "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{hooli.bucket}/inbound/*"})
    boto3.client("s3", region_name=REGION).put_bucket_policy(Bucket=hooli.bucket,
                                                            Policy=json.dumps(policy))

    ran = run(directory, ["offboard", "hooli", "--yes"])

    assert ran.code == 0, ran.err
    assert deny_of(hooli.bucket)["Condition"] == {"ArnLike": {"aws:PrincipalArn": [
        "arn:aws:iam::777788889999:*", "arn:aws:iam::777788889999:user/hooli-batch",
        "arn:aws:iam::999988887777:*"]}}
    assert "restores the cross-account grants" in ran.out


def test_a_failing_step_is_reported_and_the_other_steps_still_run(aws: None) -> None:
    # Rotation configured without a function: moto refuses to cancel it, as AWS would refuse
    # a call the operator's role may not make.
    acme = deploy(registry()["acme"], rotation=True)

    ran = run(CUSTOMERS, ["offboard", "acme", "--yes"])

    assert ran.code == 1
    assert "FAILED: cancel the rotation: CancelRotateSecret: InvalidRequestException" in ran.out
    assert "1 offboarding step(s) failed" in ran.err and "run the same command again" in ran.err
    assert offboarding.DENY_SID in sids(acme.bucket)
    assert key_statuses("phi-exchange-acme-partner") == {"Inactive"}


# --- what is kept ---------------------------------------------------------------------------


def test_offboard_deletes_no_object_version_and_no_delete_marker(acme: Deployed) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    for body in (b"v1", b"v2"):
        s3.put_object(Bucket=acme.bucket, Key="inbound/claims.csv", Body=body)
    s3.delete_object(Bucket=acme.bucket, Key="inbound/claims.csv")
    before = s3.list_object_versions(Bucket=acme.bucket)

    assert run(CUSTOMERS, ["offboard", "acme", "--yes"]).code == 0

    after = s3.list_object_versions(Bucket=acme.bucket)
    assert [v["VersionId"] for v in after["Versions"]] == [
        v["VersionId"] for v in before["Versions"]]
    assert len(after["DeleteMarkers"]) == 1
    # That we can still read them (moto applies the deny's condition to everyone) is shown
    # against the emulator, with permission checks on: test_lifecycle_e2e.py.


def test_offboard_twice_reapplies_the_same_state(acme: Deployed) -> None:
    first = run(CUSTOMERS, ["offboard", "acme", "--yes"])
    policy = bucket_policy(acme.bucket)
    again = run(CUSTOMERS, ["offboard", "acme", "--yes"])

    assert (first.code, again.code) == (0, 0)
    assert bucket_policy(acme.bucket) == policy
    assert sids(acme.bucket).count(offboarding.DENY_SID) == 1
    assert "re-applied" in again.out and "was already inactive" in again.out


def test_with_deny_keeps_every_other_statement_and_replaces_its_own() -> None:
    customer = registry()["acme"]
    outputs = parse_outputs(outputs_for(customer), source="test")
    statement = offboarding.deny_statement(customer, outputs)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "A", "Effect": "Deny"}, {"Sid": offboarding.DENY_SID, "Effect": "Deny",
                                         "Old": True}, {"Effect": "Allow"}]}

    updated = offboarding.with_deny(policy, statement)

    assert updated["Statement"] == [{"Sid": "A", "Effect": "Deny"}, {"Effect": "Allow"},
                                    statement]
    assert offboarding.with_deny(None, statement) == {"Version": "2012-10-17",
                                                      "Statement": [statement]}


# --- confirmation and refusals --------------------------------------------------------------


def test_dry_run_says_what_would_happen_and_changes_nothing(acme: Deployed) -> None:
    policy = bucket_policy(acme.bucket)

    ran = run(CUSTOMERS, ["offboard", "acme", "--dry-run"])

    assert ran.code == 0, ran.err
    assert "would:" in ran.out and "deactivate every access key" in ran.out
    assert bucket_policy(acme.bucket) == policy
    assert key_statuses("phi-exchange-acme-partner") == {"Active"}


def test_offboard_outside_a_terminal_needs_yes(acme: Deployed,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("acme\n"))

    ran = run(CUSTOMERS, ["offboard", "acme"])

    assert ran.code == 1 and "pass --yes" in ran.err
    assert offboarding.DENY_SID not in sids(acme.bucket)


def _offboard_args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", default=str(CUSTOMERS))
    lifecycle_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["offboard", "acme", *extra])


def make(service: str) -> object:
    return boto3.client(service, region_name=REGION)


def test_confirmation_must_type_the_customer(acme: Deployed,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(LifecycleError, match="not confirmed; nothing was changed"):
        lifecycle_cli.cmd_offboard(_offboard_args(), make, confirm=lambda _prompt: "acm")
    assert offboarding.DENY_SID not in sids(acme.bucket)

    assert lifecycle_cli.cmd_offboard(_offboard_args(), make, confirm=lambda _p: "acme") == 0
    assert offboarding.DENY_SID in sids(acme.bucket)
    assert "offboard acme will:" in capsys.readouterr().out


def test_offboard_refuses_a_customer_that_is_not_deployed(aws: None) -> None:
    ran = run(CUSTOMERS, ["offboard", "globex", "--yes"])
    assert ran.code == 1 and "stack PhiExchange-globex does not exist" in ran.err


def test_offboard_refuses_a_stack_of_another_access_mode(aws: None, tmp_path: Path) -> None:
    deploy(registry()["acme"], rotation=False)
    directory = tmp_path / "customers"
    directory.mkdir()
    (directory / "acme.toml").write_text(
        'slug = "acme"\naccess = "cross-account"\ncontacts = ["a@acme.example"]\n'
        'partner_principals = ["111122223333"]\n')

    ran = run(directory, ["offboard", "acme", "--yes"])

    assert ran.code == 1 and "refusing to guess what to revoke" in ran.err


# --- the final custody report ---------------------------------------------------------------


def test_final_custody_report_lists_every_version_and_what_was_done(
        acme: Deployed, tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=acme.bucket, Key="inbound/claims.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=acme.bucket, Key="inbound/claims.csv", Body=b"a,b\n1,3\n")
    s3.put_object(Bucket=acme.bucket, Key="outbound/remit.csv", Body=b"x\n")
    report_path = tmp_path / "acme-final-custody.json"

    ran = run(CUSTOMERS, ["offboard", "acme", "--yes", "--export-custody", str(report_path)])

    assert ran.code == 0, ran.err
    assert stat.S_IMODE(report_path.stat().st_mode) == 0o600
    report = json.loads(report_path.read_text())
    assert report["customer"] == "acme" and report["bucket"] == acme.bucket
    assert report["summary"]["object_versions"] == 3
    assert report["summary"]["by_prefix"] == {"inbound/": {"versions": 2, "bytes": 16},
                                              "outbound/": {"versions": 1, "bytes": 2}}
    assert {v["key"] for v in report["object_versions"]} == {"inbound/claims.csv",
                                                             "outbound/remit.csv"}
    assert report["offboarding"]["access_keys"][0]["status"] == "Inactive"
    assert any("deactivated" in a for a in report["offboarding"]["actions"])
    assert report["retained"]["access_log_bucket"] == naming.log_bucket_name(
        "acme", ACCOUNT, REGION)
    assert acme.secret_access_key is not None
    assert acme.secret_access_key not in report_path.read_text()


def test_existing_report_file_is_refused_before_anything_changes(
        acme: Deployed, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    report_path.write_text("keep me")

    ran = run(CUSTOMERS, ["offboard", "acme", "--yes", "--export-custody", str(report_path)])

    assert ran.code == 1 and "already exists" in ran.err
    assert report_path.read_text() == "keep me"
    assert offboarding.DENY_SID not in sids(acme.bucket)
    assert key_statuses("phi-exchange-acme-partner") == {"Active"}


def test_a_bucket_policy_change_refused_by_the_guard_says_who_may(aws: None) -> None:
    """Only the deployment role and break-glass may change a bucket's policy (issue 15): as
    the operator the immediate deny is refused; the report says how to get it, the IAM steps
    still run. (moto does not enforce bucket policies: AWS's refusal is raised from botocore's
    own event hook on the real client.)"""
    acme = deploy(registry()["acme"])

    def refuse(**_: object) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "explicit deny in a "
                                     "resource-based policy"}}, "PutBucketPolicy")

    def make(service: str) -> object:
        client = boto3.client(service, region_name=REGION)
        if service == "s3":
            client.meta.events.register("before-call.s3.PutBucketPolicy", refuse)
        return client

    ran = run(CUSTOMERS, ["offboard", "acme", "--yes"], make=make)

    assert ran.code == 1
    assert "PutBucketPolicy: AccessDenied" in ran.out
    assert "run this command again as break-glass" in ran.out
    assert offboarding.DENY_SID not in sids(acme.bucket)
    assert key_statuses("phi-exchange-acme-partner") == {"Inactive"}
