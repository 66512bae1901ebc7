"""Backups and restores of tenants through the cluster: the operator runs the engine in its
own process against the session's PostgreSQL and Azurite, and reads filestores from its
work directory (the local volumes are not real).
"""

from __future__ import annotations

import datetime
import itertools
from pathlib import Path
from typing import Any

import psycopg
import pytest
from azure.storage.blob import BlobServiceClient
from kubernetes import client
from kubernetes.client.rest import ApiException
from psycopg import conninfo

from e2e.tenants import (
    BACKUPS,
    GROUP,
    PLURAL,
    VERSION,
    NewTenant,
    create_backup,
    delete_quietly,
    eventually,
    restore_into,
    seed_odoo_like_database,
    tenant_login,
    wait_finished,
    wait_ready,
)
from odoo_devstack.operator_setup import BACKUP_CONTAINER
from odoo_devstack.processes import ManagedProcess

BACKUP_POLICY = {"schedule": "0 2 * * *", "rpo": "26h", "verify": "AfterEachBackup"}
TENANT_PREFIX = "bak"
TENANT_SPEC = {"backup": BACKUP_POLICY, "deletionPolicy": "Delete"}


@pytest.fixture
def custom(k8s: client.ApiClient) -> client.CustomObjectsApi:
    """The API of OdooInstances, OdooBackups and OdooRestores."""
    return client.CustomObjectsApi(k8s)


def _filestore(operator: ManagedProcess, name: str) -> Path:
    return operator.log_path.parent / "filestores" / name


def _backup(custom: client.CustomObjectsApi, instance: str, retain: bool = False) -> str:
    return create_backup(custom, instance, retain=retain)


def test_an_on_demand_backup_is_stored_verified_and_published_on_the_instance(
    k8s: client.ApiClient,
    custom: client.CustomObjectsApi,
    new_tenant: NewTenant,
    operator: ManagedProcess,
    postgres_dsn: str,
    blob_connection_string: str,
) -> None:
    name = new_tenant()
    seed_odoo_like_database(tenant_login(k8s, postgres_dsn, name), _filestore(operator, name))

    backup = wait_finished(custom, BACKUPS, _backup(custom, name))
    status = backup["status"]
    assert status["phase"] == "Succeeded", status
    assert backup["metadata"]["labels"]["odoo.tenantops.io/instance"] == name
    assert status["verification"]["result"] == "Passed", status["verification"]
    assert status["sizeBytes"] > 0
    assert all(len(part["sha256"]) == 64 for part in status["parts"].values())
    assert "account" in status["modules"]
    # The store holds the parts and the manifest under <instance>/<backup-id>/.
    container = BlobServiceClient.from_connection_string(
        blob_connection_string
    ).get_container_client(BACKUP_CONTAINER)
    names = {
        blob.name for blob in container.list_blobs(name_starts_with=f"{name}/{status['backupId']}/")
    }
    assert f"{name}/{status['backupId']}/manifest.json" in names

    def published() -> bool:
        instance = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        conditions = {c["type"]: c for c in instance["status"].get("conditions", [])}
        return (
            (instance["status"].get("lastBackup") or {}).get("id") == status["backupId"]
            and (instance["status"].get("lastVerifiedBackup") or {}).get("id") == status["backupId"]
            and conditions.get("BackupHealthy", {}).get("status") == "True"
        )

    eventually(published, "lastBackup, lastVerifiedBackup and BackupHealthy=True on the instance")
    listed = custom.list_cluster_custom_object(
        GROUP, VERSION, BACKUPS, label_selector=f"odoo.tenantops.io/instance={name}"
    )
    assert [item["metadata"]["name"] for item in listed["items"]] == [backup["metadata"]["name"]]


