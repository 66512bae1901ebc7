"""Reconcile one OdooInstance: namespace, isolation, database, Redis, workloads, ingress.

One level-based path serves create, update, resume and the periodic drift
check. Each step is idempotent and writes only what differs, so re-running it
on an unchanged tenant costs reads only. The result is a set of conditions
that explains, in words an SRE can act on, where the tenant stands.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio.dynamic.exceptions import ResourceNotFoundError
from psycopg.conninfo import make_conninfo

from ..backends.odoo_users import SCANNER
from ..backends.postgres import DatabaseServerUnavailable
from ..backends.redis import RedisAclRefused, RedisServerUnavailable
from ..builders.hibernation import HibernationState, hibernation_state
from ..builders.namespace import build_namespace
from ..builders.objects import build_foundation, build_ingress, build_workloads
from ..builders.odoo_users import (
    ADMIN_PASSWORD_KEY,
    CREDENTIALS_CONDITION,
    INIT_INSTALL_CONTAINER,
    INIT_USERS_CONTAINER,
    MONITOR_PASSWORD_KEY,
    credentials_condition,
)
from ..builders.odoo_users import CREDENTIALS_SECRET as CREDENTIALS_SECRET
from ..builders.postgres import NotOwnedError, TenantDatabase
from ..builders.redis_acl import tenant_redis_user
from ..builders.tenant import Tenant, TenantCredentials, labels
from ..builders.workloads import FILESTORE_CLAIM, build_init_job
from ..engine.database import first_line
from ..model.admission import (
    name_problems,
    operator_annotation_value_problem,
    reserved_database_problem,
)
from ..model.conditions import Condition, merge_condition
from ..model.config import ConfigError, ServerRef, instance_image_policy_problems
from ..model.hibernation import (
    WAKE_ANNOTATION,
    HibernationPolicy,
    hibernation_problems,
    parse_wake_until,
)
from ..model.names import (
    API_VERSION,
    INSTANCE_KIND,
    INSTANCE_LABEL,
    MAINTENANCE_ANNOTATION,
    ROTATE_CREDENTIALS_ANNOTATION,
)
from ..model.odoo_options import config_option_problems
from ..model.outcome import Outcome
from ..model.spec import InstanceSpec
from ..model.upgrade import FINAL_STEPS
from .clients import Clients

logger = logging.getLogger(__name__)

_CREDENTIAL_KEYS = ("database-password", "redis-password", "admin-password")
# Passwords of users inside Odoo (builders/odoo_users.py). Only the init Job gives them to
# Odoo, so a rotation leaves them as they are: a new value would name a password Odoo never
# heard of, and lock the monitoring user out.
_ODOO_USER_KEYS = (ADMIN_PASSWORD_KEY, MONITOR_PASSWORD_KEY)
# How long the check of the Odoo users' passwords may take to read them.
_USERS_READ_TIMEOUT_SECONDS = 10.0


class Stalled(Exception):  # noqa: N818 - the kstatus condition it reports
    """The tenant cannot progress without a human; the message says what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _decode(secret: Mapping[str, Any] | None) -> dict[str, str]:
    data = (secret or {}).get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


