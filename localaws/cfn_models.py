"""CloudFormation resource models that moto 5.2.5 lacks, breaks on, or only half applies.

moto's CloudFormation creates a resource through the model class registered for its type (a
direct subclass of ``moto.core.common_models.CloudFormationModel``; the last one defined for a
type wins). A type with no model is skipped with a warning, and a ``Ref`` to it then resolves to
nothing, which breaks whatever uses it. :func:`register` defines the models below and makes
sure they are the ones moto uses.

Gaps found in our templates (the customer stack and the CDK bootstrap stack), and their fills:

=================================  ==========================================================
``AWS::SecretsManager::Secret``    no model. Filled: Name, Description, KmsKeyId, SecretString
                                   (any intrinsics, e.g. our Fn::Join with the access key's
                                   ``SecretAccessKey``), GenerateSecretString, Tags.
``AWS::SecretsManager::``          no model. Filled: the rotation function, rules and next
``RotationSchedule``               date are recorded on the secret. The function is *not*
                                   invoked (moto's Lambda needs Docker), also not when
                                   ``RotateImmediatelyOnUpdate`` is true.
``AWS::SecretsManager::``          no model. Filled: the policy is put on the secret (and
``ResourcePolicy``                 enforced with permission checks on, see
                                   localaws.permissions); ``BlockPublicPolicy`` refuses an
                                   Allow for everyone.
``AWS::S3::BucketPolicy``          no model. Filled: the policy is put on the bucket (and
                                   evaluated with request context, see localaws.permissions).
``AWS::S3::Bucket``                moto applies encryption (without BucketKeyEnabled) and tags
                                   only. Filled: BucketKeyEnabled, VersioningConfiguration,
                                   PublicAccessBlockConfiguration, OwnershipControls,
                                   LifecycleConfiguration, LoggingConfiguration,
                                   NotificationConfiguration (EventBridge), AccessControl.
                                   Logging: moto refuses a target bucket whose policy does not
                                   yet grant ``logging.s3.amazonaws.com``, and in CloudFormation
                                   order that policy comes after the bucket, so the setting is
                                   held until the target's BucketPolicy arrives and then applied
                                   through moto's own check (so the check still proves our log
                                   bucket policy grants log delivery). If no policy or ACL of
                                   the target ever grants it, the stack fails on the bucket.
``AWS::KMS::Key``                  moto stores the key policy as a dict, not JSON text
                                   (DescribeKey's policy check then fails with HTTP 500), and
                                   passes CloudFormation ``Key``/``Value`` tags to a tagger
                                   expecting ``TagKey``/``TagValue`` (KeyError: HTTP 500 on
                                   CreateStack). Filled: policy as JSON, tags converted,
                                   EnableKeyRotation, Enabled, KeyUsage, KeySpec.
``AWS::IAM::Group``                no model. Filled: GroupName, Path, ManagedPolicyArns,
                                   Policies.
``AWS::IAM::User``                 moto applies UserName and Path only. Filled: Groups (the
                                   partner's only source of permissions), ManagedPolicyArns,
                                   Policies, Tags.
``AWS::IAM::Role``                 moto ignores ManagedPolicyArns. Filled. moto keeps the
                                   inline Policies as dicts, not JSON text: with permission
                                   checks on, every call of a session of the role answered
                                   HTTP 500 (KeyError in moto's IAMPolicy). Filled: stored as
                                   JSON text, as PutRolePolicy stores them.
``AWS::Logs::LogGroup``            moto reads ``kmsKeyId``, CloudFormation says ``KmsKeyId``.
                                   Filled. (moto's model is only registered once moto.logs has
                                   been imported, which register() also ensures.) GetAtt Arn
                                   is the group's ARN without the ``:*`` CloudFormation
                                   appends, so a policy on it matched no log stream. Filled:
                                   ``<arn>:*``, as CloudFormation returns it.
``AWS::Lambda::Function``          moto ignores KmsKeyArn and Tags. Filled. DeadLetterConfig
                                   and LoggingConfig have no place in moto's Lambda model: not
                                   emulated (listed by :func:`coverage`).
``AWS::SNS::Topic``                moto sets Tags as a plain attribute. Filled: tags applied.
``AWS::SNS::TopicPolicy``,         no model. Filled: the policy is set on each topic / queue.
``AWS::SQS::QueuePolicy``
``AWS::SNS::Subscription``         no model. Filled: the subscription is created (e-mail
                                   subscriptions stay pending; nothing is sent).
``AWS::CloudWatch::Alarm``         no model. Filled: the alarm is created with its actions.
``AWS::CloudTrail::Trail``         no model. Filled: the trail is created in moto's CloudTrail
                                   (name, bucket, prefix, KMS key as its ARN, log-file
                                   validation, multi-region, global events, CloudWatch Logs
                                   group and role, event selectors or advanced event
                                   selectors, insight selectors, logging started when
                                   IsLogging, tags), but only after what AWS's CreateTrail
                                   checks passes: the bucket policy, key policy and logs role
                                   must let CloudTrail deliver (localaws.service_access).
                                   Nothing is ever delivered.
``AWS::S3::Bucket`` Object Lock    moto ignores ObjectLockEnabled and ObjectLockConfiguration.
                                   Filled: lock enabled (with versioning, as AWS turns it on),
                                   default retention mode and days/years. moto then applies
                                   the default retention to new objects, refuses to delete a
                                   locked version, and refuses uploads without Content-MD5 or
                                   a checksum, as S3 does.
``AWS::SQS::Queue``                moto applies RedrivePolicy (checked: the dead-letter queue
                                   must exist, its ARN and maxReceiveCount are kept, and moto
                                   moves a message after maxReceiveCount receives).
``AWS::GuardDuty::``               no model. Filled: the plan is recorded (Role,
``MalwareProtectionPlan``          ProtectedResource's bucket and ObjectPrefixes, Actions'
                                   tagging status, Tags) and the emulator's scanner scans new
                                   versions under it (localaws.malware_scan), but only if, as
                                   CreateMalwareProtectionPlan checks, the role exists and
                                   trusts ``malware-protection-plan.guardduty.amazonaws.com``
                                   and the bucket exists. Ref is the plan id; GetAtt Arn,
                                   MalwareProtectionPlanId, CreatedAt, Status (``ACTIVE``),
                                   StatusReasons (none).
``AWS::RolesAnywhere::``           no model (moto has no Roles Anywhere at all). Filled: Name,
``TrustAnchor``                    Enabled (default true), Source (``CERTIFICATE_BUNDLE``
                                   only; other source types fail the resource), Tags;
                                   NotificationSettings stored (nothing is sent). As AWS, a
                                   bundle that is not PEM certificates, or holds a certificate
                                   that is not a CA (``CA:TRUE``), fails the resource. Ref is
                                   the id (a UUID); GetAtt TrustAnchorArn, TrustAnchorId.
                                   CreateSession uses it (localaws.roles_anywhere).
``AWS::RolesAnywhere::Profile``    no model. Filled: Name, Enabled, RoleArns, DurationSeconds
                                   (default 3600, 900..43200 or the resource fails),
                                   RequireInstanceProperties, AcceptRoleSessionName, Tags;
                                   ManagedPolicyArns and SessionPolicy stored, not enforced on
                                   the sessions (listed by :func:`coverage`). Ref is the id;
                                   GetAtt ProfileArn, ProfileId.
=================================  ==========================================================

Stack-level gaps (failures, outputs, change sets, ``AWS::NoValue``) are filled by
:mod:`localaws.cfn_stacks`.

Stack updates are not a goal: the local run deploys once into a fresh emulator. Extended models
delegate updates and deletes to moto's own; new models support create and delete.

:func:`localaws.coverage.coverage` reports, for a template, every resource type with no model
and every property the emulator does not apply, so a new resource or property in our templates
shows up in the local run's report and in ``tests/localaws`` instead of silently doing nothing.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

# Imported for their side effect too: each moto module defines its CloudFormation models when
# first imported, and a model defined after ours would replace ours for the same type.
import moto.cloudformation.parsing as cfn_parsing
from moto.awslambda.models import LambdaFunction, lambda_backends
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.cloudformation.models import Stack
from moto.cloudtrail.models import cloudtrail_backends
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.common_models import CloudFormationModel
from moto.iam.models import Role, User, iam_backends
from moto.kms.models import Key, kms_backends
from moto.logs.models import LogGroup, logs_backends
from moto.s3.exceptions import InvalidTargetBucketForLogging
from moto.s3.models import FakeBucket, get_canned_acl, s3_backends
from moto.secretsmanager.models import FakeSecret, secretsmanager_backends
from moto.secretsmanager.utils import random_password
from moto.sns.models import Topic, sns_backends
from moto.sqs.models import sqs_backends
from moto.utilities.utils import get_partition

from localaws import cfn_stacks, malware_scan, roles_anywhere, service_access
from localaws.cfn_stacks import ResourceCreationFailed

log = logging.getLogger("localaws")


def _properties(cloudformation_json: Mapping[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = dict(cloudformation_json.get("Properties") or {})
    return properties


def _tags(properties: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"Key": t["Key"], "Value": t["Value"]} for t in properties.get("Tags") or []]


def _json(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document)


# --- shared boilerplate ----------------------------------------------------------------------
# moto finds models through CloudFormationModel.__subclasses__(), i.e. *direct* subclasses only,
# so every model below names CloudFormationModel as a base; the mixins (plain classes) carry the
# boilerplate.


class _New:
    """A model for a type moto lacks: its type, name property and GetAtt attributes."""

    TYPE: ClassVar[str]
    NAME_PROPERTY: ClassVar[str] = ""  # the property that names the resource, if any
    ATTRIBUTES: ClassVar[Mapping[str, str]] = {}  # GetAtt name -> attribute of the instance
    physical_id_attribute: ClassVar[str]  # what Ref returns

    @classmethod
    def cloudformation_type(cls) -> str:
        return cls.TYPE

    @classmethod
    def cloudformation_name_type(cls) -> str:
        return cls.NAME_PROPERTY

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.ATTRIBUTES

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name in self.ATTRIBUTES:
            return getattr(self, self.ATTRIBUTES[attribute_name])
        raise UnformattedGetAttTemplateException()

    @property
    def physical_resource_id(self) -> str:
        return str(getattr(self, self.physical_id_attribute))


class _NamedWithArn(_New):
    """A new type whose Ref is its name and whose GetAtt Arn is its ARN."""

    ATTRIBUTES: ClassVar[Mapping[str, str]] = {"Arn": "arn"}
    physical_id_attribute = "name"

    def __init__(self, name: str, arn: str) -> None:
        self.name = name
        self.arn = arn


class _Extends:
    """A model that lets moto's own model create the resource, then applies what it leaves out
    (:meth:`complete`). Returns moto's object, so Ref, GetAtt, updates and deletion behave as
    moto's."""

    MOTO: ClassVar[Any]  # moto's model class for the type

    @classmethod
    def cloudformation_type(cls) -> str:
        return str(cls.MOTO.cloudformation_type())

    @classmethod
    def cloudformation_name_type(cls) -> str:
        return str(cls.MOTO.cloudformation_name_type())

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return bool(cls.MOTO.has_cfn_attr(attr))

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> Any:
        resource = cls.MOTO.create_from_cloudformation_json(
            resource_name, cloudformation_json, account_id, region_name, **kwargs
        )
        cls.complete(resource, _properties(cloudformation_json), account_id, region_name,
                     logical_id=str(kwargs.get("LogicalId", resource_name)))
        return resource

    @classmethod
    def complete(cls, resource: Any, properties: dict[str, Any], account_id: str,
                 region_name: str, *, logical_id: str) -> None:
        raise NotImplementedError

    @classmethod
    def update_from_cloudformation_json(
        cls, original_resource: Any, new_resource_name: str,
        cloudformation_json: dict[str, Any], account_id: str, region_name: str,
    ) -> Any:
        return cls.MOTO.update_from_cloudformation_json(
            original_resource, new_resource_name, cloudformation_json, account_id, region_name
        )

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str,
    ) -> None:
        cls.MOTO.delete_from_cloudformation_json(
            resource_name, cloudformation_json, account_id, region_name
        )


