"""Odoo's configuration, Secrets, filestore and workloads (web, cron, init Job)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Any

from ..model.config import SESSION_MODULES
from ..model.odoo_options import has_control_characters, validated_config_options
from .odoo_users import (
    INIT_INSTALL_CONTAINER,
    INIT_USERS_CONTAINER,
    users_step_command,
    users_step_env,
)
from .quantities import canonical_quantity, canonical_resources
from .redis_acl import TenantRedisUser
from .server_tls import (
    build_server_ca_secret,
    ca_volume,
    ca_volume_mount,
    needs_ca_volume,
    postgres_tls_env,
    redis_session_url,
)
from .tenant import (
    ODOO_HTTP_PORT,
    ODOO_UID,
    ODOO_WEBSOCKET_PORT,
    Tenant,
    db_maxconn,
    labels,
    metadata,
)

# Secret object names, not values.
CONFIG_SECRET = "odoo-config"  # noqa: S105
DATABASE_SECRET = "odoo-database"  # noqa: S105
REDIS_SECRET = "odoo-redis"  # noqa: S105
FILESTORE_CLAIM = "odoo-filestore"
CONFIG_CHECKSUM_ANNOTATION = "odoo.tenantops.io/config-checksum"
_CONFIG_PATH = "/etc/odoo/odoo.conf"
_DATA_DIR = "/var/lib/odoo"
_HEALTH_PATH = "/web/health"
INIT_JOB_TTL_SECONDS = 7 * 24 * 3600


def render_odoo_conf(tenant: Tenant) -> str:
    """odoo.conf: the operator's options, then the tenant's allow-listed extras, each once.

    The operator owns database access, the master password, db listing, ports and workers.
    ``spec.config`` is checked again here (the admission webhook checks it first): an option
    outside the allowlist, a name spelled twice or a value spanning lines raises ValueError
    rather than reaching a file that Odoo would refuse, or read as more options.
    """
    spec, creds = tenant.spec, tenant.credentials
    owned: dict[str, str] = {
        "db_host": tenant.database.host,
        "db_port": str(tenant.database.port),
        "db_user": spec.database,
        "db_password": creds.database_password,
        "db_name": spec.database,
        "db_maxconn": str(db_maxconn(spec)),
        "dbfilter": f"^{spec.database}$",
        "list_db": "False",
        "admin_passwd": creds.admin_password,
        "proxy_mode": "True",
        "data_dir": _DATA_DIR,
        "http_port": str(ODOO_HTTP_PORT),
        "gevent_port": str(ODOO_WEBSOCKET_PORT),
        "workers": str(spec.workers),
    }
    if tenant.database_tls is not None:
        # Odoo hands it to psycopg2 as sslmode; the CA comes from PGSSLROOTCERT (pod env).
        # Only when the registry sets a mode: a tenant without one keeps its config checksum.
        owned["db_sslmode"] = tenant.database_tls.mode
    session_module = SESSION_MODULES.get(tenant.session_store)
    if session_module is not None:
        # session_redis replaces Odoo's session store when it is imported, which only a
        # server-wide module is, in every process before any request. The list replaces
        # Odoo's default (base,web), so it names those too. Only then: Odoo merely logs a
        # server-wide module it cannot find, and a tenant without one keeps its checksum.
        owned["server_wide_modules"] = f"base,web,{session_module}"
    extras = validated_config_options(spec.config)
    if extras.keys() & owned.keys():
        # The allowlist and the operator's options are disjoint; should they ever meet,
        # configparser would refuse the duplicate and Odoo would not start.
        raise ValueError(f"spec.config sets {sorted(extras.keys() & owned.keys())}")
    # Extras first, as before the allowlist: an unchanged tenant keeps its config checksum.
    options = {**extras, **owned}
    for key, value in options.items():
        if has_control_characters(value):
            # The value is not shown: it may be a password.
            raise ValueError(f"refusing to render odoo.conf: the value of {key} spans lines")
    lines = ["[options]", *(f"{key} = {value}" for key, value in options.items())]
    return "\n".join(lines) + "\n"


def config_checksum(tenant: Tenant) -> str:
    """A digest of the generated configuration and credentials: a change rolls the pods.

    odoo.conf already holds the database password; the Redis password reaches the pods
    through the environment, so it is added here for a rotation to roll them too.
    """
    digest = hashlib.sha256(render_odoo_conf(tenant).encode())
    digest.update(b"\0" + tenant.credentials.redis_password.encode())
    return digest.hexdigest()


def _secret(tenant: Tenant, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(tenant, name),
        "type": "Opaque",
        # `data`, not write-only `stringData`, so the applied object compares with the stored one.
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def build_secrets(tenant: Tenant) -> list[dict[str, Any]]:
    """The config, database and Redis Secrets, each with a documented, stable key set, and
    the servers' CA bundles when the registry names any (builders/server_tls.py)."""
    spec, creds = tenant.spec, tenant.credentials
    server_ca = build_server_ca_secret(tenant)
    return [
        _secret(tenant, CONFIG_SECRET, {"odoo.conf": render_odoo_conf(tenant)}),
        _secret(
            tenant,
            DATABASE_SECRET,
            {
                "host": tenant.database.host,
                "port": str(tenant.database.port),
                "database": spec.database,
                "username": spec.database,
                "password": creds.database_password,
            },
        ),
        _secret(
            tenant,
            REDIS_SECRET,
            {
                "host": tenant.redis.host,
                "port": str(tenant.redis.port),
                "username": tenant.redis_user,
                "password": creds.redis_password,
                "prefix": tenant.redis_key_prefix,
            },
        ),
        *([server_ca] if server_ca else []),
    ]


