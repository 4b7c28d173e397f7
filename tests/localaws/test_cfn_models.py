"""Each CloudFormation gap localaws fills, deployed through CreateStack against the emulator.

moto 5.2.5 alone fails every test here (a skipped resource, an ignored property or an HTTP 500);
each template is the smallest one that shows the gap, shaped like what CDK synthesizes for us.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localaws.coverage import Gap, coverage
from tests.localaws.conftest import Aws

ACCOUNT = "123456789012"
TAGS = [{"Key": "phi-exchange:customer", "Value": "acme"}]
ROOT_KEY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                   "Action": "kms:*", "Resource": "*"}],
}


KEY_ARN = {"Fn::GetAtt": ["DataKey", "Arn"]}
LAMBDA_ROLE = {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                   "Principal": {"Service": "lambda.amazonaws.com"}}]}}}
INLINE_CODE = {"ZipFile": "def main(event, context):\n    return None\n"}


def key_resource(policy: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"Type": "AWS::KMS::Key", "Properties": {
        "Description": "test key", "EnableKeyRotation": True,
        "KeyPolicy": policy or ROOT_KEY_POLICY, "Tags": TAGS,
    }}


def outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def assert_complete(stack: dict[str, Any]) -> None:
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")


# --- Secrets Manager -------------------------------------------------------------------------


def test_secret_holds_the_access_key_joined_from_the_template(aws: Aws, unique) -> None:
    user, name = unique("partner"), unique("phi-exchange/acme/partner-access-key")
    stack = aws.deploy({
        "Resources": {
            "User": {"Type": "AWS::IAM::User", "Properties": {"UserName": user}},
            "AccessKey": {"Type": "AWS::IAM::AccessKey",
                          "Properties": {"UserName": {"Ref": "User"}}},
            "DataKey": key_resource(),
            "Secret": {"Type": "AWS::SecretsManager::Secret", "Properties": {
                "Name": name, "Description": "partner key",
                "KmsKeyId": KEY_ARN,
                "SecretString": {"Fn::Join": ["", [
                    '{"user_name":"', {"Ref": "User"},
                    '","access_key_id":"', {"Ref": "AccessKey"},
                    '","secret_access_key":"', {"Fn::GetAtt": ["AccessKey", "SecretAccessKey"]},
                    '"}']]},
                "Tags": TAGS,
            }},
        },
        # A Ref to the secret: with moto alone it resolves to nothing.
        "Outputs": {"SecretArn": {"Value": {"Ref": "Secret"}},
                    "KeyArn": {"Value": {"Fn::GetAtt": ["DataKey", "Arn"]}}},
    })
    assert_complete(stack)
    secretsmanager = aws.client("secretsmanager")
    described = secretsmanager.describe_secret(SecretId=name)
    assert outputs(stack)["SecretArn"] == described["ARN"]
    assert described["KmsKeyId"] == outputs(stack)["KeyArn"]
    assert described["Description"] == "partner key"
    assert described["Tags"] == TAGS
    value = json.loads(secretsmanager.get_secret_value(SecretId=name)["SecretString"])
    assert value["user_name"] == user
    # The secret access key is the real one: the key in the secret signs a working request.
    caller = aws.client("sts", (value["access_key_id"], value["secret_access_key"]))
    assert caller.get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{user}"


def test_secret_value_can_be_generated(aws: Aws, unique) -> None:
    name = unique("generated")
    generate = {"SecretStringTemplate": '{"user":"svc"}', "GenerateStringKey": "password",
                "PasswordLength": 24, "ExcludePunctuation": True}
    stack = aws.deploy({"Resources": {"Secret": {
        "Type": "AWS::SecretsManager::Secret",
        "Properties": {"Name": name, "GenerateSecretString": generate}}}})
    assert_complete(stack)
    secret = aws.client("secretsmanager").get_secret_value(SecretId=name)
    value = json.loads(secret["SecretString"])
    assert value["user"] == "svc"
    assert len(value["password"]) == 24 and value["password"].isalnum()


def test_rotation_schedule_is_recorded_on_the_secret(aws: Aws, unique) -> None:
    name, function = unique("rotated"), unique("rotation-fn")
    stack = aws.deploy({"Resources": {
        "Role": LAMBDA_ROLE,
        "Function": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": function, "Runtime": "python3.12", "Handler": "index.main",
            "Role": {"Fn::GetAtt": ["Role", "Arn"]}, "Code": INLINE_CODE}},
        "Secret": {"Type": "AWS::SecretsManager::Secret",
                   "Properties": {"Name": name, "SecretString": "{}"}},
        "Schedule": {"Type": "AWS::SecretsManager::RotationSchedule", "Properties": {
            "SecretId": {"Ref": "Secret"},
            "RotationLambdaARN": {"Fn::GetAtt": ["Function", "Arn"]},
            "RotationRules": {"ScheduleExpression": "rate(30 days)"},
            "RotateImmediatelyOnUpdate": False}},
    }})
    assert_complete(stack)
    described = aws.client("secretsmanager").describe_secret(SecretId=name)
    assert described["RotationEnabled"] is True
    assert described["RotationLambdaARN"].endswith(f":function:{function}")
    assert described["RotationRules"]["AutomaticallyAfterDays"] == 30
    assert "NextRotationDate" in described
    # Nothing was invoked: the secret still has its single version.
    assert list(described["VersionIdsToStages"].values()) == [["AWSCURRENT"]]


def secret_policy_stack(name: str, reader_arn: str, *, block_public: bool | None = None,
                        allow_everyone: bool = False) -> dict[str, Any]:
    """A secret whose resource policy denies its value to everyone but ``reader_arn``, shaped
    like CDK's ``OnlyNamedPrincipalsReadTheKey``."""
    statements: list[dict[str, Any]] = [{
        "Sid": "OnlyNamedPrincipalsReadTheKey", "Effect": "Deny", "Principal": {"AWS": "*"},
        "Action": ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
        "Resource": "*", "Condition": {"ArnNotLike": {"aws:PrincipalArn": [reader_arn]}}}]
    if allow_everyone:
        statements.append({"Effect": "Allow", "Principal": {"AWS": "*"},
                           "Action": "secretsmanager:DescribeSecret", "Resource": "*"})
    properties: dict[str, Any] = {
        "SecretId": {"Ref": "Secret"},
        "ResourcePolicy": {"Version": "2012-10-17", "Statement": statements}}
    if block_public is not None:
        properties["BlockPublicPolicy"] = block_public
    return {"Resources": {
        "Secret": {"Type": "AWS::SecretsManager::Secret",
                   "Properties": {"Name": name, "SecretString": "{}"}},
        "Policy": {"Type": "AWS::SecretsManager::ResourcePolicy", "Properties": properties}}}


