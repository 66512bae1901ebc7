"""Operator-level configuration: version map, server registry, fleet policy.

Read from one YAML file (the chart mounts it from a ConfigMap). Servers are
named, and each names a Secret in the operator's namespace that holds its
endpoint and admin credentials; those credentials never leave that namespace.

Secret keys: PostgreSQL servers ``dsn`` (a libpq connection string of an admin
with CREATEDB and CREATEROLE); Redis servers ``url`` (``redis://user:pass@host:port/0``
of a user allowed to run ACL commands).

Each server may say how it is reached in transit (``tls``, see :class:`ServerTls`):
``postgresServers.<name>.tls: {mode: verify-full, caSecretRef: <Secret>, caKey: ca.crt}``
and ``redisServers.<name>.tls: {enabled: true, caSecretRef: <Secret>, caKey: ca.crt}``. The
operator, the tenants' pods and their Jobs then all use it. Without ``tls`` nothing is set:
PostgreSQL clients use libpq's default (``prefer``: encrypted when the server offers it, the
server never verified) and tenants reach Redis in clear. That is not recommended outside a
test cluster (docs/encryption-in-transit.md).

The ``policy`` section limits what tenants may ask for (see :class:`TenantPolicy`); its
defaults change nothing for existing tenants except that outgoing mail options are
forbidden outside production.

The version map ``versions`` maps an Odoo major version to its image, either as a plain
string (``"17.0": odoo:17.0``) or as ``{image: odoo:17.0, sessionStore: redis}``, which also
says where the image can keep Odoo's web sessions (see :data:`SESSION_STORES`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .names import GROUP
from .spec import ENVIRONMENTS

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
# "true" on the operator when admission is served by processes of their own (``odoo-operator
# webhook``, the chart's webhook Deployment): the operator then serves none and says so.
WEBHOOK_APART_ENV = "ODOO_OPERATOR_WEBHOOK_APART"
# The ValidatingWebhookConfiguration the operator creates and keeps pointing at its server.
WEBHOOK_CONFIGURATION = GROUP
# "true": keep the managed child objects in memory from watches, and read them from there
# (backends/kube_cache.py); needs list and watch on those kinds (the chart's watchCache).
WATCH_CACHE_ENV = "ODOO_OPERATOR_WATCH_CACHE"


def watch_cache_enabled() -> bool:
    """Whether ``ODOO_OPERATOR_WATCH_CACHE`` switches the watch cache on."""
    return os.environ.get(WATCH_CACHE_ENV, "").strip().lower() == "true"


class ConfigError(ValueError):
    """The operator configuration is unusable; the message says which part."""


# libpq's sslmode values the registry accepts. "allow" and "prefer" are left out: they fall
# back to clear text without a word, which a registry entry that asks for TLS must not do.
POSTGRES_SSL_MODES = ("verify-full", "verify-ca", "require", "disable")
# The modes in which libpq checks the server's certificate, and so needs the CA to check it.
VERIFYING_SSL_MODES = ("verify-full", "verify-ca")
DEFAULT_CA_KEY = "ca.crt"
_POSTGRES_TLS_KEYS = ("mode", "caSecretRef", "caKey")
_REDIS_TLS_KEYS = ("enabled", "caSecretRef", "caKey")
# A key of a Secret's data, as the API server accepts it.
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True)
class ServerTls:
    """Encryption in transit to one registered server: the ``tls`` key of its entry.

    ``mode`` is libpq's ``sslmode`` (one of :data:`POSTGRES_SSL_MODES`). A Redis server's
    ``enabled: true`` is ``verify-full`` (TLS, the certificate checked against the CA and
    its name against the host the clients dial), ``enabled: false`` is ``disable``.
    ``ca_secret``: a Secret in the operator's namespace whose key ``ca_key`` holds the PEM CA
    bundle the server's certificate must chain to. PostgreSQL's verifying modes need it
    (libpq has no trust store of its own before version 16); a Redis server without it is
    checked against the system's trust store.
    """

    mode: str
    ca_secret: str | None = None
    ca_key: str = DEFAULT_CA_KEY

    @property
    def encrypted(self) -> bool:
        """Whether the connection must be encrypted (every mode but ``disable``)."""
        return self.mode != "disable"


@dataclass(frozen=True)
class PitrArchive:
    """A PostgreSQL server's continuous WAL archive, written by pgBackRest to Azure Blob
    Storage, from which a tenant's database is recovered to a point in time.

    ``stanza``: pgBackRest's name for the server; ``container`` and ``path``: where the
    repository lies in the storage account; ``endpoint``: the account's blob host
    (``<account>.blob.core.windows.net``), with ``port`` and ``uri_style`` (``host`` for
    Azure, ``path`` for an emulator); ``secret``: a Secret in the operator's namespace with
    the keys ``account`` and ``key`` (pgBackRest signs with the account key); ``ca_secret``:
    a Secret whose key ``ca.crt`` holds the CA the endpoint's certificate chains to, when it
    is not a public one.
    """

    stanza: str
    container: str
    path: str
    endpoint: str
    secret: str
    port: int = 443
    uri_style: str = "host"
    ca_secret: str | None = None


@dataclass(frozen=True)
class ServerRef:
    """A registered server: the Secret with its credentials, its tenancy, its TLS settings,
    and its WAL archive for point-in-time recovery (PostgreSQL only).

    ``tls`` None keeps the client libraries' defaults (see the module docstring).
    """

    name: str
    secret: str
    dedicated: bool = False
    tls: ServerTls | None = None
    pitr: PitrArchive | None = None


# The ServiceAccount backup Jobs of a Workload Identity store run as, in each tenant namespace.
DEFAULT_BACKUP_SERVICE_ACCOUNT = "odoo-backup"
_WORKLOAD_IDENTITY_KEYS = ("clientId", "serviceAccount", "egressCIDRs")
# The client id of a managed identity or app registration, as az prints it.
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
# A ServiceAccount name: an RFC 1123 subdomain.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# "odoo" is the token-less identity of the tenant's web and cron pods (builders/namespace.py),
# which run tenant-chosen addons: a federated credential trusting it would trust that code,
# and two builders would fight over its annotations. "default" is any pod's that names none.
_RESERVED_SERVICE_ACCOUNTS = ("odoo", "default")


@dataclass(frozen=True)
class WorkloadIdentity:
    """Azure Workload Identity for a blob store's backup Jobs: ``workloadIdentity`` of its entry.

    ``client_id``: the user-assigned managed identity (or app registration) allowed to write
    the container. ``service_account``: the ServiceAccount, created in each tenant namespace
    whose backups go to the store, that the identity's federated credentials trust.
    ``egress_cidrs``: where backup pods may reach Microsoft Entra ID on TCP 443; empty means
    any address (a NetworkPolicy cannot name login.microsoftonline.com).
    """

    client_id: str
    service_account: str = DEFAULT_BACKUP_SERVICE_ACCOUNT
    egress_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class BlobStoreRef:
    """A registered blob store: the Secret with its endpoint and credentials, and a container.

    Secret keys: ``connectionString`` (an account key or SAS connection string), or
    ``accountUrl`` alone to authenticate with Azure Workload Identity (azure-identity's
    default credential chain). With ``workload_identity`` set, backup Jobs get the account
    URL only, never a connection string, and sign in as that identity.
    """

    name: str
    secret: str
    container: str
    workload_identity: WorkloadIdentity | None = None


MailOptions = Literal["allowed", "forbidden"]
# A restored copy of production in staging or development would mail real customers
# through an SMTP server named in odoo.conf: Odoo's neutralization switches off the mail
# servers stored in the database, not the one in the file.
DEFAULT_MAIL_OPTIONS: Mapping[str, MailOptions] = {
    "production": "allowed",
    "staging": "forbidden",
    "development": "forbidden",
}
_POLICY_KEYS = ("allowedRegistries", "mailOptions", "requireImageDigest")
# A digest as an image reference carries it: algorithm, then the hex encoding of its length.
_DIGEST = re.compile(r"@(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")


@dataclass(frozen=True)
class TenantPolicy:
    """What tenants may ask for beyond the CRD schema: the configuration's ``policy`` key.

    ``mail_options``: per environment, whether ``spec.config`` may set outgoing mail options
    (default: allowed in production only). ``require_image_digest``: every image a tenant
    runs must be pinned by digest (default false). ``allowed_registries``: registries, or
    registry paths, images must come from (default empty: any).
    """

    mail_options: Mapping[str, MailOptions] = field(
        default_factory=lambda: dict(DEFAULT_MAIL_OPTIONS)
    )
    require_image_digest: bool = False
    allowed_registries: tuple[str, ...] = ()

    def mail_options_allowed(self, environment: str) -> bool:
        """Whether a tenant of ``environment`` may set outgoing mail options."""
        return self.mail_options.get(environment, "forbidden") == "allowed"

    @classmethod
    def from_mapping(cls, raw: Any) -> TenantPolicy:
        """Parse the ``policy`` section; an unknown key is an error, as a typo would
        otherwise silently weaken the policy."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError("policy must be a mapping")
        unknown = sorted(str(key) for key in raw if key not in _POLICY_KEYS)
        if unknown:
            raise ConfigError(
                f"policy.{unknown[0]} is not a policy setting (known: {', '.join(_POLICY_KEYS)})"
            )
        require_digest = raw.get("requireImageDigest", False)
        if not isinstance(require_digest, bool):
            raise ConfigError(
                f"policy.requireImageDigest must be true or false, got {require_digest!r}"
            )
        return cls(
            mail_options=_mail_options(raw.get("mailOptions")),
            require_image_digest=require_digest,
            allowed_registries=_registries(raw.get("allowedRegistries")),
        )


