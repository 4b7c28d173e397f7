"""The local run end to end: ``python -m localrun up`` for acme, read back, ``down``.

Runs the real CDK CLI (bootstrap, synth, deploy of the audit stack and the customer stack)
against the emulator in a temporary run directory, then checks what was deployed through the
AWS APIs, independently of localrun's own checks. Bounded: the whole test must finish well
within CI's budget.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from botocore.exceptions import ClientError
from psycopg.rows import dict_row

from localaws import server
from localaws.coverage import coverage
from localaws.server import Emulator
from localrun import postgres
from localrun.context import LocalRun
from localrun.partner import SAMPLE_INBOUND
from partner_transfer import receipts
from tests.demo_runs import DemoRun, localrun
from tests.localaws.conftest import Aws

pytestmark = pytest.mark.e2e

ACCOUNT, REGION = "123456789012", "us-east-1"
BUCKET = f"phi-acme-{ACCOUNT}-{REGION}"
LOG_BUCKET = f"phi-acme-logs-{ACCOUNT}-{REGION}"
# What the emulator knowingly does not apply from the acme template (docs/local-run.md). A new
# resource type or property in the template makes this test fail until someone checks it.
# docs/local-run.md, "Not modelled".
EXPECTED_GAPS = {("AWS::Lambda::Function", ("DeadLetterConfig", "LoggingConfig"))}
# KMS's lockout safety check is not emulated, so there is nothing for the bypass to bypass.
EXPECTED_AUDIT_GAPS = {("AWS::KMS::Key", ("BypassPolicyLockoutSafetyCheck",))}


@pytest.fixture(scope="module")
def deployed(acme_demo: DemoRun) -> tuple[Aws, Path, float]:
    for step in ("access stack", "audit stack", "customer stack", "partner round trip (iam-user",
                 "importer", "malware gate", "inbound originals", "key rotation",
                 "custody from the trail"):
        assert f"[ok] {step}" in acme_demo.stdout, acme_demo.stdout
    emulator = Emulator.load(acme_demo.run_dir)
    assert emulator is not None
    return Aws(emulator), acme_demo.run_dir, acme_demo.seconds


def test_the_demo_ends_with_the_upload_s_custody_from_aws_s_own_records(
    acme_demo: DemoRun,
) -> None:
    out = acme_demo.stdout
    answer = out[out.index("[ok] custody from the trail"):out.index("Not exercised by this run")]
    assert "phi-exchange-admin custody acme inbound/claims.csv --verify-bytes" in answer
    # AWS's principal and source address of the partner's upload, beside its own claim.
    assert (f"written by  arn:aws:iam::{ACCOUNT}:user/phi-exchange-acme-partner (IAMUser) from "
            "127.0.0.1") in answer
    assert "client manifest: CRC64NVME" in answer and "stored bytes: CRC64NVME" in answer
    assert "imported    " in answer and "custody row" in answer
    assert "evidence: the trail's log files and digests are intact" in answer
    # The operator role's own grants read the evidence, with the emulator's checks on.
    assert ("as a session of phi-exchange-operator, assumed by localrun-operator "
            "(phi-exchange:operator = true), permission checks on: phi-exchange-admin custody "
            "acme --prefix inbound/") in answer
    # The importer's read of the upload is AWS's record too.
    assert "GetObject" in answer and "assumed-role/phi-exchange-importer/" in answer


def stack_outputs(aws: Aws) -> dict[str, str]:
    stack = aws.client("cloudformation").describe_stacks(StackName="PhiExchange-acme")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


def policy_statements(document: str) -> dict[str, dict[str, Any]]:
    statements = json.loads(document)["Statement"]
    return {s.get("Sid") or json.dumps(s.get("Condition"), sort_keys=True): s
            for s in statements}


def test_partner_round_trip_left_verified_objects_and_a_custody_record(
    deployed: tuple[Aws, Path, float],
) -> None:
    aws, run_dir, _ = deployed
    s3 = aws.client("s3")
    key_arn = stack_outputs(aws)["KmsKeyArn"]
    for key in ("inbound/claims.csv", "inbound/claims-large.csv"):
        head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key_arn
        assert head.get("ChecksumCRC64NVME")
    manifest = run_dir / "partner" / "state" / "partner-transfer" / "acme" / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert {(r["direction"], r["key"], r["result"]) for r in records
            if "/_manifests/" not in r["key"]} == {
        ("upload", "inbound/claims.csv", "ok"), ("upload", "inbound/claims-large.csv", "ok"),
        ("download", "outbound/remittance.csv", "ok"),
        ("upload", "inbound/eicar-test.txt", "ok")}  # the malware gate step's test file
    assert all(r["caller_arn"].endswith(":user/phi-exchange-acme-partner") for r in records)
    assert (run_dir / "partner" / "received" / "remittance.csv").read_bytes().startswith(
        b"claim_id,status")


def test_rotation_made_a_new_current_key_and_the_sweep_retired_the_old(
    deployed: tuple[Aws, Path, float],
) -> None:
    aws, run_dir, _ = deployed
    # ... as the function's own role, in a session the emulator issued as Lambda.
    role = aws.client("lambda").get_function_configuration(
        FunctionName="phi-exchange-acme-key-rotation")["Role"].rsplit("/", 1)[-1]
    assert f"as the function's role {role}" in (run_dir / "run.json").read_text()
    arn = stack_outputs(aws)["PartnerSecretArn"]
    current = json.loads(aws.client("secretsmanager").get_secret_value(
        SecretId=arn)["SecretString"])
    keys = {k["AccessKeyId"]: k["Status"] for k in aws.client("iam").list_access_keys(
        UserName="phi-exchange-acme-partner")["AccessKeyMetadata"]}
    assert keys.pop(current["access_key_id"]) == "Active"
    assert list(keys.values()) == ["Inactive"]  # the stack's first key, after the sweep
    assert current["created_at"]  # written by the rotation, absent from the stack's value


def test_stack_outputs_survive_the_deploy(deployed: tuple[Aws, Path, float]) -> None:
    aws, run_dir, _ = deployed
    outputs = stack_outputs(aws)
    assert outputs["BucketName"] == BUCKET
    assert outputs["PartnerUserName"] == "phi-exchange-acme-partner"
    written = json.loads((run_dir / "outputs.json").read_text())["PhiExchange-acme"]
    assert written == outputs


def test_data_bucket_settings(deployed: tuple[Aws, Path, float]) -> None:
    aws = deployed[0]
    s3, key_arn = aws.client("s3"), stack_outputs(aws)["KmsKeyArn"]
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_encryption(Bucket=BUCKET)[
        "ServerSideEncryptionConfiguration"]["Rules"]
    assert rule == {"ApplyServerSideEncryptionByDefault": {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}, "BucketKeyEnabled": True}
    assert all(s3.get_public_access_block(Bucket=BUCKET)[
        "PublicAccessBlockConfiguration"].values())
    assert s3.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    assert s3.get_bucket_logging(Bucket=BUCKET)["LoggingEnabled"] == {
        "TargetBucket": LOG_BUCKET, "TargetPrefix": "data-bucket/"}
    lifecycle = {r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]}
    assert lifecycle == {"ExpireNoncurrentVersions", "AbortIncompleteMultipartUploads",
                         "KeepInboundOriginals"}


def test_data_bucket_policy(deployed: tuple[Aws, Path, float]) -> None:
    aws = deployed[0]
    statements = policy_statements(aws.client("s3").get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert {"DenyEncryptionOtherThanKms", "DenyOtherKmsKeys", "DenyCustomerProvidedKeys"} \
        <= set(statements)
    tls = statements['{"Bool": {"aws:SecureTransport": "false"}}']
    assert tls["Effect"] == "Deny" and tls["Action"] == "s3:*"
    tls_version = statements['{"NumericLessThan": {"s3:TlsVersion": 1.2}}']
    assert tls_version["Effect"] == "Deny"
    assert statements["DenyOtherKmsKeys"]["Condition"]["StringNotEquals"][
        "s3:x-amz-server-side-encryption-aws-kms-key-id"] == stack_outputs(aws)["KmsKeyArn"]


def test_log_bucket_accepts_access_logs(deployed: tuple[Aws, Path, float]) -> None:
    aws = deployed[0]
    s3 = aws.client("s3")
    (rule,) = s3.get_bucket_encryption(Bucket=LOG_BUCKET)[
        "ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    statements = json.loads(s3.get_bucket_policy(Bucket=LOG_BUCKET)["Policy"])["Statement"]
    (delivery,) = [s for s in statements if s.get("Principal") == {
        "Service": "logging.s3.amazonaws.com"}]
    assert delivery["Resource"] == f"arn:aws:s3:::{LOG_BUCKET}/data-bucket/*"
    # Requests to the data bucket leave (moto's synthetic) access-log records.
    assert s3.list_objects_v2(Bucket=LOG_BUCKET, Prefix="data-bucket/")["KeyCount"] >= 1


def test_kms_key(deployed: tuple[Aws, Path, float]) -> None:
    aws = deployed[0]
    kms, key_arn = aws.client("kms"), stack_outputs(aws)["KmsKeyArn"]
    assert kms.describe_key(KeyId=key_arn)["KeyMetadata"]["KeyState"] == "Enabled"
    assert kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"] is True
    assert "alias/phi-exchange/acme" in {
        a["AliasName"] for a in kms.list_aliases(KeyId=key_arn)["Aliases"]}
    policy = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
    deny = {s.get("Sid"): s for s in policy["Statement"]}["DenyPartnerKeyUseOutsideS3"]
    assert deny["Condition"]["ArnLike"]["aws:PrincipalArn"] == [
        f"arn:aws:iam::{ACCOUNT}:user/phi-exchange-acme-partner"]


def test_partner_secret(deployed: tuple[Aws, Path, float]) -> None:
    aws = deployed[0]
    outputs = stack_outputs(aws)
    secretsmanager = aws.client("secretsmanager")
    described = secretsmanager.describe_secret(SecretId=outputs["PartnerSecretArn"])
    assert described["Name"] == "phi-exchange/acme/partner-access-key"
    assert described["KmsKeyId"] == outputs["KmsKeyArn"]
    assert described["RotationEnabled"] is True
    assert described["RotationRules"]["AutomaticallyAfterDays"] == 365
    secret = json.loads(secretsmanager.get_secret_value(
        SecretId=outputs["PartnerSecretArn"])["SecretString"])
    # docs/rotation.md's contract; "created_at" appears with the first rotation.
    assert set(secret) >= {"user_name", "access_key_id", "secret_access_key", "bucket",
                           "region", "bucket_owner", "kms_key_arn"}
    assert (secret["bucket"], secret["kms_key_arn"], secret["bucket_owner"]) == (
        BUCKET, outputs["KmsKeyArn"], ACCOUNT)
    keys = aws.client("iam").list_access_keys(UserName=secret["user_name"])["AccessKeyMetadata"]
    # After the run's rotation: the secret's key is the one active key of the user.
    assert [k["AccessKeyId"] for k in keys if k["Status"] == "Active"] == [
        secret["access_key_id"]]
    # The key in the secret is the one IAM issued: it signs a valid request.
    caller = aws.client("sts", (secret["access_key_id"], secret["secret_access_key"]))
    assert caller.get_caller_identity()["Arn"].endswith(":user/phi-exchange-acme-partner")


def test_partner_user_group_and_policy(deployed: tuple[Aws, Path, float]) -> None:
    iam = deployed[0].client("iam")
    user = "phi-exchange-acme-partner"
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName=user)["Groups"]] == [
        "phi-exchange-acme-partners"]
    assert iam.list_user_policies(UserName=user)["PolicyNames"] == []
    assert iam.list_attached_user_policies(UserName=user)["AttachedPolicies"] == []
    (attached,) = iam.list_attached_group_policies(
        GroupName="phi-exchange-acme-partners")["AttachedPolicies"]
    assert attached["PolicyName"] == "phi-exchange-acme-partner-access"
    version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)[
        "PolicyVersion"]["Document"]
    document = json.loads(document) if isinstance(document, str) else document
    assert {s["Sid"] for s in document["Statement"]} == {
        "WriteInbound", "ReadReceipts", "ReadOutbound", "ListOwnPrefixes", "FindBucketRegion",
        "ListTopLevelFolders", "UseKeyThroughS3", "DenySessionCredentials"}


def test_partner_key_is_scoped_to_its_prefixes_with_checks_on(
    deployed: tuple[Aws, Path, float],
) -> None:
    aws = deployed[0]
    outputs = stack_outputs(aws)
    secret = json.loads(aws.client("secretsmanager").get_secret_value(
        SecretId=outputs["PartnerSecretArn"])["SecretString"])
    partner = aws.client("s3", (secret["access_key_id"], secret["secret_access_key"]))
    encryption = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": outputs["KmsKeyArn"]}
    with aws.permission_checks():
        partner.put_object(Bucket=BUCKET, Key="inbound/e2e.csv", Body=b"a", **encryption)
        partner.list_objects_v2(Bucket=BUCKET, Prefix="inbound/")
        for call in (lambda: partner.get_object(Bucket=BUCKET, Key="inbound/e2e.csv"),
                     lambda: partner.put_object(Bucket=BUCKET, Key="outbound/x", Body=b"x",
                                                **encryption),
                     lambda: partner.list_objects_v2(Bucket=BUCKET, Prefix="other/")):
            with pytest.raises(ClientError):
                call()


def test_only_the_documented_gaps_are_not_emulated(deployed: tuple[Aws, Path, float]) -> None:
    template = json.loads((deployed[1] / "cdk.out" / "CustomerStack.template.json").read_text())
    assert {(g.resource_type, g.properties) for g in coverage(template)} == EXPECTED_GAPS
    audit = json.loads((deployed[1] / "cdk.out" / "AuditStack.template.json").read_text())
    assert {(g.resource_type, g.properties) for g in coverage(audit)} == EXPECTED_AUDIT_GAPS


def test_the_audit_stack_came_first_and_the_rule_targets_its_queue(
    deployed: tuple[Aws, Path, float],
) -> None:
    aws = deployed[0]
    audit = aws.client("cloudformation").describe_stacks(
        StackName="PhiExchange-audit")["Stacks"][0]
    assert audit["StackStatus"] == "CREATE_COMPLETE"
    customer = aws.client("cloudformation").describe_stacks(
        StackName="PhiExchange-acme")["Stacks"][0]
    assert audit["CreationTime"] < customer["CreationTime"]
    audit_outputs = {o["OutputKey"]: o["OutputValue"] for o in audit["Outputs"]}
    queue_arn = aws.client("sqs").get_queue_attributes(
        QueueUrl=audit_outputs["IngestionQueueUrl"], AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    targets = aws.client("events").list_targets_by_rule(
        Rule="phi-exchange-acme-inbound-objects")["Targets"]
    assert [t["Arn"] for t in targets] == [queue_arn]
    trail = aws.client("cloudtrail").get_trail(Name=audit_outputs["TrailArn"])["Trail"]
    assert trail["LogFileValidationEnabled"] is True
    assert trail["S3BucketName"] == audit_outputs["CustodyBucketName"]
    lock = aws.client("s3").get_object_lock_configuration(
        Bucket=audit_outputs["CustodyBucketName"])["ObjectLockConfiguration"]
    assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"


def test_hooks_for_the_partner_and_rotation_steps(deployed: tuple[Aws, Path, float]) -> None:
    run = LocalRun.load(deployed[1])
    assert run is not None and run.outputs["BucketName"] == BUCKET
    partner = run.partner_credentials()
    admin = run.admin_credentials()
    before = dict(os.environ)
    with run.permission_checks():
        run.client("s3", partner).list_objects_v2(Bucket=BUCKET, Prefix="inbound/")
        with pytest.raises(ClientError):
            run.client("iam").list_users()  # the dummy operator key is unknown to IAM
        run.client("iam", admin).list_users()
        # Code that builds its own clients from the environment reaches the emulator.
        with run.environment(AWS_ACCESS_KEY_ID=admin.access_key_id,
                             AWS_SECRET_ACCESS_KEY=admin.secret_access_key):
            described = boto3.client("secretsmanager").describe_secret(
                SecretId=run.outputs["PartnerSecretArn"])
            assert described["Name"] == "phi-exchange/acme/partner-access-key"
    assert dict(os.environ) == before
    assert "***" in repr(partner) and partner.secret_access_key not in repr(partner)


def test_status_reports_the_run(deployed: tuple[Aws, Path, float]) -> None:
    status = localrun("status", "--run-dir", str(deployed[1]))
    assert status.returncode == 0
    assert "[ok] customer stack" in status.stdout


def test_the_importer_loaded_each_upload_with_its_custody_row(
    deployed: tuple[Aws, Path, float],
) -> None:
    aws, run_dir, _ = deployed
    server = postgres.load(run_dir / "postgres.json")
    assert server is not None  # the embedded PostgreSQL, still up with the emulator
    with psycopg.connect(server.dsn(), row_factory=dict_row) as conn:
        custody = {r["key"]: r for r in conn.execute("SELECT * FROM custody_chain")}
        rows = conn.execute(
            "SELECT data FROM inbound_rows WHERE custody_id = %s ORDER BY row_number",
            (custody["inbound/claims.csv"]["id"],)).fetchall()
    assert set(custody) == {"inbound/claims.csv", "inbound/claims-large.csv"}
    assert [r["data"] for r in rows] == [
        {"member_id": "1001", "claim_id": "C-1", "amount": "125.00"},
        {"member_id": "1002", "claim_id": "C-2", "amount": "80.50"}]
    s3 = aws.client("s3")
    for key, row in custody.items():
        head = s3.head_object(Bucket=BUCKET, Key=key, VersionId=row["version_id"],
                              ChecksumMode="ENABLED")
        assert row["checksum"] == head["ChecksumCRC64NVME"] and row["size"] == head[
            "ContentLength"]
        # The client's claim (object metadata or batch manifest), kept apart from AWS's record.
        assert row["claimed_uploader_arn"].endswith(":user/phi-exchange-acme-partner")
        assert row["claimed_uploader_source"] != "unknown"
        assert (row["requester"], row["source_ip"]) == (ACCOUNT, "127.0.0.1")
    # Nothing went to the dead-letter queue. (The ingestion queue may hold messages of
    # objects other tests here upload after the run.)
    url = aws.client("sqs").get_queue_url(QueueName="phi-exchange-ingestion-dlq")["QueueUrl"]
    depth = aws.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert depth["ApproximateNumberOfMessages"] == "0"


def test_the_gate_let_the_clean_uploads_in_and_stopped_the_test_file(
    deployed: tuple[Aws, Path, float],
) -> None:
    aws = deployed[0]
    resources = aws.client("cloudformation").describe_stack_resources(
        StackName="PhiExchange-acme")["StackResources"]
    (plan,) = [r for r in resources if r["ResourceType"] == "AWS::GuardDuty::MalwareProtectionPlan"]
    assert plan["ResourceStatus"] == "CREATE_COMPLETE"
    scans: dict[str, dict[str, Any]] = {}
    for scan in server.malware_scans(aws.emulator):  # the first of each key: what was imported
        if scan["plan"].endswith(f"malware-protection-plan/{plan['PhysicalResourceId']}"):
            scans.setdefault(scan["object"].rsplit("/", 1)[-1], scan)
    assert scans["claims.csv"]["result"] == "NO_THREATS_FOUND"
    assert scans["eicar-test.txt"]["result"] == "THREATS_FOUND"
    s3 = aws.client("s3")
    stopped = scans["eicar-test.txt"]["version_id"]
    tags = s3.get_object_tagging(Bucket=BUCKET, Key="inbound/eicar-test.txt",
                                 VersionId=stopped)["TagSet"]
    assert tags == [{"Key": "GuardDutyMalwareScanStatus", "Value": "THREATS_FOUND"}]
    # The receipts verify with the receipt key's public key, whoever reads them.
    der = aws.client("kms").get_public_key(KeyId="alias/phi-exchange/receipts")["PublicKey"]
    key = receipts.load_public_key(receipts.public_key_pem(der))
    outcomes = {}
    for name in ("claims.csv", "eicar-test.txt"):
        version = scans[name]["version_id"]
        body = s3.get_object(Bucket=BUCKET, Key=f"receipts/{name}/{version}.json")["Body"].read()
        outcomes[name] = receipts.parse_and_verify(body, key).outcome
    assert outcomes == {"claims.csv": "imported", "eicar-test.txt": "rejected"}
    gate_notices = f"arn:aws:sns:{REGION}:{ACCOUNT}:phi-exchange-acme-gate-notices"
    (notice,) = server.sns_published(aws.emulator, gate_notices)
    assert "inbound/eicar-test.txt" in notice["message"] and "NOT imported" in notice["message"]


# --- the account's roles at work (read back from the emulator, not from localrun's output) ---

ROLE = f"arn:aws:iam::{ACCOUNT}:role/"


def decisions(aws: Aws) -> list[dict[str, Any]]:
    """Every permission decision the emulator recorded (localaws.permissions)."""
    return server.authorizations(aws.emulator)[1]


def test_the_access_stack_is_deployed_and_its_roles_need_their_tag(
    deployed: tuple[Aws, Path, float],
) -> None:
    aws = deployed[0]
    stack = aws.client("cloudformation").describe_stacks(
        StackName="PhiExchange-access")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    for role in ("importer", "operator", "cdk-deploy"):
        trust = aws.client("iam").get_role(RoleName=f"phi-exchange-{role}")["Role"][
            "AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        (statement,) = trust["Statement"]
        assert statement["Condition"] == {"StringEquals": {
            f"aws:PrincipalTag/phi-exchange:{role}": "true"}}


def test_the_stacks_were_deployed_through_the_account_roles(
    deployed: tuple[Aws, Path, float],
) -> None:
    records = [r for r in decisions(deployed[0]) if r["allowed"]]
    assert any(r["action"] == "sts:AssumeRole" and r["caller"].endswith(":user/localrun-deployer")
               and r["resource"] == ROLE + "phi-exchange-cdk-deploy" for r in records)
    passed = {(r["principal"], r["resource"]) for r in records if r["action"] == "iam:PassRole"}
    assert passed == {(ROLE + "phi-exchange-cdk-deploy", ROLE + "phi-exchange-deployment")}
    changes = {r["resource"].split("/")[1] for r in records
               if r["action"] == "cloudformation:CreateChangeSet"
               and r["principal"] == ROLE + "phi-exchange-cdk-deploy"}
    assert {"PhiExchange-audit", "PhiExchange-acme"} <= changes


def test_the_importer_read_and_the_operator_wrote_as_their_roles(
    deployed: tuple[Aws, Path, float],
) -> None:
    records = decisions(deployed[0])

    def by_role(role: str, actions: set[str], key: str) -> list[dict[str, Any]]:
        return [r for r in records if r["allowed"] and r["action"] in actions
                and r["principal"] == ROLE + role and r["resource"].endswith(f"{BUCKET}/{key}")]

    # The importer reads the version its message names.
    reads = {"s3:GetObject", "s3:GetObjectVersion"}
    assert by_role("phi-exchange-importer", reads, "inbound/claims.csv")
    assert by_role("phi-exchange-importer", reads, "inbound/claims-large.csv")
    assert by_role("phi-exchange-operator", {"s3:PutObject"}, "outbound/remittance.csv")
    # Their sessions came from the tagged users; the untagged one was refused both roles.
    assumed = {(r["caller"].rsplit("/", 1)[-1], r["resource"], r["allowed"])
               for r in records if r["action"] == "sts:AssumeRole"}
    assert ("localrun-importer", ROLE + "phi-exchange-importer", True) in assumed
    assert ("localrun-operator", ROLE + "phi-exchange-operator", True) in assumed
    for role in ("phi-exchange-importer", "phi-exchange-operator"):
        assert ("localrun-untagged", ROLE + role, False) in assumed
        assert ("localrun-untagged", ROLE + role, True) not in assumed


def test_the_inbound_original_survives_the_partner_s_overwrite(
    deployed: tuple[Aws, Path, float],
) -> None:
    aws, run_dir, _ = deployed
    s3 = aws.client("s3")
    versions = [v for v in s3.list_object_versions(
        Bucket=BUCKET, Prefix="inbound/claims.csv")["Versions"] if v["Key"] == "inbound/claims.csv"]
    assert len(versions) == 2
    original = next(v for v in versions if not v["IsLatest"])
    read = s3.get_object(Bucket=BUCKET, Key="inbound/claims.csv", VersionId=original["VersionId"])
    assert read["Body"].read() == SAMPLE_INBOUND
    # ... the very version the partner's client uploaded (its custody manifest).
    manifest = run_dir / "partner" / "state" / "partner-transfer" / "acme" / "manifest.jsonl"
    uploaded = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert original["VersionId"] in {r["version_id"] for r in uploaded
                                     if r["key"] == "inbound/claims.csv"}
    assert s3.get_object(Bucket=BUCKET, Key="inbound/claims.csv")["Body"].read() != SAMPLE_INBOUND
    # The partner's overwrite was allowed; its attempt to delete the original was refused.
    partner = f"arn:aws:iam::{ACCOUNT}:user/phi-exchange-acme-partner"
    object_arn = f"arn:aws:s3:::{BUCKET}/inbound/claims.csv"
    outcomes = {(r["action"], r["allowed"]) for r in decisions(aws)
                if r["principal"] == partner and r["resource"] == object_arn}
    assert ("s3:PutObject", True) in outcomes
    assert ("s3:DeleteObjectVersion", False) in outcomes
    assert ("s3:DeleteObjectVersion", True) not in outcomes
