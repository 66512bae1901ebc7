"""Prometheus metrics of the operator and of each tenant.

Everything here is recorded by the code that already knows it (a reconcile pass, a backup
handler, an upgrade step, the tenant probe loop of :mod:`odoo_operator.observability`) and
kept in memory. The scrape handler never does I/O: it renders the values gathered
elsewhere, from a snapshot taken under a lock, so a slow API server or tenant database
cannot slow a scrape down, and a scrape cannot slow the operator down.

Metrics live on a registry of their own (:data:`REGISTRY`), not prometheus_client's global
one, so importing this module registers nothing elsewhere and tests can render it alone.
Per-tenant series carry the label ``instance`` and nothing unbounded: no request, user,
backup or error-message labels. A deleted tenant's series disappear with it
(:func:`forget_instance`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from . import logs
from .model.outcome import HELD_PHASES

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .model.conditions import Condition
    from .model.outcome import Outcome
    from .model.spec import InstanceSpec

METRICS_PORT_ENV = "ODOO_OPERATOR_METRICS_PORT"  # 0 disables the endpoint (and the probes)
METRICS_ADDR_ENV = "ODOO_OPERATOR_METRICS_ADDR"
DEFAULT_METRICS_PORT = 9090
PREFIX = "odoo_operator_"

# No ``*_created`` series: they double every counter and histogram and no rule uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]
# Every metric: the operator's counters and histograms, and the per-tenant families of
# _FleetCollector (registered at the end of this module). What the endpoint serves.
REGISTRY = CollectorRegistry(auto_describe=True)

# Phases are rendered for every known value, so a dashboard's "tenants by phase" shows
# zeros instead of gaps.
PHASES = ("Provisioning", "Ready", "Suspended", "Maintenance", "Hibernating", "Stalled")
QUEUE_JOB_STATES = ("pending", "enqueued", "started", "failed")

RECONCILE_TOTAL = Counter(
    "odoo_operator_reconcile",
    "Reconcile passes of OdooInstances by trigger (change, drift) and result: ok (the pass "
    "ran to the end and published conditions, whatever they say), stalled (waiting for a "
    "human), error (an exception escaped; Kopf retries).",
    ["trigger", "result"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "odoo_operator_reconcile_errors",
    "Reconcile passes that raised, by exception class (a bounded set: the code's own types).",
    ["reason"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "odoo_operator_reconcile_duration_seconds",
    "Wall time of one reconcile pass, including backup bookkeeping and status publication.",
    ["trigger"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
ADMISSION_DURATION = Histogram(
    "odoo_operator_admission_duration_seconds",
    "Time the admission webhook's handler took to answer, by webhook (validate-instance, "
    "validate-backup, validate-restore, assign-shard-...) and decision (allowed, refused, "
    "error): the webhook's own share of an apply's latency, without the API server's.",
    ["webhook", "decision"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
BACKUPS_TOTAL = Counter(
    "odoo_operator_backups",
    "OdooBackups that finished in this operator process, by result (succeeded, failed).",
    ["result"],
    registry=REGISTRY,
)
VERIFICATIONS_TOTAL = Counter(
    "odoo_operator_backup_verifications",
    "Backup verifications (restore into a scratch database), by result (passed, failed).",
    ["result"],
    registry=REGISTRY,
)
RESTORES_TOTAL = Counter(
    "odoo_operator_restores",
    "OdooRestores seen finishing by this operator process, by result (succeeded, failed).",
    ["result"],
    registry=REGISTRY,
)
UPGRADES_TOTAL = Counter(
    "odoo_operator_upgrades",
    "Upgrades that reached a final step, by result: succeeded, failed (nothing was switched) "
    "or rolled_back (switched, failed the health gate, switched back).",
    ["result"],
    registry=REGISTRY,
)
UPGRADE_DURATION = Histogram(
    "odoo_operator_upgrade_duration_seconds",
    "Start (pre-upgrade backup) to final step of upgrades that succeeded.",
    buckets=(60, 300, 600, 1200, 1800, 3600, 7200, 14400),
    registry=REGISTRY,
)
UPGRADE_DOWNTIME = Histogram(
    "odoo_operator_upgrade_downtime_seconds",
    "Time a tenant was held in maintenance (web and cron at zero) by a successful upgrade.",
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
    registry=REGISTRY,
)

# The external systems the operator calls, and the operations timed on each: fixed sets, so
# the labels of the two metrics below stay bounded. Another operation name is recorded as
# "other" (see observe_call).
ExternalSystem = Literal["kubernetes", "postgresql", "redis", "blob"]
EXTERNAL_OPERATIONS: Mapping[ExternalSystem, tuple[str, ...]] = {
    # discover: the API discovery the dynamic client makes once; patch: status or metadata.
    "kubernetes": ("discover", "get", "list", "apply", "patch", "delete"),
    # One admin session each (a pooled connection and its statements), named after the
    # PostgresAdmin method.
    "postgresql": (
        "observe",
        "ensure",
        "rotate_password",
        "drop",
        "drop_kept_databases",
        "harden_server",
    ),
    # The commands RedisAdmin sends.
    "redis": ("acl_getuser", "acl_setuser", "acl_deluser", "acl_cat", "scan", "unlink"),
    # upload: one staged block or a one-request upload; commit: the block list.
    "blob": (
        "upload",
        "commit",
        "download",
        "exists",
        "list",
        "delete",
        "create_container",
        "properties",
    ),
}
OTHER_OPERATION = "other"
CALL_ERROR_REASONS = ("timeout", "unavailable", "refused", "not_found", "conflict", "other")

EXTERNAL_CALL_DURATION = Histogram(
    "odoo_operator_external_call_duration_seconds",
    "Wall time of calls to external systems (system: kubernetes, postgresql, redis, blob) "
    "by operation, failed calls included.",
    ["system", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
EXTERNAL_CALL_ERRORS = Counter(
    "odoo_operator_external_call_errors",
    "Calls to external systems that failed, by system, operation and reason (timeout, "
    "unavailable, refused, not_found, conflict, other).",
    ["system", "operation", "reason"],
    registry=REGISTRY,
)

PROVISIONING_TENANTS = Gauge(
    "odoo_operator_provisioning_tenants",
    "New tenants provisioned now (state=provisioning, at most provisioningConcurrency) and "
    "waiting for their turn (state=queued).",
    ["state"],
    registry=REGISTRY,
)


def observe_provisioning(provisioning: int, queued: int) -> None:
    """Publish how many new tenants are provisioned now and how many wait their turn."""
    PROVISIONING_TENANTS.labels(state="provisioning").set(provisioning)
    PROVISIONING_TENANTS.labels(state="queued").set(queued)


def _http_reason(code: int) -> str:
    if code in (408, 504):
        return "timeout"
    if code in (401, 403):
        return "refused"
    if code == 404:
        return "not_found"
    if code in (409, 412):
        return "conflict"
    if code == 429 or code >= 500:
        return "unavailable"
    return "other"


def _sqlstate_reason(sqlstate: str) -> str:
    if sqlstate == "57014":  # query_canceled: statement_timeout or lock_timeout
        return "timeout"
    if sqlstate.startswith("08") or sqlstate in ("53300", "57P01", "57P02", "57P03"):
        return "unavailable"  # connection failure, too many connections, shutting down
    if sqlstate.startswith("28") or sqlstate == "42501":
        return "refused"  # invalid authorization, insufficient privilege
    if sqlstate.startswith("23") or sqlstate in ("42710", "42P04"):
        return "conflict"  # integrity violation, duplicate object or database
    return "other"


# Client-library exceptions by class name, matched along the class hierarchy (the most
# specific class first), so this module imports none of the client libraries. Built-in
# names match the libraries' own classes of the same name as well (redis's TimeoutError
# and ConnectionError do not derive from the built-in ones).
_REASON_BY_CLASS = {
    "TimeoutError": "timeout",  # built-in (asyncio's too), redis
    "PoolTimeout": "timeout",  # psycopg_pool: no connection within the pool's timeout
    "ServiceRequestTimeoutError": "timeout",  # azure-core
    "ServiceResponseTimeoutError": "timeout",
    "PermissionError": "refused",
    "AuthenticationError": "refused",  # redis: wrong user or password
    "NoPermissionError": "refused",  # redis: NOPERM
    # Kubernetes' and Azure's errors carry an HTTP status as well, unless no response came.
    "ClientAuthenticationError": "refused",  # azure-core
    "ResourceNotFoundError": "not_found",  # azure-core
    "ResourceExistsError": "conflict",  # azure-core
    "NotFoundError": "not_found",  # kubernetes_asyncio's dynamic client
    "KeyError": "other",  # a bug, not an answer
    "IndexError": "other",
    "LookupError": "not_found",  # the backends' "no such blob", "no such role"
    "ConnectionError": "unavailable",  # built-in (refused, reset...), redis
    "ServiceRequestError": "unavailable",  # azure-core: the request could not be sent
    "ServiceResponseError": "unavailable",  # azure-core: no usable response
    "OperationalError": "unavailable",  # psycopg without a SQLSTATE: no connection
    "OSError": "unavailable",  # DNS and socket errors
}


def call_error_reason(error: BaseException) -> str:
    """Why a call to an external system failed, as one of :data:`CALL_ERROR_REASONS`.

    The only place that classifies errors, and only from their types and codes, never
    from a message (which can name hosts, tenants or secrets). In order: an HTTP status
    (Kubernetes, Azure), a SQLSTATE (PostgreSQL), the class (:data:`_REASON_BY_CLASS`).
    An error the table does not know is classified by its explicit cause (``raise ...
    from``): the backends wrap client errors in their own. ``timeout``: no answer in
    time; ``unavailable``: not reachable or not serving (HTTP 429 and 5xx included);
    ``refused``: credentials or permissions; ``not_found``, ``conflict``: the answer said
    so; ``other``: anything else (a bad request, a bug).
    """
    current: BaseException | None = error
    for _ in range(5):  # causes are short chains; the bound guards against cycles
        if current is None:
            break
        for attribute in ("status_code", "status", "code"):  # Azure, Kubernetes, KubeApiError
            code = getattr(current, attribute, None)
            if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
                return _http_reason(code)
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str):
            return _sqlstate_reason(sqlstate)
        for cls in type(current).__mro__:
            if cls.__name__ in _REASON_BY_CLASS:
                return _REASON_BY_CLASS[cls.__name__]
        current = current.__cause__
    return "other"


class CallObservation:
    """Times one call to an external system; see :func:`observe_call`."""

    __slots__ = ("_failure", "_started", "operation", "system")

    def __init__(self, system: ExternalSystem, operation: str) -> None:
        if system not in EXTERNAL_OPERATIONS:
            raise ValueError(f"unknown external system {system!r}")
        self.system = system
        self.operation = operation if operation in EXTERNAL_OPERATIONS[system] else OTHER_OPERATION
        self._failure: str | None = None
        self._started = 0.0

    def __enter__(self) -> CallObservation:
        self._started = time.monotonic()
        return self

    def fail(self, error: BaseException) -> None:
        """Count the call as failed with ``error`` although nothing was raised: an error
        the client hands back as an answer."""
        self._failure = call_error_reason(error)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        EXTERNAL_CALL_DURATION.labels(self.system, self.operation).observe(
            time.monotonic() - self._started
        )
        reason = self._failure
        # Only errors count: not a cancellation (a BaseException), nor the end of a stream.
        if (
            reason is None
            and isinstance(exc, Exception)
            and not isinstance(exc, StopIteration | StopAsyncIteration)
        ):
            reason = call_error_reason(exc)
        if reason is not None:
            EXTERNAL_CALL_ERRORS.labels(self.system, self.operation, reason).inc()


@contextlib.contextmanager
def observe_admission(webhook: str) -> Iterator[None]:
    """Time one admission handler; a ``kopf.AdmissionError`` leaving it counts as refused,
    any other exception as an error."""
    started = time.monotonic()
    decision = "allowed"
    try:
        yield
    except Exception as error:
        decision = "refused" if type(error).__name__ == "AdmissionError" else "error"
        raise
    finally:
        ADMISSION_DURATION.labels(webhook, decision).observe(time.monotonic() - started)


def observe_call(system: ExternalSystem, operation: str) -> CallObservation:
    """``with observe_call("redis", "acl_getuser"): await ...``: times the block as one
    call to ``system``, failed or not, and counts an exception that leaves it by
    :func:`call_error_reason` (then lets it propagate). A plain ``with``: it works around
    an ``await`` too. ``operation`` outside :data:`EXTERNAL_OPERATIONS` is recorded as
    ``other``, so the labels stay bounded whatever a caller passes."""
    return CallObservation(system, operation)


def _epoch(text: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 status time, or None."""
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class ProbeResult:
    """What one probe of a tenant's database found. ``up`` False: only the duration is known.

    ``cron_overdue`` and ``queue_jobs`` are None when the table does not exist (Odoo not
    initialized yet; ``queue_job`` not installed).
    """

    up: bool
    duration_seconds: float
    database_size_bytes: float | None = None
    connections: float | None = None
    connection_limit: float | None = None
    longest_transaction_seconds: float | None = None
    cron_overdue: int | None = None
    cron_max_lag_seconds: float | None = None
    queue_jobs: tuple[tuple[str, int], ...] | None = None


