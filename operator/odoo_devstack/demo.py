"""`make demo`: the operator on the local stack, end to end."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client

from odoo_operator.model.config import CONFIG_ENV, WEBHOOK_CONFIGURATION

from . import kubectl
from .bootstrap import bootstrap
from .controlplane import ControlPlane
from .operator_setup import register_servers
from .ports import free_port
from .processes import ComponentError, ManagedProcess
from .stack import LocalStack
from .webhook_certs import LOOPBACK_HOST, issue_webhook_certificates, webhook_environment

INSTANCES_PATH = "/apis/odoo.tenantops.io/v1alpha1/odooinstances"
BACKUPS_PATH = "/apis/odoo.tenantops.io/v1alpha1/odoobackups"
RESTORES_PATH = "/apis/odoo.tenantops.io/v1alpha1/odoorestores"
_PATHS = {"OdooInstance": INSTANCES_PATH, "OdooBackup": BACKUPS_PATH, "OdooRestore": RESTORES_PATH}
_WAIT_SECONDS = 90.0


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


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
) -> ManagedProcess:
    """Run ``odoo-operator run`` as a child process against ``kubeconfig``'s cluster.

    With ``webhook`` (the default) the operator also serves its admission webhook on a
    free loopback port, with a certificate issued next to ``log_path``; this returns
    once the cluster's webhook configuration points at it, so that whatever the caller
    creates next is checked. ``metrics_port`` 0 (the default) turns the metrics endpoint
    and the tenant probes off, so operators started side by side never compete for a port.
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
    }
    webhook_url: str | None = None
    if webhook:
        certificates = issue_webhook_certificates(log_path.parent / "webhook-pki")
        port = free_port()
        variables.update(webhook_environment(certificates, port))
        webhook_url = f"https://{LOOPBACK_HOST}:{port}/"
    operator = ManagedProcess(
        "operator",
        [sys.executable, "-m", "odoo_operator.cli", "run"],
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
    try:
        operator.wait_until(
            partial(_done, control_plane, kind, name), _WAIT_SECONDS, f"finishing {kind} {name}"
        )
    except ComponentError:
        status = control_plane.api("GET", f"{_PATHS[kind]}/{name}").get("status", {})
        for condition in status.get("conditions", []):
            _say(f"{name}: {condition['type']}={condition['status']} {condition.get('message')}")
        _say(f"{name}: {status.get('message', '')}")
        raise


def run_demo(repo: Path, wait: bool = True) -> None:
    """Bootstrap, start the stack, run the operator and apply the sample tenants."""
    bootstrap()
    with LocalStack() as stack:
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
        )
        operator = start_operator(
            control_plane.kubeconfig, config, control_plane.workdir / "operator" / "operator.log"
        )
        control_plane.processes.append(operator)
        _say(f"operator running (pid {operator.pid}, log {operator.log_path})")
        samples = kubectl.load_documents(repo / "manifests" / "samples")
        started = time.monotonic()
        # In dependency order: tenants, then their backups, then restores of those backups.
        for kind in ("OdooInstance", "OdooBackup", "OdooRestore"):
            batch = [sample for sample in samples if sample["kind"] == kind]
            kubectl.apply(api, batch)
            for sample in batch:
                _wait_for_sample(control_plane, operator, sample)
            _say(f"{len(batch)} {kind}(s) done {time.monotonic() - started:.1f}s after apply")
        for path in (INSTANCES_PATH, BACKUPS_PATH, RESTORES_PATH):
            print()
            print(kubectl.format_table(kubectl.get_table(api, path)))
        print()
        _say("the local stack is up; in another shell:")
        print(f"  export KUBECONFIG={control_plane.kubeconfig}")
        print("  kubectl get odoo")
        print("  kubectl describe odoo acme")
        print("  kubectl get odoobackups -l odoo.tenantops.io/instance=acme")
        print("  kubectl get all,networkpolicies,ingressroutes -n odoo-acme")
        print(f"  tail -f {operator.log_path}")
        if not wait:
            return
        _say("press Ctrl-C to stop everything")
        try:
            while operator.exit_code() is None:
                threading.Event().wait(1.0)
            raise ComponentError("operator", "exited unexpectedly", operator.log_tail())
        except KeyboardInterrupt:
            _say("stopping")
