"""Fixtures of the conformance suite: the operator's contract with real Odoo.

The operator runs as its own process (one per test module, as in e2e) with one difference
in its configuration: its dedicated node pool is the real node
(``odoo_devstack.podrunner.node.placement()``), so every ``tenancy: dedicated`` tenant runs
its init Job, web and cron pods as real Odoo processes of this machine. The real node plays
``odoo:17.0`` and ``odoo:18.0`` with the cached runtimes (``odoo_devstack.odoo_images``),
registered here as a runner plugin.

A test module names its tenant with ``TENANT_PREFIX`` and ``TENANT_SPEC``; the module-scoped
``tenant`` fixture makes one per Odoo version, Ready, and deletes it afterwards, checking that
nothing of it is left running. Timings are printed at the end of the run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg
import pytest
from e2e.tenants import (
    DRIFT_INTERVAL_SECONDS,
    GROUP,
    PLURAL,
    UPGRADE_INTERVAL_SECONDS,
    VERSION,
    delete_quietly,
)
from kubernetes import client
from psycopg.conninfo import conninfo_to_dict

from conformance.tenants import (
    GONE_TIMEOUT_SECONDS,
    INGRESS_TIMEOUT_SECONDS,
    Ingress,
    PodProcess,
    Tenant,
    conformance_instance,
    eventually,
    find_pod_netns,
    give_tenant_certificate,
    job_seconds,
    namespace_pods,
    pod_processes,
    pods,
    wait_ready,
)
from odoo_devstack import kubectl
from odoo_devstack.demo import start_operator
from odoo_devstack.odoo_images import PLUGIN
from odoo_devstack.odoo_runtime import ODOO_VERSIONS
from odoo_devstack.operator_setup import REAL_NODE_VERSIONS, register_servers
from odoo_devstack.pki import LocalPKI
from odoo_devstack.podrunner.fixtures import PLUGINS_ENV
from odoo_devstack.podrunner.node import placement
from odoo_devstack.podrunner.process import RealNodeProcess
from odoo_devstack.ports import free_port
from odoo_devstack.processes import ManagedProcess
from odoo_devstack.pytest_fixtures import OdooRuntimes
from odoo_devstack.traefik import TraefikProcess

if TYPE_CHECKING:
    from odoo_devstack.pitr import ArchivedPostgres

REPO = Path(__file__).parents[1]
# The operator's probes of every tenant (database, /web/health and the monitoring user's
# login through the tenant's Service) every few seconds, so a test sees them soon.
PROBES = {"ODOO_OPERATOR_PROBE_INTERVAL": "5", "ODOO_OPERATOR_PROBE_TIMEOUT": "10"}
_TIMINGS = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    """Give the session's real node the Odoo images.

    The runner reads its plugins from the environment when the session-scoped ``real_node``
    fixture first starts it, which may be for a test of another suite collected before this
    folder: hence now, at collection, rather than in a fixture. The plugin resolves nothing
    before an Odoo pod asks, so the other suites' pods are not affected.
    """
    plugins = [p.strip() for p in os.environ.get(PLUGINS_ENV, "").split(",") if p.strip()]
    if PLUGIN not in plugins:
        os.environ[PLUGINS_ENV] = ",".join([*plugins, PLUGIN])
    config.stash[_TIMINGS] = []


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """What each tenant cost, so a slow contract shows in every run's output."""
    lines = config.stash.get(_TIMINGS, [])
    if lines:
        terminalreporter.section("conformance timings")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def conformance_operator(
    k8s: client.ApiClient,
    operator_kubeconfig: Path,
    postgres_dsn: str,
    redis_url: str,
    real_node_runner: RealNodeProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ManagedProcess]:
    """The operator as its own process, its dedicated tenants placed on the real node.

    One per test module, as e2e's: two operators must never watch the cluster at once, and
    a module of another suite run in the same session may start its own.
    """
    if PLUGIN not in real_node_runner.plugins:
        pytest.fail(
            f"the session's real node runs without the Odoo images ({PLUGIN}): it started "
            f"before the conformance conftest set {PLUGINS_ENV}; set it before the run"
        )
    # The servers are registered by their loopback address, which the tenants' pods reach
    # through the runner's relays: the same DSN and URL work for the operator and the pods.
    for port in (_port(postgres_dsn, 5432), _port(redis_url, 6379)):
        real_node_runner.forward_host_port(port)
    kubectl.install_crds(k8s, REPO / "crds")
    workdir = tmp_path_factory.mktemp("conformance-operator")
    config = register_servers(
        k8s,
        postgres_dsn,
        redis_url,
        workdir,
        upgrade_concurrency=1,
        dedicated_node_pool=placement(),
        shared_node_pool=placement(),
        versions=REAL_NODE_VERSIONS,
    )
    process = start_operator(
        operator_kubeconfig,
        config,
        workdir / "operator.log",
        drift_interval=DRIFT_INTERVAL_SECONDS,
        upgrade_interval=UPGRADE_INTERVAL_SECONDS,
        metrics_port=free_port(),
        environment=PROBES,
    )
    yield process
    process.stop()


