"""The tenant probe loop: business signals read from each tenant's database.

Every ``ODOO_OPERATOR_PROBE_INTERVAL`` seconds (default 60) the loop probes every tenant
whose database exists, at most ``ODOO_OPERATOR_PROBE_CONCURRENCY`` (default 8) at a time,
each within ``ODOO_OPERATOR_PROBE_TIMEOUT`` seconds (default 5). A probe logs in as the
tenant's own role (the password from the tenant's credentials Secret, cached), opens one
READ ONLY transaction with a statement and lock timeout, and reads:

- database size, sessions of the role and its connection limit, oldest open transaction;
- active ``ir_cron`` rows whose ``nextcall`` is more than
  ``ODOO_OPERATOR_CRON_OVERDUE_THRESHOLD`` in the past (default 15m; seconds or
  ``d``/``h``/``m``), and how far the worst one is behind (Odoo stores ``nextcall`` in UTC);
- ``queue_job`` rows by state, where that module's table exists.

In the same round, and within the same limits, a **synthetic check** sends ``GET /web/health``
(Odoo's own health endpoint) to each serving tenant (phase Ready or Stalled) through each
target of ``ODOO_OPERATOR_HEALTH_CHECKS`` (comma-separated; default ``service``):
``service`` is the tenant's Service inside the cluster (``http://odoo.<namespace>.svc:8069``,
allowed by the tenant's NetworkPolicy ``allow-operator-health-check``), ``public`` its first
host over HTTPS through the ingress controller; ``none`` turns the checks off. A 200 in time
is up; anything else, including a redirect, is down. With ``service``, the tenant's monitoring
user then logs in through the Service and reads its own user record
(:mod:`odoo_operator.backends.odoo_http`; never as the admin), recorded as
``tenant_login_check_up`` and its duration.

A slow, refusing or missing database marks only that tenant's ``tenant_probe_up`` 0; the
loop itself runs as its own task, so it never delays a handler, and the scrape only renders
what the loop last stored. Tenants in maintenance (a restore or an upgrade renames
databases) or with a backup or restore running in this process are skipped for that round.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from .. import metrics
from ..backends.odoo_http import check_health, check_login
from ..backends.postgres import read_archiver
from ..backends.tenant_session import read_only_transaction
from ..builders.odoo_users import CREDENTIALS_SECRET, MONITOR_LOGIN, MONITOR_PASSWORD_KEY
from ..builders.schedule import parse_duration
from ..builders.tenant import ODOO_HTTP_PORT
from ..engine.database import first_line
from ..model.config import ServerRef
from ..model.spec import InstanceSpec
from ..reconcile.backups import tenant_database_access
from ..reconcile.clients import Clients

logger = logging.getLogger(__name__)

HEALTH_CHECKS_ENV = "ODOO_OPERATOR_HEALTH_CHECKS"
HEALTH_CHECK_TARGETS = ("service", "public")
HEALTH_PATH = "/web/health"
# Phases in which a tenant is meant to answer: not while it is provisioned, suspended or held
# in maintenance by a restore or an upgrade.
_SERVING_PHASES = ("Ready", "Stalled")
INTERVAL_ENV = "ODOO_OPERATOR_PROBE_INTERVAL"
TIMEOUT_ENV = "ODOO_OPERATOR_PROBE_TIMEOUT"
CONCURRENCY_ENV = "ODOO_OPERATOR_PROBE_CONCURRENCY"
CRON_THRESHOLD_ENV = "ODOO_OPERATOR_CRON_OVERDUE_THRESHOLD"
_CREDENTIAL_TTL_SECONDS = 600.0

_OVERVIEW = """
SELECT pg_database_size(current_database()),
       (SELECT count(*) FROM pg_stat_activity
         WHERE usename = current_user AND pid <> pg_backend_pid()),
       (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user),
       (SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0)
          FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND xact_start IS NOT NULL),
       to_regclass('ir_cron') IS NOT NULL,
       to_regclass('queue_job') IS NOT NULL
"""
_OVERDUE_CRONS = """
SELECT count(*),
       coalesce(extract(epoch FROM max((now() AT TIME ZONE 'UTC') - nextcall)), 0)
  FROM ir_cron
 WHERE active AND nextcall < (now() AT TIME ZONE 'UTC') - make_interval(secs => %s)
