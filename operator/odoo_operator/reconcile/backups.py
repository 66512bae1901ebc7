"""Backups of tenants: OdooBackup runs, schedules, retention, verification, BackupHealthy.

An OdooBackup is carried out by the engine (:mod:`odoo_operator.engine`), in the operator
or in a Job; either way the blob store's manifest is the proof that a backup exists. What
happened is written to the OdooBackup's status (the audit trail) and summarized on the
instance (``lastBackup``, ``lastVerifiedBackup``, condition ``BackupHealthy``).

Verification and retention always run in the operator: verification restores into a scratch
database with the server's admin login, which never leaves the operator's namespace.
"""

from __future__ import annotations

import base64
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from ..backends.blobstore import BlobStore, BlobStoreUnavailable
from ..backends.kube import KubeConflict
from ..builders.backup_job import (
    build_backup_job,
    build_backup_service_account,
    build_backup_store_secret,
)
from ..builders.backup_layout import Manifest, new_backup_id
from ..builders.network import build_backup_identity_egress_policy
from ..builders.retention import BackupRecord, parse_retention, plan_retention
from ..builders.schedule import backup_age_exceeds, due_slot, parse_duration
from ..engine import DatabaseAccess, delete_backup, list_backups, run_backup, verify_backup
from ..model.backup import (
    BACKUP_KIND,
    FAILED,
    FINISHED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    BackupPolicy,
    BackupRequest,
)
from ..model.conditions import AWAITING_OPERATOR, Condition, merge_condition
from ..model.config import BlobStoreRef, ConfigError
from ..model.names import API_VERSION, INSTANCE_KIND, INSTANCE_LABEL, VERIFY_ANNOTATION
from ..model.spec import InstanceSpec
from .backup_copies import copy_summary, readable_store, writable_store
from .clients import Clients
from .events import record_event
from .instance import CREDENTIALS_SECRET
from .point_in_time import PointInTimeRefused, take_point_in_time_backup

logger = logging.getLogger(__name__)


def now() -> datetime.datetime:
    """The current time, timezone-aware UTC."""
    return datetime.datetime.now(datetime.UTC)


def timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC, as Kubernetes writes times."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise_timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with milliseconds: two backups finished in the same second still
    have an order, which retention and ``lastBackup`` rely on."""
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime.datetime | None:
    """An RFC 3339 time from a status field, or None."""
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class BackupNotPossible(Exception):  # noqa: N818 - reads as the status it leads to
    """The backup cannot run as asked; the message says why (it ends Failed)."""


class BackupWaiting(Exception):  # noqa: N818 - reads as the status it leads to
    """The backup must wait (another backup of the tenant, or its Job, runs); retried later.

    ``args[1]``, when given, is the status to publish meanwhile.
    """


@dataclass
class BackupResult:
    """Status fields of an OdooBackup after an attempt, and whether it has finished."""

    status: dict[str, Any] = field(default_factory=dict)

    @property
    def phase(self) -> str:
        """The phase the attempt left the backup in."""
        return str(self.status.get("phase", PENDING))


async def _instance(clients: Clients, name: str) -> dict[str, Any] | None:
    return await clients.kube.get(API_VERSION, INSTANCE_KIND, name)


async def tenant_database_access(
    clients: Clients, spec: InstanceSpec, server_name: str | None = None
) -> DatabaseAccess:
    """How the engine reads the tenant's database: as its own role, on its own server, or on
    ``server_name`` (a registered copy of that server, which holds the same roles)."""
    server = clients.config.postgres_server(server_name or spec.database_server)
    _, endpoint = await clients.postgres(server)
    secret = await clients.kube.get("v1", "Secret", CREDENTIALS_SECRET, spec.namespace)
    encoded = ((secret or {}).get("data") or {}).get("database-password")
    if encoded is None:
        raise BackupNotPossible(
            f"Secret {spec.namespace}/{CREDENTIALS_SECRET} has no database password yet; "
            "is the instance provisioned?"
        )
    conninfo = make_conninfo(
        host=endpoint.host,
        port=str(endpoint.port),
        user=spec.database,
        password=base64.b64decode(encoded).decode(),
        dbname=spec.database,
        # The registry's sslmode and CA, as for the operator's admin connections.
        **await clients.postgres_tls_parameters(server),
    )
    return DatabaseAccess(conninfo=conninfo, database=spec.database)


def in_process_filestore(clients: Clients, spec: InstanceSpec) -> Path | None:
    """The filestore directory the operator reads and writes itself: only with
    ``backupExecution: inProcess`` and a root configured. With Jobs the tenant's filestore is
    its volume, which only pods in its namespace mount."""
    root = clients.config.in_process_filestore_root
    if clients.config.backup_execution != "inProcess" or not root:
        return None
    return Path(root) / spec.name


async def _other_running_backup(clients: Clients, request: BackupRequest) -> str | None:
    for item in await clients.kube.list(API_VERSION, BACKUP_KIND):
        spec, status = item.get("spec") or {}, item.get("status") or {}
        if (
            spec.get("instance") == request.instance
            and item["metadata"]["name"] != request.name
            and status.get("phase") == RUNNING
        ):
            return str(item["metadata"]["name"])
    return None


async def run_backup_request(clients: Clients, body: Mapping[str, Any]) -> BackupResult:
    """Carry out one OdooBackup in the operator; return its final status fields.

    Raises :class:`BackupWaiting` while another backup of the same tenant runs.
    """
    request = BackupRequest.from_resource(body)
    status = dict(body.get("status") or {})
    if status.get("phase") in FINISHED:
        return BackupResult(status)
    if status.get("phase") == RUNNING and str(status.get("execution", "")).startswith("Job "):
        return await _follow_backup_job(clients, request, status)
    if status.get("phase") == RUNNING:
        # Running, but no worker: this operator stopped during the attempt. Its blobs have
        # no manifest, so nothing half-written is listed or restorable; the backup starts
        # again under a new id, a few times at most.
        attempts = int(status.get("attempts") or 1)
        if attempts >= _MAX_ATTEMPTS:
            return BackupResult(
                _failed(
                    status,
                    "Interrupted",
                    f"the operator stopped during each of {attempts} attempts; nothing of them "
                    "is listed or restorable. Create a new OdooBackup to retry.",
                )
            )
        await _discard_attempt(clients, request, status)
        status = {**status, "attempts": attempts + 1}
        status.pop("backupId", None)
    instance = await _instance(clients, request.instance)
    if instance is None:
        return BackupResult(
            _failed(status, "InstanceNotFound", f"OdooInstance {request.instance} does not exist")
        )
    other = await _other_running_backup(clients, request)
    if other is not None:
        raise BackupWaiting(f"waiting for OdooBackup {other} of the same tenant to finish")
    # The manifest records the version the database is at: the running one. The spec names
    # the version asked for, which an upgrade's own pre-upgrade backup precedes, and which
    # a restore of that backup would otherwise be checked against.
    running = (instance.get("status") or {}).get("runningVersion")
    spec = InstanceSpec.from_resource(instance)
    spec = replace(spec, version=str(running or spec.version))
    policy = BackupPolicy.from_instance(instance) or BackupPolicy()
    lock = clients.tenant_lock(request.instance)
    if lock.locked():
        raise BackupWaiting(f"another backup or restore of {request.instance} is running")
    async with lock:
        try:
            store, store_ref, fallback = await writable_store(clients, policy)
            access = await tenant_database_access(clients, spec)
        except (ConfigError, BackupNotPossible) as exc:
            return BackupResult(_failed(status, "InvalidConfiguration", str(exc)))
        except BlobStoreUnavailable as exc:
            return BackupResult(_failed(status, "StoreUnavailable", str(exc)))
        backup_id = status.get("backupId") or new_backup_id()
        started = now()
        if request.point_in_time is not None:
            return BackupResult(
                await _point_in_time(
                    clients, request, spec, store, store_ref, backup_id, started, status
                )
            )
        if clients.config.backup_execution == "job":
            return await _start_backup_job(
                clients, request, spec, store_ref, backup_id, started, status
            )
        await _running_in_operator(
            clients,
            request,
            backup_id,
            store_ref,
            started,
            message="backing up the database and the filestore",
        )
        try:
            manifest = await run_backup(
                store,
                request.instance,
                backup_id,
                access,
                in_process_filestore(clients, spec),
                spec.version,
                request.reason,
            )
        except Exception as exc:  # noqa: BLE001 - any failure ends this backup, with its reason
            logger.warning("backup %s of %s failed: %s", backup_id, request.instance, exc)
            status.update(
                backupId=backup_id, store=store_ref.name, startedAt=precise_timestamp(started)
            )
            return BackupResult(_failed(status, "BackupFailed", f"{type(exc).__name__}: {exc}"))
    done = _succeeded(status, manifest, store_ref.name, store_ref.container, started, "operator")
    if fallback is not None:
        done["message"] = f"{done['message']}; {fallback}"
    return BackupResult(await _with_store_protection(done, store))


async def _running_in_operator(
    clients: Clients,
    request: BackupRequest,
    backup_id: str,
    store_ref: BlobStoreRef,
    started: datetime.datetime,
    message: str,
    **fields: Any,
) -> None:
    """Publish that the backup runs in the operator's process, and what it does."""
    await clients.kube.patch_status(
        API_VERSION,
        BACKUP_KIND,
        request.name,
        {
            "phase": RUNNING,
            "backupId": backup_id,
            "store": store_ref.name,
            "startedAt": precise_timestamp(started),
            "execution": "operator",
            **fields,
            "message": message,
        },
    )


