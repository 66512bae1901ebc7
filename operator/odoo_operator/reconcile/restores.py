"""OdooRestore: a backup restored into its own instance (in place) or another (a clone).

Steps, each recorded in status so a restarted operator knows where it stopped:

1. check the backup succeeded and both instances exist;
2. refusals: another instance's backup without ``spec.fromInstance`` naming it, or live data
   into a non-production instance;
3. a safety backup of the target's current state (an OdooBackup, kept by ``retain``);
4. maintenance: the target's web and cron scaled to zero (annotation on the instance);
5. with backups as Jobs, a Job in the target's namespace stages the backup's filestore beside
   the live one, checked against the manifest (step ``staging-filestore``);
6. the engine checks manifest, checksums, instance and Odoo version before touching
   anything, restores into a new database, proves it, neutralizes a clone, and only then
   swaps names, keeping the replaced database as ``<db>_pre_restore_<id>`` (``restoring``);
7. a second Job renames the staged filestore into place, keeping the replaced one
   (``swapping-filestore``); in-process, the engine did both with the database;
8. maintenance lifted; the instance's reconciler brings web and cron back.

The database half runs in the operator: it needs the server's admin login, which never leaves
the operator's namespace. The filestore half runs where the tenant's volume is, as the Odoo
image's user, with no database login.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from psycopg import sql

from ..backends.blobstore import BlobStoreUnavailable
from ..backends.odoo_users import read_credentials
from ..builders.anonymize import anonymization_statements
from ..builders.backup_job import (
    build_filestore_restore_job,
    filestore_directory,
    filestore_restore_job_name,
)
from ..builders.neutralize import neutralization_statements
from ..builders.odoo_users import (
    ADMIN_PASSWORD_KEY,
    MONITOR_LOGIN,
    MONITOR_PASSWORD_KEY,
    clone_credentials_statements,
    password_hash,
)
from ..engine import RestoreRefused, RestoreTarget, restore_backup
from ..engine.pitr import POINT_IN_TIME_REASON
from ..engine.restore import check_odoo_versions, filestore_restore_paths
from ..model.backup import (
    BACKUP_KIND,
    FAILED,
    FINISHED,
    RESTORE_KIND,
    RUNNING,
    SUCCEEDED,
    RestoreRequest,
)
from ..model.config import BlobStoreRef, ConfigError
from ..model.names import API_VERSION, INSTANCE_KIND, MAINTENANCE_ANNOTATION
from ..model.spec import InstanceSpec
from .backup_copies import readable_store
from .backups import (
    backup_object,
    finished,
    grant_store_access,
    in_process_filestore,
    job_outcome,
    now,
    timestamp,
)
from .clients import Clients

logger = logging.getLogger(__name__)


class RestoreWaiting(Exception):  # noqa: N818 - reads as the status it leads to
    """A step is under way (safety backup, scale-down); the restore is retried later."""


async def _set_maintenance(clients: Clients, instance: str, value: str | None) -> None:
    """Put the instance into maintenance (web and cron at zero), or lift it (``None``)."""
    await clients.kube.patch_metadata(
        API_VERSION, INSTANCE_KIND, instance, {"annotations": {MAINTENANCE_ANNOTATION: value}}
    )


async def _scaled_down(clients: Clients, spec: InstanceSpec) -> bool:
    for component in ("web", "cron"):
        live = await clients.kube.get("apps/v1", "Deployment", f"odoo-{component}", spec.namespace)
        if live is not None and (
            (live.get("spec") or {}).get("replicas", 0)
            or (live.get("status") or {}).get("replicas", 0)
        ):
            return False
    return True


async def run_restore_request(
    clients: Clients,
    body: Mapping[str, Any],
    request: RestoreRequest | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Advance one OdooRestore; return its status fields once finished.

    A drill (:mod:`.drills`) passes its own ``request`` (its temporary instance as the
    target) and ``status`` (with its own fields), and gets no safety backup: the temporary
    instance holds nothing to keep. Raises :class:`RestoreWaiting` (with the status so far
    in ``args[1]``) while a step is under way.
    """
    request = request or RestoreRequest.from_resource(body)
    status = dict(body.get("status") or {}) if status is None else status
    if status.get("phase") in FINISHED:
        return status
    if request.point_in_time is not None:
        # Recovered first, as an OdooBackup of its own; then restored like any backup.
        recovered = await _point_in_time_backup(clients, request, status)
        if not isinstance(recovered, str):
            return recovered
        request = replace(request, backup=recovered)
    if status.get("step") == _SWAPPING:
        return await _swap_filestore(clients, body, request, status)
    if status.get("step") == "restoring":
        # The operator stopped inside the engine. The engine swaps names only after the new
        # database is proven, so the target is either untouched or fully restored.
        await _set_maintenance(clients, request.target, None)
        return finished(
            status,
            FAILED,
            "Interrupted",
            "the operator stopped during the restore; the target database was not replaced "
            "unless a <db>_pre_restore_* database exists. Create a new OdooRestore to retry.",
        )
    backup = await clients.kube.get(API_VERSION, BACKUP_KIND, request.backup)
    backup_status = (backup or {}).get("status") or {}
    if backup is None or backup_status.get("phase") != SUCCEEDED:
        return finished(
            status,
            FAILED,
            "BackupNotUsable",
            f"OdooBackup {request.backup} does not exist or has not succeeded; nothing touched",
        )
    source = str(backup["spec"]["instance"])
    target_body = await clients.kube.get(API_VERSION, INSTANCE_KIND, request.target)
    if target_body is None:
        return finished(
            status,
            FAILED,
            "TargetNotFound",
            f"OdooInstance {request.target} does not exist; create it first (for a clone, "
            "an instance of the backup's Odoo version, then upgrade it)",
        )
    target = InstanceSpec.from_resource(target_body)
    # Checked here as well as at admission: the webhook may be bypassed or absent.
    refusals = request.problems(source, target)
    if refusals:
        return finished(status, FAILED, "Refused", f"{' '.join(refusals)} Nothing touched.")
    # The version the target's database is at: its spec may already ask for the next one.
    running_version = str((target_body.get("status") or {}).get("runningVersion") or target.version)
    if backup_status.get("odooVersion"):
        # Checked from the backup's status before the safety backup and the maintenance: a
        # refusal must not cost the tenant its uptime. The engine checks the manifest again.
        try:
            check_odoo_versions(
                str(backup_status.get("backupId") or request.backup),
                str(backup_status["odooVersion"]),
                running_version,
            )
        except RestoreRefused as refused:
            return finished(status, FAILED, "Refused", f"{refused}. Nothing touched.")
    in_place = request.target == source
    neutralize = request.neutralizes(in_place, target.production)
    anonymize = request.anonymizes(in_place, target)
    status.update(
        mode="Drill" if request.drill else "InPlace" if in_place else "Clone",
        neutralized=neutralize,
        anonymized=anonymize,
        startedAt=status.get("startedAt") or timestamp(now()),
    )
    if not request.drill:
        safety_failed = await _safety_backup(clients, request, target, status)
        if safety_failed is not None:
            return safety_failed
    await _set_maintenance(clients, request.target, f"restore/{request.name}")
    if not await _scaled_down(clients, target):
        raise RestoreWaiting(f"waiting for the web and cron pods of {target.name} to stop", status)

    filestore_in_process = in_process_filestore(clients, target)
    try:
        store, store_ref, fallback = await readable_store(clients, backup_status, source)
    except BlobStoreUnavailable as unreachable:
        await _set_maintenance(clients, request.target, None)
        return finished(
            status,
            FAILED,
            "StoreUnavailable",
            f"neither the store of backup {request.backup} nor a checked copy of it can be "
            f"read ({unreachable}); {target.name} was not touched",
        )
    if fallback is not None:
        status["readFrom"] = fallback
    if filestore_in_process is None:
        # The filestore is a claim only the tenant's pods mount: a Job stages the backup's
        # beside the live one before the database is touched, and swaps it in afterwards.
        staged = await _stage_filestore(
            clients,
            body,
            request,
            target,
            source,
            store_ref,
            str(backup_status["backupId"]),
            status,
        )
        if staged is not None:
            return staged
    status.update(phase=RUNNING, step="restoring", message="restoring the database")
    await clients.kube.patch_status(API_VERSION, RESTORE_KIND, request.name, status)
    try:
        server = clients.config.postgres_server(target.database_server)
        outcome = await restore_backup(
            store,
            source,
            backup_status["backupId"],
            RestoreTarget(
                admin_conninfo=await clients.postgres_admin_conninfo(server),
                database=target.database,
                owner_role=target.database,
                filestore=filestore_in_process,
                expected_instance=source,
                target_odoo_version=running_version,
                neutralize=neutralize,
                neutralization=_data_protection_statements(neutralize, anonymize, target),
                prune_unreferenced_files=anonymize,
                # A drill logs in as the source's users: it proves they came back as they were.
                credentials=(
                    await _target_credentials(clients, target)
                    if not in_place and not request.drill
                    else ()
                ),
            ),
        )
    except RestoreRefused as refused:
        status.pop("step", None)
        await _set_maintenance(clients, request.target, None)
        return finished(status, FAILED, "Refused", f"{refused}; {target.name} was not touched")
    except Exception as exc:  # noqa: BLE001 - the engine proves before it swaps; report it
        logger.warning("restore %s failed: %s", request.name, exc)
        status.pop("step", None)
        await _set_maintenance(clients, request.target, None)
        return finished(status, FAILED, "RestoreFailed", f"{type(exc).__name__}: {exc}")
    status["keptDatabase"] = outcome.kept_database
    if filestore_in_process is None:
        status.update(step=_SWAPPING, message="swapping in the restored filestore")
        await clients.kube.patch_status(API_VERSION, RESTORE_KIND, request.name, status)
        return await _swap_filestore(clients, body, request, status)
    await _set_maintenance(clients, request.target, None)
    status.pop("step", None)
    status["filestoreRestored"] = True
    return _restored(status, backup_status["backupId"], source, target.name)


