"""Forecasts (SPEC §10): where each KPI total is heading, at two horizons, judged against the target there.

For every KPI total and every grain at which the KPI has a target, kpi_forecast gets a row per horizon:

    period     the end of the current (incomplete) period: the period of the grain that holds the run's date;
    deadline   the target's deadline (`by` of a relative or pace target), as the period of the grain that
               holds `by`; none when that period is complete at the run's date (the deadline has passed: its
               value is in kpi_status, nothing is left to forecast).

horizon_end is the horizon period's exclusive end, as period_end is everywhere else. Two methods:

    run_rate       a to-date KPI (window: {to_date: U}) with a pace target at the grain: the value so far times
                   the days from the start s of the to-date period that holds the run's date to horizon_end,
                   divided by the days elapsed at the run's date (as_of - s). The value so far is the latest
                   value of a period that starts in s..as_of; none (a to-date period just begun): no row. A
                   horizon past the end of that to-date period gets no row: its value starts again from zero.
    least_squares  every other KPI: the ordinary least-squares line y = a + b x through the KPI's last N complete
                   periods at the grain (N = `forecast.periods` of the KPI, else of kpimetrics.yml; default 6)
                   that have a value, x the period's index counted in periods of the grain (the horizon's period
                   is x = 0, the one before it -1, ...: a period without a value keeps its place), evaluated at
                   the horizon: the forecast is a. The N periods are the last N of the KPI's periods that are
                   complete, those without a value among them left out of the fit; fewer than 3 values: no row.

target_at_horizon is the KPI's target for the horizon's period, as kpi_targets would give it for a period there
(targets.form_expression over that period's start and end; a relative target's baseline from kpi_values; a table
target from its table), NULL where it has none. forecast_status applies the status rules of SPEC §2 to
(forecast, target_at_horizon): the thresholds of targets.threshold_expression, the KPI's direction.

Everything is computed in the warehouse from the tables the same publishing has just written (kpi_status,
kpi_values), the dates and counts of days fixed here from the run's date and the YAML; no fact row reaches
Python. One set query per CHUNK of (KPI, grain) pairs: their horizons as a VALUES table (__v), one scan of
kpi_status for the least-squares sums and one for the run rates, the baselines of relative targets from one scan
of kpi_values, and each pair's target and status rules as a branch of a CASE. (A query per KPI, grain and horizon,
as a first version had it, made a run of 200 KPIs at two grains spend four times as long publishing: the engines
plan each branch of the UNION on its own.) A target read from a table joins its table: those keep a query per
KPI, grain and horizon.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlglot import exp

from . import calendar as cal_
from .config import Calendar
from .loader import ProjectDef
from .model import Kpi, PaceTarget, RelativeTarget, TableTarget
from .planner import build_relation
from .sqlgen import alias, col, double, ident, lit, safe_div, union_all
from .status import Status
from .tables import FORECAST, qualified
from .targets import form_expression, form_for_grain, table_rows_query, table_target_at, threshold_expression

MIN_PERIODS = 3  # fewer values than this in the window: no least-squares forecast
PERIOD, DEADLINE = "period", "deadline"  # kpi_forecast.horizon
RUN_RATE, LEAST_SQUARES = "run_rate", "least_squares"  # kpi_forecast.method


@dataclass(frozen=True)
class Horizon:
    kind: str  # PERIOD | DEADLINE
    start: dt.date  # the horizon period's start
    end: dt.date  # its exclusive end: kpi_forecast.horizon_end


def periods_setting(kpi: Kpi, project: ProjectDef) -> int:
    """How many complete periods the least-squares line goes through: the KPI's `forecast.periods`, else the project's."""
    return (kpi.forecast or project.config.forecast).periods


def target_at(kpi: Kpi, grain: str, default_grain: str):
    """The target form of the KPI's total at `grain` (a table target only at the grain it gives), or None."""
    form = form_for_grain(kpi, grain)
    if isinstance(form, TableTarget):
        return table_target_at(kpi, grain, default_grain)
    return form


def deadline(form) -> dt.date | None:
    """The target's deadline: `by` of a relative or pace target."""
    return form.by if isinstance(form, (RelativeTarget, PaceTarget)) else None


