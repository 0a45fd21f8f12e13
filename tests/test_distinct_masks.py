"""count(DISTINCT x) from bit masks (dialects.DISTINCT_MASKS, sqlgen._render_masks): on DuckDB, KPIs whose every
aggregate counts distinct values of one expression x, without a window, are counted from each x's periods as bits of
63-period words. Their values must be those of plain `COUNT(DISTINCT x) ... GROUP BY period, slice` (written here by
hand, with the calendar's period rules), and those of the old path (the same project run with the masks turned off).
Every test checks that the masks were really used (a `..._bits"` CTE in the run's statements).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from pathlib import Path

import pytest

import kpimetrics.compiler
import kpimetrics.runner
from helpers_run import (
    comparable, execute, insert_orders, kpi, kpi_result, kpis_yml, make_orders, ok, query, read, run, table,
    write_run_project,
)

OVER_ORDERS = "model: source('shop', 'orders')\ntime: ordered_at\n"
WEEKDAY_NUMBER = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}


def write(root: Path, kpis: str, *, week_start: str = "monday", fiscal: int = 1, lookback: str = "1",
          late_rows: str | None = None) -> Path:
    """A shop project over main.orders in root/wh.duckdb, with its calendar and defaults."""
    defaults = f"grain: month, lookback: {lookback}" + (f", late_rows: '{late_rows}'" if late_rows else "")
    return write_run_project(root, kpis, files={"kpimetrics.yml": f"""
        name: shop
        profile: shop
        dialect: duckdb
        output_schema: kpi
        defaults: {{{defaults}}}
        calendar: {{week_start: {week_start}, fiscal_year_start_month: {fiscal}}}
    """})


def load_orders(root: Path, start: dt.date, end: dt.date, *, seed: int = 7, first_id: int = 1, per_day: int = 3) -> None:
    """Orders (at least one a day) with some NULL customers (x) and NULL channels; regions are NULL already."""
    insert_orders(root, make_orders(start, end, seed=seed, first_id=first_id, per_day=per_day))
    execute(root, f"UPDATE main.orders SET customer_id = NULL WHERE order_id >= {first_id} AND order_id % 13 = 0",
            f"UPDATE main.orders SET channel = NULL WHERE order_id >= {first_id} AND order_id % 17 = 0")


def period_sql(grain: str, week_start: str = "monday", fiscal: int = 1, t: str = "ordered_at") -> str:
    """The start of `t`'s period, by hand: day arithmetic and month numbers rather than kpimetrics' date_trunc."""
    if grain == "day":
        return f"CAST({t} AS DATE)"
    if grain == "week":
        return f"CAST({t} AS DATE) - CAST((dayofweek({t}) + 7 - {WEEKDAY_NUMBER[week_start]}) % 7 AS INTEGER)"
    if grain == "month":
        return f"make_date(year({t}), month({t}), 1)"
    if grain == "quarter":
        # months since year 0 in fiscal terms, rounded down to a quarter, back to a calendar month number
        idx = f"(year({t}) * 12 + month({t}) - {fiscal})"
        start = f"({idx} - {idx} % 3 + {fiscal - 1})"
        return f"make_date(CAST({start} // 12 AS BIGINT), CAST({start} % 12 + 1 AS BIGINT), 1)"
    assert grain == "year"
    return f"make_date(year({t}) - CAST(month({t}) < {fiscal} AS INTEGER), {fiscal}, 1)"


def by_hand(root: Path, period: str, count: str = "count(DISTINCT customer_id)",
            dims: tuple[str, ...] = ("region", "channel"), where: str = "TRUE") -> list[tuple]:
    """(period_start, dimension, dimension_value, value) of `count` per period and per period and slice."""
    parts = [f"SELECT p, '' AS d, CAST(NULL AS VARCHAR) AS v, CAST({count} AS DOUBLE) FROM o GROUP BY p"]
    parts += [f"SELECT p, '{d}', coalesce(CAST({d} AS VARCHAR), '(null)'), CAST({count} AS DOUBLE) FROM o GROUP BY ALL"
              for d in dims]
    return query(root, f"WITH o AS (SELECT {period} AS p, * FROM main.orders WHERE ordered_at IS NOT NULL AND {where}) "
                       + " UNION ALL ".join(parts) + " ORDER BY ALL")


def kpi_filtered(count: str, condition: str, empty: str = "NULL") -> str:
    """`count` under a KPI `filter:`: no value (`empty`) where no row of the group passes the filter."""
    return f"CASE WHEN count(*) FILTER (WHERE {condition}) > 0 THEN {count} FILTER (WHERE {condition}) ELSE {empty} END"


def values(root: Path, name: str, grain: str, columns: str = "period_start, dimension, dimension_value, value"):
    return query(root, f"SELECT {columns} FROM kpi.kpi_values WHERE name = '{name}' AND grain = '{grain}' ORDER BY ALL")


def took_masks(result) -> None:
    """The run counted distinct values from bit masks, not with count(DISTINCT x)."""
    assert any('_bits"' in s for s in result.statements), "the masks path was not taken"


@contextlib.contextmanager
def without_masks(monkeypatch):
    """Within the `with`: the old path, count(DISTINCT x) grouped by period and slice."""
    with monkeypatch.context() as patched:
        patched.setattr(kpimetrics.runner, "DISTINCT_MASKS", ())
        patched.setattr(kpimetrics.compiler, "DISTINCT_MASKS", ())
        yield


def run_both_ways(tmp_path: Path, monkeypatch, kpis: str, fill, **write_kw) -> tuple[Path, Path, object]:
    """The same project and data in two warehouses: `masks` run with the masks, `old` without; both succeed.
    Returns both projects and the masks run's result."""
    masks = write(tmp_path / "masks", kpis, **write_kw)
    fill(masks)
    old = write(tmp_path / "old", kpis, **write_kw)
    shutil.copy(masks / "wh.duckdb", old / "wh.duckdb")
    ok(result := run(masks))
    took_masks(result)
    with without_masks(monkeypatch):
        ok(unmasked := run(old))
    assert not any('_bits"' in s for s in unmasked.statements)
    return masks, old, result


