"""Writing the operations journal (builders/journal.py says what an entry holds).

Every Event the operator posts about a tenant (its OdooInstance, OdooBackups, OdooRestores)
is also an entry of the tenant's journal, with the Event's reason as the action; the spec
generations applied (with a digest of the spec and the field manager that changed it), the
deletion and the refusals at admission are entries of their own. The journal lives in the
operator's default blob store (the one ``blobStores`` marks default), under
``journal/<instance>.jsonl``, as an append blob: appends only, each conditioned on the
length this process last saw, so two writers never interleave; a container with
immutability keeps even the operator from rewriting it. Deleting a tenant, or its backups,
never deletes its journal: the store's retention does.

A failed append is logged and the action goes on: evidence must not stop operations. The
log line names the tenant and the action, so a gap is visible.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from ..backends.blobstore import AppendConflict, BlobNotFound
from ..builders.journal import (
    GENESIS,
    HEAD_METADATA,
    entry_line,
    journal_blob_name,
    line_hash,
    tail,
)
from ..model.config import BlobStoreRef, ConfigError
from .clients import Clients

logger = logging.getLogger(__name__)
_ATTEMPTS = 3
# The most an entry may hold up what it records: a store that is down (a region outage, the
# very case backups are for) must not slow every Event and pass by the SDK's retries.
JOURNAL_TIMEOUT_SECONDS = 5.0


async def _head(clients: Clients, store: Any, instance: str) -> tuple[int, str, int]:
    cached = clients.journal_heads.get(instance)
    if cached is not None:
        return cached
    try:
        data = await store.read_bytes(journal_blob_name(instance))
    except BlobNotFound:
        return 0, GENESIS, 0
    seq, head = tail(data)
    return seq, head, len(data)


async def record(clients: Clients, instance: str, action: str, details: Mapping[str, Any]) -> None:
    """Append one entry to ``instance``'s journal; never raises."""
    try:
        ref = clients.config.blob_store(None)
    except ConfigError:
        return  # no blob store registered: no journal (docs/evidence.md)
    lock = clients.journal_locks.setdefault(instance, asyncio.Lock())
    try:
        async with asyncio.timeout(JOURNAL_TIMEOUT_SECONDS):
            await _append(clients, ref, lock, instance, action, details)
    except Exception as error:  # noqa: BLE001 - evidence must not stop operations
        clients.journal_heads.pop(instance, None)
        logger.warning(
            "could not write %s to the operations journal of %s: %s",
            action,
            instance,
            error or type(error).__name__,
            extra={"instance": instance, "reason": type(error).__name__},
        )


async def _append(
    clients: Clients,
    ref: BlobStoreRef,
    lock: asyncio.Lock,
    instance: str,
    action: str,
    details: Mapping[str, Any],
) -> None:
    store = await clients.blob(ref)
    async with lock:
        for _ in range(_ATTEMPTS):
            seq, head, length = await _head(clients, store, instance)
            line = entry_line(
                seq + 1,
                datetime.datetime.now(datetime.UTC),
                instance,
                action,
                details,
                head,
            )
            name = journal_blob_name(instance)
            try:
                await store.append(name, line, length)
            except AppendConflict:
                clients.journal_heads.pop(instance, None)  # another writer: read again
                continue
            new_head = (seq + 1, line_hash(line), length + len(line))
            clients.journal_heads[instance] = new_head
            await store.set_metadata(name, {HEAD_METADATA: new_head[1]})
            return
        raise RuntimeError(f"the journal kept growing during {_ATTEMPTS} attempts")


def spec_digest(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the spec as canonical JSON: the same spec, the same digest."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def spec_manager(body: Mapping[str, Any]) -> str | None:
    """The field manager that last changed the spec (``kubectl``, ``argocd-controller``,
    ``kustomize-controller``...), from the object's managedFields."""
    entries = [
        entry
        for entry in (body.get("metadata") or {}).get("managedFields") or []
        if "f:spec" in (entry.get("fieldsV1") or {})
    ]
    if not entries:
        return None
    latest = max(entries, key=lambda entry: str(entry.get("time") or ""))
    return str(latest.get("manager") or "") or None
