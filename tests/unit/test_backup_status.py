"""How backups show on an instance (as soon as a backup ends), how backup Jobs are built, and
how stores are configured."""

from __future__ import annotations

import copy
import datetime
import logging
from collections.abc import Callable, Iterator
from typing import Any, cast

import kopf
import pytest
from test_restore_versions import FakeKube as StoredObjects

from odoo_operator import metrics
from odoo_operator.backends.kube import KubeClient, KubeConflict
from odoo_operator.builders.backup_job import BACKUP_STORE_SECRET, build_backup_job
from odoo_operator.builders.schedule import due_slot
from odoo_operator.handlers import backups as backup_handlers
from odoo_operator.handlers import odooinstance as instance_handlers
from odoo_operator.model.backup import BACKUP_KIND, BackupPolicy, RestoreRequest
from odoo_operator.model.conditions import Condition, merge_condition
from odoo_operator.model.config import ConfigError, OperatorConfig
from odoo_operator.model.names import API_VERSION, INSTANCE_KIND, INSTANCE_LABEL
from odoo_operator.model.outcome import Outcome
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.reconcile import backups
from odoo_operator.reconcile.backups import (
    backup_health,
    instance_backup_summary,
    precise_timestamp,
    scheduled_backup_name,
    timestamp,
    verification_request,
)
from odoo_operator.reconcile.clients import Clients

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


def _copied(hours_ago: float) -> list[dict[str, Any]]:
    at = timestamp(NOW - datetime.timedelta(hours=hours_ago))
    return [{"store": "northeurope", "phase": "Succeeded", "copiedAt": at}]


def test_the_rpo_holds_for_the_secondary_store_too() -> None:
    body = _instance(rpo="26h", secondaryStoreRef="northeurope")
    fresh = backup_health(body, [_backup("a", 2, copies=_copied(1.9))])
    assert fresh is not None
    assert (fresh.status, fresh.reason) == ("True", "WithinRPO")
    assert "newest checked copy in store northeurope" in fresh.message
    # The primary is fresh, but its copies stopped a day and a half ago.
    stale = backup_health(
        body, [_backup("old", 40, copies=_copied(39)), _backup("new", 2, copies=[])]
    )
    assert stale is not None
    assert (stale.status, stale.reason) == ("False", "CopyRPOExceeded")
    assert stale.message.startswith("the newest checked copy in store northeurope: completed at")
    # The first backup's copy is still within its time: not a breach yet.
    pending = backup_health(body, [_backup("first", 1, copies=[])])
    assert pending is not None
    assert (pending.status, pending.reason) == ("True", "WithinRPO")
    assert pending.message.endswith("its copy is pending")


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


