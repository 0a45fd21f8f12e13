"""A metric of dbt's semantic layer resolved to what a KPI computes (SPEC §9).

`resolve_metric` turns a metric KPI into a `ResolvedMetric`: the semantic model's relation and time column, and
the sqlglot trees a measure or ratio KPI has (aggregates of the measures, their filters as FILTER (WHERE ...), the
metric's filter as the KPI's row filter), a window, a fill, the dimensions' column expressions, the entity joins
they need and the offsets of a derived metric's inputs. The planner plans a metric KPI as that measure or ratio,
so metric KPIs over one semantic model share its fused scan with every other KPI over it.

Filters are SQL with Jinja call sites: each `{{ Dimension('entity__dim') }}`, `{{ TimeDimension(...) }}` and
`{{ Entity(...) }}` is replaced by a placeholder column, the text parsed by sqlglot (grammar checked like project
SQL), and each placeholder replaced by the dimension's or entity's own parsed expression. Nothing else of
a filter is treated as Jinja. A dimension of another semantic model (`customer__region`) is a column that a LEFT
JOIN by the entity adds (`joined_relation`); an input's `offset_window` reads a copy of the rows shifted by it,
and an input's `offset_to_grain` a copy of the rows moved, per KPI grain, to the periods that read them as
MetricFlow does (`offset_relation`, one relation per grain).

A ratio or derived metric whose inputs read several semantic models (or time dimensions) reads their rows as one
relation (`union_relation`): a branch per model projecting its metric_time, the KPI's dimensions (each resolved in
that model, through its own entity joins) and, per measure read, the measure's argument and its filters as a
flag; each aggregate reads its own columns. Grouped by period and slice, an input with no rows in a group is NULL
there: MetricFlow's full outer join of its inputs on metric_time and the group-by.

What is not computed (conversion metrics, non_additive_dimension, offset_to_grain over several semantic models,
...) is KPI173, naming the metric, its file and line, and the feature.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass
from typing import NamedTuple

from sqlglot import exp

from ..errors import Issue, Location, error
from ..sqlexpr import parse_snippet
from ..yamlio import shown
from .semantic import Dimension, Measure, MeasureInput, Metric, MetricInput, SemanticLayer, SemanticModel, place

TIME_GRAINS = ("day", "week", "month", "quarter", "year")
TO_GRAINS = TIME_GRAINS  # the offset_to_grain computed (to_grain_copy); a finer one is KPI173
ALL_TIME_PERIODS = 100_000_000  # a trailing window of this many periods is every period the data has
_CALL = re.compile(r"\{\{\s*(Dimension|TimeDimension|Entity)\s*\(([^(){}]*)\)\s*\}\}")
_PLACEHOLDER = "__kpim_semantic_{}"


class Offset(NamedTuple):
    """A derived metric input's offset: its rows' copy (OFFSET_COLUMN) and `count` `unit`s of offset_window, or,
    with `count` None, offset_to_grain `unit` (to_grain_copy)."""

    copy: int
    count: int | None
    unit: str


@dataclass
class ResolvedMetric:
    """What a metric KPI computes, in the terms of a measure or ratio KPI."""

    metric: Metric
    model: SemanticModel
    form: str  # measure | ratio
    trees: dict[str, exp.Expression]  # by role: measure, or numerator and denominator
    time: exp.Expression
    filter: exp.Expression | None
    window: tuple[str, object] | None  # ("periods", n) | ("to_date", unit)
    fill_zero: bool
    dimension_exprs: dict[str, exp.Expression]
    definition: str  # the resolved definition, for the definition hash
    joins: tuple[Join, ...] = ()  # other semantic models joined by entities
    offsets: tuple[Offset, ...] = ()  # each offset_window and offset_to_grain (offset_relation)
    base_time: exp.Expression | None = None  # with offsets, the time column before its shift (`time` is the shifted)
    branches: tuple[Branch, ...] = ()  # inputs over several semantic models: one branch each (union_relation)
    time_grain: str = "day"  # the time dimension's granularity: what offset_to_grain reads above its grain

    def offset_periods(self, grain: str) -> int:
        """The longest offset in periods of `grain` (0 without offsets): how far its periods run past the data's,
        so how many more periods an incremental run recomputes."""
        return max((_window_periods(count, unit, grain) or 0 if count is not None else _to_grain_periods(unit, grain)
                    for _, count, unit in self.offsets), default=0)

    @property
    def per_grain(self) -> bool:
        """Whether its relation differs by grain (an offset_to_grain: offset_relation(..., grain))."""
        return any(o.count is None for o in self.offsets)

    @property
    def label(self) -> str | None:
        return self.metric.label

    @property
    def description(self) -> str | None:
        return self.metric.description


BASE_ALIAS = "__kpim_base"


@dataclass(frozen=True)
class Join:
    """A semantic model joined to the metric's own (or to another join) by an entity: LEFT JOIN its relation AS
    alias ON left = right (both qualified), adding each of its dimensions as a column (`columns`: name, expr)."""

    alias: str
    model: SemanticModel
    left: exp.Expression
    right: exp.Expression
    columns: tuple[tuple[str, exp.Expression], ...] = ()


@dataclass(frozen=True)
class Branch:
    """A semantic model's rows in the relation of a metric over several (union_relation): `columns` (name, expr
    over the model's relation, joined by `joins`) in the same order in every branch."""

    model: SemanticModel
    joins: tuple[Join, ...]
    columns: tuple[tuple[str, exp.Expression], ...]


UNION_TIME = "__kpim_metric_time"


