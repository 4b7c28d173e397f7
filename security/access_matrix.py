"""The access matrix: who may do what to which customer resource, proven offline.

Synthesizes customers (the registry plus one variant for every access mode and direction set,
with and without source-IP limits), resolves the templates to literal ARNs
(:mod:`security.templates`), and asks an IAM policy evaluator (:mod:`security.evaluator`)
about every combination of

- principal: each customer's partner (its IAM user with its group's policies, its own
  cross-account principals, a session of our partner role), an assume-role partner's own
  principal before it assumes the role, each customer's rotation function, our administrator,
  an insider with S3 read-only access, an unrelated account, an anonymous caller;
- action: writes, reads, deletes, ACL and bucket-policy changes, listing, KMS use through S3
  and directly, key deletion, secret reads, role assumption;
- resource: each customer's objects under ``inbound/``, ``outbound/``, the bucket root and
  other prefixes, its bucket, access-log bucket, key, secret and role;
- request context: TLS or not and its version, encryption headers, source address inside or
  outside the customer's allowed ranges, listing prefix and delimiter, external id.

The expected decision is not a table: it comes from :data:`RULES`, one sentence each, so a new
customer or mode is covered without editing anything here. A request is expected to be allowed
if and only if some rule allows it.

``python -m security.access_matrix`` prints the allowed part of the matrix as a table for
auditors, the matrix size, and every disagreement between the rules and the evaluator (exit 1
if there is any).
"""

from __future__ import annotations

import argparse
import csv
import enum
import ipaddress
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from security import evaluator
from security.synth import REPO, SynthesizedApp, synthesize
from security.templates import ACCOUNT, REGION, URL_SUFFIX, StackPolicies, collect_policies
from security.templates import resolve_template as _resolve
from stacks import naming
from stacks.config import (
    ACCOUNT_ID_PATTERN,
    AccessMode,
    CustomerConfig,
    Direction,
    load_registry,
    parse_customer,
)

S3_SERVICE = f"s3.{REGION}.{URL_SUFFIX}"
SSE = "s3:x-amz-server-side-encryption"
SSE_KEY = "s3:x-amz-server-side-encryption-aws-kms-key-id"
SSE_C = "s3:x-amz-server-side-encryption-customer-algorithm"
MINIMUM_TLS = 1.2

# Addresses outside every range the registry and the variants below allow.
ANY_ADDRESS_V4 = "198.18.0.10"  # RFC 2544 benchmarking range: nobody's office
ANY_ADDRESS_V6 = "2001:db8:ffff::10"

STRANGER_ACCOUNT = "999988887777"
STRANGER_KEY_ARN = (f"arn:aws:kms:{REGION}:{STRANGER_ACCOUNT}:"
                    "key/0b5e7c9a-6f41-4d7e-9a55-3c1f0e2d8b77")
ADMIN_ROLE = "Administrator"
INSIDER_ROLE = "DataAnalyst"

