"""onboard, status and offboard against the customer stack deployed by the real CDK CLI into
the local emulator (``python -m localrun up``), with the emulator's IAM permission checks on
where it matters: the kit never holds the partner's secret; after offboarding, our operator
still reads what the partner sent while the partner's key is refused, and the bucket, key and
versions are all still there.

The acme run of the session (tests/demo_runs.py, shared with tests/localaws/test_e2e.py, whose
tests run first): ``up`` also ran the partner round trip and a key rotation, so there are
objects under ``inbound/`` and a rotated current key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from admin import offboarding
from localrun.context import Credentials, LocalRun
from localrun.partner import OVERWRITE
from tests.admin.lifecycle_support import REPO, Ran, run
from tests.demo_runs import DemoRun

pytestmark = pytest.mark.e2e

CUSTOMERS = REPO / "customers"


@dataclass
class Lifecycle:
    """Everything the tests look at, captured in order: onboard, status, offboard, status."""

    run: LocalRun
    kit: Path
    secret: dict[str, Any]
    onboard: Ran
    status_before: dict[str, Any]
    versions_before: list[str]
    old_key: Credentials
    offboard: Ran
    report: Path
    status_after: dict[str, Any]


@pytest.fixture(scope="module")
def lifecycle(acme_demo: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Lifecycle:
    root = tmp_path_factory.mktemp("lifecycle")
    local = LocalRun.load(acme_demo.run_dir)
    assert local is not None

    def make(service: str) -> Any:  # the operator, permission checks off
        return local.client(service)

    bucket = local.outputs["BucketName"]
    kit = root / "kit"
    onboard = run(CUSTOMERS, ["onboard", "acme", "--output", str(kit)], make)
    status_before = _status(make)
    versions_before = _versions(local, bucket)
    old_key = local.partner_credentials()
    report = root / "acme-final-custody.json"
    offboard = run(CUSTOMERS, ["offboard", "acme", "--yes", "--export-custody",
                               str(report)], make)
    return Lifecycle(run=local, kit=kit, secret=local.partner_secret(), onboard=onboard,
                     status_before=status_before, versions_before=versions_before,
                     old_key=old_key, offboard=offboard, report=report,
                     status_after=_status(make))


def _status(make: Any) -> dict[str, Any]:
    ran = run(CUSTOMERS, ["status", "--json"], make)
    assert ran.code == 0, ran.err
    return {entry["customer"]: entry for entry in json.loads(ran.out)}["acme"]


def _versions(local: LocalRun, bucket: str) -> list[str]:
    listing = local.client("s3").list_object_versions(Bucket=bucket)
    return sorted(f"{v['Key']}@{v['VersionId']}" for v in listing.get("Versions", []))


def _refused(call: Any) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


def test_kit_from_the_deployed_stack_names_the_current_key_and_holds_no_secret(
        lifecycle: Lifecycle) -> None:
    assert lifecycle.onboard.code == 0, lifecycle.onboard.err
    secret = lifecycle.secret["secret_access_key"]
    files = sorted(lifecycle.kit.iterdir())
    assert {p.name for p in files} >= {"acme.duck", "acme-winscp-url.txt", "acme.toml",
                                        "README.md", "README.html", "SHA256SUMS"}
    for path in files:
        data = path.read_text(encoding="utf-8")
        assert secret not in data, path.name
        assert "secret_access_key" not in data.lower(), path.name
    current = lifecycle.secret["access_key_id"]
    assert current in (lifecycle.kit / "acme.duck").read_text()
    assert current in (lifecycle.kit / "acme-winscp-url.txt").read_text()


def test_status_before_offboarding_shows_the_rotated_key_and_the_last_upload(
        lifecycle: Lifecycle) -> None:
    status = lifecycle.status_before
    assert status["state"] == "active"
    assert status["current_key_id"] == lifecycle.secret["access_key_id"]
    assert status["key_age_days"] == 0  # the local run rotated the key minutes ago
    assert 360 <= status["days_to_rotation"] <= 365
    assert status["last_upload"]["source"] == "bucket listing"
    assert status["last_upload"]["key"].startswith("inbound/")


def test_offboard_revokes_now_and_says_how_to_make_it_permanent(lifecycle: Lifecycle) -> None:
    ran = lifecycle.offboard
    assert ran.code == 0, ran.out + ran.err
    assert f"access key {lifecycle.old_key.access_key_id} deactivated" in ran.out
    assert "rotation cancelled" in ran.out
    assert "cdk deploy CustomerStack -c customer=acme" in ran.out
    assert lifecycle.status_after["state"] == "offboarded"


def test_partners_old_key_is_refused_and_our_operator_still_reads_inbound(
        lifecycle: Lifecycle) -> None:
    local, bucket = lifecycle.run, lifecycle.run.outputs["BucketName"]
    admin = local.admin_credentials()
    partner_s3 = local.client("s3", lifecycle.old_key)
    with local.permission_checks():
        _refused(lambda: partner_s3.put_object(
            Bucket=bucket, Key="inbound/after-offboarding.csv", Body=b"x",
            ServerSideEncryption="aws:kms", SSEKMSKeyId=local.outputs["KmsKeyArn"]))
        _refused(lambda: partner_s3.list_objects_v2(Bucket=bucket, Prefix="inbound/"))
        ours = local.client("s3", admin)
        body = ours.get_object(Bucket=bucket, Key="inbound/claims.csv")["Body"].read()
    assert body == OVERWRITE  # the partner's second version (the run's last upload of it)


def test_deny_in_the_bucket_holds_even_if_the_old_key_were_reactivated(
        lifecycle: Lifecycle) -> None:
    local, bucket = lifecycle.run, lifecycle.run.outputs["BucketName"]
    iam = local.client("iam")
    user = "phi-exchange-acme-partner"
    iam.update_access_key(UserName=user, AccessKeyId=lifecycle.old_key.access_key_id,
                          Status="Active")
    try:
        partner_s3 = local.client("s3", lifecycle.old_key)
        with local.permission_checks():
            code = _refused(lambda: partner_s3.put_object(
                Bucket=bucket, Key="inbound/after-offboarding.csv", Body=b"x",
                ServerSideEncryption="aws:kms", SSEKMSKeyId=local.outputs["KmsKeyArn"]))
        assert code in ("AccessDenied", "403")  # the bucket policy, not an unknown key
    finally:
        iam.update_access_key(UserName=user, AccessKeyId=lifecycle.old_key.access_key_id,
                              Status="Inactive")


def test_bucket_key_versions_and_logs_remain_and_rotation_is_off(lifecycle: Lifecycle) -> None:
    local = lifecycle.run
    bucket, key_arn = local.outputs["BucketName"], local.outputs["KmsKeyArn"]
    assert _versions(local, bucket) == lifecycle.versions_before
    assert local.client("kms").describe_key(KeyId=key_arn)["KeyMetadata"]["KeyState"] == "Enabled"
    log_bucket = bucket.replace("phi-acme-", "phi-acme-logs-")
    assert local.client("s3").head_bucket(Bucket=log_bucket)
    described = local.client("secretsmanager").describe_secret(
        SecretId=local.outputs["PartnerSecretArn"])
    assert not described.get("RotationEnabled")
    keys = local.client("iam").list_access_keys(UserName="phi-exchange-acme-partner")
    assert {k["Status"] for k in keys["AccessKeyMetadata"]} == {"Inactive"}
    policy = json.loads(local.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])
    assert offboarding.has_deny(policy)


def test_final_custody_report_lists_what_the_partner_sent(lifecycle: Lifecycle) -> None:
    report = json.loads(lifecycle.report.read_text())
    keys = {v["key"] for v in report["object_versions"]}
    assert {"inbound/claims.csv", "inbound/claims-large.csv", "outbound/remittance.csv"} <= keys
    assert report["summary"]["object_versions"] == len(lifecycle.versions_before)
    assert lifecycle.secret["secret_access_key"] not in lifecycle.report.read_text()
