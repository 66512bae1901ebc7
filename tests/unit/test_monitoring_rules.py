"""The alert rules, their runbooks and the Grafana dashboard in monitoring/.

Every expression is parsed with PromQL's grammar (the promql-parser package) and may only
name metrics that odoo_operator.metrics defines, or the Traefik metrics of
:data:`TRAEFIK_METRICS` (the ingress telemetry). The rules also go through
``promtool check rules`` and the synthetic-series rule tests in monitoring/tests/, with the
promtool the bootstrap builds (see :func:`_promtool`); without one those two tests fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from odoo_devstack import binaries
from odoo_operator import metrics

REPO = Path(__file__).parents[2]
MONITORING = REPO / "monitoring"
RULES = MONITORING / "prometheus-rules.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RUNBOOK_URL = "https://github.com/tenantops/odoo-operator/blob/main/docs/runbooks/"
SEVERITIES = {"critical", "warning", "info"}
# The tiers the issue asks for, by alert name.
EXPECTED = {
    "critical": {
        "OdooBackupRPOBreached",
        "OdooBackupVerificationFailed",
        "OdooIngressCertificateExpiryImminent",
        "OdooTenantNotReady",
        "OdooTenantUnreachable",
        "OdooUpgradeFailed",
    },
    "warning": {
        "OdooBackupFailed",
        "OdooCronJobsOverdue",
        "OdooIngressCertificateExpiring",
        "OdooTenantConnectionsNearLimit",
        "OdooTenantHttp5xxRatioHigh",
        "OdooTenantLatencyHigh",
        "OdooTenantLongTransaction",
        "OdooTenantProbeDown",
        "OdooRestoreDrillNotPassed",
    },
    "info": {"OdooReconcileErrorsRising"},
}
# Traefik v3's Prometheus metrics (metrics.prometheus with addRoutersLabels and
# addServicesLabels) that the ingress alerts and dashboard panels may select.
TRAEFIK_METRICS = {
    "traefik_service_requests_total",
    "traefik_service_request_duration_seconds_bucket",
    "traefik_service_request_duration_seconds_sum",
    "traefik_service_request_duration_seconds_count",
    "traefik_router_requests_total",
    "traefik_tls_certs_not_after",
}
# How Traefik's Kubernetes CRD provider names a tenant's backend (Service `odoo` of
# namespace `odoo-<instance>`, port 8069 or the websocket port 8072), and how the per-tenant
# ingress alerts take the tenant's name from it.
TENANT_SERVICE = 'service=~"odoo-.+-odoo-[0-9a-f]{20}@kubernetescrd"'
TENANT_FROM_SERVICE = '"instance", "$1", "service", "odoo-(.+)-odoo-[0-9a-f]{20}@kubernetescrd"'
ALERTS_TEST = MONITORING / "tests" / "alerts-test.yaml"


def _known_metrics() -> set[str]:
    return metrics.metric_names() | TRAEFIK_METRICS


def _rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def _alerts() -> list[dict[str, Any]]:
    return [rule for group in _rules()["spec"]["groups"] for rule in group["rules"]]


def _selected_metrics(expr: str) -> set[str]:
    """The metric names an expression selects, from its syntax tree."""
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _duration_seconds(text: str) -> float:
    return float(promql_parser.parse_duration(text).total_seconds())


def test_the_rules_file_is_a_prometheus_rule_with_named_groups() -> None:
    rules = _rules()
    assert rules["apiVersion"] == "monitoring.coreos.com/v1"
    assert rules["kind"] == "PrometheusRule"
    names = [group["name"] for group in rules["spec"]["groups"]]
    assert len(names) == len(set(names))
    alerts = [alert["alert"] for alert in _alerts()]
    assert len(alerts) == len(set(alerts)), "alert names must be unique"


@pytest.mark.parametrize("alert", _alerts(), ids=lambda alert: str(alert["alert"]))
def test_every_alert_is_complete_and_parses(alert: dict[str, Any]) -> None:
    name = alert["alert"]
    # CamelCase; digits allowed (OdooTenantHttp5xxRatioHigh)
    assert re.fullmatch(r"Odoo[A-Z][A-Za-z0-9]+", name)
    assert alert["labels"]["severity"] in SEVERITIES
    assert alert["labels"].get("component")
    annotations = alert["annotations"]
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name} has no {key}"
    assert annotations["runbook_url"] == f"{RUNBOOK_URL}{name}.md"
    runbook = REPO / "docs" / "runbooks" / f"{name}.md"
    assert runbook.is_file(), f"{runbook} is missing"
    text = runbook.read_text()
    assert text.startswith(f"# {name} ({alert['labels']['severity']})")
    assert "## Diagnosis" in text
    assert "## Fix" in text
    assert "for" in alert
    assert _duration_seconds(alert["for"]) >= 0
    used = _selected_metrics(alert["expr"])
    assert used, f"{name} selects no metric"
    assert used <= _known_metrics(), f"{name} uses unknown metrics {used - _known_metrics()}"


def test_the_tiers_hold_the_alerts_the_issue_asks_for() -> None:
    by_severity: dict[str, set[str]] = {}
    for alert in _alerts():
        by_severity.setdefault(alert["labels"]["severity"], set()).add(alert["alert"])
    for severity, wanted in EXPECTED.items():
        assert wanted <= by_severity.get(severity, set()), severity
    assert (
        _duration_seconds(next(a for a in _alerts() if a["alert"] == "OdooTenantNotReady")["for"])
        == 15 * 60
    )


def test_per_tenant_alerts_keep_the_instance_label() -> None:
    # Aggregations keep `instance` so that the summary can name the tenant.
    for alert in _alerts():
        if "$labels.instance" in alert["annotations"]["summary"]:
            groupings = re.findall(r"by \(([^)]*)\)", alert["expr"])
            assert any(
                "instance" in [label.strip() for label in grouping.split(",")]
                for grouping in groupings
            ), alert["alert"]


def _traefik_alerts() -> list[dict[str, Any]]:
    return [a for a in _alerts() if _selected_metrics(a["expr"]) & TRAEFIK_METRICS]


def test_per_tenant_ingress_alerts_take_the_tenant_from_traefiks_service_name() -> None:
    # Traefik's series carry the scrape target's `instance` (a Traefik replica); the rules sum
    # that away by `service` before label_replace puts the tenant's name there.
    per_tenant = [a for a in _traefik_alerts() if "$labels.instance" in a["annotations"]["summary"]]
    assert {a["alert"] for a in per_tenant} >= {
        "OdooTenantHttp5xxRatioHigh",
        "OdooTenantLatencyHigh",
    }
    for alert in per_tenant:
        expr = alert["expr"]
        assert TENANT_SERVICE in expr, alert["alert"]
        assert "label_replace(" in expr, alert["alert"]
        assert TENANT_FROM_SERVICE in expr, alert["alert"]
        assert "sum by (service" in expr, alert["alert"]
        assert alert["labels"]["component"] == "tenant"
    for alert in _traefik_alerts():
        if alert not in per_tenant:
            assert alert["labels"]["component"] == "ingress", alert["alert"]
            assert "$labels.instance" not in str(alert["annotations"]), alert["alert"]


def test_the_ingress_alerts_have_rule_tests_that_fire_and_that_do_not() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for alert in _traefik_alerts():
        name = alert["alert"]
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no test where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no test where it does not"


def test_a_broken_expression_is_refused_by_the_parser() -> None:
    with pytest.raises(ValueError, match="parenthesis"):
        promql_parser.parse("max by (instance) (odoo_operator_backup_rpo_breach == 1")


def _dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries: list[str] = []
    for panel in dashboard["panels"]:
        for nested in [panel, *panel.get("panels", [])]:
            queries.extend(target["expr"] for target in nested.get("targets", []))
    return queries


def test_the_dashboard_is_json_and_queries_only_known_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "odoo-operator"
    queries = _dashboard_queries(dashboard)
    assert len(queries) >= 20
    used: set[str] = set()
    for query in queries:
        names = _selected_metrics(query)
        assert names, query
        used |= names
    assert used <= _known_metrics(), used - _known_metrics()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    instance = variables["instance"]["query"]["query"]
    match = re.fullmatch(r"label_values\((\w+), instance\)", instance)
    assert match is not None
    assert match.group(1) in metrics.metric_names()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_covers_the_fleet_and_the_tenant_drill_down() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = "\n".join(_dashboard_queries(dashboard))
    for needed in (
        "odoo_operator_tenants",
        "odoo_operator_backup_last_success_timestamp_seconds",
        "odoo_operator_backup_rpo_breach",
        "odoo_operator_tenant_cron_overdue",
        "odoo_operator_reconcile_duration_seconds_bucket",
        "traefik_router_requests_total",
        "traefik_service_requests_total",
        "traefik_service_request_duration_seconds_bucket",
        "traefik_tls_certs_not_after",
    ):
        assert needed in queries
    assert 'instance="$instance"' in queries
    # The tenant's own Traefik backend, by name (the variable is the OdooInstance's name).
    assert 'service=~"odoo-$instance-odoo-[0-9a-f]{20}@kubernetescrd"' in queries


def _promtool() -> str:
    """``PROMTOOL`` if set, else the promtool the bootstrap provides (``make bootstrap``,
    which ``make test`` runs first, builds it into the project's cache: about 16 minutes
    cold on 2 cores). Never built here, so the unit tests stay fast: a missing one fails."""
    override = os.environ.get("PROMTOOL")
    if override:
        return override
    found = binaries.locate(binaries.PROMTOOL)
    if found is None:
        pytest.fail(
            f"no promtool v{binaries.PROMTOOL_VERSION} at {binaries.cached_path(binaries.PROMTOOL)}"
            " nor a promtool 3.x on PATH: run `make bootstrap` (or set PROMTOOL)",
            pytrace=False,
        )
    return str(found)


def _plain_rule_file(tmp_path: Path) -> Path:
    """The PrometheusRule's spec is a plain Prometheus rule file; written as rules.yaml,
    and without annotations as rules-without-annotations.yaml (promtool compares them)."""
    spec = _rules()["spec"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(spec))
    bare = {
        "groups": [
            {
                **group,
                "rules": [
                    {k: v for k, v in rule.items() if k != "annotations"} for rule in group["rules"]
                ],
            }
            for group in spec["groups"]
        ]
    }
    (tmp_path / "rules-without-annotations.yaml").write_text(yaml.safe_dump(bare))
    return path


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    promtool = _promtool()
    result = subprocess.run(
        [promtool, "check", "rules", str(_plain_rule_file(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_tests_with_synthetic_series(tmp_path: Path) -> None:
    promtool = _promtool()
    _plain_rule_file(tmp_path)
    tests = sorted((MONITORING / "tests").glob("*.yaml"))
    assert len(tests) >= 2
    for test in tests:
        copy = tmp_path / test.name
        copy.write_text(test.read_text())
        result = subprocess.run(
            [promtool, "test", "rules", str(copy)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr
