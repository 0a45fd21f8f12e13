"""KPI values against an independent oracle (tests/oracle_data.py).

    oracle: written from SPEC, not from the generator.

Two projects are run once per module on a deterministic data set:
  A: calendar timezone America/New_York, Monday weeks, calendar fiscal year; orders
     (TIMESTAMP), tickets (TIMESTAMPTZ, a July gap), points (exact values);
  B: UTC, Sunday weeks, fiscal year starting in April.
Every kpi_values row is compared with hand-written DuckDB SQL over the same source
tables (floats with math.isclose rel_tol=1e-9, counts exact), and a few figures are also
recomputed in plain Python from the generated rows, as a check on the oracle itself.
Targets and statuses are in test_values_targets.py.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import statistics

import pytest

import engines
import oracle_data as od

D = dt.date

# con_a / con_b (tests/engines.py): each project run once per engine of engines.VALUE_ENGINES, its
# output tables read back from the engine into the oracle's DuckDB connection.

NAMES_A = sorted(od.MEASURES_A) + list(od.DERIVED_A)
NAMES_B = sorted(od.MEASURES_B)
VALUE_COLS = ("period_end", "value", "numerator", "denominator")
RATIOS = {n for n, m in {**od.MEASURES_A, **od.MEASURES_B}.items() if m.num is not None}


def product_value(con, name, grain, period_start, dimension="", dimension_value=None):
    rows = con.execute(
        "select value from kpi.kpi_values where name = ? and grain = ? and period_start = ? and dimension = ? "
        "and dimension_value is not distinct from ?", [name, grain, period_start, dimension, dimension_value]).fetchall()
    assert len(rows) == 1, f"{name} {grain} {period_start} {dimension}={dimension_value}: {len(rows)} rows"
    return rows[0][0]


# --- the runs ---------------------------------------------------------------------------

def test_value_columns_are_double(oracle_a):
    """In the engine itself, as a BI tool sees the table."""
    adapter = oracle_a.connect()
    try:
        types = engines.column_types(adapter, oracle_a.engine.output_schema, "kpi_values")
    finally:
        adapter.close()
    name = oracle_a.engine.name
    assert all(engines.is_type(name, types[c], "DOUBLE") for c in ("value", "numerator", "denominator")), types
    assert all(engines.is_type(name, types[c], "DATE") for c in ("period_start", "period_end")), types


# --- every value against the oracle ------------------------------------------------------

def _check_totals(con, name):
    """Totals: exactly the oracle's periods (first..last period of the model), equal values."""
    exp = od.fetch(con, "oracle_values", name, VALUE_COLS, "dimension = ''")
    act = od.fetch(con, "kpi.kpi_values", name, VALUE_COLS, "dimension = ''")
    assert exp, f"the oracle has no rows for {name}"
    extra_grains = {k[0] for k in act} - {k[0] for k in exp}
    assert extra_grains <= set(od.INPUT_GRAINS_A.get(name, ())), f"unexpected grains {extra_grains}"
    if extra_grains:  # computed as a derived KPI's input: then the values must be right too
        inputs = od.fetch(con, "oracle_input_values", name, VALUE_COLS)
        assert sorted(inputs) == sorted(k for k in act if k[0] in extra_grains)
        assert not od.diff_rows(inputs, act, VALUE_COLS[:2], name)
        act = {k: v for k, v in act.items() if k[0] not in extra_grains}
    assert {k[0] for k in exp} == {k[0] for k in act}, "grains differ"
    assert sorted(exp) == sorted(act), (
        f"{name}: periods differ: missing {sorted(set(exp) - set(act))[:5]}, extra {sorted(set(act) - set(exp))[:5]}")
    cols = VALUE_COLS[:2]
    problems = od.diff_rows(exp, act, cols, name)
    if name in RATIOS:  # numerator and denominator where the denominator is not 0
        exp_nd = {k: v for k, v in exp.items() if v["denominator"]}
        problems += od.diff_rows(exp_nd, act, ("numerator", "denominator"), name)
    assert not problems, "\n".join(problems)


