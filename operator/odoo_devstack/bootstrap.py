"""Install what the local stack needs on a fresh machine.

System packages come from the system package manager (Debian's apt, as root);
Azurite from npm; the control-plane binaries, helm and kubeconform for the
chart tests and promtool for the alert-rule tests are built with Go (see
:mod:`.binaries`), and kubeconform's Kubernetes schemas generated from the pinned
Kubernetes module. Anything that cannot be installed stops the bootstrap with a message
that names it.
"""

from __future__ import annotations

import shutil
import sys

from . import binaries
from .binaries import ToolMissingError
from .debian import apt_install
from .services import ensure_azurite, find_postgres_bindir

# command that must be present -> Debian package that provides it
_SYSTEM_PACKAGES = {
    "redis-server": "redis-server",
    "npm": "npm",
    # The browser of e2e/test_demo_serves_real_odoo.py, which signs in to the demo's Odoo.
    "chromium": "chromium",
}


def _missing_packages() -> list[str]:
    missing = [pkg for cmd, pkg in _SYSTEM_PACKAGES.items() if shutil.which(cmd) is None]
    try:
        find_postgres_bindir()
    except ToolMissingError:
        missing.append("postgresql")
    if shutil.which("pg_dump") is None and "postgresql" not in missing:
        missing.append("postgresql-client")
    return missing


def install_system_packages() -> None:
    """Install missing Debian packages, or explain what to install by hand."""
    apt_install(_missing_packages(), "the local stack", _missing_packages)


def bootstrap() -> None:
    """Make the machine ready to run the local stack and the tests: packages, Azurite, binaries."""
    install_system_packages()
    ensure_azurite()
    for name, path in binaries.ensure_all(with_packaging_tools=True).items():
        print(f"[bootstrap] {name}: {path}", file=sys.stderr, flush=True)
    print(f"[bootstrap] kwok stages: {binaries.ensure_kwok_stages()}", file=sys.stderr, flush=True)
    print(
        f"[bootstrap] traefik CRDs: {binaries.ensure_traefik_crds()}", file=sys.stderr, flush=True
    )
    print(
        f"[bootstrap] kubeconform schemas: {binaries.ensure_kubeconform_schemas()}",
        file=sys.stderr,
        flush=True,
    )
    # The real Odoo runtimes the integration tests run, with their Debian build packages.
    # Imported here, not at the top: odoo_devstack is the harness package, which this
    # development-only module may use and the product's own modules never import.
    from odoo_devstack.odoo_runtime import prepare_runtimes

    for runtime in prepare_runtimes():
        print(f"[bootstrap] odoo {runtime.version}: {runtime.root}", file=sys.stderr, flush=True)
