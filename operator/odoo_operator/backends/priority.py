"""Urgent work first: the turns of every bounded client go to urgent callers before others.

The operator bounds its concurrency toward each external system (16 requests in flight to
the apiserver, a few pooled connections per PostgreSQL server). During a fleet rollout
hundreds of provisioning passes queue for those turns; without priorities, an urgent pass (a
deletion, a credential rotation, a restore) would wait behind all of them, at every call.
A task marks itself urgent with :func:`urgent`; every :class:`UrgentFirstSemaphore` then
serves it before any waiter that is not, first come first served within each class.

asyncio has no priority semaphore, and the libraries that offer one bring a scheduler with
them; this is the few lines the two queues need.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import Iterator
from types import TracebackType

_URGENT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "odoo_operator_urgent", default=False
)


@contextlib.contextmanager
def urgent() -> Iterator[None]:
    """Mark the calls made by this task (and tasks it starts) within the block as urgent."""
    token = _URGENT.set(True)
    try:
        yield
    finally:
        _URGENT.reset(token)


def is_urgent() -> bool:
    """Whether the current task runs urgent work."""
    return _URGENT.get()


class UrgentFirstSemaphore:
    """A semaphore of ``value`` turns whose urgent waiters go before the others."""

    def __init__(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"a semaphore needs at least one turn, not {value}")
        self._free = value
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Callers waiting for a turn."""
        return sum(1 for f in (*self._urgent, *self._normal) if not f.done())

    async def acquire(self) -> None:
        """Wait for a turn: at once if one is free and nobody waits."""
        if self._free > 0 and not self._urgent and not self._normal:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if is_urgent() else self._normal
        queue.append(turn)
        self._grant()  # a free turn and only abandoned waiters before this one
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # granted as the waiter was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(turn)
            raise

    def release(self) -> None:
        """Give a turn back; the first urgent waiter, else the first other one, gets it."""
        self._free += 1
        self._grant()

    def _grant(self) -> None:
        while self._free > 0:
            turn = self._next_waiter()
            if turn is None:
                return
            self._free -= 1
            turn.set_result(None)

    def _next_waiter(self) -> asyncio.Future[None] | None:
        for queue in (self._urgent, self._normal):
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    return turn
        return None

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
