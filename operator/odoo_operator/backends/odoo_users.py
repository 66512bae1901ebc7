"""Which active users of a tenant's Odoo database still accept a default password.

The operator reads ``res_users`` as the tenant's own role, in one READ ONLY transaction with
a statement and lock timeout (as the tenant probe does), and checks each stored hash with
:func:`odoo_operator.builders.odoo_users.password_matches`.

Which users: every active internal user (``share`` false: the back-office accounts, which a
subscription bounds), and every active user a module's data file created (``admin``, and
``demo`` or ``portal`` where demo data was loaded), whatever its kind. Portal users who
signed up chose their own password and may be tens of thousands: they are left out.

What it costs: one check of a PBKDF2 hash at Odoo's 600,000 rounds takes a third of a
second of CPU. The result for a given stored hash and candidate never changes (the hash
holds its own random salt), so it is remembered for the life of the process, keyed by a
digest rather than the hash itself; a password change yields a new hash, which is checked
anew. Each scan runs at most ``budget`` such checks, in a worker thread so the event loop
keeps serving; what is left waits for the next scan (see
:func:`odoo_operator.builders.odoo_users.credentials_condition`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..builders.odoo_users import (
    CREDENTIALS_SECRET,
    DefaultPasswordReport,
    StoredPassword,
    default_password_candidates,
    is_costly,
    password_matches,
)
from .kube import KubeClient
from .tenant_session import read_only_transaction

_HAS_USERS = "SELECT to_regclass('res_users') IS NOT NULL"
# Data-file users first (admin among them), then by id: the likeliest defaults are checked
# in the first scan even when the budget leaves others for later.
_USERS = """
SELECT u.id, u.login, u.password,
       EXISTS (SELECT 1 FROM ir_model_data d WHERE d.model = 'res.users' AND d.res_id = u.id)
  FROM res_users u
 WHERE u.active
   AND (NOT coalesce(u.share, false)
        OR EXISTS (SELECT 1 FROM ir_model_data d WHERE d.model = 'res.users' AND d.res_id = u.id))
 ORDER BY 4 DESC, u.id
"""


async def read_stored_passwords(conninfo: str, timeout: float) -> tuple[StoredPassword, ...] | None:
    """The stored passwords of the users :mod:`this module <.odoo_users>` checks, or None
    when the database has no ``res_users`` table. Raises on any failure to read them."""
    async with read_only_transaction(
        conninfo, timeout, "odoo-operator-credentials-check"
    ) as connection:
        cursor = await connection.execute(_HAS_USERS)
        exists: Any = await cursor.fetchone()
        if not exists[0]:
            return None
        cursor = await connection.execute(_USERS)
        rows = await cursor.fetchall()
    return tuple(
        StoredPassword(int(user_id), str(login), password, bool(from_data))
        for user_id, login, password, from_data in rows
    )


class DefaultPasswordScanner:
    """Checks users' stored passwords against the defaults, remembering every answer."""

    def __init__(self, budget: int = 4, capacity: int = 50_000) -> None:
        """At most ``budget`` key derivations per scan; at most ``capacity`` remembered
        answers (the oldest are forgotten first)."""
        self.budget = budget
        self.capacity = capacity
        self._answers: OrderedDict[bytes, bool] = OrderedDict()
        # Key derivations run so far: how tests (and a curious reader) see the cache work.
        self.derivations = 0

    @staticmethod
    def _key(stored: str, candidate: str) -> bytes:
        return hashlib.sha256(f"{stored}\0{candidate}".encode()).digest()

    def _remember(self, key: bytes, answer: bool) -> None:
        self._answers[key] = answer
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)

    async def judge(self, users: Sequence[StoredPassword]) -> DefaultPasswordReport:
        """Which of ``users`` accept a default password, within this scan's budget."""
        budget = self.budget
        defaults: list[str] = []
        checked = pending = 0
        for user in users:
            stored = user.stored or ""
            found = False
            complete = True
            for candidate in default_password_candidates(user.login, user.from_data_file):
                if not is_costly(stored):
                    # A plain comparison (or no password): free, nothing to remember.
                    answer = password_matches(candidate, stored)
                else:
                    key = self._key(stored, candidate)
                    known = self._answers.get(key)
                    if known is None:
                        if budget <= 0:
                            complete = False
                            break
                        budget -= 1
                        self.derivations += 1
                        known = await asyncio.to_thread(password_matches, candidate, stored)
                        self._remember(key, known)
                    answer = known
                if answer:
                    found = True
                    break
            if found:
                defaults.append(user.login)
                checked += 1
            elif complete:
                checked += 1
            else:
                pending += 1
        return DefaultPasswordReport(tuple(defaults), checked, pending)

    async def scan(self, conninfo: str, timeout: float) -> DefaultPasswordReport:
        """Read the tenant's users through ``conninfo`` and judge them."""
        users = await read_stored_passwords(conninfo, timeout)
        if users is None:
            return DefaultPasswordReport(has_users=False)
        return await self.judge(users)


# One per operator process: what it learnt about a hash serves every later pass.
SCANNER = DefaultPasswordScanner()


async def read_credentials(kube: KubeClient, namespace: str) -> dict[str, str]:
    """The tenant's ``odoo-credentials`` Secret, decoded (empty when it does not exist)."""
    secret = await kube.get("v1", "Secret", CREDENTIALS_SECRET, namespace)
    data = (secret or {}).get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}
