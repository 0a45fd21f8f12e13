"""Fused scans: every KPI over one model and time column, at every grain, is computed from ONE
read of the model, and gives the same values as the KPI computed alone.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
from pathlib import Path

import duckdb
import pytest

from helpers_run import (
    ORDER_COLUMNS, comparable, execute, insert_orders, kpi, kpis_yml, make_orders, ok, query, read, run, table,
    write_run_project,
)

SOURCES = f"""
    sources:
      - name: shop
        schema: main
        tables:
          - name: orders
            columns: [{", ".join(ORDER_COLUMNS)}]
          - name: visits
            columns: [visit_id, visited_at]
"""


def six_kpis(grain: str) -> str:
    """Six KPIs over shop.orders (plain, filtered, ratio, window, distinct with slices, median), a derived one, one over visits."""
    over_orders = f"model: source('shop', 'orders')\ntime: ordered_at\ngrain: {grain}\n"
    return kpis_yml(
        kpi("revenue", over_orders + "measure: sum(amount)\ntarget: 20000\n"),
        kpi("completed_revenue", over_orders + "measure: sum(amount - discount)\nfilter: status = 'completed'\n"
                                               "dimensions: [region]\ntarget: 15000\n"),
        kpi("completion_rate", over_orders + "ratio:\n  numerator: count(*) filter (where status = 'completed')\n"
                                             "  denominator: count(*)\ndimensions: [channel]\ntarget: 0.6\n"),
        kpi("revenue_trailing", over_orders + "measure: sum(amount)\nwindow: {periods: 3}\ntarget: 60000\n"),
        kpi("buyers", over_orders + "measure: count(distinct customer_id)\ndimensions: [channel, region]\ntarget: 50\n"),
        kpi("median_kept_order", over_orders + "measure: median(amount)\nfilter: status <> 'cancelled'\ntarget: 250\n"),
        kpi("revenue_per_buyer", f"derived: revenue / buyers\ngrain: {grain}\ntarget: 400\n"),
        kpi("visits", f"model: source('shop', 'visits')\ntime: visited_at\ngrain: {grain}\nmeasure: count(*)\ntarget: 100\n",
            strategy="keep_customers"),
    )


def reads_of(statements: list[str], table: str) -> list[str]:
    """The statements that name main.<table> (quoted or not), the scans' pre-aggregates (pre_aggregates_of) aside."""
    name = re.compile(rf'(\bmain|"main")\.(\b{table}\b|"{table}")')
    return [s for s in statements if name.search(s) and not s.startswith('CREATE TABLE "kpi"."kpi_stage_pp_')]


def pre_aggregates_of(statements: list[str], table: str) -> list[str]:
    """The statements that compute a scan's shared pre-aggregate of main.<table> into a staging table, to be kept."""
    name = re.compile(rf'(\bmain|"main")\.(\b{table}\b|"{table}")')
    return [s for s in statements if name.search(s) and s.startswith('CREATE TABLE "kpi"."kpi_stage_pp_')]


def make_project(root: Path, grain: str) -> Path:
    write_run_project(root, six_kpis(grain), sources=SOURCES)
    insert_orders(root, make_orders(dt.date(2025, 6, 1), dt.date(2025, 12, 1)))
    execute(root, "CREATE TABLE main.visits AS SELECT i AS visit_id, TIMESTAMP '2025-06-01' + i * INTERVAL 3 HOUR "
                  "AS visited_at FROM range(1500) AS t(i)")
    return root


@pytest.mark.parametrize("grain, scans", [("month", 1), ("'[month, week]'", 1)])
def test_one_read_of_the_source_for_all_grains(tmp_path, grain, scans):
    root = make_project(tmp_path, grain.strip("'"))
    ok(result := run(root))
    orders = reads_of(result.statements, "orders")
    assert len(orders) == scans
    assert all(s.startswith("INSERT INTO") for s in orders)
    assert len(reads_of(result.statements, "visits")) == scans
    # an incremental run fuses the same way
    ok(result := run(root))
    assert len(reads_of(result.statements, "orders")) == scans


