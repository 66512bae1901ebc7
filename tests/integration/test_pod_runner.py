"""The real node runs its pods: processes, network, volumes, probes, restarts, deletion.

Every test drives the pod runner through the real API server of the local control plane:
the scheduler binds the pods (by the node-kind label and the toleration of the node's
taint), kube-controller-manager runs the Job and Deployment controllers, and the runner
plays the kubelet. What a pod's process saw is read from its log file, or from its own
answers over the pod network.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from odoo_devstack.controlplane import ControlPlane
from odoo_devstack.podrunner.images import (
    OPERATOR_IMAGE,
    SYSTEM_IMAGE,
    ImageRuntime,
    ImageUnavailableError,
    RuntimeTable,
)
from odoo_devstack.podrunner.network import REAL_POD_CIDR
from odoo_devstack.podrunner.node import NODE_KIND_LABEL, placement
from odoo_devstack.podrunner.podspec import expand
from odoo_devstack.podrunner.process import RealNodeProcess
from odoo_operator.model.config import OperatorConfig, image_repository

WAIT_SECONDS = 60.0
Json = dict[str, Any]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll until ``condition`` returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


class Cluster:
    """Plain JSON calls to the local API server as its admin."""

    def __init__(self, control_plane: ControlPlane) -> None:
        self._control_plane = control_plane

    def create(self, path: str, body: Json) -> Json:
        """POST ``body`` to a collection path."""
        created: Json = self._control_plane.api("POST", path, body)
        return created

    def get(self, path: str) -> Json | None:
        """The object at ``path``, or None once it is gone."""
        try:
            found: Json = self._control_plane.api("GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return found

    def delete(self, path: str) -> None:
        """DELETE ``path`` with the object's own grace period."""
        self._control_plane.api("DELETE", path)

    def items(self, path: str, selector: str) -> list[Json]:
        """The objects of a collection matching a label selector."""
        query = urllib.parse.urlencode({"labelSelector": selector})
        listing: Json = self._control_plane.api("GET", f"{path}?{query}")
        return list(listing["items"])


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane | None) -> Cluster:
    """The local control plane's API (the real node needs that one, see its fixture)."""
    if control_plane is None:
        pytest.fail("the real node only joins the local control plane")
    return Cluster(control_plane)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace (its default ServiceAccount ready), deleted afterwards."""
    name = f"podrunner-{uuid.uuid4().hex[:8]}"
    cluster.create("/api/v1/namespaces", {"metadata": {"name": name}})
    wait_for(
        lambda: cluster.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        "the default ServiceAccount",
    )
    yield name
    cluster.delete(f"/api/v1/namespaces/{name}")


def pods_path(namespace: str, name: str = "") -> str:
    """The API path of a namespace's pods, or of one of them."""
    return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")


def condition(pod: Json | None, kind: str) -> str | None:
    """The status of a pod's condition, or None."""
    for entry in ((pod or {}).get("status") or {}).get("conditions") or []:
        if entry["type"] == kind:
            return str(entry["status"])
    return None


def container_status(pod: Json | None, name: str) -> Json:
    """A container's status entry, or an empty dict."""
    for entry in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if entry["name"] == name:
            return dict(entry)
    return {}


def container(name: str, command: list[str], **fields: Any) -> Json:
    """A container of the system image (this machine's python3, sh...)."""
    return {"name": name, "image": SYSTEM_IMAGE, "command": command, **fields}


def pod_spec(*containers: Json, **fields: Any) -> Json:
    """A pod spec bound for the real node."""
    return {**placement(), "containers": list(containers), **fields}


def create_pod(cluster: Cluster, namespace: str, name: str, spec: Json) -> None:
    """Create a pod from a spec."""
    cluster.create(
        pods_path(namespace),
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec},
    )


def finished(cluster: Cluster, namespace: str, name: str) -> Json:
    """The pod once it has reached Succeeded or Failed."""
    pod: Json = wait_for(
        lambda: (
            (p := cluster.get(pods_path(namespace, name)))
            and p["status"].get("phase") in ("Succeeded", "Failed")
            and p
        ),
        f"pod {name} to finish",
    )
    return pod


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """Status and body of a plain GET (to a pod address only)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - pod address
        return int(response.status), response.read().decode()


def python(script: str) -> list[str]:
    """A command running ``script`` with this machine's python3."""
    return ["python3", "-u", "-c", script]


