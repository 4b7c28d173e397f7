"""Builds the CDK app for one or all customers. Receives everything; reads nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk

from stacks import compliance
from stacks.config import CustomerConfig
from stacks.customer_stack import CustomerStack

CUSTOMER_STACK_ID = "CustomerStack"


def build_customer_app(
    customers: Sequence[CustomerConfig],
    *,
    all_customers: bool = False,
    outdir: str | None = None,
    context: dict[str, Any] | None = None,
) -> cdk.App:
    """One customer: the app holds ``CustomerStack`` for it. All customers (``all_customers``):
    one stage per customer named after its slug, each holding an identical ``CustomerStack``,
    so ``cdk deploy acme/CustomerStack`` and the single-customer app produce the same template.
    """
    app = cdk.App(outdir=outdir, context=context or {})
    compliance.add_gate(app)
    if all_customers:
        for customer in customers:
            stage = cdk.Stage(app, customer.slug)
            compliance.add_gate(stage)
            CustomerStack(stage, CUSTOMER_STACK_ID, customer=customer)
    else:
        (customer,) = customers
        CustomerStack(app, CUSTOMER_STACK_ID, customer=customer)
    return app