def test_fused_values_equal_each_kpi_computed_alone(tmp_path):
    root = make_project(tmp_path, "[month, week]")
    ok(run(root))
    values = table(root, "kpi_values", drop=("definition_hash", "run_id", "computed_at"))
    compiled = root / "target" / "compiled" / "duckdb"
    for name in ("revenue", "completed_revenue", "completion_rate", "revenue_trailing", "buyers",
                 "median_kept_order", "revenue_per_buyer"):
        alone = comparable(*read(root, (compiled / f"{name}.sql").read_text()))
        assert alone == [r for r in values if r[0] == name], name
    assert query(root, "SELECT count(DISTINCT name) FROM kpi.kpi_values") == [(8,)]


def test_a_derived_kpis_file_reads_each_model_once_and_returns_its_values(tmp_path):
    """A derived KPI over a derived KPI and over KPIs of two models: its compiled file computes its inputs as
    `run` does (one read per model, then the inner derived KPI), and returns the rows run writes for it."""
    outer = kpi("revenue_per_visit_per_buyer", "derived: revenue_per_buyer / nullif(visits, 0) + 0 * completed_revenue\n"
                                               "grain: [month, week]\ntarget: 1\n")
    write_run_project(tmp_path, six_kpis("[month, week]") + textwrap.indent(outer, "  "), sources=SOURCES)
    insert_orders(tmp_path, make_orders(dt.date(2025, 6, 1), dt.date(2025, 12, 1)))
    execute(tmp_path, "CREATE TABLE main.visits AS SELECT i AS visit_id, TIMESTAMP '2025-06-01' + i * INTERVAL 3 HOUR "
                      "AS visited_at FROM range(1500) AS t(i)")
    ok(run(tmp_path))
    values = table(tmp_path, "kpi_values", drop=("definition_hash", "run_id", "computed_at"))
    sql = (tmp_path / "target" / "compiled" / "duckdb" / "revenue_per_visit_per_buyer.sql").read_text()
    assert len(re.findall(r'"main"\."orders"', sql)) == 1 and len(re.findall(r'"main"\."visits"', sql)) == 1
    mine = [r for r in values if r[0] == "revenue_per_visit_per_buyer"]
    assert len(mine) > 10 and any(r[6] is not None for r in mine)
    assert comparable(*read(tmp_path, sql)) == mine


def test_additive_grains_roll_up_from_one_pre_aggregate(tmp_path):
    """Day, week and month of the additive KPIs (and the trailing window) come from one day-grain
    pre-aggregate of the rows; count distinct and median share their own aggregations of the rows."""
    root = make_project(tmp_path, "[day, week, month]")
    ok(result := run(root))
    [scan] = reads_of(result.statements, "orders")
    [pre] = pre_aggregates_of(result.statements, "orders")  # a statement of its own, kept for incremental runs
    assert scan.count('"__pp" AS (SELECT "__p", "__d0", "__d1", "__q0"') == 1 and 'FROM "kpi"."kpi_stage_pp_' in scan
    # (additive, trailing window) x (day, week, month), the periods' bounds, and the first period buyers' masks count from
    assert scan.count('FROM "__pp"') == 6 + 1 + 1
    assert scan.count('"__bounds" AS (SELECT MIN("__p") AS "lo", MAX("__p") AS "hi" FROM "__pp")') == 1
    # the pre-aggregate groups the rows once by day and every slice, and its GROUPING SETS group those groups
    assert pre.count('FROM "__rows" GROUP BY "__p", "__d0", "__d1"') == 1
    assert pre.count('AS "__fine" GROUP BY GROUPING SETS') == 1
    # buyers' count(DISTINCT) (no window) is counted from bit masks of each customer's periods: per grain, the rows
    # grouped by customer, word and each slice (the totals OR the first slice's groups); no COUNT(DISTINCT) is left
    assert "COUNT(DISTINCT" not in scan and scan.count('_bits" AS (') == 3
    assert scan.count('GROUP BY customer_id, "__w", "__d0"') == 3 and scan.count('GROUP BY customer_id, "__w", "__d1"') == 3
    assert scan.count("GROUPING SETS") == 0 and pre.count("GROUPING SETS") == 1
    # the median (no slices) has one GROUP BY of the rows per grain, of its own
    assert re.findall(r"COUNT\(\*\) FILTER\(WHERE status <> 'cancelled'\) AS \"__n\d+\", MEDIAN\(amount\) FILTER", scan)
    assert scan.count("MEDIAN(") == 3 and scan.count('FROM "__rows" GROUP BY') == 3
    # and the rolled-up values are those of the rows, by hand: per period, and over the trailing 3 periods
    by_hand = query(root, """
        WITH p AS (
          SELECT g AS grain, CAST(date_trunc(g, ordered_at) AS DATE) AS period_start, sum(amount) AS revenue
          FROM main.orders, (VALUES ('day'), ('week'), ('month')) AS t(g) GROUP BY ALL)
        SELECT * FROM (
          SELECT 'revenue', grain, period_start, revenue FROM p
          UNION ALL
          SELECT 'revenue_trailing', p.grain, p.period_start, sum(q.revenue) FROM p JOIN p AS q ON q.grain = p.grain
            AND q.period_start BETWEEN p.period_start - CASE p.grain WHEN 'day' THEN INTERVAL 2 DAY
                                                                     WHEN 'week' THEN INTERVAL 14 DAY
                                                                     ELSE INTERVAL 2 MONTH END
                                   AND p.period_start
          GROUP BY ALL) ORDER BY ALL""")
    assert len(by_hand) == 2 * (183 + 27 + 6)  # days, Monday weeks from 2025-05-26, months of 2025-06 .. 2025-11
    assert query(root, "SELECT name, grain, period_start, value FROM kpi.kpi_values "
                       "WHERE name IN ('revenue', 'revenue_trailing') AND dimension = '' ORDER BY ALL") == by_hand


