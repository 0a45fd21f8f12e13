"""What the scorecard shows, read from the output tables (as a BI tool sees them) and the manifest.

`read_tables(adapter, schema)` fetches the rows; `build_site(project, rows, manifest, sql_of, owners)`
turns them into a `Site`: typed, with no HTML in it. Queries are sqlglot trees rendered in the adapter's dialect.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlglot import exp

from .. import tables
from ..errors import ConfigError
from ..scorecard import Rollup, rollup
from ..sqlgen import col, lit


@dataclass(frozen=True)
class Point:
    """One period of a KPI's total."""

    period_start: dt.date
    period_end: dt.date
    value: float | None
    target: float | None
    threshold: float | None
    status: str
    is_complete: bool
    attainment: float | None = None
    change_pct: float | None = None


@dataclass(frozen=True)
class Series:
    grain: str
    points: list[Point]

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
    status: str


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

    @property
    def headline_series(self) -> Series | None:
        """The series of the first listed grain, the one `status` and the roll-up use (SPEC §6): a KPI
        with no rows at that grain is `no_data`, even if another grain has rows."""
        return next((s for s in self.series if self.grains and s.grain == self.grains[0]), None)

    @property
    def headline(self) -> Point | None:
        s = self.headline_series
        return s.latest_complete if s else None

    @property
    def status(self) -> str:
        h = self.headline
        return h.status if h else "no_data"


@dataclass
class StrategyNode:
    name: str
    description: str | None
    owner: str | None
    starts: dt.date | None
    ends: dt.date | None
    priority: str
    kpis: list[KpiPage] = field(default_factory=list)

    @property
    def rollup(self) -> Rollup:
        return rollup(k.status for k in self.kpis)


@dataclass
class PriorityNode:
    name: str
    description: str | None
    owner: str | None
    strategies: list[StrategyNode] = field(default_factory=list)

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
    run: dict[str, Any] | None
    owner_keys: dict[str, str] = field(default_factory=dict)  # a name or email as written -> owners' key

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

def _select(schema: str, table: tables.Table, where: exp.Expression | None = None, order: tuple[str, ...] = ()):
    q = exp.select(*[col(c) for c in table.column_names]).from_(tables.qualified(schema, table.name))
    if where is not None:
        q = q.where(where)
    return q.order_by(*[col(c) for c in order]) if order else q


def _latest_slices(schema: str) -> exp.Query:
    """Every slice row at the latest complete period of its KPI and grain."""
    latest = (
        exp.select(col("name"), col("grain"), exp.alias_(exp.Max(this=col("period_start")), "period_start", quoted=True))
        .from_(tables.qualified(schema, "kpi_status"))
        .where(exp.and_(exp.EQ(this=col("dimension"), expression=lit("")), col("is_complete")))
        .group_by(col("name"), col("grain"))
    )
    on = exp.and_(*[exp.EQ(this=col(c, "s"), expression=col(c, "l")) for c in ("name", "grain", "period_start")])
    return (
        exp.select(*[col(c, "s") for c in tables.STATUS.column_names])
        .from_(tables.qualified(schema, "kpi_status", alias="s"))
        .join(exp.Subquery(this=latest, alias=exp.TableAlias(this=exp.to_identifier("l", quoted=True))), on=on)
        .where(exp.NEQ(this=col("dimension", "s"), expression=lit("")))
        .order_by(col("name", "s"), col("dimension", "s"), col("dimension_value", "s"))
    )


def read_tables(adapter, schema: str) -> dict[str, list[dict]]:
    """The rows the site needs, by table (slices at their latest complete period only)."""
    present = set(adapter.tables(schema))
    missing = [t.name for t in (tables.CATALOG, tables.STRATEGY, tables.STATUS) if t.name not in present]
    if missing:
        raise ConfigError(f"no output tables in schema '{schema}' yet ({', '.join(missing)} missing): "
                          "run `kpimetrics run` first")
    queries = {
        "catalog": _select(schema, tables.CATALOG, order=("name",)),
        "strategy": _select(schema, tables.STRATEGY),
        "totals": _select(schema, tables.STATUS, exp.EQ(this=col("dimension"), expression=lit("")),
                          ("name", "grain", "period_start")),
        "slices": _latest_slices(schema),
        "check_ins": _select(schema, tables.CHECK_INS, order=("name", "date")),
        "runs": _select(schema, tables.RUNS, order=("run_id",)),
    }
    out = {}
    for key, q in queries.items():
        cols = [c.alias_or_name for c in q.selects]
        out[key] = [dict(zip(cols, r)) for r in adapter.fetchall(q.sql(dialect=adapter.dialect))]
    return out


