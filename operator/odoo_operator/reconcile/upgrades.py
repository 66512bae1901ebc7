"""Upgrades with a safety net: backup, upgrade a copy, switch, health gate, rollback.

A change of ``spec.version`` or of the image starts an upgrade. Each call of
:func:`advance_upgrade` takes at most one step and returns what to record in
``status.upgrade``; a restarted operator resumes at the recorded step, and every step is
idempotent (it checks what is already done before doing it).

The live database is never touched by the migration: the upgrade runs on a copy
(``CREATE DATABASE ... TEMPLATE``), and the switch is a rename in one transaction, with the
old database kept as ``<db>_pre_upgrade_<id>``. Rollback is the same rename backwards.

Odoo keeps a database's files in ``filestore/<database name>`` on the tenant's volume, and a
database rename moves no directory. The copy gets its own filestore (a hard-linked copy, made
by the upgrade Job), so each switch of names is followed by the same switch of directories,
done by a Job in the tenant namespace (the operator cannot reach the volume): step
``filestore`` after ``switch``, and ``rollback-filestore`` before ``rollback``, its mirror.
Web and cron stay at zero from ``copy`` until ``health``, and again from the start of a
rollback to its end, so no pod ever sees one switched without the other.
"""

from __future__ import annotations

import datetime
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import sql

from ..builders.schedule import parse_duration
from ..builders.tenant import Endpoint, Tenant, TenantCredentials
from ..builders.workloads import (
    build_upgrade_filestore_job,
    build_upgrade_job,
    upgrade_job_name,
)
from ..engine import database as db
from ..model.backup import BACKUP_KIND, SUCCEEDED
from ..model.backup import FAILED as BACKUP_FAILED
from ..model.conditions import Condition
from ..model.config import ConfigError
from ..model.names import API_VERSION, INSTANCE_KIND, MAINTENANCE_ANNOTATION
from ..model.spec import InstanceSpec
from ..model.upgrade import (
    BACKUP,
    COPY,
    DONE,
    FAILED,
    FINAL_STEPS,
    HEALTH,
    MIGRATE,
    RETRY_UPGRADE_ANNOTATION,
    ROLLBACK,
    SWITCH,
    UPGRADE_NOW_ANNOTATION,
    UpgradePolicy,
    major,
)
from .backups import backup_object, backups_of, now, parse_time, timestamp
from .clients import Clients

logger = logging.getLogger(__name__)

Changes = tuple[dict[str, Any], dict[str, Any]]  # (status.upgrade, other status fields)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# Steps besides those of model/upgrade.py. The order is
#   backup, copy, migrate, switch, FILESTORE, health, done
# and, when the health gate fails,
#   health, ROLLBACK_FILESTORE, rollback, failed
# (a rollback ends in "rollback", which the Events and metrics of a rollback key on).
FILESTORE = "filestore"
ROLLBACK_FILESTORE = "rollback-filestore"
# status.upgrade.filestore: where the directories are, once a step has moved them. Its
# absence before a rollback means nothing was moved (an upgrade switched by an operator
# without the filestore step), and then nothing must be moved back.
FILESTORE_SWITCHED = "switched"
FILESTORE_RESTORED = "restored"


def window_open(policy: UpgradePolicy, moment: datetime.datetime) -> bool:
    """Whether ``moment`` falls in the maintenance window (always, without one)."""
    window = policy.window
    if window is None:
        return True
    local = moment.astimezone(ZoneInfo(window.time_zone))
    hours, minutes = (int(part) for part in window.start.split(":"))
    length = parse_duration(window.duration)
    # The window that contains `local` opened today or, past midnight, on an earlier day.
    for days_back in range(0, 1 + length.days + 1):
        day = local.date() - datetime.timedelta(days=days_back)
        opened = datetime.datetime.combine(day, datetime.time(hours, minutes), tzinfo=local.tzinfo)
        if window.days and _DAYS[day.weekday()] not in window.days:
            continue
        if opened <= local < opened + length:
            return True
    return False


