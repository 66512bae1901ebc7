"""Guarded SQL for Odoo databases whose set of installed modules is not known in advance.

A restored copy of a tenant's database may or may not have the tables of a given module,
and Odoo 17.0 and 18.0 keep some data in different places. Every statement built here is a
``DO`` block in which each UPDATE or DELETE runs only when every table and column it touches
exists, so one list of statements runs on any set of modules and any supported version, and
running it twice changes nothing more. Used by :mod:`.neutralize` and :mod:`.anonymize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

SCHEMA = "public"  # where Odoo creates its tables
# The body of each DO block is dollar-quoted with this tag. Every literal placed inside is
# a module constant, a validated value or a hex digest, none of which can contain it.
TAG = "$guarded$"


@dataclass(frozen=True)
class Update:
    """``UPDATE table SET column = value WHERE condition``, run only if all of it exists."""

    table: str
    column: str
    value: sql.Composable
    condition: sql.Composable | None = None  # every row
    # Other (table, column) pairs the condition or value reads; skipped without them.
    requires: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Delete:
    """``DELETE FROM table WHERE condition``, run only if the table (and ``requires``) exist."""

    table: str
    condition: sql.Composable | None = None  # every row
    requires: tuple[tuple[str, str], ...] = ()


def do_updates(*updates: Update) -> sql.Composed:
    """One DO block with each update guarded by the existence of what it touches."""
    return do_block(sql.SQL(" ").join(guarded_update(update) for update in updates))


def guarded_update(update: Update) -> sql.Composed:
    """One guarded UPDATE, to be placed inside a DO block."""
    condition = has_columns(((update.table, update.column), *update.requires))
    # Rows that already have the value are left alone: no write, no trigger, no new row
    # version, so a second run changes nothing.
    statement = sql.SQL(
        "UPDATE {table} SET {column} = {value} "
        "WHERE ({condition}) AND {column} IS DISTINCT FROM ({value});"
    ).format(
        table=sql.Identifier(SCHEMA, update.table),
        column=sql.Identifier(update.column),
        value=update.value,
        condition=sql.SQL("TRUE") if update.condition is None else update.condition,
    )
    return sql.SQL("IF {} THEN {} END IF;").format(condition, statement)


def do_deletes(*deletes: Delete) -> sql.Composed:
    """Guarded DELETEs, to be placed inside a DO block."""
    guarded = []
    for delete in deletes:
        # The table exists when its id column does: Odoo gives every table one.
        condition = has_columns(((delete.table, "id"), *delete.requires))
        statement = sql.SQL("DELETE FROM {table} WHERE {condition};").format(
            table=sql.Identifier(SCHEMA, delete.table),
            condition=sql.SQL("TRUE") if delete.condition is None else delete.condition,
        )
        guarded.append(sql.SQL("IF {} THEN {} END IF;").format(condition, statement))
    return sql.SQL(" ").join(guarded)


def has_columns(columns: Sequence[tuple[str, str]]) -> sql.Composed:
    """True in SQL when every (table, column) exists in :data:`SCHEMA`."""
    # to_regclass answers NULL rather than failing for a missing table, and pg_attribute
    # then has no row; dropped columns keep a row there, hence attisdropped.
    return sql.SQL(" AND ").join(
        sql.SQL(
            "EXISTS (SELECT FROM pg_catalog.pg_attribute "
            "WHERE attrelid = pg_catalog.to_regclass({table}) AND attname = {column} "
            "AND attnum > 0 AND NOT attisdropped)"
        ).format(table=sql.Literal(f"{SCHEMA}.{table}"), column=sql.Literal(column))
        for table, column in dict.fromkeys(columns)
    )


def do_block(body: sql.Composable) -> sql.Composed:
    """``body`` as an anonymous PL/pgSQL block."""
    # PL/pgSQL resolves table and column names when a statement runs, not when the block is
    # parsed, so an update behind a false IF never trips over a missing table.
    if TAG in body.as_string(None):  # pragma: no cover - a programming error
        raise AssertionError(f"a guarded statement contains its quoting tag {TAG}")
    return sql.SQL("DO {tag} BEGIN {body} END {tag}").format(tag=sql.SQL(TAG), body=body)
