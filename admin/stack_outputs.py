"""A deployed customer stack's outputs, read from CloudFormation or from the ``cdk deploy
--outputs-file`` JSON, validated, and checked against the registry.

The onboarding kit, offboarding and status all start from the same facts: which bucket, region,
account and key a customer's stack created, and which prefixes and access mode it grants. The
outputs are what ``stacks/customer_stack.py`` emits (``CustomerSlug``, ``AccessMode``,
``BucketName``, ``BucketRegion``, ``BucketOwnerAccount``, ``KmsKeyArn``, ``InboundPrefix``,
``OutboundPrefix``, and per mode ``PartnerSecretArn`` + ``PartnerUserName`` or
``PartnerRoleArn`` + ``ExternalId``). Nothing here imports CDK.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from stacks import naming
from stacks.config import AccessMode, CustomerConfig, Direction


class LifecycleError(Exception):
    """An expected refusal or failure of onboard, offboard or status: one line, exit status 1."""


_REQUIRED = ("CustomerSlug", "AccessMode", "BucketName", "BucketRegion", "BucketOwnerAccount",
             "KmsKeyArn")
_KMS_ARN = re.compile(
    r"^arn:(aws|aws-us-gov|aws-cn):kms:([a-z0-9-]+):([0-9]{12}):key/[A-Za-z0-9-]+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
_ACCOUNT = re.compile(r"^[0-9]{12}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


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
        """The outputs a partner's client needs (``partner-transfer profile init
        --outputs-file``): everything but the ARN of our secret, which the partner cannot read
        and does not need."""
        return {k: v for k, v in sorted(self.raw.items()) if k != "PartnerSecretArn"}


def parse_outputs(outputs: Mapping[str, Any], *, source: str) -> StackOutputs:
    """Validate a stack's outputs; one :class:`LifecycleError` names every problem."""
    values = {str(k): str(v) for k, v in outputs.items() if v is not None}
    problems = [f"{name} is missing" for name in _REQUIRED if not values.get(name)]
    try:
        access = AccessMode(values.get("AccessMode", ""))
    except ValueError:
        access = None
        if values.get("AccessMode"):
            problems.append(f"AccessMode {values['AccessMode']!r} is not an access mode")
    key_arn = values.get("KmsKeyArn", "")
    match = _KMS_ARN.match(key_arn)
    if key_arn and not match:
        problems.append("KmsKeyArn is not a KMS key ARN")
    region, account = values.get("BucketRegion", ""), values.get("BucketOwnerAccount", "")
    if region and not _REGION.match(region):
        problems.append(f"BucketRegion {region!r} is not a region name")
    if account and not _ACCOUNT.match(account):
        problems.append("BucketOwnerAccount is not a 12-digit account id")
    if match and (match.group(2), match.group(3)) != (region, account):
        problems.append("KmsKeyArn is not in BucketRegion and BucketOwnerAccount")
    bucket = values.get("BucketName", "")
    if bucket and not _BUCKET.match(bucket):
        problems.append(f"BucketName {bucket!r} is not a bucket name")
    inbound, outbound = values.get("InboundPrefix"), values.get("OutboundPrefix")
    if inbound not in (None, naming.INBOUND_PREFIX):
        problems.append(f"InboundPrefix must be {naming.INBOUND_PREFIX!r}")
    if outbound not in (None, naming.OUTBOUND_PREFIX):
        problems.append(f"OutboundPrefix must be {naming.OUTBOUND_PREFIX!r}")
    offboarded = values.get("Offboarded", "false") == "true"
    if not inbound and not outbound and not offboarded:
        problems.append("neither InboundPrefix nor OutboundPrefix: the stack grants nothing")
    if access is AccessMode.IAM_USER and not offboarded and not values.get("PartnerUserName"):
        problems.append("PartnerUserName is missing (iam-user)")
    if access is AccessMode.ASSUME_ROLE and not offboarded and not (
            values.get("PartnerRoleArn") and values.get("ExternalId")):
        problems.append("PartnerRoleArn or ExternalId is missing (assume-role)")
    if problems or access is None:
        raise LifecycleError(f"stack outputs ({source}): " + "; ".join(problems))
    return StackOutputs(
        slug=values["CustomerSlug"], access=access, bucket=bucket, region=region,
        account=account, kms_key_arn=key_arn, inbound_prefix=inbound, outbound_prefix=outbound,
        secret_arn=values.get("PartnerSecretArn"), user_name=values.get("PartnerUserName"),
        role_arn=values.get("PartnerRoleArn"), external_id=values.get("ExternalId"),
        offboarded=offboarded, source=source, raw=values)


