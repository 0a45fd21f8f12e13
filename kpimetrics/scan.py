"""What a fused scan computes and how, decided before any SQL is built: the scan's layout.

`scan_layout` takes a scan's KPIs and grains (and an incremental run's starts, and the kept pre-aggregate's
choices) and decides everything `sqlgen.render_scan` then turns into one query: the base grain the rows are
cut into, the slices, which aggregations there are and of which kind, which of them roll up from the shared
pre-aggregate (`__pp`), where each grain's spine of periods comes from, from when the rows are read, and the
CTEs in their order. `ScanLayout.describe()` prints it, so a change of plan shows in review
(tests/snapshots/scans/) as a change of generated SQL does.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from sqlglot import exp

from . import calendar as cal_
from .config import Calendar
from .planner import KpiPlan, Relation

if TYPE_CHECKING:
    from .sqlgen import KeptPreAggregate

# to-date count(DISTINCT x) KPIs per aggregation over partials (their branches make its size quadratic in them)
FIRST_SEEN_PER_AGG = 16

# an aggregate whose per-period results combine into the window's: sum of sums, sum of counts, ...
REAGGREGATE: dict[type, type] = {exp.Sum: exp.Sum, exp.Count: exp.Sum, exp.Min: exp.Min, exp.Max: exp.Max}

@dataclass(frozen=True)
class ScanKpi:
    plan: KpiPlan
    grain: str
    since: dt.date | None = None  # first period to output at this grain; None: all periods


# --- which KPIs share an aggregation ----------------------------------------------

def _aggregates(pl: KpiPlan) -> list[exp.AggFunc]:
    trees = (pl.measure, pl.numerator, pl.denominator)
    return [a for t in trees if t is not None for a in t.find_all(exp.AggFunc)]


def additive(agg: exp.AggFunc) -> bool:
    return (type(agg) in REAGGREGATE or type(agg) is exp.Avg) and agg.find(exp.Distinct) is None


def distinct_count(agg: exp.AggFunc) -> bool:
    """count(DISTINCT x) of one expression: over a to-date window, it counts the x first seen up to each period."""
    d = agg.this
    return type(agg) is exp.Count and isinstance(d, exp.Distinct) and len(d.expressions) == 1


def counted_distinct(pl: KpiPlan) -> str | None:
    """The one expression x that every aggregate of a KPI counts distinct (count(DISTINCT x), filtered or not), as
    SQL; None unless there is one."""
    aggs = _aggregates(pl)
    if not aggs or not all(distinct_count(a) for a in aggs):
        return None
    xs = {a.this.expressions[0].sql() for a in aggs}
    return xs.pop() if len(xs) == 1 else None


def agg_key(pl: KpiPlan, masks: bool = False) -> tuple:
    """Which aggregation computes a KPI: (window, kind, ...).

    Additive KPIs share one ("additive"), over the GROUPING SETS of all their slices (an extra sum
    per slice costs little), or rolled up from a shared pre-aggregate. Non-additive KPIs (count
    distinct, quantiles) share one too ("rows"): one GROUP BY of the rows for every KPI's total, and
    one per slice holding only the KPIs that have that slice, so a quantile is not computed for
    slices it does not have. A window over additive aggregates ("partials"), or a to-date window
    over count(distinct x) ("first_seen"), is computed from per-period partials instead of joining
    every row to every window it belongs to.

    With `masks` (dialects.DISTINCT_MASKS), KPIs without a window that only count distinct values of one
    expression x share one aggregation per x ("masks"): each x's periods as bits of a few integers, so the rows
    are grouped by x (and slice) rather than by period and x (sqlgen._render_masks).
    """
    w, aggs = pl.window, _aggregates(pl)
    if masks and w is None:
        x = counted_distinct(pl)
        if x is not None:
            return (w, "masks", x)
    if w is not None and all(additive(a) or (w[0] == "to_date" and distinct_count(a)) for a in aggs):
        if any(distinct_count(a) for a in aggs):
            return (w, "first_seen", pl.dimensions)
        return (w, "partials")
    if all(additive(a) for a in aggs):
        return (w, "additive")
    return (w, "rows")


def scan_from(kpis: list[ScanKpi], cal: Calendar) -> dt.date | None:
    """The earliest time a scan must read so that every output period's window is whole, at every grain."""
    if not kpis or any(k.since is None for k in kpis):
        return None
    starts = []
    for k in kpis:
        w = k.plan.window
        if w is None:
            starts.append(k.since)
        elif w[0] == "periods":
            starts.append(cal_.py_add_periods(k.since, -(int(w[1]) - 1), k.grain))
        else:
            starts.append(cal_.py_period_start(k.since, str(w[1]), cal))
    return min(starts)


