"""The PostgreSQL plan: what ensure and drop would do for each observed state, what they
refuse to touch because another instance (or nobody) marked it, and verifiers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable

import pytest

from odoo_operator.builders.postgres import (
    OWNERSHIP_MARK_PREFIX,
    REASON_NOT_MANAGED,
    REASON_OWNED_BY_ANOTHER_INSTANCE,
    REASON_RESERVED_NAME,
    Action,
    ActionKind,
    DatabaseObjectState,
    DatabaseState,
    NotOwnedError,
    RoleAttribute,
    RoleState,
    SuperuserRequiredError,
    TenantDatabase,
    TenantDatabaseConflictError,
    ownership_mark,
    parse_ownership_mark,
    plan_drop,
    plan_drop_kept_databases,
    plan_ensure,
    plan_password_rotation,
    plan_role_changes,
    postgres_saslprep,
    scram_sha256_verifier,
)
from odoo_operator.model.names import reserved_name_problem

TENANT = TenantDatabase(role="acme", database="acme", connection_limit=20, instance="acme")

MATCHING_ROLE = RoleState(
    name="acme",
    superuser=False,
    create_db=False,
    create_role=False,
    replication=False,
    bypass_rls=False,
    can_login=True,
    connection_limit=20,
    owner_instance="acme",
)
MATCHING_DATABASE = DatabaseObjectState(
    name="acme",
    owner="acme",
    encoding="UTF8",
    public_can_connect=False,
    public_can_create_temp=False,
    public_can_create=False,
    owner_instance="acme",
)


def state(
    role: RoleState | None = MATCHING_ROLE,
    database: DatabaseObjectState | None = MATCHING_DATABASE,
    *,
    admin_is_superuser: bool = True,
    admin_has_tenant_privileges: bool = True,
    admin_role: str = "admin",
) -> DatabaseState:
    """An observed state, by default one that matches TENANT exactly."""
    return DatabaseState(
        role=role,
        database=database,
        admin_role=admin_role,
        admin_is_superuser=admin_is_superuser,
        admin_has_tenant_privileges=admin_has_tenant_privileges,
    )


def kinds(actions: list[Action]) -> list[ActionKind]:
    return [action.kind for action in actions]


def test_a_missing_tenant_is_created_role_first_then_its_closed_database_both_marked() -> None:
    actions = plan_ensure(state(role=None, database=None), TENANT)
    assert kinds(actions) == [
        ActionKind.CREATE_ROLE,
        ActionKind.MARK_ROLE,
        ActionKind.CREATE_DATABASE,
        ActionKind.MARK_DATABASE,
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
        ActionKind.MARK_ROLE,
        ActionKind.GRANT_ROLE_TO_ADMIN,
        ActionKind.CREATE_DATABASE,
        ActionKind.MARK_DATABASE,
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
        TenantDatabase(role=role, database=database, connection_limit=limit, instance="acme")


# Ownership: a second instance "intruder" whose spec names the database of instance "victim".
VICTIM_ROLE = RoleState(**{**MATCHING_ROLE.__dict__, "owner_instance": "victim"})
VICTIM_DATABASE = DatabaseObjectState(**{**MATCHING_DATABASE.__dict__, "owner_instance": "victim"})
UNMARKED_ROLE = RoleState(**{**MATCHING_ROLE.__dict__, "owner_instance": None})
UNMARKED_DATABASE = DatabaseObjectState(**{**MATCHING_DATABASE.__dict__, "owner_instance": None})


def every_plan(observed: DatabaseState, desired: TenantDatabase = TENANT) -> list[NotOwnedError]:
    """The refusal of each plan that could change or drop the tenant; fails if one plans."""
    attempts: list[Callable[[], object]] = [
        lambda: plan_ensure(observed, desired),
        lambda: plan_ensure(observed, desired, set_password=True),
        lambda: plan_ensure(observed, desired, adopt_unmarked=True),
        lambda: plan_ensure(observed, desired, set_password=True, adopt_unmarked=True),
        lambda: plan_password_rotation(observed, desired),
        lambda: plan_drop(observed, desired),
        lambda: plan_drop_kept_databases(observed, desired, [MATCHING_DATABASE]),
    ]
    refusals: list[NotOwnedError] = []
    for attempt in attempts:
        with pytest.raises(NotOwnedError) as raised:
            attempt()
        refusals.append(raised.value)
    return refusals


def test_a_role_and_database_marked_for_another_instance_are_refused_by_every_plan() -> None:
    for refusal in every_plan(state(role=VICTIM_ROLE, database=VICTIM_DATABASE)):
        assert refusal.reason == REASON_OWNED_BY_ANOTHER_INSTANCE
        assert refusal.other_instance == "victim"
        assert isinstance(refusal, TenantDatabaseConflictError)
        message = str(refusal)
        assert "role acme belongs to OdooInstance victim" in message
        assert "its own database name" in message


def test_a_database_marked_for_another_instance_is_refused_even_when_the_role_is_ours() -> None:
    for refusal in every_plan(state(database=VICTIM_DATABASE)):
        assert refusal.reason == REASON_OWNED_BY_ANOTHER_INSTANCE
        assert "database acme belongs to OdooInstance victim" in str(refusal)


def test_an_unmarked_role_is_refused_unless_adoption_is_allowed() -> None:
    observed = state(role=UNMARKED_ROLE, database=UNMARKED_DATABASE)
    for plan in (
        lambda: plan_ensure(observed, TENANT),
        lambda: plan_ensure(observed, TENANT, set_password=True),
        lambda: plan_password_rotation(observed, TENANT),
        lambda: plan_drop(observed, TENANT),
        lambda: plan_drop_kept_databases(observed, TENANT, []),
    ):
        with pytest.raises(NotOwnedError) as raised:
            plan()
        assert raised.value.reason == REASON_NOT_MANAGED
        assert raised.value.other_instance is None
        assert "role acme exists but carries no ownership mark" in str(raised.value)
        assert f"IS '{OWNERSHIP_MARK_PREFIX}acme'" in str(raised.value)


def test_an_unmarked_database_without_our_role_is_refused_even_with_adoption() -> None:
    # The database's owner can write its comment, so a database is never adopted on its own.
    with pytest.raises(NotOwnedError) as raised:
        plan_ensure(state(role=None, database=UNMARKED_DATABASE), TENANT, adopt_unmarked=True)
    assert raised.value.reason == REASON_NOT_MANAGED
    assert "database acme" in str(raised.value)


def test_legacy_adoption_marks_the_role_and_its_database_before_anything_else() -> None:
    observed = state(role=UNMARKED_ROLE, database=UNMARKED_DATABASE)
    assert kinds(plan_ensure(observed, TENANT, adopt_unmarked=True)) == [
        ActionKind.MARK_ROLE,
        ActionKind.MARK_DATABASE,
    ]
    restricted = state(
        role=UNMARKED_ROLE,
        database=UNMARKED_DATABASE,
        admin_is_superuser=False,
        admin_has_tenant_privileges=False,
    )
    # COMMENT ON DATABASE needs the owner's privileges, which the admin gets by the GRANT.
    assert kinds(plan_ensure(restricted, TENANT, adopt_unmarked=True, set_password=True)) == [
        ActionKind.MARK_ROLE,
        ActionKind.SET_PASSWORD,
        ActionKind.GRANT_ROLE_TO_ADMIN,
        ActionKind.MARK_DATABASE,
    ]
    assert kinds(
        plan_ensure(state(role=UNMARKED_ROLE, database=None), TENANT, adopt_unmarked=True)
    ) == [
        ActionKind.MARK_ROLE,
        ActionKind.CREATE_DATABASE,
        ActionKind.MARK_DATABASE,
        ActionKind.REVOKE_PUBLIC,
    ]


def test_adoption_refuses_an_unmarked_database_another_role_owns() -> None:
    foreign = DatabaseObjectState(**{**UNMARKED_DATABASE.__dict__, "owner": "globex"})
    with pytest.raises(NotOwnedError) as raised:
        plan_ensure(state(role=UNMARKED_ROLE, database=foreign), TENANT, adopt_unmarked=True)
    assert raised.value.reason == REASON_NOT_MANAGED


@pytest.mark.parametrize(
    ("attribute", "field"),
    [
        ("SUPERUSER", "superuser"),
        ("CREATEROLE", "create_role"),
        ("REPLICATION", "replication"),
        ("BYPASSRLS", "bypass_rls"),
    ],
)
def test_an_unmarked_privileged_role_is_never_adopted_nor_altered(
    attribute: str, field: str
) -> None:
    privileged = RoleState(**{**UNMARKED_ROLE.__dict__, field: True})
    for refusal in every_plan(state(role=privileged, database=UNMARKED_DATABASE)):
        assert refusal.reason == REASON_RESERVED_NAME
        assert f"role acme exists with {attribute}" in str(refusal)


def test_an_unmarked_database_owned_by_our_role_is_ours_and_gets_marked() -> None:
    # What a restore or an upgrade swaps in: a fresh copy, owned by the tenant role, no comment.
    observed = state(database=UNMARKED_DATABASE)
    assert kinds(plan_ensure(observed, TENANT)) == [ActionKind.MARK_DATABASE]
    assert kinds(plan_password_rotation(observed, TENANT)) == [ActionKind.SET_PASSWORD]
    assert ActionKind.DROP_DATABASE in kinds(plan_drop(observed, TENANT))


@pytest.mark.parametrize("role", [MATCHING_ROLE, UNMARKED_ROLE], ids=["marked", "unmarked"])
def test_the_admin_role_is_refused_whatever_its_mark(role: RoleState) -> None:
    superuser_admin = RoleState(**{**role.__dict__, "superuser": True})
    for refusal in every_plan(state(role=superuser_admin, admin_role="acme")):
        assert refusal.reason == REASON_RESERVED_NAME
        assert "acme is the admin role" in str(refusal)


def test_no_plan_for_a_refused_tenant_ever_alters_the_admin_role() -> None:
    # The reported bug: spec.database.name set to the admin's own role name.
    admin_as_seen = RoleState(
        name="acme",
        superuser=True,
        create_db=True,
        create_role=True,
        replication=True,
        bypass_rls=True,
        can_login=True,
        connection_limit=-1,
    )
    with pytest.raises(NotOwnedError):
        plan_ensure(state(role=admin_as_seen, database=None, admin_role="acme"), TENANT)


def test_kept_databases_are_dropped_only_when_none_is_marked_for_another_instance() -> None:
    kept = DatabaseObjectState(**{**MATCHING_DATABASE.__dict__, "name": "acme_pre_upgrade_1"})
    swapped_out = DatabaseObjectState(**{**UNMARKED_DATABASE.__dict__, "name": "acme_old"})
    assert plan_drop_kept_databases(state(), TENANT, [kept, swapped_out]) == [
        "acme_pre_upgrade_1",
        "acme_old",
    ]
    foreign = DatabaseObjectState(**{**kept.__dict__, "name": "acme_x", "owner_instance": "victim"})
    with pytest.raises(NotOwnedError) as raised:
        plan_drop_kept_databases(state(), TENANT, [kept, foreign])
    assert raised.value.reason == REASON_OWNED_BY_ANOTHER_INSTANCE
    assert "acme_x" in str(raised.value)
    assert plan_drop_kept_databases(state(role=None, database=None), TENANT, []) == []


@pytest.mark.parametrize(
    "name",
    [
        "postgres",
        "template0",
        "template1",
        "Postgres",
        "TEMPLATE1",
        "pg_foo",
        "PG_Foo",
        "azure_maintenance",
        "azure_sys",
        "azuresu",
        "azure_anything",
        "public",
    ],
)
def test_server_owned_names_are_reserved_for_role_and_database(name: str) -> None:
    problem = reserved_name_problem(name)
    assert problem is not None
    assert "reserved" in problem
    with pytest.raises(ValueError, match="reserved"):
        TenantDatabase(role=name, database="odoo_acme", connection_limit=1, instance="acme")
    with pytest.raises(ValueError, match="reserved"):
        TenantDatabase(role="odoo_acme", database=name, connection_limit=1, instance="acme")


@pytest.mark.parametrize("name", ["odoo_acme", "acme", "postgresql_tenant", "my_pg_db", "odoo_pg_"])
def test_ordinary_tenant_names_are_not_reserved(name: str) -> None:
    assert reserved_name_problem(name) is None


def test_the_ownership_mark_names_its_instance_and_nothing_else_parses_as_one() -> None:
    assert ownership_mark("shop-1.eu") == "odoo.tenantops.io/instance=shop-1.eu"
    assert parse_ownership_mark(ownership_mark("shop-1.eu")) == "shop-1.eu"
    for comment in (
        None,
        "",
        "customer database, do not touch",
        OWNERSHIP_MARK_PREFIX,
        f"{OWNERSHIP_MARK_PREFIX}Shop",
        f"{OWNERSHIP_MARK_PREFIX}shop ",
        f" {OWNERSHIP_MARK_PREFIX}shop",
        f"{OWNERSHIP_MARK_PREFIX}shop_1",
    ):
        assert parse_ownership_mark(comment) is None, comment
    with pytest.raises(ValueError, match="Kubernetes object name"):
        ownership_mark("Not_A_Name")
    with pytest.raises(ValueError, match="Kubernetes object name"):
        TenantDatabase(role="acme", database="acme", connection_limit=1, instance="")


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
