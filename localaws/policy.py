"""An IAM policy evaluator with request context, for the emulator's S3 permission checks.

moto 5.2.5 evaluates policies without request context: of the condition operators it knows
only ``StringEquals`` (every other operator counts as satisfied), it has no values for keys such
as ``aws:SecureTransport``, and a statement whose condition fails is a *deny*, even an Allow.
So a TLS-only bucket policy refuses every object call, and condition-scoped identity policies
are ignored. This module evaluates one policy document the way AWS documents it, for the
operators and keys our templates use, so that :mod:`localaws.permissions` can give S3 real answers.

Semantics (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html):

- a statement applies when its action, resource, principal *and* every condition match;
  an applicable Deny wins over any Allow, an Allow makes the result ``ALLOW``, otherwise
  ``NOT_APPLICABLE`` (implicit deny);
- within a condition block: operators AND, keys AND, values of one key OR; a negated operator
  (``StringNotEquals``...) matches when the request value equals none of the listed values;
- a key absent from the request: positive operators do not match, negated operators match,
  ``...IfExists`` operators match, ``Null`` tests presence;
- condition key names are case-insensitive, actions are case-insensitive, ARNs and values are
  case-sensitive (except the ``IgnoreCase`` operators);
- an operator this module does not implement makes the statement *fail closed*: a Deny applies,
  an Allow does not. :func:`unsupported_operators` lists them so tests can prove there are none
  in our templates.

Principals (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html):
``"*"`` and ``{"AWS": "*"}`` name everyone, service principals included; ``{"AWS": <account id
or :root ARN>}`` every principal of that account; ``{"AWS": <role ARN>}`` every session of that
role (what AWS matches through the role's unique id); ``{"AWS": <user or session ARN>}`` that
one; ``{"Service": <name>}`` that AWS service acting on its own behalf (``Request.service``:
CloudTrail delivering logs, EventBridge sending to a queue, Lambda assuming its role).

Not implemented (not used by our templates): ``ForAllValues:``/``ForAnyValue:`` set operators
(multi-valued request keys match if any value matches), policy variables (``${aws:username}``),
``Date*`` and ``Binary*`` operators, ``NotPrincipal`` (our policies never use it).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"  # an applicable Deny statement: nothing can override it
    NOT_APPLICABLE = "not-applicable"  # no statement applies: denied unless allowed elsewhere


@dataclass(frozen=True)
class Request:
    """What the policy is asked about.

    ``principal`` is the caller's ARN as STS reports it (an IAM user, an assumed-role session
    ``arn:aws:sts::<account>:assumed-role/<role>/<session>``, or an account's ``:root``);
    ``role_arn`` (default none) the role of a session, which a policy naming the role matches;
    ``service`` (default none) a service principal acting on its own behalf, instead of a
    caller. ``context`` maps condition keys (any case) to the request's values.
    """

    action: str
    resource: str
    principal: str | None = None
    context: Mapping[str, Sequence[str]] = field(default_factory=dict)
    role_arn: str | None = None
    service: str | None = None

    def value(self, key: str) -> list[str] | None:
        wanted = key.lower()
        for name, values in self.context.items():
            if name.lower() == wanted:
                return list(values)
        return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _text(value: Any) -> str:
    # Policy JSON may carry booleans and numbers (CDK writes 1.2 for s3:TlsVersion).
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _wildcard(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcards: ``*`` any run of characters, ``?`` one character, nothing else special."""
    regex = "".join(
        ".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern
    )
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.fullmatch(regex, value, flags) is not None


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _in_network(value: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def _arn_like(pattern: str, value: str) -> bool:
    # ARN operators compare the six colon-separated parts one by one, with wildcards in each.
    pattern_parts = pattern.split(":", 5)
    value_parts = value.split(":", 5)
    if len(pattern_parts) != 6 or len(value_parts) != 6:
        return False
    return all(_wildcard(p, v) for p, v in zip(pattern_parts, value_parts, strict=True))


_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "NumericEquals": lambda a, b: a == b,
    "NumericLessThan": lambda a, b: a < b,
    "NumericLessThanEquals": lambda a, b: a <= b,
    "NumericGreaterThan": lambda a, b: a > b,
    "NumericGreaterThanEquals": lambda a, b: a >= b,
}

