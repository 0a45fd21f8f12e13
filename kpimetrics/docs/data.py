"""What the scorecard shows, read from the output tables (as a BI tool sees them) and the manifest.

`read_tables(reader)` fetches the rows through the output reader (`outputs.OutputReader`);
`build_site(project, rows, manifest, sql_of, owners)` turns them into a `Site`: typed, with no HTML in it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import combinations
from ..outputs import (CatalogRow, CheckInRow, DefinitionRow, ForecastRow, OutputReader, RunRow, StatusRow, StrategyRow,
                       headline_forecast)
from ..scorecard import Rollup, rollup
from ..status import Status


@dataclass(frozen=True)
class Point:
    """One period of a KPI's total."""

    period_start: dt.date
    period_end: dt.date
    value: float | None
    target: float | None
    threshold: float | None
    status: Status
    is_complete: bool
    attainment: float | None = None
    change_pct: float | None = None
    change: float | None = None  # a percent KPI's change is shown in points (display.format_change)


@dataclass(frozen=True)
class Projection:
    """Where the series is heading (kpi_forecast, SPEC §10): drawn dotted from the last complete value."""

    horizon: str  # 'period' | 'deadline'
    horizon_end: dt.date  # exclusive, as period_end
    forecast: float | None
    target: float | None
    status: Status
    method: str | None


@dataclass(frozen=True)
class DefinitionChange:
    """A new definition_hash (kpi_definitions), placed on the period its first run published: the one holding the
    day it was first seen, or the series' last period when that day lies past it (a run with an earlier --as-of)."""

    period_start: dt.date
    definition_hash: str
    run_id: int | None
    seen_at: dt.datetime | None


@dataclass(frozen=True)
class Series:
    grain: str
    points: list[Point]
    projection: Projection | None = None
    changes: list[DefinitionChange] = field(default_factory=list)

    @property
    def latest_complete(self) -> Point | None:
        return next((p for p in reversed(self.points) if p.is_complete), None)


@dataclass(frozen=True)
class Slice:
    dimension: str
    dimension_value: str | None
    period_start: dt.date
    value: float | None
    target: float | None
    status: Status

    @property
    def members(self) -> list[tuple[str, str]]:
        """(column, value) of each member of the slice: one for a single column's, two or more for a combination of
        dimensions' (SPEC §9: dimension 'region × channel', value 'EU · web')."""
        if not combinations.is_combination(self.dimension):
            return [(self.dimension, self.dimension_value or "")]
        return list(zip(combinations.columns(self.dimension), combinations.members(self.dimension_value or "")))

    @property
    def label(self) -> str:
        """The slice as people read it: 'region=EU', or 'region=EU · channel=web' for a combination."""
        return combinations.label(self.dimension, self.dimension_value)


@dataclass(frozen=True)
class CheckIn:
    date: dt.date
    author: str | None
    note: str


@dataclass
class KpiPage:
    name: str
    kind: str
    label: str
    description: str | None
    owner: str | None
    strategy: str | None
    priority: str | None
    indicator: str | None
    category: str | None
    unit: str | None
    direction: str | None
    grains: list[str]
    tags: list[str]
    drives: list[str]
    actions: str | None
    definition_hash: str | None
    definition: dict[str, Any] | None  # the manifest entry; None when target/ lacks it
    sql: str | None
    series: list[Series] = field(default_factory=list)
    slices: list[Slice] = field(default_factory=list)
    check_ins: list[CheckIn] = field(default_factory=list)
    driven_by: list[str] = field(default_factory=list)
    currency: str | None = None  # the manifest's (kpimetrics.yml's or the KPI's): shown with every currency value
    # a metric KPI's metric (the manifest's `metric`: name, type, label, description, defined_at, definition)
    metric: dict[str, Any] | None = None

    @property
    def headline_series(self) -> Series | None:
        """The series of the first listed grain, the one `status` and the roll-up use (SPEC §6): a KPI
        with no rows at that grain has no data (Status.NO_DATA), even if another grain has rows."""
        return next((s for s in self.series if self.grains and s.grain == self.grains[0]), None)

    @property
    def headline(self) -> Point | None:
        s = self.headline_series
        return s.latest_complete if s else None

    @property
    def status(self) -> Status:
        h = self.headline
        return h.status if h else Status.NO_DATA


@dataclass
class StrategyNode:
    name: str
    description: str | None
    owner: str | None
    starts: dt.date | None
    ends: dt.date | None
    priority: str
    kpis: list[KpiPage] = field(default_factory=list)
    label: str | None = None  # the manifest's `label` (SPEC §10)

    @property
    def display(self) -> str:
        return self.label or self.name

    @property
    def rollup(self) -> Rollup:
        return rollup(k.status for k in self.kpis)


@dataclass
class PriorityNode:
    name: str
    description: str | None
    owner: str | None
    strategies: list[StrategyNode] = field(default_factory=list)
    label: str | None = None

    @property
    def display(self) -> str:
        return self.label or self.name

    @property
    def kpis(self) -> list[KpiPage]:
        return [k for s in self.strategies for k in s.kpis]

    @property
    def rollup(self) -> Rollup:
        return rollup(k.status for k in self.kpis)


