"""From a validated project to a plan: each KPI resolved, and KPIs grouped into scans.

A scan is one read of one model (and time column): every KPI over that model,
at every grain, is computed from it in one query. Derived KPIs are
computed afterwards from their inputs' values, in dependency order.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import sqlglot
from sqlglot import exp

from . import combinations, dag
from .collector import long_lived
from .loader import MODEL_CTE_PREFIX, ProjectDef
from .model import FORM_KEYS, VALUE_FIELDS, Form, Kpi, MetricForm, Ratio, Window
from .sqlexpr import parse_snippet, positionless, relation

_SOURCE_RE = re.compile(r"""^\s*source\(\s*['"]([^'"]+)['"]\s*,\s*['"]([^'"]+)['"]\s*\)\s*$""")
# ref('m'), ref('package', 'm'), ref('m', v=2), ref('m', version='2'), as dbt writes them
_REF_RE = re.compile(r"""^\s*ref\(\s*(?:['"]([^'"]+)['"]\s*,\s*)?['"]([^'"]+)['"]\s*"""
                     r"""(?:,\s*(?:v|version)\s*=\s*(?:(\d+(?:\.\d+)?)|['"]([^'"]+)['"])\s*)?\)\s*$""")


def parse_model_ref(text: str | None) -> tuple[str, tuple[str, ...]] | None:
    """"source('shop','orders')" -> ('source', ('shop', 'orders')); "ref('m')" -> ('ref', ('m', '', ''));
    "ref('pkg', 'm', v=2)" -> ('ref', ('m', 'pkg', '2')): name, package, version ('' where not given)."""
    if not text:
        return None
    if m := _SOURCE_RE.match(text):
        return "source", (m.group(1), m.group(2))
    if m := _REF_RE.match(text):
        return "ref", (m.group(2), m.group(1) or "", m.group(3) or m.group(4) or "")
    return None


@dataclass
class Relation:
    """What a KPI reads: CTEs for models (in dependency order), then a table to select from."""

    key: str
    table: exp.Table
    ctes: list[tuple[str, exp.Query]] = field(default_factory=list)
    sql_for_hash: str = ""
    source_tables: list[tuple[str, str]] = field(default_factory=list)
    dbt_nodes: list[Any] = field(default_factory=list)  # the relations dbt built that it reads (DbtNode)
    # its time runs past the data's (a derived metric's offset copies): no pre-aggregate kept by its newest day
    shifted: bool = False


@dataclass
class KpiPlan:
    kpi: Kpi
    grains: tuple[str, ...]
    relation: Relation | None
    time: exp.Expression | None
    computation: Form
    trees: dict[str, exp.Expression]  # the form's expressions parsed, by role
    filter: exp.Expression | None
    dimensions: tuple[str, ...]
    inputs: list[dag.InputRef]
    definition_hash: str = ""
    dimension_exprs: dict[str, exp.Expression] = field(default_factory=dict)
    semantic: Any = None  # a metric KPI's resolved metric (dbt/resolve.ResolvedMetric)
    # a metric KPI whose relation differs by grain (an offset_to_grain): the plan at each grain, over its relation
    by_grain: dict[str, "KpiPlan"] = field(default_factory=dict)

    def at(self, grain: str) -> "KpiPlan":
        """The plan a scan computes `grain` of it by: itself, or over that grain's relation."""
        return self.by_grain.get(grain, self)

    def dimension_expr(self, name: str) -> exp.Expression:
        """A dimension as the column the user named (quoted as they wrote it)."""
        tree = self.dimension_exprs.get(name)
        return tree.copy() if tree is not None else exp.column(name)

    @property
    def name(self) -> str:
        return self.kpi.name

    @functools.cached_property
    def time_sql(self) -> str:
        return self.time.sql()

    @property
    def form(self) -> str:
        return self.computation.key

    @property
    def scanned(self) -> bool:
        """Computed in a scan of its model; otherwise from other KPIs' values, after the scans."""
        return self.computation.reads_model

    # the tree of each form's role, read by the SQL generator: None where the KPI's form has no such role
    measure = property(lambda self: self.trees.get("measure"))
    numerator = property(lambda self: self.trees.get("numerator"))
    denominator = property(lambda self: self.trees.get("denominator"))
    derived = property(lambda self: self.trees.get("derived"))

    @property
    def window(self) -> tuple[str, object] | None:
        w = self.kpi.window
        if w is None:
            return None
        return ("periods", w.periods) if w.periods is not None else ("to_date", w.to_date)

    @property
    def fill_zero(self) -> bool:
        return self.kpi.fill == "zero"

    @property
    def input_names(self) -> list[str]:
        return list(dict.fromkeys(r.kpi for r in self.inputs))