def test_secret_resource_policy_is_put_on_the_secret_and_enforced(aws: Aws, unique) -> None:
    reader, admin = unique("hand-over"), unique("secrets-admin")
    everything = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}]}
    reader_key = aws.user_with_key(reader, everything)
    admin_key = aws.user_with_key(admin, everything)
    name = unique("phi-exchange/acme/partner-access-key")
    stack = aws.deploy(secret_policy_stack(name, f"arn:aws:iam::{ACCOUNT}:user/{reader}"))
    assert_complete(stack)
    policy = json.loads(aws.client("secretsmanager").get_resource_policy(
        SecretId=name)["ResourcePolicy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["OnlyNamedPrincipalsReadTheKey"]
    with aws.permission_checks():
        # moto alone skipped the resource: secretsmanager:* read every secret's value.
        assert aws.client("secretsmanager", reader_key).get_secret_value(
            SecretId=name)["SecretString"] == "{}"
        admin_client = aws.client("secretsmanager", admin_key)
        admin_client.describe_secret(SecretId=name)  # not a value: not guarded
        with pytest.raises(ClientError):
            admin_client.get_secret_value(SecretId=name)


@pytest.mark.parametrize("block_public", [None, True])
def test_a_secret_policy_that_allows_everyone_is_blocked(
    aws: Aws, unique, block_public: bool | None
) -> None:
    stack = aws.deploy(secret_policy_stack(unique("public"), f"arn:aws:iam::{ACCOUNT}:root",
                                           block_public=block_public, allow_everyone=True))
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"


def test_block_public_policy_off_lets_an_allow_for_everyone_through(aws: Aws, unique) -> None:
    stack = aws.deploy(secret_policy_stack(unique("public"), f"arn:aws:iam::{ACCOUNT}:root",
                                           block_public=False, allow_everyone=True))
    assert_complete(stack)


# --- S3 ---------------------------------------------------------------------------------------


def test_bucket_policy_is_put_on_the_bucket(aws: Aws, unique) -> None:
    bucket = unique("phi-policy")
    document = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
        "Resource": [{"Fn::GetAtt": ["Bucket", "Arn"]},
                     {"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket", "Arn"]}, "/*"]]}],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
    stack = aws.deploy({"Resources": {
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": bucket}},
        "Policy": {"Type": "AWS::S3::BucketPolicy",
                   "Properties": {"Bucket": {"Ref": "Bucket"}, "PolicyDocument": document}},
    }})
    assert_complete(stack)
    stored = json.loads(aws.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])
    assert stored["Statement"][0]["Resource"] == [
        f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]