def union_relation(resolved: "ResolvedMetric", table_of) -> exp.Query:
    """The rows of every branch's semantic model, one UNION ALL (`table_of(branch)`: the table it reads)."""
    out: exp.Query | None = None
    for branch in resolved.branches:
        select = exp.select(*[exp.alias_(tree.copy(), name, quoted=True) for name, tree in branch.columns])
        select = select.from_(table_of(branch), copy=False)
        out = select if out is None else exp.Union(this=out, expression=select, distinct=False)
    assert out is not None
    return out


def joined_column(alias: str, dimension: str) -> str:
    return f"{alias}__{dimension}"


def _qualified(tree: exp.Expression, alias: str) -> exp.Expression:
    tree = tree.copy()
    columns = list(tree.find_all(exp.Column))
    for column in columns:
        column.set("table", exp.to_identifier(alias, quoted=True))
    return tree


def joined_relation(model: SemanticModel, joins, table_of) -> exp.Select:
    """A semantic model with the models joined to it by entities: SELECT base.*, every dimension of each joined
    model FROM base LEFT JOIN ... (a CTE of the metric KPIs' relation). The joins of every metric KPI over the
    model, so that they share one scan; a LEFT JOIN to a primary (unique, natural) entity adds no rows, and so
    changes no value of a KPI that does not read it. `table_of(model)` is the table a semantic model reads."""
    joins = sorted(joins, key=lambda j: (j.alias.count("__"), j.alias))  # each after the join it starts from
    select = exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier(BASE_ALIAS, quoted=True)),
                        *[exp.alias_(tree.copy(), name, quoted=True) for j in joins for name, tree in j.columns])
    select = select.from_(exp.alias_(table_of(model), BASE_ALIAS, table=True, quoted=True), copy=False)
    for join in joins:
        select = select.join(exp.alias_(table_of(join.model), join.alias, table=True, quoted=True),
                             on=exp.EQ(this=join.left.copy(), expression=join.right.copy()), join_type="LEFT",
                             copy=False)
    return select


class _Problem(Exception):
    def __init__(self, code: str, message: str, where: Location | None, hint: str | None = None):
        super().__init__(message)
        self.issue = error(code, message, where, hint)


def _unsupported(metric: Metric, what: str) -> _Problem:
    return _Problem("KPI173", f"metric '{metric.name}' ({place(metric)}): {what} is not supported by kpimetrics",
                    metric.where, "compute it as a measure or derived KPI over the dbt model, or change the metric "
                                  "(README: KPIs over dbt's semantic layer)")