def upgrade_condition(body: Mapping[str, Any], desired_image: str | None) -> Condition | None:
    """``Upgraded``: True when the tenant runs what its spec asks for, else why not."""
    status = body.get("status") or {}
    running_version, running_image = status.get("runningVersion"), status.get("runningImage")
    if running_version is None:
        return None
    wanted = (body.get("spec") or {}).get("version")
    upgrade = status.get("upgrade") or {}
    if running_version == wanted and running_image == desired_image:
        return Condition("Upgraded", "True", "Current", f"running Odoo {running_version}")
    step = upgrade.get("step")
    if step == FAILED:
        return Condition(
            "Upgraded",
            "False",
            "UpgradeFailed",
            f"running {running_version}, asked for {wanted}: {upgrade.get('message')}",
        )
    if step in (None, DONE):
        return Condition(
            "Upgraded",
            "False",
            "Pending",
            f"running {running_version}, asked for {wanted}: "
            f"{upgrade.get('message') or 'the upgrade has not started'}",
        )
    return Condition("Upgraded", "False", "InProgress", f"upgrading to {wanted}: step {step}")


@dataclass(frozen=True)
class Step:
    """What one step of an upgrade works with: the tenant and its recorded upgrade."""

    clients: Clients
    spec: InstanceSpec
    policy: UpgradePolicy
    upgrade: dict[str, Any]


def _copy_name(database: str, upgrade_id: str) -> str:
    return f"{database}_upgrade_{upgrade_id}"


def _kept_name(database: str, upgrade_id: str) -> str:
    return f"{database}_pre_upgrade_{upgrade_id}"


def _failed_name(database: str, upgrade_id: str) -> str:
    return f"{database}_failed_upgrade_{upgrade_id}"


def _job_tenant(clients: Clients, spec: InstanceSpec, image: str) -> Tenant:
    """The tenant as the Job builders see it: the pod reads its settings from the tenant's
    Secrets, so no endpoint or credential value is needed here. The registry's TLS settings
    are: they decide the pod's PGSSLMODE, PGSSLROOTCERT and the CA volume."""
    node_selector, tolerations = clients.config.node_pool(spec.tenancy)
    config = clients.config
    return Tenant(
        spec=spec,
        image=image,
        database=Endpoint("", 0),
        redis=Endpoint("", 0),
        redis_user="",
        redis_key_prefix="",
        credentials=TenantCredentials("", "", ""),
        ingress_namespace=clients.config.ingress_namespace,
        node_selector=node_selector,
        tolerations=tolerations,
        database_tls=config.postgres_server(spec.database_server).tls,
        redis_tls=config.redis_server(spec.redis_server).tls,
    )


async def _set_maintenance(clients: Clients, name: str, value: str | None) -> None:
    await clients.kube.patch_metadata(
        API_VERSION, INSTANCE_KIND, name, {"annotations": {MAINTENANCE_ANNOTATION: value}}
    )


async def _workloads(clients: Clients, spec: InstanceSpec) -> list[dict[str, Any] | None]:
    return [
        await clients.kube.get("apps/v1", "Deployment", f"odoo-{component}", spec.namespace)
        for component in ("web", "cron")
    ]


async def _scaled_down(clients: Clients, spec: InstanceSpec) -> bool:
    return all(
        live is None
        or not (
            (live.get("spec") or {}).get("replicas") or (live.get("status") or {}).get("replicas")
        )
        for live in await _workloads(clients, spec)
    )


async def _running(clients: Clients, spec: InstanceSpec, image: str) -> bool:
    """Web and cron run ``image``, rolled out and available."""
    for live in await _workloads(clients, spec):
        if live is None:
            return False
        pod = live["spec"]["template"]["spec"]
        status, wanted = live.get("status") or {}, live["spec"].get("replicas", 1)
        if (
            pod["containers"][0]["image"] != image
            or status.get("observedGeneration", 0) < live["metadata"].get("generation", 0)
            or (status.get("updatedReplicas") or 0) != wanted
            or (status.get("availableReplicas") or 0) != wanted
        ):
            return False
    return True


