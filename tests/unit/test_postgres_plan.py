"""The PostgreSQL plan: what ensure and drop would do for each observed state, and verifiers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from odoo_operator.builders.postgres import (
    Action,
    ActionKind,
    DatabaseObjectState,
    DatabaseState,
    RoleAttribute,
    RoleState,
    SuperuserRequiredError,
    TenantDatabase,
    TenantDatabaseConflictError,
    plan_drop,
    plan_ensure,
    plan_password_rotation,
    plan_role_changes,
    postgres_saslprep,
    scram_sha256_verifier,
)

TENANT = TenantDatabase(role="acme", database="acme", connection_limit=20)

MATCHING_ROLE = RoleState(
    name="acme",
    superuser=False,
    create_db=False,
    create_role=False,
    replication=False,
    bypass_rls=False,
    can_login=True,
    connection_limit=20,
)
MATCHING_DATABASE = DatabaseObjectState(
    name="acme",
    owner="acme",
    encoding="UTF8",
    public_can_connect=False,
    public_can_create_temp=False,
    public_can_create=False,
)


def state(
    role: RoleState | None = MATCHING_ROLE,
    database: DatabaseObjectState | None = MATCHING_DATABASE,
    *,
    admin_is_superuser: bool = True,
    admin_has_tenant_privileges: bool = True,
) -> DatabaseState:
    """An observed state, by default one that matches TENANT exactly."""
    return DatabaseState(
        role=role,
        database=database,
        admin_role="admin",
        admin_is_superuser=admin_is_superuser,
        admin_has_tenant_privileges=admin_has_tenant_privileges,
    )


def kinds(actions: list[Action]) -> list[ActionKind]:
    return [action.kind for action in actions]


def test_a_missing_tenant_is_created_role_first_then_its_closed_database() -> None:
    actions = plan_ensure(state(role=None, database=None), TENANT)
    assert kinds(actions) == [
        ActionKind.CREATE_ROLE,
        ActionKind.CREATE_DATABASE,
        ActionKind.REVOKE_PUBLIC,
    ]
    assert all(action.description for action in actions)


def test_a_non_superuser_admin_joins_the_role_before_creating_its_database() -> None:
    actions = plan_ensure(
        state(
            role=None, database=None, admin_is_superuser=False, admin_has_tenant_privileges=False
        ),
        TENANT,
    )
    assert kinds(actions) == [
        ActionKind.CREATE_ROLE,
        ActionKind.GRANT_ROLE_TO_ADMIN,
        ActionKind.CREATE_DATABASE,
        ActionKind.REVOKE_PUBLIC,
    ]


def test_a_matching_tenant_needs_nothing() -> None:
    assert plan_ensure(state(), TENANT) == []
    assert plan_ensure(state(admin_is_superuser=False), TENANT) == []


def test_a_role_made_superuser_is_altered_back_with_only_that_attribute() -> None:
    drifted = RoleState(**{**MATCHING_ROLE.__dict__, "superuser": True})
    actions = plan_ensure(state(role=drifted), TENANT)
    assert kinds(actions) == [ActionKind.ALTER_ROLE_ATTRIBUTES]
    assert actions[0].attribute_changes == ((RoleAttribute.SUPERUSER, False),)
    assert "NOSUPERUSER" in actions[0].description


def test_every_attribute_that_differs_is_changed_and_no_other() -> None:
    drifted = RoleState(
        name="acme",
        superuser=False,
        create_db=True,
        create_role=False,
        replication=True,
        bypass_rls=False,
        can_login=False,
        connection_limit=20,
    )
    (action,) = plan_role_changes(drifted, TENANT)
    assert dict(action.attribute_changes) == {
        RoleAttribute.LOGIN: True,
        RoleAttribute.CREATEDB: False,
        RoleAttribute.REPLICATION: False,
    }


def test_a_non_superuser_admin_cannot_repair_a_superuser_role() -> None:
    drifted = RoleState(**{**MATCHING_ROLE.__dict__, "superuser": True})
    with pytest.raises(SuperuserRequiredError, match=r"acme.*SUPERUSER.*admin.*not a superuser"):
        plan_ensure(state(role=drifted, admin_is_superuser=False), TENANT)


def test_a_changed_connection_limit_is_set_alone() -> None:
    actions = plan_ensure(
        state(role=RoleState(**{**MATCHING_ROLE.__dict__, "connection_limit": 5})), TENANT
    )
    assert kinds(actions) == [ActionKind.SET_CONNECTION_LIMIT]
    assert "from 5 to 20" in actions[0].description


def test_a_password_is_set_on_an_existing_role_only_when_asked() -> None:
    assert kinds(plan_ensure(state(), TENANT, set_password=True)) == [ActionKind.SET_PASSWORD]
    assert kinds(plan_password_rotation(state(), TENANT)) == [ActionKind.SET_PASSWORD]
    with pytest.raises(LookupError, match="acme"):
        plan_password_rotation(state(role=None, database=None), TENANT)


def test_a_database_open_to_public_is_closed() -> None:
    open_database = DatabaseObjectState(
        **{**MATCHING_DATABASE.__dict__, "public_can_connect": True}
    )
    assert kinds(plan_ensure(state(database=open_database), TENANT)) == [ActionKind.REVOKE_PUBLIC]


def test_a_database_of_another_owner_or_encoding_is_refused() -> None:
    foreign = DatabaseObjectState(**{**MATCHING_DATABASE.__dict__, "owner": "globex"})
    with pytest.raises(TenantDatabaseConflictError, match="owned by role globex"):
        plan_ensure(state(database=foreign), TENANT)
    with pytest.raises(TenantDatabaseConflictError, match="owned by role globex"):
        plan_drop(state(database=foreign), TENANT)
    latin = DatabaseObjectState(**{**MATCHING_DATABASE.__dict__, "encoding": "LATIN1"})
    with pytest.raises(TenantDatabaseConflictError, match="LATIN1"):
        plan_ensure(state(database=latin), TENANT)


def test_drop_ends_sessions_then_drops_database_then_role_and_is_idempotent() -> None:
    assert kinds(plan_drop(state(), TENANT)) == [
        ActionKind.TERMINATE_SESSIONS,
        ActionKind.DROP_DATABASE,
        ActionKind.DROP_ROLE,
    ]
    assert kinds(
        plan_drop(state(admin_is_superuser=False, admin_has_tenant_privileges=False), TENANT)
    ) == [
        ActionKind.GRANT_ROLE_TO_ADMIN,
        ActionKind.TERMINATE_SESSIONS,
        ActionKind.DROP_DATABASE,
        ActionKind.DROP_ROLE,
    ]
    assert plan_drop(state(role=None, database=None), TENANT) == []


@pytest.mark.parametrize(
    ("role", "database", "limit", "message"),
    [
        ("", "db", 1, "role name is empty"),
        ("r" * 64, "db", 1, "longer than 63 bytes"),
        ("role", "é" * 32, 1, "longer than 63 bytes"),
        ("pg_tenant", "db", 1, "reserved"),
        ("role", "db", -2, "connection limit -2"),
    ],
)
def test_tenant_names_and_limits_the_server_would_mangle_are_refused(
    role: str, database: str, limit: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TenantDatabase(role=role, database=database, connection_limit=limit)


VERIFIER = re.compile(
    r"^SCRAM-SHA-256\$(?P<iterations>\d+):(?P<salt>[A-Za-z0-9+/=]+)"
    r"\$(?P<stored>[A-Za-z0-9+/=]+):(?P<server>[A-Za-z0-9+/=]+)$"
)


def test_the_verifier_has_postgresql_format_with_a_fresh_16_byte_salt() -> None:
    first = VERIFIER.match(scram_sha256_verifier("secret"))
    second = VERIFIER.match(scram_sha256_verifier("secret"))
    assert first is not None
    assert second is not None
    assert first["iterations"] == "4096"
    assert len(base64.b64decode(first["salt"])) == 16
    assert len(base64.b64decode(first["stored"])) == 32
    assert len(base64.b64decode(first["server"])) == 32
    assert first["salt"] != second["salt"]


def test_the_verifier_answers_the_rfc_7677_exchange() -> None:
    # RFC 7677 section 3: user "user", password "pencil". A server holding our StoredKey and
    # ServerKey must accept the client's proof and produce the server signature shown there.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    match = VERIFIER.match(scram_sha256_verifier("pencil", salt=salt, iterations=4096))
    assert match is not None
    stored_key = base64.b64decode(match["stored"])
    server_key = base64.b64decode(match["server"])
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth_message = (
        f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        f"c=biws,r={nonce}"
    ).encode()
    client_proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.digest(stored_key, auth_message, "sha256")
    client_key = bytes(p ^ s for p, s in zip(client_proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key
    server_signature = hmac.digest(server_key, auth_message, "sha256")
    assert base64.b64encode(server_signature).decode() == (
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    )


def test_the_verifier_matches_an_independent_derivation() -> None:
    salt, iterations, password = b"0123456789abcdef", 27, "correct horse"
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    expected = "SCRAM-SHA-256${}:{}${}:{}".format(
        iterations,
        base64.b64encode(salt).decode(),
        base64.b64encode(hashlib.sha256(client_key).digest()).decode(),
        base64.b64encode(hmac.new(salted, b"Server Key", hashlib.sha256).digest()).decode(),
    )
    assert scram_sha256_verifier(password, salt=salt, iterations=iterations) == expected


@pytest.mark.parametrize(
    ("password", "prepared"),
    [
        ("I\u00adX", "IX"),  # RFC 4013 examples: soft hyphen mapped to nothing
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),  # NFKC
        ("a\u00a0b", "a b"),  # non-ASCII space mapped to a space
        ("\u0627\u0031", "\u0627\u0031"),  # bidi rule broken: used as given
        ("x\u0007\u00e9", "x\u0007\u00e9"),  # prohibited control character: used as given
        ("pass\u0007word", "pass\u0007word"),  # pure ASCII is never touched
    ],
)
def test_passwords_are_prepared_as_postgresql_prepares_them(password: str, prepared: str) -> None:
    assert postgres_saslprep(password) == prepared


def test_unusable_passwords_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        scram_sha256_verifier("")
    with pytest.raises(ValueError, match="NUL"):
        scram_sha256_verifier("a\x00b")
