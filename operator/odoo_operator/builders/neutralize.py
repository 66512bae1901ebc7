"""SQL that turns a restored copy of a tenant's Odoo database into a harmless staging clone.

A clone starts as a byte-for-byte copy of production: its mail servers would mail customers,
its fetchmail servers would take mail out of production's mailboxes, its scheduled actions
would post invoices and send reminders, its payment providers and terminals would charge
cards, its carriers would book shipments, its e-invoicing connections would file invoices
with tax authorities and its webhooks would call the customer's other systems.
:func:`neutralization_statements` switches all of that off and gives the clone its own
identity and address.

For Odoo 17.0 and 18.0 the list does at least what Odoo's own neutralization (``odoo-bin
neutralize``, which runs the ``data/neutralize.sql`` of every installed module) does for the
community modules, and more. tests/integration/test_neutralize.py reads those files out of
Odoo's source archives and fails when one touches a table or column that no statement here
touches, so a new Odoo version that neutralizes something new is noticed.

Everything here is pure: statements are composed with :mod:`psycopg.sql` and executed by the
caller, in one transaction, on a connection to the clone. Each statement is a ``DO`` block
that touches a table, and each column of it, only when it exists (a clone of a database
without the payment or website modules has no such tables, and 17.0 and 18.0 keep some
settings in different places), so the same list runs on any set of installed modules, on
every Odoo version this operator supports, and is harmless to run twice.

Decisions a reader of the list would ask about:

- every scheduled action is deactivated, Odoo's own autovacuum included (Odoo keeps that
  one): a staging clone that keeps some transient records longer is harmless, a rule with
  exceptions is not;
- outgoing mail servers are deactivated and one dummy server, pointing at the host name
  ``invalid`` (reserved, RFC 6761: it never resolves), is added and left active. Without an
  active server Odoo sends through the ``smtp_server`` of ``odoo.conf``; with the dummy
  every mail fails to connect. Mail templates lose their server, as Odoo has them do:
  Odoo refuses to send through an archived server, so their mail would fail with an error
  instead of going to the dummy. Mails already queued keep theirs and fail with that error;
- webhook server actions (table ``ir_act_server``) get a URL that is not a URL, as Odoo
  18 does, rather than an empty one: requests refuses it before connecting and Odoo only
  logs a warning, whereas an empty URL makes Odoo raise an error that would abort every
  write triggering the action. Automation rules triggered by an incoming webhook, or
  calling an outgoing one, are deactivated besides. The URL is gone from the clone only;
  the production database still has it;
- payment providers are all disabled, test mode included (Odoo leaves test providers on),
  and their credentials emptied; point-of-sale terminals are switched to test mode;
- carriers leave production mode; those calling a carrier's service are deactivated,
  fixed-price and rule-based ones are kept (they call nothing) on 17.0 too, where Odoo
  deactivates every carrier;
- e-invoicing proxy users are switched to test (Italy: demo) mode as Odoo does; a user that
  would then collide with another active user of the same company (or identification) and
  proxy type is archived first, where Odoo would stop on the unique index;
- credentials that Odoo replaces with a dummy rather than empties get
  :data:`PLACEHOLDER`, 16 characters: the Paytm terminal integration uses its key as an AES
  key, which must be 16, 24 or 32 bytes long;
- ``database.secret`` gets a new random value: Odoo signs sessions and access tokens with
  it, and a token made on staging must not be accepted by production;
- ``database.enterprise_code`` is removed and ``database.uuid`` replaced, so that the clone
  is not taken for production by Odoo's publisher and IAP;
- IAP account tokens (SMS, partner autocomplete, document digitization: services that send
  messages to customers and spend prepaid credits) get the suffix ``+disabled`` in place of
  any suffix they had, the form Odoo's own neutralization uses and its IAP service refuses;
  a token longer than IAP's current ones (an older format) is replaced altogether, as Odoo
  18 does;
- ``web.base.url`` becomes the clone's address, so that links, OAuth and payment return
  addresses built on staging point at staging; without a known address it gets the value
  of a new database and loses ``web.base.url.freeze``, so that Odoo records the real
  address at the first administrator's login, as it does on a new database;
- the neutralization banner is what Odoo 17.0 and 18.0 show when their ``web`` (and
  ``website``) neutralization views are active, so those views are activated;
  ``database.is_neutralized`` is set to ``true`` (the text Odoo stores), which both versions
  read as "neutralized": cron toggles no longer reactivate scheduled actions, and new IAP
  accounts are created disabled;
- outgoing-mail settings (``mail.catchall.domain``, ``mail.bounce.alias``,
  ``mail.default.from`` and, from Odoo 17, ``mail_alias_domain``) are left alone. They
  only shape mail that is sent, and nothing is sent through the dummy server; removing
  them would differ per version and change how staging renders mail for no safety gain;
- ``database.expiration_date`` is kept: without it and without the enterprise code, Odoo
  Enterprise counts the clone's trial from ``database.create_date``, which is production's,
  and may lock the clone at once;
- ``res_users`` keeps its passwords: users log in to staging with their production
  passwords. Only its Outlook calendar tokens are removed, as Odoo does.

What SQL cannot do, the caller must: render the clone's ``odoo.conf`` without
``smtp_server`` settings (the dummy server protects only while it stays the active one),
and run these statements as the tenant's own role rather than a superuser, since the
restored database is the tenant's data and any trigger in it runs with the caller's rights.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from .guarded_sql import SCHEMA, has_columns
from .guarded_sql import Delete as _Delete
from .guarded_sql import Update as _Update
from .guarded_sql import do_block as _do
from .guarded_sql import do_deletes as _do_deletes
from .guarded_sql import do_updates as _do_updates
from .guarded_sql import guarded_update as _guarded_update

NEUTRALIZED_FLAG = "database.is_neutralized"
# Odoo's own neutralization stores a boolean cast to text; get_param hands back the string,
# and every reader tests it for truth.
NEUTRALIZED_FLAG_VALUE = "true"
DATABASE_UUID = "database.uuid"
DATABASE_SECRET = "database.secret"  # noqa: S105 - the name of a parameter, not a secret
ENTERPRISE_CODE = "database.enterprise_code"
BASE_URL = "web.base.url"
BASE_URL_FREEZE = "web.base.url.freeze"
# What a new database gets (Odoo's default with its default HTTP port) when the clone's
# address is not known.
UNKNOWN_BASE_URL = "http://localhost:8069"
IAP_DISABLED_SUFFIX = "+disabled"
# IAP's tokens are 32 characters (a UUID's hex); Odoo 18 replaces longer ones outright.
IAP_TOKEN_MAX_LENGTH = 33
# The views whose activation shows Odoo's "neutralized" banner (web) and ribbon (website).
BANNER_VIEWS = ("web.neutralize_banner", "website.neutralize_ribbon")
DUMMY_MAIL_SERVER_NAME = "Neutralized clone: outgoing mail goes nowhere"
DUMMY_SMTP_HOST = "invalid"  # RFC 6761: a name that never resolves
DUMMY_SMTP_PORT = 1025  # unprivileged; what local mail catchers listen on
# No scheme: requests raises MissingSchema while preparing the request, before any lookup.
WEBHOOK_URL_MARKER = "webhook disabled by neutralization"
PLACEHOLDER = "neutralized-0000"  # 16 characters, see the module's docstring
# Mondial Relay's public test account: Odoo points neutralized carriers at it, padded to
# the eight characters of a brand code.
MONDIAL_RELAY_TEST_BRAND = "BDTEST  "
ROBOTS_DISALLOW_ALL = "User-agent: *\nDisallow: /\n"

# ir_config_parameter keys holding a third party's keys or endpoints.
WEB_PUSH_PARAMETERS = (
    "mail.web_push_vapid_private_key",
    "mail.web_push_vapid_public_key",
    "mail.sfu_server_key",
)
DELETED_SERVICE_PARAMETERS = (
    "website_jitsi.jitsi_server_domain",
    "cloud_storage_provider",
    "cloud_storage_azure_account_name",
    "cloud_storage_azure_container_name",
    "cloud_storage_azure_tenant_id",
    "cloud_storage_azure_client_id",
    "cloud_storage_azure_client_secret",
    "cloud_storage_google_bucket_name",
    "cloud_storage_google_account_info",
)
# Emptied rather than deleted, as Odoo does; an empty key turns the service off just the same.
BLANKED_SERVICE_PARAMETERS = (
    "recaptcha_public_key",
    "recaptcha_private_key",
    "cf.turnstile_site_key",
    "cf.turnstile_secret_key",
)


@dataclass(frozen=True)
class _Step:
    summary: str
    statement: sql.Composed


def neutralization_statements(
    new_database_uuid: str, base_url: str | None = None
) -> list[sql.Composed]:
    """The statements that neutralize a restored database, in the order to run them.

    ``new_database_uuid`` becomes the clone's ``database.uuid`` (Odoo's identity towards
    its publisher and IAP); any UUID spelling is accepted and it is written in Odoo's
    canonical lowercase form. ``base_url`` is the clone's own address (``https://host`` or
    ``http://host:port``), written to ``web.base.url``; ``None`` when it is not known (the
    command line's restore), in which case the clone gets a new database's value and Odoo
    learns the address at the first administrator's login. Raises :class:`ValueError` when
    either is malformed.

    Each statement matches the line of :func:`neutralization_summary` at the same index, so
    the caller can log what it runs. ``database.is_neutralized`` is set last: when the
    statements run in one transaction it is there exactly when all of them succeeded.
    ``database.secret`` uses ``gen_random_uuid()``, built into PostgreSQL 13 and later.
    """
    database_uuid = _canonical_uuid(new_database_uuid)
    url = None if base_url is None else _canonical_base_url(base_url)
    return [step.statement for step in _steps(database_uuid, url)]


def neutralization_summary(base_url: str | None = None) -> list[str]:
    """One human-readable line per statement of :func:`neutralization_statements`."""
    url = None if base_url is None else _canonical_base_url(base_url)
    # The lines do not depend on the UUID; any valid one builds them.
    return [step.summary for step in _steps(str(uuid.UUID(int=0)), url)]


def _steps(database_uuid: str, base_url: str | None) -> list[_Step]:
    return [
        *_mail_steps(),
        _Step(
            "all scheduled actions (ir_cron) deactivated, with no exception",
            _do_updates(_Update("ir_cron", "active", sql.SQL("FALSE"))),
        ),
        *_webhook_steps(),
        *_payment_steps(),
        *_external_service_steps(),
        _Step(
            f"IAP account tokens suffixed with {IAP_DISABLED_SUFFIX} (no SMS, no paid services)",
            _do_updates(_iap_tokens()),
        ),
        *_identity_steps(database_uuid, base_url),
        _Step(
            f"neutralization banner views ({', '.join(BANNER_VIEWS)}) activated",
            _do_updates(
                _Update(
                    "ir_ui_view",
                    "active",
                    sql.SQL("TRUE"),
                    _key_in(BANNER_VIEWS),
                    (("ir_ui_view", "key"),),
                )
            ),
        ),
        _Step(
            f"{NEUTRALIZED_FLAG} set to {NEUTRALIZED_FLAG_VALUE}",
            _set_parameter(NEUTRALIZED_FLAG, sql.Literal(NEUTRALIZED_FLAG_VALUE)),
        ),
    ]


def _mail_steps() -> list[_Step]:
    return [
        _Step(
            "outgoing mail servers (ir_mail_server) deactivated",
            # All of them, a dummy left by an earlier run included: the next step turns
            # exactly one dummy back on.
            _do_updates(_Update("ir_mail_server", "active", sql.SQL("FALSE"))),
        ),
        _Step(
            f"a dummy outgoing mail server to the host {DUMMY_SMTP_HOST!r} added and active, "
            "so that Odoo does not fall back to odoo.conf's smtp_server",
            _dummy_mail_server(),
        ),
        _Step(
            "mail templates (mail_template) no longer name a mail server",
            _do_updates(_Update("mail_template", "mail_server_id", sql.NULL)),
        ),
        _Step(
            "incoming mail servers (fetchmail_server) deactivated",
            _do_updates(_Update("fetchmail_server", "active", sql.SQL("FALSE"))),
        ),
        _Step(
            "web push: VAPID and SFU keys deleted, pending pushes and registered devices "
            "deleted (mail_notification_web_push, mail_partner_device; 18.0: mail_push, "
            "mail_push_device)",
            _do(
                sql.SQL(" ").join(
                    [
                        _delete_parameters(WEB_PUSH_PARAMETERS),
                        # Pending pushes first: they point at the devices.
                        _do_deletes(
                            _Delete("mail_notification_web_push"),
                            _Delete("mail_partner_device"),
                            _Delete("mail_push"),
                            _Delete("mail_push_device"),
                        ),
                    ]
                )
            ),
        ),
    ]


def _webhook_steps() -> list[_Step]:
    false = sql.SQL("FALSE")
    is_webhook = sql.SQL("{} = {}").format(sql.Identifier("state"), sql.Literal("webhook"))
    webhook_actions = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.Identifier("id"), sql.Identifier(SCHEMA, "ir_act_server"), is_webhook
    )
    return [
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
                    (
                        ("base_automation", "action_server_id"),
                        ("ir_act_server", "id"),
                        ("ir_act_server", "state"),
                    ),
                ),
                # From Odoo 17 a rule owns several server actions, which point back to it.
                _Update(
                    "base_automation",
                    "active",
                    false,
                    sql.SQL("{} IN (SELECT {} FROM {} WHERE {})").format(
                        sql.Identifier("id"),
                        sql.Identifier("base_automation_id"),
                        sql.Identifier(SCHEMA, "ir_act_server"),
                        is_webhook,
                    ),
                    (
                        ("base_automation", "id"),
                        ("ir_act_server", "base_automation_id"),
                        ("ir_act_server", "state"),
                    ),
                ),
            ),
        ),
        _Step(
            "webhook server actions (ir_act_server) given a URL that calls nothing",
            _do_updates(
                _Update(
                    "ir_act_server",
                    "webhook_url",
                    sql.Literal(WEBHOOK_URL_MARKER),
                    is_webhook,
                    (("ir_act_server", "state"),),
                )
            ),
        ),
    ]


def _payment_steps() -> list[_Step]:
    disabled = sql.Literal("disabled")
    true = sql.SQL("TRUE")
    placeholder = sql.Literal(PLACEHOLDER)
    return [
        _Step(
            "payment providers disabled, test mode included, and their credentials emptied "
            "(payment_provider; payment_acquirer before Odoo 16)",
            _do_updates(
                *_emptied("payment_provider", PAYMENT_PROVIDER_CREDENTIALS),
                *(
                    _Update("payment_provider", column, placeholder)
                    for column in PAYMENT_PROVIDER_PLACEHOLDERS
                ),
                _Update("payment_provider", "state", disabled),
                _Update("payment_acquirer", "state", disabled),
            ),
        ),
        _Step(
            "point-of-sale payment terminals (pos_payment_method) in test mode, "
            "their keys replaced",
            _do_updates(
                *(_Update("pos_payment_method", column, true) for column in POS_TEST_MODES),
                *(
                    _Update("pos_payment_method", column, placeholder)
                    for column in POS_PLACEHOLDERS
                ),
                # Mercado Pago's keys are replaced only where the terminal was set up, as
                # Odoo does: the placeholder would otherwise make it look configured.
                *(
                    _Update(
                        "pos_payment_method",
                        column,
                        placeholder,
                        sql.SQL("{} IS NOT NULL").format(sql.Identifier("mp_bearer_token")),
                        (("pos_payment_method", "mp_bearer_token"),),
                    )
                    for column in ("mp_webhook_secret_key", "mp_bearer_token")
                ),
            ),
        ),
        _Step(
            "carriers (delivery_carrier) out of production mode, those calling a carrier's "
            "service deactivated, Mondial Relay on its test brand",
            _do_updates(
                _Update("delivery_carrier", "prod_environment", sql.SQL("FALSE")),
                _Update(
                    "delivery_carrier",
                    "active",
                    sql.SQL("FALSE"),
                    sql.SQL("{} NOT IN ({}, {})").format(
                        sql.Identifier("delivery_type"),
                        sql.Literal("fixed"),
                        sql.Literal("base_on_rule"),
                    ),
                    (("delivery_carrier", "delivery_type"),),
                ),
                _Update(
                    "delivery_carrier", "mondialrelay_brand", sql.Literal(MONDIAL_RELAY_TEST_BRAND)
                ),
            ),
        ),
    ]


def _external_service_steps() -> list[_Step]:
    null, true, false = sql.NULL, sql.SQL("TRUE"), sql.SQL("FALSE")
    return [
        _Step(
            "calendar synchronization with Google and Outlook stopped, tokens removed "
            "(google/microsoft_calendar_credentials; 18.0: res_users_settings; res_users)",
            _do_updates(
                *_emptied("res_users", ("microsoft_calendar_token", "microsoft_calendar_rtoken")),
                # 17.0
                *_emptied(
                    "microsoft_calendar_credentials", ("calendar_sync_token", "last_sync_date")
                ),
                _Update("microsoft_calendar_credentials", "synchronization_stopped", true),
                *_emptied("google_calendar_credentials", ("calendar_rtoken", "calendar_token")),
                _Update("google_calendar_credentials", "synchronization_stopped", true),
                # 18.0
                *_emptied(
                    "res_users_settings",
                    (
                        "microsoft_calendar_sync_token",
                        "microsoft_last_sync_date",
                        "google_calendar_rtoken",
                        "google_calendar_token",
                    ),
                ),
                _Update("res_users_settings", "microsoft_synchronization_stopped", true),
                _Update("res_users_settings", "google_synchronization_stopped", true),
            ),
        ),
        _Step(
            "e-invoicing proxy users (account_edi_proxy_client_user) in test mode (Italy: "
            "demo), Malaysia's archived, colliding ones archived",
            _do_updates(*_edi_proxy_users()),
        ),
        _Step(
            "national e-invoicing and fiscal connections of companies (res_company) in test "
            "mode, their credentials removed",
            _do_updates(*_company_connections()),
        ),
        _Step(
            "websites (website) without their domains, CDN and search engines; "
            "Google Places key replaced",
            _do_updates(
                _Update("website", "domain", null),
                _Update("website", "cdn_activated", false),
                _Update("website", "robots_txt", sql.Literal(ROBOTS_DISALLOW_ALL)),
                _Update("website", "google_places_api_key", sql.Literal(PLACEHOLDER)),
            ),
        ),
        _Step(
            "OAuth login providers (auth_oauth_provider) disabled",
            _do_updates(_Update("auth_oauth_provider", "enabled", false)),
        ),
        _Step(
            "keys of captcha, video-call and cloud-storage services (ir_config_parameter) "
            "emptied or deleted",
            _do(
                sql.SQL(" ").join(
                    [
                        _blank_parameters(BLANKED_SERVICE_PARAMETERS),
                        _delete_parameters(DELETED_SERVICE_PARAMETERS),
                    ]
                )
            ),
        ),
        _Step(
            "certificate passwords (certificate_certificate, certificate_key) replaced",
            _do_updates(
                _Update("certificate_certificate", "pkcs12_password", sql.Literal(PLACEHOLDER)),
                _Update("certificate_key", "password", sql.Literal(PLACEHOLDER)),
            ),
        ),
    ]


def _identity_steps(database_uuid: str, base_url: str | None) -> list[_Step]:
    if base_url is None:
        address = _Step(
            f"{BASE_URL} set to {UNKNOWN_BASE_URL} and {BASE_URL_FREEZE} removed: Odoo records "
            "the clone's address at the first administrator's login",
            _do(
                sql.SQL(" ").join(
                    [
                        _set_parameter_body(BASE_URL, sql.Literal(UNKNOWN_BASE_URL)),
                        _delete_parameters((BASE_URL_FREEZE,)),
                    ]
                )
            ),
        )
    else:
        address = _Step(
            f"{BASE_URL} set to {base_url}", _set_parameter(BASE_URL, sql.Literal(base_url))
        )
    return [
        _Step(
            f"{DATABASE_UUID} set to the clone's new UUID",
            _set_parameter(DATABASE_UUID, sql.Literal(database_uuid)),
        ),
        _Step(
            f"{DATABASE_SECRET} replaced by a new random value",
            _set_parameter(DATABASE_SECRET, sql.SQL("pg_catalog.gen_random_uuid()::text")),
        ),
        _Step(f"{ENTERPRISE_CODE} removed", _do(_delete_parameters((ENTERPRISE_CODE,)))),
        address,
    ]


# Emptied (NULL) as Odoo empties them, per payment module: Adyen, Alipay, APS, AsiaPay,
# Authorize.net, Buckaroo, Flutterwave, Mercado Pago, Mollie, Nuvei, Ogone, PayPal, PayU
# Latam, PayUmoney, Razorpay (with and without OAuth), SIPS, Stripe, Worldline.
PAYMENT_PROVIDER_CREDENTIALS = (
    "adyen_merchant_account",
    "adyen_api_key",
    "adyen_hmac_key",
    "alipay_merchant_partner_id",
    "alipay_md5_signature_key",
    "alipay_seller_email",
    "aps_merchant_identifier",
    "aps_access_code",
    "aps_sha_request",
    "aps_sha_response",
    "asiapay_merchant_id",
    "asiapay_secure_hash_secret",
    "asiapay_secure_hash_function",
    "authorize_login",
    "authorize_transaction_key",
    "authorize_signature_key",
    "authorize_client_key",
    "buckaroo_website_key",
    "buckaroo_secret_key",
    "flutterwave_public_key",
    "flutterwave_secret_key",
    "flutterwave_webhook_secret",
    "mercado_pago_access_token",
    "mollie_api_key",
    "nuvei_merchant_identifier",
    "nuvei_site_identifier",
    "nuvei_secret_key",
    "ogone_pspid",
    "ogone_userid",
    "ogone_password",
    "ogone_shakey_in",
    "ogone_shakey_out",
    "paypal_email_account",
    "paypal_pdt_token",
    "paypal_client_id",
    "paypal_client_secret",
    "payulatam_merchant_id",
    "payulatam_account_id",
    "payulatam_api_key",
    "payumoney_merchant_key",
    "payumoney_merchant_salt",
    "razorpay_key_id",
    "razorpay_key_secret",
    "razorpay_webhook_secret",
    "razorpay_public_token",
    "razorpay_refresh_token",
    "razorpay_access_token",
    "razorpay_access_token_expiry",
    "razorpay_account_id",
    "sips_merchant_id",
    "sips_secret",
    "stripe_secret_key",
    "stripe_publishable_key",
    "stripe_webhook_secret",
    "worldline_pspid",
    "worldline_api_key",
    "worldline_api_secret",
    "worldline_webhook_key",
    "worldline_webhook_secret",
)
# Replaced rather than emptied, as Odoo does for Xendit.
PAYMENT_PROVIDER_PLACEHOLDERS = ("xendit_secret_key", "xendit_webhook_token")
POS_TEST_MODES = (
    "adyen_test_mode",
    "paytm_test_mode",
    "pine_labs_test_mode",
    "razorpay_test_mode",
    "viva_wallet_test_mode",
)
POS_PLACEHOLDERS = (
    "paytm_merchant_key",
    "pine_labs_merchant",
    "pine_labs_security_token",
    "razorpay_api_key",
)


def _company_connections() -> list[_Update]:
    """Per localisation: the switch to the authority's test service, then credentials."""
    true, false = sql.SQL("TRUE"), sql.SQL("FALSE")
    placeholder, empty = sql.Literal(PLACEHOLDER), sql.Literal("")
    hungary_production = sql.SQL("{} = {}").format(
        sql.Identifier("l10n_hu_edi_server_mode"), sql.Literal("production")
    )
    hungary = (("res_company", "l10n_hu_edi_server_mode"),)
    return [
        # Egypt (ETA)
        _Update("res_company", "l10n_eg_production_env", false),
        _Update("res_company", "l10n_eg_client_secret", placeholder),
        # Spain: SII (17.0 and 18.0 spell it differently), TicketBAI, Veri*factu
        _Update("res_company", "l10n_es_edi_test_env", true),
        _Update("res_company", "l10n_es_sii_test_env", true),
        _Update("res_company", "l10n_es_tbai_test_env", true),
        _Update("res_company", "l10n_es_edi_verifactu_test_environment", true),
        # Hungary: credentials, then the mode, only where the mode was production (the
        # credentials are read under the old mode, so they go first).
        *(
            _Update("res_company", column, empty, hungary_production, hungary)
            for column in (
                "l10n_hu_edi_username",
                "l10n_hu_edi_password",
                "l10n_hu_edi_signature_key",
                "l10n_hu_edi_replacement_key",
            )
        ),
        _Update(
            "res_company",
            "l10n_hu_edi_server_mode",
            sql.Literal("test"),
            hungary_production,
            hungary,
        ),
        # India: e-invoicing (the switch is in l10n_in from 18.0) and e-waybill
        _Update("res_company", "l10n_in_edi_production_env", false),
        *_emptied(
            "res_company",
            (
                "l10n_in_edi_username",
                "l10n_in_edi_password",
                "l10n_in_edi_token",
                "l10n_in_edi_token_validity",
                "l10n_in_edi_ewaybill_username",
                "l10n_in_edi_ewaybill_password",
                "l10n_in_edi_ewaybill_auth_validity",
            ),
        ),
        # Jordan (JoFotara)
        _Update("res_company", "l10n_jo_edi_secret_key", placeholder),
        _Update("res_company", "l10n_jo_edi_client_identifier", placeholder),
        # Kenya: the fiscal device's proxy
        _Update("res_company", "l10n_ke_cu_proxy_address", empty),
        # Malaysia (MyInvois)
        _Update("res_company", "l10n_my_edi_mode", sql.Literal("test")),
        # Romania (e-Factura)
        _Update("res_company", "l10n_ro_edi_test_env", true),
        *_emptied(
            "res_company",
            (
                "l10n_ro_edi_client_id",
                "l10n_ro_edi_client_secret",
                "l10n_ro_edi_access_token",
                "l10n_ro_edi_refresh_token",
            ),
        ),
        # Serbia (SEF)
        _Update("res_company", "l10n_rs_edi_demo_env", true),
        _Update("res_company", "l10n_rs_edi_api_key", placeholder),
        # Saudi Arabia (ZATCA)
        _Update("res_company", "l10n_sa_api_mode", sql.Literal("sandbox")),
        # Turkey (Nilvera)
        _Update("res_company", "l10n_tr_nilvera_environment", sql.Literal("sandbox")),
        *_emptied(
            "res_company", ("l10n_tr_nilvera_api_key", "l10n_tr_nilvera_purchase_journal_id")
        ),
        # Vietnam (Viettel SInvoice)
        _Update("res_company", "l10n_vn_edi_username", empty),
        _Update("res_company", "l10n_vn_edi_password", empty),
        # Gelato (print on demand, orders placed from sales)
        *_emptied("res_company", ("gelato_api_key", "gelato_webhook_secret")),
    ]