def horizons(form, grain: str, as_of: dt.date, cal: Calendar) -> list[Horizon]:
    """The current period's end, and the deadline's period unless it is complete at `as_of`."""
    start = cal_.py_period_start(as_of, grain, cal)
    out = [Horizon(PERIOD, start, cal_.py_add_periods(start, 1, grain))]
    by = deadline(form)
    if by is not None:
        d_start = cal_.py_period_start(by, grain, cal)
        d_end = cal_.py_add_periods(d_start, 1, grain)
        if d_end > as_of:
            out.append(Horizon(DEADLINE, d_start, d_end))
    return out


def uses_run_rate(kpi: Kpi, form) -> bool:
    return isinstance(form, PaceTarget) and kpi.window is not None and kpi.window.to_date is not None


def forecast_queries(kpis: list[tuple[Kpi, list[str]]], schema: str, as_of: dt.date, project: ProjectDef) -> list[exp.Select]:
    """kpi_forecast's rows for `kpis` (each with the grains it is computed at): one set query per CHUNK of (KPI, grain)
    pairs (batch_query), and a query per KPI, grain and horizon for a target read from a table, which joins that
    table (single_query)."""
    cal = project.config.calendar
    default_grain = project.config.defaults.grain
    items: list[Item] = []
    singles: list[exp.Select] = []
    for kpi, grains in kpis:
        for grain in grains:
            form = target_at(kpi, grain, default_grain)
            if form is None:
                continue
            run_rate = uses_run_rate(kpi, form)
            hs = [h for h in horizons(form, grain, as_of, cal) if not run_rate or run_rate_span(kpi, h, as_of, cal)]
            if not hs:
                continue
            item = Item(kpi, grain, form, tuple(hs), RUN_RATE if run_rate else LEAST_SQUARES, periods_setting(kpi, project))
            if isinstance(form, TableTarget):
                singles.extend(q for h in hs if (q := single_query(item, h, schema, as_of, project)) is not None)
            else:
                items.append(item)
    return [batch_query(items[i:i + CHUNK], schema, as_of, project) for i in range(0, len(items), CHUNK)] + singles


@dataclass(frozen=True)
class Item:
    """One KPI at one grain with a target: its horizons and method."""
    kpi: Kpi
    grain: str
    form: object
    horizons: tuple[Horizon, ...]
    method: str
    periods: int


def run_rate_span(kpi: Kpi, h: Horizon, as_of: dt.date, cal: Calendar) -> tuple[dt.date, float] | None:
    """(s, (horizon_end - s) / (as_of - s)) of a run rate, s the start of the to-date period holding `as_of`; None
    when the horizon lies past that to-date period (its value starts again) or nothing has elapsed in it."""
    unit = kpi.window.to_date
    s = cal_.py_period_start(as_of, unit, cal)
    if h.end > cal_.py_add_periods(s, 1, unit) or as_of <= s:
        return None
    return s, (h.end - s).days / (as_of - s).days


def single_query(item: Item, h: Horizon, schema: str, as_of: dt.date, project: ProjectDef) -> exp.Select | None:
    """One row of kpi_forecast by a query of its own (a table target's)."""
    kpi, grain, cal = item.kpi, item.grain, project.config.calendar
    if item.method == RUN_RATE:
        fit = _run_rate(kpi, grain, h, schema, as_of, cal)
    else:
        fit = _least_squares(kpi, grain, h, schema, as_of, item.periods, cal)
    target = _target_at_horizon(kpi, grain, item.form, h, schema, project)
    if fit is None or target is None:
        return None
    return _row(kpi, grain, h, as_of, item.method, fit, target)


# --- every KPI of a chunk in one query --------------------------------------------------------------------

CHUNK = 200  # (KPI, grain) pairs per set query: one scan of kpi_status each, and bounded CASEs

_HORIZON_COLUMNS = (("name", "VARCHAR"), ("grain", "VARCHAR"), ("horizon", "VARCHAR"), ("period_start", "DATE"),
                    ("period_end", "DATE"), ("method", "VARCHAR"), ("periods", "DOUBLE"), ("since", "DATE"),
                    ("factor", "DOUBLE"), ("step_days", "DOUBLE"), ("step_months", "DOUBLE"))


def _literal_rows(rows: list[tuple], columns: tuple[tuple[str, str], ...], name: str) -> exp.Values:
    """A VALUES table `name` of literals, every one cast to its column's type (NULLs typed alike on every engine)."""
    return exp.Values(
        expressions=[exp.Tuple(expressions=[exp.Cast(this=lit(v), to=cal_.data_type(t)) for v, (_, t) in zip(r, columns)])
                     for r in rows],
        alias=exp.TableAlias(this=ident(name), columns=[ident(c) for c, _ in columns]),
    )


