"""The Redis backend against a real server: isolation, idempotence, drift, rotation, drop.

Tenants connect with their own credentials and are refused, by Redis itself, what the ACL
rules forbid. Writes are counted with ``INFO commandstats`` (``cmdstat_acl|setuser``), which
Redis increments for every ACL SETUSER it runs. Every test uses users under unique names and
removes them and their keys afterwards with plain commands rather than the code under test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio
import redis.exceptions

from odoo_devstack.ports import free_port
from odoo_operator.backends.redis import (
    DropResult,
    RedisAclRefused,
    RedisAdmin,
    RedisServerUnavailable,
)
from odoo_operator.builders.redis_acl import TenantRedisUser, tenant_redis_user

NewUser = Callable[[], TenantRedisUser]
ConnectAs = Callable[[TenantRedisUser, str], Awaitable[redis.asyncio.Redis]]


def with_credentials(url: str, username: str, password: str) -> str:
    """``url`` with another user and password (both URL-safe in these tests)."""
    parts = urlsplit(url)
    netloc = f"{username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def setuser_calls(raw: redis.asyncio.Redis) -> int:
    """How many ACL SETUSER the server has run since it started."""
    stats: dict[str, Any] = await raw.info("commandstats")
    return int(stats.get("cmdstat_acl|setuser", {}).get("calls", 0))


async def getuser_calls(raw: redis.asyncio.Redis) -> int:
    stats: dict[str, Any] = await raw.info("commandstats")
    return int(stats.get("cmdstat_acl|getuser", {}).get("calls", 0))


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain admin client for setting up drift, inspecting and cleaning up."""
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[RedisAdmin]:
    """The backend under test, with the server's default user as its admin."""
    async with RedisAdmin(redis_url, scan_count=100) as backend:
        yield backend


@pytest.fixture
async def new_user(raw: redis.asyncio.Redis) -> AsyncIterator[NewUser]:
    """Makes tenant users with unique names; deletes them and their keys afterwards."""
    made: list[TenantRedisUser] = []

    def make() -> TenantRedisUser:
        user = tenant_redis_user(f"t-{uuid.uuid4().hex[:10]}")
        made.append(user)
        return user

    yield make
    for user in made:
        await raw.execute_command("ACL", "DELUSER", user.username)
        async for key in raw.scan_iter(match=f"{user.key_prefix}*", count=500):
            await raw.unlink(key)


@pytest.fixture
async def connect_as(redis_url: str) -> AsyncIterator[ConnectAs]:
    """Opens connections as a tenant (each checked with PING); closes them afterwards."""
    clients: list[redis.asyncio.Redis] = []

    async def connect(user: TenantRedisUser, password: str) -> redis.asyncio.Redis:
        client = redis.asyncio.Redis.from_url(
            with_credentials(redis_url, user.username, password), decode_responses=True
        )
        clients.append(client)
        assert await client.ping()
        return client

    yield connect
    for client in clients:
        await client.aclose()


def secret() -> str:
    return uuid.uuid4().hex