ALLOW_EVERYTHING = {"Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
# AWS's AmazonS3ReadOnlyAccess, written out (the evaluator cannot fetch AWS managed policies).
S3_READ_ONLY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": ["s3:Get*", "s3:List*", "s3:Describe*"], "Resource": "*"}]}

# One customer per access mode and direction set, beside the registry, so every combination
# is evaluated whatever the registry holds. Partner accounts are distinct and unrelated to
# STRANGER_ACCOUNT; address ranges are documentation ranges.
VARIANTS: tuple[dict[str, Any], ...] = (
    {"slug": "mx-user-in", "access": "iam-user", "directions": ["inbound"],
     "allowed_source_ips": ["198.51.100.0/24"]},
    {"slug": "mx-user-out", "access": "iam-user", "directions": ["outbound"],
     "allowed_source_ips": ["2001:db8:aa::/48"]},
    {"slug": "mx-user-both", "access": "iam-user"},
    {"slug": "mx-xacct-in", "access": "cross-account", "directions": ["inbound"],
     "partner_principals": ["arn:aws:iam::300000000001:role/upload"],
     "allowed_source_ips": ["203.0.113.0/25", "2001:db8:bb::/48"]},
    {"slug": "mx-xacct-out", "access": "cross-account", "directions": ["outbound"],
     "partner_principals": ["300000000002"]},
    {"slug": "mx-xacct-both", "access": "cross-account",
     "partner_principals": ["arn:aws:iam::300000000003:user/batch",
                            "arn:aws:iam::300000000004:role/team/transfer"],
     "allowed_source_ips": ["192.0.2.0/24"]},
    {"slug": "mx-role-in", "access": "assume-role", "directions": ["inbound"],
     "partner_principals": ["300000000005"], "external_id": "mx-role-in-external-id-0001"},
    {"slug": "mx-role-out", "access": "assume-role", "directions": ["outbound"],
     "partner_principals": ["arn:aws:iam::300000000006:role/download"],
     "external_id": "mx-role-out-external-id-0001",
     "allowed_source_ips": ["198.51.100.128/25"]},
    {"slug": "mx-role-both", "access": "assume-role",
     "partner_principals": ["arn:aws:iam::300000000007:role/sync",
                            "arn:aws:iam::300000000008:user/sync-bot"],
     "external_id": "mx-role-both-external-id-0001",
     "allowed_source_ips": ["2001:db8:cc::/48"]},
)


def variant_customers() -> list[CustomerConfig]:
    return [parse_customer({"contacts": ["security@example.org"], **data},
                           source=f"(matrix variant) {data['slug']}") for data in VARIANTS]


def matrix_customers(registry: Path | None = REPO / "customers") -> list[CustomerConfig]:
    """The registry's customers (none if ``registry`` is None) plus :data:`VARIANTS`."""
    customers = list(load_registry(registry).values()) if registry is not None else []
    taken = {c.slug for c in customers}
    return customers + [c for c in variant_customers() if c.slug not in taken]


# --- the model -------------------------------------------------------------------------------


class Who(enum.StrEnum):
    PARTNER = "partner"  # a principal a customer lets in (for assume-role: our role's session)
    PARTNER_HOME = "partner's own principal"  # assume-role: before it assumes our role
    ROTATION = "rotation function"
    ADMIN = "our administrator"
    INSIDER = "insider (S3 read-only)"
    STRANGER = "unrelated account"
    ANONYMOUS = "anonymous"


GLOBAL = frozenset({Who.ADMIN, Who.INSIDER, Who.STRANGER, Who.ANONYMOUS})


@dataclass(frozen=True)
class Principal:
    """Who makes a request. ``arn`` is the request's principal (a user or a role session),
    None when anonymous; ``principal_arn`` is what ``aws:PrincipalArn`` holds (the role, for a
    session)."""

    label: str
    who: Who
    arn: str | None
    principal_arn: str | None
    account: str | None
    policies: tuple[str, ...]  # identity policy ids in the batch
    home_address: str
    partner_of: frozenset[str] = frozenset()
    can_assume: frozenset[str] = frozenset()
    rotation_of: str | None = None

    def bound_to(self, slug: str) -> bool:
        return slug in self.partner_of or slug in self.can_assume or slug == self.rotation_of


class Kind(enum.StrEnum):
    OBJECT = "object"
    BUCKET = "bucket"
    LOG_OBJECT = "access-log object"
    LOG_BUCKET = "access-log bucket"
    KEY = "key"
    SECRET = "secret"  # noqa: S105 - a resource kind, not a password
    ROLE = "partner role"


S3_KINDS = frozenset({Kind.OBJECT, Kind.BUCKET, Kind.LOG_OBJECT, Kind.LOG_BUCKET})


@dataclass(frozen=True)
class Target:
    """A resource of one customer."""

    customer: CustomerConfig
    kind: Kind
    arn: str
    label: str
    policy: str | None  # resource policy id in the batch
    bucket_arn: str  # the customer's data bucket (encryption context of its key)
    key_arn: str  # the customer's key
    object_key: str | None = None


@dataclass(frozen=True)
class Operation:
    """An action with the request-specific part of its context (headers, prefix, ...)."""

    action: str
    variant: str
    context: tuple[tuple[str, str | tuple[str, ...]], ...] = ()
    via_s3: bool = False

    @property
    def label(self) -> str:
        return f"{self.action} ({self.variant})" if self.variant else self.action

    def get(self, key: str) -> str | None:
        value = dict(self.context).get(key)
        return value if isinstance(value, str) or value is None else ",".join(value)


@dataclass(frozen=True)
class Network:
    """Transport and source address of a request."""

    transport: str  # "HTTP", "TLS 1.1", ...
    tls: float | None
    address: str
    address_label: str

    @property
    def label(self) -> str:
        return f"{self.transport} from {self.address_label}"


@dataclass(frozen=True)
class MatrixRequest:
    principal: Principal
    target: Target
    operation: Operation
    network: Network

    @property
    def customer(self) -> CustomerConfig:
        return self.target.customer


# --- the rules: when a request is expected to be allowed ------------------------------------


def _tls_ok(r: MatrixRequest) -> bool:
    return r.network.tls is not None and r.network.tls >= MINIMUM_TLS


def _address_allowed(r: MatrixRequest) -> bool:
    ranges = r.customer.allowed_source_ips
    address = ipaddress.ip_address(r.network.address)
    return not ranges or any(address in ipaddress.ip_network(cidr) for cidr in ranges)


def _encryption_ok(r: MatrixRequest) -> bool:
    """No encryption header (the bucket default: this customer's key), or SSE-KMS naming this
    customer's key. SSE-KMS without a key id is not: S3 would use the AWS managed key."""
    op = r.operation
    if op.get(SSE_C) is not None:
        return False
    algorithm, key = op.get(SSE), op.get(SSE_KEY)
    if algorithm is None:
        return key is None
    return algorithm == "aws:kms" and key == r.target.key_arn


def _own(r: MatrixRequest) -> bool:
    return r.principal.who is Who.PARTNER and r.customer.slug in r.principal.partner_of


def _partner_writes_inbound(r: MatrixRequest) -> bool:
    return (_own(r) and r.target.kind is Kind.OBJECT and r.operation.action == "s3:PutObject"
            and r.customer.allows(Direction.INBOUND)
            and (r.target.object_key or "").startswith(naming.INBOUND_PREFIX)
            and _tls_ok(r) and _address_allowed(r) and _encryption_ok(r))


def _partner_reads_outbound(r: MatrixRequest) -> bool:
    return (_own(r) and r.target.kind is Kind.OBJECT and r.operation.action == "s3:GetObject"
            and r.customer.allows(Direction.OUTBOUND)
            and (r.target.object_key or "").startswith(naming.OUTBOUND_PREFIX)
            and _tls_ok(r) and _address_allowed(r))


def _partner_lists(r: MatrixRequest) -> bool:
    if not (_own(r) and r.target.kind is Kind.BUCKET and r.operation.action == "s3:ListBucket"):
        return False
    prefix = r.operation.get("s3:prefix")
    under_own_prefix = prefix is not None and prefix.startswith(r.customer.prefixes)
    top_level = r.operation.get("s3:delimiter") == "/" and prefix in (None, "")
    return (under_own_prefix or top_level) and _tls_ok(r) and _address_allowed(r)


def _partner_finds_bucket_region(r: MatrixRequest) -> bool:
    return (_own(r) and r.target.kind is Kind.BUCKET
            and r.operation.action == "s3:GetBucketLocation"
            and _tls_ok(r) and _address_allowed(r))


def _partner_uses_key_through_s3(r: MatrixRequest) -> bool:
    if not (_own(r) and r.target.kind is Kind.KEY and r.operation.via_s3):
        return False
    return (r.operation.action == "kms:Decrypt"
            or (r.operation.action == "kms:GenerateDataKey"
                and r.customer.allows(Direction.INBOUND)))


def _partner_assumes_role(r: MatrixRequest) -> bool:
    return (r.principal.who is Who.PARTNER_HOME and r.customer.slug in r.principal.can_assume
            and r.target.kind is Kind.ROLE and r.operation.action == "sts:AssumeRole"
            and r.operation.get("sts:ExternalId") == r.customer.external_id)


def _admin(r: MatrixRequest) -> bool:
    if r.principal.who is not Who.ADMIN or r.target.kind is Kind.ROLE:
        return False
    if r.target.kind not in S3_KINDS:
        return True
    if r.target.kind is Kind.OBJECT and r.operation.action == "s3:PutObject":
        return _tls_ok(r) and _encryption_ok(r)
    return _tls_ok(r)


def _insider(r: MatrixRequest) -> bool:
    return (r.principal.who is Who.INSIDER and r.target.kind in S3_KINDS
            and r.operation.action.startswith(("s3:Get", "s3:List")) and _tls_ok(r))


def _rotation(r: MatrixRequest) -> bool:
    if r.principal.who is not Who.ROTATION or r.principal.rotation_of != r.customer.slug:
        return False
    if r.target.kind is Kind.SECRET:
        return r.operation.action == "secretsmanager:GetSecretValue"
    return r.target.kind is Kind.KEY and r.operation.action in ("kms:Decrypt",
                                                                "kms:GenerateDataKey")


@dataclass(frozen=True)
class Rule:
    name: str
    says: str
    allows: Callable[[MatrixRequest], bool]


RULES: tuple[Rule, ...] = (
    Rule("partner-writes-inbound",
         "A partner may write (PutObject) only under inbound/ of its own bucket, only if its "
         "customer sends inbound, over TLS >= 1.2, from an allowed source address, naming no "
         "encryption (the bucket default) or SSE-KMS with its own customer's key.",
         _partner_writes_inbound),
    Rule("partner-reads-outbound",
         "A partner may read (GetObject) only under outbound/ of its own bucket, only if its "
         "customer receives outbound, over TLS >= 1.2, from an allowed source address.",
         _partner_reads_outbound),
    Rule("partner-lists-own-prefixes",
         "A partner may list its own bucket only under its own prefixes, or its top level with "
         "delimiter '/', over TLS >= 1.2, from an allowed source address.", _partner_lists),
    Rule("partner-finds-own-bucket-region",
         "A partner may ask its own bucket's region (GetBucketLocation, what desktop clients "
         "do first), over TLS >= 1.2, from an allowed source address.",
         _partner_finds_bucket_region),
    Rule("partner-uses-own-key-through-s3",
         "A partner may use its own customer's key only through S3 for its own bucket: Decrypt, "
         "and GenerateDataKey if it sends inbound. Never directly.",
         _partner_uses_key_through_s3),
    Rule("partner-assumes-role-with-external-id",
         "An assume-role partner's own principal may assume its partner role, only with its "
         "external id.", _partner_assumes_role),
    Rule("admin-within-transport-and-encryption",
         "Our administrator may do anything to every customer's bucket, key and secret, except "
         "S3 requests without TLS >= 1.2 and uploads naming other encryption than the "
         "customer's key; it cannot assume a partner role.", _admin),
    Rule("insider-reads-s3-but-never-decrypts",
         "An insider with S3 read-only access may call S3 Get*/List* over TLS >= 1.2, and no "
         "KMS action: it never decrypts an object.", _insider),
    Rule("rotation-reads-own-secret-and-key",
         "A rotation function may read its customer's secret and use its customer's key.",
         _rotation),
)
DENY_RULE = "nothing-else"
DENY_SAYS = ("Everything else is denied: deletes, ACL and policy changes, other customers' "
             "resources, unrelated accounts, anonymous callers, plain HTTP, old TLS, other "
             "addresses, other keys.")


def expected(request: MatrixRequest) -> tuple[bool, str]:
    """(allowed?, name of the rule that decides)."""
    for rule in RULES:
        if rule.allows(request):
            return True, rule.name
    return False, DENY_RULE


# --- building the matrix from synthesized templates -----------------------------------------


OBJECT_KEYS = (
    ("inbound/", "inbound/claims-2026-11.csv"),
    ("outbound/", "outbound/remittance-2026-11.csv"),
    ("bucket root", "claims-2026-11.csv"),
    ("other prefix", "archive/claims-2026-10.csv"),
    ("look-alike prefix", "inbound-archive/claims-2026-10.csv"),
    ("other case", "Inbound/claims-2026-11.csv"),
)
FOREIGN_OBJECT_KEYS = OBJECT_KEYS[:3]
LOG_OBJECT_KEY = "data-bucket/2026-11-28-06-17-00-0123456789ABCDEF"

TRANSPORTS: tuple[tuple[str, float | None], ...] = (
    ("HTTP", None), ("TLS 1.1", 1.1), ("TLS 1.2", 1.2), ("TLS 1.3", 1.3))
API_TRANSPORTS = TRANSPORTS[-1:]  # KMS, STS and Secrets Manager endpoints are HTTPS only

LISTINGS: tuple[tuple[str, dict[str, str]], ...] = (
    ("prefix inbound/", {"s3:prefix": "inbound/"}),
    ("prefix inbound/2026/", {"s3:prefix": "inbound/2026/"}),
    ("prefix outbound/", {"s3:prefix": "outbound/"}),
    ("top level, prefix '' and delimiter /", {"s3:prefix": "", "s3:delimiter": "/"}),
    ("top level, delimiter /", {"s3:delimiter": "/"}),
    ("everything", {}),
    ("prefix archive/", {"s3:prefix": "archive/"}),
    ("prefix 'inbound' without slash", {"s3:prefix": "inbound", "s3:delimiter": "/"}),
)
FOREIGN_LISTINGS = tuple(x for x in LISTINGS if x[0] in (
    "prefix inbound/", "prefix outbound/", "top level, delimiter /", "everything"))

def _encryptions(target: Target, other_key: str) -> list[tuple[str, dict[str, str]]]:
    return [
        ("no SSE header (UploadPart sends none)", {}),
        ("SSE-KMS, no key id", {SSE: "aws:kms"}),
        ("SSE-KMS, own key", {SSE: "aws:kms", SSE_KEY: target.key_arn}),
        ("SSE-KMS, another customer's key", {SSE: "aws:kms", SSE_KEY: other_key}),
        ("SSE-KMS, a key in an unrelated account", {SSE: "aws:kms", SSE_KEY: STRANGER_KEY_ARN}),
        ("DSSE-KMS, own key", {SSE: "aws:kms:dsse", SSE_KEY: target.key_arn}),
        ("SSE-S3", {SSE: "AES256"}),
        ("SSE-C", {SSE_C: "AES256"}),
    ]


def _op(action: str, variant: str = "", context: Mapping[str, Any] | None = None,
        *, via_s3: bool = False) -> Operation:
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                         for k, v in (context or {}).items()))
    return Operation(action=action, variant=variant, context=items, via_s3=via_s3)


