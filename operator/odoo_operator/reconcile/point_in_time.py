"""An OdooBackup of a tenant's database as it was at a point in time (``spec.pointInTime``).

The tenant's PostgreSQL server must archive its WAL with pgBackRest (registry entry
``pitr``, see :class:`odoo_operator.model.config.PitrArchive`). The operator makes the live
server archive what it has written so far, recovers the tenant's database to the point in
time on a temporary server of its own (:mod:`odoo_operator.engine.pitr`), and stores it as a
backup carrying the filestore of the newest backup at or before that time. From then on it is
a backup like any other: an OdooRestore restores or clones it. An OdooRestore that names a
point in time (``spec.pointInTime``) creates such a backup first.

These backups always run in the operator's process, whatever ``backupExecution`` says: they
read no tenant volume (the filestore is copied from blob to blob), and the operator holds the
server's admin login they need. The operator's pod needs ``pgbackrest`` and the PostgreSQL
server binaries of the server's major version, and scratch space for one tenant's database
(``ODOO_OPERATOR_PITR_WORKDIR``, default the system's temporary directory). One recovery runs
at a time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from ..backends.blobstore import BlobStore
from ..builders.backup_layout import Manifest, backup_time
from ..engine.backup import DatabaseAccess, run_backup
from ..engine.pitr import (
    POINT_IN_TIME_REASON,
    ArchiveAccess,
    RecoveredDatabase,
    run_point_in_time_backup,
    wait_archived,
)
from ..model.backup import BACKUP_KIND, SUCCEEDED, BackupRequest, parse_point_in_time
from ..model.config import BlobStoreRef, PitrArchive
from ..model.names import API_VERSION
from ..model.spec import InstanceSpec
from .clients import Clients

# The scratch space of recoveries, and (local stack only: PostgreSQL refuses root) the
# account pgBackRest and the temporary server run as.
WORKDIR_ENV = "ODOO_OPERATOR_PITR_WORKDIR"
RUN_AS_ENV = "ODOO_OPERATOR_PITR_RUN_AS"
# The key of a pitr entry's caSecretRef holding the endpoint's CA.
CA_KEY = "ca.crt"

# Recoveries restore a tenant's database and replay WAL: disk and CPU heavy, one at a time.
_RECOVERIES = asyncio.Semaphore(1)


class PointInTimeRefused(Exception):  # noqa: N818 - reads as the status it leads to
    """The point-in-time backup cannot be taken; ``reason`` is the status reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PointInTimeBackup:
    """What a point-in-time backup took, for the OdooBackup's status."""

    manifest: Manifest
    point_in_time: str
    filestore_from: str
    server: str
    # From an archive (None when read from a server already recovered, such as Azure's):
    recovered: RecoveredDatabase | None = None

    def status_fields(self) -> dict[str, Any]:
        """``pointInTime``, ``recoveredTo``, ``filestoreFrom``, and ``wholeServer`` or
        ``fromServer``."""
        fields: dict[str, Any] = {
            "pointInTime": self.point_in_time,
            "filestoreFrom": self.filestore_from,
        }
        if self.recovered is None:
            fields["fromServer"] = self.server
            return fields
        recovered_to = self.recovered.recovered_to
        fields["recoveredTo"] = _timestamp(recovered_to) if recovered_to is not None else None
        fields["wholeServer"] = self.recovered.whole_server
        return fields

    @property
    def summary(self) -> str:
        """One line for the OdooBackup's message."""
        database = self.manifest.database
        if self.recovered is None:
            return (
                f"{database} read from server {self.server}, recovered to {self.point_in_time} "
                f"outside the operator; filestore of backup {self.filestore_from}"
            )
        recovered = self.recovered
        to = (
            _timestamp(recovered.recovered_to)
            if recovered.recovered_to is not None
            else "the archive's base backup (no transaction after it)"
        )
        whole = (
            " (the whole server: its archive backup predates the database)"
            if recovered.whole_server
            else ""
        )
        return (
            f"{database} recovered to {to} (asked for {self.point_in_time}) from the WAL "
            f"archive of server {self.server}: base restored in "
            f"{recovered.restore_seconds:.1f}s{whole}, WAL replayed in "
            f"{recovered.replay_seconds:.1f}s; filestore of backup {self.filestore_from}"
        )


def _timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


