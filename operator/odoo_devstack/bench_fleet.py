"""`make bench-fleet`: the operator at fleet scale, on the local stack with KWOK's nodes.

Starts the local stack (:class:`~.stack.LocalStack`) with enough simulated nodes and
pre-created volumes for the largest size, registers the servers and runs the operator as its
own process, with its admission webhook and its metrics endpoint, as the e2e suite does.
Then, for each of ``--sizes`` in ascending order, growing one fleet of tenants named
``fleet-00001``, ``fleet-00002``, ... (the sample ``acme`` without backups, each with its own
host), it measures:

- **apply**: the missing instances created from 8 threads with the synchronous client; the
  latency of each create request (the admission webhook included), the time to send them
  all, and from the first request to every instance reporting Ready=True;
- **creation to Ready** of each new tenant, from its ``metadata.creationTimestamp`` to the
  ``lastTransitionTime`` of its Ready condition (both to the second);
- **one more tenant** on top of the fleet: create to Ready as this process sees it (polling
  every 0.2 s), three times; these tenants stay and count towards the next size;
- **idle**: the operator's calls to each external system during ``--idle-seconds``, per
  tenant and minute (``odoo_operator_external_call_duration_seconds``), its writes in the
  apiserver's audit log, its resident memory and the CPU time it used;
- **restart**: SIGKILL, start again, and the time until the new process has reconciled every
  instance once (each one appears in its per-tenant series only after a pass), with the
  Kubernetes writes it made meanwhile.

With ``--shards N`` (N ≥ 2) the fleet is split into shards ``s1`` .. ``sN``: one operator
process per shard (``ODOO_OPERATOR_SHARDS`` and ``ODOO_OPERATOR_SHARD``), each with its own
metrics port, the first serving the admission webhook (which stamps each new tenant's shard)
and the others without one. Every measure then covers them all: the idle calls are the sum
of every process's counters, memory and CPU time the sum over the processes and the largest
single one, and the restart SIGKILLs every process, starts each again and waits until every
instance has been reconciled by its own shard (the union of the processes' per-tenant
series), and until the webhook configurations point at the new webhook process.

Prints which shards ran, one row per size, and the idle calls by system and operation.
Everything runs in temporary folders, removed at the end or on Ctrl-C. Options: ``--sizes``
(default 100,500,1000), ``--idle-seconds`` (180), ``--drift-interval`` (the production 120 s),
``--ready-timeout``, ``--no-watch-cache`` (the operator without its watch cache, as the chart
installs it by default), ``--shards`` (1: one process serving every tenant).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import math
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from odoo_operator.model.config import WEBHOOK_CONFIGURATION, WEBHOOK_PORT_ENV
from odoo_operator.model.names import GROUP, INSTANCE_PLURAL, VERSION
from odoo_operator.model.shards import SHARD_ENV, SHARD_LABEL, SHARDS_ENV, rendezvous_shard

from . import kubectl, probes
from .controlplane import DEFAULT_NODES, OPERATOR_USER, ControlPlane, FakeNode
from .demo import ADMISSION_APART, is_ready, start_operator, start_webhook
from .operator_setup import register_servers
from .ports import free_port
from .processes import ManagedProcess
from .stack import LocalStack
from .webhook_certs import LOOPBACK_HOST

REPO = Path(__file__).resolve().parents[2]
SAMPLE_PATH = REPO / "manifests" / "samples" / "odooinstance-acme.yaml"
NAME_PREFIX = "fleet"
CREATE_WORKERS = 8
# Each tenant runs an init Job pod, a web pod and a cron pod; a fake node takes 250 pods, and
# is filled to 200 so that the scheduler never runs short.
PODS_PER_TENANT = 3
PODS_PER_NODE = 200
SPARE_VOLUMES = 50
EXTRA_TENANTS = 3  # "one more tenant", measured this many times per size
READY_POLL_SECONDS = 2.0
EXTRA_POLL_SECONDS = 0.2
RESTART_POLL_SECONDS = 1.0
_CREATE_ATTEMPTS = 5
_CALLS = "odoo_operator_external_call_duration_seconds_count"
_RECONCILES = "odoo_operator_reconcile_total"
_TENANTS = "odoo_operator_tenants"
# One series per tenant the process has passed over (from the end of its first pass), what
# a sharded restart reads to know which tenants each shard has reconciled.
_TENANT_SERIES = "odoo_operator_drift_repairs_total"
# The handler id of the mutating webhook that stamps a new instance's shard (Kopf names the
# webhook after it); not imported from the operator's admission module, whose import
# registers Kopf handlers.
_ASSIGN_SHARD_HOOK = "assign-shard-instance."
WEBHOOK_TIMEOUT_SECONDS = 60.0
# The only families the benchmark reads: a scrape asks for these alone (prometheus_client's
# ``name[]`` filter), so that polling a large fleet's endpoint costs the operator little.
_SCRAPED = (_CALLS, _RECONCILES, _TENANTS)
# The webhook's own time to answer (not the API server's): scraped around each apply.
_ADMISSION = "odoo_operator_admission_duration_seconds_bucket"
_INSTANCE_WEBHOOK = "validate-instance"
_APISERVER_ADMISSION = "apiserver_admission_webhook_admission_duration_seconds_bucket"
_KUBERNETES_READS = ("get", "list")
# Not a request about any tenant: the dynamic client's discovery, once per process.
_NEITHER = ("discover",)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _say(message: str) -> None:
    print(f"[bench-fleet] {message}", file=sys.stderr, flush=True)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def fleet_name(number: int) -> str:
    """The name of the fleet's ``number``-th tenant (from 1)."""
    return f"{NAME_PREFIX}-{number:05d}"


