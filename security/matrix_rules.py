"""The access matrix's rules: when a request is expected to be allowed. The oracle.

This module is what an auditor reads. It knows nothing of the templates: a request is expected
to be allowed if and only if one rule below allows it, and the evaluator's verdict on the
synthesized policies must agree, request by request (:mod:`security.access_matrix`).

Three kinds of rules:

- people and their credentials: partners, administrators, insiders, strangers;
- our own roles: each may make exactly the calls its code makes (read from the code,
  :mod:`security.role_calls`) plus the calls AWS documents that the runtime makes for it
  (:data:`IMPLIED_KMS`, :data:`LAMBDA_RUNTIME`);
- AWS services acting on our resources (:data:`CONTRACTS`): each the exact request AWS
  documents, allowed only on behalf of our own resource of the right kind; the same request on
  behalf of anybody else's resource (the confused deputy) is denied.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from phi_core import malware_gate, naming, partner_policy
from security.matrix_model import (
    AUDIT,
    MINIMUM_TLS,
    REGION,
    S3_KINDS,
    SSE,
    SSE_C,
    SSE_KEY,
    URL_SUFFIX,
    Kind,
    MatrixRequest,
    Part,
    RoleCall,
    Source,
    Who,
)
from security.role_calls import rotation_handler_calls
from stacks.config import CustomerConfig, Direction

# --- what AWS documents that services do for our roles -------------------------------------

# KMS calls a service makes as the caller when the caller uses a KMS-encrypted resource of it.
IMPLIED_KMS: dict[str, tuple[RoleCall, ...]] = {
    # Secrets Manager decrypts and encrypts secret values as the caller (Secrets Manager user
    # guide, "Secret encryption and decryption"; encryption context SecretARN).
    "secretsmanager:GetSecretValue": (
        RoleCall("kms:Decrypt", Part.CUSTOMER_KEY, "secretsmanager",
                 (("SecretARN", Part.PARTNER_SECRET),), "read the secret"),),
    "secretsmanager:PutSecretValue": (
        RoleCall("kms:GenerateDataKey", Part.CUSTOMER_KEY, "secretsmanager",
                 (("SecretARN", Part.PARTNER_SECRET),), "write a secret version"),),
    # SNS encrypts a message for a KMS-encrypted topic as the publisher (SNS developer guide,
    # "Key management": GenerateDataKey and Decrypt).
    "sns:Publish": (
        RoleCall("kms:GenerateDataKey", Part.CUSTOMER_KEY, "sns",
                 (("aws:sns:topicArn", Part.NOTICES_TOPIC),), "publish to the encrypted topic"),
        RoleCall("kms:Decrypt", Part.CUSTOMER_KEY, "sns",
                 (("aws:sns:topicArn", Part.NOTICES_TOPIC),), "publish to the encrypted topic"),
    ),
}

# Calls Lambda makes with a function's execution role outside the handler (Lambda developer
# guide, "Execution role": logs, dead-letter queue, environment-variable decryption).
LAMBDA_RUNTIME: tuple[RoleCall, ...] = (
    RoleCall("logs:CreateLogStream", Part.ROTATION_LOGS, why="write its logs"),
    RoleCall("logs:PutLogEvents", Part.ROTATION_LOGS, why="write its logs"),
    RoleCall("sqs:SendMessage", Part.ROTATION_DLQ, why="send a failed invocation to its DLQ"),
    RoleCall("kms:GenerateDataKey", Part.CUSTOMER_KEY, "sqs",
             (("aws:sqs:arn", Part.ROTATION_DLQ),), "send to the encrypted DLQ"),
    RoleCall("kms:Decrypt", Part.CUSTOMER_KEY, "sqs",
             (("aws:sqs:arn", Part.ROTATION_DLQ),), "send to the encrypted DLQ"),
    RoleCall("kms:Decrypt", Part.CUSTOMER_KEY, "lambda",
             (("aws:lambda:FunctionArn", Part.ROTATION_FUNCTION),),
             "decrypt its environment variables"),
)


def rotation_role_calls() -> tuple[RoleCall, ...]:
    """Everything the rotation function's role does: the handler's calls (from its code), the
    KMS calls they imply, and the Lambda runtime's."""
    calls: list[RoleCall] = []
    for action, part in sorted(rotation_handler_calls()):
        calls.append(RoleCall(action, part, why="the handler calls it"))
        calls.extend(IMPLIED_KMS.get(action, ()))
    calls.extend(LAMBDA_RUNTIME)
    return tuple(calls)


# --- AWS services acting on our resources ----------------------------------------------------


CLOUDTRAIL = Source("cloudtrail.amazonaws.com", "trail")
S3_LOGGING = Source("logging.s3.amazonaws.com", "bucket")
EVENTS_INGESTION = Source("events.amazonaws.com", "ingestion rule")
EVENTS_SWEEP = Source("events.amazonaws.com", "sweep rule")
ALARMS = Source("cloudwatch.amazonaws.com", "alarm")
SECRETS = Source("secretsmanager.amazonaws.com", "secret")
EVENTS_TAMPER = Source("events.amazonaws.com", "tamper rule")
CLOUDFORMATION = Source("cloudformation.amazonaws.com", "stack", source_keys=False)
# CloudWatch Logs names the log group in the encryption context, not in aws:SourceArn.
LOGS = Source(f"logs.{REGION}.{URL_SUFFIX}", "log group", source_keys=False)
GUARDDUTY_PLAN = Source(malware_gate.GUARDDUTY_PLAN_SERVICE, "malware protection plan")
# IAM Roles Anywhere issuing a session of a roles-anywhere partner's role, for the trust anchor
# (aws:SourceArn) a certificate chained to; the certificate's subject arrives as principal tags.
ROLES_ANYWHERE = Source(partner_policy.ROLES_ANYWHERE_SERVICE, "trust anchor")
EVENTS_CERTIFICATES = Source("events.amazonaws.com", "certificate-expiry rule")
_RA_DOC = "https://docs.aws.amazon.com/rolesanywhere/latest/userguide/trust-model.html"
GUARDDUTY_ROLE_DOC = ("https://docs.aws.amazon.com/guardduty/latest/ug/"
                      "malware-protection-s3-iam-policy-prerequisite.html")


