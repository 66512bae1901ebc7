"""Inputs shared by the builders of one tenant, and the metadata every object carries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model.config import DEFAULT_SESSION_STORE, ServerTls, SessionStore
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
    # Where the running image keeps web sessions (the version map's ``sessionStore``):
    # "redis" loads its session module and points it at the tenant's Redis user; "none"
    # configures no session store at all, and Odoo keeps sessions in the filestore.
    session_store: SessionStore = DEFAULT_SESSION_STORE

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


def websocket_port(spec: InstanceSpec) -> int:
    """Where the tenant's web pods answer ``/websocket``: the gevent port of prefork Odoo, or
    the HTTP port of threaded Odoo (``workers: 0``), which has no gevent process."""
    return ODOO_WEBSOCKET_PORT if spec.workers > 0 else ODOO_HTTP_PORT


def database_processes(spec: InstanceSpec) -> int:
    """Odoo processes of the tenant that open database connections, all pods together.

    A prefork web pod runs ``workers`` HTTP workers, the gevent process and the supervisor;
    a threaded one a single process. The cron pod runs one process. ``db_maxconn`` is a
    limit per process, so the role's connection limit is shared among all of them.
    """
    per_web_pod = spec.workers + 2 if spec.workers > 0 else 1
    return max(1, spec.replicas) * per_web_pod + spec.cron_replicas


# Connections of the role kept out of the Odoo processes' share: the init, upgrade and backup
# Jobs and the operator's probe connect as the tenant too.
RESERVED_TENANT_CONNECTIONS = 3


def db_maxconn(spec: InstanceSpec) -> int:
    """``db_maxconn`` for every Odoo process of the tenant: its share of the role's
    CONNECTION LIMIT, so that all processes at their limit stay inside it (at least 2, the
    least one Odoo process works with)."""
    budget = spec.connection_limit - RESERVED_TENANT_CONNECTIONS
    return max(2, budget // database_processes(spec))
