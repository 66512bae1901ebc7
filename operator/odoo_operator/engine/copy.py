"""Copying a backup to another store (another storage account, another region).

Each part streams from the source store into the target store, never touching local disk;
its size and SHA-256, as read from the source, must equal the manifest's, and the stored copy
is then read back in full and hashed again, so a copy is only declared complete when the
target holds exactly what the backup was. The manifest is written last, as for a backup: a
copy interrupted at any point is not a backup in the target store (nothing lists or restores
it), and the next attempt starts over.
"""

from __future__ import annotations

import contextlib

from ..backends.blobstore import BlobStore
from ..builders.backup_layout import PARTS, Manifest, manifest_name, part_name
from .backup import read_manifest
from .errors import BackupEngineError
from .streams import HashingIterator


class CopyFailed(BackupEngineError):  # noqa: N818 - reads as the status it leads to
    """The copy is not complete: a part differs from the manifest, or a store failed."""


def _mismatch(what: str, part: str, size: int, sha256: str, manifest: Manifest) -> str:
    expected = manifest.parts[part]
    return (
        f"part {part} of backup {manifest.backup_id} {what} does not match its manifest "
        f"(size {size} for {expected.size}, sha256 {sha256[:12]}... for "
        f"{expected.sha256[:12]}...)"
    )


async def copy_backup(
    source: BlobStore, target: BlobStore, instance: str, backup_id: str
) -> Manifest:
    """Copy backup ``backup_id`` of ``instance`` from ``source`` to ``target`` and prove the
    copy against the manifest; return the manifest. Raises :class:`CopyFailed`."""
    manifest = await read_manifest(source, instance, backup_id)
    metadata = {"instance": instance, "backup_id": backup_id}
    for part in PARTS:
        name = part_name(instance, backup_id, part)
        chunks = source.download_stream(name)
        async with contextlib.aclosing(chunks):
            size, sha256 = await target.upload_stream(name, chunks, {**metadata, "part": part})
        expected = manifest.parts[part]
        if (size, sha256) != (expected.size, expected.sha256):
            raise CopyFailed(
                _mismatch(f"as read from {source.location}", part, size, sha256, manifest)
            )
        stored = HashingIterator(target.download_stream(name))
        try:
            await stored.drain()
        finally:
            await stored.aclose()
        if (stored.size, stored.sha256) != (expected.size, expected.sha256):
            raise CopyFailed(
                _mismatch(
                    f"as stored in {target.location}", part, stored.size, stored.sha256, manifest
                )
            )
    await target.upload_bytes(
        manifest_name(instance, backup_id),
        manifest.to_json().encode("utf-8"),
        {**metadata, "part": "manifest"},
    )
    return manifest