def build_filestore_claim(tenant: Tenant) -> dict[str, Any]:
    """The attachments volume, shared by web and cron pods (hence ReadWriteMany)."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": canonical_quantity(tenant.spec.filestore_size)}},
    }
    storage_class = tenant.spec.storage_class or tenant.storage_class
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(tenant, FILESTORE_CLAIM, "filestore"),
        "spec": spec,
    }


def _pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": ODOO_UID,
        "runAsGroup": ODOO_UID,
        "fsGroup": ODOO_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _redis_session_env(tenant: Tenant) -> list[dict[str, Any]]:
    """The session store's variables: none at all unless the image has one.

    session_redis reads ``ODOO_SESSION_REDIS_URL`` (before host, port and password) and
    never a user name, so the URL is the only way to log in as the tenant's ACL user. Its
    parts come from ``odoo-redis`` into variables listed before it, which the kubelet
    expands in ``$(NAME)``, so the pod spec shows no password. The prefix makes the store
    write ``session::odoo:<name>:<sid>``, the key pattern the tenant's user was given.
    """
    if tenant.session_store != "redis":
        # Nothing in the image would read them: sessions stay in the filestore, and the
        # SessionsInRedis condition says so rather than a configuration that does nothing.
        return []

    def from_secret(key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": REDIS_SECRET, "key": key}}

    variables = {
        "host": "ODOO_SESSION_REDIS_HOST",
        "port": "ODOO_SESSION_REDIS_PORT",
        "username": "ODOO_SESSION_REDIS_USERNAME",
        "password": "ODOO_SESSION_REDIS_PASSWORD",
    }
    user = TenantRedisUser(tenant.redis_user, tenant.redis_key_prefix)
    env: list[dict[str, Any]] = [
        {"name": "ODOO_SESSION_REDIS", "value": "1"},
        *({"name": name, "valueFrom": from_secret(key)} for key, name in variables.items()),
        {"name": "ODOO_SESSION_REDIS_PREFIX", "value": user.session_store_prefix},
    ]
    url = redis_session_url(tenant, variables)
    if url is None:
        # No TLS asked for: the same URL in clear. An IPv6 literal needs its brackets.
        host = f"$({variables['host']})"
        if ":" in tenant.redis.host:
            host = f"[{host}]"
        url = (
            f"redis://$({variables['username']}):$({variables['password']})@{host}:"
            f"$({variables['port']})/0"
        )
    env.append({"name": "ODOO_SESSION_REDIS_URL", "value": url})
    return env


def _pod_spec(tenant: Tenant, args: list[str], with_ports: bool) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "odoo",
        "image": tenant.image,
        "args": ["-c", _CONFIG_PATH, *args],
        "securityContext": _container_security_context(),
        "resources": canonical_resources(tenant.spec.resources),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/odoo", "readOnly": True},
            {"name": "filestore", "mountPath": _DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, not the host's /tmp
        ],
    }
    env = [*_redis_session_env(tenant), *postgres_tls_env(tenant.database_tls)]
    if env:
        # Only when there is some: the API server drops an empty list, and a desired
        # "env: []" would then never match the live object (a write on every drift pass).
        container["env"] = env
    if with_ports:
        probe = {"httpGet": {"path": _HEALTH_PATH, "port": "http"}}
        container["ports"] = [
            {"name": "http", "containerPort": ODOO_HTTP_PORT},
            {"name": "websocket", "containerPort": ODOO_WEBSOCKET_PORT},
        ]
        container["startupProbe"] = {**probe, "periodSeconds": 5, "failureThreshold": 60}
        container["readinessProbe"] = {**probe, "periodSeconds": 10}
        container["livenessProbe"] = {**probe, "periodSeconds": 20, "failureThreshold": 6}
    spec: dict[str, Any] = {
        "serviceAccountName": "odoo",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security_context(),
        "containers": [container],
        "volumes": [
            {"name": "config", "secret": {"secretName": CONFIG_SECRET}},
            {"name": "filestore", "persistentVolumeClaim": {"claimName": FILESTORE_CLAIM}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
    }
    if needs_ca_volume(tenant.database_tls, tenant.redis_tls):
        container["volumeMounts"].append(ca_volume_mount())
        spec["volumes"].append(ca_volume())
    if tenant.node_selector:
        spec["nodeSelector"] = dict(tenant.node_selector)
    if tenant.tolerations:
        spec["tolerations"] = [dict(t) for t in tenant.tolerations]
    return spec


def _deployment(
    tenant: Tenant, component: str, replicas: int, args: list[str], with_ports: bool
) -> dict[str, Any]:
    pod_labels = labels(tenant, component)
    pod_spec = _pod_spec(tenant, args, with_ports)
    if with_ports:
        # Web pods spread over zones and, within a zone, over nodes: one node drained or
        # lost must not take every replica. ScheduleAnyway: a small cluster still runs them.
        pod_spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": pod_labels},
            }
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
        ]
    if component == "cron":
        pod_spec["containers"][0].update(_cron_probes(tenant))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(tenant, f"odoo-{component}", component),
        "spec": {
            "replicas": 0 if tenant.spec.suspend else replicas,
            "selector": {"matchLabels": pod_labels},
            # Cron must never run twice at once: a posting would be booked twice.
            # Cron must never run twice at once; web keeps every serving pod until its successor
            # is ready, so a configuration change or a credential rotation costs no downtime.
            "strategy": {"type": "Recreate"}
            if component == "cron"
            else {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {CONFIG_CHECKSUM_ANNOTATION: config_checksum(tenant)},
                },
                "spec": pod_spec,
            },
        },
    }


def cron_liveness_command(database_port: int) -> list[str]:
    """The cron container's probe: exit 0 while the pod holds a connection to PostgreSQL.

    The cron pod runs Odoo with ``--no-http``: no port answers an HTTP or TCP probe, and
    the process outliving its work is the failure to catch. Each cron thread keeps a
    connection to PostgreSQL open while it waits for jobs; when that connection breaks (a
    database restart or failover) the thread ends and Odoo (17.0 and 18.0) never starts it
    again, leaving a live process that runs no scheduled action. The probe reads the pod's
    TCP table (its network namespace holds this one container) and fails when no
    connection to the database port is established; a restart brings the threads back.
    It needs only the Python interpreter every Odoo image has.
    """
    script = (
        "import sys\n"
        f"port = ':{database_port:04X}'\n"
        "established = False\n"
        "for table in ('/proc/net/tcp', '/proc/net/tcp6'):\n"
        "    try:\n"
        "        rows = [row.split() for row in open(table).read().splitlines()[1:]]\n"
        "    except OSError:\n"
        "        continue\n"
        # Columns: slot, local address, remote address, state (01 is ESTABLISHED).
        "    established = established or any(\n"
        "        len(r) > 3 and r[2].endswith(port) and r[3] == '01' for r in rows\n"
        "    )\n"
        "sys.exit(0 if established else 1)\n"
    )
    return ["python3", "-c", script]


def _cron_probes(tenant: Tenant) -> dict[str, Any]:
    probe = {"exec": {"command": cron_liveness_command(tenant.database.port)}}
    return {
        # Loading a large registry takes minutes before the cron threads connect.
        "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 60},
        # Five minutes without a connection: restarting cannot make things worse, since a
        # cron pod without its database runs nothing either.
        "livenessProbe": {
            **probe,
            "periodSeconds": 60,
            "timeoutSeconds": 10,
            "failureThreshold": 5,
        },
    }


def build_deployments(tenant: Tenant) -> list[dict[str, Any]]:
    """`web` serves HTTP with no scheduled actions; `cron` runs scheduled actions only."""
    spec = tenant.spec
    return [
        _deployment(tenant, "web", spec.replicas, ["--max-cron-threads=0"], with_ports=True),
        _deployment(
            tenant,
            "cron",
            spec.cron_replicas,
            [f"--max-cron-threads={spec.cron_threads}", "--workers=0", "--no-http"],
            with_ports=False,
        ),
    ]


def build_service(tenant: Tenant) -> dict[str, Any]:
    """The web Service: HTTP and websocket ports."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(tenant, "odoo", "web"),
        "spec": {
            "selector": labels(tenant, "web"),
            "ports": [
                {"name": "http", "port": ODOO_HTTP_PORT, "targetPort": "http"},
                {"name": "websocket", "port": ODOO_WEBSOCKET_PORT, "targetPort": "websocket"},
            ],
        },
    }