async def test_tenant_reads_and_writes_only_under_its_prefix(
    admin: RedisAdmin, new_user: NewUser, connect_as: ConnectAs, raw: redis.asyncio.Redis
) -> None:
    a, b = new_user(), new_user()
    password_a, password_b = secret(), secret()
    assert await admin.ensure(a, password_a)
    assert await admin.ensure(b, password_b)
    tenant_a = await connect_as(a, password_a)
    tenant_b = await connect_as(b, password_b)

    assert await tenant_a.set(f"{a.key_prefix}greeting", "hello")
    assert await tenant_a.get(f"{a.key_prefix}greeting") == "hello"
    assert await tenant_b.set(f"{b.key_prefix}session:abc", "b's session")

    with pytest.raises(redis.exceptions.NoPermissionError, match="key"):
        await tenant_a.get(f"{b.key_prefix}session:abc")
    with pytest.raises(redis.exceptions.NoPermissionError, match="key"):
        await tenant_a.set(f"{b.key_prefix}session:abc", "overwritten")
    with pytest.raises(redis.exceptions.NoPermissionError, match="key"):
        await tenant_a.delete(f"{b.key_prefix}session:abc")
    with pytest.raises(redis.exceptions.NoPermissionError, match="key"):
        await tenant_a.set("unprefixed", "x")
    assert await raw.get(f"{b.key_prefix}session:abc") == b"b's session"

    forbidden: list[tuple[str, ...]] = [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("RANDOMKEY",),
        ("DBSIZE",),
        ("CONFIG", "GET", "requirepass"),
        ("CONFIG", "SET", "maxmemory", "1"),
        ("ACL", "LIST"),
        ("ACL", "SETUSER", a.username, "+@all", "~*"),
        ("INFO",),
        ("MODULE", "LIST"),
        ("SAVE",),
        ("MONITOR",),
        ("CLIENT", "LIST"),
        ("CLIENT", "KILL", "ID", "1"),
        ("CLIENT", "TRACKING", "ON", "BCAST"),
        ("SELECT", "1"),
        ("EVAL", "return 1", "0"),
        ("FUNCTION", "FLUSH"),
        ("SORT", f"{a.key_prefix}list", "BY", "nosort", "GET", f"{b.key_prefix}*"),
        ("PUBLISH", f"{b.key_prefix}channel", "hi"),
        ("SHUTDOWN", "NOSAVE"),
    ]
    for command in forbidden:
        with pytest.raises(redis.exceptions.NoPermissionError):
            await tenant_a.execute_command(*command)
    assert await raw.get(f"{b.key_prefix}session:abc") == b"b's session"


async def test_odoo_like_session_round_trip(
    admin: RedisAdmin, new_user: NewUser, connect_as: ConnectAs
) -> None:
    user, password = new_user(), secret()
    await admin.ensure(user, password)
    odoo = await connect_as(user, password)
    key = f"{user.key_prefix}session:{uuid.uuid4().hex}"

    assert await odoo.execute_command("SETEX", key, 7 * 24 * 3600, '{"uid": 2, "login": "admin"}')
    assert await odoo.get(key) == '{"uid": 2, "login": "admin"}'
    assert await odoo.exists(key) == 1
    assert await odoo.expire(key, 3600)
    assert 0 < await odoo.ttl(key) <= 3600
    assert await odoo.set(key, '{"uid": 2}', ex=60)
    assert await odoo.getdel(key) == '{"uid": 2}'
    assert await odoo.set(key, "again", px=60_000, nx=True)
    assert await odoo.delete(key) == 1
    assert await odoo.get(key) is None

    # redis-py pipelines are MULTI/EXEC transactions by default; a cache may use hashes.
    async with odoo.pipeline() as pipe:
        pipe.hset(f"{user.key_prefix}cache:1", mapping={"a": "1", "b": "2"})
        pipe.expire(f"{user.key_prefix}cache:1", 60)
        pipe.hgetall(f"{user.key_prefix}cache:1")
        results = await pipe.execute()
    assert results == [2, True, {"a": "1", "b": "2"}]
    assert await odoo.unlink(f"{user.key_prefix}cache:1") == 1


async def test_second_ensure_writes_nothing(
    admin: RedisAdmin, new_user: NewUser, raw: redis.asyncio.Redis, redis_url: str
) -> None:
    user, password = new_user(), secret()
    before = await setuser_calls(raw)
    assert await admin.ensure(user, password) is True
    assert await setuser_calls(raw) == before + 1

    reads = await getuser_calls(raw)
    assert await admin.ensure(user, password) is False
    assert await admin.ensure(user, None) is False
    assert await admin.rotate_password(user, password) is False
    assert await setuser_calls(raw) == before + 1, "an unchanged user was written"
    assert await getuser_calls(raw) == reads + 3, "ensure must have looked at the user"

    # A new admin, which reads the command catalog afresh, agrees.
    async with RedisAdmin(redis_url) as other:
        assert await other.ensure(user, None) is False
    assert await setuser_calls(raw) == before + 1


