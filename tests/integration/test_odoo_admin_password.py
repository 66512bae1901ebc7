"""The init Job leaves no tenant answering to admin/admin: proved on real Odoo 17.0 and 18.0.

For each version the test takes the init Job the operator builds (``build_init_job``) and runs
its two containers' command lines as the kubelet would start them, against a fresh, empty
tenant database made as the operator makes one:

- ``args``/``command`` as written, ``odoo`` being the image's entrypoint and executable,
  played here by the cached runtime's interpreter and ``odoo-bin``;
- the environment resolved as the kubelet resolves it, ``secretKeyRef`` from the Secrets the
  operator writes: ``odoo-credentials`` as ``_ensure_credentials`` generates it, the others
  from ``build_secrets``;
- ``/etc/odoo/odoo.conf`` (the ``config`` mount) rendered by ``render_odoo_conf`` for a
  tenant whose database endpoint is the test server, with only what a pod gets from its
  image changed: the addons path and the data directory.

Odoo then serves the database, and the test proves that admin/admin is refused, that the
generated admin password logs in, that the monitoring user logs in and does its one read
(with the operator's own synthetic check) but sees no one else's partner, no settings and
has no admin rights, and that the operator's default-password check says "admin" for a
database initialised with plain ``-i base`` and nothing after the Job.
"""

from __future__ import annotations

import asyncio
import base64
import configparser
import http.client
import io
import json
import os
import re
import secrets
import stat
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import psycopg
import pytest
from psycopg import sql

from odoo_devstack.odoo_runtime import (
    DEFAULT_ADMIN_PASSWORD,
    ODOO_VERSIONS,
    OdooDatabase,
    OdooRuntime,
    create_tenant_database,
    drop_database,
)
from odoo_devstack.ports import free_port
from odoo_operator.backends.odoo_http import check_login
from odoo_operator.backends.odoo_users import DefaultPasswordScanner
from odoo_operator.builders.odoo_users import (
    ADMIN_PASSWORD_KEY,
    CREDENTIALS_SECRET,
    MONITOR_LOGIN,
    MONITOR_PASSWORD_KEY,
)
from odoo_operator.builders.tenant import Endpoint, Tenant, TenantCredentials
from odoo_operator.builders.workloads import build_init_job, build_secrets, render_odoo_conf
from odoo_operator.model.outcome import Outcome
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.reconcile import instance as reconcile

if TYPE_CHECKING:
    # Only for annotations: importing the plugin module before pytest registers it would
    # keep pytest from rewriting its assertions.
    from odoo_devstack.pytest_fixtures import OdooDatabases, OdooRuntimes, OdooServers

# Each version runs ``-i base`` twice (the Job, and the plain template) and starts Odoo:
# minutes on a loaded machine, more than the suite's 600 s per test.
pytestmark = pytest.mark.timeout(1800)

INSTANCE = "pwcheck"


# -- the operator's objects for a tenant on the test server -------------------------------


