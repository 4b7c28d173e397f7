"""Deliberate breakages of the synthesized policies, to show the access matrix catches each.

A proof that cannot fail proves nothing. Each :class:`Mutation` changes the synthesized (and
resolved) policy documents the way a plausible mistake would: a read granted on ``inbound/``,
a TLS or source-IP deny dropped, a service grant missing or widened, another customer's key
named, one action taken from a role. :func:`run_mutation` re-evaluates every matrix request
that reads a changed document; the mutation is caught when the rules and the evaluator
disagree on at least one of them, in the direction the mutation says.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from phi_core import naming
from security import evaluator
from security.access_matrix import MatrixResult, Universe, plan_requests, result_of
from security.matrix_model import ACCESS, ACCOUNT, AUDIT, Kind, MatrixRequest, Part, Who

Documents = dict[str, Any]


class MutationTargetMissing(Exception):
    """The statement a mutation changes is not in the synthesized policies."""


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document["Statement"]
    if not isinstance(statements, list):
        document["Statement"] = statements = [statements]
    return statements


def _find(documents: Documents, policy_id: str | None, sid: str | None = None,
          where: Callable[[dict[str, Any]], bool] | None = None) -> Iterator[dict[str, Any]]:
    if policy_id is None:
        raise MutationTargetMissing("no such policy")
    found = False
    for statement in _statements(documents[policy_id]):
        if (sid is None or statement.get("Sid") == sid) and (where is None or where(statement)):
            found = True
            yield statement
    if not found:
        raise MutationTargetMissing(f"{policy_id}: no statement {sid or ''}")


def _partner_policy(universe: Universe, slug: str, sid: str = "WriteInbound") -> str:
    (principal,) = (p for p in universe.principals
                    if p.who is Who.PARTNER and p.partner_of == {slug} and p.account == ACCOUNT)
    for policy_id in principal.policies:
        if any(s.get("Sid") == sid for s in _statements(universe.documents[policy_id])):
            return policy_id
    raise MutationTargetMissing(f"{slug}: no partner policy with {sid}")


def _add_action(slug: str, sid: str, action: str) -> Callable[[Universe, Documents], set[str]]:
    def apply(universe: Universe, documents: Documents) -> set[str]:
        policy_id = _partner_policy(universe, slug)
        for statement in _find(documents, policy_id, sid):
            actions = statement["Action"]
            statement["Action"] = [*([actions] if isinstance(actions, str) else actions), action]
        return {policy_id}
    return apply


def _tag_own_upload(universe: Universe, documents: Documents) -> set[str]:
    """The partner may tag what it sends, and the bucket no longer keeps the scan tag
    GuardDuty's: a partner could mark its own upload clean."""
    changed = _add_action("mx-user-in", "WriteInbound", "s3:PutObjectTagging")(
        universe, documents)
    return changed | _drop("mx-user-in", Part.DATA, Kind.BUCKET, "OnlyTheScannerTagsInbound")(
        universe, documents)


def _scanner_not_exempt(slug: str) -> Callable[[Universe, Documents], set[str]]:
    """The tag guard written without the scanner's role: GuardDuty could not tag."""
    def apply(universe: Universe, documents: Documents) -> set[str]:
        policy_id = universe.target(slug, Part.DATA, Kind.BUCKET).policy
        for statement in _find(documents, policy_id, "OnlyTheScannerTagsInbound"):
            condition = statement["Condition"]["ArnNotLike"]
            condition["aws:PrincipalArn"] = [
                arn for arn in condition["aws:PrincipalArn"] if ":role/phi-exchange-" not in arn
                or arn.endswith("break-glass")]
        assert policy_id is not None
        return {policy_id}
    return apply


def _without_action(principal: Callable[[Universe], Any], action: str
                    ) -> Callable[[Universe, Documents], set[str]]:
    """Take ``action`` from the identity policies of a principal."""
    def apply(universe: Universe, documents: Documents) -> set[str]:
        for policy_id in principal(universe).policies:
            for statement in _statements(documents[policy_id]):
                actions = statement["Action"]
                actions = [actions] if isinstance(actions, str) else actions
                if action in actions:
                    statement["Action"] = [a for a in actions if a != action]
                    return {policy_id}
        raise MutationTargetMissing(f"no {action}")
    return apply


