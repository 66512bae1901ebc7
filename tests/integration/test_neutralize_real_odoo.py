"""Neutralization of databases that Odoo 17.0 and 18.0 initialised themselves.

Each test copies a database initialised with mail, base_automation, payment_stripe,
auth_oauth, google_calendar, microsoft_calendar and website (all of whose neutralize.sql
files apply, none needing the network to install), makes it look like production through
Odoo's own models (a mail server named by a template and a queued mail, a fetchmail server,
an automation rule calling a webhook and one receiving them, Stripe live, web push keys and
devices, OAuth, calendar tokens, a website domain, IAP, production's address), runs the
operator's statements as the tenant's role in one transaction, as the restore engine does,
and checks the result twice: in the tables, and through Odoo, which must send mail only to
the dummy server (not production's, not odoo.conf's), call no webhook, keep its scheduled
actions off, create IAP accounts disabled and show its neutralization banner.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from odoo_devstack.odoo_runtime import ODOO_VERSIONS, OdooDatabase, OdooRuntime, write_odoo_conf
from odoo_operator.builders.neutralize import (
    DUMMY_MAIL_SERVER_NAME,
    DUMMY_SMTP_HOST,
    DUMMY_SMTP_PORT,
    ROBOTS_DISALLOW_ALL,
    WEBHOOK_URL_MARKER,
    neutralization_statements,
)

if TYPE_CHECKING:
    # Only for annotations: importing the plugin module before pytest registers it would
    # keep pytest from rewriting its assertions.
    from odoo_devstack.pytest_fixtures import OdooDatabases, OdooRuntimes, OdooServers


# The first test of a session initialises the template database of its version (a minute
# or two, more on a loaded machine); the suite's 600 s per test would cut that short.
pytestmark = pytest.mark.timeout(1800)

MODULES = (
    "mail",
    "base_automation",
    "payment_stripe",
    "auth_oauth",
    "google_calendar",
    "microsoft_calendar",
    "website",
)
CLONE_URL = "https://staging.customer.example"
NEW_UUID = "0d4f9c3e-6a1b-4e2f-8c7d-5b3a2e1f0a9c"
# An SMTP server in odoo.conf: what Odoo would send through if no mail server were active.
CONF_SMTP_SERVER = "smtp.odoo-conf.example"

# Runs in the runtime's interpreter: the header opens the database through Odoo's registry
# as the superuser, the body (one of the two below) does its work and fills `out`, printed
# as the last line.
_HEADER = """
import json, socket, sys
import odoo
from odoo.modules.registry import Registry
odoo.tools.config.parse_config(["-c", sys.argv[1], "-d", sys.argv[2]])
given = json.loads(sys.argv[3])
out = {}
with Registry(sys.argv[2]).cursor() as cr:
    env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
    v17 = odoo.release.version_info[0] == 17
