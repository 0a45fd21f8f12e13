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
    orders["measures"].append({"name": "balance", "agg": "sum", "expr": "amount", "agg_params": None,
                               "agg_time_dimension": None, "non_additive_dimension": {
                                   "name": "ordered_at", "window_choice": "max", "window_groupings": []}})
    visits = {"name": "visits", "defaults": None, "description": None, "primary_entity": None,
              "node_relation": {"alias": "orders", "schema_name": "main", "database": "wh"},
              "entities": [{"name": "visit", "type": "primary", "expr": "order_id"}],
              "dimensions": [{"name": "visited_at", "type": "time", "type_params": {"time_granularity": "day"},
                              "expr": "ordered_at"}],
              "measures": [{"name": "visits", "agg": "count", "expr": "order_id", "agg_params": None,
                            "non_additive_dimension": None, "agg_time_dimension": None}]}
    return json.dumps({"semantic_models": [orders, visits], "metrics": list(metrics), "project_configuration": {}})


METRICS = (
    _metric("revenue", "simple", measure=_measure_input("revenue")),
    _metric("repeat_buyers", "conversion", conversion_type_params={
        "base_measure": _measure_input("revenue"), "conversion_measure": _measure_input("revenue"),
        "entity": "customer", "calculation": "conversion_rate", "window": {"count": 7, "granularity": "day"}}),
    _metric("odd_filter", "simple", measure=_measure_input("revenue", ("{{ Metric('revenue', ['order']) }} > 10",))),
    _metric("secret_revenue", "simple", measure=_measure_input(
        "revenue", ("{{ Dimension('order__channel') }} = read_text('/proc/self/environ')",))),
)


def _input(name: str, alias: str | None = None, **params) -> dict:
    return {"name": name, "filter": None, "alias": alias, "offset_window": None, "offset_to_grain": None, **params}


def _filtered(name: str, where: str) -> dict:
    metric = _metric(name, "simple", measure=_measure_input("revenue"))
    return {**metric, "filter": {"where_filters": [{"where_sql_template": where}]}}


# Every metric feature kpimetrics does not compute (dbt/resolve.py's KPI173), each a metric of its own whose
# `name:` is on UNSUPPORTED_LINE + 2 * its index in the dbt project's YAML: (metric, the KPI's grain, what is said)
_MONTH = {"count": 1, "granularity": "month"}
UNSUPPORTED = [
    (_filtered("hourly_revenue", "{{ TimeDimension('order__ordered_at', 'hour') }} >= '2025-01-01'"), "month",
     "time dimension 'order__ordered_at' at grain 'hour'"),
    (_filtered("area_revenue", "{{ Entity('customer__area') }} = 'north'"), "month",
     "entity 'customer__area' of another semantic model (entity joins)"),
    (_metric("balance", "simple", measure=_measure_input("balance")), "month",
     "measure 'balance' with a non_additive_dimension"),
    (_metric("revenue_or_one", "simple", measure={**_measure_input("revenue"), "fill_nulls_with": 1}), "month",
     "fill_nulls_with: 1 (only 0, as `fill: zero`)"),
    (_metric("visit_count", "simple", measure=_measure_input("visits")), "month",
     "measure 'visits' has no agg_time_dimension, so it is not supported"),
    (_metric("since_hour_start", "derived", expr="revenue - start",
             metrics=[_input("revenue"), _input("revenue", "start", offset_to_grain="hour")]), "day",
     "input metric 'start' with offset_to_grain hour (day, week, month, quarter, year are) is not supported"),
    (_metric("growth", "derived", expr="revenue - before",
             metrics=[_input("revenue"), _input("revenue", "before", offset_window=_MONTH)]), "month", None),
    (_metric("growth_change", "derived", expr="growth - growth_before",
             metrics=[_input("growth"), _input("growth", "growth_before", offset_window=_MONTH)]), "month", None),
    (_metric("running_revenue", "cumulative", measure=_measure_input("revenue")), "month", None),
    (_metric("running_share", "ratio", numerator=_input("running_revenue"), denominator=_input("revenue")), "month",
     "a cumulative metric ('running_revenue') as the input of a ratio metric"),
    (_metric("revenue_week_to_date", "cumulative", measure=_measure_input("revenue"),
             cumulative_type_params={"window": None, "grain_to_date": "week", "period_agg": "first"}), "day",
     "grain_to_date: week (month, quarter or year are)"),
    (_metric("revenue_month_to_date", "cumulative", measure=_measure_input("revenue"),
             cumulative_type_params={"window": None, "grain_to_date": "month", "period_agg": "first"}), "year",
     "grain_to_date: month at grain year (a grain coarser than it)"),
]
UNSUPPORTED_LINE = 13
SEMANTIC_YML += "".join(f"  - name: {m['name']}\n    type: {m['type']}\n" for m, _, _ in UNSUPPORTED)


def _dbt_manifest() -> str:
    doc = json.loads(manifest())
    doc["metrics"] = {f"metric.shop.{m['name']}": {"name": m["name"], "package_name": "shop",
                                                   "original_file_path": "models/semantic.yml"}
                      for m in [*METRICS, *(u for u, _, _ in UNSUPPORTED)]}
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


def _files(kpis: str, semantic: str | None = semantic_manifest(*METRICS, *(u for u, _, _ in UNSUPPORTED))
           ) -> dict[str, str]:
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

FAULTS += [Fault("KPI173", _files(_kpi(f"metric: {m['name']}\n            grain: {grain}")), "dbt/models/semantic.yml",
                 UNSUPPORTED_LINE + 2 * i, f"metric '{m['name']}' (dbt/models/semantic.yml:{UNSUPPORTED_LINE + 2 * i}): "
                                           f"{what}")
           for i, (m, grain, what) in enumerate(UNSUPPORTED) if what is not None]
# an offset inside an offset: said at the inner metric (growth, whose offset input growth_change offsets again)
FAULTS.append(Fault("KPI173", _files(_kpi("metric: growth_change")), "dbt/models/semantic.yml", UNSUPPORTED_LINE + 12,
                    f"metric 'growth' (dbt/models/semantic.yml:{UNSUPPORTED_LINE + 12}): input metric 'before' with an "
                    "offset_window inside another input's offset"))

ELSEWHERE: dict[str, str] = {}
