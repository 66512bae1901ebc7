"""The shard this process serves, as Kopf filters.

Every handler of OdooInstance, OdooBackup and OdooRestore carries ``when=serves_tenant``
(see :mod:`odoo_operator.model.shards`): a process never adds its finalizer to, writes
status of, or runs a step for a tenant of another shard. The watches that keep the claims
index and the admission webhook see the whole fleet in every shard: uniqueness of hosts
and databases is fleet-wide.

Kopf fixes filters when handlers are registered, so the settings come from the environment
when this module is imported; a setting it cannot read stops the operator at startup
(:func:`sharding_problem`), and until then nothing is served.
"""

from __future__ import annotations

from typing import Any

import kopf

from ..model.names import API_VERSION
from ..model.shards import FINALIZER, ShardConfigError, Sharding, instance_of
from ..reconcile.clients import Clients

try:
    SHARDING = Sharding.from_environment()
    _PROBLEM: str | None = None
except ShardConfigError as problem:
    SHARDING = Sharding(shards=("",), own="unreadable")  # serves nothing
    _PROBLEM = str(problem)


def sharding_problem() -> str | None:
    """What is wrong with the shard settings of the environment, or None."""
    return _PROBLEM


def serves_tenant(body: kopf.Body, labels: kopf.Labels, **_: Any) -> bool:
    """Kopf filter: whether this process serves the tenant of ``body``."""
    return SHARDING.serves(labels, instance_of(body))


async def hand_over_finalizer(clients: Clients, body: kopf.Body) -> None:
    """Drop the unsharded operator's finalizer from a tenant this shard now guards with its
    own: after sharding is switched on, no process would ever remove the old one, and the
    tenant could not be deleted."""
    finalizers = list(body["metadata"].get("finalizers") or [])
    if not SHARDING.enabled or FINALIZER not in finalizers:
        return
    if SHARDING.finalizer not in finalizers:
        return  # Kopf adds ours first; until then the old one still guards the deletion
    kept = [f for f in finalizers if f != FINALIZER]
    await clients.kube.patch_metadata(
        API_VERSION, str(body["kind"]), body["metadata"]["name"], {"finalizers": kept}
    )
