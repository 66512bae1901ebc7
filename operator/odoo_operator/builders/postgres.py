"""The PostgreSQL side of a tenant, as data: desired role and database, observed state, plans.

Everything here is pure. The backend (:mod:`odoo_operator.backends.postgres`) reads the
catalogs into :class:`DatabaseState`, asks :func:`plan_ensure` or :func:`plan_drop` what
differs from :class:`TenantDatabase`, and turns each :class:`Action` into SQL composed with
``psycopg.sql.Identifier``; no SQL text is built here.

Ownership: every role and database the operator creates carries a comment naming the
OdooInstance it was made for (:func:`ownership_mark`). The plans refuse, with
:class:`NotOwnedError`, to alter, re-key or drop a role or database that carries another
instance's mark or none at all, so that a spec naming someone else's database (or the
server's own ``postgres``) cannot take it over. See docs/postgres-servers.md.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from ..model.names import reserved_name_problem

# PostgreSQL's own defaults for verifiers it builds (scram_iterations, SCRAM_DEFAULT_SALT_LEN).
SCRAM_ITERATIONS = 4096
SCRAM_SALT_BYTES = 16
# Identifiers longer than NAMEDATALEN - 1 bytes are silently truncated by the server, after
# which the name we observe would never match the name we created.
MAX_IDENTIFIER_BYTES = 63
DATABASE_ENCODING = "UTF8"

# The comment (COMMENT ON ROLE / COMMENT ON DATABASE) that marks a role or database as made
# by the operator for one OdooInstance: this prefix followed by the instance's name. A
# comment rather than a naming convention because a name can be chosen in a spec, while a
# role's comment can only be written by a superuser or a CREATEROLE admin, never by a tenant.
OWNERSHIP_MARK_PREFIX = "odoo.tenantops.io/instance="
# A Kubernetes object name (RFC 1123 subdomain), which is what an OdooInstance is called.
_INSTANCE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")

# The reasons a NotOwnedError gives, meant for a status condition's reason field.
REASON_OWNED_BY_ANOTHER_INSTANCE = "DatabaseOwnedByAnotherInstance"
REASON_NOT_MANAGED = "NotManagedByOperator"
REASON_RESERVED_NAME = "ReservedName"


def ownership_mark(instance: str) -> str:
    """The comment that marks a role or database as the operator's, made for ``instance``."""
    if not _INSTANCE_NAME.fullmatch(instance):
        raise ValueError(f"{instance!r} is not a Kubernetes object name")
    return f"{OWNERSHIP_MARK_PREFIX}{instance}"


def parse_ownership_mark(comment: str | None) -> str | None:
    """The OdooInstance an ownership mark names; None for no comment or any other comment."""
    if comment is None or not comment.startswith(OWNERSHIP_MARK_PREFIX):
        return None
    instance = comment[len(OWNERSHIP_MARK_PREFIX) :]
    return instance if _INSTANCE_NAME.fullmatch(instance) else None


@dataclass(frozen=True)
class TenantDatabase:
    """What one tenant gets on its PostgreSQL server: a login role owning one database.

    ``instance`` is the name of the OdooInstance the role and database are made for; it is
    written into their ownership marks.
    """

    role: str
    database: str
    connection_limit: int
    instance: str

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
            problem = reserved_name_problem(name)
            if problem is not None:
                raise ValueError(f"the tenant's {what} name {problem}")
        if not _INSTANCE_NAME.fullmatch(self.instance):
            raise ValueError(
                f"the owning instance {self.instance!r} is not a Kubernetes object name"
            )
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
# A role with any of these administers the server; one the operator did not mark is never
# adopted or altered, whatever its name (CREATEDB is repaired on tenant roles but does not
# make a role an administrator).
PRIVILEGED_ATTRIBUTES = (
    RoleAttribute.SUPERUSER,
    RoleAttribute.CREATEROLE,
    RoleAttribute.REPLICATION,
    RoleAttribute.BYPASSRLS,
)


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
    # The OdooInstance named by the role's ownership mark; None when it has no mark.
    owner_instance: str | None = None

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

    @property
    def privileges(self) -> list[str]:
        """The attributes that give power over the server (SUPERUSER and so on) it has."""
        return [attribute.value for attribute in PRIVILEGED_ATTRIBUTES if self.has(attribute)]


@dataclass(frozen=True)
class DatabaseObjectState:
    """The tenant database as observed in ``pg_database``, with what its ACL gives PUBLIC."""

    name: str
    owner: str
    encoding: str
    public_can_connect: bool
    public_can_create_temp: bool
    public_can_create: bool
    # The OdooInstance named by the database's ownership mark; None when it has no mark.
    owner_instance: str | None = None

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
    MARK_ROLE = "mark_role"
    ALTER_ROLE_ATTRIBUTES = "alter_role_attributes"
    SET_CONNECTION_LIMIT = "set_connection_limit"
    SET_PASSWORD = "set_password"  # noqa: S105 - the name of a step, not a password
    GRANT_ROLE_TO_ADMIN = "grant_role_to_admin"
    CREATE_DATABASE = "create_database"
    MARK_DATABASE = "mark_database"
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


