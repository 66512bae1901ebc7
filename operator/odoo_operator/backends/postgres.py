"""Tenant roles and databases on a PostgreSQL server: observe, ensure, rotate, drop.

One :class:`PostgresAdmin` per registered server. It reads the catalogs, lets
:mod:`odoo_operator.builders.postgres` plan what differs, and runs only those steps, so a
tenant that is already right costs a few SELECTs and no DDL. The admin may be a superuser or,
as on Azure Database for PostgreSQL flexible server, a role with only CREATEDB and
CREATEROLE. PostgreSQL 13 or newer is needed (``DROP DATABASE ... WITH (FORCE)``).

Nothing is changed or dropped unless the plan found it marked as the instance's own (see
:func:`odoo_operator.builders.postgres.check_ownership`); the refusal comes before the first
statement. :meth:`PostgresAdmin.harden_server` closes what every new server leaves open to
all roles. docs/postgres-servers.md explains both to the people who run the servers.

Identifiers are always composed with :class:`psycopg.sql.Identifier` and values passed as
parameters or :class:`psycopg.sql.Literal` (DDL takes no bind parameters). Passwords are sent
only as SCRAM-SHA-256 verifiers and never appear in a message, log line or action.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, assert_never

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from odoo_operator import metrics
from odoo_operator.backends.priority import UrgentFirstSemaphore
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
    ownership_mark,
    parse_ownership_mark,
    plan_drop,
    plan_drop_kept_databases,
    plan_ensure,
    plan_password_rotation,
    scram_sha256_verifier,
)

logger = logging.getLogger(__name__)

AdminConnection = psycopg.AsyncConnection[TupleRow]

# SQLSTATEs that mean the server, not the statement, is the problem: too many connections,
# administrator or crash shutdown, "the database system is starting up".
_SERVER_GONE_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})

# The columns DatabaseObjectState is read from, for a row of pg_catalog.pg_database; the
# last one is the ownership mark.
_DATABASE_COLUMNS = sql.SQL(
    "datname::text, pg_catalog.pg_get_userbyid(datdba)::text,"
    " pg_catalog.pg_encoding_to_char(encoding)::text,"
    " pg_catalog.has_database_privilege('public', oid, 'CONNECT'),"
    " pg_catalog.has_database_privilege('public', oid, 'TEMPORARY'),"
    " pg_catalog.has_database_privilege('public', oid, 'CREATE'),"
    " pg_catalog.shobj_description(oid, 'pg_database')"
)
# template1 is what CREATE DATABASE copies by default; no tenant has business there. The
# postgres database stays open: Odoo connects to it when it starts (to list databases).
_CLOSED_TEMPLATE = "template1"
_TEMPLATE_PRIVILEGES = ("CONNECT", "TEMPORARY")
_MAINTENANCE_DATABASE = "postgres"


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
        self._turns = UrgentFirstSemaphore(max_connections)
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

    async def ensure(
        self,
        tenant: TenantDatabase,
        password: str | None,
        *,
        adopt_unmarked: bool = False,
        rekey: bool = True,
    ) -> list[Action]:
        """Make the tenant's role and database as specified; return the steps that were needed.

        The role gets LOGIN and no other attribute, the connection limit of ``tenant``, and
        the password as a SCRAM-SHA-256 verifier. ``password`` is required when the role does
        not exist yet; for an existing role a given password replaces the current one (a
        rotation) unless ``rekey`` is False: then ``password`` is used only to create the role,
        so a pass can hand it over without sending it on every run (one session, where reading
        the role first took two). ``None`` leaves the current one alone. The database is UTF8 with C
        collation, owned by the role, and closed to PUBLIC. Nothing that already matches is
        touched: on an unchanged tenant this runs no DDL and returns ``[]``.

        Both carry the ownership mark of ``tenant.instance``; a new role gets it in the
        transaction that creates it. ``adopt_unmarked`` takes over an unmarked role and
        database left by an earlier operator version, on the conditions of
        :func:`~odoo_operator.builders.postgres.check_ownership`; pass it only when the names
        are the instance's default ones.

        Raises :class:`~odoo_operator.builders.postgres.NotOwnedError` (before any statement)
        when the role or database is not this instance's,
        :class:`ValueError` when the role must be created and ``password`` is None,
        :class:`~odoo_operator.builders.postgres.SuperuserRequiredError` when the role was given
        SUPERUSER (or REPLICATION, BYPASSRLS) and the admin cannot take it back,
        :class:`~odoo_operator.builders.postgres.TenantDatabaseConflictError` when the database
        belongs to someone else, and :class:`DatabaseServerUnavailable`.
        """
        async with self._connection("ensure") as connection:
            state = await _observe(connection, tenant)
            set_password = password is not None and (rekey or state.role is None)
            actions = plan_ensure(
                state, tenant, set_password=set_password, adopt_unmarked=adopt_unmarked
            )
            if password is None and any(a.kind is ActionKind.CREATE_ROLE for a in actions):
                raise ValueError(
                    f"role {tenant.role} does not exist on {self.server}: a password is "
                    f"required to create it"
                )
            for step in _atomic_steps(actions):
                if len(step) == 1:
                    await self._apply(connection, tenant, step[0], password)
                    continue
                async with connection.transaction():
                    for action in step:
                        await self._apply(connection, tenant, action, password)
        return actions

    async def rotate_password(self, tenant: TenantDatabase, password: str) -> list[Action]:
        """Replace the password of the tenant's existing role; the one action taken.

        Raises :class:`LookupError` when the role does not exist (``ensure`` creates it) and
        :class:`~odoo_operator.builders.postgres.NotOwnedError` when it is not this instance's.
        """
        async with self._connection("rotate_password") as connection:
            state = await _observe(connection, tenant)
            actions = plan_password_rotation(state, tenant)
            for action in actions:
                await self._apply(connection, tenant, action, password)
        return actions

    async def drop_kept_databases(self, tenant: TenantDatabase) -> list[str]:
        """Drop every other database the tenant's role owns (copies kept by restores and
        upgrades, such as ``<db>_pre_upgrade_<id>``), ending their sessions; their names.

        Raises :class:`~odoo_operator.builders.postgres.NotOwnedError`, and drops nothing,
        when the role or the tenant database is not this instance's or one of those copies
        is marked as another instance's.
        """
        async with self._connection("drop_kept_databases") as connection:
            state = await _observe(connection, tenant)
            rows = await (
                await connection.execute(
                    sql.SQL(
                        "SELECT {} FROM pg_catalog.pg_database"
                        " WHERE datdba = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s)"
                        " AND datname <> %s ORDER BY 1"
                    ).format(_DATABASE_COLUMNS),
                    (tenant.role, tenant.database),
                )
            ).fetchall()
            names = plan_drop_kept_databases(state, tenant, [_database_state(row) for row in rows])
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

        Returns the steps taken: ``[]`` when both were already gone. Raises
        :class:`~odoo_operator.builders.postgres.NotOwnedError`, and drops nothing, when
        either is not this instance's.
        """
        async with self._connection("drop") as connection:
            state = await _observe(connection, tenant)
            actions = plan_drop(state, tenant)
            for action in actions:
                await self._apply(connection, tenant, action, None)
        return actions

    async def harden_server(self) -> list[str]:
        """Close what a new server leaves open to every role; what was changed (``[]``: nothing).

        Revokes CONNECT and TEMPORARY on ``template1`` from PUBLIC, and CREATE on schema
        ``public`` of the ``postgres`` database (PostgreSQL 15 and newer already leave it
        out). CONNECT on ``postgres`` stays: Odoo connects there at start-up. Idempotent.

        Raises :class:`~odoo_operator.builders.postgres.SuperuserRequiredError` when the admin
        may not make a change (PostgreSQL only lets an object's owner revoke what PUBLIC has,
        and on a managed server the admin owns neither); the message lists the statements a
        superuser must run and what was changed before.
        """
        changed: list[str] = []
        refused: list[str] = []
        async with self._connection("harden_server") as connection:
            await self._close_template(connection, changed, refused)
            current = await (await connection.execute("SELECT current_database()::text")).fetchone()
            if current is not None and current[0] == _MAINTENANCE_DATABASE:
                await self._close_public_schema(connection, changed, refused)
            elif await (
                await connection.execute(
                    "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s",
                    (_MAINTENANCE_DATABASE,),
                )
            ).fetchone():
                # A schema can only be changed from inside its database, and the admin
                # connection string may name another one.
                async with await psycopg.AsyncConnection.connect(
                    make_conninfo(self._conninfo, dbname=_MAINTENANCE_DATABASE),
                    autocommit=True,
                    connect_timeout=self._connect_timeout,
                ) as maintenance:
                    await self._close_public_schema(maintenance, changed, refused)
        if refused:
            raise SuperuserRequiredError(
                f"the admin connection to {self.server} may not harden the server: a superuser "
                f"(on a managed server, the provider's support) must run "
                f"{'; '.join(refused)}"
                + (f" (done already: {'; '.join(changed)})" if changed else "")
            )
        return changed

    async def _close_template(
        self, connection: AdminConnection, changed: list[str], refused: list[str]
    ) -> None:
        granted = await _template_privileges_of_public(connection)
        if not granted:
            return
        statement = sql.SQL("REVOKE {} ON DATABASE {} FROM PUBLIC").format(
            sql.SQL(", ").join(sql.SQL(privilege) for privilege in granted),
            sql.Identifier(_CLOSED_TEMPLATE),
        )
        await _revoke(connection, statement)
        if await _template_privileges_of_public(connection):
            refused.append(statement.as_string(connection))
            return
        description = f"revoked {', '.join(granted)} on database {_CLOSED_TEMPLATE} from PUBLIC"
        logger.info("PostgreSQL %s: %s", self.server, description)
        changed.append(description)

    async def _close_public_schema(
        self, connection: AdminConnection, changed: list[str], refused: list[str]
    ) -> None:
        if not await _public_may_create_in_public_schema(connection):
            return
        statement = sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        await _revoke(connection, statement)
        if await _public_may_create_in_public_schema(connection):
            refused.append(
                f"{statement.as_string(connection)} (connected to database {_MAINTENANCE_DATABASE})"
            )
            return
        description = (
            f"revoked CREATE on schema public of database {_MAINTENANCE_DATABASE} from PUBLIC"
        )
        logger.info("PostgreSQL %s: %s", self.server, description)
        changed.append(description)

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
            case ActionKind.MARK_ROLE:
                statement = sql.SQL("COMMENT ON ROLE {} IS {}").format(
                    role, sql.Literal(ownership_mark(tenant.instance))
                )
            case ActionKind.MARK_DATABASE:
                statement = sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    database, sql.Literal(ownership_mark(tenant.instance))
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
                # The pool serves waiters in arrival order; the turns put urgent work first.
                await asyncio.wait_for(self._turns.acquire(), self._acquire_timeout)
            except TimeoutError:
                raise self._unavailable(await self._why_no_connection()) from None
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
            finally:
                self._turns.release()

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
            " pg_catalog.pg_has_role(current_user, oid, 'USAGE'),"
            " pg_catalog.shobj_description(oid, 'pg_authid')"
            " FROM pg_catalog.pg_roles WHERE rolname = %s",
            (tenant.role,),
        )
    ).fetchone()
    database_row = await (
        await connection.execute(
            sql.SQL("SELECT {} FROM pg_catalog.pg_database WHERE datname = %s").format(
                _DATABASE_COLUMNS
            ),
            (tenant.database,),
        )
    ).fetchone()
    role = None
    if role_row is not None:
        role = RoleState(
            name=role_row[0],
            superuser=role_row[1],
            create_db=role_row[2],
            create_role=role_row[3],
            replication=role_row[4],
            bypass_rls=role_row[5],
            can_login=role_row[6],
            connection_limit=role_row[7],
            owner_instance=parse_ownership_mark(role_row[9]),
        )
    database = None if database_row is None else _database_state(database_row)
    return DatabaseState(
        role=role,
        database=database,
        admin_role=admin[0],
        admin_is_superuser=admin[1],
        admin_has_tenant_privileges=bool(role_row is not None and role_row[8]),
    )


