"""The emulator's policy evaluator (localaws/policy.py) against the access matrix's (the
iam-simulate package, security/evaluator.py) on the same cases: the operators, keys and
principal forms our templates use. localaws/policy.py stays because the emulator must answer
each S3 call in-process and at once (iam-simulate is a Node batch tool); this test is what ties
the two, so a semantic slip in either shows as a disagreement."""

from __future__ import annotations

from typing import Any

import pytest

from localaws.policy import Decision, Request, evaluate
from security import evaluator

ACCOUNT = "123456789012"
BUCKET = f"arn:aws:s3:::phi-acme-{ACCOUNT}-us-east-1"
OBJECT = f"{BUCKET}/inbound/a.csv"
USER = f"arn:aws:iam::{ACCOUNT}:user/phi-exchange-acme-partner"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/phi-exchange-importer"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/phi-exchange-importer/importer"
STRANGER = "arn:aws:iam::999988887777:user/someone"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"

# What each evaluator calls the same outcome.
SAME = {Decision.ALLOW: "Allowed", Decision.DENY: "ExplicitlyDenied",
        Decision.NOT_APPLICABLE: "ImplicitlyDenied"}


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def deny(condition: dict[str, Any], action: str = "s3:*") -> dict[str, Any]:
    return {"Sid": "D", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": action,
            "Resource": [BUCKET, f"{BUCKET}/*"], "Condition": condition}


def allow(principal: Any, action: str = "s3:PutObject", **condition: Any) -> dict[str, Any]:
    statement = {"Sid": "A", "Effect": "Allow", "Principal": principal, "Action": action,
                 "Resource": f"{BUCKET}/inbound/*"}
    if condition:
        statement["Condition"] = condition
    return statement


def put(principal: str = USER, role_arn: str | None = None, **context: str) -> Request:
    return Request(action="s3:PutObject", resource=OBJECT, principal=principal,
                   role_arn=role_arn, context={k: [v] for k, v in context.items()})


TLS = {"aws:SecureTransport": "true", "s3:TlsVersion": "1.3"}
KMS = {"s3:x-amz-server-side-encryption": "aws:kms",
       "s3:x-amz-server-side-encryption-aws-kms-key-id": KEY}

CASES: dict[str, tuple[dict[str, Any], Request]] = {
    "tls-only, over TLS": (policy(deny({"Bool": {"aws:SecureTransport": "false"}})),
                           put(**TLS)),
    "tls-only, plain HTTP": (policy(deny({"Bool": {"aws:SecureTransport": "false"}})),
                             put(**{"aws:SecureTransport": "false"})),
    "minimum TLS 1.2, TLS 1.1": (policy(deny({"NumericLessThan": {"s3:TlsVersion": 1.2}})),
                                 put(**{**TLS, "s3:TlsVersion": "1.1"})),
    "minimum TLS 1.2, TLS 1.3": (policy(deny({"NumericLessThan": {"s3:TlsVersion": 1.2}})),
                                 put(**TLS)),
    "other key, none named": (policy(deny({
        "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": KEY},
        "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"}},
        action="s3:PutObject")), put(**TLS)),
    "other key, another named": (policy(deny({
        "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": KEY},
        "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"}},
        action="s3:PutObject")),
        put(**TLS, **{**KMS, "s3:x-amz-server-side-encryption-aws-kms-key-id": KEY + "0"})),
    "IfExists, header absent": (policy(deny(
        {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}},
        action="s3:PutObject")), put(**TLS)),
    "IfExists, header right": (policy(deny(
        {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}},
        action="s3:PutObject")), put(**TLS, **KMS)),
    "source range, inside": (policy(deny({"NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24"]}})),
                             put(**TLS, **{"aws:SourceIp": "203.0.113.9"})),
    "source range, outside": (policy(deny({"NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24"]}})),
                              put(**TLS, **{"aws:SourceIp": "198.51.100.1"})),
    "named principals only, named": (policy(deny(
        {"ArnNotLike": {"aws:PrincipalArn": [ROLE, USER]}})),
        put(**TLS, **{"aws:PrincipalArn": USER})),
    "named principals only, another": (policy(deny(
        {"ArnNotLike": {"aws:PrincipalArn": [ROLE]}})),
        put(**TLS, **{"aws:PrincipalArn": USER})),
    "allow to the user": (policy(allow({"AWS": USER})), put(**TLS)),
    "allow to the role, its session": (policy(allow({"AWS": ROLE})),
                                       put(SESSION, ROLE, **TLS)),
    "allow to the account, a stranger": (policy(allow({"AWS": f"arn:aws:iam::{ACCOUNT}:root"})),
                                         put(STRANGER, **TLS)),
    "allow with a tag condition, tagged": (policy(allow(
        {"AWS": USER}, StringEquals={"aws:PrincipalTag/phi-exchange:operator": "true"})),
        put(**TLS, **{"aws:PrincipalTag/phi-exchange:operator": "true"})),
    "allow with a tag condition, untagged": (policy(allow(
        {"AWS": USER}, StringEquals={"aws:PrincipalTag/phi-exchange:operator": "true"})),
        put(**TLS)),
    "allow, other action": (policy(allow({"AWS": USER}, action="s3:GetObject")), put(**TLS)),
    "allow and deny": (policy(allow({"AWS": USER}),
                              deny({"Bool": {"aws:SecureTransport": "false"}})),
                       put(**{"aws:SecureTransport": "false"})),
}


@pytest.fixture(scope="module")
def simulated() -> dict[str, evaluator.Decision]:
    """Every case in one iam-simulate batch (one Node start)."""
    batch = evaluator.Batch()
    for name, (document, request) in CASES.items():
        batch.add_policy(name, document)
        batch.requests.append(evaluator.Request(
            principal=request.principal, action=request.action, resource=request.resource,
            resource_account=ACCOUNT,
            context={k: v[0] if len(v) == 1 else list(v) for k, v in request.context.items()},
            resource_policy=name))
    return dict(zip(CASES, evaluator.evaluate(batch, workers=1), strict=True))


@pytest.mark.parametrize("case", list(CASES))
def test_both_evaluators_decide_alike(case: str,
                                      simulated: dict[str, evaluator.Decision]) -> None:
    document, request = CASES[case]
    ours, theirs = evaluate(document, request), simulated[case]
    assert theirs.error is None and not theirs.ignored_context_keys, theirs
    assert SAME[ours] == theirs.decision, (case, ours, theirs)


def test_the_cases_cover_every_outcome(simulated: dict[str, evaluator.Decision]) -> None:
    """A comparison only of denials could not catch an evaluator that allowed too much."""
    assert {d.decision for d in simulated.values()} == set(SAME.values())
