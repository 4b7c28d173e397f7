"""Probes of the pinned IAM evaluator on the semantics our policies rely on, each with a known
AWS answer. If an upgrade of @cloud-copilot/iam-simulate (or a change to evaluate.mjs) changes
one of them, the access matrix can no longer be trusted and this fails first."""

from __future__ import annotations

from typing import Any

import pytest

from security import evaluator
from security.access_matrix import MatrixResult, Universe, to_evaluator_request
from security.evaluator import Request

OURS = "123456789012"
PARTNER = "111122223333"
BUCKET = "arn:aws:s3:::phi-probe"
OBJECT = f"{BUCKET}/inbound/file.csv"
KEY = f"arn:aws:kms:us-east-1:{OURS}:key/00000000-0000-0000-0000-000000000001"
PARTNER_ROLE = f"arn:aws:iam::{PARTNER}:role/transfer"
PARTNER_SESSION = f"arn:aws:sts::{PARTNER}:assumed-role/transfer/s"
USER = f"arn:aws:iam::{OURS}:user/partner"
S3_SERVICE = "s3.us-east-1.amazonaws.com"
ALLOW_ALL = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def deny_put(condition: dict[str, Any]) -> dict[str, Any]:
    return {"Sid": "Probe", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:PutObject",
            "Resource": f"{BUCKET}/*", "Condition": condition}


def put(context: dict[str, str], resource_policy: dict[str, Any]) -> str:
    """Decision for our own user (allowed everything by identity) uploading an object."""
    request = Request(principal=USER, action="s3:PutObject", resource=OBJECT,
                      resource_account=OURS,
                      context={"aws:PrincipalArn": USER, "aws:SecureTransport": "true",
                               **context},
                      identity_policies=("all",), resource_policy="bucket")
    return evaluator.evaluate_one(request, {"all": ALLOW_ALL,
                                            "bucket": resource_policy}).decision


SSE = "s3:x-amz-server-side-encryption"


def test_if_exists_on_a_negated_operator_matches_an_absent_key():
    """AWS: "If the key is not present, evaluate the condition element as true"."""
    deny = policy(deny_put({"StringNotEqualsIfExists": {SSE: "aws:kms"}}))
    assert put({}, deny) == "ExplicitlyDenied"
    assert put({SSE: "aws:kms"}, deny) == "Allowed"
    assert put({SSE: "AES256"}, deny) == "ExplicitlyDenied"


def test_null_false_with_a_negated_operator_denies_only_a_named_value():
    deny = policy(deny_put({"Null": {SSE: "false"}, "StringNotEquals": {SSE: "aws:kms"}}))
    assert put({}, deny) == "Allowed"
    assert put({SSE: "aws:kms"}, deny) == "Allowed"
    assert put({SSE: "AES256"}, deny) == "ExplicitlyDenied"


def test_null_false_denies_a_present_key():
    deny = policy(deny_put({"Null": {"s3:x-amz-server-side-encryption-customer-algorithm":
                                     "false"}}))
    assert put({}, deny) == "Allowed"
    assert put({"s3:x-amz-server-side-encryption-customer-algorithm": "AES256"},
               deny) == "ExplicitlyDenied"


@pytest.mark.parametrize(("tls", "decision"), [("1.1", "ExplicitlyDenied"),
                                               ("1.2", "Allowed"), ("1.3", "Allowed")])
def test_minimum_tls_version_compares_numbers(tls: str, decision: str):
    deny = policy(deny_put({"NumericLessThan": {"s3:TlsVersion": 1.2}}))
    assert put({"s3:TlsVersion": tls}, deny) == decision


def test_secure_transport_false_is_denied():
    deny = policy(deny_put({"Bool": {"aws:SecureTransport": "false"}}))
    assert put({"aws:SecureTransport": "false"}, deny) == "ExplicitlyDenied"
    assert put({}, deny) == "Allowed"


def test_source_address_ranges_match_ipv4_and_ipv6():
    deny = policy(deny_put({"NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24",
                                                               "2001:db8:1234::/48"]}}))
    assert put({"aws:SourceIp": "203.0.113.9"}, deny) == "Allowed"
    assert put({"aws:SourceIp": "2001:db8:1234::9"}, deny) == "Allowed"
    assert put({"aws:SourceIp": "198.18.0.10"}, deny) == "ExplicitlyDenied"


def _cross_account_get(identity: dict[str, Any], bucket: dict[str, Any]) -> str:
    request = Request(principal=PARTNER_SESSION, action="s3:GetObject", resource=OBJECT,
                      resource_account=OURS,
                      context={"aws:PrincipalArn": PARTNER_ROLE, "aws:SecureTransport": "true"},
                      identity_policies=("identity",), resource_policy="bucket")
    return evaluator.evaluate_one(request, {"identity": identity, "bucket": bucket}).decision


