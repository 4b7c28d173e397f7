"""The IAM policy a partner attaches on *its* side, from the core's statements.

Cross-account access needs two grants: ours (the bucket policy and the key policy, which the
customer stack writes) and the partner's own identity policy on the principal it registered
with us. This module writes the second one, least privilege, for exactly one bucket, its
granted prefixes and one key, usable only through S3: the same statements
(:func:`phi_core.partner_policy.partner_statements`) the stack gives our own partner
principals. An ``assume-role`` partner needs only ``sts:AssumeRole`` on our role: the role
carries the S3 and KMS grants.
"""

from __future__ import annotations

import json
from typing import Any

from admin.stack_outputs import StackOutputs
from phi_core import partner_policy
from phi_core.vocabulary import AccessMode


def partner_side_policy(outputs: StackOutputs) -> dict[str, Any] | None:
    """The policy the partner must attach on its side, by access mode; ``None`` for
    ``iam-user`` (the partner's user is ours and holds its policy already)."""
    if outputs.access is AccessMode.CROSS_ACCOUNT:
        return partner_policy.identity_policy(partner_policy.partner_statements(
            partner_policy.PartnerScope(bucket_arn=outputs.bucket_arn,
                                        key_arn=outputs.kms_key_arn,
                                        directions=outputs.directions,
                                        s3_service=outputs.s3_service)))
    if outputs.access is AccessMode.ASSUME_ROLE:
        assert outputs.role_arn is not None  # parse_outputs guarantees it for assume-role
        return partner_policy.assume_role_policy(outputs.role_arn)
    return None


def render_policy(document: dict[str, Any]) -> str:
    """Stable, readable JSON (keys in document order, two-space indent, trailing newline)."""
    return json.dumps(document, indent=2) + "\n"
