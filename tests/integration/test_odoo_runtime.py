"""Real Odoo 17.0 and 18.0 from the harness's cached runtimes (odoo_devstack.odoo_runtime).

Each runtime is built (or found in the cache), initialises a database the way the operator
prepares one (a role without CREATEDB owning an empty UTF8 database), and serves it. What a
command-line initialisation leaves behind is asserted as it is, including the defect the
operator must repair: the ``admin`` user's password is ``admin``.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
import redis

from odoo_devstack.odoo_runtime import (
    DEFAULT_ADMIN_PASSWORD,
    ODOO_VERSIONS,
    SOURCE_ENV,
    OdooDatabase,
    OdooRuntime,
    OdooSourceMissingError,
    RuntimeBuildError,
    install_modules,
    resolve_source,
)

if TYPE_CHECKING:
    # Only for annotations: importing the plugin module before pytest registers it would
    # keep pytest from rewriting its assertions.
    from odoo_devstack.pytest_fixtures import OdooDatabases, OdooRuntimes, OdooServers

# Registers the fixtures for this module; the root conftest may register them suite-wide.

# A cold build of a runtime (about a minute per version here, several on a loaded machine)
# and the first initialisation of each template run inside the setup of the first test that
# needs them, which the suite's 600 s per-test timeout would otherwise cut short.
pytestmark = pytest.mark.timeout(1800)

each_version = pytest.mark.parametrize("version", ODOO_VERSIONS)

# The partners `-i base` creates from base's data files, on both versions: the company, the
# admin, OdooBot (partner_root), the public user and the two user templates.
BASE_PARTNERS_WITHOUT_DEMO = {
    "base.main_partner",
    "base.partner_admin",
    "base.partner_root",
    "base.public_partner",
    "base.default_user_res_partner",
    "base.template_portal_user_id_res_partner",
}
# Two of the records base's demo files add (a company contact and the demo user's partner).
BASE_DEMO_PARTNERS = {"base.res_partner_1", "base.partner_demo"}


def _partner_xmlids(database: OdooDatabase) -> tuple[int, set[str]]:
    """How many partners the database has, and the external ids of those that have one."""
    with psycopg.connect(database.dsn) as connection:
        row = connection.execute("SELECT count(*) FROM res_partner").fetchone()
        xmlids = connection.execute(
            "SELECT d.module || '.' || d.name FROM ir_model_data d"
            " JOIN res_partner p ON p.id = d.res_id WHERE d.model = 'res.partner'"
        ).fetchall()
    assert row is not None
    return row[0], {xmlid for (xmlid,) in xmlids}


def _modules_with_demo(database: OdooDatabase) -> dict[str, bool]:
    with psycopg.connect(database.dsn) as connection:
        rows = connection.execute(
            "SELECT name, demo FROM ir_module_module WHERE state = 'installed'"
        ).fetchall()
    return {name: bool(demo) for name, demo in rows}


@each_version
def test_the_runtime_is_cached_and_runs_odoo_of_its_version(
    odoo_runtimes: OdooRuntimes, version: str
) -> None:
    runtime = odoo_runtimes.get(version)
    assert runtime.is_built, f"no completion stamp in {runtime.root}"

    # A second runtime object with the same inputs finds the same folder and builds nothing.
    again = OdooRuntime(version).ensure()
    assert again.root == runtime.root
    assert not again.built_now

    result = subprocess.run(
        runtime.command("--version"), capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert f"Odoo Server {version}" in result.stdout
    assert runtime.python.is_relative_to(runtime.root)
    assert (runtime.core_addons_paths[1] / "base" / "__manifest__.py").is_file()
    assert (runtime.core_addons_paths[0] / "web" / "__manifest__.py").is_file()
    assert (runtime.site_addons_path / "queue_job" / "__manifest__.py").is_file()
    assert runtime.addons_paths == runtime.core_addons_paths + runtime.extra_addons_paths


def test_session_redis_is_importable_in_the_17_0_runtime(odoo_runtimes: OdooRuntimes) -> None:
    runtime = odoo_runtimes.get("17.0")
    assert runtime.cloud_addons_path is not None
    script = (
        "import sys, odoo; from odoo.tools import config;"
        " config.parse_config(['--addons-path=' + sys.argv[1]]);"
        " import odoo.addons.session_redis as module; print(module.__file__)"
    )
    addons_path = ",".join(str(path) for path in runtime.addons_paths)
    result = subprocess.run(
        [str(runtime.python), "-c", script, addons_path],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=runtime.source_dir,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(runtime.cloud_addons_path / "session_redis"))


def test_a_17_0_server_with_session_redis_keeps_its_web_sessions_in_redis(
    odoo_databases: OdooDatabases, odoo_servers: OdooServers, redis_url: str
) -> None:
    database = odoo_databases.copy("17.0", ("base",))
    prefix = f"odoo-test-{secrets.token_hex(4)}"
    server = odoo_servers.serve(
        database,
        {"server_wide_modules": ["base", "web", "session_redis"]},
        env={
            "ODOO_SESSION_REDIS": "1",
            "ODOO_SESSION_REDIS_URL": redis_url,
            "ODOO_SESSION_REDIS_PREFIX": prefix,
        },
    )
    # session_redis names its keys "session:" + ":<prefix>:" + the session id.
    pattern = f"session::{prefix}:*"
    with redis.Redis.from_url(redis_url) as client:
        before = client.keys(pattern)
        answer = server.authenticate(database.name, "admin", DEFAULT_ADMIN_PASSWORD)
        assert "result" in answer, json.dumps(answer)[:2000]
        after = client.keys(pattern)
    assert before == []
    assert len(after) == 1, server.log_tail()


def test_the_18_0_runtime_carries_openupgrade(odoo_runtimes: OdooRuntimes) -> None:
    runtime = odoo_runtimes.get("18.0")
    scripts = runtime.openupgrade_scripts_path
    assert scripts is not None
    # One folder of migration scripts per module, base's among them.
    assert (scripts / "base").is_dir()
    assert (runtime.site_addons_path / "openupgrade_framework" / "__manifest__.py").is_file()
    result = subprocess.run(
        [str(runtime.python), "-c", "import openupgradelib; print(openupgradelib.__file__)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert OdooRuntime("17.0").openupgrade_scripts_path is None


@each_version
def test_a_database_initialised_without_demo_has_no_demo_data(
    odoo_databases: OdooDatabases, version: str
) -> None:
    database = odoo_databases.copy(version, ("base",))

    with_demo = {name for name, demo in _modules_with_demo(database).items() if demo}
    count, xmlids = _partner_xmlids(database)

    assert with_demo == set()
    assert xmlids == BASE_PARTNERS_WITHOUT_DEMO
    # Every partner is one of those: none was created without an external id either.
    assert count == len(BASE_PARTNERS_WITHOUT_DEMO)


@each_version
def test_odoo_loads_demo_data_when_initialised_without_the_demo_flag(
    odoo_databases: OdooDatabases, version: str
) -> None:
    """What the flag prevents: Odoo's default, on both versions, is to load demo data."""
    database = odoo_databases.copy(version, ("base",), with_demo=True)

    count, xmlids = _partner_xmlids(database)

    assert _modules_with_demo(database)["base"] is True
    assert xmlids >= BASE_DEMO_PARTNERS
    assert count > len(BASE_PARTNERS_WITHOUT_DEMO) + len(BASE_DEMO_PARTNERS)