def _who(who: Who, role_of: str | None = None) -> Callable[[Universe], Any]:
    def find(universe: Universe) -> Any:
        (principal,) = (p for p in universe.principals
                        if p.who is who and (role_of is None or p.role_of == role_of))
        return principal
    return find


def _grant_listing_versions(universe: Universe, documents: Documents) -> set[str]:
    policy_id = _partner_policy(universe, "mx-user-in")
    bucket = universe.target("mx-user-in", Part.DATA, Kind.BUCKET).arn
    _statements(documents[policy_id]).append(
        {"Sid": "ListVersions", "Effect": "Allow", "Action": "s3:ListBucketVersions",
         "Resource": bucket})
    return {policy_id}


def _drop(owner: str, part: Part, kind: Kind | None, sid: str | None = None,
          where: Callable[[dict[str, Any]], bool] | None = None
          ) -> Callable[[Universe, Documents], set[str]]:
    def apply(universe: Universe, documents: Documents) -> set[str]:
        policy_id = universe.target(owner, part, kind).policy
        doomed = list(_find(documents, policy_id, sid, where))
        assert policy_id is not None
        documents[policy_id]["Statement"] = [s for s in _statements(documents[policy_id])
                                             if not any(s is d for d in doomed)]
        return {policy_id}
    return apply


def _secure_transport(statement: dict[str, Any]) -> bool:
    return "aws:SecureTransport" in statement.get("Condition", {}).get("Bool", {})


def _widen_cloudtrail_source(universe: Universe, documents: Documents) -> set[str]:
    policy_id = universe.target(AUDIT, Part.CUSTODY, Kind.BUCKET).policy
    for statement in _find(documents, policy_id, "AWSCloudTrailWrite"):
        condition = statement["Condition"]
        condition["StringEquals"].pop("aws:SourceArn")
        condition["StringLike"] = {"aws:SourceArn": "arn:aws:cloudtrail:*:*:trail/*"}
    assert policy_id is not None
    return {policy_id}


def _deny_names_another_key(universe: Universe, documents: Documents) -> set[str]:
    policy_id = universe.target("mx-user-both", Part.DATA, Kind.BUCKET).policy
    other = universe.target("mx-user-in", Part.CUSTOMER_KEY).arn
    for statement in _find(documents, policy_id, "DenyOtherKmsKeys"):
        statement["Condition"]["StringNotEquals"][
            "s3:x-amz-server-side-encryption-aws-kms-key-id"] = other
    assert policy_id is not None
    return {policy_id}


def _widen_alarm_key_grant(universe: Universe, documents: Documents) -> set[str]:
    policy_id = universe.target("mx-user-both", Part.CUSTOMER_KEY).policy
    for statement in _find(documents, policy_id, "AllowCloudWatchAlarmsToNotify"):
        statement["Action"] = "kms:*"
    assert policy_id is not None
    return {policy_id}


def without_role_action(slug: str, action: str) -> Callable[[Universe, Documents], set[str]]:
    """Take ``action`` from the rotation role of customer ``slug``."""
    return _without_action(_who(Who.ROTATION, slug), action)


def _drop_from_partner_policy(slug: str, sid: str) -> Callable[[Universe, Documents], set[str]]:
    def apply(universe: Universe, documents: Documents) -> set[str]:
        policy_id = _partner_policy(universe, slug, sid)
        documents[policy_id]["Statement"] = [s for s in _statements(documents[policy_id])
                                             if s.get("Sid") != sid]
        return {policy_id}
    return apply


def _drop_from_key_allowed(slug: str, fragment: str) -> Callable[[Universe, Documents],
                                                                   set[str]]:
    """Take the principal whose ARN contains ``fragment`` out of a customer key's named
    principals (OnlyNamedPrincipalsUseTheKey)."""
    def apply(universe: Universe, documents: Documents) -> set[str]:
        policy_id = universe.target(slug, Part.CUSTOMER_KEY).policy
        for statement in _find(documents, policy_id, "OnlyNamedPrincipalsUseTheKey"):
            condition = statement["Condition"]["ArnNotLike"]
            before = list(condition["aws:PrincipalArn"])
            condition["aws:PrincipalArn"] = [a for a in before if fragment not in a]
            if condition["aws:PrincipalArn"] == before:
                raise MutationTargetMissing(f"{slug} key: nobody matches {fragment}")
        assert policy_id is not None
        return {policy_id}
    return apply


