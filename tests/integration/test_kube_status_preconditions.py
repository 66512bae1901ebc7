"""A status write conditioned on a resourceVersion, against the real apiserver: what lets the
OdooBackup handler publish an instance's backup state without overwriting a newer status the
instance handler wrote meanwhile."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes_asyncio import config as async_config

from odoo_devstack import kubectl
from odoo_operator.backends.kube import KubeClient, KubeConflict
from odoo_operator.model.names import API_VERSION, INSTANCE_KIND

REPO = Path(__file__).parents[2]
GROUP, VERSION, PLURAL = "odoo.tenantops.io", "v1alpha1", "odooinstances"


@pytest.fixture
async def kube(kubeconfig: Path, k8s: client.ApiClient) -> AsyncIterator[KubeClient]:
    """The operator's Kubernetes client as cluster administrator, the CRDs installed."""
    kubectl.install_crds(k8s, REPO / "crds")
    api = await async_config.new_client_from_config(config_file=str(kubeconfig))
    kube = KubeClient(api)
    yield kube
    await kube.close()


@pytest.fixture
def instance(k8s: client.ApiClient) -> Any:
    """A stored OdooInstance (no operator runs here); deleted afterwards."""
    custom = client.CustomObjectsApi(k8s)
    name = f"pre-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": INSTANCE_KIND,
        "metadata": {"name": name},
        "spec": {"version": "18.0", "hosts": [f"{name}.example.com"]},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    yield name
    custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


async def test_a_status_write_onto_an_older_version_is_refused_and_changes_nothing(
    kube: KubeClient, instance: str
) -> None:
    read = await kube.get(API_VERSION, INSTANCE_KIND, instance)
    assert read is not None
    version = read["metadata"]["resourceVersion"]
    # Another writer (the instance handler) publishes its status after that read.
    await kube.patch_status(API_VERSION, INSTANCE_KIND, instance, {"phase": "Running"})

    with pytest.raises(KubeConflict):
        await kube.patch_status(
            API_VERSION, INSTANCE_KIND, instance, {"phase": "Stale"}, resource_version=version
        )

    current = await kube.get(API_VERSION, INSTANCE_KIND, instance)
    assert current is not None
    assert current["status"]["phase"] == "Running"
    # Onto the version it read again, the same write goes through.
    await kube.patch_status(
        API_VERSION,
        INSTANCE_KIND,
        instance,
        {"phase": "Fresh"},
        resource_version=current["metadata"]["resourceVersion"],
    )
    fresh = await kube.get(API_VERSION, INSTANCE_KIND, instance)
    assert fresh is not None
    assert fresh["status"]["phase"] == "Fresh"