@each_version
def test_a_database_initialised_from_the_command_line_has_the_admin_password_admin(
    odoo_databases: OdooDatabases, odoo_servers: OdooServers, version: str
) -> None:
    """The defect the operator must repair: `odoo-bin -i base` leaves admin / admin."""
    database = odoo_databases.copy(version, ("base",))
    server = odoo_servers.serve(database)

    health = server.get("/web/health")
    answer = server.authenticate(database.name, "admin", "admin")

    assert health.status == 200
    assert health.json() == {"status": "pass"}
    assert "result" in answer, json.dumps(answer)[:2000]
    assert answer["result"]["uid"] == _admin_user_id(database)
    assert answer["result"]["db"] == database.name
    assert answer["result"]["server_version"] == version


@each_version
def test_an_admin_password_given_at_initialisation_replaces_admin_admin(
    odoo_databases: OdooDatabases, odoo_servers: OdooServers, version: str
) -> None:
    password = secrets.token_urlsafe(18)
    database = odoo_databases.copy(version, ("base",), admin_password=password)
    server = odoo_servers.serve(database)

    refused = server.authenticate(database.name, "admin", "admin")
    accepted = server.authenticate(database.name, "admin", password)

    assert "result" not in refused
    assert refused["error"]["data"]["name"] == "odoo.exceptions.AccessDenied"
    assert "result" in accepted, json.dumps(accepted)[:2000]
    assert accepted["result"]["uid"] == _admin_user_id(database)


@each_version
def test_the_server_stops_cleanly_on_sigterm(
    odoo_databases: OdooDatabases, odoo_servers: OdooServers, version: str
) -> None:
    database = odoo_databases.copy(version, ("base",))
    server = odoo_servers.serve(database)

    exit_code = server.stop()

    assert exit_code == 0, server.log_tail()
    assert server.process is not None
    assert "Initiating shutdown" in server.process.log_path.read_text(errors="replace")


