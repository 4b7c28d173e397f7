"""The account's audit trail and the importer handoff queue: deployed once, before customers."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from phi_core import naming
from stacks import compliance
from stacks.components.audit_trail import AuditTrail, CentralEvidence
from stacks.components.ingestion_queue import IngestionQueue
from stacks.components.receipt_signing import ReceiptSigning
from stacks.components.tamper_alarms import TamperAlarms
from stacks.config import AuditSettings


class AuditStack(Stack):
    """CloudFormation stack ``PhiExchange-audit``: one per account and region.

    Holds the CloudTrail trail that records every S3 data event on every customer bucket (one
    trail for all customers, matched by the bucket-name prefix customer stacks guarantee), its
    Object-Locked custody bucket, the ingestion queue that hands new inbound files to the
    importer, and the alarms on tampering with evidence or access (the security topic).
    Customer stacks find the queue by its deterministic name, never by a cross-stack export,
    so either stack can be updated on its own. With ``central`` (a log-archive account in
    ``accounts.toml``), the trail delivers to the central custody bucket and key instead, and
    this stack holds no custody bucket of its own.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: AuditSettings,
        central: CentralEvidence | None = None, **kwargs: Any
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=naming.AUDIT_STACK_NAME,
            description="PHI partner exchange: audit trail and importer handoff (one per "
            "account and region)",
            **kwargs,
        )
        trail = AuditTrail(self, "Trail", settings=settings, central=central)
        queue = IngestionQueue(self, "Ingestion", key=trail.key)
        alarms = TamperAlarms(self, "TamperAlarms", key=trail.key,
                              contacts=settings.security_contacts)
        signing = ReceiptSigning(self, "Receipts")
        compliance.acknowledge_audit_stack(self, trail=trail, queue=queue)
        Tags.of(self).add("phi-exchange:component", "audit")
        CfnOutput(self, "CustodyBucketName", value=trail.custody_bucket_name)
        CfnOutput(self, "TrailArn", value=trail.trail.attr_arn)
        CfnOutput(self, "IngestionQueueUrl", value=queue.queue.queue_url)
        CfnOutput(self, "IngestionDeadLetterQueueUrl", value=queue.dead_letter_queue.queue_url)
        CfnOutput(self, "SecurityTopicArn", value=alarms.topic.topic_arn)
        CfnOutput(self, "ReceiptSigningKeyArn", value=signing.key.key_arn)