@dataclass
class Owner:
    key: str  # as KPIs write it: a registry name or an email
    full_name: str | None = None
    email: str | None = None
    team: str | None = None
    kpis: list[KpiPage] = field(default_factory=list)
    strategies: list[StrategyNode] = field(default_factory=list)
    priorities: list[PriorityNode] = field(default_factory=list)

    @property
    def display(self) -> str:
        return self.full_name or self.key


@dataclass
class Site:
    project: str
    mission: str | None
    priorities: list[PriorityNode]
    kpis: dict[str, KpiPage]
    owners: dict[str, Owner]
    run: RunRow | None
    owner_keys: dict[str, str] = field(default_factory=dict)  # a name or email as written -> owners' key
    as_of: dt.date | None = None  # the date the latest run judged periods at (kpi_forecast.as_of), when known
    labels: dict[str, str] = field(default_factory=dict)  # a priority's or strategy's name -> its label

    def label_of(self, name: str | None) -> str | None:
        """What a reader is shown for a priority or strategy named in a KPI: its label, else its name."""
        return self.labels.get(name or "", name)

    @property
    def values_as_of(self) -> dt.date | None:
        """The date the values shown were judged at: the run's as-of (kpi_forecast), else the day its run finished."""
        if self.as_of:
            return self.as_of
        return self.run.finished_at.date() if self.run and self.run.finished_at else None

    def owner(self, key: str | None) -> Owner | None:
        return self.owners.get(self.owner_keys.get(key or "", ""))

    @property
    def standards(self) -> list[KpiPage]:
        return [k for k in self.kpis.values() if k.kind == "standard"]

    @property
    def unlinked(self) -> list[KpiPage]:
        """KPIs whose strategy is not in the tree (the catalog outlived a strategy)."""
        linked = {k.name for p in self.priorities for k in p.kpis}
        return [k for k in self.kpis.values() if k.kind != "standard" and k.name not in linked]

    @property
    def strategies(self) -> list[StrategyNode]:
        return [s for p in self.priorities for s in p.strategies]

    @property
    def counts(self) -> dict[str, int]:
        return rollup(k.status for k in self.kpis.values()).counts


# --- reading ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SiteRows:
    """The rows the site needs, by table (slices at their latest complete period only)."""

    catalog: list[CatalogRow]
    strategies: list[StrategyRow]
    totals: list[StatusRow]
    slices: list[StatusRow]
    check_ins: list[CheckInRow]
    runs: list[RunRow]
    forecasts: list[ForecastRow] = field(default_factory=list)
    definitions: list[DefinitionRow] = field(default_factory=list)


def read_tables(out: OutputReader) -> SiteRows:
    out.require(CatalogRow, StrategyRow, StatusRow)
    return SiteRows(out.catalog(), out.strategies(), out.totals(), out.latest_slices(), out.check_ins(), out.runs(),
                    out.forecasts(), out.definitions())


# --- assembling ---------------------------------------------------------------------------

def _series(rows: list[StatusRow], forecasts: list[ForecastRow] = (), definitions: list[DefinitionRow] = ()
            ) -> list[Series]:
    by_grain: dict[str, list[Point]] = {}
    for r in rows:
        by_grain.setdefault(r.grain, []).append(Point(
            r.period_start, r.period_end, r.value, r.target, r.at_risk_threshold, r.status, bool(r.is_complete),
            r.attainment, r.change_pct, r.change,
        ))
    return [Series(g, pts, _projection(forecasts, g), _changes(pts, definitions)) for g, pts in by_grain.items()]


def _changes(points: list[Point], definitions: list[DefinitionRow]) -> list[DefinitionChange]:
    """Every definition_hash after a KPI's first, on the period of the series its first run published."""
    if not points:
        return []
    changes = []
    for d in sorted(definitions, key=lambda d: (d.first_run_id or 0, d.first_seen_at or dt.datetime.min))[1:]:
        day = d.first_seen_at.date() if d.first_seen_at else points[-1].period_start
        at = next((p for p in reversed(points) if p.period_start <= day), points[0])
        changes.append(DefinitionChange(at.period_start, d.definition_hash, d.first_run_id, d.first_seen_at))
    return changes


def _projection(forecasts: list[ForecastRow], grain: str) -> Projection | None:
    """The forecast `status` shows for the grain (the deadline's, else the current period's), if any."""
    f = headline_forecast(list(forecasts), forecasts[0].name, grain) if forecasts else None
    if f is None or f.forecast is None:
        return None
    return Projection(f.horizon, f.horizon_end, f.forecast, f.target_at_horizon, f.forecast_status, f.method)


def _by_name(rows: list) -> dict[str, list]:
    """Rows grouped by KPI, in their order: one pass, not one scan of the table per KPI."""
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r.name, []).append(r)
    return out


