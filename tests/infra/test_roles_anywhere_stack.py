"""A roles-anywhere customer's stack: trust anchor, profile, role, expiry notices.

The access matrix proves who may do what with these resources (tests/security); these tests
pin the template's shape that AWS checks on the first deploy and the matrix does not read:
the trust anchor's source, the profile's session length and role, the notification settings
and the expiry rule's pattern.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from phi_core import account_roles, defaults, naming, partner_policy
from stacks.config import CustomerConfig
from tests.infra.conftest import slugs_by_mode

ROLES_ANYWHERE = slugs_by_mode("roles-anywhere")


def only(template: Template, resource_type: str) -> tuple[str, dict[str, Any]]:
    (found,) = template.find_resources(resource_type).items()
    return found


def test_the_registry_and_the_test_customers_have_roles_anywhere_customers() -> None:
    assert {"hooli", "stark"} <= set(ROLES_ANYWHERE)


@pytest.mark.parametrize("slug", ROLES_ANYWHERE)
def test_the_trust_anchor_holds_the_registered_ca_and_notifies_ahead(
        templates: dict[str, Template], customers: dict[str, CustomerConfig], slug: str) -> None:
    _, anchor = only(templates[slug], "AWS::RolesAnywhere::TrustAnchor")
    settings = customers[slug].roles_anywhere
    assert settings is not None
    properties = anchor["Properties"]
    assert properties["Name"] == naming.trust_anchor_name(slug)
    assert properties["Enabled"] is True
    assert properties["Source"] == {"SourceType": "CERTIFICATE_BUNDLE", "SourceData": {
        "X509CertificateData": settings.ca_bundle}}
    assert properties["NotificationSettings"] == [
        {"Channel": "ALL", "Enabled": True, "Event": "CA_CERTIFICATE_EXPIRY",
         "Threshold": defaults.CA_EXPIRY_NOTICE_DAYS},
        {"Channel": "ALL", "Enabled": True, "Event": "END_ENTITY_CERTIFICATE_EXPIRY",
         "Threshold": defaults.CERTIFICATE_EXPIRY_NOTICE_DAYS}]


@pytest.mark.parametrize("slug", ROLES_ANYWHERE)
def test_the_role_trusts_roles_anywhere_for_its_anchor_and_subject_only(
        templates: dict[str, Template], customers: dict[str, CustomerConfig], slug: str) -> None:
    template = templates[slug]
    anchor_id, _ = only(template, "AWS::RolesAnywhere::TrustAnchor")
    roles = {r["Properties"]["RoleName"]: r for r in template.find_resources(
        "AWS::IAM::Role").values()}
    role = roles[naming.partner_role_name(slug)]
    settings = customers[slug].roles_anywhere
    assert settings is not None
    # Exactly the core's document, with the anchor's ARN from CloudFormation.
    assert role["Properties"]["AssumeRolePolicyDocument"] == partner_policy.roles_anywhere_trust(
        {"Fn::GetAtt": [anchor_id, "TrustAnchorArn"]}, settings.subject)  # type: ignore[arg-type]
    assert role["Properties"]["MaxSessionDuration"] == 3600


@pytest.mark.parametrize("slug", ROLES_ANYWHERE)
def test_the_profile_hands_out_only_the_partner_role_for_an_hour(
        templates: dict[str, Template], slug: str) -> None:
    template = templates[slug]
    _, profile = only(template, "AWS::RolesAnywhere::Profile")
    role_id = next(logical for logical, r in template.find_resources("AWS::IAM::Role").items()
                   if r["Properties"]["RoleName"] == naming.partner_role_name(slug))
    assert profile["Properties"]["RoleArns"] == [{"Fn::GetAtt": [role_id, "Arn"]}]
    assert profile["Properties"]["DurationSeconds"] == 3600
    assert profile["Properties"]["Enabled"] is True
    # No session policy or managed policies of the profile's own: the role's policy is the
    # only grant, the same as the other modes' partner role.
    assert "SessionPolicy" not in profile["Properties"]
    assert "ManagedPolicyArns" not in profile["Properties"]


@pytest.mark.parametrize("slug", ROLES_ANYWHERE)
def test_only_this_anchors_expiry_events_reach_the_contacts(
        templates: dict[str, Template], customers: dict[str, CustomerConfig], slug: str) -> None:
    template = templates[slug]
    anchor_id, _ = only(template, "AWS::RolesAnywhere::TrustAnchor")
    (rule,) = (r for r in template.find_resources("AWS::Events::Rule").values()
               if r["Properties"]["Name"] == naming.certificate_notices_rule_name(slug))
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.rolesanywhere"],
        "detail-type": ["Roles Anywhere Certificate Expiration State Change"],
        "resources": [{"Fn::GetAtt": [anchor_id, "TrustAnchorArn"]}]}
    ((topic_id, topic),) = template.find_resources("AWS::SNS::Topic", {"Properties": {
        "TopicName": naming.notices_topic_name(slug)}}).items()
    assert rule["Properties"]["Targets"] == [{"Arn": {"Ref": topic_id}, "Id": "NoticesTopic"}]
    assert "KmsMasterKeyId" in topic["Properties"]
    endpoints = {s["Properties"]["Endpoint"] for s in template.find_resources(
        "AWS::SNS::Subscription").values()
        if s["Properties"]["TopicArn"] == {"Ref": topic_id}}
    assert endpoints == set(customers[slug].contacts)


def test_cloudformation_may_manage_every_resource_type_of_every_customer_stack(
        templates: dict[str, Template]) -> None:
    """CloudFormation creates the customer stacks as our deployment role: a resource type whose
    service that role's policy never names fails the first real deploy, which the emulator
    (it does not check CloudFormation's own calls) cannot show. Found missing for IAM Roles
    Anywhere in review."""
    statements = account_roles.deployment_statements(partition="aws", region="us-east-1",
                                                     account="123456789012")
    allowed = {action.split(":")[0] for s in statements if s["Effect"] == "Allow"
               for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    used = {resource["Type"].split("::")[1].lower() for template in templates.values()
            for resource in template.to_json()["Resources"].values()
            if resource["Type"].startswith("AWS::")}
    assert "rolesanywhere" in used
    assert used <= allowed, used - allowed