def _atomic_steps(actions: list[Action]) -> list[list[Action]]:
    # A role created but left unmarked (the operator dying in between) would be refused as
    # someone else's on the next pass, so a new role and its mark are committed together.
    # CREATE DATABASE cannot run in a transaction; a new database left unmarked is still
    # recognised, by its owner, and marked on the next pass.
    steps: list[list[Action]] = []
    for action in actions:
        if (
            action.kind is ActionKind.MARK_ROLE
            and steps
            and steps[-1][-1].kind is ActionKind.CREATE_ROLE
        ):
            steps[-1].append(action)
        else:
            steps.append([action])
    return steps


async def _revoke(connection: AdminConnection, statement: sql.Composed | sql.SQL) -> None:
    # Whether it worked is read back afterwards: PostgreSQL answers a REVOKE by a role that
    # may not revoke with a warning, or with an error, depending on what the role holds.
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        await connection.execute(statement)


async def _template_privileges_of_public(connection: AdminConnection) -> list[str]:
    row = await (
        await connection.execute(
            sql.SQL("SELECT {} FROM pg_catalog.pg_database WHERE datname = %s").format(
                sql.SQL(", ").join(
                    sql.SQL("pg_catalog.has_database_privilege('public', oid, {})").format(
                        sql.Literal(privilege)
                    )
                    for privilege in _TEMPLATE_PRIVILEGES
                )
            ),
            (_CLOSED_TEMPLATE,),
        )
    ).fetchone()
    if row is None:
        return []
    return [
        privilege for privilege, granted in zip(_TEMPLATE_PRIVILEGES, row, strict=True) if granted
    ]


