"""A PostgreSQL server that archives its WAL continuously with pgBackRest, for point-in-time
recovery on the local stack.

pgBackRest writes to Azure Blob Storage over HTTPS only, so the archive goes to an Azurite of
its own serving HTTPS with the service certificate (for ``localhost``: pgBackRest 2.45 checks
the host name, not an IP address). Everything pgBackRest needs, the account key included,
reaches it through ``PGBACKREST_*`` variables (odoo_operator.engine.pitr.ArchiveAccess), never
a command line. ``archive_timeout`` bounds how old the newest archived change can be, which is
the recovery point objective the archive achieves.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from odoo_operator.engine.pitr import ArchiveAccess
from odoo_operator.model.config import PitrArchive

from .binaries import ToolMissingError
from .debian import apt_install
from .services import AZURITE_ACCOUNT, AZURITE_KEY, AzuriteServer, PostgresServer
from .tls import service_certificates

STANZA = "local"
CONTAINER = "pgbackrest"
# Seconds after which PostgreSQL switches to a new WAL segment even if it is not full, so
# that it is archived: the archive's recovery point objective on an idle server.
ARCHIVE_TIMEOUT_SECONDS = 10


def ensure_pgbackrest() -> str:
    """pgBackRest's path, installed from Debian when missing (as root)."""
    apt_install(
        [] if shutil.which("pgbackrest") else ["pgbackrest"],
        "point-in-time recovery",
        lambda: [] if shutil.which("pgbackrest") else ["pgbackrest"],
    )
    found = shutil.which("pgbackrest")
    if found is None:  # pragma: no cover - apt_install raises first
        raise ToolMissingError("pgbackrest is not installed")
    return found


@dataclass
class ArchivedPostgres:
    """The server, its archive's Azurite, and how to reach the archive."""

    azurite: AzuriteServer = field(default_factory=lambda: AzuriteServer(tls=True))
    server: PostgresServer | None = None
    path: str = f"/{STANZA}"
    # The service CA, copied where the server's account can read it.
    ca_file: Path = field(default_factory=lambda: service_certificates().ca)

    @property
    def archive(self) -> PitrArchive:
        """The server's registry entry ``pitr`` (its Secret holds the account and key)."""
        return PitrArchive(
            stanza=STANZA,
            container=CONTAINER,
            path=self.path,
            endpoint="localhost",
            secret="pitr-archive",  # noqa: S106 - an object name, not a value
            port=self.azurite.port,
            uri_style="path",
            ca_secret="pitr-archive-ca",  # noqa: S106 - an object name, not a value
        )

    @property
    def access(self) -> ArchiveAccess:
        """What the engine needs to read the archive."""
        return ArchiveAccess(self.archive, AZURITE_ACCOUNT, AZURITE_KEY, self.ca_file)

    def start(self) -> ArchivedPostgres:
        """Start Azurite (HTTPS) and the archiving server; create the stanza and take the
        first full pgBackRest backup."""
        pgbackrest = ensure_pgbackrest()
        self.azurite.start()
        with BlobServiceClient.from_connection_string(
            self.azurite.connection_string, connection_verify=str(service_certificates().ca)
        ) as blobs:
            blobs.create_container(CONTAINER)
        server = PostgresServer()
        self.server = server
        self.ca_file = server.workdir / "archive-ca.crt"
        shutil.copyfile(service_certificates().ca, self.ca_file)
        self.ca_file.chmod(0o644)
        env = self._environment(server)
        server.env = env
        server.settings = {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": f"{pgbackrest} --config={self._config(server)} archive-push %p",
            "archive_timeout": str(ARCHIVE_TIMEOUT_SECONDS),
            # pgBackRest's backups read pages while they change: torn pages need these.
            "full_page_writes": "on",
            "fsync": "on",
        }
        # The work dir must exist (and be the server's) before the config file goes in it.
        server.start()
        self.pgbackrest("stanza-create")
        self.backup("full")
        return self

    def _config(self, server: PostgresServer) -> Path:
        config = server.workdir / "pgbackrest.conf"
        if not config.exists():
            config.write_text("")  # nothing from the machine's /etc/pgbackrest.conf
        return config

    def _environment(self, server: PostgresServer) -> dict[str, str]:
        state = server.workdir / "pgbackrest"
        for name in ("log", "lock", "spool"):
            (state / name).mkdir(parents=True, exist_ok=True)
        if server.run_as:
            account = pwd.getpwnam(server.run_as)
            for path in (state, *state.iterdir()):
                os.chown(path, account.pw_uid, account.pw_gid)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **self.access.environment(),
            "PGBACKREST_PG1_PATH": str(server.workdir / "data"),
            "PGBACKREST_PG1_SOCKET_PATH": str(server.workdir),
            "PGBACKREST_PG1_USER": server.superuser,
            "PGBACKREST_LOG_PATH": str(state / "log"),
            "PGBACKREST_LOCK_PATH": str(state / "lock"),
            "PGBACKREST_SPOOL_PATH": str(state / "spool"),
            "PGBACKREST_LOG_LEVEL_CONSOLE": "warn",
            "PGBACKREST_LOG_LEVEL_FILE": "info",
            "PGBACKREST_START_FAST": "y",
            "PGBACKREST_REPO1_RETENTION_FULL": "2",
        }

    def pgbackrest(self, *arguments: str) -> str:
        """Run ``pgbackrest <arguments>`` for the server, as the server's account."""
        server = self._running()
        env = {**self._environment(server), "PGPASSWORD": server.password}
        env["PGBACKREST_PG1_PORT"] = str(server.port)
        command = [shutil.which("pgbackrest") or "pgbackrest", f"--config={self._config(server)}"]
        if server.run_as:
            command = ["runuser", "-u", server.run_as, "--", *command]
        result = subprocess.run(
            [*command, *arguments],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"pgbackrest {' '.join(arguments)} failed ({result.returncode}): "
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        return result.stdout

    def backup(self, kind: str = "incr") -> None:
        """A pgBackRest backup (``full``, ``diff`` or ``incr``): databases created before it
        can be recovered on their own (``--db-include``)."""
        self.pgbackrest(f"--type={kind}", "backup")

    def stop(self) -> None:
        """Stop the server and its Azurite, removing their data."""
        if self.server is not None:
            self.server.stop()
        self.azurite.stop()

    def _running(self) -> PostgresServer:
        if self.server is None or self.server.port == 0:
            raise RuntimeError("the archived PostgreSQL is not started")
        return self.server
