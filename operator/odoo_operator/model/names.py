"""The API group, kinds and the labels every managed object carries."""

from __future__ import annotations

GROUP = "odoo.tenantops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
INSTANCE_PLURAL = "odooinstances"
INSTANCE_KIND = "OdooInstance"

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "odoo-operator"
INSTANCE_LABEL = f"{GROUP}/instance"
FIELD_MANAGER = "odoo-operator"
# Set (or change) this annotation's value on an OdooInstance to re-key its database role and
# Redis user; status.credentialsRotation records the last value honoured.
ROTATE_CREDENTIALS_ANNOTATION = f"{GROUP}/rotate-credentials"
# Set by the operator during a restore (later: an upgrade): web and cron are held at zero
# while it is present; its value names what holds the tenant ("restore/<OdooRestore>").
MAINTENANCE_ANNOTATION = f"{GROUP}/maintenance"
# Set (or change) this annotation's value on a succeeded OdooBackup to verify it again; the
# verification records the value it answered (status.verification.request). The schedule of
# spec.backup.verify: Scheduled sets it too.
VERIFY_ANNOTATION = f"{GROUP}/verify"
# On the temporary OdooInstance of a restore drill: the OdooRestore (drill) it serves. Such an
# instance gets no route and no ingress from the ingress controller (network-isolated), and
# is deleted with its database when the drill ends.
DRILL_LABEL = f"{GROUP}/drill"
# The host of such an instance: under the .invalid top-level domain, which never resolves
# (RFC 2606), so it names nothing anybody could reach.
DRILL_HOST_SUFFIX = ".drill.invalid"


def tenant_namespace(instance_name: str) -> str:
    """The namespace that holds everything of one tenant."""
    return f"odoo-{instance_name}"


# Names a tenant may never use for its role or database: the databases and roles every
# PostgreSQL server has, the ones Azure Database for PostgreSQL keeps for its own
# administration, and names PostgreSQL itself rejects as role names. Compared without regard
# to case: "Postgres" is a different identifier, but only a mistake or a trick would ask for it.
RESERVED_NAMES = frozenset(
    {
        "postgres",
        "template0",
        "template1",
        "public",
        "none",
        "azuresu",
        "azure_maintenance",
        "azure_sys",
        "azure_superuser",
        "azure_pg_admin",
        "replication",
    }
)
RESERVED_PREFIXES = ("pg_", "azure_")


def reserved_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a tenant's role or database name, or None when it can.

    Covers the names every server (or Azure's flexible server) keeps for itself and the
    ``pg_`` and ``azure_`` prefixes. Whether ``name`` is the admin role of a given server, or
    an existing privileged role, only the backend can tell; it refuses those as well.
    """
    folded = name.lower()
    if folded in RESERVED_NAMES:
        return (
            f"{name} is reserved: it is one of the server's own databases or roles "
            f"({', '.join(sorted(RESERVED_NAMES))}), which no tenant may use"
        )
    for prefix in RESERVED_PREFIXES:
        if folded.startswith(prefix):
            return (
                f"{name} is reserved: names starting with {prefix} belong to "
                f"{'PostgreSQL' if prefix == 'pg_' else 'Azure Database for PostgreSQL'}"
            )
    return None
