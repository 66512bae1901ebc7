"""The Job that runs one backup next to the tenant's data (``backupExecution: job``).

It runs the operator's own image (``odoo-operator backup``), so the data path is the same
code the operator runs in-process. It reads the database as the tenant's role (never an
admin login), mounts the filestore read-only, and writes to the blob store with the
store's credentials copied into the tenant namespace (a container-scoped SAS connection
string, or nothing at all with Workload Identity).

With Workload Identity (the store's ``workloadIdentity``) the Job runs as a ServiceAccount of
its own, annotated with the managed identity's client id, and its pods carry the label that
makes AKS's Workload Identity webhook project a token Microsoft Entra ID exchanges for the
identity's. The tenant's web and cron pods (ServiceAccount ``odoo``) never get that token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..model.config import ConfigError, ServerTls, WorkloadIdentity
from ..model.spec import InstanceSpec
from .server_tls import ca_volume, ca_volume_mount, has_ca, postgres_tls_env
from .tenant import ODOO_UID, instance_labels
from .workloads import DATABASE_SECRET, FILESTORE_CLAIM

BACKUP_STORE_SECRET = "odoo-backup-store"  # noqa: S105 - an object name, not a value
# The webhook mutates only pods with this label (its objectSelector), and reads the client
# id from this annotation of the pod's ServiceAccount.
WORKLOAD_IDENTITY_USE_LABEL = "azure.workload.identity/use"
WORKLOAD_IDENTITY_CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
_DATA_DIR = "/var/lib/odoo"
_TENANT_SERVICE_ACCOUNT = "odoo"  # builders/namespace.py: token-less, shared by every pod
# The connection-string keyword of each libpq variable builders/server_tls.py sets.
_LIBPQ_KEYWORDS = {"PGSSLMODE": "sslmode", "PGSSLROOTCERT": "sslrootcert"}


def build_backup_service_account(spec: InstanceSpec, identity: WorkloadIdentity) -> dict[str, Any]:
    """The ServiceAccount backup Jobs of a Workload Identity store run as, in the tenant
    namespace: its name is the subject the identity's federated credential trusts."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": identity.service_account,
            "namespace": spec.namespace,
            "labels": instance_labels(spec.name, "backup"),
            "annotations": {WORKLOAD_IDENTITY_CLIENT_ID_ANNOTATION: identity.client_id},
        },
        # The webhook's token is a volume of its own; nothing needs the API-server token.
        "automountServiceAccountToken": False,
    }


def build_backup_store_secret(
    spec: InstanceSpec,
    store_data: Mapping[str, str],
    identity: WorkloadIdentity | None = None,
) -> dict[str, Any]:
    """Secret :data:`BACKUP_STORE_SECRET`: what of the store's Secret (``store_data``, its
    base64 ``data``) the backup Job needs, copied into the tenant namespace.

    Only ``connectionString`` and ``accountUrl``; with Workload Identity only ``accountUrl``
    (a connection string there would be a key the identity exists to avoid), and its
    absence is a :class:`ConfigError`.
    """
    keys = ("accountUrl",) if identity is not None else ("connectionString", "accountUrl")
    data = {key: value for key, value in store_data.items() if key in keys}
    if identity is not None and "accountUrl" not in data:
        raise ConfigError(
            "the blob store has workloadIdentity, so its Secret needs accountUrl "
            "(https://<account>.blob.core.windows.net)"
        )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": BACKUP_STORE_SECRET,
            "namespace": spec.namespace,
            "labels": instance_labels(spec.name, "backup"),
        },
        "type": "Opaque",
        "data": data,
    }


def backup_job_name(backup_id: str) -> str:
    """The Job of one backup: lower case, as object names must be."""
    return f"backup-{backup_id.lower()}"


