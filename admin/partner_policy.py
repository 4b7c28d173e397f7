"""The IAM policy a partner attaches on *its* side, generated from the same facts as
``PartnerScope.statements()`` (``stacks/components/partner_access.py``).

Cross-account access needs two grants: ours (the bucket policy and the key policy, which the
customer stack writes) and the partner's own identity policy on the principal it registered
with us. This module writes the second one, least privilege, for exactly one bucket, its
granted prefixes and one key, usable only through S3. It restates ``PartnerScope`` instead of
importing it because operator tools do not load CDK; ``tests/admin/test_onboarding.py``
compares the two statement by statement, for every set of directions.

An ``assume-role`` partner needs only ``sts:AssumeRole`` on our role: the role carries the S3
and KMS grants.
"""

from __future__ import annotations

import json
from typing import Any

from admin.stack_outputs import StackOutputs
from stacks import naming
from stacks.config import AccessMode, Direction

POLICY_VERSION = "2012-10-17"


def partner_statements(*, bucket_arn: str, key_arn: str, directions: tuple[Direction, ...],
                       s3_service: str) -> list[dict[str, Any]]:
    """The partner's allow statements in identity-policy form: ``PartnerScope.statements()``
    with every value literal. Inbound is write-only, outbound read-only, listing limited to
    the granted prefixes (plus the top level with delimiter "/"), the key only through S3."""
    statements: list[dict[str, Any]] = []
    prefixes = [d.prefix for d in directions]
    if Direction.INBOUND in directions:
        statements.append({
            "Sid": "WriteInbound",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            "Resource": [f"{bucket_arn}/{naming.INBOUND_PREFIX}*"],
        })
    if Direction.OUTBOUND in directions:
        statements.append({
            "Sid": "ReadOutbound",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes",
                       "s3:GetObjectVersionAttributes"],
            "Resource": [f"{bucket_arn}/{naming.OUTBOUND_PREFIX}*"],
        })
    statements.append({
        "Sid": "ListOwnPrefixes",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": [bucket_arn],
        "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
    })
    statements.append({
        "Sid": "FindBucketRegion",
        "Effect": "Allow",
        "Action": ["s3:GetBucketLocation"],
        "Resource": [bucket_arn],
    })
    statements.append({
        "Sid": "ListTopLevelFolders",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": [bucket_arn],
        "Condition": {"StringEquals": {"s3:delimiter": "/"},
                      "StringEqualsIfExists": {"s3:prefix": ""}},
    })
    # Uploads (multipart included) need GenerateDataKey and Decrypt; downloads Decrypt.
    key_actions = (["kms:Decrypt", "kms:GenerateDataKey"] if Direction.INBOUND in directions
                   else ["kms:Decrypt"])
    statements.append({
        "Sid": "UseKeyThroughS3",
        "Effect": "Allow",
        "Action": key_actions,
        "Resource": [key_arn],
        "Condition": {
            "StringEquals": {"kms:ViaService": s3_service},
            # With S3 Bucket Keys the encryption context is the bucket ARN; without, the object's.
            "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket_arn, f"{bucket_arn}/*"]},
        },
    })
    return statements


def cross_account_policy(outputs: StackOutputs) -> dict[str, Any]:
    """The identity policy a cross-account partner attaches to each principal it registered."""
    return {"Version": POLICY_VERSION, "Statement": partner_statements(
        bucket_arn=outputs.bucket_arn, key_arn=outputs.kms_key_arn,
        directions=outputs.directions, s3_service=outputs.s3_service)}


def assume_role_policy(outputs: StackOutputs) -> dict[str, Any]:
    """The identity policy an assume-role partner attaches to the principal that assumes our
    role: ``sts:AssumeRole`` on that one role (the external id goes in the call)."""
    assert outputs.role_arn is not None  # parse_outputs guarantees it for assume-role
    return {"Version": POLICY_VERSION, "Statement": [{
        "Sid": "AssumePhiExchangeRole",
        "Effect": "Allow",
        "Action": ["sts:AssumeRole"],
        "Resource": [outputs.role_arn],
    }]}


def partner_side_policy(outputs: StackOutputs) -> dict[str, Any] | None:
    """The policy the partner must attach on its side, by access mode; ``None`` for
    ``iam-user`` (the partner's user is ours and holds its policy already)."""
    if outputs.access is AccessMode.CROSS_ACCOUNT:
        return cross_account_policy(outputs)
    if outputs.access is AccessMode.ASSUME_ROLE:
        return assume_role_policy(outputs)
    return None


def render_policy(document: dict[str, Any]) -> str:
    """Stable, readable JSON (keys in document order, two-space indent, trailing newline)."""
    return json.dumps(document, indent=2) + "\n"