SessionStore = Literal["redis", "none"]
# ``sessionStore`` of a version map entry. "redis": the image carries Camptocamp's
# session_redis (odoo-cloud-platform), which must be loaded server-wide and is told through
# ODOO_SESSION_REDIS_* variables where to keep sessions. "none": the image has no session
# module, and Odoo keeps sessions as files under data_dir, on the tenant's filestore volume.
SESSION_STORES: tuple[SessionStore, ...] = ("redis", "none")
DEFAULT_SESSION_STORE: SessionStore = "none"
# The Odoo addon each store needs loaded with ``server_wide_modules``.
SESSION_MODULES: Mapping[SessionStore, str] = {"redis": "session_redis"}
_VERSION_ENTRY_KEYS = ("image", "sessionStore")


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator is configured with, with documented defaults."""

    namespace: str = "odoo-operator"
    images: Mapping[str, str] = field(default_factory=dict)
    # Version -> where its image keeps web sessions; a version missing here has "none".
    session_stores: Mapping[str, SessionStore] = field(default_factory=dict)
    postgres_servers: Mapping[str, ServerRef] = field(default_factory=dict)
    default_postgres: str | None = None
    redis_servers: Mapping[str, ServerRef] = field(default_factory=dict)
    default_redis: str | None = None
    ingress_namespace: str = "traefik"
    dedicated_node_selector: Mapping[str, str] = field(default_factory=dict)
    dedicated_tolerations: tuple[Mapping[str, Any], ...] = ()
    shared_node_selector: Mapping[str, str] = field(default_factory=dict)
    shared_tolerations: tuple[Mapping[str, Any], ...] = ()
    default_storage_class: str | None = None
    drift_interval_seconds: float = 120.0
    # At most this many tenants upgrade at once, fleet-wide: a GitOps change that bumps
    # hundreds of tenants must not take the database servers down.
    upgrade_concurrency: int = 5
    # At most this many new tenants are provisioned at once; the others wait their turn in
    # order of arrival (reconcile/provisioning.py), so a rollout's first tenants are Ready
    # first instead of all of them late.
    provisioning_concurrency: int = 50
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
    policy: TenantPolicy = field(default_factory=TenantPolicy)

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

    def session_store_for(self, version: str, override: str | None) -> SessionStore:
        """Where the image of ``version`` keeps web sessions, per the version map.

        ``override`` is the instance's ``spec.image``: an image the map does not describe
        gets "none", since the operator cannot know whether it carries a session module, and
        configuring one that is absent would do nothing (Odoo only logs a server-wide module
        it cannot load). An override equal to the map's own image is that image.
        """
        if override and override != self.images.get(version):
            return "none"
        return self.session_stores.get(version, DEFAULT_SESSION_STORE)

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

    def node_pool(self, tenancy: str) -> tuple[Mapping[str, str], tuple[Mapping[str, Any], ...]]:
        """The ``nodeSelector`` and tolerations of a tenant's pods (web, cron and Jobs):
        ``dedicatedNodePool`` for ``tenancy: dedicated``, ``sharedNodePool`` (by default
        none: anywhere the scheduler puts them) for shared tenants."""
        if tenancy == "dedicated":
            return self.dedicated_node_selector, self.dedicated_tolerations
        return self.shared_node_selector, self.shared_tolerations

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> OperatorConfig:
        """Parse the configuration document."""
        postgres, default_pg = _servers(data.get("postgresServers", {}), "postgresServers")
        redis, default_redis = _servers(data.get("redisServers", {}), "redisServers")
        dedicated = data.get("dedicatedNodePool", {})
        shared = data.get("sharedNodePool", {})
        stores, default_store = _blob_stores(data.get("blobStores", {}))
        images, session_stores = _versions(data.get("versions") or {})
        return cls(
            namespace=data.get("operatorNamespace", "odoo-operator"),
            images=images,
            session_stores=session_stores,
            postgres_servers=postgres,
            default_postgres=default_pg,
            redis_servers=redis,
            default_redis=default_redis,
            ingress_namespace=data.get("ingressControllerNamespace", "traefik"),
            dedicated_node_selector=dict(dedicated.get("nodeSelector", {})),
            dedicated_tolerations=tuple(dedicated.get("tolerations", ())),
            shared_node_selector=dict(shared.get("nodeSelector", {})),
            shared_tolerations=tuple(shared.get("tolerations", ())),
            default_storage_class=data.get("filestoreStorageClass"),
            drift_interval_seconds=float(data.get("driftIntervalSeconds", 120)),
            upgrade_concurrency=_positive(data.get("upgradeConcurrency", 5), "upgradeConcurrency"),
            provisioning_concurrency=_positive(
                data.get("provisioningConcurrency", 50), "provisioningConcurrency"
            ),
            allowed_domains=_domains(data.get("allowedDomains") or []),
            blob_stores=stores,
            default_blob_store=default_store,
            backup_execution=_backup_execution(data.get("backupExecution", "job")),
            operator_image=str(data.get("operatorImage", cls.operator_image)),
            in_process_filestore_root=data.get("inProcessFilestoreRoot"),
            policy=TenantPolicy.from_mapping(data.get("policy")),
        )

    @classmethod
    def load(cls, path: Path) -> OperatorConfig:
        """Read the configuration file."""
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read operator configuration {path}: {exc}") from exc
        return cls.from_mapping(data)


def _versions(raw: Any) -> tuple[dict[str, str], dict[str, SessionStore]]:
    """Parse the version map: version -> image, and version -> session store.

    An entry is an image reference, or a mapping ``{image, sessionStore}``; an unknown key in
    the mapping is an error, as a misspelt ``sessionStore`` would otherwise leave the
    tenants' sessions elsewhere than the configuration says without a word.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError('versions must map Odoo versions to images, such as {"18.0": odoo:18.0}')
    images: dict[str, str] = {}
    session_stores: dict[str, SessionStore] = {}
    for version, entry in raw.items():
        key = f"versions[{json.dumps(str(version))}]"
        if not isinstance(entry, Mapping):
            images[str(version)] = str(entry)
            continue
        unknown = sorted(str(k) for k in entry if k not in _VERSION_ENTRY_KEYS)
        if unknown:
            raise ConfigError(
                f"{key}.{unknown[0]} is not a version setting "
                f"(known: {', '.join(_VERSION_ENTRY_KEYS)})"
            )
        image = entry.get("image")
        if not isinstance(image, str) or not image.strip():
            raise ConfigError(f"{key}.image must be an image reference, got {image!r}")
        store = entry.get("sessionStore", DEFAULT_SESSION_STORE)
        if store not in SESSION_STORES:
            raise ConfigError(
                f"{key}.sessionStore must be one of {', '.join(SESSION_STORES)}, got {store!r}"
            )
        images[str(version)] = image
        session_stores[str(version)] = store
    return images, session_stores


