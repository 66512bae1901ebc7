"""Hibernation of non-production tenants: the awake windows, the wake annotation, what
admission refuses and the pod-hours a sleeping tenant saves."""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from odoo_operator import metrics
from odoo_operator.builders.hibernation import HibernationState, hibernation_state
from odoo_operator.handlers.admission import hibernation_admission_problems
from odoo_operator.model.hibernation import (
    WAKE_ANNOTATION,
    AwakeWindow,
    HibernationPolicy,
    hibernation_problems,
    parse_wake_until,
)
from odoo_operator.model.outcome import Outcome
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.reconcile.instance import Stalled, _hibernation_state, _hibernation_status

ZURICH = ZoneInfo("Europe/Zurich")
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]
SAVED = "odoo_operator_hibernation_saved_pod_hours"


def _body(
    hibernation: Mapping[str, Any] | None,
    environment: str | None = "staging",
    wake: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"version": "18.0", "hosts": ["acme.example.com"]}
    if environment is not None:
        spec["environment"] = environment
    if hibernation is not None:
        spec["hibernation"] = dict(hibernation)
    metadata: dict[str, Any] = {"name": "acme"}
    if wake is not None:
        metadata["annotations"] = {WAKE_ANNOTATION: wake}
    return {"metadata": metadata, "spec": spec}


def _policy(
    *windows: Mapping[str, Any], time_zone: str | None = "Europe/Zurich"
) -> HibernationPolicy:
    hibernation: dict[str, Any] = {"awake": [dict(window) for window in windows]}
    if time_zone is not None:
        hibernation["timeZone"] = time_zone
    policy = HibernationPolicy.from_instance(_body(hibernation))
    assert policy is not None
    return policy


def _office_hours() -> HibernationPolicy:
    """Awake Monday to Friday, 07:00 to 19:00 Zurich time."""
    return _policy({"days": WEEKDAYS, "start": "07:00", "end": "19:00"})


