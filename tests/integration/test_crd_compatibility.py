"""CRD changes stay backward compatible within v1alpha1: manifests written against an
earlier release are still accepted, unchanged, by today's CRDs (server-side dry run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from odoo_devstack import kubectl

REPO = Path(__file__).parents[2]
RELEASED = sorted((REPO / "tests" / "fixtures" / "released-samples").glob("*.yaml"))


@pytest.mark.parametrize("manifest", RELEASED, ids=[path.name for path in RELEASED])
def test_a_manifest_of_an_earlier_release_is_still_accepted(
    k8s: client.ApiClient, manifest: Path
) -> None:
    kubectl.install_crds(k8s, REPO / "crds")
    custom = client.CustomObjectsApi(k8s)
    for document in kubectl.load_documents(manifest):
        group, version = document["apiVersion"].split("/")
        plural = document["kind"].lower() + "s"
        accepted = custom.create_cluster_custom_object(
            group, version, plural, document, dry_run="All"
        )
        assert accepted["spec"]["version"] == document["spec"]["version"]
