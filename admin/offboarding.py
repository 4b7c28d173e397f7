"""Offboarding: revoke a partner's access now, keep every byte of its data and evidence.

Two steps, because the registry is the source of truth (docs/offboarding.md):

1. **Now** (:func:`offboard`, ``phi-exchange-admin offboard SLUG``): an explicit deny for the
   partner's principals in the data bucket's policy (statement ``OffboardedPartnerDeny``:
   every S3 action on the bucket, whatever the partner's allows; only break-glass may add it
   outside a deployment, so as the operator that step is refused and reported), plus, by
   access mode:
   ``iam-user``: every access key of the partner user deactivated (not deleted: reversible,
   and the keys stay visible in IAM) and the secret's rotation cancelled (a rotation would
   issue a new active key); ``assume-role``: the role's trust policy replaced by one that
   denies ``sts:AssumeRole`` to everyone (no new sessions; sessions already issued, at most one
   hour long, are stopped by the bucket-policy deny); ``cross-account``: the deny is all
   there is (nothing of the partner's is in our IAM).
2. **Permanently** (:func:`next_steps`): the registry records the customer as offboarded
   and the stack is redeployed, so no later deploy can grant the access again.

Nothing here deletes an object, a version, a key, a log or a trail record: the bucket, its
KMS key, the access-log bucket and the audit trail are retained (``RETAIN``) and stay readable
by our operators.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from admin.private_files import PrivateFileError, write_private
from admin.stack_outputs import LifecycleError, StackOutputs
from phi_core import identifiers, naming, partner_policy
from stacks.config import AccessMode, CustomerConfig

DENY_SID = partner_policy.OFFBOARDED_DENY_SID
_ROOT_ARN = re.compile(r"^arn:([a-z-]+):iam::([0-9]{12}):root$")
POLICY_VERSION = "2012-10-17"
# A trust policy that lets nobody assume the role (a role needs one; an empty one is invalid).
DENY_ALL_TRUST_POLICY = {
    "Version": POLICY_VERSION,
    "Statement": [{"Sid": "Offboarded", "Effect": "Deny", "Principal": {"AWS": "*"},
                   "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]}],
}


# Every bucket's policy may be changed only by the deployment role and break-glass
# (phi_core.account_roles.guarded_bucket_deny): the operator's immediate deny is refused.
BUCKET_POLICY_REFUSED = (
    "only the deployment role and break-glass may change a bucket's policy: run this command "
    "again as break-glass for the immediate deny, or make it permanent now (step 2: "
    "offboarded = true, then deploy).")


@dataclass(frozen=True)
class OffboardResult:
    """What :func:`offboard` did (``actions``, one line each, in order), the steps that failed
    (``failures``: each names the step and the AWS error; the other steps still ran), and what
    the operator must do to make it permanent (``next_steps``)."""

    slug: str
    access: AccessMode
    actions: tuple[str, ...]
    next_steps: tuple[str, ...]
    access_keys: tuple[dict[str, str], ...] = field(default=())
    failures: tuple[str, ...] = ()


def principal_arn_patterns(customer: CustomerConfig, outputs: StackOutputs) -> list[str]:
    """ARN patterns matching every partner principal (``aws:PrincipalArn``): the core's, as
    the stack writes them, with the deployed stack's account and partition."""
    return partner_policy.partner_principal_patterns(
        access=customer.access, slug=customer.slug,
        partner_principals=customer.partner_principals, account=outputs.account,
        partition=outputs.partition)


def granted_principal_patterns(policy: dict[str, Any] | None, partition: str) -> list[str]:
    """ARN patterns of the principals the deployed bucket policy grants as a partner (the
    stack's ``Partner*`` allow statements, cross-account): the registry may have changed since
    the last deploy, and whoever the bucket still admits must be denied too. An account
    (``...:root`` or an id) becomes ``arn:<partition>:iam::<id>:*``; principals S3 shows by
    unique id (a deleted role) are skipped: they no longer match any caller."""
    patterns: list[str] = []
    for statement in _statements(policy):
        if statement.get("Effect") != "Allow" or not str(statement.get("Sid", "")).startswith(
                "Partner"):
            continue
        principal = statement.get("Principal")
        named = principal.get("AWS", []) if isinstance(principal, dict) else []
        for value in [named] if isinstance(named, str) else named:
            root = _ROOT_ARN.match(str(value))
            if root:
                patterns.append(f"arn:{root.group(1)}:iam::{root.group(2)}:*")
            elif identifiers.is_account_id(str(value)):
                patterns.append(f"arn:{partition}:iam::{value}:*")
            elif str(value).startswith("arn:"):
                patterns.append(str(value))
    return patterns