def _kpi_page(row: CatalogRow, definition: dict | None, sql: str | None, totals: list[StatusRow],
              slices: list[StatusRow], check_ins: list[CheckInRow], forecasts: list[ForecastRow] = (),
              definitions: list[DefinitionRow] = ()) -> KpiPage:
    name = row.name
    page = KpiPage(
        name=name, kind=row.kind, label=row.label or name, description=row.description, owner=row.owner,
        strategy=row.strategy, priority=row.priority, indicator=row.indicator, category=row.category,
        unit=row.unit, direction=row.direction, grains=list(row.grains), tags=list(row.tags),
        drives=list(row.drives), actions=row.actions, definition_hash=row.definition_hash,
        definition=definition, sql=sql, currency=(definition or {}).get("currency"),
        metric=m if isinstance(m := (definition or {}).get("metric"), dict) else None,
    )
    page.series = _series(totals, forecasts, definitions)
    if page.headline:
        grain = page.headline_series.grain
        page.slices = [Slice(r.dimension, r.dimension_value, r.period_start, r.value, r.target, r.status)
                       for r in slices if r.grain == grain]
    page.check_ins = [CheckIn(r.date, r.author, r.note) for r in check_ins]
    return page


def _yaml_order(definition: dict | None, name: str) -> tuple:
    """KPIs in the order the YAML lists them (SPEC §10), by their manifest location `kpis/x.yml:LINE:COL`
    (the catalog and the manifest are sorted by name); those without one last, by name."""
    path, _, rest = ((definition or {}).get("location") or "").partition(":")
    line = rest.partition(":")[0]
    return (0, path, int(line), name) if path and line.isdigit() else (1, "", 0, name)


def _labels(manifest: dict) -> dict[str, str]:
    """The `label` of each priority and strategy, from the manifest (kpi_strategy has no label column)."""
    labels = {}
    for p in manifest.get("priorities") or []:
        labels[p.get("name")] = p.get("label") or p.get("name")
        for s in p.get("strategies") or []:
            labels[s.get("name")] = s.get("label") or s.get("name")
    return {k: v for k, v in labels.items() if k and v}


def _tree(strategy_rows: list[StrategyRow], kpis: dict[str, KpiPage], labels: dict[str, str] | None = None
          ) -> tuple[str | None, list[PriorityNode]]:
    labels = labels or {}
    mission = next((r.name for r in strategy_rows if r.level == "mission"), None)
    priorities = {r.name: PriorityNode(r.name, r.description, r.owner, label=labels.get(r.name))
                  for r in strategy_rows if r.level == "priority"}
    by_strategy: dict[str, list[KpiPage]] = {}
    for k in kpis.values():
        if k.kind != "standard":
            by_strategy.setdefault(k.strategy, []).append(k)
    for r in strategy_rows:
        if r.level == "strategy" and r.parent in priorities:
            node = StrategyNode(r.name, r.description, r.owner, r.starts, r.ends, r.parent,
                                by_strategy.get(r.name, []), labels.get(r.name))
            priorities[r.parent].strategies.append(node)
    return mission, list(priorities.values())


def _owners(kpis: dict[str, KpiPage], priorities: list[PriorityNode], registry: list
            ) -> tuple[dict[str, Owner], dict[str, str]]:
    known = {}
    for o in registry or []:
        for key in filter(None, (o.name, o.email)):
            known[key] = o
    owners: dict[str, Owner] = {}
    keys: dict[str, str] = {}

    def owner(key: str) -> Owner:
        o = known.get(key)
        canonical = o.name if o else key  # one page per person, whether KPIs name them or their email
        keys[key] = canonical
        if canonical not in owners:
            owners[canonical] = Owner(canonical, *((o.full_name, o.email, o.team) if o else (None, None, None)))
        return owners[canonical]

    for k in kpis.values():
        if k.owner:
            owner(k.owner).kpis.append(k)
    for p in priorities:
        if p.owner:
            owner(p.owner).priorities.append(p)
        for s in p.strategies:
            if s.owner:
                owner(s.owner).strategies.append(s)
    return dict(sorted(owners.items())), keys


def build_site(project: str, rows: SiteRows, manifest: dict, sql_of: Callable[[str], str | None],
               owner_registry: list | None = None) -> Site:
    definitions = manifest.get("kpis", {})
    totals, slices, check_ins = _by_name(rows.totals), _by_name(rows.slices), _by_name(rows.check_ins)
    forecasts, hashes = _by_name(rows.forecasts), _by_name(rows.definitions)
    kpis = {}
    for r in sorted(rows.catalog, key=lambda r: _yaml_order(definitions.get(r.name), r.name)):
        n = r.name
        kpis[n] = _kpi_page(r, definitions.get(n), sql_of(n), totals.get(n, []), slices.get(n, []), check_ins.get(n, []),
                            forecasts.get(n, []), hashes.get(n, []))
    for k in kpis.values():
        for d in k.drives:
            if d in kpis:
                kpis[d].driven_by.append(k.name)
    labels = _labels(manifest)
    mission, priorities = _tree(rows.strategies, kpis, labels)
    run = rows.runs[-1] if rows.runs else None
    owners, keys = _owners(kpis, priorities, owner_registry or [])
    as_of = max((f.as_of for f in rows.forecasts if f.as_of), default=None)
    return Site(project, mission, priorities, kpis, owners, run, keys, as_of, labels)