# --- new models ----------------------------------------------------------------------------


class SecretModel(_New, CloudFormationModel):
    """``AWS::SecretsManager::Secret``: Ref (and GetAtt Id) is the secret's ARN, as in AWS."""

    TYPE = "AWS::SecretsManager::Secret"
    NAME_PROPERTY = "Name"
    ATTRIBUTES: ClassVar[Mapping[str, str]] = {"Id": "arn"}
    physical_id_attribute = "arn"

    def __init__(self, arn: str) -> None:
        self.arn = arn

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> SecretModel:
        properties = _properties(cloudformation_json)
        secret_string = properties.get("SecretString")
        if secret_string is None:
            secret_string = _generated_secret_string(properties.get("GenerateSecretString") or {})
        created = secretsmanager_backends[account_id][region_name].create_secret(
            name=resource_name,
            secret_string=secret_string,
            secret_binary=None,
            description=properties.get("Description"),
            tags=_tags(properties) or None,
            kms_key_id=properties.get("KmsKeyId"),
            client_request_token=None,
            replica_regions=[],
            force_overwrite=False,
        )
        return cls(json.loads(created)["ARN"] if isinstance(created, str) else created["ARN"])

    def delete(self, account_id: str, region_name: str) -> None:
        secretsmanager_backends[account_id][region_name].delete_secret(
            secret_id=self.arn, recovery_window_in_days=None,
            force_delete_without_recovery=True,
        )


