"""Kopf glue for OdooInstance: events in, reconcile calls out, status back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from typing import Any

import kopf

from .. import metrics
from ..backends.priority import urgent
from ..model.conditions import Condition, merge_condition
from ..model.config import ConfigError
from ..model.hibernation import WAKE_ANNOTATION
from ..model.names import (
    API_VERSION,
    GROUP,
    INSTANCE_KIND,
    INSTANCE_PLURAL,
    MAINTENANCE_ANNOTATION,
    ROTATE_CREDENTIALS_ANNOTATION,
    VERSION,
)
from ..model.outcome import Outcome
from ..model.spec import InstanceSpec
from ..reconcile import journal
from ..reconcile.backups import (
    announce_backup_health,
    instance_backup_state,
    pre_delete_backup_pending,
)
from ..reconcile.clients import Clients
from ..reconcile.drills import instance_drill_state
from ..reconcile.events import record_event
from ..reconcile.instance import (
    Stalled,
    announce_first_sight,
    announce_queued,
    config_image,
    delete_instance,
    queued_conditions,
    reconcile_instance,
)
from ..reconcile.journal import spec_digest, spec_manager
from ..reconcile.upgrades import advance_upgrade, upgrade_condition, upgrade_work_pending
from .shards import SHARDING, hand_over_finalizer, serves_tenant

# Kopf fixes timer intervals when handlers are registered, so this one comes from the environment.
DRIFT_INTERVAL_SECONDS = float(os.environ.get("ODOO_OPERATOR_DRIFT_INTERVAL", "120"))
UPGRADE_INTERVAL_SECONDS = float(os.environ.get("ODOO_OPERATOR_UPGRADE_INTERVAL", "10"))
_RETRY_SECONDS = 5.0
# The first retries come sooner: what a new tenant waits for (its init Job, a rollout) is
# often done within a second or two, and a fixed 5 s wait was the floor of its time to Ready.
_FIRST_RETRY_SECONDS = 1.0
# How long a new tenant's pass waits for its turn to provision before it lets Kopf call it
# again. Kopf handles the tenant's next event (a deletion) only when the pass returns, and
# each return is a status write: long enough to cost little, short enough for a deletion.
_TURN_WAIT_SECONDS = 30.0


def retry_delay(attempt: int) -> float:
    """Seconds before retry ``attempt`` + 1 of a pass that left the tenant not Ready:
    1, 2, 4, then every 5."""
    return min(_FIRST_RETRY_SECONDS * float(2 ** min(attempt, 8)), _RETRY_SECONDS)


def _is_true(status: kopf.Status, type_: str) -> bool:
    return any(
        c.get("type") == type_ and c.get("status") == "True" for c in status.get("conditions", [])
    )


async def _publish(
    clients: Clients,
    outcome: Outcome,
    body: kopf.Body,
    status: kopf.Status,
    patch: kopf.Patch,
    generation: int,
) -> None:
    conditions: list[dict[str, Any]] = list(status.get("conditions", []))
    for condition in outcome.conditions:
        conditions = merge_condition(conditions, condition, generation)
    was_ready = _is_true(status, "Ready")
    desired = {
        "conditions": conditions,
        "observedGeneration": generation,
        "phase": outcome.phase,
        **outcome.fields,
    }
    if SHARDING.enabled:
        desired["shard"] = SHARDING.own  # which process serves the tenant, for SREs
    if status.get("observedGeneration") != generation:
        await journal.record(
            clients,
            body["metadata"]["name"],
            "SpecApplied",
            {
                "generation": generation,
                "specDigest": spec_digest(body.get("spec") or {}),
                "changedBy": spec_manager(body),
                "phase": outcome.phase,
                # The objectives in force from this generation on, for the evidence report.
                "backupRpo": ((body.get("spec") or {}).get("backup") or {}).get("rpo"),
                "backupRto": ((body.get("spec") or {}).get("backup") or {}).get("rto"),
            },
        )
    # Only what changed: an empty patch is not sent, so an idle tenant costs no status write.
    for key, value in desired.items():
        if status.get(key) != value:
            patch.status[key] = value
    health = next((c for c in outcome.conditions if c.type == "BackupHealthy"), None)
    await announce_backup_health(clients, body, status, health)
    rotated = outcome.fields.get("credentialsRotation")
    if rotated and rotated != status.get("credentialsRotation"):
        await record_event(
            clients,
            body,
            "Normal",
            "CredentialsRotated",
            f"database, Redis and master passwords renewed for rotation {rotated}",
        )
    now_ready = any(c.type == "Ready" and c.status == "True" for c in outcome.conditions)
    if now_ready and not was_ready:
        await record_event(clients, body, "Normal", "Ready", "the tenant is ready")
    elif was_ready and not now_ready:
        ready = next(c for c in outcome.conditions if c.type == "Ready")
        # Held on purpose (a suspend, a restore, an upgrade) is news, not a problem.
        kind = "Normal" if outcome.held else "Warning"
        await record_event(clients, body, kind, ready.reason, ready.message)


def _rotation_asked(body: kopf.Body, status: kopf.Status) -> bool:
    asked = (body["metadata"].get("annotations") or {}).get(ROTATE_CREDENTIALS_ANNOTATION)
    return bool(asked) and asked != status.get("credentialsRotation")


async def _wait_for_turn(
    clients: Clients, body: kopf.Body, status: kopf.Status, patch: kopf.Patch
) -> None:
    """Wait for a new tenant's turn to provision (``provisioningConcurrency``); say in its
    status that it is queued, and where, when the wait is not over."""
    name = body["metadata"]["name"]
    turns = clients.provisioning_turns
    try:
        if await turns.take(name, 0):
            return
        if not any(c.get("type") == "Ready" for c in status.get("conditions", [])):
            # Seen the first time: say so at once, not after the wait.
            await announce_queued(clients, body, "waiting for a turn to provision")
        if await turns.take(name, _TURN_WAIT_SECONDS):
            return
    finally:
        metrics.observe_provisioning(turns.provisioning, turns.queued)
    message = (
        f"waiting for a turn to provision: {turns.ahead_of(name)} tenants ahead, "
        f"{turns.provisioning} provisioned now (provisioningConcurrency "
        f"{clients.config.provisioning_concurrency})"
    )
    generation = int(body["metadata"].get("generation", 0))
    conditions: list[dict[str, Any]] = list(status.get("conditions", []))
    for condition in queued_conditions(message):
        conditions = merge_condition(conditions, condition, generation)
    patch.status["conditions"] = conditions
    raise kopf.TemporaryError(message, delay=0)


async def _reconcile(
    memo: kopf.Memo,
    body: kopf.Body,
    status: kopf.Status,
    patch: kopf.Patch,
    retry: bool,
    trigger: str = "change",
    attempt: int = 0,
) -> None:
    clients: Clients = memo["clients"]
    if body["metadata"].get("deletionTimestamp"):
        return  # being deleted: a pass now would create again what the deletion drops
    name = body["metadata"]["name"]
    lock = clients.pass_lock(name)
    if trigger == "drift" and lock.locked():
        return  # a pass for a change is under way; it does what this one would
    await hand_over_finalizer(clients, body)
    turns = clients.provisioning_turns
    first_provisioning = not _is_true(status, "Initialized")
    turn_for_this_pass = False  # a drift pass's turn: given back when it ends
    if first_provisioning and not turns.holds(name):
        if trigger != "drift":
            await _wait_for_turn(clients, body, status, patch)
        elif turns.try_take(name):
            # A tenant stalled before its first Ready is looked at again by drift passes.
            turn_for_this_pass = True
        else:
            return  # queued, or others wait: its own pass provisions it in turn
    # One pass per tenant at a time: two at once would each find no credentials, generate
    # passwords, and leave the role with one and the Secret with the other.
    # A rotation asked for is urgent: its turns toward the servers come before a rollout's.
    priority = urgent() if _rotation_asked(body, status) else contextlib.nullcontext()
    try:
        async with lock:
            with priority, metrics.observe_reconcile(name, trigger) as seen:
                outcome = await _reconcile_pass(memo, body, status, patch)
                seen.record(outcome, InstanceSpec.from_resource(body))
    finally:
        if turn_for_this_pass:
            turns.release(name)
    ready = next(c for c in outcome.conditions if c.type == "Ready")
    done = ready.status == "True" or outcome.phase == "Stalled" or outcome.held
    if done:
        # The next tenant's turn (this one's was taken before its Initialized status).
        turns.release(name)
    metrics.observe_provisioning(turns.provisioning, turns.queued)
    if retry and ready.status != "True" and outcome.phase != "Stalled" and not outcome.held:
        delay = retry_delay(attempt)
        cache = clients.kube.cache
        if cache is not None and await cache.wait_for_change(name, delay):
            delay = 0  # its pods, Job or claim moved on: look again now, not after the delay
        raise kopf.TemporaryError(ready.message, delay=delay)


async def _reconcile_pass(
    memo: kopf.Memo, body: kopf.Body, status: kopf.Status, patch: kopf.Patch
) -> Outcome:
    clients: Clients = memo["clients"]
    generation = int(body["metadata"].get("generation", 0))
    if not any(c.get("type") == "Ready" for c in status.get("conditions", [])):
        await announce_first_sight(clients, body)
    try:
        outcome = await reconcile_instance(clients, body, _is_true(status, "Initialized"))
    except Stalled as stalled:
        outcome = Outcome(phase="Stalled")
        outcome.conditions = [
            Condition("Stalled", "True", stalled.reason, str(stalled)),
            Condition("Ready", "False", stalled.reason, str(stalled)),
            Condition("Reconciling", "False", stalled.reason, "waiting for a human"),
        ]
        await _publish(clients, outcome, body, status, patch, generation)
        if not _is_true(status, "Stalled"):
            await record_event(clients, body, "Warning", stalled.reason, str(stalled))
        return outcome
    # Backups do not decide Ready (a tenant with a late backup still serves); they get
    # their own condition, published in the same patch as the others.
    health, backup_fields = await instance_backup_state(clients, body)
    if health is not None:
        outcome.conditions.append(health)
    outcome.fields.update(backup_fields)
    drilled, drill_fields = await instance_drill_state(clients, body)
    if drilled is not None:
        outcome.conditions.append(drilled)
    outcome.fields.update(drill_fields)
    upgraded = upgrade_condition(body, config_image(clients, InstanceSpec.from_resource(body)))
    if upgraded is not None:
        outcome.conditions.append(upgraded)
    await _publish(clients, outcome, body, status, patch, generation)
    return outcome


@kopf.on.resume(GROUP, VERSION, INSTANCE_PLURAL, when=serves_tenant)
@kopf.on.create(GROUP, VERSION, INSTANCE_PLURAL, when=serves_tenant)
@kopf.on.update(GROUP, VERSION, INSTANCE_PLURAL, field="spec", when=serves_tenant)
@kopf.on.update(
    GROUP,
    VERSION,
    INSTANCE_PLURAL,
    field=("metadata", "annotations", ROTATE_CREDENTIALS_ANNOTATION),
    when=serves_tenant,
)
@kopf.on.update(
    GROUP,
    VERSION,
    INSTANCE_PLURAL,
    field=("metadata", "annotations", MAINTENANCE_ANNOTATION),
    when=serves_tenant,
)
@kopf.on.update(
    GROUP,
    VERSION,
    INSTANCE_PLURAL,
    field=("metadata", "annotations", WAKE_ANNOTATION),
    when=serves_tenant,
)
async def reconcile_on_change(
    memo: kopf.Memo,
    body: kopf.Body,
    status: kopf.Status,
    patch: kopf.Patch,
    retry: int = 0,
    **_: Any,
) -> None:
    """Converge the tenant; retry after 1, 2, 4, then every 5 seconds until it is Ready
    (``retry``: Kopf's count of the retries so far)."""
    await _reconcile(memo, body, status, patch, retry=True, attempt=retry)


@kopf.timer(
    GROUP,
    VERSION,
    INSTANCE_PLURAL,
    interval=DRIFT_INTERVAL_SECONDS,
    initial_delay=5.0,
    when=serves_tenant,
)
async def repair_drift(
    memo: kopf.Memo,
    body: kopf.Body,
    status: kopf.Status,
    patch: kopf.Patch,
    stopped: kopf.DaemonStopped | None = None,  # Kopf's stop flag of this timer
    **_: Any,
) -> None:
    """Put back whatever drifted (an edited Deployment, a widened ACL user, ...).

    The first run for a tenant in this process waits a random part of the interval: tenants
    created or resumed together would otherwise pass at the same moments forever (a burst
    of every tenant's reads each interval, instead of a steady trickle)."""
    clients: Clients = memo["clients"]
    name = body["metadata"]["name"]
    if name not in clients.drift_spread:
        clients.drift_spread.add(name)
        offset = random.uniform(0, DRIFT_INTERVAL_SECONDS)  # noqa: S311 - spread, not secrecy
        if stopped is None:
            await asyncio.sleep(offset)
        else:
            # Kopf's stop flag, not a plain sleep: a tenant deleted meanwhile is let go at once.
            await stopped.wait(offset)
            if stopped:
                return
    await _reconcile(memo, body, status, patch, retry=False, trigger="drift")


# How long one run of repair_on_child_change waits for a change before it lets Kopf call it
# again: short enough that Kopf sees it end now and then, long enough to cost nothing idle.
_CHILD_WAIT_SECONDS = 60.0


def _watching_children(memo: kopf.Memo, **kwargs: Any) -> bool:
    """Kopf filter: a tenant this process serves, and a watch cache to be woken by."""
    clients: Clients | None = memo.get("clients")
    return clients is not None and clients.kube.cache is not None and serves_tenant(**kwargs)


async def _child_changed(
    clients: Clients, name: str, stopped: kopf.DaemonStopped | None, timeout: float
) -> bool:
    """Wait for an edit by others (not a status update) or a deletion of one of tenant
    ``name``'s objects, until ``timeout`` or Kopf's stop flag (the tenant deleted, the
    operator stopping)."""
    assert clients.kube.cache is not None
    waiting = clients.kube.cache.wait_for_change(name, timeout, statuses=False)
    changed = asyncio.ensure_future(waiting)
    if stopped is None:
        return await changed
    stopping = asyncio.ensure_future(stopped.wait(timeout))
    done, pending = await asyncio.wait({changed, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return changed in done and changed.result()


@kopf.timer(
    GROUP,
    VERSION,
    INSTANCE_PLURAL,
    interval=1.0,
    initial_delay=5.0,
    when=_watching_children,
)
async def repair_on_child_change(
    memo: kopf.Memo,
    body: kopf.Body,
    status: kopf.Status,
    patch: kopf.Patch,
    stopped: kopf.DaemonStopped | None = None,  # Kopf's stop flag of this timer
    **_: Any,
) -> None:
    """Put back a child object someone else edited or deleted (a Deployment scaled by
    hand, a network policy removed) within seconds of the watch event, rather than at the
    next drift pass. Status updates (pods starting, a backup Job ending) are no drift and
    wake nothing here. Only for a Ready tenant: while one is provisioned or rolled out, its
    own pass is retrying and is woken by its children's progress (``_reconcile``)."""
    clients: Clients = memo["clients"]
    name = body["metadata"]["name"]
    if not await _child_changed(clients, name, stopped, _CHILD_WAIT_SECONDS):
        return
    if stopped or not _is_true(status, "Ready"):
        return
    await _reconcile(memo, body, status, patch, retry=False, trigger="drift")


def _upgrade_pending(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> bool:
    clients: Clients | None = memo.get("clients")
    if clients is None or not serves_tenant(body, **kwargs):
        return False
    try:
        spec = InstanceSpec.from_resource(body)
        desired = clients.config.image_for(spec.version, spec.image)
    except (ConfigError, KeyError, TypeError, ValueError):
        desired = None  # nothing to move to; a running upgrade still gets its steps
    return upgrade_work_pending(body, desired)


@kopf.timer(
    GROUP,
    VERSION,
    INSTANCE_PLURAL,
    interval=UPGRADE_INTERVAL_SECONDS,
    initial_delay=3.0,
    when=_upgrade_pending,
)
async def advance_upgrade_step(
    memo: kopf.Memo, body: kopf.Body, patch: kopf.Patch, **_: Any
) -> None:
    """Take the next step of a pending or running upgrade, and say so in Events. Runs only
    for instances with upgrade work (see ``upgrade_work_pending``): idle ones cost nothing."""
    clients: Clients = memo["clients"]
    async with clients.pass_lock(body["metadata"]["name"]):
        changes = await advance_upgrade(clients, body)
    if changes is None:
        return
    upgrade, fields = changes
    patch.status["upgrade"] = upgrade
    patch.status.update(fields)
    before = ((body.get("status") or {}).get("upgrade") or {}).get("step")
    step = upgrade.get("step")
    if step == before:
        return
    metrics.record_upgrade_step(body["metadata"]["name"], before, upgrade)
    if step == "backup":
        await record_event(
            clients, body, "Normal", "UpgradeStarted", f"to {upgrade['to']['version']}"
        )
    elif step == "done":
        await record_event(clients, body, "Normal", "Upgraded", upgrade["message"])
    elif step == "failed":
        await record_event(clients, body, "Warning", "UpgradeFailed", upgrade["message"])
    elif step == "rollback":
        await record_event(clients, body, "Warning", "RollingBack", upgrade.get("reason", ""))


async def _say_terminating(clients: Clients, body: kopf.Body) -> None:
    """From the first moment of a deletion the tenant is going away, not serving: its
    status says so at once (its namespace, and its pods, may already be gone)."""
    status = body.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("reason") == "Terminating":
        return
    generation = int(body["metadata"].get("generation", 0))
    policy = (body.get("spec") or {}).get("deletionPolicy", "Retain")
    message = f"being deleted (deletionPolicy {policy}): not serving"
    conditions = list(status.get("conditions") or [])
    for condition in (
        Condition("Ready", "False", "Terminating", message),
        Condition("Reconciling", "True", "Terminating", message),
    ):
        conditions = merge_condition(conditions, condition, generation)
    await clients.kube.patch_status(
        API_VERSION,
        INSTANCE_KIND,
        body["metadata"]["name"],
        {"conditions": conditions, "phase": "Terminating"},
    )


@kopf.on.delete(GROUP, VERSION, INSTANCE_PLURAL, when=serves_tenant)
async def delete_tenant(memo: kopf.Memo, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Apply the deletion policy before the finalizer is released.

    With ``deletionPolicy: Delete`` and backups configured, a ``pre-delete`` backup must
    succeed first: nothing is dropped whose backup did not succeed.
    """
    clients: Clients = memo["clients"]
    if clients.kube.cache is not None:
        clients.kube.cache.forget_tenant(body["metadata"]["name"])  # its objects' deletions
    # The pass lock: a drift pass that started before the deletion arrived finishes first,
    # and none starts after it (see _reconcile), so nothing dropped here is created again.
    with urgent():  # before any rollout's turns: a deletion is often what frees capacity
        async with clients.pass_lock(body["metadata"]["name"]):
            await _say_terminating(clients, body)
            waiting = await pre_delete_backup_pending(clients, body)
            if waiting is not None:
                raise kopf.TemporaryError(waiting, delay=_RETRY_SECONDS)
            steps = await delete_instance(clients, body)
            for step in steps:
                logger.info(step)
    await journal.record(
        clients,
        body["metadata"]["name"],
        "Deleted",
        {
            "uid": body["metadata"].get("uid"),
            "deletionPolicy": (body.get("spec") or {}).get("deletionPolicy", "Retain"),
            "steps": steps,
        },
    )
    metrics.forget_instance(body["metadata"]["name"])
    clients.drift_spread.discard(body["metadata"]["name"])
    turns = clients.provisioning_turns
    turns.release(body["metadata"]["name"])
    metrics.observe_provisioning(turns.provisioning, turns.queued)
