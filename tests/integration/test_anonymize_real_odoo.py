"""Anonymization of databases that Odoo 17.0 and 18.0 initialised themselves.

Each test copies a database initialised with account and hr, and makes it look like a
customer's production through Odoo's own models: a private customer, two partners sharing
one email, a company with a contact, bank accounts, an internal user with a signature, two
posted invoices (one whose customer changed while in draft, so that tracking values hold
names), chatter notes, a queued mail, attachments whose content and name are personal, and an
employee with every private field the version has (one changed after creation, so that its
tracking holds the old value). Every planted value carries a marker (``quokka``, the phone,
IBAN, VAT and zip digits) that :data:`LEAK_PATTERN` finds in any spelling Odoo stores it in.

It then runs the operator's neutralization and anonymization statements in one transaction,
as the restore engine does, and proves:

- no text, varchar, json or jsonb column of any table holds a marker any more (the scan finds
  none in the fresh copy, and finds the planted values before anonymization, so it would see
  a leak), no attachment Odoo serves has a marker in its content, and the employee's date
  of birth (no text) is gone;
- the books are untouched: every number and date of every journal entry and journal item;
- masking is deterministic: one original email gives one masked email wherever it was
  (partners, the employee's work contact, the author of a message), two different ones
  give two different masked emails, all in :data:`ANONYMIZED_EMAIL_DOMAIN`;
- logins of Odoo's own users, and those the caller keeps, are unchanged; others are not;
- Odoo works on the result: it reads the invoice and its customer, renders the invoice
  report without any marker, serves its login page and lets the administrator in.
"""

from __future__ import annotations

import re
import secrets
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from psycopg import sql
from tests.integration.test_neutralize_real_odoo import neutralize_as_the_engine, rows, run_in_odoo

from odoo_devstack.odoo_runtime import ODOO_VERSIONS
from odoo_operator.builders.anonymize import ANONYMIZED_EMAIL_DOMAIN, anonymization_statements

if TYPE_CHECKING:
    # Only for annotations: importing the plugin module before pytest registers it would
    # keep pytest from rewriting its assertions.
    from odoo_devstack.pytest_fixtures import OdooDatabases, OdooRuntimes, OdooServers


# The first test of a session initialises the template database of its version (a few
# minutes with account and hr, more on a loaded machine); the suite's 600 s would cut it short.
pytestmark = pytest.mark.timeout(2400)

MODULES = ("account", "hr")

CUSTOMER_EMAIL = "zanzibar.quokka@quokka-customer.example"
TWINS_EMAIL = "twins@quokka-family.example"
EMPLOYEE_WORK_EMAIL = "quokka.employee@quokka-company.example"
QUOKKA_LOGIN = "quokka.user"
# Kept because the caller asks, as a reviewer's account on staging would be.
KEPT_LOGIN = "reviewer@staging.example"

# Any trace of a planted value: the word, the customer's and the employee's phone
# (+32 470 77 31 00 and 01, in any spacing Odoo or phone_validation stores), their IBANs
# (BE58 7317 7310 0479, BE47 7317 7310 0580), the VAT number and the zip. The numbers are
# long enough, and the zip bounded, not to occur by chance in Odoo's own data; the test
# checks that on the fresh copy. (Odoo's own examples, VAT BE0477472701 and IBAN
# BE71 0961 2345 6769, are in its views and module descriptions: they make no markers.)
LEAK_PATTERN = (
    r"quokka"
    r"|470[ .-]?77[ .-]?31[ .-]?0[01]"
    r"|7317[ .-]?7310[ .-]?0[45]"
    r"|0836[ .-]?157[ .-]?420"
    r"|\m77310\M"
)
# Where the planted values must be found before anonymization: proof the scan sees them.
PLANTED_COLUMNS = {
    ("res_partner", "name"),
    ("res_partner", "email"),
    ("res_partner", "phone"),
    ("res_partner", "street"),
    ("res_partner", "zip"),
    ("res_partner", "vat"),
    ("res_partner_bank", "acc_number"),
    ("res_users", "login"),
    ("res_users", "signature"),
    ("hr_employee", "private_email"),
    ("hr_employee", "ssnid"),
    ("mail_message", "body"),
    ("mail_message", "email_from"),
    ("mail_tracking_value", "old_value_char"),
    ("ir_attachment", "index_content"),
    ("account_move", "invoice_partner_display_name"),
}

