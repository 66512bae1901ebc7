"""Helpers of the e2e suite: sample-based instances and waiting for conditions."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from odoo_operator.devcluster import kubectl
from odoo_operator.devcluster.demo import is_ready
from odoo_operator.devcluster.processes import ManagedProcess

REPO = Path(__file__).parents[1]
GROUP, VERSION, PLURAL = "odoo.tenantops.io", "v1alpha1", "odooinstances"
SAMPLE = kubectl.load_documents(REPO / "manifests" / "samples" / "odooinstance-acme.yaml")[0]


def make_instance(name: str, **spec: Any) -> dict[str, Any]:
    """The sample instance under another name and host, with spec fields replaced."""
    body = copy.deepcopy(SAMPLE)
    body["metadata"] = {"name": name}
    body["spec"]["hosts"] = [f"{name}.odoo.example.com"]
    body["spec"].update(spec)
    return body


def wait_ready(api: client.CustomObjectsApi, name: str, process: ManagedProcess) -> Any:
    """Wait for Ready=True at the current generation; fail with status and operator log."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        obj = api.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        if is_ready(obj):
            return obj
        assert process.exit_code() is None, process.log_tail()
        time.sleep(0.5)
    pytest.fail(f"{name} never became Ready: {obj.get('status')}\n{process.log_tail()}")