def _horizon_rows(items: list[Item], as_of: dt.date, cal: Calendar) -> exp.Values:
    """__v: a row per KPI, grain and horizon, with what its method needs (period_start and period_end are the
    horizon period's, which targets.form_expression reads)."""
    rows = []
    for it in items:
        unit, k = cal_.STEP[it.grain]
        for h in it.horizons:
            since, factor = run_rate_span(it.kpi, h, as_of, cal) if it.method == RUN_RATE else (None, None)
            rows.append((it.kpi.name, it.grain, h.kind, h.start, h.end, it.method, float(it.periods), since, factor,
                         float(k) if unit == "DAY" else None, float(k) if unit != "DAY" else None))
    return _literal_rows(rows, _HORIZON_COLUMNS, "__v")


def _same(a: str, b: str, *names: str) -> exp.Expression:
    return exp.and_(*[exp.EQ(this=col(n, a), expression=col(n, b)) for n in names])


def _series_index(period_start: exp.Expression) -> exp.Expression:
    """period_index with the anchor and step read from __v: periods from the horizon's period to `period_start`."""
    anchor = col("period_start", "__v")
    days = exp.Div(this=double(exp.DateDiff(this=period_start.copy(), expression=anchor.copy(), unit=exp.Var(this="DAY"))),
                   expression=col("step_days", "__v"))
    months = exp.Add(
        this=exp.Mul(this=exp.Paren(this=exp.Sub(this=double(exp.Year(this=period_start.copy())),
                                                 expression=double(exp.Year(this=anchor.copy())))), expression=lit(12.0)),
        expression=exp.Sub(this=double(exp.Month(this=period_start.copy())), expression=double(exp.Month(this=anchor.copy()))),
    )
    by_months = exp.Div(this=exp.Paren(this=months), expression=col("step_months", "__v"))
    return exp.Case(ifs=[exp.If(this=exp.Not(this=exp.Is(this=col("step_days", "__v"), expression=exp.Null())), true=days)],
                    default=by_months)


def _batch_fits(items: list[Item], horizon_rows: exp.Values, schema: str, as_of: dt.date) -> exp.Query:
    """(name, grain, horizon, forecast) of every KPI of the chunk that has one: least squares and run rates, each
    over the KPIs of its method only (a method no KPI of the chunk uses has no branch: PostgreSQL still read
    kpi_status and tried every row against every horizon for it)."""
    def method_of(method: str) -> list[str]:
        return sorted({it.kpi.name for it in items if it.method == method})

    total = exp.EQ(this=col("dimension", "__s"), expression=lit(""))
    fits: list[exp.Query] = []
    if names := method_of(LEAST_SQUARES):
        fits.append(_least_squares_fits(names, horizon_rows, schema, as_of, total))
    if names := method_of(RUN_RATE):
        fits.append(_run_rate_fits(names, horizon_rows, schema, as_of, total))
    return union_all(fits)


