"""Metric KPIs on PostgreSQL equal the same metric KPIs on DuckDB (SPEC §9, issue 20).

The suite's dbt project with a semantic layer (tests/dbt/semantic) is built once by dbt-postgres into a database
of the throwaway server (its seeds' column types spelled as both engines know them; MetricFlow's time spine,
which kpimetrics never reads, left unbuilt). A handful of metric KPIs, one of each metric type (a sum, a count
of distinct values, a percentile, filters through one and two entity joins, a ratio, a derived metric with an
offset_window, two with an offset_to_grain (month; week), a cumulative grain_to_date, a ratio over two semantic
models) sliced by a dimension of their own model and one through a join, run there and on DuckDB over the
session's build (semantic_env.semantic_shop, which test_semantic.py checks against MetricFlow): every row of
kpi_values equal, values within 1e-9.
"""
from __future__ import annotations

import math
import os
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from dbt_env import PG_PASSWORD_ENV, run_dbt
from helpers_run import kpi, kpis_yml, strategy_yml
from semantic_env import SEMANTIC_DIR, SemanticShop, semantic_shop  # noqa: F401  (the session's build)
from test_semantic import AS_OF, cli, fetch

pytestmark = pytest.mark.dbt

KPIS = [
    ("revenue", "[week, month]", "[order__channel, customer__region]"),
    ("buyers", "[month]", "[order__channel]"),
    ("p90_order", "[month]", "[customer__area__country]"),
    ("spanish_orders", "[week]", "[]"),
    ("return_rate", "[week, month]", "[customer__region]"),
    ("revenue_growth", "[month]", "[order__channel]"),
    ("revenue_month_to_date", "[day, month]", "[]"),
    ("items_per_order", "[week, month]", "[order__channel, customer__region]"),
    ("revenue_at_month_start", "[day, week, month, quarter]", "[order__channel]"),  # offset_to_grain
    ("revenue_at_week_start", "[day, week, month]", "[order__channel]"),  # offset_to_grain: week (DATE_TRUNC's)
]


def kpimetrics_files(root: Path, dialect: str, schema: str) -> None:
    (root / "kpimetrics.yml").write_text(f"name: semantic_kpis\ndialect: {dialect}\noutput_schema: {schema}\n"
                                         "defaults: {grain: month, lookback: 1}\n", encoding="utf-8")
    (root / "strategy.yml").write_text(strategy_yml(["grow_sales"]), encoding="utf-8")
    (root / "kpis").mkdir(exist_ok=True)
    (root / "kpis" / "kpis.yml").write_text(kpis_yml(*[
        kpi(name, f"metric: {name}\ngrain: {grains}\ndimensions: {dims}\ntarget: 1") for name, grains, dims in KPIS]),
        encoding="utf-8")


QUERY = ("select name, grain, period_start, dimension, dimension_value, value from {}.kpi_values "
         "order by 1, 2, 3, 4, 5")


@pytest.fixture(scope="module")
def pg_semantic(pg_server, tmp_path_factory) -> tuple[Path, str]:
    """The semantic dbt project built by dbt-postgres: its folder and database."""
    os.environ[PG_PASSWORD_ENV] = pg_server.password
    dbname = pg_server.create_database(f"dbt_semantic_{uuid.uuid4().hex[:10]}")
    project = tmp_path_factory.mktemp("pg_semantic") / "semantic"
    shutil.copytree(SEMANTIC_DIR, project)
    config = project / "dbt_project.yml"
    config.write_text(config.read_text(encoding="utf-8").replace("double", "float8"), encoding="utf-8")
    (project / "profiles.yml").write_text(yaml.safe_dump({"semantic_shop": {"target": "pg", "outputs": {"pg": {
        "type": "postgres", "host": pg_server.host, "port": pg_server.port, "user": pg_server.user,
        "password": f"{{{{ env_var('{PG_PASSWORD_ENV}') }}}}", "dbname": dbname, "schema": "main",
        "threads": 1}}}}, sort_keys=False), encoding="utf-8")
    run_dbt(project, "build", "--exclude", "metricflow_time_spine")
    return project, dbname


def close(a, b) -> bool:
    return a == b or (a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9))


def test_metric_kpis_on_postgres_equal_duckdb(pg_semantic, pg_server, semantic_shop: SemanticShop, tmp_path):
    project, dbname = pg_semantic
    kpimetrics_files(project, "postgres", "kpi_semantic")
    out = cli(project, "run", "--as-of", AS_OF)
    assert out.exit_code == 0, out.output
    with pg_server.connect(dbname) as con:
        theirs = con.execute(QUERY.format("kpi_semantic")).fetchall()

    duck = semantic_shop.copy(tmp_path)
    kpimetrics_files(duck, "duckdb", "kpi")
    out = cli(duck, "run", "--as-of", AS_OF)
    assert out.exit_code == 0, out.output
    ours = fetch(duck, QUERY.format("kpi"))

    assert {r[0] for r in ours} == {name for name, _, _ in KPIS}
    assert len(ours) == len(theirs) > 300
    for a, b in zip(ours, theirs):
        assert tuple(a[:5]) == tuple(b[:5]) and close(a[5], b[5]), (a, b)
    assert sum(1 for r in ours if r[0] == "items_per_order" and r[5] is not None and r[3]) > 50
