"""Hostile-input corpus: KPIs over dbt's semantic layer (SPEC §9, KPI170-176; see corpus.py). FAULTS run in
test_error_catalog; ELSEWHERE: code -> where it is tested.

The example project gets a dbt project in its folder `dbt/` (named by `dbt.project_dir`) with a hand-written
semantic_manifest.json (its shape as dbt 1.11 writes it, reduced to what kpimetrics reads), a manifest.json whose
`metrics` name the YAML file each metric is defined in, that file, and one metric KPI in kpis/metric.yml. Real
dbt and MetricFlow build the semantic layer of tests/test_semantic.py.
"""
from __future__ import annotations

import json

from corpus import Fault
from dbt_manifest import DBT_PROJECT_YML, manifest
from helpers_projects import KPIMETRICS_YML

CONFIG = KPIMETRICS_YML.rstrip() + "\n    dbt: {project_dir: dbt}\n"
SEMANTIC = "dbt/target/semantic_manifest.json"
SEMANTIC_YML = """\
semantic_models:
  - name: orders
    model: ref('orders')
metrics:
  - name: revenue
    type: simple
  - name: repeat_buyers
    type: conversion
  - name: odd_filter
    type: simple
  - name: secret_revenue
    type: simple
"""  # revenue's name on line 5, repeat_buyers' on line 7, odd_filter's on line 9, secret_revenue's on 11


def _measure_input(name: str, filters: tuple[str, ...] = ()) -> dict:
    return {"name": name, "filter": {"where_filters": [{"where_sql_template": f} for f in filters]} if filters else None,
            "alias": None, "join_to_timespine": False, "fill_nulls_with": None}


def _metric(name: str, kind: str, **params) -> dict:
    type_params = {"measure": None, "numerator": None, "denominator": None, "expr": None, "window": None,
                   "grain_to_date": None, "metrics": [], "conversion_type_params": None,
                   "cumulative_type_params": None, **params}
    return {"name": name, "description": "", "type": kind, "type_params": type_params, "filter": None,
            "label": name.replace("_", " ").capitalize(), "metadata": None, "config": {"meta": {}}}


def semantic_manifest(*metrics: dict) -> str:
    orders = {
        "name": "orders", "defaults": {"agg_time_dimension": "ordered_at"}, "description": None,
        "node_relation": {"alias": "orders", "schema_name": "main", "database": "wh",
                          "relation_name": '"wh"."main"."orders"'},
        "primary_entity": None,
        "entities": [{"name": "order", "type": "primary", "expr": "order_id"},
                     {"name": "customer", "type": "foreign", "expr": "customer_id"}],
        "dimensions": [{"name": "ordered_at", "type": "time", "type_params": {"time_granularity": "day"}, "expr": None},
                       {"name": "channel", "type": "categorical", "type_params": None, "expr": None}],
        "measures": [{"name": "revenue", "agg": "sum", "expr": "amount", "agg_params": None,
                      "non_additive_dimension": None, "agg_time_dimension": None}],
    }
    return json.dumps({"semantic_models": [orders], "metrics": list(metrics), "project_configuration": {}})


METRICS = (
    _metric("revenue", "simple", measure=_measure_input("revenue")),
    _metric("repeat_buyers", "conversion", conversion_type_params={
        "base_measure": _measure_input("revenue"), "conversion_measure": _measure_input("revenue"),
        "entity": "customer", "calculation": "conversion_rate", "window": {"count": 7, "granularity": "day"}}),
    _metric("odd_filter", "simple", measure=_measure_input("revenue", ("{{ Metric('revenue', ['order']) }} > 10",))),
    _metric("secret_revenue", "simple", measure=_measure_input(
        "revenue", ("{{ Dimension('order__channel') }} = read_text('/proc/self/environ')",))),
)


def _dbt_manifest() -> str:
    doc = json.loads(manifest())
    doc["metrics"] = {f"metric.shop.{m['name']}": {"name": m["name"], "package_name": "shop",
                                                   "original_file_path": "models/semantic.yml"} for m in METRICS}
    return json.dumps(doc)


def _kpi(body: str) -> str:
    """kpis/metric.yml: one metric KPI; `metric:` on line 7."""
    return f"""
        kpis:
          - name: metric_revenue
            owner: vp_sales
            strategy: grow_repeat_purchases
            indicator: leading
            target: 100
            {body}
            actions: Ask the data team
    """


def _files(kpis: str, semantic: str | None = semantic_manifest(*METRICS)) -> dict[str, str]:
    files = {"kpimetrics.yml": CONFIG, "dbt/dbt_project.yml": DBT_PROJECT_YML, "dbt/target/manifest.json": _dbt_manifest(),
             "dbt/models/semantic.yml": SEMANTIC_YML, "kpis/metric.yml": kpis}
    if semantic is not None:
        files[SEMANTIC] = semantic
    return files


FAULTS: list[Fault] = [
    Fault("KPI170", _files(_kpi("metric: revenue"), None), "kpis/metric.yml", 7,
          "dbt's semantic manifest dbt/target/semantic_manifest.json is missing"),
    Fault("KPI171", _files(_kpi("metric: revenue"), semantic_manifest(*METRICS)[:-30]), SEMANTIC, 1,
          "dbt's semantic_manifest.json is not JSON"),
    Fault("KPI171", _files(_kpi("metric: revenue"), semantic_manifest(*METRICS).replace('"agg": "sum"', '"agg": 7')),
          SEMANTIC, 1, "semantic_models.orders.measures[0].agg is not one of sum, count"),
    Fault("KPI172", _files(_kpi("metric: revenu")), "kpis/metric.yml", 7,
          "unknown metric 'revenu' in dbt/target/semantic_manifest.json (did you mean 'revenue'?)"),
    Fault("KPI173", _files(_kpi("metric: repeat_buyers")), "dbt/models/semantic.yml", 7,
          "metric 'repeat_buyers' (dbt/models/semantic.yml:7): a conversion metric is not supported by kpimetrics"),
    Fault("KPI174", _files(_kpi("metric: revenue\n            time: ordered_at")), "kpis/metric.yml", 8,
          "takes no `time`"),
    Fault("KPI175", _files(_kpi("metric: revenue\n            dimensions: [order__chanel]")), "kpis/metric.yml", 8,
          "semantic model 'orders' has no dimension 'order__chanel' (did you mean 'order__channel'?)"),
    Fault("KPI176", _files(_kpi("metric: odd_filter")), "dbt/models/semantic.yml", 9,
          "has Jinja other than {{ Dimension(...) }}"),
    Fault("KPI173", _files(_kpi("metric: revenue\n            grain: day"), semantic_manifest(*METRICS).replace(
        '"time_granularity": "day"', '"time_granularity": "month"')), "dbt/models/semantic.yml", 5,
          "metric 'revenue' (dbt/models/semantic.yml:5): grain day finer than its time dimension 'ordered_at' "
          "(time_granularity: month) is not supported"),
    Fault("KPI120", _files(_kpi("metric: secret_revenue")), "dbt/models/semantic.yml", 11,
          "metric 'secret_revenue' (dbt/models/semantic.yml:11) calls `read_text('/proc/self/environ')`"),
]

ELSEWHERE: dict[str, str] = {}
