"""Backup Jobs of a Workload Identity store: configuration, ServiceAccount, pod, Secret, egress."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from odoo_operator.builders.backup_job import (
    BACKUP_STORE_SECRET,
    WORKLOAD_IDENTITY_CLIENT_ID_ANNOTATION,
    WORKLOAD_IDENTITY_USE_LABEL,
    build_backup_job,
    build_backup_service_account,
    build_backup_store_secret,
)
from odoo_operator.builders.network import (
    BACKUP_IDENTITY_EGRESS_POLICY,
    build_backup_identity_egress_policy,
)
from odoo_operator.model.config import ConfigError, OperatorConfig, WorkloadIdentity
from odoo_operator.model.spec import InstanceSpec

REPO = Path(__file__).resolve().parents[2]
CLIENT_ID = "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
SPEC = InstanceSpec.from_resource(
    {"metadata": {"name": "acme"}, "spec": {"version": "18.0", "hosts": ["a.example.com"]}}
)
ACCOUNT_URL = base64.b64encode(b"https://acct.blob.core.windows.net").decode()
CONNECTION_STRING = base64.b64encode(b"DefaultEndpointsProtocol=https;AccountKey=k").decode()


def _store(identity: Any) -> dict[str, Any]:
    entry = {"secretRef": "blob-main", "container": "odoo-backups", "default": True}
    if identity is not None:
        entry["workloadIdentity"] = identity
    return {"blobStores": {"main": entry}}


def _job(identity: WorkloadIdentity | None, key: str | None = None) -> dict[str, Any]:
    return build_backup_job(
        SPEC,
        node_selector={},
        tolerations=(),
        backup_name="acme-20261123-0200",
        backup_id="20261123T020000Z-ab12",
        reason="scheduled",
        image="registry.example/odoo-operator:1.0",
        container="odoo-backups",
        store_secret_key=key,
        workload_identity=identity,
    )


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


# Configuration


def test_a_store_without_workload_identity_keeps_its_credentials_in_the_secret_only() -> None:
    assert OperatorConfig.from_mapping(_store(None)).blob_store(None).workload_identity is None


def test_workload_identity_names_the_client_and_defaults_the_service_account() -> None:
    config = OperatorConfig.from_mapping(_store({"clientId": CLIENT_ID.upper()}))
    assert config.blob_store(None).workload_identity == WorkloadIdentity(
        client_id=CLIENT_ID, service_account="odoo-backup", egress_cidrs=()
    )


def test_egress_cidrs_of_both_families_are_kept_in_canonical_form() -> None:
    raw = {"clientId": CLIENT_ID, "egressCIDRs": ["20.190.128.0/18", "2603:1006:2000:0::/48"]}
    identity = OperatorConfig.from_mapping(_store(raw)).blob_store(None).workload_identity
    assert identity is not None
    assert identity.egress_cidrs == ("20.190.128.0/18", "2603:1006:2000::/48")


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        ({}, r"blobStores\.main\.workloadIdentity\.clientId must be the client id \(a UUID"),
        ({"clientId": "odoo-backups-identity"}, r"workloadIdentity\.clientId must be"),
        ({"clientId": CLIENT_ID.replace("-", "")}, r"workloadIdentity\.clientId must be"),
        ({"clientId": f"{{{CLIENT_ID}}}"}, r"workloadIdentity\.clientId must be"),
        ("odoo-backups-identity", r"blobStores\.main\.workloadIdentity must be a mapping"),
        ({"clientID": CLIENT_ID}, r"workloadIdentity\.clientID is not a Workload Identity"),
        ({"clientId": CLIENT_ID, "serviceAccount": "odoo"}, r"serviceAccount may not be 'odoo'"),
        ({"clientId": CLIENT_ID, "serviceAccount": "default"}, "may not be 'default'"),
        ({"clientId": CLIENT_ID, "serviceAccount": "Odoo_Backup"}, r"serviceAccount must be"),
        ({"clientId": CLIENT_ID, "egressCIDRs": "0.0.0.0/0"}, r"egressCIDRs must be a list"),
        (
            {"clientId": CLIENT_ID, "egressCIDRs": ["login.microsoftonline.com"]},
            r"egressCIDRs: 'login\.microsoftonline\.com' is not a CIDR",
        ),
        (
            {"clientId": CLIENT_ID, "egressCIDRs": ["20.190.128.1/18"]},
            r"egressCIDRs: '20\.190\.128\.1/18' is not a CIDR",
        ),
    ],
)
def test_a_malformed_workload_identity_is_refused_naming_the_key(
    identity: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        OperatorConfig.from_mapping(_store(identity))


def test_the_aks_overlay_example_gives_backup_jobs_an_identity() -> None:
    raw = yaml.safe_load((REPO / "manifests/overlays/aks/operator-config.yaml").read_text())
    identity = OperatorConfig.from_mapping(raw).blob_store(None).workload_identity
    assert identity is not None
    assert identity.service_account == "odoo-backup"


# The ServiceAccount and the Job


def test_the_backup_service_account_carries_the_client_id_and_no_api_token() -> None:
    account = build_backup_service_account(SPEC, WorkloadIdentity(CLIENT_ID))
    assert account["metadata"]["name"] == "odoo-backup"
    assert account["metadata"]["namespace"] == "odoo-acme"
    assert account["metadata"]["annotations"] == {WORKLOAD_IDENTITY_CLIENT_ID_ANNOTATION: CLIENT_ID}
    assert account["automountServiceAccountToken"] is False


def test_a_workload_identity_job_runs_as_its_service_account_labelled_for_the_webhook() -> None:
    identity = WorkloadIdentity(CLIENT_ID, service_account="backup-writer")
    pod = _job(identity)["spec"]["template"]
    assert pod["metadata"]["labels"][WORKLOAD_IDENTITY_USE_LABEL] == "true"
    assert pod["spec"]["serviceAccountName"] == "backup-writer"
    # The webhook's projected token does not need the API-server token.
    assert pod["spec"]["automountServiceAccountToken"] is False
    (container,) = pod["spec"]["containers"]
    store_env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == BACKUP_STORE_SECRET
    }
    assert store_env == {
        "ODOO_OPERATOR_BLOB_ACCOUNT_URL": {"name": BACKUP_STORE_SECRET, "key": "accountUrl"}
    }


def test_a_job_without_workload_identity_is_unchanged_tenant_account_and_no_webhook_label() -> None:
    pod = _job(None, "connectionString")["spec"]["template"]
    assert WORKLOAD_IDENTITY_USE_LABEL not in pod["metadata"]["labels"]
    assert pod["spec"]["serviceAccountName"] == "odoo"
    (container,) = pod["spec"]["containers"]
    names = {e["name"] for e in container["env"]}
    assert "ODOO_OPERATOR_BLOB_CONNECTION_STRING" in names
    assert "ODOO_OPERATOR_BLOB_ACCOUNT_URL" not in names


def test_a_workload_identity_job_refuses_a_connection_string() -> None:
    with pytest.raises(ValueError, match="takes no connection string"):
        _job(WorkloadIdentity(CLIENT_ID), "connectionString")


# The Secret copied into the tenant namespace


def test_with_workload_identity_no_connection_string_reaches_the_tenant_namespace() -> None:
    store_data = {"connectionString": CONNECTION_STRING, "accountUrl": ACCOUNT_URL}
    secret = build_backup_store_secret(SPEC, store_data, WorkloadIdentity(CLIENT_ID))
    assert (secret["metadata"]["name"], secret["metadata"]["namespace"]) == (
        BACKUP_STORE_SECRET,
        "odoo-acme",
    )
    assert secret["data"] == {"accountUrl": ACCOUNT_URL}


def test_with_workload_identity_a_store_secret_without_account_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs accountUrl"):
        build_backup_store_secret(
            SPEC, {"connectionString": CONNECTION_STRING}, WorkloadIdentity(CLIENT_ID)
        )


def test_without_workload_identity_the_store_secret_copies_both_keys_and_nothing_else() -> None:
    store_data = {"connectionString": CONNECTION_STRING, "accountUrl": ACCOUNT_URL, "other": "x"}
    secret = build_backup_store_secret(SPEC, store_data)
    assert secret["data"] == {"connectionString": CONNECTION_STRING, "accountUrl": ACCOUNT_URL}


# Egress to Microsoft Entra ID


def test_the_entra_id_rule_applies_to_workload_identity_backup_pods_only() -> None:
    identity = WorkloadIdentity(CLIENT_ID)
    policy = build_backup_identity_egress_policy(SPEC, identity)
    assert policy["metadata"]["name"] == BACKUP_IDENTITY_EGRESS_POLICY
    assert policy["metadata"]["namespace"] == "odoo-acme"
    selector = policy["spec"]["podSelector"]
    assert _matches(selector, _job(identity)["spec"]["template"]["metadata"]["labels"])
    assert not _matches(
        selector, _job(None, "connectionString")["spec"]["template"]["metadata"]["labels"]
    )
    assert policy["spec"]["policyTypes"] == ["Egress"]


def test_without_cidrs_the_entra_id_rule_opens_port_443_only() -> None:
    policy = build_backup_identity_egress_policy(SPEC, WorkloadIdentity(CLIENT_ID))
    assert policy["spec"]["egress"] == [{"ports": [{"protocol": "TCP", "port": 443}]}]


def test_with_cidrs_the_entra_id_rule_reaches_those_networks_only() -> None:
    identity = WorkloadIdentity(CLIENT_ID, egress_cidrs=("20.190.128.0/18", "40.126.0.0/18"))
    (rule,) = build_backup_identity_egress_policy(SPEC, identity)["spec"]["egress"]
    assert rule == {
        "ports": [{"protocol": "TCP", "port": 443}],
        "to": [{"ipBlock": {"cidr": "20.190.128.0/18"}}, {"ipBlock": {"cidr": "40.126.0.0/18"}}],
    }
