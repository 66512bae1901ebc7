"""Shared clients of the operator, created at startup and closed at cleanup.

Admin connections to registered servers are opened on first use, from the
Secrets named in the operator configuration (in the operator's namespace).

A server whose registry entry has ``tls`` is reached as it says: PostgreSQL with its
``sslmode`` and, for the verifying modes, ``sslrootcert`` naming the CA bundle written to a
private temporary file (libpq reads the root certificate from a file only); Redis with TLS,
the certificate checked against the bundle and the host. CA bundles are read once, with
the admin pool; a changed CA Secret takes effect when the operator restarts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import psycopg
from azure.identity.aio import DefaultAzureCredential
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..backends.blobstore import BlobStore
from ..backends.kube import KubeClient
from ..backends.postgres import PostgresAdmin
from ..backends.redis import RedisAdmin
from ..builders.postgres import SuperuserRequiredError
from ..builders.tenant import Endpoint
from ..model.claims import ClaimsIndex
from ..model.config import BlobStoreRef, ConfigError, OperatorConfig, ServerRef, ServerTls
from .provisioning import ProvisioningTurns

ServerKind = Literal["PostgreSQL", "Redis"]


logger = logging.getLogger(__name__)


@dataclass
class Clients:
    """The Kubernetes client, the configuration and one admin pool per registered server."""

    kube: KubeClient
    config: OperatorConfig
    _postgres: dict[str, tuple[PostgresAdmin, Endpoint]] = field(default_factory=dict)
    _redis: dict[str, tuple[RedisAdmin, Endpoint]] = field(default_factory=dict)
    _blob: dict[str, BlobStore] = field(default_factory=dict)
    # One backup or restore per tenant at a time inside this operator process.
    tenant_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # Held while an upgrade decides to start, so the fleet-wide limit counts every start.
    upgrade_slots: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Who holds each host and database, for admission (filled at startup, kept by watch).
    claims: ClaimsIndex = field(default_factory=ClaimsIndex)
    # One reconcile pass per tenant at a time, whatever started it (a change, a timer).
    pass_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # New tenants provisioned now, and those waiting their turn (reconcile/provisioning.py).
    _turns: ProvisioningTurns | None = None
    # Tenants whose drift timer this process has already offset (see repair_drift).
    drift_spread: set[str] = field(default_factory=set)
    # The operations journal (reconcile/journal.py): per tenant, one append at a time, and
    # the (entries, hash of the last, length) last read or written by this process.
    journal_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    journal_heads: dict[str, tuple[int, str, int]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # CA bundles of servers (PEM, None when the registry names none) and the private files
    # libpq reads them from, by (kind, server name): a PostgreSQL and a Redis server may
    # share a name.
    _ca_bundles: dict[tuple[ServerKind, str], str | None] = field(default_factory=dict)
    _ca_files: dict[tuple[ServerKind, str], str] = field(default_factory=dict)
    _ca_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _secret_value(self, server: ServerRef, key: str) -> str:
        secret = await self.kube.get("v1", "Secret", server.secret, self.config.namespace)
        data = (secret or {}).get("data") or {}
        if key not in data:
            raise ConfigError(
                f"server '{server.name}': Secret {self.config.namespace}/{server.secret} "
                f"is missing or has no '{key}' key"
            )
        return base64.b64decode(data[key]).decode()

    async def server_ca(self, kind: ServerKind, server: ServerRef) -> str | None:
        """The PEM CA bundle the registry names for ``server`` (``tls.caSecretRef``), read
        once; None when it names none. A bundle holding no certificate is a ConfigError."""
        tls = server.tls
        if tls is None or tls.ca_secret is None:
            return None
        async with self._ca_lock:
            if (kind, server.name) not in self._ca_bundles:
                self._ca_bundles[(kind, server.name)] = await self._read_ca(kind, server, tls)
            return self._ca_bundles[(kind, server.name)]

    async def _read_ca(self, kind: ServerKind, server: ServerRef, tls: ServerTls) -> str:
        name = str(tls.ca_secret)
        where = f"Secret {self.config.namespace}/{name}"
        secret = await self.kube.get("v1", "Secret", name, self.config.namespace)
        data = (secret or {}).get("data") or {}
        if tls.ca_key not in data:
            raise ConfigError(
                f"{kind} server '{server.name}': {where} (tls.caSecretRef) is missing or has "
                f"no '{tls.ca_key}' key (tls.caKey)"
            )
        pem = base64.b64decode(data[tls.ca_key]).decode("utf-8", errors="replace")
        try:
            # The same parser the Redis client uses; libpq's would fail later, per connection.
            ssl.create_default_context(cadata=pem)
        except (ssl.SSLError, ValueError):
            raise ConfigError(
                f"{kind} server '{server.name}': key '{tls.ca_key}' of {where} holds no PEM "
                "CA certificate (-----BEGIN CERTIFICATE-----)"
            ) from None
        return pem

    async def _ca_file(self, kind: ServerKind, server: ServerRef) -> str | None:
        """A private file (mode 0600) holding the server's CA bundle, written once."""
        pem = await self.server_ca(kind, server)
        if pem is None:
            return None
        async with self._ca_lock:
            path = self._ca_files.get((kind, server.name))
            if path is None:
                descriptor, path = tempfile.mkstemp(prefix="odoo-operator-ca-", suffix=".crt")
                with os.fdopen(descriptor, "w") as file:
                    file.write(pem)
                self._ca_files[(kind, server.name)] = path
            return path

    async def postgres_tls_parameters(self, server: ServerRef) -> dict[str, str]:
        """The libpq parameters every connection of the operator to ``server`` adds:
        ``sslmode`` and ``sslrootcert`` from the registry; none without ``tls``."""
        if server.tls is None:
            return {}
        parameters = {"sslmode": server.tls.mode}
        ca_file = await self._ca_file("PostgreSQL", server)
        if ca_file is not None:
            parameters["sslrootcert"] = ca_file
        return parameters

    async def _postgres_conninfo(self, server: ServerRef) -> str:
        dsn = await self._secret_value(server, "dsn")
        tls = await self.postgres_tls_parameters(server)
        if not tls:
            return dsn
        try:
            # The registry wins over any sslmode the Secret's string carries.
            return make_conninfo(dsn, **tls)
        except psycopg.ProgrammingError:
            # libpq's message quotes the string, and with it the password.
            raise ConfigError(
                f"server '{server.name}': the dsn in Secret {self.config.namespace}/"
                f"{server.secret} is not a libpq connection string"
            ) from None

    async def postgres(self, server: ServerRef) -> tuple[PostgresAdmin, Endpoint]:
        """The admin pool of a PostgreSQL server, and the endpoint tenants connect to."""
        async with self._lock:
            if server.name not in self._postgres:
                conninfo = await self._postgres_conninfo(server)
                params = conninfo_to_dict(conninfo)
                endpoint = Endpoint(
                    str(params.get("host") or "localhost"), int(str(params.get("port") or 5432))
                )
                admin = PostgresAdmin(conninfo)
                await admin.open()
                try:
                    await _harden(admin, server)
                except BaseException:
                    await admin.close()  # the next call opens it again and retries
                    raise
                self._postgres[server.name] = (admin, endpoint)
            return self._postgres[server.name]

    async def postgres_admin_conninfo(self, server: ServerRef) -> str:
        """The admin connection string of a server, with the registry's TLS parameters, for
        the tools that need their own login (pg_restore during verification and restore).
        It stays inside the operator."""
        return await self._postgres_conninfo(server)

    async def blob(self, store: BlobStoreRef) -> BlobStore:
        """The client of a registered blob store, opened on first use."""
        async with self._lock:
            if store.name not in self._blob:
                secret = await self.kube.get("v1", "Secret", store.secret, self.config.namespace)
                data = {
                    key: base64.b64decode(value).decode()
                    for key, value in ((secret or {}).get("data") or {}).items()
                }
                if "connectionString" in data:
                    blob = BlobStore.from_connection_string(
                        data["connectionString"], store.container
                    )
                elif "accountUrl" in data:
                    blob = BlobStore.from_account_url(
                        data["accountUrl"], store.container, DefaultAzureCredential()
                    )
                else:
                    raise ConfigError(
                        f"blob store '{store.name}': Secret {self.config.namespace}/"
                        f"{store.secret} is missing or has neither 'connectionString' "
                        "nor 'accountUrl'"
                    )
                await blob.ensure_container()
                self._blob[store.name] = blob
            return self._blob[store.name]

    @property
    def provisioning_turns(self) -> ProvisioningTurns:
        """Turns to provision new tenants, ``provisioningConcurrency`` at a time."""
        if self._turns is None:
            self._turns = ProvisioningTurns(self.config.provisioning_concurrency)
        return self._turns

    def pass_lock(self, instance: str) -> asyncio.Lock:
        """The lock that serializes reconcile passes of one tenant in this process."""
        return self.pass_locks.setdefault(instance, asyncio.Lock())

    def tenant_lock(self, instance: str) -> asyncio.Lock:
        """The lock that serializes backups and restores of one tenant in this process."""
        return self.tenant_locks.setdefault(instance, asyncio.Lock())

    async def redis(self, server: ServerRef) -> tuple[RedisAdmin, Endpoint]:
        """The admin pool of a Redis server, and the endpoint tenants connect to."""
        async with self._lock:
            if server.name not in self._redis:
                url = await self._secret_value(server, "url")
                parsed = urlsplit(url)
                endpoint = Endpoint(parsed.hostname or "localhost", parsed.port or 6379)
                tls = server.tls
                if tls is not None and not tls.encrypted and parsed.scheme == "rediss":
                    raise ConfigError(
                        f"Redis server '{server.name}': tls.enabled is false but the url in "
                        f"Secret {self.config.namespace}/{server.secret} is rediss://; make "
                        "them agree"
                    )
                admin = RedisAdmin(
                    url,
                    require_tls=tls is not None and tls.encrypted,
                    ca_data=await self.server_ca("Redis", server),
                )
                await admin.open()
                self._redis[server.name] = (admin, endpoint)
            return self._redis[server.name]

    async def close(self) -> None:
        """Close every pool and the Kubernetes client."""
        for pg_admin, _ in self._postgres.values():
            await pg_admin.close()
        for redis_admin, _ in self._redis.values():
            await redis_admin.close()
        for blob in self._blob.values():
            await blob.close()
        for path in self._ca_files.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._ca_files.clear()
        await self.kube.close()


async def _harden(admin: PostgresAdmin, server: ServerRef) -> None:
    """The server-level hardening step, once per server and operator process (idempotent:
    a hardened server costs one read). An admin that may not make a change (a managed
    server's admin owns neither template1 nor postgres) leaves the server as it is and says
    what a superuser must run; tenants are provisioned either way."""
    try:
        changes = await admin.harden_server()
    except SuperuserRequiredError as exc:
        logger.warning("PostgreSQL server %s was not hardened: %s", server.name, exc)
        return
    for change in changes:
        logger.info("PostgreSQL server %s hardened: %s", server.name, change)