def build_backup_job(
    spec: InstanceSpec,
    *,
    node_selector: Mapping[str, str],
    tolerations: Sequence[Mapping[str, Any]],
    backup_name: str,
    backup_id: str,
    reason: str,
    image: str,
    container: str,
    store_secret_key: str | None,
    workload_identity: WorkloadIdentity | None = None,
    database_tls: ServerTls | None = None,
) -> dict[str, Any]:
    """A one-shot Job carrying out OdooBackup ``backup_name`` as ``backup_id``.

    ``store_secret_key`` is the key of :data:`BACKUP_STORE_SECRET` holding the connection
    string, or None when the pod authenticates with Workload Identity (the account URL
    then comes from the same Secret's ``accountUrl``). With ``workload_identity`` the pod
    runs as its ServiceAccount (:func:`build_backup_service_account`, applied first) and is
    labelled for the webhook; a connection string is then refused, not silently dropped.

    ``database_tls`` (the PostgreSQL server's registry entry) adds ``PGSSLMODE`` and
    ``PGSSLROOTCERT`` with the CA mounted from the tenant's copy (builders/server_tls.py), and
    the same two in the connection string: the engine starts pg_dump without the pod's
    ``PG*`` variables (backends/pgtools.py), so only the string carries them that far.
    """
    if workload_identity is not None and store_secret_key is not None:
        raise ValueError(
            "a backup Job with Workload Identity signs in as the identity; "
            f"it takes no connection string (got store_secret_key={store_secret_key!r})"
        )

    env = [
        *_database_env(database_tls, "odoo-operator-backup"),
        *_store_env(container, store_secret_key),
    ]
    job = _engine_job(
        spec,
        name=backup_job_name(backup_id),
        labels={"odoo.tenantops.io/backup": backup_name},
        args=[
            "backup",
            "--instance",
            spec.name,
            "--backup-id",
            backup_id,
            "--database",
            spec.database,
            "--reason",
            reason,
            "--odoo-version",
            spec.version,
            "--filestore",
            filestore_directory(spec),
        ],
        env=env,
        image=image,
        node_selector=node_selector,
        tolerations=tolerations,
        workload_identity=workload_identity,
        # Reads only: any uid in the Odoo image's group (fsGroup) reads the filestore.
        run_as=65532,
        writes_filestore=False,
    )
    _mount_server_ca(job, database_tls)
    return job


def _mount_server_ca(job: dict[str, Any], database_tls: ServerTls | None) -> None:
    """Mount the PostgreSQL server's CA in an engine Job, when the server has one."""
    if has_ca(database_tls):
        pod = job["spec"]["template"]["spec"]
        pod["containers"][0]["volumeMounts"].append(ca_volume_mount())
        pod["volumes"].append(ca_volume())


def filestore_directory(spec: InstanceSpec) -> str:
    """Where the tenant's pods keep the database's filestore (``<data_dir>/filestore/<db>``)."""
    return f"{_DATA_DIR}/filestore/{spec.database}"


def filestore_restore_job_name(restore_uid: str, step: str) -> str:
    """The Job of one step (``stage``, ``swap``) of the filestore half of one OdooRestore."""
    return f"restore-{restore_uid.replace('-', '')[:12].lower()}-{step}"


def build_filestore_restore_job(
    spec: InstanceSpec,
    *,
    step: str,
    restore_name: str,
    restore_uid: str,
    backup_instance: str,
    backup_id: str,
    node_selector: Mapping[str, str],
    tolerations: Sequence[Mapping[str, Any]],
    image: str,
    container: str,
    store_secret_key: str | None,
    workload_identity: WorkloadIdentity | None = None,
    prune_unreferenced: bool = False,
    database_tls: ServerTls | None = None,
) -> dict[str, Any]:
    """A one-shot Job running ``odoo-operator restore-filestore --step <step>`` for OdooRestore
    ``restore_name`` into the tenant of ``spec``, with the filestore claim mounted writable.

    It runs as the Odoo image's user, so the files it writes are Odoo's own. ``stage`` reads
    the backup from the blob store (the store's access as for :func:`build_backup_job`);
    ``swap`` only renames two directories and gets no store access at all. Neither gets a
    database login (the database half of a restore is the operator's), except a ``swap``
    with ``prune_unreferenced`` (an anonymized clone): it reads, as the tenant's own role,
    which files the restored database still names, and removes the others from the staged
    filestore before swapping it in (``database_tls``: the server's registry entry).
    """
    if step not in ("stage", "swap"):
        raise ValueError(f"a filestore restore step is stage or swap, not {step!r}")
    if prune_unreferenced and step != "swap":
        raise ValueError(
            "only the swap step prunes the filestore (the database is restored by then)"
        )
    if workload_identity is not None and store_secret_key is not None:
        raise ValueError(
            "a Job with Workload Identity signs in as the identity; "
            f"it takes no connection string (got store_secret_key={store_secret_key!r})"
        )
    staging = step == "stage"
    env = _store_env(container, store_secret_key) if staging else []
    if prune_unreferenced:
        env = _database_env(database_tls, "odoo-operator-restore")
    job = _engine_job(
        spec,
        name=filestore_restore_job_name(restore_uid, step),
        labels={"odoo.tenantops.io/restore": restore_name},
        args=[
            "restore-filestore",
            "--step",
            step,
            "--instance",
            backup_instance,
            "--backup-id",
            backup_id,
            "--filestore",
            filestore_directory(spec),
            *(["--prune-unreferenced"] if prune_unreferenced else []),
        ],
        env=env,
        image=image,
        node_selector=node_selector,
        tolerations=tolerations,
        workload_identity=workload_identity if staging else None,
        run_as=ODOO_UID,
        writes_filestore=True,
    )
    if prune_unreferenced:
        _mount_server_ca(job, database_tls)
    return job


