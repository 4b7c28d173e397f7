"""The rotation function's role, read from the synthesized template, is exactly what the real
rotation handler needs: run as that role with the emulator's permission checks on, the handler
completes, and without any one of the role's actions it fails on that action.

Nothing here lists the handler's calls by hand: the actions come from the role's managed policy
in the template, the resources are that policy's own (resolved against resources made for each
run), and the calls are whatever the handler's code path makes. Each run uses its own account
of the emulator (the template names the partner user literally), so runs never share state.

The scenario makes every call the handler can make: a full rotation (createSecret, setSecret,
testSecret, finishSecret), the sweep after the grace period (deactivate), the sweep after the
deletion date (delete), and a second createSecret that finds a key left by a crashed attempt
(GetAccessKeyLastUsed, then delete it to make room).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from key_rotation import handler, rotation
from localaws import server
from phi_core import naming
from stacks.app_builder import build_app
from stacks.config import load_registry
from tests.localaws.conftest import Aws
from tests.localaws.conftest import session as aws_session

pytestmark = pytest.mark.synth

REPO = Path(__file__).resolve().parents[2]
CUSTOMER = "acme"
REGION = "us-east-1"
LAMBDA = "lambda.amazonaws.com"
# Actions of the role the emulator cannot show to be needed, and why. Each is covered by the
# offline access matrix (make matrix / tests/security) instead.
NOT_CHECKABLE = {
    "kms:Decrypt": "moto's Secrets Manager and SNS never call KMS, so the role's KMS grant is "
                   "never exercised (AWS decrypts the secret and encrypts the topic's messages "
                   "with it)",
    "kms:GenerateDataKey": "moto's Secrets Manager and SNS never call KMS (AWS encrypts each "
                           "new secret version and each notice with it)",
    "sqs:SendMessage": "the Lambda service, not the handler, sends a failed asynchronous "
                       "invocation to the dead-letter queue",
    "logs:CreateLogStream": "the Lambda runtime, not the handler, writes the function's logs",
    "logs:PutLogEvents": "the Lambda runtime, not the handler, writes the function's logs",
}


@dataclass(frozen=True)
class RoleTemplate:
    """The rotation function's role and environment, as synthesized (unresolved)."""

    template: dict[str, Any]
    trust: dict[str, Any]
    policy: dict[str, Any]
    environment: dict[str, Any]

    @property
    def actions(self) -> list[str]:
        return sorted({action for statement in self.policy["Statement"]
                       for action in _as_list(statement["Action"])})


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def role_template(tmp_path_factory: pytest.TempPathFactory) -> RoleTemplate:
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    customer = load_registry(REPO / "customers")[CUSTOMER]
    app = build_app([customer], outdir=str(tmp_path_factory.mktemp("cdk.out")), context=context)
    template: dict[str, Any] = app.synth().get_stack_by_name(
        naming.stack_name(CUSTOMER)).template
    resources = template["Resources"]
    (function,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Function"
                   and r["Properties"].get("FunctionName") == naming.rotation_function_name(
                       CUSTOMER)]
    role = resources[function["Properties"]["Role"]["Fn::GetAtt"][0]]
    (policy_ref,) = role["Properties"]["ManagedPolicyArns"]
    assert not role["Properties"].get("Policies"), "the role must hold no inline policy"
    return RoleTemplate(
        template=template,
        trust=role["Properties"]["AssumeRolePolicyDocument"],
        policy=resources[policy_ref["Ref"]]["Properties"]["PolicyDocument"],
        environment=function["Properties"]["Environment"]["Variables"],
    )


# --- one run's resources, and the template resolved against them ----------------------------


@dataclass
class Account:
    """The resources the role's policy names, made in a fresh account of the emulator."""

    account: str
    physical: dict[str, str]  # resource type -> what Ref / GetAtt Arn resolves to