@dataclass(frozen=True)
class Contract:
    """A request an AWS service makes on one of our resources, as AWS documents it.

    ``requires``: context the request carries and the allowing statement may demand (values
    may name ``{source}``, ``{account}``, ``{key}``: filled in per request). ``variants``:
    what else the service may send, each asked too (e.g. a digest file's SSE-S3 header).
    ``object_prefix``: S3 objects only, the key prefix it writes under (``{account}``).
    ``action`` may be a pattern as AWS documents it (``kms:GenerateDataKey*``); the matrix
    asks the call the service makes (``request_action``). ``to_audit``: the request goes from
    a customer's resource to the audit stack (else it stays on the source's own stack).
    ``any_source``: AWS documents no source condition for it; the request is allowed
    whatever it is made for, and ``says`` names what guards it instead.
    """

    name: str
    source: Source
    action: str
    part: Part
    says: str
    doc: str
    requires: tuple[tuple[str, str], ...] = ()
    variants: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (("", ()),)
    object_prefix: str | None = None
    to_audit: bool = False
    any_source: bool = False
    target_name: str | None = None  # account roles: which one
    # roles-anywhere: the request also carries the target customer's registered certificate
    # subject as principal tags (aws:PrincipalTag/x509Subject/<attribute>), each required.
    certificate_subject: bool = False

    @property
    def request_action(self) -> str:
        return self.action.rstrip("*")

    def covers(self, action: str) -> bool:
        return fnmatch.fnmatchcase(action.lower(), self.action.lower())