def same_as_old_path(masks: Path, old: Path) -> None:
    for name in ("kpi_values", "kpi_status"):
        assert table(masks, name) == table(old, name), name


# --- 1. every grain and calendar against hand-written SQL ----------------------------------------------------

@pytest.fixture(scope="module")
def four_years(tmp_path_factory) -> Path:
    """Orders from 2022-02-10 to 2026-02-20 (about 4,400), shared (copied) by the tests below."""
    root = tmp_path_factory.mktemp("four_years")
    load_orders(root, dt.date(2022, 2, 10), dt.date(2026, 2, 20))
    return root / "wh.duckdb"


CALENDARS = [("monday", 1), ("sunday", 4), ("wednesday", 11)]


@pytest.mark.parametrize("week_start, fiscal", CALENDARS)
@pytest.mark.parametrize("grain", ["day", "week", "month", "quarter", "year"])
def test_each_grain_alone_equals_count_distinct_by_hand(tmp_path, four_years, grain, week_start, fiscal):
    root = write(tmp_path, kpis_yml(kpi("buyers", OVER_ORDERS + f"grain: {grain}\nmeasure: count(distinct customer_id)\n"
                                                                "dimensions: [region, channel]\ntarget: 10\n")),
                 week_start=week_start, fiscal=fiscal)
    shutil.copy(four_years, root / "wh.duckdb")
    ok(result := run(root))
    took_masks(result)
    expected = by_hand(root, period_sql(grain, week_start, fiscal))
    # the data has what the test is about: NULL slices of both dimensions, and several periods
    assert {(d, v) for _, d, v, _ in expected} >= {("region", "(null)"), ("channel", "(null)")}
    assert len({p for p, *_ in expected}) >= 4
    assert values(root, "buyers", grain) == expected


@pytest.mark.parametrize("week_start, fiscal", CALENDARS)
def test_all_grains_in_one_scan_equal_count_distinct_by_hand(tmp_path, four_years, week_start, fiscal):
    """The five grains of one KPI in one scan, whose rows are cut by day: each grain numbers its periods from days."""
    grains = ["day", "week", "month", "quarter", "year"]
    root = write(tmp_path, kpis_yml(kpi("buyers", OVER_ORDERS + f"grain: [{', '.join(grains)}]\n"
                                                                "measure: count(distinct customer_id)\n"
                                                                "dimensions: [region, channel]\ntarget: 10\n")),
                 week_start=week_start, fiscal=fiscal)
    shutil.copy(four_years, root / "wh.duckdb")
    ok(result := run(root))
    took_masks(result)
    for grain in grains:
        assert values(root, "buyers", grain) == by_hand(root, period_sql(grain, week_start, fiscal)), grain


# --- 2. days over several 63-bit words ------------------------------------------------------------------------

