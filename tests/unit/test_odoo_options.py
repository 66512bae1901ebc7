"""spec.config is an allowlist as Odoo reads odoo.conf, and the operator's tenant policy holds."""

from __future__ import annotations

import configparser

import pytest

from odoo_operator.model.config import (
    ConfigError,
    OperatorConfig,
    TenantPolicy,
    image_policy_problems,
    image_repository,
    instance_image_policy_problems,
)
from odoo_operator.model.odoo_options import (
    MAIL_OPTIONS,
    OPERATOR_OWNED,
    REFUSED_OPTIONS,
    TENANT_OPTIONS,
    config_option_problems,
    validated_config_options,
)

DEFAULT = TenantPolicy()
DIGEST = "sha256:" + "ab" * 32
# A valid value for every allow-listed option: a new option must bring one.
SAMPLES = {
    "limit_memory_soft": "2147483648",
    "limit_memory_hard": "0",
    "limit_memory_soft_gevent": "1073741824",
    "limit_memory_hard_gevent": "2684354560",
    "limit_time_cpu": "600",
    "limit_time_real": "1200",
    "limit_time_real_cron": "-1",
    "limit_time_worker_cron": "3600",
    "limit_request": "8192",
    "osv_memory_count_limit": "0",
    "transient_age_limit": "1.5",
    "unaccent": "True",
    "log_level": "debug_sql",
    "log_handler": ":INFO,odoo.addons.sale:DEBUG,werkzeug:WARNING",
    "email_from": "Acme ERP <erp@acme.example.com>",
    "from_filter": "acme.example.com, erp@acme.example.com",
    "smtp_server": "smtp.example.com",
    "smtp_port": "587",
    "smtp_ssl": "false",
}


def problems(options: dict[str, str], environment: str = "production") -> list[str]:
    return config_option_problems(options, environment, DEFAULT)


@pytest.mark.parametrize(
    ("key", "owned"),
    [
        ("LIST_DB", "list_db"),
        ("ADMIN_PASSWD", "admin_passwd"),
        ("Addons_Path", "addons_path"),
        ("DB_HOST", "db_host"),
        ("Db_Sslmode", "db_sslmode"),
        ("XMLRPC_PORT", "xmlrpc_port"),
    ],
)
def test_an_operator_option_in_any_case_is_refused_naming_the_field(key: str, owned: str) -> None:
    (problem,) = problems({key: "x"})
    assert problem.startswith(f"spec.config.{key}: {owned} is owned by the operator")


@pytest.mark.parametrize(
    "value",
    [
        "600\naddons_path = /tmp/evil",
        "600\r\nlist_db = True",
        "600\rlist_db = True",
        "600\n [options]",
        "600\x00",
        "600\x1b[2J",
        "600\x85list_db = True",
        "600\u2028",
    ],
)
def test_a_value_spanning_lines_or_holding_control_characters_is_refused(value: str) -> None:
    for key in ("limit_time_real", "email_from", "log_handler"):
        (problem,) = problems({key: value})
        assert problem.startswith(f"spec.config.{key}: {key} must be a single line")
        assert problem.isprintable()  # the message itself cannot inject a line


def test_two_spellings_of_one_option_are_refused_as_odoo_would_stop_on_them() -> None:
    (problem,) = problems({"limit_time_cpu": "60", "LIMIT_TIME_CPU": "90"})
    assert "spec.config.limit_time_cpu: the same option as spec.config.LIMIT_TIME_CPU" in problem


@pytest.mark.parametrize(
    "key", ["dev_mode", "log_db", "logfile", "smtp_password", "smtp_user", "test_enable"]
)
def test_a_known_but_dangerous_option_is_refused_with_its_reason(key: str) -> None:
    (problem,) = problems({key: "True"})
    assert problem.startswith(f"spec.config.{key}: {key} may not be set by a tenant: ")
    assert "True" not in problem  # a refused option's value may be a secret: never echoed


def test_an_option_nobody_allow_listed_is_refused_listing_what_is_allowed() -> None:
    (problem,) = problems({"max_http_threads": "16"})
    assert "max_http_threads is not an odoo.conf option tenants may set" in problem
    assert "limit_time_real" in problem


@pytest.mark.parametrize("key", ["", "1st", "a b", "a-b", "a.b", "a=b", "a:b", "x" * 65, "k\n"])
def test_a_key_that_is_no_option_name_is_refused_and_quoted(key: str) -> None:
    (problem,) = problems({key: "1"})
    assert "not an odoo.conf option name" in problem
    assert problem.isprintable()


