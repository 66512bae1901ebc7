"""Urgent work (a deletion, a rotation, a restore) is not starved by a fleet rollout: every
bounded client serves urgent callers first, first come first served within each class."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from odoo_operator.backends.kube import KubeClient
from odoo_operator.backends.priority import UrgentFirstSemaphore, is_urgent, urgent
from odoo_operator.handlers import odooinstance, restores
from odoo_operator.model.config import OperatorConfig
from odoo_operator.reconcile.provisioning import ProvisioningTurns


async def _queue_up(turns: UrgentFirstSemaphore, order: list[str], name: str) -> None:
    async with turns:
        order.append(name)
        await asyncio.sleep(0)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_urgent_waiter_goes_before_every_other_waiter() -> None:
    turns, order = UrgentFirstSemaphore(1), []
    await turns.acquire()
    rollout = [asyncio.create_task(_queue_up(turns, order, f"tenant-{n}")) for n in range(50)]
    await _settle()

    async def deletion() -> None:
        with urgent():
            await _queue_up(turns, order, "deletion")

    urgent_task = asyncio.create_task(deletion())
    await _settle()
    assert turns.waiting == 51
    turns.release()
    await asyncio.gather(*rollout, urgent_task)
    assert order[0] == "deletion"
    assert order[1:] == [f"tenant-{n}" for n in range(50)]  # the rest in arrival order


async def test_urgency_is_the_tasks_own_and_ends_with_the_block() -> None:
    seen: list[bool] = []

    async def other() -> None:
        seen.append(is_urgent())

    with urgent():
        seen.append(is_urgent())
    seen.append(is_urgent())
    await asyncio.create_task(other())
    assert seen == [True, False, False]


async def test_a_cancelled_waiter_loses_no_turn() -> None:
    turns, order = UrgentFirstSemaphore(1), []
    await turns.acquire()
    given_up = asyncio.create_task(_queue_up(turns, order, "gave up"))
    waiting = asyncio.create_task(_queue_up(turns, order, "waited"))
    await _settle()
    given_up.cancel()
    turns.release()
    await waiting
    assert order == ["waited"]
    # Granted, then cancelled before it ran: the turn passes on instead of being lost.
    await turns.acquire()
    granted = asyncio.create_task(_queue_up(turns, order, "granted then cancelled"))
    after = asyncio.create_task(_queue_up(turns, order, "after"))
    await _settle()
    turns.release()
    granted.cancel()
    await asyncio.wait_for(after, 1)
    assert order == ["waited", "after"]
    await turns.acquire()  # every turn came back
    turns.release()


def test_a_semaphore_without_turns_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one turn"):
        UrgentFirstSemaphore(0)


async def test_a_deletion_behind_a_rollout_of_a_thousand_calls_goes_next() -> None:
    kube = KubeClient(api=None, max_concurrency=4)  # type: ignore[arg-type]
    finished: list[str] = []

    def call(name: str) -> Any:
        async def send() -> dict[str, Any]:
            await asyncio.sleep(0.001)
            finished.append(name)
            return {}

        return send

    rollout = [asyncio.create_task(kube._request("get", call(f"tenant-{n}"))) for n in range(1000)]
    await asyncio.sleep(0.005)  # the rollout holds every turn and a long queue waits

    async def delete() -> None:
        with urgent():
            await kube._request("delete", call("deletion"))

    await asyncio.gather(delete(), *rollout)
    # Behind at most the calls in flight when it arrived, and a few that finished meanwhile.
    assert finished.index("deletion") < 40, finished.index("deletion")


async def test_deletions_rotations_and_restores_run_urgent(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, bool] = {}

    async def say_terminating(clients: Any, body: Any) -> None:
        seen["deletion notice"] = is_urgent()

    async def nothing_pending(clients: Any, body: Any) -> None:
        return None

    async def delete_instance(clients: Any, body: Any) -> list[str]:
        seen["deletion"] = is_urgent()
        return []

    async def reconcile_pass(memo: Any, body: Any, status: Any, patch: Any) -> Any:
        seen[f"pass {body['metadata']['name']}"] = is_urgent()
        raise RuntimeError("enough")

    async def run_restore_request(clients: Any, body: Any) -> Any:
        seen["restore"] = is_urgent()
        raise RuntimeError("enough")

    monkeypatch.setattr(odooinstance, "_say_terminating", say_terminating)
    monkeypatch.setattr(odooinstance, "pre_delete_backup_pending", nothing_pending)
    monkeypatch.setattr(odooinstance, "delete_instance", delete_instance)
    monkeypatch.setattr(odooinstance, "_reconcile_pass", reconcile_pass)
    monkeypatch.setattr(restores, "run_restore_request", run_restore_request)
    memo = kopf.Memo()
    memo["clients"] = type(
        "Clients",
        (),
        {
            "pass_lock": lambda self, name: asyncio.Lock(),
            "drift_spread": set(),
            "provisioning_turns": ProvisioningTurns(limit=10),
            "kube": SimpleNamespace(cache=None),  # no watch cache
            "config": OperatorConfig(),  # no blob store: no operations journal
        },
    )()
    body = {"metadata": {"name": "acme"}, "spec": {}}
    await odooinstance.delete_tenant(memo=memo, body=kopf.Body(body), logger=None)  # type: ignore[arg-type]
    rotating = {
        "metadata": {
            "name": "rotating",
            "annotations": {"odoo.tenantops.io/rotate-credentials": "CHG-2"},
        },
        "status": {"credentialsRotation": "CHG-1"},
    }
    rotated = {**rotating, "metadata": {**rotating["metadata"], "name": "rotated"}}
    rotated["status"] = {"credentialsRotation": "CHG-2"}
    for tenant in (rotating, rotated):
        with pytest.raises(RuntimeError):
            await odooinstance._reconcile(
                memo,
                kopf.Body(tenant),
                kopf.Body(tenant).status,
                kopf.Patch(),
                retry=False,
            )
    with pytest.raises(RuntimeError):
        await restores.restore(memo=memo, body=kopf.Body({}), patch=kopf.Patch())
    assert seen == {
        "deletion notice": True,
        "deletion": True,
        "pass rotating": True,
        "pass rotated": False,  # the rotation is done: an ordinary pass
        "restore": True,
    }