def deny_statement(customer: CustomerConfig, outputs: StackOutputs,
                   extra_patterns: list[str] | None = None) -> dict[str, Any]:
    """The bucket-policy statement that shuts the partner out of the bucket, the one the stack
    writes for an offboarded customer (:func:`phi_core.partner_policy.offboarded_partner_denies`)
    over the registry's partner patterns plus ``extra_patterns`` (default none). A deny wins
    over every allow, so it holds whatever else the policies say."""
    patterns = list(dict.fromkeys([*principal_arn_patterns(customer, outputs),
                                   *(extra_patterns or [])]))
    bucket_deny, _key_deny = partner_policy.offboarded_partner_denies(outputs.bucket_arn,
                                                                     patterns)
    return bucket_deny


def with_deny(policy: dict[str, Any] | None, statement: dict[str, Any]) -> dict[str, Any]:
    """``policy`` with ``statement`` added, replacing an earlier statement of the same Sid;
    every other statement is kept as it is."""
    document = dict(policy or {"Version": POLICY_VERSION})
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept = [s for s in statements if not (isinstance(s, dict) and s.get("Sid") == statement["Sid"])]
    document["Statement"] = [*kept, statement]
    document.setdefault("Version", POLICY_VERSION)
    return document


def has_deny(policy: dict[str, Any] | None) -> bool:
    """Whether a bucket policy carries the offboarding deny."""
    return any(s.get("Sid") == DENY_SID and s.get("Effect") == "Deny"
               for s in _statements(policy))


def _statements(policy: dict[str, Any] | None) -> list[dict[str, Any]]:
    statements = (policy or {}).get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    return [s for s in statements if isinstance(s, dict)]


def read_bucket_policy(s3: Any, bucket: str) -> dict[str, Any] | None:
    """The bucket's policy document, or ``None`` when it has none."""
    try:
        text = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    except ClientError as err:
        if _code(err) == "NoSuchBucketPolicy":
            return None
        raise
    document = json.loads(text)
    return document if isinstance(document, dict) else None


def plan(customer: CustomerConfig, outputs: StackOutputs) -> list[str]:
    """What :func:`offboard` will do, one line each (for ``--dry-run`` and the confirmation)."""
    steps = [f"add statement {DENY_SID} to the policy of bucket {outputs.bucket}: deny s3:* "
             f"to {', '.join(principal_arn_patterns(customer, outputs))}"]
    if customer.access is AccessMode.IAM_USER:
        steps.append(f"deactivate every access key of IAM user "
                     f"{naming.partner_user_name(customer.slug)} (not delete)")
        steps.append(f"cancel the rotation of secret {naming.partner_secret_name(customer.slug)}"
                     " (a rotation would issue a new active key)")
    elif customer.access in (AccessMode.ASSUME_ROLE, AccessMode.ROLES_ANYWHERE):
        # roles-anywhere: IAM Roles Anywhere issues sessions by assuming the role too, so a
        # closed trust stops new sessions for every certificate.
        steps.append(f"replace the trust policy of role {naming.partner_role_name(customer.slug)}"
                     " with one that lets nobody assume it")
    steps.append("delete nothing: objects, versions, the KMS key, access logs and the audit "
                 "trail are kept")
    return steps


