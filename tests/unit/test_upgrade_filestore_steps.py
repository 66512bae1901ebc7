"""The filestore follows its database through an upgrade's switch and its rollback.

Odoo reads ``filestore/<database name>``; renaming databases moves no directory. These tests
prove the Job that moves the directories (its builder and its very shell script, run here on
temporary directories and killed at every rename), and the step table that runs it: after
``switch`` and before the pods come back, and in a rollback before the databases go back.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from odoo_operator.builders.tenant import Endpoint, Tenant, TenantCredentials
from odoo_operator.builders.workloads import (
    FILESTORE_CLAIM,
    build_upgrade_filestore_job,
    build_upgrade_job,
    upgrade_filestore_job_name,
)
from odoo_operator.model.config import OperatorConfig, ServerRef
from odoo_operator.model.names import MAINTENANCE_ANNOTATION
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.reconcile import upgrades
from odoo_operator.reconcile.clients import Clients

OLD_IMAGE = "odoo:18.0-a"
NEW_IMAGE = "odoo:18.0-b"
DATA_DIR = "/var/lib/odoo"


def _tenant() -> Tenant:
    body = {
        "metadata": {"name": "acme", "uid": "uid-1", "generation": 1},
        "spec": {"version": "18.0", "hosts": ["acme.example.com"]},
    }
    return Tenant(
        spec=InstanceSpec.from_resource(body),
        image=OLD_IMAGE,
        database=Endpoint("", 0),
        redis=Endpoint("", 0),
        redis_user="",
        redis_key_prefix="",
        credentials=TenantCredentials("", "", ""),
        node_selector={"pool": "dedicated"},
        tolerations=({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"},),
    )


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


# --- the Job -----------------------------------------------------------------------------------


def test_the_filestore_job_moves_directories_on_the_tenant_volume_and_nothing_else() -> None:
    job = build_upgrade_filestore_job(
        _tenant(),
        upgrade_id="a1b2c3",
        image=NEW_IMAGE,
        live="odoo_acme",
        incoming="odoo_acme_upgrade_a1b2c3",
        aside="odoo_acme_pre_upgrade_a1b2c3",
    )
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert job["metadata"]["name"] == "odoo-upgrade-a1b2c3-filestore"
    assert job["metadata"]["namespace"] == "odoo-acme"
    assert container["image"] == NEW_IMAGE
    assert _env(container) == {
        "FILESTORE": f"{DATA_DIR}/filestore",
        "LIVE": "odoo_acme",
        "INCOMING": "odoo_acme_upgrade_a1b2c3",
        "ASIDE": "odoo_acme_pre_upgrade_a1b2c3",
    }
    # The tenant's volume, where Odoo's pods mount it; no configuration, no credentials.
    assert pod["volumes"] == [
        {"name": "filestore", "persistentVolumeClaim": {"claimName": FILESTORE_CLAIM}}
    ]
    assert container["volumeMounts"] == [{"name": "filestore", "mountPath": DATA_DIR}]
    assert "envFrom" not in container
    assert pod["automountServiceAccountToken"] is False
    # Pod Security "restricted", like every other pod of the tenant.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["restartPolicy"] == "Never"
    # The script resumes where it stopped, so a lost pod may run again.
    assert job["spec"]["backoffLimit"] > 0
    assert pod["nodeSelector"] == {"pool": "dedicated"}
    assert pod["tolerations"][0]["key"] == "dedicated"


def test_the_rollback_job_has_its_own_name_so_it_never_finds_the_upgrade_s_finished_job() -> None:
    forward = upgrade_filestore_job_name("a1b2c3")
    back = build_upgrade_filestore_job(
        _tenant(),
        upgrade_id="a1b2c3",
        image=OLD_IMAGE,
        live="odoo_acme",
        incoming="odoo_acme_pre_upgrade_a1b2c3",
        aside="odoo_acme_failed_upgrade_a1b2c3",
        rollback=True,
    )
    assert back["metadata"]["name"] == upgrade_filestore_job_name("a1b2c3", rollback=True)
    assert back["metadata"]["name"] != forward
    assert back["metadata"]["labels"]["odoo.tenantops.io/upgrade-step"] == "rollback-filestore"


def test_the_directory_the_upgrade_job_fills_is_the_one_the_filestore_job_moves_in() -> None:
    tenant = _tenant()
    copy = "odoo_acme_upgrade_a1b2c3"
    upgrade = build_upgrade_job(
        tenant, upgrade_id="a1b2c3", image=NEW_IMAGE, database=copy, modules="all"
    )
    (init,) = upgrade["spec"]["template"]["spec"]["initContainers"]
    move = build_upgrade_filestore_job(
        tenant,
        upgrade_id="a1b2c3",
        image=NEW_IMAGE,
        live="odoo_acme",
        incoming=copy,
        aside="odoo_acme_pre_upgrade_a1b2c3",
    )
    moved = _env(move["spec"]["template"]["spec"]["containers"][0])

    assert _env(init)["SRC"] == f"{moved['FILESTORE']}/{moved['LIVE']}"
    assert _env(init)["DST"] == f"{moved['FILESTORE']}/{moved['INCOMING']}"


# --- the script, run for real ------------------------------------------------------------------


def _files(root: Path) -> dict[str, dict[str, str]]:
    """Each directory below ``root`` with its files' contents."""
    if not root.is_dir():
        return {}
    return {
        directory.name: {
            str(path.relative_to(directory)): path.read_text()
            for path in sorted(directory.rglob("*"))
            if path.is_file()
        }
        for directory in sorted(root.iterdir())
    }