def _generated_secret_string(spec: Mapping[str, Any]) -> str:
    password = random_password(
        password_length=int(spec.get("PasswordLength", 32)),
        exclude_characters=spec.get("ExcludeCharacters", ""),
        exclude_numbers=bool(spec.get("ExcludeNumbers", False)),
        exclude_punctuation=bool(spec.get("ExcludePunctuation", False)),
        exclude_uppercase=bool(spec.get("ExcludeUppercase", False)),
        exclude_lowercase=bool(spec.get("ExcludeLowercase", False)),
        include_space=bool(spec.get("IncludeSpace", False)),
        require_each_included_type=bool(spec.get("RequireEachIncludedType", True)),
    )
    template = spec.get("SecretStringTemplate")
    if template and spec.get("GenerateStringKey"):
        document = json.loads(template)
        document[spec["GenerateStringKey"]] = password
        return json.dumps(document)
    return str(password)


_RATE_DAYS = re.compile(r"rate\((\d+) days?\)")


class RotationScheduleModel(_New, CloudFormationModel):
    """``AWS::SecretsManager::RotationSchedule``: recorded on the secret, never invoked."""

    TYPE = "AWS::SecretsManager::RotationSchedule"
    physical_id_attribute = "secret_arn"

    def __init__(self, secret_arn: str) -> None:
        self.secret_arn = secret_arn

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> RotationScheduleModel:
        properties = _properties(cloudformation_json)
        secret = secretsmanager_backends[account_id][region_name].secrets[properties["SecretId"]]
        if not isinstance(secret, FakeSecret):
            raise ValueError(f"{properties['SecretId']} is a replica; rotate its primary")
        rules = properties.get("RotationRules") or {}
        days = rules.get("AutomaticallyAfterDays")
        match = _RATE_DAYS.fullmatch(str(rules.get("ScheduleExpression", "")))
        if days is None and match:
            days = int(match.group(1))
        secret.rotation_requested = True
        secret.rotation_lambda_arn = properties.get("RotationLambdaARN", "")
        secret.auto_rotate_after_days = int(days or 0)
        secret.rotation_enabled = bool(days)
        if days:
            secret.next_rotation_date = int(time.time()) + int(days) * 86400
        if properties.get("RotateImmediatelyOnUpdate", True):
            log.warning(
                "%s: RotateImmediatelyOnUpdate is not emulated: the rotation function is not "
                "invoked (moto's Lambda needs Docker); call the handler directly", resource_name,
            )
        return cls(secret.arn)


class SecretResourcePolicyModel(_New, CloudFormationModel):
    """``AWS::SecretsManager::ResourcePolicy``: put on the secret, where the emulator's
    permission checks read it (localaws.permissions). ``BlockPublicPolicy`` (default true in
    CloudFormation) refuses a policy that allows everyone, as Secrets Manager does."""

    TYPE = "AWS::SecretsManager::ResourcePolicy"
    physical_id_attribute = "secret_arn"
    ATTRIBUTES: ClassVar[Mapping[str, str]] = {"Id": "secret_arn"}

    def __init__(self, secret_arn: str) -> None:
        self.secret_arn = secret_arn

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> SecretResourcePolicyModel:
        properties = _properties(cloudformation_json)
        document = properties["ResourcePolicy"]
        document = json.loads(document) if isinstance(document, str) else document
        if _flag(properties.get("BlockPublicPolicy"), default=True) and _allows_everyone(
                document):
            raise ValueError("BlockPublicPolicy: the resource policy allows broad access to "
                             "the secret (an Allow for Principal *)")
        arn, _ = secretsmanager_backends[account_id][region_name].put_resource_policy(
            properties["SecretId"], json.dumps(document))
        return cls(arn)

    def delete(self, account_id: str, region_name: str) -> None:
        secretsmanager_backends[account_id][region_name].delete_resource_policy(self.secret_arn)


