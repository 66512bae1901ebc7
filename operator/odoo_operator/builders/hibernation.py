"""Whether a hibernating tenant is awake at a moment, and until when.

The windows are wall-clock times in the tenant's time zone, so the instants they start and
end at move with daylight saving time: 07:00 in Zurich is 06:00 UTC in summer and 05:00 in
winter. Written here rather than with a cron library: a window is a pair of wall-clock
times on given weekdays, and the only question is which side of its edges a moment is on.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from ..model.hibernation import HibernationPolicy
from .schedule import load_time_zone, wall_clock_instant

# The next change is searched over the coming week and a day: windows repeat weekly.
_SEARCH_DAYS = 8


@dataclass(frozen=True)
class HibernationState:
    """Awake or asleep at a moment; ``until``: when that changes (None: never)."""

    awake: bool
    until: datetime.datetime | None
    woken: bool = False  # awake only because of the wake annotation


def _awake_by_windows(policy: HibernationPolicy, moment: datetime.datetime) -> bool:
    local = moment.astimezone(load_time_zone(policy.time_zone))
    minute = local.hour * 60 + local.minute
    return any(window.covers(local.weekday(), minute) for window in policy.windows)


def _edges(policy: HibernationPolicy, moment: datetime.datetime) -> list[datetime.datetime]:
    """Every instant a window starts or ends in the search range after ``moment``."""
    zone = load_time_zone(policy.time_zone)
    today = moment.astimezone(zone).date()
    edges = set()
    for offset in range(_SEARCH_DAYS + 1):
        day = today + datetime.timedelta(days=offset)
        for window in policy.windows:
            if day.weekday() not in window.days:
                continue
            for minute in (window.start_minute, window.end_minute):
                wall = datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(
                    minutes=minute
                )
                # A window ending at 24:00 ends at the next day's midnight, wall clock; a
                # time the clock skips (spring) happens at the jump, as schedules do.
                edges.add(wall_clock_instant(wall, zone))
    return sorted(edge for edge in edges if edge > moment)


def hibernation_state(
    policy: HibernationPolicy,
    moment: datetime.datetime,
    wake_until: datetime.datetime | None = None,
) -> HibernationState:
    """Awake or asleep at ``moment`` (aware), and the next instant that changes."""
    if wake_until is not None and wake_until > moment:
        # Awake until then; and on, when a window is open at that moment.
        after = hibernation_state(policy, wake_until)
        return HibernationState(True, after.until if after.awake else wake_until, woken=True)
    awake = _awake_by_windows(policy, moment)
    for edge in _edges(policy, moment):
        if _awake_by_windows(policy, edge) != awake:
            return HibernationState(awake, edge)
    return HibernationState(awake, None)
