"""The control plane reports the component that failed and leaves nothing running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from odoo_devstack import binaries
from odoo_devstack.controlplane import ControlPlane
from odoo_devstack.processes import ComponentError


def test_a_crashing_etcd_is_named_with_its_log_and_nothing_is_left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    for component in binaries.ALL_COMPONENTS:
        script = assets / component.binary
        script.write_text("#!/bin/sh\nsleep 300\n")
        script.chmod(0o755)
    (assets / "etcd").write_text(
        "#!/bin/sh\necho 'listen tcp 127.0.0.1:2379: bind: address already in use' >&2\nexit 1\n"
    )
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    monkeypatch.setattr(binaries, "ensure_kwok_stages", lambda: tmp_path / "stages.yaml")
    control_plane = ControlPlane(workdir=tmp_path / "cluster", start_timeout=10)
    with pytest.raises(ComponentError) as failure, control_plane:
        pass
    assert failure.value.component == "etcd"
    assert "address already in use" in str(failure.value)
    assert control_plane.processes == []
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _runs(p, str(assets))]
    assert leftovers == []


def _runs(pid: str, folder: str) -> bool:
    try:
        return folder in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return False
