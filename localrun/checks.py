"""What the local run verifies about the deployed stacks, read back through the AWS APIs.

Each check reads the emulator the way an auditor would read AWS (GetBucketVersioning,
GetKeyPolicy, ...), compares it with what the template promises, and returns one line saying
what it proved; a mismatch raises :class:`CheckFailed` naming what differs. The checks read
configuration: whether the emulator *enforces* it is a separate question, answered by
:func:`check_bucket_policy_enforced` for the bucket policy and in docs/local-run.md for the rest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

from localaws.policy import Decision, Request, evaluate
from localrun.context import LocalRun, denied
from phi_core import account_roles, naming

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


def _check_stack(run: LocalRun, name: str, written: dict[str, str]) -> str:
    cloudformation = run.client("cloudformation")
    stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    _expect(stack["StackStatus"] == "CREATE_COMPLETE",
            f"stack {name} status is {stack['StackStatus']}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    _expect(outputs == written, f"{name}: DescribeStacks outputs differ from the CLI's outputs "
            "file")
    count = len(cloudformation.list_stack_resources(
        StackName=stack["StackName"])["StackResourceSummaries"])
    return f"stack {stack['StackName']}: CREATE_COMPLETE, {count} resources, {len(outputs)} outputs"


def check_access_stack(run: LocalRun) -> str:
    """PhiExchange-access: complete, each role with the tag condition in its trust (MFA too for
    break-glass; CloudFormation for the deployment role) and one-hour sessions."""
    stack = run.client("cloudformation").describe_stacks(
        StackName=naming.ACCESS_STACK_NAME)["Stacks"][0]
    _expect(stack["StackStatus"] == "CREATE_COMPLETE",
            f"stack {naming.ACCESS_STACK_NAME} status is {stack['StackStatus']}")
    iam = run.client("iam")
    shown = []
    for name in (naming.DEPLOYMENT_ROLE_NAME, naming.CDK_DEPLOY_ROLE_NAME,
                 naming.IMPORTER_ROLE_NAME, naming.OPERATOR_ROLE_NAME,
                 naming.BREAK_GLASS_ROLE_NAME):
        role = iam.get_role(RoleName=name)["Role"]
        trust = role["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        (statement,) = trust["Statement"]
        condition = statement.get("Condition", {})
        if name == naming.DEPLOYMENT_ROLE_NAME:
            _expect(statement["Principal"] == {"Service": "cloudformation.amazonaws.com"},
                    f"{name} trusts {statement['Principal']}")
            shown.append(f"{name} (CloudFormation)")
            continue
        tag = account_roles.assume_tag(name)
        _expect(condition.get("StringEquals", {}).get(tag) == "true",
                f"{name}'s trust does not ask for {tag} = true: {condition}")
        mfa = condition.get("Bool", {}).get("aws:MultiFactorAuthPresent") == "true"
        _expect(mfa == (name == naming.BREAK_GLASS_ROLE_NAME),
                f"{name}'s trust MFA condition is {mfa}")
        _expect(role["MaxSessionDuration"] == 3600, f"{name}: sessions of "
                f"{role['MaxSessionDuration']} s")
        shown.append(f"{name} ({tag.removeprefix('aws:PrincipalTag/')}{' + MFA' if mfa else ''})")
    return (f"stack {naming.ACCESS_STACK_NAME}: CREATE_COMPLETE; roles {', '.join(shown)}, "
            "one-hour sessions")


def check_stack(run: LocalRun) -> str:
    return _check_stack(run, naming.stack_name(run.customer), run.outputs)


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
    _expect(denied(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x",
                                         ServerSideEncryption="AES256")),
            "an SSE-S3 upload was accepted")
    other_key = run.client("kms").create_key(Description="localrun probe")["KeyMetadata"]["Arn"]
    _expect(denied(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x",
                                         ServerSideEncryption="aws:kms",
                                         SSEKMSKeyId=other_key)),
            "an upload naming another KMS key was accepted")
    _expect(denied(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x",
                                         SSECustomerAlgorithm="AES256",
                                         SSECustomerKey="k" * 32)),
            "an upload with a customer-provided key (SSE-C) was accepted")
    _expect(denied(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x",
                                         ServerSideEncryption="aws:kms")),
            "an upload naming aws:kms without the customer key was accepted")
    _expect(not denied(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x")),
            "an upload without encryption headers (default encryption) was refused")
    versions = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    # Only the deployment role and break-glass delete versions, not even an administrator:
    # the probe's versions stay, under a delete marker.
    def delete_version(version_id: str) -> Callable[[], Any]:
        return lambda: s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)

    _expect(all(denied(delete_version(v["VersionId"])) for v in versions),
            "an administrator deleted an object version")
    s3.delete_object(Bucket=bucket, Key=key)
    return ("bucket policy enforced over TLS: uploads naming the customer key, or no "
            "encryption (bucket default), are accepted; uploads naming SSE-S3, another KMS key, "
            "aws:kms without the key, or SSE-C are refused; the account's administrator may "
            "not delete the probe's versions (OnlyDeploymentChangesTheBucket)")


def check_partner_grants(run: LocalRun) -> str:
    """The partner principals of a cross-account or assume-role customer, where AWS reads them:
    the bucket and key policies (cross-account) or the role's trust policy (assume-role)."""
    mode = run.outputs.get("AccessMode")
    principals = list(run.config.partner_principals)
    if mode == "cross-account":
        bucket = run.outputs["BucketName"]
        statements = _statements(run.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])
        granted = {p for s in statements if s["Effect"] == "Allow"
                   and s.get("Sid", "").startswith("Partner")
                   for p in _as_list((s.get("Principal") or {}).get("AWS"))}
        _expect(set(principals) <= granted,
                f"{bucket}: the bucket policy grants {sorted(granted)}, not {principals}")
        key_policy = run.client("kms").get_key_policy(
            KeyId=run.outputs["KmsKeyArn"], PolicyName="default")["Policy"]
        _expect("PartnerUseKeyThroughS3" in _policy_sids(key_policy),
                "the key policy lacks PartnerUseKeyThroughS3")
        return (f"bucket policy grants {', '.join(principals)} its prefixes; the key policy "
                "lets it use the key through S3 only")
    if mode == "assume-role":
        role_name = run.outputs["PartnerRoleArn"].rsplit("/", 1)[-1]
        role = run.client("iam").get_role(RoleName=role_name)["Role"]
        trust = role["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        (statement,) = trust["Statement"]
        _expect(set(_as_list(statement["Principal"].get("AWS"))) == set(principals),
                f"{role_name} trusts {statement['Principal']}, not {principals}")
        external = statement.get("Condition", {}).get("StringEquals", {}).get("sts:ExternalId")
        _expect(external == run.outputs["ExternalId"],
                f"{role_name}'s trust policy does not require the external id")
        _expect(role.get("MaxSessionDuration") == 3600,
                f"{role_name}: sessions last {role.get('MaxSessionDuration')} s, expected 3600")
        return (f"role {role_name}: trusts {', '.join(principals)} only with the external id, "
                "sessions of at most 1 hour")
    return f"partner grants: access mode {mode} (none in resource policies)"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


DEPLOYMENT_CHECKS: tuple[Callable[[LocalRun], str], ...] = (
    check_stack, check_data_bucket, check_log_bucket, check_key, check_partner_identity,
    check_partner_secret, check_partner_grants, check_bucket_policy_enforced,
)


# --- the audit stack ---------------------------------------------------------------------


def check_audit_stack(run: LocalRun) -> str:
    return _check_stack(run, naming.AUDIT_STACK_NAME, run.audit_outputs)


def _audit_key_arn(run: LocalRun) -> str:
    arn: str = run.client("kms").describe_key(KeyId=naming.AUDIT_KEY_ALIAS)["KeyMetadata"]["Arn"]
    return arn


def check_trail(run: LocalRun) -> str:
    cloudtrail = run.client("cloudtrail")
    arn = run.audit_outputs["TrailArn"]
    trail = cloudtrail.get_trail(Name=arn)["Trail"]
    key_arn = _audit_key_arn(run)
    custody = run.audit_outputs["CustodyBucketName"]
    _expect(trail["Name"] == naming.TRAIL_NAME, f"trail name {trail['Name']}")
    _expect(trail.get("LogFileValidationEnabled") is True, f"{arn}: log-file validation is off")
    _expect(trail.get("KmsKeyId") == key_arn,
            f"{arn}: encrypted with {trail.get('KmsKeyId')}, not the audit key {key_arn}")
    _expect(trail.get("S3BucketName") == custody,
            f"{arn}: delivers to {trail.get('S3BucketName')}, not {custody}")
    _expect(cloudtrail.get_trail_status(Name=arn).get("IsLogging") is True, f"{arn}: not logging")
    advanced = cloudtrail.get_event_selectors(TrailName=arn).get("AdvancedEventSelectors", [])
    prefixes = [prefix for selector in advanced for field in selector["FieldSelectors"]
                if field["Field"] == "resources.ARN" for prefix in field.get("StartsWith", [])]
    expected = f"arn:aws:s3:::{naming.BUCKET_NAME_PREFIX}"
    _expect(prefixes == [expected], f"{arn}: data events selected for {prefixes}, not "
            f"[{expected}]")
    return (f"trail {trail['Name']}: log-file validation on, encrypted with the audit key, "
            f"delivering to {custody}, logging, S3 data events of every {expected}* bucket; "
            "created only after the emulator checked, as CloudTrail does, that the custody "
            "bucket policy and the audit key policy let cloudtrail.amazonaws.com deliver")


def check_custody_bucket(run: LocalRun) -> str:
    """Object Lock read back and enforced: a version written now cannot be deleted."""
    s3 = run.client("s3")
    bucket = run.audit_outputs["CustodyBucketName"]
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    retention = lock.get("Rule", {}).get("DefaultRetention", {})
    _expect(lock.get("ObjectLockEnabled") == "Enabled" and retention.get("Mode") == "COMPLIANCE",
            f"{bucket}: object lock {lock}")
    _expect(s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled",
            f"{bucket}: versioning is not enabled")
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)[
        "ServerSideEncryptionConfiguration"]["Rules"]
    default = rule["ApplyServerSideEncryptionByDefault"]
    key_arn = _audit_key_arn(run)
    _expect(default["SSEAlgorithm"] == "aws:kms" and default.get("KMSMasterKeyID") == key_arn,
            f"{bucket}: default encryption {default}")
    _expect(_denies_insecure_transport(_statements(s3.get_bucket_policy(Bucket=bucket)["Policy"])),
            f"{bucket}: no TLS-only statement")
    # Object Lock needs an integrity header on every upload (S3 and moto refuse one without).
    body = b"custody probe"
    key = f"localrun-probe/object-lock-{uuid.uuid4()}.txt"
    version = s3.put_object(
        Bucket=bucket, Key=key, Body=body,
        ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),  # noqa: S324
    )["VersionId"]
    head = s3.head_object(Bucket=bucket, Key=key, VersionId=version)
    _expect(head.get("ObjectLockMode") == "COMPLIANCE", f"{bucket}: new version not locked")
    _expect(denied(lambda: s3.delete_object(Bucket=bucket, Key=key, VersionId=version)),
            f"{bucket}: a locked version could be deleted")
    days = retention.get("Days") or f"{retention.get('Years')} years"
    return (f"custody bucket {bucket}: Object Lock COMPLIANCE {days} days, versioned, SSE-KMS "
            f"with the audit key, TLS only; a probe version ({key}) is locked until "
            f"{head['ObjectLockRetainUntilDate']:%Y-%m-%d} and DeleteObject of it is refused")


