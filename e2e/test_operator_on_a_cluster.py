"""The operator, run as its own process, against a cluster reached through KUBECONFIG.

By default the cluster is the local control plane; set
``ODOO_OPERATOR_TEST_KUBECONFIG`` to run the same scenarios against any other.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from odoo_operator.devcluster import kubectl
from odoo_operator.devcluster.demo import INSTANCES_PATH, start_operator
from odoo_operator.devcluster.processes import ManagedProcess

REPO = Path(__file__).parents[1]
GROUP, VERSION, PLURAL = "odoo.tenantops.io", "v1alpha1", "odooinstances"
SAMPLE = kubectl.load_documents(REPO / "manifests" / "samples" / "odooinstance-acme.yaml")[0]


@pytest.fixture(scope="module")
def operator(
    k8s: client.ApiClient, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    """CRDs installed and the operator running as a separate process."""
    kubectl.install_crds(k8s, REPO / "crds")
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = start_operator({"KUBECONFIG": str(kubeconfig)}, log)
    yield process
    process.stop()


def _instance(name: str, **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(SAMPLE)
    body["metadata"] = {"name": name}
    body["spec"]["hosts"] = [f"{name}.odoo.example.com"]
    body["spec"].update(spec)
    return body


def _wait_observed(api: client.CustomObjectsApi, name: str, process: ManagedProcess) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        obj = api.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        status = obj.get("status", {})
        if status.get("observedGeneration") == obj["metadata"]["generation"]:
            return obj
        assert process.exit_code() is None, process.log_tail()
        time.sleep(0.25)
    pytest.fail(f"operator never observed {name}:\n{process.log_tail()}")


def test_an_applied_instance_is_acknowledged_with_kstatus_conditions(
    k8s: client.ApiClient, operator: ManagedProcess
) -> None:
    custom = client.CustomObjectsApi(k8s)
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, _instance(name))
    try:
        obj = _wait_observed(custom, name, operator)
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "Unknown"
        assert ready["observedGeneration"] == obj["metadata"]["generation"]
        # Defaults from the schema are visible to GitOps diffing, not invented by the operator.
        assert obj["spec"]["deletionPolicy"] == "Retain"
        table = kubectl.get_table(k8s, INSTANCES_PATH)
        row = next(r for r in table["rows"] if r["cells"][0] == name)
        assert row["cells"][1:4] == ["18.0", "Provisioning", "Unknown"]
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "18"}, "spec.version"),
        ({"hosts": []}, "spec.hosts"),
        ({"hosts": ["Not A Host"]}, "spec.hosts[0]"),
        ({"tenancy": "mixed"}, 'Unsupported value: "mixed"'),
        ({"config": {"db_host": "evil"}}, "spec.config may not set db_*"),
        ({"tls": {}}, "spec.tls needs exactly one of secretName or issuerRef"),
        ({"cron": {"replicas": 2}}, "spec.cron.replicas"),
    ],
    ids=["version", "no-hosts", "bad-host", "tenancy", "db-config", "tls", "two-crons"],
)
def test_invalid_instances_are_refused_with_a_clear_message(
    k8s: client.ApiClient, operator: ManagedProcess, change: dict[str, Any], message: str
) -> None:
    custom = client.CustomObjectsApi(k8s)
    with pytest.raises(ApiException) as refused:
        custom.create_cluster_custom_object(
            GROUP, VERSION, PLURAL, _instance(f"bad-{uuid.uuid4().hex[:6]}", **change)
        )
    assert refused.value.status == 422
    assert message in json.loads(refused.value.body)["message"]


def test_a_name_too_long_for_the_tenant_namespace_is_refused(
    k8s: client.ApiClient, operator: ManagedProcess
) -> None:
    custom = client.CustomObjectsApi(k8s)
    with pytest.raises(ApiException) as refused:
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, _instance("x" * 41))
    assert refused.value.status == 422
    assert "at most 40 characters" in json.loads(refused.value.body)["message"]


@pytest.mark.skipif(
    bool(os.environ.get("ODOO_OPERATOR_TEST_KUBECONFIG")),
    reason="the demo starts its own local stack; it is not a scenario for a foreign cluster",
)
def test_the_demo_command_runs_end_to_end() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "odoo_operator.cli",
            "dev",
            "demo",
            "--no-wait",
            "--repo",
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("NAME"))
    assert header.split() == ["NAME", "VERSION", "PHASE", "READY", "URL", "AGE"]
    assert any(line.startswith("acme") and "Provisioning" in line for line in lines)
    assert "export KUBECONFIG=" in result.stdout
