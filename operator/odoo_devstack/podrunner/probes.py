"""One attempt of a container probe, as the kubelet makes it.

* ``httpGet`` from the host to the pod's address (or ``host``), any status from 200 to 399
  succeeds; HTTPS is not verified, as the kubelet does not verify it either;
* ``tcpSocket``: a connection is accepted;
* ``exec``: the command runs in the container's namespaces (network, mount, UTS) through
  ``nsenter``, with the container's environment, working folder and user, and exits 0.

``grpc`` probes are not supported: they always fail, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

_OUTPUT_LIMIT = 1024


@dataclass(frozen=True)
class ProbeTarget:
    """What a probe of one running container needs to know about it."""

    pod_ip: str
    pid: int
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    uid: int | None = None
    gid: int | None = None
    named_ports: Mapping[str, int] = field(default_factory=dict)

    def port(self, value: int | str) -> int:
        """A probe's port: a number, or the name of one of the container's ports."""
        if isinstance(value, int) or str(value).isdigit():
            return int(value)
        if value not in self.named_ports:
            raise ValueError(f"the container has no port named {value!r}")
        return self.named_ports[value]


async def probe_once(probe: Mapping[str, Any], target: ProbeTarget) -> tuple[bool, str]:
    """Run the probe once; return whether it succeeded and, if not, why."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in probe:
            return await _http(probe["httpGet"], target, timeout)
        if "tcpSocket" in probe:
            return await _tcp(probe["tcpSocket"], target, timeout)
        if "exec" in probe:
            return await _exec(probe["exec"].get("command") or [], target, timeout)
        if "grpc" in probe:
            return False, "grpc probes are not supported by the pod runner"
    except ValueError as exc:
        return False, str(exc)
    return False, "the probe names no handler (httpGet, tcpSocket or exec)"


async def _http(action: Mapping[str, Any], target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    scheme = str(action.get("scheme") or "HTTP").lower()
    host = action.get("host") or target.pod_ip
    path = action.get("path") or "/"
    if not path.startswith("/"):
        path = f"/{path}"
    url = f"{scheme}://{host}:{target.port(action['port'])}{path}"
    headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/podrunner")
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, headers=headers, ssl=False) as response,
        ):
            if 200 <= response.status < 400:
                return True, ""
            return False, f'HTTP probe failed with statuscode: {response.status} ("{url}")'
    except TimeoutError:
        return False, f'Get "{url}": timeout after {timeout:g}s'
    except aiohttp.ClientError as exc:
        return False, f'Get "{url}": {exc}'


async def _tcp(action: Mapping[str, Any], target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    host = action.get("host") or target.pod_ip
    port = target.port(action["port"])
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        return False, f"dial tcp {host}:{port}: {exc or 'timeout'}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, ""


async def _exec(command: list[str], target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    if not command:
        return False, "the exec probe has no command"
    argv = ["nsenter", f"--target={target.pid}", "--net", "--mount", "--uts"]
    if target.uid is not None:
        argv.append(f"--setuid={target.uid}")
    if target.gid is not None:
        argv.append(f"--setgid={target.gid}")
    argv += [f"--wd={target.working_dir}", "--", *command]
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(target.env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return False, f"command {command} timed out after {timeout:g}s"
    if process.returncode == 0:
        return True, ""
    text = output[:_OUTPUT_LIMIT].decode(errors="replace").strip()
    said = f": {text}" if text else " (no output)"
    return False, f"command {command} exited with {process.returncode}{said}"
