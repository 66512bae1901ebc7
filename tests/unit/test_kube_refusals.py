"""A request the API server refuses is an error, never a silent success."""

from __future__ import annotations

import pytest

from odoo_operator.backends.kube import KubeApiError, _checked, _refusal

FORBIDDEN = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": 'jobs.batch "odoo-init" is forbidden: User cannot patch resource',
    "reason": "Forbidden",
    "code": 403,
}


def test_a_refusal_handed_back_as_a_status_raises_with_its_reason() -> None:
    with pytest.raises(KubeApiError, match="applying Job t/odoo-init: 403 Forbidden") as raised:
        _checked(FORBIDDEN, "applying Job t/odoo-init")
    assert raised.value.code == 403


def test_objects_and_successful_statuses_pass() -> None:
    job = {"kind": "Job", "apiVersion": "batch/v1", "metadata": {"name": "odoo-init"}}
    assert _checked(job, "applying") is job
    assert _refusal({"kind": "Status", "status": "Success", "code": 200}) is None
    assert _refusal(None) is None


async def test_the_operators_api_session_reads_no_netrc_per_request() -> None:
    """kubernetes_asyncio's session trusts the environment, which costs a thread and a file
    read per request; the operator's client turns it off (and fails if aiohttp changes)."""
    from kubernetes_asyncio import client as k8s_client

    from odoo_operator.backends.kube import without_environment_lookups

    api = k8s_client.ApiClient(k8s_client.Configuration(host="https://127.0.0.1:1"))
    try:
        assert api.rest_client.pool_manager.trust_env
        without_environment_lookups(api)
        assert not api.rest_client.pool_manager.trust_env
    finally:
        await api.close()