class NotOwnedError(TenantDatabaseConflictError):
    """A role or database under the tenant's names is not this instance's to change or drop.

    ``reason`` is one of :data:`REASON_OWNED_BY_ANOTHER_INSTANCE` (its mark names
    ``other_instance``), :data:`REASON_NOT_MANAGED` (it has no mark and may not be adopted)
    or :data:`REASON_RESERVED_NAME` (the server's admin role, or a privileged role).
    """

    def __init__(self, reason: str, message: str, other_instance: str | None = None) -> None:
        """Carry ``reason`` for a status condition and ``message`` for a human."""
        super().__init__(message)
        self.reason = reason
        self.other_instance = other_instance


class SuperuserRequiredError(Exception):
    """The change needs a superuser, and the admin connection is not one."""


def plan_role_changes(
    observed: RoleState | None, desired: TenantDatabase, *, set_password: bool = False
) -> list[Action]:
    """The steps that bring the tenant role from ``observed`` to ``desired``.

    A missing role is created with its attributes, connection limit and password in one
    statement, and then marked as this instance's. An existing one gets an ALTER for only the
    attributes that differ (PostgreSQL requires superuser for an ALTER ROLE that merely
    mentions SUPERUSER or REPLICATION, so naming unchanged ones would break non-superuser
    admins), then its connection limit, then its password when ``set_password`` asks for a
    rotation. Whether the role may be touched at all is :func:`check_ownership`'s question.
    """
    if observed is None:
        return [
            Action(
                ActionKind.CREATE_ROLE,
                f"create role {desired.role} (LOGIN only, connection limit "
                f"{desired.connection_limit}) with a SCRAM-SHA-256 password",
            ),
            _mark_role(desired),
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
            _mark_database(desired),
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
    state: DatabaseState,
    desired: TenantDatabase,
    *,
    set_password: bool = False,
    adopt_unmarked: bool = False,
) -> list[Action]:
    """Every step, in order, that makes the server match ``desired``; empty when it does.

    ``adopt_unmarked`` lets the plan take over a role and database left unmarked by an
    earlier operator version (see :func:`check_ownership`); the caller should set it only
    when the names are the instance's own default ones.

    Raises :class:`NotOwnedError` (before any step) when the role or database is not this
    instance's, :class:`SuperuserRequiredError` when the role has been made a superuser and
    the admin is not one (only a superuser can take SUPERUSER away), and
    :class:`TenantDatabaseConflictError` as :func:`plan_database_changes` does.
    """
    marks = check_ownership(state, desired, adopt_unmarked=adopt_unmarked)
    if state.database is not None:
        _check_database_belongs_to_tenant(state.database, desired)
    _check_admin_can_alter_role(state, desired)
    return [
        *(action for action in marks if action.kind is ActionKind.MARK_ROLE),
        *plan_role_changes(state.role, desired, set_password=set_password),
        *plan_admin_membership(state, desired),
        *(action for action in marks if action.kind is ActionKind.MARK_DATABASE),
        *plan_database_changes(state.database, desired),
    ]