def _port(address: str, default: int) -> int:
    """The TCP port of a libpq connection string or URL."""
    if "://" in address:
        return urlsplit(address).port or default
    return int(conninfo_to_dict(address).get("port") or default)


@pytest.fixture(scope="module")
def make_tenant(
    request: pytest.FixtureRequest,
    k8s: client.ApiClient,
    conformance_operator: ManagedProcess,
    real_node_runner: RealNodeProcess,
    odoo_runtimes: OdooRuntimes,
    postgres_dsn: str,
) -> Callable[[str, str, dict[str, Any]], contextlib.AbstractContextManager[Tenant]]:
    """Another tenant for a test, beside the module's: ``make_tenant(version, prefix, spec)``
    as a context manager (:func:`running_tenant`)."""
    return functools.partial(
        running_tenant,
        request,
        k8s,
        conformance_operator,
        real_node_runner,
        odoo_runtimes,
        postgres_dsn,
    )


@pytest.fixture(scope="module", params=ODOO_VERSIONS, ids=lambda version: f"odoo{version}")
def tenant(
    request: pytest.FixtureRequest,
    make_tenant: Callable[[str, str, dict[str, Any]], contextlib.AbstractContextManager[Tenant]],
) -> Iterator[Tenant]:
    """The test module's tenant (``TENANT_PREFIX``, ``TENANT_SPEC``) for one Odoo version,
    Ready; deleted afterwards, with its database, pods and processes."""
    prefix = getattr(request.module, "TENANT_PREFIX", "cf")
    spec: dict[str, Any] = getattr(request.module, "TENANT_SPEC", {})
    with make_tenant(request.param, prefix, spec) as made:
        yield made


@contextlib.contextmanager
def running_tenant(
    request: pytest.FixtureRequest,
    k8s: client.ApiClient,
    conformance_operator: ManagedProcess,
    real_node_runner: RealNodeProcess,
    odoo_runtimes: OdooRuntimes,
    postgres_dsn: str,
    version: str,
    prefix: str,
    spec: dict[str, Any],
) -> Iterator[Tenant]:
    """A tenant named ``<prefix><major>-<random>`` with ``spec``, Ready on the real node;
    deleted afterwards, checking that nothing of it is left, its timings printed at the end."""
    # Found in the cache (built by `odoo-devstack bootstrap`), or built now: the real node's
    # plugin never builds one.
    odoo_runtimes.get(version)
    name = f"{prefix}{version.replace('.0', '')}-{uuid.uuid4().hex[:5]}"
    made = Tenant(name, version, spec)
    custom = client.CustomObjectsApi(k8s)
    started = time.monotonic()
    custom.create_cluster_custom_object(
        GROUP, VERSION, PLURAL, conformance_instance(name, version, spec)
    )
    try:
        wait_ready(k8s, real_node_runner, conformance_operator, name)
        made.apply_to_ready_seconds = time.monotonic() - started
        made.timings["init Job"] = job_seconds(k8s, made.namespace, "odoo-init")
        # The first web pod (a tenant may have several replicas).
        web = min(pods(k8s, made.namespace, "web"), key=lambda pod: pod.metadata.name)
        ready_at = next(c.last_transition_time for c in web.status.conditions if c.type == "Ready")
        made.timings["web pod created -> Ready"] = (
            ready_at - web.metadata.creation_timestamp
        ).total_seconds()
        yield made
    finally:
        deleting = time.monotonic()
        try:
            _delete(k8s, real_node_runner, postgres_dsn, made)
            made.timings["delete -> gone"] = time.monotonic() - deleting
        finally:
            # Written last, with what the tests measured too; a tenant that never became
            # Ready shows without its apply -> Ready.
            request.config.stash[_TIMINGS].append(
                f"{request.module.__name__} {name} Odoo {version}: apply -> Ready "
                f"{made.apply_to_ready_seconds:.1f}s; "
                + "; ".join(f"{what} {seconds:.1f}s" for what, seconds in made.timings.items())
            )


