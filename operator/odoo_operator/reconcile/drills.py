"""Restore drills: the newest backup restored into a temporary tenant that must serve.

A drill is an OdooRestore with ``spec.drill: true`` and no target: created by hand, or by
the operator on the schedule of the instance's ``spec.backup.drill``. Steps, each recorded
in ``status.step`` and ``status.drill`` so a restarted operator knows where it stopped:

1. ``provisioning``: a temporary OdooInstance ``drill-<hash>`` of the backup's Odoo version
   on the source's servers, environment ``development`` (so the restore is neutralized),
   no route and no traffic from the ingress controller (label :data:`DRILL_LABEL`), no
   backups of its own, ``deletionPolicy: Delete``, owned by the drill (deleting the drill
   deletes it); the drill waits for it to be Ready;
2. the restore's own steps (:mod:`.restores`) into that instance, without the safety
   backup (there is nothing in it to keep);
3. the business invariants the backup's manifest recorded (posted entries, their total,
   debit minus credit, journal entries, their lines and attachments) read from the restored
   database before anyone uses it (:mod:`odoo_operator.engine.drill`);
4. ``serving``: the instance Ready again, ``GET /web/health`` answering 200 through its
   Service, and the backup's own monitoring user logging in and reading its record (the
   restored database holds the source's users and their passwords);
5. the temporary instance deleted, with its database.

The **RTO** recorded is the time from the drill's start to the end of step 4: what it takes
to bring the whole tenant (namespace, database, filestore, Odoo) back from the backup. A
drill that does not serve within ``ODOO_OPERATOR_DRILL_TIMEOUT`` seconds (default 3600)
fails, and is cleaned up all the same.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import aiohttp

from ..backends.blobstore import BlobStoreUnavailable
from ..backends.odoo_http import check_health, check_login
from ..backends.odoo_users import read_credentials
from ..builders.odoo_users import CREDENTIALS_SECRET, MONITOR_LOGIN, MONITOR_PASSWORD_KEY
from ..builders.schedule import due_slot, is_due, parse_duration
from ..builders.tenant import ODOO_HTTP_PORT
from ..engine.backup import read_manifest
from ..engine.drill import check_invariants
from ..model.backup import (
    BACKUP_KIND,
    FAILED,
    FINISHED,
    NEUTRALIZE,
    RESTORE_KIND,
    RUNNING,
    SUCCEEDED,
    BackupPolicy,
    RestoreRequest,
)
from ..model.conditions import Condition
from ..model.config import TenantPolicy
from ..model.names import (
    API_VERSION,
    DRILL_HOST_SUFFIX,
    DRILL_LABEL,
    INSTANCE_KIND,
    INSTANCE_LABEL,
    tenant_namespace,
)
from ..model.odoo_options import config_option_problems
from ..model.shards import SHARD_LABEL
from ..model.spec import InstanceSpec
from .backup_copies import readable_store
from .backups import (
    backups_of,
    finished,
    now,
    parse_time,
    precise_timestamp,
    publish_instance_state,
    timestamp,
)
from .clients import Clients
from .restores import RestoreWaiting, run_restore_request

logger = logging.getLogger(__name__)

DRILL_TIMEOUT_ENV = "ODOO_OPERATOR_DRILL_TIMEOUT"
_DEFAULT_DRILL_TIMEOUT_SECONDS = 3600.0
_CHECK_TIMEOUT_SECONDS = 10.0
PROVISIONING, SERVING = "provisioning", "serving"
DRILL_CONDITION = "RestoreDrillPassed"


def drill_timeout() -> float:
    """How long a drill may take to serve before it counts as failed (seconds)."""
    text = os.environ.get(DRILL_TIMEOUT_ENV, "")
    return float(text) if text else _DEFAULT_DRILL_TIMEOUT_SECONDS


def drill_instance_name(drill: str) -> str:
    """The temporary instance of one drill: the same name for the same drill, so a
    restarted operator finds it again, and short enough for every name derived from it."""
    return "drill-" + hashlib.sha256(drill.encode()).hexdigest()[:12]


def drill_instance_object(
    source: Mapping[str, Any], name: str, drill: Mapping[str, Any], odoo_version: str
) -> dict[str, Any]:
    """The temporary OdooInstance a drill restores into: the source's Odoo, servers and
    sizes; development (neutralized), isolated, without backups, dropped when deleted."""
    spec = source.get("spec") or {}
    labels = (source.get("metadata") or {}).get("labels") or {}
    copied = {key: spec[key] for key in ("tenancy", "resources", "workers", "redis") if key in spec}
    config = drill_config(spec.get("config") or {}, odoo_version)
    if config:
        copied["config"] = config
    if spec.get("image") and spec.get("version") == odoo_version:
        copied["image"] = spec["image"]
    database = {k: v for k, v in (spec.get("database") or {}).items() if k == "serverRef"}
    filestore = dict(spec.get("filestore") or {})
    return {
        "apiVersion": API_VERSION,
        "kind": INSTANCE_KIND,
        "metadata": {
            "name": name,
            "labels": {
                DRILL_LABEL: str(drill["metadata"]["name"]),
                **({SHARD_LABEL: labels[SHARD_LABEL]} if labels.get(SHARD_LABEL) else {}),
            },
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": RESTORE_KIND,
                    "name": str(drill["metadata"]["name"]),
                    "uid": str(drill["metadata"]["uid"]),
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {
            **copied,
            "version": odoo_version,
            "hosts": [name + DRILL_HOST_SUFFIX],
            "environment": "development",
            "replicas": 1,
            # Scheduled actions are neutralized anyway; nothing in a drill should run them.
            "cron": {"replicas": 0},
            "deletionPolicy": "Delete",
            **({"database": database} if database else {}),
            **({"filestore": filestore} if filestore else {}),
        },
    }


# Mail is forbidden to a drill tenant whatever the platform's policy allows development
# tenants: it runs a copy of live data, and neutralization switches off only the mail
# servers stored in the database, not one named in odoo.conf.
_NO_MAIL = TenantPolicy(
    mail_options=dict.fromkeys(("production", "staging", "development"), "forbidden")
)


def drill_config(options: Mapping[str, Any], odoo_version: str) -> dict[str, str]:
    """The source's ``spec.config`` as a drill tenant may have it: without outgoing mail
    options, and without options the backup's Odoo version does not read (a source upgraded
    since the backup may set some)."""
    return {
        str(name): str(value)
        for name, value in options.items()
        if not config_option_problems(
            {str(name): str(value)}, "development", _NO_MAIL, odoo_version
        )
    }


def _ready(instance: Mapping[str, Any] | None) -> bool:
    status = (instance or {}).get("status") or {}
    return status.get("phase") == "Ready" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


async def _monitor_password(clients: Clients, source: str) -> str | None:
    """The source tenant's monitoring password: the restored database holds its users."""
    credentials = await read_credentials(clients.kube, tenant_namespace(source))
    return credentials.get(MONITOR_PASSWORD_KEY)


