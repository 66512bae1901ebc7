"""Typed, defaulted views of backup settings, OdooBackup and OdooRestore objects.

Defaults mirror the CRDs'. Durations, schedules and retention stay in their text form
here; :mod:`odoo_operator.builders.schedule` and :mod:`~odoo_operator.builders.retention`
interpret them.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .spec import InstanceSpec

BACKUP_PLURAL = "odoobackups"
BACKUP_KIND = "OdooBackup"
RESTORE_PLURAL = "odoorestores"
RESTORE_KIND = "OdooRestore"

BackupReason = Literal[
    "manual", "scheduled", "pre-upgrade", "post-upgrade", "pre-delete", "point-in-time"
]
VerifyMode = Literal["AfterEachBackup", "Scheduled", "Never"]

# Phases of OdooBackup and OdooRestore, as Jobs have them.
PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
FINISHED = (SUCCEEDED, FAILED)


@dataclass(frozen=True)
class BackupPolicy:
    """``OdooInstance.spec.backup``: schedule, RPO, retention and verification."""

    store: str | None = None
    secondary_store: str | None = None
    schedule: str = "0 2 * * *"
    time_zone: str = "UTC"
    suspend: bool = False
    rpo: str = "26h"
    retention: Mapping[str, int] = field(default_factory=dict)
    verify: VerifyMode = "AfterEachBackup"
    verify_schedule: str = "0 4 * * 0"
    # Restore drills (``spec.backup.drill``): None when the instance asks for none.
    drill_schedule: str | None = None
    drill_suspend: bool = False
    # The recovery time objective a drill is measured against (``spec.backup.rto``).
    rto: str | None = None

    @classmethod
    def from_instance(cls, body: Mapping[str, Any]) -> BackupPolicy | None:
        """The instance's policy, or None when it has no ``spec.backup``."""
        raw = (body.get("spec") or {}).get("backup")
        if raw is None:
            return None
        return cls(
            store=raw.get("storeRef"),
            secondary_store=raw.get("secondaryStoreRef") or None,
            schedule=str(raw.get("schedule", "0 2 * * *")),
            time_zone=str(raw.get("timeZone", "UTC")),
            suspend=bool(raw.get("suspend", False)),
            rpo=str(raw.get("rpo", "26h")),
            retention={str(k): int(v) for k, v in (raw.get("retention") or {}).items()},
            verify=raw.get("verify", "AfterEachBackup"),
            verify_schedule=str(raw.get("verifySchedule", "0 4 * * 0")),
            drill_schedule=(
                str((raw.get("drill") or {})["schedule"])
                if (raw.get("drill") or {}).get("schedule")
                else None
            ),
            drill_suspend=bool((raw.get("drill") or {}).get("suspend", False)),
            rto=str(raw["rto"]) if raw.get("rto") else None,
        )


