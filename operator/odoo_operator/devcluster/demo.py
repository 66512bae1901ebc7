"""`make demo`: the operator on the local stack, end to end."""

from __future__ import annotations

import os
import sys
import threading
import time
from functools import partial
from pathlib import Path

from . import kubectl
from .bootstrap import bootstrap
from .controlplane import ControlPlane
from .processes import ComponentError, ManagedProcess
from .stack import LocalStack

INSTANCES_PATH = "/apis/odoo.tenantops.io/v1alpha1/odooinstances"
_WAIT_SECONDS = 90.0


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def start_operator(environment: dict[str, str], log_path: Path) -> ManagedProcess:
    """Run ``odoo-operator run`` as a child process against ``environment``'s cluster."""
    return ManagedProcess(
        "operator",
        [sys.executable, "-m", "odoo_operator.cli", "run"],
        log_path,
        env=dict(os.environ, **environment),
    ).start()


def _observed(control_plane: ControlPlane, name: str) -> bool:
    instance = control_plane.api("GET", f"{INSTANCES_PATH}/{name}")
    return bool(instance.get("status", {}).get("observedGeneration"))


def run_demo(repo: Path, wait: bool = True) -> None:
    """Bootstrap, start the stack, run the operator and apply the sample tenants."""
    bootstrap()
    with LocalStack() as stack:
        control_plane = stack.control_plane
        api = kubectl.api_client(control_plane.kubeconfig)
        crds = kubectl.install_crds(api, repo / "crds")
        _say(f"installed CRDs: {', '.join(crds)}")
        operator = start_operator(
            stack.environment(), control_plane.workdir / "operator" / "operator.log"
        )
        control_plane.processes.append(operator)
        _say(f"operator running (pid {operator.pid}, log {operator.log_path})")
        samples = kubectl.load_documents(repo / "manifests" / "samples")
        kubectl.apply(api, samples)
        started = time.monotonic()
        for sample in samples:
            name = sample["metadata"]["name"]
            operator.wait_until(
                partial(_observed, control_plane, name), _WAIT_SECONDS, f"handling {name}"
            )
        _say(f"operator handled {len(samples)} sample(s) in {time.monotonic() - started:.1f}s")
        print()
        print(kubectl.format_table(kubectl.get_table(api, INSTANCES_PATH)))
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
            raise ComponentError("operator", "exited unexpectedly", operator.log_tail())
        except KeyboardInterrupt:
            _say("stopping")
