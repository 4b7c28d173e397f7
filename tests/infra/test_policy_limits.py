"""Policies over an AWS size limit are refused at synth, naming the file and the field."""

from __future__ import annotations

import pytest

from stacks import policy_limits
from stacks.app_builder import build_app
from stacks.config import RegistryError, parse_customer
from tests.infra.conftest import CDK_CONTEXT


def partner(mode: str, principals: int, cidrs: int = 0):
    data: dict = {"slug": "big", "access": mode, "contacts": ["ops@big.example"]}
    data["partner_principals"] = [
        f"arn:aws:iam::1111222233{i:02d}:role/partner-file-transfer-role-{i:03d}"
        for i in range(principals)]
    if cidrs:
        data["allowed_source_ips"] = [f"10.{i // 256}.{i % 256}.0/24" for i in range(cidrs)]
    if mode == "assume-role":
        data["external_id"] = "big-external-id-0001"
    return parse_customer(data, source="customers/big.toml")


def test_worst_case_sizes_replace_every_token():
    resolved = policy_limits._worst_case({"Fn::Join": ["", [
        "arn:", {"Ref": "AWS::Partition"}, ":s3:::b-", {"Ref": "AWS::Region"}]]})
    assert resolved == "arn:aws-iso-b-xx:s3:::b-ap-southeast-5-xx"


def test_a_partner_within_the_limits_is_accepted():
    app = build_app([partner("cross-account", 20, 50)], context=CDK_CONTEXT)
    stack = app.node.find_child("CustomerStack")
    sizes = policy_limits.measure(stack)  # type: ignore[arg-type]
    assert {s.kind for s in sizes} >= {"bucket policy", "key policy"}
    assert not any(s.over for s in sizes)


def test_an_oversize_bucket_policy_is_refused_with_file_and_field():
    with pytest.raises(RegistryError) as caught:
        build_app([partner("cross-account", 60, 100)], context=CDK_CONTEXT)
    (problem,) = caught.value.problems
    assert problem.startswith("customers/big.toml: partner_principals, allowed_source_ips: "
                              "the bucket policy would be up to ")
    assert "over AWS's 20,480 limit" in problem


def test_an_oversize_trust_policy_is_refused():
    with pytest.raises(RegistryError) as caught:
        build_app([partner("assume-role", 30)], context=CDK_CONTEXT)
    assert any("partner_principals: the role trust policy" in p and "2,048 limit" in p
               for p in caught.value.problems)


def test_every_oversize_customer_is_reported_at_once():
    big_role = partner("assume-role", 30)
    big_bucket = parse_customer({
        "slug": "bigger", "access": "cross-account", "contacts": ["ops@big.example"],
        "partner_principals": list(partner("cross-account", 60).partner_principals),
        "allowed_source_ips": [f"10.{i // 256}.{i % 256}.0/24" for i in range(100)],
    }, source="customers/bigger.toml")
    with pytest.raises(RegistryError) as caught:
        build_app([big_role, big_bucket], all_customers=True, context=CDK_CONTEXT)
    problems = caught.value.problems
    assert any(p.startswith("customers/big.toml: ") and "role trust policy" in p
               for p in problems)
    assert any(p.startswith("customers/bigger.toml: ") and "bucket policy" in p
               for p in problems)


def test_a_template_over_cloudformations_body_limit_is_refused(tmp_path) -> None:
    from types import SimpleNamespace

    from stacks.policy_limits import TEMPLATE_BODY_LIMIT, oversized_templates

    def stack(name: str, size: int) -> SimpleNamespace:
        path = tmp_path / f"{name}.template.json"
        path.write_bytes(b" " * size)
        return SimpleNamespace(stack_name=name, template_full_path=str(path))

    assembly = SimpleNamespace(stacks_recursively=[
        stack("PhiExchange-acme", TEMPLATE_BODY_LIMIT),
        stack("PhiExchange-pipeline", TEMPLATE_BODY_LIMIT + 1),
        stack("PhiExchange-pipeline-2", TEMPLATE_BODY_LIMIT + 1),
        stack("PhiExchange-pipeline-5", TEMPLATE_BODY_LIMIT + 1)])
    first, second, last = oversized_templates(assembly)
    assert first.startswith("PhiExchange-pipeline: template: 1,000,001 bytes, over "
                            "CloudFormation's 1,000,000-byte template body")
    assert first.endswith("the pipeline deploys too many stacks: move some of its exchange "
                          "accounts to another (accounts.toml: [[exchange]] pipeline = 2)")
    assert second.endswith("(accounts.toml: [[exchange]] pipeline = 3)")
    assert last.endswith("pipeline 5 is the last (5 at most); more pipelines are not built")
