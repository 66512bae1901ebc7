"""The objects built for a tenant are hardened and keep the database manager shut."""

from __future__ import annotations

import base64
import configparser
import dataclasses
import json
import re
import socket
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from odoo_operator.builders.ingress import build_ingress_route
from odoo_operator.builders.network import build_network_policies
from odoo_operator.builders.objects import build_foundation, build_ingress, build_workloads
from odoo_operator.builders.tenant import (
    RESERVED_TENANT_CONNECTIONS,
    Endpoint,
    Tenant,
    TenantCredentials,
    database_processes,
    db_maxconn,
)
from odoo_operator.builders.workloads import (
    INIT_JOB_TTL_SECONDS,
    build_deployments,
    build_disruption_budget,
    build_init_job,
    build_secrets,
    build_upgrade_job,
    config_checksum,
    cron_liveness_command,
    render_odoo_conf,
)
from odoo_operator.model.config import ConfigError, OperatorConfig, ServerTls
from odoo_operator.model.outcome import Outcome
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.reconcile import instance as reconcile


def _tenant(**spec: object) -> Tenant:
    body = {
        "metadata": {"name": "acme", "uid": "uid-1", "generation": 1},
        "spec": {"version": "18.0", "hosts": ["acme.example.com"], **spec},
    }
    return Tenant(
        spec=InstanceSpec.from_resource(body),
        image="odoo:18.0",
        database=Endpoint("10.0.0.5", 5432),
        redis=Endpoint("redis.example", 6379),
        redis_user="odoo-acme",
        redis_key_prefix="odoo:acme:",
        credentials=TenantCredentials("db-secret", "redis-secret", "master-secret"),
    )


def _read_as_odoo_does(conf: str) -> dict[str, str]:
    parser = configparser.RawConfigParser(strict=True)  # a duplicate option raises
    parser.read_string(conf)
    return dict(parser.items("options"))


def test_odoo_conf_pins_the_database_and_hides_the_manager() -> None:
    options = _read_as_odoo_does(render_odoo_conf(_tenant(config={"limit_time_real": "120"})))
    assert options["dbfilter"] == "^odoo_acme$"
    assert options["list_db"] == "False"
    assert options["admin_passwd"] == "master-secret"
    assert options["limit_time_real"] == "120"


@pytest.mark.parametrize(
    "config",
    [
        {"dbfilter": ".*"},
        {"LIST_DB": "True"},
        {"ADMIN_PASSWD": "known"},
        {"Addons_Path": "/tmp/evil"},
        {"limit_time_real": "600\naddons_path = /tmp/evil"},
        {"limit_time_real": "600\r[options]\rlist_db = True"},
        {"limit_time_cpu": "60", "LIMIT_TIME_CPU": "90"},
        {"dev_mode": "all"},
    ],
)
def test_odoo_conf_is_never_rendered_with_an_option_admission_should_have_refused(
    config: dict[str, str],
) -> None:
    # An object stored before the webhook's rules, or admitted while it was down.
    with pytest.raises(ValueError, match=r"refusing to render odoo\.conf"):
        render_odoo_conf(_tenant(config=config))


def test_tenant_options_are_written_once_in_lower_case_whatever_their_spelling() -> None:
    conf = render_odoo_conf(_tenant(config={"LIMIT_TIME_CPU": "100", "Log_Level": "warn"}))
    options = _read_as_odoo_does(conf)
    assert options["limit_time_cpu"] == "100"
    assert options["log_level"] == "warn"
    assert "LIMIT_TIME_CPU" not in conf
    assert conf == render_odoo_conf(_tenant(config={"limit_time_cpu": "100", "log_level": "warn"}))


def test_a_tenant_without_extras_keeps_the_odoo_conf_it_had_before_the_allowlist() -> None:
    # The same text means the same checksum: upgrading the operator rolls no pods.
    assert render_odoo_conf(_tenant()) == (
        "[options]\n"
        "db_host = 10.0.0.5\n"
        "db_port = 5432\n"
        "db_user = odoo_acme\n"
        "db_password = db-secret\n"
        "db_name = odoo_acme\n"
        "db_maxconn = 9\n"
        "dbfilter = ^odoo_acme$\n"
        "list_db = False\n"
        "admin_passwd = master-secret\n"
        "proxy_mode = True\n"
        "data_dir = /var/lib/odoo\n"
        "http_port = 8069\n"
        "gevent_port = 8072\n"
        "workers = 2\n"
    )


