"""The access matrix: the rules (security/matrix_rules.py) against an IAM policy evaluator,
over every principal, action, resource and request context of every synthesized stack.

A disagreement in either direction fails: an allow the rules do not grant is a leak; a deny of
what the rules grant breaks a partner's, a role's or an AWS service's workflow (for a service,
a deployment that fails on a real account). Each failure lists the requests with the
statements the evaluator found decisive.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable

import pytest

from phi_core import naming
from security import evaluator
from security.access_matrix import (
    MatrixOutcome,
    MatrixResult,
    Universe,
    describe,
    to_evaluator_request,
)
from security.action_catalog import actions_for
from security.matrix_model import (
    ACCESS,
    ACCOUNT,
    AUDIT,
    S3_KINDS,
    STRANGER_ACCOUNT,
    Kind,
    Part,
    Who,
)
from security.matrix_rules import (
    AUDIT_KEY_RETIREMENT,
    CONTRACTS,
    DENY_RULE,
    GUARDED_BUCKET_ACTIONS,
    RULES,
    rotation_role_calls,
)
from security.templates import collect_policies, resolve_template, unresolved_tokens
from stacks.config import AccessMode, Direction

MAX_LISTED = 25


def listing(outcomes: Iterable[MatrixOutcome]) -> str:
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
        pytest.fail(f"{len(blocked)} requests denied that a rule allows (a workflow, a role or "
                    f"an AWS service integration is broken):\n{listing(blocked)}")


def test_the_evaluator_decided_every_request_with_its_full_context(matrix: MatrixResult):
    problems = [o for o in matrix.outcomes
                if o.decision.decision == "Error" or o.decision.ignored_context_keys]
    if problems:
        pytest.fail(listing(problems))


def test_matrix_is_not_trivial(matrix: MatrixResult):
    """A policy set that denies everything, or allows everything, fails here too."""
    allowed = sum(o.decision.allowed for o in matrix.outcomes)
    assert 0 < allowed < len(matrix.outcomes) / 4
    dims = matrix.dimensions()
    assert dims["principals"] >= 60 and dims["actions"] >= 300 and dims["contexts"] >= 300
    assert matrix.evaluated > 10_000  # most decisions come from the evaluator's own logic


def test_every_rule_allows_some_request(matrix: MatrixResult):
    used = {o.rule for o in matrix.outcomes if o.expected and o.decision.allowed}
    assert used == {rule.name for rule in RULES}


def test_every_stack_is_in_the_matrix(universe: Universe):
    """The audit stack and every customer, offboarded ones included, each with its resources."""
    assert set(universe.targets) == {*universe.customers, AUDIT, ACCESS}
    audit_parts = {t.part for t in universe.targets[AUDIT]}
    assert audit_parts >= {Part.CUSTODY, Part.CUSTODY_ACCESS_LOGS, Part.AUDIT_KEY,
                           Part.INGESTION_QUEUE, Part.INGESTION_DLQ, Part.TRAIL_LOGS,
                           Part.LOGS_DELIVERY_ROLE, Part.SECURITY_TOPIC}
    assert {t.name for t in universe.targets[ACCESS]} == {
        naming.DEPLOYMENT_ROLE_NAME, naming.CDK_DEPLOY_ROLE_NAME, naming.IMPORTER_ROLE_NAME,
        naming.OPERATOR_ROLE_NAME, naming.BREAK_GLASS_ROLE_NAME}
    customers = universe.customers.values()
    assert any(c.offboarded for c in customers)
    assert {(c.access, c.offboarded) for c in customers} >= {
        (mode, gone) for mode in AccessMode for gone in (True, False)}


def test_matrix_covers_every_access_mode_direction_set_and_source_ip_setting(universe: Universe):
    customers = [c for c in universe.customers.values() if not c.offboarded]
    assert {(c.access, c.directions) for c in customers} >= {
        (mode, dirs) for mode in AccessMode
        for dirs in ((Direction.INBOUND,), (Direction.OUTBOUND,),
                     (Direction.INBOUND, Direction.OUTBOUND))}
    for mode in AccessMode:
        assert {bool(c.allowed_source_ips) for c in customers if c.access is mode} == {True,
                                                                                       False}


def test_matrix_asks_every_principal_kind_about_every_resource_kind(matrix: MatrixResult):
    seen = {(o.request.principal.who, o.request.target.kind) for o in matrix.outcomes}
    assert seen >= {(who, kind) for who in Who for kind in Kind}


def test_every_action_the_evaluator_knows_is_asked_of_every_resource(matrix: MatrixResult,
                                                                     universe: Universe):
    """Not a hand-picked list: every action of IAM's service reference that applies to a
    resource's type is asked of it, by every principal."""
    asked: dict[str, set[str]] = {}
    by_principal: dict[str, set[str]] = {}
    for o in matrix.outcomes:
        asked.setdefault(o.request.target.arn, set()).add(o.request.operation.action)
        by_principal.setdefault(o.request.principal.label, set()).add(o.request.target.arn)
    for targets in universe.targets.values():
        for target in targets:
            missing = {a.action for a in actions_for(target.kind)} - asked.get(target.arn, set())
            assert not missing, (target.label, sorted(missing)[:10])
    assert "s3:GetObjectVersion" in asked[universe.targets[AUDIT][0].arn]
    everything = {t.arn for ts in universe.targets.values() for t in ts
                  if not (t.kind is Kind.OBJECT and t.part is Part.DATA)}
    for principal, arns in by_principal.items():
        assert everything <= arns, principal


