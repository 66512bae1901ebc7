"""Kopf glue of the validating admission webhook for OdooInstance.

The decisions live in :mod:`odoo_operator.model.admission`; this module gathers
their inputs (the stored object, the operator configuration, the hosts other
instances serve) and answers the apiserver. :func:`register_admission` puts its handlers
in a registry: the operator's, when it serves admission itself (see
:mod:`odoo_operator.settings`), or that of ``odoo-operator webhook``, a process serving
admission alone (:mod:`odoo_operator.admission_server`). Kopf refuses to run admission
handlers without a server, so they are registered only where one is configured.

The webhook fails closed (``failurePolicy: Fail``): while the operator cannot
answer, the apiserver refuses OdooInstance creates and updates rather than
admitting what nobody checked.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

import kopf

from .. import metrics
from ..backends.kube import KubeApiError, KubeClient
from ..builders.quantities import quantity_value
from ..builders.schedule import load_time_zone, parse_duration, validate_schedule
from ..model.admission import (
    admission_problems,
    annotation_problems,
    recorded_annotations_bytes,
)
from ..model.backup import (
    BACKUP_KIND,
    BACKUP_PLURAL,
    RESTORE_PLURAL,
    BackupPolicy,
    RestoreRequest,
)
from ..model.claims import Claims, FleetClaims, claims_of
from ..model.config import ConfigError, OperatorConfig
from ..model.hibernation import hibernation_problems
from ..model.names import (
    API_VERSION,
    GROUP,
    INSTANCE_KIND,
    INSTANCE_LABEL,
    INSTANCE_PLURAL,
    VERSION,
)
from ..model.shards import SHARD_LABEL, instance_of
from ..model.spec import InstanceSpec
from ..model.upgrade import UpgradePolicy, major
from ..reconcile import journal
from ..reconcile.clients import Clients
from .shards import SHARDING

_logger = logging.getLogger(__name__)
_REFUSAL_CODE = 422  # Unprocessable Entity, as the apiserver answers schema violations


async def fleet_claims(
    clients: Clients, name: str, wanted: Iterable[Claims] | None = None
) -> FleetClaims:
    """Each host and (server, database) of ``wanted`` (default: all) that an OdooInstance
    other than ``name`` holds.

    From the claims index, in O(hosts), once it was filled from a consistent list at
    startup; before that (and for a caller that asks for everything), from a list of the
    fleet: a partial index would let a take-over through.
    """
    if wanted is not None and clients.claims.ready:
        return clients.claims.held_by_others(name, wanted)
    found = FleetClaims(hosts={}, databases={})
    for item in await clients.kube.list(API_VERSION, INSTANCE_KIND):
        owner = str(item["metadata"]["name"])
        if owner == name:
            continue
        held = claims_of(item, clients.config)
        for host in held.hosts:
            found.hosts.setdefault(host, owner)
        for database in held.databases:
            found.databases.setdefault(database, owner)
    return found


async def fill_claims_index(clients: Clients, patience: float = 30.0) -> None:
    """Fill the claims index from one consistent list of the fleet, then trust it.

    Run at startup, before Kopf starts its watches and the webhook: no watch event can
    race the list. An API server that refuses the list for longer than ``patience`` (one
    starting up answers 429) leaves the index untrusted: admission then lists the fleet per
    request, slower but as correct, and the operator says so.
    """
    delay, deadline = 0.5, time.monotonic() + patience
    while True:
        try:
            items = await clients.kube.list(API_VERSION, INSTANCE_KIND)
            break
        except KubeApiError as error:
            if time.monotonic() + delay > deadline:
                _logger.warning(
                    "admission lists the fleet per request: the claims index could not be "
                    "filled (%s)",
                    error,
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    for item in items:
        clients.claims.put(str(item["metadata"]["name"]), claims_of(item, clients.config))
    clients.claims.ready = True


@kopf.on.event(GROUP, VERSION, INSTANCE_PLURAL)
async def keep_claims_index(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Keep the claims index as the watch of OdooInstances sees the fleet change."""
    clients: Clients | None = memo.get("clients")
    if clients is None:
        return
    obj = event["object"]
    name = str(obj["metadata"]["name"])
    if event["type"] == "DELETED":
        clients.claims.drop(name)
    else:
        clients.claims.put(name, claims_of(obj, clients.config))
    if not SHARDING.serves((obj.get("metadata") or {}).get("labels"), name):
        # Moved to another shard (or never ours): its series are that shard's to publish.
        metrics.forget_instance(name)


