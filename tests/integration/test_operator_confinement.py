"""The chart's confinement policy, proven on the real kube-apiserver as the operator's identity.

`helm template` with default values gives the operator's RBAC and its confinement policy (a
ValidatingAdmissionPolicy with a Deny binding). Both go into the control plane unchanged; the
requests below are then sent with a token of the chart's ServiceAccount, as the operator's pod
would send them. Every refused request is one RBAC allows: the refusal is the policy's, and
the tests check that its message names the policy. Every refusal has an accepted twin (the
same request where the operator belongs, or by another user), so a policy that refused
everything would fail here as surely as one that refused nothing.

The policy is in force only once the API server has seen and compiled it: the fixture waits
for a request the policy forbids to be refused before any test runs.
tests/integration/test_rbac_as_service_account.py runs a whole tenant lifecycle under the same
policy.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from tests.integration.test_rbac_as_service_account import (
    POLICY_KINDS,
    RBAC_KINDS,
    apply_as,
    delete_document,
    policy_refusal,
    render_chart,
    service_account_kubeconfig,
    wait_until_confined,
)

from odoo_devstack import kubectl
from odoo_devstack.operator_setup import OPERATOR_NAMESPACE
from odoo_operator.model.names import INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL

REPO = Path(__file__).parents[2]

RELEASE = "confinement"
# The tenant's own ServiceAccount, as builders/workloads.py and backup_job.py name it.
TENANT_ACCOUNT = "odoo"
RESTRICTED = "pod-security.kubernetes.io/enforce"


@dataclass
class Confinement:
    """The policy in force, an operator identity under it and the namespaces of the tests."""

    admin: client.ApiClient
    operator: client.ApiClient
    policy: str
    tenant: str  # a tenant namespace the operator made
    namespaces: list[str] = field(default_factory=list)  # to delete afterwards

    def refused(self, call: Callable[[], object]) -> str:
        return policy_refusal(call, self.policy)


def tenant_namespace_object(instance: str, **extra_labels: str) -> dict[str, Any]:
    """The tenant namespace as the operator applies it (builders/namespace.py)."""
    labels = {
        MANAGED_BY_LABEL: MANAGED_BY,
        INSTANCE_LABEL: instance,
        RESTRICTED: "restricted",
        **extra_labels,
    }
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": f"odoo-{instance}", "labels": labels},
    }


def secret(name: str, namespace: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {},
    }
    body.update(extra)
    return body


def pod_spec(restart_policy: str) -> dict[str, Any]:
    """A pod like the tenant's: its ServiceAccount, no token, Pod Security restricted."""
    return {
        "serviceAccountName": TENANT_ACCOUNT,
        "automountServiceAccountToken": False,
        "restartPolicy": restart_policy,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "main",
                "image": "devcluster.invalid/confinement:1",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }


def job(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"backoffLimit": 0, "template": {"spec": pod_spec("Never")}},
    }


def deployment(name: str, namespace: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec("Always")},
        },
    }


def _namespace_exists(admin: client.ApiClient, name: str) -> bool:
    try:
        found = client.CoreV1Api(admin).read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return bool(found.status.phase == "Active")