def _check_slices(con, name):
    """Slices: every slice row of the oracle (a slice value in a period where it has rows that
    pass the filter) with its value. The product may also write a row for a slice value that has
    model rows but no filtered rows in a period (SPEC is not explicit); such a row must carry no value."""
    exp = od.fetch(con, "oracle_values", name, VALUE_COLS, "dimension <> ''")
    act = od.fetch(con, "kpi.kpi_values", name, VALUE_COLS, "dimension <> ''")
    assert {k[2] for k in exp} == {k[2] for k in act}, "dimensions differ"
    problems = od.diff_rows(exp, act, VALUE_COLS[:2], name)
    extra = {k: v for k, v in act.items() if k not in exp and v["value"] is not None}
    problems += [f"{name} {k}: unexpected slice row with value {v['value']}" for k, v in list(extra.items())[:10]]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", NAMES_A)
def test_values_a(con_a, name):
    _check_totals(con_a, name)


@pytest.mark.parametrize("name", NAMES_B)
def test_values_b(con_b, name):
    _check_totals(con_b, name)


SLICED_A = sorted(n for n, m in od.MEASURES_A.items() if m.dims) + sorted(od.DERIVED_DIMS)


@pytest.mark.parametrize("name", SLICED_A)
def test_slice_values_a(con_a, name):
    _check_slices(con_a, name)


def test_no_slices_where_none_are_asked(con_a, con_b):
    sliced = set(SLICED_A)
    for con in (con_a, con_b):
        names = {r[0] for r in con.execute("select distinct name from kpi.kpi_values where dimension <> ''").fetchall()}
        assert names <= sliced, names - sliced


def test_null_dimension_value_is_the_null_slice(con_a):
    # orders with region NULL -> slice '(null)'; the total has dimension '' and dimension_value NULL
    rows = con_a.execute("select count(*) from kpi.kpi_values where name = 'revenue' and dimension = 'region' "
                         "and dimension_value = '(null)' and value is not null").fetchone()[0]
    assert rows > 0
    assert con_a.execute("select count(*) from kpi.kpi_values where dimension = '' and dimension_value is not null"
                         ).fetchone()[0] == 0
    assert con_a.execute("select count(*) from kpi.kpi_values where dimension <> '' and dimension_value is null"
                         ).fetchone()[0] == 0
    # points of 2026-01 have grp NULL
    assert product_value(con_a, "st_high", "month", D(2026, 1, 1), "grp", "(null)") == 7.0


def test_slices_are_sparse(con_a):
    # grp 'b' has no points in January, March, May, June, October, November 2025
    months = {r[0] for r in con_a.execute(
        "select period_start from kpi.kpi_values where name = 'st_high' and grain = 'month' and dimension = 'grp' "
        "and dimension_value = 'b'").fetchall()}
    assert months == {D(2025, 2, 1), D(2025, 4, 1), D(2025, 7, 1), D(2025, 9, 1), D(2025, 12, 1), D(2026, 2, 1)}


def test_the_oracle_is_not_vacuous(con_a, con_b):
    """The data set really exercises what it is meant to (guards the oracle, not the product)."""
    q = "select count(*) from oracle_values where name = ? and grain = ? and dimension = '' and value is null"
    assert con_a.execute(q, ["returned_orders", "month"]).fetchone()[0] >= 6  # even months
    assert con_a.execute(q, ["csat_rate", "month"]).fetchone()[0] == 2  # July (gap), September (no csat)
    assert con_a.execute(q, ["orders_per_priced", "day"]).fetchone()[0] >= 1  # 2025-06-15
    assert con_a.execute(q, ["revenue_growth", "month"]).fetchone()[0] == 1  # the first month only
    assert con_a.execute(q, ["returned_lag", "month"]).fetchone()[0] >= 7
    # windows of count distinct are not sums of the per-period counts
    t3 = dict(con_a.execute("select period_start, value from oracle_values where name = 'customers_t3' "
                            "and grain = 'month'").fetchall())
    m = dict(con_a.execute("select period_start, value from oracle_values where name = 'customers' "
                           "and grain = 'month' and dimension = ''").fetchall())
    assert t3[D(2025, 6, 1)] < m[D(2025, 4, 1)] + m[D(2025, 5, 1)] + m[D(2025, 6, 1)]


# --- a few figures recomputed in plain Python from the generated rows --------------------

ORDERS = od._orders_rows()  # (order_id, customer_id, ordered_at, region, channel, amount, discount, status)
TIMED = [r for r in ORDERS if r[2] is not None]


