"""An offboarded customer (registry `offboarded = true`): the same bucket, key and logs (same
logical ids, retained), no way in for the partner, and an explicit deny for what it may hold."""

from __future__ import annotations

import json

import pytest

from stacks.config import RegistryError, parse_customer
from tests.infra.conftest import OFFBOARDED_SLUGS

PARTNER_SIDE = ("AWS::IAM::User", "AWS::IAM::Group", "AWS::IAM::AccessKey", "AWS::IAM::Role",
                "AWS::IAM::ManagedPolicy", "AWS::SecretsManager::Secret",
                "AWS::Lambda::Function", "AWS::Events::Rule", "AWS::SNS::Topic")


@pytest.mark.parametrize("slug", OFFBOARDED_SLUGS)
def test_offboarded_partner_has_no_way_in(templates, slug):
    for resource_type in PARTNER_SIDE:
        templates[slug].resource_count_is(resource_type, 0)


@pytest.mark.parametrize("slug", OFFBOARDED_SLUGS)
def test_offboarded_partner_is_denied_everything_on_the_bucket(templates, slug):
    policies = templates[slug].find_resources("AWS::S3::BucketPolicy")
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"][
        "Statement"] if s.get("Sid") == "OffboardedPartnerDeny"]
    (deny,) = statements
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:*"
    assert json.dumps(deny["Condition"]["ArnLike"]["aws:PrincipalArn"]).endswith(
        f':user/phi-exchange-{slug}-partner"]]}}]')
    assert not [s for p in policies.values() for s in p["Properties"]["PolicyDocument"][
        "Statement"] if s["Effect"] == "Allow" and "Partner" in s.get("Sid", "")]


@pytest.mark.parametrize("slug", OFFBOARDED_SLUGS)
def test_offboarded_outputs_say_so_and_offer_no_prefix(templates, slug):
    outputs = templates[slug].to_json()["Outputs"]
    assert outputs["Offboarded"]["Value"] == "true"
    assert not {"InboundPrefix", "OutboundPrefix", "PartnerSecretArn"} & set(outputs)
    assert {"BucketName", "KmsKeyArn"} <= set(outputs)


def test_offboarded_must_be_a_boolean():
    with pytest.raises(RegistryError) as caught:
        parse_customer({"slug": "x1", "access": "iam-user", "contacts": ["a@b.example"],
                        "offboarded": "yes"}, source="(inline)")
    assert caught.value.problems == ["(inline): offboarded: must be true or false (got 'yes')"]
    config = parse_customer({"slug": "x1", "access": "cross-account", "offboarded": True,
                             "partner_principals": ["111122223333"],
                             "contacts": ["a@b.example"]}, source="(inline)")
    assert config.offboarded is True