def operations(target: Target, *, full: bool, other_key: str) -> list[Operation]:
    """What is asked of ``target``: every operation (``full``), or the ones most likely to be
    allowed (other customers' resources; see :func:`build_requests`)."""
    deletes = [_op("s3:GetObject"), _op("s3:DeleteObject"), _op("s3:DeleteObjectVersion"),
               _op("s3:PutObjectAcl")]
    if target.kind is Kind.OBJECT:
        encryptions = _encryptions(target, other_key)
        if not full:
            encryptions = [encryptions[0], encryptions[2]]
        return [_op("s3:PutObject", name, ctx) for name, ctx in encryptions] + deletes
    if target.kind is Kind.LOG_OBJECT:
        return [_op("s3:PutObject", "no SSE header"), *deletes]
    if target.kind is Kind.BUCKET:
        listings = LISTINGS if full else FOREIGN_LISTINGS
        return [_op("s3:ListBucket", name, ctx) for name, ctx in listings] + [
            _op("s3:GetBucketLocation"), _op("s3:PutBucketPolicy"),
            _op("s3:PutBucketVersioning"), _op("s3:PutLifecycleConfiguration")]
    if target.kind is Kind.LOG_BUCKET:
        return [_op("s3:ListBucket", "everything"), _op("s3:PutBucketPolicy"),
                _op("s3:PutLifecycleConfiguration")]
    if target.kind is Kind.KEY:
        s3_context = {"kms:EncryptionContext:aws:s3:arn": target.bucket_arn}
        via = {"kms:ViaService": S3_SERVICE, "aws:ViaAWSService": "true",
               "aws:CalledVia": ["s3.amazonaws.com"], **s3_context}
        return [
            _op("kms:Decrypt", "through S3", via, via_s3=True),
            _op("kms:Decrypt", "direct, with the S3 encryption context", s3_context),
            _op("kms:GenerateDataKey", "through S3", via, via_s3=True),
            _op("kms:GenerateDataKey", "direct, with the S3 encryption context", s3_context),
            _op("kms:ScheduleKeyDeletion"),
            _op("kms:PutKeyPolicy"),
        ]
    if target.kind is Kind.SECRET:
        return [_op("secretsmanager:GetSecretValue")]
    external_id = target.customer.external_id or ""
    return [
        _op("sts:AssumeRole", "with its external id", {"sts:ExternalId": external_id}),
        _op("sts:AssumeRole", "with another external id",
            {"sts:ExternalId": external_id[::-1] or "guessed-external-id"}),
        _op("sts:AssumeRole", "without external id"),
    ]


