"""The statuses the operator's own code publishes, one per state of each kind.

The tests of how tools read the operator (kstatus, ``kubectl wait``, Argo CD, Flux) take
their statuses from here: each is made by the function the operator runs in that state (the
first-sight announcement, the reconcile outcome as the handler publishes it, the stalled
handler, the deletion notice, the end of a backup or restore), never written by hand, so a
change to what the operator publishes changes what the tests check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import kopf

from odoo_operator.handlers import odooinstance as handlers
from odoo_operator.model.config import OperatorConfig
from odoo_operator.model.outcome import Outcome
from odoo_operator.reconcile import instance as reconcile
from odoo_operator.reconcile.backups import finished, in_progress_conditions, with_verification
from odoo_operator.reconcile.clients import Clients

API_VERSION = "odoo.tenantops.io/v1alpha1"


def instance_body(name: str = "acme", generation: int = 1, suspend: bool = False) -> dict[str, Any]:
    """An OdooInstance as a platform team writes it, without status."""
    return {
        "apiVersion": API_VERSION,
        "kind": "OdooInstance",
        "metadata": {"name": name, "generation": generation, "uid": f"uid-{name}"},
        "spec": {
            "version": "18.0",
            "hosts": [f"{name}.example.com"],
            "tls": {"secretName": f"{name}-tls"},
            "suspend": suspend,
        },
    }


def with_status(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """``body`` carrying ``status``."""
    return {**body, "status": status}


class RecordingKube:
    """The operator's Kubernetes client, reduced to recording status patches and Events."""

    def __init__(self) -> None:
        self.writes = 0
        self.status: dict[str, Any] = {}
        self.created: list[dict[str, Any]] = []

    async def patch_status(self, api_version: str, kind: str, name: str, status: Any) -> None:
        self.status.update(status)

    async def create(self, body: dict[str, Any]) -> None:
        self.created.append(body)


# No blob store registered: the status tests write no operations journal.
NO_STORES = OperatorConfig()


def first_sight(body: dict[str, Any]) -> dict[str, Any]:
    """What the operator publishes the moment it sees a new instance."""
    kube = RecordingKube()
    asyncio.run(reconcile.announce_first_sight(SimpleNamespace(kube=kube, config=NO_STORES), body))  # type: ignore[arg-type]
    return kube.status


def queued(body: dict[str, Any]) -> dict[str, Any]:
    """What the operator publishes for a new instance that waits for its turn to provision."""
    kube = RecordingKube()
    clients = SimpleNamespace(kube=kube, config=NO_STORES)
    asyncio.run(reconcile.announce_queued(clients, body, "waiting for a turn to provision"))  # type: ignore[arg-type]
    return kube.status