"""

# Production as a customer sets it up, through Odoo's models where they are simple, SQL for
# tokens that the models would try to use.
_PRODUCTION = """
    partner_model = env.ref("base.model_res_partner").id
    relay = env["ir.mail_server"].create({
        "name": "Customer relay", "smtp_host": "smtp.customer.example", "smtp_port": 587,
        "smtp_encryption": "starttls", "smtp_user": "erp@customer.example",
        "smtp_pass": "relay-password",
    })
    template = env["mail.template"].create({
        "name": "Reminder", "model_id": partner_model, "subject": "Reminder",
        "mail_server_id": relay.id,
    })
    queued = env["mail.mail"].create({
        "subject": "Your invoice", "email_to": "client@customer.example",
        "email_from": "erp@customer.example", "body_html": "<p>Please pay</p>",
        "mail_server_id": relay.id,
    })
    fetchmail = env["fetchmail.server"].create({
        "name": "Inbox", "server": "imap.customer.example", "server_type": "imap",
        "port": 993, "is_ssl": True, "user": "erp", "password": "imap-password",
    })
    rule = env["base.automation"].create({
        "name": "Tell the CRM", "model_id": partner_model, "trigger": "on_create_or_write",
    })
    webhook = env["ir.actions.server"].create({
        "name": "Push to CRM", "model_id": partner_model, "state": "webhook",
        "webhook_url": "https://crm.customer.example/hook", "base_automation_id": rule.id,
    })
    incoming = env["base.automation"].create({
        "name": "Orders from the shop", "model_id": partner_model, "trigger": "on_webhook",
    })
    stripe = env.ref("payment.payment_provider_stripe")
    stripe.write({
        "stripe_secret_key": "sk_live_customer", "stripe_publishable_key": "pk_live_customer",
        "stripe_webhook_secret": "whsec_customer", "state": "enabled",
    })
    env.ref("auth_oauth.provider_google").write({"enabled": True, "client_id": "customer-app"})
    if v17:
        iap = {"service_name": "sms"}
        device_model, push_model, push_device = (
            "mail.partner.device", "mail.notification.web.push", "user_device")
    else:
        iap = {"service_id": env["iap.service"].search([("technical_name", "=", "sms")]).id}
        device_model, push_model, push_device = (
            "mail.push.device", "mail.push", "mail_push_device_id")
    env["iap.account"].create({**iap, "account_token": "5f0c1e2d3a4b5c6d7e8f90a1b2c3d4e5"})
    device = env[device_model].sudo().create({
        "partner_id": env.ref("base.partner_admin").id,
        "endpoint": "https://push.customer.example/device",
        "keys": json.dumps({"p256dh": "device-key", "auth": "device-auth"}),
    })
    env[push_model].sudo().create({push_device: device.id, "payload": "{}"})
    parameters = env["ir.config_parameter"]
    for key, value in {
        "mail.web_push_vapid_private_key": "production-vapid-private",
        "mail.web_push_vapid_public_key": "production-vapid-public",
        "mail.sfu_server_key": "production-sfu",
        "recaptcha_public_key": "production-recaptcha-site",
        "recaptcha_private_key": "production-recaptcha-secret",
        "web.base.url": "https://erp.customer.example",
        "web.base.url.freeze": "True",
        "database.enterprise_code": "M24010112345678",
    }.items():
        parameters.set_param(key, value)
    admin = env.ref("base.user_admin").id
    cr.execute(
        "UPDATE res_users SET microsoft_calendar_token = 'ms-access', "
        "microsoft_calendar_rtoken = 'ms-refresh' WHERE id = %s", (admin,))
    if v17:
        cr.execute(
            "INSERT INTO google_calendar_credentials (calendar_token, calendar_rtoken, "
            "synchronization_stopped) VALUES ('g-access', 'g-refresh', false) RETURNING id")
        google = cr.fetchone()[0]
        cr.execute(
            "INSERT INTO microsoft_calendar_credentials (calendar_sync_token, "
            "synchronization_stopped, last_sync_date) VALUES ('ms-sync', false, now()) "
            "RETURNING id")
        microsoft = cr.fetchone()[0]
        cr.execute(
            "UPDATE res_users SET google_calendar_account_id = %s, "
            "microsoft_calendar_account_id = %s WHERE id = %s", (google, microsoft, admin))
    else:
        settings = env["res.users.settings"]._find_or_create_for_user(env.ref("base.user_admin"))
        cr.execute(
            "UPDATE res_users_settings SET google_calendar_token = 'g-access', "
            "google_calendar_rtoken = 'g-refresh', google_synchronization_stopped = false, "
            "microsoft_calendar_sync_token = 'ms-sync', microsoft_synchronization_stopped = false, "
            "microsoft_last_sync_date = now() WHERE id = %s", (settings.id,))
    cr.execute(
        "UPDATE website SET domain = 'https://www.customer.example', cdn_activated = true, "
        "robots_txt = 'User-agent: *'")
    cr.execute("UPDATE ir_cron SET active = true")
    out.update(
        relay=relay.id, template=template.id, queued=queued.id, fetchmail=fetchmail.id,
        rule=rule.id, webhook=webhook.id, incoming=incoming.id, stripe=stripe.id,
    )
