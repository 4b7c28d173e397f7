"""The access matrix: who may do what to which resource of our stacks, proven offline.

Synthesizes every stack (the audit stack and customers: the registry plus one variant for every
access mode, direction set and offboarded state, with and without source-IP limits), resolves
the templates to literal ARNs (:mod:`security.templates`), and asks an IAM policy evaluator
(:mod:`security.evaluator`) about

- principals: each customer's partner (its IAM user, a session of our partner role, its own
  cross-account principals), an assume-role partner's own principal, an offboarded partner,
  each rotation function's role, the trail's log delivery role, the account's roles (deployment,
  CDK deploy, importer, operator, break-glass), a partner's session credentials, an
  administrator without break-glass, an insider with PowerUserAccess, an insider
  with S3 read-only access, an unrelated account, an anonymous caller, and AWS services
  (CloudTrail, S3 log delivery, EventBridge, CloudWatch alarms, Secrets Manager, CloudWatch
  Logs), each on behalf of one of our resources and on behalf of somebody else's;
- resources: every customer's objects, buckets, access logs, key, secret, IAM user, role,
  topic, function, queues and log groups; the audit stack's custody objects and bucket, its
  access logs, key, queues, log group and role;
- actions: a curated set in every request context (TLS or not and its version, encryption
  headers, source addresses, listing prefixes, external ids), the exact requests of every
  service contract and of every role's calls, and **every action** IAM's service reference
  knows for each resource type (one context each);

and compares each decision with :mod:`security.matrix_rules` (the oracle). A request is
expected to be allowed if and only if some rule allows it.

Requests that no statement of the principal's identity policies, nor of the resource's
policy, could allow (no Allow whose action pattern matches, and for a resource
policy no principal that could be the caller) are decided without the evaluator: implicitly
denied. That is sound by IAM's evaluation logic (an allow needs a matching Allow statement;
across accounts, one in the resource policy), and tests/security check it on a sample.

``python -m security.access_matrix`` prints the rules, the allowed part of the matrix for
auditors, every disagreement and the matrix size (exit 1 on any disagreement).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import functools
import ipaddress
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from phi_core import identifiers, malware_gate, naming
from security import evaluator
from security.action_catalog import action_info, actions_for
from security.matrix_model import (
    ACCESS,
    ACCOUNT,
    AUDIT,
    GLOBAL,
    PIPELINE_ACCOUNT,
    PIPELINE_ROLE,
    REGION,
    S3_KINDS,
    SSE,
    SSE_C,
    SSE_KEY,
    STRANGER_ACCOUNT,
    Kind,
    MatrixRequest,
    Network,
    Operation,
    Part,
    Principal,
    RoleCall,
    Source,
    Target,
    Who,
    via,
)
from security.matrix_rules import (
    ALARMS,
    CLOUDFORMATION,
    CLOUDTRAIL,
    CONTRACTS,
    DENY_RULE,
    DENY_SAYS,
    EVENTS_CERTIFICATES,
    EVENTS_INGESTION,
    EVENTS_SWEEP,
    EVENTS_TAMPER,
    GUARDDUTY_PLAN,
    LOGS,
    REQUEST_TAG_KEYS,
    ROLES_ANYWHERE,
    RULES,
    S3_LOGGING,
    SECRETS,
    TAG_PREFIX,
    certificate_subject_context,
    expected,
    rotation_role_calls,
)
from security.synth import REPO, SynthesizedApp, synthesize
from security.templates import StackPolicies, collect_policies
from security.templates import resolve_template as _resolve
from stacks.config import (
    AccessMode,
    CustomerConfig,
    load_registry,
    parse_customer,
)

# Addresses outside every range the registry and the variants below allow.
ANY_ADDRESS_V4 = "198.18.0.10"  # RFC 2544 benchmarking range: nobody's office
ANY_ADDRESS_V6 = "2001:db8:ffff::10"

STRANGER_KEY_ARN = (f"arn:aws:kms:{REGION}:{STRANGER_ACCOUNT}:"
                    "key/0b5e7c9a-6f41-4d7e-9a55-3c1f0e2d8b77")
ADMIN_ROLE = "Administrator"
POWER_USER_ROLE = "Developer"
INSIDER_ROLE = "DataAnalyst"

ALLOW_EVERYTHING = {"Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
# AWS's AmazonS3ReadOnlyAccess, written out (the evaluator cannot fetch AWS managed policies).
S3_READ_ONLY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": ["s3:Get*", "s3:List*", "s3:Describe*"], "Resource": "*"}]}
# AWS's PowerUserAccess (version 5), written out: everything but IAM, Organizations and Account
# management, which includes s3:GetObject, kms:Decrypt and sts:AssumeRole on everything.
POWER_USER_ACCESS = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*", "account:*"],
     "Resource": "*"},
    {"Effect": "Allow", "Action": ["account:GetAccountInformation", "account:GetPrimaryEmail",
                                   "account:ListRegions", "iam:CreateServiceLinkedRole",
                                   "iam:DeleteServiceLinkedRole", "iam:ListRoles",
                                   "organizations:DescribeOrganization"],
     "Resource": "*"}]}


def former_grant(bucket_arn: str, key_arn: str) -> dict[str, Any]:
    """What an offboarded partner's own principal in our account may still hold: any S3 right
    on its former bucket, and its key through S3. The bucket policy's explicit deny must stop
    all of it."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": [bucket_arn, f"{bucket_arn}/*"]},
        {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
         "Resource": key_arn, "Condition": {"StringEquals": {"kms:ViaService": via("s3")}}}]}

# The registry's roles-anywhere example CA (its key is the partner's, nowhere here): the
# variants below share it, with their own subjects and trust anchors.
_EXAMPLE_CA = (REPO / "customers" / "hooli-ca.pem").read_text()

# One customer per access mode, direction set and offboarded state, beside the registry, so
# every combination is evaluated whatever the registry holds. Partner accounts are distinct
# and unrelated to STRANGER_ACCOUNT; address ranges are documentation ranges.
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
     "partner_principals": ["300000000005"], "external_id": "mx-role-in-external-id-0001",
     # Opted out of the malware gate: no scanner, the scan tag still nobody else's.
     "malware_scan": {"enabled": False,
                      "reason": "Matrix variant: a partner opted out of the malware gate."}},
    {"slug": "mx-role-out", "access": "assume-role", "directions": ["outbound"],
     "partner_principals": ["arn:aws:iam::300000000006:role/download"],
     "external_id": "mx-role-out-external-id-0001",
     "allowed_source_ips": ["198.51.100.128/25"]},
    {"slug": "mx-role-both", "access": "assume-role",
     "partner_principals": ["arn:aws:iam::300000000007:role/sync",
                            "arn:aws:iam::300000000008:user/sync-bot"],
     "external_id": "mx-role-both-external-id-0001",
     "allowed_source_ips": ["2001:db8:cc::/48"]},
    # The same CA as the registry's roles-anywhere example, another subject and trust anchor:
    # neither partner's certificates open the other's role.
    {"slug": "mx-cert-in", "access": "roles-anywhere", "directions": ["inbound"],
     "roles_anywhere": {"ca_bundle": _EXAMPLE_CA, "subject": {"CN": "mx-cert-in-upload"}}},
    {"slug": "mx-cert-out", "access": "roles-anywhere", "directions": ["outbound"],
     "allowed_source_ips": ["203.0.113.128/25"],
     "roles_anywhere": {"ca_bundle": _EXAMPLE_CA,
                        "subject": {"CN": "mx-cert-out-transfer", "OU": "Remittances"}}},
    {"slug": "mx-cert-both", "access": "roles-anywhere",
     "allowed_source_ips": ["2001:db8:dd::/48"],
     "roles_anywhere": {"ca_bundle": _EXAMPLE_CA, "subject": {"CN": "mx-cert-both-sync"}}},
    # Offboarded: data kept, every way in gone, an explicit deny for whatever is left.
    {"slug": "mx-gone-user", "access": "iam-user", "offboarded": True},
    {"slug": "mx-gone-xacct", "access": "cross-account", "offboarded": True,
     "partner_principals": ["arn:aws:iam::300000000009:role/old-upload", "300000000010"]},
    {"slug": "mx-gone-role", "access": "assume-role", "offboarded": True,
     "partner_principals": ["arn:aws:iam::300000000011:role/old-sync"],
     "external_id": "mx-gone-role-external-id-0001"},
    {"slug": "mx-gone-cert", "access": "roles-anywhere", "offboarded": True,
     "roles_anywhere": {"ca_bundle": _EXAMPLE_CA, "subject": {"CN": "mx-gone-cert-sync"}}},
)


def variant_customers() -> list[CustomerConfig]:
    return [parse_customer({"contacts": ["security@example.org"], **data},
                           source=f"(matrix variant) {data['slug']}") for data in VARIANTS]


