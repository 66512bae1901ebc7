"""A short, read-only session on a tenant's own database, as the tenant's role.

The operator reads a tenant's database for two reasons (the health probe and the check for
default passwords); both must never write, never wait on a lock, and give up within their
time budget, whatever the tenant's data looks like.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow


@asynccontextmanager
async def read_only_transaction(
    conninfo: str, timeout: float, application_name: str
) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
    """A connection inside one read-only transaction; statements and lock waits are bounded
    by ``timeout`` seconds, and the server refuses any write. Closed on the way out."""
    statement_ms = max(1, int(timeout * 1000))
    target = make_conninfo(
        conninfo,
        connect_timeout=str(max(2, math.ceil(timeout))),
        application_name=application_name,
        options=f"-c statement_timeout={statement_ms} -c lock_timeout={statement_ms}"
        " -c default_transaction_read_only=on",
    )
    connection = await psycopg.AsyncConnection.connect(target, autocommit=False)
    try:
        await connection.set_read_only(True)
        async with connection.transaction():
            yield connection
    finally:
        await connection.close()