def networks(customer: CustomerConfig, target: Target, *, full: bool,
             home_address: str) -> list[Network]:
    """Transports times source addresses: one inside each allowed range and one outside (or
    any address, when the customer sets no range). Not ``full``: TLS 1.3 from the caller's
    usual address only."""
    if not full:
        return [Network("TLS 1.3", 1.3, home_address, "its usual address")]
    if customer.allowed_source_ips:
        addresses = [(_first_address(cidr), f"inside {cidr}")
                     for cidr in customer.allowed_source_ips]
        addresses.append((ANY_ADDRESS_V4, "outside the allowed ranges"))
        if any(ipaddress.ip_network(c).version == 6 for c in customer.allowed_source_ips):
            addresses.append((ANY_ADDRESS_V6, "outside the allowed ranges (IPv6)"))
    else:
        addresses = [(ANY_ADDRESS_V4, "any address")]
    transports = TRANSPORTS if target.kind in S3_KINDS else API_TRANSPORTS
    return [Network(name, tls, address, where)
            for name, tls in transports for address, where in addresses]


def _first_address(cidr: str) -> str:
    network = ipaddress.ip_network(cidr)
    return str(next(iter(network.hosts()), network.network_address))


@dataclass
class Universe:
    """Everything the matrix needs from the synthesized app."""

    customers: dict[str, CustomerConfig]
    policies: dict[str, StackPolicies]  # slug ->
    principals: list[Principal]
    targets: dict[str, list[Target]]  # slug ->
    documents: dict[str, Any] = field(default_factory=dict)  # policy id -> document