@dataclass
class Plan:
    project: ProjectDef
    kpis: dict[str, KpiPlan]  # in dependency order (inputs first)
    deps: dict[str, list[str]]

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """Each KPI's place in the dependency order."""
        return {name: i for i, name in enumerate(self.kpis)}

    def closure(self, name: str) -> list[str]:
        """`name` and every KPI it reads, directly or through derived KPIs, in dependency order (`name` last)."""
        return sorted(dag.upstream([name], self.deps), key=self.position.__getitem__)

    def scans(self, names: list[str]) -> list[Scan]:
        """The scans of the scanned KPIs among `names`: one per model and time column, for all grains."""
        groups: dict[tuple[str, str], Scan] = {}
        for name in names:
            p = self.kpis[name]
            if not p.scanned:
                continue
            if p.by_grain:  # a relation per grain (an offset_to_grain): a scan per grain
                for grain in p.grains:
                    at = p.at(grain)
                    groups.setdefault((at.relation.key, p.time_sql), Scan(at.relation.key, p.time_sql)).items.append(
                        (at, grain))
                continue
            key = (p.relation.key, p.time_sql)
            scan = groups.setdefault(key, Scan(*key))
            scan.items.extend((p, grain) for grain in p.grains)
        return list(groups.values())


@dataclass
class Scan:
    """One read of one model (and time column): its KPIs at each of their grains."""

    relation_key: str
    time_sql: str
    items: list[tuple[KpiPlan, str]] = field(default_factory=list)

    @property
    def plans(self) -> list[KpiPlan]:
        return list({id(p): p for p, _ in self.items}.values())

    @property
    def grains(self) -> list[str]:
        return list(dict.fromkeys(g for _, g in self.items))


def _strip_tables(tree: exp.Expression) -> exp.Expression:
    if not any(c.args.get("table") or c.args.get("db") or c.args.get("catalog") for c in tree.find_all(exp.Column)):
        return tree  # nothing to strip: keep the (shared, never changed) parsed tree
    tree = tree.copy()
    for col in tree.find_all(exp.Column):
        col.set("table", None)
        col.set("db", None)
        col.set("catalog", None)
    return tree


@functools.lru_cache(maxsize=65536)
def _resolved(text: str, dialect: str) -> tuple[exp.Expression | None, str | None]:
    """A snippet's tree without table qualifiers, and that tree's SQL for the definition hash; once per text
    (thousands of KPIs share a `time` or a measure). The tree is shared: code that changes it copies it first."""
    tree, _ = parse_snippet(text, dialect)
    if tree is None:
        return None, None
    tree = _strip_tables(tree)
    # rendering copies a tree first unless told not to; DuckDB's generator changes only arrays, queries and pivots
    # in place, so only a snippet holding one is copied (10,000 KPIs: 0.3 s of copies)
    return tree, tree.sql("duckdb", copy=tree.find(exp.Array, exp.Query, exp.Pivot) is not None)


def _snippet(text: str | None, dialect: str) -> exp.Expression | None:
    return None if text is None else _resolved(text, dialect)[0]


def _normalized(text: str | None, dialect: str) -> str | None:
    return None if text is None else _resolved(text, dialect)[1]


