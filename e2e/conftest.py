"""Fixtures of the e2e suite: the operator running as its own process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.tenants import (
    DRIFT_INTERVAL_SECONDS,
    GROUP,
    PLURAL,
    UPGRADE_INTERVAL_SECONDS,
    VERSION,
    NewTenant,
    delete_quietly,
    make_instance,
    wait_ready,
)
from odoo_devstack import kubectl
from odoo_devstack.demo import ADMISSION_APART, start_operator, start_webhook
from odoo_devstack.operator_setup import register_servers
from odoo_devstack.processes import ManagedProcess

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def operator_config(
    k8s: client.ApiClient,
    postgres_dsn: str,
    redis_url: str,
    blob_connection_string: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """CRDs installed and servers registered: the operator configuration file, in the
    module's working folder (where the processes' logs go too)."""
    kubectl.install_crds(k8s, REPO / "crds")
    workdir = tmp_path_factory.mktemp("operator")
    return register_servers(
        k8s, postgres_dsn, redis_url, workdir, blob_connection_string, upgrade_concurrency=1
    )


@pytest.fixture(scope="module")
def admission_webhook(
    request: pytest.FixtureRequest, operator_kubeconfig: Path, operator_config: Path
) -> Iterator[ManagedProcess | None]:
    """``odoo-operator webhook`` serving admission in a process of its own, as the chart
    installs it, for a module with ``ADMISSION_PROCESS = True``; else None (the operator
    serves admission itself)."""
    if not getattr(request.module, "ADMISSION_PROCESS", False):
        yield None
        return
    webhook = start_webhook(
        operator_kubeconfig, operator_config, operator_config.parent / "webhook.log"
    )
    yield webhook
    webhook.stop()


@pytest.fixture(scope="module")
def operator(
    request: pytest.FixtureRequest,
    operator_kubeconfig: Path,
    operator_config: Path,
    admission_webhook: ManagedProcess | None,
) -> Iterator[ManagedProcess]:
    """The operator running as its own process, its drift timer every
    ``DRIFT_INTERVAL_SECONDS`` unless the test module sets ``OPERATOR_DRIFT_INTERVAL_SECONDS``,
    with the module's ``OPERATOR_ENVIRONMENT`` added to its environment; serving admission
    too, unless ``admission_webhook`` does."""
    apart = admission_webhook is not None
    environment = getattr(request.module, "OPERATOR_ENVIRONMENT", None) or {}
    process = start_operator(
        operator_kubeconfig,
        operator_config,
        operator_config.parent / "operator.log",
        drift_interval=getattr(
            request.module, "OPERATOR_DRIFT_INTERVAL_SECONDS", DRIFT_INTERVAL_SECONDS
        ),
        upgrade_interval=UPGRADE_INTERVAL_SECONDS,
        webhook=not apart,
        environment={**environment, **(ADMISSION_APART if apart else {})},
    )
    yield process
    process.stop()


@pytest.fixture
def new_tenant(
    request: pytest.FixtureRequest, k8s: client.ApiClient, operator: ManagedProcess
) -> Iterator[NewTenant]:
    """Creates Ready tenants named ``<TENANT_PREFIX>-<random>`` with the test module's
    ``TENANT_SPEC`` as defaults (keyword arguments override them); deletes them afterwards."""
    custom = client.CustomObjectsApi(k8s)
    prefix = getattr(request.module, "TENANT_PREFIX", "e2e")
    defaults: dict[str, Any] = getattr(request.module, "TENANT_SPEC", {})
    made: list[str] = []

    def create(**spec: Any) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        body = make_instance(name, **{**defaults, **spec})
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
        made.append(name)
        wait_ready(custom, name, operator)
        return name

    yield create
    for name in made:
        delete_quietly(custom, PLURAL, name)