def _least_squares_fits(names: list[str], horizon_rows: exp.Values, schema: str, as_of: dt.date,
                        total: exp.Expression) -> exp.Query:
    """The least-squares line of each KPI in `names` at each horizon, through its last complete periods."""
    in_chunk = exp.In(this=col("name", "__s"), expressions=[lit(n) for n in names])
    latest = exp.Window(this=exp.RowNumber(), partition_by=[col("name", "__s"), col("grain", "__s")],
                        order=exp.Order(expressions=[exp.Ordered(this=col("period_start", "__s"), desc=True)]))
    ranked = (exp.select(col("name", "__s"), col("grain", "__s"), col("period_start", "__s"), col("value", "__s"), alias(latest, "__rn"))
              .from_(qualified(schema, "kpi_status", "__s"), copy=False)
              .where(exp.and_(total, in_chunk, exp.LTE(this=col("period_end", "__s"), expression=lit(as_of))), copy=False))
    key = [col("name", "__v"), col("grain", "__v"), col("horizon", "__v")]
    points = (exp.select(*[c.copy() for c in key], alias(double(col("value", "__l")), "y"),
                         alias(_series_index(col("period_start", "__l")), "x"))
              .from_(_sub(ranked, "__l"), copy=False)
              .join(horizon_rows.copy(), on=_same("__l", "__v", "name", "grain"), join_type="INNER", copy=False)
              .where(exp.and_(exp.EQ(this=col("method", "__v"), expression=lit(LEAST_SQUARES)),
                              exp.LTE(this=double(col("__rn", "__l")), expression=col("periods", "__v")),
                              exp.Not(this=exp.Is(this=col("value", "__l"), expression=exp.Null()))), copy=False))
    y, x = col("y", "__p"), col("x", "__p")
    sums = exp.select(
        *[col(c, "__p") for c in ("name", "grain", "horizon")],
        alias(double(exp.Count(this=exp.Star())), "n"),
        alias(exp.Sum(this=x.copy()), "sx"), alias(exp.Sum(this=y.copy()), "sy"),
        alias(exp.Sum(this=exp.Mul(this=x.copy(), expression=x.copy())), "sxx"),
        alias(exp.Sum(this=exp.Mul(this=x.copy(), expression=y.copy())), "sxy"),
    ).from_(_sub(points, "__p"), copy=False).group_by(*[col(c, "__p") for c in ("name", "grain", "horizon")], copy=False)
    n, sx, sy, sxx, sxy = (col(c, "__q") for c in ("n", "sx", "sy", "sxx", "sxy"))
    slope = safe_div(exp.Sub(this=exp.Mul(this=n.copy(), expression=sxy), expression=exp.Mul(this=sx.copy(), expression=sy.copy())),
                     exp.Sub(this=exp.Mul(this=n.copy(), expression=sxx), expression=exp.Mul(this=sx.copy(), expression=sx.copy())))
    intercept = safe_div(exp.Sub(this=sy.copy(), expression=exp.Mul(this=exp.Paren(this=slope), expression=sx.copy())), n.copy())
    return (exp.select(*[col(c, "__q") for c in ("name", "grain", "horizon")], alias(intercept, "forecast"))
            .from_(_sub(sums, "__q"), copy=False).where(exp.GTE(this=n.copy(), expression=lit(float(MIN_PERIODS))), copy=False))


def _run_rate_fits(names: list[str], horizon_rows: exp.Values, schema: str, as_of: dt.date,
                   total: exp.Expression) -> exp.Query:
    """The run rate of each to-date KPI in `names` at each horizon: its latest value so far times the factor."""
    in_chunk = exp.In(this=col("name", "__s"), expressions=[lit(n) for n in names])
    key = [col("name", "__v"), col("grain", "__v"), col("horizon", "__v")]
    per_horizon = exp.Window(this=exp.RowNumber(), partition_by=[c.copy() for c in key],
                             order=exp.Order(expressions=[exp.Ordered(this=col("period_start", "__s"), desc=True)]))
    so_far = (exp.select(*[c.copy() for c in key],
                         alias(exp.Mul(this=double(col("value", "__s")), expression=col("factor", "__v")), "forecast"),
                         alias(per_horizon, "__rn"))
              .from_(qualified(schema, "kpi_status", "__s"), copy=False)
              .join(horizon_rows.copy(), on=_same("__s", "__v", "name", "grain"), join_type="INNER", copy=False)
              .where(exp.and_(exp.EQ(this=col("method", "__v"), expression=lit(RUN_RATE)), total.copy(), in_chunk.copy(),
                              exp.Not(this=exp.Is(this=col("value", "__s"), expression=exp.Null())),
                              exp.GTE(this=col("period_start", "__s"), expression=col("since", "__v")),
                              exp.LT(this=col("period_start", "__s"), expression=lit(as_of))), copy=False))
    return (exp.select(*[col(c, "__r") for c in ("name", "grain", "horizon", "forecast")]).from_(_sub(so_far, "__r"), copy=False)
            .where(exp.EQ(this=col("__rn", "__r"), expression=exp.Literal.number(1)), copy=False))


