"""The ``odoo-devstack`` command: the local stack for development, tests and the demo.

It lives beside the product, not in it: the operator image ships ``odoo_operator`` only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _bootstrap(args: argparse.Namespace) -> int:
    from .bootstrap import bootstrap

    bootstrap()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.repo).resolve(), wait=not args.no_wait)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="odoo-devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "bootstrap",
        help="install packages, build the control-plane binaries and the Odoo runtimes",
    ).set_defaults(handler=_bootstrap)
    demo = commands.add_parser("demo", help="run the operator on the local stack")
    demo.add_argument("--repo", default=".", help="repository root (crds/, manifests/)")
    demo.add_argument("--no-wait", action="store_true", help="stop after the sample is handled")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``odoo-devstack`` console script."""
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
