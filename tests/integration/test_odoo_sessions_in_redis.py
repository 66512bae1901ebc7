"""Real Odoo keeps its web sessions where the operator says, with the settings it renders.

Odoo 17.0 with Camptocamp's session_redis: two servers on one database, each run with the
odoo.conf :func:`render_odoo_conf` writes and the environment the kubelet gives a web pod
(Secret keys read, ``$(NAME)`` expanded), log in through the Redis ACL user the operator's own
backend creates. A session opened on one is honoured by the other, and every key the session
store writes lies inside the user's key patterns. The environment of the former builder
fails to log in at all. Odoo 18.0, whose image has no session module, gets no session
settings and keeps serving logins with sessions in its filestore.
"""

from __future__ import annotations

import asyncio
import base64
import configparser
import http.client
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
import redis.exceptions

from odoo_devstack.odoo_runtime import (
    DEFAULT_ADMIN_PASSWORD,
    OdooDatabase,
    OdooServer,
    write_odoo_conf,
)
from odoo_devstack.ports import free_port
from odoo_operator.backends.redis import RedisAdmin
from odoo_operator.builders.redis_acl import TenantRedisUser, tenant_redis_user
from odoo_operator.builders.tenant import Endpoint, Tenant, TenantCredentials
from odoo_operator.builders.workloads import build_deployments, build_secrets, render_odoo_conf
from odoo_operator.model.config import OperatorConfig
from odoo_operator.model.spec import InstanceSpec

if TYPE_CHECKING:
    from odoo_devstack.pytest_fixtures import OdooDatabases, OdooRuntimes, OdooServers

# The first test to need a runtime builds it (or finds it cached) and initialises a template.
pytestmark = pytest.mark.timeout(1800)

# The version map of an operator whose 17.0 image carries session_redis and whose 18.0 image
# has no session module, as the two runtimes of the harness do.
CONFIG = OperatorConfig.from_mapping(
    {"versions": {"17.0": {"image": "odoo:17.0", "sessionStore": "redis"}, "18.0": "odoo:18.0"}}
)
# odoo.conf options that differ between a pod and a test process: where the database role,
# the addons and the data are, and where to listen. Everything else is as rendered.
_ADAPTED_OPTIONS = ("db_user", "addons_path", "data_dir", "http_interface", "http_port")


@dataclass(frozen=True)
class Answer:
    """A JSON-RPC answer: HTTP status, the session cookie it set (if any), the decoded body."""

    status: int
    session_id: str | None
    body: dict[str, Any]


def _json_rpc(
    server: OdooServer, path: str, params: dict[str, Any], session_id: str | None = None
) -> Answer:
    """POST a JSON-RPC call to ``server``, sending ``session_id`` as the browser would."""
    headers = {"Content-Type": "application/json"}
    if session_id is not None:
        headers["Cookie"] = f"session_id={session_id}"
    payload = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1, "params": params})
    connection = http.client.HTTPConnection(server.host, server.http_port, timeout=120)
    try:
        connection.request("POST", path, body=payload.encode(), headers=headers)
        response = connection.getresponse()
        raw, cookies = response.read(), SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
    finally:
        connection.close()
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"raw": raw[:2000].decode(errors="replace")}
    sid = cookies["session_id"].value if "session_id" in cookies else None
    return Answer(response.status, sid, body)


def _tenant(name: str, database: OdooDatabase, redis_url: str, redis_password: str) -> Tenant:
    """The tenant ``name`` as the reconciler resolves it, on the test's database and Redis."""
    version = database.version
    spec = InstanceSpec.from_resource(
        {
            "metadata": {"name": name, "uid": "uid-1", "generation": 1},
            "spec": {
                "version": version,
                "hosts": [f"{name}.example.com"],
                "database": {"name": database.name},
                # Threaded Odoo: one process serves the test's requests one after the other.
                "workers": 0,
            },
        }
    )
    user = tenant_redis_user(name)
    server = urlsplit(redis_url)
    assert server.hostname is not None
    assert server.port is not None
    return Tenant(
        spec=spec,
        image=CONFIG.image_for(version, None),
        database=Endpoint(database.host, database.port),
        redis=Endpoint(server.hostname, server.port),
        redis_user=user.username,
        redis_key_prefix=user.key_prefix,
        credentials=TenantCredentials(database.password, redis_password, secrets.token_urlsafe(24)),
        session_store=CONFIG.session_store_for(version, None),
    )


