"""The watch cache against the real apiserver: the operator's own objects are read from
memory, kept current by label-selected watches; nothing else is ever answered from it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes_asyncio import config as async_config

from odoo_operator import metrics
from odoo_operator.backends.kube import KubeClient
from odoo_operator.backends.kube_cache import WatchCache
from odoo_operator.model.names import MANAGED_BY, MANAGED_BY_LABEL

MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}


@pytest.fixture
async def cached(kubeconfig: Path) -> AsyncIterator[tuple[KubeClient, WatchCache]]:
    """The operator's client with the watch cache on, as cluster administrator."""
    api = await async_config.new_client_from_config(config_file=str(kubeconfig))
    kube = KubeClient(api)
    watches = WatchCache(api)
    await watches.start()
    kube.cache = watches.cache
    yield kube, watches
    await watches.stop()
    await kube.close()


@pytest.fixture
def namespace(k8s: client.ApiClient) -> Any:
    core = client.CoreV1Api(k8s)
    name = f"cache-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name, "labels": MANAGED}})
    yield name
    core.delete_namespace(name)


def _gets() -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "odoo_operator_external_call_duration_seconds_count",
            {"system": "kubernetes", "operation": "get"},
        )
        or 0.0
    )


async def _until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _service(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"ports": [{"port": 8069}]},
    }


async def test_every_managed_kind_is_listed_and_watched(
    cached: tuple[KubeClient, WatchCache],
) -> None:
    _, watches = cached
    kinds = sorted(kind for _, kind in watches.cache.synced)
    assert {"Namespace", "Deployment", "Job", "Service", "NetworkPolicy"} <= set(kinds), kinds


async def test_a_managed_object_is_read_from_memory_and_follows_changes(
    cached: tuple[KubeClient, WatchCache], namespace: str, k8s: client.ApiClient
) -> None:
    kube, watches = cached
    core = client.CoreV1Api(k8s)
    core.create_namespaced_service(namespace, _service("odoo", namespace, MANAGED))
    await _until(
        lambda: watches.cache.lookup("v1", "Service", "odoo", namespace) is not None,
        "the watch to deliver the Service",
    )
    before = _gets()
    found = await kube.get("v1", "Service", "odoo", namespace)
    assert found is not None
    assert found["spec"]["ports"][0]["port"] == 8069
    assert _gets() == before  # no request

    # Someone edits it: the next read sees the edit, still without a request.
    core.patch_namespaced_service("odoo", namespace, {"metadata": {"annotations": {"x": "1"}}})
    await _until(
        lambda: (
            (watches.cache.lookup("v1", "Service", "odoo", namespace) or {})
            .get("metadata", {})
            .get("annotations", {})
            .get("x")
            == "1"
        ),
        "the edit",
    )
    # Deleted: the cache no longer answers, the API server does (and says it is gone).
    core.delete_namespaced_service("odoo", namespace)
    await _until(
        lambda: watches.cache.lookup("v1", "Service", "odoo", namespace) is None, "the deletion"
    )
    assert await kube.get("v1", "Service", "odoo", namespace) is None
    assert _gets() == before + 1


async def test_an_object_the_operator_did_not_label_is_read_from_the_api_server(
    cached: tuple[KubeClient, WatchCache], namespace: str, k8s: client.ApiClient
) -> None:
    kube, watches = cached
    client.CoreV1Api(k8s).create_namespaced_service(
        namespace, _service("foreign", namespace, {"team": "other"})
    )
    before = _gets()
    found = await kube.get("v1", "Service", "foreign", namespace)
    assert found is not None  # present, though the cache never holds it
    assert watches.cache.lookup("v1", "Service", "foreign", namespace) is None
    assert _gets() == before + 1


async def test_what_the_operator_writes_is_read_back_at_once(
    cached: tuple[KubeClient, WatchCache], namespace: str
) -> None:
    kube, _ = cached
    desired = _service("written", namespace, MANAGED)
    assert await kube.apply(desired)
    before = _gets()
    # Read straight after the write, before any watch event could arrive: from the answer.
    found = await kube.get("v1", "Service", "written", namespace)
    assert found is not None
    assert found["metadata"]["labels"] == MANAGED
    assert _gets() == before
    assert not await kube.apply(desired)  # unchanged: no write, no read
    assert _gets() == before


def _secret(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"database-password": "c2VjcmV0"},
    }


async def test_the_operators_own_secrets_are_kept_by_name_and_no_other_secret(
    cached: tuple[KubeClient, WatchCache], namespace: str, k8s: client.ApiClient
) -> None:
    kube, watches = cached
    assert ("v1", "Secret") not in watches.cache.synced  # never the kind as a whole
    assert ("v1", "Secret", "odoo-credentials") in watches.cache.synced_names
    core = client.CoreV1Api(k8s)
    core.create_namespaced_secret(namespace, _secret("odoo-credentials", namespace, MANAGED))
    core.create_namespaced_secret(namespace, _secret("team-token", namespace, MANAGED))
    await _until(
        lambda: watches.cache.lookup("v1", "Secret", "odoo-credentials", namespace) is not None,
        "the watch of odoo-credentials to deliver it",
    )
    before = _gets()
    found = await kube.get("v1", "Secret", "odoo-credentials", namespace)
    assert found is not None
    assert found["data"] == {"database-password": "c2VjcmV0"}
    assert _gets() == before  # from memory

    # Another name, though labelled: not watched, so read from the API server.
    assert await kube.get("v1", "Secret", "team-token", namespace) is not None
    assert watches.cache.lookup("v1", "Secret", "team-token", namespace) is None
    assert _gets() == before + 1

    # Deleted behind the operator's back: the cache lets go, the next read finds it gone.
    core.delete_namespaced_secret("odoo-credentials", namespace)
    await _until(
        lambda: watches.cache.lookup("v1", "Secret", "odoo-credentials", namespace) is None,
        "the deletion",
    )
    assert await kube.get("v1", "Secret", "odoo-credentials", namespace) is None
