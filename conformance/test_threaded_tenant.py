"""A tenant with threaded web pods (``workers: 0``) and no extra module, applied through the
operator and run by real Odoo 17.0 and 18.0 on the real node.

Threaded Odoo serves HTTP and the websocket from one process on the HTTP port, and would run
its cron threads in that same process: the web pod must still run none.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from conformance.tenants import (
    Ingress,
    Tenant,
    effective_config,
    http_get,
    https_websocket_handshake,
    listening_ports,
    main_process,
    odoo_processes,
    only_pod,
    pod_is_ready,
    routed_container_port,
    websocket_handshake,
)
from odoo_devstack.podrunner.process import RealNodeProcess
from odoo_operator.builders.tenant import ODOO_HTTP_PORT, ODOO_WEBSOCKET_PORT

TENANT_PREFIX = "cft"
# A small rate limit, so a burst of requests through Traefik runs past it; clients by their
# loopback source address: 127.0.0.1 (the tests' default) and OTHER_CLIENT are admitted,
# OUTSIDER is not.
RATE_AVERAGE, RATE_BURST = 1, 5
OTHER_CLIENT, OUTSIDER = "127.0.0.2", "127.0.0.9"
TENANT_SPEC: dict[str, Any] = {
    "workers": 0,
    "cron": {"replicas": 1, "threads": 1},
    "ingress": {
        "rateLimit": {"average": RATE_AVERAGE, "burst": RATE_BURST},
        "allowFrom": ["127.0.0.1/32", f"{OTHER_CLIENT}/32"],
    },
}


def test_threaded_web_pod_serves_http_and_the_websocket_on_8069_only(
    k8s: client.ApiClient, real_node: str, real_node_runner: RealNodeProcess, tenant: Tenant
) -> None:
    web = only_pod(k8s, tenant.namespace, "web")
    assert web.spec.node_name == real_node
    assert pod_is_ready(web), web.status
    address = web.status.pod_ip
    assert http_get(address, ODOO_HTTP_PORT, "/web/health").status == 200
    status, headers = websocket_handshake(address, ODOO_HTTP_PORT)
    assert (status, headers.get("upgrade", "").lower()) == (101, "websocket"), headers
    processes = odoo_processes(real_node_runner, address)
    ports = listening_ports(processes[0].pid)
    assert ODOO_HTTP_PORT in ports, ports
    assert ODOO_WEBSOCKET_PORT not in ports, ports
    # The ingress sends /websocket where threaded Odoo answers it.
    assert routed_container_port(k8s, tenant, "/websocket") == ODOO_HTTP_PORT


def test_threaded_web_pod_runs_no_cron_thread(
    k8s: client.ApiClient, real_node_runner: RealNodeProcess, tenant: Tenant
) -> None:
    web = only_pod(k8s, tenant.namespace, "web")
    processes = odoo_processes(real_node_runner, web.status.pod_ip)
    # One process: no prefork supervisor, no gevent process.
    assert len(processes) == 1, processes
    web_main = main_process(processes)
    assert "--max-cron-threads=0" in web_main.argv, web_main.argv
    parsed = effective_config(web_main, ("workers", "max_cron_threads", "http_enable"))
    assert parsed == {"workers": 0, "max_cron_threads": 0, "http_enable": True}


def test_the_websocket_upgrades_through_traefik_on_the_http_port(ingress: Ingress) -> None:
    status, headers = https_websocket_handshake(ingress.traefik, ingress.ca_file, ingress.host)
    assert status == 101, (status, headers)


def test_the_ip_allow_list_admits_its_sources_and_refuses_others(ingress: Ingress) -> None:
    assert ingress.get("/web/login", source=OTHER_CLIENT).status == 200
    refused = ingress.get("/web/login", source=OUTSIDER)
    assert refused.status == 403, refused.status
    assert b"oe_login_form" not in refused.body


def test_the_rate_limit_answers_429_past_its_burst_per_client_address(ingress: Ingress) -> None:
    statuses: list[int] = []
    while 429 not in statuses and len(statuses) < 3 * RATE_BURST:
        statuses.append(ingress.get("/web/health").status)
    assert statuses[0] == 200
    assert statuses[-1] == 429, statuses
    assert set(statuses) <= {200, 429}, statuses
    # Another client's bucket is its own: served at once, while the first one's refills at
    # one request a second.
    assert ingress.get("/web/health", source=OTHER_CLIENT).status == 200