def _edi_proxy_users() -> list[_Update]:
    table = "account_edi_proxy_client_user"
    proxy_type, mode, active = (
        sql.Identifier("proxy_type"),
        sql.Identifier("edi_mode"),
        sql.Identifier("active"),
    )
    malaysia = sql.Literal("l10n_my_edi")
    # Italy's proxy has a demo mode that answers without the authority; others a test one.
    target = sql.SQL("CASE WHEN {} = {} THEN {} ELSE {} END").format(
        proxy_type, sql.Literal("l10n_it_edi"), sql.Literal("demo"), sql.Literal("test")
    )
    # Odoo keeps one active user per company and proxy type and mode, and per
    # identification and proxy type and mode (partial unique indexes). Once every mode is
    # the target, two active users of one group would collide: all but one are archived,
    # keeping one already in the target mode if there is one.
    collisions = [
        sql.SQL(
            "{id} IN (SELECT {id} FROM (SELECT {id}, pg_catalog.row_number() OVER ("
            "PARTITION BY {group}, {proxy_type} ORDER BY ({mode} = {target}) DESC, {id}) AS n "
            "FROM {table} WHERE {active} AND {proxy_type} <> {malaysia}) AS ranked "
            "WHERE n > 1)"
        ).format(
            id=sql.Identifier("id"),
            group=sql.Identifier(group),
            proxy_type=proxy_type,
            mode=mode,
            target=target,
            table=sql.Identifier(SCHEMA, table),
            active=active,
            malaysia=malaysia,
        )
        for group in ("company_id", "edi_identification")
    ]
    columns = tuple((table, column) for column in ("id", "proxy_type", "edi_mode", "active"))
    return [
        # Malaysia's proxy may hold a test and a production user at once (Odoo 18).
        _Update(
            table,
            "active",
            sql.SQL("FALSE"),
            sql.SQL("{} = {}").format(proxy_type, malaysia),
            (("account_edi_proxy_client_user", "proxy_type"),),
        ),
        _Update(
            table, "active", sql.SQL("FALSE"), collisions[0], (*columns, (table, "company_id"))
        ),
        _Update(
            table,
            "active",
            sql.SQL("FALSE"),
            collisions[1],
            (*columns, (table, "edi_identification")),
        ),
        _Update(
            table,
            "edi_mode",
            target,
            sql.SQL("{} <> {}").format(proxy_type, malaysia),
            ((table, "proxy_type"),),
        ),
    ]


