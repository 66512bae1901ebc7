"""Restore: a backup put in the place of a tenant's database and filestore.

The contract, in order:

1. **Checked before anything is touched.** The manifest exists and is well-formed; it is a
   backup of ``expected_instance``; its Odoo major is the one the target runs; the
   owner role exists; an existing target database belongs to it; the names the restore
   keeps the old data under are free; and every part is read in full and matches its
   manifest size and SHA-256 (the filestore tar is also checked for members a restore would
   refuse: absolute paths, ``..``, links). Any failure raises
   :class:`~.errors.RestoreRefused` and nothing at all has changed.
2. **Built aside.** The dump is restored into a new database ``<db>_restore_<short id>``
   owned by the owner role (``pg_restore --role``), the filestore extracted into a new
   directory next to the target; both are read from the store again and hashed again, so
   a part replaced between steps 1 and 2 is caught too. Row counts are compared with the
   manifest and, when asked, the neutralization statements run (as the owner role, in one
   transaction). Any failure drops the new database and directory and raises
   :class:`~.errors.RestoreError`; the target is still untouched.
3. **Swapped.** The filestore directory is renamed ``<dir>.pre_restore_<short id>`` and the
   new one takes its name; then the target database is closed to connections, its sessions
   ended, and in one transaction renamed ``<db>_pre_restore_<short id>`` while the new one
   takes its name. If the database swap fails, the directories are renamed back.

Nothing is dropped: what was replaced is kept under the ``pre_restore`` names, for the
operator's retention or a human to remove. Odoo should be stopped (web and cron at zero)
while a restore runs; the engine ends sessions only for the swap itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tarfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from ..backends import pgtools
from ..backends.blobstore import BlobStore
from ..builders.backup_layout import (
    DATABASE_PART,
    FILESTORE_PART,
    PARTS,
    Manifest,
    ManifestError,
    derived_database_name,
    odoo_major,
    part_name,
    short_id,
)
from . import database as db
from .backup import read_manifest
from .errors import BackupNotFound, RestoreError, RestoreRefused
from .filestore import (
    TarSummary,
    extract_filestore_tar,
    prune_unreferenced_files,
    scan_filestore_tar,
)
from .streams import HashingIterator, ThreadReader, run_thread_on_input

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreTarget:
    """Where a backup is restored to.

    ``admin_conninfo``: a login on the target server with CREATEDB that is a member of
    ``owner_role`` (the operator's admin). ``database``: the name the restored database ends
    up with. ``owner_role``: the tenant role that owns it and every object in it.
    ``filestore``: the tenant's filestore directory, or None to restore the database only.
    ``expected_instance``: refuse a backup of any other instance (None: accept any, for a
    deliberate clone). ``target_odoo_version``: the Odoo version the target runs (its
    ``status.runningVersion``, not the one its spec may already ask for); a backup of any
    other major is refused (:func:`check_odoo_versions`).
    ``neutralize`` and ``neutralization``: statements run on the restored copy before it is
    swapped in (a clone must not send mail or run crons of the original).
    """

    admin_conninfo: str = field(repr=False)
    database: str
    owner_role: str
    filestore: Path | None
    expected_instance: str | None
    target_odoo_version: str
    neutralize: bool
    neutralization: Sequence[sql.Composable] = ()
    # An anonymized clone: the files that no attachment of the restored (and neutralized)
    # database names any more are removed from the restored filestore.
    prune_unreferenced_files: bool = False
    # Statements run on every restored copy, neutralized or not, before it is swapped in: a
    # clone gets the target's own Odoo credentials (builders/odoo_users.py).
    credentials: Sequence[sql.Composable] = ()


@dataclass(frozen=True)
class RestoreOutcome:
    """What a restore did and what it kept."""

    instance: str
    backup_id: str
    database: str
    kept_database: str | None
    filestore: Path | None
    kept_filestore: Path | None
    neutralized: bool
    row_counts: Mapping[str, int]
    duration_seconds: float


@dataclass(frozen=True)
class _Names:
    staging_database: str
    kept_database: str
    staging_filestore: Path | None
    kept_filestore: Path | None


def filestore_restore_paths(filestore: Path, backup_id: str) -> tuple[Path, Path]:
    """Where a restore of ``backup_id`` stages its filestore (a hidden sibling of
    ``filestore``) and where it keeps the one it replaces: ``<dir>.pre_restore_<short id>``."""
    sid = short_id(backup_id)
    return (
        filestore.parent / f".{filestore.name}.restore_{sid}",
        filestore.parent / f"{filestore.name}.pre_restore_{sid}",
    )


def _names(target: RestoreTarget, backup_id: str) -> _Names:
    staging_dir = kept_dir = None
    if target.filestore is not None:
        staging_dir, kept_dir = filestore_restore_paths(target.filestore, backup_id)
    return _Names(
        staging_database=derived_database_name(target.database, "restore", backup_id),
        kept_database=derived_database_name(target.database, "pre_restore", backup_id),
        staging_filestore=staging_dir,
        kept_filestore=kept_dir,
    )


async def restore_backup(
    store: BlobStore, instance: str, backup_id: str, target: RestoreTarget
) -> RestoreOutcome:
    """Restore backup ``backup_id`` of ``instance`` into ``target`` (see the module docstring).

    Raises :class:`~.errors.RestoreRefused` (nothing touched), :class:`~.errors.RestoreError`
    (failed later; the message says what state remains) and
    :class:`~odoo_operator.backends.postgres.DatabaseServerUnavailable`.
    """
    started = time.monotonic()
    manifest = await _checked_manifest(store, instance, backup_id, target)
    names = _names(target, backup_id)
    async with db.connect(target.admin_conninfo) as admin:
        await _check_target(admin, target, names, backup_id)
    await _check_parts(store, manifest)
    # Connections are opened per phase: a restore can take an hour, and an admin session
    # held idle all along may not survive a server failover or an idle timeout.
    row_counts = await _build_aside(store, manifest, target, names)
    try:
        kept_filestore = _swap_filestore(target, names)
    except BaseException as error:
        await _discard_staging(target, names)
        if not isinstance(error, Exception):
            raise
        raise RestoreError(
            f"restore of backup {backup_id} into {target.database} failed when moving "
            f"the filestore into place: {error}; the target was not touched"
        ) from error
    try:
        async with db.connect(target.admin_conninfo) as admin:
            replaced = await db.swap_databases(
                admin, target.database, names.staging_database, names.kept_database
            )
    except BaseException as error:
        reason = db.first_line(error, target.admin_conninfo)
        try:
            _unswap_filestore(target, names, kept_filestore)
        except OSError as undo:
            raise RestoreError(
                f"restore of backup {backup_id} into {target.database} failed at the "
                f"database swap ({reason}) and the filestore could not be moved back "
                f"({undo}): the database is unchanged, but {target.filestore} holds the "
                f"backup's files and the previous ones are in {names.kept_filestore}"
            ) from error
        await _discard_staging(target, names)
        if not isinstance(error, Exception):
            raise
        raise RestoreError(
            f"restore of backup {backup_id} into {target.database} failed at the "
            f"database swap: {reason}; the target was not touched"
        ) from error
    outcome = RestoreOutcome(
        instance=instance,
        backup_id=backup_id,
        database=target.database,
        kept_database=names.kept_database if replaced else None,
        filestore=target.filestore,
        kept_filestore=names.kept_filestore if kept_filestore else None,
        neutralized=target.neutralize,
        row_counts=row_counts,
        duration_seconds=time.monotonic() - started,
    )
    logger.info(
        "restored backup %s of %s into %s; kept %s and %s",
        backup_id,
        instance,
        target.database,
        outcome.kept_database,
        outcome.kept_filestore,
    )
    return outcome


async def _manifest_or_refuse(store: BlobStore, instance: str, backup_id: str) -> Manifest:
    """The backup's manifest; RestoreRefused (nothing touched) when it is missing or bad."""
    try:
        return await read_manifest(store, instance, backup_id)
    except (BackupNotFound, ManifestError, ValueError) as error:
        raise RestoreRefused(
            f"restore of backup {backup_id} of {instance} refused: {error}"
        ) from None


async def _checked_manifest(
    store: BlobStore, instance: str, backup_id: str, target: RestoreTarget
) -> Manifest:
    manifest = await _manifest_or_refuse(store, instance, backup_id)
    if target.expected_instance is not None and manifest.instance != target.expected_instance:
        raise RestoreRefused(
            f"restore refused: backup {backup_id} is a backup of instance {manifest.instance}, "
            f"not of {target.expected_instance}"
        )
    check_odoo_versions(backup_id, manifest.odoo_version, target.target_odoo_version)
    if target.neutralize and not target.neutralization:
        raise RestoreRefused("restore refused: neutralization asked for, but no statements given")
    return manifest


def check_odoo_versions(backup_id: str, backup_version: str, target_version: str) -> None:
    """Refuse, with :class:`~.errors.RestoreRefused`, a backup of another Odoo major than the
    target runs.

    A newer one Odoo cannot run at all. An older one would meet the new major's code with the
    old major's tables, nothing migrated: errors when Odoo starts, or worse, once it runs.
    Moving a database to a new major is the upgrade's work (a copy, migrated by the
    migration image), so the message says how to get there. Versions of one
    major (``18.0``, ``18.0.1.3``) pass: the same Odoo runs their databases.
    """
    try:
        backup_major, target_major = odoo_major(backup_version), odoo_major(target_version)
    except ValueError as error:
        raise RestoreRefused(f"restore refused: {error}") from None
    if backup_major > target_major:
        raise RestoreRefused(
            f"restore refused: backup {backup_id} was taken with Odoo {backup_version}, "
            f"newer than the target's {target_version}; Odoo cannot run a database of a "
            f"newer version"
        )
    if backup_major < target_major:
        raise RestoreRefused(
            f"restore refused: backup {backup_id} was taken with Odoo {backup_version}, older "
            f"than the {target_version} the target runs; a restore does not migrate a "
            f"database. Restore it into an instance running Odoo {backup_version}, then "
            f"upgrade that instance to {target_version}"
        )


async def _check_target(
    admin: db.Connection, target: RestoreTarget, names: _Names, backup_id: str
) -> None:
    if not await db.role_exists(admin, target.owner_role):
        raise RestoreRefused(f"restore refused: the owner role {target.owner_role} does not exist")
    owner = await db.database_owner(admin, target.database)
    if owner is not None and owner != target.owner_role:
        raise RestoreRefused(
            f"restore refused: database {target.database} is owned by {owner}, not by "
            f"{target.owner_role}; the operator will not replace another owner's database"
        )
    if owner is not None and await db.database_owner(admin, names.kept_database) is not None:
        raise RestoreRefused(
            f"restore refused: database {names.kept_database} exists, kept by an earlier "
            f"restore of backup {backup_id}; drop or rename it to restore this backup again"
        )
    if names.kept_filestore is not None and os.path.lexists(names.kept_filestore):
        raise RestoreRefused(
            f"restore refused: {names.kept_filestore} exists, kept by an earlier restore of "
            f"backup {backup_id}; remove or rename it to restore this backup again"
        )
    if target.filestore is not None and not target.filestore.parent.is_dir():
        raise RestoreRefused(
            f"restore refused: the parent directory of the filestore {target.filestore} "
            f"does not exist"
        )


async def _check_parts(store: BlobStore, manifest: Manifest) -> None:
    """Read every part in full and compare with the manifest; RestoreRefused otherwise."""
    for part in PARTS:
        chunks = HashingIterator(
            store.download_stream(part_name(manifest.instance, manifest.backup_id, part))
        )
        problem = None
        try:
            if part == FILESTORE_PART:

                def scan(reader: ThreadReader) -> object:
                    return scan_filestore_tar(reader)

                try:
                    await run_thread_on_input(f"restore-check-{manifest.instance}", chunks, scan)
                except (tarfile.TarError, ValueError, EOFError) as error:
                    problem = f"the filestore archive is unusable: {error}"
                    await chunks.drain()
            else:
                await chunks.drain()
        finally:
            await chunks.aclose()
        expected = manifest.parts[part]
        if chunks.size != expected.size or chunks.sha256 != expected.sha256:
            raise RestoreRefused(
                f"restore refused: part {part} of backup {manifest.backup_id} does not match "
                f"its manifest (size {chunks.size} for {expected.size}, sha256 "
                f"{chunks.sha256[:12]}... for {expected.sha256[:12]}...); it was altered or "
                f"damaged in the store"
            )
        if problem is not None:
            raise RestoreRefused(f"restore refused: {problem}")


async def _build_aside(
    store: BlobStore,
    manifest: Manifest,
    target: RestoreTarget,
    names: _Names,
) -> dict[str, int]:
    """Steps of phase 2; on failure removes what it made and raises RestoreError."""
    backup_id = manifest.backup_id
    # A staging database or directory of these names can only be left by an interrupted
    # restore of this very backup: never swapped in, so safe to start over.
    await _discard_staging(target, names)
    try:
        async with db.connect(target.admin_conninfo) as admin:
            await db.create_database(admin, names.staging_database, target.owner_role)
        await _restore_part(
            store,
            manifest,
            DATABASE_PART,
            lambda chunks: pgtools.restore(
                target.admin_conninfo, names.staging_database, chunks, role=target.owner_role
            ),
        )
        if names.staging_filestore is not None:
            staging = names.staging_filestore
            staging.mkdir()

            def extract(reader: ThreadReader) -> object:
                return extract_filestore_tar(reader, staging)

            await _restore_part(
                store,
                manifest,
                FILESTORE_PART,
                lambda chunks: run_thread_on_input(f"restore-{manifest.instance}", chunks, extract),
            )
        async with db.connect(target.admin_conninfo, names.staging_database) as connection:
            expected = dict(manifest.row_counts)
            found = await db.count_rows(
                connection, await db.existing_tables(connection, list(expected))
            )
            differing = sorted(t for t, count in expected.items() if found.get(t) != count)
            if differing:
                raise RestoreError(
                    "row counts differ from the manifest: "
                    + ", ".join(
                        f"{t} {found.get(t, 'missing')} for {expected[t]}" for t in differing
                    )
                )
            if target.neutralize:
                await db.apply_statements(connection, target.owner_role, target.neutralization)
            if target.credentials:
                await db.apply_statements(connection, target.owner_role, target.credentials)
            if target.prune_unreferenced_files and names.staging_filestore is not None:
                referenced = await db.attachment_files(connection)
                await asyncio.to_thread(
                    prune_unreferenced_files, names.staging_filestore, referenced
                )
    except BaseException as error:
        await _discard_staging(target, names)
        if not isinstance(error, Exception):
            raise
        raise RestoreError(
            f"restore of backup {backup_id} into {target.database} failed before the swap: "
            f"{db.first_line(error, target.admin_conninfo)}; the target was not touched"
        ) from error
    return found


async def _discard_staging(target: RestoreTarget, names: _Names) -> None:
    """Remove the staging database and directory, best effort (the next attempt does too)."""
    try:
        async with db.connect(target.admin_conninfo) as admin:
            await db.drop_database(admin, names.staging_database)
    except Exception as error:  # noqa: BLE001 - reported; a retry drops it first
        logger.warning("could not drop staging database %s: %s", names.staging_database, error)
    if names.staging_filestore is not None:
        shutil.rmtree(names.staging_filestore, ignore_errors=True)


async def _restore_part(
    store: BlobStore,
    manifest: Manifest,
    part: str,
    consume: Callable[[HashingIterator], Awaitable[object]],
) -> None:
    """Feed one part to ``consume``, then check it hashed to what phase 1 saw."""
    chunks = HashingIterator(
        store.download_stream(part_name(manifest.instance, manifest.backup_id, part))
    )
    try:
        await consume(chunks)
    finally:
        await chunks.aclose()
    expected = manifest.parts[part]
    if not chunks.finished or (chunks.size, chunks.sha256) != (expected.size, expected.sha256):
        raise RestoreError(
            f"part {part} changed in the store since it was checked (size {chunks.size}, "
            f"sha256 {chunks.sha256[:12]}...)"
        )


def _swap_filestore(target: RestoreTarget, names: _Names) -> bool:
    """Put the staged filestore in place; True when an existing one was kept aside."""
    if target.filestore is None or names.staging_filestore is None:
        return False
    assert names.kept_filestore is not None
    return _swap_directories(target.filestore, names.staging_filestore, names.kept_filestore)


def _swap_directories(live: Path, staging: Path, kept: Path) -> bool:
    """``live`` renamed ``kept`` (when it exists), ``staging`` renamed ``live``; undone if the
    second rename fails. True when ``live`` existed."""
    existed = os.path.lexists(live)
    if existed:
        os.rename(live, kept)
    try:
        os.rename(staging, live)
    except OSError:
        if existed:
            os.rename(kept, live)
        raise
    return existed


def _unswap_filestore(target: RestoreTarget, names: _Names, kept: bool) -> None:
    if target.filestore is None or names.staging_filestore is None:
        return
    assert names.kept_filestore is not None
    os.rename(target.filestore, names.staging_filestore)
    if kept:
        os.rename(names.kept_filestore, target.filestore)


# -- the filestore alone, next to the tenant's data ----------------------------------------------
#
# When the operator cannot write the tenant's volume (backups run as Jobs, the filestore is a
# claim only the tenant's pods mount), a restore is split: a Job stages the backup's
# filestore beside the live one, the operator restores and swaps the database, then a second
# Job swaps the directories. Staging fails before anything is touched; the swap is two
# renames on one file system.


async def stage_filestore(
    store: BlobStore, instance: str, backup_id: str, filestore: Path
) -> TarSummary:
    """Extract the filestore of backup ``backup_id`` of ``instance`` beside ``filestore``
    (:func:`filestore_restore_paths`), checked against the manifest; the live directory is
    not touched.

    Raises :class:`~.errors.RestoreRefused` when the backup is unusable or an earlier
    restore of it kept a directory under the name this one would keep, and
    :class:`~.errors.RestoreError` when the part read differs from its manifest (the staged
    copy is then removed).
    """
    manifest = await _manifest_or_refuse(store, instance, backup_id)
    staging, kept = filestore_restore_paths(filestore, backup_id)
    if os.path.lexists(kept):
        raise RestoreRefused(
            f"restore refused: {kept} exists, kept by an earlier restore of backup "
            f"{backup_id}; remove or rename it to restore this backup again"
        )
    # A tenant that never stored an attachment has no filestore folder yet.
    filestore.parent.mkdir(parents=True, exist_ok=True)
    # Left only by an interrupted staging of this very backup: never swapped in.
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    summary: list[TarSummary] = []

    def extract(reader: ThreadReader) -> object:
        summary.append(extract_filestore_tar(reader, staging))
        return summary[-1]

    try:
        await _restore_part(
            store,
            manifest,
            FILESTORE_PART,
            lambda chunks: run_thread_on_input(f"restore-{instance}", chunks, extract),
        )
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if not isinstance(error, Exception) or isinstance(error, RestoreError):
            raise
        raise RestoreError(
            f"staging the filestore of backup {backup_id} failed: {error}; "
            f"{filestore} was not touched"
        ) from error
    logger.info(
        "staged the filestore of backup %s (%d files, %d bytes) at %s",
        backup_id,
        summary[-1].files,
        summary[-1].bytes,
        staging,
    )
    return summary[-1]


def swap_in_filestore(filestore: Path, backup_id: str, referenced: set[str] | None = None) -> Path:
    """Put the filestore staged by :func:`stage_filestore` in place of ``filestore``; return
    where the replaced one is kept (an empty directory when there was none). With
    ``referenced`` (an anonymized clone: the files its database's attachments still name),
    every other staged file is removed first.

    Raises :class:`~.errors.RestoreError` when nothing is staged; then nothing is touched.
    """
    staging, kept = filestore_restore_paths(filestore, backup_id)
    if os.path.lexists(kept):
        raise RestoreError(
            f"{kept} exists, kept by an earlier restore of backup {backup_id}; {filestore} "
            f"was not touched"
        )
    if not staging.is_dir():
        raise RestoreError(
            f"no filestore of backup {backup_id} is staged at {staging}; {filestore} was "
            f"not touched"
        )
    if referenced is not None:
        prune_unreferenced_files(staging, referenced)
    # An empty live directory when there was none, so that what the restore replaced is
    # always at ``kept`` and a second swap of this backup is refused like a second restore.
    filestore.mkdir(exist_ok=True)
    _swap_directories(filestore, staging, kept)
    return kept
