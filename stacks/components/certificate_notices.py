"""Notices ahead of a roles-anywhere partner's CA expiring: the certificate-era counterpart of
the key rotation's notices.

IAM Roles Anywhere sends a daily "Roles Anywhere Certificate Expiration State Change" event
for a trust anchor whose CA is within the trust anchor's notification threshold of expiry
(https://docs.aws.amazon.com/rolesanywhere/latest/userguide/monitoring-events.html), naming
the trust anchor as the event's one resource. A rule of ours matches exactly this customer's
trust anchor and sends the event to a notices topic, encrypted with the customer's key, that
the registry's contacts are subscribed to. Other customers' anchors never match: their CA
names and dates are not this partner's business.
"""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from constructs import Construct

from phi_core import naming
from stacks.components import service_key_access
from stacks.components.notices_topic import Publisher, notices_topic
from stacks.components.stack_facts import facts_of

EXPIRY_SOURCE = "aws.rolesanywhere"
EXPIRY_DETAIL_TYPE = "Roles Anywhere Certificate Expiration State Change"


class CertificateNotices(Construct):
    """The certificate-expiry rule and the notices topic (``naming.notices_topic_name``)."""

    def __init__(self, scope: Construct, construct_id: str, *, slug: str,
                 contacts: tuple[str, ...], trust_anchor_arn: str, key: kms.Key) -> None:
        super().__init__(scope, construct_id)
        stack = facts_of(self)
        rule_name = naming.certificate_notices_rule_name(slug)
        rule_arn = stack.format_arn(service="events", resource="rule", resource_name=rule_name)
        self.topic = notices_topic(
            self, topic_name=naming.notices_topic_name(slug),
            display_name=f"PHI exchange notices for {slug}", key=key, contacts=contacts,
            publisher=Publisher(sid="AllowCertificateExpiryRuleToPublish",
                                service="events.amazonaws.com", source_arn=rule_arn))
        # EventBridge encrypts the message for the encrypted topic as itself.
        service_key_access.allow_service_for_sources(
            key, sid="AllowCertificateExpiryRuleToNotify", service="events.amazonaws.com",
            actions=["kms:GenerateDataKey*", "kms:Decrypt"], source_arns=[rule_arn])
        self.rule = events.CfnRule(
            self, "ExpiryRule",
            name=rule_name,
            description=f"IAM Roles Anywhere's expiry notices of {slug}'s CA to its contacts",
            event_pattern={"source": [EXPIRY_SOURCE], "detail-type": [EXPIRY_DETAIL_TYPE],
                           "resources": [trust_anchor_arn]},
            targets=[events.CfnRule.TargetProperty(id="NoticesTopic", arn=self.topic.topic_arn)],
        )