def read_outputs_file(path: Path, slug: str) -> StackOutputs:
    """The outputs of stack ``PhiExchange-<slug>`` in a ``cdk deploy --outputs-file`` JSON."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LifecycleError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LifecycleError(f"{path} is not a cdk outputs JSON file ({err})") from None
    stack = naming.stack_name(slug)
    outputs = document.get(stack) if isinstance(document, dict) else None
    if not isinstance(outputs, dict):
        found = ", ".join(sorted(document)) if isinstance(document, dict) else "nothing"
        raise LifecycleError(f"{path} has no outputs of stack {stack} (it has: {found or 'none'})")
    return parse_outputs(outputs, source=f"{path}, stack {stack}")


def describe_outputs(cloudformation: Any, slug: str) -> StackOutputs | None:
    """The deployed stack's outputs, or ``None`` when stack ``PhiExchange-<slug>`` does not
    exist. A stack that exists but is not in a usable state is refused."""
    stack_name = naming.stack_name(slug)
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as err:
        message = str(err.response.get("Error", {}).get("Message", ""))
        if "does not exist" in message:
            return None
        raise
    stack = stacks[0]
    status = str(stack.get("StackStatus", ""))
    if status.endswith("_IN_PROGRESS") and not status.startswith("UPDATE"):
        raise LifecycleError(f"stack {stack_name} is {status}: wait until it completes")
    if status in ("CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_COMPLETE"):
        raise LifecycleError(f"stack {stack_name} is {status}: deploy it first")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return parse_outputs(outputs, source=f"stack {stack_name}")


def identity_mismatches(customer: CustomerConfig, outputs: StackOutputs) -> list[str]:
    """Whether the stack is this customer's, with its access mode: what offboarding needs to
    know what to revoke."""
    problems = []
    if outputs.slug != customer.slug:
        problems.append(f"the stack is for customer {outputs.slug!r}, not {customer.slug!r}")
    if outputs.access is not customer.access:
        problems.append(f"the stack grants access = '{outputs.access.value}', the registry says "
                        f"'{customer.access.value}'")
    return problems


def registry_mismatches(customer: CustomerConfig, outputs: StackOutputs) -> list[str]:
    """Where the deployed stack disagrees with the registry (the source of truth): a stack not
    yet deployed with the registry's current settings."""
    problems = identity_mismatches(customer, outputs)
    if outputs.directions != customer.directions:
        deployed = ", ".join(d.value for d in outputs.directions)
        wanted = ", ".join(d.value for d in customer.directions)
        problems.append(f"the stack grants directions [{deployed}], the registry says [{wanted}]")
    if (customer.access is AccessMode.ASSUME_ROLE
            and outputs.external_id != customer.external_id):
        problems.append("the stack's external id differs from the registry's")
    return problems


def require_current(customer: CustomerConfig, outputs: StackOutputs) -> None:
    """Refuse to act on a stack that does not match the registry: deploy first."""
    problems = registry_mismatches(customer, outputs)
    if problems:
        raise LifecycleError(
            f"{outputs.source} does not match {customer.source_file or 'the registry'}: "
            + "; ".join(problems)
            + f". Deploy first: cdk deploy CustomerStack -c customer={customer.slug}")
