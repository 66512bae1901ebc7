"""The tools that read the operator's status, run the way they run in a cluster.

- kstatus: sigs.k8s.io/cli-utils' own library, through the checker the bootstrap builds
  (``gomodules/kubernetes/kstatus``); what Flux's health assessment and ``kstatus`` conclude.
- ``kubectl wait --for=condition=Ready``: the real kubectl, checking once.
- Argo CD: the chart's Lua health checks in a Lua 5.1 interpreter (Argo CD's gopher-lua
  implements Lua 5.1), the object as the global ``obj``, a ``{status, message}`` table back.
- Flux: for a custom resource without a health expression, kustomize-controller and
  helm-controller wait on kstatus: Current is healthy, Failed fails at once, anything else is
  waited on until the timeout.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from lupa import lua51

from odoo_devstack import binaries

ARGOCD_CHECKS = Path(__file__).parents[2] / "charts" / "odoo-operator" / "files" / "argocd"
ARGOCD_STATUSES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended"})
_FLUX_VERDICTS = {"Current": "healthy", "Failed": "fails"}


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the stack's kubectl against ``kubeconfig``; the result, whatever its exit code."""
    command = [str(binaries.ensure(binaries.KUBECTL)), "--kubeconfig", str(kubeconfig), *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60)


def kstatus(objects_json: str) -> list[dict[str, str]]:
    """kstatus's verdict (``status``, ``message``) on each object of ``kubectl get -o json``."""
    result = subprocess.run(
        [str(binaries.ensure(binaries.KSTATUS))],
        input=objects_json,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kstatus checker failed: {result.stderr.strip()}")
    return [json.loads(line) for line in result.stdout.splitlines()]


def ready_condition_met(kubeconfig: Path, resource: str) -> bool:
    """Whether ``kubectl wait --for=condition=Ready`` on ``resource`` is met right now."""
    result = kubectl(kubeconfig, "wait", "--for=condition=Ready", "--timeout=0s", resource)
    return result.returncode == 0


def argocd_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run the chart's Argo CD health check of ``kind`` on ``obj`` as Argo CD does."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((ARGOCD_CHECKS / f"{kind.lower()}.lua").read_text())
    health = {str(k): str(v) for k, v in dict(result.items()).items()}
    if health.get("status") not in ARGOCD_STATUSES or "message" not in health:
        raise ValueError(f"the {kind} health check returned {health}")
    return health


def flux_verdict(kstatus_status: str) -> str:
    """What Flux makes of a custom resource kstatus reads as ``kstatus_status``."""
    return _FLUX_VERDICTS.get(kstatus_status, "waits")