async def _point_in_time(
    clients: Clients,
    request: BackupRequest,
    spec: InstanceSpec,
    store: BlobStore,
    store_ref: BlobStoreRef,
    backup_id: str,
    started: datetime.datetime,
    status: dict[str, Any],
) -> dict[str, Any]:
    """A backup of the database as it was at ``spec.pointInTime``, in the operator."""
    await _running_in_operator(
        clients,
        request,
        backup_id,
        store_ref,
        started,
        message=f"recovering {spec.database} to {request.point_in_time} "
        + (
            f"from server {request.from_server}"
            if request.from_server
            else "from its server's WAL archive"
        ),
        pointInTime=request.point_in_time,
    )
    status = {**status, "pointInTime": request.point_in_time}
    try:
        recovered_server = (
            await tenant_database_access(clients, spec, request.from_server)
            if request.from_server
            else None
        )
        taken = await take_point_in_time_backup(
            clients, request, spec, store, store_ref, backup_id, recovered_server
        )
    except ConfigError as error:
        return _failed(status, "InvalidConfiguration", f"spec.fromServer: {error}")
    except PointInTimeRefused as refused:
        return _failed(status, refused.reason, str(refused))
    except Exception as exc:  # noqa: BLE001 - any failure ends this backup, with its reason
        logger.warning("point-in-time backup %s of %s failed: %s", backup_id, request.instance, exc)
        status.update(
            backupId=backup_id, store=store_ref.name, startedAt=precise_timestamp(started)
        )
        return _failed(status, "RecoveryFailed", f"{type(exc).__name__}: {exc}")
    done = _succeeded(
        status, taken.manifest, store_ref.name, store_ref.container, started, "operator"
    )
    done.update(taken.status_fields())
    done["message"] = f"{taken.summary}; the manifest is written"
    return await _with_store_protection(done, store)


async def _with_store_protection(status: dict[str, Any], store: BlobStore) -> dict[str, Any]:
    """Record the container's write-once protection (WORM, immutability policy, legal hold)
    on the backup: its blobs cannot be deleted before that protection allows, whatever the
    retention policy says."""
    protection = await store.immutability()
    return {**status, "storeProtection": protection} if protection else status


def _succeeded(
    status: dict[str, Any],
    manifest: Manifest,
    store: str,
    container: str,
    started: datetime.datetime,
    execution: str,
) -> dict[str, Any]:
    parts: dict[str, dict[str, Any]] = {
        name: {"sizeBytes": part.size, "sha256": part.sha256}
        for name, part in manifest.parts.items()
    }
    done = finished(
        status,
        SUCCEEDED,
        "Succeeded",
        f"backed up in {(now() - started).total_seconds():.1f}s; the manifest is written",
    )
    done.update(
        backupId=manifest.backup_id,
        store=store,
        location=f"{container}/{manifest.instance}/{manifest.backup_id}/",
        startedAt=precise_timestamp(started),
        sizeBytes=sum(part.size for part in manifest.parts.values()),
        parts=parts,
        odooVersion=manifest.odoo_version,
        modules=list(manifest.modules),
        execution=execution,
    )
    if manifest.ledger:
        done["ledger"] = dict(manifest.ledger)
    return done


async def _start_backup_job(
    clients: Clients,
    request: BackupRequest,
    spec: InstanceSpec,
    store_ref: BlobStoreRef,
    backup_id: str,
    started: datetime.datetime,
    status: dict[str, Any],
) -> BackupResult:
    """Hand the backup to a Job in the tenant namespace; it is followed on later passes."""
    owner = await clients.kube.get("v1", "Namespace", spec.namespace)
    if owner is None:
        return BackupResult(
            _failed(status, "InstanceNotProvisioned", f"namespace {spec.namespace} is missing")
        )
    try:
        key = await grant_store_access(clients, spec, store_ref)
    except ConfigError as exc:
        return BackupResult(_failed(status, "InvalidConfiguration", str(exc)))
    identity = store_ref.workload_identity
    node_selector, tolerations = clients.config.node_pool(spec.tenancy)
    job = build_backup_job(
        spec,
        node_selector=node_selector,
        tolerations=tolerations,
        backup_name=request.name,
        backup_id=backup_id,
        reason=request.reason,
        image=clients.config.operator_image,
        container=store_ref.container,
        store_secret_key=key,
        workload_identity=identity,
        database_tls=clients.config.postgres_server(spec.database_server).tls,
    )
    await clients.kube.apply(job)
    running = dict(status)
    running.update(
        phase=RUNNING,
        backupId=backup_id,
        store=store_ref.name,
        startedAt=precise_timestamp(started),
        execution=f"Job {spec.namespace}/{job['metadata']['name']}",
        message="the backup Job is running",
    )
    raise BackupWaiting("the backup Job is running", running)


