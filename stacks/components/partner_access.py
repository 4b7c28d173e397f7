"""How a partner reaches its bucket: one of three access modes, always scoped to its prefixes."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, SecretValue, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks import naming
from stacks.config import ACCOUNT_ID_PATTERN, AccessMode, CustomerConfig, Direction

MAX_ROLE_SESSION = Duration.hours(1)


@dataclass(frozen=True)
class PartnerScope:
    """What a partner may touch: one bucket's prefixes, one key, only through S3."""

    bucket_arn: str
    key_arn: str
    directions: tuple[Direction, ...]
    s3_service: str  # "s3.<region>.<url suffix>", the only service allowed to use the key

    def statements(self) -> list[iam.PolicyStatement]:
        """The partner's allow statements, without principals (identity-policy form).

        Inbound is write-only: a leaked partner key must not expose earlier uploads, so the
        partner cannot read back, overwrite-by-copy or delete what it sent. Outbound is
        read-only. Listing is limited to the partner's prefixes, plus the bucket's top level
        with "/" as delimiter so desktop clients can open the bucket and see the folders.
        """
        statements = []
        prefixes = [d.prefix for d in self.directions]
        if Direction.INBOUND in self.directions:
            statements.append(iam.PolicyStatement(
                sid="WriteInbound",
                actions=["s3:PutObject", "s3:AbortMultipartUpload",
                         "s3:ListMultipartUploadParts"],
                resources=[f"{self.bucket_arn}/{naming.INBOUND_PREFIX}*"],
            ))
        if Direction.OUTBOUND in self.directions:
            statements.append(iam.PolicyStatement(
                sid="ReadOutbound",
                actions=["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes",
                         "s3:GetObjectVersionAttributes"],
                resources=[f"{self.bucket_arn}/{naming.OUTBOUND_PREFIX}*"],
            ))
        statements.append(iam.PolicyStatement(
            sid="ListOwnPrefixes",
            actions=["s3:ListBucket"],
            resources=[self.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
        ))
        statements.append(iam.PolicyStatement(
            # Desktop clients (Cyberduck, WinSCP) ask for the bucket's region first; it reveals
            # nothing else.
            sid="FindBucketRegion",
            actions=["s3:GetBucketLocation"],
            resources=[self.bucket_arn],
        ))
        statements.append(iam.PolicyStatement(
            sid="ListTopLevelFolders",
            actions=["s3:ListBucket"],
            resources=[self.bucket_arn],
            conditions={
                "StringEquals": {"s3:delimiter": "/"},
                "StringEqualsIfExists": {"s3:prefix": ""},
            },
        ))
        statements.append(iam.PolicyStatement(
            sid="UseKeyThroughS3",
            actions=self.key_actions(),
            resources=[self.key_arn],
            conditions=self.key_conditions(),
        ))
        return statements

    def key_actions(self) -> list[str]:
        # Uploads (multipart included) need GenerateDataKey and Decrypt; downloads Decrypt.
        if Direction.INBOUND in self.directions:
            return ["kms:Decrypt", "kms:GenerateDataKey"]
        return ["kms:Decrypt"]

    def key_conditions(self) -> dict:
        return {
            "StringEquals": {"kms:ViaService": self.s3_service},
            # With S3 Bucket Keys the encryption context is the bucket ARN; without, the object's.
            "StringLike": {"kms:EncryptionContext:aws:s3:arn": [self.bucket_arn,
                                                                 f"{self.bucket_arn}/*"]},
        }


def partner_principal_patterns(stack: Stack, customer: CustomerConfig) -> list[str]:
    """ARN patterns matching every principal of ``customer``'s partner (an account id matches
    every principal of that account). Built from deterministic names, not resource attributes,
    so key and bucket policies never depend on (or wait for) the IAM resources."""
    slug = customer.slug
    if customer.access is AccessMode.IAM_USER:
        return [stack.format_arn(service="iam", region="", resource="user",
                                 resource_name=naming.partner_user_name(slug))]
    if customer.access is AccessMode.ASSUME_ROLE:
        return [stack.format_arn(service="iam", region="", resource="role",
                                 resource_name=naming.partner_role_name(slug))]
    return [
        f"arn:{stack.partition}:iam::{p}:*" if ACCOUNT_ID_PATTERN.match(p) else p
        for p in customer.partner_principals
    ]


def deny_partner(
    bucket: s3.Bucket, bucket_arn: str, key: kms.Key, customer: CustomerConfig
) -> None:
    """An offboarded partner: every S3 action on the bucket and every use of the key denied to
    its principals, whatever any other statement allows."""
    partner = {"ArnLike": {
        "aws:PrincipalArn": partner_principal_patterns(Stack.of(bucket), customer)}}
    bucket.add_to_resource_policy(iam.PolicyStatement(
        sid="OffboardedPartnerDeny",
        effect=iam.Effect.DENY,
        principals=[iam.AnyPrincipal()],
        actions=["s3:*"],
        resources=[bucket_arn, f"{bucket_arn}/*"],
        conditions=partner,
    ))
    key.add_to_resource_policy(iam.PolicyStatement(
        sid="OffboardedPartnerKeyDeny",
        effect=iam.Effect.DENY,
        principals=[iam.AnyPrincipal()],
        actions=["kms:*"],
        resources=["*"],
        conditions=partner,
    ))


class PartnerAccess(Construct):
    """Creates the partner's way in, by access mode, and the controls common to all modes.

    - ``iam-user``: an IAM user in a group with one managed policy (never inline), and an access
      key stored in a Secrets Manager secret encrypted with the customer's key. ``secret`` and
      ``user_name`` are set.
    - ``cross-account``: the partner's own principals are granted in the bucket policy and the
      key policy; nothing is created in IAM.
    - ``assume-role``: a role whose trust policy admits the partner's principals only with the
      registry's ``sts:ExternalId``; sessions last at most one hour. ``role`` is set.

    In every mode: the partner may use the key only through S3 (an explicit key-policy deny),
    and, when ``allowed_source_ips`` is set, any partner request from another address is denied
    by the bucket policy. Partner principals are matched with ``aws:PrincipalArn`` conditions,
    never ``NotPrincipal``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        customer: CustomerConfig,
        bucket: s3.Bucket,
        bucket_arn: str,
        key: kms.Key,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._customer = customer
        self._bucket = bucket
        self._key = key
        self.scope_ = PartnerScope(
            bucket_arn=bucket_arn,
            key_arn=key.key_arn,
            directions=customer.directions,
            s3_service=f"s3.{stack.region}.{stack.url_suffix}",
        )
        self.secret: secretsmanager.Secret | None = None
        self.user_name: str | None = None
        self.role: iam.Role | None = None

        if customer.access is AccessMode.IAM_USER:
            self._iam_user()
        elif customer.access is AccessMode.ASSUME_ROLE:
            self._assume_role()
        else:
            self._cross_account_grants()
        self._deny_key_use_outside_s3()
        if customer.allowed_source_ips:
            self._deny_other_source_ips()

    # --- principals -------------------------------------------------------------------------

    @property
    def principal_arn_patterns(self) -> list[str]:
        """ARN patterns matching every partner principal, for ``aws:PrincipalArn`` conditions."""
        return partner_principal_patterns(Stack.of(self), self._customer)

    def _external_principals(self) -> list[iam.IPrincipal]:
        return [
            iam.AccountPrincipal(p) if ACCOUNT_ID_PATTERN.match(p) else iam.ArnPrincipal(p)
            for p in self._customer.partner_principals
        ]

    # --- modes ------------------------------------------------------------------------------

    def _managed_policy(self) -> iam.ManagedPolicy:
        return iam.ManagedPolicy(
            self,
            "PartnerPolicy",
            managed_policy_name=naming.partner_policy_name(self._customer.slug),
            description=f"Partner {self._customer.slug}: its prefixes on its bucket, its key "
            "through S3 only",
            statements=self.scope_.statements(),
        )

    def _iam_user(self) -> None:
        slug = self._customer.slug
        group = iam.Group(self, "PartnerGroup", group_name=naming.partner_group_name(slug))
        group.add_managed_policy(self._managed_policy())
        user = iam.User(self, "PartnerUser", user_name=naming.partner_user_name(slug),
                        groups=[group])
        access_key = iam.AccessKey(self, "PartnerAccessKey", user=user)
        stack = Stack.of(self)
        # The secret's structure is the contract with the rotation function and the transfer
        # client (docs/rotation.md). Every value here is fixed for the life of the stack, so
        # the template's SecretString never changes and CloudFormation never writes the
        # initial key back over a rotated one. (Prefixes, which follow the registry's
        # directions, therefore live in the stack outputs and the client profile instead.)
        self.secret = secretsmanager.Secret(
            self,
            "PartnerSecret",
            secret_name=naming.partner_secret_name(slug),
            description=f"Access key of partner {slug} and what it needs to connect",
            encryption_key=self._key,
            secret_object_value={
                "user_name": SecretValue.unsafe_plain_text(user.user_name),
                "access_key_id": SecretValue.unsafe_plain_text(access_key.access_key_id),
                "secret_access_key": access_key.secret_access_key,
                "bucket": SecretValue.unsafe_plain_text(self._bucket.bucket_name),
                "region": SecretValue.unsafe_plain_text(stack.region),
                "bucket_owner": SecretValue.unsafe_plain_text(stack.account),
                "kms_key_arn": SecretValue.unsafe_plain_text(self._key.key_arn),
            },
        )
        self.user_name = naming.partner_user_name(slug)

    def _assume_role(self) -> None:
        assert self._customer.external_id is not None  # guaranteed by config validation
        self.role = iam.Role(
            self,
            "PartnerRole",
            role_name=naming.partner_role_name(self._customer.slug),
            description=f"Assumed by partner {self._customer.slug} with its external id",
            assumed_by=iam.CompositePrincipal(*self._external_principals()),
            external_ids=[self._customer.external_id],
            max_session_duration=MAX_ROLE_SESSION,
            managed_policies=[self._managed_policy()],
        )

    def _cross_account_grants(self) -> None:
        principals = self._external_principals()
        for statement in self.scope_.statements():
            if statement.sid == "UseKeyThroughS3":
                continue  # granted in the key policy below
            statement.add_principals(*principals)
            statement.sid = f"Partner{statement.sid}"
            self._bucket.add_to_resource_policy(statement)
        self._key.add_to_resource_policy(iam.PolicyStatement(
            sid="PartnerUseKeyThroughS3",
            principals=principals,
            actions=self.scope_.key_actions(),
            resources=["*"],
            conditions=self.scope_.key_conditions(),
        ))

    # --- controls for every mode ------------------------------------------------------------

    def _deny_key_use_outside_s3(self) -> None:
        self._key.add_to_resource_policy(iam.PolicyStatement(
            sid="DenyPartnerKeyUseOutsideS3",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["kms:*"],
            resources=["*"],
            conditions={
                "ArnLike": {"aws:PrincipalArn": self.principal_arn_patterns},
                "StringNotEquals": {"kms:ViaService": self.scope_.s3_service},
            },
        ))

    def _deny_other_source_ips(self) -> None:
        self._bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="DenyPartnerFromOtherSourceIps",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["s3:*"],
            resources=[self.scope_.bucket_arn, f"{self.scope_.bucket_arn}/*"],
            conditions={
                "ArnLike": {"aws:PrincipalArn": self.principal_arn_patterns},
                "NotIpAddress": {"aws:SourceIp": list(self._customer.allowed_source_ips)},
            },
        ))