"""
_QUEUE_JOBS = """
SELECT state, count(*) FROM queue_job
 WHERE state IN ('pending', 'enqueued', 'started', 'failed') GROUP BY state
"""


@dataclass(frozen=True)
class ProbeSettings:
    """How often, how many at once, how long each, and when a cron counts as overdue."""

    interval: float = 60.0
    timeout: float = 5.0
    concurrency: int = 8
    cron_threshold_seconds: float = 900.0
    health_checks: tuple[str, ...] = ("service",)

    @classmethod
    def from_environment(cls) -> ProbeSettings:
        """The settings from ``ODOO_OPERATOR_PROBE_*`` and the cron threshold variable."""
        threshold = os.environ.get(CRON_THRESHOLD_ENV, "15m")
        try:
            seconds = float(threshold)
        except ValueError:
            seconds = parse_duration(threshold).total_seconds()
        return cls(
            interval=float(os.environ.get(INTERVAL_ENV, "60")),
            timeout=float(os.environ.get(TIMEOUT_ENV, "5")),
            concurrency=max(1, int(os.environ.get(CONCURRENCY_ENV, "8"))),
            cron_threshold_seconds=seconds,
            health_checks=parse_health_check_targets(os.environ.get(HEALTH_CHECKS_ENV, "service")),
        )


def parse_health_check_targets(text: str) -> tuple[str, ...]:
    """``service``, ``public``, both (comma-separated) or ``none``; ValueError otherwise."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if names in ((), ("none",)):
        return ()
    unknown = [name for name in names if name not in HEALTH_CHECK_TARGETS]
    if unknown:
        raise ValueError(
            f"{HEALTH_CHECKS_ENV}: unknown target(s) {', '.join(unknown)}; use service, "
            "public, both comma-separated, or none"
        )
    return names


def health_check_urls(spec: InstanceSpec, targets: tuple[str, ...]) -> dict[str, str]:
    """Where each synthetic check target reaches the tenant's health endpoint."""
    urls = {}
    if "service" in targets:
        urls["service"] = f"http://odoo.{spec.namespace}.svc:{ODOO_HTTP_PORT}{HEALTH_PATH}"
    # A restore drill's temporary tenant has no route: there is no public address to check.
    if "public" in targets and spec.hosts and not spec.drill:
        urls["public"] = f"https://{spec.hosts[0]}{HEALTH_PATH}"
    return urls


async def probe_database(conninfo: str, settings: ProbeSettings) -> metrics.ProbeResult:
    """Read one tenant's signals; raises on any failure (the caller records it as down)."""
    started = time.monotonic()
    async with read_only_transaction(
        conninfo, settings.timeout, "odoo-operator-probe"
    ) as connection:
        cursor = await connection.execute(_OVERVIEW)
        row: Any = await cursor.fetchone()
        size, sessions, limit, longest, has_cron, has_queue = row
        overdue: int | None = None
        lag: float | None = None
        if has_cron:
            cursor = await connection.execute(_OVERDUE_CRONS, (settings.cron_threshold_seconds,))
            cron_row: Any = await cursor.fetchone()
            overdue, lag = int(cron_row[0]), float(cron_row[1])
        queue: tuple[tuple[str, int], ...] | None = None
        if has_queue:
            cursor = await connection.execute(_QUEUE_JOBS)
            found = {str(state): int(count) for state, count in await cursor.fetchall()}
            queue = tuple((state, found.get(state, 0)) for state in metrics.QUEUE_JOB_STATES)
    return metrics.ProbeResult(
        up=True,
        duration_seconds=time.monotonic() - started,
        database_size_bytes=float(size),
        connections=float(sessions),
        connection_limit=float(limit) if limit is not None and limit >= 0 else None,
        longest_transaction_seconds=float(longest),
        cron_overdue=overdue,
        cron_max_lag_seconds=lag,
        queue_jobs=queue,
    )


