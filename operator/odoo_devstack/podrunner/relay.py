"""Host loopback services inside pods, at the same address: ``127.0.0.1:<port>``.

PostgreSQL, Redis, Azurite and the API server of the local stack listen on the host's
127.0.0.1 only, and a pod's 127.0.0.1 is its own namespace's loopback. Rather than make
the services listen elsewhere or rewrite addresses with NAT rules on a shared machine, the
runner listens on ``127.0.0.1:<port>`` *inside* each pod's namespace (a socket created by a
thread that joined the namespace) and pipes every connection to ``127.0.0.1:<port>`` on the
host. A connection string that works for the operator on the host therefore works
unchanged in a pod, which is what the operator's tenants get: the servers are registered
once, by their loopback address.

Only the ports the runner is told about are relayed (the API server's by default; more
through :meth:`RealNodeProcess.forward_host_port`): a pod may listen on any other port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

from .network import run_in_netns

_CHUNK = 64 * 1024
_LOOPBACK = "127.0.0.1"


def _listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((_LOOPBACK, port))
    sock.listen(64)
    sock.setblocking(False)
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class PodRelays:
    """The relays of one pod: a listener per host port inside the pod's namespace."""

    def __init__(self, netns_path: Path) -> None:
        self._netns_path = netns_path
        self._servers: dict[int, asyncio.Server] = {}
        self._connections: set[asyncio.Task[None]] = set()
        self.errors: dict[int, str] = {}

    @property
    def ports(self) -> set[int]:
        """The ports relayed now."""
        return set(self._servers)

    async def add(self, port: int) -> None:
        """Relay ``port``; a port the pod already uses itself is recorded in ``errors``."""
        if port in self._servers:
            return
        try:
            sock = await asyncio.to_thread(
                run_in_netns, self._netns_path, lambda: _listening_socket(port)
            )
        except OSError as exc:
            self.errors[port] = str(exc)
            return
        self._servers[port] = await asyncio.start_server(
            lambda r, w: self._accepted(r, w, port), sock=sock
        )

    def _accepted(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        task = asyncio.create_task(self._relay(reader, writer, port))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _relay(
        self, pod_reader: asyncio.StreamReader, pod_writer: asyncio.StreamWriter, port: int
    ) -> None:
        try:
            host_reader, host_writer = await asyncio.open_connection(_LOOPBACK, port)
        except OSError:
            # Nothing listens on the host: the pod sees a reset, as it would connecting there.
            pod_writer.close()
            return
        try:
            await asyncio.gather(_pipe(pod_reader, host_writer), _pipe(host_reader, pod_writer))
        finally:
            for writer in (pod_writer, host_writer):
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()

    async def close(self) -> None:
        """Stop listening and cut every relayed connection."""
        for server in self._servers.values():
            server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for server in self._servers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        self._servers.clear()
