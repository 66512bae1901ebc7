"""Two web replicas of one tenant share its users' sessions through Redis, under the tenant's
ACL user, on real Odoo 17.0 with Camptocamp's ``session_redis`` (the real node's 17.0 image
carries it, and the operator's version map says so: ``sessionStore: redis``).

A user signs in through one pod and goes on working through the other with the same cookie,
as a load balancer without sticky sessions would send them; a cookie neither pod issued is
refused by both. Every key the session store wrote lies in the tenant's ACL key patterns, and
the operator's condition ``SessionsInRedis`` says it is so.
"""

from __future__ import annotations

import copy
import re
from fnmatch import fnmatchcase
from typing import Any

import pytest
import redis
from kubernetes import client

from conformance.tenants import (
    Tenant,
    admin_session_on,
    instance,
    pods,
)
from odoo_operator.builders.redis_acl import tenant_redis_user

TENANT_PREFIX = "cfs"
TENANT_SPEC: dict[str, Any] = {"replicas": 2}
pytestmark = pytest.mark.parametrize(
    "tenant", ["17.0"], indirect=True, ids=["odoo17.0"], scope="module"
)


def _own_record(session: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = session.call(
        "res.users", "search_read", [[("login", "=", "admin")], ["login"]]
    )
    return result


def test_a_session_opened_on_one_web_pod_works_on_the_other(
    k8s: client.ApiClient, redis_url: str, tenant: Tenant
) -> None:
    web = sorted(pods(k8s, tenant.namespace, "web"), key=lambda pod: pod.metadata.name)
    assert len(web) == 2, [pod.metadata.name for pod in web]
    first, second = (str(pod.status.pod_ip) for pod in web)
    assert first != second

    signed_in = admin_session_on(k8s, tenant, first)
    on_second = copy.copy(signed_in)
    on_second.address = second
    assert _own_record(on_second) == [{"id": 2, "login": "admin"}]

    # A session id neither pod issued is refused, so the above is not a session-less read.
    forged = copy.copy(on_second)
    forged.cookie = "session_id=" + "0" * 40
    with pytest.raises(AssertionError, match="SessionExpiredException"):
        _own_record(forged)

    sid = re.sub(r"^session_id=", "", signed_in.cookie)
    user = tenant_redis_user(tenant.name)
    admin = redis.Redis.from_url(redis_url)
    try:
        keys = [key.decode() for key in admin.scan_iter(match=f"*{sid}*")]
        tenant_keys = [key.decode() for key in admin.scan_iter(match=f"*{user.key_prefix}*")]
    finally:
        admin.close()
    assert keys, f"no Redis key holds session {sid[:6]}...: sessions are not in Redis"
    outside = [
        key
        for key in {*keys, *tenant_keys}
        if not any(fnmatchcase(key, pattern) for pattern in user.key_patterns)
    ]
    assert not outside, f"keys outside the ACL patterns {user.key_patterns}: {outside}"

    conditions = {c["type"]: c for c in instance(k8s, tenant.name)["status"]["conditions"]}
    assert conditions["SessionsInRedis"]["status"] == "True", conditions["SessionsInRedis"]
