"""Limits: a project of 10,000 KPIs and a 1 MB YAML file load and validate in bounded
time and memory; a KPI at day grain over thirty years (about 11,000 periods) sliced by a
dimension with 100,000 values runs without pulling fact rows into Python.

Memory is measured with tracemalloc (Python allocations: the warehouse's own memory is
not counted, which is the point); times are very generous bounds, to catch a blow-up,
not to benchmark.
"""
from __future__ import annotations

import datetime as dt
import time
import tracemalloc

import pytest

from helpers_projects import TODAY, VALID_PROJECT, kpi_yaml, write_project
from kpimetrics import Project
from helpers_run import execute, kpi, kpis_yml, ok, query, run, write_run_project

MB = 1 << 20


def measured(fn):
    """(result, seconds, peak MB of Python allocations) of fn()."""
    tracemalloc.start()
    began = time.perf_counter()
    try:
        result = fn()
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()
    return result, seconds, peak


def many_kpis(n: int) -> str:
    entry = kpi_yaml(name="k_{i}", label="'KPI number {i}, a label of some length'",
                     description="'A description of the KPI, as long as most descriptions are in practice'")
    body = entry.split("\n", 1)[1]
    return "kpis:\n" + "".join(body.replace("{i}", str(i)) for i in range(n))


@pytest.mark.slow  # left out of make test-fast
def test_ten_thousand_kpis_load_and_validate(tmp_path):
    text = many_kpis(10_000)
    write_project(tmp_path, {**VALID_PROJECT, "kpis/many.yml": text})
    assert (tmp_path / "kpis" / "many.yml").stat().st_size > 2 * MB

    issues, seconds, peak = measured(lambda: Project.load(tmp_path).validate(today=TODAY))
    # a strategy with 10,000 KPIs is far over 7: exactly that warning, once
    assert [i.code for i in issues] == ["KPI075"], [i.format() for i in issues[:5]]
    assert seconds < 120, seconds
    assert peak < 600, f"{peak:.0f} MB of Python memory for 10,000 KPIs"
    print(f"10,000 KPIs: {seconds:.1f} s, {peak:.0f} MB peak")


def test_a_one_megabyte_file_of_comments_and_text(tmp_path):
    note = "A long check-in note; " * 40
    check_ins = "".join(f"\n  - {{date: 2026-01-{1 + i % 28:02d}, author: a@b.example, note: '{note}'}}" for i in range(1200))
    text = kpi_yaml(check_ins=check_ins)
    write_project(tmp_path, {**VALID_PROJECT, "kpis/big.yml": text})
    assert (tmp_path / "kpis" / "big.yml").stat().st_size > MB

    project, seconds, peak = measured(lambda: Project.load(tmp_path))
    assert len(project.definition.kpi_by_name["broken"].check_ins) == 1200
    assert project.validate(today=TODAY) == []
    assert seconds < 60 and peak < 200, (seconds, peak)


def test_thirty_years_of_days_by_100000_customers_stay_in_the_warehouse(tmp_path):
    root = write_run_project(tmp_path, kpis_yml(kpi("revenue", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: day
        measure: sum(amount)
        dimensions: [customer_id]
        target: 1000
    """)))
    days = 30 * 365 + 7  # 1996-01-01 .. 2025-12-31
    # 300,000 orders: every customer orders three times, spread over every day of thirty years
    execute(root, f"""
        CREATE TABLE main.orders AS
        SELECT i AS order_id, i % 100000 AS customer_id,
               TIMESTAMP '1996-01-01 12:00:00' + to_days(CAST(i % {days} AS INTEGER)) AS ordered_at,
               'north' AS region, 'web' AS channel, CAST(1 + i % 7 AS DOUBLE) AS amount, 0.0 AS discount,
               'completed' AS status, '1' AS code
        FROM range(300000) AS t(i)
    """)
    result, seconds, peak = measured(lambda: run(root, as_of=dt.date(2026, 1, 1)))
    ok(result)
    totals, slices, customers = query(root, """
        SELECT count(*) FILTER (WHERE dimension = ''), count(*) FILTER (WHERE dimension <> ''),
               count(DISTINCT dimension_value) FROM kpi.kpi_values""")[0]
    assert totals == days and slices == 300_000 and customers == 100_000
    assert query(root, "SELECT sum(value) FROM kpi.kpi_values WHERE dimension = ''") == query(
        root, "SELECT sum(amount) FROM main.orders")
    assert query(root, "SELECT count(*) FROM kpi.kpi_status")[0][0] == days + 300_000
    # 300,000 fact rows and 600,000 output rows went through the warehouse, not through Python
    assert peak < 60, f"{peak:.0f} MB of Python memory"
    assert seconds < 300, seconds
    print(f"day grain x 100,000 slices: {seconds:.1f} s, {peak:.1f} MB peak")
