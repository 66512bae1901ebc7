"""The Helm chart: lint, rendering, schema validation, values checks, CRD sync, least privilege.

Rendering uses the helm binary the bootstrap builds from the Go module proxy, validation the
kubeconform binary built the same way, against JSON schemas generated from the OpenAPI
document of the pinned Kubernetes version (no network). The kustomize base in manifests/base
is the chart rendered with its defaults and cert-manager for the webhook (make chart-sync).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from odoo_devstack import binaries
from odoo_operator.handlers import admission as admission_handlers
from odoo_operator.model.config import OperatorConfig
from odoo_operator.model.names import INSTANCE_LABEL, tenant_namespace

REPO = Path(__file__).parents[2]
CHART = REPO / "charts" / "odoo-operator"
EVERYTHING_ON = CHART / "ci" / "everything-on-values.yaml"
MONITORING = REPO / "monitoring"
# Copied into the chart's files/monitoring/ by make chart-sync.
MONITORING_FILES = ("prometheus-rules.yaml", "grafana-dashboard.json")
NAMESPACE = "odoo-operator"
# Kinds whose schemas are not in Kubernetes' own OpenAPI document: the only ones kubeconform
# may skip.
THIRD_PARTY_KINDS = {
    "Certificate",
    "Issuer",
    "ServiceMonitor",
    "PrometheusRule",
    "ClusterKopfPeering",
}

# Every permission the ClusterRole may grant, with the reason the operator needs it.
# (apiGroup, resource, verb) -> why. A rule the chart adds needs a line here, and a line
# here without a rule is reported too: the list is the reviewed description of the role.
WATCH_CACHE_ONLY = "watchCache only: managed objects read from memory"
ALLOWED: dict[tuple[str, str, str], str] = {
    ("odoo.tenantops.io", "odooinstances", "get"): "reconcile, backups and restores read it",
    ("odoo.tenantops.io", "odooinstances", "list"): "Kopf's watch; admission host ownership",
    ("odoo.tenantops.io", "odooinstances", "watch"): "Kopf serves OdooInstances",
    ("odoo.tenantops.io", "odooinstances", "patch"): "finalizer, diff base, maintenance mark",
    ("odoo.tenantops.io", "odooinstances", "create"): "a restore drill's temporary instance",
    ("odoo.tenantops.io", "odooinstances", "delete"): "a restore drill's temporary instance",
    ("odoo.tenantops.io", "odoorestores", "create"): "the drills of spec.backup.drill",
    ("odoo.tenantops.io", "odoorestores", "get"): "restores read their request",
    ("odoo.tenantops.io", "odoorestores", "list"): "Kopf's watch",
    ("odoo.tenantops.io", "odoorestores", "watch"): "Kopf serves OdooRestores",
    ("odoo.tenantops.io", "odoorestores", "patch"): "Kopf's finalizer and diff base",
    ("odoo.tenantops.io", "odoobackups", "get"): "the backup a restore or upgrade uses",
    ("odoo.tenantops.io", "odoobackups", "list"): "Kopf's watch; retention and schedules",
    ("odoo.tenantops.io", "odoobackups", "watch"): "Kopf serves OdooBackups",
    ("odoo.tenantops.io", "odoobackups", "create"): "scheduled and safety backups (by apply)",
    ("odoo.tenantops.io", "odoobackups", "patch"): "finalizer, diff base; apply",
    ("odoo.tenantops.io", "odoobackups", "delete"): "the retention policy drops old backups",
    ("odoo.tenantops.io", "odooinstances/status", "patch"): "conditions and phase",
    ("odoo.tenantops.io", "odoobackups/status", "patch"): "phase, manifest, verification",
    ("odoo.tenantops.io", "odoorestores/status", "patch"): "phase and steps",
    ("odoo.tenantops.io", "odooinstances/finalizers", "update"): "blockOwnerDeletion refs",
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"): "Kopf's resource discovery",
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"): "CRDs installed later",
    ("", "namespaces", "get"): "is the tenant namespace ours?",
    # RBAC cannot name namespaces by prefix or label: the confinement policy limits these
    # three to labelled odoo-<instance> namespaces.
    ("", "namespaces", "create"): "the tenant namespace (apply creates it); policy-confined",
    ("", "namespaces", "patch"): "the tenant namespace (apply); policy-confined",
    ("", "namespaces", "delete"): "deleting a tenant deletes its namespace; policy-confined",
    ("", "secrets", "get"): "tenant credentials, by name only (resourceNames)",
    # Every namespace by RBAC; the policy keeps them to tenant namespaces and refuses
    # ServiceAccount-token Secrets.
    ("", "secrets", "create"): "tenant Secrets, by name only (resourceNames); policy-confined",
    ("", "secrets", "patch"): "tenant Secrets, by name only (resourceNames); policy-confined",
    ("", "resourcequotas", "get"): "tenant quota",
    ("", "resourcequotas", "create"): "tenant quota",
    ("", "resourcequotas", "patch"): "tenant quota",
    ("", "limitranges", "get"): "tenant limits",
    ("", "limitranges", "create"): "tenant limits",
    ("", "limitranges", "patch"): "tenant limits",
    ("", "serviceaccounts", "get"): "the tenant's token-less identity",
    ("", "serviceaccounts", "create"): "the tenant's token-less identity",
    ("", "serviceaccounts", "patch"): "the tenant's token-less identity",
    ("", "persistentvolumeclaims", "get"): "the filestore",
    ("", "persistentvolumeclaims", "create"): "the filestore",
    ("", "persistentvolumeclaims", "patch"): "the filestore (it can grow)",
    ("", "services", "get"): "the tenant Service",
    ("", "services", "create"): "the tenant Service",
    ("", "services", "patch"): "the tenant Service",
    ("networking.k8s.io", "networkpolicies", "get"): "tenant isolation",
    ("networking.k8s.io", "networkpolicies", "create"): "tenant isolation",
    ("networking.k8s.io", "networkpolicies", "patch"): "tenant isolation (drift repair)",
    ("apps", "deployments", "get"): "web and cron availability",
    # Every namespace by RBAC; the policy keeps them to tenant namespaces, running as the
    # tenant's ServiceAccount without privilege or host access.
    ("apps", "deployments", "create"): "web and cron; policy-confined",
    ("apps", "deployments", "patch"): "web and cron (rollouts, suspend); policy-confined",
    ("policy", "poddisruptionbudgets", "get"): "the web disruption budget",
    ("policy", "poddisruptionbudgets", "create"): "the web disruption budget",
    ("policy", "poddisruptionbudgets", "patch"): "the web disruption budget",
    ("batch", "jobs", "get"): "init, upgrade and backup Job completion",
    ("batch", "jobs", "create"): "init, upgrade and backup Jobs; policy-confined",
    ("batch", "jobs", "patch"): "init, upgrade and backup Jobs (apply); policy-confined",
    ("traefik.io", "ingressroutes", "get"): "the tenant route",
    ("traefik.io", "ingressroutes", "create"): "the tenant route",
    ("traefik.io", "ingressroutes", "patch"): "the tenant route",
    ("traefik.io", "middlewares", "get"): "headers, rate limit, allow list, DB manager block",
    ("traefik.io", "middlewares", "create"): "headers, rate limit, allow list, DB manager block",
    ("traefik.io", "middlewares", "patch"): "headers, rate limit, allow list, DB manager block",
    ("cert-manager.io", "certificates", "get"): "spec.tls.issuerRef certificates",
    ("cert-manager.io", "certificates", "create"): "spec.tls.issuerRef certificates",
    ("cert-manager.io", "certificates", "patch"): "spec.tls.issuerRef certificates",
    # watchCache.enabled only: label-selected watches of the managed kinds.
    # The webhook Deployment's namespace index (and the watch cache's tenant namespaces).
    ("", "namespaces", "list"): "admission's index of namespaces; watch cache",
    ("", "namespaces", "watch"): "admission's index of namespaces; watch cache",
    ("", "resourcequotas", "list"): WATCH_CACHE_ONLY,
    ("", "resourcequotas", "watch"): WATCH_CACHE_ONLY,
    ("", "limitranges", "list"): WATCH_CACHE_ONLY,
    ("", "limitranges", "watch"): WATCH_CACHE_ONLY,
    ("", "serviceaccounts", "list"): WATCH_CACHE_ONLY,
    ("", "serviceaccounts", "watch"): WATCH_CACHE_ONLY,
    ("", "persistentvolumeclaims", "list"): WATCH_CACHE_ONLY,
    ("", "persistentvolumeclaims", "watch"): WATCH_CACHE_ONLY,
    ("", "services", "list"): WATCH_CACHE_ONLY,
    ("", "services", "watch"): WATCH_CACHE_ONLY,
    ("networking.k8s.io", "networkpolicies", "list"): WATCH_CACHE_ONLY,
    ("networking.k8s.io", "networkpolicies", "watch"): WATCH_CACHE_ONLY,
    ("apps", "deployments", "list"): WATCH_CACHE_ONLY,
    ("apps", "deployments", "watch"): WATCH_CACHE_ONLY,
    ("batch", "jobs", "list"): WATCH_CACHE_ONLY,
    ("batch", "jobs", "watch"): WATCH_CACHE_ONLY,
    ("policy", "poddisruptionbudgets", "list"): WATCH_CACHE_ONLY,
    ("policy", "poddisruptionbudgets", "watch"): WATCH_CACHE_ONLY,
    ("traefik.io", "ingressroutes", "list"): WATCH_CACHE_ONLY,
    ("traefik.io", "ingressroutes", "watch"): WATCH_CACHE_ONLY,
    ("traefik.io", "middlewares", "list"): WATCH_CACHE_ONLY,
    ("traefik.io", "middlewares", "watch"): WATCH_CACHE_ONLY,
    # The tenant Secrets by their names only (a field-selected watch per name).
    ("", "secrets", "list"): WATCH_CACHE_ONLY,
    ("", "secrets", "watch"): WATCH_CACHE_ONLY,
    ("kopf.dev", "clusterkopfpeerings", "list"): "HA only: Kopf peering",
    ("kopf.dev", "clusterkopfpeerings", "watch"): "HA only: Kopf peering",
    ("kopf.dev", "clusterkopfpeerings", "patch"): "HA only: its heartbeat",
}
# Grants that must name their objects: a cluster-wide grant on these would reach far beyond
# what the operator manages.
MUST_NAME = {
    ("", "secrets"): {
        "odoo-credentials",
        "odoo-config",
        "odoo-database",
        "odoo-redis",
        "odoo-backup-store",
        "odoo-server-ca",  # public CA certificates of the servers (encryption in transit)
    },
}


def _tool(component: binaries.Component) -> str:
    return str(binaries.ensure(component))


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the bootstrap's helm."""
    return subprocess.run(
        [_tool(binaries.HELM), *args], capture_output=True, text=True, timeout=120, check=check
    )


