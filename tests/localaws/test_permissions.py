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

from localaws import server
from tests.localaws.conftest import PARTNER_ADDRESS, Aws

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


# --- other accounts, role sessions, source addresses ------------------------------------------

PARTNER_ACCOUNT = "111122223333"


def partner_role(aws: Aws, unique, policy: dict[str, Any] | None) -> tuple[str, Any]:
    """A role in the partner's account, assumed by a user of that account; returns the role's
    ARN and a session's credentials (created with checks off, assumed with checks on)."""
    admin_name, role_name = unique("partner-admin"), unique("partner-role")
    admin_arn = f"arn:aws:iam::{PARTNER_ACCOUNT}:user/{admin_name}"
    role_arn = aws.role(role_name, {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"}]},
        policy, account=PARTNER_ACCOUNT)
    admin = aws.user_with_key(admin_name, {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}]},
        account=PARTNER_ACCOUNT)
    with aws.permission_checks():
        answer = aws.client("sts", admin).assume_role(RoleArn=role_arn,
                                                      RoleSessionName="partner")["Credentials"]
    return role_arn, (answer["AccessKeyId"], answer["SecretAccessKey"], answer["SessionToken"])


def put_anything(bucket: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["s3:PutObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}


def test_across_accounts_the_identity_policy_alone_is_not_enough(aws: Aws, unique) -> None:
    bucket = unique("xacct")
    aws.client("s3").create_bucket(Bucket=bucket)
    _, session = partner_role(aws, unique, put_anything(bucket))
    with aws.permission_checks():
        # moto alone looked for the bucket policy in the caller's account and let this in.
        assert refused(lambda: aws.client("s3", session).put_object(
            Bucket=bucket, Key="inbound/a", Body=b"a"))
        assert refused(lambda: aws.client("s3", session).list_objects_v2(Bucket=bucket))


def test_across_accounts_the_bucket_grant_alone_is_not_enough(aws: Aws, unique) -> None:
    bucket = unique("xacct")
    role_arn, session = partner_role(aws, unique, None)
    bucket_with_policy(aws, bucket, {"Effect": "Allow", "Principal": {"AWS": role_arn},
                                     "Action": "s3:PutObject"})
    with aws.permission_checks():
        assert refused(lambda: aws.client("s3", session).put_object(
            Bucket=bucket, Key="inbound/a", Body=b"a"))


def test_across_accounts_both_grants_let_the_role_s_sessions_in(aws: Aws, unique) -> None:
    bucket = unique("xacct")
    role_arn, session = partner_role(aws, unique, put_anything(bucket))
    bucket_with_policy(aws, bucket, {"Effect": "Allow", "Principal": {"AWS": role_arn},
                                     "Action": "s3:PutObject"})
    with aws.permission_checks():
        aws.client("s3", session).put_object(Bucket=bucket, Key="inbound/a", Body=b"a")
    # The bucket's owner sees who wrote it: the partner's session, not our account's root.
    assert aws.client("s3").get_object(Bucket=bucket, Key="inbound/a")["Body"].read() == b"a"


def test_principal_arn_of_a_session_is_its_role_so_source_ip_denies_apply(
    aws: Aws, unique
) -> None:
    bucket = unique("srcip")
    role_arn, session = partner_role(aws, unique, put_anything(bucket))
    bucket_with_policy(
        aws, bucket,
        {"Effect": "Allow", "Principal": {"AWS": role_arn}, "Action": "s3:PutObject"},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
         "Condition": {"ArnLike": {"aws:PrincipalArn": [role_arn]},
                       "NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24"]}}})
    with aws.permission_checks():
        # From 127.0.0.1: denied. (With aws:PrincipalArn = the session ARN it never matched.)
        assert refused(lambda: aws.client("s3", session).put_object(
            Bucket=bucket, Key="inbound/a", Body=b"a"))
        # Through the emulator's listener for 203.0.113.7: allowed.
        aws.client("s3", session, source_address=PARTNER_ADDRESS).put_object(
            Bucket=bucket, Key="inbound/a", Body=b"a")