@pytest.fixture(scope="module")
def confinement(
    k8s: client.ApiClient, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Confinement]:
    """The chart's RBAC and policy installed; a client authenticated as its ServiceAccount."""
    workdir = tmp_path_factory.mktemp("confinement")
    kubectl.apply(
        k8s, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}]
    )
    documents = render_chart({}, workdir, release=RELEASE)
    installed = [
        doc for doc in documents if doc["kind"] in RBAC_KINDS or doc["kind"] in POLICY_KINDS
    ]
    assert {doc["kind"] for doc in installed} == RBAC_KINDS | set(POLICY_KINDS)
    policy = next(d for d in installed if d["kind"] == POLICY_KINDS[0])["metadata"]["name"]
    account = next(d for d in installed if d["kind"] == "ServiceAccount")["metadata"]["name"]
    kubectl.apply(k8s, installed)
    identity = service_account_kubeconfig(kubeconfig, k8s, account, workdir / "sa.kubeconfig")
    operator = kubectl.api_client(identity)
    state = Confinement(admin=k8s, operator=operator, policy=policy, tenant="")
    try:
        wait_until_confined(operator, policy)
        instance = f"conf-{uuid.uuid4().hex[:6]}"
        tenant = tenant_namespace_object(instance)
        state.namespaces.append(tenant["metadata"]["name"])
        apply_as(operator, tenant)  # the operator's own first step, under the policy
        state.tenant = tenant["metadata"]["name"]
        yield state
    finally:
        core = client.CoreV1Api(k8s)
        for name in state.namespaces:
            try:
                core.delete_namespace(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        for document in reversed(installed):
            delete_document(k8s, document)
        operator.close()


# -- where the operator may write --------------------------------------------------------------


def test_a_job_in_kube_system_is_refused_to_the_operator_and_to_nobody_else(
    confinement: Confinement,
) -> None:
    operator_jobs = client.BatchV1Api(confinement.operator)
    message = confinement.refused(
        lambda: operator_jobs.create_namespaced_job("kube-system", job("escape", "kube-system"))
    )
    assert "refused: CREATE jobs in namespace kube-system" in message
    # The same Job in the tenant's namespace passes, and other users are not evaluated.
    operator_jobs.create_namespaced_job(
        confinement.tenant, job("escape", confinement.tenant), dry_run="All"
    )
    client.BatchV1Api(confinement.admin).create_namespaced_job(
        "kube-system", job("escape", "kube-system"), dry_run="All"
    )


@pytest.mark.parametrize("namespace", ["default", "kube-system"])
def test_a_tenant_secret_outside_tenant_namespaces_is_refused(
    confinement: Confinement, namespace: str
) -> None:
    message = confinement.refused(
        lambda: apply_as(confinement.operator, secret("odoo-config", namespace))
    )
    assert f"in namespace {namespace}" in message
    with pytest.raises(ApiException) as missing:
        client.CoreV1Api(confinement.admin).read_namespaced_secret("odoo-config", namespace)
    assert missing.value.status == 404
    applied = apply_as(confinement.operator, secret("odoo-config", confinement.tenant))
    assert applied["metadata"]["namespace"] == confinement.tenant


def test_a_service_account_token_secret_is_refused_even_in_a_tenant_namespace(
    confinement: Confinement,
) -> None:
    token_secret = secret(
        "odoo-credentials",
        confinement.tenant,
        type="kubernetes.io/service-account-token",
    )
    token_secret["metadata"]["annotations"] = {"kubernetes.io/service-account.name": TENANT_ACCOUNT}
    message = confinement.refused(lambda: apply_as(confinement.operator, token_secret))
    assert "may not mint ServiceAccount tokens" in message
    # The same name as an ordinary Secret is the operator's to write.
    apply_as(confinement.operator, secret("odoo-credentials", confinement.tenant), dry_run=True)


# -- which namespaces the operator may create, change and delete --------------------------------


def test_deleting_a_namespace_without_the_instance_label_is_refused(
    confinement: Confinement,
) -> None:
    core = client.CoreV1Api(confinement.admin)
    suffix = uuid.uuid4().hex[:6]
    # An unlabelled odoo-* namespace (the name alone proves nothing) and any other namespace.
    for name in (f"odoo-{suffix}", f"team-{suffix}"):
        confinement.namespaces.append(name)
        core.create_namespace({"metadata": {"name": name}})
    operator_core = client.CoreV1Api(confinement.operator)
    # (kube-system is left out: the NamespaceLifecycle plugin refuses its deletion anyway,
    # before the policy is asked.)
    for name in (f"odoo-{suffix}", f"team-{suffix}"):
        message = confinement.refused(lambda name=name: operator_core.delete_namespace(name))
        assert f"refused: DELETE namespace {name}" in message
        assert _namespace_exists(confinement.admin, name)


def test_a_foreign_namespace_cannot_be_adopted_or_faked_as_a_tenant(
    confinement: Confinement,
) -> None:
    core = client.CoreV1Api(confinement.admin)
    instance = f"adopt-{uuid.uuid4().hex[:6]}"
    unlabelled = f"odoo-{instance}"
    confinement.namespaces.append(unlabelled)
    core.create_namespace({"metadata": {"name": unlabelled}})
    # Labelling an existing namespace as a tenant's: refused, wherever it is.
    for existing in (unlabelled, "kube-system"):
        adopt = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": existing, "labels": {INSTANCE_LABEL: instance}},
        }
        message = confinement.refused(lambda adopt=adopt: apply_as(confinement.operator, adopt))
        assert f"refused: UPDATE namespace {existing}" in message
        labels = core.read_namespace(existing).metadata.labels or {}
        assert INSTANCE_LABEL not in labels
    # A new namespace whose name does not follow its label, or without Pod Security restricted.
    mismatched = tenant_namespace_object(f"{instance}-x")
    mismatched["metadata"]["labels"][INSTANCE_LABEL] = instance
    unguarded = tenant_namespace_object(f"{instance}-y")
    del unguarded["metadata"]["labels"][RESTRICTED]
    relaxed = tenant_namespace_object(f"{instance}-z", **{RESTRICTED: "privileged"})
    for new, reason in (
        (mismatched, f"refused: CREATE namespace odoo-{instance}-x"),
        (unguarded, "keep Pod Security restricted enforced"),
        (relaxed, "keep Pod Security restricted enforced"),
    ):
        confinement.namespaces.append(new["metadata"]["name"])  # only if it got through
        message = confinement.refused(lambda new=new: apply_as(confinement.operator, new))
        assert reason in message
    # Relaxing Pod Security on a tenant namespace the operator owns: refused too.
    owned = core.read_namespace(confinement.tenant).metadata.labels
    assert owned[RESTRICTED] == "restricted"
    weakened = tenant_namespace_object(owned[INSTANCE_LABEL], **{RESTRICTED: "privileged"})
    message = confinement.refused(lambda: apply_as(confinement.operator, weakened))
    assert "keep Pod Security restricted enforced" in message
    assert core.read_namespace(confinement.tenant).metadata.labels[RESTRICTED] == "restricted"


