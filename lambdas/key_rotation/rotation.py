"""Access-key rotation for an ``iam-user`` partner: the four Secrets Manager rotation steps and
the daily grace-period sweep.

Everything here takes its AWS clients and its clock as parameters and returns a result, so the
tests run the real code against moto and move time by passing another clock.

Guarantees, whatever step fails and however often a step is retried:

- The AWSCURRENT key is never deactivated or deleted, and AWSCURRENT only ever moves to a
  version whose key passed ``testSecret``.
- The user never needs a third key: a retry after a crash reuses or removes what the crashed
  attempt left behind (see :func:`create_secret`).
- An active key that the partner may hold is never deleted. Keys are deactivated only by the
  sweep, after the grace period, and deleted only once inactive.
- Every failure publishes a notice (best effort) and re-raises, so the Lambda ``Errors`` metric
  counts it. No secret access key is ever logged, published or put in an exception message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from phi_core import defaults, key_fate
from phi_core import secret as secret_schema
from phi_core.key_fate import Key

logger = logging.getLogger(__name__)

AWSCURRENT = "AWSCURRENT"
AWSPENDING = "AWSPENDING"
AWSPREVIOUS = "AWSPREVIOUS"
IAM_KEYS_PER_USER = 2  # IAM's hard limit on access keys per user
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
SWEEP = "sweep"

Clock = Callable[[], datetime]
Sleep = Callable[[float], None]
StsFactory = Callable[[str, str], Any]


class RotationError(Exception):
    """A step cannot proceed safely. The message says what and why; it never holds a secret."""


@dataclass(frozen=True)
class RotationSettings:
    """What the function needs to know about its one customer.

    ``grace_days`` (default :data:`phi_core.defaults.GRACE_DAYS`): the previous key stays
    active this long after the current key was created. ``delete_after_days`` (default
    :data:`phi_core.defaults.DELETE_AFTER_DAYS`): a deactivated previous key is deleted this
    long after the grace period ends. ``test_attempts`` (default 12) and ``test_retry_seconds``
    (default 5.0): ``testSecret`` tries the new key this often, this far apart, because a new
    IAM key takes a few seconds to work everywhere.
    """

    secret_arn: str
    user_name: str
    customer_slug: str
    notices_topic_arn: str
    grace_days: int = defaults.GRACE_DAYS
    delete_after_days: int = defaults.DELETE_AFTER_DAYS
    test_attempts: int = 12
    test_retry_seconds: float = 5.0


@dataclass(frozen=True)
class AwsClients:
    """The function's boto3 clients. ``sts_for_key(access_key_id, secret_access_key)`` builds an
    STS client that signs with the given key (the key under test, not the function's role)."""

    secretsmanager: Any
    iam: Any
    sns: Any
    sts_for_key: StsFactory


@dataclass(frozen=True)
class StepResult:
    step: str
    outcome: str
    access_key_id: str | None = None


@dataclass(frozen=True)
class SweepAction:
    access_key_id: str
    action: str  # "deactivated" | "deleted" | "skipped-newer-than-current"


@dataclass(frozen=True)
class SweepResult:
    current_key_id: str
    grace_ends: str
    deletion_due: str
    actions: tuple[SweepAction, ...] = field(default_factory=tuple)
    step: str = SWEEP


@dataclass(frozen=True)
class _Version:
    version_id: str
    stages: tuple[str, ...]
    value: Mapping[str, Any] | None  # None: the version holds no readable JSON object

    @property
    def key_id(self) -> str | None:
        key_id = self.value.get(secret_schema.ACCESS_KEY_ID) if self.value else None
        return key_id if isinstance(key_id, str) else None

    @property
    def in_progress(self) -> bool:
        """Pending and not yet current: a rotation that has not finished."""
        return AWSPENDING in self.stages and AWSCURRENT not in self.stages


# --- entry point ----------------------------------------------------------------------------


def handle_event(
    event: Mapping[str, Any],
    settings: RotationSettings,
    aws: AwsClients,
    *,
    now: Clock,
    sleep: Sleep = time.sleep,
) -> dict[str, Any]:
    """Run one rotation step (``{"SecretId", "ClientRequestToken", "Step"}``) or the sweep
    (``{"action": "sweep"}``) and return its result as a JSON-ready dict.

    On any failure: publish a failure notice (best effort) and re-raise.
    """
    label = str(event.get("Step") or event.get("action") or "unknown event")
    try:
        if "Step" in event:
            result: StepResult | SweepResult = _run_step(event, settings, aws, sleep)
        elif event.get("action") == SWEEP:
            result = sweep(settings, aws, now=now)
        else:
            raise RotationError(
                "unrecognised event (fields: " + ", ".join(sorted(map(str, event))) + "); "
                'expected a Secrets Manager rotation step or {"action": "sweep"}')
    except Exception as err:
        logger.exception("%s failed for user %s", label, settings.user_name)
        _publish_failure(aws.sns, settings, label, err)
        raise
    return json.loads(json.dumps(asdict(result)))  # tuples become lists, as JSON has them


def _run_step(event: Mapping[str, Any], settings: RotationSettings, aws: AwsClients,
              sleep: Sleep) -> StepResult:
    step, token, secret_id = event["Step"], event.get("ClientRequestToken"), event.get("SecretId")
    if secret_id != settings.secret_arn:
        # The role is scoped to one secret anyway; this makes a misrouted event fail clearly.
        raise RotationError(f"{step}: event is for secret {secret_id!r}, but this function "
                            f"rotates {settings.secret_arn}")
    if not isinstance(token, str) or not token:
        raise RotationError(f"{step}: event has no ClientRequestToken")
    logger.info("%s: secret %s, token %s", step, secret_id, token)
    if step == "createSecret":
        return create_secret(token, settings, aws)
    if step == "setSecret":
        return set_secret(token, settings, aws)
    if step == "testSecret":
        return test_secret(token, settings, aws, sleep=sleep)
    if step == "finishSecret":
        return finish_secret(token, settings, aws)
    raise RotationError(f"unknown rotation step {step!r}; expected one of {', '.join(STEPS)}")


# --- the four rotation steps ----------------------------------------------------------------


def create_secret(token: str, settings: RotationSettings, aws: AwsClients) -> StepResult:
    """Put a new key as the AWSPENDING version ``token``; idempotent.

    Crash safety rests on one fact: the partner only ever learns of a key when it becomes
    AWSCURRENT, and a new key is always created after the current one. So a key *newer* than
    the AWSCURRENT key has never been announced; it is what an interrupted attempt left behind:

    - if a secret version holds it (an earlier attempt got as far as putting it), it is reused;
    - if no version holds it (the attempt crashed between CreateAccessKey and PutSecretValue),
      its secret is lost for good, so it is deleted when its slot is needed, after checking that
      IAM has never seen it used (a used key means someone else holds it: refuse instead).

    Keys older than the AWSCURRENT key are previous keys the partner may still use: only an
    Inactive one is ever deleted to make room, the oldest first.
    """
    step = "createSecret"
    sm, iam = aws.secretsmanager, aws.iam
    versions = _read_versions(sm, settings.secret_arn, include_deprecated=True)
    mine = next((v for v in versions if v.version_id == token), None)
    if mine is not None and AWSCURRENT in mine.stages:
        return StepResult(step, "already-current", mine.key_id)
    if mine is not None and mine.value is not None:
        if AWSPENDING not in mine.stages:
            raise RotationError(f"{step}: version {token} exists but is neither AWSPENDING nor "
                                "AWSCURRENT; this rotation was superseded")
        logger.info("%s: version %s already holds key %s", step, token, mine.key_id)
        return StepResult(step, "already-created", mine.key_id)

    current = _current_version(versions, settings)
    keys = _list_keys(iam, settings.user_name)
    current_key = next((k for k in keys if k.access_key_id == current.key_id), None)
    if current_key is None:
        logger.warning("%s: the AWSCURRENT key %s of user %s does not exist in IAM; issuing a "
                       "new key", step, current.key_id, settings.user_name)
    # Secrets we hold, by key id (any version other than AWSCURRENT's).
    held = {v.key_id: v for v in versions if v.key_id and v.version_id != current.version_id}
    unannounced = [k for k in keys if current_key is not None and k is not current_key
                   and k.created > current_key.created]

    reusable = sorted((k for k in unannounced
                       if k.active and _holds_key_of(held.get(k.access_key_id), settings)),
                      key=lambda k: k.created)
    if reusable:
        key = reusable[-1]
        held_value = held[key.access_key_id].value
        assert held_value is not None
        secret_access_key = str(held_value.get(secret_schema.SECRET_ACCESS_KEY, ""))
        created, outcome = key.created, "reused-unfinished-key"
        key_id = key.access_key_id
        logger.info("%s: reusing key %s from an unfinished rotation", step, key_id)
    else:
        _make_room(keys, current_key, unannounced, held, settings, iam)
        new = iam.create_access_key(UserName=settings.user_name)["AccessKey"]
        key_id, secret_access_key = new["AccessKeyId"], new["SecretAccessKey"]
        created, outcome = new["CreateDate"], "created"
        logger.info("%s: created key %s for user %s", step, key_id, settings.user_name)

    value = secret_schema.with_new_key(current.value, access_key_id=key_id,
                                       secret_access_key=secret_access_key,
                                       created_at=_iso(created))
    # If this call fails or the function dies before it, the key exists but no version holds
    # it; the retry finds it newer than AWSCURRENT and unheld, and deletes it (see above).
    sm.put_secret_value(SecretId=settings.secret_arn, ClientRequestToken=token,
                        SecretString=json.dumps(value), VersionStages=[AWSPENDING])
    return StepResult(step, outcome, key_id)


def _make_room(keys: list[Key], current_key: Key | None, unannounced: list[Key],
               held: Mapping[str, _Version], settings: RotationSettings, iam: Any) -> None:
    """Delete keys until the user has room for one more, or refuse without touching anything."""
    spare = [k for k in keys if k is not current_key]
    while len(keys) >= IAM_KEYS_PER_USER:
        victim, reason = None, ""
        for key in sorted(unannounced, key=lambda k: k.created):
            if key in keys and key.access_key_id not in held:
                if _ever_used(iam, key.access_key_id):
                    continue  # someone holds this key; it is not ours to delete
                victim, reason = key, "left by an interrupted rotation, never used"
                break
        if victim is None:
            inactive = sorted((k for k in spare if k in keys and not k.active),
                              key=lambda k: k.created)
            if inactive:
                victim, reason = inactive[0], "inactive"
        if victim is None:
            described = [f"{k.access_key_id} ({_why_kept(k, current_key)})"
                         for k in sorted(keys, key=lambda k: k.created)]
            raise RotationError(
                f"createSecret: user {settings.user_name} already has {len(keys)} access keys "
                f"and none can be deleted safely: {', '.join(described)}. Refusing to delete an "
                "active key the partner may use. The daily sweep deactivates a previous key "
                f"{settings.grace_days} days after the current key was created; or deactivate "
                "it by hand, then let the rotation retry.")
        logger.info("createSecret: deleting key %s of user %s (%s) to make room",
                    victim.access_key_id, settings.user_name, reason)
        iam.delete_access_key(UserName=settings.user_name, AccessKeyId=victim.access_key_id)
        keys.remove(victim)


def _why_kept(key: Key, current_key: Key | None) -> str:
    if key is current_key:
        return "AWSCURRENT"
    if current_key is not None and key.created > current_key.created:
        return "active, newer than AWSCURRENT and used: someone holds it"
    return "active previous key, possibly in use"


def set_secret(token: str, settings: RotationSettings, aws: AwsClients) -> StepResult:
    """Check the pending version exists. Nothing is set in IAM: CreateAccessKey in
    ``createSecret`` already made the key usable, and a database-style "set the password"
    step has no counterpart for access keys."""
    version = _version(aws.secretsmanager, settings, token)
    return StepResult("setSecret", "nothing-to-set", version.key_id)


def test_secret(token: str, settings: RotationSettings, aws: AwsClients, *,
                sleep: Sleep = time.sleep) -> StepResult:
    """Sign ``sts:GetCallerIdentity`` with the pending key and check it is the partner user.

    A new IAM key is eventually consistent, so a rejection is retried ``test_attempts`` times,
    ``test_retry_seconds`` apart. An identity other than the partner user is never retried.
    """
    step = "testSecret"
    version = _version(aws.secretsmanager, settings, token)
    value = _require_key_fields(version, settings, step)
    key_id = value[secret_schema.ACCESS_KEY_ID]
    sts = aws.sts_for_key(key_id, value[secret_schema.SECRET_ACCESS_KEY])
    attempts = max(1, settings.test_attempts)
    for attempt in range(1, attempts + 1):
        try:
            identity = sts.get_caller_identity()
            break
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "Unknown")
            if attempt == attempts:
                raise RotationError(f"{step}: new key {key_id} was rejected by STS "
                                    f"({code}) on all {attempts} attempts") from err
            logger.info("%s: key %s rejected (%s), attempt %d of %d; retrying in %.1f s",
                        step, key_id, code, attempt, attempts, settings.test_retry_seconds)
            sleep(settings.test_retry_seconds)
    arn = str(identity.get("Arn", ""))
    if not _is_partner_user(arn, settings):
        raise RotationError(f"{step}: new key {key_id} authenticates as {arn}, not as the "
                            f"partner user {settings.user_name} of account "
                            f"{_account_of(settings.secret_arn)}")
    logger.info("%s: key %s works for %s (attempt %d)", step, key_id, arn, attempt)
    return StepResult(step, "verified", key_id)


