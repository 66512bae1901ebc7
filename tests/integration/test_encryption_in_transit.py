"""Encryption in transit, against the real PostgreSQL and Redis of the local stack.

The operator's connections are built by :class:`odoo_operator.reconcile.clients.Clients`
from a registry with ``tls`` and the Secrets it names (served by a stand-in for the
Kubernetes API that holds only those Secrets). The tenant's connections use exactly what the
builders put into its pods: odoo.conf, the environment (expanded as the kubelet expands
``$(NAME)``) and the CA Secret's files at the mounted path.

Refusals are proven against listeners that relay to the same servers (the ``service_tls``
fixture): one presents a certificate for ``wrong.example`` from the same CA, which
``verify-ca`` accepts, so ``verify-full`` refusing it is about the name alone; another is a
PostgreSQL that does not offer TLS, which libpq's default mode would talk to in clear.
"""

from __future__ import annotations

import base64
import configparser
import dataclasses
import os
import re
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
import redis
import redis.asyncio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from odoo_devstack.tls import ServiceTlsEndpoints
from odoo_operator.backends import pgtools
from odoo_operator.backends.postgres import DatabaseServerUnavailable, PostgresAdmin
from odoo_operator.backends.redis import RedisAdmin, RedisServerUnavailable
from odoo_operator.builders.backup_job import build_backup_job
from odoo_operator.builders.postgres import TenantDatabase
from odoo_operator.builders.redis_acl import tenant_redis_user
from odoo_operator.builders.server_tls import SERVER_CA_SECRET
from odoo_operator.builders.tenant import Endpoint, Tenant, TenantCredentials
from odoo_operator.builders.workloads import build_deployments, build_secrets
from odoo_operator.model.config import ConfigError, OperatorConfig
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.reconcile.clients import Clients

NAMESPACE = "odoo-operator"
_SSL_OF_THIS_SESSION = "SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_backend_pid()"


class SecretsOnly:
    """The part of the Kubernetes API :class:`Clients` reads here: Secrets of the operator's
    namespace, by name."""

    def __init__(self, secrets: dict[str, dict[str, str]]) -> None:
        self.secrets = secrets

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        assert (api_version, kind, namespace) == ("v1", "Secret", NAMESPACE)
        data = self.secrets.get(name)
        if data is None:
            return None
        return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}

    async def close(self) -> None:
        return None


def clients_for(
    secrets: dict[str, dict[str, str]],
    postgres_tls: dict[str, Any] | None = None,
    redis_tls: dict[str, Any] | None = None,
) -> Clients:
    """Clients of a registry with one PostgreSQL and one Redis server, ``main``."""
    postgres: dict[str, Any] = {"secretRef": "postgres-main", "default": True}
    redis_entry: dict[str, Any] = {"secretRef": "redis-main", "default": True}
    if postgres_tls is not None:
        postgres["tls"] = postgres_tls
    if redis_tls is not None:
        redis_entry["tls"] = redis_tls
    config = OperatorConfig.from_mapping(
        {
            "operatorNamespace": NAMESPACE,
            "postgresServers": {"main": postgres},
            "redisServers": {"main": redis_entry},
        }
    )
    return Clients(kube=cast(Any, SecretsOnly(secrets)), config=config)


def with_port(dsn: str, port: int) -> str:
    return make_conninfo(dsn, port=str(port))


def with_redis_port(url: str, port: int) -> str:
    return re.sub(r":\d+/", f":{port}/", url, count=1)


def password_of(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["password"])


def redis_password_of(url: str) -> str:
    return str(redis.connection.parse_url(url)["password"])


@pytest.fixture
def ca_pem(service_tls: ServiceTlsEndpoints) -> str:
    return service_tls.ca.read_text()


VERIFY_FULL = {"mode": "verify-full", "caSecretRef": "postgres-ca"}


@pytest.fixture
async def pg_clients(
    postgres_dsn: str, ca_pem: str, request: pytest.FixtureRequest
) -> AsyncIterator[Clients]:
    """Clients whose server ``main`` is the local PostgreSQL, registered as verify-full."""
    clients = clients_for(
        {"postgres-main": {"dsn": postgres_dsn}, "postgres-ca": {"ca.crt": ca_pem}},
        postgres_tls=VERIFY_FULL,
    )
    yield clients
    await clients.close()


# --- the operator's PostgreSQL admin connection -----------------------------------------------


