"""Chaos: an operator SIGKILLed every 5-20 s, and restarted at once, still provisions a
hundred tenants and then tears them all down without leaving anything behind.

From before the first create until everything is deleted, a killer thread SIGKILLs the
running operator process (its whole process group: no chance to clean up) at random intervals
of ``KILL_INTERVAL_SECONDS`` after the previous one started serving, and starts a new one at
once; the mass deletion, which lasts only seconds, gets one more kill the moment its first
tenant is gone. Meanwhile:

- ``TENANTS`` instances are created (``deletionPolicy: Delete``); all must become Ready, and
  every tenant's ``odoo-database`` and ``odoo-redis`` Secrets must be accepted by PostgreSQL and
  Redis: Secret, role and ACL user agree;
- ``WITH_BACKUPS`` of them have backups configured, and one OdooBackup each must succeed, so
  the blob store holds something of theirs;
- then all are deleted. A ``Delete`` deletion of a tenant with backups first takes a
  ``pre-delete`` backup, kept on purpose (``retain: true``) with its OdooBackup after the
  tenant is gone, so the tenants' OdooBackups are deleted as well once the tenants are gone.

Once everything is gone: no namespace ``odoo-<name>``, no PostgreSQL role or database whose
name starts with a tenant's database name ``odoo_<name>`` (scratch and kept copies included),
no Redis ACL user ``odoo-<name>`` and no blob under ``<name>/`` in the backup container. The
same queries are run before the deletion, where they must find every tenant's objects, so an
empty answer afterwards means they are gone, not that the queries look elsewhere.

The kill intervals come from a seeded ``random.Random``; the seed is printed and named in
every failure message, and ``ODOO_OPERATOR_CHAOS_SEED`` replays it (the intervals, not the
machine's timing).
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import redis
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.tenants import (
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    OperatorStarts,
    create_backup,
    delete_quietly,
    make_instance,
    redis_as,
    secret_values,
    tenant_login,
)
from odoo_devstack import kubectl
from odoo_devstack.demo import is_ready
from odoo_devstack.operator_setup import BACKUP_CONTAINER, register_servers
from odoo_devstack.processes import ManagedProcess

TENANTS = 100
WITH_BACKUPS = 5  # the first five tenants back up, so the blob store has something to clean
KILL_INTERVAL_SECONDS = (5.0, 20.0)
SEED_ENV = "ODOO_OPERATOR_CHAOS_SEED"
CREATE_TIMEOUT = 300.0  # sending the creates, retried while no operator serves the webhook
READY_TIMEOUT = 600.0  # from the first create until all are Ready
BACKUP_TIMEOUT = 180.0
DELETE_TIMEOUT = 300.0
NAMESPACES_GONE_TIMEOUT = 180.0
RUN_LABEL = "e2e.tenantops.io/chaos-run"
BACKUPS = "odoobackups"
SLOW_DELETION_SECONDS = 30.0
PURGE_SECONDS = 180.0
# Each phase's own deadline fails first, saying what it waited for (2.5-3.5 min in all on
# the 2-core machine when nothing is wrong).
TEST_TIMEOUT = (
    READY_TIMEOUT + 2 * BACKUP_TIMEOUT + DELETE_TIMEOUT + NAMESPACES_GONE_TIMEOUT + PURGE_SECONDS
) + 120

T = TypeVar("T")
Launch = Callable[[], ManagedProcess]


class OperatorKiller:
    """A thread that SIGKILLs the current operator at random intervals and starts another.

    Each interval counts from the moment the previous operator serves its webhook, so every
    operator gets 5-20 s of work however slow its start-up. :meth:`hurry` kills at once, to
    land a kill in a phase of the test that lasts only seconds.
    """

    def __init__(self, launch: Launch, seed: int) -> None:
        self._launch = launch
        self._random = random.Random(seed)  # noqa: S311 - replayable, not secret
        self._stopping = threading.Event()
        self._hurried = threading.Event()
        self._lock = threading.Lock()
        self._current = launch()
        self._thread = threading.Thread(target=self._run, name="operator-killer", daemon=True)
        self.kills = 0
        self.error: BaseException | None = None

    @property
    def current(self) -> ManagedProcess:
        """The newest operator process (it may be being killed or still starting)."""
        with self._lock:
            return self._current

    def start(self) -> None:
        self._thread.start()

    def hurry(self) -> None:
        """Kill the current operator now (and start the next one), not at the interval's end."""
        self._hurried.set()

    def stop(self) -> None:
        """Stop killing; the last operator keeps running."""
        self._stopping.set()
        self._hurried.set()
        if self._thread.is_alive():
            self._thread.join(timeout=120)

    def _run(self) -> None:
        while True:
            self._hurried.wait(self._random.uniform(*KILL_INTERVAL_SECONDS))
            self._hurried.clear()
            if self._stopping.is_set():
                return
            try:
                self.current.kill()
                self.kills += 1
                replacement = self._launch()
            except BaseException as exc:  # noqa: BLE001 - reported by the test's checks
                self.error = exc
                return
            with self._lock:
                self._current = replacement


