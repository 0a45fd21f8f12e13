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

def _groups(rows: list[dict], labels: dict[str, str]) -> list[dict]:
    """The rows in reading order: priorities and strategies as strategy.yml lists them (`labels`' order), each
    group's KPIs in their YAML order (the rows' order); a priority or strategy not in strategy.yml after those
    that are, the performance standards (no priority) last."""
    place = {name: i for i, name in enumerate(labels)}
    last = len(place)

    def key(indexed):
        i, r = indexed
        priority, strategy = r.get("priority"), r.get("strategy")
        return (priority is None, place.get(priority, last), priority or "", place.get(strategy, last), strategy or "", i)

    return [r for _, r in sorted(enumerate(rows), key=key)]


def render(console: Console, rows: list[dict], title: str | None, labels: dict[str, str] | None = None) -> None:
    """Rows of `Project.status` grouped by priority and strategy, each group with its roll-up. `labels`: what a
    reader is shown for each priority and strategy (ProjectDef.labels), in strategy.yml order. Each row's `unit` and
    `currency` format its numbers (display.format_value)."""
    labels = labels or {}
    wide = console.width >= 100
    table = Table(title=title or "KPIs", title_justify="left", pad_edge=False, box=None, header_style="bold")
    for name, justify in (("KPI", "left"), ("period", "left"), ("value", "right"), ("target", "right"),
                          ("status", "left"), ("trend", "left")):
        table.add_column(name, justify=justify, no_wrap=True)
    if wide:
        table.add_column("change", justify="right", no_wrap=True)
    forecasts = any(r.get("forecast") for r in rows)  # kpi_forecast's headline (Project.status)
    if forecasts:
        table.add_column("forecast", justify="left", no_wrap=True)
    width = len(table.columns)
    ordered = _groups(rows, labels)
    by_priority: dict = {}
    by_strategy: dict = {}
    for r in ordered:
        by_priority.setdefault(r.get("priority"), []).append(r["status"])
        by_strategy.setdefault((r.get("priority"), r.get("strategy")), []).append(r["status"])
    last_priority = last_strategy = object()
    for r in ordered:
        priority, strategy = r.get("priority"), r.get("strategy")
        if priority != last_priority:
            heading = escape(labels.get(priority, priority) if priority else "performance standards")
            table.add_row(f"[bold]{heading}[/bold]", *_group_cells(by_priority[priority], width))
            last_priority = priority
        if strategy != last_strategy and strategy:
            table.add_row(f" [italic]{escape(labels.get(strategy, strategy))}[/italic]",
                          *_group_cells(by_strategy[(priority, strategy)], width))
        last_strategy = strategy
        unit, currency = r.get("unit"), r.get("currency")
        period = f"{r['grain']} {r['period_start']}" if r.get("period_start") else r["grain"]
        cells = ["   " + escape(r["name"]), period, format_value(r["value"], unit, currency),
                 format_value(r["target"], unit, currency), badge(r["status"]),
                 f"[dim]{sparkline(r.get('recent_values') or [])}[/dim]"]
        if wide:
            cells.append(format_change(r.get("change"), r.get("change_pct"), unit))
        if forecasts:
            cells.append(forecast_cell(r.get("forecast"), unit, wide, currency))
        table.add_row(*cells)
    console.print(table)


def forecast_cell(f: dict | None, unit: str | None, wide: bool = True, currency: str | None = None) -> str:
    """Rich markup: on course / off course in the forecast status's colour and symbol, after the forecast and the
    horizon's last day where the terminal is wide enough."""
    if not f:
        return ""
    s = look(f["forecast_status"])
    said = f"[{s.colour}]{s.symbol} {course(f['forecast_status']) or s.text}[/{s.colour}]"
    if not wide:
        return said
    last_day = dt.date.fromisoformat(str(f["horizon_end"])) - dt.timedelta(days=1)
    return f"{format_value(f['forecast'], unit, currency)} by {last_day.isoformat()} {said}"


def _group_cells(statuses: list[str], width: int) -> list[str]:
    """A group heading's cells: its roll-up in the status column, the counts beside it."""
    r = rollup(statuses)
    beside = ", ".join(f"{n} {look(s).text}" for s, n in r.beside.items())
    cells = ["", "", "", badge(r.status), f"[dim]{beside}[/dim]" if beside else ""]
    return cells + [""] * (width - 1 - len(cells))