# --- the instance's backup state when a backup ends -------------------------------------------


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A JSON merge patch (RFC 7386), as the API server applies it."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class BackupKube(StoredObjects):
    """The stored-objects fake of test_restore_versions.py, with what the backup handlers and
    the instance's backup state use: lists by label, status patches with a resourceVersion
    precondition, Events and deletions."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        super().__init__(*objects)
        self.events: list[dict[str, Any]] = []
        self.writes = 0
        # Called before a status patch is applied: what another writer does meanwhile.
        self.meanwhile: Callable[[dict[str, Any]], None] | None = None

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        key, _, value = (label_selector or "").partition("=")
        return [
            copy.deepcopy(obj)
            for (k, _, _), obj in self.objects.items()
            if k == kind and (not key or obj["metadata"].get("labels", {}).get(key) == value)
        ]

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get((kind, name, namespace)))

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        status: dict[str, Any],
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> None:
        stored = self.objects[(kind, name, namespace)]
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile(stored)
        version = stored["metadata"].get("resourceVersion")
        if resource_version is not None and resource_version != version:
            raise KubeConflict(f"patching {kind} {name}", {"code": 409, "reason": "Conflict"})
        _merge(stored.setdefault("status", {}), status)
        stored["metadata"]["resourceVersion"] = str(int(version or 0) + 1)
        self.writes += 1

    async def create(self, body: dict[str, Any]) -> None:
        self.events.append(body)

    async def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> bool:
        return self.objects.pop((kind, name, namespace), None) is not None

    def instance_events(self) -> list[tuple[str, str]]:
        return [
            (e["type"], e["reason"])
            for e in self.events
            if e["involvedObject"]["kind"] == INSTANCE_KIND
        ]

    def health(self) -> dict[str, Any]:
        status = self.objects[(INSTANCE_KIND, "acme", None)]["status"]
        return next(c for c in status["conditions"] if c["type"] == "BackupHealthy")


def _tenant(**status: Any) -> dict[str, Any]:
    body = _instance(rpo="26h", verify="AfterEachBackup")
    body["apiVersion"], body["kind"] = API_VERSION, INSTANCE_KIND
    body["metadata"].update(uid="uid-acme", generation=2, resourceVersion="10")
    conditions: list[dict[str, Any]] = []
    for condition in (
        Condition("Ready", "True", "Ready", "serving"),
        Condition("BackupHealthy", "Unknown", "NoBackupYet", "the first backup is pending"),
    ):
        conditions = merge_condition(conditions, condition, 2, now="2026-11-30T08:00:00Z")
    # The schedule's last slot is taken: no scheduled backup is due in these tests.
    body["status"] = {"conditions": conditions, "lastScheduledBackup": timestamp(NOW), **status}
    return body


def _new_backup(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": BACKUP_KIND,
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": {INSTANCE_LABEL: "acme"}},
        "spec": {"instance": "acme", "reason": "on-demand"},
        "status": {"phase": "Running", "backupId": f"id-{name}", "store": "main"},
    }


def _backup_clients(kube: BackupKube) -> Clients:
    return Clients(kube=cast(KubeClient, kube), config=OperatorConfig())


async def _take(
    monkeypatch: pytest.MonkeyPatch, kube: BackupKube, name: str, outcome: dict[str, Any]
) -> kopf.Patch:
    """Run the OdooBackup handler on ``name`` as Kopf does, the backup itself ending as
    ``outcome`` says and its verification passing."""
    body = kube.objects[(BACKUP_KIND, name, None)]

    async def run(clients: Clients, backup: Any) -> backups.BackupResult:
        return backups.BackupResult(outcome)

    async def verify(clients: Clients, backup: Any) -> dict[str, Any]:
        return {"result": "Passed", "checkedAt": timestamp(NOW), "message": "restored"}

    monkeypatch.setattr(backup_handlers, "run_backup_request", run)
    monkeypatch.setattr(backup_handlers, "verify_request", verify)
    memo = kopf.Memo()
    memo["clients"] = _backup_clients(kube)
    patch = kopf.Patch()
    await backup_handlers.take_backup(
        memo=memo, body=copy.deepcopy(body), patch=patch, logger=logging.getLogger("test")
    )
    return patch


def _succeeded(name: str) -> dict[str, Any]:
    done = backups.finished(
        _new_backup(name)["status"], "Succeeded", "Succeeded", "backed up in 1.0s"
    )
    return {**done, "sizeBytes": 100}


@pytest.fixture
def tracked() -> Iterator[None]:
    """The instance's metrics are tracked, as after its first reconcile pass."""
    metrics.record_outcome("acme", Outcome())
    yield
    metrics.forget_instance("acme")