def offboard(customer: CustomerConfig, outputs: StackOutputs, *, s3: Any, iam: Any,
             secretsmanager: Any) -> OffboardResult:
    """Revoke the partner's access now (see the module docstring). Every step runs even if
    another fails (a failure is reported, not hidden behind the first one). Idempotent:
    running it again re-applies the same state and says what was already in place."""
    actions: list[str] = []
    failures: list[str] = []
    keys: tuple[dict[str, str], ...] = ()

    def step(what: str, action: Callable[[], None], *, refused: str = "") -> None:
        try:
            action()
        except ClientError as err:
            error = err.response.get("Error", {})
            code = error.get("Code", "Error")
            failures.append(f"{what}: {err.operation_name}: {code}: "
                            + " ".join(str(error.get("Message", "")).split())
                            + (f" ({refused})" if refused and code == "AccessDenied" else ""))

    def deny() -> None:
        policy = read_bucket_policy(s3, outputs.bucket)
        already = has_deny(policy)
        granted = (granted_principal_patterns(policy, outputs.partition)
                   if customer.access is AccessMode.CROSS_ACCOUNT else [])
        s3.put_bucket_policy(Bucket=outputs.bucket, Policy=json.dumps(
            with_deny(policy, deny_statement(customer, outputs, granted))))
        actions.append(f"bucket {outputs.bucket}: statement {DENY_SID} "
                       + ("re-applied" if already else "added")
                       + " (every S3 request of the partner is denied)")

    def deactivate() -> None:
        nonlocal keys
        keys, key_actions = _deactivate_keys(iam, naming.partner_user_name(customer.slug))
        actions.extend(key_actions)

    step(f"deny in the policy of bucket {outputs.bucket}", deny, refused=BUCKET_POLICY_REFUSED
         + (" Until then the partner's principals keep their access: nothing of theirs is in "
            "our IAM." if customer.access is AccessMode.CROSS_ACCOUNT else ""))
    if customer.access is AccessMode.IAM_USER:
        step("deactivate the access keys", deactivate)
        step("cancel the rotation", lambda: actions.append(_cancel_rotation(
            secretsmanager, naming.partner_secret_name(customer.slug))))
    elif customer.access in (AccessMode.ASSUME_ROLE, AccessMode.ROLES_ANYWHERE):
        step("close the role's trust policy", lambda: actions.append(_close_trust(
            iam, naming.partner_role_name(customer.slug))))
    return OffboardResult(slug=customer.slug, access=customer.access, actions=tuple(actions),
                          next_steps=tuple(next_steps(customer, keys)), access_keys=keys,
                          failures=tuple(failures))


def _deactivate_keys(iam: Any, user_name: str) -> tuple[tuple[dict[str, str], ...], list[str]]:
    try:
        metadata = iam.list_access_keys(UserName=user_name)["AccessKeyMetadata"]
    except ClientError as err:
        if _code(err) == "NoSuchEntity":
            return (), [f"IAM user {user_name} does not exist: no key to deactivate"]
        raise
    actions, keys = [], []
    for key in sorted(metadata, key=lambda k: k["CreateDate"]):
        key_id = key["AccessKeyId"]
        if key["Status"] == "Active":
            iam.update_access_key(UserName=user_name, AccessKeyId=key_id, Status="Inactive")
            actions.append(f"IAM user {user_name}: access key {key_id} deactivated")
        else:
            actions.append(f"IAM user {user_name}: access key {key_id} was already inactive")
        keys.append({"access_key_id": key_id, "status": "Inactive",
                     "created": _iso(key["CreateDate"])})
    if not metadata:
        actions.append(f"IAM user {user_name} has no access key")
    return tuple(keys), actions


def _cancel_rotation(secretsmanager: Any, secret_name: str) -> str:
    try:
        described = secretsmanager.describe_secret(SecretId=secret_name)
    except ClientError as err:
        if _code(err) == "ResourceNotFoundException":
            return f"secret {secret_name} does not exist: no rotation to cancel"
        raise
    if not described.get("RotationEnabled"):
        return f"secret {secret_name}: rotation was already off"
    secretsmanager.cancel_rotate_secret(SecretId=secret_name)
    return f"secret {secret_name}: rotation cancelled (no new key will be issued)"


def _close_trust(iam: Any, role_name: str) -> str:
    try:
        iam.update_assume_role_policy(RoleName=role_name,
                                      PolicyDocument=json.dumps(DENY_ALL_TRUST_POLICY))
    except ClientError as err:
        if _code(err) == "NoSuchEntity":
            return f"role {role_name} does not exist: nothing to close"
        raise
    return f"role {role_name}: trust policy now lets nobody assume it (no new sessions)"


