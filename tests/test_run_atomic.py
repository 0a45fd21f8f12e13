"""Atomic publishing: a KPI that fails at run time fails alone and keeps its rows;
--fail-fast and a crash while publishing leave every table as it was; kpi_runs logs it all.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers_run import (
    AS_OF, execute, insert_orders, kpi, kpi_result, kpis_yml, make_orders, ok, query, run, snapshot, write_run_project,
)
from kpimetrics.cli import main
from kpimetrics.runner import Runner

REVENUE = kpi("revenue", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: [month, week]
        measure: sum(amount)
        dimensions: [region]
        target: 20000
""")
COMPLETED_SHARE = kpi("completed_share", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: [month, week]
        ratio:
          numerator: count(*) filter (where status = 'completed')
          denominator: count(*)
        target: 0.6
""")
# valid at compile time; fails in DuckDB once a code is not a number
CODE_TOTAL = kpi("code_total", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: [month, week]
        measure: sum(cast(code as integer))
        target: 100
        check_ins:
          - {date: 2025-06-01, author: sales@shop.example, note: codes are numbers}
""")
CODE_PER_REVENUE = kpi("code_per_revenue", """
    derived: code_total / revenue
    target: 0.01
""")
CODE_PER_REVENUE_CHANGE = kpi("code_per_revenue_change", """
    derived: code_per_revenue - lag(code_per_revenue)
    target: 0
""")
KPIS = kpis_yml(REVENUE, COMPLETED_SHARE, CODE_TOTAL, CODE_PER_REVENUE, CODE_PER_REVENUE_CHANGE)
BAD_ROW = (900_001, 1, dt.datetime(2025, 12, 5, 10), "north", "web", 10.0, 0.0, "completed", "abc")


@pytest.fixture
def project(tmp_path) -> Path:
    """A project run once successfully, then given a bad row and some new ones."""
    root = write_run_project(tmp_path, KPIS)
    insert_orders(root, make_orders(dt.date(2025, 6, 1), dt.date(2025, 12, 1)))
    ok(run(root))
    insert_orders(root, [BAD_ROW] + make_orders(dt.date(2025, 12, 1), dt.date(2025, 12, 10), seed=3, first_id=10_000))
    return root


def rows_of(root: Path, names: tuple[str, ...]) -> dict[str, list]:
    """The rows of `names` in every per-KPI table (run_id and timestamps included)."""
    snap = snapshot(root)
    return {t: [r for r in rows if r and r[0] in names] for t, rows in snap.items()}


def test_a_failing_kpi_fails_alone_and_keeps_its_rows(project):
    failing = ("code_total", "code_per_revenue", "code_per_revenue_change")
    before = rows_of(project, failing)
    assert before["kpi_values"] and before["kpi_catalog"] and before["kpi_check_ins"]

    result = run(project)

    assert result.status == "partial"
    bad = kpi_result(result, "code_total")
    assert bad.status == "error"
    assert "Could not convert string 'abc'" in bad.error  # the database's own message
    assert "code_total" in result.message
    # and so do the KPIs derived from it, directly or not
    assert kpi_result(result, "code_per_revenue").error == "input KPI code_total failed"
    assert kpi_result(result, "code_per_revenue_change").error == "input KPI code_per_revenue failed"
    assert {k.name for k in result.kpis if k.status == "success"} == {"revenue", "completed_share"}
    # the failing KPIs are as they were, everywhere
    assert rows_of(project, failing) == before
    # the others were published with the new rows
    assert query(project, "SELECT count(*) FROM kpi.kpi_values WHERE name = 'revenue' AND grain = 'month' "
                          "AND dimension = '' AND period_start = DATE '2025-12-01'") == [(1,)]
    assert query(project, "SELECT run_id FROM kpi.kpi_status WHERE name = 'completed_share' AND grain = 'month' "
                          "AND period_start = DATE '2025-12-01'") == [(2,)]
    assert query(project, "SELECT run_id, status, kpis_ok, kpis_failed FROM kpi.kpi_runs ORDER BY run_id") == [
        (1, "success", 5, 0), (2, "partial", 2, 3)]


def test_a_failing_kpi_makes_the_cli_exit_1(project):
    out = CliRunner().invoke(main, ["run", "--project-dir", str(project), "--as-of", AS_OF.isoformat()])
    assert out.exit_code == 1, out.output
    assert "code_total" in out.output and "Could not convert string 'abc'" in out.output
    assert "Traceback" not in out.output


def test_fail_fast_publishes_nothing(project):
    before = snapshot(project)
    result = run(project, fail_fast=True)
    assert result.status == "error"
    assert "code_total" in result.message
    assert kpi_result(result, "code_total").status == "error"
    assert {k.name: k.status for k in result.kpis} == {
        "revenue": "skipped", "completed_share": "skipped", "code_total": "error", "code_per_revenue": "error",
        "code_per_revenue_change": "error"}
    assert snapshot(project) == before
    assert query(project, "SELECT status FROM kpi.kpi_runs WHERE run_id = 2") == [("error",)]
    out = CliRunner().invoke(main, ["run", "--fail-fast", "--project-dir", str(project), "--as-of", AS_OF.isoformat()])
    assert out.exit_code == 1
    assert snapshot(project) == before


@pytest.mark.parametrize("exc, status", [(RuntimeError("disk full"), "error"), (KeyboardInterrupt(), "aborted")])
def test_a_crash_while_publishing_changes_nothing(project, monkeypatch, exc, status):
    execute(project, "DELETE FROM main.orders WHERE code = 'abc'")
    before = snapshot(project)
    original = Runner.insert

    def insert_then_crash(self, table, query):
        original(self, table, query)
        if table.name == "kpi_values":  # the old rows are deleted and the new ones in, uncommitted
            raise exc

    monkeypatch.setattr(Runner, "insert", insert_then_crash)
    with pytest.raises(type(exc)):
        run(project)
    assert snapshot(project) == before
    assert query(project, "SELECT status FROM kpi.kpi_runs WHERE run_id = 2") == [(status,)]
    assert query(project, "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'kpi_stage%'") == [(0,)]

    monkeypatch.undo()
    ok(result := run(project))
    assert result.run_id == 3


def test_kpi_runs_log_and_a_killed_run(tmp_path):
    root = write_run_project(tmp_path, kpis_yml(REVENUE, COMPLETED_SHARE))
    insert_orders(root, make_orders(dt.date(2025, 10, 1), dt.date(2025, 12, 1)))
    assert [run(root).run_id for _ in range(2)] == [1, 2]
    # a run killed midway leaves its 'running' row and its staging tables
    execute(
        root,
        "INSERT INTO kpi.kpi_runs (run_id, started_at, status, kpis_ok, kpis_failed) "
        "VALUES (3, TIMESTAMP '2026-01-01 00:00:00', 'running', 0, 0)",
        "CREATE TABLE kpi.kpi_stage_3 AS SELECT 1 AS x",
        "CREATE TABLE kpi.kpi_stage_ranges_3 AS SELECT 1 AS x",
    )
    ok(result := run(root))
    assert result.run_id == 4
    rows = query(root, "SELECT run_id, status, finished_at IS NOT NULL FROM kpi.kpi_runs ORDER BY run_id")
    assert rows == [(1, "success", True), (2, "success", True), (3, "aborted", True), (4, "success", True)]
    assert query(root, "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'kpi_stage%'") == [(0,)]
