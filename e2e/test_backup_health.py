"""An instance's backup state follows its backups within seconds, not at its next drift pass.

The operator of this module runs its drift timer every 10 minutes, as production runs it
every 2: after an instance's first passes nothing of the instance's own reconciles it again
while a test runs, so what its status says about a backup was written when the backup ended.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from kubernetes import client

from e2e.tenants import (
    GROUP,
    PLURAL,
    VERSION,
    NewTenant,
    create_backup,
    describe_events,
    eventually,
)

BACKUPS = "odoobackups"
# Longer than the module runs: no drift pass repairs a late status here.
OPERATOR_DRIFT_INTERVAL_SECONDS = 600.0
# The drift timer's first pass comes 5 s after the operator first sees an instance (its
# initial delay); backups are taken after it, so that no pass of the instance follows them.
_AFTER_FIRST_DRIFT_PASS_SECONDS = 8.0
# How soon after the OdooBackup reports its end the instance must say so.
_WITHIN_SECONDS = 15.0

TENANT_PREFIX = "bkh"
TENANT_SPEC = {"backup": {"schedule": "0 2 * * *", "rpo": "26h", "verify": "AfterEachBackup"}}


def _instance(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    found: dict[str, Any] = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    return found


def _backup_healthy(instance: dict[str, Any]) -> dict[str, Any]:
    conditions = (instance.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "BackupHealthy"), {})


def _past_the_first_drift_pass(instance: dict[str, Any]) -> None:
    created = datetime.datetime.fromisoformat(instance["metadata"]["creationTimestamp"])
    age = time.time() - created.timestamp()
    time.sleep(max(0.0, _AFTER_FIRST_DRIFT_PASS_SECONDS - age))


def _finished_backup(custom: client.CustomObjectsApi, name: str) -> tuple[dict[str, Any], float]:
    """Wait for the OdooBackup to end; it, and the moment its end was seen (monotonic)."""
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, name))
        return (found.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    eventually(finished, f"{BACKUPS}/{name} to finish", 120, poll=0.2)
    return found, time.monotonic()


def _instance_events(k8s: client.ApiClient, instance: dict[str, Any], reason: str) -> list[Any]:
    return [e for e in describe_events(k8s, instance) if e.reason == reason]


def test_backup_healthy_turns_true_within_seconds_of_a_verified_backup(
    k8s: client.ApiClient, new_tenant: NewTenant
) -> None:
    custom = client.CustomObjectsApi(k8s)
    name = new_tenant()
    before = _instance(custom, name)
    assert (_backup_healthy(before).get("status"), _backup_healthy(before).get("reason")) == (
        "Unknown",
        "NoBackupYet",
    ), before["status"]
    _past_the_first_drift_pass(before)

    backup, ended = _finished_backup(custom, create_backup(custom, name))
    status = backup["status"]
    assert status["phase"] == "Succeeded", status
    assert status["verification"]["result"] == "Passed", status["verification"]

    def published() -> bool:
        instance = _instance(custom, name)
        fields = instance.get("status") or {}
        return (
            _backup_healthy(instance).get("status") == "True"
            and (fields.get("lastBackup") or {}).get("id") == status["backupId"]
            and (fields.get("lastVerifiedBackup") or {}).get("id") == status["backupId"]
        )

    eventually(
        published,
        f"BackupHealthy=True, lastBackup and lastVerifiedBackup within {_WITHIN_SECONDS:.0f}s",
        _WITHIN_SECONDS,
        poll=0.2,
    )
    print(f"\nBackupHealthy True {time.monotonic() - ended:.2f}s after the backup's end was seen")
    instance = _instance(custom, name)
    assert _backup_healthy(instance)["reason"] == "WithinRPO"
    # The transition is news: one Normal Event where kubectl describe looks.
    eventually(lambda: bool(_instance_events(k8s, instance, "BackupHealthy")), "the Event", 10)
    [event] = _instance_events(k8s, instance, "BackupHealthy")
    assert event.type == "Normal"
    assert "within the RPO 26h" in event.message


def test_backup_healthy_turns_false_within_seconds_of_a_failed_backup(
    k8s: client.ApiClient, new_tenant: NewTenant
) -> None:
    custom = client.CustomObjectsApi(k8s)
    name = new_tenant()
    _past_the_first_drift_pass(_instance(custom, name))
    good, _ = _finished_backup(custom, create_backup(custom, name))
    assert good["status"]["phase"] == "Succeeded", good["status"]
    eventually(
        lambda: _backup_healthy(_instance(custom, name)).get("status") == "True",
        "BackupHealthy=True",
        _WITHIN_SECONDS,
        poll=0.2,
    )
    # The next backup cannot read the tenant's database password: it fails at once.
    client.CoreV1Api(k8s).patch_namespaced_secret(
        "odoo-credentials", f"odoo-{name}", {"data": {"database-password": None}}
    )

    failed, ended = _finished_backup(custom, create_backup(custom, name))
    assert failed["status"]["phase"] == "Failed", failed["status"]

    def unhealthy() -> bool:
        health = _backup_healthy(_instance(custom, name))
        return (health.get("status"), health.get("reason")) == ("False", "BackupFailed")

    eventually(
        unhealthy, f"BackupHealthy=False within {_WITHIN_SECONDS:.0f}s", _WITHIN_SECONDS, 0.2
    )
    print(f"\nBackupHealthy False {time.monotonic() - ended:.2f}s after the backup's end was seen")
    instance = _instance(custom, name)
    assert failed["metadata"]["name"] in _backup_healthy(instance)["message"]
    assert instance["status"]["lastBackup"]["id"] == good["status"]["backupId"]
    eventually(lambda: bool(_instance_events(k8s, instance, "BackupFailed")), "the Event", 10)
    [event] = _instance_events(k8s, instance, "BackupFailed")
    assert event.type == "Warning"
