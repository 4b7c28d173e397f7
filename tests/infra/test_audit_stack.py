"""Template assertions for the audit stack and each customer's handoff to the importer."""

from __future__ import annotations

import json

import pytest

from phi_core import naming
from stacks.app_builder import build_app
from stacks.config import AuditSettings, LockMode, RegistryError, parse_audit_settings
from tests.infra.conftest import ALL_SLUGS, CDK_CONTEXT

AUDIT_LOGICAL_IDS = {
    "TrailAuditKey3C94E4DF": "AWS::KMS::Key",
    "TrailCustodyBucket09522E16": "AWS::S3::Bucket",
    "TrailAccessLogBucket885B4069": "AWS::S3::Bucket",
}


def one(template, resource_type, props=None):
    found = template.find_resources(resource_type, {"Properties": props} if props else None)
    assert len(found) == 1, f"{resource_type}: {len(found)}"
    return next(iter(found.items()))


def audit_key(template):
    """The audit key (the stack's other key signs receipts: asymmetric, KeySpec set)."""
    found = {k: v for k, v in template.find_resources("AWS::KMS::Key").items()
             if "KeySpec" not in v["Properties"]}
    assert len(found) == 1, f"symmetric keys: {len(found)}"
    return next(iter(found.items()))


def test_one_trail_records_object_events_of_every_customer_bucket(audit_template):
    _, trail = one(audit_template, "AWS::CloudTrail::Trail")
    selectors = trail["Properties"]["AdvancedEventSelectors"]
    assert "EventSelectors" not in trail["Properties"]
    data = next(s for s in selectors if {"Field": "eventCategory", "Equals": ["Data"]}
                in s["FieldSelectors"])
    fields = {f["Field"]: f for f in data["FieldSelectors"]}
    assert fields["resources.type"]["Equals"] == ["AWS::S3::Object"]
    assert json.dumps(fields["resources.ARN"]["StartsWith"]).endswith(':s3:::phi-"]]}]')
    management = [s for s in selectors if s["FieldSelectors"] == [
        {"Field": "eventCategory", "Equals": ["Management"]}]]
    assert len(management) == 1


def test_every_customer_bucket_name_matches_the_trail_selector(templates):
    for slug, template in templates.items():
        names = [json.dumps(b["Properties"].get("BucketName"))
                 for b in template.find_resources("AWS::S3::Bucket").values()]
        assert all(f'"{naming.BUCKET_NAME_PREFIX}{slug}-' in n for n in names), slug


def test_trail_validates_encrypts_and_delivers_to_logs(audit_template):
    key_id, _ = audit_key(audit_template)
    group_id, group = one(audit_template, "AWS::Logs::LogGroup")
    audit_template.has_resource_properties("AWS::CloudTrail::Trail", {
        "EnableLogFileValidation": True,
        "IsLogging": True,
        "KMSKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
        "CloudWatchLogsLogGroupArn": {"Fn::GetAtt": [group_id, "Arn"]},
        "TrailName": "phi-exchange-audit",
    })
    assert group["Properties"]["RetentionInDays"] == 365
    assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_trail_logs_role_has_no_inline_policy(audit_template):
    audit_template.resource_count_is("AWS::IAM::Policy", 0)


def test_custody_bucket_is_object_locked_for_six_years_in_compliance_mode(audit_template):
    bucket = audit_template.find_resources("AWS::S3::Bucket")["TrailCustodyBucket09522E16"]
    props = bucket["Properties"]
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 2192}}}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["DeletionPolicy"] == "Retain"
    assert "BucketName" not in props  # generated: must not start with "phi-"


def test_audit_buckets_and_key_keep_their_logical_ids(audit_template):
    resources = audit_template.to_json()["Resources"]
    for logical_id, resource_type in AUDIT_LOGICAL_IDS.items():
        assert resources[logical_id]["Type"] == resource_type
        assert resources[logical_id]["DeletionPolicy"] == "Retain"


