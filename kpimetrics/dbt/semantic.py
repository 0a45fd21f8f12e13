"""dbt's semantic layer (MetricFlow's semantic_manifest.json) read as data (SPEC §9).

`load_layer` reads semantic_manifest.json as untrusted input, as manifest.py reads manifest.json: size-limited,
JSON only, every value kpimetrics uses type-checked (KPI171 otherwise), into frozen `SemanticModel`s and
`Metric`s; each metric is given its file and line in the dbt project, from manifest.json's `original_file_path`
and that YAML file's `name:` under `metrics:`. dbt/resolve.py turns a metric KPI into what it computes;
`metrics_listing` is `kpimetrics ls --metrics`.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlglot import exp

from ..errors import Issue, Location, error
from ..yamlio import load_yaml, shown
from .manifest import ArtifactProblem, _read_json
from .project import DbtProject

AGGREGATIONS = ("sum", "count", "count_distinct", "average", "min", "max", "sum_boolean", "median", "percentile")
METRIC_TYPES = ("simple", "ratio", "derived", "cumulative", "conversion")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_REBUILD = "run `dbt parse` again; semantic_manifest.json is written by dbt, never by hand"


# --- the semantic manifest, as data ---------------------------------------------------------------

@dataclass(frozen=True)
class Entity:
    name: str
    type: str  # primary | unique | natural | foreign
    expr: str


@dataclass(frozen=True)
class Dimension:
    name: str
    type: str  # categorical | time
    expr: str
    granularity: str | None


@dataclass(frozen=True)
class Measure:
    name: str
    agg: str
    expr: str
    agg_time_dimension: str | None
    percentile: float | None = None
    discrete: bool = False
    non_additive: bool = False


@dataclass(frozen=True)
class SemanticModel:
    name: str
    database: str | None
    schema: str | None
    alias: str
    default_time: str | None
    primary_entity: str | None
    entities: tuple[Entity, ...]
    dimensions: tuple[Dimension, ...]
    measures: tuple[Measure, ...]
    raw: str  # its JSON, for the definition hash

    def measure(self, name: str) -> Measure | None:
        return next((x for x in self.measures if x.name == name), None)

    def dimension(self, name: str) -> Dimension | None:
        return next((x for x in self.dimensions if x.name == name), None)

    def entity(self, name: str) -> Entity | None:
        return next((x for x in self.entities if x.name == name), None)

    def own_entities(self) -> set[str]:
        """The entities whose dimensions are this model's own: its primary, unique and natural ones."""
        own = {e.name for e in self.entities if e.type in ("primary", "unique", "natural")}
        return own | ({self.primary_entity} if self.primary_entity else set())

    def table(self) -> exp.Table:
        return exp.table_(exp.to_identifier(self.alias, quoted=True),
                          db=exp.to_identifier(self.schema, quoted=True) if self.schema else None,
                          catalog=exp.to_identifier(self.database, quoted=True) if self.database else None)


@dataclass(frozen=True)
class MeasureInput:
    name: str
    filters: tuple[str, ...]
    fill_nulls_with: Any
    join_to_timespine: bool


@dataclass(frozen=True)
class MetricInput:
    name: str
    filters: tuple[str, ...]
    alias: str | None
    offset_window: tuple[int, str] | None
    offset_to_grain: str | None


@dataclass(frozen=True)
class Metric:
    name: str
    type: str
    label: str | None
    description: str | None
    filters: tuple[str, ...]
    measure: MeasureInput | None
    numerator: MetricInput | None
    denominator: MetricInput | None
    expr: str | None
    inputs: tuple[MetricInput, ...]
    window: tuple[int, str] | None
    grain_to_date: str | None
    raw: str  # its JSON, for the definition hash
    where: Location  # its `name:` in the dbt project's YAML (or semantic_manifest.json when not found)


@dataclass
class SemanticLayer:
    display: str  # semantic_manifest.json, relative to the kpimetrics project
    models: dict[str, SemanticModel] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    measure_model: dict[str, SemanticModel] = field(default_factory=dict)  # each measure's semantic model


def _bad(display: str, message: str) -> ArtifactProblem:
    return ArtifactProblem(error("KPI171", f"not a semantic manifest dbt wrote: {message}", Location(display, 1, 1),
                                 _REBUILD))