def next_steps(customer: CustomerConfig, keys: tuple[dict[str, str], ...] = ()) -> list[str]:
    """What makes the offboarding permanent: the registry change and the deploy."""
    slug = customer.slug
    registry_file = customer.source_file or f"customers/{slug}.toml"
    steps = [
        f"Record it in the registry (the source of truth): set `offboarded = true` in "
        f"{registry_file} once the registry supports it (docs/offboarding.md), review with "
        f"`cdk diff CustomerStack -c customer={slug}`, then `cdk deploy CustomerStack -c "
        f"customer={slug}`. Until then, do not deploy this customer: a deploy rewrites the "
        "bucket policy without the deny"
        + (" and restores the cross-account grants." if customer.access is
           AccessMode.CROSS_ACCOUNT else "."),
        f"Check with `phi-exchange-admin status`: {slug} shows 'offboarded'.",
    ]
    if customer.access is AccessMode.IAM_USER and keys:
        deletes = "; ".join(
            f"aws iam delete-access-key --user-name {naming.partner_user_name(slug)} "
            f"--access-key-id {k['access_key_id']}" for k in keys)
        steps.append("Before that deploy removes the partner user, delete its deactivated keys "
                     f"(CloudFormation cannot delete a user that still has keys it did not "
                     f"create): {deletes}")
    steps.append("Keep the bucket, its KMS key, the access logs and the trail until the "
                 "retention period ends; docs/offboarding.md says how to delete them then.")
    return steps


# --- the final custody report ---------------------------------------------------------------


def custody_report(customer: CustomerConfig, outputs: StackOutputs, result: OffboardResult,
                   *, s3: Any, now: datetime) -> dict[str, Any]:
    """The record kept with the offboarding: who had access and what was done, and an
    inventory of every object version and delete marker in the bucket at that moment (the
    evidence of what we hold; per-object chains: ``phi-exchange-admin custody``)."""
    versions: list[dict[str, Any]] = []
    markers: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=outputs.bucket):
        for version in page.get("Versions", []):
            versions.append({
                "key": version["Key"], "version_id": version.get("VersionId"),
                "is_latest": bool(version.get("IsLatest")), "size": version.get("Size"),
                "etag": version.get("ETag"), "last_modified": _iso(version["LastModified"]),
                "checksum_algorithm": version.get("ChecksumAlgorithm", []),
                "storage_class": version.get("StorageClass")})
        for marker in page.get("DeleteMarkers", []):
            markers.append({"key": marker["Key"], "version_id": marker.get("VersionId"),
                            "is_latest": bool(marker.get("IsLatest")),
                            "last_modified": _iso(marker["LastModified"])})
    by_prefix: dict[str, dict[str, int]] = {}
    for version in versions:
        top = version["key"].split("/", 1)[0] + "/" if "/" in version["key"] else "(top level)"
        entry = by_prefix.setdefault(top, {"versions": 0, "bytes": 0})
        entry["versions"] += 1
        entry["bytes"] += int(version["size"] or 0)
    return {
        "report": "phi-exchange final custody report (offboarding)",
        "generated_at": _iso(now),
        "customer": customer.slug,
        "display_name": customer.display_name,
        "access_mode": customer.access.value,
        "partner_principals": principal_arn_patterns(customer, outputs),
        "contacts": list(customer.contacts),
        "stack": naming.stack_name(customer.slug),
        "bucket": outputs.bucket, "region": outputs.region, "bucket_owner": outputs.account,
        "kms_key_arn": outputs.kms_key_arn,
        "offboarding": {"actions": list(result.actions), "next_steps": list(result.next_steps),
                        "access_keys": list(result.access_keys)},
        "retained": {
            "data_bucket": outputs.bucket,
            "access_log_bucket": naming.log_bucket_name(customer.slug, outputs.account,
                                                        outputs.region),
            "kms_key": outputs.kms_key_arn,
            "audit_trail": naming.TRAIL_NAME,
        },
        "summary": {"object_versions": len(versions), "delete_markers": len(markers),
                    "current_objects": sum(1 for v in versions if v["is_latest"]),
                    "bytes": sum(int(v["size"] or 0) for v in versions),
                    "by_prefix": dict(sorted(by_prefix.items()))},
        "object_versions": versions,
        "delete_markers": markers,
        "per_object_chain": f"phi-exchange-admin custody {customer.slug} KEY --json",
    }


def write_private_json(path: Path, document: dict[str, Any]) -> None:
    """Create ``path`` (mode 0600, never overwriting, never following a symlink) with the JSON
    document. The report names objects of health data: keep it with the custody records."""
    try:
        write_private(path, json.dumps(document, indent=2) + "\n")
    except PrivateFileError as err:
        raise LifecycleError(str(err)) from None


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))

