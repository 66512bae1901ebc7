"""SQL that masks the personal data of a neutralized clone of a tenant's Odoo database.

A neutralized clone (:mod:`.neutralize`) sends nothing and calls nobody, but it still holds
every customer's name, e-mail address, phone number, address and bank account, every
employee's private data and every message ever exchanged. An anonymized clone keeps the
books and masks the people: :func:`anonymization_statements` runs after the neutralization,
in the same transaction, as the tenant's role.

How values are masked:

- **Deterministically per clone.** A value's mask is derived from the value and a salt drawn
  at random for each clone (``md5(salt || kind || key)``), so the same customer e-mail
  address becomes the same masked address on the partner, on the user and on every message,
  duplicates stay duplicates and joins on masked columns still match. The salt is never
  stored: without it, a mask cannot be traced back by hashing candidate values (phone
  numbers, for instance, are few enough to try them all). Keys are normalised by kind:
  e-mail addresses in lower case (the address inside ``"Name" <address>`` is what counts),
  phone numbers by their digits, account numbers and tax identifiers by their letters and
  digits, so ``+32 470 77 31 00`` and ``+32470773100`` mask alike.
- **Recognisably.** Names become ``Anonymized <10 hex>``, e-mail addresses
  ``anon-<16 hex>@anonymized.invalid`` (RFC 6761: the domain never resolves), phones
  ``+999 <10 digits>``, bank accounts ``XX00<16 hex>``, tax identifiers ``XX<10 hex>``,
  streets, cities and postal codes alike; free text (message bodies, notes, signatures,
  comments) is replaced altogether; dates of birth and other private dates are emptied.

What is kept, and why:

- **Accounting**: no amount, account, tax, date, journal entry number or reference is
  touched; only the partner's name printed on an invoice (``invoice_partner_display_name``)
  and the counterparty names and account numbers of bank statement lines are masked;
- **the company's own identity**: the partners of the tenant's companies (``res_company``)
  keep their names and addresses, being the tenant itself rather than a person;
- **the logins of Odoo's own users** (those declared by module ``base``: the administrator,
  the superuser, the public and template users) and those the caller names (the operator's
  monitoring user), so that the clone can be administered and probed; every other login is
  masked, so users sign in to an anonymized clone only through the administrator;
- **passwords** are not personal data and are left as they are (the masked logins make them
  unusable anyway).

Attachments: every attachment on a business record (a partner, an invoice, an employee, a
message...) is deleted from the database, with its extracted text: an invoice PDF or a
scanned identity card holds the very data masked elsewhere, and no SQL can mask a PDF.
Attachments of Odoo's own technical records (views, menus, modules, companies, countries,
languages, websites) and those on no record (web assets) are kept. The files of the deleted
attachments are removed from the clone's filestore by the restore (``prune_filestore``),
once the database no longer names them.

Tracked changes (``mail_tracking_value``) keep their numbers, dates and the records they
point to, and lose their text values: a tracked name or e-mail is text.

Everything here is pure and guarded like :mod:`.neutralize`: each statement touches a table
or column only when it exists, so it runs on any set of installed modules (contacts,
accounting, HR, CRM, calendar, payments...) and both supported Odoo versions.
docs/backup.md lists what is masked table by table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from psycopg import sql

from .guarded_sql import Delete, Update, do_block, do_deletes, do_updates

ANONYMIZED_EMAIL_DOMAIN = "anonymized.invalid"
ANONYMIZED_NAME_PREFIX = "Anonymized "
ANONYMIZED_TEXT = "[anonymized]"
ANONYMIZED_HTML = "<p>[anonymized]</p>"
# Odoo's own users, which keep their logins: the administrator signs in to the clone.
KEPT_USER_MODULE = "base"
# Models whose attachments are Odoo's own rather than a business record's.
TECHNICAL_ATTACHMENT_MODELS = (
    "res.company",
    "res.country",
    "res.lang",
    "res.currency",
    "website",
    "theme.ir.attachment",
)
TECHNICAL_MODEL_PREFIXES = ("ir.", "web_editor.", "theme.")
_SALT = re.compile(r"[0-9a-f]{32,128}")


@dataclass(frozen=True)
class _Masked:
    """How one kind of value is masked: a prefix, hex digits of the digest, a suffix."""

    kind: str
    key: str  # SQL template of the normalised key, {v} standing for the value
    template: str  # SQL template of the mask, {} standing for the digest (32 hex)


_NAME = _Masked("name", "{v}", "'Anonymized ' || pg_catalog.upper(pg_catalog.left({}, 10))")
_EMAIL = _Masked(
    "email",
    # The address inside "Name" <address> when there is one; lower case, no blanks.
    "pg_catalog.lower(pg_catalog.btrim(coalesce(pg_catalog.substring({v}, '<([^>]*)>'), {v})))",
    f"'anon-' || pg_catalog.left({{}}, 16) || '@{ANONYMIZED_EMAIL_DOMAIN}'",
)
_PHONE = _Masked(
    "phone",
    "pg_catalog.regexp_replace({v}, '[^0-9]', '', 'g')",
    "'+999 ' || pg_catalog.translate(pg_catalog.left({}, 10), 'abcdef', '012345')",
)
_ACCOUNT = _Masked(
    "account",
    "pg_catalog.upper(pg_catalog.regexp_replace({v}, '[^0-9A-Za-z]', '', 'g'))",
    "'XX00' || pg_catalog.upper(pg_catalog.left({}, 16))",
)
_TAX_ID = _Masked(
    "taxid",
    "pg_catalog.upper(pg_catalog.regexp_replace({v}, '[^0-9A-Za-z]', '', 'g'))",
    "'XX' || pg_catalog.upper(pg_catalog.left({}, 10))",
)
_CODE = _Masked("code", "{v}", "'ID-' || pg_catalog.upper(pg_catalog.left({}, 10))")
_STREET = _Masked("street", "{v}", "'Street ' || pg_catalog.upper(pg_catalog.left({}, 8))")
_CITY = _Masked("city", "{v}", "'City ' || pg_catalog.upper(pg_catalog.left({}, 6))")
_ZIP = _Masked("zip", "{v}", "pg_catalog.translate(pg_catalog.left({}, 5), 'abcdef', '012345')")
_LOGIN = _Masked("login", "{v}", "'user-' || pg_catalog.left({}, 12)")
_URL = _Masked(
    "url", "{v}", f"'https://' || pg_catalog.left({{}}, 12) || '.{ANONYMIZED_EMAIL_DOMAIN}'"
)


class Mask(Protocol):
    """The masking expression of a column, for one clone's salt."""

    def __call__(self, masked: _Masked, column: str = "") -> sql.Composed: ...


