"""A tenant with prefork web pods (``workers: 1``), an extra module and tenant options,
applied through the operator and run by real Odoo 17.0 and 18.0 on the real node.

Each test reads what real Odoo did: the HTTP answers of the pod, the tenant database the
init Job wrote, the processes and limits of the pods, Odoo's parse of the pods' command
lines and configuration file, and the pods' logs.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

import psycopg
from e2e.tenants import DRIFT_INTERVAL_SECONDS, GROUP, PLURAL, VERSION, MetricsOperator
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from conformance.tenants import (
    CRON_TIMEOUT_SECONDS,
    INGRESS_TIMEOUT_SECONDS,
    Ingress,
    Tenant,
    admin_password,
    authenticate,
    effective_config,
    eventually,
    http_get,
    http_request,
    https_request,
    https_request_unverified,
    https_websocket_handshake,
    init_pod,
    instance,
    job,
    json_rpc,
    listening_ports,
    log_records,
    main_process,
    odoo_processes,
    only_pod,
    pod_is_ready,
    pod_logs,
    routed_container_port,
    rpc_error_name,
    secret_values,
    tenant_connection,
    websocket_handshake,
)
from odoo_devstack.podrunner.process import RealNodeProcess
from odoo_devstack.processes import ManagedProcess
from odoo_devstack.traefik import TraefikProcess
from odoo_operator.builders.odoo_users import MONITOR_LOGIN
from odoo_operator.builders.tenant import ODOO_HTTP_PORT, ODOO_WEBSOCKET_PORT

TENANT_PREFIX = "cfp"
WORKERS = 1
CRON_THREADS = 1
# Values unlike Odoo's defaults (limit_time_real 120, limit_time_cpu 60, limit_memory_hard
# 2560 MiB, log_level info), so that each one seen in Odoo came from spec.config.
TENANT_CONFIG = {
    "limit_time_real": "1234",
    "limit_time_cpu": "987",
    "limit_memory_hard": str(3 * 1024**3),
    "log_level": "warn",
    # Raises one logger back to INFO under log_level warn: the cron pod's log then says
    # which scheduled action ran, and nothing else of Odoo's INFO records.
    "log_handler": "odoo.addons.base.models.ir_cron:INFO",
}
TENANT_SPEC: dict[str, Any] = {
    "workers": WORKERS,
    "cron": {"replicas": 1, "threads": CRON_THREADS},
    # queue_job: the operator's probe reads its table (OCA's wheel, in both runtimes).
    "modules": ["contacts", "queue_job"],
    "config": TENANT_CONFIG,
}
# The scheduled action made to run: base's daily vacuum, harmless at any time.
CRON_XMLID = ("base", "autovacuum_job")
CRON_NAME = "Auto-vacuum internal data"
_IR_CRON_LOGGER = "odoo.addons.base.models.ir_cron"
# Probes every 5 s (conformance/conftest.py); the first login check waits for the web pod.
PROBE_TIMEOUT_SECONDS = 120.0


def _web_ip(k8s: client.ApiClient, tenant: Tenant) -> str:
    return str(only_pod(k8s, tenant.namespace, "web").status.pod_ip)


def test_ready_means_the_web_pod_on_the_real_node_passed_odoos_health_check(
    k8s: client.ApiClient, real_node: str, tenant: Tenant
) -> None:
    conditions = {
        c["type"]: c["status"] for c in instance(k8s, tenant.name)["status"]["conditions"]
    }
    assert conditions["Ready"] == "True"
    web = only_pod(k8s, tenant.namespace, "web")
    cron = only_pod(k8s, tenant.namespace, "cron")
    assert (web.spec.node_name, cron.spec.node_name) == (real_node, real_node)
    assert pod_is_ready(web), web.status
    # The cron pod has no HTTP port: it is Ready once its startup probe (a PostgreSQL
    # connection in the pod's TCP table, builders/workloads.py) passed on the real process.
    assert pod_is_ready(cron), cron.status
    health = http_get(web.status.pod_ip, ODOO_HTTP_PORT, "/web/health")
    assert health.status == 200, health
    assert json.loads(health.body) == {"status": "pass"}


def test_the_init_job_installed_the_spec_modules_without_demo_data(
    k8s: client.ApiClient, real_node: str, postgres_dsn: str, tenant: Tenant
) -> None:
    init_job = job(k8s, tenant.namespace, "odoo-init")
    assert init_job.status.succeeded == 1, init_job.status
    assert init_pod(k8s, tenant).spec.node_name == real_node
    with tenant_connection(postgres_dsn, tenant) as connection:
        states = dict(
            connection.execute(
                "SELECT name, state FROM ir_module_module WHERE name IN ('base', 'contacts')"
            ).fetchall()
        )
        with_demo = connection.execute(
            "SELECT name FROM ir_module_module WHERE state = 'installed' AND demo ORDER BY name"
        ).fetchall()
    assert states == {"base": "installed", "contacts": "installed"}
    assert with_demo == [], f"modules installed with demo data: {with_demo}"


def test_admin_signs_in_with_the_password_from_the_tenant_secret(
    k8s: client.ApiClient, tenant: Tenant
) -> None:
    password = admin_password(k8s, tenant)
    answer = authenticate(_web_ip(k8s, tenant), tenant.database, "admin", password)
    assert answer.get("error") is None, answer["error"]
    assert answer["result"]["uid"] == 2, answer["result"]  # base.user_admin


def test_odoos_default_admin_password_is_refused(k8s: client.ApiClient, tenant: Tenant) -> None:
    answer = authenticate(_web_ip(k8s, tenant), tenant.database, "admin", "admin")
    assert rpc_error_name(answer) == "odoo.exceptions.AccessDenied", (
        f"admin/admin signs in to {tenant.database}: the tenant kept Odoo's default password "
        f"({answer.get('result', answer)!r:.200})"
    )


def test_the_database_manager_is_not_offered(
    k8s: client.ApiClient, real_node_runner: RealNodeProcess, tenant: Tenant
) -> None:
    address = _web_ip(k8s, tenant)
    for page in ("/web/database/selector", "/web/database/manager"):
        answer = http_get(address, ODOO_HTTP_PORT, page)
        text = answer.body.decode(errors="replace")
        # Odoo renders the page with list_db False: a notice, and neither the databases nor
        # the buttons that act on them.
        assert "database manager has been disabled" in text, (page, answer.status, text[:500])
        assert f"/web?db={tenant.database}" not in text, page
        assert "o_database_action" not in text, page
    assert rpc_error_name(
        json_rpc(address, "/jsonrpc", {"service": "db", "method": "list", "args": []})
    ) == ("odoo.exceptions.AccessDenied")
    # Even the right master password (the operator's, from the tenant Secret) manages
    # nothing: Odoo blocks every management call while list_db is False.
    master = secret_values(k8s, tenant.namespace, "odoo-credentials")["admin-password"]
    duplicate = json_rpc(
        address,
        "/jsonrpc",
        {
            "service": "db",
            "method": "duplicate_database",
            "args": [master, tenant.database, f"{tenant.database}_copy"],
        },
    )
    assert rpc_error_name(duplicate) == "odoo.exceptions.AccessDenied", duplicate
    web = only_pod(k8s, tenant.namespace, "web")
    log = real_node_runner.container_log(tenant.namespace, web.metadata.name, "odoo")
    assert "Database management functions blocked" in log, log[-2000:]


def test_prefork_web_pod_serves_http_on_8069_and_the_websocket_on_8072(
    k8s: client.ApiClient, real_node_runner: RealNodeProcess, tenant: Tenant
) -> None:
    address = _web_ip(k8s, tenant)
    processes = odoo_processes(real_node_runner, address)
    assert {ODOO_HTTP_PORT, ODOO_WEBSOCKET_PORT} <= listening_ports(processes[0].pid)
    status, headers = websocket_handshake(address, ODOO_WEBSOCKET_PORT)
    assert (status, headers.get("upgrade", "").lower()) == (101, "websocket"), headers
    # A prefork HTTP worker cannot hold a websocket: the route must lead to the gevent port.
    status, _ = websocket_handshake(address, ODOO_HTTP_PORT)
    assert status != 101
    assert routed_container_port(k8s, tenant, "/websocket") == ODOO_WEBSOCKET_PORT


def test_only_the_cron_pod_runs_scheduled_actions(
    k8s: client.ApiClient,
    real_node_runner: RealNodeProcess,
    postgres_dsn: str,
    tenant: Tenant,
) -> None:
    web = only_pod(k8s, tenant.namespace, "web")
    cron = only_pod(k8s, tenant.namespace, "cron")
    web_processes = odoo_processes(real_node_runner, web.status.pod_ip)
    cron_processes = odoo_processes(real_node_runner, cron.status.pod_ip)
    web_main, cron_main = main_process(web_processes), main_process(cron_processes)
    assert "--max-cron-threads=0" in web_main.argv, web_main.argv
    assert f"--max-cron-threads={CRON_THREADS}" in cron_main.argv, cron_main.argv
    keys = ("max_cron_threads", "workers", "http_enable")
    assert effective_config(web_main, keys) == {
        "max_cron_threads": 0,
        "workers": WORKERS,
        "http_enable": True,
    }
    assert effective_config(cron_main, keys) == {
        "max_cron_threads": CRON_THREADS,
        "workers": 0,
        "http_enable": False,
    }
    # Prefork Odoo forks a cron worker per cron thread: the web pod holds its supervisor,
    # its HTTP workers and the gevent process, and nothing more.
    gevent = [p for p in web_processes if "gevent" in p.argv]
    assert len(gevent) == 1, web_processes
    assert len(web_processes) == 1 + WORKERS + 1, web_processes
    assert len(cron_processes) == 1, cron_processes

    with tenant_connection(postgres_dsn, tenant) as connection:
        cron_id, before = connection.execute(
            "SELECT c.id, c.lastcall FROM ir_cron c JOIN ir_model_data d"
            " ON d.model = 'ir.cron' AND d.res_id = c.id AND d.module = %s AND d.name = %s",
            CRON_XMLID,
        ).fetchone() or (None, None)
        assert cron_id is not None, f"no scheduled action {CRON_XMLID}"
        due = connection.execute(
            # Odoo stores lastcall in whole seconds (fields.Datetime): compare at that grain.
            "UPDATE ir_cron SET active = true,"
            " nextcall = (now() AT TIME ZONE 'UTC') - interval '1 hour'"
            " WHERE id = %s RETURNING date_trunc('second', now() AT TIME ZONE 'UTC')",
            (cron_id,),
        ).fetchone()[0]  # type: ignore[index]
    # Odoo's own wake-up call (ir.cron._notifydb): the cron threads listen on the server's
    # postgres database and poll their databases at once instead of within a minute.
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute("SELECT pg_notify('cron_trigger', %s)", (tenant.database,))
    started = time.monotonic()

    def ran() -> Any:
        with tenant_connection(postgres_dsn, tenant) as connection:
            row = connection.execute(
                "SELECT lastcall FROM ir_cron WHERE id = %s", (cron_id,)
            ).fetchone()
        return row is not None and row[0] is not None and row[0] >= due

    eventually(
        ran, f"ir_cron {cron_id} lastcall to pass {due} (was {before})", CRON_TIMEOUT_SECONDS
    )
    tenant.timings["scheduled action due -> run"] = time.monotonic() - started
    cron_log = real_node_runner.container_log(tenant.namespace, cron.metadata.name, "odoo")
    web_log = real_node_runner.container_log(tenant.namespace, web.metadata.name, "odoo")
    assert CRON_NAME in cron_log, cron_log[-2000:]
    assert CRON_NAME not in web_log, web_log[-2000:]


def test_spec_config_reaches_odoo_as_odoo_parses_it(
    k8s: client.ApiClient, real_node_runner: RealNodeProcess, tenant: Tenant
) -> None:
    web = only_pod(k8s, tenant.namespace, "web")
    rendered = (
        real_node_runner.pod_dir(tenant.namespace, web.metadata.name) / "volumes/config/odoo.conf"
    ).read_text()
    for key, value in TENANT_CONFIG.items():
        assert f"\n{key} = {value}\n" in rendered, (key, rendered)
    processes = odoo_processes(real_node_runner, web.status.pod_ip)
    parsed = effective_config(main_process(processes), list(TENANT_CONFIG))
    assert parsed == {
        "limit_time_real": 1234,
        "limit_time_cpu": 987,
        "limit_memory_hard": 3 * 1024**3,
        "log_level": "warn",
        "log_handler": [TENANT_CONFIG["log_handler"]],
    }
    # The running HTTP workers hold the limits Odoo sets from these options: the address
    # space limit is limit_memory_hard, the CPU limit limit_time_cpu past the CPU used.
    main = main_process(processes)
    workers = [p for p in processes if p.ppid == main.pid and "gevent" not in p.argv]
    assert len(workers) == WORKERS, processes
    for worker in workers:
        limits = worker.limits()
        assert limits["Max address space"][0] == str(3 * 1024**3), limits
        cpu_soft = int(limits["Max cpu time"][0])
        assert 987 <= cpu_soft <= 987 + 120, limits
    # log_level warn: neither the init Job nor the web pod logged an INFO record of Odoo's,
    # where Odoo's default (info) logs every module loaded.
    for pod in (init_pod(k8s, tenant), web):
        for container, log in pod_logs(real_node_runner, pod).items():
            info = [
                logger
                for level, logger in log_records(log)
                if level == "INFO" and logger.startswith("odoo") and logger != _IR_CRON_LOGGER
            ]
            assert info == [], (
                f"{pod.metadata.name}/{container} logged INFO records of {sorted(set(info))}"
            )


def test_the_operators_probes_read_real_odoo_and_its_monitoring_user_signs_in(
    k8s: client.ApiClient,
    postgres_dsn: str,
    conformance_operator: ManagedProcess,
    tenant: Tenant,
) -> None:
    """The operator's probe loop against this tenant: queue_job states and an overdue
    scheduled action read from Odoo's own tables, /web/health and a login of the monitoring
    user through the tenant's Service (resolved by the local stack's stand-in for cluster
    DNS), each as the operator's metrics."""
    metrics = MetricsOperator.of(conformance_operator)
    with tenant_connection(postgres_dsn, tenant) as connection:
        monitor_uid = connection.execute(
            "SELECT id FROM res_users WHERE login = %s", (MONITOR_LOGIN,)
        ).fetchone()
        assert monitor_uid is not None, f"no Odoo user {MONITOR_LOGIN}"
        # Jobs as queue_job stores them, in the states the probe reports.
        for state in ("pending", "pending", "failed"):
            connection.execute(
                "INSERT INTO queue_job (uuid, state, name, date_created)"
                " VALUES (gen_random_uuid()::text, %s, 'conformance job',"
                " now() AT TIME ZONE 'UTC')",
                (state,),
            )
        # A scheduled action two days overdue, kept from the cron pod meanwhile: Odoo takes
        # a job with FOR NO KEY UPDATE SKIP LOCKED, which this share lock blocks.
        cron_id = connection.execute(
            "UPDATE ir_cron SET nextcall = (now() AT TIME ZONE 'UTC') - interval '2 days'"
            " WHERE id = (SELECT c.id FROM ir_cron c WHERE c.active AND NOT EXISTS"
            " (SELECT 1 FROM ir_model_data d WHERE d.model = 'ir.cron' AND d.res_id = c.id"
            " AND d.module = %s AND d.name = %s) ORDER BY c.id LIMIT 1) RETURNING id",
            CRON_XMLID,
        ).fetchone()
        assert cron_id is not None, "no active scheduled action to hold overdue"
    with tenant_connection(postgres_dsn, tenant) as holder:
        holder.autocommit = False
        holder.execute("SELECT id FROM ir_cron WHERE id = %s FOR SHARE", cron_id)
        samples: dict[str, float | None] = {}

        def reported() -> bool:
            for key, name, labels in (
                ("pending", "odoo_operator_tenant_queue_jobs", {"state": "pending"}),
                ("failed", "odoo_operator_tenant_queue_jobs", {"state": "failed"}),
                ("overdue", "odoo_operator_tenant_cron_overdue", {}),
                ("health", "odoo_operator_tenant_health_check_up", {"target": "service"}),
                ("login", "odoo_operator_tenant_login_check_up", {}),
            ):
                samples[key] = metrics.value(name, instance=tenant.name, **labels)
            return samples == {"pending": 2, "failed": 1, "overdue": 1, "health": 1, "login": 1}

        try:
            eventually(reported, f"the operator's probes of {tenant.name}", PROBE_TIMEOUT_SECONDS)
        except BaseException:
            print(f"last samples: {samples}")
            raise
        finally:
            holder.rollback()
    duration = metrics.value(
        "odoo_operator_tenant_login_check_duration_seconds", instance=tenant.name
    )
    assert duration is not None
    assert duration > 0
    tenant.timings["synthetic login check"] = duration
    # The login really reached Odoo as that user: Odoo logs each one in res_users_log.
    with tenant_connection(postgres_dsn, tenant) as connection:
        logins = connection.execute(
            "SELECT count(*) FROM res_users_log WHERE create_uid = %s", monitor_uid
        ).fetchone()
    assert logins is not None
    assert logins[0] > 0, f"{MONITOR_LOGIN} never signed in"


