"""The rotation function against moto: the four steps, crashes and retries, the IAM key limit,
the grace-period sweep, failures and notices. Everything runs the real handler code; crashes
and STS rejections are injected at the AWS boundary (botocore events), never into our code."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import enable_iam_authentication

from key_rotation import handler, rotation
from key_rotation.rotation import AwsClients, RotationError
from phi_core import naming
from security.role_calls import rotation_handler_calls

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
SLUG = "acme"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


class SimulatedCrash(Exception):
    """Stands for the function dying (timeout, out of memory) at a chosen AWS call."""


@dataclass
class World:
    secret_arn: str
    user_name: str
    topic_arn: str
    queue_url: str
    first_key_id: str
    first_document: dict[str, Any]
    sm: Any
    iam: Any
    sqs: Any
    seen_secret_keys: set[str] = field(default_factory=set)

    # --- driving the function -------------------------------------------------------------

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """The real Lambda entry point, with the environment the stack provides."""
        return handler.main(event, None)

    def step(self, step: str, token: str) -> dict[str, Any]:
        return self.invoke(self.event(step, token))

    def run(self, event: dict[str, Any], *, at: datetime | None = None,
            clients: rotation.AwsClients | None = None,
            sleep: Callable[[float], None] | None = None) -> dict[str, Any]:
        """The handler's own wiring, with a chosen clock, clients (failure injection) or sleep."""
        return rotation.handle_event(
            event, handler.settings_from_env(os.environ), clients or handler.build_clients(),
            now=(lambda: at) if at else utcnow, sleep=sleep or (lambda _seconds: None))

    def sweep(self, at: datetime) -> dict[str, Any]:
        return self.run({"action": "sweep"}, at=at)

    def event(self, step: str, token: str) -> dict[str, Any]:
        return {"SecretId": self.secret_arn, "ClientRequestToken": token, "Step": step}

    def rotate(self, token: str) -> None:
        for step in STEPS:
            self.step(step, token)
        self.remember_secrets()

    # --- observing ------------------------------------------------------------------------

    def access_keys(self) -> dict[str, str]:
        """Access key id -> status, for the partner user."""
        metadata = self.iam.list_access_keys(UserName=self.user_name)["AccessKeyMetadata"]
        return {k["AccessKeyId"]: k["Status"] for k in metadata}

    def document(self, stage: str = "AWSCURRENT") -> dict[str, Any]:
        value = self.sm.get_secret_value(SecretId=self.secret_arn, VersionStage=stage)
        return json.loads(value["SecretString"])

    def stages(self) -> dict[str, list[str]]:
        return self.sm.describe_secret(SecretId=self.secret_arn)["VersionIdsToStages"]

    def remember_secrets(self) -> None:
        """Collect every secret access key any version holds, to prove none leaks."""
        for version_id in self.stages():
            try:
                value = self.sm.get_secret_value(SecretId=self.secret_arn, VersionId=version_id)
            except self.sm.exceptions.ResourceNotFoundException:
                continue
            self.seen_secret_keys.add(json.loads(value["SecretString"])["secret_access_key"])

    def notices(self) -> list[dict[str, Any]]:
        """Drain the queue: each item has subject, message, event and the raw SQS body."""
        out: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue_url,
                                             MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return out
            for message in batch:
                body = json.loads(message["Body"])
                out.append({"subject": body.get("Subject", ""), "message": body["Message"],
                            "event": body["MessageAttributes"]["event"]["Value"],
                            "raw": message["Body"]})
                self.sqs.delete_message(QueueUrl=self.queue_url,
                                        ReceiptHandle=message["ReceiptHandle"])


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def world(aws: None, monkeypatch: pytest.MonkeyPatch) -> World:
    iam = boto3.client("iam", region_name=REGION)
    sm = boto3.client("secretsmanager", region_name=REGION)
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    kms = boto3.client("kms", region_name=REGION)

    user_name = naming.partner_user_name(SLUG)
    iam.create_user(UserName=user_name)
    first = iam.create_access_key(UserName=user_name)["AccessKey"]
    key_arn = kms.create_key(Description="customer key")["KeyMetadata"]["Arn"]
    document = {
        "user_name": user_name,
        "access_key_id": first["AccessKeyId"],
        "secret_access_key": first["SecretAccessKey"],
        "bucket": naming.data_bucket_name(SLUG, ACCOUNT, REGION),
        "region": REGION,
        "bucket_owner": ACCOUNT,
        "kms_key_arn": key_arn,
        "inbound_prefix": naming.INBOUND_PREFIX,  # a field of older secrets: copied forward
        "outbound_prefix": "",  # a disabled direction: must be copied forward as is
    }
    secret_arn = sm.create_secret(Name=naming.partner_secret_name(SLUG), KmsKeyId=key_arn,
                                  SecretString=json.dumps(document))["ARN"]
    topic_arn = sns.create_topic(Name=naming.notices_topic_name(SLUG))["TopicArn"]
    queue_url = sqs.create_queue(QueueName="notices")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    for name, value in {
        "SECRET_ARN": secret_arn,
        "USER_NAME": user_name,
        "CUSTOMER_SLUG": SLUG,
        "NOTICES_TOPIC_ARN": topic_arn,
        "GRACE_DAYS": "14",
        "DELETE_AFTER_DAYS": "30",
        "TEST_ATTEMPTS": "3",
        "TEST_RETRY_SECONDS": "0.01",
    }.items():
        monkeypatch.setenv(name, value)

    world = World(secret_arn=secret_arn, user_name=user_name, topic_arn=topic_arn,
                  queue_url=queue_url, first_key_id=first["AccessKeyId"],
                  first_document=document, sm=sm, iam=iam, sqs=sqs)
    world.seen_secret_keys.add(first["SecretAccessKey"])
    return world


