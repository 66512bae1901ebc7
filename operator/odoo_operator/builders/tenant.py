"""Inputs shared by the builders of one tenant, and the metadata every object carries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model.config import ServerTls
from ..model.names import (
    API_VERSION,
    INSTANCE_KIND,
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
)
from ..model.spec import InstanceSpec

ODOO_HTTP_PORT = 8069
ODOO_WEBSOCKET_PORT = 8072
ODOO_UID = 101  # the official Odoo image's "odoo" user


@dataclass(frozen=True)
class Endpoint:
    """A TCP endpoint the tenant's pods must reach."""

    host: str
    port: int


@dataclass(frozen=True)
class TenantCredentials:
    """Generated secrets of a tenant; stable once created."""

    database_password: str
    redis_password: str
    admin_password: str  # Odoo's master password: random, never shown


@dataclass(frozen=True)
class Tenant:
    """Everything the builders need about one tenant, resolved from spec and config."""

    spec: InstanceSpec
    image: str
    database: Endpoint
    redis: Endpoint
    redis_user: str
    redis_key_prefix: str
    credentials: TenantCredentials
    ingress_namespace: str = "traefik"
    operator_namespace: str = "odoo-operator"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    storage_class: str | None = None
    maintenance: bool = False  # a restore or an upgrade holds the tenant (web and cron at zero)
    # How the pods reach each server in transit, from the operator's registry (None: the
    # client libraries' defaults), and the PEM CA bundles the registry names, copied into the
    # tenant namespace (builders/server_tls.py). Builders of Jobs alone need no bundle.
    database_tls: ServerTls | None = None
    redis_tls: ServerTls | None = None
    database_ca: str | None = None
    redis_ca: str | None = None

    @property
    def namespace(self) -> str:
        """The tenant namespace."""
        return self.spec.namespace


def labels(tenant: Tenant, component: str | None = None) -> dict[str, str]:
    """Labels on every object of the tenant (and the component, where there is one)."""
    return instance_labels(tenant.spec.name, component)


def instance_labels(instance: str, component: str | None = None) -> dict[str, str]:
    """Labels on every object of instance ``instance`` (and the component, if any)."""
    result = {
        MANAGED_BY_LABEL: MANAGED_BY,
        INSTANCE_LABEL: instance,
        "app.kubernetes.io/name": "odoo",
        "app.kubernetes.io/instance": instance,
    }
    if component:
        result["app.kubernetes.io/component"] = component
    return result


def owner_reference(tenant: Tenant) -> dict[str, Any]:
    """The OdooInstance as controller owner, so deletion cascades."""
    return {
        "apiVersion": API_VERSION,
        "kind": INSTANCE_KIND,
        "name": tenant.spec.name,
        "uid": tenant.spec.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    tenant: Tenant, name: str, component: str | None = None, namespaced: bool = True
) -> dict[str, Any]:
    """Standard metadata for a child object."""
    meta: dict[str, Any] = {
        "name": name,
        "labels": labels(tenant, component),
        "ownerReferences": [owner_reference(tenant)],
    }
    if namespaced:
        meta["namespace"] = tenant.namespace
    return meta
