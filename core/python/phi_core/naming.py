"""Every physical name derived from a customer slug, in one place.

The CDK stacks, the operator CLI, the local run, the security proofs and the partner's client
all need the same names, so none of them builds a name by hand. Names are deterministic: they
depend on the slug alone (plus the account and region for globally unique bucket names), never
on who runs synth or where.

Length budget: slugs are at most ``MAX_SLUG_LENGTH`` characters so the longest derived name
(the access-log bucket, ``phi-<slug>-logs-<12-digit account>-<region>``) stays within S3's
63-character limit for every current region name (at most 14 characters).
"""

from __future__ import annotations

PROJECT = "phi-exchange"
MAX_SLUG_LENGTH = 20

# Object key prefixes inside a customer bucket, by direction.
INBOUND_PREFIX = "inbound/"
OUTBOUND_PREFIX = "outbound/"
# Signed receipts of what arrived under inbound/ (phi_core.malware_gate): the importer writes
# them, a partner that sends inbound reads them.
RECEIPTS_PREFIX = "receipts/"

# Bucket names start with this, so account-wide controls (CloudTrail data-event selectors, the
# importer's event rule) can match every customer bucket by prefix.
BUCKET_NAME_PREFIX = "phi-"


STACK_NAME_PREFIX = "PhiExchange-"
AUDIT_STACK_NAME = f"{STACK_NAME_PREFIX}audit"
# The audit stack's buckets (custody, its access logs) are not named by us: CloudFormation
# generates ``<stack name, lowercased>-<logical id>-<suffix>``, so every one starts with this.
# Nothing else of ours does: customer stacks name every bucket (``phi-...``).
AUDIT_BUCKET_NAME_PREFIX = f"{AUDIT_STACK_NAME.lower()}-"
TRAIL_NAME = f"{PROJECT}-audit"
INGESTION_QUEUE_NAME = f"{PROJECT}-ingestion"
INGESTION_DEAD_LETTER_QUEUE_NAME = f"{PROJECT}-ingestion-dlq"
AUDIT_KEY_ALIAS = f"alias/{PROJECT}/audit"
SECURITY_TOPIC_NAME = f"{PROJECT}-security"
# The audit stack's rules on management events that tamper with evidence or access.
TAMPER_RULE_PREFIX = f"{PROJECT}-tamper-"

# The central evidence (issue 19): with a log-archive account in accounts.toml, every exchange
# account's trail delivers to one Object-Locked bucket there, encrypted with one key there. The
# bucket is named by us (the exchange accounts' trails must name it at synth), and not with
# BUCKET_NAME_PREFIX, so no trail records data events on it.
LOG_ARCHIVE_STACK_NAME = f"{STACK_NAME_PREFIX}log-archive"
EVIDENCE_KEY_ALIAS = f"alias/{PROJECT}/evidence"


def evidence_bucket_name(account: str, region: str) -> str:
    """The central custody bucket of the log-archive account ``account`` in ``region``."""
    return f"{PROJECT.replace('-', '')}-evidence-{account}-{region}"


def trail_arn(partition: str, region: str, account: str) -> str:
    """The ARN of our trail in an exchange account (its home region: where its audit stack is)."""
    return f"arn:{partition}:cloudtrail:{region}:{account}:trail/{TRAIL_NAME}"


# The CDK pipelines (issue 19), in their own account: they deploy the other accounts' stacks
# by assuming their CDK-deploy role, which trusts exactly the pipelines' roles. Pipeline 1 has
# the plain names; more pipelines (a CloudFormation template holds ~800 customers' actions)
# add "-<number>".
MAX_PIPELINES = 5
PIPELINE_STACK_NAME = f"{STACK_NAME_PREFIX}pipeline"
PIPELINE_ROLE_NAME = f"{PROJECT}-pipeline"
PIPELINE_ARTIFACT_KEY_ALIAS = f"alias/{PROJECT}/pipeline-artifacts"


def _numbered(name: str, number: int) -> str:
    return name if number == 1 else f"{name}-{number}"


def pipeline_stack_name(number: int = 1) -> str:
    return _numbered(PIPELINE_STACK_NAME, number)


def pipeline_role_name(number: int = 1) -> str:
    return _numbered(PIPELINE_ROLE_NAME, number)


def pipeline_name(number: int = 1) -> str:
    return _numbered(PROJECT, number)


def pipeline_artifact_key_alias(number: int = 1) -> str:
    return _numbered(PIPELINE_ARTIFACT_KEY_ALIAS, number)


def pipeline_artifact_bucket_name(account: str, region: str, number: int = 1) -> str:
    """A pipeline's artifact bucket: named, so each account's CDK-deploy role can be granted
    reading it before the pipeline exists."""
    return f"{PROJECT.replace('-', '')}-{_numbered('pipeline', number)}-{account}-{region}"


# The account's roles that work with PHI (stack PhiExchange-access, once per account): named, so
# every key, bucket and secret policy can admit exactly them without waiting for them.
ACCESS_STACK_NAME = f"{STACK_NAME_PREFIX}access"
DEPLOYMENT_ROLE_NAME = f"{PROJECT}-deployment"  # CloudFormation's, for the audit and customers
CDK_DEPLOY_ROLE_NAME = f"{PROJECT}-cdk-deploy"  # the CDK CLI's, which passes the one above
IMPORTER_ROLE_NAME = f"{PROJECT}-importer"
OPERATOR_ROLE_NAME = f"{PROJECT}-operator"
BREAK_GLASS_ROLE_NAME = f"{PROJECT}-break-glass"
# The importer's asymmetric key that signs receipts (audit stack); only the importer signs.
RECEIPT_SIGNING_KEY_ALIAS = f"alias/{PROJECT}/receipts"


