"""The access matrix: the rules in security/access_matrix.py against an IAM policy evaluator,
over every principal, action, resource and request context of the synthesized customers.

A disagreement in either direction fails: an allow the rules do not grant is a leak; a deny of
what the rules grant breaks a partner's (or our) workflow. Each failure lists the requests with
the statements the evaluator found decisive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from security.access_matrix import (
    DENY_RULE,
    RULES,
    S3_KINDS,
    Kind,
    MatrixResult,
    Outcome,
    Universe,
    Who,
    describe,
)
from security.templates import collect_policies, resolve_template, unresolved_tokens
from stacks.config import AccessMode, Direction

MAX_LISTED = 25


def listing(outcomes: Iterable[Outcome]) -> str:
    items = list(outcomes)
    lines = [describe(o) for o in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        lines.append(f"... and {len(items) - MAX_LISTED} more")
    return "\n".join(lines)


def test_nothing_is_allowed_that_the_rules_deny(matrix: MatrixResult):
    leaks = matrix.unexpected_allows
    if leaks:
        pytest.fail(f"{len(leaks)} requests allowed that no rule allows:\n{listing(leaks)}")


def test_everything_the_rules_allow_is_allowed(matrix: MatrixResult):
    blocked = matrix.denied_expected_allows
    if blocked:
        pytest.fail(f"{len(blocked)} requests denied that a rule allows (a workflow is "
                    f"broken):\n{listing(blocked)}")


def test_the_evaluator_decided_every_request_with_its_full_context(matrix: MatrixResult):
    problems = [o for o in matrix.outcomes
                if o.decision.decision == "Error" or o.decision.ignored_context_keys]
    if problems:
        pytest.fail(listing(problems))


def test_matrix_is_not_trivial(matrix: MatrixResult):
    """A policy set that denies everything, or allows everything, fails here too."""
    allowed = sum(o.decision.allowed for o in matrix.outcomes)
    assert 0 < allowed < len(matrix.outcomes) / 2
    dims = matrix.dimensions()
    assert dims["principals"] >= 20 and dims["actions"] >= 12 and dims["contexts"] >= 100


def test_every_rule_allows_some_request(matrix: MatrixResult):
    used = {o.rule for o in matrix.outcomes if o.expected}
    assert used == {rule.name for rule in RULES}


def test_matrix_covers_every_access_mode_direction_set_and_source_ip_setting(universe: Universe):
    customers = universe.customers.values()
    assert {(c.access, c.directions) for c in customers} >= {
        (mode, dirs) for mode in AccessMode
        for dirs in ((Direction.INBOUND,), (Direction.OUTBOUND,),
                     (Direction.INBOUND, Direction.OUTBOUND))}
    assert {bool(c.allowed_source_ips) for c in customers} == {True, False}
    for mode in AccessMode:
        assert {bool(c.allowed_source_ips) for c in customers if c.access is mode} == {True,
                                                                                       False}


def test_matrix_asks_every_principal_kind_about_every_resource_kind(matrix: MatrixResult):
    seen = {(o.request.principal.who, o.request.target.kind) for o in matrix.outcomes}
    assert seen >= {(who, kind) for who in Who for kind in Kind}


def _workflow_outcomes(matrix: MatrixResult, slug: str, action: str, kind: Kind,
                       variant: str = "", key_prefix: str = "") -> list[Outcome]:
    return [
        o for o in matrix.outcomes
        if o.request.principal.who is Who.PARTNER and slug in o.request.principal.partner_of
        and o.request.target.customer.slug == slug and o.request.target.kind is kind
        and o.request.operation.action == action
        and o.request.operation.variant == variant
        and (o.request.target.object_key or "").startswith(key_prefix)
        and o.request.network.transport == ("TLS 1.2" if kind in S3_KINDS else "TLS 1.3")
        and "outside" not in o.request.network.address_label
    ]


def test_every_partner_can_run_its_real_workflow(matrix: MatrixResult, universe: Universe):
    """What the transfer client does, per direction: upload with SSE-KMS and the customer's key
    (and the parts of a multipart upload, which carry no SSE header), download, list, and the
    KMS calls S3 makes on the partner's behalf. Allowed by the rules and by the evaluator."""
    for slug, customer in universe.customers.items():
        steps = [(_workflow_outcomes(matrix, slug, "s3:ListBucket", Kind.BUCKET,
                                     "top level, delimiter /"), "list the top level"),
                 (_workflow_outcomes(matrix, slug, "kms:Decrypt", Kind.KEY, "through S3"),
                  "decrypt through S3")]
        if customer.allows(Direction.INBOUND):
            steps += [
                (_workflow_outcomes(matrix, slug, "s3:PutObject", Kind.OBJECT, "SSE-KMS, own key",
                                    "inbound/"), "upload with its key"),
                (_workflow_outcomes(matrix, slug, "s3:PutObject", Kind.OBJECT,
                                    "no SSE header (UploadPart sends none)", "inbound/"),
                 "upload a part of a multipart upload"),
                (_workflow_outcomes(matrix, slug, "kms:GenerateDataKey", Kind.KEY,
                                    "through S3"), "generate a data key through S3"),
            ]
        if customer.allows(Direction.OUTBOUND):
            steps.append((_workflow_outcomes(matrix, slug, "s3:GetObject", Kind.OBJECT, "",
                                             "outbound/"), "download"))
        for outcomes, step in steps:
            assert outcomes, f"{slug}: the matrix never asks whether a partner can {step}"
            failing = [o for o in outcomes if not (o.expected and o.decision.allowed)]
            if failing:
                pytest.fail(f"{slug}: a partner cannot {step}:\n{listing(failing)}")


