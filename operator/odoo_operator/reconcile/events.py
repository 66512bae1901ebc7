"""Posting the operator's Events (builders/events.py says why not Kopf's)."""

from __future__ import annotations

import datetime
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from ..builders.events import build_event
from ..model.shards import instance_of
from . import journal
from .clients import Clients

logger = logging.getLogger(__name__)
# The pod's name in a cluster (the chart sets POD_NAME), the host's otherwise.
_REPORTING_INSTANCE = os.environ.get("POD_NAME") or socket.gethostname()


async def record_event(
    clients: Clients,
    body: Mapping[str, Any],
    type_: str,
    reason: str,
    message: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Post an Event about ``body`` that ``kubectl describe`` shows, and write it to the
    tenant's operations journal (Events expire after an hour; the journal does not); a
    failure to post is logged, never raised: Events help, they must not fail a handler.
    ``details`` are figures the journal keeps beside the message (a drill's RTO...)."""
    await journal.record(
        clients,
        instance_of(body),
        reason,
        {
            "kind": body.get("kind"),
            "name": (body.get("metadata") or {}).get("name"),
            "type": type_,
            "message": message,
            **(details or {}),
        },
    )
    event = build_event(
        body, type_, reason, message, datetime.datetime.now(datetime.UTC), _REPORTING_INSTANCE
    )
    try:
        await clients.kube.create(event)
    except Exception as error:  # noqa: BLE001 - reported, never fatal
        logger.warning(
            "could not post Event %s about %s/%s: %s",
            reason,
            body.get("kind"),
            (body.get("metadata") or {}).get("name"),
            error,
        )