def _is_partner_user(arn: str, settings: RotationSettings) -> bool:
    """``arn:<partition>:iam::<account>:user/[<path>/]<name>`` of the partner user, in the
    secret's account. Parsed rather than fetched, so the role needs no iam:GetUser."""
    parts = arn.split(":", 5)
    return (len(parts) == 6 and parts[0] == "arn" and parts[2] == "iam"
            and parts[4] == _account_of(settings.secret_arn)
            and parts[5].startswith("user/")
            and parts[5].rsplit("/", 1)[-1] == settings.user_name)


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""


def finish_secret(token: str, settings: RotationSettings, aws: AwsClients) -> StepResult:
    """Move AWSCURRENT to the pending version and announce the new key; idempotent.

    The previous key stays active: the sweep deactivates it when the grace period ends. The
    "new key" notice is sent every time this step completes, also when the label had already
    moved: a crash between moving the label and publishing is then repaired by the retry. A
    partner may see the same notice twice; never none.
    """
    step = "finishSecret"
    sm = aws.secretsmanager
    version = _version(sm, settings, token)
    value = _require_key_fields(version, settings, step)
    new_key_id = value[secret_schema.ACCESS_KEY_ID]
    labelled = _read_versions(sm, settings.secret_arn, include_deprecated=False)
    if AWSCURRENT in version.stages:
        previous = next((v for v in labelled if AWSPREVIOUS in v.stages), None)
        previous_key_id, outcome = (previous.key_id if previous else None), "already-current"
    else:
        current = _current_version(labelled, settings)
        # Secrets Manager moves AWSPREVIOUS to the version AWSCURRENT is removed from.
        sm.update_secret_version_stage(SecretId=settings.secret_arn, VersionStage=AWSCURRENT,
                                       MoveToVersionId=token,
                                       RemoveFromVersionId=current.version_id)
        logger.info("%s: AWSCURRENT moved from version %s (key %s) to %s (key %s)", step,
                    current.version_id, current.key_id, token, new_key_id)
        previous_key_id, outcome = current.key_id, "current"
    keys = {k.access_key_id: k for k in _list_keys(aws.iam, settings.user_name)}
    new_key = keys.get(new_key_id)
    created = new_key.created if new_key else _parse_iso(value.get(secret_schema.CREATED_AT))
    _publish_new_key(aws.sns, settings, new_key_id, previous_key_id, created)
    return StepResult(step, outcome, new_key_id)