def matrix_customers(registry: Path | None = REPO / "customers") -> list[CustomerConfig]:
    """The registry's customers (none if ``registry`` is None) plus :data:`VARIANTS`."""
    customers = list(load_registry(registry).values()) if registry is not None else []
    taken = {c.slug for c in customers}
    return customers + [c for c in variant_customers() if c.slug not in taken]


# --- the universe: what the synthesized app holds ------------------------------------------


class MatrixError(Exception):
    """The synthesized app lacks something the model expects (a user, a role, a key...)."""


@dataclass
class Universe:
    """Everything the matrix needs from the synthesized app."""

    customers: dict[str, CustomerConfig]
    policies: dict[str, StackPolicies]  # owner (slug or AUDIT) ->
    principals: list[Principal]
    targets: dict[str, list[Target]]  # owner ->
    documents: dict[str, Any] = field(default_factory=dict)  # policy id -> document

    def target(self, owner: str, part: Part, kind: Kind | None = None) -> Target:
        for t in self.targets[owner]:
            if t.part is part and (kind is None or t.kind is kind) and t.object_key is None:
                return t
        raise MatrixError(f"{owner}: no {part}")


def build_universe(customers: Sequence[CustomerConfig], app: SynthesizedApp) -> Universe:
    """Resolve every stack's template and derive its principals and targets."""
    universe = Universe(customers={c.slug: c for c in customers}, policies={}, principals=[],
                        targets={})
    stacks = {c.slug: naming.stack_name(c.slug) for c in customers}
    stacks[AUDIT] = naming.AUDIT_STACK_NAME
    stacks[ACCESS] = naming.ACCESS_STACK_NAME
    for owner, stack_name in stacks.items():
        if stack_name not in app.templates:
            raise MatrixError(f"{owner}: stack {stack_name} was not synthesized")
        universe.policies[owner] = collect_policies(_resolve(app.templates[stack_name],
                                                             stack_name))
    for customer in customers:
        universe.targets[customer.slug] = _customer_targets(customer, universe)
    universe.targets[AUDIT] = _audit_targets(universe)
    universe.targets[ACCESS] = _access_targets(universe)
    universe.principals = _principals(customers, universe)
    return universe


def _policy_id(universe: Universe, name: str, document: Any) -> str:
    universe.documents.setdefault(name, document)
    return name


def _named(universe: Universe, policy: Any) -> str | None:
    return _policy_id(universe, policy.name, policy.document) if policy else None


def _need(index: Mapping[str, str], name: str, owner: str, what: str) -> str:
    if name not in index:
        raise MatrixError(f"{owner}: no {what} {name}")
    return index[name]


OBJECT_KEYS = (
    ("inbound/", "inbound/claims-2026-11.csv"),
    ("outbound/", "outbound/remittance-2026-11.csv"),
    ("bucket root", "claims-2026-11.csv"),
    ("other prefix", "archive/claims-2026-10.csv"),
    ("look-alike prefix", "inbound-archive/claims-2026-10.csv"),
    ("other case", "Inbound/claims-2026-11.csv"),
    ("receipts/", "receipts/claims-2026-11.csv/3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY.json"),
    ("GuardDuty's validation object", malware_gate.VALIDATION_OBJECT_KEY),
)
FOREIGN_OBJECT_KEYS = frozenset(key for _, key in OBJECT_KEYS[:3])
LOG_OBJECT_KEY = "data-bucket/2026-11-28-06-17-00-0123456789ABCDEF"
CUSTODY_LOG_OBJECT_KEY = "custody-bucket/2026-11-28-06-17-00-0123456789ABCDEF"
TRAIL_LOG_FILE = (f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11/28/"
                  f"{ACCOUNT}_CloudTrail_{REGION}_20261128T0615Z_Hdk3vFTXOA3Vnhbc.json.gz")
TRAIL_DIGEST_FILE = (f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/2026/11/28/"
                     f"{ACCOUNT}_CloudTrail-Digest_{REGION}_{naming.TRAIL_NAME}_{REGION}_"
                     "20261128T061500Z.json.gz")
CUSTODY_OTHER_KEY = "evidence/notes.txt"
ROTATION_LOG_STREAM = "2026/11/28/[$LATEST]0123456789abcdef0123456789abcdef"
TRAIL_LOG_STREAM = f"{ACCOUNT}_CloudTrail_{REGION}"


def _customer_targets(customer: CustomerConfig, universe: Universe) -> list[Target]:
    slug = customer.slug
    policies = universe.policies[slug]
    bucket = naming.data_bucket_name(slug, ACCOUNT, REGION)
    log_bucket = naming.log_bucket_name(slug, ACCOUNT, REGION)
    key_arn = _need(policies.key_aliases, naming.key_alias(slug), slug, "key with alias")
    for name in (bucket, log_bucket):
        _need({n: n for n in policies.bucket_policies}, name, slug, "bucket policy for")
    data_policy = _named(universe, policies.bucket_policies[bucket])
    log_policy = _named(universe, policies.bucket_policies[log_bucket])
    target = partial(Target, owner=slug, customer=customer, key_arn=key_arn)
    data = partial(target, part=Part.DATA, bucket_arn=f"arn:aws:s3:::{bucket}",
                   policy=data_policy)
    logs = partial(target, part=Part.ACCESS_LOGS, bucket_arn=f"arn:aws:s3:::{log_bucket}",
                   policy=log_policy)
    targets = [data(kind=Kind.OBJECT, arn=f"arn:aws:s3:::{bucket}/{key}",
                    label=f"{slug} {where}", object_key=key) for where, key in OBJECT_KEYS]
    targets += [
        data(kind=Kind.BUCKET, arn=f"arn:aws:s3:::{bucket}", label=f"{slug} bucket"),
        logs(kind=Kind.OBJECT, arn=f"arn:aws:s3:::{log_bucket}/{LOG_OBJECT_KEY}",
             label=f"{slug} access log", object_key=LOG_OBJECT_KEY),
        logs(kind=Kind.BUCKET, arn=f"arn:aws:s3:::{log_bucket}", label=f"{slug} access-log bucket"),
        target(kind=Kind.KEY, part=Part.CUSTOMER_KEY, arn=key_arn, label=f"{slug} key",
               bucket_arn=f"arn:aws:s3:::{bucket}",
               policy=_named(universe, policies.key_policies[key_arn])),
    ]
    if customer.offboarded:
        return targets
    if customer.scanned:
        scanner = _need(policies.role_names, naming.scanner_role_name(slug), slug, "role")
        topic = _need(policies.topics, naming.gate_notices_topic_name(slug), slug, "topic")
        targets += [
            target(kind=Kind.ROLE, part=Part.SCANNER_ROLE, arn=scanner,
                   label=f"{slug} malware scanner role",
                   policy=_named(universe, policies.trust_policies[scanner])),
            target(kind=Kind.TOPIC, part=Part.GATE_TOPIC, arn=topic,
                   label=f"{slug} gate notices topic",
                   policy=_named(universe, policies.topic_policies.get(topic))),
        ]
    if customer.access is AccessMode.IAM_USER:
        targets += _rotation_targets(customer, universe, target)
    if customer.access in (AccessMode.ASSUME_ROLE, AccessMode.ROLES_ANYWHERE):
        role_arn = _need(policies.role_names, naming.partner_role_name(slug), slug, "role")
        targets.append(target(kind=Kind.ROLE, part=Part.PARTNER_ROLE, arn=role_arn,
                              label=f"{slug} partner role",
                              policy=_named(universe, policies.trust_policies[role_arn])))
    if customer.access is AccessMode.ROLES_ANYWHERE:
        topic = _need(policies.topics, naming.notices_topic_name(slug), slug, "topic")
        targets.append(target(kind=Kind.TOPIC, part=Part.NOTICES_TOPIC, arn=topic,
                              label=f"{slug} notices topic",
                              policy=_named(universe, policies.topic_policies.get(topic))))
    return targets


def _rotation_targets(customer: CustomerConfig, universe: Universe, target: Any) -> list[Target]:
    slug = customer.slug
    policies = universe.policies[slug]
    secret_arn = _need(policies.secrets, naming.partner_secret_name(slug), slug, "secret")
    user_arn = _need(policies.user_names, naming.partner_user_name(slug), slug, "user")
    topic_arn = _need(policies.topics, naming.notices_topic_name(slug), slug, "topic")
    function_arn = _need(policies.functions, naming.rotation_function_name(slug), slug,
                         "function")
    log_group = _need(policies.log_groups, f"/aws/lambda/{naming.rotation_function_name(slug)}",
                      slug, "log group")
    (dlq_arn,) = policies.queues.values()
    return [
        target(kind=Kind.SECRET, part=Part.PARTNER_SECRET, arn=secret_arn,
               label=f"{slug} secret", policy=_named(universe, policies.secret_policies.get(
                   secret_arn))),
        target(kind=Kind.USER, part=Part.PARTNER_USER, arn=user_arn, label=f"{slug} user",
               policy=None),
        target(kind=Kind.TOPIC, part=Part.NOTICES_TOPIC, arn=topic_arn,
               label=f"{slug} notices topic",
               policy=_named(universe, policies.topic_policies.get(topic_arn))),
        target(kind=Kind.FUNCTION, part=Part.ROTATION_FUNCTION, arn=function_arn,
               label=f"{slug} rotation function",
               policy=_named(universe, policies.function_policies.get(function_arn))),
        target(kind=Kind.QUEUE, part=Part.ROTATION_DLQ, arn=dlq_arn,
               label=f"{slug} rotation DLQ",
               policy=_named(universe, policies.queue_policies.get(dlq_arn))),
        target(kind=Kind.LOG_GROUP, part=Part.ROTATION_LOGS, arn=log_group,
               label=f"{slug} rotation log group", policy=None),
        target(kind=Kind.LOG_STREAM, part=Part.ROTATION_LOGS,
               arn=f"{log_group}:log-stream:{ROTATION_LOG_STREAM}",
               label=f"{slug} rotation log stream", policy=None,
               object_key=ROTATION_LOG_STREAM),
    ]