def test_a_tenant_namespace_is_the_operators_to_fill_and_delete(
    confinement: Confinement,
) -> None:
    instance = f"life-{uuid.uuid4().hex[:6]}"
    namespace_object = tenant_namespace_object(instance)
    name = namespace_object["metadata"]["name"]
    confinement.namespaces.append(name)
    apply_as(confinement.operator, namespace_object)
    apply_as(confinement.operator, namespace_object)  # an unchanged re-apply: UPDATE
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": TENANT_ACCOUNT, "namespace": name},
        "automountServiceAccountToken": False,
    }
    for document in (
        account,
        secret("odoo-config", name),
        deployment("odoo-web", name),
        job("odoo-init", name),
    ):
        apply_as(confinement.operator, document)
    client.CoreV1Api(confinement.operator).delete_namespace(name)
    phase = client.CoreV1Api(confinement.admin).read_namespace(name).status.phase
    assert phase == "Terminating"


# -- what the operator's pods may be ---------------------------------------------------------------


# (A privileged container cannot also forbid privilege escalation: the API server refuses
# that combination itself, so these containers do not try.)
def _privileged(spec: dict[str, Any]) -> str:
    spec["containers"][0]["securityContext"] = {"privileged": True}
    return "privileged"


def _privileged_init(spec: dict[str, Any]) -> str:
    init = copy.deepcopy(spec["containers"][0])
    init["name"] = "init"
    init["securityContext"] = {"privileged": True}
    spec["initContainers"] = [init]
    return "privileged"


def _host(field_name: str) -> Callable[[dict[str, Any]], str]:
    def change(spec: dict[str, Any]) -> str:
        spec[field_name] = True
        return "hostNetwork, hostPID, hostIPC or hostPath"

    return change


def _host_path(spec: dict[str, Any]) -> str:
    spec["volumes"] = [{"name": "root", "hostPath": {"path": "/"}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "root", "mountPath": "/host"}]
    return "hostNetwork, hostPID, hostIPC or hostPath"


