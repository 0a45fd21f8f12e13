"""Runs as definitions change (hash, grains, dimensions, removed KPIs, -s), the output
tables' schema version, --as-of and freshness, run_results.json, and secrets in profiles.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from helpers_run import (
    AS_OF, ORDER_COLUMNS, ORDERS_DDL, execute, insert_orders, kpi, kpi_result, kpis_yml, make_orders, ok, query, run, set_kpis,
    write_run_project,
)
from kpimetrics import Project
from kpimetrics import tables
from kpimetrics.cli import main
from kpimetrics.errors import WarehouseError

PER_KPI_TABLES = ("kpi_catalog", "kpi_values", "kpi_status", "kpi_targets", "kpi_check_ins")


def revenue(filter_: str = "status <> 'returned'", grain: str = "[month, week]", dims: str = "[region, channel]") -> str:
    return kpi("revenue", f"""
        model: source('shop', 'orders')
        time: ordered_at
        grain: {grain}
        measure: sum(amount)
        filter: {filter_}
        dimensions: {dims}
        target: 20000
    """, indicator="lagging")


ORDER_COUNT = kpi("order_count", """
    model: source('shop', 'orders')
    time: ordered_at
    grain: [month, week]
    measure: count(*)
    dimensions: [channel]
    target: {month: 100, week: 25}
    drives: [revenue]
    check_ins:
      - {date: 2025-07-01, author: sales@shop.example, note: summer is slow}
""")
REVENUE_GROWTH = kpi("revenue_growth", """
    derived: revenue / lag(revenue) - 1
    target: 0.01
    drives: [revenue]
