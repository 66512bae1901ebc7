"""Metrics and the tenant probe loop, without any service."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
import redis.exceptions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError, ServiceRequestError
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic.exceptions import ConflictError, ForbiddenError, NotFoundError
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import PoolTimeout

from odoo_devstack.ports import free_port
from odoo_operator import metrics
from odoo_operator.backends.blobstore import BlobStore
from odoo_operator.backends.kube import KubeApiError, KubeClient
from odoo_operator.backends.postgres import DatabaseServerUnavailable, PostgresAdmin
from odoo_operator.backends.redis import RedisAdmin, RedisServerUnavailable
from odoo_operator.builders.postgres import SuperuserRequiredError, TenantDatabase
from odoo_operator.builders.redis_acl import TenantRedisUser
from odoo_operator.model.conditions import Condition
from odoo_operator.model.outcome import Outcome
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.observability import restores, tenant_probe

# Every label a series may carry: none names a request, a user, a backup or a message.
ALLOWED_LABELS = {"instance", "condition", "status", "state", "phase", "trigger", "result"}
ALLOWED_LABELS |= {"reason", "le"}
ALLOWED_LABELS |= {"system", "operation"}  # external calls: fixed sets, see metrics.py
ALLOWED_LABELS |= {"environment", "tenancy"}  # tenant_info: enums of the CRD


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


def _value(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def _scrape() -> dict[str, list[Any]]:
    """The exposition as the Prometheus parser reads it: sample name -> samples."""
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _spec(name: str) -> InstanceSpec:
    return InstanceSpec.from_resource(
        {
            "metadata": {"name": name},
            "spec": {"version": "18.0", "hosts": [f"{name}.example.com"]},
        }
    )


def _outcome(phase: str = "Ready", writes: int = 0, **conditions: tuple[str, str]) -> Outcome:
    outcome = Outcome(phase=phase, writes=writes)
    defaults = {"Ready": ("True", "Ready"), "DatabaseReady": ("True", "Provisioned")}
    for type_, (status, reason) in {**defaults, **conditions}.items():
        outcome.conditions.append(Condition(type_, status, reason, "m"))  # type: ignore[arg-type]
    return outcome


def _reconcile(name: str, outcome: Outcome, trigger: str = "change") -> None:
    with metrics.observe_reconcile(name, trigger) as seen:
        seen.record(outcome, _spec(name))


def test_a_reconcile_is_counted_timed_and_its_conditions_rendered() -> None:
    before = _value("odoo_operator_reconcile_total", trigger="change", result="ok") or 0
    _reconcile("acme", _outcome(BackupHealthy=("True", "WithinRPO")))
    assert _value("odoo_operator_reconcile_total", trigger="change", result="ok") == before + 1
    assert (_value("odoo_operator_reconcile_duration_seconds_count", trigger="change") or 0) >= 1
    assert _value("odoo_operator_tenants", phase="Ready") == 1
    assert _value("odoo_operator_tenants", phase="Stalled") == 0
    ready = {
        status: _value(
            "odoo_operator_tenant_condition", instance="acme", condition="Ready", status=status
        )
        for status in ("True", "False", "Unknown")
    }
    assert ready == {"True": 1, "False": None, "Unknown": None}  # the current status only
    assert _value("odoo_operator_backup_rpo_breach", instance="acme") == 0
    assert _value("odoo_operator_reconcile_in_flight") == 0


def test_a_tenant_held_at_zero_pods_is_marked_for_the_not_ready_alert_to_skip() -> None:
    _reconcile("acme", _outcome(phase="Suspended", Ready=("False", "Suspended")))
    assert _value("odoo_operator_tenant_held", instance="acme", phase="Suspended") == 1
    _reconcile("acme", _outcome())
    assert _value("odoo_operator_tenant_held", instance="acme", phase="Suspended") is None


def test_stalled_and_failing_passes_are_told_apart() -> None:
    stalled = _value("odoo_operator_reconcile_total", trigger="change", result="stalled") or 0
    errors = _value("odoo_operator_reconcile_total", trigger="drift", result="error") or 0
    by_reason = _value("odoo_operator_reconcile_errors_total", reason="RuntimeError") or 0
    _reconcile("acme", _outcome(phase="Stalled", Ready=("False", "InvalidConfiguration")))
    with pytest.raises(RuntimeError), metrics.observe_reconcile("acme", "drift"):
        raise RuntimeError("the API server went away")
    assert _value("odoo_operator_reconcile_total", trigger="change", result="stalled") == (
        stalled + 1
    )
    assert _value("odoo_operator_reconcile_total", trigger="drift", result="error") == errors + 1
    assert _value("odoo_operator_reconcile_errors_total", reason="RuntimeError") == by_reason + 1
    assert _value("odoo_operator_reconcile_in_flight") == 0


def test_drift_repairs_count_writes_of_drift_passes_only() -> None:
    _reconcile("acme", _outcome(writes=5), trigger="change")
    assert _value("odoo_operator_drift_repairs_total", instance="acme") == 0
    _reconcile("acme", _outcome(writes=2), trigger="drift")
    _reconcile("acme", _outcome(writes=1), trigger="drift")
    assert _value("odoo_operator_drift_repairs_total", instance="acme") == 3


def test_rpo_breach_and_failed_upgrade_come_from_the_condition_reasons() -> None:
    _reconcile(
        "late",
        _outcome(BackupHealthy=("False", "RPOExceeded"), Upgraded=("False", "UpgradeFailed")),
    )
    _reconcile("fine", _outcome(BackupHealthy=("False", "BackupFailed"), Upgraded=("True", "x")))
    assert _value("odoo_operator_backup_rpo_breach", instance="late") == 1
    assert _value("odoo_operator_backup_rpo_breach", instance="fine") == 0
    assert _value("odoo_operator_tenant_upgrade_failed", instance="late") == 1
    assert _value("odoo_operator_tenant_upgrade_failed", instance="fine") == 0


def test_the_second_regions_copy_has_its_age_and_its_own_rpo_breach() -> None:
    copied = _outcome(BackupHealthy=("False", "CopyRPOExceeded"))
    copied.fields["lastCopiedBackup"] = {"id": "x", "time": "2026-03-01T02:05:00Z"}
    _reconcile("copied", copied)
    _reconcile("primary-late", _outcome(BackupHealthy=("False", "RPOExceeded")))
    assert _value("odoo_operator_backup_copy_rpo_breach", instance="copied") == 1
    assert _value("odoo_operator_backup_rpo_breach", instance="copied") == 0
    assert _value("odoo_operator_backup_copy_rpo_breach", instance="primary-late") == 0
    assert _value("odoo_operator_backup_last_copy_timestamp_seconds", instance="copied") == (
        metrics._epoch("2026-03-01T02:05:00Z")
    )
    assert (
        _value("odoo_operator_backup_last_copy_timestamp_seconds", instance="primary-late") is None
    )


def test_backups_record_the_newest_success_and_count_each_outcome_once() -> None:
    _reconcile("acme", _outcome())
    succeeded = _value("odoo_operator_backups_total", result="succeeded") or 0
    failed = _value("odoo_operator_backups_total", result="failed") or 0
    newer = {
        "phase": "Succeeded",
        "startedAt": "2026-03-01T02:00:00Z",
        "completedAt": "2026-03-01T02:01:30Z",
        "sizeBytes": 4096,
        "verification": {"result": "Passed", "checkedAt": "2026-03-01T02:03:00Z"},
    }
    metrics.record_backup("acme", None, newer)
    # A resumed handler re-reports a finished backup, and an older one arrives late.
    metrics.record_backup("acme", "Succeeded", newer)
    metrics.record_backup(
        "acme",
        None,
        {"phase": "Succeeded", "completedAt": "2026-02-01T02:00:00Z", "sizeBytes": 1},
    )
    metrics.record_backup("acme", "Running", {"phase": "Failed", "message": "boom"})
    metrics.record_backup("acme", "Failed", {"phase": "Failed", "message": "boom"})
    metrics.record_backup("unknown", None, {"phase": "Failed"})  # no series for it
    assert _value("odoo_operator_backups_total", result="succeeded") == succeeded + 2
    assert _value("odoo_operator_backups_total", result="failed") == failed + 2
    assert _value("odoo_operator_backup_last_success_timestamp_seconds", instance="acme") == (
        metrics._epoch("2026-03-01T02:01:30Z")
    )
    assert _value("odoo_operator_backup_last_size_bytes", instance="acme") == 4096
    assert _value("odoo_operator_backup_last_duration_seconds", instance="acme") == 90
    assert _value("odoo_operator_backup_last_verification_success", instance="acme") == 1
    assert _value("odoo_operator_backup_failures_total", instance="acme") == 1
    assert _value("odoo_operator_backup_failures_total", instance="unknown") is None


def test_a_failed_verification_reported_by_the_condition_sets_the_result_to_zero() -> None:
    outcome = _outcome(BackupHealthy=("False", "VerificationFailed"))
    outcome.fields = {
        "lastBackup": {"time": "2026-03-02T02:00:00Z", "sizeBytes": 10},
        "lastVerifiedBackup": {"time": "2026-03-01T02:00:00Z"},
    }
    _reconcile("acme", outcome)
    assert _value("odoo_operator_backup_last_verification_success", instance="acme") == 0
    assert _value("odoo_operator_backup_last_size_bytes", instance="acme") == 10


def test_upgrades_are_counted_by_outcome_with_duration_and_downtime() -> None:
    done = _value("odoo_operator_upgrades_total", result="succeeded") or 0
    rolled = _value("odoo_operator_upgrades_total", result="rolled_back") or 0
    downtime = _value("odoo_operator_upgrade_downtime_seconds_sum") or 0
    metrics.record_upgrade_step(
        "acme",
        "health",
        {
            "step": "done",
            "startedAt": "2026-03-01T02:00:00Z",
            "completedAt": "2026-03-01T02:10:00Z",
            "downtimeSeconds": 42.5,
        },
    )
    metrics.record_upgrade_step("acme", "rollback", {"step": "failed"})
    metrics.record_upgrade_step("acme", "copy", {"step": "migrate"})  # not final: not counted
    assert _value("odoo_operator_upgrades_total", result="succeeded") == done + 1
    assert _value("odoo_operator_upgrades_total", result="rolled_back") == rolled + 1
    assert _value("odoo_operator_upgrade_downtime_seconds_sum") == downtime + 42.5


def test_restores_count_once_when_seen_finishing() -> None:
    before = _value("odoo_operator_restores_total", result="succeeded") or 0
    restores.restore_seen("ADDED", {"metadata": {"name": "old"}, "status": {"phase": "Succeeded"}})
    restores.restore_seen("ADDED", {"metadata": {"name": "r1"}, "status": {"phase": "Pending"}})
    restores.restore_seen(
        "MODIFIED", {"metadata": {"name": "r1"}, "status": {"phase": "Succeeded"}}
    )
    restores.restore_seen(
        "MODIFIED", {"metadata": {"name": "r1"}, "status": {"phase": "Succeeded"}}
    )
    assert _value("odoo_operator_restores_total", result="succeeded") == before + 1


def test_a_deleted_tenant_leaves_no_series() -> None:
    _reconcile("gone", _outcome(BackupHealthy=("True", "WithinRPO")))
    metrics.record_probe("gone", metrics.ProbeResult(up=True, duration_seconds=0.1))
    assert any(s.labels.get("instance") == "gone" for v in _scrape().values() for s in v)
    metrics.forget_instance("gone")
    assert not any(s.labels.get("instance") == "gone" for v in _scrape().values() for s in v)
    assert metrics.probe_targets() == {}


def test_the_exposition_parses_and_carries_only_bounded_labels() -> None:
    _reconcile("acme", _outcome(BackupHealthy=("True", "WithinRPO")))
    metrics.record_probe(
        "acme",
        metrics.ProbeResult(
            up=True,
            duration_seconds=0.02,
            database_size_bytes=8e6,
            connections=3,
            connection_limit=50,
            longest_transaction_seconds=1.5,
            cron_overdue=2,
            cron_max_lag_seconds=3600,
            queue_jobs=(("pending", 4), ("enqueued", 0), ("started", 1), ("failed", 7)),
        ),
    )
    samples = _scrape()
    assert set(samples) <= metrics.metric_names()
    for name, values in samples.items():
        assert name.startswith(metrics.PREFIX)
        for sample in values:
            assert set(sample.labels) <= ALLOWED_LABELS, (name, sample.labels)
    assert _value("odoo_operator_tenant_cron_overdue", instance="acme") == 2
    assert _value("odoo_operator_tenant_queue_jobs", instance="acme", state="failed") == 7
    assert _value("odoo_operator_tenant_database_connection_limit", instance="acme") == 50
    assert _value("odoo_operator_tenant_probe_up", instance="acme") == 1


def test_the_endpoint_serves_the_registry_over_http() -> None:
    _reconcile("acme", _outcome())
    port = free_port()
    server = metrics.start_server(port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "odoo_operator_tenant_condition" in names
    assert 'odoo_operator_tenants{phase="Ready"} 1.0' in text


def test_the_metrics_port_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.METRICS_PORT_ENV, raising=False)
    assert metrics.metrics_port() == 9090
    monkeypatch.setenv(metrics.METRICS_PORT_ENV, "0")
    assert metrics.metrics_port() == 0
    monkeypatch.setenv(metrics.METRICS_PORT_ENV, "http")
    with pytest.raises(ValueError, match="port number"):
        metrics.metrics_port()


def test_probe_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tenant_probe.INTERVAL_ENV, "2")
    monkeypatch.setenv(tenant_probe.CONCURRENCY_ENV, "3")
    monkeypatch.setenv(tenant_probe.CRON_THRESHOLD_ENV, "1h30m")
    settings = tenant_probe.ProbeSettings.from_environment()
    assert (settings.interval, settings.concurrency) == (2.0, 3)
    assert settings.cron_threshold_seconds == 5400
    monkeypatch.setenv(tenant_probe.CRON_THRESHOLD_ENV, "60")
    assert tenant_probe.ProbeSettings.from_environment().cron_threshold_seconds == 60


def _calls(system: str, operation: str) -> float:
    return (
        _value(
            "odoo_operator_external_call_duration_seconds_count",
            system=system,
            operation=operation,
        )
        or 0
    )


def _errors(system: str, operation: str, reason: str | None = None) -> float:
    """Failed calls counted with ``reason``, or with any reason."""
    reasons = metrics.CALL_ERROR_REASONS if reason is None else (reason,)
    return sum(
        _value(
            "odoo_operator_external_call_errors_total",
            system=system,
            operation=operation,
            reason=name,
        )
        or 0
        for name in reasons
    )


def _caused_by(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def test_an_external_call_is_timed_under_its_system_and_operation() -> None:
    # Counters are process-wide: earlier tests of the session may have counted calls too.
    calls, errors = _calls("redis", "acl_getuser"), _errors("redis", "acl_getuser")
    spent = _value(
        "odoo_operator_external_call_duration_seconds_sum", system="redis", operation="acl_getuser"
    )
    with metrics.observe_call("redis", "acl_getuser"):
        time.sleep(0.02)
    assert _calls("redis", "acl_getuser") == calls + 1
    assert (
        _value(
            "odoo_operator_external_call_duration_seconds_sum",
            system="redis",
            operation="acl_getuser",
        )
        or 0
    ) >= (spent or 0) + 0.02
    assert _errors("redis", "acl_getuser") == errors
    samples = _scrape()
    assert set(samples) <= metrics.metric_names()
    assert "odoo_operator_external_call_duration_seconds_bucket" in samples


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (TimeoutError(), "timeout"),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), "timeout"),
        (PoolTimeout("couldn't get a connection after 30.00 sec"), "timeout"),
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), "timeout"),
        (ApiException(status=504), "timeout"),
        (ConnectionRefusedError(111, "Connection refused"), "unavailable"),
        (redis.exceptions.ConnectionError("Error 111 connecting to redis:6379"), "unavailable"),
        (psycopg.OperationalError("connection to server failed"), "unavailable"),
        (ServiceRequestError("cannot connect"), "unavailable"),
        (ApiException(status=503), "unavailable"),
        (ApiException(status=429), "unavailable"),
        (redis.exceptions.AuthenticationError("invalid username-password pair"), "refused"),
        (redis.exceptions.NoPermissionError("NOPERM no permissions"), "refused"),
        (ForbiddenError(ApiException(status=403)), "refused"),
        (psycopg.errors.InsufficientPrivilege("permission denied"), "refused"),
        (NotFoundError(ApiException(status=404)), "not_found"),
        (ResourceNotFoundError(message="The specified blob does not exist."), "not_found"),
        (LookupError("role acme does not exist"), "not_found"),
        (ConflictError(ApiException(status=409)), "conflict"),
        (ResourceExistsError(message="The specified container already exists."), "conflict"),
        (KubeApiError("applying Job t/x", {"code": 422, "reason": "Invalid"}), "other"),
        (ValueError("a password is required"), "other"),
        (KeyError("spec"), "other"),
        # The backends' own errors are classified by the client error they were raised from.
        (_caused_by(DatabaseServerUnavailable("pg:5432 is unavailable"), PoolTimeout()), "timeout"),
        (
            _caused_by(SuperuserRequiredError("x"), psycopg.errors.InsufficientPrivilege()),
            "refused",
        ),
        (
            _caused_by(RedisServerUnavailable("x"), redis.exceptions.ConnectionError()),
            "unavailable",
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_a_failed_external_call_is_counted_by_a_bounded_reason_and_re_raised(
    error: Exception, reason: str
) -> None:
    calls = _calls("postgresql", "ensure")
    before = _errors("postgresql", "ensure", reason)
    others = _errors("postgresql", "ensure") - before
    with pytest.raises(type(error)) as raised, metrics.observe_call("postgresql", "ensure"):
        raise error
    assert raised.value is error
    assert metrics.call_error_reason(error) == reason
    assert _errors("postgresql", "ensure", reason) == before + 1
    assert _errors("postgresql", "ensure") - (before + 1) == others  # once, one reason
    assert _calls("postgresql", "ensure") == calls + 1  # failed calls are timed too


def test_external_call_labels_stay_within_the_fixed_sets() -> None:
    with metrics.observe_call("kubernetes", "watch acme/odoo-web"):  # not an operation
        pass
    with (
        pytest.raises(RuntimeError),
        metrics.observe_call("blob", "backups/acme/2026-03-01.dump"),
    ):
        raise RuntimeError("acme.blob.core.windows.net said no")
    with pytest.raises(ValueError, match="unknown external system"):
        metrics.observe_call("ftp", "get")  # type: ignore[arg-type]
    assert _calls("kubernetes", "other") >= 1
    assert _errors("blob", "other", "other") >= 1
    allowed: dict[str, set[str]] = {
        system: {*operations, metrics.OTHER_OPERATION}
        for system, operations in metrics.EXTERNAL_OPERATIONS.items()
    }
    seen = 0
    for family in metrics.REGISTRY.collect():
        if not family.name.startswith("odoo_operator_external_call_"):
            continue
        for sample in family.samples:
            seen += 1
            assert sample.labels["operation"] in allowed[sample.labels["system"]], sample
            assert sample.labels.get("reason", "other") in metrics.CALL_ERROR_REASONS, sample
            assert set(sample.labels) <= {"system", "operation", "reason", "le"}
    assert seen
    assert "acme" not in metrics.render().decode()


async def test_a_cancelled_call_or_the_end_of_a_stream_is_not_an_error() -> None:
    calls, errors = _calls("blob", "download"), _errors("blob", "download")

    async def slow_download() -> None:
        with metrics.observe_call("blob", "download"):
            await asyncio.sleep(30)

    task = asyncio.create_task(slow_download())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(StopAsyncIteration), metrics.observe_call("blob", "download"):
        raise StopAsyncIteration
    assert _calls("blob", "download") == calls + 2
    assert _errors("blob", "download") == errors


class _FakeDynamic:
    """The dynamic client's surface KubeClient uses; each verb answers or raises."""

    def __init__(self, **verbs: Any) -> None:
        self.resources = self
        self._verbs = verbs

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        if "api_version" in kwargs:  # resources.get: the resource lookup
            return SimpleNamespace(kind=kwargs["kind"], subresources={})
        return await self._answer("get")

    async def server_side_apply(self, *args: Any, **kwargs: Any) -> Any:
        return await self._answer("server_side_apply")

    async def delete(self, *args: Any, **kwargs: Any) -> Any:
        return await self._answer("delete")

    async def _answer(self, verb: str) -> Any:
        answer = self._verbs[verb]
        if isinstance(answer, Exception):
            raise answer
        return SimpleNamespace(to_dict=lambda: answer)


