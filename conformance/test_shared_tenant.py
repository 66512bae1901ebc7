"""A shared tenant (``tenancy: shared``, on the shared servers) runs real Odoo and is served
through the stack's Traefik like a dedicated one.

The conformance operator's shared node pool is the real node too, so the tenant's pods are
real Odoo; its route, certificate, headers and database-manager refusal are the same
contract as the dedicated tenants' (test_prefork_tenant.py), and its host is not the other
tenants'.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from conformance.tenants import (
    Ingress,
    Tenant,
    https_request_unverified,
    instance,
    only_pod,
)

TENANT_PREFIX = "cfsh"
TENANT_SPEC: dict[str, Any] = {
    "tenancy": "shared",
    "database": {"serverRef": "main"},
    "redis": {"serverRef": "main"},
}
pytestmark = pytest.mark.parametrize(
    "tenant", ["18.0"], indirect=True, ids=["odoo18.0"], scope="module"
)


def test_the_shared_tenant_runs_real_odoo_on_the_shared_pool(
    k8s: client.ApiClient, real_node: str, tenant: Tenant
) -> None:
    assert instance(k8s, tenant.name)["spec"]["tenancy"] == "shared"
    web = only_pod(k8s, tenant.namespace, "web")
    assert web.spec.node_name == real_node


def test_the_shared_tenant_is_served_through_traefik_with_the_same_contract(
    ingress: Ingress,
) -> None:
    login = ingress.get("/web/login")
    assert login.status == 200
    assert ingress.host in login.certificate_names
    assert login.headers["x-frame-options"] == "DENY"
    assert "server" not in login.headers
    assert ingress.get("/web/database/manager").status == 403
    assert ingress.get("/web%2Fdatabase/manager").status == 403
    # A host that is nobody's is not this tenant's.
    assert (
        https_request_unverified(ingress.traefik, f"x-{ingress.host}", "/web/login").status == 404
    )
