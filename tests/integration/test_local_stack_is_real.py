"""The local stack enforces what a real cluster and real servers enforce.

These tests prove the harness is not a fake: scheduling, controllers, RBAC,
Pod Security admission, quotas, PostgreSQL logins, Redis ACLs and blob storage
all behave as they do in production.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import redis
from azure.storage.blob import BlobServiceClient
from kubernetes import client
from kubernetes.client.rest import ApiException
from psycopg import conninfo, sql

WAIT_SECONDS = 60.0


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll until ``condition`` returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


@pytest.fixture
def namespace(k8s: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted afterwards."""
    core = client.CoreV1Api(k8s)
    name = f"harness-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        lambda: (
            core.list_namespaced_service_account(name, field_selector="metadata.name=default").items
        ),
        "the default ServiceAccount",
    )
    yield name
    core.delete_namespace(name)


def _container(**overrides: Any) -> client.V1Container:
    return client.V1Container(name="app", image="registry.example/app:1", **overrides)


def _restricted_security() -> dict[str, Any]:
    return {
        "security_context": client.V1SecurityContext(
            run_as_non_root=True,
            run_as_user=1000,
            allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        )
    }


def test_deployment_pods_run_on_fake_nodes_and_deployment_becomes_available(
    k8s: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[_container()]),
                ),
            ),
        ),
    )
    wait_for(
        lambda: (
            (apps.read_namespaced_deployment_status("web", namespace).status.available_replicas)
            == 2
        ),
        "the Deployment to report 2 available replicas",
    )
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    assert all(pod.status.phase == "Running" for pod in pods)
    assert all(pod.spec.node_name.startswith("kwok-node-") for pod in pods)
    assert all(pod.status.pod_ip for pod in pods)


def test_job_runs_to_completion(k8s: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(k8s)
    batch.create_namespaced_job(
        namespace,
        client.V1Job(
            metadata=client.V1ObjectMeta(name="once"),
            spec=client.V1JobSpec(
                backoff_limit=0,
                template=client.V1PodTemplateSpec(
                    spec=client.V1PodSpec(restart_policy="Never", containers=[_container()])
                ),
            ),
        ),
    )
    wait_for(
        lambda: batch.read_namespaced_job_status("once", namespace).status.succeeded == 1,
        "the Job to succeed",
    )


def test_deleting_a_namespace_finalizes_it_and_its_contents(k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    name = f"doomed-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="data"), data={"k": "v"})
    )
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, f"namespace {name} to be finalized")


def test_a_service_account_without_rbac_is_denied(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, client.AuthenticationV1TokenRequest(spec={"audiences": []})
    ).status.token
    configuration = client.Configuration()
    configuration.host = k8s.configuration.host
    configuration.ssl_ca_cert = k8s.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(configuration) as as_nobody:
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(as_nobody).list_namespaced_secret(namespace)
        assert denied.value.status == 403
        assert f"system:serviceaccount:{namespace}:nobody" in denied.value.body
        # The same token works where RBAC allows it: the denial is RBAC, not a bad token.
        review = client.AuthenticationV1Api(as_nobody).get_api_resources()
        assert review.group_version == "authentication.k8s.io/v1"


def test_pod_security_restricted_rejects_a_privileged_pod_and_admits_a_hardened_one(
    k8s: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s)
    core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    privileged = client.V1Pod(
        metadata=client.V1ObjectMeta(name="privileged"),
        spec=client.V1PodSpec(
            containers=[_container(security_context=client.V1SecurityContext(privileged=True))]
        ),
    )
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(namespace, privileged)
    assert rejected.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in json.loads(rejected.value.body)["message"]

    hardened = client.V1Pod(
        metadata=client.V1ObjectMeta(name="hardened"),
        spec=client.V1PodSpec(containers=[_container(**_restricted_security())]),
    )
    core.create_namespaced_pod(namespace, hardened)


def test_resource_quota_admission_refuses_pods_beyond_the_quota(
    k8s: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_resource_quota(
        namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="pods"),
            spec=client.V1ResourceQuotaSpec(hard={"pods": "1"}),
        ),
    )
    wait_for(
        lambda: core.read_namespaced_resource_quota("pods", namespace).status.hard or {},
        "the quota controller to publish the quota",
    )
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="first"),
            spec=client.V1PodSpec(containers=[_container()]),
        ),
    )
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(
            namespace,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name="second"),
                spec=client.V1PodSpec(containers=[_container()]),
            ),
        )
    assert refused.value.status == 403
    assert "exceeded quota" in refused.value.body


def test_a_postgres_role_created_by_the_admin_can_log_in(postgres_dsn: str) -> None:
    role = f"tenant_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    as_role = conninfo.make_conninfo(postgres_dsn, user=role, password=password, dbname="postgres")
    with psycopg.connect(as_role) as connection:
        assert connection.execute("SELECT current_user").fetchone() == (role,)
    wrong = conninfo.make_conninfo(as_role, password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong)


def test_a_redis_acl_user_is_confined_to_its_key_prefix(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    user, password = f"tenant-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=[f"{user}:*"],
        channels=[f"{user}:*"],
        commands=["+@read", "+@write", "-@dangerous"],
    )
    tenant = redis.Redis(
        host=admin.connection_pool.connection_kwargs["host"],
        port=admin.connection_pool.connection_kwargs["port"],
        username=user,
        password=password,
    )
    try:
        tenant.set(f"{user}:session", "ok")
        assert tenant.get(f"{user}:session") == b"ok"
        with pytest.raises(redis.exceptions.NoPermissionError):
            tenant.get("other-tenant:session")
        with pytest.raises(redis.exceptions.NoPermissionError):
            tenant.flushall()
    finally:
        tenant.close()
        admin.acl_deluser(user)
        admin.close()


def test_a_blob_round_trips_through_azurite(blob_connection_string: str) -> None:
    service = BlobServiceClient.from_connection_string(blob_connection_string)
    container = service.create_container(f"harness-{uuid.uuid4().hex[:8]}")
    payload = uuid.uuid4().bytes * 1024
    container.upload_blob("backups/one.bin", payload)
    assert container.download_blob("backups/one.bin").readall() == payload
    assert [b.name for b in container.list_blobs()] == ["backups/one.bin"]
    container.delete_container()
