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
