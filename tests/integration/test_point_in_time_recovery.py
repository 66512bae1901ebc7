"""Point-in-time recovery of one tenant's database from its server's WAL archive.

A real PostgreSQL archives its WAL continuously with pgBackRest to Azurite (HTTPS, as
pgBackRest requires). A tenant posts invoices; the time is noted; a "bad" batch follows
(invoices deleted, a wrong one posted). The recovery to the noted time must give back the
good invoices and none of the bad changes, as a backup like any other (manifest, row counts,
the books' figures, the filestore of the newest backup before that time), which the restore
engine then restores. Another tenant on the same server is left untouched throughout.
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import conninfo, sql

from odoo_devstack.pitr import ARCHIVE_TIMEOUT_SECONDS
from odoo_operator.backends.blobstore import BlobStore
from odoo_operator.backends.postgres import read_archiver
from odoo_operator.engine import RestoreTarget, restore_backup
from odoo_operator.engine.backup import DatabaseAccess, run_backup
from odoo_operator.engine.errors import RestoreError
from odoo_operator.engine.pitr import (
    POINT_IN_TIME_REASON,
    recovered_database,
    run_point_in_time_backup,
    wait_archived,
)

if TYPE_CHECKING:
    from odoo_devstack.pitr import ArchivedPostgres

pytestmark = pytest.mark.timeout(600)

GOOD_INVOICES = 40
FILES = {"3f/3f2a9c1e0b7d4c5a": b"%PDF-1.7 invoice\n", "a0/a01b2c3d4e5f": b"logo"}


def _dsn(server: ArchivedPostgres, database: str = "postgres") -> str:
    assert server.server is not None
    return conninfo.make_conninfo(server.server.dsn, dbname=database)


def _scratch() -> Path:
    # Beside the machine's other temporary folders, which the server's account can reach.
    return Path("/tmp") / f"odoo-pitr-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tenant_database(archived_postgres: ArchivedPostgres) -> Iterator[str]:
    """A tenant database with an Odoo-like ``account_move`` and ``ir_attachment``, dropped
    afterwards."""
    name = f"odoo_pitr_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_dsn(archived_postgres), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(_dsn(archived_postgres, name), autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE account_move (id serial PRIMARY KEY, name text, state text,"
            " amount_total numeric(16,2));"
            "CREATE TABLE ir_attachment (id serial PRIMARY KEY, name text, store_fname text);"
        )
    try:
        yield name
    finally:
        with psycopg.connect(_dsn(archived_postgres), autocommit=True) as connection:
            for database in (name, f"{name}_restored"):
                connection.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )


def _post_good_invoices(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO account_move (name, state, amount_total)"
            " SELECT 'INV/2026/' || g, 'posted', g * 10.25 FROM generate_series(1, %s) g",
            (GOOD_INVOICES,),
        )
        for fname in FILES:
            connection.execute(
                "INSERT INTO ir_attachment (name, store_fname) VALUES (%s, %s)", (fname, fname)
            )


def _invoices(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            "SELECT name, amount_total::text FROM account_move ORDER BY id"
        ).fetchall()
    return [(str(name), str(amount)) for name, amount in rows]


def _bad_batch(dsn: str) -> datetime.datetime:
    """Note the time, then delete ten invoices and post a wrong one; the noted time."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        time.sleep(0.5)
        noted = connection.execute("SELECT now()").fetchone()
        time.sleep(0.5)
        connection.execute("DELETE FROM account_move WHERE id <= 10")
        connection.execute(
            "INSERT INTO account_move (name, state, amount_total)"
            " VALUES ('INV/2026/BAD', 'posted', 999999.99)"
        )
    assert noted is not None
    moment: datetime.datetime = noted[0]
    return moment


async def _base_backup(
    store: BlobStore, instance: str, archived: ArchivedPostgres, database: str, tmp_path: Path
) -> str:
    filestore = tmp_path / "filestore"
    for name, content in FILES.items():
        (filestore / name).parent.mkdir(parents=True, exist_ok=True)
        (filestore / name).write_bytes(content)
    manifest = await run_backup(
        store,
        instance,
        f"{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}-0001",
        DatabaseAccess(conninfo=_dsn(archived, database), database=database),
        filestore,
        "18.0",
        "scheduled",
    )
    return manifest.backup_id