def test_bucket_settings_moto_ignores_are_applied(aws: Aws, unique) -> None:
    bucket = unique("phi-settings")
    stack = aws.deploy({"Resources": {
        "DataKey": key_resource(),
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {
            "BucketName": bucket,
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [{
                "BucketKeyEnabled": True,
                "ServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms",
                    "KMSMasterKeyID": KEY_ARN}}]},
            "VersioningConfiguration": {"Status": "Enabled"},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True},
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {"Rules": [
                {"Id": "ExpireNoncurrentVersions", "Status": "Enabled",
                 "NoncurrentVersionExpiration": {"NoncurrentDays": 90},
                 "ExpiredObjectDeleteMarker": True},
                {"Id": "AbortIncompleteMultipartUploads", "Status": "Enabled",
                 "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]},
            "NotificationConfiguration": {"EventBridgeConfiguration":
                                          {"EventBridgeEnabled": True}},
            "Tags": TAGS,
        }},
    }})
    assert_complete(stack)
    s3 = aws.client("s3")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    (rule,) = encryption["Rules"]
    assert rule["BucketKeyEnabled"] is True
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True}
    assert s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    expire = rules["ExpireNoncurrentVersions"]
    assert expire["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    assert rules["AbortIncompleteMultipartUploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7}
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == TAGS


def _logged_buckets(log_policy_service: str) -> dict[str, Any]:
    """A data bucket logging to a log bucket whose policy grants ``log_policy_service``, in
    CDK's order: the grant names the data bucket, so it is created after both buckets."""
    return {
        "LogBucket": {"Type": "AWS::S3::Bucket", "Properties": {}},
        "LogBucketPolicy": {"Type": "AWS::S3::BucketPolicy", "Properties": {
            "Bucket": {"Ref": "LogBucket"},
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": log_policy_service},
                "Action": "s3:PutObject",
                "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": ["LogBucket", "Arn"]},
                                                "/data-bucket/*"]]},
                "Condition": {"ArnLike": {
                    "aws:SourceArn": {"Fn::GetAtt": ["DataBucket", "Arn"]}}},
            }]}}},
        "DataBucket": {"Type": "AWS::S3::Bucket", "Properties": {
            "LoggingConfiguration": {"DestinationBucketName": {"Ref": "LogBucket"},
                                     "LogFilePrefix": "data-bucket/"}}},
    }


def test_access_logging_waits_for_the_log_bucket_policy_then_delivers(aws: Aws) -> None:
    stack = aws.deploy({"Resources": _logged_buckets("logging.s3.amazonaws.com"), "Outputs": {
        "Data": {"Value": {"Ref": "DataBucket"}}, "Logs": {"Value": {"Ref": "LogBucket"}}}})
    assert_complete(stack)
    s3 = aws.client("s3")
    data, logs = outputs(stack)["Data"], outputs(stack)["Logs"]
    assert s3.get_bucket_logging(Bucket=data)["LoggingEnabled"] == {
        "TargetBucket": logs, "TargetPrefix": "data-bucket/"}
    s3.put_object(Bucket=data, Key="inbound/a.csv", Body=b"a")
    delivered = s3.list_objects_v2(Bucket=logs, Prefix="data-bucket/").get("KeyCount", 0)
    assert delivered >= 1  # moto writes a (synthetic) access-log record per request


def test_access_logging_to_a_bucket_that_grants_no_delivery_fails_the_stack(aws: Aws) -> None:
    stack = aws.deploy({"Resources": _logged_buckets("someone-else.amazonaws.com")})
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    failed = [e for e in aws.client("cloudformation").describe_stack_events(
        StackName=stack["StackName"])["StackEvents"] if e["ResourceStatus"] == "CREATE_FAILED"]
    assert [e["LogicalResourceId"] for e in failed] == ["DataBucket"]
    assert "does not accept access logs" in failed[0]["ResourceStatusReason"]


def test_access_logging_through_the_log_delivery_acl(aws: Aws) -> None:
    stack = aws.deploy({"Resources": {
        "LogBucket": {"Type": "AWS::S3::Bucket",
                      "Properties": {"AccessControl": "LogDeliveryWrite"}},
        "DataBucket": {"Type": "AWS::S3::Bucket", "Properties": {
            "LoggingConfiguration": {"DestinationBucketName": {"Ref": "LogBucket"}}}},
    }, "Outputs": {"Data": {"Value": {"Ref": "DataBucket"}}}})
    assert_complete(stack)
    assert "LoggingEnabled" in aws.client("s3").get_bucket_logging(Bucket=outputs(stack)["Data"])


# --- KMS ----------------------------------------------------------------------------------------


