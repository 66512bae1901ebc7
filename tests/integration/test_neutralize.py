"""Neutralization against a real PostgreSQL, and against what Odoo itself neutralizes.

Odoo's own neutralization is one ``data/neutralize.sql`` per module. The coverage tests read
every such file out of the Odoo source archives (``../shared/odoo/odoo-<version>.tar.xz``
beside the repository, or ``$ODOO_OPERATOR_ODOO_SOURCE``), list the tables, columns and
parameters each one touches, and demand that the operator's statements touch them too or
that an entry of :data:`DELIBERATE_OMISSIONS` says why not. A new Odoo version that
neutralizes something new fails here until the operator does as well.

Then scratch databases: one holding every table and column those files touch, typed as Odoo
types them, to prove each statement runs and changes what Odoo's would; one shaped like an
Odoo database, owned by a tenant-like role that runs the statements (as the operator
does), for the operator's own decisions; and one missing most tables, as a smaller or older
database is. Everything made here is dropped with plain SQL afterwards. The same statements
against databases initialised by Odoo 17.0 and 18.0 are in test_neutralize_real_odoo.py.
"""

from __future__ import annotations

import os
import re
import tarfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql
from psycopg.rows import dict_row

from odoo_devstack.odoo_runtime import default_source_dir
from odoo_operator.builders.neutralize import (
    DUMMY_MAIL_SERVER_NAME,
    DUMMY_SMTP_HOST,
    PLACEHOLDER,
    UNKNOWN_BASE_URL,
    WEBHOOK_URL_MARKER,
    neutralization_statements,
    neutralization_summary,
)

NewDatabase = Callable[[str | None], str]
# (table, column); (table, ALL_ROWS) for a table emptied; (keyed table, key) for a row of
# a table whose rows are named by a key, where the key is what matters.
Item = tuple[str, str]

NEW_UUID = uuid.UUID("6f1c2a8e-4b7d-4c1e-9a53-2d8e0f7b6c41")
CLONE_URL = "https://staging.customer.example"
REPO = Path(__file__).resolve().parents[2]
ODOO_VERSIONS = ("17.0", "18.0")
ALL_ROWS = "*"
KEYED_TABLES = frozenset({"ir_config_parameter", "ir_ui_view"})

# What Odoo neutralizes and the operator deliberately does not, with the reason. Empty
# today: every table, column and parameter of Odoo 17.0's and 18.0's neutralize.sql files
# is covered. An entry that the operator covers after all, or that no Odoo version
# neutralizes any more, fails test_every_item_odoo_neutralizes_is_neutralized_here.
DELIBERATE_OMISSIONS: dict[Item, str] = {}


# -- Odoo's own neutralization, read from its source archives -------------------------------


def _odoo_archive(version: str) -> Path:
    option = os.environ.get("ODOO_OPERATOR_ODOO_SOURCE") or str(default_source_dir())
    path = Path(option.replace("{version}", version))
    if path.is_dir():
        path = path / f"odoo-{version}.tar.xz"
    if not path.is_file():
        pytest.fail(
            f"Odoo {version}'s source archive is missing: expected {path}. The coverage tests "
            "read every data/neutralize.sql out of it; put odoo-<version>.tar.xz in "
            f"{default_source_dir()} or point ODOO_OPERATOR_ODOO_SOURCE at a "
            "folder holding them.",
            pytrace=False,
        )
    return path


def read_neutralize_files(version: str) -> dict[str, str]:
    """Module name -> its data/neutralize.sql, for every module of ``version`` having one."""
    files: dict[str, str] = {}
    # Stream mode: one pass through the compressed archive, never a seek back.
    with tarfile.open(_odoo_archive(version), "r|xz") as archive:
        for member in archive:
            parts = member.name.split("/")
            if member.isfile() and parts[-2:] == ["data", "neutralize.sql"]:
                handle = archive.extractfile(member)
                assert handle is not None
                files[parts[-3]] = handle.read().decode()
    assert files, f"no data/neutralize.sql in Odoo {version}'s archive: is it Odoo's source?"
    return files