# -- through the stack's Traefik, as the operator routes it ------------------------------------

# How the alert rules read a tenant out of Traefik's service names.
TRAEFIK_TENANT_SERVICE = re.compile(r"odoo-(.+)-odoo-[0-9a-f]{20}@kubernetescrd")
# Every way a request for Odoo's database manager might be spelt; each must be refused by
# the route itself, before Odoo (which refuses them too: list_db is off).
DATABASE_MANAGER_PATHS = (
    "/web/database/manager",
    "/web/database/selector",
    "/web/database/list",
    "/web/database/create",
    "/web/database/duplicate",
    "/web/database/drop",
    "/web/database/backup",
    "/web/database/restore",
    "/web/database/change_password",
    "/web/database/manager/",
    "/web/database/manager?debug=1",
    "/web/%64atabase/manager",
    "/web/database%2Fmanager",
    "/web%2Fdatabase/manager",
    "/web%2fdatabase/manager",
    "/web%2F%2Fdatabase/manager",
    "/%2Fweb/database/manager",
    "//web/database/manager",
    "/web//database/manager",
    "/web/./database/manager",
    "/web/x/../database/manager",
    "/web/database/%6Danager",
)


def test_traefik_serves_the_tenant_over_tls_with_its_certificate(
    ingress: Ingress, traefik: TraefikProcess
) -> None:
    login = ingress.get("/web/login")
    assert login.status == 200, login.status
    assert b"oe_login_form" in login.body
    # SNI chose the tenant's own certificate (checked against the tenants' CA for the host).
    assert ingress.host in login.certificate_names
    # Plain HTTP is only ever a redirect to HTTPS.
    redirect = http_request(traefik, ingress.host, "/web/login")
    assert redirect.status in (301, 302, 307, 308), redirect.status
    # To the HTTPS entry point (on 443 in a cluster, so without a port there).
    port = "" if traefik.https_port == 443 else f":{traefik.https_port}"
    assert redirect.headers["location"] == f"https://{ingress.host}{port}/web/login"


