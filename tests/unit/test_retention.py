"""Grandfather-father-son retention: what is kept, why, and what is never pruned."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from odoo_operator.builders.retention import (
    BackupRecord,
    RetentionDecision,
    RetentionPolicy,
    parse_retention,
    plan_retention,
)

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # a Friday, ISO week 2026-W47
RPO = timedelta(hours=26)
NOTHING = RetentionPolicy(keep_last=0, daily=0, weekly=0, monthly=0)


def nightly(day: date, **flags: bool) -> BackupRecord:
    """The backup of ``day``, completed at 02:00 UTC, named after its day."""
    return BackupRecord(
        f"b-{day.isoformat()}", datetime(day.year, day.month, day.day, 2, tzinfo=UTC), **flags
    )


def hundred_nights() -> list[BackupRecord]:
    """2026-08-13 .. 2026-11-20, one a night; one marked retain, two verified."""
    first = date(2026, 8, 13)
    special = {
        date(2026, 8, 20): {"retain": True},
        date(2026, 9, 10): {"verified": True},
        date(2026, 10, 5): {"verified": True},
    }
    return [
        nightly(first + timedelta(days=n), **special.get(first + timedelta(days=n), {}))
        for n in range(100)
    ]


def test_a_hundred_nights_keep_exactly_the_grandfather_father_son_set() -> None:
    policy = RetentionPolicy(keep_last=3, daily=7, weekly=4, monthly=3)
    decision = plan_retention(hundred_nights(), policy, NOW, RPO)
    assert decision.keep == {
        # The three newest; 19 and 20 November are also within the RPO, and 20 November is
        # also the newest of its day, ISO week and month: the first reason is given.
        "b-2026-11-20": "last 3",
        "b-2026-11-19": "last 3",
        "b-2026-11-18": "last 3",
        # The other four of the seven newest days.
        "b-2026-11-17": "daily 2026-11-17",
        "b-2026-11-16": "daily 2026-11-16",
        "b-2026-11-15": "daily 2026-11-15",  # also the newest of 2026-W46 (a Sunday)
        "b-2026-11-14": "daily 2026-11-14",
        # The newest of each of the two ISO weeks before that.
        "b-2026-11-08": "weekly 2026-W45",
        "b-2026-11-01": "weekly 2026-W44",
        "b-2026-10-31": "monthly 2026-10",
        # The newer of the two verified backups only.
        "b-2026-10-05": "newest verified",
        "b-2026-09-30": "monthly 2026-09",
        "b-2026-08-20": "retain",
    }
    assert len(decision.prune) == 100 - 13
    assert decision.prune[0] == "b-2026-08-13"
    assert decision.prune[-1] == "b-2026-11-13"
    assert "b-2026-09-10" in decision.prune  # verified, but not the newest verified
    # Oldest first, and every backup is either kept or pruned, never both.
    assert decision.prune == sorted(decision.prune)
    assert set(decision.keep).isdisjoint(decision.prune)
    assert set(decision.keep) | set(decision.prune) == {b.backup_id for b in hundred_nights()}


def test_the_default_policy_keeps_seven_last_four_weeks_and_three_months() -> None:
    decision = plan_retention(hundred_nights(), RetentionPolicy(), NOW, RPO)
    assert decision.keep == {
        **{f"b-2026-11-{day}": "last 7" for day in range(20, 13, -1)},
        "b-2026-11-08": "weekly 2026-W45",
        "b-2026-11-01": "weekly 2026-W44",
        "b-2026-10-31": "monthly 2026-10",
        "b-2026-10-05": "newest verified",
        "b-2026-09-30": "monthly 2026-09",
        "b-2026-08-20": "retain",
    }


def test_input_order_does_not_matter() -> None:
    backups = hundred_nights()
    expected = plan_retention(backups, RetentionPolicy(), NOW, RPO)
    shuffled = list(backups)
    random.Random(7).shuffle(shuffled)  # noqa: S311 - a fixed order, not a secret
    assert plan_retention(shuffled, RetentionPolicy(), NOW, RPO) == expected
    assert plan_retention(list(reversed(backups)), RetentionPolicy(), NOW, RPO) == expected


def test_backups_with_the_same_timestamp_are_ordered_by_id() -> None:
    moment = datetime(2026, 11, 1, 2, tzinfo=UTC)
    backups = [BackupRecord(name, moment) for name in ("c", "a", "b")]
    policy = RetentionPolicy(keep_last=0, daily=1, weekly=0, monthly=0)
    for ordering in (backups, backups[::-1], sorted(backups, key=lambda b: b.backup_id)):
        decision = plan_retention(ordering, policy, NOW, timedelta(0))
        assert decision == RetentionDecision(keep={"c": "daily 2026-11-01"}, prune=["a", "b"])


def test_the_same_backup_listed_twice_counts_once_and_conflicting_copies_are_refused() -> None:
    backup = nightly(date(2026, 11, 1))
    assert plan_retention([backup, backup], NOTHING, NOW, timedelta(0)).prune == ["b-2026-11-01"]
    moved = BackupRecord(backup.backup_id, backup.completed_at + timedelta(hours=1))
    with pytest.raises(ValueError, match="b-2026-11-01 is listed twice"):
        plan_retention([backup, moved], NOTHING, NOW, timedelta(0))


def test_a_policy_of_zeros_keeps_only_the_exemptions() -> None:
    backups = [
        *hundred_nights(),
        # The nights of 19 and 20 November are 25 and 1 hours old; these two sit at the edge.
        BackupRecord("b-rpo-edge", NOW - RPO),
        BackupRecord("b-just-too-old", NOW - RPO - timedelta(seconds=1)),
    ]
    decision = plan_retention(backups, NOTHING, NOW, RPO)
    assert decision.keep == {
        "b-2026-11-20": "younger than RPO",
        "b-2026-11-19": "younger than RPO",
        "b-rpo-edge": "younger than RPO",  # exactly one RPO old still counts
        "b-2026-10-05": "newest verified",
        "b-2026-08-20": "retain",
    }
    assert "b-just-too-old" in decision.prune


def test_exemptions_hold_however_old_the_backup_is() -> None:
    ancient = BackupRecord("ancient", datetime(2020, 1, 1, tzinfo=UTC), retain=True)
    proven = BackupRecord("proven", datetime(2021, 1, 1, tzinfo=UTC), verified=True)
    unproven = BackupRecord("unproven", datetime(2019, 1, 1, tzinfo=UTC), verified=True)
    # A backup from the future (a skewed clock) is younger than any RPO.
    future = BackupRecord("future", NOW + timedelta(days=1))
    decision = plan_retention([ancient, proven, unproven, future], NOTHING, NOW, RPO)
    assert decision.keep == {
        "future": "younger than RPO",
        "proven": "newest verified",
        "ancient": "retain",
    }
    assert decision.prune == ["unproven"]


def test_no_backups_plan_nothing() -> None:
    assert plan_retention([], RetentionPolicy(), NOW, RPO) == RetentionDecision(keep={}, prune=[])


def test_days_are_calendar_days_of_the_time_zone() -> None:
    # 22:30 and 23:30 UTC on 10 January are 23:30 on the 10th and 00:30 on the 11th in
    # Amsterdam (UTC+1 in winter).
    late = BackupRecord("late", datetime(2026, 1, 10, 22, 30, tzinfo=UTC))
    later = BackupRecord("later", datetime(2026, 1, 10, 23, 30, tzinfo=UTC))
    noon = BackupRecord("noon", datetime(2026, 1, 11, 12, tzinfo=UTC))
    policy = RetentionPolicy(keep_last=0, daily=2, weekly=0, monthly=0)
    backups = [late, later, noon]
    in_utc = plan_retention(backups, policy, NOW, timedelta(0), "UTC")
    assert in_utc.keep == {"noon": "daily 2026-01-11", "later": "daily 2026-01-10"}
    assert in_utc.prune == ["late"]
    in_amsterdam = plan_retention(backups, policy, NOW, timedelta(0), "Europe/Amsterdam")
    assert in_amsterdam.keep == {"noon": "daily 2026-01-11", "late": "daily 2026-01-10"}
    assert in_amsterdam.prune == ["later"]


def test_months_and_iso_weeks_follow_the_time_zone_too() -> None:
    # 31 October 23:30 UTC is already 1 November in Amsterdam (UTC+1 after 25 October).
    halloween = BackupRecord("halloween", datetime(2026, 10, 31, 23, 30, tzinfo=UTC))
    earlier = BackupRecord("earlier", datetime(2026, 10, 30, 12, tzinfo=UTC))
    monthly = RetentionPolicy(keep_last=0, daily=0, weekly=0, monthly=2)
    assert plan_retention([halloween, earlier], monthly, NOW, timedelta(0)).keep == {
        "halloween": "monthly 2026-10"
    }
    assert plan_retention(
        [halloween, earlier], monthly, NOW, timedelta(0), "Europe/Amsterdam"
    ).keep == {"halloween": "monthly 2026-11", "earlier": "monthly 2026-10"}
    # New Year's Eve 2026 falls in ISO week 53 of 2026, and so does 1 January 2027.
    new_year = BackupRecord("new-year", datetime(2027, 1, 1, 12, tzinfo=UTC))
    eve = BackupRecord("eve", datetime(2026, 12, 31, 12, tzinfo=UTC))
    weekly = RetentionPolicy(keep_last=0, daily=0, weekly=2, monthly=0)
    january = datetime(2027, 1, 10, tzinfo=UTC)
    decision = plan_retention([new_year, eve], weekly, january, timedelta(0))
    assert decision == RetentionDecision(keep={"new-year": "weekly 2026-W53"}, prune=["eve"])


def test_naive_times_negative_rpo_and_unknown_zones_are_refused() -> None:
    naive = BackupRecord("naive", datetime(2026, 11, 1, 2))
    with pytest.raises(ValueError, match=r"naive completed_at .* has no time zone"):
        plan_retention([naive], RetentionPolicy(), NOW, RPO)
    with pytest.raises(ValueError, match=r"now .* has no time zone"):
        plan_retention([], RetentionPolicy(), NOW.replace(tzinfo=None), RPO)
    with pytest.raises(ValueError, match="RPO must not be negative"):
        plan_retention([], RetentionPolicy(), NOW, -RPO)
    with pytest.raises(ValueError, match="Mars/Olympus"):
        plan_retention([], RetentionPolicy(), NOW, RPO, "Mars/Olympus")


def test_parse_retention_reads_the_spec_with_defaults() -> None:
    assert parse_retention(None) == RetentionPolicy()
    assert parse_retention({}) == RetentionPolicy(keep_last=7, daily=7, weekly=4, monthly=3)
    assert parse_retention({"keepLast": 2, "monthly": 0}) == RetentionPolicy(
        keep_last=2, daily=7, weekly=4, monthly=0
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"keepLast": -1}, "keepLast must be 0 or more, got -1"),
        ({"daily": "7"}, r"daily must be a whole number of 0 or more, got '7' \(str\)"),
        ({"weekly": 1.5}, r"weekly must be a whole number .* got 1.5 \(float\)"),
        ({"monthly": True}, r"monthly must be a whole number .* got True \(bool\)"),
        ({"yearly": 1}, r"unknown retention field.*yearly.*keepLast, daily, weekly, monthly"),
    ],
)
def test_parse_retention_refuses_what_it_cannot_mean(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_retention(spec)


def test_a_policy_cannot_be_built_with_negative_counts() -> None:
    with pytest.raises(ValueError, match="weekly must be 0 or more"):
        RetentionPolicy(weekly=-2)