def _database_env(database_tls: ServerTls | None, application: str) -> list[dict[str, Any]]:
    """How the engine in a Job logs in to the tenant's database: as the tenant's own role,
    from the tenant's database Secret, with the server's TLS settings."""
    tls_env = postgres_tls_env(database_tls)
    tls_conninfo = "".join(
        f" {_LIBPQ_KEYWORDS[variable['name']]}=$({variable['name']})" for variable in tls_env
    )
    return [
        {"name": "PGHOST", "valueFrom": _from_secret(DATABASE_SECRET, "host")},
        {"name": "PGPORT", "valueFrom": _from_secret(DATABASE_SECRET, "port")},
        {"name": "PGUSER", "valueFrom": _from_secret(DATABASE_SECRET, "username")},
        {"name": "PGPASSWORD", "valueFrom": _from_secret(DATABASE_SECRET, "password")},
        {"name": "PGDATABASE", "valueFrom": _from_secret(DATABASE_SECRET, "database")},
        *tls_env,
        # Composed by the kubelet from the variables above ($(NAME) expansion), so the pod
        # spec shows no password; the engine hands it to pg_dump as PGPASSWORD, never argv.
        {
            "name": "ODOO_OPERATOR_DB_CONNINFO",
            "value": "host=$(PGHOST) port=$(PGPORT) user=$(PGUSER) password=$(PGPASSWORD) "
            f"application_name={application}{tls_conninfo}",
        },
    ]


def _from_secret(name: str, key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": key}}


def _store_env(container: str, store_secret_key: str | None) -> list[dict[str, Any]]:
    """How the engine in a Job reaches the blob store: the copied connection string, or the
    account URL alone (Workload Identity)."""
    credential = (
        {
            "name": "ODOO_OPERATOR_BLOB_CONNECTION_STRING",
            "valueFrom": _from_secret(BACKUP_STORE_SECRET, store_secret_key),
        }
        if store_secret_key is not None
        else {
            "name": "ODOO_OPERATOR_BLOB_ACCOUNT_URL",
            "valueFrom": _from_secret(BACKUP_STORE_SECRET, "accountUrl"),
        }
    )
    return [{"name": "ODOO_OPERATOR_BLOB_CONTAINER", "value": container}, credential]


def _engine_job(
    spec: InstanceSpec,
    *,
    name: str,
    labels: Mapping[str, str],
    args: list[str],
    env: list[dict[str, Any]],
    image: str,
    node_selector: Mapping[str, str],
    tolerations: Sequence[Mapping[str, Any]],
    workload_identity: WorkloadIdentity | None,
    run_as: int,
    writes_filestore: bool,
) -> dict[str, Any]:
    """A Job of the operator's image in the tenant namespace with the filestore claim mounted:
    restricted, token-less, never retried by Kubernetes."""
    job_labels = {**instance_labels(spec.name, "backup"), **labels}
    pod_labels = dict(job_labels)
    service_account = _TENANT_SERVICE_ACCOUNT
    if workload_identity is not None:
        pod_labels[WORKLOAD_IDENTITY_USE_LABEL] = "true"
        service_account = workload_identity.service_account
    read_only = not writes_filestore
    container_spec: dict[str, Any] = {
        "name": args[0],
        "image": image,
        "args": args,
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "filestore", "mountPath": _DATA_DIR, "readOnly": read_only},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, not the host's
        ],
    }
    if env:
        # Never an empty list: the API server drops it, and every pass would see drift.
        container_spec["env"] = env
    volumes: list[dict[str, Any]] = [
        {
            "name": "filestore",
            "persistentVolumeClaim": {"claimName": FILESTORE_CLAIM, "readOnly": read_only},
        },
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": spec.namespace, "labels": job_labels},
        "spec": {
            # Retries are the operator's decision (a new OdooBackup), never a silent re-run.
            "backoffLimit": 0,
            "activeDeadlineSeconds": 6 * 3600,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": service_account,
                    # Also with Workload Identity: the webhook adds its own projected token
                    # (audience api://AzureADTokenExchange), which the kubelet mounts whatever
                    # this says; this only keeps out a token for the Kubernetes API.
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": run_as,
                        "runAsGroup": run_as,
                        "fsGroup": ODOO_UID,  # the Odoo image's group owns the filestore
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "nodeSelector": dict(node_selector),
                    "tolerations": [dict(t) for t in tolerations],
                    "containers": [container_spec],
                    "volumes": volumes,
                },
            },
        },
    }