@dataclass(frozen=True)
class _Step:
    summary: str
    statement: sql.Composed


def anonymization_statements(salt: str, keep_logins: Sequence[str] = ()) -> list[sql.Composed]:
    """The statements that mask a neutralized clone's personal data, in the order to run them.

    ``salt`` is the clone's secret (32 to 128 lowercase hex digits, drawn at random for each
    clone and then forgotten); ``keep_logins`` are logins kept besides those of Odoo's own
    users. Raises :class:`ValueError` for a malformed salt. Each statement matches the line
    of :func:`anonymization_summary` at the same index.
    """
    if not _SALT.fullmatch(salt):
        raise ValueError("the anonymization salt must be 32 to 128 lowercase hex digits")
    return [step.statement for step in _steps(salt, tuple(keep_logins))]


def anonymization_summary() -> list[str]:
    """One human-readable line per statement of :func:`anonymization_statements`."""
    return [step.summary for step in _steps("0" * 32, ())]


def _steps(salt: str, keep_logins: tuple[str, ...]) -> list[_Step]:
    def mask(masked: _Masked, column: str = "") -> sql.Composed:
        return _mask(salt, masked, sql.Identifier(column))

    not_company = sql.SQL(
        "{id} NOT IN (SELECT {partner} FROM {companies} WHERE {partner} IS NOT NULL)"
    ).format(
        id=sql.Identifier("id"),
        partner=sql.Identifier("partner_id"),
        companies=sql.Identifier("public", "res_company"),
    )
    partner_requires = (("res_company", "partner_id"),)

    def partner(column: str, masked: _Masked | None) -> Update:
        value = sql.NULL if masked is None else mask(masked, column)
        return Update("res_partner", column, value, not_company, partner_requires)

    return [
        _Step(
            "partners (res_partner, but not the companies' own): names, e-mail addresses, "
            "phones, addresses, tax and company identifiers, websites, notes masked",
            do_updates(
                *(partner(column, _NAME) for column in ("name", "commercial_company_name")),
                partner("company_name", _NAME),
                *(partner(column, _EMAIL) for column in ("email", "email_normalized")),
                *(
                    partner(column, _PHONE)
                    for column in ("phone", "mobile", "phone_sanitized", "phone_mobile_search")
                ),
                *(partner(column, _STREET) for column in ("street", "street2")),
                partner("city", _CITY),
                partner("zip", _ZIP),
                # peppol_endpoint (18.0, e-invoicing): Odoo fills it from the VAT number.
                *(
                    partner(column, _TAX_ID)
                    for column in ("vat", "company_registry", "ref", "peppol_endpoint")
                ),
                partner("website", _URL),
                partner("function", _NAME),
                partner("barcode", None),
                partner("signup_token", None),
                _text("res_partner", "comment", ANONYMIZED_HTML, not_company, partner_requires),
                partner("partner_latitude", None),
                partner("partner_longitude", None),
            ),
        ),
        _Step(
            "partners' full names (res_partner.complete_name) rebuilt from the masked names",
            do_updates(_complete_name()),
        ),
        _Step(
            "bank accounts (res_partner_bank): account numbers and holders masked",
            do_updates(
                # Both from the sanitized number: the two stay the same account.
                Update(
                    "res_partner_bank",
                    "acc_number",
                    _mask(salt, _ACCOUNT, _coalesce("sanitized_acc_number", "acc_number")),
                    None,
                    (("res_partner_bank", "sanitized_acc_number"),),
                ),
                Update(
                    "res_partner_bank",
                    "sanitized_acc_number",
                    mask(_ACCOUNT, "sanitized_acc_number"),
                ),
                Update("res_partner_bank", "acc_holder_name", mask(_NAME, "acc_holder_name")),
            ),
        ),
        _Step(
            "users (res_users): logins masked except Odoo's own users' and the kept ones; "
            "signatures and OAuth identities removed",
            do_updates(
                Update("res_users", "login", mask(_LOGIN, "login"), _masked_login(keep_logins)),
                _text("res_users", "signature", ANONYMIZED_HTML),
                Update("res_users", "oauth_uid", sql.NULL),
                Update("res_users", "oauth_access_token", sql.NULL),
            ),
        ),
        _Step(
            "employees (hr_employee, resource_resource): names, private addresses and "
            "contacts, identity documents, dates of birth, family and emergency contacts",
            do_updates(*_employee_updates(mask)),
        ),
        _Step(
            "invoices and bank statements: the partner names printed on invoices "
            "(account_move.invoice_partner_display_name), statement lines' counterparty "
            "names and account numbers; amounts, accounts, taxes and dates untouched",
            do_updates(
                Update(
                    "account_move",
                    "invoice_partner_display_name",
                    mask(_NAME, "invoice_partner_display_name"),
                ),
                Update("account_bank_statement_line", "partner_name", mask(_NAME, "partner_name")),
                Update(
                    "account_bank_statement_line",
                    "account_number",
                    mask(_ACCOUNT, "account_number"),
                ),
                *(
                    Update("payment_transaction", column, masked_value)
                    for column, masked_value in (
                        ("partner_name", mask(_NAME, "partner_name")),
                        ("partner_email", mask(_EMAIL, "partner_email")),
                        ("partner_phone", mask(_PHONE, "partner_phone")),
                        ("partner_address", mask(_STREET, "partner_address")),
                        ("partner_city", mask(_CITY, "partner_city")),
                        ("partner_zip", mask(_ZIP, "partner_zip")),
                    )
                ),
            ),
        ),
        _Step(
            "messages and mail (mail_message, mail_mail, mail_notification, "
            "mail_tracking_value, mail_activity, discuss channels, guests): bodies, subjects "
            "and tracked text replaced, e-mail addresses masked",
            do_updates(*_mail_updates(mask)),
        ),
        _Step(
            "CRM leads and calendar events: contacts, addresses and descriptions masked",
            do_updates(*_crm_and_calendar_updates(mask)),
        ),
        _Step(
            "attachments of business records (ir_attachment) deleted, with their text; "
            "the restore then removes their files from the clone's filestore",
            do_block(
                do_deletes(Delete("ir_attachment", _business_attachment(), _ATTACHMENT_COLUMNS))
            ),
        ),
    ]


