"""SQL that turns a restored copy of a tenant's Odoo database into a harmless staging clone.

A clone starts as a byte-for-byte copy of production: its mail servers would mail customers,
its fetchmail servers would take mail out of production's mailboxes, its scheduled actions
would post invoices and send reminders, its payment providers would charge cards and its
webhooks would call the customer's other systems. :func:`neutralization_statements` switches
all of that off and gives the clone its own identity.

Everything here is pure: statements are composed with :mod:`psycopg.sql` and executed by the
caller, in one transaction, on a connection to the clone. Each statement is a ``DO`` block
that touches a table, and each column of it, only when it exists (a clone of a database
without the payment or base_automation modules has no such tables), so the same list runs on
every Odoo version this operator supports and is harmless to run twice.

Decisions a reader of the list would ask about:

- every scheduled action is deactivated, Odoo's own autovacuum included: a staging clone
  that keeps some transient records longer is harmless, a rule with exceptions is not;
- server actions that call a webhook have their URL emptied, besides being deactivated
  where the version has an ``active`` column: Odoo 17 and later have none on server
  actions, and a button in the staging UI must not call production's partners. The URL is
  gone from the clone only; the production database still has it;
- ``database.secret`` gets a new random value: Odoo signs sessions and access tokens with
  it, and a token made on staging must not be accepted by production;
- IAP account tokens (SMS, partner autocomplete, document digitization: services that send
  messages to customers and spend prepaid credits) get the suffix ``+disabled`` in place of
  any suffix they had, the form Odoo's own neutralization uses and its IAP service refuses;
- outgoing-mail settings (``mail.catchall.domain``, ``mail.bounce.alias``,
  ``mail.default.from`` and, from Odoo 17, ``mail_alias_domain``) are left alone. They
  only shape mail that is sent, and nothing is sent once the mail servers are off; removing
  them would differ per version and change how staging renders mail for no safety gain;
- ``database.expiration_date`` is kept: without it and without the enterprise code, Odoo
  Enterprise counts the clone's trial from ``database.create_date``, which is production's,
  and may lock the clone at once;
- ``res_users`` is not touched: users log in to staging with their production passwords.

What SQL cannot do, the caller must: render the clone's ``odoo.conf`` without
``smtp_server`` settings (Odoo falls back to them when no mail server record is active),
and run these statements as the tenant's own role rather than a superuser, since the
restored database is the tenant's data and any trigger in it runs with the caller's rights.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

SCHEMA = "public"  # where Odoo creates its tables
NEUTRALIZED_FLAG = "database.is_neutralized"
DATABASE_UUID = "database.uuid"
DATABASE_SECRET = "database.secret"  # noqa: S105 - the name of a parameter, not a secret
ENTERPRISE_CODE = "database.enterprise_code"
IAP_DISABLED_SUFFIX = "+disabled"
# The body of each DO block is dollar-quoted with this tag. Every literal placed inside is
# either a module constant or a validated UUID, neither of which can contain a dollar sign.
_TAG = "$neutralize$"


@dataclass(frozen=True)
class _Update:
    """``UPDATE table SET column = value WHERE condition``, run only if all of it exists."""

    table: str
    column: str
    value: sql.Composable
    condition: sql.Composable | None = None  # every row
    # Other (table, column) pairs the condition reads; the update is skipped without them.
    requires: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Step:
    summary: str
    statement: sql.Composed


def neutralization_statements(new_database_uuid: str) -> list[sql.Composable]:
    """The statements that neutralize a restored database, in the order to run them.

    ``new_database_uuid`` becomes the clone's ``database.uuid`` (Odoo's identity towards
    its publisher and IAP); any UUID spelling is accepted and it is written in Odoo's
    canonical lowercase form. Raises :class:`ValueError` when it is not a UUID.

    Each statement matches the line of :func:`neutralization_summary` at the same index, so
    the caller can log what it runs. ``database.is_neutralized`` is set last: when the
    statements run in one transaction it is there exactly when all of them succeeded.
    ``database.secret`` uses ``gen_random_uuid()``, built into PostgreSQL 13 and later.
    """
    return [step.statement for step in _steps(_canonical_uuid(new_database_uuid))]


def neutralization_summary() -> list[str]:
    """One human-readable line per statement of :func:`neutralization_statements`."""
    # The lines do not depend on the UUID; any valid one builds them.
    return [step.summary for step in _steps(str(uuid.UUID(int=0)))]


def _steps(database_uuid: str) -> list[_Step]:
    false = sql.SQL("FALSE")
    disabled = sql.Literal("disabled")
    is_webhook = sql.SQL("{} = {}").format(sql.Identifier("state"), sql.Literal("webhook"))
    webhook_actions = sql.SQL("SELECT id FROM {} WHERE {}").format(
        sql.Identifier(SCHEMA, "ir_actions_server"), is_webhook
    )
    return [
        _Step(
            "outgoing mail servers (ir_mail_server) deactivated",
            _do_updates(_Update("ir_mail_server", "active", false)),
        ),
        _Step(
            "incoming mail servers (fetchmail_server) deactivated",
            _do_updates(_Update("fetchmail_server", "active", false)),
        ),
        _Step(
            "all scheduled actions (ir_cron) deactivated, with no exception",
            _do_updates(_Update("ir_cron", "active", false)),
        ),
        _Step(
            "payment providers (payment_provider, and payment_acquirer before Odoo 16) "
            "disabled and out of live mode",
            _do_updates(
                _Update("payment_provider", "state", disabled),
                # Newer versions keep the live/test switch in a column of its own.
                _Update("payment_provider", "is_live", false),
                _Update("payment_acquirer", "state", disabled),
            ),
        ),
        _Step(
            "automation rules triggered by a webhook or calling one (base_automation) deactivated",
            _do_updates(
                _Update(
                    "base_automation",
                    "active",
                    false,
                    sql.SQL("{} = {}").format(sql.Identifier("trigger"), sql.Literal("on_webhook")),
                    (("base_automation", "trigger"),),
                ),
                # Up to Odoo 16 a rule extends one server action (action_server_id).
                _Update(
                    "base_automation",
                    "active",
                    false,
                    sql.SQL("{} IN ({})").format(
                        sql.Identifier("action_server_id"), webhook_actions
                    ),
                    (("base_automation", "action_server_id"), ("ir_actions_server", "state")),
                ),
                # From Odoo 17 a rule owns several server actions, which point back to it.
                _Update(
                    "base_automation",
                    "active",
                    false,
                    sql.SQL("{} IN (SELECT {} FROM {} WHERE {})").format(
                        sql.Identifier("id"),
                        sql.Identifier("base_automation_id"),
                        sql.Identifier(SCHEMA, "ir_actions_server"),
                        is_webhook,
                    ),
                    (
                        ("base_automation", "id"),
                        ("ir_actions_server", "base_automation_id"),
                        ("ir_actions_server", "state"),
                    ),
                ),
            ),
        ),
        _Step(
            "webhook server actions (ir_actions_server) deactivated and their URL emptied",
            _do_updates(
                _Update(
                    "ir_actions_server",
                    "active",
                    false,
                    is_webhook,
                    (("ir_actions_server", "state"),),
                ),
                # Empty rather than NULL: Odoo reads both as "no URL", and an empty string
                # cannot collide with a NOT NULL constraint in some version.
                _Update(
                    "ir_actions_server",
                    "webhook_url",
                    sql.Literal(""),
                    is_webhook,
                    (("ir_actions_server", "state"),),
                ),
            ),
        ),
        _Step(
            f"IAP account tokens suffixed with {IAP_DISABLED_SUFFIX} (no SMS, no paid services)",
            _do_updates(
                _Update(
                    "iap_account",
                    "account_token",
                    # The part before any existing suffix, then ours; a token that already
                    # ends in it is unchanged, so the guard in _do_updates skips it.
                    sql.SQL("pg_catalog.split_part({}, {}, 1) || {}").format(
                        sql.Identifier("account_token"),
                        sql.Literal("+"),
                        sql.Literal(IAP_DISABLED_SUFFIX),
                    ),
                )
            ),
        ),
        _Step(
            f"{DATABASE_UUID} set to the clone's new UUID",
            _set_parameter(DATABASE_UUID, sql.Literal(database_uuid)),
        ),
        _Step(
            f"{DATABASE_SECRET} replaced by a new random value",
            _set_parameter(DATABASE_SECRET, sql.SQL("pg_catalog.gen_random_uuid()::text")),
        ),
        _Step(f"{ENTERPRISE_CODE} removed", _delete_parameter(ENTERPRISE_CODE)),
        _Step(
            f"{NEUTRALIZED_FLAG} set to True (Odoo shows its neutralized banner)",
            _set_parameter(NEUTRALIZED_FLAG, sql.Literal("True")),
        ),
    ]


def _do_updates(*updates: _Update) -> sql.Composed:
    """One DO block with each update guarded by the existence of what it touches."""
    guarded = []
    for update in updates:
        condition = _has_columns(((update.table, update.column), *update.requires))
        # Rows that already have the value are left alone: no write, no trigger, no new
        # row version, so a second run changes nothing.
        statement = sql.SQL(
            "UPDATE {table} SET {column} = {value} "
            "WHERE ({condition}) AND {column} IS DISTINCT FROM ({value});"
        ).format(
            table=sql.Identifier(SCHEMA, update.table),
            column=sql.Identifier(update.column),
            value=update.value,
            condition=sql.SQL("TRUE") if update.condition is None else update.condition,
        )
        guarded.append(sql.SQL("IF {} THEN {} END IF;").format(condition, statement))
    return _do(sql.SQL(" ").join(guarded))


def _set_parameter(key: str, value: sql.Composable) -> sql.Composed:
    # UPDATE, then INSERT when no row was there, rather than ON CONFLICT: it does not depend
    # on the unique constraint on key, which a damaged or hand-made database may lack.
    body = sql.SQL(
        "IF {exists} THEN "
        "UPDATE {table} SET value = {value} WHERE key = {key}; "
        "IF NOT FOUND THEN INSERT INTO {table} (key, value) VALUES ({key}, {value}); END IF; "
        "END IF;"
    ).format(
        exists=_has_columns((("ir_config_parameter", "key"), ("ir_config_parameter", "value"))),
        table=sql.Identifier(SCHEMA, "ir_config_parameter"),
        value=value,
        key=sql.Literal(key),
    )
    return _do(body)


def _delete_parameter(key: str) -> sql.Composed:
    body = sql.SQL("IF {exists} THEN DELETE FROM {table} WHERE key = {key}; END IF;").format(
        exists=_has_columns((("ir_config_parameter", "key"),)),
        table=sql.Identifier(SCHEMA, "ir_config_parameter"),
        key=sql.Literal(key),
    )
    return _do(body)


def _has_columns(columns: Sequence[tuple[str, str]]) -> sql.Composed:
    # to_regclass answers NULL rather than failing for a missing table, and pg_attribute
    # then has no row; dropped columns keep a row there, hence attisdropped.
    return sql.SQL(" AND ").join(
        sql.SQL(
            "EXISTS (SELECT FROM pg_catalog.pg_attribute "
            "WHERE attrelid = pg_catalog.to_regclass({table}) AND attname = {column} "
            "AND attnum > 0 AND NOT attisdropped)"
        ).format(table=sql.Literal(f"{SCHEMA}.{table}"), column=sql.Literal(column))
        for table, column in columns
    )


def _do(body: sql.Composable) -> sql.Composed:
    # PL/pgSQL resolves table and column names when a statement runs, not when the block is
    # parsed, so an update behind a false IF never trips over a missing table.
    if _TAG in body.as_string(None):  # pragma: no cover - a programming error
        raise AssertionError(f"a neutralization statement contains its quoting tag {_TAG}")
    return sql.SQL("DO {tag} BEGIN {body} END {tag}").format(tag=sql.SQL(_TAG), body=body)


def _canonical_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"new database UUID {value!r} is not a UUID") from None
