"""A tenant over its life: idle, updated, suspended, re-keyed and deleted, with the operator
running as its own process against the cluster, PostgreSQL and Redis of the session.
"""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from psycopg import conninfo

from e2e.tenants import (
    DRIFT_INTERVAL_SECONDS,
    GROUP,
    PLURAL,
    VERSION,
    NewTenant,
    describe_events,
    eventually,
    make_instance,
    redis_as,
    rotate_credentials,
    wait_phase,
    wait_ready,
)
from odoo_devstack import probes
from odoo_devstack.controlplane import OPERATOR_USER, ControlPlane
from odoo_devstack.processes import ManagedProcess

TENANT_PREFIX = "life"


def _secret_values(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, str]:
    data = core.read_namespaced_secret(name, namespace).data or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def _patch_spec(custom: client.CustomObjectsApi, name: str, spec: dict[str, Any]) -> None:
    custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, {"spec": spec})


def _tenant_writes(audit_log: Path, name: str) -> list[dict[str, Any]]:
    """The operator's write requests that touched this tenant (its namespace or its instance)."""
    namespace = f"odoo-{name}"

    def about_tenant(event: dict[str, Any]) -> bool:
        ref = event.get("objectRef", {})
        return bool(
            ref.get("namespace") == namespace
            or (ref.get("resource") == "namespaces" and ref.get("name") == namespace)
            or (ref.get("resource") == PLURAL and ref.get("name") == name)
        )

    return [e for e in probes.audited_writes(audit_log, OPERATOR_USER) if about_tenant(e)]


def test_a_new_instance_is_announced_ready_unknown_before_it_becomes_ready(
    k8s: client.ApiClient, operator: ManagedProcess
) -> None:
    custom = client.CustomObjectsApi(k8s)
    name = f"life-{uuid.uuid4().hex[:6]}"
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, make_instance(name))
    seen: list[str] = []
    try:
        # A watch delivers every version of the object in order, so no state can be missed.
        for event in watch.Watch().stream(
            custom.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            field_selector=f"metadata.name={name}",
            timeout_seconds=90,
        ):
            conditions = (event["object"].get("status") or {}).get("conditions", [])
            ready = next((c["status"] for c in conditions if c["type"] == "Ready"), None)
            if ready is not None and (not seen or seen[-1] != ready):
                seen.append(ready)
            if ready == "True":
                break
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    assert seen[0] == "Unknown", seen
    assert seen[-1] == "True", seen


def test_kubectl_describe_finds_the_ready_event_of_an_instance(
    k8s: client.ApiClient, new_tenant: NewTenant
) -> None:
    custom = client.CustomObjectsApi(k8s)
    name = new_tenant()
    body: Any = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)

    def ready_events() -> list[Any]:
        return [e for e in describe_events(k8s, body) if e.reason == "Ready"]

    eventually(lambda: bool(ready_events()), "the Ready Event where kubectl describe looks", 30)
    [event] = ready_events()  # one, not one per pass
    assert event.type == "Normal"
    assert event.source.component == "odoo-operator"
    assert event.involved_object.namespace in (None, "")


def test_an_unchanged_tenant_costs_no_writes_to_kubernetes_postgres_or_redis(
    k8s: client.ApiClient,
    new_tenant: NewTenant,
    operator: ManagedProcess,
    control_plane: ControlPlane | None,
    postgres_dsn: str,
    redis_url: str,
) -> None:
    name = new_tenant()
    database = f"odoo_{name.replace('-', '_')}"
    # Let the passes right after Ready settle (the pods' status is read, not written), then watch.
    time.sleep(2 * DRIFT_INTERVAL_SECONDS)
    with psycopg.connect(postgres_dsn, autocommit=True) as superuser:
        catalog_before = probes.catalog_row_versions(superuser, database, database)
    acl_before = probes.acl_writes(redis_url)
    audit_before = _tenant_writes(control_plane.audit_log, name) if control_plane else []

    time.sleep(3 * DRIFT_INTERVAL_SECONDS + 1)  # at least three full drift passes

    assert operator.exit_code() is None, operator.log_tail()
    with psycopg.connect(postgres_dsn, autocommit=True) as superuser:
        assert probes.catalog_row_versions(superuser, database, database) == catalog_before
    assert probes.acl_writes(redis_url) == acl_before
    if control_plane is None:
        return  # a foreign cluster gives no audit log to count API writes with
    idle_writes = _tenant_writes(control_plane.audit_log, name)[len(audit_before) :]
    assert [probes.describe_request(e) for e in idle_writes] == []

    # The instrument bites: the repair of a deleted NetworkPolicy shows up as a write.
    client.NetworkingV1Api(k8s).delete_namespaced_network_policy("default-deny", f"odoo-{name}")
    eventually(
        lambda: any(
            e.get("objectRef", {}).get("resource") == "networkpolicies"
            for e in _tenant_writes(control_plane.audit_log, name)[len(audit_before) :]
        ),
        "the operator's repair of the NetworkPolicy in the audit log",
    )