async def namespace_problems(kube: KubeClient, spec: InstanceSpec) -> list[str]:
    """An existing namespace odoo-<name> that is not this instance's would be taken over."""
    live = await kube.get("v1", "Namespace", spec.namespace)
    if live is None:
        return []
    owner = ((live.get("metadata") or {}).get("labels") or {}).get(INSTANCE_LABEL)
    if owner == spec.name:
        return []  # left behind by an earlier instance of this name (deletionPolicy Retain)
    return [
        f"metadata.name {spec.name}: the namespace {spec.namespace} already exists and "
        + (f"belongs to OdooInstance {owner}" if owner else "is not a tenant namespace")
        + "; choose another instance name."
    ]


def lifecycle_problems(body: Mapping[str, Any], old: Mapping[str, Any]) -> list[str]:
    """Spec changes that can no longer take effect on an instance being deleted."""
    if not (old.get("metadata") or {}).get("deletionTimestamp"):
        return []
    before = (old.get("spec") or {}).get("deletionPolicy", "Retain")
    after = (body.get("spec") or {}).get("deletionPolicy", "Retain")
    if before == after:
        return []
    return [
        f"spec.deletionPolicy cannot change from {before} to {after} while the instance is "
        "being deleted: the deletion already runs under its policy."
    ]


def filestore_problems(body: Mapping[str, Any], old: Mapping[str, Any]) -> list[str]:
    """A filestore smaller than the one the tenant has (status.filestoreSize, else the old
    spec's effective size): shrinking a volume would lose attachments."""
    size = InstanceSpec.from_resource(body).filestore_size
    recorded = (old.get("status") or {}).get("filestoreSize")
    current = str(recorded) if recorded else InstanceSpec.from_resource(old).filestore_size
    try:
        shrinks = quantity_value(size) < quantity_value(current)
    except ValueError:
        return []  # the schema refuses malformed quantities with its own message
    if not shrinks:
        return []
    return [
        f"spec.filestore.size {size} is smaller than the tenant's filestore ({current}); "
        "it can only grow: shrinking a volume would lose attachments."
    ]