@pytest.mark.parametrize(
    "pgbackrest_backup_after_creation", [True, False], ids=["db-include", "whole-server"]
)
async def test_a_tenant_recovered_to_a_noted_time_has_its_good_invoices_and_none_of_the_bad(
    archived_postgres: ArchivedPostgres,
    tenant_database: str,
    store: BlobStore,
    tmp_path: Path,
    pgbackrest_backup_after_creation: bool,
) -> None:
    instance = f"pitr-{uuid.uuid4().hex[:6]}"
    database = tenant_database
    if pgbackrest_backup_after_creation:
        # What a platform does after creating a tenant: recovery then restores only it.
        archived_postgres.backup("incr")
    _post_good_invoices(_dsn(archived_postgres, database))
    base = await _base_backup(store, instance, archived_postgres, database, tmp_path)
    good = _invoices(_dsn(archived_postgres, database))
    noted = _bad_batch(_dsn(archived_postgres, database))
    assert _invoices(_dsn(archived_postgres, database)) != good
    assert await wait_archived(_dsn(archived_postgres)) is not None

    manifest, recovered = await run_point_in_time_backup(
        store,
        instance,
        f"{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}-0002",
        archived_postgres.access,
        database,
        noted,
        "18.0",
        base,
        admin_user="postgres",
        workdir=_scratch(),
        run_as=archived_postgres.server.run_as if archived_postgres.server else None,
    )
    # Recovered to the last transaction before the noted time: the good batch, not after.
    assert recovered.recovered_to is not None
    assert recovered.recovered_to <= noted
    assert recovered.whole_server is (not pgbackrest_backup_after_creation)
    assert manifest.reason == POINT_IN_TIME_REASON
    assert manifest.row_counts["account_move"] == GOOD_INVOICES
    assert manifest.recovery["filestoreFrom"] == base
    assert manifest.recovery["wholeServer"] == str(recovered.whole_server).lower()
    assert datetime.datetime.fromisoformat(manifest.recovery["pointInTime"]) == noted

    # Restored like any backup: the good invoices exactly, none of the bad batch.
    restored = f"{database}_restored"
    await restore_backup(
        store,
        instance,
        manifest.backup_id,
        RestoreTarget(
            admin_conninfo=_dsn(archived_postgres),
            database=restored,
            owner_role="postgres",
            filestore=tmp_path / "restored-filestore",
            expected_instance=instance,
            target_odoo_version="18.0",
            neutralize=False,
        ),
    )
    assert _invoices(_dsn(archived_postgres, restored)) == good
    restored_files = {
        path.relative_to(tmp_path / "restored-filestore").as_posix(): path.read_bytes()
        for path in (tmp_path / "restored-filestore").rglob("*")
        if path.is_file()
    }
    assert restored_files == FILES
    # The live tenant kept its present, bad batch included: recovery touched nothing live.
    assert ("INV/2026/BAD", "999999.99") in _invoices(_dsn(archived_postgres, database))


async def test_a_point_in_time_the_archive_does_not_reach_fails_saying_why(
    archived_postgres: ArchivedPostgres, tenant_database: str
) -> None:
    """A time after the last archived change (here: an hour from now) is not reached: the
    recovery fails with PostgreSQL's reason and leaves no scratch directory behind."""
    workdir = _scratch()
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    with pytest.raises(RestoreError, match="recovery ended before configured recovery target"):
        async with recovered_database(
            archived_postgres.access,
            tenant_database,
            future,
            workdir,
            admin_user="postgres",
            run_as=archived_postgres.server.run_as if archived_postgres.server else None,
        ):
            pass
    assert not workdir.exists()


async def test_an_archive_that_keeps_up_shows_no_waiting_segment_and_its_best_rpo(
    archived_postgres: ArchivedPostgres,
) -> None:
    """What the operator's metrics read from a server whose archiver works: nothing waiting
    once the newest segment is archived, no failure, and archive_timeout as the best RPO."""
    assert await wait_archived(_dsn(archived_postgres)) is not None
    state = await read_archiver(_dsn(archived_postgres), 10)
    assert state.up
    assert state.pending_segments == 0
    assert state.failed_count == 0
    assert state.archive_timeout_seconds == ARCHIVE_TIMEOUT_SECONDS
    assert state.last_archived_epoch is not None
    assert time.time() - state.last_archived_epoch < 60


async def test_an_unreachable_server_reads_as_an_archive_that_is_not_up() -> None:
    state = await read_archiver("host=127.0.0.1 port=1 user=nobody connect_timeout=2", 5)
    assert not state.up
