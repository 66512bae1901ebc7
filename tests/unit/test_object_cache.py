"""The watch cache's bookkeeping: it answers only for complete kinds and its own objects, and
an older version never replaces a newer one."""

from __future__ import annotations

import asyncio
from typing import Any

from odoo_operator.backends.kube_cache import ObjectCache, settled
from odoo_operator.model.names import FIELD_MANAGER, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL


def _deployment(version: str, replicas: int, labels: dict[str, str] | None = None) -> Any:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "odoo-web",
            "namespace": "odoo-acme",
            "resourceVersion": version,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY} if labels is None else labels,
        },
        "spec": {"replicas": replicas},
    }


def _replicas(cache: ObjectCache) -> Any:
    found = cache.lookup("apps/v1", "Deployment", "odoo-web", "odoo-acme")
    return None if found is None else found["spec"]["replicas"]


def test_a_kind_not_listed_yet_is_never_answered() -> None:
    cache = ObjectCache()
    cache.observe(_deployment("5", 2))
    assert _replicas(cache) is None
    cache.replace("apps/v1", "Deployment", [_deployment("5", 2)])
    assert _replicas(cache) == 2
    cache.forget_kind("apps/v1", "Deployment")  # its watch broke
    assert _replicas(cache) is None


def test_an_older_event_does_not_replace_what_a_write_answered() -> None:
    cache = ObjectCache()
    cache.replace("apps/v1", "Deployment", [_deployment("5", 1)])
    cache.observe(_deployment("9", 3))  # the answer to our write
    cache.apply_event("apps/v1", "Deployment", "MODIFIED", _deployment("7", 2))  # late event
    assert _replicas(cache) == 3
    cache.apply_event("apps/v1", "Deployment", "MODIFIED", _deployment("11", 4))
    assert _replicas(cache) == 4
    cache.apply_event("apps/v1", "Deployment", "DELETED", _deployment("12", 4))
    assert _replicas(cache) is None


def test_a_write_answer_without_the_operators_label_is_not_kept() -> None:
    cache = ObjectCache()
    cache.replace("apps/v1", "Deployment", [])
    cache.observe(_deployment("5", 2, labels={"team": "other"}))
    assert _replicas(cache) is None


def test_a_relist_drops_what_is_gone() -> None:
    cache = ObjectCache()
    cache.replace("apps/v1", "Deployment", [_deployment("5", 1)])
    cache.replace("apps/v1", "Deployment", [])
    assert _replicas(cache) is None


def test_managed_fields_are_not_kept() -> None:
    cache = ObjectCache()
    listed = _deployment("5", 1)
    listed["metadata"]["managedFields"] = [{"manager": "odoo-operator", "fieldsV1": {}}]
    cache.replace("apps/v1", "Deployment", [listed])
    held = cache.lookup("apps/v1", "Deployment", "odoo-web", "odoo-acme")
    assert held is not None
    assert "managedFields" not in held["metadata"]
    assert held["metadata"]["resourceVersion"] == "5"


def _secret(name: str, version: str) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": "odoo-acme",
            "resourceVersion": version,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        },
        "data": {"k": "dg=="},
    }


def test_a_kind_cached_by_name_answers_for_that_name_only() -> None:
    cache = ObjectCache()
    cache.replace("v1", "Secret", [_secret("odoo-credentials", "3")], name="odoo-credentials")
    cache.observe(_secret("team-token", "4"))  # a write's answer, of a name not watched
    assert cache.lookup("v1", "Secret", "odoo-credentials", "odoo-acme") is not None
    assert cache.lookup("v1", "Secret", "team-token", "odoo-acme") is None
    # A fresh list of one name leaves the other names' objects alone.
    cache.replace("v1", "Secret", [_secret("odoo-config", "5")], name="odoo-config")
    assert cache.lookup("v1", "Secret", "odoo-credentials", "odoo-acme") is not None
    cache.forget_kind("v1", "Secret", "odoo-credentials")  # that name's watch broke
    assert cache.lookup("v1", "Secret", "odoo-credentials", "odoo-acme") is None
    assert cache.lookup("v1", "Secret", "odoo-config", "odoo-acme") is not None


def _tenant_deployment(
    version: str,
    instance: str,
    writers: list[dict[str, str]],
    status: dict[str, Any] | None = None,
) -> Any:
    deployment = _deployment(version, 1)
    deployment["metadata"]["labels"][INSTANCE_LABEL] = instance
    deployment["metadata"]["generation"] = 1
    deployment["metadata"]["managedFields"] = writers
    deployment["status"] = status or {}
    return deployment


def _writer(manager: str, second: int, subresource: str | None = None) -> dict[str, str]:
    entry = {"manager": manager, "time": f"2026-12-01T10:00:{second:02d}Z"}
    if subresource:
        entry["subresource"] = subresource
    return entry


APPLIED = _writer(FIELD_MANAGER, 0)
STARTING = {"observedGeneration": 1, "updatedReplicas": 1, "replicas": 1}
AVAILABLE = {**STARTING, "availableReplicas": 1}


