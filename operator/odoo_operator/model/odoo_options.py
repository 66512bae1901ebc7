"""The odoo.conf options a tenant may set through ``spec.config``, and how each is checked.

Odoo reads odoo.conf with :mod:`configparser`, and three of its habits decide the rules here:

- option names are case-insensitive (folded to lower case): ``LIST_DB`` *is* ``list_db``,
  so every name is folded before it is judged, and two spellings of one option are refused
  (configparser aborts on a duplicate, which would keep Odoo from starting);
- a line that begins with whitespace continues the previous value, and any other line
  starts a new option: a value holding a line break could set any option it likes, so no
  value may hold a line break or any other control character;
- numbers are read as optparse reads them, where a leading ``0`` means octal (``0600`` is
  384) and ``0x`` hexadecimal: integers are plain decimal without leading zeros.

This is an allowlist. Every option not named in :data:`TENANT_OPTIONS` is refused, whether
the operator owns it (database access, the master password, ports, workers), Odoo reads
something dangerous from it (``dev_mode`` can start Werkzeug's interactive debugger,
``log_db`` can write to any PostgreSQL server), or nobody has yet asked for it.

The CRD checks only the shape of names and values. The admission webhook applies
:func:`config_option_problems`, which can change with the operator and without a CRD
change; the builder of odoo.conf applies :func:`validated_config_options` again, so an
object admitted before a rule existed is still never rendered.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from .config import TenantPolicy

MAX_NAME_LENGTH = 64
MAX_VALUE_LENGTH = 1024  # as the CRD's maxLength
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_MIB = 1024 * 1024
_WEEK = 7 * 24 * 3600


class ValueKind(Protocol):
    """How the values of one option are checked."""

    @property
    def description(self) -> str:
        """What a valid value is, as the end of a sentence ("... must be <description>")."""
        ...

    def accepts(self, value: str) -> bool:
        """Whether ``value`` (already known to be one line) is valid."""
        ...


@dataclass(frozen=True)
class Integer:
    """A plain decimal integer in ``[minimum, maximum]``; 0 too when it turns a limit off."""

    minimum: int
    maximum: int
    unit: str = ""
    zero_disables: bool = False

    @property
    def description(self) -> str:
        """See :class:`ValueKind`."""
        unit = f" ({self.unit})" if self.unit else ""
        zero = " or 0 (no limit)" if self.zero_disables else ""
        return f"an integer{unit} from {self.minimum} to {self.maximum}{zero}"

    def accepts(self, value: str) -> bool:
        """See :class:`ValueKind`."""
        # No leading zeros or signs other than "-": Odoo would read 0600 as octal.
        if not re.fullmatch(r"-?(0|[1-9][0-9]*)", value) or len(value) > 20:
            return False
        number = int(value)
        return self.minimum <= number <= self.maximum or (self.zero_disables and number == 0)


@dataclass(frozen=True)
class Decimal:
    """A non-negative decimal number such as ``1.5``, at most ``maximum``."""

    maximum: float
    unit: str = ""

    @property
    def description(self) -> str:
        """See :class:`ValueKind`."""
        unit = f" ({self.unit})" if self.unit else ""
        return f"a decimal number{unit} from 0 to {self.maximum:g}, such as 1.5"

    def accepts(self, value: str) -> bool:
        """See :class:`ValueKind`."""
        # Python's float() would also take "inf", "nan", "1e3" and "1_0".
        return bool(re.fullmatch(r"(0|[1-9][0-9]{0,8})(\.[0-9]{1,6})?", value)) and (
            float(value) <= self.maximum
        )


@dataclass(frozen=True)
class Boolean:
    """``True`` or ``False``: the only words Odoo turns into booleans (any other is truthy)."""

    @property
    def description(self) -> str:
        """See :class:`ValueKind`."""
        return "True or False"

    def accepts(self, value: str) -> bool:
        """See :class:`ValueKind`."""
        return value in ("True", "False", "true", "false")


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of words."""

    choices: tuple[str, ...]

    @property
    def description(self) -> str:
        """See :class:`ValueKind`."""
        return f"one of {', '.join(self.choices)}"

    def accepts(self, value: str) -> bool:
        """See :class:`ValueKind`."""
        return value in self.choices


@dataclass(frozen=True)
class Text:
    """Single-line text matching ``pattern``, at most ``max_length`` characters."""

    pattern: str
    what: str
    max_length: int = 255

    @property
    def description(self) -> str:
        """See :class:`ValueKind`."""
        return f"{self.what}, at most {self.max_length} characters"

    def accepts(self, value: str) -> bool:
        """See :class:`ValueKind`."""
        return len(value) <= self.max_length and re.fullmatch(self.pattern, value) is not None


