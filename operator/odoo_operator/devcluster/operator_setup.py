"""Register the local data services with an operator, as a platform team would.

Creates the operator namespace, one Secret per server (``dsn`` / ``url`` keys,
see :mod:`odoo_operator.model.config`) and writes the operator configuration
file that names them. Used by the demo and the tests.
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml
from kubernetes import client

from . import kubectl

OPERATOR_NAMESPACE = "odoo-operator"
DEFAULT_IMAGES = {
    "17.0": "docker.io/library/odoo:17.0",
    "18.0": "docker.io/library/odoo:18.0",
    "19.0": "docker.io/library/odoo:19.0",
}


def register_servers(
    api: client.ApiClient, postgres_dsn: str, redis_url: str, config_dir: Path
) -> Path:
    """Create the server Secrets and return the path of the operator config file."""

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
        ],
    )
    config = {
        "operatorNamespace": OPERATOR_NAMESPACE,
        "versions": DEFAULT_IMAGES,
        "postgresServers": {"main": {"secretRef": "postgres-main", "default": True}},
        "redisServers": {"main": {"secretRef": "redis-main", "default": True}},
        "ingressControllerNamespace": "traefik",
    }
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "operator-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
