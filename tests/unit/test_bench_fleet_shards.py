"""bench-fleet with shards: the shard names, which shard a tenant belongs to, the restart's
union over the processes, and a size table that keeps today's columns without shards; the
rollout's CPU by program."""

from __future__ import annotations

import math
import os
import time
from typing import Any

import pytest

from odoo_devstack import bench_fleet
from odoo_devstack.bench_fleet import (
    SIZE_COLUMNS,
    SizeRow,
    reconciled_by_own_shard,
    shard_names,
    shard_of,
    size_table,
    tenant_names,
)
from odoo_operator.model.shards import SHARD_LABEL, rendezvous_shard


def test_one_shard_is_not_sharded_and_more_are_named_from_s1() -> None:
    assert shard_names(1) == ()
    assert shard_names(3) == ("s1", "s2", "s3")


def test_a_tenant_belongs_to_its_label_else_to_the_hash_of_its_name() -> None:
    shards = ("s1", "s2")
    labelled = {"metadata": {"name": "fleet-00001", "labels": {SHARD_LABEL: "s2"}}}
    unlabelled = {"metadata": {"name": "fleet-00002"}}
    assert shard_of(labelled, shards) == "s2"
    assert shard_of(unlabelled, shards) == rendezvous_shard("fleet-00002", shards)


def test_the_tenants_of_a_scrape_are_those_with_a_per_tenant_series() -> None:
    text = (
        "# TYPE odoo_operator_drift_repairs counter\n"
        'odoo_operator_drift_repairs_total{instance="fleet-00001"} 0.0\n'
        'odoo_operator_drift_repairs_total{instance="fleet-00002"} 3.0\n'
        "# TYPE odoo_operator_tenants gauge\n"
        'odoo_operator_tenants{phase="Ready"} 2.0\n'
    )
    assert tenant_names(bench_fleet.parse_metrics(text)) == {"fleet-00001", "fleet-00002"}


def test_after_a_restart_only_a_tenants_own_shard_counts() -> None:
    expected = {"a1": "s1", "a2": "s1", "b1": "s2"}
    seen = {"s1": {"a1", "b1"}, "s2": {"b1"}}
    own, other = reconciled_by_own_shard(seen, expected)
    assert own == {"a1", "b1"}  # a2 not yet; b1 counted once, by s2
    assert other == {"b1"}  # s1 passed over a tenant of s2


def test_the_size_table_keeps_its_columns_without_shards_and_adds_the_largest_with() -> None:
    row = SizeRow(10, rss_mib=300.0, largest_rss_mib=160.0)
    plain = size_table([row]).splitlines()
    assert plain[0] == size_table([row], sharded=False).splitlines()[0]
    assert [cell.strip() for cell in plain[0].strip("|").split("|")] == SIZE_COLUMNS
    sharded = [cell.strip() for cell in size_table([row], True).splitlines()[0][1:-1].split("|")]
    assert sharded[sharded.index("RSS MiB") + 1] == "largest RSS MiB"
    assert len(sharded) == len(SIZE_COLUMNS) + len(bench_fleet.LARGEST_COLUMNS)
    figures = [cell.strip() for cell in size_table([row], True).splitlines()[2][1:-1].split("|")]
    assert figures[sharded.index("RSS MiB")] == "300"
    assert figures[sharded.index("largest RSS MiB")] == "160"


def test_shards_must_be_positive() -> None:
    with pytest.raises(SystemExit):
        bench_fleet.main(["--shards", "0"])


def test_the_webhooks_own_answers_are_read_from_its_histogram_between_two_scrapes() -> None:
    name = "odoo_operator_admission_duration_seconds_bucket"

    def scrape(counts: dict[str, float], webhook: str = "validate-instance") -> Any:
        return {
            (name, frozenset({"webhook": webhook, "decision": "allowed", "le": le}.items())): n
            for le, n in counts.items()
        }

    before = scrape({"0.005": 10, "0.05": 10, "+Inf": 10})
    after = {
        **scrape({"0.005": 60, "0.05": 108, "+Inf": 110}),
        **scrape({"0.005": 0, "0.05": 0, "+Inf": 500}, webhook="validate-backup"),
    }
    answered = bench_fleet.admission_buckets(after, before)
    assert answered == {0.005: 50, 0.05: 98, math.inf: 100}
    assert bench_fleet.bucket_percentile(answered, 0.5) == 0.005
    assert bench_fleet.bucket_percentile(answered, 0.99) == math.inf  # beyond the last bound
    assert bench_fleet.bucket_percentile(answered, 0.98) == 0.05
    assert math.isnan(bench_fleet.bucket_percentile({}, 0.5))


def test_rollout_cpu_is_read_by_program_and_names_the_operator_processes() -> None:
    own = os.getpid()
    before = bench_fleet.cpu_by_program({own: "operator"})
    started = time.process_time()
    while time.process_time() - started < 0.3:  # spend some CPU as "the operator"
        pass
    spent = bench_fleet.cpu_by_program({own: "operator"})["operator"] - before["operator"]
    assert spent >= 0.2
    row = SizeRow(500, to_all_ready_seconds=300.0)
    row.rollout_cpu = {"etcd": 40.0, "kube-apiserver": 250.0, "operator": 150.0}
    line = bench_fleet.rollout_cpu_line(row)
    assert line.endswith("kube-apiserver 250, operator 150, etcd 40")
    assert f"= {300 * (os.cpu_count() or 1):,} CPU s" in line
