"""Upgrades through the cluster: a pre-upgrade backup, the upgrade on a copy, the switch,
the health gate and the rollback. KWOK decides how the pods fare: an image named
FAILING_IMAGE fails its Job, NEVER_READY_IMAGE never becomes ready.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import psycopg
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from psycopg import sql

from e2e.tenants import (
    GROUP,
    PLURAL,
    UPGRADE_INTERVAL_SECONDS,
    VERSION,
    NewTenant,
    eventually,
    tenant_login,
    wait_ready,
)
from odoo_devstack.binaries import FAILING_IMAGE, NEVER_READY_IMAGE
from odoo_devstack.processes import ManagedProcess

NEW_IMAGE = "docker.io/library/odoo:18.0-20261120"
TENANT_PREFIX = "upg"
TENANT_SPEC = {"backup": {"verify": "Never"}, "deletionPolicy": "Delete"}


@pytest.fixture
def custom(k8s: client.ApiClient) -> client.CustomObjectsApi:
    """The API of OdooInstances."""
    return client.CustomObjectsApi(k8s)


def _seed(login: str) -> None:
    with psycopg.connect(login, autocommit=True) as db:
        db.execute("CREATE TABLE account_move (id serial PRIMARY KEY, name text, amount numeric)")
        db.execute(
            "INSERT INTO account_move (name, amount)"
            " SELECT 'INV/' || g, g * 10.5 FROM generate_series(1, 200) g"
        )


def _content_checksum(login: str) -> str:
    """A digest of every row of every table in the public schema."""
    with psycopg.connect(login) as db:
        tables = [
            row[0]
            for row in db.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            ).fetchall()
        ]
        digests = []
        for table in tables:
            query = sql.SQL(
                "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"
            ).format(sql.Identifier(table))
            digests.append(f"{table}:{db.execute(query).fetchone()}")
    return ",".join(digests)


def _instance(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    found: dict[str, Any] = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    return found


def _wait_step(
    custom: client.CustomObjectsApi, name: str, steps: tuple[str, ...], timeout: float = 120
) -> dict[str, Any]:
    def reached() -> bool:
        upgrade = (_instance(custom, name).get("status") or {}).get("upgrade") or {}
        return upgrade.get("step") in steps

    eventually(reached, f"upgrade of {name} reaching {steps}", timeout)
    return _instance(custom, name)


def _web_image(k8s: client.ApiClient, name: str) -> str:
    web = client.AppsV1Api(k8s).read_namespaced_deployment("odoo-web", f"odoo-{name}")
    return str(web.spec.template.spec.containers[0].image)


def _condition(instance: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in instance["status"]["conditions"] if c["type"] == type_)


def _set_image(custom: client.CustomObjectsApi, name: str, image: str, **spec: Any) -> None:
    custom.patch_cluster_custom_object(
        GROUP, VERSION, PLURAL, name, {"spec": {"image": image, **spec}}
    )


def _filestore_job(k8s: client.ApiClient, name: str, job: str) -> tuple[str, dict[str, str]]:
    """The image and directory names of a filestore Job, which must have completed."""
    found = client.BatchV1Api(k8s).read_namespaced_job(job, f"odoo-{name}")
    assert (found.status.succeeded or 0) >= 1, found.status
    container = found.spec.template.spec.containers[0]
    return str(container.image), {item.name: str(item.value) for item in container.env}


def test_a_same_major_image_change_is_upgraded_on_a_copy_and_switched_in(
    k8s: client.ApiClient,
    custom: client.CustomObjectsApi,
    new_tenant: NewTenant,
    operator: ManagedProcess,
    postgres_dsn: str,
) -> None:
    name = new_tenant()
    login = tenant_login(k8s, postgres_dsn, name)
    _seed(login)
    before = _content_checksum(login)

    _set_image(custom, name, NEW_IMAGE)
    instance = _wait_step(custom, name, ("done", "failed"))
    upgrade = instance["status"]["upgrade"]
    assert upgrade["step"] == "done", upgrade
    assert instance["status"]["runningImage"] == NEW_IMAGE
    backup = custom.get_cluster_custom_object(GROUP, VERSION, "odoobackups", upgrade["backup"])
    assert (backup["spec"]["reason"], backup["status"]["phase"]) == ("pre-upgrade", "Succeeded")
    assert _content_checksum(login) == before  # the upgraded copy holds the same data
    assert _database_exists(postgres_dsn, upgrade["kept"])
    # The copy's filestore was moved into the tenant's place before the pods came back, the
    # previous one beside the previous database (tests/integration/test_upgrade_filestore.py
    # runs that Job's command under a real Odoo).
    assert upgrade["filestore"] == "switched"
    database = f"odoo_{name.replace('-', '_')}"
    image, names = _filestore_job(k8s, name, f"odoo-upgrade-{upgrade['id']}-filestore")
    assert image == NEW_IMAGE
    assert (names["LIVE"], names["INCOMING"], names["ASIDE"]) == (
        database,
        upgrade["copy"],
        upgrade["kept"],
    )
    wait_ready(custom, name, operator)
    assert _web_image(k8s, name) == NEW_IMAGE
    eventually(
        lambda: _condition(_instance(custom, name), "Upgraded")["reason"] == "Current",
        "condition Upgraded=True with reason Current",
    )
    assert upgrade["downtimeSeconds"] > 0
    print(f"\nmaintenance (traffic down) for a same-major upgrade: {upgrade['downtimeSeconds']}s")
    # The default grace period (7d) keeps the previous database; the first backup of the
    # upgraded one is taken at once.
    post = custom.get_cluster_custom_object(
        GROUP, VERSION, "odoobackups", f"{name}-post-upgrade-{upgrade['id']}"
    )
    assert post["spec"]["reason"] == "post-upgrade"
    assert "keptDroppedAt" not in _instance(custom, name)["status"]["upgrade"]


def _database_exists(postgres_dsn: str, database: str) -> bool:
    with psycopg.connect(postgres_dsn) as superuser:
        found = superuser.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        return found.fetchone() is not None


def test_the_previous_database_is_dropped_after_the_grace_period_and_a_post_upgrade_backup(
    k8s: client.ApiClient,
    custom: client.CustomObjectsApi,
    new_tenant: NewTenant,
    postgres_dsn: str,
) -> None:
    name = new_tenant(upgrade={"keepPreviousDatabase": "0m"})
    login = tenant_login(k8s, postgres_dsn, name)
    _seed(login)
    _set_image(custom, name, NEW_IMAGE)
    upgrade = _wait_step(custom, name, ("done", "failed"))["status"]["upgrade"]
    assert upgrade["step"] == "done", upgrade

    def dropped() -> bool:
        return bool(_instance(custom, name)["status"]["upgrade"].get("keptDroppedAt"))

    eventually(dropped, "the previous database dropped", 120)
    upgrade = _instance(custom, name)["status"]["upgrade"]
    assert not _database_exists(postgres_dsn, upgrade["kept"])
    # Only once a backup of the upgraded database exists.
    post = custom.get_cluster_custom_object(
        GROUP, VERSION, "odoobackups", upgrade["postUpgradeBackup"]
    )
    assert (post["spec"]["reason"], post["status"]["phase"]) == ("post-upgrade", "Succeeded")
    assert upgrade["kept"] in upgrade["message"]
    assert _database_exists(postgres_dsn, f"odoo_{name.replace('-', '_')}")


def test_a_failing_upgrade_job_rolls_back_with_the_database_unchanged_and_is_not_retried(
    k8s: client.ApiClient,
    custom: client.CustomObjectsApi,
    new_tenant: NewTenant,
    postgres_dsn: str,
) -> None:
    name = new_tenant()
    login = tenant_login(k8s, postgres_dsn, name)
    _seed(login)
    before = _content_checksum(login)
    old_image = _web_image(k8s, name)

    _set_image(custom, name, FAILING_IMAGE)
    instance = _wait_step(custom, name, ("done", "failed"))
    upgrade = instance["status"]["upgrade"]
    assert upgrade["step"] == "failed", upgrade
    assert "the upgrade Job failed" in upgrade["message"]
    assert instance["status"]["runningImage"] == old_image
    assert _content_checksum(login) == before
    assert "filestore" not in upgrade  # nothing was switched, so no directory moved
    eventually(
        lambda: _condition(_instance(custom, name), "Upgraded")["reason"] == "UpgradeFailed",
        "condition Upgraded=False with reason UpgradeFailed",
    )
    # The spec still asks for the image, but nothing hammers the tenant with retries.
    time.sleep(5 * UPGRADE_INTERVAL_SECONDS + 2)
    jobs = client.BatchV1Api(k8s).list_namespaced_job(
        f"odoo-{name}", label_selector="app.kubernetes.io/component=upgrade"
    )
    assert len(jobs.items) == 1
    assert _instance(custom, name)["status"]["upgrade"]["id"] == upgrade["id"]
    eventually(lambda: _web_image(k8s, name) == old_image, "web back on the old image")


def test_a_failed_health_gate_swaps_the_untouched_database_back(
    k8s: client.ApiClient,
    custom: client.CustomObjectsApi,
    new_tenant: NewTenant,
    operator: ManagedProcess,
    postgres_dsn: str,
) -> None:
    name = new_tenant(upgrade={"healthTimeout": "1m"})
    login = tenant_login(k8s, postgres_dsn, name)
    _seed(login)
    before = _content_checksum(login)
    old_image = _web_image(k8s, name)

    _set_image(custom, name, NEVER_READY_IMAGE, upgrade={"healthTimeout": "1m"})
    _wait_step(custom, name, ("health",))
    instance = _wait_step(custom, name, ("done", "failed"), timeout=150)
    upgrade = instance["status"]["upgrade"]
    assert upgrade["step"] == "failed", upgrade
    assert "not available within 1m" in upgrade["message"]
    assert instance["status"]["runningImage"] == old_image
    assert _content_checksum(tenant_login(k8s, postgres_dsn, name)) == before
    # The previous filestore went back with the previous database, moved by a Job on the
    # image the tenant ran before; the upgraded one follows the failed database.
    assert upgrade["filestore"] == "restored"
    image, names = _filestore_job(k8s, name, f"odoo-rollback-{upgrade['id']}-filestore")
    assert image == old_image
    assert (names["INCOMING"], names["ASIDE"]) == (
        upgrade["kept"],
        f"odoo_{name.replace('-', '_')}_failed_upgrade_{upgrade['id']}",
    )
    eventually(lambda: _web_image(k8s, name) == old_image, "web back on the old image")
    wait_ready(custom, name, operator)


def test_an_upgrade_outside_the_maintenance_window_waits_until_told_to_go(
    k8s: client.ApiClient,
    custom: client.CustomObjectsApi,
    new_tenant: NewTenant,
) -> None:
    closed = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=12)).strftime("%H:00")
    name = new_tenant(maintenanceWindow={"start": closed, "duration": "1h"})
    old_image = _web_image(k8s, name)
    _set_image(custom, name, NEW_IMAGE)

    def waiting() -> bool:
        upgrade = (_instance(custom, name).get("status") or {}).get("upgrade") or {}
        return upgrade.get("message") == "waiting for the maintenance window"

    eventually(waiting, "the upgrade waiting for its window")
    time.sleep(3 * UPGRADE_INTERVAL_SECONDS)
    assert _instance(custom, name)["status"]["runningImage"] == old_image
    custom.patch_cluster_custom_object(
        GROUP,
        VERSION,
        PLURAL,
        name,
        {"metadata": {"annotations": {"odoo.tenantops.io/upgrade-now": "CHG-7"}}},
    )
    assert _wait_step(custom, name, ("done", "failed"))["status"]["upgrade"]["step"] == "done"


def test_many_tenants_bumped_at_once_upgrade_within_the_fleet_limit(
    custom: client.CustomObjectsApi, new_tenant: NewTenant
) -> None:
    names = [new_tenant() for _ in range(3)]
    for name in names:
        _set_image(custom, name, NEW_IMAGE)
    most = 0

    def all_done() -> bool:
        nonlocal most
        steps = [
            ((_instance(custom, n).get("status") or {}).get("upgrade") or {}).get("step")
            for n in names
        ]
        most = max(most, sum(step not in (None, "done", "failed") for step in steps))
        return all(step == "done" for step in steps)

    eventually(all_done, "every tenant upgraded", 240)
    assert most == 1  # the e2e operator's upgradeConcurrency


def test_a_major_upgrade_without_a_migration_image_and_a_skipped_major_are_refused(
    custom: client.CustomObjectsApi, new_tenant: NewTenant
) -> None:
    name = new_tenant(version="17.0")
    for version, message in (("18.0", "migrationImage"), ("19.0", "cannot skip majors")):
        with pytest.raises(ApiException) as refused:
            custom.patch_cluster_custom_object(
                GROUP, VERSION, PLURAL, name, {"spec": {"version": version}}
            )
        assert refused.value.status == 422
        assert message in str(refused.value.body)