"""

# What Odoo does with the neutralized database. Every connection and name lookup is refused
# and recorded, so that what Odoo tried to reach is known; nothing is committed.
_PROBE = """
    attempts = []
    def refuse_connection(address, *args, **kwargs):
        attempts.append(["connect", str(address[0]), int(address[1])])
        raise OSError("no network in this test")
    def refuse_lookup(host, port, *args, **kwargs):
        attempts.append(["lookup", str(host), port])
        raise socket.gaierror("no network in this test")
    socket.create_connection = refuse_connection
    socket.getaddrinfo = refuse_lookup

    server, _ = env["ir.mail_server"]._find_mail_server("erp@customer.example")
    out["chosen_server"] = [server.name, server.smtp_host] if server else None
    # Mail queued in production names the archived relay: Odoo refuses to use it.
    queued = env["mail.mail"].browse(given["queued"])
    queued.send(raise_exception=False)
    out["queued"] = [queued.state, queued.mail_server_id.smtp_host]
    # Mail from the template, which named the relay: it goes to the active server.
    partner = env.ref("base.main_partner")
    mail = env["mail.mail"].browse(env["mail.template"].browse(given["template"]).send_mail(
        partner.id, force_send=True,
        email_values={"email_to": "client@customer.example", "email_from": "erp@customer.example"}))
    out["template_mail"] = [mail.state, mail.mail_server_id.id]
    env["ir.actions.server"].browse(given["webhook"]).with_context(
        active_model="res.partner", active_id=partner.id, active_ids=[partner.id]).run()
    out["attempts"] = attempts

    # Odoo reads database.is_neutralized: a cron toggle must not reactivate the cron, and
    # a new IAP account must be created disabled.
    cron = env.ref("mail.ir_cron_mail_gateway_action")
    cron.toggle("res.partner", [])
    out["cron_active_after_toggle"] = cron.active
    if v17:
        iap = {"service_name": "sms"}
    else:
        iap = {"service_id": env["iap.service"].search([("technical_name", "=", "sms")]).id}
    out["new_iap_token"] = env["iap.account"].create(
        {**iap, "account_token": "00112233445566778899aabbccddeeff"}).account_token
    out["base_url"] = partner.get_base_url()
    cr.rollback()
