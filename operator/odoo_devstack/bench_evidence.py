"""``make bench-evidence``: the auditor's report over 1,000 tenants and a year of journal.

Writes synthetic operations journals (the operator's own entry format and hash chain,
builders/journal.py) into a temporary folder: per tenant and day a scheduled backup and its
verification, a spec change every few weeks, a monthly restore drill with its RTO, a rare
refusal at admission and a rare failed backup; then runs ``odoo-operator evidence-report
--dir`` on them as a separate process and reports its wall time, peak RSS and the sizes of
what it wrote. Options: ``--tenants``, ``--days``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from odoo_operator.builders.journal import GENESIS, entry_line, line_hash

START = datetime.datetime(2025, 12, 1, tzinfo=datetime.UTC)


def write_journal(
    folder: Path, tenant: str, days: int, rng: random.Random, start: datetime.datetime = START
) -> int:
    """One tenant's journal over ``days`` days from ``start``; returns its entries."""
    lines: list[bytes] = []
    prev = GENESIS

    def add(moment: datetime.datetime, action: str, details: dict[str, object]) -> None:
        nonlocal prev
        line = entry_line(len(lines) + 1, moment, tenant, action, details, prev)
        lines.append(line)
        prev = line_hash(line)

    add(
        start,
        "SpecApplied",
        {"generation": 1, "changedBy": "argocd-controller", "backupRpo": "26h", "backupRto": "30m"},
    )
    generation = 1
    for day in range(days):
        midnight = start + datetime.timedelta(days=day)
        backup_at = midnight + datetime.timedelta(hours=2, minutes=rng.randint(0, 20))
        if rng.random() < 0.01:
            add(
                backup_at,
                "BackupFailed",
                {"kind": "OdooBackup", "type": "Warning", "message": "Job failed"},
            )
        else:
            add(
                backup_at,
                "BackupSucceeded",
                {"kind": "OdooBackup", "type": "Normal", "message": "backup completed"},
            )
            add(
                backup_at + datetime.timedelta(minutes=3),
                "Verified",
                {"kind": "OdooBackup", "type": "Normal", "message": "verification passed"},
            )
        if rng.random() < 0.05:
            generation += 1
            add(
                midnight + datetime.timedelta(hours=10),
                "SpecApplied",
                {
                    "generation": generation,
                    "changedBy": rng.choice(
                        ["argocd-controller", "kubectl-client-side-apply", "kustomize-controller"]
                    ),
                    "backupRpo": "26h",
                    "backupRto": "30m",
                },
            )
        if midnight.day == 1:
            rto = rng.uniform(60, 2400)
            add(
                midnight + datetime.timedelta(hours=5),
                "DrillPassed" if rto <= 1800 else "RTOExceeded",
                {
                    "drill": True,
                    "result": "Passed" if rto <= 1800 else "RTOExceeded",
                    "rtoSeconds": round(rto, 1),
                    "rtoObjectiveSeconds": 1800.0,
                },
            )
        if rng.random() < 0.01:
            add(
                midnight + datetime.timedelta(hours=14),
                "AdmissionRefused",
                {
                    "kind": "OdooInstance",
                    "operation": "UPDATE",
                    "user": "dev@example.com",
                    "problems": "spec.hosts[0] is already served by another tenant",
                },
            )
    (folder / f"{tenant}.jsonl").write_bytes(b"".join(lines))
    return len(lines)


def report_command(folder: Path, until: datetime.datetime, html: Path, data: Path) -> list[str]:
    """``odoo-operator evidence-report`` over the journals of ``folder``, from :data:`START`."""
    return [
        sys.executable,
        "-m",
        "odoo_operator.cli",
        "evidence-report",
        "--dir",
        str(folder),
        "--since",
        START.isoformat(),
        "--until",
        until.isoformat(),
        "--output",
        str(html),
        "--json",
        str(data),
    ]


def main(argv: list[str] | None = None) -> int:
    """Generate the journals, run the report, print the figures."""
    parser = argparse.ArgumentParser(prog="bench-evidence", description=__doc__)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args(argv)
    rng = random.Random(20261130)  # noqa: S311 - synthetic data, not secrecy
    with tempfile.TemporaryDirectory(prefix="bench-evidence-") as work:
        folder = Path(work) / "journals"
        folder.mkdir()
        started = time.monotonic()
        entries = sum(
            write_journal(folder, f"tenant-{n:04d}", args.days, rng) for n in range(args.tenants)
        )
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(
            f"journals: {args.tenants} tenants, {entries:,} entries, {size / 2**20:.1f} MiB "
            f"({time.monotonic() - started:.1f} s to write)",
            flush=True,
        )
        until = START + datetime.timedelta(days=args.days)
        html, data = Path(work) / "report.html", Path(work) / "report.json"
        started = time.monotonic()
        result = subprocess.run(
            report_command(folder, until, html, data),
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.monotonic() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if result.returncode != 0:
            print(result.stdout, result.stderr, file=sys.stderr)
            return 1
        summary = json.loads(result.stdout)
        print(
            f"report: {wall:.1f} s wall, peak RSS {peak:.0f} MiB, HTML "
            f"{html.stat().st_size / 2**20:.2f} MiB, JSON {data.stat().st_size / 2**20:.2f} "
            f"MiB, {summary['entries']:,} entries in the period, digest {summary['digest']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