async def test_the_admin_pool_under_verify_full_is_encrypted(
    postgres_dsn: str, ca_pem: str
) -> None:
    # A name of its own, to find the pool's connections among the server's other sessions.
    application = f"tls-test-{uuid.uuid4().hex[:8]}"
    clients = clients_for(
        {
            "postgres-main": {"dsn": make_conninfo(postgres_dsn, application_name=application)},
            "postgres-ca": {"ca.crt": ca_pem},
        },
        postgres_tls=VERIFY_FULL,
    )
    try:
        admin, endpoint = await clients.postgres(clients.config.postgres_server(None))
        # A real round trip through the pool; the tenant need not exist.
        await admin.observe(TenantDatabase("tls_probe", "tls_probe", 5, "tls-probe"))
        assert endpoint == Endpoint("127.0.0.1", int(conninfo_to_dict(postgres_dsn)["port"]))
        with psycopg.connect(postgres_dsn, autocommit=True) as observer:
            rows = observer.execute(
                "SELECT s.ssl, s.version FROM pg_catalog.pg_stat_ssl s"
                " JOIN pg_catalog.pg_stat_activity a USING (pid)"
                " WHERE a.application_name = %s",
                (application,),
            ).fetchall()
        assert rows, "the pool's connection is not open on the server"
        assert all(encrypted for encrypted, _ in rows), rows
    finally:
        await clients.close()


async def test_the_admin_conninfo_verifies_the_server_against_a_private_copy_of_the_ca(
    pg_clients: Clients,
) -> None:
    server = pg_clients.config.postgres_server(None)
    conninfo = await pg_clients.postgres_admin_conninfo(server)
    parameters = conninfo_to_dict(conninfo)
    assert parameters["sslmode"] == "verify-full"
    ca_file = Path(str(parameters["sslrootcert"]))
    assert stat.S_IMODE(ca_file.stat().st_mode) == 0o600
    with psycopg.connect(conninfo) as connection:
        assert connection.execute(_SSL_OF_THIS_SESSION).fetchone() == (True,)
    await pg_clients.close()
    assert not ca_file.exists(), "the CA copy outlived the operator's clients"


async def test_a_certificate_for_another_name_is_refused_without_showing_the_password(
    postgres_dsn: str, ca_pem: str, service_tls: ServiceTlsEndpoints
) -> None:
    wrong = with_port(postgres_dsn, service_tls.postgres_wrong_name_port)
    clients = clients_for(
        {"postgres-main": {"dsn": wrong}, "postgres-ca": {"ca.crt": ca_pem}},
        postgres_tls=VERIFY_FULL,
    )
    try:
        conninfo = await clients.postgres_admin_conninfo(clients.config.postgres_server(None))
        admin = PostgresAdmin(conninfo, acquire_timeout=2, connect_timeout=5)
        await admin.open()
        try:
            with pytest.raises(DatabaseServerUnavailable) as refused:
                await admin.observe(TenantDatabase("tls_probe", "tls_probe", 5, "tls-probe"))
        finally:
            await admin.close()
    finally:
        await clients.close()
    message = str(refused.value)
    assert 'server certificate for "wrong.example"' in message
    assert 'does not match host name "127.0.0.1"' in message
    assert password_of(postgres_dsn) not in message


async def test_the_same_listener_passes_verify_ca_so_the_refusal_is_about_the_name(
    postgres_dsn: str, ca_pem: str, service_tls: ServiceTlsEndpoints
) -> None:
    clients = clients_for(
        {
            "postgres-main": {"dsn": with_port(postgres_dsn, service_tls.postgres_wrong_name_port)},
            "postgres-ca": {"ca.crt": ca_pem},
        },
        postgres_tls={"mode": "verify-ca", "caSecretRef": "postgres-ca"},
    )
    try:
        conninfo = await clients.postgres_admin_conninfo(clients.config.postgres_server(None))
        with psycopg.connect(conninfo, connect_timeout=5) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
            assert connection.pgconn.ssl_in_use
    finally:
        await clients.close()


async def test_a_server_not_offering_tls_is_refused_under_verify_full(
    postgres_dsn: str, ca_pem: str, service_tls: ServiceTlsEndpoints
) -> None:
    plain = with_port(postgres_dsn, service_tls.postgres_plain_port)
    clients = clients_for(
        {"postgres-main": {"dsn": plain}, "postgres-ca": {"ca.crt": ca_pem}},
        postgres_tls=VERIFY_FULL,
    )
    try:
        conninfo = await clients.postgres_admin_conninfo(clients.config.postgres_server(None))
        admin = PostgresAdmin(conninfo, acquire_timeout=2, connect_timeout=5)
        await admin.open()
        try:
            with pytest.raises(DatabaseServerUnavailable, match="server does not support SSL"):
                await admin.observe(TenantDatabase("tls_probe", "tls_probe", 5, "tls-probe"))
        finally:
            await admin.close()
    finally:
        await clients.close()


