"""Read-only instruments that count what the operator changed.

Tests and benchmarks use them to prove that an unchanged tenant costs no
writes: not to the Kubernetes API (the apiserver's audit log, by user), not to
PostgreSQL's catalogs (row versions), not to Redis ACLs (command statistics).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import redis

_WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def audited_writes(audit_log: Path, username: str) -> list[dict[str, Any]]:
    """The completed write requests ``username`` sent, from the apiserver's JSON audit log."""
    if not audit_log.exists():
        return []
    writes = []
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        if (
            event.get("stage") == "ResponseComplete"
            and event.get("user", {}).get("username") == username
            and event.get("verb") in _WRITE_VERBS
        ):
            writes.append(event)
    return writes


def describe_request(event: dict[str, Any]) -> str:
    """One audit event as ``verb resource[/subresource] namespace/name``, for failure messages."""
    ref = event.get("objectRef", {})
    resource = ref.get("resource", "?") + (f"/{ref['subresource']}" if "subresource" in ref else "")
    return f"{event.get('verb')} {resource} {ref.get('namespace', '')}/{ref.get('name', '')}"


def catalog_row_versions(
    connection: psycopg.Connection, role: str, database: str
) -> tuple[str, ...]:
    """The xmin of a role's and a database's catalog rows, and of the role's memberships.

    Any ALTER, GRANT or REVOKE writes a new row version, and so changes an xmin.
    Reading pg_authid needs a superuser connection.
    """
    row = connection.execute(
        "SELECT (SELECT xmin::text FROM pg_authid WHERE rolname = %(role)s),"
        " (SELECT xmin::text FROM pg_database WHERE datname = %(database)s),"
        " (SELECT string_agg(m.xmin::text, ',' ORDER BY m.xmin::text) FROM pg_auth_members m"
        "  JOIN pg_roles r ON r.oid = m.roleid WHERE r.rolname = %(role)s)",
        {"role": role, "database": database},
    ).fetchone()
    if row is None:
        raise LookupError(f"no catalog rows for role {role}")
    return tuple(str(value) for value in row)


def acl_writes(url: str) -> int:
    """How many ACL SETUSER and DELUSER commands a Redis server has run since it started."""
    with redis.Redis.from_url(url) as connection:
        stats: dict[str, Any] = connection.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_acl|{command}", {}).get("calls", 0))
        for command in ("setuser", "deluser")
    )
