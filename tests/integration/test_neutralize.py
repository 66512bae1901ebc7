"""Neutralization against a real PostgreSQL: what a staging clone may no longer do.

Two scratch databases: one shaped like an Odoo 17 database with the mail, payment,
automation and IAP modules installed, owned by a tenant-like role that runs the statements
(as the operator should); one missing most of those tables and columns, as an older or
smaller Odoo database does. Everything made here is dropped with plain SQL afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import conninfo, sql

from odoo_operator.builders.neutralize import neutralization_statements, neutralization_summary

NewDatabase = Callable[[str | None], str]

NEW_UUID = uuid.UUID("6f1c2a8e-4b7d-4c1e-9a53-2d8e0f7b6c41")

ODOO_LIKE_SCHEMA = """
CREATE TABLE ir_mail_server (
    id serial PRIMARY KEY, name varchar NOT NULL, smtp_host varchar NOT NULL, active boolean
);
CREATE TABLE fetchmail_server (
    id serial PRIMARY KEY, name varchar NOT NULL, server varchar, active boolean
);
CREATE TABLE ir_cron (id serial PRIMARY KEY, cron_name varchar NOT NULL, active boolean);
CREATE TABLE payment_provider (
    id serial PRIMARY KEY, code varchar NOT NULL, state varchar NOT NULL
);
CREATE TABLE base_automation (
    id serial PRIMARY KEY, name varchar NOT NULL, trigger varchar NOT NULL, active boolean
);
CREATE TABLE ir_actions_server (
    id serial PRIMARY KEY, name varchar NOT NULL, state varchar NOT NULL,
    webhook_url varchar, base_automation_id integer REFERENCES base_automation (id),
    active boolean
);
CREATE TABLE iap_account (id serial PRIMARY KEY, account_token varchar);
CREATE TABLE ir_config_parameter (
    id serial PRIMARY KEY, key varchar NOT NULL UNIQUE, value text NOT NULL,
    create_date timestamp, write_date timestamp
);
INSERT INTO ir_mail_server (name, smtp_host, active) VALUES
    ('customer relay', 'smtp.customer.example', true), ('bulk', 'mailgun.example', true);
INSERT INTO fetchmail_server (name, server, active) VALUES ('inbox', 'imap.customer.example', true);
INSERT INTO ir_cron (cron_name, active) VALUES
    ('Post recurring invoices', true), ('Send payment reminders', true),
    ('Base: Auto-vacuum internal data', true), ('Already off', false);
INSERT INTO payment_provider (code, state) VALUES
    ('stripe', 'enabled'), ('adyen', 'test'), ('paypal', 'disabled');
INSERT INTO base_automation (id, name, trigger, active) VALUES
    (1, 'Receive orders from the shop', 'on_webhook', true),
    (2, 'Tell the warehouse about new orders', 'on_create', true),
    (3, 'Set the salesperson', 'on_write', true);
INSERT INTO ir_actions_server (id, name, state, webhook_url, base_automation_id, active) VALUES
    (1, 'Warehouse webhook', 'webhook', 'https://wms.customer.example/hook', 2, true),
    (2, 'Salesperson', 'code', NULL, 3, true),
    (3, 'Button: push to CRM', 'webhook', 'https://crm.customer.example/push', NULL, true);
INSERT INTO iap_account (account_token) VALUES ('abc123'), ('def456+disabled'), ('ghi789+sbx');
INSERT INTO ir_config_parameter (key, value) VALUES
    ('database.uuid', '11111111-2222-4333-8444-555555555555'),
    ('database.secret', 'production-secret'),
    ('database.enterprise_code', 'M2401234567890'),
    ('database.expiration_date', '2027-06-30 00:00:00'),
    ('mail.catchall.domain', 'customer.example'),
    ('web.base.url', 'https://erp.customer.example');
"""

# An older, smaller database: no fetchmail, cron, payment_provider, iap or server actions;
# payment_acquirer (before Odoo 16); a mail server table without its active column; rules
# pointing at server actions (up to Odoo 16) while the server action table is missing; a
# parameter table without the unique key and without database.uuid.
SPARSE_SCHEMA = """
CREATE TABLE ir_mail_server (id serial PRIMARY KEY, name varchar NOT NULL);
CREATE TABLE payment_acquirer (id serial PRIMARY KEY, provider varchar, state varchar);
CREATE TABLE base_automation (
    id serial PRIMARY KEY, action_server_id integer NOT NULL, active boolean
);
CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key varchar NOT NULL, value text);
INSERT INTO ir_mail_server (name) VALUES ('relay');
INSERT INTO payment_acquirer (provider, state) VALUES ('ogone', 'enabled'), ('transfer', 'test');
INSERT INTO base_automation (action_server_id, active) VALUES (7, true);
INSERT INTO ir_config_parameter (key, value) VALUES ('database.enterprise_code', 'M1');
"""


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def superuser(postgres_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def tenant_role(superuser: psycopg.Connection, postgres_dsn: str) -> Iterator[tuple[str, str]]:
    """A login role with no special attributes, like a tenant's, and its password."""
    name, password = unique("neutral_owner"), uuid.uuid4().hex
    superuser.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)
        )
    )
    yield name, password
    superuser.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def new_database(superuser: psycopg.Connection) -> Iterator[NewDatabase]:
    """Creates scratch databases (owned by the given role, or the superuser); drops them."""
    made: list[str] = []

    def make(owner: str | None = None) -> str:
        name = unique("neutralize")
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner is not None:
            statement = sql.SQL("{} OWNER {}").format(statement, sql.Identifier(owner))
        superuser.execute(statement)
        made.append(name)
        return name

    yield make
    for name in made:
        superuser.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def neutralize(dsn: str, database_uuid: str) -> None:
    """Run every statement in one transaction, as the caller is meant to."""
    with psycopg.connect(dsn) as connection, connection.transaction():
        for statement in neutralization_statements(database_uuid):
            connection.execute(statement)


