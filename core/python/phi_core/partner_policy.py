"""What a partner may do, and the denies that bound it: each statement written once.

The customer stack wraps these statements (``iam.PolicyStatement.from_json``) into the
partner's managed policy (iam-user, assume-role), its bucket and key policy grants
(cross-account), and the bucket and key denies every mode carries; the operator CLI hands the
same statements to a cross-account partner for its own side, and writes the same offboarding
deny when it revokes access at once. Values may be literal ARNs or CDK tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from phi_core import identifiers, naming
from phi_core.vocabulary import AccessMode, Direction

POLICY_VERSION = "2012-10-17"
OFFBOARDED_DENY_SID = "OffboardedPartnerDeny"  # the operator CLI finds its own deny by it
Statement = dict[str, Any]


@dataclass(frozen=True)
class PartnerScope:
    """What a partner may touch: one bucket's prefixes, one key, only through S3
    (``s3_service`` is ``s3.<region>.<url suffix>``, the one ``kms:ViaService`` allowed)."""

    bucket_arn: str
    key_arn: str
    directions: tuple[Direction, ...]
    s3_service: str


def partner_statements(scope: PartnerScope) -> list[Statement]:
    """The partner's allow statements, in identity-policy form (no principal).

    Inbound is write-only: a leaked partner key must not expose earlier uploads, so the partner
    cannot read back, overwrite-by-copy or delete what it sent; it reads instead the signed
    receipts the importer writes under ``receipts/`` (checksums, versions, scan results: no
    file contents). Outbound is read-only. Listing is limited to the partner's prefixes, plus
    the bucket's top level with "/" as delimiter so desktop clients can open the bucket and see
    the folders; desktop clients also ask for the bucket's region first, which reveals nothing
    else.
    """
    bucket = scope.bucket_arn
    statements: list[Statement] = []
    if Direction.INBOUND in scope.directions:
        statements.append(_allow("WriteInbound", ["s3:PutObject", "s3:AbortMultipartUpload",
                                                  "s3:ListMultipartUploadParts"],
                                 [f"{bucket}/{naming.INBOUND_PREFIX}*"]))
        statements.append(_allow("ReadReceipts", ["s3:GetObject"],
                                 [f"{bucket}/{naming.RECEIPTS_PREFIX}*"]))
    if Direction.OUTBOUND in scope.directions:
        statements.append(_allow("ReadOutbound", ["s3:GetObject", "s3:GetObjectVersion",
                                                  "s3:GetObjectAttributes",
                                                  "s3:GetObjectVersionAttributes"],
                                 [f"{bucket}/{naming.OUTBOUND_PREFIX}*"]))
    statements.append(_allow("ListOwnPrefixes", ["s3:ListBucket"], [bucket], {
        "StringLike": {"s3:prefix": [f"{p}*" for p in listed_prefixes(scope.directions)]}}))
    statements.append(_allow("FindBucketRegion", ["s3:GetBucketLocation"], [bucket]))
    statements.append(_allow("ListTopLevelFolders", ["s3:ListBucket"], [bucket], {
        "StringEquals": {"s3:delimiter": "/"},
        "StringEqualsIfExists": {"s3:prefix": ""}}))
    statements.append(_allow("UseKeyThroughS3", key_actions(scope.directions), [scope.key_arn],
                             key_conditions(scope)))
    return statements


def listed_prefixes(directions: Iterable[Direction]) -> list[str]:
    """The prefixes a partner may list: its directions', and ``receipts/`` if it sends."""
    directions = tuple(directions)
    receipts = [naming.RECEIPTS_PREFIX] if Direction.INBOUND in directions else []
    return [d.prefix for d in directions] + receipts


def key_actions(directions: Iterable[Direction]) -> list[str]:
    """Uploads (multipart included) need GenerateDataKey and Decrypt; downloads Decrypt."""
    if Direction.INBOUND in tuple(directions):
        return ["kms:Decrypt", "kms:GenerateDataKey"]
    return ["kms:Decrypt"]


def key_conditions(scope: PartnerScope) -> dict[str, Any]:
    return {
        "StringEquals": {"kms:ViaService": scope.s3_service},
        # With S3 Bucket Keys the encryption context is the bucket ARN; without, the object's.
        "StringLike": {"kms:EncryptionContext:aws:s3:arn": [scope.bucket_arn,
                                                             f"{scope.bucket_arn}/*"]},
    }


def cross_account_grants(scope: PartnerScope, principals: Sequence[str]) -> tuple[
        list[Statement], Statement]:
    """A cross-account partner's grants on our side: the bucket-policy statements (``Partner``
    + each identity statement's Sid, naming ``principals``) and the key-policy statement."""
    named = {"AWS": list(principals)}
    bucket = [{**s, "Sid": f"Partner{s['Sid']}", "Principal": named}
              for s in partner_statements(scope) if s["Sid"] != "UseKeyThroughS3"]
    key = {"Sid": "PartnerUseKeyThroughS3", "Effect": "Allow", "Principal": named,
           "Action": key_actions(scope.directions), "Resource": "*",
           "Condition": key_conditions(scope)}
    return bucket, key


def principal_entries(partner_principals: Iterable[str], *, partition: str) -> list[str]:
    """Registry principals as resource-policy principals: an account id is its root ARN."""
    return [f"arn:{partition}:iam::{p}:root" if identifiers.is_account_id(p) else p
            for p in partner_principals]


