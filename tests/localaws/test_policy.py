"""The policy evaluator on its own: AWS's documented semantics, one behaviour per test."""

from __future__ import annotations

from typing import Any

import pytest

from localaws.policy import (
    Decision,
    Request,
    evaluate,
    evaluate_all,
    explicitly_allows,
    unsupported_operators,
)

BUCKET = "arn:aws:s3:::phi-acme-123456789012-us-east-1"
USER = "arn:aws:iam::123456789012:user/phi-exchange-acme-partner"


def deny(condition: dict[str, Any], action: str = "s3:*",
         principal: Any = None) -> dict[str, Any]:
    return {"Statement": [{"Effect": "Deny", "Principal": principal or {"AWS": "*"},
                           "Action": action, "Resource": [BUCKET, f"{BUCKET}/*"],
                           "Condition": condition}]}


def put(**context: str) -> Request:
    return Request(action="s3:PutObject", resource=f"{BUCKET}/inbound/a.csv", principal=USER,
                   context={k: [v] for k, v in context.items()})


TLS_ONLY = deny({"Bool": {"aws:SecureTransport": "false"}})


def test_tls_only_policy_allows_a_request_over_tls() -> None:
    assert evaluate(TLS_ONLY, put(**{"aws:SecureTransport": "true"})) is Decision.NOT_APPLICABLE


def test_tls_only_policy_denies_plain_http() -> None:
    assert evaluate(TLS_ONLY, put(**{"aws:SecureTransport": "false"})) is Decision.DENY


def test_minimum_tls_version_denies_older_versions_only() -> None:
    policy = deny({"NumericLessThan": {"s3:TlsVersion": 1.2}})  # CDK writes a number
    assert evaluate(policy, put(**{"s3:TlsVersion": "1.3"})) is Decision.NOT_APPLICABLE
    assert evaluate(policy, put(**{"s3:TlsVersion": "1.1"})) is Decision.DENY


