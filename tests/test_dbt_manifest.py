"""Reading dbt's artifacts (SPEC §8), fast: manifests written by the test over tables of its DuckDB warehouse.

The end-to-end tests with real dbt are in test_dbt_project.py; these pin what kpimetrics does with each kind
of node and with each failure, on data whose expected values hand-written SQL gives.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dbt_manifest import DBT_PROJECT_YML, manifest, node, source
from helpers_run import (AS_OF, execute, insert_orders, kpi, kpi_result, kpis_yml, make_orders, ok, query, run, table,
                         write_run_project)

ORDERS = make_orders(dt.date(2025, 10, 1), dt.date(2026, 1, 15))
# orders_mart is dbt's name for the relation main.orders of the warehouse (alias `orders`)
MART = node("orders_mart", alias="orders", columns=["order_id", "ordered_at", "amount", "status"])


def monthly(root: Path, where: str = "TRUE", relation: str = "main.orders") -> list[tuple]:
    """The hand-written monthly sum(amount), as kpi_values holds it for the total."""
    return query(root, f"""
        SELECT CAST(date_trunc('month', ordered_at) AS DATE) AS m, CAST(sum(amount) AS DOUBLE)
        FROM {relation} WHERE {where} GROUP BY 1 ORDER BY 1""")


def values(root: Path, name: str) -> list[tuple]:
    return query(root, f"SELECT period_start, value FROM kpi.kpi_values WHERE name = '{name}' AND grain = 'month' "
                       "AND dimension = '' ORDER BY 1")


def dbt_project(root: Path, manifest_text: str | None, *, beside: bool = False) -> Path:
    """A dbt project beside kpimetrics.yml (beside=True) or in the folder dbt/ named by `dbt.project_dir`."""
    folder = root if beside else root / "dbt"
    (folder / "target").mkdir(parents=True, exist_ok=True)
    (folder / "dbt_project.yml").write_text(DBT_PROJECT_YML)
    if manifest_text is not None:
        (folder / "target" / "manifest.json").write_text(manifest_text)
    if not beside:
        config = root / "kpimetrics.yml"
        config.write_text(config.read_text() + "\ndbt: {project_dir: dbt}\n")
    return folder


def project(tmp_path: Path, *entries: str, files: dict[str, str] | None = None) -> Path:
    root = write_run_project(tmp_path, kpis_yml(*entries), files=files)
    insert_orders(root, ORDERS)
    return root


def revenue(name: str, model: str, extra: str = "") -> str:
    return kpi(name, f"model: {model}\ntime: ordered_at\nmeasure: sum(amount)\ntarget: 1000\n{extra}")


def test_ref_to_a_dbt_model_reads_the_relation_the_manifest_records(tmp_path):
    root = project(tmp_path, revenue("mart_revenue", "ref('orders_mart')"),
                   revenue("source_revenue", "source('raw', 'orders')"),
                   revenue("completed_revenue", "ref('orders_mart')", "filter: status = 'completed'\n"))
    dbt_project(root, manifest(MART, source("raw", "orders", identifier="orders")))
    ok(run(root))
    assert values(root, "mart_revenue") == monthly(root)
    assert values(root, "source_revenue") == monthly(root)
    assert values(root, "completed_revenue") == monthly(root, "status = 'completed'")


def test_versioned_and_package_qualified_refs(tmp_path):
    root = project(tmp_path, revenue("latest", "ref('orders_mart')"), revenue("first", "ref('orders_mart', v=1)"),
                   revenue("from_package", "ref('shop_pkg', 'pkg_orders')"))
    execute(root, "CREATE TABLE main.orders_v1 AS SELECT * FROM main.orders WHERE amount < 200",
            "CREATE TABLE main.pkg_orders AS SELECT * FROM main.orders WHERE channel = 'web'")
    dbt_project(root, manifest(
        node("orders_mart", version=1, latest_version=2, alias="orders_v1"),
        node("orders_mart", version=2, latest_version=2, alias="orders"),
        node("pkg_orders", package="shop_pkg")))
    ok(run(root))
    assert values(root, "latest") == monthly(root)
    assert values(root, "first") == monthly(root, "amount < 200")
    assert values(root, "from_package") == monthly(root, "channel = 'web'")


def test_ephemeral_model_is_inlined_from_its_compiled_sql_and_models_ref_dbt(tmp_path):
    ephemeral = node("big_orders", materialized="ephemeral",
                     compiled_code='select * from "wh"."main"."orders" where amount >= 250')
    root = project(tmp_path, revenue("big", "ref('big_orders')"), revenue("web", "ref('web_orders')"),
                   files={"models/web_orders.sql": "select ordered_at, amount from {{ ref('orders_mart') }} "
                                                   "where channel = 'web'"})
    dbt_project(root, manifest(ephemeral, node("orders_mart", alias="orders")))
    ok(run(root))
    assert values(root, "big") == monthly(root, "amount >= 250")
    assert values(root, "web") == monthly(root, "channel = 'web'")


def test_a_relation_dbt_has_not_built_fails_its_kpis_and_keeps_their_rows(tmp_path):
    root = project(tmp_path, revenue("mart_revenue", "ref('orders_mart')"), revenue("gone_revenue", "ref('gone')"))
    execute(root, "CREATE TABLE main.gone AS SELECT * FROM main.orders")
    dbt_project(root, manifest(MART, node("gone")))
    ok(run(root))
    before = [r for r in table(root, "kpi_values") if r[0] == "gone_revenue"]
    assert before
    execute(root, "DROP TABLE main.gone")
    result = run(root, full_refresh=True)
    assert result.status == "partial"
    failed = kpi_result(result, "gone_revenue")
    assert failed.status == "error" and failed.error.startswith("KPI145:")
    assert "ref('gone')" in failed.error and '"wh"."main"."gone"' in failed.error  # the node, its relation
    assert kpi_result(result, "mart_revenue").status == "success"
    assert [r for r in table(root, "kpi_values") if r[0] == "gone_revenue"] == before
    assert values(root, "mart_revenue") == monthly(root)


def test_manifest_of_another_adapter_is_a_warning_on_run(tmp_path):
    root = project(tmp_path, revenue("mart_revenue", "ref('orders_mart')"))
    dbt_project(root, manifest(MART, adapter="postgres"))
    result = run(root)
    ok(result)
    found = [w for w in result.warnings if w.code == "KPI143"]
    assert len(found) == 1 and found[0].location.path == "dbt/target/manifest.json"


def test_beside_dbt_project_kpimetrics_keeps_to_its_own_folders(tmp_path):
    """kpimetrics.yml beside dbt_project.yml: dbt's models, seeds, macros, schema files and target are never
    read or written; kpimetrics' own are kpi_models/, kpi_seeds/ and kpi_target/."""
    root = project(tmp_path, revenue("mart_revenue", "ref('orders_mart')"), revenue("kpi_model", "ref('web_orders')"))
    folder = dbt_project(root, manifest(MART), beside=True)
    dbt_files = {
        "models/orders_mart.sql": "select * from {{ source('raw', 'orders') }}",  # dbt's Jinja, not kpimetrics'
        "models/schema.yml": "version: 2\nmodels:\n  - name: orders_mart\n    columns:\n      - name: order_id\n",
        "macros/cents.sql": "{% macro cents(x) %}{{ x }} * 100{% endmacro %}",
        "snapshots/snap.sql": "{% snapshot snap %}select 1{% endsnapshot %}",
        "seeds/regions.csv": "region\nnorth\n",
        "packages.yml": "packages:\n  - local: ../elsewhere\n",
    }
    for rel, text in dbt_files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    (root / "kpi_models").mkdir()
    (root / "kpi_models" / "web_orders.sql").write_text(
        "select ordered_at, amount from {{ ref('orders_mart') }} where channel = 'web'")
    dbt_target = sorted(p.name for p in (folder / "target").iterdir())
    ok(run(root))
    assert values(root, "mart_revenue") == monthly(root)
    assert values(root, "kpi_model") == monthly(root, "channel = 'web'")
    assert (root / "kpi_target" / "manifest.json").is_file() and (root / "kpi_target" / "run_results.json").is_file()
    assert sorted(p.name for p in (folder / "target").iterdir()) == dbt_target


