"""pytest fixtures for real Odoo: runtimes, initialised templates, per-test databases, servers.

A pytest plugin module. Register it once for the whole suite with one line in the root
``conftest.py``::

    pytest_plugins = ("odoo_devstack.pytest_fixtures",)

(pytest accepts ``pytest_plugins`` only in the root conftest or in a test module; registering
the same module from both is harmless.) The fixtures rely on ``postgres_dsn`` from the root
conftest, and on nothing being skipped: a runtime that cannot be built, or an Odoo that does
not initialise or serve, fails the test that needed it with the step and the log tail.

- ``odoo_runtimes`` (session): ``.get(version)`` builds or finds the cached runtime, once.
- ``odoo_templates`` (session): ``.get(version, modules, admin_password=None,
  with_demo=False)`` initialises one template database per distinct request, dropped when
  the session ends.
- ``odoo_databases`` (per test): ``.copy(version, modules, ...)`` copies that template
  (``CREATE DATABASE ... TEMPLATE``, filestore included), dropped after the test.
- ``odoo_servers`` (per test): ``.serve(database, options, env)`` renders an odoo.conf on a
  free loopback port and starts Odoo, or ``.start(runtime, conf, port, env)`` runs a conf the
  test rendered itself; every server is stopped after the test.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from odoo_devstack.ports import free_port

from .odoo_runtime import (
    InitialisedTemplate,
    OdooDatabase,
    OdooRuntime,
    OdooServer,
    copy_database,
    drop_database,
    drop_template,
    initialise_template,
    write_odoo_conf,
)

OdooOption = str | int | bool | Sequence[str]


def _compact(version: str) -> str:
    return version.replace(".", "")


class OdooRuntimes:
    """The runtimes of one test session, each built or found in the cache on first use."""

    def __init__(self) -> None:
        """Start with none: nothing is built until a test asks."""
        self._runtimes: dict[str, OdooRuntime] = {}

    def get(self, version: str) -> OdooRuntime:
        """The runtime of ``version``, ready to run."""
        if version not in self._runtimes:
            self._runtimes[version] = OdooRuntime(version).ensure()
        return self._runtimes[version]


class OdooTemplates:
    """Initialised template databases, one per (version, modules, password, demo), shared by
    every test of the session."""

    def __init__(self, runtimes: OdooRuntimes, admin_dsn: str, workdir: Path) -> None:
        """Templates go on the server of ``admin_dsn``; their files under ``workdir``."""
        self.runtimes = runtimes
        self.admin_dsn = admin_dsn
        self.workdir = workdir
        self._templates: dict[tuple[str, tuple[str, ...], str | None, bool], InitialisedTemplate]
        self._templates = {}

    def get(
        self,
        version: str,
        modules: Sequence[str] = ("base",),
        admin_password: str | None = None,
        *,
        with_demo: bool = False,
    ) -> InitialisedTemplate:
        """The template for this request, initialised on first use."""
        key = (version, tuple(modules), admin_password, with_demo)
        if key not in self._templates:
            # A random part keeps a template left over by a crashed run on a shared server
            # from colliding with this one; the digest tells templates apart in a listing.
            digest = hashlib.sha256(repr(key).encode()).hexdigest()[:6]
            name = f"odoo_tpl_{_compact(version)}_{digest}_{secrets.token_hex(3)}"
            self._templates[key] = initialise_template(
                self.runtimes.get(version),
                self.admin_dsn,
                name,
                modules,
                admin_password,
                workdir=self.workdir / name,
                with_demo=with_demo,
            )
        return self._templates[key]

    def close(self) -> None:
        """Drop every template and its role."""
        for template in self._templates.values():
            drop_template(self.admin_dsn, template)
        self._templates.clear()


class OdooDatabases:
    """Per-test copies of the session's templates."""

    def __init__(self, templates: OdooTemplates, workdir: Path) -> None:
        """Copies are made from ``templates``; their filestores go under ``workdir``."""
        self.templates = templates
        self.workdir = workdir
        self._copies: list[OdooDatabase] = []

    def copy(
        self,
        version: str,
        modules: Sequence[str] = ("base",),
        admin_password: str | None = None,
        *,
        with_demo: bool = False,
    ) -> OdooDatabase:
        """A fresh database initialised with ``modules``, the template's role owning it."""
        template = self.templates.get(version, modules, admin_password, with_demo=with_demo)
        name = f"odoo_{_compact(version)}_{secrets.token_hex(5)}"
        database = copy_database(self.templates.admin_dsn, template, name, self.workdir / name)
        self._copies.append(database)
        return database

    def close(self) -> None:
        """Drop every copy."""
        for database in self._copies:
            drop_database(self.templates.admin_dsn, database.name)
        self._copies.clear()