_PITR_KEYS = (
    "stanza",
    "container",
    "path",
    "endpoint",
    "secretRef",
    "port",
    "uriStyle",
    "caSecretRef",
)
_STANZA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_BLOB_HOST = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _pitr_archive(raw: Any, key: str) -> PitrArchive | None:
    """A server's ``pitr`` entry; None when absent. Every value ends up in pgBackRest's
    environment, so each is checked for its form, naming the field."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key} must be a mapping")
    unknown = sorted(set(raw) - set(_PITR_KEYS))
    if unknown:
        raise ConfigError(f"{key}: unknown keys {unknown} (known: {', '.join(_PITR_KEYS)})")
    missing = [
        field for field in ("stanza", "container", "endpoint", "secretRef") if not raw.get(field)
    ]
    if missing:
        raise ConfigError(f"{key} needs {', '.join(missing)}")
    stanza, endpoint = str(raw["stanza"]), str(raw["endpoint"])
    if not _STANZA.match(stanza):
        raise ConfigError(f"{key}.stanza {stanza!r} is not a pgBackRest stanza name")
    if not _BLOB_HOST.match(endpoint):
        raise ConfigError(
            f"{key}.endpoint {endpoint!r} must be a host name, without scheme or port"
        )
    path = str(raw.get("path") or f"/{stanza}")
    if not path.startswith("/") or any(part in ("", ".", "..") for part in path[1:].split("/")):
        raise ConfigError(f"{key}.path {path!r} must be an absolute path without . or ..")
    uri_style = str(raw.get("uriStyle", "host"))
    if uri_style not in ("host", "path"):
        raise ConfigError(f"{key}.uriStyle must be host or path, got {uri_style!r}")
    port = raw.get("port", 443)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError(f"{key}.port must be a TCP port, got {port!r}")
    return PitrArchive(
        stanza=stanza,
        container=str(raw["container"]),
        path=path,
        endpoint=endpoint,
        secret=str(raw["secretRef"]),
        port=port,
        uri_style=uri_style,
        ca_secret=raw.get("caSecretRef") or None,
    )


def _servers(raw: Mapping[str, Any], section: str) -> tuple[dict[str, ServerRef], str | None]:
    servers: dict[str, ServerRef] = {}
    defaults: list[str] = []
    parse_tls = _postgres_tls if section == "postgresServers" else _redis_tls
    for name, entry in raw.items():
        if "secretRef" not in entry:
            raise ConfigError(f"{section}.{name} needs secretRef (a Secret name)")
        servers[name] = ServerRef(
            name,
            entry["secretRef"],
            bool(entry.get("dedicated", False)),
            parse_tls(entry.get("tls"), f"{section}.{name}.tls"),
            _pitr_archive(entry.get("pitr"), f"{section}.{name}.pitr")
            if section == "postgresServers"
            else None,
        )
        if entry.get("default"):
            defaults.append(name)
    if len(defaults) > 1:
        raise ConfigError(f"{section}: only one server may be the default, got {defaults}")
    return servers, (defaults[0] if defaults else None)


def _tls_mapping(raw: Any, key: str, known: tuple[str, ...], example: str) -> Mapping[str, Any]:
    """``raw`` as a mapping of known TLS settings; an unknown key is an error, as a misspelt
    ``caSecretRef`` would otherwise leave the server unverified without a word."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key} must be a mapping such as {example}, got {raw!r}")
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]} is not a TLS setting (known: {', '.join(known)})")
    return raw