@dataclass(frozen=True)
class HealthCheck:
    """One synthetic request to a tenant's ``/web/health``: answered 200 in time or not."""

    up: bool
    duration_seconds: float


@dataclass(frozen=True)
class TenantState:
    """Everything known about one tenant. Immutable: an update replaces it whole, so a
    scrape's snapshot is a shallow copy of the dict."""

    phase: str | None = None
    # What the tenant is for and where it runs, from its spec (odoo_operator_tenant_info).
    environment: str | None = None
    tenancy: str | None = None
    # (type, status, reason) of each condition, as last published.
    conditions: tuple[tuple[str, str, str], ...] = ()
    backup_time: float | None = None
    copy_time: float | None = None
    backup_size_bytes: float | None = None
    backup_duration_seconds: float | None = None
    verification_time: float | None = None
    verification_passed: bool | None = None
    backup_failures: int = 0
    drift_repairs: int = 0
    probe: ProbeResult | None = None
    # (target, check) per synthetic check target ("service", "public").
    health_checks: tuple[tuple[str, HealthCheck], ...] = ()
    # The monitoring user's login and one read through the tenant's Service.
    login_check: HealthCheck | None = None
    # The tenant's last restore drill (status.lastDrill): when it ended, whether it passed
    # (served with the books intact), its measured RTO and the objective.
    drill_time: float | None = None
    drill_passed: bool | None = None
    drill_rto_seconds: float | None = None
    drill_rto_objective_seconds: float | None = None
    # Hibernation (spec.hibernation): pod-seconds not run while asleep, counted by this
    # process, and when the last pass that found the tenant asleep ran (Unix seconds).
    hibernation_saved_pod_seconds: float = 0.0
    asleep_seen_at: float | None = None
    hibernated: bool = False  # seen asleep once: its counter is rendered from then on

    def condition(self, type_: str) -> tuple[str, str] | None:
        """(status, reason) of a condition, or None."""
        for name, status, reason in self.conditions:
            if name == type_:
                return status, reason
        return None