def trust_with_external_id(principal: str, external_id: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]}


def test_cross_account_assume_role_checks_the_trust_policy_and_external_id(
    aws: Aws, unique
) -> None:
    partner_arn, partner = partner_role(aws, unique, {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]})
    ours = aws.role(unique("ours"), trust_with_external_id(partner_arn, "ext-1"))
    sts = aws.client("sts", partner)
    with aws.permission_checks():
        # moto alone never read the trust policy of a role in another account.
        assert refused(lambda: sts.assume_role(RoleArn=ours, RoleSessionName="partner"))
        assert refused(lambda: sts.assume_role(RoleArn=ours, RoleSessionName="partner",
                                               ExternalId="ext-2"))
        answer = sts.assume_role(RoleArn=ours, RoleSessionName="partner", ExternalId="ext-1")
    assert answer["AssumedRoleUser"]["Arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/")


def test_cross_account_assume_role_needs_the_caller_s_own_permission(aws: Aws, unique) -> None:
    partner_arn, partner = partner_role(aws, unique, None)  # may not sts:AssumeRole
    ours = aws.role(unique("ours"), trust_with_external_id(partner_arn, "ext-1"))
    with aws.permission_checks():
        assert refused(lambda: aws.client("sts", partner).assume_role(
            RoleArn=ours, RoleSessionName="partner", ExternalId="ext-1"))


def test_a_principal_the_trust_policy_does_not_name_is_refused(aws: Aws, unique) -> None:
    named, _ = partner_role(aws, unique, None)
    _, stranger = partner_role(aws, unique, {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]})
    ours = aws.role(unique("ours"), trust_with_external_id(named, "ext-1"))
    with aws.permission_checks():
        assert refused(lambda: aws.client("sts", stranger).assume_role(
            RoleArn=ours, RoleSessionName="partner", ExternalId="ext-1"))


def test_sessions_longer_than_the_role_allows_are_refused(aws: Aws, unique) -> None:
    partner_arn, partner = partner_role(aws, unique, {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]})
    ours = aws.role(unique("ours"), trust_with_external_id(partner_arn, "ext-1"), max_session=3600)
    with aws.permission_checks(), pytest.raises(ClientError) as error:
        aws.client("sts", partner).assume_role(RoleArn=ours, RoleSessionName="partner",
                                               ExternalId="ext-1", DurationSeconds=7200)
    assert error.value.response["Error"]["Code"] == "ValidationError"


# --- resources of other services -------------------------------------------------------------


def test_identity_policies_scoped_to_one_secret_topic_and_user(aws: Aws, unique) -> None:
    secretsmanager, sns, iam = aws.client("secretsmanager"), aws.client("sns"), aws.client("iam")
    mine = secretsmanager.create_secret(Name=unique("mine"), SecretString="1")["ARN"]
    other = secretsmanager.create_secret(Name=unique("other"), SecretString="2")["ARN"]
    topic = sns.create_topic(Name=unique("notices"))["TopicArn"]
    other_topic = sns.create_topic(Name=unique("other"))["TopicArn"]
    owner, stranger = unique("owner"), unique("stranger")
    iam.create_user(UserName=owner)
    iam.create_user(UserName=stranger)
    caller = aws.user_with_key(unique("scoped"), {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue",
                                       "secretsmanager:PutSecretValue"], "Resource": mine},
        {"Effect": "Allow", "Action": "sns:Publish", "Resource": topic},
        {"Effect": "Allow", "Action": "iam:ListAccessKeys",
         "Resource": f"arn:aws:iam::{ACCOUNT}:user/{owner}"}]})
    sm, publisher, keys = (aws.client(s, caller) for s in ("secretsmanager", "sns", "iam"))
    with aws.permission_checks():
        # moto alone compared these Resource ARNs with "*" and refused every call.
        assert sm.get_secret_value(SecretId=mine)["SecretString"] == "1"
        sm.put_secret_value(SecretId=mine, SecretString="3")
        publisher.publish(TopicArn=topic, Message="m")
        keys.list_access_keys(UserName=owner)
        assert refused(lambda: sm.get_secret_value(SecretId=other))
        assert refused(lambda: sm.describe_secret(SecretId=mine))  # action not granted
        assert refused(lambda: publisher.publish(TopicArn=other_topic, Message="m"))
        assert refused(lambda: keys.list_access_keys(UserName=stranger))