def parameters(connection: psycopg.Connection) -> dict[str, str]:
    rows = connection.execute("SELECT key, value FROM ir_config_parameter").fetchall()
    return dict(rows)


def test_an_odoo_database_can_no_longer_mail_charge_call_out_or_pose_as_production(
    postgres_dsn: str, tenant_role: tuple[str, str], new_database: NewDatabase
) -> None:
    role, password = tenant_role
    database = new_database(role)
    dsn = conninfo.make_conninfo(postgres_dsn, user=role, password=password, dbname=database)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(ODOO_LIKE_SCHEMA)

    # Any spelling of the UUID; the database gets Odoo's lowercase, hyphenated form.
    neutralize(dsn, "{" + str(NEW_UUID).upper() + "}")

    with psycopg.connect(dsn, autocommit=True) as connection:
        for table in ("ir_mail_server", "fetchmail_server", "ir_cron"):
            active = connection.execute(
                sql.SQL("SELECT DISTINCT active FROM {}").format(sql.Identifier(table))
            ).fetchall()
            assert active == [(False,)], table
        assert connection.execute(
            "SELECT code, state FROM payment_provider ORDER BY id"
        ).fetchall() == [("stripe", "disabled"), ("adyen", "disabled"), ("paypal", "disabled")]
        # The incoming webhook and the rule calling a webhook are off; the other rule is not.
        assert connection.execute(
            "SELECT id, active FROM base_automation ORDER BY id"
        ).fetchall() == [(1, False), (2, False), (3, True)]
        assert connection.execute(
            "SELECT id, active, webhook_url FROM ir_actions_server ORDER BY id"
        ).fetchall() == [(1, False, ""), (2, True, None), (3, False, "")]
        assert connection.execute(
            "SELECT account_token FROM iap_account ORDER BY id"
        ).fetchall() == [("abc123+disabled",), ("def456+disabled",), ("ghi789+disabled",)]
        after = parameters(connection)
    assert after["database.uuid"] == str(NEW_UUID)
    assert "database.enterprise_code" not in after
    assert after["database.is_neutralized"] == "True"
    assert after["database.secret"] != "production-secret"
    assert str(uuid.UUID(after["database.secret"])) == after["database.secret"]
    # Kept on purpose: see the decisions in the module's docstring.
    assert after["database.expiration_date"] == "2027-06-30 00:00:00"
    assert after["mail.catchall.domain"] == "customer.example"
    assert after["web.base.url"] == "https://erp.customer.example"

    # A second run is harmless and changes nothing but the (fresh again) secret.
    neutralize(dsn, str(NEW_UUID))
    with psycopg.connect(dsn, autocommit=True) as connection:
        again = parameters(connection)
        tokens = connection.execute("SELECT account_token FROM iap_account ORDER BY id")
        assert tokens.fetchall() == [
            ("abc123+disabled",),
            ("def456+disabled",),
            ("ghi789+disabled",),
        ]
    assert {k: v for k, v in again.items() if k != "database.secret"} == {
        k: v for k, v in after.items() if k != "database.secret"
    }


def test_a_database_missing_most_odoo_tables_is_neutralized_without_error(
    postgres_dsn: str, new_database: NewDatabase
) -> None:
    sparse, empty = new_database(None), new_database(None)
    sparse_dsn = conninfo.make_conninfo(postgres_dsn, dbname=sparse)
    with psycopg.connect(sparse_dsn, autocommit=True) as connection:
        connection.execute(SPARSE_SCHEMA)

    neutralize(sparse_dsn, str(NEW_UUID))
    neutralize(conninfo.make_conninfo(postgres_dsn, dbname=empty), str(NEW_UUID))

    with psycopg.connect(sparse_dsn, autocommit=True) as connection:
        assert connection.execute(
            "SELECT provider, state FROM payment_acquirer ORDER BY id"
        ).fetchall() == [("ogone", "disabled"), ("transfer", "disabled")]
        # Without ir_actions_server there is no webhook to find: the rule is left alone.
        assert connection.execute("SELECT active FROM base_automation").fetchall() == [(True,)]
        assert connection.execute("SELECT name FROM ir_mail_server").fetchall() == [("relay",)]
        after = parameters(connection)
        tables = connection.execute(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'"
        ).fetchone()
    assert tables == (4,)  # nothing was created
    assert after["database.uuid"] == str(NEW_UUID)  # inserted: there was none
    assert after["database.is_neutralized"] == "True"
    assert "database.enterprise_code" not in after


def test_the_summary_has_one_line_per_statement_and_bad_uuids_are_refused() -> None:
    statements = neutralization_statements(str(NEW_UUID))
    summary = neutralization_summary()
    assert len(summary) == len(statements)
    assert all(line and line == line.strip() for line in summary)
    assert summary[-1].startswith("database.is_neutralized")
    for bad in ("", "not-a-uuid", "6f1c2a8e-4b7d-4c1e-9a53", "x' OR '1'='1"):
        with pytest.raises(ValueError, match="is not a UUID"):
            neutralization_statements(bad)
