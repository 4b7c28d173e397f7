"""The account's roles that work with PHI: deployed once per account, first."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack, Tags
from constructs import Construct

from phi_core import naming
from phi_core.placement import Account
from stacks import compliance
from stacks.components.account_roles import AccountRoles


class AccessStack(Stack):
    """CloudFormation stack ``PhiExchange-access``: the deployment, CDK-deploy, importer,
    operator and break-glass roles (stacks/components/account_roles.py). Deployed with the CDK
    bootstrap's own roles, once per account, before the audit stack; the audit and customer
    stacks are then deployed through the deployment role it defines, and their key, bucket and
    secret policies admit these roles by name."""

    def __init__(self, scope: Construct, construct_id: str, *,
                 pipeline: Account | None = None, pipelines: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(
            scope, construct_id, stack_name=naming.ACCESS_STACK_NAME,
            description="PHI partner exchange: the roles that work with PHI (once per account)",
            **kwargs)
        roles = AccountRoles(self, "Roles", pipeline=pipeline, pipelines=pipelines)
        compliance.acknowledge_access_stack(self, roles=roles)
        Tags.of(self).add("phi-exchange:component", "access")
