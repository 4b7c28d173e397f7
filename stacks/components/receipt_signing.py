"""The key that signs receipts: asymmetric, in the audit stack, only the importer signs."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from phi_core import account_roles, malware_gate, naming
from stacks.components.stack_facts import facts_of


class ReceiptSigning(Construct):
    """Creates the receipt signing key: ``ECC_NIST_P256``, ``SIGN_VERIFY``, alias
    ``alias/phi-exchange/receipts``, RETAIN (a receipt stays verifiable as long as its public
    key is known; the onboarding kit carries it). Its policy lets only the importer role sign,
    nobody encrypt or decrypt, and only break-glass retire it or change its policy
    (:func:`phi_core.malware_gate.signing_key_denies`); ``kms:Verify`` and
    ``kms:GetPublicKey`` are left to IAM (the public key is public by design). Asymmetric keys
    do not rotate automatically (AWS KMS: automatic rotation is for symmetric keys): a new key
    is a new alias target and a new public key in the kits."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        stack = facts_of(self)
        self.key = kms.Key(
            self, "SigningKey",
            alias=naming.RECEIPT_SIGNING_KEY_ALIAS,
            description="Signs the receipts of files received from partners (importer only)",
            key_spec=kms.KeySpec.ECC_NIST_P256,
            key_usage=kms.KeyUsage.SIGN_VERIFY,
            removal_policy=RemovalPolicy.RETAIN,
        )
        roles = account_roles.Roles(account=stack.account, partition=stack.partition)
        for statement in malware_gate.signing_key_denies(roles):
            self.key.add_to_resource_policy(iam.PolicyStatement.from_json(statement))
        # CloudFormation creates the key as the deployment role, which the policy denies
        # PutKeyPolicy: KMS refuses such a policy unless its lockout safety check is bypassed.
        # The key stays manageable by break-glass (tests/security/test_access_matrix.py).
        cfn_key = self.key.node.default_child
        assert isinstance(cfn_key, kms.CfnKey)
        cfn_key.bypass_policy_lockout_safety_check = True
