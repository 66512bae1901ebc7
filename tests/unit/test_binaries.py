"""Control-plane binaries are found in the documented order, and bad ones are skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from odoo_devstack import binaries


def _script(folder: Path, name: str, version_output: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{version_output}'\n")
    path.chmod(0o755)
    return path


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODOO_OPERATOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "path"))


def test_envtest_assets_come_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assets = _script(tmp_path / "assets", "etcd", "etcd Version: 3.6.1").parent
    _script(tmp_path / "path", "etcd", "etcd Version: 3.6.16")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    assert binaries.locate(binaries.ETCD) == assets / "etcd"


def test_the_cache_is_used_before_path(tmp_path: Path) -> None:
    cached = binaries.cached_path(binaries.KUBE_APISERVER)
    _script(cached.parent, "kube-apiserver", "Kubernetes v1.36.3")
    _script(tmp_path / "path", "kube-apiserver", "Kubernetes v1.36.3")
    assert binaries.locate(binaries.KUBE_APISERVER) == cached


def test_an_unsupported_version_on_path_is_skipped(tmp_path: Path) -> None:
    _script(tmp_path / "path", "etcd", "etcd Version: 3.4.23")
    assert binaries.locate(binaries.ETCD) is None


def test_a_supported_version_on_path_is_used(tmp_path: Path) -> None:
    found = _script(tmp_path / "path", "etcd", "etcd Version: 3.6.16")
    assert binaries.locate(binaries.ETCD) == found


def test_building_without_go_names_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(binaries.ToolMissingError, match=r"install Go >= 1\.26"):
        binaries.ensure(binaries.KWOK)


def test_the_bootstrap_provides_promtool_from_the_cache_without_building() -> None:
    # What `make bootstrap` asks for; with everything cached nothing is built (PATH has no go).
    for component in binaries.ALL_COMPONENTS + binaries.PACKAGING_TOOLS:
        _script(binaries.cached_path(component).parent, component.binary, "cached")
    found = binaries.ensure_all(with_packaging_tools=True)
    assert found["promtool"] == binaries.cached_path(binaries.PROMTOOL)
    assert found["promtool"].parent.name == f"promtool-v{binaries.PROMTOOL_VERSION}"


@pytest.mark.parametrize(
    ("output", "used"),
    [
        ("promtool, version 3.16.0 (branch: HEAD, revision: 0123abcd)", True),  # a release
        ("promtool, version v0.316.0 (branch: , revision: unknown)", True),  # the bootstrap's
        ("promtool, version 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5)", False),
    ],
)
def test_a_promtool_on_path_is_used_only_from_prometheus_3(
    tmp_path: Path, output: str, used: bool
) -> None:
    found = _script(tmp_path / "path", "promtool", output)
    assert binaries.locate(binaries.PROMTOOL) == (found if used else None)


@pytest.mark.parametrize("tool", binaries.PACKAGING_TOOLS, ids=lambda tool: tool.binary)
def test_each_packaging_tool_has_a_pinned_wrapper_module(tool: binaries.Component) -> None:
    module = Path(binaries.__file__).parent / "gomodules" / tool.family
    go_mod = (module / "go.mod").read_text()
    assert f" v{tool.version}\n" in go_mod, f"{tool.binary} v{tool.version} is not required"
    assert f" v{tool.version} h1:" in (module / "go.sum").read_text()
    assert (module / "tools.go").read_text().startswith("//go:build tools\n")
