"""The benchmark's correctness check, in CI: at 10^4 rows, kpimetrics' values equal the
hand-written SQL's, after a full refresh and after an incremental run on one more day.

Only correctness is checked here; timings live in bench/run.py and bench/RESULTS.md.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow  # the benchmark end to end at a small size: left out of make test-fast

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_benchmark_values_equal_the_hand_written_sql(tmp_path):
    """bench/handwritten.sql is the baseline; bench/handwritten_masks.sql counts distinct values from bit masks as
    kpimetrics does on DuckDB, so that the benchmark can time kpimetrics against a script that knows the trick.
    One after the other: both run bench/project, whose target/ is one."""
    for script in ("handwritten.sql", "handwritten_masks.sql"):
        out = subprocess.run([sys.executable, str(BENCH / "run.py"), "--rows", "10000", "--check-only",
                              "--data-dir", str(tmp_path / script), "--handwritten", str(BENCH / script)],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "values equal the hand-written SQL (full refresh)" in out.stdout
        # one day appended before an incremental run of every KPI, one before an incremental run of the additive ones
        assert "incremental, every KPI, one more day 1:" in out.stdout
        assert "incremental, additive, one more day 1:" in out.stdout
        assert "values equal the hand-written SQL (incremental, after 2 appended day(s))" in out.stdout


def test_incremental_runs_over_many_slices_equal_a_full_refresh(tmp_path):
    """bench/publish.py at a small size: incremental runs of KPIs by customer with slice targets keep and write
    kpi_values, kpi_targets and kpi_status rows that equal a full refresh's, every row."""
    out = subprocess.run([sys.executable, str(BENCH / "publish.py"), "--rows", "20000", "--customers", "50",
                          "--rounds", "2", "--check-only", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "kpi_values, kpi_targets and kpi_status equal the incremental runs', every row" in out.stdout


def test_the_comparison_catches_a_wrong_value(tmp_path):
    """The check that guards every reported time fails when one value is off."""
    run = load("run")
    db = tmp_path / "values.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE SCHEMA kpi; CREATE SCHEMA bench")
    row = "SELECT 'k' AS name, 'month' AS grain, DATE '2025-01-01' AS period_start, '' AS dimension, " \
          "NULL::VARCHAR AS dimension_value, {} AS value"
    con.execute(f"CREATE TABLE kpi.kpi_values AS {row.format('1.0::DOUBLE')}")
    con.execute(f"CREATE TABLE bench.hand_values AS {row.format('1.0::DOUBLE')}")
    con.close()
    assert run.compare(db) == []
    con = duckdb.connect(str(db))
    con.execute("UPDATE bench.hand_values SET value = 1.001")
    con.execute(f"INSERT INTO kpi.kpi_values {row.replace('2025-01-01', '2025-02-01').format('2.0::DOUBLE')}")
    con.close()
    assert run.compare(db) == [("k", "month", 2, 0, 1, 1)]


def test_generator_is_deterministic_and_appends_one_day(tmp_path):
    gen = load("generate")
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    for db in (a, b):
        assert gen.main(["--db", str(db), "--orders", "2000"]) == 0
    con = duckdb.connect(str(a))
    con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
    for t in ("orders", "support_tickets", "customers"):
        assert con.execute(f"SELECT count(*) FROM (SELECT * FROM main.{t} EXCEPT ALL SELECT * FROM b.main.{t})").fetchone()[0] == 0
    assert con.execute("SELECT count(*), max(ordered_at)::DATE FROM main.orders").fetchone() == (2000, gen.START.replace(year=2025, month=12, day=30))
    con.close()
    assert gen.main(["--db", str(a), "--append-days", "1"]) == 0
    con = duckdb.connect(str(a), read_only=True)
    day, n = con.execute("SELECT max(ordered_at)::DATE, count(*) FILTER (WHERE ordered_at >= DATE '2025-12-31') FROM main.orders").fetchone()
    con.close()
    assert str(day) == "2025-12-31" and n == round(2000 / 1095)


def test_profile_memory_limit_and_threads_reach_duckdb(tmp_path, monkeypatch):
    """The benchmark bounds DuckDB through the profile: memory_limit and threads are applied to the connection."""
    from kpimetrics import Project

    monkeypatch.setenv("KPIBENCH_DB", str(tmp_path / "wh.duckdb"))
    monkeypatch.setenv("KPIBENCH_MEMORY_LIMIT", "1GB")
    monkeypatch.setenv("KPIBENCH_THREADS", "1")
    adapter = Project.load(BENCH / "project").connect()
    try:
        limit, threads = adapter.fetchall("SELECT current_setting('memory_limit'), current_setting('threads')")[0]
    finally:
        adapter.close()
    assert (limit, threads) == ("953.6 MiB", 1)  # 1 GB as DuckDB reports it


def test_duckdb_draws_no_progress_bar_of_its_own(tmp_path, monkeypatch):
    """DuckDB prints a progress bar to stdout for any statement over two seconds, even into a pipe and under
    `run -q` (it filled the benchmark's logs); the adapter turns it off for its session."""
    from kpimetrics import Project

    monkeypatch.setenv("KPIBENCH_DB", str(tmp_path / "wh.duckdb"))
    adapter = Project.load(BENCH / "project").connect()
    try:
        assert adapter.fetchall("SELECT current_setting('enable_progress_bar')") == [(False,)]
    finally:
        adapter.close()


def test_semantic_benchmark_values_equal_the_hand_written_sql(tmp_path):
    """bench/semantic.py: the benchmark's KPIs as metric KPIs over a semantic layer (a ratio over two semantic
    models, offsets, cumulative windows among them) equal the hand-written SQL, full and incremental."""
    out = subprocess.run([sys.executable, str(BENCH / "semantic.py"), "--rows", "10000", "--check-only",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "values equal the hand-written SQL (full refresh): 18 KPI-grain pairs" in out.stdout
    assert "values equal the hand-written SQL (incremental, after 1 appended day(s)): 18 KPI-grain pairs" in out.stdout
    # the fused scans of the run (issue 20's speed point): every metric KPI over orders that reads no joined
    # dimension in one scan of the bare table, the customers join read only by the KPI sliced by customer__segment
    scans = dict(line.removeprefix("-- scan: ").split(": ", 1) for line in
                 (tmp_path / "semantic_project" / "kpi_target" / "run.sql").read_text().splitlines()
                 if line.startswith("-- scan: "))
    by_relation = {relation.split(" at ")[0]: kpis.split(", ") for relation, kpis in scans.items()}
    assert sorted(by_relation["semantic:main.orders"]) == sorted(
        ["net_revenue", "orders", "active_customers", "avg_order_value", "return_rate", "order_value_p90",
         "median_discount", "revenue_trailing_3m", "customers_ytd"])
    assert by_relation["semantic-joined:orders"] == ["segment_revenue"]
    # revenue_growth (an offset_window) and tickets_per_order (a ratio over tickets and orders) over the values of
    # the net_revenue, tickets and orders KPIs: no shifted copy of the orders, no UNION ALL of two tables
    assert sorted(by_relation) == ["semantic-joined:orders", "semantic:main.orders", "semantic:main.support_tickets"]
    run_sql = (tmp_path / "semantic_project" / "kpi_target" / "run.sql").read_text()
    assert "-- derived: revenue_growth at month" in run_sql and "-- derived: tickets_per_order at month" in run_sql
