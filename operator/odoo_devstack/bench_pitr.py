"""`make bench-pitr`: point-in-time recovery of a generated tenant database, end to end.

Starts a PostgreSQL 15 that archives its WAL with pgBackRest to an HTTPS Azurite
(:class:`.pitr.ArchivedPostgres`) and a plain Azurite as the backup store, then:

1. measures the recovery point the archive gives: the delay between a commit and its WAL
   segment being archived, after a forced switch (``pg_switch_wal()``: pgBackRest's push
   alone) and without one (``archive_timeout`` then closes the segment: the worst case);
2. generates a tenant database of at least ``--size-mb`` (default 1024 MiB): an Odoo-like
   ``account_move`` and a bulk ``mail_message`` of wide rows of hex digests (about 2:1
   compressible, like bench_backup's), loaded in a few large ``INSERT ... SELECT``;
3. waits until the load's WAL is archived, takes a pgBackRest ``incr`` backup (so that the
   recovery restores this database alone, ``--db-include``) and a regular backup with
   :func:`~odoo_operator.engine.backup.run_backup` (a tiny filestore). With
   ``--backup-before-load`` the pgBackRest backup is taken right after the database is
   created, before the bulk load: the recovery then replays the whole load's WAL;
4. posts a good batch of invoices, notes the time, posts a bad batch (invoices deleted, a
   wrong one posted), waits until that is archived;
5. times :func:`~odoo_operator.engine.pitr.run_point_in_time_backup` to the noted time:
   pgBackRest restore, WAL replay, then ``pg_dump`` of the recovered database into the store,
   and checks the backup holds the good state.

Prints a table; ``--json`` also writes the figures. Everything lives in temporary folders
removed at the end; nothing is written into the repository. Run as root, the servers run as
``postgres``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import psycopg
from azure.storage.blob import BlobServiceClient
from psycopg import conninfo, sql

from odoo_operator.backends.blobstore import BlobStore
from odoo_operator.builders.backup_layout import new_backup_id
from odoo_operator.engine.backup import DatabaseAccess, run_backup
from odoo_operator.engine.pitr import run_point_in_time_backup, wait_archived

from .pitr import ARCHIVE_TIMEOUT_SECONDS, CONTAINER, ArchivedPostgres
from .services import AzuriteServer
from .tls import service_certificates

DATABASE = "odoo_pitr_bench"
INSTANCE = "bench-pitr"
STORE_CONTAINER = "bench-pitr-backups"
ODOO_VERSION = "18.0"
INVOICES = 10_000  # account_move rows before the good batch
GOOD_BATCH = 100  # invoices posted before the noted time
BAD_DELETES = 1_000  # invoices deleted after it (and one wrong one posted)
CHUNKS = 8  # INSERT ... SELECT statements for the bulk of the data
RPO_SAMPLES = 3
# A row of mail_message: 30 distinct MD5 hex digests (960 characters, under the TOAST
# threshold, so stored as is: eight rows to a page).
_BODY = "array_to_string(ARRAY(SELECT md5((g * 31 + i)::text) FROM generate_series(1, 30) i), '')"
_ROW_BYTES_GUESS = 1024
_LONG_WAIT = 1800.0


def _say(message: str) -> None:
    print(f"[bench-pitr] {message}", file=sys.stderr, flush=True)


def _mib(size: float) -> str:
    return f"{size / 1024 / 1024:,.0f} MiB"


def _value(connection: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = connection.execute(query, params or None).fetchone()
    return row[0] if row else None


def _peak_rss() -> int:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


class Bench:
    """The servers, the store and the figures of one run."""

    def __init__(self, size_mb: int, backup_before_load: bool = False) -> None:
        self.size_bytes = size_mb * 1024 * 1024
        self.backup_before_load = backup_before_load
        self.archived = ArchivedPostgres()
        self.store_server = AzuriteServer()
        self.store: BlobStore | None = None
        self.filestore = Path(tempfile.mkdtemp(prefix="odoo-pitr-bench-filestore-"))
        # Where the server's account can reach it; the engine creates it (0700, must not
        # exist) and removes it.
        scratch = Path("/tmp")  # noqa: S108 - a fresh name, created exclusively by the engine
        self.workdir = scratch / f"odoo-pitr-bench-{uuid.uuid4().hex[:12]}"
        self.figures: dict[str, Any] = {
            "size_mb_asked": size_mb,
            "backup_before_load": backup_before_load,
            "cpus": os.cpu_count(),
        }

    # -- connections -------------------------------------------------------------------

    def dsn(self, database: str = "postgres") -> str:
        """The superuser's DSN for ``database`` on the archived server."""
        server = self.archived.server
        if server is None:
            raise RuntimeError("the archived PostgreSQL is not started")
        return conninfo.make_conninfo(server.dsn, dbname=database)

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        """An autocommit connection to ``database``."""
        return psycopg.connect(self.dsn(database), autocommit=True)

    def archive_bytes(self) -> int:
        """The compressed size of the WAL archive in the archive's Azurite."""
        prefix = self.archived.path.strip("/") + "/archive/"
        with BlobServiceClient.from_connection_string(
            self.archived.azurite.connection_string,
            connection_verify=str(service_certificates().ca),
        ) as blobs:
            container = blobs.get_container_client(CONTAINER)
            return sum(int(blob.size) for blob in container.list_blobs(name_starts_with=prefix))

    def archiver(self) -> tuple[int, str | None]:
        """pg_stat_archiver's archived_count and last_archived_wal."""
        with self.connect() as connection:
            row = connection.execute(
                "SELECT archived_count, last_archived_wal FROM pg_stat_archiver"
            ).fetchone()
        if row is None:
            return 0, None
        return int(row[0]), (str(row[1]) if row[1] is not None else None)

    # -- phases ------------------------------------------------------------------------

    async def start(self) -> None:
        """The archived server (stanza and first full backup) and the backup store."""
        _say("starting PostgreSQL 15 with pgBackRest archiving, and two Azurites")
        started = time.monotonic()
        self.archived.start()
        self.figures["start_with_first_full_backup_seconds"] = time.monotonic() - started
        self.store_server.start()
        self.store = BlobStore.from_connection_string(
            self.store_server.connection_string, STORE_CONTAINER
        )
        await self.store.ensure_container()

    def _wait_segment(self, segment: str, timeout: float = 120.0) -> float:
        started = time.monotonic()
        while True:
            _, archived = self.archiver()
            if archived is not None and archived >= segment:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"WAL segment {segment} not archived within {timeout:.0f} s")
            time.sleep(0.05)

    def measure_rpo(self) -> None:
        """Commit-to-archived delays, with a forced switch and with archive_timeout alone."""
        _say(f"measuring the archive's delay ({RPO_SAMPLES} samples, up to ~15 s each)")
        forced: list[float] = []
        timeout_only: list[float] = []
        with self.connect() as connection:
            connection.execute("CREATE TABLE rpo_probe (at timestamptz)")
            for _ in range(RPO_SAMPLES):
                connection.execute("INSERT INTO rpo_probe VALUES (now())")
                segment = str(_value(connection, "SELECT pg_walfile_name(pg_switch_wal())"))
                forced.append(self._wait_segment(segment))
                # Right after a switch: the commit waits the whole archive_timeout.
                connection.execute("INSERT INTO rpo_probe VALUES (now())")
                # The insert position, past the commit record (the write position may not
                # have reached it yet, and would name the segment just switched from).
                segment = str(
                    _value(connection, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
                )
                timeout_only.append(self._wait_segment(segment))
        self.figures["archive_timeout_seconds"] = ARCHIVE_TIMEOUT_SECONDS
        self.figures["rpo_forced_switch_seconds"] = forced
        self.figures["rpo_archive_timeout_seconds"] = timeout_only
        _say(
            "commit to archived: "
            f"forced switch {', '.join(f'{s:.2f}' for s in forced)} s; "
            f"archive_timeout alone {', '.join(f'{s:.1f}' for s in timeout_only)} s"
        )

    def create(self) -> None:
        """The tenant database, its Odoo-like tables and their first invoices."""
        with self.connect() as admin:
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                    sql.Identifier(DATABASE)
                )
            )
        with self.connect(DATABASE) as connection:
            connection.execute(
                "CREATE TABLE account_move (id serial PRIMARY KEY, name text, state text,"
                " amount_total numeric(16,2));"
                "CREATE TABLE ir_attachment (id serial PRIMARY KEY, name text, store_fname text);"
                "CREATE TABLE mail_message (id bigint PRIMARY KEY, model text, body text);"
            )
            connection.execute(
                "INSERT INTO account_move (name, state, amount_total)"
                " SELECT 'INV/2025/' || g, 'posted', g * 10.25 FROM generate_series(1, %s) g",
                (INVOICES,),
            )

    def generate(self) -> tuple[int, int]:
        """Load the bulk table until the database holds ``size_bytes``; the archiver's count
        and the archive's size before it."""
        with self.connect() as connection:
            lsn_before = _value(connection, "SELECT pg_current_wal_lsn()")
        count_before, _ = self.archiver()
        archive_before = self.archive_bytes()
        started = time.monotonic()
        with self.connect(DATABASE) as connection:
            next_id, chunk, row_bytes = 1, 0, float(_ROW_BYTES_GUESS)
            while True:
                current = int(_value(connection, "SELECT pg_database_size(current_database())"))
                if current >= self.size_bytes:
                    break
                chunk += 1
                chunks_left = max(1, CHUNKS - chunk + 1)
                rows = max(1000, math.ceil((self.size_bytes - current) / row_bytes / chunks_left))
                _say(
                    f"loading chunk {chunk}: {_mib(current)} of {_mib(self.size_bytes)},"
                    f" {rows:,} rows, {time.monotonic() - started:.0f} s so far"
                )
                connection.execute(
                    sql.SQL(
                        "INSERT INTO mail_message (id, model, body)"
                        " SELECT g, 'account.move', {}"
                        " FROM generate_series({}::bigint, {}::bigint) g"
                    ).format(sql.SQL(_BODY), sql.Literal(next_id), sql.Literal(next_id + rows - 1))
                )
                next_id += rows
                table = int(_value(connection, "SELECT pg_table_size('mail_message')"))
                row_bytes = table / (next_id - 1)
            connection.execute("VACUUM ANALYZE")
            size = int(_value(connection, "SELECT pg_database_size(current_database())"))
            lsn_after = _value(connection, "SELECT pg_current_wal_lsn()")
            wal = int(_value(connection, "SELECT pg_wal_lsn_diff(%s, %s)", lsn_after, lsn_before))
        loaded = time.monotonic() - started
        if size < self.size_bytes:
            raise RuntimeError(f"the database reached {size} bytes, short of {self.size_bytes}")
        _say(f"loaded {_mib(size)} in {loaded:.0f} s ({next_id - 1:,} bulk rows)")
        self.figures.update(
            database_bytes=size,
            bulk_rows=next_id - 1,
            load_seconds=loaded,
            wal_written_bytes=wal,
        )
        return count_before, archive_before

    async def archive_catch_up(self, count_before: int, archive_before: int) -> None:
        """Wait until the load's WAL is archived; how long, and how much it was."""
        _say("waiting until the load's WAL is archived")
        started = time.monotonic()
        segment = await wait_archived(self.dsn(), timeout=_LONG_WAIT)
        self.figures["archive_catch_up_seconds"] = time.monotonic() - started
        self.figures["archived_segments"] = self.archiver()[0] - count_before
        self.figures["archive_bytes"] = self.archive_bytes() - archive_before
        _say(
            f"archived up to {segment}: {self.figures['archived_segments']} segments,"
            f" {_mib(self.figures['archive_bytes'])} compressed,"
            f" {self.figures['archive_catch_up_seconds']:.1f} s after the load"
        )

    def pgbackrest_backup(self) -> None:
        """The pgBackRest incr backup that holds the new database."""
        when = "before the bulk load" if self.backup_before_load else "after the load"
        _say(f"pgBackRest incr backup ({when}: holds the new database)")
        started = time.monotonic()
        self.archived.backup("incr")
        self.figures["pgbackrest_incr_seconds"] = time.monotonic() - started
        try:
            info = json.loads(self.archived.pgbackrest("--output=json", "info"))
            last = info[0]["backup"][-1]["info"]
            self.figures["pgbackrest_incr_repo_bytes"] = int(last["repository"]["delta"])
        except (ValueError, LookupError, TypeError) as error:
            _say(f"could not read pgbackrest info: {error}")
        _say(f"pgBackRest incr backup took {self.figures['pgbackrest_incr_seconds']:.1f} s")

    async def base_backup(self) -> str:
        """A regular backup of the tenant (its filestore: one small file)."""
        assert self.store is not None
        (self.filestore / "3f").mkdir()
        (self.filestore / "3f" / "3f2a9c1e0b7d4c5a").write_bytes(b"%PDF-1.7 invoice\n")
        _say("regular backup with run_backup (pg_dump into the store)")
        started = time.monotonic()
        manifest = await run_backup(
            self.store,
            INSTANCE,
            new_backup_id(),
            DatabaseAccess(conninfo=self.dsn(DATABASE), database=DATABASE),
            self.filestore,
            ODOO_VERSION,
            "scheduled",
        )
        self.figures["run_backup_seconds"] = time.monotonic() - started
        self.figures["run_backup_dump_bytes"] = manifest.parts["database.dump"].size
        _say(f"run_backup took {self.figures['run_backup_seconds']:.1f} s")
        return manifest.backup_id

    def batches(self) -> tuple[datetime.datetime, int]:
        """Post the good batch, note the time, post the bad batch; the time and the number
        of invoices at it."""
        with self.connect(DATABASE) as connection:
            connection.execute(
                "INSERT INTO account_move (name, state, amount_total)"
                " SELECT 'INV/2026/' || g, 'posted', g * 10.25 FROM generate_series(1, %s) g",
                (GOOD_BATCH,),
            )
            good = int(_value(connection, "SELECT count(*) FROM account_move"))
            time.sleep(0.5)
            noted: datetime.datetime = _value(connection, "SELECT now()")
            time.sleep(0.5)
            connection.execute("DELETE FROM account_move WHERE id <= %s", (BAD_DELETES,))
            connection.execute(
                "INSERT INTO account_move (name, state, amount_total)"
                " VALUES ('INV/2026/BAD', 'posted', 999999.99)"
            )
            live = int(_value(connection, "SELECT count(*) FROM account_move"))
        if live == good:
            raise RuntimeError("the bad batch changed nothing")
        _say(f"good state {good} invoices at {noted.isoformat()}; live now {live}")
        self.figures.update(good_invoices=good, live_invoices_after_bad_batch=live)
        return noted, good

    async def recover(self, noted: datetime.datetime, good: int, base: str) -> None:
        """Time run_point_in_time_backup to ``noted`` and check what it backed up."""
        assert self.store is not None
        started = time.monotonic()
        await wait_archived(self.dsn(), timeout=_LONG_WAIT)
        self.figures["wait_archived_seconds"] = time.monotonic() - started
        self.figures["load_before_recovery"] = os.getloadavg()
        _say(f"point-in-time recovery to {noted.isoformat()} (load {_load()})")
        started = time.monotonic()
        manifest, recovered = await run_point_in_time_backup(
            self.store,
            INSTANCE,
            new_backup_id(),
            self.archived.access,
            DATABASE,
            noted,
            ODOO_VERSION,
            base,
            admin_user="postgres",
            workdir=self.workdir,
            run_as=self.archived.server.run_as if self.archived.server else None,
        )
        total = time.monotonic() - started
        self.figures["load_after_recovery"] = os.getloadavg()
        recovered_count = manifest.row_counts.get("account_move")
        correct = (
            recovered_count == good
            and recovered.recovered_to is not None
            and recovered.recovered_to <= noted
            and not recovered.whole_server
        )
        self.figures.update(
            restore_seconds=recovered.restore_seconds,
            replay_seconds=recovered.replay_seconds,
            dump_and_upload_seconds=total - recovered.restore_seconds - recovered.replay_seconds,
            recovery_total_seconds=total,
            recovered_dump_bytes=manifest.parts["database.dump"].size,
            recovered_to=recovered.recovered_to.isoformat() if recovered.recovered_to else None,
            noted=noted.isoformat(),
            whole_server=recovered.whole_server,
            recovered_invoices=recovered_count,
            correct=correct,
        )
        _say(
            f"recovered in {total:.1f} s (restore {recovered.restore_seconds:.1f} s, replay"
            f" {recovered.replay_seconds:.1f} s); account_move {recovered_count}, expected {good}"
        )

    async def run(self) -> None:
        """Every phase, then stop everything."""
        self.figures["load_at_start"] = os.getloadavg()
        try:
            await self.start()
            self.measure_rpo()
            self.create()
            if self.backup_before_load:
                self.pgbackrest_backup()
            await self.archive_catch_up(*self.generate())
            if not self.backup_before_load:
                self.pgbackrest_backup()
            base = await self.base_backup()
            noted, good = self.batches()
            await self.recover(noted, good, base)
        finally:
            self.figures["peak_rss_bytes"] = _peak_rss()
            if self.store is not None:
                await self.store.close()
            self.store_server.stop()
            self.archived.stop()
            shutil.rmtree(self.filestore, ignore_errors=True)
            shutil.rmtree(self.workdir, ignore_errors=True)