@dataclass(frozen=True)
class ArchiveState:
    """A PostgreSQL server's WAL archive as its ``pg_stat_archiver`` shows it.

    ``pending_segments``: WAL segments written in full but not yet archived (0 on a server
    whose archiver keeps up, idle or not); ``archive_timeout_seconds``: the longest a change
    waits before its segment is switched out to be archived, the archive's best RPO.
    """

    up: bool
    last_archived_epoch: float | None = None
    pending_segments: int = 0
    failed_count: int = 0
    last_failed_epoch: float | None = None
    archive_timeout_seconds: float | None = None


@dataclass
class _FleetState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    tenants: dict[str, TenantState] = field(default_factory=dict)
    archives: dict[str, ArchiveState] = field(default_factory=dict)
    # What the probe loop needs to reach a tenant's database, set once its database exists.
    targets: dict[str, InstanceSpec] = field(default_factory=dict)
    in_flight: int = 0
    probe_round_seconds: float | None = None
    probe_round_tenants: int = 0

    def update(self, instance: str, **changes: Any) -> None:
        with self.lock:
            self.tenants[instance] = replace(self.tenants.get(instance, TenantState()), **changes)

    def get(self, instance: str) -> TenantState:
        with self.lock:
            return self.tenants.get(instance, TenantState())


