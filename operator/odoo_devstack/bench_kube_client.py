"""`make bench-kube-client`: the cost of one apiserver read through the operator's client,
with the HTTP session trusting the environment (kubernetes_asyncio's default: a thread and a
``~/.netrc`` read per request) and without (what the operator runs).

Starts the local control plane, then for each setting times ``--requests`` GETs of one
Namespace through :class:`odoo_operator.backends.kube.KubeClient`, 16 at a time, and prints
wall time and the process's CPU-seconds per 1,000 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time

from kubernetes_asyncio import config

from odoo_operator.backends.kube import KubeClient, without_environment_lookups

from .controlplane import ControlPlane


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(kubeconfig: str, requests: int, trust_env: bool) -> tuple[float, float]:
    api = await config.new_client_from_config(config_file=kubeconfig)
    if not trust_env:
        without_environment_lookups(api)
    kube = KubeClient(api)
    try:
        await kube.get("v1", "Namespace", "default")  # discovery, outside the timing
        limit = asyncio.Semaphore(16)

        async def one() -> None:
            async with limit:
                await kube.get("v1", "Namespace", "default")

        started, cpu = time.monotonic(), _cpu_seconds()
        await asyncio.gather(*(one() for _ in range(requests)))
        return time.monotonic() - started, _cpu_seconds() - cpu
    finally:
        await kube.close()


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print one line per setting."""
    parser = argparse.ArgumentParser(prog="bench-kube-client", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with ControlPlane() as control_plane:
        print(f"load before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
        for round_ in range(1, args.rounds + 1):
            for trust_env in (True, False):
                wall, cpu = asyncio.run(
                    _measure(str(control_plane.kubeconfig), args.requests, trust_env)
                )
                per_thousand = 1000 / args.requests
                label = "trust_env=True (library default)" if trust_env else "trust_env=False"
                print(
                    f"round {round_} {label:34} {args.requests} GETs: {wall:6.2f} s wall, "
                    f"{cpu * per_thousand:5.2f} CPU-s and {wall * per_thousand:5.2f} s per 1,000"
                )
        print(f"load after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