def _ca_reference(raw: Mapping[str, Any], key: str) -> tuple[str | None, str]:
    """The ``caSecretRef`` and ``caKey`` of a ``tls`` mapping, checked as Kubernetes names."""
    secret = raw.get("caSecretRef")
    if secret is not None and (
        not isinstance(secret, str) or len(secret) > 253 or not _SUBDOMAIN.match(secret)
    ):
        raise ConfigError(
            f"{key}.caSecretRef must be the name of a Secret in the operator's namespace "
            f"(lower case letters, digits, '-' and '.'), got {secret!r}"
        )
    ca_key = raw.get("caKey", DEFAULT_CA_KEY)
    if not isinstance(ca_key, str) or len(ca_key) > 253 or not _SECRET_KEY.match(ca_key):
        raise ConfigError(
            f"{key}.caKey must be a key of the Secret's data (letters, digits, '-', '_' and "
            f"'.'), got {ca_key!r}"
        )
    if secret is None and "caKey" in raw:
        raise ConfigError(f"{key}.caKey needs {key}.caSecretRef: the Secret that holds the key")
    return secret, ca_key


def _postgres_tls(raw: Any, key: str) -> ServerTls | None:
    """Parse a PostgreSQL server's ``tls``: libpq's ``mode`` and the CA to verify with."""
    if raw is None:
        return None
    entry = _tls_mapping(
        raw, key, _POSTGRES_TLS_KEYS, "{mode: verify-full, caSecretRef: postgres-ca}"
    )
    mode = entry.get("mode")
    if mode not in POSTGRES_SSL_MODES:
        raise ConfigError(
            f"{key}.mode must be one of {', '.join(POSTGRES_SSL_MODES)}, got {mode!r}"
        )
    secret, ca_key = _ca_reference(entry, key)
    if mode in VERIFYING_SSL_MODES and secret is None:
        raise ConfigError(
            f"{key}.caSecretRef is required with mode {mode}: the Secret holding the CA that "
            "signed the server's certificate (for Azure Database for PostgreSQL flexible "
            "server, DigiCert Global Root G2 and Microsoft RSA Root CA 2017)"
        )
    if mode not in VERIFYING_SSL_MODES and secret is not None:
        # libpq would quietly verify against a root certificate it finds under "require",
        # so the registry would not say what the clients do.
        raise ConfigError(
            f"{key}.caSecretRef has no effect with mode {mode}: use verify-full (or "
            "verify-ca) to check the server against that CA, or remove caSecretRef"
        )
    return ServerTls(str(mode), secret, ca_key)