def _allows_everyone(document: Mapping[str, Any]) -> bool:
    statements = document.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        principal = statement.get("Principal")
        if statement.get("Effect") == "Allow" and (
                principal == "*" or (isinstance(principal, Mapping)
                                     and "*" in _listed(principal.get("AWS")))):
            return True
    return False


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class BucketPolicyModel(_New, CloudFormationModel):
    """``AWS::S3::BucketPolicy``: put on the bucket; releases held logging settings."""

    TYPE = "AWS::S3::BucketPolicy"
    physical_id_attribute = "bucket_name"

    def __init__(self, bucket_name: str) -> None:
        self.bucket_name = bucket_name

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> BucketPolicyModel:
        properties = _properties(cloudformation_json)
        bucket_name = properties["Bucket"]
        backend = s3_backends[account_id][get_partition(region_name)]
        backend.put_bucket_policy(bucket_name, _json(properties["PolicyDocument"]).encode())
        _release_held_logging(backend, bucket_name)
        return cls(bucket_name)

    def delete(self, account_id: str, region_name: str) -> None:
        s3_backends[account_id][get_partition(region_name)].delete_bucket_policy(
            self.bucket_name
        )


class GroupModel(_NamedWithArn, CloudFormationModel):
    """``AWS::IAM::Group``: Ref is the group name, GetAtt Arn its ARN."""

    TYPE = "AWS::IAM::Group"
    NAME_PROPERTY = "GroupName"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> GroupModel:
        properties = _properties(cloudformation_json)
        backend = iam_backends[account_id][get_partition(region_name)]
        group = backend.create_group(resource_name, properties.get("Path", "/"))
        for arn in properties.get("ManagedPolicyArns") or []:
            backend.attach_group_policy(arn, group.name)
        for policy in properties.get("Policies") or []:
            backend.put_group_policy(
                group.name, policy["PolicyName"], _json(policy["PolicyDocument"])
            )
        return cls(group.name, group.arn)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = iam_backends[account_id][get_partition(region_name)]
        for arn in list(backend.get_group(self.name).managed_policies):
            backend.detach_group_policy(arn, self.name)
        backend.delete_group(self.name)


class TopicPolicyModel(_New, CloudFormationModel):
    """``AWS::SNS::TopicPolicy``: set as each topic's policy."""

    TYPE = "AWS::SNS::TopicPolicy"
    physical_id_attribute = "topics"

    def __init__(self, topics: list[str]) -> None:
        self.topics = ",".join(topics)

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> TopicPolicyModel:
        properties = _properties(cloudformation_json)
        backend = sns_backends[account_id][region_name]
        topics = list(properties.get("Topics") or [])
        for arn in topics:
            # moto stores the policy in the "policy" property (set_topic_attribute does setattr).
            backend.set_topic_attribute(arn, "policy", _json(properties["PolicyDocument"]))
        return cls(topics)


class QueuePolicyModel(_New, CloudFormationModel):
    """``AWS::SQS::QueuePolicy``: set as each queue's ``Policy`` attribute."""

    TYPE = "AWS::SQS::QueuePolicy"
    physical_id_attribute = "queues"

    def __init__(self, queues: list[str]) -> None:
        self.queues = ",".join(queues)

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> QueuePolicyModel:
        properties = _properties(cloudformation_json)
        backend = sqs_backends[account_id][region_name]
        queues = list(properties.get("Queues") or [])
        for url in queues:
            # Ref to a queue is its URL; the backend is keyed by name, the URL's last part.
            backend.set_queue_attributes(
                url.rstrip("/").rsplit("/", 1)[-1],
                {"Policy": _json(properties["PolicyDocument"])},
            )
        return cls(queues)


class SubscriptionModel(_New, CloudFormationModel):
    """``AWS::SNS::Subscription``: Ref is the subscription ARN."""

    TYPE = "AWS::SNS::Subscription"
    physical_id_attribute = "arn"

    def __init__(self, arn: str) -> None:
        self.arn = arn

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> SubscriptionModel:
        properties = _properties(cloudformation_json)
        subscription = sns_backends[account_id][region_name].subscribe(
            properties["TopicArn"], properties["Endpoint"], properties["Protocol"]
        )
        return cls(subscription.arn)


class AlarmModel(_NamedWithArn, CloudFormationModel):
    """``AWS::CloudWatch::Alarm`` (single-metric alarms, as our templates define)."""

    TYPE = "AWS::CloudWatch::Alarm"
    NAME_PROPERTY = "AlarmName"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> AlarmModel:
        p = _properties(cloudformation_json)
        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=resource_name,
            namespace=p["Namespace"],
            metric_name=p["MetricName"],
            comparison_operator=p["ComparisonOperator"],
            evaluation_periods=int(p["EvaluationPeriods"]),
            period=int(p.get("Period", 60)),
            threshold=float(p.get("Threshold", 0)),
            statistic=p.get("Statistic", ""),
            description=p.get("AlarmDescription", ""),
            dimensions=[{"Name": d["Name"], "Value": d["Value"]}
                        for d in p.get("Dimensions") or []],
            alarm_actions=list(p.get("AlarmActions") or []),
            datapoints_to_alarm=p.get("DatapointsToAlarm"),
            extended_statistic=p.get("ExtendedStatistic"),
            ok_actions=list(p.get("OKActions") or []),
            insufficient_data_actions=list(p.get("InsufficientDataActions") or []),
            unit=p.get("Unit"),
            actions_enabled=bool(p.get("ActionsEnabled", True)),
            treat_missing_data=p.get("TreatMissingData"),
            tags=_tags(p),
        )
        return cls(alarm.name, alarm.alarm_arn)

    def delete(self, account_id: str, region_name: str) -> None:
        cloudwatch_backends[account_id][region_name].delete_alarms([self.name])


