"""When a tenant's scheduled backups run, and whether its newest backup is too old.

Everything here is pure: the caller passes the clock in. Schedules are standard five-field
cron expressions (or the ``@daily``-style shorthands) read in an IANA time zone, so that
``0 2 * * *`` in ``Europe/Amsterdam`` means 02:00 on the Amsterdam wall clock all year.

Cron speaks wall-clock time, and wall clocks jump twice a year. The rules here, the ones
classic cron daemons follow:

- a scheduled time the clock skips (02:30 on the night clocks go forward) runs at the moment
  of the jump, once, however many scheduled times fell into the skipped hour;
- a scheduled time the clock shows twice (02:30 on the night clocks go back) runs once, at
  its first occurrence.

``croniter`` iterates the expression over naive wall-clock times, where no jump exists; each
wall-clock time is then turned into one instant by the two rules above. That keeps croniter's
own time zone handling, which has changed between its releases, out of the result.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

# The shorthands croniter expands to five fields; @reboot has no meaning for a schedule.
SHORTHANDS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
CRON_FIELDS = "minute hour day-of-month month day-of-week"
# Where validation looks for a first match, which "0 0 31 4 *" never has; any start would
# do, a fixed one keeps validation independent of the clock.
_VALIDATION_START = datetime(2000, 1, 1)
_HASHED_FIELD = re.compile(r"(?<![a-z])h(?![a-z])", re.IGNORECASE)
# Same pattern as spec.backup.rpo in the CRD: whole days, hours and minutes, largest first.
_DURATION = re.compile(r"(?:(?P<days>\d+)d)?(?:(?P<hours>\d+)h)?(?:(?P<minutes>\d+)m)?", re.ASCII)
# next_run skips only the matches in the second pass through a repeated hour, a few dozen at
# most; the bound turns a bug into an error instead of a hung reconcile loop.
_MAX_STEPS = 100_000


def load_time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; :class:`ValueError` with a readable message otherwise."""
    problem = _time_zone_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return ZoneInfo(name)


_DUE_SEARCH_WINDOW = timedelta(days=2)


def validate_schedule(expression: str, time_zone: str) -> str | None:
    """None when ``expression`` in ``time_zone`` is a usable schedule, else what is wrong.

    Accepted: five fields (minute hour day-of-month month day-of-week) in croniter's syntax,
    which includes names (``MON``, ``JAN``), ranges, steps, ``L`` and ``W``, or one of the
    shorthands ``@yearly`` ... ``@hourly``. Refused: seconds and year fields, ``@reboot``,
    hashed ``H`` fields, and expressions that never match a date, such as ``0 0 31 4 *``.
    """
    problem = _expression_problem(expression)
    if problem is not None:
        return problem
    return _time_zone_problem(time_zone)


def next_run(expression: str, time_zone: str, after: datetime) -> datetime:
    """The first scheduled instant strictly after ``after``, as an aware UTC datetime.

    Raises :class:`ValueError` for an unusable schedule (the message of
    :func:`validate_schedule`) and for a naive ``after``.
    """
    _require_aware("after", after)
    problem = validate_schedule(expression, time_zone)
    if problem is not None:
        raise ValueError(problem)
    zone = ZoneInfo(time_zone)
    # Scheduled times are whole minutes, so dropping the fraction of a second loses none:
    # croniter's own handling of microseconds then never matters.
    wall = after.astimezone(zone).replace(tzinfo=None, microsecond=0)
    iterator = croniter(expression, wall)
    # wall_clock_instant never decreases as wall-clock time increases, so the first wall-clock time
    # whose instant lies after `after` is the answer. Earlier ones can only come from the
    # second pass through a repeated hour (they ran at the first pass) or from a skipped
    # hour that has already ended.
    for _ in range(_MAX_STEPS):
        candidate = iterator.get_next(datetime)
        if not isinstance(candidate, datetime):  # pragma: no cover - croniter's contract
            raise TypeError(f"croniter returned {candidate!r} instead of a datetime")
        instant = wall_clock_instant(candidate, zone)
        if instant > after:
            return instant
    raise RuntimeError(  # pragma: no cover - unreachable by the argument above
        f"no run of {expression!r} in {time_zone} found after {after.isoformat()}"
    )


def is_due(
    expression: str,
    time_zone: str,
    last_run: datetime | None,
    now: datetime,
    created: datetime,
) -> bool:
    """Whether a scheduled time has passed since the last run (or since ``created``).

    Any number of missed scheduled times collapse into one due run: after an outage the
    caller takes one backup, records ``now`` as the last run, and the schedule carries on.
    A ``last_run`` in the future (a clock that jumped back) is simply not due yet.
    """
    _require_aware("now", now)
    _require_aware("created", created)
    if last_run is not None:
        _require_aware("last_run", last_run)
    since = created if last_run is None else last_run
    return next_run(expression, time_zone, since) <= now