# --- the sweep ------------------------------------------------------------------------------


def sweep(settings: RotationSettings, aws: AwsClients, *, now: Clock) -> SweepResult:
    """Carry out each key's fate on the grace-period timeline (:mod:`phi_core.key_fate`):
    deactivate a previous key whose grace period has ended, delete one deactivated long
    enough. Stateless and idempotent: the timeline is dated from IAM's CreateDate of the
    AWSCURRENT key.
    """
    iam = aws.iam
    versions = _read_versions(aws.secretsmanager, settings.secret_arn, include_deprecated=False)
    current = _current_version(versions, settings)
    pending_ids = frozenset(v.key_id for v in versions if v.in_progress and v.key_id)
    keys = _list_keys(iam, settings.user_name)
    current_key = next((k for k in keys if k.access_key_id == current.key_id), None)
    if current_key is None:
        raise RotationError(f"sweep: the AWSCURRENT key {current.key_id} of user "
                            f"{settings.user_name} does not exist in IAM, so the grace period "
                            "cannot be dated; rotate the secret to issue a working key")
    dates = key_fate.timeline(current_key.created, grace_days=settings.grace_days,
                              delete_after_days=settings.delete_after_days)
    moment = now()
    actions: list[SweepAction] = []
    for key in sorted(keys, key=lambda k: k.created):
        fate = key_fate.key_fate(
            key,
            current_key_id=current_key.access_key_id, current_created=current_key.created,
            pending_key_ids=pending_ids, grace_days=settings.grace_days,
            delete_after_days=settings.delete_after_days, now=moment)
        if fate is key_fate.Fate.UNANNOUNCED:
            logger.warning("sweep: key %s of user %s is newer than the AWSCURRENT key and not "
                           "pending; leaving it for the next rotation", key.access_key_id,
                           settings.user_name)
            actions.append(SweepAction(key.access_key_id, "skipped-newer-than-current"))
        elif fate is key_fate.Fate.DEACTIVATE:
            iam.update_access_key(UserName=settings.user_name, AccessKeyId=key.access_key_id,
                                  Status="Inactive")
            logger.info("sweep: deactivated key %s of user %s", key.access_key_id,
                        settings.user_name)
            actions.append(SweepAction(key.access_key_id, "deactivated"))
            _publish_deactivated(aws.sns, settings, key.access_key_id, current_key,
                                 dates.deletion_due)
        elif fate is key_fate.Fate.DELETE:
            iam.delete_access_key(UserName=settings.user_name, AccessKeyId=key.access_key_id)
            logger.info("sweep: deleted key %s of user %s", key.access_key_id,
                        settings.user_name)
            actions.append(SweepAction(key.access_key_id, "deleted"))
            _publish_deleted(aws.sns, settings, key.access_key_id)
    return SweepResult(current_key_id=current_key.access_key_id,
                       grace_ends=_iso(dates.grace_ends), deletion_due=_iso(dates.deletion_due),
                       actions=tuple(actions))


