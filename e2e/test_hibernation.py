"""Hibernation of a non-production tenant: asleep outside its windows, woken on request.

A development tenant whose only awake window is hours away sleeps from its first pass: web
and cron at zero, phase ``Hibernating``, ``Ready=False`` for that reason, and its status
says until when. The wake annotation brings it back at once and for as long as it says;
taking the annotation away puts it back to sleep. A production tenant cannot hibernate:
admission refuses it by field.
"""

from __future__ import annotations

import datetime
from typing import Any

from kubernetes import client

from e2e.tenants import (
    GROUP,
    PLURAL,
    VERSION,
    delete_quietly,
    eventually,
    make_instance,
    refusal,
    wait_phase,
    wait_ready,
)
from odoo_devstack.processes import ManagedProcess

WAKE = "odoo.tenantops.io/wake-until"


def _window_hours_away() -> dict[str, Any]:
    """An awake window, every day, that does not contain the present hour (UTC)."""
    hour = datetime.datetime.now(datetime.UTC).hour
    start = (hour + 6) % 24
    return {"start": f"{start:02d}:00", "end": f"{start:02d}:30"}


def _replicas(k8s: client.ApiClient, namespace: str) -> dict[str, int]:
    apps = client.AppsV1Api(k8s)
    return {
        component: int(
            apps.read_namespaced_deployment(f"odoo-{component}", namespace).spec.replicas
        )
        for component in ("web", "cron")
    }


def _annotate(custom: client.CustomObjectsApi, name: str, value: str | None) -> None:
    custom.patch_cluster_custom_object(
        GROUP, VERSION, PLURAL, name, {"metadata": {"annotations": {WAKE: value}}}
    )


def test_a_development_tenant_sleeps_outside_its_window_and_wakes_on_request(
    k8s: client.ApiClient, operator: ManagedProcess
) -> None:
    custom = client.CustomObjectsApi(k8s)
    name, namespace = "hib-dev", "odoo-hib-dev"
    hibernation = {"timeZone": "UTC", "awake": [_window_hours_away()]}
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        PLURAL,
        make_instance(name, environment="development", hibernation=hibernation),
    )
    try:
        asleep = wait_phase(custom, name, operator, "Hibernating")
        status = asleep["status"]
        conditions = {c["type"]: c for c in status["conditions"]}
        assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
            "False",
            "Hibernating",
        ), conditions["Ready"]
        assert conditions["Reconciling"]["status"] == "False", conditions["Reconciling"]
        assert status["hibernation"]["state"] == "Asleep", status["hibernation"]
        until = datetime.datetime.fromisoformat(status["hibernation"]["until"])
        now = datetime.datetime.now(datetime.UTC)
        assert now < until <= now + datetime.timedelta(hours=24), status["hibernation"]
        assert (
            f"hibernating until {status['hibernation']['until']}"
            in (conditions["WorkloadReady"]["message"])
        )
        assert _replicas(k8s, namespace) == {"web": 0, "cron": 0}

        # Woken for an hour: web and cron come back at once, and the status says why.
        wake_until = (now + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        _annotate(custom, name, wake_until)
        awake = wait_ready(custom, name, operator)
        assert awake["status"]["hibernation"] == {
            "state": "Awake",
            "until": wake_until,
            "woken": True,
        }, awake["status"]["hibernation"]
        assert _replicas(k8s, namespace) == {"web": 1, "cron": 1}

        # Without the annotation it sleeps again.
        _annotate(custom, name, None)
        wait_phase(custom, name, operator, "Hibernating")
        eventually(lambda: _replicas(k8s, namespace) == {"web": 0, "cron": 0}, "scaled to zero")
    finally:
        delete_quietly(custom, PLURAL, name)


def test_a_production_tenant_cannot_hibernate_nor_take_a_wake_time_it_cannot_read(
    k8s: client.ApiClient, operator: ManagedProcess
) -> None:
    custom = client.CustomObjectsApi(k8s)
    hibernation = {"awake": [{"start": "07:00", "end": "19:00"}]}
    status, message = refusal(
        lambda: custom.create_cluster_custom_object(
            GROUP, VERSION, PLURAL, make_instance("hib-prod", hibernation=hibernation)
        )
    )
    assert status == 422, message
    assert "spec.hibernation: only staging and development tenants hibernate" in message
    body = make_instance("hib-late", environment="staging", hibernation=hibernation)
    body["metadata"]["annotations"] = {WAKE: "tomorrow morning"}
    status, message = refusal(
        lambda: custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    )
    assert status == 422, message
    assert f"metadata.annotations.{WAKE}: 'tomorrow morning' is not an RFC 3339 time" in message