def build_disruption_budget(tenant: Tenant) -> dict[str, Any] | None:
    """Keep one web pod through voluntary disruptions, when there is more than one."""
    if tenant.spec.replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(tenant, "odoo-web", "web"),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": labels(tenant, "web")},
            # A pod that is not ready serves nobody: evicting it costs nothing, and must not
            # be blocked by the budget (a crash-looping pod would otherwise stall a drain).
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_init_job(tenant: Tenant) -> dict[str, Any]:
    """One-shot database initialization: install base and the requested modules, then set
    the passwords of the tenant's Odoo users (builders/odoo_users.py).

    Two steps of one pod. The init container :data:`INIT_INSTALL_CONTAINER` runs ``-i``
    exactly as before, through the image's entrypoint. Only when it succeeded does the main
    container :data:`INIT_USERS_CONTAINER` give Odoo's ``admin`` user the generated password
    (``-i base`` leaves it ``admin``) and create the monitoring user, in ``odoo shell``. Two
    containers rather than one ``sh -c``: each step keeps its own exit status and log
    (``kubectl logs job/odoo-init -c <step>``), only the second sees the passwords, and the
    Job succeeds only when both did, so no web pod (made after that) ever serves a database
    whose ``admin`` still answers to ``admin``. Both run with the same image, configuration,
    volumes and restricted security context as every Odoo pod.
    """
    database = tenant.spec.database
    modules = ",".join(["base", *tenant.spec.modules])
    pod_spec = _pod_spec(
        tenant,
        # No demo data in a tenant's database: Odoo 17.0 and 18.0 load it unless told not to.
        ["-d", database, "-i", modules, "--without-demo=all", "--stop-after-init", "--no-http"],
        with_ports=False,
    )
    install = pod_spec["containers"][0]
    install["name"] = INIT_INSTALL_CONTAINER
    # A container of its own (a second, fresh build), so the two steps share no object.
    users = _pod_spec(tenant, ["-d", database, "--no-http"], with_ports=False)["containers"][0]
    users["name"] = INIT_USERS_CONTAINER
    users["command"] = users_step_command()
    users["env"] = [*users.get("env", []), *users_step_env()]
    pod_spec["initContainers"] = [install]
    pod_spec["containers"] = [users]
    pod_spec["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(tenant, "odoo-init", "init"),
        "spec": {
            "backoffLimit": 2,
            # The finished Job and its pod's log are kept a week, then removed. The operator
            # creates this Job only while the instance's Initialized condition is not True,
            # and records that condition at the first pass that sees the Job succeed (a drift
            # pass runs every two minutes), so a Job gone after success is not run again;
            # the week covers an operator that is down meanwhile. Running -i again would
            # reload base data in init mode over the tenant's. A failed Job gone after the
            # week is created anew: the retry its Initialized message offers.
            "ttlSecondsAfterFinished": INIT_JOB_TTL_SECONDS,
            "template": {"metadata": {"labels": labels(tenant, "init")}, "spec": pod_spec},
        },
    }