def parse_point_in_time(value: Any, field_name: str) -> datetime.datetime:
    """An RFC 3339 time with its zone (``2026-11-30T14:33:00Z``); ValueError naming the field."""
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field_name} {value!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{field_name} {value!r} has no time zone (e.g. Z or +01:00)")
    return moment


@dataclass(frozen=True)
class BackupRequest:
    """One OdooBackup: which instance, why, and whether it is exempt from pruning.

    With ``spec.pointInTime`` the backup is of the database as it was at that time,
    recovered from its server's WAL archive (reason ``point-in-time``).
    """

    name: str
    instance: str
    reason: BackupReason = "manual"
    retain: bool = False
    point_in_time: str | None = None  # as written; parse_point_in_time reads it
    # A registered server already recovered to point_in_time (Azure's point-in-time restore
    # of a flexible server): the database is read from there instead of an archive.
    from_server: str | None = None

    @classmethod
    def from_resource(cls, body: Mapping[str, Any]) -> BackupRequest:
        """Read an OdooBackup object."""
        spec = body.get("spec") or {}
        point_in_time = spec.get("pointInTime") or None
        return cls(
            name=str(body["metadata"]["name"]),
            instance=str(spec["instance"]),
            reason="point-in-time" if point_in_time else spec.get("reason", "manual"),
            retain=bool(spec.get("retain", False)),
            point_in_time=None if point_in_time is None else str(point_in_time),
            from_server=spec.get("fromServer") or None,
        )


# spec.dataProtection of an OdooRestore.
NEUTRALIZE = "neutralize"
ANONYMIZE = "anonymize"


@dataclass(frozen=True)
class RestoreRequest:
    """One OdooRestore: which backup, into which instance, neutralized or not.

    A drill (``spec.drill: true``) names no target: the operator restores into a temporary
    instance of its own (see :mod:`odoo_operator.reconcile.drills`), whose name ``target``
    then holds.
    """

    name: str
    backup: str
    target: str
    neutralize: bool | None = None  # None: the default of the mode (clone yes, in place no)
    from_instance: str | None = None  # the opt-in naming another instance as the source
    drill: bool = False
    # NEUTRALIZE or ANONYMIZE; None: anonymize into development instances, else neutralize.
    data_protection: str | None = None
    # Instead of a backup: the time to recover the source's database to (RFC 3339, as written).
    point_in_time: str | None = None
    # With point_in_time: a registered server already recovered to that time (Azure).
    from_server: str | None = None

    @classmethod
    def from_resource(cls, body: Mapping[str, Any]) -> RestoreRequest:
        """Read an OdooRestore object."""
        spec = body.get("spec") or {}
        neutralize = spec.get("neutralize")
        return cls(
            name=str(body["metadata"]["name"]),
            backup=str(spec.get("backup") or ""),
            target=str((spec.get("target") or {}).get("instance") or ""),
            neutralize=None if neutralize is None else bool(neutralize),
            from_instance=spec.get("fromInstance") or None,
            drill=bool(spec.get("drill", False)),
            data_protection=spec.get("dataProtection") or None,
            point_in_time=str(spec["pointInTime"]) if spec.get("pointInTime") else None,
            from_server=spec.get("fromServer") or None,
        )

    @property
    def point_in_time_source(self) -> str:
        """The instance whose database a point-in-time restore recovers: the one
        ``spec.fromInstance`` names, else the target itself (in place)."""
        return self.from_instance or self.target

    def neutralizes(self, in_place: bool, production_target: bool = True) -> bool:
        """Whether the restored database is neutralized: clones are, by default, and a
        restore into a non-production instance always is."""
        if not production_target:
            return True
        return (not in_place) if self.neutralize is None else self.neutralize

    def anonymizes(self, in_place: bool, target: InstanceSpec) -> bool:
        """Whether the restored database is anonymized (personal data masked) as well as
        neutralized: when asked for, and by default for a development instance. Drills never
        are: they prove that the backup comes back as it was."""
        if self.drill or not self.neutralizes(in_place, target.production):
            return False
        if self.data_protection is None:
            return target.environment == "development"
        return self.data_protection == ANONYMIZE

    def problems(self, source: str, target: InstanceSpec) -> list[str]:
        """Why this restore of a backup of ``source`` into ``target`` must not run.

        One tenant's data lands in another only with an opt-in naming the source, and a
        non-production instance never receives live (un-neutralized) data.
        """
        problems = []
        if source != self.target and self.from_instance != source:
            named = f" (it names {self.from_instance})" if self.from_instance else ""
            problems.append(
                f"spec.fromInstance must be {source} to restore a backup of OdooInstance "
                f"{source} into {self.target}{named}: that replaces {self.target}'s data with "
                f"another tenant's. Set spec.fromInstance: {source} to confirm a migration "
                "between instances."
            )
        if not target.production and self.neutralize is False:
            problems.append(
                f"spec.neutralize cannot be false: {target.name} is a {target.environment} "
                "instance, and a restore into a non-production instance is always neutralized."
            )
        if self.data_protection not in (None, NEUTRALIZE, ANONYMIZE):
            problems.append(
                f"spec.dataProtection must be {NEUTRALIZE} or {ANONYMIZE}, "
                f"not {self.data_protection!r}."
            )
        if self.data_protection == ANONYMIZE:
            if self.neutralize is False:
                problems.append(
                    "spec.dataProtection: anonymize needs neutralization: remove "
                    "spec.neutralize: false (an anonymized clone is always neutralized)."
                )
            if target.production:
                problems.append(
                    f"spec.dataProtection: anonymize is refused into {target.name}, a production "
                    "instance: anonymization masks every customer's and employee's data for "
                    "good. Restore into a staging or development instance."
                )
        return problems
