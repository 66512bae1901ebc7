"""Where a tenant's pods run: the dedicated pool for dedicated tenants, the shared pool (by
default anywhere) for shared ones."""

from __future__ import annotations

from odoo_operator.model.config import OperatorConfig

TOLERATION = {"key": "pool", "operator": "Equal", "value": "tenants", "effect": "NoSchedule"}


def test_each_tenancy_gets_its_own_node_pool() -> None:
    config = OperatorConfig.from_mapping(
        {
            "dedicatedNodePool": {"nodeSelector": {"agentpool": "dedicated"}},
            "sharedNodePool": {
                "nodeSelector": {"agentpool": "tenants"},
                "tolerations": [TOLERATION],
            },
        }
    )
    assert config.node_pool("dedicated") == ({"agentpool": "dedicated"}, ())
    assert config.node_pool("shared") == ({"agentpool": "tenants"}, (TOLERATION,))


def test_without_a_shared_pool_shared_tenants_run_anywhere() -> None:
    config = OperatorConfig.from_mapping({"dedicatedNodePool": {"nodeSelector": {"a": "b"}}})
    assert config.node_pool("shared") == ({}, ())
