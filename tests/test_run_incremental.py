"""Incremental runs: after late, new, changed and deleted rows, an incremental run
writes exactly what --full-refresh writes, and leaves the periods before its
recompute range alone (they keep their run_id).
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from helpers_run import (
    execute, insert_orders, kpi, kpi_result, kpis_yml, make_orders, ok, query, run, table, write_run_project,
)

# --- every KPI form ----------------------------------------------------------------

EVERY_FORM = kpis_yml(
    kpi("net_revenue", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: [month, week, quarter]
        measure: sum(amount - discount)
        filter: status <> 'returned'
        dimensions: [region, channel]
        target: {month: {schedule: [{from: 2025-01-01, value: 20000}, {from: 2025-07-01, value: 22000}]}, quarter: 60000}
        tolerance: 5%
    """, indicator="lagging"),
    kpi("completion_rate", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: [month, week]
        ratio:
          numerator: count(*) filter (where status = 'completed')
          denominator: count(*)
        dimensions: [channel]
        target: 0.6
        at_risk_below: 0.5
        drives: [net_revenue]
    """),
    kpi("buyers", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: [month, week]
        measure: count(distinct customer_id)
        dimensions: [region]
        target:
          baseline: {from: 2025-01-01, to: 2025-03-31}
          change: 10%
          by: 2025-12-31
          path: linear
        drives: [net_revenue]
    """, strategy="keep_customers"),
    kpi("order_p90", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: quantile_cont(amount, 0.9)
        filter: status = 'completed'
        target: 400
        drives: [net_revenue]
    """),
    kpi("revenue_growth", """
        derived: net_revenue / lag(net_revenue) - 1
        grain: [month, quarter]
        target: 0.02
        drives: [net_revenue]
    """),
    kpi("revenue_trailing_3", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: [month, week]
        measure: sum(amount)
        window: {periods: 3}
        dimensions: [channel]
        target: {month: 60000}
        drives: [net_revenue]
    """),
    kpi("buyers_ytd", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: [month, quarter]
        measure: count(distinct customer_id)
        window: {to_date: year}
        target: {value: 60, by: 2025-12-31, pace: linear}
        drives: [net_revenue]
    """, strategy="keep_customers"),
)

FORMS = ("net_revenue", "completion_rate", "buyers", "order_p90", "revenue_growth", "revenue_trailing_3", "buyers_ytd")


def change_data(root: Path) -> None:
    """(a) late rows in the last period, (b) rows in a new period, (c) changed and deleted rows in the lookback range.

    The changes lie after 2025-12-01, where the week grain's recompute range starts with `lookback: 1`.
    """
    late = make_orders(dt.date(2025, 12, 10), dt.date(2025, 12, 20), seed=11, first_id=100_000)
    new = make_orders(dt.date(2026, 1, 1), dt.date(2026, 1, 12), seed=12, first_id=200_000)
    insert_orders(root, late + new)
    execute(
        root,
        "UPDATE main.orders SET amount = amount + 1000, customer_id = customer_id + 100, status = 'completed' "
        "WHERE ordered_at >= '2025-12-01' AND ordered_at < '2025-12-05' AND order_id % 3 = 0",
        "UPDATE main.orders SET region = 'east', channel = 'phone' WHERE ordered_at >= '2025-12-02' AND order_id % 4 = 1",
        "DELETE FROM main.orders WHERE ordered_at >= '2025-12-03' AND ordered_at < '2025-12-09' AND order_id % 2 = 0",
    )


@pytest.fixture(scope="module")
def every_form_data(tmp_path_factory) -> Path:
    """A warehouse with a year of orders, shared (copied) by the tests of this module."""
    root = tmp_path_factory.mktemp("data")
    insert_orders(root, make_orders(dt.date(2025, 1, 1), dt.date(2025, 12, 12)))
    return root / "wh.duckdb"


def copy_project(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("target"))
    return dest


@pytest.mark.parametrize(
    "lookback, since",
    [
        # the last month computed is 2025-12 (week 2025-12-08, quarter 2025-Q4)
        (1, {"month": "2025-11-01", "week": "2025-12-01", "quarter": "2025-07-01"}),
        ("35 days", {"month": "2025-10-01", "week": "2025-11-03", "quarter": "2025-07-01"}),
    ],
)
def test_incremental_equals_full_refresh_for_every_form(tmp_path, every_form_data, lookback, since):
    root = write_run_project(tmp_path / "inc", EVERY_FORM, lookback=lookback)
    shutil.copy(every_form_data, root / "wh.duckdb")
    ok(first := run(root))
    assert {k.mode for k in first.kpis} == {"full"}

    change_data(root)
    ok(second := run(root))
    assert second.run_id == first.run_id + 1
    for name in FORMS:
        r = kpi_result(second, name)
        assert r.mode == "incremental", name
        assert r.since == {g: since[g] for g in r.since}, name

    full = copy_project(root, tmp_path / "full")
    ok(run(full, full_refresh=True))
    for name in ("kpi_values", "kpi_status", "kpi_targets"):
        assert table(root, name) == table(full, name), name

    # the periods before each recompute range were not touched
    rows = query(root, "SELECT name, grain, period_start, run_id FROM kpi.kpi_values")
    assert rows
    for name, grain, start, run_id in rows:
        expected = second.run_id if start >= dt.date.fromisoformat(since[grain]) else first.run_id
        assert run_id == expected, (name, grain, start)
    # and the changes reached the tables: a new month, the new slices
    assert query(root, "SELECT count(*) FROM kpi.kpi_values WHERE name = 'net_revenue' AND grain = 'month' "
                       "AND dimension = '' AND period_start = DATE '2026-01-01'") == [(1,)]
    assert query(root, "SELECT count(*) FROM kpi.kpi_values WHERE dimension_value = 'phone'")[0][0] > 0


def test_incremental_equals_a_fresh_warehouse(tmp_path, every_form_data):
    """The same, compared with a warehouse that never had output tables."""
    root = write_run_project(tmp_path / "inc", EVERY_FORM)
    shutil.copy(every_form_data, root / "wh.duckdb")
    ok(run(root))
    change_data(root)
    ok(run(root))
    fresh = copy_project(root, tmp_path / "fresh")
    execute(fresh, "DROP SCHEMA kpi CASCADE")
    ok(run(fresh))
    for name in ("kpi_values", "kpi_status", "kpi_targets", "kpi_catalog", "kpi_strategy"):
        assert table(root, name) == table(fresh, name), name


def test_empty_period_at_the_start_of_the_recompute_range(tmp_path):
    """Rows of the first recomputed period all deleted: full refresh gives it no_data, so must incremental."""
    root = write_run_project(tmp_path / "inc", kpis_yml(kpi("revenue", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        target: 1000
    """)))
    insert_orders(root, make_orders(dt.date(2025, 9, 1), dt.date(2025, 12, 10)))
    ok(run(root))
    execute(root, "DELETE FROM main.orders WHERE ordered_at >= '2025-11-01' AND ordered_at < '2025-12-01'")
    ok(run(root))
    full = copy_project(root, tmp_path / "full")
    ok(run(full, full_refresh=True))
    assert query(full, "SELECT status FROM kpi.kpi_status WHERE period_start = DATE '2025-11-01'") == [("no_data",)]
    for name in ("kpi_values", "kpi_status"):
        assert table(root, name) == table(full, name), name