async def take_point_in_time_backup(
    clients: Clients,
    request: BackupRequest,
    spec: InstanceSpec,
    store: BlobStore,
    store_ref: BlobStoreRef,
    backup_id: str,
    recovered_server: DatabaseAccess | None = None,
) -> PointInTimeBackup:
    """Recover ``spec``'s database to ``request.point_in_time`` and store it as ``backup_id``.

    With ``recovered_server`` (``spec.fromServer``: a registered server that Azure's own
    point-in-time restore made) the database is read from there as it is, no archive needed.

    Raises :class:`PointInTimeRefused` when it cannot be done (no archive, a time in the
    future, no earlier backup to take the filestore from) and the engine's errors when the
    recovery fails.
    """
    try:
        target = parse_point_in_time(request.point_in_time, "spec.pointInTime")
    except ValueError as error:
        raise PointInTimeRefused("InvalidPointInTime", str(error)) from None
    if target > datetime.datetime.now(datetime.UTC):
        raise PointInTimeRefused(
            "InvalidPointInTime", f"spec.pointInTime {request.point_in_time} is in the future"
        )
    if recovered_server is not None and request.from_server:
        base = await _newest_backup_before(clients, request.instance, store_ref.name, target)
        manifest = await run_backup(
            store,
            request.instance,
            backup_id,
            recovered_server,
            None,
            spec.version,
            POINT_IN_TIME_REASON,
            filestore_from=base,
            recovery={
                "pointInTime": str(request.point_in_time),
                "fromServer": request.from_server,
                "filestoreFrom": base,
            },
        )
        return PointInTimeBackup(manifest, str(request.point_in_time), base, request.from_server)
    server = clients.config.postgres_server(spec.database_server)
    if server.pitr is None:
        raise PointInTimeRefused(
            "NoArchive",
            f"PostgreSQL server {server.name} of {spec.name} has no WAL archive (registry entry "
            "pitr): its databases can be restored from backups only",
        )
    base = await _newest_backup_before(clients, request.instance, store_ref.name, target)
    admin = await clients.postgres_admin_conninfo(server)
    async with _RECOVERIES:
        workroot = Path(os.environ.get(WORKDIR_ENV) or tempfile.gettempdir())
        async with _archive_access(clients, server.pitr, workroot, backup_id) as access:
            # The newest changes must be in the archive before recovering to just before now.
            await wait_archived(admin)
            manifest, recovered = await run_point_in_time_backup(
                store,
                request.instance,
                backup_id,
                access,
                spec.database,
                target,
                spec.version,
                base,
                admin_user=str(conninfo_to_dict(admin).get("user") or "postgres"),
                workdir=workroot / f"odoo-pitr-{backup_id}",
                run_as=os.environ.get(RUN_AS_ENV) or None,
            )
    return PointInTimeBackup(manifest, str(request.point_in_time), base, server.name, recovered)


async def _newest_backup_before(
    clients: Clients, instance: str, store: str, target: datetime.datetime
) -> str:
    """The id of the newest succeeded backup of ``instance`` in ``store`` taken at or before
    ``target``: its filestore is the one a recovery to ``target`` carries."""
    candidates = []
    for item in await clients.kube.list(API_VERSION, BACKUP_KIND):
        spec, status = item.get("spec") or {}, item.get("status") or {}
        backup_id = str(status.get("backupId") or "")
        if (
            spec.get("instance") != instance
            or spec.get("pointInTime")  # its own filestore is an older backup's
            or status.get("phase") != SUCCEEDED
            or status.get("store") != store
            or not backup_id
        ):
            continue
        taken = backup_time(backup_id)
        if taken <= target:
            candidates.append((taken, backup_id))
    if not candidates:
        raise PointInTimeRefused(
            "NoBaseBackup",
            f"no succeeded backup of {instance} in store {store} was taken at or before "
            f"{target.isoformat()}: a point-in-time recovery takes its filestore from one",
        )
    return max(candidates)[1]


@contextlib.asynccontextmanager
async def _archive_access(
    clients: Clients, archive: PitrArchive, workroot: Path, backup_id: str
) -> AsyncIterator[ArchiveAccess]:
    """The archive's access for one recovery, from its Secrets; its CA written to a file
    for pgBackRest, and removed afterwards."""
    secret = await clients.kube.get("v1", "Secret", archive.secret, clients.config.namespace)
    data = {
        key: base64.b64decode(value).decode()
        for key, value in ((secret or {}).get("data") or {}).items()
    }
    if not data.get("account") or not data.get("key"):
        raise PointInTimeRefused(
            "InvalidConfiguration",
            f"Secret {clients.config.namespace}/{archive.secret} of the WAL archive needs the "
            "keys account and key",
        )
    ca_file = None
    if archive.ca_secret:
        ca_secret = await clients.kube.get(
            "v1", "Secret", archive.ca_secret, clients.config.namespace
        )
        encoded = ((ca_secret or {}).get("data") or {}).get(CA_KEY)
        if not encoded:
            raise PointInTimeRefused(
                "InvalidConfiguration",
                f"Secret {clients.config.namespace}/{archive.ca_secret} has no key {CA_KEY}",
            )
        workroot.mkdir(parents=True, exist_ok=True)
        ca_file = workroot / f"odoo-pitr-{backup_id}-ca.crt"
        ca_file.write_bytes(base64.b64decode(encoded))
        ca_file.chmod(0o644)  # read by pgBackRest, which may run as another account
    try:
        yield ArchiveAccess(archive, data["account"], data["key"], ca_file)
    finally:
        if ca_file is not None:
            ca_file.unlink(missing_ok=True)