def render(*values_args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart for the pinned Kubernetes version."""
    return helm(
        "template",
        "odoo-operator",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        binaries.KUBERNETES_VERSION,
        *values_args,
        check=check,
    )


def documents(text: str) -> list[dict[str, Any]]:
    """The parsed objects of a rendering."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def one(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    """The single object of ``kind`` (whose name ends with ``name_suffix``)."""
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{kind} *{name_suffix}: {[d['metadata']['name'] for d in found]}"
    return found[0]


@pytest.fixture(scope="module")
def defaults() -> list[dict[str, Any]]:
    """The chart rendered with its default values."""
    return documents(render().stdout)


@pytest.fixture(scope="module")
def everything() -> list[dict[str, Any]]:
    """The chart rendered with every optional part on."""
    return documents(render("--values", str(EVERYTHING_ON)).stdout)


def kubeconform(manifests: str, tmp_path: Path) -> dict[str, Any]:
    """Validate strictly against the pinned Kubernetes schemas; return kubeconform's report."""
    binaries.ensure_kubeconform_schemas()
    path = tmp_path / "manifests.yaml"
    path.write_text(manifests)
    result = subprocess.run(
        [
            _tool(binaries.KUBECONFORM),
            "-strict",
            "-summary",
            "-verbose",
            "-output",
            "json",
            "-schema-location",
            binaries.kubeconform_schema_location(),
            # Only third-party kinds lack a schema; the test checks that nothing else is skipped.
            "-ignore-missing-schemas",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    report["exit_code"] = result.returncode
    return report


# -- lint, render, validate ------------------------------------------------------------------


def test_helm_lint_is_clean_with_default_and_everything_on_values() -> None:
    for extra in ([], ["--values", str(EVERYTHING_ON)]):
        result = helm(
            "lint", "--strict", "--kube-version", binaries.KUBERNETES_VERSION, str(CHART), *extra
        )
        assert "0 chart(s) failed" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("values", ["defaults", "everything"])
def test_rendered_manifests_match_the_kubernetes_schemas(
    values: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    args = ["--values", str(EVERYTHING_ON)] if values == "everything" else []
    report = kubeconform(render(*args).stdout, tmp_path)
    problems = [
        r for r in report["resources"] if r["status"] not in ("statusValid", "statusSkipped")
    ]
    assert not problems, json.dumps(problems, indent=2)
    assert report["exit_code"] == 0
    skipped = {r["kind"] for r in report["resources"] if r["status"] == "statusSkipped"}
    assert skipped <= THIRD_PARTY_KINDS, f"skipped kinds with a schema: {skipped}"
    assert report["summary"]["valid"] >= 14


def test_the_schemas_are_strict_about_unknown_fields(tmp_path: Path) -> None:
    manifest = render().stdout.replace("revisionHistoryLimit: 3", "revisionHistoryLimt: 3")
    report = kubeconform(manifest, tmp_path)
    invalid = [r for r in report["resources"] if r["status"] == "statusInvalid"]
    assert [r["kind"] for r in invalid] == ["Deployment", "Deployment"]  # operator, webhook
    assert "revisionHistoryLimt" in invalid[0]["msg"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "replicas=3"], "at '/replicas': maximum: got 3, want 1"),
        (
            ["--set", "config.postgresServers.main.dsn=postgres://admin:secret@db"],
            "additional properties 'dsn' not allowed",
        ),
        (["--set", "config.backupExecution=cron"], "value must be one of 'job', 'inProcess'"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set", "webhook.port=443"], "/webhook/port"),
        (["--set", "config.versions.latest=odoo:18"], "'latest' does not match pattern"),
        (["--set", "networkPolicy.egress.postgres.cidrs={10.0.0.0}"], "/cidrs/0"),
        (["--set", "replica=2"], "additional properties 'replica' not allowed"),
        (
            ["--set", "metrics.prometheusRule.rules[0].alert=Old"],
            "additional properties 'rules' not allowed",
        ),
        (
            ["--set", "metrics.prometheusRule.extraRules[0].alert=NoExpr"],
            "at '/metrics/prometheusRule/extraRules/0': missing property 'expr'",
        ),
        (["--set", "metrics.grafanaDashboard.namespace=Monitoring"], "/grafanaDashboard/namespace"),
        (["--set", "shards={a,A_b}"], "/shards/1"),
        (
            ["--set", "shards={a,b}", "--set", "webhook.enabled=false"],
            "shards needs webhook.enabled",
        ),
        (
            [
                "--set",
                "config.redisServers.a.secretRef=a,config.redisServers.a.default=true",
                "--set",
                "config.redisServers.b.secretRef=b,config.redisServers.b.default=true",
            ],
            "config.redisServers: only one entry may be the default, got a, b",
        ),
    ],
)
def test_bad_values_fail_with_a_message_naming_them(values: list[str], message: str) -> None:
    result = render(*values, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


# -- CRDs: one source of truth ---------------------------------------------------------------


def test_the_charts_crds_are_byte_for_byte_copies_of_crds() -> None:
    source = {path.name: path.read_bytes() for path in (REPO / "crds").glob("*.yaml")}
    copies = {path.name: path.read_bytes() for path in (CHART / "files" / "crds").glob("*.yaml")}
    assert source.keys() == copies.keys(), "run make chart-sync"
    stale = [name for name in source if source[name] != copies[name]]
    assert not stale, f"{stale} differ from crds/: run make chart-sync"


def test_the_charts_monitoring_files_are_byte_for_byte_copies_of_monitoring() -> None:
    for name in MONITORING_FILES:
        copy = CHART / "files" / "monitoring" / name
        assert copy.is_file(), f"{copy} is missing: run make chart-sync"
        assert copy.read_bytes() == (MONITORING / name).read_bytes(), (
            f"{copy} differs from monitoring/{name}: run make chart-sync"
        )


def test_the_rendered_crds_are_those_of_crds_and_survive_uninstall(
    defaults: list[dict[str, Any]],
) -> None:
    rendered = {
        d["metadata"]["name"]: d for d in defaults if d["kind"] == "CustomResourceDefinition"
    }
    for path in (REPO / "crds").glob("*.yaml"):
        source = yaml.safe_load(path.read_text())
        crd = rendered.pop(source["metadata"]["name"])
        annotations = crd["metadata"].pop("annotations")
        assert annotations == {"helm.sh/resource-policy": "keep"}
        assert crd == source
    assert not rendered
    without = documents(render("--set", "crds.install=false").stdout)
    assert not [d for d in without if d["kind"] == "CustomResourceDefinition"]


# -- the operator's pod -----------------------------------------------------------------------


def test_the_deployment_passes_pod_security_restricted(defaults: list[dict[str, Any]]) -> None:
    pod = one(defaults, "Deployment", "odoo-operator")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True
        assert not context.get("privileged")
        assert all(p["containerPort"] >= 1024 for p in container["ports"])
    assert {v["name"] for v in pod["volumes"]} <= {"config", "webhook-tls", "tmp"}
    assert not [v for v in pod["volumes"] if "hostPath" in v]


def test_the_deployment_runs_the_operator_with_liveness_probes_and_webhook_settings(
    defaults: list[dict[str, Any]],
) -> None:
    deployment = one(defaults, "Deployment", "odoo-operator")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["run", "--liveness=http://0.0.0.0:8080/healthz"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # Admission is served by the webhook Deployment: the operator serves none and says so.
    assert env["ODOO_OPERATOR_WEBHOOK_APART"] == "true"
    assert not [
        name
        for name in env
        if name.startswith("ODOO_OPERATOR_WEBHOOK_") and name != "ODOO_OPERATOR_WEBHOOK_APART"
    ]
    webhook = one(defaults, "Deployment", "-webhook")
    assert webhook["spec"]["replicas"] == 2
    serving = webhook["spec"]["template"]["spec"]["containers"][0]
    assert serving["args"] == ["webhook", "--liveness=http://0.0.0.0:8080/healthz"]
    assert serving["readinessProbe"]["tcpSocket"] == {"port": "webhook"}
    env = {e["name"]: e.get("value") for e in serving["env"]}
    assert env["ODOO_OPERATOR_WEBHOOK_HOST"] == "odoo-operator-webhook.odoo-operator.svc"
    assert env["ODOO_OPERATOR_WEBHOOK_PORT"] == "9443"
    mounts = {m["mountPath"] for m in serving["volumeMounts"]}
    for variable in ("CERT", "KEY", "CA"):
        path = Path(env[f"ODOO_OPERATOR_WEBHOOK_{variable}"])
        assert str(path.parent) in mounts
    # No operator Deployment's selector matches the webhook pods, and the Service selects
    # those pods only.
    operator_selector = deployment["spec"]["selector"]["matchLabels"]
    webhook_labels = webhook["spec"]["template"]["metadata"]["labels"]
    assert not operator_selector.items() <= webhook_labels.items()
    service = one(defaults, "Service", "-webhook")
    assert service["spec"]["selector"] == webhook["spec"]["selector"]["matchLabels"]
    # Kopf registers https://<host>:<listening port>/...: the Service must expose that port.
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 9443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }


def test_the_self_signed_webhook_certificate_covers_the_service_name(
    defaults: list[dict[str, Any]],
) -> None:
    secret = one(defaults, "Secret", "-webhook-tls")
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "odoo-operator-webhook.odoo-operator.svc" in names.get_values_for_type(x509.DNSName)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)


def test_the_release_owns_a_fail_closed_webhook_configuration_trusting_its_ca(
    defaults: list[dict[str, Any]],
) -> None:
    configuration = one(defaults, "ValidatingWebhookConfiguration")
    instances, backups, restores = configuration["webhooks"]
    secret = one(defaults, "Secret", "-webhook-tls")
    # Deletions are never gated: a tenant can always be removed, operator or not. A restore
    # is immutable, so only its creation is checked.
    for webhook, resource, operations, handler in (
        (instances, "odooinstances", ["CREATE", "UPDATE"], admission_handlers.WEBHOOK_HANDLER_ID),
        (
            backups,
            "odoobackups",
            ["CREATE", "UPDATE"],
            admission_handlers.BACKUP_WEBHOOK_HANDLER_ID,
        ),
        (restores, "odoorestores", ["CREATE"], admission_handlers.RESTORE_WEBHOOK_HANDLER_ID),
    ):
        assert webhook["failurePolicy"] == "Fail"
        assert webhook["sideEffects"] == "None"
        (rule,) = webhook["rules"]
        assert rule["operations"] == operations
        assert (rule["apiGroups"], rule["resources"]) == (["odoo.tenantops.io"], [resource])
        assert webhook["clientConfig"]["service"] == {
            "name": "odoo-operator-webhook",
            "namespace": "odoo-operator",
            "port": 9443,
            # Kopf serves each admission handler under its id.
            "path": f"/{handler}",
        }
        assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    deployment = one(defaults, "Deployment", "-webhook")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["ODOO_OPERATOR_WEBHOOK_MANAGED"] == "false"  # no pod ever rewrites it


def test_with_cert_manager_the_ca_injector_fills_the_webhook_ca_bundle(
    everything: list[dict[str, Any]],
) -> None:
    configuration = one(everything, "ValidatingWebhookConfiguration")
    assert configuration["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "odoo-operator/odoo-operator-webhook"
    }
    assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]
    assert one(everything, "Certificate", "-webhook")["metadata"]["name"] == "odoo-operator-webhook"


def test_ha_runs_two_peering_replicas_with_a_disruption_budget(
    everything: list[dict[str, Any]],
) -> None:
    deployment = one(everything, "Deployment", "odoo-operator")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ODOO_OPERATOR_PEERING"]["value"] == "odoo-operator"
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert one(everything, "ClusterKopfPeering")["metadata"]["name"] == "odoo-operator"
    assert one(everything, "PodDisruptionBudget", "odoo-operator")["spec"]["minAvailable"] == 1
    # cert-manager issues the serving certificate into the Secret the pod mounts.
    certificate = one(everything, "Certificate", "-webhook")
    assert certificate["spec"]["secretName"] == "odoo-operator-webhook-tls"
    assert "odoo-operator-webhook.odoo-operator.svc" in certificate["spec"]["dnsNames"]
    assert not [d for d in everything if d["kind"] == "Secret"]


def test_two_shards_run_two_operator_deployments_each_with_its_own_peering(
    tmp_path: Path,
) -> None:
    rendered = render("--values", str(EVERYTHING_ON), "--set", "shards={a,b}").stdout
    docs = documents(rendered)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    webhook = deployments.pop("odoo-operator-webhook")
    assert sorted(deployments) == ["odoo-operator-a", "odoo-operator-b"]
    # The webhook pods know the shards (they stamp them) but serve none.
    webhook_env = {
        e["name"]: e.get("value")
        for e in webhook["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert webhook_env["ODOO_OPERATOR_SHARDS"] == "a,b"
    assert "ODOO_OPERATOR_SHARD" not in webhook_env
    for shard, deployment in zip("ab", sorted(deployments.values(), key=_name), strict=True):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector["odoo.tenantops.io/shard"] == shard
        assert deployment["spec"]["template"]["metadata"]["labels"] == {
            **deployment["spec"]["template"]["metadata"]["labels"],
            **selector,
        }
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["ODOO_OPERATOR_SHARDS"] == "a,b"
        assert env["ODOO_OPERATOR_SHARD"] == shard
        assert env["ODOO_OPERATOR_PEERING"] == f"odoo-operator-{shard}"
    peerings = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "ClusterKopfPeering")
    assert peerings == ["odoo-operator-a", "odoo-operator-b"]
    budgets = [
        d
        for d in docs
        if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] != "odoo-operator-webhook"
    ]
    assert sorted(
        b["spec"]["selector"]["matchLabels"]["odoo.tenantops.io/shard"] for b in budgets
    ) == ["a", "b"]
    role = one(docs, "ClusterRole")
    patchable = [
        r
        for r in role["rules"]
        if r.get("resources") == ["clusterkopfpeerings"] and "patch" in r["verbs"]
    ]
    assert patchable[0]["resourceNames"] == ["odoo-operator-a", "odoo-operator-b"]
    # Both shards' pods answer admission; the mutating webhook stamps the shard label.
    mutating = one(docs, "MutatingWebhookConfiguration")
    hooks = {
        hook["clientConfig"]["service"]["path"]: (
            hook["rules"][0]["resources"],
            hook["rules"][0]["operations"],
            hook["failurePolicy"],
        )
        for hook in mutating["webhooks"]
    }
    # The paths are the handlers' ids: Kopf serves each kind's handler at /<id>.
    ids = admission_handlers.SHARD_WEBHOOK_HANDLER_IDS
    assert hooks == {
        f"/{ids['odooinstances']}": (
            ["odooinstances"],
            ["CREATE", "UPDATE"],
            "Fail",
        ),
        f"/{ids['odoobackups']}": (["odoobackups"], ["CREATE"], "Fail"),
        f"/{ids['odoorestores']}": (["odoorestores"], ["CREATE"], "Fail"),
    }
    report = kubeconform(rendered, tmp_path)
    assert report["exit_code"] == 0, report


def test_without_shards_there_is_one_deployment_and_no_mutating_webhook(
    defaults: list[dict[str, Any]],
) -> None:
    assert one(defaults, "Deployment", "odoo-operator")["metadata"]["name"] == "odoo-operator"
    assert (
        "odoo.tenantops.io/shard"
        not in one(defaults, "Deployment", "odoo-operator")["spec"]["selector"]["matchLabels"]
    )
    assert not [d for d in defaults if d["kind"] == "MutatingWebhookConfiguration"]


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def test_the_configmap_is_an_operator_configuration_naming_secrets_only(
    everything: list[dict[str, Any]],
) -> None:
    data = yaml.safe_load(one(everything, "ConfigMap", "-config")["data"]["config.yaml"])
    config = OperatorConfig.from_mapping(data)
    assert config.namespace == NAMESPACE
    assert config.postgres_server(None).secret == "postgres-main"
    assert config.blob_store(None).container == "odoo-backups"
    assert config.default_storage_class == "azurefile-csi-premium"
    assert config.operator_image.startswith("ghcr.io/tenantops/odoo-operator@sha256:")
    assert config.images["18.0"] == "docker.io/library/odoo:18.0"
    for section in ("postgresServers", "redisServers", "blobStores"):
        for entry in data[section].values():
            assert set(entry) <= {"secretRef", "default", "dedicated", "container"}


def test_the_network_policy_selects_the_operator_and_opens_only_its_ports(
    everything: list[dict[str, Any]],
) -> None:
    policy = one(everything, "NetworkPolicy", "odoo-operator")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "odoo-operator"
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress_ports == {"liveness", "metrics"}  # admission is the webhook pods'
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 443, 6443, 5432, 6379, 6380, 8200, 8069}
    webhook = one(everything, "NetworkPolicy", "-webhook")["spec"]
    assert webhook["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == (
        "odoo-operator-webhook"
    )
    assert {p["port"] for rule in webhook["ingress"] for p in rule["ports"]} == {
        "liveness",
        "webhook",
        "metrics",
    }
    # The API server and the blob store (the journal of refusals): no database, no tenant.
    assert {p["port"] for rule in webhook["egress"] for p in rule["ports"]} == {53, 443, 6443}
    (health_check,) = [r for r in policy["egress"] if r["ports"][0]["port"] == 8069]
    # Odoo's HTTP port only in the namespaces the operator manages: its synthetic checks.
    assert health_check["to"] == [
        {"namespaceSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "odoo-operator"}}}
    ]


# -- least privilege --------------------------------------------------------------------------


def _grants(role: dict[str, Any]) -> Iterator[tuple[tuple[str, str, str], list[str]]]:
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    yield (group, resource, verb), rule.get("resourceNames", [])


def test_the_cluster_role_grants_only_the_allowlist(everything: list[dict[str, Any]]) -> None:
    role = one(everything, "ClusterRole")
    grants = list(_grants(role))
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), f"wildcard in {rule}"
        assert "nonResourceURLs" not in rule
    granted = {grant for grant, _ in grants}
    assert granted - ALLOWED.keys() == set(), "grants missing from the allowlist"
    assert ALLOWED.keys() - granted == set(), "allowlist entries the chart no longer grants"
    for (group, resource, verb), names in grants:
        if (group, resource) in MUST_NAME:
            assert set(names) == MUST_NAME[(group, resource)], (resource, verb)
        if resource == "clusterkopfpeerings" and verb == "patch":
            assert names == ["odoo-operator"]
        # Escalation paths never granted.
        assert verb not in ("escalate", "bind", "impersonate", "update") or resource.endswith(
            "/finalizers"
        )
    # No cluster-wide reading of every Secret, ever: each grant names its Secrets.
    assert all(names for (_, resource, _), names in grants if resource == "secrets")