def _kube(**verbs: Any) -> KubeClient:
    kube = KubeClient(api=None)  # type: ignore[arg-type]
    kube._dynamic = _FakeDynamic(**verbs)  # type: ignore[assignment]
    return kube


async def test_a_kubernetes_object_that_is_not_there_is_an_answer_not_an_error() -> None:
    reads, deletes = _calls("kubernetes", "get"), _calls("kubernetes", "delete")
    failed = _errors("kubernetes", "get") + _errors("kubernetes", "delete")
    kube = _kube(
        get=NotFoundError(ApiException(status=404)), delete=NotFoundError(ApiException(status=404))
    )
    assert await kube.get("v1", "ConfigMap", "odoo", "acme") is None
    assert await kube.delete("v1", "ConfigMap", "odoo", "acme") is False
    assert (_calls("kubernetes", "get"), _calls("kubernetes", "delete")) == (reads + 1, deletes + 1)
    assert _errors("kubernetes", "get") + _errors("kubernetes", "delete") == failed


async def test_a_refused_kubernetes_request_counts_raised_or_handed_back() -> None:
    refused = _errors("kubernetes", "apply", "refused")
    kube = _kube(
        get=NotFoundError(ApiException(status=404)),
        server_side_apply=ForbiddenError(ApiException(status=403)),
    )
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "t"}}
    with pytest.raises(ForbiddenError):
        await kube.apply(desired)
    assert _errors("kubernetes", "apply", "refused") == refused + 1
    status = {"kind": "Status", "status": "Failure", "code": 403, "reason": "Forbidden"}
    kube = _kube(get=NotFoundError(ApiException(status=404)), server_side_apply=status)
    with pytest.raises(KubeApiError, match="403 Forbidden"):
        await kube.apply(desired)
    assert _errors("kubernetes", "apply", "refused") == refused + 2
    assert kube.writes == 1  # as before: a write was sent