def _audit_targets(universe: Universe) -> list[Target]:
    policies = universe.policies[AUDIT]
    key_arn = _need(policies.key_aliases, naming.AUDIT_KEY_ALIAS, AUDIT, "key with alias")
    custody = access_logs = None
    for name, policy in policies.bucket_policies.items():
        statements = policy.document["Statement"]
        if any(s.get("Sid") == "AWSCloudTrailWrite" for s in statements):
            custody = name
        else:
            access_logs = name
    if custody is None or access_logs is None:
        raise MatrixError("audit: no custody bucket (with AWSCloudTrailWrite) and access-log "
                          "bucket")
    target = partial(Target, owner=AUDIT, customer=None, key_arn=key_arn)
    custody_target = partial(target, part=Part.CUSTODY, bucket_arn=f"arn:aws:s3:::{custody}",
                             policy=_named(universe, policies.bucket_policies[custody]))
    logs = partial(target, part=Part.CUSTODY_ACCESS_LOGS,
                   bucket_arn=f"arn:aws:s3:::{access_logs}",
                   policy=_named(universe, policies.bucket_policies[access_logs]))
    queue = _need(policies.queues, naming.INGESTION_QUEUE_NAME, AUDIT, "queue")
    dlq = _need(policies.queues, naming.INGESTION_DEAD_LETTER_QUEUE_NAME, AUDIT, "queue")
    trail_logs = _need(policies.log_groups, "/phi-exchange/audit-trail", AUDIT, "log group")
    security_topic = _need(policies.topics, naming.SECURITY_TOPIC_NAME, AUDIT, "topic")
    (role_arn,) = policies.trust_policies
    targets = [custody_target(kind=Kind.OBJECT, arn=f"arn:aws:s3:::{custody}/{key}",
                              label=f"audit {where}", object_key=key)
               for where, key in (("trail log file", TRAIL_LOG_FILE),
                                  ("trail digest file", TRAIL_DIGEST_FILE),
                                  ("custody object", CUSTODY_OTHER_KEY))]
    targets += [
        custody_target(kind=Kind.BUCKET, arn=f"arn:aws:s3:::{custody}",
                       label="audit custody bucket"),
        logs(kind=Kind.OBJECT, arn=f"arn:aws:s3:::{access_logs}/{CUSTODY_LOG_OBJECT_KEY}",
             label="audit custody access log", object_key=CUSTODY_LOG_OBJECT_KEY),
        logs(kind=Kind.BUCKET, arn=f"arn:aws:s3:::{access_logs}",
             label="audit custody access-log bucket"),
        target(kind=Kind.KEY, part=Part.AUDIT_KEY, arn=key_arn, label="audit key",
               bucket_arn=f"arn:aws:s3:::{custody}",
               policy=_named(universe, policies.key_policies[key_arn])),
        target(kind=Kind.QUEUE, part=Part.INGESTION_QUEUE, arn=queue, label="ingestion queue",
               policy=_named(universe, policies.queue_policies.get(queue))),
        target(kind=Kind.QUEUE, part=Part.INGESTION_DLQ, arn=dlq,
               label="ingestion dead-letter queue",
               policy=_named(universe, policies.queue_policies.get(dlq))),
        target(kind=Kind.LOG_GROUP, part=Part.TRAIL_LOGS, arn=trail_logs,
               label="audit trail log group", policy=None),
        target(kind=Kind.LOG_STREAM, part=Part.TRAIL_LOGS,
               arn=f"{trail_logs}:log-stream:{TRAIL_LOG_STREAM}",
               label="audit trail log stream", policy=None, object_key=TRAIL_LOG_STREAM),
        target(kind=Kind.ROLE, part=Part.LOGS_DELIVERY_ROLE, arn=role_arn,
               label="audit trail's log delivery role",
               policy=_named(universe, policies.trust_policies[role_arn])),
        target(kind=Kind.TOPIC, part=Part.SECURITY_TOPIC, arn=security_topic,
               label="security topic",
               policy=_named(universe, policies.topic_policies.get(security_topic))),
    ]
    signing_key = _need(policies.key_aliases, naming.RECEIPT_SIGNING_KEY_ALIAS, AUDIT,
                        "key with alias")
    targets.append(Target(owner=AUDIT, customer=None, kind=Kind.KEY, part=Part.SIGNING_KEY,
                          arn=signing_key, label="receipt signing key",
                          policy=_named(universe, policies.key_policies[signing_key]),
                          key_arn=signing_key))
    return targets


ACCOUNT_ROLES: dict[str, Who] = {
    naming.DEPLOYMENT_ROLE_NAME: Who.DEPLOYMENT,
    naming.CDK_DEPLOY_ROLE_NAME: Who.CDK_DEPLOY,
    naming.IMPORTER_ROLE_NAME: Who.IMPORTER,
    naming.OPERATOR_ROLE_NAME: Who.OPERATOR,
    naming.BREAK_GLASS_ROLE_NAME: Who.BREAK_GLASS,
}


def _access_targets(universe: Universe) -> list[Target]:
    """The account's roles (PhiExchange-access), each with its trust policy."""
    policies = universe.policies[ACCESS]
    targets = []
    for name in ACCOUNT_ROLES:
        arn = _need(policies.role_names, name, ACCESS, "role")
        targets.append(Target(owner=ACCESS, customer=None, kind=Kind.ROLE,
                              part=Part.ACCOUNT_ROLE, arn=arn, label=f"{name} role",
                              policy=_named(universe, policies.trust_policies[arn]),
                              key_arn="", name=name))
    return targets


# --- principals ------------------------------------------------------------------------------


def _session(role_arn: str, session: str) -> str:
    """The STS session ARN of a role ARN (the role's path is not part of it)."""
    prefix, name = role_arn.split(":role/", 1)
    return f"{prefix.replace(':iam::', ':sts::')}:assumed-role/{name.rsplit('/', 1)[-1]}/{session}"


def _first_address(cidr: str) -> str:
    network = ipaddress.ip_network(cidr)
    return str(next(iter(network.hosts()), network.network_address))


def _home_address(customer: CustomerConfig) -> str:
    if customer.allowed_source_ips:
        return _first_address(customer.allowed_source_ips[0])
    return ANY_ADDRESS_V4


def _identity(universe: Universe, owner: str, arn: str) -> tuple[str, ...]:
    policies = universe.policies[owner].identity_policies.get(arn)
    if policies is None:
        raise MatrixError(f"{owner}: no identity policies for {arn}")
    return tuple(_policy_id(universe, p.name, p.document) for p in policies)


def _external(entry: str) -> tuple[str, str, str]:
    """(account, aws:PrincipalArn, label) of a registry principal (an ARN or an account id,
    which stands for any of its roles)."""
    if identifiers.is_account_id(entry):
        return entry, f"arn:aws:iam::{entry}:role/any-role", f"any principal of account {entry}"
    return entry.split(":")[4], entry, entry.split(":", 5)[5]


