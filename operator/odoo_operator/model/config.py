"""Operator-level configuration: version map, server registry, fleet policy.

Read from one YAML file (the chart mounts it from a ConfigMap). Servers are
named, and each names a Secret in the operator's namespace that holds its
endpoint and admin credentials; those credentials never leave that namespace.

Secret keys: PostgreSQL servers ``dsn`` (a libpq connection string of an admin
with CREATEDB and CREATEROLE); Redis servers ``url`` (``redis://user:pass@host:port/0``
of a user allowed to run ACL commands).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .names import GROUP

CONFIG_ENV = "ODOO_OPERATOR_CONFIG"  # path of the configuration file

# The admission webhook server, configured from the environment rather than the file
# because its certificate comes from a mounted Secret: PEM files of the serving
# certificate, its key and the CA the apiserver verifies it with; the host (name or IP)
# the apiserver calls, which the certificate's SANs must cover; the port; and the
# address to listen on.
WEBHOOK_CERT_ENV = "ODOO_OPERATOR_WEBHOOK_CERT"
WEBHOOK_KEY_ENV = "ODOO_OPERATOR_WEBHOOK_KEY"
WEBHOOK_CA_ENV = "ODOO_OPERATOR_WEBHOOK_CA"
WEBHOOK_HOST_ENV = "ODOO_OPERATOR_WEBHOOK_HOST"
WEBHOOK_PORT_ENV = "ODOO_OPERATOR_WEBHOOK_PORT"
WEBHOOK_ADDR_ENV = "ODOO_OPERATOR_WEBHOOK_ADDR"
# "false" when the ValidatingWebhookConfiguration is installed with the operator (the Helm
# chart does): the operator then only serves the webhook and never writes the configuration.
WEBHOOK_MANAGED_ENV = "ODOO_OPERATOR_WEBHOOK_MANAGED"
# The ValidatingWebhookConfiguration the operator creates and keeps pointing at its server.
WEBHOOK_CONFIGURATION = GROUP


class ConfigError(ValueError):
    """The operator configuration is unusable; the message says which part."""


@dataclass(frozen=True)
class ServerRef:
    """A registered server: the Secret with its credentials, and its tenancy."""

    name: str
    secret: str
    dedicated: bool = False


@dataclass(frozen=True)
class BlobStoreRef:
    """A registered blob store: the Secret with its endpoint and credentials, and a container.

    Secret keys: ``connectionString`` (an account key or SAS connection string), or
    ``accountUrl`` alone to authenticate with Azure Workload Identity (azure-identity's
    default credential chain).
    """

    name: str
    secret: str
    container: str


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator is configured with, with documented defaults."""

    namespace: str = "odoo-operator"
    images: Mapping[str, str] = field(default_factory=dict)
    postgres_servers: Mapping[str, ServerRef] = field(default_factory=dict)
    default_postgres: str | None = None
    redis_servers: Mapping[str, ServerRef] = field(default_factory=dict)
    default_redis: str | None = None
    ingress_namespace: str = "traefik"
    dedicated_node_selector: Mapping[str, str] = field(default_factory=dict)
    dedicated_tolerations: tuple[Mapping[str, Any], ...] = ()
    default_storage_class: str | None = None
    drift_interval_seconds: float = 120.0
    # At most this many tenants upgrade at once, fleet-wide: a GitOps change that bumps
    # hundreds of tenants must not take the database servers down.
    upgrade_concurrency: int = 5
    # DNS suffixes tenant hosts must fall under; empty allows any domain.
    allowed_domains: tuple[str, ...] = ()
    blob_stores: Mapping[str, BlobStoreRef] = field(default_factory=dict)
    default_blob_store: str | None = None
    # Where backups run: "job" (a Job per backup, with the operator's image and the
    # tenant's filestore mounted) or "inProcess" (inside the operator; the filestore is read
    # from inProcessFilestoreRoot/<instance> when set). Both run the same engine.
    backup_execution: str = "job"
    operator_image: str = "ghcr.io/tenantops/odoo-operator:latest"
    in_process_filestore_root: str | None = None

    def image_for(self, version: str, override: str | None) -> str:
        """The Odoo image for a major version, unless the instance overrides it."""
        if override:
            return override
        try:
            return self.images[version]
        except KeyError:
            known = ", ".join(sorted(self.images)) or "none"
            raise ConfigError(
                f"no image configured for Odoo {version} (configured: {known}); "
                "add it to the operator's version map or set spec.image"
            ) from None

    def postgres_server(self, ref: str | None) -> ServerRef:
        """The PostgreSQL server an instance refers to (the default when unset)."""
        return _pick(self.postgres_servers, ref or self.default_postgres, "PostgreSQL")

    def blob_store(self, ref: str | None) -> BlobStoreRef:
        """The blob store an instance's backups go to (the default when unset)."""
        name = ref or self.default_blob_store
        if name is None:
            raise ConfigError("no blob store given and no default blob store configured")
        try:
            return self.blob_stores[name]
        except KeyError:
            known = ", ".join(sorted(self.blob_stores)) or "none"
            raise ConfigError(f"unknown blob store '{name}' (configured: {known})") from None

    def redis_server(self, ref: str | None) -> ServerRef:
        """The Redis server an instance refers to (the default when unset)."""
        return _pick(self.redis_servers, ref or self.default_redis, "Redis")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> OperatorConfig:
        """Parse the configuration document."""
        postgres, default_pg = _servers(data.get("postgresServers", {}), "postgresServers")
        redis, default_redis = _servers(data.get("redisServers", {}), "redisServers")
        dedicated = data.get("dedicatedNodePool", {})
        stores, default_store = _blob_stores(data.get("blobStores", {}))
        return cls(
            namespace=data.get("operatorNamespace", "odoo-operator"),
            images={str(k): str(v) for k, v in data.get("versions", {}).items()},
            postgres_servers=postgres,
            default_postgres=default_pg,
            redis_servers=redis,
            default_redis=default_redis,
            ingress_namespace=data.get("ingressControllerNamespace", "traefik"),
            dedicated_node_selector=dict(dedicated.get("nodeSelector", {})),
            dedicated_tolerations=tuple(dedicated.get("tolerations", ())),
            default_storage_class=data.get("filestoreStorageClass"),
            drift_interval_seconds=float(data.get("driftIntervalSeconds", 120)),
            upgrade_concurrency=_positive(data.get("upgradeConcurrency", 5), "upgradeConcurrency"),
            allowed_domains=_domains(data.get("allowedDomains") or []),
            blob_stores=stores,
            default_blob_store=default_store,
            backup_execution=_backup_execution(data.get("backupExecution", "job")),
            operator_image=str(data.get("operatorImage", cls.operator_image)),
            in_process_filestore_root=data.get("inProcessFilestoreRoot"),
        )

    @classmethod
    def load(cls, path: Path) -> OperatorConfig:
        """Read the configuration file."""
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read operator configuration {path}: {exc}") from exc
        return cls.from_mapping(data)


