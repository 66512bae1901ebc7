"""Turns to provision: at most N new tenants provisioned at once, first come first served.

A fleet rollout creates hundreds of tenants within seconds. Provisioned all at once, each
gets a thin slice of the API server and none is Ready until nearly all are; their passes
also retry side by side, each retry a write. With turns, the first tenants applied are the
first Ready and the others wait in order, reading and writing nothing.

Only a tenant's first provisioning takes a turn (its database not yet initialized): a
change, a resume or a repair of a tenant that exists never waits behind a rollout. A turn
is held until the tenant is Ready, stalled, held or deleted, and at most ``hold_seconds``:
a tenant that cannot become Ready (an image that does not pull) then goes on without a
turn, so a few broken tenants cannot hold up the fleet's.

asyncio's Semaphore does not fit: the same tenant asks again at each retry of its pass and
must find its turn (or its place in the queue) where it left it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ProvisioningTurns:
    """Who provisions now (by tenant name) and who waits, in order of arrival."""

    limit: int
    hold_seconds: float = 600.0
    clock: Callable[[], float] = time.monotonic
    _holders: dict[str, float] = field(default_factory=dict)  # name -> when its turn began
    _overdue: set[str] = field(default_factory=set)  # held too long: go on without a turn
    _queue: dict[str, asyncio.Event] = field(default_factory=dict)  # in order of arrival

    @property
    def provisioning(self) -> int:
        """Tenants holding a turn."""
        return len(self._holders)

    @property
    def queued(self) -> int:
        """Tenants waiting for a turn."""
        return len(self._queue)

    def holds(self, name: str) -> bool:
        """Whether tenant ``name`` may provision now (a turn, or one held too long)."""
        self._expire()
        return name in self._holders or name in self._overdue

    def ahead_of(self, name: str) -> int:
        """How many tenants wait before ``name`` (all of them when it does not wait)."""
        for position, waiting in enumerate(self._queue):
            if waiting == name:
                return position
        return len(self._queue)

    def try_take(self, name: str) -> bool:
        """A turn for tenant ``name`` if one is free and nobody waits; it does not queue."""
        if self.holds(name):
            return True
        if self._queue or len(self._holders) >= self.limit:
            return False
        self._holders[name] = self.clock()
        return True

    async def take(self, name: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for tenant ``name``'s turn; whether it has one.
        A tenant that times out keeps its place for its next call."""
        if self.holds(name):
            return True
        granted = self._queue.setdefault(name, asyncio.Event())
        self._grant()
        if not granted.is_set():
            try:
                await asyncio.wait_for(granted.wait(), timeout)
            except TimeoutError:
                return False
        return self.holds(name)

    def release(self, name: str) -> None:
        """Tenant ``name`` is done provisioning (Ready, stalled, held or deleted): its turn,
        or its place in the queue, goes to the next."""
        self._holders.pop(name, None)
        self._overdue.discard(name)
        self._queue.pop(name, None)
        self._grant()

    def _expire(self) -> None:
        now = self.clock()
        for name, since in list(self._holders.items()):
            if now - since > self.hold_seconds:
                del self._holders[name]
                self._overdue.add(name)
        self._grant()

    def _grant(self) -> None:
        while self._queue and len(self._holders) < self.limit:
            name = next(iter(self._queue))
            self._holders[name] = self.clock()
            self._queue.pop(name).set()
