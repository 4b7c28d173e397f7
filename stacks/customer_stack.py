"""One customer's stack: storage, partner access, (rotation), outputs. Wiring only."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from aws_cdk import aws_iam as iam
from constructs import Construct

from phi_core import account_roles, naming
from phi_core import outputs as stack_outputs
from stacks import compliance, policy_limits
from stacks.components.certificate_notices import CertificateNotices
from stacks.components.encrypted_storage import EncryptedStorage
from stacks.components.ingestion_handoff import IngestionHandoff
from stacks.components.key_rotation import KeyRotation
from stacks.components.malware_gate import MalwareGate, guard_scan_tag
from stacks.components.partner_access import PartnerAccess, deny_partner, partner_principal_patterns
from stacks.components.stack_facts import facts_of
from stacks.config import CustomerConfig, Direction, RegistryError


class CustomerStack(Stack):
    """Everything one partner needs, deployed as CloudFormation stack ``PhiExchange-<slug>``.

    The construct id is ``CustomerStack`` for every customer; the customer's identity is in the
    stack name, resource names and tags, never in construct ids, so logical ids are the same
    for every customer and never change.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, customer: CustomerConfig, **kwargs: Any
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=naming.stack_name(customer.slug),
            description=_description(customer),
            **kwargs,
        )
        slug = customer.slug
        here = facts_of(self)
        storage = EncryptedStorage(
            self,
            "Storage",
            key_alias=naming.key_alias(slug),
            data_bucket_name=naming.data_bucket_name(slug, here.account, here.region),
            log_bucket_name=naming.log_bucket_name(slug, here.account, here.region),
            retention=customer.retention,
        )
        access, rotation = None, None
        self.malware_gate: MalwareGate | None = None
        if customer.offboarded:
            # Registry says offboarded: the data, key and logs stay; every way in goes, and an
            # explicit deny covers whatever the partner may still hold (docs/offboarding.md).
            deny_partner(storage.bucket, storage.bucket_arn, storage.key, customer)
        else:
            access, rotation = self._partner_side(customer, storage)
        # Every bucket, scanned or not, inbound or not, offboarded or not: the scan tag never
        # means anything but GuardDuty's verdict (docs/security.md, T12).
        guard_scan_tag(storage.bucket, storage.bucket_arn, slug=slug, scanned=customer.scanned)
        self._only_named_principals_use_the_key(customer, storage)
        compliance.acknowledge_customer_stack(
            self, storage=storage, access=access, rotation=rotation, gate=self.malware_gate
        )
        Tags.of(self).add("phi-exchange:customer", slug)
        Tags.of(self).add("phi-exchange:data-classification", "phi")
        self._outputs(customer, storage, access)
        oversize = policy_limits.oversize_problems(self, customer)
        if oversize:
            raise RegistryError(oversize)

    def _partner_side(
        self, customer: CustomerConfig, storage: EncryptedStorage
    ) -> tuple[PartnerAccess, KeyRotation | None]:
        """The partner's way in, its key rotation (iam-user) and the importer handoff."""
        access = PartnerAccess(
            self,
            "PartnerAccess",
            customer=customer,
            bucket=storage.bucket,
            bucket_arn=storage.bucket_arn,
            key=storage.key,
        )
        rotation = None
        if customer.rotation is not None:
            assert access.secret is not None and access.user_name is not None
            rotation = KeyRotation(
                self,
                "KeyRotation",
                slug=customer.slug,
                rotation=customer.rotation,
                contacts=customer.contacts,
                secret=access.secret,
                user_name=access.user_name,
                key=storage.key,
            )
        if access.trust_anchor is not None:
            CertificateNotices(
                self, "CertificateNotices", slug=customer.slug, contacts=customer.contacts,
                trust_anchor_arn=access.trust_anchor.attr_trust_anchor_arn, key=storage.key)
        if customer.allows(Direction.INBOUND):
            IngestionHandoff(
                self, "IngestionHandoff", slug=customer.slug,
                bucket_name=storage.bucket.bucket_name, scanned=customer.scanned,
            )
            self._malware_gate(customer, storage)
        return access, rotation

    def _malware_gate(self, customer: CustomerConfig, storage: EncryptedStorage) -> None:
        """GuardDuty scanning inbound/ unless the registry opted the customer out, with its
        reason (docs/security.md, T12)."""
        if customer.scanned:
            self.malware_gate = MalwareGate(
                self, "MalwareGate", slug=customer.slug,
                bucket_name=storage.bucket.bucket_name, bucket_arn=storage.bucket_arn,
                key=storage.key, contacts=customer.contacts)

    def _only_named_principals_use_the_key(
        self, customer: CustomerConfig, storage: EncryptedStorage
    ) -> None:
        """Whatever IAM grants an insider, only the partner, the importer, the operator, this
        customer's rotation function, the deployment role and break-glass obtain plaintext."""
        here = facts_of(self)
        roles = account_roles.Roles(account=here.account, partition=here.partition)
        patterns = [] if customer.offboarded else partner_principal_patterns(self, customer)
        for statement in account_roles.customer_key_crypto_denies(
                roles, slug=customer.slug, partner_patterns=patterns, region=here.region,
                url_suffix=here.url_suffix, scanned=customer.scanned):
            storage.key.add_to_resource_policy(iam.PolicyStatement.from_json(statement))

    def _outputs(
        self, customer: CustomerConfig, storage: EncryptedStorage, access: PartnerAccess | None
    ) -> None:
        """What a client needs to connect: the core's output schema (the client's profile,
        the onboarding kit and the operator CLI read it with the same module)."""
        outputs = stack_outputs.customer_outputs(
            slug=customer.slug, access=customer.access,
            bucket_name=storage.bucket.bucket_name, region=facts_of(self).region,
            account=facts_of(self).account,
            key_arn=storage.key.key_arn, directions=customer.directions,
            offboarded=access is None,
            secret_arn=access.secret.secret_arn if access and access.secret else None,
            user_name=access.user_name if access else None,
            role_arn=access.role.role_arn if access and access.role else None,
            external_id=customer.external_id,
            trust_anchor_arn=(access.trust_anchor.attr_trust_anchor_arn
                              if access and access.trust_anchor else None),
            profile_arn=access.profile.attr_profile_arn if access and access.profile else None)
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)


def _description(customer: CustomerConfig) -> str:
    """The stack's description; an opt-out of the malware gate is stated with its reason
    wherever the stack is listed (CloudFormation allows 1,024 characters; the reason is at
    most 500)."""
    text = f"PHI partner exchange for {customer.slug} ({customer.access.value})"
    if customer.allows(Direction.INBOUND) and not customer.offboarded \
            and not customer.malware_scan.enabled:
        text += f"; malware gate opted out: {customer.malware_scan.reason}"
    return text
