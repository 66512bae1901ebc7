"""What the tenant's pods need to reach PostgreSQL and Redis encrypted and verified.

The operator's registry (``postgresServers.<name>.tls``, ``redisServers.<name>.tls``, see
:class:`~odoo_operator.model.config.ServerTls`) decides; this module turns it into pod
settings. The CA bundles it names are copied into the tenant namespace as Secret
:data:`SERVER_CA_SECRET` (a CA certificate is public, but the pods may read only Secrets and
ConfigMaps of their own namespace) and mounted read-only at :data:`SERVER_CA_DIR`.

PostgreSQL: Odoo passes ``db_sslmode`` from odoo.conf to psycopg2; the root certificate has no
odoo.conf option, so libpq finds it through ``PGSSLROOTCERT``. ``PGSSLMODE`` is set as well, so
any other libpq client in the pod (pg_dump in the backup Job, psql in a debug session) uses
the same mode. Redis: Odoo's session store is given a ``rediss://`` URL
(``ODOO_SESSION_REDIS_URL``) with the CA path and hostname checking in its query string, which
redis-py's ``from_url`` turns into keyword arguments. Nothing here changes a tenant whose
servers have no ``tls`` in the registry.
"""

from __future__ import annotations

import base64
from typing import Any

from ..model.config import ServerTls
from .tenant import Tenant, metadata

SERVER_CA_SECRET = "odoo-server-ca"  # noqa: S105 - an object name; it holds CA certificates
POSTGRES_CA_KEY = "postgres-ca.crt"
REDIS_CA_KEY = "redis-ca.crt"
SERVER_CA_VOLUME = "server-ca"
SERVER_CA_DIR = "/etc/odoo-server-ca"
POSTGRES_CA_PATH = f"{SERVER_CA_DIR}/{POSTGRES_CA_KEY}"
REDIS_CA_PATH = f"{SERVER_CA_DIR}/{REDIS_CA_KEY}"


def has_ca(tls: ServerTls | None) -> bool:
    """Whether the registry names a CA bundle for this server."""
    return tls is not None and tls.ca_secret is not None


def needs_ca_volume(*servers: ServerTls | None) -> bool:
    """Whether a pod talking to ``servers`` mounts :data:`SERVER_CA_SECRET`."""
    return any(has_ca(tls) for tls in servers)


def ca_volume() -> dict[str, Any]:
    """The volume of :data:`SERVER_CA_SECRET`; world-readable files, as a CA is public and
    the backup Job runs as another user than Odoo."""
    return {
        "name": SERVER_CA_VOLUME,
        "secret": {"secretName": SERVER_CA_SECRET, "defaultMode": 0o444},
    }


def ca_volume_mount() -> dict[str, Any]:
    """Where the CA bundles appear in a container."""
    return {"name": SERVER_CA_VOLUME, "mountPath": SERVER_CA_DIR, "readOnly": True}


def postgres_tls_env(tls: ServerTls | None) -> list[dict[str, Any]]:
    """``PGSSLMODE`` and, with a CA, ``PGSSLROOTCERT``: libpq reads both at each connection."""
    if tls is None:
        return []
    env = [{"name": "PGSSLMODE", "value": tls.mode}]
    if has_ca(tls):
        env.append({"name": "PGSSLROOTCERT", "value": POSTGRES_CA_PATH})
    return env


def redis_session_url(tenant: Tenant, variables: dict[str, str]) -> str | None:
    """The ``rediss://`` URL of the tenant's Redis user when the registry asks for TLS.

    ``variables`` maps ``host``, ``port``, ``username`` and ``password`` to the names of
    environment variables defined before this one: the kubelet expands ``$(NAME)``, so the
    pod spec shows no password. Generated user names and passwords are URL-safe
    (``odoo-<name>``, ``secrets.token_urlsafe``), so they need no quoting. The query asks
    redis-py to require a certificate that chains to the CA (the mounted bundle, or the
    system's trust store when the registry names none) and names the host.
    """
    tls = tenant.redis_tls
    if tls is None or not tls.encrypted:
        return None
    host = f"$({variables['host']})"
    if ":" in tenant.redis.host:
        host = f"[{host}]"  # an IPv6 literal
    query = "ssl_cert_reqs=required&ssl_check_hostname=true"
    if has_ca(tls):
        query += f"&ssl_ca_certs={REDIS_CA_PATH}"
    return (
        f"rediss://$({variables['username']}):$({variables['password']})@{host}:"
        f"$({variables['port']})/0?{query}"
    )


def build_server_ca_secret(tenant: Tenant) -> dict[str, Any] | None:
    """Secret :data:`SERVER_CA_SECRET` with the CA bundles of the tenant's servers, or None
    when the registry names none. Raises ValueError when a bundle named by the registry was
    not resolved: pods told to verify against a missing file would not start."""
    data: dict[str, str] = {}
    for tls, pem, key in (
        (tenant.database_tls, tenant.database_ca, POSTGRES_CA_KEY),
        (tenant.redis_tls, tenant.redis_ca, REDIS_CA_KEY),
    ):
        if not has_ca(tls):
            continue
        if not pem:
            raise ValueError(f"the CA bundle for {key} in Secret {SERVER_CA_SECRET} is missing")
        data[key] = base64.b64encode(pem.encode()).decode()
    if not data:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(tenant, SERVER_CA_SECRET),
        "type": "Opaque",
        "data": data,
    }
