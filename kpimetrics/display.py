"""A KPI's value and its change as a person reads them: the one place that formats numbers for people.

`status`, the terminal scorecard, `diff`, notification messages and the scorecard site all call these
(SPEC §10 "Readable by the people accountable", "Percent KPIs"):

- a value by its KPI's unit: `percent` values are fractions shown as `35.2%`; `seconds` as `12.5 s`;
  `currency` values carry their ISO 4217 code after the number, `1,234 EUR` (a code, not a symbol: `$` is
  many currencies' sign, a code is one; the KPI's `currency`, else kpimetrics.yml's);
- a change between two periods: a percent KPI's in percentage points (`+0.4 pt`: 35.0% to 35.4%), never a
  percentage of a percentage; any other KPI's relative to the earlier value (`+3.2%`).

Pure functions of numbers and strings: nothing here reads a table or the project.
"""
from __future__ import annotations

import math

__all__ = ["PERCENT", "CURRENCY", "is_percent", "format_value", "format_change", "format_change_long",
           "format_points", "change_of"]

PERCENT = "percent"  # the unit whose values are fractions (0.352 is 35.2%) and whose changes are points
CURRENCY = "currency"  # the unit whose values carry a currency


def is_percent(unit: str | None) -> bool:
    return unit == PERCENT


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(v: float, unit: str | None) -> str:
    if unit == PERCENT:
        return f"{v:.1%}"
    if unit == "seconds":
        return f"{v:,.0f} s" if abs(v) >= 100 else f"{v:,.1f} s"
    if unit == CURRENCY or v == int(v):
        return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:,.2f}"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 10 else f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.2f}"
    return f"{v:,}"


def format_value(v, unit: str | None = None, currency: str | None = None) -> str:
    """A value by its KPI's unit: `35.2%`, `12.5 s`, `1,234 EUR` (a currency only on a `currency` KPI); `–` for none."""
    if v is None:
        return "–"
    if not _finite(v):
        return str(v)
    text = _number(v, unit)
    return f"{text} {currency}" if currency and unit == CURRENCY else text


def format_points(change: float) -> str:
    """A change of a percent KPI (a difference of fractions) in percentage points: 0.004 -> '+0.4 pt'."""
    points = round(change * 100, 1) + 0.0  # + 0.0: no '-0.0 pt'
    return f"{points:+.1f} pt"


def change_of(old: float | None, new: float | None) -> tuple[float | None, float | None]:
    """(change, change_pct) from one value to the next, as kpi_status holds them: change_pct is relative to
    the earlier value's size, None when that is 0 or either value is missing."""
    if not (_finite(old) and _finite(new)):
        return None, None
    change = new - old
    return change, (change / abs(old) if old else None)


def format_change(change: float | None, change_pct: float | None = None, unit: str | None = None) -> str:
    """A change for a column of changes: points for a percent KPI (`+0.4 pt`), else relative (`+3.2%`);
    '' when there is nothing to say (no earlier value, or an earlier value of 0 for a relative change)."""
    if unit == PERCENT:
        return format_points(change) if _finite(change) else ""
    return f"{change_pct:+.1%}" if _finite(change_pct) else ""


def format_change_long(change: float | None, change_pct: float | None = None, unit: str | None = None,
                       currency: str | None = None) -> str:
    """A change in a sentence: a percent KPI's in points (`+0.4 pt`); any other's as the amount and, where it has
    one, the relative change (`+1,234 EUR (+3.2%)`); '' without a change."""
    if not _finite(change):
        return ""
    if unit == PERCENT:
        return format_points(change)
    text = ("+" if change > 0 else "") + format_value(change, unit, currency)
    relative = format_change(change, change_pct, unit)
    return f"{text} ({relative})" if relative else text
