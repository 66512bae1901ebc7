"""The objects built for a tenant are hardened and keep the database manager shut."""

from __future__ import annotations

import base64
import dataclasses

from odoo_operator.builders.ingress import build_ingress_route
from odoo_operator.builders.network import build_network_policies
from odoo_operator.builders.tenant import Endpoint, Tenant, TenantCredentials
from odoo_operator.builders.workloads import (
    build_deployments,
    build_secrets,
    config_checksum,
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


def test_odoo_conf_pins_the_database_and_hides_the_manager_whatever_extras_say() -> None:
    conf = render_odoo_conf(_tenant(config={"dbfilter": ".*", "limit_time_real": "120"}))
    assert "dbfilter = ^odoo_acme$" in conf
    assert "dbfilter = .*" not in conf
    assert "list_db = False" in conf
    assert "limit_time_real = 120" in conf


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
