"""Kopf glue for OdooBackup: run it, verify it, prune after it, delete its blobs with it."""

from __future__ import annotations

from typing import Any

import kopf

from .. import metrics
from ..model.backup import BACKUP_KIND, BACKUP_PLURAL, FINISHED, SUCCEEDED, BackupPolicy
from ..model.names import API_VERSION, GROUP, INSTANCE_KIND, INSTANCE_LABEL, VERSION
from ..reconcile.backups import (
    BackupWaiting,
    backups_of,
    delete_backup_data,
    instance_backup_summary,
    prune,
    run_backup_request,
    verify_request,
)
from ..reconcile.clients import Clients

_WAIT_SECONDS = 10.0


@kopf.on.resume(GROUP, VERSION, BACKUP_PLURAL)
@kopf.on.create(GROUP, VERSION, BACKUP_PLURAL)
async def take_backup(
    memo: kopf.Memo, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any
) -> None:
    """Carry out a new OdooBackup; then verify it and apply the retention policy."""
    clients: Clients = memo["clients"]
    instance_name = body["spec"]["instance"]
    if (body.get("status") or {}).get("phase") in FINISHED:
        return  # resumed after a restart: this backup is history, not work
    if body["metadata"].get("labels", {}).get(INSTANCE_LABEL) != instance_name:
        # Hand-made backups get the label too: `kubectl get odoobackups -l` lists them all.
        patch.metadata.setdefault("labels", {})[INSTANCE_LABEL] = instance_name
    try:
        result = await run_backup_request(clients, body)
    except BackupWaiting as waiting:
        message = waiting.args[0]
        progress = waiting.args[1] if len(waiting.args) > 1 else {"phase": "Pending"}
        patch.status.update(progress)
        patch.status["message"] = message
        raise kopf.TemporaryError(message, delay=_WAIT_SECONDS) from waiting
    status = dict(result.status)
    previous_phase = (body.get("status") or {}).get("phase")
    if result.phase != SUCCEEDED:
        patch.status.update(status)
        metrics.record_backup(instance_name, previous_phase, status)
        if result.phase == "Failed" and (body.get("status") or {}).get("phase") != "Failed":
            kopf.warn(body, reason="BackupFailed", message=status.get("message", ""))
        return
    kopf.event(body, type="Normal", reason="BackupSucceeded", message=status.get("message", ""))
    instance = await clients.kube.get(API_VERSION, INSTANCE_KIND, instance_name)
    policy = BackupPolicy.from_instance(instance or {})
    if instance is not None and policy is not None and policy.verify == "AfterEachBackup":
        verification = await verify_request(clients, {**body, "status": status})
        status["verification"] = verification
        if verification["result"] == "Failed":
            kopf.warn(body, reason="VerificationFailed", message=verification["message"])
    metrics.record_backup(instance_name, previous_phase, status)
    # Written now, not when the handler returns: retention and the instance read it next.
    await clients.kube.patch_status(API_VERSION, BACKUP_KIND, body["metadata"]["name"], status)
    if instance is None:
        return
    # Publish the new backup on the instance at once, not at the next drift pass.
    summary = instance_backup_summary(await backups_of(clients, instance_name))
    await clients.kube.patch_status(API_VERSION, INSTANCE_KIND, instance_name, summary)
    for name in await prune(clients, instance):
        logger.info(f"pruned OdooBackup {name} by the retention policy")


@kopf.on.delete(GROUP, VERSION, BACKUP_PLURAL)
async def delete_backup_blobs(
    memo: kopf.Memo, body: kopf.Body, logger: kopf.Logger, **_: Any
) -> None:
    """A deleted OdooBackup takes its blobs with it."""
    done = await delete_backup_data(memo["clients"], body)
    if done:
        logger.info(done)