def _baselines(items: list[Item], schema: str) -> exp.Select | None:
    """(name, grain, b): the mean of each relative target's total values in its baseline range (SPEC §2)."""
    ranges = [(it.kpi.name, it.grain, it.form.baseline.from_, it.form.baseline.to + dt.timedelta(days=1))
              for it in items if isinstance(it.form, RelativeTarget) and it.form.baseline.value is None]
    if not ranges:
        return None
    rows = _literal_rows(ranges, (("name", "VARCHAR"), ("grain", "VARCHAR"), ("b_from", "DATE"), ("b_to", "DATE")), "__r")
    return (exp.select(col("name", "__r"), col("grain", "__r"), alias(exp.Avg(this=col("value", "__x")), "b"))
            .from_(qualified(schema, "kpi_values", "__x"), copy=False)
            .join(rows, on=_same("__x", "__r", "name", "grain"), join_type="INNER", copy=False)
            .where(exp.and_(exp.EQ(this=col("dimension", "__x"), expression=lit("")),
                            exp.GTE(this=col("period_start", "__x"), expression=col("b_from", "__r")),
                            exp.LTE(this=col("period_end", "__x"), expression=col("b_to", "__r"))), copy=False)
            .group_by(col("name", "__r"), col("grain", "__r"), copy=False))


def _per_item(items: list[Item], table: str, made) -> exp.Expression:
    """CASE over the chunk's (name, grain) pairs of `made(item)`, read against `table`'s name and grain: one branch
    per distinct expression, for every pair that has it (the pairs are distinct, so the branches' order does not
    matter). Most pairs share their status rules: a branch per pair made the query several times as long, and
    Spark analyses and optimises every branch (bench/RESULTS.md, Spark)."""
    pairs: dict[exp.Expression, list[exp.Expression]] = {}
    for it in items:
        pairs.setdefault(made(it), []).append(exp.and_(exp.EQ(this=col("name", table), expression=lit(it.kpi.name)),
                                                       exp.EQ(this=col("grain", table), expression=lit(it.grain))))
    return exp.Case(ifs=[exp.If(this=exp.or_(*which) if len(which) > 1 else which[0], true=made_)
                         for made_, which in pairs.items()])


def batch_query(items: list[Item], schema: str, as_of: dt.date, project: ProjectDef) -> exp.Select:
    """kpi_forecast's rows of a chunk of (KPI, grain) pairs whose targets are expressions of the period (every form
    but a table's): their fits, joined to their horizons, each judged against its target there."""
    cal = project.config.calendar
    horizon_rows = _horizon_rows(items, as_of, cal)
    fits = _batch_fits(items, horizon_rows, schema, as_of)
    baselines = _baselines(items, schema)

    def target(it: Item) -> exp.Expression:
        baseline = None
        if isinstance(it.form, RelativeTarget):
            baseline = double(lit(float(it.form.baseline.value))) if it.form.baseline.value is not None else col("b", "__b")
        made = form_expression(it.kpi, it.form, cal, baseline)
        return double(made[0]) if made is not None else double(exp.Null())

    joined = (exp.select(col("name", "__v"), col("grain", "__v"), col("horizon", "__v"), col("period_end", "__v"),
                         col("method", "__v"), col("forecast", "__f"), alias(double(_per_item(items, "__v", target)), "target"))
              .from_(horizon_rows, copy=False)
              .join(_sub(fits, "__f"), on=_same("__v", "__f", "name", "grain", "horizon"), join_type="INNER", copy=False))
    if baselines is not None:
        joined = joined.join(_sub(baselines, "__b"), on=_same("__v", "__b", "name", "grain"), join_type="LEFT", copy=False)
    value, goal = col("forecast", "__t"), col("target", "__t")
    shown = {
        "name": col("name", "__t"), "grain": col("grain", "__t"), "horizon": col("horizon", "__t"), "as_of": lit(as_of),
        "horizon_end": col("period_end", "__t"), "forecast": double(value), "target_at_horizon": double(goal),
        "forecast_status": _per_item(items, "__t", lambda it: judged(it.kpi, it.grain, value, goal)),
        "method": col("method", "__t"),
    }
    assert list(shown) == FORECAST.column_names
    return exp.select(*[alias(e, c) for c, e in shown.items()]).from_(_sub(joined, "__t"), copy=False)


# --- the methods: a one-row subquery (alias __f) with the column `forecast`, or no row ------------------

def _sub(query: exp.Query, name: str) -> exp.Subquery:
    return exp.Subquery(this=query, alias=exp.TableAlias(this=ident(name)))


def _totals(kpi: Kpi, grain: str, schema: str, *more: exp.Expression) -> exp.Expression:
    """The KPI's total rows of kpi_status at `grain`, and `more`."""
    return exp.and_(
        exp.EQ(this=col("name"), expression=lit(kpi.name)),
        exp.EQ(this=col("grain"), expression=lit(grain)),
        exp.EQ(this=col("dimension"), expression=lit("")),
        *more,
    )