async def _admin(clients: Clients, spec: InstanceSpec) -> str:
    return await clients.postgres_admin_conninfo(
        clients.config.postgres_server(spec.database_server)
    )


async def _upgrades_in_progress(clients: Clients, name: str) -> int:
    count = 0
    for item in await clients.kube.list(API_VERSION, INSTANCE_KIND):
        step = ((item.get("status") or {}).get("upgrade") or {}).get("step")
        if item["metadata"]["name"] != name and step not in (None, *FINAL_STEPS):
            count += 1
    return count


def upgrade_work_pending(body: Mapping[str, Any], desired_image: str | None) -> bool:
    """Whether :func:`advance_upgrade` may have a step to take for this instance, judged
    from the watched body alone (no API read): an image to move to, an upgrade under way, a
    hold to release or a kept database to drop. Idle tenants are then not polled at all."""
    if body["metadata"].get("deletionTimestamp"):
        return False
    status = body.get("status") or {}
    upgrade = status.get("upgrade") or {}
    step = upgrade.get("step")
    if step is not None and step not in FINAL_STEPS:
        return True
    held_by = (body["metadata"].get("annotations") or {}).get(MAINTENANCE_ANNOTATION)
    if step in FINAL_STEPS and held_by == f"upgrade/{upgrade.get('id')}":
        return True
    if step == DONE and upgrade.get("kept") and not upgrade.get("keptDroppedAt"):
        return True
    running = status.get("runningImage")
    return bool(running and desired_image and running != desired_image)


async def advance_upgrade(clients: Clients, body: Mapping[str, Any]) -> Changes | None:
    """Take the next step of the instance's upgrade; the status changes, or None.

    The instance is read afresh: the caller's copy may predate the previous step's result.
    """
    fresh = await clients.kube.get(API_VERSION, INSTANCE_KIND, body["metadata"]["name"])
    if fresh is None or fresh["metadata"].get("deletionTimestamp"):
        return None
    body = fresh
    spec = InstanceSpec.from_resource(body)
    policy = UpgradePolicy.from_instance(body)
    status = body.get("status") or {}
    upgrade = dict(status.get("upgrade") or {})
    running_image, running_version = status.get("runningImage"), status.get("runningVersion")
    if running_image is None or running_version is None:
        return None  # not provisioned yet: the first rollout is not an upgrade
    try:
        desired_image = clients.config.image_for(spec.version, spec.image)
    except ConfigError:
        return None  # reported as Stalled by the instance's reconciler
    step = upgrade.get("step")
    held_by = (body["metadata"].get("annotations") or {}).get(MAINTENANCE_ANNOTATION)
    if step in FINAL_STEPS and held_by == f"upgrade/{upgrade.get('id')}":
        await _set_maintenance(clients, spec.name, None)  # never leave a tenant held
        return None
    if step == DONE and upgrade.get("kept") and not upgrade.get("keptDroppedAt"):
        cleaned = await _drop_previous_database(clients, spec, policy, upgrade)
        if cleaned is not None:
            return cleaned
    if step is None or step in FINAL_STEPS:
        return await _maybe_start(
            clients, body, spec, policy, upgrade, running_version, running_image, desired_image
        )
    return await _STEPS[step](Step(clients, spec, policy, upgrade))