""")


def hashes(root: Path) -> dict[str, str]:
    return {n: p.definition_hash for n, p in Project.load(root).plan(today=AS_OF).kpis.items()}


def run_ids(root: Path, name: str) -> set[int]:
    return {r[0] for r in query(root, f"SELECT DISTINCT run_id FROM kpi.kpi_values WHERE name = '{name}'")}


@pytest.fixture
def project(tmp_path) -> Path:
    root = write_run_project(tmp_path, kpis_yml(revenue(), ORDER_COUNT, REVENUE_GROWTH))
    insert_orders(root, make_orders(dt.date(2025, 6, 1), dt.date(2025, 12, 1)))
    ok(run(root))
    insert_orders(root, make_orders(dt.date(2025, 12, 1), dt.date(2025, 12, 10), seed=5, first_id=10_000))
    return root


# --- definitions change -------------------------------------------------------------

def test_a_changed_definition_is_recomputed_in_full(project):
    old = hashes(project)
    set_kpis(project, kpis_yml(revenue(filter_="status = 'completed'"), ORDER_COUNT, REVENUE_GROWTH))
    new = hashes(project)
    assert new["revenue"] != old["revenue"] and new["order_count"] == old["order_count"]
    assert new["revenue_growth"] != old["revenue_growth"]  # it derives from revenue

    ok(result := run(project))

    for name in ("revenue", "revenue_growth"):
        r = kpi_result(result, name)
        assert r.mode == "full" and set(r.since.values()) == {None}, name
        assert run_ids(project, name) == {2}, name
        assert query(project, f"SELECT DISTINCT definition_hash FROM kpi.kpi_values WHERE name = '{name}'") == [(new[name],)]
        assert query(project, f"SELECT definition_hash FROM kpi.kpi_catalog WHERE name = '{name}'") == [(new[name],)]
    assert kpi_result(result, "order_count").mode == "incremental"
    assert run_ids(project, "order_count") == {1, 2}
    # the new filter is in the values
    (value,) = query(project, "SELECT value FROM kpi.kpi_values WHERE name = 'revenue' AND grain = 'month' "
                              "AND dimension = '' AND period_start = DATE '2025-07-01'")[0]
    (expected,) = query(project, "SELECT sum(amount) FROM main.orders WHERE status = 'completed' "
                                 "AND ordered_at >= '2025-07-01' AND ordered_at < '2025-08-01'")[0]
    assert value == pytest.approx(expected)


def test_a_removed_grain_or_dimension_loses_its_rows(project):
    set_kpis(project, kpis_yml(revenue(grain="[month]", dims="[region]"), ORDER_COUNT, REVENUE_GROWTH))
    ok(run(project))
    for t in ("kpi_values", "kpi_status", "kpi_targets"):
        grains = query(project, f"SELECT DISTINCT grain FROM kpi.{t} WHERE name = 'revenue'")
        assert grains == [("month",)], t
    for t in ("kpi_values", "kpi_status"):
        dims = query(project, f"SELECT DISTINCT dimension FROM kpi.{t} WHERE name = 'revenue' ORDER BY 1")
        assert dims == [("",), ("region",)], t
    assert query(project, "SELECT grains FROM kpi.kpi_catalog WHERE name = 'revenue'") == [('["month"]',)]


def test_a_removed_kpi_leaves_every_output_table(project):
    for t in PER_KPI_TABLES:
        assert query(project, f"SELECT count(*) FROM kpi.{t} WHERE name = 'order_count'")[0][0] > 0, t
    set_kpis(project, kpis_yml(revenue(), REVENUE_GROWTH))
    ok(run(project))
    for t in PER_KPI_TABLES:
        assert query(project, f"SELECT count(*) FROM kpi.{t} WHERE name = 'order_count'") == [(0,)], t
    assert query(project, "SELECT count(*) FROM kpi.kpi_values WHERE name = 'revenue'")[0][0] > 0


def test_select_touches_only_the_selected_kpi(project):
    before = {t: query(project, f"SELECT * FROM kpi.{t} WHERE name <> 'revenue' ORDER BY ALL") for t in PER_KPI_TABLES}
    ok(result := run(project, select="revenue"))
    assert [k.name for k in result.kpis] == ["revenue"]
    assert run_ids(project, "revenue") == {1, 2}
    for t in PER_KPI_TABLES:
        assert query(project, f"SELECT * FROM kpi.{t} WHERE name <> 'revenue' ORDER BY ALL") == before[t], t
    # a KPI no longer in the project stays until a run of the whole project
    set_kpis(project, kpis_yml(revenue(), REVENUE_GROWTH))
    ok(run(project, select="revenue"))
    assert query(project, "SELECT count(*) FROM kpi.kpi_values WHERE name = 'order_count'")[0][0] > 0
    ok(run(project))
    assert query(project, "SELECT count(*) FROM kpi.kpi_values WHERE name = 'order_count'") == [(0,)]


# --- the output tables' schema version ------------------------------------------------

def test_output_tables_carry_their_schema_version(project):
    # and the project that owns the output schema (SPEC §11)
    assert query(project, "SELECT key, value FROM kpi.kpi_meta ORDER BY key") == [
        ("project", "shop"), ("schema_version", str(tables.SCHEMA_VERSION))]
    present = {r[0] for r in query(project, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'kpi'")}
    # besides the output tables, the pre-aggregates kept for incremental runs (partials.py)
    assert {t for t in present if not t.startswith("kpi_partials_")} == {t.name for t in tables.ALL_TABLES}


@pytest.mark.parametrize("tamper, message", [
    (f"UPDATE kpi.kpi_meta SET value = '{tables.SCHEMA_VERSION + 1}'", "schema version"),  # older ones are migrated (test_migrations.py)
    ("DROP TABLE kpi.kpi_meta", "kpi_meta"),
])
def test_a_newer_schema_version_stops_the_run(project, tamper, message):
    execute(project, tamper)
    before = query(project, "SELECT * FROM kpi.kpi_values ORDER BY ALL")
    with pytest.raises(WarehouseError, match=message):
        run(project)
    out = CliRunner().invoke(main, ["run", "--project-dir", str(project), "--as-of", AS_OF.isoformat()])
    assert out.exit_code == 1
    assert message in out.output and "Traceback" not in out.output
    assert query(project, "SELECT * FROM kpi.kpi_values ORDER BY ALL") == before


# --- --as-of and freshness --------------------------------------------------------------

def test_as_of_decides_which_periods_are_complete(project):
    ok(run(project, as_of=dt.date(2025, 11, 30)))
    complete = "SELECT grain, max(period_start) FROM kpi.kpi_status WHERE name = 'revenue' AND dimension = '' " \
               "AND is_complete GROUP BY grain ORDER BY grain"
    incomplete = "SELECT count(*) FROM kpi.kpi_status WHERE name = 'revenue' AND NOT is_complete"
    assert query(project, complete) == [("month", dt.date(2025, 10, 1)), ("week", dt.date(2025, 11, 17))]
    ok(run(project, as_of=dt.date(2025, 12, 1)))
    assert query(project, complete) == [("month", dt.date(2025, 11, 1)), ("week", dt.date(2025, 11, 24))]
    assert query(project, incomplete)[0][0] > 0
    ok(run(project, as_of=dt.date(2026, 1, 1)))
    assert query(project, incomplete) == [(0,)]


FRESHNESS_SOURCES = f"""
    sources:
      - name: shop
        schema: main
        freshness: {{warn_after: 2 days, error_after: 7 days}}
        tables:
          - name: orders
            columns: [{", ".join(ORDER_COLUMNS)}]
      - name: web
        schema: main
        tables:
          - name: visits
            columns: [visit_id, visited_at]
