"""The business invariants a restore drill checks in the restored tenant's database.

A backup's manifest records, in the snapshot the dump was taken in, the books' figures
(posted journal entries, their signed total, debit minus credit) and the row counts of the
key tables, attachments among them. A drill restores that backup into a temporary tenant and
reads the same figures from the tenant's live database, right after the restore and before
anyone has used it: each must be found again, exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ..builders.backup_layout import Manifest
from . import database as db

# The row counts a drill holds against the manifest: journal entries and their lines (the
# books), and attachments (which tie the database to the filestore).
DRILL_ROW_COUNTS = ("account_move", "account_move_line", "ir_attachment")


@dataclass(frozen=True)
class InvariantCheck:
    """One figure: what the backup recorded and what the restored tenant holds."""

    name: str
    expected: str
    found: str | None

    @property
    def holds(self) -> bool:
        """Equal as decimals (``10.50`` and ``10.5`` are the same amount)."""
        if self.found is None:
            return False
        try:
            return Decimal(self.found) == Decimal(self.expected)
        except InvalidOperation:
            return self.found == self.expected


@dataclass(frozen=True)
class DrillInvariants:
    """All figures checked; ``broken`` names those that differ."""

    checks: tuple[InvariantCheck, ...] = field(default_factory=tuple)

    @property
    def broken(self) -> list[InvariantCheck]:
        """The checks that do not hold."""
        return [check for check in self.checks if not check.holds]

    def as_status(self) -> dict[str, Any]:
        """``status.drill.invariants``: each figure's expected and found values."""
        return {
            check.name: {"expected": check.expected, "found": check.found, "holds": check.holds}
            for check in self.checks
        }

    def summary(self) -> str:
        """One line for the drill's message."""
        if not self.checks:
            return "no business figures recorded in the backup"
        broken = self.broken
        if broken:
            return "differ from the backup: " + ", ".join(
                f"{check.name} {check.found if check.found is not None else 'missing'} "
                f"for {check.expected}"
                for check in broken
            )
        return "hold: " + ", ".join(f"{check.name} {check.expected}" for check in self.checks)


def _row_count_name(table: str) -> str:
    return "rows." + table


async def check_invariants(
    admin_conninfo: str, database: str, manifest: Manifest
) -> DrillInvariants:
    """Read the figures the manifest recorded from ``database`` and pair them up."""
    expected: dict[str, str] = dict(manifest.ledger)
    tables = [t for t in DRILL_ROW_COUNTS if t in manifest.row_counts]
    expected.update({_row_count_name(t): str(manifest.row_counts[t]) for t in tables})
    async with db.connect(admin_conninfo, database) as connection:
        found: Mapping[str, str] = {
            **(await db.ledger_figures(connection) if manifest.ledger else {}),
            **{
                _row_count_name(table): str(count)
                for table, count in (
                    await db.count_rows(connection, await db.existing_tables(connection, tables))
                ).items()
            },
        }
    return DrillInvariants(
        tuple(
            InvariantCheck(name, value, found.get(name)) for name, value in sorted(expected.items())
        )
    )
