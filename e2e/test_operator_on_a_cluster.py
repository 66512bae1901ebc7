"""The operator, run as its own process, against a cluster reached through KUBECONFIG.

By default the cluster is the local control plane; set
``ODOO_OPERATOR_TEST_KUBECONFIG`` to run the same scenarios against any other.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from e2e.tenants import GROUP, PLURAL, REPO, VERSION, make_instance, wait_ready
from odoo_devstack import kubectl
from odoo_devstack.demo import INSTANCES_PATH
from odoo_devstack.processes import ManagedProcess


def test_an_applied_instance_becomes_a_ready_isolated_tenant(
    k8s: client.ApiClient, operator: ManagedProcess
) -> None:
    custom, core = client.CustomObjectsApi(k8s), client.CoreV1Api(k8s)
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, make_instance(name))
    try:
        obj = wait_ready(custom, name, operator)
        conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
        for part in ("DatabaseReady", "RedisReady", "Initialized", "WorkloadReady", "IngressReady"):
            assert conditions[part] == "True", part
        assert conditions["Stalled"] == "False"
        namespace = core.read_namespace(f"odoo-{name}")
        assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
        # The web and cron pods were admitted under `restricted` and run on the fake nodes.
        pods = core.list_namespaced_pod(
            f"odoo-{name}", label_selector="app.kubernetes.io/component in (web,cron)"
        ).items
        assert len(pods) == 2
        assert all(pod.status.phase == "Running" for pod in pods)
        policies = client.NetworkingV1Api(k8s).list_namespaced_network_policy(f"odoo-{name}").items
        assert "default-deny" in {p.metadata.name for p in policies}
        table = kubectl.get_table(k8s, INSTANCES_PATH)
        row = next(r for r in table["rows"] if r["cells"][0] == name)
        assert row["cells"][1:5] == ["18.0", "production", "Ready", "True"]
        # Secrets never reach status.
        status_text = json.dumps(obj["status"])
        credentials = core.read_namespaced_secret("odoo-credentials", f"odoo-{name}").data
        for value in credentials.values():
            assert base64.b64decode(value).decode() not in status_text
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def test_a_deleted_network_policy_is_put_back(
    k8s: client.ApiClient, operator: ManagedProcess
) -> None:
    custom = client.CustomObjectsApi(k8s)
    networking = client.NetworkingV1Api(k8s)
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, make_instance(name))
    try:
        wait_ready(custom, name, operator)
        networking.delete_namespaced_network_policy("default-deny", f"odoo-{name}")
        deadline = time.monotonic() + 60
        names: set[str] = set()
        while time.monotonic() < deadline:
            names = {
                p.metadata.name
                for p in networking.list_namespaced_network_policy(f"odoo-{name}").items
            }
            if "default-deny" in names:
                break
            time.sleep(0.5)
        assert "default-deny" in names
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "18"}, "spec.version"),
        ({"hosts": []}, "spec.hosts"),
        ({"hosts": ["Not A Host"]}, "spec.hosts[0]"),
        ({"tenancy": "mixed"}, 'Unsupported value: "mixed"'),
        ({"config": {"db_host": "evil"}}, "spec.config.db_host: db_host is owned by the operator"),
        ({"tls": {}}, "spec.tls needs exactly one of secretName or issuerRef"),
        ({"cron": {"replicas": 2}}, "spec.cron.replicas"),
        ({"replicas": -1}, "spec.replicas"),
        ({"deletionPolicy": "Purge"}, 'Unsupported value: "Purge"'),
        ({"ingress": {"allowFrom": ["the office"]}}, "must be a CIDR"),
    ],
    ids=[
        "version",
        "no-hosts",
        "bad-host",
        "tenancy",
        "db-config",
        "tls",
        "two-crons",
        "negative-replicas",
        "deletion-policy",
        "allow-from",
    ],
)
def test_invalid_instances_are_refused_with_a_clear_message(
    k8s: client.ApiClient, operator: ManagedProcess, change: dict[str, Any], message: str
) -> None:
    custom = client.CustomObjectsApi(k8s)
    with pytest.raises(ApiException) as refused:
        custom.create_cluster_custom_object(
            GROUP, VERSION, PLURAL, make_instance(f"bad-{uuid.uuid4().hex[:6]}", **change)
        )
    assert refused.value.status == 422
    assert message in json.loads(refused.value.body)["message"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"database": {"serverRef": "main", "name": "renamed"}}, "spec.database.name is immutable"),
        ({"filestore": {"size": "5Gi"}}, "spec.filestore.size can only grow"),
    ],
    ids=["database-rename", "filestore-shrink"],
)
def test_guarded_fields_cannot_be_changed_after_creation(
    k8s: client.ApiClient, operator: ManagedProcess, change: dict[str, Any], message: str
) -> None:
    custom = client.CustomObjectsApi(k8s)
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    body = make_instance(name, database={"serverRef": "main", "name": f"odoo_{name[4:]}"})
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    try:
        with pytest.raises(ApiException) as refused:
            custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, {"spec": change})
        assert refused.value.status == 422
        assert message in json.loads(refused.value.body)["message"]
    finally:
        custom.patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, name, {"spec": {"deletionPolicy": "Delete"}}
        )
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def test_a_name_too_long_for_the_tenant_namespace_is_refused(
    k8s: client.ApiClient, operator: ManagedProcess
) -> None:
    custom = client.CustomObjectsApi(k8s)
    with pytest.raises(ApiException) as refused:
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, make_instance("x" * 41))
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
            "odoo_devstack.cli",
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
    assert header.split() == [
        "NAME",
        "VERSION",
        "ENV",
        "PHASE",
        "READY",
        "URL",
        "LAST",
        "BACKUP",
        "AGE",
    ]
    assert any(line.startswith("acme ") and " Ready " in line and "True" in line for line in lines)
    # The on-demand backup is taken and verified, and cloned into a neutralized staging tenant.
    backup = next(line for line in lines if line.startswith("acme-before-year-end "))
    assert " Succeeded " in backup
    assert " Passed " in backup
    restore = next(line for line in lines if line.startswith("acme-staging-from-year-end "))
    assert " Succeeded " in restore
    assert "export KUBECONFIG=" in result.stdout


def test_the_documented_full_example_is_accepted_by_the_cluster(
    k8s: client.ApiClient, operator: ManagedProcess
) -> None:
    text = (REPO / "docs" / "odooinstance.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    body = yaml.safe_load(example)
    assert body["kind"] == "OdooInstance"
    # A server-side dry run passes the schema, CEL rules and the admission webhook.
    accepted = client.CustomObjectsApi(k8s).create_cluster_custom_object(
        GROUP, VERSION, PLURAL, body, dry_run="All"
    )
    assert accepted["spec"]["database"]["name"] == "odoo_globex"
