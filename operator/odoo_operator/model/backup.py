"""Typed, defaulted views of backup settings, OdooBackup and OdooRestore objects.

Defaults mirror the CRDs'. Durations, schedules and retention stay in their text form
here; :mod:`odoo_operator.builders.schedule` and :mod:`~odoo_operator.builders.retention`
interpret them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

BACKUP_PLURAL = "odoobackups"
BACKUP_KIND = "OdooBackup"
RESTORE_PLURAL = "odoorestores"
RESTORE_KIND = "OdooRestore"

BackupReason = Literal["manual", "scheduled", "pre-upgrade", "post-upgrade", "pre-delete"]
VerifyMode = Literal["AfterEachBackup", "Scheduled", "Never"]

# Phases of OdooBackup and OdooRestore, as Jobs have them.
PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
FINISHED = (SUCCEEDED, FAILED)


@dataclass(frozen=True)
class BackupPolicy:
    """``OdooInstance.spec.backup``: schedule, RPO, retention and verification."""

    store: str | None = None
    schedule: str = "0 2 * * *"
    time_zone: str = "UTC"
    suspend: bool = False
    rpo: str = "26h"
    retention: Mapping[str, int] = field(default_factory=dict)
    verify: VerifyMode = "AfterEachBackup"
    verify_schedule: str = "0 4 * * 0"

    @classmethod
    def from_instance(cls, body: Mapping[str, Any]) -> BackupPolicy | None:
        """The instance's policy, or None when it has no ``spec.backup``."""
        raw = (body.get("spec") or {}).get("backup")
        if raw is None:
            return None
        return cls(
            store=raw.get("storeRef"),
            schedule=str(raw.get("schedule", "0 2 * * *")),
            time_zone=str(raw.get("timeZone", "UTC")),
            suspend=bool(raw.get("suspend", False)),
            rpo=str(raw.get("rpo", "26h")),
            retention={str(k): int(v) for k, v in (raw.get("retention") or {}).items()},
            verify=raw.get("verify", "AfterEachBackup"),
            verify_schedule=str(raw.get("verifySchedule", "0 4 * * 0")),
        )


@dataclass(frozen=True)
class BackupRequest:
    """One OdooBackup: which instance, why, and whether it is exempt from pruning."""

    name: str
    instance: str
    reason: BackupReason = "manual"
    retain: bool = False

    @classmethod
    def from_resource(cls, body: Mapping[str, Any]) -> BackupRequest:
        """Read an OdooBackup object."""
        spec = body.get("spec") or {}
        return cls(
            name=str(body["metadata"]["name"]),
            instance=str(spec["instance"]),
            reason=spec.get("reason", "manual"),
            retain=bool(spec.get("retain", False)),
        )


@dataclass(frozen=True)
class RestoreRequest:
    """One OdooRestore: which backup, into which instance, neutralized or not."""

    name: str
    backup: str
    target: str
    neutralize: bool | None = None  # None: the default of the mode (clone yes, in place no)

    @classmethod
    def from_resource(cls, body: Mapping[str, Any]) -> RestoreRequest:
        """Read an OdooRestore object."""
        spec = body.get("spec") or {}
        neutralize = spec.get("neutralize")
        return cls(
            name=str(body["metadata"]["name"]),
            backup=str(spec["backup"]),
            target=str((spec.get("target") or {})["instance"]),
            neutralize=None if neutralize is None else bool(neutralize),
        )

    def neutralizes(self, in_place: bool) -> bool:
        """Whether the restored database is neutralized: clones are, by default."""
        return (not in_place) if self.neutralize is None else self.neutralize
