"""The few kubectl verbs the demo and the e2e suite need, over the Python client.

Used by the demo and the tests only: it is synchronous, so it never runs
inside the operator's event loop.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, dynamic

FIELD_MANAGER = "odoo-operator-dev"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"


def api_client(kubeconfig: Path) -> client.ApiClient:
    """A client for the cluster ``kubeconfig`` points at."""
    return config.new_client_from_config(config_file=str(kubeconfig))


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every YAML document of a file, or of the ``*.yaml`` files of a folder."""
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return [doc for file in files for doc in yaml.safe_load_all(file.read_text()) if doc]


def apply(api: client.ApiClient, documents: list[dict[str, Any]]) -> None:
    """Server-side apply each document, like ``kubectl apply --server-side``."""
    dyn = dynamic.DynamicClient(api)
    for document in documents:
        resource = dyn.resources.get(api_version=document["apiVersion"], kind=document["kind"])
        dyn.server_side_apply(
            resource,
            body=document,
            name=document["metadata"]["name"],
            namespace=document["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )


def wait_established(api: client.ApiClient, crd_names: list[str], timeout: float = 60) -> None:
    """Wait until each CRD is Established, so its kind can be served."""
    extensions = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    for name in crd_names:
        while True:
            crd = extensions.read_custom_resource_definition(name)
            conditions = (crd.status.conditions if crd.status else None) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {timeout:.0f}s")
            time.sleep(0.2)


def install_crds(api: client.ApiClient, crd_dir: Path) -> list[str]:
    """Apply every CRD of ``crd_dir`` and wait for them; return their names."""
    crds = load_documents(crd_dir)
    apply(api, crds)
    names = [crd["metadata"]["name"] for crd in crds]
    wait_established(api, names)
    return names


def get_table(api: client.ApiClient, path: str) -> dict[str, Any]:
    """The server-side Table (printer columns) for a list path."""
    response = dynamic.DynamicClient(api).request(
        "GET", path, header_params={"Accept": TABLE_ACCEPT}
    )
    table: dict[str, Any] = response.to_dict()
    return table


def format_table(table: dict[str, Any]) -> str:
    """Render a Table the way ``kubectl get`` does (priority-0 columns only)."""
    visible = [i for i, c in enumerate(table["columnDefinitions"]) if c.get("priority", 0) == 0]
    headers = [table["columnDefinitions"][i]["name"].upper() for i in visible]
    rows = [
        ["" if row["cells"][i] is None else str(row["cells"][i]) for i in visible]
        for row in table.get("rows", [])
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [headers, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)
