"""Handlers for OdooInstance events."""

from __future__ import annotations

from typing import Any

import kopf

from ..model.conditions import Condition, merge_condition
from ..model.names import GROUP, INSTANCE_PLURAL, VERSION


@kopf.on.resume(GROUP, VERSION, INSTANCE_PLURAL)
@kopf.on.create(GROUP, VERSION, INSTANCE_PLURAL)
@kopf.on.update(GROUP, VERSION, INSTANCE_PLURAL, field="spec")
async def acknowledge_instance(
    meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, **_: Any
) -> None:
    """Publish that the instance was seen: ``observedGeneration`` and ``Ready=Unknown``.

    kstatus readers (Argo CD, Flux, ``kubectl wait``) need an answer on first sight;
    the tenant reconciler refines it as each part of the tenant is provisioned.
    """
    generation = int(meta.get("generation", 0))
    conditions: list[dict[str, Any]] = list(status.get("conditions", []))
    for condition in (
        Condition("Ready", "Unknown", "Provisioning", "The tenant is being provisioned."),
        Condition("Reconciling", "True", "Provisioning", "The tenant is being provisioned."),
    ):
        conditions = merge_condition(conditions, condition, generation)
    patch.status["observedGeneration"] = generation
    patch.status["phase"] = "Provisioning"
    patch.status["conditions"] = conditions
