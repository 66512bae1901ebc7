"""All Kubernetes objects of one tenant, in the order they are applied."""

from __future__ import annotations

from typing import Any

from .ingress import build_certificate, build_ingress_route, build_middlewares
from .namespace import (
    build_limit_range,
    build_namespace,
    build_resource_quota,
    build_service_account,
)
from .network import build_network_policies
from .tenant import Tenant
from .workloads import (
    build_deployments,
    build_disruption_budget,
    build_filestore_claim,
    build_secrets,
    build_service,
)


def build_foundation(tenant: Tenant) -> list[dict[str, Any]]:
    """Isolation first: quota, limits, network policies, identity, before any workload."""
    return [
        build_resource_quota(tenant),
        build_limit_range(tenant),
        *build_network_policies(tenant),
        build_service_account(tenant),
        *build_secrets(tenant),
        build_filestore_claim(tenant),
    ]


def build_workloads(tenant: Tenant) -> list[dict[str, Any]]:
    """Deployments, Service and disruption budget."""
    budget = build_disruption_budget(tenant)
    return [*build_deployments(tenant), build_service(tenant), *([budget] if budget else [])]


def build_ingress(tenant: Tenant) -> list[dict[str, Any]]:
    """Middlewares, route and (optionally) the Certificate; nothing for the temporary
    instance of a restore drill, which nobody outside may reach."""
    if tenant.spec.drill:
        return []
    certificate = build_certificate(tenant)
    return [
        *build_middlewares(tenant),
        build_ingress_route(tenant),
        *([certificate] if certificate else []),
    ]


__all__ = ["build_foundation", "build_ingress", "build_namespace", "build_workloads"]
