"""Control-plane binaries are found in the documented order, and bad ones are skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from odoo_operator.devcluster import binaries


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