def test_a_source_scan_lets_duckdb_read_the_table_per_aggregation(tmp_path):
    """Over a source table, the rows CTE is NOT MATERIALIZED on DuckDB (measured faster there); the hint is
    DuckDB's alone, so the script compiled for other engines has none."""
    from kpimetrics import Project

    root = make_project(tmp_path, "[day, month]")
    ok(result := run(root))
    [scan] = reads_of(result.statements, "orders")
    assert scan.count('"__rows" AS NOT MATERIALIZED (') == 1 and scan.count("MATERIALIZED") == 1
    for dialect in ("postgres", "spark", "snowflake"):
        Project.load(root).compile(dialect=dialect)
        assert "MATERIALIZED" not in (root / "target" / "run.sql").read_text().upper(), dialect


def test_only_our_duckdb_hint_is_left_out_elsewhere():
    """The hint sqlgen sets for DuckDB is left out in other dialects; a MATERIALIZED the user wrote in a model is kept."""
    import sqlglot
    from sqlglot import exp

    from kpimetrics.dialects import duckdb_inlined, generate
    from kpimetrics.sqlgen import cte_query, split_ctes

    model = sqlglot.parse_one("WITH t AS MATERIALIZED (SELECT 1 AS x) SELECT x FROM t", read="duckdb")
    ours = duckdb_inlined(exp.select("x").from_("theirs"))
    query = cte_query([("theirs", model), ("ours", ours)], exp.select("*").from_("ours"))
    # the hint survives the CTEs being taken apart and put together again (a compiled file's inputs are)
    query = cte_query(*split_ctes(query))
    sql = generate(query, "duckdb", copy=True)
    assert '"ours" AS NOT MATERIALIZED (' in sql and '"theirs" AS (' in sql and "t AS MATERIALIZED (" in sql, sql
    for dialect in ("postgres", "spark", "snowflake"):
        sql = generate(query, dialect, copy=True)
        assert "t AS MATERIALIZED (" in sql and "MATERIALIZED" not in sql.replace("t AS MATERIALIZED (", ""), (dialect, sql)


