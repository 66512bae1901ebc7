"""Quantities are written the way the API server stores them, so live and desired compare."""

from __future__ import annotations

import pytest

from odoo_operator.builders.quantities import (
    canonical_quantity,
    canonical_resources,
    scaled_quantity,
)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("1000m", "1"),
        ("250m", "250m"),
        ("1500m", "1500m"),
        ("0.5", "500m"),
        ("2", "2"),
        ("2048Mi", "2Gi"),
        ("1536Mi", "1536Mi"),
        ("1.5Gi", "1536Mi"),
        ("10Gi", "10Gi"),
        ("1000000", "1M"),
        ("1G", "1G"),
        ("0", "0"),
        (3, "3"),
    ],
)
def test_a_quantity_is_written_as_the_api_server_stores_it(given: str | int, stored: str) -> None:
    assert canonical_quantity(given) == stored


def test_scaling_keeps_the_unit_family_and_canonical_form() -> None:
    assert scaled_quantity("250m", 4) == "1"
    assert scaled_quantity("512Mi", 4) == "2Gi"
    assert scaled_quantity("300m", 4) == "1200m"
    assert scaled_quantity("768Mi", 6) == "4608Mi"


def test_container_resources_are_canonical_in_every_section() -> None:
    assert canonical_resources({"requests": {"cpu": "1000m"}, "limits": {"memory": "1024Mi"}}) == {
        "requests": {"cpu": "1"},
        "limits": {"memory": "1Gi"},
    }


def test_a_malformed_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="Invalid"):
        canonical_quantity("lots")
