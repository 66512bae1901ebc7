"""Real PostgreSQL, Redis and Azurite servers on loopback, for tests and the demo.

Each server is a child process (see :mod:`.processes`) in a temporary folder of
its own, on a free port, with credentials generated per run.

PostgreSQL and Redis also speak TLS with a certificate for ``localhost`` and ``127.0.0.1``
from the process's throw-away service CA (:func:`.tls.service_certificates`): PostgreSQL
with ``ssl=on`` on its one port (clients that do not ask for TLS are still served, so the
plain DSN keeps working), Redis on a ``tls-port`` beside its plain port. ``ca_file``,
``tls_dsn`` and ``tls_url`` are what a client needs to verify them.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from .binaries import ToolMissingError, cache_root
from .ports import free_port, is_listening
from .processes import ManagedProcess
from .tls import service_certificates

AZURITE_VERSION = "3.35.0"  # the last release that runs on Node.js 20
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published, well-known development key: not a secret.
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_START_TIMEOUT = 60.0


def _tempdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"odoo-{prefix}-"))


def find_postgres_bindir() -> Path:
    """The folder holding initdb and postgres, newest major first."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
        reverse=True,
    )
    if candidates:
        return Path(candidates[0]).parent
    raise ToolMissingError(
        "PostgreSQL server binaries (initdb, postgres) not found: install the 'postgresql' "
        "package, or set ODOO_OPERATOR_TEST_PG_DSN to use an existing server"
    )