def test_a_models_join_runs_once_in_its_scan(tmp_path):
    """A scan over a model takes its periods' bounds from its aggregation, not from a second read of the rows:
    DuckDB streams a CTE read twice to both readers (a CTE node in its plan), measured slower than one reader (the
    benchmark's segment scan, 10^7 orders: 0.34 s against 0.28 s). A grain with only a window KPI still takes its
    bounds from the rows; a month without orders is still in the spine."""
    sources = SOURCES.rstrip() + "\n          - name: buyers\n            columns: [customer_id, segment]\n"
    kpis = kpis_yml(
        kpi("segment_revenue", "model: ref('orders_with_segment')\ntime: ordered_at\ngrain: month\nmeasure: sum(amount)\n"
                               "dimensions: [segment]\ntarget: 1000\n"),
        kpi("segment_revenue_3m", "model: ref('orders_with_segment')\ntime: ordered_at\ngrain: quarter\n"
                                  "measure: sum(amount)\nwindow: {periods: 2}\ntarget: 1000\n"),
    )
    model = ("select o.order_id, o.ordered_at, o.amount, b.segment from {{ source('shop', 'orders') }} as o "
             "left join {{ source('shop', 'buyers') }} as b on b.customer_id = o.customer_id\n")
    write_run_project(tmp_path, kpis, sources=sources, files={"models/orders_with_segment.sql": model})
    # orders in June, July and October 2025: August and September have none
    insert_orders(tmp_path, [r for r in make_orders(dt.date(2025, 6, 1), dt.date(2025, 11, 1))
                             if not dt.date(2025, 8, 1) <= r[2].date() < dt.date(2025, 10, 1)])
    execute(tmp_path, "CREATE TABLE main.buyers AS SELECT i AS customer_id, ['a', 'b', NULL][i % 3 + 1] AS segment "
                      "FROM range(1000) AS t(i)")
    ok(run(tmp_path))
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        # each KPI's compiled file scans the model for that KPI alone
        for name, kept in (("segment_revenue", 0), ("segment_revenue_3m", 1)):
            sql = (tmp_path / "target" / "compiled" / "duckdb" / f"{name}.sql").read_text()
            plan = "".join(r[1] for r in con.execute("EXPLAIN " + sql).fetchall())
            assert len(re.findall(r"Table: \w+\.main\.buyers\b", plan)) == 1, plan
            assert plan.count("CTE Name: __model_orders_with_segment") == kept, plan
    finally:
        con.close()
    by_hand = query(tmp_path, """
        WITH m AS (SELECT CAST(d AS DATE) AS p FROM generate_series(DATE '2025-06-01', DATE '2025-10-01', INTERVAL 1 MONTH) AS t(d))
        SELECT m.p, sum(o.amount) FROM m LEFT JOIN main.orders AS o ON date_trunc('month', o.ordered_at) = m.p
        GROUP BY ALL ORDER BY 1""")
    assert [r[0] for r in by_hand] == [dt.date(2025, m, 1) for m in range(6, 11)] and by_hand[2][1] is None
    assert query(tmp_path, "SELECT period_start, value FROM kpi.kpi_values WHERE name = 'segment_revenue' "
                           "AND dimension = '' ORDER BY 1") == [(p, None if v is None else float(v)) for p, v in by_hand]
    by_segment = query(tmp_path, """
        SELECT CAST(date_trunc('month', o.ordered_at) AS DATE), coalesce(b.segment, '(null)'), CAST(sum(o.amount) AS DOUBLE)
        FROM main.orders AS o LEFT JOIN main.buyers AS b USING (customer_id) GROUP BY ALL ORDER BY ALL""")
    assert query(tmp_path, "SELECT period_start, dimension_value, value FROM kpi.kpi_values "
                           "WHERE name = 'segment_revenue' AND dimension = 'segment' ORDER BY ALL") == by_segment



def filters_over(plan: list[dict], table: str, column: str) -> list[str]:
    """The FILTER nodes of a DuckDB JSON plan that test `column` and have a scan of `table` beneath them."""
    def scans(node: dict) -> bool:
        return (node.get("extra_info", {}).get("Table", "").endswith(f".{table}")
                or any(scans(c) for c in node.get("children", [])))

    found: list[str] = []

    def walk(node: dict) -> None:
        expression = str(node.get("extra_info", {}).get("Expression", ""))
        if node.get("name") == "FILTER" and column in expression and scans(node):
            found.append(expression)
        for c in node.get("children", []):
            walk(c)

    for node in plan:
        walk(node)
    return found


