"""The compliance gate: cdk-nag packs on every synth, and every acknowledged finding with its
reason. Nothing else in the project attaches a pack or acknowledges a finding.

cdk-nag 3.x runs as a CDK policy-validation plugin: an unacknowledged finding fails synth.
Each acknowledgment names one rule (and, where the rule reports one, the exact finding) on
one construct, and carries a reason an auditor can check.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks
from constructs import IConstruct

from phi_core import partner_policy

if TYPE_CHECKING:
    from stacks.components.account_roles import AccountRoles
    from stacks.components.audit_trail import AuditTrail
    from stacks.components.encrypted_storage import EncryptedStorage
    from stacks.components.ingestion_queue import IngestionQueue
    from stacks.components.key_rotation import KeyRotation
    from stacks.components.malware_gate import MalwareGate
    from stacks.components.partner_access import PartnerAccess


PACKS = ("AwsSolutions", "HIPAA.Security", "NIST.800.53.R5")


def add_gate(scope: IConstruct) -> None:
    """Run the AwsSolutions, HIPAA Security and NIST 800-53 rev 5 packs on every stack."""
    cdk.Validations.of(scope).add_plugins(
        AwsSolutionsChecks(scope, verbose=True),
        HIPAASecurityChecks(scope, verbose=True),
        NIST80053R5Checks(scope, verbose=True),
    )


def _acknowledge(construct: IConstruct, reason: str, *rule_ids: str) -> None:
    """Acknowledge findings on one construct. Ids take the form the gate prints:
    ``<pack>::<rule>`` (e.g. ``HIPAA.Security::HIPAA.Security-S3BucketReplicationEnabled``).
    CDK accepts only one ``::`` per id, so a granular finding (``AwsSolutions-IAM5[Resource::
    ...]``) is given without its pack prefix."""
    cdk.Validations.of(construct).acknowledge(
        *(cdk.Acknowledgment(id=_with_pack(rule_id), reason=reason) for rule_id in rule_ids)
    )


def _with_pack(rule_id: str) -> str:
    if "::" in rule_id:
        return rule_id
    return f"{rule_id.split('-', 1)[0]}::{rule_id}"


def acknowledge_customer_stack(
    stack: cdk.Stack,
    *,
    storage: EncryptedStorage,
    access: PartnerAccess | None,
    rotation: KeyRotation | None,
    gate: MalwareGate | None = None,
) -> None:
    """Findings on a customer stack that are acceptable by design, each with its reason."""
    _acknowledge_no_replication(storage.bucket, storage.log_bucket, reason=(
        "Not replicated across regions by design. The bucket is an exchange point, not the "
        "system of record: inbound files are imported into the company's database (backed "
        "up under its own DR plan) and partners keep their originals; outbound files are "
        "regenerated from that database. Versioning and RETAIN protect against deletion "
        "and overwrite. Replication would double the PHI footprint and its key management "
        "for no recovery benefit."))
    _acknowledge_access_log_bucket(storage.log_bucket)

    policy = access.node.try_find_child("PartnerPolicy") if access is not None else None
    if access is not None and policy is not None:
        # cdk-nag names the resource as it is in the template: a join with the partition's
        # token in an environment-agnostic stack, plain text in a placed one.
        resolved = stack.resolve(storage.bucket_arn)
        bucket_arn_text = resolved if isinstance(resolved, str) else "".join(
            part if isinstance(part, str) else f"<{part['Ref']}>"
            for part in resolved["Fn::Join"][1]
        )
        prefixes = partner_policy.listed_prefixes(access.partner_scope.directions)
        _acknowledge(
            policy.node.default_child,  # type: ignore[arg-type]
            "The wildcard is the object-key suffix under the partner's own prefix of its own "
            "bucket (e.g. inbound/*): the partner must be able to name new files, and to read "
            "every receipt under receipts/ (one per file version it sent, named by the "
            "importer). Actions are listed explicitly, and the bucket and the prefix are fixed.",
            *(f"AwsSolutions-IAM5[Resource::{bucket_arn_text}/{p}*]" for p in prefixes),
        )

    if rotation is not None:
        _acknowledge_rotation(rotation)
    if gate is not None:
        _acknowledge_malware_gate(stack, gate)


def _acknowledge_malware_gate(stack: cdk.Stack, gate: MalwareGate) -> None:
    _acknowledge(
        gate.policy.node.default_child,  # type: ignore[arg-type]
        "AWS's documented policy for GuardDuty Malware Protection for S3, narrowed: the "
        "EventBridge rules are the ones GuardDuty creates and names at plan creation "
        "(DO-NOT-DELETE-AmazonGuardDutyMalwareProtectionS3*, writes only with events:ManagedBy "
        "= GuardDuty's plan service), and the object wildcard is the key suffix under this "
        "bucket's inbound/ prefix, the only prefix the plan scans; the key statement names "
        "this customer's key through S3 only.",
        *wildcard_findings(stack, gate.policy))


def _acknowledge_rotation(rotation: KeyRotation) -> None:
    _acknowledge(
        rotation.function,
        "The rotation function calls only IAM, STS and Secrets Manager, and publishes to SNS. "
        "IAM has no VPC endpoint, so a VPC would need a NAT gateway to the public IAM "
        "endpoint: more network surface and cost for no isolation gain. The function handles "
        "no PHI, only the partner's access key, and its role is scoped to this customer's user "
        "and secret.",
        "HIPAA.Security-LambdaInsideVPC",
        "NIST.800.53.R5-LambdaInsideVPC",
    )


ROLE_WILDCARD_REASONS = {
    "Deployment": (
        "CloudFormation's role for the audit and customer stacks must create, update and retire "
        "every resource they hold: each wildcard is a name pattern our stacks use (phi-*, "
        "phi-exchange-*, PhiExchange-*, the CDK asset bucket) or a resource AWS names at "
        "creation (KMS key ids, layer versions, GuardDuty Malware Protection plan ids); "
        "kms:CreateKey has no resource. Nothing outside "
        "those names is reachable, and the key and bucket policies bound it further."),
    "CdkDeploy": (
        "The CDK CLI's role reads the staged templates in the CDK asset bucket, whose objects "
        "are named by content hash, and deploys only stacks named PhiExchange-*."),
    "Importer": (
        "The importer serves every customer: its bucket patterns are phi-*/inbound/* (it reads "
        "inbound files only) and phi-*/receipts/* (it writes receipts only), its topics the "
        "security topic and phi-exchange-*-gate-notices (each customer's notices of stopped "
        "files), and KMS key ids are random, so keys are named key/* and narrowed by "
        "kms:ViaService (S3, SQS or SNS) and, for S3, the encryption context of a phi-* "
        "bucket; it signs only through the receipt key's alias (kms:RequestAlias), whose key "
        "policy admits no other signer."),
    "Operator": (
        "The operator serves every customer: outbound/* of phi-* buckets, object attributes "
        "and listings (never inbound bytes), partner users, roles and secrets by the project's "
        "name patterns, and KMS keys (random ids) only through S3 for phi-* buckets or through "
        "Secrets Manager."),
}


def acknowledge_access_stack(stack: cdk.Stack, *, roles: AccountRoles) -> None:
    """Findings on the account roles that are acceptable by design, each with its reason. The
    wildcard findings are computed from the policies' own statements: a new wildcard is
    acknowledged only by giving its role a reason here."""
    for name, policy in roles.policies.items():
        _acknowledge(policy.node.default_child,  # type: ignore[arg-type]
                     ROLE_WILDCARD_REASONS[name], *wildcard_findings(stack, policy))
    _acknowledge(
        roles.policies["Deployment"].node.default_child,  # type: ignore[arg-type]
        "CloudFormation needs full control (s3:*, kms:*, iam:*, ...) of the resources it "
        "creates for our stacks, and only those: every statement names our resources by their "
        "name patterns. The resource policies deny it nothing it must do, and it cannot read "
        "an object: the customer keys admit it only for deployment-time encryption.",
        "HIPAA.Security-IAMPolicyNoStatementsWithFullAccess",
        "NIST.800.53.R5-IAMPolicyNoStatementsWithFullAccess")
    _acknowledge(
        roles.break_glass.node.default_child,  # type: ignore[arg-type]
        "Break-glass is the emergency role: everything, by design (AdministratorAccess). It "
        "can be assumed only with MFA, its sessions last one hour, and every assumption is "
        "sent to the security topic by the audit stack.",
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AdministratorAccess]")


def wildcard_findings(stack: cdk.Stack, policy: IConstruct) -> list[str]:
    """The AwsSolutions-IAM5 findings of a managed policy, as the gate names them."""
    document = stack.resolve(policy.node.default_child.policy_document)  # type: ignore[union-attr]
    findings: list[str] = []
    for statement in document["Statement"]:
        for action in _as_list(statement.get("Action")):
            if "*" in action:
                findings.append(f"AwsSolutions-IAM5[Action::{action}]")
        for resource in _as_list(statement.get("Resource")):
            text = _token_text(resource)
            if "*" in text:
                findings.append(f"AwsSolutions-IAM5[Resource::{text}]")
    return list(dict.fromkeys(findings))


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def _token_text(value: object) -> str:
    """A resolved value as cdk-nag prints it: ``{"Ref": "AWS::Partition"}`` is
    ``<AWS::Partition>``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_token_text(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        return re.sub(r"\$\{([^}]+)\}", r"<\1>", value["Fn::Sub"])
    raise ValueError(f"cannot name the finding of {value!r}")


def acknowledge_audit_stack(
    stack: cdk.Stack, *, trail: AuditTrail, queue: IngestionQueue
) -> None:
    """Findings on the audit stack that are acceptable by design, each with its reason."""
    if trail.custody_bucket is not None and trail.access_log_bucket is not None:
        acknowledge_evidence_buckets(trail.custody_bucket, trail.access_log_bucket)


def acknowledge_evidence_buckets(custody: IConstruct, access_logs: IConstruct) -> None:
    """The custody bucket and its access-log bucket, in the audit stack (one account) or the
    log-archive stack (the central evidence)."""
    _acknowledge_no_replication(custody, access_logs, reason=(
        "Single-region deployment, by design for now: the custody bucket is under S3 Object "
        "Lock (no version can be deleted or overwritten before the retention ends) and the "
        "trail's log-file validation (signed digest files) proves integrity. Cross-region "
        "replication of the evidence is a contingency-plan decision (164.308(a)(7)) that "
        "needs a second approved region and key; see docs/custody.md."))
    _acknowledge_access_log_bucket(access_logs)


def acknowledge_pipeline_stack(stack: cdk.Stack, *, artifacts: IConstruct,
                               logs: IConstruct) -> None:
    """Findings on the pipeline stack that are acceptable by design, each with its reason.
    The pipeline's roles and policies are CDK Pipelines' own (``aws_cdk.pipelines``, a
    maintained engine we do not rewrite); each grant is to the pipeline's own resources."""
    from aws_cdk import aws_codebuild as codebuild
    from aws_cdk import aws_iam as iam

    _acknowledge_no_replication(artifacts, logs, reason=(
        "Pipeline artifacts (synthesized templates and assets) are rebuilt from the repository "
        "by every run and expire after 90 days; the repository is the system of record. They "
        "hold no PHI."))
    _acknowledge_access_log_bucket(logs)
    for construct in stack.node.find_all():
        if isinstance(construct, iam.Policy):
            _acknowledge(
                construct.node.default_child,  # type: ignore[arg-type]
                "Generated by CDK Pipelines for one pipeline role (the pipeline's, an action's "
                "or a CodeBuild project's) from its own grants, each on this pipeline's "
                "resources: its artifact bucket and key, its CodeBuild projects, their log "
                "groups and report groups, and the CDK roles of the accounts it deploys to. "
                "Reviewed in every change's `cdk diff`; the pipeline never updates itself.",
                "HIPAA.Security-IAMNoInlinePolicy", "NIST.800.53.R5-IAMNoInlinePolicy",
                *wildcard_findings(stack, construct))
        if isinstance(construct, codebuild.CfnProject):
            _acknowledge(
                construct,
                "The project's source is the pipeline (CODEPIPELINE): the repository is read "
                "once, by the pipeline's CodeConnections connection (an OAuth app installation, "
                "no personal token), and handed to CodeBuild as an encrypted artifact.",
                "HIPAA.Security-CodeBuildProjectSourceRepoUrl")


def _acknowledge_no_replication(*buckets: IConstruct, reason: str) -> None:
    for bucket in buckets:
        _acknowledge(
            bucket.node.default_child,  # type: ignore[arg-type]
            reason,
            "HIPAA.Security-S3BucketReplicationEnabled",
            "NIST.800.53.R5-S3BucketReplicationEnabled",
        )


def _acknowledge_access_log_bucket(bucket: IConstruct) -> None:
    _acknowledge(
        bucket.node.default_child,  # type: ignore[arg-type]
        "S3 server access logging can only deliver to buckets encrypted with SSE-S3, so this "
        "log bucket uses SSE-S3 (AES-256, encrypted at rest). The logs hold object keys and "
        "requester identities, not object contents; the bucket is TLS-only, private, "
        "versioned and retained.",
        "HIPAA.Security-S3DefaultEncryptionKMS",
        "NIST.800.53.R5-S3DefaultEncryptionKMS",
    )


# --- the report ----------------------------------------------------------------------------


def acknowledgments_in(assembly_dir: Path) -> list[tuple[str, str, str]]:
    """(construct path, rule id, reason) for every acknowledgment in a synthesized cloud
    assembly, nested stage assemblies included."""
    found: list[tuple[str, str, str]] = []
    for metadata_file in sorted(assembly_dir.rglob("*.metadata.json")):
        metadata = json.loads(metadata_file.read_text())
        for path, entries in metadata.items():
            for entry in entries:
                if entry["type"] == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                    found.extend((path, rule, reason) for rule, reason in entry["data"].items())
    return found


def report(assembly_dir: Path) -> str:
    """A Markdown compliance report of a synthesized app: packs run and every acknowledgment."""
    lines = [
        "# Compliance report",
        "",
        f"Cloud assembly: `{assembly_dir}`. Packs run on every stack: {', '.join(PACKS)}.",
        "Synth succeeded, so every finding not listed below was fixed.",
        "",
        "| construct | acknowledged finding | reason |",
        "| --- | --- | --- |",
    ]
    for path, rule, reason in acknowledgments_in(assembly_dir):
        lines.append(f"| `{path}` | `{rule.removeprefix('Annotation::')}` | {reason} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "cdk.out")
    target = directory / "compliance-report.md"
    target.write_text(report(directory))
    print(target)
