"""Kopf glue for OdooRestore: advance the restore until it has succeeded or failed."""

from __future__ import annotations

from typing import Any

import kopf

from ..backends.priority import urgent
from ..model.backup import RESTORE_KIND, RESTORE_PLURAL, SUCCEEDED
from ..model.names import API_VERSION, GROUP, VERSION
from ..reconcile.backups import in_progress_conditions, still_in_progress
from ..reconcile.clients import Clients
from ..reconcile.drills import label_drill, refresh_instance_drill_state, run_drill
from ..reconcile.events import record_event
from ..reconcile.restores import RestoreWaiting, run_restore_request
from .backups import publish_on_instance
from .shards import serves_tenant

_WAIT_SECONDS = 5.0


@kopf.on.resume(GROUP, VERSION, RESTORE_PLURAL, when=serves_tenant)
@kopf.on.create(GROUP, VERSION, RESTORE_PLURAL, when=serves_tenant)
async def restore(memo: kopf.Memo, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Run the restore's steps; wait (and come back) while a step is under way."""
    clients: Clients = memo["clients"]
    drill = bool((body.get("spec") or {}).get("drill"))
    try:
        if drill:
            await label_drill(clients, body)
            status = await run_drill(clients, body)
        else:
            with urgent():  # a restore is incident recovery: before any rollout's turns
                status = await run_restore_request(clients, body)
    except RestoreWaiting as waiting:
        message, progress = waiting.args
        patch.status.update(progress)
        patch.status["step"] = progress.get("step")  # a step that ended is removed, not kept
        patch.status["phase"] = progress.get("phase") or "Pending"
        patch.status["message"] = message
        if not still_in_progress(body):
            patch.status["conditions"] = in_progress_conditions(
                "the restore is under way; status.message says where"
            )
        raise kopf.TemporaryError(message, delay=_WAIT_SECONDS) from waiting
    patch.status.update(status)
    patch.status["step"] = status.get("step")  # none once finished: removed, not kept
    previous = (body.get("status") or {}).get("phase")
    if drill:
        if status.get("phase") != previous:
            await _drill_ended(clients, body, status)
        return
    if status.get("phase") != previous:
        if status.get("phase") == SUCCEEDED:
            await record_event(
                memo["clients"], body, "Normal", "Restored", status.get("message", "")
            )
        else:
            await record_event(
                memo["clients"], body, "Warning", "RestoreFailed", status.get("message", "")
            )


async def _drill_ended(clients: Clients, body: kopf.Body, status: dict[str, Any]) -> None:
    """The drill's Event, and its instance's ``RestoreDrillPassed`` and ``lastDrill`` now
    rather than at the instance's next pass (the drill's final status is written first)."""
    reason = str(((status.get("conditions") or [{}])[0]).get("reason") or "")
    passed = status.get("phase") == SUCCEEDED and reason == "DrillPassed"
    found = status.get("drill") or {}
    await record_event(
        clients,
        body,
        "Normal" if passed else "Warning",
        reason or ("DrillPassed" if passed else "DrillFailed"),
        str(status.get("message", "")),
        {
            "drill": True,
            "result": found.get("result"),
            "backup": (body.get("spec") or {}).get("backup"),
            "rtoSeconds": found.get("rtoSeconds"),
            "rtoObjectiveSeconds": found.get("rtoObjectiveSeconds"),
        },
    )
    source = (status.get("drill") or {}).get("source")
    if not source:
        return
    await clients.kube.patch_status(API_VERSION, RESTORE_KIND, body["metadata"]["name"], status)
    await publish_on_instance(clients, str(source), "drill", refresh_instance_drill_state)