class TenantProber:
    """The loop; one per operator process, started at startup and cancelled at cleanup."""

    def __init__(self, clients: Clients, settings: ProbeSettings) -> None:
        self.clients = clients
        self.settings = settings
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        # instance -> (conninfo, fetched at): the password Secret is read again after a
        # while, and at once after a failed probe (a rotated password).
        self._conninfo: dict[str, tuple[str, float]] = {}
        self._down: set[str] = set()  # logged once when a tenant goes down, once when back
        self._unreachable: set[tuple[str, str]] = set()  # (tenant, target), logged likewise
        # instance -> (monitoring user's password or None, fetched at), read like _conninfo.
        self._monitor_passwords: dict[str, tuple[str | None, float]] = {}
        self._login_failing: set[str] = set()  # logged once when the login fails, once back
        self._session: aiohttp.ClientSession | None = None

    async def _conninfo_of(self, name: str, spec: InstanceSpec) -> str:
        cached = self._conninfo.get(name)
        if cached is not None and time.monotonic() - cached[1] < _CREDENTIAL_TTL_SECONDS:
            return cached[0]
        access = await tenant_database_access(self.clients, spec)
        self._conninfo[name] = (access.conninfo, time.monotonic())
        return access.conninfo

    async def probe_one(self, name: str, spec: InstanceSpec) -> None:
        """Probe one tenant within the timeout and record what came of it."""
        async with self._semaphore:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.settings.timeout):
                    conninfo = await self._conninfo_of(name, spec)
                    result = await probe_database(conninfo, self.settings)
            except Exception as exc:  # noqa: BLE001 - any failure means "down" for this tenant
                self._conninfo.pop(name, None)
                if name not in self._down:
                    self._down.add(name)
                    reason = "timed out" if isinstance(exc, TimeoutError) else first_line(exc)
                    logger.warning(
                        "probe of the database of tenant %s failed: %s",
                        name,
                        reason,
                        extra={"instance": name},
                    )
                result = metrics.ProbeResult(up=False, duration_seconds=time.monotonic() - started)
            else:
                if name in self._down:
                    self._down.discard(name)
                    logger.info(
                        "probe of the database of tenant %s succeeds again",
                        name,
                        extra={"instance": name},
                    )
            metrics.record_probe(name, result)

    async def _monitor_password_of(self, name: str, spec: InstanceSpec) -> str | None:
        """The monitoring user's password from the tenant's credentials Secret (None: not
        there yet), cached like the database access."""
        cached = self._monitor_passwords.get(name)
        if cached is not None and time.monotonic() - cached[1] < _CREDENTIAL_TTL_SECONDS:
            return cached[0]
        secret = await self.clients.kube.get("v1", "Secret", CREDENTIALS_SECRET, spec.namespace)
        encoded = ((secret or {}).get("data") or {}).get(MONITOR_PASSWORD_KEY)
        password = base64.b64decode(encoded).decode() if encoded else None
        self._monitor_passwords[name] = (password, time.monotonic())
        return password

    async def login_one(self, name: str, spec: InstanceSpec, service_up: bool) -> None:
        """Log in as the tenant's monitoring user through its Service and read one record;
        record the result. Not tried when the Service's /web/health just failed: the login
        could only fail too, after the same timeout. Not for a restore drill's temporary
        tenant: it holds the backup's users, whose monitoring password is the source's, and
        the drill logs in itself (reconcile/drills.py)."""
        if spec.drill:
            return
        if not service_up:
            metrics.record_login_check(name, metrics.HealthCheck(up=False, duration_seconds=0.0))
            return
        if self._session is None:
            return
        try:
            password = await self._monitor_password_of(name, spec)
        except Exception as exc:  # noqa: BLE001 - an unreadable Secret means no check this round
            logger.warning(
                "synthetic login of tenant %s skipped: %s",
                name,
                first_line(exc),
                extra={"instance": name},
            )
            return
        if password is None:
            return
        base_url = f"http://odoo.{spec.namespace}.svc:{ODOO_HTTP_PORT}"
        async with self._semaphore:
            check = await check_login(
                self._session,
                base_url,
                spec.database,
                MONITOR_LOGIN,
                password,
                self.settings.timeout,
            )
        metrics.record_login_check(name, check)
        if not check.up:
            # A password rotated by hand is read again at the next round.
            self._monitor_passwords.pop(name, None)
            if name not in self._login_failing:
                self._login_failing.add(name)
                logger.warning(
                    "synthetic login of tenant %s as %s through service failed",
                    name,
                    MONITOR_LOGIN,
                    extra={"instance": name},
                )
        elif name in self._login_failing:
            self._login_failing.discard(name)
            logger.info(
                "synthetic login of tenant %s succeeds again", name, extra={"instance": name}
            )

    async def check_one(self, name: str, spec: InstanceSpec) -> None:
        """Run the tenant's synthetic checks and record them; log changes of reachability."""
        if self._session is None:
            return
        service_up: bool | None = None
        for target, url in health_check_urls(spec, self.settings.health_checks).items():
            async with self._semaphore:
                check = await check_health(self._session, url, self.settings.timeout)
            metrics.record_health_check(name, target, check)
            if target == "service":
                service_up = check.up
            key = (name, target)
            if not check.up and key not in self._unreachable:
                self._unreachable.add(key)
                logger.warning(
                    "synthetic check of tenant %s through %s failed: %s",
                    name,
                    target,
                    url,
                    extra={"instance": name},
                )
            elif check.up and key in self._unreachable:
                self._unreachable.discard(key)
                logger.info(
                    "synthetic check of tenant %s through %s succeeds again",
                    name,
                    target,
                    extra={"instance": name},
                )
        if service_up is not None:
            await self.login_one(name, spec, service_up)

    async def check_archive(self, server: ServerRef) -> None:
        """Read a server's WAL archiver (servers registered with a ``pitr`` archive)."""
        try:
            conninfo = await self.clients.postgres_admin_conninfo(server)
        except Exception as error:  # noqa: BLE001 - reported as the archive being unreadable
            logger.warning("no admin login for server %s: %s", server.name, error)
            metrics.record_archive(server.name, metrics.ArchiveState(up=False))
            return
        async with self._semaphore:
            state = await read_archiver(conninfo, self.settings.timeout)
        metrics.record_archive(server.name, state)

    async def run_round(self) -> int:
        """Probe every tenant once, and check the serving ones; the number probed."""
        targets = metrics.probe_targets()
        for gone in set(self._conninfo) - set(targets):
            self._conninfo.pop(gone, None)
        self._down &= set(targets)
        self._unreachable = {key for key in self._unreachable if key[0] in targets}
        for gone in set(self._monitor_passwords) - set(targets):
            self._monitor_passwords.pop(gone, None)
        self._login_failing &= set(targets)
        due = [
            (name, spec)
            for name, (spec, phase) in sorted(targets.items())
            if phase != "Maintenance" and not self.clients.tenant_lock(name).locked()
        ]
        serving = [
            (name, spec)
            for name, (spec, phase) in sorted(targets.items())
            if phase in _SERVING_PHASES
        ]
        started = time.monotonic()
        await asyncio.gather(
            *(self.probe_one(name, spec) for name, spec in due),
            *(self.check_one(name, spec) for name, spec in serving),
            *(
                self.check_archive(server)
                for server in self.clients.config.postgres_servers.values()
                if server.pitr is not None
            ),
        )
        metrics.record_probe_round(time.monotonic() - started, len(due))
        return len(due)

    async def run(self) -> None:
        """Probe rounds forever, one every interval (or back to back when a round is slower)."""
        # One HTTP session for every check, closed when the loop is cancelled at cleanup.
        # No cookie jar: the login check carries its session itself (backends/odoo_http.py), and no
        # tenant's cookie may ever be sent to another.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            self._session = session
            try:
                while True:
                    started = time.monotonic()
                    try:
                        await self.run_round()
                    except Exception:  # the loop must outlive any bug in one round
                        logger.exception("a round of tenant probes failed")
                    elapsed = time.monotonic() - started
                    await asyncio.sleep(max(0.0, self.settings.interval - elapsed))
            finally:
                self._session = None


def start(clients: Clients, settings: ProbeSettings | None = None) -> asyncio.Task[None]:
    """Start the loop as a task of the running event loop."""
    prober = TenantProber(clients, settings or ProbeSettings.from_environment())
    return asyncio.get_running_loop().create_task(prober.run(), name="odoo-operator-probes")