async def grant_store_access(
    clients: Clients, spec: InstanceSpec, store_ref: BlobStoreRef
) -> str | None:
    """Give a Job in the tenant namespace what it needs to reach the blob store, and no more:
    a copy of the store's connection string, or, with Workload Identity, the identity's
    ServiceAccount and egress policy. Returns the key of the copied Secret holding the
    connection string (None: the Job signs in as the identity). Raises ConfigError."""
    store_secret = await clients.kube.get(
        "v1", "Secret", store_ref.secret, clients.config.namespace
    )
    store_data = (store_secret or {}).get("data") or {}
    identity = store_ref.workload_identity
    # With Workload Identity the Job signs in as the identity: no key reaches the tenant.
    key = None if identity else ("connectionString" if "connectionString" in store_data else None)
    # Only what the Job needs to reach backups: never a database admin login.
    store_copy = build_backup_store_secret(spec, store_data, identity)
    if identity is not None:
        await clients.kube.apply(build_backup_service_account(spec, identity))
        await clients.kube.apply(build_backup_identity_egress_policy(spec, identity))
    await clients.kube.apply(store_copy)
    return key


def job_outcome(job: Mapping[str, Any] | None) -> str | None:
    """``Complete`` or ``Failed`` once a Job has finished, ``None`` while it runs."""
    conditions = ((job or {}).get("status") or {}).get("conditions") or []
    for condition in conditions:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return str(condition["type"])
    return None


async def _follow_backup_job(
    clients: Clients, request: BackupRequest, status: dict[str, Any]
) -> BackupResult:
    """The outcome of a backup Job: the manifest in the store decides, not the exit code."""
    namespace, name = str(status["execution"]).removeprefix("Job ").split("/", 1)
    job = await clients.kube.get("batch/v1", "Job", name, namespace)
    if job is None:
        return BackupResult(_failed(status, "JobMissing", f"Job {namespace}/{name} is gone"))
    outcome = job_outcome(job)
    if outcome is None:
        raise BackupWaiting(f"Job {namespace}/{name} is running", status)
    started = parse_time(status.get("startedAt")) or now()
    store_ref = clients.config.blob_store(status.get("store"))
    store = await clients.blob(store_ref)
    manifest = next(
        (
            m
            for m in await list_backups(store, request.instance)
            if m.backup_id == status["backupId"]
        ),
        None,
    )
    if manifest is not None and outcome == "Complete":
        done = _succeeded(
            status, manifest, store_ref.name, store_ref.container, started, status["execution"]
        )
        return BackupResult(await _with_store_protection(done, store))
    reason = "the Job failed" if outcome == "Failed" else "the Job completed"
    return BackupResult(
        _failed(
            status,
            "NoManifest",
            f"{reason} but no manifest was written, so the backup does not exist; "
            f"read the logs of Job {namespace}/{name}",
        )
    )


_MAX_ATTEMPTS = 3


async def _discard_attempt(
    clients: Clients, request: BackupRequest, status: Mapping[str, Any]
) -> None:
    """Remove what an interrupted attempt uploaded (best effort: it is never listed anyway)."""
    if not status.get("backupId") or not status.get("store"):
        return
    try:
        store = await clients.blob(clients.config.blob_store(status["store"]))
        await delete_backup(store, request.instance, status["backupId"])
    except Exception as exc:  # noqa: BLE001 - leftovers without a manifest harm nothing
        logger.warning("could not remove the interrupted backup %s: %s", status["backupId"], exc)


def _condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": timestamp(now()),
    }


def finished(status: Mapping[str, Any], phase: str, reason: str, message: str) -> dict[str, Any]:
    """``status`` ended as ``phase``, with the Job-like conditions Complete and Failed and the
    ones kstatus, ``kubectl wait`` and Flux read: Ready on success, Stalled on failure (a
    finished OdooBackup or OdooRestore is never tried again), Reconciling False."""
    done = dict(status)
    succeeded, failed = phase == SUCCEEDED, phase == FAILED
    done.update(
        phase=phase,
        completedAt=precise_timestamp(now()),
        message=message,
        conditions=[
            _condition("Complete", "True" if succeeded else "False", reason, message),
            _condition("Failed", "True" if failed else "False", reason, message),
            _condition("Ready", "True" if succeeded else "False", reason, message),
            _condition("Stalled", "True" if failed else "False", reason, message),
            _condition("Reconciling", "False", reason, message),
        ],
    )
    return done


def with_verification(status: Mapping[str, Any], verification: Mapping[str, Any]) -> dict[str, Any]:
    """``status`` of a succeeded backup with its ``verification``. A backup whose restore
    into a scratch database failed is complete but not usable: Ready False and Stalled True
    (reason ``VerificationFailed``), so no tool counts it as a good backup; one that passes
    (again) is Ready. A skipped verification changes nothing."""
    done = dict(status)
    done["verification"] = dict(verification)
    result = verification.get("result")
    if result == "Failed":
        reason = "VerificationFailed"
        message = f"the backup's verification failed: {verification.get('message', '')}"
        ready, stalled = "False", "True"
    elif result == "Passed":
        reason, message = SUCCEEDED, str(verification.get("message", ""))
        ready, stalled = "True", "False"
    else:
        return done
    replaced = ("Ready", "Stalled", "Reconciling")
    kept = [c for c in done.get("conditions") or [] if c.get("type") not in replaced]
    done["conditions"] = [
        *kept,
        _condition("Ready", ready, reason, message),
        _condition("Stalled", stalled, reason, message),
        _condition("Reconciling", "False", reason, message),
    ]
    return done