def _mask(salt: str, masked: _Masked, target: sql.Composable) -> sql.Composed:
    """The SQL expression masking ``target`` (a column), NULL and empty values kept as they are."""
    normalised = sql.SQL(masked.key).format(v=target)
    digest = sql.SQL("pg_catalog.md5({salt} || {kind} || {key})").format(
        salt=sql.Literal(salt), kind=sql.Literal(f":{masked.kind}:"), key=normalised
    )
    return sql.SQL("CASE WHEN {v} IS NULL OR {v}::text = '' THEN {v} ELSE {mask} END").format(
        v=target, mask=sql.SQL(masked.template).format(digest)
    )


def _coalesce(*columns: str) -> sql.Composed:
    return sql.SQL("coalesce({})").format(
        sql.SQL(", ").join(sql.Identifier(column) for column in columns)
    )


def _text(
    table: str,
    column: str,
    replacement: str,
    condition: sql.Composable | None = None,
    requires: tuple[tuple[str, str], ...] = (),
) -> Update:
    """Free text replaced outright where there is any."""
    value = sql.SQL("CASE WHEN {c} IS NULL OR {c}::text = '' THEN {c} ELSE {r} END").format(
        c=sql.Identifier(column), r=sql.Literal(replacement)
    )
    return Update(table, column, value, condition, requires)