def test_without_the_watch_cache_the_operator_lists_and_watches_only_its_own_kinds(
    defaults: list[dict[str, Any]],
) -> None:
    grants = {grant for grant, _ in _grants(one(defaults, "ClusterRole"))}
    assert not [g for g in grants if ALLOWED.get(g) == WATCH_CACHE_ONLY]
    env = one(defaults, "Deployment", "odoo-operator")["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    assert "ODOO_OPERATOR_WATCH_CACHE" not in {e["name"] for e in env}


def test_without_ha_there_is_no_peering_grant(defaults: list[dict[str, Any]]) -> None:
    role = one(defaults, "ClusterRole")
    assert not [g for g, _ in _grants(role) if g[0] == "kopf.dev"]


def test_the_role_reads_only_the_configured_server_secrets(
    everything: list[dict[str, Any]], defaults: list[dict[str, Any]]
) -> None:
    role = _role_in(everything, NAMESPACE)
    rules = {tuple(r["resources"]): r for r in role["rules"]}
    assert rules[("events",)]["verbs"] == ["create"]
    assert rules[("secrets",)]["verbs"] == ["get"]
    assert rules[("secrets",)]["resourceNames"] == [
        "blob-main",
        "postgres-dedicated",
        "postgres-main",
        "redis-main",
    ]
    # No servers configured: no Secret may be read at all (an empty resourceNames means all).
    assert [r["resources"] for r in _role_in(defaults, NAMESPACE)["rules"]] == [["events"]]


def test_events_of_cluster_scoped_objects_may_be_created_in_default_and_nothing_else(
    defaults: list[dict[str, Any]],
) -> None:
    # Kopf posts them in the namespace "default"; found by the RBAC lifecycle test.
    assert _role_in(defaults, "default")["rules"] == [
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}
    ]