"""


def run_in_odoo(
    runtime: OdooRuntime,
    database: OdooDatabase,
    body: str,
    given: dict[str, Any],
    workdir: Path,
) -> dict[str, Any]:
    """Run ``body`` in the runtime's interpreter against ``database``; its ``out``."""
    conf = write_odoo_conf(
        workdir / f"script-{uuid.uuid4().hex[:8]}.conf",
        {**database.odoo_options(runtime), "smtp_server": CONF_SMTP_SERVER, "smtp_port": 2525},
    )
    script = workdir / "script.py"
    script.write_text(_HEADER + body + "\nprint(json.dumps(out))\n")
    # Another Python's packages must not leak into the runtime's.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["PYTHONPATH"] = str(runtime.source_dir)
    result = subprocess.run(
        [str(runtime.python), str(script), str(conf), database.name, json.dumps(given)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=workdir,
        check=False,
    )
    assert result.returncode == 0, f"odoo {runtime.version} script failed:\n{result.stderr[-4000:]}"
    output: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return output


def rows(connection: psycopg.Connection, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Every row ``query`` answers."""
    return connection.execute(query, params).fetchall()


def neutralize_as_the_engine(dsn: str, *more: Iterable[str]) -> None:
    """Run the neutralization statements, then ``more`` (e.g. the anonymization's), as the
    restore engine runs them: the tenant's own role, one transaction."""
    with psycopg.connect(dsn) as connection, connection.transaction():
        for statement in itertools.chain(neutralization_statements(NEW_UUID, CLONE_URL), *more):
            connection.execute(statement)


@pytest.mark.parametrize("version", ODOO_VERSIONS)
def test_a_real_odoo_database_is_neutralized_and_odoo_behaves_so(
    odoo_runtimes: OdooRuntimes,
    odoo_databases: OdooDatabases,
    odoo_servers: OdooServers,
    tmp_path: Path,
    version: str,
) -> None:
    runtime = odoo_runtimes.get(version)
    database = odoo_databases.copy(version, MODULES)
    production = run_in_odoo(runtime, database, _PRODUCTION, {}, tmp_path)
    with psycopg.connect(database.dsn) as connection:
        before = dict(rows(connection, "SELECT key, value FROM ir_config_parameter"))
        assert rows(connection, "SELECT count(*) FROM ir_cron WHERE NOT active") == [(0,)]

    neutralize_as_the_engine(database.dsn)

    with psycopg.connect(database.dsn, autocommit=True) as connection:
        assert rows(
            connection, "SELECT name, smtp_host, smtp_port FROM ir_mail_server WHERE active"
        ) == [(DUMMY_MAIL_SERVER_NAME, DUMMY_SMTP_HOST, DUMMY_SMTP_PORT)]
        assert rows(
            connection,
            "SELECT mail_server_id FROM mail_template WHERE id = %s",
            production["template"],
        ) == [(None,)]
        assert rows(connection, "SELECT active FROM fetchmail_server") == [(False,)]
        assert rows(connection, "SELECT count(*) FROM ir_cron WHERE active") == [(0,)]
        assert rows(
            connection,
            "SELECT id, active FROM base_automation ORDER BY id",
        ) == [(production["rule"], False), (production["incoming"], False)]
        assert rows(
            connection, "SELECT webhook_url FROM ir_act_server WHERE state = 'webhook'"
        ) == [(WEBHOOK_URL_MARKER,)]
        assert rows(
            connection,
            "SELECT state, stripe_secret_key, stripe_publishable_key, stripe_webhook_secret"
            " FROM payment_provider WHERE id = %s",
            production["stripe"],
        ) == [("disabled", None, None, None)]
        assert rows(
            connection, "SELECT count(*) FROM payment_provider WHERE state <> 'disabled'"
        ) == [(0,)]
        assert rows(connection, "SELECT account_token FROM iap_account") == [
            ("5f0c1e2d3a4b5c6d7e8f90a1b2c3d4e5+disabled",)
        ]
        assert rows(connection, "SELECT count(*) FROM auth_oauth_provider WHERE enabled") == [(0,)]
        devices, pushes = (
            ("mail_partner_device", "mail_notification_web_push")
            if version == "17.0"
            else ("mail_push_device", "mail_push")
        )
        for table in (devices, pushes):
            assert rows(connection, f"SELECT count(*) FROM {table}") == [(0,)], table  # noqa: S608
        assert (
            rows(
                connection,
                "SELECT id FROM res_users WHERE microsoft_calendar_token IS NOT NULL"
                " OR microsoft_calendar_rtoken IS NOT NULL",
            )
            == []
        )
        if version == "17.0":
            calendars = [
                "SELECT calendar_token, calendar_rtoken, synchronization_stopped"
                " FROM google_calendar_credentials",
                "SELECT calendar_sync_token, last_sync_date, synchronization_stopped"
                " FROM microsoft_calendar_credentials",
            ]
        else:
            calendars = [
                "SELECT google_calendar_token, google_calendar_rtoken,"
                " google_synchronization_stopped FROM res_users_settings"
                " WHERE google_synchronization_stopped IS NOT NULL",
                "SELECT microsoft_calendar_sync_token, microsoft_last_sync_date,"
                " microsoft_synchronization_stopped FROM res_users_settings"
                " WHERE microsoft_synchronization_stopped IS NOT NULL",
            ]
        for query in calendars:
            # Every user's synchronization stops, not only the one that had tokens.
            assert set(rows(connection, query)) == {(None, None, True)}, query
        assert rows(connection, "SELECT domain, cdn_activated, robots_txt FROM website") == [
            (None, False, ROBOTS_DISALLOW_ALL)
        ]
        assert rows(
            connection,
            "SELECT key, active FROM ir_ui_view WHERE key LIKE '%%.neutralize_%%' ORDER BY key",
        ) == [("web.neutralize_banner", True), ("website.neutralize_ribbon", True)]
        after = dict(rows(connection, "SELECT key, value FROM ir_config_parameter"))
    for key in ("mail.web_push_vapid_private_key", "mail.web_push_vapid_public_key"):
        assert key not in after, key
    assert "mail.sfu_server_key" not in after
    assert "database.enterprise_code" not in after
    assert after["recaptcha_public_key"] == after["recaptcha_private_key"] == ""
    assert after["database.uuid"] == NEW_UUID != before["database.uuid"]
    assert after["database.secret"] != before["database.secret"]
    assert after["web.base.url"] == CLONE_URL
    assert after["database.is_neutralized"] == "true"

    # Odoo itself: mail goes to the dummy server only (neither production's relay nor the
    # smtp_server of odoo.conf), the webhook reaches nothing, the flag is read.
    probe = run_in_odoo(runtime, database, _PROBE, production, tmp_path)
    assert probe["chosen_server"] == [DUMMY_MAIL_SERVER_NAME, DUMMY_SMTP_HOST]
    assert probe["attempts"] == [["connect", DUMMY_SMTP_HOST, DUMMY_SMTP_PORT]]
    assert probe["queued"] == ["exception", "smtp.customer.example"]
    assert probe["template_mail"] == ["exception", False]
    assert probe["cron_active_after_toggle"] is False
    assert probe["new_iap_token"] == "00112233445566778899aabbccddeeff+disabled"
    assert probe["base_url"] == CLONE_URL

    # The banner, as the version shows it, on the pages Odoo serves.
    server = odoo_servers.serve(database)
    login = server.get("/web/login")
    assert login.status == 200, server.log_tail()
    assert b'id="oe_neutralize_banner"' in login.body
    home = server.get("/")
    assert home.status == 200, server.log_tail()
    assert b'id="oe_neutralize_ribbon"' in home.body