def still_in_progress(body: Mapping[str, Any]) -> bool:
    """Whether the object already says it is under way (Reconciling True): its conditions
    are then left alone, so that their transition times stay those of the start."""
    conditions = (body.get("status") or {}).get("conditions") or []
    # The CRD's default for an object without status is Reconciling too, but nothing is
    # under way yet: the operator must still write its own conditions.
    return any(
        c.get("type") == "Reconciling"
        and c.get("status") == "True"
        and c.get("reason") != AWAITING_OPERATOR
        for c in conditions
    )


def in_progress_conditions(message: str) -> list[dict[str, Any]]:
    """The conditions of an OdooBackup or OdooRestore while it runs or waits: Reconciling,
    so that kstatus says InProgress and ``kubectl wait --for=condition=Ready`` waits."""
    return [
        _condition("Complete", "False", "InProgress", message),
        _condition("Failed", "False", "InProgress", message),
        _condition("Ready", "False", "InProgress", message),
        _condition("Stalled", "False", "InProgress", message),
        _condition("Reconciling", "True", "InProgress", message),
    ]


def _failed(status: Mapping[str, Any], reason: str, message: str) -> dict[str, Any]:
    return finished(status, FAILED, reason, message)


async def verify_request(clients: Clients, body: Mapping[str, Any]) -> dict[str, Any]:
    """Prove a succeeded backup by restoring it into a scratch database; the verification."""
    request = BackupRequest.from_resource(body)
    status = body.get("status") or {}
    instance = await _instance(clients, request.instance)
    if instance is None:
        return {"result": "Skipped", "message": f"OdooInstance {request.instance} is gone"}
    spec = InstanceSpec.from_resource(instance)
    store, _, fallback = await readable_store(clients, status, request.instance)
    admin = await clients.postgres_admin_conninfo(
        clients.config.postgres_server(spec.database_server)
    )
    async with clients.tenant_lock(request.instance):
        verification = await verify_backup(store, request.instance, status["backupId"], admin)
    return {
        "result": "Passed" if verification.ok else "Failed",
        "checkedAt": timestamp(verification.checked_at),
        "durationSeconds": round(verification.duration_seconds, 3),
        "message": verification.reason + (f" ({fallback})" if fallback else ""),
    }


async def backups_of(clients: Clients, instance: str) -> list[dict[str, Any]]:
    """Every OdooBackup object of an instance that the operator has taken up (it labels
    hand-made ones before their first run), filtered by the API server."""
    listed = await clients.kube.list(
        API_VERSION, BACKUP_KIND, label_selector=f"{INSTANCE_LABEL}={instance}"
    )
    # The label is a lookup aid anyone can edit; the spec says whose backup it is.
    return [item for item in listed if (item.get("spec") or {}).get("instance") == instance]


async def prune(
    clients: Clients,
    instance_body: Mapping[str, Any],
    backups: list[dict[str, Any]] | None = None,
) -> list[str]:
    """Apply the instance's retention policy to its OdooBackups (``backups``, listed when
    not given); delete the pruned ones (their finalizer deletes the blobs). Returns the
    names deleted."""
    policy = BackupPolicy.from_instance(instance_body)
    if policy is None:
        return []
    if backups is None:
        backups = await backups_of(clients, instance_body["metadata"]["name"])
    by_id: dict[str, str] = {}
    records = []
    for item in backups:
        status = item.get("status") or {}
        completed = parse_time(status.get("completedAt"))
        if status.get("phase") != SUCCEEDED or completed is None:
            continue
        by_id[status["backupId"]] = item["metadata"]["name"]
        records.append(
            BackupRecord(
                backup_id=status["backupId"],
                completed_at=completed,
                retain=bool((item.get("spec") or {}).get("retain")),
                verified=(status.get("verification") or {}).get("result") == "Passed",
            )
        )
    decision = plan_retention(
        records,
        parse_retention(policy.retention),
        now(),
        parse_duration(policy.rpo),
        policy.time_zone,
    )
    deleted = []
    for backup_id in decision.prune:
        name = by_id[backup_id]
        if await clients.kube.delete(API_VERSION, BACKUP_KIND, name):
            deleted.append(name)
    return deleted


async def delete_backup_data(clients: Clients, body: Mapping[str, Any]) -> str | None:
    """Remove a deleted OdooBackup's blobs, in its store and wherever it was copied; the
    message for the log, or None if it had none."""
    status = body.get("status") or {}
    backup_id, store_name = status.get("backupId"), status.get("store")
    if not backup_id or not store_name:
        return None
    request = BackupRequest.from_resource(body)
    # Its copies too (a failed copy may have left parts): a retention policy that prunes a
    # backup prunes it in every region.
    stores = list(
        dict.fromkeys([str(store_name), *(str(c["store"]) for c in status.get("copies") or [])])
    )
    for name in stores:
        store = await clients.blob(clients.config.blob_store(name))
        await delete_backup(store, request.instance, backup_id)
    return f"deleted backup {backup_id} of {request.instance} from {', '.join(stores)}"