def _used_columns(plans: list[KpiPlan]) -> list[str]:
    names: dict[str, None] = {}
    for p in plans:
        for tree in (p.measure, p.numerator, p.denominator, p.filter):
            if tree is not None:
                for c in tree.find_all(exp.Column):
                    names.setdefault(c.name, None)
    return list(names)


# --- the layout -------------------------------------------------------------------

@dataclass(frozen=True)
class Slice:
    dimension: str
    column: str  # its column in the scan's rows and aggregations (__d0, __d1, ...)
    expr: exp.Expression  # what the rows compute it from


@dataclass(frozen=True)
class Rows:
    """The one read of the model: time cut into periods of the base grain (`__p`), slices named."""
    name: str
    reads_from: dt.date | None  # a plain predicate on the time column; None: every row


@dataclass(frozen=True)
class PreAggregate:
    """The shared pre-aggregate of the additive aggregations at the base grain, with every slice they have.

    With a kept pre-aggregate (`statement`), it is computed as a statement of its own into a staging table,
    from the rows from `reads_from`; the scan reads that table, and before `fresh_from` the kept rows from
    `kept_from` on."""
    name: str
    grain: str
    slices: tuple[str, ...]  # the slices' columns it groups by
    statement: bool = False
    by_day: bool = False  # late_rows: by day, whatever the base grain would be
    reads_from: dt.date | None = None
    fresh_from: dt.date | None = None  # the first base period computed from rows; None: all are
    kept_from: dt.date | None = None
    settled_before: dt.date | None = None  # late_rows: the days before it are final


@dataclass(frozen=True)
class Bounds:
    """The first and last period (`lo`, `hi`) of a CTE's rows."""
    name: str
    source: str


@dataclass(frozen=True)
class Spine:
    """Every period of `grain` from the bounds' first to their last (numbered), from `starts_by` at the latest."""
    name: str
    grain: str
    bounds: str
    cut: bool  # the bounds are base periods, cut into the grain's; else they are the grain's already
    starts_by: dt.date | None  # an incremental scan starts its periods at the first one it recomputes


@dataclass(frozen=True)
class WindowMap:
    """Each period of the spine to the windows it counts towards (`__src` -> `__dst`)."""
    name: str
    window: tuple
    spine: str


@dataclass(frozen=True)
class Partials:
    """An aggregation's own per-period partial aggregates (and first appearances for to-date count distinct)."""
    name: str
    of: str  # the aggregation


@dataclass(frozen=True)
class Masks:
    """A "masks" aggregation's bits: for each word of periods and slice, how many x have each period's bit set.
    Periods are numbered from the first period of `origin` (a Bounds of the rows, or of the shared pre-aggregate,
    which holds every period the rows have)."""
    name: str
    of: str  # the aggregation
    origin: str  # the Bounds its periods are numbered from


