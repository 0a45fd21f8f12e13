"""KPI plans to sqlglot trees: scans, windows, derived KPIs.

Every query here returns rows in the long shape of `kpi_values`:
name, grain, period_start, period_end, dimension, dimension_value, value,
numerator, denominator. Trees are built dialect-free and rendered once.

A scan reads one model once (`__rows`), cuts time into periods, and computes
all its KPIs in one GROUP BY per window shape, with dimension slices as
GROUPING SETS. Each KPI's filter is pushed into FILTER (WHERE ...) clauses of
its aggregates, so KPIs with different filters share the scan.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlglot import exp

from . import calendar as cal_
from .config import Calendar
from .planner import KpiPlan, Relation
from .tables import VALUE_COLUMNS, qualified

NULL_SLICE = "(null)"


# --- small builders -------------------------------------------------------------

def ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.Column(this=ident(name), table=ident(table) if table else None)


def lit(value) -> exp.Expression:
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, float)):
        return exp.Literal.number(repr(float(value)) if isinstance(value, float) else value)
    if isinstance(value, dt.datetime):
        return cast(exp.Literal.string(value.isoformat(sep=" ")), "TIMESTAMP")
    if isinstance(value, dt.date):
        return cal_.date_literal(value)
    return exp.Literal.string(str(value))


_TYPES: dict[str, exp.DataType] = {}


def cast(e: exp.Expression, type_: str) -> exp.Cast:
    # DataType.build parses its argument: build each type once, copy the small node after
    if type_ not in _TYPES:
        _TYPES[type_] = exp.DataType.build(type_)
    return exp.Cast(this=e, to=_TYPES[type_].copy())


def double(e: exp.Expression) -> exp.Expression:
    return cast(e, "DOUBLE")


def safe_div(num: exp.Expression, den: exp.Expression) -> exp.Expression:
    """num / den as DOUBLE, NULL (never an error) when den is 0, on every engine."""
    return exp.Div(
        this=double(num),
        expression=exp.Nullif(this=double(den), expression=exp.Literal.number(0)),
        typed=False,
        safe=False,
    )


def make_divisions_safe(tree: exp.Expression) -> exp.Expression:
    def fix(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Div) and not node.meta.get("kpi_safe"):
            out = safe_div(node.this, node.expression)
            out.meta["kpi_safe"] = True
            return out
        return node

    return tree.transform(fix)  # a changed copy


def alias(e: exp.Expression, name: str) -> exp.Alias:
    return exp.Alias(this=e, alias=ident(name))


def and_(*conds: exp.Expression | None) -> exp.Expression | None:
    parts = [c for c in conds if c is not None]
    if not parts:
        return None
    return exp.and_(*parts, copy=False) if len(parts) > 1 else parts[0]


def push_filter(tree: exp.Expression, condition: exp.Expression | None) -> exp.Expression:
    """Put `condition` into a FILTER (WHERE ...) of every aggregate of `tree`."""
    tree = tree.copy()
    if condition is None:
        return tree
    for agg in list(tree.find_all(exp.AggFunc)):
        target = agg.parent if isinstance(agg.parent, exp.WithinGroup) else agg
        holder = target.parent
        if isinstance(holder, exp.Filter):
            where = holder.expression
            where.set("this", exp.and_(exp.Paren(this=condition.copy()), exp.Paren(this=where.this)))
        else:
            wrapped = exp.Filter(this=target.copy(), expression=exp.Where(this=condition.copy()))
            if target is tree:
                return wrapped
            target.replace(wrapped)
    return tree


def join(select: exp.Select, table: exp.Expression, on: exp.Expression | None = None,
         side: str | None = None, kind: str | None = None) -> exp.Select:
    """select [side|kind] JOIN table [ON on], in place and built directly (Select.join parses its join type as SQL)."""
    node = exp.Join(this=table)
    for key, value in (("side", side), ("kind", kind), ("on", on)):
        if value is not None:
            node.set(key, value)
    select.append("joins", node)
    return select


def insert_rows(table: exp.Table, query: exp.Query) -> exp.Insert:
    """INSERT INTO table (the kpi_values row columns) <query>."""
    return exp.Insert(this=exp.Schema(this=table.copy(), expressions=[ident(c) for c in VALUE_COLUMNS]), expression=query)


def cte_query(ctes: list[tuple[str, exp.Query]], body: exp.Select) -> exp.Select:
    for name, query in ctes:
        body = body.with_(ident(name), as_=query, copy=False)
    return body


def union_all(queries: list[exp.Query]) -> exp.Query:
    out = queries[0]
    for q in queries[1:]:
        out = exp.Union(this=out, expression=q, distinct=False)
    return out


def union_select(queries: list[exp.Query]) -> exp.Select:
    """UNION ALL of row queries, as one SELECT (so CTEs can be attached to it)."""
    body = union_all(queries)
    if isinstance(body, exp.Select):
        return body
    return exp.select(*[col(c) for c in VALUE_COLUMNS]).from_(exp.Subquery(this=body, alias=exp.TableAlias(this=ident("__u"))),
                                                             copy=False)


def slice_value(dim: exp.Expression) -> exp.Expression:
    return exp.Coalesce(this=cast(dim, "VARCHAR"), expressions=[lit(NULL_SLICE)])


def _rows(name: str, grain: str, period: exp.Expression, dimension: str, dimension_value: exp.Expression,
          value: exp.Expression, numerator: exp.Expression, denominator: exp.Expression) -> list[exp.Expression]:
    return [
        alias(lit(name), "name"),
        alias(lit(grain), "grain"),
        alias(period.copy(), "period_start"),
        alias(cal_.add_periods(period.copy(), 1, grain), "period_end"),
        alias(lit(dimension), "dimension"),
        alias(dimension_value, "dimension_value"),
        alias(value, "value"),
        alias(numerator, "numerator"),
        alias(denominator, "denominator"),
    ]


# --- scans --------------------------------------------------------------------

@dataclass
class ScanKpi:
    plan: KpiPlan
    since: dt.date | None = None  # first period to output; None: all periods


@dataclass
class _Agg:
    """One aggregation over the scan's rows for one window shape."""

    window: tuple | None
    cte: str
    kpis: list[KpiPlan] = field(default_factory=list)
    columns: dict[str, exp.Expression] = field(default_factory=dict)  # alias -> aggregate expression
    by_sql: dict[str, str] = field(default_factory=dict)
    from_partials: bool = False  # a window re-aggregating per-period partials instead of reading rows
    distinct: dict[str, tuple[exp.Expression, exp.Expression | None]] = field(default_factory=dict)  # alias -> (x, filter)

    def add(self, prefix: str, e: exp.Expression) -> str:
        key = e.sql("duckdb")  # by its SQL: a parsed count(*) and a built one are different trees
        if key not in self.by_sql:
            name = f"{prefix}{len(self.columns)}"
            self.columns[name] = e
            self.by_sql[key] = name
        return self.by_sql[key]