def test_retention_prunes_old_backups_with_their_blobs_but_keeps_retained_ones(
    custom: client.CustomObjectsApi,
    new_tenant: NewTenant,
    blob_connection_string: str,
) -> None:
    policy = {
        **BACKUP_POLICY,
        "rpo": "1m",  # backups younger than the RPO are never pruned: the shortest there is
        "verify": "Never",
        "retention": {"keepLast": 1, "daily": 0, "weekly": 0, "monthly": 0},
    }
    name = new_tenant(backup=policy)
    kept = wait_finished(custom, BACKUPS, _backup(custom, name, retain=True))
    first = wait_finished(custom, BACKUPS, _backup(custom, name))
    newest = wait_finished(custom, BACKUPS, _backup(custom, name))
    container = BlobServiceClient.from_connection_string(
        blob_connection_string
    ).get_container_client(BACKUP_CONTAINER)

    survivors: set[str] = set()

    def pruned() -> bool:
        listed = custom.list_cluster_custom_object(
            GROUP, VERSION, BACKUPS, label_selector=f"odoo.tenantops.io/instance={name}"
        )
        survivors.clear()
        survivors.update(item["metadata"]["name"] for item in listed["items"])
        return len(survivors) == 2

    eventually(pruned, "one unretained backup pruned once past the RPO", 240)
    # The retained one stays; of the other two the newer is kept (completion times have
    # milliseconds, so even backups finished in the same second are ordered).
    assert survivors == {kept["metadata"]["name"], newest["metadata"]["name"]}
    gone = f"{name}/{first['status']['backupId']}/"
    eventually(lambda: not list(container.list_blobs(name_starts_with=gone)), "its blobs deleted")


def test_a_tenant_deleted_with_delete_policy_is_backed_up_before_its_data_is_dropped(
    k8s: client.ApiClient,
    custom: client.CustomObjectsApi,
    new_tenant: NewTenant,
    postgres_dsn: str,
) -> None:
    name = new_tenant()
    database = f"odoo_{name.replace('-', '_')}"
    custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    final = wait_finished(custom, BACKUPS, f"{name}-pre-delete")
    assert final["status"]["phase"] == "Succeeded", final["status"]
    assert final["spec"] == {"instance": name, "reason": "pre-delete", "retain": True}

    def dropped() -> bool:
        with psycopg.connect(postgres_dsn) as superuser:
            row = superuser.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            return row.fetchone() is None

    eventually(dropped, "the database dropped after the pre-delete backup", 90)
    delete_quietly(custom, BACKUPS, f"{name}-pre-delete")


def test_a_clone_into_staging_is_neutralized_and_keeps_the_replaced_database(
    k8s: client.ApiClient,
    custom: client.CustomObjectsApi,
    new_tenant: NewTenant,
    operator: ManagedProcess,
    postgres_dsn: str,
) -> None:
    production, staging = new_tenant(), new_tenant()
    seed_odoo_like_database(
        tenant_login(k8s, postgres_dsn, production), _filestore(operator, production)
    )
    backup = wait_finished(custom, BACKUPS, _backup(custom, production))
    assert backup["status"]["phase"] == "Succeeded", backup["status"]

    restore = restore_into(custom, backup["metadata"]["name"], staging, fromInstance=production)
    status = restore["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["mode"], status["neutralized"]) == ("Clone", True)
    with psycopg.connect(tenant_login(k8s, postgres_dsn, staging)) as db:
        assert db.execute("SELECT count(*) FROM res_partner").fetchone() == (25,)
        assert db.execute("SELECT bool_or(active) FROM ir_mail_server").fetchone() == (False,)
        assert db.execute("SELECT bool_or(active) FROM ir_cron").fetchone() == (False,)
    with psycopg.connect(tenant_login(k8s, postgres_dsn, production)) as db:
        assert db.execute("SELECT bool_and(active) FROM ir_mail_server").fetchone() == (True,)
    with psycopg.connect(postgres_dsn, autocommit=True) as superuser:
        kept = superuser.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (status["keptDatabase"],)
        )
        assert kept.fetchone() is not None
        superuser.execute(f'DROP DATABASE "{status["keptDatabase"]}" WITH (FORCE)')
    staged = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, staging)
    assert not (staged["metadata"].get("annotations") or {}).get("odoo.tenantops.io/maintenance")


