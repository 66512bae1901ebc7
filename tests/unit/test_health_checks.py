"""The synthetic check of a tenant's /web/health: what counts as up, where it is sent, and
how it shows in the metrics. The checks run against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from odoo_operator import metrics
from odoo_operator.backends.odoo_http import check_health
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.observability.tenant_probe import (
    ProbeSettings,
    health_check_urls,
    parse_health_check_targets,
)


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


@pytest.fixture
async def odoo_like_server() -> AsyncIterator[str]:
    """A server answering like Odoo's /web/health, plus paths that fail in the usual ways."""

    async def healthy(_: web.Request) -> web.Response:
        return web.json_response({"status": "pass"})

    async def unavailable(_: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "30"})

    async def redirected(_: web.Request) -> web.Response:
        raise web.HTTPFound("/web/login")

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(1.5)
        return web.json_response({"status": "pass"})

    app = web.Application()
    app.router.add_get("/web/health", healthy)
    app.router.add_get("/maintenance/web/health", unavailable)
    app.router.add_get("/redirect/web/health", redirected)
    app.router.add_get("/slow/web/health", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_200_in_time_is_up_and_anything_else_is_down(odoo_like_server: str) -> None:
    async with aiohttp.ClientSession() as session:
        healthy = await check_health(session, f"{odoo_like_server}/web/health", 2.0)
        maintenance = await check_health(session, f"{odoo_like_server}/maintenance/web/health", 2.0)
        redirect = await check_health(session, f"{odoo_like_server}/redirect/web/health", 2.0)
        slow = await check_health(session, f"{odoo_like_server}/slow/web/health", 0.3)
    assert healthy.up
    assert not maintenance.up
    assert not redirect.up  # a login page is not a healthy tenant
    assert not slow.up
    assert 0.3 <= slow.duration_seconds < 1.5


async def test_nothing_listening_is_down_not_an_error() -> None:
    async with aiohttp.ClientSession() as session:
        check = await check_health(session, "http://127.0.0.1:9/web/health", 2.0)
    assert not check.up


def test_the_service_check_goes_to_the_tenants_service_and_the_public_one_to_its_host() -> None:
    spec = InstanceSpec.from_resource(
        {
            "metadata": {"name": "acme"},
            "spec": {"version": "18.0", "hosts": ["erp.acme.example", "acme.example"]},
        }
    )
    assert health_check_urls(spec, ("service", "public")) == {
        "service": "http://odoo.odoo-acme.svc:8069/web/health",
        "public": "https://erp.acme.example/web/health",
    }
    assert health_check_urls(spec, ()) == {}


def test_check_targets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ProbeSettings.from_environment().health_checks == ("service",)
    monkeypatch.setenv("ODOO_OPERATOR_HEALTH_CHECKS", "service, public")
    assert ProbeSettings.from_environment().health_checks == ("service", "public")
    assert parse_health_check_targets("none") == ()
    with pytest.raises(ValueError, match="unknown target"):
        parse_health_check_targets("service,ping")


def test_each_target_is_a_series_of_its_own_and_goes_with_the_tenant() -> None:
    metrics.set_tenant("acme", metrics.TenantState(phase="Ready"))
    metrics.record_health_check("acme", "service", metrics.HealthCheck(True, 0.02))
    metrics.record_health_check("acme", "public", metrics.HealthCheck(False, 5.0))
    metrics.record_health_check("acme", "service", metrics.HealthCheck(False, 0.5))
    metrics.record_health_check("gone", "service", metrics.HealthCheck(True, 0.1))

    def value(name: str, target: str, instance: str = "acme") -> float | None:
        return metrics.REGISTRY.get_sample_value(
            f"odoo_operator_{name}", {"instance": instance, "target": target}
        )

    assert value("tenant_health_check_up", "service") == 0  # the newest check counts
    assert value("tenant_health_check_duration_seconds", "service") == 0.5
    assert value("tenant_health_check_up", "public") == 0
    assert value("tenant_health_check_up", "service", "gone") is None  # not a tracked tenant
    metrics.forget_instance("acme")
    assert value("tenant_health_check_up", "service") is None
