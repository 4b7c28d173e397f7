"""The AWS calls a function makes with its own role, read from its code.

The access matrix must not take a role's needs from a list someone keeps by hand: this module
reads the handler's source (every client method it calls, on every code path, including the
ones a test run rarely reaches such as making room for a key or the sweep's deletions) and
maps each method to its API operation with botocore's own service models. A test cross-checks
the result against the calls a real rotation makes against moto
(``tests/security/test_role_calls.py``).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import botocore.session
from botocore import xform_name

from security.matrix_model import Part

LAMBDAS = Path(__file__).resolve().parents[1] / "lambdas"
ROTATION_SOURCES = (LAMBDAS / "key_rotation" / "rotation.py",
                    LAMBDAS / "key_rotation" / "handler.py")

# The services whose clients the rotation handler builds, and which part of the customer's
# stack each one's calls act on. STS is called only with the key under test (``sts_for_key``:
# explicit credentials, never the function's role), so it is not a call of the role.
ROTATION_SERVICES: dict[str, Part | None] = {
    "iam": Part.PARTNER_USER,
    "secretsmanager": Part.PARTNER_SECRET,
    "sns": Part.NOTICES_TOPIC,
    "sts": None,
}


class UnmappedCall(Exception):
    """A client method that no service, or more than one, of the mapping defines."""


@functools.cache
def _operations(service: str) -> dict[str, str]:
    """boto3 method name -> API operation name (``list_access_keys`` -> ``ListAccessKeys``)."""
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


def api_operations(sources: tuple[Path, ...], services: tuple[str, ...]) -> set[tuple[str, str]]:
    """(service, operation) of every client method called in ``sources``: ``x.method(...)``
    and ``x.get_paginator("method")``. A method defined by two of ``services`` is refused
    (the caller must say which), as is a paginator of a method none defines."""
    found: set[tuple[str, str]] = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method = node.func.attr
            if method == "get_paginator":
                argument = node.args[0] if node.args else None
                if not (isinstance(argument, ast.Constant) and isinstance(argument.value, str)):
                    raise UnmappedCall(f"{path}:{node.lineno}: get_paginator of a non-literal")
                method = argument.value
                owners = [s for s in services if method in _operations(s)]
                if not owners:
                    raise UnmappedCall(f"{path}:{node.lineno}: paginator {method!r} of no "
                                       f"service in {services}")
            else:
                owners = [s for s in services if method in _operations(s)]
            if len(owners) > 1:
                raise UnmappedCall(f"{path}:{node.lineno}: {method!r} is an operation of "
                                   f"{' and '.join(owners)}")
            if owners:
                found.add((owners[0], _operations(owners[0])[method]))
    return found


@functools.cache
def rotation_handler_calls() -> frozenset[tuple[str, Part]]:
    """(IAM action, part of the stack) of every call the rotation handler makes as its role."""
    calls = set()
    for service, operation in api_operations(ROTATION_SOURCES, tuple(ROTATION_SERVICES)):
        part = ROTATION_SERVICES[service]
        if part is not None:
            calls.add((f"{service}:{operation}", part))
    return frozenset(calls)