@dataclass(frozen=True)
class Aggregation:
    """One GROUP BY (or UNION ALL of them) of some KPIs at one grain and window shape."""
    name: str
    grain: str
    window: tuple | None
    kind: str  # as agg_key says: additive, partials, first_seen, rows, masks
    kpis: tuple[KpiPlan, ...]
    slices: tuple[str, ...]  # the dimensions of its KPIs
    source: str  # "rows", "pre-aggregate" (the shared one), "partials" (its own) or "masks" (its own)
    partials: str | None  # the CTE it re-aggregates: the shared pre-aggregate's, its own partials' or masks'
    map: str | None  # its window's map
    spine: str


Cte = Union[Rows, PreAggregate, Bounds, Spine, WindowMap, Partials, Masks, Aggregation]


@dataclass(frozen=True)
class ScanLayout:
    """Everything a fused scan's query is made of, decided: `sqlgen.render_scan` builds the SQL from it."""
    relation: Relation
    time: exp.Expression
    prefix: str
    grains: tuple[str, ...]
    base: str  # the grain the rows are cut into: the coarsest that nests in every grain of the scan
    kpis: tuple[ScanKpi, ...]  # each KPI and grain, with its incremental start
    slices: tuple[Slice, ...]
    columns: tuple[str, ...]  # the model's columns the KPIs read
    reads_from: dt.date | None  # the earliest time any KPI and grain needs, its windows included
    ctes: tuple[Cte, ...]  # after the model's own, in order

    @property
    def aggregations(self) -> list[Aggregation]:
        return [c for c in self.ctes if isinstance(c, Aggregation)]

    @property
    def rows(self) -> Rows:
        return self.ctes[0]  # type: ignore[return-value]  # scan_layout puts them first

    @property
    def pre_aggregate(self) -> PreAggregate | None:
        return self.ctes[1] if isinstance(self.ctes[1], PreAggregate) else None

    def describe(self) -> str:
        """The layout as text, one line per decision (tests/snapshots/scans/ keeps some)."""
        def day(d: dt.date | None, none: str) -> str:
            return none if d is None else d.isoformat()

        dimension = {s.column: s.dimension for s in self.slices}
        model = self.relation.table.sql()
        if self.relation.ctes:
            model += f" (models: {', '.join(n for n, _ in self.relation.ctes)})"
        lines = [
            f"scan of {model} by {self.time.sql()}",
            f"grains: {', '.join(self.grains)}; rows cut into {self.base}s",
            "slices: " + (", ".join(f"{s.dimension} as {s.column}" for s in self.slices) or "none"),
            "columns: " + (", ".join(self.columns) or "none"),
            f"reads from: {day(self.reads_from, 'every row')}",
            "kpis:",
            *[f"  {k.plan.name} at {k.grain}: from {day(k.since, 'every period')}" for k in self.kpis],
            "ctes:",
        ]
        for c in self.ctes:
            if isinstance(c, Rows):
                text = f"the rows, from {day(c.reads_from, 'every row')}"
            elif isinstance(c, PreAggregate):
                text = f"pre-aggregate by {c.grain}, slices " + (", ".join(dimension[x] for x in c.slices) or "none")
                if c.by_day:
                    text += " (late_rows)"
                if c.statement:
                    text += f"; a statement of its own, from the rows from {day(c.reads_from, 'every row')}"
                    if c.fresh_from is not None:
                        text += f", and kept rows from {day(c.kept_from, 'the first')} before {c.fresh_from.isoformat()}"
                    if c.settled_before is not None:
                        text += f" (final before {c.settled_before.isoformat()})"
            elif isinstance(c, Bounds):
                text = f"first and last period of {c.source}"
            elif isinstance(c, Spine):
                text = f"every {c.grain} from {c.bounds}" + (f" ({self.base}s cut into {c.grain}s)" if c.cut else "")
                if c.starts_by is not None:
                    text += f", from {c.starts_by.isoformat()} at the latest"
            elif isinstance(c, WindowMap):
                text = f"{c.spine}'s periods to their windows ({c.window[0]} {c.window[1]})"
            elif isinstance(c, Partials):
                text = f"per-period partials of {c.of}"
            elif isinstance(c, Masks):
                text = f"bit masks of periods for {c.of} from the first of {c.origin}, counted by bit"
            else:
                text = (f"{c.kind} at {c.grain}" + ("" if c.window is None else f", window {c.window[0]} {c.window[1]}")
                        + f", over {'the rows' if c.partials is None else c.partials}"
                        + (f" through {c.map}" if c.map else "")
                        + (f", slices {', '.join(c.slices)}" if c.slices else "")
                        + f": {', '.join(p.name for p in c.kpis)}")
            lines.append(f"  {c.name}: {text}")
        return "\n".join(lines) + "\n"

    __str__ = describe