async def test_drift_is_repaired(
    admin: RedisAdmin,
    new_user: NewUser,
    connect_as: ConnectAs,
    raw: redis.asyncio.Redis,
) -> None:
    a, b = new_user(), new_user()
    password = secret()
    await admin.ensure(a, password)
    await admin.ensure(b, secret())
    await raw.set(f"{b.key_prefix}session:xyz", "b")
    tenant = await connect_as(a, password)

    await raw.execute_command("ACL", "SETUSER", a.username, "+@all", "~*")
    assert f"{b.key_prefix}session:xyz" in await tenant.keys("*"), "the drift took effect"

    assert await admin.ensure(a, None) is True
    # The connection that was open all along is confined again.
    with pytest.raises(redis.exceptions.NoPermissionError):
        await tenant.keys("*")
    with pytest.raises(redis.exceptions.NoPermissionError):
        await tenant.get(f"{b.key_prefix}session:xyz")
    assert await tenant.set(f"{a.key_prefix}still", "works")
    assert await admin.ensure(a, None) is False

    # A second password slipped in: ensure cannot tell which is the tenant's without it ...
    await raw.execute_command("ACL", "SETUSER", a.username, ">backdoor-" + password)
    with pytest.raises(ValueError, match="2 passwords"):
        await admin.ensure(a, None)
    # ... and with it, the extra one is gone.
    assert await admin.ensure(a, password) is True
    with pytest.raises(redis.exceptions.AuthenticationError):
        await connect_as(a, "backdoor-" + password)

    # Disabled, and given a selector with wider keys.
    await raw.execute_command("ACL", "SETUSER", a.username, "off", "(+get ~*)")
    assert await admin.ensure(a, None) is True
    observed = await admin.observe(a)
    assert observed is not None
    assert observed["selectors"] == []
    assert "on" in observed["flags"]
    await connect_as(a, password)


async def test_password_rotation(
    admin: RedisAdmin, new_user: NewUser, connect_as: ConnectAs
) -> None:
    user, old, new = new_user(), secret(), secret()
    await admin.ensure(user, old)
    await connect_as(user, old)

    assert await admin.rotate_password(user, new) is True
    with pytest.raises(redis.exceptions.AuthenticationError):
        await connect_as(user, old)
    tenant = await connect_as(user, new)
    assert await tenant.set(f"{user.key_prefix}k", "v")
    assert await admin.rotate_password(user, new) is False
    observed = await admin.observe(user)
    assert observed is not None
    assert new not in repr(observed)
    assert old not in repr(observed)


async def test_password_rules(admin: RedisAdmin, new_user: NewUser) -> None:
    user = new_user()
    with pytest.raises(ValueError, match="a password is required to create it"):
        await admin.ensure(user, None)
    with pytest.raises(LookupError, match="does not exist"):
        await admin.rotate_password(user, secret())
    with pytest.raises(ValueError, match="empty"):
        await admin.ensure(user, "")
    assert await admin.observe(user) is None


async def test_drop_removes_only_that_tenants_user_and_keys(
    admin: RedisAdmin,
    new_user: NewUser,
    connect_as: ConnectAs,
    raw: redis.asyncio.Redis,
) -> None:
    a = new_user()
    # A neighbour whose name extends a's: "odoo:t-x:*" must not match "odoo:t-x-2:...".
    b = tenant_redis_user(a.username.removeprefix("odoo-") + "-2")
    password = secret()
    await admin.ensure(a, password)
    await admin.ensure(b, secret())
    try:
        async with raw.pipeline(transaction=False) as pipe:
            for i in range(1_234):  # several SCAN batches of 100
                pipe.set(f"{a.key_prefix}session:{i}", "x")
            for i in range(50):
                pipe.set(f"{b.key_prefix}session:{i}", "y")
            # Sessions of the session module live under their own prefix; b's stay.
            for i in range(7):
                pipe.set(f"{a.session_key_prefix}{i}", "s")
            pipe.set(f"{b.session_key_prefix}0", "t")
            pipe.set("unrelated:key", "z")
            await pipe.execute()
        tenant = await connect_as(a, password)
        neighbour_keys = len([k async for k in raw.scan_iter(match=f"{b.key_prefix}*")])
        assert neighbour_keys >= 50

        assert await admin.drop(a, delete_keys=True) == DropResult(
            user_deleted=True, keys_deleted=1_234 + 7
        )
        assert await admin.observe(a) is None
        assert [k async for k in raw.scan_iter(match=f"{a.key_prefix}*")] == []
        assert [k async for k in raw.scan_iter(match=f"{a.session_key_prefix}*")] == []
        assert await raw.get(f"{b.session_key_prefix}0") == b"t"
        # The neighbour keeps every key it had (its 50 and any a run before left behind).
        assert len([k async for k in raw.scan_iter(match=f"{b.key_prefix}*")]) == neighbour_keys
        assert await raw.get("unrelated:key") == b"z"
        assert await admin.observe(b) is not None
        # Deleting the user closed its connections, and it cannot log in again.
        with pytest.raises(redis.exceptions.ConnectionError):
            await tenant.get(f"{a.key_prefix}session:1")

        assert await admin.drop(a, delete_keys=True) == DropResult(False, 0)

        assert await admin.drop(b, delete_keys=False) == DropResult(True, 0)
        assert len([k async for k in raw.scan_iter(match=f"{b.key_prefix}*")]) == neighbour_keys
    finally:
        await raw.execute_command("ACL", "DELUSER", b.username)
        async for key in raw.scan_iter(match=f"{b.key_prefix}*"):
            await raw.unlink(key)
        await raw.unlink("unrelated:key", f"{b.session_key_prefix}0")


