"""GitOps health: Argo CD's Lua health checks against the operator's own status, and the
conditions kstatus, Flux and ``kubectl wait`` read.

The Lua scripts shipped in charts/odoo-operator/files/argocd run in a real Lua 5.1
interpreter (lupa; Argo CD's gopher-lua implements Lua 5.1) the way Argo CD runs a
`resource.customizations.health` script. The statuses are produced by the operator's own
code (odoo_devstack.status_states), not written by hand. What the real kstatus library and
kubectl conclude, state by state, is tested on the real API server against the truth tables
of docs/status.md (tests/integration/test_status_truth_table.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from odoo_devstack.status_readers import argocd_health
from odoo_devstack.status_states import (
    RecordingKube,
    first_sight,
    healthy_outcome,
    published,
    rolling_outcome,
    stalled_status,
    with_status,
)
from odoo_devstack.status_states import instance_body as instance
from odoo_operator.handlers import odooinstance as handlers
from odoo_operator.model.conditions import AWAITING_OPERATOR, Condition, merge_condition
from odoo_operator.model.config import OperatorConfig
from odoo_operator.reconcile.backups import finished, in_progress_conditions, still_in_progress

CRDS = Path(__file__).parents[2] / "crds"


def conditions_of(obj_or_status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    status = obj_or_status.get("status", obj_or_status)
    return {c["type"]: c for c in status["conditions"]}


# -- the conditions kstatus and kubectl read ------------------------------------------------


def test_a_pass_publishes_the_generation_it_observed() -> None:
    ready = with_status(instance(), published(instance(), healthy_outcome()))
    edited = {**ready, "metadata": {**ready["metadata"], "generation": 2}}
    caught_up = with_status(edited, published(edited, healthy_outcome()))
    assert caught_up["status"]["observedGeneration"] == 2
    assert all(c["observedGeneration"] == 2 for c in caught_up["status"]["conditions"])


def test_every_status_the_operator_publishes_is_ready_reconciling_or_stalled() -> None:
    """Exactly one of: Ready True, Reconciling True, Stalled True, or held on purpose; no
    status leaves a tool to guess."""
    body = instance()
    statuses = [
        first_sight(body),
        published(body, rolling_outcome()),
        published(body, healthy_outcome()),
        published(body, healthy_outcome("Suspended")),
        published(body, healthy_outcome("Maintenance")),
        published(body, healthy_outcome("Hibernating")),
        stalled_status(body),
    ]
    for status in statuses:
        conditions = conditions_of(status)
        flags = [
            conditions.get(t, {}).get("status") == "True"
            for t in ("Ready", "Reconciling", "Stalled")
        ]
        held = status["phase"] in ("Suspended", "Maintenance", "Hibernating")
        assert sum(flags) + held == 1, conditions


def test_a_suspended_tenant_is_not_ready_and_says_why() -> None:
    """Scaled to zero on purpose: nobody is served, so Ready is False (kubectl wait and Argo
    CD must not count it as serving), with the phase as reason; nothing is in progress."""
    status = published(instance(suspend=True), healthy_outcome("Suspended"))
    conditions = conditions_of(status)
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
    status = published(body, healthy_outcome("Suspended"))
    assert status["phase"] == "Suspended"
    health = argocd_health("OdooInstance", with_status(body, status))
    assert health["status"] == "Suspended"
    assert health["message"].startswith("not serving: web and cron are scaled to zero")


def test_argocd_instance_not_ready_without_reconciling_is_degraded() -> None:
    body = with_status(
        instance(),
        {
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "False", "message": "database gone"},
                {"type": "Reconciling", "status": "False"},
            ],
        },
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
    asyncio.run(
        handlers._say_terminating(SimpleNamespace(kube=kube, config=OperatorConfig()), body)
    )  # type: ignore[arg-type]
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
    assert argocd_health("OdooInstance", deleted)["status"] != "Healthy"


def test_backups_and_restores_say_running_then_ready_or_stalled_for_good() -> None:
    """A failed OdooBackup or OdooRestore is Failed to kstatus (it is never tried again), a
    running one InProgress, a succeeded one Current and Ready."""
    body: dict[str, Any] = {"kind": "OdooBackup", "metadata": {"name": "b", "generation": 1}}
    running = {**body, "status": {"conditions": in_progress_conditions("under way")}}
    assert conditions_of(running)["Reconciling"]["status"] == "True"
    assert still_in_progress(running)
    ok = {**body, "status": finished({}, "Succeeded", "Uploaded", "done")}
    assert {c["type"]: c["status"] for c in ok["status"]["conditions"]}["Ready"] == "True"
    failed = {**body, "status": finished({}, "Failed", "NoManifest", "no manifest")}
    assert conditions_of(failed)["Stalled"]["status"] == "True"
    assert not still_in_progress(failed)


def test_a_new_backup_read_with_the_crds_default_status_still_gets_its_conditions() -> None:
    """The CRDs give an object without status Reconciling=True (AwaitingOperator) when it
    is read; that is not a run under way, so the handler writes its own conditions."""
    crd = yaml.safe_load((CRDS / "odoobackups.odoo.tenantops.io.yaml").read_text())
    status_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    default = status_schema["default"]
    assert default["conditions"][0]["reason"] == AWAITING_OPERATOR
    body: dict[str, Any] = {"kind": "OdooBackup", "metadata": {"name": "b"}, "status": default}
    assert not still_in_progress(body)
    running = {**body, "status": {"conditions": in_progress_conditions("under way")}}
    assert still_in_progress(running)
