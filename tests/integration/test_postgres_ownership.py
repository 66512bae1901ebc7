"""Ownership on a real server: what a tenant may claim, adopt and drop, and server hardening.

The scenario behind these tests: an OdooInstance whose spec names another tenant's
database, or one of the server's own (``postgres``, the admin role), must be refused before
the operator runs a single statement, and the owner must not notice anything. Each test
drops the roles and databases it made with plain SQL, not with the code under test, and
puts back any server-wide privilege it changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql
from tests.integration.test_postgres_backend import as_role, unique

from odoo_devstack import probes
from odoo_operator.backends.postgres import PostgresAdmin
from odoo_operator.builders.postgres import (
    REASON_NOT_MANAGED,
    REASON_OWNED_BY_ANOTHER_INSTANCE,
    REASON_RESERVED_NAME,
    ActionKind,
    NotOwnedError,
    SuperuserRequiredError,
    TenantDatabase,
    ownership_mark,
)

Forget = Callable[[str], None]


@pytest.fixture
def forget(superuser: psycopg.Connection) -> Iterator[Forget]:
    """Registers a name whose database and role are dropped after the test."""
    names: list[str] = []
    yield names.append
    for name in reversed(names):
        superuser.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        superuser.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def tenant_named(name: str, instance: str, connection_limit: int = 5) -> TenantDatabase:
    """A tenant as the operator derives it: role and database of the same name."""
    return TenantDatabase(name, name, connection_limit, instance)


def role_row(superuser: psycopg.Connection, role: str) -> tuple[Any, ...]:
    """Everything pg_authid holds about ``role`` (password verifier included) and its comment."""
    row = superuser.execute(
        "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,"
        " rolbypassrls, rolconnlimit, rolpassword, rolvaliduntil, xmin::text,"
        " shobj_description(oid, 'pg_authid')"
        " FROM pg_authid WHERE rolname = %s",
        (role,),
    ).fetchone()
    assert row is not None, f"role {role} is gone"
    return tuple(row)


def database_row(superuser: psycopg.Connection, database: str) -> tuple[Any, ...]:
    """The catalog row version, owner, ACL and comment of ``database``."""
    row = superuser.execute(
        "SELECT xmin::text, pg_get_userbyid(datdba)::text, datacl::text,"
        " shobj_description(oid, 'pg_database')"
        " FROM pg_database WHERE datname = %s",
        (database,),
    ).fetchone()
    assert row is not None, f"database {database} is gone"
    return tuple(row)


def comments(superuser: psycopg.Connection, name: str) -> tuple[str | None, str | None]:
    """The comments on role ``name`` and on database ``name``."""
    row = superuser.execute(
        "SELECT (SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s),"
        " (SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s)",
        (name, name),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


async def refusals(
    backend: PostgresAdmin, tenant: TenantDatabase, password: str
) -> list[NotOwnedError]:
    """What each call that could change or drop ``tenant`` raises; fails if one goes through."""
    raised: list[NotOwnedError] = []
    for attempt in (
        lambda: backend.ensure(tenant, None),
        lambda: backend.ensure(tenant, password),
        lambda: backend.ensure(tenant, password, adopt_unmarked=True),
        lambda: backend.rotate_password(tenant, password),
        lambda: backend.drop_kept_databases(tenant),
        lambda: backend.drop(tenant),
    ):
        with pytest.raises(NotOwnedError) as refusal:
            await attempt()
        raised.append(refusal.value)
    return raised


def create_legacy_tenant(
    superuser: psycopg.Connection, name: str, password: str, attributes: str = "LOGIN"
) -> None:
    """A role and database as an operator before ownership marks made them: no comments."""
    superuser.execute(
        sql.SQL("CREATE ROLE {} WITH {} CONNECTION LIMIT 3 PASSWORD {}").format(
            sql.Identifier(name), sql.SQL(attributes), sql.Literal(password)
        )
    )
    superuser.execute(
        sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
            sql.Identifier(name), sql.Identifier(name)
        )
    )
    superuser.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))


async def test_claiming_another_instances_database_is_refused_and_the_owner_keeps_working(
    admin: PostgresAdmin, forget: Forget, postgres_dsn: str, superuser: psycopg.Connection
) -> None:
    name, password = unique("odoo_victim"), uuid.uuid4().hex
    forget(name)
    victim = tenant_named(name, "victim")
    await admin.ensure(victim, password)
    owner_dsn = as_role(postgres_dsn, name, password, name)
    with psycopg.connect(owner_dsn, autocommit=True) as owner:
        owner.execute("CREATE TABLE ledger (entry text)")
        owner.execute("INSERT INTO ledger VALUES ('invoice 1')")
    role_before, database_before = role_row(superuser, name), database_row(superuser, name)

    intruder = tenant_named(name, "intruder", connection_limit=50)
    for refusal in await refusals(admin, intruder, "intruder-password"):
        assert refusal.reason == REASON_OWNED_BY_ANOTHER_INSTANCE
        assert refusal.other_instance == "victim"
        assert f"role {name} belongs to OdooInstance victim" in str(refusal)

    assert role_row(superuser, name) == role_before
    assert database_row(superuser, name) == database_before
    with psycopg.connect(owner_dsn) as owner:
        assert owner.execute("SELECT entry FROM ledger").fetchall() == [("invoice 1",)]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(as_role(postgres_dsn, name, "intruder-password", name))


async def test_rotation_and_drop_by_a_non_owner_leave_sessions_copies_and_password_alone(
    admin: PostgresAdmin, forget: Forget, postgres_dsn: str, superuser: psycopg.Connection
) -> None:
    name, password = unique("odoo_victim"), uuid.uuid4().hex
    kept = f"{name}_pre_upgrade_1"
    forget(name)
    forget(kept)
    await admin.ensure(tenant_named(name, "victim"), password)
    superuser.execute(
        sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
            sql.Identifier(kept), sql.Identifier(name)
        )
    )
    intruder = tenant_named(name, "intruder")
    with psycopg.connect(as_role(postgres_dsn, name, password, name)) as open_session:
        with pytest.raises(NotOwnedError):
            await admin.rotate_password(intruder, "intruder-password")
        with pytest.raises(NotOwnedError):
            await admin.drop_kept_databases(intruder)
        with pytest.raises(NotOwnedError):
            await admin.drop(intruder)
        # TERMINATE_SESSIONS would have ended this session: it is still there.
        assert open_session.execute("SELECT current_user::text").fetchone() == (name,)
    left = superuser.execute(
        "SELECT count(*) FROM pg_database WHERE datname IN (%s, %s)", (name, kept)
    ).fetchone()
    assert left == (2,)
    with psycopg.connect(as_role(postgres_dsn, name, password, name)):
        pass


@pytest.mark.parametrize("name", ["postgres", "template1", "pg_foo"])
def test_server_names_are_refused_before_the_backend_is_asked_and_the_admin_is_unchanged(
    name: str, postgres_dsn: str, superuser: psycopg.Connection
) -> None:
    admin_name = str(conninfo.conninfo_to_dict(postgres_dsn)["user"])
    before = role_row(superuser, admin_name)
    with pytest.raises(ValueError, match="reserved"):
        tenant_named(name, "sneaky")
    after = role_row(superuser, admin_name)
    assert after == before
    assert after[0] is True  # still a superuser: nothing ran ALTER ROLE ... NOSUPERUSER


@pytest.fixture(params=["superuser", "restricted"])
def second_admin(
    request: pytest.FixtureRequest, postgres_dsn: str, forget: Forget, superuser: psycopg.Connection
) -> tuple[str, str]:
    """Name and DSN of another admin: a superuser, or one with CREATEDB and CREATEROLE only."""
    name, password = unique("admin"), uuid.uuid4().hex
    forget(name)
    attributes = "SUPERUSER" if request.param == "superuser" else "CREATEDB CREATEROLE"
    superuser.execute(
        sql.SQL("CREATE ROLE {} LOGIN {} CONNECTION LIMIT 7 PASSWORD {}").format(
            sql.Identifier(name), sql.SQL(attributes), sql.Literal(password)
        )
    )
    return name, as_role(postgres_dsn, name, password)


async def test_the_admin_roles_own_name_is_refused_and_its_attributes_stay(
    second_admin: tuple[str, str], superuser: psycopg.Connection
) -> None:
    name, dsn = second_admin
    before = role_row(superuser, name)
    async with PostgresAdmin(dsn) as backend:
        for refusal in await refusals(backend, tenant_named(name, "sneaky"), "x-password"):
            assert refusal.reason == REASON_RESERVED_NAME
            assert f"{name} is the admin role" in str(refusal)
        # Even a role marked as the instance's is refused when it is the admin itself.
        superuser.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                sql.Identifier(name), sql.Literal(ownership_mark("sneaky"))
            )
        )
        marked = role_row(superuser, name)
        for refusal in await refusals(backend, tenant_named(name, "sneaky"), "x-password"):
            assert refusal.reason == REASON_RESERVED_NAME
    assert marked[:10] == before[:10]  # rolsuper ... rolconnlimit, rolpassword: as they were
    assert role_row(superuser, name) == marked
    assert before[7] == 7


@pytest.mark.parametrize("attribute", ["SUPERUSER", "CREATEROLE", "REPLICATION", "BYPASSRLS"])
async def test_an_unmarked_privileged_role_named_like_a_tenant_is_never_altered(
    attribute: str, admin: PostgresAdmin, forget: Forget, superuser: psycopg.Connection
) -> None:
    name = unique("odoo_ops")
    forget(name)
    create_legacy_tenant(superuser, name, uuid.uuid4().hex, f"LOGIN {attribute}")
    role_before, database_before = role_row(superuser, name), database_row(superuser, name)
    for refusal in await refusals(admin, tenant_named(name, "ops"), "new-password"):
        assert refusal.reason == REASON_RESERVED_NAME
        assert f"exists with {attribute}" in str(refusal)
    assert role_row(superuser, name) == role_before
    assert database_row(superuser, name) == database_before


async def test_an_unmarked_tenant_is_refused_without_adoption_and_nothing_is_written(
    admin: PostgresAdmin, forget: Forget, superuser: psycopg.Connection
) -> None:
    name = unique("odoo_legacy")
    forget(name)
    create_legacy_tenant(superuser, name, uuid.uuid4().hex)
    role_before, database_before = role_row(superuser, name), database_row(superuser, name)
    tenant = tenant_named(name, "legacy")
    for attempt in (
        lambda: admin.ensure(tenant, None),
        lambda: admin.ensure(tenant, "new-password"),
        lambda: admin.rotate_password(tenant, "new-password"),
        lambda: admin.drop_kept_databases(tenant),
        lambda: admin.drop(tenant),
    ):
        with pytest.raises(NotOwnedError) as refusal:
            await attempt()
        assert refusal.value.reason == REASON_NOT_MANAGED
    assert role_row(superuser, name) == role_before
    assert database_row(superuser, name) == database_before


@pytest.mark.parametrize("admin_kind", ["superuser", "restricted"])
async def test_legacy_adoption_writes_both_marks_once_and_keeps_the_password(
    admin_kind: str,
    forget: Forget,
    postgres_dsn: str,
    superuser: psycopg.Connection,
) -> None:
    name, password = unique("odoo_legacy"), uuid.uuid4().hex
    forget(name)
    create_legacy_tenant(superuser, name, password)
    dsn = postgres_dsn
    if admin_kind == "restricted":
        admin_name, admin_password = unique("admin"), uuid.uuid4().hex
        forget(admin_name)
        superuser.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}").format(
                sql.Identifier(admin_name), sql.Literal(admin_password)
            )
        )
        dsn = as_role(postgres_dsn, admin_name, admin_password)
    tenant = tenant_named(name, "legacy-shop", connection_limit=3)
    async with PostgresAdmin(dsn) as backend:
        adopted = await backend.ensure(tenant, None, adopt_unmarked=True)
        expected = [ActionKind.MARK_ROLE, ActionKind.MARK_DATABASE]
        if admin_kind == "restricted":
            expected.insert(1, ActionKind.GRANT_ROLE_TO_ADMIN)
        assert [action.kind for action in adopted] == expected
        assert comments(superuser, name) == (ownership_mark("legacy-shop"),) * 2
        assert await backend.ensure(tenant, None, adopt_unmarked=True) == []
        assert await backend.ensure(tenant, None) == []
    with psycopg.connect(as_role(postgres_dsn, name, password, name)):
        pass
    # Adoption is no licence for another instance afterwards.
    async with PostgresAdmin(postgres_dsn) as backend:
        with pytest.raises(NotOwnedError) as refusal:
            await backend.ensure(tenant_named(name, "other-shop"), None, adopt_unmarked=True)
    assert refusal.value.reason == REASON_OWNED_BY_ANOTHER_INSTANCE


async def test_an_unchanged_marked_tenant_costs_no_ddl_and_no_comment(
    admin: PostgresAdmin, forget: Forget, postgres_dsn: str, superuser: psycopg.Connection
) -> None:
    name = unique("odoo_steady")
    forget(name)
    tenant = tenant_named(name, "steady")
    await admin.ensure(tenant, uuid.uuid4().hex)
    before = (
        probes.catalog_row_versions(superuser, name, name),
        comments(superuser, name),
        superuser.execute("SELECT count(*), max(xmin::text) FROM pg_shdescription").fetchone(),
    )
    read_only = conninfo.make_conninfo(postgres_dsn, options="-c default_transaction_read_only=on")
    async with PostgresAdmin(read_only) as read_only_admin:
        assert await read_only_admin.ensure(tenant, None) == []
        assert await read_only_admin.ensure(tenant, None, adopt_unmarked=True) == []
    after = (
        probes.catalog_row_versions(superuser, name, name),
        comments(superuser, name),
        superuser.execute("SELECT count(*), max(xmin::text) FROM pg_shdescription").fetchone(),
    )
    assert after == before


async def test_a_database_swapped_in_without_a_mark_is_recognised_by_its_owner_and_marked(
    admin: PostgresAdmin, forget: Forget, superuser: psycopg.Connection
) -> None:
    # Restores and upgrades rename a fresh copy (owned by the tenant role, no comment) into place.
    name = unique("odoo_restored")
    forget(name)
    tenant = tenant_named(name, "restored")
    await admin.ensure(tenant, uuid.uuid4().hex)
    superuser.execute(sql.SQL("COMMENT ON DATABASE {} IS NULL").format(sql.Identifier(name)))
    assert [action.kind for action in await admin.ensure(tenant, None)] == [
        ActionKind.MARK_DATABASE
    ]
    assert comments(superuser, name) == (ownership_mark("restored"),) * 2
    assert await admin.ensure(tenant, None) == []


async def test_a_role_whose_mark_fails_is_not_left_behind_unmarked(
    admin: PostgresAdmin,
    forget: Forget,
    superuser: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An unmarked role would be refused as someone else's on every later pass.
    name = unique("odoo_crash")
    forget(name)

    def mark_fails(instance: str) -> str:
        raise RuntimeError(f"operator stopped before marking {instance}")

    monkeypatch.setattr("odoo_operator.backends.postgres.ownership_mark", mark_fails)
    with pytest.raises(RuntimeError, match="before marking"):
        await admin.ensure(tenant_named(name, "crash"), uuid.uuid4().hex)
    assert (
        superuser.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None
    )
    monkeypatch.undo()
    created = await admin.ensure(tenant_named(name, "crash"), uuid.uuid4().hex)
    assert created[0].kind is ActionKind.CREATE_ROLE
    assert comments(superuser, name) == (ownership_mark("crash"),) * 2


@pytest.fixture
def template1_open_to_public(postgres_dsn: str, superuser: psycopg.Connection) -> Iterator[None]:
    """template1 and schema public of postgres as a fresh server has them, restored after."""

    def public_privileges() -> tuple[Any, ...]:
        row = superuser.execute(
            "SELECT has_database_privilege('public', 'template1', 'CONNECT'),"
            " has_database_privilege('public', 'template1', 'TEMPORARY'),"
            " has_schema_privilege('public', 'public', 'CREATE')"
        ).fetchone()
        assert row is not None
        return tuple(row)

    assert superuser.info.dbname == "postgres"
    found = public_privileges()
    superuser.execute("GRANT CONNECT, TEMPORARY ON DATABASE template1 TO PUBLIC")
    # What PostgreSQL before 15 gives PUBLIC in every database.
    superuser.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
    yield
    connect, temporary, create = found
    for granted, statement in (
        (connect, "CONNECT ON DATABASE template1"),
        (temporary, "TEMPORARY ON DATABASE template1"),
        (create, "CREATE ON SCHEMA public"),
    ):
        verb = "GRANT {} TO PUBLIC" if granted else "REVOKE {} FROM PUBLIC"
        superuser.execute(sql.SQL(verb).format(sql.SQL(statement)))
    assert public_privileges() == found


@pytest.mark.usefixtures("template1_open_to_public")
async def test_hardening_closes_template1_keeps_postgres_open_and_is_idempotent(
    admin: PostgresAdmin, forget: Forget, postgres_dsn: str
) -> None:
    name, password = unique("odoo_hardened"), uuid.uuid4().hex
    forget(name)
    await admin.ensure(tenant_named(name, "hardened"), password)
    with psycopg.connect(as_role(postgres_dsn, name, password, "template1")):
        pass  # the instrument bites: before hardening, the tenant gets in

    changed = await admin.harden_server()
    assert changed == [
        "revoked CONNECT, TEMPORARY on database template1 from PUBLIC",
        "revoked CREATE on schema public of database postgres from PUBLIC",
    ]
    assert await admin.harden_server() == []

    with pytest.raises(
        psycopg.OperationalError, match='permission denied for database "template1"'
    ):
        psycopg.connect(as_role(postgres_dsn, name, password, "template1"))
    maintenance = psycopg.connect(as_role(postgres_dsn, name, password, "postgres"))
    with maintenance, pytest.raises(psycopg.errors.InsufficientPrivilege):
        maintenance.execute("CREATE TABLE public.squatter (id int)")


@pytest.mark.usefixtures("template1_open_to_public")
async def test_hardening_by_a_non_superuser_says_what_a_superuser_must_run(
    postgres_dsn: str, forget: Forget, superuser: psycopg.Connection
) -> None:
    name, password = unique("admin"), uuid.uuid4().hex
    forget(name)
    superuser.execute(
        sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)
        )
    )
    # The connection string names another database: the schema is still found in postgres.
    async with PostgresAdmin(as_role(postgres_dsn, name, password, "template1")) as restricted:
        with pytest.raises(SuperuserRequiredError) as refused:
            await restricted.harden_server()
    message = str(refused.value)
    assert 'REVOKE CONNECT, TEMPORARY ON DATABASE "template1" FROM PUBLIC' in message
    assert "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in message
    still = superuser.execute(
        "SELECT has_database_privilege('public', 'template1', 'CONNECT')"
    ).fetchone()
    assert still == (True,)
