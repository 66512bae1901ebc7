"""Byte streams between the event loop and worker threads, with bounded buffering.

``tarfile`` is synchronous: it reads from and writes to file objects. The engine runs it in
a dedicated thread and connects that thread to the async world (blob uploads and downloads)
through a bounded queue, so neither side can run ahead by more than a few chunks: memory
stays bounded whatever the size of the filestore, and the event loop is never blocked by
disk I/O or tar parsing.

Dedicated threads rather than the loop's default executor: a tar can take minutes, and a
few of them must not starve the executor that ``asyncio.to_thread`` (hashing, file writes)
relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

CHUNK_SIZE = 1024 * 1024
QUEUE_DEPTH = 4
# How often a waiting worker thread checks whether the loop side gave up.
_POLL_SECONDS = 0.2
_THREAD_HASH_BYTES = 256 * 1024


class Abandoned(Exception):  # noqa: N818 - reads as what happened
    """The event-loop side stopped listening; the worker thread must stop."""


@dataclass(frozen=True)
class _End:
    error: BaseException | None = None


class _Channel(Generic[T]):
    """A bounded queue between the event loop and one worker thread."""

    def __init__(self, depth: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[T] = asyncio.Queue(depth)
        self._abandoned = threading.Event()

    def call(self, coroutine: Coroutine[Any, Any, R]) -> R:
        """From the worker thread: run ``coroutine`` on the loop and wait for its result.

        Raises :class:`Abandoned` when the loop side has given up meanwhile.
        """
        if self._abandoned.is_set():
            coroutine.close()
            raise Abandoned
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        while True:
            try:
                return future.result(timeout=_POLL_SECONDS)
            except TimeoutError:
                if self._abandoned.is_set():
                    future.cancel()
                    raise Abandoned from None

    def abandon(self) -> None:
        """From the loop: the worker's pending and future calls raise :class:`Abandoned`."""
        self._abandoned.set()


def _start_thread(name: str, work: Callable[[], R]) -> asyncio.Future[R]:
    """Run ``work`` in a new daemon thread; the returned future resolves on the loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[R] = loop.create_future()

    def settle(result: R | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = work()
        except BaseException as error:  # noqa: BLE001 - handed to the loop as is
            with contextlib.suppress(RuntimeError):  # the loop may be closed
                loop.call_soon_threadsafe(settle, None, error)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class ThreadWriter(io.RawIOBase):
    """A write-only file for a worker thread; what is written is yielded on the loop."""

    def __init__(self, channel: _Channel[bytes | _End], chunk_size: int) -> None:
        super().__init__()
        self._channel = channel
        self._chunk_size = chunk_size
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        raise io.UnsupportedOperation("write-only")

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        while len(self._buffer) >= self._chunk_size:
            chunk = bytes(self._buffer[: self._chunk_size])
            del self._buffer[: self._chunk_size]
            self._channel.call(self._channel.queue.put(chunk))
        return len(view)

    def flush_all(self) -> None:
        """Hand over what is still buffered."""
        if self._buffer:
            chunk = bytes(self._buffer)
            self._buffer.clear()
            self._channel.call(self._channel.queue.put(chunk))


class ThreadReader(io.RawIOBase):
    """A read-only file for a worker thread, fed with chunks from the loop."""

    def __init__(self, channel: _Channel[bytes | None]) -> None:
        super().__init__()
        self._channel = channel
        self._buffer = b""
        self._offset = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        while self._offset >= len(self._buffer):
            if self._eof:
                return False
            chunk = self._channel.call(self._channel.queue.get())
            if chunk is None:
                self._eof = True
                return False
            self._buffer, self._offset = chunk, 0
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            pieces = []
            while self._fill():
                pieces.append(self._buffer[self._offset :])
                self._offset = len(self._buffer)
            return b"".join(pieces)
        if size == 0 or not self._fill():
            return b""
        piece = self._buffer[self._offset : self._offset + size]
        self._offset += len(piece)
        return piece

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Consume the rest of the stream, so that the feeding side reaches its end."""
        while self._fill():
            self._offset = len(self._buffer)

    def call_in_loop(self, coroutine: Coroutine[Any, Any, R]) -> R:
        """Run ``coroutine`` on the event loop from the worker thread and wait for it."""
        return self._channel.call(coroutine)