def build_relation(project: ProjectDef, model_text: str, dialect: str, cache: dict[str, Relation]) -> Relation | None:
    ref = parse_model_ref(model_text)
    if ref is None:
        return None
    key = f"{ref[0]}:{'.'.join(part for part in ref[1] if part)}"
    if key in cache:
        return cache[key]
    resolved = project.resolve_source(*ref[1]) if ref[0] == "source" else project.resolve_ref(
        ref[1][0], ref[1][1] or None, ref[1][2] or None)
    if resolved.problem is not None:
        return None
    if resolved.node is not None:  # a relation dbt built; its definition upstream in dbt enters the hash
        table = resolved.node.table()
        lineage = project.manifest.lineage(resolved.node) if project.manifest is not None else ""
        rel = Relation(key, table, [], f"{table.sql(dialect='duckdb')}\n-- dbt {lineage}", [], [resolved.node])
    elif resolved.source is not None:
        table = relation(*resolved.source)
        rel = Relation(key, table, [], table.sql(dialect="duckdb"), [ref[1]])
    else:
        ctes: list[tuple[str, exp.Query]] = []
        sources: list[tuple[str, str]] = []
        dbt_nodes: list = []
        lineages: list = []
        seen: set[str] = set()

        def add(model_name: str) -> bool:
            if model_name in seen:
                return True
            model = project.models.get(model_name)
            if model is None or model.sql is None:
                return False
            seen.add(model_name)
            for r in model.refs:
                if not add(r):
                    return False
            try:
                query = positionless(sqlglot.parse_one(model.sql, read=model.dialect or project.config.dialect))
            except sqlglot.errors.SqlglotError:
                return False
            ctes.append((MODEL_CTE_PREFIX + model_name, query))
            sources.extend(model.sources)
            dbt_nodes.extend(model.dbt_nodes)
            if model.dbt_node is not None:  # an ephemeral dbt model: what it reads upstream in dbt
                lineages.append(model.dbt_node)
            return True

        if not add(resolved.model):
            return None
        table = exp.Table(this=exp.to_identifier(MODEL_CTE_PREFIX + resolved.model, quoted=True))
        text = "\n;\n".join(q.sql(dialect="duckdb") for _, q in ctes)
        if (dbt_nodes or lineages) and project.manifest is not None:
            text += "\n-- dbt " + " ".join(sorted({project.manifest.lineage(n) for n in [*dbt_nodes, *lineages]}))
        rel = Relation(key, table, ctes, text, sources, dbt_nodes)
    cache[key] = rel
    return rel


# How each field of a KPI that changes values (model.VALUE_FIELDS) enters the definition hash, but for the forms'
# keys, which enter as their form's expressions: its key in the hashed payload, and its value there. The keys and
# values are those of the first release: a change to any would change every KPI's hash, and so recompute every
# warehouse in full.
HASHED_FIELDS: dict[str, Callable[[KpiPlan, str], tuple[str, Any]]] = {
    "model": lambda p, dialect: ("model", p.relation.sql_for_hash if p.relation else None),
    "time": lambda p, dialect: ("time", _normalized(p.kpi.time, dialect)),
    "grain": lambda p, dialect: ("grains", list(p.grains)),  # the grains it is computed at, its own and its readers'
    "filter": lambda p, dialect: ("filter", _normalized(p.kpi.filter, dialect)),
    "dimensions": lambda p, dialect: ("dimensions", list(p.dimensions)),
    "window": lambda p, dialect: ("window", list(p.window) if p.window else None),
    "fill": lambda p, dialect: ("fill", p.kpi.fill),
}
# a value field without a rendering above fails here, at import, rather than be left out of the hash
_HASHED = tuple(HASHED_FIELDS[name] for name in sorted(VALUE_FIELDS - FORM_KEYS))
# The first release hashed these roles for every KPI, None where its form has none; they stay so that no hash
# changes. A form added since hashes only its own roles.
_FIRST_ROLES = dict.fromkeys(("measure", "numerator", "denominator", "derived"))