"""
VISITS = kpi("visits", """
    model: source('web', 'visits')
    time: visited_at
    measure: count(*)
    target: 100
    drives: [revenue]
""")


def test_freshness_warns_then_fails_the_stale_kpis(tmp_path):
    root = write_run_project(tmp_path, kpis_yml(revenue(), REVENUE_GROWTH, VISITS), sources=FRESHNESS_SOURCES)
    insert_orders(root, make_orders(dt.date(2025, 6, 1), dt.date(2025, 12, 1)))  # the newest order is on 2025-11-30
    execute(root, "CREATE TABLE main.visits AS SELECT i AS visit_id, TIMESTAMP '2025-06-01' + i * INTERVAL 3 HOUR "
                  "AS visited_at FROM range(1500) AS t(i)")
    ok(first := run(root, as_of=dt.date(2025, 12, 1)))
    assert first.warnings == []

    result = run(root, as_of=dt.date(2025, 12, 3))  # 3 days after the newest order: a warning
    ok(result)
    (warning,) = result.warnings
    assert warning.code == "KPI090" and "revenue" in warning.message and "warn_after" in warning.message
    out = CliRunner().invoke(main, ["run", "--project-dir", str(root), "--as-of", "2025-12-03"])
    assert out.exit_code == 0 and "warn_after" in out.output

    before = query(root, "SELECT * FROM kpi.kpi_values WHERE name LIKE 'revenue%' ORDER BY ALL")
    result = run(root, as_of=dt.date(2025, 12, 10))  # 10 days: revenue fails, and what derives from it
    assert result.status == "partial"
    stale = kpi_result(result, "revenue")
    assert stale.status == "error" and "error_after" in stale.error
    assert kpi_result(result, "revenue_growth").status == "error"
    assert kpi_result(result, "visits").status == "success"
    assert query(root, "SELECT * FROM kpi.kpi_values WHERE name LIKE 'revenue%' ORDER BY ALL") == before
    assert result.run_id in run_ids(root, "visits")


# --- run_results.json -----------------------------------------------------------------

def test_run_results_json(project):
    execute(project, "UPDATE main.orders SET status = 'returned' WHERE order_id = 10001")
    set_kpis(project, kpis_yml(revenue(), ORDER_COUNT, REVENUE_GROWTH, kpi("broken", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(cast(region as integer))
        target: 1
        drives: [revenue]
    """)))
    result = run(project)
    assert result.status == "partial"
    doc = json.loads((project / "target" / "run_results.json").read_text())
    assert doc["run_id"] == result.run_id == 2 and doc["status"] == "partial"
    assert doc["as_of"] == AS_OF.isoformat()
    by_name = {r["name"]: r for r in doc["results"]}
    assert set(by_name) == {"revenue", "order_count", "revenue_growth", "broken"}
    for name in ("revenue", "order_count", "revenue_growth"):
        r = by_name[name]
        assert r["status"] == "success" and r["error"] is None, name
        assert isinstance(r["seconds"], (int, float)) and r["seconds"] >= 0
        written = query(project, f"SELECT count(*) FROM kpi.kpi_values WHERE name = '{name}' AND run_id = 2")[0][0]
        assert r["rows"] == written > 0, name
        assert r["mode"] == "incremental"
    broken = by_name["broken"]
    assert broken["status"] == "error" and "Could not convert" in broken["error"] and broken["rows"] == 0
    # where the time went: the engine's statements are part of staging and publishing, which are part of the run
    timing = doc["timing"]
    assert set(timing) == {"warehouse", "stage", "publish", "run"}
    assert 0 < timing["warehouse"] <= timing["run"]
    assert 0 < timing["stage"] and 0 < timing["publish"] and timing["stage"] + timing["publish"] <= timing["run"]


