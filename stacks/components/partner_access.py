"""How a partner reaches its bucket: one of three access modes, always scoped to its prefixes."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Duration, SecretValue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rolesanywhere as rolesanywhere
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct, IConstruct

from phi_core import account_roles, defaults, identifiers, naming, partner_policy
from phi_core import secret as secret_schema
from phi_core.partner_policy import PartnerScope
from stacks.components.stack_facts import facts_of
from stacks.config import AccessMode, CustomerConfig

MAX_ROLE_SESSION = Duration.hours(1)


def statements(documents: Iterable[dict]) -> list[iam.PolicyStatement]:
    """The core's plain statements as CDK statements (tokens inside resolve at synth)."""
    return [iam.PolicyStatement.from_json(document) for document in documents]


def partner_principal_patterns(scope: IConstruct, customer: CustomerConfig) -> list[str]:
    """ARN patterns matching every principal of ``customer``'s partner, in the stack of
    ``scope`` (see the core)."""
    here = facts_of(scope)
    return partner_policy.partner_principal_patterns(
        access=customer.access, slug=customer.slug,
        partner_principals=customer.partner_principals, account=here.account,
        partition=here.partition)


def deny_partner(
    bucket: s3.Bucket, bucket_arn: str, key: kms.Key, customer: CustomerConfig
) -> None:
    """An offboarded partner: every S3 action on the bucket and every use of the key denied to
    its principals, whatever any other statement allows."""
    bucket_deny, key_deny = statements(partner_policy.offboarded_partner_denies(
        bucket_arn, partner_principal_patterns(bucket, customer)))
    bucket.add_to_resource_policy(bucket_deny)
    key.add_to_resource_policy(key_deny)


