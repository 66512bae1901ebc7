"""Counts OdooRestores as they finish, from the watch stream (no API call, no write).

A restore counts when this process saw it unfinished and then finished, so an operator
restart does not count the old ones again.
"""

from __future__ import annotations

from typing import Any

import kopf

from .. import metrics
from ..model.backup import FINISHED, RESTORE_PLURAL, SUCCEEDED
from ..model.names import GROUP, VERSION

_UNFINISHED: set[str] = set()  # restores seen before they finished


def restore_seen(event_type: str | None, body: kopf.Body) -> None:
    """Follow one watch event of an OdooRestore."""
    name = str(body.get("metadata", {}).get("name"))
    if event_type == "DELETED":
        _UNFINISHED.discard(name)
        return
    phase = (body.get("status") or {}).get("phase")
    if phase not in FINISHED:
        _UNFINISHED.add(name)
    elif name in _UNFINISHED:
        _UNFINISHED.discard(name)
        metrics.record_restore("succeeded" if phase == SUCCEEDED else "failed")


@kopf.on.event(GROUP, VERSION, RESTORE_PLURAL)
async def count_finished_restores(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """Every watch event of an OdooRestore (ADDED, MODIFIED, DELETED)."""
    restore_seen(event.get("type"), body)