def _drop_role_trust(slug: str) -> Callable[[Universe, Documents], set[str]]:
    """Empty the scanner role's trust policy of customer ``slug``."""
    def apply(universe: Universe, documents: Documents) -> set[str]:
        policy_id = universe.target(slug, Part.SCANNER_ROLE).policy
        doomed = list(_find(documents, policy_id))
        assert policy_id is not None
        documents[policy_id]["Statement"] = [
            {**s, "Effect": "Deny"} if any(s is d for d in doomed) else s
            for s in _statements(documents[policy_id])]
        return {policy_id}
    return apply


def _drop_partner_trust_condition(slug: str, operator: str, key: str
                                  ) -> Callable[[Universe, Documents], set[str]]:
    """Take condition ``key`` (under ``operator``) out of customer ``slug``'s partner-role
    trust policy."""
    def apply(universe: Universe, documents: Documents) -> set[str]:
        policy_id = universe.target(slug, Part.PARTNER_ROLE).policy
        for statement in _find(documents, policy_id, where=lambda s: key in s.get(
                "Condition", {}).get(operator, {})):
            del statement["Condition"][operator][key]
            if not statement["Condition"][operator]:
                del statement["Condition"][operator]
        assert policy_id is not None
        return {policy_id}
    return apply


def _account_role(name: str) -> Callable[[Universe], str | None]:
    def policy(universe: Universe) -> str | None:
        (target,) = (t for t in universe.targets[ACCESS] if t.name == name)
        return target.policy
    return policy


def _drop_trust_condition(name: str, operator: str) -> Callable[[Universe, Documents], set[str]]:
    """Take one condition operator (the tag, or MFA) out of an account role's trust policy."""
    def apply(universe: Universe, documents: Documents) -> set[str]:
        policy_id = _account_role(name)(universe)
        for statement in _find(documents, policy_id,
                               where=lambda s: operator in s.get("Condition", {})):
            del statement["Condition"][operator]
        assert policy_id is not None
        return {policy_id}
    return apply


def _drop_from_account_role(who: Who, sid: str) -> Callable[[Universe, Documents], set[str]]:
    """Take statement ``sid`` out of the identity policies of an account role (``who``)."""
    def apply(universe: Universe, documents: Documents) -> set[str]:
        (role,) = {p.arn: p for p in universe.principals if p.who is who}.values()
        changed = set()
        for policy_id in role.policies:
            kept = [s for s in _statements(documents[policy_id]) if s.get("Sid") != sid]
            if len(kept) != len(_statements(documents[policy_id])):
                documents[policy_id]["Statement"] = kept
                changed.add(policy_id)
        if not changed:
            raise MutationTargetMissing(f"{who}: no statement {sid}")
        return changed
    return apply


def _change_in_account_role(who: Who, sid: str, change: Callable[[dict[str, Any]], None]
                            ) -> Callable[[Universe, Documents], set[str]]:
    """Apply ``change`` to statement ``sid`` of the identity policies of an account role."""
    def apply(universe: Universe, documents: Documents) -> set[str]:
        (role,) = {p.arn: p for p in universe.principals if p.who is who}.values()
        changed = set()
        for policy_id in role.policies:
            for statement in _statements(documents[policy_id]):
                if statement.get("Sid") == sid:
                    change(statement)
                    changed.add(policy_id)
        if not changed:
            raise MutationTargetMissing(f"{who}: no statement {sid}")
        return changed
    return apply


def _every_bucket(statement: dict[str, Any]) -> None:
    statement["Resource"] = ["arn:aws:s3:::*", "arn:aws:s3:::*/*"]


def _not_only_through_s3(statement: dict[str, Any]) -> None:
    del statement["Condition"]["StringEquals"]["kms:ViaService"]
    if not statement["Condition"]["StringEquals"]:
        del statement["Condition"]["StringEquals"]


Catches = Literal["leak", "broken workflow", "both"]


@dataclass(frozen=True)
class Mutation:
    name: str
    says: str
    catches: Catches  # the direction of the disagreement that must appear
    apply: Callable[[Universe, Documents], set[str]]  # changes documents, returns their ids