async def test_postgres_admin_sessions_are_timed_by_method_and_count_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = PostgresAdmin("host=pg.example port=5432 user=admin password=secret dbname=postgres")

    @contextlib.asynccontextmanager
    async def no_connection() -> AsyncIterator[Any]:
        raise PoolTimeout("couldn't get a connection after 30.00 sec")
        yield  # a generator, for asynccontextmanager

    async def why() -> str:
        return "connection refused"

    monkeypatch.setattr(admin._pool, "connection", no_connection)
    monkeypatch.setattr(admin, "_why_no_connection", why)
    calls, timeouts = _calls("postgresql", "observe"), _errors("postgresql", "observe", "timeout")
    with pytest.raises(DatabaseServerUnavailable):
        await admin.observe(TenantDatabase("acme", "acme", 10, "acme"))
    assert _calls("postgresql", "observe") == calls + 1
    assert _errors("postgresql", "observe", "timeout") == timeouts + 1


async def test_redis_commands_are_timed_by_name_and_count_failures() -> None:
    class Unreachable:
        async def execute_command(self, *args: Any) -> Any:
            raise redis.exceptions.ConnectionError("Error 111 connecting to redis.example:6379")

    admin = RedisAdmin("redis://admin:secret@redis.example:6379/0")
    admin._client = Unreachable()  # type: ignore[assignment]
    calls = _calls("redis", "acl_getuser")
    unavailable = _errors("redis", "acl_getuser", "unavailable")
    with pytest.raises(RedisServerUnavailable):
        await admin.observe(TenantRedisUser("acme", "odoo:acme:"))
    assert _calls("redis", "acl_getuser") == calls + 1
    assert _errors("redis", "acl_getuser", "unavailable") == unavailable + 1


