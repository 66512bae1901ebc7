"""The backup engine: take, list, verify, restore and delete tenant backups.

It sits between the backends and reconcile: it composes :mod:`~odoo_operator.backends.pgtools`
(pg_dump, pg_restore), :mod:`~odoo_operator.backends.blobstore` (Azure Blob Storage) and a
few SQL statements into whole operations, each of which either completes or leaves the
documented state behind. It knows nothing about Kubernetes: the same functions run
in-process in the operator and in a Job, through ``odoo-operator backup|verify|restore``.

Layout and manifest: :mod:`odoo_operator.builders.backup_layout`. The contracts of each
operation are in the docstrings of :mod:`.backup`, :mod:`.verify` and :mod:`.restore`, and in
``docs/backup.md``.
"""

from __future__ import annotations

from ..builders.backup_layout import Manifest, ManifestError, PartInfo, new_backup_id
from .backup import DatabaseAccess, delete_backup, list_backups, read_manifest, run_backup
from .errors import (
    BackupEngineError,
    BackupFailed,
    BackupNotFound,
    RestoreError,
    RestoreRefused,
    VerificationError,
)
from .restore import RestoreOutcome, RestoreTarget, restore_backup
from .verify import Verification, verify_backup

__all__ = [
    "BackupEngineError",
    "BackupFailed",
    "BackupNotFound",
    "DatabaseAccess",
    "Manifest",
    "ManifestError",
    "PartInfo",
    "RestoreError",
    "RestoreOutcome",
    "RestoreRefused",
    "RestoreTarget",
    "Verification",
    "VerificationError",
    "delete_backup",
    "list_backups",
    "new_backup_id",
    "read_manifest",
    "restore_backup",
    "run_backup",
    "verify_backup",
]