def _role_in(docs: list[dict[str, Any]], namespace: str) -> dict[str, Any]:
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == namespace]
    assert len(roles) == 1, roles
    return roles[0]


# -- the confinement policy -------------------------------------------------------------------

OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:odoo-operator"
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def test_the_confinement_policy_denies_and_matches_only_the_operators_service_account(
    defaults: list[dict[str, Any]],
) -> None:
    policy = one(defaults, "ValidatingAdmissionPolicy")
    binding = one(defaults, "ValidatingAdmissionPolicyBinding")
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    # Only the chart's ServiceAccount, in the release namespace: nobody else is evaluated.
    assert spec["matchConditions"] == [
        {"name": "is-the-operator", "expression": f"request.userInfo.username == '{OPERATOR_USER}'"}
    ]
    # Every write of every kind and subresource, so no namespaced kind escapes the rules.
    assert spec["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["*"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE", "DELETE"],
            "resources": ["*/*"],
        }
    ]
    assert "namespaceSelector" not in spec["matchConstraints"]
    # Refusals look like RBAC's: 403 Forbidden, which the lifecycle test counts.
    assert {v.get("reason") for v in spec["validations"]} == {"Forbidden"}
    assert all(v["messageExpression"].startswith("'the odoo-operator") for v in spec["validations"])