# The matrix's outcomes by (who, target owner, action, target kind), built once: the workflow
# test asks for a few hundred slices of ~800,000 outcomes (scanning them all for each slice
# cost more than evaluating the matrix's Python side).
_BY_SLICE: dict[int, dict[tuple[Who, str, str, Kind], list[MatrixOutcome]]] = {}


def _index(matrix: MatrixResult) -> dict[tuple[Who, str, str, Kind], list[MatrixOutcome]]:
    if id(matrix) not in _BY_SLICE:
        index: dict[tuple[Who, str, str, Kind], list[MatrixOutcome]] = {}
        for o in matrix.outcomes:
            key = (o.request.principal.who, o.request.target.owner,
                   o.request.operation.action, o.request.target.kind)
            index.setdefault(key, []).append(o)
        _BY_SLICE[id(matrix)] = index
    return _BY_SLICE[id(matrix)]


def _slice(matrix: MatrixResult, who: Who, owner: str, action: str,
           kind: Kind) -> list[MatrixOutcome]:
    return _index(matrix).get((who, owner, action, kind), [])


def _service_outcomes(matrix: MatrixResult) -> list[MatrixOutcome]:
    """Every request an AWS service makes (on behalf of some resource), from the index."""
    return [o for key, outcomes in _index(matrix).items() if key[0] is Who.SERVICE
            for o in outcomes]


def _outcomes(matrix: MatrixResult, *, who: Who, owner: str, action: str, kind: Kind,
              variant: str = "", key_prefix: str = "") -> list[MatrixOutcome]:
    return [
        o for o in _slice(matrix, who, owner, action, kind)
        if o.request.principal.who is who and owner in o.request.principal.partner_of
        and o.request.target.owner == owner and o.request.target.kind is kind
        and o.request.target.part in (Part.DATA, Part.CUSTOMER_KEY)
        and o.request.operation.action == action and o.request.operation.variant == variant
        and (o.request.target.object_key or "").startswith(key_prefix)
        and o.request.network.transport == ("TLS 1.2" if kind in S3_KINDS else "TLS 1.3")
        and "outside" not in o.request.network.address_label
    ]


def test_every_partner_can_run_its_real_workflow(matrix: MatrixResult, universe: Universe):
    """What the transfer client does, per direction: upload with SSE-KMS and the customer's key
    (and the parts of a multipart upload, which carry no SSE header), download, list, and the
    KMS calls S3 makes on the partner's behalf. Allowed by the rules and by the evaluator."""
    for slug, customer in universe.customers.items():
        if customer.offboarded:
            continue
        ask = {"who": Who.PARTNER, "owner": slug}
        steps = [(_outcomes(matrix, **ask, action="s3:ListBucket", kind=Kind.BUCKET,
                            variant="top level, delimiter /"), "list the top level"),
                 (_outcomes(matrix, **ask, action="kms:Decrypt", kind=Kind.KEY,
                            variant="through S3"), "decrypt through S3")]
        if customer.allows(Direction.INBOUND):
            steps += [
                (_outcomes(matrix, **ask, action="s3:PutObject", kind=Kind.OBJECT,
                           variant="SSE-KMS, own key", key_prefix="inbound/"),
                 "upload with its key"),
                (_outcomes(matrix, **ask, action="s3:PutObject", kind=Kind.OBJECT,
                           variant="no SSE header (UploadPart sends none)",
                           key_prefix="inbound/"), "upload a part of a multipart upload"),
                (_outcomes(matrix, **ask, action="kms:GenerateDataKey", kind=Kind.KEY,
                           variant="through S3"), "generate a data key through S3"),
            ]
        if customer.allows(Direction.OUTBOUND):
            steps.append((_outcomes(matrix, **ask, action="s3:GetObject", kind=Kind.OBJECT,
                                    key_prefix="outbound/"), "download"))
        for outcomes, step in steps:
            assert outcomes, f"{slug}: the matrix never asks whether a partner can {step}"
            failing = [o for o in outcomes if not (o.expected and o.decision.allowed)]
            if failing:
                pytest.fail(f"{slug}: a partner cannot {step}:\n{listing(failing)}")


