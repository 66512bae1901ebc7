"""Which store a backup is copied to, when a copy is still owed, and what the instance's
status says about the newest checked copy."""

from __future__ import annotations

from typing import Any

from odoo_operator.model.backup import BackupPolicy
from odoo_operator.model.config import OperatorConfig
from odoo_operator.reconcile.backup_copies import copy_pending, copy_summary, copy_target

CONFIG = OperatorConfig.from_mapping(
    {
        "blobStores": {
            "westeurope": {"secretRef": "blob-we", "container": "odoo", "default": True},
            "northeurope": {"secretRef": "blob-ne", "container": "odoo"},
        }
    }
)
PAIR = BackupPolicy(secondary_store="northeurope")


def _backup(name: str, copies: list[dict[str, Any]], phase: str = "Succeeded") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"instance": "acme"},
        "status": {
            "phase": phase,
            "backupId": f"id-{name}",
            "store": "westeurope",
            "secondaryStore": "northeurope",
            "copies": copies,
        },
    }


def test_a_backup_goes_to_the_other_store_of_the_pair() -> None:
    assert copy_target(CONFIG, PAIR, "westeurope") == "northeurope"
    # Written to the secondary while the primary was down: copied back to the primary.
    assert copy_target(CONFIG, PAIR, "northeurope") == "westeurope"
    assert copy_target(CONFIG, BackupPolicy(), "westeurope") is None
    assert copy_target(CONFIG, None, "westeurope") is None


def test_a_copy_is_owed_until_one_succeeded() -> None:
    assert copy_pending(_backup("a", []))
    assert copy_pending(_backup("a", [{"store": "northeurope", "phase": "Failed"}]))
    assert not copy_pending(_backup("a", [{"store": "northeurope", "phase": "Succeeded"}]))
    assert not copy_pending(_backup("a", [], phase="Failed"))  # nothing to copy
    no_pair = _backup("a", [])
    del no_pair["status"]["secondaryStore"]
    assert not copy_pending(no_pair)


def test_the_instance_shows_its_newest_checked_copy() -> None:
    backups = [
        _backup(
            "old",
            [{"store": "northeurope", "phase": "Succeeded", "copiedAt": "2026-11-29T02:10:00Z"}],
        ),
        _backup("new", [{"store": "northeurope", "phase": "Failed", "message": "unreachable"}]),
        _backup(
            "mid",
            [{"store": "northeurope", "phase": "Succeeded", "copiedAt": "2026-11-30T02:10:00Z"}],
        ),
    ]
    assert copy_summary(backups, PAIR) == {
        "lastCopiedBackup": {
            "id": "id-mid",
            "name": "mid",
            "store": "northeurope",
            "time": "2026-11-30T02:10:00Z",
        }
    }
    assert copy_summary(backups, BackupPolicy()) == {}
