"""TLS for the local data services: their throw-away CA, and listeners clients must refuse.

:func:`service_certificates` makes one CA per process (with :class:`~.pki.LocalPKI`, as the
control plane does) and two server certificates from it: one for ``localhost`` and
``127.0.0.1``, which PostgreSQL and Redis present (see :mod:`.services`), and one for
``wrong.example`` only. Both chain to the same CA, so a client that refuses the second does
so because of the name, which is exactly what ``verify-full`` adds to ``verify-ca``.

:class:`TlsProxy` is a loopback listener in front of a real server. It presents a chosen
certificate (the wrong-name one) or, for PostgreSQL, declines TLS as a server with
``ssl=off`` does, then relays bytes both ways. Through it a client meets a server with the
wrong certificate, or one not offering TLS, while everything else is the real server.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import shutil
import ssl
import struct
import tempfile
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import redis
from psycopg.conninfo import conninfo_to_dict

from .pki import CertPair, LocalPKI

WRONG_NAME = "wrong.example"
# The 8-byte requests a PostgreSQL client may send before its startup message: its length,
# then one of these codes (PostgreSQL's protocol, "SSLRequest" and "GSSENCRequest").
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_READ_SIZE = 65536

Protocol = Literal["postgresql", "redis"]


@dataclass(frozen=True)
class ServiceCertificates:
    """The local data services' CA certificate and the two server certificates it issued."""

    ca: Path
    server: CertPair  # localhost and 127.0.0.1
    wrong_name: CertPair  # wrong.example only


@functools.cache
def service_certificates() -> ServiceCertificates:
    """The process's service CA and certificates, made on first use and removed at exit."""
    directory = Path(tempfile.mkdtemp(prefix="odoo-service-pki-"))
    atexit.register(shutil.rmtree, directory, True)
    pki = LocalPKI(directory)
    return ServiceCertificates(
        ca=pki.ca.cert,
        server=pki.issue(
            "server", "localhost", server_names=("localhost",), server_ips=("127.0.0.1",)
        ),
        wrong_name=pki.issue("wrong-name", WRONG_NAME, server_names=(WRONG_NAME,)),
    )


class TlsProxy:
    """Relays loopback connections to ``backend_port``, presenting ``certificate``.

    With ``certificate`` None a PostgreSQL proxy answers the client's SSLRequest with "N",
    as a server without TLS does, and relays in clear. It runs an event loop in a thread of
    its own, so synchronous and asynchronous tests can both use it; :meth:`stop` ends it.
    """

    def __init__(self, protocol: Protocol, backend_port: int, certificate: CertPair | None) -> None:
        """Prepare a proxy; nothing listens before :meth:`start`."""
        if protocol == "redis" and certificate is None:
            raise ValueError("a Redis proxy without TLS is the server's own plain port")
        self.protocol = protocol
        self.backend_port = backend_port
        self.port = 0
        self._context: ssl.SSLContext | None = None
        if certificate is not None:
            self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._context.load_cert_chain(certificate.cert, certificate.key)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def start(self) -> TlsProxy:
        """Listen on a free loopback port (:attr:`port`) and relay until :meth:`stop`."""
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0)
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"tls-proxy-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every relayed connection, then end the thread."""
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop.close()

    def __enter__(self) -> TlsProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._relay(reader, writer)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            # The client gave up, as one that refuses the certificate must: not an error.
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = b""
        if self.protocol == "postgresql":
            first = await self._negotiate_postgresql(reader, writer)
        elif self._context is not None:
            await writer.start_tls(self._context)
        backend_reader, backend_writer = await asyncio.open_connection(
            "127.0.0.1", self.backend_port
        )
        try:
            backend_writer.write(first)
            await asyncio.gather(_pipe(reader, backend_writer), _pipe(backend_reader, writer))
        finally:
            backend_writer.close()

    async def _negotiate_postgresql(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        """Answer the client's encryption requests; return its startup message, which the
        backend gets as from a client that asked for no encryption."""
        while True:
            header = await reader.readexactly(8)
            length, code = struct.unpack("!II", header)
            if length == 8 and code == _SSL_REQUEST and self._context is not None:
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(self._context)
            elif length == 8 and code in (_SSL_REQUEST, _GSSENC_REQUEST):
                writer.write(b"N")
                await writer.drain()
            else:
                return header + await reader.readexactly(length - 8)


async def _pipe(source: asyncio.StreamReader, destination: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError):
        while chunk := await source.read(_READ_SIZE):
            destination.write(chunk)
            await destination.drain()
    # One side finished: ending the other makes its reader finish too.
    with contextlib.suppress(OSError, RuntimeError):
        destination.close()


@dataclass
class ServiceTlsEndpoints:
    """The TLS side of a running local PostgreSQL and Redis (:mod:`.services`), and proxies
    in front of them that clients verifying the server must refuse.

    ``postgres_port`` and ``redis_tls_port`` present the right certificate;
    ``*_wrong_name_port`` one for ``wrong.example`` from the same CA; ``postgres_plain_port``
    a PostgreSQL that does not offer TLS; ``redis_plain_port`` is Redis's own plain port.
    """

    ca: Path
    postgres_port: int
    postgres_wrong_name_port: int
    postgres_plain_port: int
    redis_tls_port: int
    redis_plain_port: int
    redis_wrong_name_port: int
    _proxies: ExitStack = field(default_factory=ExitStack, repr=False)

    @classmethod
    def start(cls, postgres_dsn: str, redis_url: str) -> ServiceTlsEndpoints:
        """Start the proxies for the servers behind ``postgres_dsn`` and ``redis_url``,
        which must have been started by :mod:`.services` in this process (their CA is this
        process's :func:`service_certificates`)."""
        certificates = service_certificates()
        postgres_port = int(str(conninfo_to_dict(postgres_dsn).get("port") or 5432))
        admin = redis.Redis.from_url(redis_url, socket_timeout=5)
        try:
            # The server's own word for its TLS port; 0 means it has none.
            redis_tls_port = int(admin.config_get("tls-port").get("tls-port") or 0)
            redis_plain_port = int(admin.connection_pool.connection_kwargs["port"])
        finally:
            admin.close()
        if not redis_tls_port:
            raise RuntimeError("the Redis server has no tls-port: start it from .services")
        proxies = ExitStack()
        try:
            wrong_postgres = proxies.enter_context(
                TlsProxy("postgresql", postgres_port, certificates.wrong_name)
            )
            plain_postgres = proxies.enter_context(TlsProxy("postgresql", postgres_port, None))
            wrong_redis = proxies.enter_context(
                TlsProxy("redis", redis_plain_port, certificates.wrong_name)
            )
        except BaseException:
            proxies.close()
            raise
        return cls(
            ca=certificates.ca,
            postgres_port=postgres_port,
            postgres_wrong_name_port=wrong_postgres.port,
            postgres_plain_port=plain_postgres.port,
            redis_tls_port=redis_tls_port,
            redis_plain_port=redis_plain_port,
            redis_wrong_name_port=wrong_redis.port,
            _proxies=proxies,
        )

    def stop(self) -> None:
        """Stop the proxies; the servers are left running."""
        self._proxies.close()

    def __enter__(self) -> ServiceTlsEndpoints:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