@each_version
def test_queue_job_installs_on_an_initialised_database(
    odoo_runtimes: OdooRuntimes, odoo_databases: OdooDatabases, version: str
) -> None:
    runtime = odoo_runtimes.get(version)
    database = odoo_databases.copy(version, ("base",))

    install_modules(runtime, database, ["queue_job"], database.data_dir.parent / "install")

    modules = _modules_with_demo(database)
    assert "queue_job" in modules, sorted(modules)
    # Its dependencies came along, still without demo data.
    assert {"mail", "base_sparse_field", "web"} <= set(modules)
    assert not any(modules.values())


def _admin_user_id(database: OdooDatabase) -> int:
    with psycopg.connect(database.dsn) as connection:
        row = connection.execute(
            "SELECT res_id FROM ir_model_data WHERE module = 'base' AND name = 'user_admin'"
        ).fetchone()
    assert row is not None, "base.user_admin has no external id"
    return int(row[0])


def _fake_odoo_tree(parent: Path, requirements: str) -> Path:
    """Just enough of a source tree to be recognised as Odoo: odoo-bin and odoo/release.py."""
    tree = parent / "odoo-17.0"
    (tree / "odoo").mkdir(parents=True)
    (tree / "odoo-bin").write_text("")
    (tree / "odoo" / "release.py").write_text("")
    (tree / "requirements.txt").write_text(requirements)
    return tree


def _no_tree(path: Path) -> bool:
    return False


def test_a_source_option_may_name_a_folder_of_archives_a_tree_or_a_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = _fake_odoo_tree(tmp_path / "trees", "")
    archives = tmp_path / "archives"
    archives.mkdir()
    (archives / "odoo-17.0.tar.xz").write_bytes(b"")
    monkeypatch.setenv(SOURCE_ENV, str(archives))

    from_env = resolve_source(None, SOURCE_ENV, "17.0", "odoo-17.0", lambda p: p == tree)
    from_template = resolve_source(
        str(tmp_path / "trees" / "odoo-{version}"),
        SOURCE_ENV,
        "17.0",
        "odoo-17.0",
        lambda p: p == tree,
    )
    from_url = resolve_source(
        "https://example.invalid/{version}/odoo.tar.gz", SOURCE_ENV, "17.0", "odoo-17.0", _no_tree
    )

    assert (from_env.kind, from_env.location) == ("archive", str(archives / "odoo-17.0.tar.xz"))
    assert (from_template.kind, from_template.location) == ("tree", str(tree))
    assert (from_url.kind, from_url.location) == ("url", "https://example.invalid/17.0/odoo.tar.gz")
    with pytest.raises(OdooSourceMissingError, match=SOURCE_ENV):
        # The folder holds no 18.0 archive, and is not a source tree itself.
        resolve_source(None, SOURCE_ENV, "18.0", "odoo-18.0", _no_tree)


def test_a_failed_build_names_its_step_shows_the_pip_log_and_leaves_no_stamp(
    tmp_path: Path,
) -> None:
    """A source tree (from a file:// URL, so download and unpack run too) whose
    requirements.txt cannot be satisfied: pip is told to use no index, so this never
    reaches the network."""
    tree = _fake_odoo_tree(
        tmp_path / "tree",
        "--no-index\n"
        "odoo-devstack-unsatisfiable==1.0\n"
        "python-ldap==3.4.0 ; sys_platform != 'win32'\n",
    )
    archive = tmp_path / "odoo-17.0.tar.gz"
    with tarfile.open(archive, "w:gz") as packed:
        packed.add(tree, arcname="odoo-17.0")
    runtime = OdooRuntime("17.0", source=archive.as_uri(), cache_dir=tmp_path / "cache")

    with pytest.raises(RuntimeBuildError) as failure:
        runtime.ensure()

    assert failure.value.step == "pip install -r requirements.txt"
    assert "pip install -r requirements.txt" in str(failure.value)
    # The tail is pip's own verdict (its resolver fails on the first requirement it cannot
    # meet, which with --no-index may be one of the recipe's pins).
    assert "ERROR:" in failure.value.log_tail
    assert "pip.pypa.io" in failure.value.log_tail
    assert not runtime.is_built
    # The unpacked tree was found one level down, and python-ldap left out of its requirements.
    assert (runtime.source_dir / "odoo-bin").is_file()
    assert "python-ldap" not in (runtime.root / "requirements.txt").read_text()
