"""Permission checks with request context: each gap of moto 5.2.5 that localaws fills.

With moto alone, a TLS-only bucket policy refuses every object call (conditions are ignored and
count as met), a Deny naming one principal applies to everyone, condition-scoped identity
policies are unconditional, and a key policy's Deny for one principal locks everybody out of
DescribeKey. Each test here is a good/bad pair on the emulator.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.localaws.conftest import Aws

ACCOUNT = "123456789012"


def refused(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException", "403")
    return False


def bucket_with_policy(aws: Aws, name: str, *statements: dict[str, Any]) -> str:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=name)
    arn = f"arn:aws:s3:::{name}"
    for statement in statements:
        statement.setdefault("Resource", [arn, f"{arn}/*"])
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": list(statements)}))
    return name


def tls_only() -> dict[str, Any]:
    return {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def test_tls_only_bucket_serves_object_calls_over_tls(aws: Aws, unique) -> None:
    bucket = bucket_with_policy(aws, unique("tls"), tls_only())
    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket, Key="inbound/a.csv", Body=b"a")
    assert s3.get_object(Bucket=bucket, Key="inbound/a.csv")["Body"].read() == b"a"
    s3.head_object(Bucket=bucket, Key="inbound/a.csv")
    s3.delete_object(Bucket=bucket, Key="inbound/a.csv")


def test_tls_only_bucket_refuses_plain_http(aws_plain_http: Aws, unique) -> None:
    bucket = bucket_with_policy(aws_plain_http, unique("tls"), tls_only())
    s3 = aws_plain_http.client("s3")
    assert refused(lambda: s3.put_object(Bucket=bucket, Key="inbound/a.csv", Body=b"a"))


def test_a_bucket_without_a_tls_policy_still_works_over_plain_http(
    aws_plain_http: Aws, unique
) -> None:
    s3 = aws_plain_http.client("s3")
    bucket = unique("plain")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")  # the refusal above is the policy's


@pytest.mark.parametrize(("minimum", "expect_refused"), [("1.2", False), ("1.4", True)])
def test_minimum_tls_version_is_compared_with_the_negotiated_one(
    aws: Aws, unique, minimum: str, expect_refused: bool
) -> None:
    # The emulator offers TLS 1.2 and 1.3 only: a 1.2 floor passes, a (fictional) 1.4 floor
    # refuses, so the version really comes from the connection.
    bucket = bucket_with_policy(aws, unique("tlsv"), {
        "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
        "Condition": {"NumericLessThan": {"s3:TlsVersion": float(minimum)}}})
    s3 = aws.client("s3")
    assert refused(lambda: s3.put_object(Bucket=bucket, Key="a", Body=b"a")) is expect_refused


def test_encryption_headers_reach_the_bucket_policy(aws: Aws, unique) -> None:
    bucket = bucket_with_policy(aws, unique("sse"), {
        "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:PutObject",
        "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
                      "Null": {"s3:x-amz-server-side-encryption": "false"}}})
    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket, Key="a", Body=b"a", ServerSideEncryption="aws:kms")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")  # no header: not named, not refused
    assert refused(lambda: s3.put_object(Bucket=bucket, Key="c", Body=b"c",
                                         ServerSideEncryption="AES256"))


def test_a_deny_for_one_principal_leaves_everyone_else_alone(aws: Aws, unique) -> None:
    user = unique("denied")
    credentials = aws.user_with_key(user)
    bucket = bucket_with_policy(aws, unique("who"), {
        "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{user}"},
        "Action": "s3:PutObject"})
    aws.client("s3").put_object(Bucket=bucket, Key="a", Body=b"a")  # the operator
    assert refused(lambda: aws.client("s3", credentials).put_object(
        Bucket=bucket, Key="a", Body=b"a"))


def test_identity_policy_conditions_are_evaluated_with_checks_on(aws: Aws, unique) -> None:
    bucket = unique("list")
    aws.client("s3").create_bucket(Bucket=bucket)
    credentials = aws.user_with_key(unique("lister"), {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}",
        "Condition": {"StringLike": {"s3:prefix": ["inbound/*"]}}}]})
    s3 = aws.client("s3", credentials)
    with aws.permission_checks():
        s3.list_objects_v2(Bucket=bucket, Prefix="inbound/")
        assert refused(lambda: s3.list_objects_v2(Bucket=bucket, Prefix="other/"))
        assert refused(lambda: s3.list_objects_v2(Bucket=bucket))


def test_a_bucket_policy_grant_counts_for_a_caller_of_the_same_account(aws: Aws, unique) -> None:
    reader, stranger = unique("reader"), unique("stranger")
    reader_key, stranger_key = aws.user_with_key(reader), aws.user_with_key(stranger)
    bucket = bucket_with_policy(aws, unique("grant"), {
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{reader}"},
        "Action": "s3:GetObject"})
    aws.client("s3").put_object(Bucket=bucket, Key="outbound/r.csv", Body=b"r")
    with aws.permission_checks():
        body = aws.client("s3", reader_key).get_object(Bucket=bucket, Key="outbound/r.csv")
        assert body["Body"].read() == b"r"
        assert refused(lambda: aws.client("s3", stranger_key).get_object(
            Bucket=bucket, Key="outbound/r.csv"))


def test_an_identity_allow_does_not_override_a_bucket_policy_deny(aws: Aws, unique) -> None:
    user = unique("writer")
    credentials = aws.user_with_key(user, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
    bucket = bucket_with_policy(aws, unique("deny"), {
        "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:PutObject",
        "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}})
    s3 = aws.client("s3", credentials)
    with aws.permission_checks():
        s3.put_object(Bucket=bucket, Key="a", Body=b"a", ServerSideEncryption="aws:kms")
        assert refused(lambda: s3.put_object(Bucket=bucket, Key="b", Body=b"b"))


def test_a_key_policy_deny_for_the_partner_does_not_lock_out_the_operator(
    aws: Aws, unique
) -> None:
    partner = unique("partner")
    credentials = aws.user_with_key(partner)
    kms = aws.client("kms")
    key = kms.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "DenyPartnerKeyUseOutsideS3", "Effect": "Deny", "Principal": {"AWS": "*"},
         "Action": "kms:*", "Resource": "*", "Condition": {
             "ArnLike": {"aws:PrincipalArn": [f"arn:aws:iam::{ACCOUNT}:user/{partner}"]},
             "StringNotEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}},
    ]}))["KeyMetadata"]["Arn"]
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["Enabled"] is True  # the operator
    assert refused(lambda: aws.client("kms", credentials).describe_key(KeyId=key))


def test_only_active_access_keys_sign_requests_with_checks_on(aws: Aws, unique) -> None:
    user = unique("rotating")
    old = aws.user_with_key(user, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]})
    iam = aws.client("iam")
    new_key = iam.create_access_key(UserName=user)["AccessKey"]
    new = (new_key["AccessKeyId"], new_key["SecretAccessKey"])
    with aws.permission_checks():
        # The grace period: both keys work.
        aws.client("s3", old).list_buckets()
        aws.client("s3", new).list_buckets()
    iam.update_access_key(UserName=user, AccessKeyId=old[0], Status="Inactive")
    with aws.permission_checks():
        with pytest.raises(ClientError) as refused_old:
            aws.client("s3", old).list_buckets()
        assert refused_old.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        aws.client("s3", new).list_buckets()