def _suggest(word: str, names) -> str:
    import difflib

    close = difflib.get_close_matches(word, sorted(names), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Resolver:
    """One metric KPI's resolution: over one semantic model and time dimension, or over several by a resolver per
    (model, time), its branches (union_relation)."""

    def __init__(self, layer: SemanticLayer, top: Metric, dialect: str,
                 branch: tuple[SemanticModel, str] | None = None):
        self.layer, self.top, self.dialect = layer, top, dialect
        self.model: SemanticModel | None = branch[0] if branch else None
        self.time: str | None = branch[1] if branch else None
        self.used: dict[str, str] = {}  # the metrics read, by name: their JSON (for the hash)
        # inputs over several semantic models (or time dimensions): a resolver per (model, time) for what is
        # read of that model, and each measure read (a leaf): its branch, argument and filter (union_relation)
        self.branches: dict[tuple[str, str], _Resolver] = {}
        self.leaves: list[list] = []
        keys = [] if branch else _branch_keys(layer, top, set())
        if len(keys) > 1:
            for name, time in keys:
                sub = self.branches[(name, time)] = _Resolver(layer, top, dialect, (layer.models[name], time))
                sub.used = self.used
            self.model, self.time = layer.models[keys[0][0]], keys[0][1]
        self.joins: dict[str, Join] = {}  # by entity path ("customer", "customer__area")
        # offset_window of an input metric: the rows again, their time shifted by it (offset_relation); every
        # aggregate then reads the copy of its offset (0: the rows as they are), by OFFSET_COLUMN
        self.offsets: dict[tuple[int | None, str], int] = {}  # offset_to_grain: (None, grain)
        self.offset_mode = _has_offsets(top, layer, set())

    # - SQL of the dbt project -
    def sql(self, text: str, metric: Metric, what: str) -> exp.Expression:
        tree, problem = parse_snippet(text, self.dialect)
        if tree is None:
            raise _Problem("KPI176", f"metric '{metric.name}' ({place(metric)}): {what} {shown(text, 80)}: "
                                     f"{problem.message if problem else 'does not parse'}", metric.where)
        return tree.copy()

    def bind(self, measure: Measure, model: SemanticModel, metric: Metric) -> None:
        """The metric's semantic model and time dimension, from its first measure (every measure of a resolver
        without branches has the same: _branch_keys)."""
        time = measure.agg_time_dimension or model.default_time
        if time is None:
            raise _unsupported(metric, f"measure '{measure.name}' has no agg_time_dimension, so it")
        if self.model is None:
            self.model, self.time = model, time

    # - dimensions, entities and filters -
    def dimension(self, name: str, metric: Metric, grain: str | None = None) -> exp.Expression:
        """`entity__dimension` (or `metric_time`) of the metric's semantic model as a column expression."""
        model = self.model
        assert model is not None and self.time is not None
        parts = name.split("__")
        if name == "metric_time" or (len(parts) == 2 and parts[0] == "metric_time"):
            tree = self.time_expr(metric)
            return self.truncated(tree, grain or (parts[1] if len(parts) == 2 else None), metric, name)
        if len(parts) < 2 or not all(parts):
            raise _Problem("KPI175", f"metric '{metric.name}': dimension '{name}' is not written as MetricFlow names "
                                     f"it, `entity__dimension`{self.suggest(name)}", metric.where)
        if len(parts) > 2 and parts[-1] in TIME_GRAINS and grain is None:
            return self.dimension("__".join(parts[:-1]), metric, parts[-1])
        *path, dim = parts
        if len(path) == 1 and path[0] in model.own_entities() and model.dimension(dim) is not None:
            return self.local_dimension(model, model.dimension(dim), metric, name, grain, None)
        # through entities: each a join from the model reached so far to the one whose primary (unique, natural)
        # entity it is, as MetricFlow joins them (many to one, or one to one: never a fan-out)
        current, alias = model, None
        for i, entity in enumerate(path):
            if current.entity(entity) is None:
                raise _Problem("KPI175", f"metric '{metric.name}': dimension '{name}': semantic model "
                                         f"'{current.name}' has no entity '{entity}'"
                                         f"{_suggest(entity, [e.name for e in current.entities])}", metric.where)
            wanted = path[i + 1] if i + 1 < len(path) else None
            target = self.join_target(current, entity, wanted, dim)
            if target is None:
                if i == len(path) - 1 and entity in current.own_entities():
                    break  # the dimension is looked up on the model reached (and not found: below)
                raise _Problem("KPI175", f"metric '{metric.name}': dimension '{name}': no semantic model has "
                                         f"'{entity}' as its primary entity"
                                         + (f" and a dimension '{dim}'{self.suggest(name)}" if wanted is None else ""),
                               metric.where)
            alias = self.join(current, alias, entity, target, tuple(path[:i + 1]))
            current = target
        found = current.dimension(dim)
        if found is None:
            raise _Problem("KPI175", f"metric '{metric.name}': semantic model '{model.name}' has no dimension '{name}'"
                                     f"{self.suggest(name)}", metric.where,
                           "dimensions are written as MetricFlow names them: `entity__dimension`")
        return self.local_dimension(current, found, metric, name, grain, alias)

    def local_dimension(self, model: SemanticModel, found: Dimension, metric: Metric, name: str, grain: str | None,
                        alias: str | None) -> exp.Expression:
        """A dimension of `model` (joined as `alias`, or the metric's own model when None) as a column expression:
        on a joined model, a column of the joined relation that the join adds."""
        tree = self.sql(found.expr, metric, f"dimension '{found.name}' of semantic model '{model.name}'")
        if found.type != "time" and grain is not None:
            raise _Problem("KPI175", f"metric '{metric.name}': '{name}' is not a time dimension, so it has no "
                                     f"grain '{grain}'", metric.where)
        if alias is None and found.type == "time":
            return self.truncated(tree, grain or found.granularity, metric, name)
        if alias is None:
            return tree
        # a joined model's dimension is a column of the joined relation (joined_relation), truncated here
        column = exp.column(joined_column(alias, found.name), quoted=True)
        return self.truncated(column, grain or found.granularity, metric, name) if found.type == "time" else column

    def join_target(self, current: SemanticModel, entity: str, wanted: str | None, dim: str) -> SemanticModel | None:
        """The semantic model a join from `current` by `entity` reaches: the one whose primary, unique or natural
        entity it is, and that has the next entity of the path (or the dimension, at the last step)."""
        found = [m for m in self.layer.models.values() if m.name != current.name and entity in m.own_entities()]
        fits = [m for m in found if (m.entity(wanted) is not None if wanted else m.dimension(dim) is not None)]
        return (fits or [None])[0]

    def join(self, current: SemanticModel, alias: str | None, entity: str, target: SemanticModel,
             path: tuple[str, ...]) -> str:
        """The alias of `target` joined to `current` (itself joined as `alias`; None: the metric's own model)."""
        key = "__".join(path)
        if key not in self.joins:
            self.used[f"semantic_model:{target.name}"] = target.raw
            left = self.sql(current.entity(entity).expr, self.top, f"entity '{entity}' of '{current.name}'")
            right = self.sql(target.entity(entity).expr, self.top, f"entity '{entity}' of '{target.name}'")
            columns = tuple((joined_column(f"__kpim_{key}", d.name),
                             _qualified(self.sql(d.expr, self.top, f"dimension '{d.name}' of '{target.name}'"),
                                        f"__kpim_{key}")) for d in target.dimensions)
            self.joins[key] = Join(f"__kpim_{key}", target, _qualified(left, alias or BASE_ALIAS),
                                   _qualified(right, f"__kpim_{key}"), columns)
        return self.joins[key].alias

    def dimension_names(self) -> list[str]:
        """The metric's model's dimensions and those one entity join away (a bare `region` is `customer__region`)."""
        model = self.model
        assert model is not None
        own = [f"{e}__{d.name}" for e in sorted(model.own_entities()) for d in model.dimensions]
        joined = [f"{e.name}__{d.name}" for e in model.entities for other in self.layer.models.values()
                  if other.name != model.name and e.name in other.own_entities() for d in other.dimensions]
        return list(dict.fromkeys(own + joined)) + ["metric_time"]

    def suggest(self, name: str) -> str:
        """' (did you mean ...?)': the dimensions named `name` after their entities first, else the closest."""
        names = self.dimension_names()
        same = [n for n in names if n.rsplit("__", 1)[-1] == name.rsplit("__", 1)[-1]]
        return f" (did you mean {' or '.join(repr(n) for n in same)}?)" if same else _suggest(name, names)

    def time_expr(self, metric: Metric) -> exp.Expression:
        model = self.model
        assert model is not None and self.time is not None
        found = model.dimension(self.time)
        if found is None or found.type != "time":
            raise _Problem("KPI172", f"metric '{metric.name}': semantic model '{model.name}' has no time dimension "
                                     f"'{self.time}' (its agg_time_dimension)", metric.where)
        return self.sql(found.expr, metric, f"time dimension '{found.name}'")

    def truncated(self, tree: exp.Expression, grain: str | None, metric: Metric, name: str) -> exp.Expression:
        if grain is None:
            return tree
        if grain not in TIME_GRAINS:
            raise _unsupported(metric, f"time dimension '{name}' at grain '{grain}'")
        return exp.TimestampTrunc(this=tree, unit=exp.var(grain.upper()))

    def entity(self, name: str, metric: Metric) -> exp.Expression:
        model = self.model
        assert model is not None
        parts = name.split("__")
        if len(parts) > 1:
            raise _unsupported(metric, f"entity '{name}' of another semantic model (entity joins)")
        found = model.entity(name)
        if found is None:
            raise _Problem("KPI175", f"metric '{metric.name}': semantic model '{model.name}' has no entity '{name}'"
                                     f"{_suggest(name, [e.name for e in model.entities])}", metric.where)
        return self.sql(found.expr, metric, f"entity '{name}'")

    def condition(self, template: str, metric: Metric) -> exp.Expression:
        """A filter's SQL with its Jinja call sites replaced by the column expressions they name."""
        calls: list[exp.Expression] = []

        def call(m: re.Match) -> str:
            kind, args = m.group(1), m.group(2)
            values = _call_arguments(args)
            if not values or len(values) > (2 if kind == "TimeDimension" else 1):
                raise _Problem("KPI176", f"metric '{metric.name}' ({place(metric)}): filter {shown(template, 80)}: "
                                         f"{kind}() takes " + ("a name and a grain" if kind == "TimeDimension" else "a name")
                                         + " as quoted text (and an entity_path list)", metric.where)
            if kind == "Entity":
                tree = self.entity(values[0], metric)
            else:
                tree = self.dimension(values[0], metric, values[1].lower() if len(values) > 1 else None)
            calls.append(tree)
            return _PLACEHOLDER.format(len(calls) - 1)

        text = _CALL.sub(call, template)
        if "{{" in text or "{%" in text or "}}" in text:
            raise _Problem("KPI176", f"metric '{metric.name}' ({place(metric)}): filter {shown(template, 80)} has "
                                     "Jinja other than {{ Dimension(...) }}, {{ TimeDimension(...) }} or "
                                     "{{ Entity(...) }}", metric.where)
        tree = self.sql(text, metric, "filter")
        for column in list(tree.find_all(exp.Column)):
            m = re.fullmatch(_PLACEHOLDER.format(r"(\d+)"), column.name)
            if m is not None and not column.table:
                replacement = exp.Paren(this=calls[int(m.group(1))].copy())
                if column is tree:
                    tree = replacement
                else:
                    column.replace(replacement)
        return tree

    def conditions(self, templates: tuple[str, ...], metric: Metric) -> exp.Expression | None:
        parts = [self.condition(t, metric) for t in templates]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else exp.and_(*[exp.Paren(this=p) for p in parts], copy=False)

    # - metrics -
    def metric(self, name: str, reader: Metric) -> Metric:
        found = self.layer.metrics.get(name)
        if found is None:
            raise _Problem("KPI172", f"metric '{reader.name}' ({place(reader)}) reads unknown metric '{name}'"
                                     f"{_suggest(name, self.layer.metrics)}", reader.where)
        self.used[found.name] = found.raw
        return found

    def measure(self, ref: MeasureInput, metric: Metric, counted: bool = False) -> tuple[exp.Expression, Measure]:
        """The measure's aggregate. `counted`: a count NULL over no rows, as MetricFlow's outer join of a ratio's or
        derived metric's inputs leaves an input without rows in a period."""
        model = self.layer.measure_model.get(ref.name)
        measure = model.measure(ref.name) if model is not None else None
        if model is None or measure is None:
            raise _Problem("KPI172", f"metric '{metric.name}' ({place(metric)}) reads unknown measure '{ref.name}'"
                                     f"{_suggest(ref.name, self.layer.measure_model)}", metric.where)
        if measure.non_additive:
            raise _unsupported(metric, f"measure '{measure.name}' with a non_additive_dimension")
        if ref.fill_nulls_with not in (None, 0):
            raise _unsupported(metric, f"fill_nulls_with: {ref.fill_nulls_with} (only 0, as `fill: zero`)")
        self.bind(measure, model, metric)
        x = self.sql(measure.expr, metric, f"the expr of measure '{measure.name}'")
        self.used[f"semantic_model:{model.name}"] = model.raw
        if self.branches:  # the argument is a column of the union, projected by its model's branch
            self.leaves.append([(model.name, measure.agg_time_dimension or model.default_time), x, None])
            x = exp.column(f"__kpim_x{len(self.leaves) - 1}", quoted=True)
        if counted and measure.agg == "count":
            if self.branches:  # one aggregate per leaf of the union: a sum of ones
                one = exp.If(this=exp.Not(this=exp.Is(this=exp.Paren(this=x), expression=exp.Null())),
                             true=exp.Literal.number(1))
                return exp.Sum(this=exp.Case(ifs=[one], default=exp.Literal.number(0))), measure
            # NULL over no rows, else the count: two counts a scan pre-aggregates and sums like any other, where
            # COUNT(*) is the one the other measures of its filter already count (a SUM of a CASE per row is not)
            rows = exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(0))
            return exp.Case(ifs=[exp.If(this=rows, true=_aggregate(measure, x))]), measure
        return _aggregate(measure, x), measure

    def input_tree(self, ref: MetricInput, reader: Metric, offset: int = 0, outer: tuple = ()) -> exp.Expression:
        """An input metric of a ratio or derived metric, as one expression over aggregates with every filter it
        has (its own, the input's) inside as FILTER (WHERE ...). An input with no rows in a period is NULL there,
        as MetricFlow's outer join of its inputs makes it: a count is NULL over no rows (`measure`), and a count of distinct values
        over no rows, 0 in SQL, is NULLIF'd. With an offset_window, its aggregates read the copy of the rows
        shifted by it (`offset`: the copy an enclosing input reads). Over several semantic models, the filters of
        enclosing metrics (`outer`: (templates, metric) pairs) are resolved in the model of each measure read."""
        if ref.offset_to_grain is not None or ref.offset_window is not None:
            kind = "an offset_window" if ref.offset_window is not None else "offset_to_grain"
            if offset:
                raise _unsupported(reader, f"input metric '{ref.alias or ref.name}' with {kind} inside another "
                                           "input's offset")
            key = ref.offset_window
            if key is None:
                grain = str(ref.offset_to_grain).lower()
                if grain not in TO_GRAINS:
                    raise _unsupported(reader, f"input metric '{ref.alias or ref.name}' with offset_to_grain "
                                               f"{ref.offset_to_grain} ({', '.join(TO_GRAINS)} are)")
                key = (None, grain)
            offset = self.offsets.setdefault(key, len(self.offsets) + 1)
        metric = self.metric(ref.name, reader)
        if metric.type in ("cumulative", "conversion"):
            raise _unsupported(reader, f"a {metric.type} metric ('{metric.name}') as the input of a {reader.type} metric")
        if metric.type == "simple":
            assert metric.measure is not None
            tree, measure = self.measure(metric.measure, metric, counted=True)
            filters = metric.measure.filters + metric.filters + ref.filters
            if self.branches:
                leaf = len(self.leaves) - 1
                sub = self.branches[self.leaves[leaf][0]]
                parts = [c for c in (sub.conditions(filters, metric), *(sub.conditions(t, m) for t, m in outer))
                         if c is not None]
                self.leaves[leaf][2] = parts[0] if len(parts) == 1 else exp.and_(
                    *[exp.Paren(this=p) for p in parts], copy=False) if parts else None
                tree = _pushed(tree, exp.column(f"__kpim_f{leaf}", quoted=True))
            else:
                tree = _pushed(tree, self.conditions(filters, metric))
            if self.offset_mode:
                tree = _pushed(tree, exp.EQ(this=exp.column(OFFSET_COLUMN, quoted=True),
                                            expression=exp.Literal.number(offset)))
            if measure.agg == "count_distinct":
                tree = exp.Nullif(this=tree, expression=exp.Literal.number(0))
            if metric.measure.fill_nulls_with == 0:
                tree = exp.Coalesce(this=tree, expressions=[exp.Literal.number(0)])
            return tree
        if self.branches:
            return self.body(metric, offset, (*outer, (metric.filters + ref.filters, metric)))
        tree = self.body(metric, offset)
        return _pushed(tree, self.conditions(metric.filters + ref.filters, metric))

    def body(self, metric: Metric, offset: int = 0, outer: tuple = ()) -> exp.Expression:
        """A ratio or derived metric as one expression over its inputs (filters of its own not applied)."""
        if metric.type == "ratio":
            if metric.numerator is None or metric.denominator is None:
                raise _Problem("KPI171", f"metric '{metric.name}' is a ratio without numerator and denominator",
                               metric.where)
            return exp.Div(this=exp.Paren(this=self.input_tree(metric.numerator, metric, offset, outer)),
                           expression=exp.Paren(this=self.input_tree(metric.denominator, metric, offset, outer)))
        if not metric.expr:
            raise _Problem("KPI171", f"metric '{metric.name}' is a derived metric without expr", metric.where)
        tree = self.sql(metric.expr, metric, "expr")
        names = {(i.alias or i.name): i for i in metric.inputs}
        for column in list(tree.find_all(exp.Column)):
            ref = names.get(column.name)
            if ref is None or column.table:
                raise _Problem("KPI172", f"metric '{metric.name}' ({place(metric)}): expr names '{column.sql()}', "
                                         f"which is none of its metrics{_suggest(column.name, names)}", metric.where)
            replacement = exp.Paren(this=self.input_tree(ref, metric, offset, outer))
            if column is tree:
                tree = replacement
            else:
                column.replace(replacement)
        return tree


