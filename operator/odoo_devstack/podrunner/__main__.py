"""Command line of the runner: ``python -m odoo_devstack.podrunner --kubeconfig ... ``.

Normally started by :class:`odoo_devstack.podrunner.process.RealNodeProcess` (and so by the
``real_node`` fixture); SIGTERM or SIGINT make it stop every pod and remove its network
before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from .containers import Backoff
from .images import parse_image_option
from .runner import PodRunner, RunnerConfig


def _key_value(option: str) -> tuple[str, str]:
    key, sep, value = option.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{option!r} must read KEY=VALUE")
    return key, value


def parse_arguments(argv: list[str]) -> RunnerConfig:
    """The runner's configuration from its command line."""
    parser = argparse.ArgumentParser(
        prog="python -m odoo_devstack.podrunner",
        description="Run a Kubernetes node whose pods are local processes (needs root).",
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node-name", default="real-0")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument(
        "--slot", type=int, help="the /24 of 198.18.0.0/15 to use (default: first free)"
    )
    parser.add_argument("--label", type=_key_value, action="append", default=[], help="KEY=VALUE")
    parser.add_argument("--no-taint", action="store_true", help="let any pod be scheduled here")
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        help="IMAGE=DIRECTORY: run IMAGE with DIRECTORY's executables",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        help="module:function called with the runtime table",
    )
    parser.add_argument(
        "--host-port", type=int, action="append", default=[], help="relay 127.0.0.1:PORT into pods"
    )
    parser.add_argument("--cpu", default="16")
    parser.add_argument("--memory", default="64Gi")
    parser.add_argument("--pods", default="110")
    parser.add_argument("--backoff-initial", type=float, default=1.0)
    parser.add_argument("--backoff-max", type=float, default=30.0)
    parser.add_argument("--shutdown-grace", type=float, default=2.0)
    args = parser.parse_args(argv)
    try:
        images = [parse_image_option(option) for option in args.image]
    except ValueError as exc:
        parser.error(str(exc))
    return RunnerConfig(
        kubeconfig=args.kubeconfig,
        node_name=args.node_name,
        state_dir=args.state_dir,
        slot=args.slot,
        labels=dict(args.label),
        tainted=not args.no_taint,
        images=images,
        plugins=args.plugin,
        host_ports=set(args.host_port),
        cpu=args.cpu,
        memory=args.memory,
        pods=args.pods,
        backoff=Backoff(args.backoff_initial, args.backoff_max),
        shutdown_grace=args.shutdown_grace,
    )


async def _serve(config: RunnerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await PodRunner(config).run(stop)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run until SIGTERM or SIGINT."""
    config = parse_arguments(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        sys.exit("the pod runner needs root: it creates network and mount namespaces")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(_serve(config))


if __name__ == "__main__":
    main()
