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
kpi_values): one SELECT per KPI, grain and horizon, the dates and counts of days fixed here from the run's date
and the YAML. No fact row reaches Python.
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
from .sqlgen import alias, col, double, ident, lit, safe_div
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


def forecast_queries(kpi: Kpi, grains: list[str], schema: str, as_of: dt.date, project: ProjectDef) -> list[exp.Select]:
    """kpi_forecast's rows for one KPI: a query per grain with a target and per horizon."""
    cal = project.config.calendar
    default_grain = project.config.defaults.grain
    queries = []
    for grain in grains:
        form = target_at(kpi, grain, default_grain)
        if form is None:
            continue
        for h in horizons(form, grain, as_of, cal):
            if uses_run_rate(kpi, form):
                fit, method = _run_rate(kpi, grain, h, schema, as_of, cal), RUN_RATE
            else:
                fit, method = _least_squares(kpi, grain, h, schema, as_of, periods_setting(kpi, project), cal), LEAST_SQUARES
            if fit is None:
                continue
            target = _target_at_horizon(kpi, grain, form, h, schema, project)
            if target is None:
                continue
            queries.append(_row(kpi, grain, h, as_of, method, fit, target))
    return queries


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
            .from_(qualified(schema, "kpi_status")).where(complete))
    window = (exp.select(alias(double(col("value")), "y"), col("x")).from_(_sub(last, "__l"))
              .where(exp.and_(exp.LTE(this=col("__rn"), expression=exp.Literal.number(periods)), _has_value())))
    y, x = col("y"), col("x")
    sums = exp.select(
        alias(double(exp.Count(this=exp.Star())), "n"),
        alias(exp.Sum(this=x.copy()), "sx"),
        alias(exp.Sum(this=y.copy()), "sy"),
        alias(exp.Sum(this=exp.Mul(this=x.copy(), expression=x.copy())), "sxx"),
        alias(exp.Sum(this=exp.Mul(this=x.copy(), expression=y.copy())), "sxy"),
    ).from_(_sub(window, "__w"))
    n, sx, sy, sxx, sxy = (col(c) for c in ("n", "sx", "sy", "sxx", "sxy"))
    slope = safe_div(exp.Sub(this=exp.Mul(this=n.copy(), expression=sxy), expression=exp.Mul(this=sx.copy(), expression=sy.copy())),
                     exp.Sub(this=exp.Mul(this=n.copy(), expression=sxx), expression=exp.Mul(this=sx.copy(), expression=sx.copy())))
    intercept = safe_div(exp.Sub(this=sy.copy(), expression=exp.Mul(this=exp.Paren(this=slope), expression=sx.copy())), n.copy())
    return (exp.select(alias(intercept, "forecast")).from_(_sub(sums, "__s"))
            .where(exp.GTE(this=n.copy(), expression=lit(float(MIN_PERIODS)))))


def _run_rate(kpi: Kpi, grain: str, h: Horizon, schema: str, as_of: dt.date, cal: Calendar) -> exp.Select | None:
    """The value so far × (horizon_end - s) / (as_of - s), s the start of the to-date period holding `as_of`."""
    unit = kpi.window.to_date
    s = cal_.py_period_start(as_of, unit, cal)
    if h.end > cal_.py_add_periods(s, 1, unit) or as_of <= s:
        return None  # past the to-date period (its value starts again), or nothing elapsed in it
    so_far = (exp.select(col("value"), alias(_latest_first(), "__rn")).from_(qualified(schema, "kpi_status"))
              .where(_totals(kpi, grain, schema, exp.GTE(this=col("period_start"), expression=lit(s)),
                             exp.LT(this=col("period_start"), expression=lit(as_of)), _has_value())))
    rate = exp.Div(this=exp.Mul(this=double(col("value")), expression=lit(float((h.end - s).days))),
                   expression=lit(float((as_of - s).days)))
    return (exp.select(alias(rate, "forecast")).from_(_sub(so_far, "__l"))
            .where(exp.EQ(this=col("__rn"), expression=exp.Literal.number(1))))


# --- the target at the horizon: a one-row subquery (alias __h) with the column `target` --------------

def _target_at_horizon(kpi: Kpi, grain: str, form, h: Horizon, schema: str, project: ProjectDef) -> exp.Select | None:
    period = exp.select(alias(lit(h.start), "period_start"), alias(lit(h.end), "period_end"))
    if isinstance(form, TableTarget):
        relation = build_relation(project, form.table, project.config.dialect, {})
        if relation is None:  # validation reports it (KPI151)
            return None
        rows = table_rows_query(form, relation, grain, project.config.calendar, project.config.dialect, by_slice=False)
        return (exp.select(alias(double(col("__target", "__tt")), "target")).from_(_sub(period, "__v"))
                .join(_sub(rows, "__tt"), on=exp.EQ(this=col("__period", "__tt"), expression=col("period_start", "__v")),
                      join_type="LEFT"))
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
            baseline = exp.Subquery(this=exp.select(exp.Avg(this=col("value"))).from_(qualified(schema, "kpi_values")).where(in_range))
    made = form_expression(kpi, form, project.config.calendar, baseline)
    if made is None:
        return None
    return exp.select(alias(double(made[0]), "target")).from_(_sub(period, "__v"))


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
    return (exp.select(*[alias(e, c) for c, e in shown.items()]).from_(_sub(fit, "__f"))
            .join(_sub(target, "__h"), join_type="CROSS"))