def test_the_confinement_policy_knows_the_tenant_label_namespace_and_service_account(
    defaults: list[dict[str, Any]],
) -> None:
    spec = one(defaults, "ValidatingAdmissionPolicy")["spec"]
    variables = {v["name"]: v["expression"] for v in spec["variables"]}
    assert variables["instanceLabel"] == f"'{INSTANCE_LABEL}'"
    assert tenant_namespace("x") == "odoo-x"  # the rule below: name == 'odoo-' + label
    assert "== 'odoo-' + namespaceObject.metadata.labels[" in variables["inTenantNamespace"]
    rules = " ".join(v["expression"] for v in spec["validations"])
    assert f"variables.requestNamespace == '{NAMESPACE}'" in rules
    # The tenant's ServiceAccount, as the workload and backup Job builders name it.
    assert "variables.podSpec.serviceAccountName in ['odoo','odoo-backup']" in rules
    assert "'kubernetes.io/service-account-token'" in rules
    assert "variables.group != 'rbac.authorization.k8s.io'" in rules
    for field in ("privileged", "hostNetwork", "hostPID", "hostIPC", "hostPath"):
        assert field in rules, field


def test_the_confinement_policy_follows_the_release_and_can_be_switched_off() -> None:
    other = documents(
        helm(
            "template",
            "tenants",
            str(CHART),
            "--namespace",
            "platform",
            "--kube-version",
            binaries.KUBERNETES_VERSION,
            "--set",
            "serviceAccount.name=odoo-bot",
        ).stdout
    )
    policy = one(other, "ValidatingAdmissionPolicy")
    assert policy["metadata"]["name"] == "tenants-odoo-operator-confinement"
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"].endswith("'system:serviceaccount:platform:odoo-bot'")
    off = documents(render("--set", "confinementPolicy.enabled=false").stdout)
    assert not [d for d in off if d["kind"] in POLICY_KINDS]
    assert one(off, "ClusterRole")  # RBAC stays


