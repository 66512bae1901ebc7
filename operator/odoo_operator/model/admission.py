"""What the validating admission webhook refuses, as a pure function of its inputs.

The CRD schema and its CEL rules check each OdooInstance on its own. What they
cannot see is everything outside that one object: the hosts other tenants
already serve, the operator's server registry, version map and allowed
domains. :func:`admission_problems` decides on those; the Kopf glue in
:mod:`odoo_operator.handlers.admission` gathers the inputs and answers the
apiserver.

On UPDATE the rules ratchet, as Kubernetes does for CRD validation: a problem
the stored object already had is tolerated, so a change of the operator's
configuration (a server renamed, a domain dropped) never locks an existing
tenant out of unrelated edits. Only a version downgrade is judged on the change
itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .config import OperatorConfig, ServerRef, instance_image_policy_problems
from .names import (
    DRILL_HOST_SUFFIX,
    GROUP,
    MAINTENANCE_ANNOTATION,
    ROTATE_CREDENTIALS_ANNOTATION,
    VERIFY_ANNOTATION,
    reserved_name_problem,
)
from .odoo_options import config_option_problems
from .spec import InstanceSpec
from .upgrade import UPGRADE_NOW_ANNOTATION

_VERSION = re.compile(r"^(\d+)\.(\d+)$")


def normalize_host(host: str) -> str:
    """A host as compared for ownership and domains: lower case, no trailing root dot."""
    return host.strip().rstrip(".").lower()


def reserved_database_problem(name: str, field: str = "spec.database.name") -> str | None:
    """Why ``name`` may never be a tenant's database or role name (naming ``field``), or None."""
    problem = reserved_name_problem(name)
    if problem is None:
        return None
    return f"{field} {problem}; choose another name or leave it unset for odoo_<instance>."


def database_server(spec: InstanceSpec, config: OperatorConfig) -> str:
    """The registered PostgreSQL server the tenant's database lives on (its name)."""
    return spec.database_server or config.default_postgres or ""


def admission_problems(
    spec: InstanceSpec,
    old: InstanceSpec | None,
    config: OperatorConfig,
    hosts_claimed_by_others: Mapping[str, str],
    databases_claimed_by_others: Mapping[tuple[str, str], str] | None = None,
) -> list[str]:
    """Every reason to refuse ``spec``; an empty list admits it.

    ``old`` is the stored object on UPDATE and None on CREATE.
    ``hosts_claimed_by_others`` maps each host (as :func:`normalize_host` gives it)
    served by another OdooInstance to that instance's name;
    ``databases_claimed_by_others`` maps each (server, database) another instance uses
    to that instance's name: database and role names are unique per server.
    """
    databases = databases_claimed_by_others or {}
    problems = _state_problems(spec, config, hosts_claimed_by_others, databases)
    if old is None:
        return problems
    already_there = set(_state_problems(old, config, hosts_claimed_by_others, databases))
    return [p for p in problems if p not in already_there] + _transition_problems(spec, old, config)


def _state_problems(
    spec: InstanceSpec,
    config: OperatorConfig,
    hosts_claimed_by_others: Mapping[str, str],
    databases_claimed_by_others: Mapping[tuple[str, str], str],
) -> list[str]:
    return [
        *name_problems(spec, config),
        *_host_problems(spec, config, hosts_claimed_by_others),
        *_server_problems(spec, config),
        *_database_problems(spec, config, databases_claimed_by_others),
        *_image_problems(spec, config),
        *instance_image_policy_problems(spec.version, spec.image, config),
        *config_option_problems(spec.config, spec.environment, config.policy, spec.version),
    ]


def name_problems(spec: InstanceSpec, config: OperatorConfig) -> list[str]:
    """An instance whose tenant namespace would be the operator's own."""
    if spec.namespace == config.namespace:
        return [
            f"metadata.name {spec.name} would make the tenant namespace {spec.namespace}, "
            "which is the operator's own namespace; choose another name."
        ]
    return []


def _database_problems(
    spec: InstanceSpec,
    config: OperatorConfig,
    databases_claimed_by_others: Mapping[tuple[str, str], str],
) -> list[str]:
    reserved = reserved_database_problem(spec.database)
    if reserved is not None:
        return [reserved]
    owner = databases_claimed_by_others.get((database_server(spec, config), spec.database))
    if owner is not None and owner != spec.name:
        return [
            f"spec.database.name {spec.database} is already the database of OdooInstance "
            f"{owner} on server {database_server(spec, config)}; a database (and its role) "
            "belongs to one tenant only. To move data between tenants, restore a backup "
            "with an OdooRestore."
        ]
    return []


