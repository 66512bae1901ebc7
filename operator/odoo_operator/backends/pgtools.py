"""PostgreSQL's client tools, ``pg_dump`` and ``pg_restore``, as asyncio subprocesses.

Both stream: :func:`dump` yields ``pg_dump -Fc`` output as it is produced, :func:`restore`
feeds ``pg_restore`` from an async iterator. Nothing is spooled to disk (except for a
parallel restore, which needs a seekable file) and the event loop is never blocked.

Credentials: the password of the connection string is handed to the child in its
``PGPASSWORD`` environment variable, never on its command line (which ``ps`` shows to
every user of the machine); the rest of the connection string goes in ``--dbname``. The
``PG*`` variables of the calling process are not passed on, so nothing in the operator's
environment changes which server or database a tool talks to.

Which tools: ``ODOO_OPERATOR_PG_BINDIR`` when set; else the ones on ``PATH``, unless those
are Debian's ``pg_wrapper`` (which picks a version from local cluster configuration that has
nothing to do with a remote server) and a ``/usr/lib/postgresql/<major>/bin`` exists, in
which case the newest major there. ``pg_dump`` refuses servers newer than itself, so the
tools must be at least as new as the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

BINDIR_VARIABLE = "ODOO_OPERATOR_PG_BINDIR"
# pg_dump's output is read in pieces of up to this size; the pipe itself holds 64 KiB.
READ_SIZE = 1024 * 1024
# The tail of a tool's stderr kept for the error message: the last lines say what failed.
STDERR_LIMIT = 16 * 1024
_APPLICATION_NAME = "odoo-operator"
_DEFAULT_CONNECT_TIMEOUT = "10"


class ToolNotFound(RuntimeError):  # noqa: N818 - reads as what happened
    """A PostgreSQL client tool is not installed where we look."""


class DumpFailed(RuntimeError):  # noqa: N818 - reads as what happened
    """``pg_dump`` exited with an error; the message carries its own (password scrubbed)."""


class RestoreFailed(RuntimeError):  # noqa: N818 - reads as what happened
    """``pg_restore`` exited with an error; the message carries its own (password scrubbed)."""


def find_tool(name: str) -> Path:
    """The path of ``pg_dump``, ``pg_restore`` or ``psql`` (see the module docstring)."""
    override = os.environ.get(BINDIR_VARIABLE)
    if override:
        candidate = Path(override) / name
        if not os.access(candidate, os.X_OK):
            raise ToolNotFound(f"{name} not found in {BINDIR_VARIABLE}={override}")
        return candidate
    on_path = shutil.which(name)
    newest = _newest_debian_bindir(name)
    if on_path and not (Path(os.path.realpath(on_path)).name == "pg_wrapper" and newest):
        return Path(on_path)
    if newest:
        return newest / name
    raise ToolNotFound(
        f"{name} not found: install the PostgreSQL client tools (Debian: postgresql-client) "
        f"or set {BINDIR_VARIABLE}"
    )


def _newest_debian_bindir(name: str) -> Path | None:
    found = [Path(path).parent for path in glob.glob(f"/usr/lib/postgresql/*/bin/{name}")]
    numbered = [path for path in found if path.parent.name.isdigit()]
    if not numbered:
        return None
    return max(numbered, key=lambda path: int(path.parent.name))


@dataclass(frozen=True)
class _Invocation:
    """A connection string split into what goes on the command line and the password."""

    dbname_argument: str
    password: str
    server: str


def _prepare(conninfo: str, database: str) -> _Invocation:
    try:
        parameters = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        # libpq's parse error quotes the string, and with it possibly the password.
        raise ValueError("the PostgreSQL connection string cannot be parsed") from None
    password = str(parameters.pop("password", "") or "")
    parameters["dbname"] = database
    parameters.setdefault("application_name", _APPLICATION_NAME)
    parameters.setdefault("connect_timeout", _DEFAULT_CONNECT_TIMEOUT)
    host = parameters.get("host") or parameters.get("hostaddr") or "(default host)"
    port = parameters.get("port") or "5432"
    return _Invocation(
        dbname_argument=make_conninfo("", **parameters),
        password=password,
        server=f"{host}:{port}",
    )


def _child_environment(password: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    # Messages in English and without locale surprises: they end up in conditions.
    environment["LC_MESSAGES"] = "C"
    if password:
        environment["PGPASSWORD"] = password
    return environment


class _StderrTail:
    """Keeps the last :data:`STDERR_LIMIT` bytes a child writes to stderr."""

    def __init__(self) -> None:
        self._tail = bytearray()

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._tail += chunk
            if len(self._tail) > STDERR_LIMIT:
                del self._tail[: len(self._tail) - STDERR_LIMIT]

    def message(self, password: str) -> str:
        text = self._tail.decode("utf-8", errors="replace").strip()
        if password:
            text = text.replace(password, "<password>")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        # The last few lines hold the error and its context; earlier ones are progress.
        return " | ".join(lines[-4:]) or "no message"


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Kill a child that is still running and reap it, so no zombie is left behind."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


async def dump(
    conninfo: str, database: str, *, snapshot: str | None = None
) -> AsyncGenerator[bytes, None]:
    """Yield ``pg_dump -Fc --no-owner --no-privileges`` of ``database`` as it is produced.

    ``conninfo`` is a libpq connection string of a role that can read everything in the
    database; its ``dbname`` is replaced by ``database``. ``snapshot`` is a snapshot id from
    ``pg_export_snapshot()`` to dump exactly what another transaction sees.

    Raises :class:`DumpFailed` with pg_dump's message when it exits with an error, after the
    data it produced has been yielded (so a consumer must not treat the data as complete
    until the iterator ends). Closing the iterator early kills pg_dump.
    """
    invocation = _prepare(conninfo, database)
    arguments = [
        str(find_tool("pg_dump")),
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        f"--dbname={invocation.dbname_argument}",
    ]
    if snapshot:
        arguments.append(f"--snapshot={snapshot}")
    process = await asyncio.create_subprocess_exec(
        *arguments,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_environment(invocation.password),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    stderr = _StderrTail()
    draining = asyncio.create_task(stderr.drain(process.stderr))
    try:
        while chunk := await process.stdout.read(READ_SIZE):
            yield chunk
        code = await process.wait()
        await draining
        if code != 0:
            raise DumpFailed(
                f"pg_dump of database {database} on {invocation.server} failed (exit code "
                f"{code}): {stderr.message(invocation.password)}"
            )
    finally:
        await _stop(process)
        if not draining.done():
            draining.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await draining


async def restore(
    conninfo: str,
    database: str,
    chunks: AsyncIterator[bytes],
    jobs: int = 1,
    *,
    role: str | None = None,
) -> None:
    """Restore a ``pg_dump -Fc`` archive read from ``chunks`` into ``database``.

    Runs ``pg_restore --no-owner --no-privileges --exit-on-error``; with ``role``, also
    ``--role=<role>``: pg_restore then runs ``SET ROLE`` after connecting, so every object
    it creates is owned by that role. This is how a restore hands a tenant its objects
    without its password: the connecting role (the server's admin) must be a member of
    ``role``, which the operator's PostgreSQL backend already arranges.

    With ``jobs`` > 1 the archive is first written to a temporary file (pg_restore can
    only work in parallel on a seekable file); with 1 it streams through stdin.

    Raises :class:`RestoreFailed` with pg_restore's message. When ``chunks`` raises, the
    error propagates and pg_restore is killed; the database is then partially restored.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    invocation = _prepare(conninfo, database)
    arguments = [
        str(find_tool("pg_restore")),
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        f"--dbname={invocation.dbname_argument}",
    ]
    if role:
        arguments.append(f"--role={role}")
    if jobs > 1:
        with tempfile.TemporaryDirectory(prefix="odoo-restore-") as folder:
            archive = Path(folder) / "database.dump"
            await _spool(chunks, archive)
            await _run_restore(
                [*arguments, f"--jobs={jobs}", str(archive)], None, invocation, database
            )
        return
    await _run_restore(arguments, chunks, invocation, database)


async def _spool(chunks: AsyncIterator[bytes], path: Path) -> None:
    with path.open("wb") as file:
        async for chunk in chunks:
            await asyncio.to_thread(file.write, chunk)


async def _run_restore(
    arguments: list[str],
    chunks: AsyncIterator[bytes] | None,
    invocation: _Invocation,
    database: str,
) -> None:
    process = await asyncio.create_subprocess_exec(
        *arguments,
        stdin=asyncio.subprocess.PIPE if chunks is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=_child_environment(invocation.password),
    )
    assert process.stderr is not None
    stderr = _StderrTail()
    draining = asyncio.create_task(stderr.drain(process.stderr))
    try:
        if chunks is not None:
            assert process.stdin is not None
            try:
                async for chunk in chunks:
                    process.stdin.write(chunk)
                    await process.stdin.drain()
                process.stdin.close()
                await process.stdin.wait_closed()
            except (BrokenPipeError, ConnectionResetError):
                # pg_restore stopped reading: it failed, and says why on stderr.
                pass
        code = await process.wait()
        await draining
        if code != 0:
            raise RestoreFailed(
                f"pg_restore into database {database} on {invocation.server} failed (exit "
                f"code {code}): {stderr.message(invocation.password)}"
            )
    finally:
        await _stop(process)
        if not draining.done():
            draining.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await draining