async def _maybe_start(
    clients: Clients,
    body: Mapping[str, Any],
    spec: InstanceSpec,
    policy: UpgradePolicy,
    upgrade: dict[str, Any],
    running_version: str,
    running_image: str,
    desired_image: str,
) -> Changes | None:
    if running_version == spec.version and running_image == desired_image:
        return None
    target = {"version": spec.version, "image": desired_image}
    annotations = body["metadata"].get("annotations") or {}
    retry = annotations.get(RETRY_UPGRADE_ANNOTATION)
    if (
        upgrade.get("step") == FAILED
        and upgrade.get("to") == target
        and retry == upgrade.get("retry")
    ):
        return None  # a failed attempt is not repeated until the spec or the retry changes
    waiting = dict(upgrade)
    if major(spec.version) != major(running_version) and not policy.migration_image:
        return _changed(
            upgrade,
            {
                **waiting,
                "to": target,
                "retry": retry,
                "step": FAILED,
                "message": "a major upgrade needs spec.upgrade.migrationImage",
            },
        )
    if not window_open(policy, now()) and UPGRADE_NOW_ANNOTATION not in annotations:
        waiting["message"] = "waiting for the maintenance window"
        return _changed(upgrade, waiting)
    async with clients.upgrade_slots:
        busy = await _upgrades_in_progress(clients, spec.name)
        if busy >= clients.config.upgrade_concurrency:
            waiting["message"] = (
                f"waiting: {busy} upgrades are running, the limit is "
                f"{clients.config.upgrade_concurrency}"
            )
            return _changed(upgrade, waiting)
        started = {
            "id": secrets.token_hex(3),
            "from": {"version": running_version, "image": running_image},
            "to": target,
            "retry": retry,
            "step": BACKUP,
            "startedAt": timestamp(now()),
            "message": "taking the pre-upgrade backup",
        }
        # Recorded at once, inside the slot lock: the next tenant's count includes this one.
        await clients.kube.patch_status(API_VERSION, INSTANCE_KIND, spec.name, {"upgrade": started})
    logger.info(
        "upgrade %s of %s started: %s -> %s",
        started["id"],
        spec.name,
        running_version,
        spec.version,
    )
    return started, {}


def _changed(before: dict[str, Any], after: dict[str, Any]) -> Changes | None:
    return None if before == after else (after, {})


async def _step_backup(step: Step) -> Changes | None:
    clients, spec, upgrade = step.clients, step.spec, step.upgrade
    name = f"{spec.name}-pre-upgrade-{upgrade['id']}"
    backup = await clients.kube.get(API_VERSION, BACKUP_KIND, name)
    if backup is None:
        if not clients.config.blob_stores:
            return _fail(upgrade, "no blob store is configured: an upgrade needs a backup first")
        await clients.kube.apply(backup_object(spec.name, name, "pre-upgrade", retain=True))
        return None
    phase = (backup.get("status") or {}).get("phase")
    if phase == BACKUP_FAILED:
        return _fail(upgrade, f"the pre-upgrade backup {name} failed; nothing was changed")
    if phase != SUCCEEDED:
        return None
    await _set_maintenance(clients, spec.name, f"upgrade/{upgrade['id']}")
    return {
        **upgrade,
        "backup": name,
        "step": COPY,
        "maintenanceSince": timestamp(now()),
        "message": "web and cron stopping; copying the database",
    }, {}


async def _step_copy(step: Step) -> Changes | None:
    clients, spec, upgrade = step.clients, step.spec, step.upgrade
    await _set_maintenance(clients, spec.name, f"upgrade/{upgrade['id']}")
    if not await _scaled_down(clients, spec):
        return None
    copy = _copy_name(spec.database, upgrade["id"])
    async with db.connect(await _admin(clients, spec)) as admin:
        # A copy left by an interrupted attempt of this step is incomplete: start it again.
        await db.drop_database(admin, copy)
        await db.terminate_sessions(admin, spec.database)
        await admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                sql.Identifier(copy), sql.Identifier(spec.database), sql.Identifier(spec.database)
            )
        )
        await admin.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(copy))
        )
    return {**upgrade, "copy": copy, "step": MIGRATE, "message": f"migrating the copy {copy}"}, {}


