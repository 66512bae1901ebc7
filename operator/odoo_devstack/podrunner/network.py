"""The real node's pod network: a bridge on the host and a network namespace per pod.

Addresses come from :data:`REAL_POD_CIDR`, 198.18.0.0/15, the range RFC 2544 sets aside
for benchmarking networks: it is never routed on the internet, it is not the test network
of this machine's own interface (192.0.2.0/24), and it does not overlap the range KWOK
gives fake pods (10.244.0.0/16), so a real pod's address never equals a fake one's.

Each runner takes one /24 of it, a *slot*: slot ``n`` is ``198.18.<n>.0/24`` on
``198.18.0.0`` .. ``198.19.255.0``. The host owns ``.1`` on a bridge named
``odpr<n>-br``; each pod gets a network namespace ``odpr<n>-p<k>`` whose ``eth0`` (one end
of a veth pair; the host end, ``odpr<n>-v<k>``, is a port of the bridge) holds the next
free address with a /24 route and nothing else. So:

* processes on the host reach every pod address through the bridge;
* pods reach each other (layer 2, same bridge) and the host at the gateway ``.1``;
* pods have no default route: nothing they send can leave the machine, whatever the host's
  forwarding settings.

Services of the host that listen on 127.0.0.1 only (PostgreSQL, Redis, Azurite, the API
server) are brought into pods by :mod:`.relay`, at the same ``127.0.0.1:<port>``.

A slot is held by an exclusive ``flock`` on ``/run/lock/odoo-podrunner-slot-<n>.lock``
for the life of the runner, so two test sessions on one machine take different slots;
whoever takes a slot first removes what a dead holder left behind (namespaces, links and
the processes still inside them), which is why every name starts with the slot's prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REAL_POD_CIDR = ipaddress.IPv4Network("198.18.0.0/15")
SLOT_PREFIX_LENGTH = 24
SLOT_COUNT = 2 ** (SLOT_PREFIX_LENGTH - REAL_POD_CIDR.prefixlen)
NAME_PREFIX = "odpr"
NETNS_DIR = Path("/run/netns")
LOCK_DIR = Path("/run/lock")
# Linux refuses interface names longer than 15 bytes ("odpr511-v99999" is 14).
_MAX_SANDBOX_INDEX = 100_000
_CLONE_NEWNET = 0x40000000

T = TypeVar("T")


class NetworkError(RuntimeError):
    """An ``ip`` command failed; the message carries the command and its stderr."""


def slot_subnet(index: int) -> ipaddress.IPv4Network:
    """The /24 of slot ``index`` inside :data:`REAL_POD_CIDR`."""
    return list(REAL_POD_CIDR.subnets(new_prefix=SLOT_PREFIX_LENGTH))[index]


def slot_prefix(index: int) -> str:
    """The prefix of every namespace and link name that belongs to slot ``index``."""
    return f"{NAME_PREFIX}{index}-"


def _ip(*args: str, check: bool = True, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["ip", *args], input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


async def _aip(*args: str, stdin: str | None = None) -> str:
    """Run ``ip`` without blocking the event loop."""
    process = await asyncio.create_subprocess_exec(
        "ip",
        *args,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode() if stdin is not None else None)
    if process.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {err.decode().strip()}")
    return out.decode()


def netns_names(prefix: str) -> list[str]:
    """Network namespaces (as ``ip netns`` names them) whose name starts with ``prefix``."""
    try:
        return sorted(entry.name for entry in NETNS_DIR.iterdir() if entry.name.startswith(prefix))
    except FileNotFoundError:
        return []


def link_names(prefix: str) -> list[str]:
    """Network interfaces of the host whose name starts with ``prefix``."""
    links = json.loads(_ip("-json", "link", "show") or "[]")
    return sorted(link["ifname"] for link in links if link["ifname"].startswith(prefix))


def netns_pids(name: str) -> list[int]:
    """Every process inside the namespace ``name`` (``ip netns pids``)."""
    output = _ip("netns", "pids", name, check=False)
    return [int(pid) for pid in output.split()]


def kill_netns_processes(name: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process inside namespace ``name``; return the pids that were there.

    A pod's processes can leave their process group (a daemon calling setsid), never its
    network namespace, so this is the sweep that catches them all.
    """
    found: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        pids = netns_pids(name)
        if not pids:
            return found
        found.extend(pid for pid in pids if pid not in found)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise NetworkError(f"processes {pids} of namespace {name} survive SIGKILL")
        time.sleep(0.05)


def sweep(prefix: str) -> list[str]:
    """Remove every namespace and link named with ``prefix``, and the processes inside them.

    Returns what was found, so callers can tell a clean state from a cleaned one.
    """
    found: list[str] = []
    for name in netns_names(prefix):
        pids = kill_netns_processes(name)
        found.append(f"netns {name}" + (f" (killed {pids})" if pids else ""))
        _ip("netns", "delete", name, check=False)
    for link in link_names(prefix):
        found.append(f"link {link}")
        _ip("link", "delete", link, check=False)
    return found


