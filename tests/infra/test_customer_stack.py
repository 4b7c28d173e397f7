"""Template assertions for every guarantee of a customer stack, over all access modes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from stacks.config import AccessMode
from tests.infra.conftest import ALL_SLUGS, slugs_by_mode

IAM_USER = slugs_by_mode("iam-user")
CROSS_ACCOUNT = slugs_by_mode("cross-account")
ASSUME_ROLE = slugs_by_mode("assume-role")


def only(template: Template, resource_type: str, props: dict | None = None) -> dict[str, Any]:
    found = template.find_resources(resource_type, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {resource_type} matching, found {len(found)}"
    return next(iter(found.values()))


def data_bucket(template: Template) -> dict[str, Any]:
    return template.find_resources("AWS::S3::Bucket")[data_bucket_id(template)]


def bucket_policy_statements(template: Template, bucket_logical_id: str) -> list[dict]:
    policies = template.find_resources("AWS::S3::BucketPolicy", {
        "Properties": {"Bucket": {"Ref": bucket_logical_id}}})
    (policy,) = policies.values()
    return policy["Properties"]["PolicyDocument"]["Statement"]


def data_bucket_id(template: Template) -> str:
    found = template.find_resources("AWS::S3::Bucket",
                                    {"Properties": {"BucketEncryption": Match.object_like({})}})
    buckets = [k for k, v in found.items()
               if v["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
               ["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"]
    (logical_id,) = buckets
    return logical_id


def statement(statements: list[dict], sid: str) -> dict:
    matches = [s for s in statements if s.get("Sid") == sid]
    sids = [s.get("Sid") for s in statements]
    assert len(matches) == 1, f"statement {sid} not found once in {sids}"
    return matches[0]


def key_policy_statements(template: Template) -> list[dict]:
    key = only(template, "AWS::KMS::Key")
    return key["Properties"]["KeyPolicy"]["Statement"]


def text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# --- the key ----------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_key_is_customer_managed_rotated_aliased_and_retained(templates, slug):
    template = templates[slug]
    key = only(template, "AWS::KMS::Key", {"EnableKeyRotation": True})
    assert key["DeletionPolicy"] == "Retain" and key["UpdateReplacePolicy"] == "Retain"
    template.has_resource_properties("AWS::KMS::Alias",
                                     {"AliasName": f"alias/phi-exchange/{slug}"})


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_partner_may_use_key_only_through_s3(templates, slug):
    deny = statement(key_policy_statements(templates[slug]), "DenyPartnerKeyUseOutsideS3")
    assert deny["Effect"] == "Deny" and deny["Action"] == "kms:*"
    assert "aws:PrincipalArn" in deny["Condition"]["ArnLike"]
    assert "s3." in text(deny["Condition"]["StringNotEquals"]["kms:ViaService"])


@pytest.mark.parametrize("slug", CROSS_ACCOUNT)
def test_cross_account_grant_reaches_key_policy_through_s3_only(templates, customers, slug):
    grant = statement(key_policy_statements(templates[slug]), "PartnerUseKeyThroughS3")
    assert grant["Effect"] == "Allow"
    assert "kms:ViaService" in grant["Condition"]["StringEquals"]
    principals = text(grant["Principal"])
    for principal in customers[slug].partner_principals:
        assert principal in principals


@pytest.mark.parametrize("slug", IAM_USER + ASSUME_ROLE)
def test_same_account_modes_add_no_key_policy_grant(templates, slug):
    sids = [s.get("Sid") for s in key_policy_statements(templates[slug])]
    assert "PartnerUseKeyThroughS3" not in sids


# --- the data bucket --------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_data_bucket_is_encrypted_with_the_customers_key_and_bucket_keys(templates, slug):
    bucket = data_bucket(templates[slug])["Properties"]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["BucketKeyEnabled"] is True
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    key_id = next(iter(templates[slug].find_resources("AWS::KMS::Key")))
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {
        "Fn::GetAtt": [key_id, "Arn"]}
    assert rule["BlockedEncryptionTypes"] == {"EncryptionType": ["SSE-C"]}


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_data_bucket_is_private_versioned_owner_enforced_and_retained(templates, slug):
    bucket = data_bucket(templates[slug])
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True,
        "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    assert props["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}}


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_data_bucket_logs_to_the_log_bucket(templates, slug):
    props = data_bucket(templates[slug])["Properties"]
    log_target = props["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
    log_bucket = templates[slug].find_resources("AWS::S3::Bucket")[log_target]
    assert log_bucket["DeletionPolicy"] == "Retain"
    assert log_bucket["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicAcls"] is True


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_lifecycle_follows_the_registry(templates, customers, slug):
    rules = data_bucket(templates[slug])["Properties"]["LifecycleConfiguration"]["Rules"]
    by_id = {r["Id"]: r for r in rules}
    retention = customers[slug].retention
    assert by_id["ExpireNoncurrentVersions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": retention.noncurrent_version_days}
    assert by_id["AbortIncompleteMultipartUploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": retention.abort_incomplete_multipart_days}


def test_registry_retention_values_reach_the_template(templates):
    rules = data_bucket(templates["umbrella"])["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {"NoncurrentDays": 30} in [r.get("NoncurrentVersionExpiration") for r in rules]


# --- the bucket policy, statement by statement -------------------------------------------------


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_bucket_policy_denies_plain_http(templates, slug):
    statements = bucket_policy_statements(templates[slug], data_bucket_id(templates[slug]))
    assert any(s["Effect"] == "Deny" and s["Action"] == "s3:*"
               and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_bucket_policy_denies_tls_older_than_1_2(templates, slug):
    statements = bucket_policy_statements(templates[slug], data_bucket_id(templates[slug]))
    assert any(s["Effect"] == "Deny"
               and s.get("Condition") == {"NumericLessThan": {"s3:TlsVersion": 1.2}}
               for s in statements)


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_bucket_policy_denies_uploads_naming_another_algorithm(templates, slug):
    statements = bucket_policy_statements(templates[slug], data_bucket_id(templates[slug]))
    deny = statement(statements, "DenyEncryptionOtherThanKms")
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:PutObject"
    # Only when the header is present: uploads relying on default encryption (this key), S3's
    # own deliveries and multipart parts carry none and must not be refused.
    assert deny["Condition"] == {
        "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
        "Null": {"s3:x-amz-server-side-encryption": "false"}}


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_bucket_policy_denies_kms_uploads_that_do_not_name_the_key(templates, slug):
    template = templates[slug]
    deny = statement(bucket_policy_statements(template, data_bucket_id(template)),
                     "DenyKmsWithoutThisKey")
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:PutObject"
    assert deny["Condition"] == {
        "StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
        "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "true"}}


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_no_encryption_deny_matches_a_request_without_headers(templates, slug):
    """IfExists and Null:true both match an absent header: in a Deny they would refuse
    default-encrypted uploads and every multipart part."""
    template = templates[slug]
    for s in bucket_policy_statements(template, data_bucket_id(template)):
        if s["Effect"] == "Deny" and s["Action"] == "s3:PutObject":
            assert not any(op.endswith("IfExists") for op in s["Condition"]), s["Sid"]


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_bucket_policy_denies_uploads_naming_another_key(templates, slug):
    template = templates[slug]
    deny = statement(bucket_policy_statements(template, data_bucket_id(template)),
                     "DenyOtherKmsKeys")
    key_id = next(iter(template.find_resources("AWS::KMS::Key")))
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:PutObject"
    assert deny["Condition"] == {
        "StringNotEquals": {
            "s3:x-amz-server-side-encryption-aws-kms-key-id": {"Fn::GetAtt": [key_id, "Arn"]}},
        "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"}}


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_bucket_policy_denies_customer_provided_keys(templates, slug):
    template = templates[slug]
    deny = statement(bucket_policy_statements(template, data_bucket_id(template)),
                     "DenyCustomerProvidedKeys")
    assert deny["Condition"] == {
        "Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "false"}}


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_no_policy_allows_everyone(templates, slug):
    template = templates[slug]
    for resource_type, path in [("AWS::S3::BucketPolicy", "PolicyDocument"),
                                ("AWS::KMS::Key", "KeyPolicy")]:
        for resource in template.find_resources(resource_type).values():
            for s in resource["Properties"][path]["Statement"]:
                if s["Effect"] == "Allow":
                    assert s.get("Principal") not in ("*", {"AWS": "*"}), s


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_no_policy_uses_not_principal(templates, slug):
    assert "NotPrincipal" not in text(templates[slug].to_json())


@pytest.mark.parametrize("slug", CROSS_ACCOUNT)
def test_cross_account_grants_are_scoped_to_prefixes_and_directions(templates, customers, slug):
    template = templates[slug]
    statements = bucket_policy_statements(template, data_bucket_id(template))
    partner = [s for s in statements if s.get("Sid", "").startswith("Partner")]
    config = customers[slug]
    sids = {s["Sid"] for s in partner}
    assert ("PartnerWriteInbound" in sids) == ("inbound" in config.directions)
    assert ("PartnerReadOutbound" in sids) == ("outbound" in config.directions)
    for s in partner:
        assert s["Effect"] == "Allow"
        assert "*" not in text(s["Principal"]).replace('"AWS"', "")
        for principal in config.partner_principals:
            assert principal in text(s["Principal"])
    if "PartnerWriteInbound" in sids:
        write = statement(partner, "PartnerWriteInbound")
        assert sorted(write["Action"]) == ["s3:AbortMultipartUpload",
                                           "s3:ListMultipartUploadParts", "s3:PutObject"]
        assert text(write["Resource"]).endswith('/inbound/*"]]}')
    if "PartnerReadOutbound" in sids:
        read = statement(partner, "PartnerReadOutbound")
        assert all(a.startswith("s3:GetObject") for a in read["Action"])
        assert text(read["Resource"]).endswith('/outbound/*"]]}')
    listing = statement(partner, "PartnerListOwnPrefixes")
    receipts = ["receipts/*"] if "inbound" in config.directions else []
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [
        *(f"{d}/*" for d in config.directions), *receipts]}}


@pytest.mark.parametrize("slug", IAM_USER + ASSUME_ROLE)
def test_same_account_modes_grant_nothing_in_the_bucket_policy(templates, slug):
    template = templates[slug]
    statements = bucket_policy_statements(template, data_bucket_id(template))
    assert [s for s in statements if s["Effect"] == "Allow"] == []


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_source_ip_restriction_exactly_when_configured(templates, customers, slug):
    template = templates[slug]
    statements = bucket_policy_statements(template, data_bucket_id(template))
    denies = [s for s in statements if s.get("Sid") == "DenyPartnerFromOtherSourceIps"]
    cidrs = list(customers[slug].allowed_source_ips)
    if not cidrs:
        assert denies == []
        return
    (deny,) = denies
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:*"
    assert deny["Condition"]["NotIpAddress"] == {"aws:SourceIp": cidrs}
    assert deny["Condition"]["ArnLike"]["aws:PrincipalArn"]


def test_account_id_principals_match_every_principal_of_that_account(templates):
    deny = statement(key_policy_statements(templates["dunder"]), "DenyPartnerKeyUseOutsideS3")
    patterns = text(deny["Condition"]["ArnLike"]["aws:PrincipalArn"])
    assert ":iam::777788889999:*" in patterns
    assert "arn:aws:iam::777788889999:user/dunder-batch" in patterns


# --- access per mode --------------------------------------------------------------------------


def managed_policy_statements(template: Template) -> list[dict]:
    policy = only(template, "AWS::IAM::ManagedPolicy",
                  {"ManagedPolicyName": Match.string_like_regexp("-partner-access$")})
    return policy["Properties"]["PolicyDocument"]["Statement"]


@pytest.mark.parametrize("slug", IAM_USER)
def test_iam_user_gets_permissions_only_through_a_group_and_managed_policy(templates, slug):
    template = templates[slug]
    user = only(template, "AWS::IAM::User")["Properties"]
    assert user["UserName"] == f"phi-exchange-{slug}-partner"
    assert "Policies" not in user and "ManagedPolicyArns" not in user
    group_id = next(iter(template.find_resources("AWS::IAM::Group")))
    assert user["Groups"] == [{"Ref": group_id}]
    policy_id = next(iter(template.find_resources("AWS::IAM::ManagedPolicy", {
        "Properties": {"ManagedPolicyName": f"phi-exchange-{slug}-partner-access"}})))
    group = template.find_resources("AWS::IAM::Group")[group_id]["Properties"]
    assert group["ManagedPolicyArns"] == [{"Ref": policy_id}]
    assert "Policies" not in group
    template.resource_count_is("AWS::IAM::Policy", 0)  # no inline policies anywhere


@pytest.mark.parametrize("slug", IAM_USER + ASSUME_ROLE)
def test_partner_policy_is_scoped_to_own_bucket_prefixes_and_key(templates, customers, slug):
    statements = managed_policy_statements(templates[slug])
    config = customers[slug]
    by_sid = {s["Sid"]: s for s in statements}
    assert ("WriteInbound" in by_sid) == ("inbound" in config.directions)
    assert ("ReadOutbound" in by_sid) == ("outbound" in config.directions)
    allows = [s for s in statements if s["Effect"] == "Allow"]
    denies = {s["Sid"]: s for s in statements if s["Effect"] == "Deny"}
    # The IAM user's only deny: credentials derived from a session (sts:GetSessionToken)
    # would outlive a deactivated key; the partner role's sessions need none.
    if config.access is AccessMode.IAM_USER:
        assert set(denies) == {"DenySessionCredentials"}
        assert denies["DenySessionCredentials"]["Condition"] == {
            "Null": {"aws:TokenIssueTime": "false"}}
    else:
        assert not denies
    for s in allows:
        assert "*" not in text(s["Action"])
        assert f"phi-{slug}-" in text(s["Resource"]) or s["Sid"] == "UseKeyThroughS3"
    key = by_sid["UseKeyThroughS3"]
    assert "kms:ViaService" in key["Condition"]["StringEquals"]
    assert text(key["Resource"]).startswith('{"Fn::GetAtt"')
    assert not any("s3:DeleteObject" in text(s["Action"]) for s in statements)


@pytest.mark.parametrize("slug", IAM_USER)
def test_access_key_is_stored_in_a_secret_encrypted_with_the_customer_key(templates, slug):
    template = templates[slug]
    key_id = next(iter(template.find_resources("AWS::KMS::Key")))
    secret = only(template, "AWS::SecretsManager::Secret")["Properties"]
    assert secret["Name"] == f"phi-exchange/{slug}/partner-access-key"
    assert secret["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    secret_text = text(secret["SecretString"])
    key_logical_id = next(iter(template.find_resources("AWS::IAM::AccessKey")))
    assert f'"{key_logical_id}", "SecretAccessKey"' in secret_text
    for field in ("access_key_id", "secret_access_key", "bucket", "region", "kms_key_arn",
                  "bucket_owner", "user_name"):
        assert f'\\"{field}\\"' in secret_text


@pytest.mark.parametrize("slug", IAM_USER)
def test_secret_template_value_holds_only_values_fixed_for_the_stacks_life(templates, slug):
    """Rotation rewrites the secret; CloudFormation must never write the initial key back,
    which it would if the template's SecretString changed on a later deploy (e.g. when the
    registry's directions change)."""
    template = templates[slug]
    secret = only(template, "AWS::SecretsManager::Secret")["Properties"]
    secret_text = text(secret["SecretString"])
    assert "inbound" not in secret_text and "outbound" not in secret_text
    assert "Prefix" not in secret_text


# --- outputs ----------------------------------------------------------------------------------


COMMON_OUTPUTS = {"CustomerSlug", "AccessMode", "BucketName", "BucketRegion",
                  "BucketOwnerAccount", "KmsKeyArn"}


@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_outputs_carry_what_a_client_needs(templates, customers, slug):
    outputs = templates[slug].to_json()["Outputs"]
    config = customers[slug]
    expected = set(COMMON_OUTPUTS)
    expected |= {"InboundPrefix"} if "inbound" in config.directions else set()
    expected |= {"OutboundPrefix"} if "outbound" in config.directions else set()
    expected |= {
        "iam-user": {"PartnerSecretArn", "PartnerUserName"},
        "assume-role": {"PartnerRoleArn", "ExternalId"},
        "roles-anywhere": {"PartnerRoleArn", "TrustAnchorArn", "RolesAnywhereProfileArn"},
        "cross-account": set(),
    }[config.access.value]
    assert set(outputs) == expected
    assert outputs["CustomerSlug"]["Value"] == slug
    assert outputs["AccessMode"]["Value"] == config.access.value