def _host_problems(
    spec: InstanceSpec, config: OperatorConfig, hosts_claimed_by_others: Mapping[str, str]
) -> list[str]:
    problems: list[str] = []
    for index, host in enumerate(spec.hosts):
        normalized = normalize_host(host)
        owner = hosts_claimed_by_others.get(normalized)
        if owner is not None and owner != spec.name:
            problems.append(
                f"spec.hosts[{index}] {host} is already served by OdooInstance {owner}; "
                "a host belongs to one tenant only."
            )
        # A restore drill's temporary instance is routed nowhere: its host is under
        # .invalid (RFC 2606), which resolves nowhere, and it gets no route at all.
        isolated = spec.drill is not None and normalized.endswith(DRILL_HOST_SUFFIX)
        if (
            config.allowed_domains
            and not isolated
            and not _in_allowed_domains(normalized, config.allowed_domains)
        ):
            problems.append(
                f"spec.hosts[{index}] {host} is outside the allowed domains "
                f"({', '.join(config.allowed_domains)}) of the operator's allowedDomains."
            )
    return problems


def _in_allowed_domains(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == domain or host.endswith(f".{domain}") for domain in domains)


def _server_problems(spec: InstanceSpec, config: OperatorConfig) -> list[str]:
    references = (
        (
            "spec.database.serverRef",
            "PostgreSQL",
            spec.database_server,
            config.postgres_servers,
            config.default_postgres,
        ),
        (
            "spec.redis.serverRef",
            "Redis",
            spec.redis_server,
            config.redis_servers,
            config.default_redis,
        ),
    )
    problems: list[str] = []
    for field, kind, ref, servers, default in references:
        problem, server = _resolve_server(field, kind, ref, servers, default)
        if problem:
            problems.append(problem)
        elif server is not None and spec.tenancy == "dedicated" and not server.dedicated:
            problems.append(_shared_server_problem(field, kind, ref, server, servers))
    return problems


def _resolve_server(
    field: str,
    kind: str,
    ref: str | None,
    servers: Mapping[str, ServerRef],
    default: str | None,
) -> tuple[str | None, ServerRef | None]:
    registered = ", ".join(sorted(servers)) or "none"
    if ref is None:
        if default is None or default not in servers:
            return (
                f"{field} is not set and the operator has no default {kind} server; "
                f"name one of the registered servers ({registered}).",
                None,
            )
        return None, servers[default]
    if ref not in servers:
        return (
            f"{field} {ref} is not a {kind} server registered with the operator "
            f"(registered: {registered}).",
            None,
        )
    return None, servers[ref]


def _shared_server_problem(
    field: str, kind: str, ref: str | None, server: ServerRef, servers: Mapping[str, ServerRef]
) -> str:
    named = server.name if ref is not None else f"(unset, so the default {server.name})"
    dedicated = ", ".join(sorted(name for name, s in servers.items() if s.dedicated)) or "none"
    return (
        f"{field} {named} is a shared {kind} server, but spec.tenancy is dedicated; "
        f"a dedicated tenant needs a server marked dedicated (registered: {dedicated})."
    )


def _image_problems(spec: InstanceSpec, config: OperatorConfig) -> list[str]:
    if spec.image or spec.version in config.images:
        return []
    configured = ", ".join(sorted(config.images, key=_version_order_key)) or "none"
    return [
        f"spec.version {spec.version} has no image in the operator's version map "
        f"(configured: {configured}); set spec.image or choose a configured version."
    ]


def _transition_problems(
    spec: InstanceSpec, old: InstanceSpec, config: OperatorConfig
) -> list[str]:
    return [*_version_problems(spec, old), *_database_move_problems(spec, old, config)]


def _database_move_problems(
    spec: InstanceSpec, old: InstanceSpec, config: OperatorConfig
) -> list[str]:
    # Compared on the effective names, so setting spec.database.name where it was defaulted
    # cannot move a live tenant to a new, empty database.
    problems = []
    if spec.database != old.database:
        problems.append(
            f"spec.database.name cannot change from {old.database} (the tenant's database) "
            f"to {spec.database}: moving a tenant to another database is a restore "
            "(OdooRestore), not an edit."
        )
    before, after = database_server(old, config), database_server(spec, config)
    if before != after:
        problems.append(
            f"spec.database.serverRef cannot change from {before} to {after}: the tenant's "
            "database stays on the server it was created on; move it with a backup and an "
            "OdooRestore into a new instance."
        )
    return problems


def _version_problems(spec: InstanceSpec, old: InstanceSpec) -> list[str]:
    new_version, old_version = _parse_version(spec.version), _parse_version(old.version)
    if new_version is None or old_version is None or new_version >= old_version:
        return []
    return [
        f"spec.version cannot go down from {old.version} to {spec.version}: Odoo migrates "
        "a database forward only; restore a backup into a new instance instead."
    ]


