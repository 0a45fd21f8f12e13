"""Hostile-input corpus: a dbt project and its artifacts (see corpus.py). FAULTS run in test_error_catalog;
ELSEWHERE: code -> where it is tested.

The example project gets a dbt project in its folder `dbt/` (named by `dbt.project_dir`) whose manifest the
test writes (tests/dbt_manifest.py), and one KPI over a dbt node in kpis/dbt.yml.
"""
from __future__ import annotations

import json

from corpus import ANY_LINE, Fault
from dbt_manifest import DBT_PROJECT_YML, catalog, manifest, node, source
from helpers_projects import KPIMETRICS_YML

CONFIG = KPIMETRICS_YML.rstrip() + "\n    dbt: {project_dir: dbt}\n"
ORDERS_MART = node("orders_mart", alias="orders", columns=["order_id", "customer_id", "ordered_at", "amount"])
MANIFEST = "dbt/target/manifest.json"
CATALOG = {"dbt/target/catalog.json": catalog(("model.shop.orders_mart", ["order_id", "ordered_at", "amount"]),
                                              ("source.shop.raw.orders", ["ordered_at", "amount"]))}


def _kpi(model: str, measure: str = "sum(amount)") -> str:
    """kpis/dbt.yml: one KPI over `model`; its `model:` on line 6, its measure on line 8."""
    return f"""
        kpis:
          - name: dbt_revenue
            owner: vp_sales
            strategy: grow_repeat_purchases
            indicator: leading
            model: {model}
            time: ordered_at
            measure: {measure}
            target: 100
            actions: Ask the data team
    """


def _dbt(kpis: str, manifest_text: str | None, **more: str) -> dict[str, str]:
    files = {"kpimetrics.yml": CONFIG, "dbt/dbt_project.yml": DBT_PROJECT_YML, "kpis/dbt.yml": kpis, **more}
    if manifest_text is not None:
        files[MANIFEST] = manifest_text
    return files


def _broken_json() -> str:
    return manifest(ORDERS_MART)[:-40]