@pytest.fixture
def launch(
    k8s: client.ApiClient,
    operator_kubeconfig: Path,
    postgres_dsn: str,
    redis_url: str,
    blob_connection_string: str,
    tmp_path: Path,
) -> Iterator[Launch]:
    """Starts operator processes (webhook on), each with its own log; stops them all at the end
    (from one long-lived thread: see :class:`~e2e.tenants.OperatorStarts`)."""
    kubectl.install_crds(k8s, REPO / "crds")
    config = register_servers(k8s, postgres_dsn, redis_url, tmp_path, blob_connection_string)
    starts = OperatorStarts(operator_kubeconfig, config, tmp_path)
    yield starts
    starts.stop()


def _with_webhook_retries(call: Callable[[], T], killer: OperatorKiller, what: str) -> T:
    """``call``, retried while the apiserver cannot reach the admission webhook (the operator
    serving it was just killed; the next one re-points the configuration once it serves)."""
    deadline = time.monotonic() + 90
    while True:
        try:
            return call()
        except ApiException as exc:
            if exc.status is None or exc.status < 500 or time.monotonic() > deadline:
                raise
        if killer.error is not None:
            raise AssertionError(f"no operator to serve the webhook for {what}") from killer.error
        time.sleep(0.5)


def _listed(
    custom: client.CustomObjectsApi, plural: str, selector: str | None = None
) -> dict[str, dict[str, Any]]:
    """The cluster-scoped objects of this API group and kind (with ``selector``'s labels),
    by name."""
    listing: dict[str, Any] = custom.list_cluster_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, plural, label_selector=selector
    )
    return {item["metadata"]["name"]: item for item in listing["items"]}


def _ready_condition(instance: dict[str, Any]) -> str:
    conditions = (instance.get("status") or {}).get("conditions") or []
    ready: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    return f"{ready.get('status')} {ready.get('reason')}: {ready.get('message')}"


def _leftovers(
    core: client.CoreV1Api,
    postgres_dsn: str,
    admin_redis: redis.Redis,
    container: ContainerClient,
    names: list[str],
) -> dict[str, list[str]]:
    """What of these tenants exists, by kind: their namespaces, roles and databases (any name
    starting with a tenant's database name), Redis users and blobs."""
    namespaces = {f"odoo-{name}" for name in names}
    databases = tuple(f"odoo_{name.replace('-', '_')}" for name in names)
    users = {f"odoo-{name}" for name in names}
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        roles = [
            row[0]
            for row in admin.execute("SELECT rolname::text FROM pg_catalog.pg_roles").fetchall()
        ]
        dbs = [
            row[0]
            for row in admin.execute("SELECT datname::text FROM pg_catalog.pg_database").fetchall()
        ]
    acl = [u.decode() if isinstance(u, bytes) else str(u) for u in admin_redis.acl_users()]
    tenants = set(names)
    try:  # a backup of instance <name> is stored under <name>/<backup id>/
        blobs = [blob.name for blob in container.list_blobs() if blob.name.split("/")[0] in tenants]
    except ResourceNotFoundError:  # no backup ever created the container
        blobs = []
    return {
        "namespaces": sorted(
            str(ns.metadata.name)
            for ns in core.list_namespace().items
            if ns.metadata is not None and ns.metadata.name in namespaces
        ),
        "roles": sorted(r for r in roles if r.startswith(databases)),
        "databases": sorted(d for d in dbs if d.startswith(databases)),
        "redis users": sorted(u for u in acl if u in users),
        "blobs": sorted(blobs),
    }


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "none"
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"min {ordered[0]:.1f} s, median {statistics.median(ordered):.1f} s, "
        f"p95 {p95:.1f} s, max {ordered[-1]:.1f} s"
    )