def test_a_superuser_role_a_widened_acl_user_and_an_edited_deployment_are_put_back(
    k8s: client.ApiClient, new_tenant: NewTenant, postgres_dsn: str, redis_url: str
) -> None:
    apps = client.AppsV1Api(k8s)
    name = new_tenant()
    namespace, database, redis_user = (
        f"odoo-{name}",
        f"odoo_{name.replace('-', '_')}",
        f"odoo-{name}",
    )
    with psycopg.connect(postgres_dsn, autocommit=True) as superuser:
        superuser.execute(f'ALTER ROLE "{database}" SUPERUSER CREATEROLE')
    admin_redis = redis.Redis.from_url(redis_url)
    admin_redis.execute_command("ACL", "SETUSER", redis_user, "allkeys", "+@all")
    web = apps.read_namespaced_deployment("odoo-web", namespace)
    image = web.spec.template.spec.containers[0].image
    # Someone loosens the web container by hand: another image, a writable root filesystem.
    loosened = {"name": "odoo", "image": "registry.example/odoo:patched"}
    loosened["securityContext"] = {"readOnlyRootFilesystem": False}
    apps.patch_namespaced_deployment(
        "odoo-web", namespace, {"spec": {"template": {"spec": {"containers": [loosened]}}}}
    )

    def role_is_plain() -> bool:
        with psycopg.connect(postgres_dsn) as superuser:
            row = superuser.execute(
                "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = %s", (database,)
            ).fetchone()
        return row == (False, False)

    def acl_is_narrow() -> bool:
        rules = admin_redis.acl_getuser(redis_user)
        return "~*" not in str(rules) and "+@all" not in str(rules)

    def deployment_is_restored() -> bool:
        pod = apps.read_namespaced_deployment("odoo-web", namespace).spec.template.spec
        container = pod.containers[0]
        return bool(
            container.image == image and container.security_context.read_only_root_filesystem
        )

    eventually(role_is_plain, "the role stripped of SUPERUSER and CREATEROLE")
    eventually(acl_is_narrow, "the ACL user narrowed to its prefix and commands")
    eventually(deployment_is_restored, "the Deployment's pod template restored")


def test_spec_updates_roll_through_to_the_workloads_and_the_route(
    k8s: client.ApiClient, new_tenant: NewTenant, operator: ManagedProcess
) -> None:
    custom, apps, core = client.CustomObjectsApi(k8s), client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    name = new_tenant()
    namespace = f"odoo-{name}"
    checksum_key = "odoo.tenantops.io/config-checksum"
    before = apps.read_namespaced_deployment("odoo-web", namespace)
    resources = {
        "requests": {"cpu": "300m", "memory": "768Mi"},
        "limits": {"cpu": "2", "memory": "3Gi"},
    }
    new_host = f"{name}-2.odoo.example.com"
    _patch_spec(
        custom,
        name,
        {
            "replicas": 2,
            "workers": 3,
            "resources": resources,
            "hosts": [f"{name}.odoo.example.com", new_host],
        },
    )
    wait_ready(custom, name, operator)

    web = apps.read_namespaced_deployment("odoo-web", namespace)
    assert web.spec.replicas == 2
    assert web.status.available_replicas == 2
    container = web.spec.template.spec.containers[0]
    assert container.resources.requests == resources["requests"]
    assert container.resources.limits == resources["limits"]
    # More workers is a new odoo.conf, and a new odoo.conf rolls the pods.
    assert "workers = 3" in _secret_values(core, namespace, "odoo-config")["odoo.conf"]
    old_checksum = before.spec.template.metadata.annotations[checksum_key]
    assert web.spec.template.metadata.annotations[checksum_key] != old_checksum
    budgets = client.PolicyV1Api(k8s).list_namespaced_pod_disruption_budget(namespace).items
    assert [b.metadata.name for b in budgets] == ["odoo-web"]
    route = custom.get_namespaced_custom_object(
        "traefik.io", "v1alpha1", namespace, "ingressroutes", "odoo"
    )
    assert all(new_host in r["match"] for r in route["spec"]["routes"])
    status = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)["status"]
    assert status["url"] == f"https://{name}.odoo.example.com"