async def _serves(clients: Clients, spec: InstanceSpec, source: str) -> str | None:
    """None when the drill tenant serves (health and a login through its Service), else
    what is missing."""
    base = f"http://odoo.{spec.namespace}.svc:{ODOO_HTTP_PORT}"
    password = await _monitor_password(clients, source)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        health = await check_health(session, base + "/web/health", _CHECK_TIMEOUT_SECONDS)
        if not health.up:
            return f"GET /web/health through Service odoo.{spec.namespace} does not answer 200"
        if password is None:
            return f"no monitoring password in Secret {CREDENTIALS_SECRET} of {source}"
        login = await check_login(
            session, base, spec.database, MONITOR_LOGIN, password, _CHECK_TIMEOUT_SECONDS
        )
    if not login.up:
        return f"{MONITOR_LOGIN} cannot log in to {spec.database}"
    return None


def _elapsed(status: Mapping[str, Any]) -> float:
    started = parse_time(status.get("startedAt")) or now()
    return (now() - started).total_seconds()


async def _remove(clients: Clients, drill: dict[str, Any]) -> None:
    """Delete the temporary instance (its database with it: ``deletionPolicy: Delete``)."""
    name = drill.get("instance")
    if name and not drill.get("removedAt"):
        await clients.kube.delete(API_VERSION, INSTANCE_KIND, str(name))
        drill["removedAt"] = precise_timestamp(now())


async def _fail(
    clients: Clients, status: dict[str, Any], drill: dict[str, Any], reason: str, message: str
) -> dict[str, Any]:
    drill["result"] = "Failed"
    await _remove(clients, drill)
    status.pop("step", None)
    status["drill"] = drill
    return finished(status, FAILED, reason, message)


