"""The odoo.conf options ``spec.config`` admits, against the options real Odoo reads.

An option Odoo does not know is not an error in odoo.conf: Odoo keeps it and never looks at
it. So an option the operator admits for a version that lacks it is rendered and silently
does nothing, while the tenant believes it set a limit. Each option is offered to the
operator's admission webhook (a dry-run create, which stores nothing), and each one admitted
must be among the options of that version's own configuration (``odoo.tools.config``).
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from e2e.tenants import GROUP, PLURAL, VERSION
from kubernetes import client

from conformance.tenants import conformance_instance
from odoo_devstack.odoo_runtime import ODOO_VERSIONS
from odoo_devstack.processes import ManagedProcess
from odoo_devstack.pytest_fixtures import OdooRuntimes
from odoo_operator.model.odoo_options import (
    TENANT_OPTIONS,
    Boolean,
    Choice,
    Decimal,
    Integer,
    TenantOption,
)

# Valid values of the free-text options (the others are made from their kind).
_TEXT_SAMPLES = {
    "log_handler": "odoo.addons.base:WARNING",
    "email_from": "erp@example.com",
    "from_filter": "example.com",
    "smtp_server": "smtp.example.com",
}
_ODOO_OPTIONS_SCRIPT = (
    "import json, sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from odoo.tools import config\n"
    "print(json.dumps(sorted(config.options)))\n"
)


def _sample(option: TenantOption) -> str:
    """A value the allowlist accepts for ``option``."""
    kind = option.kind
    if isinstance(kind, Integer):
        return str(max(kind.minimum, 1))
    if isinstance(kind, Decimal):
        return "1.5"
    if isinstance(kind, Boolean):
        return "True"
    if isinstance(kind, Choice):
        return kind.choices[0]
    return _TEXT_SAMPLES[option.name]


def _admitted(custom: client.CustomObjectsApi, version: str, name: str, value: str) -> bool:
    body = conformance_instance(f"cfo-{uuid.uuid4().hex[:6]}", version, {"config": {name: value}})
    try:
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body, dry_run="All")
    except client.ApiException as exc:
        if exc.status in (400, 403, 422):
            return False
        raise
    return True


@pytest.mark.parametrize("version", ODOO_VERSIONS, ids=lambda version: f"odoo{version}")
def test_every_option_spec_config_admits_is_one_this_odoo_reads(
    version: str,
    k8s: client.ApiClient,
    conformance_operator: ManagedProcess,
    odoo_runtimes: OdooRuntimes,
) -> None:
    runtime = odoo_runtimes.get(version)
    listed = subprocess.run(
        [str(runtime.python), "-c", _ODOO_OPTIONS_SCRIPT, str(runtime.source_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    known = set(json.loads(listed.stdout))
    custom = client.CustomObjectsApi(k8s)
    admitted = [
        name
        for name, option in TENANT_OPTIONS.items()
        if _admitted(custom, version, name, _sample(option))
    ]
    # Every option but the mail ones (which the operator's policy may refuse) must pass:
    # otherwise the samples, not the allowlist, would be what this test judges.
    major = int(version.split(".")[0])
    refused = [
        name
        for name, o in TENANT_OPTIONS.items()
        if not o.mail and o.since <= major and name not in admitted
    ]
    assert refused == [], f"admission refused the sample values of {refused}"
    unread = [name for name in admitted if name not in known]
    assert unread == [], (
        f"spec.config admits {unread} for Odoo {version}, which Odoo {version} does not read: "
        "they are rendered into odoo.conf and silently ignored"
    )
