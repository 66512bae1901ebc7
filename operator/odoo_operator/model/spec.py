"""A typed, defaulted view of an OdooInstance's spec.

Defaults here mirror the CRD's, so an object read before the API server
defaulted it (or from an older stored version) means the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .names import DRILL_LABEL, tenant_namespace

Tenancy = Literal["shared", "dedicated"]
DeletionPolicy = Literal["Retain", "Delete"]
Environment = Literal["production", "staging", "development"]
ENVIRONMENTS: tuple[Environment, ...] = ("production", "staging", "development")


@dataclass(frozen=True)
class InstanceSpec:
    """What one OdooInstance asks for."""

    name: str
    uid: str
    generation: int
    version: str
    hosts: tuple[str, ...]
    image: str | None = None
    tenancy: Tenancy = "shared"
    replicas: int = 1
    workers: int = 2
    cron_replicas: int = 1
    cron_threads: int = 2
    resources: Mapping[str, Any] = field(default_factory=dict)
    tls_secret: str | None = None
    tls_issuer: tuple[str, str] | None = None  # (name, kind)
    rate_average: int = 50
    rate_burst: int = 100
    allow_from: tuple[str, ...] = ()
    database_server: str | None = None
    database_name: str | None = None
    connection_limit: int = 50
    redis_server: str | None = None
    filestore_size: str = "10Gi"
    storage_class: str | None = None
    modules: tuple[str, ...] = ()
    suspend: bool = False
    deletion_policy: DeletionPolicy = "Retain"
    config: Mapping[str, str] = field(default_factory=dict)
    environment: Environment = "production"
    # The OdooRestore drill this temporary instance serves (label DRILL_LABEL), or None.
    drill: str | None = None

    @property
    def namespace(self) -> str:
        """The tenant namespace."""
        return tenant_namespace(self.name)

    @property
    def database(self) -> str:
        """The tenant database name (also the name of its role)."""
        return self.database_name or self.default_database

    @property
    def default_database(self) -> str:
        """The database name derived from the instance name, ``odoo_<name>``: no other
        instance can have it by default, which is why only it may be adopted unmarked."""
        return f"odoo_{self.name.replace('-', '_')}"

    @property
    def production(self) -> bool:
        """Whether the tenant serves real business (non-production tenants get neutralized data)."""
        return self.environment == "production"

    @property
    def url(self) -> str:
        """The public address of the tenant."""
        return f"https://{self.hosts[0]}"

    @classmethod
    def from_resource(cls, body: Mapping[str, Any]) -> InstanceSpec:
        """Read an OdooInstance object (as Kopf or the API hands it over)."""
        meta, spec = body["metadata"], body.get("spec", {})
        cron = spec.get("cron", {})
        tls = spec.get("tls", {})
        ingress = spec.get("ingress", {})
        rate = ingress.get("rateLimit", {})
        database = spec.get("database", {})
        filestore = spec.get("filestore", {})
        issuer = tls.get("issuerRef")
        return cls(
            name=meta["name"],
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation", 0)),
            version=spec["version"],
            hosts=tuple(spec["hosts"]),
            image=spec.get("image"),
            tenancy=spec.get("tenancy", "shared"),
            replicas=int(spec.get("replicas", 1)),
            workers=int(spec.get("workers", 2)),
            cron_replicas=int(cron.get("replicas", 1)),
            cron_threads=int(cron.get("threads", 2)),
            resources=dict(spec.get("resources", {})),
            tls_secret=tls.get("secretName"),
            tls_issuer=(issuer["name"], issuer.get("kind", "ClusterIssuer")) if issuer else None,
            rate_average=int(rate.get("average", 50)),
            rate_burst=int(rate.get("burst", 100)),
            allow_from=tuple(ingress.get("allowFrom", ())),
            database_server=database.get("serverRef"),
            database_name=database.get("name"),
            connection_limit=int(database.get("connectionLimit", 50)),
            redis_server=spec.get("redis", {}).get("serverRef"),
            filestore_size=str(filestore.get("size", "10Gi")),
            storage_class=filestore.get("storageClassName"),
            modules=tuple(spec.get("modules", ())),
            suspend=bool(spec.get("suspend", False)),
            deletion_policy=spec.get("deletionPolicy", "Retain"),
            config={str(k): str(v) for k, v in spec.get("config", {}).items()},
            environment=spec.get("environment", "production"),
            drill=(meta.get("labels") or {}).get(DRILL_LABEL) or None,
        )