def published(body: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    """The status after the handler publishes a reconcile outcome, as a pass ends it."""
    done = reconcile._finish(outcome, SimpleNamespace(kube=RecordingKube(), config=NO_STORES), 0)  # type: ignore[arg-type]
    patch = kopf.Patch()
    status = dict(body.get("status") or {})
    clients = SimpleNamespace(kube=RecordingKube(), config=NO_STORES)
    generation = body["metadata"]["generation"]
    asyncio.run(handlers._publish(clients, done, body, status, patch, generation))  # type: ignore[arg-type]
    return {**status, **dict(patch.status)}


def healthy_outcome(held: str | None = None) -> Outcome:
    """Every part done; ``held`` (``Suspended``, ``Maintenance`` or ``Hibernating``): at zero
    pods on purpose."""
    outcome = Outcome()
    for part in ("DatabaseReady", "RedisReady", "Initialized", "IngressReady"):
        outcome.set(part, True, "Provisioned", f"{part} done")
    if held == "Suspended":
        outcome.set("WorkloadReady", True, "Suspended", "web and cron are scaled to zero")
    elif held == "Maintenance":
        outcome.set("WorkloadReady", True, "Maintenance", "held at zero by restore/acme-1")
    elif held == "Hibernating":
        outcome.set("WorkloadReady", True, "Hibernating", "hibernating until 07:00")
    else:
        outcome.set("WorkloadReady", True, "Available", "web and cron are available")
    if held:
        outcome.phase = held
    return outcome


def failing_outcome() -> Outcome:
    """A part failing for a reason that passes (a server not answering): retried."""
    outcome = healthy_outcome()
    outcome.conditions = [c for c in outcome.conditions if c.type != "DatabaseReady"]
    outcome.set("DatabaseReady", False, "ServerUnavailable", "PostgreSQL server main: refused")
    return outcome


def rolling_outcome() -> Outcome:
    """Everything done but the workloads, which are rolling out."""
    outcome = healthy_outcome()
    outcome.conditions = [c for c in outcome.conditions if c.type != "WorkloadReady"]
    outcome.set("WorkloadReady", False, "RollingOut", "waiting for odoo-web to be available")
    return outcome


def stalled_status(body: dict[str, Any]) -> dict[str, Any]:
    """The real handler on an instance its configuration cannot serve (no servers at all)."""
    kube = RecordingKube()
    clients = Clients(kube=kube, config=OperatorConfig())  # type: ignore[arg-type]
    patch = kopf.Patch()
    status = dict(body.get("status") or {})
    asyncio.run(handlers._reconcile({"clients": clients}, body, status, patch, retry=False))  # type: ignore[arg-type]
    return {**status, **kube.status, **dict(patch.status)}


def terminating_status(body: dict[str, Any]) -> dict[str, Any]:
    """What the operator says from the first moment of a deletion."""
    kube = RecordingKube()
    asyncio.run(handlers._say_terminating(SimpleNamespace(kube=kube, config=NO_STORES), body))  # type: ignore[arg-type]
    return {**(body.get("status") or {}), **kube.status}


# -- OdooBackup and OdooRestore ---------------------------------------------------------------


def run_status(phase: str, message: str) -> dict[str, Any]:
    """An OdooBackup or OdooRestore waiting or under way."""
    return {"phase": phase, "message": message, "conditions": in_progress_conditions(message)}


def succeeded_status(**fields: Any) -> dict[str, Any]:
    """An OdooBackup or OdooRestore that succeeded, with ``fields`` besides."""
    return {**finished({}, "Succeeded", "Succeeded", "done"), **fields}


def failed_status(reason: str, message: str) -> dict[str, Any]:
    """An OdooBackup or OdooRestore that failed for good."""
    return finished({}, "Failed", reason, message)


INSTANCE_STATES: dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {
    "created, not yet seen by the operator": lambda body: None,
    "first sight": first_sight,
    "queued: waiting for a turn to provision": queued,
    "provisioning: a part failing for a reason that passes": lambda body: published(
        with_status(body, first_sight(body)), failing_outcome()
    ),
    "provisioning: rolling out": lambda body: published(
        with_status(body, first_sight(body)), rolling_outcome()
    ),
    "serving": lambda body: published(body, healthy_outcome()),
    "spec changed, not yet observed": lambda body: published(body, healthy_outcome()),
    "suspended (`spec.suspend`)": lambda body: published(body, healthy_outcome("Suspended")),
    "held by a restore or an upgrade": lambda body: published(body, healthy_outcome("Maintenance")),
    "hibernating (`spec.hibernation`, outside its windows)": lambda body: published(
        body, healthy_outcome("Hibernating")
    ),
    "permanent problem (configuration, boundaries)": stalled_status,
    "being deleted": lambda body: terminating_status(
        with_status(body, published(body, healthy_outcome()))
    ),
}
"""Each state of an OdooInstance, and how the operator's code makes its status from the
instance's body (None: no status)."""

BACKUP_STATES: dict[str, Callable[[], dict[str, Any] | None]] = {
    "created, not yet seen by the operator": lambda: None,
    "pending": lambda: run_status("Pending", "waiting for the tenant's other backup to end"),
    "running": lambda: run_status("Running", "backup Job odoo-backup-1 is running"),
    "succeeded, verification passed": lambda: with_verification(
        succeeded_status(), {"result": "Passed", "message": "12 tables, 3,100 rows restored"}
    ),
    "succeeded, verification failed": lambda: with_verification(
        succeeded_status(), {"result": "Failed", "message": "restore into scratch failed"}
    ),
    "failed": lambda: failed_status("JobFailed", "pg_dump: connection refused"),
}
"""Each state of an OdooBackup and its status as the operator's code makes it."""

RESTORE_STATES: dict[str, Callable[[], dict[str, Any] | None]] = {
    "created, not yet seen by the operator": lambda: None,
    "running": lambda: {**run_status("Running", "restoring the database"), "step": "restoring"},
    "succeeded": lambda: succeeded_status(),
    "failed": lambda: failed_status("ChecksumMismatch", "checksum mismatch: nothing was changed"),
}
"""Each state of an OdooRestore and its status as the operator's code makes it."""
