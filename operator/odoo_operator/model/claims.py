"""What each OdooInstance claims that no other instance may have: its hosts, and its database
on its PostgreSQL server.

Admission needs, for one instance, who else claims the same hosts and database. Listing every
OdooInstance per request costs O(fleet) (0.6 s per request at 500 tenants); the
:class:`ClaimsIndex` answers from memory in O(hosts of the instance). The operator fills it
from one consistent list at startup, before its webhook serves, and keeps it current from
its watch of OdooInstances.

The watch lags the API server by a few milliseconds, so two instances created one right
after the other, with the same host, could both be let through before the first one is
seen. Admission therefore records what it lets through at once (:meth:`ClaimsIndex.admit`),
before it awaits anything, until the watch confirms it or ``ADMITTED_SECONDS`` pass (an
object admitted here and then refused by a later webhook never arrives): the same
bookkeeping as the scheduler's "assumed" pods.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .admission import database_server, normalize_host
from .config import OperatorConfig
from .spec import InstanceSpec


@dataclass(frozen=True)
class FleetClaims:
    """What other OdooInstances hold: hosts, and databases per PostgreSQL server."""

    hosts: dict[str, str]
    databases: dict[tuple[str, str], str]


@dataclass(frozen=True)
class Claims:
    """The hosts and (server, database) pairs one OdooInstance holds."""

    hosts: frozenset[str]
    databases: frozenset[tuple[str, str]]


def claims_of(body: Mapping[str, Any], config: OperatorConfig) -> Claims:
    """What the instance ``body`` holds.

    An instance being deleted still holds its hosts and database: its route serves and its
    database exists until it is gone. The database is both the one recorded in status (the
    name the operator resolved) and the one its spec asks for. An object stored under an
    older schema that cannot be read holds its hosts only.
    """
    spec = body.get("spec") or {}
    hosts = frozenset(normalize_host(str(host)) for host in spec.get("hosts") or [])
    try:
        parsed = InstanceSpec.from_resource(body)
    except (KeyError, TypeError, ValueError):
        return Claims(hosts, frozenset())
    server = database_server(parsed, config)
    recorded = (body.get("status") or {}).get("database")
    names = {parsed.database, str(recorded)} if recorded else {parsed.database}
    return Claims(hosts, frozenset((server, name) for name in names))


# How long claims admitted but not yet seen by the watch are held (see the module's text).
ADMITTED_SECONDS = 30.0


@dataclass
class ClaimsIndex:
    """Who holds each host and database, kept from the watch of OdooInstances.

    ``ready`` turns true once the index was filled from a consistent list (at startup);
    until then admission lists the fleet itself rather than trust a partial index.
    """

    ready: bool = False
    _by_owner: dict[str, Claims] = field(default_factory=dict)
    _hosts: dict[str, set[str]] = field(default_factory=dict)
    _databases: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # Admitted and not yet seen by the watch: name -> (claims, until when, monotonic).
    _admitted: dict[str, tuple[Claims, float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._by_owner)

    def admit(self, name: str, claims: Claims, now: float | None = None) -> None:
        """Hold what admission just let ``name`` claim, until the watch brings the object
        (:meth:`put`) or ``ADMITTED_SECONDS`` pass."""
        until = (time.monotonic() if now is None else now) + ADMITTED_SECONDS
        self._admitted[name] = (claims, until)

    def withdraw(self, name: str, claims: Claims) -> None:
        """Undo :meth:`admit` of ``claims`` (the request was refused after all)."""
        held = self._admitted.get(name)
        if held is not None and held[0] is claims:
            del self._admitted[name]

    def put(self, name: str, claims: Claims) -> None:
        """Record what instance ``name`` holds now, replacing what it held before."""
        self._admitted.pop(name, None)
        self.drop(name)
        self._by_owner[name] = claims
        for host in claims.hosts:
            self._hosts.setdefault(host, set()).add(name)
        for database in claims.databases:
            self._databases.setdefault(database, set()).add(name)

    def drop(self, name: str) -> None:
        """Forget instance ``name`` (it is gone)."""
        before = self._by_owner.pop(name, None)
        if before is None:
            return
        for host in before.hosts:
            _discard(self._hosts, host, name)
        for database in before.databases:
            _discard(self._databases, database, name)

    def held_by_others(
        self, name: str, wanted: Iterable[Claims], now: float | None = None
    ) -> FleetClaims:
        """Of the hosts and databases in ``wanted``, those another instance than ``name``
        holds or was just admitted with, each with one holder (the first by name, for a
        stable message)."""
        now = time.monotonic() if now is None else now
        for expired in [n for n, (_, until) in self._admitted.items() if until <= now]:
            del self._admitted[expired]
        admitted = [(n, c) for n, (c, _) in self._admitted.items() if n != name]
        found = FleetClaims(hosts={}, databases={})
        for claims in wanted:
            for host in claims.hosts:
                others = self._hosts.get(host, set()) - {name}
                others |= {n for n, held in admitted if host in held.hosts}
                if others:
                    found.hosts[host] = min(others)
            for database in claims.databases:
                others = self._databases.get(database, set()) - {name}
                others |= {n for n, held in admitted if database in held.databases}
                if others:
                    found.databases[database] = min(others)
        return found


def _discard(holders: dict[Any, set[str]], key: Any, name: str) -> None:
    owners = holders.get(key)
    if owners is None:
        return
    owners.discard(name)
    if not owners:
        del holders[key]