# Production as a customer's people fill it in, through Odoo's models. Every field is
# written only when the version has it; `out["absent"]` lists the others.
_PLANT = """
    absent = out.setdefault("absent", {})
    def only(model, values):
        fields = env[model]._fields
        absent[model] = sorted(set(absent.get(model, [])) | {k for k in values if k not in fields})
        return {k: v for k, v in values.items() if k in fields}

    partners = env["res.partner"]
    customer = partners.create(only("res.partner", {
        "name": "Zanzibar Quokka", "is_company": False, "email": given["customer_email"],
        "phone": "+32 470 77 31 00", "mobile": "+32 470 77 31 00",
        "street": "7731 Quokka Lane", "street2": "Quokka Residence, flat 3",
        "city": "Quokkaville", "zip": "77310", "vat": "BE0836157420",
        "website": "https://zanzibar.quokka.example", "function": "Quokka keeper",
        "comment": "<p>Quokka prefers calls after 6pm</p>",
    }))
    twins = partners.create([
        {"name": "Quokka Twin Alpha", "email": given["twins_email"]},
        {"name": "Quokka Twin Beta", "email": given["twins_email"]},
    ])
    holdings = partners.create({
        "name": "Quokka Holdings", "is_company": True, "email": "info@quokka-holdings.example",
        "street": "1 Quokka Square", "city": "Quokkaville", "zip": "77310",
    })
    contact = partners.create({
        "name": "Quokka Contactperson", "parent_id": holdings.id, "type": "contact",
        "email": "contact@quokka-holdings.example", "phone": "+32 470 77 31 00",
    })
    bank = env["res.partner.bank"].create({
        "partner_id": customer.id, "acc_number": "BE58 7317 7310 0479",
        "acc_holder_name": "Zanzibar Quokka",
    })

    user = env["res.users"].with_context(no_reset_password=True).create({
        "name": "Quokka Userperson", "login": given["quokka_login"],
        "email": "quokka.user@quokka-company.example",
        "signature": "<p>Quokka Userperson, Sales, +32 470 77 31 00</p>",
        "groups_id": [(6, 0, [env.ref("base.group_user").id])],
    })
    kept = env["res.users"].with_context(no_reset_password=True).create({
        "name": "Quokka Reviewerperson", "login": given["kept_login"],
        "groups_id": [(6, 0, [env.ref("base.group_user").id])],
    })

    def invoice(partner, label, quantity, price):
        return env["account.move"].create({
            "move_type": "out_invoice", "partner_id": partner.id,
            "invoice_line_ids": [
                (0, 0, {"name": label, "quantity": quantity, "price_unit": price})],
        })
    # The customer invoice is first made out to one twin, and changed once committed, so
    # that its tracking values hold both names.
    first = invoice(twins[0], "Consulting services", 3, 123.45)
    second = invoice(holdings, "Maintenance contract", 12, 87.5)
    cr.commit()
    first.partner_id = customer
    (first | second).action_post()
    customer.message_post(
        body="Quokka secret note: call Zanzibar on +32 470 77 31 00",
        author_id=customer.id, message_type="comment", subtype_xmlid="mail.mt_note")
    first.message_post(
        body="Quokka invoice note: Zanzibar will pay late", subtype_xmlid="mail.mt_note")
    queued = env["mail.mail"].create({
        "subject": "Your invoice, Zanzibar Quokka", "email_to": given["customer_email"],
        "email_from": "billing@quokka-company.example",
        "body_html": "<p>Dear Zanzibar Quokka, please pay.</p>",
        "recipient_ids": [(4, customer.id)],
    })
    attachments = env["ir.attachment"].create([
        {"name": "Zanzibar Quokka passport.txt", "mimetype": "text/plain",
         "raw": b"Passport of Zanzibar Quokka, born in Quokkaville",
         "res_model": "res.partner", "res_id": customer.id},
        {"name": "signed-invoice.txt", "mimetype": "text/plain",
         "raw": b"Signed for receipt by Zanzibar Quokka",
         "res_model": "account.move", "res_id": first.id},
    ])

    employees = env["hr.employee"]
    employee = employees.create(only("hr.employee", {
        "name": "Quokka Employeeperson", "work_email": given["employee_work_email"],
        "private_email": "quokka.home@quokka-private.example",
        "private_phone": "+32 470 77 31 01", "private_street": "7731 Quokka Lane",
        "private_street2": "Quokka Residence, flat 4", "private_city": "Quokkaville",
        "private_zip": "77310", "identification_id": "QUOKKA-ID-1",
        "passport_id": "QUOKKA-PASSPORT", "ssnid": "QUOKKA-SSN", "sinid": "QUOKKA-SIN",
        "birthday": "1987-07-31", "emergency_contact": "Quokka Emergencyperson",
        "emergency_phone": "+32 470 77 31 01", "spouse_complete_name": "Quokka Spouseperson",
        "place_of_birth": "Quokkaville", "permit_no": "QUOKKA-PERMIT", "visa_no": "QUOKKA-VISA",
        "private_car_plate": "QUOKKA-1",
    }))
    if "bank_account_id" in employees._fields:
        employee.bank_account_id = env["res.partner.bank"].create({
            "partner_id": employee.work_contact_id.id, "acc_number": "BE47 7317 7310 0580",
            "acc_holder_name": "Quokka Employeeperson",
        })
    cr.commit()
    # A tracked field changed: its tracking value keeps the old number.
    employee.identification_id = "QUOKKA-ID-2"

    message = env["mail.message"].search(
        [("model", "=", "res.partner"), ("res_id", "=", customer.id),
         ("author_id", "=", customer.id)], limit=1)
    out.update(
        customer=customer.id, twins=twins.ids, holdings=holdings.id, contact=contact.id,
        bank=bank.id, user=user.id, kept=kept.id, invoices=[first.id, second.id],
        queued=queued.id, attachments=attachments.ids, employee=employee.id,
        work_contact=employee.work_contact_id.id, message=message.id,
        birthday=str(employee.birthday) if "birthday" in employees._fields else None,
    )
"""

