"""What one reconcile pass found about a tenant: conditions, phase, status fields, writes.

It lives in the model because the reconciler produces it and the metrics read it; neither
should import the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .conditions import Condition

# Phases in which a tenant is held at zero pods on purpose (spec.suspend; a restore or an
# upgrade; outside the awake windows of spec.hibernation): not serving, so never Ready, but
# nothing is wrong or in progress either.
HELD_PHASES = frozenset({"Suspended", "Maintenance", "Hibernating"})


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

    @property
    def held(self) -> bool:
        """Whether the tenant is held at zero pods on purpose (:data:`HELD_PHASES`)."""
        return self.phase in HELD_PHASES
