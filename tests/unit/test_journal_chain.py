"""The operations journal's hash chain: any change, removal or insertion is found, and named."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from types import SimpleNamespace

import pytest

from odoo_operator.builders.journal import (
    GENESIS,
    entry_line,
    journal_blob_name,
    line_hash,
    tail,
    verify_chain,
)
from odoo_operator.model.config import BlobStoreRef
from odoo_operator.reconcile import journal as journal_module
from odoo_operator.reconcile.journal import spec_digest, spec_manager

T0 = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)


def journal(actions: list[str]) -> bytes:
    data, prev = b"", GENESIS
    for seq, action in enumerate(actions, start=1):
        line = entry_line(seq, T0, "books", action, {"message": f"{action} happened"}, prev)
        data, prev = data + line, line_hash(line)
    return data


def lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line]


def test_an_untouched_journal_holds_and_its_head_is_the_hash_of_the_last_entry() -> None:
    data = journal(["SpecApplied", "Ready", "BackupSucceeded", "Deleted"])
    report = verify_chain(data, head=line_hash(lines(data)[-1]))
    assert (report.holds, report.entries, report.broken_seq) == (True, 4, None)
    assert tail(data) == (4, report.head)
    assert tail(b"") == (0, GENESIS)


def test_each_entry_is_canonical_json_naming_its_predecessor() -> None:
    data = journal(["SpecApplied", "Ready"])
    first, second = (json.loads(line) for line in lines(data))
    assert first["prev"] == GENESIS
    assert second["prev"] == line_hash(lines(data)[0])
    assert first == {
        "action": "SpecApplied",
        "details": {"message": "SpecApplied happened"},
        "instance": "books",
        "prev": GENESIS,
        "seq": 1,
        "time": "2026-11-30T12:00:00.000+00:00",
    }
    assert lines(data)[0] == json.dumps(first, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize("altered", [1, 2, 3])
def test_an_altered_entry_is_named_as_the_first_broken_link(altered: int) -> None:
    data = lines(journal(["SpecApplied", "Ready", "BackupSucceeded", "Deleted"]))
    entry = json.loads(data[altered - 1])
    entry["details"]["message"] = "nothing happened"
    data[altered - 1] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    report = verify_chain(b"\n".join(data) + b"\n")
    assert not report.holds
    assert report.broken_seq == altered
    assert f"entry {altered} is not what entry {altered + 1} recorded" in str(report.broken)


def test_an_altered_last_entry_is_found_by_the_head() -> None:
    data = journal(["SpecApplied", "Ready"])
    head = line_hash(lines(data)[-1])
    forged = data.replace(b"Ready happened", b"Nothing happened")
    assert verify_chain(forged).holds  # without the head, the last entry cannot be checked
    report = verify_chain(forged, head=head)
    assert (report.holds, report.broken_seq) == (False, 2)
    assert "entry 2 (the last) is not what the journal's head records" in str(report.broken)


def test_a_removed_or_reordered_entry_breaks_the_numbering() -> None:
    data = lines(journal(["SpecApplied", "Ready", "BackupSucceeded"]))
    removed = verify_chain(b"\n".join([data[0], data[2]]) + b"\n")
    assert (removed.holds, removed.broken_seq) == (False, 2)
    assert "says it is entry 3" in str(removed.broken)
    garbage = verify_chain(data[0] + b"\nnot json\n")
    assert (garbage.holds, garbage.broken_seq) == (False, 2)


def test_no_secret_enters_an_entry_whatever_the_caller_passes() -> None:
    line = entry_line(
        1,
        T0,
        "books",
        "CredentialsRotated",
        {"rotation": "2026-q4", "database-password": "hunter2", "accountKey": "k", "dsn": "x"},
        GENESIS,
    )
    assert json.loads(line)["details"] == {"rotation": "2026-q4"}
    assert b"hunter2" not in line


def test_the_spec_digest_is_stable_and_the_manager_is_the_last_to_change_the_spec() -> None:
    assert spec_digest({"b": 1, "a": [1, 2]}) == spec_digest({"a": [1, 2], "b": 1})
    assert spec_digest({"a": 1}) != spec_digest({"a": 2})
    body = {
        "metadata": {
            "managedFields": [
                {"manager": "kubectl", "time": "2026-11-30T10:00:00Z", "fieldsV1": {"f:spec": {}}},
                {"manager": "odoo-operator", "time": "2026-11-30T12:00:00Z", "fieldsV1": {}},
                {
                    "manager": "argocd-controller",
                    "time": "2026-11-30T11:00:00Z",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}},
                },
            ]
        }
    }
    assert spec_manager(body) == "argocd-controller"
    assert spec_manager({"metadata": {}}) is None
    assert journal_blob_name("books") == "journal/books.jsonl"


def test_a_store_that_does_not_answer_holds_up_an_entry_a_few_seconds_at_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A blob store in an outage (the case backups are for) must not slow every Event."""

    class Hanging:
        async def read_bytes(self, name: str) -> bytes:
            await asyncio.sleep(3600)
            return b""

    async def blob(ref: BlobStoreRef) -> Hanging:
        return Hanging()

    config = SimpleNamespace(
        blob_store=lambda name: BlobStoreRef(name="main", secret="s", container="c")
    )
    clients = SimpleNamespace(config=config, blob=blob, journal_locks={}, journal_heads={})
    monkeypatch.setattr(journal_module, "JOURNAL_TIMEOUT_SECONDS", 0.2)
    started = time.monotonic()
    asyncio.run(journal_module.record(clients, "books", "Ready", {"message": "m"}))  # type: ignore[arg-type]
    assert time.monotonic() - started < 2.0