def _principals(customers: Sequence[CustomerConfig], universe: Universe) -> list[Principal]:
    allow_all = _policy_id(universe, "(partner account) allow everything", ALLOW_EVERYTHING)
    result: list[Principal] = []
    external: dict[str, Principal] = {}  # request ARN -> the partner's own principal

    for customer in customers:
        slug = customer.slug
        policies = universe.policies[slug]
        home = _home_address(customer)
        if customer.offboarded:
            former = _policy_id(universe, f"(our account) what {slug}'s partner may still hold",
                                former_grant(universe.target(slug, Part.DATA, Kind.BUCKET).arn,
                                             universe.target(slug, Part.CUSTOMER_KEY).arn))
            if customer.access is AccessMode.IAM_USER:
                user = f"arn:aws:iam::{ACCOUNT}:user/{naming.partner_user_name(slug)}"
                result.append(Principal(f"{slug} former partner (IAM user)", Who.FORMER_PARTNER,
                                        user, user, ACCOUNT, (former,), home,
                                        former_partner_of=frozenset({slug})))
            elif customer.access in (AccessMode.ASSUME_ROLE, AccessMode.ROLES_ANYWHERE):
                role = f"arn:aws:iam::{ACCOUNT}:role/{naming.partner_role_name(slug)}"
                result.append(Principal(f"{slug} former partner (session of our role)",
                                        Who.FORMER_PARTNER, _session(role, "partner-session"),
                                        role, ACCOUNT, (former,), home,
                                        former_partner_of=frozenset({slug})))
            for entry in customer.partner_principals:
                account, principal_arn, label = _external(entry)
                arn = (_session(principal_arn, "transfer") if ":role/" in principal_arn
                       else principal_arn)
                result.append(Principal(f"{slug} former partner {label} ({account})",
                                        Who.FORMER_PARTNER, arn, principal_arn, account,
                                        (allow_all,), home,
                                        former_partner_of=frozenset({slug})))
            continue
        if customer.scanned:
            scanner = _need(policies.role_names, naming.scanner_role_name(slug), slug, "role")
            result.append(Principal(f"{slug} malware scanner role", Who.SCANNER,
                                    _session(scanner, "GuardDutyMalwareProtection"), scanner,
                                    ACCOUNT, _identity(universe, slug, scanner),
                                    ANY_ADDRESS_V4, role_of=slug))
        if customer.access is AccessMode.IAM_USER:
            user = _need(policies.user_names, naming.partner_user_name(slug), slug, "user")
            result.append(Principal(f"{slug} partner (IAM user)", Who.PARTNER, user, user,
                                    ACCOUNT, _identity(universe, slug, user), home,
                                    partner_of=frozenset({slug})))
            # sts:GetSessionToken credentials: the same user and policies, a session's context.
            result.append(Principal(f"{slug} partner's session credentials",
                                    Who.PARTNER_SESSION, user, user, ACCOUNT,
                                    _identity(universe, slug, user), home,
                                    partner_of=frozenset({slug}), session=True))
            function = naming.rotation_function_name(slug)
            role = _need(policies.function_roles, function, slug, "rotation function")
            result.append(Principal(f"{slug} rotation function", Who.ROTATION,
                                    _session(role, function), role, ACCOUNT,
                                    _identity(universe, slug, role), ANY_ADDRESS_V4,
                                    role_of=slug))
        elif customer.access in (AccessMode.ASSUME_ROLE, AccessMode.ROLES_ANYWHERE):
            role = _need(policies.role_names, naming.partner_role_name(slug), slug, "role")
            result.append(Principal(f"{slug} partner (session of our role)", Who.PARTNER,
                                    _session(role, "partner-session"), role, ACCOUNT,
                                    _identity(universe, slug, role), home,
                                    partner_of=frozenset({slug})))
        for entry in customer.partner_principals:
            account, principal_arn, label = _external(entry)
            arn = (_session(principal_arn, "transfer") if ":role/" in principal_arn
                   else principal_arn)
            previous = external.get(arn) or Principal(f"{label} ({account})", Who.PARTNER, arn,
                                                      principal_arn, account, (allow_all,),
                                                      home)
            if customer.access is AccessMode.CROSS_ACCOUNT:
                previous = replace(previous, partner_of=previous.partner_of | {slug})
            else:
                previous = replace(previous, can_assume=previous.can_assume | {slug},
                                   who=(Who.PARTNER if previous.partner_of
                                        else Who.PARTNER_HOME))
            external[arn] = previous
    result.extend(external.values())

    audit = universe.policies[AUDIT]
    (logs_role,) = audit.trust_policies
    result.append(Principal("audit trail's log delivery role", Who.LOGS_DELIVERY,
                            _session(logs_role, "CloudTrail"), logs_role, ACCOUNT,
                            _identity(universe, AUDIT, logs_role), ANY_ADDRESS_V4))
    for name, who in ACCOUNT_ROLES.items():
        role = _need(universe.policies[ACCESS].role_names, name, ACCESS, "role")
        result.append(Principal(f"{name} role", who, _session(role, "session"), role, ACCOUNT,
                                _identity(universe, ACCESS, role), ANY_ADDRESS_V4))
    admin = _policy_id(universe, "(our account) AdministratorAccess", ALLOW_EVERYTHING)
    power_user = _policy_id(universe, "(our account) PowerUserAccess", POWER_USER_ACCESS)
    read_only = _policy_id(universe, "(our account) AmazonS3ReadOnlyAccess", S3_READ_ONLY)
    stranger = _policy_id(universe, "(unrelated account) allow everything", ALLOW_EVERYTHING)
    pipeline_account = _policy_id(universe, "(pipeline account) allow everything",
                                  ALLOW_EVERYTHING)
    ours = f"arn:aws:iam::{ACCOUNT}:role"
    result += [
        Principal("administrator without break-glass", Who.ADMIN,
                  _session(f"{ours}/{ADMIN_ROLE}", "admin"), f"{ours}/{ADMIN_ROLE}", ACCOUNT,
                  (admin,), ANY_ADDRESS_V4),
        Principal("insider with PowerUserAccess", Who.POWER_USER,
                  _session(f"{ours}/{POWER_USER_ROLE}", "developer"),
                  f"{ours}/{POWER_USER_ROLE}", ACCOUNT, (power_user,), ANY_ADDRESS_V4),
        Principal("insider with S3 read-only", Who.INSIDER,
                  _session(f"{ours}/{INSIDER_ROLE}", "analyst"), f"{ours}/{INSIDER_ROLE}",
                  ACCOUNT, (read_only,), ANY_ADDRESS_V4),
        # The pipeline's role, with every right its own account could give it, and another
        # principal of that account: only the first assumes the CDK-deploy role, nothing more.
        Principal("deployment pipeline's role", Who.PIPELINE,
                  _session(PIPELINE_ROLE, "pipeline-run"), PIPELINE_ROLE, PIPELINE_ACCOUNT,
                  (pipeline_account,), ANY_ADDRESS_V4),
        Principal("another principal of the pipeline's account", Who.PIPELINE_ACCOUNT,
                  f"arn:aws:sts::{PIPELINE_ACCOUNT}:assumed-role/Admin/session",
                  f"arn:aws:iam::{PIPELINE_ACCOUNT}:role/Admin", PIPELINE_ACCOUNT,
                  (pipeline_account,), ANY_ADDRESS_V4),
        Principal("unrelated account", Who.STRANGER,
                  f"arn:aws:sts::{STRANGER_ACCOUNT}:assumed-role/Intruder/session",
                  f"arn:aws:iam::{STRANGER_ACCOUNT}:role/Intruder", STRANGER_ACCOUNT,
                  (stranger,), ANY_ADDRESS_V4),
        Principal("anonymous", Who.ANONYMOUS, None, None, None, (), ANY_ADDRESS_V4),
    ]
    return result + _services(customers, universe)


def _service(source: Source, label: str, source_arn: str, *, serves: str | None,
             genuine: bool, account: str = ACCOUNT) -> Principal:
    return Principal(f"{source.service} for {label}", Who.SERVICE, source.service, None, None,
                     (), "", source=source, source_arn=source_arn, source_account=account,
                     genuine=genuine, serves=serves)


