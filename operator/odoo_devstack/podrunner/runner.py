"""The node agent: register the node, watch the pods bound to it, run them, clean up.

The runner is one asyncio program (kubernetes_asyncio for the API, asyncio subprocesses
for containers and probes): a pod is a handful of tasks, not threads, and a watch, a
heartbeat, probes every second and relays of many connections share one loop without
locking. It runs as a process of its own (:mod:`.process` starts it), so that pytest's
event loops, threads and forks never mix with it, and a crash of either side is seen by
the other: the kernel kills the runner when the test run dies (parent-death signal), and
every container when the runner dies.

State folder layout (``--state-dir``)::

    ready.json                      written once the node is registered and watched
    stopped.json                    written on a clean stop: what the final sweep found
    host-ports                      ports to relay into pods, one a line (appended by tests)
    host-ports.applied              the ports relayed now
    pods/<ns>/<pod>/<uid>/logs/<container>.log   stdout and stderr of every run
    pods/<ns>/<pod>/<uid>/volumes/<volume>/      while the pod exists
    claims/<ns>/<claim>-<uid>/                   persistentVolumeClaim folders
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .containers import Backoff
from .images import ImageRuntime, default_table, load_plugins
from .kubeapi import ApiError, JsonObject, KubeApi
from .network import PodNetwork
from .node import NodeAgent, NodeSpec
from .pod import NodeContext, PodWorker

log = logging.getLogger(__name__)

READY_FILE = "ready.json"
STOPPED_FILE = "stopped.json"
HOST_PORTS_FILE = "host-ports"
HOST_PORTS_APPLIED_FILE = "host-ports.applied"
_PORTS_POLL_SECONDS = 0.5
_WATCH_RETRY_SECONDS = 1.0


@dataclass
class RunnerConfig:
    """Everything the runner is told on its command line."""

    kubeconfig: Path
    node_name: str
    state_dir: Path
    slot: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    tainted: bool = True
    images: list[tuple[str, ImageRuntime]] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)
    host_ports: set[int] = field(default_factory=set)
    cpu: str = "16"
    memory: str = "64Gi"
    pods: str = "110"
    backoff: Backoff = field(default_factory=Backoff)
    shutdown_grace: float = 2.0


class _RelistError(Exception):
    """The watch cannot continue from its resource version: list again."""


def _loopback_server(url: str) -> tuple[str, int] | None:
    """The API server's address when it listens on loopback (relayed into pods), else None."""
    parts = urlsplit(url)
    try:
        if parts.hostname and ipaddress.ip_address(parts.hostname).is_loopback:
            return parts.hostname, parts.port or 443
    except ValueError:
        return None
    return None


