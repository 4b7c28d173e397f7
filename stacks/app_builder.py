"""Builds the CDK app: the audit stack, plus one or all customers. Receives everything; reads
nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from phi_core import naming
from phi_core.placement import Account, Accounts, Placement
from stacks import compliance
from stacks.access_stack import AccessStack
from stacks.audit_stack import AuditStack
from stacks.components.audit_trail import CentralEvidence
from stacks.config import AuditSettings, CustomerConfig, RegistryError
from stacks.customer_stack import CustomerStack
from stacks.log_archive_stack import LogArchiveStack

CUSTOMER_STACK_ID = "CustomerStack"
AUDIT_STACK_ID = "AuditStack"
ACCESS_STACK_ID = "AccessStack"
LOG_ARCHIVE_STACK_ID = "LogArchiveStack"
PIPELINE_STACK_ID = "PipelineStack"


def through_deployment_role() -> cdk.DefaultStackSynthesizer:
    """The audit and customer stacks are deployed by the CDK CLI through our CDK-deploy role,
    which hands them to CloudFormation's deployment role (both in PhiExchange-access): the
    resource policies exempt exactly that role from their guards. Assets still go through the
    CDK bootstrap's bucket and publishing role."""
    role = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/"
    return cdk.DefaultStackSynthesizer(
        deploy_role_arn=role + naming.CDK_DEPLOY_ROLE_NAME,
        cloud_formation_execution_role=role + naming.DEPLOYMENT_ROLE_NAME)


def _env(placement: Placement | None, slug: str) -> cdk.Environment | None:
    if placement is None or slug not in placement.where:
        return None
    account = placement.account_of(slug)
    if account.account_id is None:
        return None
    return cdk.Environment(account=account.account_id, region=account.region)


def _pipeline_account(accounts: Accounts | None) -> Account | None:
    return accounts.pipeline.account if accounts and accounts.pipeline else None


def _trails(accounts: Accounts) -> dict[str, list[str]]:
    """Exchange account id -> the ARNs of our trail there (one per region it is listed in)."""
    trails: dict[str, list[str]] = {}
    for account in accounts.exchange:
        assert account.account_id is not None and account.region is not None
        trails.setdefault(account.account_id, []).append(
            naming.trail_arn(account.partition, account.region, account.account_id))
    return trails


def _central_evidence(accounts: Accounts) -> CentralEvidence | None:
    archive = accounts.log_archive
    if archive is None:
        return None
    assert archive.account_id is not None and archive.region is not None
    return CentralEvidence(
        bucket_name=naming.evidence_bucket_name(archive.account_id, archive.region),
        key_arn=f"arn:{archive.partition}:kms:{archive.region}:{archive.account_id}:"
                f"{naming.EVIDENCE_KEY_ALIAS}")


def build_pipeline_app(
    customers: Sequence[CustomerConfig],
    placement: Placement,
    *,
    audit_settings: AuditSettings | None = None,
    outdir: str | None = None,
    context: dict[str, Any] | None = None,
    numbers: Sequence[int] | None = None,
    template_validation: bool = True,
) -> cdk.App:
    """The app of ``cdk deploy PipelineStack -c pipeline=1``: the pipeline stacks
    (``PipelineStack``, ``PipelineStack-2``... one per ``pipeline`` number of the exchange
    accounts) and their waves (:func:`stacks.pipeline_stack.wave_plan`), each customer deployed
    to its placed account. The compliance gate runs on every stack of every stage. ``numbers``:
    only those pipelines (a shard synthesized in its own process). ``template_validation``:
    the CDK's CloudFormation template validation (app.py says where it runs)."""
    from stacks.pipeline_stack import (
        ExchangeAccountStage,
        LogArchiveStage,
        PipelineStack,
        wave_plan,
    )

    accounts = placement.accounts
    if accounts.pipeline is None:
        raise RegistryError([f"{accounts.source or 'accounts.toml'}: pipeline: required for "
                             "-c pipeline=1 (label, account_id, region, repository, branch, "
                             "connection_arn)"])
    home = accounts.pipeline.account.region
    elsewhere = [a for a in (*accounts.exchange, accounts.log_archive)
                 if a is not None and a.region != home]
    if elsewhere:
        # CodePipeline deploys to another region only through a replication bucket and key
        # there (a support stack per region): not built.
        raise RegistryError([
            f"{accounts.source or 'accounts.toml'}: pipeline.region: the pipeline deploys only "
            f"to its own region ({home}); {a.label} is in {a.region}" for a in elsewhere])
    app = cdk.App(outdir=outdir, context=context or {},
                  builtin_cloud_formation_validation=template_validation)
    compliance.add_gate(app)
    settings = audit_settings or AuditSettings()
    central = _central_evidence(accounts)
    by_slug = {c.slug: c for c in customers}
    for number in numbers or range(1, accounts.pipelines + 1):
        try:
            plan = wave_plan(accounts, placement.where, number)
        except ValueError as err:
            raise RegistryError([f"{accounts.source or 'accounts.toml'}: {err}"]) from None
        waves: list[tuple[Any, list[cdk.Stage]]] = []
        for planned in plan:
            built: list[cdk.Stage] = []
            for stage in planned.stages:
                if stage.account is accounts.log_archive:
                    built.append(LogArchiveStage(app, stage.account, settings=settings,
                                                 trails=_trails(accounts),
                                                 synthesizer=through_deployment_role))
                else:
                    built.append(ExchangeAccountStage(
                        app, stage, settings=settings, central=central,
                        customers=[by_slug[slug] for slug in stage.customers],
                        synthesizer=through_deployment_role))
            waves.append((planned, built))
        # The CDK bootstrap's roles deploy the pipeline (and its self-mutation): the account
        # roles' deployment role may only create what the PHI stacks need.
        PipelineStack(app, pipeline_stack_id(number), accounts=accounts, waves=waves,
                      number=number)
    return app