def test_get_queue_url_is_checked_against_the_named_queue(aws: Aws, unique) -> None:
    sqs = aws.client("sqs")
    mine, other = unique("ingestion"), unique("other")
    for name in (mine, other):
        sqs.create_queue(QueueName=name)
    caller = aws.user_with_key(unique("consumer"), {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sqs:GetQueueUrl",
         "Resource": f"arn:aws:sqs:us-east-1:{ACCOUNT}:{mine}"}]})
    consumer = aws.client("sqs", caller)
    with aws.permission_checks():
        # moto alone compared the queue's ARN with "*" (GetQueueUrl names no QueueUrl).
        assert consumer.get_queue_url(QueueName=mine)["QueueUrl"].endswith(f"/{mine}")
        assert refused(lambda: consumer.get_queue_url(QueueName=other))


def test_resource_account_is_the_bucket_owner_s(aws: Aws, unique) -> None:
    # The CDK bootstrap's file-publishing role: s3:* on its bucket, if aws:ResourceAccount is
    # our account.
    bucket = unique("assets")
    aws.client("s3").create_bucket(Bucket=bucket)

    def scoped(account: str) -> Any:
        return aws.client("s3", aws.user_with_key(unique("publisher"), {
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringEquals": {"aws:ResourceAccount": [account]}}}]}))

    ours, elsewhere = scoped(ACCOUNT), scoped("111122223333")
    with aws.permission_checks():
        ours.list_objects_v2(Bucket=bucket)
        assert refused(lambda: elsewhere.list_objects_v2(Bucket=bucket))


def test_a_service_gets_a_session_only_when_the_trust_policy_admits_it(
    aws: Aws, unique
) -> None:
    lambda_trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}
    role = aws.role(unique("function"), lambda_trust, {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sns:ListTopics", "Resource": "*"}]})
    session = server.service_role_session(aws.emulator, service="lambda.amazonaws.com",
                                          role_arn=role, session_name="function")
    credentials = (session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"])
    with aws.permission_checks():
        identity = aws.client("sts", credentials).get_caller_identity()
        aws.client("sns", credentials).list_topics()
    assert identity["Arn"] == session["Arn"] and ":assumed-role/" in identity["Arn"]
    with pytest.raises(server.EmulatorError, match=r"does not allow states\.amazonaws\.com"):
        server.service_role_session(aws.emulator, service="states.amazonaws.com",
                                    role_arn=role, session_name="function")


# --- principal tags ----------------------------------------------------------------------------

ASSUME_ANY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}


def tagged_trust(tag: str, *, tag_session: bool = False) -> dict[str, Any]:
    """Our account's principals carrying ``tag = true``, as phi_core.account_roles writes it."""
    statements: list[dict[str, Any]] = [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {f"aws:PrincipalTag/{tag}": "true"}}}]
    if tag_session:
        statements.append({"Effect": "Allow",
                           "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                           "Action": "sts:TagSession"})
    return {"Version": "2012-10-17", "Statement": statements}


def tag_user(aws: Aws, name: str, key: str, value: str) -> None:
    aws.client("iam").tag_user(UserName=name, Tags=[{"Key": key, "Value": value}])


def test_a_user_s_tags_are_its_principal_tags_in_a_trust_policy(aws: Aws, unique) -> None:
    role = aws.role(unique("cdk-deploy"), tagged_trust("phi-exchange:cdk-deploy"))
    tagged, untagged, other_value = unique("deployer"), unique("untagged"), unique("yes")
    keys = {name: aws.user_with_key(name, ASSUME_ANY)
            for name in (tagged, untagged, other_value)}
    tag_user(aws, tagged, "phi-exchange:cdk-deploy", "true")
    tag_user(aws, other_value, "phi-exchange:cdk-deploy", "yes")
    with aws.permission_checks():
        # moto alone had no aws:PrincipalTag: the untagged user was let in.
        assert refused(lambda: aws.client("sts", keys[untagged]).assume_role(
            RoleArn=role, RoleSessionName="aws-cdk-untagged"))
        assert refused(lambda: aws.client("sts", keys[other_value]).assume_role(
            RoleArn=role, RoleSessionName="aws-cdk-yes"))
        session = aws.client("sts", keys[tagged]).assume_role(
            RoleArn=role, RoleSessionName="aws-cdk-deployer")
    assert session["AssumedRoleUser"]["Arn"].endswith("/aws-cdk-deployer")


def test_the_refusal_is_recorded_with_the_condition_the_caller_did_not_meet(
    aws: Aws, unique
) -> None:
    role = aws.role(unique("importer"), tagged_trust("phi-exchange:importer"))
    name = unique("runner")
    key = aws.user_with_key(name, ASSUME_ANY)
    since, _ = server.authorizations(aws.emulator)
    with aws.permission_checks():
        assert refused(lambda: aws.client("sts", key).assume_role(
            RoleArn=role, RoleSessionName="importer"))
    _, records = server.authorizations(aws.emulator, since)
    (denial,) = [r for r in records if not r["allowed"]]
    assert (denial["caller"], denial["action"], denial["resource"]) == (
        f"arn:aws:iam::{ACCOUNT}:user/{name}", "sts:AssumeRole", role)
    assert denial["reason"] == ("because the role's trust policy admits the caller only with "
                                "StringEquals aws:PrincipalTag/phi-exchange:importer = true")


def test_a_role_session_carries_its_role_s_tags(aws: Aws, unique) -> None:
    runner = unique("runner")
    middle = aws.role(unique("middle"), {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{runner}"},
        "Action": "sts:AssumeRole"}]}, ASSUME_ANY)
    target = aws.role(unique("operator"), tagged_trust("phi-exchange:operator"))
    key = aws.user_with_key(runner, ASSUME_ANY)

    def middle_session() -> Any:
        answer = aws.client("sts", key).assume_role(RoleArn=middle, RoleSessionName="middle")
        credentials = answer["Credentials"]
        return (credentials["AccessKeyId"], credentials["SecretAccessKey"],
                credentials["SessionToken"])

    with aws.permission_checks():
        untagged = middle_session()
        assert refused(lambda: aws.client("sts", untagged).assume_role(
            RoleArn=target, RoleSessionName="op"))
    aws.client("iam").tag_role(RoleName=middle.rsplit("/", 1)[-1],
                               Tags=[{"Key": "phi-exchange:operator", "Value": "true"}])
    with aws.permission_checks():
        aws.client("sts", middle_session()).assume_role(RoleArn=target, RoleSessionName="op")


def test_session_tags_need_tag_session_and_override_the_role_s_tags(aws: Aws, unique) -> None:
    runner = unique("runner")
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{runner}"},
        "Action": "sts:AssumeRole"}]}
    plain = aws.role(unique("plain"), trust, ASSUME_ANY)
    taggable = aws.role(unique("taggable"), {**trust, "Statement": [
        *trust["Statement"], {**trust["Statement"][0], "Action": "sts:TagSession"}]},
        ASSUME_ANY)
    aws.client("iam").tag_role(RoleName=taggable.rsplit("/", 1)[-1],
                               Tags=[{"Key": "phi-exchange:operator", "Value": "true"}])
    target = aws.role(unique("operator"), tagged_trust("phi-exchange:operator"))
    key = aws.user_with_key(runner, {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": "*"}]})
    off = [{"Key": "phi-exchange:operator", "Value": "false"}]
    sts = aws.client("sts", key)
    with aws.permission_checks():
        # The trust policy of `plain` does not allow sts:TagSession: no tagged session.
        assert refused(lambda: sts.assume_role(RoleArn=plain, RoleSessionName="session",
                                               Tags=off))
        answer = sts.assume_role(RoleArn=taggable, RoleSessionName="session",
                                 Tags=off)["Credentials"]
        session = (answer["AccessKeyId"], answer["SecretAccessKey"], answer["SessionToken"])
        # The session tag "false" replaces the role's tag "true".
        assert refused(lambda: aws.client("sts", session).assume_role(
            RoleArn=target, RoleSessionName="op"))


# --- CloudFormation, SSM and the role CloudFormation is given ----------------------------------


def test_cloudformation_and_ssm_calls_are_checked_against_their_arns(
    aws: Aws, unique
) -> None:
    ours, other = unique("PhiExchange-test"), unique("Other")
    for name in (ours, other):
        aws.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(
            {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}))
    parameter = f"/cdk-bootstrap/{unique('q')}/version"
    aws.client("ssm").put_parameter(Name=parameter, Value="30", Type="String")
    aws.client("ssm").put_parameter(Name=f"/other/{unique('p')}", Value="x", Type="String")
    key = aws.user_with_key(unique("deployer"), {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "cloudformation:DescribeStacks",
         "Resource": f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/PhiExchange-*/*"},
        {"Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParameters"],
         "Resource": f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/cdk-bootstrap/*"}]})
    cloudformation, ssm = aws.client("cloudformation", key), aws.client("ssm", key)
    with aws.permission_checks():
        # moto alone compared these ARNs with "*" and refused every call.
        cloudformation.describe_stacks(StackName=ours)
        assert ssm.get_parameter(Name=parameter)["Parameter"]["Value"] == "30"
        assert ssm.get_parameters(Names=[parameter])["Parameters"]
        assert refused(lambda: cloudformation.describe_stacks(StackName=other))
        assert refused(lambda: cloudformation.describe_stacks())  # every stack: resource *
        assert refused(lambda: ssm.get_parameter(Name="/other/x"))
        assert refused(lambda: ssm.get_parameters(Names=[parameter, "/other/x"]))


def test_handing_cloudformation_a_role_needs_pass_role_and_the_role_s_trust(
    aws: Aws, unique
) -> None:
    cloudformation_trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "cloudformation.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}
    deployment = aws.role(unique("deployment"), cloudformation_trust)
    lambda_only = aws.role(unique("not-for-cfn"), {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})
    change_sets = {"Effect": "Allow", "Action": "cloudformation:CreateChangeSet",
                   "Resource": "*"}
    pass_role = {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
                 "Condition": {"StringEquals": {
                     "iam:PassedToService": "cloudformation.amazonaws.com"}}}
    without = aws.user_with_key(unique("no-pass"), {"Version": "2012-10-17",
                                                    "Statement": [change_sets]})
    with_pass = aws.user_with_key(unique("pass"), {"Version": "2012-10-17",
                                                   "Statement": [change_sets, pass_role]})
    body = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})

    def create(credentials: Any, role: str) -> Any:
        return aws.client("cloudformation", credentials).create_change_set(
            StackName=unique("PhiExchange-pass"), ChangeSetName="cdk-deploy-change-set",
            ChangeSetType="CREATE", TemplateBody=body, RoleARN=role)

    with aws.permission_checks():
        assert refused(lambda: create(without, deployment))
        create(with_pass, deployment)
        with pytest.raises(ClientError) as invalid:
            create(with_pass, lambda_only)
    assert invalid.value.response["Error"]["Code"] == "ValidationError"


# --- S3 actions as AWS names them ---------------------------------------------------------------


def test_a_version_s_deletion_is_authorized_as_delete_object_version(aws: Aws, unique) -> None:
    bucket = bucket_with_policy(aws, unique("versions"), {
        "Sid": "OnlyDeploymentChangesTheBucket", "Effect": "Deny", "Principal": {"AWS": "*"},
        "Action": ["s3:DeleteObjectVersion", "s3:PutBucketPolicy",
                   "s3:PutEncryptionConfiguration"],
        "Condition": {"ArnNotLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/x"}}})
    s3 = aws.client("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    version = s3.put_object(Bucket=bucket, Key="inbound/a.csv", Body=b"a")["VersionId"]
    # Checks off (moto's bucket-policy check alone named this s3:DeleteObject).
    assert refused(lambda: s3.delete_object(Bucket=bucket, Key="inbound/a.csv",
                                            VersionId=version))
    s3.delete_object(Bucket=bucket, Key="inbound/a.csv")  # a delete marker: s3:DeleteObject
    admin = aws.user_with_key(unique("admin"), {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    admin_s3 = aws.client("s3", admin)
    since, _ = server.authorizations(aws.emulator)
    with aws.permission_checks():
        assert refused(lambda: admin_s3.delete_object(Bucket=bucket, Key="inbound/a.csv",
                                                      VersionId=version))
        assert refused(lambda: admin_s3.put_bucket_policy(Bucket=bucket, Policy="{}"))
        # moto named this s3:CreateBucket.
        assert refused(lambda: admin_s3.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}))
        assert admin_s3.get_object(Bucket=bucket, Key="inbound/a.csv",
                                   VersionId=version)["Body"].read() == b"a"
    _, records = server.authorizations(aws.emulator, since)
    refusals = [(r["action"], r["reason"]) for r in records if not r["allowed"]]
    explicit = ("with an explicit deny in a resource-based policy "
                "(OnlyDeploymentChangesTheBucket)")
    assert refusals == [("s3:DeleteObjectVersion", explicit), ("s3:PutBucketPolicy", explicit),
                        ("s3:PutEncryptionConfiguration", explicit)]
    assert ("s3:GetObjectVersion", True) in [(r["action"], r["allowed"]) for r in records]


def test_reading_a_version_is_authorized_as_get_object_version(aws: Aws, unique) -> None:
    bucket = unique("readversion")
    aws.client("s3").create_bucket(Bucket=bucket)
    aws.client("s3").put_bucket_versioning(Bucket=bucket,
                                           VersioningConfiguration={"Status": "Enabled"})
    version = aws.client("s3").put_object(Bucket=bucket, Key="k", Body=b"k")["VersionId"]
    key = aws.user_with_key(unique("latest-only"), {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]})
    s3 = aws.client("s3", key)
    with aws.permission_checks():
        s3.head_object(Bucket=bucket, Key="k")
        assert refused(lambda: s3.head_object(Bucket=bucket, Key="k", VersionId=version))
        assert refused(lambda: s3.get_object(Bucket=bucket, Key="k", VersionId=version))


def test_json_protocol_services_get_an_access_denied_exception(aws: Aws, unique) -> None:
    # moto answered in XML, which the CDK CLI's SSM client could not parse.
    parameter = f"/other/{unique('json')}"
    aws.client("ssm").put_parameter(Name=parameter, Value="x", Type="String")
    key = aws.user_with_key(unique("nothing"), {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sns:ListTopics", "Resource": "*"}]})
    with aws.permission_checks(), pytest.raises(ClientError) as denied:
        aws.client("ssm", key).get_parameter(Name=parameter)
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "ssm:GetParameter" in denied.value.response["Error"]["Message"]


# --- KMS: the key policy, and the call's condition keys ---------------------------------------


def signing_key(aws: Aws, unique, *, account_delegates: bool) -> tuple[str, str]:
    """An ECC signing key with an alias; its policy names the account root (delegating to IAM)
    or nobody at all. Returns (key ARN, alias)."""
    kms = aws.client("kms")
    statements = [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                   "Action": "kms:*", "Resource": "*"}] if account_delegates else [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/nobody"},
         "Action": "kms:*", "Resource": "*"}]
    arn: str = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY", Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": statements}))["KeyMetadata"]["Arn"]
    alias = f"alias/{unique('receipts')}"
    kms.create_alias(AliasName=alias, TargetKeyId=arn)
    return arn, alias


def signer(aws: Aws, unique, alias: str) -> Any:
    """A user allowed kms:Sign only by ``alias`` and only with ECDSA_SHA_256 (the importer's
    receipt grant)."""
    return aws.client("kms", aws.user_with_key(unique("signer"), {
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "kms:Sign",
            "Resource": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/*",
            "Condition": {"StringEquals": {"kms:RequestAlias": alias,
                                           "kms:SigningAlgorithm": "ECDSA_SHA_256"}}}]}))


def test_a_sign_grant_by_alias_and_algorithm_is_evaluated_with_the_call_s_values(
    aws: Aws, unique
) -> None:
    # moto evaluated the conditions without values: a conditioned Allow became a Deny.
    arn, alias = signing_key(aws, unique, account_delegates=True)
    kms = signer(aws, unique, alias)
    with aws.permission_checks():
        signed = kms.sign(KeyId=alias, Message=b"receipt", MessageType="RAW",
                          SigningAlgorithm="ECDSA_SHA_256")
        assert signed["KeyId"] == arn
        assert refused(lambda: kms.sign(KeyId=arn, Message=b"receipt", MessageType="RAW",
                                        SigningAlgorithm="ECDSA_SHA_256"))  # no alias named


def test_an_identity_grant_is_not_enough_when_the_key_policy_does_not_delegate(
    aws: Aws, unique
) -> None:
    _, alias = signing_key(aws, unique, account_delegates=False)
    kms = signer(aws, unique, alias)
    since, _ = server.authorizations(aws.emulator)
    with aws.permission_checks():
        assert refused(lambda: kms.sign(KeyId=alias, Message=b"receipt", MessageType="RAW",
                                        SigningAlgorithm="ECDSA_SHA_256"))
    _, records = server.authorizations(aws.emulator, since)
    assert [r["reason"] for r in records if not r["allowed"]] == [
        "because no resource-based policy allows the kms:Sign action"]


# --- tags on upload ------------------------------------------------------------------------------


def test_a_tagged_upload_needs_put_object_tagging_and_shows_its_tag_keys(
    aws: Aws, unique
) -> None:
    bucket = bucket_with_policy(aws, unique("tagged"), {
        "Sid": "NoStatusTag", "Effect": "Deny", "Principal": {"AWS": "*"},
        "Action": "s3:PutObject",
        "Condition": {"StringEquals": {"s3:RequestObjectTagKeys": "status"}}})
    arn = f"arn:aws:s3:::{bucket}"
    put_only = aws.client("s3", aws.user_with_key(unique("put-only"), {
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{arn}/*"}]}))
    with aws.permission_checks():
        put_only.put_object(Bucket=bucket, Key="plain", Body=b"x")
        # PutObject with tags is also s3:PutObjectTagging, which this user lacks.
        assert refused(lambda: put_only.put_object(Bucket=bucket, Key="t", Body=b"x",
                                                   Tagging="team=a"))
    # The bucket policy sees the tag keys (checks off: the bucket policy alone decides).
    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket, Key="ok", Body=b"x", Tagging="team=a")
    assert refused(lambda: s3.put_object(Bucket=bucket, Key="no", Body=b"x",
                                         Tagging="team=a&status=clean"))
