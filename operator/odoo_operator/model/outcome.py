"""What one reconcile pass found about a tenant: conditions, phase, status fields, writes.

It lives in the model because the reconciler produces it and the metrics read it; neither
should import the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .conditions import Condition


@dataclass
class Outcome:
    """What a reconcile found: conditions to publish and status fields."""

    conditions: list[Condition] = field(default_factory=list)
    phase: str = "Provisioning"
    fields: dict[str, Any] = field(default_factory=dict)
    writes: int = 0

    def set(self, type_: str, ok: bool, reason: str, message: str) -> None:
        """Record a part's condition."""
        self.conditions.append(Condition(type_, "True" if ok else "False", reason, message))