class PodRunner:
    """Run the real node until ``stop`` is set; see the module documentation."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.workers: dict[str, PodWorker] = {}
        self._host_ports: set[int] = set(config.host_ports)
        self._ports_mtime = 0.0
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Register, serve pods until ``stop``, then stop every pod and remove the network."""
        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        (config.state_dir / STOPPED_FILE).unlink(missing_ok=True)
        table = default_table()
        for image, runtime in config.images:
            table.register(image, runtime)
        load_plugins(table, config.plugins)
        api = await KubeApi.connect(str(config.kubeconfig))
        network = PodNetwork(config.slot)
        try:
            network.setup()
            if network.stale:
                log.warning("removed what a dead runner left: %s", ", ".join(network.stale))
            spec = NodeSpec(
                name=config.node_name,
                address=str(network.gateway),
                pod_cidr=str(network.subnet),
                labels=config.labels,
                tainted=config.tainted,
                cpu=config.cpu,
                memory=config.memory,
                pods=config.pods,
            )
            agent = NodeAgent(api, spec)
            await agent.register()
            self.node = NodeContext(
                api=api,
                network=network,
                table=table,
                state_dir=config.state_dir,
                node_name=config.node_name,
                allocatable=spec.allocatable,
                backoff=config.backoff,
                host_ports=lambda: set(self._host_ports),
                kubernetes_service=_loopback_server(api.server),
            )
            self._write_applied_ports()
            watching = asyncio.Event()
            self._tasks = [
                asyncio.create_task(agent.heartbeat(), name="heartbeat"),
                asyncio.create_task(self._watch_pods(watching), name="watch"),
                asyncio.create_task(self._poll_host_ports(), name="host ports"),
            ]
            await watching.wait()
            (config.state_dir / READY_FILE).write_text(
                json.dumps(
                    {
                        "node": config.node_name,
                        "slot": network.slot,
                        "subnet": str(network.subnet),
                        "gateway": str(network.gateway),
                        "netnsPrefix": network.prefix,
                        "stale": network.stale,
                    }
                )
            )
            log.info(
                "node %s ready: pods on %s, host at %s",
                config.node_name,
                network.subnet,
                network.gateway,
            )
            await stop.wait()
            with contextlib.suppress(ApiError, OSError, aiohttp.ClientError):
                await agent.report(False, "PodRunnerStopped", "the pod runner has stopped")
        finally:
            await self._shut_down(network)
            await api.close()

    async def _shut_down(self, network: PodNetwork) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(
            *(w.abort(self.config.shutdown_grace) for w in list(self.workers.values())),
            return_exceptions=True,
        )
        leftovers = network.teardown()
        if leftovers:
            log.warning("the final sweep still found: %s", ", ".join(leftovers))
        (self.config.state_dir / STOPPED_FILE).write_text(json.dumps({"leftovers": leftovers}))
        log.info("stopped")

    # -- pods ------------------------------------------------------------------------------

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_pod(self, pod: JsonObject) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        if meta.get("deletionTimestamp"):
            # Bound here before this runner started, or already finished: nothing runs, so
            # only the object is left to remove.
            self._spawn(self._finalize(pod), f"finalize {meta['name']}")
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        worker = PodWorker(self.node, pod)
        self.workers[uid] = worker
        worker.start()
        self._spawn(self._forget_when_done(worker), f"forget {meta['name']}")
        log.info("pod %s/%s: started", meta["namespace"], meta["name"])

    async def _finalize(self, pod: JsonObject) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(ApiError):
            await self.node.api.request(
                "DELETE",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
                absent_ok=True,
            )

    async def _forget_when_done(self, worker: PodWorker) -> None:
        await worker.done.wait()
        self.workers.pop(worker.uid, None)

    def _on_gone(self, uids: Iterable[str]) -> None:
        for uid in uids:
            worker = self.workers.get(uid)
            if worker is not None and not worker.finalizing:
                log.info("pod %s: removed from the API, stopping it", worker.key)
                self._spawn(worker.abort(), f"abort {worker.key}")

    async def _watch_pods(self, watching: asyncio.Event) -> None:
        path = "/api/v1/pods"
        selector = {"fieldSelector": f"spec.nodeName={self.config.node_name}"}
        while True:
            try:
                listing = await self.node.api.request("GET", path, query=selector)
                assert listing is not None
                version = listing["metadata"]["resourceVersion"]
                listed = {pod["metadata"]["uid"] for pod in listing.get("items") or []}
                self._on_gone(uid for uid in list(self.workers) if uid not in listed)
                for pod in listing.get("items") or []:
                    self._on_pod(pod)
                watching.set()
                while True:
                    query = {**selector, "resourceVersion": version, "allowWatchBookmarks": "true"}
                    async for event in self.node.api.watch(path, query):
                        version = self._on_event(event, version)
            except _RelistError:
                continue
            except (ApiError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("pod watch interrupted (%s); listing again", exc)
                await asyncio.sleep(_WATCH_RETRY_SECONDS)

    def _on_event(self, event: JsonObject, version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _RelistError
            raise ApiError("WATCH", "/api/v1/pods", int(obj.get("code") or 0), json.dumps(obj))
        new_version = str(obj.get("metadata", {}).get("resourceVersion") or version)
        if kind == "DELETED":
            self._on_gone([obj["metadata"]["uid"]])
        elif kind in ("ADDED", "MODIFIED"):
            self._on_pod(obj)
        return new_version

    # -- host ports --------------------------------------------------------------------------

    def _write_applied_ports(self) -> None:
        path = self.config.state_dir / HOST_PORTS_APPLIED_FILE
        path.write_text("".join(f"{port}\n" for port in sorted(self._host_ports)))

    async def _poll_host_ports(self) -> None:
        path = self.config.state_dir / HOST_PORTS_FILE
        while True:
            await asyncio.sleep(_PORTS_POLL_SECONDS)
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if mtime == self._ports_mtime:
                continue
            self._ports_mtime = mtime
            ports = {int(line) for line in path.read_text().split() if line.strip().isdigit()}
            if ports <= self._host_ports:
                continue
            self._host_ports |= ports
            for worker in list(self.workers.values()):
                await worker.sync_relays()
            self._write_applied_ports()
            log.info("relaying host ports %s into pods", sorted(self._host_ports))
