"""Start and stop the runner as a child process of the test run, and read what it left.

:class:`RealNodeProcess` is to the real node what :class:`ControlPlane` is to the API
server: a context manager around a :class:`ManagedProcess` (own process group, parent-death
signal, stopped at interpreter exit), which returns once the node is registered and its pod
watch runs, and which on exit stops the runner and checks that nothing is left: the runner
removes its pods' processes, namespaces and links itself; :attr:`RealNodeProcess.leftovers`
is what its final sweep still found, and :attr:`RealNodeProcess.swept` what had to be
removed after a runner that could not clean up (killed, crashed).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from odoo_devstack.processes import ManagedProcess

from . import network
from .runner import HOST_PORTS_APPLIED_FILE, HOST_PORTS_FILE, READY_FILE, STOPPED_FILE

_REQUIRED_TOOLS = ("ip", "nsenter")


def preflight_problems() -> list[str]:
    """Why this machine cannot run a real node; empty when it can."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the real node needs root (network and mount namespaces, bind mounts)")
    problems += [
        f"`{tool}` is not installed (Debian: apt-get install iproute2 util-linux)"
        for tool in _REQUIRED_TOOLS
        if shutil.which(tool) is None
    ]
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        filesystems = ""
    if "overlay" not in filesystems:
        problems.append("the kernel has no overlay filesystem (modprobe overlay)")
    return problems


class RealNodeProcess:
    """A running real node; use as a context manager. See the module documentation."""

    def __init__(
        self,
        kubeconfig: Path,
        node_name: str = "real-0",
        state_dir: Path | None = None,
        *,
        slot: int | None = None,
        images: Mapping[str, Path] | None = None,
        plugins: Iterable[str] = (),
        host_ports: Iterable[int] = (),
        labels: Mapping[str, str] | None = None,
        tainted: bool = True,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.node_name = node_name
        self._own_state_dir = state_dir is None
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="odoo-podrunner-"))
        self.slot = slot
        self.images = dict(images or {})
        self.plugins = list(plugins)
        self.host_ports = list(host_ports)
        self.labels = dict(labels or {})
        self.tainted = tainted
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.log_path = self.state_dir / "runner.log"
        self.ready: dict[str, Any] = {}
        self.leftovers: list[str] = []
        self.swept: list[str] = []
        self._process: ManagedProcess | None = None

    def __enter__(self) -> RealNodeProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def argv(self) -> list[str]:
        """The runner's command line."""
        argv = [
            sys.executable,
            "-m",
            "odoo_devstack.podrunner",
            f"--kubeconfig={self.kubeconfig}",
            f"--node-name={self.node_name}",
            f"--state-dir={self.state_dir}",
        ]
        if self.slot is not None:
            argv.append(f"--slot={self.slot}")
        argv += [f"--image={image}={path}" for image, path in self.images.items()]
        argv += [f"--plugin={plugin}" for plugin in self.plugins]
        argv += [f"--host-port={port}" for port in self.host_ports]
        argv += [f"--label={key}={value}" for key, value in self.labels.items()]
        if not self.tainted:
            argv.append("--no-taint")
        return argv

    def start(self) -> RealNodeProcess:
        """Start the runner; return once the node is registered and watching its pods."""
        problems = preflight_problems()
        if problems:
            raise RuntimeError("cannot run a real node here: " + "; ".join(problems))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ready_file = self.state_dir / READY_FILE
        ready_file.unlink(missing_ok=True)
        self._process = ManagedProcess(
            f"podrunner {self.node_name}", self.argv(), self.log_path, cwd=self.state_dir
        ).start()
        self._process.wait_until(
            ready_file.exists, self.start_timeout, "registered its node and watching pods"
        )
        self.ready = json.loads(ready_file.read_text())
        self.slot = int(self.ready["slot"])
        return self

    @property
    def pid(self) -> int | None:
        """The runner's process id while it runs."""
        return self._process.pid if self._process else None

    @property
    def gateway(self) -> str:
        """The host's address on the pod network (the node's InternalIP and pods' hostIP)."""
        return str(self.ready["gateway"])

    @property
    def netns_prefix(self) -> str:
        """The prefix of every network namespace and link of this node."""
        return str(self.ready["netnsPrefix"])

    def netns_names(self) -> list[str]:
        """The node's network namespaces that exist now."""
        return network.netns_names(self.netns_prefix)

    def link_names(self) -> list[str]:
        """The node's links (bridge and veths) that exist now."""
        return network.link_names(self.netns_prefix)

    def stop(self) -> None:
        """Stop the runner (it stops every pod), then sweep anything it could not remove."""
        if self._process is None:
            return
        self._process.stop(grace=self.stop_timeout)
        self._process = None
        stopped = self.state_dir / STOPPED_FILE
        if stopped.exists():
            self.leftovers = list(json.loads(stopped.read_text())["leftovers"])
        if self.slot is not None:
            self.swept = network.sweep_slot(self.slot) or []
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- what tests read ----------------------------------------------------------------------

    def pod_dir(self, namespace: str, pod: str, uid: str | None = None) -> Path:
        """A pod's folder under the state folder (the latest pod of that name without uid)."""
        folder = self.state_dir / "pods" / namespace / pod
        if uid is not None:
            return folder / uid
        candidates = sorted(folder.glob("*"), key=lambda path: path.stat().st_mtime)
        if not candidates:
            raise FileNotFoundError(f"no pod {namespace}/{pod} has run on {self.node_name}")
        return candidates[-1]

    def container_log(
        self, namespace: str, pod: str, container: str, uid: str | None = None
    ) -> str:
        """Everything a container wrote to stdout and stderr, over all its runs ("" before
        its first start)."""
        try:
            path = self.pod_dir(namespace, pod, uid) / "logs" / f"{container}.log"
        except FileNotFoundError:
            return ""
        return path.read_text(errors="replace") if path.exists() else ""

    def forward_host_port(self, port: int, timeout: float = 10.0) -> None:
        """Make ``127.0.0.1:port`` of the host reachable at the same address in every pod
        (those running now and those to come); return once the runner has done it."""
        with open(self.state_dir / HOST_PORTS_FILE, "a") as handle:
            handle.write(f"{port}\n")
        applied = self.state_dir / HOST_PORTS_APPLIED_FILE
        deadline = time.monotonic() + timeout
        while str(port) not in applied.read_text().split():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the runner did not relay port {port} within {timeout:.0f}s")
            time.sleep(0.1)
