"""Backups in a second store, with two Azurite instances standing for two storage accounts in
two regions: every backup is copied to the secondary store and checked there; when the primary
store is down, the safety backup of a restore is written to the secondary, and the restore
reads the backup's copy, says so, and brings the rows of the backup back.

This module runs its own two Azurites and its own operator process (the session's Azurite
is shared by every other test and cannot be stopped).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from azure.storage.blob import BlobServiceClient
from kubernetes import client

from e2e.tenants import (
    BACKUPS,
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    create_backup,
    delete_quietly,
    eventually,
    make_instance,
    restore_into,
    seed_odoo_like_database,
    tenant_login,
    wait_finished,
    wait_gone,
    wait_ready,
)
from odoo_devstack import kubectl
from odoo_devstack.demo import start_operator
from odoo_devstack.operator_setup import BACKUP_CONTAINER, register_servers
from odoo_devstack.processes import ManagedProcess
from odoo_devstack.services import AzuriteServer


@dataclass
class TwoRegions:
    """The operator, and the Azurites of its primary and secondary stores."""

    operator: ManagedProcess
    primary: AzuriteServer
    secondary: AzuriteServer
    filestores: Path


@pytest.fixture(scope="module")
def regions(
    k8s: client.ApiClient,
    operator_kubeconfig: Path,
    postgres_dsn: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TwoRegions]:
    workdir = tmp_path_factory.mktemp("regions")
    primary = AzuriteServer(workdir=workdir / "primary").start()
    secondary = AzuriteServer(workdir=workdir / "secondary").start()
    operator: ManagedProcess | None = None
    try:
        kubectl.install_crds(k8s, REPO / "crds")
        config = register_servers(
            k8s,
            postgres_dsn,
            redis_url,
            workdir,
            primary.connection_string,
            secondary_blob_connection_string=secondary.connection_string,
        )
        operator = start_operator(
            operator_kubeconfig,
            config,
            workdir / "operator.log",
            drift_interval=5,
            environment={"ODOO_OPERATOR_COPY_RETRY_INTERVAL": "2"},
        )
        yield TwoRegions(operator, primary, secondary, workdir / "filestores")
    finally:
        if operator is not None:
            operator.stop()
        primary.stop()
        secondary.stop()


def _blob_names(store: AzuriteServer, prefix: str) -> set[str]:
    service = BlobServiceClient.from_connection_string(store.connection_string)
    container = service.get_container_client(BACKUP_CONTAINER)
    return {blob.name for blob in container.list_blobs(name_starts_with=prefix)}


def _copy(backup: dict[str, Any], store: str) -> dict[str, Any]:
    return next(c for c in backup["status"].get("copies") or [] if c["store"] == store)


def test_a_backup_is_copied_to_the_secondary_store_and_restored_from_there_when_the_primary_is_down(
    k8s: client.ApiClient, regions: TwoRegions, postgres_dsn: str
) -> None:
    custom = client.CustomObjectsApi(k8s)
    name = "region-acme"
    policy = {"verify": "Never", "secondaryStoreRef": "secondary"}
    custom.create_cluster_custom_object(
        GROUP, VERSION, PLURAL, make_instance(name, backup=policy, deletionPolicy="Delete")
    )
    backups: list[str] = []
    try:
        wait_ready(custom, name, regions.operator)
        login = tenant_login(k8s, postgres_dsn, name)
        seed_odoo_like_database(login, regions.filestores / name)

        # Taken in the primary store, copied to the secondary and checked there.
        backups.append(create_backup(custom, name))
        taken = wait_finished(custom, BACKUPS, backups[0])
        assert taken["status"]["phase"] == "Succeeded", taken["status"]
        assert (taken["status"]["store"], taken["status"]["secondaryStore"]) == (
            "main",
            "secondary",
        )

        def copied() -> bool:
            found = custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, backups[0])
            copies = (found.get("status") or {}).get("copies") or []
            return any(c["store"] == "secondary" and c["phase"] == "Succeeded" for c in copies)

        eventually(copied, "the copy in the secondary store", 60)
        backup_id = taken["status"]["backupId"]
        prefix = f"{name}/{backup_id}/"
        assert _blob_names(regions.secondary, prefix) == _blob_names(regions.primary, prefix)
        assert len(_blob_names(regions.secondary, prefix)) == 3  # database, filestore, manifest
        assert (
            "SHA-256"
            in _copy(
                custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, backups[0]), "secondary"
            )["message"]
        )

        def published() -> bool:
            status = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)["status"]
            return (status.get("lastCopiedBackup") or {}).get("id") == backup_id

        eventually(published, "lastCopiedBackup on the instance")

        with psycopg.connect(login, autocommit=True) as db:
            db.execute("INSERT INTO res_partner (name) VALUES ('written after the backup')")

        # The primary region goes down. The restore's safety backup goes to the secondary
        # store, and the restore reads the backup's checked copy there.
        assert regions.primary.process is not None
        regions.primary.process.stop()  # its data stays: the region comes back later
        restore = restore_into(custom, backups[0], name)
        status = restore["status"]
        assert status["phase"] == "Succeeded", status
        assert status["readFrom"].startswith("read from the copy in store secondary: store main")
        assert "read from the copy in store secondary" in status["message"]
        safety = custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, status["safetyBackup"])
        backups.append(status["safetyBackup"])
        assert safety["status"]["store"] == "secondary"
        assert "written to the secondary store secondary" in safety["status"]["message"]
        with psycopg.connect(login) as db:
            assert db.execute("SELECT count(*) FROM res_partner").fetchone() == (25,)
        with psycopg.connect(postgres_dsn, autocommit=True) as superuser:
            superuser.execute(f'DROP DATABASE "{status["keptDatabase"]}" WITH (FORCE)')

        # The primary comes back: the safety backup is copied back to it.
        regions.primary.start()

        def copied_back() -> bool:
            found = custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, backups[1])
            copies = (found.get("status") or {}).get("copies") or []
            return any(c["store"] == "main" and c["phase"] == "Succeeded" for c in copies)

        eventually(copied_back, "the safety backup copied back to the primary", 90)
        wait_ready(custom, name, regions.operator)
    finally:
        if regions.primary.process is None or regions.primary.process.exit_code() is not None:
            regions.primary.start()
        for backup in backups:
            delete_quietly(custom, BACKUPS, backup)
        for backup in backups:
            wait_gone(custom, BACKUPS, backup)
        delete_quietly(custom, PLURAL, name)
        wait_gone(custom, PLURAL, name, 180)
    # Deleted backups take their copies with them, in both regions.
    assert not _blob_names(regions.primary, f"{name}/{backup_id}/")
    assert not _blob_names(regions.secondary, f"{name}/{backup_id}/")
