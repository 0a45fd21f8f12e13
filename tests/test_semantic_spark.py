"""Metric KPIs on Spark equal the same metric KPIs on DuckDB (SPEC §9, issue 20).

Spark has no dbt here: the tables dbt-duckdb built for the suite's semantic project (semantic_env.semantic_shop)
are copied into a schema of a local Spark warehouse (engines.copy_sources, typed as they are), and the semantic
manifest's relations are pointed at that schema, as `dbt parse` against a Spark profile would write them.
test_semantic_postgres.py's metric KPIs (one of each metric type, one over two semantic models) run there and
on DuckDB: every row of kpi_values equal, values within 1e-9.
"""
from __future__ import annotations

import json
import uuid

import pytest

from engines import copy_sources, engine_unavailable, spark_missing
from kpimetrics import Project
from semantic_env import SemanticShop, semantic_shop  # noqa: F401  (the session's build)
from test_semantic import AS_OF, cli, fetch
from test_semantic_postgres import KPIS, QUERY, close, kpimetrics_files

pytestmark = [pytest.mark.dbt, pytest.mark.spark]
TABLES = ("orders", "customers", "areas", "shipments")


def test_metric_kpis_on_spark_equal_duckdb(semantic_shop: SemanticShop, tmp_path):
    missing = spark_missing()
    if missing:
        engine_unavailable(missing)
    duck = semantic_shop.copy(tmp_path / "duckdb")
    kpimetrics_files(duck, "duckdb", "kpi")
    out = cli(duck, "run", "--as-of", AS_OF)
    assert out.exit_code == 0, out.output
    ours = fetch(duck, QUERY.format("kpi"))

    spark = semantic_shop.copy(tmp_path / "spark")
    tag = uuid.uuid4().hex[:8]
    source, output = f"src_{tag}", f"kpi_{tag}"
    (spark / "profiles.yml").write_text(
        f"semantic_shop:\n  target: spark\n  outputs:\n    spark: {{type: spark, master: 'local[2]', "
        f"warehouse_dir: '{tmp_path / 'warehouse'}'}}\n", encoding="utf-8")
    kpimetrics_files(spark, "spark", output)
    manifest = spark / "target" / "semantic_manifest.json"
    doc = json.loads(manifest.read_text(encoding="utf-8"))
    for model in doc["semantic_models"]:
        model["node_relation"].update(database=None, schema_name=source, relation_name=None)
    manifest.write_text(json.dumps(doc), encoding="utf-8")
    adapter = Project.load(spark).connect()
    try:
        copy_sources(duck / "shop.duckdb", adapter, source, TABLES)
    finally:
        adapter.close()
    out = cli(spark, "run", "--as-of", AS_OF)
    assert out.exit_code == 0, out.output
    adapter = Project.load(spark).connect()
    try:
        theirs = sorted(adapter.fetchall(QUERY.replace("{}", f"`{output}`")),
                        key=lambda r: tuple((v is None, str(v)) for v in r[:5]))
    finally:
        adapter.close()
    ours = sorted(ours, key=lambda r: tuple((v is None, str(v)) for v in r[:5]))
    assert {r[0] for r in ours} == {name for name, _, _ in KPIS}
    assert len(ours) == len(theirs) > 300
    for a, b in zip(ours, theirs):
        assert tuple(a[:5]) == tuple(b[:5]) and close(a[5], b[5]), (a, b)
