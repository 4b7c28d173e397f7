"""The access matrix's vocabulary: who asks, what is asked of which resource, over what network.

Plain data, shared by the rules (:mod:`security.matrix_rules`, the oracle an auditor reads) and
the machinery that builds and evaluates requests (:mod:`security.access_matrix`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from phi_core import defaults, naming
from security.templates import ACCOUNT, REGION, URL_SUFFIX

__all__ = ["ACCOUNT", "REGION", "URL_SUFFIX"]  # re-exported: the matrix's fixed environment
from stacks.config import CustomerConfig

AUDIT = "audit"  # the owner of the account-wide audit stack's resources
ACCESS = "access"  # the owner of the account's roles (stack PhiExchange-access)

SSE = "s3:x-amz-server-side-encryption"
SSE_KEY = "s3:x-amz-server-side-encryption-aws-kms-key-id"
SSE_C = "s3:x-amz-server-side-encryption-customer-algorithm"
MINIMUM_TLS = defaults.MINIMUM_TLS_VERSION

STRANGER_ACCOUNT = "999988887777"
# The account the CDK pipeline runs in (accounts.toml [pipeline]): the matrix's account is one
# the pipeline deploys to, so its CDK-deploy role trusts the pipeline's role there.
PIPELINE_ACCOUNT = "555566667777"
PIPELINE_ROLE = f"arn:aws:iam::{PIPELINE_ACCOUNT}:role/{naming.pipeline_role_name(1)}"


def via(service: str) -> str:
    """The ``kms:ViaService`` value of ``service`` (``s3``, ``sns``, ...) in our region."""
    return f"{service}.{REGION}.{URL_SUFFIX}"


class Who(enum.StrEnum):
    PARTNER = "partner"  # a principal a customer lets in (for assume-role: our role's session)
    PARTNER_HOME = "partner's own principal"  # assume-role: before it assumes our role
    PARTNER_SESSION = "partner's session credentials"  # iam-user: from sts:GetSessionToken
    FORMER_PARTNER = "offboarded partner"  # a principal of an offboarded customer
    ROTATION = "rotation function"
    SCANNER = "malware scanner role"  # GuardDuty Malware Protection for S3, per customer
    LOGS_DELIVERY = "trail's log delivery role"
    IMPORTER = "importer"
    OPERATOR = "operator"
    DEPLOYMENT = "deployment role"  # CloudFormation's
    CDK_DEPLOY = "CDK deploy role"
    BREAK_GLASS = "break-glass"
    ADMIN = "administrator without break-glass"
    POWER_USER = "insider (PowerUserAccess)"
    INSIDER = "insider (S3 read-only)"
    STRANGER = "unrelated account"
    PIPELINE = "deployment pipeline's role"  # in PIPELINE_ACCOUNT
    PIPELINE_ACCOUNT = "another principal of the pipeline's account"
    ANONYMOUS = "anonymous"
    SERVICE = "AWS service"


# Principals asked everything about every stack, in every context.
GLOBAL = frozenset({Who.ADMIN, Who.POWER_USER, Who.INSIDER, Who.STRANGER, Who.ANONYMOUS,
                    Who.IMPORTER, Who.OPERATOR, Who.DEPLOYMENT, Who.CDK_DEPLOY,
                    Who.BREAK_GLASS, Who.PIPELINE, Who.PIPELINE_ACCOUNT})


class Kind(enum.StrEnum):
    """A resource's type: it decides which actions apply (IAM's service reference)."""

    OBJECT = "s3 object"
    BUCKET = "s3 bucket"
    KEY = "kms key"
    SECRET = "secret"  # noqa: S105 - a resource type, not a password
    ROLE = "iam role"
    USER = "iam user"
    TOPIC = "sns topic"
    QUEUE = "sqs queue"
    FUNCTION = "lambda function"
    LOG_GROUP = "log group"
    LOG_STREAM = "log stream"


S3_KINDS = frozenset({Kind.OBJECT, Kind.BUCKET})


class Part(enum.StrEnum):
    """What a resource is for, in one of our stacks."""

    DATA = "data bucket"
    ACCESS_LOGS = "access-log bucket"
    CUSTOMER_KEY = "customer key"
    PARTNER_SECRET = "partner secret"  # noqa: S105 - a resource's role, not a password
    PARTNER_ROLE = "partner role"
    PARTNER_USER = "partner user"
    NOTICES_TOPIC = "notices topic"
    ROTATION_FUNCTION = "rotation function"
    ROTATION_DLQ = "rotation dead-letter queue"
    ROTATION_LOGS = "rotation log group"
    CUSTODY = "custody bucket"
    CUSTODY_ACCESS_LOGS = "custody access-log bucket"
    AUDIT_KEY = "audit key"
    TRAIL_LOGS = "trail log group"
    LOGS_DELIVERY_ROLE = "trail's log delivery role"
    INGESTION_QUEUE = "ingestion queue"
    INGESTION_DLQ = "ingestion dead-letter queue"
    SECURITY_TOPIC = "security topic"
    ACCOUNT_ROLE = "account role"  # deployment, CDK deploy, importer, operator, break-glass
    SCANNER_ROLE = "malware scanner role"
    GATE_TOPIC = "gate notices topic"
    SIGNING_KEY = "receipt signing key"


# Parts whose S3 requests carry the TLS and encryption rules of a bucket.
BUCKET_PARTS = frozenset({Part.DATA, Part.ACCESS_LOGS, Part.CUSTODY, Part.CUSTODY_ACCESS_LOGS})


@dataclass(frozen=True)
class Source:
    """What an AWS service acts on behalf of: its service principal and the kind of our
    resource the request is for (``"trail"``, ``"ingestion rule"``, ...)."""

    service: str
    kind: str
    source_keys: bool = True  # the request carries aws:SourceArn and aws:SourceAccount


@dataclass(frozen=True)
class Principal:
    """Who makes a request.

    ``arn`` is the request's principal (a user, a role session, or a service principal's
    name), None when anonymous; ``principal_arn`` is what ``aws:PrincipalArn`` holds (the role,
    for a session). A service acts on behalf of ``source_arn`` in ``source_account``;
    ``genuine`` says whether that source is our own resource (``serves`` names its owner) or
    somebody else's (the confused-deputy case).
    """

    label: str
    who: Who
    arn: str | None
    principal_arn: str | None
    account: str | None
    policies: tuple[str, ...]  # identity policy ids in the batch
    home_address: str
    partner_of: frozenset[str] = frozenset()
    can_assume: frozenset[str] = frozenset()
    former_partner_of: frozenset[str] = frozenset()
    role_of: str | None = None  # ROTATION, SCANNER: the customer whose role this is
    source: Source | None = None  # SERVICE: its principal and what it acts for
    source_arn: str | None = None
    source_account: str | None = None
    genuine: bool = False
    serves: str | None = None
    session: bool = False  # sts:GetSessionToken credentials (role sessions are by their ARN)

    def bound_to(self, owner: str) -> bool:
        """Whether ``owner``'s resources are this principal's own business (asked in full)."""
        return (owner in self.partner_of or owner in self.can_assume
                or owner in self.former_partner_of or owner == self.role_of
                or owner == self.serves or (self.who is Who.LOGS_DELIVERY and owner == AUDIT))


@dataclass(frozen=True)
class Target:
    """A resource of one stack: a customer's (``owner`` = its slug) or the audit stack's."""

    owner: str
    customer: CustomerConfig | None
    kind: Kind
    part: Part
    arn: str
    label: str
    policy: str | None  # resource policy id in the batch
    key_arn: str  # the key that encrypts it (its own ARN for a key)
    # S3 parts: the bucket; a key: the bucket it encrypts through S3 (its S3 encryption
    # context: the data bucket for a customer key, the custody bucket for the audit key)
    bucket_arn: str = ""
    object_key: str | None = None
    name: str = ""  # account roles: the role's name


@dataclass(frozen=True)
class Operation:
    """An action with the request-specific part of its context (headers, prefix, ...).

    ``via`` is the service a KMS request comes through (``s3``, ``secretsmanager``, ...), or
    None for a direct call; ``sweep`` marks the every-action pass (one context per action).
    """

    action: str
    variant: str
    context: tuple[tuple[str, str | tuple[str, ...]], ...] = ()
    via: str | None = None
    sweep: bool = False

    @property
    def label(self) -> str:
        return f"{self.action} ({self.variant})" if self.variant else self.action

    def get(self, key: str) -> str | None:
        value = dict(self.context).get(key)
        return value if isinstance(value, str) or value is None else ",".join(value)


@dataclass(frozen=True)
class Network:
    """Transport and source address of a request."""

    transport: str  # "HTTP", "TLS 1.1", ...
    tls: float | None
    address: str | None  # None: an AWS service's own network
    address_label: str

    @property
    def label(self) -> str:
        return f"{self.transport} from {self.address_label}"


@dataclass(frozen=True)
class MatrixRequest:
    principal: Principal
    target: Target
    operation: Operation
    network: Network

    @property
    def customer(self) -> CustomerConfig | None:
        return self.target.customer


@dataclass(frozen=True)
class RoleCall:
    """One call a function's role makes: an IAM action on one part of its own stack, with the
    request context AWS supplies: for KMS, the service it comes through (``kms:ViaService``)
    and the encryption context, each key paired with the part whose ARN is its value."""

    action: str
    part: Part
    via: str | None = None
    encryption_context: tuple[tuple[str, Part], ...] = ()
    why: str = ""