def definition_hash(plan: KpiPlan, project: ProjectDef, hashes: dict[str, str]) -> str:
    """Everything that determines values, and nothing that does not (SPEC §5)."""
    dialect, form = project.config.dialect, plan.computation
    payload = {"form": form.key, **_FIRST_ROLES}
    payload.update((e.role, _normalized(e.text, dialect)) for e in form.expressions())
    payload.update([render(plan, dialect) for render in _HASHED])
    payload["calendar"] = project.config.calendar.model_dump(mode="json")
    payload["inputs"] = {n: hashes.get(n) for n in plan.input_names}
    if plan.semantic is not None:  # the metric as dbt defines it: its measures, filters, semantic model, joins
        payload["metric"] = plan.semantic.definition
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@long_lived()
def build_plan(project: ProjectDef) -> Plan:
    """Resolve every KPI. Assumes the project validated without errors."""
    dialect = project.config.dialect
    deps = dag.graph(project.kpis, dialect)
    grains = dag.computed_grains(project.kpis, project.config.defaults.grain, deps)
    served = _served_by_kpis(project, grains, dialect)  # metric KPIs computed from other metric KPIs' values
    deps.update((name, list(dict.fromkeys(r.kpi for r in refs))) for name, (_, refs) in served.items())
    cache: dict[str, Relation] = {}
    order = dag.topo_order([k.name for k in project.kpis], deps)
    by_name = project.kpi_by_name
    plans: dict[str, KpiPlan] = {}
    hashes: dict[str, str] = {}
    metrics = None  # the metric KPIs resolved, once the first is met
    for name in order:
        k = by_name[name]
        form = k.computation
        if isinstance(form, MetricForm):
            if metrics is None:
                metrics = _resolve_metrics(project, grains, dialect, set(served))
            if name in served:
                plan = _served_plan(k, tuple(grains[name]), metrics.resolved[name], *served[name], dialect)
            else:
                plan = _metric_plan(project, k, tuple(grains[name]), metrics, dialect, cache)
            plan.definition_hash = hashes[name] = definition_hash(plan, project, hashes)
            for at in plan.by_grain.values():
                at.definition_hash = plan.definition_hash
            plans[name] = plan
            continue
        plan = KpiPlan(
            kpi=k,
            grains=tuple(grains[name]),
            relation=build_relation(project, k.model, dialect, cache) if form.reads_model else None,
            time=_snippet(k.time, dialect),
            computation=form,
            trees={e.role: _snippet(e.text, dialect) for e in form.expressions()},
            filter=_snippet(k.filter, dialect),
            dimensions=k.slice_dimensions,
            inputs=dag.kpi_inputs(k, dialect),
            dimension_exprs=_slice_exprs(k, {c: t for c in k.dimension_columns if (t := _snippet(c, dialect)) is not None}),
        )
        plan.definition_hash = hashes[name] = definition_hash(plan, project, hashes)
        plans[name] = plan
    return Plan(project, plans, deps)


def _slice_exprs(k: Kpi, columns: dict[str, exp.Expression]) -> dict[str, exp.Expression]:
    """Each slice dimension's row expression: a column's own tree, a combination's text of its columns' values."""
    out = dict(columns)
    for d in k.dimensions:
        if not isinstance(d, str):
            out[combinations.name(d)] = combinations.value_expr(
                [columns[c].copy() if c in columns else exp.column(c) for c in d])
    return out


# --- KPIs over dbt's semantic layer (SPEC §9) ---------------------------------------------------

@dataclass
class _Metrics:
    """Every metric KPI resolved (dbt/resolve.ResolvedMetric, by KPI name), and the entity joins each semantic
    model needs for all of them together (by model name, then by alias)."""

    resolved: dict[str, Any]
    joins: dict[str, dict[str, Any]]


def _resolve_metrics(project: ProjectDef, grains: dict[str, list[str]], dialect: str, served: set[str]) -> _Metrics:
    from .dbt.resolve import resolve_metric
    from .dbt.semantic import semantic_layer

    layer, problem = semantic_layer(project)
    assert layer is not None, problem  # validated
    out = _Metrics({}, {})
    for k in project.kpis:
        if isinstance(k.computation, MetricForm) and k.name not in out.resolved:
            resolved, issue = resolve_metric(layer, k, tuple(grains[k.name]), dialect)
            assert resolved is not None, issue  # validated
            out.resolved[k.name] = resolved
            if k.name in served:  # computed from other KPIs' values: it reads no relation, so no join
                continue
            for part in resolved.branches or (resolved,):  # over several semantic models: each model's joins
                out.joins.setdefault(part.model.name, {}).update((j.alias, j) for j in part.joins)
    return out


