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

import re
from collections.abc import Mapping

from .config import OperatorConfig, ServerRef
from .spec import InstanceSpec

_VERSION = re.compile(r"^(\d+)\.(\d+)$")


def normalize_host(host: str) -> str:
    """A host as compared for ownership and domains: lower case, no trailing root dot."""
    return host.strip().rstrip(".").lower()


def admission_problems(
    spec: InstanceSpec,
    old: InstanceSpec | None,
    config: OperatorConfig,
    hosts_claimed_by_others: Mapping[str, str],
) -> list[str]:
    """Every reason to refuse ``spec``; an empty list admits it.

    ``old`` is the stored object on UPDATE and None on CREATE.
    ``hosts_claimed_by_others`` maps each host (as :func:`normalize_host` gives it)
    served by another OdooInstance to that instance's name.
    """
    problems = _state_problems(spec, config, hosts_claimed_by_others)
    if old is None:
        return problems
    already_there = set(_state_problems(old, config, hosts_claimed_by_others))
    return [p for p in problems if p not in already_there] + _transition_problems(spec, old)


def _state_problems(
    spec: InstanceSpec, config: OperatorConfig, hosts_claimed_by_others: Mapping[str, str]
) -> list[str]:
    return [
        *_host_problems(spec, config, hosts_claimed_by_others),
        *_server_problems(spec, config),
        *_image_problems(spec, config),
    ]


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
        if config.allowed_domains and not _in_allowed_domains(normalized, config.allowed_domains):
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


def _transition_problems(spec: InstanceSpec, old: InstanceSpec) -> list[str]:
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
