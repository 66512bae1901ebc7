"""What the admission webhook refuses, and what it lets through."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import kopf
import pytest

from odoo_operator.admission_server import webhook_server
from odoo_operator.backends.kube import KubeClient
from odoo_operator.handlers import admission as admission_handlers
from odoo_operator.model.admission import admission_problems, normalize_host
from odoo_operator.model.backup import RestoreRequest
from odoo_operator.model.claims import ADMITTED_SECONDS, Claims, ClaimsIndex, claims_of
from odoo_operator.model.config import (
    WEBHOOK_ADDR_ENV,
    WEBHOOK_CA_ENV,
    WEBHOOK_CERT_ENV,
    WEBHOOK_HOST_ENV,
    WEBHOOK_KEY_ENV,
    WEBHOOK_PORT_ENV,
    ConfigError,
    OperatorConfig,
    webhook_enabled,
)
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.reconcile.clients import Clients

CONFIG = OperatorConfig.from_mapping(
    {
        "versions": {"17.0": "odoo:17.0", "18.0": "odoo:18.0", "9.0": "odoo:9.0"},
        "postgresServers": {
            "main": {"secretRef": "postgres-main", "default": True},
            "dedicated": {"secretRef": "postgres-dedicated", "dedicated": True},
        },
        "redisServers": {
            "main": {"secretRef": "redis-main", "default": True},
            "dedicated": {"secretRef": "redis-dedicated", "dedicated": True},
        },
        "allowedDomains": ["example.com", "Acme.Test."],
    }
)
NOBODY: Mapping[str, str] = {}


def instance(name: str = "acme", **spec: Any) -> InstanceSpec:
    """An OdooInstance as the apiserver hands it over, with spec fields replaced."""
    body: dict[str, Any] = {
        "version": "18.0",
        "hosts": [f"{name}.odoo.example.com"],
        "database": {"serverRef": "main"},
        "redis": {"serverRef": "main"},
    }
    body.update(spec)
    return InstanceSpec.from_resource({"metadata": {"name": name}, "spec": body})


def refusals(
    spec: InstanceSpec,
    old: InstanceSpec | None = None,
    config: OperatorConfig = CONFIG,
    claimed: Mapping[str, str] = NOBODY,
) -> list[str]:
    return admission_problems(spec, old, config, claimed)


def test_a_valid_instance_is_admitted() -> None:
    assert refusals(instance()) == []


# -- hosts belong to one tenant ---------------------------------------------------


def test_a_host_served_by_another_instance_is_refused() -> None:
    spec = instance("globex-shop", hosts=["globex-shop.example.com", "shop.acme.com"])
    claimed = {"shop.acme.com": "globex"}
    config = dataclasses.replace(CONFIG, allowed_domains=())
    assert refusals(spec, config=config, claimed=claimed) == [
        "spec.hosts[1] shop.acme.com is already served by OdooInstance globex; "
        "a host belongs to one tenant only."
    ]


def test_host_ownership_ignores_case() -> None:
    spec = instance("intruder", hosts=["Shop.Example.COM"])
    assert refusals(spec, claimed={normalize_host("shop.example.com."): "globex"}) == [
        "spec.hosts[0] Shop.Example.COM is already served by OdooInstance globex; "
        "a host belongs to one tenant only."
    ]


def test_an_instance_keeps_its_own_hosts_on_update() -> None:
    old = instance("acme", hosts=["shop.example.com"])
    new = instance("acme", hosts=["shop.example.com"], replicas=3)
    assert refusals(new, old, claimed={"shop.example.com": "acme"}) == []


def test_a_host_nobody_serves_is_admitted() -> None:
    assert refusals(instance(hosts=["new.example.com"]), claimed={"old.example.com": "x"}) == []


# -- allowed domains ----------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["example.com", "shop.example.com", "a.b.example.com", "acme.test", "x.acme.test"]
)
def test_hosts_under_an_allowed_domain_are_admitted(host: str) -> None:
    assert refusals(instance(hosts=[host])) == []


@pytest.mark.parametrize("host", ["shop.example.org", "badexample.com", "example.com.evil.net"])
def test_hosts_outside_the_allowed_domains_are_refused(host: str) -> None:
    assert refusals(instance(hosts=["ok.example.com", host])) == [
        f"spec.hosts[1] {host} is outside the allowed domains (example.com, acme.test) "
        "of the operator's allowedDomains."
    ]


def test_without_allowed_domains_any_domain_is_admitted() -> None:
    config = dataclasses.replace(CONFIG, allowed_domains=())
    assert refusals(instance(hosts=["shop.example.org"]), config=config) == []


def test_allowed_domains_must_be_a_list_of_suffixes() -> None:
    with pytest.raises(ConfigError, match="allowedDomains must be a list"):
        OperatorConfig.from_mapping({"allowedDomains": "example.com"})
    with pytest.raises(ConfigError, match="empty suffix"):
        OperatorConfig.from_mapping({"allowedDomains": ["."]})
    assert OperatorConfig.from_mapping({}).allowed_domains == ()


# -- server references -------------------------------------------------------------


def test_an_unknown_database_server_is_refused() -> None:
    assert refusals(instance(database={"serverRef": "nowhere"})) == [
        "spec.database.serverRef nowhere is not a PostgreSQL server registered with the "
        "operator (registered: dedicated, main)."
    ]


def test_an_unknown_redis_server_is_refused() -> None:
    assert refusals(instance(redis={"serverRef": "nowhere"})) == [
        "spec.redis.serverRef nowhere is not a Redis server registered with the "
        "operator (registered: dedicated, main)."
    ]


def test_unset_server_refs_use_the_defaults() -> None:
    assert refusals(instance(database={}, redis={})) == []


def test_unset_server_refs_without_a_default_are_refused() -> None:
    config = OperatorConfig.from_mapping(
        {
            "versions": {"18.0": "odoo:18.0"},
            "postgresServers": {"pg-a": {"secretRef": "a"}},
            "redisServers": {"redis-a": {"secretRef": "a"}},
        }
    )
    assert refusals(instance(database={}, redis={}), config=config) == [
        "spec.database.serverRef is not set and the operator has no default PostgreSQL "
        "server; name one of the registered servers (pg-a).",
        "spec.redis.serverRef is not set and the operator has no default Redis server; "
        "name one of the registered servers (redis-a).",
    ]


# -- tenancy -----------------------------------------------------------------------


def test_a_dedicated_tenant_on_shared_servers_is_refused() -> None:
    assert refusals(instance(tenancy="dedicated", redis={})) == [
        "spec.database.serverRef main is a shared PostgreSQL server, but spec.tenancy is "
        "dedicated; a dedicated tenant needs a server marked dedicated (registered: dedicated).",
        "spec.redis.serverRef (unset, so the default main) is a shared Redis server, but "
        "spec.tenancy is dedicated; a dedicated tenant needs a server marked dedicated "
        "(registered: dedicated).",
    ]


def test_a_dedicated_tenant_on_dedicated_servers_is_admitted() -> None:
    spec = instance(
        tenancy="dedicated", database={"serverRef": "dedicated"}, redis={"serverRef": "dedicated"}
    )
    assert refusals(spec) == []


def test_a_shared_tenant_may_use_a_dedicated_server() -> None:
    spec = instance(database={"serverRef": "dedicated"}, redis={"serverRef": "dedicated"})
    assert refusals(spec) == []


# -- versions ----------------------------------------------------------------------


def test_a_version_downgrade_is_refused() -> None:
    assert refusals(instance(version="17.0"), old=instance(version="18.0")) == [
        "spec.version cannot go down from 18.0 to 17.0: Odoo migrates a database forward "
        "only; restore a backup into a new instance instead."
    ]


def test_versions_compare_as_numbers_not_text() -> None:
    # As text "9.0" > "18.0"; as a version it is older.
    assert refusals(instance(version="9.0"), old=instance(version="18.0")) != []
    assert refusals(instance(version="18.0"), old=instance(version="9.0")) == []


def test_an_upgrade_and_an_unchanged_version_are_admitted() -> None:
    assert refusals(instance(version="18.0"), old=instance(version="17.0")) == []
    assert refusals(instance(version="18.0", replicas=2), old=instance(version="18.0")) == []


def test_a_version_without_an_image_is_refused() -> None:
    assert refusals(instance(version="16.0")) == [
        "spec.version 16.0 has no image in the operator's version map "
        "(configured: 9.0, 17.0, 18.0); set spec.image or choose a configured version."
    ]


def test_an_image_override_stands_in_for_the_version_map() -> None:
    assert refusals(instance(version="16.0", image="registry.example.com/odoo@sha256:0")) == []


# -- several problems, and updates ---------------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    spec = instance(hosts=["shop.example.org"], version="16.0", redis={"serverRef": "nowhere"})
    problems = refusals(spec)
    assert [problem.split(" ")[0] for problem in problems] == [
        "spec.hosts[0]",
        "spec.redis.serverRef",
        "spec.version",
    ]


def test_an_update_is_not_refused_for_problems_the_stored_object_already_had() -> None:
    # The operator's configuration changed under an existing tenant: a later, unrelated
    # edit must still pass; the reconciler reports the stale reference on its own.
    old = instance(database={"serverRef": "retired"}, hosts=["shop.example.org"])
    new = instance(database={"serverRef": "retired"}, hosts=["shop.example.org"], replicas=2)
    assert refusals(new, old) == []


def test_an_update_that_adds_a_problem_is_refused() -> None:
    old = instance(database={"serverRef": "retired"})
    new = instance(database={"serverRef": "retired"}, redis={"serverRef": "nowhere"})
    assert refusals(new, old) == [
        "spec.redis.serverRef nowhere is not a Redis server registered with the "
        "operator (registered: dedicated, main)."
    ]


def test_an_update_taking_another_instances_host_is_refused() -> None:
    old = instance("acme", hosts=["acme.example.com"])
    new = instance("acme", hosts=["acme.example.com", "shop.example.com"])
    assert refusals(new, old, claimed={"shop.example.com": "globex"}) == [
        "spec.hosts[1] shop.example.com is already served by OdooInstance globex; "
        "a host belongs to one tenant only."
    ]


# -- the Kopf glue ---------------------------------------------------------------------


class _InstancesReader:
    """Stands in for the KubeClient the webhook lists OdooInstances with."""

    def __init__(
        self, *instances: tuple[str, list[str]], namespaces: Mapping[str, str | None] = {}
    ) -> None:
        self.items: list[dict[str, Any]] = [
            {"metadata": {"name": n}, "spec": {"version": "18.0", "hosts": h}} for n, h in instances
        ]
        self.namespaces = namespaces  # name -> instance label (None: no label)
        self.calls = 0

    async def list(self, *_: str) -> list[dict[str, Any]]:
        self.calls += 1
        return self.items

    async def get(self, api_version: str, kind: str, name: str, *_: str) -> Any:
        self.calls += 1
        if kind != "Namespace" or name not in self.namespaces:
            return None
        owner = self.namespaces[name]
        labels = {} if owner is None else {"odoo.tenantops.io/instance": owner}
        return {"metadata": {"name": name, "labels": labels}}


def _body(name: str, **spec: Any) -> kopf.Body:
    fields: dict[str, Any] = {"version": "18.0", "hosts": [f"{name}.example.com"], **spec}
    return kopf.Body({"metadata": {"name": name}, "spec": fields})


def _memo(reader: _InstancesReader) -> kopf.Memo:
    memo = kopf.Memo()
    memo["clients"] = Clients(kube=cast(KubeClient, reader), config=CONFIG)
    return memo


async def test_claimed_hosts_leave_out_the_instance_itself_and_ignore_case() -> None:
    reader = _InstancesReader(("acme", ["acme.example.com"]), ("globex", ["Shop.Example.com"]))
    clients = Clients(kube=cast(KubeClient, reader), config=CONFIG)
    claimed = await admission_handlers.fleet_claims(clients, "acme")
    assert claimed.hosts == {"shop.example.com": "globex"}


async def test_the_webhook_refuses_with_422_and_every_problem() -> None:
    reader = _InstancesReader(("globex", ["shop.example.com"]))
    body = _body("acme", hosts=["shop.example.com"], version="16.0")
    with pytest.raises(kopf.AdmissionError) as refused:
        await admission_handlers.validate_instance(body=body, memo=_memo(reader))
    assert refused.value.code == 422
    assert str(refused.value) == (
        "spec.hosts[0] shop.example.com is already served by OdooInstance globex; a host "
        "belongs to one tenant only. spec.version 16.0 has no image in the operator's version "
        "map (configured: 9.0, 17.0, 18.0); set spec.image or choose a configured version."
    )


async def test_the_webhook_lets_metadata_only_writes_through_unread() -> None:
    # Removing the finalizer of an instance that a configuration change made invalid.
    reader = _InstancesReader()
    stored = _body("acme", database={"serverRef": "retired"})
    await admission_handlers.validate_instance(body=stored, old=stored, memo=_memo(reader))
    assert reader.calls == 0


# -- the webhook server's configuration --------------------------------------------------


def test_the_webhook_server_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in (WEBHOOK_CERT_ENV, WEBHOOK_KEY_ENV, WEBHOOK_CA_ENV):
        pem = tmp_path / variable
        pem.write_text("PEM")
        monkeypatch.setenv(variable, str(pem))
    monkeypatch.setenv(WEBHOOK_PORT_ENV, "8443")
    monkeypatch.delenv(WEBHOOK_ADDR_ENV, raising=False)
    monkeypatch.delenv(WEBHOOK_HOST_ENV, raising=False)
    assert webhook_enabled()
    server = webhook_server()
    assert server.port == 8443
    assert server.addr == "0.0.0.0"  # noqa: S104 - the documented default: the pod's IPs
    assert server.host == "127.0.0.1"
    assert server.cafile == tmp_path / WEBHOOK_CA_ENV


def test_a_webhook_certificate_without_its_key_stops_the_operator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "tls.crt").write_text("PEM")
    monkeypatch.setenv(WEBHOOK_CERT_ENV, str(tmp_path / "tls.crt"))
    monkeypatch.delenv(WEBHOOK_KEY_ENV, raising=False)
    with pytest.raises(kopf.PermanentError, match=f"{WEBHOOK_KEY_ENV} must be set"):
        webhook_server()


def test_without_a_certificate_there_is_no_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEBHOOK_CERT_ENV, raising=False)
    assert not webhook_enabled()


def test_a_zero_health_timeout_is_refused_but_a_zero_grace_period_is_not() -> None:
    body = {"spec": {"version": "18.0", "upgrade": {"healthTimeout": "0m"}}}
    (problem,) = admission_handlers.upgrade_problems(body, None)
    assert problem.startswith("spec.upgrade.healthTimeout")
    body["spec"]["upgrade"] = {"healthTimeout": "5m", "keepPreviousDatabase": "0m"}
    assert admission_handlers.upgrade_problems(body, None) == []


def test_a_bad_verify_schedule_is_refused_only_when_verification_is_scheduled() -> None:
    config = OperatorConfig.from_mapping(
        {"blobStores": {"main": {"secretRef": "blob", "container": "odoo", "default": True}}}
    )
    backup = {"verify": "Never", "verifySchedule": "61 * * * *"}
    body = {"spec": {"version": "18.0", "backup": backup}}
    assert admission_handlers.backup_policy_problems(body, config) == []
    backup["verify"] = "Scheduled"
    (problem,) = admission_handlers.backup_policy_problems(body, config)
    assert problem.startswith("spec.backup.verifySchedule")


def test_a_secondary_store_must_be_registered_and_not_the_primary() -> None:
    config = OperatorConfig.from_mapping(
        {
            "blobStores": {
                "westeurope": {"secretRef": "a", "container": "odoo", "default": True},
                "northeurope": {"secretRef": "b", "container": "odoo"},
            }
        }
    )
    backup: dict[str, Any] = {"secondaryStoreRef": "northeurope"}
    body = {"spec": {"version": "18.0", "backup": backup}}
    assert admission_handlers.backup_policy_problems(body, config) == []
    backup["secondaryStoreRef"] = "westeurope"  # the default, hence the primary
    (same,) = admission_handlers.backup_policy_problems(body, config)
    assert same.startswith("spec.backup.secondaryStoreRef: westeurope is already the primary")
    backup["secondaryStoreRef"] = "mars"
    (unknown,) = admission_handlers.backup_policy_problems(body, config)
    assert unknown.startswith("spec.backup.secondaryStoreRef: ")
    assert "mars" in unknown


# -- tenant boundaries: databases, names, namespaces, transitions ------------------------


def test_a_database_of_another_instance_on_the_same_server_is_refused() -> None:
    claims = {("main", "odoo_victim"): "victim"}
    spec = instance("attacker", database={"serverRef": "main", "name": "odoo_victim"})
    (problem,) = admission_problems(spec, None, CONFIG, NOBODY, claims)
    assert problem.startswith("spec.database.name odoo_victim is already the database of")
    assert "OdooInstance victim" in problem


def test_the_same_database_name_on_another_server_is_admitted() -> None:
    claims = {("main", "odoo_victim"): "victim"}
    spec = instance(
        "other", database={"serverRef": "dedicated", "name": "odoo_victim"}, tenancy="dedicated"
    )
    spec = dataclasses.replace(spec, redis_server="dedicated")
    assert admission_problems(spec, None, CONFIG, NOBODY, claims) == []


@pytest.mark.parametrize(
    "name", ["postgres", "template0", "template1", "azure_maintenance", "azure_sys", "pg_x"]
)
def test_reserved_database_names_are_refused(name: str) -> None:
    spec = instance("acme", database={"serverRef": "main", "name": name})
    (problem,) = admission_problems(spec, None, CONFIG, NOBODY)
    assert problem.startswith(f"spec.database.name {name} is reserved")


def test_an_instance_named_after_the_operators_namespace_is_refused() -> None:
    (problem,) = admission_problems(instance("operator"), None, CONFIG, NOBODY)
    assert problem.startswith("metadata.name operator would make the tenant namespace")


def test_naming_the_defaulted_database_differently_is_refused_but_naming_it_the_same_is_not() -> (
    None
):
    stored = instance("acme")
    moved = instance("acme", database={"serverRef": "main", "name": "odoo_new"})
    (problem,) = admission_problems(moved, stored, CONFIG, NOBODY)
    assert problem.startswith("spec.database.name cannot change from odoo_acme")
    same = instance("acme", database={"serverRef": "main", "name": "odoo_acme"})
    assert admission_problems(same, stored, CONFIG, NOBODY) == []


def test_moving_a_tenant_to_another_database_server_is_refused() -> None:
    stored = instance("acme", database={})  # the default server, main
    moved = dataclasses.replace(stored, database_server="dedicated")
    problems = admission_problems(moved, stored, CONFIG, NOBODY)
    assert any(p.startswith("spec.database.serverRef cannot change from main") for p in problems)
    explicit = dataclasses.replace(stored, database_server="main")
    assert admission_problems(explicit, stored, CONFIG, NOBODY) == []


async def test_a_namespace_that_is_not_the_instances_is_refused_on_create() -> None:
    foreign = _InstancesReader(namespaces={"odoo-acme": None})
    with pytest.raises(kopf.AdmissionError, match="odoo-acme already exists and is not a tenant"):
        await admission_handlers.validate_instance(body=_body("acme"), memo=_memo(foreign))
    other = _InstancesReader(namespaces={"odoo-acme": "globex"})
    with pytest.raises(kopf.AdmissionError, match="belongs to OdooInstance globex"):
        await admission_handlers.validate_instance(body=_body("acme"), memo=_memo(other))
    retained = _InstancesReader(namespaces={"odoo-acme": "acme"})
    await admission_handlers.validate_instance(body=_body("acme"), memo=_memo(retained))


def test_the_deletion_policy_of_an_instance_being_deleted_cannot_change() -> None:
    old = {"metadata": {"name": "acme", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}}
    new = {"metadata": old["metadata"], "spec": {"deletionPolicy": "Delete"}}
    (problem,) = admission_handlers.lifecycle_problems(new, old)
    assert problem.startswith("spec.deletionPolicy cannot change from Retain to Delete")
    alive = {"metadata": {"name": "acme"}, "spec": {}}
    assert admission_handlers.lifecycle_problems(new, alive) == []


def test_a_filestore_below_the_size_in_effect_is_refused_even_when_it_was_defaulted() -> None:
    spec = {"version": "18.0", "hosts": ["a.example.com"]}
    old = {"metadata": {"name": "acme"}, "spec": spec, "status": {"filestoreSize": "20Gi"}}
    smaller = {"metadata": {"name": "acme"}, "spec": {**spec, "filestore": {"size": "15Gi"}}}
    (problem,) = admission_handlers.filestore_problems(smaller, old)
    assert problem.startswith("spec.filestore.size 15Gi is smaller than the tenant's filestore")
    defaulted = {"metadata": {"name": "acme"}, "spec": spec}
    shrunk = {"metadata": {"name": "acme"}, "spec": {**spec, "filestore": {"size": "5Gi"}}}
    assert admission_handlers.filestore_problems(shrunk, defaulted) != []
    grown = {"metadata": {"name": "acme"}, "spec": {**spec, "filestore": {"size": "30Gi"}}}
    assert admission_handlers.filestore_problems(grown, old) == []


def _restore(target: str, backup: str = "b1", **spec: Any) -> RestoreRequest:
    body = {"metadata": {"name": "r"}, "spec": {"backup": backup, "target": {"instance": target}}}
    body["spec"].update(spec)
    return RestoreRequest.from_resource(body)


def test_a_restore_of_another_instances_backup_needs_the_opt_in_naming_it() -> None:
    (problem,) = _restore("bank").problems("acme", instance("bank"))
    assert problem.startswith("spec.fromInstance must be acme")
    (wrong,) = _restore("bank", fromInstance="globex").problems("acme", instance("bank"))
    assert "(it names globex)" in wrong
    assert _restore("bank", fromInstance="acme").problems("acme", instance("bank")) == []
    assert _restore("acme").problems("acme", instance("acme")) == []


def test_a_non_production_target_is_always_neutralized() -> None:
    staging = instance("stage", environment="staging")
    request = _restore("stage", fromInstance="acme", neutralize=False)
    (problem,) = request.problems("acme", staging)
    assert problem.startswith("spec.neutralize cannot be false: stage is a staging instance")
    assert _restore("stage").neutralizes(in_place=True, production_target=False)
    assert not _restore("acme").neutralizes(in_place=True, production_target=True)


def _annotated(annotations: dict[str, str], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"version": "18.0", "hosts": ["acme.odoo.example.com"], **(spec or {})}
    return {"metadata": {"name": "acme", "annotations": annotations}, "spec": body}


@pytest.mark.parametrize(
    "value",
    ["v" * 513, "\u00e9t\u00e9", "now\n", "now\u0000", "\u2028"],
    ids=["513-chars", "accented", "newline", "nul", "line-separator"],
)
@pytest.mark.parametrize(
    "key",
    [
        "odoo.tenantops.io/rotate-credentials",
        "odoo.tenantops.io/maintenance",
        "odoo.tenantops.io/upgrade-now",
    ],
)
def test_an_operator_annotation_must_be_short_printable_ascii(key: str, value: str) -> None:
    (problem,) = admission_handlers.instance_annotation_problems(_annotated({key: value}), None)
    assert problem.startswith(f"metadata.annotations[{key}] must be at most 512 printable ASCII")
    old = _annotated({})
    (problem,) = admission_handlers.instance_annotation_problems(_annotated({key: value}), old)
    assert problem.startswith(f"metadata.annotations[{key}]")


def test_ordinary_operator_annotations_and_unchanged_ones_pass() -> None:
    for value in ("2026-11-30", "restore/acme-rst-1", "v" * 512, "", "after the leak, #42"):
        body = _annotated({"odoo.tenantops.io/rotate-credentials": value})
        assert admission_handlers.instance_annotation_problems(body, None) == []
    # A value stored before the rule existed does not block other writes (the operator's own).
    stored = _annotated({"odoo.tenantops.io/maintenance": "\u00e9t\u00e9"})
    recorded = {**stored["metadata"]["annotations"], RECORD_KEY: "{}"}
    rewritten = _annotated(recorded)
    assert admission_handlers.instance_annotation_problems(rewritten, stored) == []


RECORD_KEY = "odoo.tenantops.io/last-handled-configuration"


def test_annotations_the_operators_record_would_push_past_the_apiservers_limit_are_refused() -> (
    None
):
    # The record repeats each annotation as JSON: 120 KiB of ASCII fits twice, 126 KiB does
    # not, and non-ASCII takes six bytes a character there.
    fits = _annotated({"example.com/note": "n" * (120 * 1024)})
    assert admission_handlers.instance_annotation_problems(fits, None) == []
    for value in ("n" * (126 * 1024), "\u00e9" * (60 * 1024)):
        (problem,) = admission_handlers.instance_annotation_problems(
            _annotated({"example.com/note": value}), _annotated({})
        )
        assert problem.startswith("metadata.annotations would take")
    # An object already past the limit may still shrink, and the record itself is not judged.
    huge = _annotated({"example.com/note": "\u00e9" * (60 * 1024)})
    smaller = _annotated({"example.com/note": "\u00e9" * (50 * 1024)})
    assert admission_handlers.instance_annotation_problems(smaller, huge) == []
    with_record = _annotated({**huge["metadata"]["annotations"], RECORD_KEY: "{}"})
    assert admission_handlers.instance_annotation_problems(with_record, huge) == []


# --- the claims index: admission in O(hosts), not a list of the fleet per request ----------


def _warm_index(*instances: tuple[str, list[str]], **database: str) -> Clients:
    """Clients whose claims index holds ``instances`` and is trusted; listing the fleet
    counts as a call on the reader."""
    reader = _InstancesReader()
    clients = Clients(kube=cast(KubeClient, reader), config=CONFIG)
    for name, hosts in instances:
        spec: dict[str, Any] = {"version": "18.0", "hosts": hosts}
        if name in database:
            spec["database"] = {"name": database[name]}
        clients.claims.put(name, claims_of({"metadata": {"name": name}, "spec": spec}, CONFIG))
    clients.claims.ready = True
    return clients


async def test_a_warm_claims_index_refuses_a_taken_host_and_database_without_listing() -> None:
    clients = _warm_index(("globex", ["shop.example.com"]), globex="odoo_acme")
    memo = kopf.Memo()
    memo["clients"] = clients
    body = _body("acme", hosts=["Shop.Example.com."])
    with pytest.raises(kopf.AdmissionError) as refused:
        await admission_handlers.validate_instance(body=body, memo=memo)
    assert "spec.hosts[0] Shop.Example.com. is already served by OdooInstance globex" in str(
        refused.value
    )
    assert "is already the database of OdooInstance globex" in str(refused.value)
    reader = cast(_InstancesReader, clients.kube)
    assert reader.calls == 1  # the namespace check only: the fleet was not listed


async def test_the_claims_index_follows_changes_and_deletions() -> None:
    clients = _warm_index(("globex", ["shop.example.com"]), ("initech", ["shop.example.com"]))
    wanted = [
        claims_of(
            {
                "metadata": {"name": "acme"},
                "spec": _body("acme", hosts=["shop.example.com"])["spec"],
            },
            CONFIG,
        )
    ]
    assert clients.claims.held_by_others("acme", wanted).hosts == {"shop.example.com": "globex"}
    clients.claims.put(
        "globex",
        claims_of(
            {
                "metadata": {"name": "globex"},
                "spec": {"version": "18.0", "hosts": ["new.example.com"]},
            },
            CONFIG,
        ),
    )
    assert clients.claims.held_by_others("acme", wanted).hosts == {"shop.example.com": "initech"}
    clients.claims.drop("initech")
    assert clients.claims.held_by_others("acme", wanted).hosts == {}
    assert len(clients.claims) == 1


async def test_an_instance_just_admitted_holds_its_host_before_the_watch_brings_it() -> None:
    clients = _warm_index()
    memo = kopf.Memo()
    memo["clients"] = clients
    # Two creates of one host, the second before any watch event of the first.
    await admission_handlers.validate_instance(
        body=_body("first", hosts=["shop.example.com"]), memo=memo
    )
    with pytest.raises(kopf.AdmissionError, match="already served by OdooInstance first"):
        await admission_handlers.validate_instance(
            body=_body("second", hosts=["shop.example.com"]), memo=memo
        )
    # A dry run, or a request refused for another reason, holds nothing.
    await admission_handlers.validate_instance(
        body=_body("dry", hosts=["dry.example.com"]), memo=memo, dryrun=True
    )
    with pytest.raises(kopf.AdmissionError):
        await admission_handlers.validate_instance(
            body=_body("bad", hosts=["bad.example.com"], version="16.0"), memo=memo
        )
    for host in ("dry.example.com", "bad.example.com"):
        await admission_handlers.validate_instance(
            body=_body(f"n{len(host)}", hosts=[host]), memo=memo
        )


def test_an_admitted_claim_is_replaced_by_the_watch_or_expires() -> None:
    index = ClaimsIndex(ready=True)
    shop = Claims(frozenset({"shop.example.com"}), frozenset())
    index.admit("first", shop, now=100.0)
    assert index.held_by_others("other", [shop], now=101.0).hosts == {"shop.example.com": "first"}
    # The watch brings the object with another host: what it holds now is what counts.
    index.put("first", Claims(frozenset({"new.example.com"}), frozenset()))
    assert index.held_by_others("other", [shop], now=101.0).hosts == {}
    # Admitted, then refused by a later webhook: never seen, released after ADMITTED_SECONDS.
    index.admit("ghost", shop, now=200.0)
    assert index.held_by_others("other", [shop], now=200.0 + ADMITTED_SECONDS - 1).hosts
    assert index.held_by_others("other", [shop], now=200.0 + ADMITTED_SECONDS).hosts == {}


async def test_until_the_index_is_filled_admission_lists_the_fleet() -> None:
    reader = _InstancesReader(("globex", ["shop.example.com"]))
    memo = _memo(reader)
    assert not memo["clients"].claims.ready
    with pytest.raises(kopf.AdmissionError, match="already served by OdooInstance globex"):
        await admission_handlers.validate_instance(
            body=_body("acme", hosts=["shop.example.com"]), memo=memo
        )
    await admission_handlers.fill_claims_index(memo["clients"])
    assert memo["clients"].claims.ready
    assert len(memo["clients"].claims) == 1
