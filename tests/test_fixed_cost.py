"""The fixed cost of a `kpimetrics run` process: what it leaves out, and that what it does instead is the same.

DuckDB's insert_rows writes a chunk of rows per statement instead of one statement per row, and a quiet run
imports neither rich nor the dbt and notify modules a plain project does not use; none of it may change what is
written.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb

from helpers_run import AS_OF, insert_orders, kpi, kpis_yml, make_orders, query, write_run_project
from kpimetrics.adapters import duckdb as duckdb_adapter
from kpimetrics.config import DuckDBOutput

COLUMNS = (("a", "DOUBLE"), ("b", "VARCHAR"), ("c", "DATE"), ("d", "TIMESTAMP"), ("e", "BIGINT"), ("f", "BOOLEAN"))


def _rows(n: int) -> list[list]:
    """Rows of Python values that are not all of their column's type: ints for doubles, strings for dates, NULLs."""
    kinds = [
        lambda i: [i, None, dt.date(2024, 1, 1) + dt.timedelta(days=i), dt.datetime(2024, 1, 1, 3, 4, 5), i, True],
        lambda i: [i + 0.25, f"x'\"{i}", "2024-02-01", "2024-01-02 00:00:00", None, None],
        lambda i: [None, "", None, dt.date(2024, 1, 3), 2**40 + i, False],
        lambda i: [Decimal("2.25"), str(i), dt.date(2024, 1, 4), None, -i, 1],
    ]
    return [kinds[i % len(kinds)](i) for i in range(n)]


def test_insert_rows_writes_what_executemany_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(duckdb_adapter, "INSERT_PARAMETERS", 18)  # 3 rows per statement: several chunks and a short one
    adapter = duckdb_adapter.DuckDBAdapter(DuckDBOutput(type="duckdb", path=str(tmp_path / "wh.duckdb")), tmp_path, "UTC")
    try:
        for table in ("chunked", "by_row"):
            adapter.execute(f"CREATE TABLE {table} (" + ", ".join(f"{c} {t}" for c, t in COLUMNS) + ")")
        rows = _rows(11)
        adapter.insert_rows('"chunked"', [c for c, _ in COLUMNS], rows)
        adapter.con.executemany("INSERT INTO by_row VALUES (?, ?, ?, ?, ?, ?)", rows)
        chunked = adapter.fetchall("SELECT * FROM chunked ORDER BY e NULLS LAST, b")
        by_row = adapter.fetchall("SELECT * FROM by_row ORDER BY e NULLS LAST, b")
        assert len(chunked) == 11
        assert chunked == by_row
        adapter.insert_rows('"chunked"', [c for c, _ in COLUMNS], [])  # nothing to write: no statement
        assert adapter.fetchall("SELECT count(*) FROM chunked") == [(11,)]
    finally:
        adapter.close()


def test_insert_rows_into_some_columns(tmp_path):
    adapter = duckdb_adapter.DuckDBAdapter(DuckDBOutput(type="duckdb", path=":memory:"), tmp_path, "UTC")
    try:
        adapter.execute('CREATE TABLE "t" ("Key" VARCHAR, "value" VARCHAR, extra INTEGER)')
        adapter.insert_rows('"t"', ["Key", "value"], [["a", "1"], ["b", None]])
        assert adapter.fetchall('SELECT * FROM "t" ORDER BY "Key"') == [("a", "1", None), ("b", None, None)]
    finally:
        adapter.close()


REVENUE = kpi("revenue", """
    model: source('shop', 'orders')
    time: ordered_at
    grain: [month]
    measure: sum(amount)
    dimensions: [region]
    target: 20000
    check_ins:
      - {date: 2025-07-01, author: sales@shop.example, note: summer is slow}
""")

QUIET_RUN = """
import sys
from kpimetrics.cli import main
try:
    main(["run", "-q", "--project-dir", sys.argv[1], "--as-of", sys.argv[2]])
except SystemExit as exc:
    assert not exc.code, exc.code
loaded = sorted(m for m in sys.modules if m == "rich" or m.startswith("rich."))
assert not loaded, loaded
# a project without dbt, metric KPIs or notify: loads none of their modules but the search for dbt_project.yml
# (kpimetrics.dbt.project) and the typed notify: block of kpimetrics.yml's model (kpimetrics.notify.settings)
loaded = sorted(m for m in sys.modules if m.startswith(("kpimetrics.dbt.", "kpimetrics.notify."))
                and m not in ("kpimetrics.dbt.project", "kpimetrics.notify.settings"))
assert not loaded, loaded
"""


def test_a_quiet_run_imports_neither_rich_nor_dbt_nor_notify(tmp_path):
    root = write_run_project(tmp_path, kpis_yml(REVENUE))
    insert_orders(root, make_orders(dt.date(2025, 6, 1), dt.date(2025, 8, 1)))
    env = {k: v for k, v in os.environ.items() if k != "KPIMETRICS_PROFILES_DIR"}
    done = subprocess.run([sys.executable, "-c", QUIET_RUN, str(root), AS_OF.isoformat()], env=env,
                          capture_output=True, text=True, cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr
    # and it wrote what a run writes: values, the catalog row and its check-in (insert_rows), a successful run
    assert query(root, "SELECT count(*) FROM kpi.kpi_values WHERE name = 'revenue'")[0][0] > 0
    assert query(root, "SELECT name, kind FROM kpi.kpi_catalog") == [("revenue", "kpi")]
    assert query(root, "SELECT name, date, note FROM kpi.kpi_check_ins") == [("revenue", dt.date(2025, 7, 1), "summer is slow")]
    assert query(root, "SELECT status FROM kpi.kpi_runs") == [("success",)]
    con = duckdb.connect(str(root / "wh.duckdb"), read_only=True)
    try:
        assert not [r for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
                    if r[0].startswith("kpi_stage_")]
    finally:
        con.close()