def test_every_allow_listed_option_takes_its_sample_value_and_odoo_reads_it_back() -> None:
    assert set(SAMPLES) == set(TENANT_OPTIONS)
    assert problems(SAMPLES) == []
    rendered = "[options]\n" + "".join(f"{k} = {v}\n" for k, v in SAMPLES.items())
    parser = configparser.RawConfigParser(strict=True)  # as Odoo reads odoo.conf
    parser.read_string(rendered)
    assert dict(parser.items("options")) == SAMPLES


def test_the_allowlist_offers_nothing_the_operator_owns_or_refuses() -> None:
    offered = set(TENANT_OPTIONS)
    assert not offered & set(OPERATOR_OWNED)
    assert not offered & set(REFUSED_OPTIONS)
    assert not [name for name in offered if name.startswith("db_")]
    assert all(option.reason for option in TENANT_OPTIONS.values())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("limit_time_cpu", "0600"),  # optparse reads a leading 0 as octal: 384 seconds
        ("limit_time_cpu", "0x100"),
        ("limit_time_cpu", "1e3"),
        ("limit_time_cpu", "1_000"),
        ("limit_time_cpu", "+60"),
        ("limit_time_cpu", " 60"),
        ("limit_time_cpu", "0"),  # RLIMIT_CPU at the time already used: every worker dies
        ("limit_time_cpu", "604801"),
        ("limit_time_real_cron", "-2"),
        ("limit_memory_hard", "1"),  # below 64 MiB and not 0: no worker could start
        ("smtp_port", "70000"),
        ("transient_age_limit", "inf"),
        ("transient_age_limit", "nan"),
        ("transient_age_limit", "-1"),
        ("transient_age_limit", "1e3"),
        ("unaccent", "1"),  # any other word than True/False is a truthy string to Odoo
        ("smtp_ssl", "yes"),
        ("log_level", "DEBUG"),
        ("log_level", "test"),
        ("log_handler", "odoo:debug"),  # Odoo would look up the function logging.debug
        ("log_handler", "odoo:sql:DEBUG"),  # Odoo splits on ':' into exactly two parts
        ("log_handler", ""),
        ("email_from", "not an address"),
        ("smtp_server", "smtp.example.com:25"),
        ("smtp_server", "-smtp.example.com"),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused_naming_the_field(key: str, value: str) -> None:
    (problem,) = problems({key: value})
    assert problem.startswith(f"spec.config.{key}: {key} must be ")


def test_an_integer_option_says_it_wants_an_integer() -> None:
    (problem,) = problems({"limit_time_cpu": "abc"})
    assert problem == (
        "spec.config.limit_time_cpu: limit_time_cpu must be an integer (seconds) "
        'from 1 to 604800, got "abc".'
    )


@pytest.mark.parametrize("environment", ["staging", "development"])
def test_mail_options_are_forbidden_outside_production_by_default(environment: str) -> None:
    mail = {name: SAMPLES[name] for name in MAIL_OPTIONS}
    refused = problems({**mail, "limit_time_real": "600"}, environment)
    assert len(refused) == len(MAIL_OPTIONS)
    assert all(f"forbidden for {environment} tenants" in problem for problem in refused)
    assert f"policy.mailOptions.{environment}" in refused[0]
    assert problems(mail, "production") == []


def test_the_mail_policy_follows_the_operator_configuration() -> None:
    policy = OperatorConfig.from_mapping(
        {"policy": {"mailOptions": {"staging": "allowed", "production": "forbidden"}}}
    ).policy
    assert config_option_problems({"SMTP_SERVER": "mail.test"}, "staging", policy) == []
    (problem,) = config_option_problems({"SMTP_SERVER": "mail.test"}, "production", policy)
    assert problem.startswith("spec.config.SMTP_SERVER: outgoing mail options")
    # Unnamed environments keep their default.
    assert not policy.mail_options_allowed("development")


def test_the_builder_view_folds_names_and_raises_on_any_problem() -> None:
    assert validated_config_options({"LIMIT_TIME_CPU": "100", "log_level": "warn"}) == {
        "limit_time_cpu": "100",
        "log_level": "warn",
    }
    with pytest.raises(ValueError, match="list_db is owned by the operator"):
        validated_config_options({"LIST_DB": "True"})
    with pytest.raises(ValueError, match="single line"):
        validated_config_options({"limit_time_real": "600\naddons_path = /tmp/evil"})