async def iterate_thread_output(
    name: str,
    work: Callable[[ThreadWriter], object],
    *,
    chunk_size: int = CHUNK_SIZE,
    depth: int = QUEUE_DEPTH,
) -> AsyncGenerator[bytes, None]:
    """Yield what ``work`` writes to its file, ``work`` running in a thread called ``name``.

    At most ``depth`` chunks of ``chunk_size`` bytes wait between the two sides. An error
    raised by ``work`` is raised here; closing this iterator early stops ``work`` (its next
    write raises :class:`Abandoned`).
    """
    channel: _Channel[bytes | _End] = _Channel(depth)

    def run() -> None:
        writer = ThreadWriter(channel, chunk_size)
        try:
            work(writer)
            writer.flush_all()
        except Abandoned:
            return
        except BaseException as error:  # noqa: BLE001 - raised again on the loop side
            with contextlib.suppress(Abandoned):
                channel.call(channel.queue.put(_End(error)))
            return
        with contextlib.suppress(Abandoned):
            channel.call(channel.queue.put(_End()))

    finished = _start_thread(name, run)
    try:
        while True:
            item = await channel.queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        channel.abandon()
        # The worker notices within _POLL_SECONDS; wait for it so no thread outlives us.
        with contextlib.suppress(Exception):
            await asyncio.shield(finished)


async def run_thread_on_input(
    name: str,
    chunks: AsyncIterator[bytes],
    work: Callable[[ThreadReader], R],
    *,
    depth: int = QUEUE_DEPTH,
) -> R:
    """Run ``work`` in a thread called ``name``, reading ``chunks`` as a file; its result.

    When ``work`` returns before the end of the stream, the rest is still consumed, so a
    hashing wrapper around ``chunks`` sees every byte. An error of ``work`` or of ``chunks``
    is raised here, after the other side has stopped.
    """
    channel: _Channel[bytes | None] = _Channel(depth)

    def run() -> R:
        reader = ThreadReader(channel)
        result = work(reader)
        reader.drain()
        return result

    async def feed() -> None:
        async for chunk in chunks:
            await channel.queue.put(chunk)
        await channel.queue.put(None)

    worker = _start_thread(name, run)
    feeder = asyncio.ensure_future(feed())
    try:
        pending: set[asyncio.Future[Any]] = {worker, feeder}
        await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        if feeder.done() and feeder.exception() is not None:
            raise feeder.exception()  # type: ignore[misc]
        return await worker
    finally:
        channel.abandon()
        feeder.cancel()
        with contextlib.suppress(BaseException):
            await feeder
        with contextlib.suppress(BaseException):
            await asyncio.shield(worker)


class HashingIterator:
    """Passes chunks through while counting bytes and computing their SHA-256."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._digest = hashlib.sha256()
        self.size = 0
        self.finished = False

    def __aiter__(self) -> HashingIterator:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self.finished = True
            raise
        if len(chunk) >= _THREAD_HASH_BYTES:
            await asyncio.to_thread(self._digest.update, chunk)
        else:
            self._digest.update(chunk)
        self.size += len(chunk)
        return chunk

    async def drain(self) -> None:
        """Read (and hash) whatever the consumer left unread."""
        async for _ in self:
            pass

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes seen so far."""
        return self._digest.hexdigest()

    async def aclose(self) -> None:
        """Close the underlying iterator (an async generator's ``finally`` runs now)."""
        close: Callable[[], Awaitable[None]] | None = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()


def first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf error of a task group's failure.

    One cause is enough for a status condition; the others are usually consequences of the
    cancellation it triggered.
    """
    first = group.exceptions[0]
    return first_cause(first) if isinstance(first, BaseExceptionGroup) else first