async def test_without_tls_in_the_registry_a_server_not_offering_it_is_used_in_clear(
    postgres_dsn: str, service_tls: ServiceTlsEndpoints
) -> None:
    # Today's behaviour, kept for registries without tls, and why it is not recommended.
    clients = clients_for(
        {"postgres-main": {"dsn": with_port(postgres_dsn, service_tls.postgres_plain_port)}}
    )
    try:
        conninfo = await clients.postgres_admin_conninfo(clients.config.postgres_server(None))
        with psycopg.connect(conninfo, connect_timeout=5) as connection:
            assert not connection.pgconn.ssl_in_use
    finally:
        await clients.close()


async def test_a_ca_secret_without_a_certificate_is_a_configuration_error(
    postgres_dsn: str,
) -> None:
    clients = clients_for(
        {"postgres-main": {"dsn": postgres_dsn}, "postgres-ca": {"ca.crt": "not a cert"}},
        postgres_tls=VERIFY_FULL,
    )
    try:
        with pytest.raises(ConfigError, match=r"'ca\.crt' of Secret odoo-operator/postgres-ca"):
            await clients.postgres(clients.config.postgres_server(None))
    finally:
        await clients.close()


# --- the operator's Redis admin connection ----------------------------------------------------


async def test_redis_admin_over_tls_verifies_the_server_and_works(
    redis_url: str, ca_pem: str, service_tls: ServiceTlsEndpoints
) -> None:
    # A redis:// URL on the TLS port: the registry's tls.enabled is what asks for TLS.
    clients = clients_for(
        {
            "redis-main": {"url": with_redis_port(redis_url, service_tls.redis_tls_port)},
            "redis-ca": {"ca.crt": ca_pem},
        },
        redis_tls={"enabled": True, "caSecretRef": "redis-ca"},
    )
    user = tenant_redis_user(f"tls-{uuid.uuid4().hex[:8]}")
    try:
        admin, endpoint = await clients.redis(clients.config.redis_server(None))
        assert endpoint.port == service_tls.redis_tls_port
        assert await admin.ensure(user, "tenant-password")
        assert await admin.observe(user) is not None
        assert (await admin.drop(user, delete_keys=True)).user_deleted
    finally:
        await clients.close()


async def test_the_redis_tls_port_speaks_nothing_but_tls(
    redis_url: str, service_tls: ServiceTlsEndpoints
) -> None:
    # What makes the test above a proof of TLS: a clear-text client gets no answer there.
    client = redis.Redis.from_url(
        with_redis_port(redis_url, service_tls.redis_tls_port),
        socket_timeout=2,
        socket_connect_timeout=2,
    )
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
    finally:
        client.close()


async def test_redis_admin_refuses_a_certificate_for_another_name(
    redis_url: str, ca_pem: str, service_tls: ServiceTlsEndpoints
) -> None:
    clients = clients_for(
        {
            "redis-main": {"url": with_redis_port(redis_url, service_tls.redis_wrong_name_port)},
            "redis-ca": {"ca.crt": ca_pem},
        },
        redis_tls={"enabled": True, "caSecretRef": "redis-ca"},
    )
    try:
        admin, _ = await clients.redis(clients.config.redis_server(None))
        with pytest.raises(RedisServerUnavailable) as refused:
            await admin.observe(tenant_redis_user("tls-probe"))
    finally:
        await clients.close()
    message = str(refused.value)
    assert "certificate verify failed" in message
    assert "not valid for '127.0.0.1'" in message
    assert redis_password_of(redis_url) not in message


async def test_redis_admin_refuses_a_server_not_offering_tls(
    redis_url: str, ca_pem: str, service_tls: ServiceTlsEndpoints
) -> None:
    admin = RedisAdmin(
        with_redis_port(redis_url, service_tls.redis_plain_port),
        require_tls=True,
        ca_data=ca_pem,
        connect_timeout=1,
    )
    async with admin:
        with pytest.raises(RedisServerUnavailable) as refused:
            await admin.observe(tenant_redis_user("tls-probe"))
    assert redis_password_of(redis_url) not in str(refused.value)