async def test_a_pass_waiting_for_its_tenant_is_woken_by_others_changes_only() -> None:
    cache = ObjectCache()
    cache.replace("apps/v1", "Deployment", [_tenant_deployment("5", "acme", [APPLIED])])
    waiting = asyncio.create_task(cache.wait_for_change("acme", 5.0))
    await asyncio.sleep(0)
    # The operator's own write, and another tenant's pods becoming available: asleep.
    ours = [_writer("kube-controller-manager", 1, "status"), _writer(FIELD_MANAGER, 9)]
    cache.apply_event("apps/v1", "Deployment", "MODIFIED", _tenant_deployment("6", "acme", ours))
    theirs = [APPLIED, _writer("kube-controller-manager", 5, "status")]
    globex = _tenant_deployment("7", "globex", theirs, AVAILABLE)
    cache.apply_event("apps/v1", "Deployment", "MODIFIED", globex)
    await asyncio.sleep(0)
    assert not waiting.done()
    # Its controller reports a pod created, not ready yet: still asleep.
    starting = _tenant_deployment("8", "acme", theirs, STARTING)
    cache.apply_event("apps/v1", "Deployment", "MODIFIED", starting)
    await asyncio.sleep(0)
    assert not waiting.done()
    # Then the pod available: awake at once.
    available = _tenant_deployment("9", "acme", theirs, AVAILABLE)
    cache.apply_event("apps/v1", "Deployment", "MODIFIED", available)
    assert await asyncio.wait_for(waiting, 1.0) is True

    # A drift repair waits for edits by others only: a status update leaves it asleep...
    waiting = asyncio.create_task(cache.wait_for_change("acme", 5.0, statuses=False))
    await asyncio.sleep(0)
    reported = [APPLIED, _writer("kube-controller-manager", 30, "status")]
    cache.apply_event(
        "apps/v1", "Deployment", "MODIFIED", _tenant_deployment("10", "acme", reported, AVAILABLE)
    )
    await asyncio.sleep(0)
    assert not waiting.done()
    # ...a scale by hand wakes it (the API server records it without a time).
    scaled = [*reported, {"manager": "kubectl", "subresource": "scale"}]
    cache.apply_event(
        "apps/v1", "Deployment", "MODIFIED", _tenant_deployment("11", "acme", scaled, AVAILABLE)
    )
    assert await asyncio.wait_for(waiting, 1.0) is True

    # So does a deletion; nothing at all: the wait ends after its timeout, saying so.
    waiting = asyncio.create_task(cache.wait_for_change("acme", 5.0, statuses=False))
    await asyncio.sleep(0)
    cache.apply_event("apps/v1", "Deployment", "DELETED", _tenant_deployment("12", "acme", scaled))
    assert await asyncio.wait_for(waiting, 1.0) is True
    assert await cache.wait_for_change("acme", 0.01) is False


def test_settled_means_what_a_pass_waits_for() -> None:
    deployment = _tenant_deployment("1", "acme", [APPLIED], STARTING)
    assert not settled(deployment, "Deployment")
    assert settled(_tenant_deployment("2", "acme", [APPLIED], AVAILABLE), "Deployment")
    job = {"status": {"active": 1}}
    assert not settled(job, "Job")
    assert settled({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, "Job")
    assert not settled({"status": {"phase": "Pending"}}, "PersistentVolumeClaim")
    assert settled({"status": {"phase": "Bound"}}, "PersistentVolumeClaim")
    # A quota's usage is recounted at every pod: no pass waits for it.
    assert not settled({"status": {"used": {"pods": "3"}}}, "ResourceQuota")


def test_a_kind_listed_whole_also_says_what_is_absent() -> None:
    cache = ObjectCache()
    foreign = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    assert not cache.knows_absent("v1", "Namespace", "odoo-acme", None)  # not listed yet
    cache.replace("v1", "Namespace", [foreign], complete=True)
    assert cache.lookup("v1", "Namespace", "team-a", None) is not None  # not the operator's
    assert cache.knows_absent("v1", "Namespace", "odoo-acme", None)
    assert not cache.knows_absent("v1", "Namespace", "team-a", None)
    # A kind kept by label never claims an absence: a foreign object would look absent.
    cache.replace("apps/v1", "Deployment", [])
    assert not cache.knows_absent("apps/v1", "Deployment", "odoo-web", "odoo-acme")
    cache.forget_kind("v1", "Namespace")  # its watch broke: back to asking the API server
    assert not cache.knows_absent("v1", "Namespace", "odoo-acme", None)


async def test_an_edit_between_two_waits_of_a_repair_is_not_missed() -> None:
    cache = ObjectCache()
    cache.replace("apps/v1", "Deployment", [_tenant_deployment("5", "acme", [APPLIED])])
    # Edited by hand while no repair waits (before the first, during one, between two).
    edited = [APPLIED, _writer("kubectl-edit", 20)]
    cache.apply_event("apps/v1", "Deployment", "MODIFIED", _tenant_deployment("6", "acme", edited))
    assert await cache.wait_for_change("acme", 5.0, statuses=False) is True  # at once
    assert await cache.wait_for_change("acme", 0.01, statuses=False) is False  # once only
    # A tenant whose namespace is gone is forgotten: nothing of it is left to repair.
    cache.apply_event("apps/v1", "Deployment", "DELETED", _tenant_deployment("7", "acme", edited))
    namespace = {"metadata": {"name": "odoo-acme", "labels": {INSTANCE_LABEL: "acme"}}}
    cache.apply_event("v1", "Namespace", "DELETED", namespace)
    assert await cache.wait_for_change("acme", 0.01, statuses=False) is False