def test_the_confinement_policy_refuses_a_cluster_without_validating_admission_policy_v1() -> None:
    args = ["template", "odoo-operator", str(CHART), "--namespace", NAMESPACE]
    result = helm(*args, "--kube-version", "1.29.9", check=False)
    assert result.returncode != 0
    assert "confinementPolicy.enabled needs Kubernetes 1.30 or later" in result.stderr
    off = helm(*args, "--kube-version", "1.29.9", "--set", "confinementPolicy.enabled=false")
    assert not [d for d in documents(off.stdout) if d["kind"] in POLICY_KINDS]


# -- optional parts ---------------------------------------------------------------------------


def test_monitoring_and_argocd_parts_render_only_when_asked(
    defaults: list[dict[str, Any]], everything: list[dict[str, Any]]
) -> None:
    optional = {"ServiceMonitor", "PrometheusRule", "ClusterKopfPeering", "PodDisruptionBudget"}
    # The webhook's two pods have their budget by default (admission fails closed).
    assert [_name(d) for d in defaults if d["kind"] in optional] == ["odoo-operator-webhook"]
    assert {d["kind"] for d in everything} >= optional
    assert not [d for d in defaults if d["metadata"]["name"].endswith("-grafana-dashboard")]
    health = one(everything, "ConfigMap", "-argocd-health")["data"]
    for kind in ("OdooInstance", "OdooBackup", "OdooRestore"):
        script = health[f"resource.customizations.health.odoo.tenantops.io_{kind}"]
        assert script == (CHART / "files" / "argocd" / f"{kind.lower()}.lua").read_text()