def scan_from(kpis: list[ScanKpi], grain: str, cal: Calendar) -> dt.date | None:
    """The earliest time a scan must read so that every output period's window is whole."""
    if not kpis or any(k.since is None for k in kpis):
        return None
    starts = []
    for k in kpis:
        w = k.plan.window
        if w is None:
            starts.append(k.since)
        elif w[0] == "periods":
            starts.append(cal_.py_add_periods(k.since, -(int(w[1]) - 1), grain))
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


def scan_query(kpis: list[ScanKpi], grain: str, relation: Relation, cal: Calendar, prefix: str = "") -> exp.Select:
    """One query computing, from one read of the model, every KPI of `kpis` at `grain`."""
    plans = [k.plan for k in kpis]
    time = plans[0].time
    p = lambda name: f"{prefix}__{name}"  # noqa: E731  CTE names, unique per scan when combined

    # 1. the rows: one read of the model, time cut into periods, slices named
    dims: list[str] = list(dict.fromkeys(d for pl in plans for d in pl.dimensions))
    dim_alias = {d: f"__d{i}" for i, d in enumerate(dims)}
    used = [c for c in _used_columns(plans) if c not in dim_alias.values()]
    projections: list[exp.Expression] = [alias(cal_.period_start(time.copy(), grain, cal), "__p")]
    dim_expr = {d: next(pl.dimension_expr(d) for pl in plans if d in pl.dimensions) for d in dims}
    for d in dims:
        projections.append(alias(slice_value(dim_expr[d]), dim_alias[d]))
    projections.extend(exp.column(c) for c in used)
    where = exp.Not(this=exp.Is(this=time.copy(), expression=exp.Null()))
    lower = scan_from(kpis, grain, cal)
    if lower is not None:
        # a plain predicate on the time column, so the engine can skip row groups
        where = and_(where, exp.GTE(this=time.copy(), expression=lit(lower)))
    rows = exp.select(*projections).from_(relation.table.copy(), copy=False).where(where, copy=False)

    # 2. the periods: every period from the first to the last with rows
    lo: exp.Expression = exp.Min(this=col("__p"))
    if lower is not None:
        # an incremental scan starts its periods at the first one it recomputes, even if that has no rows
        lo = exp.Least(this=lo, expressions=[lit(min(k.since for k in kpis))])
    bounds = exp.select(alias(lo, "lo"), alias(exp.Max(this=col("__p")), "hi")).from_(ident(p("rows")), copy=False)
    series = exp.Unnest(
        expressions=[exp.GenerateDateArray(start=col("lo"), end=col("hi"), step=cal_.step_interval(grain))],
        alias=exp.TableAlias(columns=[ident("__s")]),
    )
    spine = join(exp.select(
        alias(cal_.as_date(col("__s")), "period_start"),
        alias(exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=[exp.Ordered(this=cal_.as_date(col("__s")))])), "__i"),
    ).from_(ident(p("bounds")), copy=False), series, kind="CROSS")

    ctes: list[tuple[str, exp.Query]] = [(n, q.copy()) for n, q in relation.ctes]  # the models' trees are shared
    ctes += [(p("rows"), rows), (p("bounds"), bounds), (p("spine"), spine)]

    # 3. the aggregations: which KPIs share one is decided by _agg_key
    aggs: dict[tuple, _Agg] = {}
    first_seen: dict[tuple, int] = {}
    for pl in plans:
        key = _agg_key(pl)
        if key[1] == "partials" and any(_distinct_count(a) for a in _aggregates(pl)):
            # each first-seen count is a UNION ALL branch as wide as the whole aggregation: cap how many share one
            first_seen[key] = n = first_seen.get(key, 0) + 1
            key += ((n - 1) // FIRST_SEEN_PER_AGG,)
        if key not in aggs:
            aggs[key] = _Agg(pl.window, p(f"agg{len(aggs)}"), from_partials=key[1] == "partials")
        aggs[key].kpis.append(pl)

    outputs: list[exp.Select] = []
    for agg in aggs.values():
        partials = _Agg(None, agg.cte + "_pp") if agg.from_partials else None

        def add(prefix: str, e: exp.Expression) -> str:
            return agg.add(prefix, e if partials is None else reaggregate(e, partials))

        refs: dict[str, dict[str, str]] = {}
        for pl in agg.kpis:
            r: dict[str, str] = {"n": add("__n", push_filter(exp.Count(this=exp.Star()), pl.filter) if pl.filter is not None else exp.Count(this=exp.Star()))}
            if pl.form == "ratio":
                r["num"] = add("__m", make_divisions_safe(push_filter(pl.numerator, pl.filter)))
                r["den"] = add("__m", make_divisions_safe(push_filter(pl.denominator, pl.filter)))
            else:
                r["m"] = add("__m", make_divisions_safe(push_filter(pl.measure, pl.filter)))
            refs[pl.name] = r
        agg_dims = list(dict.fromkeys(d for pl in agg.kpis for d in pl.dimensions))
        dim_cols = [dim_alias[d] for d in agg_dims]
        source, period = _window_source(agg, p, ctes, cal, grain)
        on_map = None if agg.window is None else p(f"map{_window_key(agg.window)}")
        if partials is None:
            select = _aggregate(period, dim_cols, agg.columns, source, on_map, p("rows"), grouping_sets=True)
        else:
            # per-period partial aggregates (with their slices), then each window re-aggregates its periods' partials
            ctes.append((partials.cte, _partials_query(partials, dim_cols, p("rows"), agg.window, cal)))
            select = _aggregate(period, dim_cols, agg.columns, ident(partials.cte), on_map, partials.cte, grouping_sets=False)
        ctes.append((agg.cte, select))

        for pl in agg.kpis:
            since = next(k.since for k in kpis if k.plan is pl)
            outputs.extend(_kpi_rows(pl, grain, agg, agg_dims, dim_alias, refs[pl.name], p, since))

    return cte_query(ctes, union_select(outputs))


# --- aggregations: which KPIs share one, and windows from per-period partials ----------

# to-date count(DISTINCT x) KPIs per aggregation over partials (their branches make its size quadratic in them)
FIRST_SEEN_PER_AGG = 16

# an aggregate whose per-period results combine into the window's: sum of sums, sum of counts, ...
_REAGGREGATE: dict[type, type] = {exp.Sum: exp.Sum, exp.Count: exp.Sum, exp.Min: exp.Min, exp.Max: exp.Max}


def _aggregates(pl: KpiPlan) -> list[exp.AggFunc]:
    trees = (pl.measure, pl.numerator, pl.denominator)
    return [a for t in trees if t is not None for a in t.find_all(exp.AggFunc)]


def _additive(agg: exp.AggFunc) -> bool:
    return (type(agg) in _REAGGREGATE or type(agg) is exp.Avg) and agg.find(exp.Distinct) is None


def _distinct_count(agg: exp.AggFunc) -> bool:
    """count(DISTINCT x) of one expression: over a to-date window, it counts the x first seen up to each period."""
    d = agg.this
    return type(agg) is exp.Count and isinstance(d, exp.Distinct) and len(d.expressions) == 1


def _agg_key(pl: KpiPlan) -> tuple:
    """Which aggregation computes a KPI.

    Additive KPIs share one, over the GROUPING SETS of all their slices (an extra sum per
    slice costs little). A non-additive KPI (count distinct, quantiles) is grouped by its own
    slices only, so a quantile is not computed for slices it does not have. A window over
    additive aggregates, or a to-date window over count(distinct x), is computed from
    per-period partials instead of joining every row to every window it belongs to.
    """
    w, aggs = pl.window, _aggregates(pl)
    if w is not None and all(_additive(a) or (w[0] == "to_date" and _distinct_count(a)) for a in aggs):
        return (w, "partials", pl.dimensions if any(_distinct_count(a) for a in aggs) else ())
    if all(_additive(a) for a in aggs):
        return (w, "additive")
    return (w, "rows", pl.dimensions)


def reaggregate(tree: exp.Expression, partials: _Agg) -> exp.Expression:
    """`tree` over per-period partials: each aggregate becomes a re-aggregation of a column of `partials`."""
    def fix(node: exp.Expression) -> exp.Expression:
        agg = node.this if isinstance(node, exp.Filter) else node
        if not isinstance(agg, exp.AggFunc) or (node is agg and isinstance(node.parent, exp.Filter)):
            return node
        where = node.expression.this if isinstance(node, exp.Filter) else None

        def partial(a: exp.Expression) -> str:
            return partials.add("__q", exp.Filter(this=a, expression=exp.Where(this=where.copy())) if where is not None else a)

        if _distinct_count(agg):
            name = partials.add("__c", node.copy())
            partials.distinct[name] = (agg.this.expressions[0].copy(), where.copy() if where is not None else None)
            return exp.Coalesce(this=exp.Sum(this=col(name)), expressions=[exp.Literal.number(0)])
        if type(agg) is exp.Avg:
            total, count = partial(exp.Sum(this=agg.this.copy())), partial(exp.Count(this=agg.this.copy()))
            return exp.Paren(this=safe_div(exp.Sum(this=col(total)), exp.Sum(this=col(count))))
        return _REAGGREGATE[type(agg)](this=col(partial(agg.copy())))

    return tree.transform(fix)  # a changed copy


def _aggregate(period: exp.Expression, dims: list[str], columns: dict[str, exp.Expression], source: exp.Expression,
               on_map: str | None, source_name: str, grouping_sets: bool) -> exp.Select:
    """SELECT period, dims, columns FROM source [JOIN map] GROUP BY period and the slices."""
    select = exp.select(alias(period.copy(), "__p"), *[col(d) for d in dims])
    for name, e in columns.items():
        select = select.select(alias(e, name), copy=False)
    select = select.from_(source, copy=False)
    if on_map is not None:
        select = join(select, ident(on_map), on=exp.EQ(this=col("__p", source_name), expression=col("__src")))
    if dims and grouping_sets:
        sets = [exp.Tuple(expressions=[period.copy()])] + [exp.Tuple(expressions=[period.copy(), col(d)]) for d in dims]
        select.set("group", exp.Group(grouping_sets=[exp.GroupingSets(expressions=sets)]))
    else:  # partials already carry their slices' pattern of NULLs
        select = select.group_by(period.copy(), *[col(d) for d in dims], copy=False)
    return select


def _partials_query(partials: _Agg, dims: list[str], rows: str, window: tuple, cal: Calendar) -> exp.Query:
    """Per-period partial aggregates, and for each count(DISTINCT x) the number of x first seen in each period
    of its to-date period (so a running sum over the to-date period counts each x once)."""
    def only(keep: set[str], value=None) -> dict[str, exp.Expression]:
        """Every partial column, in one order for every branch of the UNION ALL; NULL outside `keep`."""
        return {n: (value or e) if n in keep else exp.Null() for n, e in partials.columns.items()}

    plain = set(partials.columns) - set(partials.distinct)
    branches: list[exp.Query] = [_aggregate(col("__p"), dims, only(plain), ident(rows), None, rows, grouping_sets=True)]
    for name, (x, where) in partials.distinct.items():
        bucket = cal_.period_start_of_date(col("__p"), str(window[1]), cal)
        sets = [exp.Tuple(expressions=[bucket.copy(), x.copy()])] + [
            exp.Tuple(expressions=[bucket.copy(), col(d), x.copy()]) for d in dims]
        firsts = (
            exp.select(alias(exp.Min(this=col("__p")), "__p"), *[col(d) for d in dims])
            .from_(ident(rows), copy=False)
            .where(and_(exp.Not(this=exp.Is(this=x.copy(), expression=exp.Null())), where), copy=False)
        )
        firsts.set("group", exp.Group(grouping_sets=[exp.GroupingSets(expressions=sets)]))
        source = exp.Subquery(this=firsts, alias=exp.TableAlias(this=ident("__first")))
        branches.append(_aggregate(col("__p"), dims, only({name}, exp.Count(this=exp.Star())), source, None, "__first",
                                   grouping_sets=False))
    return union_all(branches)

def _window_key(window: tuple) -> str:
    return f"_{window[0]}_{window[1]}"


def _window_source(agg: _Agg, p, ctes: list, cal: Calendar, grain: str):
    """The relation an aggregation reads and its period column; adds the window map CTE."""
    if agg.window is None:
        return ident(p("rows")), col("__p")
    kind, arg = agg.window
    name = p(f"map{_window_key(agg.window)}")
    if not any(n == name for n, _ in ctes):
        a, b = "__a", "__b"
        if kind == "periods":
            # row period a counts towards the windows of the N periods that start at a
            cond = exp.Between(
                this=col("__i", b),
                low=col("__i", a),
                high=exp.Add(this=col("__i", a), expression=exp.Literal.number(int(arg) - 1)),
            )
        else:
            # to-date: the periods of the same year/quarter/month that start at or after a
            cond = exp.and_(
                exp.EQ(
                    this=cal_.period_start_of_date(col("period_start", a), str(arg), cal),
                    expression=cal_.period_start_of_date(col("period_start", b), str(arg), cal),
                ),
                exp.GTE(this=col("period_start", b), expression=col("period_start", a)),
            )
        mapping = join(
            exp.select(alias(col("period_start", a), "__src"), alias(col("period_start", b), "__dst"))
            .from_(qualified(None, p("spine"), a), copy=False),
            qualified(None, p("spine"), b), on=cond,
        )
        ctes.append((name, mapping))
    return ident(p("rows")), col("__dst")


def _kpi_rows(pl: KpiPlan, grain: str, agg: _Agg, agg_dims: list[str], dim_alias: dict[str, str],
              r: dict[str, str], p, since: dt.date | None) -> list[exp.Select]:
    def value_parts(table: str | None):
        has_rows = exp.GT(this=exp.Coalesce(this=col(r["n"], table), expressions=[exp.Literal.number(0)]), expression=exp.Literal.number(0))
        fallback = exp.Literal.number(0) if pl.fill_zero else exp.Null()

        def guarded(e: exp.Expression) -> exp.Expression:
            return exp.Case(ifs=[exp.If(this=has_rows.copy(), true=double(e))], default=double(fallback.copy()))

        if pl.form == "ratio":
            num, den = guarded(col(r["num"], table)), guarded(col(r["den"], table))
            return safe_div(num.copy(), den.copy()), num, den
        return guarded(col(r["m"], table)), double(exp.Null()), double(exp.Null())

    out: list[exp.Select] = []
    # the total: one row for every period of the spine
    value, num, den = value_parts("__a")
    on = exp.EQ(this=col("__p", "__a"), expression=col("period_start", "__s"))
    for d in agg_dims:
        on = exp.and_(on, exp.Is(this=col(dim_alias[d], "__a"), expression=exp.Null()), copy=False)
    total = join(
        exp.select(*_rows(pl.name, grain, col("period_start", "__s"), "", cast(exp.Null(), "VARCHAR"), value, num, den))
        .from_(qualified(None, p("spine"), "__s"), copy=False),
        qualified(None, agg.cte, "__a"), on=on, side="LEFT",
    )
    if since is not None:
        total = total.where(exp.GTE(this=col("period_start", "__s"), expression=lit(since)), copy=False)
    out.append(total)
    # the slices: sparse, one row per value and period that has rows
    for d in pl.dimensions:
        value, num, den = value_parts("__a")
        cond = exp.Not(this=exp.Is(this=col(dim_alias[d], "__a"), expression=exp.Null()))
        if since is not None:
            cond = exp.and_(cond, exp.GTE(this=col("__p", "__a"), expression=lit(since)), copy=False)
        sl = (
            exp.select(*_rows(pl.name, grain, col("__p", "__a"), d, col(dim_alias[d], "__a"), value, num, den))
            .from_(qualified(None, agg.cte, "__a"), copy=False)
            .where(cond, copy=False)
        )
        out.append(sl)
    return out


# --- derived KPIs -----------------------------------------------------------------

def aliased(table: exp.Table, name: str) -> exp.Table:
    out = table.copy()
    out.set("alias", exp.TableAlias(this=ident(name)))
    return out


def derived_query(pl: KpiPlan, grain: str, inputs: exp.Table, dims: tuple[str, ...],
                  since: dt.date | None = None) -> exp.Select:
    """A derived KPI at one grain, from `inputs` (a relation in the kpi_values shape).

    Its periods are the union of its inputs' periods; lag(k, n) is k's value n
    calendar periods earlier (NULL across a gap).
    """
    names = pl.input_names
    keys = (
        exp.select(col("period_start"), col("dimension"), col("dimension_value"))
        .distinct(copy=False)
        .from_(inputs.copy(), copy=False)
        .where(
            exp.and_(
                exp.EQ(this=col("grain"), expression=lit(grain)),
                exp.In(this=col("name"), expressions=[lit(n) for n in names]),
                exp.In(this=col("dimension"), expressions=[lit(d) for d in ("",) + tuple(dims)]),
                copy=False,
            ),
            copy=False,
        )
    )
    select = exp.select().from_(exp.Subquery(this=keys, alias=exp.TableAlias(this=ident("__k"))), copy=False)
    joined: dict[tuple[str, int], str] = {}
    for ref in pl.inputs:
        a = f"__i{len(joined)}"
        joined[(ref.kpi, ref.lag)] = a
        period = col("period_start", "__k") if ref.lag == 0 else cal_.add_periods(col("period_start", "__k"), -ref.lag, grain)
        on = exp.and_(
            exp.EQ(this=col("name", a), expression=lit(ref.kpi)),
            exp.EQ(this=col("grain", a), expression=lit(grain)),
            exp.EQ(this=col("period_start", a), expression=period),
            exp.EQ(this=col("dimension", a), expression=col("dimension", "__k")),
            exp.NullSafeEQ(this=col("dimension_value", a), expression=col("dimension_value", "__k")),
            copy=False,
        )
        select = join(select, aliased(inputs, a), on=on, side="LEFT")

    def substitute(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Lag) and isinstance(node.this, exp.Column):
            off = node.args.get("offset")
            n = int(off.this) if isinstance(off, exp.Literal) else 1
            return col("value", joined[(node.this.name, n)])
        if isinstance(node, exp.Column) and (node.name, 0) in joined:
            return col("value", joined[(node.name, 0)])
        return node

    expr = make_divisions_safe(pl.derived.transform(substitute))
    select = select.select(
        *_rows(pl.name, grain, col("period_start", "__k"), "__dim__", col("dimension_value", "__k"), double(expr),
               double(exp.Null()), double(exp.Null())),
        copy=False,
    )
    # the dimension column comes from the key, not a literal
    for projection in select.expressions:
        if projection.alias == "dimension":
            projection.set("this", col("dimension", "__k"))
    if since is not None:
        select = select.where(exp.GTE(this=col("period_start", "__k"), expression=lit(since)), copy=False)
    return select
