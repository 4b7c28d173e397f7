"""What each identifier we accept looks like: one definition each, for the registry, the stacks,
the importer, the operator CLI and the client.

Every check matches the whole value (``fullmatch``: ``re.match`` with ``$`` accepts a trailing
newline) and ASCII only (``re.ASCII``: ``\\w`` would accept letters IAM and S3 refuse).
"""

from __future__ import annotations

import re

SLUG = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]", re.ASCII)
ACCOUNT_ID = re.compile(r"[0-9]{12}", re.ASCII)
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]", re.ASCII)
# An IAM role or user ARN in any partition: IAM's path and name characters.
PRINCIPAL_ARN = re.compile(
    r"arn:(aws|aws-us-gov|aws-cn):iam::([0-9]{12}):(role|user)/"
    r"([\w+=,.@-]+/)*[\w+=,.@-]{1,64}", re.ASCII)
# sts:ExternalId: 2-1224 characters of [\w+=,.@:/-] (AWS STS API reference).
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]+", re.ASCII)
# An address SNS can deliver to: printable ASCII, one @, a dotted domain.
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*"
                   r"\.[A-Za-z]{2,}", re.ASCII)


def is_slug(value: str) -> bool:
    """A customer slug: lowercase letters, digits and single hyphens, starting with a letter."""
    return SLUG.fullmatch(value) is not None and "--" not in value


def is_account_id(value: str) -> bool:
    return ACCOUNT_ID.fullmatch(value) is not None


def is_region(value: str) -> bool:
    return REGION.fullmatch(value) is not None


def is_principal_arn(value: str) -> bool:
    return PRINCIPAL_ARN.fullmatch(value) is not None


def is_external_id(value: str) -> bool:
    return EXTERNAL_ID.fullmatch(value) is not None


def is_email(value: str) -> bool:
    return EMAIL.fullmatch(value) is not None