# Odoo on the anonymized clone: it reads what the people above became, renders the invoice
# and serves the attachments' content; nothing is committed.
_READ_BACK = """
    import re
    leak = re.compile(given["pattern"].replace(r"\\m", r"\\b").replace(r"\\M", r"\\b"), re.I)
    def leaks(text):
        return [text[max(m.start() - 40, 0):m.end() + 40] for m in leak.finditer(text)]

    first = env["account.move"].browse(given["invoices"][0])
    out["partner"] = first.partner_id.display_name
    out["amount_total"] = first.amount_total
    html, _ = env["ir.actions.report"]._render_qweb_html("account.account_invoices", first.ids)
    html = html.decode()
    out["report_total"] = "%.2f" % first.amount_total in html.replace(",", "")
    out["report_leaks"] = leaks(html)
    employee = env["hr.employee"].browse(given["employee"])
    out["employee"] = employee.name
    out["birthday"] = str(employee.birthday) if "birthday" in employee._fields else None
    attachments = env["ir.attachment"].search(
        ["|", ("res_field", "=", False), ("res_field", "!=", False), ("type", "=", "binary")])
    out["attachment_leaks"] = {}
    for attachment in attachments:
        found = leaks((attachment.raw or b"").decode("utf-8", "replace"))
        if found:
            out["attachment_leaks"][f"{attachment.id} {attachment.name}"] = found
    cr.rollback()
"""

