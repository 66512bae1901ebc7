"""The synthetic login of the monitoring user: what counts as up, what it leaves behind, and
how it shows in the metrics. Against a loopback server that answers Odoo's three JSON-RPC
routes the way Odoo 17.0 and 18.0 do (tests/integration/test_odoo_admin_password.py runs the
same check against real Odoo)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from odoo_operator import metrics
from odoo_operator.backends.odoo_http import check_login

DATABASE = "odoo_acme"
LOGIN = "odoo-operator-monitor"
PASSWORD = "right-horse-battery"


@dataclass
class FakeOdoo:
    """What the server saw; ``read_login`` is what a read of the user's record returns."""

    url: str = ""
    sessions: set[str] = field(default_factory=set)
    destroyed: list[str] = field(default_factory=list)
    cookies_seen: list[str] = field(default_factory=list)
    read_login: str = LOGIN
    delay: float = 0.0


def _rpc(result: Any = None, error: str | None = None) -> web.Response:
    if error is not None:
        return web.json_response({"jsonrpc": "2.0", "id": 1, "error": {"message": error}})
    return web.json_response({"jsonrpc": "2.0", "id": 1, "result": result})


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


@pytest.fixture
async def odoo() -> AsyncIterator[FakeOdoo]:
    state = FakeOdoo()

    async def authenticate(request: web.Request) -> web.Response:
        params = (await request.json())["params"]
        if (params["db"], params["login"], params["password"]) != (DATABASE, LOGIN, PASSWORD):
            return _rpc(error="odoo.exceptions.AccessDenied: Access Denied")
        sid = secrets.token_urlsafe(16)
        state.sessions.add(sid)
        response = _rpc({"uid": 7, "is_admin": False})
        response.set_cookie("session_id", sid, httponly=True)
        return response

    def session_of(request: web.Request) -> str | None:
        state.cookies_seen.append(request.headers.get("Cookie", ""))
        sid = request.cookies.get("session_id")
        return sid if sid in state.sessions else None

    async def read(request: web.Request) -> web.Response:
        await asyncio.sleep(state.delay)
        if session_of(request) is None:
            return _rpc(error="odoo.http.SessionExpiredException: Session expired")
        params = (await request.json())["params"]
        assert params["model"] == "res.users"
        assert params["method"] == "read"
        (ids, fields) = params["args"]
        return _rpc([{"id": ids[0], "login": state.read_login}] if fields == ["login"] else [])

    async def destroy(request: web.Request) -> web.Response:
        sid = session_of(request)
        if sid is not None:
            state.sessions.discard(sid)
            state.destroyed.append(sid)
        return _rpc(None)

    app = web.Application()
    app.router.add_post("/web/session/authenticate", authenticate)
    app.router.add_post("/web/dataset/call_kw/res.users/read", read)
    app.router.add_post("/web/session/destroy", destroy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


async def _check(odoo: FakeOdoo, password: str = PASSWORD, timeout: float = 2.0) -> Any:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        return await check_login(session, odoo.url, DATABASE, LOGIN, password, timeout)


async def test_a_login_and_a_read_of_its_own_record_is_up_and_leaves_no_session(
    odoo: FakeOdoo,
) -> None:
    check = await _check(odoo)
    assert check.up
    assert 0 < check.duration_seconds < 2.0
    assert len(odoo.destroyed) == 1  # logged out again
    assert odoo.sessions == set()


async def test_a_refused_password_is_down(odoo: FakeOdoo) -> None:
    check = await _check(odoo, password="admin")
    assert not check.up
    assert odoo.destroyed == []


async def test_a_read_that_comes_back_for_someone_else_is_down_and_still_logs_out(
    odoo: FakeOdoo,
) -> None:
    odoo.read_login = "admin"
    check = await _check(odoo)
    assert not check.up
    assert len(odoo.destroyed) == 1


async def test_a_slow_read_is_down_within_the_timeout(odoo: FakeOdoo) -> None:
    odoo.delay = 1.5
    check = await _check(odoo, timeout=0.3)
    assert not check.up
    assert 0.3 <= check.duration_seconds < 1.5


async def test_nothing_listening_is_down_not_an_error() -> None:
    async with aiohttp.ClientSession() as session:
        check = await check_login(session, "http://127.0.0.1:9", DATABASE, LOGIN, PASSWORD, 2.0)
    assert not check.up


async def test_each_check_sends_only_the_session_it_opened(odoo: FakeOdoo) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        await check_login(session, odoo.url, DATABASE, LOGIN, PASSWORD, 2.0)
        await check_login(session, odoo.url, DATABASE, LOGIN, PASSWORD, 2.0)
    first, second = odoo.destroyed
    assert first != second
    # Two requests per check carry a cookie (read, destroy), each exactly its own session.
    assert odoo.cookies_seen == [f"session_id={s}" for s in (first, first, second, second)]


def test_the_login_check_is_rendered_per_tenant_without_the_password() -> None:
    metrics.set_tenant("acme", metrics.TenantState(phase="Ready"))
    metrics.record_login_check("acme", metrics.HealthCheck(up=True, duration_seconds=0.25))
    metrics.record_login_check("gone", metrics.HealthCheck(up=True, duration_seconds=0.1))
    text = metrics.render().decode()
    assert 'odoo_operator_tenant_login_check_up{instance="acme"} 1.0' in text
    assert 'odoo_operator_tenant_login_check_duration_seconds{instance="acme"} 0.25' in text
    assert 'instance="gone"' not in text  # not a tracked tenant
    assert PASSWORD not in text
    assert {
        "odoo_operator_tenant_login_check_up",
        "odoo_operator_tenant_login_check_duration_seconds",
    } <= metrics.metric_names()