def _rows_between(lo: dt.datetime, hi: dt.datetime):
    return [r for r in TIMED if lo <= r[2] < hi]


def _dt(d: D) -> dt.datetime:
    return dt.datetime.combine(d, dt.time())


def test_python_monthly_counts_and_sums(con_a, con_b):
    month = D(2025, 1, 1)
    while month <= D(2026, 3, 1):
        nxt = D(month.year + month.month // 12, month.month % 12 + 1, 1)
        rows = _rows_between(_dt(month), _dt(nxt))
        assert product_value(con_b, "b_count", "month", month) == len(rows)
        returned = sum(1 for r in rows if r[7] == "returned")
        assert product_value(con_a, "returned_orders", "month", month) == (returned or None)
        assert product_value(con_a, "returned_filled", "month", month) == returned
        kept = [r[5] for r in rows if r[7] != "returned" and r[5] is not None]
        assert math.isclose(product_value(con_a, "revenue", "month", month), sum(kept), rel_tol=1e-9)
        amounts = [r[5] for r in rows if r[5] is not None]
        assert math.isclose(product_value(con_a, "median_amount", "month", month), statistics.median(amounts),
                            rel_tol=1e-9)
        month = nxt


def test_plain_timestamps_are_not_shifted_by_the_calendar_timezone(con_a):
    # 2025-04-01 00:00:00 (TIMESTAMP) is April 1st even with calendar.timezone America/New_York
    day_rows = _rows_between(_dt(D(2025, 4, 1)), _dt(D(2025, 4, 2)))
    assert any(r[2] == dt.datetime(2025, 4, 1) for r in day_rows)
    assert product_value(con_a, "orders_per_priced", "day", D(2025, 4, 1)) == len(day_rows) / sum(
        1 for r in day_rows if r[5] is not None)


def test_null_times_are_in_no_period(con_a, con_b):
    total = con_b.execute("select sum(value) from kpi.kpi_values where name = 'b_count' and grain = 'year'").fetchone()[0]
    assert total == len(TIMED) == len(ORDERS) - 4
    assert con_a.execute("select sum(value) from kpi.kpi_values where name = 'ticket_count' and grain = 'month'"
                         ).fetchone()[0] == con_a.execute("select count(opened_at) from tickets").fetchone()[0]
    # the NULL-time point (v = 100) is nowhere
    assert con_a.execute("select max(value) from kpi.kpi_values where name = 'st_high'").fetchone()[0] < 100


def test_python_count_distinct_windows(con_a, con_b):
    def distinct(lo, hi):
        return len({r[1] for r in _rows_between(_dt(lo), _dt(hi))}) or None

    # trailing 3 months: April..June 2025, from rows
    assert product_value(con_a, "customers_t3", "month", D(2025, 6, 1)) == distinct(D(2025, 4, 1), D(2025, 7, 1))
    # trailing 3 weeks (Monday weeks) ending with the week of 2025-03-31
    assert product_value(con_a, "customers_t3", "week", D(2025, 3, 31)) == distinct(D(2025, 3, 17), D(2025, 4, 7))
    # first periods use whatever rows exist
    assert product_value(con_a, "customers_t3", "month", D(2025, 1, 1)) == distinct(D(2025, 1, 1), D(2025, 2, 1))
    # YTD, Monday weeks: the week of 2024-12-30 belongs to 2024 (its start date); the week of
    # 2025-12-29 belongs to 2025 and reaches into 2026
    assert product_value(con_a, "customers_ytd", "week", D(2024, 12, 30)) == distinct(D(2025, 1, 1), D(2025, 1, 6))
    assert product_value(con_a, "customers_ytd", "week", D(2025, 1, 6)) == distinct(D(2025, 1, 6), D(2025, 1, 13))
    assert product_value(con_a, "customers_ytd", "week", D(2025, 12, 29)) == distinct(D(2025, 1, 6), D(2026, 1, 5))
    assert product_value(con_a, "customers_ytd", "week", D(2026, 1, 5)) == distinct(D(2026, 1, 5), D(2026, 1, 12))
    assert product_value(con_a, "customers_ytd", "quarter", D(2025, 10, 1)) == distinct(D(2025, 1, 1), D(2026, 1, 1))
    # project B: fiscal quarters from April, Sunday weeks. The week 2025-06-29 .. 2025-07-05
    # belongs to the fiscal quarter April..June (its start date); the next week starts a quarter
    assert product_value(con_b, "b_cust_qtd", "week", D(2025, 6, 29)) == distinct(D(2025, 4, 6), D(2025, 7, 6))
    assert product_value(con_b, "b_cust_qtd", "week", D(2025, 7, 6)) == distinct(D(2025, 7, 6), D(2025, 7, 13))
    assert product_value(con_b, "b_cust_qtd", "month", D(2025, 8, 1)) == distinct(D(2025, 7, 1), D(2025, 9, 1))
    # the fiscal year starts in April: May counts from April 1st, March from the April before
    assert product_value(con_b, "b_cust_fytd", "month", D(2025, 5, 1)) == distinct(D(2025, 4, 1), D(2025, 6, 1))
    assert product_value(con_b, "b_cust_fytd", "month", D(2025, 3, 1)) == distinct(D(2024, 4, 1), D(2025, 4, 1))
    assert product_value(con_b, "b_cust_t2", "week", D(2025, 6, 29)) == distinct(D(2025, 6, 22), D(2025, 7, 6))
    # the fiscal year 2025-04-01 .. 2026-04-01: the Sunday week 2025-03-30 belongs to the previous one
    ytd = [r[5] for r in _rows_between(_dt(D(2024, 4, 1)), _dt(D(2025, 4, 6))) if r[5] is not None]
    assert math.isclose(product_value(con_b, "b_rev_ytd", "week", D(2025, 3, 30)), sum(ytd), rel_tol=1e-9)
    ytd = [r[5] for r in _rows_between(_dt(D(2025, 4, 6)), _dt(D(2025, 4, 13))) if r[5] is not None]
    assert math.isclose(product_value(con_b, "b_rev_ytd", "week", D(2025, 4, 6)), sum(ytd), rel_tol=1e-9)


# --- grains and periods -------------------------------------------------------------------

def _periods(con, name, grain):
    return [r for r in con.execute(
        "select period_start, period_end from kpi.kpi_values where name = ? and grain = ? and dimension = '' "
        "order by period_start", [name, grain]).fetchall()]


def test_week_starts(con_a, con_b):
    weeks_a = _periods(con_a, "customers", "week")
    weeks_b = _periods(con_b, "b_count", "week")
    assert {s.weekday() for s, _ in weeks_a} == {0}  # Monday
    assert {s.weekday() for s, _ in weeks_b} == {6}  # Sunday
    assert weeks_a[0][0] == D(2024, 12, 30) and weeks_b[0][0] == D(2024, 12, 29)
    assert weeks_a[-1][0] == D(2026, 3, 30) and weeks_b[-1][0] == D(2026, 3, 29)
    assert all(e - s == dt.timedelta(days=7) for s, e in weeks_a + weeks_b)
    # contiguous: every week from the first to the last
    assert all(weeks_a[i][1] == weeks_a[i + 1][0] for i in range(len(weeks_a) - 1))


def test_fiscal_quarters_and_years(con_a, con_b):
    assert _periods(con_b, "b_count", "quarter") == [
        (D(2025, 1, 1), D(2025, 4, 1)), (D(2025, 4, 1), D(2025, 7, 1)), (D(2025, 7, 1), D(2025, 10, 1)),
        (D(2025, 10, 1), D(2026, 1, 1)), (D(2026, 1, 1), D(2026, 4, 1))]
    assert _periods(con_b, "b_count", "year") == [(D(2024, 4, 1), D(2025, 4, 1)), (D(2025, 4, 1), D(2026, 4, 1))]
    assert _periods(con_a, "revenue", "year") == [(D(2025, 1, 1), D(2026, 1, 1)), (D(2026, 1, 1), D(2027, 1, 1))]
    # the fiscal year FY2024 (April 2024 to March 2025) holds only the rows from January to March 2025
    assert product_value(con_b, "b_count", "year", D(2024, 4, 1)) == len(_rows_between(_dt(D(2025, 1, 1)), _dt(D(2025, 4, 1))))


def test_every_period_has_a_row(con_a):
    days = _periods(con_a, "revenue", "day")
    assert len(days) == 455 and days[0][0] == D(2025, 1, 1) and days[-1][0] == D(2026, 3, 31)
    months = _periods(con_a, "returned_orders", "month")
    assert len(months) == 15  # even months have rows but none that pass the filter: NULL, still a row
    assert product_value(con_a, "returned_orders", "month", D(2025, 2, 1)) is None
    assert product_value(con_a, "returned_filled", "month", D(2025, 2, 1)) == 0
    # a filter that empties the first and the last periods: they still have rows, without a value
    mid = con_a.execute("select period_start, value from kpi.kpi_values where name = 'mid_orders' "
                        "and grain = 'month' order by period_start").fetchall()
    assert [p for p, _ in mid] == [p for p, _ in months]
    assert [p for p, v in mid if v is not None] == [D(2025, 6, 1), D(2025, 7, 1), D(2025, 8, 1)]
    assert _periods(con_a, "mid_orders", "week") == _periods(con_a, "customers", "week")


def test_date_time_column(con_a):
    # ship_date is a DATE: taken as it is, whatever the calendar timezone
    ship = [r[8] for r in ORDERS if r[8] is not None]
    assert _periods(con_a, "shipped", "day")[0][0] == min(ship)
    assert _periods(con_a, "shipped", "day")[-1][0] == max(ship)
    for day in (min(ship), D(2025, 3, 31), D(2025, 4, 1), D(2026, 1, 1), max(ship)):
        n = sum(1 for d in ship if d == day)
        assert product_value(con_a, "shipped", "day", day) == (n or None)


def test_the_53_week_iso_year_2026(con_a):
    """ISO 2026 has 53 weeks: week 1 starts on 2025-12-29 and week 53 on 2026-12-28, reaching into 2027."""
    assert D(2025, 12, 29).isocalendar()[:2] == (2026, 1) and D(2027, 1, 3).isocalendar()[:2] == (2026, 53)
    visits = {r[0].date(): r[1] for r in od._visits_rows() if r[0] is not None}
    weeks = [s for s, _ in _periods(con_a, "iso_visits", "week")]
    assert weeks[0] == D(2025, 12, 22) and weeks[-1] == D(2027, 1, 4)
    assert all(b - a == dt.timedelta(days=7) for a, b in zip(weeks, weeks[1:]))
    # Monday weeks of 2026 by their start date: 52, from 2026-01-05; ISO week 1 belongs to 2025
    assert len([w for w in weeks if w.year == 2026]) == 52
    for start in (D(2025, 12, 29), D(2026, 12, 28)):  # the two weeks across a year end: whole weeks
        assert product_value(con_a, "iso_visits", "week", start) == 7
    assert product_value(con_a, "iso_visits", "year", D(2026, 1, 1)) == 365
    # year to date by week: the week of 2026-12-28 is 2026's last, and counts its days in 2027
    ytd = sum(n for d, n in visits.items() if D(2026, 1, 5) <= d < D(2027, 1, 4))
    assert product_value(con_a, "iso_n_ytd", "week", D(2026, 12, 28)) == ytd
    assert product_value(con_a, "iso_n_ytd", "week", D(2027, 1, 4)) == sum(
        n for d, n in visits.items() if d >= D(2027, 1, 4))
    # INTEGER / INTEGER is not integer division: the mean of n over the week
    week = [n for d, n in visits.items() if D(2026, 12, 28) <= d < D(2027, 1, 4)]
    assert product_value(con_a, "iso_mean_n", "week", D(2026, 12, 28)) == sum(week) / 7 != sum(week) // 7


# --- TIMESTAMPTZ in the calendar timezone -------------------------------------------------

def test_timestamptz_is_cut_in_the_calendar_timezone(con_a, con_b):
    months_ny = [s for s, _ in _periods(con_a, "ticket_count", "month")]
    months_utc = [s for s, _ in _periods(con_b, "b_tickets_utc", "month")]
    # 2025-01-01 03:00 UTC is 2024-12-31 22:00 in New York: the range starts a month earlier there
    assert months_ny[0] == D(2024, 12, 1) and months_utc[0] == D(2025, 1, 1)
    assert product_value(con_a, "ticket_count", "month", D(2024, 12, 1)) == 1
    assert product_value(con_a, "ticket_count", "day", D(2024, 12, 31)) == 1
    # July has no ticket in New York time (the gap): a row, no value, unless fill: zero
    assert product_value(con_a, "ticket_count", "month", D(2025, 7, 1)) is None
    assert product_value(con_a, "ticket_count_filled", "month", D(2025, 7, 1)) == 0
    assert product_value(con_a, "csat_rate", "month", D(2025, 7, 1)) is None
    # ... but in UTC the ticket of 2025-06-30 23:00 EDT falls on July 1st
    assert product_value(con_b, "b_tickets_utc", "month", D(2025, 7, 1)) == 1
    assert product_value(con_b, "b_tickets_utc", "day", D(2025, 7, 1)) == 1
    # a day of the gap, with fill: zero
    assert product_value(con_a, "ticket_count_filled", "day", D(2025, 7, 15)) == 0
    # the same for a count distinct, which counts no rows of its own
    assert product_value(con_a, "ticket_customers_filled", "month", D(2025, 7, 1)) == 0
    assert product_value(con_a, "ticket_customers_filled", "day", D(2025, 7, 15)) == 0
    assert product_value(con_a, "ticket_customers_filled", "month", D(2025, 8, 1)) > 0
    assert product_value(con_a, "ticket_count", "day", D(2025, 7, 15)) is None


def test_ratio_with_zero_denominator_has_no_value(con_a):
    # September: tickets, but none with a csat
    assert product_value(con_a, "csat_rate", "month", D(2025, 9, 1)) is None
    # 2025-06-15: orders, every amount NULL: count(amount) = 0
    assert product_value(con_a, "returned_share", "day", od.ALL_NULL_AMOUNT_DAY) is None
    assert product_value(con_a, "orders_per_priced", "day", od.ALL_NULL_AMOUNT_DAY) is None
    assert product_value(con_a, "amount_per_order", "day", od.ALL_NULL_AMOUNT_DAY) is None
    assert product_value(con_a, "avg_amount", "day", od.ALL_NULL_AMOUNT_DAY) is None


# --- derived KPIs ---------------------------------------------------------------------------

def test_derived_lags_by_calendar_period(con_a):
    rev = dict(con_a.execute("select period_start, value from kpi.kpi_values where name = 'revenue' "
                             "and grain = 'month' and dimension = ''").fetchall())
    months = sorted(rev)
    for i, m in enumerate(months):
        g = product_value(con_a, "revenue_growth", "month", m)
        l2 = product_value(con_a, "revenue_lag2", "month", m)
        assert (g is None) if i == 0 else math.isclose(g, rev[m] / rev[months[i - 1]] - 1, rel_tol=1e-9)
        assert (l2 is None) if i < 2 else l2 == rev[months[i - 2]]
    # lag across a period without a value is NULL: returned_orders has no value in even months
    assert product_value(con_a, "returned_lag", "month", D(2025, 3, 1)) is None
    assert product_value(con_a, "returned_lag", "month", D(2025, 2, 1)) == product_value(
        con_a, "returned_orders", "month", D(2025, 1, 1))
    # ... and across the July gap of the tickets
    assert product_value(con_a, "tickets_lag", "month", D(2025, 8, 1)) is None
    assert product_value(con_a, "tickets_growth", "month", D(2025, 8, 1)) is None
    assert product_value(con_a, "tickets_growth", "month", D(2025, 7, 1)) is None


# --- catalog ----------------------------------------------------------------------------------

def test_catalog(con_a):
    cat = {r[0]: r[1:] for r in con_a.execute(
        "select name, kind, grains, tags, owner, strategy, priority, direction from kpi.kpi_catalog").fetchall()}
    assert set(cat) == set(NAMES_A)
    kind, grains, tags, owner, strategy, priority, direction = cat["std_points"]
    assert kind == "standard" and json.loads(grains) == ["month", "quarter"]
    assert json.loads(tags) == ["ops", "weekly_review"] and strategy is None and direction == "lower_is_better"
    kind, grains, tags, owner, strategy, priority, direction = cat["revenue"]
    assert kind == "kpi" and json.loads(grains) == ["day", "week", "month", "quarter", "year"]
    assert json.loads(tags) == [] and (owner, strategy, priority) == ("lead@example.com", "s_orders", "correctness")
    assert direction == "higher_is_better"
    assert json.loads(cat["revenue_lag2"][1]) == ["month"]
    assert all(k == "kpi" for n, (k, *_) in cat.items() if n != "std_points")