# --- reading the secret and the user's keys -------------------------------------------------


def _read_versions(sm: Any, secret_arn: str, *, include_deprecated: bool) -> list[_Version]:
    """Every version of the secret with its labels and parsed value.

    ``include_deprecated`` adds versions without labels (older previous keys, abandoned
    rotations). A version without a value (RotateSecret creates the AWSPENDING version before
    ``createSecret`` fills it) or whose value is not a JSON object has ``value`` None.
    """
    versions: list[_Version] = []
    kwargs: dict[str, Any] = {"SecretId": secret_arn, "IncludeDeprecated": include_deprecated}
    while True:
        page = sm.list_secret_version_ids(**kwargs)
        for entry in page.get("Versions", []):
            version_id = entry["VersionId"]
            versions.append(_Version(version_id, tuple(entry.get("VersionStages", [])),
                                     _read_value(sm, secret_arn, version_id)))
        if not page.get("NextToken"):
            return versions
        kwargs["NextToken"] = page["NextToken"]


def _read_value(sm: Any, secret_arn: str, version_id: str) -> Mapping[str, Any] | None:
    try:
        response = sm.get_secret_value(SecretId=secret_arn, VersionId=version_id)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    try:
        value = json.loads(response.get("SecretString") or "")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _version(sm: Any, settings: RotationSettings, token: str) -> _Version:
    """The version ``token`` of a running rotation: it must hold a value and be pending or
    (when Secrets Manager retries after finishSecret) current."""
    stages = sm.describe_secret(SecretId=settings.secret_arn).get("VersionIdsToStages", {})
    if token not in stages:
        raise RotationError(f"secret {settings.secret_arn} has no version {token}; "
                            "run createSecret first")
    if AWSPENDING not in stages[token] and AWSCURRENT not in stages[token]:
        raise RotationError(f"version {token} is neither AWSPENDING nor AWSCURRENT; "
                            "this rotation was superseded")
    value = _read_value(sm, settings.secret_arn, token)
    if value is None:
        raise RotationError(f"version {token} holds no key; run createSecret first")
    return _Version(token, tuple(stages[token]), value)


