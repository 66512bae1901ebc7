"""Kopf settings and the operator's shared clients, in one place."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from typing import Any

import kopf

from . import metrics
from .admission_server import (
    configure_admission,
    connect_clients,
    webhook_apart,
)
from .backends.kube_cache import WatchCache
from .handlers.admission import fill_claims_index, register_admission
from .handlers.shards import SHARDING, sharding_problem
from .model.config import WEBHOOK_CERT_ENV, watch_cache_enabled, webhook_enabled
from .model.names import GROUP
from .observability import restores as restores  # registers the restore counter
from .observability import tenant_probe
from .reconcile.clients import Clients

# Name of the ClusterKopfPeering the operator's replicas share (the chart's ha.enabled).
# Unset: the operator runs standalone, alone in the cluster.
PEERING_ENV = "ODOO_OPERATOR_PEERING"


def configure_peering(settings: kopf.OperatorSettings) -> None:
    """Active/standby between replicas when ``ODOO_OPERATOR_PEERING`` names a peering object.

    Each process takes a random priority: Kopf pauses every operator that sees a live peer
    of higher priority (and all of them on a tie, which a random 31-bit draw makes
    unlikely), so exactly one replica works while the others stand by, and a standby
    resumes once the active one's heartbeat expires. Mandatory: without the peering CRD the
    operator waits rather than run unco-ordinated next to its peers.
    """
    name = os.environ.get(PEERING_ENV)
    if not name:
        return
    settings.peering.standalone = False
    settings.peering.mandatory = True
    settings.peering.clusterwide = True
    settings.peering.name = name
    settings.peering.priority = 1 + secrets.randbelow(2**31 - 1)


if webhook_enabled():
    # This process serves admission itself (without ``odoo-operator webhook`` beside it).
    register_admission(kopf.get_default_registry())


@kopf.on.startup()
async def start(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Configure Kopf and create the shared clients."""
    problem = sharding_problem()
    if problem is not None:
        raise kopf.PermanentError(problem)
    if SHARDING.enabled:
        logger.info(
            f"serving shard {SHARDING.own!r} of {', '.join(SHARDING.shards)}: only tenants "
            "labelled for it, or whose name hashes to it"
        )
    settings.persistence.finalizer = SHARDING.finalizer
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Kopf would post Events about cluster-scoped objects that `kubectl describe` never finds
    # (builders/events.py): the operator posts its own, for the transitions that matter.
    settings.posting.enabled = False
    # A deleted tenant's drift timer may be mid-pass; Kopf re-checks whether it has exited
    # after this many seconds (60 by default, which held finalizers for a minute).
    settings.background.cancellation_polling = 2.0
    configure_peering(settings)
    if webhook_enabled():
        configure_admission(settings)
    elif webhook_apart():
        logger.info("admission is served by processes of its own (odoo-operator webhook)")
    else:
        logger.warning(
            f"{WEBHOOK_CERT_ENV} is not set: no admission webhook, so OdooInstances are "
            "checked by the CRD schema only (host take-overs, unknown servers, downgrades "
            "and versions without an image are not refused)"
        )
    clients = await connect_clients()
    kube = clients.kube
    memo["clients"] = clients
    if watch_cache_enabled():
        # Before Kopf's handlers start: their first passes already read from memory.
        watches = WatchCache(kube.api)
        cached = await watches.start()
        kube.cache = watches.cache
        memo["watch_cache"] = watches
        logger.info(f"watch cache: {len(cached)} streams kept from watches ({', '.join(cached)})")
    if webhook_enabled():
        # Before the webhook serves (Kopf starts it when startup handlers are done):
        # admission then answers from the index, never from a partial one.
        await fill_claims_index(memo["clients"])
    start_metrics(memo, logger)


def start_metrics(memo: kopf.Memo, logger: kopf.Logger) -> None:
    """Serve metrics on ``ODOO_OPERATOR_METRICS_PORT`` and start the tenant probe loop.

    A port that cannot be used stops the operator at startup, saying why.
    """
    try:
        port = metrics.metrics_port()
    except ValueError as exc:
        raise kopf.PermanentError(str(exc)) from None
    if port == 0:
        logger.info(f"{metrics.METRICS_PORT_ENV}=0: no metrics endpoint, no tenant probes")
        return
    try:
        memo["metrics_server"] = metrics.start_server(port)
    except OSError as exc:
        raise kopf.PermanentError(f"cannot serve metrics on port {port}: {exc}") from None
    memo["tenant_probes"] = tenant_probe.start(memo["clients"])
    logger.info(f"serving metrics on port {port}")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop the metrics endpoint and the probe loop; close the shared clients."""
    probes: asyncio.Task[None] | None = memo.get("tenant_probes")
    if probes is not None:
        probes.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probes
    server = memo.get("metrics_server")
    if server is not None:
        await asyncio.to_thread(server.shutdown)
        server.server_close()
    watches: WatchCache | None = memo.get("watch_cache")
    if watches is not None:
        await watches.stop()
    clients: Clients | None = memo.get("clients")
    if clients is not None:
        await clients.close()