def test_negated_operator_with_if_exists_matches_when_the_key_is_absent() -> None:
    # AWS: "If the key is not present, evaluate the condition element as true". A Deny with
    # StringNotEqualsIfExists therefore refuses a request that does not send the header.
    policy = deny({"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}},
                  action="s3:PutObject")
    assert evaluate(policy, put()) is Decision.DENY
    assert evaluate(policy, put(**{"s3:x-amz-server-side-encryption": "aws:kms"})) \
        is Decision.NOT_APPLICABLE
    assert evaluate(policy, put(**{"s3:x-amz-server-side-encryption": "AES256"})) \
        is Decision.DENY


def test_negated_operator_with_null_false_denies_only_a_wrong_header() -> None:
    policy = deny({"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
                   "Null": {"s3:x-amz-server-side-encryption": "false"}}, action="s3:PutObject")
    assert evaluate(policy, put()) is Decision.NOT_APPLICABLE
    assert evaluate(policy, put(**{"s3:x-amz-server-side-encryption": "AES256"})) \
        is Decision.DENY


def test_positive_operator_does_not_match_an_absent_key() -> None:
    policy = deny({"StringEquals": {"s3:x-amz-server-side-encryption": "AES256"}})
    assert evaluate(policy, put()) is Decision.NOT_APPLICABLE


def test_negated_operator_without_if_exists_matches_an_absent_key() -> None:
    policy = deny({"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}})
    assert evaluate(policy, put()) is Decision.DENY


def test_null_true_means_the_key_must_be_absent() -> None:
    policy = deny({"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "true"}})
    assert evaluate(policy, put()) is Decision.DENY
    assert evaluate(policy, put(**{"s3:x-amz-server-side-encryption-customer-algorithm":
                                   "AES256"})) is Decision.NOT_APPLICABLE


def test_condition_keys_are_case_insensitive_values_are_not() -> None:
    policy = deny({"StringEquals": {"AWS:securetransport": "false"}})
    assert evaluate(policy, put(**{"aws:SecureTransport": "false"})) is Decision.DENY
    policy = deny({"StringEquals": {"s3:prefix": "Inbound/"}})
    assert evaluate(policy, put(**{"s3:prefix": "inbound/"})) is Decision.NOT_APPLICABLE


def test_arn_like_matches_per_arn_part_with_wildcards() -> None:
    policy = deny({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:user/phi-*"}})
    assert evaluate(policy, put(**{"aws:PrincipalArn": USER})) is Decision.DENY
    other = "arn:aws:iam::210987654321:user/phi-exchange-acme-partner"
    assert evaluate(policy, put(**{"aws:PrincipalArn": other})) is Decision.NOT_APPLICABLE


def test_not_ip_address_denies_addresses_outside_the_ranges() -> None:
    policy = deny({"NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24"]}})
    assert evaluate(policy, put(**{"aws:SourceIp": "203.0.113.7"})) is Decision.NOT_APPLICABLE
    assert evaluate(policy, put(**{"aws:SourceIp": "127.0.0.1"})) is Decision.DENY


def test_all_operators_and_keys_of_a_statement_must_match() -> None:
    policy = deny({"ArnLike": {"aws:PrincipalArn": USER},
                   "StringNotEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}})
    assert evaluate(policy, put(**{"aws:PrincipalArn": USER,
                                   "kms:ViaService": "s3.us-east-1.amazonaws.com"})) \
        is Decision.NOT_APPLICABLE
    assert evaluate(policy, put(**{"aws:PrincipalArn": USER})) is Decision.DENY


def test_a_statement_for_one_principal_does_not_apply_to_another() -> None:
    policy = deny({}, principal={"AWS": "arn:aws:iam::123456789012:user/someone-else"})
    assert evaluate(policy, put()) is Decision.NOT_APPLICABLE


def test_an_account_principal_names_every_principal_of_the_account() -> None:
    allow = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "123456789012"},
                            "Action": "s3:PutObject", "Resource": f"{BUCKET}/*"}]}
    assert evaluate(allow, put()) is Decision.ALLOW
    root = {"Statement": [{**allow["Statement"][0],
                           "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}
    assert evaluate(root, put()) is Decision.ALLOW


def test_service_principals_never_match_a_caller() -> None:
    grant = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
                            "Action": "s3:PutObject", "Resource": f"{BUCKET}/*"}]}
    assert evaluate(grant, put()) is Decision.NOT_APPLICABLE


def test_a_service_principal_matches_that_service_only() -> None:
    grant = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
                            "Action": "s3:PutObject", "Resource": f"{BUCKET}/*"}]}
    delivery = Request("s3:PutObject", f"{BUCKET}/logs/a", service="logging.s3.amazonaws.com")
    assert evaluate(grant, delivery) is Decision.ALLOW
    other = Request("s3:PutObject", f"{BUCKET}/logs/a", service="cloudtrail.amazonaws.com")
    assert evaluate(grant, other) is Decision.NOT_APPLICABLE


def test_everyone_includes_services_so_the_tls_deny_binds_them_too() -> None:
    delivery = Request("s3:PutObject", f"{BUCKET}/a", service="cloudtrail.amazonaws.com",
                       context={"aws:SecureTransport": ["false"]})
    assert evaluate(TLS_ONLY, delivery) is Decision.DENY


ROLE = "arn:aws:iam::111122223333:role/globex-file-transfer"
SESSION = "arn:aws:sts::111122223333:assumed-role/globex-file-transfer/partner-transfer"


def session_put(**context: str) -> Request:
    return Request("s3:PutObject", f"{BUCKET}/inbound/a.csv", principal=SESSION, role_arn=ROLE,
                   context={k: [v] for k, v in context.items()})


def test_a_policy_naming_a_role_matches_its_sessions() -> None:
    grant = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": ROLE},
                            "Action": "s3:PutObject", "Resource": f"{BUCKET}/inbound/*"}]}
    assert evaluate(grant, session_put()) is Decision.ALLOW
    other_role = Request("s3:PutObject", f"{BUCKET}/inbound/a.csv",
                         principal=SESSION.replace("globex-file-transfer", "other"),
                         role_arn=ROLE.replace("globex-file-transfer", "other"))
    assert evaluate(grant, other_role) is Decision.NOT_APPLICABLE


def test_explicit_grants_name_the_caller_not_its_account() -> None:
    by_role = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": ROLE},
                              "Action": "s3:PutObject", "Resource": f"{BUCKET}/*"}]}
    by_account = {"Statement": [{**by_role["Statement"][0],
                                 "Principal": {"AWS": "arn:aws:iam::111122223333:root"}}]}
    assert explicitly_allows(by_role, session_put())
    assert evaluate(by_account, session_put()) is Decision.ALLOW
    assert not explicitly_allows(by_account, session_put())