def _redis_tls(raw: Any, key: str) -> ServerTls | None:
    """Parse a Redis server's ``tls``: ``enabled`` and, optionally, the CA to verify with."""
    if raw is None:
        return None
    entry = _tls_mapping(raw, key, _REDIS_TLS_KEYS, "{enabled: true, caSecretRef: redis-ca}")
    enabled = entry.get("enabled")
    if not isinstance(enabled, bool):
        raise ConfigError(f"{key}.enabled must be true or false, got {enabled!r}")
    secret, ca_key = _ca_reference(entry, key)
    if not enabled and secret is not None:
        raise ConfigError(
            f"{key}.caSecretRef has no effect while {key}.enabled is false: enable TLS or "
            "remove caSecretRef"
        )
    return ServerTls("verify-full" if enabled else "disable", secret, ca_key)


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
        identity = _workload_identity(entry.get("workloadIdentity"), f"blobStores.{name}")
        stores[name] = BlobStoreRef(name, str(entry["secretRef"]), container, identity)
        if entry.get("default"):
            defaults.append(name)
    if len(defaults) > 1:
        raise ConfigError(f"blobStores: only one store may be the default, got {defaults}")
    return stores, (defaults[0] if defaults else None)


def _workload_identity(raw: Any, store: str) -> WorkloadIdentity | None:
    """Parse a store's ``workloadIdentity``; an unknown key is an error, as a misspelt
    ``serviceAccount`` or ``egressCIDRs`` would otherwise be ignored without a word."""
    if raw is None:
        return None
    key = f"{store}.workloadIdentity"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key} must be a mapping with clientId (and serviceAccount)")
    unknown = sorted(str(k) for k in raw if k not in _WORKLOAD_IDENTITY_KEYS)
    if unknown:
        raise ConfigError(
            f"{key}.{unknown[0]} is not a Workload Identity setting "
            f"(known: {', '.join(_WORKLOAD_IDENTITY_KEYS)})"
        )
    client_id = raw.get("clientId")
    if not isinstance(client_id, str) or not _UUID.match(client_id):
        raise ConfigError(
            f"{key}.clientId must be the client id (a UUID such as "
            f"00000000-0000-0000-0000-000000000000) of the managed identity, got {client_id!r}"
        )
    account = raw.get("serviceAccount", DEFAULT_BACKUP_SERVICE_ACCOUNT)
    if not isinstance(account, str) or len(account) > 253 or not _SUBDOMAIN.match(account):
        raise ConfigError(
            f"{key}.serviceAccount must be a ServiceAccount name (lower case letters, digits, "
            f"'-' and '.'), got {account!r}"
        )
    if account in _RESERVED_SERVICE_ACCOUNTS:
        raise ConfigError(
            f"{key}.serviceAccount may not be {account!r}: backup Jobs need a ServiceAccount "
            "of their own, which no other pod of the tenant runs as"
        )
    return WorkloadIdentity(
        client_id=client_id.lower(),
        service_account=account,
        egress_cidrs=_cidrs(raw.get("egressCIDRs"), f"{key}.egressCIDRs"),
    )


