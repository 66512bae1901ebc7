"""The tenant's Odoo users: generated passwords in the credentials Secret, the init Job's users
step, the check of stored password hashes for defaults, and the Credentials condition."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from odoo_operator.backends.odoo_users import DefaultPasswordScanner
from odoo_operator.builders.odoo_users import (
    ADMIN_PASSWORD_ENV,
    ADMIN_PASSWORD_KEY,
    CREDENTIALS_SECRET,
    INIT_INSTALL_CONTAINER,
    INIT_USERS_CONTAINER,
    MAX_CHECKED_ROUNDS,
    MONITOR_LOGIN,
    MONITOR_LOGIN_ENV,
    MONITOR_PASSWORD_ENV,
    MONITOR_PASSWORD_KEY,
    USERS_SCRIPT,
    USERS_SCRIPT_ENV,
    DefaultPasswordReport,
    StoredPassword,
    clone_credentials_statements,
    credentials_condition,
    password_hash,
    password_matches,
)
from odoo_operator.builders.tenant import Endpoint, Tenant, TenantCredentials
from odoo_operator.builders.workloads import build_init_job
from odoo_operator.model.conditions import Condition
from odoo_operator.model.outcome import Outcome
from odoo_operator.model.spec import InstanceSpec
from odoo_operator.reconcile import instance as reconcile

# Made with passlib 1.7.4 (the version Odoo 17.0 and 18.0 install), outside this project:
# ``pbkdf2_sha512.using(rounds=...).hash(...)``. Low rounds keep most tests fast; the
# 600,000-round one is what Odoo writes.
ADMIN_1000 = (
    "$pbkdf2-sha512$1000$h/C.tzam1BojBCCE8H7v3Q$B6Da4U7Je/kDjbV1nfVZQU4K/hijKUdlloLud2BkO38vi7"
    "HVwKBNDWP1.csQKogKaKtHsy5c6RlsJhTbuZwgsw"
)
ADMIN_600000 = (
    "$pbkdf2-sha512$600000$lxLiPIcQQugdw9ibc641pg$XO7aAGtHHo9QryIPqY8DqA678ZuNcydtruRyfCNosqI"
    "AVQfVIXQvrTG6xnQCFEGTTo616ZRjHeHG0vvAmKU66w"
)
ADMIN_NO_SALT = (
    "$pbkdf2-sha512$1000$$vEoWC4.1FCXNFQUvvKy752acAyAAkuQnEeG.Og5ybXegIDrD97n7f0/eprTou5oxRkX"
    "cFFw5LngWPIIndJJZEA"
)
UNICODE_2000 = (  # "s3cret-Pässwörd", with a 32-byte salt
    "$pbkdf2-sha512$2000$47z33ttbq5VSijHm3Nv7X4sxRgihtNaaU0qp9d4bg7A$bg4IVel8gKthyiGgD01sJoi1J"
    "ywENc7iMh4olVu2n4rcg19XgYRSQvIaLQVJXC7T.rqkfuYHwqs2TM1TPm08eA"
)
DEMO_1000 = (
    "$pbkdf2-sha512$1000$lZJSqlWq9Z7Teo.x1nrPWQ$NjgWPhKYmDkPSVqZdteR/TnkZcNVsAvyE/zdy4Jghn1Fu7"
    "3IhxDRUr0124Bsr7JXTah/gxRiiHLc22CH2MuQng"
)
OTHER_1000 = (  # "not-admin"
    "$pbkdf2-sha512$1000$8753jtH6vzcG4DznXIuR0g$OfTP9.w7XK0omnSDaA/uv2qR2dUjGXNoRWxG4f7iAEI27S"
    "uyZnownHMYSrjOchBmr342kPIJ8AKbjMyJWtFRVw"
)


def _tenant() -> Tenant:
    body = {
        "metadata": {"name": "acme", "uid": "uid-1", "generation": 1},
        "spec": {"version": "18.0", "hosts": ["acme.example.com"], "modules": ["sale"]},
    }
    return Tenant(
        spec=InstanceSpec.from_resource(body),
        image="odoo:18.0",
        database=Endpoint("10.0.0.5", 5432),
        redis=Endpoint("redis.example", 6379),
        redis_user="odoo-acme",
        redis_key_prefix="odoo:acme:",
        credentials=TenantCredentials("db-secret", "redis-secret", "master-secret"),
    )


# --- the hash check -----------------------------------------------------------------------


@pytest.mark.parametrize("stored", [ADMIN_1000, ADMIN_600000, ADMIN_NO_SALT])
def test_passlibs_pbkdf2_sha512_hashes_of_admin_accept_admin_only(stored: str) -> None:
    assert password_matches("admin", stored)
    assert not password_matches("Admin", stored)
    assert not password_matches("admin ", stored)


def test_a_hash_the_operator_writes_is_passlibs_format_and_accepts_its_password_only() -> None:
    salt = bytes(range(16))
    stored = password_hash("s3cret-Pässwörd", salt, 2000)
    assert stored.startswith("$pbkdf2-sha512$2000$AAECAwQFBgcICQoLDA0ODw$")
    assert password_matches("s3cret-Pässwörd", stored)
    assert not password_matches("s3cret-Passwoerd", stored)
    # passlib's adapted base64: "." for "+", no padding, 86 characters for 64 bytes.
    assert "+" not in stored
    assert "=" not in stored
    assert len(stored.rsplit("$", 1)[1]) == 86
    # Byte for byte what passlib wrote for "admin" with the same salt and rounds.
    passlib_salt = base64.b64decode("h/C.tzam1BojBCCE8H7v3Q".replace(".", "+") + "==")
    assert password_hash("admin", passlib_salt, 1000) == ADMIN_1000


def test_a_clone_gets_the_targets_admin_and_monitoring_passwords_in_its_own_users() -> None:
    (statement,) = clone_credentials_statements("$admin-hash", "$monitor-hash")
    text = statement.as_string(None)
    assert "'$admin-hash'" in text
    assert "'user_admin'" in text
    assert "'$monitor-hash'" in text
    assert f"'{MONITOR_LOGIN}'" in text
    (admin_only,) = clone_credentials_statements("$admin-hash", None)
    assert "$monitor-hash" not in admin_only.as_string(None)
    assert clone_credentials_statements(None, None) == []


def test_a_non_ascii_password_is_derived_from_its_utf8_bytes_as_passlib_does() -> None:
    assert password_matches("s3cret-Pässwörd", UNICODE_2000)
    assert not password_matches("s3cret-Passwoerd", UNICODE_2000)


def test_a_value_of_no_known_scheme_is_compared_as_passlibs_plaintext_fallback() -> None:
    # Odoo verifies with CryptContext(["pbkdf2_sha512", "plaintext"]): what is not PBKDF2 is
    # compared as it is, so "admin" stored by SQL logs in until Odoo hashes it.
    assert password_matches("admin", "admin")
    assert not password_matches(
        "admin", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
    )


@pytest.mark.parametrize("stored", [None, ""])
def test_no_stored_password_accepts_no_password(stored: str | None) -> None:
    assert not password_matches("admin", stored)
    assert not password_matches("", stored)


@pytest.mark.parametrize(
    "stored",
    [
        ADMIN_1000.replace("$1000$", "$01000$"),  # zero-padded rounds: passlib refuses it
        ADMIN_1000[:-4],  # a checksum shorter than SHA-512's 64 bytes
        ADMIN_1000.replace("$h/C.", "$h/C!"),  # not adapted base64
        "$pbkdf2-sha512$1000$h/C.tzam1BojBCCE8H7v3Q",  # no checksum
        ADMIN_1000 + "$extra",
        "$pbkdf2-sha512$x$h/C.tzam1BojBCCE8H7v3Q$" + ADMIN_1000.rsplit("$", 1)[1],
    ],
)
def test_a_malformed_pbkdf2_hash_accepts_nothing_as_in_odoo(stored: str) -> None:
    assert not password_matches("admin", stored)


def test_a_hash_asking_for_more_rounds_than_the_bound_is_not_derived() -> None:
    rounds = MAX_CHECKED_ROUNDS + 1
    stored = ADMIN_1000.replace("$1000$", f"${rounds}$")
    assert not password_matches("admin", stored)  # returns at once: not 10M+ rounds of work


# --- the scanner ----------------------------------------------------------------------------


async def test_each_hash_is_derived_once_and_the_answer_remembered() -> None:
    scanner = DefaultPasswordScanner(budget=10)
    users = [
        StoredPassword(2, "admin", ADMIN_1000, from_data_file=True),
        StoredPassword(7, "alice", OTHER_1000, from_data_file=False),
    ]
    first = await scanner.judge(users)
    assert first == DefaultPasswordReport(defaults=("admin",), checked=2, pending=0)
    assert scanner.derivations == 2
    again = await scanner.judge(users)
    assert again == first
    assert scanner.derivations == 2  # nothing derived the second time


async def test_the_budget_leaves_users_for_later_scans_which_then_finish_the_work() -> None:
    scanner = DefaultPasswordScanner(budget=1)
    users = [
        StoredPassword(2, "admin", OTHER_1000, from_data_file=True),
        StoredPassword(7, "alice", OTHER_1000.replace("8753", "8754"), from_data_file=False),
        StoredPassword(8, "bob", ADMIN_NO_SALT, from_data_file=False),
    ]
    reports = [await scanner.judge(users) for _ in range(3)]
    assert [(r.checked, r.pending, r.defaults) for r in reports] == [
        (1, 2, ()),
        (2, 1, ()),
        (3, 0, ("bob",)),
    ]


async def test_users_from_data_files_are_also_tried_with_their_login_as_password() -> None:
    scanner = DefaultPasswordScanner(budget=10)
    demo = await scanner.judge([StoredPassword(6, "demo", DEMO_1000, from_data_file=True)])
    assert demo.defaults == ("demo",)
    human = await scanner.judge([StoredPassword(9, "demo", DEMO_1000, from_data_file=False)])
    assert human.defaults == ()  # a person's own choice, only 'admin' is tried


async def test_plaintext_and_empty_passwords_cost_no_derivation() -> None:
    scanner = DefaultPasswordScanner(budget=0)
    report = await scanner.judge(
        [
            StoredPassword(2, "admin", "admin", from_data_file=True),
            StoredPassword(3, "invited", None, from_data_file=False),
        ]
    )
    assert report == DefaultPasswordReport(defaults=("admin",), checked=2, pending=0)
    assert scanner.derivations == 0


# --- the Credentials condition and Ready ---------------------------------------------------


class _Kube:
    """The two calls _ensure_credentials and _finish make, on a dictionary."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes = 0

    async def get(self, api: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    async def apply(self, desired: dict[str, Any]) -> bool:
        meta = desired["metadata"]
        self.objects[(meta["namespace"], meta["name"])] = json.loads(json.dumps(desired))
        self.writes += 1
        return True


def _clients(kube: _Kube) -> reconcile.Clients:
    return cast(reconcile.Clients, SimpleNamespace(kube=kube))


def test_a_default_password_keeps_the_tenant_from_being_ready() -> None:
    outcome = Outcome()
    outcome.set("DatabaseReady", True, "Provisioned", "ok")
    condition = credentials_condition(
        DefaultPasswordReport(defaults=("admin",), checked=1), "odoo_acme", previous=None
    )
    outcome.conditions.append(condition)
    finished = reconcile._finish(outcome, _clients(_Kube()), 0)
    ready = next(c for c in finished.conditions if c.type == "Ready")
    assert (condition.type, condition.status, condition.reason) == (
        "Credentials",
        "False",
        "DefaultPassword",
    )
    assert ready.status == "False"
    assert ready.reason == "DefaultPassword"
    assert "admin" in ready.message
    assert "docs/odooinstance.md" in ready.message  # it says where the steps are
    assert finished.phase != "Ready"


def test_no_default_password_lets_the_tenant_be_ready() -> None:
    outcome = Outcome()
    outcome.conditions.append(
        credentials_condition(DefaultPasswordReport(checked=3), "odoo_acme", previous=None)
    )
    finished = reconcile._finish(outcome, _clients(_Kube()), 0)
    assert next(c for c in finished.conditions if c.type == "Ready").status == "True"


def test_unfinished_checks_keep_the_published_verdict_and_are_unknown_the_first_time() -> None:
    pending = DefaultPasswordReport(checked=1, pending=4)
    published = Condition("Credentials", "True", "NoDefaultPassword", "none of the 5 users")
    assert credentials_condition(pending, "odoo_acme", published) == published
    first = credentials_condition(pending, "odoo_acme", None)
    assert (first.status, first.reason) == ("Unknown", "Checking")
    # A default found meanwhile wins over the published verdict at once.
    found = DefaultPasswordReport(defaults=("admin",), checked=1, pending=4)
    assert credentials_condition(found, "odoo_acme", published).status == "False"


def test_a_database_odoo_never_ran_in_has_no_default_password() -> None:
    condition = credentials_condition(DefaultPasswordReport(has_users=False), "odoo_acme", None)
    assert (condition.status, condition.reason) == ("True", "NoOdooUsers")


# --- the credentials Secret -----------------------------------------------------------------


def _stored(kube: _Kube) -> dict[str, str]:
    secret = kube.objects[("odoo-acme", CREDENTIALS_SECRET)]
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


async def _ensure(kube: _Kube, rotation: str | None = None) -> None:
    spec = _tenant().spec
    owner = {"labels": {"app": "odoo"}, "ownerReferences": []}
    await reconcile._ensure_credentials(_clients(kube), spec, owner, rotation)


async def test_the_credentials_secret_gets_both_odoo_user_passwords_once() -> None:
    kube = _Kube()
    await _ensure(kube)
    first = _stored(kube)
    assert set(first) == {
        "database-password",
        "redis-password",
        "admin-password",
        ADMIN_PASSWORD_KEY,
        MONITOR_PASSWORD_KEY,
    }
    assert len(set(first.values())) == 5  # each password its own
    assert all(len(value) >= 40 for value in first.values())
    await _ensure(kube)
    assert kube.writes == 1  # the next pass finds them and writes nothing
    assert _stored(kube) == first


async def test_an_older_secret_keeps_its_passwords_and_gains_the_odoo_user_ones() -> None:
    kube = _Kube()
    old = {"database-password": "db", "redis-password": "redis", "admin-password": "master"}
    kube.objects[("odoo-acme", CREDENTIALS_SECRET)] = {
        "metadata": {"name": CREDENTIALS_SECRET, "namespace": "odoo-acme"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in old.items()},
    }
    await _ensure(kube)
    stored = _stored(kube)
    assert {k: stored[k] for k in old} == old
    assert len(stored[ADMIN_PASSWORD_KEY]) >= 40
    assert len(stored[MONITOR_PASSWORD_KEY]) >= 40


async def test_a_rotation_renews_the_server_passwords_but_not_the_odoo_users() -> None:
    kube = _Kube()
    await _ensure(kube)
    before = _stored(kube)
    await _ensure(kube, rotation="CHG-1")
    after = _stored(kube)
    for key in ("database-password", "redis-password", "admin-password"):
        assert after[key] != before[key], key
    # Odoo keeps its users' passwords in its database; only the init Job sets them there.
    assert after[ADMIN_PASSWORD_KEY] == before[ADMIN_PASSWORD_KEY]
    assert after[MONITOR_PASSWORD_KEY] == before[MONITOR_PASSWORD_KEY]


# --- the init Job ---------------------------------------------------------------------------


def _init_pod() -> dict[str, Any]:
    pod: dict[str, Any] = build_init_job(_tenant())["spec"]["template"]["spec"]
    return pod


def test_the_init_job_installs_the_modules_first_then_sets_the_users() -> None:
    pod = _init_pod()
    (install,) = pod["initContainers"]
    (users,) = pod["containers"]
    assert install["name"] == INIT_INSTALL_CONTAINER
    assert "command" not in install  # the image's entrypoint, as before
    assert install["args"] == [
        "-c",
        "/etc/odoo/odoo.conf",
        "-d",
        "odoo_acme",
        "-i",
        "base,sale",
        "--without-demo=all",
        "--stop-after-init",
        "--no-http",
    ]
    assert users["name"] == INIT_USERS_CONTAINER
    assert users["command"][:2] == ["sh", "-c"]
    assert users["args"] == ["-c", "/etc/odoo/odoo.conf", "-d", "odoo_acme", "--no-http"]
    assert pod["restartPolicy"] == "Never"


def test_the_passwords_reach_only_the_users_step_and_only_from_the_credentials_secret() -> None:
    job = build_init_job(_tenant())
    pod = job["spec"]["template"]["spec"]
    (install,) = pod["initContainers"]
    (users,) = pod["containers"]
    env = {item["name"]: item for item in users["env"]}
    for variable, key in (
        (ADMIN_PASSWORD_ENV, ADMIN_PASSWORD_KEY),
        (MONITOR_PASSWORD_ENV, MONITOR_PASSWORD_KEY),
    ):
        assert env[variable] == {
            "name": variable,
            "valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": key}},
        }
        assert variable not in {item["name"] for item in install.get("env", [])}
    assert env[MONITOR_LOGIN_ENV]["value"] == MONITOR_LOGIN
    assert env[USERS_SCRIPT_ENV]["value"] == USERS_SCRIPT
    # No generated credential is written into the Job itself.
    text = json.dumps(job)
    for value in ("db-secret", "redis-secret", "master-secret"):
        assert value not in text


