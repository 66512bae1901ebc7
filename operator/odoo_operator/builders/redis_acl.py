"""The Redis side of a tenant, as data: its ACL user, the rules it gets, and their comparison.

Each tenant gets a Redis ACL user confined to one key prefix and one channel prefix, plus
the one key prefix Odoo's Redis session store writes to. That store (Camptocamp's
``session_redis``) names every key ``session:`` followed by ``:<prefix>:`` and the session
id, so it can never write under ``odoo:<name>:``; it is given the prefix ``odoo:<name>`` and
writes ``session::odoo:<name>:<sid>``, which :attr:`TenantRedisUser.session_key_pattern`
covers. Both prefixes end in ``:`` after the instance name, which holds no ``:``, so the
sessions of two tenants can neither be read nor overwritten across the boundary, even when
one name begins with the other (``acme`` and ``acme-x``).

Azure Cache for Redis disables the ``ACL`` command, so per-tenant isolation needs an
ACL-capable Redis: an in-cluster Redis >= 6, or Azure Managed Redis with custom access
policies. The latter take the same rule syntax (the command part of :data:`TENANT_COMMAND_RULES`
and the ``~`` pattern) but are assigned to Entra identities through Azure's control plane,
not with ``ACL SETUSER``; the backend here drives a Redis that accepts ``ACL`` itself. On a
server without ACLs every tenant would share one password and one keyspace.

Everything here is pure. The backend (:mod:`odoo_operator.backends.redis`) reads the user
with ``ACL GETUSER`` and the server's command categories with ``ACL CAT``, asks
:func:`rules_match` whether the user already has :func:`build_acl_rules`, and only then
writes. The comparison cannot be textual: Redis does not echo the rules it was given but
re-describes the user from its internal command bitmap (Redis 7.0 answers
``-@all +@read +@write ...`` with ``-@all +@string +@hash ... -keys -scan``), and other
versions print yet other equivalent forms. So both sides are reduced to the same normal form
(:class:`AclState`): flags, password hashes, key and channel patterns as sets, and the
*effective* set of allowed commands, expanded through the server's own category lists
(:class:`CommandCatalog`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

# A Kubernetes object name (DNS-1123 subdomain): lower-case alphanumerics, '-' and '.'. None
# of these is a Redis glob character or a ':', so no tenant's prefix can match another's.
_INSTANCE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_MAX_INSTANCE_NAME = 253
_GLOB_CHARACTERS = frozenset("*?[]\\")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

USERNAME_PREFIX = "odoo-"
KEY_PREFIX_ROOT = "odoo:"
# What session_redis (session.py, RedisSessionStore) puts before its configured prefix: the
# fixed "session:", then the ":" it joins the prefix with.
SESSION_KEY_ROOT = "session::"

# What the tenant may run, after "-@all". Categories rather than command lists, so commands a
# newer Redis adds to a data-type category come with it; then everything that could reach
# beyond the tenant's prefix or affect the whole server is taken away again.
TENANT_COMMAND_RULES: tuple[str, ...] = (
    "-@all",
    # GET, MGET, EXISTS, TTL, PTTL, STRLEN and the hash/list/set/zset readers: loading a
    # session (GET), checking it (EXISTS, TTL) and reading cache entries of any data type.
    "+@read",
    # SET (with EX/PX/NX), SETEX, PSETEX, GETDEL, INCR, HSET, ...: saving a session with its
    # lifetime in one command, and writing cache entries.
    "+@write",
    # DEL, UNLINK, EXPIRE, PEXPIRE, PERSIST, TOUCH, TYPE, RENAME: logging out (DEL), sliding a
    # session's lifetime (EXPIRE) and cache eviction by the application.
    "+@keyspace",
    # AUTH, HELLO, PING, ECHO, RESET, QUIT, CLIENT SETNAME/SETINFO/ID/INFO, COMMAND: what
    # redis-py sends when it connects and for its health checks.
    "+@connection",
    # MULTI, EXEC, DISCARD, WATCH, UNWATCH: redis-py pipelines are transactions by default.
    "+@transaction",
    # FLUSHALL, FLUSHDB, KEYS, SORT/SORT_RO (their BY and GET patterns read any key),
    # MIGRATE, RESTORE, SWAPDB, INFO, CLIENT LIST/KILL/PAUSE: whole-server or cross-key reach.
    "-@dangerous",
    # ACL, CONFIG, DEBUG, SHUTDOWN, MODULE, MONITOR, SAVE, REPLICAOF, CLUSTER, ...
    "-@admin",
    # EVAL, FCALL and SCRIPT are never granted, but @write carries FUNCTION LOAD, DELETE,
    # FLUSH and RESTORE, which change the server-wide function libraries.
    "-@scripting",
    # SCAN, RANDOMKEY and DBSIZE ignore key patterns: they would reveal other tenants' key
    # names, and a session key's name is the session id.
    "-scan",
    "-randomkey",
    "-dbsize",
    # CLIENT TRACKING in BCAST mode without a prefix pushes the name of every key modified
    # anywhere on the server (checked on Redis 7.0): the same leak.
    "-client|tracking",
    "-client|caching",
    # Tenants live in database 0, where the operator looks for their keys when it drops
    # them: no switching (SELECT), moving (MOVE) or copying (COPY ... DB n) elsewhere.
    "-select",
    "-move",
    "-copy",
)


@dataclass(frozen=True)
class TenantRedisUser:
    """One tenant's Redis ACL user: its name and the key (and channel) prefix it owns."""

    username: str
    key_prefix: str

    def __post_init__(self) -> None:
        if not self.username or any(c.isspace() or not c.isprintable() for c in self.username):
            raise ValueError(
                f"Redis user name {self.username!r} must be non-empty, printable, no spaces"
            )
        if not self.key_prefix or not self.key_prefix.endswith(":"):
            raise ValueError(f"key prefix {self.key_prefix!r} must be non-empty and end in ':'")
        bad = sorted(
            {c for c in self.key_prefix if c in _GLOB_CHARACTERS or not c.isprintable()}
            | {c for c in self.key_prefix if c.isspace()}
        )
        if bad:
            raise ValueError(
                f"key prefix {self.key_prefix!r} contains {''.join(bad)!r}: glob characters "
                "or spaces would widen the tenant's key pattern"
            )

    @property
    def key_pattern(self) -> str:
        """The glob every key of the tenant matches, e.g. ``odoo:acme:*``."""
        return f"{self.key_prefix}*"

    @property
    def session_store_prefix(self) -> str:
        """``ODOO_SESSION_REDIS_PREFIX`` for the tenant's pods, e.g. ``odoo:acme``.

        The key prefix without its last ``:``, which session_redis adds back after it.
        """
        return self.key_prefix.removesuffix(":")

    @property
    def session_key_prefix(self) -> str:
        """What every key session_redis writes for the tenant begins with, e.g.
        ``session::odoo:acme:``: the store's fixed root, the configured prefix, ``:``."""
        return f"{SESSION_KEY_ROOT}{self.session_store_prefix}:"

    @property
    def session_key_pattern(self) -> str:
        """The glob of the tenant's session keys, e.g. ``session::odoo:acme:*``."""
        return f"{self.session_key_prefix}*"

    @property
    def key_patterns(self) -> tuple[str, ...]:
        """Every glob the tenant's keys may match: its own prefix, and its sessions'."""
        return (self.key_pattern, self.session_key_pattern)


