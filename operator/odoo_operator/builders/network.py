"""NetworkPolicies: deny everything, then allow exactly what an Odoo tenant needs."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..model.config import WorkloadIdentity
from ..model.spec import InstanceSpec
from .backup_job import WORKLOAD_IDENTITY_USE_LABEL
from .tenant import (
    ODOO_HTTP_PORT,
    ODOO_WEBSOCKET_PORT,
    Endpoint,
    Tenant,
    instance_labels,
    metadata,
)

BACKUP_IDENTITY_EGRESS_POLICY = "allow-backup-to-entra-id"


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

    from_ingress_controller = policy(
        "allow-ingress-controller",
        {
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "web"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                _from_namespace(tenant.ingress_namespace, ODOO_HTTP_PORT, ODOO_WEBSOCKET_PORT)
            ],
        },
    )
    return [
        policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        # A restore drill's temporary tenant holds a copy of real data: only the operator's
        # checks reach it.
        *([] if tenant.spec.drill else [from_ingress_controller]),
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
        # change, so the rule can only name the port; only backup pods get it. It also lets
        # Workload Identity backup pods reach Entra ID (build_backup_identity_egress_policy).
        policy(
            "allow-backup-to-storage",
            {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "backup"}},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"protocol": "TCP", "port": 443}]}],
            },
        ),
    ]


def build_backup_identity_egress_policy(
    spec: InstanceSpec, identity: WorkloadIdentity
) -> dict[str, Any]:
    """Egress on TCP 443 to Microsoft Entra ID for Workload Identity backup pods, where they
    exchange their projected token for the managed identity's.

    A NetworkPolicy names addresses, not hosts: login.microsoftonline.com resolves to
    Microsoft's shared front ends, whose ranges change. So the rule goes to the store's
    ``egressCIDRs`` when the platform team keeps such a list (e.g. from the
    AzureActiveDirectory service tag), and otherwise to any address, on port 443 only.

    While ``allow-backup-to-storage`` admits port 443 to any address for every backup pod,
    this rule widens nothing (rules add up, so neither does ``egressCIDRs`` narrow anything
    yet). It states what the identity needs, only for pods labelled for the webhook, and
    keeps Entra ID reachable should the storage rule be narrowed (a private endpoint).
    Neither rule opens the instance metadata endpoint (169.254.169.254:80): a failed token
    exchange must not fall back to the node's own identity.
    """
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": 443}]}
    if identity.egress_cidrs:
        rule["to"] = [{"ipBlock": {"cidr": cidr}} for cidr in identity.egress_cidrs]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": BACKUP_IDENTITY_EGRESS_POLICY,
            "namespace": spec.namespace,
            "labels": instance_labels(spec.name, "backup"),
        },
        "spec": {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/component": "backup",
                    WORKLOAD_IDENTITY_USE_LABEL: "true",
                }
            },
            "policyTypes": ["Egress"],
            "egress": [rule],
        },
    }
