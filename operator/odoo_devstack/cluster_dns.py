"""Cluster DNS for the operator process of the local stack: ``<service>.<namespace>.svc``.

In a cluster the operator's pod resolves a tenant's Service through the cluster's DNS and
reaches it through kube-proxy. The local stack runs the operator as a process of this
machine, with neither: this stands in for both, for the names the operator uses
(``odoo.<namespace>.svc`` in the synthetic checks), by answering a Service name with the
address of one of its ready endpoints, read from the Service's EndpointSlices.

Only endpoints of the real node's pods are answered (:data:`~.podrunner.network.REAL_POD_CIDR`,
addresses in network namespaces the harness made on this machine); a Service whose pods are
KWOK's, whose addresses lead nowhere, does not resolve, exactly like a name the cluster does
not know. The port is the one asked for: the tenants' Services map each port to the same
container port. Every other name goes to the system's resolver unchanged.

Run the operator as ``python -m odoo_devstack.cluster_dns run ...`` (the arguments of
``odoo-operator``): the resolver is installed, then the operator's own entry point runs.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from . import kubectl
from .podrunner.network import REAL_POD_CIDR

_SERVICE_NAME = re.compile(
    r"^(?P<service>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r"\.svc(\.cluster\.local)?\.?$"
)
_SERVICE_NAME_LABEL = "kubernetes.io/service-name"
KUBECONFIG_ENV = "ODOO_DEVSTACK_CLUSTER_DNS_KUBECONFIG"

GetAddrInfo = Callable[..., list[Any]]


def ready_endpoint(api: client.ApiClient, service: str, namespace: str) -> str | None:
    """The first ready endpoint address of a Service on the real node, or None."""
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"{_SERVICE_NAME_LABEL}={service}"
    )
    for endpoint_slice in slices.items:
        for endpoint in endpoint_slice.endpoints or []:
            if endpoint.conditions is not None and endpoint.conditions.ready is False:
                continue
            for address in endpoint.addresses or []:
                if ipaddress.ip_address(address) in REAL_POD_CIDR:
                    return str(address)
    return None


def resolver(api: client.ApiClient, system: GetAddrInfo) -> GetAddrInfo:
    """A ``socket.getaddrinfo`` answering Service names from ``api`` and the rest from
    ``system``."""

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        found = _SERVICE_NAME.match(name) if isinstance(name, str) else None
        if found is None:
            return system(host, port, *args, **kwargs)
        address = ready_endpoint(api, found["service"], found["namespace"])
        if address is None:
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: no ready endpoint on the real node")
        return system(address, port, *args, **kwargs)

    return getaddrinfo


def install() -> None:
    """Answer Service names in this process, reading the cluster with :data:`KUBECONFIG_ENV`
    (or ``$KUBECONFIG``): an identity of the harness, so that the apiserver's audit log still
    counts only the operator's own requests as the operator's."""
    api = kubectl.api_client(Path(os.environ.get(KUBECONFIG_ENV) or os.environ["KUBECONFIG"]))
    socket.getaddrinfo = resolver(api, socket.getaddrinfo)


def main() -> int:
    """``python -m odoo_devstack.cluster_dns <odoo-operator arguments>``."""
    install()
    from odoo_operator.cli import main as operator_main

    return operator_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
