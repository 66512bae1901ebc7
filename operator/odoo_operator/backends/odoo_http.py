"""Odoo over HTTP: the health check and the synthetic login of the monitoring user.

Used by the probe loop (:mod:`odoo_operator.observability.tenant_probe`) every round and by
restore drills (:mod:`odoo_operator.reconcile.drills`) to prove a restored tenant serves.

The synthetic login: the tenant's monitoring user logs in and reads one record.

``GET /web/health`` proves that Odoo answers; it reads no database and needs no session.
What users do is log in, which needs the database, the session store (Redis, where the
image has a session module) and the user's password hash, then call the ORM. So, in the
same round as the health check and through the same Service, the probe loop logs in as
``odoo-operator-monitor`` (builders/odoo_users.py: a portal user, never the admin), with
Odoo's JSON-RPC routes as its web client calls them:

1. ``/web/session/authenticate`` with the database, login and password: a session;
2. ``/web/dataset/call_kw`` ``res.users.read`` of its own record's ``login``: one ORM read,
   which must come back with that login;
3. ``/web/session/destroy``, so that a check a minute leaves no session behind.

The check is up when 1 and 2 succeed within the timeout. Neither the password nor the
session id is ever logged: a failure is told by its step, never by the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import aiohttp

from .. import metrics

AUTHENTICATE_PATH = "/web/session/authenticate"
CALL_KW_PATH = "/web/dataset/call_kw"
DESTROY_PATH = "/web/session/destroy"
SESSION_COOKIE = "session_id"
_REQUEST_IDS = itertools.count(1)


class LoginCheckError(Exception):
    """One step of the login check did not answer as Odoo does for a working login."""


async def _json_rpc(
    session: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, Any],
    session_id: str | None = None,
) -> tuple[Any, aiohttp.ClientResponse]:
    """One JSON-RPC 2.0 call as Odoo's web client makes it: the ``result`` and the response.

    Odoo answers an error (a wrong password, a denied read) with status 200 and an ``error``
    member, so both the status and the members are checked. The session goes in a header
    of this request only: the loop's HTTP session keeps no cookies, and one tenant's session
    must never reach another's check.
    """
    payload = {"jsonrpc": "2.0", "method": "call", "id": next(_REQUEST_IDS), "params": params}
    headers = {"Cookie": f"{SESSION_COOKIE}={session_id}"} if session_id else {}
    async with session.post(url, json=payload, headers=headers, allow_redirects=False) as response:
        if response.status != 200:
            raise LoginCheckError(f"Odoo answered HTTP {response.status}")
        body = await response.json(content_type=None)
    if not isinstance(body, dict) or "error" in body or "result" not in body:
        raise LoginCheckError("Odoo answered with an error")
    return body["result"], response


async def login_and_read(
    session: aiohttp.ClientSession, base_url: str, database: str, login: str, password: str
) -> None:
    """Log in as ``login``, read its own user record, log out; raises when a step fails."""
    result, response = await _json_rpc(
        session,
        base_url + AUTHENTICATE_PATH,
        {"db": database, "login": login, "password": password},
    )
    uid = result.get("uid") if isinstance(result, dict) else None
    cookie = response.cookies.get(SESSION_COOKIE)
    if not isinstance(uid, int) or isinstance(uid, bool) or cookie is None:
        raise LoginCheckError("the login was refused")
    session_id = cookie.value
    try:
        records, _ = await _json_rpc(
            session,
            f"{base_url}{CALL_KW_PATH}/res.users/read",
            {"model": "res.users", "method": "read", "args": [[uid], ["login"]], "kwargs": {}},
            session_id,
        )
        if not (
            isinstance(records, list)
            and len(records) == 1
            and isinstance(records[0], dict)
            and records[0].get("login") == login
        ):
            raise LoginCheckError("the read of the user's own record came back wrong")
    finally:
        # Best effort: a session left behind expires on its own.
        with contextlib.suppress(aiohttp.ClientError, LoginCheckError, ValueError):
            await _json_rpc(session, base_url + DESTROY_PATH, {}, session_id)


async def check_login(
    session: aiohttp.ClientSession,
    base_url: str,
    database: str,
    login: str,
    password: str,
    timeout: float,
) -> metrics.HealthCheck:
    """The synthetic login through ``base_url`` (``http://odoo.<namespace>.svc:8069``): up
    when the login and the read succeed within ``timeout`` seconds."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            await login_and_read(session, base_url, database, login, password)
        up = True
    except (aiohttp.ClientError, LoginCheckError, TimeoutError, OSError, ValueError):
        up = False
    return metrics.HealthCheck(up=up, duration_seconds=time.monotonic() - started)


async def check_health(
    session: aiohttp.ClientSession, url: str, timeout: float
) -> metrics.HealthCheck:
    """One synthetic GET of ``url``: up when it answers 200 within ``timeout`` seconds."""
    started = time.monotonic()
    try:
        async with (
            asyncio.timeout(timeout),
            session.get(url, allow_redirects=False) as response,
        ):
            await response.read()
            up = response.status == HTTPStatus.OK
    except (aiohttp.ClientError, TimeoutError, OSError):
        up = False
    return metrics.HealthCheck(up=up, duration_seconds=time.monotonic() - started)
