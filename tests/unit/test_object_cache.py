"""The watch cache's bookkeeping: it answers only for complete kinds and its own objects, and
an older version never replaces a newer one."""

from __future__ import annotations

from typing import Any

from odoo_operator.backends.kube_cache import ObjectCache
from odoo_operator.model.names import MANAGED_BY, MANAGED_BY_LABEL


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
