"""Verification: prove that a backup restores, by restoring it.

One pass over each part: the dump is hashed while ``pg_restore`` loads it into a scratch
database, the filestore tar is hashed while its member names are copied into a temporary
table of that database. Then the checks:

1. each part's size and SHA-256 equal the manifest's;
2. ``pg_restore --exit-on-error`` succeeded;
3. the row counts of the manifest's tables are found again;
4. the tar is well-formed, holds nothing a restore would refuse, and has a file for every
   ``ir_attachment.store_fname`` (when the table exists).

The scratch database ``verify_<instance>_<short id>`` is always dropped (``WITH (FORCE)``). Memory
stays bounded: names are compared in SQL, not in Python sets.

:func:`verify_backup` returns ``ok=False`` when the backup itself is at fault, and raises when
the check could not be made (server or store unavailable, another verification of the same
backup running): an alert on failed verifications then means a bad backup, not a bad day.
"""

from __future__ import annotations

import datetime
import logging
import tarfile
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from psycopg import sql

from ..backends import pgtools
from ..backends.blobstore import BlobStore
from ..builders.backup_layout import (
    DATABASE_PART,
    FILESTORE_PART,
    Manifest,
    ManifestError,
    part_name,
    scratch_database_name,
    scratch_mark,
)
from . import database as db
from .backup import now, read_manifest
from .errors import VerificationError
from .filestore import TarSummary, scan_filestore_tar
from .streams import HashingIterator, ThreadReader, run_thread_on_input

logger = logging.getLogger(__name__)

_MISSING_EXAMPLES = 5


@dataclass(frozen=True)
class Verification:
    """The outcome of one verification.

    ``reason`` is one sentence: what failed first, or what was proven. ``details`` is
    JSON-ready: per-part sizes and checksums, row counts expected and found, attachments
    referenced and missing, timings.
    """

    ok: bool
    reason: str
    checked_at: datetime.datetime
    duration_seconds: float
    details: dict[str, Any] = field(default_factory=dict)


class _Failed(Exception):  # noqa: N818 - internal: the first failed check, with its reason
    pass


async def verify_backup(
    store: BlobStore, instance: str, backup_id: str, admin_conninfo: str
) -> Verification:
    """Restore backup ``backup_id`` of ``instance`` into a scratch database and check it.

    ``admin_conninfo`` is a login on the server to restore on, with CREATEDB. Raises
    :class:`~.errors.BackupNotFound` when the backup has no manifest,
    :class:`~.errors.VerificationError` or
    :class:`~odoo_operator.backends.postgres.DatabaseServerUnavailable` when the check could
    not be made; otherwise returns the :class:`Verification`, good or bad.
    """
    checked_at = now()
    started = time.monotonic()
    details: dict[str, Any] = {"instance": instance, "backupId": backup_id}

    def result(ok: bool, reason: str) -> Verification:
        return Verification(ok, reason, checked_at, time.monotonic() - started, details)

    try:
        manifest = await read_manifest(store, instance, backup_id)
    except ManifestError as error:
        return result(False, f"the manifest of backup {backup_id} is malformed: {error}")
    scratch = scratch_database_name(instance, backup_id)
    details["scratchDatabase"] = scratch
    async with db.connect(admin_conninfo) as admin:
        await _drop_interrupted_scratches(admin, instance, scratch)
        await _claim_scratch(admin, scratch, backup_id)
        await db.create_database(admin, scratch)
        await db.mark_database(admin, scratch, scratch_mark(instance))
    # The admin session is not held while the restore runs (minutes, for a big tenant): a
    # failover or an idle timeout meanwhile must not cost the scratch database's cleanup.
    try:
        await _check(store, manifest, admin_conninfo, scratch, details)
    except _Failed as failure:
        logger.warning("verification of backup %s of %s failed: %s", backup_id, instance, failure)
        return result(False, str(failure))
    finally:
        await _drop_scratch(admin_conninfo, scratch)
    attachments = details.get("attachments", {})
    books = (
        f", and the books ({manifest.ledger['postedEntries']} posted entries totalling "
        f"{manifest.ledger['postedTotal']}, debit minus credit "
        f"{manifest.ledger['postedDebitMinusCredit']})"
        if manifest.ledger
        else ""
    )
    return result(
        True,
        f"backup {backup_id} restored into a scratch database: checksums of "
        f"{len(manifest.parts)} parts, row counts of {len(manifest.row_counts)} tables and "
        f"{attachments.get('referenced', 0)} referenced filestore files match{books}",
    )


