"""The SQL the engine runs: reading a tenant database, and creating, renaming, dropping
databases with the server's admin login.

Every identifier is composed with :class:`psycopg.sql.Identifier`, values are bound
parameters or :class:`psycopg.sql.Literal` (DDL takes no bind parameters); no SQL text is
built by hand. Connection failures become
:class:`~odoo_operator.backends.postgres.DatabaseServerUnavailable` naming the server by
host and port, never the connection string.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from ..backends.postgres import DatabaseServerUnavailable
from ..builders.backup_layout import ROW_COUNT_TABLES

logger = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[TupleRow]

CONNECT_TIMEOUT = 10
# Renaming a database needs it free of sessions; Odoo workers reconnect quickly, so the
# swap terminates sessions and retries a few times.
SWAP_ATTEMPTS = 5


def server_of(conninfo: str) -> str:
    """``host:port`` of a connection string, for messages."""
    try:
        parameters = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "(unparsable connection string)"
    host = parameters.get("host") or parameters.get("hostaddr") or "(default host)"
    return f"{host}:{parameters.get('port') or '5432'}"


def scrub(text: str, conninfo: str) -> str:
    """``text`` without the password of ``conninfo``."""
    try:
        password = str(conninfo_to_dict(conninfo).get("password") or "")
    except psycopg.ProgrammingError:
        return text
    return text.replace(password, "<password>") if password else text


def first_line(error: BaseException, conninfo: str = "") -> str:
    """The first line of an error's message, password scrubbed: what a condition shows."""
    lines = str(error).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else type(error).__name__
    return scrub(text, conninfo) if conninfo else text


@asynccontextmanager
async def connect(
    conninfo: str, database: str | None = None, *, autocommit: bool = True
) -> AsyncIterator[Connection]:
    """A connection to ``database`` (default: the one of ``conninfo``), closed afterwards."""
    target = make_conninfo(conninfo, dbname=database) if database else conninfo
    try:
        connection = await psycopg.AsyncConnection.connect(
            target,
            autocommit=autocommit,
            connect_timeout=int(conninfo_to_dict(target).get("connect_timeout") or CONNECT_TIMEOUT),
            application_name="odoo-operator",
        )
    except psycopg.OperationalError as error:
        raise DatabaseServerUnavailable(
            f"PostgreSQL server {server_of(conninfo)} refused or did not answer a connection"
            f"{f' to database {database}' if database else ''}: {first_line(error, conninfo)}"
        ) from None
    try:
        yield connection
    finally:
        await connection.close()


async def fetch_value(
    connection: Connection, query: str | sql.SQL | sql.Composed, *args: Any
) -> Any:
    """The first column of the first row of ``query``, or None."""
    row = await (await connection.execute(query, args or None)).fetchone()
    return None if row is None else row[0]


async def existing_tables(connection: Connection, names: Sequence[str]) -> list[str]:
    """Which of ``names`` are tables in schema ``public`` of the connected database."""
    cursor = await connection.execute(
        "SELECT c.relname::text FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)"
        " ORDER BY 1",
        (list(names),),
    )
    return [row[0] for row in await cursor.fetchall()]


async def attachment_files(connection: Connection) -> set[str]:
    """The filestore paths that the connected Odoo database's attachments name."""
    if not await existing_tables(connection, ["ir_attachment"]):
        return set()
    cursor = await connection.execute(
        "SELECT DISTINCT store_fname FROM public.ir_attachment WHERE store_fname IS NOT NULL"
    )
    return {str(row[0]) for row in await cursor.fetchall()}


async def count_rows(connection: Connection, tables: Sequence[str]) -> dict[str, int]:
    """Exact row counts of ``tables`` (all in schema ``public``)."""
    counts: dict[str, int] = {}
    for table in tables:
        value = await fetch_value(
            connection,
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table)),
        )
        counts[table] = int(value)
    return counts


async def key_row_counts(connection: Connection) -> dict[str, int]:
    """Row counts of those of :data:`ROW_COUNT_TABLES` that exist."""
    return await count_rows(connection, await existing_tables(connection, ROW_COUNT_TABLES))


async def _columns(connection: Connection, table: str) -> set[str]:
    cursor = await connection.execute(
        "SELECT a.attname::text FROM pg_catalog.pg_attribute a"
        " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
        (table,),
    )
    return {row[0] for row in await cursor.fetchall()}


async def ledger_figures(connection: Connection) -> dict[str, str]:
    """The books' figures of :data:`~odoo_operator.builders.backup_layout.LEDGER_FIGURES`,
    as exact decimal text; empty for a database without Odoo accounting (the columns
    ``account_move.state``/``amount_total_signed`` and ``account_move_line.parent_state``,
    ``debit``, ``credit``, as in Odoo 13 and later)."""
    moves = await _columns(connection, "account_move")
    lines = await _columns(connection, "account_move_line")
    if (
        not {"state", "amount_total_signed"} <= moves
        or not {
            "parent_state",
            "debit",
            "credit",
        }
        <= lines
    ):
        return {}
    cursor = await connection.execute(
        "SELECT count(*)::text, coalesce(sum(amount_total_signed), 0)::text"
        " FROM public.account_move WHERE state = 'posted'"
    )
    entries, total = (await cursor.fetchall())[0]
    balance = await fetch_value(
        connection,
        "SELECT coalesce(sum(debit) - sum(credit), 0)::text FROM public.account_move_line"
        " WHERE parent_state = 'posted'",
    )
    return {"postedEntries": entries, "postedTotal": total, "postedDebitMinusCredit": str(balance)}


