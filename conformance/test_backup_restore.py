"""Backup and in-place restore of a real Odoo tenant: an invoice and its PDF come back.

A dedicated tenant with ``account`` runs real Odoo 18.0 on the real node. The test signs in
as the tenant's admin, posts an invoice and attaches a PDF to it, takes an OdooBackup (as a
Job on the real node, reading the tenant's real filestore claim), then changes the invoice's
amount, deletes the attachment and lets Odoo's garbage collector remove its file. An
in-place OdooRestore must bring back both: the invoice with its amounts, and the PDF served
by Odoo again, its file back where the tenant's pods read it.

One Odoo version only: installing ``account`` and restoring cost minutes on the shared
development machine, and the operator's backup path does not depend on the version.
"""

from __future__ import annotations

import datetime
import os
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from e2e.tenants import GROUP, VERSION, create_backup, create_restore
from kubernetes import client
from psycopg import conninfo, sql

from conformance.tenants import (
    INVOICE_FIELDS,
    INVOICE_PDF,
    READY_TIMEOUT_SECONDS,
    Tenant,
    admin_session,
    authenticate,
    eventually,
    filestore_claim_folder,
    instance,
    pods,
    post_invoice,
    post_invoice_with_pdf,
    secret_values,
    signs_in,
    tenant_connection,
    wait_finished,
    wait_ready,
)
from odoo_devstack.podrunner.process import RealNodeProcess
from odoo_devstack.processes import ManagedProcess
from odoo_operator.builders.odoo_users import (
    ADMIN_PASSWORD_KEY,
    CREDENTIALS_SECRET,
    MONITOR_LOGIN,
    MONITOR_PASSWORD_KEY,
)

if TYPE_CHECKING:
    from odoo_devstack.pitr import ArchivedPostgres

TENANT_PREFIX = "cfb"
TENANT_SPEC: dict[str, Any] = {"modules": ["account"]}
# Only 18.0 (see the module's docstring); overrides the versions of the suite's fixture.
pytestmark = pytest.mark.parametrize(
    "tenant", ["18.0"], indirect=True, ids=["odoo18.0"], scope="module"
)
BACKUPS, RESTORES = "odoobackups", "odoorestores"
# A backup Job and a restore with its safety backup Job, on the shared 2-core machine.
FINISH_TIMEOUT_SECONDS = 900.0


@pytest.fixture(scope="module")
def conformance_operator(backup_conformance_operator: ManagedProcess) -> ManagedProcess:
    """This module's tenant is served by the operator that has a blob store and runs
    backups as Jobs on the real node."""
    return backup_conformance_operator