def test_suspend_scales_to_zero_keeps_data_and_resume_brings_the_tenant_back(
    k8s: client.ApiClient, new_tenant: NewTenant, operator: ManagedProcess, postgres_dsn: str
) -> None:
    custom, apps = client.CustomObjectsApi(k8s), client.AppsV1Api(k8s)
    name = new_tenant()
    namespace, database = f"odoo-{name}", f"odoo_{name.replace('-', '_')}"

    _patch_spec(custom, name, {"suspend": True})
    suspended = wait_phase(custom, name, operator, "Suspended")
    # Held at zero pods on purpose: not serving, so not Ready, and nothing in progress.
    conditions = {c["type"]: c for c in suspended["status"]["conditions"]}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "Suspended")
    assert conditions["Reconciling"]["status"] == "False"
    for component in ("web", "cron"):
        deployment = apps.read_namespaced_deployment(f"odoo-{component}", namespace)
        assert deployment.spec.replicas == 0, component
    eventually(
        lambda: (
            not client.CoreV1Api(k8s)
            .list_namespaced_pod(
                namespace, label_selector="app.kubernetes.io/component in (web,cron)"
            )
            .items
        ),
        "web and cron pods gone",
    )
    with psycopg.connect(postgres_dsn) as superuser:
        found = superuser.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
    assert found is not None, "suspending must keep the database"

    _patch_spec(custom, name, {"suspend": False})
    resumed = wait_ready(custom, name, operator)
    assert resumed["status"]["phase"] == "Ready"
    assert apps.read_namespaced_deployment("odoo-web", namespace).status.available_replicas == 1


def test_rotating_credentials_rekeys_the_role_and_the_redis_user_and_rolls_the_pods(
    k8s: client.ApiClient,
    new_tenant: NewTenant,
    operator: ManagedProcess,
    postgres_dsn: str,
    redis_url: str,
) -> None:
    custom, apps, core = client.CustomObjectsApi(k8s), client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    name = new_tenant()
    namespace = f"odoo-{name}"
    old_db = _secret_values(core, namespace, "odoo-database")
    old_redis = _secret_values(core, namespace, "odoo-redis")
    old_checksum = apps.read_namespaced_deployment(
        "odoo-web", namespace
    ).spec.template.metadata.annotations["odoo.tenantops.io/config-checksum"]

    rotate_credentials(custom, name, "2026-11-23")
    wait_ready(custom, name, operator)

    new_db = _secret_values(core, namespace, "odoo-database")
    new_redis = _secret_values(core, namespace, "odoo-redis")
    assert new_db["password"] != old_db["password"]
    assert new_redis["password"] != old_redis["password"]
    login = conninfo.make_conninfo(postgres_dsn, user=new_db["username"], dbname=new_db["database"])
    with psycopg.connect(login, password=new_db["password"]) as tenant:
        assert tenant.execute("SELECT current_user").fetchone() == (new_db["username"],)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(login, password=old_db["password"]).close()
    assert redis_as(redis_url, new_redis["username"], new_redis["password"]).ping()
    with pytest.raises(redis.AuthenticationError):
        redis_as(redis_url, old_redis["username"], old_redis["password"]).ping()
    web = apps.read_namespaced_deployment("odoo-web", namespace)
    assert web.spec.template.metadata.annotations["odoo.tenantops.io/config-checksum"] != (
        old_checksum
    )
    # The rolling update keeps a serving pod throughout: none may be unavailable.
    assert web.spec.strategy.rolling_update.max_unavailable in (0, "0", "0%")


def _deleted(custom: client.CustomObjectsApi, core: client.CoreV1Api, name: str) -> bool:
    for read in (
        lambda: custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name),
        lambda: core.read_namespace(f"odoo-{name}"),
    ):
        try:
            read()
            return False
        except ApiException as exc:
            if exc.status != 404:
                raise
    return True