_STATE = _FleetState()


def _newer(current: float | None, candidate: float | None) -> bool:
    return candidate is not None and (current is None or candidate >= current)


class ReconcileObservation:
    """Times one reconcile pass and records what it found; see :func:`observe_reconcile`."""

    def __init__(self, instance: str, trigger: str) -> None:
        self.instance = instance
        self.trigger = trigger
        self.result: str | None = None
        self._started = 0.0
        self._context: contextlib.AbstractContextManager[None] | None = None

    def __enter__(self) -> ReconcileObservation:
        self._started = time.monotonic()
        self._context = logs.log_context(
            instance=self.instance, reconcile=secrets.token_hex(4), trigger=self.trigger
        )
        self._context.__enter__()
        with _STATE.lock:
            _STATE.in_flight += 1
        return self

    def record(self, outcome: Outcome, spec: InstanceSpec | None = None) -> None:
        """The pass ran to the end: remember its phase, conditions and backup summary."""
        self.result = "stalled" if outcome.phase == "Stalled" else "ok"
        record_outcome(self.instance, outcome, spec, drift=self.trigger == "drift")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        RECONCILE_DURATION.labels(self.trigger).observe(time.monotonic() - self._started)
        with _STATE.lock:
            _STATE.in_flight -= 1
        if exc_type is not None and self.result is None:
            RECONCILE_ERRORS.labels(exc_type.__name__).inc()
            self.result = "error"
        RECONCILE_TOTAL.labels(self.trigger, self.result or "ok").inc()
        if self._context is not None:
            self._context.__exit__(exc_type, exc, traceback)


def observe_reconcile(instance: str, trigger: str) -> ReconcileObservation:
    """``with observe_reconcile(name, "drift") as seen: ...; seen.record(outcome)``.

    Counts the pass by result, times it, and tags the log lines written meanwhile with
    the instance and a reconcile id.
    """
    return ReconcileObservation(instance, trigger)


def record_outcome(
    instance: str, outcome: Outcome, spec: InstanceSpec | None = None, drift: bool = False
) -> None:
    """Remember what a reconcile pass published about ``instance``."""
    conditions: dict[str, tuple[str, str, str]] = {}
    for condition in outcome.conditions:
        conditions[condition.type] = (condition.type, condition.status, condition.reason)
    current = _STATE.get(instance)
    changes: dict[str, Any] = {
        "phase": outcome.phase,
        "conditions": tuple(sorted(conditions.values())),
    }
    last = outcome.fields.get("lastBackup") or {}
    last_time = _epoch(last.get("time"))
    if _newer(current.backup_time, last_time):
        changes["backup_time"] = last_time
        if last.get("sizeBytes") is not None:
            changes["backup_size_bytes"] = float(last["sizeBytes"])
    copied = _epoch((outcome.fields.get("lastCopiedBackup") or {}).get("time"))
    if _newer(current.copy_time, copied):
        changes["copy_time"] = copied
    drill = outcome.fields.get("lastDrill") or {}
    drilled = _epoch(drill.get("completedAt"))
    if _newer(current.drill_time, drilled):
        changes["drill_time"] = drilled
        changes["drill_passed"] = drill.get("result") in ("Passed", "RTOExceeded")
        rto, objective = drill.get("rtoSeconds"), drill.get("rtoObjectiveSeconds")
        if rto is not None:  # a failed drill measured none: the last one measured stands
            changes["drill_rto_seconds"] = float(rto)
        changes["drill_rto_objective_seconds"] = None if objective is None else float(objective)
    verified = _epoch((outcome.fields.get("lastVerifiedBackup") or {}).get("time"))
    if _newer(current.verification_time, verified):
        changes["verification_time"] = verified
        changes["verification_passed"] = True
    health = conditions.get("BackupHealthy")
    if health is not None and health[2] == "VerificationFailed":
        changes["verification_passed"] = False
    if outcome.phase == "Hibernating" and spec is not None:
        # The pods the tenant would run awake, for the time since the last pass found it
        # asleep: the first pass of a sleep counts nothing, each later one its interval.
        moment = time.time()
        if current.asleep_seen_at is not None:
            pods = spec.replicas + spec.cron_replicas
            changes["hibernation_saved_pod_seconds"] = current.hibernation_saved_pod_seconds + (
                pods * max(0.0, moment - current.asleep_seen_at)
            )
        changes["asleep_seen_at"], changes["hibernated"] = moment, True
    elif current.asleep_seen_at is not None:
        changes["asleep_seen_at"] = None
    if drift and outcome.writes:
        changes["drift_repairs"] = current.drift_repairs + outcome.writes
    if spec is not None:
        changes["environment"], changes["tenancy"] = spec.environment, spec.tenancy
    _STATE.update(instance, **changes)
    database = conditions.get("DatabaseReady")
    if spec is not None and database is not None and database[1] == "True":
        with _STATE.lock:
            _STATE.targets[instance] = spec


