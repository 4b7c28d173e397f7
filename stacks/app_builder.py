"""Builds the CDK app: the audit stack, plus one or all customers. Receives everything; reads
nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from stacks import compliance
from stacks.audit_stack import AuditStack
from stacks.config import AuditSettings, CustomerConfig, RegistryError
from stacks.customer_stack import CustomerStack

CUSTOMER_STACK_ID = "CustomerStack"
AUDIT_STACK_ID = "AuditStack"


def build_app(
    customers: Sequence[CustomerConfig],
    *,
    audit_settings: AuditSettings | None = None,
    all_customers: bool = False,
    outdir: str | None = None,
    context: dict[str, Any] | None = None,
) -> cdk.App:
    """The app always holds ``AuditStack`` (deployed once per account and region).

    One customer: the app also holds ``CustomerStack`` for it. All customers
    (``all_customers``): one stage per customer named after its slug, each holding an identical
    ``CustomerStack``, so ``cdk deploy acme/CustomerStack`` and the single-customer app produce
    the same template. No customers: the audit stack alone.
    """
    app = cdk.App(outdir=outdir, context=context or {})
    compliance.add_gate(app)
    AuditStack(app, AUDIT_STACK_ID, settings=audit_settings or AuditSettings())
    problems: list[str] = []
    for customer in customers if all_customers else customers[:1]:
        # The app's gate also validates every stack of its nested stages: a second gate on the
        # stage would run every pack twice (measured: double the validation time).
        scope: Construct = cdk.Stage(app, customer.slug) if all_customers else app
        try:
            CustomerStack(scope, CUSTOMER_STACK_ID, customer=customer)
        except RegistryError as err:  # e.g. a policy over its AWS size limit
            problems.extend(err.problems)
    if problems:
        raise RegistryError(problems)
    return app
