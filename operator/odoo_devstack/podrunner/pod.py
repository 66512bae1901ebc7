"""One pod on the real node: sandbox, volumes, containers, status, deletion.

The order is the kubelet's: a network sandbox first (``PodReadyToStartContainers``), the
volumes, then the init containers one at a time, each to completion (a native sidecar, an
init container with ``restartPolicy: Always``, only until it has started), then every
container at once. The pod's status is recomputed whenever something changes and sent as
a strategic merge patch of ``pods/status`` (conditions merge by type, so the scheduler's
``PodScheduled`` and any readiness gate stay as they are).

Deletion follows the kubelet too: when the API server sets ``deletionTimestamp`` the
containers get SIGTERM, the grace period (``deletionGracePeriodSeconds``) and SIGKILL;
then the sandbox goes (namespace, veth, relays), the final status is sent, and the pod
object is deleted with grace period 0 and the pod's uid as precondition, which is what lets
the API server forget it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .containers import Backoff, ContainerRunner, ContainerWaitingError, Launch, now
from .images import ImageUnavailableError, RuntimeTable
from .kubeapi import STRATEGIC_MERGE, ApiError, JsonObject, KubeApi
from .network import NetworkError, PodNetwork, Sandbox
from .podspec import (
    ContainerConfigError,
    ObjectSource,
    PodAddresses,
    VolumeContext,
    VolumeDir,
    VolumeError,
    container_environment,
    container_mounts,
    expand,
    materialise_volume,
)
from .relay import PodRelays

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

_SETUP_RETRY_SECONDS = 2.0
_DEFAULT_GRACE_SECONDS = 30.0
_REPORT_INTERVAL = 0.05


class NodeContext:
    """What every pod of the runner shares; the runner fills it in."""

    def __init__(
        self,
        *,
        api: KubeApi,
        network: PodNetwork,
        table: RuntimeTable,
        state_dir: Path,
        node_name: str,
        allocatable: Mapping[str, str],
        backoff: Backoff,
        host_ports: Callable[[], set[int]],
        kubernetes_service: tuple[str, int] | None,
    ) -> None:
        self.api = api
        self.network = network
        self.table = table
        self.state_dir = state_dir
        self.node_name = node_name
        self.allocatable = dict(allocatable)
        self.backoff = backoff
        self.host_ports = host_ports
        self.kubernetes_service = kubernetes_service

    @property
    def host_ip(self) -> str:
        """The node's address, as pods and the host both reach it."""
        return str(self.network.gateway)


def pod_dir(state_dir: Path, namespace: str, name: str, uid: str) -> Path:
    """Where a pod's volumes, logs and launcher files live."""
    return state_dir / "pods" / namespace / name / uid


def _security_value(
    pod_context: Mapping[str, Any], container_context: Mapping[str, Any], key: str
) -> Any:
    value = container_context.get(key)
    return value if value is not None else pod_context.get(key)