# --- the audit stack's forms: CloudTrail as a service principal -------------------------------

TRAIL = "arn:aws:cloudtrail:us-east-1:123456789012:trail/phi-exchange-audit"
CUSTODY = "arn:aws:s3:::phiexchange-audit-custody"
AUDIT_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALGORITHM = "s3:x-amz-server-side-encryption"
KEY_ID = "s3:x-amz-server-side-encryption-aws-kms-key-id"
# The custody bucket's wrong-encryption denies, each exempting the trail by aws:SourceArn.
CUSTODY_DENIES = {"Statement": [
    {"Sid": "DenyEncryptionOtherThanKms", "Effect": "Deny", "Principal": {"AWS": "*"},
     "Action": "s3:PutObject", "Resource": f"{CUSTODY}/*",
     "Condition": {"StringNotEquals": {ALGORITHM: "aws:kms", "aws:SourceArn": TRAIL},
                   "Null": {ALGORITHM: "false"}}},
    {"Sid": "DenyOtherKmsKeys", "Effect": "Deny", "Principal": {"AWS": "*"},
     "Action": "s3:PutObject", "Resource": f"{CUSTODY}/*",
     "Condition": {"StringNotEquals": {KEY_ID: AUDIT_KEY, "aws:SourceArn": TRAIL},
                   "Null": {KEY_ID: "false"}}},
]}


def custody_put(*, service: str | None = None, **context: str) -> Request:
    return Request("s3:PutObject", f"{CUSTODY}/AWSLogs/123456789012/CloudTrail-Digest/x.json.gz",
                   principal=None if service else USER, service=service,
                   context={k: [v] for k, v in context.items()})


def test_the_trail_s_own_digest_with_sse_s3_passes_the_custody_denies() -> None:
    digest = custody_put(service="cloudtrail.amazonaws.com",
                         **{ALGORITHM: "AES256", "aws:SourceArn": TRAIL})
    assert evaluate(CUSTODY_DENIES, digest) is Decision.NOT_APPLICABLE


def test_anyone_else_s_sse_s3_upload_is_denied_by_the_custody_denies() -> None:
    # No aws:SourceArn in the request: the negated test of the absent key matches.
    assert evaluate(CUSTODY_DENIES, custody_put(**{ALGORITHM: "AES256"})) is Decision.DENY
    other_trail = custody_put(service="cloudtrail.amazonaws.com", **{
        ALGORITHM: "AES256", "aws:SourceArn": TRAIL.replace("phi-exchange-audit", "other")})
    assert evaluate(CUSTODY_DENIES, other_trail) is Decision.DENY


def test_custody_denies_leave_uploads_without_encryption_headers_alone() -> None:
    assert evaluate(CUSTODY_DENIES, custody_put()) is Decision.NOT_APPLICABLE
    kms = custody_put(**{ALGORITHM: "aws:kms", KEY_ID: AUDIT_KEY})
    assert evaluate(CUSTODY_DENIES, kms) is Decision.NOT_APPLICABLE
    assert evaluate(CUSTODY_DENIES, custody_put(**{ALGORITHM: "aws:kms", KEY_ID: AUDIT_KEY + "x"})
                    ) is Decision.DENY