def _database_state(row: TupleRow) -> DatabaseObjectState:
    return DatabaseObjectState(
        name=row[0],
        owner=row[1],
        encoding=row[2],
        public_can_connect=row[3],
        public_can_create_temp=row[4],
        public_can_create=row[5],
        owner_instance=parse_ownership_mark(row[6]),
    )


async def _public_may_create_in_public_schema(connection: AdminConnection) -> bool:
    row = await (
        await connection.execute(
            "SELECT pg_catalog.has_schema_privilege('public', oid, 'CREATE')"
            " FROM pg_catalog.pg_namespace WHERE nspname = 'public'"
        )
    ).fetchone()
    return bool(row is not None and row[0])


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


_ARCHIVER_QUERY = (
    "SELECT extract(epoch FROM last_archived_time)::float8, last_archived_wal, failed_count,"
    " extract(epoch FROM last_failed_time)::float8, pg_walfile_name(pg_current_wal_lsn()),"
    " (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),"
    " (SELECT setting::float8 FROM pg_settings WHERE name = 'archive_timeout')"
    " FROM pg_stat_archiver"
)


def _segment_number(wal_file: str, segment_size: int) -> int:
    """The position of a WAL file (timeline, log and segment in hex) in the WAL stream."""
    return int(wal_file[8:16], 16) * (0x100000000 // segment_size) + int(wal_file[16:24], 16)


async def read_archiver(conninfo: str, timeout: float) -> metrics.ArchiveState:
    """A server's WAL archiver as ``pg_stat_archiver`` shows it, read with ``conninfo`` (the
    operator's admin login); ``up`` False when it cannot be read within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            connection = await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, application_name="odoo-operator-archive-check"
            )
            async with connection:
                cursor = await connection.execute(_ARCHIVER_QUERY)
                row = await cursor.fetchone()
    except (TimeoutError, psycopg.Error) as error:
        logger.info("cannot read the WAL archiver's statistics: %s", error)
        return metrics.ArchiveState(up=False)
    if row is None:  # pragma: no cover - pg_stat_archiver always has its one row
        return metrics.ArchiveState(up=False)
    archived_at, archived_wal, failed, failed_at, current_wal, segment_size, archive_timeout = row
    pending = 0
    if archived_wal and current_wal and segment_size:
        # The current segment is being written; those between it and the last archived one
        # are complete and wait for the archiver.
        pending = max(
            0,
            _segment_number(str(current_wal), int(segment_size))
            - _segment_number(str(archived_wal), int(segment_size))
            - 1,
        )
    return metrics.ArchiveState(
        up=True,
        last_archived_epoch=archived_at,
        pending_segments=pending,
        failed_count=int(failed or 0),
        last_failed_epoch=failed_at,
        archive_timeout_seconds=archive_timeout,
    )
