"""Traefik routing for a tenant: IngressRoute, security Middlewares, optional Certificate."""

from __future__ import annotations

from typing import Any

from .tenant import ODOO_HTTP_PORT, Tenant, metadata, websocket_port

TRAEFIK_API = "traefik.io/v1alpha1"
MAINTENANCE_RETRY_AFTER = 120  # seconds
CERTIFICATE_SECRET = "odoo-tls"  # noqa: S105 - an object name, not a value
# An allow list no client matches, so Traefik answers 403: 0.0.0.0 is never the source of a
# connection. (Loopback is: a Traefik on the node's network, or a proxy beside it, sees
# 127.0.0.1 and would let that client through.)
_NOBODY = ["0.0.0.0/32"]


def _middleware(tenant: Tenant, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": TRAEFIK_API,
        "kind": "Middleware",
        "metadata": metadata(tenant, name, "ingress"),
        "spec": spec,
    }


def build_middlewares(tenant: Tenant) -> list[dict[str, Any]]:
    """Security headers, rate limit, optional source allow list, database-manager block."""
    spec = tenant.spec
    middlewares = [
        _middleware(
            tenant,
            "security-headers",
            {
                "headers": {
                    "stsSeconds": 63072000,
                    "stsIncludeSubdomains": True,
                    "stsPreload": True,
                    "forceSTSHeader": True,
                    "contentTypeNosniff": True,
                    "frameDeny": True,
                    "referrerPolicy": "strict-origin-when-cross-origin",
                    # An empty value removes the header: Odoo's server answers with
                    # "Server: Werkzeug/<version> Python/<version>", a banner for scanners.
                    "customResponseHeaders": {"Server": "", "X-Powered-By": ""},
                }
            },
        ),
        _middleware(
            tenant,
            "rate-limit",
            {"rateLimit": {"average": spec.rate_average, "burst": spec.rate_burst}},
        ),
        _middleware(tenant, "block-database-manager", {"ipAllowList": {"sourceRange": _NOBODY}}),
        # During a restore or an upgrade web has no pods, so Traefik answers 503; this tells
        # browsers and API clients when to come back instead of leaving them guessing.
        _middleware(
            tenant,
            "maintenance",
            {"headers": {"customResponseHeaders": {"Retry-After": str(MAINTENANCE_RETRY_AFTER)}}},
        ),
    ]
    if spec.allow_from:
        middlewares.append(
            _middleware(
                tenant, "allow-from", {"ipAllowList": {"sourceRange": list(spec.allow_from)}}
            )
        )
    return middlewares


# Traefik matches rules on the path with unreserved characters decoded but "%2F" kept as it
# is; Odoo's router decodes it into "/". So "/web%2Fdatabase/manager" passes
# PathPrefix(`/web/database`) and reaches the database manager: this pattern closes that.
_DATABASE_MANAGER_ENCODED = r"(?i)^(/|%2f)+web(/|%2f)+database"


def _refs(*names: str) -> list[dict[str, str]]:
    return [{"name": name} for name in names]


def build_ingress_route(tenant: Tenant) -> dict[str, Any]:
    """Routes: `/web/database` refused; `/websocket` to the port that serves it; everything
    else to 8069.

    Only prefork Odoo (``workers > 0``) runs the gevent process listening on 8072; threaded
    Odoo (``workers: 0``) serves ``/websocket`` itself on 8069, and nothing listens on 8072.
    """
    spec = tenant.spec
    hosts = " || ".join(f"Host(`{host}`)" for host in spec.hosts)
    common = ["security-headers", "rate-limit"] + (["allow-from"] if spec.allow_from else [])
    if tenant.maintenance:
        common.append("maintenance")

    def route(match: str, port: int, middlewares: list[str], priority: int) -> dict[str, Any]:
        return {
            "kind": "Rule",
            "match": match,
            "priority": priority,
            "middlewares": _refs(*middlewares),
            "services": [{"name": "odoo", "port": port}],
        }

    return {
        "apiVersion": TRAEFIK_API,
        "kind": "IngressRoute",
        "metadata": metadata(tenant, "odoo", "ingress"),
        "spec": {
            "entryPoints": ["websecure"],
            "routes": [
                route(
                    f"({hosts}) && (PathPrefix(`/web/database`) || "
                    f"PathRegexp(`{_DATABASE_MANAGER_ENCODED}`))",
                    ODOO_HTTP_PORT,
                    ["block-database-manager"],
                    300,
                ),
                route(f"({hosts}) && PathPrefix(`/websocket`)", websocket_port(spec), common, 200),
                route(hosts, ODOO_HTTP_PORT, common, 100),
            ],
            "tls": {"secretName": spec.tls_secret or CERTIFICATE_SECRET},
        },
    }


def build_certificate(tenant: Tenant) -> dict[str, Any] | None:
    """A cert-manager Certificate for the hosts, when the instance names an issuer."""
    if tenant.spec.tls_issuer is None:
        return None
    name, kind = tenant.spec.tls_issuer
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": metadata(tenant, "odoo", "ingress"),
        "spec": {
            "secretName": CERTIFICATE_SECRET,
            "dnsNames": list(tenant.spec.hosts),
            "issuerRef": {"name": name, "kind": kind, "group": "cert-manager.io"},
        },
    }
