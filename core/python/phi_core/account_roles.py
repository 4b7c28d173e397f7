"""Who in our own account works with PHI, and the resource-policy denies that make it so.

The account's roles, each least-privilege, each with its purpose in one line:

- **deployment** (``phi-exchange-deployment``): CloudFormation's role for the audit and customer
  stacks; the only one besides break-glass that may change a bucket's policy, encryption,
  versioning or lifecycle, or delete an object version.
- **importer** (``phi-exchange-importer``): reads ``inbound/`` of every customer bucket,
  consumes the ingestion queue and dead-letters what it cannot load; nothing else.
- **operator** (``phi-exchange-operator``): writes ``outbound/``, runs the status, onboarding,
  rotation, hand-over and custody commands (the last reads the audit trail's evidence and the
  customers' access logs); reads no inbound plaintext.
- **rotation function** (``phi-exchange-<slug>-key-rotation``, per customer): see
  :mod:`phi_core.rotation_policy`.
- **break-glass** (``phi-exchange-break-glass``): everything, only with MFA, every use alarmed.

Everyone else in the account, however broad its IAM policies (``PowerUserAccess``,
``AdministratorAccess``), obtains no plaintext and changes no evidence: the denies below are in
the resource policies, which identity policies cannot override. The denies name principals with
``aws:PrincipalArn`` conditions under ``Principal: *`` (never a principal element), so a policy
never waits for, or fails on, a role that does not exist yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from phi_core import naming

Statement = dict[str, Any]

# What a customer key does for whom: only these principals obtain plaintext through it.
CRYPTO_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"]
# A bucket's guarantees: changing any of these silently defeats a control (the default key
# behind the header-based encryption denies, the versions behind custody).
GUARDED_BUCKET_ACTIONS = ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy",
                          "s3:PutEncryptionConfiguration", "s3:PutBucketVersioning",
                          "s3:PutLifecycleConfiguration", "s3:PutBucketObjectLockConfiguration",
                          "s3:DeleteObjectVersion"]
# What would make the Object-Locked evidence unreadable or unmonitored.
GUARDED_AUDIT_KEY_ACTIONS = ["kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy"]
# The partner secret's value.
SECRET_VALUE_ACTIONS = ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
                        "secretsmanager:UpdateSecretVersionStage"]


def role_arn(name: str, *, account: str, partition: str) -> str:
    return f"arn:{partition}:iam::{account}:role/{name}"


class Roles:
    """The account roles' ARNs (values may be CDK tokens for the account and partition)."""

    def __init__(self, *, account: str, partition: str) -> None:
        def arn(name: str) -> str:
            return role_arn(name, account=account, partition=partition)

        self.deployment = arn(naming.DEPLOYMENT_ROLE_NAME)
        self.cdk_deploy = arn(naming.CDK_DEPLOY_ROLE_NAME)
        self.importer = arn(naming.IMPORTER_ROLE_NAME)
        self.operator = arn(naming.OPERATOR_ROLE_NAME)
        self.break_glass = arn(naming.BREAK_GLASS_ROLE_NAME)
        self.account = account
        self.partition = partition

    def rotation(self, slug: str) -> str:
        return role_arn(naming.rotation_role_name(slug), account=self.account,
                        partition=self.partition)

    def scanner(self, slug: str) -> str:
        """GuardDuty's malware scanner role of customer ``slug`` (phi_core.malware_gate)."""
        return role_arn(naming.scanner_role_name(slug), account=self.account,
                        partition=self.partition)


def _deny_unless(sid: str, actions: Sequence[str], resources: str | list[str],
                 allowed: Sequence[str], *, services_exempt: bool = False) -> Statement:
    condition: dict[str, Any] = {"ArnNotLike": {"aws:PrincipalArn": list(allowed)}}
    if services_exempt:
        # An AWS service acting as itself (CloudWatch Logs, SNS delivering, an alarm) carries
        # no principal ARN of ours; its grants carry their own source conditions.
        condition["Bool"] = {"aws:PrincipalIsAWSService": "false"}
    return {"Sid": sid, "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": list(actions),
            "Resource": resources, "Condition": condition}