def test_cross_account_access_needs_both_the_bucket_policy_and_the_identity_policy():
    grant = policy({"Effect": "Allow", "Principal": {"AWS": PARTNER_ROLE},
                    "Action": "s3:GetObject", "Resource": f"{BUCKET}/*"})
    nothing = policy({"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"})
    assert _cross_account_get(ALLOW_ALL, grant) == "Allowed"  # a session of the granted role
    assert _cross_account_get(nothing, grant) == "ImplicitlyDenied"
    assert _cross_account_get(ALLOW_ALL, policy({"Effect": "Allow", "Principal": {"AWS": USER},
                                                 "Action": "s3:GetObject",
                                                 "Resource": f"{BUCKET}/*"})) == "ImplicitlyDenied"


def _decrypt(key_policy: dict[str, Any], context: dict[str, str]) -> evaluator.Decision:
    identity = policy({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY,
                       "Condition": {"StringEquals": {"kms:ViaService": S3_SERVICE},
                                     "StringLike": {"kms:EncryptionContext:aws:s3:arn": BUCKET}}})
    request = Request(principal=USER, action="kms:Decrypt", resource=KEY, resource_account=OURS,
                      context={"aws:PrincipalArn": USER, **context},
                      identity_policies=("identity",), resource_policy="key")
    return evaluator.evaluate_one(request, {"identity": identity, "key": key_policy})


ROOT_DELEGATION = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OURS}:root"},
                   "Action": "kms:*", "Resource": "*"}
VIA_S3 = {"kms:ViaService": "s3.us-east-1.amazonaws.com",
          "kms:EncryptionContext:aws:s3:arn": BUCKET}


def test_kms_honours_identity_policies_only_when_the_key_policy_delegates_to_the_account():
    assert _decrypt(policy(ROOT_DELEGATION), VIA_S3).decision == "Allowed"
    other = {**ROOT_DELEGATION, "Principal": {"AWS": f"arn:aws:iam::{OURS}:role/other"}}
    assert _decrypt(policy(other), VIA_S3).decision == "ImplicitlyDenied"


def test_kms_encryption_context_conditions_are_evaluated_not_dropped():
    """iam-simulate drops kms:EncryptionContext:<key> from the context; evaluate.mjs decides
    such requests again with the key kept, and says so."""
    allowed = _decrypt(policy(ROOT_DELEGATION), VIA_S3)
    wrong = _decrypt(policy(ROOT_DELEGATION), {**VIA_S3,
                                               "kms:EncryptionContext:aws:s3:arn":
                                               "arn:aws:s3:::another-bucket"})
    assert allowed.decision == "Allowed" and allowed.fallback
    assert wrong.decision == "ImplicitlyDenied" and wrong.fallback
    assert not allowed.ignored_context_keys


def test_explicit_key_policy_deny_outside_s3_wins_over_identity_allow():
    deny = {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*",
            "Condition": {"ArnLike": {"aws:PrincipalArn": [USER]},
                          "StringNotEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}}
    direct = _decrypt(policy(ROOT_DELEGATION, deny),
                      {"kms:EncryptionContext:aws:s3:arn": BUCKET})
    assert direct.decision == "ExplicitlyDenied"
    assert _decrypt(policy(ROOT_DELEGATION, deny), VIA_S3).decision == "Allowed"


def test_anonymous_callers_get_only_what_a_resource_policy_grants_everyone():
    request = Request(principal=None, action="s3:GetObject", resource=OBJECT,
                      resource_account=OURS, context={"aws:SecureTransport": "true"},
                      resource_policy="bucket")
    public = policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                     "Resource": f"{BUCKET}/*"})
    private = policy({"Effect": "Allow", "Principal": {"AWS": USER}, "Action": "s3:GetObject",
                      "Resource": f"{BUCKET}/*"})
    assert evaluator.evaluate_one(request, {"bucket": public}).decision == "Allowed"
    assert evaluator.evaluate_one(request, {"bucket": private}).decision == "ImplicitlyDenied"


def test_assume_role_trust_with_external_id():
    role = f"arn:aws:iam::{OURS}:role/partner"
    trust = policy({"Effect": "Allow", "Principal": {"AWS": PARTNER_ROLE},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": "the-external-id-0001"}}})

    def assume(context: dict[str, str]) -> str:
        request = Request(principal=PARTNER_SESSION, action="sts:AssumeRole", resource=role,
                          resource_account=OURS,
                          context={"aws:PrincipalArn": PARTNER_ROLE, **context},
                          identity_policies=("all",), resource_policy="trust")
        return evaluator.evaluate_one(request, {"all": ALLOW_ALL, "trust": trust}).decision

    assert assume({"sts:ExternalId": "the-external-id-0001"}) == "Allowed"
    assert assume({"sts:ExternalId": "guessed"}) != "Allowed"
    assert assume({}) != "Allowed"


def test_memoization_changes_no_decision(matrix: MatrixResult, universe: Universe):
    """evaluate.mjs memoizes iam-simulate's per-(action, resource) lookups for speed; a sample
    of the matrix decided without it gives the same answers."""
    evaluated = [o for o in matrix.outcomes if not o.prefiltered]
    sample = evaluated[:: max(1, len(evaluated) // 1500)]
    batch = evaluator.Batch(policies=universe.documents,
                            requests=[to_evaluator_request(o.request) for o in sample])
    plain = evaluator.evaluate(batch, memoize=False)
    assert [d.decision for d in plain] == [o.decision.decision for o in sample]
