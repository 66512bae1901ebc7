"""Hostile input against the real apiserver and the running operator, table-driven.

Every case is either refused (HTTP 422 with a message that names the field) or admitted
and handled with nothing lost. What must never be lost is watched on a module-scoped
*victim* tenant: its database with a marker row, the password of its role, its Redis user
with a marker key, its namespace, its attachments; and around it the PostgreSQL admin
role's attributes and the operator's own namespace. Each case ends by checking all of them.

A second module-scoped tenant, *staging*, has a name of exactly 40 characters (the longest
allowed) and was created without ``spec.filestore``: it is the non-production target of
restores and the subject of admitted changes (annotations with garbage values).

Refusal-only creates use ``dry_run="All"``: the apiserver runs the schema and the webhooks
and stores nothing. The named reproductions at the end create and update for real.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from kubernetes import client
from kubernetes.client.rest import ApiException
from psycopg import conninfo, sql

from e2e.tenants import (
    GROUP,
    PLURAL,
    VERSION,
    create_backup,
    delete_quietly,
    eventually,
    make_instance,
    redis_as,
    refusal,
    secret_values,
    tenant_login,
    wait_gone,
    wait_ready,
)
from odoo_devstack.operator_setup import OPERATOR_NAMESPACE
from odoo_devstack.processes import ManagedProcess

TENANT_PREFIX = "hx"
INSTANCES, BACKUPS, RESTORES = PLURAL, "odoobackups", "odoorestores"
INSTANCE_LABEL = f"{GROUP}/instance"
ROTATE = f"{GROUP}/rotate-credentials"
MAINTENANCE = f"{GROUP}/maintenance"
VERIFY = f"{GROUP}/verify"
LAST_HANDLED = f"{GROUP}/last-handled-configuration"
HOLD = "e2e.tenantops.io/hold"  # a finalizer of the test's own, to keep an object Terminating
MARKER = "written before the hostile input"
BIG = 120 * 1024  # an annotation value of 120 KiB: under the 256 KiB the apiserver allows
ADMIN_ATTRIBUTES = sql.SQL(
    "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolconnlimit"
    " FROM pg_catalog.pg_roles WHERE rolname = {}"
)


# -- the fleet the cases run against ------------------------------------------------------


@dataclass
class Fleet:
    """The tenants, backups and namespaces every case refers to, and what must survive."""

    api: client.CustomObjectsApi
    k8s: client.ApiClient
    operator: ManagedProcess
    postgres_dsn: str
    redis_url: str
    victim: str
    staging: str
    victim_backup: str
    staging_backup: str
    unlabelled: str  # an instance name whose namespace exists, not a tenant's
    squatted: str  # an instance name whose namespace is labelled for the victim
    admin_role: str = ""
    admin_attributes: tuple[Any, ...] = ()
    operator_namespace_existed: bool = False
    victim_spec: dict[str, Any] = field(default_factory=dict)
    cleanup: list[tuple[str, str]] = field(default_factory=list)

    @property
    def victim_db(self) -> str:
        return database_of(self.victim)

    @property
    def staging_db(self) -> str:
        return database_of(self.staging)

    @property
    def victim_host(self) -> str:
        return f"{self.victim}.odoo.example.com"

    @property
    def staging_host(self) -> str:
        return f"{self.staging}.odoo.example.com"

    @property
    def victim_redis_key(self) -> str:
        return f"odoo:{self.victim}:hostile-marker"

    @property
    def victim_attachment(self) -> Path:
        return filestore_of(self.operator, self.victim) / "marker" / "invoice.pdf"

    def words(self) -> dict[str, str]:
        """What an expected message may name: ``{victim}``, ``{victim_db}`` and so on."""
        return {
            "victim": self.victim,
            "victim_db": self.victim_db,
            "victim_host": self.victim_host,
            "staging": self.staging,
            "staging_db": self.staging_db,
            "admin_role": self.admin_role,
        }

    def instance(self, name: str) -> dict[str, Any]:
        return dict(self.api.get_cluster_custom_object(GROUP, VERSION, INSTANCES, name))

    def admin_attributes_now(self) -> tuple[Any, ...]:
        with psycopg.connect(self.postgres_dsn) as admin:
            row = admin.execute(ADMIN_ATTRIBUTES.format(sql.Literal(self.admin_role))).fetchone()
        assert row is not None, f"the admin role {self.admin_role} is gone"
        return tuple(row)

    def assert_intact(self) -> None:
        """Nothing of the victim, the server or the operator was lost or changed."""
        assert self.operator.exit_code() is None, self.operator.log_tail()
        # The database exists and holds the marker row.
        with psycopg.connect(self.postgres_dsn) as admin:
            found = admin.execute(
                "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (self.victim_db,)
            ).fetchone()
        assert found is not None, f"the victim's database {self.victim_db} is gone"
        # The role's password, as the operator keeps it, still logs in.
        namespace = f"odoo-{self.victim}"
        credentials = secret_values(self.k8s, namespace, "odoo-credentials")
        database = secret_values(self.k8s, namespace, "odoo-database")
        assert database["password"] == credentials["database-password"]
        login = conninfo.make_conninfo(
            self.postgres_dsn,
            user=database["username"],
            password=credentials["database-password"],
            dbname=self.victim_db,
        )
        with psycopg.connect(login) as tenant:
            rows = tenant.execute("SELECT note FROM hostile_marker").fetchall()
        assert rows == [(MARKER,)], rows
        # The Redis user authenticates and still reads its key.
        cache = secret_values(self.k8s, namespace, "odoo-redis")
        assert cache["password"] == credentials["redis-password"]
        user = redis_as(self.redis_url, cache["username"], cache["password"])
        assert user.get(self.victim_redis_key) == b"kept"
        # The namespace is the victim's, and the attachments are still there.
        labels = client.CoreV1Api(self.k8s).read_namespace(namespace).metadata.labels or {}
        assert labels.get(INSTANCE_LABEL) == self.victim
        assert self.victim_attachment.read_bytes() == MARKER.encode()
        # The instance still asks for what it asked for.
        victim = self.instance(self.victim)
        assert not victim["metadata"].get("deletionTimestamp")
        for key in ("hosts", "database", "filestore", "deletionPolicy", "config"):
            assert victim["spec"].get(key) == self.victim_spec.get(key), key
        # The server's admin role and the operator's namespace are as they were.
        assert self.admin_attributes_now() == self.admin_attributes
        if self.operator_namespace_existed:
            client.CoreV1Api(self.k8s).read_namespace(OPERATOR_NAMESPACE)

    def forget_victim_spec(self) -> None:
        """Take the victim's current spec as the one to keep (after an admitted change)."""
        self.victim_spec = copy.deepcopy(self.instance(self.victim)["spec"])


def database_of(instance: str) -> str:
    return f"odoo_{instance.replace('-', '_')}"


def filestore_of(operator: ManagedProcess, instance: str) -> Path:
    """Where the operator reads the tenant's attachments from (see register_servers)."""
    return operator.log_path.parent / "filestores" / instance


def _unique(prefix: str = TENANT_PREFIX) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _host() -> str:
    return f"{uuid.uuid4().hex[:10]}.odoo.example.com"


def _instance(name: str | None = None, **spec: Any) -> dict[str, Any]:
    """The sample instance under a fresh name and host, with spec fields replaced."""
    body = make_instance(name or _unique(), **spec)
    if "hosts" not in spec:
        body["spec"]["hosts"] = [_host()]
    return body


def _backup(instance: str, name: str | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OdooBackup",
        "metadata": {"name": name or _unique()},
        "spec": {"instance": instance, **spec},
    }


def _restore(backup: str, target: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OdooRestore",
        "metadata": {"name": _unique("hx-rst")},
        "spec": {"backup": backup, "target": {"instance": target}, **spec},
    }


def _webhook_answers(api: client.CustomObjectsApi, operator: ManagedProcess) -> None:
    """Wait until the apiserver consults the operator's webhook (as e2e.test_admission)."""
    probe = make_instance(_unique("probe"), version="16.0")  # refused by the webhook only
    deadline = time.monotonic() + 30
    while True:
        try:
            api.create_cluster_custom_object(GROUP, VERSION, INSTANCES, probe, dry_run="All")
        except ApiException as exc:
            if "denied the request" in str(exc.body):
                return
        assert time.monotonic() < deadline, f"the webhook never answered\n{operator.log_tail()}"
        time.sleep(0.2)


