"""The operations journal: one append-only, hash-chained JSON-lines record per tenant.

Each line is one entry, a JSON object written with sorted keys and no spaces:

- ``seq``: 1, 2, 3, ... with no gap;
- ``time``: when the operator wrote it (UTC, milliseconds);
- ``instance``: the OdooInstance the entry is about (the journal outlives it);
- ``action``: what happened (an Event reason such as ``BackupSucceeded``, or ``SpecApplied``,
  ``Deleted``, ``AdmissionRefused``);
- ``details``: what an auditor needs to know about it, never a secret;
- ``prev``: the SHA-256 (hex) of the previous line's bytes, 64 zeros for the first.

Changing, removing or inserting any line breaks the chain at the next line, which no longer
names the hash of the line before it; :func:`verify_chain` reports the first such link. The
last line is covered by the blob's ``head`` metadata, written after each append.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
JOURNAL_PREFIX = "journal/"
HEAD_METADATA = "head"
# Keys never written into an entry's details, whatever a caller passes: secrets have no
# place in evidence that auditors and their tools read.
_SECRET_WORDS = ("password", "secret", "token", "key", "credential", "dsn")


def journal_blob_name(instance: str) -> str:
    """Where the journal of ``instance`` lives in the store."""
    return f"{JOURNAL_PREFIX}{instance}.jsonl"


def _safe(details: Mapping[str, Any]) -> dict[str, Any]:
    return {
        str(key): value
        for key, value in details.items()
        if not any(word in str(key).lower() for word in _SECRET_WORDS)
    }


def entry_line(
    seq: int,
    moment: datetime.datetime,
    instance: str,
    action: str,
    details: Mapping[str, Any],
    prev: str,
) -> bytes:
    """One entry as the bytes appended to the journal (newline included)."""
    entry = {
        "seq": seq,
        "time": moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds"),
        "instance": instance,
        "action": action,
        "details": _safe(details),
        "prev": prev,
    }
    return (json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode()


def line_hash(line: bytes) -> str:
    """The hash the next entry records: SHA-256 of the line without its newline."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify_chain` found: the entries read, the hash of the last one, and
    the first broken link (None when the chain holds)."""

    entries: int
    head: str
    broken: str | None = None
    broken_seq: int | None = None

    @property
    def holds(self) -> bool:
        """Whether every link holds."""
        return self.broken is None


def tail(data: bytes) -> tuple[int, str]:
    """The ``seq`` of the last entry and the hash the next one must record."""
    lines = [line for line in data.split(b"\n") if line]
    if not lines:
        return 0, GENESIS
    last = json.loads(lines[-1])
    return int(last["seq"]), line_hash(lines[-1])


def verify_chain(data: bytes, head: str | None = None) -> ChainReport:
    """Check every link of a journal; ``head`` is the blob's ``head`` metadata, which
    covers the last entry. The first broken link is named by entry number."""
    previous, count = GENESIS, 0
    for number, line in enumerate((line for line in data.split(b"\n") if line), start=1):
        try:
            entry = json.loads(line)
            seq, prev = int(entry["seq"]), str(entry["prev"])
        except (ValueError, KeyError, TypeError):
            return ChainReport(count, previous, f"entry {number} is not a journal entry", number)
        if seq != number:
            return ChainReport(
                count,
                previous,
                f"entry {number} says it is entry {seq}: entries were removed, inserted or "
                "reordered before it",
                number,
            )
        if prev != previous:
            what = (
                f"entry {number - 1} is not what entry {number} recorded: entry {number - 1} "
                "was altered after it was written (or entry "
                f"{number}'s link was)"
                if number > 1
                else "entry 1 does not start the chain"
            )
            return ChainReport(count, previous, what, max(number - 1, 1))
        previous, count = line_hash(line), number
    if head is not None and head != previous:
        return ChainReport(
            count,
            previous,
            f"entry {count} (the last) is not what the journal's head records: it was altered "
            "or entries were removed from the end",
            count,
        )
    return ChainReport(count, previous)
