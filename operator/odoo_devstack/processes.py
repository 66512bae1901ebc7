"""Child processes that cannot outlive the harness that started them.

Every component of the local stack (etcd, the Kubernetes control plane, KWOK,
PostgreSQL, Redis, Azurite) runs as a direct child in its own process group,
with its output captured to a log file. Three layers keep orphans away:

* ``stop()`` signals the whole process group (SIGTERM, then SIGKILL after a grace
  period) and reaps it;
* ``PR_SET_PDEATHSIG`` makes the kernel kill the child if the harness itself
  dies without running any cleanup (SIGKILL, OOM, a crashed test run). The
  signal follows the *thread* that started the child: start components from a
  long-lived thread (the main one), never from a short-lived worker;
* :func:`stop_all` runs at interpreter exit and on SIGTERM for the rest.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 40

# Insertion-ordered, so that stop_all() stops components in reverse start order.
_live: dict[ManagedProcess, None] = {}
_live_lock = threading.Lock()


class ComponentError(RuntimeError):
    """A component of the local stack failed to start or to become ready."""

    def __init__(self, component: str, message: str, log_tail: str = "") -> None:
        self.component = component
        self.log_tail = log_tail
        detail = f"{component}: {message}"
        if log_tail:
            detail += f"\n--- last lines of the {component} log ---\n{log_tail}"
        super().__init__(detail)


def _preexec(run_as: str | None) -> Callable[[], None]:
    """Build the function run in the child between fork and exec."""
    account = pwd.getpwnam(run_as) if run_as else None

    def prepare_child() -> None:
        if account is not None:
            os.setgid(account.pw_gid)
            os.setgroups([])
            os.setuid(account.pw_uid)
        # After setuid: the kernel clears the parent-death signal on a credential change.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return prepare_child


@dataclass(eq=False)
class ManagedProcess:
    """One running component: its command, log file and process group."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    run_as: str | None = None
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> ManagedProcess:
        """Start the process; raise :class:`ComponentError` if it cannot be executed."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            try:
                self._popen = subprocess.Popen(
                    list(self.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                    preexec_fn=_preexec(self.run_as),
                )
            except OSError as exc:
                raise ComponentError(self.name, f"cannot execute {self.argv[0]}: {exc}") from exc
        with _live_lock:
            _live[self] = None
        return self

    @property
    def pid(self) -> int | None:
        """The process id, or None before start."""
        return self._popen.pid if self._popen else None

    def exit_code(self) -> int | None:
        """The exit code if the process has ended, else None."""
        return self._popen.poll() if self._popen else None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the component's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def fail(self, message: str) -> ComponentError:
        """An error naming this component, carrying its log tail."""
        return ComponentError(self.name, message, self.log_tail())

    def wait_until(
        self, ready: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
    ) -> float:
        """Poll ``ready`` until it returns True; fail fast if the process exits.

        Returns the seconds waited. Raises :class:`ComponentError` on exit or timeout.
        """
        started = time.monotonic()
        deadline = started + timeout
        last_error = ""
        while True:
            code = self.exit_code()
            if code is not None:
                raise self.fail(f"exited with code {code} before {what}")
            try:
                if ready():
                    return time.monotonic() - started
            except Exception as exc:  # noqa: BLE001 - probes fail in many ways while starting
                last_error = f" (last check: {exc})"
            if time.monotonic() >= deadline:
                raise self.fail(f"not {what} within {timeout:.0f}s{last_error}")
            time.sleep(interval)

    def finish(self, timeout: float) -> None:
        """Wait for a one-shot command to exit successfully; raise a ComponentError if not."""
        assert self._popen is not None, "finish() before start()"
        try:
            code = self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise self.fail(f"did not finish within {timeout:.0f}s") from None
        finally:
            with _live_lock:
                _live.pop(self, None)
        if code != 0:
            raise self.fail(f"failed with exit code {code}")

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a crash, with no chance to clean up."""
        if self._popen is None:
            return
        _signal_group(self._popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=5.0)
        with _live_lock:
            _live.pop(self, None)

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the process group, escalating to SIGKILL after ``grace`` seconds."""
        popen = self._popen
        if popen is None:
            return
        if popen.poll() is None:
            _signal_group(popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=grace)
        # The leader may be gone while its children linger in the group.
        _signal_group(popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=grace)
        with _live_lock:
            _live.pop(self, None)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def stop_all() -> None:
    """Stop every process this interpreter started and has not stopped yet."""
    with _live_lock:
        running = list(_live)
    for process in reversed(running):
        process.stop(grace=3.0)


def _on_sigterm(signum: int, frame: object) -> None:
    stop_all()
    raise SystemExit(128 + signum)


atexit.register(stop_all)
if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
    signal.SIG_DFL,
    None,
):
    signal.signal(signal.SIGTERM, _on_sigterm)