def _finished(
    api: client.CustomObjectsApi, plural: str, name: str, timeout: float = 120
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(api.get_cluster_custom_object(GROUP, VERSION, plural, name))
        return (found.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    eventually(done, f"{plural}/{name} to finish", timeout)
    return found


def _condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return {}


def _wait_stalled(fleet: Fleet, name: str, reason: str, timeout: float = 90) -> str:
    """Wait for Stalled=True with ``reason`` on instance ``name``; its message."""
    seen: dict[str, Any] = {}

    def stalled() -> bool:
        seen.clear()
        seen.update(_condition(fleet.instance(name), "Stalled"))
        return seen.get("status") == "True" and seen.get("reason") == reason

    try:
        eventually(stalled, f"{name} Stalled with reason {reason}", timeout)
    except pytest.fail.Exception:
        pytest.fail(f"{name}: Stalled is {seen}\n{fleet.operator.log_tail()}")
    return str(seen.get("message", ""))


def _drop_database_and_role(postgres_dsn: str, name: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def fleet(
    k8s: client.ApiClient,
    operator: ManagedProcess,
    postgres_dsn: str,
    redis_url: str,
) -> Iterator[Fleet]:
    """The victim and the staging tenant, Ready, with a backup each; foreign namespaces."""
    api, core = client.CustomObjectsApi(k8s), client.CoreV1Api(k8s)
    _webhook_answers(api, operator)
    tag = uuid.uuid4().hex[:6]
    victim = f"hx-victim-{tag}"
    staging = f"hx-{tag}-staging-".ljust(40, "s")  # the longest name there may be
    fleet = Fleet(
        api=api,
        k8s=k8s,
        operator=operator,
        postgres_dsn=postgres_dsn,
        redis_url=redis_url,
        victim=victim,
        staging=staging,
        victim_backup=f"{victim}-before",
        staging_backup=f"{staging[:30]}-before",
        unlabelled=f"hx-unlabelled-{tag}",
        squatted=f"hx-squatted-{tag}",
    )
    assert len(staging) == 40
    core.create_namespace({"metadata": {"name": f"odoo-{fleet.unlabelled}"}})
    core.create_namespace(
        {"metadata": {"name": f"odoo-{fleet.squatted}", "labels": {INSTANCE_LABEL: victim}}}
    )
    staging_body = make_instance(staging, environment="staging", deletionPolicy="Delete")
    del staging_body["spec"]["filestore"]  # omitted: the schema's default is what it gets
    for body in (make_instance(victim, deletionPolicy="Delete"), staging_body):
        api.create_cluster_custom_object(GROUP, VERSION, INSTANCES, body)
        fleet.cleanup.append((INSTANCES, body["metadata"]["name"]))
    try:
        for name in (victim, staging):
            wait_ready(api, name, operator)
        _seed_victim(fleet)
        for instance, backup in ((victim, fleet.victim_backup), (staging, fleet.staging_backup)):
            create_backup(api, instance, backup)
            fleet.cleanup.insert(0, (BACKUPS, backup))
        for backup in (fleet.victim_backup, fleet.staging_backup):
            done = _finished(api, BACKUPS, backup)
            assert done["status"]["phase"] == "Succeeded", done["status"]
        with psycopg.connect(postgres_dsn) as admin:
            row = admin.execute("SELECT current_user::text").fetchone()
        assert row is not None
        fleet.admin_role = row[0]
        fleet.admin_attributes = fleet.admin_attributes_now()
        fleet.operator_namespace_existed = any(
            ns.metadata.name == OPERATOR_NAMESPACE for ns in core.list_namespace().items
        )
        fleet.forget_victim_spec()
        fleet.assert_intact()
        yield fleet
    finally:
        for plural, name in fleet.cleanup:
            delete_quietly(api, plural, name)
        for namespace in (fleet.unlabelled, fleet.squatted):
            core.delete_namespace(f"odoo-{namespace}")
        for plural, name in fleet.cleanup:
            wait_gone(api, plural, name, 180)


def _seed_victim(fleet: Fleet) -> None:
    with psycopg.connect(tenant_login(fleet.k8s, fleet.postgres_dsn, fleet.victim)) as db:
        db.execute("CREATE TABLE hostile_marker (note text NOT NULL)")
        db.execute("INSERT INTO hostile_marker (note) VALUES (%s)", (MARKER,))
    cache = secret_values(fleet.k8s, f"odoo-{fleet.victim}", "odoo-redis")
    user = redis_as(fleet.redis_url, cache["username"], cache["password"])
    assert user.set(fleet.victim_redis_key, "kept")
    fleet.victim_attachment.parent.mkdir(parents=True, exist_ok=True)
    fleet.victim_attachment.write_bytes(MARKER.encode())


# -- expectations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """The apiserver answers ``status`` with a message holding ``field`` and ``detail``
    (which may name ``{victim}``, ``{victim_db}``... of :meth:`Fleet.words`)."""

    field: str
    detail: str = ""
    status: int = 422


ADMITTED = None
Expected = Refused | None
Builder = Callable[[Fleet], dict[str, Any]]


def _judge(fleet: Fleet, call: Callable[[], Any], expected: Expected) -> Any:
    """Run ``call``; it must be refused as ``expected`` says, or admitted when it is None."""
    if expected is None:
        return call()
    status, message = refusal(call)
    assert status == expected.status, message
    assert expected.field in message, message
    assert expected.detail.format(**fleet.words()) in message, message
    return None


# -- OdooInstance: create -----------------------------------------------------------------


def _named(name: str) -> Builder:
    return lambda _: _instance(name)


def _with(**spec: Any) -> Builder:
    return lambda _: _instance(**copy.deepcopy(spec))


def _database(name: str, server: str = "main") -> Builder:
    return _with(database={"serverRef": server, "name": name})


def _hosts(*hosts: str) -> Builder:
    return lambda f: _instance(hosts=[h.format(**f.words()) for h in hosts])


def _config(**options: str) -> Builder:
    return _with(config=options)


def _annotated(key: str, value: str) -> Builder:
    def build(_: Fleet) -> dict[str, Any]:
        body = _instance()
        body["metadata"]["annotations"] = {key: value}
        return body

    return build


def _host_of_length(length: int, label: int = 63) -> str:
    """A host under odoo.example.com exactly ``length`` characters long."""
    suffix = ".odoo.example.com"
    labels: list[str] = []
    room = length - len(suffix)
    while room > 0:
        size = min(label, room)
        labels.append(uuid.uuid4().hex[0] + "a" * (size - 1))
        room -= size + 1
    host = ".".join(labels) + suffix
    if len(host) < length:  # the last separator found no room for a label: widen one
        labels[0] += "a" * (length - len(host))
        host = ".".join(labels) + suffix
    assert len(host) == length
    return host


NAME = Refused("metadata.name")
DATABASE_NAME = Refused("spec.database.name")
RESERVED = Refused("spec.database.name", "is reserved")
FILESTORE = Refused("spec.filestore.size")
HOST = Refused("spec.hosts[0]")
ELSEWHERE = Refused("spec.hosts[0]", "outside the allowed domains")
CONFIG = Refused("spec.config")
OWNED = Refused("spec.config", "is owned by the operator")

INSTANCE_CREATES = [
    # metadata.name: the tenant namespace and every name derived from it
    pytest.param(_named("hx-" + "a" * 37), ADMITTED, id="name-at-40-chars"),
    pytest.param(_named("hx-" + "a" * 38), Refused("metadata.name", "at most 40"), id="name-41"),
    pytest.param(_named("hx-" + "a" * 250), NAME, id="name-253-chars"),
    pytest.param(_named("Hx-Upper"), NAME, id="name-uppercase"),
    pytest.param(_named("hx.dotted"), Refused("metadata.name", "DNS label"), id="name-with-dot"),
    pytest.param(_named("hx-caf\u00e9"), NAME, id="name-unicode"),
    pytest.param(_named("hx-"), NAME, id="name-trailing-dash"),
    pytest.param(_named("hx_under"), NAME, id="name-underscore"),
    pytest.param(
        _named("operator"), Refused("metadata.name", "operator's own namespace"), id="name-operator"
    ),
    pytest.param(
        lambda f: _instance(f.unlabelled),
        Refused("metadata.name", "is not a tenant namespace"),
        id="name-of-an-unlabelled-namespace",
    ),
    pytest.param(
        lambda f: _instance(f.squatted),
        Refused("metadata.name", "belongs to OdooInstance {victim}"),
        id="name-of-a-namespace-labelled-for-another-instance",
    ),
    # spec.database.name: PostgreSQL keeps 63 bytes; reserved and foreign names
    pytest.param(_database("hx_" + "d" * 60), ADMITTED, id="database-name-63-bytes"),
    pytest.param(_database("hx_" + "d" * 61), DATABASE_NAME, id="database-name-64-bytes"),
    pytest.param(_database("hx_caf\u00e9"), DATABASE_NAME, id="database-name-unicode"),
    pytest.param(_database("Odoo_shop"), DATABASE_NAME, id="database-name-uppercase"),
    pytest.param(_database("odoo.shop"), DATABASE_NAME, id="database-name-with-dot"),
    pytest.param(_database("odoo-shop"), DATABASE_NAME, id="database-name-with-hyphen"),
    pytest.param(
        _database('x"; DROP DATABASE postgres; --'), DATABASE_NAME, id="database-name-sql"
    ),
    pytest.param(_database(""), DATABASE_NAME, id="database-name-empty"),
    *[
        pytest.param(_database(name), RESERVED, id=f"reserved-{name}")
        for name in (
            "postgres",
            "template0",
            "template1",
            "azure_maintenance",
            "azure_sys",
            "azuresu",
            "pg_signal_backend",
            "pg_hx",
        )
    ],
    pytest.param(
        _database("postgres", "dedicated"),
        RESERVED,
        id="reserved-postgres-on-the-dedicated-server",
    ),
    pytest.param(
        lambda f: _instance(database={"serverRef": "main", "name": f.victim_db}),
        Refused("spec.database.name", "is already the database of OdooInstance {victim}"),
        id="database-name-of-another-tenant",
    ),
    pytest.param(
        lambda f: _instance(database={"name": f.victim_db}),
        Refused("spec.database.name", "is already the database of OdooInstance {victim}"),
        id="database-name-of-another-tenant-on-the-default-server",
    ),
    pytest.param(
        lambda f: _instance(database={"name": f.staging_db}),
        Refused("spec.database.name", "is already the database of OdooInstance {staging}"),
        id="database-name-of-the-40-char-tenant",
    ),
    # spec.hosts: 253 characters, DNS labels, ownership and the allowed domains
    pytest.param(_hosts("{victim_host}"), Refused("spec.hosts[0]", "{victim}"), id="host-taken"),
    pytest.param(
        lambda f: _instance(hosts=[_host(), f.victim_host]),
        Refused("spec.hosts[1]", "already served by OdooInstance {victim}"),
        id="host-taken-as-second-host",
    ),
    pytest.param(
        lambda f: _instance(hosts=[f.victim_host.upper()]), HOST, id="host-taken-uppercase"
    ),
    pytest.param(_hosts("{victim_host}."), HOST, id="host-taken-with-root-dot"),
    pytest.param(lambda _: _instance(hosts=[_host_of_length(253)]), ADMITTED, id="host-253"),
    pytest.param(lambda _: _instance(hosts=[_host_of_length(254)]), HOST, id="host-254"),
    pytest.param(
        lambda _: _instance(hosts=[_host_of_length(100, label=64)]), HOST, id="host-label-64"
    ),
    pytest.param(_hosts("caf\u00e9.odoo.example.com"), HOST, id="host-unicode"),
    pytest.param(_hosts("*.odoo.example.com"), HOST, id="host-wildcard"),
    pytest.param(_hosts("shop.odoo.example.com:8069"), HOST, id="host-with-port"),
    pytest.param(_hosts("shop.example.com.attacker.io"), ELSEWHERE, id="host-domain-as-prefix"),
    pytest.param(_hosts("shop.notexample.com"), ELSEWHERE, id="host-lookalike-domain"),
    pytest.param(
        _hosts("twin.odoo.example.com", "twin.odoo.example.com"),
        Refused("spec.hosts[1]"),
        id="hosts-duplicated",
    ),
    pytest.param(_with(hosts=[]), Refused("spec.hosts"), id="hosts-empty"),
    pytest.param(
        lambda _: _instance(hosts=[_host() for _ in range(11)]),
        Refused("spec.hosts"),
        id="hosts-eleven",
    ),
    # quantities
    pytest.param(_with(filestore={"size": "lots"}), FILESTORE, id="filestore-lots"),
    pytest.param(_with(filestore={"size": "-1Gi"}), FILESTORE, id="filestore-negative"),
    pytest.param(_with(filestore={"size": "0"}), FILESTORE, id="filestore-zero"),
    pytest.param(_with(filestore={"size": 0}), FILESTORE, id="filestore-zero-integer"),
    pytest.param(_with(filestore={"size": "0Gi"}), FILESTORE, id="filestore-zero-gi"),
    pytest.param(_with(filestore={"size": "10 Gi"}), FILESTORE, id="filestore-with-space"),
    pytest.param(_with(filestore={"size": ""}), FILESTORE, id="filestore-empty"),
    pytest.param(_with(filestore={"size": "1Ti"}), ADMITTED, id="filestore-1Ti"),
    pytest.param(
        _with(resources={"requests": {"cpu": "lots"}}),
        Refused("spec.resources.requests"),
        id="requests-lots",
    ),
    pytest.param(
        _with(resources={"limits": {"memory": "-1Gi"}}),
        Refused("spec.resources.limits"),
        id="limits-negative",
    ),
    pytest.param(
        _with(resources={"requests": {"memory": "1Gi; rm -rf /"}}),
        Refused("spec.resources.requests"),
        id="requests-with-shell",
    ),
    pytest.param(
        _with(resources={"requests": {"cpu": "500m", "memory": "1Gi"}}),
        ADMITTED,
        id="requests-plain",
    ),
    pytest.param(
        _with(database={"connectionLimit": 4}),
        Refused("spec.database.connectionLimit"),
        id="connection-limit-4",
    ),
    pytest.param(_with(replicas=21), Refused("spec.replicas"), id="replicas-21"),
    pytest.param(_with(workers=-1), Refused("spec.workers"), id="workers-negative"),
    pytest.param(_with(cron={"replicas": 2}), Refused("spec.cron.replicas"), id="cron-twice"),
    # spec.config: an allowlist, case-insensitive names, one-line values
    pytest.param(_config(LIST_DB="True"), OWNED, id="config-LIST_DB"),
    pytest.param(_config(ADMIN_PASSWD="hunter2"), OWNED, id="config-ADMIN_PASSWD"),
    pytest.param(_config(Addons_Path="/tmp/evil"), OWNED, id="config-Addons_Path"),
    pytest.param(_config(db_host="10.0.0.1"), OWNED, id="config-db_host"),
    pytest.param(_config(DB_PASSWORD="x"), OWNED, id="config-DB_PASSWORD"),
    pytest.param(_config(Workers="64"), OWNED, id="config-Workers"),
    pytest.param(
        _config(dev_mode="all"), Refused("spec.config.dev_mode", "may not be set"), id="dev_mode"
    ),
    pytest.param(_config(pg_path="/tmp"), CONFIG, id="config-pg_path"),
    pytest.param(
        _config(frobnicate="1"), Refused("spec.config.frobnicate"), id="config-unknown-option"
    ),
    pytest.param(
        _config(log_level="info\nadmin_passwd = hunter2"), CONFIG, id="config-value-newline"
    ),
    pytest.param(
        _config(log_level="info\radmin_passwd = hunter2"), CONFIG, id="config-value-return"
    ),
    pytest.param(
        _config(log_level="info\u2028admin_passwd = hunter2"),
        Refused("spec.config.log_level", "single line"),
        id="config-value-line-separator",
    ),
    pytest.param(_config(log_level="info\u0000"), CONFIG, id="config-value-nul"),
    pytest.param(_config(log_level="x" * 1025), CONFIG, id="config-value-1025-chars"),
    pytest.param(
        _config(log_level="info", LOG_LEVEL="debug"),
        Refused("spec.config", "the same option"),
        id="config-two-spellings",
    ),
    pytest.param(lambda _: _instance(config={"log-level": "info"}), CONFIG, id="key-dash"),
    pytest.param(lambda _: _instance(config={"l\u00f6g_level": "info"}), CONFIG, id="key-unicode"),
    pytest.param(lambda _: _instance(config={"l" * 65: "1"}), CONFIG, id="key-65-chars"),
    pytest.param(
        _config(limit_time_cpu="0600"),
        Refused("spec.config.limit_time_cpu"),
        id="config-octal-number",
    ),
    pytest.param(
        _with(environment="staging", config={"smtp_server": "smtp.example.com"}),
        Refused("spec.config.smtp_server", "forbidden for staging"),
        id="config-mail-in-staging",
    ),
    pytest.param(_config(Log_Level="debug"), ADMITTED, id="config-allowed-any-case"),
    # annotations the operator acts on, set at creation
    pytest.param(
        _annotated(ROTATE, "\u00e9t\u00e9"),
        Refused(f"metadata.annotations[{ROTATE}]", "printable ASCII"),
        id="created-with-unicode-rotate-credentials",
    ),
    pytest.param(
        _annotated(MAINTENANCE, "m" * BIG),
        Refused(f"metadata.annotations[{MAINTENANCE}]", "printable ASCII"),
        id="created-with-120KiB-maintenance",
    ),
    pytest.param(
        _annotated(f"{GROUP}/upgrade-now", "yes\nplease"),
        Refused(f"metadata.annotations[{GROUP}/upgrade-now]", "printable ASCII"),
        id="created-with-multiline-upgrade-now",
    ),
    pytest.param(
        _annotated("example.com/note", "\u00e9" * (BIG // 2)),
        Refused("metadata.annotations", "once the operator records"),
        id="created-with-120KiB-unicode-annotation",
    ),
    pytest.param(_annotated(ROTATE, "2026-11-30"), ADMITTED, id="created-with-rotate-date"),
    # other enumerations
    pytest.param(_with(environment="Production"), Refused("spec.environment"), id="env-case"),
    pytest.param(_with(environment="prod"), Refused("spec.environment"), id="env-unknown"),
    pytest.param(_with(deletionPolicy="Purge"), Refused("spec.deletionPolicy"), id="policy"),
    pytest.param(_with(version="18"), Refused("spec.version"), id="version-without-minor"),
    pytest.param(_with(image="x" * 513), Refused("spec.image"), id="image-513-chars"),
    pytest.param(_with(modules=["Account"]), Refused("spec.modules[0]"), id="module-uppercase"),
    pytest.param(
        _with(ingress={"allowFrom": ["everyone"]}),
        Refused("spec.ingress.allowFrom[0]"),
        id="allow-from-not-a-cidr",
    ),
]


@pytest.mark.parametrize(("build", "expected"), INSTANCE_CREATES)
def test_an_instance_create_is_refused_naming_the_field_or_admitted(
    fleet: Fleet, build: Builder, expected: Expected
) -> None:
    body = build(fleet)
    answer = _judge(
        fleet,
        lambda: fleet.api.create_cluster_custom_object(
            GROUP, VERSION, INSTANCES, body, dry_run="All"
        ),
        expected,
    )
    if expected is ADMITTED:
        assert answer["metadata"]["name"] == body["metadata"]["name"]
    fleet.assert_intact()


# -- OdooBackup and OdooRestore: create ---------------------------------------------------

BACKUP_INSTANCE = Refused("spec.instance")
BACKUP_CREATES = [
    pytest.param(lambda _: _backup(""), BACKUP_INSTANCE, id="instance-empty"),
    pytest.param(lambda _: _backup("hx-" + "a" * 38), BACKUP_INSTANCE, id="instance-41-chars"),
    pytest.param(
        lambda f: _backup(f"../{INSTANCES}/{f.victim}"),
        BACKUP_INSTANCE,
        id="instance-path-traversal",
    ),
    pytest.param(lambda f: _backup(f.victim.upper()), BACKUP_INSTANCE, id="instance-uppercase"),
    pytest.param(lambda _: _backup("hx-caf\u00e9"), BACKUP_INSTANCE, id="instance-unicode"),
    pytest.param(lambda f: _backup(f.victim, reason="hacked"), Refused("spec.reason"), id="reason"),
    pytest.param(lambda f: _backup(f.victim, retain="yes"), Refused("spec.retain"), id="retain"),
    pytest.param(lambda f: _backup(f.victim, name="Hx-Backup"), NAME, id="name-uppercase"),
    pytest.param(lambda f: _backup(f.victim, name="hx-" + "b" * 251), NAME, id="name-254-chars"),
    pytest.param(lambda f: _backup(f.victim), ADMITTED, id="backup-of-another-tenant"),
]


@pytest.mark.parametrize(("build", "expected"), BACKUP_CREATES)
def test_a_backup_create_is_refused_naming_the_field_or_admitted(
    fleet: Fleet, build: Builder, expected: Expected
) -> None:
    body = build(fleet)
    _judge(
        fleet,
        lambda: fleet.api.create_cluster_custom_object(
            GROUP, VERSION, BACKUPS, body, dry_run="All"
        ),
        expected,
    )
    fleet.assert_intact()


FROM_INSTANCE = Refused("spec.fromInstance", "must be {victim}")
NEUTRALIZE = Refused("spec.neutralize", "cannot be false")
RESTORE_CREATES = [
    pytest.param(lambda f: _restore(f.victim_backup, f.staging), FROM_INSTANCE, id="cross-tenant"),
    pytest.param(
        lambda f: _restore(f.victim_backup, f.staging, fromInstance=f.staging),
        Refused("spec.fromInstance", "(it names {staging})"),
        id="cross-tenant-from-the-target",
    ),
    pytest.param(
        lambda f: _restore(f.victim_backup, f.staging, fromInstance="hx-ghost"),
        FROM_INSTANCE,
        id="cross-tenant-from-a-third-instance",
    ),
    pytest.param(
        lambda f: _restore(f.victim_backup, f.staging, fromInstance=f.victim.upper()),
        Refused("spec.fromInstance"),
        id="cross-tenant-from-uppercase",
    ),
    pytest.param(
        lambda f: _restore(f.victim_backup, f.staging, fromInstance="hx-" + "a" * 38),
        Refused("spec.fromInstance"),
        id="from-instance-41-chars",
    ),
    pytest.param(
        lambda f: _restore(f.staging_backup, f.victim),
        Refused("spec.fromInstance", "must be {staging}"),
        id="staging-data-into-production",
    ),
    pytest.param(
        lambda f: _restore(f.staging_backup, f.victim, fromInstance=f.victim),
        Refused("spec.fromInstance", "must be {staging}"),
        id="staging-data-into-production-from-the-target",
    ),
    pytest.param(
        lambda f: _restore(f.victim_backup, f.staging, fromInstance=f.victim, neutralize=False),
        NEUTRALIZE,
        id="live-data-into-staging",
    ),
    pytest.param(
        lambda f: _restore(f.staging_backup, f.staging, neutralize=False),
        NEUTRALIZE,
        id="in-place-into-staging-not-neutralized",
    ),
    pytest.param(
        lambda f: _restore(f.victim_backup, f.staging, fromInstance=f.victim),
        ADMITTED,
        id="cross-tenant-with-the-opt-in",
    ),
    pytest.param(lambda f: _restore(f.victim_backup, f.victim), ADMITTED, id="in-place"),
    pytest.param(
        lambda f: _restore(f.victim_backup, ""), Refused("spec.target.instance"), id="target-empty"
    ),
    pytest.param(
        lambda f: _restore(f.victim_backup, "hx-" + "a" * 38),
        Refused("spec.target.instance"),
        id="target-41-chars",
    ),
    pytest.param(
        lambda f: _restore(f.victim_backup, f"../{INSTANCES}/{f.victim}"),
        Refused("spec.target.instance"),
        id="target-path-traversal",
    ),
    pytest.param(lambda f: _restore("", f.victim), Refused("spec.backup"), id="backup-empty"),
    pytest.param(
        lambda f: _restore(f"../{BACKUPS}/{f.victim_backup}", f.victim),
        Refused("spec.backup"),
        id="backup-path-traversal",
    ),
    pytest.param(
        lambda f: {**_restore(f.victim_backup, f.victim), "spec": {"backup": f.victim_backup}},
        Refused("spec.target"),
        id="target-missing",
    ),
    pytest.param(
        lambda f: _restore(f.victim_backup, f.victim, neutralize="false"),
        Refused("spec.neutralize"),
        id="neutralize-a-string",
    ),
    pytest.param(
        lambda f: _restore(f.victim_backup, f.victim, dataProtection="anonymize"),
        Refused("spec.dataProtection", "refused into {victim}, a production instance"),
        id="anonymize-production-in-place",
    ),
    pytest.param(
        lambda f: _restore(
            f.victim_backup, f.staging, fromInstance=f.victim, dataProtection="anonymize"
        ),
        ADMITTED,
        id="anonymized-clone-into-staging",
    ),
    pytest.param(
        lambda f: _restore(
            f.victim_backup,
            f.staging,
            fromInstance=f.victim,
            dataProtection="anonymize",
            neutralize=False,
        ),
        Refused("spec.dataProtection: anonymize needs neutralization"),
        id="anonymize-without-neutralization",
    ),
    pytest.param(
        lambda f: _restore(f.victim_backup, f.victim, dataProtection="scramble"),
        Refused("spec.dataProtection"),
        id="data-protection-unknown",
    ),
    pytest.param(
        lambda f: _restore(f.victim_backup, f.victim, pointInTime="2026-11-30T14:33:00Z"),
        Refused("spec.backup", "or spec.pointInTime"),
        id="backup-and-point-in-time",
    ),
    pytest.param(
        lambda f: {
            **_restore(f.victim_backup, f.victim),
            "spec": {"pointInTime": "yesterday at noon", "target": {"instance": f.victim}},
        },
        Refused("spec.pointInTime"),
        id="point-in-time-not-a-time",
    ),
    pytest.param(
        lambda f: {
            **_restore(f.victim_backup, f.victim),
            "spec": {"pointInTime": "2026-11-30T14:33:00Z", "target": {"instance": f.staging}},
        },
        ADMITTED,
        id="point-in-time-in-place-of-staging",
    ),
    pytest.param(
        lambda f: {
            **_restore(f.victim_backup, f.victim),
            "spec": {
                "pointInTime": "2026-11-30T14:33:00Z",
                "fromInstance": f.victim,
                "target": {"instance": f.staging},
                "neutralize": False,
            },
        },
        NEUTRALIZE,
        id="point-in-time-live-data-into-staging",
    ),
]


@pytest.mark.parametrize(("build", "expected"), RESTORE_CREATES)
def test_a_restore_create_is_refused_naming_the_field_or_admitted(
    fleet: Fleet, build: Builder, expected: Expected
) -> None:
    body = build(fleet)
    _judge(
        fleet,
        lambda: fleet.api.create_cluster_custom_object(
            GROUP, VERSION, RESTORES, body, dry_run="All"
        ),
        expected,
    )
    fleet.assert_intact()


# -- updates ------------------------------------------------------------------------------

Change = Callable[[Fleet], dict[str, Any]]

INSTANCE_UPDATES = [
    pytest.param(
        lambda f: {"database": {"name": "hx_elsewhere"}},
        Refused("spec.database.name", "cannot change from {victim_db}"),
        id="database-name-set-where-it-was-defaulted",
    ),
    pytest.param(
        lambda f: {"database": {"name": f.staging_db}},
        Refused("spec.database.name", "is already the database of OdooInstance {staging}"),
        id="database-name-of-another-tenant",
    ),
    pytest.param(
        lambda f: {"database": {"name": "template1"}},
        RESERVED,
        id="database-name-reserved",
    ),
    pytest.param(
        lambda f: {"database": {"serverRef": "dedicated"}},
        Refused("spec.database.serverRef", "cannot change from main to dedicated"),
        id="database-server-moved",
    ),
    pytest.param(
        lambda f: {"database": {"serverRef": "nowhere"}},
        Refused("spec.database.serverRef"),
        id="database-server-unknown",
    ),
    pytest.param(
        lambda f: {"filestore": {"size": "5Gi"}},
        Refused("spec.filestore.size", "can only grow"),
        id="filestore-shrunk",
    ),
    pytest.param(lambda f: {"filestore": {"size": "lots"}}, FILESTORE, id="filestore-lots"),
    pytest.param(lambda f: {"filestore": {"size": "-1Gi"}}, FILESTORE, id="filestore-negative"),
    pytest.param(lambda f: {"filestore": {"size": "0"}}, FILESTORE, id="filestore-zero"),
    pytest.param(
        lambda f: {"hosts": [f.victim_host, f.staging_host]},
        Refused("spec.hosts[1]", "already served by OdooInstance {staging}"),
        id="host-of-another-tenant-added",
    ),
    pytest.param(
        lambda f: {"hosts": [f.staging_host.upper()]}, HOST, id="host-of-another-tenant-uppercase"
    ),
    pytest.param(lambda f: {"hosts": [f"{f.victim}.evil.io"]}, ELSEWHERE, id="host-moved-outside"),
    pytest.param(
        lambda f: {"resources": {"requests": {"cpu": "lots"}}},
        Refused("spec.resources.requests"),
        id="requests-lots",
    ),
    pytest.param(
        lambda f: {"environment": "qa"}, Refused("spec.environment"), id="environment-unknown"
    ),
    pytest.param(
        lambda f: {"version": "17.0"},
        Refused("spec.version", "cannot go down"),
        id="version-downgrade",
    ),
    pytest.param(
        lambda f: {"tenancy": "dedicated"},
        Refused("spec.database.serverRef", "is a shared PostgreSQL server"),
        id="dedicated-on-shared-servers",
    ),
    pytest.param(
        lambda f: {"config": {"list_db": "True"}},
        Refused("spec.config.list_db", "owned by the operator"),
        id="config-list_db",
    ),
    pytest.param(
        lambda f: {"config": {"log_level": "info\nlist_db = True"}},
        CONFIG,
        id="config-value-newline",
    ),
    pytest.param(
        lambda f: {"deletionPolicy": "Never"},
        Refused("spec.deletionPolicy"),
        id="deletion-policy-unknown",
    ),
]


@pytest.mark.parametrize(("change", "expected"), INSTANCE_UPDATES)
def test_a_hostile_instance_update_is_refused_and_changes_nothing(
    fleet: Fleet, change: Change, expected: Refused
) -> None:
    before = fleet.instance(fleet.victim)
    _judge(
        fleet,
        lambda: fleet.api.patch_cluster_custom_object(
            GROUP, VERSION, INSTANCES, fleet.victim, {"spec": change(fleet)}
        ),
        expected,
    )
    after = fleet.instance(fleet.victim)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    fleet.assert_intact()


def test_setting_the_database_where_it_was_defaulted_is_admitted_only_as_it_is(
    fleet: Fleet,
) -> None:
    api, victim = fleet.api, fleet.victim

    def patch(spec: dict[str, Any]) -> Any:
        return lambda: api.patch_cluster_custom_object(
            GROUP, VERSION, INSTANCES, victim, {"spec": spec}
        )

    # The effective names, spelled out, move nothing: admitted.
    _judge(fleet, patch({"database": {"serverRef": None}}), ADMITTED)
    _judge(fleet, patch({"database": {"name": fleet.victim_db}}), ADMITTED)
    _judge(fleet, patch({"database": {"serverRef": "main"}}), ADMITTED)
    wait_ready(api, victim, fleet.operator)
    assert fleet.instance(victim)["status"]["database"] == fleet.victim_db
    fleet.forget_victim_spec()
    fleet.assert_intact()
    # Once set, the name stays: neither dropped nor changed, nor its server.
    _judge(
        fleet,
        patch({"database": {"name": None}}),
        Refused("spec.database.name", "immutable once set"),
    )
    _judge(fleet, patch({"database": {"name": "hx_renamed"}}), DATABASE_NAME)
    _judge(
        fleet, patch({"database": {"serverRef": "dedicated"}}), Refused("spec.database.serverRef")
    )
    fleet.assert_intact()


def test_a_filestore_only_grows_also_when_it_was_omitted_or_is_dropped_again(
    fleet: Fleet,
) -> None:
    api = fleet.api
    # The staging tenant was created without spec.filestore: it got the default, 10Gi.
    staging = fleet.instance(fleet.staging)
    assert staging["spec"]["filestore"]["size"] == "10Gi"
    for size in ("5Gi", "10239Mi", "1"):
        _judge(
            fleet,
            lambda size=size: api.patch_cluster_custom_object(
                GROUP, VERSION, INSTANCES, fleet.staging, {"spec": {"filestore": {"size": size}}}
            ),
            Refused("spec.filestore.size", "can only grow"),
        )
    # Grown, the filestore cannot go back: not by a smaller size, nor by dropping the field
    # (which would bring back the 10Gi default).
    api.patch_cluster_custom_object(
        GROUP, VERSION, INSTANCES, fleet.victim, {"spec": {"filestore": {"size": "11Gi"}}}
    )
    wait_ready(api, fleet.victim, fleet.operator)
    assert fleet.instance(fleet.victim)["status"]["filestoreSize"] == "11Gi"
    fleet.forget_victim_spec()
    for spec in (
        {"filestore": {"size": "10Gi"}},
        {"filestore": {"size": None}},
        {"filestore": None},
    ):
        _judge(
            fleet,
            lambda spec=spec: api.patch_cluster_custom_object(
                GROUP, VERSION, INSTANCES, fleet.victim, {"spec": spec}
            ),
            Refused("spec.filestore.size", "can only grow"),
        )
    fleet.assert_intact()


def test_a_backup_cannot_be_made_someone_elses_backup(fleet: Fleet) -> None:
    api, name = fleet.api, fleet.victim_backup
    for spec, expected in (
        ({"instance": fleet.staging}, Refused("spec.instance", "immutable")),
        ({"reason": "pre-delete"}, Refused("spec.reason", "immutable")),
        ({"retain": "yes"}, Refused("spec.retain")),
    ):
        _judge(
            fleet,
            lambda spec=spec: api.patch_cluster_custom_object(
                GROUP, VERSION, BACKUPS, name, {"spec": spec}
            ),
            expected,
        )
    backup = api.get_cluster_custom_object(GROUP, VERSION, BACKUPS, name)
    assert backup["spec"] == {"instance": fleet.victim, "reason": "manual", "retain": False}
    assert backup["status"]["phase"] == "Succeeded"
    fleet.assert_intact()


def test_a_restore_of_a_missing_backup_fails_touching_nothing_and_cannot_be_edited(
    fleet: Fleet,
) -> None:
    api = fleet.api
    body = _restore(_unique("hx-missing"), fleet.victim)
    api.create_cluster_custom_object(GROUP, VERSION, RESTORES, body)
    name = body["metadata"]["name"]
    fleet.cleanup.insert(0, (RESTORES, name))
    done = _finished(api, RESTORES, name)
    assert done["status"]["phase"] == "Failed"
    assert "nothing touched" in done["status"]["message"]
    for spec in (
        {"backup": fleet.victim_backup},
        {"target": {"instance": fleet.staging}},
        {"fromInstance": fleet.staging},
        {"neutralize": True},
    ):
        _judge(
            fleet,
            lambda spec=spec: api.patch_cluster_custom_object(
                GROUP, VERSION, RESTORES, name, {"spec": spec}
            ),
            Refused("spec", "an OdooRestore is immutable"),
        )
    assert not (fleet.instance(fleet.victim)["metadata"].get("annotations") or {}).get(MAINTENANCE)
    fleet.assert_intact()


# -- annotations with garbage values ------------------------------------------------------

UNICODE = "\U0001f511 rotaci\u00f3n \u043a\u043b\u044e\u0447 \u2028\u202e\u0000"


def _operator_annotation(key: str) -> Refused:
    return Refused(f"metadata.annotations[{key}]", "printable ASCII")


RECORD_TOO_LARGE = Refused("metadata.annotations", "once the operator records")
FOREIGN = "example.com/note"
INSTANCE_ANNOTATIONS = [
    *[
        pytest.param(key, value, expected, id=f"{key.split('/')[1]}-{case}")
        for key in (ROTATE, MAINTENANCE)
        for value, expected, case in (
            (f"2026-11-30 after the leak, ticket #42 <{key}>", ADMITTED, "free-text"),
            ("v" * 512, ADMITTED, "512-chars"),
            ("v" * 513, _operator_annotation(key), "513-chars"),
            ("v" * BIG, _operator_annotation(key), "120KiB"),
            ("\u00e9" * (BIG // 2), _operator_annotation(key), "120KiB-unicode"),
            (UNICODE, _operator_annotation(key), "unicode"),
            ("\u00e9t\u00e9", _operator_annotation(key), "accented"),
            ("", ADMITTED, "empty"),
        )
    ],
    pytest.param(FOREIGN, "n" * (100 * 1024), ADMITTED, id="foreign-100KiB"),
    pytest.param(FOREIGN, "\u00e9" * (BIG // 2), RECORD_TOO_LARGE, id="foreign-120KiB-unicode"),
    # 120 KiB of ASCII fits twice (the annotation and the operator's record of it); 126 KiB
    # would not, and the apiserver would then refuse every record the operator writes.
    pytest.param(FOREIGN, "n" * BIG, ADMITTED, id="foreign-120KiB"),
    pytest.param(FOREIGN, "n" * (126 * 1024), RECORD_TOO_LARGE, id="foreign-126KiB"),
]


def _annotate(
    api: client.CustomObjectsApi, plural: str, name: str, key: str, value: str | None
) -> None:
    api.patch_cluster_custom_object(
        GROUP, VERSION, plural, name, {"metadata": {"annotations": {key: value}}}
    )


def _handled(fleet: Fleet, plural: str, name: str, key: str, value: str | None) -> None:
    """Wait until the operator has taken in the annotation's value (its record of the last
    handled configuration holds it): the change was seen, not merely stored."""

    def seen() -> bool:
        body = fleet.api.get_cluster_custom_object(GROUP, VERSION, plural, name)
        record = (body["metadata"].get("annotations") or {}).get(LAST_HANDLED)
        annotations = ((json.loads(record) if record else {}).get("metadata") or {}).get(
            "annotations"
        ) or {}
        return bool(annotations.get(key) == value)

    try:
        eventually(seen, f"the operator to take in {key} on {plural}/{name}", 60)
    except pytest.fail.Exception:
        pytest.fail(f"{key} on {plural}/{name} never handled\n{fleet.operator.log_tail()}")


def _web_replicas(fleet: Fleet, instance: str) -> int:
    web = client.AppsV1Api(fleet.k8s).read_namespaced_deployment("odoo-web", f"odoo-{instance}")
    return int(web.spec.replicas)


def _tenant_logs_in(fleet: Fleet, instance: str) -> None:
    with psycopg.connect(tenant_login(fleet.k8s, fleet.postgres_dsn, instance)) as db:
        assert db.execute("SELECT 1").fetchone() == (1,)
    cache = secret_values(fleet.k8s, f"odoo-{instance}", "odoo-redis")
    assert redis_as(fleet.redis_url, cache["username"], cache["password"]).ping()


def _rotation_handled(fleet: Fleet, value: str, before: dict[str, str]) -> None:
    staging = fleet.staging
    if value:
        eventually(
            lambda: fleet.instance(staging)["status"].get("credentialsRotation") == value,
            "the rotation recorded in status",
        )
    wait_ready(fleet.api, staging, fleet.operator)
    after = secret_values(fleet.k8s, f"odoo-{staging}", "odoo-credentials")
    assert (after == before) == (not value), "re-keyed if and only if a value was given"
    _tenant_logs_in(fleet, staging)


def _hold_handled(fleet: Fleet, value: str) -> None:
    if value:  # any value holds the tenant: web and cron at zero, the data kept
        eventually(lambda: _web_replicas(fleet, fleet.staging) == 0, "web held at zero")

        def says_not_serving() -> bool:
            status = fleet.instance(fleet.staging).get("status") or {}
            ready = next(c for c in status.get("conditions", []) if c["type"] == "Ready")
            return (ready["status"], ready["reason"]) == ("False", "Maintenance")

        # A held tenant serves nobody: it never reports Ready while held.
        eventually(says_not_serving, "Ready=False (Maintenance) while held")
    else:
        assert _web_replicas(fleet, fleet.staging) == 1


@pytest.mark.parametrize(("key", "value", "expected"), INSTANCE_ANNOTATIONS)
def test_an_annotation_on_an_instance_is_refused_or_handled(
    fleet: Fleet, key: str, value: str, expected: Expected
) -> None:
    api, staging = fleet.api, fleet.staging
    before = fleet.instance(staging)
    credentials = secret_values(fleet.k8s, f"odoo-{staging}", "odoo-credentials")
    try:
        _judge(fleet, lambda: _annotate(api, INSTANCES, staging, key, value), expected)
        if expected is not ADMITTED:
            after = fleet.instance(staging)
            assert after["metadata"].get("annotations") == before["metadata"].get("annotations")
            assert after["status"].get("credentialsRotation") == (
                before["status"].get("credentialsRotation")
            )
        else:
            _handled(fleet, INSTANCES, staging, key, value)
            if key == ROTATE:
                _rotation_handled(fleet, value, credentials)
            elif key == MAINTENANCE:
                _hold_handled(fleet, value)
    finally:
        _annotate(api, INSTANCES, staging, key, None)
    _handled(fleet, INSTANCES, staging, key, None)
    eventually(lambda: _web_replicas(fleet, staging) == 1, "web serving (again)")
    wait_ready(api, staging, fleet.operator)
    _tenant_logs_in(fleet, staging)
    fleet.assert_intact()


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param(
            {ROTATE: "r" * (260 * 1024)},
            Refused("metadata.annotations", "Too long"),
            id="rotate-credentials-260KiB",
        ),
        pytest.param(
            {MAINTENANCE: "m" * (130 * 1024), VERIFY: "v" * (130 * 1024)},
            Refused("metadata.annotations", "Too long"),
            id="two-annotations-over-256KiB",
        ),
        pytest.param(
            {f"{GROUP}/rotate credentials": "now"},
            Refused("metadata.annotations"),
            id="key-with-space",
        ),
        pytest.param(
            {f"{GROUP}/r\u00f6tate-credentials": "now"},
            Refused("metadata.annotations"),
            id="key-unicode",
        ),
    ],
)
def test_an_annotation_the_apiserver_cannot_keep_is_refused(
    fleet: Fleet, annotations: dict[str, str], expected: Refused
) -> None:
    before = fleet.instance(fleet.victim)
    _judge(
        fleet,
        lambda: fleet.api.patch_cluster_custom_object(
            GROUP, VERSION, INSTANCES, fleet.victim, {"metadata": {"annotations": annotations}}
        ),
        expected,
    )
    after = fleet.instance(fleet.victim)
    assert after["metadata"].get("annotations") == before["metadata"].get("annotations")
    fleet.assert_intact()


# -- sequences ----------------------------------------------------------------------------


def test_the_deletion_policy_cannot_change_while_the_instance_is_terminating(
    fleet: Fleet,
) -> None:
    api, name = fleet.api, _unique("hx-term")
    database = database_of(name)
    body = _instance(name, deletionPolicy="Retain")
    body["metadata"]["finalizers"] = [HOLD]
    api.create_cluster_custom_object(GROUP, VERSION, INSTANCES, body)
    fleet.cleanup.insert(0, (INSTANCES, name))
    try:
        wait_ready(api, name, fleet.operator)
        with psycopg.connect(tenant_login(fleet.k8s, fleet.postgres_dsn, name)) as db:
            db.execute("CREATE TABLE kept (note text)")
            db.execute("INSERT INTO kept VALUES (%s)", (MARKER,))
        password = secret_values(fleet.k8s, f"odoo-{name}", "odoo-database")["password"]
        api.delete_cluster_custom_object(GROUP, VERSION, INSTANCES, name)

        def only_ours_left() -> bool:
            meta = fleet.instance(name)["metadata"]
            return bool(meta.get("deletionTimestamp")) and meta.get("finalizers") == [HOLD]

        eventually(only_ours_left, "the operator's deletion done, our finalizer left")
        for spec in ({"deletionPolicy": "Delete"}, {"deletionPolicy": "Delete", "workers": 1}):
            _judge(
                fleet,
                lambda spec=spec: api.patch_cluster_custom_object(
                    GROUP, VERSION, INSTANCES, name, {"spec": spec}
                ),
                Refused("spec.deletionPolicy", "cannot change from Retain to Delete"),
            )
        assert fleet.instance(name)["spec"]["deletionPolicy"] == "Retain"
    finally:
        # Releasing it is a metadata-only write: it must pass whatever the spec says.
        api.patch_cluster_custom_object(
            GROUP, VERSION, INSTANCES, name, {"metadata": {"finalizers": None}}
        )
    wait_gone(api, INSTANCES, name)
    try:
        # Retain held: the database, its rows and the role's password are all still there.
        login = conninfo.make_conninfo(
            fleet.postgres_dsn, user=database, password=password, dbname=database
        )
        with psycopg.connect(login) as db:
            assert db.execute("SELECT note FROM kept").fetchall() == [(MARKER,)]
        # A new instance of another name claiming the retained database is admitted (no
        # instance holds it any more) but the operator refuses it: it is marked as name's.
        claimant = _instance(_unique("hx-heir"), database={"name": database})
        api.create_cluster_custom_object(GROUP, VERSION, INSTANCES, claimant)
        fleet.cleanup.insert(0, (INSTANCES, claimant["metadata"]["name"]))
        message = _wait_stalled(
            fleet, claimant["metadata"]["name"], "DatabaseOwnedByAnotherInstance"
        )
        assert f"belongs to OdooInstance {name}" in message
        with psycopg.connect(login) as db:
            assert db.execute("SELECT note FROM kept").fetchall() == [(MARKER,)]
        delete_quietly(api, INSTANCES, claimant["metadata"]["name"])
        wait_gone(api, INSTANCES, claimant["metadata"]["name"])
        with psycopg.connect(login) as db:
            assert db.execute("SELECT note FROM kept").fetchall() == [(MARKER,)]
    finally:
        _drop_database_and_role(fleet.postgres_dsn, database)
        redis.Redis.from_url(fleet.redis_url).acl_deluser(f"odoo-{name}")
    fleet.assert_intact()


def test_a_database_the_operator_never_made_is_never_altered_or_dropped(fleet: Fleet) -> None:
    api, tag = fleet.api, uuid.uuid4().hex[:6]
    legacy, replicator = f"hx_legacy_{tag}", f"hx_replicator_{tag}"
    with psycopg.connect(fleet.postgres_dsn, autocommit=True) as admin:
        for role, attributes in ((legacy, sql.SQL("")), (replicator, sql.SQL(" REPLICATION"))):
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}{}").format(
                    sql.Identifier(role), sql.Literal(f"pw-{role}"), attributes
                )
            )
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(legacy), sql.Identifier(legacy)
            )
        )
    legacy_login = conninfo.make_conninfo(
        fleet.postgres_dsn, user=legacy, password=f"pw-{legacy}", dbname=legacy
    )
    with psycopg.connect(legacy_login) as db:
        db.execute("CREATE TABLE ledger (entry text)")
        db.execute("INSERT INTO ledger VALUES (%s)", (MARKER,))
    claims = {
        legacy: ("NotManagedByOperator", "Delete"),
        replicator: ("ReservedName", "Delete"),
    }
    names = {database: _unique("hx-claim") for database in claims}
    try:
        for database, (_, policy) in claims.items():
            body = _instance(names[database], database={"name": database}, deletionPolicy=policy)
            api.create_cluster_custom_object(GROUP, VERSION, INSTANCES, body)
            fleet.cleanup.insert(0, (INSTANCES, names[database]))
        for database, (reason, _) in claims.items():
            message = _wait_stalled(fleet, names[database], reason)
            assert database in message
        # Deleted with deletionPolicy Delete, the claimants go; what they claimed stays.
        for name in names.values():
            delete_quietly(api, INSTANCES, name)
        for name in names.values():
            wait_gone(api, INSTANCES, name, 90)
        with psycopg.connect(legacy_login) as db:
            assert db.execute("SELECT entry FROM ledger").fetchall() == [(MARKER,)]
        replicator_login = conninfo.make_conninfo(
            fleet.postgres_dsn, user=replicator, password=f"pw-{replicator}", dbname="postgres"
        )
        with psycopg.connect(replicator_login) as db:
            row = db.execute(
                "SELECT rolreplication, rolcreaterole, rolsuper FROM pg_roles"
                " WHERE rolname = current_user"
            ).fetchone()
        assert row == (True, False, False)
    finally:
        for name in names.values():
            _release(api, name)
        _drop_database_and_role(fleet.postgres_dsn, legacy)
        _drop_database_and_role(fleet.postgres_dsn, replicator)
    fleet.assert_intact()


def _release(api: client.CustomObjectsApi, name: str) -> None:
    """Take the finalizers off an instance stuck in deletion, so the module leaves no debris."""
    try:
        api.patch_cluster_custom_object(
            GROUP, VERSION, INSTANCES, name, {"metadata": {"finalizers": None}}
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


# -- the reproductions of the issue -------------------------------------------------------


def test_a_second_instance_cannot_take_over_another_tenants_database(fleet: Fleet) -> None:
    api, intruder = fleet.api, _unique("hx-intruder")
    taken = Refused("spec.database.name", "is already the database of OdooInstance {victim}")
    # Created claiming A's database: refused, nothing stored.
    body = _instance(intruder, database={"name": fleet.victim_db}, deletionPolicy="Delete")
    _judge(fleet, lambda: api.create_cluster_custom_object(GROUP, VERSION, INSTANCES, body), taken)
    # Named "operator" (its namespace would be the operator's): refused as well.
    _judge(
        fleet,
        lambda: api.create_cluster_custom_object(GROUP, VERSION, INSTANCES, _instance("operator")),
        Refused("metadata.name", "operator's own namespace"),
    )
    # Deleting B finds nothing: it never existed.
    with pytest.raises(ApiException) as missing:
        api.delete_cluster_custom_object(GROUP, VERSION, INSTANCES, intruder)
    assert missing.value.status == 404
    fleet.assert_intact()
    # Created with its own database, then pointed at A's: refused too.
    api.create_cluster_custom_object(GROUP, VERSION, INSTANCES, _instance(intruder))
    fleet.cleanup.insert(0, (INSTANCES, intruder))
    _judge(
        fleet,
        lambda: api.patch_cluster_custom_object(
            GROUP, VERSION, INSTANCES, intruder, {"spec": {"database": {"name": fleet.victim_db}}}
        ),
        taken,
    )
    delete_quietly(api, INSTANCES, intruder)
    wait_gone(api, INSTANCES, intruder)
    fleet.assert_intact()
    # Under another registration of the same PostgreSQL server, admission cannot tell the
    # servers apart; the operator's ownership mark can: it refuses to touch A's role, and
    # B's deletion with deletionPolicy Delete drops nothing of A's.
    twin = _instance(
        _unique("hx-twin"),
        tenancy="dedicated",
        database={"serverRef": "dedicated", "name": fleet.victim_db},
        redis={"serverRef": "dedicated"},
        deletionPolicy="Delete",
    )
    api.create_cluster_custom_object(GROUP, VERSION, INSTANCES, twin)
    twin_name = twin["metadata"]["name"]
    fleet.cleanup.insert(0, (INSTANCES, twin_name))
    try:
        message = _wait_stalled(fleet, twin_name, "DatabaseOwnedByAnotherInstance")
        assert f"belongs to OdooInstance {fleet.victim}" in message
        fleet.assert_intact()
        delete_quietly(api, INSTANCES, twin_name)
        wait_gone(api, INSTANCES, twin_name, 90)
    finally:
        _release(api, twin_name)
    fleet.assert_intact()


def test_the_servers_admin_role_cannot_be_named_as_a_tenant_database(fleet: Fleet) -> None:
    api, admin = fleet.api, fleet.admin_role
    reserved = Refused("spec.database.name", f"{admin} is reserved")
    for server in ("main", "dedicated"):
        spec: dict[str, Any] = {"database": {"serverRef": server, "name": admin}}
        if server == "dedicated":
            spec.update(tenancy="dedicated", redis={"serverRef": "dedicated"})
        body = _instance(**spec)
        _judge(
            fleet,
            lambda body=body: api.create_cluster_custom_object(GROUP, VERSION, INSTANCES, body),
            reserved,
        )
        with pytest.raises(ApiException) as missing:
            api.get_cluster_custom_object(GROUP, VERSION, INSTANCES, body["metadata"]["name"])
        assert missing.value.status == 404
    # Nor can a live tenant be pointed at it.
    _judge(
        fleet,
        lambda: api.patch_cluster_custom_object(
            GROUP, VERSION, INSTANCES, fleet.staging, {"spec": {"database": {"name": admin}}}
        ),
        Refused("spec.database.name"),
    )
    with psycopg.connect(fleet.postgres_dsn) as connection:
        assert connection.execute("SELECT current_user::text").fetchone() == (admin,)
    fleet.assert_intact()


def test_deleting_an_instance_never_deletes_a_namespace_it_does_not_own(fleet: Fleet) -> None:
    api, core = fleet.api, client.CoreV1Api(fleet.k8s)
    foreign = f"odoo-{fleet.unlabelled}"
    core.create_namespaced_config_map(
        foreign, {"metadata": {"name": "precious"}, "data": {"note": MARKER}}
    )
    operator_secrets = {
        s.metadata.name for s in core.list_namespaced_secret(OPERATOR_NAMESPACE).items
    }
    # An instance whose namespace would be one that exists: refused, for real.
    for name, detail in (
        (fleet.unlabelled, "is not a tenant namespace"),
        ("operator", "operator's own namespace"),
    ):
        _judge(
            fleet,
            lambda name=name: api.create_cluster_custom_object(
                GROUP, VERSION, INSTANCES, _instance(name)
            ),
            Refused("metadata.name", detail),
        )
    # Past admission (the webhook may be absent or bypassed), the deletion still checks: an
    # instance whose namespace was handed to someone else leaves it alone when deleted.
    name = _unique("hx-handover")
    api.create_cluster_custom_object(
        GROUP, VERSION, INSTANCES, _instance(name, deletionPolicy="Delete")
    )
    fleet.cleanup.insert(0, (INSTANCES, name))
    wait_ready(api, name, fleet.operator)
    handed = {"metadata": {"labels": {INSTANCE_LABEL: "someone-else"}, "ownerReferences": None}}

    def handed_over() -> bool:
        core.patch_namespace(f"odoo-{name}", handed)
        stalled = _condition(fleet.instance(name), "Stalled")
        labels = core.read_namespace(f"odoo-{name}").metadata.labels or {}
        return stalled.get("reason") == "NamespaceConflict" and (
            labels.get(INSTANCE_LABEL) == "someone-else"
        )

    eventually(handed_over, "the operator to see the namespace is no longer its own", 60, 2)
    try:
        api.delete_cluster_custom_object(GROUP, VERSION, INSTANCES, name)
        wait_gone(api, INSTANCES, name)
        time.sleep(2)  # give a wrong deletion (or the garbage collector) time to show
        kept = core.read_namespace(f"odoo-{name}")
        assert kept.status.phase == "Active"
        assert not kept.metadata.deletion_timestamp
    finally:
        core.delete_namespace(f"odoo-{name}")
    for namespace in (foreign, OPERATOR_NAMESPACE):
        assert core.read_namespace(namespace).status.phase == "Active"
    assert core.read_namespaced_config_map("precious", foreign).data == {"note": MARKER}
    assert {
        s.metadata.name for s in core.list_namespaced_secret(OPERATOR_NAMESPACE).items
    } >= operator_secrets
    fleet.assert_intact()


def test_a_restore_of_another_tenants_backup_needs_the_opt_in(fleet: Fleet) -> None:
    api, staging = fleet.api, fleet.staging
    for spec, expected in (
        ({}, FROM_INSTANCE),
        ({"fromInstance": staging}, Refused("spec.fromInstance", "(it names {staging})")),
        ({"fromInstance": fleet.victim, "neutralize": False}, NEUTRALIZE),
    ):
        body = _restore(fleet.victim_backup, staging, **spec)
        _judge(
            fleet,
            lambda body=body: api.create_cluster_custom_object(GROUP, VERSION, RESTORES, body),
            expected,
        )
        with pytest.raises(ApiException) as missing:
            api.get_cluster_custom_object(GROUP, VERSION, RESTORES, body["metadata"]["name"])
        assert missing.value.status == 404
    fleet.assert_intact()
    # With the opt-in naming the source it runs: the target is backed up first, the copy is
    # neutralized (staging), and the source loses nothing.
    body = _restore(fleet.victim_backup, staging, fromInstance=fleet.victim)
    api.create_cluster_custom_object(GROUP, VERSION, RESTORES, body)
    name = body["metadata"]["name"]
    fleet.cleanup.insert(0, (RESTORES, name))
    status = _finished(api, RESTORES, name, 180)["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["mode"], status["neutralized"]) == ("Clone", True)
    fleet.cleanup.insert(0, (BACKUPS, status["safetyBackup"]))
    safety = api.get_cluster_custom_object(GROUP, VERSION, BACKUPS, status["safetyBackup"])
    assert safety["spec"]["instance"] == staging
    assert safety["status"]["phase"] == "Succeeded"
    assert safety["status"]["completedAt"] <= status["completedAt"]
    with psycopg.connect(tenant_login(fleet.k8s, fleet.postgres_dsn, staging)) as db:
        assert db.execute("SELECT note FROM hostile_marker").fetchall() == [(MARKER,)]
    wait_ready(api, staging, fleet.operator)
    fleet.assert_intact()


OWNED_SPELLINGS = [
    "LIST_DB",
    "list_db",
    "List_Db",
    "ADMIN_PASSWD",
    "Admin_Passwd",
    "Addons_Path",
    "DB_HOST",
    "db_password",
    "DbFilter",
    "DATA_DIR",
    "Http_Port",
    "Max_Cron_Threads",
    "db_anything",
]


@pytest.mark.parametrize("key", OWNED_SPELLINGS)
def test_operator_owned_odoo_options_cannot_be_set_in_any_spelling(fleet: Fleet, key: str) -> None:
    api = fleet.api
    owned = Refused(f"spec.config.{key}", "is owned by the operator")
    _judge(
        fleet,
        lambda: api.create_cluster_custom_object(
            GROUP, VERSION, INSTANCES, _instance(config={key: "x"}), dry_run="All"
        ),
        owned,
    )
    # On a live tenant, for real, next to an allowed option: refused as a whole.
    rendered = secret_values(fleet.k8s, f"odoo-{fleet.victim}", "odoo-config")
    _judge(
        fleet,
        lambda: api.patch_cluster_custom_object(
            GROUP,
            VERSION,
            INSTANCES,
            fleet.victim,
            {"spec": {"config": {key: "x", "log_level": "debug"}}},
        ),
        owned,
    )
    assert secret_values(fleet.k8s, f"odoo-{fleet.victim}", "odoo-config") == rendered
    fleet.assert_intact()


def test_a_bad_quantity_is_refused_so_the_object_stays_fixable(fleet: Fleet) -> None:
    api, victim = fleet.api, fleet.victim
    malformed = ("lots", "-1Gi", "1.5.0Gi", "12Gi ", "1Gi\n")
    for bad in (*malformed, "0", 0, "0Ki"):
        _judge(
            fleet,
            lambda bad=bad: api.create_cluster_custom_object(
                GROUP, VERSION, INSTANCES, _instance(filestore={"size": bad})
            ),
            FILESTORE,
        )
        _judge(
            fleet,
            lambda bad=bad: api.patch_cluster_custom_object(
                GROUP, VERSION, INSTANCES, victim, {"spec": {"filestore": {"size": bad}}}
            ),
            FILESTORE,
        )
    for bad in malformed:
        for spec, where in (
            ({"resources": {"requests": {"memory": bad}}}, "spec.resources.requests"),
            ({"resources": {"limits": {"cpu": bad}}}, "spec.resources.limits"),
        ):
            _judge(
                fleet,
                lambda spec=spec: api.patch_cluster_custom_object(
                    GROUP, VERSION, INSTANCES, victim, {"spec": spec}
                ),
                Refused(where),
            )
    # Nothing bad was stored, so an ordinary edit still goes through and is carried out.
    api.patch_cluster_custom_object(
        GROUP,
        VERSION,
        INSTANCES,
        victim,
        {"spec": {"filestore": {"size": "12Gi"}, "resources": {"requests": {"cpu": "300m"}}}},
    )
    ready = wait_ready(api, victim, fleet.operator)
    assert ready["status"]["filestoreSize"] == "12Gi"
    fleet.forget_victim_spec()
    fleet.assert_intact()


# -- the verify annotation of an OdooBackup ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("r" * BIG, _operator_annotation(VERIFY), id="120KiB"),
        pytest.param(UNICODE, _operator_annotation(VERIFY), id="unicode"),
        pytest.param("\u00e9" * (BIG // 2), _operator_annotation(VERIFY), id="120KiB-unicode"),
        pytest.param("", None, id="empty"),
        pytest.param("CHG-1042", None, id="ticket"),
    ],
)
def test_a_verify_annotation_on_a_backup_is_refused_or_handled(
    fleet: Fleet, value: str, expected: Refused | None
) -> None:
    api, name = fleet.api, fleet.victim_backup

    def verification() -> dict[str, Any]:
        backup = api.get_cluster_custom_object(GROUP, VERSION, BACKUPS, name)
        assert backup["status"]["phase"] == "Succeeded"
        return dict(backup["status"].get("verification") or {})

    before = verification()
    if expected is not None:
        _judge(fleet, lambda: _annotate(api, BACKUPS, name, VERIFY, value), expected)
        assert verification() == before
        fleet.assert_intact()
        return
    _annotate(api, BACKUPS, name, VERIFY, value)
    try:
        _handled(fleet, BACKUPS, name, VERIFY, value)
        if value:
            eventually(
                lambda: verification().get("request") == value,
                "the verification answering the request",
                90,
            )
            assert verification()["result"] == "Passed", verification()
        else:  # an empty value asks for nothing
            assert verification() == before
    finally:
        _annotate(api, BACKUPS, name, VERIFY, None)
    fleet.assert_intact()