OFFSET_COLUMN = "__kpim_offset"
TIME_COLUMN = "__kpim_time"


def _has_offsets(metric: Metric, layer: SemanticLayer, seen: set[str]) -> bool:
    """Whether an input of the metric (or of its inputs) has an offset_window or offset_to_grain."""
    if metric.name in seen:
        return False
    seen.add(metric.name)
    for ref in (metric.numerator, metric.denominator, *metric.inputs):
        if ref is None:
            continue
        if ref.offset_window is not None or ref.offset_to_grain is not None:
            return True
        inner = layer.metrics.get(ref.name)
        if inner is not None and _has_offsets(inner, layer, seen):
            return True
    return False


def _branch_keys(layer: SemanticLayer, metric: Metric, seen: set[str]) -> list[tuple[str, str]]:
    """The (semantic model, time dimension) of every measure the metric reads, through its inputs, in order (what
    cannot be found is said by the resolution)."""
    if metric.name in seen:
        return []
    seen.add(metric.name)
    out: list[tuple[str, str]] = []
    if metric.measure is not None:
        model = layer.measure_model.get(metric.measure.name)
        measure = model.measure(metric.measure.name) if model is not None else None
        time = measure and (measure.agg_time_dimension or model.default_time)
        if time:
            out.append((model.name, time))
    for ref in (metric.numerator, metric.denominator, *metric.inputs):
        inner = layer.metrics.get(ref.name) if ref is not None else None
        if inner is not None:
            out.extend(k for k in _branch_keys(layer, inner, set(seen)) if k not in out)
    return out


