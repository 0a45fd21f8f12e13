"""The roll-up, value formatting and the terminal scorecard.

The status words, their order and their looks are `status.Status`'s. The roll-up rule
(SPEC §6): a strategy or priority takes the worst latest-complete status of its KPIs
(`status.ROLLUP_ORDER`); the statuses that judge nothing (`status.BESIDE`) are counted
beside it, never mixed into it.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .display import format_change, format_value
from .status import BESIDE, FAIL_ON, LOOKS, ROLLUP_ORDER, Status, course, look

__all__ = ["look", "badge", "Rollup", "rollup", "failing", "format_value", "format_change", "sparkline", "render"]


def badge(status: str | None) -> str:
    """Rich markup: coloured symbol and text."""
    s = look(status)
    return f"[{s.colour}]{s.symbol} {s.text}[/{s.colour}]"


@dataclass(frozen=True)
class Rollup:
    status: Status  # the worst of ROLLUP_ORDER present; else the first of BESIDE present, else the last
    counts: dict[Status, int]

    @property
    def beside(self) -> dict[Status, int]:
        """The counts of BESIDE shown next to the roll-up status."""
        return {k: self.counts[k] for k in BESIDE if self.counts.get(k)}


def rollup(statuses: Iterable[str]) -> Rollup:
    counts = Counter(statuses)
    worst = next((s for s in ROLLUP_ORDER + BESIDE if counts.get(s)), BESIDE[-1])
    return Rollup(worst, {s: counts.get(s, 0) for s in LOOKS})


def failing(rows: list[dict], fail_on: str | None) -> list[dict]:
    """The rows `--fail-on` fails the command for."""
    bad = FAIL_ON.get(fail_on, ()) if fail_on else ()
    return [r for r in rows if r["status"] in bad]


SPARK_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Iterable[float | None]) -> str:
    """One bar per period, scaled between the series' min and max; a gap is a space."""
    values = list(values)
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low
    top = len(SPARK_BARS) - 1

    def bar(v):
        if v is None:
            return " "
        return SPARK_BARS[round((v - low) / span * top) if span else top // 2]

    return "".join(bar(v) for v in values)


# --- the terminal scorecard ---------------------------------------------------------

def _group_key(r: dict):
    return (r.get("priority") or "~", r.get("strategy") or "~", r["name"])


def render(console: Console, rows: list[dict], units: dict[str, str | None], title: str | None) -> None:
    """Rows of `Project.status` grouped by priority and strategy, each group with its roll-up."""
    wide = console.width >= 100
    table = Table(title=title or "KPIs", title_justify="left", pad_edge=False, box=None, header_style="bold")
    for name, justify in (("KPI", "left"), ("period", "left"), ("value", "right"), ("target", "right"),
                          ("status", "left"), ("trend", "left")):
        table.add_column(name, justify=justify, no_wrap=True)
    if wide:
        table.add_column("change", justify="right", no_wrap=True)
    forecasts = any(r.get("forecast") for r in rows)  # kpi_forecast's headline, added by `status` (cli.py)
    if forecasts:
        table.add_column("forecast", justify="left", no_wrap=True)
    width = len(table.columns)
    ordered = sorted(rows, key=_group_key)
    by_priority: dict = {}
    by_strategy: dict = {}
    for r in ordered:
        by_priority.setdefault(r.get("priority"), []).append(r["status"])
        by_strategy.setdefault((r.get("priority"), r.get("strategy")), []).append(r["status"])
    last_priority = last_strategy = object()
    for r in ordered:
        priority, strategy = r.get("priority"), r.get("strategy")
        if priority != last_priority:
            heading = escape(priority or "performance standards")
            table.add_row(f"[bold]{heading}[/bold]", *_group_cells(by_priority[priority], width))
            last_priority = priority
        if strategy != last_strategy and strategy:
            table.add_row(f" [italic]{escape(strategy)}[/italic]", *_group_cells(by_strategy[(priority, strategy)], width))
        last_strategy = strategy
        unit = units.get(r["name"])
        period = f"{r['grain']} {r['period_start']}" if r.get("period_start") else r["grain"]
        cells = ["   " + escape(r["name"]), period, format_value(r["value"], unit), format_value(r["target"], unit),
                 badge(r["status"]), f"[dim]{sparkline(r.get('recent_values') or [])}[/dim]"]
        if wide:
            cells.append(format_change(r.get("change"), r.get("change_pct"), unit))
        if forecasts:
            cells.append(forecast_cell(r.get("forecast"), unit, wide))
        table.add_row(*cells)
    console.print(table)


def forecast_cell(f: dict | None, unit: str | None, wide: bool = True) -> str:
    """Rich markup: on course / off course in the forecast status's colour and symbol, after the forecast and the
    horizon's last day where the terminal is wide enough."""
    if not f:
        return ""
    s = look(f["forecast_status"])
    said = f"[{s.colour}]{s.symbol} {course(f['forecast_status']) or s.text}[/{s.colour}]"
    if not wide:
        return said
    last_day = dt.date.fromisoformat(str(f["horizon_end"])) - dt.timedelta(days=1)
    return f"{format_value(f['forecast'], unit)} by {last_day.isoformat()} {said}"


def _group_cells(statuses: list[str], width: int) -> list[str]:
    """A group heading's cells: its roll-up in the status column, the counts beside it."""
    r = rollup(statuses)
    beside = ", ".join(f"{n} {look(s).text}" for s, n in r.beside.items())
    cells = ["", "", "", badge(r.status), f"[dim]{beside}[/dim]" if beside else ""]
    return cells + [""] * (width - 1 - len(cells))