def _alert_names(groups: list[dict[str, Any]]) -> list[str]:
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_prometheus_rule_ships_the_alert_rules_of_monitoring(
    everything: list[dict[str, Any]],
) -> None:
    source = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())["spec"]["groups"]
    rule = one(everything, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    *shipped, extra = rule["spec"]["groups"]
    assert _alert_names(shipped) == _alert_names(source)
    assert shipped == source
    # The Prometheus templates of the annotations are not Helm's: they come out as written.
    summaries = [r["annotations"]["summary"] for group in shipped for r in group["rules"]]
    assert "Tenant {{ $labels.instance }} has no good backup within its RPO" in summaries
    per_tenant = [s for s in summaries if "{{ $labels.instance }}" in s]
    assert len(per_tenant) >= 10
    # metrics.prometheusRule.extraRules: one more group, after the shipped ones.
    assert extra["name"] == "odoo-operator.extra"
    assert _alert_names([extra]) == ["OdooOperatorDown"]
    assert extra["rules"][0]["labels"] == {"severity": "critical"}


def test_without_extra_rules_the_prometheus_rule_has_no_extra_group() -> None:
    docs = documents(render("--set", "metrics.prometheusRule.enabled=true").stdout)
    source = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())["spec"]["groups"]
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert [g["name"] for g in rule["spec"]["groups"]] == [g["name"] for g in source]


def test_the_grafana_dashboard_ships_as_a_configmap_for_the_sidecar(
    everything: list[dict[str, Any]],
) -> None:
    source = (MONITORING / "grafana-dashboard.json").read_text()
    dashboard = one(everything, "ConfigMap", "-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Odoo"}
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert list(dashboard["data"]) == ["odoo-operator.json"]
    assert json.loads(dashboard["data"]["odoo-operator.json"]) == json.loads(source)
    assert dashboard["data"]["odoo-operator.json"] == source
    # By default: the release namespace and the Grafana chart's sidecar label only.
    docs = documents(render("--set", "metrics.grafanaDashboard.enabled=true").stdout)
    default = one(docs, "ConfigMap", "-grafana-dashboard")["metadata"]
    assert default["namespace"] == NAMESPACE
    assert default["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in default


def test_the_service_monitor_keeps_the_tenants_instance_label(
    everything: list[dict[str, Any]],
) -> None:
    # Per-tenant series name the tenant in `instance`; without honorLabels Prometheus replaces
    # it with the target's address and the alert rules (by instance) lose the tenant.
    monitor = one(everything, "ServiceMonitor")
    assert [endpoint.get("honorLabels") for endpoint in monitor["spec"]["endpoints"]] == [True]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


# -- the kustomize base -----------------------------------------------------------------------


def base_rendering() -> str:
    """What manifests/base/odoo-operator.yaml must hold (make chart-sync writes it)."""
    result = render("--values", str(REPO / "manifests" / "base" / "chart-values.yaml"))
    return result.stdout


def test_the_kustomize_base_is_the_chart_rendered(tmp_path: Path) -> None:
    base = REPO / "manifests" / "base" / "odoo-operator.yaml"
    assert base.read_text() == base_rendering(), "run make chart-sync"
    kustomization = yaml.safe_load((REPO / "manifests" / "base" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["namespace.yaml", "odoo-operator.yaml"]
    report = kubeconform(base.read_text(), tmp_path)
    assert report["exit_code"] == 0, json.dumps(report["resources"], indent=2)


def kustomize_build(directory: Path) -> str:
    """`kustomize build` of ``directory``: the standalone kustomize, or kubectl's built-in one.

    The kustomize install is a product of its own: without either tool the test fails
    rather than skips.
    """
    standalone = shutil.which("kustomize")
    kubectl = shutil.which("kubectl")
    if standalone is not None:
        argv = [standalone, "build", str(directory)]
    elif kubectl is not None:
        argv = [kubectl, "kustomize", str(directory)]
    else:
        pytest.fail("neither kustomize nor kubectl is on PATH: the kustomize install is untested")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


EVENTS_RBAC = {("Role", "odoo-operator-events"), ("RoleBinding", "odoo-operator-events")}


@pytest.mark.parametrize("directory", ["base", "overlays/aks"])
def test_the_kustomize_install_keeps_the_events_role_in_default_and_the_rest_in_place(
    directory: str,
) -> None:
    docs = documents(kustomize_build(REPO / "manifests" / directory))
    rendered = {(d["kind"], d["metadata"]["name"]): d["metadata"].get("namespace") for d in docs}
    # Kopf posts the Events of cluster-scoped objects in "default": the Role that allows it
    # must stay there (a `namespace:` transformer used to move it into odoo-operator).
    for key in EVENTS_RBAC:
        assert rendered[key] == "default", f"{key} rendered into {rendered[key]}"
    assert _role_in(docs, "default")["rules"] == [
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}
    ]
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "odoo-operator", "namespace": NAMESPACE}
        ], binding["metadata"]["name"]
    # Everything else namespaced lives in the operator's namespace, as the chart renders it.
    base = {
        (d["kind"], d["metadata"]["name"]): d["metadata"].get("namespace")
        for d in documents(base_rendering())
    }
    assert {key: rendered[key] for key in base} == base
    namespaced = {key: ns for key, ns in rendered.items() if ns is not None}
    assert set(namespaced.values()) == {NAMESPACE, "default"}
    assert {key for key, ns in namespaced.items() if ns == "default"} == EVENTS_RBAC
    # The confinement policy ships, bound to the ServiceAccount the install creates.
    policy = one(docs, "ValidatingAdmissionPolicy")
    account = one(docs, "ServiceAccount")["metadata"]
    user = f"system:serviceaccount:{account['namespace']}:{account['name']}"
    assert user == OPERATOR_USER
    assert policy["spec"]["matchConditions"][0]["expression"].endswith(f"'{user}'")
    assert one(docs, "ValidatingAdmissionPolicyBinding")["spec"]["validationActions"] == ["Deny"]


