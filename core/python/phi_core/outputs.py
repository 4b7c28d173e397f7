"""The customer stack's outputs: what the stack emits, and the one reader every part uses.

The stack writes them (:func:`customer_outputs`); the operator CLI reads them from
CloudFormation or a ``cdk deploy --outputs-file`` JSON for the onboarding kit, offboarding and
status; the partner's client builds its connection profile from the kit's copy; the local run
reads what it deployed. All through :func:`parse_stack_outputs`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from phi_core import identifiers, naming
from phi_core.vocabulary import AccessMode, Direction

CUSTOMER_SLUG = "CustomerSlug"
ACCESS_MODE = "AccessMode"
BUCKET_NAME = "BucketName"
BUCKET_REGION = "BucketRegion"
BUCKET_OWNER_ACCOUNT = "BucketOwnerAccount"
KMS_KEY_ARN = "KmsKeyArn"
INBOUND_PREFIX = "InboundPrefix"
OUTBOUND_PREFIX = "OutboundPrefix"
PARTNER_SECRET_ARN = "PartnerSecretArn"  # noqa: S105 - an output name; iam-user, never in a kit
PARTNER_USER_NAME = "PartnerUserName"  # iam-user
PARTNER_ROLE_ARN = "PartnerRoleArn"  # assume-role, roles-anywhere
EXTERNAL_ID = "ExternalId"  # assume-role
TRUST_ANCHOR_ARN = "TrustAnchorArn"  # roles-anywhere: the partner's CA, in IAM Roles Anywhere
ROLES_ANYWHERE_PROFILE_ARN = "RolesAnywhereProfileArn"  # roles-anywhere
OFFBOARDED = "Offboarded"  # "true" when the registry says so: no way in, no prefixes

REQUIRED = (CUSTOMER_SLUG, ACCESS_MODE, BUCKET_NAME, BUCKET_REGION, BUCKET_OWNER_ACCOUNT,
            KMS_KEY_ARN)
_PREFIX_OUTPUT = {Direction.INBOUND: INBOUND_PREFIX, Direction.OUTBOUND: OUTBOUND_PREFIX}

_KMS_ARN = re.compile(
    r"arn:(aws|aws-us-gov|aws-cn):kms:([a-z0-9-]+):([0-9]{12}):key/[A-Za-z0-9-]+")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ROLES_ANYWHERE_ARN = re.compile(
    r"arn:(aws|aws-us-gov|aws-cn):rolesanywhere:[a-z0-9-]+:[0-9]{12}:"
    r"(trust-anchor|profile)/[0-9a-f-]{36}")


def customer_outputs(*, slug: str, access: AccessMode, bucket_name: str, region: str,
                     account: str, key_arn: str, directions: Iterable[Direction],
                     offboarded: bool, secret_arn: str | None = None,
                     user_name: str | None = None, role_arn: str | None = None,
                     external_id: str | None = None, trust_anchor_arn: str | None = None,
                     profile_arn: str | None = None) -> dict[str, str]:
    """The outputs a customer stack emits (values may be CDK tokens). Offboarded: no prefixes
    and no partner identity."""
    outputs = {CUSTOMER_SLUG: slug, ACCESS_MODE: access.value, BUCKET_NAME: bucket_name,
               BUCKET_REGION: region, BUCKET_OWNER_ACCOUNT: account, KMS_KEY_ARN: key_arn}
    if offboarded:
        outputs[OFFBOARDED] = "true"
        return outputs
    granted = tuple(directions)
    for direction in Direction:
        if direction in granted:
            outputs[_PREFIX_OUTPUT[direction]] = direction.prefix
    if access is AccessMode.IAM_USER:
        assert secret_arn is not None and user_name is not None
        outputs[PARTNER_SECRET_ARN] = secret_arn
        outputs[PARTNER_USER_NAME] = user_name
    elif access is AccessMode.ASSUME_ROLE:
        assert role_arn is not None and external_id is not None
        outputs[PARTNER_ROLE_ARN] = role_arn
        outputs[EXTERNAL_ID] = external_id
    elif access is AccessMode.ROLES_ANYWHERE:
        assert role_arn is not None and trust_anchor_arn is not None and profile_arn is not None
        outputs[PARTNER_ROLE_ARN] = role_arn
        outputs[TRUST_ANCHOR_ARN] = trust_anchor_arn
        outputs[ROLES_ANYWHERE_PROFILE_ARN] = profile_arn
    return outputs


class OutputsError(ValueError):
    """Outputs that are not a customer stack's: ``problems`` lists each one."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"stack outputs ({source}): " + "; ".join(problems))


