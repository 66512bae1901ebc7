"""The chart's own ValidatingWebhookConfiguration, end to end against the real kube-apiserver.

`helm template` with default values gives the webhook's Secret (a chart-generated CA and a
serving certificate for ``odoo-operator-webhook.odoo-operator.svc``), its Service and a fail-
closed ValidatingWebhookConfiguration whose clientConfig is a ``service`` reference with the CA
as caBundle. The configuration goes into the cluster unchanged; the Service goes in without a
selector, with an Endpoints object naming this machine's IPv4 address, where ``odoo-operator
webhook`` (the chart's webhook Deployment) serves it with the chart's certificate files and
``ODOO_OPERATOR_WEBHOOK_MANAGED=false``, the operator beside it serving no admission
(``ODOO_OPERATOR_WEBHOOK_APART``, as the chart sets it). The local control plane runs with
``--enable-aggregator-routing``, so the apiserver calls the endpoint rather than the Service's
ClusterIP (there is no kube-proxy); everything else is what a cluster does: service DNS name in
the TLS check, the chart's CA bundle, the chart's path and failure policy.

Proven: the webhook's refusals reach the client through that configuration and valid objects
pass; nothing ever writes the configuration (its resourceVersion stays put); with the webhook
gone, creates and updates are refused (fail closed) while deletes are not gated. A
configuration of the same name that other tests let Kopf manage is put aside and restored
afterwards, and the chart's one is deleted whatever the outcome, before anything else is
cleaned up, so later tests are not refused.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from e2e.tenants import GROUP, PLURAL, VERSION, delete_quietly, eventually, make_instance
from kubernetes import client
from kubernetes.client.rest import ApiException
from tests.unit.test_chart import documents, one, render

from odoo_devstack import kubectl
from odoo_devstack.controlplane import ControlPlane
from odoo_devstack.demo import ADMISSION_APART, start_operator, start_webhook
from odoo_devstack.operator_setup import register_servers
from odoo_devstack.processes import ManagedProcess
from odoo_operator.model.config import (
    WEBHOOK_ADDR_ENV,
    WEBHOOK_CA_ENV,
    WEBHOOK_CERT_ENV,
    WEBHOOK_CONFIGURATION,
    WEBHOOK_HOST_ENV,
    WEBHOOK_KEY_ENV,
    WEBHOOK_MANAGED_ENV,
    WEBHOOK_PORT_ENV,
)
from odoo_operator.model.names import tenant_namespace

REPO = Path(__file__).parents[2]
FINALIZER = "odoo.tenantops.io/finalizer"
FOREIGN_HOST = "shop.example.org"
FOREIGN_HOST_REFUSAL = f"spec.hosts[0] {FOREIGN_HOST} is outside the allowed domains (example.com)"


def _host_ipv4() -> str:
    """This machine's non-loopback IPv4 address (Endpoints refuse 127.0.0.0/8)."""
    candidates: list[str] = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))  # UDP: picks the outgoing address, sends nothing
        candidates.append(probe.getsockname()[0])
    with contextlib.suppress(OSError):
        candidates.extend(socket.gethostbyname_ex(socket.gethostname())[2])
    for candidate in candidates:
        address = IPv4Address(candidate)
        if not (address.is_loopback or address.is_link_local or address.is_unspecified):
            return candidate
    pytest.fail(f"no non-loopback IPv4 address for the webhook endpoint (found {candidates})")


def _free_port_on(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def _refusal(call: Callable[[], Any]) -> tuple[int, str]:
    """The HTTP status and message with which the apiserver refuses ``call``."""
    with pytest.raises(ApiException) as refused:
        call()
    return refused.value.status, str(json.loads(refused.value.body)["message"])


@dataclass
class ChartWebhook:
    """The chart's webhook objects in the cluster, the webhook process serving them and the
    operator beside it."""

    configuration: dict[str, Any]  # as rendered
    resource_version: str  # as created
    address: str
    port: int
    custom: client.CustomObjectsApi
    admission: client.AdmissionregistrationV1Api
    operator: ManagedProcess
    server: ManagedProcess  # odoo-operator webhook
    tenants: list[str] = field(default_factory=list)  # to clean up

    def stop(self) -> None:
        """Stop the webhook process and the operator, as a cluster losing both would."""
        self.server.stop()
        self.operator.stop()

    @property
    def webhook_name(self) -> str:
        return str(self.configuration["webhooks"][0]["name"])

    def stored_configuration(self) -> client.V1ValidatingWebhookConfiguration:
        return self.admission.read_validating_webhook_configuration(WEBHOOK_CONFIGURATION)

    def dry_run_create(self, body: dict[str, Any]) -> Any:
        return self.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body, dry_run="All")


def restorable_configuration(
    api: client.ApiClient, saved: client.V1ValidatingWebhookConfiguration
) -> dict[str, Any]:
    """A saved configuration as a body to create again (server-set metadata dropped)."""
    body: dict[str, Any] = api.sanitize_for_serialization(saved)
    metadata = body["metadata"]
    body["metadata"] = {
        key: metadata[key] for key in ("name", "labels", "annotations") if key in metadata
    }
    return body


