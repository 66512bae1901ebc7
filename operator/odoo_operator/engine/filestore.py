"""The filestore part of a backup: an uncompressed tar, written and read as a stream.

These functions are synchronous and run in a worker thread (see :mod:`.streams`). The tar
holds the regular files below the filestore directory, with paths relative to it, which
are exactly Odoo's ``ir_attachment.store_fname`` values (``ab/abcdef...``). It is not
compressed: attachments are mostly PDFs and images that do not shrink, and compressing
would cost a core for nothing.

Owners are not recorded (uid/gid 0, no names): the uid that owns the files on one node
means nothing on another, and a restore writes files as whoever runs it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..builders.backup_layout import check_filestore_member

logger = logging.getLogger(__name__)

_COPY_BUFFER = 1024 * 1024
NAME_BATCH = 1000


class TarStream(Protocol):
    """The file object ``tarfile`` streams through (as typeshed describes it)."""

    def read(self, size: int, /) -> bytes: ...
    def write(self, data: bytes, /) -> object: ...
    def tell(self) -> int: ...
    def seek(self, pos: int, /) -> object: ...
    def close(self) -> object: ...


@dataclass(frozen=True)
class TarSummary:
    """What a filestore tar held."""

    files: int
    bytes: int


def write_filestore_tar(root: Path | None, out: TarStream) -> TarSummary:
    """Write the regular files below ``root`` to ``out`` as a tar stream.

    A ``root`` that is None or does not exist gives an empty archive: a tenant without
    attachments may have no filestore directory yet. Symbolic links and special files are
    skipped (Odoo creates neither); a file removed while the archive is written (Odoo's
    garbage collection of unreferenced files) is skipped too: it is no longer referenced.
    """
    files = total = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        if root is None or not root.is_dir():
            return TarSummary(0, 0)
        for directory, subdirectories, names in os.walk(root):
            subdirectories.sort()  # a stable order, so equal trees give equal archives
            for name in sorted(names):
                path = Path(directory) / name
                relative = path.relative_to(root).as_posix()
                try:
                    info = tar.gettarinfo(str(path), arcname=relative)
                    if not info.isreg():
                        logger.warning("filestore %s: skipping %s (not a regular file)", root, path)
                        continue
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    with path.open("rb") as source:
                        tar.addfile(info, source)
                except FileNotFoundError:
                    logger.info("filestore %s: %s vanished while being archived", root, path)
                    continue
                files += 1
                total += info.size
    return TarSummary(files, total)


def scan_filestore_tar(
    source: TarStream, on_names: Callable[[list[str]], None] | None = None
) -> TarSummary:
    """Read a filestore tar to its end, checking every member; hand file names to ``on_names``.

    Raises :class:`ValueError` for a member that a restore would refuse (absolute path,
    ``..``, a link or a device) and :class:`tarfile.TarError` for a damaged archive.
    Names are passed in batches of :data:`NAME_BATCH`, normalised (``./a/b`` is ``a/b``).
    """
    files = total = 0
    batch: list[str] = []
    with tarfile.open(fileobj=source, mode="r|") as tar:
        for member in tar:
            path = check_filestore_member(
                member.name, is_file=member.isreg(), is_dir=member.isdir()
            )
            if not member.isreg():
                continue
            files += 1
            total += member.size
            if on_names is not None:
                batch.append(path.as_posix())
                if len(batch) >= NAME_BATCH:
                    on_names(batch)
                    batch = []
    if on_names is not None and batch:
        on_names(batch)
    return TarSummary(files, total)


def extract_filestore_tar(source: TarStream, destination: Path) -> TarSummary:
    """Extract a filestore tar into the existing, empty directory ``destination``.

    Every member is checked as in :func:`scan_filestore_tar` before anything of it is
    written, and only files and directories are created, never links; a name that occurs
    twice is refused rather than overwritten.
    """
    files = total = 0
    with tarfile.open(fileobj=source, mode="r|") as tar:
        for member in tar:
            relative = check_filestore_member(
                member.name, is_file=member.isreg(), is_dir=member.isdir()
            )
            target = destination.joinpath(*relative.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(member)
            if data is None:  # pragma: no cover - isreg() members always have data
                raise ValueError(f"filestore archive member {member.name!r} has no data")
            with target.open("xb") as out:
                shutil.copyfileobj(data, out, _COPY_BUFFER)
            os.utime(target, (member.mtime, member.mtime))
            files += 1
            total += member.size
    return TarSummary(files, total)


@dataclass(frozen=True)
class PruneSummary:
    """What :func:`prune_unreferenced_files` removed."""

    files: int
    bytes: int


def prune_unreferenced_files(directory: Path, referenced: set[str]) -> PruneSummary:
    """Remove the regular files below ``directory`` whose path relative to it is not in
    ``referenced`` (``ir_attachment.store_fname`` values), and the folders left empty.

    For an anonymized clone: the attachments of business records are gone from its database,
    and their files (invoice PDFs, scanned documents) must not stay in its filestore. Files
    named by a remaining attachment are kept, whichever record shares them.
    """
    files = size = 0
    for root, folders, names in os.walk(directory, topdown=False):
        base = Path(root)
        for name in names:
            path = base / name
            if path.relative_to(directory).as_posix() in referenced or not path.is_file():
                continue
            size += path.stat().st_size
            path.unlink()
            files += 1
        for folder in folders:
            with_contents = base / folder
            if not any(with_contents.iterdir()):
                with_contents.rmdir()
    logger.info("pruned %d unreferenced files (%d bytes) from %s", files, size, directory)
    return PruneSummary(files, size)
