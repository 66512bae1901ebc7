"""Where a backup lives in the blob store and what its manifest says; pure, no I/O.

A backup of instance ``acme`` with id ``20261123T174501Z-3f9a`` is three blobs::

    acme/20261123T174501Z-3f9a/database.dump    pg_dump -Fc of the tenant database
    acme/20261123T174501Z-3f9a/filestore.tar    the filestore directory, as a tar
    acme/20261123T174501Z-3f9a/manifest.json    written last

The manifest is written only after both parts are complete, so a backup without a manifest
does not exist: listing, verifying and restoring all start from it, and a failed or
interrupted backup leaves at most parts that nothing will ever read.

Backup ids are a UTC timestamp and a short random suffix, so they sort by time as strings
and two backups taken in the same second still differ.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

MANIFEST_FORMAT = "odoo-operator.backup/v1"
DATABASE_PART = "database.dump"
FILESTORE_PART = "filestore.tar"
MANIFEST_NAME = "manifest.json"
PARTS = (DATABASE_PART, FILESTORE_PART)

# Tables whose row counts are recorded at backup time and compared after a restore: the
# partners, the ledger, attachments (which tie the database to the filestore) and users.
ROW_COUNT_TABLES = (
    "res_partner",
    "account_move",
    "account_move_line",
    "ir_attachment",
    "res_users",
)

# The books' figures a backup records and a verification must find again after the restore:
# posted journal entries, their signed total, and debit minus credit of their lines (zero in
# balanced books: a restore that lost or duplicated lines shows here even when counts match).
LEDGER_FIGURES = ("postedEntries", "postedTotal", "postedDebitMinusCredit")

_BACKUP_ID = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-(?P<token>[0-9a-f]{4})$")
# Instance names are Kubernetes object names (RFC 1123 subdomains); anything else could
# climb out of the instance's prefix in the store.
_INSTANCE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes.
_MAX_IDENTIFIER_BYTES = 63


class ManifestError(ValueError):
    """A manifest that is not valid JSON or lacks, or mistypes, a required field."""


def validate_instance(instance: str) -> str:
    """``instance`` itself when it is a valid Kubernetes object name, else :class:`ValueError`."""
    if not _INSTANCE.match(instance) or ".." in instance:
        raise ValueError(f"instance name {instance!r} is not a valid Kubernetes object name")
    return instance


def validate_backup_id(backup_id: str) -> str:
    """``backup_id`` itself when it has the form ``20261123T174501Z-3f9a``, else ValueError."""
    if not _BACKUP_ID.match(backup_id):
        raise ValueError(
            f"backup id {backup_id!r} does not have the form YYYYMMDDTHHMMSSZ-xxxx "
            f"(UTC time and four hex digits)"
        )
    return backup_id


def new_backup_id(now: datetime.datetime | None = None, token: str | None = None) -> str:
    """A fresh backup id: UTC time of ``now`` (default: the current time) and 4 hex digits."""
    moment = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    suffix = secrets.token_hex(2) if token is None else token
    return validate_backup_id(f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{suffix}")


def backup_time(backup_id: str) -> datetime.datetime:
    """The UTC time encoded in a backup id."""
    match = _BACKUP_ID.match(backup_id)
    if match is None:
        raise ValueError(f"backup id {backup_id!r} is not valid")
    return datetime.datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)


def short_id(backup_id: str) -> str:
    """A form of the backup id fit for database and directory names: ``20261123174501_3f9a``.

    Lower case, digits and one underscore, so identifiers built from it need no quoting to
    be read and typed by a human.
    """
    match = _BACKUP_ID.match(backup_id)
    if match is None:
        raise ValueError(f"backup id {backup_id!r} is not valid")
    return f"{match['stamp'][:8]}{match['stamp'][9:15]}_{match['token']}"


def instance_prefix(instance: str) -> str:
    """Blob name prefix of every backup of ``instance``: ``acme/``."""
    return f"{validate_instance(instance)}/"


def backup_prefix(instance: str, backup_id: str) -> str:
    """Blob name prefix of one backup: ``acme/20261123T174501Z-3f9a/``."""
    return f"{instance_prefix(instance)}{validate_backup_id(backup_id)}/"


def part_name(instance: str, backup_id: str, part: str) -> str:
    """Blob name of one part (``database.dump`` or ``filestore.tar``) of a backup."""
    if part not in PARTS:
        raise ValueError(f"unknown backup part {part!r} (known: {', '.join(PARTS)})")
    return f"{backup_prefix(instance, backup_id)}{part}"


def manifest_name(instance: str, backup_id: str) -> str:
    """Blob name of a backup's manifest."""
    return f"{backup_prefix(instance, backup_id)}{MANIFEST_NAME}"


