"""The CRD is the single source of truth, and `kubectl explain` is useful on every field."""

from __future__ import annotations

import re
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
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    default = [c["name"] for c in columns if not c.get("priority")]
    assert default == ["Version", "Env", "Phase", "Ready", "URL", "Last Backup", "Age"]
    wide = [c["name"] for c in columns if c.get("priority") == 1]
    assert wide == ["Tenancy", "Hibernation", "Shard", "Reason", "Message"]


def _config_schema() -> dict[str, Any]:
    crd = yaml.safe_load((CRDS[0].parent / "odooinstances.odoo.tenantops.io.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    config: dict[str, Any] = schema["properties"]["spec"]["properties"]["config"]
    return config


def _cel_pattern(rule: str) -> re.Pattern[str]:
    # The rule's one matches('...') literal, unescaped as CEL does. Its syntax (character
    # classes, \xHH escapes, anchors) means the same to RE2 and to Python's re.
    (literal,) = re.findall(r"matches\('((?:[^'\\]|\\.)*)'\)", rule)
    return re.compile(literal.replace("\\\\", "\\"))


def test_spec_config_values_with_a_line_break_or_control_character_are_refused() -> None:
    (rule,) = _config_schema()["additionalProperties"]["x-kubernetes-validations"]
    assert rule["rule"].startswith("!self.matches(")
    assert "single line" in rule["message"]
    refused = _cel_pattern(rule["rule"])
    for value in ["600\naddons_path = /tmp/evil", "600\r", "\x00", "a\tb", "\x7f", "\x85"]:
        assert refused.search(value), value
    for value in ["600", "Acme ERP <erp@acme.example.com>", ":INFO,werkzeug:WARNING", "é"]:
        assert not refused.search(value), value


def test_spec_config_keys_must_look_like_odoo_option_names_in_any_case() -> None:
    config = _config_schema()
    (rule,) = config["x-kubernetes-validations"]
    assert "size(k) <= 64" in rule["rule"]
    assert rule["message"].startswith("spec.config keys")
    name = _cel_pattern(rule["rule"])
    for key in ["limit_time_real", "LIMIT_TIME_REAL", "Addons_Path"]:
        assert name.search(key), key
    for key in ["", "a b", "a\nb", "a=b", "a:b", "[options]", "1st"]:
        assert not name.search(key), key
    # The old denylist is gone: the allowlist is the webhook's, and it folds case.
    assert "startsWith('db_')" not in rule["rule"]


def test_the_category_of_all_three_kinds_collides_with_no_name_kubectl_resolves() -> None:
    """``kubectl get odoo acme`` must read the OdooInstance: a category named like a short
    name would make kubectl expand it to all three kinds and refuse the name."""
    names = [yaml.safe_load(path.read_text())["spec"]["names"] for path in CRDS]
    categories = {category for entry in names for category in entry.get("categories", [])}
    taken = {
        name
        for entry in names
        for name in (entry["plural"], entry["singular"], *entry.get("shortNames", []))
    }
    assert categories == {"odoo-all"}
    assert all("odoo-all" in entry["categories"] for entry in names)
    assert not categories & taken