class _SecretStore:
    """The two calls _ensure_credentials makes, on a dictionary: the Secret it writes."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.writes = 0

    async def get(self, api: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        return self.secrets.get(name)

    async def apply(self, desired: dict[str, Any]) -> bool:
        self.secrets[desired["metadata"]["name"]] = desired
        self.writes += 1
        return True


def _tenant(database: OdooDatabase, version: str) -> tuple[Tenant, dict[str, dict[str, str]]]:
    """The tenant whose database is ``database``, and every Secret its pods read, decoded."""
    spec = InstanceSpec.from_resource(
        {
            "metadata": {"name": INSTANCE, "uid": "uid-pwcheck", "generation": 1},
            "spec": {
                "version": version,
                "hosts": ["pwcheck.example.com"],
                "database": {"name": database.name},
            },
        }
    )
    store = _SecretStore()
    owner = {"labels": {}, "ownerReferences": []}
    clients = cast(reconcile.Clients, SimpleNamespace(kube=store))
    generated = asyncio.run(reconcile._ensure_credentials(clients, spec, owner, None))
    # The role already exists with its own password (create_tenant_database): the operator
    # would have set the generated one; the test keeps the role's.
    credentials = TenantCredentials(
        database.password, generated.redis_password, generated.admin_password
    )
    tenant = Tenant(
        spec=spec,
        image=f"odoo:{version}",
        database=Endpoint(database.host, database.port),
        redis=Endpoint("127.0.0.1", 6379),
        redis_user=f"odoo-{INSTANCE}",
        redis_key_prefix=f"odoo:{INSTANCE}:",
        credentials=credentials,
    )
    objects = [*store.secrets.values(), *build_secrets(tenant)]
    decoded = {
        obj["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}
        for obj in objects
    }
    return tenant, decoded


def _pod_conf(tenant: Tenant, runtime: OdooRuntime, data_dir: Path, **extra: str) -> str:
    """``render_odoo_conf``, with what the image provides: its addons and a data folder."""
    parser = configparser.RawConfigParser(strict=True)
    parser.optionxform = str  # keep option names as written
    parser.read_string(render_odoo_conf(tenant))
    parser.set("options", "addons_path", ",".join(str(p) for p in runtime.addons_paths))
    parser.set("options", "data_dir", str(data_dir))
    for key, value in extra.items():
        parser.set("options", key, value)
    text = io.StringIO()
    parser.write(text)
    return text.getvalue()


# -- the kubelet's part -------------------------------------------------------------------


def _resolved_env(
    container: Mapping[str, Any], secrets_: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The container's variables as the kubelet sets them: values with ``$(NAME)`` expanded
    from variables defined before, ``secretKeyRef`` read from the Secrets (a missing key
    fails the test, as it would keep the pod from starting)."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["key"] in secrets_.get(ref["name"], {}), f"no key {ref} for {item['name']}"
            env[item["name"]] = secrets_[ref["name"]][ref["key"]]
        else:
            env[item["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                item["value"],
            )
    return env


def _argv(container: Mapping[str, Any], mounts: Mapping[str, Path]) -> list[str]:
    """``command`` + ``args``, or the image's entrypoint (``odoo``, as the official image's
    entrypoint ends in ``exec odoo "$@"``) + ``args``; paths under a mount point moved to the
    folder standing in for it."""
    argv = (
        [*container["command"], *container.get("args", [])]
        if "command" in container
        else [
            "odoo",
            *container["args"],
        ]
    )
    paths = {
        m["mountPath"]: mounts[m["name"]] for m in container["volumeMounts"] if m["name"] in mounts
    }

    def moved(arg: str) -> str:
        for mount_path, folder in paths.items():
            if arg == mount_path or arg.startswith(mount_path + "/"):
                return str(folder) + arg[len(mount_path) :]
        return arg

    return [moved(arg) for arg in argv]


def _image_bin(runtime: OdooRuntime, folder: Path) -> Path:
    """A folder whose ``odoo`` runs the runtime's odoo-bin, as ``odoo`` does in the image."""
    folder.mkdir(parents=True, exist_ok=True)
    odoo = folder / "odoo"
    odoo.write_text(f'#!/bin/sh\nexec "{runtime.python}" "{runtime.odoo_bin}" "$@"\n')
    odoo.chmod(odoo.stat().st_mode | stat.S_IXUSR)
    return folder


def _run_container(
    container: Mapping[str, Any],
    secrets_: Mapping[str, Mapping[str, str]],
    mounts: Mapping[str, Path],
    image_bin: Path,
    log: Path,
) -> float:
    """Run one container to its end; fail with its log tail unless it exits 0. Seconds."""
    base = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env = {**base, **_resolved_env(container, secrets_)}
    env["PATH"] = f"{image_bin}:{base.get('PATH', '/usr/bin:/bin')}"
    started = time.monotonic()
    with open(log, "wb") as out:
        result = subprocess.run(
            _argv(container, mounts),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1500,
            check=False,
        )
    seconds = time.monotonic() - started
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    assert result.returncode == 0, (
        f"container {container['name']} exited {result.returncode}:\n{tail}"
    )
    return seconds


# -- talking to the served Odoo ----------------------------------------------------------


class _Browser:
    """JSON-RPC as Odoo's web client sends it, keeping the session cookie of its login."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.session_id: str | None = None

    def call(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Content-Type": "application/json"}
        if self.session_id:
            headers["Cookie"] = f"session_id={self.session_id}"
        payload = {"jsonrpc": "2.0", "method": "call", "id": 1, "params": dict(params)}
        try:
            connection.request("POST", path, body=json.dumps(payload), headers=headers)
            response = connection.getresponse()
            body = response.read()
            for header, value in response.getheaders():
                if header.lower() == "set-cookie" and value.startswith("session_id="):
                    self.session_id = value.split(";", 1)[0].split("=", 1)[1]
        finally:
            connection.close()
        assert response.status == 200, (path, response.status, body[:300])
        answer: dict[str, Any] = json.loads(body)
        return answer

    def login(self, database: str, login: str, password: str) -> dict[str, Any]:
        return self.call(
            "/web/session/authenticate", {"db": database, "login": login, "password": password}
        )

    def orm(self, model: str, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.call(
            f"/web/dataset/call_kw/{model}/{method}",
            {"model": model, "method": method, "args": list(args), "kwargs": kwargs},
        )


def _refused(answer: Mapping[str, Any]) -> bool:
    """Odoo's answer to a wrong password or a denied call: an ``error`` member, no result."""
    return "error" in answer and "result" not in answer


