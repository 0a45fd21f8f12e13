"""Targets, thresholds and status as SQL (SPEC "Targets and status, precisely").

Targets are recomputed on every run from the YAML: for each KPI and grain a
SELECT over its rows in kpi_values gives the target and at-risk threshold of
every period; kpi_status then joins values with targets.

Which rows take their target from which form is a list of `Scope`s (SPEC §10): the total's from `target`, the
slices `slice_targets` lists from theirs, a table target's slices from its rows. Forms that are expressions of
the period share one SELECT (a CASE over the scopes); a relative target joins its baseline and a table target
the table's rows summed per period (and slice), both computed in the warehouse.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

from sqlglot import exp

from . import calendar as cal_
from .config import Calendar
from .dialects import null_safe_text_eq
from .loader import ProjectDef
from .model import (
    GRAINS, JUDGED_FIELDS, Kpi, PaceTarget, RelativeTarget, ScheduleTarget, TableTarget, ValueTarget,
)
from .planner import Relation, build_relation
from .sqlexpr import parse_snippet
from .sqlgen import (
    alias, col, cte_query, double, ident, lit, make_divisions_safe, model_ctes, safe_div, slice_value, union_all,
)
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


def form_expression(kpi: Kpi, form: Any, cal: Calendar, baseline: exp.Expression | None) -> tuple[exp.Expression, str] | None:
    """(target expression over __v's period_start/period_end, target_source) of one target form (not a table's,
    which is a join: see _table_branch), or None."""
    s, e = col("period_start", "__v"), col("period_end", "__v")
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
        null_safe_text_eq(col("dimension_value", a), col("dimension_value", b)),
    )


def _same_series(a: str, b: str, period: exp.Expression, also: exp.Expression | None = None) -> exp.Expression:
    """Rows of the same KPI, grain and slice, matched on `period` (and `also`)."""
    return exp.and_(
        exp.EQ(this=col("name", a), expression=col("name", b)),
        exp.EQ(this=col("grain", a), expression=col("grain", b)),
        period,
        _slice_match(a, b),
        *([also] if also is not None else []),
    )


@dataclass(frozen=True)
class Scope:
    """Which of a KPI's kpi_values rows at one grain take their target from one form: `rows` is a condition on
    them (alias __v). A table target gives a slice's target by joining on its slice (`by_slice`), or the period's
    (the total's, which slice_targets: true hands to every slice) on the period alone."""

    rows: exp.Expression
    form: Any
    by_slice: bool = False


def first_grain(kpi: Kpi, default_grain: str) -> str:
    """The KPI's first grain: the first it lists, else the project's default."""
    return kpi.declared_grains[0] if kpi.declared_grains else default_grain


def table_target_at(kpi: Kpi, grain: str, default_grain: str) -> TableTarget | None:
    """The KPI's table target when it gives targets at `grain` (its `grain`, by default the KPI's first)."""
    t = kpi.target
    if isinstance(t, TableTarget) and grain == (t.grain or first_grain(kpi, default_grain)):
        return t
    return None


def slice_target_forms(kpi: Kpi, grain: str) -> list[tuple[str, str, Any]]:
    """(dimension, slice value, form) of every slice `slice_targets` lists that has a target at `grain`."""
    listed = kpi.slice_targets if isinstance(kpi.slice_targets, dict) else {}
    out = []
    for dimension, slices in listed.items():
        for value, spec in slices.items():
            form = spec.get(grain) if isinstance(spec, dict) else spec
            if form is not None and not isinstance(form, TableTarget):  # a table target there is KPI153
                out.append((dimension, value, form))
    return out


def _dimension_is(name: str) -> exp.Expression:
    return exp.EQ(this=col("dimension", "__v"), expression=lit(name))


def _dimension_in(names: list[str]) -> exp.Expression:
    return exp.In(this=col("dimension", "__v"), expressions=[lit(n) for n in names])


def _slice_is(dimension: str, value: str) -> exp.Expression:
    return exp.and_(_dimension_is(dimension), exp.EQ(this=col("dimension_value", "__v"), expression=lit(value)))


def target_scopes(kpi: Kpi, grain: str, default_grain: str) -> list[Scope]:
    """Where each row's target comes from (SPEC §10): the total's from `target`; a slice that `slice_targets` lists
    from its own form; another slice of a table target's `dimensions` from the table's rows of that slice; any
    other slice from the total's target when `slice_targets: true`, else none."""
    table = table_target_at(kpi, grain, default_grain)
    total = form_for_grain(kpi, grain)
    if isinstance(total, TableTarget) and table is None:
        total = None  # a table gives targets at its own grain only
    table_dims = list(table.dimensions) if table is not None else []
    listed = slice_target_forms(kpi, grain)
    scopes: list[Scope] = []
    if total is not None:
        if kpi.slice_targets is True:
            rows = exp.Not(this=_dimension_in(table_dims)) if table_dims else exp.true()
        else:
            rows = _dimension_is("")
        scopes.append(Scope(rows, total))
    for dimension, value, form in listed:
        scopes.append(Scope(_slice_is(dimension, value), form))
    if table_dims:
        # a slice that slice_targets lists keeps its own target, even where the table has a row for it
        written = isinstance(kpi.slice_targets, dict)
        overridden = [exp.Paren(this=exp.and_(_dimension_is(d), exp.In(this=col("dimension_value", "__v"),
                                                                         expressions=[lit(v) for v in kpi.slice_targets[d]])))
                      for d in table_dims if written and kpi.slice_targets.get(d)]
        rows = _dimension_in(table_dims)
        if overridden:
            rows = exp.and_(rows, exp.Not(this=exp.Paren(this=exp.or_(*overridden))))
        scopes.append(Scope(rows, table, by_slice=True))
    return scopes


_SERIES = ("name", "grain", "period_start", "dimension", "dimension_value")


def _branch(target: exp.Expression, source: exp.Expression, schema: str, where: exp.Expression) -> exp.Select:
    """The KPI's kpi_values rows (__v) that `where` picks, with a target and its source."""
    return (
        exp.select(*[col(c, "__v") for c in _SERIES], alias(target, "target"), alias(source, "target_source"))
        .from_(qualified(schema, "kpi_values", "__v"))
        .where(where, copy=False)
    )


def _own(kpi: Kpi, grain: str) -> exp.Expression:
    return exp.and_(
        exp.EQ(this=col("name", "__v"), expression=lit(kpi.name)),
        exp.EQ(this=col("grain", "__v"), expression=lit(grain)),
    )


def _relative_branch(kpi: Kpi, grain: str, scope: Scope, cal: Calendar, schema: str,
                     kept: KeptPeriods | None = None) -> exp.Select | None:
    """A relative target: each slice's baseline is the mean of its own values in the baseline range. Of a KPI
    `kept` names, the rows the run wrote alone."""
    form: RelativeTarget = scope.form
    in_range = _baseline_rows(kpi.name, grain, form)
    joins = []
    if in_range is None:
        baseline = double(lit(float(form.baseline.value)))
    else:
        per_slice = (
            exp.select(col("dimension"), col("dimension_value"), alias(exp.Avg(this=col("value")), "b"))
            .from_(qualified(schema, "kpi_values"))
            .where(in_range)
            .group_by(col("dimension"), col("dimension_value"))
        )
        joins.append((exp.Subquery(this=per_slice, alias=exp.TableAlias(this=ident("__b"))), _slice_match("__b", "__v")))
        baseline = col("b", "__b")
    made = form_expression(kpi, form, cal, baseline)
    if made is None:
        return None
    target, source = made
    written = [kept.written("__v", [kpi.name])] if kept is not None and kpi.name in kept.names else []
    branch = _branch(target, lit(source), schema, exp.and_(_own(kpi, grain), exp.Paren(this=scope.rows), *written))
    for rel, on in joins:
        branch = branch.join(rel, on=on, join_type="LEFT", copy=False)
    return branch


def _snippet_tree(text: str, dialect: str) -> exp.Expression:
    """A validated snippet of the project's SQL, as a fresh tree without table qualifiers."""
    tree, _ = parse_snippet(text, dialect)
    tree = tree.copy()
    for column in tree.find_all(exp.Column):
        for part in ("table", "db", "catalog"):
            column.set(part, None)
    return tree


def table_rows_query(target: TableTarget, relation: Relation, grain: str, cal: Calendar, dialect: str,
                     by_slice: bool) -> exp.Select:
    """The table's targets at `grain`, computed in the warehouse: per period (__period) the sum of `value` over
    the rows that pass `filter` whose `period` falls in it, and with `by_slice` per slice (__dimension, __slice)
    of each of `dimensions`. Several rows of one period and slice add up, as the lines of a budget do."""
    period = cal_.period_start(_snippet_tree(target.period, dialect), grain, cal)
    amount = exp.Sum(this=double(_snippet_tree(target.value, dialect)))
    where = make_divisions_safe(_snippet_tree(target.filter, dialect), copy=False) if target.filter else None

    def rows(*columns: tuple[exp.Expression, str]) -> exp.Select:
        q = exp.select(alias(period.copy(), "__period"), *[alias(c, a) for c, a in columns], alias(amount.copy(), "__target"))
        q = q.from_(relation.table.copy())
        if where is not None:
            q = q.where(where.copy(), copy=False)
        return q.group_by(period.copy(), *[c.copy() for c, _ in columns if not isinstance(c, exp.Literal)], copy=False)

    if not by_slice:
        body = rows()
    else:
        parts = [rows((lit(d), "__dimension"), (slice_value(_snippet_tree(c, dialect)), "__slice"))
                 for d, c in target.dimensions.items()]
        body = parts[0] if len(parts) == 1 else exp.select(
            *[col(c) for c in ("__period", "__dimension", "__slice", "__target")]
        ).from_(exp.Subquery(this=union_all(parts), alias=exp.TableAlias(this=ident("__u"))))
    return cte_query(model_ctes(relation), body)


def _table_branch(kpi: Kpi, grain: str, scope: Scope, cal: Calendar, schema: str, project: ProjectDef) -> exp.Select | None:
    target: TableTarget = scope.form
    relation = build_relation(project, target.table, project.config.dialect, {})
    if relation is None:  # validation reports it (KPI151); nothing to join
        return None
    rows = table_rows_query(target, relation, grain, cal, project.config.dialect, scope.by_slice)
    on = exp.EQ(this=col("__period", "__tt"), expression=col("period_start", "__v"))
    if scope.by_slice:
        on = exp.and_(on, exp.EQ(this=col("__dimension", "__tt"), expression=col("dimension", "__v")),
                      exp.EQ(this=col("__slice", "__tt"), expression=col("dimension_value", "__v")))
    branch = _branch(col("__target", "__tt"), lit("table"), schema, exp.and_(_own(kpi, grain), exp.Paren(this=scope.rows)))
    return branch.join(exp.Subquery(this=rows, alias=exp.TableAlias(this=ident("__tt"))), on=on, join_type="INNER", copy=False)


def table_probe(kpi: Kpi, project: ProjectDef) -> exp.Select | None:
    """A query that reads nothing but fails as the KPI's table target would (a table or column that is not in the
    warehouse, a filter of the wrong type), to run before publishing; None when the KPI has no table target."""
    target = kpi.target
    if not isinstance(target, TableTarget):
        return None
    relation = build_relation(project, target.table, project.config.dialect, {})
    if relation is None:
        return None
    grain = target.grain or first_grain(kpi, project.config.defaults.grain)
    rows = table_rows_query(target, relation, grain, project.config.calendar, project.config.dialect,
                            by_slice=bool(target.dimensions))
    return (exp.select(exp.Literal.number(1)).from_(exp.Subquery(this=rows, alias=exp.TableAlias(this=ident("__p"))))
            .where(exp.false()))


def _is_plain(scope: Scope) -> bool:
    """Whether the scope's target is an expression of the period (a number, schedule or pace)."""
    return not isinstance(scope.form, (RelativeTarget, TableTarget))


def _targets_select(rows: exp.Query, threshold: exp.Expression) -> exp.Select:
    """kpi_targets' columns from `rows` (alias __t: the series, target and target_source), its rows with a target."""
    return (
        exp.select(
            *[col(c, "__t") for c in _SERIES], col("target", "__t"), alias(double(threshold), "at_risk_threshold"),
            col("target_source", "__t"),
        )
        .from_(exp.Subquery(this=rows, alias=exp.TableAlias(this=ident("__t"))))
        .where(exp.Not(this=exp.Is(this=col("target", "__t"), expression=exp.Null())))
    )


@dataclass(frozen=True)
class KeptPeriods:
    """What an incremental run keeps of kpi_targets and kpi_status (runner._kept_statuses): the rows of `names`
    before each one's range, which read nothing that changed."""
    names: tuple[str, ...]
    run_id: int  # the run: the values it wrote are those of the periods it recomputes
    earliest: dt.date  # the earliest start of their ranges: no recomputed period, nor its previous one, ends before

    def only(self, alias_: str, condition: exp.Expression, among: Iterable[str]) -> exp.Expression:
        """`condition`, for the rows (alias `alias_`) of the kept KPIs, in a query of the KPIs `among`: every
        condition a plain one on a row, and `condition` alone where every KPI of the query is kept (an OR with
        the names hides the range from the engine's scan of the table: DuckDB read kpi_status' 1.4 M rows whole)."""
        if set(among) <= set(self.names):
            return condition
        kept_kpi = exp.In(this=col("name", alias_), expressions=[lit(n) for n in self.names])
        return exp.Paren(this=exp.or_(exp.Not(this=kept_kpi), condition))

    def written(self, alias_: str, among: Iterable[str]) -> exp.Expression:
        """The kpi_values rows (alias `alias_`) the run wrote, for the kept KPIs: those of the periods it recomputes."""
        return self.only(alias_, exp.EQ(this=col("run_id", alias_), expression=exp.Literal.number(self.run_id)), among)


PLAIN_CHUNK = 200  # (KPI, grain) pairs per query of plain_targets_queries: one read of kpi_values each, bounded CASEs


def _plain_rows(pairs: list[tuple[Kpi, str]], cal: Calendar, schema: str, default_grain: str,
                kept: KeptPeriods | None = None) -> tuple[exp.Select, list[exp.If]] | None:
    """The kpi_values rows (__v) of `pairs` whose targets are expressions of the period (a number, schedule or
    pace), each with the target and source of its pair's first matching scope (a CASE, in scope order), and each
    pair's at-risk threshold as a CASE branch over __t; None when no pair has such a target. Of the KPIs `kept`
    names, the rows the run wrote alone: their targets before the run's range stay as published."""
    picked: list[tuple[exp.Expression, exp.Expression, str]] = []  # (its rows, target, source), in scope order
    thresholds: list[exp.If] = []
    names: dict[str, None] = {}
    for kpi, grain in pairs:
        made = [(s.rows, form_expression(kpi, s.form, cal, None))
                for s in target_scopes(kpi, grain, default_grain) if _is_plain(s)]
        made = [(exp.and_(_own(kpi, grain), exp.Paren(this=rows.copy())), m) for rows, m in made if m is not None]
        if not made:
            continue
        names[kpi.name] = None
        picked.extend((rows, target, source) for rows, (target, source) in made)
        own = exp.and_(exp.EQ(this=col("name", "__t"), expression=lit(kpi.name)),
                       exp.EQ(this=col("grain", "__t"), expression=lit(grain)))
        thresholds.append(exp.If(this=own, true=double(threshold_expression(kpi, grain, col("target", "__t")))))
    if not picked:
        return None
    target = exp.Case(ifs=[exp.If(this=rows.copy(), true=t) for rows, t, _ in picked])
    source = exp.Case(ifs=[exp.If(this=rows.copy(), true=lit(src)) for rows, _, src in picked])
    anywhere = exp.and_(exp.In(this=col("name", "__v"), expressions=[lit(n) for n in names]),
                        exp.Paren(this=exp.or_(*[exp.Paren(this=rows) for rows, _, _ in picked])),
                        *([kept.written("__v", names)] if kept is not None and set(kept.names) & set(names) else []))
    return _branch(target, source, schema, anywhere), thresholds


def plain_targets_queries(pairs: list[tuple[Kpi, str]], cal: Calendar, schema: str, default_grain: str,
                          kept: KeptPeriods | None = None) -> list[exp.Select]:
    """kpi_targets' rows of the targets that are expressions of the period for many (KPI, grain) pairs at once:
    one read of kpi_values per PLAIN_CHUNK pairs (_plain_rows), as status and forecasts read every KPI at once. A
    query per pair read kpi_values once each, which on Spark cost a run 8 s of planning and small scans
    (bench/RESULTS.md). Relative and table targets stay targets_query(..., plain=False)'s."""
    queries = []
    for i in range(0, len(pairs), PLAIN_CHUNK):
        made = _plain_rows(pairs[i:i + PLAIN_CHUNK], cal, schema, default_grain, kept)
        if made is not None:
            queries.append(_targets_select(made[0], exp.Case(ifs=made[1])))
    return queries


def targets_query(kpi: Kpi, grain: str, cal: Calendar, schema: str, project: ProjectDef | None = None, *,
                  plain: bool = True, kept: KeptPeriods | None = None) -> exp.Select | None:
    """Rows of kpi_targets for one KPI and grain, from its rows in kpi_values (and a table target's table, which
    needs `project` to resolve it). With plain=False, without the scopes whose targets are expressions of the
    period (a run computes those for every KPI at once: plain_targets_queries). With `kept`, of a KPI it names,
    the rows of the periods the run recomputes."""
    default_grain = project.config.defaults.grain if project is not None else GRAINS[2]
    branches: list[exp.Select] = []
    scopes = target_scopes(kpi, grain, default_grain)
    if plain and (made := _plain_rows([(kpi, grain)], cal, schema, default_grain)) is not None:
        branches.append(made[0])
    for s in scopes:
        if isinstance(s.form, RelativeTarget):
            q = _relative_branch(kpi, grain, s, cal, schema, kept)
        elif isinstance(s.form, TableTarget) and project is not None:
            q = _table_branch(kpi, grain, s, cal, schema, project)
        else:
            continue
        if q is not None:
            branches.append(q)
    if not branches:
        return None
    return _targets_select(union_all(branches), threshold_expression(kpi, grain, col("target", "__t")))


def _baseline_rows(name: str, grain: str, form: RelativeTarget) -> exp.Expression | None:
    """The kpi_values rows of the KPI at `grain` (every slice) whose periods lie within the baseline range of a
    relative target; None when it has no baseline range."""
    if form.baseline.value is not None:
        return None
    return exp.and_(
        exp.EQ(this=col("name"), expression=lit(name)),
        exp.EQ(this=col("grain"), expression=lit(grain)),
        exp.GTE(this=col("period_start"), expression=lit(form.baseline.from_)),
        exp.LTE(this=col("period_end"), expression=lit(form.baseline.to + dt.timedelta(days=1))),
    )


def baseline_range(kpi: Kpi, grain: str) -> exp.Expression | None:
    """The kpi_values rows of the KPI at `grain` (every slice) whose periods lie within the baseline range of
    its relative target there; None when the target at that grain has no baseline range."""
    form = form_for_grain(kpi, grain)
    return _baseline_rows(kpi.name, grain, form) if isinstance(form, RelativeTarget) else None


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


def status_expression(value: exp.Expression, target: exp.Expression, threshold: exp.Expression,
                      higher: exp.Expression) -> exp.Expression:
    """A period's status (SPEC §2) from its value, target and at-risk threshold; `higher`: a condition true where
    higher is better. kpi_status's rule, and `diff`'s for a target change's effect (diff.status_moves)."""

    def cmp(a, b):
        return exp.Case(ifs=[exp.If(this=higher.copy(), true=exp.GTE(this=a.copy(), expression=b.copy()))],
                        default=exp.LTE(this=a.copy(), expression=b.copy()))

    return exp.Case(
        ifs=[
            exp.If(this=exp.Is(this=value.copy(), expression=exp.Null()), true=lit(Status.NO_DATA.value)),
            exp.If(this=exp.Is(this=target.copy(), expression=exp.Null()), true=lit(Status.NO_TARGET.value)),
            exp.If(this=cmp(value, target), true=lit(Status.ON_TRACK.value)),
            exp.If(this=cmp(value, threshold), true=lit(Status.AT_RISK.value)),
        ],
        default=lit(Status.OFF_TRACK.value),
    )


def judgement_hash(kpi: Kpi, priority: str | None, project: ProjectDef) -> str:
    """What a KPI's kpi_status rows take besides its values (model.JUDGED_FIELDS: its targets, how they judge, the
    owner and strategy), its strategy's priority, and the calendar and default grain that place its targets.
    kpi_catalog keeps it as status_hash: a change recomputes every status of the KPI, where an incremental run
    otherwise writes those of the periods it recomputes alone (keeps_statuses)."""
    payload = kpi.model_dump(mode="json", include=set(JUDGED_FIELDS), by_alias=True)
    payload |= {"priority": priority, "calendar": project.config.calendar.model_dump(mode="json"),
                "default_grain": project.config.defaults.grain}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _reads_kept_only(scope: Scope, since: dt.date) -> bool:
    """Whether the targets of a scope read nothing an incremental run recomputing from `since` can change: an
    expression of the period (a number, schedule or pace), or a relative target whose baseline is a number or
    a range ending before `since` (its periods' values are kept). A table target reads a table, which may have
    changed."""
    if isinstance(scope.form, TableTarget):
        return False
    if isinstance(scope.form, RelativeTarget):
        base = scope.form.baseline
        return base.value is not None or base.to + dt.timedelta(days=1) <= since
    return True


def keeps_statuses(kpi: Kpi, since: dict[str, dt.date], default_grain: str) -> bool:
    """Whether the statuses and targets of a KPI's periods before an incremental run's range (`since`, by grain)
    can stay as they are while its judgement_hash is unchanged: every target it has at those grains reads
    nothing the run recomputes (_reads_kept_only). Else its statuses and targets are all written again."""
    return all(_reads_kept_only(s, g_since) for g, g_since in since.items() for s in target_scopes(kpi, g, default_grain))


def status_query(names: list[str], schema: str, as_of: dt.date, kept: KeptPeriods | None = None) -> exp.Select:
    """kpi_status rows for `names`: values joined with targets and the previous period. With `kept`, of the
    periods the run recomputes only, the joins reading the rows those can meet; every condition a plain one on a
    row, so the joins stay on every key (PostgreSQL's merge or hash of them holds however wrong its estimates
    of freshly written tables: with an anti-join on (name, grain) it merged every period with every other)."""
    v, t, p, c = "__v", "__t", "__p", "__c"
    higher = exp.EQ(this=col("direction", c), expression=lit("higher_is_better"))
    value, target, thr = col("value", v), col("target", t), col("at_risk_threshold", t)

    status = status_expression(value, target, thr, higher)
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
            on=_same_series(t, v, exp.EQ(this=col("period_start", t), expression=col("period_start", v)),
                            None if kept is None else kept.only(t, exp.GTE(this=col("period_start", t), expression=lit(kept.earliest)), names)),
            join_type="LEFT",
        )
        .join(
            qualified(schema, "kpi_values", p),
            # the previous period is the one that ends where this one starts
            on=_same_series(p, v, exp.EQ(this=col("period_end", p), expression=col("period_start", v)),
                            None if kept is None else kept.only(p, exp.GTE(this=col("period_end", p), expression=lit(kept.earliest)), names)),
            join_type="LEFT",
        )
        .where(exp.In(this=col("name", v), expressions=[lit(n) for n in names]) if kept is None else
               exp.and_(exp.In(this=col("name", v), expressions=[lit(n) for n in names]),
                        kept.written(v, names)))
    )
