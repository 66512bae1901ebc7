"""Tenant ACL users on a Redis server: observe, ensure, rotate, drop.

One :class:`RedisAdmin` per registered Redis server. It reads the tenant's user with
``ACL GETUSER``, lets :mod:`odoo_operator.builders.redis_acl` compare it with the rules the
tenant should have, and sends ``ACL SETUSER`` only when they differ: a tenant that is
already right costs one read and no write. Passwords go to Redis only as SHA-256 hashes
(``#<hex>`` rules) and never appear in a message or log line.

The server must accept the ``ACL`` command (Redis >= 6, such as an in-cluster Redis).
Azure Cache for Redis disables it, so it cannot isolate tenants this way;
:class:`RedisAclRefused` says so when it is met. Azure Managed Redis applies the same kind of
rules as custom access policies set through Azure's control plane, which this module does
not drive.
Two things the ACL layer itself does not cover: users live in the memory of the server
they were written to (``ACL SETUSER`` is not replicated, and is lost on restart unless the
server saves it to an ACL file), so after a restart or failover the next ``ensure``, given
the password from the tenant's Secret, recreates the user; and memory use per tenant is
not bounded by ACLs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from odoo_operator import metrics
from odoo_operator.builders.redis_acl import (
    CommandCatalog,
    TenantRedisUser,
    acl_differences,
    build_acl_rules,
    decode_getuser_reply,
    password_sha256,
)

logger = logging.getLogger(__name__)

# Redis glob metacharacters, escaped with a backslash in SCAN's MATCH pattern.
_GLOB_SPECIAL = frozenset("*?[]\\")


class RedisServerUnavailable(Exception):  # noqa: N818 - names the state, as conditions do
    """The Redis server cannot be reached or refused the admin's credentials.

    The message names the server by host and port only: never the URL, which holds the
    admin password.
    """


class RedisAclRefused(Exception):  # noqa: N818 - names the state, as conditions do
    """The server does not let the admin manage ACL users.

    Either it has no ``ACL`` command (Azure Cache for Redis disables it) or the admin user
    lacks the permission to run it.
    """


@dataclass(frozen=True)
class DropResult:
    """What :meth:`RedisAdmin.drop` did: whether the user existed, how many keys went."""

    user_deleted: bool
    keys_deleted: int


class RedisAdmin:
    """The operator's admin connections to one Redis server.

    Connections come from a ``redis.asyncio.BlockingConnectionPool`` of at most
    ``max_connections``: callers beyond that wait up to ``acquire_timeout`` seconds for a
    free connection instead of failing, and the bound keeps the operator's share of the
    server's ``maxclients`` small. Connections open on first use and are checked with a
    PING after 30 idle seconds, so one left dead by a failover is replaced.

    The admin URL (``redis://user:password@host:port/0``, or ``rediss://`` for TLS) must
    select database 0: tenants cannot ``SELECT``, so their keys are all in database 0, and
    that is where :meth:`drop` looks for them.

    ``require_tls`` (the registry's ``tls.enabled``) connects with TLS whatever the URL's
    scheme, and refuses a server whose certificate does not chain to ``ca_data`` (a PEM
    bundle; the system's trust store when None) or does not name the URL's host.
    """

    def __init__(
        self,
        url: str,
        max_connections: int = 4,
        *,
        acquire_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        scan_count: int = 500,
        require_tls: bool = False,
        ca_data: str | None = None,
    ) -> None:
        """Prepare for the server at ``url``; nothing connects before the first call.

        ``connect_timeout`` and ``command_timeout`` (seconds) bound each connection attempt
        and each reply; ``scan_count`` is the SCAN batch size :meth:`drop` uses.
        """
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        if scan_count < 1:
            raise ValueError(f"scan_count must be at least 1, not {scan_count}")
        try:
            parameters = parse_url(url)
        except ValueError:
            # The parser's message may quote the URL, and with it the password.
            raise ValueError("the Redis admin URL cannot be parsed") from None
        if parameters.get("path"):
            self.server = str(parameters["path"])
        else:
            self.server = (
                f"{parameters.get('host') or 'localhost'}:{parameters.get('port') or 6379}"
            )
        database = int(parameters.get("db") or 0)
        if database != 0:
            raise ValueError(
                f"the Redis admin URL for {self.server} selects database {database}: tenants "
                "live in database 0, use /0"
            )
        self._secrets = [s for s in (str(parameters.get("password") or ""), url) if s]
        self._tls: dict[str, Any] = {}
        if require_tls:
            url = _with_tls_scheme(url, self.server)
            self._secrets.append(url)
            # redis-py's defaults have changed between releases (hostname checking was off
            # before 6.0): every check is spelt out.
            self._tls = {
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": True,
                "ssl_ca_data": ca_data,
            }
        self._url = url
        self._max_connections = max_connections
        self._acquire_timeout = acquire_timeout
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._scan_count = scan_count
        self._client: redis.asyncio.Redis | None = None
        self._catalog: CommandCatalog | None = None

    def __repr__(self) -> str:
        return f"RedisAdmin(server={self.server!r})"

    async def open(self) -> None:
        """Create the connection pool; it connects on first use, so a server that is down
        is no error yet."""
        if self._client is not None:
            return
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self._url,
            max_connections=self._max_connections,
            timeout=self._acquire_timeout,
            socket_connect_timeout=self._connect_timeout,
            socket_timeout=self._command_timeout,
            health_check_interval=30,
            # Two quick retries ride over a dropped connection; a server that is down is
            # reported after about a second rather than after redis-py's ten retries.
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
            **self._tls,
        )
        self._client = redis.asyncio.Redis.from_pool(pool)

    async def close(self) -> None:
        """Close every connection and the pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> RedisAdmin:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def observe(self, user: TenantRedisUser) -> dict[str, Any] | None:
        """The user as ``ACL GETUSER`` describes it (field -> value, as str), or None.

        See :func:`~odoo_operator.builders.redis_acl.decode_getuser_reply` for the shape.
        """
        async with self._session() as client:
            return await _getuser(client, user)

    async def ensure(self, user: TenantRedisUser, password: str | None) -> bool:
        """Give ``user`` exactly its rules; True when it had to write, False when all matched.

        The rules are :func:`~odoo_operator.builders.redis_acl.build_acl_rules`: enabled, one
        password, keys and channels under the tenant's prefix, the tenant command set. Any
        drift (wider patterns or commands, an extra password, selectors, a disabled user)
        is put back in one ``ACL SETUSER``; an unchanged user gets no write at all.

        ``password`` replaces the current one when it differs (a rotation); ``None`` keeps
        the current one. Pass the password from the tenant's Secret whenever it is at hand:
        the user must be recreated after a server restart or failover.

        Raises :class:`ValueError` when ``password`` is None but the user does not exist
        or does not have exactly one password, :class:`RedisServerUnavailable` and
        :class:`RedisAclRefused`.
        """
        return await self._reconcile(user, password, must_exist=False)

    async def rotate_password(self, user: TenantRedisUser, password: str) -> bool:
        """Replace the password of the existing ``user``; True when it changed.

        The old password is refused from then on for new connections; connections already
        authenticated stay open. The user's other rules are repaired on the way if they
        drifted. Raises :class:`LookupError` when the user does not exist (``ensure``
        creates it).
        """
        return await self._reconcile(user, password, must_exist=True)

    async def drop(self, user: TenantRedisUser, delete_keys: bool) -> DropResult:
        """Delete ``user`` and, when ``delete_keys``, every key under its prefixes (its own
        and its sessions'); idempotent.

        The user goes first, which also disconnects its clients, so no key is written
        behind the scan. Keys are found with ``SCAN MATCH <prefix>*`` and removed with
        ``UNLINK`` batch by batch (never ``KEYS``, which blocks the server).
        """
        async with self._session() as client:
            deleted = int(await _command(client, "ACL", "DELUSER", user.username))
            removed = 0
            prefixes = (user.key_prefix, user.session_key_prefix) if delete_keys else ()
            for prefix in prefixes:
                pattern = _glob_escape(prefix) + "*"
                cursor = 0
                while True:
                    with metrics.observe_call("redis", "scan"):
                        cursor, keys = await client.scan(
                            cursor=cursor, match=pattern, count=self._scan_count
                        )
                    if keys:
                        with metrics.observe_call("redis", "unlink"):
                            removed += int(await client.unlink(*keys))
                    if cursor == 0:
                        break
        if deleted or removed:
            logger.info(
                "Redis %s: dropped user %s (existed: %s) and %d keys under %s",
                self.server,
                user.username,
                bool(deleted),
                removed,
                user.key_prefix,
            )
        return DropResult(user_deleted=bool(deleted), keys_deleted=removed)

    async def _reconcile(
        self, user: TenantRedisUser, password: str | None, *, must_exist: bool
    ) -> bool:
        if password is not None and not password:
            raise ValueError(f"the password for Redis user {user.username} is empty")
        async with self._session() as client:
            observed = await _getuser(client, user)
            if observed is None and must_exist:
                raise LookupError(
                    f"Redis user {user.username} does not exist on {self.server}: ensure creates it"
                )
            digest = self._desired_digest(user, observed, password)
            rules = build_acl_rules(user, digest)
            differences = acl_differences(observed, rules, await self._command_catalog(client))
            if differences and observed is not None:
                # A catalog read before a server upgrade can see a difference that is not
                # there; read it again before writing.
                catalog = await self._command_catalog(client, refresh=True)
                differences = acl_differences(observed, rules, catalog)
            if not differences:
                return False
            logger.info(
                "Redis %s: user %s: %s; setting its ACL rules",
                self.server,
                user.username,
                "; ".join(differences),
            )
            await _command(client, "ACL", "SETUSER", user.username, *rules)
        return True

    def _desired_digest(
        self, user: TenantRedisUser, observed: dict[str, Any] | None, password: str | None
    ) -> str:
        if password is not None:
            return password_sha256(password)
        if observed is None:
            raise ValueError(
                f"Redis user {user.username} does not exist on {self.server}: a password is "
                "required to create it"
            )
        current = observed.get("passwords") or []
        if len(current) != 1:
            raise ValueError(
                f"Redis user {user.username} on {self.server} has {len(current)} passwords "
                "instead of one: give the tenant's password to put it right"
            )
        return str(current[0])

    async def _command_catalog(
        self, client: redis.asyncio.Redis, *, refresh: bool = False
    ) -> CommandCatalog:
        if self._catalog is None or refresh:
            names = [_text(n) for n in await _command(client, "ACL", "CAT")]
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.execute_command("ACL", "CAT", name)
                with metrics.observe_call("redis", "acl_cat"):
                    members = await pipe.execute()
            self._catalog = CommandCatalog.from_categories(
                {
                    name: [_text(m) for m in found]
                    for name, found in zip(names, members, strict=True)
                }
            )
        return self._catalog

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[redis.asyncio.Redis]:
        """The client; connection failures become RedisServerUnavailable, refused ACL
        commands RedisAclRefused."""
        if self._client is None:
            raise RuntimeError(f"{self!r} is not open: call open() or use 'async with'")
        try:
            yield self._client
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise self._unavailable(error) from error
        except redis.exceptions.ResponseError as error:
            refusal = self._acl_refusal(error)
            if refusal is None:
                raise
            raise refusal from error

    def _unavailable(self, error: redis.exceptions.RedisError) -> RedisServerUnavailable:
        if isinstance(error, redis.exceptions.AuthenticationError):
            what_next = "check the admin user name and password in the operator's Redis URL"
        else:
            what_next = (
                "check that it is running and reachable from the operator (DNS, firewall, "
                "private endpoint, TLS) and that the admin credentials are valid"
            )
        return RedisServerUnavailable(
            f"Redis server {self.server} is unavailable: {self._reason(error)}. "
            f"{what_next[0].upper()}{what_next[1:]}; the operator retries on its own"
        )

    def _acl_refusal(self, error: redis.exceptions.ResponseError) -> RedisAclRefused | None:
        message = str(error)
        lowered = message.lower()
        if "unknown command" in lowered and "'acl'" in lowered:
            return RedisAclRefused(
                f"Redis server {self.server} has no ACL command ({self._reason(error)}). "
                "Tenants cannot be isolated there (Azure Cache for Redis disables ACL): "
                "register an ACL-capable Redis >= 6, such as one in the cluster"
            )
        if isinstance(error, redis.exceptions.NoPermissionError) and "acl" in lowered:
            return RedisAclRefused(
                f"the admin user of Redis server {self.server} may not manage ACL users "
                f"({self._reason(error)}): give it the ACL command (+acl) or use another admin"
            )
        return None

    def _reason(self, error: redis.exceptions.RedisError) -> str:
        reason = " ".join(str(error).split()) or type(error).__name__
        for secret in self._secrets:
            reason = reason.replace(secret, "<redacted>")
        return reason.rstrip(".")


async def _command(client: redis.asyncio.Redis, *args: str) -> Any:
    """A raw command with no reply parsing: redis-py has no callback for two-word names
    passed as separate arguments, so ``ACL GETUSER`` comes back as the server sent it.

    Timed as one call to Redis named after the command, ``ACL GETUSER`` as ``acl_getuser``
    (:func:`odoo_operator.metrics.observe_call`)."""
    words = args[:2] if args[0].upper() == "ACL" else args[:1]
    with metrics.observe_call("redis", "_".join(words).lower()):
        return await client.execute_command(*args)  # type: ignore[no-untyped-call]


async def _getuser(client: redis.asyncio.Redis, user: TenantRedisUser) -> dict[str, Any] | None:
    return decode_getuser_reply(await _command(client, "ACL", "GETUSER", user.username))


def _with_tls_scheme(url: str, server: str) -> str:
    """``url`` with the ``rediss`` scheme, which makes redis-py connect with TLS."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in ("redis", "rediss"):
        raise ValueError(
            f"the Redis admin URL for {server} must be redis:// or rediss:// to use TLS"
        )
    return f"rediss://{rest}"


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in _GLOB_SPECIAL else c for c in text)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