def test_history_shorter_than_the_lookback(tmp_path):
    """One quarter of history and lookback 1: the quarter grain has no period before its last one to keep,
    so it is recomputed whole (and gets no empty quarter before its data), while the months stay incremental."""
    root = write_run_project(tmp_path / "inc", kpis_yml(kpi("revenue", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: [month, quarter]
        measure: sum(amount)
        dimensions: [channel]
        target: 1000
    """)))
    insert_orders(root, make_orders(dt.date(2025, 10, 6), dt.date(2025, 12, 10)))
    ok(first := run(root))
    insert_orders(root, make_orders(dt.date(2025, 12, 10), dt.date(2025, 12, 20), seed=3, first_id=10_000))
    ok(second := run(root))
    assert kpi_result(second, "revenue").since == {"month": "2025-11-01", "quarter": None}
    full = copy_project(root, tmp_path / "full")
    ok(run(full, full_refresh=True))
    for name in ("kpi_values", "kpi_status", "kpi_targets"):
        assert table(root, name) == table(full, name), name
    assert query(root, "SELECT grain, period_start, run_id FROM kpi.kpi_values WHERE dimension = '' ORDER BY ALL") == [
        ("month", dt.date(2025, 10, 1), first.run_id), ("month", dt.date(2025, 11, 1), second.run_id),
        ("month", dt.date(2025, 12, 1), second.run_id), ("quarter", dt.date(2025, 10, 1), second.run_id)]


def test_running_twice_changes_nothing_and_keeps_keys_unique(tmp_path, every_form_data):
    root = write_run_project(tmp_path, EVERY_FORM)
    shutil.copy(every_form_data, root / "wh.duckdb")
    ok(run(root))
    before = {n: table(root, n) for n in ("kpi_values", "kpi_status", "kpi_targets", "kpi_catalog", "kpi_check_ins")}
    ok(run(root))
    ok(run(root))
    for name, rows in before.items():
        assert table(root, name) == rows, name
    key = "name, grain, period_start, dimension, dimension_value"
    for name in ("kpi_values", "kpi_status", "kpi_targets"):
        dupes = query(root, f"SELECT {key}, count(*) FROM kpi.{name} GROUP BY ALL HAVING count(*) > 1")
        assert dupes == [], name
    assert query(root, "SELECT name, count(*) FROM kpi.kpi_catalog GROUP BY name HAVING count(*) > 1") == []
    assert query(root, "SELECT run_id, status FROM kpi.kpi_runs ORDER BY run_id") == [
        (1, "success"), (2, "success"), (3, "success")]