def record_condition(instance: str, condition: Condition) -> None:
    """A condition of ``instance`` published between its reconcile passes (``BackupHealthy``
    when a backup ends), so its series change with the status, not at the next pass."""
    entry = (condition.type, condition.status, condition.reason)
    with _STATE.lock:  # an instance this process does not track adds no series
        current = _STATE.tenants.get(instance)
        if current is None:
            return
        others = [c for c in current.conditions if c[0] != condition.type]
        _STATE.tenants[instance] = replace(current, conditions=tuple(sorted([*others, entry])))


def forget_instance(instance: str) -> None:
    """Drop every series of a deleted tenant, or of one another shard serves."""
    with _STATE.lock:
        _STATE.tenants.pop(instance, None)
        _STATE.targets.pop(instance, None)


def record_backup(instance: str, previous_phase: str | None, status: Mapping[str, Any]) -> None:
    """An OdooBackup of ``instance`` finished (``status``); count it once, whatever the
    handler re-runs, and keep the newest success and verification."""
    phase = status.get("phase")
    if phase not in ("Succeeded", "Failed"):
        return
    current = _STATE.get(instance)
    changes: dict[str, Any] = {}
    if phase == "Failed":
        if previous_phase != "Failed":
            BACKUPS_TOTAL.labels("failed").inc()
            changes["backup_failures"] = current.backup_failures + 1
    else:
        if previous_phase != "Succeeded":
            BACKUPS_TOTAL.labels("succeeded").inc()
        completed = _epoch(status.get("completedAt"))
        if _newer(current.backup_time, completed):
            changes["backup_time"] = completed
            changes["backup_size_bytes"] = float(status.get("sizeBytes") or 0)
            started = _epoch(status.get("startedAt"))
            if started is not None and completed is not None:
                changes["backup_duration_seconds"] = max(0.0, completed - started)
        verification = status.get("verification") or {}
        checked = _epoch(verification.get("checkedAt"))
        if verification.get("result") in ("Passed", "Failed") and checked is not None:
            VERIFICATIONS_TOTAL.labels(str(verification["result"]).lower()).inc()
            if _newer(current.verification_time, checked):
                changes["verification_time"] = checked
                changes["verification_passed"] = verification["result"] == "Passed"
    with _STATE.lock:  # a backup of an instance this process does not track adds no series
        if changes and instance in _STATE.tenants:
            _STATE.tenants[instance] = replace(_STATE.tenants[instance], **changes)


def record_upgrade_step(instance: str, before: str | None, upgrade: Mapping[str, Any]) -> None:
    """An upgrade of ``instance`` moved from step ``before`` to ``upgrade['step']``;
    counted when that is a final step."""
    step = upgrade.get("step")
    if step == "done":
        UPGRADES_TOTAL.labels("succeeded").inc()
        started, completed = _epoch(upgrade.get("startedAt")), _epoch(upgrade.get("completedAt"))
        if started is not None and completed is not None:
            UPGRADE_DURATION.observe(max(0.0, completed - started))
        if upgrade.get("downtimeSeconds") is not None:
            UPGRADE_DOWNTIME.observe(float(upgrade["downtimeSeconds"]))
    elif step == "failed":
        UPGRADES_TOTAL.labels("rolled_back" if before == "rollback" else "failed").inc()


def record_restore(result: str) -> None:
    """An OdooRestore finished: ``succeeded`` or ``failed``."""
    RESTORES_TOTAL.labels(result).inc()


def record_probe(instance: str, result: ProbeResult) -> None:
    """The tenant probe loop's finding for one tenant (ignored once the tenant is gone)."""
    with _STATE.lock:
        if instance in _STATE.tenants:
            _STATE.tenants[instance] = replace(_STATE.tenants[instance], probe=result)


def record_health_check(instance: str, target: str, check: HealthCheck) -> None:
    """A synthetic check of the tenant's health endpoint through ``target`` (ignored once
    the tenant is gone)."""
    with _STATE.lock:
        if instance in _STATE.tenants:
            state = _STATE.tenants[instance]
            others = tuple((t, c) for t, c in state.health_checks if t != target)
            checks = tuple(sorted((*others, (target, check)), key=lambda item: item[0]))
            _STATE.tenants[instance] = replace(state, health_checks=checks)


def record_login_check(instance: str, check: HealthCheck) -> None:
    """A synthetic login of the tenant's monitoring user and one read through its Service
    (ignored once the tenant is gone)."""
    with _STATE.lock:
        if instance in _STATE.tenants:
            _STATE.tenants[instance] = replace(_STATE.tenants[instance], login_check=check)


def record_probe_round(seconds: float, tenants: int) -> None:
    """How long the last full round of tenant probes took, and over how many tenants."""
    with _STATE.lock:
        _STATE.probe_round_seconds = seconds
        _STATE.probe_round_tenants = tenants


def record_archive(server: str, state: ArchiveState) -> None:
    """The latest reading of a registered server's WAL archive."""
    with _STATE.lock:
        _STATE.archives[server] = state


def probe_targets() -> dict[str, tuple[InstanceSpec, str | None]]:
    """Tenants whose database exists: spec and current phase, for the probe loop."""
    with _STATE.lock:
        return {
            name: (spec, _STATE.tenants.get(name, TenantState()).phase)
            for name, spec in _STATE.targets.items()
        }


def reset() -> None:
    """Forget every tenant (tests and benchmarks)."""
    with _STATE.lock:
        _STATE.tenants.clear()
        _STATE.targets.clear()
        _STATE.archives.clear()
        _STATE.probe_round_seconds = None
        _STATE.probe_round_tenants = 0