@pytest.mark.usefixtures("tracked")
async def test_a_finished_backup_makes_its_instance_backup_healthy_in_the_same_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = BackupKube(_tenant(), _new_backup("acme-1"))

    await _take(monkeypatch, kube, "acme-1", _succeeded("acme-1"))

    status = kube.objects[(INSTANCE_KIND, "acme", None)]["status"]
    health = kube.health()
    assert (health["status"], health["reason"]) == ("True", "WithinRPO")
    assert health["lastTransitionTime"] != "2026-11-30T08:00:00Z"
    assert status["lastBackup"]["id"] == status["lastVerifiedBackup"]["id"] == "id-acme-1"
    # The rest of the instance's status is left as its own passes wrote it.
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"
    assert kube.instance_events() == [("Normal", "BackupHealthy")]
    # The tenant's condition series follows at once too.
    series = "odoo_operator_tenant_condition"
    labels = {"instance": "acme", "condition": "BackupHealthy", "status": "True"}
    assert metrics.REGISTRY.get_sample_value(series, labels) == 1

    # Nothing changed since: another refresh (a verification answered again, say) writes
    # nothing and posts no second Event.
    writes = kube.writes
    assert await backups.refresh_instance_backup_state(_backup_clients(kube), "acme") is not None
    assert kube.writes == writes
    assert kube.instance_events() == [("Normal", "BackupHealthy")]


async def test_a_failed_backup_makes_its_instance_unhealthy_with_a_warning_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = BackupKube(_tenant(), _new_backup("acme-1"))
    failed = backups.finished(
        _new_backup("acme-1")["status"], "Failed", "BackupFailed", "pg_dump: connection refused"
    )

    patch = await _take(monkeypatch, kube, "acme-1", failed)

    # The backup's own status is written before the instance's state is computed from it.
    assert kube.objects[(BACKUP_KIND, "acme-1", None)]["status"]["phase"] == "Failed"
    assert not patch.status
    health = kube.health()
    assert (health["status"], health["reason"]) == ("False", "BackupFailed")
    assert "OdooBackup acme-1 failed: pg_dump: connection refused" in health["message"]
    assert kube.instance_events() == [("Warning", "BackupFailed")]


async def test_the_backup_state_is_written_onto_the_instance_as_read_never_over_a_newer_one() -> (
    None
):
    kube = BackupKube(_tenant(), {**_new_backup("acme-1"), "status": _succeeded("acme-1")})

    def instance_handler_writes(stored: dict[str, Any]) -> None:
        # The instance's own pass publishes Ready=False between the read and the write.
        stored["status"]["conditions"] = merge_condition(
            stored["status"]["conditions"],
            Condition("Ready", "False", "RollingOut", "waiting for odoo-web"),
            2,
        )
        stored["metadata"]["resourceVersion"] = "11"

    kube.meanwhile = instance_handler_writes
    health = await backups.refresh_instance_backup_state(_backup_clients(kube), "acme")

    assert health is not None
    assert health.status == "True"
    conditions = {
        c["type"]: c for c in kube.objects[(INSTANCE_KIND, "acme", None)]["status"]["conditions"]
    }
    assert conditions["Ready"]["status"] == "False"  # kept: read again, not overwritten
    assert conditions["BackupHealthy"]["status"] == "True"
    assert kube.instance_events() == [("Normal", "BackupHealthy")]


async def test_backup_healthy_turning_true_is_one_normal_event_not_one_per_pass() -> None:
    async def pass_over(
        status: dict[str, Any], health: Condition
    ) -> tuple[dict[str, Any], list[Any]]:
        """The instance handler publishing a pass's outcome over ``status``: the status
        after it, and the Events it posted about the instance."""
        kube = BackupKube()
        outcome = Outcome()
        outcome.conditions += [Condition("Ready", "True", "Ready", "serving"), health]
        patch = kopf.Patch()
        body = {**_tenant(), "status": status}
        await instance_handlers._publish(_backup_clients(kube), outcome, body, status, patch, 2)
        return {**status, **dict(patch.status)}, kube.instance_events()

    healthy = Condition("BackupHealthy", "True", "WithinRPO", "newest good backup ...")
    first, events = await pass_over(_tenant()["status"], healthy)
    assert events == [("Normal", "BackupHealthy")]
    _, events = await pass_over(first, healthy)
    assert events == []  # the next drift pass: nothing new
    failed = Condition("BackupHealthy", "False", "BackupFailed", "OdooBackup b failed")
    unhealthy, events = await pass_over(first, failed)
    assert events == [("Warning", "BackupFailed")]
    _, events = await pass_over(unhealthy, healthy)
    assert events == [("Normal", "BackupHealthy")]  # healthy again
