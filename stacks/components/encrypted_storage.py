"""The customer's key and buckets, with every secure default in one place."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from phi_core import account_roles, defaults, naming
from stacks.components.stack_facts import days, facts_of
from stacks.config import Retention

# Server access logs are evidence of who touched PHI: kept six years, HIPAA's retention period
# for required documentation (45 CFR 164.316(b)(2)).
ACCESS_LOG_RETENTION_DAYS = defaults.EVIDENCE_RETENTION_DAYS


def secure_bucket(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey | None,
    lifecycle_rules: list[s3.LifecycleRule],
    bucket_name: str | None = None,
    access_logs: tuple[s3.IBucket, str] | None = None,
    object_lock_retention: s3.ObjectLockRetention | None = None,
    encryption_exempt_source_arn: str | list[str] | None = None,
    deployer: str | None = None,
) -> s3.Bucket:
    """A bucket with every secure default, the one place they are written.

    SSE-KMS with ``key`` and S3 Bucket Keys (or SSE-S3 when ``key`` is None: S3 server access
    logs can only be delivered to SSE-S3 buckets), SSE-C blocked, all public access blocked,
    TLS only and TLS >= 1.2 (bucket-policy denies), versioning, object ownership enforced (ACLs
    disabled), its policy, encryption, versioning, lifecycle and object versions changed only by
    the deployment role and break-glass, the bucket policy RETAIN like the bucket; server access
    logs to ``access_logs`` (bucket, prefix) and Object Lock with ``object_lock_retention``
    when given.

    With a ``key``, the bucket policy also refuses any upload that names another encryption
    (:func:`_deny_wrong_encryption`). ``encryption_exempt_source_arn`` (default none) exempts
    the deliveries an AWS service makes on behalf of that one resource of ours from those
    denies: CloudTrail writes its digest files with SSE-S3 whatever the trail's key
    (docs/security.md, "Service contracts"); a list exempts each (the central custody bucket's
    trails). ``deployer`` replaces the deployment role as the role that may change the
    bucket's controls (the pipeline's stack is deployed by the CDK bootstrap's role).
    """
    bucket = s3.Bucket(
        scope,
        construct_id,
        bucket_name=bucket_name,
        encryption=s3.BucketEncryption.KMS if key else s3.BucketEncryption.S3_MANAGED,
        encryption_key=key,
        bucket_key_enabled=True if key else None,
        blocked_encryption_types=[s3.BlockedEncryptionType.SSE_C],
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        minimum_tls_version=defaults.MINIMUM_TLS_VERSION,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=access_logs[0] if access_logs else None,
        server_access_logs_prefix=access_logs[1] if access_logs else None,
        object_lock_enabled=True if object_lock_retention else None,
        object_lock_default_retention=object_lock_retention,
        lifecycle_rules=lifecycle_rules,
        removal_policy=RemovalPolicy.RETAIN,
    )
    if key is not None:
        _deny_wrong_encryption(bucket, key, exempt_source_arn=encryption_exempt_source_arn)
    # Its policy, encryption, versioning, lifecycle and versions: the deployment role's and
    # break-glass's to change, nobody else's (phi_core.account_roles).
    stack = facts_of(bucket)
    bucket.add_to_resource_policy(iam.PolicyStatement.from_json(
        account_roles.guarded_bucket_deny(
            account_roles.Roles(account=stack.account, partition=stack.partition),
            bucket.bucket_arn, deployer=deployer)))
    # A retained bucket keeps its policy too: `cdk destroy` must not leave data behind without
    # the TLS and encryption denies.
    assert bucket.policy is not None
    bucket.policy.apply_removal_policy(RemovalPolicy.RETAIN)
    return bucket


def _deny_wrong_encryption(
    bucket: s3.Bucket, key: kms.IKey, *, exempt_source_arn: str | list[str] | None
) -> None:
    """Refuse uploads that would not be encrypted with ``key``.

    Only a request that *names* something else is refused: each deny pairs the comparison
    with ``Null: false`` (the header is present). A PutObject without encryption headers
    relies on the bucket's default encryption, which is this key, and so do S3's own
    deliveries and multipart parts (UploadPart carries no encryption header). Neither the
    plain ``Null: true`` form nor the ``...IfExists`` form may be used here: both match an
    absent header, and in a Deny they would refuse exactly those requests.
    """
    objects = bucket.arn_for_objects("*")
    algorithm = "s3:x-amz-server-side-encryption"
    key_id = "s3:x-amz-server-side-encryption-aws-kms-key-id"
    # A service delivering on behalf of the exempt resource carries its ARN as aws:SourceArn;
    # every other request carries another or none, and a negated operator matches both.
    exempt = {"aws:SourceArn": exempt_source_arn} if exempt_source_arn else {}

    def deny(sid: str, conditions: dict[str, dict[str, str | list[str]]]) -> None:
        if exempt:
            conditions.setdefault("StringNotEquals", {}).update(exempt)
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid=sid,
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"],
            resources=[objects],
            conditions=conditions,
        ))

    deny("DenyEncryptionOtherThanKms", {
        "StringNotEquals": {algorithm: "aws:kms"}, "Null": {algorithm: "false"}})
    deny("DenyOtherKmsKeys", {
        "StringNotEquals": {key_id: key.key_arn}, "Null": {key_id: "false"}})
    # "aws:kms" without a key id would make S3 use the AWS managed key aws/s3.
    deny("DenyKmsWithoutThisKey", {
        "StringEquals": {algorithm: "aws:kms"}, "Null": {key_id: "true"}})
    deny("DenyCustomerProvidedKeys", {
        "Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "false"}})


class EncryptedStorage(Construct):
    """Creates a customer's KMS key, data bucket and access-log bucket.

    Guarantees, for every customer:

    - the key: customer-managed, automatic yearly rotation, alias ``key_alias``, RETAIN;
    - the data bucket: SSE-KMS with that key and S3 Bucket Keys, all public access blocked,
      TLS only and TLS >= 1.2 (bucket-policy denies), versioning, object ownership enforced
      (ACLs disabled), SSE-C blocked, server access logs to the log bucket, lifecycle for
      noncurrent versions and incomplete multipart uploads, EventBridge notifications, RETAIN;
    - a bucket policy that denies any PutObject naming another encryption algorithm, another
      KMS key, or a customer-provided key (:func:`secure_bucket`);
    - the log bucket: the same transport and public-access rules, SSE-S3 (S3 server access
      logging cannot deliver to SSE-KMS buckets), six-year retention, RETAIN.

    Construct ids here are part of each customer's logical ids and must never change
    (tests/infra/test_logical_ids.py pins them).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key_alias: str,
        data_bucket_name: str,
        log_bucket_name: str,
        retention: Retention,
    ) -> None:
        super().__init__(scope, construct_id)
        # The bucket's ARN from its deterministic name: policies that name the bucket (the key
        # policy in particular) then need no reference to it, so key and bucket never form a
        # dependency cycle.
        self.bucket_arn = facts_of(self).format_arn(
            service="s3", region="", account="", resource=data_bucket_name
        )
        self.key = self._key(key_alias)
        self.log_bucket = self._log_bucket(log_bucket_name)
        self.bucket = self._data_bucket(data_bucket_name, retention)

    def _key(self, alias: str) -> kms.Key:
        return kms.Key(
            self,
            "DataKey",
            alias=alias,
            description=f"Encrypts the objects of {alias.removeprefix('alias/')} (PHI)",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _log_bucket(self, name: str) -> s3.Bucket:
        return secure_bucket(
            self,
            "AccessLogBucket",
            bucket_name=name,
            key=None,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="RetainAccessLogs",
                    expiration=days(ACCESS_LOG_RETENTION_DAYS),
                    noncurrent_version_expiration=days(30),
                    abort_incomplete_multipart_upload_after=days(1),
                )
            ],
        )

    def _data_bucket(self, name: str, retention: Retention) -> s3.Bucket:
        bucket = secure_bucket(
            self,
            "DataBucket",
            bucket_name=name,
            key=self.key,
            access_logs=(self.log_bucket, "data-bucket/"),
            lifecycle_rules=[
                # An overwritten inbound file's original is evidence: kept as long as custody
                # requires (a partner cannot delete a version; nobody else may either).
                s3.LifecycleRule(
                    id="KeepInboundOriginals",
                    prefix=naming.INBOUND_PREFIX,
                    noncurrent_version_expiration=days(
                        defaults.EVIDENCE_RETENTION_DAYS),
                ),
                s3.LifecycleRule(
                    id="ExpireNoncurrentVersions",
                    prefix=naming.OUTBOUND_PREFIX,
                    noncurrent_version_expiration=days(
                        retention.noncurrent_version_days
                    ),
                    expired_object_delete_marker=True,
                ),
                s3.LifecycleRule(
                    id="AbortIncompleteMultipartUploads",
                    abort_incomplete_multipart_upload_after=days(
                        retention.abort_incomplete_multipart_days
                    ),
                ),
            ],
        )
        # EventBridge notifications (the importer's trigger) set on the bucket itself: the L2's
        # event_bridge_enabled would add a custom-resource Lambda, which we never deploy.
        cfn_bucket = bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                event_bridge_enabled=True
            )
        )
        return bucket