def _zurich(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime.datetime:
    """A Zurich wall-clock time, as the UTC instant it is."""
    local = datetime.datetime(year, month, day, hour, minute, tzinfo=ZURICH)
    return local.astimezone(datetime.UTC)


def _utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime.datetime:
    return datetime.datetime(year, month, day, hour, minute, tzinfo=datetime.UTC)


# --- The awake windows, in the tenant's time zone -------------------------------------------


def test_a_weekday_morning_before_the_window_is_asleep_until_it_opens_on_the_local_clock() -> None:
    # 2026-06-01 is a Monday.
    state = hibernation_state(_office_hours(), _zurich(2026, 6, 1, 6, 59))

    assert state == HibernationState(awake=False, until=_zurich(2026, 6, 1, 7, 0))
    assert state.until == _utc(2026, 6, 1, 5, 0)


def test_the_minute_a_window_opens_is_awake_until_the_local_end_of_the_window() -> None:
    state = hibernation_state(_office_hours(), _zurich(2026, 6, 1, 7, 0))

    assert state == HibernationState(awake=True, until=_zurich(2026, 6, 1, 19, 0))


def test_the_last_minute_of_a_window_is_still_awake() -> None:
    state = hibernation_state(_office_hours(), _zurich(2026, 6, 3, 18, 59))

    assert state.awake
    assert state.until == _zurich(2026, 6, 3, 19, 0)


def test_a_window_ends_at_its_end_minute_and_friday_evening_sleeps_over_the_weekend() -> None:
    # 2026-06-05 is a Friday; the next window opens on Monday 2026-06-08.
    state = hibernation_state(_office_hours(), _zurich(2026, 6, 5, 19, 0))

    assert state == HibernationState(awake=False, until=_zurich(2026, 6, 8, 7, 0))


def test_a_saturday_outside_every_window_is_asleep_until_monday_morning() -> None:
    state = hibernation_state(_office_hours(), _zurich(2026, 6, 6, 12, 0))

    assert state == HibernationState(awake=False, until=_zurich(2026, 6, 8, 7, 0))


def test_a_weekday_evening_sleeps_until_the_next_morning() -> None:
    state = hibernation_state(_office_hours(), _zurich(2026, 6, 2, 22, 30))

    assert state == HibernationState(awake=False, until=_zurich(2026, 6, 3, 7, 0))


def test_the_windows_are_read_in_utc_without_a_time_zone() -> None:
    policy = _policy({"start": "07:00", "end": "19:00"}, time_zone=None)

    assert policy.time_zone == "UTC"
    assert hibernation_state(policy, _utc(2026, 6, 1, 6, 30)) == HibernationState(
        awake=False, until=_utc(2026, 6, 1, 7, 0)
    )


def test_the_state_depends_on_the_instant_not_on_the_zone_the_moment_is_given_in() -> None:
    moment = _zurich(2026, 6, 1, 8, 0)
    in_new_york = moment.astimezone(ZoneInfo("America/New_York"))

    assert hibernation_state(_office_hours(), in_new_york) == hibernation_state(
        _office_hours(), moment
    )


# --- Daylight saving time --------------------------------------------------------------------


def test_a_07_00_zurich_window_opens_at_05_00_utc_in_summer() -> None:
    # 2026-07-06 is a Monday in CEST (UTC+2).
    state = hibernation_state(_office_hours(), _utc(2026, 7, 6, 4, 0))

    assert state == HibernationState(awake=False, until=_utc(2026, 7, 6, 5, 0))
    assert hibernation_state(_office_hours(), _utc(2026, 7, 6, 5, 0)).awake


def test_a_07_00_zurich_window_opens_at_06_00_utc_in_winter() -> None:
    # 2026-12-07 is a Monday in CET (UTC+1).
    state = hibernation_state(_office_hours(), _utc(2026, 12, 7, 5, 30))

    assert state == HibernationState(awake=False, until=_utc(2026, 12, 7, 6, 0))
    assert not hibernation_state(_office_hours(), _utc(2026, 12, 7, 5, 59)).awake
    assert hibernation_state(_office_hours(), _utc(2026, 12, 7, 6, 0)).awake


def test_a_sleep_across_the_spring_switch_ends_at_the_summer_time_instant() -> None:
    # Friday 2026-03-27 19:00 CET; clocks go forward on Sunday 2026-03-29; Monday 07:00 CEST.
    state = hibernation_state(_office_hours(), _utc(2026, 3, 27, 18, 0))

    assert state == HibernationState(awake=False, until=_utc(2026, 3, 30, 5, 0))


def test_a_sleep_across_the_autumn_switch_ends_at_the_winter_time_instant() -> None:
    # Friday 2026-10-23 19:00 CEST; clocks go back on Sunday 2026-10-25; Monday 07:00 CET.
    state = hibernation_state(_office_hours(), _utc(2026, 10, 23, 17, 0))

    assert state == HibernationState(awake=False, until=_utc(2026, 10, 26, 6, 0))


def test_a_window_over_the_spring_switch_lasts_one_hour_less() -> None:
    # Sunday 2026-03-29 00:00 to 06:00 local: 23:00 UTC (CET) to 04:00 UTC (CEST).
    policy = _policy({"days": ["Sun"], "start": "00:00", "end": "06:00"})

    assert hibernation_state(policy, _utc(2026, 3, 28, 22, 0)) == HibernationState(
        awake=False, until=_utc(2026, 3, 28, 23, 0)
    )
    assert hibernation_state(policy, _utc(2026, 3, 28, 23, 0)) == HibernationState(
        awake=True, until=_utc(2026, 3, 29, 4, 0)
    )


def test_a_window_ending_in_the_skipped_spring_hour_ends_when_the_clock_jumps_past_it() -> None:
    policy = _policy({"days": ["Sun"], "start": "01:00", "end": "02:30"})
    moment = _utc(2026, 3, 29, 0, 30)  # 01:30 CET, awake

    state = hibernation_state(policy, moment)
    assert state.awake
    # At 01:00 UTC the local clock reads 03:00 CEST, past the end of the window.
    assert not hibernation_state(policy, _utc(2026, 3, 29, 1, 0)).awake
    assert state.until == _utc(2026, 3, 29, 1, 0)


# --- Whole days and back-to-back windows -----------------------------------------------------


def test_a_window_over_every_whole_day_is_always_awake_and_never_changes() -> None:
    policy = _policy({"start": "00:00", "end": "24:00"})

    for moment in (
        _zurich(2026, 6, 1, 0, 0),
        _zurich(2026, 6, 3, 23, 59),
        _zurich(2026, 6, 7, 12, 0),
        _utc(2026, 3, 29, 1, 0),
        _utc(2026, 10, 25, 1, 0),
    ):
        assert hibernation_state(policy, moment) == HibernationState(awake=True, until=None)


def test_a_window_ending_at_24_00_ends_at_the_next_local_midnight() -> None:
    policy = _policy({"days": ["Mon"], "start": "18:00", "end": "24:00"})

    assert hibernation_state(policy, _zurich(2026, 6, 1, 20, 0)) == HibernationState(
        awake=True, until=_zurich(2026, 6, 2, 0, 0)
    )
    assert not hibernation_state(policy, _zurich(2026, 6, 2, 0, 0)).awake


def test_back_to_back_windows_are_one_awake_period_ending_where_the_second_ends() -> None:
    policy = _policy(
        {"days": ["Mon"], "start": "00:00", "end": "24:00"},
        {"days": ["Tue"], "start": "00:00", "end": "12:00"},
    )

    state = hibernation_state(policy, _zurich(2026, 6, 1, 12, 0))

    assert state == HibernationState(awake=True, until=_zurich(2026, 6, 2, 12, 0))


def test_a_day_in_two_windows_with_a_gap_sleeps_in_the_gap() -> None:
    policy = _policy(
        {"days": ["Mon"], "start": "08:00", "end": "12:00"},
        {"days": ["Mon"], "start": "13:00", "end": "17:00"},
    )

    assert hibernation_state(policy, _zurich(2026, 6, 1, 11, 0)) == HibernationState(
        awake=True, until=_zurich(2026, 6, 1, 12, 0)
    )
    assert hibernation_state(policy, _zurich(2026, 6, 1, 12, 30)) == HibernationState(
        awake=False, until=_zurich(2026, 6, 1, 13, 0)
    )


def test_a_window_once_a_week_is_found_a_week_ahead() -> None:
    policy = _policy({"days": ["Mon"], "start": "07:00", "end": "08:00"})

    # Monday 08:00, just closed: the next opening is seven days later.
    assert hibernation_state(policy, _zurich(2026, 6, 1, 8, 0)) == HibernationState(
        awake=False, until=_zurich(2026, 6, 8, 7, 0)
    )


# --- The wake annotation ---------------------------------------------------------------------


def test_a_wake_time_ahead_wakes_a_sleeping_tenant_until_then() -> None:
    moment = _zurich(2026, 6, 6, 12, 0)  # Saturday: asleep by the windows
    wake_until = moment + datetime.timedelta(hours=2)

    state = hibernation_state(_office_hours(), moment, wake_until)

    assert state == HibernationState(awake=True, until=wake_until, woken=True)


def test_a_wake_time_in_the_past_is_ignored() -> None:
    moment = _zurich(2026, 6, 6, 12, 0)
    wake_until = moment - datetime.timedelta(hours=2)

    state = hibernation_state(_office_hours(), moment, wake_until)

    assert state == HibernationState(awake=False, until=_zurich(2026, 6, 8, 7, 0))


def test_a_wake_time_equal_to_the_moment_is_over() -> None:
    moment = _zurich(2026, 6, 6, 12, 0)

    assert not hibernation_state(_office_hours(), moment, moment).awake


def test_a_wake_time_inside_a_window_keeps_the_tenant_awake_to_the_end_of_that_window() -> None:
    moment = _zurich(2026, 6, 1, 6, 0)  # Monday, an hour before the window opens
    wake_until = _zurich(2026, 6, 1, 9, 0)

    state = hibernation_state(_office_hours(), moment, wake_until)

    assert state == HibernationState(awake=True, until=_zurich(2026, 6, 1, 19, 0), woken=True)


def test_a_wake_time_at_the_end_of_a_window_ends_the_wake_then() -> None:
    moment = _zurich(2026, 6, 1, 6, 0)
    wake_until = _zurich(2026, 6, 1, 19, 0)

    state = hibernation_state(_office_hours(), moment, wake_until)

    assert state == HibernationState(awake=True, until=wake_until, woken=True)


def test_a_wake_time_in_another_zone_is_compared_as_an_instant() -> None:
    moment = _utc(2026, 6, 6, 10, 0)
    # 13:00 in UTC+02:00 is 11:00 UTC: still an hour ahead.
    wake_until = parse_wake_until("2026-06-06T13:00:00+02:00")

    state = hibernation_state(_office_hours(), moment, wake_until)

    assert state == HibernationState(awake=True, until=_utc(2026, 6, 6, 11, 0), woken=True)


# --- Reading spec.hibernation and what is refused --------------------------------------------


def test_without_spec_hibernation_there_is_no_policy_and_nothing_to_refuse() -> None:
    for environment in ("production", "staging", None):
        body = _body(None, environment=environment)
        assert HibernationPolicy.from_instance(body) is None
        assert hibernation_problems(body) == []
        assert hibernation_admission_problems(body) == []


def test_the_policy_reads_days_as_weekday_numbers_and_times_as_minutes_of_the_day() -> None:
    policy = _policy(
        {"days": ["Mon", "Sun"], "start": "07:30", "end": "24:00"},
        {"start": "00:00", "end": "00:01"},
    )

    assert policy == HibernationPolicy(
        time_zone="Europe/Zurich",
        windows=(
            AwakeWindow(frozenset({0, 6}), 7 * 60 + 30, 24 * 60),
            AwakeWindow(frozenset(range(7)), 0, 1),
        ),
    )


@pytest.mark.parametrize("environment", ["production", None])
def test_a_production_tenant_may_not_hibernate(environment: str | None) -> None:
    body = _body({"awake": [{"start": "07:00", "end": "19:00"}]}, environment=environment)

    problems = hibernation_problems(body)

    assert len(problems) == 1
    assert "spec.hibernation" in problems[0]
    assert "production" in problems[0]
    assert hibernation_admission_problems(body) == problems


@pytest.mark.parametrize("environment", ["staging", "development"])
def test_staging_and_development_tenants_may_hibernate(environment: str) -> None:
    body = _body(
        {
            "timeZone": "Europe/Zurich",
            "awake": [{"days": WEEKDAYS, "start": "07:00", "end": "19:00"}],
        },
        environment=environment,
    )

    assert hibernation_problems(body) == []
    assert hibernation_admission_problems(body) == []


def test_an_unknown_day_is_refused_naming_the_days_field_of_its_window() -> None:
    body = _body({"awake": [{"days": ["Mon", "Funday"], "start": "07:00", "end": "19:00"}]})

    with pytest.raises(ValueError, match=r"spec\.hibernation\.awake\[0\]\.days") as raised:
        HibernationPolicy.from_instance(body)
    assert "Funday" in str(raised.value)
    problems = hibernation_problems(body)
    assert len(problems) == 1
    assert "spec.hibernation.awake[0].days" in problems[0]
    assert "Funday" in problems[0]


def test_the_index_of_the_unreadable_window_is_named() -> None:
    body = _body(
        {
            "awake": [
                {"days": ["Mon"], "start": "07:00", "end": "19:00"},
                {"days": ["Tue"], "start": "07:00", "end": "25:00"},
            ]
        }
    )

    problems = hibernation_problems(body)

    assert len(problems) == 1
    assert "spec.hibernation.awake[1].end" in problems[0]


@pytest.mark.parametrize("start", ["25:00", "7:00", "24:30", "07:60", "0700", "", "07:00:00"])
def test_a_start_that_is_not_a_time_of_day_hh_mm_is_refused_naming_start(start: str) -> None:
    body = _body({"awake": [{"start": start, "end": "19:00"}]})

    with pytest.raises(ValueError, match=r"spec\.hibernation\.awake\[0\]\.start"):
        HibernationPolicy.from_instance(body)
    problems = hibernation_problems(body)
    assert len(problems) == 1
    assert "spec.hibernation.awake[0].start" in problems[0]


def test_a_missing_end_is_refused_naming_end() -> None:
    body = _body({"awake": [{"start": "07:00"}]})

    with pytest.raises(ValueError, match=r"spec\.hibernation\.awake\[0\]\.end"):
        HibernationPolicy.from_instance(body)


@pytest.mark.parametrize(
    ("start", "end"), [("19:00", "07:00"), ("07:00", "07:00"), ("24:00", "24:00")]
)
def test_a_window_that_does_not_start_before_it_ends_is_refused(start: str, end: str) -> None:
    body = _body({"awake": [{"start": start, "end": end}]})

    with pytest.raises(ValueError, match=r"spec\.hibernation\.awake\[0\]: start"):
        HibernationPolicy.from_instance(body)
    problems = hibernation_problems(body)
    assert len(problems) == 1
    assert "spec.hibernation.awake[0]" in problems[0]
    assert "before" in problems[0]


def test_every_problem_of_a_production_tenant_with_a_bad_window_is_named() -> None:
    body = _body({"awake": [{"start": "19:00", "end": "07:00"}]}, environment="production")

    problems = hibernation_problems(body)

    assert len(problems) == 2
    assert "production" in problems[0]
    assert "spec.hibernation.awake[0]" in problems[1]


@pytest.mark.parametrize(
    "text",
    ["2026-12-01T18:00:00Z", "2026-12-01T19:00:00+01:00", "2026-12-01T13:00:00-05:00"],
)
def test_a_wake_time_is_an_rfc_3339_time_with_a_time_zone(text: str) -> None:
    assert parse_wake_until(text) == _utc(2026, 12, 1, 18, 0)
    body = _body({"awake": [{"start": "07:00", "end": "19:00"}]}, wake=text)
    assert hibernation_problems(body) == []


@pytest.mark.parametrize("text", ["tomorrow", "2026-12-01T18:00:00", "2026-12-01", "18:00"])
def test_an_unreadable_wake_annotation_is_refused_naming_the_annotation(text: str) -> None:
    with pytest.raises(ValueError, match=WAKE_ANNOTATION):
        parse_wake_until(text)
    body = _body({"awake": [{"start": "07:00", "end": "19:00"}]}, wake=text)
    problems = hibernation_problems(body)
    assert len(problems) == 1
    assert WAKE_ANNOTATION in problems[0]
    assert hibernation_admission_problems(body) == problems


def test_the_wake_annotation_is_the_operators_own() -> None:
    assert WAKE_ANNOTATION == "odoo.tenantops.io/wake-until"


# --- Admission: the time zone ----------------------------------------------------------------


def test_admission_refuses_an_unknown_time_zone_naming_it() -> None:
    body = _body({"timeZone": "Mars/Olympus", "awake": [{"start": "07:00", "end": "19:00"}]})

    problems = hibernation_admission_problems(body)

    assert len(problems) == 1
    assert "spec.hibernation.timeZone" in problems[0]
    assert "Mars/Olympus" in problems[0]


@pytest.mark.parametrize("zone", ["Europe/Zurich", "UTC", "America/New_York"])
def test_admission_accepts_a_known_time_zone(zone: str) -> None:
    body = _body({"timeZone": zone, "awake": [{"start": "07:00", "end": "19:00"}]})

    assert hibernation_admission_problems(body) == []


# --- The reconcile pass ----------------------------------------------------------------------


def test_the_reconcile_pass_stalls_a_production_tenant_with_hibernation() -> None:
    body = _body({"awake": [{"start": "07:00", "end": "19:00"}]}, environment="production")

    with pytest.raises(Stalled, match="production") as raised:
        _hibernation_state(body)
    assert raised.value.reason == "InvalidConfiguration"


def test_the_reconcile_pass_has_no_hibernation_state_without_spec_hibernation() -> None:
    assert _hibernation_state(_body(None)) is None


def test_the_reconcile_pass_stalls_a_tenant_whose_time_zone_is_unknown() -> None:
    body = _body({"timeZone": "Mars/Olympus", "awake": [{"start": "07:00", "end": "19:00"}]})

    with pytest.raises(Stalled, match=r"spec\.hibernation\.timeZone"):
        _hibernation_state(body)


def test_the_status_says_asleep_or_awake_and_until_when_in_utc() -> None:
    asleep = HibernationState(awake=False, until=_zurich(2026, 6, 8, 7, 0))
    woken = HibernationState(awake=True, until=_utc(2026, 6, 6, 14, 0), woken=True)
    always = HibernationState(awake=True, until=None)

    assert _hibernation_status(asleep) == {"state": "Asleep", "until": "2026-06-08T05:00:00Z"}
    assert _hibernation_status(woken) == {
        "state": "Awake",
        "until": "2026-06-06T14:00:00Z",
        "woken": True,
    }
    assert _hibernation_status(always) == {"state": "Awake"}


# --- Saved pod-hours -------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The Unix time metrics.record_outcome reads; set ``clock[0]`` to move it."""
    now = [1_780_000_000.0]
    monkeypatch.setattr(
        metrics, "time", SimpleNamespace(time=lambda: now[0], monotonic=lambda: 0.0)
    )
    metrics.reset()
    yield now
    metrics.reset()


def _sleeper_spec(replicas: int = 2, cron_replicas: int = 1) -> InstanceSpec:
    body = _body({"awake": [{"start": "07:00", "end": "19:00"}]})
    body["spec"]["replicas"] = replicas
    body["spec"]["cron"] = {"replicas": cron_replicas}
    return InstanceSpec.from_resource(body)


def _saved() -> dict[str, float]:
    """The saved pod-hours per instance, as a scrape reads them."""
    series: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == SAVED + "_total":
                series[sample.labels["instance"]] = sample.value
    return series


def _pass(phase: str, at: float, clock: list[float], spec: InstanceSpec | None = None) -> None:
    clock[0] = at
    metrics.record_outcome("acme", Outcome(phase=phase), spec or _sleeper_spec())


def test_two_asleep_passes_count_every_pod_for_the_time_between_them(clock: list[float]) -> None:
    start = clock[0]
    _pass("Hibernating", start, clock)
    _pass("Hibernating", start + 600, clock)

    # (2 web + 1 cron) pods x 600 s = 1800 pod-seconds = 0.5 pod-hours.
    assert _saved() == {"acme": pytest.approx(0.5)}


def test_the_first_asleep_pass_counts_nothing_but_starts_the_series(clock: list[float]) -> None:
    _pass("Hibernating", clock[0], clock)

    assert _saved() == {"acme": 0.0}


def test_asleep_passes_add_up(clock: list[float]) -> None:
    start = clock[0]
    for offset in (0, 120, 240, 3600):
        _pass("Hibernating", start + offset, clock)

    assert _saved() == {"acme": pytest.approx(3 * 3600 / 3600)}


def test_the_pods_counted_are_those_of_the_spec_of_each_pass(clock: list[float]) -> None:
    start = clock[0]
    _pass("Hibernating", start, clock, _sleeper_spec(replicas=4, cron_replicas=2))
    _pass("Hibernating", start + 3600, clock, _sleeper_spec(replicas=4, cron_replicas=2))

    assert _saved() == {"acme": pytest.approx(6.0)}


def test_an_awake_pass_ends_the_sleep_so_the_next_asleep_pass_counts_nothing(
    clock: list[float],
) -> None:
    start = clock[0]
    _pass("Hibernating", start, clock)
    _pass("Hibernating", start + 600, clock)
    _pass("Ready", start + 1200, clock)
    _pass("Hibernating", start + 7200, clock)

    # Only the first 600 s: the awake hours between the passes saved nothing.
    assert _saved() == {"acme": pytest.approx(0.5)}

    _pass("Hibernating", start + 7800, clock)
    assert _saved() == {"acme": pytest.approx(1.0)}


def test_an_instance_that_never_hibernated_has_no_saved_pod_hours_series(
    clock: list[float],
) -> None:
    _pass("Ready", clock[0], clock)
    _pass("Ready", clock[0] + 600, clock)
    metrics.record_outcome("other", Outcome(phase="Hibernating"), _sleeper_spec())

    assert "acme" not in _saved()


def test_a_hibernating_pass_without_a_spec_counts_nothing(clock: list[float]) -> None:
    metrics.record_outcome("acme", Outcome(phase="Hibernating"))
    clock[0] += 600
    metrics.record_outcome("acme", Outcome(phase="Hibernating"))

    assert _saved() == {}


def test_each_instance_counts_its_own_sleep(clock: list[float]) -> None:
    start = clock[0]
    _pass("Hibernating", start, clock)
    metrics.record_outcome("other", Outcome(phase="Hibernating"), _sleeper_spec(1, 0))
    clock[0] = start + 3600
    metrics.record_outcome("other", Outcome(phase="Hibernating"), _sleeper_spec(1, 0))

    assert _saved() == {"acme": 0.0, "other": pytest.approx(1.0)}


def test_a_tenant_that_once_hibernated_keeps_its_series_after_waking(clock: list[float]) -> None:
    _pass("Hibernating", clock[0], clock)
    _pass("Ready", clock[0] + 60, clock)

    assert _saved() == {"acme": 0.0}
