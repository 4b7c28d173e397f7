"""phi_core.key_fate: each key's fate on the rotation timeline, the one rule the sweep acts on
and the operator's commands explain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from phi_core.key_fate import Fate, Key, key_fate, timeline

CURRENT_CREATED = datetime(2026, 1, 1, tzinfo=UTC)
PREVIOUS_CREATED = CURRENT_CREATED - timedelta(days=365)


def fate(key: Key, days_after_current: float, *, pending: frozenset[str] = frozenset()) -> Fate:
    return key_fate(key, current_key_id="AKIACURRENT", current_created=CURRENT_CREATED,
                    pending_key_ids=pending, grace_days=14, delete_after_days=30,
                    now=CURRENT_CREATED + timedelta(days=days_after_current))


PREVIOUS_ACTIVE = Key("AKIAPREVIOUS", True, PREVIOUS_CREATED)
PREVIOUS_INACTIVE = Key("AKIAPREVIOUS", False, PREVIOUS_CREATED)


@pytest.mark.parametrize(("key", "days", "expected"), [
    (PREVIOUS_ACTIVE, 0, Fate.IN_GRACE),
    (PREVIOUS_ACTIVE, 13.9, Fate.IN_GRACE),
    (PREVIOUS_ACTIVE, 14, Fate.DEACTIVATE),
    # A missed run: both dates have passed, but an active key is only deactivated today.
    (PREVIOUS_ACTIVE, 100, Fate.DEACTIVATE),
    (PREVIOUS_INACTIVE, 43.9, Fate.WAITING),
    (PREVIOUS_INACTIVE, 44, Fate.DELETE),
])
def test_a_previous_key_is_deactivated_after_the_grace_period_then_deleted(key, days, expected):
    assert fate(key, days) is expected
    assert expected.sweep_acts == (expected in (Fate.DEACTIVATE, Fate.DELETE))


def test_the_current_a_pending_and_a_newer_key_are_never_touched():
    assert fate(Key("AKIACURRENT", True, CURRENT_CREATED), 999) is Fate.CURRENT
    assert fate(Key("AKIAPENDING", True, CURRENT_CREATED + timedelta(days=1)), 999,
                pending=frozenset({"AKIAPENDING"})) is Fate.PENDING
    assert fate(Key("AKIANEWER", True, CURRENT_CREATED + timedelta(days=1)),
                999) is Fate.UNANNOUNCED
    assert not any(f.sweep_acts for f in (Fate.CURRENT, Fate.PENDING, Fate.UNANNOUNCED,
                                          Fate.UNDATED))


def test_without_a_current_key_nothing_can_be_dated():
    assert key_fate(PREVIOUS_ACTIVE, current_key_id=None, current_created=None,
                    pending_key_ids=frozenset(), grace_days=14, delete_after_days=30,
                    now=CURRENT_CREATED) is Fate.UNDATED


def test_the_timeline_is_dated_from_the_current_keys_creation():
    dates = timeline(CURRENT_CREATED, grace_days=14, delete_after_days=30)
    assert dates.grace_ends == CURRENT_CREATED + timedelta(days=14)
    assert dates.deletion_due == CURRENT_CREATED + timedelta(days=44)