def _pod_environment(tenant: Tenant) -> dict[str, str]:
    """The web container's variables as the kubelet sets them: Secret keys read from the
    tenant's Secrets, ``$(NAME)`` replaced by a variable defined before it."""
    secrets_data = {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for s in build_secrets(tenant)
    }
    web = next(d for d in build_deployments(tenant) if d["metadata"]["name"] == "odoo-web")
    env: dict[str, str] = {}
    for item in web["spec"]["template"]["spec"]["containers"][0].get("env", []):
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets_data[ref["name"]][ref["key"]]
        else:
            env[item["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                item["value"],
            )
    return env


def _rendered_options(tenant: Tenant) -> dict[str, str]:
    """The odoo.conf the operator renders for ``tenant``, read as Odoo reads it."""
    parser = configparser.RawConfigParser(strict=True)
    parser.read_string(render_odoo_conf(tenant))
    return dict(parser.items("options"))


def _serve(
    odoo_servers: OdooServers,
    odoo_runtimes: OdooRuntimes,
    tenant: Tenant,
    database: OdooDatabase,
    env: dict[str, str],
    label: str,
) -> OdooServer:
    """Start Odoo with the rendered odoo.conf, adapted only in :data:`_ADAPTED_OPTIONS`."""
    runtime = odoo_runtimes.get(database.version)
    port = free_port()
    rendered = _rendered_options(tenant)
    options: dict[str, str] = {
        **rendered,
        "db_user": database.role,
        "addons_path": ",".join(str(path) for path in runtime.addons_paths),
        # Every web pod mounts the same filestore volume at data_dir.
        "data_dir": str(database.data_dir),
        "http_interface": "127.0.0.1",
        "http_port": str(port),
    }
    assert {k for k, v in options.items() if rendered.get(k) != v} <= set(_ADAPTED_OPTIONS)
    conf = write_odoo_conf(odoo_servers.workdir / f"{label}-{port}.conf", options)
    return odoo_servers.start(runtime, conf, port, env)


def _admin_uid(database: OdooDatabase) -> int:
    """The id of the ``admin`` user, read from the database."""
    with psycopg.connect(database.dsn) as connection:
        row = connection.execute(
            "SELECT res_id FROM ir_model_data WHERE module = 'base' AND name = 'user_admin'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _text(value: Any) -> str:
    """A reply field as text, whether redis-py decoded it or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _all_keys(client: redis.Redis) -> set[str]:
    """Every key on the server (SCAN, as the admin)."""
    return {key.decode() for key in client.scan_iter(match="*", count=1000)}


def _session_files(database: OdooDatabase) -> list[Path]:
    """The session files Odoo's own store keeps under data_dir."""
    sessions = database.data_dir / "sessions"
    return [p for p in sessions.rglob("*") if p.is_file()] if sessions.is_dir() else []


@pytest.fixture
def admin_client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain admin client, for looking at the server as the operator could."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def tenant_users(redis_url: str, admin_client: redis.Redis) -> Iterator[list[TenantRedisUser]]:
    """ACL users the test creates; removed afterwards with their keys, session keys included
    (the backend's drop removes those under the tenant prefix only)."""
    users: list[TenantRedisUser] = []
    yield users
    for user in users:
        asyncio.run(_drop(redis_url, user))
        leftovers = list(admin_client.scan_iter(match=user.session_key_pattern))
        if leftovers:
            admin_client.delete(*leftovers)


async def _ensure(redis_url: str, user: TenantRedisUser, password: str) -> None:
    """Create ``user`` with the operator's backend, as the reconciler does."""
    async with RedisAdmin(redis_url) as admin:
        await admin.ensure(user, password)


async def _drop(redis_url: str, user: TenantRedisUser) -> None:
    """Drop ``user`` and its keys with the operator's backend."""
    async with RedisAdmin(redis_url) as admin:
        await admin.drop(user, delete_keys=True)


def test_two_odoo_17_servers_share_a_login_through_redis_inside_the_tenants_key_patterns(
    odoo_runtimes: OdooRuntimes,
    odoo_databases: OdooDatabases,
    odoo_servers: OdooServers,
    redis_url: str,
    admin_client: redis.Redis,
    tenant_users: list[TenantRedisUser],
) -> None:
    database = odoo_databases.copy("17.0", ("base",))
    name = f"s{secrets.token_hex(4)}"
    tenant = _tenant(name, database, redis_url, secrets.token_urlsafe(32))
    user, neighbour = tenant_redis_user(name), tenant_redis_user(f"{name}-x")
    tenant_users.extend([user, neighbour])
    asyncio.run(_ensure(redis_url, user, tenant.credentials.redis_password))
    neighbour_password = secrets.token_urlsafe(32)
    asyncio.run(_ensure(redis_url, neighbour, neighbour_password))
    assert tenant.session_store == "redis"
    assert _rendered_options(tenant)["server_wide_modules"] == "base,web,session_redis"
    env = _pod_environment(tenant)
    assert env["ODOO_SESSION_REDIS_URL"].startswith(f"redis://{user.username}:")

    keys_before = _all_keys(admin_client)
    server_a = _serve(odoo_servers, odoo_runtimes, tenant, database, env, "a")
    server_b = _serve(odoo_servers, odoo_runtimes, tenant, database, env, "b")
    login = _json_rpc(
        server_a,
        "/web/session/authenticate",
        {"db": database.name, "login": "admin", "password": DEFAULT_ADMIN_PASSWORD},
    )
    assert login.status == 200, (login, server_a.log_tail())
    assert "result" in login.body, (login, server_a.log_tail())
    assert login.session_id, "the login set no session cookie"
    info = _json_rpc(server_b, "/web/session/get_session_info", {}, login.session_id)
    keys_after = _all_keys(admin_client)

    # Server B knows the session opened on A only through Redis.
    assert info.status == 200, (info, server_b.log_tail())
    assert "result" in info.body, (info, server_b.log_tail())
    assert info.body["result"]["uid"] == _admin_uid(database)
    assert info.body["result"]["db"] == database.name
    new_keys = keys_after - keys_before
    assert f"{user.session_key_prefix}{login.session_id}" in new_keys
    outside = sorted(k for k in new_keys if not any(fnmatchcase(k, p) for p in user.key_patterns))
    assert outside == []
    # The store logged in as the tenant's user, and Redis refused it nothing.
    clients = admin_client.client_list()
    assert any(_text(c.get("user")) == user.username for c in clients), clients
    denied = [e for e in admin_client.acl_log() if _text(e.get("username")) == user.username]
    assert denied == []
    # Nothing fell back to the filestore.
    assert _session_files(database) == []

    # The neighbour whose name begins with the tenant's cannot read or overwrite the session.
    with redis.Redis(
        host=tenant.redis.host,
        port=tenant.redis.port,
        username=neighbour.username,
        password=neighbour_password,
    ) as intruder:
        session_key = f"{user.session_key_prefix}{login.session_id}"
        with pytest.raises(redis.exceptions.NoPermissionError):
            intruder.get(session_key)
        with pytest.raises(redis.exceptions.NoPermissionError):
            intruder.set(session_key, "{}")


def test_odoo_17_with_the_former_builders_environment_cannot_log_in(
    odoo_runtimes: OdooRuntimes,
    odoo_databases: OdooDatabases,
    odoo_servers: OdooServers,
    redis_url: str,
    admin_client: redis.Redis,
    tenant_users: list[TenantRedisUser],
) -> None:
    """The defect: a user name session_redis never reads, and no URL, so it authenticates
    with the tenant's password as Redis's default user, which Redis refuses."""
    database = odoo_databases.copy("17.0", ("base",))
    name = f"s{secrets.token_hex(4)}"
    tenant = _tenant(name, database, redis_url, secrets.token_urlsafe(32))
    user = tenant_redis_user(name)
    tenant_users.append(user)
    asyncio.run(_ensure(redis_url, user, tenant.credentials.redis_password))
    # What the builder gave every pod before (valueFrom the odoo-redis Secret), as read.
    former_env = {
        "ODOO_SESSION_REDIS": "1",
        "ODOO_SESSION_REDIS_HOST": tenant.redis.host,
        "ODOO_SESSION_REDIS_PORT": str(tenant.redis.port),
        "ODOO_SESSION_REDIS_USERNAME": user.username,
        "ODOO_SESSION_REDIS_PASSWORD": tenant.credentials.redis_password,
        "ODOO_SESSION_REDIS_PREFIX": user.key_prefix,
    }
    server = _serve(odoo_servers, odoo_runtimes, tenant, database, former_env, "former")

    login = _json_rpc(
        server,
        "/web/session/authenticate",
        {"db": database.name, "login": "admin", "password": DEFAULT_ADMIN_PASSWORD},
    )

    assert login.status != 200 or "result" not in login.body, login
    log = server.log_path.read_text(errors="replace")
    assert "AuthenticationError" in log or "WRONGPASS" in log, server.log_tail()
    assert list(admin_client.scan_iter(match=user.session_key_pattern)) == []


def test_odoo_18_has_no_session_settings_and_serves_logins_from_its_filestore(
    odoo_runtimes: OdooRuntimes,
    odoo_databases: OdooDatabases,
    odoo_servers: OdooServers,
    redis_url: str,
    admin_client: redis.Redis,
) -> None:
    database = odoo_databases.copy("18.0", ("base",))
    name = f"s{secrets.token_hex(4)}"
    tenant = _tenant(name, database, redis_url, secrets.token_urlsafe(32))
    user = tenant_redis_user(name)
    env = _pod_environment(tenant)

    assert tenant.session_store == "none"
    assert [n for n in env if n.startswith("ODOO_SESSION")] == []
    assert "server_wide_modules" not in _rendered_options(tenant)
    # Two web pods on the one filestore volume, as the Deployment runs them.
    server_a = _serve(odoo_servers, odoo_runtimes, tenant, database, env, "a")
    server_b = _serve(odoo_servers, odoo_runtimes, tenant, database, env, "b")
    login = _json_rpc(
        server_a,
        "/web/session/authenticate",
        {"db": database.name, "login": "admin", "password": DEFAULT_ADMIN_PASSWORD},
    )
    assert login.status == 200, (login, server_a.log_tail())
    assert "result" in login.body, (login, server_a.log_tail())
    assert login.session_id
    info = _json_rpc(server_b, "/web/session/get_session_info", {}, login.session_id)

    assert info.status == 200, (info, server_b.log_tail())
    assert "result" in info.body, (info, server_b.log_tail())
    assert info.body["result"]["uid"] == _admin_uid(database)
    assert any(login.session_id in path.name for path in _session_files(database))
    assert list(admin_client.scan_iter(match=f"*{name}*")) == []
    assert user.username not in {_text(u) for u in admin_client.acl_users()}
