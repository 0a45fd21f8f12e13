"""Pre-aggregates kept between runs (kpimetrics/partials.py): an incremental run computes a scan's shared
pre-aggregate from the rows of the periods it recomputes only, takes the earlier periods a trailing window
needs from the rows the last run kept, and still writes what --full-refresh writes. Kept rows that another
run made stale are not used.
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

from helpers_run import execute, insert_orders, kpi, kpis_yml, make_orders, ok, query, run, table, write_run_project

KPIS = kpis_yml(
    kpi("revenue", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: [month, day]
        measure: sum(amount)
        dimensions: [channel]
        target: 20000
    """),
    kpi("completed_orders", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: count(*)
        filter: status = 'completed'
        target: 50
    """),
    kpi("revenue_trailing_3", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount - discount)
        window: {periods: 3}
        dimensions: [region]
        target: 60000
    """),
    kpi("buyers", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: count(distinct customer_id)
        target: 40
    """),
)


def project(root: Path) -> Path:
    write_run_project(root, KPIS, lookback=0)
    insert_orders(root, make_orders(dt.date(2025, 1, 1), dt.date(2025, 12, 12)))
    return root


def statements(result, kind: str) -> list[str]:
    """The run's statements over main.orders: 'pre' computes the pre-aggregate, 'scan' the values."""
    pre = 'CREATE TABLE "kpi"."kpi_stage_pp_'
    return [s for s in result.statements if '"main"."orders"' in s and s.startswith(pre) == (kind == "pre")]


def kept_tables(root: Path) -> list[str]:
    return [r[0] for r in query(root, "SELECT table_name FROM information_schema.tables "
                                      "WHERE table_schema = 'kpi' AND table_name LIKE 'kpi_partials_%' ORDER BY 1")]


def same_as_full_refresh(root: Path, tmp_path: Path) -> None:
    full = tmp_path / "full"
    shutil.copytree(root, full, ignore=shutil.ignore_patterns("target"))
    ok(run(full, full_refresh=True))
    for name in ("kpi_values", "kpi_status"):
        assert table(root, name) == table(full, name), name


def test_an_incremental_run_reads_the_new_periods_rows_and_the_kept_pre_aggregate(tmp_path):
    root = project(tmp_path / "p")
    ok(first := run(root))
    [pre] = statements(first, "pre")
    assert "ordered_at >= " not in pre  # a full run pre-aggregates every row
    [kept] = kept_tables(root)
    assert query(root, f"SELECT DISTINCT __run FROM kpi.{kept}") == [(first.run_id,)]

    insert_orders(root, make_orders(dt.date(2025, 12, 12), dt.date(2026, 1, 5), seed=5, first_id=500_000))
    ok(second := run(root))
    [pre] = statements(second, "pre")
    [scan] = statements(second, "scan")
    # the month grain recomputes 2025-12 on (lookback 0): the pre-aggregate reads the rows from there, and the
    # trailing window's 2025-10 and 2025-11 come from the kept rows, not from the rows
    assert re.search(r"ordered_at >= CAST\('2025-12-01' AS DATE\)", pre), pre
    assert (f'FROM "kpi"."{kept}" WHERE "__p" >= CAST(\'2025-10-01\' AS DATE) '
            f'AND "__p" < CAST(\'2025-12-01\' AS DATE)') in scan
    # buyers' count(DISTINCT) does not roll up: the scan reads its rows from its own first period only
    assert re.search(r"ordered_at >= CAST\('2025-12-01' AS DATE\)", scan), scan
    assert "2025-10-01' AS DATE) AS" not in scan and not re.search(r"ordered_at >= CAST\('2025-10-01'", scan)
    assert kept_tables(root) == [kept]
    # the recomputed periods' rows are replaced, the earlier ones stay as the first run kept them
    assert query(root, f"SELECT __run, min(__p), max(__p) FROM kpi.{kept} GROUP BY 1 ORDER BY 1") == [
        (first.run_id, dt.date(2025, 1, 1), dt.date(2025, 11, 30)), (second.run_id, dt.date(2025, 12, 1), dt.date(2026, 1, 4))]
    same_as_full_refresh(root, tmp_path)


def test_kept_rows_made_stale_by_another_run_are_not_read(tmp_path):
    root = project(tmp_path / "p")
    ok(run(root))
    [kept] = kept_tables(root)
    # a run of some of the scan's KPIs publishes them without this pre-aggregate (it keeps its own) ...
    insert_orders(root, make_orders(dt.date(2025, 12, 12), dt.date(2025, 12, 20), seed=6, first_id=500_000))
    ok(run(root, select="revenue_trailing_3 completed_orders"))
    assert len(kept_tables(root)) == 2
    # ... then rows change within every KPI's recompute range (the day grain's starts at 2025-12-11)
    execute(root, "UPDATE main.orders SET amount = amount + 7 WHERE ordered_at >= '2025-12-11'")
    insert_orders(root, make_orders(dt.date(2025, 12, 20), dt.date(2026, 1, 3), seed=7, first_id=600_000))
    ok(third := run(root))
    [scan] = statements(third, "scan")
    assert f'"kpi"."{kept}"' not in scan  # stale: the run that kept it is not the last to publish these KPIs
    [pre] = statements(third, "pre")
    assert re.search(r"ordered_at >= CAST\('2025-10-01' AS DATE\)", pre), pre  # the rows, as far back as the window needs
    # the whole-project run keeps its own again and drops the selection's
    assert kept_tables(root) == [kept]
    same_as_full_refresh(root, tmp_path)


def test_a_changed_kpi_gets_a_new_kept_pre_aggregate_and_the_old_one_goes(tmp_path):
    root = project(tmp_path / "p")
    ok(run(root))
    [old] = kept_tables(root)
    write_run_project(root, KPIS.replace("filter: status = 'completed'", "filter: status <> 'returned'"), lookback=0)
    ok(second := run(root))
    [new] = kept_tables(root)
    assert new != old
    [pre] = statements(second, "pre")
    assert "ordered_at >= " not in pre  # the changed KPI is recomputed in full, and the pre-aggregate with it
    same_as_full_refresh(root, tmp_path)


MONTHLY = kpis_yml(
    kpi("revenue", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        dimensions: [channel]
        target: 20000
    """),
    kpi("buyers", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: count(distinct customer_id)
        target: 40
    """),
)


def test_late_rows_reads_again_only_the_days_rows_may_still_land_on(tmp_path):
    """With `late_rows: 1 day`, a month-grain scan keeps a pre-aggregate by day even for one additive KPI, and
    an incremental run reads its rows again from the newest kept day less a day: the month it recomputes (lookback
    0) rolls its earlier days up from the kept rows. count(DISTINCT) does not roll up and reads its whole month.
    Rows that land late within the day are counted; a change to an older row is not (that is the promise the
    project makes with late_rows), while without late_rows the whole month is read again and it is."""
    root = write_run_project(tmp_path / "p", MONTHLY, lookback=0, late_rows="1 day")
    insert_orders(root, make_orders(dt.date(2025, 1, 1), dt.date(2025, 12, 12)))
    ok(first := run(root))
    [kept] = kept_tables(root)
    assert query(root, f"SELECT count(*), count(DISTINCT __p), min(__p), max(__p) FROM kpi.{kept} "
                       "WHERE __d0 IS NULL") == [(345, 345, dt.date(2025, 1, 1), dt.date(2025, 12, 11))]  # by day
    [pre] = statements(first, "pre")
    assert "ordered_at >= " not in pre

    late, old = make_orders(dt.date(2025, 12, 10), dt.date(2025, 12, 11), seed=9, first_id=400_000)[:2], 17.0
    insert_orders(root, late + make_orders(dt.date(2025, 12, 12), dt.date(2026, 1, 5), seed=5, first_id=500_000))
    execute(root, f"UPDATE main.orders SET amount = amount + {old} WHERE order_id = "
                  "(SELECT min(order_id) FROM main.orders WHERE ordered_at >= '2025-12-02' AND ordered_at < '2025-12-03')")
    ok(second := run(root))
    [pre] = statements(second, "pre")
    [scan] = statements(second, "scan")
    assert re.search(r"ordered_at >= CAST\('2025-12-10' AS DATE\)", pre), pre  # 2025-12-11, less a day
    assert (f'FROM "kpi"."{kept}" WHERE "__p" >= CAST(\'2025-12-01\' AS DATE) '
            f'AND "__p" < CAST(\'2025-12-10\' AS DATE)') in scan
    assert re.search(r"ordered_at >= CAST\('2025-12-01' AS DATE\)", scan), scan  # buyers' whole month
    assert query(root, f"SELECT __run, min(__p), max(__p) FROM kpi.{kept} WHERE __d0 IS NULL GROUP BY 1 ORDER BY 1") == [
        (first.run_id, dt.date(2025, 1, 1), dt.date(2025, 12, 9)), (second.run_id, dt.date(2025, 12, 10), dt.date(2026, 1, 4))]

    # against the month computed by hand from every row: the late rows are in, the changed older row is not
    by_hand = dict(query(root, "SELECT CAST(date_trunc('month', ordered_at) AS DATE), sum(amount) FROM main.orders "
                               "WHERE ordered_at >= '2025-11-01' GROUP BY 1"))
    ours = dict(query(root, "SELECT period_start, value FROM kpi.kpi_values WHERE name = 'revenue' AND dimension = '' "
                            "AND period_start >= '2025-11-01'"))
    assert ours == {dt.date(2025, 11, 1): by_hand[dt.date(2025, 11, 1)], dt.date(2025, 12, 1): by_hand[dt.date(2025, 12, 1)] - old,
                    dt.date(2026, 1, 1): by_hand[dt.date(2026, 1, 1)]}
    assert late[0][2].date() == dt.date(2025, 12, 10) and sum(r[5] for r in late) > 0

    # another late_rows keeps reading the same kept days (their rows do not depend on it), from further back
    write_run_project(root, MONTHLY, lookback=0, late_rows="2 days")
    insert_orders(root, make_orders(dt.date(2026, 1, 5), dt.date(2026, 1, 6), seed=10, first_id=650_000))
    ok(third := run(root))
    [pre] = statements(third, "pre")
    assert re.search(r"ordered_at >= CAST\('2026-01-02' AS DATE\)", pre), pre  # 2026-01-04, less two days
    assert kept_tables(root) == [kept]

    # without late_rows the month's rows are all read again, and the change is counted
    write_run_project(root, MONTHLY, lookback=0)
    ok(run(root, full_refresh=True))
    insert_orders(root, make_orders(dt.date(2026, 1, 6), dt.date(2026, 1, 7), seed=11, first_id=700_000))
    execute(root, "UPDATE main.orders SET amount = amount + 1 WHERE ordered_at >= '2026-01-02' AND ordered_at < '2026-01-03'")
    ok(fourth := run(root))
    [pre] = statements(fourth, "pre") or [""]
    assert not re.search(r"ordered_at >= CAST\('2026-01-0[2-9]'", pre + "".join(statements(fourth, "scan")))
    same_as_full_refresh(root, tmp_path)