@pytest.mark.parametrize(
    ("policy", "data_kept"), [("Retain", True), ("Delete", False)], ids=["retain", "delete"]
)
def test_deletion_honours_the_deletion_policy(
    k8s: client.ApiClient,
    new_tenant: NewTenant,
    postgres_dsn: str,
    redis_url: str,
    policy: str,
    data_kept: bool,
) -> None:
    custom, core = client.CustomObjectsApi(k8s), client.CoreV1Api(k8s)
    name = new_tenant(deletionPolicy=policy)
    database, redis_user = f"odoo_{name.replace('-', '_')}", f"odoo-{name}"
    admin_redis = redis.Redis.from_url(redis_url)
    admin_redis.set(f"odoo:{name}:session:1", "kept?")

    custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    eventually(lambda: _deleted(custom, core, name), "instance and namespace gone", 120)

    with psycopg.connect(postgres_dsn, autocommit=True) as superuser:
        role = superuser.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (database,))
        role_found = role.fetchone() is not None
        db = superuser.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        database_found = db.fetchone() is not None
        if data_kept:  # clean up what Retain kept, outside the code under test
            superuser.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            superuser.execute(f'DROP ROLE IF EXISTS "{database}"')
    users = [u.decode() if isinstance(u, bytes) else u for u in admin_redis.acl_users()]
    key_found = admin_redis.exists(f"odoo:{name}:session:1") == 1
    if data_kept:
        admin_redis.acl_deluser(redis_user)
        admin_redis.delete(f"odoo:{name}:session:1")
    assert (role_found, database_found, redis_user in users, key_found) == (
        data_kept,
        data_kept,
        data_kept,
        data_kept,
    )


def test_one_tenants_credentials_reach_only_its_own_database_and_keys(
    k8s: client.ApiClient, new_tenant: NewTenant, postgres_dsn: str, redis_url: str
) -> None:
    core = client.CoreV1Api(k8s)
    first, second = new_tenant(), new_tenant()
    first_db = _secret_values(core, f"odoo-{first}", "odoo-database")
    first_redis = _secret_values(core, f"odoo-{first}", "odoo-redis")
    second_db = _secret_values(core, f"odoo-{second}", "odoo-database")

    own = conninfo.make_conninfo(
        postgres_dsn, user=first_db["username"], dbname=first_db["database"]
    )
    with psycopg.connect(own, password=first_db["password"], autocommit=True) as tenant:
        tenant.execute("CREATE TABLE proof (id int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            tenant.execute("CREATE DATABASE escape")
    other = conninfo.make_conninfo(
        postgres_dsn, user=first_db["username"], dbname=second_db["database"]
    )
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(other, password=first_db["password"]).close()

    admin_redis = redis.Redis.from_url(redis_url)
    admin_redis.set(f"odoo:{second}:secret", "theirs")
    tenant_redis = redis_as(redis_url, first_redis["username"], first_redis["password"])
    tenant_redis.set(f"{first_redis['prefix']}own", "mine")
    with pytest.raises(redis.exceptions.NoPermissionError):
        tenant_redis.get(f"odoo:{second}:secret")
    with pytest.raises(redis.exceptions.NoPermissionError):
        tenant_redis.config_get("*")
    admin_redis.delete(f"odoo:{second}:secret")


def test_no_credential_appears_in_the_operator_log_events_or_status(
    k8s: client.ApiClient,
    new_tenant: NewTenant,
    operator: ManagedProcess,
    postgres_dsn: str,
    redis_url: str,
) -> None:
    custom, core = client.CustomObjectsApi(k8s), client.CoreV1Api(k8s)
    name = new_tenant()
    namespace = f"odoo-{name}"
    credentials = set(_secret_values(core, namespace, "odoo-credentials").values())
    rotate_credentials(custom, name, "scan")
    credentials |= set(_secret_values(core, namespace, "odoo-credentials").values())
    admin_passwords = {
        conninfo.conninfo_to_dict(postgres_dsn).get("password"),
        redis.Redis.from_url(redis_url).connection_pool.connection_kwargs.get("password"),
    }
    secrets = {str(value) for value in credentials | admin_passwords if value}
    assert len(secrets) >= 5  # three tenant credentials twice over, and the admins'

    events = client.CoreV1Api(k8s).list_event_for_all_namespaces().items
    haystacks = {
        "operator log": operator.log_path.read_text(errors="replace"),
        "events": "\n".join(f"{e.reason} {e.message}" for e in events),
        "instances": str(custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)),
    }
    leaks = [where for where, text in haystacks.items() for s in secrets if s in text]
    assert leaks == []