def split_statements(text: str, separator: str = ";") -> list[str]:
    """``text`` cut at each ``separator`` outside quotes and parentheses, ``--`` comments
    dropped, whitespace collapsed; empty pieces left out."""
    pieces: list[str] = []
    current: list[str] = []
    depth, index, quoted = 0, 0, False
    while index < len(text):
        char = text[index]
        if quoted:
            current.append(char)
            if char == "'" and text[index + 1 : index + 2] == "'":
                current.append("'")
                index += 1
            elif char == "'":
                quoted = False
        elif char == "-" and text[index + 1 : index + 2] == "-":
            while index < len(text) and text[index] != "\n":
                index += 1
            continue
        elif char == "'":
            quoted = True
            current.append(char)
        elif char == separator and depth == 0:
            pieces.append("".join(current))
            current = []
        else:
            depth += {"(": 1, ")": -1}.get(char, 0)
            current.append(char)
        index += 1
    pieces.append("".join(current))
    return [" ".join(piece.split()) for piece in pieces if piece.strip()]


_UPDATE = re.compile(r"UPDATE\s+(\w+)\s+SET\s+(.+?)(?:\s+WHERE\s+.*)?", re.IGNORECASE | re.DOTALL)
_INSERT = re.compile(r"INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE)
_DELETE = re.compile(r"(?:DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?)\s+(\w+)", re.IGNORECASE)
_LITERAL = re.compile(r"'((?:[^']|'')*)'")


def touched_items(statement: str) -> set[Item]:
    """What one of Odoo's statements changes; ValueError for a kind of statement not
    understood here, so that a new form is looked at rather than skipped."""
    if match := _UPDATE.fullmatch(statement):
        table = match.group(1).lower()
        columns = {
            part.split("=", 1)[0].strip().lower() for part in split_statements(match[2], ",")
        }
    elif match := _INSERT.match(statement):
        table = match.group(1).lower()
        columns = {column.strip().lower() for column in match.group(2).split(",")}
    elif match := _DELETE.match(statement):
        table, columns = match.group(1).lower(), {ALL_ROWS}
    else:
        raise ValueError(f"a statement of a kind the coverage check does not read: {statement}")
    if table in KEYED_TABLES:
        keys = {literal for literal in _LITERAL.findall(statement) if literal}
        if not keys:
            raise ValueError(f"a statement on {table} naming no key: {statement}")
        return {(table, key) for key in keys}
    return {(table, column) for column in columns}


def odoo_items(files: Mapping[str, str]) -> dict[Item, list[str]]:
    """Every item the modules' files touch -> the modules touching it."""
    items: dict[Item, list[str]] = {}
    for module, text in sorted(files.items()):
        for statement in split_statements(text):
            for item in touched_items(statement):
                items.setdefault(item, []).append(module)
    return items


def operator_pieces(statements: Sequence[sql.Composable]) -> list[str]:
    """The operator's statements as the single SQL statements inside their DO blocks."""
    return [
        piece for statement in statements for piece in split_statements(statement.as_string(None))
    ]


def uncovered(items: Sequence[Item] | Mapping[Item, Any], pieces: Sequence[str]) -> set[Item]:
    """The items no piece of the operator's SQL changes."""

    def statement_on(table: str, *verbs: str) -> str:
        # A regular expression over the rendered SQL, matching how it names the table.
        return rf'({"|".join(verbs)}) "public"\."{re.escape(table)}"'

    def covers(item: Item, piece: str) -> bool:
        table, name = item
        if table in KEYED_TABLES:
            literal = "'" + name.replace("'", "''") + "'"
            writes = statement_on(table, "UPDATE", "INSERT INTO", "DELETE FROM")
            return bool(re.search(writes, piece)) and literal in piece
        if name == ALL_ROWS:
            return bool(re.search(statement_on(table, "DELETE FROM"), piece))
        column = re.escape(name)
        update = statement_on(table, "UPDATE") + rf' SET "{column}" ='
        insert = statement_on(table, "INSERT INTO") + rf' \([^)]*"{column}"'
        return bool(re.search(update, piece) or re.search(insert, piece))

    return {item for item in items if not any(covers(item, piece) for piece in pieces)}


@pytest.fixture(scope="module")
def odoo_neutralization() -> dict[str, dict[Item, list[str]]]:
    """Per Odoo version, what its neutralize.sql files touch (read once per module)."""
    return {version: odoo_items(read_neutralize_files(version)) for version in ODOO_VERSIONS}


@pytest.mark.parametrize("version", ODOO_VERSIONS)
def test_every_item_odoo_neutralizes_is_neutralized_here(
    odoo_neutralization: dict[str, dict[Item, list[str]]], version: str
) -> None:
    items = odoo_neutralization[version]
    # Anchors from base, mail and payment: if the parse found none of them, it is broken,
    # not the operator complete.
    anchors = {("ir_mail_server", "active"), ("ir_cron", "active"), ("fetchmail_server", "active")}
    assert anchors <= items.keys(), sorted(items)
    pieces = operator_pieces(neutralization_statements(str(NEW_UUID), CLONE_URL))

    missing = uncovered(items, pieces) - DELIBERATE_OMISSIONS.keys()
    assert not missing, "Odoo {} neutralizes what the operator does not: {}".format(
        version, "; ".join(f"{t}.{c} ({', '.join(items[(t, c)])})" for t, c in sorted(missing))
    )
    every_version = set().union(*(found.keys() for found in odoo_neutralization.values()))
    stale = {item for item in DELIBERATE_OMISSIONS if item not in every_version}
    stale |= DELIBERATE_OMISSIONS.keys() - uncovered(list(DELIBERATE_OMISSIONS), pieces)
    assert not stale, f"omissions no longer omitted, or no longer in Odoo: {sorted(stale)}"


def test_the_coverage_check_reports_a_missing_or_misnamed_webhook_statement(
    odoo_neutralization: dict[str, dict[Item, list[str]]],
) -> None:
    items = odoo_neutralization["18.0"]
    assert items[("ir_act_server", "webhook_url")] == ["base"]
    statements = neutralization_statements(str(NEW_UUID), CLONE_URL)
    summary = neutralization_summary(CLONE_URL)
    # Without the webhook step, or with it on the table name the operator once used, the
    # check reports exactly that item.
    kept = [s for s, line in zip(statements, summary, strict=True) if "ir_act_server)" not in line]
    assert len(kept) == len(statements) - 1
    assert uncovered(items, operator_pieces(kept)) == {("ir_act_server", "webhook_url")}
    renamed = [
        sql.SQL(s.as_string(None).replace('"ir_act_server"', '"ir_actions_server"'))
        for s in statements
    ]
    assert ("ir_act_server", "webhook_url") in uncovered(items, operator_pieces(renamed))


def test_the_coverage_parser_reads_every_kind_of_statement_and_refuses_others() -> None:
    text = """
        -- a comment; with a semicolon
        UPDATE payment_provider SET state = 'disabled', key = REGEXP_REPLACE(key, '(,)', ''),
            other = CASE WHEN a = 'x' THEN 'y' END WHERE state NOT IN ('test', 'disabled');
        INSERT INTO ir_mail_server(name, smtp_host) VALUES ('it''s; fine', 'invalid');
        DELETE FROM ir_config_parameter WHERE key IN ('a.b', 'c_d');
        UPDATE ir_ui_view SET active = true WHERE key = 'web.banner';
        TRUNCATE mail_push_device CASCADE
    """
    found = set().union(*(touched_items(s) for s in split_statements(text)))
    assert found == {
        ("payment_provider", "state"),
        ("payment_provider", "key"),
        ("payment_provider", "other"),
        ("ir_mail_server", "name"),
        ("ir_mail_server", "smtp_host"),
        ("ir_config_parameter", "a.b"),
        ("ir_config_parameter", "c_d"),
        ("ir_ui_view", "web.banner"),
        ("mail_push_device", ALL_ROWS),
    }
    for statement in ("ALTER TABLE x DROP COLUMN y", "DELETE FROM ir_config_parameter"):
        with pytest.raises(ValueError, match=r"coverage check|naming no key"):
            touched_items(statement)


# -- every column Odoo neutralizes, in one database -----------------------------------------

# Column types as Odoo's fields make them; anything else is a Char (varchar). A column that
# a new Odoo version adds as a boolean, say, then fails loudly here until it is listed.
ODOO_COLUMN_TYPES = {
    **dict.fromkeys(
        (
            "active",
            "adyen_test_mode",
            "cdn_activated",
            "enabled",
            "google_synchronization_stopped",
            "l10n_eg_production_env",
            "l10n_es_edi_test_env",
            "l10n_es_edi_verifactu_test_environment",
            "l10n_es_sii_test_env",
            "l10n_es_tbai_test_env",
            "l10n_in_edi_production_env",
            "l10n_ro_edi_test_env",
            "l10n_rs_edi_demo_env",
            "microsoft_synchronization_stopped",
            "paytm_test_mode",
            "pine_labs_test_mode",
            "prod_environment",
            "razorpay_test_mode",
            "synchronization_stopped",
            "viva_wallet_test_mode",
        ),
        "boolean",
    ),
    **dict.fromkeys(
        (
            "l10n_in_edi_ewaybill_auth_validity",
            "l10n_in_edi_token_validity",
            "last_sync_date",
            "microsoft_last_sync_date",
            "razorpay_access_token_expiry",
        ),
        "timestamp",
    ),
    **dict.fromkeys(
        ("company_id", "l10n_tr_nilvera_purchase_journal_id", "mail_server_id", "smtp_port"),
        "integer",
    ),
    "robots_txt": "text",
}
# Columns Odoo's statements (or the operator's) read in their conditions, beyond those they
# set, with the value a production row has.
CONDITION_COLUMNS: dict[str, dict[str, tuple[str, object]]] = {
    "ir_act_server": {"state": ("varchar", "webhook")},
    "delivery_carrier": {"delivery_type": ("varchar", "fedex")},
    "account_edi_proxy_client_user": {
        "proxy_type": ("varchar", "l10n_be_edi"),
        "company_id": ("integer", 1),
        "edi_identification": ("varchar", "BE0477472701"),
    },
}


def _production_value(column: str, kind: str) -> object:
    """A value no neutralization leaves in place."""
    if kind == "boolean":
        # The switches to a test service are off in production; every other switch is on.
        return not any(word in column for word in ("test", "demo", "stopped"))
    return {"timestamp": "2030-01-01 00:00:00", "integer": 1}.get(kind, "production")


def _every_table_schema(items: set[Item]) -> tuple[list[sql.Composed], list[sql.Composed]]:
    """CREATE TABLE and INSERT statements for a database holding every item: one row of
    production values per table, one parameter per key, one inactive view per key."""
    tables: dict[str, dict[str, tuple[str, object]]] = {}
    for table, name in sorted(items):
        columns = tables.setdefault(table, {})
        if table == "ir_config_parameter":
            columns.update(key=("varchar", None), value=("text", None))
        elif table == "ir_ui_view":
            columns.update(key=("varchar", None), active=("boolean", None))
        elif name != ALL_ROWS:
            kind = ODOO_COLUMN_TYPES.get(name, "varchar")
            columns[name] = (kind, _production_value(name, kind))
    for table, extra in CONDITION_COLUMNS.items():
        tables.setdefault(table, {}).update(extra)
    creates, inserts = [], []
    for table, columns in tables.items():
        definitions = [sql.SQL("id serial PRIMARY KEY")] + [
            sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(kind))
            for column, (kind, _) in columns.items()
        ]
        creates.append(
            sql.SQL("CREATE TABLE {} ({})").format(
                sql.Identifier(table), sql.SQL(", ").join(definitions)
            )
        )
        if table in KEYED_TABLES:
            continue
        inserts.append(_insert(table, {column: value for column, (_, value) in columns.items()}))
    # A second carrier of a proxy the operator archives rather than switches (Malaysia's).
    inserts.append(
        _insert(
            "account_edi_proxy_client_user",
            {"proxy_type": "l10n_my_edi", "edi_mode": "prod", "active": True, "company_id": 2},
        )
    )
    for table, key in sorted(items):
        if table == "ir_config_parameter":
            inserts.append(_insert(table, {"key": key, "value": "production"}))
        elif table == "ir_ui_view":
            inserts.append(_insert(table, {"key": key, "active": False}))
    return creates, inserts