def _forget_tenant(
    k8s: client.ApiClient,
    custom: client.CustomObjectsApi,
    postgres_dsn: str,
    redis_url: str,
    name: str,
) -> None:
    """Remove a tenant the stopped operator cannot finish: finalizer, namespace, kept data."""
    with contextlib.suppress(ApiException):
        custom.patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, name, {"metadata": {"finalizers": None}}
        )
    delete_quietly(custom, PLURAL, name)
    try:
        client.CoreV1Api(k8s).delete_namespace(tenant_namespace(name))
    except ApiException as exc:
        if exc.status != 404:
            raise
    database = f"odoo_{name.replace('-', '_')}"
    with psycopg.connect(postgres_dsn, autocommit=True) as superuser:
        superuser.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        superuser.execute(f'DROP ROLE IF EXISTS "{database}"')
    admin_redis = redis.Redis.from_url(redis_url)
    admin_redis.acl_deluser(f"odoo-{name}")
    admin_redis.close()


@pytest.fixture(scope="module")
def chart_objects() -> dict[str, dict[str, Any]]:
    """The webhook's Secret, Service and configuration from `helm template` with defaults."""
    rendered = documents(render().stdout)
    return {
        "secret": one(rendered, "Secret", "-webhook-tls"),
        "service": one(rendered, "Service", "-webhook"),
        "configuration": one(rendered, "ValidatingWebhookConfiguration"),
    }


@pytest.fixture
def chart_webhook(
    control_plane: ControlPlane | None,
    k8s: client.ApiClient,
    operator_kubeconfig: Path,
    postgres_dsn: str,
    redis_url: str,
    blob_connection_string: str,
    chart_objects: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> Iterator[ChartWebhook]:
    """The chart's webhook configuration in force, served by an operator on this machine."""
    if control_plane is None:
        pytest.skip("needs the local control plane: its apiserver must reach this machine")
    secret, service, configuration = (
        chart_objects["secret"],
        chart_objects["service"],
        chart_objects["configuration"],
    )
    reference = configuration["webhooks"][0]["clientConfig"]["service"]
    assert (reference["name"], reference["namespace"]) == (
        service["metadata"]["name"],
        service["metadata"]["namespace"],
    )
    assert configuration["metadata"]["name"] == WEBHOOK_CONFIGURATION

    kubectl.install_crds(k8s, REPO / "crds")
    config = register_servers(k8s, postgres_dsn, redis_url, tmp_path, blob_connection_string)
    custom = client.CustomObjectsApi(k8s)
    admission = client.AdmissionregistrationV1Api(k8s)
    core = client.CoreV1Api(k8s)
    address = _host_ipv4()
    port = _free_port_on(address)
    namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]

    saved: client.V1ValidatingWebhookConfiguration | None = None
    try:
        saved = admission.read_validating_webhook_configuration(WEBHOOK_CONFIGURATION)
    except ApiException as exc:
        if exc.status != 404:
            raise
    tenants: list[str] = []
    operator: ManagedProcess | None = None
    server: ManagedProcess | None = None
    try:
        if saved is not None:
            admission.delete_validating_webhook_configuration(WEBHOOK_CONFIGURATION)
        # The chart's Service without its selector (no pod to select), and its endpoint by hand.
        kubectl.apply(
            k8s,
            [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"type": "ClusterIP", "ports": service["spec"]["ports"]},
                },
                {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": namespace},
                    "subsets": [
                        {
                            "addresses": [{"ip": address}],
                            "ports": [
                                {"name": p["name"], "port": port, "protocol": p["protocol"]}
                                for p in service["spec"]["ports"]
                            ],
                        }
                    ],
                },
            ],
        )
        created = admission.create_validating_webhook_configuration(configuration)

        pki = tmp_path / "webhook-tls"
        pki.mkdir()
        files = {}
        for key in ("tls.crt", "tls.key", "ca.crt"):
            path = pki / key
            path.write_bytes(base64.b64decode(secret["data"][key]))
            path.chmod(0o600)
            files[key] = str(path)
        server = start_webhook(
            operator_kubeconfig,
            config,
            tmp_path / "webhook.log",
            managed=False,
            environment={
                WEBHOOK_CERT_ENV: files["tls.crt"],
                WEBHOOK_KEY_ENV: files["tls.key"],
                WEBHOOK_CA_ENV: files["ca.crt"],
                WEBHOOK_HOST_ENV: f"{name}.{namespace}.svc",
                WEBHOOK_ADDR_ENV: address,
                WEBHOOK_PORT_ENV: str(port),
                WEBHOOK_MANAGED_ENV: "false",
            },
        )
        operator = start_operator(
            operator_kubeconfig,
            config,
            tmp_path / "operator.log",
            webhook=False,
            environment=ADMISSION_APART,
        )
        webhook = ChartWebhook(
            configuration=configuration,
            resource_version=created.metadata.resource_version,
            address=address,
            port=port,
            custom=custom,
            admission=admission,
            operator=operator,
            server=server,
            tenants=tenants,
        )
        _wait_until_the_webhook_answers(webhook)
        yield webhook
    finally:
        for process in (server, operator):
            if process is not None:
                process.stop()
        # First, so that nothing after this (nor any later test) is refused by it.
        try:
            admission.delete_validating_webhook_configuration(WEBHOOK_CONFIGURATION)
        except ApiException as exc:
            if exc.status != 404:
                raise
        try:
            for tenant in tenants:  # finalizer removal is an UPDATE: no failing webhook now
                _forget_tenant(k8s, custom, postgres_dsn, redis_url, tenant)
        finally:
            if saved is not None:
                admission.create_validating_webhook_configuration(
                    restorable_configuration(k8s, saved)
                )
            for delete in (core.delete_namespaced_endpoints, core.delete_namespaced_service):
                try:
                    delete(name, namespace)
                except ApiException as exc:
                    if exc.status != 404:
                        raise