def test_a_generated_value_that_would_span_lines_is_refused_without_showing_it() -> None:
    tenant = _tenant()
    leaked = dataclasses.replace(
        tenant,
        credentials=dataclasses.replace(tenant.credentials, admin_password="x\nlist_db = True"),
    )
    with pytest.raises(ValueError, match="admin_passwd spans lines") as refused:
        render_odoo_conf(leaked)
    assert "list_db = True" not in str(refused.value)


def test_pods_meet_the_restricted_pod_security_profile() -> None:
    for deployment in build_deployments(_tenant()):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        container = pod["containers"][0]["securityContext"]
        assert container["allowPrivilegeEscalation"] is False
        assert container["capabilities"] == {"drop": ["ALL"]}
        assert container["readOnlyRootFilesystem"] is True


def test_cron_never_runs_twice_and_web_runs_no_scheduled_actions() -> None:
    web, cron = build_deployments(_tenant(replicas=3))
    assert "--max-cron-threads=0" in web["spec"]["template"]["spec"]["containers"][0]["args"]
    assert cron["spec"]["strategy"] == {"type": "Recreate"}
    assert cron["spec"]["replicas"] == 1


def test_suspend_scales_everything_to_zero() -> None:
    assert [d["spec"]["replicas"] for d in build_deployments(_tenant(suspend=True))] == [0, 0]


def test_a_configuration_change_changes_the_pod_checksum() -> None:
    assert config_checksum(_tenant()) != config_checksum(_tenant(workers=4))
    assert config_checksum(_tenant()) == config_checksum(_tenant())


def test_a_new_redis_password_alone_rolls_the_pods() -> None:
    before = _tenant()
    after = dataclasses.replace(
        before, credentials=dataclasses.replace(before.credentials, redis_password="rotated")
    )
    assert render_odoo_conf(before) == render_odoo_conf(after)
    assert config_checksum(before) != config_checksum(after)


def test_web_pods_roll_one_by_one_keeping_every_serving_pod_and_cron_never_overlaps() -> None:
    web, cron = build_deployments(_tenant(replicas=3))
    assert web["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert cron["spec"]["strategy"] == {"type": "Recreate"}


def test_the_database_manager_route_outranks_the_catch_all_and_is_refused() -> None:
    routes = build_ingress_route(_tenant())["spec"]["routes"]
    blocked = routes[0]
    assert "PathPrefix(`/web/database`)" in blocked["match"]
    assert blocked["priority"] > max(r["priority"] for r in routes[1:])
    assert blocked["middlewares"] == [{"name": "block-database-manager"}]


def test_egress_to_a_literal_database_address_is_a_single_host() -> None:
    policies = {p["metadata"]["name"]: p for p in build_network_policies(_tenant())}
    egress = policies["allow-database-and-redis"]["spec"]["egress"]
    assert egress[0] == {
        "ports": [{"protocol": "TCP", "port": 5432}],
        "to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}],
    }
    # A DNS name cannot be a NetworkPolicy peer: the rule is limited by port.
    assert egress[1] == {"ports": [{"protocol": "TCP", "port": 6379}]}


def test_secrets_carry_the_documented_keys() -> None:
    secrets = {s["metadata"]["name"]: s["data"] for s in build_secrets(_tenant())}
    assert set(secrets["odoo-database"]) == {"host", "port", "database", "username", "password"}
    assert set(secrets["odoo-redis"]) == {"host", "port", "username", "password", "prefix"}
    assert base64.b64decode(secrets["odoo-database"]["password"]) == b"db-secret"


def test_only_backup_pods_may_reach_out_to_the_blob_store() -> None:
    policies = {p["metadata"]["name"]: p for p in build_network_policies(_tenant())}
    storage = policies["allow-backup-to-storage"]["spec"]
    assert storage["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "backup"}}
    assert storage["egress"] == [{"ports": [{"protocol": "TCP", "port": 443}]}]


def test_only_the_operators_namespace_may_reach_the_web_pods_health_port() -> None:
    policies = {p["metadata"]["name"]: p for p in build_network_policies(_tenant())}
    check = policies["allow-operator-health-check"]["spec"]
    assert check["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "web"}}
    (rule,) = check["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8069}]  # not the websocket port
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "odoo-operator"}}}
    ]