def plan_drop(state: DatabaseState, desired: TenantDatabase) -> list[Action]:
    """The steps that remove the tenant's database and role; empty when both are gone.

    Sessions are ended first, since a database with sessions cannot be dropped. Raises
    :class:`NotOwnedError` when either is not this instance's (unmarked ones included: a
    legacy tenant is adopted by ``ensure`` before it can be dropped).
    """
    check_ownership(state, desired)
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

    Raises :class:`LookupError` when the role does not exist, :class:`NotOwnedError` when the
    role or database is not this instance's, and :class:`SuperuserRequiredError` when the
    role is a superuser and the admin is not (PostgreSQL lets only superusers alter them).
    """
    if state.role is None:
        raise LookupError(f"role {desired.role} does not exist: ensure the tenant first")
    check_ownership(state, desired)
    _check_admin_can_alter_role(state, desired)
    return [
        action
        for action in plan_role_changes(state.role, desired, set_password=True)
        if action.kind is ActionKind.SET_PASSWORD
    ]


def plan_drop_kept_databases(
    state: DatabaseState, desired: TenantDatabase, owned: Sequence[DatabaseObjectState]
) -> list[str]:
    """The names of the databases to drop among ``owned``, the other databases of the role.

    Those are the copies restores and upgrades keep (``<db>_pre_upgrade_<id>`` and the like),
    all owned by the tenant role. Raises :class:`NotOwnedError`, so that nothing at all is
    dropped, when the role or the tenant database is not this instance's, or when one of
    ``owned`` is marked as another instance's.
    """
    check_ownership(state, desired)
    if state.role is None:
        return []
    for database in owned:
        other = database.owner_instance
        if other is not None and other != desired.instance:
            raise NotOwnedError(
                REASON_OWNED_BY_ANOTHER_INSTANCE,
                f"database {database.name} is owned by role {desired.role} of OdooInstance "
                f"{desired.instance} but marked as OdooInstance {other}'s, so the operator "
                f"drops none of the databases kept for {desired.instance}: find out why, "
                f"then drop {database.name} by hand or correct its mark",
                other,
            )
    return [database.name for database in owned if database.name != desired.database]


def check_ownership(
    state: DatabaseState, desired: TenantDatabase, *, adopt_unmarked: bool = False
) -> list[Action]:
    """Refuse a role or database that is not ``desired.instance``'s; the marks still to write.

    Ours are: a role marked with this instance's name; a database so marked, or unmarked but
    owned by our role (a restore or an upgrade swaps in a fresh copy, which carries no
    comment), which gets marked. A role or database marked with another instance's name is
    refused (:data:`REASON_OWNED_BY_ANOTHER_INSTANCE`), as are the admin role itself and an
    unmarked role with SUPERUSER, CREATEROLE, REPLICATION or BYPASSRLS
    (:data:`REASON_RESERVED_NAME`). Anything else unmarked is refused
    (:data:`REASON_NOT_MANAGED`) unless ``adopt_unmarked`` is set, the role has none of those
    attributes and the database, if there is one, is owned by the role: then both get marked.
    """
    if state.admin_role in (desired.role, desired.database):
        raise NotOwnedError(
            REASON_RESERVED_NAME,
            f"{state.admin_role} is the admin role the operator connects as to this server; "
            f"no tenant may use its name, and the operator never alters it. Give OdooInstance "
            f"{desired.instance} another database name",
        )
    marks: list[Action] = []
    role = state.role
    role_is_ours = False
    if role is not None:
        _refuse_other_instance("role", role.name, role.owner_instance, desired)
        role_is_ours = role.owner_instance == desired.instance
        if not role_is_ours:
            if role.privileges:
                raise NotOwnedError(
                    REASON_RESERVED_NAME,
                    f"role {role.name} exists with {', '.join(role.privileges)} and was not "
                    f"created by the operator; it administers the server, so the operator "
                    f"will never adopt, alter or drop it. Give OdooInstance "
                    f"{desired.instance} another database name",
                )
            if not adopt_unmarked:
                raise _not_managed("role", role.name, desired)
            marks.append(_mark_role(desired))
    database = state.database
    if database is not None:
        _refuse_other_instance("database", database.name, database.owner_instance, desired)
        if database.owner_instance != desired.instance:
            # Adoption needs the role too: a database alone is never evidence enough, since
            # its owner can write its comment.
            owned_by_our_role = role is not None and database.owner == role.name
            if not owned_by_our_role or not (role_is_ours or adopt_unmarked):
                raise _not_managed("database", database.name, desired)
            marks.append(_mark_database(desired))
    return marks


def _refuse_other_instance(
    what: str, name: str, owner_instance: str | None, desired: TenantDatabase
) -> None:
    if owner_instance is None or owner_instance == desired.instance:
        return
    raise NotOwnedError(
        REASON_OWNED_BY_ANOTHER_INSTANCE,
        f"{what} {name} belongs to OdooInstance {owner_instance} (its ownership mark says "
        f"so), not to {desired.instance}; the operator will not alter, re-key or drop it for "
        f"{desired.instance}. Give {desired.instance} its own database name; only if "
        f"{owner_instance} is gone for good and its data should pass to {desired.instance}, "
        f"re-mark the role and database by hand (see docs/postgres-servers.md)",
        owner_instance,
    )


def _not_managed(what: str, name: str, desired: TenantDatabase) -> NotOwnedError:
    return NotOwnedError(
        REASON_NOT_MANAGED,
        f"{what} {name} exists but carries no ownership mark of the operator for "
        f"OdooInstance {desired.instance}, so the operator will not alter, re-key or drop "
        f"it. Give {desired.instance} another database name; or, if it really is this "
        f"instance's (made by an older operator), mark role and database by hand with "
        f"COMMENT ON ROLE / COMMENT ON DATABASE ... IS '{ownership_mark(desired.instance)}' "
        f"(see docs/postgres-servers.md)",
    )


def _mark_role(desired: TenantDatabase) -> Action:
    return Action(
        ActionKind.MARK_ROLE,
        f"mark role {desired.role} as made for OdooInstance {desired.instance}",
    )


def _mark_database(desired: TenantDatabase) -> Action:
    return Action(
        ActionKind.MARK_DATABASE,
        f"mark database {desired.database} as made for OdooInstance {desired.instance}",
    )


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
