"""Token resolution: every intrinsic our templates use becomes the literal CloudFormation would
produce in account 123456789012, us-east-1; anything unmodelled fails instead of guessing."""

from __future__ import annotations

from typing import Any

import pytest

from security.templates import (
    UnknownPolicy,
    UnresolvableToken,
    collect_policies,
    resolve_template,
    unresolved_tokens,
)

DOC = {"Version": "2012-10-17",
       "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}


def template(**resources: dict[str, Any]) -> dict[str, Any]:
    return {"Resources": resources}


def test_pseudo_parameters_resolve_to_the_fixed_environment():
    resolved = resolve_template(template(Bucket={
        "Type": "AWS::S3::Bucket",
        "Properties": {"BucketName": {"Fn::Join": ["-", ["phi", {"Ref": "AWS::AccountId"},
                                                          {"Ref": "AWS::Region"}]]},
                       "Tags": [{"Key": "p", "Value": {"Ref": "AWS::Partition"}},
                                {"Key": "u", "Value": {"Ref": "AWS::URLSuffix"}}]}}), "S")
    properties = resolved.resources["Bucket"]["Properties"]
    assert properties["BucketName"] == "phi-123456789012-us-east-1"
    assert [t["Value"] for t in properties["Tags"]] == ["aws", "amazonaws.com"]
    assert resolved.attributes["Bucket"]["Arn"] == "arn:aws:s3:::phi-123456789012-us-east-1"


def test_get_att_and_ref_follow_the_named_resource():
    resolved = resolve_template(template(
        Key={"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": DOC}},
        Role={"Type": "AWS::IAM::Role", "Properties": {"RoleName": "r", "Path": "/team/",
                                                       "AssumeRolePolicyDocument": DOC}},
        Uses={"Type": "AWS::SNS::Topic", "Properties": {
            "KmsMasterKeyId": {"Fn::GetAtt": ["Key", "Arn"]},
            "DisplayName": {"Ref": "Role"},
            "TopicName": {"Fn::GetAtt": "Role.Arn"}}},
    ), "S")
    properties = resolved.resources["Uses"]["Properties"]
    key_arn = properties["KmsMasterKeyId"]
    assert key_arn.startswith("arn:aws:kms:us-east-1:123456789012:key/")
    assert key_arn == resolve_template(template(Key={"Type": "AWS::KMS::Key"}), "S"
                                       ).attributes["Key"]["Arn"]  # deterministic per stack
    assert properties["DisplayName"] == "r"
    assert properties["TopicName"] == "arn:aws:iam::123456789012:role/team/r"


def test_the_same_logical_id_in_two_stacks_gets_two_keys():
    one = resolve_template(template(Key={"Type": "AWS::KMS::Key"}), "PhiExchange-a")
    two = resolve_template(template(Key={"Type": "AWS::KMS::Key"}), "PhiExchange-b")
    assert one.attributes["Key"]["Arn"] != two.attributes["Key"]["Arn"]


def test_sub_replaces_pseudo_parameters_attributes_and_keeps_escapes():
    resolved = resolve_template(template(
        Q={"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "q"}},
        T={"Type": "AWS::SNS::Topic", "Properties": {"TopicName": {"Fn::Sub": [
            "${AWS::Region}/${Q.Arn}/${Name}/${!Literal}", {"Name": "n"}]}}},
    ), "S")
    assert resolved.resources["T"]["Properties"]["TopicName"] == (
        "us-east-1/arn:aws:sqs:us-east-1:123456789012:q/n/${Literal}")


def test_select_split_and_no_value():
    resolved = resolve_template(template(T={"Type": "AWS::SNS::Topic", "Properties": {
        "TopicName": {"Fn::Select": [1, {"Fn::Split": [":", "a:b:c"]}]},
        "DisplayName": {"Ref": "AWS::NoValue"}}}), "S")
    assert resolved.resources["T"]["Properties"] == {"TopicName": "b"}


@pytest.mark.parametrize("node", [
    {"Fn::ImportValue": "exported"},
    {"Ref": "Missing"},
    {"Fn::GetAtt": ["Q", "NoSuchAttribute"]},
    {"Fn::If": ["Cond", "a", "b"]},
])
def test_unmodelled_tokens_fail_loudly(node: dict[str, Any]):
    with pytest.raises(UnresolvableToken):
        resolve_template(template(
            Q={"Type": "AWS::SQS::Queue"},
            T={"Type": "AWS::SNS::Topic", "Properties": {"TopicName": node}}), "S")


def test_a_user_gets_its_own_and_its_groups_policies():
    resolved = resolve_template(template(
        Policy={"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": DOC}},
        Group={"Type": "AWS::IAM::Group", "Properties": {
            "GroupName": "g", "ManagedPolicyArns": [{"Ref": "Policy"}]}},
        User={"Type": "AWS::IAM::User", "Properties": {
            "UserName": "u", "Groups": [{"Ref": "Group"}],
            "Policies": [{"PolicyName": "inline", "PolicyDocument": DOC}]}},
    ), "S")
    policies = collect_policies(resolved)
    names = [p.name for p in policies.identity_policies["arn:aws:iam::123456789012:user/u"]]
    assert names == ["S/User/inline", "S/Policy"]


def test_an_aws_managed_policy_not_written_out_cannot_be_evaluated_offline():
    # AdministratorAccess is written out in AWS_MANAGED_POLICIES; any other managed policy
    # is refused rather than evaluated as if it granted nothing.
    resolved = resolve_template(template(Role={"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": DOC,
        "ManagedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3FullAccess"]}}), "S")
    with pytest.raises(UnknownPolicy):
        collect_policies(resolved)


def test_unresolved_tokens_finds_leftovers():
    assert unresolved_tokens({"a": [{"Ref": "X"}], "b": "plain"}) == ['{"Ref": "X"}']
    assert unresolved_tokens({"a": [{"Ref": "X", "Other": 1}]}) == []