def test_a_distinct_count_picks_its_slices_by_set_not_by_nulls(tmp_path):
    """A count(DISTINCT x) with slices is one GROUP BY per set of slices, UNION ALL. Its rows are picked by the
    branch's constant "__set", not by the slice columns' NULLs: DuckDB 2.0 pushed those tests (ORed) through the
    aggregation down to every row of the orders (10^7 orders: 0.12 s), where a test of a constant is decided once
    per branch. It did so in a scan with a shared pre-aggregate beside the distinct count."""
    over_orders = "model: source('shop', 'orders')\ntime: ordered_at\n"
    write_run_project(tmp_path, kpis_yml(
        kpi("buyers", over_orders + "grain: month\nmeasure: count(distinct customer_id)\ndimensions: [region]\n"
                                    "target: 50\n"),
        kpi("order_p90", over_orders + "grain: month\nmeasure: quantile_cont(amount, 0.9)\ntarget: 50\n"),
        kpi("median_discount", over_orders + "grain: month\nmeasure: median(discount)\nfilter: discount > 0\n"
                                             "target: 5\n"),
        kpi("revenue", over_orders + "grain: [day, month]\nmeasure: sum(amount)\ndimensions: [region, channel]\n"
                                     "target: 500\n"),
    ), sources=SOURCES)
    insert_orders(tmp_path, make_orders(dt.date(2025, 6, 1), dt.date(2025, 9, 1)))
    ok(run(tmp_path))
    scan = next(s for s in (tmp_path / "target" / "run.sql").read_text().split(";\n")
                if "INSERT INTO" in s and '"main"."orders"' in s)
    assert '"__set" = 1' in scan
    select = scan[scan.index("\nWITH ") + 1:]  # the query, without INSERT INTO t (columns)
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        plan = json.loads(con.execute("EXPLAIN (FORMAT json) " + select).fetchall()[0][1])
    finally:
        con.close()
    assert filters_over(plan, "orders", "__d0") == []
    by_hand = query(tmp_path, """
        SELECT CAST(date_trunc('month', ordered_at) AS DATE), 'region', coalesce(region, '(null)'),
               CAST(count(DISTINCT customer_id) AS DOUBLE)
        FROM main.orders GROUP BY ALL
        UNION ALL
        SELECT CAST(date_trunc('month', ordered_at) AS DATE), '', NULL, CAST(count(DISTINCT customer_id) AS DOUBLE)
        FROM main.orders GROUP BY ALL
        ORDER BY ALL""")
    assert query(tmp_path, "SELECT period_start, dimension, dimension_value, value FROM kpi.kpi_values "
                           "WHERE name = 'buyers' ORDER BY ALL") == by_hand


def test_targets_of_every_kpi_read_kpi_values_once(tmp_path):
    """kpi_targets' rows for eight KPIs at two grains, targets that are expressions of the period (numbers here):
    one read of kpi_values for all of them (targets.plain_targets_queries), as status reads every KPI at once. Spark
    paid for a read per KPI and grain (8 s of a run at 2x10^5 orders: bench/RESULTS.md). The rows themselves are the
    oracle's (test_values_targets, every target form and engine)."""
    root = make_project(tmp_path, "[month, week]")
    ok(result := run(root))
    inserts = [s for s in result.statements if s.startswith('INSERT INTO "kpi"."kpi_targets"')]
    assert len(inserts) == 1
    assert len(re.findall(r'"kpi"\."kpi_values"', inserts[0])) == 1
    assert {r[0] for r in table(root, "kpi_targets")} == {"revenue", "completed_revenue", "completion_rate",
                                                          "revenue_trailing", "buyers", "median_kept_order",
                                                          "revenue_per_buyer", "visits"}


@pytest.mark.parametrize("grain", ["day", "week", "month", "year"])
def test_distinct_counts_from_bit_masks_hold_for_any_date(tmp_path, grain):
    """DuckDB counts distinct values from bit masks of period numbers (sqlgen._render_masks): the numbers carry an
    offset that keeps them positive, so rows from the year 1 and from 2025 land in their own periods."""
    write_run_project(tmp_path, kpis_yml(kpi("buyers", f"model: source('shop', 'orders')\ntime: ordered_at\ngrain: {grain}\n"
                                                    "measure: count(distinct customer_id)\ntarget: 1\n")), sources=SOURCES)
    orders = [(1, 1, dt.datetime(1, 6, 1, 10), "north", "web", 1.0, 0.0, "completed", "x"),
              (2, 2, dt.datetime(1, 6, 1, 11), "north", "web", 1.0, 0.0, "completed", "x"),
              (3, 2, dt.datetime(2025, 6, 3), "north", "web", 1.0, 0.0, "completed", "x")]
    insert_orders(tmp_path, orders)
    ok(result := run(tmp_path))
    assert any('_bits" AS (' in s for s in reads_of(result.statements, "orders"))
    by_hand = query(tmp_path, f"SELECT CAST(date_trunc('{grain}', ordered_at) AS DATE), CAST(count(DISTINCT customer_id) "
                              "AS DOUBLE) FROM main.orders GROUP BY 1 ORDER BY 1")
    assert query(tmp_path, "SELECT period_start, value FROM kpi.kpi_values WHERE value IS NOT NULL ORDER BY 1") == by_hand
    assert [v for (v,) in query(tmp_path, "SELECT count(*) FROM kpi.kpi_values WHERE value IS NULL")] != [0]
