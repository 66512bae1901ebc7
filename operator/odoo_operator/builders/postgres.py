"""The PostgreSQL side of a tenant, as data: desired role and database, observed state, plans.

Everything here is pure. The backend (:mod:`odoo_operator.backends.postgres`) reads the
catalogs into :class:`DatabaseState`, asks :func:`plan_ensure` or :func:`plan_drop` what
differs from :class:`TenantDatabase`, and turns each :class:`Action` into SQL composed with
``psycopg.sql.Identifier``; no SQL text is built here.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass

# PostgreSQL's own defaults for verifiers it builds (scram_iterations, SCRAM_DEFAULT_SALT_LEN).
SCRAM_ITERATIONS = 4096
SCRAM_SALT_BYTES = 16
# Identifiers longer than NAMEDATALEN - 1 bytes are silently truncated by the server, after
# which the name we observe would never match the name we created.
MAX_IDENTIFIER_BYTES = 63
DATABASE_ENCODING = "UTF8"


@dataclass(frozen=True)
class TenantDatabase:
    """What one tenant gets on its PostgreSQL server: a login role owning one database."""

    role: str
    database: str
    connection_limit: int

    def __post_init__(self) -> None:
        for what, name in (("role", self.role), ("database", self.database)):
            if not name:
                raise ValueError(f"the tenant's {what} name is empty")
            if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
                raise ValueError(
                    f"the tenant's {what} name {name!r} is longer than "
                    f"{MAX_IDENTIFIER_BYTES} bytes, which PostgreSQL would truncate"
                )
            if "\x00" in name:
                raise ValueError(f"the tenant's {what} name {name!r} contains a NUL character")
        if self.role.startswith("pg_"):
            raise ValueError(f"role name {self.role!r}: the prefix pg_ is reserved by PostgreSQL")
        if self.connection_limit < -1:
            raise ValueError(
                f"connection limit {self.connection_limit} for role {self.role!r}: "
                "use a positive number, 0 to refuse logins, or -1 for no limit"
            )


class RoleAttribute(enum.StrEnum):
    """A role attribute the tenant role must have or lack; the value is its SQL keyword."""

    LOGIN = "LOGIN"
    SUPERUSER = "SUPERUSER"
    CREATEDB = "CREATEDB"
    CREATEROLE = "CREATEROLE"
    REPLICATION = "REPLICATION"
    BYPASSRLS = "BYPASSRLS"

    def keyword(self, enabled: bool) -> str:
        """``SUPERUSER`` or ``NOSUPERUSER`` and so on: the fixed SQL keyword for the value."""
        return self.value if enabled else f"NO{self.value}"


# A tenant role can log in and nothing else: no way out of its own database.
TENANT_ROLE_ATTRIBUTES: dict[RoleAttribute, bool] = {
    RoleAttribute.LOGIN: True,
    RoleAttribute.SUPERUSER: False,
    RoleAttribute.CREATEDB: False,
    RoleAttribute.CREATEROLE: False,
    RoleAttribute.REPLICATION: False,
    RoleAttribute.BYPASSRLS: False,
}


@dataclass(frozen=True)
class RoleState:
    """The tenant role as observed in ``pg_roles``."""

    name: str
    superuser: bool
    create_db: bool
    create_role: bool
    replication: bool
    bypass_rls: bool
    can_login: bool
    connection_limit: int

    def has(self, attribute: RoleAttribute) -> bool:
        """Whether the role has ``attribute``."""
        return {
            RoleAttribute.LOGIN: self.can_login,
            RoleAttribute.SUPERUSER: self.superuser,
            RoleAttribute.CREATEDB: self.create_db,
            RoleAttribute.CREATEROLE: self.create_role,
            RoleAttribute.REPLICATION: self.replication,
            RoleAttribute.BYPASSRLS: self.bypass_rls,
        }[attribute]


@dataclass(frozen=True)
class DatabaseObjectState:
    """The tenant database as observed in ``pg_database``, with what its ACL gives PUBLIC."""

    name: str
    owner: str
    encoding: str
    public_can_connect: bool
    public_can_create_temp: bool
    public_can_create: bool

    @property
    def public_has_privileges(self) -> bool:
        """Whether any role at all may connect to, or create anything in, this database."""
        return self.public_can_connect or self.public_can_create_temp or self.public_can_create


@dataclass(frozen=True)
class DatabaseState:
    """One tenant's state on its server, and what the admin connection may do about it."""

    role: RoleState | None
    database: DatabaseObjectState | None
    admin_role: str
    admin_is_superuser: bool
    # True when the admin holds the tenant role's privileges (``pg_has_role(..., 'USAGE')``),
    # which a non-superuser needs to create a database owned by it, drop that database and
    # end its sessions.
    admin_has_tenant_privileges: bool


