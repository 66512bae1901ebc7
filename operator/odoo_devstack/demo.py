"""`make demo`: the operator on the local stack, end to end.

The sample tenant ``acme`` runs real Odoo: the demo starts the real node (the pod runner,
which plays ``odoo:<version>`` with the runtimes ``odoo-devstack bootstrap`` prepared),
registers it as the dedicated node pool, and applies ``acme`` as a dedicated tenant. Its
backup and the staging clone are handled by the same operator; the staging tenant stays on
KWOK's simulated pods, so the demo starts one real Odoo, not two.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client

from odoo_operator.builders.workloads import FILESTORE_CLAIM
from odoo_operator.model.config import (
    CONFIG_ENV,
    WATCH_CACHE_ENV,
    WEBHOOK_APART_ENV,
    WEBHOOK_CONFIGURATION,
)
from odoo_operator.model.names import GROUP, VERSION
from odoo_operator.model.spec import InstanceSpec

from . import binaries, cluster_dns, kubectl
from .bootstrap import bootstrap
from .controlplane import ControlPlane
from .odoo_images import PLUGIN
from .operator_setup import REAL_NODE_VERSIONS, register_servers
from .pki import LocalPKI
from .podrunner.node import placement
from .podrunner.process import RealNodeProcess
from .ports import free_port
from .processes import ComponentError, ManagedProcess
from .stack import LocalStack
from .traefik import LOOPBACK as TRAEFIK_LOOPBACK
from .traefik import TraefikProcess, issue_tenant_certificate, start_traefik
from .webhook_certs import LOOPBACK_HOST, issue_webhook_certificates, webhook_environment

INSTANCES_PATH = "/apis/odoo.tenantops.io/v1alpha1/odooinstances"
BACKUPS_PATH = "/apis/odoo.tenantops.io/v1alpha1/odoobackups"
RESTORES_PATH = "/apis/odoo.tenantops.io/v1alpha1/odoorestores"
_PATHS = {"OdooInstance": INSTANCES_PATH, "OdooBackup": BACKUPS_PATH, "OdooRestore": RESTORES_PATH}
_WAIT_SECONDS = 90.0
# A real Odoo creates its database and starts its web and cron pods in about a minute on a
# quiet machine; the 2-core development machine, busy with other work, needs several times
# that.
_REAL_WAIT_SECONDS = 600.0
# The sample tenant that runs real Odoo on the real node.
REAL_TENANT = "acme"
# What the demo prints for a person (and e2e/test_demo_serves_real_odoo.py reads).
LOGIN_PAGE_PREFIX = "  login page: "
PASSWORD_COMMAND_PREFIX = "  admin password: "  # noqa: S105 - a label, not a password
CA_PREFIX = "  tenant CA: "
RESOLVE_PREFIX = "  resolve: "
EXPORT_PREFIX = "  export "
WAITING_LINE = "press Ctrl-C to stop everything"


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def run_suggested(command: str, environment: Mapping[str, str], show: bool = True) -> str:
    """Run ``command`` through bash, as a person pastes it; with ``show``, the command and
    its output as a transcript, else only the output. A suggestion that fails fails the
    demo, saying what the command answered."""
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        env=dict(environment),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise ComponentError(
            "demo",
            f"the suggested command `{command}` failed (exit {result.returncode})",
            (result.stderr or result.stdout)[-2000:],
        )
    return f"$ {command}\n{result.stdout.rstrip()}" if show else result.stdout


def start_operator(
    kubeconfig: Path,
    config: Path,
    log_path: Path,
    drift_interval: float = 120,
    *,
    upgrade_interval: float = 10,
    webhook: bool = True,
    webhook_timeout: float = 60.0,
    metrics_port: int = 0,
    environment: Mapping[str, str] | None = None,
    watch_cache: bool = True,
) -> ManagedProcess:
    """Run ``odoo-operator run`` as a child process against ``kubeconfig``'s cluster, its
    tenants' Service names resolved by :mod:`odoo_devstack.cluster_dns`.

    With ``webhook`` (the default) the operator also serves its admission webhook on a
    free loopback port, with a certificate issued next to ``log_path``; this returns
    once the cluster's webhook configuration points at it, so that whatever the caller
    creates next is checked. ``metrics_port`` 0 (the default) turns the metrics endpoint
    and the tenant probes off, so operators started side by side never compete for a port.
    ``watch_cache`` (the default) keeps the managed objects from watches
    (``ODOO_OPERATOR_WATCH_CACHE``), as a chart with ``watchCache.enabled`` does.
    ``environment`` adds (or overrides) variables of the operator's environment, e.g. a webhook
    served with a chart's certificates and ``ODOO_OPERATOR_WEBHOOK_MANAGED=false`` (with
    ``webhook=False``: nothing then waits for a configuration the operator never writes).
    """
    variables = {
        "KUBECONFIG": str(kubeconfig),
        CONFIG_ENV: str(config),
        "ODOO_OPERATOR_DRIFT_INTERVAL": str(drift_interval),
        "ODOO_OPERATOR_UPGRADE_INTERVAL": str(upgrade_interval),
        "ODOO_OPERATOR_METRICS_PORT": str(metrics_port),
        WATCH_CACHE_ENV: "true" if watch_cache else "false",
    }
    admin_kubeconfig = kubeconfig.parent / "admin.kubeconfig"
    if admin_kubeconfig.is_file():
        variables[cluster_dns.KUBECONFIG_ENV] = str(admin_kubeconfig)
    webhook_url: str | None = None
    if webhook:
        certificates = issue_webhook_certificates(log_path.parent / "webhook-pki")
        port = free_port()
        variables.update(webhook_environment(certificates, port))
        webhook_url = f"https://{LOOPBACK_HOST}:{port}/"
    operator = ManagedProcess(
        "operator",
        # The operator's own command, with the local stack's stand-in for cluster DNS.
        [sys.executable, "-m", "odoo_devstack.cluster_dns", "run"],
        log_path,
        env={**os.environ, **variables, **(environment or {})},
    ).start()
    if webhook_url is not None:
        try:
            _wait_for_webhook(operator, kubeconfig, webhook_url, webhook_timeout)
        except BaseException:
            operator.stop()
            raise
    return operator


# What the operator started beside ``start_webhook`` needs in its environment (with
# ``webhook=False``): it serves no admission, and says where admission is served.
ADMISSION_APART = {WEBHOOK_APART_ENV: "true"}


def start_webhook(
    kubeconfig: Path,
    config: Path,
    log_path: Path,
    *,
    metrics_port: int = 0,
    timeout: float = 60.0,
    environment: Mapping[str, str] | None = None,
    managed: bool = True,
) -> ManagedProcess:
    """Run ``odoo-operator webhook`` (admission alone, as the chart's webhook Deployment
    does) as a child process on a free loopback port, with a certificate issued next to
    ``log_path``; return once the cluster's webhook configuration points at it.

    ``environment`` adds or overrides variables (e.g. a chart's certificates); with
    ``managed=False`` (``ODOO_OPERATOR_WEBHOOK_MANAGED=false`` in it) nothing waits for a
    configuration the process never writes.

    Start the operator beside it with ``webhook=False`` and ``environment=ADMISSION_APART``.
    """
    certificates = issue_webhook_certificates(log_path.parent / "webhook-process-pki")
    port = free_port()
    variables = {
        "KUBECONFIG": str(kubeconfig),
        CONFIG_ENV: str(config),
        "ODOO_OPERATOR_METRICS_PORT": str(metrics_port),
        **webhook_environment(certificates, port),
    }
    webhook = ManagedProcess(
        "webhook",
        [sys.executable, "-m", "odoo_operator.cli", "webhook"],
        log_path,
        env={**os.environ, **variables, **(environment or {})},
    ).start()
    if not managed:
        return webhook
    try:
        _wait_for_webhook(webhook, kubeconfig, f"https://{LOOPBACK_HOST}:{port}/", timeout)
    except BaseException:
        webhook.stop()
        raise
    return webhook


def _wait_for_webhook(operator: ManagedProcess, kubeconfig: Path, url: str, timeout: float) -> None:
    # Kopf points the configuration at the server only once the server listens; until
    # then the configuration is absent, empty or still names a previous operator's port.
    api = kubectl.api_client(kubeconfig)
    admission = client.AdmissionregistrationV1Api(api)

    def points_at_this_operator() -> bool:
        configuration = admission.read_validating_webhook_configuration(WEBHOOK_CONFIGURATION)
        webhooks = configuration.webhooks or []
        return bool(webhooks) and all(
            (hook.client_config.url or "").startswith(url) for hook in webhooks
        )

    try:
        operator.wait_until(points_at_this_operator, timeout, "serving its admission webhook")
    finally:
        api.close()  # type: ignore[no-untyped-call]


def is_ready(instance: dict[str, Any]) -> bool:
    """Whether an OdooInstance reports Ready=True for its current generation."""
    status = instance.get("status") or {}
    return status.get("observedGeneration") == instance["metadata"].get("generation") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )


def _done(control_plane: ControlPlane, kind: str, name: str) -> bool:
    found = control_plane.api("GET", f"{_PATHS[kind]}/{name}")
    if kind == "OdooInstance":
        return is_ready(found)
    phase = (found.get("status") or {}).get("phase")
    if phase == "Failed":
        raise ComponentError("operator", f"{kind} {name} failed: {found['status'].get('message')}")
    if phase == "Succeeded" and kind == "OdooRestore":
        # Done for the reader once the restored tenant serves again (maintenance lifted).
        target = found["spec"]["target"]["instance"]
        instance = control_plane.api("GET", f"{_PATHS['OdooInstance']}/{target}")
        return is_ready(instance) and (instance.get("status") or {}).get("phase") == "Ready"
    return phase == "Succeeded"


def _wait_for_sample(
    control_plane: ControlPlane, operator: ManagedProcess, sample: dict[str, Any]
) -> None:
    kind, name = sample["kind"], sample["metadata"]["name"]
    real = kind == "OdooInstance" and name == REAL_TENANT
    try:
        operator.wait_until(
            partial(_done, control_plane, kind, name),
            _REAL_WAIT_SECONDS if real else _WAIT_SECONDS,
            f"finishing {kind} {name}",
        )
    except ComponentError:
        status = control_plane.api("GET", f"{_PATHS[kind]}/{name}").get("status", {})
        for condition in status.get("conditions", []):
            _say(f"{name}: {condition['type']}={condition['status']} {condition.get('message')}")
        _say(f"{name}: {status.get('message', '')}")
        raise


def on_the_real_node(sample: dict[str, Any]) -> dict[str, Any]:
    """The sample as the demo applies it: ``acme`` made a dedicated tenant, the others as
    they are.

    The sample file stays what a user applies to a production cluster (shared tenancy on
    the ``main`` servers); the demo's dedicated node pool is the real node, so only a
    dedicated tenant (on the ``dedicated`` servers, as the admission rules require) runs
    real Odoo. Its module list is left out: installing accounting and sales would make the
    first start several minutes longer on a small machine, and ``base`` is enough to sign in.
    """
    if sample["kind"] != "OdooInstance" or sample["metadata"]["name"] != REAL_TENANT:
        return sample
    spec = {**sample["spec"], "tenancy": "dedicated"}
    spec["database"] = {**spec.get("database", {}), "serverRef": "dedicated"}
    spec["redis"] = {**spec.get("redis", {}), "serverRef": "dedicated"}
    spec.pop("modules", None)
    return {**sample, "spec": spec}


def _login_page(
    api: client.ApiClient, node_name: str, traefik: TraefikProcess, ca_file: Path
) -> str:
    """The real tenant's login page through the stack's Traefik, checked to answer from this
    machine with the tenant's certificate."""
    namespace = f"odoo-{REAL_TENANT}"
    instance: Any = client.CustomObjectsApi(api).get_cluster_custom_object(
        GROUP, VERSION, "odooinstances", REAL_TENANT
    )
    host = instance["spec"]["hosts"][0]
    listing: Any = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=web"
    )
    if not any(pod.spec.node_name == node_name for pod in listing.items):
        raise ComponentError("demo", f"no web pod of {REAL_TENANT} runs on the real node")
    url = f"https://{host}:{traefik.https_port}/web/login"
    # Ready already means the pod's probe passed; this proves the printed address is one a
    # person reaches from this machine, through the ingress, not only the one the kubelet
    # probes. Traefik picks up the route and the certificate within seconds.
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + 60
    while True:
        try:
            with (
                socket.create_connection((TRAEFIK_LOOPBACK, traefik.https_port), 30) as raw,
                context.wrap_socket(raw, server_hostname=host) as tls,
            ):
                connection = http.client.HTTPConnection(host)
                connection.sock = tls
                connection.request("GET", "/web/login", headers={"Host": host})
                status = connection.getresponse().status
        except (OSError, ssl.SSLError) as error:
            status, reason = 0, str(error)
        else:
            reason = f"answered {status}"
        if status == 200:
            return url
        if time.monotonic() > deadline:
            raise ComponentError("demo", f"{url} through Traefik: {reason}")
        time.sleep(1)