def test_every_service_contract_is_allowed_for_our_own_resource(matrix: MatrixResult):
    """Each integration AWS documents (CloudTrail, S3 log delivery, EventBridge, CloudWatch
    alarms and Logs, Secrets Manager) works for our resource: a real deployment needs it."""
    allowed = [o for o in _service_outcomes(matrix)
               if o.rule == "aws-service-contract" and o.decision.allowed]
    for contract in CONTRACTS:
        assert any(o.request.operation.variant.startswith(contract.name) for o in allowed), (
            f"{contract.name}: never allowed for our own resource")


def test_every_service_contract_is_refused_for_anybody_elses_resource(matrix: MatrixResult):
    """The same request, made on behalf of a resource in an unrelated account, and on behalf
    of another resource of our own account, is denied (the confused deputy)."""
    # The services' requests from the index, grouped by the contract their variant names
    # ("<contract>", "<contract>: <variant>", "<contract>, without <key>"), in one pass.
    by_contract: dict[str, list[MatrixOutcome]] = {}
    for o in _service_outcomes(matrix):
        if o.request.principal.source is not None and o.request.network.tls is not None \
                and not o.expected:
            name = o.request.operation.variant.split(":", 1)[0].split(",", 1)[0]
            by_contract.setdefault(name, []).append(o)
    for contract in CONTRACTS:
        if contract.any_source:
            continue
        same = [o for o in by_contract.get(contract.name, [])
                if o.request.principal.source == contract.source]
        foreign = [o for o in same if o.request.principal.source_account == STRANGER_ACCOUNT]
        ours = [o for o in same if o.request.principal.source_account == ACCOUNT]
        assert foreign and ours, f"{contract.name}: not asked for somebody else's resource"
        assert not any(o.decision.allowed for o in foreign + ours), contract.name


def test_every_call_of_the_rotation_role_is_allowed(matrix: MatrixResult, universe: Universe):
    """Derived from the handler's code (and the KMS and Lambda-runtime calls it implies), not
    from a list kept in a test: each call, on the function's own customer, is allowed."""
    for slug, customer in universe.customers.items():
        if customer.access is not AccessMode.IAM_USER or customer.offboarded:
            continue
        calls = {(o.request.operation.action, o.request.target.part, o.request.operation.via)
                 for o in matrix.outcomes
                 if o.request.principal.who is Who.ROTATION
                 and o.request.principal.role_of == slug and o.decision.allowed
                 and o.rule == "rotation-function-makes-its-calls"}
        for call in rotation_role_calls():
            assert any(action == call.action and part is call.part
                       and (call.via is None or via_ == call.via)
                       for action, part, via_ in calls), (slug, call)


def test_offboarded_partners_are_denied_everything(matrix: MatrixResult, universe: Universe):
    former = [o for o in matrix.outcomes if o.request.principal.who is Who.FORMER_PARTNER]
    gone = {c.slug for c in universe.customers.values() if c.offboarded}
    assert {o.request.target.owner for o in former} >= gone
    assert not any(o.decision.allowed for o in former), listing(
        o for o in former if o.decision.allowed)
    # Their own principals still carry grants (evaluated, not filtered out): the explicit
    # denies are what stops them.
    assert any(o.decision.deny for o in former)


def _allowed(matrix: MatrixResult, **where) -> list[MatrixOutcome]:
    return [o for o in matrix.outcomes if o.decision.allowed and all(
        getattr(o.request.target if k in ("part", "kind", "owner") else o.request.operation,
                k) == v for k, v in where.items())]