def instance_annotation_problems(
    body: Mapping[str, Any], old: Mapping[str, Any] | None
) -> list[str]:
    """:func:`annotation_problems` of an OdooInstance or OdooBackup write (``old`` None on
    CREATE)."""

    def parts(obj: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
        meta = obj.get("metadata") or {}
        return dict(obj.get("spec") or {}), meta.get("labels") or {}, meta.get("annotations") or {}

    spec, labels, annotations = parts(body)
    if old is None:
        return annotation_problems(annotations, None, spec, labels)
    old_spec, old_labels, old_annotations = parts(old)
    old_size = recorded_annotations_bytes(old_spec, old_labels, old_annotations)
    return annotation_problems(annotations, old_annotations, spec, labels, old_size)


def backup_policy_problems(body: Mapping[str, Any], config: OperatorConfig) -> list[str]:
    """What is wrong with ``spec.backup``: an unknown store (or a secondary store that is
    the primary one), a bad schedule or time zone."""
    policy = BackupPolicy.from_instance(body)
    if policy is None:
        return []
    problems = []
    primary = None
    try:
        primary = config.blob_store(policy.store).name
    except ConfigError as exc:
        problems.append(f"spec.backup.storeRef: {exc}.")
    if policy.secondary_store is not None:
        try:
            config.blob_store(policy.secondary_store)
        except ConfigError as exc:
            problems.append(f"spec.backup.secondaryStoreRef: {exc}.")
        if policy.secondary_store == primary:
            problems.append(
                f"spec.backup.secondaryStoreRef: {primary} is already the primary store; a "
                "copy in the same store protects against nothing."
            )
    try:
        parse_duration(policy.rpo)
    except ValueError as exc:
        problems.append(f"spec.backup.rpo: {exc}.")
    schedule_problem = validate_schedule(policy.schedule, policy.time_zone)
    if schedule_problem is not None:
        problems.append(f"spec.backup.schedule: {schedule_problem}.")
    if policy.verify == "Scheduled":
        verify_problem = validate_schedule(policy.verify_schedule, policy.time_zone)
        if verify_problem is not None and verify_problem != schedule_problem:
            problems.append(f"spec.backup.verifySchedule: {verify_problem}.")
    if policy.drill_schedule is not None:
        drill_problem = validate_schedule(policy.drill_schedule, policy.time_zone)
        if drill_problem is not None and drill_problem != schedule_problem:
            problems.append(f"spec.backup.drill.schedule: {drill_problem}.")
    if policy.rto is not None:
        try:
            parse_duration(policy.rto)
        except ValueError as exc:
            problems.append(f"spec.backup.rto: {exc}.")
    return problems


def upgrade_problems(body: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[str]:
    """An unusable ``spec.upgrade`` duration, or a change of major that cannot be carried
    out: skipped majors, no migration image."""
    problems = upgrade_duration_problems(UpgradePolicy.from_instance(body))
    if old is None:
        return problems
    return problems + major_change_problems(body, old)


def upgrade_duration_problems(policy: UpgradePolicy) -> list[str]:
    """A zero health timeout (the pattern allows "0m") would roll back every upgrade."""
    try:
        parse_duration(policy.health_timeout)
    except ValueError as exc:
        return [f"spec.upgrade.healthTimeout: {exc}."]
    return []


def major_change_problems(body: Mapping[str, Any], old: Mapping[str, Any]) -> list[str]:
    """Skipped majors, or a major change without a migration image."""
    before, after = (str((o.get("spec") or {}).get("version", "")) for o in (old, body))
    if not before or not after or major(after) <= major(before):
        return []  # same major, or a downgrade (refused by admission_problems)
    if major(after) > major(before) + 1:
        return [
            f"spec.version cannot skip majors ({before} to {after}): upgrade one major at a "
            "time, as Odoo's migrations do."
        ]
    if not UpgradePolicy.from_instance(body).migration_image:
        return [
            f"spec.version {before} to {after} is a major upgrade: set "
            "spec.upgrade.migrationImage (an image that migrates the database, e.g. OpenUpgrade)."
        ]
    return []


async def validate_instance(
    body: kopf.Body,
    memo: kopf.Memo,
    old: kopf.Body | None = None,  # the stored object on UPDATE; Kopf passes None on CREATE
    dryrun: bool = False,
    **_: Any,
) -> None:
    """Refuse an OdooInstance whose spec breaks a rule of :func:`admission_problems`, or
    whose annotations the operator could not carry (:func:`annotation_problems`)."""
    refused_annotations = instance_annotation_problems(body, old) + shard_label_problems(body)
    if old is not None and old.get("spec") == body.get("spec"):
        # Metadata-only writes (the operator's finalizer and annotations) must always pass,
        # also for an instance that a later configuration change made invalid; only a
        # changed annotation is judged, and the operator's own writes are well-formed.
        if refused_annotations:
            raise kopf.AdmissionError(" ".join(refused_annotations), code=_REFUSAL_CODE)
        return
    clients: Clients = memo["clients"]
    spec = InstanceSpec.from_resource(body)
    previous = InstanceSpec.from_resource(old) if old is not None else None
    wanted = [claims_of(body, clients.config)]
    if old is not None:
        wanted.append(claims_of(old, clients.config))
    claims = await fleet_claims(clients, spec.name, wanted)
    problems = admission_problems(spec, previous, clients.config, claims.hosts, claims.databases)
    if not problems and not dryrun:
        # Held before the first await below: a create of the same host arriving meanwhile,
        # before the watch brings this one, is refused (model/claims.py).
        clients.claims.admit(spec.name, wanted[0])
    problems += backup_policy_problems(body, clients.config)
    problems += upgrade_problems(body, old)
    problems += hibernation_admission_problems(body)
    if old is None:
        problems += await namespace_problems(clients.kube, spec)
    else:
        problems += lifecycle_problems(body, old) + filestore_problems(body, old)
    problems += refused_annotations
    if problems:
        clients.claims.withdraw(spec.name, wanted[0])
        # Kopf logs the refusal with its message; the requester gets it from the apiserver.
        raise kopf.AdmissionError(" ".join(problems), code=_REFUSAL_CODE)


async def validate_backup(
    body: kopf.Body,
    old: kopf.Body | None = None,  # the stored object on UPDATE; Kopf passes None on CREATE
    **_: Any,
) -> None:
    """Refuse an OdooBackup annotation the operator could not carry: a ``verify`` value
    that is not short printable ASCII, or annotations that would overflow the record the
    operator keeps of the handled configuration (its writes would then all be refused)."""
    problems = instance_annotation_problems(body, old) + shard_label_problems(body)
    if problems:
        raise kopf.AdmissionError(" ".join(problems), code=_REFUSAL_CODE)


async def validate_restore(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Refuse an OdooRestore that would put one tenant's data into another without the
    opt-in naming the source, or live data into a non-production instance.

    The reconciler checks the same again before it touches anything. A restore naming a
    backup or instance that does not exist yet is let through: it fails with its reason.
    """
    refused = shard_label_problems(body)
    if refused:
        raise kopf.AdmissionError(" ".join(refused), code=_REFUSAL_CODE)
    clients: Clients = memo["clients"]
    request = RestoreRequest.from_resource(body)
    if request.drill:
        # A drill restores into a temporary instance of the operator's own: no tenant's
        # data is replaced, so there is nothing more to refuse here.
        return
    target = await clients.kube.get(API_VERSION, INSTANCE_KIND, request.target)
    if request.point_in_time is not None:
        source = request.point_in_time_source
    else:
        backup = await clients.kube.get(API_VERSION, BACKUP_KIND, request.backup)
        if backup is None:
            return
        source = str((backup.get("spec") or {}).get("instance", ""))
    if target is None:
        return
    problems = request.problems(source, InstanceSpec.from_resource(target))
    if problems:
        raise kopf.AdmissionError(" ".join(problems), code=_REFUSAL_CODE)


def hibernation_admission_problems(body: Mapping[str, Any]) -> list[str]:
    """``spec.hibernation`` on a production tenant, an unreadable window or time zone, or
    an unreadable wake annotation."""
    problems = hibernation_problems(body)
    zone = ((body.get("spec") or {}).get("hibernation") or {}).get("timeZone")
    if zone:
        try:
            load_time_zone(str(zone))
        except ValueError as error:
            problems.append(f"spec.hibernation.timeZone: {error}.")
    return problems


def shard_label_problems(body: Mapping[str, Any]) -> list[str]:
    """A shard label must name a shard of the fleet: no process would serve another."""
    problem = SHARDING.label_problem((body.get("metadata") or {}).get("labels"))
    return [problem] if problem else []


async def assign_shard(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    old: kopf.Body | None = None,
    **_: Any,
) -> None:
    """Stamp the shard label on a new OdooInstance, OdooBackup or OdooRestore, so that its
    shard never changes by itself (not even when a shard is added).

    An instance keeps the label it asks for, else the one it had (a GitOps apply whose
    manifest lacks the label does not move it), else the shard its name hashes to. A backup
    or restore goes to its instance's shard, read from the instance; a label it names
    itself is kept (validation refuses one that is not a shard).
    """
    labels = dict((body.get("metadata") or {}).get("labels") or {})
    if labels.get(SHARD_LABEL):
        return
    instance = instance_of(body)
    if body.get("kind") == INSTANCE_KIND:
        kept = (old.get("metadata") or {}).get("labels") if old is not None else None
        shard = SHARDING.shard_of(kept, instance)
    else:
        clients: Clients = memo["clients"]
        if (body.get("spec") or {}).get("drill"):
            # A drill names its backup only: it belongs to the backup's instance.
            backup = await clients.kube.get(API_VERSION, BACKUP_KIND, str(body["spec"]["backup"]))
            instance = str(((backup or {}).get("spec") or {}).get("instance") or instance)
        owner = await clients.kube.get(API_VERSION, INSTANCE_KIND, instance)
        labelled = (owner.get("metadata") or {}).get("labels") if owner is not None else None
        shard = SHARDING.shard_of(labelled, instance)
    patch.metadata.labels[SHARD_LABEL] = shard


# Kopf serves a handler under its id, and the chart's webhook configuration names that path;
# a Service path may not contain "_", so the id is not the function's name.
WEBHOOK_HANDLER_ID = "validate-instance"
RESTORE_WEBHOOK_HANDLER_ID = "validate-restore"
BACKUP_WEBHOOK_HANDLER_ID = "validate-backup"
SHARD_WEBHOOK_HANDLER_IDS = {
    INSTANCE_PLURAL: "assign-shard-instance",
    BACKUP_PLURAL: "assign-shard-backup",
    RESTORE_PLURAL: "assign-shard-restore",
}


def _timed(webhook: str, handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """``handler``, its answers timed by webhook and decision (metrics.observe_admission)."""

    @functools.wraps(handler)
    async def timed(**kwargs: Any) -> None:
        with metrics.observe_admission(webhook):
            try:
                await handler(**kwargs)
            except kopf.AdmissionError as refused:
                await _journal_refusal(kwargs, str(refused))
                raise

    return timed


async def _journal_refusal(kwargs: Mapping[str, Any], problems: str) -> None:
    """A refusal at admission is an entry of the tenant's operations journal: who asked
    for what, and why it was refused."""
    memo, body = kwargs.get("memo"), kwargs.get("body") or {}
    clients: Clients | None = memo.get("clients") if memo is not None else None
    if clients is None:
        return
    userinfo = kwargs.get("userinfo") or {}
    await journal.record(
        clients,
        instance_of(body),
        "AdmissionRefused",
        {
            "kind": body.get("kind"),
            "name": (body.get("metadata") or {}).get("name"),
            "operation": kwargs.get("operation"),
            "user": userinfo.get("username"),
            "dryRun": bool(kwargs.get("dryrun")),
            "problems": problems,
        },
    )


def register_admission(registry: kopf.OperatorRegistry) -> None:
    """Register the webhooks in ``registry``: in the operator's own (when it serves
    admission itself) or in the registry of ``odoo-operator webhook``, which serves nothing
    else (:mod:`odoo_operator.admission_server`)."""
    # CREATE and UPDATE only: a DELETE carries no new spec, and Kopf's default ("*")
    # would put deletions behind this fail-closed webhook too.
    kopf.on.validate(
        GROUP,
        VERSION,
        INSTANCE_PLURAL,
        id=WEBHOOK_HANDLER_ID,
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )(_timed(WEBHOOK_HANDLER_ID, validate_instance))
    kopf.on.validate(
        GROUP,
        VERSION,
        BACKUP_PLURAL,
        id=BACKUP_WEBHOOK_HANDLER_ID,
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )(_timed(BACKUP_WEBHOOK_HANDLER_ID, validate_backup))
    kopf.on.validate(
        GROUP,
        VERSION,
        RESTORE_PLURAL,
        id=RESTORE_WEBHOOK_HANDLER_ID,
        operations=["CREATE"],  # an OdooRestore is immutable (its schema says so)
        registry=registry,
    )(_timed(RESTORE_WEBHOOK_HANDLER_ID, validate_restore))
    if SHARDING.enabled:
        # One webhook per kind (Kopf names each after its handler's id and serves it at
        # /<id>): the chart's MutatingWebhookConfiguration lists the same three.
        changes: tuple[Literal["CREATE", "UPDATE"], ...]
        for plural, handler_id, changes in (
            (INSTANCE_PLURAL, SHARD_WEBHOOK_HANDLER_IDS[INSTANCE_PLURAL], ("CREATE", "UPDATE")),
            (BACKUP_PLURAL, SHARD_WEBHOOK_HANDLER_IDS[BACKUP_PLURAL], ("CREATE",)),
            (RESTORE_PLURAL, SHARD_WEBHOOK_HANDLER_IDS[RESTORE_PLURAL], ("CREATE",)),
        ):
            kopf.on.mutate(
                GROUP, VERSION, plural, id=handler_id, operations=changes, registry=registry
            )(assign_shard)