def _share_real_filestore(
    control_plane: ControlPlane, real_node: RealNodeProcess, filestores: Path
) -> None:
    """Let the operator's in-process backups read the real tenant's filestore.

    The demo's backups run in the operator, which reads a tenant's filestore from
    ``<filestores>/<instance>``; the real tenant's pods write theirs into the folder the real
    node keeps for the filestore claim (``claims/<namespace>/<claim>-<uid>``), under
    ``filestore/<database>`` as Odoo does. Without the link the backup would hold none of the
    attachments Odoo made on its first start, and its verification would fail.
    """
    instance = control_plane.api("GET", f"{INSTANCES_PATH}/{REAL_TENANT}")
    namespace = f"odoo-{REAL_TENANT}"
    claim = control_plane.api(
        "GET", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{FILESTORE_CLAIM}"
    )
    folder = (
        real_node.state_dir
        / "claims"
        / namespace
        / f"{FILESTORE_CLAIM}-{claim['metadata']['uid']}"
        / "filestore"
        / InstanceSpec.from_resource(instance).database
    )
    if not folder.is_dir():
        raise ComponentError("demo", f"the filestore of {REAL_TENANT} is not at {folder}")
    link = filestores / REAL_TENANT
    if link.is_dir() and not link.is_symlink():
        link.rmdir()  # an empty folder made before the tenant had files; fails if it is not
    link.symlink_to(folder, target_is_directory=True)