def _metric_plan(project: ProjectDef, k: Kpi, grains: tuple[str, ...], metrics: _Metrics, dialect: str,
                 cache: dict[str, Relation]) -> KpiPlan:
    """A metric KPI planned as the measure or ratio KPI its metric resolves to (dbt/resolve.py): over the semantic
    model's relation and time dimension, so that it shares the scan of every KPI over that relation. The plan's KPI
    is a copy that also writes that measure or ratio (computing as it: MetricForm is first in FORMS), its filter,
    time, window and fill, and the metric's label and description where the KPI has none."""
    resolved = metrics.resolved[k.name]
    if resolved.branches:  # inputs over several semantic models: their rows as one relation
        relation, model_text = _union_relation(project, resolved, metrics, dialect, cache), None
    else:
        relation, model_text = _semantic_relation(project, resolved, _joins_for(resolved, metrics), dialect, cache)
    by_grain: dict[str, Relation] = {}
    if resolved.per_grain:  # an offset_to_grain: the rows moved by grain, a relation per grain
        by_grain = {g: _offset_relation(relation, resolved, cache, g) for g in grains}
        relation, model_text = by_grain[grains[0]], None
    elif resolved.offsets:  # the rows once more per offset_window, shifted: a relation of their own
        relation, model_text = _offset_relation(relation, resolved, cache), None
    joined = [j.model for j in resolved.joins] + [m for b in resolved.branches
                                                   for m in (b.model, *(j.model for j in b.joins))]
    if joined and project.manifest is not None:  # what dbt builds the joined relations from enters the hash
        nodes = [n for n in (_semantic_node(project, m) for m in joined) if n is not None]
        resolved.definition += "".join(sorted(f"\n-- dbt {project.manifest.lineage(n)}" for n in nodes))
    texts = {role: tree.sql(dialect=dialect) for role, tree in resolved.trees.items()}
    window = None
    if resolved.window is not None:
        kind, arg = resolved.window
        window = Window(periods=arg) if kind == "periods" else Window(to_date=arg)
    kpi = k.model_copy(update={
        "measure": texts.get("measure"),
        "ratio": Ratio(numerator=texts["numerator"], denominator=texts["denominator"]) if resolved.form == "ratio" else None,
        "model": model_text,
        "time": resolved.time.sql(dialect=dialect),
        "filter": resolved.filter.sql(dialect=dialect) if resolved.filter is not None else None,
        "window": window,
        "fill": "zero" if resolved.fill_zero else k.fill,
        "label": k.label or resolved.label,
        "description": k.description or resolved.description,
    })
    plan = KpiPlan(
        kpi=kpi,
        grains=grains,
        relation=relation,
        time=resolved.time,
        computation=kpi.computation,
        trees=dict(resolved.trees),
        filter=resolved.filter,
        dimensions=k.slice_dimensions,
        inputs=[],
        dimension_exprs=_slice_exprs(k, resolved.dimension_exprs),
        semantic=resolved,
    )
    plan.by_grain = {g: replace(plan, relation=r) for g, r in by_grain.items()}
    return plan


# A ratio or derived metric over simple metrics that other metric KPIs of the project compute (same metric, same
# grains, the KPI's slices among theirs) is planned as a derived KPI over their values where that is exactly
# MetricFlow's value and saves reading rows again: inputs over several semantic models (MetricFlow: each input
# aggregated alone, then a full outer join on metric_time and the group-by: a derived KPI's periods are the union
# of its inputs'), or an offset_window of whole periods at every grain of the KPI (an input n periods earlier is
# lag(k, n): the rows moved by whole periods aggregate to the period totals moved by them). Only where
# every input reads the metric as its KPI does (no filter of the input's own, no offset_to_grain, no fill, no
# cumulative window), the metric itself has no filter, and the expression is NULL wherever an unshifted input is
# (arithmetic only): a derived KPI has no row for a period none of its inputs has, where MetricFlow has NULL.
_STRICT = (exp.Column, exp.Identifier, exp.Literal, exp.Paren, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg)


