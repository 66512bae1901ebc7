"""kubectl as people type it, with the real kubectl, against the operator on the local stack:
the commands the README, the runbooks and ``make demo`` suggest answer what they promise."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from e2e.tenants import (
    GROUP,
    PLURAL,
    VERSION,
    create_backup,
    delete_quietly,
    eventually,
    make_instance,
    rotate_credentials,
    wait_ready,
)
from odoo_devstack import binaries
from odoo_devstack.processes import ManagedProcess
from odoo_devstack.status_readers import kubectl

BACKUP_POLICY = {"schedule": "0 2 * * *", "rpo": "26h"}


@pytest.fixture(scope="module")
def tenant(k8s: client.ApiClient, operator: ManagedProcess) -> Iterator[str]:
    """One Ready tenant for the whole module, deleted afterwards."""
    custom = client.CustomObjectsApi(k8s)
    name = "kc-typed"
    body = make_instance(name, backup=BACKUP_POLICY, deletionPolicy="Delete")
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    wait_ready(custom, name, operator)
    yield name
    delete_quietly(custom, PLURAL, name)


def typed(kubeconfig: Path, command: str) -> str:
    """Run ``command`` (``kubectl ...`` as a person types it); its output, or a failure that
    shows what kubectl said."""
    args = command.split()[1:]
    result = kubectl(kubeconfig, *args)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    return result.stdout


def rows(table: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in table.strip().splitlines()]


def test_get_odoo_lists_instances_with_their_columns_and_get_odoo_name_one(
    kubeconfig: Path, tenant: str
) -> None:
    listing = rows(typed(kubeconfig, "kubectl get odoo"))
    assert listing[0] == ["NAME", "VERSION", "ENV", "PHASE", "READY", "URL", "LAST BACKUP", "AGE"]
    assert any(row[0] == tenant for row in listing[1:])
    one = rows(typed(kubeconfig, f"kubectl get odoo {tenant}"))
    assert len(one) == 2
    assert one[1][:6] == [
        tenant,
        "18.0",
        "production",
        "Ready",
        "True",
        f"https://{tenant}.odoo.example.com",
    ]


def test_get_odoo_wide_adds_tenancy_and_what_ready_says(kubeconfig: Path, tenant: str) -> None:
    wide = rows(typed(kubeconfig, f"kubectl get odoo {tenant} -o wide"))
    header = wide[0]
    assert header[-6:] == ["TENANCY", "HIBERNATION", "SHARD", "REASON", "MESSAGE", "AGE"], header
    assert "the tenant is serving" in " ".join(wide[1])


def test_describe_odoo_shows_the_tenants_events(kubeconfig: Path, tenant: str) -> None:
    described = typed(kubeconfig, f"kubectl describe odoo {tenant}")
    assert described.startswith(f"Name:         {tenant}\n")
    events = described.split("\nEvents:", 1)[1]
    assert "<none>" not in events.splitlines()[0]
    assert re.search(r"Normal\s+Ready\s+.*odoo-operator\s+the tenant is ready", events), events


def test_describe_odoobackup_shows_its_events(
    k8s: client.ApiClient, kubeconfig: Path, tenant: str
) -> None:
    backup = create_backup(client.CustomObjectsApi(k8s), tenant)
    eventually(
        lambda: "BackupSucceeded" in typed(kubeconfig, f"kubectl describe odoobackup {backup}"),
        timeout=120,
        what=f"a BackupSucceeded event on OdooBackup {backup}",
    )
    listing = rows(
        typed(kubeconfig, f"kubectl get odoobackups -l odoo.tenantops.io/instance={tenant}")
    )
    assert any(row[0] == backup and "Succeeded" in row for row in listing[1:]), listing


def test_describe_odoo_shows_a_credential_rotation_once(
    k8s: client.ApiClient, kubeconfig: Path, tenant: str
) -> None:
    rotate_credentials(client.CustomObjectsApi(k8s), tenant, "CHG-4711")

    def rotations() -> int:
        described = typed(kubeconfig, f"kubectl describe odoo {tenant}")
        return len(re.findall(r"Normal\s+CredentialsRotated\s+.*rotation CHG-4711", described))

    eventually(lambda: rotations() == 1, timeout=60, what="a CredentialsRotated event")
    time.sleep(12)  # two drift passes of the e2e operator: still one event, not one per pass
    assert rotations() == 1


def test_the_odoo_all_category_lists_the_three_kinds_and_odoo_only_instances(
    kubeconfig: Path, tenant: str
) -> None:
    everything = typed(kubeconfig, "kubectl get odoo-all")
    assert f"odooinstance.odoo.tenantops.io/{tenant}" in everything
    assert "odoobackup.odoo.tenantops.io/" in everything
    assert "odoobackup" not in typed(kubeconfig, "kubectl get odoo -o name")


def test_explain_describes_the_spec_fields(kubeconfig: Path) -> None:
    explained = typed(kubeconfig, "kubectl explain odooinstance.spec.backup.schedule")
    assert "FIELD: schedule <string>" in explained
    assert "DESCRIPTION:" in explained
    top = typed(kubeconfig, "kubectl explain odoo")
    assert "KIND:       OdooInstance" in top


def test_kubectl_version_reports_the_stack_version_on_both_sides(kubeconfig: Path) -> None:
    result = kubectl(kubeconfig, "version")
    assert result.returncode == 0, result.stderr
    expected = f"v{binaries.KUBERNETES_VERSION}"
    assert f"Client Version: {expected}" in result.stdout
    assert f"Server Version: {expected}" in result.stdout
    assert "WARNING" not in result.stderr