def test_another_host_never_reaches_the_tenant(ingress: Ingress) -> None:
    assert ingress.get("/web/login").status == 200  # the control: the tenant's host is served
    for host in ("other.odoo.example.com", f"x{ingress.host}", ingress.host.split(".", 1)[1]):
        answer = https_request_unverified(ingress.traefik, host, "/web/login")
        assert answer.status == 404, (host, answer.status)
        assert b"oe_login_form" not in answer.body


def test_odoos_answers_carry_the_security_headers_and_no_server_banner(
    ingress: Ingress,
) -> None:
    headers = ingress.get("/web/login").headers
    assert headers["strict-transport-security"] == "max-age=63072000; includeSubDomains; preload"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "server" not in headers, headers.get("server")
    assert "x-powered-by" not in headers


def test_every_spelling_of_the_database_manager_is_refused_by_the_route(
    ingress: Ingress,
) -> None:
    let_through = {}
    for path in DATABASE_MANAGER_PATHS:
        answer = ingress.get(path)
        # 403: the route's refusal. Anything from Odoo (its own 404 or a page) means the
        # request passed the ingress.
        if answer.status != 403:
            let_through[path] = (answer.status, answer.body[:80])
    assert not let_through, let_through
    assert ingress.get("/web/login").status == 200


def test_the_websocket_upgrades_through_traefik_on_the_gevent_port(ingress: Ingress) -> None:
    status, headers = https_websocket_handshake(ingress.traefik, ingress.ca_file, ingress.host)
    assert status == 101, (status, headers)


