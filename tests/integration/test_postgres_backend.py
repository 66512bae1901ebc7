"""The PostgreSQL backend against a real server: isolation, idempotence, drift, rotation, drop.

The admin is the session's superuser unless a test creates a non-superuser admin with only
CREATEDB and CREATEROLE, as Azure Database for PostgreSQL flexible server gives the operator.
Every test removes the roles and databases it made, with plain SQL rather than the code
under test.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import conninfo, sql

from odoo_devstack import probes
from odoo_devstack.ports import free_port
from odoo_operator.backends.postgres import DatabaseServerUnavailable, PostgresAdmin
from odoo_operator.backends.priority import urgent
from odoo_operator.builders.postgres import (
    ActionKind,
    SuperuserRequiredError,
    TenantDatabase,
    scram_sha256_verifier,
)

NewTenant = Callable[[], TenantDatabase]


def as_role(dsn: str, role: str, password: str, database: str = "postgres") -> str:
    """``dsn`` with another user, password and database."""
    return conninfo.make_conninfo(dsn, user=role, password=password, dbname=database)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def new_tenant(superuser: psycopg.Connection) -> Iterator[NewTenant]:
    """Makes tenants with unique names; drops their databases and roles afterwards."""
    made: list[TenantDatabase] = []

    def make() -> TenantDatabase:
        name = unique("tenant")
        tenant = TenantDatabase(
            role=name, database=f"{name}_db", connection_limit=5, instance=name.replace("_", "-")
        )
        made.append(tenant)
        return tenant

    yield make
    for tenant in made:
        superuser.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(tenant.database)
            )
        )
        superuser.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(tenant.role)))


@pytest.fixture
def restricted_admin_dsn(postgres_dsn: str, superuser: psycopg.Connection) -> Iterator[str]:
    """DSN of a new admin that is no superuser but has CREATEDB and CREATEROLE."""
    name, password = unique("admin"), uuid.uuid4().hex
    superuser.execute(
        sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)
        )
    )
    yield as_role(postgres_dsn, name, password)
    superuser.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def catalog_row_versions(superuser: psycopg.Connection, tenant: TenantDatabase) -> tuple[str, ...]:
    """The catalog row versions of a tenant's role and database (see devcluster.probes)."""
    return probes.catalog_row_versions(superuser, tenant.role, tenant.database)


async def test_a_new_tenant_logs_in_with_its_password_to_its_own_database(
    admin: PostgresAdmin, new_tenant: NewTenant, postgres_dsn: str, superuser: psycopg.Connection
) -> None:
    tenant, password = new_tenant(), uuid.uuid4().hex
    actions = await admin.ensure(tenant, password)
    assert [action.kind for action in actions] == [
        ActionKind.CREATE_ROLE,
        ActionKind.MARK_ROLE,
        ActionKind.CREATE_DATABASE,
        ActionKind.MARK_DATABASE,
        ActionKind.REVOKE_PUBLIC,
    ]
    dsn = as_role(postgres_dsn, tenant.role, password, tenant.database)
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(
            "SELECT current_user::text, current_database()::text,"
            " pg_encoding_to_char(encoding), datcollate::text"
            " FROM pg_database WHERE datname = current_database()"
        )
        assert await cursor.fetchone() == (tenant.role, tenant.database, "UTF8", "C")
        await connection.execute("CREATE TABLE ledger (id bigint PRIMARY KEY)")
    state = await admin.observe(tenant)
    assert state.role is not None
    assert state.database is not None
    assert (state.role.can_login, state.role.superuser, state.role.create_db) == (
        True,
        False,
        False,
    )
    assert (state.role.create_role, state.role.replication, state.role.bypass_rls) == (
        False,
        False,
        False,
    )
    assert state.role.connection_limit == 5
    assert state.database.owner == tenant.role
    assert (state.role.owner_instance, state.database.owner_instance) == (
        tenant.instance,
        tenant.instance,
    )
    assert not state.database.public_has_privileges
    stored = superuser.execute(
        "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (tenant.role,)
    ).fetchone()
    assert stored is not None
    assert stored[0].startswith("SCRAM-SHA-256$4096:")


