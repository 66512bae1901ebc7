"""Restore drills: the temporary tenant, its isolation, the verdict and what it publishes."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from odoo_operator import metrics
from odoo_operator.builders.network import build_network_policies
from odoo_operator.builders.objects import build_ingress
from odoo_operator.builders.tenant import Endpoint, Tenant, TenantCredentials
from odoo_operator.engine.drill import DrillInvariants, InvariantCheck
from odoo_operator.model.admission import admission_problems
from odoo_operator.model.backup import RESTORE_KIND, BackupPolicy, RestoreRequest
from odoo_operator.model.conditions import Condition
from odoo_operator.model.config import OperatorConfig
from odoo_operator.model.names import (
    API_VERSION,
    DRILL_HOST_SUFFIX,
    DRILL_LABEL,
    INSTANCE_KIND,
    INSTANCE_LABEL,
)
from odoo_operator.model.outcome import Outcome
from odoo_operator.model.shards import SHARD_LABEL
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.reconcile.drills import (
    DRILL_CONDITION,
    drill_health,
    drill_instance_name,
    drill_instance_object,
    drill_name,
    drill_object,
    last_drill_summary,
)

DRILL = "acme-drill-20250601-0500"
DRILL_BODY: Mapping[str, Any] = {"metadata": {"name": DRILL, "uid": "uid-drill-1"}}
# What metadata.name of an OdooInstance must match (CRD: pattern and at most 40 characters).
INSTANCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

CONFIG = OperatorConfig.from_mapping(
    {
        "versions": {"17.0": "odoo:17.0", "18.0": "odoo:18.0"},
        "postgresServers": {
            "main": {"secretRef": "postgres-main", "default": True},
            "dedicated": {"secretRef": "postgres-dedicated", "dedicated": True},
        },
        "redisServers": {
            "main": {"secretRef": "redis-main", "default": True},
            "dedicated": {"secretRef": "redis-dedicated", "dedicated": True},
        },
        "allowedDomains": ["example.com"],
    }
)


def _source(labels: Mapping[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A production OdooInstance with everything a drill could copy, or not."""
    body: dict[str, Any] = {
        "version": "18.0",
        "image": "registry.example.com/odoo:18.0-acme",
        "hosts": ["acme.example.com", "erp.example.com"],
        "environment": "production",
        "tenancy": "dedicated",
        "replicas": 3,
        "workers": 4,
        "cron": {"replicas": 2, "threads": 4},
        "deletionPolicy": "Retain",
        "database": {"serverRef": "dedicated", "name": "acme_books", "connectionLimit": 80},
        "redis": {"serverRef": "dedicated"},
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
        "filestore": {"size": "50Gi", "storageClassName": "premium"},
        "config": {"limit_time_real": "300"},
        "ingress": {"allowFrom": ["203.0.113.0/24"]},
        "tls": {"secretName": "acme-tls"},
        "backup": {"storeRef": "main", "drill": {"schedule": "0 5 1 * *"}, "rto": "30m"},
    }
    body.update(spec)
    meta: dict[str, Any] = {"name": "acme", "uid": "uid-acme"}
    if labels is not None:
        meta["labels"] = dict(labels)
    return {"apiVersion": API_VERSION, "kind": INSTANCE_KIND, "metadata": meta, "spec": body}


