"""The operator's own checks of tenant boundaries, behind admission.

The webhook refuses these manifests; it may also be bypassed, fail open or be absent
during a rolling update. These tests hand the reconciler and the deletion path what the
webhook would have refused, against the real apiserver and PostgreSQL, and prove that
nothing outside the tenant is touched.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes_asyncio import config as async_config

from odoo_operator.backends.kube import KubeClient
from odoo_operator.model.config import OperatorConfig
from odoo_operator.model.names import INSTANCE_LABEL
from odoo_operator.reconcile.clients import Clients
from odoo_operator.reconcile.instance import Stalled, delete_instance, reconcile_instance

CONFIG = OperatorConfig.from_mapping(
    {
        "versions": {"18.0": "odoo:18.0"},
        "postgresServers": {"main": {"secretRef": "postgres-main", "default": True}},
        "redisServers": {"main": {"secretRef": "redis-main", "default": True}},
    }
)
_ADMIN_ATTRIBUTES = (
    "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin,"
    " rolconnlimit FROM pg_roles WHERE rolname = current_user"
)


@pytest.fixture
async def clients(kubeconfig: Path) -> AsyncIterator[Clients]:
    """The operator's clients against the real apiserver, as cluster administrator."""
    api = await async_config.new_client_from_config(config_file=str(kubeconfig))
    kube = KubeClient(api)
    yield Clients(kube=kube, config=CONFIG)
    await kube.close()


@pytest.fixture
def namespaces(k8s: client.ApiClient) -> Iterator[list[str]]:
    """Namespaces a test creates; deleted afterwards."""
    made: list[str] = []
    yield made
    core = client.CoreV1Api(k8s)
    for name in made:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _instance(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": str(uuid.uuid4()), "generation": 1},
        "spec": {"version": "18.0", "hosts": [f"{name}.example.com"], **spec},
    }


def _create_namespace(
    k8s: client.ApiClient, made: list[str], name: str, labels: dict[str, str]
) -> None:
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    client.CoreV1Api(k8s).create_namespace(body)
    made.append(name)


def _phase(k8s: client.ApiClient, name: str) -> str | None:
    try:
        namespace = client.CoreV1Api(k8s).read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return str(namespace.status.phase)


async def test_deleting_an_instance_never_deletes_a_namespace_it_does_not_own(
    clients: Clients, k8s: client.ApiClient, namespaces: list[str]
) -> None:
    # The platform's own namespace, as an instance named "operator" would see odoo-operator.
    name = f"plat{uuid.uuid4().hex[:6]}"
    _create_namespace(k8s, namespaces, f"odoo-{name}", {"team": "platform"})
    done = await delete_instance(clients, _instance(name))
    assert _phase(k8s, f"odoo-{name}") == "Active"
    assert f"left namespace odoo-{name} alone: it is not this tenant's" in done


async def test_deleting_an_instance_never_deletes_another_instances_namespace(
    clients: Clients, k8s: client.ApiClient, namespaces: list[str]
) -> None:
    name = f"other{uuid.uuid4().hex[:6]}"
    _create_namespace(k8s, namespaces, f"odoo-{name}", {INSTANCE_LABEL: "someone-else"})
    await delete_instance(clients, _instance(name))
    assert _phase(k8s, f"odoo-{name}") == "Active"


async def test_deleting_an_instance_deletes_its_own_namespace(
    clients: Clients, k8s: client.ApiClient, namespaces: list[str]
) -> None:
    name = f"own{uuid.uuid4().hex[:6]}"
    _create_namespace(k8s, namespaces, f"odoo-{name}", {INSTANCE_LABEL: name})
    done = await delete_instance(clients, _instance(name))
    assert f"deleting namespace odoo-{name}" in done
    assert _phase(k8s, f"odoo-{name}") in (None, "Terminating")


@pytest.mark.parametrize("database", ["postgres", "template1", "template0", "pg_signal"])
async def test_a_reserved_database_name_stalls_before_the_server_is_touched(
    clients: Clients, postgres_dsn: str, database: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        before = connection.execute(_ADMIN_ATTRIBUTES).fetchone()
    body = _instance(f"res{uuid.uuid4().hex[:6]}", database={"name": database})
    with pytest.raises(Stalled) as stalled:
        await reconcile_instance(clients, body, False)
    assert stalled.value.reason == "ReservedName"
    assert f"spec.database.name {database} is reserved" in str(stalled.value)
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        assert connection.execute(_ADMIN_ATTRIBUTES).fetchone() == before
    assert clients.kube.writes == 0  # stalled before any write: not even the namespace


async def test_an_instance_named_after_the_operators_namespace_stalls(
    clients: Clients,
) -> None:
    with pytest.raises(Stalled) as stalled:
        await reconcile_instance(clients, _instance("operator"), False)
    assert stalled.value.reason == "ReservedName"
    assert "the operator's own namespace" in str(stalled.value)
    assert clients.kube.writes == 0


async def test_an_operator_owned_option_in_another_spelling_stalls_a_stored_instance(
    clients: Clients,
) -> None:
    body = _instance(f"cfg{uuid.uuid4().hex[:6]}", config={"LIST_DB": "True"})
    with pytest.raises(Stalled) as stalled:
        await reconcile_instance(clients, body, False)
    assert stalled.value.reason == "InvalidConfiguration"
    assert "spec.config.LIST_DB" in str(stalled.value)
    assert clients.kube.writes == 0


async def test_an_image_against_the_policy_stalls_a_stored_instance(kubeconfig: Path) -> None:
    strict = OperatorConfig.from_mapping(
        {
            "versions": {"18.0": "odoo:18.0"},
            "postgresServers": {"main": {"secretRef": "postgres-main", "default": True}},
            "redisServers": {"main": {"secretRef": "redis-main", "default": True}},
            "policy": {"requireImageDigest": True},
        }
    )
    api = await async_config.new_client_from_config(config_file=str(kubeconfig))
    kube = KubeClient(api)
    try:
        clients = Clients(kube=kube, config=strict)
        with pytest.raises(Stalled) as stalled:
            await reconcile_instance(clients, _instance(f"img{uuid.uuid4().hex[:6]}"), False)
        assert stalled.value.reason == "InvalidConfiguration"
        assert "digest" in str(stalled.value)
        assert kube.writes == 0
    finally:
        await kube.close()
