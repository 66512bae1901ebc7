"""The operator's admission webhook, called by the real apiserver.

The CRD schema checks one object on its own; these are the refusals that need
the rest of the cluster and the operator's configuration (see
:mod:`odoo_operator.model.admission`), answered by ``odoo-operator webhook`` in a process of
its own beside the operator, as the chart installs them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from e2e.tenants import GROUP, PLURAL, VERSION, make_instance, wait_ready
from odoo_devstack.operator_setup import DEDICATED_TOLERATION
from odoo_devstack.processes import ManagedProcess

DEDICATED_SERVERS = {"database": {"serverRef": "dedicated"}, "redis": {"serverRef": "dedicated"}}
# Admission served by `odoo-operator webhook`, a process of its own, as the chart installs it.
ADMISSION_PROCESS = True


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _refusal(call: Callable[[], Any]) -> tuple[int, str]:
    """The HTTP status and message with which the apiserver refuses ``call``."""
    with pytest.raises(ApiException) as refused:
        call()
    return refused.value.status, str(json.loads(refused.value.body)["message"])


@pytest.fixture(scope="module")
def custom(k8s: client.ApiClient, operator: ManagedProcess) -> client.CustomObjectsApi:
    """The custom objects API, once the apiserver consults the operator's webhook.

    The operator has pointed the webhook configuration at itself when the fixture
    returns; the apiserver picks that up from a watch, a moment later.
    """
    api = client.CustomObjectsApi(k8s)
    probe = make_instance(_unique("probe"), version="16.0")  # refused by the webhook only
    deadline = time.monotonic() + 30
    while True:
        try:
            api.create_cluster_custom_object(GROUP, VERSION, PLURAL, probe, dry_run="All")
        except ApiException as exc:
            if "denied the request" in str(exc.body):
                return api
        assert time.monotonic() < deadline, f"the webhook never answered\n{operator.log_tail()}"
        time.sleep(0.2)


def test_a_host_served_by_another_instance_is_refused(
    custom: client.CustomObjectsApi, operator: ManagedProcess
) -> None:
    owner = _unique("owner")
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, make_instance(owner))
    try:
        host = f"{owner}.odoo.example.com"
        intruder = make_instance(_unique("intruder"), hosts=[host])
        status, message = _refusal(
            lambda: custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, intruder)
        )
        assert status == 422
        assert f"spec.hosts[0] {host} is already served by OdooInstance {owner}" in message
        # The owner itself keeps its host through a change of its spec.
        custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, owner, {"spec": {"workers": 3}})
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, owner)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"hosts": ["shop.example.org"]},
            "spec.hosts[0] shop.example.org is outside the allowed domains (example.com)",
        ),
        (
            {"database": {"serverRef": "nowhere"}},
            "spec.database.serverRef nowhere is not a PostgreSQL server registered",
        ),
        (
            {"redis": {"serverRef": "nowhere"}},
            "spec.redis.serverRef nowhere is not a Redis server registered",
        ),
        (
            {"tenancy": "dedicated"},
            "spec.database.serverRef main is a shared PostgreSQL server, "
            "but spec.tenancy is dedicated",
        ),
        ({"version": "16.0"}, "spec.version 16.0 has no image in the operator's version map"),
    ],
    ids=["foreign-domain", "unknown-database", "unknown-redis", "dedicated-on-shared", "no-image"],
)
def test_an_instance_the_operator_cannot_serve_is_refused(
    custom: client.CustomObjectsApi, change: dict[str, Any], message: str
) -> None:
    name = _unique("refused")
    status, answer = _refusal(
        lambda: custom.create_cluster_custom_object(
            GROUP, VERSION, PLURAL, make_instance(name, **change)
        )
    )
    assert status == 422
    assert message in answer
    with pytest.raises(ApiException) as missing:
        custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    assert missing.value.status == 404


def test_a_version_downgrade_is_refused(custom: client.CustomObjectsApi) -> None:
    name = _unique("downgrade")
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, make_instance(name))
    try:
        status, message = _refusal(
            lambda: custom.patch_cluster_custom_object(
                GROUP, VERSION, PLURAL, name, {"spec": {"version": "17.0"}}
            )
        )
        assert status == 422
        assert "spec.version cannot go down from 18.0 to 17.0" in message
        stored = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        assert stored["spec"]["version"] == "18.0"
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def test_a_dedicated_tenant_on_dedicated_servers_runs_on_the_dedicated_pool(
    k8s: client.ApiClient, custom: client.CustomObjectsApi, operator: ManagedProcess
) -> None:
    name = _unique("dedicated")
    body = make_instance(name, tenancy="dedicated", **DEDICATED_SERVERS)
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    try:
        wait_ready(custom, name, operator)
        pods = (
            client.CoreV1Api(k8s)
            .list_namespaced_pod(f"odoo-{name}", label_selector="app.kubernetes.io/component=web")
            .items
        )
        assert pods
        for pod in pods:
            tolerations = [
                {"key": t.key, "operator": t.operator, "effect": t.effect}
                for t in pod.spec.tolerations or []
            ]
            assert DEDICATED_TOLERATION in tolerations
            # The local config names no dedicated node label (see operator_setup).
            assert not pod.spec.node_selector
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


@pytest.mark.parametrize(
    ("backup", "message"),
    [
        ({"schedule": "every night"}, "spec.backup.schedule"),
        ({"timeZone": "Mars/Olympus"}, "spec.backup.schedule"),
        ({"storeRef": "nowhere"}, "spec.backup.storeRef"),
        ({"rpo": "0h"}, "spec.backup.rpo"),
    ],
    ids=["schedule", "time-zone", "store", "zero-rpo"],
)
def test_a_backup_policy_the_operator_cannot_follow_is_refused(
    k8s: client.ApiClient, operator: ManagedProcess, backup: dict[str, str], message: str
) -> None:
    custom = client.CustomObjectsApi(k8s)
    body = make_instance(f"adm-{uuid.uuid4().hex[:6]}", backup=backup)
    with pytest.raises(ApiException) as refused:
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    assert refused.value.status == 422
    assert message in json.loads(refused.value.body)["message"]


def test_admission_is_answered_by_its_own_process_not_the_operator(
    custom: client.CustomObjectsApi,
    operator: ManagedProcess,
    admission_webhook: ManagedProcess | None,
) -> None:
    assert admission_webhook is not None, "this module runs admission in a process of its own"
    name = _unique("apart")
    status, _ = _refusal(
        lambda: custom.create_cluster_custom_object(
            GROUP, VERSION, PLURAL, make_instance(name, version="16.0")
        )
    )
    assert status == 422
    answered = admission_webhook.log_path.read_text(errors="replace")
    assert f"odooinstance/{name} handler-failed handler=validate-instance" in answered
    operator_log = operator.log_path.read_text(errors="replace")
    assert "admission is served by processes of its own" in operator_log
    assert "validate-instance" not in operator_log


def test_of_two_instances_created_at_once_with_one_host_only_one_is_admitted(
    custom: client.CustomObjectsApi,
) -> None:
    host = f"{_unique('race')}.odoo.example.com"
    names = [_unique("race") for _ in range(2)]

    def create(name: str) -> int:
        try:
            custom.create_cluster_custom_object(
                GROUP, VERSION, PLURAL, make_instance(name, hosts=[host])
            )
        except ApiException as refused:
            return int(refused.status)
        return 201

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(create, names))
    try:
        assert sorted(answers) == [201, 422], answers
    finally:
        for name, answer in zip(names, answers, strict=True):
            if answer == 201:
                custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
