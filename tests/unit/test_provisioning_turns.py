"""New tenants are provisioned ``provisioningConcurrency`` at a time, in order of arrival;
tenants that exist never wait, and a queued tenant's status says where it stands."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from odoo_devstack.status_states import instance_body
from odoo_operator.handlers import odooinstance as handlers
from odoo_operator.model.config import OperatorConfig
from odoo_operator.model.outcome import Outcome
from odoo_operator.reconcile.clients import Clients
from odoo_operator.reconcile.provisioning import ProvisioningTurns


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_turns_go_in_order_of_arrival_and_a_waiter_that_timed_out_keeps_its_place() -> None:
    turns = ProvisioningTurns(limit=2)
    assert await turns.take("a", 0)
    assert await turns.take("b", 0)
    assert not await turns.take("c", 0)  # queued first
    assert not await turns.take("d", 0.01)  # queued second, gave up waiting
    assert (turns.provisioning, turns.queued, turns.ahead_of("d")) == (2, 2, 1)
    turns.release("a")
    # c's turn, though c was not waiting at that moment; d still waits.
    assert turns.holds("c")
    assert not turns.holds("d")
    assert not await turns.take("d", 0)
    turns.release("c")
    assert await turns.take("d", 0)


async def test_a_waiting_tenant_is_woken_when_a_turn_is_given_back() -> None:
    turns = ProvisioningTurns(limit=1)
    assert await turns.take("a", 0)
    waiting = asyncio.ensure_future(turns.take("b", 5))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    turns.release("a")
    assert await asyncio.wait_for(waiting, 1)


async def test_a_deleted_tenant_leaves_the_queue_and_gives_its_turn_back() -> None:
    turns = ProvisioningTurns(limit=1)
    assert await turns.take("a", 0)
    assert not await turns.take("b", 0)
    assert not await turns.take("c", 0)
    turns.release("b")  # deleted while queued
    assert turns.ahead_of("c") == 0
    turns.release("a")
    assert turns.holds("c")


async def test_a_tenant_holding_its_turn_too_long_goes_on_without_it_and_frees_it() -> None:
    clock = Clock()
    turns = ProvisioningTurns(limit=1, hold_seconds=600, clock=clock)
    assert await turns.take("broken", 0)
    assert not await turns.take("next", 0)
    clock.now = 601
    assert turns.holds("broken")  # not stopped: it goes on, but no longer counts
    assert turns.holds("next")
    assert turns.provisioning == 1


def test_a_drift_pass_takes_a_free_turn_but_never_queues_nor_jumps_the_queue() -> None:
    turns = ProvisioningTurns(limit=1)
    assert turns.try_take("stalled")
    assert not turns.try_take("other")
    assert turns.queued == 0
    turns.release("stalled")
    turns._queue["waiting"] = asyncio.Event()  # someone waits already
    assert not turns.try_take("stalled")


class NotReadyYet:
    """A provisioning pass that is not finished (its tenant keeps its turn), until told."""

    def __init__(self) -> None:
        self.passes: list[str] = []
        self.ready: set[str] = set()

    async def __call__(self, memo: kopf.Memo, body: Any, status: Any, patch: Any) -> Outcome:
        name = body["metadata"]["name"]
        self.passes.append(name)
        outcome = Outcome()
        if name in self.ready:
            outcome.set("Ready", True, "Ready", "serving")
        else:
            outcome.set("Ready", False, "Initializing", "Job odoo-init is running")
        return outcome


# kopf.Status views the status of the body it is given.
INITIALIZED = kopf.Status({"status": {"conditions": [{"type": "Initialized", "status": "True"}]}})


@pytest.fixture
def one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> tuple[kopf.Memo, NotReadyYet, list[str]]:
    passes = NotReadyYet()
    announced: list[str] = []

    async def announce_queued(clients: Clients, body: Any, message: str) -> None:
        announced.append(body["metadata"]["name"])

    monkeypatch.setattr(handlers, "_reconcile_pass", passes)
    monkeypatch.setattr(handlers, "announce_queued", announce_queued)
    monkeypatch.setattr(handlers, "_TURN_WAIT_SECONDS", 0.01)
    memo = kopf.Memo()
    config = OperatorConfig(provisioning_concurrency=1)
    memo["clients"] = Clients(kube=SimpleNamespace(cache=None), config=config)  # type: ignore[arg-type]
    return memo, passes, announced


async def test_a_new_tenant_beyond_the_limit_waits_and_says_so_in_its_status(
    one_at_a_time: tuple[kopf.Memo, NotReadyYet, list[str]],
) -> None:
    memo, passes, announced = one_at_a_time
    first, second = kopf.Body(instance_body("first")), kopf.Body(instance_body("second"))
    with pytest.raises(kopf.TemporaryError):
        await handlers._reconcile(memo, first, kopf.Status({}), kopf.Patch(), retry=True)
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError, match="0 tenants ahead, 1 provisioned now"):
        await handlers._reconcile(memo, second, kopf.Status({}), kopf.Patch(), retry=True)
    with pytest.raises(kopf.TemporaryError, match="waiting for a turn"):
        await handlers._reconcile(memo, second, kopf.Status({}), patch, retry=True)
    conditions = {c["type"]: (c["status"], c["reason"]) for c in patch["status"]["conditions"]}
    # In progress for every tool (kstatus: Reconciling=True), not yet worked on.
    assert conditions == {"Ready": ("Unknown", "Queued"), "Reconciling": ("True", "Provisioning")}
    assert passes.passes == ["first"]  # the second was not worked on
    assert announced == ["second", "second"]  # its status was empty both times here
    # A drift pass of the queued tenant does nothing either.
    await handlers._reconcile(
        memo, second, kopf.Status({}), kopf.Patch(), retry=False, trigger="drift"
    )
    assert passes.passes == ["first"]


async def test_a_tenant_that_exists_never_waits_behind_new_ones(
    one_at_a_time: tuple[kopf.Memo, NotReadyYet, list[str]],
) -> None:
    memo, passes, _ = one_at_a_time
    with pytest.raises(kopf.TemporaryError):
        await handlers._reconcile(
            memo, kopf.Body(instance_body("new")), kopf.Status({}), kopf.Patch(), retry=True
        )
    with pytest.raises(kopf.TemporaryError, match="odoo-init"):  # its own pass ran
        await handlers._reconcile(
            memo, kopf.Body(instance_body("existing")), INITIALIZED, kopf.Patch(), retry=True
        )
    assert passes.passes == ["new", "existing"]


async def test_a_tenant_gives_its_turn_back_when_ready_though_initialized_meanwhile(
    one_at_a_time: tuple[kopf.Memo, NotReadyYet, list[str]],
) -> None:
    memo, passes, _ = one_at_a_time
    first, second = kopf.Body(instance_body("first")), kopf.Body(instance_body("second"))
    with pytest.raises(kopf.TemporaryError, match="odoo-init"):
        await handlers._reconcile(memo, first, kopf.Status({}), kopf.Patch(), retry=True)
    with pytest.raises(kopf.TemporaryError, match="waiting for a turn"):
        await handlers._reconcile(memo, second, kopf.Status({}), kopf.Patch(), retry=True)
    passes.ready.add("first")
    await handlers._reconcile(memo, first, INITIALIZED, kopf.Patch(), retry=True)
    with pytest.raises(kopf.TemporaryError, match="odoo-init"):  # its turn now
        await handlers._reconcile(memo, second, kopf.Status({}), kopf.Patch(), retry=True)
    assert passes.passes == ["first", "first", "second"]
