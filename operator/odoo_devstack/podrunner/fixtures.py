"""pytest fixtures for the real node.

Register them once for a whole session from the root ``conftest.py``::

    pytest_plugins = ("odoo_devstack.podrunner.fixtures",)

* ``real_node_runner`` (session): the :class:`RealNodeProcess`, for its logs, its
  ``forward_host_port`` and its addresses;
* ``traefik`` (session): the stack's ingress controller, serving the tenants' routes;
* ``real_node`` (session): the node's name (``real-0``). A pod goes there with
  :func:`odoo_devstack.podrunner.node.placement` merged into its spec (the node-kind
  label as ``nodeSelector`` and the toleration of the node's taint).

``ODOO_DEVSTACK_PODRUNNER_PLUGINS`` (``module:function``, comma-separated) adds runtime
plugins, e.g. one that registers the Odoo runtimes with
:func:`odoo_devstack.podrunner.images.register_odoo_runtime`;
``ODOO_DEVSTACK_PODRUNNER_STATE_DIR`` names a state folder to keep after the session (the
runner's log, every container's log), instead of a temporary one removed at the end.

The real node needs the local control plane (it runs the cluster's pods as processes of
this machine, which another cluster must not be given) and root; without either the
fixture fails and says why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..traefik import TraefikProcess, start_traefik
from .process import RealNodeProcess, preflight_problems

if TYPE_CHECKING:
    from odoo_devstack.controlplane import ControlPlane

PLUGINS_ENV = "ODOO_DEVSTACK_PODRUNNER_PLUGINS"
STATE_DIR_ENV = "ODOO_DEVSTACK_PODRUNNER_STATE_DIR"


@pytest.fixture(scope="session")
def real_node_runner(
    control_plane: ControlPlane | None, kubeconfig: Path
) -> Iterator[RealNodeProcess]:
    """A real node registered with the local control plane, for the whole session."""
    if control_plane is None:
        pytest.fail(
            "the real node runs pods as processes of this machine, so it only joins the local "
            "control plane; unset ODOO_OPERATOR_TEST_KUBECONFIG to use it"
        )
    problems = preflight_problems()
    if problems:
        pytest.fail("cannot run a real node here: " + "; ".join(problems))
    plugins = [p.strip() for p in os.environ.get(PLUGINS_ENV, "").split(",") if p.strip()]
    # A state folder given from outside is kept after the run, for reading the logs.
    state_dir = Path(os.environ[STATE_DIR_ENV]) if os.environ.get(STATE_DIR_ENV) else None
    with RealNodeProcess(kubeconfig, state_dir=state_dir, plugins=plugins) as runner:
        yield runner


@pytest.fixture(scope="session")
def real_node(real_node_runner: RealNodeProcess) -> str:
    """The name of the real node: pods scheduled there really run."""
    return real_node_runner.node_name


@pytest.fixture(scope="session")
def traefik(
    control_plane: ControlPlane | None,
    k8s: object,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TraefikProcess]:
    """The local stack's Traefik (:mod:`odoo_devstack.traefik`), for the whole session: it
    serves the tenants' IngressRoutes on loopback ports, reaching the real node's pods."""
    if control_plane is None:
        pytest.fail("the stack's Traefik serves the local control plane only")
    started = start_traefik(
        k8s,  # type: ignore[arg-type]
        control_plane.server,
        control_plane.ca.cert,
        tmp_path_factory.mktemp("traefik"),
    )
    yield started
    started.stop()