def _services(customers: Sequence[CustomerConfig], universe: Universe) -> list[Principal]:
    """Each service on behalf of each of our resources it serves, of another resource of our
    account, and of a resource in an unrelated account."""
    audit = universe.policies[AUDIT]
    trail = _need(audit.trails, naming.TRAIL_NAME, AUDIT, "trail")
    foreign = STRANGER_ACCOUNT
    arn = f"arn:aws:{{}}:{REGION}:{{}}:{{}}"
    found = [
        _service(CLOUDTRAIL, "our trail", trail, serves=AUDIT, genuine=True),
        _service(CLOUDTRAIL, "another trail of our account",
                 arn.format("cloudtrail", ACCOUNT, "trail/other-trail"), serves=AUDIT,
                 genuine=False),
        _service(CLOUDTRAIL, "a trail of an unrelated account",
                 arn.format("cloudtrail", foreign, f"trail/{naming.TRAIL_NAME}"), serves=None,
                 genuine=False, account=foreign),
        _service(S3_LOGGING, "the custody bucket", universe.target(AUDIT, Part.CUSTODY,
                                                                   Kind.BUCKET).arn,
                 serves=AUDIT, genuine=True),
        _service(S3_LOGGING, "a bucket of an unrelated account", "arn:aws:s3:::foreign-bucket",
                 serves=None, genuine=False, account=foreign),
        _service(EVENTS_INGESTION, "an unrelated rule of our account",
                 arn.format("events", ACCOUNT, "rule/other-rule"), serves=None, genuine=False),
        _service(EVENTS_INGESTION, "an ingestion rule of an unrelated account",
                 arn.format("events", foreign, "rule/phi-exchange-acme-inbound-objects"),
                 serves=None, genuine=False, account=foreign),
        _service(EVENTS_SWEEP, "an unrelated rule of our account",
                 arn.format("events", ACCOUNT, "rule/other-schedule"), serves=None,
                 genuine=False),
        _service(EVENTS_SWEEP, "a schedule rule of an unrelated account",
                 arn.format("events", foreign, "rule/daily-sweep"), serves=None, genuine=False,
                 account=foreign),
        _service(SECRETS, "another secret of our account",
                 arn.format("secretsmanager", ACCOUNT, "secret:other-secret-AbCdEf"),
                 serves=None, genuine=False),
        _service(ALARMS, "another alarm of our account",
                 arn.format("cloudwatch", ACCOUNT, "alarm:other-alarm"), serves=None,
                 genuine=False),
        _service(ALARMS, "an alarm of an unrelated account",
                 arn.format("cloudwatch", foreign, "alarm:phi-exchange-acme-key-rotation-errors"),
                 serves=None, genuine=False, account=foreign),
        _service(SECRETS, "a secret of an unrelated account",
                 arn.format("secretsmanager", foreign,
                            "secret:phi-exchange/acme/partner-access-key-AbCdEf"),
                 serves=None, genuine=False, account=foreign),
        _service(LOGS, "the trail's log group", universe.target(AUDIT, Part.TRAIL_LOGS,
                                                                Kind.LOG_GROUP).arn,
                 serves=AUDIT, genuine=True),
        _service(LOGS, "another log group of our account",
                 arn.format("logs", ACCOUNT, "log-group:/aws/lambda/other"), serves=None,
                 genuine=False),
        _service(LOGS, "a log group of an unrelated account",
                 arn.format("logs", foreign, "log-group:/phi-exchange/audit-trail"),
                 serves=None, genuine=False, account=foreign),
        _service(EVENTS_TAMPER, "an unrelated rule of our account",
                 arn.format("events", ACCOUNT, "rule/other-rule"), serves=None, genuine=False),
        _service(EVENTS_TAMPER, "a tamper rule of an unrelated account",
                 arn.format("events", foreign, f"rule/{naming.TAMPER_RULE_PREFIX}trail"),
                 serves=None, genuine=False, account=foreign),
        _service(CLOUDFORMATION, "any stack", "", serves=None, genuine=False),
        _service(GUARDDUTY_PLAN, "a Malware Protection plan of our account",
                 arn.format("guardduty", ACCOUNT, "malware-protection-plan/b4c7f464ab3a4d2f"),
                 serves=None, genuine=False),
        _service(GUARDDUTY_PLAN, "a Malware Protection plan of an unrelated account",
                 arn.format("guardduty", foreign, "malware-protection-plan/9e8d7c6b5a4f3e2d"),
                 serves=None, genuine=False, account=foreign),
        # A certificate from a CA our account trusts for nobody (or for another purpose), and
        # one from a trust anchor of an unrelated account.
        _service(ROLES_ANYWHERE, "another trust anchor of our account",
                 arn.format("rolesanywhere", ACCOUNT,
                            "trust-anchor/0b0b0b0b-1111-4222-8333-444455556666"),
                 serves=None, genuine=False),
        _service(ROLES_ANYWHERE, "a trust anchor of an unrelated account",
                 arn.format("rolesanywhere", foreign,
                            "trust-anchor/0f0f0f0f-1111-4222-8333-444455556666"),
                 serves=None, genuine=False, account=foreign),
        _service(EVENTS_CERTIFICATES, "an unrelated rule of our account",
                 arn.format("events", ACCOUNT, "rule/other-rule"), serves=None, genuine=False),
        _service(EVENTS_CERTIFICATES, "a certificate-expiry rule of an unrelated account",
                 arn.format("events", foreign,
                            f"rule/{naming.certificate_notices_rule_name('acme')}"),
                 serves=None, genuine=False, account=foreign),
    ]
    tamper_rules = {name: rule for name, rule in audit.rules.items()
                    if name.startswith(naming.TAMPER_RULE_PREFIX)}
    if not tamper_rules:
        raise MatrixError(f"audit: no rule named {naming.TAMPER_RULE_PREFIX}*")
    found += [_service(EVENTS_TAMPER, f"tamper rule {name}", rule, serves=AUDIT, genuine=True)
              for name, rule in sorted(tamper_rules.items())]
    for customer in customers:
        slug = customer.slug
        policies = universe.policies[slug]
        found.append(_service(S3_LOGGING, f"{slug}'s data bucket",
                              universe.target(slug, Part.DATA, Kind.BUCKET).arn, serves=slug,
                              genuine=True))
        if customer.offboarded:
            continue
        ingestion = policies.rules.get(naming.ingestion_rule_name(slug))
        if ingestion:
            found.append(_service(EVENTS_INGESTION, f"{slug}'s inbound rule", ingestion,
                                  serves=slug, genuine=True))
        scan_results = policies.rules.get(naming.scan_result_rule_name(slug))
        if scan_results:
            found.append(_service(EVENTS_INGESTION, f"{slug}'s scan-result rule", scan_results,
                                  serves=slug, genuine=True))
        if customer.access is AccessMode.ROLES_ANYWHERE:
            # Its trust anchor, for its own role and (rule: only its own) every other
            # customer's: a certificate of one partner's CA never opens another's role.
            found += [
                _service(ROLES_ANYWHERE, f"{slug}'s trust anchor",
                         _need(policies.trust_anchors, naming.trust_anchor_name(slug), slug,
                               "trust anchor"), serves=slug, genuine=True),
                _service(EVENTS_CERTIFICATES, f"{slug}'s certificate-expiry rule",
                         _need(policies.rules, naming.certificate_notices_rule_name(slug), slug,
                               "rule"), serves=slug, genuine=True)]
        if customer.access is not AccessMode.IAM_USER:
            continue
        (sweep,) = (rule for name, rule in policies.rules.items()
                    if rule not in (ingestion, scan_results))
        found += [
            _service(EVENTS_SWEEP, f"{slug}'s daily sweep rule", sweep, serves=slug,
                     genuine=True),
            _service(ALARMS, f"{slug}'s rotation alarm",
                     _need(policies.alarms, naming.rotation_alarm_name(slug), slug, "alarm"),
                     serves=slug, genuine=True),
            _service(SECRETS, f"{slug}'s partner secret",
                     universe.target(slug, Part.PARTNER_SECRET).arn, serves=slug, genuine=True),
            _service(LOGS, f"{slug}'s rotation log group",
                     universe.target(slug, Part.ROTATION_LOGS, Kind.LOG_GROUP).arn, serves=slug,
                     genuine=True),
        ]
    return found


# --- operations --------------------------------------------------------------------------------


def _op(action: str, variant: str = "", context: Mapping[str, Any] | None = None,
        *, via_service: str | None = None, sweep: bool = False) -> Operation:
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                         for k, v in (context or {}).items()))
    return Operation(action=action, variant=variant, context=items, via=via_service,
                     sweep=sweep)


TRANSPORTS: tuple[tuple[str, float | None], ...] = (
    ("HTTP", None), ("TLS 1.1", 1.1), ("TLS 1.2", 1.2), ("TLS 1.3", 1.3))
API_TRANSPORTS = TRANSPORTS[-1:]  # KMS, STS, Secrets Manager, SNS, SQS... over HTTPS only