# -- the tests -------------------------------------------------------------------------------


def test_the_runtime_table_prefers_an_exact_tag_then_the_longest_repository() -> None:
    table = RuntimeTable()
    table.register("registry.example/team", ImageRuntime("team"))
    table.register("registry.example/team/app", ImageRuntime("app"))
    table.register("odoo:17.0", ImageRuntime("odoo 17"))
    assert table.resolve("registry.example/team/app:3").description == "app"
    assert table.resolve("registry.example/team/other@sha256:ab").description == "team"
    # A bare name is Docker Hub's library image, as container runtimes read it.
    assert table.resolve("docker.io/library/odoo:17.0").description == "odoo 17"
    with pytest.raises(ImageUnavailableError, match=r"odoo:18\.0.*registered tags: 17\.0"):
        table.resolve("odoo:18.0")
    with pytest.raises(ImageUnavailableError, match=re.escape("registry.example/teams/app:1")):
        table.resolve("registry.example/teams/app:1")


def test_commands_expand_defined_variables_and_keep_the_rest_as_written() -> None:
    env = {"NAME": "odoo", "EMPTY": ""}
    assert expand("$(NAME)-$(EMPTY)x $(UNSET) $$(NAME) $$$$", env) == "odoo-x $(UNSET) $(NAME) $$"


def test_a_pod_becomes_ready_through_its_http_readiness_probe_and_answers_on_its_ip(
    cluster: Cluster, namespace: str, real_node_runner: RealNodeProcess
) -> None:
    # The server answers 404 for /ready.txt until the file exists in its emptyDir: the pod
    # must be Running and not Ready first, and become Ready only through the probe.
    server = container(
        "web",
        # All addresses of the pod's own network namespace, not of the host.
        ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"],  # noqa: S104
        workingDir="/srv/www",
        ports=[{"name": "http", "containerPort": 8080}],
        volumeMounts=[{"name": "www", "mountPath": "/srv/www"}],
        readinessProbe={
            "httpGet": {"path": "/ready.txt", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
    )
    create_pod(
        cluster, namespace, "web", pod_spec(server, volumes=[{"name": "www", "emptyDir": {}}])
    )

    running = wait_for(
        lambda: (
            (p := cluster.get(pods_path(namespace, "web")))
            and container_status(p, "web").get("state", {}).get("running")
            and p
        ),
        "the web container to run",
    )
    ip = running["status"]["podIP"]
    assert ipaddress.ip_address(ip) in REAL_POD_CIDR
    assert running["status"]["hostIP"] == real_node_runner.gateway
    assert running["spec"]["nodeName"] == real_node_runner.node_name
    wait_for(lambda: _answers(f"http://{ip}:8080/"), "the server to listen on the pod's IP")
    time.sleep(2.5)  # several probe periods
    assert condition(cluster.get(pods_path(namespace, "web")), "Ready") == "False"

    www = real_node_runner.pod_dir(namespace, "web") / "volumes" / "www"
    (www / "ready.txt").write_text("ready\n")
    ready = wait_for(
        lambda: condition(p := cluster.get(pods_path(namespace, "web")), "Ready") == "True" and p,
        "the readiness probe to make the pod Ready",
    )
    assert ready["status"]["phase"] == "Running"
    assert container_status(ready, "web")["ready"] is True
    assert {c["type"] for c in ready["status"]["conditions"]} >= {
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "Ready",
    }
    assert http_get(f"http://{ip}:8080/ready.txt") == (200, "ready\n")


def _answers(url: str) -> bool:
    try:
        http_get(url)
    except OSError:
        return False
    return True


def test_the_real_node_is_ready_chosen_by_label_and_taint_and_renews_its_lease(
    cluster: Cluster, real_node: str
) -> None:
    node = cluster.get(f"/api/v1/nodes/{real_node}")
    assert node is not None
    assert condition(node, "Ready") == "True"
    assert node["metadata"]["labels"][NODE_KIND_LABEL] == "real"
    assert "kwok.x-k8s.io/node" not in (node["metadata"].get("annotations") or {})
    # Only the node's own taint: the node-lifecycle controller has not marked it unreachable.
    assert node["spec"]["taints"] == [
        {"key": NODE_KIND_LABEL, "value": "real", "effect": "NoSchedule"}
    ]
    assert set(node["status"]["allocatable"]) >= {"cpu", "memory", "pods"}
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{real_node}"
    first = (cluster.get(lease_path) or {})["spec"]["renewTime"]
    wait_for(
        lambda: (cluster.get(lease_path) or {})["spec"]["renewTime"] != first,
        "the node to renew its Lease",
        timeout=15,
    )


def test_init_containers_run_to_completion_in_order_before_the_containers(
    cluster: Cluster, namespace: str, real_node_runner: RealNodeProcess
) -> None:
    shared = {"name": "work", "mountPath": "/var/lib/podrunner-init"}

    def step(name: str, text: str) -> Json:
        command = ["sh", "-c", f"echo {text} >> /var/lib/podrunner-init/steps"]
        return container(name, command, volumeMounts=[shared])

    reader = container("main", ["cat", "/var/lib/podrunner-init/steps"], volumeMounts=[shared])
    spec = pod_spec(
        reader,
        initContainers=[step("first", "one"), step("second", "two")],
        restartPolicy="Never",
        volumes=[{"name": "work", "emptyDir": {}}],
    )
    create_pod(cluster, namespace, "ordered", spec)
    pod = finished(cluster, namespace, "ordered")
    assert pod["status"]["phase"] == "Succeeded"
    assert condition(pod, "Initialized") == "True"
    inits = pod["status"]["initContainerStatuses"]
    assert [(s["name"], s["state"]["terminated"]["reason"]) for s in inits] == [
        ("first", "Completed"),
        ("second", "Completed"),
    ]
    assert real_node_runner.container_log(namespace, "ordered", "main") == "one\ntwo\n"


def _job(name: str, *containers: Json) -> Json:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": pod_spec(*containers, restartPolicy="Never")},
        },
    }


