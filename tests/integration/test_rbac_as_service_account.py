"""The chart's RBAC and confinement policy are enough, proven: the operator runs as the
chart's ServiceAccount.

Only the RBAC objects of `helm template` (ServiceAccount, ClusterRole, Role and their bindings)
and its confinement policy (ValidatingAdmissionPolicy and binding) go into the real control
plane; the operator then authenticates with a token of that ServiceAccount (TokenRequest API),
not as an administrator, serves its admission webhook, runs with Kopf peering (the chart's HA
mode) and its watch cache (`watchCache`), and takes a tenant through its whole lifecycle:
created and Ready, backed up, deleted with its data. The policy is in force before the operator
starts (a request it forbids is refused). Any request the API server refuses fails the test: a
403 or Forbidden in the operator's log, or (on the local control plane) a 403 answer to the
ServiceAccount in the API server's audit log, which records every write; the audit log matters
because the operator's dynamic client hands some refusals back as Status objects instead of
raising them. RBAC and the policy both refuse with 403.

tests/integration/test_operator_confinement.py proves what the policy refuses.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from e2e.tenants import GROUP, PLURAL, VERSION, make_instance
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from tests.integration.test_chart_webhook import restorable_configuration

from odoo_devstack import binaries, kubectl
from odoo_devstack.controlplane import ControlPlane
from odoo_devstack.demo import is_ready, start_operator
from odoo_devstack.operator_setup import OPERATOR_NAMESPACE, register_servers
from odoo_devstack.ports import free_port
from odoo_devstack.processes import ManagedProcess
from odoo_devstack.webhook_certs import (
    LOOPBACK_HOST,
    issue_webhook_certificates,
    webhook_environment,
)
from odoo_operator.model.config import WEBHOOK_CONFIGURATION, WEBHOOK_MANAGED_ENV
from odoo_operator.settings import PEERING_ENV

REPO = Path(__file__).parents[2]
CHART = REPO / "charts" / "odoo-operator"
RELEASE = "rbac-proof"
BACKUPS = "odoobackups"
PEERING = "odoo-operator-rbac-proof"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
# A request only the confinement policy refuses (RBAC allows this Secret by name anywhere):
# a dry run, so nothing is written while the policy is not in force yet.
POLICY_PROBE_SECRET = "odoo-config"
POLICY_PROBE_NAMESPACE = "default"
# The Secrets register_servers creates, named in the configuration as a platform team would.
VALUES = {
    "ha": {"enabled": True, "peeringName": PEERING},
    # The operator runs with its watch cache (start_operator's default): the chart's list and
    # watch grants for it must be complete, or a 403 fails the test.
    "watchCache": {"enabled": True},
    "config": {
        "postgresServers": {
            "main": {"secretRef": "postgres-main", "default": True},
            "dedicated": {"secretRef": "postgres-dedicated", "dedicated": True},
        },
        "redisServers": {
            "main": {"secretRef": "redis-main", "default": True},
            "dedicated": {"secretRef": "redis-dedicated", "dedicated": True},
        },
        "blobStores": {
            "main": {"secretRef": "blob-main", "container": "odoo-backups", "default": True}
        },
    },
}
REFUSED = re.compile(r"\b403\b|Forbidden|forbidden")


def render_chart(
    values: dict[str, Any], workdir: Path, release: str = RELEASE
) -> list[dict[str, Any]]:
    """`helm template` of the chart into the operator namespace, as parsed documents."""
    values_file = workdir / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    rendered = subprocess.run(
        [
            str(binaries.ensure(binaries.HELM)),
            "template",
            release,
            str(CHART),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--kube-version",
            binaries.KUBERNETES_VERSION,
            "--values",
            str(values_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def service_account_kubeconfig(
    admin_kubeconfig: Path, api: client.ApiClient, account: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as ``account`` with a TokenRequest token.

    Its context's namespace is the operator's, as in a pod: Kopf posts the Events of
    cluster-scoped objects there.
    """
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = (
        client.CoreV1Api(api)
        .create_namespaced_service_account_token(account, OPERATOR_NAMESPACE, request)
        .status.token
    )
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = dict(admin["clusters"][0]["cluster"])
    ca = cluster.get("certificate-authority")
    if ca and not Path(ca).is_absolute():  # relative to the admin kubeconfig's folder
        cluster["certificate-authority"] = str(admin_kubeconfig.parent / ca)
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "cluster", "cluster": cluster}],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": account,
                        "context": {
                            "cluster": "cluster",
                            "user": account,
                            "namespace": OPERATOR_NAMESPACE,
                        },
                    }
                ],
                "current-context": account,
            }
        )
    )
    path.chmod(0o600)
    return path