async def run_drill(clients: Clients, body: Mapping[str, Any]) -> dict[str, Any]:
    """Advance one drill; return its status once finished.

    Raises :class:`RestoreWaiting` (with the status so far in ``args[1]``) while a step is
    under way.
    """
    request = RestoreRequest.from_resource(body)
    status = dict(body.get("status") or {})
    if status.get("phase") in FINISHED:
        return status
    drill = dict(status.get("drill") or {})
    name = drill_instance_name(request.name)
    drill["instance"] = name
    status.update(mode="Drill", drill=drill)
    status.setdefault("startedAt", precise_timestamp(now()))
    backup = await clients.kube.get(API_VERSION, BACKUP_KIND, request.backup)
    backup_status = (backup or {}).get("status") or {}
    if backup is None or backup_status.get("phase") != SUCCEEDED:
        return await _fail(
            clients,
            status,
            drill,
            "BackupNotUsable",
            f"OdooBackup {request.backup} does not exist or has not succeeded",
        )
    source = str(backup["spec"]["instance"])
    drill["instance"], drill["source"] = name, source
    if _elapsed(status) > drill_timeout():
        return await _fail(
            clients,
            status,
            drill,
            "DrillTimedOut",
            f"the drill tenant {name} did not serve within {drill_timeout():.0f} s "
            f"(step {status.get('step', PROVISIONING)}); it was removed",
        )
    live = await clients.kube.get(API_VERSION, INSTANCE_KIND, name)
    if not drill.get("restoredAt"):
        return await _provision_and_restore(
            clients, body, request, status, drill, backup_status, source, live
        )
    # 4: serving, then 5: removed.
    if live is None:
        return await _fail(
            clients, status, drill, "DrillTenantGone", f"the drill tenant {name} was deleted"
        )
    spec = InstanceSpec.from_resource(live)
    missing = "the drill tenant is not Ready" if not _ready(live) else None
    if missing is None:
        missing = await _serves(clients, spec, source)
    if missing is not None:
        status.update(phase=RUNNING, step=SERVING)
        raise RestoreWaiting(f"waiting for the drill tenant {name} to serve: {missing}", status)
    rto = _elapsed(status)
    drill.update(servingAt=precise_timestamp(now()), rtoSeconds=round(rto, 1))
    objective = _objective_seconds(await clients.kube.get(API_VERSION, INSTANCE_KIND, source))
    if objective is not None:
        drill["rtoObjectiveSeconds"] = objective
    await _remove(clients, drill)
    status.pop("step", None)
    status["drill"] = drill
    if drill.get("invariantsHold") is False:
        drill["result"] = "Failed"
        return finished(
            status,
            FAILED,
            "InvariantsBroken",
            f"backup {backup_status.get('backupId')} of {source} came back and served in "
            f"{rto:.0f} s, but the books {drill.get('invariantsSummary')}",
        )
    within = objective is None or rto <= objective
    drill["result"] = "Passed" if within else "RTOExceeded"
    target = f" (objective {objective:.0f} s)" if objective is not None else ""
    return finished(
        status,
        SUCCEEDED,
        "DrillPassed" if within else "RTOExceeded",
        f"backup {backup_status.get('backupId')} of {source} restored into drill tenant "
        f"{name}, which served in {rto:.0f} s{target}; the books "
        f"{drill.get('invariantsSummary')}; the drill tenant was removed",
    )