def upgrade_job_name(upgrade_id: str) -> str:
    """The Job of one upgrade attempt."""
    return f"odoo-upgrade-{upgrade_id}"


def build_upgrade_job(
    tenant: Tenant, *, upgrade_id: str, image: str, database: str, modules: str
) -> dict[str, Any]:
    """Update ``modules`` in ``database`` (the copy) with ``image``, then stop.

    An init container first gives the copy its own filestore, ``filestore/<copy>``: a
    hard-linked copy of the original's, so that the files the upgrade writes or replaces
    never reach the original's. Odoo names a filestore after its database, and renaming
    databases moves no directory: once the copy is renamed into the original's place, the
    Job of :func:`build_upgrade_filestore_job` must move ``filestore/<copy>`` there too, or
    the tenant would read the original's files and miss every file the upgrade wrote.
    """
    upgrading = dataclasses.replace(tenant, image=image)
    pod_spec = _pod_spec(
        upgrading,
        ["-d", database, "-u", modules, "--stop-after-init", "--no-http"],
        with_ports=False,
    )
    pod_spec["restartPolicy"] = "Never"
    filestore = f"{_DATA_DIR}/filestore"
    pod_spec["initContainers"] = [
        {
            "name": "filestore-copy",
            "image": image,
            "command": [
                "sh",
                "-c",
                'if [ -d "$SRC" ] && [ ! -e "$DST" ]; then cp -al "$SRC" "$DST"; fi',
            ],
            "env": [
                {"name": "SRC", "value": f"{filestore}/{tenant.spec.database}"},
                {"name": "DST", "value": f"{filestore}/{database}"},
            ],
            "securityContext": _container_security_context(),
            "volumeMounts": [{"name": "filestore", "mountPath": _DATA_DIR}],
        }
    ]
    job_labels = {**labels(tenant, "upgrade"), "odoo.tenantops.io/upgrade": upgrade_id}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **metadata(tenant, upgrade_job_name(upgrade_id), "upgrade"),
            "labels": job_labels,
        },
        "spec": {
            # One attempt: a failed migration is rolled back, never silently re-run.
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": {"metadata": {"labels": job_labels}, "spec": pod_spec},
        },
    }