def test_only_named_roles_obtain_plaintext(matrix: MatrixResult):
    """Reading an object means GetObject and, for SSE-KMS, S3 decrypting with the customer's
    key on the caller's behalf. Only the customer's partner (outbound/), the importer
    (inbound/), the operator (outbound/) and break-glass get both; the administrator and a
    PowerUserAccess insider get GetObject but never the decryption, an S3 read-only insider
    the same."""
    get_allowed = {(o.request.principal.label, o.request.target.owner,
                    o.request.target.object_key)
                   for o in _allowed(matrix, kind=Kind.OBJECT, part=Part.DATA,
                                     action="s3:GetObject")}
    decrypt_allowed = {(o.request.principal.label, o.request.target.owner)
                       for o in _allowed(matrix, part=Part.CUSTOMER_KEY, via="s3",
                                         action="kms:Decrypt")}
    readers = {(who, owner, key) for who, owner, key in get_allowed
               if (who, owner) in decrypt_allowed}
    principals = {o.request.principal.label: o.request.principal for o in matrix.outcomes}
    for who, owner, key in readers:
        principal, key = principals[who], key or ""
        assert (principal.who is Who.BREAK_GLASS
                or (principal.who is Who.IMPORTER and key.startswith("inbound/"))
                or (principal.who is Who.SCANNER and key.startswith("inbound/")
                    and owner == principal.role_of)
                or (principal.who is Who.PARTNER and key.startswith("receipts/")
                    and owner in principal.partner_of)
                or (principal.who in (Who.PARTNER, Who.OPERATOR) and key.startswith("outbound/")
                    and (principal.who is Who.OPERATOR or owner in principal.partner_of))
                ), (who, owner, key)
    kinds = {principals[who].who for who, _, _ in readers}
    assert kinds == {Who.BREAK_GLASS, Who.IMPORTER, Who.OPERATOR, Who.PARTNER, Who.SCANNER}
    broad = {Who.ADMIN, Who.POWER_USER, Who.INSIDER}
    assert {principals[who].who for who, _, _ in get_allowed} >= broad
    assert not any(principals[who].who in broad for who, _ in decrypt_allowed)


def test_only_the_operator_and_break_glass_read_the_trails_logs(matrix: MatrixResult):
    """A log file in the custody bucket is SSE-KMS with the audit key: reading it means
    GetObject there and S3 decrypting with the audit key for the custody bucket. Only the
    operator (custody) and break-glass get both; the administrator, a PowerUserAccess insider
    and an S3 read-only insider get GetObject but never the decryption. Nobody decrypts
    with the audit key for the custody bucket outside S3."""
    get_allowed = {o.request.principal.who
                   for o in _allowed(matrix, kind=Kind.OBJECT, part=Part.CUSTODY,
                                     action="s3:GetObject")}
    through_s3 = [o for o in _allowed(matrix, part=Part.AUDIT_KEY, via="s3",
                                      action="kms:Decrypt")
                  if o.request.operation.get("kms:EncryptionContext:aws:s3:arn")]
    assert {o.request.principal.who for o in through_s3} == {Who.OPERATOR, Who.BREAK_GLASS}
    assert get_allowed >= {Who.OPERATOR, Who.BREAK_GLASS, Who.ADMIN, Who.POWER_USER,
                           Who.INSIDER}
    direct = [o for o in _allowed(matrix, part=Part.AUDIT_KEY, via=None,
                                  action="kms:Decrypt")
              if o.request.principal.who is not Who.BREAK_GLASS
              and o.request.operation.get("kms:EncryptionContext:aws:s3:arn")]
    assert not direct, listing(direct)


def test_only_named_roles_read_the_partner_secret(matrix: MatrixResult):
    readers = {o.request.principal.who
               for o in _allowed(matrix, part=Part.PARTNER_SECRET,
                                 action="secretsmanager:GetSecretValue")}
    assert readers == {Who.ROTATION, Who.OPERATOR, Who.BREAK_GLASS}