def _insert(table: str, values: Mapping[str, object]) -> sql.Composed:
    if not values:
        return sql.SQL("INSERT INTO {} DEFAULT VALUES").format(sql.Identifier(table))
    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(column) for column in values),
        sql.SQL(", ").join(sql.Literal(value) for value in values.values()),
    )


def _snapshot(connection: psycopg.Connection, tables: set[str]) -> dict[str, dict[Any, Any]]:
    """Every table's rows by id (parameters and views by key), as dicts of columns."""
    snapshot: dict[str, dict[Any, Any]] = {}
    for table in tables:
        cursor = connection.cursor(row_factory=dict_row)
        rows = cursor.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
        key = "key" if table in KEYED_TABLES else "id"
        snapshot[table] = {row[key]: row for row in rows.fetchall()}
    return snapshot


def test_every_column_odoo_neutralizes_changes_in_a_database_holding_them_all(
    odoo_neutralization: dict[str, dict[Item, list[str]]],
    postgres_dsn: str,
    tenant_role: tuple[str, str],
    new_database: NewDatabase,
) -> None:
    items = set().union(*(found.keys() for found in odoo_neutralization.values()))
    role, password = tenant_role
    dsn = conninfo.make_conninfo(
        postgres_dsn, user=role, password=password, dbname=new_database(role)
    )
    creates, inserts = _every_table_schema(items)
    with psycopg.connect(dsn, autocommit=True) as connection:
        for statement in (*creates, *inserts):
            connection.execute(statement)
        tables = {table for table, _ in items} | set(CONDITION_COLUMNS)
        before = _snapshot(connection, tables)

    neutralize(dsn, str(NEW_UUID), CLONE_URL)

    with psycopg.connect(dsn, autocommit=True) as connection:
        after = _snapshot(connection, tables)
    unchanged = set()
    for table, name in items:
        if name == ALL_ROWS:
            if after[table]:
                unchanged.add((table, name))
        elif table == "ir_config_parameter":
            if before[table][name] == after[table].get(name):
                unchanged.add((table, name))
        elif table == "ir_ui_view":
            if after[table][name]["active"] is not True:
                unchanged.add((table, name))
        # A column counts as neutralized when some row has another value in it, or a row
        # was added (the dummy mail server).
        elif not any(
            before[table].get(row_id, {}).get(name) != row.get(name)
            for row_id, row in after[table].items()
        ):
            unchanged.add((table, name))
    assert not unchanged, f"neutralized by Odoo, left as in production here: {sorted(unchanged)}"

    # A second run changes nothing but the (fresh again) secret.
    neutralize(dsn, str(NEW_UUID), CLONE_URL)
    with psycopg.connect(dsn, autocommit=True) as connection:
        again = _snapshot(connection, tables)
    for snapshot in (after, again):
        snapshot["ir_config_parameter"].pop("database.secret", None)
    assert again == after


