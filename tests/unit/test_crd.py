"""The CRD is the single source of truth, and `kubectl explain` is useful on every field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CRDS = sorted((Path(__file__).parents[2] / "crds").glob("*.yaml"))


def _fields(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, child in schema.get("properties", {}).items():
        yield f"{path}.{name}", child
        yield from _fields(child, f"{path}.{name}")
    if "items" in schema:
        yield from _fields(schema["items"], f"{path}[]")


@pytest.mark.parametrize("crd_file", CRDS, ids=[c.name for c in CRDS])
def test_every_field_has_a_description(crd_file: Path) -> None:
    crd = yaml.safe_load(crd_file.read_text())
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        missing = [
            path
            for path, field in _fields(schema, "")
            if path != ".metadata" and not field.get("description")
        ]
        assert missing == [], f"{crd_file.name}: fields without description: {missing}"


def test_odooinstance_is_cluster_scoped_with_the_agreed_names() -> None:
    crd = yaml.safe_load((CRDS[0].parent / "odooinstances.odoo.tenantops.io.yaml").read_text())
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["group"] == "odoo.tenantops.io"
    assert crd["spec"]["names"]["shortNames"] == ["odoo"]
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Version", "Phase", "Ready", "URL", "Last Backup", "Age"]