@dataclass(frozen=True)
class TenantOption:
    """One odoo.conf option tenants may set: its value kind and why it is safe to offer."""

    name: str
    kind: ValueKind
    reason: str
    mail: bool = False  # an outgoing mail option, subject to the operator's mail policy
    # The first Odoo major that reads it: older ones ignore it without a word, so a tenant
    # would believe a limit is in force that is not.
    since: int = 0


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*"
_ADDRESS = r"[^\s<>@,]+@[^\s<>@,]+"
# Odoo looks the level up by name on the logging module: lower case would find a function.
_LOG_LEVELS = "DEBUG|INFO|WARNING|ERROR|CRITICAL|NOTSET"
_LOG_HANDLER = rf"[A-Za-z0-9_.]*:(?:{_LOG_LEVELS})"
_MEMORY = Integer(64 * _MIB, 1024 * 1024 * _MIB, "bytes", zero_disables=True)

_OPTIONS = (
    # Worker limits: they bound what one request or one worker of the tenant may use, inside
    # the pod's own resources; too small a value hurts only the tenant that sets it.
    TenantOption(
        "limit_memory_soft",
        _MEMORY,
        "recycles a worker after the request that took it past this much virtual memory",
    ),
    TenantOption(
        "limit_memory_hard",
        _MEMORY,
        "makes memory allocations of a worker fail past this much virtual memory",
    ),
    TenantOption(
        "limit_memory_soft_gevent",
        _MEMORY,
        "limit_memory_soft for the websocket process (Odoo 18 and later)",
        since=18,
    ),
    TenantOption(
        "limit_memory_hard_gevent",
        _MEMORY,
        "limit_memory_hard for the websocket process (Odoo 18 and later)",
        since=18,
    ),
    TenantOption(
        "limit_time_cpu",
        Integer(1, _WEEK, "seconds"),
        "CPU time one request may use",
    ),
    TenantOption(
        "limit_time_real",
        Integer(1, _WEEK, "seconds"),
        "wall-clock time one request may take (long reports and imports need more)",
    ),
    TenantOption(
        "limit_time_real_cron",
        Integer(-1, _WEEK, "seconds; -1 follows limit_time_real, 0 is no limit"),
        "wall-clock time one scheduled action may take",
    ),
    TenantOption(
        "limit_time_worker_cron",
        Integer(0, _WEEK, "seconds; 0 never"),
        "how long a cron thread keeps its database connection before renewing it (Odoo 18)",
        since=18,
    ),
    TenantOption(
        "limit_request",
        Integer(1, 2**31, "requests"),
        "requests a worker serves before it is recycled",
    ),
    # Tuning that stays inside the tenant's own database.
    TenantOption(
        "osv_memory_count_limit",
        Integer(0, 2**31, "records; 0 is no limit"),
        "most wizard (transient) records kept per model",
    ),
    TenantOption(
        "transient_age_limit",
        Decimal(8760, "hours"),
        "how long wizard (transient) records are kept",
    ),
    TenantOption(
        "unaccent",
        Boolean(),
        "accent-insensitive search; needs the unaccent extension in the tenant database",
    ),
    # Logging: the logs still go to standard output, where the cluster collects them.
    TenantOption(
        "log_level",
        Choice(
            (
                "critical",
                "error",
                "warn",
                "info",
                "debug",
                "debug_sql",
                "debug_rpc",
                "debug_rpc_answer",
            )
        ),
        "verbosity of the tenant's own log",
    ),
    TenantOption(
        "log_handler",
        Text(
            rf"{_LOG_HANDLER}(?:,{_LOG_HANDLER})*",
            "comma-separated LOGGER:LEVEL pairs with an upper-case level, "
            "such as odoo.addons.sale:DEBUG,werkzeug:WARNING",
        ),
        "verbosity per logger",
    ),
    # Outgoing mail through an SMTP server named in odoo.conf. Odoo uses it when no mail
    # server record in the database is active, and a restore's neutralization switches off
    # only those records: hence the operator's per-environment policy on these options.
    TenantOption(
        "email_from",
        Text(
            rf"{_ADDRESS}|[^<>]*<{_ADDRESS}>",
            "an e-mail address, such as erp@example.com or Acme ERP <erp@example.com>",
        ),
        "default sender address of outgoing mail",
        mail=True,
    ),
    TenantOption(
        "from_filter",
        Text(
            r"[^\s,]+(?:\s*,\s*[^\s,]+)*",
            "comma-separated e-mail addresses or domains",
        ),
        "which sender addresses the odoo.conf SMTP server may send for",
        mail=True,
    ),
    TenantOption(
        "smtp_server",
        Text(_HOST, "a host name or IPv4 address", max_length=253),
        "outgoing SMTP server",
        mail=True,
    ),
    TenantOption(
        "smtp_port",
        Integer(1, 65535),
        "port of the outgoing SMTP server",
        mail=True,
    ),
    TenantOption(
        "smtp_ssl",
        Boolean(),
        "encrypts the SMTP connection with STARTTLS",
        mail=True,
    ),
)

