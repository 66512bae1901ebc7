"""A real Kubernetes control plane on loopback, with KWOK-simulated nodes.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the KWOK
controller run as child processes (see :mod:`.processes`) on free loopback
ports, each with its own folder under one work directory. The apiserver runs
with RBAC, ServiceAccount token signing and its default admission plugins
(PodSecurity and ResourceQuota among them), so tests see what a real cluster
would enforce. KWOK plays the kubelets: scheduled Pods go Running, Job Pods go
Succeeded.
"""

from __future__ import annotations

import json
import shutil
import ssl
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from . import binaries
from .pki import CertPair, LocalPKI
from .ports import free_port
from .processes import ManagedProcess

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
STORAGE_CLASS = "devcluster-local"
# The class has no provisioner, so nothing reclaims a released volume: every filestore
# claim ever bound uses one up for the life of the cluster. A full test run creates well
# over a hundred tenants (clones included); a claim left Pending keeps the tenant's init
# Job unscheduled, which looks like a hung tenant rather than an exhausted pool.
PRE_CREATED_VOLUMES = 400


@dataclass(frozen=True)
class FakeNode:
    """A node simulated by KWOK: its name, labels, taints and capacity."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    cpu: str = "32"
    memory: str = "256Gi"
    pods: str = "250"

    def manifest(self) -> dict[str, Any]:
        """The Node object KWOK will take over."""
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                    **self.labels,
                },
            },
            "spec": {"taints": list(self.taints)},
            "status": {"capacity": capacity, "allocatable": capacity},
        }


OPERATOR_USER = "odoo-operator"
# Every request that changes state, with who sent it; reads are left out to keep the log small.
# Tests count the operator's writes from it (an unchanged tenant must cost none).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "verbs": ["get", "list", "watch"]},
        {"level": "Metadata"},
    ],
}


DEFAULT_NODES = (FakeNode("kwok-node-0"), FakeNode("kwok-node-1"))


def _write_kubeconfig(path: Path, server: str, ca: Path, user: CertPair, name: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "devcluster", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": name,
                "user": {"client-certificate": str(user.cert), "client-key": str(user.key)},
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": "devcluster", "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _https_ok(url: str, context: ssl.SSLContext) -> bool:
    with urllib.request.urlopen(url, context=context, timeout=2) as response:
        return bool(response.status == 200)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def _log(message: str) -> None:
    print(f"[devcluster] {message}", file=sys.stderr, flush=True)


class ControlPlane:
    """Start, use and stop a local control plane. Use as a context manager."""

    def __init__(
        self,
        workdir: Path | None = None,
        nodes: tuple[FakeNode, ...] = DEFAULT_NODES,
        start_timeout: float = 90.0,
        volumes: int = PRE_CREATED_VOLUMES,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="odoo-devcluster-"))
        self.nodes = nodes
        # PersistentVolumes created at start-up: the most filestore claims ever bound.
        self.volumes = volumes
        self.start_timeout = start_timeout
        self.processes: list[ManagedProcess] = []
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        # The operator gets an identity of its own, so the audit log tells its requests apart.
        self.operator_kubeconfig = self.workdir / "operator.kubeconfig"
        self.audit_log = self.workdir / "kube-apiserver" / "audit.log"
        self.server = ""
        self.startup_seconds = 0.0
        self._admin_tls: ssl.SSLContext | None = None

    # -- lifecycle -------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start every component and the fake nodes; return once Pods can run."""
        paths = binaries.ensure_all()
        started = time.monotonic()
        pki = LocalPKI(self.workdir / "pki")
        self._start_etcd(paths["etcd"])
        self._start_apiserver(paths["kube-apiserver"], pki)
        components = [
            self._start_controller_manager(paths["kube-controller-manager"], pki),
            self._start_scheduler(paths["kube-scheduler"], pki),
        ]
        kwok = self._start_kwok(paths["kwok"], binaries.ensure_kwok_stages())
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # their self-signed serving certs are not ours
        for process, port in components:
            url = f"https://127.0.0.1:{port}/healthz"
            process.wait_until(partial(_https_ok, url, insecure), self.start_timeout, "healthy")
        self._create_nodes()
        self._create_storage()
        self._install_third_party_crds()
        kwok.wait_until(self._nodes_ready, self.start_timeout, "marking the fake nodes Ready")
        self.startup_seconds = time.monotonic() - started
        _log(f"control plane ready in {self.startup_seconds:.1f}s at {self.server}")
        return self

    def stop(self) -> None:
        """Stop every component in reverse order; remove a work dir we created."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- components ------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        directory = self.workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        process = ManagedProcess(name, argv, directory / f"{name}.log", cwd=directory).start()
        self.processes.append(process)
        return process

    def _start_etcd(self, binary: Path) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        etcd = self._spawn(
            "etcd",
            [
                str(binary),
                "--name=devcluster",
                f"--data-dir={self.workdir / 'etcd' / 'data'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=devcluster=http://127.0.0.1:{peer}",
                # Test data is disposable: skipping fsync keeps a 2-core machine responsive.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        etcd.wait_until(lambda: _http_ok(f"{self.etcd_url}/health"), self.start_timeout, "healthy")

    def _start_apiserver(self, binary: Path, pki: LocalPKI) -> None:
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        serving = pki.issue(
            "apiserver",
            "kube-apiserver",
            server_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            server_ips=("127.0.0.1", "10.96.0.1"),
        )
        self.sa_keys = pki.service_account_keys()
        self.ca = pki.ca
        admin = pki.issue("admin", "devcluster-admin", organization="system:masters")
        _write_kubeconfig(self.kubeconfig, self.server, pki.ca.cert, admin, "devcluster-admin")
        operator = pki.issue("operator", OPERATOR_USER, organization="system:masters")
        _write_kubeconfig(
            self.operator_kubeconfig, self.server, pki.ca.cert, operator, OPERATOR_USER
        )
        audit_policy = self.workdir / "audit-policy.yaml"
        audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(binary),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.sa_keys.cert}",
                f"--service-account-signing-key-file={self.sa_keys.key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                # No kube-proxy: webhook Service references go to the endpoints, not the ClusterIP.
                "--enable-aggregator-routing=true",
                # Privileged pods are allowed by the server, so PodSecurity is what refuses them.
                "--allow-privileged=true",
                "--profiling=false",
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-maxsize=200",
                "--audit-log-maxbackup=1",
                f"--cert-dir={self.workdir / 'kube-apiserver'}",
                "--v=1",
            ],
        )
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        context.load_cert_chain(str(admin.cert), str(admin.key))
        self._admin_tls = context
        apiserver.wait_until(
            lambda: _https_ok(f"{self.server}/readyz", context), self.start_timeout, "ready"
        )

    def _component_kubeconfig(self, pki: LocalPKI, name: str, user: str) -> Path:
        cert = pki.issue(name, user)
        path = self.workdir / f"{name}.kubeconfig"
        _write_kubeconfig(path, self.server, pki.ca.cert, cert, user)
        return path

    def _start_controller_manager(self, binary: Path, pki: LocalPKI) -> tuple[ManagedProcess, int]:
        port = free_port()
        kubeconfig = self._component_kubeconfig(
            pki, "kube-controller-manager", "system:kube-controller-manager"
        )
        process = self._spawn(
            "kube-controller-manager",
            [
                str(binary),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'kube-controller-manager'}",
                f"--service-account-private-key-file={self.sa_keys.key}",
                f"--root-ca-file={pki.ca.cert}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        return process, port

    def _start_scheduler(self, binary: Path, pki: LocalPKI) -> tuple[ManagedProcess, int]:
        port = free_port()
        kubeconfig = self._component_kubeconfig(pki, "kube-scheduler", "system:kube-scheduler")
        process = self._spawn(
            "kube-scheduler",
            [
                str(binary),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'kube-scheduler'}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        return process, port

    def _start_kwok(self, binary: Path, stages: Path) -> ManagedProcess:
        return self._spawn(
            "kwok",
            [
                str(binary),
                f"--config={stages}",
                "--node-lease-duration-seconds=40",
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                f"--cidr={POD_CIDR}",
                "--node-ip=127.0.0.1",
                f"--server-address=127.0.0.1:{free_port()}",
            ],
        )

    # -- API helpers: a few plain HTTPS calls, so start-up needs no client library --

    def api(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        accept: str = "application/json",
    ) -> Any:
        """Call the apiserver as the admin; return the decoded JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.server}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": accept},
        )
        with urllib.request.urlopen(request, context=self._admin_tls, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def text(self, path: str) -> str:
        """GET ``path`` as the admin (e.g. ``/metrics``); the answer as text."""
        request = urllib.request.Request(f"{self.server}{path}", headers={"Accept": "text/plain"})
        with urllib.request.urlopen(request, context=self._admin_tls, timeout=30) as response:
            return str(response.read().decode())

    def _create_nodes(self) -> None:
        for node in self.nodes:
            self.api("POST", "/api/v1/nodes", node.manifest())

    def _create_storage(self) -> None:
        """A default StorageClass with pre-created volumes: kube-controller-manager binds
        claims to them, as a CSI provisioner would create them on AKS."""
        self.api(
            "POST",
            "/apis/storage.k8s.io/v1/storageclasses",
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": STORAGE_CLASS,
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "Immediate",
                "allowVolumeExpansion": True,
            },
        )
        for index in range(self.volumes):
            self.api(
                "POST",
                "/api/v1/persistentvolumes",
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": f"devcluster-volume-{index:03d}"},
                    "spec": {
                        "storageClassName": STORAGE_CLASS,
                        "capacity": {"storage": "100Gi"},
                        "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                        "persistentVolumeReclaimPolicy": "Delete",
                        "hostPath": {"path": str(self.workdir / "volumes" / f"{index:03d}")},
                    },
                },
            )

    def _install_third_party_crds(self) -> None:
        """Traefik's CRDs and its namespace, as on a cluster that runs Traefik."""
        for document in yaml.safe_load_all(binaries.ensure_traefik_crds().read_text()):
            if document:
                self.api(
                    "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", document
                )
        self.api(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "traefik"}},
        )

    def _nodes_ready(self) -> bool:
        listing = self.api("GET", "/api/v1/nodes")
        ready = {
            item["metadata"]["name"]
            for item in listing["items"]
            for condition in item.get("status", {}).get("conditions", [])
            if condition["type"] == "Ready" and condition["status"] == "True"
        }
        return all(node.name in ready for node in self.nodes)