def _shift(count: int, unit: str) -> tuple[int, str]:
    """An offset as an interval SQL adds exactly: weeks as days (a week is 7), quarters as months."""
    return {"week": (count * 7, "DAY"), "quarter": (count * 3, "MONTH")}.get(unit, (count, unit.upper()))


def offset_relation(resolved: "ResolvedMetric", source: exp.Table, grain: str | None = None) -> exp.Query:
    """The rows of `source` once as they are and once more per offset, each copy numbered in OFFSET_COLUMN and its
    time in TIME_COLUMN: the value of an input `n periods earlier` is its aggregate over the copy whose rows moved
    `n periods` later (offset_window); an offset_to_grain's copy depends on the KPI's `grain` (to_grain_copy), so
    such a metric has a relation per grain (a CTE of the KPI's relation)."""
    def copy(index: int, time: exp.Expression) -> exp.Select:
        return exp.select(exp.Star(), exp.alias_(exp.Literal.number(index), OFFSET_COLUMN, quoted=True),
                          exp.alias_(time, TIME_COLUMN, quoted=True)).from_(source.copy(), copy=False)

    branches: list[exp.Query] = [copy(0, resolved.base_time.copy())]
    for index, count, unit in resolved.offsets:
        if count is None:
            assert grain is not None, "offset_to_grain: a relation per grain"
            branches.append(to_grain_copy(resolved, source, index, unit, grain))
            continue
        n, sql_unit = _shift(count, unit)
        interval = exp.Interval(this=exp.Literal.string(str(n)), unit=exp.var(sql_unit))
        branches.append(copy(index, exp.Add(this=exp.Paren(this=resolved.base_time.copy()), expression=interval)))
    out = branches[0]
    for branch in branches[1:]:
        out = exp.Union(this=out, expression=branch, distinct=False)
    return out