def _complete_name() -> Update:
    # As Odoo computes it for the contact of a company: "<company>, <name>".
    value = sql.SQL(
        "CASE WHEN {parent} IS NOT NULL AND NOT coalesce({is_company}, FALSE) "
        "AND {name} IS NOT NULL THEN coalesce((SELECT p.{name} FROM {partners} p "
        "WHERE p.{id} = {partners}.{parent}) || ', ', '') || {name} ELSE {name} END"
    ).format(
        parent=sql.Identifier("parent_id"),
        is_company=sql.Identifier("is_company"),
        name=sql.Identifier("name"),
        id=sql.Identifier("id"),
        partners=sql.Identifier("public", "res_partner"),
    )
    return Update(
        "res_partner",
        "complete_name",
        value,
        None,
        (("res_partner", "parent_id"), ("res_partner", "is_company"), ("res_partner", "name")),
    )


def _masked_login(keep_logins: tuple[str, ...]) -> sql.Composed:
    kept_users = sql.SQL(
        "{id} NOT IN (SELECT {res_id} FROM {data} "
        "WHERE {model} = 'res.users' AND {module} = {base})"
    ).format(
        id=sql.Identifier("id"),
        res_id=sql.Identifier("res_id"),
        data=sql.Identifier("public", "ir_model_data"),
        model=sql.Identifier("model"),
        module=sql.Identifier("module"),
        base=sql.Literal(KEPT_USER_MODULE),
    )
    if not keep_logins:
        return kept_users
    return sql.SQL("{} AND {} NOT IN ({})").format(
        kept_users,
        sql.Identifier("login"),
        sql.SQL(", ").join(sql.Literal(login) for login in keep_logins),
    )


def _employee_updates(mask: Mask) -> list[Update]:
    employee = "hr_employee"
    masked: list[tuple[str, _Masked | None]] = [
        ("private_street", _STREET),
        ("private_street2", _STREET),
        ("private_city", _CITY),
        ("private_zip", _ZIP),
        ("private_email", _EMAIL),
        ("work_email", _EMAIL),
        ("private_phone", _PHONE),
        ("work_phone", _PHONE),
        ("mobile_phone", _PHONE),
        ("emergency_phone", _PHONE),
        ("emergency_contact", _NAME),
        ("spouse_complete_name", _NAME),
        ("identification_id", _CODE),
        ("passport_id", _CODE),
        ("ssnid", _CODE),
        ("sinid", _CODE),
        ("permit_no", _CODE),
        ("visa_no", _CODE),
        ("private_car_plate", _CODE),
        ("place_of_birth", _CITY),
        ("study_field", _CODE),
        ("study_school", _CODE),
        ("birthday", None),
        ("spouse_birthdate", None),
        ("visa_expire", None),
        ("permit_expire", None),
        ("barcode", None),
        ("pin", None),
    ]
    return [
        Update("resource_resource", "name", mask(_NAME, "name"), _is_employee_resource()),
        # A stored copy of its resource's name: masked alike, so the two still agree.
        Update(employee, "name", mask(_NAME, "name")),
        *(
            Update(employee, column, sql.NULL if kind is None else mask(kind, column))
            for column, kind in masked
        ),
        _text(employee, "notes", ANONYMIZED_TEXT),
        _text(employee, "additional_note", ANONYMIZED_TEXT),
        _text(employee, "job_title", ANONYMIZED_TEXT),
    ]


