"""One customer's stack: storage, partner access, (rotation), outputs. Wiring only."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from stacks import compliance, naming, policy_limits
from stacks.components.encrypted_storage import EncryptedStorage
from stacks.components.ingestion_handoff import IngestionHandoff
from stacks.components.key_rotation import KeyRotation
from stacks.components.partner_access import PartnerAccess
from stacks.config import AccessMode, CustomerConfig, Direction, RegistryError


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
            description=f"PHI partner exchange for {customer.slug} ({customer.access.value})",
            **kwargs,
        )
        slug = customer.slug
        storage = EncryptedStorage(
            self,
            "Storage",
            key_alias=naming.key_alias(slug),
            data_bucket_name=naming.data_bucket_name(slug, self.account, self.region),
            log_bucket_name=naming.log_bucket_name(slug, self.account, self.region),
            retention=customer.retention,
        )
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
                slug=slug,
                rotation=customer.rotation,
                contacts=customer.contacts,
                secret=access.secret,
                user_name=access.user_name,
                key=storage.key,
            )
        if customer.allows(Direction.INBOUND):
            IngestionHandoff(
                self, "IngestionHandoff", slug=slug, bucket_name=storage.bucket.bucket_name
            )
        compliance.acknowledge_customer_stack(
            self, storage=storage, access=access, rotation=rotation
        )
        Tags.of(self).add("phi-exchange:customer", slug)
        Tags.of(self).add("phi-exchange:data-classification", "phi")
        self._outputs(customer, storage, access)
        oversize = policy_limits.oversize_problems(self, customer)
        if oversize:
            raise RegistryError(oversize)

    def _outputs(
        self, customer: CustomerConfig, storage: EncryptedStorage, access: PartnerAccess
    ) -> None:
        """What a client needs to connect (the transfer client's profile reads these keys)."""
        outputs: dict[str, str] = {
            "CustomerSlug": customer.slug,
            "AccessMode": customer.access.value,
            "BucketName": storage.bucket.bucket_name,
            "BucketRegion": self.region,
            "BucketOwnerAccount": self.account,
            "KmsKeyArn": storage.key.key_arn,
        }
        if customer.allows(Direction.INBOUND):
            outputs["InboundPrefix"] = naming.INBOUND_PREFIX
        if customer.allows(Direction.OUTBOUND):
            outputs["OutboundPrefix"] = naming.OUTBOUND_PREFIX
        if customer.access is AccessMode.IAM_USER:
            assert access.secret is not None and access.user_name is not None
            outputs["PartnerSecretArn"] = access.secret.secret_arn
            outputs["PartnerUserName"] = access.user_name
        elif customer.access is AccessMode.ASSUME_ROLE:
            assert access.role is not None and customer.external_id is not None
            outputs["PartnerRoleArn"] = access.role.role_arn
            outputs["ExternalId"] = customer.external_id
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