def _numeric(compare: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def match(value: str, pattern: str) -> bool:
        a, b = _number(value), _number(pattern)
        return a is not None and b is not None and compare(a, b)

    return match


# Positive operators: value (from the request) matches pattern (from the policy).
_POSITIVE: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda v, p: v == p,
    "StringEqualsIgnoreCase": lambda v, p: v.lower() == p.lower(),
    "StringLike": lambda v, p: _wildcard(p, v),
    "ArnEquals": lambda v, p: _arn_like(p, v),  # AWS treats ArnEquals and ArnLike alike
    "ArnLike": lambda v, p: _arn_like(p, v),
    "Bool": lambda v, p: v.lower() == p.lower(),
    "IpAddress": _in_network,  # (address, network)
    **{name: _numeric(compare) for name, compare in _NUMERIC.items()},
}

# Negated operators and the positive operator they negate.
_NEGATED: dict[str, str] = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NotIpAddress": "IpAddress",
    "NumericNotEquals": "NumericEquals",
}


def is_supported(operator: str) -> bool:
    base = operator.removesuffix("IfExists")
    return base in _POSITIVE or base in _NEGATED or operator == "Null"


def unsupported_operators(document: Mapping[str, Any]) -> set[str]:
    """Condition operators in ``document`` this evaluator does not implement."""
    found: set[str] = set()
    for statement in _as_list(document.get("Statement")):
        for operator in (statement.get("Condition") or {}):
            if not is_supported(operator):
                found.add(operator)
    return found


class _Unsupported(Exception):
    pass


def _key_matches(operator: str, request_values: list[str] | None, policy_values: list[str]) -> bool:
    if operator == "Null":
        # "true": the key must be absent; "false": it must be present.
        absent = not request_values
        return any((p.lower() == "true") == absent for p in policy_values)
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if not request_values:
        return if_exists or base in _NEGATED
    if base in _NEGATED:
        positive = _POSITIVE[_NEGATED[base]]
        return all(not positive(v, p) for v in request_values for p in policy_values)
    if base in _POSITIVE:
        positive = _POSITIVE[base]
        return any(positive(v, p) for v in request_values for p in policy_values)
    raise _Unsupported(operator)


def _conditions_match(condition: Mapping[str, Any] | None, request: Request) -> bool:
    for operator, keys in (condition or {}).items():
        if not is_supported(operator):
            raise _Unsupported(operator)
        for key, expected in keys.items():
            policy_values = [_text(v) for v in _as_list(expected)]
            if not _key_matches(operator, request.value(key), policy_values):
                return False
    return True


def _principal_matches(principal: Any, request: Request, *, via_account: bool = True) -> bool:
    """Whether the Principal element names the request's caller (or service). With
    ``via_account`` False, naming the caller's account does not count."""
    if principal is None:
        return True  # identity policies have no Principal element: they apply to their holder
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    caller = request.principal
    for kind, values in principal.items():
        for value in _as_list(values):
            if kind == "AWS" and value == "*":
                return True
            if kind == "Service" and request.service is not None and value == request.service:
                return True
            if caller is None or kind != "AWS":
                continue
            if value in (caller, request.role_arn):
                return True
            if via_account and _account_root_matches(value, caller):
                return True
    return False


def _account_root_matches(value: str, caller: str) -> bool:
    """``123456789012`` or ``arn:aws:iam::123456789012:root`` names every principal of that
    account (whose own policies must then also allow it)."""
    caller_account = caller.split(":")[4] if caller.count(":") >= 5 else None
    if re.fullmatch(r"\d{12}", value):
        return value == caller_account
    parts = value.split(":")
    return len(parts) == 6 and parts[5] == "root" and parts[4] == caller_account


