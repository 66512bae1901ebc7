"""One reconcile pass per tenant at a time, whatever starts it; idle tenants are not polled
for upgrades."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from odoo_devstack.status_states import healthy_outcome, instance_body
from odoo_operator.handlers import odooinstance as handlers
from odoo_operator.model.config import OperatorConfig
from odoo_operator.model.outcome import Outcome
from odoo_operator.reconcile.clients import Clients
from odoo_operator.reconcile.upgrades import upgrade_work_pending


class StoppedAtOnce:
    """Kopf's stop flag of a timer whose tenant was deleted: set, waiting returns at once."""

    def __bool__(self) -> bool:
        return True

    async def wait(self, timeout: float) -> None:
        return None


class SlowPasses:
    """Stands in for a pass that takes a while (a slow backend), counting overlaps."""

    def __init__(self) -> None:
        self.running: dict[str, int] = {}
        self.most_at_once: dict[str, int] = {}
        self.passes: list[str] = []

    async def __call__(self, memo: kopf.Memo, body: Any, status: Any, patch: Any) -> Outcome:
        name = body["metadata"]["name"]
        self.running[name] = self.running.get(name, 0) + 1
        self.most_at_once[name] = max(self.most_at_once.get(name, 0), self.running[name])
        await asyncio.sleep(0.05)
        self.running[name] -= 1
        self.passes.append(name)
        outcome = healthy_outcome()
        outcome.phase = "Ready"
        outcome.set("Ready", True, "Ready", "serving")
        return outcome


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> SlowPasses:
    passes = SlowPasses()
    monkeypatch.setattr(handlers, "_reconcile_pass", passes)
    return passes


def _memo() -> kopf.Memo:
    memo = kopf.Memo()
    memo["clients"] = Clients(kube=SimpleNamespace(cache=None), config=OperatorConfig())  # type: ignore[arg-type]
    return memo


async def test_passes_of_one_tenant_never_overlap_and_a_drift_pass_meanwhile_is_skipped(
    slow: SlowPasses,
) -> None:
    memo = _memo()
    acme, globex = kopf.Body(instance_body("acme")), kopf.Body(instance_body("globex"))

    def run(body: kopf.Body, trigger: str) -> Any:
        return handlers._reconcile(
            memo, body, kopf.Status({}), kopf.Patch(), retry=False, trigger=trigger
        )

    await asyncio.gather(
        run(acme, "change"), run(acme, "change"), run(acme, "drift"), run(globex, "change")
    )
    assert slow.most_at_once == {"acme": 1, "globex": 1}
    # Both changes ran, one after the other; the drift pass found one under way and left.
    assert slow.passes.count("acme") == 2
    # Other tenants are not held up by acme's lock.
    assert slow.passes.index("globex") < slow.passes.index("acme", 1)


def test_only_instances_with_upgrade_work_are_polled_for_upgrades() -> None:
    body = instance_body("acme")
    body["status"] = {"runningImage": "odoo:18.0", "runningVersion": "18.0"}
    assert not upgrade_work_pending(body, "odoo:18.0")  # idle: no timer, no reads
    assert upgrade_work_pending(body, "odoo:18.0-2")  # a new image to move to
    body["status"]["upgrade"] = {"id": "u1", "step": "backup"}
    assert upgrade_work_pending(body, "odoo:18.0")  # under way
    body["status"]["upgrade"] = {"id": "u1", "step": "done", "kept": "odoo_acme_pre"}
    assert upgrade_work_pending(body, "odoo:18.0")  # a kept database to drop
    body["status"]["upgrade"]["keptDroppedAt"] = "2026-11-30T10:00:00Z"
    assert not upgrade_work_pending(body, "odoo:18.0")
    body["metadata"]["annotations"] = {"odoo.tenantops.io/maintenance": "upgrade/u1"}
    assert upgrade_work_pending(body, "odoo:18.0")  # a hold to release
    del body["status"]["runningImage"]
    body["metadata"]["annotations"] = {}
    assert not upgrade_work_pending(body, "odoo:19.0")  # not provisioned: no upgrade yet


def test_a_tenant_not_ready_yet_is_retried_soon_then_every_five_seconds() -> None:
    assert [handlers.retry_delay(n) for n in range(6)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert handlers.retry_delay(10_000) == 5.0


async def test_each_tenants_first_drift_pass_starts_at_a_random_point_of_the_interval(
    slow: SlowPasses, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return 0.001

    monkeypatch.setattr(handlers.random, "uniform", uniform)
    memo = _memo()
    for name in ("acme", "globex", "acme", "globex"):
        body = kopf.Body(instance_body(name))
        await handlers.repair_drift(
            memo=memo, body=body, status=kopf.Status({}), patch=kopf.Patch()
        )
    # Offset once per tenant, then every interval from there: the fleet never passes at once.
    assert drawn == [(0, handlers.DRIFT_INTERVAL_SECONDS)] * 2
    assert slow.passes == ["acme", "globex", "acme", "globex"]


async def test_a_deletion_waits_for_the_pass_under_way_and_no_pass_runs_after_it(
    slow: SlowPasses, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped_while_running: list[int] = []

    async def nothing(*args: Any) -> None:
        return None

    async def delete_instance(clients: Any, body: Any) -> list[str]:
        dropped_while_running.append(slow.running.get("acme", 0))
        return ["dropped database and role odoo_acme"]

    monkeypatch.setattr(handlers, "_say_terminating", nothing)
    monkeypatch.setattr(handlers, "pre_delete_backup_pending", nothing)
    monkeypatch.setattr(handlers, "delete_instance", delete_instance)
    monkeypatch.setattr(handlers.random, "uniform", lambda low, high: 0.0)
    memo = _memo()
    body = instance_body("acme")
    drift = asyncio.create_task(
        handlers.repair_drift(
            memo=memo, body=kopf.Body(body), status=kopf.Status({}), patch=kopf.Patch()
        )
    )
    await asyncio.sleep(0.01)  # the drift pass is under way
    deleting = dict(
        body, metadata={**body["metadata"], "deletionTimestamp": "2026-11-30T14:00:00Z"}
    )
    logger = SimpleNamespace(info=lambda message: None)
    await handlers.delete_tenant(memo=memo, body=kopf.Body(deleting), logger=logger)
    await drift
    assert dropped_while_running == [0]  # dropped only once the pass had finished
    await handlers.repair_drift(
        memo=memo,
        body=kopf.Body(deleting),
        status=kopf.Status({}),
        patch=kopf.Patch(),
    )
    assert slow.passes == ["acme"]  # no pass for a tenant being deleted


async def test_a_tenant_deleted_while_its_first_drift_pass_waits_is_let_go_at_once(
    slow: SlowPasses,
) -> None:
    # Kopf waits for a deleted tenant's timer to end before it removes the finalizer: the
    # spread wait must end with Kopf's stop flag, not sleep out its offset.
    await handlers.repair_drift(
        memo=_memo(),
        body=kopf.Body(instance_body("acme")),
        status=kopf.Status({}),
        patch=kopf.Patch(),
        stopped=StoppedAtOnce(),  # type: ignore[arg-type]
    )
    assert slow.passes == []
