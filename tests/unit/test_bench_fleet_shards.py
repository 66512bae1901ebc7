"""bench-fleet with shards: the shard names, which shard a tenant belongs to, the restart's
union over the processes, and a size table that keeps today's columns without shards."""

from __future__ import annotations

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
