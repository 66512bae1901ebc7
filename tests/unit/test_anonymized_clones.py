"""Anonymized clones: when a restore masks personal data, what the request may ask for, the
statements' contract, and how the restored filestore loses the files of deleted attachments.

The masking itself is proven on real Odoo 17.0 and 18.0 databases by
tests/integration/test_anonymize_real_odoo.py; the engine's pruning by
tests/integration/test_backup_engine.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from odoo_operator.builders.anonymize import (
    ANONYMIZED_EMAIL_DOMAIN,
    anonymization_statements,
    anonymization_summary,
)
from odoo_operator.builders.backup_job import build_filestore_restore_job
from odoo_operator.builders.guarded_sql import TAG
from odoo_operator.builders.odoo_users import MONITOR_LOGIN
from odoo_operator.engine.filestore import prune_unreferenced_files
from odoo_operator.model.backup import RestoreRequest
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.reconcile.restores import _data_protection_statements

SALT = "0123456789abcdef" * 2


def _instance(name: str, environment: str) -> InstanceSpec:
    return InstanceSpec.from_resource(
        {
            "metadata": {"name": name},
            "spec": {
                "version": "18.0",
                "hosts": [f"{name}.example.com"],
                "environment": environment,
            },
        }
    )


def _restore(target: str = "dev", **spec: Any) -> RestoreRequest:
    body: dict[str, Any] = {
        "metadata": {"name": "r"},
        "spec": {"backup": "b1", "target": {"instance": target}, "fromInstance": "acme", **spec},
    }
    return RestoreRequest.from_resource(body)


# --- when a restore anonymizes -----------------------------------------------------------------


def test_a_clone_into_a_development_instance_is_anonymized_unless_told_otherwise() -> None:
    development = _instance("dev", "development")
    assert _restore().anonymizes(in_place=False, target=development)
    assert not _restore(dataProtection="neutralize").anonymizes(False, development)


def test_a_clone_into_staging_is_only_neutralized_unless_anonymization_is_asked_for() -> None:
    staging = _instance("stage", "staging")
    assert not _restore("stage").anonymizes(in_place=False, target=staging)
    assert _restore("stage", dataProtection="anonymize").anonymizes(False, staging)


def test_a_drill_is_never_anonymized() -> None:
    development = _instance("drill-0123456789ab", "development")
    drill = RestoreRequest.from_resource(
        {"metadata": {"name": "d"}, "spec": {"backup": "b1", "drill": True}}
    )
    assert not drill.anonymizes(in_place=False, target=development)


def test_an_in_place_restore_of_production_is_neither_neutralized_nor_anonymized() -> None:
    production = _instance("acme", "production")
    assert not _restore("acme").anonymizes(in_place=True, target=production)


def test_anonymizing_into_production_is_refused_naming_the_field() -> None:
    production = _instance("bank", "production")
    (problem,) = _restore("bank", dataProtection="anonymize").problems("acme", production)
    assert problem.startswith("spec.dataProtection: anonymize is refused into bank")


def test_anonymizing_without_neutralizing_is_refused() -> None:
    staging = _instance("stage", "staging")
    problems = _restore("stage", dataProtection="anonymize", neutralize=False).problems(
        "acme", staging
    )
    assert any(
        p.startswith("spec.dataProtection: anonymize needs neutralization") for p in problems
    )


def test_an_unknown_data_protection_mode_is_refused() -> None:
    (problem,) = _restore("stage", dataProtection="scramble").problems(
        "acme", _instance("stage", "staging")
    )
    assert problem == "spec.dataProtection must be neutralize or anonymize, not 'scramble'."


# --- the statements ------------------------------------------------------------------------------


def test_every_statement_has_its_summary_line_and_a_block_that_cannot_be_broken_out_of() -> None:
    statements = anonymization_statements(SALT, (MONITOR_LOGIN,))
    assert len(statements) == len(anonymization_summary()) >= 8
    for statement in statements:
        text = statement.as_string(None)
        assert text.startswith(f"DO {TAG} BEGIN ")
        assert text.endswith(f" END {TAG}")
        assert text.count(TAG) == 2


def test_the_salt_is_the_clones_own_and_a_malformed_one_is_refused() -> None:
    other = "f" * 32
    first = [s.as_string(None) for s in anonymization_statements(SALT)]
    second = [s.as_string(None) for s in anonymization_statements(other)]
    assert first != second
    assert SALT in "".join(first)
    assert other not in "".join(first)
    for bad in ("", "short", "G" * 32, SALT + "'; DROP TABLE res_users; --"):
        with pytest.raises(ValueError, match="salt"):
            anonymization_statements(bad)


def test_kept_logins_are_literals_of_the_user_statement() -> None:
    users = next(
        s.as_string(None)
        for s in anonymization_statements(SALT, (MONITOR_LOGIN, "o'brien"))
        if '"res_users"' in s.as_string(None)
    )
    assert f"'{MONITOR_LOGIN}'" in users
    assert "'o''brien'" in users
    assert "'base'" in users  # Odoo's own users keep theirs


def test_masked_addresses_never_resolve() -> None:
    assert ANONYMIZED_EMAIL_DOMAIN.endswith(".invalid")


def test_an_anonymized_restore_runs_the_neutralization_first_then_the_masking() -> None:
    staging = _instance("stage", "staging")
    neutralized = _data_protection_statements(True, False, staging)
    anonymized = _data_protection_statements(True, True, staging)
    assert len(anonymized) == len(neutralized) + len(anonymization_summary())
    assert "is_neutralized" in neutralized[-1].as_string(None)
    assert "ir_attachment" in anonymized[-1].as_string(None)
    assert _data_protection_statements(False, False, staging) == []


# --- the filestore -----------------------------------------------------------------------------


def test_pruning_removes_unnamed_files_and_the_folders_they_leave_empty(tmp_path: Path) -> None:
    for name in ("3f/3f2a", "3f/3f99", "a0/a01b", "ff/ff00"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * 10)
    summary = prune_unreferenced_files(tmp_path, {"3f/3f2a", "a0/a01b"})
    assert (summary.files, summary.bytes) == (2, 20)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert left == ["3f", "3f/3f2a", "a0", "a0/a01b"]


def _filestore_job(step: str, prune: bool) -> dict[str, Any]:
    return build_filestore_restore_job(
        _instance("stage", "staging"),
        step=step,
        restore_name="to-staging",
        restore_uid="0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        backup_instance="acme",
        backup_id="20260101T000000Z-ab12",
        node_selector={},
        tolerations=(),
        image="registry.example/odoo-operator:1.0",
        container="odoo-backups",
        store_secret_key="connectionString" if step == "stage" else None,
        prune_unreferenced=prune,
    )


def test_only_the_swap_of_an_anonymized_clone_logs_in_to_the_database() -> None:
    plain = _filestore_job("swap", prune=False)["spec"]["template"]["spec"]["containers"][0]
    assert "env" not in plain
    assert "--prune-unreferenced" not in plain["args"]
    pruning = _filestore_job("swap", prune=True)["spec"]["template"]["spec"]["containers"][0]
    assert pruning["args"][-1] == "--prune-unreferenced"
    env = {variable["name"]: variable for variable in pruning["env"]}
    # The tenant's own login, from its Secret: never a value in the Job's spec.
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "password"
    assert "$(PGPASSWORD)" in env["ODOO_OPERATOR_DB_CONNINFO"]["value"]
    assert not any("BLOB" in name for name in env)


def test_only_the_swap_step_prunes() -> None:
    with pytest.raises(ValueError, match="only the swap step prunes"):
        _filestore_job("stage", prune=True)