def parse_manifest_name(name: str) -> tuple[str, str] | None:
    """``(instance, backup_id)`` when ``name`` is the manifest blob of a backup, else None."""
    pieces = name.split("/")
    if len(pieces) != 3 or pieces[2] != MANIFEST_NAME:
        return None
    instance, backup_id = pieces[0], pieces[1]
    if not _INSTANCE.match(instance) or not _BACKUP_ID.match(backup_id):
        return None
    return instance, backup_id


def derived_database_name(database: str, tag: str, backup_id: str) -> str:
    """``<database>_<tag>_<short id>``, e.g. ``odoo_acme_pre_restore_20261123174501_3f9a``.

    Tenant databases may have names up to 63 bytes, which leaves no room for the suffix.
    When the whole would be longer than PostgreSQL keeps, the database part is cut and an
    8-hex digest of the full name is added, so two long names sharing a prefix still give
    different results.
    """
    return _fit_identifier(database, f"_{tag}_{short_id(backup_id)}")


# The comment a verification writes on its scratch database: the instance it verifies, so
# that one left by a verification that was interrupted (an operator killed meanwhile, under
# any backup id) is found by the next verification of that instance and dropped.
SCRATCH_MARK_PREFIX = "odoo.tenantops.io/verification-of="


def scratch_mark(instance: str) -> str:
    """The comment on the scratch databases of ``instance``'s verifications."""
    return f"{SCRATCH_MARK_PREFIX}{validate_instance(instance)}"


def scratch_database_name(instance: str, backup_id: str) -> str:
    """The scratch database a verification restores into: ``verify_<instance>_<short id>``.

    The instance is part of the name because many tenants share a server and scheduled
    backups start in the same second: their ids may share the short id, their scratch
    databases must not.
    """
    return _fit_identifier(f"verify_{validate_instance(instance)}", f"_{short_id(backup_id)}")


def _fit_identifier(head: str, suffix: str) -> str:
    # ``head + suffix``, or, when longer than PostgreSQL keeps, a cut head with a digest of
    # the full one, so that two long heads sharing a prefix still give different names.
    whole = f"{head}{suffix}"
    if len(whole.encode("utf-8")) <= _MAX_IDENTIFIER_BYTES:
        return whole
    digest = hashlib.sha256(head.encode("utf-8")).hexdigest()[:8]
    room = _MAX_IDENTIFIER_BYTES - len(suffix) - len(digest) - 1
    cut = head.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return f"{cut}_{digest}{suffix}"


def odoo_major(version: str) -> int:
    """The major of an Odoo version: 18 for ``18.0``, ``18.0.1.3`` or ``saas~18.2``."""
    match = re.match(r"^(?:saas~)?(\d+)(?:\.\d+)*$", version.strip())
    if match is None:
        raise ValueError(f"{version!r} is not an Odoo version such as 18.0")
    return int(match.group(1))


def check_filestore_member(name: str, *, is_file: bool, is_dir: bool) -> PurePosixPath:
    """The relative path a filestore tar member may be extracted to, or :class:`ValueError`.

    Only regular files and directories, below the extraction root: no absolute paths, no
    ``..``, no links or device files. A filestore backup never holds anything else, so
    anything else is a tampered or foreign archive.
    """
    if not (is_file or is_dir):
        raise ValueError(f"filestore archive member {name!r} is neither a file nor a directory")
    if not name or "\x00" in name or "\\" in name:
        raise ValueError(f"filestore archive member {name!r} has an invalid name")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise ValueError(f"filestore archive member {name!r} has an absolute path")
    if any(part == ".." for part in path.parts):
        raise ValueError(f"filestore archive member {name!r} climbs out with '..'")
    return path


@dataclass(frozen=True)
class PartInfo:
    """Size and SHA-256 of one part as uploaded."""

    size: int
    sha256: str

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ManifestError(f"part size must be a non-negative integer, not {self.size!r}")
        if not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            raise ManifestError(f"part sha256 must be 64 lower-case hex digits: {self.sha256!r}")


