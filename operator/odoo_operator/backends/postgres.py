"""Tenant roles and databases on a PostgreSQL server: observe, ensure, rotate, drop.

One :class:`PostgresAdmin` per registered server. It reads the catalogs, lets
:mod:`odoo_operator.builders.postgres` plan what differs, and runs only those steps, so a
tenant that is already right costs a few SELECTs and no DDL. The admin may be a superuser or,
as on Azure Database for PostgreSQL flexible server, a role with only CREATEDB and
CREATEROLE. PostgreSQL 13 or newer is needed (``DROP DATABASE ... WITH (FORCE)``).

Identifiers are always composed with :class:`psycopg.sql.Identifier` and values passed as
parameters or :class:`psycopg.sql.Literal` (DDL takes no bind parameters). Passwords are sent
only as SCRAM-SHA-256 verifiers and never appear in a message, log line or action.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, assert_never

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from odoo_operator import metrics
from odoo_operator.builders.postgres import (
    DATABASE_ENCODING,
    TENANT_ROLE_ATTRIBUTES,
    Action,
    ActionKind,
    DatabaseObjectState,
    DatabaseState,
    RoleAttribute,
    RoleState,
    SuperuserRequiredError,
    TenantDatabase,
    plan_drop,
    plan_ensure,
    plan_password_rotation,
    scram_sha256_verifier,
)

logger = logging.getLogger(__name__)

AdminConnection = psycopg.AsyncConnection[TupleRow]

# SQLSTATEs that mean the server, not the statement, is the problem: too many connections,
# administrator or crash shutdown, "the database system is starting up".
_SERVER_GONE_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})


class DatabaseServerUnavailable(Exception):  # noqa: N818 - names the state, as conditions do
    """The PostgreSQL server cannot be reached or refused the admin connection.

    The message names the server by host and port only: never the connection string, which
    holds the admin password.
    """


class PostgresAdmin:
    """The operator's admin connections to one PostgreSQL server.

    Connections come from a ``psycopg_pool.AsyncConnectionPool`` of at most
    ``max_connections``, opened on demand and closed after ten idle minutes. A pool rather
    than a connection per call: at start-up the operator reconciles every tenant, and on a
    managed server each new connection costs a TLS handshake, a SCRAM exchange and a backend
    process; the bound also keeps the operator well inside the server's connection budget.
    Each connection is checked before use, so one left dead by a failover is replaced.
    """

    def __init__(
        self,
        conninfo: str,
        max_connections: int = 4,
        *,
        acquire_timeout: float = 30.0,
        connect_timeout: int = 10,
    ) -> None:
        """Prepare the pool for ``conninfo`` (a libpq connection string); nothing connects yet.

        ``acquire_timeout`` bounds the wait for a connection, ``connect_timeout`` (seconds)
        each connection attempt when the connection string sets none.
        """
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        try:
            parameters = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError:
            # libpq's parse error quotes the string, and with it possibly the password.
            raise ValueError("the PostgreSQL admin connection string cannot be parsed") from None
        self.server = _server_address(parameters)
        self._secret = str(parameters.get("password") or "")
        self._conninfo = conninfo
        self._connect_timeout = int(parameters.get("connect_timeout") or connect_timeout)
        self._max_connections = max_connections
        self._acquire_timeout = acquire_timeout
        self._pool: AsyncConnectionPool[AdminConnection] = AsyncConnectionPool(
            conninfo,
            kwargs={"autocommit": True, "connect_timeout": self._connect_timeout},
            min_size=0,
            max_size=max_connections,
            open=False,
            check=AsyncConnectionPool.check_connection,
            timeout=acquire_timeout,
            name=f"postgres-admin {self.server}",
        )

    def __repr__(self) -> str:
        return f"PostgresAdmin(server={self.server!r})"

    async def open(self) -> None:
        """Start the pool; it connects on first use, so a server that is down is no error yet."""
        await self._pool.open()

    async def close(self) -> None:
        """Close every connection and stop the pool."""
        await self._pool.close()

    async def __aenter__(self) -> PostgresAdmin:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def observe(self, tenant: TenantDatabase) -> DatabaseState:
        """Read the tenant's role and database from the catalogs; SELECTs only."""
        async with self._connection("observe") as connection:
            return await _observe(connection, tenant)

    async def ensure(self, tenant: TenantDatabase, password: str | None) -> list[Action]:
        """Make the tenant's role and database as specified; return the steps that were needed.

        The role gets LOGIN and no other attribute, the connection limit of ``tenant``, and
        the password as a SCRAM-SHA-256 verifier. ``password`` is required when the role does
        not exist yet; for an existing role a given password replaces the current one (a
        rotation), and ``None`` leaves the current one alone. The database is UTF8 with C
        collation, owned by the role, and closed to PUBLIC. Nothing that already matches is
        touched: on an unchanged tenant this runs no DDL and returns ``[]``.

        Raises :class:`ValueError` when the role must be created and ``password`` is None,
        :class:`~odoo_operator.builders.postgres.SuperuserRequiredError` when the role was given
        SUPERUSER (or REPLICATION, BYPASSRLS) and the admin cannot take it back,
        :class:`~odoo_operator.builders.postgres.TenantDatabaseConflictError` when the database
        belongs to someone else, and :class:`DatabaseServerUnavailable`.
        """
        async with self._connection("ensure") as connection:
            state = await _observe(connection, tenant)
            actions = plan_ensure(state, tenant, set_password=password is not None)
            if password is None and any(a.kind is ActionKind.CREATE_ROLE for a in actions):
                raise ValueError(
                    f"role {tenant.role} does not exist on {self.server}: a password is "
                    f"required to create it"
                )
            for action in actions:
                await self._apply(connection, tenant, action, password)
        return actions

    async def rotate_password(self, tenant: TenantDatabase, password: str) -> list[Action]:
        """Replace the password of the tenant's existing role; the one action taken.

        Raises :class:`LookupError` when the role does not exist (``ensure`` creates it).
        """
        async with self._connection("rotate_password") as connection:
            state = await _observe(connection, tenant)
            actions = plan_password_rotation(state, tenant)
            for action in actions:
                await self._apply(connection, tenant, action, password)
        return actions

    async def drop_kept_databases(self, tenant: TenantDatabase) -> list[str]:
        """Drop every other database the tenant's role owns (copies kept by restores and
        upgrades, such as ``<db>_pre_upgrade_<id>``), ending their sessions; their names."""
        async with self._connection("drop_kept_databases") as connection:
            rows = await (
                await connection.execute(
                    "SELECT d.datname FROM pg_catalog.pg_database d"
                    " JOIN pg_catalog.pg_roles r ON r.oid = d.datdba"
                    " WHERE r.rolname = %s AND d.datname <> %s ORDER BY 1",
                    (tenant.role, tenant.database),
                )
            ).fetchall()
            names = [str(row[0]) for row in rows]
            for name in names:
                await connection.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
                logger.info(
                    "PostgreSQL %s: dropped database %s kept for %s", self.server, name, tenant.role
                )
        return names

    async def drop(self, tenant: TenantDatabase) -> list[Action]:
        """Remove the tenant's database and role, ending their sessions first; idempotent.

        Returns the steps taken: ``[]`` when both were already gone.
        """
        async with self._connection("drop") as connection:
            state = await _observe(connection, tenant)
            actions = plan_drop(state, tenant)
            for action in actions:
                await self._apply(connection, tenant, action, None)
        return actions

    async def _apply(
        self,
        connection: AdminConnection,
        tenant: TenantDatabase,
        action: Action,
        password: str | None,
    ) -> None:
        role = sql.Identifier(tenant.role)
        database = sql.Identifier(tenant.database)
        statement: sql.Composable
        parameters: tuple[Any, ...] | None = None
        match action.kind:
            case ActionKind.CREATE_ROLE:
                if password is None:
                    raise ValueError(f"a password is required to create role {tenant.role}")
                statement = sql.SQL(
                    "CREATE ROLE {} WITH {} CONNECTION LIMIT {} PASSWORD {}"
                ).format(
                    role,
                    _attribute_keywords(tuple(TENANT_ROLE_ATTRIBUTES.items())),
                    sql.Literal(tenant.connection_limit),
                    sql.Literal(scram_sha256_verifier(password)),
                )
            case ActionKind.ALTER_ROLE_ATTRIBUTES:
                statement = sql.SQL("ALTER ROLE {} WITH {}").format(
                    role, _attribute_keywords(action.attribute_changes)
                )
            case ActionKind.SET_CONNECTION_LIMIT:
                statement = sql.SQL("ALTER ROLE {} WITH CONNECTION LIMIT {}").format(
                    role, sql.Literal(tenant.connection_limit)
                )
            case ActionKind.SET_PASSWORD:
                if password is None:
                    raise ValueError(f"no password given for role {tenant.role}")
                statement = sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                    role, sql.Literal(scram_sha256_verifier(password))
                )
            case ActionKind.GRANT_ROLE_TO_ADMIN:
                statement = sql.SQL("GRANT {} TO CURRENT_USER").format(role)
            case ActionKind.CREATE_DATABASE:
                # CREATE DATABASE cannot run inside a transaction: the pool's connections
                # are in autocommit mode.
                statement = sql.SQL(
                    "CREATE DATABASE {} WITH OWNER {} ENCODING {} TEMPLATE template0 "
                    "LC_COLLATE 'C' LC_CTYPE 'C'"
                ).format(database, role, sql.Literal(DATABASE_ENCODING))
            case ActionKind.REVOKE_PUBLIC:
                statement = sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database)
            case ActionKind.TERMINATE_SESSIONS:
                statement = sql.SQL(
                    "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
                    " WHERE (datname = %s OR usename = %s)"
                    " AND pid <> pg_catalog.pg_backend_pid()"
                )
                parameters = (tenant.database, tenant.role)
            case ActionKind.DROP_DATABASE:
                # FORCE ends sessions that connected again after TERMINATE_SESSIONS.
                statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database)
            case ActionKind.DROP_ROLE:
                statement = sql.SQL("DROP ROLE IF EXISTS {}").format(role)
            case _:
                assert_never(action.kind)
        logger.info("PostgreSQL %s: %s", self.server, action.description)
        try:
            await connection.execute(statement, parameters)
        except psycopg.errors.InsufficientPrivilege as error:
            if action.kind is not ActionKind.ALTER_ROLE_ATTRIBUTES:
                raise
            raise SuperuserRequiredError(
                f"the admin connection to {self.server} may not {action.description} "
                f"({error.diag.message_primary}): a superuser must make that change"
            ) from error

    @asynccontextmanager
    async def _connection(self, operation: str) -> AsyncIterator[AdminConnection]:
        """A pooled connection; failures to reach the server become DatabaseServerUnavailable.

        The whole session (waiting for the connection included) is timed as one call
        ``operation`` to PostgreSQL, and an error leaving it counted
        (:func:`odoo_operator.metrics.observe_call`).
        """
        with metrics.observe_call("postgresql", operation):
            try:
                async with self._pool.connection() as connection:
                    try:
                        yield connection
                    except psycopg.OperationalError as error:
                        if _is_server_failure(error, connection):
                            raise self._unavailable(self._reason(error)) from error
                        raise
            except PoolTimeout as error:
                raise self._unavailable(await self._why_no_connection()) from error

    async def _why_no_connection(self) -> str:
        # The pool only says it timed out; its workers keep the reason. One direct attempt,
        # outside the pool, tells the operator's reader what actually goes wrong.
        try:
            probe = await psycopg.AsyncConnection.connect(
                self._conninfo, connect_timeout=self._connect_timeout
            )
        except psycopg.Error as error:
            return self._reason(error)
        await probe.close()
        return (
            f"all {self._max_connections} admin connections stayed busy for "
            f"{self._acquire_timeout:g}s"
        )

    def _unavailable(self, reason: str) -> DatabaseServerUnavailable:
        return DatabaseServerUnavailable(
            f"PostgreSQL server {self.server} is unavailable: {reason}. Check that it is "
            f"running and reachable from the operator (DNS, firewall, private endpoint) and "
            f"that the admin credentials are valid; the operator retries on its own"
        )

    def _reason(self, error: psycopg.Error) -> str:
        # libpq's first line says what failed; the lines after it are generic hints. libpq
        # does not put passwords in its messages; the replace makes sure of it.
        lines = str(error).strip().splitlines() or [type(error).__name__]
        reason = " ".join(lines[0].split())
        return reason.replace(self._secret, "<password>") if self._secret else reason


