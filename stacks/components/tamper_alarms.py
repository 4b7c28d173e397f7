"""Every management event that tampers with evidence or access reaches the security contacts."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from phi_core import account_roles, naming
from stacks.components import service_key_access
from stacks.components.stack_facts import facts_of

API_CALL = "AWS API Call via CloudTrail"
# Buckets of ours: customer buckets (phi-...) and the audit stack's (generated from the stack
# name, PhiExchange-audit -> phiexchange-audit-...).
OUR_BUCKETS = [{"prefix": naming.BUCKET_NAME_PREFIX}, {"prefix": "phiexchange-"}]

# name suffix -> (event source, event names, extra detail filter)
TAMPERING: dict[str, tuple[str, list[str], dict]] = {
    "trail": ("aws.cloudtrail", ["StopLogging", "DeleteTrail", "UpdateTrail", "PutEventSelectors",
                                 "PutInsightSelectors"], {}),
    "buckets": ("aws.s3", ["PutBucketPolicy", "DeleteBucketPolicy", "PutBucketEncryption",
                           "DeleteBucketEncryption", "PutBucketVersioning",
                           "PutBucketLifecycle", "DeleteBucketLifecycle",
                           "PutBucketObjectLockConfiguration"],
                {"requestParameters": {"bucketName": OUR_BUCKETS}}),
    # UpdateAlias and DeleteAlias: the receipt key is found by its alias (signing, the kits).
    "keys": ("aws.kms", ["ScheduleKeyDeletion", "DisableKey", "PutKeyPolicy",
                         "DisableKeyRotation", "UpdateAlias", "DeleteAlias"], {}),
    "logs": ("aws.logs", ["DeleteLogGroup", "DisassociateKmsKey"], {}),
    # Whoever manages IAM could re-point one of our roles, or tag itself into one: IAM's
    # events reach EventBridge in us-east-1 (the audit stack deployed there sees them).
    "roles": ("aws.iam", ["UpdateAssumeRolePolicy", "AttachRolePolicy", "DetachRolePolicy",
                          "PutRolePolicy", "DeleteRolePolicy", "DeleteRole"],
              {"requestParameters": {"roleName": [{"prefix": f"{naming.PROJECT}-"}]}}),
    "role-grants": ("aws.iam", ["TagRole", "TagUser"],
                    {"requestParameters": {"tags": {"key": [{"prefix": f"{naming.PROJECT}:"}]}}}),
    # The alarms themselves: a tamper rule disabled, deleted or re-targeted. (The security
    # topic's own changes are matched in TamperAlarms, which knows its ARN.)
    "alarm-rules": ("aws.events", ["DisableRule", "DeleteRule", "PutRule"],
                    {"requestParameters": {"name": [{"prefix": naming.TAMPER_RULE_PREFIX}]}}),
    "alarm-targets": ("aws.events", ["RemoveTargets", "PutTargets"],
                      {"requestParameters": {"rule": [{"prefix": naming.TAMPER_RULE_PREFIX}]}}),
}


class TamperAlarms(Construct):
    """Creates the security topic (encrypted with the audit key, TLS only, the configured
    security contacts subscribed) and one EventBridge rule per kind of tampering: the trail
    stopped, deleted or re-filtered; a policy, encryption, versioning, lifecycle or Object Lock
    change on one of our buckets; a key scheduled for deletion, disabled or re-policied; a log
    group deleted or its key removed; one of our roles re-pointed or a principal tagged into
    one; a tamper rule or the security topic changed; and any assumption of the break-glass
    role. The topic
    and the key admit exactly these rules (``aws:SourceArn``)."""

    def __init__(self, scope: Construct, construct_id: str, *, key: kms.Key,
                 contacts: tuple[str, ...]) -> None:
        super().__init__(scope, construct_id)
        stack = facts_of(self)
        self.topic = sns.Topic(self, "SecurityTopic", topic_name=naming.SECURITY_TOPIC_NAME,
                               display_name="PHI exchange security alarms", master_key=key,
                               enforce_ssl=True)
        for address in contacts:
            self.topic.add_subscription(subscriptions.EmailSubscription(address))
        self.rules: list[events.CfnRule] = []
        roles = account_roles.Roles(account=stack.account, partition=stack.partition)
        rules = {**TAMPERING,
                 "alarm-topic": ("aws.sns", ["DeleteTopic", "SetTopicAttributes",
                                             "AddPermission", "RemovePermission"],
                                 {"requestParameters": {"topicArn": [self.topic.topic_arn]}}),
                 "break-glass": ("aws.sts", ["AssumeRole"], {
                     "requestParameters": {"roleArn": [roles.break_glass]}})}
        for suffix, (source, names, detail) in rules.items():
            self._rule(suffix, source, names, detail)
        sources = [stack.format_arn(service="events", resource="rule",
                                    resource_name=f"{naming.TAMPER_RULE_PREFIX}*")]
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowTamperRulesToPublish",
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            actions=["sns:Publish"],
            resources=[self.topic.topic_arn],
            conditions={"ArnLike": {"aws:SourceArn": sources},
                        "StringEquals": {"aws:SourceAccount": stack.account}},
        ))
        # SNS encrypts for the encrypted topic as EventBridge, on behalf of the rule.
        service_key_access.allow_service_for_sources(
            key, sid="AllowTamperRulesToNotify", service="events.amazonaws.com",
            actions=["kms:GenerateDataKey*", "kms:Decrypt"], source_arns=sources)

    def _rule(self, suffix: str, source: str, names: list[str], detail: dict) -> None:
        rule = events.CfnRule(
            self, f"Tamper{''.join(w.title() for w in suffix.split('-'))}",
            name=f"{naming.TAMPER_RULE_PREFIX}{suffix}",
            description=f"Alarms on {', '.join(names)}",
            event_pattern={"source": [source], "detail-type": [API_CALL],
                           "detail": {"eventName": names, **detail}},
            targets=[events.CfnRule.TargetProperty(id="SecurityTopic",
                                                   arn=self.topic.topic_arn)],
        )
        self.rules.append(rule)