TOKEN = "11111111-1111-4111-8111-111111111111"
TOKEN_2 = "22222222-2222-4222-8222-222222222222"

def current_key_created(world: World) -> datetime:
    current = world.document()["access_key_id"]
    for meta in world.iam.list_access_keys(UserName=world.user_name)["AccessKeyMetadata"]:
        if meta["AccessKeyId"] == current:
            return meta["CreateDate"].astimezone(UTC)
    raise AssertionError("AWSCURRENT key not in IAM")


def identity_of(access_key_id: str, secret_access_key: str) -> str:
    sts = boto3.client("sts", region_name=REGION, aws_access_key_id=access_key_id,
                       aws_secret_access_key=secret_access_key)
    return sts.get_caller_identity()["Arn"]


def user_arn(world: World) -> str:
    return world.iam.get_user(UserName=world.user_name)["User"]["Arn"]


def crashing_clients(service: str, event_name: str) -> AwsClients:
    """The handler's clients, with one AWS call made to 'crash' before or after it happens."""
    clients = handler.build_clients()

    def crash(**_kwargs: Any) -> None:
        raise SimulatedCrash(event_name)

    getattr(clients, service).meta.events.register(event_name, crash)
    return clients


def run_until_crash(world: World, clients: AwsClients, token: str) -> str:
    """Run the steps in order with crashing clients; return the step that crashed."""
    for step in STEPS:
        try:
            world.run(world.event(step, token), clients=clients)
        except SimulatedCrash:
            return step
    raise AssertionError("no step crashed")


def assert_healthy_after_rotation(world: World, previous_key_id: str) -> str:
    """Exactly the previous and the new key, both active; AWSCURRENT holds a working new key."""
    document = world.document()
    new_key_id = document["access_key_id"]
    assert new_key_id != previous_key_id
    assert world.access_keys() == {previous_key_id: "Active", new_key_id: "Active"}
    assert identity_of(new_key_id, document["secret_access_key"]) == user_arn(world)
    assert world.document("AWSPREVIOUS")["access_key_id"] == previous_key_id
    return new_key_id


def assert_working_key_kept(world: World) -> None:
    """The key the partner uses is still AWSCURRENT, active, and authenticates."""
    document = world.document()
    assert document["access_key_id"] == world.first_key_id
    assert world.access_keys()[world.first_key_id] == "Active"
    assert identity_of(document["access_key_id"], document["secret_access_key"]) == \
        user_arn(world)


# --- the happy path -------------------------------------------------------------------------