class MatrixError(Exception):
    """The synthesized app lacks something the model expects (a user, a role, a key...)."""


def build_universe(customers: Sequence[CustomerConfig], app: SynthesizedApp) -> Universe:
    """Resolve each customer's template and derive its principals and targets."""
    universe = Universe(customers={c.slug: c for c in customers}, policies={}, principals=[],
                        targets={})
    for customer in customers:
        stack_name = naming.stack_name(customer.slug)
        resolved = _resolve(app.templates[stack_name], stack_name)
        universe.policies[customer.slug] = collect_policies(resolved)
    for customer in customers:
        universe.targets[customer.slug] = _targets(customer, universe)
    universe.principals = _principals(customers, universe)
    return universe


def _policy_id(universe: Universe, name: str, document: Any) -> str:
    universe.documents.setdefault(name, document)
    return name


def _targets(customer: CustomerConfig, universe: Universe) -> list[Target]:
    slug = customer.slug
    policies = universe.policies[slug]
    bucket = naming.data_bucket_name(slug, ACCOUNT, REGION)
    log_bucket = naming.log_bucket_name(slug, ACCOUNT, REGION)
    key_arn = policies.key_aliases.get(naming.key_alias(slug))
    if key_arn is None:
        raise MatrixError(f"{slug}: no key with alias {naming.key_alias(slug)}")
    for name in (bucket, log_bucket):
        if name not in policies.bucket_policies:
            raise MatrixError(f"{slug}: no bucket policy for {name}")
    bucket_policy = policies.bucket_policies[bucket]
    log_policy = policies.bucket_policies[log_bucket]
    target = partial(Target, customer=customer, bucket_arn=f"arn:aws:s3:::{bucket}",
                     key_arn=key_arn)
    data_policy_id = _policy_id(universe, bucket_policy.name, bucket_policy.document)
    log_policy_id = _policy_id(universe, log_policy.name, log_policy.document)
    targets = [
        target(kind=Kind.OBJECT, arn=f"arn:aws:s3:::{bucket}/{key}", label=f"{slug} {where}",
               policy=data_policy_id, object_key=key)
        for where, key in OBJECT_KEYS
    ]
    targets += [
        target(kind=Kind.BUCKET, arn=f"arn:aws:s3:::{bucket}", label=f"{slug} bucket",
               policy=data_policy_id),
        target(kind=Kind.LOG_OBJECT, arn=f"arn:aws:s3:::{log_bucket}/{LOG_OBJECT_KEY}",
               label=f"{slug} access log", policy=log_policy_id, object_key=LOG_OBJECT_KEY),
        target(kind=Kind.LOG_BUCKET, arn=f"arn:aws:s3:::{log_bucket}",
               label=f"{slug} access-log bucket", policy=log_policy_id),
    ]
    key_policy = policies.key_policies[key_arn]
    targets.append(target(kind=Kind.KEY, arn=key_arn, label=f"{slug} key",
                          policy=_policy_id(universe, key_policy.name, key_policy.document)))
    if customer.access is AccessMode.IAM_USER:
        secret_arn = policies.secrets.get(naming.partner_secret_name(slug))
        if secret_arn is None:
            raise MatrixError(f"{slug}: no secret {naming.partner_secret_name(slug)}")
        secret_policy = policies.secret_policies.get(secret_arn)
        targets.append(target(
            kind=Kind.SECRET, arn=secret_arn, label=f"{slug} secret",
            policy=(_policy_id(universe, secret_policy.name, secret_policy.document)
                    if secret_policy else None)))
    if customer.access is AccessMode.ASSUME_ROLE:
        role_arn = _role_arn(policies, naming.partner_role_name(slug), slug)
        trust = policies.trust_policies[role_arn]
        targets.append(target(kind=Kind.ROLE, arn=role_arn, label=f"{slug} partner role",
                              policy=_policy_id(universe, trust.name, trust.document)))
    return targets