def scheduled_backup_name(instance: str, due: datetime.datetime) -> str:
    """The OdooBackup of one scheduled time: the same name for the same slot, so a
    restarted operator never creates a scheduled backup twice."""
    return f"{instance}-{due.strftime('%Y%m%d-%H%M')}"


def backup_object(instance: str, name: str, reason: str, retain: bool = False) -> dict[str, Any]:
    """A new OdooBackup for ``instance``, labelled so ``kubectl get -l`` finds it."""
    return {
        "apiVersion": API_VERSION,
        "kind": BACKUP_KIND,
        "metadata": {"name": name, "labels": {INSTANCE_LABEL: instance}},
        "spec": {"instance": instance, "reason": reason, "retain": retain},
    }


def _due(
    instance_body: Mapping[str, Any], expression: str, time_zone: str, last_run_field: str
) -> datetime.datetime | None:
    """The latest time of ``expression`` passed since ``status.<last_run_field>`` (or since
    the instance was created), or None when none is due."""
    status = instance_body.get("status") or {}
    created = parse_time(instance_body["metadata"].get("creationTimestamp")) or now()
    last = parse_time(status.get(last_run_field))
    return due_slot(expression, time_zone, last, now(), created)


async def schedule_backups(clients: Clients, instance_body: Mapping[str, Any]) -> str | None:
    """Create the scheduled OdooBackup when one is due; return its name, else None."""
    policy = BackupPolicy.from_instance(instance_body)
    if policy is None or policy.suspend:
        return None
    slot = _due(instance_body, policy.schedule, policy.time_zone, "lastScheduledBackup")
    if slot is None:
        return None
    name = scheduled_backup_name(instance_body["metadata"]["name"], slot)
    if await clients.kube.get(API_VERSION, BACKUP_KIND, name) is None:
        await clients.kube.apply(
            backup_object(instance_body["metadata"]["name"], name, "scheduled")
        )
    return name


_NEVER = datetime.datetime.min.replace(tzinfo=datetime.UTC)


def _completion_order(backup: Mapping[str, Any]) -> tuple[datetime.datetime, str]:
    """Sort key of finished backups: completion time (whole-second times written by older
    releases compare correctly with millisecond ones), then name for a stable order."""
    status = backup.get("status") or {}
    return parse_time(status.get("completedAt")) or _NEVER, str(backup["metadata"]["name"])


def backup_health(
    instance_body: Mapping[str, Any], backups: list[dict[str, Any]]
) -> Condition | None:
    """``BackupHealthy``: the newest good backup is younger than the RPO, the last attempt
    did not fail, the newest verification passed, and (with a secondary store) the newest
    checked copy there is younger than the RPO too. None when backups are not configured."""
    policy = BackupPolicy.from_instance(instance_body)
    if policy is None:
        return None
    finished = sorted(
        (b for b in backups if (b.get("status") or {}).get("phase") in FINISHED),
        key=_completion_order,
    )
    good = [b for b in finished if b["status"]["phase"] == SUCCEEDED]
    newest_good = parse_time(good[-1]["status"]["completedAt"]) if good else None
    if finished and finished[-1]["status"]["phase"] == FAILED:
        last = finished[-1]
        return Condition(
            "BackupHealthy",
            "False",
            "BackupFailed",
            f"OdooBackup {last['metadata']['name']} failed: {last['status'].get('message')}",
        )
    verified = [b for b in good if (b["status"].get("verification") or {}).get("result")]
    if verified and verified[-1]["status"]["verification"]["result"] == "Failed":
        last = verified[-1]
        return Condition(
            "BackupHealthy",
            "False",
            "VerificationFailed",
            f"OdooBackup {last['metadata']['name']} did not restore: "
            f"{last['status']['verification'].get('message')}",
        )
    if backup_age_exceeds(parse_duration(policy.rpo), newest_good, now()):
        age = (
            "no successful backup yet"
            if newest_good is None
            else (f"the newest good backup completed at {timestamp(newest_good)}")
        )
        created = parse_time(instance_body["metadata"].get("creationTimestamp")) or now()
        if newest_good is not None or now() - created > parse_duration(policy.rpo):
            return Condition(
                "BackupHealthy", "False", "RPOExceeded", f"{age}, older than the RPO {policy.rpo}"
            )
        return Condition("BackupHealthy", "Unknown", "NoBackupYet", "the first backup is pending")
    assert newest_good is not None
    within = (
        f"newest good backup completed at {timestamp(newest_good)}, within the RPO {policy.rpo}"
    )
    if policy.secondary_store is None:
        return Condition("BackupHealthy", "True", "WithinRPO", within)
    # The RPO holds for each store: the secondary one must hold a checked copy within it too.
    copied = (copy_summary(backups, policy).get("lastCopiedBackup") or {}).get("time")
    newest_copy = parse_time(copied)
    if backup_age_exceeds(parse_duration(policy.rpo), newest_copy, now()):
        first_due = parse_time(good[0]["status"]["completedAt"]) or now()
        if newest_copy is not None or now() - first_due > parse_duration(policy.rpo):
            age = "none yet" if newest_copy is None else f"completed at {timestamp(newest_copy)}"
            return Condition(
                "BackupHealthy",
                "False",
                "CopyRPOExceeded",
                f"the newest checked copy in store {policy.secondary_store}: {age}, older than "
                f"the RPO {policy.rpo} (the {within}); see the OdooBackups' status.copies",
            )
        return Condition("BackupHealthy", "True", "WithinRPO", f"{within}; its copy is pending")
    return Condition(
        "BackupHealthy",
        "True",
        "WithinRPO",
        f"{within}; newest checked copy in store {policy.secondary_store} at {copied}",
    )


