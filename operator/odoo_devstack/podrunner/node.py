"""The Node object of the real node and the heartbeat that keeps it Ready.

The node carries the label ``odoo.tenantops.io/node-kind=real`` and, unless told otherwise,
the taint ``odoo.tenantops.io/node-kind=real:NoSchedule``: only pods that choose it (a
``nodeSelector`` on the label *and* a toleration of the taint) land here, so the pods of
the other tests keep going to the KWOK nodes. It has no ``kwok.x-k8s.io/node`` annotation,
so KWOK leaves it alone.

The node-lifecycle controller of kube-controller-manager taints a node whose heartbeat
stops (``node.kubernetes.io/unreachable``) and then evicts its pods. The heartbeat is what
a kubelet sends: the node's Lease in ``kube-node-lease`` renewed every 10 seconds, and the
status (with its Ready condition) refreshed every minute.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from odoo_devstack.binaries import KUBERNETES_VERSION

from .kubeapi import MERGE, STRATEGIC_MERGE, ApiError, KubeApi

log = logging.getLogger(__name__)

NODE_KIND_LABEL = "odoo.tenantops.io/node-kind"
NODE_KIND = "real"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
RENEW_SECONDS = 10.0
STATUS_SECONDS = 60.0


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class NodeSpec:
    """What the node says about itself."""

    name: str
    address: str
    pod_cidr: str
    labels: Mapping[str, str] = field(default_factory=dict)
    tainted: bool = True
    cpu: str = "16"
    memory: str = "64Gi"
    pods: str = "110"

    @property
    def allocatable(self) -> dict[str, str]:
        """Capacity and allocatable (the same here: nothing is reserved)."""
        return {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}

    def manifest(self) -> dict[str, Any]:
        """The Node object to create."""
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self._labels()},
            "spec": {
                "podCIDR": self.pod_cidr,
                "podCIDRs": [self.pod_cidr],
                "taints": self._taints(),
            },
        }

    def _labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            NODE_KIND_LABEL: NODE_KIND,
            **self.labels,
        }

    def _taints(self) -> list[dict[str, str]]:
        if not self.tainted:
            return []
        return [{"key": NODE_KIND_LABEL, "value": NODE_KIND, "effect": "NoSchedule"}]

    def status(self, ready: bool, reason: str, message: str, since: str) -> dict[str, Any]:
        """The node's status, with a fresh heartbeat time on every condition; ``since`` is
        when the conditions took their values."""
        beat = _time()

        def condition(kind: str, status: str, why: str, text: str) -> dict[str, str]:
            return {
                "type": kind,
                "status": status,
                "reason": why,
                "message": text,
                "lastHeartbeatTime": beat,
                "lastTransitionTime": since,
            }

        return {
            "capacity": self.allocatable,
            "allocatable": self.allocatable,
            "addresses": [
                {"type": "InternalIP", "address": self.address},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "kubeletVersion": f"v{KUBERNETES_VERSION}",
                "containerRuntimeVersion": "podrunner://local-processes",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "odoo-devstack pod runner",
                "kernelVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
                condition("Ready", "True" if ready else "False", reason, message),
            ],
        }


class NodeAgent:
    """Register the node and keep its heartbeat going."""

    def __init__(self, api: KubeApi, spec: NodeSpec) -> None:
        self._api = api
        self.spec = spec
        self._node_path = f"/api/v1/nodes/{spec.name}"
        self._since = _time()
        self._ready: bool | None = None
        self._lease_path = (
            f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{spec.name}"
        )

    async def register(self) -> None:
        """Create the node (or take over one of the same name), Ready, with its Lease."""
        manifest = self.spec.manifest()
        try:
            node = await self._api.request("POST", "/api/v1/nodes", body=manifest)
        except ApiError as exc:
            if exc.code != 409:
                raise
            # A node of this name from an earlier run against the same cluster: make it ours.
            node = await self._api.request(
                "PATCH",
                self._node_path,
                body={
                    "metadata": {"labels": manifest["metadata"]["labels"]},
                    "spec": {"taints": manifest["spec"]["taints"]},
                },
                content_type=STRATEGIC_MERGE,
            )
        assert node is not None
        await self.report(ready=True)
        await self._renew_lease(node["metadata"]["uid"])

    async def report(self, ready: bool, reason: str = "KubeletReady", message: str = "") -> None:
        """Send the node's status with a fresh heartbeat."""
        if ready != self._ready:
            self._ready, self._since = ready, _time()
        text = message or "the pod runner is running"
        await self._api.request(
            "PATCH",
            f"{self._node_path}/status",
            body={"status": self.spec.status(ready, reason, text, self._since)},
            content_type=STRATEGIC_MERGE,
        )

    async def _renew_lease(self, node_uid: str | None = None) -> None:
        renewed = {"spec": {"holderIdentity": self.spec.name, "renewTime": _micro_time()}}
        answer = await self._api.request(
            "PATCH", self._lease_path, body=renewed, content_type=MERGE, absent_ok=True
        )
        if answer is not None:
            return
        if node_uid is None:
            node = await self._api.get(self._node_path)
            assert node is not None
            node_uid = node["metadata"]["uid"]
        await self._api.request(
            "POST",
            f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases",
            body={
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.spec.name,
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": self.spec.name,
                            "uid": node_uid,
                        }
                    ],
                },
                "spec": {
                    "holderIdentity": self.spec.name,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": _micro_time(),
                },
            },
        )

    async def heartbeat(self) -> None:
        """Renew the Lease and refresh the status forever (until cancelled)."""
        since_status = 0.0
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self._renew_lease()
                since_status += RENEW_SECONDS
                if since_status >= STATUS_SECONDS:
                    await self.report(ready=True)
                    since_status = 0.0
            except (ApiError, OSError) as exc:
                log.warning("node heartbeat failed: %s", exc)


def placement() -> dict[str, Any]:
    """The pod spec fields that send a pod to a real node: the label and the toleration."""
    return {
        "nodeSelector": {NODE_KIND_LABEL: NODE_KIND},
        "tolerations": [
            {
                "key": NODE_KIND_LABEL,
                "operator": "Equal",
                "value": NODE_KIND,
                "effect": "NoSchedule",
            }
        ],
    }