# --- the tenant, with what its pods get -------------------------------------------------------


@pytest.fixture
def tenant_role(postgres_dsn: str) -> Iterator[tuple[str, str]]:
    """A login role and its own database, as the operator provisions them for a tenant."""
    name, password = f"tls_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(name)
            )
        )
    yield name, password
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def encrypted_tenant(
    role: tuple[str, str], postgres_port: int, redis_port: int, ca_pem: str
) -> Tenant:
    """A tenant of servers registered with TLS, resolved as the reconciler resolves it."""
    name, password = role
    config = OperatorConfig.from_mapping(
        {
            "postgresServers": {"main": {"secretRef": "p", "default": True, "tls": VERIFY_FULL}},
            "redisServers": {
                "main": {
                    "secretRef": "r",
                    "default": True,
                    "tls": {"enabled": True, "caSecretRef": "redis-ca"},
                }
            },
        }
    )
    spec = InstanceSpec.from_resource(
        {
            "metadata": {"name": name.replace("_", "-"), "uid": "uid-1", "generation": 1},
            "spec": {"version": "18.0", "hosts": ["tls.example.com"], "database": {"name": name}},
        }
    )
    user = tenant_redis_user(spec.name)
    return Tenant(
        spec=spec,
        image="odoo:18.0",
        database=Endpoint("127.0.0.1", postgres_port),
        redis=Endpoint("127.0.0.1", redis_port),
        redis_user=user.username,
        redis_key_prefix=user.key_prefix,
        credentials=TenantCredentials(password, "redis-" + password, "master"),
        database_tls=config.postgres_server(None).tls,
        redis_tls=config.redis_server(None).tls,
        database_ca=ca_pem,
        redis_ca=ca_pem,
    )


class Pod:
    """One container of a built pod, its Secrets and CA files laid out in ``root``."""

    def __init__(self, pod_spec: dict[str, Any], secrets: list[dict[str, Any]], root: Path):
        self.secrets = {
            s["metadata"]["name"]: {
                k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()
            }
            for s in secrets
        }
        self.container = pod_spec["containers"][0]
        volumes = {v["name"]: v for v in pod_spec["volumes"]}
        self.mounts: dict[str, Path] = {}
        for mount in self.container["volumeMounts"]:
            secret = volumes[mount["name"]].get("secret")
            if secret and secret["secretName"] == SERVER_CA_SECRET:
                directory = root / mount["name"]
                directory.mkdir()
                for key, value in self.secrets[SERVER_CA_SECRET].items():
                    (directory / key).write_text(value)
                self.mounts[mount["mountPath"]] = directory

    def path(self, in_pod: str) -> str:
        """Where a file the pod sees at ``in_pod`` lies here."""
        for mount, directory in self.mounts.items():
            if in_pod.startswith(mount + "/"):
                return str(directory / in_pod.removeprefix(mount + "/"))
        raise AssertionError(f"{in_pod} is on no mounted CA volume")

    def environment(self) -> dict[str, str]:
        """The container's variables as the kubelet sets them: Secret references read,
        $(NAME) expanded from the variables before, CA paths moved to ``root``."""
        env: dict[str, str] = {}
        for item in self.container["env"]:
            if "valueFrom" in item:
                ref = item["valueFrom"]["secretKeyRef"]
                value = self.secrets[ref["name"]][ref["key"]]
            else:
                value = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
            for mount in self.mounts:
                if mount + "/" in value:
                    value = value.replace(mount + "/", str(self.mounts[mount]) + "/")
            env[item["name"]] = value
        return env