LISTINGS: tuple[tuple[str, dict[str, str]], ...] = (
    ("prefix inbound/", {"s3:prefix": "inbound/"}),
    ("prefix inbound/2026/", {"s3:prefix": "inbound/2026/"}),
    ("prefix outbound/", {"s3:prefix": "outbound/"}),
    ("prefix receipts/", {"s3:prefix": "receipts/"}),
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


def curated_operations(target: Target, *, full: bool, other_key: str) -> list[Operation]:
    """The operations asked in every context: every one (``full``), or those most likely to
    be allowed (other owners' resources; see :func:`build_requests`)."""
    reads_and_deletes = [_op("s3:GetObject"), _op("s3:DeleteObject"),
                         _op("s3:DeleteObjectVersion"), _op("s3:PutObjectAcl")]
    if target.kind is Kind.OBJECT:
        encryptions = _encryptions(target, other_key)
        if not full or target.part not in (Part.DATA, Part.CUSTODY):
            encryptions = [encryptions[0], encryptions[2]]
        tagging = _scan_tag_requests() if target.part is Part.DATA else []
        return ([_op("s3:PutObject", name, ctx) for name, ctx in encryptions] + tagging
                + reads_and_deletes)
    if target.kind is Kind.BUCKET:
        listings = LISTINGS if full and target.part is Part.DATA else FOREIGN_LISTINGS
        return [_op("s3:ListBucket", name, ctx) for name, ctx in listings] + [
            _op("s3:GetBucketLocation"), _op("s3:PutBucketPolicy"),
            _op("s3:PutBucketVersioning"), _op("s3:PutLifecycleConfiguration")]
    if target.part is Part.SIGNING_KEY:
        return _signing_requests()
    if target.kind is Kind.KEY:
        # With S3 Bucket Keys the key's encryption context is the bucket's ARN.
        s3_context = ({"kms:EncryptionContext:aws:s3:arn": target.bucket_arn}
                      if target.bucket_arn else {})
        through_s3 = {"kms:ViaService": via("s3"), "aws:ViaAWSService": "true",
                      "aws:CalledVia": ["s3.amazonaws.com"], **s3_context}
        return [
            _op("kms:Decrypt", "through S3", through_s3, via_service="s3"),
            _op("kms:Decrypt", "direct, with the S3 encryption context", s3_context),
            _op("kms:GenerateDataKey", "through S3", through_s3, via_service="s3"),
            _op("kms:GenerateDataKey", "direct, with the S3 encryption context", s3_context),
            _op("kms:ScheduleKeyDeletion"),
            _op("kms:PutKeyPolicy"),
        ]
    if target.kind is Kind.SECRET:
        return [_op("secretsmanager:GetSecretValue")]
    if target.part is Part.ACCOUNT_ROLE:
        own_tag = TAG_PREFIX + target.name.removeprefix(f"{naming.PROJECT}-")
        other_tag = TAG_PREFIX + ("operator" if own_tag.endswith(":importer") else "importer")
        mfa = {"aws:MultiFactorAuthPresent": "true"}
        return [
            _op("sts:AssumeRole", "untagged"),
            _op("sts:AssumeRole", "untagged, with MFA", mfa),
            _op("sts:AssumeRole", "tagged for it", {own_tag: "true"}),
            _op("sts:AssumeRole", "tagged for it, with MFA", {own_tag: "true", **mfa}),
            _op("sts:AssumeRole", "tagged for it with another value", {own_tag: "yes"}),
            _op("sts:AssumeRole", "tagged for another role, with MFA",
                {other_tag: "true", **mfa}),
        ]
    if target.part is Part.PARTNER_ROLE:
        external_id = target.customer.external_id if target.customer else None
        external_id = external_id or ""
        return [
            _op("sts:AssumeRole", "with its external id", {"sts:ExternalId": external_id}),
            _op("sts:AssumeRole", "with another external id",
                {"sts:ExternalId": external_id[::-1] or "guessed-external-id"}),
            _op("sts:AssumeRole", "without external id"),
        ]
    return []


CLEAN_TAG = {f"s3:RequestObjectTag/{malware_gate.SCAN_TAG_KEY}": malware_gate.CLEAN,
             REQUEST_TAG_KEYS: [malware_gate.SCAN_TAG_KEY]}


def _scan_tag_requests() -> list[Operation]:
    """Setting the scan tag to clean: on upload (x-amz-tagging; CreateMultipartUpload and
    CopyObject are authorized as s3:PutObject too, with the same context) and by a tagging
    request, as IAM sees each (s3:RequestObjectTag/<key>, s3:RequestObjectTagKeys)."""
    variant = f"{malware_gate.SCAN_TAG_KEY}={malware_gate.CLEAN}"
    return [_op("s3:PutObject", f"x-amz-tagging {variant}", CLEAN_TAG),
            _op("s3:PutObjectTagging", variant, CLEAN_TAG),
            _op("s3:PutObjectVersionTagging", variant, CLEAN_TAG),
            _op("s3:DeleteObjectTagging"),
            # CopyObject (x-amz-tagging-directive COPY carries the source's tags, no header).
            _op("s3:PutObject", "CopyObject from another bucket",
                {"s3:x-amz-copy-source": "elsewhere/clean-tagged.csv"})]


def _signing_requests() -> list[Operation]:
    """The receipt key: signing as the importer does (by alias, ECDSA_SHA_256), by key id,
    verifying, reading the public key, retiring it."""
    algorithm = {"kms:SigningAlgorithm": malware_gate.RECEIPT_SIGNING_ALGORITHM,
                 "kms:MessageType": malware_gate.RECEIPT_MESSAGE_TYPE}
    return [
        _op("kms:Sign", "by its alias, ECDSA_SHA_256",
            {**algorithm, "kms:RequestAlias": naming.RECEIPT_SIGNING_KEY_ALIAS}),
        _op("kms:Sign", "by its key id, ECDSA_SHA_256", algorithm),
        _op("kms:Verify", "ECDSA_SHA_256", algorithm),
        _op("kms:GetPublicKey"),
        _op("kms:GetPublicKey", "by its alias",
            {"kms:RequestAlias": naming.RECEIPT_SIGNING_KEY_ALIAS}),
        _op("kms:ScheduleKeyDeletion"),
        _op("kms:PutKeyPolicy"),
        _op("kms:UpdateAlias"),
        _op("kms:DeleteAlias"),
    ]


def importer_operations(target: Target, arns: Mapping[Part, str]) -> list[Operation]:
    """The KMS calls SNS makes as the importer when it publishes a notice of a stopped file
    (SNS developer guide, "Key management": GenerateDataKey and Decrypt, encryption context
    the topic's ARN): the customer's key for its gate-notices topic, the audit key for the
    security topic."""
    topic = {Part.CUSTOMER_KEY: Part.GATE_TOPIC, Part.AUDIT_KEY: Part.SECURITY_TOPIC}.get(
        target.part)
    if topic is None or topic not in arns:
        return []
    context = {"kms:ViaService": via("sns"), "aws:ViaAWSService": "true",
               "aws:CalledVia": ["sns.amazonaws.com"],
               "kms:EncryptionContext:aws:sns:topicArn": arns[topic]}
    return [_op(action, "publish a notice of a stopped file (through SNS)", context,
                via_service="sns") for action in ("kms:GenerateDataKey", "kms:Decrypt")]


def contract_operations(principal: Principal, target: Target) -> list[Operation]:
    """The requests a service makes per its contracts on ``target``'s part, each variant,
    plus each without what the contract requires (which must be refused)."""
    assert principal.source is not None
    values = {"source": principal.source_arn or "", "account": principal.source_account or "",
              "key": target.key_arn}
    ops = []
    for contract in CONTRACTS:
        if contract.source != principal.source or contract.part is not target.part:
            continue
        if target.kind is not _kind_of(contract.request_action, target):
            continue
        required = {k: v.format(**values) for k, v in contract.requires}
        subject = dict(certificate_subject_context(target.customer)
                       if contract.certificate_subject else ())
        required.update(subject)
        for name, extra in contract.variants:
            context = {**required, **{k: v.format(**values) for k, v in extra}}
            label = f"{contract.name}{': ' + name if name else ''}"
            ops.append(_op(contract.request_action, label, context))
            for key in required:
                ops.append(_op(contract.request_action, f"{label}, without {key}",
                               {k: v for k, v in context.items() if k != key}))
            # A certificate of the same CA with another subject: each attribute differing.
            for key, value in subject.items():
                ops.append(_op(contract.request_action, f"{label}, another {key}",
                               {**context, key: f"{value}-other"}))
    return ops


def _kind_of(action: str, target: Target) -> Kind | None:
    """``target.kind`` if ``action`` applies to it, else None."""
    return target.kind if action_info(action, target.kind) is not None else None


def role_call_operations(calls: Iterable[RoleCall], target: Target,
                         arns: Mapping[Part, str]) -> list[Operation]:
    """A role's calls that land on ``target``, with the context AWS supplies."""
    ops = []
    for call in calls:
        if call.part is not target.part or action_info(call.action, target.kind) is None:
            continue
        context: dict[str, Any] = {f"kms:EncryptionContext:{key}": arns[part]
                                   for key, part in call.encryption_context}
        if call.via:
            context.update({"kms:ViaService": via(call.via), "aws:ViaAWSService": "true",
                            "aws:CalledVia": [f"{call.via}.amazonaws.com"]})
        ops.append(_op(call.action, call.why + (f" (through {call.via})" if call.via else ""),
                       context, via_service=call.via))
    return ops


def sweep_operations(target: Target) -> tuple[Operation, ...]:
    """Every action IAM knows for ``target``'s resource type, one context each."""
    return _sweep_operations(target.kind)


@functools.cache
def _sweep_operations(kind: Kind) -> tuple[Operation, ...]:
    # Built once per kind (a frozen Operation is shared by every request that asks it).
    return tuple(_op(info.action, "every action", sweep=True) for info in actions_for(kind))


def networks(customer: CustomerConfig | None, target: Target, *, full: bool,
             home_address: str) -> list[Network]:
    """Transports times source addresses: one inside each allowed range and one outside (or
    any address, when the customer sets no range). Not ``full``: TLS 1.3 from the caller's
    usual address only."""
    if not full:
        return [Network("TLS 1.3", 1.3, home_address, "its usual address")]
    ranges = customer.allowed_source_ips if customer else ()
    if ranges:
        addresses = [(_first_address(cidr), f"inside {cidr}") for cidr in ranges]
        addresses.append((ANY_ADDRESS_V4, "outside the allowed ranges"))
        if any(ipaddress.ip_network(c).version == 6 for c in ranges):
            addresses.append((ANY_ADDRESS_V6, "outside the allowed ranges (IPv6)"))
    else:
        addresses = [(ANY_ADDRESS_V4, "any address")]
    transports = TRANSPORTS if target.kind in S3_KINDS else API_TRANSPORTS
    return [Network(name, tls, address, where)
            for name, tls in transports for address, where in addresses]


USUAL = "its usual address"
SESSION_ISSUED_AT = "2026-11-28T06:00:00Z"
SERVICE_TLS = Network("TLS 1.3", 1.3, None, "AWS")
SERVICE_HTTP = Network("HTTP", None, None, "AWS")


def representative_owners(universe: Universe) -> frozenset[str]:
    """The stacks global principals are asked about in full (every curated operation in every
    context): the audit and access stacks, and one customer of each access mode, live and
    offboarded (one with source ranges where there is one). Customer stacks differ only by
    their configuration, so these hold every shape of policy; every other customer is asked
    what is most likely to be allowed over TLS 1.3 from the caller's usual address, and every
    action once, like any other principal's foreign stacks."""
    chosen: dict[tuple[AccessMode, bool], str] = {}
    # Source ranges first: their policies hold every statement the others do, and more.
    for customer in sorted(universe.customers.values(),
                           key=lambda c: (not c.allowed_source_ips, c.slug)):
        chosen.setdefault((customer.access, customer.offboarded), customer.slug)
    return frozenset({AUDIT, ACCESS, *chosen.values()})


def build_requests(universe: Universe) -> Iterator[MatrixRequest]:
    """Every request of the matrix.

    People and roles: a principal is asked the curated operations in every context about the
    resources of the stacks it belongs to, and global principals about the representative
    stacks (:func:`representative_owners`; every other stack over TLS 1.3 from the usual
    address); about other customers' resources, the ones most likely to succeed over TLS 1.3
    from its usual address (the rules deny them whatever the context). A role is asked its
    calls on its own stack. Services: their contracts' requests (and each without what the
    contract requires) on every resource of the contract's part, over TLS, and over plain HTTP
    where S3 decides.
    Everyone: every action on every resource, once.
    """
    owners = sorted(universe.targets)
    representatives = representative_owners(universe)
    keys = {o: universe.target(o, Part.AUDIT_KEY if o == AUDIT else Part.CUSTOMER_KEY).arn
            for o in owners if o != ACCESS}
    keyed = sorted(keys)
    role_calls = rotation_role_calls()
    for principal in universe.principals:
        for owner in owners:
            customer = universe.customers.get(owner)
            other_key = keys[keyed[(keyed.index(owner) + 1) % len(keyed)]] if (
                owner in keys) else ""
            full = principal.bound_to(owner) or (principal.who in GLOBAL
                                                 and owner in representatives)
            arns = {t.part: t.arn for t in universe.targets[owner] if t.object_key is None}
            for target in universe.targets[owner]:
                narrowed = (not full and target.part is Part.DATA
                            and target.kind is Kind.OBJECT
                            and target.object_key not in FOREIGN_OBJECT_KEYS)
                usual = Network("TLS 1.3", 1.3, principal.home_address, USUAL)
                if principal.who is Who.SERVICE:
                    usual = SERVICE_TLS
                    nets = [SERVICE_TLS, SERVICE_HTTP] if target.kind in S3_KINDS else [
                        SERVICE_TLS]
                    for operation in contract_operations(principal, target):
                        for network in nets:
                            yield MatrixRequest(principal, target, operation, network)
                elif not narrowed:
                    nets = networks(customer, target, full=full,
                                    home_address=principal.home_address)
                    for operation in curated_operations(target, full=full, other_key=other_key):
                        for network in nets:
                            yield MatrixRequest(principal, target, operation, network)
                if principal.who is Who.ROTATION and principal.role_of == owner:
                    for operation in role_call_operations(role_calls, target, arns):
                        yield MatrixRequest(principal, target, operation, usual)
                if principal.who is Who.IMPORTER:
                    for operation in importer_operations(target, arns):
                        yield MatrixRequest(principal, target, operation, usual)
                if not narrowed:
                    for operation in sweep_operations(target):
                        yield MatrixRequest(principal, target, operation, usual)


# --- asking the evaluator ------------------------------------------------------------------


def to_evaluator_request(request: MatrixRequest) -> evaluator.Request:
    """The request as IAM sees it: principal, action, resource, and the context keys that
    request carries (only keys the action supports, per IAM's service reference)."""
    principal, target, operation, network = (request.principal, request.target,
                                             request.operation, request.network)
    # AWS sets it in every request; a condition on it must never meet an absent key.
    context: dict[str, str | list[str]] = {
        "aws:PrincipalIsAWSService": "true" if principal.who is Who.SERVICE else "false"}
    if principal.who is Who.SERVICE:
        assert principal.source is not None
        if principal.source.source_keys:
            context["aws:SourceArn"] = principal.source_arn or ""
            context["aws:SourceAccount"] = principal.source_account or ""
    elif principal.arn is not None:
        assert principal.principal_arn is not None and principal.account is not None
        context["aws:PrincipalArn"] = principal.principal_arn
        context["aws:PrincipalAccount"] = principal.account
        context["aws:PrincipalType"] = "User" if ":user/" in principal.arn else "AssumedRole"
        if principal.session or ":assumed-role/" in principal.arn:
            # Temporary credentials (a role session, sts:GetSessionToken) carry their issue time.
            context["aws:TokenIssueTime"] = SESSION_ISSUED_AT
    context["aws:SecureTransport"] = "true" if network.tls is not None else "false"
    if operation.via is None and network.address is not None:
        context["aws:SourceIp"] = network.address  # a service calls KMS from its own address
    if target.kind in S3_KINDS:
        if network.tls is not None:
            context["s3:TlsVersion"] = str(network.tls)
        context["s3:authType"] = "REST-HEADER"
        context["s3:signatureversion"] = "AWS4-HMAC-SHA256"
    if target.kind is Kind.KEY and principal.account is not None:
        context["kms:CallerAccount"] = principal.account
    for key, value in operation.context:
        context[key] = list(value) if isinstance(value, tuple) else value
    info = action_info(operation.action, target.kind)
    if info is not None:
        context = {k: v for k, v in context.items() if info.allows_key(k)}
    return evaluator.Request(
        principal=principal.arn,
        action=operation.action,
        resource=target.arn,
        resource_account=ACCOUNT,
        context=context,
        identity_policies=principal.policies,
        resource_policy=target.policy,
    )


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = document.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    wanted = action.lower()
    if "NotAction" in statement:
        return not any(fnmatch.fnmatchcase(wanted, p.lower())
                       for p in _as_list(statement["NotAction"]))
    return any(fnmatch.fnmatchcase(wanted, p.lower()) for p in _as_list(statement.get("Action")))


def _principal_could_match(statement: Mapping[str, Any], principal: Principal) -> bool:
    """Whether a resource-policy statement could name ``principal`` (over-approximated: any
    AWS entry of its account, any wildcard)."""
    if "NotPrincipal" in statement:
        return True
    named = statement.get("Principal")
    if named == "*":
        return True
    if not isinstance(named, Mapping):
        return False
    if principal.who is Who.SERVICE:
        return principal.arn in _as_list(named.get("Service"))
    for entry in _as_list(named.get("AWS")):
        if "*" in entry or (principal.account and principal.account in entry):
            return True
    return False


def could_be_allowed(principal: Principal, action: str, resource: str,
                     identity_policies: tuple[str, ...], resource_policy: str | None,
                     documents: Mapping[str, Any]) -> bool:
    """False only when no Allow statement could grant the request: no statement of the
    principal's identity policies (which count only in our own account) matches the action
    and the resource, and no statement of the resource's policy that could name the
    principal matches the action. Such a request is
    implicitly denied whatever the conditions and resources say."""
    if principal.account == ACCOUNT and _identity_could_allow(identity_policies, action,
                                                              resource, documents):
        return True
    return resource_policy is not None and _resource_could_allow(
        resource_policy, action, principal.who is Who.SERVICE, principal.arn,
        principal.account, documents)


def _identity_could_allow(policies: tuple[str, ...], action: str, resource: str,
                          documents: Mapping[str, Any]) -> bool:
    key = (policies, action, resource)
    if key not in _IDENTITY_CACHE:
        _IDENTITY_CACHE[key] = any(
            _resource_matches(statement, resource)
            for policy_id in policies for statement in _allows(policy_id, action, documents))
    return _IDENTITY_CACHE[key]


def _allows(policy_id: str, action: str, documents: Mapping[str, Any]
            ) -> tuple[Mapping[str, Any], ...]:
    """The Allow statements of a policy whose Action (or NotAction) matches ``action``."""
    key = (policy_id, action)
    if key not in _ALLOWS_CACHE:
        _ALLOWS_CACHE[key] = tuple(
            statement for statement in _statements(documents[policy_id])
            if statement.get("Effect") == "Allow" and _action_matches(statement, action))
    return _ALLOWS_CACHE[key]


def _resource_matches(statement: Mapping[str, Any], resource: str) -> bool:
    """Over-approximated: a policy variable (``${...}``) matches anything."""
    def matches(pattern: str) -> bool:
        return "${" in pattern or fnmatch.fnmatchcase(resource, pattern)
    if "NotResource" in statement:
        return not any(matches(p) and "${" not in p for p in _as_list(statement["NotResource"]))
    return any(matches(p) for p in _as_list(statement.get("Resource")))


def _resource_could_allow(policy_id: str, action: str, service: bool, arn: str | None,
                          account: str | None, documents: Mapping[str, Any]) -> bool:
    key = (policy_id, action, service, arn if service else None, account)
    if key not in _RESOURCE_CACHE:
        who = Principal("", Who.SERVICE if service else Who.STRANGER, arn, None, account, (), "")
        _RESOURCE_CACHE[key] = any(_principal_could_match(statement, who)
                                   for statement in _allows(policy_id, action, documents))
    return _RESOURCE_CACHE[key]


# Keyed by policy ids; emptied by every plan_requests, so a policy changed between runs (the
# mutation tests) is read afresh.
_IDENTITY_CACHE: dict[tuple[tuple[str, ...], str, str], bool] = {}
_RESOURCE_CACHE: dict[tuple[str, str, bool, str | None, str | None], bool] = {}
_ALLOWS_CACHE: dict[tuple[str, str], tuple[Mapping[str, Any], ...]] = {}


# Not "ImplicitlyDenied": an explicit deny may match as well; it does not need to be found.
NO_ALLOW = evaluator.Decision(decision="NoAllowMatches", fallback="no Allow statement could "
                              "match (decided without the evaluator)")


@dataclass(frozen=True)
class MatrixOutcome:
    """One request of the matrix: what the rules expect and what the evaluator decided."""

    request: MatrixRequest
    expected: bool
    rule: str
    decision: evaluator.Decision

    @property
    def agrees(self) -> bool:
        return self.decision.decision != "Error" and self.expected == self.decision.allowed

    @property
    def prefiltered(self) -> bool:
        return self.decision is NO_ALLOW


@dataclass
class MatrixResult:
    outcomes: list[MatrixOutcome]
    evaluator: str
    seconds: float
    evaluated: int  # distinct requests the evaluator decided
    evaluator_seconds: float = 0.0

    @property
    def unexpected_allows(self) -> list[MatrixOutcome]:
        return [o for o in self.outcomes if o.decision.allowed and not o.expected]

    @property
    def denied_expected_allows(self) -> list[MatrixOutcome]:
        return [o for o in self.outcomes if not o.decision.allowed and o.expected]

    @property
    def errors(self) -> list[MatrixOutcome]:
        return [o for o in self.outcomes if o.decision.decision == "Error"]

    @property
    def disagreements(self) -> list[MatrixOutcome]:
        return [o for o in self.outcomes if not o.agrees]

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
                f"{len(self.outcomes)} requests ({self.evaluated} distinct ones evaluated by "
                f"{self.evaluator}, {sum(o.prefiltered for o in self.outcomes)} decided by no "
                f"allow statement matching) in {self.seconds:.1f} s "
                f"({self.evaluator_seconds:.1f} s in the evaluator); "
                f"{sum(o.decision.allowed for o in self.outcomes)} allowed, "
                f"{len(self.unexpected_allows)} unexpected allows, "
                f"{len(self.denied_expected_allows)} expected allows denied, "
                f"{len(self.errors)} evaluator errors")


