"""Kopf glue for OdooRestore: advance the restore until it has succeeded or failed."""

from __future__ import annotations

from typing import Any

import kopf

from ..backends.priority import urgent
from ..model.backup import RESTORE_PLURAL, SUCCEEDED
from ..model.names import GROUP, VERSION
from ..reconcile.backups import in_progress_conditions, still_in_progress
from ..reconcile.clients import Clients
from ..reconcile.events import record_event
from ..reconcile.restores import RestoreWaiting, run_restore_request
from .shards import serves_tenant

_WAIT_SECONDS = 5.0


@kopf.on.resume(GROUP, VERSION, RESTORE_PLURAL, when=serves_tenant)
@kopf.on.create(GROUP, VERSION, RESTORE_PLURAL, when=serves_tenant)
async def restore(memo: kopf.Memo, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Run the restore's steps; wait (and come back) while a step is under way."""
    clients: Clients = memo["clients"]
    try:
        with urgent():  # a restore is incident recovery: before any rollout's turns
            status = await run_restore_request(clients, body)
    except RestoreWaiting as waiting:
        message, progress = waiting.args
        patch.status.update(progress)
        patch.status["phase"] = progress.get("phase") or "Pending"
        patch.status["message"] = message
        if not still_in_progress(body):
            patch.status["conditions"] = in_progress_conditions(
                "the restore is under way; status.message says where"
            )
        raise kopf.TemporaryError(message, delay=_WAIT_SECONDS) from waiting
    patch.status.update(status)
    previous = (body.get("status") or {}).get("phase")
    if status.get("phase") != previous:
        if status.get("phase") == SUCCEEDED:
            await record_event(
                memo["clients"], body, "Normal", "Restored", status.get("message", "")
            )
        else:
            await record_event(
                memo["clients"], body, "Warning", "RestoreFailed", status.get("message", "")
            )
