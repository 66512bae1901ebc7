"""What the engine raises. Every message is meant for a status condition: one sentence that
names the backup and what went wrong, and never a password, key or SAS token."""

from __future__ import annotations


class BackupEngineError(Exception):
    """Base of the engine's own errors."""


class BackupFailed(BackupEngineError):  # noqa: N818 - reads as the status it leads to
    """A backup did not complete. Its partial parts were deleted (best effort) and no
    manifest was written, so it does not exist for listing, verification or restore."""


class BackupNotFound(BackupEngineError, LookupError):  # noqa: N818 - reads as what happened
    """No manifest for this instance and backup id: the backup does not exist."""


class VerificationError(BackupEngineError):
    """Verification could not be carried out (not: the backup is bad, which is a result)."""


class RestoreRefused(BackupEngineError):  # noqa: N818 - reads as the status it leads to
    """The restore was refused before anything was touched: a missing or malformed manifest,
    a checksum mismatch, a backup of another instance or of a newer Odoo, or a name that a
    restore would need being taken already."""


class RestoreError(BackupEngineError):
    """The restore failed after it began. The message says what state it left: before the
    swap the target is untouched and the partial copy is removed."""