def _drill_tenant_object(source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return drill_instance_object(
        source if source is not None else _source(),
        drill_instance_name(DRILL),
        DRILL_BODY,
        "18.0",
    )


def _tenant(body: Mapping[str, Any]) -> Tenant:
    return Tenant(
        spec=InstanceSpec.from_resource(body),
        image="odoo:18.0",
        database=Endpoint("10.0.0.5", 5432),
        redis=Endpoint("redis.example", 6379),
        redis_user="odoo-x",
        redis_key_prefix="odoo:x:",
        credentials=TenantCredentials("db-secret", "redis-secret", "master-secret"),
    )


def _policy_names(tenant: Tenant) -> list[str]:
    return [str(policy["metadata"]["name"]) for policy in build_network_policies(tenant)]


# -- the temporary tenant ------------------------------------------------------------


def test_the_drill_tenant_name_is_the_same_for_the_same_drill_and_differs_between_drills() -> None:
    assert drill_instance_name(DRILL) == drill_instance_name(DRILL)
    assert drill_instance_name(DRILL) != drill_instance_name(DRILL + "x")


@pytest.mark.parametrize("drill", ["d", DRILL, "a" * 253, "restore.of.a-very-long.drill-name"])
def test_the_drill_tenant_name_is_a_valid_short_instance_name_starting_with_drill(
    drill: str,
) -> None:
    name = drill_instance_name(drill)
    assert name.startswith("drill-")
    assert len(name) <= 40
    assert INSTANCE_NAME.fullmatch(name)


def test_the_drill_tenant_is_labelled_with_its_drill_and_the_sources_shard() -> None:
    source = _source(labels={SHARD_LABEL: "shard-b", "team": "finance"})
    labels = _drill_tenant_object(source)["metadata"]["labels"]
    assert labels == {DRILL_LABEL: DRILL, SHARD_LABEL: "shard-b"}


@pytest.mark.parametrize("labels", [None, {}, {"team": "finance"}, {SHARD_LABEL: ""}])
def test_a_drill_tenant_of_an_unsharded_source_carries_only_the_drill_label(
    labels: Mapping[str, str] | None,
) -> None:
    assert _drill_tenant_object(_source(labels=labels))["metadata"]["labels"] == {
        DRILL_LABEL: DRILL
    }


def test_the_drill_tenant_is_owned_by_its_drill_so_deleting_the_drill_deletes_it() -> None:
    obj = _drill_tenant_object()
    assert obj["apiVersion"] == API_VERSION
    assert obj["kind"] == INSTANCE_KIND
    assert obj["metadata"]["name"] == drill_instance_name(DRILL)
    [owner] = obj["metadata"]["ownerReferences"]
    assert owner["apiVersion"] == API_VERSION
    assert owner["kind"] == RESTORE_KIND == "OdooRestore"
    assert owner["name"] == DRILL
    assert owner["uid"] == "uid-drill-1"


def test_the_drill_tenant_is_a_neutralized_throwaway_one_pod_tenant_without_backups() -> None:
    spec = _drill_tenant_object()["spec"]
    assert spec["environment"] == "development"
    assert spec["deletionPolicy"] == "Delete"
    assert spec["replicas"] == 1
    assert spec["cron"] == {"replicas": 0}
    assert spec["version"] == "18.0"
    assert "backup" not in spec


def test_the_drill_tenant_answers_only_on_a_host_under_drill_invalid() -> None:
    name = drill_instance_name(DRILL)
    spec = _drill_tenant_object()["spec"]
    assert spec["hosts"] == [f"{name}.drill.invalid"] == [name + DRILL_HOST_SUFFIX]
    assert "ingress" not in spec
    assert "tls" not in spec


def test_the_drill_tenant_runs_on_the_sources_servers_and_sizes_but_under_its_own_database() -> (
    None
):
    spec = _drill_tenant_object()["spec"]
    assert spec["database"] == {"serverRef": "dedicated"}  # not the source's database name
    assert spec["redis"] == {"serverRef": "dedicated"}
    assert spec["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}}
    assert spec["filestore"] == {"size": "50Gi", "storageClassName": "premium"}
    assert spec["tenancy"] == "dedicated"
    assert spec["workers"] == 4
    drill_database = InstanceSpec.from_resource(_drill_tenant_object()).database
    assert drill_database == "odoo_" + drill_instance_name(DRILL).replace("-", "_")
    assert drill_database != "acme_books"


def test_a_source_on_the_default_servers_gives_a_drill_tenant_on_the_default_servers() -> None:
    spec = _drill_tenant_object(_source(database={"name": "acme_books"}, filestore={}))["spec"]
    assert "database" not in spec
    assert "filestore" not in spec


def test_the_sources_image_is_copied_when_it_runs_the_backups_odoo_version() -> None:
    obj = drill_instance_object(_source(version="18.0"), "drill-x", DRILL_BODY, "18.0")
    assert obj["spec"]["image"] == "registry.example.com/odoo:18.0-acme"
    assert obj["spec"]["version"] == "18.0"


def test_the_sources_image_is_not_copied_when_the_backup_was_of_another_odoo_version() -> None:
    # The source was upgraded since: the drill runs the backup's version from the version map.
    obj = drill_instance_object(_source(version="18.0"), "drill-x", DRILL_BODY, "17.0")
    assert "image" not in obj["spec"]
    assert obj["spec"]["version"] == "17.0"


def test_the_drill_tenant_reads_back_as_a_drill_instance() -> None:
    spec = InstanceSpec.from_resource(_drill_tenant_object())
    assert spec.drill == DRILL
    assert not spec.production
    assert spec.cron_replicas == 0
    assert spec.deletion_policy == "Delete"


def test_an_ordinary_instance_is_no_drill() -> None:
    assert InstanceSpec.from_resource(_source()).drill is None
    assert InstanceSpec.from_resource(_source(labels={DRILL_LABEL: ""})).drill is None


# -- network isolation ---------------------------------------------------------------


def test_the_drill_tenant_gets_no_traffic_from_the_ingress_controller() -> None:
    names = _policy_names(_tenant(_drill_tenant_object()))
    assert "allow-ingress-controller" not in names
    assert "default-deny" in names
    assert "allow-operator-health-check" in names


def test_the_drill_tenant_gets_no_route_middleware_or_certificate() -> None:
    assert build_ingress(_tenant(_drill_tenant_object())) == []


def test_an_ordinary_tenant_keeps_its_ingress_policy_and_its_route() -> None:
    tenant = _tenant(_source())
    names = _policy_names(tenant)
    assert {"default-deny", "allow-ingress-controller", "allow-operator-health-check"} <= set(names)
    kinds = [obj["kind"] for obj in build_ingress(tenant)]
    assert "IngressRoute" in kinds


def test_the_drill_tenant_loses_only_the_ingress_controller_policy() -> None:
    ordinary = _source(hosts=["drill-x.example.com"])
    drill = _source(labels={DRILL_LABEL: DRILL}, hosts=["drill-x.example.com"])
    assert _policy_names(_tenant(drill)) == [
        name for name in _policy_names(_tenant(ordinary)) if name != "allow-ingress-controller"
    ]


# -- admission -----------------------------------------------------------------------


def _instance(labels: Mapping[str, str] | None = None, **spec: Any) -> InstanceSpec:
    body: dict[str, Any] = {
        "version": "18.0",
        "hosts": ["acme.example.com"],
        "database": {"serverRef": "main"},
        "redis": {"serverRef": "main"},
    }
    body.update(spec)
    meta: dict[str, Any] = {"name": "drill-0123456789ab"}
    if labels is not None:
        meta["labels"] = dict(labels)
    return InstanceSpec.from_resource({"metadata": meta, "spec": body})


def test_a_drill_labelled_instance_on_a_drill_invalid_host_passes_the_domain_check() -> None:
    spec = _instance(labels={DRILL_LABEL: DRILL}, hosts=["x.drill.invalid"])
    assert admission_problems(spec, None, CONFIG, {}) == []


def test_the_same_drill_invalid_host_without_the_drill_label_is_refused() -> None:
    spec = _instance(hosts=["x.drill.invalid"])
    assert admission_problems(spec, None, CONFIG, {}) == [
        "spec.hosts[0] x.drill.invalid is outside the allowed domains (example.com) "
        "of the operator's allowedDomains."
    ]


def test_the_drill_label_does_not_exempt_hosts_outside_drill_invalid() -> None:
    spec = _instance(labels={DRILL_LABEL: DRILL}, hosts=["x.drill.invalid", "shop.example.org"])
    assert admission_problems(spec, None, CONFIG, {}) == [
        "spec.hosts[1] shop.example.org is outside the allowed domains (example.com) "
        "of the operator's allowedDomains."
    ]


def test_a_drill_invalid_host_still_belongs_to_one_tenant_only() -> None:
    spec = _instance(labels={DRILL_LABEL: DRILL}, hosts=["x.drill.invalid"])
    assert admission_problems(spec, None, CONFIG, {"x.drill.invalid": "drill-other"}) == [
        "spec.hosts[0] x.drill.invalid is already served by OdooInstance drill-other; "
        "a host belongs to one tenant only."
    ]


def test_the_drill_tenant_the_operator_builds_is_admitted() -> None:
    spec = InstanceSpec.from_resource(_drill_tenant_object())
    assert admission_problems(spec, None, CONFIG, {}) == []


def test_the_drill_tenant_of_a_source_with_odoo_conf_smtp_is_admitted() -> None:
    source = _source(config={"smtp_server": "smtp.example.com", "limit_time_real": "300"})
    spec = InstanceSpec.from_resource(_drill_tenant_object(source))
    assert admission_problems(spec, None, CONFIG, {}) == []
    # The mail server is left out; the rest of the source's configuration is kept.
    assert dict(spec.config) == {"limit_time_real": "300"}


def test_the_drill_tenant_of_a_backup_taken_before_an_upgrade_is_admitted() -> None:
    source = _source(version="18.0", config={"limit_time_worker_cron": "600"})
    obj = drill_instance_object(source, drill_instance_name(DRILL), DRILL_BODY, "17.0")
    assert admission_problems(InstanceSpec.from_resource(obj), None, CONFIG, {}) == []
    assert "config" not in obj["spec"]


# -- the verdict: RestoreDrillPassed -------------------------------------------------

DRILLS = BackupPolicy(drill_schedule="0 5 1 * *", rto="30m")


def _last(**fields: Any) -> dict[str, Any]:
    return {
        "name": DRILL,
        "backup": "acme-20250601-0200",
        "result": "Passed",
        "completedAt": "2025-06-01T05:20:00Z",
        "rtoSeconds": 900.0,
        "rtoObjectiveSeconds": 1800.0,
        **fields,
    }


def _verdict(condition: Condition | None) -> tuple[str, str] | None:
    if condition is None:
        return None
    assert condition.type == DRILL_CONDITION == "RestoreDrillPassed"
    return condition.status, condition.reason


def test_an_instance_without_drills_or_an_rto_has_no_drill_condition() -> None:
    assert drill_health(BackupPolicy(), None, overdue=False) is None
    assert drill_health(BackupPolicy(), _last(result="Failed"), overdue=True) is None


@pytest.mark.parametrize(
    "policy", [DRILLS, BackupPolicy(drill_schedule="0 5 1 * *"), BackupPolicy(rto="30m")]
)
def test_before_the_first_drill_the_verdict_is_unknown(policy: BackupPolicy) -> None:
    assert _verdict(drill_health(policy, None, overdue=False)) == ("Unknown", "NoDrillYet")


def test_a_first_drill_that_is_overdue_is_a_breach() -> None:
    assert _verdict(drill_health(DRILLS, None, overdue=True)) == ("False", "DrillOverdue")


def test_a_failed_last_drill_is_a_breach_and_says_why() -> None:
    condition = drill_health(DRILLS, _last(result="Failed", message="restore failed"), False)
    assert _verdict(condition) == ("False", "DrillFailed")
    assert condition is not None
    assert DRILL in condition.message
    assert "restore failed" in condition.message


def test_a_failed_last_drill_is_reported_as_failed_even_when_one_is_also_overdue() -> None:
    assert _verdict(drill_health(DRILLS, _last(result="Failed"), overdue=True)) == (
        "False",
        "DrillFailed",
    )


def test_a_drill_slower_than_the_objective_is_an_rto_breach() -> None:
    last = _last(rtoSeconds=2400.0, rtoObjectiveSeconds=1800.0)
    condition = drill_health(DRILLS, last, overdue=False)
    assert _verdict(condition) == ("False", "RTOExceeded")
    assert condition is not None
    assert "2400 s" in condition.message
    assert "1800 s" in condition.message


def test_a_drill_the_operator_recorded_as_rto_exceeded_is_an_rto_breach() -> None:
    last = _last(result="RTOExceeded", rtoObjectiveSeconds=None)
    assert _verdict(drill_health(DRILLS, last, overdue=False)) == ("False", "RTOExceeded")


def test_a_drill_that_served_within_the_objective_passes() -> None:
    condition = drill_health(DRILLS, _last(), overdue=False)
    assert _verdict(condition) == ("True", "DrillPassed")
    assert condition is not None
    assert "900 s" in condition.message
    assert "objective 1800 s" in condition.message


def test_a_drill_exactly_at_the_objective_passes() -> None:
    last = _last(rtoSeconds=1800.0, rtoObjectiveSeconds=1800.0)
    assert _verdict(drill_health(DRILLS, last, overdue=False)) == ("True", "DrillPassed")


def test_a_drill_without_an_objective_passes_whatever_its_time() -> None:
    last = _last(rtoSeconds=99999.0, rtoObjectiveSeconds=None)
    policy = BackupPolicy(drill_schedule="0 5 1 * *")
    assert _verdict(drill_health(policy, last, overdue=False)) == ("True", "DrillPassed")


def test_a_passed_drill_followed_by_an_overdue_one_is_a_breach() -> None:
    assert _verdict(drill_health(DRILLS, _last(), overdue=True)) == ("False", "DrillOverdue")


# -- business invariants ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "found"), [("10.50", "10.5"), ("10.5", "10.50"), ("0", "0.00"), ("42", "42")]
)
def test_figures_equal_as_decimals_hold(expected: str, found: str) -> None:
    assert InvariantCheck("ledger.total", expected, found).holds


@pytest.mark.parametrize(("expected", "found"), [("10.50", "10.51"), ("42", "41"), ("1", "-1")])
def test_figures_that_differ_do_not_hold(expected: str, found: str) -> None:
    assert not InvariantCheck("ledger.total", expected, found).holds


def test_a_figure_missing_from_the_restored_database_does_not_hold() -> None:
    assert not InvariantCheck("rows.ir_attachment", "12", None).holds


def test_figures_that_are_not_numbers_hold_only_when_identical() -> None:
    assert InvariantCheck("currency", "EUR", "EUR").holds
    assert not InvariantCheck("currency", "EUR", "USD").holds


def test_the_summary_names_each_broken_figure_with_what_was_found_and_expected() -> None:
    invariants = DrillInvariants(
        (
            InvariantCheck("ledger.total", "1000.00", "1000"),
            InvariantCheck("rows.account_move", "120", "119"),
            InvariantCheck("rows.ir_attachment", "12", None),
        )
    )
    assert [check.name for check in invariants.broken] == [
        "rows.account_move",
        "rows.ir_attachment",
    ]
    assert invariants.summary() == (
        "differ from the backup: rows.account_move 119 for 120, rows.ir_attachment missing for 12"
    )


def test_the_summary_of_intact_books_lists_every_figure() -> None:
    invariants = DrillInvariants(
        (
            InvariantCheck("ledger.total", "1000.00", "1000"),
            InvariantCheck("rows.account_move", "120", "120"),
        )
    )
    assert invariants.broken == []
    assert invariants.summary() == "hold: ledger.total 1000.00, rows.account_move 120"


def test_a_backup_without_figures_says_so() -> None:
    assert DrillInvariants().broken == []
    assert DrillInvariants().summary() == "no business figures recorded in the backup"


def test_the_invariants_status_gives_each_figure_expected_found_and_holds() -> None:
    invariants = DrillInvariants(
        (
            InvariantCheck("ledger.total", "10.50", "10.5"),
            InvariantCheck("rows.ir_attachment", "12", None),
        )
    )
    assert invariants.as_status() == {
        "ledger.total": {"expected": "10.50", "found": "10.5", "holds": True},
        "rows.ir_attachment": {"expected": "12", "found": None, "holds": False},
    }


# -- the policy and the request ----------------------------------------------------------


def test_the_backup_policy_reads_the_drill_schedule_its_suspension_and_the_rto() -> None:
    policy = BackupPolicy.from_instance(
        {
            "spec": {
                "backup": {
                    "storeRef": "main",
                    "drill": {"schedule": "0 5 1 * *", "suspend": True},
                    "rto": "1h30m",
                }
            }
        }
    )
    assert policy is not None
    assert policy.drill_schedule == "0 5 1 * *"
    assert policy.drill_suspend is True
    assert policy.rto == "1h30m"


def test_a_drill_schedule_without_suspend_is_not_suspended() -> None:
    policy = BackupPolicy.from_instance({"spec": {"backup": {"drill": {"schedule": "0 5 * * *"}}}})
    assert policy is not None
    assert policy.drill_schedule == "0 5 * * *"
    assert policy.drill_suspend is False
    assert policy.rto is None


@pytest.mark.parametrize("backup", [{"storeRef": "main"}, {"drill": {}}, {"drill": None}])
def test_a_backup_policy_without_drills_or_rto_asks_for_neither(backup: dict[str, Any]) -> None:
    policy = BackupPolicy.from_instance({"spec": {"backup": backup}})
    assert policy is not None
    assert policy.drill_schedule is None
    assert policy.drill_suspend is False
    assert policy.rto is None


def test_a_drill_request_names_no_target() -> None:
    request = RestoreRequest.from_resource(
        {"metadata": {"name": DRILL}, "spec": {"backup": "acme-20250601-0200", "drill": True}}
    )
    assert request.drill is True
    assert request.target == ""
    assert request.backup == "acme-20250601-0200"


def test_an_ordinary_restore_is_no_drill() -> None:
    request = RestoreRequest.from_resource(
        {"metadata": {"name": "r"}, "spec": {"backup": "b", "target": {"instance": "acme"}}}
    )
    assert request.drill is False
    assert request.target == "acme"


def test_a_scheduled_drill_is_named_after_its_instance_and_slot() -> None:
    slot = datetime.datetime(2025, 6, 1, 5, 0, tzinfo=datetime.UTC)
    assert drill_name("acme", slot) == "acme-drill-20250601-0500"
    assert drill_name("acme", slot) == drill_name("acme", slot)


def test_a_scheduled_drill_is_a_drill_of_the_backup_labelled_with_its_instance() -> None:
    obj = drill_object("acme", DRILL, "acme-20250601-0200")
    assert obj["apiVersion"] == API_VERSION
    assert obj["kind"] == RESTORE_KIND
    assert obj["metadata"] == {"name": DRILL, "labels": {INSTANCE_LABEL: "acme"}}
    assert obj["spec"] == {"backup": "acme-20250601-0200", "drill": True}
    request = RestoreRequest.from_resource(obj)
    assert request.drill is True
    assert request.target == ""


def test_the_last_drill_summary_keeps_what_the_drill_found_and_drops_what_it_did_not() -> None:
    finished = {
        "metadata": {"name": DRILL},
        "spec": {"backup": "acme-20250601-0200", "drill": True},
        "status": {
            "phase": "Succeeded",
            "completedAt": "2025-06-01T05:20:00Z",
            "message": "served",
            "drill": {"result": "RTOExceeded", "rtoSeconds": 2400.0, "source": "acme"},
        },
    }
    assert last_drill_summary(finished) == {
        "name": DRILL,
        "backup": "acme-20250601-0200",
        "result": "RTOExceeded",
        "completedAt": "2025-06-01T05:20:00Z",
        "rtoSeconds": 2400.0,
        "message": "served",
    }


@pytest.mark.parametrize(("phase", "result"), [("Succeeded", "Passed"), ("Failed", "Failed")])
def test_a_drill_that_recorded_no_result_is_judged_by_its_phase(phase: str, result: str) -> None:
    finished = {"metadata": {"name": DRILL}, "spec": {"backup": "b"}, "status": {"phase": phase}}
    assert last_drill_summary(finished)["result"] == result


# -- metrics -------------------------------------------------------------------------------


@pytest.fixture
def fresh_metrics() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The rendered exposition, read back by the Prometheus parser."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _drill_outcome(status: str, reason: str, **last: Any) -> Outcome:
    outcome = Outcome(phase="Ready")
    outcome.conditions.append(Condition("Ready", "True", "Ready", "m"))
    outcome.conditions.append(Condition(DRILL_CONDITION, status, reason, "m"))  # type: ignore[arg-type]
    outcome.fields["lastDrill"] = last
    return outcome


def _series(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return "odoo_operator_" + name, tuple(sorted({"instance": "acme", **labels}.items()))


@pytest.mark.usefixtures("fresh_metrics")
def test_a_drill_over_its_objective_is_rendered_as_served_but_in_rto_breach() -> None:
    metrics.record_outcome(
        "acme",
        _drill_outcome(
            "False",
            "RTOExceeded",
            completedAt="2025-06-01T05:40:00Z",
            result="RTOExceeded",
            rtoSeconds=2400.0,
            rtoObjectiveSeconds=1800.0,
        ),
    )
    samples = _samples()
    assert samples[_series("drill_last_rto_seconds")] == 2400.0
    assert samples[_series("drill_rto_objective_seconds")] == 1800.0
    assert samples[_series("drill_last_success")] == 1  # it served, with the books intact
    assert samples[_series("drill_last_timestamp_seconds")] == 1748756400.0
    assert samples[_series("drill_breach", reason="RTOExceeded")] == 1
    assert samples[_series("drill_breach", reason="DrillFailed")] == 0
    assert samples[_series("drill_breach", reason="DrillOverdue")] == 0


@pytest.mark.usefixtures("fresh_metrics")
def test_a_failed_drill_is_rendered_as_a_failure_and_keeps_the_last_measured_rto() -> None:
    metrics.record_outcome(
        "acme",
        _drill_outcome(
            "True",
            "DrillPassed",
            completedAt="2025-05-01T05:15:00Z",
            result="Passed",
            rtoSeconds=900.0,
            rtoObjectiveSeconds=1800.0,
        ),
    )
    assert _samples()[_series("drill_last_success")] == 1
    metrics.record_outcome(
        "acme",
        _drill_outcome(
            "False",
            "DrillFailed",
            completedAt="2025-06-01T06:00:00Z",
            result="Failed",
            rtoObjectiveSeconds=1800.0,
        ),
    )
    samples = _samples()
    assert samples[_series("drill_last_success")] == 0
    assert samples[_series("drill_last_rto_seconds")] == 900.0
    assert samples[_series("drill_breach", reason="DrillFailed")] == 1
    assert samples[_series("drill_breach", reason="RTOExceeded")] == 0


@pytest.mark.usefixtures("fresh_metrics")
def test_a_tenant_without_drills_renders_no_drill_series() -> None:
    outcome = Outcome(phase="Ready")
    outcome.conditions.append(Condition("Ready", "True", "Ready", "m"))
    metrics.record_outcome("acme", outcome)
    assert not [name for name, _ in _samples() if name.startswith("odoo_operator_drill_")]


def test_the_drill_metric_families_are_served() -> None:
    assert {
        "odoo_operator_drill_last_timestamp_seconds",
        "odoo_operator_drill_last_success",
        "odoo_operator_drill_last_rto_seconds",
        "odoo_operator_drill_rto_objective_seconds",
        "odoo_operator_drill_breach",
    } <= metrics.metric_names()
