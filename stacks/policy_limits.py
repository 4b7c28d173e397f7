"""Refuse, at synth, a customer whose policies would exceed an AWS size limit.

A partner with many principals or source CIDRs grows the bucket policy, the key policy and the
role trust policy. AWS refuses an oversize policy only at deploy time, half-way through a
stack update; this check refuses it at synth, naming the registry file and field.

Sizes are measured on the synthesized documents with every CloudFormation token replaced by
the longest value it can take (the longest region and partition names, a 63-character bucket
name, ...), and whitespace removed, as AWS counts them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import IConstruct

from phi_core import naming, placement
from stacks.config import CustomerConfig

# Documented AWS limits (characters, whitespace excluded).
BUCKET_POLICY_LIMIT = 20 * 1024
KEY_POLICY_LIMIT = 32 * 1024
MANAGED_POLICY_LIMIT = 6144
ROLE_TRUST_POLICY_LIMIT = 2048  # default quota; adjustable up to 4096 on request
# CloudFormation's template body, uploaded through S3 by the CDK CLI: 1 MB. Checked on the
# written templates, after synth (the pipeline's own template is the one that grows with the
# registry; the stacks it deploys are ~50 KB each).
TEMPLATE_BODY_LIMIT = 1_000_000

# The longest value each pseudo parameter can take.
WORST_CASE_PSEUDO = {
    "AWS::AccountId": "123456789012",
    "AWS::Region": "ap-southeast-5-xx",  # longer than every current region name
    "AWS::Partition": "aws-iso-b-xx",
    "AWS::URLSuffix": "amazonaws.com.cn-xx",
    "AWS::StackName": "PhiExchange-" + "x" * 20,
}
# Any other Ref or GetAtt: a bucket name, key ARN or similar, at its longest.
WORST_CASE_ATTRIBUTE = "x" * 128


@dataclass(frozen=True)
class PolicySize:
    kind: str  # "bucket policy", "key policy", "managed policy", "role trust policy"
    path: str
    size: int
    limit: int
    grows_with: str  # the registry field(s) that make it grow

    @property
    def over(self) -> bool:
        return self.size > self.limit


def measure(stack: Stack) -> list[PolicySize]:
    """Every policy document in ``stack`` with its worst-case size and its limit."""
    sizes = []
    for construct in stack.node.find_all():
        sizes.extend(_sizes_of(stack, construct))
    return sizes


def oversize_problems(stack: Stack, customer: CustomerConfig) -> list[str]:
    """One ``file: field: rule`` line per policy of ``customer`` over its AWS limit."""
    return [
        f"{customer.source_file}: {size.grows_with}: the {size.kind} would be up to "
        f"{size.size:,} characters, over AWS's {size.limit:,} limit; list fewer entries "
        "(an account id stands for every principal of that account)"
        for size in measure(stack)
        if size.over
    ]


def _sizes_of(stack: Stack, construct: IConstruct) -> list[PolicySize]:
    if not isinstance(construct, (s3.CfnBucketPolicy, kms.CfnKey, iam.CfnManagedPolicy,
                                  iam.CfnRole)):
        return []  # before reading the path: two jsii calls, for each of ~45 constructs a stack
    path = construct.node.path
    if isinstance(construct, s3.CfnBucketPolicy):
        return [_size(stack, construct.policy_document, "bucket policy", path,
                      BUCKET_POLICY_LIMIT, "partner_principals, allowed_source_ips")]
    if isinstance(construct, kms.CfnKey):
        return [_size(stack, construct.key_policy, "key policy", path, KEY_POLICY_LIMIT,
                      "partner_principals")]
    if isinstance(construct, iam.CfnManagedPolicy):
        return [_size(stack, construct.policy_document, "managed policy", path,
                      MANAGED_POLICY_LIMIT, "directions")]
    if isinstance(construct, iam.CfnRole):
        return [_size(stack, construct.assume_role_policy_document, "role trust policy", path,
                      ROLE_TRUST_POLICY_LIMIT, "partner_principals")]
    return []


def _size(stack: Stack, document: Any, kind: str, path: str, limit: int,
          grows_with: str) -> PolicySize:
    resolved = _worst_case(stack.resolve(document))
    text = json.dumps(resolved, separators=(",", ":"))
    return PolicySize(kind=kind, path=path, size=len(text), limit=limit, grows_with=grows_with)


def _worst_case(value: Any) -> Any:
    """Replace CloudFormation intrinsics by their longest possible string."""
    if isinstance(value, list):
        return [_worst_case(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return WORST_CASE_PSEUDO.get(value["Ref"], WORST_CASE_ATTRIBUTE)
    if set(value) == {"Fn::GetAtt"}:
        return WORST_CASE_ATTRIBUTE
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(_worst_case(p)) for p in parts)
    if set(value) == {"Fn::Sub"}:
        return WORST_CASE_ATTRIBUTE + str(value["Fn::Sub"])
    return {k: _worst_case(v) for k, v in value.items()}


_PIPELINE_STACK_NAMES = {naming.pipeline_stack_name(n): n
                         for n in range(1, naming.MAX_PIPELINES + 1)}


def oversized_templates(assembly: Any) -> list[str]:
    """One line per synthesized template (nested stages' included) over CloudFormation's
    1 MB template body: such a stack cannot be created, whatever deploys it."""
    problems = []
    for stack in assembly.stacks_recursively:
        size = Path(stack.template_full_path).stat().st_size
        if size > TEMPLATE_BODY_LIMIT:
            problems.append(
                f"{stack.stack_name}: template: {size:,} bytes, over CloudFormation's "
                f"{TEMPLATE_BODY_LIMIT:,}-byte template body"
                + ("; the pipeline deploys too many stacks: "
                   + placement.next_pipeline(_PIPELINE_STACK_NAMES[stack.stack_name])
                   if stack.stack_name in _PIPELINE_STACK_NAMES else ""))
    return problems