async def test_concurrent_calls_stay_within_the_pool(
    redis_url: str, new_user: NewUser, raw: redis.asyncio.Redis
) -> None:
    users = [new_user() for _ in range(12)]
    # An admin user of its own, so its connections can be told apart in CLIENT LIST.
    name, password = f"pool-admin-{uuid.uuid4().hex[:8]}", secret()
    await raw.execute_command("ACL", "SETUSER", name, "on", f">{password}", "~*", "&*", "+@all")
    try:
        async with RedisAdmin(with_credentials(redis_url, name, password), 2) as bounded:
            results = await asyncio.gather(*(bounded.ensure(u, secret()) for u in users))
            assert results == [True] * 12
            clients = [c for c in await raw.client_list() if c.get("user") == name]
            assert 1 <= len(clients) <= 2
    finally:
        await raw.execute_command("ACL", "DELUSER", name)


async def test_unreachable_server_is_named_without_the_password() -> None:
    port = free_port()
    password = "hunter2-" + secret()
    async with RedisAdmin(f"redis://default:{password}@127.0.0.1:{port}/0") as backend:
        with pytest.raises(RedisServerUnavailable) as caught:
            await backend.ensure(tenant_redis_user("acme"), "whatever")
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "Check that it is running and reachable" in message
    assert password not in message
    assert password not in str(caught.value.__cause__)
    assert password not in repr(backend)


async def test_wrong_admin_password_is_named_without_the_password(redis_url: str) -> None:
    wrong = "wrong-" + secret()
    url = with_credentials(redis_url, "default", wrong)
    async with RedisAdmin(url) as backend:
        with pytest.raises(RedisServerUnavailable) as caught:
            await backend.observe(tenant_redis_user("acme"))
    message = str(caught.value)
    assert f"{urlsplit(redis_url).hostname}:{urlsplit(redis_url).port}" in message
    assert "admin user name and password" in message
    assert wrong not in message


async def test_admin_without_acl_rights_is_told_so(
    redis_url: str, raw: redis.asyncio.Redis
) -> None:
    name, password = f"weak-admin-{uuid.uuid4().hex[:8]}", secret()
    await raw.execute_command(
        "ACL", "SETUSER", name, "reset", "on", f">{password}", "~*", "-@all", "+@read", "+ping"
    )
    try:
        async with RedisAdmin(with_credentials(redis_url, name, password)) as backend:
            with pytest.raises(RedisAclRefused, match="may not manage ACL users") as caught:
                await backend.observe(tenant_redis_user("acme"))
        assert password not in str(caught.value)
    finally:
        await raw.execute_command("ACL", "DELUSER", name)


def test_admin_url_must_select_database_0(redis_url: str) -> None:
    with pytest.raises(ValueError, match="database 3"):
        RedisAdmin(redis_url.rsplit("/", 1)[0] + "/3")


async def test_calls_before_open_are_refused(redis_url: str) -> None:
    with pytest.raises(RuntimeError, match="not open"):
        await RedisAdmin(redis_url).observe(tenant_redis_user("acme"))
