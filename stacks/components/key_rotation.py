"""Yearly rotation of an iam-user partner's access key, through Secrets Manager's own schedule."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import ArnFormat, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from phi_core import naming
from phi_core.rotation_policy import rotation_role_statements
from stacks.components import service_key_access
from stacks.components.notices_topic import Publisher, notices_topic
from stacks.components.stack_facts import days, facts_of
from stacks.config import Rotation

# The asset root is lambdas/: Lambda imports key_rotation.handler exactly as the tests do.
LAMBDAS_DIR = Path(__file__).resolve().parents[2] / "lambdas"
# The shared rules (phi_core), as a layer: core/python/ is Lambda's layer layout, so the
# function imports phi_core as the operator tooling does, from the same files.
CORE_DIR = Path(__file__).resolve().parents[2] / "core"
BUILD_LEFTOVERS = ["**/__pycache__", "**/*.pyc", "**/*.egg-info", "build", "pyproject.toml"]
HANDLER = "key_rotation.handler.main"
RUNTIME = lambda_.Runtime.PYTHON_3_14
# Rotation runs write the evidence of who held which key when: kept six years like other
# HIPAA documentation.
LOG_RETENTION = logs.RetentionDays.SIX_YEARS
SWEEP_SCHEDULE = events.Schedule.cron(minute="17", hour="6")  # daily, 06:17 UTC


class KeyRotation(Construct):
    """Rotates the partner's access key every ``rotation.interval_days`` days.

    Creates: the rotation function (its own role with one managed policy scoped to this
    customer's user, secret, key, topic, queue and log group; a KMS-encrypted dead-letter
    queue; reserved concurrency of one, so two rotations never race; the latest Python runtime;
    a log group kept six years); Secrets Manager's native rotation schedule on the secret; a
    daily EventBridge schedule that invokes the same function with ``{"action": "sweep"}`` to
    deactivate and later delete the previous key; a KMS-encrypted notices topic with the
    registry's contacts subscribed by e-mail; and an alarm on the function's errors that
    notifies the same topic.

    Why a sweep in the same function: the grace-period steps fall days after a rotation, when
    Secrets Manager no longer calls us. A daily, idempotent sweep that derives the timeline
    from IAM's key creation dates needs no extra state, catches up after any failed day, and
    keeps one role, one dead-letter queue and one alarm.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        slug: str,
        rotation: Rotation,
        contacts: tuple[str, ...],
        secret: secretsmanager.Secret,
        user_name: str,
        key: kms.Key,
    ) -> None:
        super().__init__(scope, construct_id)
        self._key = key
        self._alarm_name = naming.rotation_alarm_name(slug)
        self._alarm_arn = facts_of(self).format_arn(
            service="cloudwatch", resource="alarm", resource_name=self._alarm_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME)
        self.topic = self._notices_topic(slug, contacts)
        self.dead_letter_queue = self._dead_letter_queue()
        self.log_group_name = f"/aws/lambda/{naming.rotation_function_name(slug)}"
        self.log_group = self._log_group()
        self._allow_services_to_use_key()
        role = self._role(slug, secret, user_name)
        self.function = self._function(slug, rotation, secret, user_name, role)
        secretsmanager.RotationSchedule(
            self,
            "RotationSchedule",
            # Referenced without its key: the schedule would otherwise add the function's role
            # to the key policy, which FunctionPolicy already covers, and close a dependency
            # cycle (key -> role -> secret -> user -> partner policy -> key).
            secret=secretsmanager.Secret.from_secret_attributes(
                self, "Secret", secret_complete_arn=secret.secret_arn
            ),
            rotation_lambda=self.function,
            automatically_after=days(rotation.interval_days),
            # The first rotation is due a full interval after onboarding, not at deploy time.
            rotate_immediately_on_update=False,
        )
        self._limit_rotation_invocations_to_our_secret(secret)
        self._daily_sweep()
        self.alarm = self._error_alarm()

    def _notices_topic(self, slug: str, contacts: tuple[str, ...]) -> sns.Topic:
        # The errors alarm publishes to it as CloudWatch.
        return notices_topic(
            self, topic_name=naming.notices_topic_name(slug),
            display_name=f"PHI exchange notices for {slug}", key=self._key, contacts=contacts,
            publisher=Publisher(sid="AllowErrorsAlarmToPublish",
                                service="cloudwatch.amazonaws.com", source_arn=self._alarm_arn))

    def _dead_letter_queue(self) -> sqs.Queue:
        return sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self._key,
            enforce_ssl=True,
            retention_period=days(14),
        )

    def _log_group(self) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=self.log_group_name,
            retention=LOG_RETENTION,
            encryption_key=self._key,
        )

    def _allow_services_to_use_key(self) -> None:
        service_key_access.allow_log_group(
            self._key, sid="AllowLogsToEncryptRotationLogs", log_group_name=self.log_group_name)
        # CloudWatch publishes the alarm to the encrypted topic as itself (SNS developer guide,
        # "Compatibility with AWS services"; CloudWatch user guide, "Setting up SNS").
        service_key_access.allow_service_for_sources(
            self._key, sid="AllowCloudWatchAlarmsToNotify", service="cloudwatch.amazonaws.com",
            actions=["kms:GenerateDataKey*", "kms:Decrypt"], source_arns=[self._alarm_arn])

    def _role(self, slug: str, secret: secretsmanager.Secret, user_name: str) -> iam.Role:
        """One managed policy from the core's statements: grants would add an inline default
        policy to the role and could not say "the key only through these services"."""
        stack = facts_of(self)
        user_arn = stack.format_arn(service="iam", region="", resource="user",
                                    resource_name=user_name)
        policy = iam.ManagedPolicy(
            self,
            "FunctionPolicy",
            description=f"Rotation of partner {slug}'s access key: its user and secret only",
            statements=[iam.PolicyStatement.from_json(statement) for statement in
                        rotation_role_statements(
                            user_arn=user_arn, secret_arn=secret.secret_arn,
                            key_arn=self._key.key_arn, topic_arn=self.topic.topic_arn,
                            dead_letter_queue_arn=self.dead_letter_queue.queue_arn,
                            log_group_arn=self.log_group.log_group_arn, region=stack.region,
                            url_suffix=stack.url_suffix)],
        )
        return iam.Role(
            self,
            "FunctionRole",
            # Named: the customer key and the partner secret admit exactly this role.
            role_name=naming.rotation_role_name(slug),
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Rotation function of partner {slug}",
            managed_policies=[policy],
        )

    def _function(
        self,
        slug: str,
        rotation: Rotation,
        secret: secretsmanager.Secret,
        user_name: str,
        role: iam.Role,
    ) -> lambda_.Function:
        return lambda_.Function(
            self,
            "Function",
            function_name=naming.rotation_function_name(slug),
            description=f"Rotates partner {slug}'s access key; daily sweep of old keys",
            runtime=RUNTIME,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(LAMBDAS_DIR), exclude=BUILD_LEFTOVERS),
            layers=[lambda_.LayerVersion(
                self,
                "CoreLayer",
                code=lambda_.Code.from_asset(str(CORE_DIR), exclude=BUILD_LEFTOVERS),
                compatible_runtimes=[RUNTIME],
                description="phi_core: the rules the function shares with the operator tools",
            )],
            # Immutable: CDK must not add an inline policy; everything is in FunctionPolicy.
            role=role.without_policy_updates(),
            timeout=Duration.minutes(5),
            memory_size=256,
            reserved_concurrent_executions=1,
            dead_letter_queue=self.dead_letter_queue,
            log_group=self.log_group,
            environment={
                "CUSTOMER_SLUG": slug,
                "SECRET_ARN": secret.secret_arn,
                "USER_NAME": user_name,
                "GRACE_DAYS": str(rotation.grace_days),
                "DELETE_AFTER_DAYS": str(rotation.delete_after_days),
                "NOTICES_TOPIC_ARN": self.topic.topic_arn,
            },
            environment_encryption=self._key,
        )

    def _limit_rotation_invocations_to_our_secret(self, secret: secretsmanager.Secret) -> None:
        """RotationSchedule lets secretsmanager.amazonaws.com invoke the function with no
        source condition; limit it to rotations of this one secret in our account (confused
        deputy; Secrets Manager documents both aws:SourceAccount and aws:SourceArn)."""
        for child in self.function.node.children:
            if (isinstance(child, lambda_.CfnPermission)
                    and child.principal == "secretsmanager.amazonaws.com"):
                child.source_account = facts_of(self).account
                child.source_arn = secret.secret_arn

    def _daily_sweep(self) -> None:
        rule = events.Rule(
            self,
            "DailySweep",
            description="Deactivates and later deletes the previous partner key",
            schedule=SWEEP_SCHEDULE,
        )
        # The target is set on the CfnRule and the permission added here by hand: the L2
        # target names its permission after the stack's path, which would make a customer's
        # template differ between `-c customer=acme` and `-c customer=all`.
        cfn_rule = rule.node.default_child
        assert isinstance(cfn_rule, events.CfnRule)
        cfn_rule.targets = [events.CfnRule.TargetProperty(
            id="RotationFunction",
            arn=self.function.function_arn,
            input=json.dumps({"action": "sweep"}, separators=(",", ":")),
            retry_policy=events.CfnRule.RetryPolicyProperty(maximum_retry_attempts=2),
        )]
        self.function.add_permission(
            "AllowDailySweep",
            principal=iam.ServicePrincipal("events.amazonaws.com"),
            source_arn=rule.rule_arn,
        )

    def _error_alarm(self) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            "ErrorsAlarm",
            alarm_name=self._alarm_name,
            alarm_description="A key rotation step or sweep failed; the partner's current key "
            "still works. See the function's log group.",
            metric=self.function.metric_errors(period=Duration.minutes(5)),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        return alarm