_ACL = ("s3:x-amz-acl", "bucket-owner-full-control")
_CT_DOCS = "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/"
CONTRACTS: tuple[Contract, ...] = (
    Contract("cloudtrail-checks-custody-bucket-acl", CLOUDTRAIL, "s3:GetBucketAcl",
             Part.CUSTODY, "CloudTrail reads the custody bucket's ACL before it delivers.",
             _CT_DOCS + "create-s3-bucket-policy-for-cloudtrail.html"),
    Contract("cloudtrail-delivers-log-files", CLOUDTRAIL, "s3:PutObject", Part.CUSTODY,
             "CloudTrail writes log files under AWSLogs/<account>/ with bucket-owner-full-control,"
             " SSE-KMS with the audit key.",
             _CT_DOCS + "create-s3-bucket-policy-for-cloudtrail.html",
             requires=(_ACL,),
             variants=(("log file", ((SSE, "aws:kms"), (SSE_KEY, "{key}"))),),
             object_prefix="AWSLogs/{account}/CloudTrail/"),
    Contract("cloudtrail-delivers-digest-files", CLOUDTRAIL, "s3:PutObject", Part.CUSTODY,
             "CloudTrail writes digest files under AWSLogs/<account>/CloudTrail-Digest/: with "
             "SSE-S3 (its encryption page) or SSE-KMS (its newer key-policy pages); both work.",
             _CT_DOCS + "encrypting-cloudtrail-log-files-with-aws-kms.html",
             requires=(_ACL,),
             variants=(("digest, SSE-S3", ((SSE, "AES256"),)),
                       ("digest, SSE-KMS", ((SSE, "aws:kms"), (SSE_KEY, "{key}"))),
                       ("digest, no SSE header", ())),
             object_prefix="AWSLogs/{account}/CloudTrail-Digest/"),
    Contract("cloudtrail-encrypts-with-audit-key", CLOUDTRAIL, "kms:GenerateDataKey*",
             Part.AUDIT_KEY, "CloudTrail (and S3 for it) generates data keys under the trail's "
             "encryption context.", _CT_DOCS + "create-kms-key-policy-for-cloudtrail.html",
             requires=(("kms:EncryptionContext:aws:cloudtrail:arn", "{source}"),)),
    Contract("cloudtrail-describes-audit-key", CLOUDTRAIL, "kms:DescribeKey", Part.AUDIT_KEY,
             "CloudTrail describes the key when the trail is created or updated.",
             _CT_DOCS + "create-kms-key-policy-for-cloudtrail.html"),
    Contract("cloudtrail-decrypts-for-bucket-key", CLOUDTRAIL, "kms:Decrypt", Part.AUDIT_KEY,
             "CloudTrail decrypts with the audit key because the custody bucket uses an S3 "
             "Bucket Key.", _CT_DOCS + "create-kms-key-policy-for-cloudtrail.html"),
    Contract("cloudtrail-assumes-log-delivery-role", CLOUDTRAIL, "sts:AssumeRole",
             Part.LOGS_DELIVERY_ROLE, "CloudTrail assumes the trail's log delivery role. AWS "
             "documents no source condition for this trust policy; iam:PassRole is the guard "
             "(only our principals can configure a trail with our role).",
             _CT_DOCS + "send-cloudtrail-events-to-cloudwatch-logs.html",
             any_source=True),
    Contract("s3-delivers-access-logs", S3_LOGGING, "s3:PutObject", Part.ACCESS_LOGS,
             "S3 server access logging writes a data bucket's access logs into its log bucket.",
             "https://docs.aws.amazon.com/AmazonS3/latest/userguide/"
             "enable-server-access-logging.html", object_prefix="data-bucket/"),
    Contract("s3-delivers-custody-access-logs", S3_LOGGING, "s3:PutObject",
             Part.CUSTODY_ACCESS_LOGS, "S3 server access logging writes the custody bucket's "
             "access logs into the custody access-log bucket.",
             "https://docs.aws.amazon.com/AmazonS3/latest/userguide/"
             "enable-server-access-logging.html", object_prefix="custody-bucket/"),
    Contract("eventbridge-sends-to-ingestion-queue", EVENTS_INGESTION, "sqs:SendMessage",
             Part.INGESTION_QUEUE, "A customer's inbound rule sends Object Created events to the "
             "ingestion queue.", "https://docs.aws.amazon.com/eventbridge/latest/userguide/"
             "eb-use-resource-based.html#eb-sqs-permissions", to_audit=True),
    Contract("eventbridge-encrypts-for-ingestion-queue", EVENTS_INGESTION,
             "kms:GenerateDataKey", Part.AUDIT_KEY, "SQS asks for a data key as EventBridge, on "
             "behalf of the rule.", "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/"
             "SQSDeveloperGuide/sqs-key-management.html", to_audit=True),
    Contract("eventbridge-checks-data-key-for-ingestion-queue", EVENTS_INGESTION,
             "kms:Decrypt", Part.AUDIT_KEY, "SQS decrypts the new data key to check it.",
             "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/"
             "sqs-key-management.html", to_audit=True),
    Contract("eventbridge-invokes-daily-sweep", EVENTS_SWEEP, "lambda:InvokeFunction",
             Part.ROTATION_FUNCTION, "The daily schedule invokes the rotation function's sweep.",
             "https://docs.aws.amazon.com/eventbridge/latest/userguide/"
             "eb-use-resource-based.html#eb-lambda-permissions"),
    Contract("secrets-manager-invokes-rotation", SECRETS, "lambda:InvokeFunction",
             Part.ROTATION_FUNCTION, "Secrets Manager invokes the rotation function for the "
             "partner secret's schedule.", "https://docs.aws.amazon.com/secretsmanager/latest/"
             "userguide/rotating-secrets-required-permissions-function.html"),
    Contract("alarm-publishes-notice", ALARMS, "sns:Publish", Part.NOTICES_TOPIC,
             "The rotation errors alarm publishes to the notices topic.",
             "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/US_SetupSNS.html"),
    Contract("alarm-encrypts-notice", ALARMS, "kms:GenerateDataKey*", Part.CUSTOMER_KEY,
             "CloudWatch generates a data key for the encrypted notices topic.",
             "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"),
    Contract("alarm-checks-notice-data-key", ALARMS, "kms:Decrypt", Part.CUSTOMER_KEY,
             "CloudWatch decrypts the data key for the encrypted notices topic.",
             "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"),
    Contract("tamper-rule-publishes-alarm", EVENTS_TAMPER, "sns:Publish", Part.SECURITY_TOPIC,
             "A tamper rule publishes the management event to the security topic.",
             "https://docs.aws.amazon.com/eventbridge/latest/userguide/"
             "eb-use-resource-based.html#eb-sns-permissions"),
    Contract("tamper-rule-encrypts-alarm", EVENTS_TAMPER, "kms:GenerateDataKey*",
             Part.AUDIT_KEY, "SNS generates a data key as EventBridge for the encrypted topic.",
             "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"),
    Contract("tamper-rule-checks-alarm-data-key", EVENTS_TAMPER, "kms:Decrypt", Part.AUDIT_KEY,
             "SNS decrypts the data key as EventBridge for the encrypted topic.",
             "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"),
    Contract("cloudformation-assumes-deployment-role", CLOUDFORMATION, "sts:AssumeRole",
             Part.ACCOUNT_ROLE, "CloudFormation assumes the deployment role it is given. The "
             "guard is iam:PassRole: only the CDK deploy role may hand it over.",
             "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/"
             "using-iam-servicerole.html", any_source=True,
             target_name=naming.DEPLOYMENT_ROLE_NAME),
    Contract("logs-encrypts-rotation-log-group", LOGS, "kms:GenerateDataKey", Part.CUSTOMER_KEY,
             "CloudWatch Logs encrypts the rotation function's log group.",
             "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
             requires=(("kms:EncryptionContext:aws:logs:arn", "{source}"),)),
    Contract("logs-decrypts-rotation-log-group", LOGS, "kms:Decrypt", Part.CUSTOMER_KEY,
             "CloudWatch Logs decrypts the rotation function's log group.",
             "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
             requires=(("kms:EncryptionContext:aws:logs:arn", "{source}"),)),
    Contract("logs-encrypts-trail-log-group", LOGS, "kms:GenerateDataKey", Part.AUDIT_KEY,
             "CloudWatch Logs encrypts the trail's log group.",
             "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
             requires=(("kms:EncryptionContext:aws:logs:arn", "{source}"),)),
    Contract("logs-decrypts-trail-log-group", LOGS, "kms:Decrypt", Part.AUDIT_KEY,
             "CloudWatch Logs decrypts the trail's log group.",
             "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
             requires=(("kms:EncryptionContext:aws:logs:arn", "{source}"),)),
    *(Contract(f"rolesanywhere-{action.split(':')[1].lower()}-partner-role", ROLES_ANYWHERE,
               action, Part.PARTNER_ROLE, "IAM Roles Anywhere issues a session of a "
               "roles-anywhere partner's role (it asks sts:AssumeRole, sts:SetSourceIdentity "
               "and sts:TagSession) only for a certificate that chains to that customer's own "
               "trust anchor and carries every registered subject attribute.", _RA_DOC,
               certificate_subject=True)
      for action in partner_policy.ROLES_ANYWHERE_ACTIONS),
    Contract("certificate-rule-publishes-notice", EVENTS_CERTIFICATES, "sns:Publish",
             Part.NOTICES_TOPIC, "A roles-anywhere customer's certificate-expiry rule "
             "publishes IAM Roles Anywhere's expiry events to its notices topic.",
             "https://docs.aws.amazon.com/eventbridge/latest/userguide/"
             "eb-use-resource-based.html#eb-sns-permissions"),
    Contract("certificate-rule-encrypts-notice", EVENTS_CERTIFICATES, "kms:GenerateDataKey*",
             Part.CUSTOMER_KEY, "SNS generates a data key as EventBridge for the encrypted "
             "notices topic.", "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"),
    Contract("certificate-rule-checks-notice-data-key", EVENTS_CERTIFICATES, "kms:Decrypt",
             Part.CUSTOMER_KEY, "SNS decrypts the data key as EventBridge for the encrypted "
             "notices topic.", "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"),
    Contract("guardduty-assumes-scanner-role", GUARDDUTY_PLAN, "sts:AssumeRole",
             Part.SCANNER_ROLE, "GuardDuty Malware Protection for S3 assumes the customer's "
             "scanner role for the plan it is given. AWS documents the trust without a source "
             "condition; iam:PassRole is the guard (only our principals can give a plan our "
             "role), as for CloudTrail's log delivery role.", GUARDDUTY_ROLE_DOC,
             any_source=True),
)


