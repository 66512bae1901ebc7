"""How backups show on an instance, how backup Jobs are built, and how stores are configured."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from odoo_operator.builders.backup_job import BACKUP_STORE_SECRET, build_backup_job
from odoo_operator.builders.schedule import due_slot
from odoo_operator.model.backup import BackupPolicy, RestoreRequest
from odoo_operator.model.config import ConfigError, OperatorConfig
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.reconcile.backups import (
    backup_health,
    instance_backup_summary,
    precise_timestamp,
    scheduled_backup_name,
    timestamp,
    verification_request,
)

NOW = datetime.datetime.now(datetime.UTC)


def _instance(**backup: Any) -> dict[str, Any]:
    created = timestamp(NOW - datetime.timedelta(days=30))
    return {
        "metadata": {"name": "acme", "creationTimestamp": created},
        "spec": {"version": "18.0", "hosts": ["acme.example.com"], "backup": backup},
    }


def _backup(name: str, hours_ago: float, phase: str = "Succeeded", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"instance": "acme"},
        "status": {
            "phase": phase,
            "backupId": f"id-{name}",
            "completedAt": timestamp(NOW - datetime.timedelta(hours=hours_ago)),
            "sizeBytes": 100,
            "message": f"{name} message",
            **status,
        },
    }


def test_an_instance_without_a_backup_policy_has_no_backup_condition() -> None:
    body = _instance()
    del body["spec"]["backup"]
    assert backup_health(body, [_backup("a", 1)]) is None


def test_a_recent_good_backup_is_healthy() -> None:
    health = backup_health(_instance(rpo="26h"), [_backup("a", 30), _backup("b", 2)])
    assert health is not None
    assert (health.status, health.reason) == ("True", "WithinRPO")


def test_a_newest_good_backup_older_than_the_rpo_is_a_breach() -> None:
    health = backup_health(_instance(rpo="26h"), [_backup("a", 27)])
    assert health is not None
    assert (health.status, health.reason) == ("False", "RPOExceeded")
    assert "older than the RPO 26h" in health.message


def test_a_failed_last_attempt_is_unhealthy_even_within_the_rpo() -> None:
    health = backup_health(_instance(), [_backup("a", 3), _backup("b", 1, phase="Failed")])
    assert health is not None
    assert (health.status, health.reason) == ("False", "BackupFailed")
    assert "OdooBackup b failed: b message" in health.message


def test_a_failed_verification_is_unhealthy() -> None:
    failed = {"result": "Failed", "message": "row counts differ", "checkedAt": timestamp(NOW)}
    health = backup_health(_instance(), [_backup("a", 1, verification=failed)])
    assert health is not None
    assert (health.status, health.reason) == ("False", "VerificationFailed")


def test_the_summary_names_the_newest_backup_and_the_newest_verified_one() -> None:
    passed = {"result": "Passed", "checkedAt": timestamp(NOW)}
    summary = instance_backup_summary(
        [
            _backup("old", 10, verification=passed),
            _backup("new", 1),
            _backup("broken", 0.5, phase="Failed"),
        ]
    )
    assert summary["lastBackup"]["name"] == "new"
    assert summary["lastVerifiedBackup"]["name"] == "old"


def test_backups_finished_in_the_same_second_are_ordered_by_their_milliseconds() -> None:
    second = NOW.replace(microsecond=0)
    early = _backup("zz-early", 0, completedAt=precise_timestamp(second.replace(microsecond=1000)))
    late = _backup("aa-late", 0, completedAt=precise_timestamp(second.replace(microsecond=900000)))
    # A whole-second time written by an older release sorts before both.
    legacy = _backup("legacy", 0, completedAt=timestamp(second))
    summary = instance_backup_summary([late, early, legacy])
    assert summary["lastBackup"]["name"] == "aa-late"
    assert precise_timestamp(second.replace(microsecond=900000)).endswith(".900Z")


def test_a_verify_annotation_is_a_request_until_a_verification_answers_it() -> None:
    body = _backup("a", 1)
    assert verification_request(body) is None
    body["metadata"]["annotations"] = {"odoo.tenantops.io/verify": "audit-q4"}
    assert verification_request(body) == "audit-q4"
    body["status"]["verification"] = {"result": "Passed", "request": "audit-q4"}
    assert verification_request(body) is None
    body["metadata"]["annotations"]["odoo.tenantops.io/verify"] = "audit-q1"
    assert verification_request(body) == "audit-q1"


def test_a_scheduled_slot_always_gets_the_same_backup_name() -> None:
    slot = datetime.datetime(2026, 11, 23, 2, 0, 41, tzinfo=datetime.UTC)
    assert scheduled_backup_name("acme", slot) == "acme-20261123-0200"


def test_a_policy_is_read_with_the_crd_defaults() -> None:
    policy = BackupPolicy.from_instance(_instance())
    assert policy == BackupPolicy()
    assert (policy.schedule, policy.rpo, policy.verify) == ("0 2 * * *", "26h", "AfterEachBackup")
    assert policy.verify_schedule == "0 4 * * 0"


def test_clones_are_neutralized_unless_asked_otherwise_and_in_place_restores_are_not() -> None:
    request = RestoreRequest.from_resource(
        {"metadata": {"name": "r"}, "spec": {"backup": "b", "target": {"instance": "staging"}}}
    )
    assert request.neutralizes(in_place=False) is True
    assert request.neutralizes(in_place=True) is False


def test_the_backup_job_reads_as_the_tenant_mounts_the_filestore_read_only_and_is_restricted() -> (
    None
):
    spec = InstanceSpec.from_resource(
        {"metadata": {"name": "acme"}, "spec": {"version": "18.0", "hosts": ["a.example.com"]}}
    )
    job = build_backup_job(
        spec,
        node_selector={},
        tolerations=(),
        backup_name="acme-20261123-0200",
        backup_id="20261123T020000Z-ab12",
        reason="scheduled",
        image="registry.example/odoo-operator:1.0",
        container="odoo-backups",
        store_secret_key="connectionString",
    )
    assert job["metadata"]["name"] == "backup-20261123t020000z-ab12"
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "filestore", "mountPath": "/var/lib/odoo", "readOnly": True} in container[
        "volumeMounts"
    ]
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert secrets == {"odoo-database", BACKUP_STORE_SECRET}
    assert container["args"][:3] == ["backup", "--instance", "acme"]


def test_blob_stores_are_registered_with_one_default() -> None:
    config = OperatorConfig.from_mapping(
        {
            "blobStores": {
                "main": {"secretRef": "blob-main", "container": "odoo-backups", "default": True},
                "archive": {"secretRef": "blob-archive", "container": "odoo-archive"},
            }
        }
    )
    assert config.blob_store(None).name == "main"
    assert config.blob_store("archive").container == "odoo-archive"
    with pytest.raises(ConfigError, match="unknown blob store 'nowhere'"):
        config.blob_store("nowhere")


@pytest.mark.parametrize(
    ("stores", "message"),
    [
        ({"x": {"secretRef": "s"}}, "needs secretRef"),
        ({"x": {"secretRef": "s", "container": "ab"}}, "3 to 63 characters"),
    ],
)
def test_a_malformed_blob_store_is_refused(stores: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OperatorConfig.from_mapping({"blobStores": stores})


def test_backups_run_in_jobs_unless_configured_in_process() -> None:
    assert OperatorConfig.from_mapping({}).backup_execution == "job"
    assert OperatorConfig.from_mapping({"backupExecution": "inProcess"}).backup_execution == (
        "inProcess"
    )
    with pytest.raises(ConfigError, match="backupExecution"):
        OperatorConfig.from_mapping({"backupExecution": "cron"})


def test_the_due_slot_is_the_latest_scheduled_time_so_a_retry_names_the_same_backup() -> None:
    created = datetime.datetime(2026, 11, 20, 12, 0, tzinfo=datetime.UTC)
    now = datetime.datetime(2026, 11, 23, 2, 7, 30, tzinfo=datetime.UTC)
    slot = due_slot("0 2 * * *", "UTC", None, now, created)
    assert slot == datetime.datetime(2026, 11, 23, 2, 0, tzinfo=datetime.UTC)
    later = now + datetime.timedelta(minutes=20)
    assert due_slot("0 2 * * *", "UTC", None, later, created) == slot
    assert due_slot("0 2 * * *", "UTC", now, later, created) is None