def pipeline_stack_id(number: int) -> str:
    return PIPELINE_STACK_ID if number == 1 else f"{PIPELINE_STACK_ID}-{number}"


def build_app(
    customers: Sequence[CustomerConfig],
    *,
    audit_settings: AuditSettings | None = None,
    all_customers: bool = False,
    outdir: str | None = None,
    context: dict[str, Any] | None = None,
    placement: Placement | None = None,
    accounts: Accounts | None = None,
    account_stacks: bool = True,
    template_validation: bool = True,
) -> cdk.App:
    """The app always holds ``AccessStack`` (the account's roles, deployed once per account,
    first) and ``AuditStack`` (once per account and region).

    One customer: the app also holds ``CustomerStack`` for it. All customers
    (``all_customers``): one stage per customer named after its slug, each holding an identical
    ``CustomerStack``, so ``cdk deploy acme/CustomerStack`` and the single-customer app produce
    the same template. No customers: the audit stack alone.

    ``placement`` gives each customer stack the account and region it is placed in (its
    ``env``); without it, or in the implicit account, the stack is environment-agnostic and
    deploys where the CLI's credentials point. When ``accounts`` (or the placement's) names a
    log-archive account, the app also holds ``LogArchiveStack`` there, and the audit stack's
    trail delivers to it.

    ``account_stacks=False`` leaves those out: a shard of the customers synthesized in another
    process (:mod:`stacks.assembly_shards`) holds only their stages. ``template_validation``:
    the CDK's CloudFormation template validation (app.py says where it runs).
    """
    app = cdk.App(outdir=outdir, context=context or {},
                  builtin_cloud_formation_validation=template_validation)
    compliance.add_gate(app)
    settings = audit_settings or AuditSettings()
    accounts = accounts or (placement.accounts if placement else None)
    if account_stacks:
        AccessStack(app, ACCESS_STACK_ID, pipeline=_pipeline_account(accounts),
                    pipelines=accounts.pipelines if accounts else 1)
        central = None
        if accounts is not None and accounts.log_archive is not None:
            archive = accounts.log_archive
            LogArchiveStack(app, LOG_ARCHIVE_STACK_ID, settings=settings,
                            trails=_trails(accounts), synthesizer=through_deployment_role(),
                            env=cdk.Environment(account=archive.account_id,
                                                region=archive.region))
            central = _central_evidence(accounts)
        AuditStack(app, AUDIT_STACK_ID, settings=settings, central=central,
                   synthesizer=through_deployment_role())
    problems: list[str] = []
    for customer in customers if all_customers else customers[:1]:
        # The app's gate also validates every stack of its nested stages: a second gate on the
        # stage would run every pack twice (measured: double the validation time).
        scope: Construct = cdk.Stage(app, customer.slug) if all_customers else app
        try:
            CustomerStack(scope, CUSTOMER_STACK_ID, customer=customer,
                          synthesizer=through_deployment_role(),
                          env=_env(placement, customer.slug))
        except RegistryError as err:  # e.g. a policy over its AWS size limit
            problems.extend(err.problems)
    if problems:
        raise RegistryError(problems)
    return app
