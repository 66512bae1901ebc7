"""Point-in-time recovery through the operator: an OdooRestore names a time, not a backup.

The tenant lives on a PostgreSQL server that archives its WAL with pgBackRest (registered
with its ``pitr`` entry). It has a backup (the filestore a recovery carries), then keeps
working; the time is noted; a bad batch follows. An in-place OdooRestore to the noted time
must: take the point-in-time OdooBackup (the database recovered from the archive), take the
safety backup of the present state, and restore, so that the tenant has every row it had at
the noted time and none of the bad batch, and says what time it was recovered to.

This module runs its own operator: the archived server is registered only here.
"""

from __future__ import annotations

import contextlib
import datetime
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from kubernetes import client
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from e2e.tenants import (
    BACKUPS,
    GROUP,
    PLURAL,
    REPO,
    RESTORES,
    VERSION,
    create_backup,
    create_restore,
    delete_quietly,
    make_instance,
    seed_odoo_like_database,
    tenant_login,
    wait_finished,
    wait_gone,
    wait_ready,
)
from odoo_devstack import kubectl
from odoo_devstack.demo import start_operator
from odoo_devstack.operator_setup import register_servers
from odoo_devstack.processes import ManagedProcess

if TYPE_CHECKING:
    from odoo_devstack.pitr import ArchivedPostgres

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def recovering_operator(
    k8s: client.ApiClient,
    operator_kubeconfig: Path,
    postgres_dsn: str,
    redis_url: str,
    blob_connection_string: str,
    archived_postgres: ArchivedPostgres,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ManagedProcess, Path]]:
    """An operator that knows the archived server; backups run in its process."""
    workdir = tmp_path_factory.mktemp("pitr")
    kubectl.install_crds(k8s, REPO / "crds")
    config = register_servers(
        k8s, postgres_dsn, redis_url, workdir, blob_connection_string, archived=archived_postgres
    )
    server = archived_postgres.server
    operator = start_operator(
        operator_kubeconfig,
        config,
        workdir / "operator.log",
        drift_interval=5,
        # PostgreSQL refuses root, which the test harness runs as.
        environment={"ODOO_OPERATOR_PITR_RUN_AS": server.run_as or ""} if server else {},
    )
    try:
        yield operator, workdir / "filestores"
    finally:
        operator.stop()


@contextlib.contextmanager
def _tenant(
    custom: client.CustomObjectsApi, operator: ManagedProcess, name: str, server: str
) -> Iterator[None]:
    """Tenant ``name`` on PostgreSQL server ``server``, Ready; deleted afterwards."""
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        PLURAL,
        make_instance(
            name,
            database={"serverRef": server},
            backup={"verify": "Never"},
            deletionPolicy="Delete",
        ),
    )
    try:
        wait_ready(custom, name, operator)
        yield
    finally:
        delete_quietly(custom, PLURAL, name)
        wait_gone(custom, PLURAL, name)


def _rows(login: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(login) as connection:
        return connection.execute("SELECT id, name FROM res_partner ORDER BY id").fetchall()


def test_an_in_place_restore_to_a_noted_time_brings_back_that_moment_and_not_the_bad_batch(
    k8s: client.ApiClient,
    recovering_operator: tuple[ManagedProcess, Path],
    archived_postgres: ArchivedPostgres,
) -> None:
    operator, filestores = recovering_operator
    custom = client.CustomObjectsApi(k8s)
    name = f"pitr-{uuid.uuid4().hex[:5]}"
    assert archived_postgres.server is not None
    server_dsn = archived_postgres.server.dsn
    with _tenant(custom, operator, name, "archived"):
        login = tenant_login(k8s, server_dsn, name)
        seed_odoo_like_database(login, filestores / name)
        base = wait_finished(custom, BACKUPS, create_backup(custom, name))
        assert base["status"]["phase"] == "Succeeded", base["status"]
        with psycopg.connect(login, autocommit=True) as connection:
            # Business after the backup: in no backup, only in the archive.
            connection.execute("INSERT INTO res_partner (name) VALUES ('after the backup')")
            good = _rows(login)
            time.sleep(1)
            noted = connection.execute("SELECT now()").fetchone()
            assert noted is not None
            time.sleep(1)
            connection.execute("DELETE FROM res_partner WHERE id <= 10")
            connection.execute("INSERT INTO res_partner (name) VALUES ('the bad batch')")
        point: datetime.datetime = noted[0]
        assert _rows(login) != good

        restore = f"back-to-{uuid.uuid4().hex[:5]}"
        create_restore(
            custom,
            restore,
            {
                "pointInTime": point.isoformat().replace("+00:00", "Z"),
                "target": {"instance": name},
            },
        )
        done = wait_finished(custom, RESTORES, restore, 300)
        status = done["status"]
        assert status["phase"] == "Succeeded", (status, operator.log_tail())
        assert status["mode"] == "InPlace"
        assert status["pointInTimeBackup"] == f"{restore}-pitr"
        assert status["safetyBackup"] == f"{restore}-safety"
        assert status["filestoreFrom"] == base["status"]["backupId"]
        recovered_to = datetime.datetime.fromisoformat(status["recoveredTo"].replace("Z", "+00:00"))
        assert recovered_to <= point
        assert "for the point in time" in status["message"], status["message"]

        recovery = custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, f"{restore}-pitr")
        assert recovery["status"]["phase"] == "Succeeded", recovery["status"]
        assert recovery["spec"]["pointInTime"] == done["spec"]["pointInTime"]
        # The tenant, as it was at the noted time: the row after the backup, no bad batch.
        login = tenant_login(k8s, server_dsn, name)
        assert _rows(login) == good
        wait_ready(custom, name, operator)


