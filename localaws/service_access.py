"""What AWS services check, when they are given our resources, that moto 5.2.5 never checks.

Gap: moto creates a CloudTrail trail whatever the bucket policy and the key policy say (it
checks only that the bucket exists), and never evaluates a policy for a *service* principal.
On AWS, ``CreateTrail`` (so CloudFormation's ``AWS::CloudTrail::Trail``) fails unless the
bucket policy lets ``cloudtrail.amazonaws.com`` deliver, the key policy lets it encrypt, and
the CloudWatch Logs role lets it write (docs: create-s3-bucket-policy-for-cloudtrail,
create-kms-key-policy-for-cloudtrail, send-cloudtrail-events-to-cloudwatch-logs; the project's
summary with quotes: /work/research/service-contracts.md sections 1 to 3). CDK's L2 trail adds
no key-policy grant at all (aws-cdk#3822): a template can synthesize, deploy into moto, and
still be refused by AWS.

Fill: :func:`check_trail_delivery` is what the CloudFormation model for
``AWS::CloudTrail::Trail`` (:mod:`localaws.cfn_models`) calls before creating the trail. It
evaluates, with :mod:`localaws.policy`, the requests CloudTrail makes as the service
principal ``cloudtrail.amazonaws.com``, with the request context AWS documents
(``aws:SourceArn`` = the trail's ARN, ``aws:SourceAccount``, ``aws:SecureTransport`` = true):

=====================================  =================================================
custody bucket policy                  ``s3:GetBucketAcl`` on the bucket; ``s3:PutObject`` of a
                                       log file (``AWSLogs/<account>/CloudTrail/...``,
                                       ``x-amz-acl: bucket-owner-full-control``, SSE-KMS with the
                                       trail's key ARN when it has one); with log-file
                                       validation, ``s3:PutObject`` of a digest file
                                       (``AWSLogs/<account>/CloudTrail-Digest/...``, SSE-S3:
                                       ``AES256``, as the CloudTrail guide documents digests;
                                       newer pages hint at SSE-KMS, see the research file)
trail's KMS key policy                 ``kms:GenerateDataKey`` with encryption context
                                       ``aws:cloudtrail:arn`` = trail ARN and ``aws:s3:arn`` =
                                       ``arn:aws:s3:::<bucket>/[prefix/]AWSLogs/<account>/``;
                                       ``kms:DescribeKey`` (no encryption context: AWS never
                                       supplies one for DescribeKey); ``kms:Decrypt`` when the
                                       bucket uses S3 Bucket Keys (context: the trail ARN and
                                       the bucket ARN). The key must exist and be enabled.
CloudWatch Logs role                   its trust policy admits ``cloudtrail.amazonaws.com``;
                                       its identity policies allow ``logs:CreateLogStream`` and
                                       ``logs:PutLogEvents`` on the trail's log stream
                                       (``<account>_CloudTrail_<region>``) in the log group,
                                       which must exist
=====================================  =================================================

A refusal raises the exception AWS names (``InsufficientS3BucketPolicyException``,
``InsufficientEncryptionPolicyException``, ``InvalidCloudWatchLogsRoleArnException``,
``InvalidCloudWatchLogsLogGroupArnException``), with the request that was refused; the stack
then fails on the trail, as on AWS.

Not modelled: deliveries themselves (no log or digest file is ever written: there is no
CloudTrail service here), organization trails, SNS notifications of the trail, the S3 calls
to KMS for each later log file (moto's S3 never calls KMS), cross-account delivery buckets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from moto.kms.models import kms_backends
from moto.logs.models import logs_backends
from moto.s3.models import s3_backends

from localaws.permissions import find_role, role_policies
from localaws.policy import Decision, Request, evaluate, evaluate_all

CLOUDTRAIL = "cloudtrail.amazonaws.com"


class InsufficientS3BucketPolicyException(Exception):
    pass


class InsufficientEncryptionPolicyException(Exception):
    pass


class InvalidCloudWatchLogsRoleArnException(Exception):
    pass


class InvalidCloudWatchLogsLogGroupArnException(Exception):
    pass


@dataclass(frozen=True)
class TrailDelivery:
    """Where a trail delivers: what :func:`check_trail_delivery` needs to know."""

    trail_arn: str
    account: str
    region: str
    partition: str
    bucket: str
    prefix: str = ""
    kms_key_arn: str | None = None
    log_validation: bool = False
    log_group_arn: str | None = None
    logs_role_arn: str | None = None


def _service_request(action: str, resource: str, delivery: TrailDelivery,
                     **context: str) -> Request:
    base = {"aws:SourceArn": delivery.trail_arn, "aws:SourceAccount": delivery.account,
            "aws:SecureTransport": "true"}
    return Request(action=action, resource=resource, service=CLOUDTRAIL,
                   context={k: [v] for k, v in {**base, **context}.items()})


def _explain(request: Request) -> str:
    context = ", ".join(f"{k}={v[0]}" for k, v in request.context.items()
                        if k not in ("aws:SecureTransport",))
    return f"{request.action} on {request.resource} ({context})"


def resolve_key_arn(key_id: str, account: str, region: str) -> str | None:
    """A KMS key given by ARN, id, alias name or alias ARN, as its key ARN (None if unknown)."""
    backend = kms_backends[account][region]
    try:
        return str(backend.describe_key(key_id).arn)
    except Exception:  # moto raises NotFoundException and others for unknown ids
        return None


def check_trail_delivery(delivery: TrailDelivery) -> None:
    """Raise what AWS's CreateTrail raises if CloudTrail could not deliver (module docstring)."""
    _check_bucket(delivery)
    if delivery.kms_key_arn:
        _check_key(delivery)
    if delivery.log_group_arn or delivery.logs_role_arn:
        _check_logs_role(delivery)