def test_web_pods_spread_over_nodes_as_well_as_zones_without_blocking_scheduling() -> None:
    web, cron = build_deployments(_tenant(replicas=3))
    constraints = web["spec"]["template"]["spec"]["topologySpreadConstraints"]
    by_key = {c["topologyKey"]: c for c in constraints}
    assert set(by_key) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in constraints:
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
        assert constraint["maxSkew"] == 1
        assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "web"
    assert "topologySpreadConstraints" not in cron["spec"]["template"]["spec"]


def test_the_disruption_budget_never_protects_a_pod_that_is_not_ready() -> None:
    assert build_disruption_budget(_tenant(replicas=1)) is None
    budget = build_disruption_budget(_tenant(replicas=2))
    assert budget is not None
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert budget["spec"]["maxUnavailable"] == 1


def test_the_cron_container_is_probed_without_http_and_web_keeps_its_health_path() -> None:
    web, cron = build_deployments(_tenant())
    (cron_container,) = cron["spec"]["template"]["spec"]["containers"]
    assert "--no-http" in cron_container["args"]
    assert "ports" not in cron_container
    command = cron_container["livenessProbe"]["exec"]["command"]
    assert command == cron_liveness_command(5432)
    assert cron_container["startupProbe"]["exec"]["command"] == command
    # Five failures a minute apart: a short database blip does not restart the pod.
    assert (
        cron_container["livenessProbe"]["periodSeconds"]
        * (cron_container["livenessProbe"]["failureThreshold"])
        >= 300
    )
    (web_container,) = web["spec"]["template"]["spec"]["containers"]
    assert web_container["livenessProbe"]["httpGet"]["path"] == "/web/health"


def _run_probe(port: int) -> int:
    command = cron_liveness_command(port)
    assert command[0] == "python3"
    return subprocess.run([sys.executable, *command[1:]], check=False, timeout=30).returncode


def test_the_cron_probe_passes_only_while_a_connection_to_the_database_port_is_open() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert _run_probe(port) == 1  # listening is not being connected
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                assert client.getsockname()[1] != port
                assert _run_probe(port) == 0
    assert _run_probe(port) == 1  # the connection gone, as when a cron thread died


def test_the_init_job_is_cleaned_up_a_week_after_it_finished() -> None:
    job = build_init_job(_tenant())
    assert job["spec"]["ttlSecondsAfterFinished"] == INIT_JOB_TTL_SECONDS == 7 * 24 * 3600


@pytest.mark.parametrize(
    ("replicas", "workers", "cron", "limit"),
    [(1, 2, 1, 50), (3, 4, 1, 50), (2, 0, 1, 20), (20, 32, 1, 1000), (1, 2, 0, 5)],
)
def test_every_odoo_process_at_its_db_maxconn_stays_inside_the_roles_connection_limit(
    replicas: int, workers: int, cron: int, limit: int
) -> None:
    spec = _tenant(
        replicas=replicas,
        workers=workers,
        cron={"replicas": cron},
        database={"connectionLimit": limit},
    ).spec
    per_process = db_maxconn(spec)
    assert per_process >= 2
    if per_process > 2:  # above the floor, the budget holds with room for Jobs and the probe
        assert per_process * database_processes(spec) + RESERVED_TENANT_CONNECTIONS <= limit


def test_threaded_odoo_gets_its_websockets_on_the_http_port() -> None:
    def websocket_route(workers: int) -> dict[str, Any]:
        route = build_ingress_route(_tenant(workers=workers))
        return next(r for r in route["spec"]["routes"] if "/websocket" in r["match"])

    assert websocket_route(0)["services"] == [{"name": "odoo", "port": 8069}]
    assert websocket_route(2)["services"] == [{"name": "odoo", "port": 8072}]


def test_the_init_job_installs_no_demo_data() -> None:
    # The modules are installed by the Job's init container; the main one sets passwords.
    (container,) = build_init_job(_tenant())["spec"]["template"]["spec"]["initContainers"]
    assert "--without-demo=all" in container["args"]


# --- sessions: where the image keeps them (the version map's sessionStore) -----------------


def _session_tenant(**spec: object) -> Tenant:
    """The acme tenant on Odoo 17.0, whose image carries session_redis."""
    return dataclasses.replace(
        _tenant(version="17.0", **spec), image="odoo:17.0", session_store="redis"
    )