async def _target_credentials(clients: Clients, target: InstanceSpec) -> list[sql.Composed]:
    """The statements giving a clone the Odoo passwords of the target's own Secret: its
    admin and its monitoring user (whose login a clone keeps, anonymized or not)."""
    credentials = await read_credentials(clients.kube, target.namespace)

    def hashed(key: str) -> str | None:
        password = credentials.get(key)
        return password_hash(password, secrets.token_bytes(16)) if password else None

    # Two PBKDF2 hashes at Odoo's rounds: most of a second of CPU, off the event loop.
    admin, monitor = await asyncio.to_thread(
        lambda: (hashed(ADMIN_PASSWORD_KEY), hashed(MONITOR_PASSWORD_KEY))
    )
    return clone_credentials_statements(admin, monitor)


def _data_protection_statements(
    neutralize: bool, anonymize: bool, target: InstanceSpec
) -> list[sql.Composed]:
    """What runs on the restored copy before it is swapped in: the neutralization and, for
    an anonymized clone, the masking of personal data with a salt used once and forgotten."""
    if not neutralize:
        return []
    statements = neutralization_statements(str(uuid.uuid4()), target.url)
    if anonymize:
        # The operator's monitoring user keeps its login: the target's probe signs in with it.
        statements += anonymization_statements(secrets.token_hex(16), (MONITOR_LOGIN,))
    return statements