async def _provision_and_restore(
    clients: Clients,
    body: Mapping[str, Any],
    request: RestoreRequest,
    status: dict[str, Any],
    drill: dict[str, Any],
    backup_status: Mapping[str, Any],
    source: str,
    live: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Steps 1 to 3: the temporary instance, the restore into it, the invariants."""
    name = str(drill["instance"])
    if live is None:
        if drill.get("createdAt"):
            return await _fail(
                clients, status, drill, "DrillTenantGone", f"the drill tenant {name} was deleted"
            )
        source_body = await clients.kube.get(API_VERSION, INSTANCE_KIND, source)
        if source_body is None:
            return await _fail(
                clients,
                status,
                drill,
                "SourceNotFound",
                f"OdooInstance {source}, whose servers the drill tenant would use, does not exist",
            )
        version = str(backup_status.get("odooVersion") or source_body["spec"]["version"])
        await clients.kube.apply(drill_instance_object(source_body, name, body, version))
        drill["createdAt"] = precise_timestamp(now())
        status.update(phase=RUNNING, step=PROVISIONING)
        raise RestoreWaiting(f"creating the drill tenant {name}", status)
    if not drill.get("provisionedAt"):
        if not _ready(live):
            status.update(phase=RUNNING, step=PROVISIONING)
            raise RestoreWaiting(f"waiting for the drill tenant {name} to be Ready", status)
        drill["provisionedAt"] = precise_timestamp(now())
        status.pop("step", None)
    # Neutralized, never anonymized: a drill proves the backup comes back as it was.
    restore = replace(
        request, target=name, from_instance=source, neutralize=True, data_protection=NEUTRALIZE
    )
    restored = await run_restore_request(clients, body, restore, status)
    drill = dict(restored.get("drill") or drill)
    if restored.get("phase") == FAILED:
        return await _fail(
            clients,
            restored,
            drill,
            "RestoreFailed",
            f"the restore into the drill tenant failed: {restored.get('message')}",
        )
    # 3: the invariants, before the tenant serves anybody.
    spec = InstanceSpec.from_resource(live)
    server = clients.config.postgres_server(spec.database_server)
    try:
        store, _, _ = await readable_store(clients, backup_status, source)
        manifest = await read_manifest(store, source, str(backup_status["backupId"]))
    except BlobStoreUnavailable as unreachable:
        return await _fail(
            clients, restored, drill, "StoreUnavailable", f"the backup's store: {unreachable}"
        )
    invariants = await check_invariants(
        await clients.postgres_admin_conninfo(server), spec.database, manifest
    )
    drill.update(
        restoredAt=precise_timestamp(now()),
        invariants=invariants.as_status(),
        invariantsHold=not invariants.broken,
        invariantsSummary=invariants.summary(),
    )
    # The restore's own ending is not the drill's: keep its details, drop its verdict.
    for key in ("conditions", "completedAt"):
        restored.pop(key, None)
    restored.update(phase=RUNNING, step=SERVING, drill=drill)
    await clients.kube.patch_status(API_VERSION, RESTORE_KIND, request.name, restored)
    raise RestoreWaiting(f"waiting for the drill tenant {name} to serve", restored)


def _objective_seconds(instance: Mapping[str, Any] | None) -> float | None:
    policy = BackupPolicy.from_instance(instance or {})
    if policy is None or not policy.rto:
        return None
    return parse_duration(policy.rto).total_seconds()


def drill_name(instance: str, slot: datetime.datetime) -> str:
    """The OdooRestore of one scheduled drill: the same name for the same slot."""
    return f"{instance}-drill-{slot.strftime('%Y%m%d-%H%M')}"


def drill_object(instance: str, name: str, backup: str) -> dict[str, Any]:
    """A new drill of ``backup``, labelled with its instance so ``kubectl get -l`` finds it."""
    return {
        "apiVersion": API_VERSION,
        "kind": RESTORE_KIND,
        "metadata": {"name": name, "labels": {INSTANCE_LABEL: instance}},
        "spec": {"backup": backup, "drill": True},
    }


def drill_health(
    policy: BackupPolicy, last: Mapping[str, Any] | None, overdue: bool
) -> Condition | None:
    """``RestoreDrillPassed`` of an instance with drills: True when the last drill passed
    within the RTO objective and none is overdue; False with the reason otherwise."""
    if policy.drill_schedule is None and policy.rto is None:
        return None
    if last is None:
        if overdue:
            return Condition(
                DRILL_CONDITION, "False", "DrillOverdue", "no restore drill has run yet"
            )
        return Condition(DRILL_CONDITION, "Unknown", "NoDrillYet", "no restore drill has run yet")
    what = f"drill {last.get('name')} of backup {last.get('backup')}"
    if last.get("result") == "Failed":
        return Condition(
            DRILL_CONDITION, "False", "DrillFailed", f"{what} failed: {last.get('message')}"
        )
    rto, objective = last.get("rtoSeconds"), last.get("rtoObjectiveSeconds")
    if last.get("result") == "RTOExceeded" or (
        rto is not None and objective is not None and float(rto) > float(objective)
    ):
        return Condition(
            DRILL_CONDITION,
            "False",
            "RTOExceeded",
            f"{what} served in {float(rto or 0):.0f} s, over the objective of "
            f"{float(objective or 0):.0f} s",
        )
    if overdue:
        return Condition(
            DRILL_CONDITION,
            "False",
            "DrillOverdue",
            f"the last {what} ended {last.get('completedAt')}; a scheduled drill is overdue",
        )
    return Condition(
        DRILL_CONDITION,
        "True",
        "DrillPassed",
        f"{what} served in {float(rto or 0):.0f} s"
        + (f" (objective {float(objective):.0f} s)" if objective is not None else ""),
    )


async def label_drill(clients: Clients, body: Mapping[str, Any]) -> None:
    """Label a drill made by hand with its backup's instance, as scheduled ones are, so the
    instance finds its drills by label."""
    labels = body["metadata"].get("labels") or {}
    if labels.get(INSTANCE_LABEL):
        return
    backup = await clients.kube.get(API_VERSION, BACKUP_KIND, str(body["spec"]["backup"]))
    instance = ((backup or {}).get("spec") or {}).get("instance")
    if instance:
        await clients.kube.patch_metadata(
            API_VERSION,
            RESTORE_KIND,
            str(body["metadata"]["name"]),
            {"labels": {INSTANCE_LABEL: str(instance)}},
        )


async def drills_of(clients: Clients, instance: str) -> list[dict[str, Any]]:
    """The finished drills of ``instance``, oldest first (labelled with it by their
    scheduler or by their first step)."""
    listed = await clients.kube.list(
        API_VERSION, RESTORE_KIND, label_selector=f"{INSTANCE_LABEL}={instance}"
    )
    done = [
        item
        for item in listed
        if (item.get("spec") or {}).get("drill")
        and ((item.get("status") or {}).get("drill") or {}).get("source") == instance
        and (item.get("status") or {}).get("phase") in FINISHED
    ]
    return sorted(
        done,
        key=lambda item: (
            str((item.get("status") or {}).get("completedAt") or ""),
            str(item["metadata"]["name"]),
        ),
    )


def last_drill_summary(drill: Mapping[str, Any]) -> dict[str, Any]:
    """``status.lastDrill`` of an instance: what its newest finished drill found."""
    status = drill.get("status") or {}
    found = status.get("drill") or {}
    summary = {
        "name": drill["metadata"]["name"],
        "backup": (drill.get("spec") or {}).get("backup"),
        "result": found.get("result")
        or ("Passed" if status.get("phase") == SUCCEEDED else "Failed"),
        "completedAt": status.get("completedAt"),
        "rtoSeconds": found.get("rtoSeconds"),
        "rtoObjectiveSeconds": found.get("rtoObjectiveSeconds"),
        "message": status.get("message"),
    }
    return {key: value for key, value in summary.items() if value is not None}


async def instance_drill_state(
    clients: Clients,
    instance_body: Mapping[str, Any],
    *,
    schedule: bool = True,
) -> tuple[Condition | None, dict[str, Any]]:
    """``RestoreDrillPassed`` and ``status.lastDrill`` of an instance, after creating the
    scheduled drill of its newest good backup when one is due (unless ``schedule`` is
    False: an instance being deleted gets no drill). Nothing for an instance that asks for
    neither drills nor an RTO."""
    policy = BackupPolicy.from_instance(instance_body)
    if policy is None or (policy.drill_schedule is None and policy.rto is None):
        return None, {}
    name = str(instance_body["metadata"]["name"])
    status = instance_body.get("status") or {}
    created = parse_time(instance_body["metadata"].get("creationTimestamp")) or now()
    fields: dict[str, Any] = {}
    if schedule and policy.drill_schedule and not policy.drill_suspend:
        slot = due_slot(
            policy.drill_schedule,
            policy.time_zone,
            parse_time(status.get("lastScheduledDrill")),
            now(),
            created,
        )
        if slot is not None:
            fields["lastScheduledDrill"] = timestamp(now())
            good_backups = [
                str(b["metadata"]["name"])
                for b in sorted(
                    await backups_of(clients, name),
                    key=lambda b: str((b.get("status") or {}).get("completedAt") or ""),
                )
                if (b.get("status") or {}).get("phase") == SUCCEEDED
                # Not one whose verification failed: it is complete but not usable.
                and not any(
                    c.get("type") == "Ready" and c.get("status") == "False"
                    for c in (b.get("status") or {}).get("conditions") or []
                )
            ]
            if good_backups:
                drill = drill_name(name, slot)
                if await clients.kube.get(API_VERSION, RESTORE_KIND, drill) is None:
                    await clients.kube.apply(drill_object(name, drill, good_backups[-1]))
                    logger.info("scheduled restore drill %s of backup %s", drill, good_backups[-1])
            else:
                logger.info("scheduled restore drill of %s: no good backup yet", name)
    drills = await drills_of(clients, name)
    last = last_drill_summary(drills[-1]) if drills else None
    if last is not None:
        fields["lastDrill"] = last
    overdue = False
    if policy.drill_schedule and not policy.drill_suspend:
        # Overdue: a scheduled time passed longer ago than a drill may take, and no drill
        # started since.
        started = [parse_time((d.get("status") or {}).get("startedAt")) for d in drills]
        since = max((s for s in started if s is not None), default=None)
        grace = datetime.timedelta(seconds=drill_timeout())
        overdue = is_due(policy.drill_schedule, policy.time_zone, since, now() - grace, created)
    return drill_health(policy, last, overdue), fields


async def refresh_instance_drill_state(clients: Clients, instance: str) -> Condition | None:
    """Publish the instance's ``RestoreDrillPassed`` and ``lastDrill`` now: the drill
    handler calls this once a drill's final status is written."""
    return await publish_instance_state(clients, instance, instance_drill_state)