def _role_arn(policies: StackPolicies, name: str, slug: str) -> str:
    if name not in policies.role_names:
        raise MatrixError(f"{slug}: no role {name}")
    return policies.role_names[name]


def _session(role_arn: str, session: str) -> str:
    """The STS session ARN of a role ARN (the role's path is not part of it)."""
    prefix, name = role_arn.split(":role/", 1)
    return f"{prefix.replace(':iam::', ':sts::')}:assumed-role/{name.rsplit('/', 1)[-1]}/{session}"


def _home_address(customer: CustomerConfig) -> str:
    if customer.allowed_source_ips:
        return _first_address(customer.allowed_source_ips[0])
    return ANY_ADDRESS_V4


def _principals(customers: Sequence[CustomerConfig], universe: Universe) -> list[Principal]:
    allow_all = _policy_id(universe, "(partner account) allow everything", ALLOW_EVERYTHING)
    result: list[Principal] = []
    external: dict[str, Principal] = {}  # request ARN -> the partner's own principal

    def identity(slug: str, arn: str) -> tuple[str, ...]:
        policies = universe.policies[slug].identity_policies.get(arn)
        if policies is None:
            raise MatrixError(f"{slug}: no identity policies for {arn}")
        return tuple(_policy_id(universe, p.name, p.document) for p in policies)

    for customer in customers:
        slug = customer.slug
        policies = universe.policies[slug]
        home = _home_address(customer)
        if customer.access is AccessMode.IAM_USER:
            user = policies.user_names.get(naming.partner_user_name(slug))
            if user is None:
                raise MatrixError(f"{slug}: no user {naming.partner_user_name(slug)}")
            result.append(Principal(f"{slug} partner (IAM user)", Who.PARTNER, user, user,
                                    ACCOUNT, identity(slug, user), home,
                                    partner_of=frozenset({slug})))
            function = naming.rotation_function_name(slug)
            if function not in policies.function_roles:
                raise MatrixError(f"{slug}: no rotation function {function}")
            role = policies.function_roles[function]
            result.append(Principal(f"{slug} rotation function", Who.ROTATION,
                                    _session(role, function), role, ACCOUNT,
                                    identity(slug, role), ANY_ADDRESS_V4, rotation_of=slug))
        elif customer.access is AccessMode.ASSUME_ROLE:
            role = _role_arn(policies, naming.partner_role_name(slug), slug)
            result.append(Principal(f"{slug} partner (session of our role)", Who.PARTNER,
                                    _session(role, "partner-session"), role, ACCOUNT,
                                    identity(slug, role), home, partner_of=frozenset({slug})))
        for entry in customer.partner_principals:
            if ACCOUNT_ID_PATTERN.match(entry):
                account, principal_arn = entry, f"arn:aws:iam::{entry}:role/any-role"
                label = f"any principal of account {entry}"
            else:
                account, principal_arn = entry.split(":")[4], entry
                label = entry.split(":", 5)[5]
            arn = (_session(principal_arn, "transfer") if ":role/" in principal_arn
                   else principal_arn)
            previous = external.get(arn)
            if previous is None:
                previous = Principal(f"{label} ({account})", Who.PARTNER, arn, principal_arn,
                                     account, (allow_all,), home)
            if customer.access is AccessMode.CROSS_ACCOUNT:
                previous = replace(previous, partner_of=previous.partner_of | {slug})
            else:
                previous = replace(previous, can_assume=previous.can_assume | {slug},
                                    who=(Who.PARTNER if previous.partner_of
                                         else Who.PARTNER_HOME))
            external[arn] = previous
    result.extend(external.values())

    admin = _policy_id(universe, "(our account) AdministratorAccess", ALLOW_EVERYTHING)
    read_only = _policy_id(universe, "(our account) AmazonS3ReadOnlyAccess", S3_READ_ONLY)
    stranger = _policy_id(universe, "(unrelated account) allow everything", ALLOW_EVERYTHING)
    ours = f"arn:aws:iam::{ACCOUNT}:role"
    result += [
        Principal("our administrator", Who.ADMIN, _session(f"{ours}/{ADMIN_ROLE}", "admin"),
                  f"{ours}/{ADMIN_ROLE}", ACCOUNT, (admin,), ANY_ADDRESS_V4),
        Principal("insider with S3 read-only", Who.INSIDER,
                  _session(f"{ours}/{INSIDER_ROLE}", "analyst"), f"{ours}/{INSIDER_ROLE}",
                  ACCOUNT, (read_only,), ANY_ADDRESS_V4),
        Principal("unrelated account", Who.STRANGER,
                  f"arn:aws:sts::{STRANGER_ACCOUNT}:assumed-role/Intruder/session",
                  f"arn:aws:iam::{STRANGER_ACCOUNT}:role/Intruder", STRANGER_ACCOUNT,
                  (stranger,), ANY_ADDRESS_V4),
        Principal("anonymous", Who.ANONYMOUS, None, None, None, (), ANY_ADDRESS_V4),
    ]
    return result


