"""The central evidence's policies, proven with the pinned IAM evaluator: each exchange
account's trail (and only ours) may deliver under its own account's prefix and use the key;
an administrator of an exchange account, with every right there, reaches nothing; in the
log-archive account only its operator and break-glass decrypt, and nobody but the deployment
role and break-glass changes the bucket's controls. Each rule is shown to fail when the
statement behind it is broken (the mutations at the end)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from phi_core import naming, placement
from security import evaluator
from security.templates import ACCOUNT, REGION, collect_policies, resolve_template
from stacks.app_builder import build_app
from tests.infra.conftest import CDK_CONTEXT

ARCHIVE = ACCOUNT  # the resolver's account: the log-archive stack's tokens resolve there
EXCHANGE_A, EXCHANGE_B, STRANGER = "111111111111", "222222222222", "333333333333"
ACCOUNTS = placement.parse_accounts({
    "log_archive": {"label": "log-archive", "account_id": ARCHIVE, "region": REGION},
    "exchange": [
        {"label": "exchange-a", "account_id": EXCHANGE_A, "region": "eu-west-2"},
        {"label": "exchange-b", "account_id": EXCHANGE_B, "region": REGION},
    ],
}, source="test")
TRAIL_A = naming.trail_arn("aws", "eu-west-2", EXCHANGE_A)
TRAIL_B = naming.trail_arn("aws", REGION, EXCHANGE_B)
TRAIL_STRANGER = naming.trail_arn("aws", REGION, STRANGER)
BUCKET_NAME = naming.evidence_bucket_name(ARCHIVE, REGION)
BUCKET = f"arn:aws:s3:::{BUCKET_NAME}"
ALLOW_ALL = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@dataclass(frozen=True)
class Policies:
    bucket: dict[str, Any]
    key: dict[str, Any]
    key_arn: str


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Policies:
    app = build_app([], accounts=ACCOUNTS, context=CDK_CONTEXT,
                    outdir=str(tmp_path_factory.mktemp("log-archive")))
    template = app.synth().get_stack_by_name(naming.LOG_ARCHIVE_STACK_NAME).template
    found = collect_policies(resolve_template(template, naming.LOG_ARCHIVE_STACK_NAME))
    ((key_arn, key),) = found.key_policies.items()
    return Policies(found.bucket_policies[BUCKET_NAME].document, key.document, key_arn)


@dataclass(frozen=True)
class Case:
    name: str
    principal: str
    action: str
    resource: str  # "bucket", "key" or an object key under the bucket
    context: dict[str, str]
    identity: bool  # the principal's own account allows it everything
    allowed: bool


def _trail(trail: str, **context: str) -> dict[str, str]:
    return {"aws:PrincipalIsAWSService": "true", "aws:SourceArn": trail,
            "aws:SourceAccount": trail.split(":")[4], "aws:SecureTransport": "true", **context}


def _caller(role: str) -> dict[str, str]:
    account = role.split(":")[4]
    return {"aws:PrincipalIsAWSService": "false", "aws:PrincipalArn": role,
            "aws:PrincipalAccount": account, "aws:SecureTransport": "true"}


ACL = {"s3:x-amz-acl": "bucket-owner-full-control"}
EXCHANGE_ADMIN = f"arn:aws:iam::{EXCHANGE_A}:role/Admin"
ARCHIVE_ADMIN = f"arn:aws:iam::{ARCHIVE}:role/Admin"
ARCHIVE_OPERATOR = f"arn:aws:iam::{ARCHIVE}:role/{naming.OPERATOR_ROLE_NAME}"
DEPLOYMENT = f"arn:aws:iam::{ARCHIVE}:role/{naming.DEPLOYMENT_ROLE_NAME}"
CT = "cloudtrail.amazonaws.com"
CASES = [
    Case("trail A delivers under its account", CT, "s3:PutObject",
         f"AWSLogs/{EXCHANGE_A}/CloudTrail/eu-west-2/x.json.gz", _trail(TRAIL_A, **ACL), False,
         True),
    Case("trail B delivers under its account", CT, "s3:PutObject",
         f"AWSLogs/{EXCHANGE_B}/CloudTrail/us-east-1/x.json.gz", _trail(TRAIL_B, **ACL), False,
         True),
    Case("trail A checks the bucket ACL", CT, "s3:GetBucketAcl", "bucket", _trail(TRAIL_A),
         False, True),
    Case("trail A without the owner ACL", CT, "s3:PutObject",
         f"AWSLogs/{EXCHANGE_A}/x.json.gz", _trail(TRAIL_A), False, False),
    Case("trail A under account B's prefix", CT, "s3:PutObject",
         f"AWSLogs/{EXCHANGE_B}/x.json.gz", _trail(TRAIL_A, **ACL), False, False),
    Case("a stranger's trail delivers", CT, "s3:PutObject", f"AWSLogs/{STRANGER}/x.json.gz",
         _trail(TRAIL_STRANGER, **ACL), False, False),
    Case("a stranger's trail delivers as account A", CT, "s3:PutObject",
         f"AWSLogs/{EXCHANGE_A}/x.json.gz", _trail(TRAIL_STRANGER, **ACL), False, False),
    Case("a stranger's trail checks the ACL", CT, "s3:GetBucketAcl", "bucket",
         _trail(TRAIL_STRANGER), False, False),
    Case("trail A encrypts under its context", CT, "kms:GenerateDataKey", "key",
         _trail(TRAIL_A, **{"kms:EncryptionContext:aws:cloudtrail:arn": TRAIL_A}), False, True),
    Case("a stranger's trail encrypts", CT, "kms:GenerateDataKey", "key",
         _trail(TRAIL_STRANGER, **{"kms:EncryptionContext:aws:cloudtrail:arn": TRAIL_STRANGER}),
         False, False),
    Case("exchange admin reads evidence", EXCHANGE_ADMIN, "s3:GetObject",
         f"AWSLogs/{EXCHANGE_A}/x.json.gz", _caller(EXCHANGE_ADMIN), True, False),
    Case("exchange admin lists evidence", EXCHANGE_ADMIN, "s3:ListBucket", "bucket",
         _caller(EXCHANGE_ADMIN), True, False),
    Case("exchange admin deletes a version", EXCHANGE_ADMIN, "s3:DeleteObjectVersion",
         f"AWSLogs/{EXCHANGE_A}/x.json.gz", _caller(EXCHANGE_ADMIN), True, False),
    Case("exchange admin rewrites the policy", EXCHANGE_ADMIN, "s3:PutBucketPolicy", "bucket",
         _caller(EXCHANGE_ADMIN), True, False),
    Case("exchange admin decrypts", EXCHANGE_ADMIN, "kms:Decrypt", "key",
         _caller(EXCHANGE_ADMIN), True, False),
    Case("exchange admin writes fake logs", EXCHANGE_ADMIN, "s3:PutObject",
         f"AWSLogs/{EXCHANGE_A}/x.json.gz", _caller(EXCHANGE_ADMIN), True, False),
    Case("archive operator reads evidence", ARCHIVE_OPERATOR, "s3:GetObject",
         f"AWSLogs/{EXCHANGE_A}/x.json.gz", _caller(ARCHIVE_OPERATOR), True, True),
    Case("archive operator decrypts", ARCHIVE_OPERATOR, "kms:Decrypt", "key",
         _caller(ARCHIVE_OPERATOR), True, True),
    Case("archive admin decrypts", ARCHIVE_ADMIN, "kms:Decrypt", "key",
         _caller(ARCHIVE_ADMIN), True, False),
    Case("archive admin deletes a version", ARCHIVE_ADMIN, "s3:DeleteObjectVersion",
         f"AWSLogs/{EXCHANGE_A}/x.json.gz", _caller(ARCHIVE_ADMIN), True, False),
    Case("archive admin retires the key", ARCHIVE_ADMIN, "kms:ScheduleKeyDeletion", "key",
         _caller(ARCHIVE_ADMIN), True, False),
    Case("archive admin rewrites the key policy", ARCHIVE_ADMIN, "kms:PutKeyPolicy", "key",
         _caller(ARCHIVE_ADMIN), True, False),
    Case("archive admin moves the key's alias", ARCHIVE_ADMIN, "kms:UpdateAlias", "key",
         _caller(ARCHIVE_ADMIN), True, False),
    # CloudFormation adds a new account's trail to the key policy, as the deployment role.
    Case("the deployment role updates the key policy", DEPLOYMENT, "kms:PutKeyPolicy", "key",
         _caller(DEPLOYMENT), True, True),
    Case("the deployment role retires the key", DEPLOYMENT, "kms:ScheduleKeyDeletion", "key",
         _caller(DEPLOYMENT), True, False),
]


def _decisions(policies: Policies) -> dict[str, bool]:
    batch = evaluator.Batch()
    batch.add_policy("bucket", policies.bucket)
    batch.add_policy("key", policies.key)
    batch.add_policy("allow-all", ALLOW_ALL)
    for case in CASES:
        on_key = case.resource == "key"
        resource = (policies.key_arn if on_key else BUCKET if case.resource == "bucket"
                    else f"{BUCKET}/{case.resource}")
        batch.requests.append(evaluator.Request(
            principal=case.principal, action=case.action, resource=resource,
            resource_account=ARCHIVE, context=case.context,
            identity_policies=("allow-all",) if case.identity else (),
            resource_policy="key" if on_key else "bucket"))
    decisions = evaluator.evaluate(batch, workers=1)
    return {case.name: decision.allowed for case, decision in zip(CASES, decisions, strict=True)}


def _wrong(decisions: dict[str, bool]) -> list[str]:
    return [c.name for c in CASES if decisions[c.name] != c.allowed]


def test_only_our_trails_deliver_and_no_exchange_account_reaches_the_evidence(
    policies: Policies,
) -> None:
    assert _wrong(_decisions(policies)) == []


def _drop_source_condition(policies: Policies) -> Policies:
    bucket = copy.deepcopy(policies.bucket)
    for statement in bucket["Statement"]:
        if statement.get("Sid", "").startswith("AWSCloudTrailWrite"):
            del statement["Condition"]["StringEquals"]["aws:SourceArn"]
    return Policies(bucket, policies.key, policies.key_arn)


def _grant_exchange_account(policies: Policies) -> Policies:
    bucket = copy.deepcopy(policies.bucket)
    bucket["Statement"].append({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::"
                                                                 f"{EXCHANGE_A}:root"},
                                "Action": "s3:GetObject", "Resource": f"{BUCKET}/*"})
    return Policies(bucket, policies.key, policies.key_arn)


def _drop_crypto_deny(policies: Policies) -> Policies:
    key = copy.deepcopy(policies.key)
    key["Statement"] = [s for s in key["Statement"]
                        if s.get("Sid") != "OnlyNamedPrincipalsUseTheKey"]
    return Policies(policies.bucket, key, policies.key_arn)


def _widen_key_context(policies: Policies) -> Policies:
    key = copy.deepcopy(policies.key)
    for statement in key["Statement"]:
        if statement.get("Sid") == "AllowCloudTrailToEncryptLogs":
            statement["Condition"] = {}
    return Policies(policies.bucket, key, policies.key_arn)


@pytest.mark.parametrize(("mutate", "caught_by"), [
    (_drop_source_condition, "a stranger's trail delivers as account A"),
    (_grant_exchange_account, "exchange admin reads evidence"),
    (_drop_crypto_deny, "archive admin decrypts"),
    (_widen_key_context, "a stranger's trail encrypts"),
], ids=["trail-source-dropped", "exchange-account-granted", "crypto-deny-dropped",
        "key-context-widened"])
def test_each_broken_statement_is_caught(policies: Policies,
                                         mutate: Callable[[Policies], Policies],
                                         caught_by: str) -> None:
    assert caught_by in _wrong(_decisions(mutate(policies)))