class OdooServers:
    """Odoo servers of one test, all stopped when it ends."""

    def __init__(self, runtimes: OdooRuntimes, workdir: Path) -> None:
        """Config files and logs go under ``workdir``."""
        self.runtimes = runtimes
        self.workdir = workdir
        self._servers: list[OdooServer] = []

    def start(
        self,
        runtime: OdooRuntime,
        config_path: Path,
        http_port: int,
        env: Mapping[str, str] | None = None,
    ) -> OdooServer:
        """Serve with an odoo.conf the test rendered (its ``http_port`` must be ``http_port``)."""
        server = OdooServer(runtime, config_path, http_port, env=env)
        self._servers.append(server)
        return server.start()

    def serve(
        self,
        database: OdooDatabase,
        options: Mapping[str, OdooOption] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> OdooServer:
        """Serve ``database`` on a free loopback port; ``options`` add to or override the
        odoo.conf that points at it."""
        runtime = self.runtimes.get(database.version)
        port = free_port()
        rendered: dict[str, OdooOption] = {
            **database.odoo_options(runtime),
            "http_interface": "127.0.0.1",
            "http_port": port,
            # Requests are served by threads of one process, as the tests call it serially;
            # cron threads would only add noise to the log.
            "workers": 0,
            "max_cron_threads": 0,
            **(options or {}),
        }
        conf = write_odoo_conf(self.workdir / f"odoo-{database.name}-{port}.conf", rendered)
        return self.start(runtime, conf, port, env)

    def close(self) -> None:
        """Stop every server."""
        for server in self._servers:
            server.stop()
        self._servers.clear()


@pytest.fixture(scope="session")
def odoo_runtimes() -> OdooRuntimes:
    """The session's Odoo runtimes (17.0, 18.0), built or found in the cache on first use."""
    return OdooRuntimes()


@pytest.fixture(scope="session")
def odoo_templates(
    odoo_runtimes: OdooRuntimes, postgres_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OdooTemplates]:
    """Initialised template databases on the session's PostgreSQL, dropped at the end."""
    templates = OdooTemplates(odoo_runtimes, postgres_dsn, tmp_path_factory.mktemp("odoo-tpl"))
    try:
        yield templates
    finally:
        templates.close()


@pytest.fixture
def odoo_databases(odoo_templates: OdooTemplates, tmp_path: Path) -> Iterator[OdooDatabases]:
    """Copies of the templates for one test, dropped after it."""
    databases = OdooDatabases(odoo_templates, tmp_path / "odoo-data")
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture
def odoo_servers(
    odoo_runtimes: OdooRuntimes, odoo_databases: OdooDatabases, tmp_path: Path
) -> Iterator[OdooServers]:
    """Odoo servers for one test, stopped after it.

    It asks for ``odoo_databases`` only to be set up after it, and so torn down before the
    databases a server may still be using are dropped.
    """
    servers = OdooServers(odoo_runtimes, tmp_path / "odoo-servers")
    try:
        yield servers
    finally:
        servers.close()