TENANT_OPTIONS: Mapping[str, TenantOption] = MappingProxyType(
    {option.name: option for option in _OPTIONS}
)
MAIL_OPTIONS: frozenset[str] = frozenset(option.name for option in _OPTIONS if option.mail)

# Written by the operator (in odoo.conf or on the command line), or an old name Odoo maps
# onto one of those: what the operator does with it.
_DATABASE = "the operator provisions the tenant database and its credentials"
OPERATOR_OWNED: Mapping[str, str] = MappingProxyType(
    {
        "admin_passwd": "the master password is random and never shown",
        "list_db": "the database manager and selector stay shut",
        "dbfilter": "each tenant sees its own database only",
        "data_dir": "the filestore is the tenant's volume",
        "addons_path": "modules come from the image",
        "upgrade_path": "upgrades are run by the operator's upgrade Jobs",
        "pre_upgrade_scripts": "upgrades are run by the operator's upgrade Jobs",
        "server_wide_modules": "modules loaded into every worker are part of the image",
        "proxy_mode": "the tenant is always served behind the ingress proxy",
        "http_port": "the pods' ports are fixed",
        "gevent_port": "the pods' ports are fixed",
        "longpolling_port": "the pods' ports are fixed (old name of gevent_port)",
        "xmlrpc_port": "the pods' ports are fixed (old name of http_port)",
        "http_interface": "the pods' ports are fixed",
        "xmlrpc_interface": "the pods' ports are fixed (old name of http_interface)",
        "http_enable": "web pods serve HTTP and cron pods do not",
        "xmlrpc": "web pods serve HTTP and cron pods do not (old name of http_enable)",
        "workers": "set from spec.workers",
        "max_cron_threads": "set from spec.cron.threads",
        "stop_after_init": "only the operator's Jobs stop after initialization",
        "without_demo": "modules are installed by the operator's init Job",
    }
)

# Known to Odoo, deliberately not offered: why.
REFUSED_OPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "dev_mode": "developer mode reloads code from disk and can start Werkzeug's "
        "interactive debugger, which runs any Python sent to it",
        "log_db": "it writes the log into a database, possibly on any PostgreSQL server",
        "log_db_level": "it belongs to log_db, which is not offered",
        "logfile": "logs go to standard output, where the cluster collects them",
        "syslog": "logs go to standard output, where the cluster collects them",
        "pidfile": "the container runtime tracks the process",
        "smtp_user": "credentials do not belong in the spec, which everyone who may read "
        "the OdooInstance (or its Git repository) reads; configure an outgoing mail server "
        "in Odoo instead",
        "smtp_password": "credentials do not belong in the spec, which everyone who may "
        "read the OdooInstance (or its Git repository) reads; configure an outgoing mail "
        "server in Odoo instead",
        "smtp_ssl_certificate_filename": "the pods hold no tenant files; configure "
        "certificate authentication on an outgoing mail server in Odoo instead",
        "smtp_ssl_private_key_filename": "the pods hold no tenant files; configure "
        "certificate authentication on an outgoing mail server in Odoo instead",
        "x_sendfile": "the ingress proxy does not serve files named by X-Sendfile",
        "geoip_city_db": "paths inside the container belong to the image",
        "geoip_country_db": "paths inside the container belong to the image",
        "import_partial": "paths inside the container belong to the image",
        "pg_path": "paths inside the container belong to the image",
        "test_enable": "tests write to the database and run only in development checkouts",
        "test_file": "tests write to the database and run only in development checkouts",
        "test_tags": "tests write to the database and run only in development checkouts",
        "screencasts": "tests write to the database and run only in development checkouts",
        "screenshots": "tests write to the database and run only in development checkouts",
    }
)


@dataclass
class _Findings:
    """Problems per spec.config key, and the options that passed, under their odoo.conf names."""

    problems: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    spelling: dict[str, str] = field(default_factory=dict)  # odoo.conf name -> spec.config key


def has_control_characters(value: str) -> bool:
    """Whether ``value`` holds a line break or another control or separator character.

    Odoo's configparser starts a new option (or continues one) at a line break; the other
    control characters, and Unicode's line and paragraph separators, have no business in a
    configuration value either.
    """
    return any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in value)


