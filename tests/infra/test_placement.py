"""Placement and quotas at synth: the footprints the quota count uses are what the stacks
create, an accounts file places each customer stack in its account and region, and a placement
over a quota (or a customer that cannot be placed) stops synth with one line naming the
account, the quota and the count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from phi_core import placement
from stacks.app_builder import build_app
from stacks.config import CustomerConfig, parse_customer
from tests.infra.conftest import CDK_CONTEXT, REPO

# Each resource type a quota counts, and the quota.
QUOTA_OF_TYPE = {
    "AWS::IAM::Group": "iam_groups",
    "AWS::IAM::User": "iam_users",
    "AWS::IAM::Role": "iam_roles",
    "AWS::IAM::ManagedPolicy": "iam_managed_policies",
    "AWS::S3::Bucket": "s3_buckets",
    "AWS::Events::Rule": "eventbridge_rules",
    "AWS::GuardDuty::MalwareProtectionPlan": "guardduty_protected_buckets",
    "AWS::KMS::Key": "kms_keys",
    "AWS::SNS::Topic": "sns_topics",
    "AWS::SecretsManager::Secret": "secrets",
    "AWS::RolesAnywhere::TrustAnchor": "rolesanywhere_trust_anchors",
    "AWS::RolesAnywhere::Profile": "rolesanywhere_profiles",
}


def used_by(template: dict[str, Any]) -> dict[str, int]:
    """What a synthesized template uses of each quota, read from its resources."""
    use: Counter[str] = Counter(cloudformation_stacks=1)
    for resource in template["Resources"].values():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind in QUOTA_OF_TYPE:
            use[QUOTA_OF_TYPE[kind]] += 1
        if kind == "AWS::GuardDuty::MalwareProtectionPlan":
            use["eventbridge_rules"] += 1  # GuardDuty's own managed rule for the plan
        if kind == "AWS::Lambda::Function":
            use["lambda_concurrency"] += props.get("ReservedConcurrentExecutions", 0)
    return {k: v for k, v in use.items() if v}


def test_every_customer_footprint_is_what_its_stack_creates(
    customers: dict[str, CustomerConfig], stack_artifacts: dict[str, Any]
) -> None:
    # The test customers cover every access mode, both directions, scanned and opted out,
    # and offboarded.
    for slug, customer in customers.items():
        assert customer.placed.footprint == used_by(stack_artifacts[slug].template), slug


def test_the_account_stacks_footprints_are_what_they_create(
    stack_artifacts: dict[str, Any],
) -> None:
    assert used_by(stack_artifacts["(audit)"].template) == placement.AUDIT_STACK_FOOTPRINT
    assert used_by(stack_artifacts["(access)"].template) == placement.ACCESS_STACK_FOOTPRINT


def test_every_resource_type_a_quota_counts_is_mapped() -> None:
    counted = {q.key for q in placement.QUOTAS}
    mapped = set(QUOTA_OF_TYPE.values()) | {"lambda_concurrency", "cloudformation_stacks"}
    assert counted == mapped


ACCOUNTS = """
[log_archive]
label = "log-archive"
account_id = "999999999999"
region = "eu-west-2"

[[exchange]]
label = "exchange-1"
account_id = "111111111111"
region = "eu-west-2"