def test_an_in_place_restore_brings_back_a_posted_invoice_and_its_pdf_attachment(
    k8s: client.ApiClient,
    real_node_runner: RealNodeProcess,
    conformance_operator: ManagedProcess,
    tenant: Tenant,
) -> None:
    custom = client.CustomObjectsApi(k8s)
    odoo = admin_session(k8s, tenant)
    invoice = post_invoice_with_pdf(odoo)
    move, attachment, before = invoice.move, invoice.attachment, invoice.amounts
    # The file is on the real claim the pods mount: the backup must read it there.
    pdf_file = (
        filestore_claim_folder(real_node_runner, tenant)
        / "filestore"
        / tenant.database
        / invoice.store_fname
    )
    assert pdf_file.read_bytes() == INVOICE_PDF

    started = time.monotonic()
    backup = create_backup(custom, tenant.name)
    backed_up = wait_finished(custom, conformance_operator, BACKUPS, backup, FINISH_TIMEOUT_SECONDS)
    tenant.timings["backup"] = time.monotonic() - started
    assert backed_up["status"]["phase"] == "Succeeded", backed_up["status"]
    assert backed_up["status"]["execution"].startswith("Job "), backed_up["status"]
    # The books at backup time, read by the Job in the dump's snapshot: the one posted
    # invoice, balanced. The verification after the backup found them again.
    ledger = backed_up["status"]["ledger"]
    assert int(ledger["postedEntries"]) == 1, ledger
    assert float(ledger["postedTotal"]) == pytest.approx(before["amount_total"]), ledger
    assert float(ledger["postedDebitMinusCredit"]) == 0, ledger
    # Verified on request: restored into a scratch database, the books must be found again.
    custom.patch_cluster_custom_object(
        GROUP,
        VERSION,
        BACKUPS,
        backup,
        {"metadata": {"annotations": {"odoo.tenantops.io/verify": "books"}}},
    )

    def verification() -> dict[str, Any]:
        found = custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, backup)
        return dict((found.get("status") or {}).get("verification") or {})

    eventually(lambda: verification().get("request") == "books", "the verification", 600)
    assert verification()["result"] == "Passed", verification()
    assert "and the books (1 posted entries" in verification()["message"], verification()

    # The data changes after the backup: another amount, the attachment deleted and its
    # file collected by Odoo's autovacuum, as it would be by the nightly cron.
    lines = odoo.call("account.move", "read", [[move], ["invoice_line_ids"]])[0]
    odoo.call("account.move", "button_draft", [[move]])
    odoo.call(
        "account.move",
        "write",
        [[move], {"invoice_line_ids": [[1, lines["invoice_line_ids"][0], {"price_unit": 1.0}]]}],
    )
    odoo.call("ir.attachment", "unlink", [[attachment]])
    vacuum = odoo.call("ir.cron", "search", [[("model_id.model", "=", "ir.autovacuum")]])
    assert len(vacuum) == 1, vacuum
    odoo.call("ir.cron", "method_direct_trigger", [vacuum])
    assert not pdf_file.exists(), f"Odoo's autovacuum left {pdf_file}"
    [changed] = odoo.call("account.move", "read", [[move], INVOICE_FIELDS])
    assert changed["amount_untaxed"] == pytest.approx(3.0), changed

    started = time.monotonic()
    restore = f"rst-{uuid.uuid4().hex[:6]}"
    create_restore(custom, restore, {"backup": backup, "target": {"instance": tenant.name}})
    restored = wait_finished(
        custom, conformance_operator, RESTORES, restore, FINISH_TIMEOUT_SECONDS
    )
    tenant.timings["restore"] = time.monotonic() - started
    assert restored["status"]["phase"] == "Succeeded", restored["status"]
    assert restored["status"]["mode"] == "InPlace", restored["status"]
    assert restored["status"]["filestoreRestored"] is True, restored["status"]
    assert restored["status"]["filestoreJobs"].count("Job ") == 2, restored["status"]
    safety: Any = custom.get_cluster_custom_object(
        GROUP, VERSION, BACKUPS, restored["status"]["safetyBackup"]
    )
    assert safety["status"]["phase"] == "Succeeded", safety["status"]
    ready_from = time.monotonic()
    wait_ready(k8s, real_node_runner, conformance_operator, tenant.name)
    # Ready at once can be the old web pod not yet stopped; the one serving must be up.
    eventually(
        lambda: signs_in(k8s, tenant), "the restored tenant to sign in", READY_TIMEOUT_SECONDS
    )
    tenant.timings["restore Succeeded -> Ready and signing in"] = time.monotonic() - ready_from

    odoo = admin_session(k8s, tenant)
    [after] = odoo.call("account.move", "read", [[move], INVOICE_FIELDS])
    assert after == before
    found = odoo.call(
        "ir.attachment",
        "search_read",
        [[("res_model", "=", "account.move"), ("res_id", "=", move)], ["name", "store_fname"]],
    )
    assert [(f["id"], f["name"]) for f in found] == [(attachment, "invoice.pdf")], found
    served = odoo.get(invoice.download)
    assert (served.status, served.body) == (200, INVOICE_PDF), (served.status, served.body[:300])
    assert pdf_file.read_bytes() == INVOICE_PDF, (
        f"the restore did not put {pdf_file} back on the claim"
    )
    # What the restore replaced is kept in the tenant's volume, without the deleted PDF.
    kept = pdf_file.parents[2] / Path(restored["status"]["keptFilestore"]).name
    assert kept.is_dir(), restored["status"]
    assert not (kept / invoice.store_fname).exists()


# make bench-drill: the drill below with the tenant's database padded to this many MB first.
DRILL_PADDING_ENV = "ODOO_OPERATOR_BENCH_DRILL_PAD_MB"