class ActionKind(enum.StrEnum):
    """What one step of a plan does."""

    CREATE_ROLE = "create_role"
    ALTER_ROLE_ATTRIBUTES = "alter_role_attributes"
    SET_CONNECTION_LIMIT = "set_connection_limit"
    SET_PASSWORD = "set_password"  # noqa: S105 - the name of a step, not a password
    GRANT_ROLE_TO_ADMIN = "grant_role_to_admin"
    CREATE_DATABASE = "create_database"
    REVOKE_PUBLIC = "revoke_public"
    TERMINATE_SESSIONS = "terminate_sessions"
    DROP_DATABASE = "drop_database"
    DROP_ROLE = "drop_role"


@dataclass(frozen=True)
class Action:
    """One change to make on the server; ``description`` is meant for Events and logs."""

    kind: ActionKind
    description: str
    # For ALTER_ROLE_ATTRIBUTES only: each attribute to change and its new value.
    attribute_changes: tuple[tuple[RoleAttribute, bool], ...] = ()


class TenantDatabaseConflictError(Exception):
    """The server holds something under the tenant's names that the operator must not take."""


class SuperuserRequiredError(Exception):
    """The change needs a superuser, and the admin connection is not one."""


def plan_role_changes(
    observed: RoleState | None, desired: TenantDatabase, *, set_password: bool = False
) -> list[Action]:
    """The steps that bring the tenant role from ``observed`` to ``desired``.

    A missing role is created with its attributes, connection limit and password in one
    statement. An existing one gets an ALTER for only the attributes that differ (PostgreSQL
    requires superuser for an ALTER ROLE that merely mentions SUPERUSER or REPLICATION, so
    naming unchanged ones would break non-superuser admins), then its connection limit, then
    its password when ``set_password`` asks for a rotation.
    """
    if observed is None:
        return [
            Action(
                ActionKind.CREATE_ROLE,
                f"create role {desired.role} (LOGIN only, connection limit "
                f"{desired.connection_limit}) with a SCRAM-SHA-256 password",
            )
        ]
    actions: list[Action] = []
    changes = tuple(
        (attribute, wanted)
        for attribute, wanted in TENANT_ROLE_ATTRIBUTES.items()
        if observed.has(attribute) != wanted
    )
    if changes:
        keywords = " ".join(attribute.keyword(wanted) for attribute, wanted in changes)
        actions.append(
            Action(
                ActionKind.ALTER_ROLE_ATTRIBUTES,
                f"set {keywords} on role {desired.role}",
                attribute_changes=changes,
            )
        )
    if observed.connection_limit != desired.connection_limit:
        actions.append(
            Action(
                ActionKind.SET_CONNECTION_LIMIT,
                f"change the connection limit of role {desired.role} from "
                f"{observed.connection_limit} to {desired.connection_limit}",
            )
        )
    if set_password:
        actions.append(
            Action(ActionKind.SET_PASSWORD, f"set a new SCRAM-SHA-256 password on {desired.role}")
        )
    return actions


