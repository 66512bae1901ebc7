"""An operator killed at any point while provisioning converges, once restarted, to the
same tenant: no duplicate or orphaned objects, and credentials that work.

This module runs its own operator processes (not the shared fixture) so it can kill them.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from azure.storage.blob import BlobServiceClient
from kubernetes import client
from kubernetes.client.rest import ApiException
from psycopg import conninfo

from e2e.tenants import (
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    OperatorStarts,
    create_backup,
    eventually,
    make_instance,
    redis_as,
    tenant_login,
    wait_ready,
)
from odoo_devstack import kubectl
from odoo_devstack.operator_setup import BACKUP_CONTAINER, register_servers
from odoo_devstack.processes import ManagedProcess

StartOperator = Callable[[], ManagedProcess]


@pytest.fixture
def start(
    k8s: client.ApiClient,
    operator_kubeconfig: Path,
    postgres_dsn: str,
    redis_url: str,
    blob_connection_string: str,
    tmp_path: Path,
) -> Iterator[StartOperator]:
    """Starts operator processes one after another; stops whatever still runs at the end."""
    kubectl.install_crds(k8s, REPO / "crds")
    config = register_servers(k8s, postgres_dsn, redis_url, tmp_path, blob_connection_string)
    starts = OperatorStarts(operator_kubeconfig, config, tmp_path)
    yield starts
    starts.stop()


def _exists(read: Callable[[], object]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _delete_and_wait(custom: client.CustomObjectsApi, name: str) -> None:
    custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    eventually(
        lambda: not _exists(lambda: custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)),
        "the instance deleted",
        180,
    )


def _role_exists(postgres_dsn: str, role: str) -> bool:
    with psycopg.connect(postgres_dsn) as superuser:
        found = superuser.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        return found.fetchone() is not None


def test_an_operator_killed_while_provisioning_converges_after_restarts(
    k8s: client.ApiClient, start: StartOperator, postgres_dsn: str, redis_url: str
) -> None:
    custom, core = client.CustomObjectsApi(k8s), client.CoreV1Api(k8s)
    name = f"crash-{uuid.uuid4().hex[:6]}"
    namespace, database = f"odoo-{name}", f"odoo_{name.replace('-', '_')}"
    first = start()
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, make_instance(name))
    try:
        # Killed as soon as the namespace exists: before Secrets, role and Redis user.
        eventually(lambda: _exists(lambda: core.read_namespace(namespace)), "the namespace")
        first.kill()
        # Killed again once the database role exists: Secrets written, workloads not yet.
        second = start()
        eventually(lambda: _role_exists(postgres_dsn, database), "the database role")
        second.kill()
        third = start()
        wait_ready(custom, name, third)

        secrets = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
        assert secrets == {
            "odoo-credentials",
            "odoo-config",
            "odoo-database",
            "odoo-redis",
        }
        jobs = client.BatchV1Api(k8s).list_namespaced_job(namespace).items
        assert [job.metadata.name for job in jobs] == ["odoo-init"]
        deployments = client.AppsV1Api(k8s).list_namespaced_deployment(namespace).items
        assert sorted(d.metadata.name for d in deployments) == ["odoo-cron", "odoo-web"]
        instance = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        assert instance["metadata"]["finalizers"] == ["odoo.tenantops.io/finalizer"]

        # The credentials kept in the cluster are the ones the servers accept.
        def secret(key: str) -> dict[str, str]:
            data = core.read_namespaced_secret(key, namespace).data
            return {k: base64.b64decode(v).decode() for k, v in data.items()}

        db, cache = secret("odoo-database"), secret("odoo-redis")
        login = conninfo.make_conninfo(postgres_dsn, user=db["username"], dbname=db["database"])
        with psycopg.connect(login, password=db["password"]) as tenant:
            assert tenant.execute("SELECT current_database()").fetchone() == (database,)
        assert redis_as(redis_url, cache["username"], cache["password"]).ping()
    finally:
        custom.patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, name, {"spec": {"deletionPolicy": "Delete"}}
        )
        _delete_and_wait(custom, name)


def _upgrade_step(custom: client.CustomObjectsApi, name: str) -> str | None:
    instance = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    step = ((instance.get("status") or {}).get("upgrade") or {}).get("step")
    return None if step is None else str(step)


def test_an_operator_killed_at_every_upgrade_step_resumes_and_finishes_it(
    k8s: client.ApiClient, start: StartOperator, postgres_dsn: str
) -> None:
    custom = client.CustomObjectsApi(k8s)
    name = f"crash-{uuid.uuid4().hex[:6]}"
    body = make_instance(name, backup={"verify": "Never"}, deletionPolicy="Delete")
    operator = start()
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    try:
        wait_ready(custom, name, operator)
        custom.patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, name, {"spec": {"image": "docker.io/library/odoo:18.0-b"}}
        )
        # Killed as soon as each step is recorded; a new operator must carry on from there.
        for step in ("backup", "copy", "migrate", "health"):
            eventually(
                lambda step=step: _upgrade_step(custom, name) in (step, "done", "failed"),
                f"the upgrade reaching {step}",
                120,
            )
            operator.kill()
            operator = start()
        eventually(
            lambda: _upgrade_step(custom, name) in ("done", "failed"), "the upgrade finished", 180
        )
        instance = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        upgrade = instance["status"]["upgrade"]
        assert upgrade["step"] == "done", upgrade
        assert instance["status"]["runningImage"] == "docker.io/library/odoo:18.0-b"
        database = f"odoo_{name.replace('-', '_')}"
        with psycopg.connect(postgres_dsn) as superuser:
            names = {
                row[0]
                for row in superuser.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{database}%",)
                ).fetchall()
            }
        # The live database and the one kept from before: no stray copy of any attempt.
        assert names == {database, upgrade["kept"]}
        assert not (instance["metadata"].get("annotations") or {}).get(
            "odoo.tenantops.io/maintenance"
        )
    finally:
        _delete_and_wait(custom, name)
        with psycopg.connect(postgres_dsn, autocommit=True) as superuser:
            for (leftover,) in superuser.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                (f"odoo_{name.replace('-', '_')}%",),
            ).fetchall():
                superuser.execute(f'DROP DATABASE "{leftover}" WITH (FORCE)')


def _backup_status(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    found = custom.get_cluster_custom_object(GROUP, VERSION, "odoobackups", name)
    return dict(found.get("status") or {})


def test_an_operator_killed_mid_backup_leaves_nothing_restorable_and_the_backup_starts_again(
    k8s: client.ApiClient, start: StartOperator, postgres_dsn: str, blob_connection_string: str
) -> None:
    custom = client.CustomObjectsApi(k8s)
    name = f"crash-{uuid.uuid4().hex[:6]}"
    operator = start()
    body = make_instance(name, backup={"verify": "Never"}, deletionPolicy="Delete")
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    container = BlobServiceClient.from_connection_string(
        blob_connection_string
    ).get_container_client(BACKUP_CONTAINER)
    try:
        wait_ready(custom, name, operator)
        # Tens of megabytes of poorly compressible rows: a dump that lasts long enough to be
        # interrupted.
        with psycopg.connect(tenant_login(k8s, postgres_dsn, name), autocommit=True) as db:
            db.execute("CREATE TABLE account_move_line (id serial PRIMARY KEY, ref text)")
            db.execute(
                "INSERT INTO account_move_line (ref) SELECT string_agg(md5(random()::text), '')"
                " FROM generate_series(1, 1000000) g GROUP BY g % 200000"
            )
        backup = create_backup(custom, name)
        eventually(
            lambda: _backup_status(custom, backup).get("phase") == "Running",
            "the backup running",
            poll=0.05,
        )
        operator.kill()
        interrupted = _backup_status(custom, backup)
        assert interrupted["phase"] == "Running", interrupted  # the kill came first
        first_attempt = f"{name}/{interrupted['backupId']}/"
        # What the killed attempt uploaded has no manifest: it is not a backup.
        leftovers = {blob.name for blob in container.list_blobs(name_starts_with=first_attempt)}
        assert f"{first_attempt}manifest.json" not in leftovers

        operator = start()
        eventually(
            lambda: _backup_status(custom, backup).get("phase") in ("Succeeded", "Failed"),
            "the backup finished after the restart",
            180,
        )
        status = _backup_status(custom, backup)
        assert status["phase"] == "Succeeded", status
        assert status["attempts"] == 2
        assert status["backupId"] != interrupted["backupId"]
        assert not list(container.list_blobs(name_starts_with=first_attempt))
        manifest = f"{name}/{status['backupId']}/manifest.json"
        assert container.get_blob_client(manifest).exists()
    finally:
        _delete_and_wait(custom, name)
