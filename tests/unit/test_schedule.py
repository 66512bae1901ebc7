"""Backup schedules: cron in a time zone across DST changes, due runs, RPO age, durations."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from odoo_operator.builders.schedule import (
    backup_age_exceeds,
    is_due,
    next_run,
    parse_duration,
    validate_schedule,
)

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
# 2026 in Amsterdam: clocks go from 02:00 CET to 03:00 CEST on 29 March at 01:00 UTC, and
# from 03:00 CEST back to 02:00 CET on 25 October at 01:00 UTC.
SPRING_FORWARD = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
FALL_BACK = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def runs(
    expression: str, start: datetime, count: int, zone: str = "Europe/Amsterdam"
) -> list[datetime]:
    """``count`` consecutive runs after ``start``."""
    found: list[datetime] = []
    moment = start
    for _ in range(count):
        moment = next_run(expression, zone, moment)
        found.append(moment)
    return found


@pytest.mark.parametrize(
    "expression",
    [
        "0 2 * * *",
        "30 1 * * MON-FRI",
        "*/15 * * * *",
        "0 3 1 * *",
        "0 2 L * *",
        "0 2 * * sun",
        "  0  2 * * *  ",
        "@daily",
        "@hourly",
        "@weekly",
    ],
)
def test_usable_schedules_pass(expression: str) -> None:
    assert validate_schedule(expression, "Europe/Amsterdam") is None


@pytest.mark.parametrize(
    ("expression", "time_zone", "message"),
    [
        ("", "UTC", "schedule is empty"),
        ("   ", "UTC", "schedule is empty"),
        ("0 2 * *", "UTC", "has 4 field(s); a cron expression has five (minute hour"),
        ("0 0 2 * * *", "UTC", "has 6 field(s)"),
        ("0 0 2 * * * 2030", "UTC", "has 7 field(s)"),
        ("@reboot", "UTC", "'@reboot' is not a supported shorthand: use one of @yearly"),
        ("@daily 0", "UTC", "not a supported shorthand"),
        ("61 2 * * *", "UTC", "'61 2 * * *' is not a valid cron expression: "),
        ("0 2 * * funday", "UTC", "is not a valid cron expression"),
        ("*/0 * * * *", "UTC", "is not a valid cron expression"),
        ("H 2 * * *", "UTC", "uses a hashed field (H)"),
        ("0 0 31 4 *", "UTC", "never matches a date"),
        ("0 2 * * *", "Mars/Olympus", "time zone 'Mars/Olympus' is not a known IANA time zone"),
        ("0 2 * * *", "europe/amsterdam", "not a known IANA time zone"),
        ("0 2 * * *", "", "not a known IANA time zone"),
        ("0 2 * * *", "../../etc/passwd", "not a known IANA time zone"),
        ("0 2 * * *", "localtime", "depends on the machine"),
    ],
)
def test_unusable_schedules_say_what_is_wrong(
    expression: str, time_zone: str, message: str
) -> None:
    problem = validate_schedule(expression, time_zone)
    assert problem is not None
    assert message in problem


def test_the_schedule_is_read_on_the_zone_wall_clock_in_winter_and_summer() -> None:
    assert next_run("0 2 * * *", "Europe/Amsterdam", utc(2026, 1, 10, 12)) == utc(2026, 1, 11, 1)
    assert next_run("0 2 * * *", "Europe/Amsterdam", utc(2026, 7, 10, 12)) == utc(2026, 7, 11, 0)
    assert next_run("0 2 * * *", "UTC", utc(2026, 7, 10, 12)) == utc(2026, 7, 11, 2)


def test_the_result_is_utc_whatever_zone_after_is_given_in() -> None:
    after = datetime(2026, 1, 10, 17, tzinfo=timezone(timedelta(hours=5)))  # 12:00 UTC
    result = next_run("0 2 * * *", "Europe/Amsterdam", after)
    assert result == utc(2026, 1, 11, 1)
    assert result.tzinfo is UTC


def test_next_run_is_strictly_after_and_ignores_fractions_of_a_second() -> None:
    slot = utc(2026, 1, 11, 1)
    assert next_run("0 2 * * *", "Europe/Amsterdam", slot) == utc(2026, 1, 12, 1)
    just_before = slot - timedelta(microseconds=1)
    assert next_run("0 2 * * *", "Europe/Amsterdam", just_before) == slot
    assert next_run("0 2 * * *", "Europe/Amsterdam", slot + timedelta(microseconds=1)) == utc(
        2026, 1, 12, 1
    )


def test_a_time_the_clock_skips_runs_once_at_the_jump() -> None:
    # 02:30 does not exist on 29 March: that night's run is at 03:00 CEST, the moment of the
    # jump, and the nights around it keep their 02:30.
    nights = runs("30 2 * * *", utc(2026, 3, 27, 12), 3)
    assert nights == [utc(2026, 3, 28, 1, 30), SPRING_FORWARD, utc(2026, 3, 30, 0, 30)]
    assert [n.astimezone(AMSTERDAM).strftime("%d %H:%M %Z") for n in nights] == [
        "28 02:30 CET",
        "29 03:00 CEST",
        "30 02:30 CEST",
    ]


def test_every_quarter_hour_across_the_spring_jump_has_no_gap_and_no_double() -> None:
    quarters = runs("*/15 * * * *", utc(2026, 3, 29, 0, 30), 4)
    # 01:45 CET, then the skipped 02:00-02:45 collapse into the jump at 03:00 CEST.
    assert quarters == [
        utc(2026, 3, 29, 0, 45),
        SPRING_FORWARD,
        SPRING_FORWARD + timedelta(minutes=15),
        SPRING_FORWARD + timedelta(minutes=30),
    ]


def test_a_time_the_clock_shows_twice_runs_once_at_its_first_occurrence() -> None:
    nights = runs("30 2 * * *", utc(2026, 10, 23, 12), 3)
    assert nights == [
        utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first of the two 02:30s
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]
    # Asked from inside the repeated hour (02:45 CET, after the first 02:30 ran), the next
    # run is the next night's.
    assert next_run("30 2 * * *", "Europe/Amsterdam", FALL_BACK + timedelta(minutes=45)) == utc(
        2026, 10, 26, 1, 30
    )


def test_every_half_hour_across_the_autumn_change_skips_the_repeated_hour() -> None:
    halves = runs("*/30 * * * *", utc(2026, 10, 24, 23, 45), 5)
    assert [h.astimezone(AMSTERDAM).strftime("%H:%M %Z") for h in halves] == [
        "02:00 CEST",
        "02:30 CEST",
        "03:00 CET",
        "03:30 CET",
        "04:00 CET",
    ]
    assert halves[2] - halves[1] == timedelta(minutes=90)


def test_a_daily_schedule_runs_on_every_local_day_of_a_year_with_two_dst_changes() -> None:
    nights = runs("30 2 * * *", utc(2025, 12, 31, 12), 365)
    local = [night.astimezone(AMSTERDAM) for night in nights]
    assert [moment.date() for moment in local] == [
        date(2026, 1, 1) + timedelta(days=n) for n in range(365)
    ]
    odd = {moment.date(): moment.strftime("%H:%M") for moment in local}
    assert odd.pop(date(2026, 3, 29)) == "03:00"
    assert set(odd.values()) == {"02:30"}


def test_next_run_refuses_bad_input_with_the_validation_message() -> None:
    with pytest.raises(ValueError, match="has 4 field"):
        next_run("0 2 * *", "UTC", utc(2026, 1, 1))
    with pytest.raises(ValueError, match="Mars/Olympus"):
        next_run("0 2 * * *", "Mars/Olympus", utc(2026, 1, 1))
    with pytest.raises(ValueError, match=r"after .* has no time zone"):
        next_run("0 2 * * *", "UTC", datetime(2026, 1, 1))


CREATED = utc(2026, 1, 1, 12)  # the instance; nightly at 02:00 UTC


def test_a_new_instance_is_due_once_the_first_scheduled_time_has_passed() -> None:
    assert not is_due("0 2 * * *", "UTC", None, utc(2026, 1, 2, 1, 59), CREATED)
    assert is_due("0 2 * * *", "UTC", None, utc(2026, 1, 2, 2), CREATED)


def test_missed_runs_collapse_into_one() -> None:
    # The operator was down for three nights: one backup is due, not three.
    last = utc(2026, 1, 2, 2)
    now = utc(2026, 1, 5, 9)
    assert is_due("0 2 * * *", "UTC", last, now, CREATED)
    # Once that backup is recorded as the last run, nothing is due until the next night.
    assert not is_due("0 2 * * *", "UTC", now, now + timedelta(hours=16), CREATED)
    assert is_due("0 2 * * *", "UTC", now, utc(2026, 1, 6, 2), CREATED)


def test_a_run_just_taken_or_in_the_future_is_not_due_again() -> None:
    assert not is_due("0 2 * * *", "UTC", utc(2026, 1, 5, 2), utc(2026, 1, 5, 2, 1), CREATED)
    assert not is_due("0 2 * * *", "UTC", utc(2026, 2, 1), utc(2026, 1, 20), CREATED)


def test_is_due_refuses_naive_times() -> None:
    naive = datetime(2026, 1, 5)
    for last, now, created in ((naive, CREATED, CREATED), (None, naive, CREATED)):
        with pytest.raises(ValueError, match="has no time zone"):
            is_due("0 2 * * *", "UTC", last, now, created)
    with pytest.raises(ValueError, match=r"created .* has no time zone"):
        is_due("0 2 * * *", "UTC", None, CREATED, naive)


def test_backup_age_exceeds_the_rpo_only_when_strictly_older() -> None:
    rpo = timedelta(hours=26)
    now = utc(2026, 1, 5, 12)
    assert not backup_age_exceeds(rpo, now - timedelta(hours=1), now)
    assert not backup_age_exceeds(rpo, now - rpo, now)
    assert backup_age_exceeds(rpo, now - rpo - timedelta(seconds=1), now)
    assert backup_age_exceeds(rpo, None, now)
    with pytest.raises(ValueError, match="has no time zone"):
        backup_age_exceeds(rpo, datetime(2026, 1, 5), now)


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("26h", timedelta(hours=26)),
        ("90m", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m", timedelta(days=1, hours=2, minutes=3)),
        ("0d1m", timedelta(minutes=1)),
    ],
)
def test_durations_in_the_crd_format_parse(text: str, duration: timedelta) -> None:
    assert parse_duration(text) == duration


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not valid: use whole numbers with the units d, h and m"),
        ("26", "not valid"),
        ("h", "not valid"),
        ("1h 30m", "without spaces"),
        (" 26h", "not valid"),
        ("30m1h", "largest first"),
        ("1.5h", "not valid"),
        ("-1h", "not valid"),
        ("26H", "not valid"),
        ("2w", "not valid"),
        ("30s", "not valid"),
        ("0h", "'0h' is zero"),
        ("0d0h0m", "is zero"),
        ("9999999999d", "too long"),
    ],
)
def test_durations_outside_the_format_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        parse_duration(text)
    assert repr(text) in str(refused.value)