def test_ingestion_queue_is_encrypted_with_a_dead_letter_queue(audit_template):
    key_id, _ = audit_key(audit_template)
    dlq_id, _ = one(audit_template, "AWS::SQS::Queue",
                    {"QueueName": naming.INGESTION_DEAD_LETTER_QUEUE_NAME})
    audit_template.has_resource_properties("AWS::SQS::Queue", {
        "QueueName": naming.INGESTION_QUEUE_NAME,
        "KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
        "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                          "maxReceiveCount": 5},
    })


def test_only_customer_ingestion_rules_may_send_to_the_queue(audit_template):
    policies = audit_template.find_resources("AWS::SQS::QueuePolicy")
    statements = [s for p in policies.values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]
                  if s.get("Sid") == "AcceptCustomerInboundEvents"]
    (statement,) = statements
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert json.dumps(statement["Condition"]["ArnLike"]["aws:SourceArn"]).endswith(
        ':rule/phi-exchange-*-inbound-objects"]]}')


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_inbound_customers_hand_new_files_to_the_queue(templates, customers, slug):
    template = templates[slug]
    rules = template.find_resources("AWS::Events::Rule", {
        "Properties": {"Name": naming.ingestion_rule_name(slug)}})
    if "inbound" not in customers[slug].directions:
        assert rules == {}
        return
    (rule,) = rules.values()
    props = rule["Properties"]
    assert props["EventPattern"]["source"] == ["aws.s3"]
    assert props["EventPattern"]["detail-type"] == ["Object Created"]
    assert props["EventPattern"]["detail"]["object"] == {"key": [{"prefix": "inbound/"}]}
    (target,) = props["Targets"]
    assert json.dumps(target["Arn"]).endswith(f':{naming.INGESTION_QUEUE_NAME}"]]}}')
    template_text = target["InputTransformer"]["InputTemplate"]
    message = json.loads(template_text.replace("<", '"<').replace(">", '>"'))
    assert message["customer"] == slug
    assert {"bucket", "key", "version_id", "size"} <= set(message)


def test_customer_stacks_do_not_import_audit_stack_exports(templates):
    for template in templates.values():
        assert "Fn::ImportValue" not in json.dumps(template.to_json())


def test_audit_settings_come_from_context_and_are_validated():
    contacts = {"security_contacts": ["security@example.org"]}
    assert parse_audit_settings(contacts) == AuditSettings(2192, LockMode.COMPLIANCE,
                                                           ("security@example.org",))
    assert parse_audit_settings({**contacts, "audit_lock_mode": "governance"}).lock_mode is (
        LockMode.GOVERNANCE)
    with pytest.raises(RegistryError) as caught:
        parse_audit_settings({"audit_retention_days": 30, "audit_lock_mode": "none",
                              "security_contacts": ["security@example.org\n"]})
    assert caught.value.problems == [
        "cdk.json: context.audit_retention_days: must be between 2192 and 36500 (got 30)",
        "cdk.json: context.audit_lock_mode: must be 'compliance' or 'governance' (got 'none')",
        "cdk.json: context.security_contacts[0]: must be an e-mail address (got "
        "'security@example.org\\n')",
    ]
    with pytest.raises(RegistryError) as caught:
        parse_audit_settings({})
    assert caught.value.problems == [
        "cdk.json: context.security_contacts: required: at least one e-mail address for "
        "notices"]


def test_governance_mode_and_longer_retention_reach_the_template():
    app = build_app([], audit_settings=AuditSettings(3000, LockMode.GOVERNANCE),
                    context=CDK_CONTEXT)
    template = app.synth().get_stack_by_name("PhiExchange-audit").template
    rule = template["Resources"]["TrailCustodyBucket09522E16"]["Properties"][
        "ObjectLockConfiguration"]["Rule"]
    assert rule == {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 3000}}


# --- the contract with CloudTrail (AWS refuses CreateTrail without it) -----------------------


