"""Shared arrangements for the onboard / offboard / status tests: the registry's customers,
their stack outputs as ``CustomerStack`` emits them, a deployed customer in moto, and the
subcommands run the way ``phi-exchange-admin`` runs them."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from admin import lifecycle_cli
from admin.stack_outputs import LifecycleError
from phi_core import naming, partner_policy
from stacks.config import AccessMode, CustomerConfig, Direction, RegistryError, load_registry

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REGION = "eu-west-2"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


def registry() -> dict[str, CustomerConfig]:
    """The shipped registry: acme (iam-user), globex (cross-account), initech (assume-role)."""
    return load_registry(REPO / "customers")


def outputs_for(customer: CustomerConfig, *, account: str = ACCOUNT,
                region: str = REGION) -> dict[str, str]:
    """What ``CustomerStack._outputs`` emits for ``customer`` (tokens resolved)."""
    slug = customer.slug
    outputs = {
        "CustomerSlug": slug,
        "AccessMode": customer.access.value,
        "BucketName": naming.data_bucket_name(slug, account, region),
        "BucketRegion": region,
        "BucketOwnerAccount": account,
        "KmsKeyArn": f"arn:aws:kms:{region}:{account}:key/{KEY_ID}",
    }
    if customer.allows(Direction.INBOUND):
        outputs["InboundPrefix"] = naming.INBOUND_PREFIX
    if customer.allows(Direction.OUTBOUND):
        outputs["OutboundPrefix"] = naming.OUTBOUND_PREFIX
    if customer.access is AccessMode.IAM_USER:
        outputs["PartnerSecretArn"] = (f"arn:aws:secretsmanager:{region}:{account}:secret:"
                                       f"{naming.partner_secret_name(slug)}-AbCdEf")
        outputs["PartnerUserName"] = naming.partner_user_name(slug)
    elif customer.access is AccessMode.ASSUME_ROLE:
        outputs["PartnerRoleArn"] = (f"arn:aws:iam::{account}:role/"
                                     f"{naming.partner_role_name(slug)}")
        assert customer.external_id is not None
        outputs["ExternalId"] = customer.external_id
    elif customer.access is AccessMode.ROLES_ANYWHERE:
        outputs["PartnerRoleArn"] = (f"arn:aws:iam::{account}:role/"
                                     f"{naming.partner_role_name(slug)}")
        outputs["TrustAnchorArn"] = (f"arn:aws:rolesanywhere:{region}:{account}:trust-anchor/"
                                     "5d2b1c0e-7f3a-4e8b-9c1d-2a3b4c5d6e7f")
        outputs["RolesAnywhereProfileArn"] = (f"arn:aws:rolesanywhere:{region}:{account}:"
                                              "profile/8e9f0a1b-2c3d-4e5f-8a7b-6c5d4e3f2a1b")
    return outputs


def write_outputs_file(path: Path, *customers: CustomerConfig) -> Path:
    path.write_text(json.dumps({naming.stack_name(c.slug): outputs_for(c) for c in customers}))
    return path


# --- running the subcommands as phi-exchange-admin does -------------------------------------


@dataclass
class Ran:
    code: int
    out: str
    err: str


def run(registry_dir: Path, argv: Sequence[str],
        make: Callable[[str], Any] | None = None) -> Ran:
    """Parse ``argv`` with the lifecycle subcommands under the CLI's ``--registry`` option and
    run the handler, turning expected errors into one stderr line and exit status 1, as
    ``admin.cli.main`` does."""
    parser = argparse.ArgumentParser(prog="phi-exchange-admin")
    parser.add_argument("--registry", default="customers")
    lifecycle_cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--registry", str(registry_dir), *argv])

    def default_make(service: str) -> Any:
        return boto3.client(service, region_name=REGION)

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = int(args.run(args, make or default_make))
        except (LifecycleError, RegistryError) as error:
            print(f"phi-exchange-admin: {error}", file=err)
            code = 1
        except ClientError as error:
            print(f"phi-exchange-admin: {error.operation_name}: "
                  f"{error.response['Error']['Code']}", file=err)
            code = 1
    return Ran(code, out.getvalue(), err.getvalue())


def copy_registry(directory: Path, *slugs: str, extra: str = "") -> Path:
    """A registry folder with the shipped customers ``slugs`` (and ``extra`` TOML text as
    customer ``extra.toml``'s content, if given)."""
    directory.mkdir(parents=True, exist_ok=True)
    for slug in slugs:
        (directory / f"{slug}.toml").write_text((REPO / "customers" / f"{slug}.toml").read_text())
    return directory


# --- a deployed customer in moto ------------------------------------------------------------


@dataclass
class Deployed:
    """What the customer stack left in (moto's) AWS, as far as these commands read it."""

    customer: CustomerConfig
    outputs: dict[str, str]
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @property
    def bucket(self) -> str:
        return self.outputs["BucketName"]


# A stand-in for the stack's statements (an allow, so that moto, which applies bucket-policy
# conditions loosely, lets the tests write objects).
BASE_BUCKET_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Sid": "StackStatement", "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
    "Action": "s3:GetObject", "Resource": "arn:aws:s3:::BUCKET/*"}]}


