"""Metrics, the tenant probe loop and the log formats, without any service."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from odoo_operator import logs, metrics
from odoo_operator.devcluster.ports import free_port
from odoo_operator.model.conditions import Condition
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.observability import restores, tenant_probe
from odoo_operator.reconcile.instance import Outcome

# Every label a series may carry: none names a request, a user, a backup or a message.
ALLOWED_LABELS = {"instance", "condition", "status", "state", "phase", "trigger", "result"}
ALLOWED_LABELS |= {"reason", "le"}


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


class _Locks:
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


def _record(message: str, name: str = "kopf.objects", **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_time_level_logger_message_and_the_instance() -> None:
    formatter = logs.JsonFormatter()
    ref = {"kind": "OdooInstance", "name": "acme", "apiVersion": "odoo.tenantops.io/v1alpha1"}
    line = json.loads(formatter.format(_record("Handler 'x' succeeded.", k8s_ref=ref)))
    assert line["level"] == "info"
    assert line["logger"] == "kopf.objects"
    assert line["message"] == "Handler 'x' succeeded."
    assert line["instance"] == "acme"
    assert line["time"].endswith("+00:00")
    backup = json.loads(
        formatter.format(_record("done", k8s_ref={"kind": "OdooBackup", "name": "acme-1"}))
    )
    assert backup["object"] == "OdooBackup/acme-1"
    assert "instance" not in backup
    with logs.log_context(instance="acme", reconcile="beef"):
        inside = json.loads(formatter.format(_record("re-keyed", name="odoo_operator.x")))
    assert (inside["instance"], inside["reconcile"]) == ("acme", "beef")


def test_kopf_timer_successes_are_dropped_and_everything_else_kept() -> None:
    drop = logs.DropTimerSuccess()
    assert not drop.filter(_record("Timer 'repair_drift' succeeded."))
    assert drop.filter(_record("Handler 'reconcile_on_change' succeeded."))
    failed = _record("Timer 'repair_drift' failed with an exception. Will retry.")
    failed.levelno = logging.ERROR
    assert drop.filter(failed)
    assert drop.filter(_record("Timer 'repair_drift' succeeded.", name="odoo_operator.x"))
