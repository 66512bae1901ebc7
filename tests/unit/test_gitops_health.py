"""GitOps health: Argo CD's Lua health checks and kstatus, against the operator's own status.

The Lua scripts shipped in charts/odoo-operator/files/argocd run in a real Lua 5.1
interpreter (lupa; Argo CD's gopher-lua implements Lua 5.1) the way Argo CD runs a
`resource.customizations.health` script: the object as the global `obj`, a table
`{status=..., message=...}` back.

The kstatus checks implement the rules of sigs.k8s.io/cli-utils kstatus (what Flux's health
checks and `kstatus` use) for a custom resource: Terminating while deleted; InProgress while
`status.observedGeneration` differs from `metadata.generation`; InProgress while
`Reconciling` is True; Failed while `Stalled` is True; otherwise Current. They are applied
to statuses produced by the operator's own code (model.conditions, the reconcile outcome and
the handler that publishes it), not to hand-written ones.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kopf
import pytest
from lupa import lua51

from odoo_operator.handlers import odooinstance as handlers
from odoo_operator.model.conditions import Condition, merge_condition
from odoo_operator.model.config import OperatorConfig
from odoo_operator.reconcile import instance as reconcile
from odoo_operator.reconcile.backups import finished, in_progress_conditions, still_in_progress

CHECKS = Path(__file__).parents[2] / "charts" / "odoo-operator" / "files" / "argocd"


def argocd_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run the shipped health check of ``kind`` on ``obj`` as Argo CD does."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((CHECKS / f"{kind.lower()}.lua").read_text())
    health = dict(result.items())
    assert health["status"] in {"Healthy", "Progressing", "Degraded", "Suspended"}, health
    assert isinstance(health.get("message"), str), health
    return health


def kstatus(obj: dict[str, Any]) -> str:
    """The kstatus status of a custom resource (cli-utils' generic rules)."""
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        return "InProgress"
    for condition in status.get("conditions") or []:
        if condition["type"] == "Reconciling" and condition["status"] == "True":
            return "InProgress"
        if condition["type"] == "Stalled" and condition["status"] == "True":
            return "Failed"
    return "Current"


# -- statuses made by the operator's code -----------------------------------------------------


def instance(generation: int = 1, suspend: bool = False, **status: Any) -> dict[str, Any]:
    """An OdooInstance body (status empty unless given)."""
    body: dict[str, Any] = {
        "apiVersion": "odoo.tenantops.io/v1alpha1",
        "kind": "OdooInstance",
        "metadata": {"name": "acme", "generation": generation, "uid": "u-1"},
        "spec": {
            "version": "18.0",
            "hosts": ["acme.example.com"],
            "tls": {"secretName": "acme-tls"},
            "suspend": suspend,
        },
    }
    if status:
        body["status"] = status
    return body


class RecordingKube:
    """The operator's kube client, reduced to recording status patches."""

    def __init__(self) -> None:
        self.writes = 0
        self.status: dict[str, Any] = {}
        self.created: list[dict[str, Any]] = []

    async def patch_status(self, api_version: str, kind: str, name: str, status: Any) -> None:
        self.status.update(status)

    async def create(self, body: dict[str, Any]) -> None:
        self.created.append(body)  # the Events the handler posts


def first_sight(body: dict[str, Any]) -> dict[str, Any]:
    """What the operator publishes the moment it sees a new instance."""
    kube = RecordingKube()
    asyncio.run(reconcile.announce_first_sight(SimpleNamespace(kube=kube), body))
    return kube.status


def published(body: dict[str, Any], outcome: reconcile.Outcome) -> dict[str, Any]:
    """The status after the handler publishes a reconcile outcome (as reconcile ends it)."""
    finished = reconcile._finish(outcome, SimpleNamespace(kube=RecordingKube()), 0)
    patch = kopf.Patch()
    status = dict(body.get("status") or {})
    clients = SimpleNamespace(kube=RecordingKube())
    asyncio.run(
        handlers._publish(
            clients,  # type: ignore[arg-type]
            finished,
            body,
            status,
            patch,
            body["metadata"]["generation"],
        )
    )
    return {**status, **dict(patch.status)}


def healthy_outcome(suspended: bool = False) -> reconcile.Outcome:
    outcome = reconcile.Outcome()
    for part in ("DatabaseReady", "RedisReady", "Initialized", "IngressReady"):
        outcome.set(part, True, "Provisioned", f"{part} done")
    if suspended:
        outcome.set("WorkloadReady", True, "Suspended", "web and cron are scaled to zero")
        outcome.phase = "Suspended"
    else:
        outcome.set("WorkloadReady", True, "Available", "web and cron are available")
    return outcome


def rolling_outcome() -> reconcile.Outcome:
    outcome = healthy_outcome()
    outcome.conditions = [c for c in outcome.conditions if c.type != "WorkloadReady"]
    outcome.set("WorkloadReady", False, "RollingOut", "waiting for odoo-web to be available")
    return outcome


def stalled_status(body: dict[str, Any]) -> dict[str, Any]:
    """The real handler on an instance its configuration cannot serve (no servers)."""
    kube = RecordingKube()
    clients = SimpleNamespace(kube=kube, config=OperatorConfig())
    patch = kopf.Patch()
    status = dict(body.get("status") or {})
    asyncio.run(handlers._reconcile({"clients": clients}, body, status, patch, retry=False))
    return {**status, **kube.status, **dict(patch.status)}


def with_status(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {**body, "status": status}


# -- kstatus ----------------------------------------------------------------------------------


def test_kstatus_in_progress_from_first_sight_until_ready_then_current() -> None:
    body = instance()
    # Before the operator sees it, kstatus cannot tell (no status): Current. This is why the
    # operator publishes Ready=Unknown and Reconciling=True at once.
    assert kstatus(body) == "Current"
    seen = with_status(body, first_sight(body))
    assert kstatus(seen) == "InProgress"
    rolling = with_status(body, published(seen, rolling_outcome()))
    assert kstatus(rolling) == "InProgress"
    ready = with_status(body, published(rolling, healthy_outcome()))
    assert kstatus(ready) == "Current"
    assert {c["type"]: c["status"] for c in ready["status"]["conditions"]}["Ready"] == "True"


def test_kstatus_in_progress_until_the_new_generation_is_observed() -> None:
    ready = with_status(instance(), published(instance(), healthy_outcome()))
    edited = {**ready, "metadata": {**ready["metadata"], "generation": 2}}
    assert kstatus(edited) == "InProgress"
    caught_up = with_status(edited, published(edited, healthy_outcome()))
    assert caught_up["status"]["observedGeneration"] == 2
    assert kstatus(caught_up) == "Current"


def test_kstatus_failed_when_stalled() -> None:
    body = instance()
    stalled = with_status(body, stalled_status(body))
    conditions = {c["type"]: c for c in stalled["status"]["conditions"]}
    assert conditions["Stalled"]["status"] == "True"
    assert conditions["Stalled"]["reason"] == "InvalidConfiguration"
    assert kstatus(stalled) == "Failed"
    deleted = {**stalled, "metadata": {**stalled["metadata"], "deletionTimestamp": "2026-01-01"}}
    assert kstatus(deleted) == "Terminating"


def test_current_means_ready_or_held_on_purpose_for_every_status_the_operator_publishes() -> None:
    body = instance()
    statuses = [
        first_sight(body),
        published(body, rolling_outcome()),
        published(body, healthy_outcome()),
        published(body, healthy_outcome(suspended=True)),
        stalled_status(body),
    ]
    for status in statuses:
        conditions = {c["type"]: c for c in status["conditions"]}
        current = kstatus(with_status(body, status)) == "Current"
        held = status["phase"] in ("Suspended", "Maintenance")
        assert current == (conditions["Ready"]["status"] == "True" or held), conditions


def test_a_suspended_tenant_is_not_ready_and_says_why() -> None:
    """Scaled to zero on purpose: nobody is served, so Ready is False (kubectl wait and Argo
    CD must not count it as serving), with the phase as reason; nothing is in progress."""
    status = published(instance(suspend=True), healthy_outcome(suspended=True))
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Suspended"
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "Suspended")
    assert conditions["Ready"]["message"].startswith("not serving: ")
    assert conditions["Reconciling"]["status"] == "False"
    assert conditions["Stalled"]["status"] == "False"


def test_merge_condition_keeps_the_transition_time_while_the_status_holds() -> None:
    first = merge_condition([], Condition("Ready", "True", "Ready", "serving"), 1, now="t1")
    again = merge_condition(first, Condition("Ready", "True", "Ready", "serving"), 2, now="t2")
    assert again[0]["lastTransitionTime"] == "t1"
    assert again[0]["observedGeneration"] == 2


# -- Argo CD ----------------------------------------------------------------------------------


def test_argocd_instance_ready_is_healthy() -> None:
    body = instance()
    health = argocd_health("OdooInstance", with_status(body, published(body, healthy_outcome())))
    assert health == {"status": "Healthy", "message": "the tenant is serving"}


def test_argocd_instance_stalled_is_degraded_with_the_reason() -> None:
    body = instance()
    health = argocd_health("OdooInstance", with_status(body, stalled_status(body)))
    assert health["status"] == "Degraded"
    assert "PostgreSQL" in health["message"]


def test_argocd_instance_progressing_while_a_generation_is_not_observed() -> None:
    body = instance()
    ready = with_status(body, published(body, healthy_outcome()))
    edited = {**ready, "metadata": {**ready["metadata"], "generation": 2}}
    health = argocd_health("OdooInstance", edited)
    assert health["status"] == "Progressing"
    assert "generation 2" in health["message"]


def test_argocd_instance_progressing_before_status_and_while_reconciling() -> None:
    body = instance()
    assert argocd_health("OdooInstance", body)["status"] == "Progressing"
    assert argocd_health("OdooInstance", with_status(body, first_sight(body)))["status"] == (
        "Progressing"
    )
    rolling = argocd_health("OdooInstance", with_status(body, published(body, rolling_outcome())))
    assert rolling["status"] == "Progressing"
    assert "odoo-web" in rolling["message"]


def test_argocd_instance_suspended() -> None:
    body = instance(suspend=True)
    status = published(body, healthy_outcome(suspended=True))
    assert status["phase"] == "Suspended"
    health = argocd_health("OdooInstance", with_status(body, status))
    assert health["status"] == "Suspended"
    assert health["message"].startswith("not serving: web and cron are scaled to zero")


def test_argocd_instance_not_ready_without_reconciling_is_degraded() -> None:
    body = instance(
        observedGeneration=1,
        conditions=[
            {"type": "Ready", "status": "False", "message": "database gone"},
            {"type": "Reconciling", "status": "False"},
        ],
    )
    assert argocd_health("OdooInstance", body) == {"status": "Degraded", "message": "database gone"}


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        ("OdooBackup", None, "Progressing"),
        ("OdooBackup", {"phase": "Pending"}, "Progressing"),
        ("OdooBackup", {"phase": "Running", "message": "dumping"}, "Progressing"),
        ("OdooBackup", {"phase": "Succeeded", "message": "12 MB"}, "Healthy"),
        ("OdooBackup", {"phase": "Failed", "message": "pg_dump: connection refused"}, "Degraded"),
        (
            "OdooBackup",
            {"phase": "Succeeded", "verification": {"result": "Failed", "message": "rows"}},
            "Degraded",
        ),
        (
            "OdooBackup",
            {"phase": "Succeeded", "verification": {"result": "Passed"}},
            "Healthy",
        ),
        ("OdooRestore", None, "Progressing"),
        ("OdooRestore", {"phase": "Running", "step": "restoring"}, "Progressing"),
        ("OdooRestore", {"phase": "Succeeded"}, "Healthy"),
        ("OdooRestore", {"phase": "Failed", "message": "checksum mismatch"}, "Degraded"),
    ],
)
def test_argocd_backup_and_restore_follow_their_phase(
    kind: str, status: dict[str, Any] | None, expected: str
) -> None:
    obj: dict[str, Any] = {
        "apiVersion": "odoo.tenantops.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "acme-1", "generation": 1},
        "spec": {"instance": "acme"},
    }
    if status is not None:
        obj["status"] = status
    health = argocd_health(kind, obj)
    assert health["status"] == expected
    if status and status.get("message") and expected != "Healthy":
        assert status["message"] in health["message"]