@pytest.mark.parametrize(
    "password",
    ["correct horse battery staple", "pässwörd\u00a0mit\u00adzeichen", "\u2168\u00aa-x"],
    ids=["ascii", "mapped", "normalised"],
)
def test_our_verifier_is_the_one_postgresql_builds_from_the_same_salt(
    password: str, superuser: psycopg.Connection
) -> None:
    role = unique("verifier")
    superuser.execute("SET password_encryption = 'scram-sha-256'")
    superuser.execute(
        sql.SQL("CREATE ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
    )
    try:
        row = superuser.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
        ).fetchone()
    finally:
        superuser.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert row is not None
    built_by_postgres: str = row[0]
    iterations, salt = built_by_postgres.split("$")[1].split(":")
    assert (
        scram_sha256_verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))
        == built_by_postgres
    )


async def test_a_non_ascii_password_logs_in(
    admin: PostgresAdmin, new_tenant: NewTenant, postgres_dsn: str
) -> None:
    tenant, password = new_tenant(), "Grüße\u00a0aus\u2168 Zürich"
    await admin.ensure(tenant, password)
    dsn = as_role(postgres_dsn, tenant.role, password, tenant.database)
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        assert await (await connection.execute("SELECT 1")).fetchone() == (1,)


async def test_tenants_cannot_reach_each_other_nor_create_databases(
    admin: PostgresAdmin, new_tenant: NewTenant, postgres_dsn: str
) -> None:
    tenant_a, tenant_b = new_tenant(), new_tenant()
    password_a = uuid.uuid4().hex
    await admin.ensure(tenant_a, password_a)
    await admin.ensure(tenant_b, uuid.uuid4().hex)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        await psycopg.AsyncConnection.connect(
            as_role(postgres_dsn, tenant_a.role, password_a, tenant_b.database)
        )
    own = as_role(postgres_dsn, tenant_a.role, password_a, tenant_a.database)
    async with await psycopg.AsyncConnection.connect(own, autocommit=True) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="create database"):
            await connection.execute(
                sql.SQL("CREATE DATABASE {}").format(sql.Identifier(unique("escape")))
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="create role"):
            await connection.execute(
                sql.SQL("CREATE ROLE {}").format(sql.Identifier(unique("escape")))
            )


async def test_ensuring_an_unchanged_tenant_runs_no_ddl(
    admin: PostgresAdmin, new_tenant: NewTenant, postgres_dsn: str, superuser: psycopg.Connection
) -> None:
    tenant = new_tenant()
    await admin.ensure(tenant, uuid.uuid4().hex)
    before = catalog_row_versions(superuser, tenant)
    # Every transaction of this admin is read-only: any DDL at all would fail with
    # "cannot execute ... in a read-only transaction".
    read_only = conninfo.make_conninfo(postgres_dsn, options="-c default_transaction_read_only=on")
    async with PostgresAdmin(read_only) as read_only_admin:
        assert await read_only_admin.ensure(tenant, None) == []
        assert await admin.ensure(tenant, None) == []
        assert catalog_row_versions(superuser, tenant) == before
        # The instrument bites: with something to repair, the read-only admin fails.
        superuser.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(tenant.role)))
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            await read_only_admin.ensure(tenant, None)


async def test_a_password_handed_over_without_rekey_only_creates_the_role(
    admin: PostgresAdmin, new_tenant: NewTenant, postgres_dsn: str, superuser: psycopg.Connection
) -> None:
    tenant, first = new_tenant(), uuid.uuid4().hex
    created = await admin.ensure(tenant, first, rekey=False)
    assert ActionKind.CREATE_ROLE in [action.kind for action in created]
    before = catalog_row_versions(superuser, tenant)
    # An idle pass hands over a password (another one, as a reader of a stale Secret would):
    # nothing is run, and the role keeps the password it was created with.
    assert await admin.ensure(tenant, uuid.uuid4().hex, rekey=False) == []
    assert catalog_row_versions(superuser, tenant) == before
    dsn = as_role(postgres_dsn, tenant.role, first, tenant.database)
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute("SELECT current_user::text")
        assert await cursor.fetchone() == (tenant.role,)