def _flag(value: Any, default: bool = False) -> bool:
    """A CloudFormation boolean (true/false, or the strings "true"/"false")."""
    if value is None:
        return default
    return value if isinstance(value, bool) else str(value).lower() == "true"


class TrailModel(_NamedWithArn, CloudFormationModel):
    """``AWS::CloudTrail::Trail``: Ref is the trail name, GetAtt Arn its ARN. Created only if
    CloudTrail could deliver (:func:`localaws.service_access.check_trail_delivery`)."""

    TYPE = "AWS::CloudTrail::Trail"
    NAME_PROPERTY = "TrailName"
    ATTRIBUTES: ClassVar[Mapping[str, str]] = {"Arn": "arn", "SnsTopicArn": "sns_topic_arn"}

    def __init__(self, name: str, arn: str, sns_topic_arn: str | None) -> None:
        super().__init__(name, arn)
        self.sns_topic_arn = sns_topic_arn

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> TrailModel:
        p = _properties(cloudformation_json)
        partition = get_partition(region_name)
        arn = f"arn:{partition}:cloudtrail:{region_name}:{account_id}:trail/{resource_name}"
        key_arn = None
        if p.get("KMSKeyId"):
            # CloudTrail stores the key as a full ARN whatever form it was given in.
            key_arn = service_access.resolve_key_arn(str(p["KMSKeyId"]), account_id,
                                                     region_name)
            if key_arn is None:
                raise service_access.InsufficientEncryptionPolicyException(
                    f"KMS key {p['KMSKeyId']} does not exist.")
        prefix = str(p.get("S3KeyPrefix") or "")
        service_access.check_trail_delivery(service_access.TrailDelivery(
            trail_arn=arn, account=account_id, region=region_name, partition=partition,
            bucket=str(p["S3BucketName"]), prefix=f"{prefix}/" if prefix else "",
            kms_key_arn=key_arn, log_validation=_flag(p.get("EnableLogFileValidation")),
            log_group_arn=p.get("CloudWatchLogsLogGroupArn"),
            logs_role_arn=p.get("CloudWatchLogsRoleArn"),
        ))
        backend = cloudtrail_backends[account_id][region_name]
        trail = backend.create_trail(
            name=resource_name,
            bucket_name=str(p["S3BucketName"]),
            s3_key_prefix=prefix or None,  # type: ignore[arg-type]
            sns_topic_name=p.get("SnsTopicName"),  # type: ignore[arg-type]
            is_global=_flag(p.get("IncludeGlobalServiceEvents"), default=True),
            is_multi_region=_flag(p.get("IsMultiRegionTrail")),
            log_validation=_flag(p.get("EnableLogFileValidation")),
            is_org_trail=_flag(p.get("IsOrganizationTrail")),
            cw_log_group_arn=p.get("CloudWatchLogsLogGroupArn"),  # type: ignore[arg-type]
            cw_role_arn=p.get("CloudWatchLogsRoleArn"),  # type: ignore[arg-type]
            kms_key_id=key_arn,  # type: ignore[arg-type]
            tags_list=_tags(p),
        )
        if p.get("EventSelectors") or p.get("AdvancedEventSelectors"):
            trail.put_event_selectors(list(p.get("EventSelectors") or []),
                                      list(p.get("AdvancedEventSelectors") or []))
        if p.get("InsightSelectors"):
            trail.put_insight_selectors(list(p["InsightSelectors"]))
        if _flag(p.get("IsLogging")):
            trail.start_logging()
        return cls(trail.trail_name, trail.arn, trail.topic_arn)

    def delete(self, account_id: str, region_name: str) -> None:
        cloudtrail_backends[account_id][region_name].delete_trail(self.name)


class MalwareProtectionPlanModel(_New, CloudFormationModel):
    """``AWS::GuardDuty::MalwareProtectionPlan``: recorded for the emulator's scanner
    (:func:`localaws.malware_scan.create_plan`, which refuses what GuardDuty refuses)."""

    TYPE = "AWS::GuardDuty::MalwareProtectionPlan"
    physical_id_attribute = "plan_id"
    ATTRIBUTES: ClassVar[Mapping[str, str]] = {
        "Arn": "arn", "MalwareProtectionPlanId": "plan_id", "CreatedAt": "created_at",
        "Status": "status", "StatusReasons": "status_reasons"}

    def __init__(self, plan: malware_scan.Plan) -> None:
        self.plan_id, self.arn = plan.plan_id, plan.arn
        self.created_at, self.status = plan.created_at, plan.status
        self.status_reasons: list[dict[str, str]] = []

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> MalwareProtectionPlanModel:
        p = _properties(cloudformation_json)
        bucket = p["ProtectedResource"]["S3Bucket"]
        tagging = ((p.get("Actions") or {}).get("Tagging") or {}).get("Status", "DISABLED")
        return cls(malware_scan.create_plan(
            account=account_id, region=region_name, role_arn=str(p["Role"]),
            bucket=str(bucket["BucketName"]),
            prefixes=tuple(str(x) for x in bucket.get("ObjectPrefixes") or ()),
            tagging=str(tagging).upper() == "ENABLED",
            tags=tuple((t["Key"], t["Value"]) for t in _tags(p))))

    def delete(self, account_id: str, region_name: str) -> None:
        malware_scan.delete_plan(self.plan_id)


