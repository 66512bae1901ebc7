"""A backup is restored only into an instance running its Odoo major, and records the
version its database is at: the running one, not the one the spec already asks for."""

from __future__ import annotations

from typing import Any

import pytest

from odoo_operator.engine import RestoreRefused
from odoo_operator.engine.restore import check_odoo_versions
from odoo_operator.model.backup import BACKUP_KIND
from odoo_operator.model.config import BlobStoreRef, OperatorConfig, ServerRef
from odoo_operator.model.names import INSTANCE_KIND, MAINTENANCE_ANNOTATION
from odoo_operator.reconcile import backups
from odoo_operator.reconcile.clients import Clients
from odoo_operator.reconcile.restores import RestoreWaiting, run_restore_request

# --- the check -------------------------------------------------------------------------------


def test_a_backup_of_an_older_major_is_refused_with_the_way_to_migrate_it() -> None:
    with pytest.raises(RestoreRefused) as refused:
        check_odoo_versions("20260101T000000Z-ab12", "17.0", "18.0")
    message = str(refused.value)
    assert "Odoo 17.0" in message
    assert "18.0" in message
    assert "Restore it into an instance running Odoo 17.0, then upgrade" in message


def test_a_backup_of_a_newer_major_is_refused() -> None:
    with pytest.raises(RestoreRefused, match=r"Odoo 18\.0, newer than the target's 17\.0"):
        check_odoo_versions("20260101T000000Z-ab12", "18.0", "17.0")


@pytest.mark.parametrize(("backup", "target"), [("18.0", "18.0"), ("18.0", "18.0.1.3")])
def test_a_backup_of_the_same_major_passes(backup: str, target: str) -> None:
    check_odoo_versions("20260101T000000Z-ab12", backup, target)


# --- the restore flow --------------------------------------------------------------------------