def _statements(template, resource_type: str, key: str) -> dict[str, dict]:
    (resource,) = [r for r in template.find_resources(resource_type).values()
                   if any(s.get("Sid", "").startswith(("AllowCloudTrail", "AWSCloudTrail"))
                          for s in r["Properties"][key]["Statement"])]
    return {s["Sid"]: s for s in resource["Properties"][key]["Statement"] if "Sid" in s}


TRAIL_ARN_SUFFIX = f':trail/{naming.TRAIL_NAME}"]]}}'


def test_the_audit_key_lets_cloudtrail_use_it_for_this_trail_only(audit_template):
    statements = _statements(audit_template, "AWS::KMS::Key", "KeyPolicy")
    encrypt = statements["AllowCloudTrailToEncryptLogs"]
    assert encrypt["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert encrypt["Action"] == "kms:GenerateDataKey*"
    conditions = encrypt["Condition"]["StringEquals"]
    assert json.dumps(conditions["aws:SourceArn"]).endswith(TRAIL_ARN_SUFFIX)
    assert conditions["kms:EncryptionContext:aws:cloudtrail:arn"] == conditions["aws:SourceArn"]
    for sid, action in (("AllowCloudTrailToDescribeKey", "kms:DescribeKey"),
                        ("AllowCloudTrailToDecryptForBucketKey", "kms:Decrypt")):
        assert statements[sid]["Action"] == action
        # An encryption-context condition never matches DescribeKey: the source alone.
        assert statements[sid]["Condition"] == {"StringEquals": {
            "aws:SourceArn": conditions["aws:SourceArn"]}}


def test_the_custody_bucket_admits_cloudtrail_for_this_trail_only(audit_template):
    statements = _statements(audit_template, "AWS::S3::BucketPolicy", "PolicyDocument")
    acl = statements["AWSCloudTrailAclCheck"]
    write = statements["AWSCloudTrailWrite"]
    assert (acl["Action"], write["Action"]) == ("s3:GetBucketAcl", "s3:PutObject")
    assert json.dumps(acl["Condition"]["StringEquals"]["aws:SourceArn"]).endswith(
        TRAIL_ARN_SUFFIX)
    assert write["Condition"]["StringEquals"]["s3:x-amz-acl"] == "bucket-owner-full-control"
    assert write["Condition"]["StringEquals"]["aws:SourceArn"] == acl["Condition"][
        "StringEquals"]["aws:SourceArn"]


def test_the_custody_bucket_refuses_other_encryption_except_the_trails_digests(
        audit_template):
    """The same wrong-key denies as every customer bucket, with one exemption: CloudTrail
    writes digest files with SSE-S3 on behalf of our trail."""
    statements = _statements(audit_template, "AWS::S3::BucketPolicy", "PolicyDocument")
    for sid in ("DenyEncryptionOtherThanKms", "DenyOtherKmsKeys", "DenyKmsWithoutThisKey",
                "DenyCustomerProvidedKeys"):
        deny = statements[sid]
        assert deny["Effect"] == "Deny" and deny["Action"] == "s3:PutObject"
        assert json.dumps(deny["Condition"]["StringNotEquals"]["aws:SourceArn"]).endswith(
            TRAIL_ARN_SUFFIX), sid


def test_the_trail_waits_for_its_bucket_policy(audit_template):
    (trail,) = audit_template.find_resources("AWS::CloudTrail::Trail").values()
    (policy_id,) = [logical_id for logical_id, r in audit_template.find_resources(
        "AWS::S3::BucketPolicy").items() if "AWSCloudTrailWrite" in json.dumps(r)]
    assert policy_id in trail["DependsOn"]


def test_the_trail_keeps_its_logical_id(audit_template):
    """A named trail cannot be replaced in place: the L1 keeps the L2's logical id."""
    assert "Trail76E5F934" in audit_template.find_resources("AWS::CloudTrail::Trail")