def test_a_kustomize_overlay_switches_the_confinement_policy_off_as_documented(
    tmp_path: Path,
) -> None:
    # The overlay of docs/install.md ("The confinement policy"), built on the real base.
    (tmp_path / "base").symlink_to(REPO / "manifests" / "base")
    patches = "".join(
        "  - patch: |-\n"
        "      $patch: delete\n"
        "      apiVersion: admissionregistration.k8s.io/v1\n"
        f"      kind: {kind}\n"
        "      metadata:\n"
        "        name: odoo-operator-confinement\n"
        for kind in ("ValidatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy")
    )
    overlay = f"resources:\n  - base\npatches:\n{patches}"
    assert overlay.split("patches:\n")[1] in (REPO / "docs" / "install.md").read_text()
    (tmp_path / "kustomization.yaml").write_text(overlay)
    with_policy = documents(kustomize_build(REPO / "manifests" / "base"))
    without = documents(kustomize_build(tmp_path))
    assert [d for d in with_policy if d["kind"] in POLICY_KINDS]
    assert not [d for d in without if d["kind"] in POLICY_KINDS]
    assert len(without) == len(with_policy) - 2


def test_the_aks_overlay_adds_workload_identity_azure_files_and_node_pools(
    tmp_path: Path,
) -> None:
    built = kustomize_build(REPO / "manifests" / "overlays" / "aks")
    docs = documents(built)
    account = one(docs, "ServiceAccount")
    assert "azure.workload.identity/client-id" in account["metadata"]["annotations"]
    pod = one(docs, "Deployment", "odoo-operator")["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    config = OperatorConfig.from_mapping(
        yaml.safe_load(one(docs, "ConfigMap", "-config")["data"]["config.yaml"])
    )
    assert config.default_storage_class == "azurefile-csi-premium"
    assert config.dedicated_node_selector == {"odoo.tenantops.io/pool": "dedicated"}
    assert config.dedicated_tolerations[0]["key"] == "odoo.tenantops.io/dedicated"
    assert config.blob_store(None).secret == "blob-main"
    assert {d["metadata"]["labels"]["app.kubernetes.io/managed-by"] for d in docs} == {"kustomize"}
    report = kubeconform(built, tmp_path)
    assert report["exit_code"] == 0, json.dumps(report["resources"], indent=2)


def test_generated_schema_files_follow_kubeconforms_naming() -> None:
    assert binaries.kind_schema_file("apps", "v1", "Deployment") == "deployment-apps-v1.json"
    assert binaries.kind_schema_file("", "v1", "Service") == "service-v1.json"
    assert (
        binaries.kind_schema_file("rbac.authorization.k8s.io", "v1", "ClusterRole")
        == "clusterrole-rbac-v1.json"
    )
    schemas = binaries.write_kind_schemas(
        {
            "io.k8s.Thing": {
                "x-kubernetes-group-version-kind": [
                    {"group": "example.io", "version": "v1", "kind": "Thing"}
                ],
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "spec": {"$ref": "#/definitions/io.k8s.Thing"},
                    "port": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.X"},
                },
            },
            "io.k8s.apimachinery.pkg.util.intstr.X": {"type": "string", "format": "int-or-string"},
        }
    )
    thing = schemas["thing-example-v1.json"]
    assert thing["additionalProperties"] is False
    assert thing["properties"]["spec"] == {}  # a recursive reference accepts anything
    assert thing["properties"]["port"] == {"oneOf": [{"type": "string"}, {"type": "integer"}]}
