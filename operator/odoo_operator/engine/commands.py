"""``odoo-operator backup | verify | restore | restore-filestore``: the engine as a command,
for Jobs and humans.

Inputs come from flags, each with an environment variable as its default (see
``odoo-operator <command> --help``); secrets (connection strings) only from the environment,
never from flags, which ``ps`` and the Pod spec would show. The result goes to stdout as one
JSON object; a failure is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from psycopg import sql

from ..backends.blobstore import BlobStore
from ..builders.backup_layout import new_backup_id
from ..builders.evidence_report import build_report, compact_entry, render_html
from ..builders.journal import HEAD_METADATA, JOURNAL_PREFIX, journal_blob_name, verify_chain
from . import database as db
from .backup import DatabaseAccess, run_backup
from .restore import RestoreTarget, restore_backup, stage_filestore, swap_in_filestore
from .verify import verify_backup

# Secrets: read from the environment only.
BLOB_CONNECTION_STRING = "ODOO_OPERATOR_BLOB_CONNECTION_STRING"
BLOB_ACCOUNT_URL = "ODOO_OPERATOR_BLOB_ACCOUNT_URL"
DB_CONNINFO = "ODOO_OPERATOR_DB_CONNINFO"
ADMIN_CONNINFO = "ODOO_OPERATOR_ADMIN_CONNINFO"


class CommandError(Exception):
    """A one-line reason for exit code 1."""


def _secret(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise CommandError(f"environment variable {name} is not set")
    return value


def _open_store(args: argparse.Namespace) -> BlobStore:
    if not args.container:
        raise CommandError("no container: pass --container or set ODOO_OPERATOR_BLOB_CONTAINER")
    connection_string = os.environ.get(BLOB_CONNECTION_STRING)
    if connection_string:
        return BlobStore.from_connection_string(connection_string, args.container)
    account_url = os.environ.get(BLOB_ACCOUNT_URL)
    if account_url:
        return BlobStore.from_account_url(account_url, args.container)
    raise CommandError(
        f"no blob store: set {BLOB_CONNECTION_STRING}, or {BLOB_ACCOUNT_URL} with "
        f"Workload Identity (DefaultAzureCredential)"
    )


def _require(args: argparse.Namespace, *names: str) -> None:
    missing = [name for name in names if not getattr(args, name)]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise CommandError(f"missing {flags} (or the environment variables named in --help)")


def _print(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


async def _backup(args: argparse.Namespace) -> int:
    _require(args, "instance", "database", "odoo_version")
    access = DatabaseAccess(conninfo=_secret(DB_CONNINFO), database=args.database)
    async with _open_store(args) as store:
        manifest = await run_backup(
            store,
            args.instance,
            args.backup_id or new_backup_id(),
            access,
            Path(args.filestore) if args.filestore else None,
            args.odoo_version,
            args.reason,
        )
    _print(manifest.to_dict())
    return 0


async def _verify(args: argparse.Namespace) -> int:
    _require(args, "instance", "backup_id")
    admin = _secret(ADMIN_CONNINFO)
    async with _open_store(args) as store:
        verification = await verify_backup(store, args.instance, args.backup_id, admin)
    _print(asdict(verification))
    if not verification.ok:
        raise CommandError(f"verification failed: {verification.reason}")
    return 0


def _neutralization(neutralize: bool) -> Sequence[sql.Composable]:
    if not neutralize:
        return ()
    try:
        from ..builders.neutralize import neutralization_statements
    except ImportError as error:
        raise CommandError(f"neutralization is not available in this build: {error}") from None
    # A clone gets a database.uuid of its own, as the operator's restores do.
    statements: Sequence[sql.Composable] = neutralization_statements(str(uuid.uuid4()))
    return statements


async def _restore(args: argparse.Namespace) -> int:
    _require(args, "instance", "backup_id", "database", "owner_role", "target_odoo_version")
    if not args.expected_instance and not args.any_instance:
        raise CommandError(
            "pass --expected-instance (the instance the backup must be of) or --any-instance "
            "for a deliberate clone of another instance"
        )
    target = RestoreTarget(
        admin_conninfo=_secret(ADMIN_CONNINFO),
        database=args.database,
        owner_role=args.owner_role,
        filestore=Path(args.filestore) if args.filestore else None,
        expected_instance=None if args.any_instance else args.expected_instance,
        target_odoo_version=args.target_odoo_version,
        neutralize=args.neutralize,
        neutralization=_neutralization(args.neutralize),
    )
    async with _open_store(args) as store:
        outcome = await restore_backup(store, args.instance, args.backup_id, target)
    _print(asdict(outcome))
    return 0


async def _restore_filestore(args: argparse.Namespace) -> int:
    _require(args, "instance", "backup_id", "filestore", "step")
    filestore = Path(args.filestore)
    if args.step == "swap":
        # Two renames in the tenant's volume: no store and, but for an anonymized clone
        # (which reads the files its database still names), no secret.
        referenced = None
        if args.prune_unreferenced:
            async with db.connect(_secret(DB_CONNINFO)) as connection:
                referenced = await db.attachment_files(connection)
        kept = swap_in_filestore(filestore, args.backup_id, referenced)
        _print({"filestore": filestore, "keptFilestore": kept})
        return 0
    async with _open_store(args) as store:
        summary = await stage_filestore(store, args.instance, args.backup_id, filestore)
    _print({"filestore": filestore, "files": summary.files, "bytes": summary.bytes})
    return 0


async def _evidence_verify(args: argparse.Namespace) -> int:
    """Check the chain of a tenant's operations journal, from the store or a file."""
    if args.file:
        data, head = Path(args.file).read_bytes(), args.head or None
        where = args.file
    else:
        _require(args, "instance")
        async with _open_store(args) as store:
            data, metadata = await store.read_with_metadata(journal_blob_name(args.instance))
        head, where = metadata.get(HEAD_METADATA), journal_blob_name(args.instance)
    report = verify_chain(data, head)
    _print(
        {
            "journal": where,
            "entries": report.entries,
            "head": report.head,
            "intact": report.holds,
            "firstBrokenEntry": report.broken_seq,
            "broken": report.broken,
        }
    )
    if not report.holds:
        print(
            f"odoo-operator evidence-verify: {where}: the chain is broken: {report.broken}",
            file=sys.stderr,
        )
        return 1
    return 0