def test_key_policy_is_stored_as_json_and_tags_do_not_break_the_stack(aws: Aws) -> None:
    stack = aws.deploy({"Resources": {"DataKey": key_resource()},
                        "Outputs": {"KeyArn": {"Value": {"Fn::GetAtt": ["DataKey", "Arn"]}}}})
    assert_complete(stack)
    kms, key = aws.client("kms"), outputs(stack)["KeyArn"]
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["Description"] == "test key"
    assert json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]) \
        == ROOT_KEY_POLICY
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is True
    assert kms.list_resource_tags(KeyId=key)["Tags"] == [
        {"TagKey": "phi-exchange:customer", "TagValue": "acme"}]


# --- IAM ----------------------------------------------------------------------------------------


def test_user_gets_its_group_and_the_group_its_managed_policy(aws: Aws, unique) -> None:
    user, group, policy = unique("partner"), unique("partners"), unique("partner-access")
    stack = aws.deploy({"Resources": {
        "Policy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
            "ManagedPolicyName": policy, "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:PutObject",
                 "Resource": "arn:aws:s3:::b/inbound/*"}]}}},
        "Group": {"Type": "AWS::IAM::Group", "Properties": {
            "GroupName": group, "ManagedPolicyArns": [{"Ref": "Policy"}],
            "Policies": [{"PolicyName": "inline", "PolicyDocument": {"Version": "2012-10-17",
                          "Statement": [{"Effect": "Deny", "Action": "s3:DeleteObject",
                                         "Resource": "*"}]}}]}},
        "User": {"Type": "AWS::IAM::User", "Properties": {
            "UserName": user, "Groups": [{"Ref": "Group"}], "Tags": TAGS}},
    }, "Outputs": {"GroupArn": {"Value": {"Fn::GetAtt": ["Group", "Arn"]}}}})
    assert_complete(stack)
    iam = aws.client("iam")
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName=user)["Groups"]] == [group]
    assert outputs(stack)["GroupArn"] == f"arn:aws:iam::{ACCOUNT}:group/{group}"
    attached = iam.list_attached_group_policies(GroupName=group)["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == [policy]
    assert iam.list_group_policies(GroupName=group)["PolicyNames"] == ["inline"]
    assert iam.list_user_tags(UserName=user)["Tags"] == TAGS


def test_role_gets_its_managed_policies_including_aws_managed_ones(aws: Aws, unique) -> None:
    policy = unique("function-policy")
    stack = aws.deploy({"Resources": {
        "Policy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
            "ManagedPolicyName": policy, "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "sns:Publish", "Resource": "*"}]}}},
        "Role": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"Service": "lambda.amazonaws.com"}}]},
            "ManagedPolicyArns": [{"Ref": "Policy"}, "arn:aws:iam::aws:policy/ReadOnlyAccess"]}},
    }, "Outputs": {"Role": {"Value": {"Ref": "Role"}}}})
    assert_complete(stack)
    attached = aws.client("iam").list_attached_role_policies(RoleName=outputs(stack)["Role"])
    assert sorted(p["PolicyName"] for p in attached["AttachedPolicies"]) == sorted(
        [policy, "ReadOnlyAccess"])


def test_no_value_in_a_list_removes_the_element(aws: Aws, unique) -> None:
    # The CDK bootstrap's roles: a statement under Fn::If that resolves to AWS::NoValue.
    lambda_trust = LAMBDA_ROLE["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    stack = aws.deploy({
        "Conditions": {"Never": {"Fn::Equals": ["a", "b"]}},
        "Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": unique("novalue"),
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                lambda_trust,
                {"Fn::If": ["Never", lambda_trust, {"Ref": "AWS::NoValue"}]},
                {"Ref": "AWS::NoValue"}]}}}},
        "Outputs": {"Role": {"Value": {"Ref": "Role"}}}})
    assert_complete(stack)
    role = aws.client("iam").get_role(RoleName=outputs(stack)["Role"])["Role"]
    trust = role["AssumeRolePolicyDocument"]
    if isinstance(trust, str):
        trust = json.loads(trust)
    assert trust["Statement"] == [lambda_trust]


# --- SNS, SQS, Logs, Lambda, CloudWatch -----------------------------------------------------


