"""Helpers of the conformance suite: tenants on the real node, and what their pods really do.

Every check here goes to a real process: HTTP to the pod's address, the pod's processes
read from ``/proc`` of this machine (the real node runs containers as local processes, in
their own network and mount namespaces but in the host's process namespace), Odoo's own
configuration parser run inside a container's namespaces, and the tenant's database.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from e2e.tenants import GROUP, PLURAL, VERSION
from kubernetes import client
from psycopg import conninfo

from odoo_devstack.demo import is_ready
from odoo_devstack.pki import LocalPKI
from odoo_devstack.podrunner import network
from odoo_devstack.podrunner.images import SYSTEM_PATH
from odoo_devstack.podrunner.process import RealNodeProcess
from odoo_devstack.processes import ManagedProcess
from odoo_devstack.traefik import LOOPBACK as TRAEFIK_LOOPBACK
from odoo_devstack.traefik import TraefikProcess, issue_tenant_certificate
from odoo_operator.builders.ingress import TRAEFIK_API
from odoo_operator.builders.tenant import ODOO_HTTP_PORT, ODOO_UID

# A real Odoo initialises its database and starts its pods in tens of seconds on a quiet
# machine; the 2-core development machine, shared with other work, needs several times that.
READY_TIMEOUT_SECONDS = 480.0
GONE_TIMEOUT_SECONDS = 180.0
# Odoo's cron threads wake up at least every SLEEP_INTERVAL (60 s) plus their number, even
# without the NOTIFY that wakes them at once.
CRON_TIMEOUT_SECONDS = 120.0
# Traefik picks up a route the operator wrote within a few seconds of its watch event.
INGRESS_TIMEOUT_SECONDS = 60.0
ADMIN_PASSWORD_KEY = "odoo-admin-password"  # noqa: S105 - a Secret key, not a value
CREDENTIALS_SECRET = "odoo-credentials"  # noqa: S105 - an object name, not a value
# One record of Odoo's log: "<date> <time> <pid> <LEVEL> <db or ?> <logger>: <message>".
LOG_RECORD = re.compile(
    r"^\d{4}-\d{2}-\d{2} [\d:,]+ (?P<pid>\d+) (?P<level>[A-Z]+) (?P<db>\S+) (?P<logger>[\w.]+): ",
    re.MULTILINE,
)
TRAEFIK_GROUP, TRAEFIK_VERSION = TRAEFIK_API.split("/")
_WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


def eventually(check: Callable[[], Any], what: str, timeout: float, poll: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy, and return that; fail naming
    ``what`` when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


@dataclass
class Tenant:
    """One OdooInstance of the suite, Ready on the real node, and what it cost to get there."""

    name: str
    version: str
    spec: dict[str, Any]
    apply_to_ready_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        """The tenant namespace the operator made."""
        return f"odoo-{self.name}"

    @property
    def database(self) -> str:
        """The tenant database (and role) the operator made."""
        return f"odoo_{self.name.replace('-', '_')}"

    @property
    def hosts(self) -> list[str]:
        """The hosts the tenant is served at (conformance_instance's, unless the spec says)."""
        return list(self.spec.get("hosts") or [f"{self.name}.odoo.example.com"])


def conformance_instance(name: str, version: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """An OdooInstance whose pods run on the real node: dedicated tenancy (the conformance
    operator's dedicated node pool is the real node) on the dedicated servers, deleted with
    its database."""
    body_spec: dict[str, Any] = {
        "version": version,
        "tenancy": "dedicated",
        "hosts": [f"{name}.odoo.example.com"],
        "database": {"serverRef": "dedicated"},
        "redis": {"serverRef": "dedicated"},
        "filestore": {"size": "1Gi"},
        "deletionPolicy": "Delete",
        **spec,
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OdooInstance",
        "metadata": {"name": name},
        "spec": body_spec,
    }


# -- the cluster's view --------------------------------------------------------------------------


def instance(k8s: client.ApiClient, name: str) -> dict[str, Any]:
    """The OdooInstance as stored."""
    found: Any = client.CustomObjectsApi(k8s).get_cluster_custom_object(
        GROUP, VERSION, PLURAL, name
    )
    return dict(found)


def namespace_pods(k8s: client.ApiClient, namespace: str, selector: str = "") -> list[Any]:
    """The pods of a namespace (matching a label selector), as the API returns them."""
    listing: Any = client.CoreV1Api(k8s).list_namespaced_pod(namespace, label_selector=selector)
    return list(listing.items)


def pods(k8s: client.ApiClient, namespace: str, component: str) -> list[Any]:
    """The tenant's pods of one component (web, cron, init), not being deleted."""
    found = namespace_pods(k8s, namespace, f"app.kubernetes.io/component={component}")
    return [pod for pod in found if pod.metadata.deletion_timestamp is None]


def init_pod(k8s: client.ApiClient, tenant: Tenant) -> Any:
    """The pod of the tenant's init Job (its only one: the Job succeeded at once)."""
    found = namespace_pods(k8s, tenant.namespace, "batch.kubernetes.io/job-name=odoo-init")
    assert len(found) == 1, [pod.metadata.name for pod in found]
    return found[0]


def job(k8s: client.ApiClient, namespace: str, name: str) -> Any:
    """A Job, as the API returns it."""
    return client.BatchV1Api(k8s).read_namespaced_job(name, namespace)


def pod_is_ready(pod: Any) -> bool:
    """Whether the pod's Ready condition is True."""
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def only_pod(k8s: client.ApiClient, namespace: str, component: str) -> Any:
    """The single pod of a component; fail when there is none or more than one."""
    found = pods(k8s, namespace, component)
    names = [pod.metadata.name for pod in found]
    assert len(found) == 1, f"expected one {component} pod in {namespace}, found {names}"
    return found[0]


def secret_values(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    """The decoded data of a Secret."""
    data = client.CoreV1Api(k8s).read_namespaced_secret(name, namespace).data or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def admin_password(k8s: client.ApiClient, tenant: Tenant) -> str:
    """Odoo's admin password from the tenant Secret; fails, naming the key, while the
    operator does not provide it."""
    values = secret_values(k8s, tenant.namespace, CREDENTIALS_SECRET)
    if ADMIN_PASSWORD_KEY not in values:
        pytest.fail(
            f"Secret {tenant.namespace}/{CREDENTIALS_SECRET} has no key {ADMIN_PASSWORD_KEY!r} "
            f"(keys: {sorted(values)}): the operator gives no way to sign in as Odoo's admin "
            "user other than Odoo's default password"
        )
    return values[ADMIN_PASSWORD_KEY]


def wait_ready(
    k8s: client.ApiClient, runner: RealNodeProcess, operator: ManagedProcess, name: str
) -> dict[str, Any]:
    """Wait for Ready=True at the current generation; fail with the status, the pods, their
    logs and the operator's log."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        found = instance(k8s, name)
        if is_ready(found):
            return found
        assert operator.exit_code() is None, operator.log_tail()
        time.sleep(0.5)
    pytest.fail(
        f"{name} never became Ready: {found.get('status')}\n"
        f"{describe_pods(k8s, runner, f'odoo-{name}')}\n{operator.log_tail()}"
    )


def describe_pods(k8s: client.ApiClient, runner: RealNodeProcess, namespace: str) -> str:
    """Each pod of a namespace: node, phase, container states and the end of its log."""
    lines = []
    for pod in namespace_pods(k8s, namespace):
        statuses = [
            *(pod.status.init_container_statuses or []),
            *(pod.status.container_statuses or []),
        ]
        states = [f"{s.name}: ready={s.ready} state={s.state.to_dict()}" for s in statuses]
        lines.append(
            f"--- pod {pod.metadata.name} on {pod.spec.node_name}: {pod.status.phase} {states}"
        )
        for container, log in pod_logs(runner, pod).items():
            lines.append(f"--- {container}:\n{log[-3000:]}")
    return "\n".join(lines) or f"no pod in {namespace}"


def pod_logs(runner: RealNodeProcess, pod: Any) -> dict[str, str]:
    """Everything each container of a pod (init containers first) wrote, by name."""
    containers = [*(pod.spec.init_containers or []), *pod.spec.containers]
    return {
        container.name: runner.container_log(
            pod.metadata.namespace, pod.metadata.name, container.name
        )
        for container in containers
    }


def job_seconds(k8s: client.ApiClient, namespace: str, name: str) -> float:
    """How long a finished Job ran, from its start to its completion (whole seconds)."""
    status = job(k8s, namespace, name).status
    if status.start_time is None or status.completion_time is None:
        return float("nan")
    return float((status.completion_time - status.start_time).total_seconds())


def routed_container_port(k8s: client.ApiClient, tenant: Tenant, path: str) -> int:
    """The web container's port that the tenant's IngressRoute sends ``path`` to: the
    route's Service port, through the Service's (named) targetPort, to the containerPort."""
    routes: Any = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
        TRAEFIK_GROUP, TRAEFIK_VERSION, tenant.namespace, "ingressroutes", "odoo"
    )
    matching = [
        route for route in routes["spec"]["routes"] if f"PathPrefix(`{path}`)" in route["match"]
    ]
    assert len(matching) == 1, routes["spec"]["routes"]
    service_port = matching[0]["services"][0]["port"]
    service: Any = client.CoreV1Api(k8s).read_namespaced_service("odoo", tenant.namespace)
    target = next(p.target_port for p in service.spec.ports if p.port == service_port)
    if isinstance(target, int):
        return target
    container = only_pod(k8s, tenant.namespace, "web").spec.containers[0]
    return int(next(p.container_port for p in container.ports if p.name == target))


# -- HTTP to the pods ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpAnswer:
    """A status, headers and body from a pod."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def http_get(address: str, port: int, path: str) -> HttpAnswer:
    """``GET path`` on a pod's address."""
    return _request(address, port, "GET", path, None)


def _request(address: str, port: int, method: str, path: str, body: bytes | None) -> HttpAnswer:
    # http.client rather than urllib: no proxy from the environment may stand between the
    # test and the pod.
    connection = http.client.HTTPConnection(address, port, timeout=60)
    headers = {"Host": f"{address}:{port}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return HttpAnswer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def json_rpc(address: str, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-RPC 2.0 ``call`` to Odoo's HTTP port of a pod: the whole response, with
    ``result`` or ``error``."""
    payload = {"jsonrpc": "2.0", "method": "call", "id": 1, "params": dict(params)}
    answer = _request(address, ODOO_HTTP_PORT, "POST", path, json.dumps(payload).encode())
    assert answer.status == 200, f"POST {path} answered {answer.status}: {answer.body[:500]!r}"
    response: dict[str, Any] = json.loads(answer.body)
    return response


def authenticate(address: str, database: str, login: str, password: str) -> dict[str, Any]:
    """``/web/session/authenticate``, as Odoo's web client signs in."""
    return json_rpc(
        address,
        "/web/session/authenticate",
        {"db": database, "login": login, "password": password},
    )


def rpc_error_name(response: Mapping[str, Any]) -> str | None:
    """The Python class of the exception an Odoo JSON-RPC error reports, or None."""
    error = response.get("error")
    if not error:
        return None
    return str((error.get("data") or {}).get("name", error.get("message")))


def websocket_handshake(address: str, port: int) -> tuple[int, dict[str, str]]:
    """Open ``/websocket`` as a browser does; return the status and headers of the answer.

    The Sec-WebSocket-Accept header of a 101 is checked against the key (RFC 6455): a proxy
    or another server cannot have produced it by accident.
    """
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /websocket HTTP/1.1\r\n"
        f"Host: {address}:{port}\r\n"
        f"Origin: http://{address}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((address, port), timeout=30) as connection:
        connection.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(4096)
            if not chunk:
                break
            received += chunk
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1]) if head and head[0].startswith("HTTP/") else 0
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in head[1:])
    }
    if status == 101:
        expected = base64.b64encode(
            hashlib.sha1((key + _WEBSOCKET_GUID).encode()).digest()  # noqa: S324 - RFC 6455
        ).decode()
        assert headers.get("sec-websocket-accept") == expected, headers
    return status, headers


