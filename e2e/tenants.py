"""Helpers of the e2e suite: sample-based instances and waiting for conditions."""

from __future__ import annotations

import base64
import copy
import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from kubernetes import client
from kubernetes.client.rest import ApiException
from prometheus_client.parser import text_string_to_metric_families
from psycopg import conninfo

from odoo_devstack import kubectl
from odoo_devstack.demo import is_ready, start_operator
from odoo_devstack.processes import ManagedProcess

REPO = Path(__file__).parents[1]
GROUP, VERSION, PLURAL = "odoo.tenantops.io", "v1alpha1", "odooinstances"
BACKUPS, RESTORES = "odoobackups", "odoorestores"
DRIFT_INTERVAL_SECONDS = 5.0  # the e2e operator's drift timer, much shorter than production's
UPGRADE_INTERVAL_SECONDS = 1.0  # how often the e2e operator advances an upgrade
SAMPLE = kubectl.load_documents(REPO / "manifests" / "samples" / "odooinstance-acme.yaml")[0]


def eventually(
    check: Callable[[], bool], what: str, timeout: float = 60.0, poll: float = 0.5
) -> None:
    """Poll ``check`` every ``poll`` seconds until it holds; fail naming ``what`` when it
    never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def create_backup(
    custom: client.CustomObjectsApi, instance: str, name: str | None = None, **spec: Any
) -> str:
    """Create an OdooBackup of ``instance`` (named ``name``, or after the instance with a
    random suffix) with further spec fields; return its name."""
    name = name or f"{instance}-{uuid.uuid4().hex[:4]}"
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OdooBackup",
        "metadata": {"name": name},
        "spec": {"instance": instance, **spec},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "odoobackups", body)
    return name


def make_instance(name: str, **spec: Any) -> dict[str, Any]:
    """The sample instance under another name and host, with spec fields replaced."""
    body = copy.deepcopy(SAMPLE)
    body["metadata"] = {"name": name}
    body["spec"].pop("backup", None)  # backups only where a test asks for them
    body["spec"]["hosts"] = [f"{name}.odoo.example.com"]
    body["spec"].update(spec)
    return body


def wait_ready(api: client.CustomObjectsApi, name: str, process: ManagedProcess) -> Any:
    """Wait for Ready=True at the current generation; fail with status and operator log."""
    deadline = time.monotonic() + 180  # generous: a loaded 2-core machine is slow
    while time.monotonic() < deadline:
        obj = api.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        if is_ready(obj):
            return obj
        assert process.exit_code() is None, process.log_tail()
        time.sleep(0.5)
    pytest.fail(f"{name} never became Ready: {obj.get('status')}\n{process.log_tail()}")


def wait_phase(api: client.CustomObjectsApi, name: str, process: ManagedProcess, phase: str) -> Any:
    """Wait for ``status.phase`` at the current generation; fail with status and log."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        obj = api.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        status = obj.get("status") or {}
        if status.get("phase") == phase and status.get("observedGeneration") == obj["metadata"].get(
            "generation"
        ):
            return obj
        assert process.exit_code() is None, process.log_tail()
        time.sleep(0.5)
    pytest.fail(f"{name} never reached phase {phase}: {obj.get('status')}\n{process.log_tail()}")


def rotate_credentials(api: client.CustomObjectsApi, name: str, value: str) -> None:
    """Ask for a credential rotation by annotation and wait until status records it."""
    annotations = {"odoo.tenantops.io/rotate-credentials": value}
    api.patch_cluster_custom_object(
        GROUP, VERSION, PLURAL, name, {"metadata": {"annotations": annotations}}
    )

    def recorded() -> bool:
        instance = api.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        return bool((instance.get("status") or {}).get("credentialsRotation") == value)

    eventually(recorded, f"status.credentialsRotation {value} recorded")


