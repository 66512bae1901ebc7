"""Fixtures shared by the integration modules that drive the PostgreSQL backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from odoo_operator.backends.postgres import PostgresAdmin


@pytest.fixture
def superuser(postgres_dsn: str) -> Iterator[psycopg.Connection]:
    """A plain superuser connection for setting up the server and reading pg_authid."""
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[PostgresAdmin]:
    """The backend with the superuser as its admin."""
    async with PostgresAdmin(postgres_dsn) as backend:
        yield backend
