"""A deployed customer stack's outputs, read from CloudFormation or from the ``cdk deploy
--outputs-file`` JSON, validated, and checked against the registry.

The onboarding kit, offboarding and status all start from the same facts: which bucket, region,
account and key a customer's stack created, and which prefixes and access mode it grants. The
schema is the core's (:mod:`phi_core.outputs`); this module reads it from AWS or a file and
compares it with the registry. Nothing here imports CDK.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from phi_core import naming
from phi_core.outputs import OutputsError, StackOutputs, outputs_of_stack, parse_stack_outputs
from stacks.config import AccessMode, CustomerConfig


class LifecycleError(Exception):
    """An expected refusal or failure of onboard, offboard or status: one line, exit status 1."""


def parse_outputs(outputs: Mapping[str, Any], *, source: str) -> StackOutputs:
    """Validate a stack's outputs (:func:`phi_core.outputs.parse_stack_outputs`); one
    :class:`LifecycleError` names every problem."""
    try:
        return parse_stack_outputs(outputs, source=source)
    except OutputsError as err:
        raise LifecycleError(str(err)) from None


def read_outputs_file(path: Path, slug: str) -> StackOutputs:
    """The outputs of stack ``PhiExchange-<slug>`` in a ``cdk deploy --outputs-file`` JSON."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LifecycleError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LifecycleError(f"{path} is not a cdk outputs JSON file ({err})") from None
    stack = naming.stack_name(slug)
    if not isinstance(document, dict):
        raise LifecycleError(f"{path} is not a cdk outputs JSON file (not an object)")
    try:
        outputs = outputs_of_stack(document, stack, source=str(path))
    except OutputsError as err:
        raise LifecycleError(f"{path} has " + "; ".join(err.problems)) from None
    return parse_outputs(outputs, source=f"{path}, stack {stack}")


def describe_outputs(cloudformation: Any, slug: str) -> StackOutputs | None:
    """The deployed stack's outputs, or ``None`` when stack ``PhiExchange-<slug>`` does not
    exist. A stack that exists but is not in a usable state is refused."""
    stack_name = naming.stack_name(slug)
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as err:
        message = str(err.response.get("Error", {}).get("Message", ""))
        if "does not exist" in message:
            return None
        raise
    stack = stacks[0]
    status = str(stack.get("StackStatus", ""))
    if status.endswith("_IN_PROGRESS") and not status.startswith("UPDATE"):
        raise LifecycleError(f"stack {stack_name} is {status}: wait until it completes")
    if status in ("CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_COMPLETE"):
        raise LifecycleError(f"stack {stack_name} is {status}: deploy it first")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return parse_outputs(outputs, source=f"stack {stack_name}")


def identity_mismatches(customer: CustomerConfig, outputs: StackOutputs) -> list[str]:
    """Whether the stack is this customer's, with its access mode: what offboarding needs to
    know what to revoke."""
    problems = []
    if outputs.slug != customer.slug:
        problems.append(f"the stack is for customer {outputs.slug!r}, not {customer.slug!r}")
    if outputs.access is not customer.access:
        problems.append(f"the stack grants access = '{outputs.access.value}', the registry says "
                        f"'{customer.access.value}'")
    return problems


def registry_mismatches(customer: CustomerConfig, outputs: StackOutputs) -> list[str]:
    """Where the deployed stack disagrees with the registry (the source of truth): a stack not
    yet deployed with the registry's current settings."""
    problems = identity_mismatches(customer, outputs)
    if outputs.directions != customer.directions:
        deployed = ", ".join(d.value for d in outputs.directions)
        wanted = ", ".join(d.value for d in customer.directions)
        problems.append(f"the stack grants directions [{deployed}], the registry says [{wanted}]")
    if (customer.access is AccessMode.ASSUME_ROLE
            and outputs.external_id != customer.external_id):
        problems.append("the stack's external id differs from the registry's")
    return problems


def require_current(customer: CustomerConfig, outputs: StackOutputs) -> None:
    """Refuse to act on a stack that does not match the registry: deploy first."""
    problems = registry_mismatches(customer, outputs)
    if problems:
        raise LifecycleError(
            f"{outputs.source} does not match {customer.source_file or 'the registry'}: "
            + "; ".join(problems)
            + f". Deploy first: cdk deploy CustomerStack -c customer={customer.slug}")
