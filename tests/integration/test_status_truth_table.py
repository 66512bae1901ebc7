"""Every row of the truth tables in docs/status.md holds on the real API server, read by the
real tools: the status the operator's code makes for the state is written to the API server
(which prunes what the CRD does not declare), read back with kubectl, and judged by
sigs.k8s.io/cli-utils' kstatus, ``kubectl wait --for=condition=Ready``, the Argo CD health
checks the chart ships, and Flux's reading of kstatus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from odoo_devstack import kubectl as kubectl_api
from odoo_devstack import status_readers as readers
from odoo_devstack import status_states as states

REPO = Path(__file__).parents[2]
TRUTH_TABLES = REPO / "docs" / "status.md"
GROUP_VERSION = "odoo.tenantops.io/v1alpha1"
PLURALS = {
    "OdooInstance": "odooinstances",
    "OdooBackup": "odoobackups",
    "OdooRestore": "odoorestores",
}
# Holds the deleted instance of the "being deleted" row until the test lets it go.
TEST_FINALIZER = "tests.odoo.tenantops.io/truth-table"


@dataclass(frozen=True)
class Row:
    """One row of a truth table: a state and what every reader must conclude."""

    kind: str
    state: str
    phase: str
    conditions: dict[str, str]  # type -> "Status (Reason)" or "none"
    kstatus: str
    kubectl_wait: str
    argocd: str
    flux: str


def truth_table_rows() -> list[Row]:
    """The rows of the three tables of docs/status.md, by kind."""
    rows: list[Row] = []
    kind = ""
    for line in TRUTH_TABLES.read_text().splitlines():
        heading = re.match(r"^## (Odoo\w+)$", line)
        if heading:
            kind = heading.group(1)
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not kind or len(cells) != 9 or cells[0] in ("state", "---"):
            continue
        state, phase, ready, reconciling, stalled, kstatus, wait, argocd, flux = cells
        rows.append(
            Row(
                kind=kind,
                state=state,
                phase=phase.strip("`"),
                conditions={
                    "Ready": ready.replace("`", ""),
                    "Reconciling": reconciling.replace("`", ""),
                    "Stalled": stalled.replace("`", ""),
                },
                kstatus=kstatus,
                kubectl_wait=wait,
                argocd=argocd,
                flux=flux,
            )
        )
    return rows


ROWS = truth_table_rows()
STATES: dict[str, dict[str, Any]] = {
    "OdooInstance": states.INSTANCE_STATES,
    "OdooBackup": states.BACKUP_STATES,
    "OdooRestore": states.RESTORE_STATES,
}


def test_every_state_the_operator_publishes_has_a_row_and_every_row_a_state() -> None:
    for kind, made in STATES.items():
        documented = [row.state for row in ROWS if row.kind == kind]
        assert sorted(documented) == sorted(made), kind


@pytest.fixture(scope="module")
def cluster(kubeconfig: Path, k8s: object) -> Iterator[Callable[..., Any]]:
    """The CRDs installed; a kubectl runner that fails loudly; every object made removed."""
    kubectl_api.install_crds(k8s, REPO / "crds")  # type: ignore[arg-type]
    made: list[tuple[str, str]] = []

    def run(*args: str, stdin: str | None = None, check: bool = True) -> str:
        result = readers.kubectl(kubeconfig, *args, stdin=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        if args[0] == "create" and result.returncode == 0:
            made.append(tuple(result.stdout.split()[0].split("/", 1)))  # type: ignore[arg-type]
        return result.stdout

    yield run
    for resource, name in made:
        run(
            "patch",
            resource,
            name,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
        run("delete", resource, name, "--wait=false", "--ignore-not-found", check=False)


def _object(kind: str, name: str, state: str) -> dict[str, Any]:
    if kind == "OdooInstance":
        body = states.instance_body(name)
        if state == "being deleted":
            body["metadata"]["finalizers"] = [TEST_FINALIZER]
        return body
    spec: dict[str, Any] = (
        {"instance": "acme"}
        if kind == "OdooBackup"
        else {"backup": "acme-1", "target": {"instance": "acme"}}
    )
    return {"apiVersion": GROUP_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _status_for(kind: str, state: str, live: dict[str, Any]) -> dict[str, Any] | None:
    made = STATES[kind][state]
    if kind != "OdooInstance":
        return made()  # type: ignore[no-any-return]
    return made(live)  # type: ignore[no-any-return]


def _condition_cell(status: dict[str, Any], type_: str) -> str:
    condition = next((c for c in status.get("conditions") or [] if c["type"] == type_), None)
    if condition is None:
        return "none"
    return (
        f"{condition['status']} ({condition['reason']})"
        if condition.get("reason")
        else condition["status"]
    )


@pytest.mark.parametrize("row", ROWS, ids=[f"{row.kind}: {row.state}" for row in ROWS])
def test_each_tool_reads_each_state_as_the_truth_table_says(
    cluster: Callable[..., Any], kubeconfig: Path, row: Row
) -> None:
    resource = PLURALS[row.kind]
    name = f"truth-{ROWS.index(row)}"
    cluster("create", "-f", "-", stdin=json.dumps(_object(row.kind, name, row.state)))
    live = json.loads(cluster("get", resource, name, "-o", "json"))
    status = _status_for(row.kind, row.state, live)
    if status is not None:
        cluster(
            "patch",
            resource,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
    if row.state == "spec changed, not yet observed":
        cluster(
            "patch",
            resource,
            name,
            "--type=merge",
            "-p",
            '{"spec":{"hosts":["moved.example.com"]}}',
        )
    if row.state == "being deleted":
        cluster("delete", resource, name, "--wait=false")

    read = cluster("get", resource, name, "-o", "json")
    obj = json.loads(read)
    published = obj.get("status") or {}
    assert (published.get("phase") or "none") == row.phase
    for type_, expected in row.conditions.items():
        assert _condition_cell(published, type_) == expected, type_
    if status is not None:
        # Nothing the operator publishes is pruned by the API server.
        for key in status:
            assert key in published, f"status.{key} was pruned: the CRD schema lacks it"

    verdict = readers.kstatus(read)[0]
    assert verdict["status"] == row.kstatus, verdict
    met = readers.ready_condition_met(kubeconfig, f"{resource}/{name}")
    assert ("met" if met else "not met") == row.kubectl_wait
    health = readers.argocd_health(row.kind, obj)
    assert health["status"] == row.argocd, health
    assert readers.flux_verdict(verdict["status"]) == row.flux
    if row.kstatus in ("Failed", "InProgress") and status is not None:
        # What a person reads next to the verdict says why.
        assert verdict["message"], verdict