def customer_key_crypto_denies(roles: Roles, *, slug: str, partner_patterns: Sequence[str],
                               region: str, url_suffix: str,
                               scanned: bool = False) -> list[Statement]:
    """Key policy of a customer key: nobody but the customer's partner (through S3, as its own
    grants say), the importer, the operator, the customer's rotation function (only through
    the services that use the key for it), the deployment role (only through Secrets Manager
    and Lambda, which encrypt the partner secret and the function's environment when it
    creates them), the customer's malware scanner role when it is ``scanned`` (only through
    S3, to read and tag inbound files: phi_core.malware_gate) and break-glass uses the key to
    encrypt or decrypt. AWS services acting as themselves keep their own narrower grants."""
    scanner = [roles.scanner(slug)] if scanned else []
    allowed = [*partner_patterns, roles.importer, roles.operator, roles.rotation(slug),
               *scanner, roles.deployment, roles.break_glass]

    def only_through(sid: str, principal: str, services: Sequence[str]) -> Statement:
        return {"Sid": sid, "Effect": "Deny", "Principal": {"AWS": "*"},
                "Action": CRYPTO_ACTIONS, "Resource": "*",
                "Condition": {"ArnLike": {"aws:PrincipalArn": principal},
                              "StringNotEquals": {"kms:ViaService": [
                                  f"{s}.{region}.{url_suffix}" for s in services]}}}

    return [_deny_unless("OnlyNamedPrincipalsUseTheKey", CRYPTO_ACTIONS, "*", allowed,
                         services_exempt=True),
            only_through("RotationUsesTheKeyOnlyThroughItsServices", roles.rotation(slug),
                         ("secretsmanager", "sns", "sqs", "lambda")),
            only_through("DeploymentUsesTheKeyOnlyToCreateSecretAndFunction",
                         roles.deployment, ("secretsmanager", "lambda")),
            *([only_through("ScannerUsesTheKeyOnlyThroughS3", roles.scanner(slug), ("s3",))]
              if scanned else [])]


def audit_key_crypto_deny(roles: Roles) -> Statement:
    """Key policy of the audit key: the importer (the queue's messages), the operator (the
    trail's logs, for custody) and break-glass decrypt with it; AWS services acting as
    themselves (CloudTrail, EventBridge, CloudWatch Logs, SQS) keep their own grants."""
    return _deny_unless("OnlyNamedPrincipalsUseTheKey", CRYPTO_ACTIONS, "*",
                        [roles.importer, roles.operator, roles.break_glass],
                        services_exempt=True)


def evidence_key_guard_denies(roles: Roles) -> list[Statement]:
    """Key policy of the central evidence key: only break-glass schedules its deletion, disables
    it or moves its alias (the Object-Locked logs are unreadable without it); its policy, which
    lists every exchange account's trail and so changes when an account is added, is changed by
    the deployment role (CloudFormation) or break-glass only."""
    return [
        # The exchange accounts' trails name the key by its alias: moving or deleting the alias
        # (KMS asks the alias's current key too) is retiring it.
        _deny_unless("OnlyBreakGlassRetiresTheEvidenceKey",
                     ["kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:UpdateAlias",
                      "kms:DeleteAlias"], "*", [roles.break_glass]),
        _deny_unless("OnlyDeploymentChangesTheEvidenceKeyPolicy", ["kms:PutKeyPolicy"], "*",
                     [roles.deployment, roles.break_glass]),
    ]


def evidence_key_crypto_deny(roles: Roles) -> Statement:
    """Key policy of the central evidence key (the log-archive account): its operator (reading
    the trail's logs, for custody) and break-glass decrypt with it; CloudTrail, acting as
    itself for the listed trails, keeps its own grants."""
    return _deny_unless("OnlyNamedPrincipalsUseTheKey", CRYPTO_ACTIONS, "*",
                        [roles.operator, roles.break_glass], services_exempt=True)


