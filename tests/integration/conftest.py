"""Fixtures shared by the integration modules: the PostgreSQL backend, a blob container."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from azure.storage.blob.aio import ContainerClient

from odoo_operator.backends.blobstore import BlobStore
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


@pytest.fixture
async def store(blob_connection_string: str) -> AsyncIterator[BlobStore]:
    """A BlobStore on a container of its own, deleted afterwards."""
    container = f"test-{uuid.uuid4().hex[:12]}"
    blob_store = BlobStore.from_connection_string(blob_connection_string, container)
    try:
        assert await blob_store.ensure_container() is True
        assert await blob_store.ensure_container() is False
        yield blob_store
    finally:
        await blob_store.close()
    async with ContainerClient.from_connection_string(blob_connection_string, container) as client:
        await client.delete_container()