def build_requests(universe: Universe) -> Iterator[MatrixRequest]:
    """Every request of the matrix.

    A principal is asked everything, in every context, about the resources of the customers it
    belongs to, and global principals (administrator, insider, unrelated account, anonymous)
    about every customer. About other customers' resources, a partner or rotation function is
    asked the operations most likely to succeed (reads, writes with that bucket's own key,
    deletes, listings) over TLS 1.3 from its usual address: the rules deny all of them
    whatever the context, so the context dimensions add nothing there but run time.
    """
    slugs = sorted(universe.customers)
    keys = {slug: universe.targets[slug][0].key_arn for slug in slugs}
    for principal in universe.principals:
        for index, slug in enumerate(slugs):
            customer = universe.customers[slug]
            other_key = keys[slugs[(index + 1) % len(slugs)]]
            full = principal.who in GLOBAL or principal.bound_to(slug)
            for target in universe.targets[slug]:
                if not full and target.kind is Kind.OBJECT and target.object_key not in {
                        key for _, key in FOREIGN_OBJECT_KEYS}:
                    continue
                ops = operations(target, full=full, other_key=other_key)
                nets = networks(customer, target, full=full, home_address=principal.home_address)
                for operation in ops:
                    for network in nets:
                        yield MatrixRequest(principal, target, operation, network)


def to_evaluator_request(request: MatrixRequest) -> evaluator.Request:
    """The request as IAM sees it: principal, action, resource, and its context keys."""
    principal, target, operation, network = (request.principal, request.target,
                                             request.operation, request.network)
    context: dict[str, str | list[str]] = {}
    if principal.arn is not None:
        assert principal.principal_arn is not None and principal.account is not None
        context["aws:PrincipalArn"] = principal.principal_arn
        context["aws:PrincipalAccount"] = principal.account
        context["aws:PrincipalType"] = "User" if ":user/" in principal.arn else "AssumedRole"
    context["aws:SecureTransport"] = "true" if network.tls is not None else "false"
    if not operation.via_s3:  # S3 calls KMS from its own addresses
        context["aws:SourceIp"] = network.address
    if target.kind in S3_KINDS:
        if network.tls is not None:
            context["s3:TlsVersion"] = str(network.tls)
        context["s3:authType"] = "REST-HEADER"
        context["s3:signatureversion"] = "AWS4-HMAC-SHA256"
    if target.kind is Kind.KEY and principal.account is not None:
        context["kms:CallerAccount"] = principal.account
    for key, value in operation.context:
        context[key] = list(value) if isinstance(value, tuple) else value
    return evaluator.Request(
        principal=principal.arn,
        action=operation.action,
        resource=target.arn,
        resource_account=ACCOUNT,
        context=context,
        identity_policies=principal.policies,
        resource_policy=target.policy,
    )


# --- running it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    request: MatrixRequest
    expected: bool
    rule: str
    decision: evaluator.Decision

    @property
    def agrees(self) -> bool:
        return self.decision.decision != "Error" and self.expected == self.decision.allowed