def config_field(key: str) -> str:
    """How admission messages name ``spec.config.<key>``, quoted when the key is odd."""
    return f"spec.config.{key}" if _NAME.fullmatch(key) else f"spec.config[{json.dumps(key)}]"


def _shown(value: str) -> str:
    # JSON quoting escapes every control character: a message stays on one line.
    return json.dumps(value if len(value) <= 80 else value[:80] + "...")


def _judge(options: Mapping[str, str]) -> _Findings:
    findings = _Findings()
    first_spelling = findings.spelling
    for key in sorted(options):
        value = options[key]
        where = config_field(key)
        if len(key) > MAX_NAME_LENGTH or not _NAME.fullmatch(key):
            findings.problems.append(
                f"{where}: not an odoo.conf option name (a letter, then letters, digits and "
                f"underscores, at most {MAX_NAME_LENGTH} characters)."
            )
            continue
        name = key.lower()
        if name in first_spelling:
            findings.problems.append(
                f"{where}: the same option as spec.config.{first_spelling[name]} (odoo.conf "
                "option names are case-insensitive); keep one."
            )
            continue
        first_spelling[name] = key
        problem = _name_problem(name)
        if problem is not None:
            findings.problems.append(f"{where}: {problem}")
            continue
        problem = _value_problem(TENANT_OPTIONS[name], value)
        if problem is not None:
            findings.problems.append(f"{where}: {problem}")
            continue
        findings.options[name] = value
    return findings


def _name_problem(name: str) -> str | None:
    if name in TENANT_OPTIONS:
        return None
    if name in OPERATOR_OWNED or name.startswith("db_"):
        why = OPERATOR_OWNED.get(name, _DATABASE)
        return f"{name} is owned by the operator ({why}); remove it."
    if name in REFUSED_OPTIONS:
        return f"{name} may not be set by a tenant: {REFUSED_OPTIONS[name]}."
    return (
        f"{name} is not an odoo.conf option tenants may set "
        f"(allowed: {', '.join(sorted(TENANT_OPTIONS))})."
    )


def _value_problem(option: TenantOption, value: str) -> str | None:
    if has_control_characters(value):
        # Not echoed as is: a line break in a message would be an injection of its own.
        return (
            f"{option.name} must be a single line without control characters, got "
            f"{_shown(value)}; odoo.conf would read what follows a line break as more options."
        )
    if len(value) > MAX_VALUE_LENGTH or value != value.strip():
        return (
            f"{option.name} must be at most {MAX_VALUE_LENGTH} characters without leading "
            f"or trailing spaces, got {_shown(value)}."
        )
    if not option.kind.accepts(value):
        return f"{option.name} must be {option.kind.description}, got {_shown(value)}."
    return None


def config_option_problems(
    options: Mapping[str, str],
    environment: str,
    policy: TenantPolicy,
    version: str | None = None,
) -> list[str]:
    """Every reason to refuse ``spec.config``; an empty list admits it.

    ``environment`` is ``spec.environment``; ``policy`` the operator's: outgoing mail
    options are refused where it forbids them. ``version`` (``spec.version``) refuses
    options that Odoo major does not read. Each message names the field, then the option
    as odoo.conf spells it.
    """
    findings = _judge(options)
    problems = findings.problems
    major = _major(version)
    problems += [
        f"{config_field(findings.spelling[name])}: {name} is read by Odoo "
        f"{TENANT_OPTIONS[name].since}.0 and later; this tenant runs {version}, which would "
        "ignore it without a word."
        for name in findings.options
        if major is not None and TENANT_OPTIONS[name].since > major
    ]
    if not policy.mail_options_allowed(environment):
        mail = ", ".join(sorted(MAIL_OPTIONS))
        problems += [
            f"{config_field(findings.spelling[name])}: outgoing mail options ({mail}) are "
            f"forbidden for {environment} tenants by the operator's policy "
            f"(policy.mailOptions.{environment}); a copy of production must not mail real people."
            for name in findings.options
            if name in MAIL_OPTIONS
        ]
    return problems


def _major(version: str | None) -> int | None:
    head = (version or "").split(".", 1)[0]
    return int(head) if head.isdigit() else None


def validated_config_options(options: Mapping[str, str]) -> dict[str, str]:
    """``spec.config`` as odoo.conf takes it: names in lower case, every one allow-listed.

    Raises ValueError, with every problem, when an option is not allow-listed, is spelled
    twice or has a value of the wrong kind or spanning lines. The mail policy is the
    admission webhook's: it needs the operator's configuration.
    """
    findings = _judge(options)
    if findings.problems:
        raise ValueError("refusing to render odoo.conf: " + " ".join(findings.problems))
    return findings.options