def _latest_first() -> exp.Window:
    return exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=[exp.Ordered(this=col("period_start"), desc=True)]))


def _has_value() -> exp.Expression:
    return exp.Not(this=exp.Is(this=col("value"), expression=exp.Null()))


def period_index(period_start: exp.Expression, anchor: dt.date, grain: str) -> exp.Expression:
    """Periods of `grain` from `anchor` (a period start) to `period_start` (another), as DOUBLE: whole numbers,
    both being starts of periods of the grain (fiscal quarters and years start on the first of a month)."""
    unit, k = cal_.STEP[grain]
    if unit == "DAY":
        days = exp.DateDiff(this=period_start, expression=cal_.date_literal(anchor), unit=exp.Var(this="DAY"))
        return exp.Div(this=double(days), expression=lit(float(k)))
    months = exp.Add(
        this=exp.Mul(this=exp.Paren(this=exp.Sub(this=double(exp.Year(this=period_start.copy())), expression=lit(float(anchor.year)))),
                     expression=lit(12.0)),
        expression=exp.Sub(this=double(exp.Month(this=period_start.copy())), expression=lit(float(anchor.month))),
    )
    return exp.Div(this=exp.Paren(this=months), expression=lit(float(k)))


def _least_squares(kpi: Kpi, grain: str, h: Horizon, schema: str, as_of: dt.date, periods: int, cal: Calendar) -> exp.Select:
    """The OLS line through the last `periods` complete periods' values, at x = 0 (the horizon's period):
    a = (Σy - b Σx) / n with b = (n Σxy - Σx Σy) / (n Σx² - (Σx)²)."""
    complete = _totals(kpi, grain, schema, exp.LTE(this=col("period_end"), expression=lit(as_of)))
    last = (exp.select(col("value"), alias(period_index(col("period_start"), h.start, grain), "x"), alias(_latest_first(), "__rn"))
            .from_(qualified(schema, "kpi_status"), copy=False).where(complete, copy=False))
    window = (exp.select(alias(double(col("value")), "y"), col("x")).from_(_sub(last, "__l"), copy=False)
              .where(exp.and_(exp.LTE(this=col("__rn"), expression=exp.Literal.number(periods)), _has_value()), copy=False))
    y, x = col("y"), col("x")
    sums = exp.select(
        alias(double(exp.Count(this=exp.Star())), "n"),
        alias(exp.Sum(this=x.copy()), "sx"),
        alias(exp.Sum(this=y.copy()), "sy"),
        alias(exp.Sum(this=exp.Mul(this=x.copy(), expression=x.copy())), "sxx"),
        alias(exp.Sum(this=exp.Mul(this=x.copy(), expression=y.copy())), "sxy"),
    ).from_(_sub(window, "__w"), copy=False)
    n, sx, sy, sxx, sxy = (col(c) for c in ("n", "sx", "sy", "sxx", "sxy"))
    slope = safe_div(exp.Sub(this=exp.Mul(this=n.copy(), expression=sxy), expression=exp.Mul(this=sx.copy(), expression=sy.copy())),
                     exp.Sub(this=exp.Mul(this=n.copy(), expression=sxx), expression=exp.Mul(this=sx.copy(), expression=sx.copy())))
    intercept = safe_div(exp.Sub(this=sy.copy(), expression=exp.Mul(this=exp.Paren(this=slope), expression=sx.copy())), n.copy())
    return (exp.select(alias(intercept, "forecast")).from_(_sub(sums, "__s"), copy=False)
            .where(exp.GTE(this=n.copy(), expression=lit(float(MIN_PERIODS))), copy=False))


def _run_rate(kpi: Kpi, grain: str, h: Horizon, schema: str, as_of: dt.date, cal: Calendar) -> exp.Select | None:
    """The value so far × (horizon_end - s) / (as_of - s), s the start of the to-date period holding `as_of`."""
    span = run_rate_span(kpi, h, as_of, cal)
    if span is None:
        return None  # past the to-date period (its value starts again), or nothing elapsed in it
    s = span[0]
    so_far = (exp.select(col("value"), alias(_latest_first(), "__rn")).from_(qualified(schema, "kpi_status"), copy=False)
              .where(_totals(kpi, grain, schema, exp.GTE(this=col("period_start"), expression=lit(s)),
                             exp.LT(this=col("period_start"), expression=lit(as_of)), _has_value()), copy=False))
    rate = exp.Div(this=exp.Mul(this=double(col("value")), expression=lit(float((h.end - s).days))),
                   expression=lit(float((as_of - s).days)))
    return (exp.select(alias(rate, "forecast")).from_(_sub(so_far, "__l"), copy=False)
            .where(exp.EQ(this=col("__rn"), expression=exp.Literal.number(1)), copy=False))


