"""Typed views of ``spec.upgrade``, ``spec.maintenanceWindow`` and ``status.upgrade``.

An upgrade moves a tenant from the version and image it runs (``status.runningVersion``,
``status.runningImage``) to the ones its spec asks for. Its steps are recorded in
``status.upgrade`` so that a restarted operator resumes exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .names import GROUP

UPGRADE_NOW_ANNOTATION = f"{GROUP}/upgrade-now"  # start outside the maintenance window
RETRY_UPGRADE_ANNOTATION = f"{GROUP}/retry-upgrade"  # a new value retries a failed upgrade

# Steps, in order. "done" and "failed" are final for one attempt.
BACKUP, COPY, MIGRATE, SWITCH, HEALTH, ROLLBACK, DONE, FAILED = (
    "backup",
    "copy",
    "migrate",
    "switch",
    "health",
    "rollback",
    "done",
    "failed",
)
FINAL_STEPS = (DONE, FAILED)


@dataclass(frozen=True)
class MaintenanceWindow:
    """When upgrades may start: days of the week, a local start time and a duration."""

    days: tuple[str, ...]
    start: str
    duration: str
    time_zone: str = "UTC"


@dataclass(frozen=True)
class UpgradePolicy:
    """``spec.upgrade`` and ``spec.maintenanceWindow`` with the CRD's defaults."""

    modules: str = "all"
    migration_image: str | None = None
    health_timeout: str = "10m"
    window: MaintenanceWindow | None = None
    keep_previous_database: str = "7d"

    @classmethod
    def from_instance(cls, body: Mapping[str, Any]) -> UpgradePolicy:
        """Read an OdooInstance."""
        spec = body.get("spec") or {}
        upgrade = spec.get("upgrade") or {}
        raw_window = spec.get("maintenanceWindow")
        window = None
        if raw_window:
            window = MaintenanceWindow(
                days=tuple(raw_window.get("days") or ()),
                start=str(raw_window["start"]),
                duration=str(raw_window["duration"]),
                time_zone=str(raw_window.get("timeZone", "UTC")),
            )
        return cls(
            modules=str(upgrade.get("modules", "all")),
            migration_image=upgrade.get("migrationImage"),
            health_timeout=str(upgrade.get("healthTimeout", "10m")),
            window=window,
            keep_previous_database=str(upgrade.get("keepPreviousDatabase", "7d")),
        )


def major(version: str) -> int:
    """The major number of an Odoo version such as ``18.0``."""
    return int(version.split(".", 1)[0])