def _error_name(answer: Mapping[str, Any]) -> str:
    return str(answer["error"].get("data", {}).get("name", ""))


async def _operator_login_check(port: int, database: str, password: str) -> Any:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        return await check_login(
            session, f"http://127.0.0.1:{port}", database, MONITOR_LOGIN, password, 30.0
        )


async def _default_password_users(dsn: str) -> Any:
    # A scanner of its own with room for every hash: the operator spreads the work over
    # passes, the test wants the whole answer at once.
    return await DefaultPasswordScanner(budget=100).scan(dsn, 30.0)


async def _no_tls(server: object) -> dict[str, str]:
    return {}


def _credentials(tenant: Tenant) -> tuple[str, str]:
    """Status and reason of the Credentials condition a reconcile pass would publish."""
    clients = cast(reconcile.Clients, SimpleNamespace(postgres_tls_parameters=_no_tls))
    outcome = Outcome()
    asyncio.run(reconcile._check_odoo_passwords(clients, tenant, cast(Any, None), {}, outcome))
    (condition,) = outcome.conditions
    assert condition.type == "Credentials"
    # Status messages name users, never a password the operator generated.
    for value in (tenant.credentials.database_password, tenant.credentials.admin_password):
        assert value not in condition.message
    return condition.status, condition.reason


# -- the test --------------------------------------------------------------------------------