@pytest.mark.parametrize("setting, expected", [
    ("", ("models", "seeds", "target")),
    ("paths: {models: kpi/sql, seeds: kpi/data, target: build/kpi}", ("kpi/sql", "kpi/data", "build/kpi")),
])
def test_paths_are_configurable(tmp_path, setting, expected):
    from kpimetrics import Project

    root = project(tmp_path, revenue("rev", "source('shop', 'orders')"))
    (root / "kpimetrics.yml").write_text((root / "kpimetrics.yml").read_text() + "\n" + setting + "\n")
    d = Project.load(root).definition
    assert (d.paths.models, d.paths.seeds, d.paths.target) == tuple(root / p for p in expected)
    ok(run(root))
    assert (root / expected[2] / "run_results.json").is_file()
    assert values(root, "rev") == monthly(root)


def test_a_change_upstream_in_dbt_recomputes_the_kpi_in_full(tmp_path):
    """dbt's checksums of the mart and of what it reads enter the definition hash, as a kpimetrics model's SQL
    does: a changed staging model changes the mart's history, which an incremental run would not re-read."""
    from kpimetrics import Project

    def hashes(mart_sum: str, staging_sum: str, seed_sum: str) -> dict[str, str]:
        mart = node("orders_mart", alias="orders", columns=["ordered_at", "amount"])
        mart[1]["checksum"] = {"name": "sha256", "checksum": mart_sum}
        mart[1]["depends_on"] = {"nodes": ["model.shop.stg_orders"], "macros": []}
        staging = node("stg_orders", materialized="view")
        staging[1]["checksum"] = {"name": "sha256", "checksum": staging_sum}
        staging[1]["depends_on"] = {"nodes": ["seed.shop.raw"], "macros": []}
        seed = node("raw", kind="seed")
        seed[1]["checksum"] = {"name": "sha256", "checksum": seed_sum}
        (folder / "target" / "manifest.json").write_text(manifest(mart, staging, seed))
        plan = Project.load(root).plan()
        return {n: p.definition_hash for n, p in plan.kpis.items()}

    root = project(tmp_path, revenue("mart_revenue", "ref('orders_mart')"), revenue("web", "ref('web_orders')"),
                   revenue("plain", "source('shop', 'orders')"),
                   files={"models/web_orders.sql": "select ordered_at, amount from {{ ref('orders_mart') }}"})
    folder = dbt_project(root, None)
    first = hashes("a", "b", "c")
    for changed in (hashes("a2", "b", "c"), hashes("a", "b2", "c"), hashes("a", "b", "c2")):
        assert changed["mart_revenue"] != first["mart_revenue"] and changed["web"] != first["web"]
        assert changed["plain"] == first["plain"]
    assert hashes("a", "b", "c") == first


