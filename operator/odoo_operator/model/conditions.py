"""Status conditions in the Kubernetes API convention (kstatus-compatible)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    """One condition to publish; the transition time is decided by :func:`merge_condition`."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_condition(
    existing: list[dict[str, Any]],
    condition: Condition,
    observed_generation: int,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Return ``existing`` with ``condition`` set.

    ``lastTransitionTime`` moves only when the status changes, so that SREs can
    read how long a tenant has been in its state; other conditions are kept.
    """
    previous = next((c for c in existing if c.get("type") == condition.type), None)
    transition = (
        previous["lastTransitionTime"]
        if previous is not None
        and previous.get("status") == condition.status
        and "lastTransitionTime" in previous
        else (now or _now())
    )
    updated = {
        "type": condition.type,
        "status": condition.status,
        "reason": condition.reason,
        "message": condition.message,
        "observedGeneration": observed_generation,
        "lastTransitionTime": transition,
    }
    others = [c for c in existing if c.get("type") != condition.type]
    return sorted([*others, updated], key=lambda c: str(c["type"]))


# The reason of the Reconciling condition the CRDs give an object without status (a schema
# default, applied when it is read): no operator has written anything yet. Not progress.
AWAITING_OPERATOR = "AwaitingOperator"