def tenant_redis_user(instance_name: str) -> TenantRedisUser:
    """The Redis user of the ``OdooInstance`` named ``instance_name``.

    User ``odoo-<name>``, keys and channels under ``odoo:<name>:``. The name must be a valid
    Kubernetes object name, which keeps it free of ``:``, glob characters and spaces.
    """
    if len(instance_name) > _MAX_INSTANCE_NAME or not _INSTANCE_NAME.fullmatch(instance_name):
        raise ValueError(
            f"instance name {instance_name!r} is not a valid Kubernetes object name "
            "(lower-case letters, digits, '-' and '.')"
        )
    return TenantRedisUser(
        username=f"{USERNAME_PREFIX}{instance_name}",
        key_prefix=f"{KEY_PREFIX_ROOT}{instance_name}:",
    )


def password_sha256(password: str) -> str:
    """The SHA-256 hex digest Redis keeps for ``password`` (what ``#<hash>`` rules take)."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def build_acl_rules(user: TenantRedisUser, password_sha256: str) -> list[str]:
    """The complete ``ACL SETUSER`` rule list for ``user``, in order.

    ``reset`` first, so the rules replace whatever the user had (extra passwords, patterns,
    selectors, flags) in one atomic command. The password is given as its SHA-256 hash
    (``#<hex>``): the clear text then never crosses the wire in ``ACL SETUSER``, and never
    shows in ``MONITOR``, the slow log or ``ACL LOG``. Keys are confined to the tenant's
    prefix and its session keys (:attr:`TenantRedisUser.key_patterns`), channels to the
    tenant's prefix; commands are :data:`TENANT_COMMAND_RULES`. The session pattern is
    granted whether or not the tenant's image has a session module: the names are the
    tenant's either way, and its ACL then does not change with its image.
    """
    digest = password_sha256.lower()
    if not _SHA256_HEX.fullmatch(digest):
        raise ValueError(
            f"the password hash for Redis user {user.username} must be 64 hexadecimal "
            "characters (a SHA-256 digest)"
        )
    return [
        "reset",
        "on",
        f"#{digest}",
        *(f"~{pattern}" for pattern in user.key_patterns),
        f"&{user.key_pattern}",
        *TENANT_COMMAND_RULES,
    ]


@dataclass(frozen=True, eq=False)
class CommandCatalog:
    """The server's command categories, from ``ACL CAT`` and ``ACL CAT <category>``.

    Members are lower-case command names, subcommands as ``parent|sub`` (``config|get``), as
    Redis lists them. Every command is in at least one category (``@fast`` or ``@slow``), so
    the union of the categories is every command the server knows.
    """

    categories: Mapping[str, frozenset[str]]
    all_commands: frozenset[str] = field(init=False)
    _subcommands: Mapping[str, frozenset[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        everything = frozenset().union(*self.categories.values())
        subcommands: dict[str, set[str]] = {}
        for name in everything:
            parent, bar, _ = name.partition("|")
            if bar:
                subcommands.setdefault(parent, set()).add(name)
        object.__setattr__(self, "all_commands", everything)
        object.__setattr__(self, "_subcommands", {k: frozenset(v) for k, v in subcommands.items()})

    @classmethod
    def from_categories(cls, categories: Mapping[str, Iterable[str]]) -> CommandCatalog:
        """A catalog from category name -> member names, in any case, with or without '@'."""
        return cls(
            {
                name.lower().removeprefix("@"): frozenset(m.lower() for m in members)
                for name, members in categories.items()
            }
        )

    def category(self, name: str) -> frozenset[str] | None:
        """Members of category ``name`` (without '@'); None when the server has no such one."""
        if name == "all":
            return self.all_commands
        return self.categories.get(name)

    def subcommands(self, command: str) -> frozenset[str]:
        """``parent|sub`` names of ``command``'s subcommands; empty when it has none."""
        return self._subcommands.get(command, frozenset())


@dataclass(frozen=True)
class AclState:
    """A user's ACL in normal form: equal states grant exactly the same access.

    ``keys`` and ``channels`` hold full rules (``~pattern``, ``%R~pattern``, ``&pattern``);
    ``commands`` the effective set of allowed commands and subcommands. A category the
    catalog does not know is kept as its literal rule (``+@newcategory``), and an unknown
    command or first-argument rule (``select|0``) as its name, so a state holding one never
    equals a state expanded from known names only.
    """

    enabled: bool = False
    nopass: bool = False
    skip_sanitize_payload: bool = False
    passwords: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    commands: frozenset[str] = frozenset()
    selectors: tuple[str, ...] = ()


_FRESH_USER = AclState()


def _apply_command_rule(
    commands: frozenset[str], rule: str, catalog: CommandCatalog
) -> frozenset[str]:
    sign, name = rule[0], rule[1:].lower()
    allow = sign == "+"
    if name.startswith("@"):
        members = catalog.category(name[1:])
        if members is None:
            # A category this catalog does not know: keep the rule itself as an opaque
            # marker, which no state expanded from known names contains.
            return commands | {rule.lower()}
        if allow:
            return commands | members
        return commands - members
    if "|" in name:
        return commands | {name} if allow else commands - {name}
    # "+client" sets the container command's own bit and those of all its subcommands; Redis
    # prints "+client" back only when that own bit is set, so it is part of the state.
    affected = catalog.subcommands(name) | {name}
    if allow:
        return commands | affected
    # "-client" also takes away first-argument rules such as "client|foo" not in the catalog.
    return frozenset(c for c in commands if c not in affected and not c.startswith(f"{name}|"))


def _normal_key_rule(rule: str) -> str:
    # "%RW~pattern" is the same as "~pattern"; permission letters in a fixed order.
    if rule.startswith("%"):
        permissions, _, pattern = rule[1:].partition("~")
        letters = "".join(sorted(set(permissions.upper())))
        return f"~{pattern}" if letters == "RW" else f"%{letters}~{pattern}"
    return rule


def _collapse(patterns: frozenset[str], everything: str) -> frozenset[str]:
    # "~*" (or "&*") grants everything; other patterns beside it change nothing.
    return frozenset({everything}) if everything in patterns else patterns


def acl_state_from_rules(rules: Sequence[str], catalog: CommandCatalog) -> AclState:
    """The state a new user would have after ``ACL SETUSER <user> <rules...>``.

    Understands the rule language of Redis 7 (``on``/``off``, ``>pw``/``#hash``/``nopass``,
    ``~``/``%R~``/``&`` patterns, ``+``/``-`` commands and categories, ``reset``...).
    Raises :class:`ValueError` on a rule it does not know: the desired rules are ours.
    """
    state = _FRESH_USER
    for rule in rules:
        keyword = rule.lower()
        if keyword == "reset":
            state = _FRESH_USER
        elif keyword in ("on", "off"):
            state = replace(state, enabled=keyword == "on")
        elif keyword == "nopass":
            state = replace(state, nopass=True, passwords=frozenset())
        elif keyword == "resetpass":
            state = replace(state, nopass=False, passwords=frozenset())
        elif rule.startswith(">"):
            digest = password_sha256(rule[1:])
            state = replace(state, nopass=False, passwords=state.passwords | {digest})
        elif rule.startswith("<"):
            state = replace(state, passwords=state.passwords - {password_sha256(rule[1:])})
        elif rule.startswith("#"):
            state = replace(state, nopass=False, passwords=state.passwords | {rule[1:].lower()})
        elif rule.startswith("!"):
            state = replace(state, passwords=state.passwords - {rule[1:].lower()})
        elif keyword in ("allkeys", "resetkeys"):
            state = replace(state, keys=frozenset({"~*"} if keyword == "allkeys" else ()))
        elif rule.startswith(("~", "%")):
            keys = _collapse(state.keys | {_normal_key_rule(rule)}, "~*")
            state = replace(state, keys=keys)
        elif keyword in ("allchannels", "resetchannels"):
            channels = frozenset({"&*"} if keyword == "allchannels" else ())
            state = replace(state, channels=channels)
        elif rule.startswith("&"):
            state = replace(state, channels=_collapse(state.channels | {rule}, "&*"))
        elif keyword in ("allcommands", "nocommands"):
            rule_ = "+@all" if keyword == "allcommands" else "-@all"
            state = replace(state, commands=_apply_command_rule(state.commands, rule_, catalog))
        elif rule.startswith(("+", "-")) and len(rule) > 1:
            state = replace(state, commands=_apply_command_rule(state.commands, rule, catalog))
        elif keyword in ("sanitize-payload", "skip-sanitize-payload"):
            state = replace(state, skip_sanitize_payload=keyword == "skip-sanitize-payload")
        elif keyword == "clearselectors":
            state = replace(state, selectors=())
        elif rule.startswith("(") and rule.endswith(")"):
            state = replace(state, selectors=(*state.selectors, " ".join(rule[1:-1].split())))
        else:
            raise ValueError(f"unknown Redis ACL rule {rule.split()[0][:40]!r}")
    return state


def decode_getuser_reply(reply: Any) -> dict[str, Any] | None:
    """The raw ``ACL GETUSER`` reply as a field -> value dict with ``str`` everywhere.

    ``reply`` is what the server sent: None for no such user, a flat ``[field, value, ...]``
    list (RESP2) or a map (RESP3), with bytes or str. Values stay as the server shaped them:
    ``commands`` one string, ``keys``/``channels`` a string (Redis 7) or a list (Redis 6).
    Use this, not redis-py's ``acl_getuser``: that one splits ``commands`` into separate
    category and command lists, which loses their order, and the order decides the result.
    """
    if reply is None:
        return None
    if isinstance(reply, Mapping):
        pairs = list(reply.items())
    elif isinstance(reply, list | tuple):
        if len(reply) % 2:
            raise ValueError("ACL GETUSER reply has an odd number of elements")
        pairs = list(zip(reply[0::2], reply[1::2], strict=True))
    else:
        raise TypeError(f"unexpected ACL GETUSER reply of type {type(reply).__name__}")
    return {_text(name): _decode(value) for name, value in pairs}


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _decode(value: Any) -> Any:
    if isinstance(value, bytes | str):
        return _text(value)
    if isinstance(value, Mapping):
        return {_text(k): _decode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_decode(v) for v in value]
    return value


def _words(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value if str(v)]


def acl_state_from_getuser(observed: Mapping[str, Any], catalog: CommandCatalog) -> AclState:
    """The normal form of an existing user, from :func:`decode_getuser_reply`'s dict.

    Accepts the shapes of Redis 6 (``keys`` and ``channels`` as lists of bare patterns,
    ``allkeys``/``allchannels``/``allcommands`` flags) and Redis 7 (rule strings).
    """
    flags = {f.lower() for f in _words(observed.get("flags"))}
    commands: frozenset[str] = frozenset()
    command_rules = _words(observed.get("commands"))
    if "allcommands" in flags:
        command_rules.insert(0, "+@all")
    for rule in command_rules:
        commands = _apply_command_rule(commands, rule, catalog)
    keys = frozenset(
        _normal_key_rule(k if k.startswith(("~", "%")) else f"~{k}")
        for k in _words(observed.get("keys"))
    )
    channels = frozenset(
        c if c.startswith("&") else f"&{c}" for c in _words(observed.get("channels"))
    )
    if "allkeys" in flags:
        keys |= {"~*"}
    if "allchannels" in flags:
        channels |= {"&*"}
    selectors = tuple(_selector_text(s) for s in observed.get("selectors") or ())
    return AclState(
        enabled="on" in flags and "off" not in flags,
        nopass="nopass" in flags,
        skip_sanitize_payload="skip-sanitize-payload" in flags,
        passwords=frozenset(p.lower() for p in _words(observed.get("passwords"))),
        keys=_collapse(keys, "~*"),
        channels=_collapse(channels, "&*"),
        commands=commands,
        selectors=selectors,
    )


def _selector_text(selector: Any) -> str:
    if isinstance(selector, Mapping):
        items: Iterable[Any] = (f"{k}={v}" for k, v in selector.items())
    elif isinstance(selector, list | tuple):
        items = selector
    else:
        items = [selector]
    return " ".join(str(i) for i in items)


def acl_differences(
    observed: Mapping[str, Any] | None, desired_rules: Sequence[str], catalog: CommandCatalog
) -> list[str]:
    """What differs between the user as observed and ``desired_rules``; ``[]`` when equal.

    ``observed`` is :func:`decode_getuser_reply`'s dict, or None when the user is missing.
    Each difference is a short phrase for logs and Events; password hashes are never quoted.
    """
    desired = acl_state_from_rules(desired_rules, catalog)
    if observed is None:
        return ["the user does not exist"]
    actual = acl_state_from_getuser(observed, catalog)
    differences: list[str] = []
    if actual.enabled != desired.enabled:
        differences.append("enabled" if desired.enabled else "disabled")
    if actual.nopass != desired.nopass:
        differences.append("nopass" if actual.nopass else "password required")
    if actual.passwords != desired.passwords:
        differences.append(
            f"passwords ({len(actual.passwords)} set, expected {len(desired.passwords)})"
        )
    if actual.skip_sanitize_payload != desired.skip_sanitize_payload:
        differences.append("payload sanitizing")
    for what, have, want in (
        ("key patterns", actual.keys, desired.keys),
        ("channel patterns", actual.channels, desired.channels),
        ("commands", actual.commands, desired.commands),
    ):
        if have != want:
            differences.append(f"{what}: {_set_difference(have, want)}")
    if actual.selectors != desired.selectors:
        differences.append(f"selectors ({len(actual.selectors)} set)")
    return differences


def _set_difference(have: frozenset[str], want: frozenset[str], limit: int = 8) -> str:
    parts = []
    for label, items in (("extra", have - want), ("missing", want - have)):
        if items:
            shown = sorted(items)
            more = f" and {len(shown) - limit} more" if len(shown) > limit else ""
            parts.append(f"{label} {', '.join(shown[:limit])}{more}")
    return "; ".join(parts)


def rules_match(
    observed: Mapping[str, Any] | None, desired_rules: Sequence[str], catalog: CommandCatalog
) -> bool:
    """Whether the observed user grants exactly what ``desired_rules`` grant.

    Compares normal forms (:class:`AclState`), so Redis' re-description of the rules (its
    own order, its own choice of categories and exceptions) does not count as a difference.
    """
    return not acl_differences(observed, desired_rules, catalog)