_CONTRACTS_BY_SOURCE = {source: tuple(c for c in CONTRACTS if c.source == source)
                        for source in {c.source for c in CONTRACTS}}


# --- request predicates ----------------------------------------------------------------------


def _tls_ok(r: MatrixRequest) -> bool:
    return r.network.tls is not None and r.network.tls >= MINIMUM_TLS


def _address_allowed(r: MatrixRequest) -> bool:
    ranges = r.customer.allowed_source_ips if r.customer else ()
    if not ranges or r.network.address is None:
        return True
    address = ipaddress.ip_address(r.network.address)
    return any(address in ipaddress.ip_network(cidr) for cidr in ranges)


def _encryption_ok(r: MatrixRequest) -> bool:
    """No encryption header (the bucket default), or SSE-KMS naming the bucket's own key.
    SSE-KMS without a key id is not: S3 would use the AWS managed key. Buckets with SSE-S3
    (the access-log buckets) carry no encryption rule."""
    if r.target.part in (Part.ACCESS_LOGS, Part.CUSTODY_ACCESS_LOGS):
        return True
    op = r.operation
    if op.get(SSE_C) is not None:
        return False
    algorithm, key = op.get(SSE), op.get(SSE_KEY)
    if algorithm is None:
        return key is None
    return algorithm == "aws:kms" and key == r.target.key_arn


def _s3_transport_ok(r: MatrixRequest) -> bool:
    """Every bucket denies plain HTTP and TLS older than 1.2 to everyone; uploads must also
    keep the bucket's encryption."""
    if r.target.kind not in S3_KINDS:
        return True
    if not _tls_ok(r):
        return False
    return r.operation.action != "s3:PutObject" or _encryption_ok(r)


def _tagged(r: MatrixRequest) -> bool:
    """The request sets object tags (x-amz-tagging, or a tagging request's tag set)."""
    return r.operation.get(REQUEST_TAG_KEYS) is not None


def _own(r: MatrixRequest) -> bool:
    return r.principal.who is Who.PARTNER and r.target.owner in r.principal.partner_of


def _under(r: MatrixRequest, direction: Direction) -> bool:
    return (r.target.part is Part.DATA and r.target.kind is Kind.OBJECT
            and r.customer is not None and r.customer.allows(direction)
            and (r.target.object_key or "").startswith(direction.prefix))


INBOUND_WRITES = frozenset({"s3:PutObject", "s3:AbortMultipartUpload",
                            "s3:ListMultipartUploadParts"})
OUTBOUND_READS = frozenset({"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes",
                            "s3:GetObjectVersionAttributes"})


def _partner_writes_inbound(r: MatrixRequest) -> bool:
    return (_own(r) and _under(r, Direction.INBOUND) and r.operation.action in INBOUND_WRITES
            and not _tagged(r) and r.operation.get(COPY_SOURCE) is None
            and _address_allowed(r) and _s3_transport_ok(r))


def _partner_reads_receipts(r: MatrixRequest) -> bool:
    return (_own(r) and r.target.part is Part.DATA and r.target.kind is Kind.OBJECT
            and r.customer is not None and r.customer.allows(Direction.INBOUND)
            and (r.target.object_key or "").startswith(RECEIPTS)
            and r.operation.action == "s3:GetObject" and _address_allowed(r) and _tls_ok(r))


def _partner_reads_outbound(r: MatrixRequest) -> bool:
    return (_own(r) and _under(r, Direction.OUTBOUND) and r.operation.action in OUTBOUND_READS
            and _address_allowed(r) and _s3_transport_ok(r))


def _partner_lists(r: MatrixRequest) -> bool:
    if not (_own(r) and r.target.part is Part.DATA and r.target.kind is Kind.BUCKET
            and r.operation.action == "s3:ListBucket" and r.customer is not None):
        return False
    prefix = r.operation.get("s3:prefix")
    receipts = (RECEIPTS,) if r.customer.allows(Direction.INBOUND) else ()
    under_own_prefix = prefix is not None and prefix.startswith(
        (*r.customer.prefixes, *receipts))
    top_level = r.operation.get("s3:delimiter") == "/" and prefix in (None, "")
    return (under_own_prefix or top_level) and _tls_ok(r) and _address_allowed(r)


def _partner_finds_bucket_region(r: MatrixRequest) -> bool:
    return (_own(r) and r.target.part is Part.DATA and r.target.kind is Kind.BUCKET
            and r.operation.action == "s3:GetBucketLocation"
            and _tls_ok(r) and _address_allowed(r))


def _partner_uses_key_through_s3(r: MatrixRequest) -> bool:
    if not (_own(r) and r.target.part is Part.CUSTOMER_KEY and r.operation.via == "s3"
            and r.customer is not None):
        return False
    return (r.operation.action == "kms:Decrypt"
            or (r.operation.action == "kms:GenerateDataKey"
                and r.customer.allows(Direction.INBOUND)))


def _partner_assumes_role(r: MatrixRequest) -> bool:
    return (r.principal.who is Who.PARTNER_HOME and r.target.owner in r.principal.can_assume
            and r.target.part is Part.PARTNER_ROLE and r.operation.action == "sts:AssumeRole"
            and r.customer is not None
            and r.operation.get("sts:ExternalId") == r.customer.external_id)


# The guards every principal of our account but break-glass is held to, written here from the
# issue's words (not imported from the stacks: the oracle must not change with them).
GUARDED_BUCKET_ACTIONS = frozenset({
    "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutEncryptionConfiguration",
    "s3:PutBucketVersioning", "s3:PutLifecycleConfiguration",
    "s3:PutBucketObjectLockConfiguration", "s3:DeleteObjectVersion"})
AUDIT_KEY_RETIREMENT = frozenset({"kms:ScheduleKeyDeletion", "kms:DisableKey",
                                  "kms:PutKeyPolicy"})