def plan_admin_membership(state: DatabaseState, desired: TenantDatabase) -> list[Action]:
    """A non-superuser admin (Azure's flexible server has no superuser) joins the tenant role.

    ``CREATE DATABASE ... OWNER r``, ``DROP DATABASE`` and ``pg_terminate_backend`` on the
    role's sessions all require the admin to hold the role's privileges; a superuser has them.
    """
    if state.admin_is_superuser or state.admin_has_tenant_privileges:
        return []
    return [
        Action(
            ActionKind.GRANT_ROLE_TO_ADMIN,
            f"grant role {desired.role} to the admin role {state.admin_role}, so that it can "
            f"own, drop and disconnect the tenant's database",
        )
    ]


def plan_database_changes(
    observed: DatabaseObjectState | None, desired: TenantDatabase
) -> list[Action]:
    """The steps that bring the tenant database from ``observed`` to ``desired``.

    Raises :class:`TenantDatabaseConflictError` when a database of that name exists but belongs
    to another role or has another encoding: neither can be repaired without handing one
    tenant's data to another or rewriting it.
    """
    if observed is None:
        return [
            Action(
                ActionKind.CREATE_DATABASE,
                f"create database {desired.database} owned by {desired.role} "
                f"({DATABASE_ENCODING}, collation C, from template0)",
            ),
            Action(
                ActionKind.REVOKE_PUBLIC,
                f"revoke all privileges on database {desired.database} from PUBLIC",
            ),
        ]
    _check_database_belongs_to_tenant(observed, desired)
    if observed.encoding != DATABASE_ENCODING:
        raise TenantDatabaseConflictError(
            f"database {desired.database} exists with encoding {observed.encoding}, not "
            f"{DATABASE_ENCODING}; the encoding of a database cannot change: dump it and "
            f"restore it into a {DATABASE_ENCODING} database"
        )
    if observed.public_has_privileges:
        return [
            Action(
                ActionKind.REVOKE_PUBLIC,
                f"revoke all privileges on database {desired.database} from PUBLIC",
            )
        ]
    return []


def plan_ensure(
    state: DatabaseState, desired: TenantDatabase, *, set_password: bool = False
) -> list[Action]:
    """Every step, in order, that makes the server match ``desired``; empty when it does.

    Raises :class:`SuperuserRequiredError` when the role has been made a superuser and the admin
    is not one (only a superuser can take SUPERUSER away), and
    :class:`TenantDatabaseConflictError` as :func:`plan_database_changes` does.
    """
    if state.database is not None:
        _check_database_belongs_to_tenant(state.database, desired)
    _check_admin_can_alter_role(state, desired)
    return [
        *plan_role_changes(state.role, desired, set_password=set_password),
        *plan_admin_membership(state, desired),
        *plan_database_changes(state.database, desired),
    ]


def plan_drop(state: DatabaseState, desired: TenantDatabase) -> list[Action]:
    """The steps that remove the tenant's database and role; empty when both are gone.

    Sessions are ended first, since a database with sessions cannot be dropped.
    """
    if state.database is not None:
        _check_database_belongs_to_tenant(state.database, desired)
    if state.role is not None and state.role.superuser and not state.admin_is_superuser:
        raise SuperuserRequiredError(
            f"role {desired.role} has the SUPERUSER attribute and the admin role "
            f"{state.admin_role} is not a superuser, so it cannot drop it: a superuser must "
            f"run DROP ROLE {desired.role}"
        )
    actions: list[Action] = []
    if state.role is not None:
        actions += plan_admin_membership(state, desired)
    if state.database is not None or state.role is not None:
        actions.append(
            Action(
                ActionKind.TERMINATE_SESSIONS,
                f"end the sessions on database {desired.database} and of role {desired.role}",
            )
        )
    if state.database is not None:
        actions.append(Action(ActionKind.DROP_DATABASE, f"drop database {desired.database}"))
    if state.role is not None:
        actions.append(Action(ActionKind.DROP_ROLE, f"drop role {desired.role}"))
    return actions


def plan_password_rotation(state: DatabaseState, desired: TenantDatabase) -> list[Action]:
    """The one step that gives the tenant's existing role a new password.

    Raises :class:`LookupError` when the role does not exist, and :class:`SuperuserRequiredError`
    when it is a superuser and the admin is not (PostgreSQL lets only superusers alter them).
    """
    if state.role is None:
        raise LookupError(f"role {desired.role} does not exist: ensure the tenant first")
    _check_admin_can_alter_role(state, desired)
    return [
        action
        for action in plan_role_changes(state.role, desired, set_password=True)
        if action.kind is ActionKind.SET_PASSWORD
    ]