def guarded_bucket_deny(roles: Roles, bucket_arn: str, *,
                        deployer: str | None = None) -> Statement:
    """Bucket policy of every bucket: its policy, encryption, versioning, lifecycle and Object
    Lock, and its object versions, are changed by the deployment role or break-glass only
    (``deployer``: another role that deploys the stack, e.g. the CDK bootstrap's CloudFormation
    role for the pipeline's own stack)."""
    return _deny_unless("OnlyDeploymentChangesTheBucket", GUARDED_BUCKET_ACTIONS,
                        [bucket_arn, f"{bucket_arn}/*"],
                        [deployer or roles.deployment, roles.break_glass])


def audit_key_guard_deny(roles: Roles) -> Statement:
    """Key policy of the audit key: only break-glass may schedule its deletion, disable it or
    change its policy (the Object-Locked logs are unreadable without it). The key stays
    manageable: break-glass keeps every right (KMS's lockout rule), and CloudFormation creates
    the key with the lockout safety check bypassed because it, the creator, is denied."""
    return _deny_unless("OnlyBreakGlassRetiresTheAuditKey", GUARDED_AUDIT_KEY_ACTIONS, "*",
                        [roles.break_glass])


def secret_value_deny(roles: Roles, *, slug: str) -> Statement:
    """Resource policy of the partner secret: its value is read or written by the rotation
    function, the operator's hand-over command and break-glass only."""
    return _deny_unless("OnlyNamedPrincipalsReadTheKey", SECRET_VALUE_ACTIONS, "*",
                        [roles.rotation(slug), roles.operator, roles.break_glass])


# --- the roles' own grants --------------------------------------------------------------------


def importer_statements(*, partition: str, region: str, account: str,
                        url_suffix: str) -> list[Statement]:
    """Read every customer's inbound files (and decrypt them through S3), consume the
    ingestion queue (decrypting its messages through SQS), move a message it cannot load to
    the dead-letter queue (the importer does that itself, with the reason; encrypting it
    through SQS); and the malware gate's and the receipts' part
    (:func:`phi_core.malware_gate.importer_gate_statements`)."""
    from phi_core import malware_gate  # it builds on this module's roles

    buckets = f"arn:{partition}:s3:::{naming.BUCKET_NAME_PREFIX}*"
    queue = f"arn:{partition}:sqs:{region}:{account}:{naming.INGESTION_QUEUE_NAME}"
    dead_letters = (f"arn:{partition}:sqs:{region}:{account}:"
                    f"{naming.INGESTION_DEAD_LETTER_QUEUE_NAME}")
    keys = f"arn:{partition}:kms:{region}:{account}:key/*"
    return [
        {"Sid": "ReadInboundFiles", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes",
                    "s3:GetObjectVersionAttributes", "s3:GetObjectTagging",
                    "s3:GetObjectVersionTagging"],
         "Resource": f"{buckets}/{naming.INBOUND_PREFIX}*"},
        {"Sid": "DecryptInboundFilesThroughS3", "Effect": "Allow", "Action": "kms:Decrypt",
         "Resource": keys,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.{url_suffix}"},
                       "StringLike": {"kms:EncryptionContext:aws:s3:arn": buckets}}},
        {"Sid": "ConsumeIngestionQueue", "Effect": "Allow",
         "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
         "Resource": queue},
        {"Sid": "DeadLetterUnloadableMessages", "Effect": "Allow",
         "Action": ["sqs:GetQueueUrl", "sqs:SendMessage"], "Resource": dead_letters},
        {"Sid": "UseQueueMessagesThroughSqs", "Effect": "Allow",
         "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": keys,
         "Condition": {"StringEquals": {"kms:ViaService": f"sqs.{region}.{url_suffix}"}}},
        *malware_gate.importer_gate_statements(partition=partition, region=region,
                                               account=account, url_suffix=url_suffix),
    ]