class FakeKube:
    """Instances, backups and what the operator applies, in memory."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {
            (obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")): obj
            for obj in objects
        }
        self.applied: list[dict[str, Any]] = []

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return self.objects.get((kind, name, namespace))

    async def list(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return []

    async def apply(self, desired: dict[str, Any]) -> bool:
        self.applied.append(desired)
        meta = desired["metadata"]
        self.objects[(desired["kind"], meta["name"], meta.get("namespace"))] = desired
        return True

    async def patch_metadata(
        self, api_version: str, kind: str, name: str, metadata: dict[str, Any], *args: Any
    ) -> None:
        self.objects[(kind, name, None)]["metadata"].setdefault("annotations", {}).update(
            metadata.get("annotations", {})
        )

    async def patch_status(self, *args: Any, **kwargs: Any) -> None:
        return None


def _instance(spec_version: str, running_version: str) -> dict[str, Any]:
    return {
        "apiVersion": "odoo.tenantops.io/v1alpha1",
        "kind": INSTANCE_KIND,
        "metadata": {"name": "acme", "uid": "uid-1", "generation": 3},
        "spec": {"version": spec_version, "hosts": ["acme.example.com"]},
        "status": {"runningVersion": running_version, "runningImage": f"odoo:{running_version}"},
    }


def _backup(odoo_version: str) -> dict[str, Any]:
    return {
        "kind": BACKUP_KIND,
        "metadata": {"name": "acme-nightly"},
        "spec": {"instance": "acme", "reason": "scheduled"},
        "status": {
            "phase": "Succeeded",
            "backupId": "20260101T000000Z-ab12",
            "odooVersion": odoo_version,
        },
    }


def _clients(kube: FakeKube, **config: Any) -> Clients:
    return Clients(
        kube=kube,  # type: ignore[arg-type]
        config=OperatorConfig(
            postgres_servers={"main": ServerRef("main", "pg")},
            default_postgres="main",
            blob_stores={"main": BlobStoreRef("main", "blob", "backups")},
            default_blob_store="main",
            **config,
        ),
    )


RESTORE = {
    "metadata": {"name": "back-to-monday"},
    "spec": {"backup": "acme-nightly", "target": {"instance": "acme"}},
}


async def test_an_older_major_is_refused_before_the_safety_backup_and_maintenance() -> None:
    kube = FakeKube(_instance("18.0", "18.0"), _backup("17.0"))

    status = await run_restore_request(_clients(kube), RESTORE)

    assert status["phase"] == "Failed"
    assert status["conditions"][0]["reason"] == "Refused"
    assert "Odoo 17.0" in status["message"]
    assert "then upgrade that instance to 18.0" in status["message"]
    # No safety backup taken, the tenant never held in maintenance.
    assert kube.applied == []
    assert MAINTENANCE_ANNOTATION not in (
        kube.objects[(INSTANCE_KIND, "acme", None)]["metadata"].get("annotations") or {}
    )


async def test_the_check_uses_the_running_version_not_the_one_the_spec_asks_for() -> None:
    """An instance whose spec already asks for 18.0 still runs 17.0 until it is upgraded: a
    17.0 backup goes in (the safety backup is its first step), an 18.0 one does not."""
    kube = FakeKube(_instance("18.0", "17.0"), _backup("17.0"))
    with pytest.raises(RestoreWaiting, match="safety backup"):
        await run_restore_request(_clients(kube), RESTORE)
    assert [obj["kind"] for obj in kube.applied] == [BACKUP_KIND]

    newer = FakeKube(_instance("18.0", "17.0"), _backup("18.0"))
    status = await run_restore_request(_clients(newer), RESTORE)
    assert status["phase"] == "Failed"
    assert "newer than the target's 17.0" in status["message"]


# --- what a backup records ---------------------------------------------------------------------


async def test_a_backup_taken_in_process_records_the_running_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = FakeKube(_instance("18.0", "17.0"))
    clients = _clients(kube, backup_execution="inProcess")
    recorded: list[str] = []

    async def run_backup(store: Any, instance: str, backup_id: str, *rest: Any) -> Any:
        recorded.append(rest[2])  # access, filestore, odoo_version, reason
        raise RuntimeError("stopped here: only the version matters")

    async def access(*args: Any) -> object:
        return object()

    async def blob(store: BlobStoreRef) -> object:
        return ReachableStore()

    monkeypatch.setattr(backups, "run_backup", run_backup)
    monkeypatch.setattr(backups, "tenant_database_access", access)
    monkeypatch.setattr(clients, "blob", blob)
    body = {
        "metadata": {"name": "acme-pre-upgrade-x"},
        "spec": {"instance": "acme", "reason": "pre-upgrade", "retain": True},
    }

    await backups.run_backup_request(clients, body)

    assert recorded == ["17.0"]


class ReachableStore:
    """A blob store that answers (the backup writes to the primary store)."""

    async def check_reachable(self) -> None:
        return None


async def test_a_pre_upgrade_backup_job_records_the_running_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = FakeKube(
        _instance("18.0", "17.0"),
        {"kind": "Secret", "metadata": {"name": "blob", "namespace": "odoo-operator"}, "data": {}},
        {"kind": "Namespace", "metadata": {"name": "odoo-acme"}},
    )
    clients = _clients(kube)

    async def access(*args: Any) -> object:
        return object()

    async def blob(store: BlobStoreRef) -> object:
        return ReachableStore()

    monkeypatch.setattr(backups, "tenant_database_access", access)
    monkeypatch.setattr(clients, "blob", blob)
    body = {
        "metadata": {"name": "acme-pre-upgrade-x"},
        "spec": {"instance": "acme", "reason": "pre-upgrade", "retain": True},
    }

    with pytest.raises(backups.BackupWaiting):
        await backups.run_backup_request(clients, body)

    (job,) = [obj for obj in kube.applied if obj["kind"] == "Job"]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--odoo-version") + 1] == "17.0"
