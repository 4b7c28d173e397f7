"""The evidence store's parts: the custody bucket (Object Lock), its access-log bucket, and the
key and bucket statements that let CloudTrail deliver for named trails only.

Written once, used twice: by the audit stack for its own trail (one account), and by the
log-archive stack for every exchange account's trail (the central evidence). Functions, not a
construct, so the audit stack's resources keep the construct paths (and logical ids) they have
always had.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.components.encrypted_storage import ACCESS_LOG_RETENTION_DAYS, secure_bucket
from stacks.config import AuditSettings, LockMode

CLOUDTRAIL = "cloudtrail.amazonaws.com"


def _one_or_all(values: Sequence[str]) -> str | list[str]:
    """A condition value: the string itself for one (as the single-account policies always
    were), the list for several (a condition on a list matches any of them)."""
    return values[0] if len(values) == 1 else list(values)


def access_log_bucket(scope: Construct, construct_id: str) -> s3.Bucket:
    return secure_bucket(
        scope,
        construct_id,
        key=None,
        lifecycle_rules=[s3.LifecycleRule(
            id="RetainAccessLogs", expiration=Duration.days(ACCESS_LOG_RETENTION_DAYS))],
    )


def custody_bucket(scope: Construct, construct_id: str, *, key: kms.IKey,
                   access_logs: s3.IBucket, settings: AuditSettings,
                   trail_arns: Sequence[str], bucket_name: str | None = None) -> s3.Bucket:
    """The Object-Locked bucket the trails deliver to (``settings``: lock mode and retention)."""
    retention = Duration.days(settings.retention_days)
    return secure_bucket(
        scope,
        construct_id,
        key=key,
        bucket_name=bucket_name,
        access_logs=(access_logs, "custody-bucket/"),
        object_lock_retention=(
            s3.ObjectLockRetention.compliance(retention)
            if settings.lock_mode is LockMode.COMPLIANCE
            else s3.ObjectLockRetention.governance(retention)
        ),
        lifecycle_rules=[],
        # CloudTrail writes digest files with SSE-S3 even for a KMS trail.
        encryption_exempt_source_arn=_one_or_all(trail_arns),
    )


def allow_cloudtrail_to_use_key(key: kms.Key, trail_arns: Sequence[str]) -> None:
    """What CreateTrail checks and delivery needs (InsufficientEncryptionPolicyException
    otherwise), each only for the named trails: GenerateDataKey* under a trail's encryption
    context, DescribeKey (encryption-context conditions never match it), and Decrypt, which
    the custody bucket's S3 Bucket Key requires."""
    service = iam.ServicePrincipal(CLOUDTRAIL)
    trails = _one_or_all(trail_arns)
    these_trails = {"aws:SourceArn": trails}
    key.add_to_resource_policy(iam.PolicyStatement(
        sid="AllowCloudTrailToEncryptLogs",
        principals=[service],
        actions=["kms:GenerateDataKey*"],
        resources=["*"],
        conditions={"StringEquals": {
            **these_trails, "kms:EncryptionContext:aws:cloudtrail:arn": trails}},
    ))
    key.add_to_resource_policy(iam.PolicyStatement(
        sid="AllowCloudTrailToDescribeKey",
        principals=[service],
        actions=["kms:DescribeKey"],
        resources=["*"],
        conditions={"StringEquals": these_trails},
    ))
    key.add_to_resource_policy(iam.PolicyStatement(
        sid="AllowCloudTrailToDecryptForBucketKey",
        principals=[service],
        actions=["kms:Decrypt"],
        resources=["*"],
        conditions={"StringEquals": these_trails},
    ))


def allow_cloudtrail_to_deliver(bucket: s3.Bucket,
                                trails_by_account: Mapping[str, Sequence[str]]) -> None:
    """The two statements AWS documents for a trail's bucket, each only for the named trails;
    each account's trails write under that account's ``AWSLogs/<account>/`` only."""
    service = iam.ServicePrincipal(CLOUDTRAIL)
    every_trail = [arn for arns in trails_by_account.values() for arn in arns]
    bucket.add_to_resource_policy(iam.PolicyStatement(
        sid="AWSCloudTrailAclCheck",
        principals=[service],
        actions=["s3:GetBucketAcl"],
        resources=[bucket.bucket_arn],
        conditions={"StringEquals": {"aws:SourceArn": _one_or_all(every_trail)}},
    ))
    several = len(trails_by_account) > 1
    for account, arns in trails_by_account.items():
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid=f"AWSCloudTrailWrite{account}" if several else "AWSCloudTrailWrite",
            principals=[service],
            actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects(f"AWSLogs/{account}/*")],
            conditions={"StringEquals": {
                "s3:x-amz-acl": "bucket-owner-full-control",
                "aws:SourceArn": _one_or_all(arns)}},
        ))