def _provision(aws: Aws, account: str, user_name: str) -> Account:
    def client(service: str) -> Any:
        return aws.client(service, account=account)

    iam = client("iam")
    iam.create_user(UserName=user_name)
    key = iam.create_access_key(UserName=user_name)["AccessKey"]
    kms_key = client("kms").create_key(Description="customer key")["KeyMetadata"]["Arn"]
    secret = client("secretsmanager").create_secret(
        Name=naming.partner_secret_name(CUSTOMER), KmsKeyId=kms_key,
        SecretString=json.dumps({"user_name": user_name, "access_key_id": key["AccessKeyId"],
                                 "secret_access_key": key["SecretAccessKey"],
                                 "bucket": "b", "region": REGION, "bucket_owner": account,
                                 "kms_key_arn": kms_key}))["ARN"]
    topic = client("sns").create_topic(Name=naming.notices_topic_name(CUSTOMER))["TopicArn"]
    queue_url = client("sqs").create_queue(QueueName="rotation-dlq")["QueueUrl"]
    queue = client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    group = f"/aws/lambda/{naming.rotation_function_name(CUSTOMER)}"
    client("logs").create_log_group(logGroupName=group)
    return Account(account, {
        "AWS::SecretsManager::Secret": secret, "AWS::SNS::Topic": topic,
        "AWS::KMS::Key": kms_key, "AWS::SQS::Queue": queue,
        "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{account}:log-group:{group}:*",
    })