async def test_blob_calls_are_timed_by_operation_and_a_missing_blob_counts_as_not_found() -> None:
    class Container:
        container_name = "backups"

        async def delete_blob(self, name: str) -> None:
            raise ResourceNotFoundError(message="The specified blob does not exist.")

    store = BlobStore(Container(), account="acct")  # type: ignore[arg-type]
    calls, missing = _calls("blob", "delete"), _errors("blob", "delete", "not_found")
    assert await store.delete("acme/2026-03-01/db.dump") is False
    assert _calls("blob", "delete") == calls + 1
    assert _errors("blob", "delete", "not_found") == missing + 1


class _Locks:
    # No server with a WAL archive: the round checks none.
    config = SimpleNamespace(postgres_servers={})

    def tenant_lock(self, name: str) -> asyncio.Lock:
        return asyncio.Lock()


async def test_a_slow_tenant_database_marks_only_that_tenant_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = [f"t{number}" for number in range(6)]
    for name in names:
        _reconcile(name, _outcome())
    _reconcile("held", _outcome(phase="Maintenance"))
    running = 0
    most = 0

    async def fake_probe(conninfo: str, settings: Any) -> metrics.ProbeResult:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(30 if conninfo == "t3" else 0.01)
        finally:
            running -= 1
        return metrics.ProbeResult(up=True, duration_seconds=0.01, cron_overdue=0)

    async def conninfo_of(self: Any, name: str, spec: InstanceSpec) -> str:
        return name

    monkeypatch.setattr(tenant_probe, "probe_database", fake_probe)
    monkeypatch.setattr(tenant_probe.TenantProber, "_conninfo_of", conninfo_of)
    settings = tenant_probe.ProbeSettings(interval=60, timeout=0.3, concurrency=2)
    prober = tenant_probe.TenantProber(_Locks(), settings)  # type: ignore[arg-type]
    started = time.monotonic()
    assert await prober.run_round() == len(names)  # "held" is in maintenance: skipped
    assert time.monotonic() - started < 5
    assert most <= 2
    up = {name: _value("odoo_operator_tenant_probe_up", instance=name) for name in names}
    assert up == {name: 0 if name == "t3" else 1 for name in names}
    assert _value("odoo_operator_tenant_probe_up", instance="held") is None
    assert _value("odoo_operator_tenant_cron_overdue", instance="t3") is None
    assert _value("odoo_operator_probe_round_tenants") == len(names)