def partner_principal_patterns(*, access: AccessMode, slug: str,
                               partner_principals: Iterable[str], account: str,
                               partition: str) -> list[str]:
    """ARN patterns matching every principal of the customer's partner, for
    ``aws:PrincipalArn`` conditions (an account id matches every principal of that account).
    Built from deterministic names, not resource attributes, so key and bucket policies never
    depend on (or wait for) the IAM resources."""
    if access is AccessMode.IAM_USER:
        return [f"arn:{partition}:iam::{account}:user/{naming.partner_user_name(slug)}"]
    if access in (AccessMode.ASSUME_ROLE, AccessMode.ROLES_ANYWHERE):
        return [f"arn:{partition}:iam::{account}:role/{naming.partner_role_name(slug)}"]
    return [f"arn:{partition}:iam::{p}:*" if identifiers.is_account_id(p) else p
            for p in partner_principals]


ROLES_ANYWHERE_SERVICE = "rolesanywhere.amazonaws.com"
# What IAM Roles Anywhere asks of a role's trust policy for every session it issues
# (https://docs.aws.amazon.com/rolesanywhere/latest/userguide/trust-model.html, "Role trusts").
ROLES_ANYWHERE_ACTIONS = ("sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession")


def certificate_subject_key(attribute: str) -> str:
    """The condition key of the subject attribute ``attribute`` (``CN``, ``OU``, ...) of the
    certificate a Roles Anywhere session was issued for (its principal tag)."""
    return f"aws:PrincipalTag/x509Subject/{attribute}"


def roles_anywhere_trust(trust_anchor_arn: str,
                         subject: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The partner role's trust policy (roles-anywhere): IAM Roles Anywhere may issue sessions
    only for certificates that chain to the partner's own trust anchor (``aws:SourceArn``;
    without it, a certificate from any trust anchor in the account would do) and whose
    subject carries every registered attribute."""
    return {"Version": POLICY_VERSION, "Statement": [{
        "Sid": "PartnerCertificatesThroughItsTrustAnchor", "Effect": "Allow",
        "Principal": {"Service": ROLES_ANYWHERE_SERVICE},
        "Action": list(ROLES_ANYWHERE_ACTIONS),
        "Condition": {
            "ArnEquals": {"aws:SourceArn": trust_anchor_arn},
            "StringEquals": {certificate_subject_key(name): value for name, value in subject},
        }}]}


def session_credentials_deny() -> Statement:
    """For an ``iam-user`` partner: credentials derived from its access key
    (``sts:GetSessionToken``, valid up to 36 hours and untouched by deactivating the key) are
    refused everything, so a rotated or deactivated key is a revocation."""
    return {"Sid": "DenySessionCredentials", "Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"Null": {"aws:TokenIssueTime": "false"}}}


def key_use_outside_s3_deny(patterns: Sequence[str], s3_service: str) -> Statement:
    """The partner may use the key only through S3, whatever any other statement allows."""
    return _deny("DenyPartnerKeyUseOutsideS3", ["kms:*"], "*", {
        "ArnLike": {"aws:PrincipalArn": list(patterns)},
        "StringNotEquals": {"kms:ViaService": s3_service}})


def other_source_ips_deny(bucket_arn: str, patterns: Sequence[str],
                          cidrs: Sequence[str]) -> Statement:
    """Any partner request from outside the registry's ``allowed_source_ips`` is denied."""
    return _deny("DenyPartnerFromOtherSourceIps", ["s3:*"], [bucket_arn, f"{bucket_arn}/*"], {
        "ArnLike": {"aws:PrincipalArn": list(patterns)},
        "NotIpAddress": {"aws:SourceIp": list(cidrs)}})


def offboarded_partner_denies(bucket_arn: str, patterns: Sequence[str]) -> tuple[Statement,
                                                                                  Statement]:
    """An offboarded partner: every S3 action on the bucket (bucket policy) and every use of
    the key (key policy) denied to its principals, whatever any other statement allows."""
    partner = {"ArnLike": {"aws:PrincipalArn": list(patterns)}}
    return (_deny(OFFBOARDED_DENY_SID, ["s3:*"], [bucket_arn, f"{bucket_arn}/*"], partner),
            _deny("OffboardedPartnerKeyDeny", ["kms:*"], "*", partner))


def assume_role_policy(role_arn: str) -> dict[str, Any]:
    """The identity policy an assume-role partner attaches to the principal that assumes our
    role: ``sts:AssumeRole`` on that one role (the external id goes in the call)."""
    return {"Version": POLICY_VERSION, "Statement": [
        _allow("AssumePhiExchangeRole", ["sts:AssumeRole"], [role_arn])]}


def identity_policy(statements: Sequence[Statement]) -> dict[str, Any]:
    return {"Version": POLICY_VERSION, "Statement": list(statements)}


def _allow(sid: str, actions: list[str], resources: list[str] | str,
           condition: dict[str, Any] | None = None) -> Statement:
    statement: Statement = {"Sid": sid, "Effect": "Allow", "Action": actions,
                            "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def _deny(sid: str, actions: list[str], resources: list[str] | str,
          condition: dict[str, Any]) -> Statement:
    return {"Sid": sid, "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": actions,
            "Resource": resources, "Condition": condition}
