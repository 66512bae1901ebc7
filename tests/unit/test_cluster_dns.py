"""The local stack's stand-in for cluster DNS answers Service names with a ready endpoint on
the real node, and nothing else: other names go to the system resolver, and endpoints
elsewhere (KWOK's made-up addresses) are never answered."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from kubernetes import client

from odoo_devstack import cluster_dns


def _slice(*endpoints: tuple[str, bool | None]) -> Any:
    return client.V1EndpointSlice(
        address_type="IPv4",
        endpoints=[
            client.V1Endpoint(
                addresses=[address], conditions=client.V1EndpointConditions(ready=ready)
            )
            for address, ready in endpoints
        ],
    )


class FakeDiscovery:
    def __init__(self, slices: list[Any]) -> None:
        self.slices = slices
        self.asked: list[tuple[str, str]] = []

    def list_namespaced_endpoint_slice(self, namespace: str, label_selector: str) -> Any:
        self.asked.append((namespace, label_selector))
        return client.V1EndpointSliceList(items=self.slices)


@pytest.fixture
def discovery(monkeypatch: pytest.MonkeyPatch) -> FakeDiscovery:
    fake = FakeDiscovery([])
    monkeypatch.setattr(cluster_dns.client, "DiscoveryV1Api", lambda api: fake)
    return fake


def _system(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
    return [("system", host, port)]


def test_a_service_name_resolves_to_a_ready_endpoint_on_the_real_node(
    discovery: FakeDiscovery,
) -> None:
    discovery.slices = [_slice(("198.18.0.7", False), ("10.244.0.9", True), ("198.18.0.8", True))]
    resolve = cluster_dns.resolver(object(), _system)  # type: ignore[arg-type]

    assert resolve("odoo.odoo-acme.svc", 8069) == [("system", "198.18.0.8", 8069)]
    assert resolve(b"odoo.odoo-acme.svc.cluster.local.", 8069) == [("system", "198.18.0.8", 8069)]
    assert discovery.asked[0] == ("odoo-acme", "kubernetes.io/service-name=odoo")


def test_endpoints_off_the_real_node_do_not_resolve(discovery: FakeDiscovery) -> None:
    discovery.slices = [_slice(("10.244.0.9", True), ("198.18.0.7", False))]
    resolve = cluster_dns.resolver(object(), _system)  # type: ignore[arg-type]
    with pytest.raises(socket.gaierror, match="no ready endpoint on the real node"):
        resolve("odoo.odoo-acme.svc", 8069)


def test_other_names_go_to_the_system_resolver_untouched(discovery: FakeDiscovery) -> None:
    resolve = cluster_dns.resolver(object(), _system)  # type: ignore[arg-type]
    for name in ("127.0.0.1", "localhost", "acme.example.com", "odoo.svc", None):
        assert resolve(name, 443) == [("system", name, 443)]
    assert discovery.asked == []
