"""Traefik, the local stack's ingress controller, serving the tenants' routes as the operator
writes them.

It runs as a process of this machine with Traefik's Kubernetes CRD provider against the local
apiserver, signed in as ServiceAccount ``traefik/traefik`` (a TokenRequest token, read-only
rights on what the provider watches). Its entry points listen on loopback ports:

- ``web`` (HTTP), which redirects every request to ``websecure``;
- ``websecure`` (HTTPS), the entry point the operator's IngressRoutes name;
- ``traefik`` (HTTP): ``/ping`` and Prometheus ``/metrics``, with router, service and
  entry point labels.

Its access log is JSON, one line per request, in ``<workdir>/access.log``. Requests reach the
tenants' pods by their endpoint addresses: pods of the real node answer (their addresses live
in network namespaces the harness made); KWOK's pods do not exist, so their routes answer 502.
The namespace Traefik runs "in" is ``traefik``, the one the operator's configuration names
(``ingressControllerNamespace``) and the tenants' NetworkPolicies admit.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from odoo_operator.builders.ingress import CERTIFICATE_SECRET

from . import binaries, kubectl
from .pki import LocalPKI
from .ports import free_port
from .processes import ComponentError, ManagedProcess

NAMESPACE = "traefik"
SERVICE_ACCOUNT = "traefik"
LOOPBACK = "127.0.0.1"
_TOKEN_SECONDS = 24 * 3600
_READY_TIMEOUT_SECONDS = 60.0
# What the Kubernetes CRD provider reads; nothing is written.
_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "resources": ["services", "secrets", "configmaps", "nodes"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": ["traefik.io"],
        "resources": [
            "ingressroutes",
            "ingressroutetcps",
            "ingressrouteudps",
            "middlewares",
            "middlewaretcps",
            "serverstransports",
            "serverstransporttcps",
            "tlsoptions",
            "tlsstores",
            "traefikservices",
        ],
        "verbs": ["get", "list", "watch"],
    },
]


@dataclass
class TraefikProcess:
    """A running Traefik: its process and where it listens."""

    process: ManagedProcess
    http_port: int
    https_port: int
    admin_port: int
    access_log: Path
    args: list[str] = field(repr=False)

    @property
    def metrics_url(self) -> str:
        """Prometheus metrics of the stack's Traefik."""
        return f"http://{LOOPBACK}:{self.admin_port}/metrics"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period."""
        self.process.stop()


def _service_account_token(api: client.ApiClient) -> str:
    kubectl.apply(
        api,
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "devstack-traefik"},
                "rules": _RULES,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "devstack-traefik"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "devstack-traefik",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
                ],
            },
        ],
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=_TOKEN_SECONDS)
    )
    granted = client.CoreV1Api(api).create_namespaced_service_account_token(
        SERVICE_ACCOUNT, NAMESPACE, request
    )
    if granted.status is None:
        raise ComponentError("traefik", "the apiserver granted no ServiceAccount token")
    return str(granted.status.token)


def start_traefik(
    api: client.ApiClient, server: str, ca_file: Path, workdir: Path
) -> TraefikProcess:
    """Start Traefik against the apiserver at ``server`` (its CA in ``ca_file``); return once
    ``/ping`` answers. Its log and access log are in ``workdir``."""
    binary = binaries.ensure(binaries.TRAEFIK)
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, https_port, admin_port = free_port(), free_port(), free_port()
    access_log = workdir / "access.log"
    # A file, not flags: the token never shows in the process list, and Traefik reads one
    # source of static configuration only.
    static = {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {
            "web": {
                "address": f"{LOOPBACK}:{http_port}",
                "http": {"redirections": {"entryPoint": {"to": "websecure", "scheme": "https"}}},
            },
            "websecure": {"address": f"{LOOPBACK}:{https_port}"},
            "traefik": {"address": f"{LOOPBACK}:{admin_port}"},
        },
        "ping": {},
        "metrics": {
            "prometheus": {
                "addEntryPointsLabels": True,
                "addRoutersLabels": True,
                "addServicesLabels": True,
            }
        },
        "accessLog": {"format": "json", "filePath": str(access_log)},
        "log": {"level": "INFO"},
        "providers": {
            "kubernetesCRD": {
                "endpoint": server,
                "token": _service_account_token(api),
                "certAuthFilePath": str(ca_file),
                # A tenant's route may use only Middlewares and Services of its namespace.
                "allowCrossNamespace": False,
            }
        },
    }
    config_file = workdir / "traefik.yaml"
    config_file.touch(mode=0o600)
    config_file.write_text(yaml.safe_dump(static, sort_keys=False))
    args = [str(binary), f"--configFile={config_file}"]
    process = ManagedProcess("traefik", args, workdir / "traefik.log").start()
    traefik = TraefikProcess(process, http_port, https_port, admin_port, access_log, args)
    deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.exit_code() is not None:
            break
        if _pings(admin_port):
            return traefik
        time.sleep(0.2)
    tail = process.log_tail()
    process.stop()
    raise ComponentError("traefik", "did not answer /ping", tail)


def _pings(port: int) -> bool:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def issue_tenant_certificate(api: client.ApiClient, instance: dict[str, Any], pki: LocalPKI) -> str:
    """Write the TLS Secret an OdooInstance's route names (``spec.tls.secretName``, else
    ``odoo-tls``), as cert-manager would: a certificate for its hosts from ``pki``. Returns
    the Secret's name."""
    spec = instance["spec"]
    hosts = tuple(spec["hosts"])
    name = (spec.get("tls") or {}).get("secretName") or CERTIFICATE_SECRET
    namespace = f"odoo-{instance['metadata']['name']}"
    pair = pki.issue(f"tls-{instance['metadata']['name']}", hosts[0], server_names=hosts)
    kubectl.apply(
        api,
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "type": "kubernetes.io/tls",
                "stringData": {"tls.crt": pair.cert.read_text(), "tls.key": pair.key.read_text()},
            }
        ],
    )
    return str(name)