def _jobs_path(namespace: str) -> str:
    return f"/apis/batch/v1/namespaces/{namespace}/jobs"


def _job_condition(cluster: Cluster, namespace: str, name: str) -> str | None:
    job = cluster.get(f"{_jobs_path(namespace)}/{name}") or {}
    for entry in (job.get("status") or {}).get("conditions") or []:
        if entry["type"] in ("Complete", "Failed") and entry["status"] == "True":
            return str(entry["type"])
    return None


def _job_pod(cluster: Cluster, namespace: str, job: str) -> Json:
    pods = cluster.items(pods_path(namespace), f"job-name={job}")
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def test_a_job_whose_pod_exits_3_fails_with_exit_code_3(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    job = _job("fails", container("main", python("print('failing'); raise SystemExit(3)")))
    cluster.create(_jobs_path(namespace), job)

    assert (
        wait_for(lambda: _job_condition(cluster, namespace, "fails"), "the Job to end") == "Failed"
    )
    pod = _job_pod(cluster, namespace, "fails")
    assert pod["spec"]["nodeName"] == real_node
    assert pod["status"]["phase"] == "Failed"
    terminated = container_status(pod, "main")["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"


def test_a_job_whose_pod_exits_0_completes(
    cluster: Cluster, namespace: str, real_node_runner: RealNodeProcess
) -> None:
    job = _job("succeeds", container("main", python("print('done')")))
    cluster.create(_jobs_path(namespace), job)

    assert wait_for(lambda: _job_condition(cluster, namespace, "succeeds"), "the Job to end") == (
        "Complete"
    )
    pod = _job_pod(cluster, namespace, "succeeds")
    assert pod["status"]["phase"] == "Succeeded"
    terminated = container_status(pod, "main")["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    log = real_node_runner.container_log(namespace, pod["metadata"]["name"], "main")
    assert log == "done\n"


def test_secret_env_and_a_configmap_volume_at_an_absolute_path_reach_the_process(
    cluster: Cluster, namespace: str, real_node_runner: RealNodeProcess
) -> None:
    cluster.create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {"metadata": {"name": "db"}, "stringData": {"password": "s3cret"}},
    )
    cluster.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {
            "metadata": {"name": "settings"},
            "data": {"odoo.conf": "[options]\nworkers = 2\n", "MODE": "test", "unused": "x"},
        },
    )
    mount_path = "/etc/podrunner-test/conf"
    script = (
        "import os, pathlib\n"
        "print('password', os.environ['DB_PASSWORD'])\n"
        "print('mode', os.environ['CFG_MODE'])\n"
        "print('where', os.environ['POD_NAMESPACE'], os.environ['POD_IP'])\n"
        f"print('files', sorted(p.name for p in pathlib.Path('{mount_path}').iterdir()))\n"
        f"print(pathlib.Path('{mount_path}/server.conf').read_text(), end='')\n"
        "print('uid', os.getuid(), 'gid', os.getgid(), 'groups', sorted(os.getgroups()))\n"
    )
    spec = pod_spec(
        container(
            "main",
            python(script),
            env=[
                {
                    "name": "DB_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
                },
                {
                    "name": "POD_NAMESPACE",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                },
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            ],
            envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            volumeMounts=[{"name": "conf", "mountPath": mount_path, "readOnly": True}],
        ),
        restartPolicy="Never",
        securityContext={"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000},
        volumes=[
            {
                "name": "conf",
                "configMap": {
                    "name": "settings",
                    "items": [{"key": "odoo.conf", "path": "server.conf"}],
                },
            }
        ],
    )
    create_pod(cluster, namespace, "reader", spec)

    pod = finished(cluster, namespace, "reader")
    log = real_node_runner.container_log(namespace, "reader", "main")
    assert pod["status"]["phase"] == "Succeeded", log
    assert log.splitlines() == [
        "password s3cret",
        "mode test",
        f"where {namespace} {pod['status']['podIP']}",
        "files ['server.conf']",
        "[options]",
        "workers = 2",
        "uid 1000 gid 1000 groups [2000]",
    ]
    # The mount point lived in the pod's own mount namespace, never on the host.
    assert not Path("/etc/podrunner-test").exists()


def test_deleting_a_pod_sends_sigterm_and_removes_the_pod_object(
    cluster: Cluster, namespace: str, real_node_runner: RealNodeProcess
) -> None:
    script = (
        "import signal, sys, time\n"
        "def stop(signum, frame):\n"
        "    print('got SIGTERM'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('waiting')\n"
        "while True: time.sleep(1)\n"
    )
    create_pod(
        cluster,
        namespace,
        "graceful",
        pod_spec(container("main", python(script)), terminationGracePeriodSeconds=20),
    )
    wait_for(
        lambda: "waiting" in real_node_runner.container_log(namespace, "graceful", "main"),
        "the process to start",
    )

    began = time.monotonic()
    cluster.delete(pods_path(namespace, "graceful"))
    wait_for(
        lambda: cluster.get(pods_path(namespace, "graceful")) is None, "the pod object to go away"
    )
    # Well within the 20 s grace period: the process ended on SIGTERM, not on SIGKILL.
    assert time.monotonic() - began < 10
    assert real_node_runner.container_log(namespace, "graceful", "main") == (
        "waiting\ngot SIGTERM\n"
    )


def test_a_process_ignoring_sigterm_is_killed_when_the_grace_period_ends(
    cluster: Cluster, namespace: str, real_node_runner: RealNodeProcess
) -> None:
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, lambda signum, frame: print('ignoring SIGTERM'))\n"
        "print('waiting')\n"
        "while True: time.sleep(0.1)\n"
    )
    create_pod(
        cluster,
        namespace,
        "stubborn",
        pod_spec(container("main", python(script)), terminationGracePeriodSeconds=3),
    )
    wait_for(
        lambda: "waiting" in real_node_runner.container_log(namespace, "stubborn", "main"),
        "the process to start",
    )
    began = time.monotonic()
    cluster.delete(pods_path(namespace, "stubborn"))
    wait_for(
        lambda: cluster.get(pods_path(namespace, "stubborn")) is None, "the pod object to go away"
    )
    elapsed = time.monotonic() - began
    assert 3 <= elapsed < 10
    assert "ignoring SIGTERM" in real_node_runner.container_log(namespace, "stubborn", "main")


