"""Hands a customer's new inbound files to the importer's queue."""

from __future__ import annotations

import json

from aws_cdk import aws_events as events
from constructs import Construct

from phi_core import naming
from stacks.components.stack_facts import facts_of


class IngestionHandoff(Construct):
    """Creates an EventBridge rule that sends every ``Object Created`` event under the
    customer bucket's ``inbound/`` prefix to the ingestion queue of the audit stack, found by
    its deterministic name (no cross-stack export: either stack deploys on its own; until the
    audit stack exists, events have nowhere to go and the importer has nothing to do).

    The message carries what the importer needs and the custody record wants: customer slug,
    bucket, key, version id, size, ETag, event time and id, requester and source address; its
    ``kind`` (``object-created``) and whether the file must wait for the malware gate's scan
    result (``scan``: ``required``, default, or ``opted-out`` when the registry opted the
    customer out; docs/custody.md, "The malware gate").
    """

    def __init__(self, scope: Construct, construct_id: str, *, slug: str,
                 bucket_name: str, scanned: bool = True) -> None:
        super().__init__(scope, construct_id)
        stack = facts_of(self)
        rule = events.Rule(
            self,
            "InboundObjectCreated",
            rule_name=naming.ingestion_rule_name(slug),
            description=f"New inbound files of {slug} to the importer's queue",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [bucket_name]},
                    "object": {"key": [{"prefix": naming.INBOUND_PREFIX}]},
                },
            ),
        )
        queue_arn = stack.format_arn(service="sqs", resource=naming.INGESTION_QUEUE_NAME)
        paths = {
            "account": "$.account",
            "region": "$.region",
            "bucket": "$.detail.bucket.name",
            "key": "$.detail.object.key",
            "version_id": "$.detail.object.version-id",
            "size": "$.detail.object.size",
            "etag": "$.detail.object.etag",
            "time": "$.time",
            "event_id": "$.id",
            "requester": "$.detail.requester",
            "source_ip": "$.detail.source-ip-address",
        }
        # Placeholders outside quotes: EventBridge inserts each value JSON-encoded.
        scan = "required" if scanned else "opted-out"
        template = "{" + ",".join(
            [f'"customer":{json.dumps(slug)}', '"kind":"object-created"', f'"scan":"{scan}"']
            + [f'"{name}":<{name}>' for name in paths]
        ) + "}"
        cfn_rule = rule.node.default_child
        assert isinstance(cfn_rule, events.CfnRule)
        cfn_rule.targets = [events.CfnRule.TargetProperty(
            id="IngestionQueue",
            arn=queue_arn,
            input_transformer=events.CfnRule.InputTransformerProperty(
                input_paths_map=paths, input_template=template),
            retry_policy=events.CfnRule.RetryPolicyProperty(maximum_retry_attempts=185),
        )]
