"""The tenant's users inside Odoo: the ``admin`` user's password and a monitoring user.

``odoo-bin -i base`` leaves a user ``admin`` whose password is ``admin`` (Odoo's data file
``base/data/res_users_data.xml`` sets it, on 17.0 and 18.0 alike). The password the operator
has always generated as ``admin-password`` is something else: Odoo's master password
(``admin_passwd``), which guards the database manager. So the operator also generates:

- ``odoo-admin-password``: the password of the Odoo user ``admin`` (``base.user_admin``);
- ``odoo-monitor-password``: the password of ``odoo-operator-monitor``, a portal user the
  synthetic checks log in as to read one record.

Both are stored in the tenant's ``odoo-credentials`` Secret before any server is touched, and
applied by the second step of the init Job (:func:`users_step_command`), which runs
:data:`USERS_SCRIPT` in ``odoo shell``: Odoo's own ORM hashes them, as it does a password
typed into its preferences. The passwords reach that step through the environment, from the
Secret (``secretKeyRef``), never through the Job's spec, a command line or a log line.

Why a portal user for monitoring: a portal user is the least an Odoo login can be. It reaches
``/web/session/authenticate`` and ``/web/dataset/call_kw`` like anyone logged in, may read its
own user record, sees no other partner (``res_partner_portal_public_rule``) and no settings,
and takes no internal-user seat of an Odoo Enterprise subscription.

The operator refuses to call a tenant Ready while an active user still accepts a default
password (``Credentials=False``, reason ``DefaultPassword``). It reads the users' stored
hashes and checks them itself with :func:`password_matches`, a few lines over
:mod:`hashlib`: passlib, which Odoo uses, is not a dependency of the operator, and checking
the one scheme Odoo 17.0 and 18.0 write (PBKDF2-SHA512) plus its plaintext fallback does not
need it. Everything here is pure; :mod:`odoo_operator.backends.odoo_users` reads the hashes.

A clone (a restore of one tenant's backup into another instance) brings the source's users
along. Before it is swapped in, :func:`clone_credentials_statements` gives its ``admin`` and
its monitoring user the passwords of the target's own Secret, hashed by
:func:`password_hash` in the format passlib writes, so that the target's credentials keep
working and the source's stop working there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from ..model.conditions import Condition
from .guarded_sql import SCHEMA, Update, do_updates

CREDENTIALS_SECRET = "odoo-credentials"  # noqa: S105 - an object name, not a value
# Keys of CREDENTIALS_SECRET, not values.
ADMIN_PASSWORD_KEY = "odoo-admin-password"  # noqa: S105
MONITOR_PASSWORD_KEY = "odoo-monitor-password"  # noqa: S105
MONITOR_LOGIN = "odoo-operator-monitor"
MONITOR_NAME = "odoo-operator monitoring"
# Odoo's own default password of ``admin``: published in its source, hence checked for.
ODOO_DEFAULT_PASSWORD = "admin"  # noqa: S105 - a published default, not a secret

CREDENTIALS_CONDITION = "Credentials"

# The init Job's two containers (builders/workloads.py, build_init_job): ``-i``, then users.
INIT_INSTALL_CONTAINER = "odoo-install"
INIT_USERS_CONTAINER = "odoo-users"

# The environment of the init Job's users step (names, not values).
ADMIN_PASSWORD_ENV = "ODOO_ADMIN_PASSWORD"  # noqa: S105
MONITOR_PASSWORD_ENV = "ODOO_MONITOR_PASSWORD"  # noqa: S105
MONITOR_LOGIN_ENV = "ODOO_MONITOR_LOGIN"
USERS_SCRIPT_ENV = "ODOO_USERS_SCRIPT"

# Run by ``odoo shell``, which executes a script read from a stdin that is not a terminal
# with ``env`` (the superuser's environment) in scope, and rolls back whatever the script
# did not commit (odoo/cli/shell.py, 17.0 and 18.0): hence the explicit commit. An exception
# ends odoo shell, and so the step, with a non-zero status. Setting ``password`` runs the
# field's inverse, which stores Odoo's hash and never the password itself. The monitoring
# user is written again when it exists (a retried Job), so the Secret's password holds.
USERS_SCRIPT = f"""\
import os
from odoo.fields import Command

users = env["res.users"].with_context(active_test=False, no_reset_password=True)
admin = env.ref("base.user_admin")
admin.password = os.environ["{ADMIN_PASSWORD_ENV}"]
login = os.environ["{MONITOR_LOGIN_ENV}"]
monitor_values = {{
    "password": os.environ["{MONITOR_PASSWORD_ENV}"],
    "active": True,
    "groups_id": [Command.set([env.ref("base.group_portal").id])],
}}
monitor = users.search([("login", "=", login)])
if monitor:
    monitor.write(monitor_values)
