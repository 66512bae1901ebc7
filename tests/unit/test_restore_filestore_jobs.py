"""With backups as Jobs, a restore brings the filestore back through two Jobs in the target's
namespace: one stages the backup's filestore before the database is touched, one swaps it in
after the database swap. Status says which step runs and what was kept."""

from __future__ import annotations

from typing import Any

import pytest

# Pytest puts this folder on sys.path (its default import mode): the fake is shared.
from test_restore_versions import FakeKube as StoredObjects

from odoo_operator.builders.backup_job import (
    BACKUP_STORE_SECRET,
    WORKLOAD_IDENTITY_USE_LABEL,
    build_filestore_restore_job,
)
from odoo_operator.builders.tenant import ODOO_UID
from odoo_operator.engine import RestoreOutcome
from odoo_operator.model.backup import BACKUP_KIND
from odoo_operator.model.config import BlobStoreRef, OperatorConfig, ServerRef, WorkloadIdentity
from odoo_operator.model.names import INSTANCE_KIND, MAINTENANCE_ANNOTATION
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.reconcile import restores
from odoo_operator.reconcile.clients import Clients
from odoo_operator.reconcile.restores import RestoreWaiting, run_restore_request

BACKUP_ID = "20260101T000000Z-ab12"
SPEC = InstanceSpec.from_resource(
    {"metadata": {"name": "acme"}, "spec": {"version": "18.0", "hosts": ["a.example.com"]}}
)


def _job(step: str, identity: WorkloadIdentity | None = None) -> dict[str, Any]:
    return build_filestore_restore_job(
        SPEC,
        step=step,
        restore_name="back-to-monday",
        restore_uid="0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        backup_instance="acme",
        backup_id=BACKUP_ID,
        node_selector={},
        tolerations=(),
        image="registry.example/odoo-operator:1.0",
        container="odoo-backups",
        store_secret_key=None if identity else "connectionString",
        workload_identity=identity,
    )


# --- the Jobs ----------------------------------------------------------------------------------


def test_the_staging_job_writes_the_filestore_as_odoo_and_reads_the_store() -> None:
    job = _job("stage")
    assert job["metadata"]["name"] == "restore-0a1b2c3d4e5f-stage"
    pod = job["spec"]["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (
        ODOO_UID,
        ODOO_UID,
    )
    (container,) = pod["containers"]
    assert container["args"] == [
        "restore-filestore", "--step", "stage", "--instance", "acme", "--backup-id", BACKUP_ID,
        "--filestore", "/var/lib/odoo/filestore/odoo_acme",
    ]  # fmt: skip
    assert {"name": "filestore", "mountPath": "/var/lib/odoo", "readOnly": False} in container[
        "volumeMounts"
    ]
    assert pod["volumes"][0]["persistentVolumeClaim"]["readOnly"] is False
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    # The store, and nothing else: no database login reaches a filestore Job.
    assert secrets == {BACKUP_STORE_SECRET}
    assert job["spec"]["backoffLimit"] == 0