def _iap_tokens() -> _Update:
    token = sql.Identifier("account_token")
    # The part before any suffix, then ours; an older, longer token is replaced outright.
    # A token that already ends in the suffix is unchanged, so _do_updates skips it.
    return _Update(
        "iap_account",
        "account_token",
        sql.SQL(
            "CASE WHEN pg_catalog.length(pg_catalog.split_part({token}, {plus}, 1)) > {limit} "
            "THEN {placeholder} ELSE pg_catalog.split_part({token}, {plus}, 1) END || {suffix}"
        ).format(
            token=token,
            plus=sql.Literal("+"),
            limit=sql.Literal(IAP_TOKEN_MAX_LENGTH),
            placeholder=sql.Literal(PLACEHOLDER),
            suffix=sql.Literal(IAP_DISABLED_SUFFIX),
        ),
    )


def _emptied(table: str, columns: Sequence[str]) -> list[_Update]:
    return [_Update(table, column, sql.NULL) for column in columns]


def _key_in(keys: Sequence[str]) -> sql.Composed:
    return sql.SQL("{} IN ({})").format(
        sql.Identifier("key"), sql.SQL(", ").join(sql.Literal(key) for key in keys)
    )


def _dummy_mail_server() -> sql.Composed:
    table = "ir_mail_server"
    values = {
        "name": sql.Literal(DUMMY_MAIL_SERVER_NAME),
        "smtp_host": sql.Literal(DUMMY_SMTP_HOST),
        "smtp_port": sql.Literal(DUMMY_SMTP_PORT),
        # 'login' with no user name: Odoo connects (and fails) without authenticating. Never
        # 'cli', which would take the server from odoo.conf.
        "smtp_authentication": sql.Literal("login"),
        "smtp_encryption": sql.Literal("none"),
    }
    is_dummy = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(column), value) for column, value in values.items()
    )
    columns = [*values, "active"]
    body = sql.SQL(
        "IF {exists} THEN "
        "UPDATE {table} SET active = TRUE WHERE id = "
        "(SELECT id FROM {table} WHERE {is_dummy} ORDER BY id LIMIT 1); "
        "IF NOT FOUND THEN INSERT INTO {table} ({columns}) VALUES ({values}, TRUE); END IF; "
        "END IF;"
    ).format(
        exists=has_columns([(table, column) for column in (*columns, "id")]),
        table=sql.Identifier(SCHEMA, table),
        is_dummy=is_dummy,
        columns=sql.SQL(", ").join(sql.Identifier(column) for column in columns),
        values=sql.SQL(", ").join(values.values()),
    )
    return _do(body)