else:
    monitor = users.create({{"name": "{MONITOR_NAME}", "login": login, **monitor_values}})
env.cr.commit()
print(
    f"odoo-users: password of user {{admin.login}} set; "
    f"portal user {{login}} (id {{monitor.id}}) ready for the operator's checks",
    flush=True,
)
"""

# The users step: feed USERS_SCRIPT to ``odoo shell`` on stdin. A here-document rather than a
# pipe lets ``exec`` make Odoo the container's main process, which then receives SIGTERM
# itself. The variable's value is expanded once and never re-read as shell text.
_USERS_STEP_SHELL = f"""\
exec odoo shell "$@" <<ODOO_USERS_SCRIPT_END
${USERS_SCRIPT_ENV}
ODOO_USERS_SCRIPT_END
"""


def users_step_command() -> list[str]:
    """The users step's ``command``; its ``args`` (``-c <conf> -d <db> --no-http``) follow
    as the shell's positional parameters, so the database name is never shell text."""
    return ["sh", "-c", _USERS_STEP_SHELL, "odoo-users"]


def users_step_env() -> list[dict[str, Any]]:
    """The variables the users step adds: the script, the monitoring login, and both
    passwords from the credentials Secret."""

    def from_credentials(key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": key}}

    return [
        {"name": USERS_SCRIPT_ENV, "value": USERS_SCRIPT},
        {"name": MONITOR_LOGIN_ENV, "value": MONITOR_LOGIN},
        {"name": ADMIN_PASSWORD_ENV, "valueFrom": from_credentials(ADMIN_PASSWORD_KEY)},
        {"name": MONITOR_PASSWORD_ENV, "valueFrom": from_credentials(MONITOR_PASSWORD_KEY)},
    ]


# -- checking stored passwords -------------------------------------------------------------

PBKDF2_SHA512_PREFIX = "$pbkdf2-sha512$"
# A stored hash names its own work factor. Odoo writes 600,000 rounds (its MIN_ROUNDS) unless
# ``password.hashing.rounds`` asks for more; a row asking for more than this is not checked,
# so that a crafted hash cannot keep the operator busy for hours.
MAX_CHECKED_ROUNDS = 10_000_000
ODOO_HASH_ROUNDS = 600_000  # what Odoo 18.0 writes by default (MIN_ROUNDS)
_PBKDF2_SHA512_DIGEST = 64


def _ab64_encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=").replace("+", ".")


def password_hash(password: str, salt: bytes, rounds: int = ODOO_HASH_ROUNDS) -> str:
    """``password`` as Odoo 17.0 and 18.0 store it: passlib's ``pbkdf2_sha512`` format,
    which both verify whatever its rounds. ``salt``: 16 random bytes, as passlib draws.

    Takes a third of a second of CPU at Odoo's rounds: call it off the event loop.
    """
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return f"{PBKDF2_SHA512_PREFIX}{rounds}${_ab64_encode(salt)}${_ab64_encode(derived)}"


def clone_credentials_statements(
    admin_hash: str | None, monitor_hash: str | None
) -> list[sql.Composed]:
    """Give a clone the credentials of the instance it was restored into.

    A clone's database holds the source tenant's users: without these statements the
    target's ``admin`` would answer to the source's password (and not to the one in the
    target's own Secret), and the target's monitoring user could not log in. ``None``
    leaves that user as it is (the target's Secret lacks the password).
    """
    updates = []
    if admin_hash is not None:
        updates.append(
            Update(
                "res_users",
                "password",
                sql.Literal(admin_hash),
                sql.SQL(
                    "{id} = (SELECT {res_id} FROM {data} WHERE {module} = 'base' "
                    "AND {name} = 'user_admin' AND {model} = 'res.users')"
                ).format(
                    id=sql.Identifier("id"),
                    res_id=sql.Identifier("res_id"),
                    data=sql.Identifier(SCHEMA, "ir_model_data"),
                    module=sql.Identifier("module"),
                    name=sql.Identifier("name"),
                    model=sql.Identifier("model"),
                ),
            )
        )
    if monitor_hash is not None:
        updates.append(
            Update(
                "res_users",
                "password",
                sql.Literal(monitor_hash),
                sql.SQL("{} = {}").format(sql.Identifier("login"), sql.Literal(MONITOR_LOGIN)),
                (("res_users", "login"),),
            )
        )
    return [do_updates(*updates)] if updates else []


def _ab64_decode(text: str) -> bytes:
    """passlib's "adapted base64": the standard alphabet with ``.`` for ``+``, unpadded."""
    padded = text.replace(".", "+") + "=" * (-len(text) % 4)
    return base64.b64decode(padded.encode("ascii"), validate=True)


def is_costly(stored: str) -> bool:
    """Whether checking a candidate against ``stored`` runs the key-derivation function."""
    return stored.startswith(PBKDF2_SHA512_PREFIX)


def password_matches(candidate: str, stored: str | None) -> bool:
    """Whether Odoo would accept ``candidate`` for a user whose stored password is ``stored``.

    Odoo 17.0 and 18.0 verify with passlib's ``CryptContext(["pbkdf2_sha512", "plaintext"])``:

    - ``$pbkdf2-sha512$<rounds>$<salt>$<checksum>`` (salt and checksum in adapted base64):
      PBKDF2-HMAC-SHA512 of the candidate with that salt and rounds equals the checksum.
      A malformed hash of that scheme (zero-padded rounds, a checksum of the wrong size)
      makes passlib, and so the login, fail: no candidate matches;
    - anything else is passlib's plaintext fallback: an exact comparison. Odoo hashes such a
      value when base is next updated; until then ``admin`` stored as ``admin`` logs in;
    - NULL or empty: no password at all (an invited user who never set one). Nothing logs
      in with a password, so nothing matches.
    """
    if not stored:
        return False
    if not is_costly(stored):
        return hmac.compare_digest(stored.encode(), candidate.encode())
    parts = stored.split("$")  # "", "pbkdf2-sha512", rounds, salt, checksum
    if len(parts) != 5:
        return False
    rounds_text, salt_text, checksum_text = parts[2:]
    if not rounds_text.isdigit() or rounds_text.startswith("0") or not rounds_text.isascii():
        return False
    rounds = int(rounds_text)
    if rounds > MAX_CHECKED_ROUNDS:
        return False
    try:
        salt = _ab64_decode(salt_text)
        checksum = _ab64_decode(checksum_text)
    except (ValueError, binascii.Error):
        return False
    if len(checksum) != _PBKDF2_SHA512_DIGEST:
        return False
    derived = hashlib.pbkdf2_hmac(
        "sha512", candidate.encode(), salt, rounds, dklen=_PBKDF2_SHA512_DIGEST
    )
    return hmac.compare_digest(derived, checksum)


def default_password_candidates(login: str, from_data_file: bool) -> tuple[str, ...]:
    """The default passwords to try for one user.

    ``admin`` for everyone. A user created by a module's data file may also have been given
    its login as password (``demo``/``demo`` and ``portal``/``portal`` of Odoo's demo data):
    for those the login is tried too.
    """
    if from_data_file and login != ODOO_DEFAULT_PASSWORD:
        return (ODOO_DEFAULT_PASSWORD, login)
    return (ODOO_DEFAULT_PASSWORD,)


@dataclass(frozen=True)
class StoredPassword:
    """One active user's stored password, as read from ``res_users``."""

    user_id: int
    login: str
    stored: str | None
    from_data_file: bool


@dataclass(frozen=True)
class DefaultPasswordReport:
    """What one check of a tenant's users found.

    ``defaults``: logins that accept a default password; ``checked``: users fully checked;
    ``pending``: users left for a later pass (the work of one pass is bounded);
    ``has_users``: False when the database has no ``res_users`` table (Odoo never ran in it).
    """

    defaults: tuple[str, ...] = ()
    checked: int = 0
    pending: int = 0
    has_users: bool = True


_LISTED_LOGINS = 5


def credentials_condition(
    report: DefaultPasswordReport, database: str, previous: Condition | None
) -> Condition:
    """The ``Credentials`` condition for ``report``.

    A user found with a default password makes it False at once. While users are left to
    check (an operator that just started checks a large tenant over several passes) and none
    was found, the condition published before is kept, so a restart does not turn a tenant
    not Ready; a tenant never checked before is Unknown meanwhile.
    """
    if report.defaults:
        shown = ", ".join(report.defaults[:_LISTED_LOGINS])
        more = len(report.defaults) - _LISTED_LOGINS
        if more > 0:
            shown += f" and {more} more"
        return Condition(
            CREDENTIALS_CONDITION,
            "False",
            "DefaultPassword",
            f"user(s) {shown} of database {database} accept a default password (Odoo's "
            f"'{ODOO_DEFAULT_PASSWORD}', or the login); give each a new password (Odoo's "
            'Preferences, or the steps in docs/odooinstance.md, "The tenant\'s Odoo users"); '
            "the tenant is not Ready until then",
        )
    if report.pending:
        if previous is not None:
            return previous
        return Condition(
            CREDENTIALS_CONDITION,
            "Unknown",
            "Checking",
            f"checked {report.checked} user(s) of database {database} for default passwords; "
            f"{report.pending} left for the next passes",
        )
    if not report.has_users:
        return Condition(
            CREDENTIALS_CONDITION,
            "True",
            "NoOdooUsers",
            f"database {database} has no Odoo users table, so no default password",
        )
    return Condition(
        CREDENTIALS_CONDITION,
        "True",
        "NoDefaultPassword",
        f"none of the {report.checked} active internal or built-in user(s) of database "
        f"{database} accepts a default password",
    )