def delete_document(api: client.ApiClient, document: dict[str, Any]) -> None:
    """Delete the object ``document`` describes; gone already is fine."""
    found = dynamic.DynamicClient(api)
    try:
        resource = found.resources.get(api_version=document["apiVersion"], kind=document["kind"])
    except ResourceNotFoundError:
        return  # its kind is gone (a CRD deleted first): so is the object
    try:
        resource.delete(
            name=document["metadata"]["name"], namespace=document["metadata"].get("namespace")
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


def policy_refusal(call: Callable[[], object], policy: str) -> str:
    """The message with which ``policy`` refuses ``call`` (403); fails on anything else."""
    try:
        call()
    except ApiException as exc:
        refusal = exc
    else:
        pytest.fail(
            f"the request was accepted; ValidatingAdmissionPolicy {policy} should refuse it"
        )
    body = refusal.body or ""
    message = str(json.loads(body).get("message", body)) if body.startswith("{") else str(refusal)
    assert refusal.status == 403, f"expected a 403 from {policy}, got {refusal.status}: {message}"
    assert f"ValidatingAdmissionPolicy '{policy}'" in message, message
    return message


def apply_as(
    api: client.ApiClient, document: dict[str, Any], dry_run: bool = False
) -> dict[str, Any]:
    """Server-side apply ``document`` as the operator does (its field manager), maybe dry."""
    dyn = dynamic.DynamicClient(api)
    resource = dyn.resources.get(api_version=document["apiVersion"], kind=document["kind"])
    applied = dyn.server_side_apply(
        resource,
        body=document,
        name=document["metadata"]["name"],
        namespace=document["metadata"].get("namespace"),
        field_manager="odoo-operator",
        force_conflicts=True,
        dry_run="All" if dry_run else None,
    )
    result: dict[str, Any] = applied.to_dict()
    return result


def wait_until_confined(operator: client.ApiClient, policy: str, timeout: float = 60.0) -> None:
    """Wait until the API server enforces ``policy`` on the operator's ServiceAccount.

    A new policy and binding take effect once the API server's informers have seen and
    compiled them; until then a request the policy forbids still passes. The probe is a
    dry-run apply of a Secret RBAC allows in any namespace, in a namespace the policy keeps
    the operator out of.
    """
    probe = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": POLICY_PROBE_SECRET, "namespace": POLICY_PROBE_NAMESPACE},
        "type": "Opaque",
    }
    deadline = time.monotonic() + timeout
    last = "accepted"
    while time.monotonic() < deadline:
        try:
            apply_as(operator, probe, dry_run=True)
        except ApiException as exc:
            if exc.status == 403 and f"ValidatingAdmissionPolicy '{policy}'" in str(exc.body):
                return
            last = f"{exc.status}: {exc.body}"
            if exc.status == 403:  # RBAC, not the policy: waiting will not help
                break
        time.sleep(0.5)
    pytest.fail(
        f"ValidatingAdmissionPolicy {policy} was not enforced within {timeout:.0f}s: a dry-run "
        f"apply of Secret {POLICY_PROBE_NAMESPACE}/{POLICY_PROBE_SECRET} by the operator's "
        f"ServiceAccount was last answered {last}"
    )