def _queue(run: LocalRun, url_output: str) -> dict[str, str]:
    attributes: dict[str, str] = run.client("sqs").get_queue_attributes(
        QueueUrl=run.audit_outputs[url_output], AttributeNames=["All"])["Attributes"]
    return attributes


def check_ingestion_queues(run: LocalRun) -> str:
    queue = _queue(run, "IngestionQueueUrl")
    dlq = _queue(run, "IngestionDeadLetterQueueUrl")
    key_arn = _audit_key_arn(run)
    for name, attributes in ((naming.INGESTION_QUEUE_NAME, queue),
                             (naming.INGESTION_DEAD_LETTER_QUEUE_NAME, dlq)):
        _expect(attributes["QueueArn"].endswith(f":{name}"), f"queue ARN {attributes['QueueArn']}")
        _expect(attributes.get("KmsMasterKeyId") == key_arn,
                f"{name}: encrypted with {attributes.get('KmsMasterKeyId')}, not the audit key")
    redrive = json.loads(queue.get("RedrivePolicy") or "{}")
    _expect(redrive.get("deadLetterTargetArn") == dlq["QueueArn"],
            f"{naming.INGESTION_QUEUE_NAME}: dead letters go to "
            f"{redrive.get('deadLetterTargetArn')}, not {dlq['QueueArn']}")
    return (f"queue {naming.INGESTION_QUEUE_NAME}: SSE-KMS with the audit key, visibility "
            f"{queue['VisibilityTimeout']} s, a message received {redrive['maxReceiveCount']} "
            f"times moves to {naming.INGESTION_DEAD_LETTER_QUEUE_NAME} (SSE-KMS, retention "
            f"{int(dlq['MessageRetentionPeriod']) // 86400} days)")