@dataclass(frozen=True)
class StackOutputs:
    """One customer stack's outputs, validated. ``inbound_prefix``/``outbound_prefix`` are
    ``None`` for a direction the stack does not grant; the mode-specific fields are ``None``
    in the other modes. ``offboarded`` (output ``Offboarded`` = ``true``, default false): the
    stack was deployed from a registry entry marked offboarded, and grants nothing.
    ``source`` says where they were read (for messages)."""

    slug: str
    access: AccessMode
    bucket: str
    region: str
    account: str
    kms_key_arn: str
    inbound_prefix: str | None = None
    outbound_prefix: str | None = None
    secret_arn: str | None = None
    user_name: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    trust_anchor_arn: str | None = None
    profile_arn: str | None = None
    offboarded: bool = False
    source: str = ""
    raw: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def partition(self) -> str:
        """The AWS partition (``aws``, ``aws-cn``, ``aws-us-gov``), from the key's ARN."""
        return self.kms_key_arn.split(":")[1]

    @property
    def url_suffix(self) -> str:
        """The partition's domain: ``amazonaws.com`` or ``amazonaws.com.cn``."""
        return "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"

    @property
    def bucket_arn(self) -> str:
        return f"arn:{self.partition}:s3:::{self.bucket}"

    @property
    def s3_service(self) -> str:
        """The only service the partner may use the key through (``kms:ViaService``)."""
        return f"s3.{self.region}.{self.url_suffix}"

    @property
    def s3_endpoint(self) -> str:
        """The bucket region's S3 endpoint host."""
        return f"s3.{self.region}.{self.url_suffix}"

    @property
    def directions(self) -> tuple[Direction, ...]:
        granted = {Direction.INBOUND: self.inbound_prefix, Direction.OUTBOUND: self.outbound_prefix}
        return tuple(d for d in Direction if granted[d])

    def partner_outputs(self) -> dict[str, str]:
        """The outputs a partner's client needs: everything but the ARN of our secret, which
        the partner cannot read and does not need."""
        return {k: v for k, v in sorted(self.raw.items()) if k != PARTNER_SECRET_ARN}