# -- the pods' processes -------------------------------------------------------------------------


@dataclass(frozen=True)
class PodProcess:
    """A process of a pod, as this machine's /proc shows it."""

    pid: int
    ppid: int
    argv: tuple[str, ...]

    def alive(self) -> bool:
        """Whether this very process still runs (same pid, same command line)."""
        current = _read_process(self.pid)
        return current is not None and current.argv == self.argv

    @property
    def is_odoo(self) -> bool:
        """Whether this is an Odoo server process (not a probe or a relay)."""
        return any(Path(part).name == "odoo-bin" for part in self.argv[:2])

    def limits(self) -> dict[str, tuple[str, str]]:
        """``/proc/<pid>/limits``: limit name -> (soft, hard)."""
        table: dict[str, tuple[str, str]] = {}
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines()[1:]:
            # Names are words separated by single spaces, columns by two or more.
            columns = re.split(r"\s{2,}", line.strip())
            if len(columns) >= 3:
                table[columns[0]] = (columns[1], columns[2])
        return table


def _read_process(pid: int) -> PodProcess | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None  # gone meanwhile
    ppid = int(re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE).group(1))  # type: ignore[union-attr]
    return PodProcess(pid, ppid, tuple(part.decode() for part in argv if part))


def find_pod_netns(runner: RealNodeProcess, pod_ip: str) -> str | None:
    """The name of the real node's network namespace that holds ``pod_ip``, if any."""
    for name in runner.netns_names():
        output = subprocess.run(
            ["ip", "-n", name, "-4", "-o", "addr", "show"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if f" {pod_ip}/" in output:
            return name
    return None


def pod_processes(netns: str) -> list[PodProcess]:
    """Every process in a pod's network namespace (Odoo, probes, the runner's relays)."""
    found = [_read_process(pid) for pid in network.netns_pids(netns)]
    return [process for process in found if process is not None]


def odoo_processes(runner: RealNodeProcess, pod_ip: str) -> list[PodProcess]:
    """The Odoo server processes running in the pod of ``pod_ip``."""
    netns = find_pod_netns(runner, pod_ip)
    if netns is None:
        pytest.fail(f"no network namespace of {runner.node_name} holds {pod_ip}")
    return [process for process in pod_processes(netns) if process.is_odoo]


def main_process(processes: Sequence[PodProcess]) -> PodProcess:
    """The process the container started: the Odoo process whose parent is not Odoo."""
    pids = {process.pid for process in processes}
    roots = [process for process in processes if process.ppid not in pids]
    assert len(roots) == 1, f"expected one main Odoo process, found {roots}"
    return roots[0]


def listening_ports(pid: int) -> set[int]:
    """TCP ports listened on in the network namespace of ``pid`` (its /proc/net tables)."""
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            columns = row.split()
            if len(columns) > 3 and columns[3] == "0A":  # TCP_LISTEN
                ports.add(int(columns[1].rsplit(":", 1)[1], 16))
    return ports


# Run by the runtime's interpreter inside a container's namespaces, as the pod's user: Odoo's
# own parser reads the container's command line and configuration file, as the server did.
_EFFECTIVE_CONFIG_SCRIPT = """
import json, os, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
from odoo.tools import config
config.parse_config(sys.argv[2:])
print(json.dumps({key: config[key] for key in json.loads(os.environ["CONFORMANCE_KEYS"])}))
"""


def effective_config(process: PodProcess, keys: Sequence[str]) -> dict[str, Any]:
    """Odoo's configuration as Odoo parses the command line of ``process`` (``odoo-bin``
    and its arguments), run with the process's interpreter, in its mount and network
    namespaces and as the pod's user: the same file at ``/etc/odoo/odoo.conf``, the same
    addons folders, the same rights."""
    python, odoo_bin, *arguments = process.argv
    argv = [
        "nsenter",
        f"--target={process.pid}",
        "--mount",
        "--net",
        "--uts",
        f"--setuid={ODOO_UID}",
        f"--setgid={ODOO_UID}",
        "--wd=/",
        "--",
        python,
        "-c",
        _EFFECTIVE_CONFIG_SCRIPT,
        odoo_bin,
        *arguments,
    ]
    env = {
        "PATH": SYSTEM_PATH,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "CONFORMANCE_KEYS": json.dumps(list(keys)),
    }
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"Odoo's parser failed: {result.stderr[-3000:]}"
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def log_records(log: str) -> list[tuple[str, str]]:
    """(level, logger) of every record of an Odoo log."""
    return [(match["level"], match["logger"]) for match in LOG_RECORD.finditer(log)]


# -- the tenant's database -----------------------------------------------------------------------


def tenant_connection(postgres_dsn: str, tenant: Tenant) -> psycopg.Connection[Any]:
    """A connection to the tenant's database as the server's administrator (the test reads
    what Odoo wrote, whatever the tenant role may see)."""
    return psycopg.connect(
        conninfo.make_conninfo(postgres_dsn, dbname=tenant.database), autocommit=True
    )


# -- an Odoo user's session ----------------------------------------------------------------------


class OdooSession:
    """A signed-in Odoo web session on a pod: JSON-RPC calls and downloads with its cookie,
    as the web client makes them."""

    def __init__(self, address: str, database: str, login: str, password: str) -> None:
        self.address = address
        payload = {"db": database, "login": login, "password": password}
        answer = self._post("/web/session/authenticate", payload, cookie=None)
        response: dict[str, Any] = json.loads(answer.body)
        assert response.get("result", {}).get("uid"), f"{login} could not sign in: {response}"
        cookie = answer.headers.get("set-cookie", "")
        found = re.search(r"session_id=([^;]+)", cookie)
        assert found, f"no session cookie in the answer to the sign-in: {answer.headers}"
        self.cookie = f"session_id={found.group(1)}"

    def call(
        self,
        model: str,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        """``model.method(*args, **kwargs)`` through ``/web/dataset/call_kw``; its result,
        or a failure showing Odoo's error."""
        payload = {"model": model, "method": method, "args": list(args), "kwargs": kwargs or {}}
        answer = self._post("/web/dataset/call_kw", payload, self.cookie)
        response: dict[str, Any] = json.loads(answer.body)
        assert "error" not in response, f"{model}.{method} failed: {response['error']}"
        return response.get("result")

    def get(self, path: str) -> HttpAnswer:
        """``GET path`` with the session's cookie."""
        return self._send("GET", path, None, self.cookie)

    def _post(self, path: str, params: Mapping[str, Any], cookie: str | None) -> HttpAnswer:
        body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1, "params": dict(params)})
        answer = self._send("POST", path, body.encode(), cookie)
        assert answer.status == 200, f"POST {path} answered {answer.status}: {answer.body[:500]!r}"
        return answer

    def _send(self, method: str, path: str, body: bytes | None, cookie: str | None) -> HttpAnswer:
        # As _request: no proxy of the environment between the test and the pod.
        connection = http.client.HTTPConnection(self.address, ODOO_HTTP_PORT, timeout=120)
        headers = {"Host": f"{self.address}:{ODOO_HTTP_PORT}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if cookie is not None:
            headers["Cookie"] = cookie
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return HttpAnswer(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
        finally:
            connection.close()


def filestore_claim_folder(runner: RealNodeProcess, tenant: Tenant) -> Path:
    """The real node's folder of the tenant's filestore claim: what its pods mount at
    ``/var/lib/odoo``."""
    found = sorted((runner.state_dir / "claims" / tenant.namespace).glob("odoo-filestore-*"))
    assert len(found) == 1, f"expected one filestore claim folder of {tenant.name}: {found}"
    return found[0]


def admin_session(k8s: client.ApiClient, tenant: Tenant) -> OdooSession:
    """The tenant's admin, signed in with the password of the tenant's Secret on its (only)
    web pod."""
    web = only_pod(k8s, tenant.namespace, "web")
    return admin_session_on(k8s, tenant, str(web.status.pod_ip))


def admin_session_on(k8s: client.ApiClient, tenant: Tenant, address: str) -> OdooSession:
    """The tenant's admin, signed in on the web pod at ``address``."""
    return OdooSession(address, tenant.database, "admin", admin_password(k8s, tenant))


def signs_in(k8s: client.ApiClient, tenant: Tenant) -> bool:
    """Whether the admin signs in on the tenant's single, running web pod (false while pods
    are replaced)."""
    try:
        admin_session(k8s, tenant)
    except (AssertionError, OSError):
        return False
    return True


# -- a finance record and its attachment -----------------------------------------------------------

# A small but well-formed PDF: Odoo serves what it stored, whatever the content.
INVOICE_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
INVOICE_FIELDS = ["state", "name", "amount_untaxed", "amount_tax", "amount_total"]


@dataclass(frozen=True)
class PostedInvoice:
    """A customer invoice posted through JSON-RPC, with a PDF attached."""

    move: int
    attachment: int
    amounts: dict[str, Any]
    store_fname: str

    @property
    def download(self) -> str:
        """The attachment's download path on the tenant's web server."""
        return f"/web/content/{self.attachment}?download=true"


def post_invoice(
    odoo: OdooSession, customer: str, price_unit: float, quantity: int = 1, line: str = "Service"
) -> int:
    """A posted customer invoice of one line for a new partner ``customer``, as a user of the
    web client posts it; its id."""
    partner = odoo.call("res.partner", "create", [{"name": customer}])
    move = odoo.call(
        "account.move",
        "create",
        [
            {
                "move_type": "out_invoice",
                "partner_id": partner,
                "invoice_line_ids": [
                    [0, 0, {"name": line, "quantity": quantity, "price_unit": price_unit}]
                ],
            }
        ],
    )
    odoo.call("account.move", "action_post", [[move]])
    return int(move)


def post_invoice_with_pdf(odoo: OdooSession) -> PostedInvoice:
    """Post a customer invoice of 3 x 123.45 and attach :data:`INVOICE_PDF` to it, as a user
    of the web client would; check Odoo serves the PDF back."""
    move = post_invoice(odoo, "Conformance customer", 123.45, 3, "Conformance service")
    [amounts] = odoo.call("account.move", "read", [[move], INVOICE_FIELDS])
    assert amounts["state"] == "posted", amounts
    assert amounts["amount_untaxed"] == pytest.approx(370.35), amounts
    attachment = odoo.call(
        "ir.attachment",
        "create",
        [
            {
                "name": "invoice.pdf",
                "mimetype": "application/pdf",
                "datas": base64.b64encode(INVOICE_PDF).decode(),
                "res_model": "account.move",
                "res_id": move,
            }
        ],
    )
    [stored] = odoo.call("ir.attachment", "read", [[attachment], ["store_fname"]])
    invoice = PostedInvoice(move, attachment, amounts, stored["store_fname"])
    served = odoo.get(invoice.download)
    assert (served.status, served.body) == (200, INVOICE_PDF), served
    return invoice


def wait_finished(
    custom: client.CustomObjectsApi,
    operator: ManagedProcess,
    plural: str,
    name: str,
    timeout: float,
) -> dict[str, Any]:
    """An OdooBackup or OdooRestore once its phase is Succeeded or Failed."""
    found: dict[str, Any] = {}

    def finished() -> bool:
        assert operator.exit_code() is None, operator.log_tail()
        try:
            current: Any = custom.get_cluster_custom_object(GROUP, VERSION, plural, name)
            found.update(current)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return (found.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    eventually(finished, f"{plural}/{name} to finish", timeout, poll=2.0)
    return found


# -- through the stack's Traefik -------------------------------------------------------------------


@dataclass(frozen=True)
class TlsAnswer:
    """An HTTPS answer through Traefik, and the certificate it was served with."""

    status: int
    headers: dict[str, str]
    body: bytes
    certificate_names: tuple[str, ...]


def give_tenant_certificate(k8s: client.ApiClient, tenant: Tenant, pki: LocalPKI) -> None:
    """The TLS Secret the tenant's route names, for its hosts, from the test's CA."""
    issue_tenant_certificate(k8s, instance(k8s, tenant.name), pki)


def https_request(
    traefik: TraefikProcess,
    ca_file: Path,
    host: str,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    source: str | None = None,
    body: bytes | None = None,
) -> TlsAnswer:
    """``method path`` to Traefik's HTTPS entry point with SNI and Host ``host``, the
    certificate checked against ``ca_file`` for that name; the raw path is sent as given.
    ``source``: the client's address, another loopback address than 127.0.0.1 (all of
    127.0.0.0/8 is this machine's), to be another client for Traefik."""
    context = ssl.create_default_context(cafile=str(ca_file))
    raw = socket.create_connection(
        (TRAEFIK_LOOPBACK, traefik.https_port),
        timeout=60,
        source_address=(source, 0) if source else None,
    )
    with context.wrap_socket(raw, server_hostname=host) as tls:
        peer: Any = tls.getpeercert() or {}
        names = tuple(str(value) for kind, value in peer.get("subjectAltName", ()) if kind == "DNS")
        connection = http.client.HTTPConnection(host)
        connection.sock = tls
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return TlsAnswer(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
            names,
        )


def https_request_unverified(traefik: TraefikProcess, host: str, path: str) -> HttpAnswer:
    """``GET path`` for ``host`` on Traefik's HTTPS entry point, whatever certificate it
    serves (a host no tenant has gets Traefik's default one)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(
        TRAEFIK_LOOPBACK, traefik.https_port, timeout=30, context=context
    )
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return HttpAnswer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def http_request(traefik: TraefikProcess, host: str, path: str) -> HttpAnswer:
    """``GET path`` on Traefik's plain HTTP entry point with Host ``host``."""
    connection = http.client.HTTPConnection(TRAEFIK_LOOPBACK, traefik.http_port, timeout=30)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return HttpAnswer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def https_websocket_handshake(
    traefik: TraefikProcess, ca_file: Path, host: str
) -> tuple[int, dict[str, str]]:
    """An RFC 6455 opening handshake on ``/websocket`` through Traefik; its status and
    headers."""
    key = base64.b64encode(os.urandom(16)).decode()
    answer = https_request(
        traefik,
        ca_file,
        host,
        "/websocket",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
            "Origin": f"https://{host}",
        },
    )
    if answer.status == 101:
        expected = base64.b64encode(
            hashlib.sha1((key + _WEBSOCKET_GUID).encode()).digest()  # noqa: S324 - RFC 6455
        ).decode()
        assert answer.headers.get("sec-websocket-accept") == expected, answer.headers
    return answer.status, answer.headers


@dataclass(frozen=True)
class Ingress:
    """A tenant's host on the stack's Traefik, trusted with the tenants' CA."""

    traefik: TraefikProcess
    ca_file: Path
    host: str

    def get(self, path: str, **kwargs: Any) -> TlsAnswer:
        """``GET path`` (as given, not normalised) on the tenant's host over HTTPS."""
        return https_request(self.traefik, self.ca_file, self.host, path, **kwargs)
