"""Backups as Jobs (``backupExecution: job``), the production path.

The local nodes are fake: a Job's pod is admitted (so it passes Pod Security
``restricted``), scheduled and reported finished, but nothing runs in it. So the spec and
status flow are checked through the cluster, and the Job's command line is run here, with
the environment its pod would get, to prove it backs up for real.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.tenants import (
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    create_backup,
    eventually,
    make_instance,
    wait_ready,
)
from odoo_devstack import kubectl
from odoo_devstack.demo import start_operator
from odoo_devstack.operator_setup import register_servers
from odoo_devstack.processes import ManagedProcess


@pytest.fixture(scope="module")
def job_operator(
    k8s: client.ApiClient,
    operator_kubeconfig: Path,
    postgres_dsn: str,
    redis_url: str,
    blob_connection_string: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ManagedProcess]:
    """The operator configured to run backups as Jobs."""
    kubectl.install_crds(k8s, REPO / "crds")
    workdir = tmp_path_factory.mktemp("job-operator")
    config = register_servers(
        k8s, postgres_dsn, redis_url, workdir, blob_connection_string, backup_execution="job"
    )
    process = start_operator(operator_kubeconfig, config, workdir / "operator.log", 5)
    yield process
    process.stop()


def _pod_environment(core: client.CoreV1Api, namespace: str, container: Any) -> dict[str, str]:
    """The environment the Job's container would get, with Secret references resolved."""
    environment: dict[str, str] = {}
    for variable in container["env"]:
        if "value" in variable:
            # The kubelet expands $(NAME) from the variables defined before this one.
            value = variable["value"]
            for known, resolved in environment.items():
                value = value.replace(f"$({known})", resolved)
            environment[variable["name"]] = value
            continue
        ref = variable["valueFrom"]["secretKeyRef"]
        data = core.read_namespaced_secret(ref["name"], namespace).data
        environment[variable["name"]] = base64.b64decode(data[ref["key"]]).decode()
    return environment


def test_a_backup_job_is_admitted_under_restricted_and_without_a_manifest_the_backup_fails(
    k8s: client.ApiClient, job_operator: ManagedProcess, blob_connection_string: str
) -> None:
    custom, core = client.CustomObjectsApi(k8s), client.CoreV1Api(k8s)
    batch = client.BatchV1Api(k8s)
    name = f"job-{uuid.uuid4().hex[:6]}"
    custom.create_cluster_custom_object(
        GROUP, VERSION, PLURAL, make_instance(name, backup={"verify": "Never"})
    )
    backup_name = f"{name}-manual"
    try:
        wait_ready(custom, name, job_operator)
        create_backup(custom, name, backup_name)
        found: dict[str, Any] = {}

        def running_as_job() -> bool:
            found.update(
                custom.get_cluster_custom_object(GROUP, VERSION, "odoobackups", backup_name)
            )
            return str((found.get("status") or {}).get("execution", "")).startswith("Job ")

        eventually(running_as_job, "the backup handed to a Job")
        namespace, job_name = found["status"]["execution"].removeprefix("Job ").split("/")
        assert namespace == f"odoo-{name}"
        job = batch.read_namespaced_job(job_name, namespace).to_dict()
        container = k8s.sanitize_for_serialization(batch.read_namespaced_job(job_name, namespace))[
            "spec"
        ]["template"]["spec"]["containers"][0]
        assert job["spec"]["backoff_limit"] == 0
        # The pod was admitted in the restricted namespace: the Job created it.
        eventually(
            lambda: bool(
                core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}").items
            ),
            "the backup pod admitted under Pod Security restricted",
        )

        # The Job's own command line, with its pod's environment, takes a real backup.
        environment = _pod_environment(core, namespace, container)
        assert environment["ODOO_OPERATOR_BLOB_CONNECTION_STRING"] == blob_connection_string
        args = list(container["args"])
        args[args.index("--backup-id") + 1] = "20261123T000000Z-cafe"
        result = subprocess.run(
            [sys.executable, "-m", "odoo_operator.cli", *args],
            env={**os.environ, **environment},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout)["backupId"] == "20261123T000000Z-cafe"
        assert environment["PGPASSWORD"] not in result.stdout + result.stderr

        # The fake pod "completes" without having run: no manifest, so no backup.
        def finished() -> bool:
            found.update(
                custom.get_cluster_custom_object(GROUP, VERSION, "odoobackups", backup_name)
            )
            return found["status"].get("phase") in ("Succeeded", "Failed")

        eventually(finished, "the backup Job followed to its end", 120)
        assert found["status"]["phase"] == "Failed"
        assert "no manifest was written" in found["status"]["message"]
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "odoobackups", backup_name)
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