def _kubelet_environment(tenant: Tenant, container: dict[str, Any]) -> dict[str, str]:
    """A container's variables as the kubelet sets them: keys of the tenant's Secrets read
    (those of other Secrets stand as ``<secret/key>``), and ``$(NAME)`` replaced by a variable
    defined before it (others stay as written)."""
    secrets = {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for s in build_secrets(tenant)
    }
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            known = secrets.get(ref["name"], {})
            env[item["name"]] = known.get(ref["key"], f"<{ref['name']}/{ref['key']}>")
        else:
            env[item["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                item["value"],
            )
    return env


def _odoo_containers(tenant: Tenant) -> dict[str, dict[str, Any]]:
    """Every container running the tenant's Odoo: web, cron, the init Job's, an upgrade's."""
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in build_deployments(tenant)}
    pods["init"] = build_init_job(tenant)["spec"]["template"]["spec"]
    upgrade = build_upgrade_job(
        tenant, upgrade_id="u1", image=tenant.image, database="odoo_acme_u1", modules="all"
    )
    pods["upgrade"] = upgrade["spec"]["template"]["spec"]
    return {
        f"{name}/{container['name']}": container
        for name, pod in pods.items()
        for container in [*pod.get("initContainers", []), *pod["containers"]]
        # The upgrade's init container copies files with the image; it runs no Odoo.
        if container["name"] != "filestore-copy"
    }


def test_an_image_with_session_redis_loads_it_server_wide_in_one_operator_owned_line() -> None:
    conf = render_odoo_conf(_session_tenant(config={"limit_time_real": "120"}))
    assert _read_as_odoo_does(conf)["server_wide_modules"] == "base,web,session_redis"
    assert conf.count("server_wide_modules") == 1
    # The tenant cannot set it: the allowlist refuses the option, whatever the image.
    with pytest.raises(ValueError, match=r"refusing to render odoo\.conf"):
        render_odoo_conf(_session_tenant(config={"server_wide_modules": "base,web"}))


def test_every_odoo_pod_logs_in_to_redis_as_the_tenants_user_through_the_url() -> None:
    tenant = _session_tenant()
    containers = _odoo_containers(tenant)
    assert {"odoo-web/odoo", "odoo-cron/odoo"} <= containers.keys()
    for name, container in containers.items():
        env = _kubelet_environment(tenant, container)
        assert env["ODOO_SESSION_REDIS"] == "1", name
        # session_redis reads no user name: only the URL carries it (and the password).
        assert env["ODOO_SESSION_REDIS_URL"] == (
            "redis://odoo-acme:redis-secret@redis.example:6379/0"
        ), name
        # The store writes session::odoo:acme:<sid>, the extra pattern of the ACL user.
        assert env["ODOO_SESSION_REDIS_PREFIX"] == "odoo:acme", name
    assert "redis-secret" not in json.dumps(build_deployments(tenant))


def test_the_session_url_keeps_tls_and_brackets_an_ipv6_server() -> None:
    encrypted = dataclasses.replace(_session_tenant(), redis_tls=ServerTls("verify-full"))
    env = _kubelet_environment(encrypted, _odoo_containers(encrypted)["odoo-web/odoo"])
    location, _, query = env["ODOO_SESSION_REDIS_URL"].partition("?")
    assert location == "rediss://odoo-acme:redis-secret@redis.example:6379/0"
    assert "ssl_cert_reqs=required" in query.split("&")
    ipv6 = dataclasses.replace(_session_tenant(), redis=Endpoint("fd00::6", 6379))
    env = _kubelet_environment(ipv6, _odoo_containers(ipv6)["odoo-web/odoo"])
    assert env["ODOO_SESSION_REDIS_URL"] == "redis://odoo-acme:redis-secret@[fd00::6]:6379/0"


def test_an_image_without_a_session_module_gets_no_session_configuration_at_all() -> None:
    tenant = _tenant()  # Odoo 18.0, whose image has no session module
    assert tenant.session_store == "none"
    assert "server_wide_modules" not in render_odoo_conf(tenant)
    containers = _odoo_containers(tenant)
    assert {"odoo-web/odoo", "odoo-cron/odoo"} <= containers.keys()
    for name, container in containers.items():
        names = {item["name"] for item in container.get("env", [])}
        assert not {n for n in names if n.startswith("ODOO_SESSION_REDIS")}, name


