"""Taking, listing and deleting backups.

A backup is taken from one consistent snapshot of the database: a read-only, repeatable-read
transaction exports its snapshot, ``pg_dump --snapshot`` dumps exactly that, and the row
counts and module list of the manifest are read in the same transaction while the dump runs.
The filestore is archived after the snapshot was taken, concurrently with the dump, so every
file the dumped ``ir_attachment`` rows reference already existed when the archive was made
(the other order would miss files attached in between).

Both parts stream from their source into the blob store without touching local disk; the
manifest is written after both are stored. Any failure deletes what was stored of the
backup and raises :class:`~.errors.BackupFailed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..backends import pgtools
from ..backends.blobstore import BlobNotFound, BlobStore
from ..builders.backup_layout import (
    DATABASE_PART,
    FILESTORE_PART,
    Manifest,
    ManifestError,
    PartInfo,
    backup_prefix,
    instance_prefix,
    manifest_name,
    odoo_major,
    parse_manifest_name,
    part_name,
    validate_backup_id,
    validate_instance,
)
from . import database as db
from .errors import BackupFailed, BackupNotFound
from .filestore import write_filestore_tar
from .streams import first_cause, iterate_thread_output

logger = logging.getLogger(__name__)

# Manifests read at once when listing: one small GET each.
_LIST_CONCURRENCY = 8


@dataclass(frozen=True)
class DatabaseAccess:
    """How a backup reads the tenant database.

    ``conninfo`` is a libpq connection string of a role that can read everything in the
    database, typically the tenant's owner role; its ``dbname`` is replaced by ``database``.
    Connect directly to the server, not through a transaction-mode pooler: the dump imports
    a snapshot exported by another session.
    """

    conninfo: str
    database: str

    def __repr__(self) -> str:
        # The connection string holds a password.
        return f"DatabaseAccess(database={self.database!r}, server={db.server_of(self.conninfo)!r})"


def now() -> datetime.datetime:
    """The current time, UTC."""
    return datetime.datetime.now(datetime.UTC)


async def read_manifest(store: BlobStore, instance: str, backup_id: str) -> Manifest:
    """The manifest of one backup.

    Raises :class:`~.errors.BackupNotFound` when there is none (the backup does not exist),
    :class:`~odoo_operator.builders.backup_layout.ManifestError` when it is malformed or
    belongs to another instance or id than its place in the store says.
    """
    try:
        data = await store.read_bytes(manifest_name(instance, backup_id))
    except BlobNotFound:
        raise BackupNotFound(
            f"backup {backup_id} of {instance} does not exist in {store.location} (no manifest)"
        ) from None
    manifest = Manifest.from_json(data)
    if (manifest.instance, manifest.backup_id) != (instance, backup_id):
        raise ManifestError(
            f"the manifest stored as backup {backup_id} of {instance} describes backup "
            f"{manifest.backup_id} of {manifest.instance}"
        )
    return manifest


async def run_backup(
    store: BlobStore,
    instance: str,
    backup_id: str,
    database: DatabaseAccess,
    filestore: Path | None,
    odoo_version: str,
    reason: str,
    filestore_from: str | None = None,
    recovery: Mapping[str, str] | None = None,
) -> Manifest:
    """Back up ``database`` and the ``filestore`` directory as backup ``backup_id``.

    ``filestore_from``: instead of a directory, the filestore part of that backup of the same
    instance, copied within the store and checked against its manifest (a point-in-time
    backup carries the filestore of the newest backup before its time); ``recovery``: what
    the manifest records of such a backup (:attr:`Manifest.recovery`).

    Streams ``pg_dump -Fc`` and a tar of the filestore (empty when ``filestore`` is None or
    missing) into the store, then writes the manifest. Returns the manifest. When a manifest
    for this id exists already, the backup was completed before (a retried Job) and that
    manifest is returned without doing anything.

    Raises :class:`~.errors.BackupFailed` for any failure; what was stored of the backup is
    then deleted (best effort) and no manifest exists for it.
    """
    try:
        validate_instance(instance)
        validate_backup_id(backup_id)
        odoo_major(odoo_version)
        if not reason:
            raise ValueError("a backup needs a reason (scheduled, manual, pre-upgrade, ...)")
    except ValueError as error:
        raise BackupFailed(f"backup {backup_id} of {instance} refused: {error}") from None
    try:
        await store.ensure_container()
        return await read_manifest(store, instance, backup_id)
    except BackupNotFound:
        pass
    except Exception as error:
        raise BackupFailed(
            f"backup {backup_id} of {instance} failed: {db.first_line(error)}"
        ) from error
    try:
        manifest = await _take_backup(
            store,
            instance,
            backup_id,
            database,
            filestore,
            odoo_version,
            reason,
            filestore_from,
            recovery or {},
        )
    except BaseException as error:
        await _discard(store, instance, backup_id)
        if not isinstance(error, Exception):
            raise  # cancellation and interpreter exit go on as they are
        logger.warning("backup %s of %s failed: %s", backup_id, instance, error)
        raise BackupFailed(
            f"backup {backup_id} of {instance} failed: {db.first_line(error, database.conninfo)}"
        ) from error
    logger.info(
        "backup %s of %s complete: %d bytes in %s",
        backup_id,
        instance,
        manifest.size,
        store.location,
    )
    return manifest


async def _take_backup(
    store: BlobStore,
    instance: str,
    backup_id: str,
    access: DatabaseAccess,
    filestore: Path | None,
    odoo_version: str,
    reason: str,
    filestore_from: str | None,
    recovery: Mapping[str, str],
) -> Manifest:
    created_at = now()
    base = None if filestore_from is None else await read_manifest(store, instance, filestore_from)
    metadata = {"instance": instance, "backup_id": backup_id}
    async with db.connect(access.conninfo, access.database, autocommit=False) as connection:
        await connection.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await connection.set_read_only(True)
        async with connection.transaction():
            snapshot = str(
                await db.fetch_value(connection, "SELECT pg_catalog.pg_export_snapshot()")
            )
            version = await db.server_version(connection)

            async def inspect() -> tuple[dict[str, int], list[str], dict[str, str]]:
                return (
                    await db.key_row_counts(connection),
                    await db.installed_modules(connection),
                    await db.ledger_figures(connection),
                )

            async def upload_dump() -> tuple[int, str]:
                chunks = pgtools.dump(access.conninfo, access.database, snapshot=snapshot)
                async with contextlib.aclosing(chunks):
                    return await store.upload_stream(
                        part_name(instance, backup_id, DATABASE_PART),
                        chunks,
                        {**metadata, "part": DATABASE_PART},
                    )

            async def upload_filestore() -> tuple[int, str]:
                if base is not None:
                    return await _copy_filestore_part(store, base, backup_id)
                chunks = iterate_thread_output(
                    f"filestore-tar-{instance}",
                    functools.partial(write_filestore_tar, filestore),
                )
                async with contextlib.aclosing(chunks):
                    return await store.upload_stream(
                        part_name(instance, backup_id, FILESTORE_PART),
                        chunks,
                        {**metadata, "part": FILESTORE_PART},
                    )

            try:
                async with asyncio.TaskGroup() as group:
                    inspected = group.create_task(inspect())
                    dumped = group.create_task(upload_dump())
                    archived = group.create_task(upload_filestore())
            except ExceptionGroup as failures:
                raise first_cause(failures) from None
    row_counts, modules, ledger = inspected.result()
    manifest = Manifest(
        instance=instance,
        backup_id=backup_id,
        reason=reason,
        odoo_version=odoo_version,
        database=access.database,
        postgres_server_version=version,
        created_at=created_at,
        completed_at=now(),
        parts={
            DATABASE_PART: PartInfo(*dumped.result()),
            FILESTORE_PART: PartInfo(*archived.result()),
        },
        modules=tuple(modules),
        row_counts=row_counts,
        ledger=ledger,
        recovery=recovery,
    )
    # Last: from this moment on the backup exists.
    await store.upload_bytes(
        manifest_name(instance, backup_id),
        manifest.to_json().encode("utf-8"),
        {**metadata, "part": "manifest"},
    )
    return manifest


async def _copy_filestore_part(store: BlobStore, base: Manifest, backup_id: str) -> tuple[int, str]:
    """The filestore part of backup ``base``, copied as that of ``backup_id``: checked to be
    byte for byte what ``base``'s manifest recorded."""
    source = base.parts[FILESTORE_PART]
    copied = await store.upload_stream(
        part_name(base.instance, backup_id, FILESTORE_PART),
        store.download_stream(part_name(base.instance, base.backup_id, FILESTORE_PART)),
        {"instance": base.instance, "backup_id": backup_id, "part": FILESTORE_PART},
    )
    if copied != (source.size, source.sha256):
        raise BackupFailed(
            f"the filestore of backup {base.backup_id} differs from its manifest "
            f"({copied[0]} bytes, sha256 {copied[1][:12]}...): not copied"
        )
    return copied