def _resolve(value: Any, template: Mapping[str, Any], account: Account) -> Any:
    """CloudFormation intrinsics of the role's policy and environment, against ``account``."""
    pseudo = {"AWS::AccountId": account.account, "AWS::Region": REGION,
              "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}
    if isinstance(value, list):
        return [_resolve(v, template, account) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        name = value["Ref"]
        if name in pseudo:
            return pseudo[name]
        return account.physical[template["Resources"][name]["Type"]]
    if set(value) == {"Fn::GetAtt"}:
        name, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn", f"GetAtt {name}.{attribute} is not resolved by this test"
        return account.physical[template["Resources"][name]["Type"]]
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(_resolve(p, template, account)) for p in parts)
    return {k: _resolve(v, template, account) for k, v in value.items()}


def _without(policy: dict[str, Any], action: str | None) -> dict[str, Any]:
    """The policy with one action removed (a statement left with none is dropped)."""
    statements = []
    for statement in policy["Statement"]:
        actions = [a for a in _as_list(statement["Action"]) if a != action]
        if actions:
            statements.append({**statement, "Action": actions})
    return {**policy, "Statement": statements}


# --- running the handler as the role ---------------------------------------------------------


@pytest.fixture
def emulator_env(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # What boto3 in the handler reads: the emulator and its CA. Credentials come from the
    # role's session, given to the session explicitly.
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.emulator.url)
    assert aws.emulator.ca_bundle is not None
    monkeypatch.setenv("AWS_CA_BUNDLE", aws.emulator.ca_bundle)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield


_accounts = iter(range(200000000001, 200000000999))


def run_rotation_as_role(aws: Aws, role_template: RoleTemplate,
                         remove: str | None = None) -> None:
    """Provision a fresh account, create the role from the template (minus ``remove``), and
    run the whole scenario (module docstring) as the role with permission checks on."""
    account_id = str(next(_accounts))
    user_name = role_template.environment["USER_NAME"]
    account = _provision(aws, account_id, user_name)
    template = role_template.template
    policy = _without(_resolve(role_template.policy, template, account), remove)
    iam = aws.client("iam", account=account_id)
    iam.create_policy(PolicyName="FunctionPolicy", PolicyDocument=json.dumps(policy))
    role_arn = iam.create_role(RoleName="FunctionRole", AssumeRolePolicyDocument=json.dumps(
        role_template.trust))["Role"]["Arn"]
    iam.attach_role_policy(RoleName="FunctionRole",
                           PolicyArn=f"arn:aws:iam::{account_id}:policy/FunctionPolicy")
    # The emulator plays Lambda: a session only if the trust policy admits lambda.amazonaws.com.
    session = server.service_role_session(aws.emulator, service=LAMBDA, role_arn=role_arn,
                                          session_name="rotation")
    environment = {k: str(_resolve(v, template, account))
                   for k, v in role_template.environment.items()}
    settings = replace(handler.settings_from_env(environment), test_attempts=1,
                       test_retry_seconds=0)
    clients = handler.build_clients(aws_session(
        (session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"])))
    admin_iam = aws.client("iam", account=account_id)  # the test's own moves, checks off

    def rotate(steps: tuple[str, ...] = rotation.STEPS) -> None:
        token = str(uuid.uuid4())
        with aws.permission_checks():
            for step in steps:
                rotation.handle_event({"SecretId": settings.secret_arn,
                                       "ClientRequestToken": token, "Step": step},
                                      settings, clients, now=lambda: datetime.now(UTC),
                                      sleep=lambda _: None)

    def sweep(days_later: int) -> list[str]:
        moment = datetime.now(UTC) + timedelta(days=days_later)
        with aws.permission_checks():
            result = rotation.handle_event({"action": "sweep"}, settings, clients,
                                           now=lambda: moment)
        return [a["action"] for a in result["actions"]]

    rotate()
    assert sweep(settings.grace_days + 1) == ["deactivated"]
    assert sweep(settings.grace_days + settings.delete_after_days + 1) == ["deleted"]
    # A crashed attempt's key: newer than the current key and held by no secret version.
    current = max(admin_iam.list_access_keys(UserName=user_name)["AccessKeyMetadata"],
                  key=lambda k: k["CreateDate"])
    while datetime.now(UTC) - current["CreateDate"] < timedelta(seconds=1.1):
        time.sleep(0.2)  # IAM dates keys to the second: the orphan must be strictly newer
    orphan = admin_iam.create_access_key(UserName=user_name)["AccessKey"]["AccessKeyId"]
    rotate(("createSecret",))
    remaining = {k["AccessKeyId"] for k in
                 admin_iam.list_access_keys(UserName=user_name)["AccessKeyMetadata"]}
    assert orphan not in remaining and len(remaining) == 2


# --- the tests ----------------------------------------------------------------------------------


def test_the_rotation_runs_as_the_role_the_template_creates(
    aws: Aws, role_template: RoleTemplate, emulator_env: None
) -> None:
    run_rotation_as_role(aws, role_template)


def test_every_action_of_the_role_is_needed_by_the_handler(
    aws: Aws, role_template: RoleTemplate, emulator_env: None
) -> None:
    unknown = set(NOT_CHECKABLE) - set(role_template.actions)
    assert not unknown, f"NOT_CHECKABLE lists actions the role no longer has: {sorted(unknown)}"
    not_needed = []
    for action in role_template.actions:
        if action in NOT_CHECKABLE:
            continue
        try:
            run_rotation_as_role(aws, role_template, remove=action)
        except ClientError as error:
            message = error.response["Error"].get("Message", "")
            assert action in message, f"without {action} the rotation failed on: {message}"
        else:
            not_needed.append(action)
    assert not not_needed, (f"the rotation succeeds without {not_needed}: remove them from the "
                            "role, or list in NOT_CHECKABLE why the emulator cannot show the "
                            "need")


def test_the_role_s_trust_policy_admits_lambda_only(
    aws: Aws, role_template: RoleTemplate
) -> None:
    iam = aws.client("iam", account="200000000000")
    role_arn = iam.create_role(RoleName="TrustProbe", AssumeRolePolicyDocument=json.dumps(
        role_template.trust))["Role"]["Arn"]
    server.service_role_session(aws.emulator, service=LAMBDA, role_arn=role_arn,
                                session_name="probe")
    with pytest.raises(server.EmulatorError):
        server.service_role_session(aws.emulator, service="secretsmanager.amazonaws.com",
                                    role_arn=role_arn, session_name="probe")