def _rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    def seconds(key: str, digits: int = 1) -> str:
        return f"{figures[key]:.{digits}f} s" if key in figures else "-"

    def load(key: str) -> str:
        return " ".join(f"{v:.2f}" for v in figures[key]) if key in figures else "-"

    forced = figures.get("rpo_forced_switch_seconds", [])
    timeout_only = figures.get("rpo_archive_timeout_seconds", [])
    rows = [
        ("database size (pg_database_size)", _mib(figures.get("database_bytes", 0))),
        ("generation (INSERT ... SELECT, then VACUUM ANALYZE)", seconds("load_seconds", 0)),
        ("WAL written while loading", _mib(figures.get("wal_written_bytes", 0))),
        (
            "WAL archived for it (segments, compressed size)",
            f"{figures.get('archived_segments', '-')} segments,"
            f" {_mib(figures.get('archive_bytes', 0))}",
        ),
        ("archive catch-up after the load", seconds("archive_catch_up_seconds")),
        (
            "pgBackRest incr backup, "
            + ("before the bulk load" if figures.get("backup_before_load") else "after the load"),
            seconds("pgbackrest_incr_seconds"),
        ),
        (
            "   its size in the repository",
            _mib(figures["pgbackrest_incr_repo_bytes"])
            if "pgbackrest_incr_repo_bytes" in figures
            else "-",
        ),
        ("run_backup (regular base backup)", seconds("run_backup_seconds")),
        ("wait_archived after the bad batch", seconds("wait_archived_seconds")),
        ("run_point_in_time_backup, end to end", seconds("recovery_total_seconds")),
        ("   pgBackRest restore (--db-include)", seconds("restore_seconds")),
        ("   WAL replay to the target, promotion", seconds("replay_seconds")),
        ("   pg_dump + upload (+ stop, cleanup)", seconds("dump_and_upload_seconds")),
        ("   dump size", _mib(figures.get("recovered_dump_bytes", 0))),
        ("recovered to (target)", f"{figures.get('recovered_to')} ({figures.get('noted')})"),
        (
            "account_move rows recovered / good state",
            f"{figures.get('recovered_invoices')} / {figures.get('good_invoices')}"
            f" ({'correct' if figures.get('correct') else 'WRONG'})",
        ),
        ("archive_timeout", f"{figures.get('archive_timeout_seconds', '-')} s"),
        (
            "commit to archived, forced pg_switch_wal()",
            ", ".join(f"{s:.2f}" for s in forced) + " s",
        ),
        (
            "commit to archived, archive_timeout alone (RPO)",
            ", ".join(f"{s:.1f}" for s in timeout_only) + " s",
        ),
        ("peak RSS of the bench process", _mib(figures.get("peak_rss_bytes", 0))),
        ("load average at start", load("load_at_start")),
        ("load average before / after the recovery", f"{load('load_before_recovery')} / "
         f"{load('load_after_recovery')}"),
        ("whole benchmark", seconds("bench_seconds", 0)),
    ]  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m odoo_devstack.bench_pitr``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="database size to generate")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--backup-before-load",
        action="store_true",
        help="take the pgBackRest backup before the bulk load, so the recovery replays the"
        " load's WAL (the replay-bound case) instead of restoring it from the backup",
    )
    args = parser.parse_args(argv)
    bench = Bench(args.size_mb, args.backup_before_load)
    started = time.monotonic()
    failure: BaseException | None = None
    try:
        asyncio.run(bench.run())
    except Exception as error:  # noqa: BLE001 - reported with the figures gathered so far
        failure = error
        traceback.print_exc()
        bench.figures["error"] = f"{type(error).__name__}: {error}"
    bench.figures["bench_seconds"] = time.monotonic() - started
    rows = _rows(bench.figures)
    width = max(len(label) for label, _ in rows)
    print(f"\n{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * 12}")
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    print(
        f"\n{os.cpu_count()} CPUs; PostgreSQL 15 with fsync on, pgBackRest to an HTTPS Azurite,"
        " backups to a plain Azurite, all on loopback"
    )
    if args.json:
        args.json.write_text(json.dumps(bench.figures, indent=2, default=str) + "\n")
    if failure is not None:
        print(f"\nFAILED: {bench.figures['error']}", file=sys.stderr)
        return 1
    return 0 if bench.figures.get("correct") else 2


if __name__ == "__main__":
    sys.exit(main())