CLOUDTRAIL_KEY_GRANTS = {"Statement": [
    {"Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
     "Action": "kms:GenerateDataKey*", "Resource": "*",
     "Condition": {"StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                  "arn:aws:cloudtrail:*:123456789012:trail/*"},
                   "ArnEquals": {"aws:SourceArn": TRAIL}}},
    {"Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
     "Action": "kms:DescribeKey", "Resource": "*",
     "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:cloudtrail:*:123456789012:trail/*"}}},
]}


def cloudtrail_kms(action: str, **context: str) -> Request:
    return Request(action, AUDIT_KEY, service="cloudtrail.amazonaws.com",
                   context={k: [v] for k, v in context.items()})


def test_cloudtrail_key_grant_needs_the_trail_and_its_encryption_context() -> None:
    context = "kms:EncryptionContext:aws:cloudtrail:arn"
    assert evaluate(CLOUDTRAIL_KEY_GRANTS, cloudtrail_kms(
        "kms:GenerateDataKey", **{context: TRAIL, "aws:SourceArn": TRAIL})) is Decision.ALLOW
    # ArnEquals compares whole ARN parts: another trail, or no context, is not granted.
    assert evaluate(CLOUDTRAIL_KEY_GRANTS, cloudtrail_kms(
        "kms:GenerateDataKey", **{context: TRAIL, "aws:SourceArn": TRAIL + "2"})) \
        is Decision.NOT_APPLICABLE
    assert evaluate(CLOUDTRAIL_KEY_GRANTS, cloudtrail_kms(
        "kms:GenerateDataKey", **{"aws:SourceArn": TRAIL})) is Decision.NOT_APPLICABLE
    assert evaluate(CLOUDTRAIL_KEY_GRANTS, cloudtrail_kms(
        "kms:DescribeKey", **{"aws:SourceArn": TRAIL})) is Decision.ALLOW


def test_an_encryption_context_condition_never_grants_describe_key() -> None:
    # AWS supplies no encryption context for DescribeKey, so such a statement cannot match it.
    grant = {"Statement": [{**CLOUDTRAIL_KEY_GRANTS["Statement"][0], "Action": "kms:*"}]}
    assert evaluate(grant, cloudtrail_kms("kms:DescribeKey", **{"aws:SourceArn": TRAIL})) \
        is Decision.NOT_APPLICABLE


def test_null_false_on_an_encryption_context_key_requires_it() -> None:
    root = "arn:aws:iam::123456789012:root"
    reader = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": root},
                             "Action": "kms:Decrypt", "Resource": "*",
                             "Condition": {"Null": {
                                 "kms:EncryptionContext:aws:cloudtrail:arn": "false"}}}]}
    with_context = Request("kms:Decrypt", AUDIT_KEY, USER,
                           {"kms:EncryptionContext:aws:cloudtrail:arn": [TRAIL]})
    assert evaluate(reader, with_context) is Decision.ALLOW
    assert evaluate(reader, Request("kms:Decrypt", AUDIT_KEY, USER)) is Decision.NOT_APPLICABLE


def test_allow_with_an_unmet_condition_is_not_a_deny() -> None:
    # moto 5.2.5 turns this into an explicit deny; AWS simply does not apply the statement.
    identity = {"Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": BUCKET,
                               "Condition": {"StringLike": {"s3:prefix": ["inbound/*"]}}}]}
    listing = Request("s3:ListBucket", BUCKET, USER, {"s3:prefix": ["other/"]})
    assert evaluate(identity, listing) is Decision.NOT_APPLICABLE
    allowed = Request("s3:ListBucket", BUCKET, USER, {"s3:prefix": ["inbound/2026/"]})
    assert evaluate(identity, allowed) is Decision.ALLOW


def test_actions_match_case_insensitively_with_wildcards_resources_exactly() -> None:
    identity = {"Statement": [{"Effect": "Allow", "Action": "S3:Put*",
                               "Resource": f"{BUCKET}/inbound/*"}]}
    assert evaluate(identity, put()) is Decision.ALLOW
    outbound = Request("s3:PutObject", f"{BUCKET}/outbound/a.csv", USER)
    assert evaluate(identity, outbound) is Decision.NOT_APPLICABLE


def test_not_action_and_not_resource_invert_the_match() -> None:
    policy = {"Statement": [{"Effect": "Deny", "NotAction": "s3:GetObject",
                             "NotResource": f"{BUCKET}/public/*"}]}
    assert evaluate(policy, put()) is Decision.DENY
    read = Request("s3:GetObject", f"{BUCKET}/inbound/a.csv", USER)
    assert evaluate(policy, read) is Decision.NOT_APPLICABLE


def test_a_deny_in_any_document_wins() -> None:
    allow = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    assert evaluate_all([allow, TLS_ONLY], put(**{"aws:SecureTransport": "false"})) \
        is Decision.DENY
    assert evaluate_all([allow, TLS_ONLY], put(**{"aws:SecureTransport": "true"})) \
        is Decision.ALLOW


@pytest.mark.parametrize(("effect", "expected"), [("Deny", Decision.DENY),
                                                  ("Allow", Decision.NOT_APPLICABLE)])
def test_an_unsupported_operator_fails_closed(effect: str, expected: Decision) -> None:
    policy = {"Statement": [{"Effect": effect, "Action": "s3:*", "Resource": "*",
                             "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}}}]}
    assert unsupported_operators(policy) == {"DateGreaterThan"}
    assert evaluate(policy, put()) is expected
