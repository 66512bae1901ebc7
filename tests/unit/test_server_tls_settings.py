"""The registry's TLS settings are parsed strictly and reach every pod that talks to a server.

Config: each mistake is refused with a message naming the key. Builders: odoo.conf carries
``db_sslmode``; web, cron, init and upgrade pods and backup Jobs get ``PGSSLMODE``,
``PGSSLROOTCERT`` and the CA volume; Redis sessions get a ``rediss://`` URL. A registry
without ``tls`` changes nothing a tenant runs.
"""

from __future__ import annotations

import base64
import configparser
import dataclasses
import json
import re
from typing import Any

import pytest

from odoo_operator.backends.redis import RedisAdmin
from odoo_operator.builders.backup_job import build_backup_job
from odoo_operator.builders.server_tls import (
    POSTGRES_CA_KEY,
    REDIS_CA_KEY,
    SERVER_CA_SECRET,
)
from odoo_operator.builders.tenant import Endpoint, Tenant, TenantCredentials
from odoo_operator.builders.workloads import (
    build_deployments,
    build_init_job,
    build_secrets,
    build_upgrade_job,
    config_checksum,
    render_odoo_conf,
)
from odoo_operator.model.config import ConfigError, OperatorConfig, ServerTls
from odoo_operator.model.spec import InstanceSpec

PG_CA = "-----BEGIN CERTIFICATE-----\npostgres\n-----END CERTIFICATE-----\n"
REDIS_CA = "-----BEGIN CERTIFICATE-----\nredis\n-----END CERTIFICATE-----\n"
VERIFY_FULL = ServerTls("verify-full", "postgres-ca")
REDIS_TLS = ServerTls("verify-full", "redis-ca")


def _config(postgres_tls: Any = None, redis_tls: Any = None) -> OperatorConfig:
    postgres: dict[str, Any] = {"secretRef": "postgres-main", "default": True}
    redis: dict[str, Any] = {"secretRef": "redis-main", "default": True, "dedicated": True}
    if postgres_tls is not None:
        postgres["tls"] = postgres_tls
    if redis_tls is not None:
        redis["tls"] = redis_tls
    return OperatorConfig.from_mapping(
        {"postgresServers": {"main": postgres}, "redisServers": {"main": redis}}
    )


def _tenant(**tls: Any) -> Tenant:
    body = {
        "metadata": {"name": "acme", "uid": "uid-1", "generation": 1},
        "spec": {"version": "18.0", "hosts": ["acme.example.com"]},
    }
    return Tenant(
        spec=InstanceSpec.from_resource(body),
        image="odoo:18.0",
        database=Endpoint("db.example.internal", 5432),
        redis=Endpoint("redis.example.internal", 6380),
        redis_user="odoo-acme",
        redis_key_prefix="odoo:acme:",
        credentials=TenantCredentials("db-secret", "redis-secret", "master-secret"),
        **tls,
    )


def _encrypted_tenant() -> Tenant:
    return _tenant(
        database_tls=VERIFY_FULL, redis_tls=REDIS_TLS, database_ca=PG_CA, redis_ca=REDIS_CA
    )


def _pods(tenant: Tenant) -> dict[str, dict[str, Any]]:
    """Every pod spec of a tenant that runs Odoo: web, cron, init and upgrade."""
    web, cron = build_deployments(tenant)
    upgrade = build_upgrade_job(
        tenant, upgrade_id="u1", image="odoo:18.0", database="acme_copy", modules="all"
    )
    return {
        "web": web["spec"]["template"]["spec"],
        "cron": cron["spec"]["template"]["spec"],
        "init": build_init_job(tenant)["spec"]["template"]["spec"],
        "upgrade": upgrade["spec"]["template"]["spec"],
    }


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {
        item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])
    }


