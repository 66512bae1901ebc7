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


def tenant_namespace(instance_name: str) -> str:
    """The namespace that holds everything of one tenant."""
    return f"odoo-{instance_name}"