class _Reader:
    """Type-checked reads of the JSON, each problem KPI171 naming where in the document it is."""

    def __init__(self, display: str):
        self.display = display

    def obj(self, value: Any, where: str, *, optional: bool = False) -> dict | None:
        if value is None and optional:
            return None
        if not isinstance(value, dict):
            raise _bad(self.display, f"{where} is not an object (got {shown(value, 40)})")
        return value

    def items(self, value: Any, where: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise _bad(self.display, f"{where} is not a list (got {shown(value, 40)})")
        return value

    def name(self, entry: dict, key: str, where: str, *, optional: bool = False) -> str | None:
        value = entry.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not _NAME.match(value):
            raise _bad(self.display, f"{where}.{key} is not a name (got {shown(value, 40)})")
        return value

    def text(self, entry: dict, key: str, where: str, limit: int = 65536) -> str | None:
        value = entry.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > limit or "\x00" in value:
            raise _bad(self.display, f"{where}.{key} is not text (got {shown(value, 40)})")
        return value

    def choice(self, entry: dict, key: str, where: str, allowed: tuple[str, ...], *, optional: bool = False) -> str | None:
        value = entry.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or value.lower() not in allowed:
            raise _bad(self.display, f"{where}.{key} is not one of {', '.join(allowed)} (got {shown(value, 40)})")
        return value.lower()

    def filters(self, entry: dict, where: str) -> tuple[str, ...]:
        found = self.obj(entry.get("filter"), f"{where}.filter", optional=True)
        if found is None:
            return ()
        out = []
        for i, f in enumerate(self.items(found.get("where_filters"), f"{where}.filter.where_filters")):
            f = self.obj(f, f"{where}.filter.where_filters[{i}]")
            out.append(self.text(f, "where_sql_template", f"{where}.filter.where_filters[{i}]") or "")
        return tuple(out)

    def window(self, value: Any, where: str) -> tuple[int, str] | None:
        found = self.obj(value, where, optional=True)
        if found is None:
            return None
        count = found.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or not 0 < count < 10**6:
            raise _bad(self.display, f"{where}.count is not a whole number of periods (got {shown(count, 40)})")
        gran = self.name(found, "granularity", where)
        return count, gran.lower()


def _entity(r: _Reader, e: Any, where: str) -> Entity:
    e = r.obj(e, where)
    name = r.name(e, "name", where)
    return Entity(name, r.name(e, "type", where).lower(), r.text(e, "expr", where) or name)


def _dimension(r: _Reader, d: Any, where: str) -> Dimension:
    d = r.obj(d, where)
    name = r.name(d, "name", where)
    params = r.obj(d.get("type_params"), f"{where}.type_params", optional=True) or {}
    gran = r.name(params, "time_granularity", f"{where}.type_params", optional=True)
    return Dimension(name, r.choice(d, "type", where, ("categorical", "time")), r.text(d, "expr", where) or name,
                     gran.lower() if gran else None)


def _measure(r: _Reader, x: Any, where: str) -> Measure:
    x = r.obj(x, where)
    name = r.name(x, "name", where)
    params = r.obj(x.get("agg_params"), f"{where}.agg_params", optional=True) or {}
    percentile = params.get("percentile")
    if percentile is not None and (isinstance(percentile, bool) or not isinstance(percentile, (int, float))
                                   or not 0 <= percentile <= 1):
        raise _bad(r.display, f"{where}.agg_params.percentile is not a number from 0 to 1")
    return Measure(name, r.choice(x, "agg", where, AGGREGATIONS), r.text(x, "expr", where) or name,
                   r.name(x, "agg_time_dimension", where, optional=True),
                   float(percentile) if percentile is not None else None,
                   params.get("use_discrete_percentile") is True,
                   x.get("non_additive_dimension") is not None)


def _semantic_model(r: _Reader, sm: Any, i: int) -> SemanticModel:
    where = f"semantic_models[{i}]"
    sm = r.obj(sm, where)
    name = r.name(sm, "name", where)
    where = f"semantic_models.{name}"
    rel = r.obj(sm.get("node_relation"), f"{where}.node_relation")
    defaults = r.obj(sm.get("defaults"), f"{where}.defaults", optional=True) or {}
    return SemanticModel(
        name=name,
        database=r.text(rel, "database", f"{where}.node_relation", 1024),
        schema=r.text(rel, "schema_name", f"{where}.node_relation", 1024),
        alias=r.text(rel, "alias", f"{where}.node_relation", 1024) or _missing(r, f"{where}.node_relation.alias"),
        default_time=r.name(defaults, "agg_time_dimension", f"{where}.defaults", optional=True),
        primary_entity=r.name(sm, "primary_entity", where, optional=True),
        entities=tuple(_entity(r, e, f"{where}.entities[{j}]") for j, e in enumerate(r.items(sm.get("entities"), where))),
        dimensions=tuple(_dimension(r, d, f"{where}.dimensions[{j}]")
                         for j, d in enumerate(r.items(sm.get("dimensions"), where))),
        measures=tuple(_measure(r, x, f"{where}.measures[{j}]") for j, x in enumerate(r.items(sm.get("measures"), where))),
        raw=json.dumps(sm, sort_keys=True, default=str),
    )


def _missing(r: _Reader, where: str) -> str:
    raise _bad(r.display, f"{where} is missing")


def _measure_input(r: _Reader, value: Any, where: str) -> MeasureInput | None:
    if value is None:
        return None
    if isinstance(value, str):
        return MeasureInput(value, (), None, False)
    m = r.obj(value, where)
    fill = m.get("fill_nulls_with")
    if fill is not None and (isinstance(fill, bool) or not isinstance(fill, (int, float))):
        raise _bad(r.display, f"{where}.fill_nulls_with is not a number")
    return MeasureInput(r.name(m, "name", where), r.filters(m, where), fill, m.get("join_to_timespine") is True)


def _metric_input(r: _Reader, value: Any, where: str) -> MetricInput | None:
    if value is None:
        return None
    if isinstance(value, str):
        return MetricInput(value, (), None, None, None)
    m = r.obj(value, where)
    return MetricInput(r.name(m, "name", where), r.filters(m, where), r.name(m, "alias", where, optional=True),
                       r.window(m.get("offset_window"), f"{where}.offset_window"),
                       r.name(m, "offset_to_grain", where, optional=True))


def _metric(r: _Reader, m: Any, i: int, lines: dict[str, Location], display: str) -> Metric:
    where = f"metrics[{i}]"
    m = r.obj(m, where)
    name = r.name(m, "name", where)
    where = f"metrics.{name}"
    kind = r.choice(m, "type", where, METRIC_TYPES)
    params = r.obj(m.get("type_params"), f"{where}.type_params")
    cumulative = r.obj(params.get("cumulative_type_params"), f"{where}.type_params.cumulative_type_params",
                       optional=True) or {}
    window = r.window(cumulative.get("window"), f"{where}.type_params.cumulative_type_params.window") \
        or r.window(params.get("window"), f"{where}.type_params.window")
    to_date = r.name(cumulative, "grain_to_date", f"{where}.type_params.cumulative_type_params", optional=True) \
        or r.name(params, "grain_to_date", f"{where}.type_params", optional=True)
    return Metric(
        name=name, type=kind,
        label=r.text(m, "label", where, 1024), description=r.text(m, "description", where) or None,
        filters=r.filters(m, where),
        measure=_measure_input(r, params.get("measure"), f"{where}.type_params.measure"),
        numerator=_metric_input(r, params.get("numerator"), f"{where}.type_params.numerator"),
        denominator=_metric_input(r, params.get("denominator"), f"{where}.type_params.denominator"),
        expr=r.text(params, "expr", f"{where}.type_params"),
        inputs=tuple(_metric_input(r, x, f"{where}.type_params.metrics[{j}]")
                     for j, x in enumerate(r.items(params.get("metrics"), f"{where}.type_params.metrics"))),
        window=window, grain_to_date=to_date.lower() if to_date else None,
        raw=json.dumps(m, sort_keys=True, default=str),
        where=lines.get(name) or Location(display, 1, 1),
    )


def _metric_lines(dbt: DbtProject, root: Path) -> dict[str, Location]:
    """Each metric's `name:` in the dbt project's YAML: its file from manifest.json's `metrics` (original_file_path),
    its line from that file. Best effort: a metric not found is placed at semantic_manifest.json."""
    out: dict[str, Location] = {}
    if not dbt.manifest_path.exists():
        return out
    try:
        data = _read_json(dbt.manifest_path, os.path.relpath(dbt.manifest_path, root), "dbt's manifest.json")
    except ArtifactProblem:
        return out  # said where the manifest is read for ref()/source() (KPI142)
    metrics = data.get("metrics") if isinstance(data, dict) else None
    meta = data.get("metadata") if isinstance(data, dict) else None
    project = meta.get("project_name") if isinstance(meta, dict) else None
    files: dict[str, list[str]] = {}
    for entry in (metrics.values() if isinstance(metrics, dict) else ()):
        if not isinstance(entry, dict):
            continue
        name, path = entry.get("name"), entry.get("original_file_path")
        if isinstance(name, str) and isinstance(path, str) and "\x00" not in path and entry.get("package_name") == project:
            files.setdefault(path, []).append(name)
    for rel, names in files.items():
        try:
            path = (dbt.dir / rel).resolve()
            if not path.is_relative_to(dbt.dir.resolve()) or not path.is_file():
                continue
        except (OSError, ValueError):  # a path the manifest made up: the metric is placed at the semantic manifest
            continue
        display = os.path.relpath(path, root)
        doc, issues = load_yaml(path, display)
        if issues or not isinstance(doc, dict) or not isinstance(doc.get("metrics"), list):
            continue
        for item in doc["metrics"]:
            if isinstance(item, dict) and item.get("name") in names and getattr(item, "loc", None) is not None:
                out.setdefault(item["name"], item.value_loc("name") if hasattr(item, "value_loc") else item.loc)
    return out


def load_layer(dbt: DbtProject | None, root: Path) -> tuple[SemanticLayer | None, Issue | None]:
    """dbt's semantic layer, or why it cannot be had: no dbt project or no semantic_manifest.json (KPI170), or
    one that cannot be used (KPI171)."""
    if dbt is None:
        return None, error("KPI170", "a KPI names a `metric:`, and there is no dbt project at or above kpimetrics.yml",
                           None, "keep kpimetrics.yml in the dbt project (or set dbt.project_dir), and run `dbt parse`")
    path = dbt.semantic_manifest_path
    display = os.path.relpath(path, root)
    if not path.exists():
        return None, error("KPI170", f"dbt's semantic manifest {display} is missing", None,
                           f"run `dbt parse` (or compile, run, build) in {os.path.relpath(dbt.dir, root)} before kpimetrics")
    try:
        data = _read_json(path, display, "dbt's semantic_manifest.json")
        r = _Reader(display)
        data = r.obj(data, "the document")
        layer = SemanticLayer(display)
        for i, sm in enumerate(r.items(data.get("semantic_models"), "semantic_models")):
            model = _semantic_model(r, sm, i)
            layer.models[model.name] = model
            for measure in model.measures:
                layer.measure_model.setdefault(measure.name, model)
        lines = _metric_lines(dbt, root)
        for i, m in enumerate(r.items(data.get("metrics"), "metrics")):
            metric = _metric(r, m, i, lines, display)
            layer.metrics[metric.name] = metric
    except ArtifactProblem as problem:
        issue = problem.issue
        if issue.code == "KPI142":  # the reader's own problems (size, UTF-8, JSON) are this artifact's
            issue = error("KPI171", issue.message, issue.location, issue.hint)
        return None, issue
    return layer, None


def place(metric: Metric) -> str:
    w = metric.where
    return f"{w.path}:{w.line}" if w.line else w.path


def semantic_layer(project) -> tuple[SemanticLayer | None, Issue | None]:
    """The project's semantic layer, read once per loaded project (kept on the project object, like its manifest)."""
    found = project.__dict__.get("_semantic_layer")
    if found is None:
        found = project.__dict__["_semantic_layer"] = load_layer(project.dbt, project.root)
    return found


def metric_users(kpis) -> dict[str, list[str]]:
    """metric name -> the KPIs and standards that name it, in project order."""
    out: dict[str, list[str]] = {}
    for k in kpis:
        if getattr(k, "metric", None):
            out.setdefault(k.metric, []).append(k.name)
    return out


def metrics_listing(project) -> list[dict[str, Any]]:
    """`kpimetrics ls --metrics`: every metric of the semantic layer (name order), what it is, where it is defined,
    and the KPIs and standards that name it. A semantic layer that cannot be read is a ValidationFailed with its
    issue."""
    from ..errors import ValidationFailed

    layer, problem = semantic_layer(project)
    if problem is not None:
        raise ValidationFailed(problem.message, [problem])
    assert layer is not None
    users = metric_users(project.kpis)
    out = []
    for name in sorted(layer.metrics):
        metric = layer.metrics[name]
        models = _models_of(layer, metric, set())
        out.append({"name": name, "type": metric.type, "label": metric.label, "description": metric.description,
                    "semantic_model": models[0] if len(models) == 1 else models or None,
                    "defined_at": place(metric), "kpis": users.get(name, [])})
    return out


def _models_of(layer: SemanticLayer, metric: Metric, seen: set[str]) -> list[str]:
    """The semantic models a metric's measures are in, through its input metrics."""
    if metric.name in seen:
        return []
    seen.add(metric.name)
    found: list[str] = []
    measures = [metric.measure] if metric.measure is not None else []
    for ref in measures:
        model = layer.measure_model.get(ref.name)
        if model is not None and model.name not in found:
            found.append(model.name)
    for ref in (metric.numerator, metric.denominator, *metric.inputs):
        inner = layer.metrics.get(ref.name) if ref is not None else None
        for name in (_models_of(layer, inner, seen) if inner is not None else []):
            if name not in found:
                found.append(name)
    return found
