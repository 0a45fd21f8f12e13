"""A metric KPI's metric as people read it (issue 20): its name, type, label, description, where dbt defines it,
and its definition written as in the dbt project (measures as `agg(expr)`, filters with `Dimension()`, offsets and
windows), for the compiled manifest's `metric` entry and the scorecard's KPI page. The planned measure or ratio
(with kpimetrics' internal column names) stays in the manifest's form keys, for the tools that read those."""
from __future__ import annotations

from typing import Any

from .semantic import Metric, MetricInput, SemanticLayer

# how deep input metrics are spelled out under `inputs` (a derived metric over ratios over simple metrics is 3)
_DEPTH = 4


def metric_entry(metric: Metric, layer: SemanticLayer | None) -> dict[str, Any]:
    """The manifest's `metric` entry of a metric KPI."""
    where = metric.where
    return {
        "name": metric.name,
        "type": metric.type,
        "label": metric.label,
        "description": metric.description,
        "file": where.path,
        "line": where.line or None,
        "defined_at": f"{where.path}:{where.line}" if where.line else where.path,
        "definition": definition(metric, layer),
    }


def _window(window: tuple[int, str] | None) -> str | None:
    if window is None:
        return None
    count, unit = window
    return f"{count} {unit}" + ("s" if count != 1 and not unit.endswith("s") else "")


def _filters(filters: tuple[str, ...]) -> str | list[str] | None:
    return None if not filters else filters[0] if len(filters) == 1 else list(filters)


def _measure(metric: Metric, layer: SemanticLayer | None) -> dict[str, Any]:
    ref = metric.measure
    assert ref is not None
    model = layer.measure_model.get(ref.name) if layer is not None else None
    measure = model.measure(ref.name) if model is not None else None
    out: dict[str, Any] = {"name": ref.name}
    if measure is not None:
        args = measure.expr + (f", {measure.percentile:g}" if measure.agg == "percentile" and measure.percentile is not None
                               else "")
        out["computes"] = f"{measure.agg}({args})"
        out["semantic_model"] = model.name
        if measure.agg_time_dimension or model.default_time:
            out["agg_time_dimension"] = measure.agg_time_dimension or model.default_time
    out["filter"] = _filters(ref.filters)
    out["fill_nulls_with"] = ref.fill_nulls_with
    return {k: v for k, v in out.items() if v is not None}


def _input(ref: MetricInput) -> dict[str, Any] | str:
    out = {"name": ref.name, "alias": ref.alias, "filter": _filters(ref.filters),
           "offset_window": _window(ref.offset_window), "offset_to_grain": ref.offset_to_grain}
    out = {k: v for k, v in out.items() if v is not None}
    return out["name"] if len(out) == 1 else out


def definition(metric: Metric, layer: SemanticLayer | None, depth: int = 0) -> dict[str, Any]:
    """The metric's definition as its dbt YAML writes it (type_params flattened), its input metrics under `inputs`."""
    out: dict[str, Any] = {"type": metric.type}
    if metric.measure is not None:
        out["measure"] = _measure(metric, layer)
    if metric.numerator is not None:
        out["numerator"] = _input(metric.numerator)
    if metric.denominator is not None:
        out["denominator"] = _input(metric.denominator)
    if metric.expr and metric.type == "derived":
        out["expr"] = metric.expr
    if metric.inputs:
        out["metrics"] = [_input(i) for i in metric.inputs]
    if metric.type == "cumulative":
        out["window"] = _window(metric.window) or (None if metric.grain_to_date else "all time")
        out["grain_to_date"] = metric.grain_to_date
    out["filter"] = _filters(metric.filters)
    refs = [r.name for r in (metric.numerator, metric.denominator, *metric.inputs) if r is not None]
    if refs and layer is not None and depth < _DEPTH:
        inner = {n: layer.metrics[n] for n in dict.fromkeys(refs) if n in layer.metrics}
        out["inputs"] = {n: definition(m, layer, depth + 1) for n, m in inner.items()}
    return {k: v for k, v in out.items() if v not in (None, {}, [])}