def _delete(
    k8s: client.ApiClient, runner: RealNodeProcess, postgres_dsn: str, tenant: Tenant
) -> None:
    """Delete the instance and check that nothing of it is left: no namespace (so no pod),
    no process or network namespace of its pods on the real node, no database or role
    (deletionPolicy Delete)."""
    custom = client.CustomObjectsApi(k8s)
    core = client.CoreV1Api(k8s)
    # What the tenant's pods run now, to look for afterwards.
    sandboxes: dict[str, list[PodProcess]] = {}
    for pod in namespace_pods(k8s, tenant.namespace):
        if pod.status.pod_ip and pod.spec.node_name == runner.node_name:
            netns = find_pod_netns(runner, pod.status.pod_ip)
            if netns is not None:
                sandboxes[netns] = pod_processes(netns)
    delete_quietly(custom, PLURAL, tenant.name)

    def gone() -> bool:
        try:
            custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, tenant.name)
            return False
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        listing = core.list_namespace(field_selector=f"metadata.name={tenant.namespace}")
        return not listing.items

    eventually(gone, f"{tenant.name} and its namespace to be deleted", GONE_TIMEOUT_SECONDS)
    left_netns = sorted(set(sandboxes) & set(runner.netns_names()))
    left_processes = [
        process for processes in sandboxes.values() for process in processes if process.alive()
    ]
    assert not left_netns, f"{tenant.name} deleted, its pods' namespaces stay: {left_netns}"
    assert not left_processes, f"{tenant.name} deleted, its pods' processes run: {left_processes}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        databases = connection.execute(
            "SELECT datname FROM pg_database WHERE datname = %s", (tenant.database,)
        ).fetchall()
        roles = connection.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = %s", (tenant.database,)
        ).fetchall()
    assert not databases, f"deletionPolicy Delete left the database of {tenant.name}"
    assert not roles, f"deletionPolicy Delete left the role of {tenant.name}"


@pytest.fixture(scope="module")
def backup_conformance_operator(
    k8s: client.ApiClient,
    operator_kubeconfig: Path,
    postgres_dsn: str,
    redis_url: str,
    blob_connection_string: str,
    real_node_runner: RealNodeProcess,
    archived_postgres: ArchivedPostgres,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ManagedProcess]:
    """The conformance operator with the session's blob store and ``backupExecution: job``,
    and the server ``archived`` whose WAL archive serves point-in-time restores.

    A module that backs up real tenants overrides ``conformance_operator`` with this one.
    Jobs, not the operator's process: a dedicated tenant's filestore is the real node's
    claim folder, which only a pod mounting the claim reads; the operator's in-process
    backup would read its own work directory instead.
    """
    if PLUGIN not in real_node_runner.plugins:
        pytest.fail(f"the session's real node runs without the Odoo images ({PLUGIN})")
    # The blob store too is reached by the backup Job's pod through the runner's relays.
    assert archived_postgres.server is not None
    for port in (
        _port(postgres_dsn, 5432),
        _port(redis_url, 6379),
        _blob_port(blob_connection_string),
        archived_postgres.server.port,
    ):
        real_node_runner.forward_host_port(port)
    kubectl.install_crds(k8s, REPO / "crds")
    workdir = tmp_path_factory.mktemp("conformance-backup-operator")
    config = register_servers(
        k8s,
        postgres_dsn,
        redis_url,
        workdir,
        blob_connection_string=blob_connection_string,
        backup_execution="job",
        upgrade_concurrency=1,
        dedicated_node_pool=placement(),
        shared_node_pool=placement(),
        versions=REAL_NODE_VERSIONS,
        archived=archived_postgres,
    )
    process = start_operator(
        operator_kubeconfig,
        config,
        workdir / "operator.log",
        drift_interval=DRIFT_INTERVAL_SECONDS,
        upgrade_interval=UPGRADE_INTERVAL_SECONDS,
        metrics_port=free_port(),
        # PostgreSQL refuses root, which the harness runs as: recoveries run as the server's.
        environment={**PROBES, "ODOO_OPERATOR_PITR_RUN_AS": archived_postgres.server.run_as or ""},
    )
    yield process
    process.stop()


def _blob_port(connection_string: str) -> int:
    """The TCP port of the blob endpoint of an Azure Storage connection string."""
    fields = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    return urlsplit(fields["BlobEndpoint"]).port or 443


@pytest.fixture(scope="session")
def tenant_pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPKI:
    """The CA that issues the tenants' certificates, as cert-manager would."""
    return LocalPKI(tmp_path_factory.mktemp("tenant-pki"))


@pytest.fixture(scope="module")
def ingress(
    k8s: client.ApiClient, traefik: TraefikProcess, tenant_pki: LocalPKI, tenant: Tenant
) -> Ingress:
    """The module's tenant served by the stack's Traefik: its certificate in Secret
    ``odoo-tls``, and ``/web/health`` answering through the route the operator wrote."""
    give_tenant_certificate(k8s, tenant, tenant_pki)
    served = Ingress(traefik, tenant_pki.ca.cert, tenant.hosts[0])

    def answers() -> bool:
        try:
            return served.get("/web/health").status == 200
        except OSError:
            return False

    eventually(answers, f"Traefik to serve {served.host}", INGRESS_TIMEOUT_SECONDS)
    return served