def test_full_rotation_makes_new_key_current_and_keeps_previous_key_active(world: World) -> None:
    world.rotate(TOKEN)

    new_key_id = assert_healthy_after_rotation(world, world.first_key_id)
    document = world.document()
    key_fields = {"access_key_id", "secret_access_key", "created_at"}
    assert {k: v for k, v in document.items() if k not in key_fields} == \
        {k: v for k, v in world.first_document.items() if k not in key_fields}
    created_at = datetime.strptime(document["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(created_at.replace(tzinfo=UTC) - utcnow()) < timedelta(minutes=5)
    notices = world.notices()
    assert [n["event"] for n in notices] == ["new-key"]
    assert new_key_id in notices[0]["message"]
    assert world.first_key_id in notices[0]["message"]


def test_every_step_run_twice_gives_the_same_result(world: World) -> None:
    outcomes = []
    for step in STEPS:
        outcomes.append(world.step(step, TOKEN)["outcome"])
        outcomes.append(world.step(step, TOKEN)["outcome"])

    assert outcomes[:2] == ["created", "already-created"]
    assert outcomes[6:] == ["current", "already-current"]
    assert_healthy_after_rotation(world, world.first_key_id)
    # At least once: the repeated finishSecret repeats the same announcement.
    notices = world.notices()
    assert [n["event"] for n in notices] == ["new-key", "new-key"]
    assert notices[0]["message"] == notices[1]["message"]


def test_rotation_retried_after_it_succeeded_changes_nothing(world: World) -> None:
    world.rotate(TOKEN)
    before = (world.access_keys(), world.document())

    world.rotate(TOKEN)

    assert (world.access_keys(), world.document()) == before


# --- crashes and retries --------------------------------------------------------------------


@pytest.mark.parametrize("completed", [1, 2, 3])
def test_crash_between_steps_then_retry_completes_without_a_third_key(
        world: World, completed: int) -> None:
    for step in STEPS[:completed]:
        world.step(step, TOKEN)
    pending_key_id = world.document("AWSPENDING")["access_key_id"]
    assert_working_key_kept(world)

    world.rotate(TOKEN)  # Secrets Manager retries the rotation with the same token

    assert assert_healthy_after_rotation(world, world.first_key_id) == pending_key_id


@pytest.mark.parametrize(("service", "event_name", "crashed_step"), [
    # Key created, response lost: the key exists, no version holds it.
    ("iam", "after-call.iam.CreateAccessKey", "createSecret"),
    # Key created, put never happened.
    ("secretsmanager", "before-call.secrets-manager.PutSecretValue", "createSecret"),
    # Put happened, response lost.
    ("secretsmanager", "after-call.secrets-manager.PutSecretValue", "createSecret"),
    # AWSCURRENT moved, response lost.
    ("secretsmanager", "after-call.secrets-manager.UpdateSecretVersionStage", "finishSecret"),
    # AWSCURRENT moved, the notice (and the failure notice) cannot be published.
    ("sns", "before-call.sns.Publish", "finishSecret"),
])
def test_crash_inside_a_step_then_retry_recovers_without_a_third_key(
        world: World, service: str, event_name: str, crashed_step: str) -> None:
    assert run_until_crash(world, crashing_clients(service, event_name), TOKEN) == crashed_step
    # Whatever AWSCURRENT points at after the crash is a working key, and the first key is
    # still active (the partner may be using it).
    document = world.document()
    assert identity_of(document["access_key_id"], document["secret_access_key"]) == \
        user_arn(world)
    assert world.access_keys()[world.first_key_id] == "Active"
    world.notices()

    world.rotate(TOKEN)

    new_key_id = assert_healthy_after_rotation(world, world.first_key_id)
    assert [n["event"] for n in world.notices()] == ["new-key"]
    assert new_key_id in world.document()["access_key_id"]


def test_rotation_restarted_with_a_new_token_reuses_the_unfinished_key(world: World) -> None:
    world.step("createSecret", TOKEN)
    unfinished_key_id = world.document("AWSPENDING")["access_key_id"]

    world.rotate(TOKEN_2)

    assert assert_healthy_after_rotation(world, world.first_key_id) == unfinished_key_id


def test_key_left_unheld_is_not_deleted_when_it_was_used(world: World) -> None:
    # Someone created a key by hand and uses it: newer than AWSCURRENT, held by no version,
    # but IAM has seen it used, so it is not the residue of a crash.
    by_hand = world.iam.create_access_key(UserName=world.user_name)["AccessKey"]
    identity_of(by_hand["AccessKeyId"], by_hand["SecretAccessKey"])
    before = world.access_keys()

    with pytest.raises(RotationError, match=by_hand["AccessKeyId"]):
        world.step("createSecret", TOKEN)

    assert world.access_keys() == before
    assert_working_key_kept(world)


# --- the IAM limit of two keys --------------------------------------------------------------


def test_two_active_keys_refuses_to_rotate_and_touches_nothing(world: World) -> None:
    world.rotate(TOKEN)  # the previous key is in its grace period: two active keys
    current_id = world.document()["access_key_id"]
    before = (world.access_keys(), world.stages())
    world.notices()

    with pytest.raises(RotationError) as caught:
        world.step("createSecret", TOKEN_2)

    message = str(caught.value)
    assert world.user_name in message
    assert current_id in message
    assert world.first_key_id in message
    assert (world.access_keys(), world.stages()) == before
    notices = world.notices()
    assert [n["event"] for n in notices] == ["rotation-failed"]
    assert world.first_key_id in notices[0]["message"]


def test_two_keys_with_one_inactive_deletes_the_inactive_key(world: World) -> None:
    world.rotate(TOKEN)
    second_id = world.document()["access_key_id"]
    world.sweep(at=current_key_created(world) + timedelta(days=14))  # deactivates the first
    assert world.access_keys() == {world.first_key_id: "Inactive", second_id: "Active"}

    world.rotate(TOKEN_2)

    third_id = assert_healthy_after_rotation(world, second_id)
    assert world.first_key_id not in world.access_keys()
    assert third_id not in (world.first_key_id, second_id)


# --- the grace-period sweep -----------------------------------------------------------------


def test_sweep_deactivates_after_grace_and_deletes_after_delete_period(world: World) -> None:
    world.rotate(TOKEN)
    new_id = world.document()["access_key_id"]
    start = current_key_created(world)
    world.notices()

    def sweep_actions(at: datetime) -> list[tuple[str, str]]:
        result = world.sweep(at=at)
        return [(a["access_key_id"], a["action"]) for a in result["actions"]]

    assert sweep_actions(start + timedelta(days=14) - timedelta(seconds=1)) == []
    assert world.access_keys() == {world.first_key_id: "Active", new_id: "Active"}

    grace_end = start + timedelta(days=14)
    assert sweep_actions(grace_end) == [(world.first_key_id, "deactivated")]
    assert sweep_actions(grace_end) == []  # idempotent
    assert world.access_keys() == {world.first_key_id: "Inactive", new_id: "Active"}
    assert [n["event"] for n in world.notices()] == ["grace-period-ended"]

    deletion_due = grace_end + timedelta(days=30)
    assert sweep_actions(deletion_due - timedelta(seconds=1)) == []
    assert sweep_actions(deletion_due) == [(world.first_key_id, "deleted")]
    assert sweep_actions(deletion_due + timedelta(days=300)) == []
    assert world.access_keys() == {new_id: "Active"}
    assert [n["event"] for n in world.notices()] == ["key-deleted"]


def test_sweep_after_missed_days_deactivates_first_and_deletes_on_the_next_run(
        world: World) -> None:
    world.rotate(TOKEN)
    late = current_key_created(world) + timedelta(days=100)

    first = world.sweep(at=late)["actions"]
    second = world.sweep(at=late)["actions"]

    assert [a["action"] for a in first] == ["deactivated"]
    assert [a["action"] for a in second] == ["deleted"]
    assert set(world.access_keys()) == {world.document()["access_key_id"]}


def test_sweep_never_touches_the_current_or_an_unfinished_rotation_key(world: World) -> None:
    world.step("createSecret", TOKEN)  # a rotation in progress (e.g. testSecret keeps failing)
    pending_id = world.document("AWSPENDING")["access_key_id"]

    result = world.sweep(at=utcnow() + timedelta(days=1000))

    assert result["actions"] == []
    assert world.access_keys() == {world.first_key_id: "Active", pending_id: "Active"}


def test_sweep_leaves_a_key_newer_than_the_current_one_to_the_rotation(world: World) -> None:
    orphan = world.iam.create_access_key(UserName=world.user_name)["AccessKey"]["AccessKeyId"]

    result = world.sweep(at=utcnow() + timedelta(days=1000))

    assert result["actions"] == [{"access_key_id": orphan,
                                  "action": "skipped-newer-than-current"}]
    assert world.access_keys() == {world.first_key_id: "Active", orphan: "Active"}


def test_sweep_through_the_lambda_entry_point(world: World) -> None:
    assert world.invoke({"action": "sweep"})["current_key_id"] == world.first_key_id


# --- a failing test step --------------------------------------------------------------------


def test_new_key_with_the_wrong_identity_fails_test_step_and_keeps_current(
        world: World) -> None:
    world.step("createSecret", TOKEN)
    world.step("setSecret", TOKEN)
    pending_id = world.document("AWSPENDING")["access_key_id"]
    # The new key is gone before it is tested; moto then answers GetCallerIdentity with its
    # default identity, which is not the partner user.
    world.iam.delete_access_key(UserName=world.user_name, AccessKeyId=pending_id)

    with pytest.raises(RotationError, match="not as the partner user"):
        world.step("testSecret", TOKEN)

    assert_working_key_kept(world)
    assert [n["event"] for n in world.notices()] == ["rotation-failed"]


def handler_actions() -> list[str]:
    """What the function's role must be granted, read from the handler's code (the access
    matrix holds the template's role to exactly this, plus the runtime's calls)."""
    return sorted(action for action, _ in rotation_handler_calls())


def clients_with(world: World, actions: list[str]) -> AwsClients:
    """Clients signing as an IAM user that holds exactly ``actions`` (standing in for the
    function's role), for tests run with moto's IAM authentication switched on."""
    name = f"rotation-function-{len(actions)}"
    world.iam.create_user(UserName=name)
    world.iam.put_user_policy(UserName=name, PolicyName="function",
                              PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                                  {"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    key = world.iam.create_access_key(UserName=name)["AccessKey"]
    session = boto3.session.Session(aws_access_key_id=key["AccessKeyId"],
                                    aws_secret_access_key=key["SecretAccessKey"],
                                    region_name=REGION)
    return handler.build_clients(session)


@pytest.fixture
def function_clients(world: World) -> AwsClients:
    return clients_with(world, handler_actions())


def rotate_and_sweep(world: World, clients: AwsClients) -> None:
    """Every code path that calls AWS: a crashed attempt's leftover key (so createSecret's
    clean-up runs), the four steps, and both sweeps (deactivate, then delete)."""
    with enable_iam_authentication():
        clients.iam.create_access_key(UserName=world.user_name)
        for step in STEPS:
            world.run(world.event(step, TOKEN), clients=clients)
        world.run({"action": "sweep"}, clients=clients, at=utcnow() + timedelta(days=14))
        world.run({"action": "sweep"}, clients=clients, at=utcnow() + timedelta(days=44))


def test_rotation_and_sweep_need_no_more_than_the_calls_in_the_code(
        world: World, function_clients: AwsClients) -> None:
    rotate_and_sweep(world, function_clients)

    assert set(world.access_keys()) == {world.document()["access_key_id"]}


def test_the_calls_read_from_the_code_are_the_calls_the_handler_makes(
        world: World, function_clients: AwsClients) -> None:
    made: set[str] = set()

    def record(model: Any, **_kwargs: Any) -> None:
        made.add(f"{model.service_model.signing_name}:{model.name}")

    for client in (function_clients.iam, function_clients.secretsmanager,
                   function_clients.sns):
        client.meta.events.register("before-call", record)
    rotate_and_sweep(world, function_clients)

    assert made == set(handler_actions())


@pytest.mark.parametrize("action", handler_actions())
def test_the_rotation_fails_without_any_one_of_its_calls(world: World, action: str) -> None:
    clients = clients_with(world, [a for a in handler_actions() if a != action])
    with pytest.raises((RotationError, ClientError)):
        rotate_and_sweep(world, clients)


def test_key_rejected_by_sts_is_retried_then_fails_and_keeps_current(
        world: World, function_clients: AwsClients) -> None:
    waits: list[float] = []
    with enable_iam_authentication():
        world.run(world.event("createSecret", TOKEN), clients=function_clients)
        pending_id = function_clients.secretsmanager.get_secret_value(
            SecretId=world.secret_arn, VersionStage="AWSPENDING")["SecretString"]
        function_clients.iam.delete_access_key(
            UserName=world.user_name, AccessKeyId=json.loads(pending_id)["access_key_id"])
        with pytest.raises(RotationError, match=r"InvalidClientTokenId\) on all 3 attempts"):
            world.run(world.event("testSecret", TOKEN), clients=function_clients,
                      sleep=waits.append)

    assert waits == [0.01, 0.01]
    assert_working_key_kept(world)
    assert [n["event"] for n in world.notices()] == ["rotation-failed"]


def test_key_rejected_while_iam_propagates_is_retried_until_it_works(world: World) -> None:
    clients = handler.build_clients()
    rejections: list[str] = []

    def propagating(access_key_id: str, secret_access_key: str) -> Any:
        sts = handler.build_clients().sts_for_key(access_key_id, secret_access_key)

        def reject_twice(**_kwargs: Any) -> None:
            if len(rejections) < 2:
                rejections.append(access_key_id)
                raise ClientError({"Error": {"Code": "InvalidClientTokenId",
                                             "Message": "not yet"}}, "GetCallerIdentity")

        sts.meta.events.register("before-call.sts.GetCallerIdentity", reject_twice)
        return sts

    clients = dataclasses.replace(clients, sts_for_key=propagating)
    waits: list[float] = []
    world.step("createSecret", TOKEN)

    result = world.run(world.event("testSecret", TOKEN), clients=clients, sleep=waits.append)

    assert result["outcome"] == "verified"
    assert waits == [0.01, 0.01]


# --- guards, failures and notices -----------------------------------------------------------


def test_secret_of_another_user_is_refused_before_any_key_is_created(world: World) -> None:
    other = dict(world.first_document, user_name="someone-else")
    world.sm.put_secret_value(SecretId=world.secret_arn, SecretString=json.dumps(other))

    with pytest.raises(RotationError, match="someone-else"):
        world.step("createSecret", TOKEN)

    assert world.access_keys() == {world.first_key_id: "Active"}


def test_event_for_another_secret_is_refused(world: World) -> None:
    event = dict(world.event("createSecret", TOKEN), SecretId="arn:aws:secretsmanager:x")

    with pytest.raises(RotationError, match="this function rotates"):
        world.invoke(event)

    assert world.access_keys() == {world.first_key_id: "Active"}
    assert [n["event"] for n in world.notices()] == ["rotation-failed"]


def test_unknown_event_is_refused(world: World) -> None:
    with pytest.raises(RotationError, match="unrecognised event"):
        world.invoke({"hello": "world"})


def test_failed_failure_notice_does_not_mask_the_original_error(world: World) -> None:
    world.rotate(TOKEN)
    boto3.client("sns", region_name=REGION).delete_topic(TopicArn=world.topic_arn)

    with pytest.raises(RotationError, match="Refusing to delete an active key"):
        world.step("createSecret", TOKEN_2)


def test_no_secret_access_key_in_notices_logs_or_results(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="key_rotation")
    results: list[Any] = []
    for step in STEPS:
        results.append(world.step(step, TOKEN))
    world.remember_secrets()
    with pytest.raises(RotationError):
        world.step("createSecret", TOKEN_2)
    start = current_key_created(world)
    results.append(world.sweep(at=start + timedelta(days=14)))
    results.append(world.sweep(at=start + timedelta(days=44)))

    notices = world.notices()
    assert {n["event"] for n in notices} == {"new-key", "rotation-failed",
                                             "grace-period-ended", "key-deleted"}
    texts = [n["raw"] for n in notices] + [json.dumps(r) for r in results]
    texts += [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert len(world.seen_secret_keys) == 2
    for secret in world.seen_secret_keys:
        assert not any(secret in text for text in texts)


def test_settings_from_env_defaults_and_every_problem_listed() -> None:
    base = {"SECRET_ARN": "arn", "USER_NAME": "u", "CUSTOMER_SLUG": "acme",
            "NOTICES_TOPIC_ARN": "topic"}
    settings = handler.settings_from_env(base)
    assert (settings.grace_days, settings.delete_after_days) == (14, 30)
    assert settings.test_attempts * settings.test_retry_seconds <= 60

    with pytest.raises(ValueError) as caught:
        handler.settings_from_env({"GRACE_DAYS": "two weeks", "TEST_ATTEMPTS": "0"})
    message = str(caught.value)
    for problem in ("SECRET_ARN", "USER_NAME", "CUSTOMER_SLUG", "NOTICES_TOPIC_ARN",
                    "GRACE_DAYS", "TEST_ATTEMPTS"):
        assert problem in message


@pytest.mark.parametrize(("arn", "expected"), [
    ("arn:aws:iam::123456789012:user/phi-exchange-acme-partner", True),
    ("arn:aws-us-gov:iam::123456789012:user/partners/phi-exchange-acme-partner", True),
    ("arn:aws:iam::210987654321:user/phi-exchange-acme-partner", False),
    ("arn:aws:iam::123456789012:user/phi-exchange-acme-partner-2", False),
    ("arn:aws:iam::123456789012:role/phi-exchange-acme-partner", False),
    ("arn:aws:sts::123456789012:user/moto", False),
])
def test_only_the_partner_user_in_our_account_passes_the_identity_check(
        arn: str, expected: bool) -> None:
    settings = rotation.RotationSettings(
        secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf",
        user_name="phi-exchange-acme-partner", customer_slug="acme", notices_topic_arn="t")
    assert rotation._is_partner_user(arn, settings) is expected
