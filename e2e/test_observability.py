"""Metrics and logs of the operator, scraped while tenants are created, backed up, broken
and repaired on the real control plane and PostgreSQL.

The module runs its own operator with the metrics endpoint on a free port, the tenant
probes every second, a one-minute overdue threshold for scheduled actions and JSON logs.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client
from psycopg import conninfo, sql

from e2e.tenants import (
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    MetricsOperator,
    create_backup,
    eventually,
    make_instance,
    wait_ready,
)
from odoo_devstack import kubectl
from odoo_devstack.demo import start_operator
from odoo_devstack.operator_setup import register_servers
from odoo_devstack.ports import free_port

BACKUP_POLICY = {"schedule": "0 2 * * *", "rpo": "26h", "verify": "AfterEachBackup"}


@pytest.fixture(scope="module")
def observed(
    k8s: client.ApiClient,
    operator_kubeconfig: Path,
    postgres_dsn: str,
    redis_url: str,
    blob_connection_string: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MetricsOperator]:
    """The operator with metrics on a free port, probing tenants every second."""
    kubectl.install_crds(k8s, REPO / "crds")
    workdir = tmp_path_factory.mktemp("metrics-operator")
    config = register_servers(k8s, postgres_dsn, redis_url, workdir, blob_connection_string)
    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        # start_operator passes its own environment on to the operator.
        patch.setenv("ODOO_OPERATOR_PROBE_INTERVAL", "1")
        patch.setenv("ODOO_OPERATOR_PROBE_TIMEOUT", "3")
        patch.setenv("ODOO_OPERATOR_CRON_OVERDUE_THRESHOLD", "1m")
        patch.setenv("ODOO_OPERATOR_LOG_FORMAT", "json")
        process = start_operator(
            operator_kubeconfig, config, workdir / "operator.log", 5, metrics_port=port
        )
    operator = MetricsOperator(process, port)
    try:
        eventually(lambda: _answers(operator), "the metrics endpoint to answer", 30)
        yield operator
    finally:
        process.stop()


def _answers(operator: MetricsOperator) -> bool:
    try:
        operator.scrape()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def tenant(k8s: client.ApiClient, observed: MetricsOperator) -> Iterator[str]:
    """One Ready tenant with backups configured; deleted (data dropped) afterwards."""
    custom = client.CustomObjectsApi(k8s)
    name = f"obs-{uuid.uuid4().hex[:6]}"
    body = make_instance(name, backup=BACKUP_POLICY, deletionPolicy="Delete")
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    wait_ready(custom, name, observed.process)
    yield name
    custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def _tenant_login(k8s: client.ApiClient, postgres_dsn: str, name: str) -> str:
    data = client.CoreV1Api(k8s).read_namespaced_secret("odoo-database", f"odoo-{name}").data
    values = {k: base64.b64decode(v).decode() for k, v in data.items()}
    return conninfo.make_conninfo(
        postgres_dsn,
        user=values["username"],
        password=values["password"],
        dbname=values["database"],
    )


def _database(k8s: client.ApiClient, name: str) -> str:
    data = client.CoreV1Api(k8s).read_namespaced_secret("odoo-database", f"odoo-{name}").data
    return base64.b64decode(data["database"]).decode()


def test_a_ready_tenant_shows_in_the_phase_and_condition_gauges(
    observed: MetricsOperator, tenant: str
) -> None:
    def published() -> bool:
        return (
            observed.value(
                "odoo_operator_tenant_condition", instance=tenant, condition="Ready", status="True"
            )
            == 1
        )

    eventually(published, "the tenant's Ready condition in the metrics", 30)
    samples = observed.scrape()
    assert samples[("odoo_operator_tenants", frozenset({("phase", "Ready")}))] >= 1
    for condition in ("DatabaseReady", "RedisReady", "WorkloadReady", "IngressReady"):
        key = frozenset({("instance", tenant), ("condition", condition), ("status", "True")})
        assert samples[("odoo_operator_tenant_condition", key)] == 1, condition
    ok = frozenset({("trigger", "change"), ("result", "ok")})
    assert samples[("odoo_operator_reconcile_total", ok)] >= 1
    # The probe reaches the tenant's database as its own role.
    eventually(
        lambda: observed.value("odoo_operator_tenant_probe_up", instance=tenant) == 1,
        "the tenant's database probe to succeed",
        30,
    )
    assert (observed.value("odoo_operator_tenant_database_size_bytes", instance=tenant) or 0) > 0
    limit = observed.value("odoo_operator_tenant_database_connection_limit", instance=tenant)
    assert limit == 50


def test_a_ready_tenant_whose_pods_do_not_answer_is_reported_unreachable(
    observed: MetricsOperator, tenant: str
) -> None:
    # The local cluster's pods are simulated: Kubernetes calls them available, but nothing
    # listens behind the tenant's Service. The synthetic check must not be fooled by that.
    eventually(
        lambda: (
            observed.value(
                "odoo_operator_tenant_health_check_up", instance=tenant, target="service"
            )
            == 0
        ),
        "the synthetic check of the tenant's Service to report it down",
        30,
    )
    duration = observed.value(
        "odoo_operator_tenant_health_check_duration_seconds", instance=tenant, target="service"
    )
    assert duration is not None
    assert duration <= 3.5  # within the probe timeout (3 s)
    log = observed.process.log_path.read_text()
    assert f"synthetic check of tenant {tenant} through service failed" in log


def test_an_overdue_scheduled_action_raises_the_overdue_cron_gauge(
    k8s: client.ApiClient, postgres_dsn: str, observed: MetricsOperator, tenant: str
) -> None:
    with psycopg.connect(_tenant_login(k8s, postgres_dsn, tenant), autocommit=True) as db:
        db.execute("CREATE TABLE ir_cron (id serial PRIMARY KEY, active bool, nextcall timestamp)")
        db.execute(
            "INSERT INTO ir_cron (active, nextcall) VALUES"
            " (true, (now() AT TIME ZONE 'UTC') - interval '2 hours'),"  # overdue
            " (true, (now() AT TIME ZONE 'UTC') + interval '1 hour'),"  # not due yet
            " (false, (now() AT TIME ZONE 'UTC') - interval '2 hours')"  # inactive
        )
    eventually(
        lambda: observed.value("odoo_operator_tenant_cron_overdue", instance=tenant) == 1,
        "odoo_operator_tenant_cron_overdue to count the overdue scheduled action",
        30,
    )
    lag = observed.value("odoo_operator_tenant_cron_max_lag_seconds", instance=tenant) or 0
    assert 7000 < lag < 7600
    with psycopg.connect(_tenant_login(k8s, postgres_dsn, tenant), autocommit=True) as db:
        db.execute("UPDATE ir_cron SET nextcall = (now() AT TIME ZONE 'UTC') + interval '1 hour'")
    eventually(
        lambda: observed.value("odoo_operator_tenant_cron_overdue", instance=tenant) == 0,
        "the overdue count to fall back to 0 once the action ran",
        30,
    )


def test_a_database_the_operator_cannot_reach_marks_only_that_probe_down(
    k8s: client.ApiClient, postgres_dsn: str, observed: MetricsOperator, tenant: str
) -> None:
    database = _database(k8s, tenant)
    eventually(
        lambda: observed.value("odoo_operator_tenant_probe_up", instance=tenant) == 1,
        "the probe to be up first",
        30,
    )
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        # The owner is no superuser: a limit of 0 refuses its logins; the operator's own
        # admin connection (and so the tenant's conditions) are not affected.
        admin.execute(
            sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 0").format(sql.Identifier(database))
        )
        try:
            eventually(
                lambda: observed.value("odoo_operator_tenant_probe_up", instance=tenant) == 0,
                "the probe to report the database down",
                30,
            )
            assert observed.value("odoo_operator_tenant_cron_overdue", instance=tenant) is None
            assert (
                observed.value(
                    "odoo_operator_tenant_condition",
                    instance=tenant,
                    condition="Ready",
                    status="True",
                )
                == 1
            )
        finally:
            admin.execute(
                sql.SQL("ALTER DATABASE {} CONNECTION LIMIT -1").format(sql.Identifier(database))
            )
    eventually(
        lambda: observed.value("odoo_operator_tenant_probe_up", instance=tenant) == 1,
        "the probe to recover",
        30,
    )


def test_a_drifted_object_put_back_counts_as_a_drift_repair(
    k8s: client.ApiClient, observed: MetricsOperator, tenant: str
) -> None:
    before = observed.value("odoo_operator_drift_repairs_total", instance=tenant) or 0
    networking = client.NetworkingV1Api(k8s)
    namespace = f"odoo-{tenant}"
    policy = networking.list_namespaced_network_policy(namespace).items[0].metadata.name
    networking.delete_namespaced_network_policy(policy, namespace)
    eventually(
        lambda: (
            (observed.value("odoo_operator_drift_repairs_total", instance=tenant) or 0) > before
        ),
        "a drift pass to put the NetworkPolicy back and count it",
        60,
    )
    assert networking.read_namespaced_network_policy(policy, namespace) is not None


def test_a_backup_publishes_its_time_size_and_verification(
    k8s: client.ApiClient, observed: MetricsOperator, tenant: str
) -> None:
    custom = client.CustomObjectsApi(k8s)
    name = create_backup(custom, tenant)
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(custom.get_cluster_custom_object(GROUP, VERSION, "odoobackups", name))
        return (found.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    eventually(finished, f"OdooBackup {name} to finish", 120)
    assert found["status"]["phase"] == "Succeeded", found["status"]
    eventually(
        lambda: (
            observed.value("odoo_operator_backup_last_success_timestamp_seconds", instance=tenant)
            is not None
        ),
        "the last-backup timestamp metric",
        30,
    )
    stamp = observed.value("odoo_operator_backup_last_success_timestamp_seconds", instance=tenant)
    assert stamp is not None
    assert abs(stamp - time.time()) < 600
    size = observed.value("odoo_operator_backup_last_size_bytes", instance=tenant)
    assert size == found["status"]["sizeBytes"]
    assert observed.value("odoo_operator_backup_last_duration_seconds", instance=tenant) is not None
    assert observed.value("odoo_operator_backup_last_verification_success", instance=tenant) == 1
    assert observed.value("odoo_operator_backup_rpo_breach", instance=tenant) == 0
    assert (observed.value("odoo_operator_backups_total", result="succeeded") or 0) >= 1


def test_logs_are_json_lines_naming_the_instance_without_timer_noise(
    observed: MetricsOperator, tenant: str
) -> None:
    lines = [line for line in observed.process.log_path.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        if not line.startswith("{"):
            continue  # e.g. a Python warning written to stderr before logging is set up
        records.append(json.loads(line))
    assert len(records) >= 5
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    assert any(record.get("instance") == tenant for record in records)
    # Every line has a stable event name; a routine wait is not an error; no line is endless.
    assert all(record.get("event") for record in records)
    assert any(record.get("object") == f"odooinstance/{tenant}" for record in records)
    for record in records:
        if "failed temporarily" in record["message"]:
            assert record["level"] == "info", record
        assert len(record["message"]) <= 2_100, record["message"][:200]
    assert not any(
        record["message"].startswith("Timer ") and record["message"].endswith(" succeeded.")
        for record in records
    )
