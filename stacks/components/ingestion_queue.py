"""The importer's inbox: one queue for every customer's new inbound files."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from phi_core import naming
from stacks.components import service_key_access
from stacks.components.stack_facts import facts_of

# A message that fails this many deliveries (a file that cannot be imported) moves to the DLQ.
MAX_RECEIVE_COUNT = 5
# Long enough to fetch, verify and load a large file in one transaction.
VISIBILITY_TIMEOUT = Duration.minutes(15)


class IngestionQueue(Construct):
    """Creates the ingestion queue and its dead-letter queue, both KMS-encrypted with ``key``
    and TLS-only, with deterministic names (``naming.INGESTION_QUEUE_NAME``) so customer stacks
    target the queue without a cross-stack export. Only EventBridge rules named by
    ``naming.INGESTION_RULE_PATTERN`` in this account may send to it."""

    def __init__(self, scope: Construct, construct_id: str, *, key: kms.Key) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=naming.INGESTION_DEAD_LETTER_QUEUE_NAME,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=naming.INGESTION_QUEUE_NAME,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            visibility_timeout=VISIBILITY_TIMEOUT,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT),
        )
        rules = facts_of(self).format_arn(
            service="events", resource="rule", resource_name=naming.INGESTION_RULE_PATTERN)
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            sid="AcceptCustomerInboundEvents",
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            actions=["sqs:SendMessage"],
            resources=[self.queue.queue_arn],
            conditions={"ArnLike": {"aws:SourceArn": rules}},
        ))
        # SQS asks KMS for a data key as EventBridge, on behalf of the rule (SQS developer
        # guide, "Key management": GenerateDataKey, and Decrypt to check the new data key).
        service_key_access.allow_service_for_sources(
            key, sid="AllowEventBridgeToQueue", service="events.amazonaws.com",
            actions=["kms:GenerateDataKey", "kms:Decrypt"], source_arns=[rules])