def test_each_tenant_is_labelled_with_its_environment_and_tenancy() -> None:
    spec = InstanceSpec.from_resource(
        {
            "metadata": {"name": "stage"},
            "spec": {"version": "18.0", "hosts": ["s.example.com"], "environment": "staging"},
        }
    )
    metrics.record_outcome("stage", Outcome(phase="Ready"), spec)
    text = metrics.render().decode()
    assert (
        'odoo_operator_tenant_info{environment="staging",instance="stage",tenancy="shared"} 1.0'
        in text
    )


def test_admission_answers_are_timed_by_webhook_and_decision() -> None:
    class AdmissionError(Exception):  # the name Kopf's refusal has
        pass

    def count(decision: str) -> float:
        name = "odoo_operator_admission_duration_seconds_count"
        return _value(name, webhook="validate-instance", decision=decision) or 0

    before = {d: count(d) for d in ("allowed", "refused", "error")}
    with metrics.observe_admission("validate-instance"):
        pass
    with pytest.raises(AdmissionError), metrics.observe_admission("validate-instance"):
        raise AdmissionError("spec.hosts: taken")
    with pytest.raises(KeyError), metrics.observe_admission("validate-instance"):
        raise KeyError("spec")
    assert {d: count(d) - before[d] for d in before} == {"allowed": 1, "refused": 1, "error": 1}


