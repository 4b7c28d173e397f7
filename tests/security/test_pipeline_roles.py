"""The pipelines' grants across accounts, proven with the pinned IAM evaluator: each
account's CDK-deploy role is assumed by the pipelines' roles (two pipelines here: the target is
deployed by the second) and by no other principal of the pipeline's account; it reads its
pipeline's artifacts (bucket and key, both sides of the cross-account grant), and an
administrator of the target account does not. Each rule is shown to fail when the statement
behind it is broken."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from phi_core import naming, placement
from security import evaluator
from security.templates import ACCOUNT, collect_policies, resolve_template
from stacks.app_builder import build_app, build_pipeline_app
from tests.infra.conftest import CDK_CONTEXT

TARGET = ACCOUNT  # an exchange account whose AccessStack the resolver makes concrete
PIPELINE, STRANGER, REGION = "555555555555", "333333333333", "us-east-1"
ACCOUNTS = placement.parse_accounts({
    "pipeline": {"label": "tooling", "account_id": PIPELINE, "region": REGION,
                 "repository": "example/phi-exchange",
                 "connection_arn": "arn:aws:codeconnections:us-east-1:555555555555:connection/"
                                   "0a1b2c3d-0000-4000-8000-00000000abcd"},
    "exchange": [{"label": "exchange-1", "account_id": "111111111111", "region": "us-east-1"},
                 {"label": "exchange-2", "account_id": TARGET, "region": "us-east-1",
                  "pipeline": 2}],
}, source="test")
CDK_DEPLOY = f"arn:aws:iam::{TARGET}:role/{naming.CDK_DEPLOY_ROLE_NAME}"
CDK_DEPLOY_SESSION = f"arn:aws:sts::{TARGET}:assumed-role/{naming.CDK_DEPLOY_ROLE_NAME}/run"
PIPELINE_ROLE = f"arn:aws:iam::{PIPELINE}:role/{naming.pipeline_role_name(2)}"
PIPELINE_SESSION = f"arn:aws:sts::{PIPELINE}:assumed-role/{naming.pipeline_role_name(2)}/run"
FIRST_PIPELINE_ROLE = f"arn:aws:iam::{PIPELINE}:role/{naming.pipeline_role_name(1)}"
NO_PIPELINE_ROLE = f"arn:aws:iam::{PIPELINE}:role/{naming.pipeline_role_name(3)}"
BUCKET = f"arn:aws:s3:::{naming.pipeline_artifact_bucket_name(PIPELINE, REGION, 2)}"
KEY = f"arn:aws:kms:{REGION}:{PIPELINE}:key/0a1b2c3d-0000-4000-8000-000000000001"
STACK = f"arn:aws:cloudformation:us-east-1:{TARGET}:stack/{{}}/0a1b2c3d"
ALLOW_ALL = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@dataclass(frozen=True)
class Policies:
    trust: dict[str, Any]
    cdk_deploy: tuple[dict[str, Any], ...]
    bucket: dict[str, Any]
    key: dict[str, Any]


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Policies:
    access = build_app([], accounts=ACCOUNTS, context=CDK_CONTEXT,
                       outdir=str(tmp_path_factory.mktemp("access"))).synth()
    found = collect_policies(resolve_template(
        access.get_stack_by_name(naming.ACCESS_STACK_NAME).template, naming.ACCESS_STACK_NAME))
    where, _ = placement.check([], ACCOUNTS)
    pipeline = build_pipeline_app([], where, context=CDK_CONTEXT,
                                  outdir=str(tmp_path_factory.mktemp("pipeline"))).synth()
    stack = collect_policies(resolve_template(
        pipeline.get_stack_by_name(naming.pipeline_stack_name(2)).template,
        naming.pipeline_stack_name(2)))
    ((_, key),) = stack.key_policies.items()
    return Policies(
        trust=found.trust_policies[CDK_DEPLOY].document,
        cdk_deploy=tuple(p.document for p in found.identity_policies[CDK_DEPLOY]),
        bucket=stack.bucket_policies[BUCKET.split(":::")[1]].document,
        key=key.document)


def _caller(session: str, role: str, **context: str) -> dict[str, str]:
    return {"aws:PrincipalIsAWSService": "false", "aws:PrincipalArn": role,
            "aws:PrincipalAccount": role.split(":")[4], "aws:SecureTransport": "true",
            **context}


@dataclass(frozen=True)
class Case:
    name: str
    principal: str
    role: str
    action: str
    resource: str
    identity: str  # "allow-all" or "cdk-deploy"
    on: str  # which resource policy: trust, bucket, key, or none
    allowed: bool


ADMIN = "arn:aws:iam::{}:role/Admin"
CASES = [
    Case("the pipeline assumes the deploy role", PIPELINE_SESSION, PIPELINE_ROLE,
         "sts:AssumeRole", CDK_DEPLOY, "allow-all", "trust", True),
    Case("the first pipeline assumes it too (one trust for the pipelines of one account)",
         FIRST_PIPELINE_ROLE.replace(":iam:", ":sts:").replace(":role/", ":assumed-role/") + "/r",
         FIRST_PIPELINE_ROLE, "sts:AssumeRole", CDK_DEPLOY, "allow-all", "trust", True),
    Case("a role named as a pipeline that does not exist assumes it",
         NO_PIPELINE_ROLE.replace(":iam:", ":sts:").replace(":role/", ":assumed-role/") + "/r",
         NO_PIPELINE_ROLE, "sts:AssumeRole", CDK_DEPLOY, "allow-all", "trust", False),
    Case("another role of the pipeline's account assumes it",
         f"arn:aws:sts::{PIPELINE}:assumed-role/Admin/x", ADMIN.format(PIPELINE),
         "sts:AssumeRole", CDK_DEPLOY, "allow-all", "trust", False),
    Case("a stranger assumes it", f"arn:aws:sts::{STRANGER}:assumed-role/Admin/x",
         ADMIN.format(STRANGER), "sts:AssumeRole", CDK_DEPLOY, "allow-all", "trust", False),
    Case("the deploy role reads a staged template", CDK_DEPLOY_SESSION, CDK_DEPLOY,
         "s3:GetObject", f"{BUCKET}/Synth_Output/abc", "cdk-deploy", "bucket", True),
    Case("the deploy role decrypts it", CDK_DEPLOY_SESSION, CDK_DEPLOY, "kms:Decrypt", KEY,
         "cdk-deploy", "key", True),
    Case("the target's admin reads a staged template",
         f"arn:aws:sts::{TARGET}:assumed-role/Admin/x", ADMIN.format(TARGET), "s3:GetObject",
         f"{BUCKET}/Synth_Output/abc", "allow-all", "bucket", False),
    Case("the target's admin decrypts it", f"arn:aws:sts::{TARGET}:assumed-role/Admin/x",
         ADMIN.format(TARGET), "kms:Decrypt", KEY, "allow-all", "key", False),
    Case("the deploy role overwrites an artifact", CDK_DEPLOY_SESSION, CDK_DEPLOY,
         "s3:PutObject", f"{BUCKET}/Synth_Output/abc", "cdk-deploy", "bucket", False),
    Case("the deploy role updates a customer stack", CDK_DEPLOY_SESSION, CDK_DEPLOY,
         "cloudformation:UpdateStack", STACK.format("PhiExchange-acme"), "cdk-deploy", "none",
         True),
    Case("the deploy role updates the account's roles", CDK_DEPLOY_SESSION, CDK_DEPLOY,
         "cloudformation:UpdateStack", STACK.format(naming.ACCESS_STACK_NAME), "cdk-deploy",
         "none", False),
    Case("the deploy role updates the pipeline", CDK_DEPLOY_SESSION, CDK_DEPLOY,
         "cloudformation:CreateChangeSet", STACK.format(naming.PIPELINE_STACK_NAME),
         "cdk-deploy", "none", False),
    Case("the deploy role updates another pipeline", CDK_DEPLOY_SESSION, CDK_DEPLOY,
         "cloudformation:UpdateStack", STACK.format(naming.pipeline_stack_name(2)),
         "cdk-deploy", "none", False),
]


def _decisions(policies: Policies) -> dict[str, bool]:
    batch = evaluator.Batch()
    batch.add_policy("trust", policies.trust)
    batch.add_policy("bucket", policies.bucket)
    batch.add_policy("key", policies.key)
    batch.add_policy("allow-all", ALLOW_ALL)
    deploy_ids = tuple(batch.add_policy(f"cdk-deploy-{i}", d)
                       for i, d in enumerate(policies.cdk_deploy))
    for case in CASES:
        context = _caller(case.principal, case.role)
        batch.requests.append(evaluator.Request(
            principal=case.principal, action=case.action, resource=case.resource,
            resource_account=TARGET if case.on in ("trust", "none") else PIPELINE,
            context=context,
            identity_policies=deploy_ids if case.identity == "cdk-deploy" else ("allow-all",),
            resource_policy=None if case.on == "none" else case.on))
    decisions = evaluator.evaluate(batch, workers=1)
    return {c.name: d.allowed for c, d in zip(CASES, decisions, strict=True)}


def _wrong(decisions: dict[str, bool]) -> list[str]:
    return [c.name for c in CASES if decisions[c.name] != c.allowed]


def test_only_the_pipeline_deploys_and_only_the_deploy_role_reads_its_artifacts(
    policies: Policies,
) -> None:
    assert _wrong(_decisions(policies)) == []


def _trust_any_pipeline_principal(policies: Policies) -> Policies:
    trust = copy.deepcopy(policies.trust)
    for statement in trust["Statement"]:
        if "ArnEquals" in statement.get("Condition", {}):
            del statement["Condition"]["ArnEquals"]
            if not statement["Condition"]:
                del statement["Condition"]
    return replace(policies, trust=trust)


def _drop_artifact_reads(policies: Policies) -> Policies:
    documents = copy.deepcopy(policies.cdk_deploy)
    for document in documents:
        document["Statement"] = [s for s in document["Statement"]
                                 if s.get("Sid") not in ("ReadPipelineArtifacts",
                                                         "DecryptPipelineArtifacts")]
    return replace(policies, cdk_deploy=documents)


def _drop_own_stacks_deny(policies: Policies) -> Policies:
    documents = copy.deepcopy(policies.cdk_deploy)
    for document in documents:
        document["Statement"] = [s for s in document["Statement"]
                                 if s.get("Sid") != "NeverTheAccountsOwnStacks"]
    return replace(policies, cdk_deploy=documents)


@pytest.mark.parametrize(("mutate", "caught_by"), [
    (_trust_any_pipeline_principal, "another role of the pipeline's account assumes it"),
    (_drop_artifact_reads, "the deploy role reads a staged template"),
    (_drop_own_stacks_deny, "the deploy role updates the account's roles"),
], ids=["pipeline-trust-widened", "artifact-reads-dropped", "own-stacks-deny-dropped"])
def test_each_broken_statement_is_caught(policies: Policies,
                                         mutate: Callable[[Policies], Policies],
                                         caught_by: str) -> None:
    assert caught_by in _wrong(_decisions(mutate(policies)))
