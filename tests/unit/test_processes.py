"""Child processes of the local stack fail loudly and never outlive their owner."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from odoo_devstack.processes import ComponentError, ManagedProcess


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A reaped-late zombie still answers kill(0); read its state.
    state = (
        Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else "X"
    )
    return state not in ("Z", "X")


def test_a_component_that_exits_at_start_is_reported_with_its_log_tail(tmp_path: Path) -> None:
    process = ManagedProcess(
        "crasher",
        ["sh", "-c", "echo 'bind: address already in use' >&2; exit 3"],
        tmp_path / "crasher.log",
    ).start()
    with pytest.raises(ComponentError) as failure:
        process.wait_until(lambda: False, timeout=10, what="ready")
    message = str(failure.value)
    assert message.startswith("crasher: exited with code 3 before ready")
    assert "address already in use" in message
    assert failure.value.component == "crasher"


def test_a_component_that_never_gets_ready_times_out_naming_itself(tmp_path: Path) -> None:
    process = ManagedProcess("sleeper", ["sleep", "30"], tmp_path / "sleeper.log").start()
    started = time.monotonic()
    try:
        with pytest.raises(ComponentError, match="sleeper: not ready within 1s"):
            process.wait_until(lambda: False, timeout=1, what="ready")
        assert time.monotonic() - started < 5
    finally:
        process.stop()


def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ComponentError, match="etcd: cannot execute /nonexistent/etcd"):
        ManagedProcess("etcd", ["/nonexistent/etcd"], tmp_path / "etcd.log").start()


def test_stop_kills_the_whole_process_group_including_grandchildren(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    process = ManagedProcess(
        "parent",
        ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; trap '' TERM; wait"],
        tmp_path / "parent.log",
    ).start()
    process.wait_until(pidfile.exists, timeout=10, what="forked")
    time.sleep(0.1)
    grandchild = int(pidfile.read_text())
    assert _alive(grandchild)
    process.stop(grace=1)
    assert process.exit_code() is not None
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_a_one_shot_command_that_fails_reports_its_exit_code(tmp_path: Path) -> None:
    process = ManagedProcess(
        "initdb",
        ["sh", "-c", "echo 'initdb: cannot be run as root'; exit 1"],
        tmp_path / "initdb.log",
    ).start()
    with pytest.raises(ComponentError, match="initdb: failed with exit code 1") as failure:
        process.finish(timeout=10)
    assert "cannot be run as root" in failure.value.log_tail
