"""The CDK pipeline that deploys registry changes: one stage per account, in waves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import Duration, RemovalPolicy, Tags, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from phi_core import naming
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
# of every stack against what is deployed, for the reviewer of the approval.
SYNTH_COMMANDS = (
    "make test",
    "node_modules/.bin/cdk synth -c pipeline=1 --no-notices --quiet",
    "node_modules/.bin/cdk diff -c pipeline=1 --no-notices '**'",
)
APPROVAL = "ApproveProduction"
ARTIFACT_DAYS = 90  # a run's artifacts are rebuilt by the next run


def wave_plan(accounts: Accounts) -> list[tuple[str, list[Account], bool]]:
    """(wave name, accounts, approval first) in deployment order: the log-archive account
    (its bucket must admit every trail before the trails exist), then the exchange accounts
    marked ``production = false``, then, after a manual approval, the production ones."""
    waves: list[tuple[str, list[Account], bool]] = []
    if accounts.log_archive is not None:
        waves.append(("log-archive", [accounts.log_archive], False))
    staging = [a for a in accounts.exchange if not a.production]
    production = [a for a in accounts.exchange if a.production]
    if staging:
        waves.append(("staging", staging, False))
    if production:
        waves.append(("production", production, True))
    return waves


def _env(account: Account) -> cdk.Environment:
    return cdk.Environment(account=account.account_id, region=account.region)


class ExchangeAccountStage(cdk.Stage):
    """One exchange account's stacks the pipeline deploys: its audit stack, then its
    customers' stacks (each named as the CLI names it, so the pipeline and ``cdk deploy``
    manage the same CloudFormation stacks). Its ``AccessStack`` is never deployed by the
    pipeline: who may reach PHI is changed by an administrator, by hand."""

    def __init__(self, scope: Construct, account: Account, *, settings: AuditSettings,
                 central: CentralEvidence | None, customers: Sequence[CustomerConfig],
                 synthesizer: Any) -> None:
        super().__init__(scope, account.label, env=_env(account))
        audit = AuditStack(self, "AuditStack", settings=settings, central=central,
                           synthesizer=synthesizer())
        for customer in customers:
            stack = CustomerStack(self, f"Customer-{customer.slug}", customer=customer,
                                  synthesizer=synthesizer())
            stack.add_dependency(audit)  # the ingestion queue exists before the first rule


class LogArchiveStage(cdk.Stage):
    def __init__(self, scope: Construct, account: Account, *, settings: AuditSettings,
                 trails: Mapping[str, Sequence[str]], synthesizer: Any) -> None:
        super().__init__(scope, account.label, env=_env(account))
        LogArchiveStack(self, "LogArchiveStack", settings=settings, trails=trails,
                        synthesizer=synthesizer())


class PipelineStack(cdk.Stack):
    """CloudFormation stack ``PhiExchange-pipeline``, in the pipeline's account.

    Source: the repository and branch of ``[pipeline]`` in ``accounts.toml``, through a
    CodeConnections connection. Synth: :data:`SYNTH_COMMANDS` (the tests, the compliance gate,
    the synth, a diff). Then :func:`wave_plan`'s waves, one stage per account. A merged pull
    request that adds one customer file changes one stage's template, its account's.

    The pipeline does not update itself (no self-mutation): its own changes are deployed by an
    operator (``cdk deploy PipelineStack -c pipeline=1``), so a change in the repository can
    never widen what the pipeline may do without a person. Each account's CDK-deploy role
    trusts exactly this stack's pipeline role (``AccessStack`` there, deployed first).
    """

    def __init__(self, scope: Construct, construct_id: str, *, accounts: Accounts,
                 stages: Sequence[tuple[str, list[cdk.Stage], bool]], **kwargs: Any) -> None:
        pipeline_config = accounts.pipeline
        assert pipeline_config is not None
        home = pipeline_config.account
        super().__init__(scope, construct_id, stack_name=naming.PIPELINE_STACK_NAME,
                         description="PHI partner exchange: the pipeline that deploys the "
                         "registry to every account", env=_env(home), **kwargs)
        assert home.account_id is not None and home.region is not None
        key = kms.Key(self, "ArtifactKey", alias=naming.PIPELINE_ARTIFACT_KEY_ALIAS,
                      description="Encrypts the pipeline's artifacts (templates, assets)",
                      enable_key_rotation=True, removal_policy=RemovalPolicy.RETAIN)
        logs = secure_bucket(self, "ArtifactAccessLogs", key=None, lifecycle_rules=[
            s3.LifecycleRule(id="RetainAccessLogs",
                             expiration=Duration.days(ACCESS_LOG_RETENTION_DAYS))])
        self.artifacts = secure_bucket(
            self, "Artifacts", key=key,
            bucket_name=naming.pipeline_artifact_bucket_name(home.account_id, home.region),
            access_logs=(logs, "artifacts/"),
            lifecycle_rules=[s3.LifecycleRule(
                id="ExpireOldRuns", expiration=Duration.days(ARTIFACT_DAYS),
                noncurrent_version_expiration=Duration.days(ARTIFACT_DAYS))])
        self.role = iam.Role(self, "PipelineRole", role_name=naming.PIPELINE_ROLE_NAME,
                             assumed_by=iam.ServicePrincipal("codepipeline.amazonaws.com"),
                             description="CodePipeline runs the exchange's pipeline as this "
                             "role; each account's CDK-deploy role trusts it")
        source = pipelines.CodePipelineSource.connection(
            pipeline_config.repository, pipeline_config.branch,
            connection_arn=pipeline_config.connection_arn)
        targets = sorted({a.account_id for _, accs, _ in wave_plan(accounts) for a in accs
                          if a.account_id})
        synth = pipelines.CodeBuildStep(
            "Synth", input=source, commands=list(SYNTH_COMMANDS),
            primary_output_directory="cdk.out",
            # `cdk diff` reads each account's deployed stacks through its CDK lookup role.
            role_policy_statements=[iam.PolicyStatement(
                actions=["sts:AssumeRole"],
                resources=[f"arn:{self.partition}:iam::{t}:role/cdk-*-lookup-role-{t}-*"
                           for t in targets])])
        self.pipeline = pipelines.CodePipeline(
            self, "Pipeline", pipeline_name=naming.PROJECT, synth=synth, role=self.role,
            artifact_bucket=self.artifacts, self_mutation=False, use_change_sets=True,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                    compute_type=codebuild.ComputeType.LARGE)))
        for name, stage_list, approval in stages:
            wave = self.pipeline.add_wave(
                name, pre=[pipelines.ManualApprovalStep(
                    APPROVAL, comment="Review the synth step's diff, then approve")]
                if approval else None)
            for stage in stage_list:
                wave.add_stage(stage)
        self.pipeline.build_pipeline()
        compliance.acknowledge_pipeline_stack(self, artifacts=self.artifacts, logs=logs)
        Tags.of(self).add("phi-exchange:component", "pipeline")