def test_the_default_policy_changes_nothing_for_images() -> None:
    policy = OperatorConfig.from_mapping({}).policy
    assert policy == DEFAULT
    assert not policy.require_image_digest
    assert policy.allowed_registries == ()
    assert image_policy_problems("odoo:18.0", policy) == []
    assert policy.mail_options_allowed("production")


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"requireImageDigests": True}, "policy.requireImageDigests is not a policy setting"),
        ({"requireImageDigest": "true"}, "policy.requireImageDigest must be true or false"),
        ({"mailOptions": {"prod": "allowed"}}, "policy.mailOptions.prod is not an environment"),
        ({"mailOptions": {"staging": "yes"}}, "must be allowed or forbidden"),
        ({"allowedRegistries": "registry.example.com"}, "must be a list"),
        ({"allowedRegistries": ["https://registry.example.com"]}, "without scheme"),
        ({"allowedRegistries": [""]}, "must be a registry host"),
        ([], "policy must be a mapping"),
    ],
)
def test_a_mistyped_policy_stops_the_operator_rather_than_weakening_it(
    policy: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        OperatorConfig.from_mapping({"policy": policy})


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        (f"registry.example.com/odoo@{DIGEST}", True),
        (f"registry.example.com/odoo:18.0@{DIGEST}", True),
        ("registry.example.com/odoo@sha512:" + "cd" * 64, True),
        ("registry.example.com/odoo:18.0", False),
        ("registry.example.com/odoo@sha256:" + "AB" * 32, False),
        ("registry.example.com/odoo@sha256:abc", False),
        (f"registry.example.com/odoo@{DIGEST}x", False),
    ],
)
def test_a_required_digest_must_pin_the_image(image: str, pinned: bool) -> None:
    policy = TenantPolicy(require_image_digest=True)
    found = image_policy_problems(image, policy)
    if pinned:
        assert found == []
    else:
        assert found[0].startswith(f"spec.image: {image} is not pinned")


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("odoo:18.0", "docker.io/library/odoo"),
        ("acme/odoo", "docker.io/acme/odoo"),
        ("Registry.Example.com/Team/odoo:18", "registry.example.com/team/odoo"),
        ("localhost:5000/odoo", "localhost:5000/odoo"),
        ("localhost/odoo", "localhost/odoo"),
        (f"odoo@{DIGEST}", "docker.io/library/odoo"),
    ],
)
def test_image_references_name_their_registry_as_container_runtimes_read_them(
    image: str, repository: str
) -> None:
    assert image_repository(image) == repository


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("registry.example.com/odoo:18.0", True),
        ("REGISTRY.EXAMPLE.COM/odoo/enterprise:18.0", True),
        ("registry.example.com.evil.test/odoo:18.0", False),
        ("evil.test/registry.example.com/odoo:18.0", False),
        ("odoo:18.0", False),
        ("mirror.example.com/odoo/odoo:18.0", True),
        ("mirror.example.com/other/odoo:18.0", False),
    ],
)
def test_images_must_come_from_an_allowed_registry(image: str, allowed: bool) -> None:
    policy = OperatorConfig.from_mapping(
        {"policy": {"allowedRegistries": ["Registry.Example.com/", "mirror.example.com/odoo"]}}
    ).policy
    found = image_policy_problems(image, policy)
    if allowed:
        assert found == []
    else:
        assert "is not from a registry the operator's policy.allowedRegistries allows" in found[0]


def test_image_policy_names_the_version_map_when_the_instance_has_no_image() -> None:
    config = OperatorConfig.from_mapping(
        {"versions": {"18.0": "odoo:18.0"}, "policy": {"requireImageDigest": True}}
    )
    (problem,) = instance_image_policy_problems("18.0", None, config)
    assert problem.startswith('versions["18.0"] of the operator\'s configuration')
    (problem,) = instance_image_policy_problems("18.0", "odoo:18.0", config)
    assert problem.startswith("spec.image: odoo:18.0 is not pinned")
    assert instance_image_policy_problems("18.0", f"odoo@{DIGEST}", config) == []
    assert instance_image_policy_problems("16.0", None, config) == []  # another rule's problem


def test_an_option_the_tenants_odoo_version_does_not_read_is_refused() -> None:
    options = {"limit_memory_hard_gevent": str(2048 * 1024 * 1024)}
    (problem,) = config_option_problems(options, "production", TenantPolicy(), "17.0")
    assert problem.startswith("spec.config.limit_memory_hard_gevent: limit_memory_hard_gevent")
    assert "Odoo 18.0 and later; this tenant runs 17.0" in problem
    assert config_option_problems(options, "production", TenantPolicy(), "18.0") == []
