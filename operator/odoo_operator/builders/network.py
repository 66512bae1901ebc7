"""NetworkPolicies: deny everything, then allow exactly what an Odoo tenant needs."""

from __future__ import annotations

import ipaddress
from typing import Any

from .tenant import ODOO_HTTP_PORT, ODOO_WEBSOCKET_PORT, Endpoint, Tenant, metadata


def _peer(endpoint: Endpoint) -> list[dict[str, Any]]:
    """A literal IP becomes a /32 (or /128); a DNS name cannot be expressed in a
    NetworkPolicy, so the rule is then limited by port only."""
    try:
        address = ipaddress.ip_address(endpoint.host)
    except ValueError:
        return []
    prefix = 32 if address.version == 4 else 128
    return [{"ipBlock": {"cidr": f"{address}/{prefix}"}}]


def _egress_to(endpoint: Endpoint) -> dict[str, Any]:
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": endpoint.port}]}
    peers = _peer(endpoint)
    if peers:
        rule["to"] = peers
    return rule


def _from_namespace(namespace: str, *ports: int) -> dict[str, Any]:
    """An ingress rule: TCP ``ports`` from every pod of ``namespace``."""
    return {
        "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
        ],
        "ports": [{"protocol": "TCP", "port": port} for port in ports],
    }


def build_network_policies(tenant: Tenant) -> list[dict[str, Any]]:
    """Default deny; ingress from the ingress controller (and, to the HTTP port, from the
    operator's health check); egress to DNS, database, Redis, and for backup pods to the
    blob store."""

    def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(tenant, name),
            "spec": spec,
        }

    return [
        policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        policy(
            "allow-ingress-controller",
            {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "web"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    _from_namespace(tenant.ingress_namespace, ODOO_HTTP_PORT, ODOO_WEBSOCKET_PORT)
                ],
            },
        ),
        # The operator's synthetic check of /web/health (see odoo_operator.observability):
        # web pods, the HTTP port only, from the operator's namespace.
        policy(
            "allow-operator-health-check",
            {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "web"}},
                "policyTypes": ["Ingress"],
                "ingress": [_from_namespace(tenant.operator_namespace, ODOO_HTTP_PORT)],
            },
        ),
        policy(
            "allow-dns",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                                },
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            },
        ),
        policy(
            "allow-database-and-redis",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [_egress_to(tenant.database), _egress_to(tenant.redis)],
            },
        ),
        # Backup Jobs write to Azure Blob Storage over HTTPS. Its addresses are many and
        # change, so the rule can only name the port; only backup pods get it.
        policy(
            "allow-backup-to-storage",
            {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "backup"}},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"protocol": "TCP", "port": 443}]}],
            },
        ),
    ]
