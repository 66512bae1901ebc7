"""`make demo`: the operator on the local stack, end to end."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from .bootstrap import bootstrap
from .controlplane import ControlPlane
from .processes import ComponentError, ManagedProcess
from .stack import LocalStack

_WAIT_SECONDS = 90.0


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def apply_manifests(control_plane: ControlPlane, path: Path) -> list[dict[str, Any]]:
    """Server-side apply every document of a YAML file (or a folder of them)."""
    from kubernetes import config, dynamic

    client = dynamic.DynamicClient(
        config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    )
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    applied = []
    for file in files:
        for document in yaml.safe_load_all(file.read_text()):
            if not document:
                continue
            resource = client.resources.get(
                api_version=document["apiVersion"], kind=document["kind"]
            )
            client.server_side_apply(
                resource,
                body=document,
                name=document["metadata"]["name"],
                namespace=document["metadata"].get("namespace"),
                field_manager="odoo-operator-demo",
                force_conflicts=True,
            )
            applied.append(document)
    return applied


def wait_for_crds(control_plane: ControlPlane, names: list[str]) -> None:
    """Wait until each CRD is Established, so its kind can be used."""
    deadline = time.monotonic() + _WAIT_SECONDS
    for name in names:
        while True:
            crd = control_plane.api(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            conditions = crd.get("status", {}).get("conditions", [])
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {_WAIT_SECONDS:.0f}s")
            time.sleep(0.2)


def format_table(table: dict[str, Any]) -> str:
    """Render a meta.k8s.io Table (the server's printer columns) like kubectl does."""
    headers = [c["name"].upper() for c in table["columnDefinitions"] if c.get("priority", 0) == 0]
    rows = [
        ["" if cell is None else str(cell) for cell in row["cells"][: len(headers)]]
        for row in table.get("rows", [])
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [headers, *rows]]
    return "\n".join(line.rstrip() for line in lines)


def get_table(control_plane: ControlPlane, path: str) -> str:
    """`kubectl get` for ``path``, through the apiserver's Table output."""
    table = control_plane.api(
        "GET", path, accept="application/json;as=Table;v=v1;g=meta.k8s.io"
    )
    return format_table(table)


def _observed(control_plane: ControlPlane, path: str) -> bool:
    obj = control_plane.api("GET", path)
    return bool(obj.get("status", {}).get("observedGeneration"))


def run_demo(repo: Path, wait: bool = True) -> None:
    """Bootstrap, start the stack, run the operator and apply the sample tenant."""
    bootstrap()
    with LocalStack() as stack:
        control_plane = stack.control_plane
        crds = apply_manifests(control_plane, repo / "crds")
        wait_for_crds(control_plane, [crd["metadata"]["name"] for crd in crds])
        _say(f"installed {len(crds)} CRD(s) from crds/")
        operator = ManagedProcess(
            "operator",
            [sys.executable, "-m", "odoo_operator.cli", "run"],
            control_plane.workdir / "operator" / "operator.log",
            env=dict(os.environ, **stack.environment()),
        ).start()
        control_plane.processes.append(operator)
        _say(f"operator running (pid {operator.pid}, log {operator.log_path})")
        samples = apply_manifests(control_plane, repo / "manifests" / "samples")
        for sample in samples:
            name = sample["metadata"]["name"]
            path = f"/apis/odoo.tenantops.io/v1alpha1/odooinstances/{name}"
            operator.wait_until(
                lambda p=path: _observed(control_plane, p), _WAIT_SECONDS, f"handling {name}"
            )
        print()
        print(get_table(control_plane, "/apis/odoo.tenantops.io/v1alpha1/odooinstances"))
        print()
        _say("the local stack is up; in another shell:")
        print(f"  export KUBECONFIG={control_plane.kubeconfig}")
        print("  kubectl get odoo")
        print("  kubectl describe odoo acme")
        print(f"  tail -f {operator.log_path}")
        if not wait:
            return
        _say("press Ctrl-C to stop everything")
        try:
            while operator.exit_code() is None:
                threading.Event().wait(1.0)
            raise ComponentError("operator", "exited", operator.log_tail())
        except KeyboardInterrupt:
            _say("stopping")