Leak = tuple[str, str, int, str]


def _columns(connection: psycopg.Connection, data_types: tuple[str, ...]) -> dict[str, list[str]]:
    """The columns of ``data_types`` of every table of schema public, by table."""
    by_table: dict[str, list[str]] = defaultdict(list)
    for table, column in rows(
        connection,
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
        " AND c.data_type = ANY(%s) ORDER BY c.table_name, c.ordinal_position",
        list(data_types),
    ):
        by_table[table].append(column)
    return by_table


def _leaks(connection: psycopg.Connection) -> list[Leak]:
    """Every (table, column, rows, sample) where a text value matches :data:`LEAK_PATTERN`;
    the sample is the first match with up to 50 characters either side."""
    found: list[Leak] = []
    columns = _columns(connection, ("text", "character varying", "json", "jsonb"))
    for table, names in columns.items():
        counts = connection.execute(
            sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(
                    sql.SQL("count(*) FILTER (WHERE {}::text ~* %(pattern)s)").format(
                        sql.Identifier(name)
                    )
                    for name in names
                ),
                sql.Identifier(table),
            ),
            {"pattern": LEAK_PATTERN},
        ).fetchone()
        assert counts is not None
        for name, count in zip(names, counts, strict=True):
            if not count:
                continue
            sample = connection.execute(
                sql.SQL(
                    "SELECT (regexp_match({column}::text, %(window)s, 'i'))[1] FROM {table}"
                    " WHERE {column}::text ~* %(pattern)s LIMIT 1"
                ).format(column=sql.Identifier(name), table=sql.Identifier(table)),
                {"pattern": LEAK_PATTERN, "window": f"(.{{0,50}}(?:{LEAK_PATTERN}).{{0,50}})"},
            ).fetchone()
            found.append((table, name, count, str(sample[0] if sample else "")[:120]))
    return found


def _describe(leaks: list[Leak]) -> str:
    return "\n".join(
        f"  {table}.{column}: {count} row(s), e.g. {sample!r}"
        for table, column, count, sample in leaks
    )