def _backups_of(custom: client.CustomObjectsApi, names: list[str]) -> list[str]:
    """The OdooBackups of these tenants."""
    tenants = set(names)
    return sorted(
        name
        for name, backup in _listed(custom, BACKUPS).items()
        if (backup.get("spec") or {}).get("instance") in tenants
    )


def _purge(
    custom: client.CustomObjectsApi,
    killer: OperatorKiller,
    launch: Launch,
    run: str,
    names: list[str],
) -> None:
    """Best effort, after a failure: delete what is left of this run through an operator
    that is not being killed, so later modules find the cluster as they expect."""
    killer.stop()
    operator = killer.current
    if operator.exit_code() is not None:
        operator = launch()
    deadline = time.monotonic() + PURGE_SECONDS
    while time.monotonic() < deadline:
        left = _listed(custom, PLURAL, f"{RUN_LABEL}={run}")
        backups = _backups_of(custom, names)
        if not left and not backups:
            return
        for name in left:
            delete_quietly(custom, PLURAL, name)
        if not left:  # only once the tenants are gone: their pre-delete backups are taken
            for backup in backups:
                delete_quietly(custom, BACKUPS, backup)
        time.sleep(2)


@pytest.mark.timeout(TEST_TIMEOUT)
def test_a_hundred_tenants_survive_an_operator_killed_every_few_seconds_and_leave_nothing(
    k8s: client.ApiClient,
    launch: Launch,
    postgres_dsn: str,
    redis_url: str,
    blob_connection_string: str,
) -> None:
    custom, core = client.CustomObjectsApi(k8s), client.CoreV1Api(k8s)
    seed = int(os.environ.get(SEED_ENV) or random.randrange(2**32))  # noqa: S311
    run = uuid.uuid4().hex[:6]
    names = [f"chaos-{run}-{index:03d}" for index in range(TENANTS)]
    selector = f"{RUN_LABEL}={run}"
    admin_redis = redis.Redis.from_url(redis_url)
    container = BlobServiceClient.from_connection_string(
        blob_connection_string
    ).get_container_client(BACKUP_CONTAINER)
    print(f"\n[chaos] run {run}, seed {seed} ({SEED_ENV}={seed} replays the kill intervals)")

    # The pool of pre-created volumes is never refilled (released ones stay Released): a
    # claim left Pending would look like a hung tenant. Volumes the controller has not
    # looked at yet (a new cluster) are Pending, and free.
    available = [
        pv
        for pv in core.list_persistent_volume().items
        if pv.status is not None
        and pv.status.phase in ("Pending", "Available")
        and (pv.spec is None or pv.spec.claim_ref is None)
    ]
    assert len(available) >= TENANTS, (
        f"only {len(available)} free volumes for {TENANTS} filestore claims"
    )

    killer = OperatorKiller(launch, seed)

    def context() -> str:
        return (
            f"seed {seed} ({SEED_ENV}={seed} to replay), run {run}, {killer.kills} kills so far; "
            f"last operator log ({killer.current.log_path}):\n{killer.current.log_tail(60)}"
        )

    def instances() -> dict[str, dict[str, Any]]:
        return _listed(custom, PLURAL, selector)

    def check_killer() -> None:
        if killer.error is not None:
            pytest.fail(f"a restarted operator did not come up: {killer.error}\n{context()}")

    killer.start()
    passed = False
    try:
        # --- create, and wait until every tenant is Ready -------------------------------
        started = time.monotonic()
        for index, name in enumerate(names):
            spec: dict[str, Any] = {"deletionPolicy": "Delete"}
            if index < WITH_BACKUPS:
                spec["backup"] = {"verify": "Never"}
            body = make_instance(name, **spec)
            body["metadata"]["labels"] = {RUN_LABEL: run}

            def create(body: dict[str, Any] = body) -> None:
                try:
                    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
                except ApiException as exc:
                    if exc.status != 409:  # created by an attempt whose answer was lost
                        raise

            _with_webhook_retries(create, killer, f"creating {name}")
            assert time.monotonic() - started < CREATE_TIMEOUT, f"creates too slow\n{context()}"
        sent = time.monotonic() - started
        deadline = started + READY_TIMEOUT
        while True:
            check_killer()
            found = instances()
            waiting = [n for n in names if n not in found or not is_ready(found[n])]
            if not waiting:
                break
            if time.monotonic() > deadline:
                lines = [
                    f"  {n}: {_ready_condition(found[n]) if n in found else 'missing'}"
                    for n in waiting
                ]
                pytest.fail(
                    f"{len(waiting)} of {TENANTS} tenants not Ready after {READY_TIMEOUT:.0f} s:\n"
                    + "\n".join(lines)
                    + f"\n{context()}"
                )
            time.sleep(2)
        all_ready = time.monotonic() - started
        kills_to_ready = killer.kills
        print(
            f"[chaos] {TENANTS} creates sent in {sent:.1f} s; create -> all Ready "
            f"{all_ready:.1f} s with {kills_to_ready} kills"
        )
        assert kills_to_ready > 0, f"all Ready before the first kill: nothing proved\n{context()}"

        # --- every tenant's Secrets are what the servers accept --------------------------
        for name in names:
            database = f"odoo_{name.replace('-', '_')}"
            with psycopg.connect(tenant_login(k8s, postgres_dsn, name)) as tenant:
                row = tenant.execute("SELECT current_user::text, current_database()::text")
                assert row.fetchone() == (database, database), name
            cache = secret_values(k8s, f"odoo-{name}", "odoo-redis")
            assert cache["username"] == f"odoo-{name}"
            assert redis_as(redis_url, cache["username"], cache["password"]).ping(), name

        # --- one backup each for the tenants with backups --------------------------------
        backups_started = time.monotonic()
        for name in names[:WITH_BACKUPS]:

            def back_up(name: str = name) -> str:
                return create_backup(custom, name)

            _with_webhook_retries(back_up, killer, f"a backup of {name}")
        while True:
            check_killer()
            phases = {
                name: (backup.get("status") or {}).get("phase")
                for name, backup in _listed(custom, BACKUPS).items()
                if backup["spec"]["instance"] in names[:WITH_BACKUPS]
            }
            failed = [b for b, phase in phases.items() if phase == "Failed"]
            assert not failed, f"backups failed: {failed}\n{context()}"
            if len(phases) == WITH_BACKUPS and all(p == "Succeeded" for p in phases.values()):
                break
            assert time.monotonic() - backups_started < BACKUP_TIMEOUT, (
                f"backups not done after {BACKUP_TIMEOUT:.0f} s: {phases}\n{context()}"
            )
            time.sleep(2)
        backed_up = time.monotonic() - backups_started
        print(f"[chaos] {WITH_BACKUPS} backups succeeded in {backed_up:.1f} s")

        # The leftover queries find every tenant's objects while they exist.
        present = _leftovers(core, postgres_dsn, admin_redis, container, names)
        for kind in ("namespaces", "roles", "databases", "redis users"):
            assert len(present[kind]) == TENANTS, (kind, present[kind])
        with_blobs = {blob.split("/", 1)[0] for blob in present["blobs"]}
        assert with_blobs == set(names[:WITH_BACKUPS]), present["blobs"]

        # --- delete them all, kills going on ---------------------------------------------
        kills_before_delete = killer.kills
        kills_at_first_gone: int | None = None
        deleting = time.monotonic()
        requested: dict[str, float] = {}
        for name in names:
            delete_quietly(custom, PLURAL, name)
            requested[name] = time.monotonic()
        gone: dict[str, float] = {}
        while len(gone) < TENANTS:
            check_killer()
            found = instances()
            now = time.monotonic()
            for name in names:
                if name not in found and name not in gone:
                    gone[name] = now - requested[name]
            if gone and kills_at_first_gone is None:
                # The deletion lasts seconds, less than many intervals: one kill now, with
                # the other tenants' deletions under way.
                kills_at_first_gone = killer.kills
                killer.hurry()
            if time.monotonic() - deleting > DELETE_TIMEOUT:
                lines = [
                    f"  {n}: finalizers {item['metadata'].get('finalizers')}, "
                    f"{_ready_condition(item)}, kopf {(item.get('status') or {}).get('kopf')}"
                    for n, item in found.items()
                ]
                pytest.fail(
                    f"{len(found)} tenants not gone after {DELETE_TIMEOUT:.0f} s:\n"
                    + "\n".join(lines)
                    + f"\n{context()}"
                )
            time.sleep(1)
        all_gone = time.monotonic() - deleting
        kills_while_deleting = killer.kills - kills_before_delete
        kills_mid_deletion = killer.kills - (kills_at_first_gone or 0)
        slow = sorted((n for n in names if gone[n] > SLOW_DELETION_SECONDS), key=gone.__getitem__)
        print(
            f"[chaos] delete -> all {TENANTS} gone {all_gone:.1f} s with "
            f"{kills_while_deleting} kills ({kills_mid_deletion} after the first was gone); "
            f"per tenant {_percentiles(list(gone.values()))}"
        )
        for name in slow:
            print(f"[chaos]   slow deletion: {name} {gone[name]:.1f} s")
        assert kills_mid_deletion > 0, f"all gone before a kill: nothing proved\n{context()}"

        # The pre-delete backups (and the ones above) outlive their tenants on purpose;
        # deleting their OdooBackups takes their blobs.
        ours = _backups_of(custom, names)
        pre_delete = {f"{name}-pre-delete" for name in names[:WITH_BACKUPS]}
        assert pre_delete <= set(ours), ours
        for backup in ours:
            delete_quietly(custom, BACKUPS, backup)
        backups_deleting = time.monotonic()
        while True:
            check_killer()
            remaining = _backups_of(custom, names)
            if not remaining:
                break
            assert time.monotonic() - backups_deleting < BACKUP_TIMEOUT, (
                f"OdooBackups not gone: {remaining}\n{context()}"
            )
            time.sleep(1)
        total_kills = killer.kills
        killer.stop()
        check_killer()

        # --- nothing of any tenant is left -------------------------------------------------
        # Namespaces terminate after their instance is gone (the delete handler only starts
        # it); the rest is dropped before the finalizer is released.
        namespaces_deadline = time.monotonic() + NAMESPACES_GONE_TIMEOUT
        left = _leftovers(core, postgres_dsn, admin_redis, container, names)
        while left["namespaces"] and time.monotonic() < namespaces_deadline:
            time.sleep(2)
            left = _leftovers(core, postgres_dsn, admin_redis, container, names)
        leaked = {kind: found_ for kind, found_ in left.items() if found_}
        assert not leaked, f"left behind after deleting every tenant: {leaked}\n{context()}"
        print(
            f"[chaos] {total_kills} kills in all ({time.monotonic() - started:.1f} s); "
            f"nothing left of {TENANTS} tenants ({len(present['blobs'])} blobs before deletion)"
        )
        passed = True
    finally:
        if not passed:
            _purge(custom, killer, launch, run, names)
        killer.stop()
