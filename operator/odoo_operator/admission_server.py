"""Serving admission: the webhook server's settings, and ``odoo-operator webhook``, a process that
serves the admission webhooks and nothing else.

Admission answers within the API server's request, so its latency is every ``kubectl apply``'s.
Inside the operator process it waits its turn on the event loop behind every provisioning pass
(seconds, during a rollout of hundreds of tenants); in a process of its own it answers from
memory at once. That process watches OdooInstances (its claims index) and namespaces (whether
``odoo-<name>`` is taken: an index a few milliseconds behind the API server, as the claims are;
the operator checks the namespace again before it uses it), reads the target of a restore when
one is asked for, and writes only refusals to the operations journal; it never writes to the
API server (but for its webhook configurations, on a workstation where it manages them), so any
number of replicas may run side by side without peering. With shards it stamps each new tenant
with its shard and serves none. The operator started without a webhook certificate, and with
``ODOO_OPERATOR_WEBHOOK_APART=true`` to say admission is served elsewhere, then serves no
admission itself (the chart's ``webhook.ownDeployment``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import kopf

from . import metrics
from .backends.kube import KubeClient
from .backends.kube_cache import ALL_NAMESPACES, WatchCache
from .handlers.admission import fill_claims_index, keep_claims_index, register_admission
from .handlers.shards import sharding_problem
from .model.config import (
    CONFIG_ENV,
    WEBHOOK_ADDR_ENV,
    WEBHOOK_APART_ENV,
    WEBHOOK_CA_ENV,
    WEBHOOK_CERT_ENV,
    WEBHOOK_CONFIGURATION,
    WEBHOOK_HOST_ENV,
    WEBHOOK_KEY_ENV,
    WEBHOOK_MANAGED_ENV,
    WEBHOOK_PORT_ENV,
    OperatorConfig,
    webhook_enabled,
)
from .model.names import GROUP, INSTANCE_PLURAL, VERSION
from .reconcile.clients import Clients


def webhook_apart() -> bool:
    """Whether admission is served by processes of its own (``odoo-operator webhook``)."""
    return os.environ.get(WEBHOOK_APART_ENV, "").strip().lower() == "true"


def webhook_managed() -> bool:
    """Whether the operator writes its own ValidatingWebhookConfiguration.

    Installed by Helm or kustomize it does not: the configuration is part of the release,
    fail-closed, and outlives any one pod. When Kopf managed it, a pod that stopped cleanly
    emptied it, so a rolling update (the new pod registers, then the old one stops) left
    OdooInstances checked by the CRD schema only until the next restart.
    """
    return os.environ.get(WEBHOOK_MANAGED_ENV, "true").strip().lower() != "false"


def webhook_server() -> kopf.WebhookServer:
    """The admission webhook server described by the ``ODOO_OPERATOR_WEBHOOK_*`` variables.

    Raises :class:`kopf.PermanentError` when a file is missing or the port is not a
    number: stopping at startup says what is wrong, where a server failing later
    would leave the apiserver refusing every OdooInstance change.
    """
    files: dict[str, Path] = {}
    for variable in (WEBHOOK_CERT_ENV, WEBHOOK_KEY_ENV, WEBHOOK_CA_ENV):
        value = os.environ.get(variable)
        if not value:
            raise kopf.PermanentError(f"{variable} must be set when {WEBHOOK_CERT_ENV} is")
        if not Path(value).is_file():
            raise kopf.PermanentError(f"{variable} names {value}, which is not a readable file")
        files[variable] = Path(value)
    port_text = os.environ.get(WEBHOOK_PORT_ENV, "9443")
    try:
        port = int(port_text)
    except ValueError:
        raise kopf.PermanentError(
            f"{WEBHOOK_PORT_ENV} must be a port number, got {port_text!r}"
        ) from None
    return kopf.WebhookServer(
        addr=os.environ.get(WEBHOOK_ADDR_ENV, "0.0.0.0"),  # noqa: S104 - in a pod, the pod IP
        port=port,
        host=os.environ.get(WEBHOOK_HOST_ENV, "127.0.0.1"),
        certfile=files[WEBHOOK_CERT_ENV],
        pkeyfile=files[WEBHOOK_KEY_ENV],
        cafile=files[WEBHOOK_CA_ENV],
    )


def configure_admission(settings: kopf.OperatorSettings) -> None:
    """Serve the webhook (and, on a workstation, keep its configurations pointing at it)."""
    settings.admission.server = webhook_server()
    if webhook_managed():
        # Kopf creates the webhook configurations, points them at the server and empties
        # them again when the process stops cleanly: right for one process on a
        # workstation, not for pods that replace each other (see webhook_managed).
        settings.admission.managed = WEBHOOK_CONFIGURATION


async def connect_clients() -> Clients:
    """The Kubernetes client and the operator configuration (``ODOO_OPERATOR_CONFIG``)."""
    path = os.environ.get(CONFIG_ENV)
    config = OperatorConfig.load(Path(path)) if path else OperatorConfig()
    return Clients(kube=await KubeClient.connect(), config=config)


async def start_webhook_process(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Startup of ``odoo-operator webhook``: the server, the clients, the claims index filled
    before the first request, and the metrics endpoint (the admission histogram)."""
    problem = sharding_problem()
    if problem is not None:
        raise kopf.PermanentError(problem)
    settings.posting.enabled = False
    configure_admission(settings)
    clients = memo["clients"] = await connect_clients()
    # Whether odoo-<name> is taken, from memory: a GET per create would wait on an API
    # server busy with the very rollout being admitted.
    namespaces = WatchCache(clients.kube.api, streams=(ALL_NAMESPACES,))
    if await namespaces.start():
        clients.kube.cache = namespaces.cache
    memo["namespace_index"] = namespaces
    await fill_claims_index(clients)
    port = metrics.metrics_port()
    if port:
        try:
            memo["metrics_server"] = metrics.start_server(port)
        except OSError as exc:
            raise kopf.PermanentError(f"cannot serve metrics on port {port}: {exc}") from None
    logger.info("serving admission only: the operator's passes run in other processes")


async def stop_webhook_process(memo: kopf.Memo, **_: Any) -> None:
    """Cleanup of ``odoo-operator webhook``: the metrics endpoint and the clients."""
    server = memo.get("metrics_server")
    if server is not None:
        await asyncio.to_thread(server.shutdown)  # waits for a scrape under way
        server.server_close()
    namespaces: WatchCache | None = memo.get("namespace_index")
    if namespaces is not None:
        await namespaces.stop()
    clients: Clients | None = memo.get("clients")
    if clients is not None:
        await clients.close()


def webhook_registry() -> kopf.OperatorRegistry:
    """The handlers of ``odoo-operator webhook``: admission, and the watch that keeps the
    claims index; no tenant handler, so it never writes to the API server.

    Raises :class:`ValueError` when no webhook certificate is configured: such a process
    would serve nothing.
    """
    if not webhook_enabled():
        raise ValueError(f"{WEBHOOK_CERT_ENV} is not set: there is no webhook to serve")
    registry = kopf.OperatorRegistry()
    # The login the operator's default registry would pick: the same client library (and
    # so the same kubeconfig or in-cluster token) as the operator's own KubeClient.
    kopf.on.login(registry=registry)(kopf.login_via_async_client)
    kopf.on.startup(registry=registry)(start_webhook_process)
    kopf.on.cleanup(registry=registry)(stop_webhook_process)
    kopf.on.event(GROUP, VERSION, INSTANCE_PLURAL, registry=registry)(keep_claims_index)
    register_admission(registry)
    return registry
