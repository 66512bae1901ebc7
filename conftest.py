"""Fixtures shared by the unit, integration and e2e suites.

Each real component starts on first use, once per test session, unless an
environment variable points at an existing one:

- ``ODOO_OPERATOR_TEST_KUBECONFIG``: any conformant cluster instead of the local control plane;
- ``ODOO_OPERATOR_TEST_PG_DSN``: a PostgreSQL admin connection string;
- ``ODOO_OPERATOR_TEST_REDIS_URL``: a Redis URL of a user allowed to manage ACLs;
- ``ODOO_OPERATOR_TEST_BLOB_CONNECTION_STRING``: an Azure Blob (or Azurite) connection string.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from odoo_devstack.controlplane import ControlPlane
    from odoo_devstack.pitr import ArchivedPostgres

REPO = Path(__file__).parent

# The harness's fixtures: real Odoo runtimes and databases, and the real node's pod runner.
pytest_plugins = ("odoo_devstack.pytest_fixtures", "odoo_devstack.podrunner.fixtures")

_SUITE_MARKERS = {
    "unit": "unit",
    "integration": "integration",
    "e2e": "e2e",
    "conformance": "conformance",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test after its suite folder, so `-m unit` and friends select them."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO).parts
        for part in parts[:-1]:
            if part in _SUITE_MARKERS:
                item.add_marker(_SUITE_MARKERS[part])


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane | None]:
    """The local control plane, or None when the tests run against another cluster."""
    if os.environ.get("ODOO_OPERATOR_TEST_KUBECONFIG"):
        yield None
        return
    from odoo_devstack.controlplane import ControlPlane

    with ControlPlane() as local:
        yield local


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane | None) -> Path:
    """A kubeconfig with cluster-admin rights on a real cluster."""
    if control_plane is None:
        return Path(os.environ["ODOO_OPERATOR_TEST_KUBECONFIG"])
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def operator_kubeconfig(control_plane: ControlPlane | None, kubeconfig: Path) -> Path:
    """The operator's own identity where the cluster has one (the audit log tells it apart)."""
    return kubeconfig if control_plane is None else control_plane.operator_kubeconfig


@pytest.fixture(scope="session")
def k8s(kubeconfig: Path) -> Iterator[object]:
    """A synchronous Kubernetes API client (tests only; the operator is async)."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """libpq connection string of a PostgreSQL superuser."""
    existing = os.environ.get("ODOO_OPERATOR_TEST_PG_DSN")
    if existing:
        yield existing
        return
    from odoo_devstack.services import PostgresServer

    server = PostgresServer().start()
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis user that may manage ACLs."""
    existing = os.environ.get("ODOO_OPERATOR_TEST_REDIS_URL")
    if existing:
        yield existing
        return
    from odoo_devstack.services import RedisServer

    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def blob_connection_string() -> Iterator[str]:
    """Connection string of an Azure Blob Storage account (Azurite by default)."""
    existing = os.environ.get("ODOO_OPERATOR_TEST_BLOB_CONNECTION_STRING")
    if existing:
        yield existing
        return
    from odoo_devstack.services import AzuriteServer

    server = AzuriteServer().start()
    try:
        yield server.connection_string
    finally:
        server.stop()


@pytest.fixture(scope="session")
def archived_postgres() -> Iterator[ArchivedPostgres]:
    """A PostgreSQL server archiving its WAL with pgBackRest to an Azurite of its own
    (HTTPS), with its first full pgBackRest backup taken: point-in-time recovery's server."""
    from odoo_devstack.pitr import ArchivedPostgres

    server = ArchivedPostgres().start()
    try:
        yield server
    finally:
        server.stop()


_ADMIN_ROLE_ATTRIBUTES = (
    "SELECT rolname::text, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,"
    " rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil::text"
    " FROM pg_catalog.pg_roles WHERE rolname = current_user"
)


@pytest.fixture(scope="module", autouse=True)
def admin_role_untouched(request: pytest.FixtureRequest) -> Iterator[None]:
    """The PostgreSQL server's admin role keeps every attribute through each test module.

    No manifest may alter the server's own administrator (a tenant database named
    ``postgres`` once made the operator run ``ALTER ROLE postgres NOSUPERUSER``), so every
    module that uses the server is checked before and after, whatever it tests.
    """
    uses_postgres = any(
        "postgres_dsn" in getattr(item, "fixturenames", ())
        for item in request.session.items
        if item.module is request.module
    )
    if not uses_postgres:
        yield
        return
    import psycopg

    dsn = request.getfixturevalue("postgres_dsn")
    with psycopg.connect(dsn, autocommit=True) as connection:
        before = connection.execute(_ADMIN_ROLE_ATTRIBUTES).fetchone()
    yield
    with psycopg.connect(dsn, autocommit=True) as connection:
        after = connection.execute(_ADMIN_ROLE_ATTRIBUTES).fetchone()
    assert after == before, f"the server's admin role changed during {request.module.__name__}"


if TYPE_CHECKING:
    from odoo_devstack.tls import ServiceTlsEndpoints


@pytest.fixture(scope="session")
def service_tls(postgres_dsn: str, redis_url: str) -> Iterator[ServiceTlsEndpoints]:
    """The TLS side of the local PostgreSQL and Redis: their CA, Redis's TLS port, and
    listeners presenting a certificate for the wrong name or (PostgreSQL) no TLS at all.

    Only the local data services have a CA the tests know, so an existing server named by
    ``ODOO_OPERATOR_TEST_PG_DSN`` or ``ODOO_OPERATOR_TEST_REDIS_URL`` skips these tests.
    """
    if os.environ.get("ODOO_OPERATOR_TEST_PG_DSN") or os.environ.get(
        "ODOO_OPERATOR_TEST_REDIS_URL"
    ):
        pytest.skip("TLS endpoints exist only for the local data services")
    from odoo_devstack.tls import ServiceTlsEndpoints

    with ServiceTlsEndpoints.start(postgres_dsn, redis_url) as endpoints:
        yield endpoints
