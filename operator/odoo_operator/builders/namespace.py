"""The tenant namespace and its guard rails: Pod Security, quota, limits, identity."""

from __future__ import annotations

from typing import Any

from .quantities import canonical_resources, scaled_quantity
from .tenant import Tenant, metadata

_POD_SECURITY = "restricted"


def build_namespace(tenant: Tenant) -> dict[str, Any]:
    """The namespace, enforcing (and auditing, and warning on) Pod Security `restricted`."""
    meta = metadata(tenant, tenant.namespace, namespaced=False)
    for mode in ("enforce", "audit", "warn"):
        meta["labels"][f"pod-security.kubernetes.io/{mode}"] = _POD_SECURITY
        meta["labels"][f"pod-security.kubernetes.io/{mode}-version"] = "latest"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def _web_resources(tenant: Tenant) -> tuple[dict[str, str], dict[str, str]]:
    resources = canonical_resources(tenant.spec.resources)
    requests = {"cpu": "250m", "memory": "512Mi", **resources.get("requests", {})}
    limits = {"cpu": "2", "memory": "2Gi", **resources.get("limits", {})}
    return requests, limits


def build_resource_quota(tenant: Tenant) -> dict[str, Any]:
    """A quota sized for the web replicas, the cron pod, one-off jobs and a rolling update."""
    requests, limits = _web_resources(tenant)
    # web pods + surge during a rollout + cron + an init/backup job
    pods = tenant.spec.replicas * 2 + 2
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata(tenant, "tenant-quota"),
        "spec": {
            "hard": {
                "pods": str(pods),
                "requests.cpu": scaled_quantity(requests["cpu"], pods),
                "requests.memory": scaled_quantity(requests["memory"], pods),
                "limits.cpu": scaled_quantity(limits["cpu"], pods),
                "limits.memory": scaled_quantity(limits["memory"], pods),
                "persistentvolumeclaims": "2",
                "services.loadbalancers": "0",
                "services.nodeports": "0",
            }
        },
    }


def build_limit_range(tenant: Tenant) -> dict[str, Any]:
    """Defaults for containers that state no resources (quota admission requires them)."""
    requests, limits = _web_resources(tenant)
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": metadata(tenant, "tenant-limits"),
        "spec": {
            "limits": [
                {"type": "Container", "default": dict(limits), "defaultRequest": dict(requests)}
            ]
        },
    }


def build_service_account(tenant: Tenant) -> dict[str, Any]:
    """The identity of the tenant's pods; no API token is mounted."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(tenant, "odoo"),
        "automountServiceAccountToken": False,
    }
