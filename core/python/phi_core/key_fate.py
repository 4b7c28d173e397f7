"""Each access key's fate on the rotation timeline: one rule for the rotation function's daily
sweep (which acts on it), the operator's ``keys`` and ``status`` commands (which explain it)
and the onboarding kit.

The timeline is dated from IAM's CreateDate of the AWSCURRENT key: an older key stays active
``grace_days`` after it (the partner switches), is then deactivated, and deleted
``delete_after_days`` later. The current key, the key of an unfinished rotation and any key
newer than the current one (never announced) are never touched. A key is deleted only once
inactive: a key deactivated today is deleted by a later sweep at the earliest, even when a
missed day means both dates have passed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta


class Fate(enum.StrEnum):
    CURRENT = "current"
    PENDING = "new key of an unfinished rotation"
    UNANNOUNCED = "never announced (left by an interrupted rotation?)"
    IN_GRACE = "previous, in grace period"
    DEACTIVATE = "previous, grace period ended: deactivated by the next sweep"
    WAITING = "deactivated, waiting to be deleted"
    DELETE = "deactivated, deleted by the next sweep"
    UNDATED = "unknown: the AWSCURRENT key is missing from IAM"

    @property
    def sweep_acts(self) -> bool:
        """Whether the sweep changes the key (deactivates or deletes it)."""
        return self in (Fate.DEACTIVATE, Fate.DELETE)


@dataclass(frozen=True)
class Key:
    access_key_id: str
    active: bool
    created: datetime


@dataclass(frozen=True)
class Timeline:
    grace_ends: datetime
    deletion_due: datetime


def timeline(current_created: datetime, *, grace_days: int, delete_after_days: int) -> Timeline:
    grace_ends = current_created + timedelta(days=grace_days)
    return Timeline(grace_ends=grace_ends,
                    deletion_due=grace_ends + timedelta(days=delete_after_days))


def key_fate(key: Key, *, current_key_id: str | None, current_created: datetime | None,
             pending_key_ids: frozenset[str], grace_days: int, delete_after_days: int,
             now: datetime) -> Fate:
    """Where ``key`` stands at ``now`` (see the module docstring)."""
    if key.access_key_id == current_key_id:
        return Fate.CURRENT
    if key.access_key_id in pending_key_ids:
        return Fate.PENDING
    if current_created is None:
        return Fate.UNDATED
    if key.created > current_created:
        return Fate.UNANNOUNCED
    dates = timeline(current_created, grace_days=grace_days,
                     delete_after_days=delete_after_days)
    if key.active:
        return Fate.IN_GRACE if now < dates.grace_ends else Fate.DEACTIVATE
    return Fate.WAITING if now < dates.deletion_due else Fate.DELETE