def due_slot(
    expression: str,
    time_zone: str,
    last_run: datetime | None,
    now: datetime,
    created: datetime,
) -> datetime | None:
    """The latest scheduled instant that passed since the last run (or ``created``), or None
    when nothing is due.

    It names the run: the same slot gives the same backup name, so an operator restarted
    between creating a scheduled backup and recording it never creates a second one. Only
    the last two days are searched: older missed times collapse into the same single run.
    """
    if not is_due(expression, time_zone, last_run, now, created):
        return None
    since = created if last_run is None else last_run
    slot = next_run(expression, time_zone, max(since, now - _DUE_SEARCH_WINDOW))
    while (following := next_run(expression, time_zone, slot)) <= now:
        slot = following
    return slot if slot <= now else None


def backup_age_exceeds(rpo: timedelta, newest_good: datetime | None, now: datetime) -> bool:
    """Whether the newest good backup is older than the RPO allows.

    No good backup at all exceeds any RPO: the caller decides whether a tenant that is
    younger than its RPO is already reported, this function only answers the question.
    A backup exactly ``rpo`` old still meets it.
    """
    _require_aware("now", now)
    if newest_good is None:
        return True
    _require_aware("newest_good", newest_good)
    return now - newest_good > rpo


def parse_duration(text: str, allow_zero: bool = False) -> timedelta:
    """``"26h"``, ``"90m"``, ``"7d"``, ``"1h30m"``, ``"1d2h30m"`` as a :class:`timedelta`.

    Whole numbers with the units ``d``, ``h`` and ``m``, largest first, each at most once,
    no spaces: the format the CRD accepts for ``spec.backup.rpo``. A zero duration is
    refused unless ``allow_zero``, since an RPO of zero could never be met; a grace period
    of zero ("no waiting") is meaningful.
    """
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(
            f"duration {text!r} is not valid: use whole numbers with the units d, h and m, "
            f"largest first and without spaces, e.g. 7d, 26h, 90m or 1h30m"
        )
    try:
        duration = timedelta(
            days=int(match["days"] or 0),
            hours=int(match["hours"] or 0),
            minutes=int(match["minutes"] or 0),
        )
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long to represent") from None
    if duration <= timedelta(0) and not allow_zero:
        raise ValueError(f"duration {text!r} is zero; give a duration longer than that")
    return duration


def wall_clock_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant a naive wall-clock time in ``zone`` runs at (see the module rules)."""
    # fold=0 is the first occurrence of a repeated time, and for a skipped time it is read
    # with the offset from before the jump, which puts it after the jump.
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # Skipped: run at the jump, the first instant whose wall-clock time is not before `wall`.
    # fold=1 reads it with the offset from after the jump, which puts it before the jump.
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _expression_problem(expression: str) -> str | None:
    fields = expression.split()
    if not fields:
        return "the backup schedule is empty: give a cron expression such as '0 2 * * *'"
    if fields[0].startswith("@"):
        if len(fields) != 1 or fields[0].lower() not in SHORTHANDS:
            return (
                f"schedule {expression!r} is not a supported shorthand: use one of "
                f"{', '.join(SHORTHANDS)} or five fields ({CRON_FIELDS})"
            )
    elif len(fields) != 5:
        return (
            f"schedule {expression!r} has {len(fields)} field(s); a cron expression has five "
            f"({CRON_FIELDS}), e.g. '0 2 * * *' for 02:00 every day"
        )
    # croniter reads a lone H as a hash of a job id; a schedule must mean the same everywhere.
    # (The letter boundaries leave names such as THU alone.)
    if _HASHED_FIELD.search(expression):
        return f"schedule {expression!r} uses a hashed field (H), which is not supported"
    try:
        iterator = croniter(expression, _VALIDATION_START)
    except (ValueError, TypeError, KeyError) as error:
        return f"schedule {expression!r} is not a valid cron expression: {error}"
    try:
        iterator.get_next(datetime)
    except (ValueError, TypeError, KeyError):
        return f"schedule {expression!r} never matches a date (e.g. it names 31 April)"
    return None


def _time_zone_problem(name: str) -> str | None:
    # The machine's own zone file: the same spec would mean different things on different
    # nodes.
    if name == "localtime":
        return "time zone 'localtime' depends on the machine; name an IANA zone instead"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return (
            f"time zone {name!r} is not a known IANA time zone: use a name such as "
            f"Europe/Amsterdam or UTC"
        )
    return None


def _require_aware(what: str, moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} {moment.isoformat()} has no time zone; use an aware datetime")