def test_only_break_glass_and_the_deployer_change_what_guards_evidence(matrix: MatrixResult):
    """Bucket policy, encryption, versioning, lifecycle, Object Lock, object versions: on every
    bucket of every stack, only the deployment role and break-glass; both can."""
    changers = {o.request.principal.who for o in matrix.outcomes if o.decision.allowed
                and o.request.target.kind in S3_KINDS
                and o.request.operation.action in GUARDED_BUCKET_ACTIONS}
    assert changers == {Who.DEPLOYMENT, Who.BREAK_GLASS}
    asked = {(o.request.principal.who, o.request.operation.action) for o in matrix.outcomes
             if o.request.target.kind in S3_KINDS}
    assert {(Who.ADMIN, a) for a in GUARDED_BUCKET_ACTIONS} <= asked


def test_only_break_glass_retires_the_audit_key_and_every_key_stays_manageable(
        matrix: MatrixResult, matrix_app):
    """KMS's lockout rule: every key keeps a principal that may change its policy
    (break-glass; the deployment role for customer keys). The audit key and the receipt key
    deny their own creator (the deployment role) PutKeyPolicy, so their templates bypass the
    lockout safety check, which is only safe because break-glass keeps the right."""
    retirers = {o.request.principal.who
                for o in _allowed(matrix, part=Part.AUDIT_KEY)
                if o.request.operation.action in AUDIT_KEY_RETIREMENT}
    assert retirers == {Who.BREAK_GLASS}
    keys = {o.request.target.arn: o.request.target.part for o in matrix.outcomes
            if o.request.target.kind is Kind.KEY}
    manageable = {(o.request.target.arn, o.request.principal.who)
                  for o in _allowed(matrix, kind=Kind.KEY, action="kms:PutKeyPolicy")}
    for arn, part in keys.items():
        assert (arn, Who.BREAK_GLASS) in manageable, arn
        assert ((arn, Who.DEPLOYMENT) in manageable) is (part is Part.CUSTOMER_KEY), arn
    audit = matrix_app.templates[naming.AUDIT_STACK_NAME]["Resources"]
    bypass = [r["Properties"].get("BypassPolicyLockoutSafetyCheck")
              for r in audit.values() if r["Type"] == "AWS::KMS::Key"]
    assert bypass == [True, True]  # the audit key and the receipt key


def test_partner_session_credentials_are_refused_everything(matrix: MatrixResult):
    """sts:GetSessionToken credentials would outlive a deactivated key by up to 36 hours:
    refused by an explicit deny, whatever the request."""
    sessions = [o for o in matrix.outcomes if o.request.principal.who is Who.PARTNER_SESSION]
    assert len({o.request.principal.label for o in sessions}) >= 4
    assert not any(o.decision.allowed for o in sessions)
    assert any("DenySessionCredentials" in " ".join(o.decision.deny) for o in sessions)


def test_account_roles_need_their_tag_and_break_glass_needs_mfa(matrix: MatrixResult):
    assumed = [o for o in _allowed(matrix, part=Part.ACCOUNT_ROLE, action="sts:AssumeRole")
               if o.request.principal.who not in (Who.SERVICE, Who.PIPELINE)]
    assert assumed
    for o in assumed:
        variant = o.request.operation.variant
        assert variant.startswith("tagged for it,") or variant == "tagged for it", describe(o)
        if o.request.target.name == naming.BREAK_GLASS_ROLE_NAME:
            assert "MFA" in variant, describe(o)
        assert o.request.target.name != naming.DEPLOYMENT_ROLE_NAME
    by_service = {o.request.target.name for o in _allowed(matrix, part=Part.ACCOUNT_ROLE)
                  if o.request.principal.who is Who.SERVICE}
    assert by_service == {naming.DEPLOYMENT_ROLE_NAME}


def test_from_the_pipelines_account_only_its_role_assumes_only_the_cdk_deploy_role(
        matrix: MatrixResult):
    """The matrix's account is one the CDK pipeline deploys to: of the pipeline's account, its
    role may assume our CDK-deploy role (untagged: it is not ours to tag), and nothing else is
    allowed to it or to any other principal there, on any resource (every action swept)."""
    from_pipeline = [o for o in matrix.outcomes if o.decision.allowed
                     and o.request.principal.who in (Who.PIPELINE, Who.PIPELINE_ACCOUNT)]
    assert {(o.request.principal.who, o.request.target.name, o.request.operation.action)
            for o in from_pipeline} == {
        (Who.PIPELINE, naming.CDK_DEPLOY_ROLE_NAME, "sts:AssumeRole")}
    asked = {o.request.principal.who for o in matrix.outcomes}
    assert {Who.PIPELINE, Who.PIPELINE_ACCOUNT} <= asked