async def test_a_tenant_role_given_extra_attributes_is_put_back(
    admin: PostgresAdmin, new_tenant: NewTenant, superuser: psycopg.Connection
) -> None:
    tenant = new_tenant()
    await admin.ensure(tenant, uuid.uuid4().hex)
    superuser.execute(
        sql.SQL("ALTER ROLE {} SUPERUSER BYPASSRLS CONNECTION LIMIT 99").format(
            sql.Identifier(tenant.role)
        )
    )
    superuser.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(sql.Identifier(tenant.database))
    )
    actions = await admin.ensure(tenant, None)
    assert [action.kind for action in actions] == [
        ActionKind.ALTER_ROLE_ATTRIBUTES,
        ActionKind.SET_CONNECTION_LIMIT,
        ActionKind.REVOKE_PUBLIC,
    ]
    state = await admin.observe(tenant)
    assert state.role is not None
    assert state.database is not None
    assert not state.role.superuser
    assert not state.role.bypass_rls
    assert state.role.connection_limit == 5
    assert not state.database.public_can_connect
    assert await admin.ensure(tenant, None) == []


async def test_a_non_superuser_admin_provisions_repairs_and_drops_a_tenant(
    restricted_admin_dsn: str,
    new_tenant: NewTenant,
    postgres_dsn: str,
    superuser: psycopg.Connection,
) -> None:
    tenant, password = new_tenant(), uuid.uuid4().hex
    async with PostgresAdmin(restricted_admin_dsn) as restricted:
        actions = await restricted.ensure(tenant, password)
        assert [action.kind for action in actions] == [
            ActionKind.CREATE_ROLE,
            ActionKind.MARK_ROLE,
            ActionKind.GRANT_ROLE_TO_ADMIN,
            ActionKind.CREATE_DATABASE,
            ActionKind.MARK_DATABASE,
            ActionKind.REVOKE_PUBLIC,
        ]
        state = await restricted.observe(tenant)
        assert state.admin_is_superuser is False
        # COMMENT ON ROLE needs CREATEROLE, COMMENT ON DATABASE the owner's privileges.
        assert state.role is not None
        assert state.database is not None
        assert (state.role.owner_instance, state.database.owner_instance) == (
            tenant.instance,
            tenant.instance,
        )
        dsn = as_role(postgres_dsn, tenant.role, password, tenant.database)
        async with await psycopg.AsyncConnection.connect(dsn) as connection:
            await connection.execute("SELECT 1")
        assert await restricted.ensure(tenant, None) == []

        superuser.execute(
            sql.SQL("ALTER ROLE {} CREATEDB CONNECTION LIMIT 1").format(sql.Identifier(tenant.role))
        )
        assert [action.kind for action in await restricted.ensure(tenant, None)] == [
            ActionKind.ALTER_ROLE_ATTRIBUTES,
            ActionKind.SET_CONNECTION_LIMIT,
        ]

        superuser.execute(sql.SQL("ALTER ROLE {} SUPERUSER").format(sql.Identifier(tenant.role)))
        with pytest.raises(SuperuserRequiredError, match="a superuser must run ALTER ROLE"):
            await restricted.ensure(tenant, None)
        superuser.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER").format(sql.Identifier(tenant.role)))

        async with await psycopg.AsyncConnection.connect(dsn) as open_session:
            dropped = await restricted.drop(tenant)
            assert [action.kind for action in dropped] == [
                ActionKind.TERMINATE_SESSIONS,
                ActionKind.DROP_DATABASE,
                ActionKind.DROP_ROLE,
            ]
            with pytest.raises(psycopg.OperationalError):
                await open_session.execute("SELECT 1")
        state = await restricted.observe(tenant)
        assert (state.role, state.database) == (None, None)


