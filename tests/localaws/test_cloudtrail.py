"""localaws.cloudtrail: the emulator writes the S3 data events of the requests it serves as the
deployed trail's log files, with signed, chained digests, and S3-format access logs.

Each test makes its own trail, selecting only its own buckets (a unique name prefix), in the
session's emulator; ``flush`` delivers now."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from admin import trail_evidence
from admin.trail_events import parse_access_log_line
from localaws import cloudtrail
from phi_core import trail_files
from tests.localaws.conftest import PARTNER_ADDRESS, Aws, log_access

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "111122223333"


@dataclass
class Setup:
    aws: Aws
    prefix: str  # every bucket of this test starts with it; the trail selects exactly those
    custody: str
    trail: str
    data: str

    def flush(self) -> list[dict[str, Any]]:
        return [d for d in cloudtrail.flush(self.aws.emulator) if d["trail"] == self.trail]

    def records(self) -> list[dict[str, Any]]:
        s3 = self.aws.client("s3")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=self.custody).get("Contents", [])
                if "/CloudTrail/" in o["Key"]]
        return [r for k in keys for r in json.loads(gzip.decompress(
            s3.get_object(Bucket=self.custody, Key=k)["Body"].read()))["Records"]]

    def digests(self) -> list[dict[str, Any]]:
        s3 = self.aws.client("s3")
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=self.custody)["Contents"]
                      if "/CloudTrail-Digest/" in o["Key"])
        return [s3.get_object(Bucket=self.custody, Key=k) for k in keys]


def delivery_policy(bucket: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
        "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/AWSLogs/*",
        "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}}]})


def make_setup(aws: Aws, unique: Callable[[str], str], *, deliverable: bool = True,
               kms_key: str | None = None) -> Setup:
    prefix = unique("phi-ct")
    s3, trails = aws.client("s3"), aws.client("cloudtrail")
    custody, data, trail = f"{prefix}-custody", f"{prefix}-data", unique("trail")
    s3.create_bucket(Bucket=custody)
    if deliverable:
        s3.put_bucket_policy(Bucket=custody, Policy=delivery_policy(custody))
    s3.create_bucket(Bucket=data)
    s3.put_bucket_versioning(Bucket=data, VersioningConfiguration={"Status": "Enabled"})
    trails.create_trail(Name=trail, S3BucketName=custody, EnableLogFileValidation=True,
                        IsMultiRegionTrail=True, **({"KmsKeyId": kms_key} if kms_key else {}))
    trails.put_event_selectors(TrailName=trail, AdvancedEventSelectors=[{
        "Name": "objects", "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Data"]},
            {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
            {"Field": "resources.ARN", "StartsWith": [f"arn:aws:s3:::{prefix}-data"]}]}])
    trails.start_logging(Name=trail)
    return Setup(aws, prefix, custody, trail, data)


@pytest.fixture
def setup(aws: Aws, unique: Callable[[str], str]) -> Setup:
    return make_setup(aws, unique)


def test_a_partner_upload_is_recorded_as_the_emulator_served_it(
        setup: Setup, unique: Callable[[str], str]) -> None:
    aws = setup.aws
    user = unique("partner")
    credentials = aws.user_with_key(user)
    s3 = aws.client("s3", credentials, source_address=PARTNER_ADDRESS)
    put = s3.put_object(Bucket=setup.data, Key="inbound/claims.csv", Body=b"a,b\n1,2\n")

    delivered = setup.flush()

    assert [d["kind"] for d in delivered] == ["log file", "digest file"]
    (record,) = setup.records()
    assert record["eventName"] == "PutObject" and record["eventCategory"] == "Data"
    assert record["userIdentity"] == {
        "type": "IAMUser", "principalId": record["userIdentity"]["principalId"],
        "arn": f"arn:aws:iam::{ACCOUNT}:user/{user}", "accountId": ACCOUNT,
        "accessKeyId": credentials[0], "userName": user}
    assert record["sourceIPAddress"] == PARTNER_ADDRESS
    assert record["tlsDetails"]["tlsVersion"] in ("TLSv1.2", "TLSv1.3")
    assert record["tlsDetails"]["cipherSuite"] == record["additionalEventData"]["CipherSuite"]
    # The id the client kept is the one in the record; so is the version it got.
    assert record["requestID"] == put["ResponseMetadata"]["RequestId"]
    assert record["responseElements"]["x-amz-version-id"] == put["VersionId"]
    assert record["additionalEventData"]["bytesTransferredIn"] == 8
    assert record["requestParameters"]["key"] == "inbound/claims.csv"
    assert record["userAgent"].startswith("Boto3/")
    assert record["resources"][0] == {"type": "AWS::S3::Object",
                                      "ARN": f"arn:aws:s3:::{setup.data}/inbound/claims.csv"}


def test_a_read_and_a_refusal_are_recorded_with_bytes_and_the_error(setup: Setup) -> None:
    s3 = setup.aws.client("s3")
    s3.put_object(Bucket=setup.data, Key="outbound/r.csv", Body=b"0123456789")
    s3.get_object(Bucket=setup.data, Key="outbound/r.csv")["Body"].read()
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=setup.data, Key="outbound/never.csv")
    setup.flush()

    by_key = {(r["eventName"], r["requestParameters"]["key"]): r for r in setup.records()}
    read = by_key[("GetObject", "outbound/r.csv")]
    assert read["additionalEventData"]["bytesTransferredOut"] == 10
    assert read["responseElements"] is None and read["readOnly"] is True
    assert read["userIdentity"]["type"] == "Root"  # the emulator's operator key
    refused = by_key[("GetObject", "outbound/never.csv")]
    assert refused["errorCode"] == "NoSuchKey"


def test_a_role_session_names_its_role_and_another_account_is_only_its_account(
        setup: Setup, unique: Callable[[str], str]) -> None:
    aws = setup.aws
    role_arn = aws.role(unique("role"), {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "sts:AssumeRole"}]})
    session = aws.client("sts").assume_role(RoleArn=role_arn,
                                            RoleSessionName="bridge")["Credentials"]
    as_role = aws.client("s3", (session["AccessKeyId"], session["SecretAccessKey"],
                                session["SessionToken"]))
    as_role.put_object(Bucket=setup.data, Key="inbound/by-role.csv", Body=b"r")
    foreign_name = unique("foreign")
    foreign = aws.user_with_key(foreign_name, account=OTHER_ACCOUNT)
    foreign_id = aws.client("iam", account=OTHER_ACCOUNT).get_user(
        UserName=foreign_name)["User"]["UserId"]
    aws.client("s3", foreign).put_object(Bucket=setup.data, Key="inbound/by-foreign.csv",
                                         Body=b"f")
    setup.flush()

    by_key = {r["requestParameters"]["key"]: r["userIdentity"] for r in setup.records()}
    role = by_key["inbound/by-role.csv"]
    assert role["type"] == "AssumedRole"
    assert role["arn"].endswith(f"assumed-role/{role_arn.rsplit('/', 1)[-1]}/bridge")
    assert role["sessionContext"]["sessionIssuer"]["arn"] == role_arn
    assert role["principalId"].endswith(":bridge")
    # In the bucket owner's trail a caller of another account is its account and id only.
    other = by_key["inbound/by-foreign.csv"]
    assert other["type"] == "AWSAccount" and other["accountId"] == OTHER_ACCOUNT
    assert "arn" not in other and other["principalId"] == foreign_id


def test_requests_on_buckets_the_trail_does_not_select_are_not_recorded(
        setup: Setup, unique: Callable[[str], str]) -> None:
    s3 = setup.aws.client("s3")
    other = unique("phi-elsewhere")
    s3.create_bucket(Bucket=other)
    s3.put_object(Bucket=other, Key="inbound/x.csv", Body=b"x")
    assert [d["kind"] for d in setup.flush()] == ["digest file"]  # an empty digest, hourly


def test_digests_are_signed_by_a_published_key_and_chained(setup: Setup) -> None:
    s3, trails = setup.aws.client("s3"), setup.aws.client("cloudtrail")
    s3.put_object(Bucket=setup.data, Key="inbound/a.csv", Body=b"a")
    setup.flush()
    s3.put_object(Bucket=setup.data, Key="inbound/b.csv", Body=b"b")
    setup.flush()

    first, second = setup.digests()
    keys = {k["Fingerprint"]: k for k in trails.list_public_keys()["PublicKeyList"]}
    raws = []
    for answer in (first, second):
        raw = gzip.decompress(answer["Body"].read())
        raws.append(raw)
        document = json.loads(raw)
        assert answer["Metadata"]["signature-algorithm"] == "SHA256withRSA"
        assert answer["ServerSideEncryption"] == "AES256"  # digests are SSE-S3
        published = keys[document["digestPublicKeyFingerprint"]]
        fingerprint = hashlib.md5(published["Value"], usedforsecurity=False).hexdigest()
        assert fingerprint == published["Fingerprint"]
        public = trail_evidence.serialization.load_der_public_key(published["Value"])
        assert isinstance(public, trail_evidence.rsa.RSAPublicKey)
        assert trail_evidence.signature_valid(
            public, answer["Metadata"]["signature"],
            trail_files.digest_signing_string(document, raw))
    one, two = json.loads(raws[0]), json.loads(raws[1])
    assert one["previousDigestSignature"] is None  # a starting digest
    assert two["previousDigestS3Object"] == one["digestS3Object"]
    assert two["previousDigestHashValue"] == hashlib.sha256(raws[0]).hexdigest()
    assert two["previousDigestSignature"] == first["Metadata"]["signature"]
    # Each digest lists the log file delivered since the one before, with its SHA-256.
    for document in (one, two):
        (listed,) = document["logFiles"]
        raw = gzip.decompress(s3.get_object(Bucket=setup.custody,
                                             Key=listed["s3Object"])["Body"].read())
        assert listed["hashValue"] == hashlib.sha256(raw).hexdigest()


def test_log_files_are_encrypted_with_the_trail_s_key(
        aws: Aws, unique: Callable[[str], str]) -> None:
    kms = aws.client("kms")
    key_arn = kms.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "kms:GenerateDataKey*", "Resource": "*"}]}))["KeyMetadata"]["Arn"]
    setup = make_setup(aws, unique, kms_key=key_arn)
    aws.client("s3").put_object(Bucket=setup.data, Key="inbound/k.csv", Body=b"k")
    (log_file, _) = setup.flush()

    head = aws.client("s3").head_object(Bucket=setup.custody, Key=log_file["key"])
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn)


def test_a_bucket_that_refuses_cloudtrail_gets_nothing_and_the_refusal_is_recorded(
        aws: Aws, unique: Callable[[str], str]) -> None:
    setup = make_setup(aws, unique, deliverable=False)
    aws.client("s3").put_object(Bucket=setup.data, Key="inbound/x.csv", Body=b"x")

    delivered = setup.flush()

    assert {d["outcome"] for d in delivered} == {"refused"}
    assert "does not allow cloudtrail.amazonaws.com s3:PutObject" in delivered[0]["reason"]
    assert aws.client("s3").list_objects_v2(Bucket=setup.custody)["KeyCount"] == 0


def test_access_logs_are_written_in_s3_s_format(setup: Setup) -> None:
    s3 = setup.aws.client("s3")
    logs = log_access(s3, setup.data)
    put = s3.put_object(Bucket=setup.data, Key="inbound/logged file.csv", Body=b"12345")

    keys = [o["Key"] for o in
            s3.list_objects_v2(Bucket=logs, Prefix="data-bucket/")["Contents"]]
    lines = [s3.get_object(Bucket=logs, Key=k)["Body"].read().decode() for k in keys]
    records = [parse_access_log_line(line) for line in lines]
    (record,) = [r for r in records if r and r.get("operation") == "REST.PUT.OBJECT"]
    assert record.get("bucket") == setup.data
    assert record.get("key") == "inbound/logged%20file.csv"
    assert record.get("request_id") == put["ResponseMetadata"]["RequestId"]
    assert record.get("version_id") == put["VersionId"]
    assert record.get("http_status") == "200" and record.get("remote_ip") == "127.0.0.1"
    assert record.get("requester") == f"arn:aws:iam::{ACCOUNT}:root"
    assert str(record.get("tls_version")).startswith("TLSV1.")
    assert all(key.removeprefix("data-bucket/")[:4].isdigit() for key in keys)