@pytest.fixture
def fresh_database(postgres_dsn: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An empty tenant database and its role, made as the operator makes them; dropped after."""
    made: list[OdooDatabase] = []

    def make(version: str) -> OdooDatabase:
        name = f"odoo_pw_{version.replace('.', '')}_{secrets.token_hex(4)}"
        database = create_tenant_database(postgres_dsn, version, name, tmp_path / "data")
        made.append(database)
        return database

    yield make
    for database in made:
        drop_database(postgres_dsn, database.name)
        with psycopg.connect(postgres_dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(database.role))
            )


@pytest.mark.parametrize("version", ODOO_VERSIONS)
def test_the_init_job_leaves_no_default_password_and_a_monitoring_user_that_can_read_only_itself(
    version: str,
    odoo_runtimes: OdooRuntimes,
    odoo_databases: OdooDatabases,
    odoo_servers: OdooServers,
    fresh_database: Any,
    tmp_path: Path,
) -> None:
    timings: dict[str, float] = {}
    runtime = odoo_runtimes.get(version)
    database = fresh_database(version)
    tenant, tenant_secrets = _tenant(database, version)
    credentials = tenant_secrets[CREDENTIALS_SECRET]
    admin_password = credentials[ADMIN_PASSWORD_KEY]
    monitor_password = credentials[MONITOR_PASSWORD_KEY]

    # The config mount: odoo.conf as the operator renders it for this tenant.
    config_dir = tmp_path / "etc-odoo"
    config_dir.mkdir()
    conf = config_dir / "odoo.conf"
    conf.touch(mode=0o600)
    conf.write_text(_pod_conf(tenant, runtime, database.data_dir))
    mounts = {"config": config_dir, "filestore": database.data_dir, "tmp": tmp_path}
    image_bin = _image_bin(runtime, tmp_path / "image-bin")

    pod = build_init_job(tenant)["spec"]["template"]["spec"]
    logs = []
    for container in (*pod["initContainers"], *pod["containers"]):
        log = tmp_path / f"{container['name']}.log"
        timings[container["name"]] = _run_container(
            container, tenant_secrets, mounts, image_bin, log
        )
        logs.append(log.read_text(errors="replace"))
    # The users step says what it did, and no step's log holds a password.
    assert f"portal user {MONITOR_LOGIN}" in logs[-1]
    for text in logs:
        assert admin_password not in text
        assert monitor_password not in text

    # Odoo hashed the admin's password itself (PBKDF2-SHA512 at its 600,000 rounds at least),
    # and the monitoring user is a portal user, in that group and the groups it implies only.
    with psycopg.connect(database.dsn) as connection:
        admin_hash, admin_partner = connection.execute(
            "SELECT password, partner_id FROM res_users WHERE login = 'admin'"
        ).fetchone() or (None, None)
        monitor_id, share = connection.execute(
            "SELECT id, share FROM res_users WHERE login = %s AND active", (MONITOR_LOGIN,)
        ).fetchone() or (None, None)
        groups = {
            row[0]
            for row in connection.execute(
                "SELECT d.module || '.' || d.name FROM res_groups_users_rel r"
                " JOIN ir_model_data d ON d.model = 'res.groups' AND d.res_id = r.gid"
                " WHERE r.uid = %s",
                (monitor_id,),
            ).fetchall()
        }
    assert str(admin_hash).startswith("$pbkdf2-sha512$")
    assert int(str(admin_hash).split("$")[2]) >= 600_000
    assert share is True
    assert "base.group_portal" in groups
    assert not groups & {"base.group_user", "base.group_system", "base.group_erp_manager"}

    # Served: admin/admin is refused, the generated password logs in as the admin.
    port = free_port()
    serve_conf = config_dir / "serve.conf"
    serve_conf.touch(mode=0o600)
    serve_conf.write_text(
        _pod_conf(
            tenant,
            runtime,
            database.data_dir,
            http_interface="127.0.0.1",
            http_port=str(port),
            workers="0",
            max_cron_threads="0",
        )
    )
    started = time.monotonic()
    server = odoo_servers.start(runtime, serve_conf, port)
    timings["serve"] = time.monotonic() - started
    browser = _Browser(port)
    refused = browser.login(database.name, "admin", DEFAULT_ADMIN_PASSWORD)
    assert _refused(refused), refused
    admin = _Browser(port)
    assert admin.login(database.name, "admin", admin_password)["result"]["is_admin"] is True

    # The monitoring user: the operator's own synthetic check passes ...
    started = time.monotonic()
    check = asyncio.run(_operator_login_check(port, database.name, monitor_password))
    timings["operator login check"] = time.monotonic() - started
    assert check.up, server.log_tail()
    assert not asyncio.run(_operator_login_check(port, database.name, "admin")).up

    # ... and what it may do beyond that one read is nothing.
    monitor = _Browser(port)
    session = monitor.login(database.name, MONITOR_LOGIN, monitor_password)["result"]
    assert session["uid"] == monitor_id
    assert session["is_admin"] is False
    assert session["is_system"] is False
    assert session["is_internal_user"] is False
    own = monitor.orm("res.users", "read", [monitor_id], ["login"])
    assert own["result"] == [{"id": monitor_id, "login": MONITOR_LOGIN}]
    partners = monitor.orm("res.partner", "search_read", [], ["id"])
    assert "result" in partners, partners
    assert admin_partner not in {row["id"] for row in partners["result"]}
    denied = monitor.orm("res.partner", "read", [admin_partner], ["name", "email"])
    assert _refused(denied)
    assert _error_name(denied) == "odoo.exceptions.AccessError", denied
    settings = monitor.orm("ir.config_parameter", "search_read", [], ["key", "value"])
    assert _refused(settings)
    assert _error_name(settings) == "odoo.exceptions.AccessError", settings
    promote = monitor.orm("res.users", "write", [monitor_id], {"groups_id": [(4, 1)]})
    assert _refused(promote)
    rename_admin = monitor.orm("res.users", "write", [2], {"login": "taken-over"})
    assert _refused(rename_admin)

    # The operator's default-password check: nothing after the Job; "admin" on a database
    # initialised the plain way, as every tenant was before.
    started = time.monotonic()
    after = asyncio.run(_default_password_users(database.dsn))
    timings["default-password check (fixed)"] = time.monotonic() - started
    assert after.defaults == ()
    assert after.pending == 0
    assert after.checked >= 1  # the admin at least: internal, and from base's data file
    plain = odoo_databases.copy(version, ("base",))
    started = time.monotonic()
    before = asyncio.run(_default_password_users(plain.dsn))
    timings["default-password check (plain -i base)"] = time.monotonic() - started
    assert before.defaults == ("admin",)

    # Rotation as docs/odooinstance.md tells it: a script on odoo shell's stdin, in a process
    # of its own while the server runs; the new password logs in, the previous one no more.
    rotated = secrets.token_urlsafe(32)
    script = f'env.ref("base.user_admin").password = """{rotated}"""\nenv.cr.commit()\n'
    shell_argv = [str(image_bin / "odoo"), "shell", "-c", str(conf), "-d", database.name]
    shell = subprocess.run(
        [*shell_argv, "--no-http", "--log-level=warn"],
        input=script,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert shell.returncode == 0, shell.stderr[-2000:]
    assert _refused(_Browser(port).login(database.name, "admin", admin_password))
    admin = _Browser(port)
    assert admin.login(database.name, "admin", rotated)["result"]["uid"] == 2

    # The same check as the reconciler runs it, as the tenant's role: Credentials is True,
    # and turns False once someone gives the admin "admin" again (Odoo hashes it anew).
    assert _credentials(tenant) == ("True", "NoDefaultPassword")
    reset = admin.orm("res.users", "write", [2], {"password": DEFAULT_ADMIN_PASSWORD})
    assert reset.get("result") is True, reset
    assert _credentials(tenant) == ("False", "DefaultPassword")
    print(f"\nOdoo {version} timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