def test_a_partner_session_only_for_its_own_trust_anchor_and_registered_subject(
        matrix: MatrixResult, universe: Universe):
    """IAM Roles Anywhere gets a session of a roles-anywhere partner's role (all three actions
    it asks) only for that customer's own trust anchor, with every registered subject
    attribute: never for another customer's trust anchor, another trust anchor of our account
    or of another account, nor with an attribute missing or different."""
    asked = [o for o in matrix.outcomes if o.request.principal.source is not None
             and o.request.principal.source.service == "rolesanywhere.amazonaws.com"]
    allowed = {(o.request.principal.serves, o.request.target.owner, o.request.operation.action,
                o.request.operation.variant) for o in asked if o.decision.allowed}
    partners = sorted(slug for slug, c in universe.customers.items()
                      if c.access is AccessMode.ROLES_ANYWHERE and not c.offboarded)
    assert len(partners) >= 2
    assert allowed == {(slug, slug, action, f"rolesanywhere-{action.split(':')[1].lower()}"
                        "-partner-role")
                       for slug in partners
                       for action in ("sts:AssumeRole", "sts:SetSourceIdentity",
                                      "sts:TagSession")}
    refused = {(o.request.principal.label, o.request.target.owner, o.request.operation.variant)
               for o in asked if not o.decision.allowed and o.request.target.part is
               Part.PARTNER_ROLE}
    mine, theirs = partners[0], partners[1]
    assert (f"rolesanywhere.amazonaws.com for {theirs}'s trust anchor", mine,
            "rolesanywhere-assumerole-partner-role") in refused
    for stranger in ("another trust anchor of our account",
                     "a trust anchor of an unrelated account"):
        assert (f"rolesanywhere.amazonaws.com for {stranger}", mine,
                "rolesanywhere-assumerole-partner-role") in refused
    own = f"rolesanywhere.amazonaws.com for {mine}'s trust anchor"
    for attribute, _ in universe.customers[mine].roles_anywhere.subject:
        key = f"aws:PrincipalTag/x509Subject/{attribute}"
        for variant in (f"without {key}", f"another {key}"):
            assert (own, mine, f"rolesanywhere-assumerole-partner-role, {variant}") in refused


def test_requests_decided_without_the_evaluator_are_denied_by_it(matrix: MatrixResult,
                                                                 universe: Universe):
    """The shortcut (no Allow statement could match, so implicitly denied) agrees with the
    evaluator on a sample of every principal kind."""
    prefiltered = [o for o in matrix.outcomes if o.prefiltered]
    rng = random.Random(12)  # noqa: S311 - a fixed sample, not a secret
    by_who: dict[Who, list[MatrixOutcome]] = {}
    for o in prefiltered:
        by_who.setdefault(o.request.principal.who, []).append(o)
    sample = [o for outcomes in by_who.values() for o in rng.sample(outcomes,
                                                                    min(150, len(outcomes)))]
    # Administrator and break-glass are allowed everything by their own policies.
    assert set(by_who) >= set(Who) - {Who.ADMIN, Who.BREAK_GLASS}
    batch = evaluator.Batch(policies=universe.documents,
                            requests=[to_evaluator_request(o.request) for o in sample])
    decisions = evaluator.evaluate(batch)
    allowed = [o for o, d in zip(sample, decisions, strict=True) if d.allowed]
    assert not allowed, listing(allowed)


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


def test_every_service_principal_statement_names_our_source(matrix_app):
    """A resource-policy allow for an AWS service carries a source condition (aws:SourceArn,
    aws:SourceAccount, or CloudWatch Logs' encryption context), except CloudTrail's assumption
    of the log delivery role, which AWS documents without one (iam:PassRole guards it)."""
    offenders = []
    for kind, name, statement in _statements(matrix_app):
        if kind == "identity" or statement["Effect"] != "Allow":
            continue
        principal = statement.get("Principal")
        if not (isinstance(principal, dict) and "Service" in principal):
            continue
        condition = json.dumps(statement.get("Condition", {})).lower()
        sourced = any(k in condition for k in ("aws:sourcearn", "aws:sourceaccount",
                                               "kms:encryptioncontext:aws:logs:arn"))
        trust = kind == "trust" and statement.get("Action") == "sts:AssumeRole"
        if not sourced and not trust:
            offenders.append(f"{name}: {statement.get('Sid')}")
    assert not offenders
