"""Shards: every tenant belongs to exactly one, the same in every process, and an assignment
never changes by itself."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import kopf
import pytest

from odoo_operator.handlers import admission
from odoo_operator.handlers import shards as shard_handlers
from odoo_operator.model.shards import (
    ADMISSION_ONLY_ENV,
    SHARD_ENV,
    SHARD_LABEL,
    SHARDS_ENV,
    ShardConfigError,
    Sharding,
    instance_of,
    rendezvous_shard,
)

NAMES = [f"tenant-{number}" for number in range(3000)]


def _assign(names: list[str], shards: tuple[str, ...]) -> dict[str, str]:
    return {name: rendezvous_shard(name, shards) for name in names}


def test_the_hash_is_the_same_in_every_process() -> None:
    # Python's own hash() is salted per process; two shards must never disagree.
    script = (
        "from odoo_operator.model.shards import rendezvous_shard;"
        "print(','.join(rendezvous_shard(f'tenant-{n}', ('a', 'b', 'c')) for n in range(200)))"
    )
    answers = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(answers) == 1
    assert answers == {
        ",".join(rendezvous_shard(f"tenant-{n}", ("a", "b", "c")) for n in range(200))
    }


def test_two_shards_share_a_fleet_about_evenly() -> None:
    assigned = _assign(NAMES, ("a", "b"))
    share = sum(1 for shard in assigned.values() if shard == "a") / len(NAMES)
    assert 0.45 < share < 0.55, share


def test_adding_a_shard_moves_only_what_the_new_shard_wins() -> None:
    before = _assign(NAMES, ("a", "b"))
    after = _assign(NAMES, ("a", "b", "c"))
    moved = [name for name in NAMES if before[name] != after[name]]
    assert all(after[name] == "c" for name in moved)  # never from a to b or back
    assert 0.28 < len(moved) / len(NAMES) < 0.38, len(moved)


def test_the_label_wins_over_the_hash() -> None:
    sharding = Sharding(("a", "b"), "b")
    name = next(name for name in NAMES if rendezvous_shard(name, ("a", "b")) == "a")
    assert not sharding.serves({}, name)
    assert sharding.serves({SHARD_LABEL: "b"}, name)
    assert sharding.shard_of({SHARD_LABEL: "b"}, name) == "b"


def test_an_operator_without_shards_serves_every_tenant() -> None:
    sharding = Sharding.from_environment({})
    assert not sharding.enabled
    assert all(sharding.serves({SHARD_LABEL: "elsewhere"}, name) for name in NAMES[:10])
    assert sharding.label_problem({SHARD_LABEL: "elsewhere"}) is None


def test_a_label_naming_no_shard_of_the_fleet_is_refused_by_field() -> None:
    problem = Sharding(("a", "b"), "a").label_problem({SHARD_LABEL: "c"})
    assert problem == (
        f"metadata.labels[{SHARD_LABEL}]: 'c' is not a shard of this fleet (shards: a, b)"
    )


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({SHARD_ENV: "a"}, SHARDS_ENV),
        ({SHARDS_ENV: "a,b", SHARD_ENV: "c"}, SHARD_ENV),
        ({SHARDS_ENV: "a,b"}, SHARD_ENV),
        ({SHARDS_ENV: "a,a", SHARD_ENV: "a"}, "names a shard twice"),
        ({SHARDS_ENV: "a,Shard_B", SHARD_ENV: "a"}, "'Shard_B' is not a shard name"),
    ],
)
def test_inconsistent_shard_settings_are_refused_naming_the_variable(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ShardConfigError, match=named):
        Sharding.from_environment(environ)


def test_the_admission_process_knows_the_shards_and_serves_none() -> None:
    sharding = Sharding.from_environment({SHARDS_ENV: "a,b", ADMISSION_ONLY_ENV: "true"})
    assert sharding.enabled  # it stamps new tenants with their shard
    assert {sharding.shard_of(None, name) for name in NAMES} == {"a", "b"}
    assert not any(sharding.serves(None, name) for name in NAMES)
    # A shard it names must still be one of the fleet's.
    with pytest.raises(ShardConfigError, match=SHARD_ENV):
        Sharding.from_environment({SHARDS_ENV: "a,b", SHARD_ENV: "c", ADMISSION_ONLY_ENV: "true"})


def test_backups_and_restores_belong_to_their_instance() -> None:
    backup = {"kind": "OdooBackup", "metadata": {"name": "acme-1"}, "spec": {"instance": "acme"}}
    restore = {
        "kind": "OdooRestore",
        "metadata": {"name": "r1"},
        "spec": {"backup": "acme-1", "target": {"instance": "acme-staging"}},
    }
    instance = {"kind": "OdooInstance", "metadata": {"name": "acme"}, "spec": {}}
    assert [instance_of(b) for b in (backup, restore, instance)] == [
        "acme",
        "acme-staging",
        "acme",
    ]


def test_a_restore_drill_belongs_to_its_backups_instance_as_its_label_says() -> None:
    drill = {
        "kind": "OdooRestore",
        "metadata": {"name": "acme-drill-1", "labels": {"odoo.tenantops.io/instance": "acme"}},
        "spec": {"backup": "acme-1", "drill": True},
    }
    assert instance_of(drill) == "acme"
    # The label decides only for drills: an ordinary restore belongs to its target.
    restore = {
        "kind": "OdooRestore",
        "metadata": {"name": "r2", "labels": {"odoo.tenantops.io/instance": "globex"}},
        "spec": {"backup": "acme-1", "target": {"instance": "acme-staging"}},
    }
    assert instance_of(restore) == "acme-staging"
    unlabelled = {"kind": "OdooRestore", "metadata": {"name": "d"}, "spec": {"drill": True}}
    assert instance_of(unlabelled) == "d"


class _Kube:
    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects

    async def get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(name)


class _Clients:
    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.kube = _Kube(objects)


def _stamped(body: dict[str, Any], old: dict[str, Any] | None = None, **objects: Any) -> Any:
    patch = kopf.Patch()
    memo = kopf.Memo()
    memo["clients"] = _Clients(objects)
    asyncio.run(
        admission.assign_shard(
            body=kopf.Body(body),
            patch=patch,
            memo=memo,
            old=kopf.Body(old) if old is not None else None,
        )
    )
    return patch.as_json_patch(kopf.Body(body))


@pytest.fixture
def two_shards(monkeypatch: pytest.MonkeyPatch) -> Sharding:
    sharding = Sharding(("a", "b"), "a")
    monkeypatch.setattr(admission, "SHARDING", sharding)
    return sharding


def _instance(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels is not None:
        metadata["labels"] = labels
    return {"kind": "OdooInstance", "metadata": metadata, "spec": {}}


def test_admission_stamps_a_new_instance_with_the_shard_its_name_hashes_to(
    two_shards: Sharding,
) -> None:
    ops = _stamped(_instance("acme"))
    assert ops == [
        {
            "op": "add",
            "path": "/metadata/labels",
            "value": {SHARD_LABEL: rendezvous_shard("acme", ("a", "b"))},
        }
    ]


def test_an_apply_without_the_label_keeps_the_instance_where_it_is(two_shards: Sharding) -> None:
    name = next(name for name in NAMES if rendezvous_shard(name, ("a", "b")) == "a")
    ops = _stamped(_instance(name, {"team": "x"}), old=_instance(name, {SHARD_LABEL: "b"}))
    assert ops == [
        {"op": "add", "path": f"/metadata/labels/{SHARD_LABEL.replace('/', '~1')}", "value": "b"}
    ]


def test_a_label_the_manifest_names_is_left_as_it_is(two_shards: Sharding) -> None:
    assert _stamped(_instance("acme", {SHARD_LABEL: "b"})) == []


def test_a_new_backup_goes_to_its_instances_shard(two_shards: Sharding) -> None:
    backup = {"kind": "OdooBackup", "metadata": {"name": "acme-1"}, "spec": {"instance": "acme"}}
    moved = _instance("acme", {SHARD_LABEL: "b"})
    assert _stamped(backup, acme=moved)[0]["value"] == {SHARD_LABEL: "b"}
    hashed = rendezvous_shard("acme", ("a", "b"))
    assert _stamped(backup)[0]["value"] == {SHARD_LABEL: hashed}  # instance not there (yet)


def test_each_shard_has_its_own_finalizer_and_an_unsharded_operator_the_old_one() -> None:
    assert Sharding(("a", "b"), "a").finalizer == "odoo.tenantops.io/finalizer-a"
    assert Sharding().finalizer == "odoo.tenantops.io/finalizer"


class _Patches:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def patch_metadata(self, api_version: str, kind: str, name: str, meta: Any) -> None:
        self.sent.append(meta)


async def test_the_unsharded_finalizer_is_dropped_once_the_shards_own_guards_the_tenant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shard_handlers, "SHARDING", Sharding(("a", "b"), "a"))
    kube = _Patches()
    clients: Any = type("Clients", (), {"kube": kube})()

    def body(*finalizers: str) -> kopf.Body:
        meta = {"name": "acme", "finalizers": list(finalizers)}
        return kopf.Body({"kind": "OdooInstance", "metadata": meta})

    old, own = "odoo.tenantops.io/finalizer", "odoo.tenantops.io/finalizer-a"
    await shard_handlers.hand_over_finalizer(clients, body(old))  # ours not there yet: keep it
    await shard_handlers.hand_over_finalizer(clients, body(own))  # nothing to hand over
    await shard_handlers.hand_over_finalizer(clients, body(old, own, "example.com/other"))
    assert kube.sent == [{"finalizers": [own, "example.com/other"]}]
