"""One container of a pod: its process, restarts, probes and status.

Each start runs :mod:`.launcher` in a new session (so the process group is the
container's), with stdout and stderr appended to the container's log file. The runner
keeps the restart rules of the kubelet:

* ``Always`` restarts after any exit, ``OnFailure`` after a non-zero one, ``Never`` not at
  all; a container killed by its liveness or startup probe follows the same rule;
* between runs the container waits in ``CrashLoopBackOff`` for a delay that doubles from
  :attr:`Backoff.initial` up to :attr:`Backoff.maximum`, and starts over from the initial
  delay after a run that lasted at least the maximum;
* stopping sends SIGTERM to the process group, waits for the grace period, then sends
  SIGKILL to the group (which also catches a process group that outlived its leader).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from . import launcher
from .images import SYSTEM_PATH
from .probes import ProbeTarget, probe_once

log = logging.getLogger(__name__)

Role = Literal["init", "sidecar", "main"]
_LOG_TAIL_BYTES = 2048
_LOG_TAIL_LINES = 80


def now() -> str:
    """The current time as the API writes it (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Backoff:
    """The delays between restarts of a failing container (the kubelet's are 10s and 300s;
    shorter by default here, so tests that exercise restarts stay short)."""

    initial: float = 1.0
    maximum: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait before restart number ``attempt`` (0-based) of a crash loop."""
        return float(min(self.maximum, self.initial * 2**attempt))


@dataclass(frozen=True)
class Launch:
    """Everything one start of the container needs, prepared by the pod."""

    argv: list[str]
    env: dict[str, str]
    working_dir: str
    mounts: list[dict[str, Any]]
    netns_path: Path
    hostname: str
    uid: int | None
    gid: int | None
    groups: list[int]
    image_id: str
    named_ports: dict[str, int] = field(default_factory=dict)
    host_paths: list[str] = field(default_factory=list)


class ContainerWaitingError(Exception):
    """The container cannot start yet; ``reason`` and ``message`` go to its waiting state."""

    def __init__(self, reason: str, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _exit_code(returncode: int) -> int:
    # A process killed by a signal exits "128 + signal" in a container's status.
    return 128 - returncode if returncode < 0 else returncode


class ContainerRunner:
    """Run one container until it is done for good or stopped; report its status."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        role: Role,
        restart_policy: str,
        pod_uid: str,
        pod_ip: str,
        log_path: Path,
        run_dir: Path,
        prepare: Callable[[ContainerRunner], Awaitable[Launch]],
        changed: Callable[[], None],
        grace: Callable[[], float],
        backoff: Backoff,
    ) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.role = role
        self.restart_policy = "Always" if role == "sidecar" else restart_policy
        self.log_path = log_path
        self._pod_uid = pod_uid
        self._pod_ip = pod_ip
        self._run_dir = run_dir
        self._prepare = prepare
        self._changed = changed
        self._grace = grace
        self._backoff = backoff
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.restart_count = 0
        self.ready = False
        self.started = False
        self.has_run = False
        self.exit_code: int | None = None
        self.container_id = ""
        self.image_id = ""
        self.finished = asyncio.Event()
        self._stopping = False
        self._wake = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._wait_task: asyncio.Future[int] | None = None
        self._probe_tasks: list[asyncio.Task[None]] = []
        self._kill_tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Begin the run loop in the background."""
        self._task = asyncio.create_task(self._run(), name=f"container {self.name}")

    @property
    def pid(self) -> int | None:
        """The running process's id, or None between runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def stop(self, grace: float) -> None:
        """Stop for good: no more restarts; SIGTERM, ``grace`` seconds, SIGKILL."""
        self._stopping = True
        self._wake.set()
        await self._terminate(grace)
        if self._task is not None:
            await self._task

    async def _pause(self, seconds: float) -> None:
        if self._stopping:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _restarts_after(self, exit_code: int) -> bool:
        if self.restart_policy == "Always":
            return True
        return self.restart_policy == "OnFailure" and exit_code != 0

    async def _run(self) -> None:
        attempt = 0
        try:
            while not self._stopping:
                try:
                    launch = await self._prepare(self)
                except ContainerWaitingError as waiting:
                    self._set_state(
                        {"waiting": {"reason": waiting.reason, "message": waiting.message}}
                    )
                    await self._pause(waiting.retry_after)
                    continue
                if self._stopping:
                    break
                began = time.monotonic()
                exit_code = await self._execute(launch)
                if self._stopping or not self._restarts_after(exit_code):
                    break
                if time.monotonic() - began >= self._backoff.maximum:
                    attempt = 0
                delay = self._backoff.delay(attempt)
                attempt += 1
                self.last_state = self.state
                self._set_state(
                    {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off {delay:g}s restarting failed "
                            f"container={self.name}",
                        }
                    }
                )
                await self._pause(delay)
                if self._stopping:
                    break
                self.restart_count += 1
        except Exception:
            log.exception("container %s: the run loop failed", self.name)
            raise
        finally:
            self.finished.set()
            self._changed()

    # -- one run ----------------------------------------------------------------------

    def _launcher_spec(self, launch: Launch, run: str) -> tuple[Path, Path]:
        self._run_dir.mkdir(parents=True, exist_ok=True)
        spec_path = self._run_dir / f"{run}.json"
        error_path = self._run_dir / f"{run}.error"
        spec = {
            "netns": str(launch.netns_path),
            "hostname": launch.hostname,
            "scratch": str(self._run_dir / f"{run}.scratch"),
            "mounts": launch.mounts,
            "workingDir": launch.working_dir,
            "argv": launch.argv,
            "env": launch.env,
            "uid": launch.uid,
            "gid": launch.gid,
            "groups": launch.groups,
            "hostPaths": launch.host_paths,
            "startError": str(error_path),
            "runnerPid": os.getpid(),
        }
        (self._run_dir / f"{run}.scratch").mkdir(exist_ok=True)
        # The spec carries the container's secrets: readable by root only, and the launcher
        # deletes it once read.
        descriptor = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(spec, handle)
        return spec_path, error_path

    async def _execute(self, launch: Launch) -> int:
        run = f"{self.name}-{self.restart_count}"
        spec_path, error_path = self._launcher_spec(launch, run)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-S",
                launcher.__file__,
                str(spec_path),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                env={"PATH": SYSTEM_PATH},
            )
        self._process = process
        self._wait_task = asyncio.ensure_future(process.wait())
        if self._stopping:
            # stop() ran while the process was being created and found nothing to stop.
            _signal_group(process.pid, signal.SIGKILL)
        started_at = now()
        self.has_run = True
        self.container_id = f"podrunner://{self._pod_uid}/{run}"
        self.image_id = launch.image_id
        self._set_state({"running": {"startedAt": started_at}})
        self._start_probes(launch, process.pid)
        returncode = await self._wait_task
        await self._stop_probes()
        # The leader is gone; whatever it left in its group goes with it, as in a container.
        _signal_group(process.pid, signal.SIGKILL)
        self._process = None
        self.ready = False
        self.started = False
        exit_code = _exit_code(returncode)
        start_error = error_path.read_text() if error_path.exists() else ""
        error_path.unlink(missing_ok=True)
        terminated: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": "StartError" if start_error else "Completed" if exit_code == 0 else "Error",
            "startedAt": started_at,
            "finishedAt": now(),
            "containerID": self.container_id,
        }
        if start_error:
            terminated["message"] = start_error
        elif exit_code != 0 and self.spec.get("terminationMessagePolicy") == (
            "FallbackToLogsOnError"
        ):
            terminated["message"] = self._log_tail()
        self.exit_code = exit_code
        self._set_state({"terminated": terminated})
        log.info("container %s exited with %s", run, exit_code)
        return exit_code

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
                text = handle.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])

    async def _terminate(self, grace: float) -> None:
        process, waiter = self._process, self._wait_task
        if process is None or waiter is None or waiter.done():
            return
        _signal_group(process.pid, signal.SIGTERM)
        await asyncio.wait({waiter}, timeout=max(grace, 0.0))
        _signal_group(process.pid, signal.SIGKILL)

    # -- probes -------------------------------------------------------------------------

    def _start_probes(self, launch: Launch, pid: int) -> None:
        target = ProbeTarget(
            pod_ip=self._pod_ip,
            pid=pid,
            env=launch.env,
            working_dir=launch.working_dir,
            uid=launch.uid,
            gid=launch.gid,
            named_ports=launch.named_ports,
        )
        if self.role == "init":
            # Init containers run to completion; the kubelet never probes them.
            return
        startup = self.spec.get("startupProbe")
        if startup:
            self._spawn_probe(self._probe_loop("startup", startup, target))
        else:
            self._healthy_start(target)

    def _healthy_start(self, target: ProbeTarget) -> None:
        self.started = True
        readiness = self.spec.get("readinessProbe")
        if readiness:
            self._spawn_probe(self._probe_loop("readiness", readiness, target))
        else:
            self.ready = True
        liveness = self.spec.get("livenessProbe")
        if liveness:
            self._spawn_probe(self._probe_loop("liveness", liveness, target))
        self._changed()

    def _spawn_probe(self, loop: Coroutine[Any, Any, None]) -> None:
        self._probe_tasks.append(asyncio.create_task(loop))

    async def _stop_probes(self) -> None:
        tasks, self._probe_tasks = self._probe_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _probe_loop(self, kind: str, probe: Mapping[str, Any], target: ProbeTarget) -> None:
        period = max(1, int(probe.get("periodSeconds") or 10))
        success_threshold = max(1, int(probe.get("successThreshold") or 1))
        failure_threshold = max(1, int(probe.get("failureThreshold") or 3))
        await asyncio.sleep(int(probe.get("initialDelaySeconds") or 0))
        successes = failures = 0
        while True:
            ok, message = await probe_once(probe, target)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if kind == "startup" and ok:
                self._healthy_start(target)
                return
            if kind in ("startup", "liveness") and failures >= failure_threshold:
                log.info("container %s: %s probe failed, killing: %s", self.name, kind, message)
                grace = probe.get("terminationGracePeriodSeconds")
                kill = asyncio.create_task(
                    self._terminate(float(grace) if grace is not None else self._grace())
                )
                # Held apart from the probe tasks: the kill outlives this loop's cancellation.
                self._kill_tasks.add(kill)
                kill.add_done_callback(self._kill_tasks.discard)
                return
            if kind == "readiness":
                if ok and successes >= success_threshold and not self.ready:
                    self.ready = True
                    self._changed()
                elif not ok and failures >= failure_threshold and self.ready:
                    self.ready = False
                    self._changed()
            await asyncio.sleep(period)

    # -- status -------------------------------------------------------------------------

    def _set_state(self, state: dict[str, Any]) -> None:
        self.state = state
        self._changed()

    def status(self) -> dict[str, Any]:
        """The container's entry in the pod's ``containerStatuses``."""
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": self.image_id,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status