# Puts filestore directory $INCOMING in the place of $LIVE and keeps $LIVE as $ASIDE, all
# three beside each other in $FILESTORE. Two renames cannot be one atomic step, so the
# script reads where it stopped from what exists and may be run again after any
# interruption: $ASIDE existing means the first rename is done, $INCOMING gone means the
# second is. It refuses, moving nothing, in a state no interrupted run can leave. A
# directory that does not exist is an empty filestore (a database that never stored a
# file has none), so it is made first: afterwards the kept side always exists, which is
# what lets a later run of the same script, the other way round, put it back.
UPGRADE_FILESTORE_SCRIPT = """\
set -eu
refuse() { echo "refusing, nothing was moved in $FILESTORE: $*" >&2; exit 1; }
mkdir -p "$FILESTORE"
cd "$FILESTORE"
if [ ! -e "$ASIDE" ]; then
  if [ -e "$LIVE" ] && [ ! -e "$INCOMING" ]; then refuse "$LIVE exists, $INCOMING does not"; fi
  mkdir -p "$LIVE" "$INCOMING"
  mv -- "$LIVE" "$ASIDE"
fi
if [ -e "$INCOMING" ]; then
  if [ -e "$LIVE" ]; then refuse "$LIVE, $INCOMING and $ASIDE all exist"; fi
  mv -- "$INCOMING" "$LIVE"
fi
if [ ! -d "$LIVE" ]; then refuse "$ASIDE exists, neither $LIVE nor $INCOMING does"; fi
echo "$FILESTORE/$LIVE now holds what was $INCOMING; the previous files are in $ASIDE"
"""