async def test_drop_removes_a_tenant_in_use_and_then_does_nothing(
    admin: PostgresAdmin, new_tenant: NewTenant, postgres_dsn: str, superuser: psycopg.Connection
) -> None:
    tenant, password = new_tenant(), uuid.uuid4().hex
    await admin.ensure(tenant, password)
    dsn = as_role(postgres_dsn, tenant.role, password, tenant.database)
    sessions = [await psycopg.AsyncConnection.connect(dsn) for _ in range(2)]
    try:
        await sessions[0].execute("BEGIN; CREATE TABLE busy (id int)")
        dropped = await admin.drop(tenant)
        assert [action.kind for action in dropped] == [
            ActionKind.TERMINATE_SESSIONS,
            ActionKind.DROP_DATABASE,
            ActionKind.DROP_ROLE,
        ]
    finally:
        for session in sessions:
            await session.close()
    left = superuser.execute(
        "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = %s),"
        " (SELECT count(*) FROM pg_database WHERE datname = %s)",
        (tenant.role, tenant.database),
    ).fetchone()
    assert left == (0, 0)
    assert await admin.drop(tenant) == []


async def test_rotating_the_password_refuses_the_old_one(
    admin: PostgresAdmin, new_tenant: NewTenant, postgres_dsn: str
) -> None:
    tenant, first, second, third = new_tenant(), "first-secret", "second-secret", "third-secret"
    await admin.ensure(tenant, first)
    rotated = await admin.rotate_password(tenant, second)
    assert [action.kind for action in rotated] == [ActionKind.SET_PASSWORD]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        await psycopg.AsyncConnection.connect(as_role(postgres_dsn, tenant.role, first))
    async with await psycopg.AsyncConnection.connect(as_role(postgres_dsn, tenant.role, second)):
        pass
    # ensure with a password on an existing role is a rotation too.
    assert [action.kind for action in await admin.ensure(tenant, third)] == [
        ActionKind.SET_PASSWORD
    ]
    async with await psycopg.AsyncConnection.connect(as_role(postgres_dsn, tenant.role, third)):
        pass
    assert all(secret not in action.description for action in rotated for secret in (first, second))


async def test_creating_a_role_without_a_password_is_refused_before_any_change(
    admin: PostgresAdmin, new_tenant: NewTenant
) -> None:
    tenant = new_tenant()
    with pytest.raises(ValueError, match="a password is required"):
        await admin.ensure(tenant, None)
    state = await admin.observe(tenant)
    assert (state.role, state.database) == (None, None)
    with pytest.raises(LookupError, match="ensure the tenant first"):
        await admin.rotate_password(tenant, "whatever")


async def test_an_unreachable_server_is_named_without_the_password() -> None:
    port, secret = free_port(), f"pw-{uuid.uuid4().hex}"
    dsn = f"host=127.0.0.1 port={port} user=postgres password={secret} dbname=postgres"
    async with PostgresAdmin(dsn, acquire_timeout=1.0) as unreachable:
        with pytest.raises(DatabaseServerUnavailable) as raised:
            await unreachable.observe(TenantDatabase("acme", "acme", 5, "acme"))
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message
    assert "Connection refused" in message or "connection failed" in message
    assert "the operator retries" in message
    error: BaseException | None = raised.value
    while error is not None:
        assert secret not in str(error)
        assert secret not in repr(error)
        error = error.__cause__ or error.__context__
    assert secret not in repr(unreachable)


def test_a_malformed_connection_string_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="cannot be parsed") as raised:
        PostgresAdmin("host=db password=hunter2-secret port")
    assert "hunter2-secret" not in str(raised.value)
    assert raised.value.__cause__ is None


async def test_an_urgent_caller_gets_the_next_connection_before_a_queue_of_others(
    postgres_dsn: str, new_tenant: NewTenant
) -> None:
    admin = PostgresAdmin(postgres_dsn, max_connections=1)
    await admin.open()
    finished: list[str] = []

    async def look(name: str) -> None:
        await admin.observe(tenant)
        finished.append(name)

    try:
        tenant = new_tenant()
        rollout = [asyncio.create_task(look(f"tenant-{n}")) for n in range(30)]
        for _ in range(5):
            await asyncio.sleep(0)  # the first holds the connection, the others wait for it
        assert not finished

        async def rotation() -> None:
            with urgent():
                await look("rotation")

        await asyncio.gather(rotation(), *rollout)
    finally:
        await admin.close()
    # Behind the one caller holding the connection when it arrived, and those granted before.
    assert finished.index("rotation") <= 3, finished