def operator_statements(*, partition: str, region: str, account: str,
                        url_suffix: str) -> list[Statement]:
    """Write outbound files; read what the status, onboarding and custody commands show
    (stacks, listings, object attributes and checksums, key ages); start a rotation, hand the
    key over, revoke a partner's keys or role trust; read the receipt key's public half for
    the kit (``kms:GetPublicKey``, by the key's alias only). For custody, read the audit trail's
    evidence: find the trail and the public keys that signed its digest files, list and read
    the versions of the log and digest files in the audit stack's buckets (decrypting the log
    files, which the audit key encrypts, through S3 for those buckets only), and read the
    customers' S3 server access logs. Never an inbound object's bytes: an explicit deny, so
    that no pattern above (IAM's ``*`` matches ``/`` too) reaches a partner-chosen key under
    ``inbound/`` such as ``inbound/x/outbound/y`` or ``inbound/x-logs-<account>-<region>/y``.

    Not granted: Athena (``custody --source athena``); a deployment that queries the trail
    with Athena grants its workgroup, its results bucket and the Glue table separately."""
    buckets = f"arn:{partition}:s3:::{naming.BUCKET_NAME_PREFIX}*"
    # The custody bucket and its access-log bucket: generated names, the audit stack's prefix.
    audit_buckets = f"arn:{partition}:s3:::{naming.AUDIT_BUCKET_NAME_PREFIX}*"
    # Every customer's access-log bucket (SSE-S3: no key to decrypt with).
    access_logs = f"arn:{partition}:s3:::{naming.log_bucket_name('*', account, region)}"
    keys = f"arn:{partition}:kms:{region}:{account}:key/*"
    users = f"arn:{partition}:iam::{account}:user/{naming.PROJECT}-*-partner"
    partner_roles = f"arn:{partition}:iam::{account}:role/{naming.PROJECT}-*-partner"
    secrets = f"arn:{partition}:secretsmanager:{region}:{account}:secret:{naming.PROJECT}/*"
    stacks = (f"arn:{partition}:cloudformation:{region}:{account}:stack/"
              f"{naming.STACK_NAME_PREFIX}*/*")
    return [
        {"Sid": "WriteOutboundFiles", "Effect": "Allow",
         "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
                    "s3:GetObject", "s3:GetObjectVersion"],
         "Resource": f"{buckets}/{naming.OUTBOUND_PREFIX}*"},
        {"Sid": "EncryptOutboundFilesThroughS3", "Effect": "Allow",
         "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": keys,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.{url_suffix}"},
                       "StringLike": {"kms:EncryptionContext:aws:s3:arn": buckets}}},
        {"Sid": "SeeWhatArrived", "Effect": "Allow",
         "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation",
                    "s3:GetBucketPolicy", "s3:GetObjectAttributes",
                    "s3:GetObjectVersionAttributes"],
         "Resource": [buckets, f"{buckets}/*"]},
        {"Sid": "ReadStackOutputs", "Effect": "Allow",
         "Action": ["cloudformation:DescribeStacks"], "Resource": stacks},
        {"Sid": "ManagePartnerKeys", "Effect": "Allow",
         "Action": ["iam:ListAccessKeys", "iam:GetAccessKeyLastUsed", "iam:UpdateAccessKey"],
         "Resource": users},
        {"Sid": "ClosePartnerRoleTrust", "Effect": "Allow",
         "Action": ["iam:GetRole", "iam:UpdateAssumeRolePolicy"], "Resource": partner_roles},
        {"Sid": "RotateAndHandOverPartnerKeys", "Effect": "Allow",
         "Action": ["secretsmanager:DescribeSecret", "secretsmanager:ListSecretVersionIds",
                    "secretsmanager:GetSecretValue", "secretsmanager:RotateSecret",
                    "secretsmanager:CancelRotateSecret"],
         "Resource": secrets},
        {"Sid": "DecryptPartnerKeysThroughSecretsManager", "Effect": "Allow",
         "Action": "kms:Decrypt", "Resource": keys,
         "Condition": {"StringEquals": {
             "kms:ViaService": f"secretsmanager.{region}.{url_suffix}"}}},
        # Onboarding puts the receipt key's public half in the kit; named by its alias, as the
        # importer signs by it (phi_core.malware_gate.importer_gate_statements).
        {"Sid": "HandOverTheReceiptKey", "Effect": "Allow", "Action": "kms:GetPublicKey",
         "Resource": keys,
         "Condition": {"StringEquals": {"kms:RequestAlias": naming.RECEIPT_SIGNING_KEY_ALIAS}}},
        # Custody: the trail's evidence. DescribeTrails (the trail's bucket and key) and
        # ListPublicKeys (the keys that signed the digest files) take no resource in IAM.
        {"Sid": "FindTheTrailAndItsSigningKeys", "Effect": "Allow",
         "Action": ["cloudtrail:DescribeTrails", "cloudtrail:ListPublicKeys"],
         "Resource": "*"},
        {"Sid": "ReadTheTrailsEvidence", "Effect": "Allow",
         "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetObject",
                    "s3:GetObjectVersion"],
         "Resource": [audit_buckets, f"{audit_buckets}/*"]},
        # Log files are SSE-KMS with the audit key (digest files SSE-S3). The S3 encryption
        # context is the bucket's ARN (S3 Bucket Key), or an object's ARN without one.
        {"Sid": "DecryptTheTrailsLogsThroughS3", "Effect": "Allow", "Action": "kms:Decrypt",
         "Resource": keys,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.{url_suffix}"},
                       "StringLike": {"kms:EncryptionContext:aws:s3:arn": audit_buckets}}},
        # Custody: S3's own record of a data bucket's requests (GetBucketLogging finds it).
        {"Sid": "FindAccessLogs", "Effect": "Allow", "Action": "s3:GetBucketLogging",
         "Resource": buckets},
        {"Sid": "ReadAccessLogs", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": f"{access_logs}/*"},
        {"Sid": "NeverReadInboundBytes", "Effect": "Deny",
         "Action": ["s3:GetObject", "s3:GetObjectVersion"],
         "Resource": f"{buckets}/{naming.INBOUND_PREFIX}*"},
    ]


def assume_tag(role_name: str) -> str:
    """The principal tag that lets a principal of our account assume ``role_name``: granted by
    whoever manages IAM (a power user cannot tag itself), changes alarmed."""
    return f"aws:PrincipalTag/{naming.PROJECT}:{role_name.removeprefix(naming.PROJECT + '-')}"


def trust_conditions(role_name: str, *, mfa: bool = False) -> dict[str, Any]:
    """Who of our account may assume one of these roles: a principal carrying its tag (and,
    for break-glass, signed in with MFA). ``sts:AssumeRole`` permission alone is not enough:
    PowerUserAccess has it for every role."""
    condition: dict[str, Any] = {"StringEquals": {assume_tag(role_name): "true"}}
    if mfa:
        condition["Bool"] = {"aws:MultiFactorAuthPresent": "true"}
    return condition


def pipeline_trust_conditions(*, partition: str, pipeline_account: str,
                              pipelines: int = 1) -> dict[str, Any]:
    """The CDK-deploy role also trusts the pipelines' own roles in the pipeline's account (their
    CloudFormation actions run as these roles), and nothing else of that account. Every
    account trusts all ``pipelines``: they run the same repository's code in one account, and
    an account's access stack need not change when it moves to another pipeline."""
    arns = [role_arn(naming.pipeline_role_name(n), account=pipeline_account,
                     partition=partition) for n in range(1, pipelines + 1)]
    return {"ArnEquals": {"aws:PrincipalArn": arns[0] if len(arns) == 1 else arns}}


def pipeline_deploy_statements(*, partition: str, pipeline_account: str,
                               pipeline_region: str, pipelines: int = 1) -> list[Statement]:
    """What the CDK-deploy role needs of the pipeline's account to deploy from it: read the
    staged templates in the pipelines' artifact buckets and decrypt them (each key's own policy
    names the roles it admits). And what it must never do, whoever assumes it: touch the
    account's own roles (``PhiExchange-access``) or a pipeline (``PhiExchange-pipeline``,
    ``-pipeline-2``...), which only an administrator changes."""
    buckets = [naming.pipeline_artifact_bucket_name(pipeline_account, pipeline_region, n)
               for n in range(1, pipelines + 1)]
    never = [f"arn:{partition}:cloudformation:*:*:stack/{name}/*"
             for name in (naming.ACCESS_STACK_NAME,
                          *(naming.pipeline_stack_name(n)
                            for n in range(1, naming.MAX_PIPELINES + 1)))]
    return [
        {"Sid": "ReadPipelineArtifacts", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:GetBucketLocation",
                    "s3:ListBucket"],
         "Resource": [arn for bucket in buckets
                      for arn in (f"arn:{partition}:s3:::{bucket}",
                                  f"arn:{partition}:s3:::{bucket}/*")]},
        {"Sid": "DecryptPipelineArtifacts", "Effect": "Allow",
         "Action": ["kms:Decrypt", "kms:DescribeKey"],
         "Resource": f"arn:{partition}:kms:{pipeline_region}:{pipeline_account}:key/*"},
        {"Sid": "NeverTheAccountsOwnStacks", "Effect": "Deny", "Action": "cloudformation:*",
         "Resource": never},
    ]


def deployment_statements(*, partition: str, region: str, account: str) -> list[Statement]:
    """What CloudFormation needs to create, update and retire the audit and customer stacks,
    on the names those stacks use and nothing else (generated names start with the stack
    name, ``PhiExchange-``; chosen ones with ``phi-exchange``/``phi-``)."""
    def arns(service: str, *resources: str, regional: bool = True) -> list[str]:
        where = f"{region}:{account}" if regional else f":{account}"
        return [f"arn:{partition}:{service}:{where}:{r}" for r in resources]

    ours = [f"{naming.PROJECT}-*", f"{naming.STACK_NAME_PREFIX}*"]
    return [
        {"Sid": "Buckets", "Effect": "Allow", "Action": "s3:*",
         "Resource": [f"arn:{partition}:s3:::{naming.BUCKET_NAME_PREFIX}*",
                      f"arn:{partition}:s3:::{naming.BUCKET_NAME_PREFIX}*/*",
                      f"arn:{partition}:s3:::phiexchange-*",
                      f"arn:{partition}:s3:::phiexchange-*/*"]},
        {"Sid": "ReadAssets", "Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
         "Resource": [f"arn:{partition}:s3:::cdk-*-assets-{account}-{region}",
                      f"arn:{partition}:s3:::cdk-*-assets-{account}-{region}/*"]},
        {"Sid": "CreateKeys", "Effect": "Allow", "Action": ["kms:CreateKey", "kms:ListAliases"],
         "Resource": "*"},
        {"Sid": "ManageKeys", "Effect": "Allow", "Action": "kms:*",
         "Resource": [*arns("kms", "key/*"), *arns("kms", f"alias/{naming.PROJECT}/*")]},
        {"Sid": "Identities", "Effect": "Allow", "Action": "iam:*",
         "Resource": [f"arn:{partition}:iam::{account}:{kind}/{name}"
                      for kind in ("user", "group", "policy", "role") for name in ours]},
        {"Sid": "Secrets", "Effect": "Allow", "Action": "secretsmanager:*",
         "Resource": arns("secretsmanager", f"secret:{naming.PROJECT}/*")},
        {"Sid": "Functions", "Effect": "Allow", "Action": "lambda:*",
         "Resource": [*arns("lambda", *(f"function:{n}" for n in ours)),
                      *arns("lambda", "layer:*")]},
        {"Sid": "Logs", "Effect": "Allow", "Action": "logs:*",
         "Resource": arns("logs", f"log-group:/aws/lambda/{naming.PROJECT}-*",
                          f"log-group:/{naming.PROJECT}/*")},
        {"Sid": "TopicsQueuesRulesAlarmsTrails", "Effect": "Allow",
         "Action": ["sns:*", "sqs:*", "events:*", "cloudwatch:*", "cloudtrail:*"],
         "Resource": [*arns("sns", *ours), *arns("sqs", *ours),
                      *arns("events", *(f"rule/{n}" for n in ours)),
                      *arns("cloudwatch", *(f"alarm:{n}" for n in ours)),
                      *arns("cloudtrail", f"trail/{naming.PROJECT}-*")]},
        {"Sid": "ReadBootstrapVersion", "Effect": "Allow", "Action": "ssm:GetParameters",
         "Resource": arns("ssm", "parameter/cdk-bootstrap/*")},
        # GuardDuty names a plan at creation; passing the scanner role is in "Identities".
        {"Sid": "MalwareProtectionPlans", "Effect": "Allow",
         "Action": ["guardduty:CreateMalwareProtectionPlan",
                    "guardduty:UpdateMalwareProtectionPlan",
                    "guardduty:DeleteMalwareProtectionPlan",
                    "guardduty:GetMalwareProtectionPlan", "guardduty:TagResource",
                    "guardduty:UntagResource"],
         "Resource": arns("guardduty", "malware-protection-plan/*")},
        # roles-anywhere customers: IAM Roles Anywhere generates the ids, so creating (and
        # tagging at creation, which lists tags) takes no resource; everything else is on this
        # account's trust anchors and profiles. Passing the partner role to the profile is in
        # "Identities".
        {"Sid": "CreateRolesAnywhere", "Effect": "Allow",
         "Action": ["rolesanywhere:CreateTrustAnchor", "rolesanywhere:CreateProfile",
                    "rolesanywhere:ListTagsForResource"],
         "Resource": "*"},
        {"Sid": "RolesAnywhere", "Effect": "Allow",
         "Action": ["rolesanywhere:GetTrustAnchor", "rolesanywhere:UpdateTrustAnchor",
                    "rolesanywhere:DeleteTrustAnchor", "rolesanywhere:EnableTrustAnchor",
                    "rolesanywhere:DisableTrustAnchor", "rolesanywhere:PutNotificationSettings",
                    "rolesanywhere:ResetNotificationSettings", "rolesanywhere:GetProfile",
                    "rolesanywhere:UpdateProfile", "rolesanywhere:DeleteProfile",
                    "rolesanywhere:EnableProfile", "rolesanywhere:DisableProfile",
                    "rolesanywhere:TagResource", "rolesanywhere:UntagResource"],
         "Resource": arns("rolesanywhere", "trust-anchor/*", "profile/*")},
    ]