def run_in_netns(netns_path: Path, action: Callable[[], T]) -> T:
    """Run ``action`` on a fresh thread that has joined the network namespace first.

    ``setns`` moves only the calling thread, and a thread never leaves a namespace it
    joined, so the work gets a thread of its own that ends with it. Sockets it creates stay
    in that namespace after the thread is gone.
    """
    outcome: dict[str, object] = {}

    def target() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns {netns_path}: {os.strerror(error)}")
            finally:
                os.close(fd)
            outcome["value"] = action()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"netns {netns_path.name}")
    thread.start()
    thread.join()
    if "error" in outcome:
        error = outcome["error"]
        assert isinstance(error, BaseException)
        raise error
    return outcome["value"]  # type: ignore[return-value]


@dataclass(frozen=True)
class Sandbox:
    """One pod's network: its namespace, the host end of its veth, its address."""

    netns: str
    veth: str
    ip: ipaddress.IPv4Address

    @property
    def netns_path(self) -> Path:
        """The file ``setns`` and ``nsenter --net=`` take."""
        return NETNS_DIR / self.netns


class PodNetwork:
    """The bridge of one slot and the sandboxes of its pods."""

    def __init__(self, preferred_slot: int | None = None) -> None:
        self.slot, self._lock_fd = _take_slot(preferred_slot)
        self.prefix = slot_prefix(self.slot)
        self.subnet = slot_subnet(self.slot)
        hosts = list(self.subnet.hosts())
        self.gateway = hosts[0]
        self._free = hosts[1:]
        self.bridge = f"{self.prefix}br"
        self.sandboxes: dict[str, Sandbox] = {}
        self._next_index = 0
        self.stale: list[str] = []

    def setup(self) -> None:
        """Clean what a dead holder of the slot left, then create the bridge."""
        self.stale = sweep(self.prefix)
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/{SLOT_PREFIX_LENGTH}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def teardown(self) -> list[str]:
        """Remove every sandbox, the bridge and anything else named for the slot; release it.

        Returns what the final sweep still found (empty when every pod was torn down).
        """
        try:
            _ip("link", "delete", self.bridge, check=False)
            return sweep(self.prefix)
        finally:
            self.sandboxes.clear()
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)

    def _names(self) -> tuple[str, str]:
        for _ in range(_MAX_SANDBOX_INDEX):
            index = self._next_index
            self._next_index = (self._next_index + 1) % _MAX_SANDBOX_INDEX
            netns = f"{self.prefix}p{index}"
            if netns not in self.sandboxes:
                return netns, f"{self.prefix}v{index}"
        raise NetworkError("no free sandbox name")

    async def create_sandbox(self) -> Sandbox:
        """A new namespace with ``lo`` up and ``eth0`` holding a free address of the slot."""
        if not self._free:
            raise NetworkError(f"no free address left in {self.subnet}")
        netns, veth = self._names()
        sandbox = Sandbox(netns, veth, self._free.pop(0))
        self.sandboxes[netns] = sandbox
        try:
            await _aip("netns", "add", netns)
            await _aip(
                "-batch",
                "-",
                stdin=(
                    f"link add {veth} type veth peer name eth0 netns {netns}\n"
                    f"link set {veth} master {self.bridge}\n"
                    f"link set {veth} up\n"
                ),
            )
            await _aip(
                "-n",
                netns,
                "-batch",
                "-",
                stdin=(
                    "link set lo up\n"
                    f"addr add {sandbox.ip}/{SLOT_PREFIX_LENGTH} dev eth0\n"
                    "link set eth0 up\n"
                ),
            )
            # As container runtimes do for a pod: an unprivileged process (runAsUser) may
            # still bind a port below 1024 inside its own namespace.
            await asyncio.to_thread(run_in_netns, sandbox.netns_path, _allow_unprivileged_low_ports)
        except BaseException:
            await self.remove_sandbox(sandbox)
            raise
        return sandbox

    async def remove_sandbox(self, sandbox: Sandbox) -> None:
        """Kill whatever still runs in the namespace, delete it (and so its veth pair)."""
        await asyncio.to_thread(kill_netns_processes, sandbox.netns)
        with contextlib.suppress(NetworkError):
            await _aip("netns", "delete", sandbox.netns)
        # Normally gone with the namespace's end of the pair; left over if creation failed.
        if sandbox.veth in await asyncio.to_thread(link_names, sandbox.veth):
            with contextlib.suppress(NetworkError):
                await _aip("link", "delete", sandbox.veth)
        if self.sandboxes.pop(sandbox.netns, None) is not None:
            self._free.append(sandbox.ip)
            self._free.sort()


def _allow_unprivileged_low_ports() -> None:
    Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").write_text("0\n")


def _take_slot(preferred: int | None) -> tuple[int, int]:
    """Lock the first free slot (``preferred`` only, when given); return it and the lock fd."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    candidates = [preferred] if preferred is not None else list(range(SLOT_COUNT))
    for index in candidates:
        if not 0 <= index < SLOT_COUNT:
            raise NetworkError(f"slot {index} is outside 0..{SLOT_COUNT - 1}")
        fd = os.open(LOCK_DIR / f"odoo-podrunner-slot-{index}.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return index, fd
    raise NetworkError(
        f"slot {preferred} is held by another runner"
        if preferred is not None
        else f"all {SLOT_COUNT} slots of {REAL_POD_CIDR} are held by other runners"
    )


def sweep_slot(index: int) -> list[str] | None:
    """Sweep slot ``index`` if no runner holds it; None when one does (it is not ours)."""
    try:
        _, fd = _take_slot(index)
    except NetworkError:
        return None
    try:
        return sweep(slot_prefix(index))
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