@pytest.mark.parametrize("relation_name, expected", [
    ('"wh"."raw".Customer_Accounts', '"wh"."raw".Customer_Accounts'),  # quoting: {identifier: false}, as dbt wrote it
    ('"wh"."raw"."Customer_Accounts"', '"wh"."raw"."Customer_Accounts"'),
    # a name dbt would never leave unquoted, or a relation_name that is not one: every part quoted
    ('"wh"."raw".Customer_Accounts; select 1', '"wh"."raw"."Customer_Accounts"'),
    (None, '"wh"."raw"."Customer_Accounts"'),
])
def test_relations_are_quoted_as_dbt_quotes_them_and_never_read_as_sql(tmp_path, relation_name, expected):
    from kpimetrics.dbt.manifest import load_manifest
    from kpimetrics.dbt.project import find_dbt_project

    uid, entry = source("raw", "accounts", schema="raw", identifier="Customer_Accounts")
    entry["relation_name"] = relation_name
    folder = dbt_project(tmp_path, manifest((uid, entry)), beside=True)
    found, _ = find_dbt_project(folder, None, None)
    loaded, problem = load_manifest(found, folder)
    assert problem is None
    assert loaded.sources[("raw", "accounts")].table().sql(dialect="postgres") == expected


def test_a_dbt_source_that_is_not_there_says_to_load_it_not_to_build_it(tmp_path):
    root = project(tmp_path, revenue("raw_revenue", "source('raw', 'gone')"), revenue("mart_revenue", "ref('orders_mart')"))
    dbt_project(root, manifest(MART, source("raw", "gone", columns=["ordered_at", "amount"])))
    result = run(root)
    assert result.status == "partial"
    failed = kpi_result(result, "raw_revenue")
    assert failed.error.startswith("KPI145:") and "dbt does not build sources" in failed.error
    assert "dbt build" not in failed.error
    assert values(root, "mart_revenue") == monthly(root)


def test_a_seed_named_like_a_dbt_relation_is_refused_before_any_seed_loads(tmp_path):
    """`kpimetrics seed` replaces the table of each seed's name: in the schema where dbt built orders_mart (alias
    orders) and reads the source raw.customers, seeds orders.csv and CUSTOMERS.csv would replace dbt's tables.
    KPI189 at each seed file, nothing loaded (not even the harmless seed), dbt's tables as they were; with
    `seed_schema` of kpimetrics' own, the same seeds load there. (Before: dbt's orders table was replaced.)"""
    from kpimetrics import Project
    from kpimetrics.errors import ValidationFailed

    root = project(tmp_path, revenue("mart_revenue", "ref('orders_mart')"))
    execute(root, "CREATE TABLE main.customers AS SELECT 1 AS customer_id")
    dbt_project(root, manifest(MART, source("raw", "customers", schema="main")))
    (root / "seeds").mkdir()
    (root / "seeds" / "orders.csv").write_text("order_id,amount\n1,10\n", encoding="utf-8")
    (root / "seeds" / "CUSTOMERS.csv").write_text("customer_id\n7\n", encoding="utf-8")
    (root / "seeds" / "channel_goals.csv").write_text("channel,goal\nweb,1000\n", encoding="utf-8")
    orders = query(root, "SELECT * FROM main.orders ORDER BY ALL")
    with pytest.raises(ValidationFailed) as refused:
        Project.load(root).seed()
    found = sorted((i.code, i.location.path, i.location.line) for i in refused.value.issues)
    assert found == [("KPI189", "seeds/CUSTOMERS.csv", 1), ("KPI189", "seeds/orders.csv", 1)]
    assert query(root, "SELECT * FROM main.orders ORDER BY ALL") == orders
    assert query(root, "SELECT * FROM main.customers") == [(1,)]
    assert query(root, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'channel_goals'") == [(0,)]

    config = root / "kpimetrics.yml"
    config.write_text(config.read_text() + "seed_schema: kpi_seeds\n")
    loaded = Project.load(root).seed()
    assert sorted(loaded) == [("kpi_seeds.CUSTOMERS", 1), ("kpi_seeds.channel_goals", 1), ("kpi_seeds.orders", 1)]
    assert query(root, "SELECT * FROM main.orders ORDER BY ALL") == orders