def _request_key(request: evaluator.Request) -> Hashable:
    """Equal for two requests exactly when their JSON (``as_json``, keys sorted) is equal: the
    same fields, and the context as sorted (key, value) pairs with lists as tuples (the
    values are strings or lists of strings, which JSON encodes one to one)."""
    context = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                           for k, v in request.context.items()))
    return (request.principal, request.action, request.resource, request.resource_account,
            context, tuple(request.identity_policies), request.resource_policy)


def run_matrix(universe: Universe, *, workers: int | None = None,
               requests: Sequence[MatrixRequest] | None = None) -> MatrixResult:
    """Evaluate every request of the matrix (or ``requests``) in one evaluator batch, each
    distinct request once."""
    started = time.monotonic()
    matrix_requests = list(build_requests(universe)) if requests is None else list(requests)
    batch = evaluator.Batch(policies=dict(universe.documents))
    plan = plan_requests(matrix_requests, batch)
    prepared = time.monotonic()
    decisions = evaluator.evaluate(batch, workers=workers)
    return result_of(matrix_requests, plan, decisions, started=started,
                     evaluator_seconds=time.monotonic() - prepared, evaluated=len(batch.requests))


def plan_requests(requests: Sequence[MatrixRequest], batch: evaluator.Batch, *,
                  rename: Mapping[str, str] | None = None) -> list[int | None]:
    """Add each request that some statement could allow to ``batch`` (once per distinct
    request) and return, per request, its slot in the batch or None (implicitly denied).
    ``rename`` maps policy ids to the ids of replacement documents already in the batch."""
    _IDENTITY_CACHE.clear()
    _RESOURCE_CACHE.clear()
    _ALLOWS_CACHE.clear()
    rename = rename or {}
    slots: dict[Hashable, int] = {}
    plan: list[int | None] = []
    for r in requests:
        identity = r.principal.policies
        resource = r.target.policy or None
        if rename:
            identity = tuple(rename.get(i, i) for i in identity)
            resource = rename.get(resource, resource) if resource else None
        if not could_be_allowed(r.principal, r.operation.action, r.target.arn, identity,
                                resource, batch.policies):
            plan.append(None)
            continue
        request = to_evaluator_request(r)
        if rename:
            request = replace(request, identity_policies=identity, resource_policy=resource)
        key = _request_key(request)
        if key not in slots:
            slots[key] = len(batch.requests)
            batch.requests.append(request)
        plan.append(slots[key])
    return plan