def _set_parameter(key: str, value: sql.Composable) -> sql.Composed:
    return _do(_set_parameter_body(key, value))


def _set_parameter_body(key: str, value: sql.Composable) -> sql.Composed:
    # UPDATE, then INSERT when no row was there, rather than ON CONFLICT: it does not depend
    # on the unique constraint on key, which a damaged or hand-made database may lack.
    return sql.SQL(
        "IF {exists} THEN "
        "UPDATE {table} SET value = {value} WHERE key = {key}; "
        "IF NOT FOUND THEN INSERT INTO {table} (key, value) VALUES ({key}, {value}); END IF; "
        "END IF;"
    ).format(
        exists=has_columns((("ir_config_parameter", "key"), ("ir_config_parameter", "value"))),
        table=sql.Identifier(SCHEMA, "ir_config_parameter"),
        value=value,
        key=sql.Literal(key),
    )


def _delete_parameters(keys: Sequence[str]) -> sql.Composed:
    """A guarded DELETE of parameters, to be placed inside a DO block."""
    return sql.SQL("IF {exists} THEN DELETE FROM {table} WHERE {keys}; END IF;").format(
        exists=has_columns((("ir_config_parameter", "key"),)),
        table=sql.Identifier(SCHEMA, "ir_config_parameter"),
        keys=_key_in(keys),
    )


def _blank_parameters(keys: Sequence[str]) -> sql.Composed:
    """A guarded UPDATE emptying the parameters that exist, to be placed inside a DO block."""
    return _guarded_update(
        _Update(
            "ir_config_parameter",
            "value",
            sql.Literal(""),
            _key_in(keys),
            (("ir_config_parameter", "key"),),
        )
    )


def _canonical_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"new database UUID {value!r} is not a UUID") from None


# A DNS name or IPv4 address, optionally with a port; nothing else may follow the host.
_HOST_AND_PORT = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?")


def _canonical_base_url(value: str) -> str:
    """``scheme://host[:port]`` in lowercase, or ValueError: Odoo appends paths to it."""
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except (ValueError, TypeError, AttributeError):
        parts = None
    if (
        parts is None
        # urlsplit forgives surrounding blanks and drops tabs and line breaks; we do not.
        or value != "".join(value.split())
        or parts.scheme.lower() not in ("http", "https")
        or not _HOST_AND_PORT.fullmatch(parts.netloc.lower())
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            f"clone base URL {value!r} is not http(s)://host[:port] (no path, user or query)"
        )
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"