async def _drop_scratch(admin_conninfo: str, scratch: str) -> None:
    try:
        async with db.connect(admin_conninfo) as admin:
            await db.drop_database(admin, scratch)
    except Exception as error:  # noqa: BLE001 - reported; the next verification drops it
        logger.warning("could not drop scratch database %s: %s", scratch, error)


async def _drop_interrupted_scratches(admin: db.Connection, instance: str, scratch: str) -> None:
    # Scratch databases of this instance's earlier verifications, under other backup ids,
    # left by an operator that died during one (an interrupted backup restarts under a new
    # id): found by their mark, dropped unless a session shows a verification still in them.
    for leftover in await db.databases_marked(admin, scratch_mark(instance)):
        if leftover == scratch or await db.session_count(admin, leftover):
            continue
        logger.info("dropping scratch database %s left by an interrupted verification", leftover)
        await db.drop_database(admin, leftover)


async def _claim_scratch(admin: db.Connection, scratch: str, backup_id: str) -> None:
    # A scratch database left by a verification that died is dropped; one with sessions
    # belongs to a verification running now, which must not be pulled from under it.
    if await db.database_owner(admin, scratch) is None:
        return
    if await db.session_count(admin, scratch):
        raise VerificationError(
            f"another verification of backup {backup_id} is running (database {scratch} "
            f"is in use); try again when it has finished"
        )
    logger.info("dropping scratch database %s left by an earlier verification", scratch)
    await db.drop_database(admin, scratch)


def _check_part(
    manifest: Manifest, part: str, seen: HashingIterator, details: dict[str, Any]
) -> None:
    expected = manifest.parts[part]
    ok = seen.finished and seen.size == expected.size and seen.sha256 == expected.sha256
    details.setdefault("parts", {})[part] = {
        "expectedSize": expected.size,
        "size": seen.size,
        "expectedSha256": expected.sha256,
        "sha256": seen.sha256,
        "ok": ok,
    }
    if not ok:
        raise _Failed(
            f"part {part} of backup {manifest.backup_id} does not match its manifest "
            f"(size {seen.size} for {expected.size}, sha256 {seen.sha256[:12]}... for "
            f"{expected.sha256[:12]}...): it was altered or damaged in the store"
        )