# --- secrets ----------------------------------------------------------------------------

def test_a_profile_path_from_env_var(tmp_path, monkeypatch):
    db = tmp_path / "elsewhere" / "secret_wh.duckdb"
    db.parent.mkdir()
    root = write_run_project(tmp_path / "project", kpis_yml(ORDER_COUNT.replace("drives: [revenue]", "")), files={
        "profiles.yml": """
            shop:
              target: dev
              outputs:
                dev: {type: duckdb, path: "{{ env_var('KPI_TEST_DB') }}"}
        """,
    })
    monkeypatch.setenv("KPI_TEST_DB", str(db))
    con = duckdb.connect(str(db))
    con.execute(ORDERS_DDL)
    con.execute("INSERT INTO main.orders (order_id, ordered_at, amount, channel) VALUES "
                "(1, TIMESTAMP '2025-11-02 10:00:00', 5, 'web'), (2, TIMESTAMP '2025-12-02 10:00:00', 7, 'web')")
    con.close()

    ok(run(root))
    assert not (root / "wh.duckdb").exists()
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT period_start, value FROM kpi.kpi_values WHERE dimension = '' AND grain = 'month' "
                       "ORDER BY 1").fetchall()
    con.close()
    assert rows == [(dt.date(2025, 11, 1), 1.0), (dt.date(2025, 12, 1), 1.0)]
    for path in (root / "target").rglob("*"):
        if path.is_file():
            assert str(db) not in path.read_text(), path


def test_a_failing_query_on_duckdb_is_a_warehouse_error_not_a_bug(tmp_path):
    """Like PostgreSQL and Spark, DuckDB's errors reach the user as the warehouse's (exit 1, its message),
    not as an internal error (exit 3) asking for a bug report."""
    from test_run_atomic import REVENUE

    root = write_run_project(tmp_path / "p", kpis_yml(REVENUE))
    insert_orders(root, make_orders(dt.date(2025, 10, 1), dt.date(2025, 12, 31)))
    ok(run(root))
    execute(root, 'ALTER TABLE kpi.kpi_status RENAME COLUMN "status" TO "state"')  # a table someone broke
    with pytest.raises(WarehouseError, match="status"):
        Project.load(root).connect().fetchall('SELECT "status" FROM kpi.kpi_status')
    out = CliRunner().invoke(main, ["status", "--project-dir", str(root)])
    assert out.exit_code == 1, out.output
    assert "internal error" not in out.output and "status" in out.output


def test_a_failing_baseline_check_after_publishing_is_a_warning_not_a_failed_run(project, monkeypatch):
    """The baseline check of relative targets runs after the values are published. When the warehouse fails it
    (a dropped connection, say), the published run stands: status success, the values are there, KPI093 says so."""
    from kpimetrics import runner

    set_kpis(project, kpis_yml(revenue(), ORDER_COUNT, kpi("revenue_relative", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        target:
          baseline: {from: 2025-10-01, to: 2025-10-31}
          change: 10%
          by: 2026-06-30
    """)))

    def fails(self, ok):
        raise WarehouseError("server closed the connection unexpectedly")

    monkeypatch.setattr(runner.Runner, "_baseline_warnings", fails)
    result = run(project)
    assert result.status == "success"
    [w] = [w for w in result.warnings if w.code == "KPI093"]
    assert "server closed the connection unexpectedly" in w.message
    assert query(project, f"SELECT status FROM kpi.kpi_runs WHERE run_id = {result.run_id}") == [("success",)]
    assert query(project, "SELECT count(*) > 0 FROM kpi.kpi_values WHERE name = 'revenue_relative' "
                          f"AND run_id = {result.run_id}") == [(True,)]