def _write(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)


def _run(
    data_dir: Path,
    *,
    live: str,
    incoming: str,
    aside: str,
    rollback: bool = False,
    path: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """The Job's own command and environment, the pod's data_dir mapped to ``data_dir``."""
    job = build_upgrade_filestore_job(
        _tenant(),
        upgrade_id="a1b2c3",
        image=NEW_IMAGE,
        live=live,
        incoming=incoming,
        aside=aside,
        rollback=rollback,
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {
        name: value.replace(DATA_DIR, str(data_dir), 1) if name == "FILESTORE" else value
        for name, value in _env(container).items()
    }
    return subprocess.run(
        container["command"],
        env={"PATH": path or os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


OLD = {"ab/ab12": "invoice.pdf", "cd/cd34": "logo.png"}
# What the upgrade leaves in the copy: the old files (hard links) and one it wrote.
UPGRADED = {**OLD, "ef/ef56": "new assets"}
FORWARD = {"live": "db", "incoming": "db_upgrade_x", "aside": "db_pre_upgrade_x"}
BACKWARD = {"live": "db", "incoming": "db_pre_upgrade_x", "aside": "db_failed_upgrade_x"}


def _after_migrate(data_dir: Path) -> Path:
    root = data_dir / "filestore"
    _write(root / "db", OLD)
    _write(root / "db_upgrade_x", UPGRADED)
    return root


def test_the_switch_puts_the_upgraded_files_in_place_and_keeps_the_previous_ones(
    tmp_path: Path,
) -> None:
    root = _after_migrate(tmp_path)
    result = _run(tmp_path, **FORWARD)
    assert result.returncode == 0, result.stderr
    assert _files(root) == {"db": UPGRADED, "db_pre_upgrade_x": OLD}


def test_a_rollback_after_the_switch_puts_everything_back_where_the_databases_go(
    tmp_path: Path,
) -> None:
    root = _after_migrate(tmp_path)
    assert _run(tmp_path, **FORWARD).returncode == 0
    _write(root / "db", {"gh/gh78": "written while the new version ran"})

    result = _run(tmp_path, **BACKWARD, rollback=True)

    assert result.returncode == 0, result.stderr
    assert _files(root) == {
        "db": OLD,
        "db_failed_upgrade_x": {**UPGRADED, "gh/gh78": "written while the new version ran"},
    }


def _killing_mv(tmp_path: Path, kill_at: int, after: bool) -> str:
    """A PATH whose ``mv`` kills the script at its ``kill_at``-th rename, before or after
    doing it: the pod lost at that instant."""
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    count = shim / "count"
    count.write_text("0")
    real = shutil.which("mv")
    assert real is not None
    kill = 'kill -KILL "$PPID"; exit 137'
    (shim / "mv").write_text(
        "#!/bin/sh\n"
        f'n=$(( $(cat "{count}") + 1 )); echo "$n" > "{count}"\n'
        f'if [ "$n" -eq {kill_at} ] && [ {int(after)} -eq 0 ]; then {kill}; fi\n'
        f'"{real}" "$@"\n'
        f'if [ "$n" -eq {kill_at} ]; then {kill}; fi\n'
    )
    (shim / "mv").chmod(0o755)
    return f"{shim}{os.pathsep}{os.environ['PATH']}"


CRASH_POINTS = [
    pytest.param(1, False, id="before-the-first-rename"),
    pytest.param(1, True, id="between-the-renames"),
    pytest.param(2, True, id="after-the-second-rename"),
]


@pytest.mark.parametrize(("kill_at", "after"), CRASH_POINTS)
def test_a_switch_killed_at_any_rename_finishes_when_run_again(
    tmp_path: Path, kill_at: int, after: bool
) -> None:
    root = _after_migrate(tmp_path)

    killed = _run(tmp_path, **FORWARD, path=_killing_mv(tmp_path, kill_at, after))
    again = _run(tmp_path, **FORWARD)
    once_more = _run(tmp_path, **FORWARD)

    assert killed.returncode != 0
    assert again.returncode == 0, again.stderr
    assert once_more.returncode == 0, once_more.stderr
    assert _files(root) == {"db": UPGRADED, "db_pre_upgrade_x": OLD}


@pytest.mark.parametrize(("kill_at", "after"), CRASH_POINTS)
def test_a_rollback_killed_at_any_rename_finishes_when_run_again(
    tmp_path: Path, kill_at: int, after: bool
) -> None:
    root = _after_migrate(tmp_path)
    assert _run(tmp_path, **FORWARD).returncode == 0

    killed = _run(tmp_path, **BACKWARD, rollback=True, path=_killing_mv(tmp_path, kill_at, after))
    again = _run(tmp_path, **BACKWARD, rollback=True)
    once_more = _run(tmp_path, **BACKWARD, rollback=True)

    assert killed.returncode != 0
    assert again.returncode == 0, again.stderr
    assert once_more.returncode == 0, once_more.stderr
    assert _files(root) == {"db": OLD, "db_failed_upgrade_x": UPGRADED}


def test_a_tenant_that_never_stored_a_file_switches_and_rolls_back_with_empty_folders(
    tmp_path: Path,
) -> None:
    switched = _run(tmp_path, **FORWARD)
    listed_after_switch = sorted(p.name for p in (tmp_path / "filestore").iterdir())
    back = _run(tmp_path, **BACKWARD, rollback=True)

    assert switched.returncode == 0, switched.stderr
    # The kept side exists even when empty: it is what the rollback moves back.
    assert listed_after_switch == ["db", "db_pre_upgrade_x"]
    assert back.returncode == 0, back.stderr
    assert sorted(p.name for p in (tmp_path / "filestore").iterdir()) == [
        "db",
        "db_failed_upgrade_x",
    ]


def test_the_switch_refuses_and_moves_nothing_when_the_copy_s_files_are_missing(
    tmp_path: Path,
) -> None:
    root = tmp_path / "filestore"
    _write(root / "db", OLD)

    result = _run(tmp_path, **FORWARD)

    assert result.returncode != 0
    assert "nothing was moved" in result.stderr
    assert _files(root) == {"db": OLD}


def test_a_rollback_of_a_filestore_that_was_never_switched_refuses_and_moves_nothing(
    tmp_path: Path,
) -> None:
    """The state an upgrade switched without the filestore step leaves: moving "back" would
    hand the tenant's files to the failed database. The step table does not run the Job
    then; the script refuses on its own as well."""
    root = _after_migrate(tmp_path)

    result = _run(tmp_path, **BACKWARD, rollback=True)

    assert result.returncode != 0
    assert "nothing was moved" in result.stderr
    assert _files(root) == {"db": OLD, "db_upgrade_x": UPGRADED}


# --- the step table ----------------------------------------------------------------------------


class FakeKube:
    """The API objects an upgrade reads and writes, in memory."""

    def __init__(self, instance: dict[str, Any]) -> None:
        self.objects: dict[tuple[str, str, str | None], dict[str, Any]] = {
            ("OdooInstance", instance["metadata"]["name"], None): instance
        }
        self.applied: list[dict[str, Any]] = []

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return self.objects.get((kind, name, namespace))

    async def list(self, api_version: str, kind: str, *args: Any, **kwargs: Any) -> list[Any]:
        return [obj for (k, _, _), obj in self.objects.items() if k == kind]

    async def apply(self, desired: dict[str, Any]) -> bool:
        meta = desired["metadata"]
        self.applied.append(desired)
        self.objects[(desired["kind"], meta["name"], meta.get("namespace"))] = desired
        return True

    async def patch_metadata(
        self, api_version: str, kind: str, name: str, metadata: dict[str, Any], *args: Any
    ) -> None:
        annotations = self.objects[(kind, name, None)]["metadata"].setdefault("annotations", {})
        for key, value in metadata.get("annotations", {}).items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value

    async def patch_status(
        self, api_version: str, kind: str, name: str, status: dict[str, Any], *args: Any
    ) -> None:
        self.objects[(kind, name, None)].setdefault("status", {}).update(status)

    def job(self, name: str) -> dict[str, Any] | None:
        return self.objects.get(("Job", name, "odoo-acme"))

    def finish(self, name: str, condition: str) -> None:
        job = self.job(name)
        assert job is not None, f"no Job {name}"
        job["status"] = {"conditions": [{"type": condition, "status": "True"}]}

    def scale(self, replicas: int) -> None:
        for component in ("web", "cron"):
            self.objects[("Deployment", f"odoo-{component}", "odoo-acme")] = {
                "metadata": {"name": f"odoo-{component}", "generation": 1},
                "spec": {
                    "replicas": replicas,
                    "template": {"spec": {"containers": [{"image": NEW_IMAGE}]}},
                },
                "status": {"replicas": replicas},
            }


class Tenancy:
    """One instance in the middle of an upgrade, advanced as the timer handler does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, upgrade: dict[str, Any]) -> None:
        self.instance: dict[str, Any] = {
            "metadata": {
                "name": "acme",
                "uid": "uid-1",
                "generation": 2,
                "annotations": {MAINTENANCE_ANNOTATION: f"upgrade/{upgrade['id']}"},
            },
            "spec": {"version": "18.0", "image": NEW_IMAGE, "hosts": ["acme.example.com"]},
            "status": {
                "runningVersion": "18.0",
                "runningImage": OLD_IMAGE,
                "upgrade": upgrade,
            },
        }
        self.kube = FakeKube(self.instance)
        config = OperatorConfig(
            postgres_servers={"main": ServerRef("main", "pg")},
            default_postgres="main",
            redis_servers={"main": ServerRef("main", "redis")},
            default_redis="main",
        )
        self.clients = Clients(kube=self.kube, config=config)  # type: ignore[arg-type]
        self.swaps: list[tuple[str, str, str]] = []
        self.databases = {"odoo_acme", upgrade.get("copy") or "odoo_acme_upgrade_x"}

        async def conninfo(server: ServerRef) -> str:
            return "host=postgres"

        @asynccontextmanager
        async def connect(conninfo: str, *args: Any, **kwargs: Any) -> AsyncIterator[object]:
            yield object()

        async def database_owner(admin: object, name: str) -> str | None:
            return "odoo_acme" if name in self.databases else None

        async def swap(admin: object, live: str, replacement: str, keep: str) -> bool:
            self.swaps.append((live, replacement, keep))
            self.databases = (self.databases - {replacement}) | {keep}
            return True

        monkeypatch.setattr(self.clients, "postgres_admin_conninfo", conninfo)
        monkeypatch.setattr(upgrades.db, "connect", connect)
        monkeypatch.setattr(upgrades.db, "database_owner", database_owner)
        monkeypatch.setattr(upgrades.db, "swap_databases", swap)

    @property
    def upgrade(self) -> dict[str, Any]:
        result: dict[str, Any] = self.instance["status"]["upgrade"]
        return result

    @property
    def maintenance(self) -> str | None:
        return (self.instance["metadata"].get("annotations") or {}).get(MAINTENANCE_ANNOTATION)

    async def tick(self) -> bool:
        """One pass of the upgrade timer; whether it recorded anything."""
        changes = await upgrades.advance_upgrade(self.clients, self.instance)
        if changes is None:
            return False
        upgrade, fields = changes
        self.instance["status"]["upgrade"] = upgrade
        self.instance["status"].update(fields)
        return True


def _at(step: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": "x",
        "from": {"version": "18.0", "image": OLD_IMAGE},
        "to": {"version": "18.0", "image": NEW_IMAGE},
        "step": step,
        "copy": "odoo_acme_upgrade_x",
        **fields,
    }


FORWARD_JOB = "odoo-upgrade-x-filestore"
ROLLBACK_JOB = "odoo-rollback-x-filestore"


async def test_after_the_database_switch_the_filestore_moves_before_the_pods_come_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = Tenancy(monkeypatch, _at("switch"))

    await tenant.tick()  # the databases
    assert tenant.swaps == [("odoo_acme", "odoo_acme_upgrade_x", "odoo_acme_pre_upgrade_x")]
    assert tenant.upgrade["step"] == "filestore"
    assert tenant.instance["status"]["runningImage"] == NEW_IMAGE

    await tenant.tick()  # the Job starts
    job = tenant.kube.job(FORWARD_JOB)
    assert job is not None
    assert _env(job["spec"]["template"]["spec"]["containers"][0]) == {
        "FILESTORE": f"{DATA_DIR}/filestore",
        "LIVE": "odoo_acme",
        "INCOMING": "odoo_acme_upgrade_x",
        "ASIDE": "odoo_acme_pre_upgrade_x",
    }
    assert await tenant.tick() is False  # running: nothing changes, the pods stay down
    assert tenant.upgrade["step"] == "filestore"
    assert tenant.maintenance == "upgrade/x"

    tenant.kube.finish(FORWARD_JOB, "Complete")
    await tenant.tick()
    assert tenant.upgrade["step"] == "health"
    assert tenant.upgrade["filestore"] == "switched"
    assert tenant.maintenance == "upgrade/x"  # lifted by the health step, not before
    await tenant.tick()
    assert tenant.maintenance is None


async def test_an_operator_restarted_around_the_switch_swaps_once_and_runs_one_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed after the renames but before recording them, then after starting the Job but
    before recording that: each time the step is taken again from the status."""
    tenant = Tenancy(monkeypatch, _at("switch"))
    # The databases were swapped by the operator that stopped.
    tenant.databases = {"odoo_acme", "odoo_acme_pre_upgrade_x"}

    await tenant.tick()
    assert tenant.swaps == []
    assert tenant.upgrade["step"] == "filestore"

    await tenant.tick()
    tenant.instance["status"]["upgrade"] = _at(
        "filestore", kept="odoo_acme_pre_upgrade_x"
    )  # the record of the Job lost
    await tenant.tick()
    assert [job["metadata"]["name"] for job in tenant.kube.applied] == [FORWARD_JOB]


async def test_the_filestore_job_waits_for_web_and_cron_to_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = Tenancy(monkeypatch, _at("filestore", kept="odoo_acme_pre_upgrade_x"))
    tenant.kube.scale(1)

    await tenant.tick()
    assert tenant.kube.job(FORWARD_JOB) is None
    tenant.kube.scale(0)
    await tenant.tick()
    assert tenant.kube.job(FORWARD_JOB) is not None


async def test_a_failed_filestore_job_keeps_the_tenant_down_until_it_is_deleted_and_rerun(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = Tenancy(monkeypatch, _at("filestore", kept="odoo_acme_pre_upgrade_x"))
    await tenant.tick()
    tenant.kube.finish(FORWARD_JOB, "Failed")

    await tenant.tick()
    assert tenant.upgrade["step"] == "filestore"
    assert f"kubectl logs -n odoo-acme job/{FORWARD_JOB}" in tenant.upgrade["message"]
    assert tenant.maintenance == "upgrade/x"
    assert await tenant.tick() is False  # not retried on its own
    assert len(tenant.kube.applied) == 1

    del tenant.kube.objects[("Job", FORWARD_JOB, "odoo-acme")]
    await tenant.tick()
    assert len(tenant.kube.applied) == 2
    tenant.kube.finish(FORWARD_JOB, "Complete")
    await tenant.tick()
    assert tenant.upgrade["step"] == "health"


async def test_a_failed_health_gate_moves_the_filestore_back_then_the_databases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    tenant = Tenancy(
        monkeypatch,
        _at(
            "health",
            kept="odoo_acme_pre_upgrade_x",
            filestore="switched",
            healthSince=upgrades.timestamp(long_ago),
        ),
    )
    tenant.databases = {"odoo_acme", "odoo_acme_pre_upgrade_x"}
    tenant.instance["metadata"]["annotations"] = {}
    tenant.instance["status"]["runningImage"] = NEW_IMAGE

    await tenant.tick()
    assert tenant.upgrade["step"] == "rollback-filestore"
    tenant.kube.scale(1)  # web and cron were up on the new version
    await tenant.tick()
    assert tenant.maintenance == "upgrade/x"
    assert tenant.kube.job(ROLLBACK_JOB) is None  # not while they run
    tenant.kube.scale(0)
    await tenant.tick()
    job = tenant.kube.job(ROLLBACK_JOB)
    assert job is not None
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == OLD_IMAGE
    assert (_env(container)["LIVE"], _env(container)["INCOMING"], _env(container)["ASIDE"]) == (
        "odoo_acme",
        "odoo_acme_pre_upgrade_x",
        "odoo_acme_failed_upgrade_x",
    )
    assert tenant.swaps == []  # the databases wait for the files

    tenant.kube.finish(ROLLBACK_JOB, "Complete")
    await tenant.tick()
    assert (tenant.upgrade["step"], tenant.upgrade["filestore"]) == ("rollback", "restored")
    await tenant.tick()
    assert tenant.swaps == [("odoo_acme", "odoo_acme_pre_upgrade_x", "odoo_acme_failed_upgrade_x")]
    assert tenant.upgrade["step"] == "failed"
    assert "filestore/odoo_acme_failed_upgrade_x" in tenant.upgrade["message"]
    assert tenant.instance["status"]["runningImage"] == OLD_IMAGE


async def test_a_rollback_of_an_upgrade_switched_without_the_filestore_step_moves_no_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An upgrade an earlier operator switched: its directories never moved, and moving them
    "back" would give the tenant's files to the failed database."""
    tenant = Tenancy(
        monkeypatch, _at("rollback-filestore", kept="odoo_acme_pre_upgrade_x", reason="r")
    )
    tenant.databases = {"odoo_acme", "odoo_acme_pre_upgrade_x"}

    await tenant.tick()
    await tenant.tick()

    assert tenant.kube.applied == []
    assert tenant.upgrade["step"] == "failed"
    assert "filestore" not in tenant.upgrade
    assert len(tenant.swaps) == 1
