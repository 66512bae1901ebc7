"""The ``odoo-operator`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


def _run(args: argparse.Namespace) -> int:
    import kopf

    from . import handlers, logs, settings  # noqa: F401 - importing registers the handlers

    kopf.configure(verbose=args.verbose)
    logs.configure(args.log_format)
    asyncio.run(
        kopf.operator(
            clusterwide=True,
            standalone=True,
            liveness_endpoint=args.liveness,
        )
    )
    return 0


def _webhook(args: argparse.Namespace) -> int:
    import kopf

    from .model.shards import ADMISSION_ONLY_ENV

    # Before the handlers' modules read the shard settings at import: this process assigns
    # the fleet's shards and serves none of them.
    os.environ[ADMISSION_ONLY_ENV] = "true"
    from . import logs
    from .admission_server import webhook_registry

    kopf.configure(verbose=args.verbose)
    logs.configure(args.log_format)
    try:
        registry = webhook_registry()
    except ValueError as problem:
        print(f"odoo-operator webhook: {problem}", file=sys.stderr)
        return 2
    asyncio.run(
        kopf.operator(
            registry=registry,
            clusterwide=True,
            standalone=True,  # it writes nothing: replicas need no peering
            liveness_endpoint=args.liveness,
            memo=kopf.Memo(),
        )
    )
    return 0


def _engine_command(args: argparse.Namespace) -> int:
    from .engine.commands import run_command

    return run_command(args)


_ENGINE_ENVIRONMENT = """
environment (secrets are read from here only, never from flags):
  ODOO_OPERATOR_BLOB_CONNECTION_STRING  blob store connection string (account key or SAS), or
  ODOO_OPERATOR_BLOB_ACCOUNT_URL        https://<account>.blob.core.windows.net, signed in
                                        with DefaultAzureCredential (Workload Identity on AKS)
  ODOO_OPERATOR_PG_BINDIR               folder of pg_dump/pg_restore (default: PATH, then
                                        the newest /usr/lib/postgresql/*/bin)
"""


def _option(
    parser: argparse.ArgumentParser,
    flag: str,
    variable: str,
    text: str,
    default: str | None = None,
) -> None:
    """A flag whose default comes from an environment variable, named in its help."""
    parser.add_argument(
        flag, default=os.environ.get(variable, default), help=f"{text} (env {variable})"
    )


def _add_engine_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``backup``, ``verify``, ``restore`` and ``restore-filestore``: the backup engine as
    commands, e.g. in a Job."""
    formatter = argparse.RawDescriptionHelpFormatter
    backup = commands.add_parser(
        "backup",
        help="back up a tenant database and filestore to the blob store",
        description="Stream pg_dump -Fc and a tar of the filestore into the blob store, then "
        "write the manifest. Prints the manifest as JSON; on failure one line on stderr and "
        "exit code 1, and nothing of the backup is left listed.",
        epilog=_ENGINE_ENVIRONMENT
        + "  ODOO_OPERATOR_DB_CONNINFO             libpq connection string of a role that can\n"
        "                                        read the whole database (the tenant role)\n",
        formatter_class=formatter,
    )
    verify = commands.add_parser(
        "verify",
        help="prove a backup by restoring it into a scratch database",
        description="Check each part against the manifest, restore the dump into a scratch "
        "database, compare row counts and check the filestore holds every attachment; the "
        "scratch database is always dropped. Prints the verification as JSON; exit code 1 "
        "when the backup is bad or could not be checked.",
        epilog=_ENGINE_ENVIRONMENT
        + "  ODOO_OPERATOR_ADMIN_CONNINFO          libpq connection string of the server's\n"
        "                                        admin (CREATEDB)\n",
        formatter_class=formatter,
    )
    restore = commands.add_parser(
        "restore",
        help="restore a backup in place of a tenant database and filestore",
        description="Check the manifest, checksums, instance and Odoo version before touching "
        "anything; restore into a new database owned by --owner-role, check row counts, "
        "neutralize if asked, then swap names, keeping the replaced database as "
        "<db>_pre_restore_<id> and the filestore as <dir>.pre_restore_<id>. Prints what was "
        "kept as JSON; on failure one line on stderr and exit code 1.",
        epilog=_ENGINE_ENVIRONMENT
        + "  ODOO_OPERATOR_ADMIN_CONNINFO          libpq connection string of the server's\n"
        "                                        admin (CREATEDB, member of --owner-role)\n",
        formatter_class=formatter,
    )
    restore_filestore = commands.add_parser(
        "restore-filestore",
        help="stage, then swap in, the filestore of a backup (the volume's half of a restore)",
        description="--step stage: check the backup's filestore part against its manifest "
        "while extracting it into .<dir>.restore_<id> beside the filestore directory, which "
        "is not touched. --step swap: rename the filestore directory <dir>.pre_restore_<id> "
        "and the staged one into its place. Run next to the tenant's volume, while the "
        "database half of the restore runs where the server's admin login is. Prints JSON; "
        "on failure one line on stderr and exit code 1.",
        epilog=_ENGINE_ENVIRONMENT,
        formatter_class=formatter,
    )
    evidence = commands.add_parser(
        "evidence-verify",
        help="check the hash chain of a tenant's operations journal",
        description="Read journal/<instance>.jsonl from the blob store (or --file) and check "
        "every link of its hash chain and its head. Prints the result as JSON; exit code 1, "
        "and the first broken entry named on stderr, when the chain is broken.",
        epilog=_ENGINE_ENVIRONMENT,
        formatter_class=formatter,
    )
    evidence.add_argument("--file", help="a journal downloaded from the store, instead")
    evidence.add_argument("--head", help="with --file: the blob's head metadata, if known")
    report = commands.add_parser(
        "evidence-report",
        help="an auditor's report (HTML and JSON) over a period, from the journals",
        description="Read the operations journals (one --instance, or every tenant's; or the "
        "files <instance>.jsonl of --dir), check each hash chain, and write a self-contained "
        "HTML page with charts (backup age against RPO, drills and their RTO, changes, "
        "refusals) and, with --json, the same data with the report's digest. Exit code 1 "
        "when a journal's chain is broken (the report names it).",
        epilog=_ENGINE_ENVIRONMENT,
        formatter_class=formatter,
    )
    report.add_argument("--dir", help="read <instance>.jsonl files from this folder instead")
    report.add_argument("--since", help="start of the period, RFC 3339 (default: 30 days ago)")
    report.add_argument("--until", help="end of the period, RFC 3339 (default: now)")
    report.add_argument("--output", default="evidence-report.html", help="the HTML page")
    report.add_argument("--json", help="also write the report's data and digest here")
    for parser in (backup, verify, restore, restore_filestore, evidence, report):
        _option(parser, "--instance", "ODOO_OPERATOR_INSTANCE", "OdooInstance name")
        _option(parser, "--container", "ODOO_OPERATOR_BLOB_CONTAINER", "blob container")
        parser.add_argument("--verbose", action="store_true", help="log progress to stderr")
        parser.set_defaults(handler=_engine_command)
    _option(backup, "--database", "ODOO_OPERATOR_DATABASE", "database to back up")
    _option(
        backup,
        "--filestore",
        "ODOO_OPERATOR_FILESTORE",
        "filestore directory of the database (absent: an empty archive)",
    )
    _option(backup, "--odoo-version", "ODOO_OPERATOR_ODOO_VERSION", "Odoo version, e.g. 18.0")
    _option(
        backup,
        "--reason",
        "ODOO_OPERATOR_BACKUP_REASON",
        "why: manual, scheduled, pre-upgrade, ...",
        default="manual",
    )
    _option(
        backup,
        "--backup-id",
        "ODOO_OPERATOR_BACKUP_ID",
        "backup id (default: a new one, YYYYMMDDTHHMMSSZ-xxxx); an id already complete is "
        "not taken again",
    )
    _option(verify, "--backup-id", "ODOO_OPERATOR_BACKUP_ID", "the backup to verify")
    _option(restore, "--backup-id", "ODOO_OPERATOR_BACKUP_ID", "the backup to restore")
    _option(restore, "--database", "ODOO_OPERATOR_DATABASE", "target database name")
    _option(restore, "--owner-role", "ODOO_OPERATOR_OWNER_ROLE", "role that will own it")
    _option(
        restore,
        "--filestore",
        "ODOO_OPERATOR_FILESTORE",
        "target filestore directory (absent: the database only)",
    )
    _option(
        restore,
        "--expected-instance",
        "ODOO_OPERATOR_EXPECTED_INSTANCE",
        "refuse a backup of any other instance",
    )
    _option(restore_filestore, "--backup-id", "ODOO_OPERATOR_BACKUP_ID", "the backup to restore")
    _option(
        restore_filestore,
        "--filestore",
        "ODOO_OPERATOR_FILESTORE",
        "the tenant's filestore directory, e.g. /var/lib/odoo/filestore/<db>",
    )
    restore_filestore.add_argument(
        "--step", choices=("stage", "swap"), required=True, help="which half to run"
    )
    restore_filestore.add_argument(
        "--prune-unreferenced",
        action="store_true",
        help="swap: first remove the staged files that no attachment of the restored database "
        "names (an anonymized clone); reads ODOO_OPERATOR_DB_CONNINFO",
    )
    restore.add_argument(
        "--any-instance",
        action="store_true",
        help="accept a backup of any instance (a deliberate clone)",
    )
    _option(
        restore,
        "--target-odoo-version",
        "ODOO_OPERATOR_ODOO_VERSION",
        "Odoo version of the target; a backup of a newer major is refused",
    )
    restore.add_argument(
        "--neutralize",
        action="store_true",
        help="neutralize the restored copy (mail, crons, payment providers...) before the swap",
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="odoo-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator against the current kubeconfig")
    run.set_defaults(handler=_run)
    webhook = commands.add_parser(
        "webhook",
        help="serve the admission webhooks only, in a process of their own",
        description="Serve the validating (and, with shards, mutating) admission webhooks and "
        "nothing else, so that admission never waits behind the operator's passes. Needs the "
        "ODOO_OPERATOR_WEBHOOK_* variables, as `run` does when it serves them itself; writes "
        "nothing to the API server, so replicas run side by side.",
    )
    webhook.set_defaults(handler=_webhook)
    for process in (run, webhook):
        process.add_argument("--verbose", action="store_true", help="debug logging")
        process.add_argument(
            "--log-format",
            choices=("text", "json"),
            default=os.environ.get("ODOO_OPERATOR_LOG_FORMAT", "text"),
            help="text lines, or one JSON object per line (env ODOO_OPERATOR_LOG_FORMAT)",
        )
        process.add_argument(
            "--liveness",
            default=None,
            help="liveness endpoint URL, e.g. http://0.0.0.0:8080/healthz",
        )

    _add_engine_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``odoo-operator`` console script."""
    args = build_parser().parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