SECRET_VALUE_ACTIONS = frozenset({"secretsmanager:GetSecretValue",
                                  "secretsmanager:PutSecretValue",
                                  "secretsmanager:UpdateSecretVersionStage"})
TAG_PREFIX = "aws:PrincipalTag/phi-exchange:"
# The malware gate: the scan tag is GuardDuty's (its scanner role's) alone; receipts are signed
# by the importer alone.
RECEIPTS = "receipts/"
REQUEST_TAG_KEYS = "s3:RequestObjectTagKeys"
OBJECT_TAG_CHANGES = frozenset({"s3:PutObjectTagging", "s3:PutObjectVersionTagging",
                                "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"})
# Written here from the words, like the guards above: the alias the importer signs by
# and the kits read the public key by may move only with break-glass.
SIGNING_KEY_GUARDED = frozenset({"kms:Sign", "kms:Encrypt", *AUDIT_KEY_RETIREMENT,
                                 "kms:UpdateAlias", "kms:DeleteAlias"})
COPY_SOURCE = "s3:x-amz-copy-source"


def _crypto(action: str) -> bool:
    """An action that encrypts or decrypts with a key (what obtains plaintext)."""
    return action in ("kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo") or (
        action.startswith("kms:GenerateDataKey"))


def _guarded(r: MatrixRequest, *, deployment: bool = False) -> bool:
    """Whether the request is one only named principals may make: plaintext through any of
    our keys; a bucket's policy, encryption, versioning, lifecycle, Object Lock or versions
    (the deployment role may); retiring the audit key; the partner secret's value."""
    action, part = r.operation.action, r.target.part
    if r.target.kind is Kind.KEY and _crypto(action):
        return True
    if part is Part.SIGNING_KEY and action in SIGNING_KEY_GUARDED:
        return True
    if _changes_inbound_tags(r):
        return True
    if r.target.kind in S3_KINDS and action in GUARDED_BUCKET_ACTIONS:
        return not deployment
    if part is Part.AUDIT_KEY and action in AUDIT_KEY_RETIREMENT:
        return True
    return part is Part.PARTNER_SECRET and action in SECRET_VALUE_ACTIONS


def _changes_inbound_tags(r: MatrixRequest) -> bool:
    """Sets, changes or removes tags of an inbound object, uploads one with tags, or copies
    one in (a copy may carry its source's tags): the scanner's role (and break-glass) only."""
    inbound = (r.target.part is Part.DATA and r.target.kind is Kind.OBJECT
               and (r.target.object_key or "").startswith(naming.INBOUND_PREFIX))
    return inbound and (r.operation.action in OBJECT_TAG_CHANGES
                        or (r.operation.action == "s3:PutObject"
                            and (_tagged(r) or r.operation.get(COPY_SOURCE) is not None)))


def _admin(r: MatrixRequest) -> bool:
    """Everything in our account, within the buckets' transport and encryption rules, except
    what only named principals may do; no role's trust policy admits it by default."""
    return (r.principal.who is Who.ADMIN and r.target.kind is not Kind.ROLE
            and _s3_transport_ok(r) and not _guarded(r))


def _power_user(r: MatrixRequest) -> bool:
    """PowerUserAccess: the administrator's reach without IAM, under the same guards."""
    return (r.principal.who is Who.POWER_USER
            and r.target.kind not in (Kind.ROLE, Kind.USER)
            and _s3_transport_ok(r) and not _guarded(r))


def _break_glass(r: MatrixRequest) -> bool:
    """Everything, even what only named principals may do, within TLS and encryption; but it
    never signs a receipt (a receipt means the importer issued it)."""
    if r.target.part is Part.SIGNING_KEY and r.operation.action == "kms:Sign":
        return False
    return (r.principal.who is Who.BREAK_GLASS and r.target.kind is not Kind.ROLE
            and _s3_transport_ok(r))


def _deployment(r: MatrixRequest) -> bool:
    """CloudFormation's role: every resource of our stacks, its policies and settings
    included, but plaintext only through Secrets Manager and Lambda with a customer key
    (creating the secret and the function), never the audit key's retirement, never the
    partner secret's value."""
    if r.principal.who is not Who.DEPLOYMENT or r.target.kind is Kind.ROLE:
        return False
    if not _s3_transport_ok(r):
        return False
    if r.target.kind is Kind.KEY and _crypto(r.operation.action):
        return (r.target.part is Part.CUSTOMER_KEY
                and r.operation.via in ("secretsmanager", "lambda"))
    return not _guarded(r, deployment=True)


IMPORTER_READS = frozenset({"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes",
                            "s3:GetObjectVersionAttributes", "s3:GetObjectTagging",
                            "s3:GetObjectVersionTagging"})
IMPORTER_QUEUE = frozenset({"sqs:ReceiveMessage", "sqs:DeleteMessage",
                            "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
                            "sqs:GetQueueUrl"})
# The importer dead-letters a message it cannot load itself (with the reason).
IMPORTER_DEAD_LETTERS = frozenset({"sqs:GetQueueUrl", "sqs:SendMessage"})


def _importer(r: MatrixRequest) -> bool:
    """Every customer's inbound files (decrypted through S3), the ingestion queue (decrypted
    through SQS) and sending to its dead-letter queue (encrypted through SQS); receipts
    written under receipts/ (encrypted through S3) and signed with the receipt key by its
    alias; notices of stopped files published to the security topic and the customers'
    gate-notices topics (encrypted through SNS); nothing else."""
    if r.principal.who is not Who.IMPORTER:
        return False
    action, part, via = r.operation.action, r.target.part, r.operation.via
    if part is Part.DATA and r.target.kind is Kind.OBJECT:
        key = r.target.object_key or ""
        if key.startswith(RECEIPTS):
            return action == "s3:PutObject" and _s3_transport_ok(r)
        return key.startswith("inbound/") and action in IMPORTER_READS and _tls_ok(r)
    if part is Part.CUSTOMER_KEY:
        return ((action in ("kms:Decrypt", "kms:GenerateDataKey") and via == "s3")
                or (action in ("kms:Decrypt", "kms:GenerateDataKey") and via == "sns"))
    if part is Part.INGESTION_QUEUE:
        return action in IMPORTER_QUEUE
    if part is Part.INGESTION_DLQ:
        return action in IMPORTER_DEAD_LETTERS
    if part is Part.AUDIT_KEY:
        return action in ("kms:Decrypt", "kms:GenerateDataKey") and via in ("sqs", "sns")
    if part is Part.SIGNING_KEY:
        return (action == "kms:Sign"
                and r.operation.get("kms:RequestAlias") == naming.RECEIPT_SIGNING_KEY_ALIAS
                and r.operation.get("kms:SigningAlgorithm")
                == malware_gate.RECEIPT_SIGNING_ALGORITHM)
    return part in (Part.SECURITY_TOPIC, Part.GATE_TOPIC) and action == "sns:Publish"