def upgrade_filestore_job_name(upgrade_id: str, *, rollback: bool = False) -> str:
    """The Job that moves the filestore directories of one upgrade attempt, or of its
    rollback."""
    return f"odoo-{'rollback' if rollback else 'upgrade'}-{upgrade_id}-filestore"


def build_upgrade_filestore_job(
    tenant: Tenant,
    *,
    upgrade_id: str,
    image: str,
    live: str,
    incoming: str,
    aside: str,
    rollback: bool = False,
) -> dict[str, Any]:
    """Move ``filestore/<incoming>`` into the place of ``filestore/<live>``, keeping the
    latter as ``filestore/<aside>`` (:data:`UPGRADE_FILESTORE_SCRIPT`).

    After an upgrade's database switch: the copy's files become the tenant's and the
    previous ones follow the previous database (``incoming`` the copy, ``aside`` the kept
    name). For a rollback the same move the other way (``incoming`` the kept name, ``aside``
    the failed upgrade's). Only a pod in the tenant namespace can reach the filestore volume,
    hence a Job; it needs no configuration, credentials or network, just a shell and ``mv``,
    which every Odoo image has. The script is safe to run again, so the pod may be retried.
    """
    filestore = f"{_DATA_DIR}/filestore"
    container: dict[str, Any] = {
        "name": "filestore",
        "image": image,
        "command": ["sh", "-c", UPGRADE_FILESTORE_SCRIPT],
        "env": [
            {"name": "FILESTORE", "value": filestore},
            {"name": "LIVE", "value": live},
            {"name": "INCOMING", "value": incoming},
            {"name": "ASIDE", "value": aside},
        ],
        "securityContext": _container_security_context(),
        # Two renames: stated rather than left to the LimitRange's Odoo-sized defaults,
        # which would count against the tenant's quota while web and cron are down anyway.
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
        "volumeMounts": [{"name": "filestore", "mountPath": _DATA_DIR}],
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": "odoo",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security_context(),
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "filestore", "persistentVolumeClaim": {"claimName": FILESTORE_CLAIM}}],
    }
    if tenant.node_selector:
        pod_spec["nodeSelector"] = dict(tenant.node_selector)
    if tenant.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in tenant.tolerations]
    job_labels = {
        **labels(tenant, "upgrade"),
        "odoo.tenantops.io/upgrade": upgrade_id,
        "odoo.tenantops.io/upgrade-step": "rollback-filestore" if rollback else "filestore",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **metadata(tenant, upgrade_filestore_job_name(upgrade_id, rollback=rollback)),
            "labels": job_labels,
        },
        "spec": {
            # A pod lost with its node is simply run again: the script resumes where the
            # previous one stopped. A refusal fails every attempt the same way.
            "backoffLimit": 3,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": {"metadata": {"labels": job_labels}, "spec": pod_spec},
        },
    }