MUTATIONS: tuple[Mutation, ...] = (
    Mutation("inbound-readable", "the partner may GetObject under inbound/", "leak",
             _add_action("mx-user-in", "WriteInbound", "s3:GetObject")),
    Mutation("inbound-versions-readable", "the partner may GetObjectVersion under inbound/",
             "leak", _add_action("mx-user-in", "WriteInbound", "s3:GetObjectVersion")),
    Mutation("inbound-taggable", "the partner may PutObjectTagging under inbound/ and the "
             "bucket's scan-tag guard is gone: a partner marks its own upload clean", "leak",
             _tag_own_upload),
    Mutation("bucket-versions-listable", "the partner may ListBucketVersions", "leak",
             _grant_listing_versions),
    Mutation("tls-deny-dropped", "a bucket policy lost its aws:SecureTransport deny", "leak",
             _drop("mx-user-both", Part.DATA, Kind.BUCKET, where=_secure_transport)),
    Mutation("source-ip-deny-dropped", "a bucket policy lost its partner source-IP deny",
             "leak", _drop("mx-xacct-in", Part.DATA, Kind.BUCKET,
                           "DenyPartnerFromOtherSourceIps")),
    Mutation("cloudtrail-key-grant-missing", "the audit key does not let CloudTrail encrypt "
             "(the defect of issue 12)", "broken workflow",
             _drop(AUDIT, Part.AUDIT_KEY, None, "AllowCloudTrailToEncryptLogs")),
    Mutation("cloudtrail-source-widened", "the custody bucket admits any trail of any account",
             "leak", _widen_cloudtrail_source),
    Mutation("other-customers-key-allowed", "a bucket's wrong-key deny names another "
             "customer's key", "both", _deny_names_another_key),
    Mutation("alarm-key-grant-widened", "CloudWatch may do anything with a customer key",
             "leak", _widen_alarm_key_grant),
    Mutation("rotation-role-missing-put-secret-value", "the rotation role lost "
             "secretsmanager:PutSecretValue", "broken workflow",
             without_role_action("mx-user-both", "secretsmanager:PutSecretValue")),
    Mutation("rotation-role-missing-kms-decrypt", "the rotation role lost kms:Decrypt",
             "broken workflow", without_role_action("mx-user-both", "kms:Decrypt")),
    # Issue 15: the account's principals.
    Mutation("customer-key-crypto-deny-dropped", "a customer key lets any principal of the "
             "account with kms:Decrypt obtain plaintext", "leak",
             _drop("mx-user-both", Part.CUSTOMER_KEY, None, "OnlyNamedPrincipalsUseTheKey")),
    Mutation("deployment-key-deny-dropped", "the deployment role may decrypt customer files "
             "through S3", "leak",
             _drop("mx-xacct-both", Part.CUSTOMER_KEY, None,
                   "DeploymentUsesTheKeyOnlyToCreateSecretAndFunction")),
    Mutation("audit-key-crypto-deny-dropped", "the audit key lets any principal of the account "
             "decrypt the trail's logs", "leak",
             _drop(AUDIT, Part.AUDIT_KEY, None, "OnlyNamedPrincipalsUseTheKey")),
    Mutation("bucket-guard-dropped", "anyone with s3:* may change a data bucket's policy, "
             "encryption, versioning or lifecycle, or delete versions", "leak",
             _drop("mx-role-both", Part.DATA, Kind.BUCKET, "OnlyDeploymentChangesTheBucket")),
    Mutation("custody-guard-dropped", "anyone with s3:* may change the custody bucket", "leak",
             _drop(AUDIT, Part.CUSTODY, Kind.BUCKET, "OnlyDeploymentChangesTheBucket")),
    Mutation("audit-key-guard-dropped", "an administrator may schedule the audit key's "
             "deletion or disable it", "leak",
             _drop(AUDIT, Part.AUDIT_KEY, None, "OnlyBreakGlassRetiresTheAuditKey")),
    Mutation("secret-value-deny-dropped", "anyone with secretsmanager:GetSecretValue reads the "
             "partner's key", "leak",
             _drop("mx-user-in", Part.PARTNER_SECRET, None, "OnlyNamedPrincipalsReadTheKey")),
    Mutation("session-credentials-deny-dropped", "a partner's sts:GetSessionToken credentials "
             "work (and outlive a deactivated key)", "leak",
             _drop_from_partner_policy("mx-user-out", "DenySessionCredentials")),
    Mutation("break-glass-without-mfa", "break-glass may be assumed without MFA", "leak",
             _drop_trust_condition(naming.BREAK_GLASS_ROLE_NAME, "Bool")),
    Mutation("importer-trust-untagged", "any principal allowed sts:AssumeRole (PowerUserAccess) "
             "may become the importer", "leak",
             _drop_trust_condition(naming.IMPORTER_ROLE_NAME, "StringEquals")),
    Mutation("pipeline-trust-widened", "any principal of the pipeline's account may become the "
             "CDK deploy role (the trust lost its aws:PrincipalArn condition)", "leak",
             _drop_trust_condition(naming.CDK_DEPLOY_ROLE_NAME, "ArnEquals")),
    Mutation("trust-anchor-condition-dropped", "a roles-anywhere partner role trusts IAM Roles "
             "Anywhere for a certificate of any trust anchor (its aws:SourceArn condition is "
             "gone)", "leak",
             _drop_partner_trust_condition("mx-cert-out", "ArnEquals", "aws:SourceArn")),
    Mutation("certificate-subject-condition-dropped", "a roles-anywhere partner role admits "
             "any OU of its CA's certificates (one registered subject attribute is gone)",
             "leak", _drop_partner_trust_condition(
                 "mx-cert-out", "StringEquals", "aws:PrincipalTag/x509Subject/OU")),
    Mutation("importer-dead-letter-grant-missing", "the importer may not move a message it "
             "cannot load to the dead-letter queue", "broken workflow",
             _drop_from_account_role(Who.IMPORTER, "DeadLetterUnloadableMessages")),
    Mutation("certificate-notice-grant-missing", "a roles-anywhere customer's notices topic "
             "refuses its certificate-expiry rule (the CA's expiry reaches nobody)",
             "broken workflow",
             _drop("mx-cert-out", Part.NOTICES_TOPIC, None,
                   "AllowCertificateExpiryRuleToPublish")),
    Mutation("certificate-notice-key-grant-missing", "the customer key refuses the "
             "certificate-expiry rule's data keys for its encrypted notices topic",
             "broken workflow",
             _drop("mx-cert-out", Part.CUSTOMER_KEY, None,
                   "AllowCertificateExpiryRuleToNotify")),
    Mutation("tamper-alarm-grant-missing", "the security topic refuses the tamper rules",
             "broken workflow",
             _drop(AUDIT, Part.SECURITY_TOPIC, None, "AllowTamperRulesToPublish")),
    Mutation("operator-evidence-read-widened", "the operator's read of the trail's evidence "
             "names every bucket, not the audit stack's", "leak",
             _change_in_account_role(Who.OPERATOR, "ReadTheTrailsEvidence", _every_bucket)),
    Mutation("operator-trail-decrypt-outside-s3", "the operator may decrypt with the audit key "
             "directly, not only through S3 for the custody bucket", "leak",
             _change_in_account_role(Who.OPERATOR, "DecryptTheTrailsLogsThroughS3",
                                     _not_only_through_s3)),
    # Issue 18: the malware gate and the signed receipts.
    Mutation("scan-tag-guard-dropped", "anyone with s3:* (an administrator, the deployment "
             "role) may tag an inbound object, e.g. mark malware clean", "leak",
             _drop("mx-user-both", Part.DATA, Kind.BUCKET, "OnlyTheScannerTagsInbound")),
    Mutation("tagged-upload-deny-dropped", "an upload under inbound/ may carry x-amz-tagging "
             "GuardDutyMalwareScanStatus=NO_THREATS_FOUND (the importer could see it before "
             "the scan)", "leak",
             _drop("mx-xacct-in", Part.DATA, Kind.BUCKET, "NoTaggedUploadsToInbound")),
    Mutation("copy-into-inbound-deny-dropped", "a copy into inbound/ may bring its source's "
             "tags (x-amz-tagging-directive COPY): an object tagged clean elsewhere arrives "
             "tagged clean", "leak",
             _drop("mx-xacct-in", Part.DATA, Kind.BUCKET, "NoCopiesIntoInbound")),
    Mutation("signing-key-alias-unguarded", "anyone with kms:* (administrator, power user, "
             "deployment role) may move the receipt key's alias to a key of their own, or "
             "retire the key", "leak",
             _drop(AUDIT, Part.SIGNING_KEY, None, "OnlyBreakGlassRetiresTheSigningKey")),
    Mutation("scanner-not-exempt-from-tag-guard", "the tag guard also refuses the scanner's "
             "role: GuardDuty cannot tag, nothing is ever imported", "broken workflow",
             _scanner_not_exempt("mx-user-both")),
    Mutation("scanner-key-grant-missing", "the customer key's named principals lack the "
             "scanner's role: GuardDuty cannot decrypt what it must scan", "broken workflow",
             _drop_from_key_allowed("mx-xacct-both", ":role/phi-exchange-mx-xacct-both-"
                                    "malware-scan")),
    Mutation("guardduty-trust-missing", "the scanner role does not trust GuardDuty's plan "
             "service", "broken workflow",
             _drop_role_trust("mx-user-in")),
    Mutation("signing-key-sign-deny-dropped", "anyone allowed kms:Sign by IAM (administrator, "
             "power user, deployment role, break-glass) may sign a receipt", "leak",
             _drop(AUDIT, Part.SIGNING_KEY, None, "OnlyTheImporterSigns")),
    Mutation("importer-cannot-sign", "the importer's role lost kms:Sign: no receipt can be "
             "issued", "broken workflow", _without_action(_who(Who.IMPORTER), "kms:Sign")),
    Mutation("receipts-unreadable", "an inbound partner cannot read its receipts",
             "broken workflow", _drop_from_partner_policy("mx-user-in", "ReadReceipts")),
)


