"""Template assertions for the key-rotation component (iam-user customers only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Match

from phi_core import naming
from stacks.components.key_rotation import HANDLER
from tests.infra.conftest import ALL_SLUGS, slugs_by_mode

IAM_USER = slugs_by_mode("iam-user")
OTHER_MODES = sorted(set(ALL_SLUGS) - set(IAM_USER))


def resource(template, resource_type):
    found = template.find_resources(resource_type)
    assert len(found) == 1, f"{resource_type}: {len(found)} found"
    return next(iter(found.items()))


def rotation_role(template):
    """The rotation function's role (a scanned customer's stack also has its scanner role)."""
    found = template.find_resources("AWS::IAM::Role", {"Properties": {
        "RoleName": Match.string_like_regexp("-key-rotation$")}})
    assert len(found) == 1, f"rotation roles: {len(found)} found"
    return next(iter(found.items()))


def function_policy(template) -> dict[str, dict]:
    policies = template.find_resources("AWS::IAM::ManagedPolicy", {
        "Properties": {"Description": Match.string_like_regexp("^Rotation of partner")}})
    (policy,) = policies.values()
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


@pytest.mark.parametrize("slug", IAM_USER)
def test_secret_rotates_on_secrets_managers_native_schedule(templates, customers, slug):
    template = templates[slug]
    secret_id, _ = resource(template, "AWS::SecretsManager::Secret")
    function_id, _ = resource(template, "AWS::Lambda::Function")
    days = customers[slug].rotation.interval_days
    template.has_resource_properties("AWS::SecretsManager::RotationSchedule", {
        "SecretId": {"Ref": secret_id},
        "RotationLambdaARN": {"Fn::GetAtt": [function_id, "Arn"]},
        "RotationRules": {"ScheduleExpression": f"rate({days} days)"},
        "RotateImmediatelyOnUpdate": False,
    })


@pytest.mark.parametrize("slug", IAM_USER)
def test_function_is_configured_for_the_compliance_gate(templates, customers, slug):
    template = templates[slug]
    _, function = resource(template, "AWS::Lambda::Function")
    props = function["Properties"]
    rotation = customers[slug].rotation
    assert props["Handler"] == HANDLER
    assert props["Runtime"] == "python3.14"
    assert props["ReservedConcurrentExecutions"] == 1
    assert "TargetArn" in props["DeadLetterConfig"]
    assert props["FunctionName"] == f"phi-exchange-{slug}-key-rotation"
    assert "KmsKeyArn" in props
    env = props["Environment"]["Variables"]
    assert env["GRACE_DAYS"] == str(rotation.grace_days)
    assert env["DELETE_AFTER_DAYS"] == str(rotation.delete_after_days)
    assert env["USER_NAME"] == f"phi-exchange-{slug}-partner"
    assert env["CUSTOMER_SLUG"] == slug
    assert set(env) == {"CUSTOMER_SLUG", "SECRET_ARN", "USER_NAME", "GRACE_DAYS",
                        "DELETE_AFTER_DAYS", "NOTICES_TOPIC_ARN"}


@pytest.mark.parametrize("slug", IAM_USER)
def test_function_logs_are_encrypted_and_kept_six_years(templates, slug):
    template = templates[slug]
    template.has_resource_properties("AWS::Logs::LogGroup", {
        "LogGroupName": f"/aws/lambda/phi-exchange-{slug}-key-rotation",
        "RetentionInDays": 2192,
        "KmsKeyId": Match.any_value(),
    })


@pytest.mark.parametrize("slug", IAM_USER)
def test_dead_letter_queue_and_topic_are_kms_encrypted(templates, slug):
    template = templates[slug]
    key_id, _ = resource(template, "AWS::KMS::Key")
    template.has_resource_properties("AWS::SQS::Queue", {
        "KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}})
    template.has_resource_properties("AWS::SNS::Topic", {
        "KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
        "TopicName": f"phi-exchange-{slug}-notices"})


@pytest.mark.parametrize("slug", IAM_USER)
def test_contacts_are_subscribed_to_notices(templates, customers, slug):
    template = templates[slug]
    for address in customers[slug].contacts:
        template.has_resource_properties("AWS::SNS::Subscription", {
            "Protocol": "email", "Endpoint": address})


@pytest.mark.parametrize("slug", IAM_USER)
def test_role_has_no_inline_policy_and_one_managed_policy(templates, slug):
    template = templates[slug]
    template.resource_count_is("AWS::IAM::Policy", 0)
    _, role = rotation_role(template)
    assert "Policies" not in role["Properties"]
    assert len(role["Properties"]["ManagedPolicyArns"]) == 1


@pytest.mark.parametrize("slug", IAM_USER)
def test_role_is_scoped_to_this_customers_user_and_secret(templates, slug):
    template = templates[slug]
    statements = function_policy(template)
    keys = statements["ManagePartnerAccessKeys"]
    assert sorted(keys["Action"]) == ["iam:CreateAccessKey", "iam:DeleteAccessKey",
                                      "iam:GetAccessKeyLastUsed", "iam:ListAccessKeys",
                                      "iam:UpdateAccessKey"]
    assert json.dumps(keys["Resource"]).endswith(f':user/phi-exchange-{slug}-partner"]]}}')
    secret_id, _ = resource(template, "AWS::SecretsManager::Secret")
    assert statements["RotatePartnerSecret"]["Resource"] == {"Ref": secret_id}
    key_id, _ = resource(template, "AWS::KMS::Key")
    assert statements["UseCustomerKeyForSecretTopicAndQueue"]["Resource"] == {
        "Fn::GetAtt": [key_id, "Arn"]}
    for statement in statements.values():
        assert statement["Effect"] == "Allow"
        assert "*" not in json.dumps(statement["Action"])
        assert statement["Resource"] != "*"


@pytest.mark.parametrize("slug", IAM_USER)
def test_daily_sweep_invokes_the_same_function(templates, slug):
    template = templates[slug]
    function_id, _ = resource(template, "AWS::Lambda::Function")
    template.has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": "cron(17 6 * * ? *)",
        "Targets": [Match.object_like({
            "Arn": {"Fn::GetAtt": [function_id, "Arn"]},
            "Input": '{"action":"sweep"}',
        })],
    })


@pytest.mark.parametrize("slug", IAM_USER)
def test_errors_raise_an_alarm_that_notifies_the_contacts(templates, slug):
    template = templates[slug]
    (topic_id,) = template.find_resources("AWS::SNS::Topic", {"Properties": {
        "TopicName": naming.notices_topic_name(slug)}})
    function_id, _ = resource(template, "AWS::Lambda::Function")
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "Errors",
        "Namespace": "AWS/Lambda",
        "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": function_id}}],
        "Threshold": 1,
        "AlarmActions": [{"Ref": topic_id}],
    })


@pytest.mark.parametrize("slug", OTHER_MODES)
def test_modes_without_an_access_key_have_no_rotation(templates, slug):
    for resource_type in ("AWS::Lambda::Function", "AWS::SecretsManager::RotationSchedule",
                          "AWS::CloudWatch::Alarm"):
        templates[slug].resource_count_is(resource_type, 0)
    # A scanned customer has its gate-notices topic, never a rotation notices topic; a
    # roles-anywhere customer's notices topic is for its CA's expiry, which only its
    # certificate-expiry rule publishes to.
    topics = templates[slug].find_resources("AWS::SNS::Topic", {"Properties": {
        "TopicName": naming.notices_topic_name(slug)}})
    rules = templates[slug].find_resources("AWS::Events::Rule", {"Properties": {
        "Name": naming.certificate_notices_rule_name(slug)}})
    assert len(topics) == len(rules) <= 1
    if topics:
        ((rule,),) = [list(rules.values())]
        assert rule["Properties"]["Targets"] == [{"Arn": {"Ref": next(iter(topics))},
                                                  "Id": "NoticesTopic"}]
    assert not templates[slug].find_resources("AWS::Events::Rule", {
        "Properties": {"ScheduleExpression": Match.any_value()}})


@pytest.mark.parametrize("slug", slugs_by_mode("iam-user"))
def test_only_this_secret_and_this_alarm_reach_the_function_and_topic(templates, slug):
    """Secrets Manager may invoke the function only for this secret; the topic admits
    CloudWatch only for this customer's alarm (enforce_ssl's topic policy replaced the default
    one that admitted it), and the key does the same for the alarm's encrypted notices."""
    template = templates[slug]
    (permission,) = [p for p in template.find_resources("AWS::Lambda::Permission").values()
                     if p["Properties"]["Principal"] == "secretsmanager.amazonaws.com"]
    assert "Ref" in permission["Properties"]["SourceArn"]
    assert permission["Properties"]["SourceAccount"] == {"Ref": "AWS::AccountId"}
    alarm_suffix = f':alarm:{naming.rotation_alarm_name(slug)}"]]}}'
    topic_policy = next(
        p for p in template.find_resources("AWS::SNS::TopicPolicy").values()
        if any(s.get("Sid") == "AllowErrorsAlarmToPublish"
               for s in p["Properties"]["PolicyDocument"]["Statement"]))
    publish = next(s for s in topic_policy["Properties"]["PolicyDocument"]["Statement"]
                   if s.get("Sid") == "AllowErrorsAlarmToPublish")
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert json.dumps(publish["Condition"]["ArnLike"]["aws:SourceArn"]).endswith(alarm_suffix)
    (key,) = template.find_resources("AWS::KMS::Key").values()
    grant = next(s for s in key["Properties"]["KeyPolicy"]["Statement"]
                 if s.get("Sid") == "AllowCloudWatchAlarmsToNotify")
    assert json.dumps(grant["Condition"]["ArnLike"]["aws:SourceArn"]).endswith(
        alarm_suffix + "]")


@pytest.mark.parametrize("slug", slugs_by_mode("iam-user")[:1])
def test_the_function_imports_the_shared_rules_from_its_own_layer(stack_artifacts, slug):
    """Loaded as Lambda loads it (its asset, then its layer's python/ on the path), the handler
    finds phi_core in the layer: the rules it shares with the operator tools travel with it."""
    artifact = stack_artifacts[slug]
    resources = artifact.template["Resources"]
    (function,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    (layer,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    assert len(function["Properties"]["Layers"]) == 1
    outdir = Path(artifact.assembly.directory)

    def asset(properties: dict) -> Path:
        name = f"asset.{properties['S3Key'].removesuffix('.zip')}"
        # A stage's assets are staged in the app's own (outer) assembly directory.
        return next(d / name for d in (outdir, outdir.parent) if (d / name).exists())

    code, layer_code = asset(function["Properties"]["Code"]), asset(layer["Properties"]["Content"])
    probe = ("import key_rotation.handler, phi_core.key_fate, sys; "
             "print(phi_core.key_fate.__file__)")
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(layer_code / "python")])},
        cwd=outdir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(layer_code / "python" / "phi_core")), done.stdout
