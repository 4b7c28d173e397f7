"""The account's roles that work with PHI, each least-privilege (phi_core.account_roles)."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from phi_core import account_roles, naming
from phi_core.placement import Account

MAX_SESSION = Duration.hours(1)


class AccountRoles(Construct):
    """Creates the deployment role CloudFormation uses for the audit and customer stacks, the
    role the CDK CLI assumes to hand it over, the importer, the operator and break-glass, each
    with one managed policy built from the core's statements (never inline).

    Trust: CloudFormation for the deployment role; for the others, principals of this account
    that carry the role's tag (``phi-exchange:importer = true``, ...): whoever runs the
    importer, the operator's CLI or a deploy is tagged for it by whoever manages IAM;
    break-glass also only with MFA. Every break-glass use is alarmed by the audit stack
    (docs/security.md).
    """

    def __init__(self, scope: Construct, construct_id: str, *,
                 pipeline: Account | None = None, pipelines: int = 1) -> None:
        """``pipeline``: the pipeline's account, when CDK pipelines (``pipelines`` of them)
        deploy this account; the CDK-deploy role then also trusts their roles and may read
        their artifacts."""
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        where = {"partition": stack.partition, "region": stack.region,
                 "account": stack.account}
        names = account_roles.Roles(account=stack.account, partition=stack.partition)
        self.policies: dict[str, iam.ManagedPolicy] = {}
        self.deployment = self._role(
            "Deployment", naming.DEPLOYMENT_ROLE_NAME,
            "CloudFormation deploys the audit and customer stacks with this role",
            iam.ServicePrincipal("cloudformation.amazonaws.com"),
            account_roles.deployment_statements(**where))
        deployer: iam.IPrincipal = _tagged(naming.CDK_DEPLOY_ROLE_NAME)
        cdk_deploy = account_roles.cdk_deploy_statements(**where,
                                                         deployment_role=names.deployment)
        if pipeline is not None:
            assert pipeline.account_id is not None and pipeline.region is not None
            deployer = iam.CompositePrincipal(deployer, iam.AccountPrincipal(
                pipeline.account_id).with_conditions(account_roles.pipeline_trust_conditions(
                    partition=stack.partition, pipeline_account=pipeline.account_id,
                    pipelines=pipelines)))
            cdk_deploy += account_roles.pipeline_deploy_statements(
                partition=stack.partition, pipeline_account=pipeline.account_id,
                pipeline_region=pipeline.region, pipelines=pipelines)
        self.cdk_deploy = self._role(
            "CdkDeploy", naming.CDK_DEPLOY_ROLE_NAME,
            "The CDK CLI assumes this role to deploy the audit and customer stacks",
            deployer, cdk_deploy)
        self.importer = self._role(
            "Importer", naming.IMPORTER_ROLE_NAME,
            "Reads every customer's inbound files and consumes the ingestion queue",
            _tagged(naming.IMPORTER_ROLE_NAME),
            account_roles.importer_statements(**where, url_suffix=stack.url_suffix))
        self.operator = self._role(
            "Operator", naming.OPERATOR_ROLE_NAME,
            "Writes outbound files; status, onboarding, rotation and hand-over commands",
            _tagged(naming.OPERATOR_ROLE_NAME),
            account_roles.operator_statements(**where, url_suffix=stack.url_suffix))
        self.break_glass = iam.Role(
            self, "BreakGlass", role_name=naming.BREAK_GLASS_ROLE_NAME,
            description="Everything, in an emergency: only with MFA, every use alarmed",
            assumed_by=_tagged(naming.BREAK_GLASS_ROLE_NAME, mfa=True),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(
                "AdministratorAccess")],
            max_session_duration=MAX_SESSION,
        )

    def _role(self, construct_id: str, name: str, purpose: str, principal: iam.IPrincipal,
              statements: list[dict]) -> iam.Role:
        policy = iam.ManagedPolicy(
            self, f"{construct_id}Policy", description=purpose,
            statements=[iam.PolicyStatement.from_json(s) for s in statements])
        self.policies[construct_id] = policy
        return iam.Role(self, construct_id, role_name=name, description=purpose,
                        assumed_by=principal, managed_policies=[policy],
                        max_session_duration=MAX_SESSION)


def _tagged(role_name: str, *, mfa: bool = False) -> iam.IPrincipal:
    return iam.AccountRootPrincipal().with_conditions(
        account_roles.trust_conditions(role_name, mfa=mfa))