async def _check(
    store: BlobStore,
    manifest: Manifest,
    admin_conninfo: str,
    scratch: str,
    details: dict[str, Any],
) -> None:
    instance, backup_id = manifest.instance, manifest.backup_id

    # 1-2: the dump, hashed while it is restored.
    dump = HashingIterator(store.download_stream(part_name(instance, backup_id, DATABASE_PART)))
    restore_started = time.monotonic()
    restore_error: pgtools.RestoreFailed | None = None
    try:
        await pgtools.restore(admin_conninfo, scratch, dump)
    except pgtools.RestoreFailed as error:
        restore_error = error
        # The checksum tells whether the archive or the restore is at fault: read it all.
        await dump.drain()
    finally:
        await dump.aclose()
    details["restoreSeconds"] = round(time.monotonic() - restore_started, 3)
    _check_part(manifest, DATABASE_PART, dump, details)
    if restore_error is not None:
        raise _Failed(
            f"backup {backup_id} does not restore: {db.first_line(restore_error, admin_conninfo)}"
        )

    async with db.connect(admin_conninfo, scratch) as connection:
        # 3: row counts.
        expected_counts = dict(manifest.row_counts)
        present = await db.existing_tables(connection, list(expected_counts))
        found = await db.count_rows(connection, present)
        details["rowCounts"] = {
            table: {"expected": count, "found": found.get(table)}
            for table, count in sorted(expected_counts.items())
        }
        differing = [table for table, count in expected_counts.items() if found.get(table) != count]
        # 4: the filestore, hashed while its names go into a temporary table.
        await connection.execute("CREATE TEMPORARY TABLE filestore_member (name text NOT NULL)")
        archive = HashingIterator(
            store.download_stream(part_name(instance, backup_id, FILESTORE_PART))
        )
        tar_error: Exception | None = None
        cursor = connection.cursor()
        try:
            async with cursor.copy(
                sql.SQL("COPY {} (name) FROM STDIN").format(
                    sql.Identifier("pg_temp", "filestore_member")
                )
            ) as copy:

                async def write_names(names: list[str]) -> None:
                    for name in names:
                        await copy.write_row((name,))

                def scan(reader: ThreadReader) -> TarSummary:
                    return scan_filestore_tar(
                        reader, lambda names: reader.call_in_loop(write_names(names))
                    )

                try:
                    summary = await run_thread_on_input(f"verify-tar-{instance}", archive, scan)
                    details["filestoreFiles"] = summary.files
                except (tarfile.TarError, ValueError, EOFError) as error:
                    tar_error = error
                    await archive.drain()
        finally:
            await archive.aclose()
        _check_part(manifest, FILESTORE_PART, archive, details)
        if tar_error is not None:
            raise _Failed(f"the filestore archive of backup {backup_id} is unusable: {tar_error}")
        if differing:
            raise _Failed(
                "row counts differ from the manifest after the restore: "
                + ", ".join(
                    f"{table} {found.get(table, 'missing')} for {expected_counts[table]}"
                    for table in sorted(differing)
                )
            )
        # 5: the books: posted entries, their total, and debit minus credit.
        if manifest.ledger:
            figures = await db.ledger_figures(connection)
            details["ledger"] = {
                name: {"expected": value, "found": figures.get(name)}
                for name, value in sorted(manifest.ledger.items())
            }
            wrong = [n for n, v in manifest.ledger.items() if not _same_amount(figures.get(n), v)]
            if wrong:
                raise _Failed(
                    "the books differ from the manifest after the restore: "
                    + ", ".join(
                        f"{name} {figures.get(name, 'missing')} for {manifest.ledger[name]}"
                        for name in sorted(wrong)
                    )
                )
        await _check_attachments(connection, backup_id, details)


def _same_amount(found: str | None, expected: str) -> bool:
    """Equal as decimals (``10.50`` and ``10.5`` are the same amount)."""
    if found is None:
        return False
    try:
        return Decimal(found) == Decimal(expected)
    except InvalidOperation:
        return found == expected


async def _check_attachments(
    connection: db.Connection, backup_id: str, details: dict[str, Any]
) -> None:
    if not await db.existing_tables(connection, ["ir_attachment"]):
        details["attachments"] = {"referenced": 0, "missing": 0, "examples": []}
        return
    referenced = sql.SQL(
        "SELECT DISTINCT store_fname FROM {} WHERE store_fname IS NOT NULL AND store_fname <> ''"
    ).format(sql.Identifier("public", "ir_attachment"))
    member = sql.Identifier("pg_temp", "filestore_member")
    total = int(
        await db.fetch_value(
            connection, sql.SQL("SELECT count(*) FROM ({}) AS r").format(referenced)
        )
    )
    missing_query = sql.SQL(
        "SELECT r.store_fname FROM ({}) AS r"
        " WHERE NOT EXISTS (SELECT 1 FROM {} AS m WHERE m.name = r.store_fname)"
    ).format(referenced, member)
    missing = int(
        await db.fetch_value(
            connection, sql.SQL("SELECT count(*) FROM ({}) AS x").format(missing_query)
        )
    )
    examples: list[str] = []
    if missing:
        cursor = await connection.execute(
            sql.SQL("{} ORDER BY 1 LIMIT {}").format(missing_query, sql.Literal(_MISSING_EXAMPLES))
        )
        examples = [str(row[0]) for row in await cursor.fetchall()]
    details["attachments"] = {"referenced": total, "missing": missing, "examples": examples}
    if missing:
        raise _Failed(
            f"{missing} of {total} files referenced by ir_attachment are not in the "
            f"filestore archive of backup {backup_id} (e.g. {', '.join(examples)})"
        )