def _cidrs(raw: Any, key: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(entry, str) for entry in raw):
        raise ConfigError(f"{key} must be a list of CIDRs such as 20.190.128.0/18")
    cidrs: list[str] = []
    for entry in raw:
        try:
            # strict: a CIDR with host bits set (20.190.128.1/18) is more likely a typo
            # than a way to write its network.
            cidrs.append(str(ipaddress.ip_network(entry.strip(), strict=True)))
        except ValueError as exc:
            raise ConfigError(f"{key}: {entry!r} is not a CIDR ({exc})") from None
    return tuple(cidrs)


def _backup_execution(value: Any) -> str:
    if value not in ("job", "inProcess"):
        raise ConfigError(f"backupExecution must be job or inProcess, got {value!r}")
    return str(value)


def _positive(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a whole number of at least 1, got {value!r}")
    return value


def _mail_options(raw: Any) -> dict[str, MailOptions]:
    options = dict(DEFAULT_MAIL_OPTIONS)
    if raw is None:
        return options
    if not isinstance(raw, Mapping):
        raise ConfigError("policy.mailOptions must map environments to allowed or forbidden")
    for environment, value in raw.items():
        if environment not in ENVIRONMENTS:
            raise ConfigError(
                f"policy.mailOptions.{environment} is not an environment "
                f"(known: {', '.join(ENVIRONMENTS)})"
            )
        if value not in ("allowed", "forbidden"):
            raise ConfigError(
                f"policy.mailOptions.{environment} must be allowed or forbidden, got {value!r}"
            )
        options[environment] = value
    return options


def _registries(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(entry, str) for entry in raw):
        raise ConfigError(
            "policy.allowedRegistries must be a list of registries such as registry.example.com"
        )
    # Compared with image repositories in lower case, without a trailing slash.
    registries = tuple(entry.strip().rstrip("/").lower() for entry in raw)
    for entry in registries:
        if not entry or "://" in entry or any(c.isspace() for c in entry):
            raise ConfigError(
                f"policy.allowedRegistries entry {entry!r} must be a registry host, optionally "
                "with a path (registry.example.com or registry.example.com/odoo), without scheme"
            )
    return registries


def image_repository(image: str) -> str:
    """The repository an image reference names, with its registry spelled out, in lower case.

    ``odoo:18.0`` is ``docker.io/library/odoo``: a first path component is a registry only
    when it looks like a host (a dot, a port, or ``localhost``), as container runtimes read it.
    """
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    if ":" in name[last_slash + 1 :]:
        name = name[: name.rfind(":")]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return f"{first}/{rest}".lower()
    return f"docker.io/{name if rest else 'library/' + name}".lower()


def image_policy_problems(image: str, policy: TenantPolicy, field: str = "spec.image") -> list[str]:
    """Why ``image`` breaks the operator's image policy; an empty list allows it.

    ``field`` names where the image comes from in each message: ``spec.image``, or for an
    instance without one, its entry of the operator's version map.
    """
    shown = image if image.isprintable() else json.dumps(image)
    problems: list[str] = []
    if policy.require_image_digest and not _DIGEST.search(image):
        problems.append(
            f"{field}: {shown} is not pinned by digest, and the operator's "
            "policy.requireImageDigest asks for one (repository@sha256:<64 hex digits>), "
            "so that what runs is exactly what was reviewed."
        )
    if policy.allowed_registries:
        repository = image_repository(image)
        if not any(
            repository == allowed or repository.startswith(f"{allowed}/")
            for allowed in policy.allowed_registries
        ):
            problems.append(
                f"{field}: {shown} is not from a registry the operator's "
                f"policy.allowedRegistries allows ({', '.join(policy.allowed_registries)})."
            )
    return problems


def instance_image_policy_problems(
    version: str, override: str | None, config: OperatorConfig
) -> list[str]:
    """:func:`image_policy_problems` of the image an instance would run: ``spec.image``, or
    else its version's entry in the version map (no image at all is another rule's problem)."""
    if override:
        return image_policy_problems(override, config.policy)
    image = config.images.get(version)
    if image is None:
        return []
    field = f"versions[{json.dumps(version)}] of the operator's configuration (spec.image is unset)"
    return image_policy_problems(image, config.policy, field)


def webhook_enabled() -> bool:
    """Whether the admission webhook is configured (its serving certificate is given)."""
    return bool(os.environ.get(WEBHOOK_CERT_ENV))