async def _point_in_time_backup(
    clients: Clients, request: RestoreRequest, status: dict[str, Any]
) -> str | dict[str, Any]:
    """The OdooBackup of the source's database at ``spec.pointInTime``: its name once it
    succeeded; the finished status when it failed; :class:`RestoreWaiting` while it runs."""
    name = f"{request.name}-pitr"
    source = request.point_in_time_source
    status.update(pointInTimeBackup=name, pointInTime=request.point_in_time)
    backup = await clients.kube.get(API_VERSION, BACKUP_KIND, name)
    if backup is None:
        recovery = backup_object(source, name, POINT_IN_TIME_REASON, retain=True)
        recovery["spec"]["pointInTime"] = request.point_in_time
        if request.from_server:
            recovery["spec"]["fromServer"] = request.from_server
        await clients.kube.apply(recovery)
        raise RestoreWaiting(
            f"recovering the database of {source} to {request.point_in_time} from its "
            f"server's WAL archive (OdooBackup {name})",
            status,
        )
    backup_status = backup.get("status") or {}
    phase = backup_status.get("phase")
    if phase == FAILED:
        return finished(
            status,
            FAILED,
            "PointInTimeFailed",
            f"the point-in-time backup {name} failed ({_failure_reason(backup_status)}: "
            f"{backup_status.get('message')}); {request.target} was not touched",
        )
    if phase != SUCCEEDED:
        raise RestoreWaiting(f"waiting for the point-in-time backup {name}", status)
    status.update(
        recoveredTo=backup_status.get("recoveredTo"),
        filestoreFrom=backup_status.get("filestoreFrom"),
    )
    return name