# -- the operator's own decisions, on a database shaped like Odoo's -------------------------

ODOO_LIKE_SCHEMA = """
CREATE TABLE ir_mail_server (
    id serial PRIMARY KEY, name varchar NOT NULL, smtp_host varchar, smtp_port integer,
    smtp_authentication varchar NOT NULL, smtp_encryption varchar NOT NULL, from_filter varchar,
    sequence integer, active boolean
);
CREATE TABLE mail_template (id serial PRIMARY KEY, mail_server_id integer);
CREATE TABLE fetchmail_server (
    id serial PRIMARY KEY, name varchar NOT NULL, server varchar, active boolean
);
CREATE TABLE ir_cron (id serial PRIMARY KEY, cron_name varchar NOT NULL, active boolean);
CREATE TABLE payment_provider (
    id serial PRIMARY KEY, code varchar NOT NULL, state varchar NOT NULL,
    stripe_secret_key varchar
);
CREATE TABLE base_automation (
    id serial PRIMARY KEY, name jsonb NOT NULL, trigger varchar NOT NULL, active boolean
);
CREATE TABLE ir_act_server (
    id serial PRIMARY KEY, name jsonb NOT NULL, state varchar NOT NULL,
    webhook_url varchar, base_automation_id integer REFERENCES base_automation (id)
);
CREATE TABLE account_edi_proxy_client_user (
    id serial PRIMARY KEY, active boolean, company_id integer NOT NULL,
    proxy_type varchar NOT NULL, edi_mode varchar NOT NULL, edi_identification varchar
);
-- Odoo's own partial unique indexes: one active user per company, proxy type and mode,
-- and per identification, proxy type and mode.
CREATE UNIQUE INDEX edi_company ON account_edi_proxy_client_user (company_id, proxy_type, edi_mode)
    WHERE active = true;
CREATE UNIQUE INDEX edi_identification
    ON account_edi_proxy_client_user (edi_identification, proxy_type, edi_mode)
    WHERE active = true;
CREATE TABLE iap_account (id serial PRIMARY KEY, account_token varchar);
CREATE TABLE ir_config_parameter (
    id serial PRIMARY KEY, key varchar NOT NULL UNIQUE, value text NOT NULL,
    create_date timestamp, write_date timestamp
);
INSERT INTO ir_mail_server (name, smtp_host, smtp_port, smtp_authentication, smtp_encryption,
                            sequence, active) VALUES
    ('customer relay', 'smtp.customer.example', 587, 'login', 'starttls', 10, true),
    ('bulk', 'mailgun.example', 465, 'login', 'ssl', 20, true),
    ('from odoo.conf', NULL, NULL, 'cli', 'none', 30, true);
INSERT INTO mail_template (mail_server_id) VALUES (1), (NULL);
INSERT INTO fetchmail_server (name, server, active) VALUES ('inbox', 'imap.customer.example', true);
INSERT INTO ir_cron (cron_name, active) VALUES
    ('Post recurring invoices', true), ('Send payment reminders', true),
    ('Base: Auto-vacuum internal data', true), ('Already off', false);
INSERT INTO payment_provider (code, state, stripe_secret_key) VALUES
    ('stripe', 'enabled', 'sk_live_123'), ('adyen', 'test', NULL), ('paypal', 'disabled', NULL);
INSERT INTO base_automation (id, name, trigger, active) VALUES
    (1, '{"en_US": "Receive orders from the shop"}', 'on_webhook', true),
    (2, '{"en_US": "Tell the warehouse about new orders"}', 'on_create_or_write', true),
    (3, '{"en_US": "Set the salesperson"}', 'on_create_or_write', true);
INSERT INTO ir_act_server (id, name, state, webhook_url, base_automation_id) VALUES
    (1, '{"en_US": "Warehouse webhook"}', 'webhook', 'https://wms.customer.example/hook', 2),
    (2, '{"en_US": "Salesperson"}', 'code', NULL, 3),
    (3, '{"en_US": "Button: push to CRM"}', 'webhook', 'https://crm.customer.example/push', NULL);
INSERT INTO account_edi_proxy_client_user
    (id, active, company_id, proxy_type, edi_mode, edi_identification) VALUES
    -- Company 1 has a production and a test user for Peppol: one must go.
    (1, true, 1, 'peppol', 'prod', '0208:0477472701'),
    (2, true, 1, 'peppol', 'test', '0208:0477472701-test'),
    -- Italy's proxy goes to demo mode; company 2's one user just changes mode.
    (3, true, 1, 'l10n_it_edi', 'prod', 'IT01234567890'),
    (4, true, 2, 'peppol', 'prod', '0208:0999999999'),
    -- Malaysia's users are archived, whatever their mode.
    (5, true, 1, 'l10n_my_edi', 'prod', 'C1234567890'),
    (6, true, 1, 'l10n_my_edi', 'test', 'C1234567890');
INSERT INTO iap_account (account_token) VALUES
    ('abc123'), ('def456+disabled'), ('ghi789+sbx'), ('0f8fad5b-d9cb-469f-a165-70867728950e');
INSERT INTO ir_config_parameter (key, value) VALUES
    ('database.uuid', '11111111-2222-4333-8444-555555555555'),
    ('database.secret', 'production-secret'),
    ('database.enterprise_code', 'M2401234567890'),
    ('database.expiration_date', '2027-06-30 00:00:00'),
    ('mail.catchall.domain', 'customer.example'),
    ('mail.web_push_vapid_private_key', 'production-private-key'),
    ('recaptcha_private_key', 'production-recaptcha'),
    ('web.base.url', 'https://erp.customer.example'),
    ('web.base.url.freeze', 'True');
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


def neutralize(dsn: str, database_uuid: str, base_url: str | None) -> None:
    """Run every statement in one transaction, as the caller is meant to."""
    with psycopg.connect(dsn) as connection, connection.transaction():
        for statement in neutralization_statements(database_uuid, base_url):
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
    neutralize(dsn, "{" + str(NEW_UUID).upper() + "}", CLONE_URL + "/")

    with psycopg.connect(dsn, autocommit=True) as connection:
        # Production's servers, the one taking odoo.conf's settings included, are off; the
        # dummy is the only active one, so Odoo picks it for every mail.
        servers = connection.execute(
            "SELECT name, smtp_host, smtp_port, smtp_authentication, active"
            " FROM ir_mail_server ORDER BY id"
        ).fetchall()
        assert servers[:3] == [
            ("customer relay", "smtp.customer.example", 587, "login", False),
            ("bulk", "mailgun.example", 465, "login", False),
            ("from odoo.conf", None, None, "cli", False),
        ]
        assert servers[3:] == [(DUMMY_MAIL_SERVER_NAME, DUMMY_SMTP_HOST, 1025, "login", True)]
        assert connection.execute("SELECT mail_server_id FROM mail_template").fetchall() == [
            (None,),
            (None,),
        ]
        for table in ("fetchmail_server", "ir_cron"):
            active = connection.execute(
                sql.SQL("SELECT DISTINCT active FROM {}").format(sql.Identifier(table))
            ).fetchall()
            assert active == [(False,)], table
        assert connection.execute(
            "SELECT code, state, stripe_secret_key FROM payment_provider ORDER BY id"
        ).fetchall() == [
            ("stripe", "disabled", None),
            ("adyen", "disabled", None),
            ("paypal", "disabled", None),
        ]
        # The incoming webhook and the rule calling a webhook are off; the other rule is not.
        assert connection.execute(
            "SELECT id, active FROM base_automation ORDER BY id"
        ).fetchall() == [(1, False), (2, False), (3, True)]
        assert connection.execute(
            "SELECT id, webhook_url FROM ir_act_server ORDER BY id"
        ).fetchall() == [(1, WEBHOOK_URL_MARKER), (2, None), (3, WEBHOOK_URL_MARKER)]
        # Odoo's unique indexes hold: the production Peppol user that would have collided
        # with the test one is archived, every other user is in test (Italy: demo) mode.
        assert connection.execute(
            "SELECT id, active, edi_mode FROM account_edi_proxy_client_user ORDER BY id"
        ).fetchall() == [
            (1, False, "test"),
            (2, True, "test"),
            (3, True, "demo"),
            (4, True, "test"),
            (5, False, "prod"),
            (6, False, "test"),
        ]
        assert connection.execute(
            "SELECT account_token FROM iap_account ORDER BY id"
        ).fetchall() == [
            ("abc123+disabled",),
            ("def456+disabled",),
            ("ghi789+disabled",),
            (f"{PLACEHOLDER}+disabled",),
        ]
        after = parameters(connection)
    assert after["database.uuid"] == str(NEW_UUID)
    assert "database.enterprise_code" not in after
    assert "mail.web_push_vapid_private_key" not in after
    assert after["recaptcha_private_key"] == ""
    assert after["database.is_neutralized"] == "true"
    assert after["database.secret"] != "production-secret"
    assert str(uuid.UUID(after["database.secret"])) == after["database.secret"]
    assert after["web.base.url"] == CLONE_URL
    # Kept on purpose: see the decisions in the module's docstring.
    assert after["web.base.url.freeze"] == "True"
    assert after["database.expiration_date"] == "2027-06-30 00:00:00"
    assert after["mail.catchall.domain"] == "customer.example"

    # A second run is harmless: one dummy server still, and nothing else changes but the
    # (fresh again) secret.
    neutralize(dsn, str(NEW_UUID), CLONE_URL)
    with psycopg.connect(dsn, autocommit=True) as connection:
        again = parameters(connection)
        assert connection.execute("SELECT name FROM ir_mail_server WHERE active").fetchall() == [
            (DUMMY_MAIL_SERVER_NAME,)
        ]
        assert connection.execute("SELECT count(*) FROM ir_mail_server").fetchone() == (4,)
    assert {k: v for k, v in again.items() if k != "database.secret"} == {
        k: v for k, v in after.items() if k != "database.secret"
    }


def test_without_the_clones_address_odoo_is_left_to_learn_it_at_the_first_admin_login(
    postgres_dsn: str, tenant_role: tuple[str, str], new_database: NewDatabase
) -> None:
    role, password = tenant_role
    dsn = conninfo.make_conninfo(
        postgres_dsn, user=role, password=password, dbname=new_database(role)
    )
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(ODOO_LIKE_SCHEMA)

    neutralize(dsn, str(NEW_UUID), None)

    with psycopg.connect(dsn, autocommit=True) as connection:
        after = parameters(connection)
    assert after["web.base.url"] == UNKNOWN_BASE_URL
    assert "web.base.url.freeze" not in after


def test_a_database_missing_most_odoo_tables_is_neutralized_without_error(
    postgres_dsn: str, new_database: NewDatabase
) -> None:
    sparse, empty = new_database(None), new_database(None)
    sparse_dsn = conninfo.make_conninfo(postgres_dsn, dbname=sparse)
    with psycopg.connect(sparse_dsn, autocommit=True) as connection:
        connection.execute(SPARSE_SCHEMA)

    neutralize(sparse_dsn, str(NEW_UUID), CLONE_URL)
    neutralize(conninfo.make_conninfo(postgres_dsn, dbname=empty), str(NEW_UUID), None)

    with psycopg.connect(sparse_dsn, autocommit=True) as connection:
        assert connection.execute(
            "SELECT provider, state FROM payment_acquirer ORDER BY id"
        ).fetchall() == [("ogone", "disabled"), ("transfer", "disabled")]
        # Without ir_act_server there is no webhook to find: the rule is left alone.
        assert connection.execute("SELECT active FROM base_automation").fetchall() == [(True,)]
        # Too few columns for the dummy server: nothing is inserted.
        assert connection.execute("SELECT name FROM ir_mail_server").fetchall() == [("relay",)]
        after = parameters(connection)
        tables = connection.execute(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'"
        ).fetchone()
    assert tables == (4,)  # nothing was created
    assert after["database.uuid"] == str(NEW_UUID)  # inserted: there was none
    assert after["web.base.url"] == CLONE_URL
    assert after["database.is_neutralized"] == "true"
    assert "database.enterprise_code" not in after


def test_the_summary_has_one_line_per_statement_and_bad_uuids_and_urls_are_refused() -> None:
    statements = neutralization_statements(str(NEW_UUID), CLONE_URL)
    summary = neutralization_summary(CLONE_URL)
    assert len(summary) == len(statements) == len(neutralization_summary())
    assert all(line and line == line.strip() for line in summary)
    assert summary[-1].startswith("database.is_neutralized")
    assert f"web.base.url set to {CLONE_URL}" in summary
    for bad in ("", "not-a-uuid", "6f1c2a8e-4b7d-4c1e-9a53", "x' OR '1'='1"):
        with pytest.raises(ValueError, match="is not a UUID"):
            neutralization_statements(bad, CLONE_URL)
    for url in (
        "",
        "staging.customer.example",
        "ftp://staging.customer.example",
        "https://user:pw@staging.customer.example",
        "https://staging.customer.example/odoo",
        "https://staging.customer.example?x=1",
        "https://staging.customer.example:99999",
        "https://staging.customer.example$neutralize$",
        "https://staging.customer.example'; DROP TABLE res_users; --",
        " https://staging.customer.example",
    ):
        with pytest.raises(ValueError, match="is not http"):
            neutralization_statements(str(NEW_UUID), url)
    assert neutralization_summary("HTTP://Staging.Customer.Example:8069/")[-3] == (
        "web.base.url set to http://staging.customer.example:8069"
    )