class TrustAnchorModel(_New, CloudFormationModel):
    """``AWS::RolesAnywhere::TrustAnchor``: recorded for CreateSession
    (:func:`localaws.roles_anywhere.create_trust_anchor`, which refuses what AWS refuses)."""

    TYPE = "AWS::RolesAnywhere::TrustAnchor"
    physical_id_attribute = "trust_anchor_id"
    ATTRIBUTES: ClassVar[Mapping[str, str]] = {
        "TrustAnchorArn": "arn", "TrustAnchorId": "trust_anchor_id"}

    def __init__(self, anchor: roles_anywhere.TrustAnchor) -> None:
        self.trust_anchor_id, self.arn = anchor.trust_anchor_id, anchor.arn

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> TrustAnchorModel:
        p = _properties(cloudformation_json)
        return cls(roles_anywhere.create_trust_anchor(
            account=account_id, region=region_name, name=str(p.get("Name") or resource_name),
            source=p.get("Source") or {}, enabled=_flag(p.get("Enabled"), default=True),
            notification_settings=p.get("NotificationSettings") or (),
            tags=tuple((t["Key"], t["Value"]) for t in _tags(p))))

    def delete(self, account_id: str, region_name: str) -> None:
        roles_anywhere.delete_trust_anchor(self.arn)


class RolesAnywhereProfileModel(_New, CloudFormationModel):
    """``AWS::RolesAnywhere::Profile``: recorded for CreateSession
    (:func:`localaws.roles_anywhere.create_profile`)."""

    TYPE = "AWS::RolesAnywhere::Profile"
    physical_id_attribute = "profile_id"
    ATTRIBUTES: ClassVar[Mapping[str, str]] = {"ProfileArn": "arn", "ProfileId": "profile_id"}

    def __init__(self, profile: roles_anywhere.Profile) -> None:
        self.profile_id, self.arn = profile.profile_id, profile.arn

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> RolesAnywhereProfileModel:
        p = _properties(cloudformation_json)
        session_policy = p.get("SessionPolicy")
        return cls(roles_anywhere.create_profile(
            account=account_id, region=region_name, name=str(p.get("Name") or resource_name),
            role_arns=[str(a) for a in p.get("RoleArns") or []],
            enabled=_flag(p.get("Enabled"), default=True),
            duration_seconds=int(p.get("DurationSeconds", roles_anywhere.DEFAULT_DURATION)),
            managed_policy_arns=[str(a) for a in p.get("ManagedPolicyArns") or []],
            session_policy=_json(session_policy) if session_policy else None,
            require_instance_properties=_flag(p.get("RequireInstanceProperties")),
            accept_role_session_name=_flag(p.get("AcceptRoleSessionName")),
            tags=tuple((t["Key"], t["Value"]) for t in _tags(p))))

    def delete(self, account_id: str, region_name: str) -> None:
        roles_anywhere.delete_profile(self.arn)


# --- moto's models, completed or replaced ---------------------------------------------------


class KmsKeyModel(_Extends, CloudFormationModel):
    """``AWS::KMS::Key``, created here: the policy stored as JSON text, tags in KMS's shape."""

    MOTO = Key

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> Key:
        properties = _properties(cloudformation_json)
        key = kms_backends[account_id][region_name].create_key(
            policy=_json(properties["KeyPolicy"]) if "KeyPolicy" in properties else None,
            key_usage=properties.get("KeyUsage", "ENCRYPT_DECRYPT"),
            key_spec=properties.get("KeySpec", "SYMMETRIC_DEFAULT"),
            description=properties.get("Description", ""),
            tags=[{"TagKey": t["Key"], "TagValue": t["Value"]} for t in _tags(properties)],
            multi_region=bool(properties.get("MultiRegion", False)),
        )
        key.key_rotation_status = bool(properties.get("EnableKeyRotation", False))
        if not properties.get("Enabled", True):
            key.enabled = False
            key.key_state = "Disabled"
        return key


@dataclass
class _HeldLogging:
    source_bucket: str
    logical_id: str
    config: dict[str, Any]


# Logging settings waiting for their target bucket's policy, by target bucket name.
_held_logging: dict[str, list[_HeldLogging]] = {}

_CANNED_ACLS = {
    "Private": "private",
    "PublicRead": "public-read",
    "PublicReadWrite": "public-read-write",
    "AuthenticatedRead": "authenticated-read",
    "LogDeliveryWrite": "log-delivery-write",
    "BucketOwnerRead": "bucket-owner-read",
    "BucketOwnerFullControl": "bucket-owner-full-control",
    "AwsExecRead": "aws-exec-read",
}