def _wait_until_the_webhook_answers(webhook: ChartWebhook) -> None:
    """Until the apiserver has the configuration and the operator listens, a create is
    admitted unchecked or fails calling the webhook; then the operator refuses it."""
    probe = make_instance("probe-chart-webhook", hosts=[FOREIGN_HOST])

    def refused_by_the_operator() -> bool:
        try:
            webhook.dry_run_create(probe)
        except ApiException as exc:
            if exc.status == 422 and "denied the request" in str(exc.body):
                return True
            raise
        # Also what a path naming no handler of the operator gets: Kopf then allows.
        raise RuntimeError("admitted unchecked (no webhook called, or no handler at its path)")

    webhook.server.wait_until(refused_by_the_operator, 60, "answering the chart's webhook")


def test_the_chart_configuration_sends_admission_to_the_operator_through_its_service(
    chart_webhook: ChartWebhook,
) -> None:
    webhook = chart_webhook
    status, message = _refusal(
        lambda: webhook.dry_run_create(make_instance("chart-foreign", hosts=[FOREIGN_HOST]))
    )
    assert status == 422
    assert f'admission webhook "{webhook.webhook_name}" denied the request' in message
    assert FOREIGN_HOST_REFUSAL in message
    status, message = _refusal(
        lambda: webhook.dry_run_create(
            make_instance("chart-nowhere", database={"serverRef": "nowhere"})
        )
    )
    assert status == 422
    assert "spec.database.serverRef nowhere is not a PostgreSQL server registered" in message

    admitted = webhook.dry_run_create(make_instance("chart-valid"))
    assert admitted["metadata"]["name"] == "chart-valid"
    with pytest.raises(ApiException) as missing:  # a dry run stores nothing
        webhook.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, "chart-valid")
    assert missing.value.status == 404


def test_the_operator_never_writes_the_chart_configuration(chart_webhook: ChartWebhook) -> None:
    webhook = chart_webhook
    webhook.dry_run_create(make_instance("chart-unchanged"))  # the webhook is in use
    stored = webhook.stored_configuration()
    assert stored.metadata.resource_version == webhook.resource_version
    hook = stored.webhooks[0]
    assert hook.client_config.url is None
    assert hook.client_config.service.name == "odoo-operator-webhook"
    assert hook.client_config.service.port == 9443
    assert (
        hook.client_config.ca_bundle
        == webhook.configuration["webhooks"][0]["clientConfig"]["caBundle"]
    )

    webhook.stop()
    assert webhook.server.exit_code() is not None
    stored = webhook.stored_configuration()
    assert stored.metadata.resource_version == webhook.resource_version, "written at shutdown"


def test_without_the_operator_creates_and_updates_are_refused_but_deletes_are_not(
    chart_webhook: ChartWebhook,
) -> None:
    webhook = chart_webhook
    custom = webhook.custom
    existing = "chart-retained"
    webhook.tenants.append(existing)
    custom.create_cluster_custom_object(
        GROUP, VERSION, PLURAL, make_instance(existing, deletionPolicy="Retain")
    )

    def finalized() -> bool:
        found = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, existing)
        return FINALIZER in (found["metadata"].get("finalizers") or [])

    eventually(finalized, f"the operator's finalizer on {existing}", timeout=60)
    webhook.stop()

    newcomer = "chart-newcomer"
    webhook.tenants.append(newcomer)  # should the create get through after all
    status, message = _refusal(
        lambda: custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, make_instance(newcomer))
    )
    assert status == 500
    assert f'failed calling webhook "{webhook.webhook_name}"' in message
    # The apiserver dialled the Service's endpoint: the operator's address, now closed.
    assert f"{webhook.address}:{webhook.port}" in message
    assert "connection refused" in message
    status, message = _refusal(
        lambda: custom.patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, existing, {"spec": {"workers": 3}}
        )
    )
    assert status == 500
    assert f'failed calling webhook "{webhook.webhook_name}"' in message

    custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, existing)  # not refused
    terminating = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, existing)
    assert terminating["metadata"].get("deletionTimestamp"), "the delete was not recorded"
    assert FINALIZER in terminating["metadata"]["finalizers"]  # nobody to finish it
    stored = webhook.stored_configuration()
    assert stored.metadata.resource_version == webhook.resource_version