@dataclass
class PostgresServer:
    """A PostgreSQL server whose superuser is the operator's admin connection."""

    superuser: str = "postgres"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = 0
    workdir: Path = field(default_factory=lambda: _tempdir("postgres"))
    process: ManagedProcess | None = None
    tls: bool = True
    # More ``-c`` settings (they win over the defaults below) and the server's environment.
    settings: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] | None = None

    @property
    def run_as(self) -> str | None:
        """The account the server runs as: PostgreSQL refuses root."""
        if os.geteuid() != 0:
            return None
        return "postgres" if _user_exists("postgres") else "nobody"

    @property
    def dsn(self) -> str:
        """libpq connection string for the superuser (libpq's default sslmode)."""
        return (
            f"host=127.0.0.1 port={self.port} user={self.superuser} "
            f"password={self.password} dbname=postgres"
        )

    @property
    def ca_file(self) -> Path:
        """The CA certificate the server's certificate chains to."""
        return service_certificates().ca

    @property
    def tls_dsn(self) -> str:
        """:attr:`dsn` with ``sslmode=verify-full`` against :attr:`ca_file`."""
        return f"{self.dsn} sslmode=verify-full sslrootcert={self.ca_file}"

    def start(self) -> PostgresServer:
        """initdb into the work dir and start ``postgres`` as a child; wait until it answers."""
        bindir = find_postgres_bindir()
        # PostgreSQL refuses to run as root; the Debian package's account runs it instead.
        run_as = self.run_as
        if run_as:
            account = pwd.getpwnam(run_as)
            os.chown(self.workdir, account.pw_uid, account.pw_gid)
        data = self.workdir / "data"
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if run_as:
            account = pwd.getpwnam(run_as)
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        pwfile.chmod(0o600)
        initdb = ManagedProcess(
            "initdb",
            [
                str(bindir / "initdb"),
                f"--pgdata={data}",
                f"--username={self.superuser}",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
            self.workdir / "initdb.log",
            run_as=run_as,
        ).start()
        initdb.finish(_START_TIMEOUT)
        pwfile.unlink()
        self.port = self.port or free_port()
        tls_settings = self._tls_settings(run_as) if self.tls else []
        self.process = ManagedProcess(
            "postgresql",
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.workdir}",
                # Disposable test data: durability settings off for speed.
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "max_connections=300",
                *tls_settings,
                *(
                    item
                    for key, value in self.settings.items()
                    for item in ("-c", f"{key}={value}")
                ),
            ],
            self.workdir / "postgresql.log",
            env=self.env,
            run_as=run_as,
        ).start()
        self.process.wait_until(self._answers, _START_TIMEOUT, "accepting connections", 0.2)
        return self

    def _tls_settings(self, run_as: str | None) -> list[str]:
        """``-c`` settings for ``ssl=on``; the key is copied into the work dir, as PostgreSQL
        refuses a key file that another user owns or others may read."""
        certificates = service_certificates()
        tls_dir = self.workdir / "tls"
        tls_dir.mkdir(mode=0o700)
        cert, key = tls_dir / "server.crt", tls_dir / "server.key"
        shutil.copyfile(certificates.server.cert, cert)
        shutil.copyfile(certificates.server.key, key)
        key.chmod(0o600)
        if run_as:
            account = pwd.getpwnam(run_as)
            for path in (tls_dir, cert, key):
                os.chown(path, account.pw_uid, account.pw_gid)
        return ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}", "-c", f"ssl_key_file={key}"]

    def _answers(self) -> bool:
        with psycopg.connect(self.dsn, connect_timeout=2) as connection:
            connection.execute("SELECT 1")
        return True

    def stop(self) -> None:
        """Stop the server and remove its data."""
        if self.process:
            self.process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class RedisServer:
    """A Redis server with a password on its default user; tenants get ACL users."""

    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = 0
    workdir: Path = field(default_factory=lambda: _tempdir("redis"))
    process: ManagedProcess | None = None
    tls: bool = True
    tls_port: int = 0

    @property
    def url(self) -> str:
        """redis:// URL of the default (admin) user, on the plain port."""
        return f"redis://default:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def ca_file(self) -> Path:
        """The CA certificate the server's certificate chains to."""
        return service_certificates().ca

    @property
    def tls_url(self) -> str:
        """rediss:// URL of the default user on the TLS port; verify with :attr:`ca_file`."""
        return f"rediss://default:{self.password}@127.0.0.1:{self.tls_port}/0"

    def start(self) -> RedisServer:
        """Start ``redis-server`` as a child and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ToolMissingError(
                "redis-server not found: install the 'redis-server' package, "
                "or set ODOO_OPERATOR_TEST_REDIS_URL to use an existing server"
            )
        self.port = self.port or free_port()
        tls_lines: list[str] = []
        if self.tls:
            while self.tls_port in (0, self.port):
                self.tls_port = free_port()
            certificates = service_certificates()
            tls_lines = [
                f"tls-port {self.tls_port}",
                f"tls-cert-file {certificates.server.cert}",
                f"tls-key-file {certificates.server.key}",
                f"tls-ca-cert-file {certificates.ca}",
                # Clients prove who they are with a password, not a certificate.
                "tls-auth-clients no",
            ]
        config = self.workdir / "redis.conf"
        # The password goes in a file, not on the command line where `ps` shows it.
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    *tls_lines,
                    f"dir {self.workdir}",
                    'save ""',
                    "appendonly no",
                    f"requirepass {self.password}",
                    "",
                ]
            )
        )
        config.chmod(0o600)
        self.process = ManagedProcess(
            "redis", [binary, str(config)], self.workdir / "redis.log"
        ).start()
        self.process.wait_until(self._answers, _START_TIMEOUT, "answering PING")
        return self

    def _answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        if self.process:
            self.process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def azurite_dir() -> Path:
    """Where the pinned Azurite npm package is installed (outside the repository)."""
    return cache_root() / f"azurite-{AZURITE_VERSION}"


def ensure_azurite() -> Path:
    """The ``azurite-blob`` executable, installed from npm on first use."""
    binary = azurite_dir() / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise ToolMissingError(
            "npm not found: install Node.js 20 and npm to run the Azurite blob emulator, "
            "or set ODOO_OPERATOR_TEST_BLOB_CONNECTION_STRING to use an existing store"
        )
    azurite_dir().mkdir(parents=True, exist_ok=True)
    print(f"[devcluster] installing azurite@{AZURITE_VERSION} with npm", file=sys.stderr)
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", f"azurite@{AZURITE_VERSION}"],
        cwd=azurite_dir(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0 or not binary.exists():
        raise ToolMissingError(f"npm install azurite@{AZURITE_VERSION} failed:\n{result.stderr}")
    return binary


@dataclass
class AzuriteServer:
    """Azurite's blob service: the Azure Blob Storage emulator."""

    port: int = 0
    workdir: Path = field(default_factory=lambda: _tempdir("azurite"))
    process: ManagedProcess | None = None
    # HTTPS with the service certificate (for ``localhost``), for clients that speak only
    # HTTPS, such as pgBackRest.
    tls: bool = False

    @property
    def connection_string(self) -> str:
        """Connection string for the emulator's development account."""
        scheme, host = ("https", "localhost") if self.tls else ("http", "127.0.0.1")
        return (
            f"DefaultEndpointsProtocol={scheme};AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={scheme}://{host}:{self.port}/{AZURITE_ACCOUNT};"
        )

    def start(self) -> AzuriteServer:
        """Start the blob service on loopback and wait until it listens."""
        binary = ensure_azurite()
        self.port = self.port or free_port()
        self.process = ManagedProcess(
            "azurite",
            [
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                str(self.workdir / "data"),
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                *(
                    [
                        "--cert",
                        str(service_certificates().server.cert),
                        "--key",
                        str(service_certificates().server.key),
                    ]
                    if self.tls
                    else []
                ),
            ],
            self.workdir / "azurite.log",
        ).start()
        self.process.wait_until(lambda: is_listening(self.port), _START_TIMEOUT, "listening")
        return self

    def stop(self) -> None:
        """Stop the emulator and remove its data."""
        if self.process:
            self.process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
