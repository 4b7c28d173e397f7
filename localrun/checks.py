"""What the local run verifies about a deployed customer stack, read back through the AWS APIs.

Each check reads the emulator the way an auditor would read AWS (GetBucketVersioning,
GetKeyPolicy, ...), compares it with what the template promises, and returns one line saying
what it proved; a mismatch raises :class:`CheckFailed` naming what differs. The checks read
configuration: whether the emulator *enforces* it is a separate question, answered by
:func:`check_bucket_policy_enforced` for the bucket policy and in docs/local-run.md for the rest.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from localrun.context import LocalRun
from phi_core import naming

# The secret's contract (docs/rotation.md); readers ignore other fields.
PARTNER_SECRET_FIELDS = frozenset({
    "user_name", "access_key_id", "secret_access_key", "bucket", "region", "bucket_owner",
    "kms_key_arn",
})


class CheckFailed(AssertionError):
    pass


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _policy_sids(document: str | dict[str, Any]) -> set[str]:
    parsed = json.loads(document) if isinstance(document, str) else document
    return {s.get("Sid", "") for s in parsed.get("Statement", [])}


def _statements(document: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = json.loads(document)["Statement"]
    return statements


def _denies_insecure_transport(statements: list[dict[str, Any]]) -> bool:
    return any(
        s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
        for s in statements
    )


def check_stack(run: LocalRun) -> str:
    cloudformation = run.client("cloudformation")
    stack = cloudformation.describe_stacks(StackName=naming.stack_name(run.customer))["Stacks"][0]
    _expect(stack["StackStatus"] == "CREATE_COMPLETE",
            f"stack status is {stack['StackStatus']}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    _expect(outputs == run.outputs, "DescribeStacks outputs differ from the CLI's outputs file")
    count = len(cloudformation.list_stack_resources(
        StackName=stack["StackName"])["StackResourceSummaries"])
    return f"stack {stack['StackName']}: CREATE_COMPLETE, {count} resources, {len(outputs)} outputs"


def check_data_bucket(run: LocalRun) -> str:
    s3 = run.client("s3")
    bucket, key_arn = run.outputs["BucketName"], run.outputs["KmsKeyArn"]
    _expect(s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled",
            f"{bucket}: versioning is not enabled")
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)[
        "ServerSideEncryptionConfiguration"]["Rules"]
    default = rule["ApplyServerSideEncryptionByDefault"]
    _expect(default["SSEAlgorithm"] == "aws:kms" and default.get("KMSMasterKeyID") == key_arn,
            f"{bucket}: default encryption is {default}, expected aws:kms with {key_arn}")
    _expect(rule.get("BucketKeyEnabled") is True, f"{bucket}: S3 Bucket Keys are off")
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    _expect(all(block.values()) and len(block) == 4, f"{bucket}: public access block {block}")
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    _expect(ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}],
            f"{bucket}: object ownership {ownership}")
    logging_ = s3.get_bucket_logging(Bucket=bucket).get("LoggingEnabled") or {}
    log_bucket = naming.log_bucket_name(run.customer, run.outputs["BucketOwnerAccount"],
                                        run.outputs["BucketRegion"])
    _expect(logging_.get("TargetBucket") == log_bucket,
            f"{bucket}: access logs go to {logging_.get('TargetBucket')}, expected {log_bucket}")
    lifecycle = {r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    _expect({"ExpireNoncurrentVersions", "AbortIncompleteMultipartUploads"} <= lifecycle,
            f"{bucket}: lifecycle rules {sorted(lifecycle)}")
    statements = _statements(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    sids = _policy_sids({"Statement": statements})
    expected = {"DenyEncryptionOtherThanKms", "DenyOtherKmsKeys", "DenyKmsWithoutThisKey",
                "DenyCustomerProvidedKeys"}
    _expect(expected <= sids, f"{bucket}: bucket policy lacks {sorted(expected - sids)}")
    _expect(_denies_insecure_transport(statements), f"{bucket}: no TLS-only statement")
    _expect(not any(s["Effect"] == "Allow" and s.get("Principal") in ("*", {"AWS": "*"})
                    for s in statements), f"{bucket}: the bucket policy allows Principal *")
    return (f"data bucket {bucket}: versioned, SSE-KMS with the customer key + Bucket Keys, "
            f"public access blocked, ACLs disabled, access logs to {log_bucket}, lifecycle "
            f"{'/'.join(sorted(lifecycle))}, policy denies non-TLS, other encryption, "
            "other keys and SSE-C")


def check_log_bucket(run: LocalRun) -> str:
    s3 = run.client("s3")
    bucket = naming.log_bucket_name(run.customer, run.outputs["BucketOwnerAccount"],
                                    run.outputs["BucketRegion"])
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)[
        "ServerSideEncryptionConfiguration"]["Rules"]
    _expect(rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256",
            f"{bucket}: encryption {rule}")
    _expect(s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled",
            f"{bucket}: versioning is not enabled")
    statements = _statements(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    delivery = [s for s in statements if s["Effect"] == "Allow"
                and s.get("Principal", {}).get("Service") == "logging.s3.amazonaws.com"]
    _expect(len(delivery) == 1, f"{bucket}: no single log-delivery grant")
    _expect(_denies_insecure_transport(statements), f"{bucket}: no TLS-only statement")
    return (f"log bucket {bucket}: SSE-S3, versioned, TLS only, log delivery granted to "
            "logging.s3.amazonaws.com (moto accepted it as the logging target)")


def check_key(run: LocalRun) -> str:
    kms = run.client("kms")
    key_arn = run.outputs["KmsKeyArn"]
    metadata = kms.describe_key(KeyId=key_arn)["KeyMetadata"]
    _expect(metadata["KeyState"] == "Enabled", f"key state {metadata['KeyState']}")
    _expect(kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"] is True,
            "key rotation is off")
    alias = naming.key_alias(run.customer)
    aliases = {a["AliasName"] for a in kms.list_aliases(KeyId=key_arn)["Aliases"]}
    _expect(alias in aliases, f"alias {alias} does not name the key")
    # moto requires PolicyName (AWS defaults it to "default").
    policy = kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"]
    _expect("DenyPartnerKeyUseOutsideS3" in _policy_sids(policy),
            "the key policy lacks DenyPartnerKeyUseOutsideS3")
    return (f"KMS key {metadata['KeyId']}: enabled, yearly rotation on, alias {alias}, key "
            "policy denies the partner any use outside S3")


def check_partner_identity(run: LocalRun) -> str:
    if run.outputs.get("AccessMode") != "iam-user":
        return f"partner identity: access mode {run.outputs.get('AccessMode')} (no IAM user)"
    iam = run.client("iam")
    user = run.outputs["PartnerUserName"]
    groups = [g["GroupName"] for g in iam.list_groups_for_user(UserName=user)["Groups"]]
    group = naming.partner_group_name(run.customer)
    _expect(groups == [group], f"{user} is in {groups}, expected [{group}]")
    attached = [p["PolicyName"] for p in
                iam.list_attached_group_policies(GroupName=group)["AttachedPolicies"]]
    policy_name = naming.partner_policy_name(run.customer)
    _expect(attached == [policy_name], f"{group} has {attached}, expected [{policy_name}]")
    _expect(not iam.list_user_policies(UserName=user)["PolicyNames"]
            and not iam.list_attached_user_policies(UserName=user)["AttachedPolicies"],
            f"{user} has policies of its own (it must get them only through its group)")
    keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    _expect(len(keys) == 1 and keys[0]["Status"] == "Active", f"{user} keys: {keys}")
    return (f"IAM user {user}: member of {group} only, which holds {policy_name} only; one "
            "active access key")


def check_partner_secret(run: LocalRun) -> str:
    if run.outputs.get("AccessMode") != "iam-user":
        return "partner secret: none in this access mode"
    secretsmanager = run.client("secretsmanager")
    arn = run.outputs["PartnerSecretArn"]
    described = secretsmanager.describe_secret(SecretId=arn)
    _expect(described["Name"] == naming.partner_secret_name(run.customer),
            f"secret name {described['Name']}")
    _expect(described.get("KmsKeyId") == run.outputs["KmsKeyArn"],
            f"secret encrypted with {described.get('KmsKeyId')}, not the customer key")
    _expect(described.get("RotationEnabled") is True and described.get("RotationLambdaARN", "")
            .endswith(f":function:{naming.rotation_function_name(run.customer)}"),
            "secret rotation is not scheduled with the rotation function")
    secret = run.partner_secret()
    _expect(set(secret) >= PARTNER_SECRET_FIELDS,
            f"secret lacks {sorted(PARTNER_SECRET_FIELDS - set(secret))}")
    keys = run.client("iam").list_access_keys(UserName=secret["user_name"])["AccessKeyMetadata"]
    _expect(secret["access_key_id"] in {k["AccessKeyId"] for k in keys},
            "the secret's access key is not the partner user's")
    _expect(secret["bucket"] == run.outputs["BucketName"]
            and secret["kms_key_arn"] == run.outputs["KmsKeyArn"],
            "the secret's connection fields differ from the stack outputs")
    days = described.get("RotationRules", {}).get("AutomaticallyAfterDays")
    return (f"secret {described['Name']}: encrypted with the customer key, holds the partner "
            f"user's current key and connection fields, rotation every {days} days")


def _refused(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


def check_bucket_policy_enforced(run: LocalRun) -> str:
    """Uploads as the operator, over TLS, against the bucket policy evaluated with request
    context: naming the customer key passes, and so does an upload without encryption headers
    (the bucket's default encryption applies); naming SSE-S3, another KMS key, ``aws:kms``
    without a key, or a customer-provided key is refused."""
    s3 = run.client("s3")
    bucket, key_arn = run.outputs["BucketName"], run.outputs["KmsKeyArn"]
    key = f"localrun-probe/{uuid.uuid4()}.txt"

    s3.put_object(Bucket=bucket, Key=key, Body=b"probe", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=key_arn)
    head = s3.head_object(Bucket=bucket, Key=key)
    _expect(head.get("ServerSideEncryption") == "aws:kms" and head.get("SSEKMSKeyId") == key_arn,
            f"an upload naming the customer key was stored as {head.get('ServerSideEncryption')}"
            f" / {head.get('SSEKMSKeyId')}")
    _expect(_refused(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x",
                                           ServerSideEncryption="AES256")),
            "an SSE-S3 upload was accepted")
    other_key = run.client("kms").create_key(Description="localrun probe")["KeyMetadata"]["Arn"]
    _expect(_refused(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x",
                                           ServerSideEncryption="aws:kms",
                                           SSEKMSKeyId=other_key)),
            "an upload naming another KMS key was accepted")
    _expect(_refused(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x",
                                           SSECustomerAlgorithm="AES256",
                                           SSECustomerKey="k" * 32)),
            "an upload with a customer-provided key (SSE-C) was accepted")
    _expect(_refused(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x",
                                           ServerSideEncryption="aws:kms")),
            "an upload naming aws:kms without the customer key was accepted")
    _expect(not _refused(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x")),
            "an upload without encryption headers (default encryption) was refused")
    versions = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    for version in versions:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
    return ("bucket policy enforced over TLS: uploads naming the customer key, or no "
            "encryption (bucket default), are accepted; uploads naming SSE-S3, another KMS key, "
            "aws:kms without the key, or SSE-C are refused")


DEPLOYMENT_CHECKS: tuple[Callable[[LocalRun], str], ...] = (
    check_stack, check_data_bucket, check_log_bucket, check_key, check_partner_identity,
    check_partner_secret, check_bucket_policy_enforced,
)