def _check_bucket(delivery: TrailDelivery) -> None:
    bucket = s3_backends[delivery.account][delivery.partition].get_bucket(delivery.bucket)
    policy = json.loads(bucket.policy) if bucket.policy else {}
    bucket_arn = f"arn:{delivery.partition}:s3:::{delivery.bucket}"
    logs = f"{bucket_arn}/{delivery.prefix}AWSLogs/{delivery.account}"
    stamp = "20250101T0000Z"
    requests = [_service_request("s3:GetBucketAcl", bucket_arn, delivery)]
    encryption = ({"s3:x-amz-server-side-encryption": "aws:kms",
                   "s3:x-amz-server-side-encryption-aws-kms-key-id": delivery.kms_key_arn}
                  if delivery.kms_key_arn else {})
    requests.append(_service_request(
        "s3:PutObject",
        f"{logs}/CloudTrail/{delivery.region}/2025/01/01/{delivery.account}_CloudTrail_"
        f"{delivery.region}_{stamp}_localawsprobe0001.json.gz",
        delivery, **{"s3:x-amz-acl": "bucket-owner-full-control"}, **encryption))
    if delivery.log_validation:
        trail_name = delivery.trail_arn.rsplit("/", 1)[-1]
        requests.append(_service_request(
            "s3:PutObject",
            f"{logs}/CloudTrail-Digest/{delivery.region}/2025/01/01/{delivery.account}_"
            f"CloudTrail-Digest_{delivery.region}_{trail_name}_{delivery.region}_"
            "20250101T000000Z.json.gz",
            delivery, **{"s3:x-amz-acl": "bucket-owner-full-control",
                         "s3:x-amz-server-side-encryption": "AES256"}))
    for request in requests:
        if evaluate(policy, request) is not Decision.ALLOW:
            raise InsufficientS3BucketPolicyException(
                f"Incorrect S3 bucket policy is detected for bucket: {delivery.bucket} "
                f"(the policy does not allow {CLOUDTRAIL} {_explain(request)})")