def test_a_wal_archive_is_reported_with_its_age_waiting_segments_and_failures() -> None:
    metrics.reset()
    metrics.record_archive(
        "main",
        metrics.ArchiveState(
            up=True,
            last_archived_epoch=1_000.0,
            pending_segments=3,
            failed_count=2,
            last_failed_epoch=1_100.0,
            archive_timeout_seconds=60.0,
        ),
    )
    metrics.record_archive("dedicated", metrics.ArchiveState(up=False))
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in metrics._archive_metrics(metrics._STATE.archives, 1_250.0)
        for sample in family.samples
    }
    main = (("server", "main"),)
    assert samples[("odoo_operator_pitr_archive_up", main)] == 1
    assert samples[("odoo_operator_pitr_archive_last_archived_age_seconds", main)] == 250
    assert samples[("odoo_operator_pitr_archive_pending_segments", main)] == 3
    # The last attempt failed after the last success: failing.
    assert samples[("odoo_operator_pitr_archive_failing", main)] == 1
    assert samples[("odoo_operator_pitr_archive_timeout_seconds", main)] == 60
    assert samples[("odoo_operator_pitr_archive_up", (("server", "dedicated"),))] == 0
    assert (
        "odoo_operator_pitr_archive_pending_segments",
        (("server", "dedicated"),),
    ) not in samples
    metrics.reset()