def test_a_host_removed_from_the_spec_stops_being_served(
    k8s: client.ApiClient, ingress: Ingress, tenant: Tenant
) -> None:
    custom = client.CustomObjectsApi(k8s)
    extra = f"alt-{tenant.name}.odoo.example.com"

    def set_hosts(hosts: list[str]) -> None:
        custom.patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, tenant.name, {"spec": {"hosts": hosts}}
        )

    def served() -> bool:
        return https_request_unverified(ingress.traefik, extra, "/web/health").status == 200

    set_hosts([ingress.host, extra])
    eventually(served, f"Traefik to serve the added host {extra}", INGRESS_TIMEOUT_SECONDS)
    removed = time.monotonic()
    set_hosts([ingress.host])
    eventually(lambda: not served(), f"{extra} to stop being served", DRIFT_INTERVAL_SECONDS + 30)
    tenant.timings["host removed -> no longer served"] = time.monotonic() - removed
    assert ingress.get("/web/health").status == 200


def test_traefik_counts_the_tenants_requests_under_the_name_the_alerts_read(
    k8s: client.ApiClient, ingress: Ingress, tenant: Tenant
) -> None:
    """The alerts and the dashboard find a tenant's traffic by Traefik's service name
    (monitoring/prometheus-rules.yaml); the access log names the tenant's router and holds
    nothing secret."""
    assert ingress.get("/web/login").status == 200
    # The stack's Traefik on loopback, over http.
    with urllib.request.urlopen(ingress.traefik.metrics_url, timeout=10) as answer:  # noqa: S310
        text = answer.read().decode()
    services = {
        sample.labels["service"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "traefik_service_requests_total" and sample.labels.get("code") == "200"
    }
    mine = {
        service: count
        for service, count in services.items()
        if (found := TRAEFIK_TENANT_SERVICE.fullmatch(service)) and found[1] == tenant.name
    }
    assert sum(mine.values()) > 0, services
    lines = [
        json.loads(line)
        for line in ingress.traefik.access_log.read_text().splitlines()
        if f'"{ingress.host}"' in line
    ]
    assert lines, "no access log line for the tenant's host"
    assert all(line["RouterName"].startswith(f"{tenant.namespace}-") for line in lines)
    # Signed in through Traefik: neither the password nor the session cookie is logged.
    signed_in = https_request(
        ingress.traefik,
        ingress.ca_file,
        ingress.host,
        "/web/session/authenticate",
        method="POST",
        headers={"Content-Type": "application/json"},
        body=json.dumps(
            {
                "jsonrpc": "2.0",
                "method": "call",
                "params": {
                    "db": tenant.database,
                    "login": "admin",
                    "password": admin_password(k8s, tenant),
                },
            }
        ).encode(),
    )
    cookie = signed_in.headers.get("set-cookie", "")
    assert signed_in.status == 200, signed_in.status
    assert "session_id=" in cookie
    session_id = cookie.split("session_id=", 1)[1].split(";", 1)[0]
    log_text = ingress.traefik.access_log.read_text()
    assert admin_password(k8s, tenant) not in log_text
    assert session_id not in log_text
