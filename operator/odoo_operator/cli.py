"""The ``odoo-operator`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    import kopf

    from . import handlers, settings  # noqa: F401 - importing registers the handlers

    kopf.configure(verbose=args.verbose)
    asyncio.run(
        kopf.operator(
            clusterwide=True,
            standalone=True,
            liveness_endpoint=args.liveness,
        )
    )
    return 0


def _dev_bootstrap(args: argparse.Namespace) -> int:
    from .devcluster.bootstrap import bootstrap

    bootstrap()
    return 0


def _dev_demo(args: argparse.Namespace) -> int:
    from .devcluster.demo import run_demo

    run_demo(Path(args.repo).resolve(), wait=not args.no_wait)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="odoo-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.add_argument(
        "--liveness",
        default=None,
        help="liveness endpoint URL, e.g. http://0.0.0.0:8080/healthz",
    )
    run.set_defaults(handler=_run)

    dev = commands.add_parser("dev", help="the local stack for development and tests")
    dev_commands = dev.add_subparsers(dest="dev_command", required=True)
    dev_commands.add_parser(
        "bootstrap", help="install packages and build the control-plane binaries"
    ).set_defaults(handler=_dev_bootstrap)
    demo = dev_commands.add_parser("demo", help="run the operator on the local stack")
    demo.add_argument("--repo", default=".", help="repository root (crds/, manifests/)")
    demo.add_argument("--no-wait", action="store_true", help="stop after the sample is handled")
    demo.set_defaults(handler=_dev_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``odoo-operator`` console script."""
    args = build_parser().parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