def test_topic_queue_and_their_policies_subscription_and_alarm(aws: Aws, unique) -> None:
    topic = unique("notices")
    insecure = {"Bool": {"aws:SecureTransport": "false"}}
    tls_only = {"Effect": "Deny", "Principal": "*", "Action": "sns:Publish",
                "Resource": {"Ref": "Topic"}, "Condition": insecure}
    stack = aws.deploy({"Resources": {
        "DataKey": key_resource(),
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {
            "TopicName": topic, "KmsMasterKeyId": KEY_ARN, "Tags": TAGS}},
        "TopicPolicy": {"Type": "AWS::SNS::TopicPolicy", "Properties": {
            "Topics": [{"Ref": "Topic"}],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [tls_only]}}},
        "Subscription": {"Type": "AWS::SNS::Subscription", "Properties": {
            "TopicArn": {"Ref": "Topic"}, "Protocol": "email", "Endpoint": "secops@acme.example"}},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {
            "KmsMasterKeyId": KEY_ARN, "MessageRetentionPeriod": 1209600}},
        "QueuePolicy": {"Type": "AWS::SQS::QueuePolicy", "Properties": {
            "Queues": [{"Ref": "Queue"}],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sqs:*",
                "Resource": {"Fn::GetAtt": ["Queue", "Arn"]}, "Condition": insecure}]}}},
        "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "AlarmActions": [{"Ref": "Topic"}],
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "Dimensions": [{"Name": "FunctionName", "Value": "fn"}], "EvaluationPeriods": 1,
            "MetricName": "Errors", "Namespace": "AWS/Lambda", "Period": 300, "Statistic": "Sum",
            "Threshold": 1, "TreatMissingData": "notBreaching"}},
    }, "Outputs": {"Topic": {"Value": {"Ref": "Topic"}}, "Queue": {"Value": {"Ref": "Queue"}},
                   "Alarm": {"Value": {"Ref": "Alarm"}}}})
    assert_complete(stack)
    sns, topic_arn = aws.client("sns"), outputs(stack)["Topic"]
    policy = json.loads(sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"]["Policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sns.list_tags_for_resource(ResourceArn=topic_arn)["Tags"] == TAGS
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    assert subscription["Endpoint"] == "secops@acme.example"
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=outputs(stack)["Queue"], AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["Policy"])["Statement"][0]["Action"] == "sqs:*"
    (alarm,) = aws.client("cloudwatch").describe_alarms(
        AlarmNames=[outputs(stack)["Alarm"]])["MetricAlarms"]
    assert alarm["AlarmActions"] == [topic_arn]
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": "fn"}]


def test_log_group_and_function_keep_their_kms_key(aws: Aws, unique) -> None:
    group, function = f"/aws/lambda/{unique('fn')}", unique("fn")
    stack = aws.deploy({"Resources": {
        "DataKey": key_resource(),
        "LogGroup": {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": group, "RetentionInDays": 2192, "KmsKeyId": KEY_ARN, "Tags": TAGS}},
        "Role": LAMBDA_ROLE,
        "Function": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": function, "Runtime": "python3.12", "Handler": "index.main",
            "Role": {"Fn::GetAtt": ["Role", "Arn"]}, "KmsKeyArn": KEY_ARN,
            "Code": INLINE_CODE, "Tags": TAGS}},
    }, "Outputs": {"KeyArn": {"Value": KEY_ARN}}})
    assert_complete(stack)
    key = outputs(stack)["KeyArn"]
    (described,) = aws.client("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert described["kmsKeyId"] == key and described["retentionInDays"] == 2192
    got = aws.client("lambda").get_function(FunctionName=function)
    assert got["Configuration"]["KMSKeyArn"] == key
    assert got["Tags"] == {"phi-exchange:customer": "acme"}


def test_log_group_arn_attribute_is_cloudformation_s_with_a_wildcard(aws: Aws, unique) -> None:
    group = f"/phi-exchange/{unique('trail')}"
    stack = aws.deploy({"Resources": {"LogGroup": {"Type": "AWS::Logs::LogGroup", "Properties": {
        "LogGroupName": group}}}, "Outputs": {"Arn": {"Value": {
            "Fn::GetAtt": ["LogGroup", "Arn"]}}}})
    assert outputs(stack)["Arn"] == f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group}:*"


def test_queue_redrive_policy_names_its_dead_letter_queue(aws: Aws, unique) -> None:
    stack = aws.deploy({"Resources": {
        "Dlq": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": unique("dlq")}},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": unique("ingestion"), "VisibilityTimeout": 900,
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]},
                              "maxReceiveCount": 5}}},
    }, "Outputs": {"Queue": {"Value": {"Ref": "Queue"}},
                   "Dlq": {"Value": {"Fn::GetAtt": ["Dlq", "Arn"]}}}})
    assert_complete(stack)
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=outputs(stack)["Queue"], AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": outputs(stack)["Dlq"], "maxReceiveCount": 5}


# --- S3 Object Lock and the CloudTrail trail ----------------------------------------------------