def odoo_connection_parameters(secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """What Odoo 17/18 hands psycopg2 (odoo/sql_db.py, connection_info_for) from odoo.conf."""
    parser = configparser.RawConfigParser()
    parser.read_string(secrets["odoo-config"]["odoo.conf"])
    options = dict(parser.items("options"))
    parameters = {"dbname": options["db_name"]}
    for key in ("host", "port", "user", "password", "sslmode"):
        if options.get(f"db_{key}"):
            parameters[key] = options[f"db_{key}"]
    return parameters


@pytest.mark.parametrize("component", ["web", "cron"])
def test_a_tenant_connecting_with_what_its_pods_get_is_encrypted(
    tenant_role: tuple[str, str],
    service_tls: ServiceTlsEndpoints,
    ca_pem: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    component: str,
) -> None:
    tenant = encrypted_tenant(
        tenant_role, service_tls.postgres_port, service_tls.redis_tls_port, ca_pem
    )
    deployments = {d["metadata"]["name"]: d for d in build_deployments(tenant)}
    pod = Pod(
        deployments[f"odoo-{component}"]["spec"]["template"]["spec"],
        build_secrets(tenant),
        tmp_path,
    )
    env = pod.environment()
    for name in [n for n in os.environ if n.startswith("PG")]:
        monkeypatch.delenv(name)
    # libpq reads these from the process environment at each connection, as in the pod.
    monkeypatch.setenv("PGSSLMODE", env["PGSSLMODE"])
    monkeypatch.setenv("PGSSLROOTCERT", env["PGSSLROOTCERT"])
    parameters = odoo_connection_parameters(pod.secrets)
    assert parameters["sslmode"] == "verify-full"
    with psycopg.connect(**parameters, connect_timeout=5) as connection:
        assert connection.execute(_SSL_OF_THIS_SESSION).fetchone() == (True,)
        assert connection.info.user == tenant_role[0]
    wrong = {**parameters, "port": str(service_tls.postgres_wrong_name_port)}
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        psycopg.connect(**wrong, connect_timeout=5)


async def test_the_backup_jobs_pg_dump_uses_the_tls_settings(
    tenant_role: tuple[str, str], service_tls: ServiceTlsEndpoints, ca_pem: str, tmp_path: Path
) -> None:
    tenant = encrypted_tenant(
        tenant_role, service_tls.postgres_port, service_tls.redis_tls_port, ca_pem
    )
    job = build_backup_job(
        tenant.spec,
        node_selector={},
        tolerations=(),
        backup_name="b",
        backup_id="B1",
        reason="manual",
        image="operator",
        container="backups",
        store_secret_key="connectionString",
        database_tls=tenant.database_tls,
    )
    store = {"connectionString": base64.b64encode(b"unused here").decode()}
    secrets = [*build_secrets(tenant), {"metadata": {"name": "odoo-backup-store"}, "data": store}]
    pod = Pod(job["spec"]["template"]["spec"], secrets, tmp_path)
    # The engine passes only this string to pg_dump: no PG* variable reaches it.
    conninfo = pod.environment()["ODOO_OPERATOR_DB_CONNINFO"]
    dumped = b"".join([chunk async for chunk in pgtools.dump(conninfo, tenant.spec.database)])
    assert dumped.startswith(b"PGDMP")
    # Through a listener without TLS the same string is refused: sslmode reached pg_dump.
    plain = make_conninfo(conninfo, port=str(service_tls.postgres_plain_port))
    with pytest.raises(pgtools.DumpFailed, match="server does not support SSL"):
        async for _ in pgtools.dump(plain, tenant.spec.database):
            pass


async def test_odoo_sessions_reach_redis_over_verified_tls_with_the_pods_url(
    tenant_role: tuple[str, str],
    redis_url: str,
    service_tls: ServiceTlsEndpoints,
    ca_pem: str,
    tmp_path: Path,
) -> None:
    tenant = dataclasses.replace(
        encrypted_tenant(
            tenant_role, service_tls.postgres_port, service_tls.redis_tls_port, ca_pem
        ),
        session_store="redis",  # an image whose session module keeps sessions in Redis
    )
    user = tenant_redis_user(tenant.spec.name)
    web = next(d for d in build_deployments(tenant) if d["metadata"]["name"] == "odoo-web")
    pod = Pod(web["spec"]["template"]["spec"], build_secrets(tenant), tmp_path)
    url = pod.environment()["ODOO_SESSION_REDIS_URL"]
    async with RedisAdmin(redis_url) as admin:
        await admin.ensure(user, tenant.credentials.redis_password)
        try:
            # As the session store connects: redis-py's from_url, nothing else.
            session_store = redis.Redis.from_url(url)
            try:
                assert session_store.set(f"{user.key_prefix}session", "x")
                # Logged in as the tenant's user: keys outside its prefix are refused.
                with pytest.raises(redis.exceptions.NoPermissionError):
                    session_store.set("elsewhere", "x")
            finally:
                session_store.close()
            wrong = redis.Redis.from_url(
                with_redis_port(url, service_tls.redis_wrong_name_port), socket_timeout=5
            )
            with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify"):
                wrong.ping()
            wrong.close()
        finally:
            await admin.drop(user, delete_keys=True)