@dataclass(frozen=True)
class Manifest:
    """What one backup holds and what it was taken from; ``manifest.json`` in the store.

    ``modules`` are the installed Odoo modules, ``row_counts`` the number of rows of those
    of :data:`ROW_COUNT_TABLES` that exist, both read in the snapshot the dump was taken in.
    ``created_at`` is when the backup started, ``completed_at`` when its last part was stored.
    ``ledger`` holds the figures of :data:`LEDGER_FIGURES` for databases with accounting.
    """

    instance: str
    backup_id: str
    reason: str
    odoo_version: str
    database: str
    postgres_server_version: str
    created_at: datetime.datetime
    completed_at: datetime.datetime
    parts: Mapping[str, PartInfo]
    modules: Sequence[str] = ()
    row_counts: Mapping[str, int] = field(default_factory=dict)
    # Figures of the books read in the same snapshot (decimal text, exact): what a restore
    # must give back. Absent from manifests of databases without accounting.
    ledger: Mapping[str, str] = field(default_factory=dict)
    # A backup of the database as it was at a point in time, recovered from its server's WAL
    # archive: pointInTime (asked for), recoveredTo (the last transaction replayed),
    # filestoreFrom (the backup whose filestore it carries), wholeServer ("true"/"false").
    recovery: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            validate_instance(self.instance)
            validate_backup_id(self.backup_id)
            odoo_major(self.odoo_version)
        except ValueError as error:
            raise ManifestError(str(error)) from None
        for name in ("reason", "database", "postgres_server_version"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ManifestError(f"manifest field {name} must be a non-empty string")
        for name in ("created_at", "completed_at"):
            moment = getattr(self, name)
            if not isinstance(moment, datetime.datetime) or moment.tzinfo is None:
                raise ManifestError(f"manifest field {name} must be a time with a zone")
        missing = [part for part in PARTS if part not in self.parts]
        if missing:
            raise ManifestError(f"manifest lists no {', '.join(missing)}")
        unknown = sorted(set(self.parts) - set(PARTS))
        if unknown:
            raise ManifestError(f"manifest lists unknown parts {', '.join(unknown)}")
        if not all(isinstance(module, str) and module for module in self.modules):
            raise ManifestError("manifest modules must be non-empty strings")
        for table, count in self.row_counts.items():
            if not isinstance(table, str) or isinstance(count, bool) or not isinstance(count, int):
                raise ManifestError(f"row count of {table!r} must be an integer")
            if count < 0:
                raise ManifestError(f"row count of {table!r} is negative")

    @property
    def size(self) -> int:
        """Bytes of all parts together."""
        return sum(part.size for part in self.parts.values())

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-ready data."""
        return {
            "format": MANIFEST_FORMAT,
            "instance": self.instance,
            "backupId": self.backup_id,
            "reason": self.reason,
            "odooVersion": self.odoo_version,
            "database": self.database,
            "postgresServerVersion": self.postgres_server_version,
            "createdAt": _iso(self.created_at),
            "completedAt": _iso(self.completed_at),
            "parts": {
                name: {"size": part.size, "sha256": part.sha256}
                for name, part in sorted(self.parts.items())
            },
            "modules": sorted(self.modules),
            "rowCounts": dict(sorted(self.row_counts.items())),
            **({"ledger": dict(sorted(self.ledger.items()))} if self.ledger else {}),
            **({"recovery": dict(sorted(self.recovery.items()))} if self.recovery else {}),
        }

    def to_json(self) -> str:
        """``manifest.json``: stable key order, so the same manifest gives the same bytes."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse ``manifest.json``; :class:`ManifestError` says what is wrong with a bad one."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise ManifestError(f"manifest is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise ManifestError("manifest is not a JSON object")
        if data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(
                f"manifest format is {data.get('format')!r}, expected {MANIFEST_FORMAT!r}"
            )
        parts_data = _field(data, "parts", dict)
        parts: dict[str, PartInfo] = {}
        for name, part in parts_data.items():
            if not isinstance(part, dict):
                raise ManifestError(f"manifest part {name!r} is not an object")
            try:
                parts[str(name)] = PartInfo(
                    size=_field(part, "size", int), sha256=_field(part, "sha256", str)
                )
            except ManifestError as error:
                raise ManifestError(f"manifest part {name!r}: {error}") from None
        modules = _field(data, "modules", list)
        row_counts = _field(data, "rowCounts", dict)
        ledger = data.get("ledger", {})  # manifests of older versions have none
        if not isinstance(ledger, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in ledger.items()
        ):
            raise ManifestError("manifest ledger must map names to decimal text")
        recovery = data.get("recovery", {})
        if not isinstance(recovery, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in recovery.items()
        ):
            raise ManifestError("manifest recovery must map names to text")
        return cls(
            instance=_field(data, "instance", str),
            backup_id=_field(data, "backupId", str),
            reason=_field(data, "reason", str),
            odoo_version=_field(data, "odooVersion", str),
            database=_field(data, "database", str),
            postgres_server_version=_field(data, "postgresServerVersion", str),
            created_at=_parse_time(_field(data, "createdAt", str), "createdAt"),
            completed_at=_parse_time(_field(data, "completedAt", str), "completedAt"),
            parts=parts,
            modules=tuple(modules),
            row_counts=dict(row_counts),
            ledger=dict(ledger),
            recovery=dict(recovery),
        )


def _field(data: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    if name not in data:
        raise ManifestError(f"manifest has no field {name}")
    value = data[name]
    if not isinstance(value, kind):
        raise ManifestError(f"manifest field {name} must be a JSON {kind.__name__}")
    return value


def _parse_time(text: str, name: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ManifestError(f"manifest field {name} is not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise ManifestError(f"manifest field {name} has no time zone: {text!r}")
    return moment


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