@pytest.fixture
def operator_as_service_account(
    k8s: client.ApiClient,
    kubeconfig: Path,
    postgres_dsn: str,
    redis_url: str,
    blob_connection_string: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ManagedProcess]:
    """The operator with the chart's RBAC and confinement policy, and nothing more."""
    kubectl.install_crds(k8s, REPO / "crds")
    config = register_servers(k8s, postgres_dsn, redis_url, tmp_path, blob_connection_string)
    documents = render_chart(VALUES, tmp_path)
    rbac = [doc for doc in documents if doc["kind"] in RBAC_KINDS]
    assert {doc["kind"] for doc in rbac} == RBAC_KINDS
    policy = [doc for doc in documents if doc["kind"] in POLICY_KINDS]
    assert [doc["kind"] for doc in policy] == list(POLICY_KINDS)
    # Installed by whoever installs the chart (an administrator), like the CRDs above.
    peering = [doc for doc in documents if doc["kind"] == "ClusterKopfPeering"]
    peering_crd = [
        doc
        for doc in documents
        if doc["kind"] == "CustomResourceDefinition" and doc["spec"]["group"] == "kopf.dev"
    ]
    kubectl.apply(k8s, rbac + policy)
    kubectl.apply(k8s, peering_crd)
    kubectl.wait_established(k8s, [doc["metadata"]["name"] for doc in peering_crd])
    kubectl.apply(k8s, peering)
    account = next(doc for doc in rbac if doc["kind"] == "ServiceAccount")["metadata"]["name"]
    identity = service_account_kubeconfig(kubeconfig, k8s, account, tmp_path / "sa.kubeconfig")
    with kubectl.api_client(identity) as operator_api:
        wait_until_confined(operator_api, policy[0]["metadata"]["name"])

    # The webhook is served on loopback as in the e2e suite, with the chart's
    # configuration installed by the administrator (the operator may not write it), pointed
    # at loopback: in a cluster the chart's Service routes the API server to the pod.
    # tests/integration/test_chart_webhook.py proves the Service route itself.
    certificates = issue_webhook_certificates(tmp_path / "webhook-pki")
    port = free_port()
    for name, value in webhook_environment(certificates, port).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(WEBHOOK_MANAGED_ENV, "false")
    monkeypatch.setenv(PEERING_ENV, PEERING)
    configuration = next(d for d in documents if d["kind"] == "ValidatingWebhookConfiguration")
    for webhook in configuration["webhooks"]:
        path = webhook["clientConfig"]["service"]["path"]
        webhook["clientConfig"] = {
            "url": f"https://{LOOPBACK_HOST}:{port}{path}",
            "caBundle": base64.b64encode(certificates.ca.read_bytes()).decode(),
        }
    admission = client.AdmissionregistrationV1Api(k8s)
    saved = _take_aside(k8s, admission)
    process = start_operator(identity, config, tmp_path / "operator.log", webhook=False)
    try:
        kubectl.apply(k8s, [configuration])
        process.wait_until(
            lambda: _port_open(LOOPBACK_HOST, port), 60, "serving its admission webhook"
        )
        yield process
    finally:
        process.stop()
        delete_document(k8s, configuration)
        if saved is not None:
            admission.create_validating_webhook_configuration(saved)
        for document in reversed(rbac + policy + peering_crd + peering):
            delete_document(k8s, document)


def _take_aside(
    api: client.ApiClient, admission: client.AdmissionregistrationV1Api
) -> dict[str, Any] | None:
    """Remove a configuration of the same name that another test's operator left (Kopf
    manages it there); return it as a body to create again afterwards."""
    try:
        found = admission.read_validating_webhook_configuration(WEBHOOK_CONFIGURATION)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    admission.delete_validating_webhook_configuration(WEBHOOK_CONFIGURATION)
    return restorable_configuration(api, found)


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