async def _discard(store: BlobStore, instance: str, backup_id: str) -> None:
    """Delete whatever a failed backup stored; a store that is down keeps it (no manifest)."""
    try:
        deleted = await store.delete_prefix(backup_prefix(instance, backup_id))
    except Exception as error:  # noqa: BLE001 - best effort: without manifest nothing reads it
        logger.warning(
            "could not delete the parts of failed backup %s of %s: %s", backup_id, instance, error
        )
    else:
        if deleted:
            logger.info(
                "deleted %d part(s) of failed backup %s of %s", deleted, backup_id, instance
            )


async def list_backups(store: BlobStore, instance: str) -> list[Manifest]:
    """The backups of ``instance`` (those with a manifest), newest first.

    A malformed manifest is logged and left out: such a backup cannot be restored.
    """
    prefix = instance_prefix(instance)
    ids = []
    for name in await store.list_names(prefix):
        parsed = parse_manifest_name(name)
        if parsed is not None and parsed[0] == instance:
            ids.append(parsed[1])
    limit = asyncio.Semaphore(_LIST_CONCURRENCY)

    async def load(backup_id: str) -> Manifest | None:
        async with limit:
            try:
                return await read_manifest(store, instance, backup_id)
            except ManifestError as error:
                logger.warning("backup %s of %s has a bad manifest: %s", backup_id, instance, error)
            except BackupNotFound:  # deleted while we listed
                pass
            return None

    manifests = await asyncio.gather(*(load(backup_id) for backup_id in ids))
    found = [manifest for manifest in manifests if manifest is not None]
    # Ids sort by the second; the start time inside the manifest orders two of one second.
    return sorted(found, key=lambda m: (m.created_at, m.backup_id), reverse=True)


async def delete_backup(store: BlobStore, instance: str, backup_id: str) -> bool:
    """Delete one backup; False when nothing of it was left.

    The manifest goes first, so an interrupted deletion leaves parts that no one lists or
    restores, never a listed backup with missing parts.
    """
    manifest_deleted = await store.delete(manifest_name(instance, backup_id))
    parts_deleted = await store.delete_prefix(backup_prefix(instance, backup_id))
    return manifest_deleted or parts_deleted > 0