def _account(name: str | None) -> Callable[[dict[str, Any]], str]:
    def change(spec: dict[str, Any]) -> str:
        if name is None:
            del spec["serviceAccountName"]
        else:
            spec["serviceAccountName"] = name
        return "only as a tenant ServiceAccount (odoo, odoo-backup)"

    return change


POD_CHANGES: dict[str, Callable[[dict[str, Any]], str]] = {
    "privileged": _privileged,
    "privileged-init-container": _privileged_init,
    "hostNetwork": _host("hostNetwork"),
    "hostPID": _host("hostPID"),
    "hostIPC": _host("hostIPC"),
    "hostPath": _host_path,
    "serviceAccount-default": _account("default"),
    "serviceAccount-unset": _account(None),
}


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
@pytest.mark.parametrize("change", list(POD_CHANGES))
def test_a_pod_template_with_privilege_host_access_or_another_identity_is_refused(
    confinement: Confinement, kind: str, change: str
) -> None:
    build = deployment if kind == "Deployment" else job
    body = build(f"bad-{change.lower()}", confinement.tenant)
    expected = POD_CHANGES[change](body["spec"]["template"]["spec"])
    if kind == "Deployment":
        apps = client.AppsV1Api(confinement.operator)
        message = confinement.refused(
            lambda: apps.create_namespaced_deployment(confinement.tenant, body)
        )
    else:
        batch = client.BatchV1Api(confinement.operator)
        message = confinement.refused(lambda: batch.create_namespaced_job(confinement.tenant, body))
    assert expected in message
    # Unchanged, the same object is accepted: the refusal is about the change alone.
    fine = build(f"bad-{change.lower()}", confinement.tenant)
    apply_as(confinement.operator, fine, dry_run=True)


# -- which OdooInstances the operator may create and delete -------------------------------------


def _instance(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "odoo.tenantops.io/v1alpha1",
        "kind": "OdooInstance",
        "metadata": {"name": name, "labels": labels},
        "spec": {"version": "18.0", "hosts": [f"{name}.drill.invalid"]},
    }


def test_the_operator_creates_and_deletes_only_the_temporary_instances_of_restore_drills(
    confinement: Confinement,
) -> None:
    kubectl.install_crds(confinement.admin, REPO / "crds")
    custom = client.CustomObjectsApi(confinement.operator)
    group, version, plural = "odoo.tenantops.io", "v1alpha1", "odooinstances"
    suffix = uuid.uuid4().hex[:6]
    # A tenant the platform team declares is not the operator's to create...
    message = confinement.refused(
        lambda: custom.create_cluster_custom_object(
            group, version, plural, _instance(f"books-{suffix}", {}), dry_run="All"
        )
    )
    assert "only the temporary OdooInstances of restore drills" in message
    # ... nor is the drill label on another name enough, nor a drill-* name without it.
    for name, labels in (
        (f"books-{suffix}", {"odoo.tenantops.io/drill": "d"}),
        (f"drill-{suffix}", {}),
    ):
        confinement.refused(
            lambda name=name, labels=labels: custom.create_cluster_custom_object(
                group, version, plural, _instance(name, labels), dry_run="All"
            )
        )
    # A drill's temporary instance passes.
    custom.create_cluster_custom_object(
        group,
        version,
        plural,
        _instance(f"drill-{suffix}", {"odoo.tenantops.io/drill": "d"}),
        dry_run="All",
    )
    # Deleting: an instance the team declared is refused, a drill instance passes.
    admin = client.CustomObjectsApi(confinement.admin)
    admin.create_cluster_custom_object(group, version, plural, _instance(f"books-{suffix}", {}))
    admin.create_cluster_custom_object(
        group, version, plural, _instance(f"drill-{suffix}", {"odoo.tenantops.io/drill": "d"})
    )
    try:
        message = confinement.refused(
            lambda: custom.delete_cluster_custom_object(group, version, plural, f"books-{suffix}")
        )
        assert f"refused: DELETE odooinstances books-{suffix}" in message
        custom.delete_cluster_custom_object(group, version, plural, f"drill-{suffix}")
    finally:
        for name in (f"books-{suffix}", f"drill-{suffix}"):
            try:
                admin.delete_cluster_custom_object(group, version, plural, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
