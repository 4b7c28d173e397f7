"""What the emulator creates and applies from a CloudFormation template, without importing moto.

:data:`APPLIED` lists, for every resource type in our templates (customer stack, audit stack
and CDK bootstrap stack), the properties the emulator applies: through moto's own model where
that was checked to apply them, or through :mod:`localaws.cfn_models`. :func:`coverage` compares a
template against it, so the local run can say exactly what it did *not* emulate, and a test can
fail when a template gains a resource type or property nobody checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Properties the emulator applies, per resource type, for every type in our templates. Types
# and properties missing here are reported by coverage(). "*" means every property.
APPLIED: dict[str, frozenset[str]] = {
    "AWS::SecretsManager::Secret": frozenset(
        {"Name", "Description", "KmsKeyId", "SecretString", "GenerateSecretString", "Tags"}
    ),
    "AWS::SecretsManager::RotationSchedule": frozenset(
        {"SecretId", "RotationLambdaARN", "RotationRules", "RotateImmediatelyOnUpdate"}
    ),
    "AWS::SecretsManager::ResourcePolicy": frozenset(
        {"SecretId", "ResourcePolicy", "BlockPublicPolicy"}
    ),
    "AWS::S3::BucketPolicy": frozenset({"Bucket", "PolicyDocument"}),
    "AWS::S3::Bucket": frozenset({
        "BucketName", "BucketEncryption", "Tags", "VersioningConfiguration",
        "PublicAccessBlockConfiguration", "OwnershipControls", "AccessControl",
        "LifecycleConfiguration", "NotificationConfiguration", "LoggingConfiguration",
        "ObjectLockEnabled", "ObjectLockConfiguration",
    }),
    "AWS::KMS::Key": frozenset(
        {"KeyPolicy", "KeyUsage", "KeySpec", "Description", "Tags", "MultiRegion",
         "EnableKeyRotation", "Enabled"}
    ),
    "AWS::KMS::Alias": frozenset({"AliasName", "TargetKeyId"}),
    "AWS::IAM::Group": frozenset({"GroupName", "Path", "ManagedPolicyArns", "Policies"}),
    "AWS::IAM::User": frozenset(
        {"UserName", "Path", "Groups", "ManagedPolicyArns", "Policies", "Tags"}
    ),
    "AWS::IAM::Role": frozenset({
        "RoleName", "AssumeRolePolicyDocument", "Path", "PermissionsBoundary", "Description",
        "Tags", "MaxSessionDuration", "Policies", "ManagedPolicyArns",
    }),
    "AWS::IAM::ManagedPolicy": frozenset(
        {"ManagedPolicyName", "Description", "Path", "PolicyDocument", "Groups", "Users",
         "Roles"}
    ),
    "AWS::IAM::Policy": frozenset({"PolicyName", "PolicyDocument", "Groups", "Users", "Roles"}),
    "AWS::IAM::AccessKey": frozenset({"UserName", "Status"}),
    "AWS::Logs::LogGroup": frozenset({"LogGroupName", "KmsKeyId", "RetentionInDays", "Tags"}),
    "AWS::Lambda::Function": frozenset({
        "Code", "FunctionName", "Handler", "Role", "Runtime", "Description", "MemorySize",
        "Timeout", "Environment", "ReservedConcurrentExecutions", "KmsKeyArn", "Tags",
        "Layers",
    }),
    # moto's own model publishes the version with its content from the asset bucket.
    "AWS::Lambda::LayerVersion": frozenset({"Content", "CompatibleRuntimes", "Description"}),
    "AWS::Lambda::Permission": frozenset(
        {"Action", "FunctionName", "Principal", "SourceArn", "SourceAccount"}
    ),
    "AWS::Events::Rule": frozenset(
        {"Description", "ScheduleExpression", "EventPattern", "State", "Targets", "Tags",
         "RoleArn", "EventBusName", "Name"}
    ),
    "AWS::SNS::Topic": frozenset({"TopicName", "DisplayName", "KmsMasterKeyId", "Tags"}),
    "AWS::SNS::TopicPolicy": frozenset({"Topics", "PolicyDocument"}),
    "AWS::SNS::Subscription": frozenset({"TopicArn", "Endpoint", "Protocol"}),
    "AWS::SQS::Queue": frozenset(
        {"QueueName", "KmsMasterKeyId", "MessageRetentionPeriod", "VisibilityTimeout", "Tags",
         "RedrivePolicy"}
    ),
    "AWS::SQS::QueuePolicy": frozenset({"Queues", "PolicyDocument"}),
    "AWS::CloudWatch::Alarm": frozenset({
        "AlarmName", "AlarmDescription", "Namespace", "MetricName", "ComparisonOperator",
        "EvaluationPeriods", "Period", "Threshold", "Statistic", "Dimensions", "AlarmActions",
        "DatapointsToAlarm", "ExtendedStatistic", "OKActions", "InsufficientDataActions",
        "Unit", "ActionsEnabled", "TreatMissingData", "Tags",
    }),
    # Created only once the CloudTrail delivery checks pass (localaws.service_access).
    "AWS::CloudTrail::Trail": frozenset({
        "TrailName", "S3BucketName", "S3KeyPrefix", "SnsTopicName", "IncludeGlobalServiceEvents",
        "IsMultiRegionTrail", "EnableLogFileValidation", "IsOrganizationTrail",
        "CloudWatchLogsLogGroupArn", "CloudWatchLogsRoleArn", "KMSKeyId", "EventSelectors",
        "AdvancedEventSelectors", "InsightSelectors", "IsLogging", "Tags",
    }),
    # Recorded for the emulator's scanner once GuardDuty's checks pass (localaws.malware_scan).
    "AWS::GuardDuty::MalwareProtectionPlan": frozenset(
        {"Role", "ProtectedResource", "Actions", "Tags"}
    ),
    # Recorded for the emulator's CreateSession (localaws.roles_anywhere). Not applied:
    # NotificationSettings (nothing is sent), a Profile's ManagedPolicyArns and SessionPolicy
    # (sessions keep the role's full permissions) and AttributeMappings (default mapping only).
    "AWS::RolesAnywhere::TrustAnchor": frozenset({"Name", "Enabled", "Source", "Tags"}),
    "AWS::RolesAnywhere::Profile": frozenset(
        {"Name", "Enabled", "RoleArns", "DurationSeconds", "RequireInstanceProperties",
         "AcceptRoleSessionName", "Tags"}
    ),
    # The CDK bootstrap stack's other types.
    "AWS::SSM::Parameter": frozenset({"Name", "Type", "Value", "Description", "Tags"}),
    "AWS::ECR::Repository": frozenset({"RepositoryName", "ImageScanningConfiguration",
                                       "ImageTagMutability", "LifecyclePolicy",
                                       "RepositoryPolicyText", "EncryptionConfiguration"}),
}


@dataclass(frozen=True)
class Gap:
    """Something in a template the emulator does not create or apply."""

    logical_id: str
    resource_type: str
    properties: tuple[str, ...]  # empty: the whole resource is skipped

    def __str__(self) -> str:
        if not self.properties:
            return f"{self.logical_id} ({self.resource_type}): not created"
        return f"{self.logical_id} ({self.resource_type}): {', '.join(self.properties)} not applied"


def coverage(template: Mapping[str, Any]) -> list[Gap]:
    """Every resource the emulator skips and every property it does not apply."""
    gaps = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        resource_type = resource["Type"]
        applied = APPLIED.get(resource_type)
        if applied is None:
            gaps.append(Gap(logical_id, resource_type, ()))
            continue
        missing = sorted(set(resource.get("Properties") or {}) - applied)
        if missing:
            gaps.append(Gap(logical_id, resource_type, tuple(missing)))
    return gaps