def _check_admin_can_alter_role(state: DatabaseState, desired: TenantDatabase) -> None:
    if state.role is not None and state.role.superuser and not state.admin_is_superuser:
        raise SuperuserRequiredError(
            f"role {desired.role} has the SUPERUSER attribute and the admin role "
            f"{state.admin_role} is not a superuser, so it cannot take it away: a superuser "
            f"must run ALTER ROLE {desired.role} NOSUPERUSER (on a managed server without "
            f"superuser access, ask the provider's support); until then the tenant keeps "
            f"superuser rights"
        )


def _check_database_belongs_to_tenant(
    observed: DatabaseObjectState, desired: TenantDatabase
) -> None:
    if observed.owner != desired.role:
        raise TenantDatabaseConflictError(
            f"database {desired.database} exists but is owned by role {observed.owner}, not "
            f"by the tenant role {desired.role}; the operator will not take over or drop "
            f"another owner's database: rename it, or change its owner if it really is the "
            f"tenant's"
        )


# Hand-written because no maintained library builds PostgreSQL's stored SCRAM verifiers.
# Sending a verifier instead of the password (CREATE/ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...')
# means the clear-text password never reaches the server: it cannot show up in SQL text, in
# the server log (log_statement, errors) or in pg_stat_statements. Format and derivation
# follow RFC 5802 / RFC 7677 as PostgreSQL stores them (src/common/scram-common.c).
def scram_sha256_verifier(
    password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` string for ``password``.

    ``salt`` defaults to 16 random bytes, as PostgreSQL uses. The password is prepared with
    SASLprep exactly when PostgreSQL would (see :func:`postgres_saslprep`), so the client's
    login with the clear-text password matches.
    """
    if not password:
        raise ValueError("an empty password cannot be used to log in to PostgreSQL")
    if "\x00" in password:
        raise ValueError("a password with a NUL character cannot be sent by libpq")
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, not {iterations}")
    if salt is None:
        salt = secrets.token_bytes(SCRAM_SALT_BYTES)
    if not salt:
        raise ValueError("the salt must not be empty")
    salted_password = hashlib.pbkdf2_hmac(
        "sha256", postgres_saslprep(password).encode("utf-8"), salt, iterations
    )
    client_key = hmac.digest(salted_password, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted_password, b"Server Key", "sha256")
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def postgres_saslprep(password: str) -> str:
    """SASLprep (RFC 4013) of ``password`` as PostgreSQL's ``pg_saslprep`` applies it.

    Pure ASCII is used unchanged. Otherwise non-ASCII spaces become spaces, characters
    "commonly mapped to nothing" go, the result is NFKC-normalised; if it is empty, holds a
    prohibited or unassigned character, or fails the bidirectional rule, PostgreSQL (and so
    this function) falls back to the password as given.
    """
    if password.isascii():
        return password
    mapped = "".join(
        " " if stringprep.in_table_c12(character) else character
        for character in password
        if not stringprep.in_table_b1(character)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    if not prepared or any(_prohibited(character) for character in prepared):
        return password
    if any(stringprep.in_table_d1(character) for character in prepared) and (
        any(stringprep.in_table_d2(character) for character in prepared)
        or not stringprep.in_table_d1(prepared[0])
        or not stringprep.in_table_d1(prepared[-1])
    ):
        return password
    return prepared


def _prohibited(character: str) -> bool:
    return (
        stringprep.in_table_c12(character)
        or stringprep.in_table_c21_c22(character)
        or stringprep.in_table_c3(character)
        or stringprep.in_table_c4(character)
        or stringprep.in_table_c5(character)
        or stringprep.in_table_c6(character)
        or stringprep.in_table_c7(character)
        or stringprep.in_table_c8(character)
        or stringprep.in_table_c9(character)
        or stringprep.in_table_a1(character)
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
