"""Two shards on one cluster: each operator process serves only its own tenants, admission
stamps every new tenant's shard, and a tenant moved from one shard to the other is served by
the new one only.

Shard ``a`` serves the admission webhook (Kopf registers the validating and the mutating
configuration); shard ``b`` runs without one, as a second Deployment of the chart would
behind the same Service. Which process reconciles a tenant is read from its metrics: a
process publishes a tenant's series (``instance="<name>"``) from its first reconcile pass
on, and drops them when the tenant is deleted or belongs to another shard; with a drift
timer of a few seconds, a serving process passes over each tenant all the time. Backups are
read from the log, where every line of a handler about one names both.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from e2e.tenants import (
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    MetricsOperator,
    create_backup,
    delete_quietly,
    eventually,
    make_instance,
    refusal,
    wait_gone,
    wait_ready,
)
from odoo_devstack import kubectl
from odoo_devstack.demo import start_operator
from odoo_devstack.operator_setup import register_servers
from odoo_devstack.ports import free_port
from odoo_devstack.processes import ManagedProcess
from odoo_operator.model.config import WEBHOOK_CONFIGURATION
from odoo_operator.model.shards import SHARD_ENV, SHARD_LABEL, SHARDS_ENV, rendezvous_shard

SHARDS = ("a", "b")
DRIFT_SECONDS = 3.0
BACKUPS = "odoobackups"


class Shard:
    """One operator process serving one shard, its metrics and its log."""

    def __init__(self, name: str, process: ManagedProcess, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log
        self.metrics = MetricsOperator.of(process)

    def series_of(self, instance: str) -> int:
        """How many series this process publishes about ``instance``."""
        return sum(1 for _, labels in self.metrics.scrape() if ("instance", instance) in labels)

    def handled(self, obj: str, handler: str) -> int:
        """Log lines of ``handler`` about ``obj`` (``odoobackup/acme-1``)."""
        with self.log.open("rb") as lines:
            return sum(
                1
                for line in lines
                if obj.encode() in line and f"handler={handler}".encode() in line
            )


@pytest.fixture(scope="module")
def shards(
    k8s: client.ApiClient,
    operator_kubeconfig: Path,
    postgres_dsn: str,
    redis_url: str,
    blob_connection_string: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Shard]]:
    kubectl.install_crds(k8s, REPO / "crds")
    workdir = tmp_path_factory.mktemp("shards")
    config = register_servers(k8s, postgres_dsn, redis_url, workdir, blob_connection_string)
    started: dict[str, Shard] = {}
    try:
        for name in SHARDS:
            log = workdir / f"operator-{name}.log"
            process = start_operator(
                operator_kubeconfig,
                config,
                log,
                drift_interval=DRIFT_SECONDS,
                webhook=name == "a",
                metrics_port=free_port(),
                environment={SHARDS_ENV: ",".join(SHARDS), SHARD_ENV: name},
            )
            started[name] = Shard(name, process, log)
        _wait_for_shard_webhook(k8s)
        yield started
    finally:
        for shard in started.values():
            shard.process.stop()
        # Stopped cleanly, Kopf empties the mutating configuration; killed, it would be left
        # pointing at a port nobody serves, and refuse every later create (fail-closed).
        admission = client.AdmissionregistrationV1Api(k8s)
        try:
            admission.delete_mutating_webhook_configuration(WEBHOOK_CONFIGURATION)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _wait_for_shard_webhook(k8s: client.ApiClient) -> None:
    admission = client.AdmissionregistrationV1Api(k8s)

    def registered() -> bool:
        try:
            hooks = admission.read_mutating_webhook_configuration(WEBHOOK_CONFIGURATION).webhooks
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return any(hook.name.startswith("assign-shard-instance.") for hook in hooks or [])

    eventually(registered, "the mutating webhook that assigns shards")


def _names_per_shard(count: int) -> dict[str, list[str]]:
    """``count`` new tenant names hashing to each shard."""
    found: dict[str, list[str]] = {shard: [] for shard in SHARDS}
    while any(len(names) < count for names in found.values()):
        name = f"shard-{uuid.uuid4().hex[:6]}"
        owner = rendezvous_shard(name, SHARDS)
        if len(found[owner]) < count:
            found[owner].append(name)
    return found


def _instance(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    found: dict[str, Any] = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    return found


def _status_shard(custom: client.CustomObjectsApi, name: str) -> object:
    return (_instance(custom, name).get("status") or {}).get("shard")


def test_each_shard_serves_its_own_tenants_and_a_moved_tenant_only_by_its_new_shard(
    k8s: client.ApiClient, shards: dict[str, Shard]
) -> None:
    custom = client.CustomObjectsApi(k8s)
    names = _names_per_shard(2)
    every = [name for group in names.values() for name in group]
    moved = names["a"][0]
    backup = f"{moved}-after-move"
    try:
        for name in every:
            body = make_instance(name, deletionPolicy="Delete")
            if name == moved:
                body["spec"]["backup"] = {"verify": "Never"}
            custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
        for shard, group in names.items():
            for name in group:
                instance = wait_ready(custom, name, shards[shard].process)
                assert instance["metadata"]["labels"][SHARD_LABEL] == shard  # stamped
                assert instance["status"]["shard"] == shard
        for shard, group in names.items():
            other = shards["b" if shard == "a" else "a"]
            for name in group:
                assert shards[shard].series_of(name) > 0
                assert other.series_of(name) == 0, other.process.log_tail()
        # Idle, nobody writes: the shards do not take each other's finalizer (each has its
        # own), and a drift pass over an unchanged tenant changes nothing.
        time.sleep(DRIFT_SECONDS * 2)  # the last writes of the first passes settle
        versions = {n: _instance(custom, n)["metadata"]["resourceVersion"] for n in every}
        time.sleep(DRIFT_SECONDS * 3)
        assert {n: _instance(custom, n)["metadata"]["resourceVersion"] for n in every} == versions
        for shard, group in names.items():
            for name in group:
                finalizers = _instance(custom, name)["metadata"]["finalizers"]
                assert finalizers == [f"odoo.tenantops.io/finalizer-{shard}"]

        # An apply without the label (as from Git) keeps the tenant where it is.
        custom.patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, moved, {"metadata": {"labels": {SHARD_LABEL: None}}}
        )
        assert _instance(custom, moved)["metadata"]["labels"][SHARD_LABEL] == "a"

        # Moved: a stops at once, b takes it over.
        custom.patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, moved, {"metadata": {"labels": {SHARD_LABEL: "b"}}}
        )
        eventually(lambda: _status_shard(custom, moved) == "b", "shard b serving the moved tenant")
        assert shards["b"].series_of(moved) > 0
        eventually(lambda: shards["a"].series_of(moved) == 0, "shard a dropping its series")
        # Several drift passes later, a has not passed over it again (a pass would publish
        # its series anew) and still serves its other tenant.
        time.sleep(DRIFT_SECONDS * 4)
        assert shards["a"].series_of(moved) == 0
        assert _status_shard(custom, moved) == "b"
        assert shards["a"].series_of(names["a"][1]) > 0
        finalizers = _instance(custom, moved)["metadata"]["finalizers"]
        assert finalizers == ["odoo.tenantops.io/finalizer-b"]  # a let go of it

        # Its backups follow: stamped with b, taken by b.
        create_backup(custom, moved, backup)
        stored = custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, backup)
        assert stored["metadata"]["labels"][SHARD_LABEL] == "b"

        def succeeded() -> bool:
            found = custom.get_cluster_custom_object(GROUP, VERSION, BACKUPS, backup)
            return bool((found.get("status") or {}).get("phase") == "Succeeded")

        eventually(succeeded, "the moved tenant's backup taken", 180)
        taken_by = {
            name: shard.handled(f"odoobackup/{backup}", "take_backup")
            for name, shard in shards.items()
        }
        eventually(
            lambda: shards["b"].handled(f"odoobackup/{backup}", "take_backup") > 0,
            "shard b's log of the backup",
        )
        assert taken_by["a"] == 0, taken_by

        # A label that names no shard would leave a tenant unserved: refused, by field.
        status, message = refusal(
            lambda: custom.patch_cluster_custom_object(
                GROUP, VERSION, PLURAL, moved, {"metadata": {"labels": {SHARD_LABEL: "c"}}}
            )
        )
        assert status == 422
        assert f"metadata.labels[{SHARD_LABEL}]: 'c' is not a shard of this fleet" in message
    finally:
        delete_quietly(custom, BACKUPS, backup)
        for name in every:
            delete_quietly(custom, PLURAL, name)
        for name in every:
            wait_gone(custom, PLURAL, name, 180)