def _pad_database(postgres_dsn: str, tenant: Tenant, megabytes: int) -> None:
    """A table of ``megabytes`` of distinct text (about 2:1 compressible, like real data),
    owned by the tenant's role so that its backups and restores carry it."""
    rows_per_chunk = 16_000  # about 16 MB of rows of about 1 kB
    chunks = max(1, megabytes // 16)
    with tenant_connection(postgres_dsn, tenant) as connection:
        connection.execute("CREATE TABLE bench_padding (id bigint PRIMARY KEY, payload text)")
        connection.execute(
            sql.SQL("ALTER TABLE bench_padding OWNER TO {}").format(sql.Identifier(tenant.database))
        )
        for chunk in range(chunks):
            connection.execute(
                "INSERT INTO bench_padding SELECT g, (SELECT string_agg(md5(g::text || '-' || i),"
                " '') FROM generate_series(1, 30) i)"
                " FROM generate_series(%s::bigint, %s::bigint) g",
                (chunk * rows_per_chunk + 1, (chunk + 1) * rows_per_chunk),
            )


def _database_megabytes(postgres_dsn: str, tenant: Tenant) -> float:
    with tenant_connection(postgres_dsn, tenant) as connection:
        row = connection.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return round(int(row[0]) / 2**20, 1)


def test_a_restore_drill_brings_the_whole_tenant_back_on_real_odoo_and_measures_its_rto(
    k8s: client.ApiClient,
    postgres_dsn: str,
    real_node_runner: RealNodeProcess,
    conformance_operator: ManagedProcess,
    tenant: Tenant,
) -> None:
    custom = client.CustomObjectsApi(k8s)
    # A recovery time objective makes the instance report its drills.
    custom.patch_cluster_custom_object(
        GROUP, VERSION, "odooinstances", tenant.name, {"spec": {"backup": {"rto": "30m"}}}
    )
    odoo = admin_session(k8s, tenant)
    post_invoice_with_pdf(odoo)
    padded_mb = int(os.environ.get(DRILL_PADDING_ENV) or 0)
    if padded_mb:
        started = time.monotonic()
        _pad_database(postgres_dsn, tenant, padded_mb)
        size = _database_megabytes(postgres_dsn, tenant)
        tenant.timings[f"padding the database to {size} MB"] = time.monotonic() - started
    backup = create_backup(custom, tenant.name)
    started = time.monotonic()
    backed_up = wait_finished(custom, conformance_operator, BACKUPS, backup, FINISH_TIMEOUT_SECONDS)
    tenant.timings["backup before the drill"] = time.monotonic() - started
    assert backed_up["status"]["phase"] == "Succeeded", backed_up["status"]
    ledger = backed_up["status"]["ledger"]
    assert int(ledger["postedEntries"]) >= 1, ledger

    drill = f"drill-of-{uuid.uuid4().hex[:6]}"
    create_restore(custom, drill, {"backup": backup, "drill": True})
    done = wait_finished(custom, conformance_operator, RESTORES, drill, FINISH_TIMEOUT_SECONDS)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    found = status["drill"]
    tenant.timings["drill RTO (start to serving)"] = float(found["rtoSeconds"])
    started_at = datetime.datetime.fromisoformat(status["startedAt"])
    for phase in ("provisionedAt", "restoredAt", "servingAt"):
        moment = datetime.datetime.fromisoformat(found[phase])
        tenant.timings[f"drill start -> {phase}"] = (moment - started_at).total_seconds()
    assert (status["mode"], found["result"], found["source"]) == ("Drill", "Passed", tenant.name)
    assert 0 < float(found["rtoSeconds"]) <= float(found["rtoObjectiveSeconds"]) == 1800, found
    # Restored, neutralized, into a tenant of its own; nothing of the source was replaced.
    assert status["neutralized"] is True, status
    assert "safetyBackup" not in status, status
    assert status["filestoreRestored"] is True, status
    # The books recorded at backup time were found again in the restored database.
    assert found["invariantsHold"] is True, found
    invariants = found["invariants"]
    for figure in ("postedEntries", "postedTotal", "postedDebitMinusCredit"):
        assert invariants[figure]["expected"] == ledger[figure], invariants
        assert invariants[figure]["holds"] is True, invariants
    assert invariants["rows.ir_attachment"]["holds"] is True, invariants
    assert int(invariants["rows.ir_attachment"]["found"]) >= 1, invariants

    # The drill tenant is gone with its namespace and database.
    drill_tenant = found["instance"]
    drill_database = f"odoo_{drill_tenant.replace('-', '_')}"

    def removed() -> bool:
        try:
            custom.get_cluster_custom_object(GROUP, VERSION, "odooinstances", drill_tenant)
            return False
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        with psycopg.connect(postgres_dsn, autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_database WHERE datname = %s", (drill_database,)
            ).fetchone()
        return row is not None and row[0] == 0

    eventually(removed, f"the drill tenant {drill_tenant} and its database to be removed", 600)

    # The instance says so, and the source tenant serves as before.
    def reported() -> dict[str, Any]:
        return dict(instance(k8s, tenant.name).get("status") or {})

    eventually(
        lambda: (reported().get("lastDrill") or {}).get("name") == drill,
        "the instance's status.lastDrill",
        120,
    )
    conditions = {c["type"]: c for c in reported()["conditions"]}
    assert conditions["RestoreDrillPassed"]["status"] == "True", conditions["RestoreDrillPassed"]
    assert conditions["RestoreDrillPassed"]["reason"] == "DrillPassed"
    assert reported()["lastDrill"]["result"] == "Passed"
    assert signs_in(k8s, tenant)


# Personal data planted in the source tenant, none of which may reach an anonymized clone.
CUSTOMER_EMAIL = "quokka.customer@conformance.example"
CUSTOMER_PHONE = "+32 470 77 31 00"
CUSTOMER_STREET = "7731 Quokka Lane"


def test_an_anonymized_clone_into_a_development_tenant_keeps_the_books_not_the_people(
    k8s: client.ApiClient,
    postgres_dsn: str,
    real_node_runner: RealNodeProcess,
    conformance_operator: ManagedProcess,
    tenant: Tenant,
    make_tenant: Callable[[str, str, dict[str, Any]], AbstractContextManager[Tenant]],
) -> None:
    """A backup of the tenant restored into a development tenant (anonymized by default):
    the customer's name, e-mail, phone and address are masked, the invoice's PDF is gone from
    the database and from the clone's filestore, every invoice total is unchanged, and the
    clone answers to its own admin and monitoring passwords, not to the source's."""
    custom = client.CustomObjectsApi(k8s)
    odoo = admin_session(k8s, tenant)
    invoice = post_invoice_with_pdf(odoo)
    [customer] = odoo.call("account.move", "read", [[invoice.move], ["partner_id"]])
    odoo.call(
        "res.partner",
        "write",
        [
            [customer["partner_id"][0]],
            {"email": CUSTOMER_EMAIL, "phone": CUSTOMER_PHONE, "street": CUSTOMER_STREET},
        ],
    )
    with tenant_connection(postgres_dsn, tenant) as connection:
        books = connection.execute(
            "SELECT id, name, amount_untaxed, amount_tax, amount_total, amount_residual"
            " FROM account_move ORDER BY id"
        ).fetchall()
    backup = create_backup(custom, tenant.name)
    backed_up = wait_finished(custom, conformance_operator, BACKUPS, backup, FINISH_TIMEOUT_SECONDS)
    assert backed_up["status"]["phase"] == "Succeeded", backed_up["status"]

    with make_tenant(
        tenant.version, "cfd", {**TENANT_SPEC, "environment": "development"}
    ) as development:
        clone = f"anonymized-{uuid.uuid4().hex[:6]}"
        create_restore(
            custom,
            clone,
            {
                "backup": backup,
                "target": {"instance": development.name},
                "fromInstance": tenant.name,
            },
        )
        started = time.monotonic()
        done = wait_finished(custom, conformance_operator, RESTORES, clone, FINISH_TIMEOUT_SECONDS)
        development.timings["anonymized clone restore"] = time.monotonic() - started
        status = done["status"]
        assert status["phase"] == "Succeeded", status
        assert (status["mode"], status["neutralized"], status["anonymized"]) == (
            "Clone",
            True,
            True,
        ), status
        assert status["message"].startswith("anonymized clone of backup"), status

        with tenant_connection(postgres_dsn, development) as connection:
            # The books, to the cent; the people, masked.
            assert (
                connection.execute(
                    "SELECT id, name, amount_untaxed, amount_tax, amount_total, amount_residual"
                    " FROM account_move ORDER BY id"
                ).fetchall()
                == books
            )
            [(name, email, phone, street)] = connection.execute(
                "SELECT name, email, phone, street FROM res_partner WHERE id = %s",
                (customer["partner_id"][0],),
            ).fetchall()
            assert name.startswith("Anonymized "), name
            assert email.endswith("@anonymized.invalid"), email
            assert phone.startswith("+999 "), phone
            assert street.startswith("Street "), street
            assert connection.execute(
                "SELECT count(*) FROM ir_attachment WHERE res_model = 'account.move'"
            ).fetchone() == (0,)
        filestore = filestore_claim_folder(real_node_runner, development)
        clone_files = filestore / "filestore" / development.database
        assert clone_files.is_dir(), sorted(filestore.rglob("*"))[:20]
        assert not (clone_files / invoice.store_fname).exists()

        # The clone answers to its own credentials: the admin's and the monitoring user's.
        wait_ready(k8s, real_node_runner, conformance_operator, development.name)
        eventually(lambda: signs_in(k8s, development), "the clone's admin to sign in", 120)
        web = str(pods(k8s, development.namespace, "web")[0].status.pod_ip)
        own = secret_values(k8s, development.namespace, CREDENTIALS_SECRET)
        source = secret_values(k8s, tenant.namespace, CREDENTIALS_SECRET)
        monitor = authenticate(web, development.database, MONITOR_LOGIN, own[MONITOR_PASSWORD_KEY])
        assert (monitor.get("result") or {}).get("uid"), monitor
        with_source_password = authenticate(
            web, development.database, "admin", source[ADMIN_PASSWORD_KEY]
        )
        assert not (with_source_password.get("result") or {}).get("uid"), with_source_password


def test_a_real_odoo_tenant_recovered_to_a_noted_time_keeps_the_invoices_posted_before_it(
    k8s: client.ApiClient,
    real_node_runner: RealNodeProcess,
    conformance_operator: ManagedProcess,
    archived_postgres: ArchivedPostgres,
    make_tenant: Callable[[str, str, dict[str, Any]], AbstractContextManager[Tenant]],
    tenant: Tenant,  # the module's parametrization names it; this test makes its own
) -> None:
    """Point-in-time recovery on real Odoo 18.0: a tenant on the server whose WAL is
    archived posts an invoice with its PDF, is backed up, posts another invoice, and the time
    is noted; then a bad run posts a wrong invoice and resets the first to draft. An in-place
    OdooRestore to the noted time gives back both good invoices, posted, with their amounts,
    the PDF of the first, and no trace of the bad run, through Odoo itself."""
    assert archived_postgres.server is not None
    custom = client.CustomObjectsApi(k8s)
    spec = {**TENANT_SPEC, "database": {"serverRef": "archived"}}
    del tenant
    with make_tenant("18.0", "cfp", spec) as archived_tenant:
        odoo = admin_session(k8s, archived_tenant)
        first = post_invoice_with_pdf(odoo)
        backup = create_backup(custom, archived_tenant.name)
        backed_up = wait_finished(
            custom, conformance_operator, BACKUPS, backup, FINISH_TIMEOUT_SECONDS
        )
        assert backed_up["status"]["phase"] == "Succeeded", backed_up["status"]
        # After the backup: only the WAL archive has it.
        second = post_invoice(odoo, "Customer after the backup", 250.0)
        good = odoo.call(
            "account.move", "read", [[first.move, second], ["name", "state", "amount_total"]]
        )
        database = conninfo.make_conninfo(
            archived_postgres.server.dsn, dbname=archived_tenant.database
        )
        with psycopg.connect(database, autocommit=True) as connection:
            time.sleep(1)
            noted_row = connection.execute("SELECT now()").fetchone()
            assert noted_row is not None
            time.sleep(1)
        noted: datetime.datetime = noted_row[0]
        # The bad run: a wrong invoice posted, the first one reset to draft.
        wrong = post_invoice(odoo, "Wrong customer", 999999.0)
        odoo.call("account.move", "button_draft", [[first.move]])

        restore = f"back-to-{uuid.uuid4().hex[:6]}"
        started = time.monotonic()
        create_restore(
            custom,
            restore,
            {
                "pointInTime": noted.isoformat().replace("+00:00", "Z"),
                "target": {"instance": archived_tenant.name},
            },
        )
        done = wait_finished(
            custom, conformance_operator, RESTORES, restore, FINISH_TIMEOUT_SECONDS
        )
        archived_tenant.timings["point-in-time restore (in place, with safety backup)"] = (
            time.monotonic() - started
        )
        status = done["status"]
        assert status["phase"] == "Succeeded", status
        assert status["filestoreFrom"] == backed_up["status"]["backupId"]
        recovered_to = datetime.datetime.fromisoformat(status["recoveredTo"].replace("Z", "+00:00"))
        assert recovered_to <= noted

        # Through Odoo: both good invoices posted as they were, the wrong one gone, the PDF back.
        wait_ready(k8s, real_node_runner, conformance_operator, archived_tenant.name)
        eventually(
            lambda: signs_in(k8s, archived_tenant), "the admin to sign in after the restore", 180
        )
        odoo = admin_session(k8s, archived_tenant)
        after = odoo.call(
            "account.move", "read", [[first.move, second], ["name", "state", "amount_total"]]
        )
        assert after == good
        assert odoo.call("account.move", "search", [[["id", "=", wrong]]]) == []
        served = odoo.get(first.download)
        assert (served.status, served.body) == (200, INVOICE_PDF), served
