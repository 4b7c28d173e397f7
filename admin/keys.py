"""Where every ``iam-user`` partner's access keys stand: status, age, the secret's rotation
dates, and each key's place on the grace-period timeline.

The timeline is the one the rotation function's sweep acts on, :mod:`phi_core.key_fate`: it is
dated from the IAM CreateDate of the AWSCURRENT key; an older key stays active ``grace_days``
after it, is then deactivated, and deleted ``delete_after_days`` later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from phi_core import key_fate, naming
from phi_core import secret as secret_schema
from stacks.config import CustomerConfig, Rotation


@dataclass(frozen=True)
class KeyReport:
    access_key_id: str
    status: str
    created: datetime
    age_days: int
    state: str


@dataclass(frozen=True)
class CustomerReport:
    slug: str
    user_name: str
    secret_name: str
    interval_days: int
    keys: tuple[KeyReport, ...] = ()
    rotation_enabled: bool = False
    last_rotated: datetime | None = None
    next_rotation: datetime | None = None
    days_to_rotation: int | None = None
    problem: str | None = None  # why nothing (or not everything) could be read

    def to_json(self) -> dict[str, Any]:
        def day(moment: datetime | None) -> str | None:
            return _day(moment) if moment else None

        return {
            "customer": self.slug, "user_name": self.user_name, "secret": self.secret_name,
            "rotation_enabled": self.rotation_enabled, "interval_days": self.interval_days,
            "last_rotated": day(self.last_rotated), "next_rotation": day(self.next_rotation),
            "days_to_rotation": self.days_to_rotation, "problem": self.problem,
            "keys": [{"access_key_id": k.access_key_id, "status": k.status,
                      "created": _day(k.created), "age_days": k.age_days, "state": k.state}
                     for k in self.keys],
        }


def key_state(*, access_key_id: str, active: bool, created: datetime,
              current_key_id: str | None, current_created: datetime | None,
              pending_key_ids: frozenset[str], rotation: Rotation, now: datetime) -> str:
    """One key's place on the rotation timeline (:mod:`phi_core.key_fate`), in words."""
    fate = key_fate.key_fate(
        key_fate.Key(access_key_id, active, created), current_key_id=current_key_id,
        current_created=current_created, pending_key_ids=pending_key_ids,
        grace_days=rotation.grace_days, delete_after_days=rotation.delete_after_days, now=now)
    if current_created is None or fate not in (key_fate.Fate.IN_GRACE,
                                               key_fate.Fate.DEACTIVATE,
                                               key_fate.Fate.WAITING):
        return fate.value
    dates = key_fate.timeline(current_created, grace_days=rotation.grace_days,
                              delete_after_days=rotation.delete_after_days)
    if fate is key_fate.Fate.IN_GRACE:
        left = (dates.grace_ends.date() - now.date()).days
        return f"previous, in grace period until {_day(dates.grace_ends)} ({left} days left)"
    if fate is key_fate.Fate.DEACTIVATE:
        return (f"previous, grace period ended {_day(dates.grace_ends)}: deactivated by the "
                "next sweep")
    return f"deactivated, deleted on or after {_day(dates.deletion_due)}"


def customer_report(customer: CustomerConfig, *, iam: Any, secretsmanager: Any,
                    now: datetime) -> CustomerReport:
    """Read one customer's user and secret. A user or secret that does not exist is reported
    (the stack may not be deployed yet); any other AWS error propagates."""
    rotation = customer.rotation or Rotation()
    report = CustomerReport(slug=customer.slug,
                            user_name=naming.partner_user_name(customer.slug),
                            secret_name=naming.partner_secret_name(customer.slug),
                            interval_days=rotation.interval_days)
    try:
        described = secretsmanager.describe_secret(SecretId=report.secret_name)
    except ClientError as err:
        if _code(err) != "ResourceNotFoundException":
            raise
        return replace(report, problem=f"not deployed: no secret {report.secret_name}")
    try:
        metadata = _list_keys(iam, report.user_name)
    except ClientError as err:
        if _code(err) != "NoSuchEntity":
            raise
        return replace(report, problem=f"not deployed: no IAM user {report.user_name}")

    stages: dict[str, list[str]] = described.get("VersionIdsToStages", {})
    current_key_id = _key_id(secretsmanager, report.secret_name,
                             next((v for v, s in stages.items() if "AWSCURRENT" in s), None))
    pending_key_ids = frozenset(
        key_id for version, labels in stages.items()
        if "AWSPENDING" in labels and "AWSCURRENT" not in labels
        for key_id in [_key_id(secretsmanager, report.secret_name, version)] if key_id)
    created_by_id = {m["AccessKeyId"]: _utc(m["CreateDate"]) for m in metadata}
    current_created = created_by_id.get(current_key_id) if current_key_id else None

    keys = tuple(
        KeyReport(
            access_key_id=m["AccessKeyId"], status=m["Status"],
            created=created_by_id[m["AccessKeyId"]],
            age_days=(now - created_by_id[m["AccessKeyId"]]).days,
            state=key_state(access_key_id=m["AccessKeyId"], active=m["Status"] == "Active",
                            created=created_by_id[m["AccessKeyId"]],
                            current_key_id=current_key_id, current_created=current_created,
                            pending_key_ids=pending_key_ids, rotation=rotation, now=now))
        for m in sorted(metadata, key=lambda m: m["CreateDate"]))
    next_rotation = _maybe_utc(described.get("NextRotationDate"))
    problem = None
    if current_key_id is None:
        problem = f"secret {report.secret_name} holds no readable AWSCURRENT access key"
    elif current_created is None:
        problem = f"the AWSCURRENT key {current_key_id} does not exist in IAM"
    return replace(
        report, keys=keys, rotation_enabled=bool(described.get("RotationEnabled")),
        last_rotated=_maybe_utc(described.get("LastRotatedDate")), next_rotation=next_rotation,
        days_to_rotation=(next_rotation.date() - now.date()).days if next_rotation else None,
        problem=problem)


def _list_keys(iam: Any, user_name: str) -> list[dict[str, Any]]:
    metadata: list[dict[str, Any]] = []
    for page in iam.get_paginator("list_access_keys").paginate(UserName=user_name):
        metadata.extend(page.get("AccessKeyMetadata", []))
    return metadata


def _key_id(secretsmanager: Any, secret_name: str, version_id: str | None) -> str | None:
    """The access key id a version holds (never its secret), or None if it holds none."""
    if version_id is None:
        return None
    try:
        value = secretsmanager.get_secret_value(SecretId=secret_name, VersionId=version_id)
        document = json.loads(value.get("SecretString") or "")
    except ClientError as err:
        if _code(err) == "ResourceNotFoundException":
            return None
        raise
    except ValueError:
        return None
    try:
        return secret_schema.parse_partner_secret(
            document, require=(secret_schema.ACCESS_KEY_ID,
                               secret_schema.SECRET_ACCESS_KEY)).access_key_id
    except secret_schema.SecretError:
        return None


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _maybe_utc(moment: Any) -> datetime | None:
    return _utc(moment) if isinstance(moment, datetime) else None


def _day(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%d")