[[exchange]]
label = "exchange-2"
account_id = "222222222222"
region = "us-east-1"
"""


def _registry(tmp_path: Path, customers: dict[str, str], accounts: str | None) -> Path:
    registry = tmp_path / "customers"
    registry.mkdir()
    for slug, extra in customers.items():
        (registry / f"{slug}.toml").write_text(
            f'slug = "{slug}"\naccess = "iam-user"\ncontacts = ["ops@{slug}.example"]\n{extra}')
    if accounts is not None:
        (tmp_path / "accounts.toml").write_text(accounts)
    return registry


def _synth(registry: Path, customer: str | None,
           outdir: Path) -> subprocess.CompletedProcess[str]:
    """app.py as the CDK CLI runs it (the context in CDK_CONTEXT_JSON)."""
    context = {**CDK_CONTEXT, "registry": str(registry)}
    if customer is not None:
        context["customer"] = customer
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(outdir)}
    return subprocess.run([sys.executable, str(REPO / "app.py")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _environments(outdir: Path) -> dict[str, str]:
    manifest = json.loads((outdir / "manifest.json").read_text())
    return {name: a["environment"] for name, a in manifest["artifacts"].items()
            if a["type"] == "aws:cloudformation:stack"}


def test_a_placed_customer_synthesizes_into_its_account_and_region(tmp_path: Path) -> None:
    registry = _registry(tmp_path, {"acme": 'account = "exchange-2"\n', "wayne": ""}, ACCOUNTS)
    result = _synth(registry, "acme", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert _environments(tmp_path / "out")["CustomerStack"] == "aws://222222222222/us-east-1"
    # Another customer's missing placement is a warning for acme's synth, naming the fix.
    assert ("customers/wayne.toml: account: required when" in result.stderr
            and "phi-exchange-admin placement --assign wayne" in result.stderr)


def test_without_an_accounts_file_every_stack_goes_where_the_cli_points(tmp_path: Path) -> None:
    app = build_app([parse_customer({"slug": "acme", "access": "iam-user",
                                     "contacts": ["ops@acme.example"]}, source="acme")],
                    context=CDK_CONTEXT, outdir=str(tmp_path / "out"))
    stack = app.synth().get_stack_by_name("PhiExchange-acme")
    assert stack.environment.account == "unknown-account"


def test_an_unplaced_customer_is_refused_when_there_are_several_accounts(
    tmp_path: Path,
) -> None:
    registry = _registry(tmp_path, {"acme": ""}, ACCOUNTS)
    result = _synth(registry, "acme", tmp_path / "out")
    assert result.returncode == 1
    assert "customers/acme.toml: account: required when" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("accounts", "extra", "problem"), [
    (None, 'account = "exchange-1"\n',
     "account: 'exchange-1' needs an accounts file (accounts.toml next to the registry)"),
    (ACCOUNTS, 'account = "exchange-9"\n',
     "account: 'exchange-9' is not an exchange account of"),
])
def test_an_unknown_account_is_refused(tmp_path: Path, accounts: str | None, extra: str,
                                       problem: str) -> None:
    registry = _registry(tmp_path, {"acme": extra}, accounts)
    result = _synth(registry, "acme", tmp_path / "out")
    assert result.returncode == 1 and problem in result.stderr, result.stderr


def test_a_placement_over_a_quota_is_refused_before_anything_deploys(tmp_path: Path) -> None:
    # 25 scanned customers fill GuardDuty's 25 protected buckets; with the audit stack's 10
    # rules and 4 rules each, they also need 110 EventBridge rules. A 26th is refused.
    customers = {f"c{i:02d}": 'account = "exchange-1"\n' for i in range(26)}
    registry = _registry(tmp_path, customers, ACCOUNTS)
    result = _synth(registry, "c00", tmp_path / "out")
    assert result.returncode == 1
    line = next(x for x in result.stderr.splitlines() if "GuardDuty" in x)
    assert ("account exchange-1 (111111111111 eu-west-2): GuardDuty Malware Protection for S3 "
            "protected buckets: 26 needed, limit 25 (AWS's default 25; 26 customers)") in line
    assert not (tmp_path / "out" / "manifest.json").exists()

    # The increase, once granted, is recorded in the accounts file: then it synthesizes.
    raised = ACCOUNTS.replace(
        'account_id = "111111111111"\nregion = "eu-west-2"\n',
        'account_id = "111111111111"\nregion = "eu-west-2"\n'
        "quotas = { guardduty_protected_buckets = 50 }\n")
    (tmp_path / "accounts.toml").write_text(raised)
    result = _synth(registry, "c00", tmp_path / "out")
    assert result.returncode == 0, result.stderr


def test_a_log_archive_account_holds_the_evidence_of_every_exchange_account(
    tmp_path: Path,
) -> None:
    registry = _registry(tmp_path, {"acme": 'account = "exchange-1"\n'}, ACCOUNTS)
    result = _synth(registry, None, tmp_path / "out")  # `cdk deploy LogArchiveStack` etc.
    assert result.returncode == 0, result.stderr
    envs = _environments(tmp_path / "out")
    assert envs["LogArchiveStack"] == "aws://999999999999/eu-west-2"
    assert envs["AuditStack"] == "aws://unknown-account/unknown-region"  # one per account

    audit = json.loads((tmp_path / "out" / "AuditStack.template.json").read_text())
    (trail,) = [r["Properties"] for r in audit["Resources"].values()
                if r["Type"] == "AWS::CloudTrail::Trail"]
    assert trail["S3BucketName"] == "phiexchange-evidence-999999999999-eu-west-2"
    assert trail["KMSKeyId"] == ("arn:aws:kms:eu-west-2:999999999999:alias/"
                                 "phi-exchange/evidence")
    # No custody bucket is left in an exchange account.
    assert not [r for r in audit["Resources"].values() if r["Type"] == "AWS::S3::Bucket"]

    archive = json.loads((tmp_path / "out" / "LogArchiveStack.template.json").read_text())
    policies = [r["Properties"]["PolicyDocument"] for r in archive["Resources"].values()
                if r["Type"] == "AWS::S3::BucketPolicy"]
    writers = {s["Sid"]: s["Condition"]["StringEquals"]["aws:SourceArn"]
               for p in policies for s in p["Statement"]
               if s.get("Sid", "").startswith("AWSCloudTrailWrite")}
    assert writers == {
        "AWSCloudTrailWrite111111111111":
            "arn:aws:cloudtrail:eu-west-2:111111111111:trail/phi-exchange-audit",
        "AWSCloudTrailWrite222222222222":
            "arn:aws:cloudtrail:us-east-1:222222222222:trail/phi-exchange-audit",
    }