async def _ensure_credentials(
    clients: Clients, spec: InstanceSpec, owner: dict[str, Any], rotation: str | None
) -> TenantCredentials:
    """Read the tenant's generated credentials, creating them once.

    They are stored before any server is touched, so a crash between the two
    leaves a password the next attempt reuses: never a role nobody can log in as.
    A pending ``rotation`` replaces them once; the Secret remembers which rotation
    its passwords belong to, so a retry re-applies the same new passwords. The passwords
    of the Odoo users ``admin`` and the monitoring user are generated once, for the init
    Job to set, and never rotated here (see ``_ODOO_USER_KEYS``).
    """
    live_secret = await clients.kube.get("v1", "Secret", CREDENTIALS_SECRET, spec.namespace)
    live = _decode(live_secret)
    annotations = ((live_secret or {}).get("metadata") or {}).get("annotations") or {}
    stored_rotation = annotations.get(ROTATE_CREDENTIALS_ANNOTATION)
    renew = rotation is not None and rotation != stored_rotation
    values = {
        key: (None if renew else live.get(key)) or secrets.token_urlsafe(32)
        for key in _CREDENTIAL_KEYS
    }
    values.update({key: live.get(key) or secrets.token_urlsafe(32) for key in _ODOO_USER_KEYS})
    if values != {key: live.get(key) for key in values}:
        metadata: dict[str, Any] = {
            "name": CREDENTIALS_SECRET,
            "namespace": spec.namespace,
            "labels": owner["labels"],
            "ownerReferences": owner["ownerReferences"],
        }
        if rotation is not None or stored_rotation is not None:
            metadata["annotations"] = {ROTATE_CREDENTIALS_ANNOTATION: rotation or stored_rotation}
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
        }
        # Applied, not created: the least-privilege role grants Secrets by name only, and a
        # create (a POST) has no name when it is authorized. Two passes cannot both find no
        # Secret: passes of one tenant take turns (the handlers' per-tenant lock) and Kopf's
        # peering keeps a second operator process standing by.
        await clients.kube.apply(secret)
    return TenantCredentials(
        database_password=values["database-password"],
        redis_password=values["redis-password"],
        admin_password=values["admin-password"],
    )


def _pending_rotation(body: Mapping[str, Any]) -> str | None:
    """The rotation asked for by annotation and not yet recorded as done in status.

    A value the operator cannot carry into the Secret's annotation and status (checked at
    admission too) stalls the tenant instead of failing every apply.
    """
    annotations = body.get("metadata", {}).get("annotations") or {}
    asked = annotations.get(ROTATE_CREDENTIALS_ANNOTATION)
    done = (body.get("status") or {}).get("credentialsRotation")
    if not asked or asked == done:
        return None
    problem = operator_annotation_value_problem(ROTATE_CREDENTIALS_ANNOTATION, str(asked))
    if problem is not None:
        raise Stalled("InvalidAnnotation", problem)
    return str(asked)


async def _ensure_namespace(clients: Clients, tenant: Tenant) -> dict[str, Any]:
    desired = build_namespace(tenant)
    live = await clients.kube.get("v1", "Namespace", tenant.namespace)
    if live is not None:
        owner = (live["metadata"].get("labels") or {}).get(INSTANCE_LABEL)
        if owner != tenant.spec.name:
            raise Stalled(
                "NamespaceConflict",
                f"namespace {tenant.namespace} exists and is not managed for this instance; "
                "rename the instance or remove that namespace",
            )
    await clients.kube.apply(desired)
    meta: dict[str, Any] = desired["metadata"]
    return meta


# The Ready condition's reason while a new tenant waits for its turn to provision.
QUEUED_REASON = "Queued"


_PROVISIONING = Condition("Reconciling", "True", "Provisioning", "provisioning the tenant")


def queued_conditions(message: str) -> tuple[Condition, Condition]:
    """``Ready=Unknown`` and ``Reconciling=True`` of a new tenant waiting for its turn to
    provision: seen, in progress, not yet worked on."""
    return Condition("Ready", "Unknown", QUEUED_REASON, message), _PROVISIONING


async def announce_first_sight(clients: Clients, body: Mapping[str, Any]) -> None:
    """Publish ``Ready=Unknown`` at once, before any work, for an instance seen the first time.

    ``kubectl wait``, kstatus and GitOps tools then see that the operator has picked the
    instance up, instead of a status that stays empty while the tenant is provisioned.
    """
    started = "the operator has started on this tenant"
    await _announce(
        clients, body, (Condition("Ready", "Unknown", "Provisioning", started), _PROVISIONING)
    )


async def announce_queued(clients: Clients, body: Mapping[str, Any], message: str) -> None:
    """Publish at once that a new tenant waits for its turn to provision (a rollout of many
    tenants): seen, in progress, not yet worked on."""
    await _announce(clients, body, queued_conditions(message))


async def _announce(
    clients: Clients, body: Mapping[str, Any], published: tuple[Condition, ...]
) -> None:
    generation = int(body["metadata"].get("generation", 0))
    conditions: list[dict[str, Any]] = []
    for condition in published:
        conditions = merge_condition(conditions, condition, generation)
    await clients.kube.patch_status(
        API_VERSION,
        INSTANCE_KIND,
        body["metadata"]["name"],
        {"conditions": conditions, "phase": "Provisioning", "observedGeneration": generation},
    )