AUDIT_CHECKS: tuple[Callable[[LocalRun], str], ...] = (
    check_audit_stack, check_trail, check_custody_bucket, check_ingestion_queues,
)


def check_ingestion_rule(run: LocalRun) -> str:
    """The customer's inbound rule targets the audit stack's queue, which exists, and the
    queue's policy admits that rule (evaluated as EventBridge would be: the events service
    principal with the rule's ARN as aws:SourceArn)."""
    if not run.outputs.get("InboundPrefix"):
        return "ingestion rule: none (the customer has no inbound direction)"
    events = run.client("events")
    name = naming.ingestion_rule_name(run.customer)
    rule = events.describe_rule(Name=name)
    pattern = json.loads(rule["EventPattern"])
    _expect(pattern.get("detail", {}).get("bucket", {}).get("name") == [run.outputs["BucketName"]],
            f"{name}: matches buckets {pattern.get('detail', {}).get('bucket')}")
    queue = _queue(run, "IngestionQueueUrl")
    targets = events.list_targets_by_rule(Rule=name)["Targets"]
    _expect([t["Arn"] for t in targets] == [queue["QueueArn"]],
            f"{name}: targets {[t['Arn'] for t in targets]}, not the queue {queue['QueueArn']}")
    _expect(bool(targets[0].get("InputTransformer")), f"{name}: no input transformer")
    policy = json.loads(queue.get("Policy") or "{}")
    decision = evaluate(policy, Request(
        action="sqs:SendMessage", resource=queue["QueueArn"], service="events.amazonaws.com",
        context={"aws:SourceArn": [rule["Arn"]], "aws:SourceAccount": [rule["Arn"].split(":")[4]],
                 "aws:SecureTransport": ["true"]}))
    _expect(decision is Decision.ALLOW,
            f"the queue policy of {naming.INGESTION_QUEUE_NAME} does not admit {rule['Arn']}")
    return (f"rule {name}: Object Created under {run.outputs['InboundPrefix']} of "
            f"{run.outputs['BucketName']} -> queue {naming.INGESTION_QUEUE_NAME} (exists; its "
            "policy admits this rule as events.amazonaws.com)")
