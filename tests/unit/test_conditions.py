"""Conditions follow the Kubernetes API conventions that kstatus readers rely on."""

from __future__ import annotations

from odoo_operator.model.conditions import Condition, merge_condition

READY = Condition("Ready", "False", "DatabaseUnavailable", "server main unreachable")


def test_a_new_condition_gets_a_transition_time_and_the_generation() -> None:
    merged = merge_condition([], READY, observed_generation=3, now="2026-01-01T00:00:00Z")
    assert merged == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "DatabaseUnavailable",
            "message": "server main unreachable",
            "observedGeneration": 3,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]


def test_the_transition_time_stays_while_the_status_is_unchanged() -> None:
    first = merge_condition([], READY, 1, now="2026-01-01T00:00:00Z")
    again = merge_condition(
        first, Condition("Ready", "False", "Other", "new message"), 2, now="2026-01-02T00:00:00Z"
    )
    assert again[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert again[0]["reason"] == "Other"
    assert again[0]["observedGeneration"] == 2


def test_the_transition_time_moves_when_the_status_changes() -> None:
    first = merge_condition([], READY, 1, now="2026-01-01T00:00:00Z")
    flipped = merge_condition(
        first, Condition("Ready", "True", "Provisioned", "ok"), 1, now="2026-01-02T00:00:00Z"
    )
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T00:00:00Z"


def test_other_conditions_are_kept_in_a_stable_order() -> None:
    merged = merge_condition([], READY, 1)
    merged = merge_condition(merged, Condition("DatabaseReady", "True", "Ready", ""), 1)
    assert [c["type"] for c in merged] == ["DatabaseReady", "Ready"]
