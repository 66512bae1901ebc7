"""The backup engine against real PostgreSQL and Azurite: backup, list, verify, restore, refusals.

Each test gets its own container and its own tenant: a role owning a small Odoo-like
database (partners, moves, users, attachments with ``store_fname``, installed modules, the
``database.uuid`` parameter) and a filestore directory with the attachments' files. Every
test removes its databases, role and container, with plain SQL and the SDK rather than the
code under test.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from odoo_operator.backends import pgtools
from odoo_operator.backends.blobstore import BlobStore, BlobStoreUnavailable
from odoo_operator.builders.backup_layout import (
    DATABASE_PART,
    FILESTORE_PART,
    derived_database_name,
    manifest_name,
    new_backup_id,
    part_name,
    scratch_database_name,
    scratch_mark,
    short_id,
)
from odoo_operator.engine import (
    BackupFailed,
    DatabaseAccess,
    RestoreError,
    RestoreRefused,
    RestoreTarget,
    VerificationError,
    delete_backup,
    list_backups,
    read_manifest,
    restore_backup,
    run_backup,
    verify_backup,
)
from odoo_operator.engine.filestore import write_filestore_tar
from odoo_operator.engine.restore import (
    filestore_restore_paths,
    stage_filestore,
    swap_in_filestore,
)

PARTNERS, MOVES, USERS = 25, 7, 2
FILES = {
    "3f/3f2a9c1e0b7d4c5a8e6f1d2c3b4a59687f6e5d4c": b"%PDF-1.7 invoice INV/2026/0001\n",
    "a0/a01b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3": b"\x89PNG logo" + bytes(range(256)),
    "ff/ff00ee11dd22cc33bb44aa5599668877ff00ee11": os.urandom(300_000),
}
NEW_UUID = "00000000-0000-4000-8000-000000000001"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@dataclass
class Tenant:
    """One tenant made for a test."""

    instance: str
    role: str
    password: str
    database: str
    filestore: Path
    admin_dsn: str

    @property
    def access(self) -> DatabaseAccess:
        dsn = conninfo.make_conninfo(
            self.admin_dsn, user=self.role, password=self.password, dbname=self.database
        )
        return DatabaseAccess(conninfo=dsn, database=self.database)

    def target(self, **changes: object) -> RestoreTarget:
        fields: dict[str, object] = {
            "admin_conninfo": self.admin_dsn,
            "database": self.database,
            "owner_role": self.role,
            "filestore": self.filestore,
            "expected_instance": self.instance,
            "target_odoo_version": "18.0",
            "neutralize": False,
        }
        fields.update(changes)
        return RestoreTarget(**fields)  # type: ignore[arg-type]


NewTenant = Callable[..., Tenant]


@pytest.fixture
def superuser(postgres_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        yield connection


def databases_like(superuser: psycopg.Connection, prefix: str) -> set[str]:
    rows = superuser.execute(
        "SELECT datname::text FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
    ).fetchall()
    return {row[0] for row in rows}


def query(dsn: str, database: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(conninfo.make_conninfo(dsn, dbname=database)) as connection:
        return connection.execute(statement, params or None).fetchall()  # type: ignore[arg-type]


def populate(dsn: str, tenant_dsn: str) -> None:
    """An Odoo-like schema and data, created by the tenant role itself."""
    del dsn
    with psycopg.connect(tenant_dsn, autocommit=True) as connection:
        connection.execute(
            """
            CREATE TABLE res_partner (id serial PRIMARY KEY, name text NOT NULL);
            CREATE TABLE res_users (id serial PRIMARY KEY, login text UNIQUE NOT NULL,
                                    partner_id int REFERENCES res_partner(id));
            CREATE TABLE account_move (id serial PRIMARY KEY, name text, amount numeric(16,2),
                                       partner_id int REFERENCES res_partner(id));
            CREATE TABLE ir_attachment (id serial PRIMARY KEY, name text, store_fname text,
                                        url text);
            CREATE TABLE ir_module_module (id serial PRIMARY KEY, name text UNIQUE, state text);
            CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key text UNIQUE,
                                              value text);
            CREATE INDEX ON ir_attachment (store_fname);
            """
        )
        connection.execute(
            "INSERT INTO res_partner (name) SELECT 'Partner ' || g FROM generate_series(1, %s) g",
            (PARTNERS,),
        )
        connection.execute(
            "INSERT INTO res_users (login, partner_id) VALUES ('admin', 1), ('jane', 2)"
        )
        connection.execute(
            "INSERT INTO account_move (name, amount, partner_id)"
            " SELECT 'INV/2026/' || g, g * 100.25, g FROM generate_series(1, %s) g",
            (MOVES,),
        )
        for index, fname in enumerate(FILES):
            connection.execute(
                "INSERT INTO ir_attachment (name, store_fname) VALUES (%s, %s)",
                (f"file{index}", fname),
            )
        # A URL attachment has no file.
        connection.execute(
            "INSERT INTO ir_attachment (name, url) VALUES ('website', 'https://example.com')"
        )
        connection.execute(
            "INSERT INTO ir_module_module (name, state) VALUES"
            " ('base', 'installed'), ('account', 'installed'), ('sale', 'uninstalled')"
        )
        connection.execute(
            "INSERT INTO ir_config_parameter (key, value) VALUES ('database.uuid', %s)",
            (str(uuid.uuid4()),),
        )


@pytest.fixture
def new_tenant(
    postgres_dsn: str, superuser: psycopg.Connection, tmp_path: Path
) -> Iterator[NewTenant]:
    """Makes tenants; drops every database named after them, their roles and admins after."""
    made: list[Tenant] = []
    roles: list[str] = []

    def make(admin_dsn: str | None = None, extra_roles: tuple[str, ...] = ()) -> Tenant:
        role, password = unique("tenant"), uuid.uuid4().hex
        superuser.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        database = f"odoo_{role}"
        superuser.execute(
            sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(database), sql.Identifier(role)
            )
        )
        superuser.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database))
        )
        roles.append(role)
        roles.extend(extra_roles)
        tenant_dsn = conninfo.make_conninfo(
            postgres_dsn, user=role, password=password, dbname=database
        )
        populate(postgres_dsn, tenant_dsn)
        filestore = tmp_path / role / "filestore" / database
        for fname, content in FILES.items():
            (filestore / fname).parent.mkdir(parents=True, exist_ok=True)
            (filestore / fname).write_bytes(content)
        tenant = Tenant(
            instance=role.replace("_", "-"),
            role=role,
            password=password,
            database=database,
            filestore=filestore,
            admin_dsn=admin_dsn or postgres_dsn,
        )
        made.append(tenant)
        return tenant

    yield make
    for tenant in made:
        for name in databases_like(superuser, tenant.database):
            superuser.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    for role in reversed(roles):
        superuser.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


async def blob_sha256(store: BlobStore, name: str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    async for chunk in store.download_stream(name):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


async def backup(store: BlobStore, tenant: Tenant, version: str = "18.0") -> str:
    return await backup_with_id(store, tenant, new_backup_id(), version)


async def backup_with_id(
    store: BlobStore, tenant: Tenant, backup_id: str, version: str = "18.0"
) -> str:
    await run_backup(
        store, tenant.instance, backup_id, tenant.access, tenant.filestore, version, "manual"
    )
    return backup_id


# --- backup and listing ------------------------------------------------------------------


async def test_a_backup_is_listed_with_its_row_counts_modules_and_checksums(
    store: BlobStore, new_tenant: NewTenant
) -> None:
    tenant = new_tenant()
    backup_id = new_backup_id()
    manifest = await run_backup(
        store, tenant.instance, backup_id, tenant.access, tenant.filestore, "18.0", "scheduled"
    )
    assert manifest.row_counts == {
        "res_partner": PARTNERS,
        "account_move": MOVES,
        "ir_attachment": len(FILES) + 1,
        "res_users": USERS,
    }  # account_move_line does not exist here, so it is not counted
    assert list(manifest.modules) == ["account", "base"]
    assert manifest.database == tenant.database
    assert manifest.postgres_server_version.startswith("15")
    assert (manifest.odoo_version, manifest.reason) == ("18.0", "scheduled")
    assert manifest.created_at <= manifest.completed_at
    for part in (DATABASE_PART, FILESTORE_PART):
        stored = await blob_sha256(store, part_name(tenant.instance, backup_id, part))
        assert stored == (manifest.parts[part].size, manifest.parts[part].sha256)
    assert await store.list_names(f"{tenant.instance}/") == [
        f"{tenant.instance}/{backup_id}/database.dump",
        f"{tenant.instance}/{backup_id}/filestore.tar",
        f"{tenant.instance}/{backup_id}/manifest.json",
    ]
    second = await backup(store, tenant)
    listed = await list_backups(store, tenant.instance)
    assert [m.backup_id for m in listed] == [second, backup_id]  # newest first
    assert listed[-1] == manifest
    # Running the same backup id again (a retried Job) returns the finished backup.
    again = await run_backup(
        store, tenant.instance, backup_id, tenant.access, tenant.filestore, "18.0", "scheduled"
    )
    assert again == manifest


async def test_a_tenant_without_filestore_gets_an_empty_archive(
    store: BlobStore, new_tenant: NewTenant, tmp_path: Path
) -> None:
    tenant = new_tenant()
    manifest = await run_backup(
        store, tenant.instance, new_backup_id(), tenant.access, None, "18.0", "manual"
    )
    assert manifest.parts[FILESTORE_PART].size == 10240  # the end-of-archive blocks only
    missing = await run_backup(
        store, tenant.instance, new_backup_id(), tenant.access, tmp_path / "nope", "18.0", "manual"
    )
    assert missing.parts[FILESTORE_PART].sha256 == manifest.parts[FILESTORE_PART].sha256


async def test_delete_backup_removes_the_manifest_and_every_part(
    store: BlobStore, new_tenant: NewTenant
) -> None:
    tenant = new_tenant()
    backup_id = await backup(store, tenant)
    assert await delete_backup(store, tenant.instance, backup_id) is True
    assert await store.list_names(f"{tenant.instance}/") == []
    assert await list_backups(store, tenant.instance) == []
    assert await delete_backup(store, tenant.instance, backup_id) is False


# --- failed backups --------------------------------------------------------------------------


async def test_a_backup_of_a_missing_database_fails_and_leaves_nothing(
    store: BlobStore, new_tenant: NewTenant
) -> None:
    tenant = new_tenant()
    access = DatabaseAccess(
        conninfo.make_conninfo(tenant.access.conninfo, dbname="no_such_db"), "no_such_db"
    )
    with pytest.raises(BackupFailed, match="no_such_db") as failure:
        await run_backup(
            store, tenant.instance, new_backup_id(), access, tenant.filestore, "18.0", "manual"
        )
    assert tenant.password not in str(failure.value)
    assert await store.list_names(f"{tenant.instance}/") == []
    assert await list_backups(store, tenant.instance) == []


async def test_a_dump_failing_midway_leaves_no_part_and_no_manifest(
    store: BlobStore, new_tenant: NewTenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_dump dies after 6 MiB (more than a block staged) while the filestore part is
    stored concurrently: the stored part is deleted, no manifest appears, and the tool's
    message reaches the error without the password it was given."""
    tenant = new_tenant()
    bindir = tmp_path / "fake-bin"
    bindir.mkdir()
    fake = bindir / "pg_dump"
    fake.write_text(
        "#!/bin/sh\n"
        "head -c 6291456 /dev/zero\n"
        "sleep 0.5\n"
        'echo "pg_dump: error: connection lost (password was $PGPASSWORD)" >&2\n'
        "exit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv(pgtools.BINDIR_VARIABLE, str(bindir))
    backup_id = new_backup_id()
    with pytest.raises(BackupFailed, match="connection lost") as failure:
        await run_backup(
            store, tenant.instance, backup_id, tenant.access, tenant.filestore, "18.0", "manual"
        )
    assert tenant.password not in str(failure.value)
    assert "<password>" in str(failure.value)
    assert await store.list_names(f"{tenant.instance}/") == []
    assert not await store.exists(manifest_name(tenant.instance, backup_id))
    assert await list_backups(store, tenant.instance) == []


async def test_a_cancelled_backup_kills_pg_dump_and_leaves_nothing(
    store: BlobStore, new_tenant: NewTenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator shutting down mid-backup: pg_dump is killed, the parts are deleted."""
    tenant = new_tenant()
    bindir = tmp_path / "slow-bin"
    bindir.mkdir()
    pid_file = tmp_path / "pg_dump.pid"
    fake = bindir / "pg_dump"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nhead -c 5000000 /dev/zero\nexec sleep 60\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv(pgtools.BINDIR_VARIABLE, str(bindir))
    backup_id = new_backup_id()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(backup_with_id(store, tenant, backup_id), timeout=3)
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert await store.list_names(f"{tenant.instance}/") == []
    assert await list_backups(store, tenant.instance) == []


async def test_an_unreachable_store_fails_the_backup_without_leaking_the_key(
    store: BlobStore, new_tenant: NewTenant, blob_connection_string: str
) -> None:
    tenant = new_tenant()
    key = next(
        item.split("=", 1)[1]
        for item in blob_connection_string.split(";")
        if item.startswith("AccountKey=")
    )
    # Same account and key, on a port where nothing listens.
    dead = blob_connection_string.replace(
        "BlobEndpoint=http://127.0.0.1:", "BlobEndpoint=http://127.0.0.1:1"
    )
    unreachable = BlobStore.from_connection_string(dead, store.container, retry_total=0)
    try:
        with pytest.raises(BackupFailed, match="is unavailable") as failure:
            await backup(unreachable, tenant)
        assert key not in str(failure.value)
        assert store.container in str(failure.value)
        with pytest.raises(BlobStoreUnavailable) as direct:
            await unreachable.list_names("")
        assert key not in str(direct.value)
    finally:
        await unreachable.close()
    assert await list_backups(store, tenant.instance) == []


# --- verification ----------------------------------------------------------------------------


async def test_a_good_backup_verifies_and_its_scratch_database_is_dropped(
    store: BlobStore, new_tenant: NewTenant, superuser: psycopg.Connection, postgres_dsn: str
) -> None:
    tenant = new_tenant()
    backup_id = await backup(store, tenant)
    verification = await verify_backup(store, tenant.instance, backup_id, postgres_dsn)
    assert verification.ok, verification.reason
    assert "3 referenced filestore files match" in verification.reason
    assert verification.details["attachments"] == {
        "referenced": len(FILES),
        "missing": 0,
        "examples": [],
    }
    assert verification.details["rowCounts"]["res_partner"] == {
        "expected": PARTNERS,
        "found": PARTNERS,
    }
    assert all(part["ok"] for part in verification.details["parts"].values())
    assert verification.duration_seconds > 0
    assert databases_like(superuser, scratch_database_name(tenant.instance, backup_id)) == set()


def _keep_books(postgres_dsn: str, tenant: Tenant) -> None:
    """Odoo 13+'s accounting columns on the test schema, made by the tenant: posted and draft
    entries, and their lines."""
    login = conninfo.make_conninfo(
        postgres_dsn, user=tenant.role, password=tenant.password, dbname=tenant.database
    )
    with psycopg.connect(login, autocommit=True) as books:
        books.execute(
            """
            ALTER TABLE account_move ADD COLUMN state text NOT NULL DEFAULT 'posted',
                                     ADD COLUMN amount_total_signed numeric;
            UPDATE account_move SET amount_total_signed = amount,
                                    state = CASE WHEN id % 4 = 0 THEN 'draft' ELSE 'posted' END;
            CREATE TABLE account_move_line (id serial PRIMARY KEY, move_id int,
                                            parent_state text, debit numeric, credit numeric);
            INSERT INTO account_move_line (move_id, parent_state, debit, credit)
                SELECT id, state, amount, 0 FROM account_move
                UNION ALL SELECT id, state, 0, amount FROM account_move;
            """
        )


async def test_a_verification_finds_the_books_of_the_backup_again(
    store: BlobStore, new_tenant: NewTenant, superuser: psycopg.Connection, postgres_dsn: str
) -> None:
    tenant = new_tenant()
    _keep_books(postgres_dsn, tenant)
    backup_id = await backup(store, tenant)
    manifest = await read_manifest(store, tenant.instance, backup_id)
    posted = [n for n in range(1, MOVES + 1) if n % 4 != 0]
    assert manifest.ledger == {
        "postedEntries": str(len(posted)),
        "postedTotal": f"{sum(n * 100.25 for n in posted):.2f}",
        "postedDebitMinusCredit": "0.00",
    }
    verification = await verify_backup(store, tenant.instance, backup_id, postgres_dsn)
    assert verification.ok, verification.reason
    assert verification.details["ledger"]["postedTotal"]["found"] == manifest.ledger["postedTotal"]
    assert f"and the books ({len(posted)} posted entries totalling" in verification.reason

    # Books that do not come back as they were fail the verification, naming the figure.
    altered = replace(manifest, ledger={**manifest.ledger, "postedTotal": "1.00"})
    await store.upload_bytes(manifest_name(tenant.instance, backup_id), altered.to_json().encode())
    failed = await verify_backup(store, tenant.instance, backup_id, postgres_dsn)
    assert not failed.ok
    assert failed.reason.startswith("the books differ from the manifest after the restore: ")
    assert f"postedTotal {manifest.ledger['postedTotal']} for 1.00" in failed.reason


async def test_a_tampered_part_fails_verification_and_the_restore_is_refused(
    store: BlobStore, new_tenant: NewTenant, superuser: psycopg.Connection, postgres_dsn: str
) -> None:
    tenant = new_tenant()
    backup_id = await backup(store, tenant)
    # The target changes after the backup; a refused restore must leave it exactly so.
    query(postgres_dsn, tenant.database, "DELETE FROM account_move WHERE id > 3 RETURNING id")
    (tenant.filestore / "new.txt").write_text("written after the backup")
    files_before = tree(tenant.filestore)
    dump = part_name(tenant.instance, backup_id, DATABASE_PART)
    original = b"".join([chunk async for chunk in store.download_stream(dump)])
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF
    await store.upload_bytes(dump, bytes(tampered))

    verification = await verify_backup(store, tenant.instance, backup_id, postgres_dsn)
    assert not verification.ok
    assert "part database.dump" in verification.reason
    assert "does not match its manifest" in verification.reason
    assert verification.details["parts"]["database.dump"]["ok"] is False
    assert databases_like(superuser, scratch_database_name(tenant.instance, backup_id)) == set()

    with pytest.raises(RestoreRefused, match=r"database\.dump .*does not match its manifest"):
        await restore_backup(store, tenant.instance, backup_id, tenant.target())
    assert databases_like(superuser, tenant.database) == {tenant.database}
    assert query(postgres_dsn, tenant.database, "SELECT count(*) FROM account_move") == [(3,)]
    assert tree(tenant.filestore) == files_before
    assert sorted(p.name for p in tenant.filestore.parent.iterdir()) == [tenant.database]


async def test_a_tampered_filestore_archive_is_refused(
    store: BlobStore, new_tenant: NewTenant, postgres_dsn: str
) -> None:
    tenant = new_tenant()
    backup_id = await backup(store, tenant)
    await store.upload_bytes(
        part_name(tenant.instance, backup_id, FILESTORE_PART), b"\0" * 512 + b"junk"
    )
    verification = await verify_backup(store, tenant.instance, backup_id, postgres_dsn)
    assert not verification.ok
    assert "part filestore.tar" in verification.reason
    with pytest.raises(RestoreRefused, match=r"filestore\.tar"):
        await restore_backup(store, tenant.instance, backup_id, tenant.target())


async def test_a_file_missing_from_the_filestore_fails_verification(
    store: BlobStore, new_tenant: NewTenant, postgres_dsn: str
) -> None:
    tenant = new_tenant()
    lost = next(iter(FILES))
    (tenant.filestore / lost).unlink()
    backup_id = await backup(store, tenant)
    verification = await verify_backup(store, tenant.instance, backup_id, postgres_dsn)
    assert not verification.ok
    assert verification.reason.startswith("1 of 3 files referenced by ir_attachment")
    assert verification.details["attachments"]["examples"] == [lost]


# --- restore ---------------------------------------------------------------------------------


async def test_a_backup_of_another_instance_is_refused(
    store: BlobStore, new_tenant: NewTenant, superuser: psycopg.Connection
) -> None:
    source, target = new_tenant(), new_tenant()
    backup_id = await backup(store, source)
    with pytest.raises(RestoreRefused, match=f"backup of instance {source.instance}, not of"):
        await restore_backup(store, source.instance, backup_id, target.target())
    assert databases_like(superuser, target.database) == {target.database}


async def test_a_backup_of_a_newer_odoo_is_refused(
    store: BlobStore, new_tenant: NewTenant, superuser: psycopg.Connection
) -> None:
    tenant = new_tenant()
    backup_id = await backup(store, tenant, version="18.0")
    with pytest.raises(RestoreRefused, match=r"Odoo 18\.0, newer than the target's 17\.0"):
        await restore_backup(
            store, tenant.instance, backup_id, tenant.target(target_odoo_version="17.0")
        )
    assert databases_like(superuser, tenant.database) == {tenant.database}


async def test_a_restore_into_a_foreign_database_or_for_a_missing_role_is_refused(
    store: BlobStore, new_tenant: NewTenant, postgres_dsn: str
) -> None:
    tenant, other = new_tenant(), new_tenant()
    backup_id = await backup(store, tenant)
    with pytest.raises(RestoreRefused, match=f"is owned by {other.role}, not by {tenant.role}"):
        await restore_backup(
            store, tenant.instance, backup_id, tenant.target(database=other.database)
        )
    with pytest.raises(RestoreRefused, match="owner role nobody_here does not exist"):
        await restore_backup(
            store, tenant.instance, backup_id, tenant.target(owner_role="nobody_here")
        )
    assert query(postgres_dsn, other.database, "SELECT count(*) FROM account_move") == [(MOVES,)]


async def test_a_scratch_database_left_under_another_backup_id_is_dropped_by_the_next_one(
    store: BlobStore, new_tenant: NewTenant, superuser: psycopg.Connection, postgres_dsn: str
) -> None:
    """An operator killed during a verification leaves its scratch database; the backup is
    taken again under a new id, so the name never comes back: the mark finds it."""
    tenant, neighbour = new_tenant(), new_tenant()
    backup_id = await backup(store, tenant)
    leftovers = {
        scratch_database_name(tenant.instance, "20260101T000000Z-dead"): tenant.instance,
        scratch_database_name(neighbour.instance, "20260101T000000Z-dead"): neighbour.instance,
    }
    for name, instance in leftovers.items():
        superuser.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        superuser.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(scratch_mark(instance))
            )
        )
    unmarked = scratch_database_name(tenant.instance, "20260101T000001Z-0001")
    superuser.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(unmarked)))
    try:
        assert (await verify_backup(store, tenant.instance, backup_id, postgres_dsn)).ok
        mine, theirs = list(leftovers)
        assert databases_like(superuser, mine) == set()
        # Another tenant's is its own verifications' business; an unmarked one nobody's.
        assert databases_like(superuser, theirs) == {theirs}
        assert databases_like(superuser, unmarked) == {unmarked}
    finally:
        for name in (*leftovers, unmarked):
            superuser.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


async def test_a_verification_does_not_pull_a_running_one_from_under_it(
    store: BlobStore, new_tenant: NewTenant, superuser: psycopg.Connection, postgres_dsn: str
) -> None:
    tenant = new_tenant()
    backup_id = await backup(store, tenant)
    scratch = scratch_database_name(tenant.instance, backup_id)
    superuser.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    with (
        psycopg.connect(conninfo.make_conninfo(postgres_dsn, dbname=scratch)),
        pytest.raises(VerificationError, match="another verification"),
    ):
        await verify_backup(store, tenant.instance, backup_id, postgres_dsn)
    # Left over without sessions, it is dropped and the verification goes ahead.
    assert (await verify_backup(store, tenant.instance, backup_id, postgres_dsn)).ok
    assert databases_like(superuser, scratch) == set()


@pytest.fixture
def restricted_admin(
    postgres_dsn: str, superuser: psycopg.Connection
) -> Iterator[Callable[[str], str]]:
    """DSN of a non-superuser admin with CREATEDB, member of the given tenant role: what the
    operator has on Azure Database for PostgreSQL flexible server."""
    made: list[str] = []

    def make(tenant_role: str) -> str:
        name, password = unique("admin"), uuid.uuid4().hex
        superuser.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        superuser.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(tenant_role), sql.Identifier(name))
        )
        made.append(name)
        return conninfo.make_conninfo(postgres_dsn, user=name, password=password)

    yield make
    for name in made:
        superuser.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        superuser.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.mark.parametrize("admin_kind", ["superuser", "restricted"])
async def test_restore_swaps_in_the_backup_and_keeps_what_it_replaced(
    store: BlobStore,
    new_tenant: NewTenant,
    superuser: psycopg.Connection,
    postgres_dsn: str,
    restricted_admin: Callable[[str], str],
    admin_kind: str,
) -> None:
    tenant = new_tenant()
    if admin_kind == "restricted":
        tenant.admin_dsn = restricted_admin(tenant.role)
    backup_id = await backup(store, tenant)
    files_at_backup = tree(tenant.filestore)
    # After the backup: rows lost, a file replaced, a file added; and a live session.
    query(postgres_dsn, tenant.database, "DELETE FROM account_move RETURNING id")
    (tenant.filestore / next(iter(FILES))).write_bytes(b"overwritten")
    (tenant.filestore / "zz").mkdir()
    (tenant.filestore / "zz" / "later").write_bytes(b"added later")
    files_after = tree(tenant.filestore)
    session = psycopg.connect(tenant.access.conninfo)

    neutralization = [
        sql.SQL("UPDATE {} SET value = {} WHERE key = 'database.uuid'").format(
            sql.Identifier("ir_config_parameter"), sql.Literal(NEW_UUID)
        )
    ]
    outcome = await restore_backup(
        store,
        tenant.instance,
        backup_id,
        tenant.target(neutralize=True, neutralization=neutralization),
    )
    kept = derived_database_name(tenant.database, "pre_restore", backup_id)
    assert outcome.kept_database == kept
    assert outcome.kept_filestore == (
        tenant.filestore.parent / f"{tenant.database}.pre_restore_{short_id(backup_id)}"
    )
    assert outcome.neutralized is True
    assert outcome.row_counts["account_move"] == MOVES
    assert _session_was_ended(session)

    # The restored database: the backup's rows, owned by the tenant role, neutralized.
    assert query(postgres_dsn, tenant.database, "SELECT count(*) FROM account_move") == [(MOVES,)]
    assert query(
        postgres_dsn,
        tenant.database,
        "SELECT value FROM ir_config_parameter WHERE key = 'database.uuid'",
    ) == [(NEW_UUID,)]
    owners = query(
        postgres_dsn,
        "postgres",
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = %s",
        tenant.database,
    )
    assert owners == [(tenant.role,)]
    table_owners = query(
        postgres_dsn,
        tenant.database,
        "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = 'public'",
    )
    assert table_owners == [(tenant.role,)]
    # The tenant logs in to it with its own password, as Odoo will.
    with psycopg.connect(tenant.access.conninfo) as connection:
        assert connection.execute("SELECT count(*) FROM res_partner").fetchone() == (PARTNERS,)
        connection.execute("INSERT INTO res_partner (name) VALUES ('after restore')")

    # What was replaced is kept, not dropped.
    assert databases_like(superuser, tenant.database) == {tenant.database, kept}
    assert query(postgres_dsn, kept, "SELECT count(*) FROM account_move") == [(0,)]
    assert tree(tenant.filestore) == files_at_backup
    assert outcome.kept_filestore is not None
    assert tree(outcome.kept_filestore) == files_after
    assert sorted(p.name for p in tenant.filestore.parent.iterdir()) == sorted(
        [tenant.database, outcome.kept_filestore.name]
    )

    # Restoring the same backup again would need the kept names: refused, nothing touched.
    with pytest.raises(RestoreRefused, match=f"{kept} exists"):
        await restore_backup(store, tenant.instance, backup_id, tenant.target())
    session.close()


def _session_was_ended(session: psycopg.Connection) -> bool:
    try:
        session.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


async def test_restore_into_a_new_database_keeps_nothing(
    store: BlobStore, new_tenant: NewTenant, superuser: psycopg.Connection, postgres_dsn: str
) -> None:
    """A clone: another instance's backup into a database and filestore that do not exist."""
    source, clone = new_tenant(), new_tenant()
    backup_id = await backup(store, source)
    fresh = f"{clone.database}_fresh"
    filestore = clone.filestore.parent / fresh
    outcome = await restore_backup(
        store,
        source.instance,
        backup_id,
        clone.target(database=fresh, filestore=filestore, expected_instance=None),
    )
    assert (outcome.kept_database, outcome.kept_filestore) == (None, None)
    assert query(postgres_dsn, fresh, "SELECT count(*) FROM res_partner") == [(PARTNERS,)]
    assert tree(filestore) == FILES
    assert databases_like(superuser, fresh) == {fresh}


async def test_an_anonymized_clone_keeps_only_the_files_its_attachments_still_name(
    store: BlobStore, new_tenant: NewTenant, postgres_dsn: str
) -> None:
    """The statements of an anonymized clone delete attachments; their files must not stay
    in the clone's filestore, while the files of the remaining attachments all do."""
    source, clone = new_tenant(), new_tenant()
    backup_id = await backup(store, source)
    deleted, *kept_files = FILES
    fresh = f"{clone.database}_anonymized"
    filestore = clone.filestore.parent / fresh
    outcome = await restore_backup(
        store,
        source.instance,
        backup_id,
        clone.target(
            database=fresh,
            filestore=filestore,
            expected_instance=None,
            neutralize=True,
            neutralization=[
                sql.SQL("DELETE FROM ir_attachment WHERE store_fname = {}").format(
                    sql.Literal(deleted)
                )
            ],
            prune_unreferenced_files=True,
        ),
    )
    assert outcome.neutralized is True
    assert tree(filestore) == {name: FILES[name] for name in kept_files}
    # The folder of the removed file went with it.
    assert not (filestore / deleted.split("/")[0]).exists()
    assert query(postgres_dsn, fresh, "SELECT count(*) FROM ir_attachment") == [(len(FILES),)]


async def test_a_swap_told_which_files_are_named_prunes_the_staged_filestore_first(
    store: BlobStore, new_tenant: NewTenant
) -> None:
    """The Job path of an anonymized clone: the swap removes the staged files no attachment
    names, then swaps; the live filestore it replaces is kept whole."""
    tenant = new_tenant()
    backup_id = await backup(store, tenant)
    live = tree(tenant.filestore)
    await stage_filestore(store, tenant.instance, backup_id, tenant.filestore)
    named = set(list(FILES)[1:])
    kept = swap_in_filestore(tenant.filestore, backup_id, named)
    assert tree(tenant.filestore) == {name: FILES[name] for name in named}
    assert tree(kept) == live


# --- the blob store itself -------------------------------------------------------------------


async def test_streamed_uploads_span_blocks_and_round_trip(store: BlobStore) -> None:
    payload = os.urandom(9 * 1024 * 1024 + 123)  # three blocks, the last one short

    async def pieces() -> AsyncIterator[bytes]:
        for offset in range(0, len(payload), 700_000):
            yield payload[offset : offset + 700_000]

    size, sha256 = await store.upload_stream("x/big.bin", pieces(), {"kind": "test"})
    assert (size, sha256) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert b"".join([chunk async for chunk in store.download_stream("x/big.bin")]) == payload

    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""

    assert await store.upload_stream("x/empty.bin", nothing()) == (
        0,
        hashlib.sha256(b"").hexdigest(),
    )
    assert await store.read_bytes("x/empty.bin") == b""
    assert await store.exists("x/big.bin")
    assert await store.delete_prefix("x/") == 2
    assert not await store.exists("x/big.bin")
    with pytest.raises(ValueError, match="empty prefix"):
        await store.delete_prefix("")
    # Azurite implements no immutability; the store says "none" rather than failing.
    assert await store.immutability() is None


# --- the commands ----------------------------------------------------------------------------


def run_cli(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    """``odoo-operator <arguments>`` as a Job runs it, with ``env`` as its whole environment."""
    return subprocess.run(
        [sys.executable, "-m", "odoo_operator.cli", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_backup_verify_and_restore_commands(
    store: BlobStore,
    new_tenant: NewTenant,
    blob_connection_string: str,
    postgres_dsn: str,
) -> None:
    """The commands a Job runs: JSON on stdout, one line on stderr and exit code 1 on failure,
    secrets from the environment only."""
    tenant = new_tenant()
    environment = {
        **os.environ,
        "ODOO_OPERATOR_BLOB_CONNECTION_STRING": blob_connection_string,
        "ODOO_OPERATOR_BLOB_CONTAINER": store.container,
        "ODOO_OPERATOR_INSTANCE": tenant.instance,
        "ODOO_OPERATOR_DB_CONNINFO": tenant.access.conninfo,
        "ODOO_OPERATOR_ADMIN_CONNINFO": postgres_dsn,
    }

    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        return run_cli(environment, *arguments)

    done = run(
        "backup", "--database", tenant.database, "--filestore", str(tenant.filestore),
        "--odoo-version", "18.0", "--reason", "pre-upgrade",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["reason"] == "pre-upgrade"
    assert manifest["rowCounts"]["res_partner"] == PARTNERS

    verified = run("verify", "--backup-id", manifest["backupId"])
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["ok"] is True

    restored = run(
        "restore", "--backup-id", manifest["backupId"], "--database", tenant.database,
        "--owner-role", tenant.role, "--filestore", str(tenant.filestore),
        "--expected-instance", tenant.instance, "--target-odoo-version", "18.0",
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["kept_database"] == derived_database_name(
        tenant.database, "pre_restore", manifest["backupId"]
    )

    refused = run(
        "restore", "--backup-id", manifest["backupId"], "--database", tenant.database,
        "--owner-role", tenant.role, "--expected-instance", "someone-else",
        "--target-odoo-version", "18.0",
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("odoo-operator restore: restore refused: backup ")

    failed = run("backup", "--database", "no_such_db", "--odoo-version", "18.0")
    assert failed.returncode == 1
    assert failed.stderr.startswith("odoo-operator backup: backup ")
    assert "no_such_db" in failed.stderr
    assert tenant.password not in failed.stderr
    assert failed.stderr.count("\n") == 1


# --- the filestore half of a restore, next to the tenant's volume -------------------------------


async def test_a_staged_filestore_is_swapped_in_and_the_replaced_one_kept(
    store: BlobStore, new_tenant: NewTenant
) -> None:
    tenant = new_tenant()
    backup_id = await backup(store, tenant)
    backed_up = tree(tenant.filestore)
    (tenant.filestore / "3f" / "written-after-the-backup").write_bytes(b"new")
    first = next(iter(FILES))
    (tenant.filestore / first).unlink()
    live_now = tree(tenant.filestore)

    summary = await stage_filestore(store, tenant.instance, backup_id, tenant.filestore)
    assert (summary.files, summary.bytes) == (len(FILES), sum(map(len, FILES.values())))
    # Staging touches nothing live.
    assert tree(tenant.filestore) == live_now
    staging, kept = filestore_restore_paths(tenant.filestore, backup_id)
    assert tree(staging) == backed_up

    assert swap_in_filestore(tenant.filestore, backup_id) == kept
    assert tree(tenant.filestore) == backed_up
    assert tree(kept) == live_now
    assert not staging.exists()
    with pytest.raises(RestoreError, match="exists, kept by an earlier restore"):
        swap_in_filestore(tenant.filestore, backup_id)
    with pytest.raises(RestoreRefused, match="exists, kept by an earlier restore"):
        await stage_filestore(store, tenant.instance, backup_id, tenant.filestore)


async def test_a_filestore_swap_with_nothing_staged_touches_nothing(
    store: BlobStore, new_tenant: NewTenant
) -> None:
    tenant = new_tenant()
    backup_id = await backup(store, tenant)
    before = tree(tenant.filestore)
    with pytest.raises(RestoreError, match=r"no filestore of backup .* is staged"):
        swap_in_filestore(tenant.filestore, backup_id)
    assert tree(tenant.filestore) == before
    assert not filestore_restore_paths(tenant.filestore, backup_id)[1].exists()


async def test_a_filestore_replaced_in_the_store_after_the_backup_is_not_staged(
    store: BlobStore, new_tenant: NewTenant
) -> None:
    tenant = new_tenant()
    backup_id = await backup(store, tenant)
    other = tenant.filestore.parent / "other"
    (other / "zz").mkdir(parents=True)
    (other / "zz" / "planted").write_bytes(b"not from the backup")
    with (other.parent / "planted.tar").open("wb") as out:
        write_filestore_tar(other, out)
    await store.upload_bytes(
        part_name(tenant.instance, backup_id, FILESTORE_PART),
        (other.parent / "planted.tar").read_bytes(),
    )
    with pytest.raises(RestoreError, match="changed in the store since it was checked"):
        await stage_filestore(store, tenant.instance, backup_id, tenant.filestore)
    staging, kept = filestore_restore_paths(tenant.filestore, backup_id)
    assert not staging.exists()
    assert not kept.exists()


async def test_a_tenant_without_a_filestore_gets_the_backups_and_an_empty_kept_folder(
    store: BlobStore, new_tenant: NewTenant
) -> None:
    tenant = new_tenant()
    backup_id = await backup(store, tenant)
    backed_up = tree(tenant.filestore)
    fresh = tenant.filestore.parent.parent / "clone" / "filestore" / "odoo_clone"
    await stage_filestore(store, tenant.instance, backup_id, fresh)
    kept = swap_in_filestore(fresh, backup_id)
    assert tree(fresh) == backed_up
    assert kept.is_dir()
    assert not any(kept.iterdir())


def test_the_restore_filestore_command_stages_then_swaps(
    store: BlobStore, new_tenant: NewTenant, blob_connection_string: str
) -> None:
    """What the restore's two Jobs run: the stage step reads the store, the swap step needs
    no store and no secret at all."""
    tenant = new_tenant()
    environment = {
        **os.environ,
        "ODOO_OPERATOR_BLOB_CONNECTION_STRING": blob_connection_string,
        "ODOO_OPERATOR_BLOB_CONTAINER": store.container,
        "ODOO_OPERATOR_INSTANCE": tenant.instance,
        "ODOO_OPERATOR_DB_CONNINFO": tenant.access.conninfo,
    }

    done = run_cli(
        environment, "backup", "--database", tenant.database, "--filestore",
        str(tenant.filestore), "--odoo-version", "18.0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    backup_id = json.loads(done.stdout)["backupId"]
    backed_up = tree(tenant.filestore)
    (tenant.filestore / "3f" / "written-after-the-backup").write_bytes(b"new")

    staged = run_cli(
        environment, "restore-filestore", "--step", "stage", "--backup-id", backup_id,
        "--filestore", str(tenant.filestore),
    )  # fmt: skip
    assert staged.returncode == 0, staged.stderr
    assert json.loads(staged.stdout)["files"] == len(FILES)
    assert "written-after-the-backup" in "".join(tree(tenant.filestore))

    no_store = {k: v for k, v in os.environ.items() if not k.startswith("ODOO_OPERATOR_BLOB")}
    swapped = run_cli(
        no_store, "restore-filestore", "--step", "swap", "--instance", tenant.instance,
        "--backup-id", backup_id, "--filestore", str(tenant.filestore),
    )  # fmt: skip
    assert swapped.returncode == 0, swapped.stderr
    assert tree(tenant.filestore) == backed_up
    kept = Path(json.loads(swapped.stdout)["keptFilestore"])
    assert "3f/written-after-the-backup" in tree(kept)

    again = run_cli(
        no_store, "restore-filestore", "--step", "swap", "--instance", tenant.instance,
        "--backup-id", backup_id, "--filestore", str(tenant.filestore),
    )  # fmt: skip
    assert again.returncode == 1
    assert again.stderr.startswith("odoo-operator restore-filestore: ")
    assert again.stderr.count("\n") == 1