def locked_bucket(days: int = 2192) -> dict[str, Any]:
    return {"Type": "AWS::S3::Bucket", "Properties": {
        "ObjectLockEnabled": True,
        "ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled", "Rule": {
            "DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}}},
        "VersioningConfiguration": {"Status": "Enabled"},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [{
            "BucketKeyEnabled": True, "ServerSideEncryptionByDefault": {
                "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN}}]}}}


def test_object_lock_is_configured_and_enforced(aws: Aws) -> None:
    stack = aws.deploy({"Resources": {"DataKey": key_resource(), "Bucket": locked_bucket()},
                        "Outputs": {"Bucket": {"Value": {"Ref": "Bucket"}}}})
    assert_complete(stack)
    s3, bucket = aws.client("s3"), outputs(stack)["Bucket"]
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    # (moto also reports "Years": 0, as it does after PutObjectLockConfiguration.)
    assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    assert lock["Rule"]["DefaultRetention"]["Days"] == 2192
    version = s3.put_object(Bucket=bucket, Key="a", Body=b"a",
                            ChecksumAlgorithm="SHA256")["VersionId"]
    assert s3.head_object(Bucket=bucket, Key="a")["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(ClientError) as error:
        s3.delete_object(Bucket=bucket, Key="a", VersionId=version)
    assert error.value.response["Error"]["Code"] == "AccessDenied"


def test_object_lock_configuration_without_enabling_it_fails_the_stack(aws: Aws) -> None:
    bucket = locked_bucket()
    del bucket["Properties"]["ObjectLockEnabled"]
    stack = aws.deploy({"Resources": {"DataKey": key_resource(), "Bucket": bucket}})
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"


TRAIL_NAME = "phi-exchange-audit"


def trail_arn(name: str) -> str:
    return f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/{name}"


def cloudtrail_key_grants(name: str) -> list[dict[str, Any]]:
    service = {"Service": "cloudtrail.amazonaws.com"}
    source = {"aws:SourceArn": trail_arn(name)}
    context = {"kms:EncryptionContext:aws:cloudtrail:arn":
               f"arn:aws:cloudtrail:*:{ACCOUNT}:trail/*"}
    return [
        {"Sid": "Encrypt", "Effect": "Allow", "Principal": service,
         "Action": "kms:GenerateDataKey*", "Resource": "*",
         "Condition": {"StringEquals": source, "StringLike": context}},
        {"Sid": "Describe", "Effect": "Allow", "Principal": service, "Action": "kms:DescribeKey",
         "Resource": "*", "Condition": {"StringEquals": source}},
        {"Sid": "Decrypt", "Effect": "Allow", "Principal": service, "Action": "kms:Decrypt",
         "Resource": "*", "Condition": {"StringEquals": source, "StringLike": context}},
    ]


def custody_policy(name: str, *, exempt_trail: bool = True) -> list[dict[str, Any]]:
    bucket_arn = {"Fn::GetAtt": ["Bucket", "Arn"]}
    objects = {"Fn::Join": ["", [bucket_arn, "/*"]]}
    service = {"Service": "cloudtrail.amazonaws.com"}
    source = {"aws:SourceArn": trail_arn(name)}
    algorithm = "s3:x-amz-server-side-encryption"
    not_equals: dict[str, Any] = {algorithm: "aws:kms"}
    if exempt_trail:
        not_equals.update(source)
    return [
        {"Effect": "Allow", "Principal": service, "Action": "s3:GetBucketAcl",
         "Resource": bucket_arn, "Condition": {"StringEquals": source}},
        {"Effect": "Allow", "Principal": service, "Action": "s3:PutObject",
         "Resource": {"Fn::Join": ["", [bucket_arn, f"/AWSLogs/{ACCOUNT}/*"]]},
         "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control",
                                        **source}}},
        {"Sid": "DenyEncryptionOtherThanKms", "Effect": "Deny", "Principal": {"AWS": "*"},
         "Action": "s3:PutObject", "Resource": objects,
         "Condition": {"StringNotEquals": not_equals, "Null": {algorithm: "false"}}},
    ]


def trail_template(name: str, *, key_grants: list[dict[str, Any]] | None = None,
                   bucket_statements: list[dict[str, Any]] | None = None,
                   logs_actions: tuple[str, ...] = ("logs:CreateLogStream",
                                                    "logs:PutLogEvents")) -> dict[str, Any]:
    key_policy = {"Version": "2012-10-17", "Statement": [
        *ROOT_KEY_POLICY["Statement"],
        *(cloudtrail_key_grants(name) if key_grants is None else key_grants)]}
    group = f"/phi-exchange/{name}"
    return {"Resources": {
        "DataKey": key_resource(key_policy),
        "Bucket": locked_bucket(),
        "BucketPolicy": {"Type": "AWS::S3::BucketPolicy", "Properties": {
            "Bucket": {"Ref": "Bucket"}, "PolicyDocument": {"Version": "2012-10-17", "Statement":
                custody_policy(name) if bucket_statements is None else bucket_statements}}},
        "LogGroup": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": group}},
        "LogsPolicy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": {
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": list(logs_actions),
                "Resource": {"Fn::GetAtt": ["LogGroup", "Arn"]}}]}}},
        "LogsRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "sts:AssumeRole"}]},
            "ManagedPolicyArns": [{"Ref": "LogsPolicy"}]}},
        "Trail": {"Type": "AWS::CloudTrail::Trail", "DependsOn": ["BucketPolicy"], "Properties": {
            "TrailName": name, "S3BucketName": {"Ref": "Bucket"}, "IsLogging": True,
            "EnableLogFileValidation": True, "IncludeGlobalServiceEvents": True,
            "IsMultiRegionTrail": False, "KMSKeyId": {"Fn::GetAtt": ["DataKey", "Arn"]},
            "CloudWatchLogsLogGroupArn": {"Fn::GetAtt": ["LogGroup", "Arn"]},
            "CloudWatchLogsRoleArn": {"Fn::GetAtt": ["LogsRole", "Arn"]},
            "AdvancedEventSelectors": [{"Name": "customer buckets", "FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Data"]},
                {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                {"Field": "resources.ARN", "StartsWith": ["arn:aws:s3:::phi-"]}]}],
            "Tags": TAGS}},
    }, "Outputs": {"Trail": {"Value": {"Fn::GetAtt": ["Trail", "Arn"]}},
                   "Key": {"Value": KEY_ARN}, "Bucket": {"Value": {"Ref": "Bucket"}}}}