class PartnerAccess(Construct):
    """Creates the partner's way in, by access mode, and the controls common to all modes.

    - ``iam-user``: an IAM user in a group with one managed policy (never inline), and an access
      key stored in a Secrets Manager secret encrypted with the customer's key. ``secret`` and
      ``user_name`` are set.
    - ``cross-account``: the partner's own principals are granted in the bucket policy and the
      key policy; nothing is created in IAM.
    - ``assume-role``: a role whose trust policy admits the partner's principals only with the
      registry's ``sts:ExternalId``; sessions last at most one hour. ``role`` is set.
    - ``roles-anywhere``: a trust anchor holding the partner's CA, a profile handing out one
      role for at most one hour, and that role, whose trust policy admits IAM Roles Anywhere
      only for this trust anchor and certificates with the registered subject. ``role``,
      ``trust_anchor`` and ``profile`` are set.

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
        stack = facts_of(self)
        self._customer = customer
        self._bucket = bucket
        self._key = key
        self.partner_scope = PartnerScope(
            bucket_arn=bucket_arn,
            key_arn=key.key_arn,
            directions=customer.directions,
            s3_service=f"s3.{stack.region}.{stack.url_suffix}",
        )
        self.secret: secretsmanager.Secret | None = None
        self.user_name: str | None = None
        self.role: iam.Role | None = None
        self.trust_anchor: rolesanywhere.CfnTrustAnchor | None = None
        self.profile: rolesanywhere.CfnProfile | None = None

        if customer.access is AccessMode.IAM_USER:
            self._iam_user()
        elif customer.access is AccessMode.ASSUME_ROLE:
            self._assume_role()
        elif customer.access is AccessMode.ROLES_ANYWHERE:
            self._roles_anywhere()
        else:
            self._cross_account_grants()
        self._deny_key_use_outside_s3()
        if customer.allowed_source_ips:
            self._deny_other_source_ips()

    # --- principals -------------------------------------------------------------------------

    @property
    def principal_arn_patterns(self) -> list[str]:
        """ARN patterns matching every partner principal, for ``aws:PrincipalArn`` conditions."""
        return partner_principal_patterns(self, self._customer)

    def _external_principals(self) -> list[iam.IPrincipal]:
        return [
            iam.AccountPrincipal(p) if identifiers.is_account_id(p) else iam.ArnPrincipal(p)
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
            statements=statements([
                *partner_policy.partner_statements(self.partner_scope),
                *([partner_policy.session_credentials_deny()]
                  if self._customer.access is AccessMode.IAM_USER else [])]),
        )

    def _iam_user(self) -> None:
        slug = self._customer.slug
        group = iam.Group(self, "PartnerGroup", group_name=naming.partner_group_name(slug))
        group.add_managed_policy(self._managed_policy())
        user = iam.User(self, "PartnerUser", user_name=naming.partner_user_name(slug),
                        groups=[group])
        access_key = iam.AccessKey(self, "PartnerAccessKey", user=user)
        stack = facts_of(self)
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
                name: value if isinstance(value, SecretValue)
                else SecretValue.unsafe_plain_text(value)
                for name, value in secret_schema.initial_secret(
                    user_name=user.user_name, access_key_id=access_key.access_key_id,
                    secret_access_key=access_key.secret_access_key,
                    bucket=self._bucket.bucket_name, region=stack.region,
                    bucket_owner=stack.account, kms_key_arn=self._key.key_arn).items()
            },
        )
        # Its value: the rotation function, the operator's hand-over and break-glass only.
        self.secret.add_to_resource_policy(iam.PolicyStatement.from_json(
            account_roles.secret_value_deny(
                account_roles.Roles(account=stack.account, partition=stack.partition),
                slug=slug)))
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

    def _roles_anywhere(self) -> None:
        settings = self._customer.roles_anywhere
        assert settings is not None  # guaranteed by config validation
        slug = self._customer.slug
        notice = rolesanywhere.CfnTrustAnchor.NotificationSettingProperty
        self.trust_anchor = rolesanywhere.CfnTrustAnchor(
            self, "TrustAnchor",
            name=naming.trust_anchor_name(slug),
            enabled=True,
            source=rolesanywhere.CfnTrustAnchor.SourceProperty(
                source_type="CERTIFICATE_BUNDLE",
                source_data=rolesanywhere.CfnTrustAnchor.SourceDataProperty(
                    x509_certificate_data=settings.ca_bundle)),
            notification_settings=[
                notice(enabled=True, event="CA_CERTIFICATE_EXPIRY", channel="ALL",
                       threshold=defaults.CA_EXPIRY_NOTICE_DAYS),
                notice(enabled=True, event="END_ENTITY_CERTIFICATE_EXPIRY", channel="ALL",
                       threshold=defaults.CERTIFICATE_EXPIRY_NOTICE_DAYS)],
        )
        self.role = iam.Role(
            self,
            "PartnerRole",
            role_name=naming.partner_role_name(slug),
            description=f"Issued by IAM Roles Anywhere to partner {slug}'s certificates",
            assumed_by=iam.ServicePrincipal(partner_policy.ROLES_ANYWHERE_SERVICE),
            max_session_duration=MAX_ROLE_SESSION,
            managed_policies=[self._managed_policy()],
        )
        # The trust policy is the core's (the tests and the docs read the same function): the
        # Role construct cannot express conditions on one statement holding the three actions
        # IAM Roles Anywhere asks for, so its document replaces the construct's.
        role_resource = self.role.node.default_child
        assert isinstance(role_resource, iam.CfnRole)
        role_resource.add_property_override(
            "AssumeRolePolicyDocument", partner_policy.roles_anywhere_trust(
                self.trust_anchor.attr_trust_anchor_arn, settings.subject))
        self.profile = rolesanywhere.CfnProfile(
            self, "Profile",
            name=naming.roles_anywhere_profile_name(slug),
            enabled=True,
            role_arns=[self.role.role_arn],
            duration_seconds=int(MAX_ROLE_SESSION.to_seconds()),
        )

    def _cross_account_grants(self) -> None:
        bucket_grants, key_grant = partner_policy.cross_account_grants(
            self.partner_scope, partner_policy.principal_entries(
                self._customer.partner_principals, partition=facts_of(self).partition))
        for statement in statements(bucket_grants):
            self._bucket.add_to_resource_policy(statement)
        self._key.add_to_resource_policy(iam.PolicyStatement.from_json(key_grant))

    # --- controls for every mode ------------------------------------------------------------

    def _deny_key_use_outside_s3(self) -> None:
        self._key.add_to_resource_policy(iam.PolicyStatement.from_json(
            partner_policy.key_use_outside_s3_deny(self.principal_arn_patterns,
                                                   self.partner_scope.s3_service)))

    def _deny_other_source_ips(self) -> None:
        self._bucket.add_to_resource_policy(iam.PolicyStatement.from_json(
            partner_policy.other_source_ips_deny(self.partner_scope.bucket_arn,
                                                 self.principal_arn_patterns,
                                                 self._customer.allowed_source_ips)))