def _check_key(delivery: TrailDelivery) -> None:
    assert delivery.kms_key_arn is not None
    refused = InsufficientEncryptionPolicyException(
        f"Insufficient permissions to access S3 bucket {delivery.bucket} or KMS key "
        f"{delivery.kms_key_arn}.")
    key = kms_backends[delivery.account][delivery.region].keys.get(
        delivery.kms_key_arn.rsplit("/", 1)[-1])
    if key is None or not key.enabled:
        raise refused
    policy = json.loads(key.policy) if isinstance(key.policy, str) else key.policy
    bucket = s3_backends[delivery.account][delivery.partition].get_bucket(delivery.bucket)
    bucket_arn = f"arn:{delivery.partition}:s3:::{delivery.bucket}"
    context = "kms:EncryptionContext:"
    requests = [
        _service_request("kms:GenerateDataKey", key.arn, delivery, **{
            f"{context}aws:cloudtrail:arn": delivery.trail_arn,
            f"{context}aws:s3:arn": f"{bucket_arn}/{delivery.prefix}AWSLogs/{delivery.account}/",
        }),
        _service_request("kms:DescribeKey", key.arn, delivery),
    ]
    if _bucket_key_enabled(bucket):
        requests.append(_service_request("kms:Decrypt", key.arn, delivery, **{
            f"{context}aws:cloudtrail:arn": delivery.trail_arn,
            f"{context}aws:s3:arn": bucket_arn,
        }))
    for request in requests:
        if evaluate(policy, request) is not Decision.ALLOW:
            raise InsufficientEncryptionPolicyException(
                f"{refused} (the key policy does not allow {CLOUDTRAIL} {_explain(request)})")


def _bucket_key_enabled(bucket: Any) -> bool:
    rule = (bucket.encryption or {}).get("Rule") or {}
    rules = rule if isinstance(rule, list) else [rule]
    return any(str(r.get("BucketKeyEnabled", "")).lower() == "true" for r in rules)


def _check_logs_role(delivery: TrailDelivery) -> None:
    if not (delivery.log_group_arn and delivery.logs_role_arn):
        raise InvalidCloudWatchLogsLogGroupArnException(
            "You must specify both a log group and a role ARN, or neither.")
    # arn:aws:logs:<region>:<account>:log-group:<name>[:*]
    parts = delivery.log_group_arn.split(":")
    if len(parts) < 7 or parts[5] != "log-group":
        raise InvalidCloudWatchLogsLogGroupArnException(
            f"CloudWatch Logs log group ARN {delivery.log_group_arn} is invalid.")
    group_name = parts[6]
    if group_name not in logs_backends[parts[4]][parts[3]].groups:
        raise InvalidCloudWatchLogsLogGroupArnException(
            f"CloudWatch Logs log group {group_name} does not exist.")
    role = find_role(delivery.logs_role_arn)
    denied = InvalidCloudWatchLogsRoleArnException(
        "Access denied. Verify in IAM that the role has adequate permissions.")
    if role is None:
        raise denied
    trust = role.assume_role_policy_document
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assume = Request(action="sts:AssumeRole", resource=role.arn, service=CLOUDTRAIL,
                     context={"aws:SecureTransport": ["true"]})
    if evaluate(trust, assume) is not Decision.ALLOW:
        raise InvalidCloudWatchLogsRoleArnException(
            f"{denied} (the trust policy of {role.arn} does not admit {CLOUDTRAIL})")
    stream = (f"arn:{delivery.partition}:logs:{parts[3]}:{parts[4]}:log-group:{group_name}:"
              f"log-stream:{delivery.account}_CloudTrail_{delivery.region}")
    documents = role_policies(role)
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        request = Request(action=action, resource=stream,
                          principal=f"arn:{delivery.partition}:sts::{role.account_id}:"
                          f"assumed-role/{role.name}/CloudTrail", role_arn=role.arn,
                          context={"aws:SecureTransport": ["true"]})
        if evaluate_all(documents, request) is not Decision.ALLOW:
            raise InvalidCloudWatchLogsRoleArnException(
                f"{denied} ({role.arn} may not {action} on {stream})")
