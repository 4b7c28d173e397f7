"""Stack-level fixes of moto 5.2.5's CloudFormation (the resource models are in
:mod:`localaws.cfn_models`).

Gaps, and how they are filled:

- ``AWS::NoValue`` (a ``Ref``, or an ``Fn::If`` branch) inside a list stays in the list as
  ``null``; CloudFormation removes the element. The CDK bootstrap's roles got trust policies
  with ``null`` statements, which crashed every AssumeRole of them with checks on (HTTP 500).
  Filled: removed;

- a resource model that raises makes CreateStack/ExecuteChangeSet answer HTTP 500 after the
  stack was registered (the CDK CLI retries and reports "AlreadyExists"; the cause is only in
  the emulator's log). Filled: the stack fails as in AWS, ``ROLLBACK_COMPLETE`` with a
  ``CREATE_FAILED`` event naming the resource and the reason, which the CLI prints. There is
  no rollback of what was created before the failure. Describing a failed stack (its
  resources or its outputs) made moto try to create the missing resources again (HTTP 500 per
  call, which the CLI retried for a minute); a failed stack now lists what was created and
  has no outputs, as in AWS;
- a stack created through a change set (``cdk deploy``'s default) has no outputs: moto builds
  them from the empty template the stack is registered with. Filled: rebuilt after execution;
- change sets given by name are looked up by name alone, across stacks, and the CDK CLI names
  every change set ``cdk-deploy-change-set``. Filled: resolved with the request's StackName.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import moto.cloudformation.parsing as cfn_parsing
from moto.cloudformation.models import CloudFormationBackend, Event, Stack
from moto.cloudformation.responses import CloudFormationResponse
from moto.core.responses import ActionResult, EmptyResult

log = logging.getLogger("localaws")


def _nothing_after_create(stack: Stack) -> None:
    return None


# Run at the end of every stack's creation (CreateStack or a change set); may raise
# ResourceCreationFailed. Set by register().
_after_create: Callable[[Stack], None] = _nothing_after_create


# --- failures ------------------------------------------------------------------------------
# moto lets an exception from a resource model escape CreateStack as HTTP 500, after it has
# registered the stack: the CDK CLI retries and gets "AlreadyExists", and the cause is only in
# the emulator's log. As in AWS, a resource that cannot be created now fails the stack, with the
# resource's name and the reason in the stack events the CLI prints. (There is no rollback:
# resources created before the failure stay; `python -m localrun down` clears everything.)


class ResourceCreationFailed(Exception):
    def __init__(self, logical_id: str, resource_type: str, reason: str) -> None:
        super().__init__(f"{logical_id} ({resource_type}): {reason}")
        self.logical_id = logical_id
        self.resource_type = resource_type
        self.reason = reason


_moto_parse_and_create_resource = cfn_parsing.parse_and_create_resource
_moto_create_resources = Stack.create_resources
_moto_execute_change_set = CloudFormationBackend.execute_change_set


def _parse_and_create_resource(
    logical_id: str, resource_json: dict[str, Any], resources_map: Any, account_id: str,
    region_name: str,
) -> Any:
    try:
        return _moto_parse_and_create_resource(
            logical_id, resource_json, resources_map, account_id, region_name
        )
    except ResourceCreationFailed:
        raise  # a dependency failed first: report that one
    except Exception as error:
        raise ResourceCreationFailed(
            logical_id, str(resource_json.get("Type")), f"{type(error).__name__}: {error}"
        ) from error


def _fail(stack: Stack, failure: ResourceCreationFailed, status: str) -> None:
    log.error("stack %s failed: %s", stack.name, failure)
    stack.events.append(Event(
        stack_id=stack.stack_id, stack_name=stack.name,
        logical_resource_id=failure.logical_id, physical_resource_id="",
        resource_type=failure.resource_type, resource_status="CREATE_FAILED",
        resource_status_reason=failure.reason, resource_properties=None,
    ))
    stack.status = status
    stack._add_stack_event(status, resource_status_reason=str(failure))


_FAILED_STATUSES = ("ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_COMPLETE")
_moto_stack_resources = Stack.stack_resources
_moto_stack_outputs = Stack.outputs
_moto_stack_exports = Stack.exports


def _stack_outputs(self: Stack) -> Any:
    """Replaces ``Stack.outputs``: a failed stack has none (moto would create resources to
    resolve them)."""
    if self.status in _FAILED_STATUSES:
        return None
    return _moto_stack_outputs.fget(self)  # type: ignore[attr-defined]


def _stack_exports(self: Stack) -> Any:
    if self.status in _FAILED_STATUSES:
        return []
    return _moto_stack_exports.fget(self)  # type: ignore[attr-defined]


def _stack_resources(self: Stack) -> Any:
    """Replaces ``Stack.stack_resources``: a failed stack lists the resources it created, and
    never creates the others on a read (moto's resource map creates on first access)."""
    if self.status not in _FAILED_STATUSES:
        return _moto_stack_resources.fget(self)  # type: ignore[attr-defined]
    resource_map = self.resource_map
    return [resource_map._parsed_resources[logical_id]
            for logical_id in resource_map._resource_json_map
            if logical_id in resource_map._parsed_resources]


def _create_resources(self: Stack) -> None:
    """Replaces ``Stack.create_resources`` (CreateStack)."""
    try:
        _moto_create_resources(self)
        _after_create(self)
    except ResourceCreationFailed as failure:
        _fail(self, failure, "ROLLBACK_COMPLETE")


def _execute_change_set(
    self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None
) -> None:
    """Replaces ``CloudFormationBackend.execute_change_set`` (what ``cdk deploy`` calls).

    moto builds a stack's outputs when the stack is registered; a stack created through a
    change set is registered with an empty template, so it never had outputs. Rebuild them
    (and the description) from the template the change set applied.
    """
    change_set = self.change_sets.get(change_set_name) or next(
        (c for c in self.change_sets.values() if c.change_set_name == change_set_name), None
    )
    try:
        _moto_execute_change_set(self, change_set_name, stack_name)
        if change_set is not None:
            _after_create(self.stacks[change_set.stack_id])
    except ResourceCreationFailed as failure:
        assert change_set is not None  # moto raised before creating anything otherwise
        change_set.execution_status = "EXECUTE_FAILED"
        _fail(self.stacks[change_set.stack_id], failure,
              "ROLLBACK_COMPLETE" if change_set.change_set_type == "CREATE"
              else "UPDATE_ROLLBACK_COMPLETE")
        return
    if change_set is not None:
        stack = self.stacks[change_set.stack_id]
        stack._parse_template()
        stack.output_map = stack._create_output_map()
        stack.description = stack.template_dict.get("Description")


# --- change sets by stack -------------------------------------------------------------------
# moto finds a change set given by name by its name alone, across all stacks, and the CDK CLI
# names every change set "cdk-deploy-change-set": with the bootstrap stack and a customer stack
# in one emulator, DescribeChangeSet/ExecuteChangeSet/DeleteChangeSet can act on the other
# stack's change set. Resolve (name, StackName) to the change set's ARN first.


def _change_set_key(backend: CloudFormationBackend, name: str, stack_name: str | None) -> str:
    if name in backend.change_sets:
        return name  # already an ARN
    matches = [key for key, change_set in backend.change_sets.items()
               if change_set.change_set_name == name
               and stack_name in (None, change_set.stack_name, change_set.stack_id)]
    return matches[-1] if matches else name


def _describe_change_set(self: CloudFormationResponse) -> ActionResult:
    key = _change_set_key(self.cloudformation_backend, self._get_param("ChangeSetName"),
                          self._get_param("StackName"))
    return ActionResult(self.cloudformation_backend.describe_change_set(change_set_name=key))


def _delete_change_set(self: CloudFormationResponse) -> EmptyResult:
    key = _change_set_key(self.cloudformation_backend, self._get_param("ChangeSetName"),
                          self._get_param("StackName"))
    self.cloudformation_backend.delete_change_set(change_set_name=key)
    return EmptyResult()


def _execute_change_set_request(self: CloudFormationResponse) -> EmptyResult:
    stack_name = self._get_param("StackName")
    key = _change_set_key(self.cloudformation_backend, self._get_param("ChangeSetName"),
                          stack_name)
    self.cloudformation_backend.execute_change_set(stack_name=stack_name, change_set_name=key)
    return EmptyResult()


# --- registration -------------------------------------------------------------------------


_moto_clean_json = cfn_parsing.clean_json


def _clean_json(resource_json: Any, resources_map: Any) -> Any:
    """Replaces moto's ``clean_json``: an element of a list that resolves to ``AWS::NoValue``
    (``Ref`` or an ``Fn::If`` branch) is removed, as CloudFormation does; moto kept it as
    ``null`` (the CDK bootstrap roles' trust policies got ``null`` statements)."""
    if isinstance(resource_json, list):
        cleaned = [_clean_json(value, resources_map) for value in resource_json]
        return [value for source, value in zip(resource_json, cleaned, strict=True)
                if not (value is None and isinstance(source, dict))]
    return _moto_clean_json(resource_json, resources_map)


def register(*, after_create: Callable[[Stack], None]) -> None:
    """Patch moto's CloudFormation with the fixes above (idempotent). ``after_create`` runs at
    the end of every stack's creation and may fail it with :class:`ResourceCreationFailed`."""
    global _after_create
    _after_create = after_create
    # ResourceMap.__getitem__ calls this module-level function by name; clean_json calls
    # itself by its module-level name too.
    cfn_parsing.parse_and_create_resource = _parse_and_create_resource
    cfn_parsing.clean_json = _clean_json
    Stack.create_resources = _create_resources  # type: ignore[method-assign]
    Stack.stack_resources = property(_stack_resources)  # type: ignore[method-assign,assignment]
    Stack.outputs = property(_stack_outputs)  # type: ignore[method-assign,assignment]
    Stack.exports = property(_stack_exports)  # type: ignore[method-assign,assignment]
    CloudFormationBackend.execute_change_set = _execute_change_set  # type: ignore[method-assign]
    CloudFormationResponse.describe_change_set = _describe_change_set  # type: ignore[method-assign]
    CloudFormationResponse.delete_change_set = _delete_change_set  # type: ignore[method-assign]
    CloudFormationResponse.execute_change_set = (  # type: ignore[method-assign]
        _execute_change_set_request
    )