def run_demo(repo: Path, wait: bool = True) -> None:
    """Bootstrap, start the stack and the real node, run the operator and apply the samples."""
    bootstrap()
    with LocalStack() as stack:
        control_plane = stack.control_plane
        # The pods reach PostgreSQL and Redis at the loopback addresses the operator is given,
        # relayed by the runner into each pod's network namespace.
        real_node = RealNodeProcess(
            control_plane.kubeconfig,
            state_dir=control_plane.workdir / "real-node",
            plugins=[PLUGIN],
            host_ports=[stack.postgres.port, stack.redis.port],
        )
        with real_node:
            _say(f"real node {real_node.node_name} running (log {real_node.log_path})")
            _run_samples(repo, stack, real_node, wait)


def _run_samples(repo: Path, stack: LocalStack, real_node: RealNodeProcess, wait: bool) -> None:
    """Run the operator, apply the samples and say how to reach them; with ``wait``, until
    Ctrl-C."""
    control_plane = stack.control_plane
    api = kubectl.api_client(control_plane.kubeconfig)
    crds = kubectl.install_crds(api, repo / "crds")
    _say(f"installed CRDs: {', '.join(crds)}")
    config = register_servers(
        api,
        stack.postgres.dsn,
        stack.redis.url,
        control_plane.workdir / "operator",
        stack.azurite.connection_string,
        dedicated_node_pool=placement(),
        versions=REAL_NODE_VERSIONS,
    )
    operator = start_operator(
        control_plane.kubeconfig, config, control_plane.workdir / "operator" / "operator.log"
    )
    control_plane.processes.append(operator)
    _say(f"operator running (pid {operator.pid}, log {operator.log_path})")
    traefik = start_traefik(
        api, control_plane.server, control_plane.ca.cert, control_plane.workdir / "traefik"
    )
    control_plane.processes.append(traefik.process)
    _say(
        f"traefik running (https on {TRAEFIK_LOOPBACK}:{traefik.https_port}, "
        f"access log {traefik.access_log})"
    )
    samples = [
        on_the_real_node(sample)
        for sample in kubectl.load_documents(repo / "manifests" / "samples")
    ]
    # The tenants' certificates, as cert-manager would issue them on a cluster.
    pki = LocalPKI(control_plane.workdir / "tenant-pki")
    started = time.monotonic()
    # In dependency order: tenants, then their backups, then restores of those backups.
    for kind in ("OdooInstance", "OdooBackup", "OdooRestore"):
        batch = [sample for sample in samples if sample["kind"] == kind]
        kubectl.apply(api, batch)
        for sample in batch:
            _wait_for_sample(control_plane, operator, sample)
        _say(f"{len(batch)} {kind}(s) done {time.monotonic() - started:.1f}s after apply")
        if kind == "OdooInstance":
            _share_real_filestore(control_plane, real_node, config.parent / "filestores")
            for sample in batch:
                issue_tenant_certificate(api, sample, pki)
    for path in (INSTANCES_PATH, BACKUPS_PATH, RESTORES_PATH):
        print()
        print(kubectl.format_table(kubectl.get_table(api, path)))
    print()
    kubectl_dir = binaries.ensure(binaries.KUBECTL).parent
    shown = [
        "kubectl get odoo",
        f"kubectl describe odoo {REAL_TENANT}",
        f"kubectl get odoobackups -l odoo.tenantops.io/instance={REAL_TENANT}",
        f"kubectl get all,networkpolicies,ingressroutes -n odoo-{REAL_TENANT}",
        f"tail -n 5 {operator.log_path}",
    ]
    _say("the local stack is up; in another shell:")
    print(f'{EXPORT_PREFIX}KUBECONFIG={control_plane.kubeconfig} PATH="{kubectl_dir}:$PATH"')
    for command in shown:
        print(f"  {command}")
    print()
    _say(
        f"{REAL_TENANT} runs real Odoo on the real node {real_node.node_name} (only the base "
        "module); acme-staging runs on KWOK's simulated pods. Sign in as admin:"
    )
    page = _login_page(api, real_node.node_name, traefik, pki.ca.cert)
    print(f"{LOGIN_PAGE_PREFIX}{page}")
    host = urlsplit(page).hostname
    curl = (
        f"curl --resolve {host}:{traefik.https_port}:{TRAEFIK_LOOPBACK} "
        f"--cacert {pki.ca.cert} {page}"
    )
    password = (
        f"kubectl get secret -n odoo-{REAL_TENANT} odoo-credentials "
        "-o jsonpath='{.data.odoo-admin-password}' | base64 -d"
    )
    print(f"{CA_PREFIX}{pki.ca.cert}")
    print(
        f"{RESOLVE_PREFIX}{host} is this machine: chromium "
        f"--host-resolver-rules='MAP {host} {TRAEFIK_LOOPBACK}', or {curl}"
    )
    print(f"{PASSWORD_COMMAND_PREFIX}{password}")
    print()
    _say("running each command suggested above, as a shell would:")
    environment = {
        **os.environ,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "PATH": f"{kubectl_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for command in shown:
        print(run_suggested(command, environment))
    answer = run_suggested(curl, environment, show=False)
    if 'name="login"' not in answer:
        raise ComponentError("demo", f"`{curl}` did not answer with Odoo's login form")
    print(f"$ {curl}\n(Odoo's login page, {len(answer)} characters)")
    secret = run_suggested(password, environment, show=False)
    # The password itself is not printed: the demo's output may be shared or logged.
    print(f"$ {password}\n(a password of {len(secret)} characters, not shown here)")
    if not wait:
        return
    # Ctrl-C must reach the loop below even when the demo was started in the background by
    # a shell or a script, which starts it with SIGINT ignored: restore Python's handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _say(WAITING_LINE)
    try:
        while operator.exit_code() is None:
            threading.Event().wait(1.0)
        raise ComponentError("operator", "exited unexpectedly", operator.log_tail())
    except KeyboardInterrupt:
        _say("stopping")
