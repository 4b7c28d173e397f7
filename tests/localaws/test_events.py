"""S3 -> EventBridge -> SQS through the emulator: each gap of moto 5.2.5 that localaws.events
fills, with the rule, queue and key shaped like the customer and audit stacks'.

moto alone fails these: its event goes to the uploader's account, ignores the input
transformer, fixes requester and source address, notifies a multipart upload twice, and
ignores the queue and key policies.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from localaws import server
from localaws.events import render_input
from tests.localaws.conftest import PARTNER_ADDRESS, Aws
from tests.localaws.test_permissions import PARTNER_ACCOUNT, partner_role

ACCOUNT, REGION = "123456789012", "us-east-1"
TEMPLATE = ('{"customer":"acme","bucket":<bucket>,"key":<key>,"version_id":<version_id>,'
            '"size":<size>,"requester":<requester>,"source_ip":<source_ip>,"time":<time>}')
PATHS = {"bucket": "$.detail.bucket.name", "key": "$.detail.object.key",
         "version_id": "$.detail.object.version-id", "size": "$.detail.object.size",
         "requester": "$.detail.requester", "source_ip": "$.detail.source-ip-address",
         "time": "$.time"}


# --- the input transformer on its own ---------------------------------------------------------


def test_placeholders_outside_quotes_become_json_values() -> None:
    event = {"detail": {"name": 'a "quoted" name', "size": 5, "tags": ["x"]}}
    rendered = render_input('{"n":<n>,"s":<s>,"t":<t>,"m":<m>}',
                            {"n": "$.detail.name", "s": "$.detail.size",
                             "t": "$.detail.tags", "m": "$.detail.missing"}, event)
    assert json.loads(rendered) == {"n": 'a "quoted" name', "s": 5, "t": ["x"], "m": None}


def test_placeholders_inside_quotes_are_text() -> None:
    rendered = render_input('{"what":"<n> is <s> bytes"}',
                            {"n": "$.name", "s": "$.size"}, {"name": 'x"y', "size": 5})
    assert json.loads(rendered) == {"what": 'x"y is 5 bytes'}


def test_paths_may_index_arrays() -> None:
    # GuardDuty's scan result names its plan in resources[0] (the scan-result rule reads it).
    event = {"resources": ["arn:plan"], "detail": {"threats": [{"name": "EICAR"}]}}
    rendered = render_input('{"plan":<p>,"first":<t>,"none":<n>}',
                            {"p": "$.resources[0]", "t": "$.detail.threats[0].name",
                             "n": "$.resources[1]"}, event)
    assert json.loads(rendered) == {"plan": "arn:plan", "first": "EICAR", "none": None}


# --- through the emulator ---------------------------------------------------------------------


def key_policy(events_allowed: bool) -> dict[str, Any]:
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "kms:*", "Resource": "*"}]
    if events_allowed:
        statements.append({"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                           "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
                           "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}})
    return {"Version": "2012-10-17", "Statement": statements}


def handoff(aws: Aws, unique, *, queue_admits: bool = True,
            key_admits: bool = True) -> tuple[str, str, str]:
    """A versioned bucket with EventBridge notifications, a rule for its inbound/ with the
    handoff's input transformer, and a KMS-encrypted queue; returns (bucket, queue URL, rule
    ARN)."""
    s3, sqs, events = aws.client("s3"), aws.client("sqs"), aws.client("events")
    bucket, queue_name, rule = unique("phi-acme"), unique("ingestion"), unique("inbound")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    key = aws.client("kms").create_key(
        Policy=json.dumps(key_policy(key_admits)))["KeyMetadata"]["Arn"]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_name}"
    rule_arn = events.put_rule(Name=rule, EventPattern=json.dumps({
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": "inbound/"}]}}},
    ))["RuleArn"]
    admitted = rule_arn if queue_admits else rule_arn + "-other"
    url = sqs.create_queue(QueueName=queue_name, Attributes={
        "KmsMasterKeyId": key, "Policy": json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": queue_arn,
            "Condition": {"ArnLike": {"aws:SourceArn": admitted}}}]})})["QueueUrl"]
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn,
                                            "InputTransformer": {"InputPathsMap": PATHS,
                                                                 "InputTemplate": TEMPLATE}}])
    return bucket, url, rule_arn


def received(aws: Aws, url: str) -> list[dict[str, Any]]:
    messages = aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                 WaitTimeSeconds=0).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_an_upload_reaches_the_queue_as_the_rule_renders_it(aws: Aws, unique) -> None:
    bucket, url, _ = handoff(aws, unique)
    s3 = aws.client("s3")
    version = s3.put_object(Bucket=bucket, Key="inbound/a.csv", Body=b"x,y\n1,2\n")["VersionId"]
    s3.put_object(Bucket=bucket, Key="other/b.csv", Body=b"x")  # the pattern's prefix
    (body,) = received(aws, url)
    assert body["customer"] == "acme" and body["key"] == "inbound/a.csv"
    assert (body["bucket"], body["version_id"], body["size"]) == (bucket, version, 8)
    assert (body["requester"], body["source_ip"]) == (ACCOUNT, "127.0.0.1")
    assert body["time"].endswith("Z") and "T" in body["time"]  # ISO 8601, not epoch


def test_a_multipart_upload_is_one_event(aws: Aws, unique) -> None:
    bucket, url, _ = handoff(aws, unique)
    s3 = aws.client("s3")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="inbound/big.csv")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="inbound/big.csv", UploadId=upload, PartNumber=1,
                          Body=b"a,b\n" * 10)
    s3.complete_multipart_upload(
        Bucket=bucket, Key="inbound/big.csv", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert [b["key"] for b in received(aws, url)] == ["inbound/big.csv"]


def test_a_partner_in_another_account_triggers_the_owner_s_rule(aws: Aws, unique) -> None:
    bucket, url, _ = handoff(aws, unique)
    role_arn, session = partner_role(aws, unique, {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]})
    aws.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": role_arn}, "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/inbound/*"}]}))
    with aws.permission_checks():
        aws.client("s3", session, source_address=PARTNER_ADDRESS).put_object(
            Bucket=bucket, Key="inbound/from-partner.csv", Body=b"a\n1\n")
    (body,) = received(aws, url)
    assert (body["requester"], body["source_ip"]) == (PARTNER_ACCOUNT, PARTNER_ADDRESS)


@pytest.mark.parametrize(("queue_admits", "key_admits", "why"), [
    (False, True, "the policy of queue"), (True, False, "the policy of key")])
def test_a_queue_or_key_that_does_not_admit_eventbridge_gets_nothing(
    aws: Aws, unique, queue_admits: bool, key_admits: bool, why: str
) -> None:
    bucket, url, rule_arn = handoff(aws, unique, queue_admits=queue_admits,
                                    key_admits=key_admits)
    aws.client("s3").put_object(Bucket=bucket, Key="inbound/a.csv", Body=b"x\n1\n")
    assert received(aws, url) == []
    (refusal,) = [d for d in server.event_deliveries(aws.emulator) if d["rule"] == rule_arn]
    assert refusal["outcome"] == "refused" and refusal["reason"].startswith(why)
    assert "events.amazonaws.com" in refusal["reason"]
