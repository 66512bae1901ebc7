"""Kubernetes: server-side apply that writes only when something differs.

One shared async client (kubernetes_asyncio) for the whole operator, with a
bound on concurrent requests. ``apply`` first reads the live object and
compares the fields we own; only a difference leads to a server-side apply
with our fixed field manager. An unchanged tenant therefore costs reads only.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from kubernetes_asyncio import client, config
from kubernetes_asyncio.dynamic import DynamicClient
from kubernetes_asyncio.dynamic.exceptions import ConflictError, NotFoundError

from .. import metrics
from ..model.names import FIELD_MANAGER
from .kube_cache import ObjectCache
from .priority import UrgentFirstSemaphore

# What KubeClient._request returns for a 404 its caller takes as an answer.
_ABSENT: Final = object()


def contains(observed: Any, desired: Any) -> bool:
    """Whether ``observed`` holds every field and value of ``desired``.

    Lists must match element by element; fields the server adds (defaults,
    status, metadata it manages) are ignored because only desired keys are read.
    """
    if isinstance(desired, Mapping):
        return isinstance(observed, Mapping) and all(
            key in observed and contains(observed[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(contains(o, d) for o, d in zip(observed, desired, strict=True))
        )
    if isinstance(desired, bool) or isinstance(observed, bool):
        return bool(observed is desired)
    if isinstance(desired, int | float) and isinstance(observed, int | float):
        return bool(observed == desired)
    return str(observed) == str(desired)


class KubeApiError(RuntimeError):
    """The API server refused a request (forbidden, invalid, conflict...); says which."""

    def __init__(self, what: str, status: Mapping[str, Any]) -> None:
        super().__init__(
            f"{what}: {status.get('code')} {status.get('reason')}: {status.get('message')}"
        )
        self.code = status.get("code")
        self.reason = status.get("reason")


class KubeConflict(KubeApiError):  # noqa: N818 - reads as what happened, as KubeApiError
    """A write conditioned on a ``resourceVersion`` found the object changed since it was
    read (409 Conflict): read it again and recompute."""


def _refusal(answer: Any) -> Mapping[str, Any] | None:
    """The Status of a refused request, or None. The dynamic client hands some error
    answers back as a ``Status`` object instead of raising, so every call checks."""
    if answer is None:
        return None
    data = answer.to_dict() if hasattr(answer, "to_dict") else answer
    if (
        isinstance(data, Mapping)
        and data.get("kind") == "Status"
        and data.get("status") == "Failure"
    ):
        return data
    return None


def _checked(answer: Any, what: str) -> Any:
    refused = _refusal(answer)
    if refused is not None:
        raise (KubeConflict if refused.get("code") == 409 else KubeApiError)(what, refused)
    return answer


def without_environment_lookups(api: client.ApiClient) -> None:
    """Stop the client's HTTP session from consulting the environment on every request.

    kubernetes_asyncio opens its aiohttp session with ``trust_env=True``, so each request
    without an ``auth`` argument (all of them: the token or client certificate is not one)
    sends a thread to read ``~/.netrc``: a measurable share of the operator's CPU at fleet
    scale, for a file that never holds apiserver credentials. Neither the session nor the
    library exposes the setting, hence the private attribute (aiohttp is pinned in
    constraints.txt; a unit test fails if the attribute goes away). The apiserver's proxy,
    if any, comes from the kubeconfig (``proxy-url``), not from ``HTTPS_PROXY``.
    """
    session = api.rest_client.pool_manager
    if not hasattr(session, "_trust_env"):
        raise RuntimeError("aiohttp.ClientSession no longer has _trust_env: review this fix")
    session._trust_env = False


class KubeClient:
    """Read, apply and delete objects of any kind through one shared connection pool."""

    def __init__(self, api: client.ApiClient, max_concurrency: int = 16) -> None:
        self._api = api
        self._dynamic: DynamicClient | None = None
        self._limit = UrgentFirstSemaphore(max_concurrency)  # deletions etc. first
        self.writes = 0  # applies and deletes sent, for metrics and tests
        # The managed objects kept by watches (backends/kube_cache.py), when switched on.
        self.cache: ObjectCache | None = None

    @property
    def api(self) -> client.ApiClient:
        """The underlying client, for the watch cache's streams."""
        return self._api

    @classmethod
    async def connect(cls, max_concurrency: int = 16) -> KubeClient:
        """In-cluster credentials when running in a pod, the kubeconfig otherwise."""
        try:
            config.load_incluster_config()
            api = client.ApiClient()
        except config.ConfigException:
            api = await config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
        without_environment_lookups(api)
        return cls(api, max_concurrency)

    async def close(self) -> None:
        """Release the connection pool."""
        await self._api.close()

    async def _client(self) -> DynamicClient:
        if self._dynamic is None:
            with metrics.observe_call("kubernetes", "discover"):
                self._dynamic = await DynamicClient(self._api)
        return self._dynamic

    async def _request(
        self, operation: str, send: Callable[[], Awaitable[Any]], *, absent_ok: bool = False
    ) -> Any:
        """Send one request within the concurrency bound, timed and counted as
        ``operation`` (:func:`odoo_operator.metrics.observe_call`); return the answer.

        A refusal the client hands back as a Status instead of raising counts as an error
        here; the caller still checks the answer. With ``absent_ok`` a 404 is an answer, not
        an error: raised, it makes the result :data:`_ABSENT`.
        """
        async with self._limit:
            with metrics.observe_call("kubernetes", operation) as call:
                try:
                    answer = await send()
                except NotFoundError:
                    if absent_ok:
                        return _ABSENT
                    raise
                refused = _refusal(answer)
                if refused is not None and not (absent_ok and refused.get("code") == 404):
                    call.fail(KubeApiError(operation, refused))
        return answer

    async def _resource(self, api_version: str, kind: str) -> Any:
        dynamic = await self._client()
        return await dynamic.resources.get(api_version=api_version, kind=kind)

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The live object, or None when it does not exist.

        An object the watch cache holds is answered from memory (a copy), and so is the
        absence of one of a kind it holds whole; anything else is read from the API server.
        """
        if self.cache is not None:
            held = self.cache.lookup(api_version, kind, name, namespace)
            if held is not None:
                return copy.deepcopy(held)
            if self.cache.knows_absent(api_version, kind, name, namespace):
                return None
        resource = await self._resource(api_version, kind)
        dynamic = await self._client()
        found = await self._request(
            "get", lambda: dynamic.get(resource, name=name, namespace=namespace), absent_ok=True
        )
        if found is _ABSENT:
            return None
        result: dict[str, Any] = found.to_dict()
        # Some client versions hand an error back as a Status object instead of raising.
        if result.get("kind") == "Status" and result.get("apiVersion") == "v1":
            if result.get("code") == 404:
                return None
            raise RuntimeError(f"reading {kind} {name}: {result.get('message')}")
        return result

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every object of a kind (in ``namespace``, or cluster-wide; matching
        ``label_selector`` when given), read consistently."""
        resource = await self._resource(api_version, kind)
        dynamic = await self._client()
        found = _checked(
            await self._request(
                "list",
                lambda: dynamic.get(resource, namespace=namespace, label_selector=label_selector),
            ),
            f"listing {kind}",
        )
        items: list[dict[str, Any]] = found.to_dict().get("items", [])
        return items

    async def apply(self, desired: dict[str, Any]) -> bool:
        """Make the live object hold ``desired``; return True if a write was needed."""
        meta = desired["metadata"]
        live = await self.get(
            desired["apiVersion"], desired["kind"], meta["name"], meta.get("namespace")
        )
        if live is not None and contains(live, desired):
            return False
        resource = await self._resource(desired["apiVersion"], desired["kind"])
        dynamic = await self._client()
        answer = await self._request(
            "apply",
            lambda: dynamic.server_side_apply(
                resource,
                body=desired,
                name=meta["name"],
                namespace=meta.get("namespace"),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            ),
        )
        self.writes += 1
        _checked(answer, f"applying {desired['kind']} {meta.get('namespace', '')}/{meta['name']}")
        if self.cache is not None:
            self.cache.observe(answer.to_dict())  # never read back older than written
        return True

    async def create(self, body: dict[str, Any]) -> None:
        """Create ``body`` (an object with ``generateName``, such as an Event)."""
        meta = body["metadata"]
        resource = await self._resource(body["apiVersion"], body["kind"])
        dynamic = await self._client()
        answer = await self._request(
            "create",
            lambda: dynamic.create(resource, body=body, namespace=meta.get("namespace")),
        )
        # Not counted in ``writes``: those are changes to tenants' objects.
        _checked(answer, f"creating {body['kind']} in {meta.get('namespace', '')}")

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        status: Mapping[str, Any],
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> None:
        """Merge ``status`` into the object's status subresource. With ``resource_version``
        the write applies only to that version of the object: one changed since it was read
        raises :class:`KubeConflict` instead of being overwritten with what was read."""
        resource = await self._resource(api_version, kind)
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        await self._merge_patch(resource.subresources["status"], name, namespace, body)

    async def patch_metadata(
        self,
        api_version: str,
        kind: str,
        name: str,
        metadata: Mapping[str, Any],
        namespace: str | None = None,
    ) -> None:
        """Merge ``metadata`` (labels, annotations; a None value removes a key)."""
        resource = await self._resource(api_version, kind)
        await self._merge_patch(resource, name, namespace, {"metadata": dict(metadata)})

    async def _merge_patch(
        self, resource: Any, name: str, namespace: str | None, body: dict[str, Any]
    ) -> None:
        dynamic = await self._client()
        what = f"patching {resource.kind} {namespace or ''}/{name}"
        try:
            answer = await self._request(
                "patch",
                lambda: dynamic.patch(
                    resource,
                    body=body,
                    name=name,
                    namespace=namespace,
                    content_type="application/merge-patch+json",
                ),
            )
        except ConflictError as conflict:
            raise KubeConflict(
                what, {"code": 409, "reason": "Conflict", "message": "changed since it was read"}
            ) from conflict
        self.writes += 1
        _checked(answer, what)

    async def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> bool:
        """Delete an object (foreground); return False when it was already gone."""
        resource = await self._resource(api_version, kind)
        dynamic = await self._client()
        answer = await self._request(
            "delete",
            lambda: dynamic.delete(
                resource,
                name=name,
                namespace=namespace,
                body={"propagationPolicy": "Foreground"},
            ),
            absent_ok=True,
        )
        if answer is _ABSENT:
            return False
        refused = _refusal(answer)
        if refused is not None and refused.get("code") == 404:
            return False
        self.writes += 1
        _checked(answer, f"deleting {kind} {namespace or ''}/{name}")
        return True