_STEP = "__kpim_step"


def to_grain_copy(resolved: "ResolvedMetric", source: exp.Table, index: int, to: str, grain: str) -> exp.Select:
    """The copy of the rows an input with offset_to_grain `to` reads at `grain`: as MetricFlow 0.213 computes it
    (dataflow_plan_builder, JoinToTimeSpineNode), the value at a period p is the input's aggregate over one period
    `u` that starts at b = DATE_TRUNC(to, start of p), where u is:

    - the grain itself when it is at or below `to` and not week: MetricFlow aggregates first, then joins its
      time spine `ON DATE_TRUNC(to, spine) = metric_time__<grain>` (day at `to` week: the week's Monday; month
      at month: the month itself);
    - otherwise (a grain above `to`, or week whatever `to` is) the time dimension's own granularity: it joins
      before aggregation, keeping the spine's days that start a period of the grain (`WHERE
      DATE_TRUNC(grain, spine) = spine`), so p reads the rows of the day DATE_TRUNC(to, p's first day). At
      week with `to` day or week that is the week's Monday; at month with `to` week, the Monday of the week that
      holds the 1st, which may be in the month before; at week with `to` month, the 1st of the month that holds
      the Monday.

    So a row in period u starting at b (b a start of a `to` period) is read by every period of `grain` that
    starts in [b, b + 1 to): the copy keeps those rows and repeats each once per such period (CROSS JOIN of the
    steps 0..n), its TIME_COLUMN that period's start. Rows in no such u are in no period. Weeks are ISO weeks
    (DATE_TRUNC's), as MetricFlow's are."""
    after = TIME_GRAINS.index(grain) <= TIME_GRAINS.index(to) and grain != "week"
    unit = grain if after else resolved.time_grain
    base = resolved.base_time

    def trunc(tree: exp.Expression, g: str) -> exp.Expression:
        return exp.TimestampTrunc(this=tree, unit=exp.var(g.upper()))

    def plus(tree: exp.Expression, count: int | exp.Expression, g: str) -> exp.Expression:
        n, sql_unit = _shift(1, g)
        if isinstance(count, int):
            return exp.Add(this=exp.Paren(this=tree), expression=exp.Interval(
                this=exp.Literal.string(str(count * n)), unit=exp.var(sql_unit)))
        step = count if n == 1 else exp.Mul(this=count, expression=exp.Literal.number(n))
        return exp.DateAdd(this=tree, expression=step, unit=exp.var(sql_unit))

    b = trunc(base.copy(), unit)
    # the first period of `grain` starting at or after b, then each one after it
    first = trunc(exp.Sub(this=exp.Paren(this=plus(b.copy(), 1, grain)), expression=exp.Interval(
        this=exp.Literal.string("1"), unit=exp.var("DAY"))), grain)
    start = plus(first, exp.column(_STEP, quoted=True), grain)
    steps = exp.Values(expressions=[exp.Tuple(expressions=[exp.Literal.number(i)])
                                    for i in range(_to_grain_periods(to, grain))],
                       alias=exp.TableAlias(this=exp.to_identifier("__kpim_steps", quoted=True),
                                            columns=[exp.to_identifier(_STEP, quoted=True)]))
    return (exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("__kpim_src", quoted=True)),
                       exp.alias_(exp.Literal.number(index), OFFSET_COLUMN, quoted=True),
                       exp.alias_(start.copy(), TIME_COLUMN, quoted=True))
            .from_(exp.alias_(source.copy(), "__kpim_src", table=True, quoted=True), copy=False)
            .join(steps, join_type="CROSS", copy=False)
            .where(exp.and_(exp.EQ(this=trunc(b.copy(), to), expression=b.copy()),
                            exp.LT(this=start.copy(), expression=plus(b.copy(), 1, to)), copy=False), copy=False))


