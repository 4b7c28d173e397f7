"""One CloudTrail trail for every customer bucket, delivered to an Object-Locked bucket."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from phi_core import account_roles, naming
from stacks.components import evidence, service_key_access
from stacks.components.stack_facts import facts_of
from stacks.config import AuditSettings

# CloudWatch Logs is for searching recent activity; the Object-Locked bucket is the record.
TRAIL_LOG_GROUP_RETENTION = logs.RetentionDays.ONE_YEAR
TRAIL_LOG_GROUP_NAME = f"/{naming.PROJECT}/audit-trail"


@dataclass(frozen=True)
class CentralEvidence:
    """Where the trail delivers when the evidence lives in the log-archive account
    (:class:`stacks.log_archive_stack.LogArchiveStack`)."""

    bucket_name: str
    key_arn: str  # the evidence key's alias ARN: a key's id is not known before it exists


class AuditTrail(Construct):
    """Creates the audit key, the custody bucket, its access-log bucket, and the trail.

    Guarantees: the trail records management events and the S3 object-level data events of
    every bucket whose name starts with ``phi-`` (every customer data bucket, present and
    future: ``naming.data_bucket_name``) through advanced event selectors, so one trail serves
    all customers; log-file validation (digest files) is on; log files are encrypted with the
    audit key and delivered to a versioned custody bucket under S3 Object Lock
    (``settings.lock_mode``, ``settings.retention_days``, default compliance mode, six years)
    and to a KMS-encrypted CloudWatch Logs group. Audit buckets get generated names that do not
    start with ``phi-``, so the trail never records its own deliveries.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: AuditSettings,
                 central: CentralEvidence | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = facts_of(self)
        # Built from the trail's fixed name, not read from the trail: the key and bucket
        # policies name the trail, and the trail depends on both (a reference would be a cycle).
        self.trail_arn = stack.format_arn(
            service="cloudtrail", resource="trail", resource_name=naming.TRAIL_NAME)
        self.central = central
        self.key = kms.Key(
            self,
            "AuditKey",
            alias=naming.AUDIT_KEY_ALIAS,
            description="Encrypts the audit trail, its logs and the ingestion queue",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.access_log_bucket: s3.Bucket | None = None
        self.custody_bucket: s3.Bucket | None = None
        if central is None:  # the evidence stays in this account
            evidence.allow_cloudtrail_to_use_key(self.key, [self.trail_arn])
            self.access_log_bucket = evidence.access_log_bucket(self, "AccessLogBucket")
            self.custody_bucket = evidence.custody_bucket(
                self, "CustodyBucket", key=self.key, access_logs=self.access_log_bucket,
                settings=settings, trail_arns=[self.trail_arn])
            evidence.allow_cloudtrail_to_deliver(self.custody_bucket,
                                                 {stack.account: [self.trail_arn]})
        self._guard_key()
        self.log_group = logs.LogGroup(
            self,
            "TrailLogGroup",
            log_group_name=TRAIL_LOG_GROUP_NAME,
            retention=TRAIL_LOG_GROUP_RETENTION,
            encryption_key=self.key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self._allow_logs_to_use_key()
        self.trail = self._trail()

    @property
    def custody_bucket_name(self) -> str:
        if self.custody_bucket is not None:
            return self.custody_bucket.bucket_name
        assert self.central is not None
        return self.central.bucket_name

    def _guard_key(self) -> None:
        """Only break-glass retires the key (its deletion makes the Object-Locked logs
        unreadable for ever); only the importer, the operator, the deployment role and
        break-glass decrypt with it (the queue's messages, the trail's logs). CloudFormation,
        which creates the key, is itself denied PutKeyPolicy, so it creates it with KMS's
        lockout safety check bypassed; the key stays manageable by break-glass."""
        stack = facts_of(self)
        roles = account_roles.Roles(account=stack.account, partition=stack.partition)
        self.key.add_to_resource_policy(iam.PolicyStatement.from_json(
            account_roles.audit_key_guard_deny(roles)))
        self.key.add_to_resource_policy(iam.PolicyStatement.from_json(
            account_roles.audit_key_crypto_deny(roles)))
        cfn_key = self.key.node.default_child
        assert isinstance(cfn_key, kms.CfnKey)
        cfn_key.bypass_policy_lockout_safety_check = True

    def _allow_logs_to_use_key(self) -> None:
        service_key_access.allow_log_group(
            self.key, sid="AllowLogsToEncryptTrailLogs", log_group_name=TRAIL_LOG_GROUP_NAME)

    def _trail(self) -> cloudtrail.CfnTrail:
        """The trail as an L1: the L2 adds bucket statements without a source condition and
        nothing to the key policy (aws-cdk#3822), so every statement is ours. The extra
        construct level keeps the logical id the L2 gave it (a named trail cannot be
        replaced in place)."""
        partition = facts_of(self).partition
        trail = cloudtrail.CfnTrail(
            Construct(self, "Trail"),
            "Resource",
            trail_name=naming.TRAIL_NAME,
            is_logging=True,
            s3_bucket_name=self.custody_bucket_name,
            kms_key_id=self.key.key_arn if self.central is None else self.central.key_arn,
            enable_log_file_validation=True,
            include_global_service_events=True,
            # Every region: an API call elsewhere is still a call on our account.
            is_multi_region_trail=True,
            # CloudWatch Logs delivery through our own role with a managed policy.
            cloud_watch_logs_log_group_arn=self.log_group.log_group_arn,
            cloud_watch_logs_role_arn=self._logs_delivery_role().role_arn,
            # Management events, plus object-level data events of every customer bucket by
            # name prefix.
            advanced_event_selectors=[
                cloudtrail.CfnTrail.AdvancedEventSelectorProperty(
                    name="Management events",
                    field_selectors=[cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(
                        field="eventCategory", equal_to=["Management"])],
                ),
                cloudtrail.CfnTrail.AdvancedEventSelectorProperty(
                    name="Object events of every customer bucket",
                    field_selectors=[
                        cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(
                            field="eventCategory", equal_to=["Data"]),
                        cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(
                            field="resources.type", equal_to=["AWS::S3::Object"]),
                        cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(
                            field="resources.ARN",
                            starts_with=[f"arn:{partition}:s3:::{naming.BUCKET_NAME_PREFIX}"]),
                    ],
                ),
            ],
        )
        # CreateTrail checks it may write to the bucket: the policy must exist first (the
        # central bucket's is deployed before any exchange account's audit stack).
        if self.custody_bucket is not None:
            assert self.custody_bucket.policy is not None
            trail.add_resource_dependency(self.custody_bucket.policy.node.default_child)  # type: ignore[arg-type]
        return trail

    def _logs_delivery_role(self) -> iam.Role:
        # AWS documents no source condition for this trust policy (only for resource
        # policies); the confused deputy is stopped by iam:PassRole: only principals of this
        # account can configure a trail with this role.
        policy = iam.ManagedPolicy(
            self,
            "LogsDeliveryPolicy",
            description="CloudTrail writes the audit trail to its one log group",
            statements=[iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{self.log_group.log_group_arn}"],
            )],
        )
        return iam.Role(
            self,
            "LogsDeliveryRole",
            assumed_by=iam.ServicePrincipal("cloudtrail.amazonaws.com"),
            managed_policies=[policy],
        )
