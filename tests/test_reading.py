"""Reading as an executive would (SPEC §10 "Readable by the people accountable", "Percent KPIs"): values with their
unit and currency, changes of percent KPIs in points, labels for priorities and strategies, YAML order, and what a
target change does to recent statuses."""
from __future__ import annotations

import pytest

from kpimetrics.display import change_of, format_change, format_change_long, format_value


@pytest.mark.parametrize("value, unit, currency, shown", [
    (0.352, "percent", None, "35.2%"),
    (0.352, "percent", "EUR", "35.2%"),  # a currency only on a currency KPI
    (1234.4, "currency", "EUR", "1,234 EUR"),
    (-1234.4, "currency", "USD", "-1,234 USD"),
    (12.345, "currency", "EUR", "12.35 EUR"),
    (1234.4, "currency", None, "1,234"),
    (1234, "count", "EUR", "1,234"),
    (12.5, "seconds", None, "12.5 s"),
    (None, "currency", "EUR", "–"),
])
def test_a_value_reads_with_its_unit_and_currency(value, unit, currency, shown):
    assert format_value(value, unit, currency) == shown


def test_a_percent_kpi_changes_in_points_and_others_relatively():
    change, pct = change_of(0.350, 0.354)
    assert format_change(change, pct, "percent") == "+0.4 pt"  # not +1.1%, a percentage of a percentage
    assert format_change_long(change, pct, "percent") == "+0.4 pt"
    change, pct = change_of(0.354, 0.350)
    assert format_change(change, pct, "percent") == "-0.4 pt"
    assert format_change(*change_of(0.35, 0.35), "percent") == "+0.0 pt"  # never '-0.0 pt'
    change, pct = change_of(1000, 1032)
    assert format_change(change, pct, "currency") == "+3.2%"
    assert format_change_long(change, pct, "currency", "EUR") == "+32 EUR (+3.2%)"
    change, pct = change_of(-200, -100)  # relative to the earlier value's size: up is up
    assert format_change(change, pct, "number") == "+50.0%"
    assert format_change(*change_of(0, 10), "number") == ""  # no relative change from 0
    assert format_change_long(*change_of(0, 10), "number") == "+10"
    assert format_change(*change_of(None, 10), "percent") == ""