def _is_employee_resource() -> sql.Composed:
    # Resources are people (employees) or things (rooms, machines); only people are masked.
    return sql.SQL("{} = 'user'").format(sql.Identifier("resource_type"))


def _mail_updates(mask: Mask) -> list[Update]:
    updates = [
        _text("mail_message", "body", ANONYMIZED_HTML),
        _text("mail_message", "subject", ANONYMIZED_TEXT),
        _text("mail_message", "preview", ANONYMIZED_TEXT),
        Update("mail_message", "record_name", mask(_NAME, "record_name")),
        Update("mail_message", "email_from", mask(_EMAIL, "email_from")),
        Update("mail_message", "reply_to", mask(_EMAIL, "reply_to")),
        _text("mail_mail", "body_html", ANONYMIZED_HTML),
        _text("mail_mail", "email_to", f"anon@{ANONYMIZED_EMAIL_DOMAIN}"),
        _text("mail_mail", "email_cc", f"anon@{ANONYMIZED_EMAIL_DOMAIN}"),
        _text("mail_mail", "headers", ANONYMIZED_TEXT),
        _text("mail_notification", "failure_reason", ANONYMIZED_TEXT),
        _text("mail_notification", "mail_email_address", f"anon@{ANONYMIZED_EMAIL_DOMAIN}"),
        _text("mail_activity", "note", ANONYMIZED_HTML),
        _text("mail_activity", "summary", ANONYMIZED_TEXT),
        Update("mail_guest", "name", mask(_NAME, "name")),
        Update("mail_guest", "email", mask(_EMAIL, "email")),
        _text("discuss_channel", "description", ANONYMIZED_TEXT),
        # Chats and groups are named after their members.
        Update(
            "discuss_channel",
            "name",
            mask(_NAME, "name"),
            sql.SQL("{} IN ('chat', 'group')").format(sql.Identifier("channel_type")),
            (("discuss_channel", "channel_type"),),
        ),
    ]
    for column in ("old_value_char", "new_value_char", "old_value_text", "new_value_text"):
        updates.append(_text("mail_tracking_value", column, ANONYMIZED_TEXT))
    return updates


def _crm_and_calendar_updates(mask: Mask) -> list[Update]:
    lead = "crm_lead"
    return [
        *(Update(lead, column, mask(_NAME, column)) for column in ("contact_name", "partner_name")),
        *(
            Update(lead, column, mask(_EMAIL, column))
            for column in ("email_from", "email_normalized")
        ),
        *(
            Update(lead, column, mask(_PHONE, column))
            for column in ("phone", "mobile", "phone_sanitized")
        ),
        *(Update(lead, column, mask(_STREET, column)) for column in ("street", "street2")),
        Update(lead, "city", mask(_CITY, "city")),
        Update(lead, "zip", mask(_ZIP, "zip")),
        Update(lead, "website", mask(_URL, "website")),
        _text(lead, "description", ANONYMIZED_HTML),
        Update("calendar_attendee", "common_name", mask(_NAME, "common_name")),
        Update("calendar_attendee", "email", mask(_EMAIL, "email")),
        _text("calendar_event", "description", ANONYMIZED_HTML),
        _text("calendar_event", "location", ANONYMIZED_TEXT),
    ]


_ATTACHMENT_COLUMNS = (("ir_attachment", "res_model"), ("ir_attachment", "res_id"))


def _business_attachment() -> sql.Composed:
    res_model = sql.Identifier("res_model")
    technical_prefixes = sql.SQL(" OR ").join(
        sql.SQL("{} LIKE {}").format(res_model, sql.Literal(prefix.replace("_", "\\_") + "%"))
        for prefix in TECHNICAL_MODEL_PREFIXES
    )
    company_partner = sql.SQL(
        "({model} = 'res.partner' AND {res_id} IN "
        "(SELECT {partner} FROM {companies} WHERE {partner} IS NOT NULL))"
    ).format(
        model=res_model,
        res_id=sql.Identifier("res_id"),
        partner=sql.Identifier("partner_id"),
        companies=sql.Identifier("public", "res_company"),
    )
    return sql.SQL(
        "{model} IS NOT NULL AND {model} NOT IN ({models}) AND NOT ({prefixes}) "
        "AND NOT {company_partner}"
    ).format(
        model=res_model,
        models=sql.SQL(", ").join(sql.Literal(model) for model in TECHNICAL_ATTACHMENT_MODELS),
        prefixes=technical_prefixes,
        company_partner=company_partner,
    )