class Refusals:
    """Requests of the ServiceAccount that the API server refused, wherever they show."""

    def __init__(self, process: ManagedProcess, control_plane: ControlPlane | None) -> None:
        self.process = process
        self.audit_log = control_plane.audit_log if control_plane is not None else None
        self.user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}-odoo-operator"

    def found(self) -> list[str]:
        """Refused requests, from the operator's log and the audit log (writes only)."""
        log = self.process.log_path.read_text(errors="replace")
        refused = [line for line in log.splitlines() if REFUSED.search(line)]
        if self.audit_log is not None and self.audit_log.exists():
            for line in self.audit_log.read_text(errors="replace").splitlines():
                event = json.loads(line)
                if (event.get("user") or {}).get("username") != self.user:
                    continue
                # The operator never dry-runs: those are wait_until_confined's probes, which
                # the policy refuses on purpose.
                if "dryRun=" in (event.get("requestURI") or ""):
                    continue
                if (event.get("responseStatus") or {}).get("code") == 403:
                    ref = event.get("objectRef") or {}
                    refused.append(
                        f"audit: {event.get('verb')} {ref.get('apiGroup', '')}/"
                        f"{ref.get('resource')} {ref.get('namespace', '')}/{ref.get('name', '')}"
                    )
        return refused

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Poll ``check``; fail at once, listing them, when a request is refused."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            refused = self.found()
            if refused:
                pytest.fail(
                    f"the API server refused the operator while waiting for {what}:\n"
                    + "\n".join(refused[:20])
                )
            if check():
                return
            assert self.process.exit_code() is None, self.process.log_tail()
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.process.log_tail()}")


def _database_exists(postgres_dsn: str, name: str) -> bool:
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        row = db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def _exists(custom: client.CustomObjectsApi, plural: str, name: str) -> bool:
    try:
        custom.get_cluster_custom_object(GROUP, VERSION, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_a_tenant_lifecycle_needs_no_permission_beyond_the_chart(
    k8s: client.ApiClient,
    control_plane: ControlPlane | None,
    operator_as_service_account: ManagedProcess,
    postgres_dsn: str,
) -> None:
    process = operator_as_service_account
    refusals = Refusals(process, control_plane)
    custom = client.CustomObjectsApi(k8s)
    name = f"rbac-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()

    # Created through the webhook (which lists instances as the ServiceAccount), then Ready.
    body = make_instance(
        name, deletionPolicy="Delete", backup={"schedule": "0 2 * * *", "verify": "Never"}
    )
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    refusals.wait(
        lambda: is_ready(custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)),
        f"OdooInstance {name} Ready",
    )
    instance = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    database = instance["status"]["database"]
    assert _database_exists(postgres_dsn, database)
    # Peering is in force: the operator keeps its heartbeat in the chart's peering object.
    peering = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", PEERING)
    assert peering.get("status"), "the operator never announced itself to its peers"

    backup = f"{name}-manual"
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        BACKUPS,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "OdooBackup",
            "metadata": {"name": backup},
            "spec": {"instance": name, "reason": "manual"},
        },
    )

    def backup_finished() -> bool:
        found = custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, backup)
        phase = (found.get("status") or {}).get("phase")
        assert phase != "Failed", found["status"]
        return bool(phase == "Succeeded")

    refusals.wait(backup_finished, f"OdooBackup {backup} Succeeded")

    custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    refusals.wait(lambda: not _exists(custom, PLURAL, name), f"OdooInstance {name} deleted")
    assert not _database_exists(postgres_dsn, database), "deletionPolicy Delete drops it"
    custom.delete_cluster_custom_object(GROUP, VERSION, BACKUPS, backup)
    refusals.wait(lambda: not _exists(custom, BACKUPS, backup), f"OdooBackup {backup} deleted")
    elapsed = time.monotonic() - started

    process.stop()  # a clean stop: its clean-up requests (webhook, peering) are checked too
    # The tenant Secrets were watched by name: the chart's resourceNames grant allows that.
    cached = [line for line in process.log_path.read_text().splitlines() if "watch cache:" in line]
    assert cached, "the operator never said what its watch cache keeps"
    assert "Secret odoo-credentials" in cached[0], cached
    refused = refusals.found()
    assert not refused, "the API server refused the operator:\n" + "\n".join(refused[:20])
    assert elapsed < 60, f"the lifecycle took {elapsed:.0f}s"