SCANNER_READS_AND_TAGS = frozenset({"s3:GetObject", "s3:GetObjectVersion",
                                    "s3:GetObjectTagging", "s3:GetObjectVersionTagging",
                                    "s3:PutObjectTagging", "s3:PutObjectVersionTagging"})
SCANNER_BUCKET_CALLS = frozenset({"s3:ListBucket", "s3:GetBucketNotification",
                                  "s3:PutBucketNotification"})


def _scanner(r: MatrixRequest) -> bool:
    """GuardDuty's scanner role of a customer, as AWS documents what Malware Protection for S3
    does with it (GUARDDUTY_ROLE_DOC): read and tag the objects under the plan's prefix
    (inbound/), write the validation object, check the bucket's ownership (ListBucket) and
    its EventBridge notifications, use the customer's key through S3; its own customer only.
    (Its EventBridge managed-rule calls name no resource of ours the matrix models.)"""
    if r.principal.who is not Who.SCANNER or r.target.owner != r.principal.role_of:
        return False
    action, part, kind = r.operation.action, r.target.part, r.target.kind
    if part is Part.DATA and kind is Kind.OBJECT:
        key = r.target.object_key or ""
        if key.startswith(naming.INBOUND_PREFIX):
            return action in SCANNER_READS_AND_TAGS and _tls_ok(r)
        return (key == malware_gate.VALIDATION_OBJECT_KEY and action == "s3:PutObject"
                and _s3_transport_ok(r))
    if part is Part.DATA and kind is Kind.BUCKET:
        return action in SCANNER_BUCKET_CALLS and _tls_ok(r)
    return (part is Part.CUSTOMER_KEY and action in ("kms:Decrypt", "kms:GenerateDataKey")
            and r.operation.via == "s3")


OPERATOR_OUTBOUND = frozenset({"s3:PutObject", "s3:AbortMultipartUpload",
                               "s3:ListMultipartUploadParts", "s3:GetObject",
                               "s3:GetObjectVersion"})
OPERATOR_SEES_OBJECTS = frozenset({"s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"})
OPERATOR_SEES_BUCKETS = frozenset({"s3:ListBucket", "s3:ListBucketVersions",
                                   "s3:GetBucketLocation", "s3:GetBucketPolicy"})
# Custody: the data bucket's access logs are found with GetBucketLogging and read.
OPERATOR_FINDS_ACCESS_LOGS = frozenset({"s3:GetBucketLogging"})
OPERATOR_READS_ACCESS_LOGS = frozenset({"s3:GetObject"})
# Custody: the trail's log and digest files, every version, in the audit stack's buckets.
OPERATOR_LISTS_EVIDENCE = frozenset({"s3:ListBucket", "s3:ListBucketVersions"})
OPERATOR_READS_EVIDENCE = frozenset({"s3:GetObject", "s3:GetObjectVersion"})
OPERATOR_KEYS = frozenset({"iam:ListAccessKeys", "iam:GetAccessKeyLastUsed",
                           "iam:UpdateAccessKey"})
OPERATOR_SECRETS = frozenset({"secretsmanager:DescribeSecret",
                              "secretsmanager:ListSecretVersionIds",
                              "secretsmanager:GetSecretValue", "secretsmanager:RotateSecret",
                              "secretsmanager:CancelRotateSecret"})


def _operator(r: MatrixRequest) -> bool:
    """Writes (and reads back) outbound files; sees listings and object attributes of every
    customer bucket, never an inbound file's bytes; manages partner keys and their
    rotation and hands the key over; reads the receipt key's public half by its alias (for
    the kit); for custody, reads the customers' access logs and the trail's evidence (the
    audit stack's buckets, every version), decrypting the trail's logs with the audit key only
    through S3 for the custody bucket."""
    if r.principal.who is not Who.OPERATOR:
        return False
    action, part, kind = r.operation.action, r.target.part, r.target.kind
    if part is Part.SIGNING_KEY:
        return (action == "kms:GetPublicKey"
                and r.operation.get("kms:RequestAlias") == naming.RECEIPT_SIGNING_KEY_ALIAS)
    if kind in S3_KINDS and part in (Part.DATA, Part.ACCESS_LOGS):
        if not _s3_transport_ok(r):
            return False
        if kind is Kind.BUCKET:
            return action in OPERATOR_SEES_BUCKETS or action in OPERATOR_FINDS_ACCESS_LOGS
        outbound = part is Part.DATA and (r.target.object_key or "").startswith("outbound/")
        access_log = part is Part.ACCESS_LOGS and action in OPERATOR_READS_ACCESS_LOGS
        return (action in OPERATOR_SEES_OBJECTS or access_log
                or (outbound and action in OPERATOR_OUTBOUND))
    if kind in S3_KINDS and part in (Part.CUSTODY, Part.CUSTODY_ACCESS_LOGS):
        return _s3_transport_ok(r) and action in (
            OPERATOR_LISTS_EVIDENCE if kind is Kind.BUCKET else OPERATOR_READS_EVIDENCE)
    if part is Part.AUDIT_KEY:
        return (action == "kms:Decrypt" and r.operation.via == "s3"
                and r.operation.get("kms:EncryptionContext:aws:s3:arn") == r.target.bucket_arn)
    if part is Part.CUSTOMER_KEY:
        return (r.operation.via == "s3" and action in ("kms:GenerateDataKey", "kms:Decrypt")) or (
            r.operation.via == "secretsmanager" and action == "kms:Decrypt")
    if part is Part.PARTNER_USER:
        return action in OPERATOR_KEYS
    return part is Part.PARTNER_SECRET and action in OPERATOR_SECRETS