def deploy(customer: CustomerConfig, *, rotation: bool = True) -> Deployed:
    """Create, in moto (``mock_aws`` active), the resources the commands read: the stack with
    its outputs, the bucket with a policy, and the partner user, key and secret (iam-user) or
    role (assume-role, roles-anywhere)."""
    outputs = outputs_for(customer, account=ACCOUNT, region=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    bucket = outputs["BucketName"]
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(BASE_BUCKET_POLICY).replace(
        "BUCKET", bucket))
    deployed = Deployed(customer, outputs)
    iam = boto3.client("iam", region_name=REGION)
    if customer.access is AccessMode.IAM_USER:
        user = naming.partner_user_name(customer.slug)
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        document = {"user_name": user, "access_key_id": key["AccessKeyId"],
                    "secret_access_key": key["SecretAccessKey"], "bucket": bucket,
                    "region": REGION, "bucket_owner": ACCOUNT,
                    "kms_key_arn": outputs["KmsKeyArn"]}
        sm = boto3.client("secretsmanager", region_name=REGION)
        name = naming.partner_secret_name(customer.slug)
        outputs["PartnerSecretArn"] = sm.create_secret(Name=name, SecretString="{}")["ARN"]
        if rotation:
            # moto has no rotation function to call: configuring rotation makes an empty
            # pending version; the put below becomes current, as the function would make it.
            sm.rotate_secret(SecretId=name, RotationRules={"AutomaticallyAfterDays": 365})
        sm.put_secret_value(SecretId=name, SecretString=json.dumps(document))
        deployed.access_key_id = key["AccessKeyId"]
        deployed.secret_access_key = key["SecretAccessKey"]
    elif customer.access is AccessMode.ASSUME_ROLE:
        iam.create_role(
            RoleName=naming.partner_role_name(customer.slug),
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": list(customer.partner_principals)},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": customer.external_id}}}]}))
    elif customer.access is AccessMode.ROLES_ANYWHERE:
        assert customer.roles_anywhere is not None
        iam.create_role(
            RoleName=naming.partner_role_name(customer.slug),
            AssumeRolePolicyDocument=json.dumps(partner_policy.roles_anywhere_trust(
                outputs["TrustAnchorArn"], customer.roles_anywhere.subject)))
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=naming.stack_name(customer.slug), TemplateBody=json.dumps({
            "Resources": {"Notices": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {k: {"Value": v} for k, v in outputs.items()}}))
    return deployed


def bucket_policy(bucket: str) -> dict[str, Any]:
    text = boto3.client("s3", region_name=REGION).get_bucket_policy(Bucket=bucket)["Policy"]
    document: dict[str, Any] = json.loads(text)
    return document
