"""The topic a customer's contacts are told through: one place for its defaults.

Three components tell the registry's contacts something (the key rotation, the malware gate,
the certificate expiry). Each topic is encrypted with the customer's key, refuses plain HTTP,
has the contacts subscribed by e-mail and, when an AWS service publishes to it, admits exactly
that service for exactly our resource: ``enforce_ssl``'s topic policy replaces SNS's default
one, so without that statement a same-account alarm or rule could not publish at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.components.stack_facts import facts_of


@dataclass(frozen=True)
class Publisher:
    """An AWS service that publishes to the topic on behalf of one resource of ours."""

    sid: str
    service: str  # e.g. events.amazonaws.com
    source_arn: str


def notices_topic(scope: Construct, *, topic_name: str, display_name: str, key: kms.IKey,
                  contacts: tuple[str, ...], publisher: Publisher | None = None) -> sns.Topic:
    """The ``NoticesTopic`` of ``scope`` (its logical id is the component's)."""
    topic = sns.Topic(scope, "NoticesTopic", topic_name=topic_name, display_name=display_name,
                      master_key=key, enforce_ssl=True)
    for address in contacts:
        topic.add_subscription(subscriptions.EmailSubscription(address))
    if publisher is not None:
        topic.add_to_resource_policy(iam.PolicyStatement(
            sid=publisher.sid,
            principals=[iam.ServicePrincipal(publisher.service)],
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            conditions={"ArnLike": {"aws:SourceArn": publisher.source_arn},
                        "StringEquals": {"aws:SourceAccount": facts_of(scope).account}},
        ))
    return topic