def stack_name(slug: str) -> str:
    """CloudFormation stack name: one stack per customer, stable for life."""
    return f"{STACK_NAME_PREFIX}{slug}"


def data_bucket_name(slug: str, account: str, region: str) -> str:
    return f"{BUCKET_NAME_PREFIX}{slug}-{account}-{region}"


def log_bucket_name(slug: str, account: str, region: str) -> str:
    return f"{BUCKET_NAME_PREFIX}{slug}-logs-{account}-{region}"


def key_alias(slug: str) -> str:
    return f"alias/{PROJECT}/{slug}"


def partner_user_name(slug: str) -> str:
    return f"{PROJECT}-{slug}-partner"


def partner_group_name(slug: str) -> str:
    return f"{PROJECT}-{slug}-partners"


def partner_policy_name(slug: str) -> str:
    return f"{PROJECT}-{slug}-partner-access"


def partner_role_name(slug: str) -> str:
    return f"{PROJECT}-{slug}-partner"


def trust_anchor_name(slug: str) -> str:
    """The IAM Roles Anywhere trust anchor holding the partner's CA (roles-anywhere)."""
    return f"{PROJECT}-{slug}-partner-ca"


def roles_anywhere_profile_name(slug: str) -> str:
    """The IAM Roles Anywhere profile that hands out the partner role (roles-anywhere)."""
    return f"{PROJECT}-{slug}-partner"


def certificate_notices_rule_name(slug: str) -> str:
    """The rule that sends IAM Roles Anywhere's expiry events of the partner's trust anchor to
    the customer's notices topic."""
    return f"{PROJECT}-{slug}-certificate-expiry"


def partner_secret_name(slug: str) -> str:
    return f"{PROJECT}/{slug}/partner-access-key"


def rotation_function_name(slug: str) -> str:
    return f"{PROJECT}-{slug}-key-rotation"


def rotation_role_name(slug: str) -> str:
    """The rotation function's role: named, so the customer key can admit exactly it."""
    return f"{PROJECT}-{slug}-key-rotation"


def notices_topic_name(slug: str) -> str:
    return f"{PROJECT}-{slug}-notices"


def rotation_alarm_name(slug: str) -> str:
    """The rotation function's errors alarm; named so the topic and key policies can admit
    exactly this alarm (aws:SourceArn)."""
    return f"{PROJECT}-{slug}-key-rotation-errors"


def ingestion_rule_name(slug: str) -> str:
    """The customer's EventBridge rule feeding the ingestion queue; the queue policy admits
    rules named by this pattern (``INGESTION_RULE_PATTERN``)."""
    return f"{PROJECT}-{slug}-inbound-objects"


INGESTION_RULE_PATTERN = f"{PROJECT}-*-inbound-objects"


def scan_result_rule_name(slug: str) -> str:
    """The customer's EventBridge rule feeding GuardDuty's scan results of its inbound files to
    the ingestion queue; named inside ``INGESTION_RULE_PATTERN`` so the queue (and its key)
    admit it like the Object Created rule."""
    return f"{PROJECT}-{slug}-scanned-inbound-objects"


def scanner_role_name(slug: str) -> str:
    """The role GuardDuty Malware Protection for S3 assumes to scan and tag the customer's
    inbound files; named, so the customer key and bucket can admit exactly it."""
    return f"{PROJECT}-{slug}-malware-scan"


def gate_notices_topic_name(slug: str) -> str:
    """Where the importer tells the customer's contacts a file was stopped at the gate."""
    return f"{PROJECT}-{slug}-gate-notices"


def physical_names(slug: str) -> dict[str, str]:
    """Every name a customer's stack creates, keyed by the namespace it must be unique in
    (S3 bucket names are global; the others per account and region). Two customers whose
    names meet in a namespace cannot both be deployed: the registry refuses that."""
    account, region = "<account>", "<region>"
    return {
        f"s3 bucket {data_bucket_name(slug, account, region)}": "data bucket",
        f"s3 bucket {log_bucket_name(slug, account, region)}": "access-log bucket",
        f"kms alias {key_alias(slug)}": "key alias",
        f"iam user {partner_user_name(slug)}": "partner user",
        f"iam group {partner_group_name(slug)}": "partner group",
        f"iam policy {partner_policy_name(slug)}": "partner policy",
        f"iam role {partner_role_name(slug)}": "partner role",
        f"iam role {rotation_role_name(slug)}": "rotation role",
        f"secret {partner_secret_name(slug)}": "partner secret",
        f"lambda function {rotation_function_name(slug)}": "rotation function",
        f"sns topic {notices_topic_name(slug)}": "notices topic",
        f"cloudwatch alarm {rotation_alarm_name(slug)}": "rotation alarm",
        f"events rule {ingestion_rule_name(slug)}": "ingestion rule",
        f"events rule {scan_result_rule_name(slug)}": "scan-result rule",
        f"events rule {certificate_notices_rule_name(slug)}": "certificate-expiry rule",
        f"iam role {scanner_role_name(slug)}": "malware scanner role",
        f"sns topic {gate_notices_topic_name(slug)}": "gate notices topic",
        f"cloudformation stack {stack_name(slug)}": "stack",
    }