def parse_stack_outputs(outputs: Mapping[str, Any], *, source: str) -> StackOutputs:
    """Validate a stack's outputs; one :class:`OutputsError` names every problem."""
    values = {str(k): str(v) for k, v in outputs.items() if v is not None}
    problems = [f"{name} is missing" for name in REQUIRED if not values.get(name)]
    try:
        access: AccessMode | None = AccessMode(values.get(ACCESS_MODE, ""))
    except ValueError:
        access = None
        if values.get(ACCESS_MODE):
            problems.append(f"{ACCESS_MODE} {values[ACCESS_MODE]!r} is not an access mode")
    key_arn = values.get(KMS_KEY_ARN, "")
    match = _KMS_ARN.fullmatch(key_arn)
    if key_arn and not match:
        problems.append(f"{KMS_KEY_ARN} is not a KMS key ARN")
    region, account = values.get(BUCKET_REGION, ""), values.get(BUCKET_OWNER_ACCOUNT, "")
    if region and not identifiers.is_region(region):
        problems.append(f"{BUCKET_REGION} {region!r} is not a region name")
    if account and not identifiers.is_account_id(account):
        problems.append(f"{BUCKET_OWNER_ACCOUNT} is not a 12-digit account id")
    if match and (match.group(2), match.group(3)) != (region, account):
        problems.append(f"{KMS_KEY_ARN} is not in {BUCKET_REGION} and {BUCKET_OWNER_ACCOUNT}")
    bucket = values.get(BUCKET_NAME, "")
    if bucket and not _BUCKET.fullmatch(bucket):
        problems.append(f"{BUCKET_NAME} {bucket!r} is not a bucket name")
    inbound, outbound = values.get(INBOUND_PREFIX), values.get(OUTBOUND_PREFIX)
    if inbound not in (None, naming.INBOUND_PREFIX):
        problems.append(f"{INBOUND_PREFIX} must be {naming.INBOUND_PREFIX!r}")
    if outbound not in (None, naming.OUTBOUND_PREFIX):
        problems.append(f"{OUTBOUND_PREFIX} must be {naming.OUTBOUND_PREFIX!r}")
    offboarded = values.get(OFFBOARDED, "false") == "true"
    if not inbound and not outbound and not offboarded:
        problems.append(f"neither {INBOUND_PREFIX} nor {OUTBOUND_PREFIX}: the stack grants "
                        "nothing")
    if access is AccessMode.IAM_USER and not offboarded and not values.get(PARTNER_USER_NAME):
        problems.append(f"{PARTNER_USER_NAME} is missing (iam-user)")
    if access is AccessMode.ASSUME_ROLE and not offboarded and not (
            values.get(PARTNER_ROLE_ARN) and values.get(EXTERNAL_ID)):
        problems.append(f"{PARTNER_ROLE_ARN} or {EXTERNAL_ID} is missing (assume-role)")
    if access is AccessMode.ROLES_ANYWHERE and not offboarded:
        if not values.get(PARTNER_ROLE_ARN):
            problems.append(f"{PARTNER_ROLE_ARN} is missing (roles-anywhere)")
        for name, kind in ((TRUST_ANCHOR_ARN, "trust-anchor"),
                           (ROLES_ANYWHERE_PROFILE_ARN, "profile")):
            value = values.get(name)
            if not value:
                problems.append(f"{name} is missing (roles-anywhere)")
            elif (found := _ROLES_ANYWHERE_ARN.fullmatch(value)) is None or found[2] != kind:
                problems.append(f"{name} is not an IAM Roles Anywhere {kind} ARN")
    if problems or access is None:
        raise OutputsError(source, problems)
    return StackOutputs(
        slug=values[CUSTOMER_SLUG], access=access, bucket=bucket, region=region,
        account=account, kms_key_arn=key_arn, inbound_prefix=inbound, outbound_prefix=outbound,
        secret_arn=values.get(PARTNER_SECRET_ARN), user_name=values.get(PARTNER_USER_NAME),
        role_arn=values.get(PARTNER_ROLE_ARN), external_id=values.get(EXTERNAL_ID),
        trust_anchor_arn=values.get(TRUST_ANCHOR_ARN),
        profile_arn=values.get(ROLES_ANYWHERE_PROFILE_ARN), offboarded=offboarded,
        source=source, raw=values)


def outputs_of_stack(document: Mapping[str, Any], stack_name: str | None,
                     *, source: str) -> Mapping[str, Any]:
    """One customer stack's outputs from a ``cdk deploy --outputs-file`` document: the stack
    named ``stack_name``, or (None) the only customer stack in it."""
    if stack_name is None:
        # Customer stacks only: `cdk deploy --all --outputs-file` also writes the account's
        # stacks (PhiExchange-access, PhiExchange-audit), which have no CustomerSlug.
        stacks = [k for k, v in document.items() if isinstance(k, str)
                  and k.startswith(naming.STACK_NAME_PREFIX) and isinstance(v, Mapping)
                  and CUSTOMER_SLUG in v]
        if len(stacks) != 1:
            raise OutputsError(source, [f"{len(stacks)} customer stacks in the file "
                                        f"({', '.join(stacks) or 'none'}): name one"])
        stack_name = stacks[0]
    outputs = document.get(stack_name)
    if not isinstance(outputs, Mapping):
        found = ", ".join(sorted(str(k) for k in document)) or "none"
        raise OutputsError(source, [f"no outputs of stack {stack_name} (it has: {found})"])
    return outputs