def test_days_across_several_words(tmp_path):
    """151 days: three words of 63 days, numbered from the scan's first day (the data's). Customers seen on the last
    day of a word and the first of the next, and on the last day of two words, are counted in each of those days;
    every day's value is checked."""
    root = write(tmp_path, kpis_yml(kpi("buyers", OVER_ORDERS + "grain: day\nmeasure: count(distinct customer_id)\n"
                                                                "dimensions: [region, channel]\ntarget: 10\n")))
    start, end = dt.date(2025, 1, 1), dt.date(2025, 6, 1)
    load_orders(root, start, end)
    days = [start + dt.timedelta(days=i) for i in range((end - start).days)]
    words = {(d - start).days // 63 for d in days}
    assert len(words) >= 3
    lasts = [d for d in days[:-1] if (d - start).days % 63 == 62]  # each the last day (bit 62) of a word
    assert len(lasts) >= 2
    edge = []
    for last in lasts:
        for day, at in ((last, "23:59:59"), (last + dt.timedelta(days=1), "00:00:00")):
            edge.append(f"({900_000 + len(edge)}, 7001, TIMESTAMP '{day} {at}', 'edge', 'web', 1, 0, 'completed', 'e')")
        edge.append(f"({900_000 + len(edge)}, 7002, TIMESTAMP '{last} 12:00:00', 'edge', 'mobile', 1, 0, "
                    "'completed', 'e')")
    execute(root, "INSERT INTO main.orders VALUES " + ", ".join(edge))
    ok(result := run(root))
    took_masks(result)
    expected = by_hand(root, period_sql("day"))
    assert [p for p, d, _, _ in expected if d == ""] == days  # a total for every day
    assert values(root, "buyers", "day") == expected
    # the edge customers, by their own slice: 2 on each word's last day, 1 on the next day
    edge_values = [(p, v) for p, d, s, v in values(root, "buyers", "day") if (d, s) == ("region", "edge")]
    assert edge_values == sorted([(last, 2.0) for last in lasts]
                                 + [(last + dt.timedelta(days=1), 1.0) for last in lasts])


@pytest.mark.parametrize("fiscal", [1, 4])
def test_quarters_and_years_across_a_word(tmp_path, fiscal):
    """Orders in every month of 1950-2021 (72 years, 288 quarters): numbered from the scan's first period, the
    quarters fill several 63-period words and the years two, fiscal years from January and from April."""
    root = write(tmp_path, kpis_yml(kpi("buyers", OVER_ORDERS + "grain: [quarter, year]\n"
                                                                "measure: count(distinct customer_id)\n"
                                                                "dimensions: [region, channel]\ntarget: 10\n")),
                 fiscal=fiscal)
    execute(root, """CREATE TABLE main.orders (
        order_id INTEGER, customer_id INTEGER, ordered_at TIMESTAMP, region VARCHAR, channel VARCHAR,
        amount DOUBLE, discount DOUBLE, status VARCHAR, code VARCHAR)""",
            """INSERT INTO main.orders SELECT i, CASE WHEN i % 11 = 0 THEN NULL ELSE (i * 7) % 23 END,
                   TIMESTAMP '1950-01-01' + to_months(CAST(i // 3 AS INTEGER)) + to_days(CAST((i * 5) % 27 AS INTEGER)),
                   ['north', 'south', NULL][1 + i % 3], ['web', 'mobile'][1 + i % 2], 1, 0, 'completed', 'c'
               FROM range(3 * 12 * 72) AS t(i)""")
    ok(result := run(root))
    took_masks(result)
    for grain, periods in (("quarter", 3), ("year", 12)):
        expected = by_hand(root, period_sql(grain, fiscal=fiscal))
        starts = sorted({p for p, *_ in expected})
        numbers = [((p.year - starts[0].year) * 12 + p.month - starts[0].month) // periods for p in starts]
        assert numbers == list(range(len(starts))) and len({n // 63 for n in numbers}) >= 2, (grain, starts[:3])
        assert values(root, "buyers", grain) == expected, grain


# --- 3. edge cases: by hand, and the same as the old path -------------------------------------------------

def null_x_slice(root: Path) -> None:
    """Months of orders, plus a region 'ghost' whose rows (in two months) all have a NULL customer, and a channel
    'void' whose one row (in April, region north) has a NULL customer while north has others."""
    load_orders(root, dt.date(2025, 1, 1), dt.date(2025, 7, 1))
    execute(root, """INSERT INTO main.orders VALUES
        (900001, NULL, TIMESTAMP '2025-02-03 10:00', 'ghost', 'web', 1, 0, 'completed', NULL),
        (900002, NULL, TIMESTAMP '2025-02-20 10:00', 'ghost', 'mobile', 1, 0, 'returned', NULL),
        (900003, NULL, TIMESTAMP '2025-05-07 10:00', 'ghost', 'web', 1, 0, 'completed', NULL),
        (900004, NULL, TIMESTAMP '2025-04-07 10:00', 'north', 'void', 1, 0, 'completed', NULL)""")


def test_a_slice_whose_rows_all_have_null_x_counts_zero(tmp_path, monkeypatch):
    """count(DISTINCT x) of rows whose x are all NULL is 0, and the slice's row is there (it has rows)."""
    kpis = kpis_yml(kpi("buyers", OVER_ORDERS + "grain: month\nmeasure: count(distinct customer_id)\n"
                                                "dimensions: [region, channel]\ntarget: 10\n"))
    masks, old, result = run_both_ways(tmp_path, monkeypatch, kpis, null_x_slice)
    ghosts = [(p, d, s, v) for p, d, s, v in values(masks, "buyers", "month") if s in ("ghost", "void")]
    assert ghosts == [(dt.date(2025, 2, 1), "region", "ghost", 0.0), (dt.date(2025, 4, 1), "channel", "void", 0.0),
                      (dt.date(2025, 5, 1), "region", "ghost", 0.0)]
    assert values(masks, "buyers", "month") == by_hand(masks, period_sql("month"))
    same_as_old_path(masks, old)


def test_a_filtered_count_with_no_matching_row_in_a_slice_counts_zero(tmp_path, monkeypatch):
    """count(DISTINCT x) FILTER (WHERE ...) over a slice's rows of which none passes the filter is 0 (as
    count(DISTINCT x) FILTER is in SQL), not NULL: 'ghost' has no cancelled order in any month."""
    kpis = kpis_yml(kpi("cancellers", OVER_ORDERS + "grain: month\nmeasure: count(distinct customer_id) "
                                                    "filter (where status = 'cancelled')\n"
                                                    "dimensions: [region]\ntarget: 10\n"))

    def fill(root: Path) -> None:
        load_orders(root, dt.date(2025, 1, 1), dt.date(2025, 7, 1))
        execute(root, """INSERT INTO main.orders VALUES
            (900001, 501, TIMESTAMP '2025-02-03 10:00', 'ghost', 'web', 1, 0, 'completed', 'a'),
            (900002, 502, TIMESTAMP '2025-03-03 10:00', 'ghost', 'web', 1, 0, 'returned', 'b')""")

    masks, old, result = run_both_ways(tmp_path, monkeypatch, kpis, fill)
    expected = by_hand(masks, period_sql("month"), "count(DISTINCT customer_id) FILTER (WHERE status = 'cancelled')",
                       dims=("region",))
    assert [r for r in expected if r[2] == "ghost"] == [(dt.date(2025, 2, 1), "region", "ghost", 0.0),
                                                        (dt.date(2025, 3, 1), "region", "ghost", 0.0)]
    assert values(masks, "cancellers", "month") == expected
    same_as_old_path(masks, old)


def no_completed_in_march(root: Path) -> None:
    """Orders of January to May 2025; in March none is completed (the month still has rows)."""
    load_orders(root, dt.date(2025, 1, 1), dt.date(2025, 6, 1))
    execute(root, "UPDATE main.orders SET status = 'returned' WHERE month(ordered_at) = 3 AND status = 'completed'")


@pytest.mark.parametrize("fill", [False, True])
def test_a_kpi_filter_that_matches_no_row_of_a_period(tmp_path, monkeypatch, fill):
    """March has rows but none completed: its total and its slices are there, without a value (no_data), or 0
    with `fill: zero`. The other months count the completed orders' distinct customers."""
    kpis = kpis_yml(
        kpi("completed_buyers", OVER_ORDERS + "grain: month\nmeasure: count(distinct customer_id)\n"
                                              "filter: status = 'completed'\ndimensions: [region, channel]\n"
                                              + ("fill: zero\n" if fill else "") + "target: 10\n"),
        # 0 / 0 in March: no value, filled or not
        kpi("completed_web_share", OVER_ORDERS + "grain: month\nratio:\n"
                                                 "  numerator: count(distinct customer_id) filter (where channel = 'web')\n"
                                                 "  denominator: count(distinct customer_id)\n"
                                                 "filter: status = 'completed'\ndimensions: [region]\n"
                                                 + ("fill: zero\n" if fill else "") + "target: 0.5\n"),
    )
    masks, old, result = run_both_ways(tmp_path, monkeypatch, kpis, no_completed_in_march)
    empty = 0.0 if fill else None
    # by hand: every (period, slice) that has rows; the count of the completed rows, or `empty` without one
    expected = by_hand(masks, period_sql("month"), kpi_filtered("count(DISTINCT customer_id)", "status = 'completed'",
                                                                "0" if fill else "NULL"))
    march = [r for r in expected if r[0] == dt.date(2025, 3, 1)]
    assert len(march) > 5 and all(v == empty for *_, v in march)
    assert values(masks, "completed_buyers", "month") == expected
    same_as_old_path(masks, old)
    status = query(masks, "SELECT status FROM kpi.kpi_status WHERE name = 'completed_buyers' AND dimension = '' "
                          "AND period_start = DATE '2025-03-01'")
    assert status == query(old, "SELECT status FROM kpi.kpi_status WHERE name = 'completed_buyers' "
                                "AND dimension = '' AND period_start = DATE '2025-03-01'")
    assert (status == [("no_data",)]) == (not fill)
    share = query(masks, "SELECT value, numerator, denominator FROM kpi.kpi_values WHERE name = 'completed_web_share' "
                         "AND period_start = DATE '2025-03-01'")
    assert share and set(share) == {(None, empty, empty)}


def test_fill_zero_gives_a_month_without_rows_zero(tmp_path, monkeypatch):
    """`fill: zero` on an unfiltered distinct count: a month without any row, between two with rows, is 0."""
    kpis = kpis_yml(kpi("buyers", OVER_ORDERS + "grain: month\nmeasure: count(distinct customer_id)\nfill: zero\n"
                                                "dimensions: [region]\ntarget: 10\n"))

    def fill(root: Path) -> None:
        load_orders(root, dt.date(2025, 1, 1), dt.date(2025, 6, 1))
        execute(root, "DELETE FROM main.orders WHERE month(ordered_at) = 3")

    masks, old, result = run_both_ways(tmp_path, monkeypatch, kpis, fill)
    expected = by_hand(masks, period_sql("month"), dims=("region",)) + [(dt.date(2025, 3, 1), "", None, 0.0)]
    assert values(masks, "buyers", "month") == sorted(expected, key=lambda r: (r[0], r[1], r[2] is None, r[2] or ""))
    same_as_old_path(masks, old)


def test_a_ratio_of_two_distinct_counts_of_one_x(tmp_path, monkeypatch):
    """The share of customers who returned an order: both parts count distinct customer_id, one filtered."""
    kpis = kpis_yml(kpi("returner_share", OVER_ORDERS + "grain: [week, month]\nratio:\n"
                                                        "  numerator: count(distinct customer_id) "
                                                        "filter (where status = 'returned')\n"
                                                        "  denominator: count(distinct customer_id)\n"
                                                        "dimensions: [region, channel]\ntarget: 0.2\n"))

    def fill(root: Path) -> None:
        load_orders(root, dt.date(2025, 1, 1), dt.date(2025, 7, 1), per_day=6)
        # a region without a returned order (numerator 0), and one whose only customer is NULL (0 / 0: no value)
        execute(root, """INSERT INTO main.orders VALUES
            (900001, 501, TIMESTAMP '2025-02-03 10:00', 'quiet', 'web', 1, 0, 'completed', 'a'),
            (900002, 502, TIMESTAMP '2025-02-04 10:00', 'quiet', 'web', 1, 0, 'cancelled', 'a'),
            (900003, NULL, TIMESTAMP '2025-03-04 10:00', 'nobody', 'web', 1, 0, 'returned', 'a')""")

    masks, old, result = run_both_ways(tmp_path, monkeypatch, kpis, fill)
    for grain in ("week", "month"):
        num = by_hand(masks, period_sql(grain), "count(DISTINCT customer_id) FILTER (WHERE status = 'returned')")
        den = by_hand(masks, period_sql(grain))
        expected = [(p, d, s, n / q if q else None, n, q) for (p, d, s, n), (*_, q) in zip(num, den)]
        assert values(masks, "returner_share", grain,
                      "period_start, dimension, dimension_value, value, numerator, denominator") == expected, grain
        assert {(s, v, n, q) for _, _, s, v, n, q in expected if s in ("quiet", "nobody")} == {
            ("quiet", 0.0, 0.0, 2.0), ("nobody", None, 0.0, 0.0)}
    same_as_old_path(masks, old)


def test_kpis_with_different_filters_share_one_mask_aggregation(tmp_path, monkeypatch):
    """Three KPIs counting distinct customer_id (all, completed, returned: two KPI filters) are one masks
    aggregation of one scan, each with its own numbers; a KPI counting distinct VARCHAR codes is another."""
    kpis = kpis_yml(
        kpi("buyers", OVER_ORDERS + "grain: month\nmeasure: count(distinct customer_id)\ndimensions: [region]\n"
                                    "target: 10\n"),
        kpi("completed_buyers", OVER_ORDERS + "grain: month\nmeasure: count(distinct customer_id)\n"
                                              "filter: status = 'completed'\ndimensions: [channel]\ntarget: 10\n"),
        kpi("returning_buyers", OVER_ORDERS + "grain: month\nmeasure: count(distinct customer_id)\n"
                                              "filter: \"status = 'returned' and amount > 100\"\n"
                                              "dimensions: [region, channel]\ntarget: 10\n"),
        kpi("codes", OVER_ORDERS + "grain: month\nmeasure: count(distinct code)\ndimensions: [region]\ntarget: 10\n"),
        # completed_buyers' condition as an aggregate FILTER instead of a KPI filter: 0 where it has no value
        kpi("completed_buyers_or_0", OVER_ORDERS + "grain: month\nmeasure: count(distinct customer_id) "
                                                   "filter (where status = 'completed')\n"
                                                   "dimensions: [channel]\ntarget: 10\n"),
    )

    def fill(root: Path) -> None:
        load_orders(root, dt.date(2025, 1, 1), dt.date(2025, 7, 1), per_day=5)
        execute(root, "UPDATE main.orders SET code = NULL WHERE order_id % 7 = 0",
                "UPDATE main.orders SET status = 'returned' WHERE channel = 'mobile' AND month(ordered_at) = 3")

    masks, old, result = run_both_ways(tmp_path, monkeypatch, kpis, fill)
    [scan] = [s for s in result.statements if '_bits"' in s]
    assert scan.count('_bits" AS (') == 2  # customer_id's and code's
    month = period_sql("month")
    assert values(masks, "buyers", "month") == by_hand(masks, month, dims=("region",))
    # a KPI filter gives a slice a row where it has rows, filtered or not, without a value where none passes
    assert values(masks, "completed_buyers", "month") == by_hand(
        masks, month, kpi_filtered("count(DISTINCT customer_id)", "status = 'completed'"), dims=("channel",))
    assert values(masks, "completed_buyers_or_0", "month") == by_hand(
        masks, month, "count(DISTINCT customer_id) FILTER (WHERE status = 'completed')", dims=("channel",))
    march_mobile = "WHERE period_start = DATE '2025-03-01' AND dimension_value = 'mobile' AND name LIKE 'completed%'"
    assert query(masks, f"SELECT name, value FROM kpi.kpi_values {march_mobile} ORDER BY 1") == [
        ("completed_buyers", None), ("completed_buyers_or_0", 0.0)]
    returning = by_hand(masks, month, kpi_filtered("count(DISTINCT customer_id)", "status = 'returned' AND amount > 100"))
    assert values(masks, "returning_buyers", "month") == returning
    assert values(masks, "codes", "month") == by_hand(masks, month, "count(DISTINCT code)", dims=("region",))
    assert query(masks, "SELECT typeof(code) FROM main.orders LIMIT 1") == [("VARCHAR",)]
    same_as_old_path(masks, old)


def test_x_an_expression_and_a_combination_of_dimensions(tmp_path, monkeypatch):
    """x an expression of two columns (NULL when either is), sliced by region and by (region, channel) pairs."""
    kpis = kpis_yml(kpi("pairs", OVER_ORDERS + "grain: [day, month]\n"
                                               "measure: count(distinct cast(customer_id as varchar) || '-' || code)\n"
                                               "dimensions: [region, [region, channel]]\ntarget: 10\n"))

    def fill(root: Path) -> None:
        load_orders(root, dt.date(2025, 1, 1), dt.date(2025, 4, 1))

    masks, old, result = run_both_ways(tmp_path, monkeypatch, kpis, fill)
    count = "count(DISTINCT CAST(customer_id AS VARCHAR) || '-' || code)"
    expected = by_hand(masks, period_sql("month"), count, dims=("region",))
    assert [r for r in values(masks, "pairs", "month") if r[1] != "region × channel"] == expected
    assert query(masks, "SELECT period_start, dimension_value, value FROM kpi.kpi_values WHERE name = 'pairs' "
                        "AND grain = 'month' AND dimension = 'region × channel' ORDER BY ALL") == query(masks, f"""
        SELECT make_date(year(ordered_at), month(ordered_at), 1),
               coalesce(region, '(null)') || ' · ' || coalesce(channel, '(null)'), CAST({count} AS DOUBLE)
        FROM main.orders GROUP BY ALL ORDER BY ALL""")
    same_as_old_path(masks, old)


def test_arithmetic_over_counts_windows_beside_masks_and_a_model(tmp_path, monkeypatch):
    """Masks KPIs whose measure is arithmetic over distinct counts of one x (a difference, a share), and one whose
    x is the time column's day (active days), over a model; beside them, distinct counts with a window (not masks)
    and one of two x (not masks) in the same scan. Each KPI's compiled file returns the rows the run wrote."""
    over_model = "model: ref('kept_orders')\ntime: ordered_at\ngrain: [week, month]\n"
    kpis = kpis_yml(
        kpi("not_completed", over_model + "measure: count(distinct customer_id) - count(distinct customer_id) "
                                          "filter (where status = 'completed')\ndimensions: [region]\ntarget: 10\n"),
        kpi("completed_share", over_model + "measure: count(distinct customer_id) filter (where status = 'completed') "
                                            "/ count(distinct customer_id)\ndimensions: [channel]\ntarget: 0.5\n"),
        kpi("active_days", over_model + "measure: count(distinct cast(ordered_at as date))\ndimensions: [region]\n"
                                        "target: 20\n"),
        kpi("buyers_3", over_model + "measure: count(distinct customer_id)\nwindow: {periods: 3}\ntarget: 10\n"),
        kpi("buyers_ytd", over_model + "measure: count(distinct customer_id)\nwindow: {to_date: year}\ntarget: 10\n"),
        kpi("buyers_and_codes", over_model + "measure: count(distinct customer_id) + count(distinct code)\n"
                                             "target: 10\n"),
    )
    model = "select * from {{ source('shop', 'orders') }} where status <> 'cancelled'\n"

    def write_with_model(root: Path, kpis: str, **kw) -> Path:
        write(root, kpis, **kw)
        (root / "models").mkdir(exist_ok=True)
        (root / "models" / "kept_orders.sql").write_text(model, encoding="utf-8")
        return root

    masks = write_with_model(tmp_path / "masks", kpis)
    load_orders(masks, dt.date(2024, 11, 1), dt.date(2025, 5, 1), per_day=4)
    # a region with rows in one month, none of them completed: not_completed counts its one customer, share 0
    execute(masks, """INSERT INTO main.orders VALUES
        (900001, 501, TIMESTAMP '2025-02-03 10:00', 'quiet', 'web', 1, 0, 'returned', 'a'),
        (900002, NULL, TIMESTAMP '2025-02-04 10:00', 'quiet', 'web', 1, 0, 'returned', 'a')""")
    old = write_with_model(tmp_path / "old", kpis)
    shutil.copy(masks / "wh.duckdb", old / "wh.duckdb")
    ok(result := run(masks))
    took_masks(result)
    [scan] = [s for s in result.statements if '_bits"' in s]
    assert scan.count('_bits" AS (') == 2 * 2  # (customer_id, the day) x (week, month); the others count as before
    assert "COUNT(DISTINCT code)" in scan
    with without_masks(monkeypatch):
        ok(run(old))
    same_as_old_path(masks, old)

    kept = "status <> 'cancelled'"
    for grain in ("week", "month"):
        period = period_sql(grain)
        assert values(masks, "not_completed", grain) == by_hand(
            masks, period, "count(DISTINCT customer_id) - count(DISTINCT customer_id) FILTER (WHERE status = 'completed')",
            dims=("region",), where=kept), grain
        assert values(masks, "completed_share", grain) == by_hand(
            masks, period, "count(DISTINCT customer_id) FILTER (WHERE status = 'completed') "
                           "/ nullif(count(DISTINCT customer_id), 0)", dims=("channel",), where=kept), grain
        assert values(masks, "active_days", grain) == by_hand(
            masks, period, "count(DISTINCT CAST(ordered_at AS DATE))", dims=("region",), where=kept), grain
    assert (dt.date(2025, 2, 1), "region", "quiet", 1.0) in values(masks, "not_completed", "month")
    compiled = masks / "target" / "compiled" / "duckdb"
    everything = table(masks, "kpi_values", drop=("definition_hash", "run_id", "computed_at"))
    for name in ("not_completed", "completed_share", "active_days"):
        alone = comparable(*read(masks, (compiled / f"{name}.sql").read_text()))
        assert alone == [r for r in everything if r[0] == name], name


@pytest.mark.parametrize("grain", ["month", "quarter", "year"])  # a week: a spine of 10^5 weeks, slow
def test_a_row_dated_year_one_counts_as_before(tmp_path, monkeypatch, grain):
    """A row at 0001-01-01 00:00 (Go's zero time, a sentinel some systems write for 'no date') is in a period like
    any other row: count(DISTINCT x) has always counted it. When the masks numbered periods from a fixed epoch
    near the year 2, its period had a negative bit, which DuckDB refuses ('Cannot left-shift by negative
    number'): the KPI failed where the old path succeeded. They now count from the scan's first period."""
    kpis = kpis_yml(kpi("buyers", OVER_ORDERS + f"grain: {grain}\nmeasure: count(distinct customer_id)\n"
                                                "dimensions: [region]\ntarget: 10\n"))

    def fill(root: Path) -> None:
        load_orders(root, dt.date(2025, 6, 1), dt.date(2025, 6, 10))
        execute(root, "INSERT INTO main.orders VALUES "
                      "(900001, 501, TIMESTAMP '0001-01-01 00:00:00', 'north', 'web', 1, 0, 'completed', 'a'), "
                      "(900002, 502, TIMESTAMP '0001-01-01 00:00:00', 'north', 'web', 1, 0, 'completed', 'a')")

    masks, old, result = run_both_ways(tmp_path, monkeypatch, kpis, fill)
    expected = by_hand(masks, period_sql(grain), dims=("region",))
    assert expected[0] == (dt.date(1, 1, 1), "", None, 2.0)  # 0001-01-01 was a Monday
    assert [r for r in values(masks, "buyers", grain) if r[3] is not None] == expected
    same_as_old_path(masks, old)


def test_a_new_kpi_in_a_scan_of_incremental_ones(tmp_path):
    """A masks KPI added after the first run is computed over all its periods, in the same scan (and masks
    aggregation) as one recomputing only its lookback: both equal --full-refresh and the counts by hand."""
    buyers = kpi("buyers", OVER_ORDERS + "grain: [week, month]\nmeasure: count(distinct customer_id)\n"
                                         "dimensions: [region]\ntarget: 10\n")
    completed = kpi("completed_buyers", OVER_ORDERS + "grain: [week, month]\nmeasure: count(distinct customer_id)\n"
                                                      "filter: status = 'completed'\ndimensions: [channel]\ntarget: 10\n")
    growth = kpi("buyers_growth", "derived: buyers / lag(buyers) - 1\ngrain: month\ntarget: 0.1\n")
    root = write(tmp_path / "inc", kpis_yml(buyers))
    load_orders(root, dt.date(2025, 1, 1), dt.date(2025, 6, 1), per_day=5)
    ok(first := run(root))
    took_masks(first)
    (root / "kpis" / "kpis.yml").write_text(kpis_yml(buyers, completed, growth), encoding="utf-8")
    ok(second := run(root))
    took_masks(second)
    [scan] = [s for s in second.statements if '_bits"' in s]
    assert scan.count('_bits" AS (') == 2  # one per grain, for both KPIs
    assert kpi_result(second, "buyers").mode == "incremental" and kpi_result(second, "completed_buyers").mode == "full"
    full = write(tmp_path / "full", kpis_yml(buyers, completed, growth))
    shutil.copy(root / "wh.duckdb", full / "wh.duckdb")
    ok(run(full, full_refresh=True))
    for name in ("kpi_values", "kpi_status"):
        assert table(root, name) == table(full, name), name
    for grain in ("week", "month"):
        assert values(root, "completed_buyers", grain) == by_hand(
            root, period_sql(grain), kpi_filtered("count(DISTINCT customer_id)", "status = 'completed'"),
            dims=("channel",))
        assert values(root, "buyers", grain) == by_hand(root, period_sql(grain), dims=("region",))
    growth_by_hand = query(root, """
        WITH m AS (SELECT make_date(year(ordered_at), month(ordered_at), 1) AS p, count(DISTINCT customer_id) AS b
                   FROM main.orders GROUP BY 1)
        SELECT p, CAST(b AS DOUBLE) / lag(b) OVER (ORDER BY p) - 1 FROM m ORDER BY p""")
    assert query(root, "SELECT period_start, value FROM kpi.kpi_values WHERE name = 'buyers_growth' "
                       "AND dimension = '' ORDER BY 1") == growth_by_hand


# --- 4. incremental runs -------------------------------------------------------------------------------------

INCREMENTAL_KPIS = kpis_yml(
    kpi("buyers", OVER_ORDERS + "grain: [day, week, month]\nmeasure: count(distinct customer_id)\n"
                                "dimensions: [region, channel]\ntarget: 10\n"),
    kpi("completed_share", OVER_ORDERS + "grain: [week, month]\nratio:\n"
                                         "  numerator: count(distinct customer_id) filter (where status = 'completed')\n"
                                         "  denominator: count(distinct customer_id)\n"
                                         "filter: amount > 50\ndimensions: [region]\ntarget: 0.5\n"),
    kpi("revenue", OVER_ORDERS + "grain: [day, week, month]\nmeasure: sum(amount)\ndimensions: [region]\n"
                                 "target: 1000\n"),
)


@pytest.mark.parametrize("late_rows", [None, "30 days"])
def test_incremental_after_late_and_new_rows_equals_full_refresh(tmp_path, late_rows):
    """Orders to 2025-05-20; then late orders into April and May (inside the 40-day lookback) and new ones up to
    2025-06-10 (past a 63-day word's end, 2025-05-27). The incremental run writes what --full-refresh writes."""
    root = write(tmp_path / "inc", INCREMENTAL_KPIS, lookback="'40 days'", late_rows=late_rows)
    load_orders(root, dt.date(2025, 1, 1), dt.date(2025, 5, 20))
    ok(first := run(root))
    took_masks(first)
    late = make_orders(dt.date(2025, 4, 28), dt.date(2025, 5, 20), seed=11, first_id=100_000, per_day=2)
    new = make_orders(dt.date(2025, 5, 20), dt.date(2025, 6, 10), seed=12, first_id=200_000)
    insert_orders(root, late + new)
    execute(root, "UPDATE main.orders SET customer_id = NULL WHERE order_id >= 100000 AND order_id % 5 = 0",
            "UPDATE main.orders SET region = 'late' WHERE order_id BETWEEN 100000 AND 100010")
    ok(second := run(root))
    took_masks(second)
    assert {kpi_result(second, n).mode for n in ("buyers", "completed_share")} == {"incremental"}
    # 40 days back from each grain's last period: the late rows (from 2025-04-28) lie in the recomputed ones
    since = kpi_result(second, "buyers").since
    assert since == {"day": "2025-04-09", "week": "2025-04-07", "month": "2025-03-01"}
    full = write(tmp_path / "full", INCREMENTAL_KPIS, lookback="'40 days'", late_rows=late_rows)
    shutil.copy(root / "wh.duckdb", full / "wh.duckdb")
    ok(refreshed := run(full, full_refresh=True))
    took_masks(refreshed)
    for name in ("kpi_values", "kpi_status"):
        assert table(root, name) == table(full, name), name
    # the periods before the recompute range were kept from the first run, not written again
    kept = query(root, "SELECT DISTINCT grain, run_id FROM kpi.kpi_values WHERE name = 'buyers' "
                       "AND period_start < DATE '2025-03-01' ORDER BY ALL")
    assert kept == [(g, first.run_id) for g in ("day", "month", "week")]
    # and both are the counts by hand, the late region included
    assert values(root, "buyers", "day") == by_hand(root, period_sql("day"))
    assert values(root, "buyers", "week") == by_hand(root, period_sql("week"))
    assert ("region", "late") in {(d, v) for _, d, v, _ in values(root, "buyers", "month")}
    # the ratio under a KPI filter with its own FILTER: both parts count only the rows of amount > 50
    for grain in ("week", "month"):
        num = by_hand(root, period_sql(grain), "CASE WHEN count(*) FILTER (WHERE amount > 50) > 0 THEN count(DISTINCT "
                                               "customer_id) FILTER (WHERE status = 'completed' AND amount > 50) END",
                      dims=("region",))
        den = by_hand(root, period_sql(grain), kpi_filtered("count(DISTINCT customer_id)", "amount > 50"), dims=("region",))
        expected = [(p, d, s, n / q if q else None, n, q) for (p, d, s, n), (*_, q) in zip(num, den)]
        assert values(root, "completed_share", grain,
                      "period_start, dimension, dimension_value, value, numerator, denominator") == expected, grain


def test_only_duckdb_counts_by_masks(tmp_path):
    """The masks are DuckDB's (dialects.DISTINCT_MASKS): the script compiled for DuckDB has them, those for the
    engines where they are unmeasured keep count(DISTINCT x)."""
    from kpimetrics import Project

    root = write(tmp_path, kpis_yml(kpi("buyers", OVER_ORDERS + "grain: month\nmeasure: count(distinct customer_id)\n"
                                                                "dimensions: [region]\ntarget: 10\n")))
    for dialect, masks in (("duckdb", True), ("postgres", False), ("spark", False), ("snowflake", False)):
        Project.load(root).compile(dialect=dialect)
        script = (root / "target" / "run.sql").read_text()
        assert ('_bits"' in script or "_bits`" in script) == masks, dialect
        assert ("COUNT(DISTINCT customer_id)" in script.replace("`", "")) == (not masks), dialect