def instance_backup_summary(backups: list[dict[str, Any]]) -> dict[str, Any]:
    """``lastBackup`` and ``lastVerifiedBackup`` for the instance's status."""
    good = sorted(
        (b for b in backups if (b.get("status") or {}).get("phase") == SUCCEEDED),
        key=_completion_order,
    )
    summary: dict[str, Any] = {}
    if good:
        newest = good[-1]
        summary["lastBackup"] = {
            "id": newest["status"]["backupId"],
            "name": newest["metadata"]["name"],
            "time": newest["status"]["completedAt"],
            "sizeBytes": newest["status"].get("sizeBytes", 0),
        }
    verified = [
        b for b in good if (b["status"].get("verification") or {}).get("result") == "Passed"
    ]
    if verified:
        newest = verified[-1]
        summary["lastVerifiedBackup"] = {
            "id": newest["status"]["backupId"],
            "name": newest["metadata"]["name"],
            "time": newest["status"]["verification"]["checkedAt"],
        }
    return summary


async def instance_backup_state(
    clients: Clients, instance_body: Mapping[str, Any], *, schedule: bool = True
) -> tuple[Condition | None, dict[str, Any]]:
    """What the instance's status says about backups: ``BackupHealthy`` and the summary
    fields, after creating the scheduled backup when one is due (unless ``schedule`` is
    False: an instance being deleted gets no new backup or verification).

    The one computation of that state: the instance's passes publish it with their other
    conditions, and :func:`refresh_instance_backup_state` publishes it as soon as a backup
    finishes or is verified.
    """
    if BackupPolicy.from_instance(instance_body) is None:
        return None, {}
    fields: dict[str, Any] = {}
    scheduled = await schedule_backups(clients, instance_body) if schedule else None
    if scheduled is not None:
        fields["lastScheduledBackup"] = timestamp(now())
    backups = await backups_of(clients, instance_body["metadata"]["name"])
    # Retention also runs here, not only after a backup: a backup that ages past the RPO
    # becomes prunable without a newer one. Nothing to prune costs no write.
    pruned = await prune(clients, instance_body, backups)
    for name in pruned:
        logger.info("pruned OdooBackup %s by the retention policy", name)
    backups = [b for b in backups if b["metadata"]["name"] not in pruned]
    if schedule and await schedule_verification(clients, instance_body, backups):
        fields["lastScheduledVerification"] = timestamp(now())
    fields.update(instance_backup_summary(backups))
    fields.update(copy_summary(backups, BackupPolicy.from_instance(instance_body)))
    return backup_health(instance_body, backups), fields


async def schedule_verification(
    clients: Clients, instance_body: Mapping[str, Any], backups: list[dict[str, Any]]
) -> bool:
    """With ``verify: Scheduled``, when ``verifySchedule`` is due: ask for a verification of
    the newest good backup (annotation :data:`VERIFY_ANNOTATION`, answered by the OdooBackup
    handler). True when a scheduled time was consumed, with or without a backup to verify.
    """
    policy = BackupPolicy.from_instance(instance_body)
    if policy is None or policy.verify != "Scheduled":
        return False
    slot = _due(
        instance_body, policy.verify_schedule, policy.time_zone, "lastScheduledVerification"
    )
    if slot is None:
        return False
    good = sorted(
        (b for b in backups if (b.get("status") or {}).get("phase") == SUCCEEDED),
        key=_completion_order,
    )
    if not good:
        logger.info(
            "scheduled verification of %s: no good backup yet", instance_body["metadata"]["name"]
        )
        return True
    newest = good[-1]["metadata"]["name"]
    await clients.kube.patch_metadata(
        API_VERSION,
        BACKUP_KIND,
        newest,
        {"annotations": {VERIFY_ANNOTATION: f"scheduled-{slot.strftime('%Y%m%d-%H%M')}"}},
    )
    return True