def describe_events(k8s: client.ApiClient, body: dict[str, Any]) -> list[Any]:
    """The Events ``kubectl describe`` shows for a cluster-scoped object: in any namespace,
    whose involvedObject has its kind, name and uid and an empty namespace (kubectl's own
    field selector, pkg/describe)."""
    meta = body["metadata"]
    selector = ",".join(
        [
            f"involvedObject.name={meta['name']}",
            "involvedObject.namespace=",
            f"involvedObject.kind={body['kind']}",
            f"involvedObject.uid={meta['uid']}",
        ]
    )
    listing = client.CoreV1Api(k8s).list_event_for_all_namespaces(field_selector=selector)
    return list(listing.items)


def redis_as(redis_url: str, username: str, password: str) -> redis.Redis:
    """A client of the server at ``redis_url``, logged in as another user."""
    address = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    return redis.Redis(
        host=address["host"], port=address["port"], username=username, password=password
    )


NewTenant = Callable[..., str]


def delete_quietly(api: client.CustomObjectsApi, plural: str, name: str) -> None:
    """Delete a cluster-scoped object of this API group; one already gone is fine."""
    try:
        api.delete_cluster_custom_object(GROUP, VERSION, plural, name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def tenant_login(k8s: client.ApiClient, server_dsn: str, name: str) -> str:
    """A connection string to the tenant's database as its own role, on ``server_dsn``'s
    server, with the credentials the operator keeps in the tenant's namespace."""
    data = client.CoreV1Api(k8s).read_namespaced_secret("odoo-database", f"odoo-{name}").data
    values = {k: base64.b64decode(v).decode() for k, v in data.items()}
    return conninfo.make_conninfo(
        server_dsn,
        user=values["username"],
        password=values["password"],
        dbname=values["database"],
    )


def secret_values(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    """The decoded data of a Secret."""
    data = client.CoreV1Api(k8s).read_namespaced_secret(name, namespace).data or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def refusal(call: Callable[[], Any]) -> tuple[int, str]:
    """The HTTP status and message with which the apiserver refuses ``call``; fails the
    test when ``call`` is accepted."""
    with pytest.raises(ApiException) as refused:
        call()
    try:
        message = str(json.loads(refused.value.body)["message"])
    except (TypeError, ValueError, KeyError):
        message = str(refused.value.body)
    return refused.value.status, message


def wait_gone(api: client.CustomObjectsApi, plural: str, name: str, timeout: float = 120.0) -> None:
    """Wait until a cluster-scoped object of this API group no longer exists."""

    def gone() -> bool:
        try:
            api.get_cluster_custom_object(GROUP, VERSION, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    eventually(gone, f"{plural}/{name} to be gone", timeout)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class MetricsOperator:
    """The operator process and where its metrics are served."""

    def __init__(self, process: ManagedProcess, port: int) -> None:
        self.process = process
        self.port = port

    @classmethod
    def of(cls, process: ManagedProcess) -> MetricsOperator:
        """The metrics of an operator started by ``start_operator`` with a metrics port."""
        port = int((process.env or {}).get("ODOO_OPERATOR_METRICS_PORT") or 0)
        assert port, f"{process.name} was started without a metrics port"
        return cls(process, port)

    def scrape(self) -> Samples:
        """Every sample of one scrape, parsed by prometheus_client's parser."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples: Samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's value, or None when the scrape does not have it."""
        return self.scrape().get((name, frozenset(labels.items())))


def seed_odoo_like_database(login: str, filestore: Path, partners: int = 25) -> None:
    """Tables and rows shaped like Odoo's, owned by the tenant, and attachments on disk."""
    with psycopg.connect(login, autocommit=True) as db:
        db.execute("CREATE TABLE res_partner (id serial PRIMARY KEY, name text NOT NULL)")
        db.execute(
            "INSERT INTO res_partner (name) SELECT 'partner ' || g FROM generate_series(1, %s) g",
            (partners,),
        )
        db.execute(
            "CREATE TABLE ir_attachment (id serial PRIMARY KEY, name text, store_fname text)"
        )
        db.execute("CREATE TABLE ir_mail_server (id serial PRIMARY KEY, name text, active boolean)")
        db.execute(
            "INSERT INTO ir_mail_server (name, active) VALUES ('smtp.customer.example', true)"
        )
        db.execute("CREATE TABLE ir_cron (id serial PRIMARY KEY, name text, active boolean)")
        db.execute("INSERT INTO ir_cron (name, active) VALUES ('post recurring entries', true)")
        db.execute(
            "CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key text UNIQUE, value text)"
        )
        db.execute(
            "INSERT INTO ir_config_parameter (key, value) VALUES ('database.uuid', %s)",
            (str(uuid.uuid4()),),
        )
        db.execute("CREATE TABLE ir_module_module (id serial PRIMARY KEY, name text, state text)")
        db.execute(
            "INSERT INTO ir_module_module (name, state)"
            " VALUES ('base', 'installed'), ('account', 'installed')"
        )
        for number in range(3):
            relative = f"a{number}/{uuid.uuid4().hex}"
            path = filestore / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(uuid.uuid4().bytes * 64)
            db.execute(
                "INSERT INTO ir_attachment (name, store_fname) VALUES (%s, %s)",
                (f"invoice {number}.pdf", relative),
            )


def wait_finished(
    custom: client.CustomObjectsApi, plural: str, name: str, timeout: float = 120
) -> dict[str, Any]:
    """Wait until an OdooBackup or OdooRestore succeeded or failed; return it."""
    found: dict[str, Any] = {}

    def finished() -> bool:
        try:
            found.update(custom.get_cluster_custom_object(GROUP, VERSION, plural, name))
        except ApiException as exc:
            if exc.status == 404:  # not created yet (the operator makes pre-delete backups)
                return False
            raise
        return (found.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    eventually(finished, f"{plural}/{name} to finish", timeout)
    return found


def create_restore(custom: client.CustomObjectsApi, name: str, spec: dict[str, Any]) -> None:
    """Create OdooRestore ``name`` with ``spec``."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OdooRestore",
        "metadata": {"name": name},
        "spec": spec,
    }
    custom.create_cluster_custom_object(GROUP, VERSION, RESTORES, body)


def restore_into(
    custom: client.CustomObjectsApi, backup: str, target: str, **spec: Any
) -> dict[str, Any]:
    """Create an OdooRestore of ``backup`` into ``target`` and wait until it finished."""
    name = f"rst-{uuid.uuid4().hex[:6]}"
    create_restore(custom, name, {"backup": backup, "target": {"instance": target}, **spec})
    return wait_finished(custom, RESTORES, name, 180)


class OperatorStarts:
    """Starts operator processes one after another against the test cluster, each with its
    own log, and stops whatever still runs at :meth:`stop`.

    Every process is started from one thread that outlives the test: ManagedProcess sets
    PR_SET_PDEATHSIG, which the kernel fires when the *thread* that forked the child ends, so
    an operator started from a short-lived thread (a killer's, say) would die with it.
    """

    def __init__(self, kubeconfig: Path, config: Path, workdir: Path) -> None:
        self._kubeconfig, self._config, self._workdir = kubeconfig, config, workdir
        self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="operator-launcher")
        self.started: list[ManagedProcess] = []

    def _start(self) -> ManagedProcess:
        log = self._workdir / f"operator-{len(self.started):03d}.log"
        process = start_operator(
            self._kubeconfig, self._config, log, drift_interval=5, upgrade_interval=1
        )
        self.started.append(process)
        return process

    def __call__(self) -> ManagedProcess:
        """A new operator process, serving once this returns (webhook on)."""
        return self._launcher.submit(self._start).result()

    def stop(self) -> None:
        """Stop every process started, and the launcher thread."""
        for process in self.started:
            process.stop()
        self._launcher.shutdown()