def test_an_in_place_restore_takes_a_safety_backup_first_and_brings_back_the_old_rows(
    k8s: client.ApiClient,
    custom: client.CustomObjectsApi,
    new_tenant: NewTenant,
    operator: ManagedProcess,
    postgres_dsn: str,
) -> None:
    name = new_tenant()
    login = tenant_login(k8s, postgres_dsn, name)
    seed_odoo_like_database(login, _filestore(operator, name))
    backup = wait_finished(custom, BACKUPS, _backup(custom, name))
    with psycopg.connect(login, autocommit=True) as db:
        db.execute("INSERT INTO res_partner (name) VALUES ('written after the backup')")

    restore = restore_into(custom, backup["metadata"]["name"], name)
    status = restore["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["mode"], status["neutralized"]) == ("InPlace", False)
    safety = custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, status["safetyBackup"])
    assert safety["status"]["phase"] == "Succeeded"
    with psycopg.connect(login) as db:
        assert db.execute("SELECT count(*) FROM res_partner").fetchone() == (25,)
    kept = conninfo.make_conninfo(postgres_dsn, dbname=status["keptDatabase"])
    with psycopg.connect(kept) as db:
        assert db.execute("SELECT count(*) FROM res_partner").fetchone() == (26,)
    with psycopg.connect(postgres_dsn, autocommit=True) as superuser:
        superuser.execute(f'DROP DATABASE "{status["keptDatabase"]}" WITH (FORCE)')
    wait_ready(custom, name, operator)


def test_a_tampered_backup_is_refused_and_the_target_left_untouched(
    k8s: client.ApiClient,
    custom: client.CustomObjectsApi,
    new_tenant: NewTenant,
    operator: ManagedProcess,
    postgres_dsn: str,
    blob_connection_string: str,
) -> None:
    production, staging = new_tenant(), new_tenant()
    seed_odoo_like_database(
        tenant_login(k8s, postgres_dsn, production), _filestore(operator, production)
    )
    backup = wait_finished(custom, BACKUPS, _backup(custom, production))
    container = BlobServiceClient.from_connection_string(
        blob_connection_string
    ).get_container_client(BACKUP_CONTAINER)
    dump = f"{production}/{backup['status']['backupId']}/database.dump"
    container.upload_blob(dump, b"not the dump that was checksummed", overwrite=True)

    restore = restore_into(custom, backup["metadata"]["name"], staging, fromInstance=production)
    assert restore["status"]["phase"] == "Failed"
    assert "does not match its manifest" in restore["status"]["message"]
    with psycopg.connect(tenant_login(k8s, postgres_dsn, staging)) as db:
        tables = db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert tables == (0,), "the staging database must be untouched"


def test_the_schedule_takes_a_backup_named_after_its_slot(
    custom: client.CustomObjectsApi, new_tenant: NewTenant
) -> None:
    name = new_tenant(backup={**BACKUP_POLICY, "schedule": "* * * * *", "verify": "Never"})
    found: list[dict[str, Any]] = []

    def scheduled_backup_succeeded() -> bool:
        listed = custom.list_cluster_custom_object(
            GROUP, VERSION, BACKUPS, label_selector=f"odoo.tenantops.io/instance={name}"
        )["items"]
        found[:] = [
            item
            for item in listed
            if item["spec"]["reason"] == "scheduled"
            and (item.get("status") or {}).get("phase") == "Succeeded"
        ]
        return bool(found)

    eventually(scheduled_backup_succeeded, "a scheduled backup", 150)
    # <instance>-<yyyymmdd>-<hhmm>: the slot's name, the same after any restart.
    suffix = found[0]["metadata"]["name"].removeprefix(f"{name}-")
    assert len(suffix) == len("20261123-0200")
    assert custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)["status"].get(
        "lastScheduledBackup"
    )