def failure_reason(aws: Aws, stack: dict[str, Any]) -> str:
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    cloudformation = aws.client("cloudformation")
    # Reading a failed stack's resources neither fails nor creates what was never created.
    resources = cloudformation.describe_stack_resources(StackName=stack["StackName"])
    assert "Trail" not in {r["LogicalResourceId"] for r in resources["StackResources"]}
    events = cloudformation.describe_stack_events(StackName=stack["StackName"])["StackEvents"]
    (failed,) = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed["LogicalResourceId"] == "Trail"
    reason: str = failed["ResourceStatusReason"]
    return reason


def test_trail_is_created_when_cloudtrail_may_deliver(aws: Aws, unique) -> None:
    name = unique("trail")
    stack = aws.deploy(trail_template(name), change_set=True)
    assert_complete(stack)
    cloudtrail = aws.client("cloudtrail")
    assert outputs(stack)["Trail"] == trail_arn(name)
    trail = cloudtrail.get_trail(Name=name)["Trail"]
    assert trail["KmsKeyId"] == outputs(stack)["Key"]  # stored as the key's ARN
    assert trail["LogFileValidationEnabled"] is True and trail["IsMultiRegionTrail"] is False
    assert trail["S3BucketName"] == outputs(stack)["Bucket"]
    assert cloudtrail.get_trail_status(Name=name)["IsLogging"] is True
    (selector,) = cloudtrail.get_event_selectors(TrailName=name)["AdvancedEventSelectors"]
    assert selector["FieldSelectors"][2]["StartsWith"] == ["arn:aws:s3:::phi-"]


def test_trail_without_cloudtrail_s_key_grant_fails_as_on_aws(aws: Aws, unique) -> None:
    # What CDK's L2 trail synthesizes: no key-policy statement for CloudTrail (aws-cdk#3822).
    name = unique("trail")
    reason = failure_reason(aws, aws.deploy(trail_template(name, key_grants=[])))
    assert reason.startswith("InsufficientEncryptionPolicyException")
    assert "kms:GenerateDataKey" in reason


@pytest.mark.parametrize("missing", ["Describe", "Decrypt"])
def test_trail_needs_describe_key_and_with_bucket_keys_decrypt(
    aws: Aws, unique, missing: str
) -> None:
    name = unique("trail")
    grants = [s for s in cloudtrail_key_grants(name) if s["Sid"] != missing]
    reason = failure_reason(aws, aws.deploy(trail_template(name, key_grants=grants)))
    assert reason.startswith("InsufficientEncryptionPolicyException")
    assert ("kms:DescribeKey" if missing == "Describe" else "kms:Decrypt") in reason


def test_key_grant_for_another_trail_does_not_count(aws: Aws, unique) -> None:
    name = unique("trail")
    reason = failure_reason(aws, aws.deploy(trail_template(
        name, key_grants=cloudtrail_key_grants(name + "-other"))))
    assert reason.startswith("InsufficientEncryptionPolicyException")


def test_trail_without_the_bucket_s_delivery_grant_fails(aws: Aws, unique) -> None:
    name = unique("trail")
    statements = [s for s in custody_policy(name) if s.get("Action") != "s3:PutObject"
                  or s["Effect"] == "Deny"]
    reason = failure_reason(aws, aws.deploy(trail_template(name, bucket_statements=statements)))
    assert reason.startswith("InsufficientS3BucketPolicyException")


