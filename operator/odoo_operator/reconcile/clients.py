"""Shared clients of the operator, created at startup and closed at cleanup.

Admin connections to registered servers are opened on first use, from the
Secrets named in the operator configuration (in the operator's namespace).
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from azure.identity.aio import DefaultAzureCredential
from psycopg.conninfo import conninfo_to_dict

from ..backends.blobstore import BlobStore
from ..backends.kube import KubeClient
from ..backends.postgres import PostgresAdmin
from ..backends.redis import RedisAdmin
from ..builders.tenant import Endpoint
from ..model.config import BlobStoreRef, ConfigError, OperatorConfig, ServerRef


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
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _secret_value(self, server: ServerRef, key: str) -> str:
        secret = await self.kube.get("v1", "Secret", server.secret, self.config.namespace)
        data = (secret or {}).get("data") or {}
        if key not in data:
            raise ConfigError(
                f"server '{server.name}': Secret {self.config.namespace}/{server.secret} "
                f"is missing or has no '{key}' key"
            )
        return base64.b64decode(data[key]).decode()

    async def postgres(self, server: ServerRef) -> tuple[PostgresAdmin, Endpoint]:
        """The admin pool of a PostgreSQL server, and the endpoint tenants connect to."""
        async with self._lock:
            if server.name not in self._postgres:
                dsn = await self._secret_value(server, "dsn")
                params = conninfo_to_dict(dsn)
                endpoint = Endpoint(
                    str(params.get("host") or "localhost"), int(str(params.get("port") or 5432))
                )
                admin = PostgresAdmin(dsn)
                await admin.open()
                self._postgres[server.name] = (admin, endpoint)
            return self._postgres[server.name]

    async def postgres_admin_conninfo(self, server: ServerRef) -> str:
        """The admin connection string of a server, for the tools that need their own login
        (pg_restore during verification and restore). It stays inside the operator."""
        return await self._secret_value(server, "dsn")

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
                admin = RedisAdmin(url)
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
        await self.kube.close()