Plans = list[tuple[Mutation, list[MatrixRequest], list[int | None]]]


def plan_mutations(universe: Universe, requests: Sequence[MatrixRequest],
                   mutations: Sequence[Mutation]) -> tuple[evaluator.Batch, Plans]:
    """One evaluator batch for every mutation: each changed document under its own id, and
    every request that reads one (each mutation's affected requests and their slots)."""
    by_policy: dict[str, list[MatrixRequest]] = defaultdict(list)
    for r in requests:
        for policy_id in {*r.principal.policies, r.target.policy or ""} - {""}:
            by_policy[policy_id].append(r)
    batch = evaluator.Batch(policies=dict(universe.documents))
    plans: Plans = []
    for mutation in mutations:
        documents = copy.deepcopy(universe.documents)
        changed = mutation.apply(universe, documents)
        rename = {policy_id: f"{policy_id} [{mutation.name}]" for policy_id in changed}
        for policy_id, new_id in rename.items():
            batch.policies[new_id] = documents[policy_id]
        affected = list({id(r): r for policy_id in changed for r in by_policy[policy_id]}
                        .values())
        plans.append((mutation, affected, plan_requests(affected, batch, rename=rename)))
    return batch, plans


def run_mutations(universe: Universe, requests: Sequence[MatrixRequest],
                  mutations: Sequence[Mutation]) -> dict[str, MatrixResult]:
    """Evaluate, for each mutation, every request that reads a document it changed, against
    the changed documents: all mutations in one evaluator batch (each changed document under
    its own id), so the evaluator starts once."""
    started = time.monotonic()
    batch, plans = plan_mutations(universe, requests, mutations)
    prepared = time.monotonic()
    decisions = evaluator.evaluate(batch)
    seconds = time.monotonic() - prepared
    return {mutation.name: result_of(affected, plan, decisions, started=started,
                                     evaluator_seconds=seconds, evaluated=len(batch.requests))
            for mutation, affected, plan in plans}


def run_mutation(universe: Universe, requests: Sequence[MatrixRequest],
                 mutation: Mutation) -> MatrixResult:
    return run_mutations(universe, requests, [mutation])[mutation.name]


def caught(result: MatrixResult, mutation: Mutation) -> bool:
    leaks, broken = bool(result.unexpected_allows), bool(result.denied_expected_allows)
    return {"leak": leaks, "broken workflow": broken, "both": leaks and broken}[mutation.catches]