def _served_by_kpis(project: ProjectDef, grains: dict[str, list[str]],
                    dialect: str) -> dict[str, tuple[str, list[dag.InputRef]]]:
    """The metric KPIs planned as derived KPIs over other metric KPIs: name -> (derived expression, its inputs)."""
    metric_kpis = [k for k in project.kpis if isinstance(k.computation, MetricForm)]
    if not any(k.metric for k in metric_kpis):
        return {}
    from .dbt.resolve import _window_periods
    from .dbt.semantic import semantic_layer

    layer, _ = semantic_layer(project)
    out: dict[str, tuple[str, list[dag.InputRef]]] = {}
    for k in metric_kpis:
        metric = layer.metrics.get(k.metric) if layer is not None else None
        if metric is None or metric.type not in ("ratio", "derived") or metric.filters or k.fill is not None:
            continue
        refs = [metric.numerator, metric.denominator] if metric.type == "ratio" else list(metric.inputs)
        names: dict[str, exp.Expression] = {}  # each input's name in the expression -> the KPI value it reads
        reads: set[tuple[str, str]] = set()  # the (semantic model, time dimension) of each input's measure
        lag0: list[str] = []
        sliced: set[str] | None = None  # the slices every input has: the derived KPI's (compiler.derived_dimensions)
        for ref in refs:
            source = _input_kpi(ref, k, metric_kpis, layer, grains)
            if source is None:
                break
            lags = {_window_periods(*ref.offset_window, g) if ref.offset_window else 0 for g in grains[k.name]}
            if len(lags) != 1 or None in lags:
                break
            sliced = set(source.slice_dimensions) if sliced is None else sliced & set(source.slice_dimensions)
            n, model = lags.pop(), layer.measure_model[layer.metrics[ref.name].measure.name]
            measure = model.measure(layer.metrics[ref.name].measure.name)
            reads.add((model.name, measure.agg_time_dimension or model.default_time or ""))
            column = exp.column(source.name, quoted=True)
            names[ref.alias or ref.name] = column if n == 0 else exp.Lag(this=column, offset=exp.Literal.number(n))
            if n == 0:
                lag0.append(ref.alias or ref.name)
        else:
            if len(reads) < 2 and all(ref.offset_window is None for ref in refs):
                continue  # over one model, unshifted: it shares the model's scan already
            if sliced != set(k.slice_dimensions):
                continue
            if metric.type == "ratio":
                tree: exp.Expression = exp.Div(this=exp.column(refs[0].alias or refs[0].name),
                                               expression=exp.column(refs[1].alias or refs[1].name))
            else:
                tree, _ = parse_snippet(metric.expr or "", dialect)
                if tree is None:
                    continue
                tree = tree.copy()
            columns = list(tree.find_all(exp.Column))
            if (not all(isinstance(n, _STRICT) for n in tree.walk())
                    or any(c.table or c.name not in names for c in columns)
                    or not any(c.name in lag0 for c in columns)):
                continue
            for column in columns:
                if column is tree:
                    tree = names[column.name].copy()
                else:
                    column.replace(names[column.name].copy())
            text = tree.sql(dialect=dialect)
            out[k.name] = (text, dag.derived_inputs(text, dialect))
    return out


def _input_kpi(ref, k: Kpi, metric_kpis: list[Kpi], layer, grains: dict[str, list[str]]) -> Kpi | None:
    """The metric KPI whose values are exactly the input `ref` of k's metric at k's grains and slices: a KPI of the
    same simple metric (no cumulative window, no fill) with k's grains, and whose slices leave k's (a derived KPI
    is sliced by what all its inputs are)."""
    inner = layer.metrics.get(ref.name) if ref is not None else None
    if (inner is None or ref.filters or ref.offset_to_grain is not None or inner.type != "simple"
            or inner.measure is None or inner.measure.fill_nulls_with is not None or inner.measure.join_to_timespine
            or layer.measure_model.get(inner.measure.name) is None):
        return None
    for other in metric_kpis:
        if (other.name != k.name and other.metric == ref.name and other.fill is None
                and set(grains[k.name]) <= set(grains[other.name])
                and set(k.slice_dimensions) <= set(other.slice_dimensions)):
            return other
    return None


def _served_plan(k: Kpi, grains: tuple[str, ...], resolved, derived: str, inputs: list[dag.InputRef],
                 dialect: str) -> KpiPlan:
    """A metric KPI planned as the derived KPI over other metric KPIs' values (_served_by_kpis): the metric's
    definition still enters its hash, and its label and description fill the KPI's."""
    kpi = k.model_copy(update={"derived": derived, "label": k.label or resolved.label,
                               "description": k.description or resolved.description})
    return KpiPlan(kpi=kpi, grains=grains, relation=None, time=None, computation=kpi.computation,
                   trees={"derived": _snippet(derived, dialect)}, filter=None, dimensions=k.slice_dimensions,
                   inputs=inputs, semantic=resolved)


def _joins_for(part, metrics: _Metrics) -> dict[str, Any]:
    """The entity joins the relation of a metric KPI (or of one branch of it, `part`) reads: none where it reads no
    dimension of another semantic model, so that it shares the scan of the bare model with every KPI over it (a
    measure KPI's `model:` too); else those of every metric KPI over the model that joins, so that those share one
    scan of the joined relation. A KPI never reads a join it does not need (a LEFT JOIN to a primary entity changes
    no value, but it is one more table read and hashed per row)."""
    return metrics.joins[part.model.name] if part.joins else {}


def _semantic_node(project: ProjectDef, model):
    """The dbt node a semantic model's node_relation names (None when the manifest has none)."""
    manifest = project.dbt_manifest()
    wanted = ((model.database or "").lower(), (model.schema or "").lower(), model.alias.lower())
    return next((n for n in (manifest.nodes() if manifest is not None else ())
                 if ((n.database or "").lower(), (n.schema or "").lower(), n.identifier.lower()) == wanted), None)