FAULTS: list[Fault] = [
    Fault("KPI031", _dbt(_kpi("ref('orders_mrt')"), manifest(ORDERS_MART)), "kpis/dbt.yml", 6,
          "unknown model ref('orders_mrt'): not a kpimetrics model, nor a dbt model, seed or snapshot in "
          "dbt/target/manifest.json; did you mean 'orders_mart'?"),
    Fault("KPI031", _dbt(_kpi("ref('orders_mart', v=3)"), manifest(ORDERS_MART)), "kpis/dbt.yml", 6,
          "model 'orders_mart' has no versions"),
    Fault("KPI031", _dbt(_kpi("ref('customers', v=3)"), manifest(
        node("customers", version=1, latest_version=2), node("customers", version=2, latest_version=2))),
        "kpis/dbt.yml", 6, "model 'customers' has no version 3 (versions: 1, 2)"),
    Fault("KPI031", _dbt(_kpi("ref('orders_mart')"), manifest(node("orders_mart", package="pkg_b"),
                                                              node("orders_mart", package="pkg_a"))),
          "kpis/dbt.yml", 6, "'orders_mart' is in several packages (pkg_a, pkg_b): write ref('package', 'orders_mart')"),
    Fault("KPI032", _dbt(_kpi("source('raw', 'ordrs')"), manifest(source("raw", "orders"))), "kpis/dbt.yml", 6,
          "source 'raw' has no table 'ordrs'; did you mean 'orders'?"),
    # with catalog.json, whose columns are all of the relation's, a column missing is an error
    Fault("KPI033", _dbt(_kpi("ref('orders_mart')", "sum(amont)"), manifest(ORDERS_MART), **CATALOG), "kpis/dbt.yml", 8,
          "column 'amont' in `measure` is not a column of model 'orders_mart'; did you mean 'amount'?"),
    Fault("KPI033", _dbt(_kpi("source('raw', 'orders')", "sum(amont)"), manifest(source("raw", "orders")), **CATALOG),
          "kpis/dbt.yml", 8, "column 'amont' in `measure` is not a column of source('raw', 'orders'); did you mean "
                             "'amount'?"),
    # documented columns alone are often a few of them: a warning
    Fault("KPI146", _dbt(_kpi("ref('orders_mart')", "sum(amont)"), manifest(ORDERS_MART)), "kpis/dbt.yml", 8,
          "column 'amont' in `measure` is not among the documented columns of model 'orders_mart'; did you mean "
          "'amount'?"),
    Fault("KPI084", {"kpimetrics.yml": CONFIG + "    paths: {target: ../elsewhere}\n"}, "kpimetrics.yml", 9,
          "paths.target: '../elsewhere' is not a folder inside the project"),
    Fault("KPI084", _dbt(_kpi("ref('orders_mart')"), manifest(ORDERS_MART),
                         **{"kpimetrics.yml": CONFIG + "    paths: {models: dbt/models}\n"}), "kpimetrics.yml", 9,
          "paths.models: 'dbt/models' is a folder of the dbt project"),
    Fault("KPI140", {"kpimetrics.yml": CONFIG.replace("project_dir: dbt", "project_dir: transform")},
          "kpimetrics.yml", 8, "dbt.project_dir 'transform': no dbt_project.yml in"),
    Fault("KPI140", {"kpimetrics.yml": CONFIG, "dbt/dbt_project.yml": DBT_PROJECT_YML + "target-path: 7\n"},
          "dbt/dbt_project.yml", 4, "dbt_project.yml: target-path must be a folder name or a list of them"),
    Fault("KPI141", _dbt(_kpi("ref('orders_mart')"), None), "kpis/dbt.yml", 6,
          "ref('orders_mart') is not the project's own, and dbt's manifest dbt/target/manifest.json is missing"),
    Fault("KPI141", _dbt(_kpi("source('raw', 'orders')"), None), "kpis/dbt.yml", 6,
          "source('raw', 'orders') is not the project's own, and dbt's manifest dbt/target/manifest.json is missing"),
    Fault("KPI142", _dbt(_kpi("ref('orders_mart')"), manifest(
        ORDERS_MART, schema_version="https://schemas.getdbt.com/dbt/manifest/v9.json", dbt_version="1.4.0")),
        MANIFEST, 1, "dbt's manifest is schema 'https://schemas.getdbt.com/dbt/manifest/v9.json' (dbt '1.4.0'); "
                     "kpimetrics reads https://schemas.getdbt.com/dbt/manifest/v12.json (dbt 1.8-1.11)"),
    Fault("KPI142", _dbt(_kpi("ref('orders_mart')"), _broken_json()), MANIFEST, ANY_LINE, "dbt's manifest.json is not JSON"),
    Fault("KPI142", _dbt(_kpi("ref('orders_mart')"), manifest(node("orders_mart", alias="orders\x00; drop"))),
          MANIFEST, 1, "not a dbt manifest: nodes.model.shop.orders_mart.alias is not a name"),
    Fault("KPI142", _dbt(_kpi("ref('orders_mart')"), json.dumps({"metadata": {}, "nodes": []})), MANIFEST, 1,
          "dbt's manifest is schema None"),
    Fault("KPI144", _dbt(_kpi("ref('recent')"), manifest(node("recent", materialized="ephemeral"))), "kpis/dbt.yml", 6,
          "ref('recent') is an ephemeral dbt model (dbt/models/recent.sql) and dbt/target/manifest.json has no "
          "compiled SQL for it"),
    # an artifact's compiled SQL is checked like a project model's: one read-only SELECT that reads nothing of the machine
    Fault("KPI113", _dbt(_kpi("ref('recent')"), manifest(node("recent", materialized="ephemeral",
                                                              compiled_code="delete from main.orders returning *"))),
          "dbt/models/recent.sql", 1, "model 'recent'"),
    Fault("KPI120", _dbt(_kpi("ref('recent')"), manifest(node(
        "recent", materialized="ephemeral", compiled_code="select * from read_csv('/etc/passwd')"))),
        "dbt/models/recent.sql", 1, "model 'recent'"),
    Fault("KPI121", _dbt(_kpi("ref('orders_mart')"), manifest(node("orders_mart", alias="/etc/passwd", schema=""))),
          MANIFEST, 1, "dbt's ref('orders_mart') is named like a file ('/etc/passwd')"),
    # `seed` replaces the table of a seed's name: not one dbt built (orders_mart's alias is orders)
    Fault("KPI189", _dbt(_kpi("ref('orders_mart')"), manifest(ORDERS_MART), **{"seeds/orders.csv": "order_id\n1\n"}),
          "seeds/orders.csv", 1, "seed 'orders' would replace main.orders, the dbt model ref('orders_mart') "
                                 "(dbt/models/orders_mart.sql)", command="seed"),
]

ELSEWHERE: dict[str, str] = {
    "KPI143": "a warning on run and debug (the manifest's adapter is not the profile's type); tested in test_dbt_manifest",
    "KPI145": "a run-time failure of the KPIs that read a relation dbt has not built; tested in test_dbt_manifest",
}