def make_instance(sample: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The sample under another name and host, without backups (as the e2e suite's)."""
    body = copy.deepcopy(dict(sample))
    body["metadata"] = {"name": name}
    body["spec"].pop("backup", None)
    body["spec"]["hosts"] = [f"{name}.odoo.example.com"]
    return body


def fake_nodes(tenants: int) -> tuple[FakeNode, ...]:
    """Enough KWOK nodes for ``tenants`` tenants' pods, and never fewer than the default."""
    count = max(len(DEFAULT_NODES), math.ceil(PODS_PER_TENANT * tenants / PODS_PER_NODE))
    return tuple(FakeNode(f"kwok-node-{index}") for index in range(count))


def _timestamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ready_transition(instance: Mapping[str, Any]) -> float | None:
    """When the Ready condition turned True (Unix seconds), or None if it is not True."""
    for condition in (instance.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            moved = condition.get("lastTransitionTime")
            return _timestamp(moved) if moved else None
    return None


def not_ready_reason(instance: Mapping[str, Any]) -> str:
    """Why an instance is not Ready, for the progress lines: its Ready reason or phase."""
    status = instance.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("reason") or "?")
    return "no status yet" if not status else str(status.get("phase") or "?")


# -- the operator process --------------------------------------------------------------


def parse_metrics(text: str) -> Samples:
    """Every sample of a scrape, keyed by name and labels."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def calls_by_operation(samples: Samples) -> dict[tuple[str, str], float]:
    """Calls to external systems so far, by (system, operation)."""
    calls: dict[tuple[str, str], float] = {}
    for (name, labels), value in samples.items():
        if name == _CALLS:
            found = dict(labels)
            key = (found.get("system", "?"), found.get("operation", "?"))
            calls[key] = calls.get(key, 0.0) + value
    return calls


def kubernetes_writes(calls: Mapping[tuple[str, str], float]) -> float:
    """Kubernetes calls that change something: apply, patch, delete and other (create)."""
    return sum(
        count
        for (system, operation), count in calls.items()
        if system == "kubernetes" and operation not in (*_KUBERNETES_READS, *_NEITHER)
    )


def kubernetes_reads(calls: Mapping[tuple[str, str], float]) -> float:
    """Kubernetes gets and lists."""
    return sum(
        count
        for (system, operation), count in calls.items()
        if system == "kubernetes" and operation in _KUBERNETES_READS
    )


def sample_sum(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(
        value for (found, have), value in samples.items() if found == name and wanted <= have
    )


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; fields[0] is state
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def cpu_by_program(named: Mapping[int, str]) -> dict[str, float]:
    """CPU seconds of every process of the machine, summed by program (``comm``), the
    processes in ``named`` (pid → name) under their own name: what a rollout spends where.
    Processes that ended between two readings are missed (short-lived ones)."""
    seconds: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        program = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        program = named.get(int(stat.parent.name), program)
        spent = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        seconds[program] = seconds.get(program, 0.0) + spent
    return seconds


def process_memory_mib(pid: int) -> tuple[float, float]:
    """Resident memory of a process now and at its peak (VmRSS, VmHWM), in MiB."""
    values = {"VmRSS": math.nan, "VmHWM": math.nan}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in values:
            values[key] = int(line.split()[1]) / 1024
    return values["VmRSS"], values["VmHWM"]


def shard_names(count: int) -> tuple[str, ...]:
    """The shards of a fleet split ``count`` ways: none for 1 (not sharded), else s1..sN."""
    return () if count < 2 else tuple(f"s{number}" for number in range(1, count + 1))


def shard_of(instance: Mapping[str, Any], shards: tuple[str, ...]) -> str:
    """The shard that serves ``instance``: its label, else the hash of its name."""
    labels = instance["metadata"].get("labels") or {}
    return str(labels.get(SHARD_LABEL) or rendezvous_shard(instance["metadata"]["name"], shards))


def tenant_names(samples: Samples) -> set[str]:
    """The tenants a process publishes per-tenant series about (those it passed over)."""
    return {
        dict(labels).get("instance", "")
        for name, labels in samples
        if name == _TENANT_SERIES and dict(labels).get("instance")
    }


def reconciled_by_own_shard(
    seen: Mapping[str, set[str]], expected: Mapping[str, str]
) -> tuple[set[str], set[str]]:
    """Of the tenants each shard's process has passed over (``seen``, by shard), those its
    own shard (``expected``, by tenant) reconciled, and those some other shard did."""
    own = {name for shard, names in seen.items() for name in names if expected.get(name) == shard}
    other = {
        name
        for shard, names in seen.items()
        for name in names
        if name in expected and expected[name] != shard
    }
    return own, other


def wait_for_shard_webhook(
    admission: client.AdmissionregistrationV1Api,
    process: ManagedProcess,
    timeout: float = WEBHOOK_TIMEOUT_SECONDS,
) -> float:
    """Wait until the mutating configuration that stamps shards points at ``process``'s
    webhook (``start_operator`` waits for the validating one only); the seconds waited.

    Kopf writes it once its server listens; until then it is absent, empty or still names a
    killed process's port, and a create would go unlabelled or be refused.
    """
    url = f"https://{LOOPBACK_HOST}:{(process.env or {})[WEBHOOK_PORT_ENV]}/"

    def points_at_this_operator() -> bool:
        try:
            configuration = admission.read_mutating_webhook_configuration(WEBHOOK_CONFIGURATION)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        hooks = configuration.webhooks or []
        return any(hook.name.startswith(_ASSIGN_SHARD_HOOK) for hook in hooks) and all(
            (hook.client_config.url or "").startswith(url) for hook in hooks
        )

    return process.wait_until(
        points_at_this_operator, timeout, "serving its shard-assigning webhook", interval=0.2
    )


def delete_shard_webhook(admission: client.AdmissionregistrationV1Api) -> None:
    """Delete the mutating webhook configuration, if any: a process killed would leave it
    naming a port nobody serves, refusing every later create and update (fail-closed)."""
    try:
        admission.delete_mutating_webhook_configuration(WEBHOOK_CONFIGURATION)
    except ApiException as error:
        if error.status != 404:
            raise


def scrape_port(port: int, names: tuple[str, ...]) -> Samples:
    """One scrape of the metrics endpoint on ``port`` (the families ``names``), parsed."""
    query = urllib.parse.urlencode([("name[]", name) for name in names])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?{query}", timeout=30) as answer:
        return parse_metrics(answer.read().decode())


@dataclass
class AdmissionProcess:
    """``odoo-operator webhook``: admission in a process of its own, as the chart runs it
    (its own Deployment), beside the operator processes; a restart of those leaves it be."""

    kubeconfig: Path
    config: Path
    workdir: Path
    shards: tuple[str, ...] = ()
    process: ManagedProcess | None = None
    port: int = 0

    def start(self) -> None:
        """Start it; return once the validating webhook configuration points at it."""
        self.port = free_port()
        environment = {SHARDS_ENV: ",".join(self.shards)} if self.shards else None
        self.process = start_webhook(
            self.kubeconfig,
            self.config,
            self.workdir / "webhook.log",
            metrics_port=self.port,
            environment=environment,
        )

    def scrape(self, names: tuple[str, ...]) -> Samples:
        """One scrape of its metrics."""
        return scrape_port(self.port, names)

    def stop(self) -> None:
        """Stop it, if running."""
        if self.process is not None:
            self.process.stop()


@dataclass
class Operator:
    """One operator process of the benchmark (of one shard, or of the whole fleet), its
    metrics port and its CPU bookkeeping."""

    kubeconfig: Path
    config: Path
    workdir: Path
    drift_interval: float
    watch_cache: bool = True
    shard: str = ""  # "" when the fleet is not sharded
    shards: tuple[str, ...] = ()
    webhook: bool = True
    admission_apart: bool = False  # admission served by `odoo-operator webhook` beside it
    process: ManagedProcess | None = None
    port: int = 0
    starts: int = 0
    cpu_of_previous: float = 0.0  # CPU seconds of the processes already killed

    @property
    def name(self) -> str:
        """How the progress lines name this process."""
        return f"operator {self.shard}" if self.shard else "operator"

    def start(self) -> None:
        """Start a new operator process; return once its webhook (if it serves one) and its
        metrics answer."""
        self.starts += 1
        self.port = free_port()
        environment = {SHARDS_ENV: ",".join(self.shards), SHARD_ENV: self.shard}
        if not self.shard:
            environment = {}
        if self.admission_apart:
            environment.update(ADMISSION_APART)
        self.process = start_operator(
            self.kubeconfig,
            self.config,
            self.workdir
            / (
                f"operator-{self.shard}-{self.starts}.log"
                if self.shard
                else f"operator-{self.starts}.log"
            ),
            drift_interval=self.drift_interval,
            webhook=self.webhook and not self.admission_apart,
            metrics_port=self.port,
            environment=environment,
            watch_cache=self.watch_cache,
        )
        self.process.wait_until(self._answers, 60, "serving its metrics", interval=0.2)

    def _answers(self) -> bool:
        self.scrape()
        return True

    @property
    def pid(self) -> int:
        """The running process's id."""
        assert self.process is not None
        assert self.process.pid is not None
        return self.process.pid

    def check_alive(self) -> None:
        """Fail with the log's tail if the operator exited."""
        assert self.process is not None
        code = self.process.exit_code()
        if code is not None:
            raise self.process.fail(f"exited with code {code}")

    def scrape(self, extra: tuple[str, ...] = ()) -> Samples:
        """One scrape of the metrics endpoint (the families the benchmark reads, and
        ``extra``), parsed."""
        return scrape_port(self.port, (*_SCRAPED, *extra))

    def cpu_seconds(self) -> float:
        """CPU time of the running process."""
        return process_cpu_seconds(self.pid)

    def total_cpu_seconds(self) -> float:
        """CPU time of every operator process of this benchmark so far."""
        return self.cpu_of_previous + self.cpu_seconds()

    def kill(self) -> None:
        """SIGKILL the running process, as a node failure would."""
        assert self.process is not None
        self.cpu_of_previous += self.cpu_seconds()
        self.process.kill()

    def stop(self) -> None:
        """Stop the running process, if any."""
        if self.process is not None:
            self.process.stop()


class Operators:
    """Every operator process of the benchmark: one serving the whole fleet, or one per
    shard, the first serving the admission webhook."""

    def __init__(
        self,
        members: list[Operator],
        admission: client.AdmissionregistrationV1Api,
        webhook: AdmissionProcess | None = None,
    ):
        self.members = members
        self.admission = admission
        self.webhook = webhook  # None: the first operator process serves admission
        for member in members:
            member.admission_apart = webhook is not None

    @classmethod
    def for_shards(
        cls,
        shards: tuple[str, ...],
        admission: client.AdmissionregistrationV1Api,
        kubeconfig: Path,
        config: Path,
        workdir: Path,
        drift_interval: float,
        watch_cache: bool = True,
        webhook_apart: bool = True,
    ) -> Operators:
        """One operator for the whole fleet when ``shards`` is empty, else one per shard;
        admission in ``odoo-operator webhook`` beside them when ``webhook_apart``."""
        webhook = AdmissionProcess(kubeconfig, config, workdir, shards) if webhook_apart else None
        if not shards:
            return cls(
                [Operator(kubeconfig, config, workdir, drift_interval, watch_cache)],
                admission,
                webhook,
            )
        members = [
            Operator(
                kubeconfig,
                config,
                workdir,
                drift_interval,
                watch_cache,
                shard=shard,
                shards=shards,
                webhook=index == 0,
            )
            for index, shard in enumerate(shards)
        ]
        return cls(members, admission, webhook)

    @property
    def shards(self) -> tuple[str, ...]:
        """The fleet's shards; empty when it is not sharded."""
        return self.members[0].shards

    @property
    def mode(self) -> str:
        """The report's name for how the fleet was served: ``1`` or ``s1,s2``."""
        return ",".join(self.shards) or "1"

    def start(self) -> None:
        """Start every process, the webhook's first; return once every webhook configuration
        points at it and every metrics endpoint answers."""
        if self.webhook is not None and self.webhook.process is None:
            # Once: a restart of the operator processes leaves admission's own process be,
            # as a rollout of the operator's Deployment leaves the webhook's.
            self.webhook.start()
            assert self.webhook.process is not None
            _say(
                f"webhook running (pid {self.webhook.process.pid}, metrics on {self.webhook.port})"
            )
        for member in self.members:
            member.start()
            _say(f"{member.name} running (pid {member.pid}, metrics on {member.port})")
        if self.shards:
            serving = self.webhook.process if self.webhook is not None else self.members[0].process
            assert serving is not None
            waited = wait_for_shard_webhook(self.admission, serving)
            _say(f"shard-assigning webhook registered after another {waited:.1f}s")

    def scrape_admission(self) -> Samples:
        """The admission histogram of the process serving admission."""
        if self.webhook is not None:
            return self.webhook.scrape((_ADMISSION,))
        return self.members[0].scrape((_ADMISSION,))

    def kill(self) -> None:
        """SIGKILL every process."""
        for member in self.members:
            member.kill()

    def check_alive(self) -> None:
        """Fail with the log's tail if any process exited."""
        for member in self.members:
            member.check_alive()

    def scrape(self, extra: tuple[str, ...] = ()) -> list[Samples]:
        """One scrape of each process, in the order of :attr:`members`."""
        return [member.scrape(extra) for member in self.members]

    def cpu_seconds(self) -> list[float]:
        """CPU time of each running process."""
        return [member.cpu_seconds() for member in self.members]

    def total_cpu_seconds(self) -> list[float]:
        """CPU time of each shard's processes so far (the killed ones included)."""
        return [member.total_cpu_seconds() for member in self.members]

    def pids(self) -> dict[int, str]:
        """The running processes' ids: the operators' (``operator``) and the webhook's."""
        named = {member.pid: "operator" for member in self.members}
        webhook = self.webhook
        if webhook is not None and webhook.process is not None and webhook.process.pid:
            named[webhook.process.pid] = "webhook"
        return named

    def memory_mib(self) -> list[tuple[float, float]]:
        """Resident memory of each running process now and at its peak, in MiB."""
        return [process_memory_mib(member.pid) for member in self.members]

    def log_tail(self) -> str:
        """The last lines of each running process's log, for error messages."""
        tails = []
        for member in self.members:
            if member.process is None:
                continue
            tail = member.process.log_tail()
            tails.append(f"--- {member.name} ---\n{tail}" if self.shards else tail)
        return "\n".join(tails)

    def stop(self) -> None:
        """Stop every running process."""
        for member in self.members:
            member.stop()
        if self.webhook is not None:
            self.webhook.stop()


class AuditTail:
    """The operator's write requests in the apiserver's audit log since :meth:`mark`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def _size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def mark(self) -> None:
        """Start counting from the current end of the log."""
        self.offset = self._size()

    def writes(self) -> int | None:
        """Writes by the operator since :meth:`mark`; None when the log was rotated."""
        if self._size() < self.offset:
            return None
        chunk = Path(tempfile.mkstemp(prefix="audit-")[1])
        try:
            with open(self.path, "rb") as log, open(chunk, "wb") as out:
                log.seek(self.offset)
                data = log.read()
                # The last line may be half-written: count whole lines only.
                out.write(data[: data.rfind(b"\n") + 1])
            return len(probes.audited_writes(chunk, OPERATOR_USER))
        finally:
            chunk.unlink()


# -- the fleet -------------------------------------------------------------------------


@dataclass
class SizeRow:
    """What was measured at one size."""

    size: int
    tenants: int = 0
    # CPU seconds by program from the first create until all Ready (cpu_by_program).
    rollout_cpu: dict[str, float] = field(default_factory=dict)
    load_start: float = math.nan
    load_end: float = math.nan
    apply_seconds: float = math.nan
    to_all_ready_seconds: float = math.nan
    ready_p50: float = math.nan
    ready_p95: float = math.nan
    create_p50_ms: float = math.nan
    create_p99_ms: float = math.nan
    webhook_p50_ms: float = math.nan
    webhook_p99_ms: float = math.nan
    apiserver_webhook_p50_ms: float = math.nan  # as the API server timed its calls
    apiserver_webhook_p99_ms: float = math.nan
    create_retries: int = 0
    apply_audit_writes: float = math.nan  # per new tenant
    extra_p50: float = math.nan
    idle_minutes: float = math.nan
    idle_tenants: int = 0
    idle_calls: dict[tuple[str, str], float] = field(default_factory=dict)
    idle_drift_passes: float = math.nan
    idle_audit_writes: int | None = None
    rss_mib: float = math.nan
    peak_rss_mib: float = math.nan
    idle_cpu_seconds: float = math.nan
    restart_seconds: float = math.nan
    restart_writes: float = math.nan
    restart_audit_writes: int | None = None
    operator_cpu_seconds: float = math.nan
    # With shards, the memory and CPU figures above are sums over the processes; these are
    # the largest single process's (the same figures when there is one process).
    largest_rss_mib: float = math.nan
    largest_peak_rss_mib: float = math.nan
    largest_idle_cpu_seconds: float = math.nan
    largest_operator_cpu_seconds: float = math.nan
    # By shard: the instances labelled for it, the tenants its process knew at the end of
    # the idle window, and its reconcile passes (every trigger) during the window.
    shard_instances: dict[str, int] = field(default_factory=dict)
    shard_tenants: dict[str, float] = field(default_factory=dict)
    shard_idle_passes: dict[str, float] = field(default_factory=dict)
    restart_other_shard: int = 0  # tenants a shard reconciled after the restart, not its own
    unlabelled: int = 0  # instances admission did not stamp with a shard


class FleetTimeoutError(RuntimeError):
    """The fleet did not become Ready in time."""


class Fleet:
    """Creates the fleet's instances and watches them."""

    def __init__(
        self,
        api: client.ApiClient,
        operators: Operators,
        ready_timeout: float,
        control_plane: ControlPlane,
    ) -> None:
        self.control_plane = control_plane
        self.custom = client.CustomObjectsApi(api)
        self.operators = operators
        self.ready_timeout = ready_timeout
        self.sample = kubectl.load_documents(SAMPLE_PATH)[0]
        self.count = 0  # instances created so far: fleet-00001 .. fleet-<count>
        self.stopping = threading.Event()

    def _create(self, name: str) -> tuple[float, int]:
        """Create one instance; the latency of the request that succeeded, and retries."""
        body = make_instance(self.sample, name)
        for attempt in range(_CREATE_ATTEMPTS):
            started = time.monotonic()
            try:
                self.custom.create_cluster_custom_object(GROUP, VERSION, INSTANCE_PLURAL, body)
                return time.monotonic() - started, attempt
            except ApiException as error:
                if error.status == 409 and attempt > 0:  # an earlier attempt got through
                    return time.monotonic() - started, attempt
                transient = error.status in (0, 429, 500, 503, 504)
                if attempt == _CREATE_ATTEMPTS - 1 or not transient or self.stopping.is_set():
                    raise
                _say(f"create {name}: HTTP {error.status}, retrying")
                time.sleep(1.0)
        raise AssertionError("unreachable")

    def create_missing(self, size: int) -> tuple[float, list[float], int]:
        """Create instances up to ``size`` from a pool of threads: wall time, latencies,
        retries."""
        names = [fleet_name(number) for number in range(self.count + 1, size + 1)]
        latencies: list[float] = []
        retries = 0
        started = time.monotonic()
        executor = ThreadPoolExecutor(CREATE_WORKERS, thread_name_prefix="create")
        try:
            futures = [executor.submit(self._create, name) for name in names]
            last_said = started
            for finished, future in enumerate(futures, 1):
                latency, retried = future.result()
                latencies.append(latency)
                retries += retried
                now = time.monotonic()
                if now - last_said >= READY_POLL_SECONDS or finished == len(futures):
                    _say(f"created {finished}/{len(names)} after {now - started:.1f}s")
                    last_said = now
        finally:
            # On Ctrl-C: no new requests, and the ones under way give up instead of retrying.
            self.stopping.set()
            executor.shutdown(wait=False, cancel_futures=True)
            self.stopping.clear()
        self.count = max(self.count, size)
        return time.monotonic() - started, latencies, retries

    def list_instances(self) -> list[dict[str, Any]]:
        """Every OdooInstance of the cluster."""
        listing = cast(
            dict[str, Any],
            self.custom.list_cluster_custom_object(GROUP, VERSION, INSTANCE_PLURAL),
        )
        items: list[dict[str, Any]] = listing["items"]
        return items

    def wait_all_ready(self, started: float) -> list[dict[str, Any]]:
        """Poll until every instance is Ready; the last listing."""
        last_said = 0.0
        last_ready = -1
        while True:
            self.operators.check_alive()
            items = self.list_instances()
            ready = sum(1 for item in items if is_ready(item))
            elapsed = time.monotonic() - started
            if ready != last_ready or elapsed - last_said >= 10:
                _say(f"{ready}/{len(items)} Ready after {elapsed:.0f}s")
                last_said, last_ready = elapsed, ready
            if ready == len(items) >= self.count:
                return items
            if elapsed > self.ready_timeout:
                reasons: dict[str, int] = {}
                for item in items:
                    if not is_ready(item):
                        reason = not_ready_reason(item)
                        reasons[reason] = reasons.get(reason, 0) + 1
                raise FleetTimeoutError(
                    f"{len(items) - ready} of {len(items)} instances not Ready after "
                    f"{elapsed:.0f}s: {reasons}\n{self.log_tail()}"
                )
            time.sleep(READY_POLL_SECONDS)

    def log_tail(self) -> str:
        """The operator logs' last lines, for error messages."""
        return self.operators.log_tail()

    def one_more(self) -> float:
        """Create the next instance; seconds from the request to Ready as seen from here."""
        self.count += 1
        name = fleet_name(self.count)
        body = make_instance(self.sample, name)
        started = time.monotonic()
        self.custom.create_cluster_custom_object(GROUP, VERSION, INSTANCE_PLURAL, body)
        while True:
            instance = cast(
                dict[str, Any],
                self.custom.get_cluster_custom_object(GROUP, VERSION, INSTANCE_PLURAL, name),
            )
            if is_ready(instance):
                return time.monotonic() - started
            if time.monotonic() - started > self.ready_timeout:
                raise FleetTimeoutError(
                    f"{name} not Ready after {self.ready_timeout:.0f}s: "
                    f"{not_ready_reason(instance)}\n{self.log_tail()}"
                )
            self.operators.check_alive()
            time.sleep(EXTRA_POLL_SECONDS)


def admission_buckets(after: Samples, before: Samples) -> dict[float, float]:
    """The validating webhook's answers to OdooInstance requests between two scrapes of the
    process serving it: cumulative count by bucket bound (``le``), all decisions together."""
    buckets: dict[float, float] = {}
    for (name, labels), value in after.items():
        label = dict(labels)
        if name != _ADMISSION or label.get("webhook") != _INSTANCE_WEBHOOK:
            continue
        bound = math.inf if label["le"] == "+Inf" else float(label["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value - before.get((name, labels), 0.0)
    return buckets


def apiserver_admission(control_plane: ControlPlane) -> dict[float, float]:
    """The API server's own histogram of its calls to the validating webhook for
    OdooInstances (``apiserver_admission_webhook_admission_duration_seconds``: the round
    trip, TLS and queueing in the webhook's process included), cumulative by bucket bound."""
    buckets: dict[float, float] = {}
    for (name, labels), value in parse_metrics(control_plane.text("/metrics")).items():
        label = dict(labels)
        if name != _APISERVER_ADMISSION or _INSTANCE_WEBHOOK not in label.get("name", ""):
            continue
        if label.get("type") != "validating":
            continue
        bound = math.inf if label["le"] == "+Inf" else float(label["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value
    return buckets


def bucket_percentile(buckets: Mapping[float, float], share: float) -> float:
    """The upper bound of the bucket holding the ``share`` quantile (NaN without answers):
    a histogram knows no finer, so the figure is "at most"."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return math.nan
    for bound in sorted(buckets):
        if buckets[bound] >= share * total:
            return bound
    return math.inf


def measure_size(
    fleet: Fleet, operators: Operators, audit: AuditTail, row: SizeRow, idle_seconds: float
) -> None:
    """Grow the fleet to ``row.size`` and fill ``row`` in as the measures come (a run cut
    short still reports what it measured); see the module's description."""
    size = row.size
    row.load_start = os.getloadavg()[0]
    first = fleet.count + 1
    _say(f"size {size}: creating {max(0, size - fleet.count)} instances")
    audit.mark()
    started = time.monotonic()
    programs_before = cpu_by_program(operators.pids())
    answered_before = operators.scrape_admission()
    called_before = apiserver_admission(fleet.control_plane)
    row.apply_seconds, latencies, row.create_retries = fleet.create_missing(size)
    answered = admission_buckets(operators.scrape_admission(), answered_before)
    called = apiserver_admission(fleet.control_plane)
    calls = {bound: called.get(bound, 0.0) - called_before.get(bound, 0.0) for bound in called}
    row.apiserver_webhook_p50_ms = bucket_percentile(calls, 0.50) * 1000
    row.apiserver_webhook_p99_ms = bucket_percentile(calls, 0.99) * 1000
    row.tenants = fleet.count
    row.create_p50_ms = _percentile(latencies, 0.50) * 1000
    row.create_p99_ms = _percentile(latencies, 0.99) * 1000
    row.webhook_p50_ms = bucket_percentile(answered, 0.50) * 1000
    row.webhook_p99_ms = bucket_percentile(answered, 0.99) * 1000
    items = fleet.wait_all_ready(started)
    row.to_all_ready_seconds = time.monotonic() - started
    programs = cpu_by_program(operators.pids())
    row.rollout_cpu = {
        program: spent - programs_before.get(program, 0.0)
        for program, spent in programs.items()
        if spent - programs_before.get(program, 0.0) >= 0.5
    }
    writes = audit.writes()
    if writes is not None and fleet.count >= first:
        row.apply_audit_writes = writes / (fleet.count - first + 1)
    new = [item for item in items if item["metadata"]["name"] >= fleet_name(first)]
    to_ready = []
    for item in new:
        became_ready = ready_transition(item)
        if became_ready is not None:
            to_ready.append(became_ready - _timestamp(item["metadata"]["creationTimestamp"]))
    row.ready_p50 = _percentile(to_ready, 0.50)
    row.ready_p95 = _percentile(to_ready, 0.95)

    extras = []
    for turn in range(EXTRA_TENANTS):
        seconds = fleet.one_more()
        _say(f"size {size}: one more tenant ({turn + 1}/{EXTRA_TENANTS}) Ready in {seconds:.1f}s")
        extras.append(seconds)
    row.extra_p50 = statistics.median(extras)
    row.tenants = fleet.count

    _say(f"size {size}: idle for {idle_seconds:.0f}s with {fleet.count} tenants")
    before = operators.scrape()
    cpu_before = operators.cpu_seconds()
    audit.mark()
    idle_started = time.monotonic()
    deadline = idle_started + idle_seconds
    while (left := deadline - time.monotonic()) > 0:
        operators.check_alive()
        time.sleep(min(left, 30.0))
        if deadline - time.monotonic() > 0:
            _say(f"idle: {time.monotonic() - idle_started:.0f}s of {idle_seconds:.0f}s")
    after = operators.scrape()
    idle_cpu = [now - then for now, then in zip(operators.cpu_seconds(), cpu_before, strict=True)]
    row.idle_cpu_seconds, row.largest_idle_cpu_seconds = sum(idle_cpu), max(idle_cpu)
    row.idle_minutes = (time.monotonic() - idle_started) / 60
    row.idle_audit_writes = audit.writes()
    memory = operators.memory_mib()
    row.rss_mib = sum(rss for rss, _ in memory)
    row.peak_rss_mib = sum(peak for _, peak in memory)
    row.largest_rss_mib = max(rss for rss, _ in memory)
    row.largest_peak_rss_mib = max(peak for _, peak in memory)
    row.idle_calls = {}
    row.idle_drift_passes = 0.0
    for member, then, now in zip(operators.members, before, after, strict=True):
        calls_before, calls_after = calls_by_operation(then), calls_by_operation(now)
        for key, count in calls_after.items():
            if count - calls_before.get(key, 0.0) > 0:
                row.idle_calls[key] = (
                    row.idle_calls.get(key, 0.0) + count - calls_before.get(key, 0.0)
                )
        row.idle_drift_passes += sample_sum(now, _RECONCILES, trigger="drift") - sample_sum(
            then, _RECONCILES, trigger="drift"
        )
        if member.shard:
            row.shard_tenants[member.shard] = sample_sum(now, _TENANTS)
            row.shard_idle_passes[member.shard] = sample_sum(now, _RECONCILES) - sample_sum(
                then, _RECONCILES
            )
    row.idle_tenants = fleet.count

    # Which shard each instance belongs to, read before the restart: the labels admission
    # stamped (the hash of the name for one without).
    expected: dict[str, str] = {}
    if operators.shards:
        for item in fleet.list_instances():
            expected[item["metadata"]["name"]] = shard_of(item, operators.shards)
            if not (item["metadata"].get("labels") or {}).get(SHARD_LABEL):
                row.unlabelled += 1
        for shard in operators.shards:
            row.shard_instances[shard] = sum(1 for owner in expected.values() if owner == shard)
        shares = ", ".join(f"{shard} {count}" for shard, count in row.shard_instances.items())
        _say(f"size {size}: instances by shard: {shares}")
    _say(f"size {size}: SIGKILL the operator and start it again")
    audit.mark()
    killed = time.monotonic()
    operators.kill()
    operators.start()
    _say(f"restart: operator serving again after {time.monotonic() - killed:.1f}s")
    extra = (_TENANT_SERIES,) if operators.shards else ()
    last_said = 0.0
    while True:
        operators.check_alive()
        scraped: list[Samples] = []
        for member in operators.members:
            try:
                scraped.append(member.scrape(extra))
            except OSError as error:  # a busy endpoint; the next poll will tell
                _say(f"restart: scrape of {member.name} failed ({error}), trying again")
                scraped.append({})
        if operators.shards:
            seen = {
                member.shard: tenant_names(samples)
                for member, samples in zip(operators.members, scraped, strict=True)
            }
            own, other = reconciled_by_own_shard(seen, expected)
            known = float(len(own))
            row.restart_other_shard = len(other)
        else:
            known = sample_sum(scraped[0], _TENANTS)
        elapsed = time.monotonic() - killed
        if known >= fleet.count:
            break
        if elapsed - last_said >= 5:
            elsewhere = (
                f" ({row.restart_other_shard} by another shard)" if row.restart_other_shard else ""
            )
            _say(f"restart: {known:.0f}/{fleet.count} reconciled after {elapsed:.0f}s{elsewhere}")
            last_said = elapsed
        if elapsed > fleet.ready_timeout:
            raise FleetTimeoutError(
                f"after the restart only {known:.0f} of {fleet.count} instances were "
                f"reconciled in {elapsed:.0f}s\n{fleet.log_tail()}"
            )
        time.sleep(RESTART_POLL_SECONDS)
    row.restart_seconds = time.monotonic() - killed
    row.restart_writes = sum(kubernetes_writes(calls_by_operation(found)) for found in scraped)
    row.restart_audit_writes = audit.writes()
    _say(f"restart: all {fleet.count} reconciled after {row.restart_seconds:.1f}s")
    cpu = operators.total_cpu_seconds()
    row.operator_cpu_seconds, row.largest_operator_cpu_seconds = sum(cpu), max(cpu)
    row.load_end = os.getloadavg()[0]


# -- the report ------------------------------------------------------------------------


def _figure(value: float | int | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _per_tenant_minute(row: SizeRow, count: float) -> float:
    if not row.idle_tenants or not row.idle_minutes or math.isnan(row.idle_minutes):
        return math.nan
    return count / row.idle_tenants / row.idle_minutes


def _markdown(headers: list[str], rows: list[list[str]], text_columns: int = 0) -> str:
    """A Markdown table: the first ``text_columns`` left-aligned, figures right-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        padded = [
            cell.ljust(width) if index < text_columns else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|".join(
        "-" * (width + 2) if index < text_columns else "-" * (width + 1) + ":"
        for index, width in enumerate(widths)
    )
    return "\n".join([line(headers), f"|{rule}|", *(line(cells) for cells in rows)])


SIZE_COLUMNS = [
    "size",
    "tenants",
    "apply s",
    "apply→all Ready s",
    "create→Ready p50 s",
    "p95 s",
    "create req p50 ms",
    "p99 ms",
    "webhook p50 ms ≤",
    "p99 ms ≤",
    "apiserver→webhook p50 ms ≤",
    "apiserver p99 ms ≤",
    "writes /new tenant",
    "+1 tenant p50 s",
    "idle k8s reads /t/min",
    "idle k8s writes /t/min",
    "idle audit writes",
    "RSS MiB",
    "peak RSS MiB",
    "idle CPU s",
    "restart→all reconciled s",
    "restart k8s writes",
    "restart audit writes",
    "load start",
    "load end",
    "operator CPU s",
]


# With shards, the column after each of these: the same figure for the largest process.
LARGEST_COLUMNS = {
    "RSS MiB": "largest RSS MiB",
    "peak RSS MiB": "largest peak RSS MiB",
    "idle CPU s": "largest idle CPU s",
    "operator CPU s": "largest operator CPU s",
}


def _largest_cells(row: SizeRow) -> dict[str, str]:
    return {
        "RSS MiB": _figure(row.largest_rss_mib, 0),
        "peak RSS MiB": _figure(row.largest_peak_rss_mib, 0),
        "idle CPU s": _figure(row.largest_idle_cpu_seconds),
        "operator CPU s": _figure(row.largest_operator_cpu_seconds),
    }


def size_table(rows: list[SizeRow], sharded: bool = False) -> str:
    """One line per size; ``sharded``, with the largest process's figures too."""
    lines = []
    for row in rows:
        reads = kubernetes_reads(row.idle_calls)
        cells = [
            _figure(row.size),
            _figure(row.tenants),
            _figure(row.apply_seconds),
            _figure(row.to_all_ready_seconds),
            _figure(row.ready_p50, 0),
            _figure(row.ready_p95, 0),
            _figure(row.create_p50_ms, 0),
            _figure(row.create_p99_ms, 0),
            _figure(row.webhook_p50_ms, 1),
            _figure(row.webhook_p99_ms, 1),
            _figure(row.apiserver_webhook_p50_ms, 1),
            _figure(row.apiserver_webhook_p99_ms, 1),
            _figure(row.apply_audit_writes, 0),
            _figure(row.extra_p50),
            _figure(_per_tenant_minute(row, reads), 2),
            _figure(_per_tenant_minute(row, kubernetes_writes(row.idle_calls)), 3),
            _figure(row.idle_audit_writes),
            _figure(row.rss_mib, 0),
            _figure(row.peak_rss_mib, 0),
            _figure(row.idle_cpu_seconds),
            _figure(row.restart_seconds),
            _figure(row.restart_writes, 0),
            _figure(row.restart_audit_writes),
            _figure(row.load_start, 2),
            _figure(row.load_end, 2),
            _figure(row.operator_cpu_seconds),
        ]
        if sharded:
            largest = _largest_cells(row)
            cells = [
                added
                for header, cell in zip(SIZE_COLUMNS, cells, strict=True)
                for added in (cell, *((largest[header],) if header in largest else ()))
            ]
        lines.append(cells)
    headers = SIZE_COLUMNS
    if sharded:
        headers = [
            added
            for header in SIZE_COLUMNS
            for added in (
                header,
                *((LARGEST_COLUMNS[header],) if header in LARGEST_COLUMNS else ()),
            )
        ]
    return _markdown(headers, lines)


def idle_table(rows: list[SizeRow]) -> str:
    """Idle calls per tenant and minute, by system and operation, one column per size."""
    measured = [row for row in rows if row.idle_tenants]
    keys = sorted({key for row in measured for key in row.idle_calls})
    lines = []
    for system, operation in keys:
        lines.append(
            [
                system,
                operation,
                *(
                    _figure(_per_tenant_minute(row, row.idle_calls.get((system, operation), 0)), 3)
                    for row in measured
                ),
            ]
        )
    lines.append(
        [
            "(reconcile)",
            "drift passes",
            *(_figure(_per_tenant_minute(row, row.idle_drift_passes), 3) for row in measured),
        ]
    )
    headers = ["system", "operation", *(f"{row.tenants} tenants" for row in measured)]
    return _markdown(headers, lines, text_columns=2)


def shard_lines(rows: list[SizeRow]) -> list[str]:
    """With shards, one line per size: how the fleet and the idle work were split."""
    lines = []
    for row in rows:
        if not row.shard_tenants:
            continue
        parts = [
            f"{shard} {row.shard_instances.get(shard, 0):,} instances, "
            f"{_figure(row.shard_tenants[shard], 0)} tenants known, "
            f"{_figure(row.shard_idle_passes.get(shard), 0)} idle passes"
            for shard in row.shard_tenants
        ]
        if row.unlabelled:
            parts.append(f"{row.unlabelled:,} instances without a shard label")
        if row.restart_other_shard:
            parts.append(
                f"{row.restart_other_shard:,} reconciled by another shard after the restart"
            )
        lines.append(f"{row.tenants:,} tenants: {'; '.join(parts)}.")
    return lines


def rollout_cpu_line(row: SizeRow) -> str:
    """One size's rollout CPU by program, the largest first, with the machine's capacity."""
    wall = row.to_all_ready_seconds
    capacity = wall * (os.cpu_count() or 1)
    ranked = sorted(row.rollout_cpu.items(), key=lambda item: -item[1])
    spent = ", ".join(f"{program} {seconds:,.0f}" for program, seconds in ranked[:8])
    total = sum(row.rollout_cpu.values())
    return (
        f"{row.size}: {wall:,.0f} s x {os.cpu_count()} CPUs = {capacity:,.0f} CPU s; used "
        f"{total:,.0f} ({total / capacity:.0%}): {spent}"
    )


def print_report(rows: list[SizeRow], first_load: float, operators: Operators | None) -> None:
    """The tables and the run's footnotes, on stdout."""
    sharded = operators is not None and bool(operators.shards)
    print()
    print(f"shards: {operators.mode if operators is not None else '1'}")
    print()
    print(size_table(rows, sharded))
    if any(row.idle_tenants for row in rows):
        print("\nIdle calls per tenant and minute (odoo_operator_external_call_duration_seconds):")
        print(idle_table(rows))
    if any(row.rollout_cpu for row in rows):
        print("\nCPU seconds by program from the first create until all Ready (the machine's")
        print("capacity is the wall time times the CPUs):")
        for row in rows:
            print(f"- {rollout_cpu_line(row)}")
    if sharded:
        print("\nBy shard (instances by their shard label, tenants each process knew at the end")
        print("of the idle window, its reconcile passes during the window):")
        for line in shard_lines(rows):
            print(f"- {line}")
    total = math.nan
    if operators is not None:
        with contextlib.suppress(OSError, AssertionError):
            total = sum(operators.total_cpu_seconds())
    print(
        f"\n{os.cpu_count()} CPUs; load average (1 min) {first_load:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end; operator CPU time {_figure(total)} s in all."
    )
    print(
        "apply→all Ready: from the first create request until every instance is Ready. "
        "create→Ready: creationTimestamp to the Ready condition's lastTransitionTime (1 s "
        "resolution). +1 tenant: request to Ready seen by polling every 0.2 s, median of "
        f"{EXTRA_TENANTS}. tenants: the fleet after those {EXTRA_TENANTS} more (idle and "
        "restart figures are for that many). Writes: Kubernetes calls other than get, list "
        "and discovery in the operator's histogram; audit writes: the operator's "
        "create/update/patch/delete requests in the apiserver's audit log (Kopf's own "
        "patches included); writes /new tenant: those from the first create request until "
        "all were Ready, per tenant created. Create requests retried: "
        f"{sum(row.create_retries for row in rows)}."
    )
    if sharded:
        print(
            "Shards: idle calls, writes and drift passes are summed over the shards' processes; "
            "RSS, peak RSS (each process's own peak) and CPU are sums, the 'largest' columns "
            "the single process with the most (operator CPU: by shard, its killed process "
            "included). restart→all reconciled: SIGKILL of every operator process until each "
            "instance was reconciled by its own shard's new process (admission's own process, "
            "if any, is left running; else the configurations point at the new one)."
        )


# -- entry point -----------------------------------------------------------------------


def run_bench(
    sizes: list[int],
    idle_seconds: float,
    drift_interval: float,
    timeout: float,
    watch_cache: bool = True,
    shards: int = 1,
    webhook_apart: bool = True,
    provisioning_concurrency: int | None = None,
) -> int:
    """Start the stack and the operator (one process per shard when ``shards`` ≥ 2),
    measure every size, print the report."""
    first_load = os.getloadavg()[0]
    largest = sizes[-1] + EXTRA_TENANTS * len(sizes)
    nodes = fake_nodes(largest)
    volumes = largest + SPARE_VOLUMES
    rows: list[SizeRow] = []
    operators: Operators | None = None
    _say(f"starting the local stack: {len(nodes)} KWOK nodes, {volumes} volumes")
    status = 0
    try:
        with LocalStack(nodes=nodes, volumes=volumes) as stack:
            control_plane = stack.control_plane
            api = kubectl.api_client(control_plane.kubeconfig)
            api.configuration.connection_pool_maxsize = CREATE_WORKERS * 2
            kubectl.install_crds(api, REPO / "crds")
            workdir = control_plane.workdir / "operator"
            config = register_servers(
                api,
                stack.postgres.dsn,
                stack.redis.url,
                workdir,
                stack.azurite.connection_string,
                provisioning_concurrency=provisioning_concurrency,
            )
            admission = client.AdmissionregistrationV1Api(api)
            operators = Operators.for_shards(
                shard_names(shards),
                admission,
                control_plane.operator_kubeconfig,
                config,
                workdir,
                drift_interval,
                watch_cache,
                webhook_apart,
            )
            _say(
                f"watch cache {'on' if watch_cache else 'off'}; shards: {operators.mode}; "
                f"admission {'in its own process' if webhook_apart else 'in the operator'}"
            )
            try:
                operators.start()
                fleet = Fleet(api, operators, timeout, control_plane)
                audit = AuditTail(control_plane.audit_log)
                for size in sizes:
                    rows.append(SizeRow(size))
                    measure_size(fleet, operators, audit, rows[-1], idle_seconds)
                    _say(f"size {size} done")
            except FleetTimeoutError as error:
                _say(str(error))
                status = 1
            finally:
                print_report(rows, first_load, operators)
                webhook = operators.webhook
                if webhook is not None and webhook.process is not None and webhook.process.pid:
                    rss, peak = process_memory_mib(webhook.process.pid)
                    cpu = process_cpu_seconds(webhook.process.pid)
                    _say(f"webhook process: RSS {rss:.0f} MiB (peak {peak:.0f}), CPU {cpu:.1f}s")
                operators.stop()
                try:
                    delete_shard_webhook(admission)
                except Exception as error:  # noqa: BLE001 - tidying up; the stack goes anyway
                    _say(f"could not delete the mutating webhook configuration: {error}")
                api.close()  # type: ignore[no-untyped-call]
    except KeyboardInterrupt:
        _say("interrupted; the local stack is stopped")
        return 130
    return status


def _shards(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError("shards is a positive number: 1 (not sharded), 2, ...")
    return count


def _turns(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError("provisioning concurrency is a positive number")
    return count


def _sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes are positive numbers, e.g. 100,500,1000")
    return sizes


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m odoo_devstack.bench_fleet``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=_sizes, default=[100, 500, 1000], help="fleet sizes, e.g. 100,500,1000"
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=180.0, help="idle window measured at each size"
    )
    parser.add_argument(
        "--drift-interval",
        type=float,
        default=120.0,
        help="the operator's drift timer (production: 120 s)",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=3600.0,
        help="give up when the fleet is not Ready (or not reconciled after a restart) by then",
    )
    parser.add_argument(
        "--no-watch-cache",
        action="store_true",
        help="read managed objects from the API server, as a chart without watchCache does",
    )
    parser.add_argument(
        "--shards",
        type=_shards,
        default=1,
        help="operator processes, one per shard s1..sN, the first serving the webhook "
        "(1: one process serving every tenant)",
    )
    parser.add_argument(
        "--webhook-in-operator",
        action="store_true",
        help="serve admission from the (first) operator process, as `odoo-operator run` "
        "does with a webhook certificate, instead of from `odoo-operator webhook` beside it",
    )
    parser.add_argument(
        "--provisioning-concurrency",
        type=_turns,
        default=None,
        help="new tenants provisioned at once (the operator's provisioningConcurrency; "
        "default: the operator's own)",
    )
    args = parser.parse_args(argv)
    # Ctrl-C must stop the benchmark (and the stack) even when a shell or a script started it
    # in the background, with SIGINT ignored: restore Python's handler, as the demo does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    status = run_bench(
        args.sizes,
        args.idle_seconds,
        args.drift_interval,
        args.ready_timeout,
        watch_cache=not args.no_watch_cache,
        shards=args.shards,
        webhook_apart=not args.webhook_in_operator,
        provisioning_concurrency=args.provisioning_concurrency,
    )
    _say(f"whole benchmark: {time.monotonic() - started:.0f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())