def _period(args: argparse.Namespace) -> tuple[datetime.datetime, datetime.datetime]:
    until = (
        datetime.datetime.fromisoformat(args.until.replace("Z", "+00:00"))
        if args.until
        else datetime.datetime.now(datetime.UTC)
    )
    since = (
        datetime.datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        if args.since
        else until - datetime.timedelta(days=30)
    )
    if since.tzinfo is None or until.tzinfo is None or since >= until:
        raise CommandError("--since and --until must be RFC 3339 times with a zone, in order")
    return since, until


async def _journals(args: argparse.Namespace) -> dict[str, tuple[bytes, str | None]]:
    """Each tenant's journal and head: from --dir (files <instance>.jsonl), else the store
    (one --instance, or every journal in it)."""
    if args.dir:
        return {
            path.stem: (path.read_bytes(), None) for path in sorted(Path(args.dir).glob("*.jsonl"))
        }
    found: dict[str, tuple[bytes, str | None]] = {}
    async with _open_store(args) as store:
        names = (
            [journal_blob_name(args.instance)]
            if args.instance
            else await store.list_names(JOURNAL_PREFIX)
        )
        for name in names:
            data, metadata = await store.read_with_metadata(name)
            found[name.removeprefix(JOURNAL_PREFIX).removesuffix(".jsonl")] = (
                data,
                metadata.get(HEAD_METADATA),
            )
    return found


async def _evidence_report(args: argparse.Namespace) -> int:
    """The auditor's report over a period, as HTML and JSON, from the journals."""
    since, until = _period(args)
    started = time.monotonic()
    journals = await _journals(args)
    entries: list[dict[str, Any]] = []
    chains: dict[str, str] = {}
    for tenant, (data, head) in journals.items():
        report = verify_chain(data, head)
        chains[tenant] = "intact" if report.holds else str(report.broken)
        entries.extend(
            compact_entry(json.loads(line)) for line in data.split(b"\n") if line.strip()
        )
        journals[tenant] = (b"", None)  # read: let it go
    built = build_report(entries, since, until, chains)
    page = render_html(built)
    Path(args.output).write_text(page)
    if args.json:
        Path(args.json).write_text(json.dumps(built.as_json(), indent=1, default=str) + "\n")
    _print(
        {
            "report": args.output,
            "json": args.json,
            "tenants": len(built.tenants),
            "entries": built.entries,
            "htmlBytes": len(page.encode()),
            "seconds": round(time.monotonic() - started, 2),
            "digest": built.digest,
            "brokenJournals": sorted(t for t, why in chains.items() if why != "intact"),
        }
    )
    return 1 if any(why != "intact" for why in chains.values()) else 0


COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "evidence-report": _evidence_report,
    "evidence-verify": _evidence_verify,
    "backup": _backup,
    "verify": _verify,
    "restore": _restore,
    "restore-filestore": _restore_filestore,
}


def run_command(args: argparse.Namespace) -> int:
    """Run one of the engine's commands; print the one-line reason and return 1 on failure."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(COMMANDS[args.command](args))
    except KeyboardInterrupt:
        print(f"odoo-operator {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every failure ends as one line and exit 1
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"odoo-operator {args.command}: {message}", file=sys.stderr)
        return 1
