"""The few API calls a node agent makes, as plain JSON over kubernetes_asyncio's connection.

kubernetes_asyncio loads the kubeconfig and holds the TLS connection pool, as for the
operator (:mod:`odoo_operator.backends.kube`); requests go through ``call_api`` with
``_preload_content=False`` and answers are read as dicts. A node agent handles whole Pod
objects and writes hand-made status patches: typed models would only add a conversion
both ways, and would drop fields a newer API server sends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config

JsonObject = dict[str, Any]
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class ApiError(RuntimeError):
    """The API server answered with an error status; ``code`` is the HTTP status."""

    def __init__(self, method: str, path: str, code: int, body: str) -> None:
        try:
            message = json.loads(body).get("message", body)
        except (json.JSONDecodeError, AttributeError):
            message = body
        super().__init__(f"{method} {path}: {code} {message}")
        self.code = code


class KubeApi:
    """JSON requests and watches against one API server."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api

    @classmethod
    async def connect(cls, kubeconfig: str) -> KubeApi:
        """A client for the cluster and credentials of ``kubeconfig``."""
        return cls(await config.new_client_from_config(config_file=kubeconfig))

    @property
    def server(self) -> str:
        """The API server's URL."""
        return str(self._api.configuration.host)

    async def close(self) -> None:
        """Release the connection pool."""
        await self._api.close()

    async def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Any,
        content_type: str,
        timeout: aiohttp.ClientTimeout | float,
    ) -> Any:
        return await self._api.call_api(
            path,
            method,
            query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        absent_ok: bool = False,
        timeout: float = 30.0,
    ) -> JsonObject | None:
        """Send one request; return the decoded answer, or None for a 404 when
        ``absent_ok``. Any other error status raises :class:`ApiError`."""
        response = await self._send(method, path, query, body, content_type, timeout)
        try:
            text = (await response.read()).decode()
            if response.status == 404 and absent_ok:
                return None
            if not 200 <= response.status < 300:
                raise ApiError(method, path, response.status, text)
            answer: JsonObject = json.loads(text) if text else {}
            return answer
        finally:
            response.release()

    async def get(self, path: str, *, absent_ok: bool = False) -> JsonObject | None:
        """GET ``path``."""
        return await self.request("GET", path, absent_ok=absent_ok)

    async def watch(
        self, path: str, query: Mapping[str, str], timeout_seconds: int = 300
    ) -> AsyncIterator[JsonObject]:
        """The events of one watch request, until the server ends it after
        ``timeout_seconds`` (or the connection breaks)."""
        params = {**query, "watch": "true", "timeoutSeconds": str(timeout_seconds)}
        read_timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)
        response = await self._send("GET", path, params, None, "application/json", read_timeout)
        try:
            if response.status != 200:
                raise ApiError("WATCH", path, response.status, (await response.read()).decode())
            pending = b""
            # Lines are split by hand: aiohttp's readline refuses lines over 64 KiB, and a
            # Pod with large annotations may be longer.
            async for chunk in response.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            response.release()
