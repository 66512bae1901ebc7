"""`make demo` prints the server's printer columns the way kubectl does."""

from __future__ import annotations

from odoo_devstack.kubectl import format_table


def test_printer_columns_are_aligned_and_wide_columns_hidden() -> None:
    table = {
        "columnDefinitions": [
            {"name": "Name", "priority": 0},
            {"name": "Phase", "priority": 0},
            {"name": "Detail", "priority": 1},
        ],
        "rows": [
            {"cells": ["acme", "Provisioning", "x"]},
            {"cells": ["globex-finance", None, "y"]},
        ],
    }
    assert format_table(table).splitlines() == [
        "NAME             PHASE",
        "acme             Provisioning",
        "globex-finance",
    ]