def config_image(clients: Clients, spec: InstanceSpec) -> str:
    """The image the spec asks for."""
    return clients.config.image_for(spec.version, spec.image)


def running_image(clients: Clients, body: Mapping[str, Any], spec: InstanceSpec) -> str:
    """The image the workloads run: the one recorded in status, which only an upgrade
    changes, else (first rollout) the one the spec asks for."""
    recorded = (body.get("status") or {}).get("runningImage")
    return str(recorded) if recorded else clients.config.image_for(spec.version, spec.image)


def _resolve_tenant(clients: Clients, spec: InstanceSpec, **resolved: Any) -> Tenant:
    config = clients.config
    node_selector, tolerations = config.node_pool(spec.tenancy)
    return Tenant(
        spec=spec,
        ingress_namespace=config.ingress_namespace,
        operator_namespace=config.namespace,
        node_selector=node_selector,
        tolerations=tolerations,
        storage_class=config.default_storage_class,
        **resolved,
    )


def _deployment_available(live: Mapping[str, Any] | None) -> bool:
    if live is None:
        return False
    status, spec = live.get("status") or {}, live.get("spec") or {}
    wanted = spec.get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= live["metadata"].get("generation", 0)
        and (status.get("updatedReplicas") or 0) == wanted
        and (status.get("availableReplicas") or 0) == wanted
    )


