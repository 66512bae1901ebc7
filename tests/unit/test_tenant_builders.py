"""The objects built for a tenant are hardened and keep the database manager shut."""

from __future__ import annotations

import base64
import configparser
import dataclasses
import socket
import subprocess
import sys
from typing import Any

import pytest

from odoo_operator.builders.ingress import build_ingress_route
from odoo_operator.builders.network import build_network_policies
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
    config_checksum,
    cron_liveness_command,
    render_odoo_conf,
)
from odoo_operator.model.spec import InstanceSpec


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
    (container,) = build_init_job(_tenant())["spec"]["template"]["spec"]["containers"]
    assert "--without-demo=all" in container["args"]
