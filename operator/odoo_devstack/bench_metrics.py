"""`make bench-metrics`: the metrics endpoint with 1,000 synthetic tenants' series.

Imports the operator as ``odoo-operator run`` does, records for each synthetic tenant what
a reconcile pass, a backup and a database probe would (ten conditions, backup and
verification times, business signals, queue_job states for half of them), then measures:

- the render time of the whole exposition (what the scrape handler does), over many runs;
- a scrape over HTTP from the endpoint's own thread, as Prometheus does it;
- the cost of one ``record_outcome`` call (what a reconcile pass adds);
- the process's resident memory before and after, and the exposition's size and series.

Options: ``--tenants`` (default 1000), ``--runs`` (default 50). Nothing is written to disk.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

CONDITIONS = (
    ("Ready", "True", "Ready"),
    ("Reconciling", "False", "Reconciled"),
    ("Stalled", "False", "Progressing"),
    ("DatabaseReady", "True", "Provisioned"),
    ("RedisReady", "True", "Provisioned"),
    ("Initialized", "True", "Initialized"),
    ("WorkloadReady", "True", "Available"),
    ("IngressReady", "True", "Routed"),
    ("BackupHealthy", "True", "WithinRPO"),
    ("Upgraded", "True", "Current"),
)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(action: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def populate(tenants: int) -> None:
    """Record what the operator would know about ``tenants`` synthetic tenants."""
    from odoo_operator import metrics
    from odoo_operator.model.conditions import Condition
    from odoo_operator.model.outcome import Outcome

    now = time.time()
    for number in range(tenants):
        name = f"tenant-{number:04d}"
        outcome = Outcome(phase="Ready")
        outcome.conditions = [Condition(t, s, r, "synthetic") for t, s, r in CONDITIONS]  # type: ignore[arg-type]
        outcome.fields = {
            "lastBackup": {"time": "2026-11-23T02:00:00Z", "sizeBytes": 10_000_000 + number},
            "lastVerifiedBackup": {"time": "2026-11-23T02:05:00Z"},
        }
        with metrics.observe_reconcile(name, "drift") as seen:
            seen.record(outcome)
        metrics.record_backup(
            name,
            "Running",
            {
                "phase": "Succeeded",
                "startedAt": "2026-11-23T02:00:00Z",
                "completedAt": "2026-11-23T02:01:00Z",
                "sizeBytes": 10_000_000 + number,
            },
        )
        metrics.record_probe(
            name,
            metrics.ProbeResult(
                up=True,
                duration_seconds=0.01,
                database_size_bytes=50e6 + number,
                connections=number % 40,
                connection_limit=50,
                longest_transaction_seconds=number % 7,
                cron_overdue=number % 3,
                cron_max_lag_seconds=(number % 3) * 600.0,
                queue_jobs=(("pending", 1), ("enqueued", 0), ("started", 0), ("failed", 0))
                if number % 2
                else None,
            ),
        )
    del now


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)

    # What `odoo-operator run` imports: Kopf, the clients, every handler.
    from odoo_operator import handlers, metrics, settings  # noqa: F401

    from .ports import free_port

    idle_rss = _rss_mib()
    started = time.perf_counter()
    populate(args.tenants)
    populate_seconds = time.perf_counter() - started
    text = metrics.render()
    series = sum(len(f.samples) for f in text_string_to_metric_families(text.decode()))
    render = _timed(metrics.render, args.runs)

    from odoo_operator.model.conditions import Condition
    from odoo_operator.model.outcome import Outcome

    outcome = Outcome(phase="Ready")
    outcome.conditions = [Condition(t, s, r, "synthetic") for t, s, r in CONDITIONS]  # type: ignore[arg-type]
    record = _timed(lambda: metrics.record_outcome("tenant-0001", outcome), 2000)

    port = free_port()
    server = metrics.start_server(port)
    try:

        def scrape() -> bytes:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=30) as response:
                body: bytes = response.read()
                return body

        http = _timed(scrape, args.runs)
    finally:
        server.shutdown()
        server.server_close()
    loaded_rss = _rss_mib()

    rows = [
        ("tenants", f"{args.tenants:,}"),
        ("series in one scrape", f"{series:,}"),
        ("exposition size", f"{len(text) / 1024:,.0f} KiB"),
        ("render, median", f"{statistics.median(render) * 1000:.1f} ms"),
        ("render, p95", f"{_percentile(render, 0.95) * 1000:.1f} ms"),
        ("HTTP scrape on loopback, median", f"{statistics.median(http) * 1000:.1f} ms"),
        ("HTTP scrape on loopback, p95", f"{_percentile(http, 0.95) * 1000:.1f} ms"),
        (
            "record_outcome (one reconcile pass), median",
            f"{statistics.median(record) * 1e6:.0f} µs",
        ),
        ("recording all tenants once", f"{populate_seconds * 1000:.0f} ms"),
        ("RSS with the operator imported, no tenant", f"{idle_rss:.0f} MiB"),
        ("RSS with the tenants' series, after the scrapes", f"{loaded_rss:.0f} MiB"),
        ("of which the tenants' series and scrapes", f"{loaded_rss - idle_rss:.0f} MiB"),
        ("peak RSS", f"{_peak_rss_mib():.0f} MiB"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"{'measure'.ljust(width)} | value")
    for label, value in rows:
        print(f"{label.ljust(width)} | {value}")


if __name__ == "__main__":
    main()