def test_a_deleted_instance_says_at_once_that_it_is_not_serving() -> None:
    """Its namespace and pods may already be gone: from the first moment of a deletion the
    status says Terminating, never Ready."""
    body = with_status(instance(), published(instance(), healthy_outcome()))
    body["spec"]["deletionPolicy"] = "Delete"
    kube = RecordingKube()
    asyncio.run(handlers._say_terminating(SimpleNamespace(kube=kube), body))  # type: ignore[arg-type]
    conditions = {c["type"]: c for c in kube.status["conditions"]}
    assert kube.status["phase"] == "Terminating"
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
        "False",
        "Terminating",
    )
    assert "deletionPolicy Delete" in conditions["Ready"]["message"]
    assert conditions["Reconciling"]["status"] == "True"
    deleted = {
        **body,
        "metadata": {**body["metadata"], "deletionTimestamp": "2026-11-30T08:00:00Z"},
        "status": kube.status,
    }
    assert kstatus(deleted) == "Terminating"
    assert argocd_health("OdooInstance", deleted)["status"] != "Healthy"


def test_kstatus_reads_backups_and_restores_in_progress_then_current_or_failed() -> None:
    """A failed OdooBackup or OdooRestore is Failed to kstatus (it is never tried again), a
    running one InProgress, a succeeded one Current and Ready."""
    body: dict[str, Any] = {"kind": "OdooBackup", "metadata": {"name": "b", "generation": 1}}
    running = {**body, "status": {"conditions": in_progress_conditions("under way")}}
    assert kstatus(running) == "InProgress"
    assert still_in_progress(running)
    ok = {**body, "status": finished({}, "Succeeded", "Uploaded", "done")}
    assert kstatus(ok) == "Current"
    assert {c["type"]: c["status"] for c in ok["status"]["conditions"]}["Ready"] == "True"
    failed = {**body, "status": finished({}, "Failed", "NoManifest", "no manifest")}
    assert kstatus(failed) == "Failed"
    assert not still_in_progress(failed)