# --- the target at the horizon: a one-row subquery (alias __h) with the column `target` --------------

def _target_at_horizon(kpi: Kpi, grain: str, form, h: Horizon, schema: str, project: ProjectDef) -> exp.Select | None:
    period = exp.select(alias(lit(h.start), "period_start"), alias(lit(h.end), "period_end"))
    if isinstance(form, TableTarget):
        relation = build_relation(project, form.table, project.config.dialect, {})
        if relation is None:  # validation reports it (KPI151)
            return None
        rows = table_rows_query(form, relation, grain, project.config.calendar, project.config.dialect, by_slice=False)
        return (exp.select(alias(double(col("__target", "__tt")), "target")).from_(_sub(period, "__v"), copy=False)
                .join(_sub(rows, "__tt"), on=exp.EQ(this=col("__period", "__tt"), expression=col("period_start", "__v")),
                      join_type="LEFT", copy=False))
    baseline = None
    if isinstance(form, RelativeTarget):
        if form.baseline.value is not None:
            baseline = double(lit(float(form.baseline.value)))
        else:  # the mean of the total's values in the baseline range (NULL when none: no target)
            in_range = exp.and_(
                exp.EQ(this=col("name"), expression=lit(kpi.name)),
                exp.EQ(this=col("grain"), expression=lit(grain)),
                exp.EQ(this=col("dimension"), expression=lit("")),
                exp.GTE(this=col("period_start"), expression=lit(form.baseline.from_)),
                exp.LTE(this=col("period_end"), expression=lit(form.baseline.to + dt.timedelta(days=1))),
            )
            baseline = exp.Subquery(this=exp.select(exp.Avg(this=col("value"))).from_(qualified(schema, "kpi_values"), copy=False).where(in_range, copy=False))
    made = form_expression(kpi, form, project.config.calendar, baseline)
    if made is None:
        return None
    return exp.select(alias(double(made[0]), "target")).from_(_sub(period, "__v"), copy=False)


# --- the row ------------------------------------------------------------------------------------------

def judged(kpi: Kpi, grain: str, value: exp.Expression, target: exp.Expression) -> exp.Expression:
    """The status of `value` against `target` by the rules of SPEC §2 (the KPI's direction and bands)."""
    higher = kpi.direction != "lower_is_better"
    better = exp.GTE if higher else exp.LTE
    threshold = threshold_expression(kpi, grain, target)
    return exp.Case(
        ifs=[
            exp.If(this=exp.Is(this=value.copy(), expression=exp.Null()), true=lit(Status.NO_DATA.value)),
            exp.If(this=exp.Is(this=target.copy(), expression=exp.Null()), true=lit(Status.NO_TARGET.value)),
            exp.If(this=better(this=value.copy(), expression=target.copy()), true=lit(Status.ON_TRACK.value)),
            exp.If(this=better(this=value.copy(), expression=threshold), true=lit(Status.AT_RISK.value)),
        ],
        default=lit(Status.OFF_TRACK.value),
    )


def _row(kpi: Kpi, grain: str, h: Horizon, as_of: dt.date, method: str, fit: exp.Select, target: exp.Select) -> exp.Select:
    value, goal = col("forecast", "__f"), col("target", "__h")
    shown = {
        "name": lit(kpi.name), "grain": lit(grain), "horizon": lit(h.kind), "as_of": lit(as_of), "horizon_end": lit(h.end),
        "forecast": double(value), "target_at_horizon": double(goal),
        "forecast_status": judged(kpi, grain, value, goal), "method": lit(method),
    }
    assert list(shown) == FORECAST.column_names
    return (exp.select(*[alias(e, c) for c, e in shown.items()]).from_(_sub(fit, "__f"), copy=False)
            .join(_sub(target, "__h"), join_type="CROSS", copy=False))
