"""`make bench-backup`: backup, verify and restore throughput and memory on real servers.

Starts PostgreSQL and Azurite (:mod:`.services`), generates a tenant database of at least
``--size-gb`` (default 1 GB: a few wide tables of random text, plus small Odoo-like tables)
and a filestore of ``--filestore-mb`` random files, then measures:

a. ``pg_dump -Fc > /dev/null``: the floor any logical backup pays;
b. :func:`~odoo_operator.engine.run_backup` into Azurite: wall time, and peak RSS of the
   process running it (a child of this one, so the figure is the engine's alone, read as
   its own ``ru_maxrss``) and of its ``pg_dump``;
c. :func:`~odoo_operator.engine.verify_backup` against a plain ``pg_restore`` of the same
   dump from a local file into a scratch database;
d. :func:`~odoo_operator.engine.restore_backup` into a new database.

Prints a table. Everything lives in temporary folders that are removed at the end; nothing
is written into the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo, sql

from odoo_operator.backends import pgtools

from .services import AzuriteServer, PostgresServer

ROLE = "bench_tenant"
DATABASE = "odoo_bench"
INSTANCE = "bench"
CONTAINER = "bench-backups"
# Rows per INSERT ... SELECT: big enough to be fast, small enough to report progress.
_BATCH_ROWS = 500_000


def _say(message: str) -> None:
    print(f"[bench-backup] {message}", file=sys.stderr, flush=True)


def _mib(size: float) -> str:
    return f"{size / 1024 / 1024:,.0f} MiB"


def generate(
    admin_dsn: str, tenant_dsn: str, size_bytes: int, filestore: Path, files_mb: int
) -> None:
    """A database of at least ``size_bytes`` owned by the tenant role, and its filestore."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(DATABASE), sql.Identifier(ROLE)
            )
        )
    with psycopg.connect(tenant_dsn, autocommit=True) as connection:
        # Odoo-shaped tables for the manifest's row counts and the attachment check.
        connection.execute(
            "CREATE TABLE res_partner (id serial PRIMARY KEY, name text);"
            "CREATE TABLE ir_module_module (id serial PRIMARY KEY, name text, state text);"
            "CREATE TABLE ir_attachment (id serial PRIMARY KEY, name text, store_fname text);"
            "INSERT INTO res_partner (name) SELECT 'Partner ' || g FROM generate_series(1, 5000) g;"
            "INSERT INTO ir_module_module (name, state) VALUES ('base', 'installed'),"
            " ('account', 'installed');"
        )
        # Three wide tables of random text: hex digests compress about 2:1 under pg_dump's
        # default zlib, between a real ledger's text (better) and attachments (worse).
        for table in ("account_move_line", "mail_message", "stock_move"):
            connection.execute(
                sql.SQL(
                    "CREATE TABLE {} (id bigint PRIMARY KEY, created timestamptz, amount"
                    " numeric(16,2), ref text, body text)"
                ).format(sql.Identifier(table))
            )
        tables = ["account_move_line", "mail_message", "stock_move"]
        next_id, turn = 1, 0
        started = time.monotonic()
        while True:
            size = connection.execute("SELECT pg_database_size(current_database())").fetchone()
            current = int(size[0]) if size else 0
            if current >= size_bytes:
                break
            _say(f"generating: {_mib(current)} of {_mib(size_bytes)}")
            connection.execute(
                sql.SQL(
                    "INSERT INTO {} SELECT g, now() - g * interval '1 second',"
                    " (random() * 100000)::numeric(16,2), md5(random()::text),"
                    " md5(random()::text) || ' ' || md5(random()::text) || ' '"
                    " || md5(random()::text) || ' ' || md5(random()::text)"
                    " FROM generate_series({}::bigint, {}::bigint) g"
                ).format(
                    sql.Identifier(tables[turn % len(tables)]),
                    sql.Literal(next_id),
                    sql.Literal(next_id + _BATCH_ROWS - 1),
                )
            )
            next_id += _BATCH_ROWS
            turn += 1
        connection.execute("VACUUM ANALYZE")
        _say(f"generated {_mib(current)} in {time.monotonic() - started:.0f}s")
        count = max(1, files_mb * 4)  # 256 KiB files
        for index in range(count):
            name = f"{index % 256:02x}/{os.urandom(20).hex()}"
            (filestore / name).parent.mkdir(parents=True, exist_ok=True)
            (filestore / name).write_bytes(os.urandom(256 * 1024))
            connection.execute(
                "INSERT INTO ir_attachment (name, store_fname) VALUES (%s, %s)",
                (f"file{index}", name),
            )