async def reconcile_instance(
    clients: Clients, body: Mapping[str, Any], initialized: bool
) -> Outcome:
    """Bring one tenant to its desired state and report where it stands."""
    outcome = Outcome()
    spec = InstanceSpec.from_resource(body)
    maintenance = (body["metadata"].get("annotations") or {}).get(MAINTENANCE_ANNOTATION)
    hibernation = _hibernation_state(body)
    # An upgrade under way keeps a hibernating tenant awake: its health gate needs the pods.
    upgrade_step = ((body.get("status") or {}).get("upgrade") or {}).get("step")
    upgrading = upgrade_step is not None and upgrade_step not in FINAL_STEPS
    asleep = (
        hibernation is not None and not hibernation.awake and not spec.suspend and not upgrading
    )
    if maintenance or asleep:
        # A restore (or upgrade) holds the tenant: no pod may write to the database meanwhile.
        # Outside its awake windows a non-production tenant sleeps the same way.
        spec = dataclasses.replace(spec, suspend=True)
    config = clients.config
    outcome.fields = {
        "namespace": spec.namespace,
        "database": spec.database,
        "url": spec.url,
        "filestoreSize": spec.filestore_size,
    }
    writes_before = clients.kube.writes
    try:
        pg_server = config.postgres_server(spec.database_server)
        redis_server = config.redis_server(spec.redis_server)
        if spec.tenancy == "dedicated" and not (pg_server.dedicated and redis_server.dedicated):
            raise ConfigError("a dedicated tenant needs dedicated PostgreSQL and Redis servers")
        config.image_for(spec.version, spec.image)
    except ConfigError as exc:
        raise Stalled("InvalidConfiguration", str(exc)) from exc
    # Repeated from admission: the webhook may be bypassed, fail open or be absent.
    reserved = [*name_problems(spec, config), reserved_database_problem(spec.database)]
    if any(reserved):
        raise Stalled("ReservedName", " ".join(p for p in reserved if p))
    refused = [
        *config_option_problems(spec.config, spec.environment, config.policy, spec.version),
        *instance_image_policy_problems(spec.version, spec.image, config),
    ]
    if refused:
        raise Stalled("InvalidConfiguration", " ".join(refused))
    if not (body.get("status") or {}).get("runningImage"):
        # The first rollout: from now on only an upgrade changes what runs.
        outcome.fields["runningVersion"] = spec.version
        outcome.fields["runningImage"] = config_image(clients, spec)

    redis_user = tenant_redis_user(spec.name)
    try:
        pg_admin, pg_endpoint = await clients.postgres(pg_server)
    except (ConfigError, DatabaseServerUnavailable) as exc:
        outcome.set("DatabaseReady", False, "ServerUnavailable", str(exc))
        return _finish(outcome, clients, writes_before)
    try:
        redis_admin, redis_endpoint = await clients.redis(redis_server)
    except (ConfigError, RedisServerUnavailable) as exc:
        outcome.set("RedisReady", False, "ServerUnavailable", str(exc))
        return _finish(outcome, clients, writes_before)

    endpoints: dict[str, Any] = {
        "database": pg_endpoint,
        "redis": redis_endpoint,
        "redis_user": redis_user.username,
        "redis_key_prefix": redis_user.key_prefix,
        "image": running_image(clients, body, spec),
        # Whether the image the workloads run has a session module, per the version map.
        "session_store": config.session_store_for(_running_version(body, spec), spec.image),
        "maintenance": bool(maintenance),
        # Encryption in transit as the registry says; the CA bundles were read (and checked)
        # when the admin connections above were opened.
        "database_tls": pg_server.tls,
        "redis_tls": redis_server.tls,
        "database_ca": await clients.server_ca("PostgreSQL", pg_server),
        "redis_ca": await clients.server_ca("Redis", redis_server),
    }
    # The namespace carries no credentials; they are created inside it afterwards.
    provisional = _resolve_tenant(
        clients, spec, credentials=TenantCredentials("", "", ""), **endpoints
    )
    namespace_meta = await _ensure_namespace(clients, provisional)
    owner = {"labels": labels(provisional), "ownerReferences": namespace_meta["ownerReferences"]}
    rotation = _pending_rotation(body)
    credentials = await _ensure_credentials(clients, spec, owner, rotation)
    tenant = _resolve_tenant(clients, spec, credentials=credentials, **endpoints)

    for obj in build_foundation(tenant):
        await clients.kube.apply(obj)

    database = TenantDatabase(spec.database, spec.database, spec.connection_limit, spec.name)
    try:
        # Objects made before ownership marks existed are adopted under the derived name
        # only: no other instance can have had that name by default.
        adopt = spec.database == spec.default_database
        # The password reaches the server only to create the role or to re-key it: never
        # on an idle pass.
        actions = await pg_admin.ensure(
            database,
            credentials.database_password,
            adopt_unmarked=adopt,
            rekey=rotation is not None,
        )
        outcome.writes += len(actions)
        outcome.set(
            "DatabaseReady",
            True,
            "Provisioned",
            f"database {spec.database} on server {pg_server.name}",
        )
    except NotOwnedError as exc:
        # Another instance's database, or one the operator never made: nothing was run on
        # it, and only a human can settle who it belongs to.
        raise Stalled(exc.reason, str(exc)) from exc
    except DatabaseServerUnavailable as exc:
        outcome.set("DatabaseReady", False, "ServerUnavailable", str(exc))
    except Exception as exc:  # noqa: BLE001 - reported in status; the next pass retries
        outcome.set("DatabaseReady", False, "ProvisioningFailed", f"{type(exc).__name__}: {exc}")

    try:
        if await redis_admin.ensure(redis_user, credentials.redis_password):
            outcome.writes += 1
        outcome.set(
            "RedisReady",
            True,
            "Provisioned",
            f"ACL user {redis_user.username} on server {redis_server.name}",
        )
    except (RedisServerUnavailable, RedisAclRefused) as exc:
        outcome.set("RedisReady", False, "ServerUnavailable", str(exc))

    if not all(c.status == "True" for c in outcome.conditions):
        return _finish(outcome, clients, writes_before)
    version = _running_version(body, spec)
    outcome.conditions.append(
        _sessions_condition(tenant, redis_server.name, version, config.images.get(version))
    )
    if rotation is not None:
        outcome.fields["credentialsRotation"] = rotation
        logger.info(
            "re-keyed database role and Redis user of %s (rotation %s)", spec.name, rotation
        )

    initialized = await _ensure_initialized(clients, tenant, initialized, outcome)
    if initialized:
        await _check_odoo_passwords(clients, tenant, pg_server, body, outcome)
        for obj in build_workloads(tenant):
            await clients.kube.apply(obj)
        await _observe_workloads(clients, tenant, outcome)
    else:
        outcome.set(
            "WorkloadReady", False, "WaitingForInitialization", "the database is being initialized"
        )

    try:
        for obj in build_ingress(tenant):
            await clients.kube.apply(obj)
        if spec.drill:
            outcome.set(
                "IngressReady",
                True,
                "Isolated",
                f"restore drill {spec.drill}: no route, and no traffic from the ingress "
                "controller (network-isolated)",
            )
        else:
            outcome.set(
                "IngressReady", True, "Routed", f"IngressRoute odoo for {', '.join(spec.hosts)}"
            )
    except ResourceNotFoundError as exc:
        outcome.set(
            "IngressReady",
            False,
            "APIMissing",
            f"{exc}: install Traefik's CRDs (and cert-manager's when spec.tls.issuerRef is used)",
        )
    if hibernation is not None:
        outcome.fields["hibernation"] = _hibernation_status(hibernation)
    if outcome.phase == "Suspended" and (maintenance or asleep):
        phase, message = (
            ("Maintenance", f"held at zero by {maintenance}")
            if maintenance
            else ("Hibernating", _asleep_message(hibernation))
        )
        outcome.phase = phase
        outcome.conditions = [
            Condition("WorkloadReady", "True", phase, message) if c.type == "WorkloadReady" else c
            for c in outcome.conditions
        ]
    return _finish(outcome, clients, writes_before)


