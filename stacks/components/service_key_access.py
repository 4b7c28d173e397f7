"""Key-policy statements for AWS services that use a customer-managed key as themselves.

CloudWatch Logs, CloudWatch alarms and EventBridge call KMS as service principals, so an
identity policy cannot let them use a key; the key policy must. Each statement is limited to
the one log group, or the rules or alarms of our account, that need it (docs/security.md,
"Service contracts", lists each with the AWS documentation it follows).
"""

from __future__ import annotations

from aws_cdk import ArnFormat
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

from stacks.components.stack_facts import facts_of


def allow_log_group(key: kms.Key, *, sid: str, log_group_name: str) -> None:
    """Let CloudWatch Logs encrypt the log group ``log_group_name`` (and only it) with ``key``."""
    stack = facts_of(key)
    key.add_to_resource_policy(iam.PolicyStatement(
        sid=sid,
        principals=[iam.ServicePrincipal(f"logs.{stack.region}.{stack.url_suffix}")],
        actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                 "kms:Describe*"],
        resources=["*"],
        conditions={"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": stack.format_arn(
            service="logs", resource="log-group", resource_name=log_group_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME)}},
    ))


def allow_service_for_sources(
    key: kms.Key, *, sid: str, service: str, actions: list[str], source_arns: list[str]
) -> None:
    """Let ``service`` (e.g. events.amazonaws.com) use ``key`` for the messages it sends to our
    KMS-encrypted queues and topics, only on behalf of the resources ``source_arns`` (ARN
    patterns) of our account: the same request made for anyone else's rule or alarm (the
    confused deputy) matches neither condition."""
    stack = facts_of(key)
    key.add_to_resource_policy(iam.PolicyStatement(
        sid=sid,
        principals=[iam.ServicePrincipal(service)],
        actions=actions,
        resources=["*"],
        conditions={"ArnLike": {"aws:SourceArn": source_arns},
                    "StringEquals": {"aws:SourceAccount": stack.account}},
    ))
