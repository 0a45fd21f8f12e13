"""Targets, thresholds and status as SQL (SPEC "Targets and status, precisely").

Targets are recomputed on every run from the YAML: for each KPI and grain a
SELECT over its rows in kpi_values gives the target and at-risk threshold of
every period; kpi_status then joins values with targets.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlglot import exp

from . import calendar as cal_
from .config import Calendar
from .model import (
    GRAINS, Kpi, PaceTarget, RelativeTarget, ScheduleTarget, ValueTarget,
)
from .sqlgen import and_, alias, col, double, ident, lit, safe_div
from .status import Status
from .tables import qualified
from .units import is_number, parse_percent


def band_fraction(value: Any) -> tuple[float, bool] | None:
    """A tolerance or change: 0.05 -> (0.05, False); '5%' -> (0.05, True); else None."""
    if is_number(value):
        return float(value), False
    pct = parse_percent(value)
    return (pct, True) if pct is not None else None


def form_for_grain(kpi: Kpi, grain: str):
    """The target form that applies at `grain` (None: no target there)."""
    t = kpi.target
    if isinstance(t, dict):
        return t.get(grain)
    return t


def _per_grain(value: Any, grain: str) -> Any:
    if isinstance(value, dict) and value and all(k in GRAINS for k in value):
        return value.get(grain)
    return value


def _days(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    """Days from a to b, as DOUBLE."""
    return double(exp.DateDiff(this=b, expression=a, unit=exp.Var(this="DAY")))


def target_expression(kpi: Kpi, grain: str, cal: Calendar, baseline: exp.Expression | None) -> tuple[exp.Expression, str] | None:
    """(target expression over period_start/period_end, target_source), or None."""
    form = form_for_grain(kpi, grain)
    s, e = col("period_start", "__v"), col("period_end", "__v")
    if form is None:
        return None
    if is_number(form):
        return double(lit(float(form))), "value"
    if isinstance(form, ValueTarget):
        return double(lit(float(form.value))), "value"
    if isinstance(form, ScheduleTarget):
        entries = sorted(form.schedule, key=lambda x: x.from_, reverse=True)
        return exp.Case(
            ifs=[exp.If(this=exp.GTE(this=s.copy(), expression=lit(x.from_)), true=double(lit(float(x.value)))) for x in entries]
        ), "schedule"
    if isinstance(form, RelativeTarget):
        b = baseline
        to = form.baseline.to if form.baseline.value is None else form.baseline.as_of
        t0 = to + dt.timedelta(days=1)
        t1 = form.by + dt.timedelta(days=1)
        change = band_fraction(form.change)
        amount, is_pct = change if change else (0.0, False)
        goal = exp.Mul(this=b.copy(), expression=lit(1.0 + amount)) if is_pct else exp.Add(this=b.copy(), expression=lit(amount))
        after_t0 = exp.GT(this=e.copy(), expression=lit(t0))
        if form.path == "step":
            value = goal
        else:
            span = float((t1 - t0).days)
            frac = exp.Div(this=_days(lit(t0), e.copy()), expression=lit(span)) if span > 0 else lit(1.0)
            clamped = exp.Least(this=exp.Greatest(this=frac, expressions=[lit(0.0)]), expressions=[lit(1.0)])
            value = exp.Add(this=b.copy(), expression=exp.Mul(this=exp.Paren(this=exp.Sub(this=goal, expression=b.copy())), expression=clamped))
        return exp.Case(ifs=[exp.If(this=after_t0, true=double(value))]), "relative"
    if isinstance(form, PaceTarget):
        unit = kpi.window.to_date if kpi.window and kpi.window.to_date else "year"
        s0 = cal_.py_period_start(form.by, unit, cal)
        s0_end = cal_.py_add_periods(s0, 1, unit)
        t1 = form.by + dt.timedelta(days=1)
        span = float((t1 - s0).days)
        # a period belongs to the to-date period of its start date (a week that ends in January is December's)
        inside = exp.and_(exp.GTE(this=s.copy(), expression=lit(s0)), exp.LT(this=s.copy(), expression=lit(s0_end)))
        value = exp.Mul(this=lit(float(form.value)), expression=exp.Div(this=_days(lit(s0), e.copy()), expression=lit(span)))
        return exp.Case(ifs=[exp.If(this=inside, true=double(value))]), "pace"
    return None


def threshold_expression(kpi: Kpi, grain: str, target: exp.Expression) -> exp.Expression:
    higher = kpi.direction != "lower_is_better"
    band = _per_grain(kpi.at_risk_below if higher else kpi.at_risk_above, grain)
    if is_number(band):
        return double(lit(float(band)))
    tol = band_fraction(_per_grain(kpi.tolerance, grain))
    if tol is not None:
        delta = exp.Mul(this=exp.Abs(this=target.copy()), expression=lit(tol[0]))
        return exp.Sub(this=target.copy(), expression=delta) if higher else exp.Add(this=target.copy(), expression=delta)
    return target.copy()


def _slice_match(a: str, b: str) -> exp.Expression:
    return exp.and_(
        exp.EQ(this=col("dimension", a), expression=col("dimension", b)),
        exp.NullSafeEQ(this=col("dimension_value", a), expression=col("dimension_value", b)),
    )


def _same_series(a: str, b: str, period: exp.Expression) -> exp.Expression:
    """Rows of the same KPI, grain and slice, matched on `period`."""
    return exp.and_(
        exp.EQ(this=col("name", a), expression=col("name", b)),
        exp.EQ(this=col("grain", a), expression=col("grain", b)),
        period,
        _slice_match(a, b),
    )


def targets_query(kpi: Kpi, grain: str, cal: Calendar, schema: str) -> exp.Select | None:
    """Rows of kpi_targets for one KPI and grain, from its rows in kpi_values."""
    form = form_for_grain(kpi, grain)
    if form is None:
        return None
    values = qualified(schema, "kpi_values")
    own = and_(
        exp.EQ(this=col("name", "__v"), expression=lit(kpi.name)),
        exp.EQ(this=col("grain", "__v"), expression=lit(grain)),
        None if kpi.slice_targets else exp.EQ(this=col("dimension", "__v"), expression=lit("")),
    )
    baseline = None
    joins = []
    if isinstance(form, RelativeTarget):
        in_range = baseline_range(kpi, grain)
        if in_range is None:
            baseline = double(lit(float(form.baseline.value)))
        else:
            per_slice = (
                exp.select(col("dimension"), col("dimension_value"), alias(exp.Avg(this=col("value")), "b"))
                .from_(values.copy())
                .where(in_range)
                .group_by(col("dimension"), col("dimension_value"))
            )
            joins.append((exp.Subquery(this=per_slice, alias=exp.TableAlias(this=ident("__b"))), _slice_match("__b", "__v")))
            baseline = col("b", "__b")
    made = target_expression(kpi, grain, cal, baseline)
    if made is None:
        return None
    target, source = made
    threshold = threshold_expression(kpi, grain, col("target", "__t"))
    inner = exp.select(
        col("name", "__v"), col("grain", "__v"), col("period_start", "__v"), col("dimension", "__v"),
        col("dimension_value", "__v"), alias(target, "target"),
    ).from_(qualified(schema, "kpi_values", "__v"))
    for rel, on in joins:
        inner = inner.join(rel, on=on, join_type="LEFT", copy=False)
    inner = inner.where(own, copy=False)
    outer = (
        exp.select(
            col("name", "__t"), col("grain", "__t"), col("period_start", "__t"), col("dimension", "__t"),
            col("dimension_value", "__t"), col("target", "__t"), alias(double(threshold), "at_risk_threshold"),
            alias(lit(source), "target_source"),
        )
        .from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=ident("__t"))))
        .where(exp.Not(this=exp.Is(this=col("target", "__t"), expression=exp.Null())))
    )
    return outer


def baseline_range(kpi: Kpi, grain: str) -> exp.Expression | None:
    """The kpi_values rows of the KPI at `grain` (every slice) whose periods lie within the baseline range of
    its relative target there; None when the target at that grain has no baseline range."""
    form = form_for_grain(kpi, grain)
    if not isinstance(form, RelativeTarget) or form.baseline.value is not None:
        return None
    return exp.and_(
        exp.EQ(this=col("name"), expression=lit(kpi.name)),
        exp.EQ(this=col("grain"), expression=lit(grain)),
        exp.GTE(this=col("period_start"), expression=lit(form.baseline.from_)),
        exp.LTE(this=col("period_end"), expression=lit(form.baseline.to + dt.timedelta(days=1))),
    )


def with_baseline_query(ranges: list[exp.Expression], schema: str) -> exp.Select:
    """(name, grain) of each KPI total that has a value in its baseline range, for `ranges` of baseline_range:
    one scan of kpi_values for all of them."""
    return (
        exp.select(col("name"), col("grain")).distinct()
        .from_(qualified(schema, "kpi_values"))
        .where(exp.and_(
            exp.EQ(this=col("dimension"), expression=lit("")),
            exp.Not(this=exp.Is(this=col("value"), expression=exp.Null())),
            exp.or_(*[exp.Paren(this=r) for r in ranges]),
        ))
    )


def status_query(names: list[str], schema: str, as_of: dt.date) -> exp.Select:
    """kpi_status rows for `names`: values joined with targets and the previous period."""
    v, t, p, c = "__v", "__t", "__p", "__c"
    higher = exp.EQ(this=col("direction", c), expression=lit("higher_is_better"))
    value, target, thr = col("value", v), col("target", t), col("at_risk_threshold", t)

    def cmp(on_higher, on_lower, a, b):
        return exp.Case(ifs=[exp.If(this=higher.copy(), true=on_higher(this=a.copy(), expression=b.copy()))], default=on_lower(this=a.copy(), expression=b.copy()))

    status = exp.Case(
        ifs=[
            exp.If(this=exp.Is(this=value.copy(), expression=exp.Null()), true=lit(Status.NO_DATA.value)),
            exp.If(this=exp.Is(this=target.copy(), expression=exp.Null()), true=lit(Status.NO_TARGET.value)),
            exp.If(this=cmp(exp.GTE, exp.LTE, value, target), true=lit(Status.ON_TRACK.value)),
            exp.If(this=cmp(exp.GTE, exp.LTE, value, thr), true=lit(Status.AT_RISK.value)),
        ],
        default=lit(Status.OFF_TRACK.value),
    )
    attainment = exp.Case(
        ifs=[exp.If(this=higher.copy(), true=safe_div(value.copy(), target.copy()))],
        default=safe_div(target.copy(), value.copy()),
    )
    change = exp.Sub(this=value.copy(), expression=col("value", p))
    change_pct = safe_div(change.copy(), exp.Abs(this=col("value", p)))

    return (
        exp.select(
            col("name", v), col("grain", v), col("period_start", v), col("period_end", v), col("dimension", v),
            col("dimension_value", v), col("value", v), alias(target.copy(), "target"),
            alias(thr.copy(), "at_risk_threshold"), alias(status, "status"), alias(attainment, "attainment"),
            alias(col("value", p), "previous_value"), alias(change, "change"), alias(change_pct, "change_pct"),
            alias(exp.LTE(this=col("period_end", v), expression=lit(as_of)), "is_complete"),
            col("owner", c), col("strategy", c),
            alias(col("priority", c), "priority"), col("run_id", v),
        )
        .from_(qualified(schema, "kpi_values", v))
        .join(qualified(schema, "kpi_catalog", c), on=exp.EQ(this=col("name", c), expression=col("name", v)))
        .join(
            qualified(schema, "kpi_targets", t),
            on=_same_series(t, v, exp.EQ(this=col("period_start", t), expression=col("period_start", v))),
            join_type="LEFT",
        )
        .join(
            qualified(schema, "kpi_values", p),
            # the previous period is the one that ends where this one starts
            on=_same_series(p, v, exp.EQ(this=col("period_end", p), expression=col("period_start", v))),
            join_type="LEFT",
        )
        .where(exp.In(this=col("name", v), expressions=[lit(n) for n in names]))
    )