async def installed_modules(connection: Connection) -> list[str]:
    """Names of the installed Odoo modules; empty when ``ir_module_module`` does not exist."""
    if not await existing_tables(connection, ["ir_module_module"]):
        return []
    cursor = await connection.execute(
        sql.SQL("SELECT name::text FROM {} WHERE state = 'installed' ORDER BY name").format(
            sql.Identifier("public", "ir_module_module")
        )
    )
    return [row[0] for row in await cursor.fetchall()]


async def server_version(connection: Connection) -> str:
    """The server's version, e.g. ``15.18``."""
    return str(await fetch_value(connection, "SELECT pg_catalog.current_setting('server_version')"))


async def database_owner(connection: Connection, name: str) -> str | None:
    """The owner of database ``name``, or None when it does not exist."""
    value = await fetch_value(
        connection,
        "SELECT pg_catalog.pg_get_userbyid(datdba)::text FROM pg_catalog.pg_database"
        " WHERE datname = %s",
        name,
    )
    return None if value is None else str(value)


async def role_exists(connection: Connection, name: str) -> bool:
    """Whether role ``name`` exists."""
    return bool(
        await fetch_value(
            connection, "SELECT true FROM pg_catalog.pg_roles WHERE rolname = %s", name
        )
    )


async def session_count(connection: Connection, name: str) -> int:
    """Other sessions connected to database ``name``."""
    return int(
        await fetch_value(
            connection,
            "SELECT count(*) FROM pg_catalog.pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid()",
            name,
        )
    )


async def create_database(connection: Connection, name: str, owner: str | None = None) -> None:
    """Create database ``name`` as tenant databases are made (UTF8, collation C, template0),
    owned by ``owner`` (default: the admin), closed to PUBLIC."""
    statement = sql.SQL(
        "CREATE DATABASE {} WITH ENCODING 'UTF8' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
    ).format(sql.Identifier(name))
    if owner:
        statement = sql.SQL("{} OWNER {}").format(statement, sql.Identifier(owner))
    await connection.execute(statement)
    await connection.execute(
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name))
    )


async def mark_database(connection: Connection, name: str, comment: str) -> None:
    """Write ``comment`` on database ``name`` (only a superuser or its owner can)."""
    await connection.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(comment))
    )


async def databases_marked(connection: Connection, comment: str) -> list[str]:
    """The databases whose comment is exactly ``comment``."""
    cursor = await connection.execute(
        "SELECT datname::text FROM pg_catalog.pg_database"
        " WHERE pg_catalog.shobj_description(oid, 'pg_database') = %s ORDER BY datname",
        (comment,),
    )
    return [str(row[0]) for row in await cursor.fetchall()]


async def drop_database(connection: Connection, name: str) -> None:
    """Drop database ``name`` if it exists, ending its sessions (PostgreSQL 13+)."""
    await connection.execute(
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


async def terminate_sessions(connection: Connection, name: str) -> None:
    """End every other session connected to database ``name``."""
    await connection.execute(
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid()",
        (name,),
    )


async def allow_connections(connection: Connection, name: str, allowed: bool) -> None:
    """Open or close database ``name`` to new connections (superusers included)."""
    await connection.execute(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.Literal(allowed)
        )
    )


async def rename_database(connection: Connection, old: str, new: str) -> None:
    """Rename a database that has no sessions."""
    await connection.execute(
        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
    )


async def swap_databases(connection: Connection, live: str, replacement: str, keep: str) -> bool:
    """Put ``replacement`` in the place of ``live``, which is renamed ``keep``.

    Both renames run in one transaction (``ALTER DATABASE ... RENAME`` is transactional), so
    there is never a moment without a database called ``live``, and a failure leaves both
    as they were. ``live`` is closed to new connections and its sessions are ended first;
    the kept database is opened again afterwards. Returns False when ``live`` did not exist
    (``replacement`` is then simply renamed).
    """
    if await database_owner(connection, live) is None:
        await rename_database(connection, replacement, live)
        return False
    await allow_connections(connection, live, False)
    try:
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            await terminate_sessions(connection, live)
            await terminate_sessions(connection, replacement)
            try:
                async with connection.transaction():
                    await rename_database(connection, live, keep)
                    await rename_database(connection, replacement, live)
                break
            except psycopg.errors.ObjectInUse:
                if attempt == SWAP_ATTEMPTS:
                    raise
                logger.info("database %s still has sessions; retrying the swap", live)
                await asyncio.sleep(0.2 * attempt)
    except BaseException:
        await allow_connections(connection, live, True)
        raise
    await allow_connections(connection, keep, True)
    return True


async def apply_statements(
    connection: Connection, role: str | None, statements: Sequence[sql.Composable]
) -> None:
    """Run ``statements`` in one transaction, as ``role`` when given (``SET LOCAL ROLE``)."""
    async with connection.transaction():
        if role:
            await connection.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        for statement in statements:
            # Composed wraps any Composable into what execute() is typed to take.
            await connection.execute(sql.Composed([statement]))