def scan_layout(items: list[tuple[KpiPlan, str]], cal: Calendar, since: dict[tuple[str, str], dt.date | None] | None = None,
                prefix: str = "", pre: KeptPreAggregate | None = None, masks: bool = False) -> ScanLayout:
    """Decide how one query computes, from one read of their model, the KPIs of `items` at their grains, each
    (name, grain) from its period in `since` on (all periods when absent). See sqlgen.scan_query; `masks`: see
    agg_key."""
    kpis = [ScanKpi(pl, grain, (since or {}).get((pl.name, grain))) for pl, grain in items]
    relation = items[0][0].relation
    plans = list({id(k.plan): k.plan for k in kpis}.values())
    grains = list(dict.fromkeys(k.grain for k in kpis))
    keys = {id(pl): agg_key(pl, masks) for pl in plans}
    # a pre-aggregate kept by day (late_rows) cuts the rows by day; only a scan with additive KPIs keeps one
    by_day = pre is not None and pre.by_day and any(keys[id(pl)][1] in ("additive", "partials") for pl in plans)
    base = "day" if by_day else cal_.base_grain(grains)
    p = lambda name: f"{prefix}__{name}"  # noqa: E731  CTE names, unique per scan when combined

    # the rows: one read of the model, time cut into periods of the base grain, slices named
    dims: list[str] = list(dict.fromkeys(d for pl in plans for d in pl.dimensions))
    slices = tuple(Slice(d, f"__d{i}", next(pl.dimension_expr(d) for pl in plans if d in pl.dimensions))
                   for i, d in enumerate(dims))
    dim_alias = {s.dimension: s.column for s in slices}
    used = tuple(c for c in _used_columns(plans) if c not in dim_alias.values())
    lower = scan_from(kpis, cal)

    # the aggregations of each grain: which KPIs share one is decided by agg_key
    groups: dict[str, dict[tuple, tuple]] = {g: {} for g in grains}  # grain -> key -> (name, window, kind, plans)
    first_seen: dict[tuple, int] = {}
    for k in kpis:
        key = keys[id(k.plan)]
        if key[1] == "first_seen":
            # each first-seen count is a UNION ALL branch as wide as the whole aggregation: cap how many share one
            first_seen[(k.grain, *key)] = n = first_seen.get((k.grain, *key), 0) + 1
            key += ((n - 1) // FIRST_SEEN_PER_AGG,)
        aggs = groups[k.grain]
        if key not in aggs:
            name = p(f"agg{len(aggs)}") if len(grains) == 1 else p(f"{k.grain}_agg{len(aggs)}")
            aggs[key] = (name, k.plan.window, key[1], [])
        aggs[key][3].append(k.plan)
    additive_aggs = [a for aggs in groups.values() for a in aggs.values() if a[2] in ("additive", "partials")]
    shared = p("pp") if len(additive_aggs) > 1 or (additive_aggs and by_day) else None
    rolled = [d for d in dims if any(d in pl.dimensions for a in additive_aggs for pl in a[3])]

    # with kept partials, the pre-aggregate computes only the periods from the first one any KPI recomputes
    fresh = min(k.since for k in kpis) if pre is not None and pre.kept is not None and lower is not None else None
    if fresh is not None and pre.settled_before is not None:
        fresh = max(fresh, pre.settled_before)  # the earlier days of the recomputed periods are final and kept
    rows_from = lower
    if shared is not None and pre is not None and fresh is not None:
        # the rows are read only as far back as the aggregations that do not roll up from the
        # pre-aggregate need (the periods come from it)
        own = {id(pl) for aggs in groups.values() for a in aggs.values() if a[2] not in ("additive", "partials")
               for pl in a[3]}
        rows_from = scan_from([k for k in kpis if id(k.plan) in own], cal) if own else fresh

    head: list[Cte] = [Rows(p("rows"), rows_from)]
    if shared is not None:
        statement = pre is not None
        head.append(PreAggregate(
            shared, base, tuple(dim_alias[d] for d in rolled), statement=statement, by_day=by_day,
            reads_from=(fresh or lower) if statement else None, fresh_from=fresh if statement else None,
            kept_from=lower if statement and fresh is not None else None,
            settled_before=pre.settled_before if statement else None))
    ctes: list[Cte] = []
    maps: set[str] = set()
    for grain in grains:
        pg = p if len(grains) == 1 else (lambda name, g=grain: p(f"{g}_{name}"))  # noqa: E731
        # Aggregations without a window first: the periods can come from one of them, and a window's map needs them.
        aggs = sorted(groups[grain].values(), key=lambda a: a[1] is not None)
        n_plain = sum(a[1] is None for a in aggs)
        spine = pg("spine")

        def add_spine(grain=grain, pg=pg, plain=aggs[0][0] if n_plain and shared is None else None) -> None:
            """Every period of the grain from the first to the last with rows: from the shared pre-aggregate's, else
            from an aggregation of the grain without a window, else from the rows'. So a model's rows have one
            reader: DuckDB 2.0 streams a CTE read twice to both readers at once (STREAMING_FANOUT), measured
            slower than one (the benchmark's segment scan, orders joined to customers, 10^7 orders: 0.34 s
            against 0.28 s)."""
            if plain is not None:
                ctes.append(Bounds(pg("bounds"), plain))
                bounds, cut = pg("bounds"), False
            else:
                if not any(isinstance(c, Bounds) and c.name == p("bounds") for c in head):
                    head.append(Bounds(p("bounds"), shared if shared is not None else p("rows")))
                bounds, cut = p("bounds"), grain != base
            sinces = [k.since for k in kpis if k.grain == grain]
            starts_by = min(sinces) if all(s is not None for s in sinces) else None
            ctes.append(Spine(pg("spine"), grain, bounds, cut, starts_by))

        for i, (name, w, kind, members) in enumerate(aggs):
            if i == n_plain:
                add_spine()
            wmap = None
            if w is not None:
                wmap = pg(f"map_{w[0]}_{w[1]}")
                if wmap not in maps:
                    maps.add(wmap)
                    ctes.append(WindowMap(wmap, w, spine))
            if kind in ("additive", "partials") and shared is not None:
                source, partials = "pre-aggregate", shared
            elif kind in ("partials", "first_seen"):
                source, partials = "partials", name + "_pp"
                ctes.append(Partials(partials, name))
            elif kind == "masks":
                source, partials = "masks", name + "_bits"
                # numbered from the scan's first period (one Bounds for every grain's masks)
                if not any(isinstance(c, Bounds) and c.name == p("origin") for c in head):
                    head.append(Bounds(p("origin"), shared if shared is not None else p("rows")))
                ctes.append(Masks(partials, name, p("origin")))
            else:
                source, partials = "rows", None
            ctes.append(Aggregation(name, grain, w, kind, tuple(members),
                                    tuple(dict.fromkeys(d for pl in members for d in pl.dimensions)),
                                    source, partials, wmap, spine))
        if n_plain == len(aggs):
            add_spine()
    return ScanLayout(relation, plans[0].time, prefix, tuple(grains), base, tuple(kpis), slices, used, lower,
                      tuple(head + ctes))
