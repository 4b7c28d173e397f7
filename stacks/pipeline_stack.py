"""The CDK pipeline that deploys registry changes: one stage per account, in waves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import Duration, RemovalPolicy, Tags, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from phi_core import naming, placement
from phi_core.placement import Account, Accounts
from stacks import compliance
from stacks.audit_stack import AuditStack
from stacks.components.audit_trail import CentralEvidence
from stacks.components.encrypted_storage import ACCESS_LOG_RETENTION_DAYS, secure_bucket
from stacks.config import AuditSettings, CustomerConfig
from stacks.customer_stack import CustomerStack
from stacks.log_archive_stack import LogArchiveStack

# What the synth step runs, in a clean checkout (CodeBuild): the project's own test command
# (the compliance gate runs on every synth inside it), then the pipeline's synth, then a diff
# of every stack against what is deployed, for the reviewer of the approval. Make targets: the
# Makefile puts the project's venv and Node first on PATH (cdk.json runs `python3 app.py`).
SYNTH_COMMANDS = ("make test", "make pipeline-synth", "make pipeline-diff")
APPROVAL = "Approve"
ARTIFACT_DAYS = 90  # a run's artifacts are rebuilt by the next run


# CodePipeline's structural limits (not adjustable): 50 actions in a stage, 50 stages in a
# pipeline. Each stack is one action: deployed directly, without a change set (a change set
# would add a second action per stack and nobody reviews it between the two: the review is
# the synth step's diff, before the approval), which also halves the pipeline's template.
MAX_ACTIONS_PER_STAGE = 50
MAX_STAGES = 50
ACTIONS_PER_STACK = 1
LEADING_STAGES = 4  # Source, Build, UpdatePipeline, Assets
CUSTOMERS_PER_WAVE = MAX_ACTIONS_PER_STAGE // ACTIONS_PER_STACK


@dataclass(frozen=True)
class PlannedStage:
    """One CDK stage: an account's own stack (audit or log archive), or a batch of the
    customers placed in it."""

    account: Account
    own_stack: bool
    customers: tuple[str, ...] = ()
    batch: int = 0

    @property
    def construct_id(self) -> str:
        if self.own_stack:
            return self.account.label
        return f"{self.account.label}-customers-{self.batch}"


@dataclass(frozen=True)
class PlannedWave:
    name: str
    stages: tuple[PlannedStage, ...]
    approval: bool = False

    @property
    def actions(self) -> int:
        stacks = sum(int(s.own_stack) + len(s.customers) for s in self.stages)
        return ACTIONS_PER_STACK * stacks + int(self.approval)


def wave_plan(accounts: Accounts, where: Mapping[str, str], number: int = 1
              ) -> list[PlannedWave]:
    """The pipeline's waves in deployment order, all after one manual approval (nothing reaches
    an account before a person has read the synth step's diff): the log-archive account (its
    bucket must admit every trail before the trails exist); then the ``production = false``
    exchange accounts' audit stacks and their customers (a failure there stops the run before
    production); then the production ones'. Customers go in batches of at most
    :data:`CUSTOMERS_PER_WAVE` (every wave is one CodePipeline stage, at most 50 actions);
    placement is ``where`` (slug -> account label). Pipeline ``number`` deploys the exchange
    accounts with that ``pipeline``; the log archive is pipeline 1's. Raises
    :class:`ValueError` when the pipeline would need more than 50 stages."""
    waves: list[PlannedWave] = []
    if accounts.log_archive is not None and number == 1:
        waves.append(PlannedWave("log-archive", (PlannedStage(accounts.log_archive, True),)))
    for group, production in (("staging", False), ("production", True)):
        members = [a for a in accounts.exchange
                   if a.production is production and a.pipeline == number]
        if not members:
            continue
        waves.append(PlannedWave(group, tuple(PlannedStage(a, True) for a in members)))
        placed = [(a, slug) for a in members
                  for slug in sorted(s for s, label in where.items() if label == a.label)]
        for start in range(0, len(placed), CUSTOMERS_PER_WAVE):
            batch_number = start // CUSTOMERS_PER_WAVE + 1
            batch = placed[start:start + CUSTOMERS_PER_WAVE]
            stages = tuple(PlannedStage(a, False, tuple(slug for b, slug in batch if b is a),
                                        batch_number)
                           for a in members if any(b is a for b, _ in batch))
            waves.append(PlannedWave(f"{group}-customers-{batch_number}", stages))
    if waves:
        waves[0] = PlannedWave(waves[0].name, waves[0].stages, approval=True)
    if LEADING_STAGES + len(waves) > MAX_STAGES:
        raise ValueError(
            f"pipeline: {LEADING_STAGES + len(waves)} stages needed, CodePipeline allows "
            f"{MAX_STAGES} ({CUSTOMERS_PER_WAVE} customer stacks per stage): "
            f"{sum(len(s.customers) for w in waves for s in w.stages)} customers are more "
            f"than one pipeline deploys; {placement.next_pipeline(number)}")
    return waves


def _env(account: Account) -> cdk.Environment:
    return cdk.Environment(account=account.account_id, region=account.region)


class ExchangeAccountStage(cdk.Stage):
    """Stacks the pipeline deploys to one exchange account: its audit stack, or a batch of
    its customers' stacks (each named as the CLI names it, so the pipeline and ``cdk deploy``
    manage the same CloudFormation stacks). Its ``AccessStack`` is never deployed by the
    pipeline: who may reach PHI is changed by an administrator, by hand."""

    def __init__(self, scope: Construct, planned: PlannedStage, *, settings: AuditSettings,
                 central: CentralEvidence | None, customers: Sequence[CustomerConfig],
                 synthesizer: Any) -> None:
        super().__init__(scope, planned.construct_id, env=_env(planned.account))
        if planned.own_stack:
            AuditStack(self, "AuditStack", settings=settings, central=central,
                       synthesizer=synthesizer())
        for customer in customers:
            CustomerStack(self, f"Customer-{customer.slug}", customer=customer,
                          synthesizer=synthesizer())


class LogArchiveStage(cdk.Stage):
    def __init__(self, scope: Construct, account: Account, *, settings: AuditSettings,
                 trails: Mapping[str, Sequence[str]], synthesizer: Any) -> None:
        super().__init__(scope, account.label, env=_env(account))
        LogArchiveStack(self, "LogArchiveStack", settings=settings, trails=trails,
                        synthesizer=synthesizer())


class PipelineStack(cdk.Stack):
    """CloudFormation stack ``PhiExchange-pipeline`` (pipeline 1; ``-pipeline-<number>`` for
    the others), in the pipeline's account.

    Source: the repository and branch of ``[pipeline]`` in ``accounts.toml``, through a
    CodeConnections connection. Synth: :data:`SYNTH_COMMANDS` (the tests, the compliance gate,
    the synth, a diff). Then :func:`wave_plan`'s waves. A merged pull request that adds one
    customer file adds that customer's stack to a wave and changes no other template.

    The pipeline updates itself from the repository (CDK Pipelines' self-mutation, through the
    CDK bootstrap's roles of its own account, which hold no PHI), so a merged customer file is
    deployed with no other step. What it may do elsewhere is bounded by each account's
    CDK-deploy role, which trusts exactly the pipelines' roles and may never touch
    ``PhiExchange-access`` nor a pipeline's stack: only an administrator changes those.
    """

    def __init__(self, scope: Construct, construct_id: str, *, accounts: Accounts,
                 waves: Sequence[tuple[PlannedWave, list[cdk.Stage]]], number: int = 1,
                 **kwargs: Any) -> None:
        pipeline_config = accounts.pipeline
        assert pipeline_config is not None
        home = pipeline_config.account
        super().__init__(scope, construct_id, stack_name=naming.pipeline_stack_name(number),
                         description="PHI partner exchange: the pipeline that deploys the "
                         "registry to every account" if accounts.pipelines == 1 else
                         f"PHI partner exchange: pipeline {number} of {accounts.pipelines}, "
                         "deploying the registry to its accounts", env=_env(home), **kwargs)
        assert home.account_id is not None and home.region is not None
        key = kms.Key(self, "ArtifactKey", alias=naming.pipeline_artifact_key_alias(number),
                      description="Encrypts the pipeline's artifacts (templates, assets)",
                      enable_key_rotation=True, removal_policy=RemovalPolicy.RETAIN)
        # This stack is deployed with the CDK bootstrap's roles (it holds no PHI; the account
        # roles' deployment role is for the stacks that do): their CloudFormation role changes
        # its buckets' controls.
        bootstrap_cfn = (f"arn:{self.partition}:iam::{home.account_id}:role/"
                         f"cdk-*-cfn-exec-role-{home.account_id}-{home.region}")
        logs = secure_bucket(self, "ArtifactAccessLogs", key=None, deployer=bootstrap_cfn,
                             lifecycle_rules=[
            s3.LifecycleRule(id="RetainAccessLogs",
                             expiration=Duration.days(ACCESS_LOG_RETENTION_DAYS))])
        self.artifacts = secure_bucket(
            self, "Artifacts", key=key,
            bucket_name=naming.pipeline_artifact_bucket_name(home.account_id, home.region,
                                                             number),
            access_logs=(logs, "artifacts/"), deployer=bootstrap_cfn,
            lifecycle_rules=[s3.LifecycleRule(
                id="ExpireOldRuns", expiration=Duration.days(ARTIFACT_DAYS),
                noncurrent_version_expiration=Duration.days(ARTIFACT_DAYS))])
        self.role = iam.Role(self, "PipelineRole", role_name=naming.pipeline_role_name(number),
                             assumed_by=iam.ServicePrincipal("codepipeline.amazonaws.com"),
                             description="CodePipeline runs the exchange's pipeline as this "
                             "role; each account's CDK-deploy role trusts it")
        source = pipelines.CodePipelineSource.connection(
            pipeline_config.repository, pipeline_config.branch,
            connection_arn=pipeline_config.connection_arn)
        # Every pipeline's synth step runs the same `make pipeline-diff`, a diff of every
        # account's stacks (whichever pipeline deploys them): it reads them all.
        targets = sorted({a.account_id for a in (*accounts.exchange, accounts.log_archive)
                          if a is not None and a.account_id})
        synth = pipelines.CodeBuildStep(
            "Synth", input=source, commands=list(SYNTH_COMMANDS),
            primary_output_directory="cdk.out",
            # `cdk diff` reads each account's deployed stacks through its CDK lookup role.
            role_policy_statements=[iam.PolicyStatement(
                actions=["sts:AssumeRole"],
                resources=[f"arn:{self.partition}:iam::{t}:role/cdk-*-lookup-role-{t}-*"
                           for t in targets])])
        self.pipeline = pipelines.CodePipeline(
            self, "Pipeline", pipeline_name=naming.pipeline_name(number), synth=synth,
            role=self.role,
            artifact_bucket=self.artifacts, self_mutation=True, use_change_sets=False,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                    compute_type=codebuild.ComputeType.LARGE)))
        for planned, stage_list in waves:
            wave = self.pipeline.add_wave(
                planned.name, pre=[pipelines.ManualApprovalStep(
                    APPROVAL, comment="Read the synth step's diff, then approve")]
                if planned.approval else None)
            for stage in stage_list:
                wave.add_stage(stage)
        self.pipeline.build_pipeline()
        compliance.acknowledge_pipeline_stack(self, artifacts=self.artifacts, logs=logs)
        Tags.of(self).add("phi-exchange:component", "pipeline")