def set_tenant(instance: str, state: TenantState) -> None:
    """Set a tenant's whole state (tests and benchmarks)."""
    with _STATE.lock:
        _STATE.tenants[instance] = state


class _FleetCollector(Collector):
    """Renders the per-tenant state at scrape time, from a snapshot: no I/O, no awaiting."""

    def collect(self) -> Iterable[Metric]:
        with _STATE.lock:
            tenants = dict(_STATE.tenants)
            in_flight = _STATE.in_flight
            round_seconds = _STATE.probe_round_seconds
            round_tenants = _STATE.probe_round_tenants
            archives = dict(_STATE.archives)
        yield from _fleet_metrics(tenants, in_flight, round_seconds, round_tenants)
        yield from _archive_metrics(archives, time.time())


# Reasons of RestoreDrillPassed=False (reconcile/drills.py), one series each.
DRILL_BREACHES = ("DrillFailed", "RTOExceeded", "DrillOverdue")


def _gauge(name: str, text: str, labels: tuple[str, ...] = ("instance",)) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, text, labels=list(labels))


def _fleet_metrics(
    tenants: Mapping[str, TenantState],
    in_flight: int,
    round_seconds: float | None,
    round_tenants: int,
) -> Iterator[Metric]:
    by_phase = _gauge("tenants", "OdooInstances known to this operator, by phase.", ("phase",))
    counts = dict.fromkeys(PHASES, 0)
    for state in tenants.values():
        if state.phase is not None:
            counts[state.phase] = counts.get(state.phase, 0) + 1
    for phase, count in sorted(counts.items()):
        by_phase.add_metric([phase], count)
    yield by_phase

    running = _gauge("reconcile_in_flight", "Reconcile passes running right now.", ())
    running.add_metric([], in_flight)
    yield running

    condition = _gauge(
        "tenant_condition",
        "Status conditions of each OdooInstance: one series per condition, labelled with "
        "its current status (True, False or Unknown); the value is always 1.",
        ("instance", "condition", "status"),
    )
    held = _gauge(
        "tenant_held",
        "1 while the tenant is held at zero pods on purpose (phase Suspended: spec.suspend; "
        "Maintenance: a restore or an upgrade): Ready is False, and not-ready alerts skip it.",
        ("instance", "phase"),
    )
    rpo = _gauge(
        "backup_rpo_breach",
        "1 when the tenant's newest good backup is older than its RPO "
        "(BackupHealthy=False, reason RPOExceeded), else 0. Tenants with backups only.",
    )
    copy_rpo = _gauge(
        "backup_copy_rpo_breach",
        "1 when the newest checked copy of the tenant's backups in its secondary store is older "
        "than its RPO (BackupHealthy=False, reason CopyRPOExceeded), else 0.",
    )
    copy_time = _gauge(
        "backup_last_copy_timestamp_seconds",
        "When the newest checked copy of the tenant's backups in its secondary store was "
        "completed (Unix seconds). Tenants with spec.backup.secondaryStoreRef only.",
    )
    drill_time = _gauge(
        "drill_last_timestamp_seconds",
        "When the tenant's last restore drill ended (Unix seconds), passed or not.",
    )
    drill_ok = _gauge(
        "drill_last_success",
        "1 when the tenant's last restore drill restored its newest backup into a temporary "
        "tenant that served with the books intact, 0 when it failed.",
    )
    drill_rto = _gauge(
        "drill_last_rto_seconds",
        "Recovery time measured by the tenant's last successful restore drill: from the "
        "drill's start to the restored tenant serving (health and a login).",
    )
    drill_objective = _gauge(
        "drill_rto_objective_seconds", "The tenant's recovery time objective (spec.backup.rto)."
    )
    drill_breach = _gauge(
        "drill_breach",
        "1 while RestoreDrillPassed is False for the reason in the label (DrillFailed, "
        "RTOExceeded, DrillOverdue), else 0. Tenants with drills or an RTO only.",
        ("instance", "reason"),
    )
    upgrade_failed = _gauge(
        "tenant_upgrade_failed",
        "1 while the tenant's last upgrade attempt failed (Upgraded=False, reason "
        "UpgradeFailed), else 0.",
    )
    backup_time = _gauge(
        "backup_last_success_timestamp_seconds",
        "Completion time of the tenant's newest successful backup (Unix seconds).",
    )
    backup_size = _gauge(
        "backup_last_size_bytes", "Size of the tenant's newest successful backup (all parts)."
    )
    backup_duration = _gauge(
        "backup_last_duration_seconds",
        "Duration of the tenant's newest successful backup taken by this operator process.",
    )
    verify_time = _gauge(
        "backup_last_verification_timestamp_seconds",
        "Time of the tenant's newest backup verification (Unix seconds).",
    )
    verify_ok = _gauge(
        "backup_last_verification_success",
        "1 when the tenant's newest backup verification passed, 0 when it failed.",
    )
    failures = CounterMetricFamily(
        PREFIX + "backup_failures",
        "Failed OdooBackups of the tenant seen by this operator process.",
        labels=["instance"],
    )
    saved = CounterMetricFamily(
        PREFIX + "hibernation_saved_pod_hours",
        "Pod-hours the tenant's web and cron did not run while it hibernated outside the "
        "awake windows of spec.hibernation (its replicas times the time asleep, counted "
        "by this operator process), from the first time it hibernates.",
        labels=["instance"],
    )
    drift = CounterMetricFamily(
        PREFIX + "drift_repairs",
        "Writes (Kubernetes applies and deletes, PostgreSQL and Redis changes) made by "
        "periodic drift passes: each one put back something that had drifted.",
        labels=["instance"],
    )
    probe_up = _gauge(
        "tenant_probe_up",
        "1 when the last read-only probe of the tenant's database succeeded within its "
        "timeout, else 0.",
    )
    probe_duration = _gauge(
        "tenant_probe_duration_seconds", "Wall time of the last probe of the tenant's database."
    )
    size = _gauge("tenant_database_size_bytes", "pg_database_size of the tenant's database.")
    connections = _gauge(
        "tenant_database_connections",
        "Sessions of the tenant's role on its server (the probe's own excluded).",
    )
    limit = _gauge(
        "tenant_database_connection_limit",
        "CONNECTION LIMIT of the tenant's role (absent when unlimited).",
    )
    longest = _gauge(
        "tenant_longest_transaction_seconds",
        "Age of the oldest open transaction in the tenant's database (0 when none).",
    )
    overdue = _gauge(
        "tenant_cron_overdue",
        "Active ir_cron jobs whose nextcall is further in the past than the overdue "
        "threshold: scheduled actions (postings, reminders, payment runs) that did not run.",
    )
    lag = _gauge(
        "tenant_cron_max_lag_seconds",
        "How far in the past the most overdue active ir_cron's nextcall is (0 when none).",
    )
    queue = _gauge(
        "tenant_queue_jobs",
        "queue_job rows by state (pending, enqueued, started, failed), where that module "
        "is installed.",
        ("instance", "state"),
    )
    health_up = _gauge(
        "tenant_health_check_up",
        "1 when the last synthetic GET of the tenant's /web/health through target "
        "(service: its Service inside the cluster; public: its first host) answered 200 "
        "within the timeout, else 0.",
        ("instance", "target"),
    )
    health_duration = _gauge(
        "tenant_health_check_duration_seconds",
        "Wall time of the last synthetic check of the tenant's /web/health, by target.",
        ("instance", "target"),
    )
    login_up = _gauge(
        "tenant_login_check_up",
        "1 when the tenant's monitoring user (odoo-operator-monitor, a portal user) last "
        "logged in through the tenant's Service and read its own user record within the "
        "timeout, else 0 (also when /web/health failed in the same round: no login tried).",
    )
    login_duration = _gauge(
        "tenant_login_check_duration_seconds",
        "Wall time of the last synthetic login and read of the tenant's monitoring user "
        "(0 when none was tried).",
    )
    info = _gauge(
        "tenant_info",
        "One series per tenant, value 1, labelled with its spec.environment (production, "
        "staging, development) and tenancy: join on instance to split any tenant metric.",
        ("instance", "environment", "tenancy"),
    )
    for name in sorted(tenants):
        state = tenants[name]
        if state.environment is not None:
            info.add_metric([name, state.environment, state.tenancy or ""], 1)
        if state.phase in HELD_PHASES:
            held.add_metric([name, state.phase], 1)
        for target, check in state.health_checks:
            health_up.add_metric([name, target], 1 if check.up else 0)
            health_duration.add_metric([name, target], check.duration_seconds)
        if state.login_check is not None:
            login_up.add_metric([name], 1 if state.login_check.up else 0)
            login_duration.add_metric([name], state.login_check.duration_seconds)
        for type_, status, reason in state.conditions:
            condition.add_metric([name, type_, status], 1)
            if type_ == "BackupHealthy":
                rpo.add_metric([name], 1 if (status, reason) == ("False", "RPOExceeded") else 0)
                copy_rpo.add_metric(
                    [name], 1 if (status, reason) == ("False", "CopyRPOExceeded") else 0
                )
            if type_ == "RestoreDrillPassed":
                for breach in DRILL_BREACHES:
                    drill_breach.add_metric(
                        [name, breach], 1 if (status, reason) == ("False", breach) else 0
                    )
        if state.drill_time is not None:
            drill_time.add_metric([name], state.drill_time)
            drill_ok.add_metric([name], 1 if state.drill_passed else 0)
        if state.drill_rto_seconds is not None:
            drill_rto.add_metric([name], state.drill_rto_seconds)
        if state.drill_rto_objective_seconds is not None:
            drill_objective.add_metric([name], state.drill_rto_objective_seconds)
        upgraded = state.condition("Upgraded")
        if upgraded is not None:
            upgrade_failed.add_metric([name], 1 if upgraded[1] == "UpgradeFailed" else 0)
        if state.backup_time is not None:
            backup_time.add_metric([name], state.backup_time)
        if state.copy_time is not None:
            copy_time.add_metric([name], state.copy_time)
        if state.backup_size_bytes is not None:
            backup_size.add_metric([name], state.backup_size_bytes)
        if state.backup_duration_seconds is not None:
            backup_duration.add_metric([name], state.backup_duration_seconds)
        if state.verification_time is not None:
            verify_time.add_metric([name], state.verification_time)
        if state.verification_passed is not None:
            verify_ok.add_metric([name], 1 if state.verification_passed else 0)
        if state.backup_failures or state.condition("BackupHealthy") is not None:
            # From 0 for every tenant with backups, so increase() sees the first failure.
            failures.add_metric([name], state.backup_failures)
        drift.add_metric([name], state.drift_repairs)
        if state.hibernated:
            saved.add_metric([name], state.hibernation_saved_pod_seconds / 3600)
        probe = state.probe
        if probe is None:
            continue
        probe_up.add_metric([name], 1 if probe.up else 0)
        probe_duration.add_metric([name], probe.duration_seconds)
        for family, value in (
            (size, probe.database_size_bytes),
            (connections, probe.connections),
            (limit, probe.connection_limit),
            (longest, probe.longest_transaction_seconds),
            (overdue, probe.cron_overdue),
            (lag, probe.cron_max_lag_seconds),
        ):
            if value is not None:
                family.add_metric([name], value)
        for job_state, count in probe.queue_jobs or ():
            queue.add_metric([name, job_state], count)
    yield from (condition, held, rpo, copy_rpo, upgrade_failed, backup_time, copy_time)
    yield from (backup_size, backup_duration)
    yield from (drill_time, drill_ok, drill_rto, drill_objective, drill_breach)
    yield from (verify_time, verify_ok, failures, drift, saved, probe_up, probe_duration)
    yield from (size, connections, limit, longest, overdue, lag, queue)
    yield from (health_up, health_duration, login_up, login_duration, info)

    round_gauge = _gauge(
        "probe_round_duration_seconds",
        "Wall time of the last full round of tenant database probes.",
        (),
    )
    if round_seconds is not None:
        round_gauge.add_metric([], round_seconds)
    yield round_gauge
    round_count = _gauge(
        "probe_round_tenants", "Tenants probed in the last full round of probes.", ()
    )
    round_count.add_metric([], round_tenants)
    yield round_count


