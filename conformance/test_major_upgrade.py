"""A major upgrade, Odoo 17.0 to 18.0 with OpenUpgrade, through the operator on real Odoo.

A dedicated 17.0 tenant with ``account`` runs on the real node; its admin posts an invoice
and attaches a PDF. The spec then asks for 18.0 with a migration image:

1. first one whose migration raises (OpenUpgrade plus a ``base`` pre-migration made to
   fail): the upgrade Job fails for that reason, and the tenant comes back on 17.0 with the
   invoice and its PDF untouched;
2. then, retried with OpenUpgrade's own image, the upgrade runs on a copy, switches, and the
   tenant serves 18.0: the invoice has the same amounts, its PDF is served, and every file
   Odoo references is in the filestore the tenant reads after the switch;
3. last, a minor upgrade: a rebuilt 18.0 image updates every module on a copy.

The migration images are the real node's (``odoo_devstack.odoo_images``): 18.0's runtime with
OpenUpgrade's scripts as upgrade path and its framework loaded, as a platform would build one.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from e2e.tenants import GROUP, PLURAL, VERSION
from kubernetes import client

from conformance.tenants import (
    INVOICE_FIELDS,
    INVOICE_PDF,
    READY_TIMEOUT_SECONDS,
    PostedInvoice,
    Tenant,
    admin_session,
    eventually,
    filestore_claim_folder,
    instance,
    namespace_pods,
    pod_logs,
    post_invoice_with_pdf,
    signs_in,
    tenant_connection,
    wait_ready,
)
from odoo_devstack.odoo_images import (
    FAILING_MIGRATION_IMAGE,
    FAILING_MIGRATION_MESSAGE,
    MIGRATION_IMAGE,
    REBUILT_TAG_SUFFIX,
)
from odoo_devstack.podrunner.process import RealNodeProcess
from odoo_devstack.processes import ManagedProcess
from odoo_operator.model.upgrade import RETRY_UPGRADE_ANNOTATION

TENANT_PREFIX = "cfu"
TENANT_SPEC: dict[str, Any] = {"modules": ["account"]}
pytestmark = pytest.mark.parametrize(
    "tenant", ["17.0"], indirect=True, ids=["odoo17.0"], scope="module"
)
# A pre-upgrade backup Job, a copy and OpenUpgrade's -u all on the shared 2-core machine.
UPGRADE_TIMEOUT_SECONDS = 900.0
TARGET = "18.0"


@pytest.fixture(scope="module")
def conformance_operator(backup_conformance_operator: ManagedProcess) -> ManagedProcess:
    """The pre-upgrade backup runs as a Job on the real node, reading the real claim."""
    return backup_conformance_operator


@pytest.fixture(scope="module")
def invoice(k8s: client.ApiClient, tenant: Tenant) -> PostedInvoice:
    """The invoice and PDF posted on 17.0, before any upgrade."""
    return post_invoice_with_pdf(admin_session(k8s, tenant))


def _upgrade_to(k8s: client.ApiClient, name: str, migration_image: str, retry: str) -> None:
    client.CustomObjectsApi(k8s).patch_cluster_custom_object(
        GROUP,
        VERSION,
        PLURAL,
        name,
        {
            "metadata": {"annotations": {RETRY_UPGRADE_ANNOTATION: retry}},
            "spec": {"version": TARGET, "upgrade": {"migrationImage": migration_image}},
        },
    )


def _finished_upgrade(
    k8s: client.ApiClient,
    operator: ManagedProcess,
    name: str,
    retry: str,
    image: str | None = None,
) -> dict[str, Any]:
    """``status.upgrade`` once the attempt made for ``retry`` (to ``image``) is done or
    failed."""

    def finished() -> dict[str, Any] | None:
        assert operator.exit_code() is None, operator.log_tail()
        upgrade = (instance(k8s, name).get("status") or {}).get("upgrade") or {}
        if image is not None and (upgrade.get("to") or {}).get("image") != image:
            return None
        if upgrade.get("retry") == retry and upgrade.get("step") in ("done", "failed"):
            return dict(upgrade)
        return None

    found: dict[str, Any] = eventually(
        finished, f"the upgrade of {name} to finish", UPGRADE_TIMEOUT_SECONDS, poll=2.0
    )
    return found


def _serving(
    k8s: client.ApiClient, runner: RealNodeProcess, operator: ManagedProcess, tenant: Tenant
) -> None:
    wait_ready(k8s, runner, operator, tenant.name)
    eventually(lambda: signs_in(k8s, tenant), "the admin to sign in", READY_TIMEOUT_SECONDS)


def _check_invoice(k8s: client.ApiClient, tenant: Tenant, invoice: PostedInvoice) -> None:
    odoo = admin_session(k8s, tenant)
    [now] = odoo.call("account.move", "read", [[invoice.move], INVOICE_FIELDS])
    assert now == invoice.amounts
    served = odoo.get(invoice.download)
    assert (served.status, served.body) == (200, INVOICE_PDF), (served.status, served.body[:300])


def _base_version(postgres_dsn: str, tenant: Tenant) -> str:
    with tenant_connection(postgres_dsn, tenant) as connection:
        row = connection.execute(
            "SELECT latest_version FROM ir_module_module WHERE name = 'base'"
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_a_migration_that_raises_leaves_the_tenant_on_170_with_nothing_lost(
    k8s: client.ApiClient,
    real_node_runner: RealNodeProcess,
    conformance_operator: ManagedProcess,
    postgres_dsn: str,
    tenant: Tenant,
    invoice: PostedInvoice,
) -> None:
    started = time.monotonic()
    _upgrade_to(k8s, tenant.name, f"{FAILING_MIGRATION_IMAGE}:{TARGET}", "failing")
    upgrade = _finished_upgrade(k8s, conformance_operator, tenant.name, "failing")
    tenant.timings["failing major upgrade -> failed"] = time.monotonic() - started

    assert upgrade["step"] == "failed", upgrade
    assert "the upgrade Job failed" in upgrade["message"], upgrade
    # It failed for the reason it was made to: the migration raised inside Odoo.
    [job_pod] = namespace_pods(
        k8s, tenant.namespace, f"batch.kubernetes.io/job-name=odoo-upgrade-{upgrade['id']}"
    )
    logs = "\n".join(pod_logs(real_node_runner, job_pod).values())
    assert FAILING_MIGRATION_MESSAGE in logs, logs[-3000:]
    status = instance(k8s, tenant.name)["status"]
    assert status["runningVersion"] == "17.0", status
    assert _base_version(postgres_dsn, tenant).startswith("17.0."), "the tenant's database moved"

    _serving(k8s, real_node_runner, conformance_operator, tenant)
    _check_invoice(k8s, tenant, invoice)


def test_openupgrade_moves_the_tenant_to_180_with_its_invoice_and_files(
    k8s: client.ApiClient,
    real_node_runner: RealNodeProcess,
    conformance_operator: ManagedProcess,
    postgres_dsn: str,
    tenant: Tenant,
    invoice: PostedInvoice,
) -> None:
    started = time.monotonic()
    _upgrade_to(k8s, tenant.name, f"{MIGRATION_IMAGE}:{TARGET}", "openupgrade")
    upgrade = _finished_upgrade(k8s, conformance_operator, tenant.name, "openupgrade")
    tenant.timings["major upgrade 17.0 -> 18.0 (backup, copy, OpenUpgrade, switch)"] = (
        time.monotonic() - started
    )
    assert upgrade["step"] == "done", upgrade
    assert upgrade["filestore"] == "switched", upgrade
    serving = time.monotonic()
    _serving(k8s, real_node_runner, conformance_operator, tenant)
    tenant.timings["major upgrade done -> serving"] = time.monotonic() - serving

    status = instance(k8s, tenant.name)["status"]
    assert status["runningVersion"] == TARGET, status
    assert _base_version(postgres_dsn, tenant).startswith("18.0."), "not migrated"
    _check_invoice(k8s, tenant, invoice)
    # Every file the upgraded database references is where the tenant's pods read it,
    # including those the migration itself wrote.
    filestore = filestore_claim_folder(real_node_runner, tenant) / "filestore" / tenant.database
    with tenant_connection(postgres_dsn, tenant) as connection:
        stored = connection.execute(
            "SELECT store_fname, create_date >= %s FROM ir_attachment "
            "WHERE store_fname IS NOT NULL",
            (upgrade["startedAt"],),
        ).fetchall()
    missing = [name for name, _ in stored if not (filestore / name).is_file()]
    assert not missing, f"{len(missing)} of {len(stored)} files missing from {filestore}"
    assert invoice.store_fname in {name for name, _ in stored}
    written_during_upgrade = sum(1 for _, during in stored if during)
    print(f"\n{written_during_upgrade} of {len(stored)} attachments written by the upgrade")


def test_a_new_image_of_the_same_version_updates_every_module_on_a_copy(
    k8s: client.ApiClient,
    real_node_runner: RealNodeProcess,
    conformance_operator: ManagedProcess,
    postgres_dsn: str,
    tenant: Tenant,
    invoice: PostedInvoice,
) -> None:
    """A minor upgrade: the same Odoo version in a rebuilt image, ``-u all`` on a copy."""
    image = f"docker.io/library/odoo:{TARGET}{REBUILT_TAG_SUFFIX}"
    with tenant_connection(postgres_dsn, tenant) as connection:
        before = connection.execute(
            "SELECT max(write_date) FROM ir_module_module WHERE state = 'installed'"
        ).fetchone()
    started = time.monotonic()
    client.CustomObjectsApi(k8s).patch_cluster_custom_object(
        GROUP, VERSION, PLURAL, tenant.name, {"spec": {"image": image}}
    )
    upgrade = _finished_upgrade(k8s, conformance_operator, tenant.name, "openupgrade", image)
    tenant.timings["minor upgrade (backup, copy, -u all, switch)"] = time.monotonic() - started
    assert upgrade["step"] == "done", upgrade
    assert upgrade["from"]["version"] == upgrade["to"]["version"] == TARGET, upgrade
    _serving(k8s, real_node_runner, conformance_operator, tenant)
    assert instance(k8s, tenant.name)["status"]["runningImage"] == image
    with tenant_connection(postgres_dsn, tenant) as connection:
        after = connection.execute(
            "SELECT min(write_date) FROM ir_module_module WHERE state = 'installed'"
        ).fetchone()
    # Every installed module was updated by the upgrade Job (-u all), none left behind.
    assert before is not None
    assert after is not None
    assert after[0] > before[0], (before, after)
    _check_invoice(k8s, tenant, invoice)