def test_a_point_in_time_restore_of_a_tenant_without_an_archive_fails_touching_nothing(
    k8s: client.ApiClient, recovering_operator: tuple[ManagedProcess, Path], postgres_dsn: str
) -> None:
    operator, filestores = recovering_operator
    custom = client.CustomObjectsApi(k8s)
    name = f"nopitr-{uuid.uuid4().hex[:5]}"
    with _tenant(custom, operator, name, "main"):
        login = tenant_login(k8s, postgres_dsn, name)
        seed_odoo_like_database(login, filestores / name)
        before = _rows(login)
        restore = f"back-to-{uuid.uuid4().hex[:5]}"
        create_restore(
            custom, restore, {"pointInTime": "2026-01-01T00:00:00Z", "target": {"instance": name}}
        )
        status = wait_finished(custom, RESTORES, restore, 120)["status"]
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert (status["phase"], failed["reason"]) == ("Failed", "PointInTimeFailed"), status
        assert "NoArchive" in status["message"], status["message"]
        assert "has no WAL archive" in status["message"], status["message"]
        assert "safetyBackup" not in status
        assert _rows(login) == before
        wait_ready(custom, name, operator)


def test_a_restore_from_a_server_recovered_outside_the_operator_takes_its_database_from_there(
    k8s: client.ApiClient,
    recovering_operator: tuple[ManagedProcess, Path],
    archived_postgres: ArchivedPostgres,
    postgres_dsn: str,
) -> None:
    """Azure's point-in-time restore of a flexible server makes a new server holding every
    database as it was; registered, it is the source of a restore naming it (spec.fromServer).
    Here the registry's ``main`` plays that server: it holds the tenant's database and role as
    they were, while the tenant lives on ``archived``."""
    operator, filestores = recovering_operator
    custom = client.CustomObjectsApi(k8s)
    name = f"azpitr-{uuid.uuid4().hex[:5]}"
    assert archived_postgres.server is not None
    role = database = ""
    try:
        with _tenant(custom, operator, name, "archived"):
            login = tenant_login(k8s, archived_postgres.server.dsn, name)
            seed_odoo_like_database(login, filestores / name)
            base = wait_finished(custom, BACKUPS, create_backup(custom, name))
            assert base["status"]["phase"] == "Succeeded", base["status"]
            # The "recovered server": the tenant's role and database as they were at that time.
            recovered = conninfo_to_dict(tenant_login(k8s, postgres_dsn, name))
            role, database = str(recovered["user"]), str(recovered["dbname"])
            with psycopg.connect(postgres_dsn, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(str(recovered["password"]))
                    )
                )
                admin.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(database), sql.Identifier(role)
                    )
                )
            as_recovered = tenant_login(k8s, postgres_dsn, name)
            seed_odoo_like_database(as_recovered, filestores / f"{name}-recovered", partners=3)
            then = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")

            restore = f"from-azure-{uuid.uuid4().hex[:5]}"
            create_restore(
                custom,
                restore,
                {"pointInTime": then, "fromServer": "main", "target": {"instance": name}},
            )
            status = wait_finished(custom, RESTORES, restore, 300)["status"]
            assert status["phase"] == "Succeeded", (status, operator.log_tail())
            recovery = custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, f"{restore}-pitr")
            assert recovery["status"]["fromServer"] == "main", recovery["status"]
            assert recovery["status"]["filestoreFrom"] == base["status"]["backupId"]
            assert "read from server main" in recovery["status"]["message"]
            # The tenant now holds the recovered server's rows: 3 partners, not 25.
            assert _rows(tenant_login(k8s, archived_postgres.server.dsn, name)) == _rows(
                as_recovered
            )
            assert len(_rows(as_recovered)) == 3
            wait_ready(custom, name, operator)
    finally:
        if role:
            with psycopg.connect(postgres_dsn, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
