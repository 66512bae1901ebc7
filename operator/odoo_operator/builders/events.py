"""Events about the operator's objects, in the shape ``kubectl describe`` finds them.

OdooInstance, OdooBackup and OdooRestore are cluster-scoped, but Events are namespaced.
``kubectl describe`` of a cluster-scoped object lists the Events, in any namespace, whose
``involvedObject`` names its kind, name and uid **with an empty namespace**. Kopf's own
posting fills that namespace with the one the Event is stored in (``default``), so
``describe`` showed ``Events: <none>``: the operator posts its Events itself
(:func:`build_event`), stored in :data:`EVENT_NAMESPACE` with an involvedObject that has no
namespace.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

EVENT_NAMESPACE = "default"
REPORTING_COMPONENT = "odoo-operator"
# The API server refuses an Event message longer than this (1 KiB).
MESSAGE_LIMIT = 1024
_CUT = " [...] "


def build_event(
    involved: Mapping[str, Any],
    type_: str,
    reason: str,
    message: str,
    now: datetime.datetime,
    reporting_instance: str,
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (a cluster-scoped object's body): ``type_``
    ``Normal`` or ``Warning``, ``reason`` in CamelCase, ``message`` cut to fit."""
    if type_ not in ("Normal", "Warning"):
        raise ValueError(f"an Event's type is Normal or Warning, not {type_!r}")
    meta = involved["metadata"]
    if len(message) > MESSAGE_LIMIT:
        half = (MESSAGE_LIMIT - len(_CUT)) // 2
        message = message[:half] + _CUT + message[-half:]
    stamp = now.astimezone(datetime.UTC)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{meta['name']}.",
            "namespace": EVENT_NAMESPACE,
        },
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": REPORTING_COMPONENT},
        "reportingComponent": REPORTING_COMPONENT,
        "reportingInstance": reporting_instance,
        "action": reason,
        "count": 1,
        "firstTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventTime": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
