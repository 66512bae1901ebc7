"""The operations journal of a tenant: what happened, who changed the spec, what was refused,
kept in the blob store after the tenant is gone, and any tampering found and named.

The tenant is created, changed through a second field manager (as Argo CD would), refused
a change at admission, and deleted. Its journal then holds those actions in order, in an
unbroken hash chain that ``odoo-operator evidence-verify`` accepts; once one entry of the
stored journal is rewritten, the same command fails and names that entry.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from azure.storage.blob import BlobServiceClient
from kubernetes import client

from e2e.tenants import (
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    delete_quietly,
    eventually,
    make_instance,
    refusal,
    secret_values,
    wait_gone,
    wait_ready,
)
from odoo_devstack.operator_setup import BACKUP_CONTAINER
from odoo_devstack.processes import ManagedProcess

INSTANCE = "jrn-acme"
JOURNAL = f"journal/{INSTANCE}.jsonl"
ODOO_OPERATOR = REPO / ".venv" / "bin" / "odoo-operator"


def _journal_blob(connection_string: str) -> Any:
    service = BlobServiceClient.from_connection_string(connection_string)
    return service.get_blob_client(BACKUP_CONTAINER, JOURNAL)


def _entries(connection_string: str) -> list[dict[str, Any]]:
    blob = _journal_blob(connection_string)
    if not blob.exists():
        return []
    data: bytes = blob.download_blob().readall()
    return [json.loads(line) for line in data.split(b"\n") if line]


def _evidence_verify(connection_string: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(ODOO_OPERATOR),
            "evidence-verify",
            "--instance",
            INSTANCE,
            "--container",
            BACKUP_CONTAINER,
        ],
        env={**os.environ, "ODOO_OPERATOR_BLOB_CONNECTION_STRING": connection_string},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_journal_records_changes_refusals_and_deletion_and_names_a_tampered_entry(
    k8s: client.ApiClient, operator: ManagedProcess, blob_connection_string: str
) -> None:
    custom = client.CustomObjectsApi(k8s)
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, make_instance(INSTANCE))
    try:
        wait_ready(custom, INSTANCE, operator)
        password = secret_values(k8s, f"odoo-{INSTANCE}", "odoo-database")["password"]
        # A change as a GitOps controller makes it: its field manager is the author.
        custom.patch_cluster_custom_object(
            GROUP,
            VERSION,
            PLURAL,
            INSTANCE,
            {"spec": {"workers": 3}},
            field_manager="argocd-controller",
        )
        eventually(
            lambda: any(
                e["action"] == "SpecApplied" and e["details"]["generation"] == 2
                for e in _entries(blob_connection_string)
            ),
            "the second generation in the journal",
        )
        # A change admission refuses: production tenants never hibernate.
        status, _ = refusal(
            lambda: custom.patch_cluster_custom_object(
                GROUP,
                VERSION,
                PLURAL,
                INSTANCE,
                {"spec": {"hibernation": {"awake": [{"start": "07:00", "end": "19:00"}]}}},
            )
        )
        assert status == 422
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, INSTANCE)
        wait_gone(custom, PLURAL, INSTANCE)
    finally:
        delete_quietly(custom, PLURAL, INSTANCE)

    eventually(
        lambda: any(e["action"] == "Deleted" for e in _entries(blob_connection_string)),
        "the deletion in the journal",
    )
    entries = _entries(blob_connection_string)
    actions = [e["action"] for e in entries]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    for first, then in (("SpecApplied", "Ready"), ("Ready", "AdmissionRefused")):
        assert actions.index(first) < actions.index(then), actions
    assert actions[-1] == "Deleted", actions
    applied = [e["details"] for e in entries if e["action"] == "SpecApplied"]
    assert [a["generation"] for a in applied] == [1, 2], applied
    assert applied[1]["changedBy"] == "argocd-controller", applied
    assert applied[0]["specDigest"] != applied[1]["specDigest"]
    refused = next(e["details"] for e in entries if e["action"] == "AdmissionRefused")
    assert refused["operation"] == "UPDATE", refused
    assert "only staging and development tenants hibernate" in refused["problems"], refused
    assert refused["user"], refused
    text = json.dumps(entries)
    assert password not in text, "a secret in the journal"

    verified = _evidence_verify(blob_connection_string)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert (report["intact"], report["entries"]) == (True, len(entries)), report

    # Someone rewrites one entry of the stored journal (keeping its head metadata).
    blob = _journal_blob(blob_connection_string)
    head = blob.get_blob_properties().metadata
    lines = blob.download_blob().readall().split(b"\n")
    forged = json.loads(lines[1])
    forged["details"]["message"] = "nothing to see here"
    lines[1] = json.dumps(forged, sort_keys=True, separators=(",", ":")).encode()
    blob.upload_blob(b"\n".join(lines), overwrite=True, metadata=head)
    tampered = _evidence_verify(blob_connection_string)
    assert tampered.returncode == 1, tampered.stdout
    assert json.loads(tampered.stdout)["firstBrokenEntry"] == 2, tampered.stdout
    assert "entry 2 is not what entry 3 recorded" in tampered.stderr, tampered.stderr