def result_of(requests: Sequence[MatrixRequest], plan: Sequence[int | None],
              decisions: Sequence[evaluator.Decision], *, started: float,
              evaluator_seconds: float, evaluated: int) -> MatrixResult:
    outcomes = [MatrixOutcome(r, *expected(r), decision=NO_ALLOW if slot is None
                              else decisions[slot])
                for r, slot in zip(requests, plan, strict=True)]
    return MatrixResult(outcomes=outcomes,
                        evaluator=f"iam-simulate {evaluator.evaluator_version()}",
                        seconds=time.monotonic() - started, evaluated=evaluated,
                        evaluator_seconds=evaluator_seconds)


# --- reports -----------------------------------------------------------------------------------


def describe(outcome: MatrixOutcome) -> str:
    """One line: the request, what the rules expect, what the evaluator decided and why."""
    r = outcome.request
    decisive = outcome.decision.deny or outcome.decision.allow
    return (f"{r.principal.label} | {r.operation.label} | {r.target.label} ({r.target.arn}) | "
            f"{r.network.label} | expected {'allow' if outcome.expected else 'deny'} "
            f"({outcome.rule}) | evaluator: {outcome.decision.decision}"
            + (f" by {', '.join(decisive)}" if decisive else "")
            + (f" | error: {outcome.decision.error}" if outcome.decision.error else ""))


def allowed_table(outcomes: Iterable[MatrixOutcome]) -> list[tuple[str, str, str, str, str]]:
    """The allowed part of the matrix, one row per principal, resource and operation, with the
    contexts it is allowed in (rows sorted)."""
    groups: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    for o in outcomes:
        if o.decision.allowed:
            r = o.request
            groups[(r.principal.label, r.target.label, r.operation.label, o.rule)].add(
                r.network.label)
    return [(principal, target, operation, "; ".join(sorted(nets)), rule)
            for (principal, target, operation, rule), nets in sorted(groups.items())]


def format_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "-+-".join("-" * w for w in widths)]
    out += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def rule_summary(outcomes: Iterable[MatrixOutcome]) -> Counter[str]:
    return Counter(o.rule for o in outcomes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m security.access_matrix",
        description="Evaluate the access matrix of every synthesized stack offline and print "
        "its allowed part for auditors.")
    parser.add_argument("--registry", type=Path, default=REPO / "customers",
                        help="customer registry directory (default: customers/)")
    parser.add_argument("--registry-only", action="store_true",
                        help="skip the built-in variants (every access mode, direction set "
                        "and offboarded state)")
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
    print("Service contracts (rule aws-service-contract):")
    for contract in CONTRACTS:
        print(f"  {contract.name}: {contract.says} ({contract.doc})")
    print("\nAllowed requests:")
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
    for outcome in result.disagreements:
        print(f"DISAGREES: {describe(outcome)}")
    print(result.size_line())
    return 1 if result.disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
