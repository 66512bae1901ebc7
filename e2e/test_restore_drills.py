"""Restore drills on the local stack's simulated pods: scheduling, isolation, failure, cleanup.

The instance's drill schedule creates a drill of its newest good backup; the drill's
temporary tenant is provisioned network-isolated and the backup restored into it. KWOK's
pods never serve HTTP, so the drill fails at its timeout (shortened here), and must still
remove its tenant with the namespace and database, and tell the instance, which reports
``RestoreDrillPassed=False``. That a drill tenant serves real Odoo with the books intact is
proven in ``conformance/test_backup_restore.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from azure.storage.blob import BlobServiceClient
from kubernetes import client
from kubernetes.client import ApiException

from e2e.tenants import (
    BACKUPS,
    GROUP,
    PLURAL,
    RESTORES,
    VERSION,
    create_backup,
    delete_quietly,
    describe_events,
    eventually,
    make_instance,
    wait_finished,
    wait_gone,
    wait_ready,
)
from odoo_devstack.operator_setup import BACKUP_CONTAINER
from odoo_devstack.processes import ManagedProcess

# Drift passes (which run the drill schedule) every 5 s; a drill that has not served in
# 90 s fails: enough for a KWOK tenant to be provisioned and restored into on a busy
# machine, short enough for the suite.
OPERATOR_DRIFT_INTERVAL_SECONDS = 5.0
DRILL_TIMEOUT_SECONDS = 90
OPERATOR_ENVIRONMENT = {"ODOO_OPERATOR_DRILL_TIMEOUT": str(DRILL_TIMEOUT_SECONDS)}
INSTANCE = "drl-acme"
T = TypeVar("T")


def _until(find: Callable[[], T | None], what: str, timeout: float) -> T:
    """What ``find`` returns once it returns something (polled), else fail naming ``what``."""
    found: list[T] = []

    def check() -> bool:
        value = find()
        if value:
            found.append(value)
        return bool(value)

    eventually(check, what, timeout)
    return found[-1]


def _drills(custom: client.CustomObjectsApi, instance: str) -> list[dict[str, Any]]:
    listed: Any = custom.list_cluster_custom_object(
        GROUP, VERSION, RESTORES, label_selector=f"odoo.tenantops.io/instance={instance}"
    )
    return [item for item in listed["items"] if item["spec"].get("drill")]


def _restore(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    found: Any = custom.get_cluster_custom_object(GROUP, VERSION, RESTORES, name)
    return dict(found)


def _journal(connection_string: str, instance: str) -> list[dict[str, Any]]:
    service = BlobServiceClient.from_connection_string(connection_string)
    blob = service.get_blob_client(BACKUP_CONTAINER, f"journal/{instance}.jsonl")
    data: bytes = blob.download_blob().readall()
    return [json.loads(line) for line in data.split(b"\n") if line]


def _database_exists(postgres_dsn: str, name: str) -> bool:
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        row = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def _namespace_exists(k8s: client.ApiClient, name: str) -> bool:
    try:
        client.CoreV1Api(k8s).read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_a_scheduled_drill_that_never_serves_fails_at_its_timeout_and_leaves_nothing_behind(
    k8s: client.ApiClient,
    operator: ManagedProcess,
    postgres_dsn: str,
    blob_connection_string: str,
) -> None:
    custom = client.CustomObjectsApi(k8s)
    policy = {"verify": "Never", "rto": "30m", "drill": {"schedule": "* * * * *"}}
    custom.create_cluster_custom_object(
        GROUP, VERSION, PLURAL, make_instance(INSTANCE, backup=policy, deletionPolicy="Delete")
    )
    try:
        wait_ready(custom, INSTANCE, operator)
        backup = create_backup(custom, INSTANCE)
        assert wait_finished(custom, BACKUPS, backup)["status"]["phase"] == "Succeeded"

        # The next minute of the schedule creates a drill of that backup; one is enough.
        scheduled = _until(lambda: _drills(custom, INSTANCE), "a scheduled drill", 120)
        custom.patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, INSTANCE, {"spec": {"backup": {"drill": {"suspend": True}}}}
        )
        drill = scheduled[0]["metadata"]["name"]
        assert drill.startswith(f"{INSTANCE}-drill-"), drill
        assert scheduled[0]["spec"] == {"backup": backup, "drill": True}

        # Restored into, it waits for its tenant to serve; that tenant is isolated: no route,
        # and no NetworkPolicy letting the ingress controller in.
        def waiting_to_serve() -> dict[str, Any] | None:
            status = _restore(custom, drill).get("status") or {}
            assert status.get("phase") != "Failed", status
            return status if status.get("step") == "serving" else None

        serving = _until(waiting_to_serve, "the drill to wait for its tenant", 90)
        assert (serving["mode"], serving["neutralized"]) == ("Drill", True), serving
        assert serving["drill"]["restoredAt"], serving
        assert "safetyBackup" not in serving, serving
        tenant = serving["drill"]["instance"]
        namespace = f"odoo-{tenant}"
        listed_policies: Any = client.NetworkingV1Api(k8s).list_namespaced_network_policy(namespace)
        policies = {p.metadata.name for p in listed_policies.items}
        assert {"default-deny", "allow-operator-health-check"} <= policies, policies
        assert "allow-ingress-controller" not in policies, policies
        routes: Any = custom.list_namespaced_custom_object(
            "traefik.io", "v1alpha1", namespace, "ingressroutes"
        )
        assert routes["items"] == [], routes["items"]

        # KWOK's pods never answer: the drill fails at its timeout and removes its tenant.
        done = wait_finished(custom, RESTORES, drill, DRILL_TIMEOUT_SECONDS + 60)
        status = done["status"]
        assert status["phase"] == "Failed", status
        reasons = {c["type"]: c["reason"] for c in status["conditions"]}
        assert reasons["Failed"] == "DrillTimedOut", status
        assert status["drill"]["result"] == "Failed", status
        assert status["drill"]["removedAt"], status
        assert "step serving" in status["message"], status["message"]
        wait_gone(custom, PLURAL, tenant, 120)
        database = f"odoo_{tenant.replace('-', '_')}"
        eventually(lambda: not _database_exists(postgres_dsn, database), "its database gone", 60)
        eventually(lambda: not _namespace_exists(k8s, namespace), "its namespace gone", 120)
        warnings = [e for e in describe_events(k8s, done) if e.reason == "DrillTimedOut"]
        assert [e.type for e in warnings][:1] == ["Warning"], warnings

        # The instance says its recovery is not proven, and by which drill.
        def reported() -> dict[str, Any] | None:
            found: Any = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, INSTANCE)
            status = found.get("status") or {}
            condition = next(
                (c for c in status.get("conditions") or [] if c["type"] == "RestoreDrillPassed"),
                None,
            )
            if (status.get("lastDrill") or {}).get("name") != drill or condition is None:
                return None
            return {"lastDrill": status["lastDrill"], "condition": condition}

        verdict = _until(reported, "the instance's drill state", 60)
        assert verdict["lastDrill"]["result"] == "Failed", verdict
        assert (verdict["condition"]["status"], verdict["condition"]["reason"]) == (
            "False",
            "DrillFailed",
        ), verdict
        source: Any = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, INSTANCE)
        assert source["status"]["phase"] == "Ready", "a failed drill must not touch the tenant"
        # The drill is evidence of the source tenant: an entry of its operations journal.
        journal = _journal(blob_connection_string, INSTANCE)
        entry = next(e for e in journal if e["action"] == "DrillTimedOut")
        assert entry["details"]["drill"] is True, entry
        assert (entry["details"]["name"], entry["details"]["backup"]) == (drill, backup), entry
    finally:
        delete_quietly(custom, PLURAL, INSTANCE)
        for item in _drills(custom, INSTANCE):
            delete_quietly(custom, RESTORES, item["metadata"]["name"])
