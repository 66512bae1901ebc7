"""Register the local data services with an operator, as a platform team would.

Creates the operator namespace, one Secret per server (``dsn`` / ``url`` keys,
see :mod:`odoo_operator.model.config`) and writes the operator configuration
file that names them. Used by the demo and the tests.

Each data service is registered twice: as the shared default ``main`` and as
``dedicated`` (marked ``dedicated: true``), so dedicated tenants can be tried
without a second PostgreSQL or Redis.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from kubernetes import client

from . import kubectl

if TYPE_CHECKING:
    from .pitr import ArchivedPostgres

OPERATOR_NAMESPACE = "odoo-operator"
BACKUP_CONTAINER = "odoo-backups"
DEFAULT_IMAGES = {
    "17.0": "docker.io/library/odoo:17.0",
    "18.0": "docker.io/library/odoo:18.0",
    "19.0": "docker.io/library/odoo:19.0",
}
# The version map for the real node, whose odoo:17.0 is the 17.0 runtime with Camptocamp's
# session_redis among its addons (odoo_devstack.odoo_runtime): its tenants keep web sessions
# in Redis, as a platform's 17.0 image carrying that module would. 18.0's has no session
# module.
REAL_NODE_VERSIONS: dict[str, Any] = {
    **DEFAULT_IMAGES,
    "17.0": {"image": DEFAULT_IMAGES["17.0"], "sessionStore": "redis"},
}
ALLOWED_DOMAINS = ["example.com"]
# Dedicated pods tolerate this taint. The fake nodes carry no label that marks a
# dedicated pool (and a foreign test cluster may carry none either), so there is
# no nodeSelector: it would leave dedicated pods Pending.
DEDICATED_TOLERATION = {
    "key": "odoo.tenantops.io/dedicated",
    "operator": "Exists",
    "effect": "NoSchedule",
}


def _archive_secrets(archived: ArchivedPostgres) -> list[dict[str, object]]:
    """The archived server's admin login, its archive's account and key, and its CA."""
    server, archive = archived.server, archived.archive
    assert server is not None, "start the archived server first"

    def data(values: Mapping[str, str]) -> dict[str, str]:
        return {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}

    def secret(name: str, values: Mapping[str, str]) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE},
            "type": "Opaque",
            "data": data(values),
        }

    access = archived.access
    assert archive.ca_secret is not None
    assert access.ca_file is not None
    return [
        secret("postgres-archived", {"dsn": server.dsn}),
        secret(archive.secret, {"account": access.account, "key": access.key}),
        secret(archive.ca_secret, {"ca.crt": access.ca_file.read_text()}),
    ]


def _archived_entry(archived: ArchivedPostgres) -> dict[str, object]:
    archive = archived.archive
    return {
        "secretRef": "postgres-archived",
        # Serves dedicated tenants too (the conformance suite's, on the real node).
        "dedicated": True,
        "pitr": {
            "stanza": archive.stanza,
            "container": archive.container,
            "path": archive.path,
            "endpoint": archive.endpoint,
            "port": archive.port,
            "uriStyle": archive.uri_style,
            "secretRef": archive.secret,
            "caSecretRef": archive.ca_secret,
        },
    }


def register_servers(
    api: client.ApiClient,
    postgres_dsn: str,
    redis_url: str,
    config_dir: Path,
    blob_connection_string: str | None = None,
    backup_execution: str = "inProcess",
    upgrade_concurrency: int = 2,
    dedicated_node_pool: Mapping[str, Any] | None = None,
    versions: Mapping[str, Any] | None = None,
    shared_node_pool: Mapping[str, Any] | None = None,
    secondary_blob_connection_string: str | None = None,
    archived: ArchivedPostgres | None = None,
    provisioning_concurrency: int | None = None,
) -> Path:
    """Create the server Secrets and return the path of the operator config file.

    With ``blob_connection_string`` a blob store ``main`` is registered too. Backups run in
    the operator by default, reading filestores from ``<config_dir>/filestores/<instance>``
    (the local stack's volumes are not real, so the tests put attachments there); with
    ``backup_execution="job"`` they run as Jobs, as in production. ``dedicated_node_pool``
    (``nodeSelector`` and ``tolerations``) replaces the default pool of dedicated tenants,
    e.g. with :func:`odoo_devstack.podrunner.node.placement` to run them on the real node.
    ``shared_node_pool`` places shared tenants likewise (by default anywhere: KWOK's nodes).
    ``versions`` replaces the version map (:data:`DEFAULT_IMAGES`), e.g. with
    :data:`REAL_NODE_VERSIONS` for tenants whose pods run the harness's Odoo runtimes.
    ``secondary_blob_connection_string`` registers a second store, ``secondary`` (another
    Azurite), for ``spec.backup.secondaryStoreRef``. ``archived`` registers a PostgreSQL
    server ``archived`` with its WAL archive (``pitr``), for point-in-time recovery.
    ``provisioning_concurrency`` replaces the operator's default ``provisioningConcurrency``.
    """

    def secret(name: str, key: str, value: str) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE},
            "type": "Opaque",
            "data": {key: base64.b64encode(value.encode()).decode()},
        }

    kubectl.apply(
        api,
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}},
            secret("postgres-main", "dsn", postgres_dsn),
            secret("redis-main", "url", redis_url),
            secret("postgres-dedicated", "dsn", postgres_dsn),
            secret("redis-dedicated", "url", redis_url),
            *(
                [secret("blob-main", "connectionString", blob_connection_string)]
                if blob_connection_string
                else []
            ),
            *(
                [secret("blob-secondary", "connectionString", secondary_blob_connection_string)]
                if secondary_blob_connection_string
                else []
            ),
            *(_archive_secrets(archived) if archived is not None else []),
        ],
    )
    config = {
        "operatorNamespace": OPERATOR_NAMESPACE,
        "versions": dict(versions) if versions is not None else DEFAULT_IMAGES,
        "postgresServers": {
            "main": {"secretRef": "postgres-main", "default": True},
            "dedicated": {"secretRef": "postgres-dedicated", "dedicated": True},
            **({"archived": _archived_entry(archived)} if archived is not None else {}),
        },
        "redisServers": {
            "main": {"secretRef": "redis-main", "default": True},
            "dedicated": {"secretRef": "redis-dedicated", "dedicated": True},
        },
        "ingressControllerNamespace": "traefik",
        "allowedDomains": ALLOWED_DOMAINS,
        "upgradeConcurrency": upgrade_concurrency,
        **(
            {"provisioningConcurrency": provisioning_concurrency}
            if provisioning_concurrency is not None
            else {}
        ),
        "sharedNodePool": dict(shared_node_pool or {}),
        "dedicatedNodePool": dict(dedicated_node_pool)
        if dedicated_node_pool is not None
        else {"nodeSelector": {}, "tolerations": [DEDICATED_TOLERATION]},
    }
    if blob_connection_string:
        stores: dict[str, dict[str, object]] = {
            "main": {"secretRef": "blob-main", "container": BACKUP_CONTAINER, "default": True}
        }
        if secondary_blob_connection_string:
            stores["secondary"] = {"secretRef": "blob-secondary", "container": BACKUP_CONTAINER}
        config["blobStores"] = stores
        config["backupExecution"] = backup_execution
        config["inProcessFilestoreRoot"] = str(config_dir / "filestores")
        (config_dir / "filestores").mkdir(parents=True, exist_ok=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "operator-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