def _semantic_relation(project: ProjectDef, resolved, joins: dict[str, Any], dialect: str,
                       cache: dict[str, Relation]) -> tuple[Relation, str | None]:
    """The relation of a metric's semantic model and how `model:` would name it: the dbt node its node_relation
    names (the same Relation, and so the same scans, as `ref('name')` where that ref names it), else the table as
    named. Where a metric KPI over the model joins others by entities (`joins`: those of every metric KPI over
    it), one query of the model and all those joins (a CTE), shared by every metric KPI over the model; its hash
    is the model's (each KPI's own joins enter its hash with the metric)."""
    from .dbt.resolve import joined_relation

    model = resolved.model
    manifest = project.manifest
    node = _semantic_node(project, model)
    base: Relation | None = None
    text: str | None = None
    if node is not None and node.resource_type != "source":
        text = f"ref('{node.name}')" if node.version is None else f"ref('{node.name}', v={node.version})"
        if project.resolve_ref(node.name, None, node.version).node == node:
            base = build_relation(project, text, dialect, cache)
    if base is None:
        text = None
        key = "semantic:" + ".".join(p for p in (model.database, model.schema, model.alias) if p)
        if key not in cache:
            table = node.table() if node is not None else model.table()
            lineage = f"\n-- dbt {manifest.lineage(node)}" if node is not None and manifest is not None else ""
            cache[key] = Relation(key, table, [], table.sql(dialect="duckdb") + lineage, [], [node] if node else [])
        base = cache[key]
    if not joins:
        return base, text
    key = f"semantic-joined:{model.name}"
    if key not in cache:
        nodes = list(base.dbt_nodes)

        def table_of(m) -> exp.Table:
            if m is model:
                return base.table.copy()
            found = _semantic_node(project, m)
            if found is not None:
                nodes.append(found)
            return found.table() if found is not None else m.table()

        name = f"kpim_semantic_{model.name}"
        query = joined_relation(model, joins.values(), table_of)
        cache[key] = Relation(key, exp.Table(this=exp.to_identifier(name, quoted=True)),
                              [*base.ctes, (name, query)], base.sql_for_hash, base.source_tables, nodes)
    return cache[key], text


def _union_relation(project: ProjectDef, resolved, metrics: _Metrics, dialect: str,
                    cache: dict[str, Relation]) -> Relation:
    """The relation of a metric over several semantic models (dbt/resolve.union_relation): each branch reads its
    model's relation (with the entity joins of every metric KPI over it, as a metric KPI over that model alone)."""
    from .dbt.resolve import union_relation

    parts = {b.model.name: _semantic_relation(project, b, _joins_for(b, metrics), dialect, cache)[0]
             for b in resolved.branches}
    query = union_relation(resolved, lambda b: parts[b.model.name].table.copy())
    text = query.sql(dialect="duckdb")
    key = "semantic-union:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    if key not in cache:
        ctes = list({name: (name, q) for p in parts.values() for name, q in p.ctes}.values())
        name = f"kpim_semantic_union_{key.rsplit(':', 1)[1]}"
        cache[key] = Relation(key, exp.Table(this=exp.to_identifier(name, quoted=True)), [*ctes, (name, query)],
                              "\n".join(p.sql_for_hash for p in parts.values()),
                              [t for p in parts.values() for t in p.source_tables],
                              [n for p in parts.values() for n in p.dbt_nodes])
    return cache[key]


def _offset_relation(base: Relation, resolved, cache: dict[str, Relation], grain: str | None = None) -> Relation:
    """`base` with a copy of its rows per offset of the metric (dbt/resolve.offset_relation): at `grain` where an
    offset_to_grain makes it differ by grain."""
    from .dbt.resolve import offset_relation

    query = offset_relation(resolved, base.table, grain)
    text = query.sql(dialect="duckdb")
    key = f"{base.key}+offsets:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    if key not in cache:
        name = f"kpim_semantic_{resolved.model.name}_{key.rsplit(':', 1)[1]}"
        cache[key] = Relation(key, exp.Table(this=exp.to_identifier(name, quoted=True)), [*base.ctes, (name, query)],
                              base.sql_for_hash, base.source_tables, list(base.dbt_nodes), shifted=True)
    return cache[key]