def _to_grain_periods(to: str, grain: str) -> int:
    """At most how many periods of `grain` start in one period of `to` (1 for a grain above it)."""
    days = {"day": 1, "week": 7, "month": 31, "quarter": 92, "year": 366}
    if grain == "day":
        return days[to]
    if grain == "week":
        return -(-days[to] // 7)
    months = {"month": 1, "quarter": 3, "year": 12}
    return max(1, months.get(to, 1) // months[grain]) if to in months else 1


def _call_arguments(args: str) -> list[str] | None:
    """The arguments of a filter's Dimension(...), TimeDimension(...) or Entity(...) call, read as Python literals
    (never evaluated): quoted names, and `entity_path=['a', 'b']` put in front of the first, as MetricFlow writes a
    dimension reached through several entities (`Dimension('area__country', entity_path=['customer'])` is
    `customer__area__country`). None when they are anything else."""
    try:
        call = ast.parse(f"f({args})", mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(call, ast.Call):
        return None
    values = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if len(values) != len(call.args):
        return None
    for keyword in call.keywords:
        path = keyword.value
        if keyword.arg != "entity_path" or not isinstance(path, ast.List) or not values or not all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in path.elts):
            return None
        values[0] = "__".join([*(e.value for e in path.elts), values[0]])
    return values


def _pushed(tree: exp.Expression, condition: exp.Expression | None) -> exp.Expression:
    from ..sqlgen import push_filter

    return tree if condition is None else push_filter(tree, condition)


_AGGREGATES = {
    "sum": "sum(__x)", "count": "count(__x)", "count_distinct": "count(distinct __x)", "average": "avg(__x)",
    "min": "min(__x)", "max": "max(__x)", "sum_boolean": "sum(cast(__x as integer))", "median": "median(__x)",
}


def _aggregate(measure: Measure, x: exp.Expression) -> exp.Expression:
    """The measure's aggregation of `x`; a percentile exact (quantile_cont, or quantile_disc when discrete), even
    where MetricFlow's is approximate."""
    if measure.agg == "percentile":
        p = measure.percentile if measure.percentile is not None else 0.5
        text = f"quantile_{'disc' if measure.discrete else 'cont'}(__x, {p!r})"
    else:
        text = _AGGREGATES[measure.agg]
    tree, _ = parse_snippet(text, "duckdb")
    assert tree is not None
    tree = tree.copy()
    for column in list(tree.find_all(exp.Column)):
        if column.name == "__x":
            column.replace(exp.Paren(this=x.copy()) if not isinstance(x, (exp.Column, exp.Literal)) else x.copy())
    return tree


def _window_periods(count: int, unit: str, grain: str) -> int | None:
    """A window of `count` `unit`s as whole periods of `grain`, or None when it is not a whole number of them."""
    days, months = {"day": 1, "week": 7}, {"month": 1, "quarter": 3, "year": 12}
    for scale in (days, months):
        if unit in scale and grain in scale:
            total = count * scale[unit]
            return total // scale[grain] if total % scale[grain] == 0 else None
    return None


def resolve_metric(layer: SemanticLayer, kpi, grains: tuple[str, ...], dialect: str) -> tuple[ResolvedMetric | None, Issue | None]:
    """The metric KPI `kpi` (its `metric`, `dimensions` and `fill`) at `grains`, resolved; or the one problem that
    stops it (KPI172-176)."""
    name = kpi.metric
    metric = layer.metrics.get(name)
    if metric is None:
        return None, error("KPI172", f"KPI '{kpi.name}': unknown metric '{name}' in {layer.display}"
                                     f"{_suggest(name, layer.metrics)}", kpi.value_loc("metric"),
                           "name a metric of the dbt project's semantic layer (`kpimetrics ls --metrics` lists them)")
    try:
        return _resolve(layer, metric, kpi, grains, dialect), None
    except _Problem as problem:
        return None, problem.issue


def _resolve(layer: SemanticLayer, metric: Metric, kpi, grains: tuple[str, ...], dialect: str) -> ResolvedMetric:
    r = _Resolver(layer, metric, dialect)
    r.used[metric.name] = metric.raw
    window: tuple[str, object] | None = None
    fill_zero = False
    if metric.type == "conversion":
        raise _unsupported(metric, "a conversion metric")
    if metric.type in ("simple", "cumulative"):
        if metric.measure is None:
            raise _Problem("KPI171", f"metric '{metric.name}' is a {metric.type} metric without a measure", metric.where)
        tree, _ = r.measure(metric.measure, metric)
        trees = {"measure": tree}
        row_filter = r.conditions(metric.measure.filters + metric.filters, metric)
        fill_zero = metric.measure.fill_nulls_with == 0
        form = "measure"
        if metric.type == "cumulative":
            window = _cumulative_window(metric, grains)
    else:  # ratio, derived: over several semantic models, the metric's filter is resolved in each measure's
        body = r.body(metric, 0, ((metric.filters, metric),) if r.branches else ())
        row_filter = None if r.branches else r.conditions(metric.filters, metric)
        form = "ratio" if metric.type == "ratio" else "measure"
        if form == "ratio":
            assert isinstance(body, exp.Div)
            trees = {"numerator": body.this.this, "denominator": body.expression.this}
        else:
            trees = {"measure": body}
    if r.branches:
        return _resolve_union(r, metric, kpi, grains, form, trees)
    time = base_time = r.time_expr(metric)
    assert r.model is not None and r.time is not None
    _check_grains(r, metric, grains)
    offsets = _offsets(r, metric, grains)
    if offsets:
        time = exp.column(TIME_COLUMN, quoted=True)
    dims = {d: _kpi_dimension(r, d, metric, kpi) for d in kpi.dimension_columns}  # alone or in a combination
    assert r.model is not None
    joins = [[key, j.model.name, j.model.database, j.model.schema, j.model.alias, j.left.sql(), j.right.sql()]
             for key, j in sorted(r.joins.items())]
    definition = json.dumps({"metrics": r.used, "form": form, "window": window, "fill_zero": fill_zero,
                             "relation": [r.model.database, r.model.schema, r.model.alias], "joins": joins,
                             "offsets": offsets}, sort_keys=True)
    return ResolvedMetric(metric, r.model, form, trees, time, row_filter, window, fill_zero, dims,
                          hashlib.sha256(definition.encode()).hexdigest(), tuple(r.joins.values()), offsets,
                          base_time if offsets else None, time_grain=_time_grain(r))


def _time_grain(r: _Resolver) -> str:
    found = r.model.dimension(r.time)
    return found.granularity if found is not None and found.granularity in TIME_GRAINS else "day"


def _check_grains(r: _Resolver, metric: Metric, grains: tuple[str, ...]) -> None:
    coarsest = r.model.dimension(r.time).granularity  # MetricFlow has no metric_time finer than it
    if coarsest in TIME_GRAINS and any(TIME_GRAINS.index(g) < TIME_GRAINS.index(coarsest) for g in grains):
        raise _unsupported(metric, f"grain {', '.join(grains)} finer than its time dimension '{r.time}' "
                                   f"(time_granularity: {coarsest})")


def _offsets(r: _Resolver, metric: Metric, grains: tuple[str, ...]) -> tuple[Offset, ...]:
    offsets = tuple(Offset(index, count, unit) for (count, unit), index in sorted(r.offsets.items(),
                                                                                   key=lambda x: x[1]))
    for _, count, unit in offsets:
        if count is not None and any(_window_periods(count, unit, g) is None for g in grains):
            raise _unsupported(metric, f"an offset_window of {count} {unit} at grains {', '.join(grains)} (an "
                                       "offset must be a whole number of periods at each of the KPI's grains)")
    return offsets


def _kpi_dimension(r: _Resolver, name: str, metric: Metric, kpi) -> exp.Expression:
    try:
        return r.dimension(name, metric)
    except _Problem as problem:  # the KPI's own dimension: said where the KPI names it
        raise _Problem(problem.issue.code, f"KPI '{kpi.name}': {problem.issue.message}",
                       kpi.value_loc("dimensions"), problem.issue.hint) from None


def _resolve_union(r: _Resolver, metric: Metric, kpi, grains: tuple[str, ...], form: str,
                   trees: dict[str, exp.Expression]) -> ResolvedMetric:
    """A ratio or derived metric over several semantic models (or time dimensions): its branches, each projecting
    metric_time, the KPI's dimensions and its measures' arguments and filter flags (NULL and FALSE in the others)."""
    names = list(kpi.dimension_columns)  # alone or in a combination (planner.py combines them)
    projected: dict[tuple[str, str], list[tuple[str, exp.Expression]]] = {}
    for key, sub in r.branches.items():
        columns: list[tuple[str, exp.Expression]] = [(UNION_TIME, sub.time_expr(metric))]
        _check_grains(sub, metric, grains)
        columns += [(f"__kpim_dim{j}", _kpi_dimension(sub, d, metric, kpi)) for j, d in enumerate(names)]
        for i, (leaf_key, x, condition) in enumerate(r.leaves):
            mine = leaf_key == key
            columns.append((f"__kpim_x{i}", x if mine else exp.Null()))
            columns.append((f"__kpim_f{i}", (condition if condition is not None else exp.true()) if mine
                            else exp.false()))
        projected[key] = columns
    offsets = _offsets(r, metric, grains)
    if any(o.count is None for o in offsets):
        raise _unsupported(metric, "offset_to_grain over several semantic models (or time dimensions)")
    base_time = exp.column(UNION_TIME, quoted=True)
    time = exp.column(TIME_COLUMN, quoted=True) if offsets else base_time
    dims = {d: exp.column(f"__kpim_dim{j}", quoted=True) for j, d in enumerate(names)}
    branches = tuple(Branch(sub.model, tuple(sub.joins.values()), tuple(projected[key]))
                     for key, sub in r.branches.items())
    definition = json.dumps({"metrics": r.used, "form": form, "offsets": offsets,
                             "branches": [[b.model.database, b.model.schema, b.model.alias,
                                           [[n, t.sql()] for n, t in b.columns],
                                           [[j.alias, j.model.alias, j.left.sql(), j.right.sql()] for j in b.joins]]
                                          for b in branches]}, sort_keys=True)
    return ResolvedMetric(metric, r.model, form, trees, time, None, None, False, dims,
                          hashlib.sha256(definition.encode()).hexdigest(), (), offsets,
                          base_time if offsets else None, branches)


def _cumulative_window(metric: Metric, grains: tuple[str, ...]) -> tuple[str, object]:
    if metric.window is not None:
        count, unit = metric.window
        periods = {g: _window_periods(count, unit, g) for g in grains}
        if any(p is None for p in periods.values()) or len(set(periods.values())) > 1:
            raise _unsupported(metric, f"a cumulative window of {count} {unit} at grains {', '.join(grains)} (a window "
                                       "must be one whole number of periods at each of the KPI's grains)")
        return "periods", next(iter(periods.values()))
    if metric.grain_to_date is not None:
        unit = metric.grain_to_date
        if unit not in ("month", "quarter", "year"):
            raise _unsupported(metric, f"grain_to_date: {unit} (month, quarter or year are)")
        if any(TIME_GRAINS.index(g) > TIME_GRAINS.index(unit) for g in grains):
            raise _unsupported(metric, f"grain_to_date: {unit} at grain {', '.join(grains)} (a grain coarser than it)")
        return "to_date", unit
    return "periods", ALL_TIME_PERIODS
