"""One tenant's database as it was at a point in time, recovered from its server's WAL archive.

A PostgreSQL server that archives its write-ahead log continuously with pgBackRest (to Azure
Blob Storage, registry entry ``pitr``) can be brought back to any moment its archive covers.
:func:`recovered_database` does that for one database, away from the live server:

1. ``pgbackrest restore`` of the newest pgBackRest backup before the target time into an
   empty scratch directory, with ``--type=time --target-action=promote`` and
   ``--db-include=<database>``: the other databases of the server come back as empty sparse
   files, so a shared server costs the disk of one tenant. When the archive's backup predates
   the database (pgBackRest then refuses ``--db-include``), the whole server is restored
   instead, and the result says so;
2. a temporary PostgreSQL on that directory, reachable only through a Unix socket in the
   scratch directory (no TCP port, ``trust`` for that socket alone, archiving off), which
   replays the archived WAL up to the target and promotes itself;
3. the caller reads the database from it (the operator takes a backup of it, see
   :func:`odoo_operator.engine.backup.run_backup`); then the server is stopped and the
   scratch directory removed, whatever happened.

The time actually recovered to is that of the last transaction replayed
(``pg_last_xact_replay_timestamp()``): at or before the target, never after. Secrets (the
storage account key) reach pgBackRest through its environment only: pgBackRest refuses them
on its command line, and they never appear in a log line.

Why pgBackRest: it is packaged by Debian and by PostgreSQL's own repositories, archives to
Azure Blob Storage natively, restores to a time, a name or a transaction, restores selected
databases, checks every file it restores, and is what PostgreSQL operators (Crunchy's) build
on. WAL-G would do too; pgBackRest's ``--db-include`` is what keeps a shared server's
recovery small.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import pwd
import shutil
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from psycopg.conninfo import make_conninfo

from ..backends.blobstore import BlobStore
from ..builders.backup_layout import Manifest
from ..model.config import PitrArchive
from . import database as db
from .backup import DatabaseAccess, run_backup
from .errors import RestoreError

logger = logging.getLogger(__name__)

# pgBackRest's error code when --db-include names a database its backup does not hold.
_DB_MISSING_EXIT_CODE = 80
_SOCKET_PORT = 5432  # only names the socket file: the server listens on no TCP port
_POSTGRES_ROOTS = (Path("/usr/lib/postgresql"), Path("/usr/local/pgsql"))
_LOG_TAIL = 2000
POINT_IN_TIME_REASON = "point-in-time"


@dataclass(frozen=True)
class ArchiveAccess:
    """What pgBackRest needs to read a server's archive: its registry entry, the account's
    name and key (from the entry's Secret), and the endpoint's CA as a file, if any."""

    archive: PitrArchive
    account: str
    key: str = field(repr=False)
    ca_file: Path | None = None

    def environment(self) -> dict[str, str]:
        """pgBackRest's options for the repository, as the ``PGBACKREST_*`` variables it
        reads (the account and key may not be given any other way but its config file)."""
        archive = self.archive
        env = {
            "PGBACKREST_STANZA": archive.stanza,
            "PGBACKREST_REPO1_TYPE": "azure",
            "PGBACKREST_REPO1_PATH": archive.path,
            "PGBACKREST_REPO1_AZURE_CONTAINER": archive.container,
            "PGBACKREST_REPO1_AZURE_ACCOUNT": self.account,
            "PGBACKREST_REPO1_AZURE_KEY": self.key,
            "PGBACKREST_REPO1_AZURE_ENDPOINT": archive.endpoint,
            "PGBACKREST_REPO1_AZURE_URI_STYLE": archive.uri_style,
            "PGBACKREST_REPO1_STORAGE_PORT": str(archive.port),
        }
        if self.ca_file is not None:
            env["PGBACKREST_REPO1_STORAGE_CA_FILE"] = str(self.ca_file)
        return env


@dataclass(frozen=True)
class RecoveredDatabase:
    """A database recovered to a point in time, served by a temporary server."""

    conninfo: str = field(repr=False)
    database: str
    target: datetime.datetime
    recovered_to: datetime.datetime | None  # None: no transaction was replayed
    whole_server: bool  # the archive's backup predates the database: everything restored
    restore_seconds: float
    replay_seconds: float


def recovered_database(
    access: ArchiveAccess,
    database: str,
    target: datetime.datetime,
    workdir: Path,
    *,
    admin_user: str,
    run_as: str | None = None,
    replay_timeout: float = 3600.0,
) -> contextlib.AbstractAsyncContextManager[RecoveredDatabase]:
    """Recover ``database`` as it was at ``target`` (aware) under ``workdir`` (created, and
    removed afterwards); use it within the context. ``admin_user`` is a role of the server
    (the restored copy has the same roles) to connect as; ``run_as`` the system account
    pgBackRest and PostgreSQL run as when this process is root (PostgreSQL refuses root).

    Raises :class:`~.errors.RestoreError` naming what failed: the archive unreadable, no
    backup before ``target``, WAL missing up to it, or the replay taking over
    ``replay_timeout`` seconds.
    """
    if target.tzinfo is None:
        raise ValueError("the point in time must carry its time zone")
    return _recovered(access, database, target, workdir, admin_user, run_as, replay_timeout)


@contextlib.asynccontextmanager
async def _recovered(
    access: ArchiveAccess,
    database: str,
    target: datetime.datetime,
    workdir: Path,
    admin_user: str,
    run_as: str | None,
    replay_timeout: float,
) -> AsyncIterator[RecoveredDatabase]:
    data = workdir / "pgdata"
    server: asyncio.subprocess.Process | None = None
    try:
        _prepare(workdir, run_as)
        started = time.monotonic()
        whole_server = await _restore(access, database, target, workdir, data, run_as)
        restored = time.monotonic()
        logger.info(
            "restored the base backup of %s for %s at %s in %.1f s%s",
            access.archive.stanza,
            database,
            target.isoformat(),
            restored - started,
            " (the whole server: its backup predates the database)" if whole_server else "",
        )
        server = await _start_server(access, workdir, data, run_as)
        conninfo = make_conninfo(host=str(workdir), port=str(_SOCKET_PORT), user=admin_user)
        recovered_to = await _wait_promoted(server, conninfo, workdir, replay_timeout)
        replayed = time.monotonic()
        logger.info(
            "%s recovered to %s (asked for %s), WAL replayed in %.1f s",
            database,
            recovered_to.isoformat() if recovered_to else "its base backup",
            target.isoformat(),
            replayed - restored,
        )
        yield RecoveredDatabase(
            conninfo=make_conninfo(conninfo, dbname=database),
            database=database,
            target=target,
            recovered_to=recovered_to,
            whole_server=whole_server,
            restore_seconds=restored - started,
            replay_seconds=replayed - restored,
        )
    finally:
        if server is not None:
            await _stop(server)
        # A tenant's database worth of files: removed off the event loop.
        await asyncio.to_thread(shutil.rmtree, workdir, True)


def _prepare(workdir: Path, run_as: str | None) -> None:
    workdir.mkdir(parents=True, exist_ok=False, mode=0o700)
    for name in ("pgdata", "log", "lock", "spool"):
        (workdir / name).mkdir(mode=0o700)
    # Only this socket, in this 0700 directory, and only trust: no TCP, no other client.
    (workdir / "pg_hba.conf").write_text("local all all trust\n")
    (workdir / "pgbackrest.conf").write_text("")  # nothing from the machine's own config
    if run_as is not None:
        account = pwd.getpwnam(run_as)
        for path in (workdir, *workdir.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)


def _pgbackrest_env(access: ArchiveAccess, workdir: Path, data: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **access.environment(),
        "PGBACKREST_PG1_PATH": str(data),
        "PGBACKREST_LOG_PATH": str(workdir / "log"),
        "PGBACKREST_LOCK_PATH": str(workdir / "lock"),
        "PGBACKREST_SPOOL_PATH": str(workdir / "spool"),
        "PGBACKREST_LOG_LEVEL_CONSOLE": "warn",
        "PGBACKREST_LOG_LEVEL_FILE": "off",
    }


def _as(run_as: str | None, command: list[str]) -> list[str]:
    return ["runuser", "-u", run_as, "--", *command] if run_as else command


async def _restore(
    access: ArchiveAccess,
    database: str,
    target: datetime.datetime,
    workdir: Path,
    data: Path,
    run_as: str | None,
) -> bool:
    """``pgbackrest restore`` into ``data``; True when the whole server had to be restored."""
    moment = target.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    command = [
        shutil.which("pgbackrest") or "pgbackrest",
        f"--config={workdir / 'pgbackrest.conf'}",
        "--type=time",
        f"--target={moment}",
        "--target-action=promote",
        "--archive-mode=off",
    ]
    env = _pgbackrest_env(access, workdir, data)
    code, output = await _run(_as(run_as, [*command, f"--db-include={database}", "restore"]), env)
    if code == _DB_MISSING_EXIT_CODE:
        logger.info(
            "the archive's backup of %s predates %s: restoring the whole server",
            access.archive.stanza,
            database,
        )
        await asyncio.to_thread(_empty, data)
        code, output = await _run(_as(run_as, [*command, "restore"]), env)
        if code == 0:
            return True
    if code != 0:
        raise RestoreError(
            f"pgbackrest restore of stanza {access.archive.stanza} to {target.isoformat()} "
            f"failed (exit {code}): {output[-_LOG_TAIL:].strip()}"
        )
    return False


def _empty(directory: Path) -> None:
    """Remove what a failed restore left in ``directory``, keeping the directory itself."""
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


async def _run(command: list[str], env: Mapping[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace")


def _postgres_binary(data: Path) -> Path:
    """The ``postgres`` of the major version the restored directory was written by."""
    major = (data / "PG_VERSION").read_text().strip()
    configured = os.environ.get("ODOO_OPERATOR_POSTGRES_BINDIR")
    candidates = [Path(configured)] if configured else []
    candidates += [root / major / "bin" for root in _POSTGRES_ROOTS]
    for bindir in candidates:
        if (bindir / "postgres").is_file():
            return bindir / "postgres"
    raise RestoreError(
        f"no PostgreSQL {major} server binary to replay the archive with (looked in "
        f"{', '.join(map(str, candidates))}; set ODOO_OPERATOR_POSTGRES_BINDIR)"
    )


async def _start_server(
    access: ArchiveAccess, workdir: Path, data: Path, run_as: str | None
) -> asyncio.subprocess.Process:
    # A server whose configuration lives outside its data directory (Debian's layout) left
    # none in the backup: the settings below are all the temporary one needs.
    (data / "postgresql.conf").touch(exist_ok=True)
    postgres = _postgres_binary(data)
    command = [
        str(postgres),
        "-D",
        str(data),
        "-c", "listen_addresses=",
        "-c", f"port={_SOCKET_PORT}",
        "-c", f"unix_socket_directories={workdir}",
        "-c", f"hba_file={workdir / 'pg_hba.conf'}",
        "-c", "ssl=off",
        "-c", "archive_mode=off",
        # A scratch copy, removed afterwards: durability only slows the replay.
        "-c", "fsync=off",
        "-c", "synchronous_commit=off",
        "-c", "shared_preload_libraries=",
        # Recovery refuses less than the primary had of these: its values, from pg_control.
        *await _primary_limits(postgres.parent / "pg_controldata", data, run_as),
    ]  # fmt: skip
    log = (workdir / "log" / "postgresql.log").open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            *_as(run_as, command),
            # restore_command runs pgbackrest archive-get with this environment.
            env=_pgbackrest_env(access, workdir, data),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    finally:
        log.close()


# pg_controldata's lines for the settings a server in recovery must not have less of.
_CONTROL_LIMITS = {
    "max_connections setting": "max_connections",
    "max_worker_processes setting": "max_worker_processes",
    "max_wal_senders setting": "max_wal_senders",
    "max_prepared_xacts setting": "max_prepared_transactions",
    "max_locks_per_xact setting": "max_locks_per_transaction",
}


async def _primary_limits(controldata: Path, data: Path, run_as: str | None) -> list[str]:
    """``-c`` settings with the primary's values of :data:`_CONTROL_LIMITS`."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    code, output = await _run(_as(run_as, [str(controldata), "-D", str(data)]), env)
    if code != 0:
        raise RestoreError(f"pg_controldata of the restored directory failed: {output[-500:]}")
    settings = []
    for line in output.splitlines():
        label, _, value = line.partition(":")
        name = _CONTROL_LIMITS.get(label.strip())
        if name and value.strip().isdigit():
            settings += ["-c", f"{name}={value.strip()}"]
    return settings


async def _wait_promoted(
    server: asyncio.subprocess.Process, conninfo: str, workdir: Path, timeout: float
) -> datetime.datetime | None:
    """Wait until the temporary server has replayed up to the target and promoted itself;
    the time of the last transaction it replayed."""
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + 30
    while True:
        if server.returncode is not None:
            raise RestoreError(
                "the temporary PostgreSQL stopped before reaching the point in time: "
                + _log_tail(workdir)
            )
        try:
            async with db.connect(make_conninfo(conninfo, dbname="postgres")) as connection:
                in_recovery = await db.fetch_value(connection, "SELECT pg_is_in_recovery()")
                if not in_recovery:
                    value = await db.fetch_value(
                        connection, "SELECT pg_last_xact_replay_timestamp()"
                    )
                    return value if isinstance(value, datetime.datetime) else None
        except Exception as error:  # noqa: BLE001 - not up yet; its exit is checked above
            logger.debug("temporary PostgreSQL not ready: %s", error)
        if time.monotonic() > deadline:
            raise RestoreError(
                f"the temporary PostgreSQL did not reach the point in time within {timeout:.0f} s"
            )
        if time.monotonic() > next_report:
            logger.info("still replaying the archive towards the point in time")
            next_report = time.monotonic() + 30
        await asyncio.sleep(0.2)


def _log_tail(workdir: Path) -> str:
    try:
        return (workdir / "log" / "postgresql.log").read_text(errors="replace")[-_LOG_TAIL:]
    except OSError:
        return "(no log)"


async def _stop(server: asyncio.subprocess.Process) -> None:
    if server.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            # SIGINT: PostgreSQL's fast shutdown. The whole session: runuser and the server.
            os.killpg(server.pid, 2)
        try:
            await asyncio.wait_for(server.wait(), 30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, 9)
            await server.wait()


async def wait_archived(admin_conninfo: str, timeout: float = 120.0) -> str | None:
    """Make the live server archive the WAL it has written so far, and wait until it has:
    a point in time just before now is then in the archive. The name of the segment waited
    for, or None when the server's admin may not switch WAL files (the recovery then fails,
    saying so, if the archive does not reach the point in time yet).
    """
    async with db.connect(admin_conninfo) as connection:
        try:
            segment = str(
                await db.fetch_value(connection, "SELECT pg_walfile_name(pg_switch_wal())")
            )
        except Exception as error:  # noqa: BLE001 - a permission the admin may lack
            logger.info("cannot switch WAL files on the live server: %s", db.first_line(error))
            return None
        deadline = time.monotonic() + timeout
        while True:
            row = await (
                await connection.execute(
                    "SELECT last_archived_wal, last_failed_wal, last_failed_time"
                    " FROM pg_stat_archiver"
                )
            ).fetchone()
            archived = row[0] if row else None
            if archived is not None and str(archived) >= segment:
                return segment
            if time.monotonic() > deadline:
                failed = f"; the last failure was {row[1]} at {row[2]}" if row and row[1] else ""
                raise RestoreError(
                    f"the server has not archived WAL segment {segment} within {timeout:.0f} s "
                    f"(last archived: {archived}){failed}: is archive_command working?"
                )
            await asyncio.sleep(0.5)


async def run_point_in_time_backup(
    store: BlobStore,
    instance: str,
    backup_id: str,
    access: ArchiveAccess,
    database: str,
    target: datetime.datetime,
    odoo_version: str,
    filestore_from: str,
    *,
    admin_user: str,
    workdir: Path,
    run_as: str | None = None,
) -> tuple[Manifest, RecoveredDatabase]:
    """Backup ``backup_id`` of ``instance``: its ``database`` as it was at ``target``,
    recovered from the archive, with the filestore of backup ``filestore_from`` (the newest
    backup at or before ``target``). A backup like any other from then on: verified,
    restored, cloned and kept by the same rules."""
    async with recovered_database(
        access, database, target, workdir, admin_user=admin_user, run_as=run_as
    ) as recovered:
        manifest = await run_backup(
            store,
            instance,
            backup_id,
            DatabaseAccess(conninfo=recovered.conninfo, database=database),
            None,
            odoo_version,
            POINT_IN_TIME_REASON,
            filestore_from=filestore_from,
            recovery={
                "pointInTime": _iso(target),
                "recoveredTo": _iso(recovered.recovered_to) if recovered.recovered_to else "",
                "filestoreFrom": filestore_from,
                "wholeServer": "true" if recovered.whole_server else "false",
            },
        )
    return manifest, recovered


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