def test_a_wrong_encryption_deny_that_does_not_exempt_the_trail_refuses_its_digests(
    aws: Aws, unique
) -> None:
    # Digest files are SSE-S3 (AES256): a KMS-only deny must exempt the trail by aws:SourceArn.
    name = unique("trail")
    reason = failure_reason(aws, aws.deploy(trail_template(
        name, bucket_statements=custody_policy(name, exempt_trail=False))))
    assert reason.startswith("InsufficientS3BucketPolicyException")
    assert "CloudTrail-Digest" in reason


def test_trail_whose_logs_role_may_not_write_fails(aws: Aws, unique) -> None:
    name = unique("trail")
    reason = failure_reason(aws, aws.deploy(trail_template(
        name, logs_actions=("logs:CreateLogStream",))))
    assert reason.startswith("InvalidCloudWatchLogsRoleArnException")
    assert "logs:PutLogEvents" in reason


# --- failures and coverage ----------------------------------------------------------------------


def test_a_stack_created_through_a_change_set_keeps_its_outputs(aws: Aws, unique) -> None:
    secret = unique("via-change-set")
    stack = aws.deploy({"Description": "made by a change set", "Resources": {"Secret": {
        "Type": "AWS::SecretsManager::Secret",
        "Properties": {"Name": secret, "SecretString": "{}"}}},
        "Outputs": {"SecretArn": {"Value": {"Ref": "Secret"}}}}, change_set=True)
    assert_complete(stack)
    assert outputs(stack)["SecretArn"].split(":")[-1].startswith(secret)
    assert stack["Description"] == "made by a change set"


def test_change_sets_with_the_same_name_stay_with_their_stacks(aws: Aws, unique) -> None:
    # The CDK CLI names every change set "cdk-deploy-change-set".
    cloudformation = aws.client("cloudformation")
    stacks = [unique("first"), unique("second")]
    for stack in stacks:
        cloudformation.create_change_set(
            StackName=stack, ChangeSetName="cdk-deploy-change-set", ChangeSetType="CREATE",
            TemplateBody=json.dumps({"Resources": {"Secret": {
                "Type": "AWS::SecretsManager::Secret",
                "Properties": {"Name": stack, "SecretString": "{}"}}},
                "Outputs": {"Name": {"Value": stack}}}))
    described = cloudformation.describe_change_set(
        StackName=stacks[0], ChangeSetName="cdk-deploy-change-set")
    assert described["StackName"] == stacks[0]
    for stack in stacks:
        cloudformation.execute_change_set(StackName=stack, ChangeSetName="cdk-deploy-change-set")
    for stack in stacks:
        (described_stack,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
        assert outputs(described_stack) == {"Name": stack}


@pytest.mark.parametrize("change_set", [False, True], ids=["create-stack", "change-set"])
def test_a_resource_that_cannot_be_created_fails_the_stack_with_its_reason(
    aws: Aws, change_set: bool
) -> None:
    stack = aws.deploy({"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []},
        "ManagedPolicyArns": [f"arn:aws:iam::{ACCOUNT}:policy/does-not-exist"]}}}},
        change_set=change_set)
    # moto alone answers CreateStack with HTTP 500 and leaves a half-made stack behind.
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    events = aws.client("cloudformation").describe_stack_events(
        StackName=stack["StackName"])["StackEvents"]
    (failed,) = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed["LogicalResourceId"] == "Role"
    assert "does-not-exist" in failed["ResourceStatusReason"]


def test_coverage_names_skipped_resources_and_unapplied_properties() -> None:
    template = {"Resources": {
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {
            "BucketName": "b", "IntelligentTieringConfigurations": []}},
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {}},
        "Key": key_resource(),
    }}
    assert coverage(template) == [
        Gap("Bucket", "AWS::S3::Bucket", ("IntelligentTieringConfigurations",)),
        Gap("Api", "AWS::ApiGateway::RestApi", ()),
    ]


@pytest.mark.parametrize("resource_type", [
    "AWS::SecretsManager::Secret", "AWS::SecretsManager::RotationSchedule",
    "AWS::SecretsManager::ResourcePolicy", "AWS::S3::BucketPolicy", "AWS::IAM::Group",
    "AWS::SNS::TopicPolicy", "AWS::SNS::Subscription", "AWS::SQS::QueuePolicy",
    "AWS::CloudWatch::Alarm", "AWS::CloudTrail::Trail", "AWS::GuardDuty::MalwareProtectionPlan",
])
def test_every_type_moto_skips_is_covered(resource_type: str) -> None:
    assert coverage({"Resources": {"R": {"Type": resource_type}}}) == []
