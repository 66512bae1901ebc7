"""The objects the operator manages, kept current by watches, so that reads cost nothing.

A drift pass reads each child object of a tenant back (about 21 GETs per tenant and pass).
With the cache on, :class:`~odoo_operator.backends.kube.KubeClient` answers those reads from
memory: one list and one long-lived watch per kind, each selecting only the objects labelled
``app.kubernetes.io/managed-by=odoo-operator`` on the server side.

The cache only ever says what *is* there: a miss (an object not labelled, not yet seen, or
absent) is read from the API server as before, so nothing the operator did not create can be
taken for absent. What the operator writes is put into the cache from the server's answer,
so a pass never reads back an older version than the one it just wrote.

Secrets are cached by name only: the tenant Secrets the operator writes (credentials, Odoo's
configuration, the database and Redis settings, the backup store's and the servers' CAs)
each have one watch across namespaces with the field selector ``metadata.name=<name>``.
The API server authorizes such a list or watch against the role's ``resourceNames``, so
the cache needs no grant on any other Secret; the operator's ``get`` on those names already
let it read each of them.

Why not a library: Kopf's watches cannot select by label on the server (they would stream
every Deployment of the cluster), and kubernetes_asyncio's ``Watch`` turns each event into
typed models, the very (de)serialisation that dominated the operator's CPU profile. This is
the list-then-watch loop of a client-go reflector, on the client's own authenticated session:
relist on "410 Gone", back off on errors, bookmarks to keep the resource version fresh.

Needs ``list`` and ``watch`` on the cached kinds cluster-wide, and on the Secrets' names (the
chart's ``watchCache``); a kind or name the operator may not list, or a kind the cluster does
not serve (Traefik's CRDs missing), is simply not cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import metrics
from ..builders.backup_job import BACKUP_STORE_SECRET
from ..builders.odoo_users import CREDENTIALS_SECRET
from ..builders.server_tls import SERVER_CA_SECRET
from ..builders.workloads import CONFIG_SECRET, DATABASE_SECRET, REDIS_SECRET
from ..model.names import FIELD_MANAGER, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL

_logger = logging.getLogger(__name__)

# (apiVersion, kind, plural) of every child kind the operator reads back in its passes.
CACHED_KINDS: tuple[tuple[str, str, str], ...] = (
    ("v1", "Namespace", "namespaces"),
    ("v1", "ResourceQuota", "resourcequotas"),
    ("v1", "LimitRange", "limitranges"),
    ("v1", "ServiceAccount", "serviceaccounts"),
    ("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("v1", "Service", "services"),
    ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    ("apps/v1", "Deployment", "deployments"),
    ("batch/v1", "Job", "jobs"),
    ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ("traefik.io/v1alpha1", "IngressRoute", "ingressroutes"),
    ("traefik.io/v1alpha1", "Middleware", "middlewares"),
)
# The tenant Secrets a pass reads back, each watched by its name (see the module's text).
CACHED_SECRETS: tuple[str, ...] = (
    CREDENTIALS_SECRET,
    CONFIG_SECRET,
    DATABASE_SECRET,
    REDIS_SECRET,
    BACKUP_STORE_SECRET,
    SERVER_CA_SECRET,
)
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
_WATCH_SECONDS = 300  # the server ends a watch after this; the loop resumes it
_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)

Key = tuple[str, str, str, str]  # apiVersion, kind, namespace ("" when cluster-scoped), name


def _key(obj: Mapping[str, Any], api_version: str, kind: str) -> Key:
    meta = obj.get("metadata") or {}
    return api_version, kind, str(meta.get("namespace") or ""), str(meta.get("name"))


def _lean(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without ``metadata.managedFields``: the operator never reads them, and they
    are about half of a Deployment's bytes (the cache's memory at a thousand tenants)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj


# The cluster's own controllers keep the operator's objects (a Deployment's revision
# annotation, statuses): their writes are progress, never drift.
_CONTROLLERS = frozenset({"kube-controller-manager"})


def changed_by_others(obj: Mapping[str, Any], statuses: bool = True) -> bool:
    """Whether the last write to ``obj`` was someone else's than the operator's: a person or
    a tool editing it, or (with ``statuses``) a controller updating it. Read from
    ``managedFields``: the writers of the latest second (the server's resolution) include
    another manager."""
    fields = (obj.get("metadata") or {}).get("managedFields") or []
    if not fields:
        return True  # a server that does not say: assume the worst, look again
    # A write through the scale subresource is recorded without a time: count it as recent.
    latest = max(str(entry.get("time") or "") for entry in fields)

    def counts(entry: Mapping[str, Any]) -> bool:
        if entry.get("manager") == FIELD_MANAGER:
            return False
        return statuses or (
            entry.get("subresource") != "status" and entry.get("manager") not in _CONTROLLERS
        )

    return any(counts(entry) for entry in fields if str(entry.get("time") or latest) == latest)


def settled(obj: Mapping[str, Any], kind: str) -> bool:
    """Whether ``obj`` reached what a pass waits for: a Deployment rolled out and available,
    a Job finished, a claim bound. Progress short of that (a pod created, not yet ready), or
    of kinds no pass waits for (a quota's usage, recounted at every pod), would wake a
    waiting pass for nothing: during a rollout of hundreds of tenants, a pass for every step
    of every pod."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "Deployment":
        wanted = spec.get("replicas", 1)
        generation = (obj.get("metadata") or {}).get("generation", 0)
        return bool(
            status.get("observedGeneration", 0) >= generation
            and status.get("updatedReplicas", 0) >= wanted
            and status.get("availableReplicas", 0) >= wanted
        )
    if kind == "Job":
        return any(
            condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True"
            for condition in status.get("conditions") or []
        )
    if kind == "PersistentVolumeClaim":
        return bool(status.get("phase") == "Bound")
    return False


def _version(obj: Mapping[str, Any]) -> int | None:
    # Opaque by contract, integers from etcd in practice: compared only to keep a write's
    # answer from being replaced by an older watch event that arrives after it.
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else None


@dataclass
class ObjectCache:
    """Objects by key, and which kinds are complete (listed, and watched since)."""

    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    synced: set[tuple[str, str]] = field(default_factory=set)
    # (apiVersion, kind, name) of the kinds cached by name only (Secrets).
    synced_names: set[tuple[str, str, str]] = field(default_factory=set)
    # Kinds listed whole (not only the operator's objects): a miss there means absent.
    complete: set[tuple[str, str]] = field(default_factory=set)
    # Passes waiting for one of their tenant's objects to move on (wait_for_change), each
    # with whether a status update wakes it.
    _waiting: dict[str, set[tuple[asyncio.Event, bool]]] = field(default_factory=dict)
    # Tenants whose objects were edited by others while no repair waited: the next wait for
    # edits returns at once, so an edit before the first wait or between two is not missed.
    # A tenant is forgotten when its namespace is gone (or it is deleted: forget_tenant).
    _edited: set[str] = field(default_factory=set)

    async def wait_for_change(self, instance: str, timeout: float, statuses: bool = True) -> bool:
        """Wait until a watch event shows an object of tenant ``instance`` deleted, or
        changed by someone else than the operator: a person editing it, or (``statuses``) its
        controller reporting progress (pods available, a Job complete); False after
        ``timeout`` seconds without.

        A pass waiting for its children looks again as soon as they move, and a child's
        drift is repaired within seconds rather than at the next drift pass. The
        operator's own writes wake nobody.
        """
        if not statuses and instance in self._edited:
            self._edited.discard(instance)
            return True
        waiter = (asyncio.Event(), statuses)
        self._waiting.setdefault(instance, set()).add(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter[0].wait()
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._waiting.get(instance)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiting[instance]

    def _wake(self, obj: Mapping[str, Any], kind: str, deleted: bool) -> None:
        instance = ((obj.get("metadata") or {}).get("labels") or {}).get(INSTANCE_LABEL)
        if not instance:
            return
        # Jobs come and go by design (finished backup Jobs are deleted): only their progress
        # wakes, and only the passes waiting for it.
        edited = (deleted and kind != "Job") or (
            not deleted and changed_by_others(obj, statuses=False)
        )
        waiters = self._waiting.get(instance, set())
        if deleted and kind == "Namespace":
            self._edited.discard(instance)  # the last of a tenant to go: nothing to remember
        elif edited and all(statuses for _, statuses in waiters):
            self._edited.add(instance)  # no repair waits now: the next one will see it
        if not waiters:
            return
        progressed = edited or deleted or (changed_by_others(obj) and settled(obj, kind))
        for changed, statuses in waiters:
            if edited or (statuses and progressed):
                changed.set()

    def forget_tenant(self, instance: str) -> None:
        """Drop what is remembered of a tenant being deleted (its objects' deletions to come
        are no drift)."""
        self._edited.discard(instance)

    def answers_for(self, api_version: str, kind: str, name: str) -> bool:
        """Whether the cache is complete for objects of this kind and name."""
        return (api_version, kind) in self.synced or (
            api_version,
            kind,
            name,
        ) in self.synced_names

    def lookup(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        """The cached object, or None: absent, not labelled, or its kind not cached."""
        if not self.answers_for(api_version, kind, name):
            return None
        return self.objects.get((api_version, kind, namespace or "", name))

    def knows_absent(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        """Whether the object surely does not exist: its whole kind is listed and watched,
        and it is not there."""
        return (api_version, kind) in self.complete and self.lookup(
            api_version, kind, name, namespace
        ) is None

    def observe(self, obj: Mapping[str, Any]) -> None:
        """Take an object the server answered with (a write's result), unless the cache
        already holds a newer version of it."""
        api_version, kind = str(obj.get("apiVersion")), str(obj.get("kind"))
        if not self.answers_for(api_version, kind, str((obj.get("metadata") or {}).get("name"))):
            return
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY and (api_version, kind) not in self.complete:
            return
        key = _key(obj, api_version, kind)
        held, offered = _version(self.objects.get(key, {})), _version(obj)
        if held is not None and offered is not None and offered < held:
            return
        self.objects[key] = _lean(dict(obj))

    def replace(
        self,
        api_version: str,
        kind: str,
        items: list[dict[str, Any]],
        name: str | None = None,
        complete: bool = False,
    ) -> None:
        """Everything of a kind (or of a kind and ``name``), from a fresh list; ``complete``
        when the list was not narrowed to the operator's objects."""
        if complete:
            self.complete.add((api_version, kind))
        for key in [
            k for k in self.objects if k[:2] == (api_version, kind) and name in (None, k[3])
        ]:
            del self.objects[key]
        for item in items:
            self.objects[_key(item, api_version, kind)] = _lean(item)
        if name is None:
            self.synced.add((api_version, kind))
        else:
            self.synced_names.add((api_version, kind, name))

    def apply_event(
        self, api_version: str, kind: str, kind_event: str, obj: dict[str, Any]
    ) -> None:
        """One watch event: ADDED, MODIFIED or DELETED."""
        key = _key(obj, api_version, kind)
        if kind_event == "DELETED":
            self.objects.pop(key, None)
            self._wake(obj, kind, deleted=True)
        elif kind_event in ("ADDED", "MODIFIED"):
            held, offered = _version(self.objects.get(key, {})), _version(obj)
            if held is None or offered is None or offered >= held:
                self.objects[key] = _lean(obj)
                self._wake(obj, kind, deleted=False)

    def forget_kind(self, api_version: str, kind: str, name: str | None = None) -> None:
        """Stop answering for a kind (or a kind's ``name``) whose watch broke, until it is
        listed again."""
        if name is None:
            self.synced.discard((api_version, kind))
            self.complete.discard((api_version, kind))
        else:
            self.synced_names.discard((api_version, kind, name))


@dataclass(frozen=True)
class Stream:
    """One list-and-watch: a kind, or only the objects of a kind with one name."""

    api_version: str
    kind: str
    plural: str
    name: str | None = None
    # False: every object of the kind, not only the operator's; the cache then knows what
    # is absent too (the admission webhook's index of namespaces).
    labelled: bool = True

    @property
    def label(self) -> str:
        return self.kind if self.name is None else f"{self.kind} {self.name}"

    def query(self) -> list[tuple[str, str]]:
        """The selectors: the operator's label, and the name when the stream has one."""
        query = [("labelSelector", SELECTOR)] if self.labelled else []
        if self.name is not None:
            query.append(("fieldSelector", f"metadata.name={self.name}"))
        return query


STREAMS: tuple[Stream, ...] = tuple(Stream(*kind) for kind in CACHED_KINDS) + tuple(
    Stream("v1", "Secret", "secrets", name) for name in CACHED_SECRETS
)
# Every namespace of the cluster, for the admission webhook: whether odoo-<name> is taken is
# then answered from memory, not by a GET to an API server busy with a rollout.
ALL_NAMESPACES = Stream("v1", "Namespace", "namespaces", labelled=False)


def _path(api_version: str, plural: str) -> str:
    return (
        f"/api/{api_version}/{plural}"
        if "/" not in api_version
        else f"/apis/{api_version}/{plural}"
    )


class WatchCache:
    """The list-and-watch loops that keep an :class:`ObjectCache` current."""

    def __init__(self, api: client.ApiClient, streams: tuple[Stream, ...] = STREAMS) -> None:
        self._api = api
        self._streams = streams
        self.cache = ObjectCache()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, timeout: float = 30.0) -> list[str]:
        """Start a loop per stream; wait until each is listed once, or found not cacheable,
        or ``timeout`` passes. Returns what is cached: kinds, and Secrets by name."""
        ready = {stream: asyncio.Event() for stream in self._streams}
        for stream in self._streams:
            self._tasks.append(
                asyncio.create_task(self._run(stream, ready[stream]), name=f"watch {stream.label}")
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(event.wait() for event in ready.values())), timeout
            )
        return sorted(kind for _, kind in self.cache.synced) + sorted(
            f"{kind} {name}" for _, kind, name in self.cache.synced_names
        )

    async def stop(self) -> None:
        """Cancel every loop."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _call(self, path: str, query: list[tuple[str, str]], timeout: float) -> Any:
        """The raw response (a stream) of a GET; a refusal raises :class:`ApiException`."""
        response = await self._api.call_api(
            path,
            "GET",
            {},
            query,
            {"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )
        if not 200 <= response.status <= 299:
            reason = (await response.read())[:500].decode(errors="replace")
            response.release()
            raise ApiException(status=response.status, reason=reason)
        return response

    async def _list(self, stream: Stream) -> str:
        with metrics.observe_call("kubernetes", "list"):
            response = await self._call(
                _path(stream.api_version, stream.plural), stream.query(), 60
            )
            listing = json.loads(await response.read())
        for item in listing.get("items", []):
            item.setdefault("apiVersion", stream.api_version)
            item.setdefault("kind", stream.kind)
        self.cache.replace(
            stream.api_version,
            stream.kind,
            listing.get("items", []),
            stream.name,
            complete=not stream.labelled and stream.name is None,
        )
        return str(listing["metadata"]["resourceVersion"])

    async def _watch(self, stream: Stream, version: str) -> str:
        """Follow the watch from ``version`` until the server ends it; the last version."""
        query = [
            *stream.query(),
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", version),
            ("timeoutSeconds", str(_WATCH_SECONDS)),
        ]
        path = _path(stream.api_version, stream.plural)
        response = await self._call(path, query, _WATCH_SECONDS + 30)
        async with response:
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise ApiException(status=obj.get("code"), reason=obj.get("reason"))
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if event.get("type") != "BOOKMARK":
                    self.cache.apply_event(stream.api_version, stream.kind, event["type"], obj)
        return version

    async def _run(self, stream: Stream, ready: asyncio.Event) -> None:
        failures = 0
        while True:
            try:
                version = await self._list(stream)
                ready.set()
                failures = 0
                while True:
                    version = await self._watch(stream, version)
            except asyncio.CancelledError:
                raise
            except ApiException as error:
                self.cache.forget_kind(stream.api_version, stream.kind, stream.name)
                if error.status in (403, 404) and not ready.is_set():
                    # Not allowed to list it, or not served here: read it by name instead.
                    _logger.info(
                        "not caching %s: the API server answers %s to a list",
                        stream.label,
                        error.status,
                    )
                    ready.set()
                    return
                if error.status != 410:  # 410: the version expired; relist at once
                    failures += 1
            except Exception as error:  # noqa: BLE001 - a broken stream is retried, never fatal
                self.cache.forget_kind(stream.api_version, stream.kind, stream.name)
                failures += 1
                _logger.warning("watch of %s broke (%s); listing it again", stream.label, error)
            if failures:
                await asyncio.sleep(_BACKOFF_SECONDS[min(failures, len(_BACKOFF_SECONDS)) - 1])