def test_the_swap_job_gets_no_store_access_and_no_identity() -> None:
    job = _job("swap", WorkloadIdentity("5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"))
    pod = job["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert "env" not in container
    assert WORKLOAD_IDENTITY_USE_LABEL not in pod["metadata"]["labels"]
    assert pod["spec"]["serviceAccountName"] == "odoo"
    assert container["args"][:3] == ["restore-filestore", "--step", "swap"]


def test_a_filestore_step_is_stage_or_swap() -> None:
    with pytest.raises(ValueError, match="stage or swap"):
        _job("copy")


# --- the restore's steps -----------------------------------------------------------------------


class FakeKube(StoredObjects):
    """The restore-flow fake of test_restore_versions.py, with Jobs finished by the test."""

    def finish(self, job: str, outcome: str) -> None:
        self.objects[("Job", job, "odoo-acme")]["status"] = {
            "conditions": [{"type": outcome, "status": "True"}]
        }

    def maintenance(self) -> str | None:
        annotations = self.objects[(INSTANCE_KIND, "acme", None)]["metadata"].get("annotations")
        return (annotations or {}).get(MAINTENANCE_ANNOTATION)


def _kube() -> FakeKube:
    succeeded = {"phase": "Succeeded"}
    return FakeKube(
        {
            "kind": INSTANCE_KIND,
            "metadata": {"name": "acme"},
            "spec": {"version": "18.0", "hosts": ["acme.example.com"], "tenancy": "dedicated"},
            "status": {"runningVersion": "18.0"},
        },
        {
            "kind": BACKUP_KIND,
            "metadata": {"name": "acme-nightly"},
            "spec": {"instance": "acme"},
            "status": {**succeeded, "backupId": BACKUP_ID, "odooVersion": "18.0"},
        },
        {"kind": BACKUP_KIND, "metadata": {"name": "back-to-monday-safety"}, "status": succeeded},
        {"kind": "Secret", "metadata": {"name": "blob", "namespace": "odoo-operator"}, "data": {}},
    )


RESTORE = {
    "metadata": {"name": "back-to-monday", "uid": "0a1b2c3d-4e5f-6789-abcd-ef0123456789"},
    "spec": {"backup": "acme-nightly", "target": {"instance": "acme"}},
}
STAGE, SWAP = "restore-0a1b2c3d4e5f-stage", "restore-0a1b2c3d4e5f-swap"


class Restores:
    """Drives run_restore_request as the handler does: the status of one pass feeds the next;
    the database half is recorded, not run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, kube: FakeKube) -> None:
        self.kube = kube
        self.status: dict[str, Any] = {}
        self.database_restores: list[Any] = []
        self.clients = Clients(
            kube=kube,  # type: ignore[arg-type]
            config=OperatorConfig(
                postgres_servers={"main": ServerRef("main", "pg")},
                default_postgres="main",
                blob_stores={"main": BlobStoreRef("main", "blob", "backups")},
                default_blob_store="main",
                dedicated_node_selector={"pool": "odoo"},
            ),
        )

        async def restore_backup(store: Any, source: str, backup_id: str, target: Any) -> Any:
            self.database_restores.append(target)
            return RestoreOutcome(
                "acme", backup_id, "odoo_acme", "odoo_acme_pre_restore_x", None, None, False, {}, 1
            )

        async def blob(store: BlobStoreRef) -> object:
            return object()

        async def admin(server: Any) -> str:
            return "host=pg"

        async def readable_store(clients: Any, status: Any, instance: str) -> Any:
            return object(), clients.config.blob_store(status.get("store")), None

        monkeypatch.setattr(restores, "restore_backup", restore_backup)
        monkeypatch.setattr(restores, "readable_store", readable_store)
        monkeypatch.setattr(self.clients, "blob", blob)
        monkeypatch.setattr(self.clients, "postgres_admin_conninfo", admin)

    async def step(self) -> str:
        """One pass; the message it waits with, or ``done``."""
        body = {**RESTORE, "status": self.status}
        try:
            self.status = await run_restore_request(self.clients, body)
        except RestoreWaiting as waiting:
            self.status = dict(waiting.args[1])
            return str(waiting.args[0])
        return "done"


async def test_the_filestore_is_staged_before_the_database_and_swapped_in_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = _kube()
    run = Restores(monkeypatch, kube)

    assert "staging the backup's filestore" in await run.step()
    stage = kube.objects[("Job", STAGE, "odoo-acme")]
    assert stage["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "odoo"}
    assert run.status["step"] == "staging-filestore"
    assert run.database_restores == []
    assert kube.maintenance() == "restore/back-to-monday"

    assert "staging" in await run.step()  # still running: nothing else happens
    assert run.database_restores == []

    kube.finish(STAGE, "Complete")
    assert "swapping in the filestore" in await run.step()
    (database,) = run.database_restores
    assert database.filestore is None  # the operator never writes the tenant's volume
    assert run.status["step"] == "swapping-filestore"
    assert run.status["keptDatabase"] == "odoo_acme_pre_restore_x"
    assert kube.maintenance() == "restore/back-to-monday"

    kube.finish(SWAP, "Complete")
    assert await run.step() == "done"
    assert run.status["phase"] == "Succeeded"
    assert run.status["filestoreRestored"] is True
    assert (
        run.status["keptFilestore"]
        == "/var/lib/odoo/filestore/odoo_acme.pre_restore_20260101000000_ab12"
    )
    assert run.status["filestoreJobs"] == f"Job odoo-acme/{STAGE}, Job odoo-acme/{SWAP}"
    assert "step" not in run.status
    assert "database and filestore" in run.status["message"]
    assert kube.maintenance() is None
    assert len(run.database_restores) == 1


async def test_a_failed_staging_leaves_the_database_untouched_and_the_tenant_back_in_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = _kube()
    run = Restores(monkeypatch, kube)
    await run.step()
    kube.finish(STAGE, "Failed")

    assert await run.step() == "done"

    assert run.status["phase"] == "Failed"
    assert run.status["conditions"][0]["reason"] == "FilestoreStagingFailed"
    assert "nothing was touched" in run.status["message"]
    assert f"odoo-acme/{STAGE}" in run.status["message"]
    assert run.database_restores == []
    assert kube.maintenance() is None


async def test_a_failed_swap_says_the_database_came_back_and_the_files_did_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = _kube()
    run = Restores(monkeypatch, kube)
    await run.step()
    kube.finish(STAGE, "Complete")
    await run.step()
    kube.finish(SWAP, "Failed")

    assert await run.step() == "done"

    assert run.status["phase"] == "Failed"
    assert run.status["conditions"][0]["reason"] == "FilestoreNotSwapped"
    assert run.status["filestoreRestored"] is False
    assert "odoo_acme_pre_restore_x" in run.status["message"]
    assert "docs/backup.md" in run.status["message"]
    assert kube.maintenance() is None