def test_a_deployment_of_two_replicas_runs_two_pods_with_different_addresses(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    labels = {"app": "echo"}
    server = container(
        "echo",
        ["python3", "-m", "http.server", "8080"],
        workingDir="/srv/www",
        volumeMounts=[{"name": "www", "mountPath": "/srv/www"}],
        # tcpSocket for start-up, httpGet for readiness: both probe kinds over the pod network.
        startupProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 30},
        readinessProbe={"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    )
    deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    cluster.create(
        deployments,
        {
            "metadata": {"name": "echo"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": pod_spec(server, volumes=[{"name": "www", "emptyDir": {}}]),
                },
            },
        },
    )
    wait_for(
        lambda: (
            ((cluster.get(f"{deployments}/echo") or {}).get("status") or {}).get(
                "availableReplicas"
            )
            == 2
        ),
        "the Deployment to have 2 available replicas",
    )
    pods = cluster.items(pods_path(namespace), "app=echo")
    assert [p["status"]["phase"] for p in pods] == ["Running", "Running"]
    assert {p["spec"]["nodeName"] for p in pods} == {real_node}
    addresses = {p["status"]["podIP"] for p in pods}
    assert len(addresses) == 2
    for address in addresses:
        assert http_get(f"http://{address}:8080/")[0] == 200


def test_a_failing_liveness_probe_restarts_the_container(
    cluster: Cluster, namespace: str, real_node_runner: RealNodeProcess
) -> None:
    # The probe's file exists only in the pod's mount namespace (/var/lib/podrunner-live is
    # an emptyDir there, absent on the host): the exec probe really runs inside the pod.
    command = [
        "sh",
        "-c",
        "echo started; touch /var/lib/podrunner-live/alive; sleep 2; "
        "rm /var/lib/podrunner-live/alive; exec sleep 600",
    ]
    probe = {
        "exec": {"command": ["test", "-f", "/var/lib/podrunner-live/alive"]},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    spec = pod_spec(
        container(
            "main",
            command,
            livenessProbe=probe,
            volumeMounts=[{"name": "state", "mountPath": "/var/lib/podrunner-live"}],
        ),
        terminationGracePeriodSeconds=1,
        volumes=[{"name": "state", "emptyDir": {}}],
    )
    create_pod(cluster, namespace, "flaky", spec)

    pod = wait_for(
        lambda: (
            (p := cluster.get(pods_path(namespace, "flaky")))
            and container_status(p, "main").get("restartCount", 0) >= 1
            and container_status(p, "main")["state"].get("running")
            and p
        ),
        "the liveness probe to restart the container",
    )
    status = container_status(pod, "main")
    assert status["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM from the kubelet
    assert pod["status"]["phase"] == "Running"
    # The second run is a new process of the same command (it may not have printed yet).
    wait_for(
        lambda: real_node_runner.container_log(namespace, "flaky", "main").count("started") >= 2,
        "the restarted container to run its command again",
        timeout=10,
    )
    assert not Path("/var/lib/podrunner-live").exists()


def test_an_unknown_image_waits_with_err_image_pull_naming_the_image(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    image = "registry.invalid/nowhere/app:1.2"
    create_pod(
        cluster,
        namespace,
        "unknown",
        pod_spec({"name": "main", "image": image, "command": ["true"]}),
    )
    waiting = wait_for(
        lambda: (
            container_status(cluster.get(pods_path(namespace, "unknown")), "main")
            .get("state", {})
            .get("waiting", {})
            .get("reason")
            == "ErrImagePull"
            and container_status(cluster.get(pods_path(namespace, "unknown")), "main")["state"][
                "waiting"
            ]
        ),
        "the container to wait on its image",
    )
    assert image in waiting["message"]
    assert cluster.get(pods_path(namespace, "unknown"))["status"]["phase"] == "Pending"  # type: ignore[index]


def test_the_operator_image_runs_the_projects_engine(
    cluster: Cluster, namespace: str, real_node_runner: RealNodeProcess
) -> None:
    # The same repository the operator deploys its Jobs with, and only args, as the backup
    # Job gives: the runtime supplies the image's ENTRYPOINT (odoo-operator).
    assert image_repository(OperatorConfig.operator_image) == OPERATOR_IMAGE
    container_spec = {"name": "main", "image": f"{OPERATOR_IMAGE}:0.1.0", "args": ["--help"]}
    # The backup Job's user: the virtualenv must be usable by an unprivileged account.
    security = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 101}
    spec = pod_spec(container_spec, restartPolicy="Never", securityContext=security)
    create_pod(cluster, namespace, "engine", spec)
    pod = finished(cluster, namespace, "engine")
    log = real_node_runner.container_log(namespace, "engine", "main")
    assert pod["status"]["phase"] == "Succeeded", log
    assert "backup" in log  # one of the engine's sub-commands, listed by --help


def test_the_operator_image_runs_when_a_volume_covers_the_checkout(
    cluster: Cluster, namespace: str, real_node_runner: RealNodeProcess
) -> None:
    """A checkout under /tmp (as a fresh clone may be) meets Jobs that mount an emptyDir at
    /tmp: the runtime's virtualenv must still be there for the container, as the image's
    files would be."""
    covering = str(Path(sys.executable).parents[3])  # the folder holding the checkout
    container_spec = {
        "name": "main",
        "image": f"{OPERATOR_IMAGE}:0.1.0",
        "args": ["--help"],
        "volumeMounts": [{"name": "scratch", "mountPath": covering}],
    }
    security = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 101}
    spec = pod_spec(
        container_spec,
        restartPolicy="Never",
        securityContext=security,
        volumes=[{"name": "scratch", "emptyDir": {}}],
    )
    create_pod(cluster, namespace, "covered", spec)
    pod = finished(cluster, namespace, "covered")
    log = real_node_runner.container_log(namespace, "covered", "main")
    assert pod["status"]["phase"] == "Succeeded", log
    assert "backup" in log


class _Greeter:
    """A TCP server on the host's loopback only: it answers "hello <what was sent>"."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            with connection:
                connection.sendall(b"hello " + connection.recv(100))

    def close(self) -> None:
        self.sock.close()


def test_a_pod_reaches_a_host_loopback_service_at_the_same_address(
    cluster: Cluster, namespace: str, real_node_runner: RealNodeProcess
) -> None:
    greeter = _Greeter()
    try:
        real_node_runner.forward_host_port(greeter.port)
        script = (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {greeter.port}), timeout=5)\n"
            "s.sendall(b'pod'); print(s.recv(100).decode())\n"
        )
        create_pod(
            cluster,
            namespace,
            "client",
            pod_spec(container("main", python(script)), restartPolicy="Never"),
        )
        pod = finished(cluster, namespace, "client")
    finally:
        greeter.close()
    log = real_node_runner.container_log(namespace, "client", "main")
    assert pod["status"]["phase"] == "Succeeded", log
    assert log == "hello pod\n"


def test_a_pod_reaches_the_api_server_with_its_service_account_token(
    cluster: Cluster, namespace: str, real_node_runner: RealNodeProcess
) -> None:
    # In-cluster configuration as client libraries read it: the service variables, and the
    # token, CA and namespace the ServiceAccount admission plugin projects into the pod.
    script = (
        "import json, os, ssl, urllib.request\n"
        "base = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "token = open(f'{base}/token').read()\n"
        "context = ssl.create_default_context(cafile=f'{base}/ca.crt')\n"
        "host = os.environ['KUBERNETES_SERVICE_HOST']\n"
        "port = os.environ['KUBERNETES_SERVICE_PORT']\n"
        "request = urllib.request.Request(\n"
        "    f'https://{host}:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews',\n"
        "    data=b'{}', method='POST',\n"
        "    headers={'Authorization': f'Bearer {token}', 'Content-Type': 'application/json'})\n"
        "answer = json.load(urllib.request.urlopen(request, context=context))\n"
        "print(answer['status']['userInfo']['username'])\n"
        "print(open(f'{base}/namespace').read())\n"
    )
    create_pod(
        cluster,
        namespace,
        "in-cluster",
        pod_spec(container("main", python(script)), restartPolicy="Never"),
    )
    pod = finished(cluster, namespace, "in-cluster")
    log = real_node_runner.container_log(namespace, "in-cluster", "main")
    assert pod["status"]["phase"] == "Succeeded", log
    assert log.splitlines() == [f"system:serviceaccount:{namespace}:default", namespace]


def test_a_claims_data_outlives_the_pod_that_wrote_it(
    cluster: Cluster, namespace: str, real_node_runner: RealNodeProcess
) -> None:
    cluster.create(
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    mount = {"name": "data", "mountPath": "/var/lib/podrunner-claim"}
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    writer = container(
        "main", ["sh", "-c", "echo kept > /var/lib/podrunner-claim/file"], volumeMounts=[mount]
    )
    create_pod(
        cluster, namespace, "writer", pod_spec(writer, restartPolicy="Never", volumes=volumes)
    )
    assert finished(cluster, namespace, "writer")["status"]["phase"] == "Succeeded"
    cluster.delete(pods_path(namespace, "writer"))
    wait_for(lambda: cluster.get(pods_path(namespace, "writer")) is None, "the writer to go")

    reader = container(
        "main", ["cat", "/var/lib/podrunner-claim/file"], volumeMounts=[{**mount, "readOnly": True}]
    )
    create_pod(
        cluster, namespace, "reader", pod_spec(reader, restartPolicy="Never", volumes=volumes)
    )
    assert finished(cluster, namespace, "reader")["status"]["phase"] == "Succeeded"
    assert real_node_runner.container_log(namespace, "reader", "main") == "kept\n"


def _written(path: Path) -> bool:
    """Whether a file holds a whole line (echo creates it before it writes)."""
    return path.exists() and path.read_text().endswith("\n")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_stopping_the_runner_leaves_no_process_and_no_network_namespace(
    cluster: Cluster, kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    node = f"real-stop-{uuid.uuid4().hex[:6]}"
    shared = tmp_path / "shared"
    shared.mkdir()
    # The pod leaves a child in its process group and a daemon that left it (setsid).
    command = [
        "sh",
        "-c",
        "sleep 600 & echo $! > /var/lib/podrunner-stop/child.pid; "
        "setsid sleep 601 & echo $! > /var/lib/podrunner-stop/daemon.pid; "
        # $$$$ is the shell's $$: Kubernetes turns $$ into $ in commands, and so does the runner.
        "echo $$$$ > /var/lib/podrunner-stop/main.pid; wait",
    ]
    spec = pod_spec(
        container(
            "main",
            command,
            volumeMounts=[{"name": "shared", "mountPath": "/var/lib/podrunner-stop"}],
        ),
        volumes=[{"name": "shared", "hostPath": {"path": str(shared), "type": "Directory"}}],
    )
    spec["nodeSelector"] = {"kubernetes.io/hostname": node, NODE_KIND_LABEL: "real"}
    runner = RealNodeProcess(kubeconfig, node, tmp_path / "state")
    try:
        with runner:
            create_pod(cluster, namespace, "left-behind", spec)
            wait_for(
                lambda: all(_written(shared / f"{n}.pid") for n in ("child", "daemon", "main")),
                "the pod to start its processes",
            )
            pids = {n: int((shared / f"{n}.pid").read_text()) for n in ("child", "daemon", "main")}
            assert all(_alive(pid) for pid in pids.values()), pids
            assert len(runner.netns_names()) == 1
        assert runner.leftovers == []  # the runner's own final sweep found nothing
        assert runner.swept == []  # and nothing was left for the harness to clean
        assert runner.netns_names() == []
        assert runner.link_names() == []
        survivors = {name: pid for name, pid in pids.items() if _alive(pid)}
        assert survivors == {}
        stopped = json.loads((tmp_path / "state" / "stopped.json").read_text())
        assert stopped == {"leftovers": []}
    finally:
        cluster.delete(f"/api/v1/nodes/{node}")
    assert os.path.exists(tmp_path / "state" / "runner.log")