def _release_held_logging(backend: Any, target_bucket: str) -> None:
    """Apply logging settings that waited for ``target_bucket``'s policy, through moto's own
    permission check. Those it still refuses stay held: at the end of the stack they fail the
    bucket that asked for them (:func:`_apply_logging_still_held`)."""
    still_held = []
    for held in _held_logging.pop(target_bucket, []):
        try:
            backend.put_bucket_logging(held.source_bucket, held.config)
        except InvalidTargetBucketForLogging:
            still_held.append(held)
    if still_held:
        _held_logging[target_bucket] = still_held


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the S3 API's shape (as moto parses it from XML)."""
    api: dict[str, Any] = {"ID": rule.get("Id"), "Status": rule.get("Status", "Enabled")}
    api["Filter"] = {"Prefix": rule.get("Prefix", "")}
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = str(rule["ExpirationInDays"])
    if "ExpirationDate" in rule:
        expiration["Date"] = rule["ExpirationDate"]
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = str(rule["ExpiredObjectDeleteMarker"]).lower()
    if expiration:
        api["Expiration"] = expiration
    if "NoncurrentVersionExpiration" in rule:
        api["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": str(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        api["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": str(
                rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
            )
        }
    return api


def _encryption(bucket_encryption: Mapping[str, Any]) -> dict[str, Any]:
    """BucketEncryption in the shape moto stores (what PutBucketEncryption would store)."""
    rule = bucket_encryption["ServerSideEncryptionConfiguration"][0]
    default = rule["ServerSideEncryptionByDefault"]
    apply = {"SSEAlgorithm": default["SSEAlgorithm"]}
    if default.get("KMSMasterKeyID"):
        apply["KMSMasterKeyID"] = default["KMSMasterKeyID"]
    api_rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": apply}
    if "BucketKeyEnabled" in rule:
        api_rule["BucketKeyEnabled"] = str(bool(rule["BucketKeyEnabled"])).lower()
    return {"Rule": api_rule}


class BucketModel(_Extends, CloudFormationModel):
    """``AWS::S3::Bucket``: moto creates it (name, encryption, tags); the rest is applied here."""

    MOTO = FakeBucket

    @classmethod
    def complete(cls, resource: Any, properties: dict[str, Any], account_id: str,
                 region_name: str, *, logical_id: str) -> None:
        backend = s3_backends[account_id][get_partition(region_name)]
        name = resource.name
        if "BucketEncryption" in properties:
            backend.put_bucket_encryption(name, _encryption(properties["BucketEncryption"]))
        if "VersioningConfiguration" in properties:
            backend.put_bucket_versioning(name, properties["VersioningConfiguration"]["Status"])
        if _flag(properties.get("ObjectLockEnabled")) or "ObjectLockConfiguration" in properties:
            cls._apply_object_lock(backend, name, properties)
        if "PublicAccessBlockConfiguration" in properties:
            block = properties["PublicAccessBlockConfiguration"]
            backend.put_public_access_block(name, {
                k: str(bool(block.get(k, False))).lower()
                for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                          "RestrictPublicBuckets")
            })
        if "OwnershipControls" in properties:
            (rule,) = properties["OwnershipControls"]["Rules"]
            backend.put_bucket_ownership_controls(name, rule["ObjectOwnership"])
        if "AccessControl" in properties:
            backend.put_bucket_acl(name, get_canned_acl(_CANNED_ACLS[properties["AccessControl"]]))
        if "LifecycleConfiguration" in properties:
            backend.put_bucket_lifecycle_configuration(
                name, [_lifecycle_rule(r) for r in properties["LifecycleConfiguration"]["Rules"]]
            )
        notification = properties.get("NotificationConfiguration") or {}
        if (notification.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled"):
            backend.put_bucket_notification_configuration(
                name, {"EventBridgeConfiguration": {}}
            )
        if "LoggingConfiguration" in properties:
            cls._apply_logging(backend, name, logical_id, properties["LoggingConfiguration"])

    @staticmethod
    def _apply_object_lock(backend: Any, name: str, properties: Mapping[str, Any]) -> None:
        if not _flag(properties.get("ObjectLockEnabled")):
            # AWS: Object Lock can only be configured on a bucket created with it enabled.
            raise ValueError("ObjectLockConfiguration requires ObjectLockEnabled: true")
        if properties.get("VersioningConfiguration", {}).get("Status", "Enabled") != "Enabled":
            raise ValueError("Object Lock requires versioning to stay Enabled")
        backend.put_bucket_versioning(name, "Enabled")  # AWS enables it with Object Lock
        configuration = properties.get("ObjectLockConfiguration") or {}
        retention = (configuration.get("Rule") or {}).get("DefaultRetention") or {}
        backend.put_object_lock_configuration(
            name, lock_enabled=True, mode=retention.get("Mode"),
            # moto adds both up when it dates a new version: the absent one must be 0.
            days=int(retention.get("Days", 0)), years=int(retention.get("Years", 0)),
        )

    @staticmethod
    def _apply_logging(
        backend: Any, name: str, logical_id: str, logging_configuration: Mapping[str, Any]
    ) -> None:
        config = {
            "TargetBucket": logging_configuration.get("DestinationBucketName", name),
            "TargetPrefix": logging_configuration.get("LogFilePrefix", ""),
        }
        try:
            backend.put_bucket_logging(name, config)
        except InvalidTargetBucketForLogging:
            # AWS checks log-delivery permission when it delivers, not here; moto checks now,
            # before the target's BucketPolicy exists. Hold it until the policy arrives.
            _held_logging.setdefault(config["TargetBucket"], []).append(
                _HeldLogging(source_bucket=name, logical_id=logical_id, config=config)
            )


class UserModel(_Extends, CloudFormationModel):
    """``AWS::IAM::User``: moto creates it; groups, policies and tags are applied here."""

    MOTO = User

    @classmethod
    def complete(cls, resource: Any, properties: dict[str, Any], account_id: str,
                 region_name: str, *, logical_id: str) -> None:
        backend = iam_backends[account_id][get_partition(region_name)]
        for group in properties.get("Groups") or []:
            backend.add_user_to_group(group, resource.name)
        for arn in properties.get("ManagedPolicyArns") or []:
            backend.attach_user_policy(arn, resource.name)
        for policy in properties.get("Policies") or []:
            backend.put_user_policy(
                resource.name, policy["PolicyName"], _json(policy["PolicyDocument"])
            )
        if _tags(properties):
            backend.tag_user(resource.name, _tags(properties))


class RoleModel(_Extends, CloudFormationModel):
    """``AWS::IAM::Role``: moto creates it; managed policies are attached here and inline
    policies kept as JSON text."""

    MOTO = Role

    @classmethod
    def complete(cls, resource: Any, properties: dict[str, Any], account_id: str,
                 region_name: str, *, logical_id: str) -> None:
        backend = iam_backends[account_id][get_partition(region_name)]
        for arn in properties.get("ManagedPolicyArns") or []:
            backend.attach_role_policy(arn, resource.name)
        for name, document in list(resource.policies.items()):
            if not isinstance(document, str):
                resource.policies[name] = json.dumps(document)


class LogGroupModel(_Extends, CloudFormationModel):
    """``AWS::Logs::LogGroup``, created here with its KMS key (moto reads ``kmsKeyId``)."""

    MOTO = LogGroup

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> LogGroup:
        properties = _properties(cloudformation_json)
        group: LogGroup = logs_backends[account_id][region_name].create_log_group(
            resource_name,
            {t["Key"]: t["Value"] for t in _tags(properties)},
            kmsKeyId=properties.get("KmsKeyId"),
            RetentionInDays=properties.get("RetentionInDays"),
        )
        return group


class FunctionModel(_Extends, CloudFormationModel):
    """``AWS::Lambda::Function``: moto creates it; KmsKeyArn, Layers (moto's CloudFormation
    model drops them; its API keeps them) and Tags are applied here."""

    MOTO = LambdaFunction

    @classmethod
    def complete(cls, resource: Any, properties: dict[str, Any], account_id: str,
                 region_name: str, *, logical_id: str) -> None:
        resource.kms_key_arn = properties.get("KmsKeyArn")
        # A Ref to moto's LayerVersion resolves to the model itself, not its ARN.
        layers = [getattr(layer, "arn", layer) for layer in properties.get("Layers", [])]
        resource.layers = resource._get_layers_data(layers)
        tags = {t["Key"]: t["Value"] for t in _tags(properties)}
        if tags:
            lambda_backends[account_id][region_name].tag_resource(resource.function_arn, tags)


class TopicModel(_Extends, CloudFormationModel):
    """``AWS::SNS::Topic``: moto creates it (name, display name, KMS key); tags applied here."""

    MOTO = Topic

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str, **kwargs: Any,
    ) -> Topic:
        properties = _properties(cloudformation_json)
        tags = {t["Key"]: t["Value"] for t in _tags(properties)}
        # moto copies every property onto the topic as an attribute; Tags is not one.
        properties.pop("Tags", None)
        topic: Topic = Topic.create_from_cloudformation_json(
            resource_name, {**cloudformation_json, "Properties": properties}, account_id,
            region_name, **kwargs,
        )
        if tags:
            sns_backends[account_id][region_name].tag_resource(topic.arn, tags)
        return topic


MODELS: tuple[type[CloudFormationModel], ...] = (
    SecretModel, RotationScheduleModel, SecretResourcePolicyModel, BucketPolicyModel,
    GroupModel, TopicPolicyModel, QueuePolicyModel, SubscriptionModel, AlarmModel, TrailModel,
    MalwareProtectionPlanModel, TrustAnchorModel, RolesAnywhereProfileModel, KmsKeyModel,
    BucketModel, UserModel, RoleModel, LogGroupModel,
    FunctionModel, TopicModel,
)


# --- at the end of a stack, and attributes ------------------------------------------------


def _apply_logging_still_held(stack: Stack) -> None:
    """At the end of a stack, logging settings still held have a target that never granted log
    delivery: apply them through moto's check now, which refuses them, and fail the stack."""
    backend = s3_backends[stack.account_id][get_partition(stack.region_name)]
    own_buckets = {resource.name for resource in stack.resource_map._parsed_resources.values()
                   if isinstance(resource, FakeBucket)}
    for target, held_list in list(_held_logging.items()):
        for held in [h for h in held_list if h.source_bucket in own_buckets]:
            held_list.remove(held)
            try:
                backend.put_bucket_logging(held.source_bucket, held.config)
            except InvalidTargetBucketForLogging as error:
                raise ResourceCreationFailed(
                    held.logical_id, "AWS::S3::Bucket",
                    f"LoggingConfiguration: {target} does not accept access logs ({error})",
                ) from error
        if not held_list:
            del _held_logging[target]


def _log_group_cfn_attribute(self: LogGroup, attribute_name: str) -> str:
    """Replaces ``LogGroup.get_cfn_attribute``: CloudFormation's Arn ends with ``:*``."""
    if attribute_name == "Arn":
        return f"{self.arn}:*"
    raise UnformattedGetAttTemplateException()


# --- registration -------------------------------------------------------------------------


def register() -> None:
    """Make moto's CloudFormation use the models above, and the stack-level fixes of
    :mod:`localaws.cfn_stacks` (idempotent).

    moto builds its type -> model map once (``functools.lru_cache``) from
    ``CloudFormationModel.__subclasses__()``; clear the caches so it is rebuilt with ours, then
    check that ours won for every type.
    """
    for cached in (cfn_parsing.get_model_list, cfn_parsing.get_model_map,
                   cfn_parsing.get_name_type_map):
        cached.cache_clear()
    model_map = cfn_parsing.get_model_map()
    losers = [m.cloudformation_type() for m in MODELS
              if model_map.get(m.cloudformation_type()) is not m]
    if losers:
        raise RuntimeError(f"localaws: moto models replaced ours for {losers}")
    LogGroup.get_cfn_attribute = _log_group_cfn_attribute  # type: ignore[method-assign]
    cfn_stacks.register(after_create=_apply_logging_still_held)
