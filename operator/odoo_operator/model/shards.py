"""Which operator process serves which tenant, when the fleet is split into shards.

One operator process serves one shard; each shard runs as its own Deployment with its own
Kopf peering (active/standby inside the shard). A tenant belongs to exactly one shard:

- the shard its ``odoo.tenantops.io/shard`` label names, when it has one. Admission stamps
  that label on every new OdooInstance, OdooBackup and OdooRestore, so an assignment never
  changes by itself; moving a tenant is editing the label of its OdooInstance;
- otherwise (an object created before sharding was turned on) the shard chosen by
  rendezvous hashing of the instance's name over the configured shards: stable, the same in
  every process that has the same shard list, and adding a shard moves only the tenants
  the new shard wins (about 1/N of them) rather than reshuffling the fleet as ``hash mod N``
  would.

An OdooBackup or OdooRestore belongs to the shard of its instance: admission copies the
instance's shard onto it when it is created, and one created unlabelled follows its
instance's name through the same hash.

Without ``ODOO_OPERATOR_SHARDS`` the operator is not sharded and serves every tenant.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .names import GROUP, INSTANCE_LABEL

SHARD_LABEL = f"{GROUP}/shard"
# The shards of the fleet, comma-separated, the same list in every shard's process.
SHARDS_ENV = "ODOO_OPERATOR_SHARDS"
# The one shard this process serves (one of SHARDS_ENV).
SHARD_ENV = "ODOO_OPERATOR_SHARD"
# "true" in ``odoo-operator webhook``: it knows the fleet's shards (it assigns them) and
# serves none, so it has no SHARD_ENV.
ADMISSION_ONLY_ENV = "ODOO_OPERATOR_ADMISSION_ONLY"
# The finalizer of an operator that is not sharded; a shard's is FINALIZER-<shard>.
FINALIZER = f"{GROUP}/finalizer"
# A label value, short enough to be part of a Deployment's and a peering object's name.
_SHARD_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


class ShardConfigError(ValueError):
    """The shard settings of the environment are inconsistent; the message says how."""


def rendezvous_shard(key: str, shards: Sequence[str]) -> str:
    """The shard of ``shards`` that wins ``key`` by highest random weight.

    A dozen lines of hashlib rather than a dependency: the property that matters (adding a
    shard moves only what it wins) is the definition itself, and every process must compute
    exactly the same, so the weight is a fixed SHA-256, not Python's salted ``hash``.
    """
    if not shards:
        raise ValueError("no shards to choose from")

    def weight(shard: str) -> bytes:
        return hashlib.sha256(f"{shard}\0{key}".encode()).digest()

    return max(shards, key=weight)


@dataclass(frozen=True)
class Sharding:
    """The shard this process serves (``own``) among the fleet's ``shards``; an empty
    ``shards`` means the fleet is not sharded and this process serves everything."""

    shards: tuple[str, ...] = ()
    own: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.shards)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Sharding:
        """Read ``ODOO_OPERATOR_SHARDS`` and ``ODOO_OPERATOR_SHARD``.

        Raises :class:`ShardConfigError` naming the variable when a shard name is not a
        valid label value, the list repeats a name, or the own shard is missing from it
        (unless ``ODOO_OPERATOR_ADMISSION_ONLY`` says the process serves no shard).
        """
        env = os.environ if environ is None else environ
        listed = [part.strip() for part in env.get(SHARDS_ENV, "").split(",") if part.strip()]
        own = env.get(SHARD_ENV, "").strip()
        admission_only = env.get(ADMISSION_ONLY_ENV, "").strip().lower() == "true"
        if not listed:
            if own:
                raise ShardConfigError(
                    f"{SHARD_ENV}={own!r} needs {SHARDS_ENV}, the fleet's shards"
                )
            return cls()
        for name in listed:
            if not _SHARD_NAME.match(name):
                raise ShardConfigError(
                    f"{SHARDS_ENV}: {name!r} is not a shard name (lower-case letters, digits "
                    "and '-', at most 32 characters, starting and ending alphanumeric)"
                )
        if len(set(listed)) != len(listed):
            raise ShardConfigError(f"{SHARDS_ENV} names a shard twice: {','.join(listed)}")
        if admission_only and not own:
            return cls(tuple(listed), "")  # assigns the shards, serves none
        if own not in listed:
            raise ShardConfigError(
                f"{SHARD_ENV}={own!r} is not one of {SHARDS_ENV} ({', '.join(listed)})"
            )
        return cls(tuple(listed), own)

    @property
    def finalizer(self) -> str:
        """The finalizer this process puts on the objects it serves.

        One per shard: Kopf removes its finalizer from an object none of its handlers serve,
        so shards sharing one would take it from each other's tenants without end (and a
        tenant moved away keeps no finalizer of the shard that no longer serves it).
        """
        return f"{FINALIZER}-{self.own}" if self.enabled else FINALIZER

    def shard_of(self, labels: Mapping[str, str] | None, instance: str) -> str:
        """The shard of an object with ``labels`` that belongs to ``instance``."""
        labelled = (labels or {}).get(SHARD_LABEL)
        if labelled:
            return labelled
        return rendezvous_shard(instance, self.shards)

    def serves(self, labels: Mapping[str, str] | None, instance: str) -> bool:
        """Whether this process handles an object with ``labels`` of tenant ``instance``."""
        return not self.enabled or self.shard_of(labels, instance) == self.own

    def label_problem(self, labels: Mapping[str, str] | None) -> str | None:
        """Why an object's shard label cannot be accepted, or None: it must name a shard of
        the fleet, else no process would ever serve the tenant."""
        labelled = (labels or {}).get(SHARD_LABEL)
        if not self.enabled or labelled is None or labelled in self.shards:
            return None
        return (
            f"metadata.labels[{SHARD_LABEL}]: {labelled!r} is not a shard of this fleet "
            f"(shards: {', '.join(self.shards)})"
        )


def instance_of(body: Mapping[str, Any]) -> str:
    """The instance an OdooInstance, OdooBackup or OdooRestore belongs to (for a restore,
    the instance it restores into; for a restore drill, which names no target, the
    instance of its backup, as its instance label says)."""
    if body.get("kind") == "OdooInstance":
        return str(body["metadata"]["name"])
    spec = body.get("spec") or {}
    target = spec.get("target") or {}
    labelled = ((body.get("metadata") or {}).get("labels") or {}).get(INSTANCE_LABEL)
    drill_of = labelled if spec.get("drill") else None
    return str(
        spec.get("instance") or target.get("instance") or drill_of or body["metadata"]["name"]
    )
