"""Which backups of a tenant to keep and which to prune: grandfather-father-son retention.

Everything here is pure. The reconcile layer lists a tenant's successful ``OdooBackup``
objects as :class:`BackupRecord`, asks :func:`plan_retention` what to prune, deletes those
and records the reasons of the kept ones. Failed or unfinished backups are not this module's
business: pass only backups that completed.

The rules, applied independently to the same list (one backup may satisfy several):

- the newest ``keep_last`` backups;
- the newest backup of each of the ``daily`` most recent calendar days that have a backup,
  days taken in the schedule's time zone; likewise for ISO weeks (``weekly``) and calendar
  months (``monthly``);
- exemptions, whatever the policy says: backups marked ``retain``, the newest verified
  backup (the last one proven to restore) and backups no older than the RPO (they are what
  the RPO is measured against).

"The most recent days that have a backup" rather than "the last N days of the calendar":
a tenant whose backups stopped for a week still keeps ``daily`` daily restore points
instead of losing them one by one as the calendar moves on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from odoo_operator.builders.schedule import load_time_zone

# The spec's field names (camelCase, as in the CRD) and the policy attribute each one sets.
_RETENTION_FIELDS = {
    "keepLast": "keep_last",
    "daily": "daily",
    "weekly": "weekly",
    "monthly": "monthly",
}

REASON_RETAIN = "retain"
REASON_NEWEST_VERIFIED = "newest verified"
REASON_WITHIN_RPO = "younger than RPO"


@dataclass(frozen=True)
class RetentionPolicy:
    """How many restore points of each kind to keep; 0 switches a rule off."""

    keep_last: int = 7
    daily: int = 7
    weekly: int = 4
    monthly: int = 3

    def __post_init__(self) -> None:
        for attribute, spec_name in (
            ("keep_last", "keepLast"),
            ("daily", "daily"),
            ("weekly", "weekly"),
            ("monthly", "monthly"),
        ):
            _check_count(spec_name, getattr(self, attribute))


@dataclass(frozen=True)
class BackupRecord:
    """One completed backup as retention sees it."""

    backup_id: str
    completed_at: datetime  # timezone-aware
    retain: bool = False  # exempt from pruning
    verified: bool = False  # a successful restore verification


@dataclass(frozen=True)
class RetentionDecision:
    """What to keep (and why) and what to delete.

    ``keep`` maps each kept backup id to one reason, newest backup first. When several rules
    keep the same backup the first of this order is given: ``retain``, ``last N``,
    ``daily <date>``, ``weekly <ISO week>``, ``monthly <month>``, ``newest verified``,
    ``younger than RPO``. The two safety nets come last on purpose: seeing one of them in
    status means the policy alone would have deleted that backup.
    """

    keep: dict[str, str]
    prune: list[str]  # oldest first


def plan_retention(
    backups: Sequence[BackupRecord],
    policy: RetentionPolicy,
    now: datetime,
    rpo: timedelta,
    time_zone: str = "UTC",
) -> RetentionDecision:
    """Split ``backups`` into those to keep, with a reason each, and those to prune.

    The order of ``backups`` does not matter. Backups with the same ``completed_at`` are
    ordered by ``backup_id``, so the result is the same for the same input every time. A
    backup id listed twice with identical data counts once; listed with different data it
    raises :class:`ValueError`, as do naive datetimes, a negative ``rpo`` and an unknown
    ``time_zone``.
    """
    _require_aware("now", now)
    if rpo < timedelta(0):
        raise ValueError(f"the RPO must not be negative, got {rpo}")
    zone = load_time_zone(time_zone)
    records = _unique(backups)
    # Newest first: every "keep the newest of ..." rule then takes the first one it meets.
    newest_first = sorted(records, key=lambda r: (r.completed_at, r.backup_id), reverse=True)

    reasons: dict[str, list[str]] = {record.backup_id: [] for record in newest_first}
    for record in newest_first:
        if record.retain:
            reasons[record.backup_id].append(REASON_RETAIN)
    for record in newest_first[: policy.keep_last]:
        reasons[record.backup_id].append(f"last {policy.keep_last}")
    for label, count, period in (
        ("daily", policy.daily, _day),
        ("weekly", policy.weekly, _iso_week),
        ("monthly", policy.monthly, _month),
    ):
        for backup_id, name in _newest_per_period(newest_first, count, zone, period):
            reasons[backup_id].append(f"{label} {name}")
    verified = next((record for record in newest_first if record.verified), None)
    if verified is not None:
        reasons[verified.backup_id].append(REASON_NEWEST_VERIFIED)
    for record in newest_first:
        # "No older than" rather than strictly younger: a backup exactly one RPO old still
        # satisfies the RPO (see schedule.backup_age_exceeds), so it must still exist.
        if now - record.completed_at <= rpo:
            reasons[record.backup_id].append(REASON_WITHIN_RPO)

    keep = {backup_id: why[0] for backup_id, why in reasons.items() if why}
    prune = [record.backup_id for record in reversed(newest_first) if not reasons[record.backup_id]]
    return RetentionDecision(keep=keep, prune=prune)


def parse_retention(mapping: Mapping[str, object] | None) -> RetentionPolicy:
    """The policy of an instance's ``spec.backup.retention``; absent fields take the defaults.

    Raises :class:`ValueError` naming the field for unknown fields and for values that are
    not whole numbers of zero or more (booleans included: YAML turns ``yes`` into true).
    """
    if mapping is None:
        return RetentionPolicy()
    unknown = sorted(set(mapping) - set(_RETENTION_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown retention field(s) {', '.join(unknown)}; "
            f"the fields are {', '.join(_RETENTION_FIELDS)}"
        )
    values: dict[str, int] = {}
    for spec_name, attribute in _RETENTION_FIELDS.items():
        if spec_name in mapping:
            values[attribute] = _check_count(spec_name, mapping[spec_name])
    return RetentionPolicy(**values)


def _check_count(spec_name: str, value: object) -> int:
    # bool is a subclass of int: without this check `keepLast: true` would mean 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"retention {spec_name} must be a whole number of 0 or more, "
            f"got {value!r} ({type(value).__name__})"
        )
    if value < 0:
        raise ValueError(f"retention {spec_name} must be 0 or more, got {value}")
    return value


def _require_aware(what: str, moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} {moment.isoformat()} has no time zone; use an aware datetime")


def _unique(backups: Sequence[BackupRecord]) -> list[BackupRecord]:
    by_id: dict[str, BackupRecord] = {}
    for record in backups:
        _require_aware(f"backup {record.backup_id} completed_at", record.completed_at)
        seen = by_id.setdefault(record.backup_id, record)
        if seen != record:
            raise ValueError(
                f"backup {record.backup_id} is listed twice with different data "
                f"({seen} and {record})"
            )
    return list(by_id.values())


def _newest_per_period(
    newest_first: Sequence[BackupRecord],
    count: int,
    zone: ZoneInfo,
    period: Callable[[datetime], str],
) -> list[tuple[str, str]]:
    """(backup id, period name) of the newest backup of each of the ``count`` newest periods."""
    chosen: list[tuple[str, str]] = []
    seen: set[str] = set()
    for record in newest_first:
        if len(chosen) >= count:
            break
        name = period(record.completed_at.astimezone(zone))
        if name not in seen:
            seen.add(name)
            chosen.append((record.backup_id, name))
    return chosen


def _day(local: datetime) -> str:
    return local.date().isoformat()


def _iso_week(local: datetime) -> str:
    # The ISO year, not the calendar year: 2027-01-01 belongs to week 2026-W53.
    iso = local.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def _month(local: datetime) -> str:
    return f"{local.year}-{local.month:02d}"