def test_both_steps_run_as_every_odoo_pod_does_under_the_restricted_profile() -> None:
    pod = _init_pod()
    assert pod["serviceAccountName"] == "odoo"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in (*pod["initContainers"], *pod["containers"]):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True
        assert "privileged" not in context
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts == {"config": "/etc/odoo", "filestore": "/var/lib/odoo", "tmp": "/tmp"}
    assert not any("hostPath" in volume for volume in pod["volumes"])


def test_the_users_script_is_python_that_writes_through_the_orm_and_commits() -> None:
    compile(USERS_SCRIPT, "<users-script>", "exec")
    assert 'env.ref("base.user_admin")' in USERS_SCRIPT
    assert "env.cr.commit()" in USERS_SCRIPT  # odoo shell rolls back what is not committed
    assert 'env.ref("base.group_portal")' in USERS_SCRIPT
    # The kubelet would expand $(NAME) in the Job's env values, command and args.
    users = _init_pod()["containers"][0]
    assert "$(" not in json.dumps([users["command"], users["args"], users["env"]])


def test_the_users_step_hands_the_script_verbatim_to_odoo_shell(tmp_path: Path) -> None:
    """The step's own command, run by this machine's sh, with an ``odoo`` that records what
    it was given: its arguments, and its stdin exactly as the variable holds it."""
    fake = tmp_path / "odoo"
    fake.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD.args"\ncat > "$RECORD.stdin"\nexit 3\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    users = _init_pod()["containers"][0]
    # A value sh would mangle if it re-read it: parameters, backslashes, quotes, a lone EOF.
    tricky = USERS_SCRIPT + "# $HOME `id` $(id) \\n \\\\ \"q\" 'q'\nODOO_USERS_SCRIPT_END\n"
    record = tmp_path / "record"
    result = subprocess.run(
        [*users["command"], *users["args"]],
        env={
            "PATH": f"{tmp_path}:{os.environ['PATH']}",
            USERS_SCRIPT_ENV: tricky,
            "RECORD": str(record),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 3  # odoo's own status is the step's
    assert Path(f"{record}.args").read_text().splitlines() == [
        "shell",
        "-c",
        "/etc/odoo/odoo.conf",
        "-d",
        "odoo_acme",
        "--no-http",
    ]
    assert Path(f"{record}.stdin").read_text() == tricky + "\n"