# --- assembling ---------------------------------------------------------------------------

def _json_list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _series(rows: list[dict]) -> list[Series]:
    by_grain: dict[str, list[Point]] = {}
    for r in rows:
        by_grain.setdefault(r["grain"], []).append(Point(
            r["period_start"], r["period_end"], r["value"], r["target"], r["at_risk_threshold"], r["status"],
            bool(r["is_complete"]), r["attainment"], r["change_pct"],
        ))
    return [Series(g, pts) for g, pts in by_grain.items()]


def _by_name(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows grouped by KPI, in their order: one pass, not one scan of the table per KPI."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["name"], []).append(r)
    return out


def _kpi_page(row: dict, definition: dict | None, sql: str | None, totals: list[dict], slices: list[dict],
              check_ins: list[dict]) -> KpiPage:
    name = row["name"]
    page = KpiPage(
        name=name, kind=row["kind"], label=row["label"] or name, description=row["description"], owner=row["owner"],
        strategy=row["strategy"], priority=row["priority"], indicator=row["indicator"], category=row["category"],
        unit=row["unit"], direction=row["direction"], grains=_json_list(row["grains"]), tags=_json_list(row["tags"]),
        drives=_json_list(row["drives"]), actions=row["actions"], definition_hash=row["definition_hash"],
        definition=definition, sql=sql,
    )
    page.series = _series(totals)
    if page.headline:
        grain = page.headline_series.grain
        page.slices = [Slice(r["dimension"], r["dimension_value"], r["period_start"], r["value"], r["target"],
                             r["status"]) for r in slices if r["grain"] == grain]
    page.check_ins = [CheckIn(r["date"], r["author"], r["note"]) for r in check_ins]
    return page


def _tree(strategy_rows: list[dict], kpis: dict[str, KpiPage]) -> tuple[str | None, list[PriorityNode]]:
    mission = next((r["name"] for r in strategy_rows if r["level"] == "mission"), None)
    priorities = {r["name"]: PriorityNode(r["name"], r["description"], r["owner"])
                  for r in strategy_rows if r["level"] == "priority"}
    by_strategy: dict[str, list[KpiPage]] = {}
    for k in kpis.values():
        if k.kind != "standard":
            by_strategy.setdefault(k.strategy, []).append(k)
    for r in strategy_rows:
        if r["level"] == "strategy" and r["parent"] in priorities:
            node = StrategyNode(r["name"], r["description"], r["owner"], r["starts"], r["ends"], r["parent"],
                                by_strategy.get(r["name"], []))
            priorities[r["parent"]].strategies.append(node)
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


def build_site(project: str, rows: dict[str, list[dict]], manifest: dict, sql_of: Callable[[str], str | None],
               owner_registry: list | None = None) -> Site:
    definitions = manifest.get("kpis", {})
    totals, slices, check_ins = (_by_name(rows[t]) for t in ("totals", "slices", "check_ins"))
    kpis = {}
    for r in rows["catalog"]:
        n = r["name"]
        kpis[n] = _kpi_page(r, definitions.get(n), sql_of(n), totals.get(n, []), slices.get(n, []), check_ins.get(n, []))
    for k in kpis.values():
        for d in k.drives:
            if d in kpis:
                kpis[d].driven_by.append(k.name)
    mission, priorities = _tree(rows["strategy"], kpis)
    run = rows["runs"][-1] if rows["runs"] else None
    owners, keys = _owners(kpis, priorities, owner_registry or [])
    return Site(project, mission, priorities, kpis, owners, run, keys)