def _parse_version(version: str) -> tuple[int, int] | None:
    match = _VERSION.match(version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _version_order_key(version: str) -> tuple[int, int, str]:
    # Numeric order, so 9.0 lists before 10.0; anything unparsable goes last, by name.
    parsed = _parse_version(version)
    return (*parsed, "") if parsed else (1 << 30, 0, version)


# The annotations the operator acts on. It copies their values into status, into a Secret it
# applies as YAML and into its record of the last handled configuration: short printable
# ASCII survives all three (a control character breaks the YAML, and a non-ASCII character
# takes six bytes in the record's JSON).
OPERATOR_ANNOTATIONS = (
    ROTATE_CREDENTIALS_ANNOTATION,
    MAINTENANCE_ANNOTATION,
    UPGRADE_NOW_ANNOTATION,
    VERIFY_ANNOTATION,
)
MAX_OPERATOR_ANNOTATION_LENGTH = 512
_PRINTABLE_ASCII = re.compile(r"[ -~]*")
# Kopf records the handled configuration (spec, labels and annotations as JSON, non-ASCII
# escaped) in this annotation, so every other annotation counts about twice against the
# apiserver's limit; a write past it would leave the operator unable to record anything.
RECORD_ANNOTATION = f"{GROUP}/last-handled-configuration"
_NOT_RECORDED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_ANNOTATIONS_BYTES = 256 * 1024  # the apiserver's limit on all annotations together
_RECORD_HEADROOM = 4 * 1024  # what the record may add (a default filled in, a status field)


def recorded_annotations_bytes(
    spec: Mapping[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]
) -> int:
    """How many bytes the annotations take once the operator has recorded the handled
    configuration in :data:`RECORD_ANNOTATION` (which repeats spec, labels and annotations)."""
    kept = {k: v for k, v in annotations.items() if k != RECORD_ANNOTATION}
    recorded = {k: v for k, v in kept.items() if k != _NOT_RECORDED}
    record = json.dumps(
        {"spec": spec, "metadata": {"labels": labels, "annotations": recorded}},
        separators=(",", ":"),
    )
    raw = sum(len(k.encode()) + len(str(v).encode()) for k, v in kept.items())
    return raw + len(RECORD_ANNOTATION) + len(record)


def annotation_problems(
    annotations: Mapping[str, str],
    old_annotations: Mapping[str, str] | None,
    spec: Mapping[str, Any],
    labels: Mapping[str, str],
    old_size: int | None = None,
) -> list[str]:
    """Annotation values the operator could not carry; only changed ones are judged.

    ``old_annotations`` is None on CREATE. ``old_size`` is what
    :func:`recorded_annotations_bytes` gives for the stored object: an object already past
    the limit may still shrink.
    """
    old = old_annotations or {}
    changed = {
        key
        for key in annotations.keys() | old.keys()
        if key != RECORD_ANNOTATION and annotations.get(key) != old.get(key)
    }
    problems = []
    for key in OPERATOR_ANNOTATIONS:
        value = annotations.get(key)
        if key not in changed or value is None:
            continue
        if len(value) > MAX_OPERATOR_ANNOTATION_LENGTH or not _PRINTABLE_ASCII.fullmatch(value):
            shown = json.dumps(value[:40] + ("..." if len(value) > 40 else ""))
            problems.append(
                f"metadata.annotations[{key}] must be at most {MAX_OPERATOR_ANNOTATION_LENGTH} "
                f"printable ASCII characters, got {len(value)} characters ({shown}): the "
                "operator copies it into status, a Secret and its record of the handled "
                "configuration."
            )
    if changed:
        size = recorded_annotations_bytes(spec, labels, annotations)
        if size + _RECORD_HEADROOM > MAX_ANNOTATIONS_BYTES and (
            old_size is None or size > old_size
        ):
            problems.append(
                f"metadata.annotations would take {size} bytes once the operator records the "
                f"handled configuration ({RECORD_ANNOTATION} repeats spec, labels and "
                "annotations as JSON, non-ASCII characters escaped); the API server keeps at "
                f"most {MAX_ANNOTATIONS_BYTES - _RECORD_HEADROOM} with room for that record: "
                "shorten or remove the large annotations."
            )
    return problems


def operator_annotation_value_problem(key: str, value: str) -> str | None:
    """Why the operator will not act on ``value`` of its annotation ``key``, or None.

    The reconciler asks this too, for objects written while the webhook was bypassed.
    """
    if len(value) <= MAX_OPERATOR_ANNOTATION_LENGTH and _PRINTABLE_ASCII.fullmatch(value):
        return None
    return (
        f"metadata.annotations[{key}] must be at most {MAX_OPERATOR_ANNOTATION_LENGTH} "
        f"printable ASCII characters (got {len(value)} characters); set a short value such "
        "as a date or a ticket number."
    )
