"""Point-in-time recovery as the platform team configures it and SREs ask for it: the server
registry's ``pitr`` entry (every value ends up in pgBackRest's environment, so each is
checked, naming the field), and the OdooBackup and OdooRestore fields naming a time.

The recovery itself runs against a real archiving PostgreSQL in
tests/integration/test_point_in_time_recovery.py and e2e/test_point_in_time_recovery.py.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from odoo_operator.engine.pitr import ArchiveAccess
from odoo_operator.model.backup import BackupRequest, RestoreRequest, parse_point_in_time
from odoo_operator.model.config import ConfigError, OperatorConfig, PitrArchive

ARCHIVE = {
    "stanza": "main",
    "container": "pgbackrest",
    "endpoint": "acmebackups.blob.core.windows.net",
    "secretRef": "pitr-archive",
}


def _config(pitr: Any) -> OperatorConfig:
    return OperatorConfig.from_mapping(
        {
            "postgresServers": {"main": {"secretRef": "pg-main", "default": True, "pitr": pitr}},
            "redisServers": {"main": {"secretRef": "redis-main", "default": True}},
        }
    )


def test_a_server_with_an_archive_is_registered_with_azures_defaults() -> None:
    archive = _config(ARCHIVE).postgres_server("main").pitr
    assert archive == PitrArchive(
        stanza="main",
        container="pgbackrest",
        path="/main",
        endpoint="acmebackups.blob.core.windows.net",
        secret="pitr-archive",
        port=443,
        uri_style="host",
        ca_secret=None,
    )


def test_a_server_without_an_archive_has_none() -> None:
    config = OperatorConfig.from_mapping(
        {
            "postgresServers": {"main": {"secretRef": "pg-main", "default": True}},
            "redisServers": {"main": {"secretRef": "redis-main", "default": True}},
        }
    )
    assert config.postgres_server("main").pitr is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stanza": ""}, "postgresServers.main.pitr needs stanza"),
        ({"secretRef": None}, "postgresServers.main.pitr needs secretRef"),
        ({"stanza": "main\nrepo1-path=/elsewhere"}, "pitr.stanza"),
        ({"endpoint": "https://acme.blob.core.windows.net"}, "pitr.endpoint"),
        ({"endpoint": "acme.blob.core.windows.net:443"}, "pitr.endpoint"),
        ({"path": "relative"}, "pitr.path"),
        ({"path": "/a/../b"}, "pitr.path"),
        ({"uriStyle": "virtual"}, "pitr.uriStyle"),
        ({"port": 0}, "pitr.port"),
        ({"port": "443"}, "pitr.port"),
        ({"key": "inline-account-key"}, "unknown keys ['key']"),
    ],
)
def test_a_malformed_archive_entry_is_refused_naming_the_field(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _config({**ARCHIVE, **change})


def test_the_account_key_reaches_pgbackrest_only_through_its_environment() -> None:
    archive = _config({**ARCHIVE, "uriStyle": "path", "port": 10000}).postgres_server("main").pitr
    assert archive is not None
    access = ArchiveAccess(archive, "acmebackups", "s3cr3t-key")
    env = access.environment()
    assert env["PGBACKREST_REPO1_AZURE_KEY"] == "s3cr3t-key"
    assert env["PGBACKREST_REPO1_AZURE_URI_STYLE"] == "path"
    assert env["PGBACKREST_REPO1_STORAGE_PORT"] == "10000"
    assert "PGBACKREST_REPO1_STORAGE_CA_FILE" not in env
    assert "s3cr3t-key" not in repr(access)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-30T14:33:00Z", datetime.datetime(2026, 11, 30, 14, 33, tzinfo=datetime.UTC)),
        (
            "2026-11-30T15:33:00.250+01:00",
            datetime.datetime(2026, 11, 30, 14, 33, 0, 250000, tzinfo=datetime.UTC),
        ),
    ],
)
def test_a_point_in_time_is_an_rfc_3339_time(text: str, expected: datetime.datetime) -> None:
    assert parse_point_in_time(text, "spec.pointInTime") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-11-30T14:33:00", "spec.pointInTime '2026-11-30T14:33:00' has no time zone"),
        ("yesterday at noon", "spec.pointInTime 'yesterday at noon' is not an RFC 3339 time"),
    ],
)
def test_a_point_in_time_without_a_zone_or_not_a_time_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_point_in_time(text, "spec.pointInTime")


def test_a_backup_naming_a_time_is_a_point_in_time_backup_whatever_its_reason_says() -> None:
    request = BackupRequest.from_resource(
        {
            "metadata": {"name": "b"},
            "spec": {"instance": "acme", "reason": "manual", "pointInTime": "2026-11-30T14:33:00Z"},
        }
    )
    assert (request.reason, request.point_in_time) == ("point-in-time", "2026-11-30T14:33:00Z")


def test_a_point_in_time_restore_recovers_the_target_itself_unless_another_is_named() -> None:
    def restore(**spec: Any) -> RestoreRequest:
        return RestoreRequest.from_resource(
            {
                "metadata": {"name": "r"},
                "spec": {"pointInTime": "2026-11-30T14:33:00Z", "target": {"instance": "acme"}}
                | spec,
            }
        )

    in_place = restore()
    assert (in_place.backup, in_place.point_in_time_source) == ("", "acme")
    assert restore(fromInstance="globex").point_in_time_source == "globex"