def test_backups_of_one_tenant_never_overlap(
    custom: client.CustomObjectsApi, new_tenant: NewTenant
) -> None:
    name = new_tenant(backup={**BACKUP_POLICY, "verify": "Never"})
    names = [_backup(custom, name) for _ in range(3)]
    statuses = [wait_finished(custom, BACKUPS, n)["status"] for n in names]
    assert [status["phase"] for status in statuses] == ["Succeeded"] * 3

    def moment(text: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))

    runs = sorted((moment(s["startedAt"]), moment(s["completedAt"])) for s in statuses)
    for (_, first_end), (second_start, _) in itertools.pairwise(runs):
        assert second_start >= first_end


def _last_verified(custom: client.CustomObjectsApi, instance: str) -> str | None:
    status = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, instance).get("status") or {}
    return (status.get("lastVerifiedBackup") or {}).get("name")


def _verification_of(custom: client.CustomObjectsApi, backup: str) -> dict[str, Any]:
    found = custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, backup)
    return dict((found.get("status") or {}).get("verification") or {})


def test_a_backup_is_verified_again_when_its_verify_annotation_changes(
    custom: client.CustomObjectsApi, new_tenant: NewTenant
) -> None:
    name = new_tenant(backup={**BACKUP_POLICY, "verify": "Never"})
    backup = wait_finished(custom, BACKUPS, _backup(custom, name))["metadata"]["name"]
    assert _verification_of(custom, backup) == {}  # verify: Never

    for request in ("audit-2026-q4", "audit-2027-q1"):
        custom.patch_cluster_custom_object(
            GROUP,
            VERSION,
            BACKUPS,
            backup,
            {"metadata": {"annotations": {"odoo.tenantops.io/verify": request}}},
        )
        eventually(
            lambda request=request: _verification_of(custom, backup).get("request") == request,
            f"the verification answering {request}",
        )
        verification = _verification_of(custom, backup)
        assert verification["result"] == "Passed", verification
    # The instance is written right after the backup: read until both are.
    eventually(lambda: _last_verified(custom, name) == backup, "lastVerifiedBackup on the instance")


def test_verify_scheduled_checks_the_newest_good_backup_at_the_times_of_its_own_schedule(
    custom: client.CustomObjectsApi, new_tenant: NewTenant
) -> None:
    policy = {**BACKUP_POLICY, "verify": "Scheduled", "verifySchedule": "* * * * *"}
    name = new_tenant(backup=policy)
    backups = [wait_finished(custom, BACKUPS, _backup(custom, name)) for _ in range(2)]
    newest = backups[-1]["metadata"]["name"]

    eventually(
        lambda: _verification_of(custom, newest).get("result") == "Passed",
        "a scheduled verification of the newest backup",
        150,
    )
    # Every verification there is answered the schedule: none ran after a backup.
    for backup in backups:
        verification = _verification_of(custom, backup["metadata"]["name"])
        assert not verification or verification.get("request", "").startswith("scheduled-")
    eventually(lambda: _last_verified(custom, name) == newest, "lastVerifiedBackup on the instance")
    instance = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    assert instance["status"]["lastScheduledVerification"]


def test_a_bad_verify_schedule_is_refused_at_admission(
    custom: client.CustomObjectsApi, new_tenant: NewTenant
) -> None:
    name = new_tenant(backup={**BACKUP_POLICY, "verify": "Never"})
    with pytest.raises(ApiException) as refused:
        custom.patch_cluster_custom_object(
            GROUP,
            VERSION,
            PLURAL,
            name,
            {"spec": {"backup": {"verify": "Scheduled", "verifySchedule": "61 * * * *"}}},
        )
    assert "spec.backup.verifySchedule" in refused.value.body
