"""The operator's policy on object keys the access matrix does not hold, and its one KMS
statement that names a key by alias.

IAM's ``*`` in a resource ARN matches ``/`` as well, so a pattern meant for one kind of bucket
(``phi-*/outbound/*``, ``phi-*-logs-<account>-<region>/*``) also matches an object of a data
bucket whose key a partner chose to look like it: ``inbound/x/outbound/y``,
``inbound/x-logs-<account>-<region>/y``. The operator's explicit deny on ``inbound/`` keeps
such an object's bytes from it; these probes evaluate the real statements
(``phi_core.account_roles.operator_statements``) with and without that deny.
"""

from __future__ import annotations

from typing import Any

import pytest

from phi_core import account_roles, naming
from security import evaluator
from security.evaluator import Request

ACCOUNT = "123456789012"
REGION = "us-east-1"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/{naming.OPERATOR_ROLE_NAME}/operator"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/{naming.OPERATOR_ROLE_NAME}"
DATA = f"arn:aws:s3:::{naming.data_bucket_name('acme', ACCOUNT, REGION)}"
LOGS = f"arn:aws:s3:::{naming.log_bucket_name('acme', ACCOUNT, REGION)}"
CUSTODY = f"arn:aws:s3:::{naming.AUDIT_BUCKET_NAME_PREFIX}audittrailcustodybucket-1a2b3c4d5e6f"
LOOKS_LIKE_A_LOG = f"inbound/x-logs-{ACCOUNT}-{REGION}/data-bucket/2026-11-28-06-17-00-0A1B"


def _statements(*, deny: bool) -> dict[str, Any]:
    statements = account_roles.operator_statements(partition="aws", region=REGION,
                                                   account=ACCOUNT, url_suffix="amazonaws.com")
    if not deny:
        statements = [s for s in statements if s["Sid"] != "NeverReadInboundBytes"]
    return {"Version": "2012-10-17", "Statement": statements}


def _decisions(action: str, resources: list[str], *, deny: bool) -> list[str]:
    batch = evaluator.Batch(policies={"operator": _statements(deny=deny)}, requests=[
        Request(principal=SESSION, action=action, resource=resource, resource_account=ACCOUNT,
                context={"aws:PrincipalArn": ROLE, "aws:PrincipalAccount": ACCOUNT,
                         "aws:SecureTransport": "true", "aws:PrincipalIsAWSService": "false"},
                identity_policies=("operator",))
        for resource in resources])
    return [d.decision for d in evaluator.evaluate(batch, workers=1)]


PARTNER_CHOSEN = [f"{DATA}/inbound/x/outbound/claims.csv", f"{DATA}/{LOOKS_LIKE_A_LOG}"]
EVIDENCE = [f"{DATA}/outbound/remittance.csv",
            f"{LOGS}/data-bucket/2026-11-28-06-17-00-0123456789ABCDEF",
            f"{CUSTODY}/AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11/28/file.json.gz"]


@pytest.mark.parametrize("action", ["s3:GetObject", "s3:GetObjectVersion"])
def test_a_partner_chosen_inbound_key_is_never_read_by_the_operator(action: str):
    assert _decisions(action, PARTNER_CHOSEN, deny=True) == ["ExplicitlyDenied"] * 2
    # Without the deny, the patterns would reach them: the deny is what stops it.
    without = _decisions(action, PARTNER_CHOSEN, deny=False)
    assert without[0] == "Allowed"  # phi-*/outbound/* (both actions)
    assert without[1] == ("Allowed" if action == "s3:GetObject" else "ImplicitlyDenied")


def test_the_deny_leaves_outbound_files_access_logs_and_the_trails_evidence_readable():
    assert _decisions("s3:GetObject", EVIDENCE, deny=True) == ["Allowed"] * 3


RECEIPT_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.mark.parametrize(("action", "alias", "decision"), [
    ("kms:GetPublicKey", naming.RECEIPT_SIGNING_KEY_ALIAS, "Allowed"),
    ("kms:GetPublicKey", None, "ImplicitlyDenied"),  # by key id or ARN
    ("kms:GetPublicKey", "alias/phi-exchange/other", "ImplicitlyDenied"),
    ("kms:Sign", naming.RECEIPT_SIGNING_KEY_ALIAS, "ImplicitlyDenied"),
    ("kms:Verify", naming.RECEIPT_SIGNING_KEY_ALIAS, "ImplicitlyDenied"),
])
def test_the_operator_reads_the_receipt_keys_public_half_by_its_alias_only(
        action: str, alias: str | None, decision: str):
    """Onboarding puts the receipt key's public half in the kit (GetPublicKey by the alias);
    the statement grants nothing else of any key."""
    context: dict[str, str | list[str]] = {
        "aws:PrincipalArn": ROLE, "aws:PrincipalAccount": ACCOUNT,
        "aws:SecureTransport": "true", "aws:PrincipalIsAWSService": "false"}
    if alias is not None:
        context["kms:RequestAlias"] = alias
    # The key policy delegates to IAM, as CDK's default statement does (the receipt key's own
    # denies concern Sign, encryption and retirement: phi_core.malware_gate).
    key_policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "EnableIamPolicies", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
         "Resource": "*"}]}
    batch = evaluator.Batch(
        policies={"operator": _statements(deny=True), "key": key_policy}, requests=[
            Request(principal=SESSION, action=action, resource=RECEIPT_KEY,
                    resource_account=ACCOUNT, context=context, identity_policies=("operator",),
                    resource_policy="key")])
    assert [d.decision for d in evaluator.evaluate(batch, workers=1)] == [decision]