def _current_version(versions: Iterable[_Version], settings: RotationSettings) -> _Version:
    current = next((v for v in versions if AWSCURRENT in v.stages), None)
    if current is None:
        raise RotationError(f"secret {settings.secret_arn} has no AWSCURRENT version")
    _require_key_fields(current, settings, "AWSCURRENT")
    return current


def _require_key_fields(version: _Version, settings: RotationSettings,
                        what: str) -> Mapping[str, Any]:
    """The version's value, checked to be a key of the partner user (never echoes values)."""
    value = version.value
    try:
        parsed = secret_schema.parse_partner_secret(value)
    except secret_schema.SecretError as err:
        raise RotationError(f"{what}: version {version.version_id} of {settings.secret_arn} "
                            f"{err}") from None
    if parsed.user_name != settings.user_name:
        raise RotationError(f"{what}: version {version.version_id} is for user "
                            f"{parsed.user_name!r}, but this function rotates "
                            f"{settings.user_name!r}")
    assert value is not None
    return value


def _list_keys(iam: Any, user_name: str) -> list[Key]:
    keys: list[Key] = []
    for page in iam.get_paginator("list_access_keys").paginate(UserName=user_name):
        for meta in page.get("AccessKeyMetadata", []):
            keys.append(Key(meta["AccessKeyId"], meta.get("Status") == "Active",
                             _utc(meta["CreateDate"])))
    return keys


