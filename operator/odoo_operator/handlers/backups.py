"""Kopf glue for OdooBackup: run it, verify it, prune after it, delete its blobs with it."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from .. import metrics
from ..model.backup import BACKUP_KIND, BACKUP_PLURAL, FINISHED, SUCCEEDED, BackupPolicy
from ..model.conditions import Condition
from ..model.names import API_VERSION, GROUP, INSTANCE_KIND, INSTANCE_LABEL, VERSION
from ..reconcile.backup_copies import (
    COPY_SUCCEEDED,
    copy_entry,
    copy_pending,
    copy_target,
    copy_to_secondary,
)
from ..reconcile.backups import (
    BackupWaiting,
    delete_backup_data,
    in_progress_conditions,
    prune,
    refresh_instance_backup_state,
    run_backup_request,
    still_in_progress,
    verification_request,
    verify_request,
    with_verification,
)
from ..reconcile.clients import Clients
from ..reconcile.events import record_event
from .shards import hand_over_finalizer, serves_tenant

# Kopf fixes timer intervals when handlers are registered, so this one comes from the environment.
COPY_RETRY_SECONDS = float(os.environ.get("ODOO_OPERATOR_COPY_RETRY_INTERVAL", "60"))

_WAIT_SECONDS = 10.0
_logger = logging.getLogger(__name__)


@kopf.on.resume(GROUP, VERSION, BACKUP_PLURAL, when=serves_tenant)
@kopf.on.create(GROUP, VERSION, BACKUP_PLURAL, when=serves_tenant)
async def take_backup(
    memo: kopf.Memo, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any
) -> None:
    """Carry out a new OdooBackup; then verify it and apply the retention policy."""
    clients: Clients = memo["clients"]
    instance_name = body["spec"]["instance"]
    await hand_over_finalizer(clients, body)
    if (body.get("status") or {}).get("phase") in FINISHED:
        return  # resumed after a restart: this backup is history, not work
    if body["metadata"].get("labels", {}).get(INSTANCE_LABEL) != instance_name:
        # Hand-made backups get the label too: `kubectl get odoobackups -l` lists them all,
        # and so does the operator (backups_of). Written now, not with the handler's patch:
        # publishing the finished backup on its instance lists by this label.
        await clients.kube.patch_metadata(
            API_VERSION,
            BACKUP_KIND,
            body["metadata"]["name"],
            {"labels": {INSTANCE_LABEL: instance_name}},
        )
    try:
        result = await run_backup_request(clients, body)
    except BackupWaiting as waiting:
        message = waiting.args[0]
        progress = waiting.args[1] if len(waiting.args) > 1 else {"phase": "Pending"}
        patch.status.update(progress)
        patch.status["message"] = message
        if not still_in_progress(body):
            patch.status["conditions"] = in_progress_conditions(
                "the backup is under way; status.message says where"
            )
        raise kopf.TemporaryError(message, delay=_WAIT_SECONDS) from waiting
    status = dict(result.status)
    previous_phase = (body.get("status") or {}).get("phase")
    if result.phase != SUCCEEDED:
        metrics.record_backup(instance_name, previous_phase, status)
        if result.phase == "Failed" and (body.get("status") or {}).get("phase") != "Failed":
            await record_event(clients, body, "Warning", "BackupFailed", status.get("message", ""))
        # Written now, not when the handler returns: the instance's BackupHealthy reads it next.
        await clients.kube.patch_status(API_VERSION, BACKUP_KIND, body["metadata"]["name"], status)
        await _publish_on_instance(clients, instance_name)
        return
    await record_event(clients, body, "Normal", "BackupSucceeded", status.get("message", ""))
    instance = await clients.kube.get(API_VERSION, INSTANCE_KIND, instance_name)
    policy = BackupPolicy.from_instance(instance or {})
    copy_to = copy_target(clients.config, policy, status.get("store"))
    if copy_to is not None:
        status["secondaryStore"] = copy_to  # the copy timer below takes it from here
    request = verification_request(body)  # an annotation set while the backup ran
    if instance is not None and (
        request is not None or (policy is not None and policy.verify == "AfterEachBackup")
    ):
        status = with_verification(status, await _verify(clients, body, status, request))
    metrics.record_backup(instance_name, previous_phase, status)
    # Written now, not when the handler returns: retention and the instance read it next.
    await clients.kube.patch_status(API_VERSION, BACKUP_KIND, body["metadata"]["name"], status)
    if instance is None:
        return
    for name in await prune(clients, instance):
        logger.info(f"pruned OdooBackup {name} by the retention policy")
    await _publish_on_instance(clients, instance_name)


async def _publish_on_instance(clients: Clients, instance: str) -> None:
    """The instance's ``BackupHealthy``, ``lastBackup`` and ``lastVerifiedBackup`` as of the
    backup status just written: within seconds of the backup's end, not at the instance's
    next drift pass."""
    await publish_on_instance(clients, instance, "backup", refresh_instance_backup_state)


async def publish_on_instance(
    clients: Clients,
    instance: str,
    what: str,
    refresh: Callable[[Clients, str], Awaitable[Condition | None]],
) -> None:
    """Publish part of an instance's status (``refresh``) between its passes, and its
    condition's series. A failure here costs only a delay (the instance's next pass
    publishes the same state), so it is logged, not raised: what led here is done."""
    try:
        health = await refresh(clients, instance)
    except Exception as error:  # noqa: BLE001 - the instance's next pass publishes it
        _logger.warning(
            "could not publish the %s state of OdooInstance %s: %s",
            what,
            instance,
            error,
            extra={"instance": instance, "reason": type(error).__name__},
        )
        return
    if health is not None:
        metrics.record_condition(instance, health)


async def _verify(
    clients: Clients, body: kopf.Body, status: Mapping[str, Any], request: str | None
) -> dict[str, Any]:
    """Verify the backup (``status`` its current status); the verification for its status,
    with an Event saying how it went."""
    verification = await verify_request(clients, {**body, "status": status})
    if request is not None:
        verification["request"] = request
    if verification["result"] == "Failed":
        await record_event(clients, body, "Warning", "VerificationFailed", verification["message"])
    elif verification["result"] == "Passed":
        await record_event(clients, body, "Normal", "Verified", verification["message"])
    return verification


def _verification_asked(body: kopf.Body, **kwargs: Any) -> bool:
    return (
        (body.get("status") or {}).get("phase") == SUCCEEDED
        and verification_request(body) is not None
        and serves_tenant(body, **kwargs)
    )


@kopf.on.resume(GROUP, VERSION, BACKUP_PLURAL, when=_verification_asked)
@kopf.on.update(
    GROUP, VERSION, BACKUP_PLURAL, field="metadata.annotations", when=_verification_asked
)
async def verify_on_request(memo: kopf.Memo, body: kopf.Body, **_: Any) -> None:
    """Verify a succeeded backup again when its verify annotation asks (by hand, or by the
    instance's ``verifySchedule``)."""
    clients: Clients = memo["clients"]
    request = verification_request(body)
    if request is None:
        return
    status = dict(body.get("status") or {})
    status = with_verification(status, await _verify(clients, body, status, request))
    instance_name = body["spec"]["instance"]
    metrics.record_backup(instance_name, SUCCEEDED, status)
    changed: dict[str, Any] = {k: status[k] for k in ("verification", "conditions") if k in status}
    await clients.kube.patch_status(API_VERSION, BACKUP_KIND, body["metadata"]["name"], changed)
    await _publish_on_instance(clients, instance_name)


def _copy_wanted(body: kopf.Body, **kwargs: Any) -> bool:
    return copy_pending(body) and serves_tenant(body, **kwargs)


@kopf.timer(
    GROUP,
    VERSION,
    BACKUP_PLURAL,
    interval=COPY_RETRY_SECONDS,
    initial_delay=1.0,
    when=_copy_wanted,
)
async def copy_backup_to_secondary(memo: kopf.Memo, body: kopf.Body, **_: Any) -> None:
    """Copy a succeeded backup to its instance's secondary store and check the copy; a
    failed attempt is retried every ``ODOO_OPERATOR_COPY_RETRY_INTERVAL`` seconds. Runs only
    for backups whose copy is missing (see ``copy_pending``): others cost nothing."""
    clients: Clients = memo["clients"]
    status = body.get("status") or {}
    target = str(status["secondaryStore"])
    before = (copy_entry(status, target) or {}).get("phase")
    copies = await copy_to_secondary(clients, body)
    await clients.kube.patch_status(
        API_VERSION, BACKUP_KIND, body["metadata"]["name"], {"copies": copies}
    )
    outcome = next(c for c in copies if c["store"] == target)
    if outcome["phase"] == COPY_SUCCEEDED:
        await record_event(
            clients, body, "Normal", "BackupCopied", f"to {target}: {outcome['message']}"
        )
        await _publish_on_instance(clients, body["spec"]["instance"])
    elif before != outcome["phase"]:  # the first failure; retries are in status.copies
        await record_event(
            clients, body, "Warning", "BackupCopyFailed", f"to {target}: {outcome['message']}"
        )


@kopf.on.delete(GROUP, VERSION, BACKUP_PLURAL, when=serves_tenant)
async def delete_backup_blobs(
    memo: kopf.Memo, body: kopf.Body, logger: kopf.Logger, **_: Any
) -> None:
    """A deleted OdooBackup takes its blobs with it."""
    done = await delete_backup_data(memo["clients"], body)
    if done:
        logger.info(done)