async def _observe(connection: AdminConnection, tenant: TenantDatabase) -> DatabaseState:
    admin = await (
        await connection.execute(
            "SELECT current_user::text, rolsuper FROM pg_catalog.pg_roles"
            " WHERE rolname = current_user"
        )
    ).fetchone()
    if admin is None:
        raise RuntimeError("the admin connection's own role is missing from pg_roles")
    role_row = await (
        await connection.execute(
            "SELECT rolname::text, rolsuper, rolcreatedb, rolcreaterole, rolreplication,"
            " rolbypassrls, rolcanlogin, rolconnlimit,"
            " pg_catalog.pg_has_role(current_user, oid, 'USAGE')"
            " FROM pg_catalog.pg_roles WHERE rolname = %s",
            (tenant.role,),
        )
    ).fetchone()
    database_row = await (
        await connection.execute(
            "SELECT datname::text, pg_catalog.pg_get_userbyid(datdba)::text,"
            " pg_catalog.pg_encoding_to_char(encoding)::text,"
            " pg_catalog.has_database_privilege('public', oid, 'CONNECT'),"
            " pg_catalog.has_database_privilege('public', oid, 'TEMPORARY'),"
            " pg_catalog.has_database_privilege('public', oid, 'CREATE')"
            " FROM pg_catalog.pg_database WHERE datname = %s",
            (tenant.database,),
        )
    ).fetchone()
    role = None if role_row is None else RoleState(*role_row[:8])
    database = None if database_row is None else DatabaseObjectState(*database_row)
    return DatabaseState(
        role=role,
        database=database,
        admin_role=admin[0],
        admin_is_superuser=admin[1],
        admin_has_tenant_privileges=bool(role_row is not None and role_row[8]),
    )


def _attribute_keywords(changes: tuple[tuple[RoleAttribute, bool], ...]) -> sql.Composable:
    # Keywords come from the RoleAttribute enum, never from input.
    return sql.SQL(" ").join(sql.SQL(attribute.keyword(wanted)) for attribute, wanted in changes)


def _is_server_failure(error: psycopg.OperationalError, connection: AdminConnection) -> bool:
    # psycopg also files statement errors such as "database is being accessed by other
    # users" (55006) under OperationalError; those are not the server's absence.
    sqlstate = error.sqlstate
    return (
        connection.broken
        or sqlstate is None
        or sqlstate.startswith("08")
        or sqlstate in _SERVER_GONE_SQLSTATES
    )


def _server_address(parameters: dict[str, Any]) -> str:
    host = parameters.get("host") or parameters.get("hostaddr") or "(default host)"
    port = parameters.get("port") or "5432"
    return f"{host}:{port}"
