"""Kubernetes resource quantities in the canonical form the API server stores.

The API server rewrites every quantity it stores ("1000m" becomes "1", "2048Mi" becomes
"2Gi"). Desired objects carry the same form, so comparing them with live objects finds no
false difference and an unchanged tenant costs no write. Parsing is the Kubernetes client's
own; only the formatting is written here, because no library formats quantities.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from kubernetes.utils import parse_quantity

_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_DECIMAL = (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))


def format_quantity(value: Decimal, binary: bool) -> str:
    """``value`` with the largest suffix that keeps it whole, as the API server writes it.

    ``binary`` picks Ki/Mi/Gi... (for quantities given that way) where the value is a whole
    number of them; otherwise decimal suffixes, down to milli-units.
    """
    if value == 0:
        return "0"
    if value == value.to_integral_value():
        whole = int(value)
        for suffix, factor in _BINARY if binary else ():
            if whole % factor == 0:
                return f"{whole // factor}{suffix}"
        for suffix, factor in _DECIMAL:
            if whole % factor == 0:
                return f"{whole // factor}{suffix}"
        return str(whole)
    milli = value * 1000
    if milli == milli.to_integral_value():
        return f"{int(milli)}m"
    # Finer than a milli-unit: the server rounds such values up to the next milli-unit.
    return f"{int(milli.to_integral_value(rounding='ROUND_CEILING'))}m"


def quantity_value(quantity: str | int | float) -> Decimal:
    """The number a quantity stands for (``"1Gi"`` -> 1073741824); ValueError when malformed."""
    value: Decimal = parse_quantity(str(quantity).strip())
    return value


def canonical_quantity(quantity: str | int | float) -> str:
    """A quantity as the API server stores it: ``"1000m"`` -> ``"1"``, ``"1536Mi"`` stays."""
    text = str(quantity).strip()
    return format_quantity(parse_quantity(text), text.endswith("i"))


def scaled_quantity(quantity: str, factor: int) -> str:
    """A quantity multiplied by a whole number, in canonical form."""
    text = quantity.strip()
    return format_quantity(parse_quantity(text) * factor, text.endswith("i"))


def canonical_resources(
    resources: Mapping[str, Mapping[str, str | int | float]],
) -> dict[str, dict[str, str]]:
    """A container's ``resources`` (requests, limits) with every quantity canonical."""
    return {
        section: {name: canonical_quantity(value) for name, value in values.items()}
        for section, values in resources.items()
    }