def test_only_partners_and_our_administrator_can_read_plaintext(matrix: MatrixResult):
    """Reading an object means GetObject and, for SSE-KMS, S3 decrypting with the customer's
    key on the caller's behalf. An insider with S3 read-only access gets the first, never the
    second; everyone but the customer's partner (outbound/) and our administrator gets neither.
    """
    get_allowed = {(o.request.principal.label, o.request.target.customer.slug,
                    o.request.target.object_key)
                   for o in matrix.outcomes if o.decision.allowed
                   and o.request.target.kind is Kind.OBJECT
                   and o.request.operation.action == "s3:GetObject"}
    decrypt_allowed = {(o.request.principal.label, o.request.target.customer.slug)
                       for o in matrix.outcomes if o.decision.allowed
                       and o.request.target.kind is Kind.KEY and o.request.operation.via_s3
                       and o.request.operation.action == "kms:Decrypt"}
    readers = {(who, slug, key) for who, slug, key in get_allowed if (who, slug) in decrypt_allowed}
    principals = {o.request.principal.label: o.request.principal for o in matrix.outcomes}
    for who, slug, key in readers:
        principal = principals[who]
        assert principal.who is Who.ADMIN or (
            principal.who is Who.PARTNER and slug in principal.partner_of
            and (key or "").startswith("outbound/")), (who, slug, key)
    assert any(principals[who].who is Who.INSIDER for who, _, _ in get_allowed)
    assert not any(principals[who].who is Who.INSIDER for who, _ in decrypt_allowed)


def test_deny_rule_covers_every_request_no_allow_rule_names(matrix: MatrixResult):
    assert all(o.rule == DENY_RULE for o in matrix.outcomes if not o.expected)


# --- properties of the policies themselves -------------------------------------------------


def _statements(matrix_app) -> Iterable[tuple[str, str, dict]]:
    for stack_name, template in matrix_app.templates.items():
        policies = collect_policies(resolve_template(template, stack_name))
        for kind, name, document in policies.documents():
            statements = document["Statement"]
            for statement in statements if isinstance(statements, list) else [statements]:
                yield kind, name, statement


def test_every_template_resolves_to_literal_arns(matrix_app):
    for stack_name, template in matrix_app.templates.items():
        resolved = resolve_template(template, stack_name)
        assert unresolved_tokens(resolved.resources) == [], stack_name


def test_no_policy_uses_not_principal(matrix_app):
    """NotPrincipal is easy to get wrong and mis-evaluated by iam-simulate; the project matches
    principals with aws:PrincipalArn conditions instead."""
    offenders = [name for _, name, s in _statements(matrix_app) if "NotPrincipal" in s]
    assert not offenders


def test_no_resource_policy_allows_any_principal_without_a_condition(matrix_app):
    offenders = []
    for kind, name, statement in _statements(matrix_app):
        if kind == "identity" or statement["Effect"] != "Allow":
            continue
        principal = statement.get("Principal")
        wildcard = principal == "*" or (isinstance(principal, dict)
                                        and "*" in json.dumps(principal.get("AWS", "")))
        if wildcard and not statement.get("Condition"):
            offenders.append(f"{name}: {statement.get('Sid')}")
    assert not offenders