def cdk_deploy_statements(*, partition: str, region: str, account: str,
                          deployment_role: str) -> list[Statement]:
    """What the CDK CLI does with the role it assumes (the CDK bootstrap's deploy role,
    narrowed to our stacks): change sets and stack operations on our stacks, handing them to
    CloudFormation's deployment role, reading stacks and the staged templates, the bootstrap
    version. Never a resource of the stacks themselves: CloudFormation does that, as the
    deployment role."""
    stacks = f"arn:{partition}:cloudformation:{region}:{account}:stack/" \
             f"{naming.STACK_NAME_PREFIX}*/*"
    return [
        {"Sid": "DeployOurStacks", "Effect": "Allow",
         "Action": ["cloudformation:CreateChangeSet", "cloudformation:DescribeChangeSet",
                    "cloudformation:ExecuteChangeSet", "cloudformation:DeleteChangeSet",
                    "cloudformation:CreateStack", "cloudformation:UpdateStack",
                    "cloudformation:RollbackStack", "cloudformation:ContinueUpdateRollback",
                    "cloudformation:DeleteStack", "cloudformation:UpdateTerminationProtection",
                    "cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents",
                    "cloudformation:DescribeStackResources",
                    "cloudformation:ListStackResources", "cloudformation:GetTemplate",
                    "cloudformation:GetTemplateSummary"],
         "Resource": stacks},
        # ValidateTemplate takes no resource in IAM (sts:GetCallerIdentity needs no permission).
        {"Sid": "ValidateTemplates", "Effect": "Allow",
         "Action": "cloudformation:ValidateTemplate", "Resource": "*"},
        {"Sid": "HandToCloudFormation", "Effect": "Allow", "Action": "iam:PassRole",
         "Resource": deployment_role,
         "Condition": {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}},
        {"Sid": "ReadStagedTemplates", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": [f"arn:{partition}:s3:::cdk-*-assets-{account}-{region}",
                      f"arn:{partition}:s3:::cdk-*-assets-{account}-{region}/*"]},
        {"Sid": "ReadBootstrapVersion", "Effect": "Allow",
         "Action": ["ssm:GetParameter", "ssm:GetParameters"],
         "Resource": f"arn:{partition}:ssm:{region}:{account}:parameter/cdk-bootstrap/*"},
    ]
