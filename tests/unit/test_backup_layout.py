"""The backup layout: blob names, backup ids, derived names and the manifest's JSON form."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from odoo_operator.builders.backup_layout import (
    DATABASE_PART,
    FILESTORE_PART,
    Manifest,
    ManifestError,
    PartInfo,
    backup_prefix,
    backup_time,
    check_filestore_member,
    derived_database_name,
    manifest_name,
    new_backup_id,
    odoo_major,
    parse_manifest_name,
    part_name,
    scratch_database_name,
    short_id,
    validate_backup_id,
    validate_instance,
)

UTC = datetime.UTC
SHA_A = "a" * 64
SHA_B = "b" * 64


def manifest(**changes: Any) -> Manifest:
    """A valid manifest; keyword arguments replace fields."""
    fields: dict[str, Any] = {
        "instance": "acme",
        "backup_id": "20261123T174501Z-3f9a",
        "reason": "scheduled",
        "odoo_version": "18.0",
        "database": "odoo_acme",
        "postgres_server_version": "15.18",
        "created_at": datetime.datetime(2026, 11, 23, 17, 45, 1, tzinfo=UTC),
        "completed_at": datetime.datetime(2026, 11, 23, 17, 46, 30, 250000, tzinfo=UTC),
        "parts": {DATABASE_PART: PartInfo(1234, SHA_A), FILESTORE_PART: PartInfo(10240, SHA_B)},
        "modules": ("account", "base", "sale_management"),
        "row_counts": {"res_partner": 12, "account_move": 0, "ir_attachment": 3},
    }
    fields.update(changes)
    return Manifest(**fields)


def test_blob_names_follow_instance_then_backup_id() -> None:
    backup_id = "20261123T174501Z-3f9a"
    assert backup_prefix("acme", backup_id) == "acme/20261123T174501Z-3f9a/"
    assert part_name("acme", backup_id, DATABASE_PART) == f"acme/{backup_id}/database.dump"
    assert part_name("acme", backup_id, FILESTORE_PART) == f"acme/{backup_id}/filestore.tar"
    assert manifest_name("acme", backup_id) == f"acme/{backup_id}/manifest.json"
    assert parse_manifest_name(f"acme/{backup_id}/manifest.json") == ("acme", backup_id)
    assert parse_manifest_name(f"acme/{backup_id}/database.dump") is None
    assert parse_manifest_name(f"acme/x/{backup_id}/manifest.json") is None


@pytest.mark.parametrize("name", ["", "Acme", "a/b", "../acme", "acme-", "a..b", "-acme"])
def test_instance_names_that_could_escape_their_prefix_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid Kubernetes object name"):
        validate_instance(name)


def test_backup_ids_sort_by_time_and_carry_it() -> None:
    moments = [
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime.datetime(2026, 11, 23, 17, 45, 1, tzinfo=UTC),
        datetime.datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC),
    ]
    ids = [new_backup_id(moment) for moment in reversed(moments)]
    assert sorted(ids) == ids[::-1]
    assert new_backup_id(moments[1], "3f9a") == "20261123T174501Z-3f9a"
    assert backup_time("20261123T174501Z-3f9a") == moments[1]
    # Another zone is converted to UTC, so ids from any clock sort together.
    cet = datetime.timezone(datetime.timedelta(hours=1))
    assert new_backup_id(datetime.datetime(2026, 11, 23, 18, 45, 1, tzinfo=cet), "0000") == (
        "20261123T174501Z-0000"
    )


def test_two_ids_of_the_same_second_differ() -> None:
    moment = datetime.datetime(2026, 11, 23, 17, 45, 1, tzinfo=UTC)
    assert len({new_backup_id(moment) for _ in range(50)}) > 1


@pytest.mark.parametrize(
    "bad", ["20261123T174501Z", "2026-11-23-3f9a", "20261123T174501Z-3F9A", "../x"]
)
def test_malformed_backup_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="backup id"):
        validate_backup_id(bad)


def test_derived_names_fit_postgres_identifiers() -> None:
    backup_id = "20261123T174501Z-3f9a"
    assert short_id(backup_id) == "20261123174501_3f9a"
    assert derived_database_name("odoo_acme", "pre_restore", backup_id) == (
        "odoo_acme_pre_restore_20261123174501_3f9a"
    )
    long_a, long_b = "odoo_" + "a" * 40 + "_x", "odoo_" + "a" * 40 + "_y"
    name_a = derived_database_name(long_a, "pre_restore", backup_id)
    name_b = derived_database_name(long_b, "pre_restore", backup_id)
    assert len(name_a.encode()) <= 63
    assert name_a.endswith("_pre_restore_20261123174501_3f9a")
    assert name_a != name_b  # a digest of the full name keeps long names apart
    assert scratch_database_name("acme", backup_id) == "verify_acme_20261123174501_3f9a"
    long_scratch = scratch_database_name("a" * 40 + "-prod", backup_id)
    assert len(long_scratch.encode()) <= 63
    assert long_scratch != scratch_database_name("a" * 40 + "-test", backup_id)


def test_odoo_majors() -> None:
    assert odoo_major("18.0") == 18
    assert odoo_major("17.0.1.3") == 17
    assert odoo_major("saas~18.2") == 18
    with pytest.raises(ValueError, match="not an Odoo version"):
        odoo_major("eighteen")


def test_manifest_round_trips_through_json() -> None:
    original = manifest()
    text = original.to_json()
    data = json.loads(text)
    assert data["format"] == "odoo-operator.backup/v1"
    assert data["parts"]["database.dump"] == {"size": 1234, "sha256": SHA_A}
    assert data["createdAt"] == "2026-11-23T17:45:01Z"
    assert data["rowCounts"] == {"account_move": 0, "ir_attachment": 3, "res_partner": 12}
    parsed = Manifest.from_json(text)
    assert parsed == original
    assert parsed.size == 1234 + 10240
    assert parsed.to_json() == text
    assert "ledger" not in data  # a database without accounting: as manifests always were


def test_the_books_figures_round_trip_as_exact_decimals() -> None:
    books = {"postedEntries": "3", "postedTotal": "1234567.89", "postedDebitMinusCredit": "0.00"}
    with_books = manifest(ledger=books)
    assert json.loads(with_books.to_json())["ledger"] == books
    assert Manifest.from_json(with_books.to_json()).ledger == books


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("parts"), "no field parts"),
        (lambda d: d["parts"].pop("filestore.tar"), "lists no filestore.tar"),
        (lambda d: d["parts"].update(extra={"size": 1, "sha256": SHA_A}), "unknown parts"),
        (lambda d: d["parts"]["database.dump"].update(sha256="xyz"), "sha256"),
        (lambda d: d["parts"]["database.dump"].update(size=-1), "non-negative"),
        (lambda d: d["parts"]["database.dump"].update(size=True), "non-negative"),
        (lambda d: d["parts"]["database.dump"].update(size="12"), "size must be a JSON int"),
        (lambda d: d.update(backupId="latest"), "backup id"),
        (lambda d: d.update(instance="../other"), "instance name"),
        (lambda d: d.update(odooVersion="master"), "Odoo version"),
        (lambda d: d.update(createdAt="yesterday"), "ISO 8601"),
        (lambda d: d.update(createdAt="2026-11-23T17:45:01"), "no time zone"),
        (lambda d: d.update(rowCounts={"res_partner": "12"}), "must be an integer"),
        (lambda d: d.update(modules="base"), "modules must be a JSON list"),
        (lambda d: d.update(format="something-else/v9"), "format"),
        (lambda d: d.pop("database"), "no field database"),
        (lambda d: d.update(ledger={"postedTotal": 12.5}), "ledger must map names to decimal"),
    ],
)
def test_malformed_manifests_are_refused_with_the_reason(mutate: Any, message: str) -> None:
    data = json.loads(manifest().to_json())
    mutate(data)
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '"manifest"', "{"])
def test_manifests_that_are_not_json_objects_are_refused(text: str) -> None:
    with pytest.raises(ManifestError):
        Manifest.from_json(text)


def test_filestore_members_must_stay_below_the_root() -> None:
    assert check_filestore_member("ab/abcdef", is_file=True, is_dir=False).as_posix() == (
        "ab/abcdef"
    )
    assert check_filestore_member("./ab/x", is_file=True, is_dir=False).as_posix() == "ab/x"
    for name in ("/etc/passwd", "../outside", "ab/../../outside", "ab\\x"):
        with pytest.raises(ValueError, match="filestore archive member"):
            check_filestore_member(name, is_file=True, is_dir=False)
    with pytest.raises(ValueError, match="neither a file nor a directory"):
        check_filestore_member("ab/link", is_file=False, is_dir=False)
