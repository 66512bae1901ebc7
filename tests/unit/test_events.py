"""The operator's Events are found by ``kubectl describe``: an involvedObject without a
namespace, stored in one namespace, messages cut to what the API server accepts."""

from __future__ import annotations

import datetime

import pytest

from odoo_operator.builders.events import EVENT_NAMESPACE, MESSAGE_LIMIT, build_event

NOW = datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.UTC)
INSTANCE = {
    "apiVersion": "odoo.tenantops.io/v1alpha1",
    "kind": "OdooInstance",
    "metadata": {"name": "acme", "uid": "u-1", "resourceVersion": "7"},
}


def test_a_cluster_scoped_objects_event_has_no_namespace_in_its_involved_object() -> None:
    event = build_event(INSTANCE, "Normal", "Ready", "the tenant is ready", NOW, "pod-1")
    assert event["metadata"] == {"generateName": "acme.", "namespace": EVENT_NAMESPACE}
    assert event["involvedObject"] == {
        "apiVersion": "odoo.tenantops.io/v1alpha1",
        "kind": "OdooInstance",
        "name": "acme",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert (event["type"], event["reason"], event["source"]) == (
        "Normal",
        "Ready",
        {"component": "odoo-operator"},
    )
    assert event["lastTimestamp"] == "2026-11-30T08:00:00Z"


def test_a_long_message_is_cut_in_the_middle_to_what_the_api_server_takes() -> None:
    message = "start " + "x" * 5000 + " end"
    cut = build_event(INSTANCE, "Warning", "Stalled", message, NOW, "pod-1")["message"]
    assert len(cut) <= MESSAGE_LIMIT
    assert cut.startswith("start ")
    assert cut.endswith(" end")


def test_an_event_type_is_normal_or_warning() -> None:
    with pytest.raises(ValueError, match="Normal or Warning"):
        build_event(INSTANCE, "Error", "Broken", "no", NOW, "pod-1")