async def _step_migrate(step: Step) -> Changes | None:
    clients, spec, policy, upgrade = step.clients, step.spec, step.policy, step.upgrade
    image = (
        policy.migration_image if major(spec.version) != major(upgrade["from"]["version"]) else None
    )
    job = build_upgrade_job(
        _job_tenant(clients, spec, upgrade["to"]["image"]),
        upgrade_id=upgrade["id"],
        image=image or upgrade["to"]["image"],
        database=upgrade["copy"],
        modules=policy.modules,
    )
    name = upgrade_job_name(upgrade["id"])
    live = await clients.kube.get("batch/v1", "Job", name, spec.namespace)
    if live is None:
        await clients.kube.apply(job)
        return {**upgrade, "job": f"{spec.namespace}/{name}"}, {}
    finished = _finished(live)
    if "Failed" in finished:
        await _set_maintenance(clients, spec.name, None)
        return _fail(
            upgrade,
            f"the upgrade Job failed; read kubectl logs -n {spec.namespace} job/{name}. The "
            f"database was not touched; the failed copy {upgrade['copy']} is kept for diagnosis",
        )
    if "Complete" not in finished:
        return None
    return {**upgrade, "step": SWITCH, "message": "switching to the upgraded database"}, {}


def _finished(job: Mapping[str, Any]) -> set[str]:
    """The conditions a Job holds True, of which ``Complete`` and ``Failed`` are final."""
    return {
        str(c.get("type"))
        for c in (job.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    }


async def _step_switch(step: Step) -> Changes | None:
    clients, spec, upgrade = step.clients, step.spec, step.upgrade
    kept = _kept_name(spec.database, upgrade["id"])
    async with db.connect(await _admin(clients, spec)) as admin:
        # Done before the operator stopped? Then the kept database exists and the copy not.
        if await db.database_owner(admin, upgrade["copy"]) is not None:
            await db.swap_databases(admin, spec.database, upgrade["copy"], kept)
    # The new image is recorded with this step; the pods come back two steps later, so the
    # reconciler never brings them back on the old image.
    running = {"runningVersion": upgrade["to"]["version"], "runningImage": upgrade["to"]["image"]}
    return {
        **upgrade,
        "kept": kept,
        "step": FILESTORE,
        "message": f"moving the filestore of {upgrade['copy']} into place; the previous one "
        f"is kept as {kept}",
    }, running


async def _filestore_job(step: Step, job: dict[str, Any]) -> tuple[bool, Changes | None]:
    """Run one filestore Job while web and cron are held at zero: whether it completed, and
    the status changes (or None) while it has not.

    A failed Job is not replaced on its own: the script refuses only in a state nobody
    expects, which someone must look at, and a pod lost on the way was already retried by
    the Job. The tenant stays in maintenance meanwhile: serving it with a database and a
    filestore that do not belong together would show missing attachments, or worse, store
    new ones where the other database looks.
    """
    clients, spec, upgrade = step.clients, step.spec, step.upgrade
    await _set_maintenance(clients, spec.name, f"upgrade/{upgrade['id']}")
    name = job["metadata"]["name"]
    where = f"{spec.namespace}/{name}"
    live = await clients.kube.get("batch/v1", "Job", name, spec.namespace)
    if live is None:
        # Pods still stopping could write into a directory about to move: they go first.
        if not await _scaled_down(clients, spec):
            return False, None
        await clients.kube.apply(job)
        return False, _changed(
            upgrade,
            {**upgrade, "filestoreJob": where, "message": f"moving filestore directories: {where}"},
        )
    finished = _finished(live)
    if "Complete" in finished:
        return True, None
    if "Failed" in finished:
        return False, _changed(
            upgrade,
            {
                **upgrade,
                "filestoreJob": where,
                "message": f"the filestore Job failed; read kubectl logs -n {spec.namespace} "
                f"job/{name}. The tenant stays in maintenance. Once the cause is fixed, delete "
                "the Job and the operator runs it again: it carries on from where it stopped",
            },
        )
    return False, None


async def _step_filestore(step: Step) -> Changes | None:
    """After the database switch: the copy's filestore into the tenant's, the previous one
    beside the previous database."""
    spec, upgrade = step.spec, step.upgrade
    image = upgrade["to"]["image"]
    job = build_upgrade_filestore_job(
        _job_tenant(step.clients, spec, image),
        upgrade_id=upgrade["id"],
        image=image,
        live=spec.database,
        incoming=upgrade["copy"],
        aside=upgrade["kept"],
    )
    done, waiting = await _filestore_job(step, job)
    if not done:
        return waiting
    return {
        **upgrade,
        "filestore": FILESTORE_SWITCHED,
        "step": HEALTH,
        "message": f"starting web and cron on {image}",
    }, {}


async def _step_health(step: Step) -> Changes | None:
    clients, spec, policy, upgrade = step.clients, step.spec, step.policy, step.upgrade
    if "healthSince" not in upgrade:
        await _set_maintenance(clients, spec.name, None)
        return {
            **upgrade,
            "healthSince": timestamp(now()),
            "message": f"waiting for web and cron on {upgrade['to']['image']}",
        }, {}
    if await _running(clients, spec, upgrade["to"]["image"]):
        await _take_post_upgrade_backup(clients, spec, upgrade)
        since = parse_time(upgrade.get("maintenanceSince")) or now()
        return {
            **upgrade,
            "step": DONE,
            "completedAt": timestamp(now()),
            "downtimeSeconds": round((now() - since).total_seconds(), 1),
            "message": f"upgraded to {upgrade['to']['version']} ({upgrade['to']['image']}); "
            f"the previous database is kept as {upgrade['kept']}"
            + (f", its files in filestore/{upgrade['kept']}" if upgrade.get("filestore") else ""),
        }, {}
    started = parse_time(upgrade.get("healthSince")) or now()
    if now() - started <= parse_duration(policy.health_timeout):
        return None
    return {
        **upgrade,
        "step": ROLLBACK_FILESTORE,
        "reason": f"web and cron were not available within {policy.health_timeout}",
        "message": "rolling back: the health gate failed",
    }, {}


async def _step_rollback_filestore(step: Step) -> Changes | None:
    """The first half of a rollback: the previous filestore back into the tenant's place,
    the upgraded one beside the database it belongs to, the failed upgrade's."""
    spec, upgrade = step.spec, step.upgrade
    failed = _failed_name(spec.database, upgrade["id"])
    if upgrade.get("filestore") == FILESTORE_SWITCHED:
        image = upgrade["from"]["image"]  # the image the tenant ran on: it is there
        job = build_upgrade_filestore_job(
            _job_tenant(step.clients, spec, image),
            upgrade_id=upgrade["id"],
            image=image,
            live=spec.database,
            incoming=upgrade["kept"],
            aside=failed,
            rollback=True,
        )
        done, waiting = await _filestore_job(step, job)
        if not done:
            return waiting
        upgrade = {**upgrade, "filestore": FILESTORE_RESTORED}
    return {
        **upgrade,
        "step": ROLLBACK,
        "message": f"rolling back: the previous database back in place, the upgraded one kept "
        f"as {failed}",
    }, {}


async def _step_rollback(step: Step) -> Changes | None:
    clients, spec, upgrade = step.clients, step.spec, step.upgrade
    await _set_maintenance(clients, spec.name, f"upgrade/{upgrade['id']}")
    if not await _scaled_down(clients, spec):
        return None
    kept = upgrade["kept"]
    failed = _failed_name(spec.database, upgrade["id"])
    async with db.connect(await _admin(clients, spec)) as admin:
        if await db.database_owner(admin, kept) is not None:
            await db.swap_databases(admin, spec.database, kept, failed)
    running = {
        "runningVersion": upgrade["from"]["version"],
        "runningImage": upgrade["from"]["image"],
    }
    files = f" (its files in filestore/{failed})" if upgrade.get("filestore") else ""
    # Maintenance is lifted once this is recorded (see advance_upgrade): the pods come back
    # on the previous image.
    changes = _fail(
        upgrade,
        f"{upgrade.get('reason')}; rolled back to {upgrade['from']['version']} on the untouched "
        f"database; the upgraded one is kept as {failed}{files}",
    )
    return changes[0], running


def _post_upgrade_backup_name(spec: InstanceSpec, upgrade: Mapping[str, Any]) -> str:
    return f"{spec.name}-post-upgrade-{upgrade['id']}"


async def _post_upgrade_backup(
    clients: Clients, spec: InstanceSpec, upgrade: Mapping[str, Any]
) -> str | None:
    """A succeeded OdooBackup of the tenant started after the upgrade finished: one that
    holds the upgraded database. Takes one (``post-upgrade``) when there is none and a blob
    store is configured; returns its name once one has succeeded, else None."""
    finished = parse_time(upgrade.get("completedAt"))
    if finished is None:
        return None
    own = _post_upgrade_backup_name(spec, upgrade)
    found = False
    for item in await backups_of(clients, spec.name):
        status = item.get("status") or {}
        started = parse_time(status.get("startedAt"))
        is_own = item["metadata"]["name"] == own  # created after the switch: it counts
        found = found or is_own
        after = is_own or (started is not None and started >= finished)
        if status.get("phase") == SUCCEEDED and after:
            return str(item["metadata"]["name"])
    if not found:
        await _take_post_upgrade_backup(clients, spec, upgrade)
    return None


async def _take_post_upgrade_backup(
    clients: Clients, spec: InstanceSpec, upgrade: Mapping[str, Any]
) -> None:
    """The first backup of the upgraded database (a pre-upgrade backup cannot be restored
    into the new version), when a blob store is configured."""
    if clients.config.blob_stores:
        name = _post_upgrade_backup_name(spec, upgrade)
        await clients.kube.apply(backup_object(spec.name, name, "post-upgrade"))


async def _drop_previous_database(
    clients: Clients, spec: InstanceSpec, policy: UpgradePolicy, upgrade: dict[str, Any]
) -> Changes | None:
    """After a successful upgrade: drop the kept pre-upgrade database once the grace period
    has passed and a post-upgrade backup has succeeded; the status changes, or None."""
    completed = parse_time(upgrade.get("completedAt")) or now()
    if now() - completed < parse_duration(policy.keep_previous_database, allow_zero=True):
        return None  # checked first: this runs at every upgrade tick, and costs no read here
    backup = await _post_upgrade_backup(clients, spec, upgrade)
    if backup is None:
        return None
    async with db.connect(await _admin(clients, spec)) as admin:
        await db.drop_database(admin, upgrade["kept"])
    logger.info(
        "upgrade %s of %s: dropped %s (kept %s; backup %s holds the upgraded database)",
        upgrade["id"],
        spec.name,
        upgrade["kept"],
        policy.keep_previous_database,
        backup,
    )
    return {
        **upgrade,
        "keptDroppedAt": timestamp(now()),
        "postUpgradeBackup": backup,
        "message": f"upgraded to {upgrade['to']['version']} ({upgrade['to']['image']}); the "
        f"previous database {upgrade['kept']} was dropped after {policy.keep_previous_database}"
        f" and the post-upgrade backup {backup}"
        + (
            f"; its files stay in filestore/{upgrade['kept']} until removed by hand"
            if upgrade.get("filestore")
            else ""
        ),
    }, {}


def _fail(upgrade: dict[str, Any], message: str) -> Changes:
    return {**upgrade, "step": FAILED, "completedAt": timestamp(now()), "message": message}, {}


_STEPS = {
    BACKUP: _step_backup,
    COPY: _step_copy,
    MIGRATE: _step_migrate,
    SWITCH: _step_switch,
    FILESTORE: _step_filestore,
    HEALTH: _step_health,
    ROLLBACK_FILESTORE: _step_rollback_filestore,
    ROLLBACK: _step_rollback,
}