def _element_matches(
    statement: Mapping[str, Any], name: str, value: str, *, ignore_case: bool
) -> bool:
    """``Action``/``NotAction`` or ``Resource``/``NotResource`` against one request value."""
    for element, positive in ((name, True), (f"Not{name}", False)):
        if element in statement:
            hit = any(
                _wildcard(_text(p), value, ignore_case=ignore_case)
                for p in _as_list(statement[element])
            )
            return hit if positive else not hit
    # A statement without an action applies to nothing; one without a resource (trust
    # policies) to every resource.
    return name == "Resource"


def statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    """Whether ``statement`` applies to ``request`` (effect aside). Raises nothing: an
    unsupported operator is reported as "applies" for a Deny and "does not" for an Allow."""
    if "NotPrincipal" in statement:
        # Never used by our policies (see README); fail closed.
        return statement.get("Effect") == "Deny"
    if not _principal_matches(statement.get("Principal"), request):
        return False
    if not _element_matches(statement, "Action", request.action, ignore_case=True):
        return False
    if not _element_matches(statement, "Resource", request.resource, ignore_case=False):
        return False
    try:
        return _conditions_match(statement.get("Condition"), request)
    except _Unsupported:
        return statement.get("Effect") == "Deny"


def explicitly_allows(document: Mapping[str, Any], request: Request) -> bool:
    """Whether an applicable Allow of this resource policy names the caller itself (its ARN,
    its role, or everyone), not merely its account. In the resource's own account only such an
    Allow grants access without an identity policy; one naming the account delegates to IAM."""
    return any(
        statement.get("Effect") == "Allow"
        and statement_applies(statement, request)
        and _principal_matches(statement.get("Principal"), request, via_account=False)
        for statement in _as_list(document.get("Statement"))
    )


def evaluate(document: Mapping[str, Any], request: Request) -> Decision:
    """Evaluate one policy document: ``DENY`` if any applicable statement denies, else
    ``ALLOW`` if one allows, else ``NOT_APPLICABLE``."""
    allowed = False
    for statement in _as_list(document.get("Statement")):
        if not statement_applies(statement, request):
            continue
        if statement.get("Effect") == "Deny":
            return Decision.DENY
        if statement.get("Effect") == "Allow":
            allowed = True
    return Decision.ALLOW if allowed else Decision.NOT_APPLICABLE


def evaluate_all(documents: Iterable[Mapping[str, Any]], request: Request) -> Decision:
    """Several documents together (e.g. every identity policy of a user): any Deny wins."""
    decisions = [evaluate(d, request) for d in documents]
    if Decision.DENY in decisions:
        return Decision.DENY
    return Decision.ALLOW if Decision.ALLOW in decisions else Decision.NOT_APPLICABLE


def names_request(statement: Mapping[str, Any], request: Request) -> bool:
    """Whether ``statement``'s principal, action and resource match ``request`` (its
    conditions aside)."""
    return (_principal_matches(statement.get("Principal"), request)
            and _element_matches(statement, "Action", request.action, ignore_case=True)
            and _element_matches(statement, "Resource", request.resource, ignore_case=False))


def applying(document: Mapping[str, Any], request: Request,
             effect: str) -> list[Mapping[str, Any]]:
    """The statements of ``document`` with ``effect`` (``Allow``/``Deny``) that apply to
    ``request``: what a refusal or a grant comes from."""
    return [s for s in _as_list(document.get("Statement"))
            if s.get("Effect") == effect and statement_applies(s, request)]


def unmet_conditions(statement: Mapping[str, Any], request: Request) -> list[str]:
    """The conditions of ``statement`` that ``request`` does not meet, each as
    ``Operator key = value(s)`` (an operator this module does not implement counts as unmet)."""
    unmet = []
    for operator, keys in (statement.get("Condition") or {}).items():
        for key, expected in keys.items():
            values = [_text(v) for v in _as_list(expected)]
            try:
                met = is_supported(operator) and _key_matches(
                    operator, request.value(key), values)
            except _Unsupported:
                met = False
            if not met:
                unmet.append(f"{operator} {key} = {' | '.join(values)}")
    return unmet