@dataclass
class MatrixResult:
    outcomes: list[Outcome]
    evaluator: str
    seconds: float

    @property
    def unexpected_allows(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.decision.allowed and not o.expected]

    @property
    def denied_expected_allows(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.decision.allowed and o.expected]

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.decision.decision == "Error"]

    def dimensions(self) -> dict[str, int]:
        """Distinct principals, actions, resources and contexts in the matrix."""
        return {
            "principals": len({o.request.principal.label for o in self.outcomes}),
            "actions": len({o.request.operation.action for o in self.outcomes}),
            "resources": len({o.request.target.arn for o in self.outcomes}),
            "contexts": len({(o.request.operation.variant, o.request.network.label)
                             for o in self.outcomes}),
        }

    def size_line(self) -> str:
        d = self.dimensions()
        return (f"access matrix: {d['principals']} principals x {d['actions']} actions x "
                f"{d['resources']} resources x {d['contexts']} contexts: "
                f"{len(self.outcomes)} applicable requests evaluated by {self.evaluator} in "
                f"{self.seconds:.1f} s; {sum(o.decision.allowed for o in self.outcomes)} "
                f"allowed, {len(self.unexpected_allows)} unexpected allows, "
                f"{len(self.denied_expected_allows)} expected allows denied, "
                f"{len(self.errors)} evaluator errors")


def run_matrix(universe: Universe, *, workers: int | None = None) -> MatrixResult:
    """Evaluate every request of the matrix in one evaluator batch."""
    requests = list(build_requests(universe))
    batch = evaluator.Batch(policies=universe.documents,
                            requests=[to_evaluator_request(r) for r in requests])
    started = time.monotonic()
    decisions = evaluator.evaluate(batch, workers=workers)
    seconds = time.monotonic() - started
    outcomes = [Outcome(r, *expected(r), decision=d) for r, d in zip(requests, decisions,
                                                                      strict=True)]
    return MatrixResult(outcomes=outcomes, evaluator=f"iam-simulate "
                        f"{evaluator.evaluator_version()}", seconds=seconds)


def describe(outcome: Outcome) -> str:
    """One line: the request, what the rules expect, what the evaluator decided and why."""
    r = outcome.request
    decisive = outcome.decision.deny or outcome.decision.allow
    return (f"{r.principal.label} | {r.operation.label} | {r.target.label} ({r.target.arn}) | "
            f"{r.network.label} | expected {'allow' if outcome.expected else 'deny'} "
            f"({outcome.rule}) | evaluator: {outcome.decision.decision}"
            + (f" by {', '.join(decisive)}" if decisive else "")
            + (f" | error: {outcome.decision.error}" if outcome.decision.error else ""))


def allowed_table(outcomes: Iterable[Outcome]) -> list[tuple[str, str, str, str, str]]:
    """The allowed part of the matrix, one row per principal, resource and operation, with the
    contexts it is allowed in (rows sorted)."""
    groups: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for o in outcomes:
        if o.decision.allowed:
            r = o.request
            key = (r.principal.label, r.target.label, r.operation.label, o.rule)
            groups[key].append(r.network.label)
    rows = []
    for (principal, target, operation, rule), nets in sorted(groups.items()):
        unique = sorted(set(nets))
        rows.append((principal, target, operation, "; ".join(unique), rule))
    return rows


def format_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "-+-".join("-" * w for w in widths)]
    out += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def rule_summary(outcomes: Iterable[Outcome]) -> Counter[str]:
    return Counter(o.rule for o in outcomes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m security.access_matrix",
        description="Evaluate the access matrix of the synthesized customer stacks offline and "
        "print its allowed part for auditors.")
    parser.add_argument("--registry", type=Path, default=REPO / "customers",
                        help="customer registry directory (default: customers/)")
    parser.add_argument("--registry-only", action="store_true",
                        help="skip the built-in variants (one per access mode and direction)")
    parser.add_argument("--csv", type=Path,
                        help="also write every evaluated request and its decision to this file")
    args = parser.parse_args(argv)

    customers = matrix_customers(args.registry)
    if args.registry_only:
        customers = [c for c in customers if c.slug not in {v["slug"] for v in VARIANTS}]
    with tempfile.TemporaryDirectory(prefix="access-matrix-") as outdir:
        app = synthesize(customers, Path(outdir))
        universe = build_universe(customers, app)
    result = run_matrix(universe)

    print("Rules (a request is allowed only if one of them says so):")
    for rule in RULES:
        print(f"  {rule.name}: {rule.says}")
    print(f"  {DENY_RULE}: {DENY_SAYS}\n")
    print("Allowed requests:")
    print(format_table(allowed_table(result.outcomes),
                       ("principal", "resource", "action", "allowed contexts", "rule")))
    print()
    if args.csv:
        with args.csv.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("principal", "action", "resource", "arn", "context", "expected",
                             "rule", "decision", "statements"))
            for o in result.outcomes:
                r = o.request
                writer.writerow((r.principal.label, r.operation.label, r.target.label,
                                 r.target.arn, r.network.label,
                                 "allow" if o.expected else "deny", o.rule, o.decision.decision,
                                 " ".join(o.decision.deny or o.decision.allow)))
        print(f"every request: {args.csv}")
    disagreements = [o for o in result.outcomes if not o.agrees]
    for outcome in disagreements:
        print(f"DISAGREES: {describe(outcome)}")
    print(result.size_line())
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