def _mounted_path(pod: dict[str, Any], path: str) -> tuple[str, str]:
    """The Secret and key a file path of the first container comes from."""
    container = pod["containers"][0]
    for mount in container["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            return volume["secret"]["secretName"], path.removeprefix(prefix)
    raise AssertionError(f"{path} is on no volume of the pod")


# --- configuration -----------------------------------------------------------------------


def test_a_registry_without_tls_parses_as_before() -> None:
    config = _config()
    assert config.postgres_server(None).tls is None
    assert config.redis_server(None).tls is None
    assert config.redis_server(None).dedicated
    assert config.postgres_server(None).secret == "postgres-main"


def test_postgres_tls_is_read_with_its_ca_reference() -> None:
    config = _config({"mode": "verify-full", "caSecretRef": "postgres-ca", "caKey": "root.pem"})
    assert config.postgres_server(None).tls == ServerTls("verify-full", "postgres-ca", "root.pem")


def test_the_ca_key_defaults_to_ca_crt() -> None:
    tls = _config({"mode": "verify-ca", "caSecretRef": "postgres-ca"}).postgres_server(None).tls
    assert tls == ServerTls("verify-ca", "postgres-ca", "ca.crt")


@pytest.mark.parametrize("mode", ["require", "disable"])
def test_modes_that_verify_nothing_need_no_ca(mode: str) -> None:
    assert _config({"mode": mode}).postgres_server(None).tls == ServerTls(mode)


def test_redis_tls_enabled_means_verified_tls() -> None:
    config = _config(redis_tls={"enabled": True, "caSecretRef": "redis-ca"})
    tls = config.redis_server(None).tls
    assert tls == ServerTls("verify-full", "redis-ca")
    assert tls is not None
    assert tls.encrypted


def test_redis_tls_without_a_ca_uses_the_system_trust_store() -> None:
    assert _config(redis_tls={"enabled": True}).redis_server(None).tls == ServerTls("verify-full")


def test_redis_tls_disabled_is_clear_text_on_purpose() -> None:
    tls = _config(redis_tls={"enabled": False}).redis_server(None).tls
    assert tls == ServerTls("disable")
    assert tls is not None
    assert not tls.encrypted


@pytest.mark.parametrize(
    ("postgres_tls", "redis_tls", "message"),
    [
        ("verify-full", None, r"postgresServers\.main\.tls must be a mapping"),
        ({"sslmode": "verify-full"}, None, r"postgresServers\.main\.tls\.sslmode is not a TLS"),
        ({}, None, r"postgresServers\.main\.tls\.mode must be one of"),
        ({"mode": "prefer"}, None, r"postgresServers\.main\.tls\.mode must be one of"),
        ({"mode": "verify-full"}, None, r"postgresServers\.main\.tls\.caSecretRef is required"),
        ({"mode": "verify-ca"}, None, r"postgresServers\.main\.tls\.caSecretRef is required"),
        (
            {"mode": "require", "caSecretRef": "postgres-ca"},
            None,
            r"postgresServers\.main\.tls\.caSecretRef has no effect with mode require",
        ),
        (
            {"mode": "verify-full", "caSecretRef": "Postgres_CA"},
            None,
            r"postgresServers\.main\.tls\.caSecretRef must be the name of a Secret",
        ),
        (
            {"mode": "verify-full", "caSecretRef": "postgres-ca", "caKey": "ca crt"},
            None,
            r"postgresServers\.main\.tls\.caKey must be a key",
        ),
        ({"mode": "require", "caKey": "ca.crt"}, None, r"tls\.caKey needs .*caSecretRef"),
        (None, {"enabled": "yes"}, r"redisServers\.main\.tls\.enabled must be true or false"),
        (None, {"mode": "verify-full"}, r"redisServers\.main\.tls\.mode is not a TLS setting"),
        (
            None,
            {"enabled": False, "caSecretRef": "redis-ca"},
            r"redisServers\.main\.tls\.caSecretRef has no effect",
        ),
    ],
)
def test_a_tls_mistake_is_refused_naming_the_key(
    postgres_tls: Any, redis_tls: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(postgres_tls, redis_tls)


# --- tenant pods -------------------------------------------------------------------------


def test_odoo_conf_carries_the_registrys_sslmode() -> None:
    parser = configparser.RawConfigParser(strict=True)
    parser.read_string(render_odoo_conf(_encrypted_tenant()))
    assert parser.get("options", "db_sslmode") == "verify-full"


def test_a_tenant_of_a_server_without_tls_runs_exactly_what_it_ran_before() -> None:
    # The fields default to None: a tenant built before they existed is the same tenant.
    plain = _tenant()
    explicit = _tenant(database_tls=None, redis_tls=None, database_ca=None, redis_ca=None)
    assert "db_sslmode" not in render_odoo_conf(plain)
    assert config_checksum(plain) == config_checksum(explicit)
    for name, pod in _pods(plain).items():
        env = _env(pod["containers"][0])
        assert not {"PGSSLMODE", "PGSSLROOTCERT", "ODOO_SESSION_REDIS_URL"} & env.keys(), name
        assert all(v["name"] != "server-ca" for v in pod["volumes"]), name
    assert [s["metadata"]["name"] for s in build_secrets(plain)] == [
        "odoo-config",
        "odoo-database",
        "odoo-redis",
    ]


def test_every_odoo_pod_verifies_postgresql_against_the_mounted_ca() -> None:
    tenant = _encrypted_tenant()
    for name, pod in _pods(tenant).items():
        container = pod["containers"][0]
        env = _env(container)
        assert env["PGSSLMODE"] == "verify-full", name
        assert _mounted_path(pod, env["PGSSLROOTCERT"]) == (SERVER_CA_SECRET, POSTGRES_CA_KEY)
        mount = next(m for m in container["volumeMounts"] if m["name"] == "server-ca")
        assert mount["readOnly"] is True, name


def test_the_ca_secret_holds_the_bundles_the_registry_names() -> None:
    secrets = {s["metadata"]["name"]: s for s in build_secrets(_encrypted_tenant())}
    data = secrets[SERVER_CA_SECRET]["data"]
    assert base64.b64decode(data[POSTGRES_CA_KEY]).decode() == PG_CA
    assert base64.b64decode(data[REDIS_CA_KEY]).decode() == REDIS_CA
    # Owned by the instance like every other tenant Secret, so it goes with the tenant.
    assert secrets[SERVER_CA_SECRET]["metadata"]["ownerReferences"][0]["name"] == "acme"


def test_a_ca_the_registry_names_but_nobody_read_is_never_left_out_silently() -> None:
    tenant = _tenant(database_tls=VERIFY_FULL, database_ca=None)
    with pytest.raises(ValueError, match=POSTGRES_CA_KEY):
        build_secrets(tenant)


def test_require_encrypts_without_a_ca_to_mount() -> None:
    tenant = _tenant(database_tls=ServerTls("require"))
    web = _pods(tenant)["web"]
    env = _env(web["containers"][0])
    assert env["PGSSLMODE"] == "require"
    assert "PGSSLROOTCERT" not in env
    assert all(v["name"] != "server-ca" for v in web["volumes"])
    assert SERVER_CA_SECRET not in {s["metadata"]["name"] for s in build_secrets(tenant)}


def _expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's $(NAME) expansion of a variable defined earlier in the list."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m.group(1)], value)


def test_redis_sessions_get_a_verifying_rediss_url_without_a_password_in_the_spec() -> None:
    # An image whose session module keeps sessions in Redis (sessionStore: redis).
    tenant = dataclasses.replace(_encrypted_tenant(), session_store="redis")
    web = _pods(tenant)["web"]
    container = web["containers"][0]
    names = [item["name"] for item in container["env"]]
    url = _env(container)["ODOO_SESSION_REDIS_URL"]
    # Expansion only sees variables defined before: the URL comes after its parts.
    assert names.index("ODOO_SESSION_REDIS_URL") > names.index("ODOO_SESSION_REDIS_PASSWORD")
    expanded = _expand(
        url,
        {
            "ODOO_SESSION_REDIS_USERNAME": "odoo-acme",
            "ODOO_SESSION_REDIS_PASSWORD": "redis-secret",
            "ODOO_SESSION_REDIS_HOST": "redis.example.internal",
            "ODOO_SESSION_REDIS_PORT": "6380",
        },
    )
    location, _, query = expanded.partition("?")
    assert location == "rediss://odoo-acme:redis-secret@redis.example.internal:6380/0"
    assert dict(pair.split("=") for pair in query.split("&")) == {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": "true",
        "ssl_ca_certs": "/etc/odoo-server-ca/redis-ca.crt",
    }
    assert _mounted_path(web, "/etc/odoo-server-ca/redis-ca.crt") == (
        SERVER_CA_SECRET,
        REDIS_CA_KEY,
    )
    assert "redis-secret" not in json.dumps(build_deployments(tenant))


def test_redis_explicitly_disabled_keeps_clear_text_sessions() -> None:
    env = _env(_pods(_tenant(redis_tls=ServerTls("disable")))["web"]["containers"][0])
    assert "ODOO_SESSION_REDIS_URL" not in env


# --- backup Jobs -------------------------------------------------------------------------


def _backup_job(tls: ServerTls | None) -> dict[str, Any]:
    spec = InstanceSpec.from_resource(
        {
            "metadata": {"name": "acme", "uid": "uid-1", "generation": 1},
            "spec": {"version": "18.0", "hosts": ["acme.example.com"]},
        }
    )
    return build_backup_job(
        spec,
        node_selector={},
        tolerations=(),
        backup_name="nightly",
        backup_id="B1",
        reason="scheduled",
        image="operator:1",
        container="backups",
        store_secret_key="connectionString",
        database_tls=tls,
    )


def test_the_backup_jobs_connection_string_carries_the_tls_settings_to_pg_dump() -> None:
    pod = _backup_job(VERIFY_FULL)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    names = [item["name"] for item in container["env"]]
    env = _env(container)
    assert env["PGSSLMODE"] == "verify-full"
    assert _mounted_path(pod, env["PGSSLROOTCERT"]) == (SERVER_CA_SECRET, POSTGRES_CA_KEY)
    conninfo = _expand(
        env["ODOO_OPERATOR_DB_CONNINFO"],
        {
            name: str(value)
            for name, value in env.items()
            if name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGSSLMODE", "PGSSLROOTCERT")
        },
    )
    assert "sslmode=verify-full" in conninfo.split()
    assert "sslrootcert=/etc/odoo-server-ca/postgres-ca.crt" in conninfo.split()
    assert names.index("PGSSLROOTCERT") < names.index("ODOO_OPERATOR_DB_CONNINFO")


def test_a_backup_job_without_tls_is_unchanged() -> None:
    pod = _backup_job(None)["spec"]["template"]["spec"]
    env = _env(pod["containers"][0])
    assert env["ODOO_OPERATOR_DB_CONNINFO"] == (
        "host=$(PGHOST) port=$(PGPORT) user=$(PGUSER) password=$(PGPASSWORD) "
        "application_name=odoo-operator-backup"
    )
    assert "PGSSLMODE" not in env
    assert [v["name"] for v in pod["volumes"]] == ["filestore", "tmp"]


def test_a_backup_job_with_require_mounts_no_ca() -> None:
    pod = _backup_job(ServerTls("require"))["spec"]["template"]["spec"]
    env = _env(pod["containers"][0])
    assert env["ODOO_OPERATOR_DB_CONNINFO"].endswith(" sslmode=$(PGSSLMODE)")
    assert [v["name"] for v in pod["volumes"]] == ["filestore", "tmp"]


# --- the Redis admin ---------------------------------------------------------------------


def test_redis_admin_tls_refuses_a_unix_socket_without_echoing_the_url() -> None:
    with pytest.raises(ValueError, match="redis:// or rediss://") as refused:
        RedisAdmin("unix://:hunter2@/run/redis.sock", require_tls=True)
    assert "hunter2" not in str(refused.value)


def test_a_tenant_copy_keeps_its_tls_settings() -> None:
    # dataclasses.replace (as the upgrade Job builder uses it) must not drop them.
    tenant = dataclasses.replace(_encrypted_tenant(), image="odoo:19.0")
    assert tenant.database_tls == VERIFY_FULL
    assert _env(_pods(tenant)["upgrade"]["containers"][0])["PGSSLMODE"] == "verify-full"