def _servers(raw: Mapping[str, Any], section: str) -> tuple[dict[str, ServerRef], str | None]:
    servers: dict[str, ServerRef] = {}
    defaults: list[str] = []
    for name, entry in raw.items():
        if "secretRef" not in entry:
            raise ConfigError(f"{section}.{name} needs secretRef (a Secret name)")
        servers[name] = ServerRef(name, entry["secretRef"], bool(entry.get("dedicated", False)))
        if entry.get("default"):
            defaults.append(name)
    if len(defaults) > 1:
        raise ConfigError(f"{section}: only one server may be the default, got {defaults}")
    return servers, (defaults[0] if defaults else None)


def _domains(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(entry, str) for entry in raw):
        raise ConfigError("allowedDomains must be a list of DNS suffixes such as example.com")
    # Hosts are compared in lower case without a trailing root dot, so suffixes are too.
    domains = tuple(entry.strip().strip(".").lower() for entry in raw)
    if "" in domains:
        raise ConfigError("allowedDomains may not contain an empty suffix")
    return domains


def _pick(servers: Mapping[str, ServerRef], name: str | None, kind: str) -> ServerRef:
    if name is None:
        raise ConfigError(f"no {kind} server given and no default {kind} server configured")
    try:
        return servers[name]
    except KeyError:
        known = ", ".join(sorted(servers)) or "none"
        raise ConfigError(f"unknown {kind} server '{name}' (configured: {known})") from None


def _blob_stores(raw: Mapping[str, Any]) -> tuple[dict[str, BlobStoreRef], str | None]:
    stores: dict[str, BlobStoreRef] = {}
    defaults: list[str] = []
    for name, entry in raw.items():
        if "secretRef" not in entry or "container" not in entry:
            raise ConfigError(f"blobStores.{name} needs secretRef (a Secret name) and container")
        container = str(entry["container"])
        if not 3 <= len(container) <= 63:
            raise ConfigError(f"blobStores.{name}.container must have 3 to 63 characters")
        stores[name] = BlobStoreRef(name, str(entry["secretRef"]), container)
        if entry.get("default"):
            defaults.append(name)
    if len(defaults) > 1:
        raise ConfigError(f"blobStores: only one store may be the default, got {defaults}")
    return stores, (defaults[0] if defaults else None)


def _backup_execution(value: Any) -> str:
    if value not in ("job", "inProcess"):
        raise ConfigError(f"backupExecution must be job or inProcess, got {value!r}")
    return str(value)


def _positive(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a whole number of at least 1, got {value!r}")
    return value
