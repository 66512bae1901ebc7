"""Backups in a second store: copying each one there, and reading from it when the primary
store is unreachable.

An instance whose ``spec.backup.secondaryStoreRef`` names a second registered store gets a
copy of every backup there, checked part by part against the manifest's SHA-256
(:func:`~odoo_operator.engine.copy.copy_backup`). The OdooBackup records the copy in
``status.copies``; a failed copy is retried (the store may be down for hours) until it
succeeds. Restores, clones and verifications that cannot reach the store holding a backup read
its checked copy instead, and say so; a backup whose store is unreachable is written to the
other store of the pair, and later copied back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..backends.blobstore import BlobStore, BlobStoreUnavailable
from ..builders.backup_layout import ManifestError
from ..engine import BackupNotFound, read_manifest
from ..engine.backup import now
from ..engine.copy import CopyFailed, copy_backup
from ..model.backup import SUCCEEDED, BackupPolicy
from ..model.config import BlobStoreRef, ConfigError, OperatorConfig
from .clients import Clients

logger = logging.getLogger(__name__)

COPY_SUCCEEDED, COPY_FAILED = "Succeeded", "Failed"


def copy_target(
    config: OperatorConfig, policy: BackupPolicy | None, stored_in: str | None
) -> str | None:
    """The store a backup held in ``stored_in`` is copied to: the other store of the
    instance's pair, or None without a secondary store."""
    if policy is None or policy.secondary_store is None:
        return None
    primary: str = config.blob_store(policy.store).name
    if stored_in == policy.secondary_store:
        return primary  # written to the secondary while the primary was down: copy it back
    return policy.secondary_store


def copy_entry(status: Mapping[str, Any], store: str) -> dict[str, Any] | None:
    """The backup's copy record for ``store``, if any."""
    return next((dict(c) for c in status.get("copies") or [] if c.get("store") == store), None)


def copy_pending(body: Mapping[str, Any]) -> bool:
    """Whether a succeeded backup still lacks its checked copy."""
    status = body.get("status") or {}
    target = status.get("secondaryStore")
    if status.get("phase") != SUCCEEDED or not target:
        return False
    entry = copy_entry(status, str(target))
    return entry is None or entry.get("phase") != COPY_SUCCEEDED


async def copy_to_secondary(clients: Clients, body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Copy the backup to its ``status.secondaryStore`` and check the copy; return the
    backup's ``status.copies`` with this attempt's outcome."""
    status = body.get("status") or {}
    target_name = str(status["secondaryStore"])
    instance = str(body["spec"]["instance"])
    backup_id = str(status["backupId"])
    entry = copy_entry(status, target_name) or {"store": target_name}
    entry["attempts"] = int(entry.get("attempts") or 0) + 1
    try:
        target_ref = clients.config.blob_store(target_name)
        source = await clients.blob(clients.config.blob_store(status.get("store")))
        target = await clients.blob(target_ref)
        # Both must answer now: a region that is down fails the attempt in seconds, not
        # after the SDK's retries, and the next attempt comes soon enough.
        await source.check_reachable()
        await target.check_reachable()
        manifest = await copy_backup(source, target, instance, backup_id)
    except (CopyFailed, BlobStoreUnavailable, BackupNotFound, ManifestError, ConfigError) as exc:
        entry.update(phase=COPY_FAILED, message=f"{type(exc).__name__}: {exc}")
        logger.warning(
            "copy of backup %s of %s to %s failed: %s", backup_id, instance, target_name, exc
        )
    else:
        size = sum(part.size for part in manifest.parts.values())
        entry.update(
            phase=COPY_SUCCEEDED,
            copiedAt=now().strftime("%Y-%m-%dT%H:%M:%SZ"),  # RFC 3339, as Kubernetes writes
            location=f"{target_ref.container}/{instance}/{backup_id}/",
            message=f"copied and checked: {size} bytes, every part's SHA-256 as in the manifest",
        )
    others = [dict(c) for c in status.get("copies") or [] if c.get("store") != target_name]
    return [*others, entry]


async def readable_store(
    clients: Clients, backup_status: Mapping[str, Any], instance: str
) -> tuple[BlobStore, BlobStoreRef, str | None]:
    """The store to read a backup from: the one holding it, or, when that one cannot be
    reached, the store holding its checked copy. Returns the store, its reference, and a
    note saying why the copy is read (None when the backup's own store answers).

    Raises :class:`BlobStoreUnavailable` when neither answers.
    """
    backup_id = str(backup_status["backupId"])
    primary_ref = clients.config.blob_store(backup_status.get("store"))
    try:
        primary = await clients.blob(primary_ref)
        await primary.check_reachable()
        await read_manifest(primary, instance, backup_id)
    except BlobStoreUnavailable as unreachable:
        copies = [c for c in backup_status.get("copies") or [] if c.get("phase") == COPY_SUCCEEDED]
        for copy in copies:
            ref = clients.config.blob_store(str(copy["store"]))
            try:
                store = await clients.blob(ref)
                await store.check_reachable()
                await read_manifest(store, instance, backup_id)
            except BlobStoreUnavailable:
                continue
            note = (
                f"read from the copy in store {ref.name}: store {primary_ref.name}, which holds "
                f"the backup, is unreachable ({unreachable})"
            )
            return store, ref, note
        raise
    return primary, primary_ref, None


async def writable_store(
    clients: Clients, policy: BackupPolicy
) -> tuple[BlobStore, BlobStoreRef, str | None]:
    """The store a new backup is written to: the instance's store, or, when that one cannot
    be reached, its secondary store. Returns the store, its reference, and a note saying why
    the secondary is written (None normally).

    Raises :class:`BlobStoreUnavailable` when neither answers.
    """
    primary_ref = clients.config.blob_store(policy.store)
    try:
        primary = await clients.blob(primary_ref)
        await primary.check_reachable()
    except BlobStoreUnavailable as unreachable:
        if policy.secondary_store is None:
            raise
        ref = clients.config.blob_store(policy.secondary_store)
        store = await clients.blob(ref)
        await store.check_reachable()
        note = (
            f"written to the secondary store {ref.name}: store {primary_ref.name} is "
            f"unreachable ({unreachable}); it is copied there once it answers"
        )
        return store, ref, note
    return primary, primary_ref, None


def copy_summary(backups: list[dict[str, Any]], policy: BackupPolicy | None) -> dict[str, Any]:
    """``lastCopiedBackup`` for the instance's status: its newest backup with a checked copy
    in the secondary store."""
    if policy is None or policy.secondary_store is None:
        return {}
    newest: tuple[str, dict[str, Any], dict[str, Any]] | None = None
    for backup in backups:
        status = backup.get("status") or {}
        entry = copy_entry(status, policy.secondary_store)
        if status.get("phase") != SUCCEEDED or entry is None:
            continue
        if entry.get("phase") != COPY_SUCCEEDED:
            continue
        copied = str(entry.get("copiedAt") or "")
        if newest is None or copied > newest[0]:
            newest = (copied, backup, entry)
    if newest is None:
        return {}
    copied, backup, entry = newest
    return {
        "lastCopiedBackup": {
            "id": backup["status"]["backupId"],
            "name": backup["metadata"]["name"],
            "store": entry["store"],
            "time": copied,
        }
    }