def verification_request(body: Mapping[str, Any]) -> str | None:
    """The value of the OdooBackup's verify annotation when it has not been answered yet."""
    token = (body["metadata"].get("annotations") or {}).get(VERIFY_ANNOTATION)
    answered = ((body.get("status") or {}).get("verification") or {}).get("request")
    return str(token) if token and token != answered else None


_REFRESH_ATTEMPTS = 3


async def refresh_instance_backup_state(clients: Clients, instance: str) -> Condition | None:
    """Publish the instance's backup state (``BackupHealthy``, ``lastBackup``,
    ``lastVerifiedBackup``) now, not at its next drift pass: the OdooBackup handlers call
    this once a backup's final status, or a verification, is written.

    The state is :func:`instance_backup_state`'s, as in the instance's own passes. A change
    of ``BackupHealthy`` is also an Event (:func:`announce_backup_health`). Returns the
    condition; None when the instance is gone or has no backup policy.
    """
    return await publish_instance_state(
        clients, instance, instance_backup_state, announce=announce_backup_health
    )


InstanceState = Callable[..., Awaitable[tuple[Condition | None, dict[str, Any]]]]
Announce = Callable[
    [Clients, Mapping[str, Any], Mapping[str, Any], Condition | None], Awaitable[None]
]


async def publish_instance_state(
    clients: Clients,
    instance: str,
    state: InstanceState,
    announce: Announce | None = None,
) -> Condition | None:
    """Publish one part of an instance's status between its passes: ``state(clients,
    body, schedule=...)`` gives a condition and status fields.

    Only the fields that differ are written (nothing changed: no write), and only onto the
    version of the instance that was read: when the instance handler wrote its status
    meanwhile, the instance is read again rather than its newer conditions overwritten.
    ``announce`` is told of the condition after a write. Returns the condition; None when
    the instance is gone or the state has none.
    """
    for _ in range(_REFRESH_ATTEMPTS):
        body = await _instance(clients, instance)
        if body is None:
            return None
        deleting = bool(body["metadata"].get("deletionTimestamp"))
        health, fields = await state(clients, body, schedule=not deleting)
        status = body.get("status") or {}
        desired = dict(fields)
        if health is not None:
            generation = int(body["metadata"].get("generation", 0))
            desired["conditions"] = merge_condition(
                list(status.get("conditions") or []), health, generation
            )
        changes = {key: value for key, value in desired.items() if status.get(key) != value}
        if not changes:
            return health
        try:
            await clients.kube.patch_status(
                API_VERSION,
                INSTANCE_KIND,
                instance,
                changes,
                resource_version=body["metadata"].get("resourceVersion"),
            )
        except KubeConflict:
            logger.info(
                "OdooInstance %s changed while its status was written; reading it again",
                instance,
                extra={"instance": instance},
            )
            continue
        if announce is not None:
            await announce(clients, body, status, health)
        return health
    logger.warning(
        "OdooInstance %s changed during each of %d attempts to write its status; "
        "its next reconcile pass publishes it",
        instance,
        _REFRESH_ATTEMPTS,
        extra={"instance": instance},
    )
    return None


async def announce_backup_health(
    clients: Clients,
    body: Mapping[str, Any],
    previous_status: Mapping[str, Any],
    health: Condition | None,
) -> None:
    """The Event of a ``BackupHealthy`` transition from what ``previous_status`` said: a
    Warning when it turns False (with the reason), a Normal ``BackupHealthy`` when it turns
    True (the first good backup, or healthy again). Nothing while it holds, so an Event is
    posted once per change, not once per pass."""
    if health is None:
        return
    before = next(
        (
            c.get("status")
            for c in previous_status.get("conditions") or []
            if c.get("type") == health.type
        ),
        None,
    )
    if health.status == before:
        return
    if health.status == "False":
        await record_event(clients, body, "Warning", health.reason, health.message)
    elif health.status == "True":
        await record_event(clients, body, "Normal", health.type, health.message)


async def pre_delete_backup_pending(
    clients: Clients, instance_body: Mapping[str, Any]
) -> str | None:
    """Before a ``Delete`` deletion drops data: the reason to wait, or None once the
    ``pre-delete`` backup succeeded (or none is needed)."""
    spec = InstanceSpec.from_resource(instance_body)
    if spec.deletion_policy != "Delete" or BackupPolicy.from_instance(instance_body) is None:
        return None
    name = f"{spec.name}-pre-delete"
    backup = await clients.kube.get(API_VERSION, BACKUP_KIND, name)
    if backup is None:
        await clients.kube.apply(backup_object(spec.name, name, "pre-delete", retain=True))
        return f"taking the pre-delete backup {name} before dropping anything"
    status = backup.get("status") or {}
    if status.get("phase") == SUCCEEDED:
        return None
    if status.get("phase") == FAILED:
        return (
            f"the pre-delete backup {name} failed ({status.get('message')}); nothing is "
            f"dropped. Delete OdooBackup {name} to try again, or set deletionPolicy: Retain"
        )
    return f"waiting for the pre-delete backup {name} ({status.get('phase', PENDING)})"