def test_the_version_map_takes_plain_images_and_entries_with_a_session_store() -> None:
    config = OperatorConfig.from_mapping(
        {
            "versions": {
                "16.0": {"image": "odoo:16.0"},
                "17.0": {"image": "registry.example/odoo:17.0", "sessionStore": "redis"},
                "18.0": "odoo:18.0",
            }
        }
    )
    # Every entry still names its image the way the rest of the operator reads it.
    assert config.images == {
        "16.0": "odoo:16.0",
        "17.0": "registry.example/odoo:17.0",
        "18.0": "odoo:18.0",
    }
    assert config.image_for("17.0", None) == "registry.example/odoo:17.0"
    assert config.session_store_for("17.0", None) == "redis"
    assert config.session_store_for("16.0", None) == "none"
    assert config.session_store_for("18.0", None) == "none"
    # spec.image: the map describes its own image only.
    assert config.session_store_for("17.0", "registry.example/odoo:17.0") == "redis"
    assert config.session_store_for("17.0", "registry.example/custom:17.0") == "none"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"image": "odoo:17.0", "sessionstore": "redis"}, r"sessionstore is not a version"),
        (
            {"image": "odoo:17.0", "sessionStore": "memcached"},
            r"sessionStore must be one of redis, none",
        ),
        ({"image": "odoo:17.0", "sessionStore": True}, r"sessionStore must be one of redis, none"),
        ({"sessionStore": "redis"}, r"image must be an image reference"),
        ({"image": " "}, r"image must be an image reference"),
    ],
)
def test_a_version_entry_that_would_be_misread_is_refused(
    entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=r'versions\["17\.0"\]\.' + message):
        OperatorConfig.from_mapping({"versions": {"17.0": entry}})


def _outcome_of_a_serving_tenant(tenant: Tenant, config: OperatorConfig) -> Outcome:
    """The conditions of a pass in which every part of ``tenant`` is up, as _finish ends it."""
    outcome = Outcome()
    for part in ("DatabaseReady", "RedisReady", "Initialized", "WorkloadReady", "IngressReady"):
        outcome.set(part, True, "Ok", "up")
    version = tenant.spec.version
    outcome.conditions.append(
        reconcile._sessions_condition(tenant, "main", version, config.images.get(version))
    )
    return reconcile._finish(outcome, SimpleNamespace(kube=SimpleNamespace(writes=0)), 0)  # type: ignore[arg-type]


def test_sessions_outside_redis_are_reported_without_making_the_tenant_unready() -> None:
    config = OperatorConfig.from_mapping(
        {"versions": {"17.0": {"image": "odoo:17.0", "sessionStore": "redis"}, "18.0": "odoo:18.0"}}
    )
    filestore = _outcome_of_a_serving_tenant(_tenant(), config)
    redis = _outcome_of_a_serving_tenant(_session_tenant(), config)
    custom = _outcome_of_a_serving_tenant(_tenant(image="registry.example/odoo:18.0-x"), config)

    conditions = {c.type: c for c in filestore.conditions}
    assert conditions["SessionsInRedis"].status == "False"
    assert conditions["SessionsInRedis"].reason == "NoSessionModule"
    assert "filestore" in conditions["SessionsInRedis"].message
    assert "Odoo 18.0 has no session module" in conditions["SessionsInRedis"].message
    assert conditions["Ready"].status == "True"
    assert conditions["Reconciling"].status == "False"
    assert filestore.phase == "Ready"
    sessions = next(c for c in redis.conditions if c.type == "SessionsInRedis")
    assert (sessions.status, sessions.reason) == ("True", "SessionModule")
    assert "session::odoo:acme:" in sessions.message
    message = next(c for c in custom.conditions if c.type == "SessionsInRedis").message
    assert "spec.image registry.example/odoo:18.0-x" in message
    assert next(c for c in custom.conditions if c.type == "Ready").status == "True"


def _empty_lists(value: object, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _empty_lists(item, f"{path}.{key}")]
    if isinstance(value, list):
        if not value:
            return [path]
        return [
            p for index, item in enumerate(value) for p in _empty_lists(item, f"{path}[{index}]")
        ]
    return []


@pytest.mark.parametrize("workers", [0, 2])
def test_no_desired_object_holds_an_empty_list_the_api_server_would_drop(workers: int) -> None:
    # The server omits empty lists; a desired one never matches the live object, so every
    # drift pass of an unchanged tenant would write it again.
    tenant = _tenant(workers=workers)
    objects = [*build_foundation(tenant), *build_workloads(tenant), *build_ingress(tenant)]
    objects.append(build_init_job(tenant))
    found = [p for obj in objects for p in _empty_lists(obj, obj["metadata"]["name"])]
    assert found == []