def _assumes_account_role(r: MatrixRequest) -> bool:
    """A principal of our account whose own policies allow sts:AssumeRole assumes one of the
    account's roles only when tagged for it, and break-glass only with MFA as well."""
    if not (r.principal.who in (Who.ADMIN, Who.POWER_USER, Who.BREAK_GLASS)
            and r.target.part is Part.ACCOUNT_ROLE and r.operation.action == "sts:AssumeRole"
            and r.target.name != naming.DEPLOYMENT_ROLE_NAME):
        return False
    tag = TAG_PREFIX + r.target.name.removeprefix(f"{naming.PROJECT}-")
    mfa = r.operation.get("aws:MultiFactorAuthPresent") == "true"
    return r.operation.get(tag) == "true" and (
        mfa or r.target.name != naming.BREAK_GLASS_ROLE_NAME)


def _pipeline_assumes_cdk_deploy_role(r: MatrixRequest) -> bool:
    return (r.principal.who is Who.PIPELINE and r.target.part is Part.ACCOUNT_ROLE
            and r.target.name == naming.CDK_DEPLOY_ROLE_NAME
            and r.operation.action == "sts:AssumeRole")


def _insider(r: MatrixRequest) -> bool:
    return (r.principal.who is Who.INSIDER and r.target.kind in S3_KINDS
            and r.operation.action.split(":", 1)[1].startswith(("Get", "List", "Describe"))
            and _tls_ok(r))


def _call_matches(r: MatrixRequest, call: RoleCall) -> bool:
    return (call.action == r.operation.action and call.part is r.target.part
            and (call.via is None or call.via == r.operation.via))


def _rotation(r: MatrixRequest) -> bool:
    return (r.principal.who is Who.ROTATION and r.principal.role_of == r.target.owner
            and any(_call_matches(r, call) for call in rotation_role_calls()))


LOGS_DELIVERY_CALLS = frozenset({"logs:CreateLogStream", "logs:PutLogEvents"})


def _logs_delivery(r: MatrixRequest) -> bool:
    return (r.principal.who is Who.LOGS_DELIVERY and r.target.part is Part.TRAIL_LOGS
            and r.target.kind is Kind.LOG_STREAM and r.operation.action in LOGS_DELIVERY_CALLS)


def matching_contract(r: MatrixRequest) -> Contract | None:
    """The contract a service request fulfils, if it is made for our own resource of the
    contract's kind, lands on the right stack, and carries what the contract requires."""
    p = r.principal
    if p.who is not Who.SERVICE or r.network.tls is None or p.source is None:
        return None
    for contract in _CONTRACTS_BY_SOURCE.get(p.source, ()):
        if contract.part is not r.target.part or not contract.covers(r.operation.action):
            continue
        if contract.target_name is not None and r.target.name != contract.target_name:
            continue
        if not contract.any_source:
            if not p.genuine:
                continue
            lands_on = r.target.owner == AUDIT and p.serves != AUDIT if contract.to_audit else (
                r.target.owner == p.serves)
            if not lands_on:
                continue
        if contract.object_prefix is not None and not (r.target.object_key or "").startswith(
                contract.object_prefix.format(account=r.principal.source_account)):
            continue
        values = {"source": p.source_arn or "", "account": p.source_account or "",
                  "key": r.target.key_arn}
        required = [(key, value.format(**values)) for key, value in contract.requires]
        if contract.certificate_subject:
            required += certificate_subject_context(r.target.customer)
        if all(r.operation.get(key) == value for key, value in required):
            return contract
    return None


def certificate_subject_context(customer: CustomerConfig | None) -> list[tuple[str, str]]:
    """The principal tags a session for ``customer``'s registered certificate subject
    carries (none for another access mode)."""
    settings = customer.roles_anywhere if customer else None
    return [(partner_policy.certificate_subject_key(name), value)
            for name, value in (settings.subject if settings else ())]


def _service(r: MatrixRequest) -> bool:
    return matching_contract(r) is not None


@dataclass(frozen=True)
class Rule:
    name: str
    says: str
    allows: Callable[[MatrixRequest], bool]
    who: frozenset[Who]  # the only principals it can allow anything to (saves run time)