def _archive_metrics(archives: Mapping[str, ArchiveState], now: float) -> Iterator[Metric]:
    labels = ("server",)
    up = _gauge(
        "pitr_archive_up", "1 when the server's WAL archiver statistics could be read.", labels
    )
    last = _gauge(
        "pitr_archive_last_archived_timestamp_seconds",
        "When the server last archived a WAL segment (Unix time).",
        labels,
    )
    age = _gauge(
        "pitr_archive_last_archived_age_seconds",
        "Seconds since the server last archived a WAL segment (grows on an idle server too).",
        labels,
    )
    pending = _gauge(
        "pitr_archive_pending_segments",
        "WAL segments written in full but not archived yet: changes point-in-time recovery "
        "cannot reach (0 when the archiver keeps up).",
        labels,
    )
    failed = _gauge(
        "pitr_archive_failed_count",
        "Failed archive attempts since the server's statistics were last reset.",
        labels,
    )
    failing = _gauge(
        "pitr_archive_failing",
        "1 when the server's last archive attempt failed (no success since).",
        labels,
    )
    timeout = _gauge(
        "pitr_archive_timeout_seconds",
        "The server's archive_timeout: the longest a change waits to be archived (best RPO).",
        labels,
    )
    for server, state in sorted(archives.items()):
        up.add_metric([server], 1 if state.up else 0)
        if not state.up:
            continue
        if state.last_archived_epoch is not None:
            last.add_metric([server], state.last_archived_epoch)
            age.add_metric([server], max(0.0, now - state.last_archived_epoch))
        pending.add_metric([server], state.pending_segments)
        failed.add_metric([server], state.failed_count)
        failing.add_metric(
            [server],
            1
            if state.last_failed_epoch is not None
            and (
                state.last_archived_epoch is None
                or state.last_failed_epoch > state.last_archived_epoch
            )
            else 0,
        )
        if state.archive_timeout_seconds is not None:
            timeout.add_metric([server], state.archive_timeout_seconds)
    yield from (up, last, age, pending, failed, failing, timeout)