def _holds_key_of(version: _Version | None, settings: RotationSettings) -> bool:
    """Whether ``version`` holds a complete key of the partner user (so it can be reused)."""
    try:
        return version is not None and bool(_require_key_fields(version, settings, "held"))
    except RotationError:
        return False


def _ever_used(iam: Any, access_key_id: str) -> bool:
    last = iam.get_access_key_last_used(AccessKeyId=access_key_id).get("AccessKeyLastUsed", {})
    return last.get("LastUsedDate") is not None


# --- notices --------------------------------------------------------------------------------


def _publish(sns: Any, settings: RotationSettings, event: str, subject: str,
             lines: Iterable[str]) -> None:
    sns.publish(
        TopicArn=settings.notices_topic_arn,
        Subject=f"[phi-exchange] {settings.customer_slug}: {subject}"[:100],
        Message="\n".join(lines),
        MessageAttributes={
            "event": {"DataType": "String", "StringValue": event},
            "customer": {"DataType": "String", "StringValue": settings.customer_slug},
        },
    )


def _publish_new_key(sns: Any, settings: RotationSettings, new_key_id: str,
                     previous_key_id: str | None, created: datetime | None) -> None:
    lines = [f"A new access key was issued for IAM user {settings.user_name} "
             f"(customer {settings.customer_slug}).", "",
             f"New access key id: {new_key_id}"]
    if created is not None:
        dates = key_fate.timeline(created, grace_days=settings.grace_days,
                                  delete_after_days=settings.delete_after_days)
        lines.append(f"Issued: {_day(created)}")
        if previous_key_id:
            lines += [f"Previous access key id: {previous_key_id}",
                      f"The previous key keeps working until {_day(dates.grace_ends)}; it is "
                      f"then deactivated, and deleted on or after {_day(dates.deletion_due)}.",
                      "Switch to the new key before the previous one is deactivated."]
    lines += ["", "The secret access key is never sent by notice; obtain it as agreed "
              "(see docs/rotation.md)."]
    _publish(sns, settings, "new-key", "new access key issued", lines)


def _publish_deactivated(sns: Any, settings: RotationSettings, key_id: str, current: Key,
                         deletion_due: datetime) -> None:
    lines = [f"The grace period for access key {key_id} of IAM user {settings.user_name} "
             f"(customer {settings.customer_slug}) has ended; the key is now deactivated.",
             f"The current access key is {current.access_key_id}.",
             f"The deactivated key will be deleted on or after {_day(deletion_due)}."]
    _publish(sns, settings, "grace-period-ended", "grace period ended, previous key deactivated",
             lines)


def _publish_deleted(sns: Any, settings: RotationSettings, key_id: str) -> None:
    lines = [f"Access key {key_id} of IAM user {settings.user_name} (customer "
             f"{settings.customer_slug}) was deleted, as scheduled after its deactivation."]
    _publish(sns, settings, "key-deleted", "previous key deleted", lines)


def _publish_failure(sns: Any, settings: RotationSettings, label: str,
                     err: BaseException) -> None:
    """Best effort: a failed publish is logged and never masks the original error."""
    lines = [f"Key rotation step {label} failed for IAM user {settings.user_name} "
             f"(customer {settings.customer_slug}), secret {settings.secret_arn}.",
             f"Error: {type(err).__name__}: {err}", "",
             "A failed step never deactivates or deletes a key: the key in AWSCURRENT keeps "
             "working. Secrets Manager retries a failed rotation; the daily sweep runs again "
             "tomorrow. Runbook: docs/rotation.md."]
    try:
        _publish(sns, settings, "rotation-failed", f"key rotation FAILED ({label})", lines)
    except Exception:
        logger.exception("could not publish the failure notice for %s", label)


# --- time -----------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%d")


def _parse_iso(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None