RULES: tuple[Rule, ...] = (
    Rule("partner-writes-inbound",
         "A partner may write (PutObject, and abort or list the parts of its own multipart "
         "uploads) only under inbound/ of its own bucket, only if its customer sends inbound, "
         "over TLS >= 1.2, from an allowed source address, naming no encryption (the bucket "
         "default) or SSE-KMS with its own customer's key, with no tags and not as a copy. It "
         "can never read back, tag or delete what it sent.",
         _partner_writes_inbound, frozenset({Who.PARTNER})),
    Rule("partner-reads-receipts",
         "A partner whose customer sends inbound may read (GetObject) the signed receipts under "
         "receipts/ of its own bucket, over TLS >= 1.2, from an allowed source address.",
         _partner_reads_receipts, frozenset({Who.PARTNER})),
    Rule("partner-reads-outbound",
         "A partner may read (GetObject, GetObjectVersion and their attributes) only under "
         "outbound/ of its own bucket, only if its customer receives outbound, over TLS >= 1.2, "
         "from an allowed source address.",
         _partner_reads_outbound, frozenset({Who.PARTNER})),
    Rule("partner-lists-own-prefixes",
         "A partner may list its own bucket only under its own prefixes, or its top level with "
         "delimiter '/', over TLS >= 1.2, from an allowed source address.",
         _partner_lists, frozenset({Who.PARTNER})),
    Rule("partner-finds-own-bucket-region",
         "A partner may ask its own bucket's region (GetBucketLocation, what desktop clients "
         "do first), over TLS >= 1.2, from an allowed source address.",
         _partner_finds_bucket_region, frozenset({Who.PARTNER})),
    Rule("partner-uses-own-key-through-s3",
         "A partner may use its own customer's key only through S3 for its own bucket: Decrypt, "
         "and GenerateDataKey if it sends inbound. Never directly.",
         _partner_uses_key_through_s3, frozenset({Who.PARTNER})),
    Rule("partner-assumes-role-with-external-id",
         "An assume-role partner's own principal may assume its partner role, only with its "
         "external id.",
         _partner_assumes_role, frozenset({Who.PARTNER_HOME})),
    Rule("admin-but-no-plaintext-nor-evidence",
         "An administrator without break-glass may do anything to every resource of our "
         "stacks except: obtain plaintext through any of our keys, change a bucket's policy, "
         "encryption, versioning, lifecycle or Object Lock or delete an object version, retire "
         "the audit key, read or write the partner secret's value, tag an inbound object or "
         "upload one with tags, sign with (or retire) the receipt key; S3 requests need TLS >= "
         "1.2 and uploads the bucket's key.",
         _admin, frozenset({Who.ADMIN})),
    Rule("power-user-but-no-plaintext-nor-evidence",
         "An insider with PowerUserAccess may do what the administrator may, except IAM.",
         _power_user, frozenset({Who.POWER_USER})),
    Rule("break-glass-everything",
         "Break-glass may do anything to every resource of our stacks, plaintext and evidence "
         "included, within TLS >= 1.2 and the buckets' encryption, except sign a receipt.",
         _break_glass, frozenset({Who.BREAK_GLASS})),
    Rule("deployment-role-deploys",
         "CloudFormation's deployment role may do anything to every resource of our stacks, "
         "bucket policies and settings included, but obtains plaintext only through Secrets "
         "Manager and Lambda with a customer key, never retires the audit key or the receipt "
         "key, never signs, never tags inbound objects and never reads the partner secret's "
         "value.",
         _deployment, frozenset({Who.DEPLOYMENT})),
    Rule("importer-reads-inbound",
         "The importer may read every customer's inbound/ files and decrypt them through S3, "
         "consume the ingestion queue, decrypting its messages through SQS, send a message "
         "it cannot load to the dead-letter queue; write receipts under receipts/ (encrypting "
         "through S3) and sign them with the receipt key, named by its alias, with "
         "ECDSA_SHA_256; publish notices of stopped files to the security topic and the "
         "gate-notices topics (encrypting through SNS); nothing else.",
         _importer, frozenset({Who.IMPORTER})),
    Rule("scanner-scans-inbound",
         "A customer's malware scanner role may read and tag (get and put object tags) its "
         "customer's inbound/ files, write GuardDuty's validation object, list its bucket and "
         "read and set its EventBridge notifications, over TLS >= 1.2, and use its customer's "
         "key through S3 only: what AWS documents Malware Protection for S3 does with it.",
         _scanner, frozenset({Who.SCANNER})),
    Rule("operator-writes-outbound",
         "The operator may write and read back outbound/ files (encrypting through S3), see "
         "listings and object attributes of every customer bucket but never an inbound "
         "file's bytes, manage partner access keys and their rotation, and read the partner "
         "secret to hand the key over (decrypting through Secrets Manager). It also reads the "
         "trail's evidence, for custody: where each customer bucket logs (GetBucketLogging), "
         "the customers' access logs, and every version of the objects in the custody bucket "
         "and its access-log bucket, over TLS >= 1.2, decrypting with the audit key only "
         "through S3 for the custody bucket.",
         _operator, frozenset({Who.OPERATOR})),
    Rule("tagged-principals-assume-account-roles",
         "A principal of our account allowed sts:AssumeRole may assume the importer, operator, "
         "CDK deploy or break-glass role only when tagged for it (phi-exchange:<role> = "
         "true), break-glass only with MFA as well.",
         _assumes_account_role, frozenset({Who.ADMIN, Who.POWER_USER, Who.BREAK_GLASS})),
    Rule("pipeline-assumes-cdk-deploy-role",
         "The deployment pipeline's role (phi-exchange-pipeline, in the pipeline's account) may "
         "assume the CDK deploy role, and nothing else of this account: no other principal of "
         "the pipeline's account may.",
         _pipeline_assumes_cdk_deploy_role, frozenset({Who.PIPELINE})),
    Rule("insider-reads-s3-but-never-decrypts",
         "An insider with S3 read-only access may call S3 Get*/List*/Describe* over TLS >= 1.2, "
         "and no KMS action: it never decrypts an object.",
         _insider, frozenset({Who.INSIDER})),
    Rule("rotation-function-makes-its-calls",
         "A rotation function's role may make exactly the calls its handler's code makes, on "
         "its own customer's user, secret and topic, the KMS calls Secrets Manager and SNS make "
         "for them, and the Lambda runtime's calls (its logs, its dead-letter queue, its "
         "environment); its key only through those services.",
         _rotation, frozenset({Who.ROTATION})),
    Rule("log-delivery-role-writes-trail-logs",
         "The trail's log delivery role may only create streams in, and write to, the trail's "
         "log group.",
         _logs_delivery, frozenset({Who.LOGS_DELIVERY})),
    Rule("aws-service-contract",
         "An AWS service may make exactly the requests AWS documents for its integration "
         "(CONTRACTS), only on behalf of our own resource of the right kind (its aws:SourceArn,"
         " or the encryption context for CloudWatch Logs).",
         _service, frozenset({Who.SERVICE})),
)
DENY_RULE = "nothing-else"
DENY_SAYS = ("Everything else is denied: every other action, other customers' resources, "
             "offboarded partners, a partner's session credentials, tagging an inbound object "
             "(but the scanner), signing a receipt (but the importer), the CDK deploy role (it "
             "only hands stacks to CloudFormation), unrelated accounts, anonymous callers, a "
             "service acting for anybody else's resource, plain HTTP, old TLS, other "
             "addresses, other keys.")


_RULES_BY_WHO = {who: tuple(rule for rule in RULES if who in rule.who) for who in Who}


def expected(request: MatrixRequest) -> tuple[bool, str]:
    """(allowed?, name of the rule that decides)."""
    for rule in _RULES_BY_WHO[request.principal.who]:
        if rule.allows(request):
            return True, rule.name
    return False, DENY_RULE

