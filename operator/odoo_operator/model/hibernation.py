"""``OdooInstance.spec.hibernation``: when a non-production tenant's pods run.

```yaml
spec:
  environment: staging
  hibernation:
    timeZone: Europe/Zurich
    awake:
      - days: [Mon, Tue, Wed, Thu, Fri]
        start: "07:00"
        end: "19:00"
```

Outside every ``awake`` window, web and cron are scaled to zero (phase ``Hibernating``); the
database, filestore and Redis keep everything. The annotation :data:`WAKE_ANNOTATION`, an
RFC 3339 time, keeps the tenant awake until then whatever the windows say.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .names import GROUP

# Set it to an RFC 3339 time (e.g. 2026-12-01T18:00:00Z) to wake a hibernating tenant until
# then; the windows take over again afterwards.
WAKE_ANNOTATION = f"{GROUP}/wake-until"
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_CLOCK = re.compile(r"^(?P<hour>[01][0-9]|2[0-4]):(?P<minute>[0-5][0-9])$")
MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True)
class AwakeWindow:
    """Days of the week (0 = Monday) and the minutes of the day [start, end) awake."""

    days: frozenset[int]
    start_minute: int
    end_minute: int

    def covers(self, weekday: int, minute: int) -> bool:
        """Whether the local ``weekday`` and ``minute`` of the day fall in this window."""
        return weekday in self.days and self.start_minute <= minute < self.end_minute


@dataclass(frozen=True)
class HibernationPolicy:
    """The awake windows of a tenant, in its time zone."""

    time_zone: str
    windows: tuple[AwakeWindow, ...]

    @classmethod
    def from_instance(cls, body: Mapping[str, Any]) -> HibernationPolicy | None:
        """The instance's policy, or None when it has no ``spec.hibernation``. Raises
        :class:`ValueError` naming the field when a window cannot be read (admission refuses
        such a spec first)."""
        raw = (body.get("spec") or {}).get("hibernation")
        if raw is None:
            return None
        windows = []
        for index, item in enumerate(raw.get("awake") or []):
            field = f"spec.hibernation.awake[{index}]"
            days = item.get("days") or list(DAYS)
            unknown = [day for day in days if day not in DAYS]
            if unknown:
                raise ValueError(
                    f"{field}.days: {', '.join(map(str, unknown))} is not one of {', '.join(DAYS)}"
                )
            start = _minute(str(item.get("start", "")), f"{field}.start")
            end = _minute(str(item.get("end", "")), f"{field}.end")
            if start >= end:
                raise ValueError(
                    f"{field}: start {item.get('start')} must be before end {item.get('end')} "
                    "(a window ends on the day it starts; use two windows to span midnight)"
                )
            windows.append(AwakeWindow(frozenset(DAYS.index(d) for d in days), start, end))
        return cls(time_zone=str(raw.get("timeZone") or "UTC"), windows=tuple(windows))


def _minute(text: str, field: str) -> int:
    match = _CLOCK.fullmatch(text)
    minute = int(match["hour"]) * 60 + int(match["minute"]) if match else -1
    if not 0 <= minute <= MINUTES_PER_DAY:
        raise ValueError(f"{field}: {text!r} is not a time of day HH:MM between 00:00 and 24:00")
    return minute


def parse_wake_until(text: str) -> datetime.datetime:
    """The time of :data:`WAKE_ANNOTATION` (RFC 3339, with a time zone)."""
    try:
        # RFC 3339 allows a lower-case t and z; Python 3.11 reads neither, nor Z.
        moment = datetime.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(
            f"metadata.annotations.{WAKE_ANNOTATION}: {text!r} is not an RFC 3339 time with a "
            "time zone, e.g. 2026-12-01T18:00:00Z"
        )
    return moment


def hibernation_problems(body: Mapping[str, Any]) -> list[str]:
    """Why ``spec.hibernation`` cannot be accepted: production tenants never hibernate,
    and every window must be readable. The time zone is checked by the caller."""
    spec = body.get("spec") or {}
    if spec.get("hibernation") is None:
        return []
    problems = []
    environment = spec.get("environment", "production")
    if environment == "production":
        problems.append(
            "spec.hibernation: only staging and development tenants hibernate; this tenant's "
            "spec.environment is production."
        )
    try:
        HibernationPolicy.from_instance(body)
    except ValueError as error:
        problems.append(f"{error}.")
    wake = ((body.get("metadata") or {}).get("annotations") or {}).get(WAKE_ANNOTATION)
    if wake:
        try:
            parse_wake_until(str(wake))
        except ValueError as error:
            problems.append(f"{error}.")
    return problems