def _hibernation_state(body: Mapping[str, Any]) -> HibernationState | None:
    """Whether the tenant's ``spec.hibernation`` has it awake now, and until when; None
    without one. Checked again here, as at admission: production never sleeps."""
    problems = hibernation_problems(body)
    if problems:
        raise Stalled("InvalidConfiguration", " ".join(problems))
    policy = HibernationPolicy.from_instance(body)
    if policy is None:
        return None
    wake = (body["metadata"].get("annotations") or {}).get(WAKE_ANNOTATION)
    try:
        wake_until = parse_wake_until(wake) if wake else None
    except ValueError as error:
        raise Stalled("InvalidAnnotation", str(error)) from None
    try:
        return hibernation_state(policy, datetime.datetime.now(datetime.UTC), wake_until)
    except ValueError as error:  # an unknown time zone: admission refuses it, when present
        raise Stalled("InvalidConfiguration", f"spec.hibernation.timeZone: {error}") from None


_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


def _hibernation_status(state: HibernationState) -> dict[str, Any]:
    """``status.hibernation``: Awake or Asleep, and until when."""
    return {
        "state": "Awake" if state.awake else "Asleep",
        **({"until": state.until.strftime(_RFC3339)} if state.until else {}),
        **({"woken": True} if state.woken else {}),
    }


def _asleep_message(state: HibernationState | None) -> str:
    until = state.until.strftime(_RFC3339) if state and state.until else "further notice"
    return (
        f"hibernating until {until} (spec.hibernation); web and cron are at zero, data is kept. "
        f"Annotate {WAKE_ANNOTATION}=<RFC 3339 time> to wake it until then"
    )


async def _ensure_initialized(
    clients: Clients, tenant: Tenant, initialized: bool, outcome: Outcome
) -> bool:
    """Run the one-shot init Job once; `Initialized` is remembered in status."""
    if initialized:
        outcome.set(
            "Initialized", True, "Initialized", f"database {tenant.spec.database} initialized"
        )
        return True
    job = build_init_job(tenant)
    live = await clients.kube.get("batch/v1", "Job", job["metadata"]["name"], tenant.namespace)
    if live is None:
        await clients.kube.apply(job)
        live = job
    status = live.get("status") or {}
    if status.get("succeeded"):
        outcome.set(
            "Initialized", True, "Initialized", f"database {tenant.spec.database} initialized"
        )
        return True
    if any(
        c.get("type") == "Failed" and c.get("status") == "True"
        for c in status.get("conditions") or []
    ):
        outcome.set(
            "Initialized",
            False,
            "InitializationFailed",
            f"Job {tenant.namespace}/odoo-init failed; read the logs of its pod's "
            f"containers {INIT_INSTALL_CONTAINER} (modules) and {INIT_USERS_CONTAINER} "
            "(passwords), then delete the Job to retry",
        )
        return False
    outcome.set(
        "Initialized", False, "Initializing", f"Job {tenant.namespace}/odoo-init is running"
    )
    return False


