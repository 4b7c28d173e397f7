"""The central evidence: one Object-Locked custody bucket and its key in the log-archive
account, which every exchange account's trail delivers to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from phi_core import account_roles, naming
from stacks import compliance
from stacks.components import evidence
from stacks.config import AuditSettings


class LogArchiveStack(Stack):
    """CloudFormation stack ``PhiExchange-log-archive``, in the log-archive account only.

    ``trails``: exchange account id -> the ARNs of our trail there (one per region it is
    listed in, in ``accounts.toml``). Each may encrypt with the evidence key and write under its
    own ``AWSLogs/<account>/`` prefix; nothing else of an exchange account is granted anything,
    so its administrators, whatever their rights there, cannot read, alter or delete the
    evidence (a request across accounts needs a grant in the resource's own policy). In the
    log-archive account, the bucket and key are guarded as the single-account audit stack
    guards its own: only break-glass retires the key; only the deployment role and break-glass
    change its policy (it lists the trails, so it changes with the accounts) and the bucket's
    controls; only its operator and break-glass decrypt; Object Lock keeps every version for
    the retention.

    Deploy it first (its account's ``AccessStack`` before it): an exchange account's trail is
    refused at CreateTrail until this bucket's policy admits it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: AuditSettings,
                 trails: Mapping[str, Sequence[str]], **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=naming.LOG_ARCHIVE_STACK_NAME,
            description="PHI partner exchange: the central evidence every exchange account's "
            "trail delivers to (log-archive account)",
            **kwargs,
        )
        every_trail = [arn for arns in trails.values() for arn in arns]
        self.key = kms.Key(
            self,
            "EvidenceKey",
            alias=naming.EVIDENCE_KEY_ALIAS,
            description="Encrypts the exchange accounts' trail logs in the central custody "
            "bucket",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        evidence.allow_cloudtrail_to_use_key(self.key, every_trail)
        roles = account_roles.Roles(account=self.account, partition=self.partition)
        for statement in [*account_roles.evidence_key_guard_denies(roles),
                          account_roles.evidence_key_crypto_deny(roles)]:
            self.key.add_to_resource_policy(iam.PolicyStatement.from_json(statement))
        cfn_key = self.key.node.default_child
        assert isinstance(cfn_key, kms.CfnKey)
        cfn_key.bypass_policy_lockout_safety_check = True  # as the audit key: see AuditTrail

        self.access_log_bucket = evidence.access_log_bucket(self, "AccessLogBucket")
        self.custody_bucket = evidence.custody_bucket(
            self, "CustodyBucket", key=self.key, access_logs=self.access_log_bucket,
            settings=settings, trail_arns=every_trail,
            bucket_name=naming.evidence_bucket_name(self.account, self.region))
        evidence.allow_cloudtrail_to_deliver(self.custody_bucket, trails)
        compliance.acknowledge_evidence_buckets(self.custody_bucket, self.access_log_bucket)
        Tags.of(self).add("phi-exchange:component", "log-archive")
        CfnOutput(self, "CustodyBucketName", value=self.custody_bucket.bucket_name)
        CfnOutput(self, "EvidenceKeyArn", value=self.key.key_arn)
