"""Trust at the edges (SPEC §11), two of its promises: a `diff --state` folder is untrusted input, and a trailing
window of any length runs incrementally.

Large windows: a trailing window reaching back before year 1 (800,000 days; 50,000 months) computed on a full
refresh, but every later incremental run failed computing the first day its windows read. The range now reaches
back to the first day a date can have, and incremental equals --full-refresh after each run.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from helpers_run import execute, insert_orders, kpi, kpi_result, kpis_yml, make_orders, ok, query, run, table, \
    write_run_project

# --- large windows -------------------------------------------------------------------------------------------

LARGE_WINDOWS = kpis_yml(
    kpi("revenue_800k_days", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: day
        measure: sum(amount)
        window: {periods: 800000}
        target: 100
    """),
    kpi("revenue_50k_months", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: [month, week]
        measure: sum(amount - discount)
        dimensions: [channel]
        window: {periods: 50000}
        target: 100
    """),
    kpi("customers_50k_months", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: count(distinct customer_id)
        window: {periods: 50000}
        target: 10
    """),
    kpi("median_order_20k_weeks", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: week
        measure: median(amount)
        window: {periods: 200000}
        target: 100
    """),
)
LARGE = ("revenue_800k_days", "revenue_50k_months", "customers_50k_months", "median_order_20k_weeks")


def _same_as_full_refresh(root: Path, tmp: Path) -> None:
    full = tmp / f"full-{len(list(tmp.iterdir()))}"
    shutil.copytree(root, full, ignore=shutil.ignore_patterns("target"))
    ok(run(full, full_refresh=True))
    for name in ("kpi_values", "kpi_status", "kpi_targets"):
        assert table(root, name) == table(full, name), name


@pytest.mark.parametrize("lookback", [1, "35 days", 100_000_000])
def test_a_window_reaching_before_year_1_runs_incrementally(tmp_path, lookback):
    root = write_run_project(tmp_path / "inc", LARGE_WINDOWS, lookback=lookback)
    insert_orders(root, make_orders(dt.date(2025, 1, 1), dt.date(2025, 10, 1)))
    ok(first := run(root))
    assert {k.mode for k in first.kpis} == {"full"}
    _same_as_full_refresh(root, tmp_path)

    insert_orders(root, make_orders(dt.date(2025, 10, 1), dt.date(2025, 12, 12), seed=3, first_id=100_000))
    execute(root, "UPDATE main.orders SET amount = amount + 7 WHERE ordered_at >= '2025-09-29' AND order_id % 3 = 0")
    ok(second := run(root))
    # a lookback of 10^8 periods reaches before year 1 too: every period is recomputed
    assert {kpi_result(second, n).mode for n in LARGE} == {"full" if lookback == 100_000_000 else "incremental"}
    _same_as_full_refresh(root, tmp_path)
    # the windows did reach back to the first order: the last day's trailing sum is every order's amount
    assert query(root, "SELECT value FROM kpi.kpi_values WHERE name = 'revenue_800k_days' AND dimension = '' "
                       "AND period_start = DATE '2025-12-11'") == query(root, "SELECT sum(amount) FROM main.orders")

