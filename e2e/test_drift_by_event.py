"""A child object someone else edits or deletes is put back within seconds of the watch
event, not at the tenant's next drift pass.

The operator of this module runs its drift timer every 10 minutes (production: 2), with its
watch cache on (the local stack's default): what puts the objects back in these tests is the
event, or (once in about forty runs) a first drift pass that happens to fall in the window,
which proves nothing either way.
"""

from __future__ import annotations

import time

from kubernetes import client

from e2e.tenants import NewTenant, eventually

OPERATOR_DRIFT_INTERVAL_SECONDS = 600.0
TENANT_PREFIX = "dbe"
# Put back well within this: a watch event and one pass, on a loaded 2-core machine.
_WITHIN_SECONDS = 15.0


def test_a_deleted_network_policy_is_put_back_within_seconds(
    k8s: client.ApiClient, new_tenant: NewTenant
) -> None:
    name = new_tenant()
    networking = client.NetworkingV1Api(k8s)
    namespace = f"odoo-{name}"
    networking.delete_namespaced_network_policy("default-deny", namespace)
    deleted = time.monotonic()

    def back() -> bool:
        names = {
            p.metadata.name for p in networking.list_namespaced_network_policy(namespace).items
        }
        return "default-deny" in names

    eventually(back, "default-deny put back", timeout=_WITHIN_SECONDS, poll=0.2)
    assert time.monotonic() - deleted < _WITHIN_SECONDS


def test_a_web_deployment_scaled_by_hand_is_scaled_back_within_seconds(
    k8s: client.ApiClient, new_tenant: NewTenant
) -> None:
    name = new_tenant()
    apps = client.AppsV1Api(k8s)
    namespace = f"odoo-{name}"
    wanted = apps.read_namespaced_deployment("odoo-web", namespace).spec.replicas
    apps.patch_namespaced_deployment_scale(
        "odoo-web", namespace, {"spec": {"replicas": wanted + 3}}
    )
    eventually(
        lambda: apps.read_namespaced_deployment("odoo-web", namespace).spec.replicas == wanted,
        f"odoo-web scaled back to {wanted}",
        timeout=_WITHIN_SECONDS,
        poll=0.2,
    )