REGISTRY.register(_FleetCollector())


def render() -> bytes:
    """The exposition text of every metric: what a scrape returns. No I/O: it renders the
    operator's counters and a snapshot of the per-tenant state."""
    return generate_latest(REGISTRY)


def metric_names() -> set[str]:
    """Every sample name a scrape can contain (``x_total`` of counters, ``x_bucket``,
    ``x_sum`` and ``x_count`` of histograms), for the dashboard and alert-rule checks."""
    families: list[Metric] = []
    for collector in (
        RECONCILE_TOTAL,
        RECONCILE_ERRORS,
        RECONCILE_DURATION,
        BACKUPS_TOTAL,
        VERIFICATIONS_TOTAL,
        RESTORES_TOTAL,
        UPGRADES_TOTAL,
        UPGRADE_DURATION,
        UPGRADE_DOWNTIME,
        EXTERNAL_CALL_DURATION,
        EXTERNAL_CALL_ERRORS,
        PROVISIONING_TENANTS,
    ):
        families.extend(collector.describe())
    families.extend(_fleet_metrics({}, 0, None, 0))
    families.extend(_archive_metrics({}, 0.0))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        family.name + suffix for family in families for suffix in suffixes.get(family.type, ("",))
    }


def metrics_port() -> int:
    """The port of the metrics endpoint from ``ODOO_OPERATOR_METRICS_PORT`` (0: disabled)."""
    text = os.environ.get(METRICS_PORT_ENV, str(DEFAULT_METRICS_PORT))
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{METRICS_PORT_ENV} must be a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{METRICS_PORT_ENV} must be between 0 and 65535, got {port}")
    return port


def start_server(port: int) -> WSGIServer:
    """Serve the metrics (on any path, ``/metrics`` included) on ``port``, from threads of
    their own: a scrape never waits for the operator's event loop, nor the loop for it."""
    address = os.environ.get(METRICS_ADDR_ENV, "0.0.0.0")  # noqa: S104 - in a pod, the pod IP
    server, _ = start_http_server(port, addr=address, registry=REGISTRY)
    return server