def _failure_reason(status: Mapping[str, Any]) -> str:
    """The reason of a finished object's Failed condition."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Failed":
            return str(condition.get("reason") or "Failed")
    return "Failed"


async def _safety_backup(
    clients: Clients, request: RestoreRequest, target: InstanceSpec, status: dict[str, Any]
) -> dict[str, Any] | None:
    """Nothing is destroyed without a successful backup of it: the target's current database
    is backed up first, in place and for clones alike. None once it succeeded; the finished
    status when it failed; :class:`RestoreWaiting` while it runs."""
    safety = f"{request.name}-safety"
    status["safetyBackup"] = safety
    safety_body = await clients.kube.get(API_VERSION, BACKUP_KIND, safety)
    if safety_body is None:
        await clients.kube.apply(backup_object(target.name, safety, "manual", retain=True))
        raise RestoreWaiting(f"taking the safety backup {safety} of {target.name}", status)
    safety_phase = (safety_body.get("status") or {}).get("phase")
    if safety_phase == FAILED:
        return finished(
            status,
            FAILED,
            "SafetyBackupFailed",
            f"the safety backup {safety} failed; {target.name} was not touched",
        )
    if safety_phase != SUCCEEDED:
        raise RestoreWaiting(f"waiting for the safety backup {safety}", status)
    return None


def _restored(status: dict[str, Any], backup_id: str, source: str, target: str) -> dict[str, Any]:
    clone = status.get("mode") == "Clone"
    kind = (
        "anonymized clone"
        if clone and status.get("anonymized")
        else "neutralized clone"
        if clone and status.get("neutralized")
        else "restore"
    )
    return finished(
        status,
        SUCCEEDED,
        "Restored",
        f"{kind} of backup {backup_id} of {source} into {target} (database and filestore"
        + (
            f", the database as of {status.get('recoveredTo') or 'the archive base backup'} "
            f"for the point in time {status['pointInTime']}, the filestore of backup "
            f"{status.get('filestoreFrom')}"
            if status.get("pointInTime")
            else ""
        )
        + "); "
        f"the previous database is kept as {status.get('keptDatabase')}"
        + (
            f" and the previous filestore as {status['keptFilestore']}"
            if status.get("keptFilestore")
            else ""
        )
        + (f"; {status['readFrom']}" if status.get("readFrom") else ""),
    )


_STAGING, _SWAPPING = "staging-filestore", "swapping-filestore"


async def _filestore_job(
    clients: Clients,
    body: Mapping[str, Any],
    request: RestoreRequest,
    target: InstanceSpec,
    step: str,
    backup_instance: str,
    backup_id: str,
    store_ref: BlobStoreRef,
    prune_unreferenced: bool = False,
) -> tuple[str, str | None]:
    """Create (idempotently) the Job of one filestore step; its name and outcome so far."""
    name = filestore_restore_job_name(str(body["metadata"]["uid"]), step)
    job = await clients.kube.get("batch/v1", "Job", name, target.namespace)
    if job is None:
        key = await grant_store_access(clients, target, store_ref) if step == "stage" else None
        node_selector, tolerations = clients.config.node_pool(target.tenancy)
        job = build_filestore_restore_job(
            target,
            step=step,
            restore_name=request.name,
            restore_uid=str(body["metadata"]["uid"]),
            backup_instance=backup_instance,
            backup_id=backup_id,
            node_selector=node_selector,
            tolerations=tolerations,
            image=clients.config.operator_image,
            container=store_ref.container,
            store_secret_key=key,
            workload_identity=store_ref.workload_identity,
            prune_unreferenced=prune_unreferenced,
            database_tls=clients.config.postgres_server(target.database_server).tls,
        )
        await clients.kube.apply(job)
        return name, None
    return name, job_outcome(job)


async def _stage_filestore(
    clients: Clients,
    body: Mapping[str, Any],
    request: RestoreRequest,
    target: InstanceSpec,
    source: str,
    store_ref: BlobStoreRef,
    backup_id: str,
    status: dict[str, Any],
) -> dict[str, Any] | None:
    """Run the staging Job; None once it succeeded, the finished status when it failed.

    Raises :class:`RestoreWaiting` while the Job runs.
    """
    status.update(phase=RUNNING, step=_STAGING)
    try:
        job, outcome = await _filestore_job(
            clients, body, request, target, "stage", source, backup_id, store_ref
        )
    except ConfigError as error:
        status.pop("step", None)
        await _set_maintenance(clients, request.target, None)
        return finished(status, FAILED, "InvalidConfiguration", f"{error}; nothing touched")
    status["filestoreJobs"] = f"Job {target.namespace}/{job}"
    if outcome is None:
        raise RestoreWaiting(
            f"Job {target.namespace}/{job} is staging the backup's filestore beside the live one",
            status,
        )
    if outcome == "Failed":
        status.pop("step", None)
        await _set_maintenance(clients, request.target, None)
        return finished(
            status,
            FAILED,
            "FilestoreStagingFailed",
            f"Job {target.namespace}/{job} could not stage the filestore of backup "
            f"{backup_id} (read its logs); nothing was touched, {target.name} is back in service",
        )
    return None


async def _swap_filestore(
    clients: Clients, body: Mapping[str, Any], request: RestoreRequest, status: dict[str, Any]
) -> dict[str, Any]:
    """After the database swap: the Job that renames the staged filestore into place."""
    backup = await clients.kube.get(API_VERSION, BACKUP_KIND, request.backup)
    backup_status = (backup or {}).get("status") or {}
    target_body = await clients.kube.get(API_VERSION, INSTANCE_KIND, request.target)
    if backup is None or target_body is None:
        await _set_maintenance(clients, request.target, None)
        return finished(
            status,
            FAILED,
            "FilestoreNotSwapped",
            f"the database was restored (the previous one is kept as {status.get('keptDatabase')}) "
            f"but OdooBackup {request.backup} or OdooInstance {request.target} is gone, so the "
            "staged filestore was not swapped in",
        )
    target = InstanceSpec.from_resource(target_body)
    backup_id = str(backup_status["backupId"])
    source = str(backup["spec"]["instance"])
    job, outcome = await _filestore_job(
        clients,
        body,
        request,
        target,
        "swap",
        source,
        backup_id,
        clients.config.blob_store(backup_status.get("store")),
        prune_unreferenced=bool(status.get("anonymized")),
    )
    if outcome is None:
        raise RestoreWaiting(f"Job {target.namespace}/{job} is swapping in the filestore", status)
    status.pop("step", None)
    await _set_maintenance(clients, request.target, None)
    status["filestoreJobs"] = (
        f"{status.get('filestoreJobs', '')}, Job {target.namespace}/{job}".lstrip(", ")
    )
    if outcome == "Failed":
        status["filestoreRestored"] = False
        return finished(
            status,
            FAILED,
            "FilestoreNotSwapped",
            f"the database was restored (the previous one is kept as {status.get('keptDatabase')}) "
            f"but Job {target.namespace}/{job} could not swap in the filestore staged beside "
            f"the live one (read its logs): attachments deleted since the backup have records "
            f"but no files until it is swapped in by hand (docs/backup.md)",
        )
    status["filestoreRestored"] = True
    # The swap always keeps one (empty when the tenant had no filestore yet).
    _, kept = filestore_restore_paths(Path(filestore_directory(target)), backup_id)
    status["keptFilestore"] = str(kept)
    return _restored(status, backup_id, source, target.name)