def _without_password(dsn: str) -> str:
    # The tools get the password through PGPASSWORD, as the engine hands it over.
    parameters = conninfo.conninfo_to_dict(dsn)
    parameters.pop("password", None)
    return conninfo.make_conninfo("", **parameters)


def _timed(arguments: list[str], environment: dict[str, str], **kwargs: Any) -> float:
    started = time.monotonic()
    subprocess.run(arguments, env=environment, check=True, **kwargs)
    return time.monotonic() - started


def _child(operation: str, environment: dict[str, str]) -> dict[str, Any]:
    """Run one engine operation in a fresh interpreter; its own report (last stdout line)."""
    done = subprocess.run(
        [sys.executable, "-m", "odoo_devstack.bench_backup", "--child", operation],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{operation} failed:\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


async def _child_operation(operation: str) -> dict[str, Any]:
    from odoo_operator.backends.blobstore import BlobStore
    from odoo_operator.engine import (
        DatabaseAccess,
        RestoreTarget,
        restore_backup,
        run_backup,
        verify_backup,
    )

    environment = os.environ
    if operation == "baseline":
        # The interpreter with the engine and its clients imported, before any work.
        return {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    store = BlobStore.from_connection_string(environment["BENCH_BLOB"], CONTAINER)
    backup_id = environment["BENCH_BACKUP_ID"]
    started = time.monotonic()
    report: dict[str, Any] = {}
    async with store:
        if operation == "backup":
            manifest = await run_backup(
                store,
                INSTANCE,
                backup_id,
                DatabaseAccess(environment["BENCH_TENANT"], DATABASE),
                Path(environment["BENCH_FILESTORE"]),
                "18.0",
                "manual",
            )
            report["sizes"] = {name: part.size for name, part in manifest.parts.items()}
        elif operation == "verify":
            verification = await verify_backup(
                store, INSTANCE, backup_id, environment["BENCH_ADMIN"]
            )
            if not verification.ok:
                raise RuntimeError(verification.reason)
            report["restore_seconds"] = verification.details["restoreSeconds"]
        elif operation == "restore":
            await restore_backup(
                store,
                INSTANCE,
                backup_id,
                RestoreTarget(
                    admin_conninfo=environment["BENCH_ADMIN"],
                    database=f"{DATABASE}_restored",
                    owner_role=ROLE,
                    filestore=Path(environment["BENCH_RESTORE_FILESTORE"]),
                    expected_instance=INSTANCE,
                    target_odoo_version="18.0",
                    neutralize=False,
                ),
            )
    report["seconds"] = time.monotonic() - started
    # Linux reports ru_maxrss in KiB.
    report["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report["peak_rss_tools"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return report


def run_bench(size_gb: float, filestore_mb: int) -> list[tuple[str, str]]:
    """Start the servers, generate the data, measure; the table's rows."""
    work = Path(tempfile.mkdtemp(prefix="odoo-bench-backup-"))
    postgres = PostgresServer().start()
    azurite = AzuriteServer().start()
    rows: list[tuple[str, str]] = []
    try:
        password = "bench-" + os.urandom(8).hex()
        with psycopg.connect(postgres.dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(password)
                )
            )
        tenant_dsn = conninfo.make_conninfo(
            postgres.dsn, user=ROLE, password=password, dbname=DATABASE
        )
        filestore = work / "filestore" / DATABASE
        filestore.mkdir(parents=True)
        generate(postgres.dsn, tenant_dsn, int(size_gb * 1024**3), filestore, filestore_mb)
        with psycopg.connect(tenant_dsn) as connection:
            size = connection.execute("SELECT pg_database_size(current_database())").fetchone()
        database_size = int(size[0]) if size else 0
        rows.append(("database size (pg_database_size)", _mib(database_size)))
        rows.append(("filestore", f"{filestore_mb} MiB in {max(1, filestore_mb * 4)} files"))

        tool_env = {**os.environ, "PGPASSWORD": password, "LC_MESSAGES": "C"}
        dump_dsn = _without_password(tenant_dsn)
        pg_dump, pg_restore = pgtools.find_tool("pg_dump"), pgtools.find_tool("pg_restore")
        _say("a) pg_dump -Fc > /dev/null")
        with open(os.devnull, "wb") as null:
            plain_dump = _timed(
                [str(pg_dump), "-Fc", f"--dbname={dump_dsn}"], tool_env, stdout=null
            )
        rows.append(("a) pg_dump -Fc > /dev/null", f"{plain_dump:.1f} s"))

        environment = {
            "BENCH_BLOB": azurite.connection_string,
            "BENCH_TENANT": tenant_dsn,
            "BENCH_ADMIN": postgres.dsn,
            "BENCH_FILESTORE": str(filestore),
            "BENCH_RESTORE_FILESTORE": str(work / "filestore" / f"{DATABASE}_restored"),
            "BENCH_BACKUP_ID": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-beef",
        }
        baseline = _child("baseline", environment)
        rows.append(("engine process after imports, before work", _mib(baseline["peak_rss"])))
        _say("b) run_backup into Azurite")
        backup = _child("backup", environment)
        dump_size = backup["sizes"]["database.dump"]
        rows.append(("b) run_backup wall time", f"{backup['seconds']:.1f} s"))
        rows.append(
            ("   ratio to pg_dump (target <= 1.3)", f"{backup['seconds'] / plain_dump:.2f}")
        )
        rows.append(("   dump size", _mib(dump_size)))
        rows.append(
            ("   peak RSS of the engine process (target <= 150 MB)", _mib(backup["peak_rss"]))
        )
        rows.append(("   peak RSS of pg_dump", _mib(backup["peak_rss_tools"])))

        _say("c) verify_backup, and plain pg_restore of the same dump from a file")
        archive = work / "plain.dump"
        subprocess.run(
            [str(pg_dump), "-Fc", f"--dbname={dump_dsn}", f"--file={archive}"],
            env=tool_env,
            check=True,
        )
        with psycopg.connect(postgres.dsn, autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench_plain_restore TEMPLATE template0 ENCODING 'UTF8'")
        admin_env = {
            **os.environ,
            "PGPASSWORD": postgres.password,
            "LC_MESSAGES": "C",
        }
        plain_target = _without_password(
            conninfo.make_conninfo(postgres.dsn, dbname="bench_plain_restore")
        )
        plain_restore = _timed(
            [
                str(pg_restore),
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                f"--dbname={plain_target}",
                str(archive),
            ],
            admin_env,
        )
        with psycopg.connect(postgres.dsn, autocommit=True) as admin:
            admin.execute("DROP DATABASE bench_plain_restore WITH (FORCE)")
        archive.unlink()
        rows.append(("c) plain pg_restore from a local file", f"{plain_restore:.1f} s"))
        verify = _child("verify", environment)
        rows.append(("   verify_backup wall time", f"{verify['seconds']:.1f} s"))
        rows.append(
            (
                "   of which pg_restore streaming from the store",
                f"{verify['restore_seconds']:.1f} s",
            )
        )
        rows.append(("   ratio to plain pg_restore", f"{verify['seconds'] / plain_restore:.2f}"))
        rows.append(("   peak RSS of the engine process", _mib(verify["peak_rss"])))

        _say("d) restore_backup into a new database")
        restore = _child("restore", environment)
        rows.append(
            ("d) restore_backup wall time (checks, restore, swap)", f"{restore['seconds']:.1f} s")
        )
        rows.append(("   peak RSS of the engine process", _mib(restore["peak_rss"])))
    finally:
        azurite.stop()
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m odoo_devstack.bench_backup``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="database size to generate")
    parser.add_argument("--filestore-mb", type=int, default=64, help="filestore size to generate")
    parser.add_argument(
        "--child", choices=["baseline", "backup", "verify", "restore"], help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(_child_operation(args.child))))
        return 0
    started = time.monotonic()
    rows = run_bench(args.size_gb, args.filestore_mb)
    rows.append(("whole benchmark, generation included", f"{time.monotonic() - started:.0f} s"))
    width = max(len(label) for label, _ in rows)
    print(f"\n{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * 12}")
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    print(f"\n{os.cpu_count()} CPUs; PostgreSQL and Azurite on loopback, durability off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