def _published_condition(body: Mapping[str, Any], type_: str) -> Condition | None:
    """The condition ``type_`` as the instance's status holds it, if any."""
    for item in (body.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_ and item.get("status") in ("True", "False", "Unknown"):
            return Condition(
                type_, item["status"], str(item.get("reason", "")), str(item.get("message", ""))
            )
    return None


async def _check_odoo_passwords(
    clients: Clients,
    tenant: Tenant,
    server: ServerRef,
    body: Mapping[str, Any],
    outcome: Outcome,
) -> None:
    """``Credentials``: False while an active user of the tenant's Odoo accepts a default
    password (builders/odoo_users.py), which keeps the tenant from being Ready.

    Read as the tenant's own role, like the tenant probe. In maintenance a restore or an
    upgrade is renaming databases: the condition published before stands until it is over.
    """
    previous = _published_condition(body, CREDENTIALS_CONDITION)
    if tenant.maintenance:
        if previous is not None:
            outcome.conditions.append(previous)
        return
    database = tenant.spec.database
    conninfo = make_conninfo(
        host=tenant.database.host,
        port=str(tenant.database.port),
        user=database,
        password=tenant.credentials.database_password,
        dbname=database,
        **await clients.postgres_tls_parameters(server),
    )
    try:
        report = await SCANNER.scan(conninfo, _USERS_READ_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - reported in status; the next pass retries
        if previous is not None and previous.status in ("True", "False"):
            # A verdict stands until a read contradicts it: a database that refuses the
            # tenant's logins for a while is the probe's to report (tenant_probe_up), and
            # must not flip readiness on its own.
            outcome.conditions.append(previous)
            return
        outcome.conditions.append(
            Condition(
                CREDENTIALS_CONDITION,
                "Unknown",
                "CheckFailed",
                f"cannot read the users of database {database} to look for default "
                f"passwords: {first_line(exc, conninfo)}",
            )
        )
        return
    outcome.conditions.append(credentials_condition(report, database, previous))


async def _observe_workloads(clients: Clients, tenant: Tenant, outcome: Outcome) -> None:
    if tenant.spec.suspend:
        outcome.set(
            "WorkloadReady", True, "Suspended", "web and cron are scaled to zero; data is kept"
        )
        outcome.phase = "Suspended"
        return
    pending = []
    for component in ("web", "cron"):
        live = await clients.kube.get(
            "apps/v1", "Deployment", f"odoo-{component}", tenant.namespace
        )
        if not _deployment_available(live):
            pending.append(f"odoo-{component}")
    if pending:
        outcome.set(
            "WorkloadReady",
            False,
            "RollingOut",
            f"waiting for {', '.join(pending)} to be available",
        )
    else:
        outcome.set("WorkloadReady", True, "Available", "web and cron are available")


def _running_version(body: Mapping[str, Any], spec: InstanceSpec) -> str:
    """The Odoo version the workloads run: recorded in status, else (first rollout) the spec's."""
    return str((body.get("status") or {}).get("runningVersion") or spec.version)


# Conditions that describe the tenant without judging it: a False one does not make it unready.
INFORMATIONAL_CONDITIONS = frozenset({"SessionsInRedis"})


def _sessions_condition(
    tenant: Tenant, redis_server: str, version: str, map_image: str | None
) -> Condition:
    """``SessionsInRedis``: where Odoo keeps the tenant's web sessions, and why there.

    ``version`` is the Odoo version the workloads run, ``map_image`` its version map image.

    Informational (:data:`INFORMATIONAL_CONDITIONS`): sessions in the filestore work, on the
    shared volume every web pod mounts, so False says where they are, not that anything is
    broken. A condition rather than a status field, so that its reason and message come in
    the shape every Kubernetes tool reads.
    """
    if tenant.session_store == "redis":
        user = tenant_redis_user(tenant.spec.name)
        return Condition(
            "SessionsInRedis",
            "True",
            "SessionModule",
            f"web sessions are kept in Redis server {redis_server} under "
            f"{user.session_key_prefix}, by the image's session_redis module",
        )
    if tenant.spec.image and tenant.spec.image != map_image:
        why = (
            f"spec.image {tenant.spec.image} is not the version map's image for Odoo {version}, "
            "so the operator cannot know whether it has a session module"
        )
    else:
        why = f"the version map says the image for Odoo {version} has no session module"
    return Condition(
        "SessionsInRedis",
        "False",
        "NoSessionModule",
        f"web sessions are kept in Odoo's filestore (volume {FILESTORE_CLAIM}): {why} "
        "(sessionStore: none)",
    )


def _finish(outcome: Outcome, clients: Clients, writes_before: int) -> Outcome:
    outcome.writes += clients.kube.writes - writes_before
    failing = [
        c
        for c in outcome.conditions
        if c.status != "True" and c.type not in INFORMATIONAL_CONDITIONS
    ]
    if failing:
        first = failing[0]
        outcome.conditions.append(
            Condition("Ready", "False", first.reason, f"{first.type}: {first.message}")
        )
        outcome.conditions.append(Condition("Reconciling", "True", first.reason, first.message))
    elif outcome.held:
        # Held at zero pods on purpose: everything is as asked, but nobody is served, so not
        # Ready (kubectl wait and Argo CD must not count it as serving); not Reconciling
        # either, so kstatus says Current, the state asked for.
        workload = next(c for c in outcome.conditions if c.type == "WorkloadReady")
        outcome.conditions.append(
            Condition("Ready", "False", outcome.phase, f"not serving: {workload.message}")
        )
        outcome.conditions.append(
            Condition("Reconciling", "False", "Held", f"held at zero pods ({outcome.phase})")
        )
    else:
        outcome.conditions.append(Condition("Ready", "True", "Ready", "the tenant is serving"))
        outcome.conditions.append(
            Condition("Reconciling", "False", "Reconciled", "nothing left to do")
        )
        if outcome.phase == "Provisioning":
            outcome.phase = "Ready"
    outcome.conditions.append(Condition("Stalled", "False", "Progressing", "no blocking problem"))
    return outcome


async def delete_instance(clients: Clients, body: Mapping[str, Any]) -> list[str]:
    """Honour the deletion policy; the namespace goes with the owner reference either way."""
    spec = InstanceSpec.from_resource(body)
    done: list[str] = []
    # The namespace first: its pods stop before their database goes, rather than
    # logging its absence while they shut down.
    live = await clients.kube.get("v1", "Namespace", spec.namespace)
    owner = (((live or {}).get("metadata") or {}).get("labels") or {}).get(INSTANCE_LABEL)
    if live is not None and owner != spec.name:
        # Never delete a namespace this instance did not create (an instance named
        # "operator" would otherwise take the operator's own namespace with it).
        done.append(f"left namespace {spec.namespace} alone: it is not this tenant's")
    elif await clients.kube.delete("v1", "Namespace", spec.namespace):
        done.append(f"deleting namespace {spec.namespace}")
    if spec.deletion_policy == "Delete":
        pg_admin, _ = await clients.postgres(clients.config.postgres_server(spec.database_server))
        tenant_database = TenantDatabase(
            spec.database, spec.database, spec.connection_limit, spec.name
        )
        try:
            for kept in await pg_admin.drop_kept_databases(tenant_database):
                done.append(f"dropped database {kept}, kept by a restore or an upgrade")
            await pg_admin.drop(tenant_database)
            done.append(f"dropped database and role {spec.database}")
        except NotOwnedError as exc:
            # Never another's: the deletion goes on without dropping it, and says why.
            done.append(f"left database and role {spec.database} alone: {exc}")
        redis_admin, _ = await clients.redis(clients.config.redis_server(spec.redis_server))
        await redis_admin.drop(tenant_redis_user(spec.name), delete_keys=True)
        done.append(f"dropped Redis user {tenant_redis_user(spec.name).username} and its keys")
    else:
        done.append(
            f"kept database {spec.database}, its role and Redis keys (deletionPolicy Retain)"
        )
    return done