def _books(connection: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every number and date of every journal entry and item, and the invoices' totals."""
    kept = ("numeric", "double precision", "integer", "bigint", "smallint", "date")
    books: dict[str, list[tuple[Any, ...]]] = {}
    for table, names in _columns(connection, kept).items():
        if table in ("account_move", "account_move_line"):
            books[table] = connection.execute(
                sql.SQL("SELECT {} FROM {} ORDER BY id").format(
                    sql.SQL(", ").join(map(sql.Identifier, names)), sql.Identifier(table)
                )
            ).fetchall()
    books["invoices"] = rows(
        connection,
        "SELECT id, amount_total, amount_untaxed, amount_tax, amount_residual FROM account_move"
        " WHERE move_type = 'out_invoice' ORDER BY id",
    )
    books["lines"] = rows(
        connection,
        "SELECT move_id, sum(debit), sum(credit), sum(balance) FROM account_move_line"
        " GROUP BY move_id ORDER BY move_id",
    )
    return books


@pytest.mark.parametrize("version", ODOO_VERSIONS)
def test_an_anonymized_clone_of_a_real_odoo_database_keeps_no_personal_value_and_its_books(
    odoo_runtimes: OdooRuntimes,
    odoo_databases: OdooDatabases,
    odoo_servers: OdooServers,
    tmp_path: Path,
    version: str,
) -> None:
    runtime = odoo_runtimes.get(version)
    database = odoo_databases.copy(version, MODULES)
    with psycopg.connect(database.dsn, autocommit=True) as connection:
        fresh = _leaks(connection)
    assert fresh == [], f"the markers occur in a fresh database:\n{_describe(fresh)}"

    given = {
        "customer_email": CUSTOMER_EMAIL,
        "twins_email": TWINS_EMAIL,
        "employee_work_email": EMPLOYEE_WORK_EMAIL,
        "quokka_login": QUOKKA_LOGIN,
        "kept_login": KEPT_LOGIN,
    }
    production = run_in_odoo(runtime, database, _PLANT, given, tmp_path)
    with psycopg.connect(database.dsn, autocommit=True) as connection:
        planted = _leaks(connection)
        books = _books(connection)
        [(admin_login,)] = rows(
            connection,
            "SELECT u.login FROM res_users u JOIN ir_model_data d ON d.res_id = u.id"
            " AND d.model = 'res.users' WHERE d.module = 'base' AND d.name = 'user_admin'",
        )
    missing = PLANTED_COLUMNS - {(table, column) for table, column, _, _ in planted}
    assert not missing, f"the scan misses planted values in {sorted(missing)}"
    assert len(books["invoices"]) == len(production["invoices"]) == 2, books["invoices"]
    assert all(residual > 0 for *_, residual in books["invoices"]), books["invoices"]

    salt = secrets.token_hex(16)
    neutralize_as_the_engine(
        database.dsn, anonymization_statements(salt, keep_logins=(KEPT_LOGIN,))
    )

    with psycopg.connect(database.dsn, autocommit=True) as connection:
        leaks = _leaks(connection)
        assert leaks == [], f"personal values left after anonymization:\n{_describe(leaks)}"
        assert _books(connection) == books

        emails = dict(
            rows(
                connection,
                "SELECT id, email FROM res_partner WHERE id = ANY(%s)",
                [production["customer"], *production["twins"], production["work_contact"]],
            )
        )
        twin_a, twin_b = (emails[twin] for twin in production["twins"])
        customer = emails[production["customer"]]
        assert twin_a == twin_b != customer, emails
        assert all(
            email.lower().endswith("@" + ANONYMIZED_EMAIL_DOMAIN) for email in emails.values()
        ), emails
        [(work_email,)] = rows(
            connection, "SELECT work_email FROM hr_employee WHERE id = %s", production["employee"]
        )
        assert work_email == emails[production["work_contact"]], (work_email, emails)
        [(email_from,)] = rows(
            connection, "SELECT email_from FROM mail_message WHERE id = %s", production["message"]
        )
        assert customer.lower() in email_from.lower(), (customer, email_from)

        logins = dict(
            rows(
                connection,
                "SELECT id, login FROM res_users WHERE id = ANY(%s)",
                [production["user"], production["kept"]],
            )
        )
        assert logins[production["kept"]] == KEPT_LOGIN
        assert logins[production["user"]] != QUOKKA_LOGIN
        assert rows(
            connection,
            "SELECT u.login FROM res_users u JOIN ir_model_data d ON d.res_id = u.id"
            " AND d.model = 'res.users' WHERE d.module = 'base' AND d.name = 'user_admin'",
        ) == [(admin_login,)]

    # Odoo itself reads, renders and serves the anonymized clone.
    read = run_in_odoo(
        runtime,
        database,
        _READ_BACK,
        {**production, "pattern": LEAK_PATTERN},
        tmp_path,
    )
    assert read["partner"], read
    assert not re.search("quokka", read["partner"] + read["employee"], re.IGNORECASE), read
    assert read["amount_total"] == float(books["invoices"][0][1])
    assert read["report_total"], "the invoice report does not show the invoice's total"
    assert read["report_leaks"] == [], read["report_leaks"]
    assert read["attachment_leaks"] == {}, read["attachment_leaks"]
    # A date of birth is no text the scan sees: it is gone all the same.
    assert production["birthday"] == "1987-07-31"
    assert read["birthday"] in (None, "False"), read["birthday"]

    server = odoo_servers.serve(database)
    login = server.get("/web/login")
    assert login.status == 200, server.log_tail()
    assert b"quokka" not in login.body.lower()
    session = server.authenticate(database.name, admin_login, "admin")
    assert session.get("result", {}).get("uid") == 2, session