class PodWorker:
    """Run one pod from its binding to its deletion."""

    def __init__(self, node: NodeContext, pod: JsonObject) -> None:
        self.node = node
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.key = f"{self.namespace}/{self.name}"
        self.dir = pod_dir(node.state_dir, self.namespace, self.name, self.uid)
        self.sandbox: Sandbox | None = None
        self.relays: PodRelays | None = None
        self.volumes: dict[str, VolumeDir] = {}
        self.init_runners: dict[str, ContainerRunner] = {}
        self.runners: dict[str, ContainerRunner] = {}
        self._start_time = now()
        self._initialized = False
        self._init_failed = False
        self._terminal = False
        self._setup_message = ""
        self._last_ip = ""
        self._conditions: dict[str, dict[str, Any]] = {}
        self._sent: dict[str, Any] | None = None
        self._send_lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._gone = False
        self._run_task: asyncio.Task[None] | None = None
        self._report_task: asyncio.Task[None] | None = None
        self._deletion: asyncio.Task[None] | None = None
        self.finalizing = False
        self.done = asyncio.Event()

    # -- entry points used by the runner --------------------------------------------------

    def start(self) -> None:
        """Start running the pod and reporting its status."""
        self._report_task = asyncio.create_task(self._report_loop(), name=f"status {self.key}")
        self._run_task = asyncio.create_task(self._run(), name=f"pod {self.key}")
        self._changed()

    def update(self, pod: JsonObject) -> None:
        """A newer version of the pod object; a deletion timestamp starts the deletion."""
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp") and self._deletion is None:
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            self._deletion = asyncio.create_task(
                self.delete(float(grace) if grace is not None else self.grace_seconds()),
                name=f"delete {self.key}",
            )
        self._changed()

    def grace_seconds(self) -> float:
        """The pod's termination grace period."""
        value = self.pod["spec"].get("terminationGracePeriodSeconds")
        return float(value) if value is not None else _DEFAULT_GRACE_SECONDS

    async def delete(self, grace: float) -> None:
        """Graceful deletion, ending with the pod object's removal (module documentation)."""
        log.info("pod %s: deleting (grace %.0fs)", self.key, grace)
        await self._shut_down(grace)
        await self._flush()
        # From here the object's disappearance is this deletion's own doing, not news.
        self.finalizing = True
        with contextlib.suppress(ApiError):
            await self.node.api.request(
                "DELETE",
                f"/api/v1/namespaces/{self.namespace}/pods/{self.name}",
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
                absent_ok=True,
            )
        self._finish()

    async def abort(self, grace: float = 0.0) -> None:
        """The pod object is gone (or the runner stops): stop everything, report nothing."""
        self._gone = True
        if self._deletion is not None and not self._deletion.done():
            self._deletion.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deletion
        await self._shut_down(grace)
        self._finish()

    def _finish(self) -> None:
        if self._report_task is not None:
            self._report_task.cancel()
        # Volumes and launcher files go with the pod; the logs stay for whoever reads them.
        for folder in ("volumes", "run"):
            shutil.rmtree(self.dir / folder, ignore_errors=True)
        self.done.set()

    async def _shut_down(self, grace: float) -> None:
        if self._run_task is not None and not self._run_task.done():
            self._run_task.cancel()
        if self._run_task is not None:
            # A run that failed has logged why; stopping must go on regardless.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._run_task
        # Containers first, then the sidecars they may still use, as the kubelet orders it.
        for runners in (self.runners, self.init_runners):
            await asyncio.gather(*(r.stop(grace) for r in runners.values()), return_exceptions=True)
        self._terminal = True
        await self._remove_sandbox()

    # -- the pod's life --------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._set_up()
            if await self._run_init_containers():
                self._initialized = True
                self._changed()
                await self._run_containers()
            self._terminal = True
            # A finished pod keeps no processes or namespace, only its logs and status.
            await asyncio.gather(
                *(r.stop(self.grace_seconds()) for r in self.init_runners.values())
            )
            await self._remove_sandbox()
            self._changed()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s: the runner failed to run it", self.key)
            raise

    async def _set_up(self) -> None:
        if self.pod["spec"].get("hostNetwork"):
            # Not supported: a host-network pod's ports would open on the machine's own
            # interfaces, and its traffic could leave the machine.
            self._setup_message = "hostNetwork pods are not supported by the pod runner"
            self._changed()
            await asyncio.Event().wait()
        while self.sandbox is None:
            try:
                self.sandbox = await self.node.network.create_sandbox()
            except NetworkError as exc:
                self._setup_message = f"network sandbox: {exc}"
                self._changed()
                await asyncio.sleep(_SETUP_RETRY_SECONDS)
        self.relays = PodRelays(self.sandbox.netns_path)
        await self.sync_relays()
        self._changed()
        while True:
            try:
                await self._materialise_volumes()
                break
            except (VolumeError, ApiError, OSError) as exc:
                self._setup_message = f"volumes: {exc}"
                self._changed()
                await asyncio.sleep(_SETUP_RETRY_SECONDS)
        self._setup_message = ""

    async def sync_relays(self) -> None:
        """Relay every host port the runner knows into the pod (new ones included)."""
        if self.relays is None or self._terminal:
            return
        ports = set(self.node.host_ports())
        if self.node.kubernetes_service is not None:
            ports.add(self.node.kubernetes_service[1])
        for port in sorted(ports - self.relays.ports):
            await self.relays.add(port)

    async def _remove_sandbox(self) -> None:
        if self.relays is not None:
            await self.relays.close()
            self.relays = None
        if self.sandbox is not None:
            self._last_ip = str(self.sandbox.ip)
            await self.node.network.remove_sandbox(self.sandbox)
            self.sandbox = None
        self._changed()

    def _addresses(self) -> PodAddresses:
        return PodAddresses(str(self.sandbox.ip) if self.sandbox else "", self.node.host_ip)

    def _fs_group(self) -> int | None:
        value = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        return int(value) if value is not None else None

    async def _materialise_volumes(self) -> None:
        context = VolumeContext(
            pod=self.pod,
            pod_dir=self.dir,
            claims_dir=self.node.state_dir / "claims",
            objects=ObjectSource(self.node.api, self.namespace),
            addresses=self._addresses(),
            allocatable=self.node.allocatable,
            fs_group=self._fs_group(),
        )
        for volume in self.pod["spec"].get("volumes") or []:
            if volume["name"] not in self.volumes:
                self.volumes[volume["name"]] = await materialise_volume(volume, context)

    def _runner(self, spec: Mapping[str, Any], role: str) -> ContainerRunner:
        assert self.sandbox is not None
        return ContainerRunner(
            spec,
            role="sidecar" if role == "sidecar" else "init" if role == "init" else "main",
            restart_policy=self.pod["spec"].get("restartPolicy") or "Always",
            pod_uid=self.uid,
            pod_ip=str(self.sandbox.ip),
            log_path=self.dir / "logs" / f"{spec['name']}.log",
            run_dir=self.dir / "run",
            prepare=self._prepare,
            changed=self._changed,
            grace=self.grace_seconds,
            backoff=self.node.backoff,
        )

    async def _run_init_containers(self) -> bool:
        """Run the init containers in order; False when one failed for good."""
        for spec in self.pod["spec"].get("initContainers") or []:
            sidecar = spec.get("restartPolicy") == "Always"
            runner = self._runner(spec, "sidecar" if sidecar else "init")
            self.init_runners[runner.name] = runner
            runner.start()
            if sidecar:
                await self._wait_started(runner)
                continue
            await runner.finished.wait()
            if runner.exit_code != 0:
                self._init_failed = True
                self._changed()
                return False
        return True

    async def _wait_started(self, runner: ContainerRunner) -> None:
        while not runner.started:
            if runner.finished.is_set():
                return
            await asyncio.sleep(0.1)

    async def _run_containers(self) -> None:
        for spec in self.pod["spec"]["containers"]:
            runner = self._runner(spec, "main")
            self.runners[runner.name] = runner
            runner.start()
        await asyncio.gather(*(r.finished.wait() for r in self.runners.values()))

    # -- one container start -----------------------------------------------------------------

    async def _prepare(self, runner: ContainerRunner) -> Launch:
        """Everything a start needs; a missing piece makes the container wait with the
        kubelet's reason for it."""
        assert self.sandbox is not None
        spec = runner.spec
        image = str(spec.get("image", ""))
        try:
            runtime = self.node.table.resolve(image)
        except ImageUnavailableError as exc:
            raise ContainerWaitingError("ErrImagePull", str(exc), retry_after=30.0) from exc
        try:
            defined = await container_environment(
                self.pod,
                spec,
                ObjectSource(self.node.api, self.namespace),
                self._addresses(),
                self.node.allocatable,
            )
            mounts = container_mounts(spec, self.volumes, defined)
        except (ContainerConfigError, VolumeError) as exc:
            raise ContainerWaitingError("CreateContainerConfigError", str(exc)) from exc
        except ApiError as exc:
            raise ContainerWaitingError("CreateContainerConfigError", str(exc)) from exc
        env = runtime.environment()
        env["HOSTNAME"] = self.name
        if self.node.kubernetes_service is not None:
            host, port = self.node.kubernetes_service
            env["KUBERNETES_SERVICE_HOST"] = host
            env["KUBERNETES_SERVICE_PORT"] = str(port)
        env.setdefault("HOME", "/root")
        env.update(defined)
        argv = [expand(part, env) for part in runtime.argv(spec.get("command"), spec.get("args"))]
        pod_security = self.pod["spec"].get("securityContext") or {}
        container_security = spec.get("securityContext") or {}
        uid = _security_value(pod_security, container_security, "runAsUser")
        gid = _security_value(pod_security, container_security, "runAsGroup")
        groups = [int(g) for g in pod_security.get("supplementalGroups") or []]
        if self._fs_group() is not None:
            groups.append(int(self._fs_group() or 0))
        if uid is not None and gid is None:
            gid = 0  # as container runtimes do: a user without a group runs in group root
        if uid not in (None, 0) and env.get("HOME") == "/root":
            env["HOME"] = "/"
        named_ports = {
            p["name"]: int(p["containerPort"]) for p in spec.get("ports") or [] if p.get("name")
        }
        return Launch(
            argv=argv,
            env=env,
            working_dir=spec.get("workingDir") or runtime.working_dir,
            mounts=mounts,
            netns_path=self.sandbox.netns_path,
            hostname=str(self.pod["spec"].get("hostname") or self.name)[:63],
            uid=int(uid) if uid is not None else None,
            gid=int(gid) if gid is not None else None,
            groups=groups,
            image_id=f"podrunner://{runtime.description}",
            named_ports=named_ports,
            host_paths=list(runtime.host_paths),
        )

    # -- status -----------------------------------------------------------------------------

    def _changed(self) -> None:
        self._dirty.set()

    def phase(self) -> str:
        """The pod phase, by the kubelet's rules."""
        if self._init_failed:
            return "Failed"
        if not self._initialized:
            return "Failed" if self._terminal and self._deletion is not None else "Pending"
        runners = list(self.runners.values())
        if runners and all(r.finished.is_set() for r in runners):
            return "Succeeded" if all(r.exit_code == 0 for r in runners) else "Failed"
        if any(r.has_run for r in runners):
            return "Running"
        return "Pending"

    def _condition(self, kind: str, ok: bool, reason: str = "", message: str = "") -> None:
        status = "True" if ok else "False"
        previous = self._conditions.get(kind)
        since = (
            previous["lastTransitionTime"] if previous and previous["status"] == status else now()
        )
        condition: dict[str, Any] = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": since,
        }
        if not ok and reason:
            condition["reason"] = reason
        if not ok and message:
            condition["message"] = message
        self._conditions[kind] = condition

    def _container_statuses(
        self, specs: list[Mapping[str, Any]], runners: Mapping[str, ContainerRunner], waiting: str
    ) -> list[dict[str, Any]]:
        statuses = []
        for spec in specs:
            runner = runners.get(spec["name"])
            if runner is not None:
                statuses.append(runner.status())
                continue
            state: dict[str, Any] = {"reason": waiting}
            if self._setup_message:
                state["message"] = self._setup_message
            statuses.append(
                {
                    "name": spec["name"],
                    "image": spec.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {"waiting": state},
                    "lastState": {},
                }
            )
        return statuses

    def status(self) -> dict[str, Any]:
        """The pod's status as the kubelet would report it now."""
        spec = self.pod["spec"]
        phase = self.phase()
        terminal = phase in ("Succeeded", "Failed")
        containers = list(spec["containers"])
        init_specs = list(spec.get("initContainers") or [])
        not_ready = [c["name"] for c in containers if not self._is_ready(c["name"])]
        self._condition(
            "PodReadyToStartContainers", self.sandbox is not None and self.relays is not None
        )
        pending_init = [
            s["name"]
            for s in init_specs
            if not (
                (r := self.init_runners.get(s["name"])) is not None
                and (r.exit_code == 0 or r.role == "sidecar")
            )
        ]
        self._condition(
            "Initialized",
            self._initialized,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(pending_init)}]",
        )
        reason = "PodCompleted" if terminal else "ContainersNotReady"
        message = "" if terminal else f"containers with unready status: [{' '.join(not_ready)}]"
        self._condition("ContainersReady", not not_ready and not terminal, reason, message)
        gates_ok = self._readiness_gates_pass()
        ready_reason = reason if not_ready or terminal else "ReadinessGatesNotReady"
        self._condition("Ready", not not_ready and not terminal and gates_ok, ready_reason, message)
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": self.node.host_ip,
            "hostIPs": [{"ip": self.node.host_ip}],
            "startTime": self._start_time,
            "conditions": list(self._conditions.values()),
            "containerStatuses": self._container_statuses(
                containers, self.runners, "PodInitializing" if init_specs else "ContainerCreating"
            ),
        }
        if init_specs:
            status["initContainerStatuses"] = self._container_statuses(
                init_specs, self.init_runners, "PodInitializing"
            )
        if self.sandbox is not None:
            status["podIP"] = str(self.sandbox.ip)
            status["podIPs"] = [{"ip": str(self.sandbox.ip)}]
            self._last_ip = str(self.sandbox.ip)
        elif self._last_ip:
            # A finished pod keeps reporting the address it had, as the kubelet does.
            status["podIP"] = self._last_ip
            status["podIPs"] = [{"ip": self._last_ip}]
        return status

    def _is_ready(self, name: str) -> bool:
        runner = self.runners.get(name)
        return runner is not None and runner.ready

    def _readiness_gates_pass(self) -> bool:
        gates = [g["conditionType"] for g in self.pod["spec"].get("readinessGates") or []]
        current = {
            c["type"]: c.get("status")
            for c in (self.pod.get("status") or {}).get("conditions") or []
        }
        return all(current.get(gate) == "True" for gate in gates)

    async def _report_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._flush()
            except (ApiError, OSError) as exc:
                log.warning("pod %s: status update failed: %s", self.key, exc)
                self._dirty.set()
                await asyncio.sleep(1.0)
            await asyncio.sleep(_REPORT_INTERVAL)

    async def _flush(self) -> None:
        """Send the status if it differs from the last one sent."""
        async with self._send_lock:
            if self._gone:
                return
            status = self.status()
            if status == self._sent:
                return
            answer = await self.node.api.request(
                "PATCH",
                f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status",
                body={"metadata": {"uid": self.uid}, "status": status},
                content_type=STRATEGIC_MERGE,
                absent_ok=True,
            )
            if answer is None:
                self._gone = True
                return
            self._sent = status
