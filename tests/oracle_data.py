"""The independent oracle for the value / target / status tests.

    oracle: written from SPEC, not from the generator.

Everything in here was derived from /work/shared/SPEC.md (sections 2 and 5) by hand;
none of it was copied from, or checked against, kpimetrics/sqlgen.py, targets.py or
runner.py.  The product computes the output tables; this module computes the same
figures with its own, deliberately naive DuckDB SQL over the same source tables:

* period starts are computed with plain date arithmetic (no `date_trunc`), weeks with
  `dayofweek`, fiscal quarters/years by shifting the month index;
* TIMESTAMPTZ values are converted with an explicit `timezone('America/New_York', ts)`
  (the oracle never relies on the session TimeZone the product sets);
* windows are correlated sub-queries over the raw rows (never sums of per-period
  partials), so a count distinct over a window really is computed from rows;
* targets, thresholds, statuses, attainment and previous values are written as SQL
  straight from the formulas of SPEC section 2 "Targets and status, precisely".

The module also builds the deterministic test data set (orders, tickets, points, visits) and the
two test projects (A: timezone America/New_York, Monday weeks, calendar fiscal year;
B: UTC, Sunday weeks, fiscal year starting in April).
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from helpers_projects import write_project

AS_OF = dt.date(2026, 3, 15)
NY = "America/New_York"

# --------------------------------------------------------------------------------------
# 1. The data set
# --------------------------------------------------------------------------------------

ORDERS_START = dt.datetime(2025, 1, 1)
ALL_NULL_AMOUNT_DAY = dt.date(2025, 6, 15)  # every order of that day has amount NULL


def _orders_rows() -> list[tuple]:
    """~450 deterministic orders, 2025-01-01 .. 2026-03-31 (plain TIMESTAMP)."""
    rng = random.Random(20250101)
    rows: list[tuple] = []
    oid = 0
    for day in range(455):
        d = ORDERS_START + dt.timedelta(days=day)
        if d.date() == ALL_NULL_AMOUNT_DAY:
            continue
        for _ in range(rng.choice([0, 1, 1, 2])):
            oid += 1
            t = d + dt.timedelta(seconds=rng.randrange(86400))
            customer = rng.randrange(1, 41)
            region = rng.choice(["north", "south", "east", "west", None])
            channel = rng.choice(["web", "store", "phone"])
            amount = None if rng.random() < 0.08 else rng.randrange(20, 800) / 4
            discount = rng.randrange(0, 20) / 4
            # returns only in odd months: even months have rows but none that pass
            # `status = 'returned'` (value NULL / no_data, not 0)
            if t.month % 2 == 1 and rng.random() < 0.3:
                status = "returned"
            else:
                status = rng.choice(["complete", "shipped"])
            rows.append((oid, customer, t, region, channel, amount, discount, status))
    # rows with a NULL time: in no period (amounts large, so they would show)
    for k in range(4):
        oid += 1
        rows.append((oid, 41 + k, None, "north", "web", 10000.0, 0.0, "returned" if k % 2 else "complete"))
    edge = [
        # the exact ends of the range
        (dt.datetime(2025, 1, 1, 0, 0, 0), 1, "north", "web", 10.0, "complete"),
        (dt.datetime(2026, 3, 31, 23, 59, 59), 2, "south", "store", 20.0, "complete"),
        # plain TIMESTAMPs are taken as they are, even with a non-UTC calendar timezone
        (dt.datetime(2025, 3, 31, 23, 59, 59), 3, None, "web", 30.0, "returned"),
        (dt.datetime(2025, 4, 1, 0, 0, 0), 4, None, "phone", 40.0, "complete"),
        (dt.datetime(2025, 12, 31, 23, 30, 0), 5, "east", "web", 50.0, "complete"),
        (dt.datetime(2026, 1, 1, 0, 10, 0), 6, "east", "web", 60.0, "complete"),
        # the Monday week 2025-03-31 .. 2025-04-06 lies across a month end
        (dt.datetime(2025, 4, 2, 12, 0, 0), 7, "west", "store", 70.0, "complete"),
        (dt.datetime(2025, 4, 5, 12, 0, 0), 8, "west", "store", 80.0, "returned"),
        # fiscal quarter / Sunday week across 2025-06-29 .. 2025-07-05
        (dt.datetime(2025, 7, 1, 9, 0, 0), 9, "north", "phone", 90.0, "complete"),
        (dt.datetime(2025, 7, 4, 9, 0, 0), 39, "north", "phone", 95.0, "complete"),
        # a day where every amount is NULL: count(amount) = 0 there
        (dt.datetime.combine(ALL_NULL_AMOUNT_DAY, dt.time(10)), 10, "south", "web", None, "complete"),
        (dt.datetime.combine(ALL_NULL_AMOUNT_DAY, dt.time(15)), 11, None, "web", None, "shipped"),
    ]
    for t, customer, region, channel, amount, status in edge:
        oid += 1
        rows.append((oid, customer, t, region, channel, amount, 0.5, status))
    # ship_date: a plain DATE time column (NULL for every tenth order and for NULL times)
    return [r + ((r[2].date() + dt.timedelta(days=r[0] % 3)) if r[2] is not None and r[0] % 10 else None,)
            for r in rows]


def _tickets_rows() -> list[tuple]:
    """Support tickets with a TIMESTAMPTZ `opened_at`, given as text with an explicit offset.

    Random tickets are laid out on New York local days of 2025, none in July (New York
    time): July is a gap with no rows at all. No ticket of September has a csat, so the
    csat ratio's denominator is 0 there.
    """
    rng = random.Random(424242)
    rows: list[tuple] = []
    tid = 0
    for day in range(365):
        d = dt.date(2025, 1, 1) + dt.timedelta(days=day)
        if d.month == 7:
            continue
        for _ in range(rng.choice([0, 1, 2, 3])):
            tid += 1
            secs = rng.randrange(86400)
            local = dt.datetime.combine(d, dt.time()) + dt.timedelta(seconds=secs)
            # avoid the hours that do not exist / are ambiguous around DST changes
            if local.hour in (1, 2):
                local = local.replace(hour=5)
            csat = None if (d.month == 9 or rng.random() < 0.25) else rng.randint(1, 5)
            rows.append((tid, rng.randrange(1, 30), ("local", local), rng.choice(["chat", "email", "phone"]),
                         float(rng.randrange(10, 3600)), csat))
    edge = [
        # 2024-12-31 22:00 in New York: the New York range starts in December 2024
        ("2025-01-01 03:00:00+00", "chat", 100.0, 5),
        # 2025-03-31 23:30 EDT: March in New York, April in UTC
        ("2025-04-01 03:30:00+00", "chat", 200.0, 5),
        # 2025-04-30 22:00 EDT: April in New York, May in UTC
        ("2025-05-01 02:00:00+00", "email", 300.0, 1),
        # 2025-06-30 23:00 EDT: June in New York, July (the gap) in UTC
        ("2025-07-01 03:00:00+00", "phone", 400.0, 4),
        # 2025-08-01 00:30 EDT: August either way
        ("2025-08-01 04:30:00+00", "phone", 500.0, 2),
    ]
    for ts, channel, frs, csat in edge:
        tid += 1
        rows.append((tid, 7, ("utc", ts), channel, frs, csat))
    tid += 1
    rows.append((tid, 8, None, "chat", 50.0, 5))  # NULL time
    return rows


# points: one chosen value per month, for exact status tests (values exact in binary)
POINTS_ROWS: list[tuple] = [
    (dt.datetime(2025, 1, 10), 8.0, "a"),
    (dt.datetime(2025, 2, 10), 3.0, "a"), (dt.datetime(2025, 2, 11), 3.0, "b"),
    (dt.datetime(2025, 3, 10), 6.5, "a"),
    (dt.datetime(2025, 4, 10), 5.5, "b"),
    (dt.datetime(2025, 5, 10), 10.0, "a"),
    (dt.datetime(2025, 6, 10), 0.0, "a"),
    (dt.datetime(2025, 7, 10), 4.75, "a"), (dt.datetime(2025, 7, 20), 4.75, "b"),
    (dt.datetime(2025, 8, 10), None, "a"),
    (dt.datetime(2025, 9, 10), 10.5, "b"),
    (dt.datetime(2025, 10, 10), 12.0, "a"),
    (dt.datetime(2025, 11, 10), -2.0, "a"),
    (dt.datetime(2025, 12, 10), 4.0, "b"),
    (dt.datetime(2026, 1, 10), 7.0, None),
    (dt.datetime(2026, 2, 10), 8.0, "b"),
    (dt.datetime(2026, 3, 10), 6.0, "a"),
    (None, 100.0, "a"),
]
# the monthly totals of POINTS_ROWS, by hand
POINTS_MONTHLY = {
    dt.date(2025, 1, 1): 8.0, dt.date(2025, 2, 1): 6.0, dt.date(2025, 3, 1): 6.5,
    dt.date(2025, 4, 1): 5.5, dt.date(2025, 5, 1): 10.0, dt.date(2025, 6, 1): 0.0,
    dt.date(2025, 7, 1): 9.5, dt.date(2025, 8, 1): None, dt.date(2025, 9, 1): 10.5,
    dt.date(2025, 10, 1): 12.0, dt.date(2025, 11, 1): -2.0, dt.date(2025, 12, 1): 4.0,
    dt.date(2026, 1, 1): 7.0, dt.date(2026, 2, 1): 8.0, dt.date(2026, 3, 1): 6.0,
}


# visits: one row a day across the 53-week ISO year 2026 (ISO week 1 starts on 2025-12-29, week 53
# on 2026-12-28 and reaches into 2027); an INTEGER measure (integer division) and a NULL kind
VISITS_FIRST, VISITS_LAST = dt.date(2025, 12, 26), dt.date(2027, 1, 6)


def _visits_rows() -> list[tuple]:
    days = (VISITS_LAST - VISITS_FIRST).days + 1
    rows = [(dt.datetime.combine(VISITS_FIRST + dt.timedelta(days=i), dt.time(12)), i % 5 + 1, ("x", "y", None)[i % 3])
            for i in range(days)]
    return rows + [(None, 1000, "x")]


def load_data(db_path: Path) -> None:
    """Create main.orders, main.tickets, main.points and main.visits in the DuckDB file."""
    con = duckdb.connect(str(db_path))
    try:
        con.execute("""create table orders (order_id integer, customer_id integer, ordered_at timestamp,
                       region varchar, channel varchar, amount double, discount double, status varchar, ship_date date)""")
        con.executemany("insert into orders values (?, ?, ?, ?, ?, ?, ?, ?, ?)", _orders_rows())
        con.execute("""create temp table tickets_raw (ticket_id integer, customer_id integer, local_ts timestamp,
                       utc_text varchar, channel varchar, first_response_seconds double, csat integer)""")
        raw = []
        for tid, cust, when, channel, frs, csat in _tickets_rows():
            local = when[1] if when and when[0] == "local" else None
            utc = when[1] if when and when[0] == "utc" else None
            raw.append((tid, cust, local, utc, channel, frs, csat))
        con.executemany("insert into tickets_raw values (?, ?, ?, ?, ?, ?, ?)", raw)
        con.execute("""create table tickets (ticket_id integer, customer_id integer, opened_at timestamptz,
                       channel varchar, first_response_seconds double, csat integer)""")
        # a local New York wall-clock time -> the instant (timezone(zone, TIMESTAMP) -> TIMESTAMPTZ)
        con.execute(f"""insert into tickets
            select ticket_id, customer_id,
                   case when local_ts is not null then timezone('{NY}', local_ts)
                        when utc_text is not null then cast(utc_text as timestamptz) end,
                   channel, first_response_seconds, csat
            from tickets_raw order by ticket_id""")
        con.execute("create table points (pt_at timestamp, v double, grp varchar)")
        con.executemany("insert into points values (?, ?, ?)", POINTS_ROWS)
        con.execute("create table visits (seen_at timestamp, n integer, kind varchar)")
        con.executemany("insert into visits values (?, ?, ?)", _visits_rows())
    finally:
        con.close()


# --------------------------------------------------------------------------------------
# 2. Calendar arithmetic (oracle: from SPEC section 2, kpimetrics.yml `calendar`)
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cal:
    week_start: str = "monday"
    fy_month: int = 1
    timezone: str = "UTC"


STEP = {"day": "1 day", "week": "7 days", "month": "1 month", "quarter": "3 months", "year": "1 year"}


def start_of(grain: str, d: str, cal: Cal) -> str:
    """SQL: the DATE start of the `grain` period containing the DATE/TIMESTAMP (local) `d`."""
    d = f"cast({d} as date)"
    if grain == "day":
        return d
    if grain == "week":
        # dayofweek: Sunday = 0 .. Saturday = 6; days back to the week's first day
        first = 0 if cal.week_start == "sunday" else 1
        return f"({d} - cast((dayofweek({d}) - {first} + 7) % 7 as integer))"
    if grain == "month":
        return f"make_date(year({d}), month({d}), 1)"
    n = {"quarter": 3, "year": 12}[grain]
    shift = cal.fy_month - 1
    idx = f"(year({d}) * 12 + month({d}) - 1 - {shift})"  # months since year 0, fiscal-shifted
    first = f"({idx} - {idx} % {n} + {shift})"
    return f"make_date(cast({first} // 12 as integer), cast({first} % 12 + 1 as integer), 1)"


def end_of(grain: str, start: str) -> str:
    return f"cast({start} + interval '{STEP[grain]}' as date)"


# --------------------------------------------------------------------------------------
# 3. KPI value oracles
# --------------------------------------------------------------------------------------

@dataclass
class Measure:
    """What the oracle needs to compute one measure/ratio KPI (written by hand per KPI)."""

    table: str
    time: str  # SQL giving the LOCAL timestamp of a row (TIMESTAMPTZ converted explicitly)
    raw_time: str  # the column itself, for `is not null`
    value: str | None = None  # DOUBLE aggregate SQL over the rows
    num: str | None = None  # ratio numerator / denominator aggregates
    den: str | None = None
    filter: str = "true"
    dims: tuple[str, ...] = ()
    grains: tuple[str, ...] = ("month",)
    periods: int | None = None  # trailing window
    to_date: str | None = None  # to-date window
    fill_zero: bool = False


def _agg_cols(m: Measure) -> str:
    if m.num is not None:
        return (f"({m.num}) / nullif({m.den}, 0) as value, cast({m.num} as double) as numerator, "
                f"cast({m.den} as double) as denominator")
    return f"cast({m.value} as double) as value, null::double as numerator, null::double as denominator"


def measure_sql(name: str, m: Measure, grain: str, cal: Cal) -> str:
    """SQL returning the rows kpi_values must hold for this KPI at this grain."""
    ps = start_of(grain, m.time, cal)
    rows = f"(select *, {ps} as _ps from {m.table} where {m.raw_time} is not null)"
    # every period from the model's first to its last period, before the KPI's filter
    spine = f"""(select cast(unnest(generate_series(cast(lo as timestamp), cast(hi as timestamp),
                 interval '{STEP[grain]}')) as date) as ps
                 from (select min(_ps) as lo, max(_ps) as hi from {rows}))"""
    head = f"select '{name}' as name, '{grain}' as grain, s.ps as period_start, {end_of(grain, 's.ps')} as period_end"
    if m.periods or m.to_date:
        # windows: aggregate the raw rows of the window, one correlated sub-query per period
        if m.periods:
            cond = f"r._ps <= s.ps and r._ps > s.ps - interval '{m.periods * int(STEP[grain].split()[0])} {STEP[grain].split()[1]}'"
        else:
            cond = f"r._ps <= s.ps and {start_of(m.to_date, 'r._ps', cal)} = {start_of(m.to_date, 's.ps', cal)}"

        def sub(expr: str) -> str:
            # an empty window has no value (no_data), even for count(*)
            return (f"(select case when count(*) = 0 then null else cast({expr} as double) end "
                    f"from {rows} r where {cond} and ({m.filter}))")
        if m.num is not None:
            cols = (f"{sub(m.num)} / nullif({sub(m.den)}, 0) as value, {sub(m.num)} as numerator, "
                    f"{sub(m.den)} as denominator")
        else:
            cols = f"{sub(m.value)} as value, null::double as numerator, null::double as denominator"
        return f"{head}, '' as dimension, null::varchar as dimension_value, {cols} from {spine} s"
    agg = f"(select _ps as ps, {_agg_cols(m)} from {rows} where {m.filter} group by _ps)"
    value = "coalesce(a.value, 0)" if m.fill_zero else "a.value"
    total = (f"{head}, '' as dimension, null::varchar as dimension_value, {value} as value, "
             f"a.numerator, a.denominator from {spine} s left join {agg} a using (ps)")
    parts = [total]
    for dim in m.dims:
        parts.append(
            f"select '{name}', '{grain}', _ps, {end_of(grain, '_ps')}, '{dim}', "
            f"coalesce(cast({dim} as varchar), '(null)'), {_agg_cols(m)} "
            f"from {rows} where {m.filter} group by all")
    return "\nunion all\n".join(parts)


# --------------------------------------------------------------------------------------
# 4. Project A: timezone America/New_York, Monday weeks, fiscal year = calendar year
# --------------------------------------------------------------------------------------

CAL_A = Cal("monday", 1, NY)
CAL_B = Cal("sunday", 4, "UTC")

O = dict(table="orders", time="ordered_at", raw_time="ordered_at")  # plain TIMESTAMP: as it is
T = dict(table="tickets", time=f"timezone('{NY}', opened_at)", raw_time="opened_at")
T_UTC = dict(table="tickets", time="timezone('UTC', opened_at)", raw_time="opened_at")
P = dict(table="points", time="pt_at", raw_time="pt_at")
V = dict(table="visits", time="seen_at", raw_time="seen_at")
CNT = "cast(count(*) as double)"

MEASURES_A: dict[str, Measure] = {
    "revenue": Measure(**O, value="sum(amount)", filter="status <> 'returned'", dims=("region", "channel"),
                       grains=("day", "week", "month", "quarter", "year")),
    "returned_orders": Measure(**O, value=CNT, filter="status = 'returned'", grains=("month", "week")),
    "returned_filled": Measure(**O, value=CNT, filter="status = 'returned'", fill_zero=True),
    "customers": Measure(**O, value="count(distinct customer_id)", dims=("region",),
                         grains=("week", "month", "quarter")),
    "avg_amount": Measure(**O, value="avg(amount)", grains=("month", "day")),
    "min_amount": Measure(**O, value="min(amount)"),
    "max_amount": Measure(**O, value="max(amount)", dims=("channel",)),
    "median_amount": Measure(**O, value="median(amount)", grains=("month", "week")),
    "p90_amount": Measure(**O, value="quantile_cont(amount, 0.9)", grains=("month", "week")),
    "returned_share": Measure(**O, num="cast(count(*) filter (where status = 'returned') as double)",
                              den="cast(count(amount) as double)", grains=("month", "day")),
    "amount_per_order": Measure(**O, value="sum(amount) / nullif(cast(count(*) as double), 0)",
                                grains=("month", "day")),
    "orders_per_priced": Measure(**O, value="cast(count(*) as double) / nullif(cast(count(amount) as double), 0)",
                                 grains=("day",)),
    "revenue_t3": Measure(**O, value="sum(amount)", filter="status <> 'returned'", periods=3,
                          grains=("month", "week")),
    "customers_t3": Measure(**O, value="count(distinct customer_id)", periods=3, grains=("month", "week")),
    "customers_ytd": Measure(**O, value="count(distinct customer_id)", to_date="year",
                             grains=("month", "week", "quarter")),
    "median_qtd": Measure(**O, value="median(amount)", to_date="quarter", grains=("month", "week")),
    # the filter leaves the model's first and last periods empty: they still have a row
    "mid_orders": Measure(**O, value=CNT, filter="ordered_at >= timestamp '2025-06-01' "
                          "and ordered_at < timestamp '2025-09-01'", grains=("month", "week")),
    # a DATE time column is taken as it is
    "shipped": Measure(table="orders", time="ship_date", raw_time="ship_date", value=CNT, grains=("day", "month")),
    # tickets: TIMESTAMPTZ, New York calendar
    "ticket_count": Measure(**T, value=CNT, grains=("day", "week", "month")),
    "ticket_count_filled": Measure(**T, value=CNT, fill_zero=True, grains=("day", "month")),
    # not additive and unfiltered: its aggregation reads the rows and counts none (a period has rows when it
    # has a group)
    "ticket_customers_filled": Measure(**T, value="count(distinct customer_id)", fill_zero=True,
                                       grains=("day", "month")),
    "csat_rate": Measure(**T, num="cast(count(*) filter (where csat >= 4) as double)",
                         den="cast(count(csat) as double)", dims=("channel",), grains=("day", "month")),
    "csat_t3": Measure(**T, num="count(*) filter (where csat >= 4)", den="count(csat)", periods=3),
    "response_p90": Measure(**T, value="quantile_cont(first_response_seconds, 0.9)"),
    # points: the status tests
    "st_high": Measure(**P, value="sum(v)", dims=("grp",), grains=("month", "quarter")),
    "st_low": Measure(**P, value="sum(v)"),
    "st_band_high": Measure(**P, value="sum(v)"),
    "st_band_low": Measure(**P, value="sum(v)"),
    "st_none": Measure(**P, value="sum(v)"),
    "st_zero": Measure(**P, value="sum(v)"),
    "st_neg": Measure(**P, value="sum(v)"),
    "st_value_form": Measure(**P, value="sum(v)"),
    "st_tol10": Measure(**P, value="sum(v)"),
    "st_sched": Measure(**P, value="sum(v)", grains=("week", "month")),
    "st_rel": Measure(**P, value="sum(v)", grains=("month", "quarter")),
    "st_rel_abs": Measure(**P, value="sum(v)"),
    "st_rel_val": Measure(**P, value="sum(v)", grains=("month", "week")),
    "st_grain": Measure(**P, value="sum(v)", grains=("month", "quarter", "year")),
    "st_pace": Measure(**P, value="sum(v)", to_date="year", grains=("month", "quarter", "week")),
    "st_slices": Measure(**P, value="sum(v)", dims=("grp",)),
    "st_rel_empty": Measure(**P, value="sum(v)"),
    "st_band_grain": Measure(**P, value="sum(v)", grains=("month", "quarter")),
    "st_tol_num": Measure(**P, value="sum(v)"),
    "st_grain_sched": Measure(**P, value="sum(v)", grains=("month", "quarter", "week")),
    "std_points": Measure(**P, value="avg(v)", grains=("month", "quarter")),
    # visits: the 53-week ISO year 2026
    "iso_visits": Measure(**V, value=CNT, dims=("kind",), grains=("week", "year")),
    "iso_n_ytd": Measure(**V, value="sum(n)", to_date="year", grains=("week",)),
    "iso_mean_n": Measure(**V, value="cast(sum(n) as double) / nullif(cast(count(*) as double), 0)",
                          grains=("week", "day")),
}

MEASURES_B: dict[str, Measure] = {
    "b_count": Measure(**O, value=CNT, grains=("day", "week", "month", "quarter", "year")),
    "b_tickets_utc": Measure(**T_UTC, value=CNT, grains=("day", "month")),
    "b_rev_ytd": Measure(**O, value="sum(amount)", to_date="year", grains=("week", "month", "quarter")),
    "b_cust_qtd": Measure(**O, value="count(distinct customer_id)", to_date="quarter", grains=("week", "month")),
    # a fiscal year (from April) to date: its first-seen counts are grouped by the fiscal year, not year(day)
    "b_cust_fytd": Measure(**O, value="count(distinct customer_id)", to_date="year", grains=("month",)),
    "b_cust_t2": Measure(**O, value="count(distinct customer_id)", periods=2, grains=("week",)),
}


# Derived KPIs, written by hand: lag(k, n) = k's value n calendar periods earlier, matched
# on the period whose start is n steps before (NULL when there is no such row or its value
# is NULL). The derived KPI's periods are its input's periods.
def _lag_join(alias: str, src: str, name: str, n: int, grain: str) -> str:
    step, unit = STEP[grain].split()
    return (f"left join (select * from {src} where name = '{name}') {alias} "
            f"on {alias}.grain = b.grain and {alias}.dimension = b.dimension "
            f"and {alias}.dimension_value is not distinct from b.dimension_value "
            f"and {alias}.period_start = cast(b.period_start - interval '{n * int(step)} {unit}' as date)")


def derived_sql(src: str) -> list[str]:
    """Derived KPIs over the oracle's own values table `src` (totals and shared slices)."""
    out = []
    for grain in ("month", "quarter"):
        out.append(f"""select 'revenue_growth', b.grain, b.period_start, b.period_end, b.dimension, b.dimension_value,
                       b.value / nullif(l.value, 0) - 1, null::double, null::double
                       from (select * from {src} where name = 'revenue' and grain = '{grain}') b
                       {_lag_join('l', src, 'revenue', 1, grain)}""")
    out.append(f"""select 'revenue_lag2', b.grain, b.period_start, b.period_end, b.dimension, b.dimension_value,
                   l.value, null::double, null::double
                   from (select * from {src} where name = 'revenue' and grain = 'month') b
                   {_lag_join('l', src, 'revenue', 2, 'month')}""")
    out.append(f"""select 'returned_lag', b.grain, b.period_start, b.period_end, b.dimension, b.dimension_value,
                   l.value, null::double, null::double
                   from (select * from {src} where name = 'returned_orders' and grain = 'month') b
                   {_lag_join('l', src, 'returned_orders', 1, 'month')}""")
    out.append(f"""select 'tickets_lag', b.grain, b.period_start, b.period_end, b.dimension, b.dimension_value,
                   l.value, null::double, null::double
                   from (select * from {src} where name = 'ticket_count' and grain = 'month') b
                   {_lag_join('l', src, 'ticket_count', 1, 'month')}""")
    out.append(f"""select 'tickets_growth', b.grain, b.period_start, b.period_end, b.dimension, b.dimension_value,
                   b.value / nullif(l.value, 0) - 1, null::double, null::double
                   from (select * from {src} where name = 'ticket_count' and grain = 'month') b
                   {_lag_join('l', src, 'ticket_count', 1, 'month')}""")
    # a derived KPI at a grain its input does not list: the input is computed at that grain
    # anyway (here with its fill: zero), then lagged
    filled_week = measure_sql("filled_week", Measure(**T, value=CNT, fill_zero=True, grains=("week",)), "week", CAL_A)
    out.append(f"""select 'filled_week_lag', b.grain, b.period_start, b.period_end, b.dimension, b.dimension_value,
                   l.value, null::double, null::double
                   from ({filled_week}) b
                   left join ({filled_week}) l on l.period_start = cast(b.period_start - interval '7 days' as date)""")
    return out


def derived2_sql(src: str) -> str:
    """Derived of a derived: growth_change = revenue_growth - lag(revenue_growth)."""
    return f"""select 'growth_change', b.grain, b.period_start, b.period_end, b.dimension, b.dimension_value,
               b.value - l.value, null::double, null::double
               from (select * from {src} where name = 'revenue_growth' and grain = 'month') b
               {_lag_join('l', src, 'revenue_growth', 1, 'month')}"""


# grains at which a KPI is computed only as the input of a derived KPI (SPEC: "its inputs are
# computed at those grains whether or not they list them"); whether such rows are published is
# not said, so the tests accept them when present and then check their values
INPUT_GRAINS_A = {"ticket_count_filled": ("week",)}

DERIVED_A = ("revenue_growth", "revenue_lag2", "returned_lag", "tickets_lag", "tickets_growth", "growth_change",
             "filled_week_lag")
# dimensions a derived KPI gets (those all its inputs have)
DERIVED_DIMS = {"revenue_growth": ("region", "channel"), "revenue_lag2": ("region", "channel"),
                "growth_change": ("region", "channel")}


# --------------------------------------------------------------------------------------
# 5. Targets (oracle: SPEC "Targets and status, precisely")
# --------------------------------------------------------------------------------------

@dataclass
class Tgt:
    """One KPI's target rules, by hand; `sql(grain)` gives SQL over the KPI's total periods
    (columns period_start, period_end) returning target and target_source."""

    direction: str = "higher"
    per_grain: dict = field(default_factory=dict)  # grain -> target SQL pieces (target_expr, source)
    tolerance: dict = field(default_factory=dict)  # grain -> fraction
    band: dict = field(default_factory=dict)  # grain -> at_risk_below / at_risk_above value
    slice_targets: bool = False


def t_value(x: float):
    return (f"{x!r}::double", "value")


def t_schedule(entries: list[tuple[str, float]]):
    # the entry with the latest `from` on or before the period's start; none: no target
    cases = " ".join(f"when period_start >= date '{f}' then {v!r}::double"
                     for f, v in sorted(entries, reverse=True))
    return (f"case {cases} end", "schedule")


def t_relative(name: str, grain: str, change: float, percent: bool, by: str, path: str,
               base_from: str | None = None, base_to: str | None = None, base_value: float | None = None,
               as_of: str | None = None):
    if base_value is not None:
        baseline = f"{base_value!r}::double"
        to = as_of
    else:
        # mean of the per-period values at this grain whose periods lie within from..to
        baseline = (f"(select avg(value) from oracle_values where name = '{name}' and grain = '{grain}' "
                    f"and dimension = '' and period_start >= date '{base_from}' "
                    f"and period_end <= date '{base_to}' + 1)")
        to = base_to
    goal = f"({baseline} * (1 + {change!r}))" if percent else f"({baseline} + {change!r})"
    t0 = f"(date '{to}' + 1)"
    t1 = f"(date '{by}' + 1)"
    if path == "linear":
        frac = (f"greatest(0.0, least(1.0, cast(date_diff('day', {t0}, period_end) as double) "
                f"/ date_diff('day', {t0}, {t1})))")
        expr = f"{baseline} + ({goal} - {baseline}) * {frac}"
    else:
        expr = goal
    return (f"case when period_end <= {t0} then null else {expr} end", "relative")


def t_pace(value: float, by: str, to_date: str, cal: Cal):
    s = start_of(to_date, f"date '{by}'", cal)  # start of the to-date period containing `by`
    t1 = f"(date '{by}' + 1)"
    expr = (f"{value!r} * cast(date_diff('day', {s}, period_end) as double) / date_diff('day', {s}, {t1})")
    return (f"case when {start_of(to_date, 'period_start', cal)} = {s} then {expr} end", "pace")


# KPIs whose YAML target is one plain number at every grain they have
SIMPLE_A = {"avg_amount": 100.0, "min_amount": 1.0, "max_amount": 100.0, "median_amount": 100.0,
            "p90_amount": 100.0, "returned_share": 0.1, "amount_per_order": 90.0, "orders_per_priced": 1.0,
            "revenue_t3": 3000.0, "mid_orders": 30.0, "shipped": 30.0, "customers_t3": 30.0, "customers_ytd": 40.0, "median_qtd": 100.0,
            "revenue_lag2": 1000.0, "growth_change": 0.0, "returned_lag": 3.0, "ticket_count": 10.0,
            "ticket_count_filled": 10.0, "ticket_customers_filled": 8.0, "csat_t3": 0.75, "tickets_lag": 10.0, "tickets_growth": 0.0,
            "iso_visits": 7.0, "iso_n_ytd": 500.0, "iso_mean_n": 3.0}
SIMPLE_B = {"b_count": 10.0, "b_tickets_utc": 10.0, "b_cust_qtd": 30.0, "b_cust_fytd": 50.0, "b_cust_t2": 5.0}


def _grains_of(name: str, measures: dict) -> tuple[str, ...]:
    return measures[name].grains if name in measures else ("month",)


def targets_a() -> dict[str, Tgt]:
    m, q = "month", "quarter"
    simple = {n: Tgt(direction=DIRECTIONS_A.get(n, "higher"),
                     per_grain={g: t_value(x) for g in _grains_of(n, MEASURES_A)}) for n, x in SIMPLE_A.items()}
    return simple | {
        "revenue": Tgt(per_grain={g: t_value(1000.0) for g in MEASURES_A["revenue"].grains}),
        "returned_orders": Tgt(direction="lower", per_grain={m: t_value(3.0), "week": t_value(1.0)},
                               tolerance={m: 0.5, "week": 0.5}),
        "returned_filled": Tgt(direction="lower", per_grain={m: t_value(3.0)}),
        "customers": Tgt(per_grain={"week": t_value(5.0), m: t_value(20.0), q: t_value(35.0)},
                         tolerance={"week": 0.1, m: 0.1, q: 0.1}),
        "csat_rate": Tgt(per_grain={"day": t_value(0.75), m: t_value(0.75)}, band={"day": 0.5, m: 0.5}),
        "response_p90": Tgt(direction="lower", per_grain={
            m: t_relative("response_p90", m, -120.0, False, "2025-12-31", "linear",
                          base_from="2025-01-01", base_to="2025-03-31")}),
        "revenue_growth": Tgt(per_grain={m: t_value(0.02), q: t_value(0.02)}),
        "st_high": Tgt(per_grain={m: t_value(8.0), q: t_value(20.0)}, tolerance={m: 0.25, q: 0.25}),
        "st_low": Tgt(direction="lower", per_grain={m: t_value(8.0)}, tolerance={m: 0.25}),
        "st_band_high": Tgt(per_grain={m: t_value(8.0)}, band={m: 6.5}),
        "st_band_low": Tgt(direction="lower", per_grain={m: t_value(8.0)}, band={m: 9.5}),
        "st_none": Tgt(per_grain={m: t_value(8.0)}),
        "st_zero": Tgt(per_grain={m: t_value(0.0)}, tolerance={m: 0.25}),
        "st_neg": Tgt(per_grain={m: t_value(-4.0)}, tolerance={m: 0.5}),
        "st_value_form": Tgt(per_grain={m: t_value(8.0)}, tolerance={m: 0.25}),
        "st_tol10": Tgt(direction="lower", per_grain={m: t_value(8.0)}, tolerance={m: 0.1}),
        "st_sched": Tgt(per_grain={g: t_schedule([("2025-03-01", 8.0), ("2025-06-16", 10.0)])
                                   for g in ("week", m)}, tolerance={"week": 0.25, m: 0.25}),
        "st_rel": Tgt(direction="lower", tolerance={m: 0.1, q: 0.1}, per_grain={
            g: t_relative("st_rel", g, -0.20, True, "2025-12-31", "linear",
                          base_from="2025-01-01", base_to="2025-03-31") for g in (m, q)}),
        "st_rel_abs": Tgt(per_grain={m: t_relative("st_rel_abs", m, 3.0, False, "2025-06-30", "step",
                                                   base_from="2025-01-01", base_to="2025-02-28")}),
        "st_rel_val": Tgt(direction="lower", per_grain={
            g: t_relative("st_rel_val", g, -2.0, False, "2025-09-30", "linear",
                          base_value=10.0, as_of="2025-06-30") for g in (m, "week")}),
        "st_grain": Tgt(per_grain={m: t_value(8.0), q: t_value(20.0)}, tolerance={m: 0.25, q: 0.10}),
        "st_pace": Tgt(per_grain={g: t_pace(100.0, "2025-12-31", "year", CAL_A) for g in (m, q, "week")},
                       tolerance={m: 0.25, q: 0.25, "week": 0.25}),
        "st_slices": Tgt(per_grain={m: t_value(4.0)}, tolerance={m: 0.25}, slice_targets=True),
        # a baseline range with no period in it: no target at that grain
        "st_rel_empty": Tgt(per_grain={}),
        "st_band_grain": Tgt(per_grain={m: t_value(8.0), q: t_value(20.0)}, band={m: 6.5, q: 19.0}),
        "st_tol_num": Tgt(per_grain={m: t_value(8.0)}, tolerance={m: 0.25}),
        "st_grain_sched": Tgt(per_grain={m: t_schedule([("2025-04-01", 9.0)]), q: t_value(20.0)}),
        "filled_week_lag": Tgt(per_grain={"week": t_value(5.0)}),
        "std_points": Tgt(direction="lower", per_grain={m: t_value(5.0), q: t_value(5.0)}),
    }


def targets_b() -> dict[str, Tgt]:
    simple = {n: Tgt(per_grain={g: t_value(x) for g in MEASURES_B[n].grains}) for n, x in SIMPLE_B.items()}
    return simple | {
        "b_rev_ytd": Tgt(per_grain={g: t_pace(50000.0, "2026-03-31", "year", CAL_B) for g in ("week", "month", "quarter")}),
    }


def threshold_sql(t: Tgt, grain: str) -> str:
    """at_risk_threshold from the target column: tolerance, absolute band, or the target."""
    if grain in t.band:
        return f"case when target is not null then {t.band[grain]!r}::double end"
    if grain in t.tolerance:
        sign = "-" if t.direction == "higher" else "+"
        return f"target {sign} abs(target) * {t.tolerance[grain]!r}"
    return "target"


# --------------------------------------------------------------------------------------
# 6. Build the oracle tables in a connection to the run's warehouse
# --------------------------------------------------------------------------------------

def build_oracle(con: duckdb.DuckDBPyConnection, measures: dict[str, Measure], cal: Cal,
                 targets: dict[str, Tgt], directions: dict[str, str], as_of: dt.date,
                 with_derived: bool) -> None:
    """Create TEMP tables oracle_values, oracle_targets and oracle_status."""
    parts = [measure_sql(n, m, g, cal) for n, m in measures.items() for g in m.grains]
    con.execute("create or replace temp table oracle_values as\n" + "\nunion all\n".join(parts))
    if with_derived:
        con.execute("create or replace temp table oracle_input_values as\n" + "\nunion all\n".join(
            measure_sql(n, measures[n], g, cal) for n, gs in INPUT_GRAINS_A.items() for g in gs))
        con.execute("insert into oracle_values\n" + "\nunion all\n".join(derived_sql("oracle_values")))
        con.execute("insert into oracle_values\n" + derived2_sql("oracle_values"))

    con.execute("""create or replace temp table oracle_targets (name varchar, grain varchar, period_start date,
                   period_end date, dimension varchar, dimension_value varchar, target double,
                   at_risk_threshold double, target_source varchar)""")
    for name, t in targets.items():
        for grain, (expr, source) in t.per_grain.items():
            dims = "true" if t.slice_targets else "dimension = ''"
            con.execute(f"""insert into oracle_targets
                select name, grain, period_start, period_end, dimension, dimension_value, target,
                       {threshold_sql(t, grain)}, '{source}'
                from (select *, {expr} as target from oracle_values
                      where name = '{name}' and grain = '{grain}' and {dims})""")
    con.execute("create or replace temp table oracle_dir (name varchar, higher boolean)")
    for name in {r[0] for r in con.execute("select distinct name from oracle_values").fetchall()}:
        con.execute("insert into oracle_dir values (?, ?)", [name, directions.get(name, "higher") == "higher"])
    con.execute(f"""create or replace temp table oracle_status as
        select v.name, v.grain, v.period_start, v.period_end, v.dimension, v.dimension_value, v.value,
               t.target, t.at_risk_threshold,
               case when v.value is null then 'no_data'
                    when t.target is null then 'no_target'
                    when d.higher then case when v.value >= t.target then 'on_track'
                                            when v.value >= t.at_risk_threshold then 'at_risk'
                                            else 'off_track' end
                    else case when v.value <= t.target then 'on_track'
                              when v.value <= t.at_risk_threshold then 'at_risk'
                              else 'off_track' end end as status,
               case when d.higher then v.value / nullif(t.target, 0)
                    else t.target / nullif(v.value, 0) end as attainment,
               p.value as previous_value,
               v.value - p.value as change,
               (v.value - p.value) / nullif(abs(p.value), 0) as change_pct,
               v.period_end <= date '{as_of.isoformat()}' as is_complete
        from oracle_values v
        join oracle_dir d using (name)
        left join oracle_targets t
          on t.name = v.name and t.grain = v.grain and t.period_start = v.period_start
         and t.dimension = v.dimension and t.dimension_value is not distinct from v.dimension_value
        left join oracle_values p
          on p.name = v.name and p.grain = v.grain and p.period_end = v.period_start
         and p.dimension = v.dimension and p.dimension_value is not distinct from v.dimension_value""")


# --------------------------------------------------------------------------------------
# 7. The projects (the product's input). KPI definitions mirror the oracle above.
# --------------------------------------------------------------------------------------

STRATEGY = """
mission: Be the reference data set
priorities:
  - name: correctness
    owner: lead@example.com
    strategies:
      - name: s_orders
        owner: lead@example.com
        starts: 2025-01-01
        ends: 2027-12-31
      - name: s_tickets
        owner: lead@example.com
        starts: 2025-01-01
        ends: 2027-12-31
      - name: s_points
        owner: lead@example.com
        starts: 2025-01-01
        ends: 2027-12-31
"""

SOURCES = """
sources:
  - name: shop
    schema: {schema}
    tables:
      - name: orders
        columns: [order_id, customer_id, ordered_at, region, channel, amount, discount, status, ship_date]
      - name: tickets
        columns: [ticket_id, customer_id, opened_at, channel, first_response_seconds, csat]
      - name: points
        columns: [pt_at, v, grp]
      - name: visits
        columns: [seen_at, n, kind]
"""


def _kpi(name: str, strategy: str, body: str) -> str:
    lines = [f"  - name: {name}", "    owner: lead@example.com", f"    strategy: {strategy}",
             "    indicator: leading", "    actions: Look into it"]
    lines += ["    " + ln for ln in body.strip("\n").splitlines()]
    return "\n".join(lines) + "\n"


ORD = "model: source('shop', 'orders')\ntime: ordered_at\n"
TIX = "model: source('shop', 'tickets')\ntime: opened_at\n"
PTS = "model: source('shop', 'points')\ntime: pt_at\n"
VIS = "model: source('shop', 'visits')\ntime: seen_at\n"

KPIS_ORDERS_A = {
    "revenue": ORD + """measure: sum(amount)
filter: status <> 'returned'
dimensions: [region, channel]
grain: [day, week, month, quarter, year]
target: 1000""",
    "returned_orders": ORD + """measure: count(*)
filter: status = 'returned'
direction: lower_is_better
grain: [month, week]
target: {month: 3, week: 1}
tolerance: 50%""",
    "returned_filled": ORD + """measure: count(*)
filter: status = 'returned'
direction: lower_is_better
fill: zero
target: 3""",
    "customers": ORD + """measure: count(distinct customer_id)
dimensions: [region]
grain: [week, month, quarter]
target: {week: 5, month: 20, quarter: 35}
tolerance: 10%""",
    "avg_amount": ORD + "measure: avg(amount)\ngrain: [month, day]\ntarget: 100",
    "min_amount": ORD + "measure: min(amount)\ntarget: 1",
    "max_amount": ORD + "measure: max(amount)\ndimensions: [channel]\ntarget: 100",
    "median_amount": ORD + "measure: median(amount)\ngrain: [month, week]\ntarget: 100",
    "p90_amount": ORD + "measure: quantile_cont(amount, 0.9)\ngrain: [month, week]\ntarget: 100",
    "returned_share": ORD + """ratio:
  numerator: count(*) filter (where status = 'returned')
  denominator: count(amount)
direction: lower_is_better
grain: [month, day]
target: 0.1""",
    "amount_per_order": ORD + "measure: sum(amount) / count(*)\ngrain: [month, day]\ntarget: 90",
    "orders_per_priced": ORD + "measure: count(*) / count(amount)\ngrain: day\ntarget: 1",
    "revenue_t3": ORD + """measure: sum(amount)
filter: status <> 'returned'
window: {periods: 3}
grain: [month, week]
target: 3000""",
    "customers_t3": ORD + "measure: count(distinct customer_id)\nwindow: {periods: 3}\ngrain: [month, week]\ntarget: 30",
    "customers_ytd": ORD + "measure: count(distinct customer_id)\nwindow: {to_date: year}\ngrain: [month, week, quarter]\ntarget: 40",
    "median_qtd": ORD + "measure: median(amount)\nwindow: {to_date: quarter}\ngrain: [month, week]\ntarget: 100",
    "mid_orders": ORD + """measure: count(*)
filter: ordered_at >= timestamp '2025-06-01' and ordered_at < timestamp '2025-09-01'
grain: [month, week]
target: 30""",
    "shipped": "model: source('shop', 'orders')\ntime: ship_date\nmeasure: count(*)\ngrain: [day, month]\ntarget: 30",
    "revenue_growth": """derived: revenue / lag(revenue) - 1
grain: [month, quarter]
target: 0.02""",
    "revenue_lag2": "derived: lag(revenue, 2)\ngrain: month\ntarget: 1000",
    "growth_change": "derived: revenue_growth - lag(revenue_growth)\ngrain: month\ntarget: 0",
    "returned_lag": "derived: lag(returned_orders)\ngrain: month\ntarget: 3\ndirection: lower_is_better",
}

KPIS_TICKETS_A = {
    "ticket_count": TIX + "measure: count(*)\ngrain: [day, week, month]\ntarget: 10",
    "ticket_count_filled": TIX + "measure: count(*)\nfill: zero\ngrain: [day, month]\ntarget: 10",
    "ticket_customers_filled": TIX + "measure: count(distinct customer_id)\nfill: zero\ngrain: [day, month]\ntarget: 8",
    "csat_rate": TIX + """ratio:
  numerator: count(*) filter (where csat >= 4)
  denominator: count(csat)
dimensions: [channel]
grain: [day, month]
target: 0.75
at_risk_below: 0.5""",
    "csat_t3": TIX + """ratio:
  numerator: count(*) filter (where csat >= 4)
  denominator: count(csat)
window: {periods: 3}
target: 0.75""",
    "response_p90": TIX + """measure: quantile_cont(first_response_seconds, 0.9)
direction: lower_is_better
target:
  baseline: {from: 2025-01-01, to: 2025-03-31}
  change: -120
  by: 2025-12-31
  path: linear""",
    "tickets_lag": "derived: lag(ticket_count)\ngrain: month\ntarget: 10",
    "tickets_growth": "derived: ticket_count / lag(ticket_count) - 1\ntarget: 0",  # the default grain: month
    "filled_week_lag": "derived: lag(ticket_count_filled)\ngrain: week\ntarget: 5",
}

KPIS_POINTS_A = {
    "st_high": PTS + """measure: sum(v)
dimensions: [grp]
grain: [month, quarter]
target: {month: 8, quarter: 20}
tolerance: 25%""",
    "st_low": PTS + "measure: sum(v)\ndirection: lower_is_better\ntarget: 8\ntolerance: 25%",
    "st_band_high": PTS + "measure: sum(v)\ntarget: 8\nat_risk_below: 6.5",
    "st_band_low": PTS + "measure: sum(v)\ndirection: lower_is_better\ntarget: 8\nat_risk_above: 9.5",
    "st_none": PTS + "measure: sum(v)\ntarget: 8",
    "st_zero": PTS + "measure: sum(v)\ntarget: 0\ntolerance: 25%",
    "st_neg": PTS + "measure: sum(v)\ntarget: -4\ntolerance: 50%",
    "st_value_form": PTS + "measure: sum(v)\ntarget: {value: 8}\ntolerance: 25%",
    "st_tol10": PTS + "measure: sum(v)\ndirection: lower_is_better\ntarget: 8\ntolerance: 10%",
    "st_sched": PTS + """measure: sum(v)
grain: [week, month]
target:
  schedule:
    - {from: 2025-03-01, value: 8}
    - {from: 2025-06-16, value: 10}
tolerance: 25%""",
    "st_rel": PTS + """measure: sum(v)
direction: lower_is_better
grain: [month, quarter]
target:
  baseline: {from: 2025-01-01, to: 2025-03-31}
  change: -20%
  by: 2025-12-31
  path: linear
tolerance: 10%""",
    "st_rel_abs": PTS + """measure: sum(v)
target:
  baseline: {from: 2025-01-01, to: 2025-02-28}
  change: 3
  by: 2025-06-30
  path: step""",
    "st_rel_val": PTS + """measure: sum(v)
direction: lower_is_better
grain: [month, week]
target:
  baseline: {value: 10, as_of: 2025-06-30}
  change: -2
  by: 2025-09-30
  path: linear""",
    "st_grain": PTS + """measure: sum(v)
grain: [month, quarter, year]
target: {month: 8, quarter: 20}
tolerance: {month: 25%, quarter: 10%}""",
    "st_pace": PTS + """measure: sum(v)
window: {to_date: year}
grain: [month, quarter, week]
target: {value: 100, by: 2025-12-31, pace: linear}
tolerance: 25%""",
    "st_slices": PTS + """measure: sum(v)
dimensions: [grp]
target: 4
tolerance: 25%
slice_targets: true""",
    "st_rel_empty": PTS + """measure: sum(v)
target:
  baseline: {from: 2020-01-01, to: 2020-03-31}
  change: 10%
  by: 2025-12-31
  path: step""",
    "st_band_grain": PTS + """measure: sum(v)
grain: [month, quarter]
target: {month: 8, quarter: 20}
at_risk_below: {month: 6.5, quarter: 19}""",
    "st_tol_num": PTS + "measure: sum(v)\ntarget: 8\ntolerance: 0.25",
    "st_grain_sched": PTS + """measure: sum(v)
grain: [month, quarter, week]
target:
  month:
    schedule:
      - {from: 2025-04-01, value: 9}
  quarter: 20""",
}

KPIS_VISITS_A = {
    "iso_visits": VIS + "measure: count(*)\ndimensions: [kind]\ngrain: [week, year]\ntarget: 7",
    "iso_n_ytd": VIS + "measure: sum(n)\nwindow: {to_date: year}\ngrain: week\ntarget: 500",
    # INTEGER / INTEGER: no engine may divide integers
    "iso_mean_n": VIS + "measure: sum(n) / count(*)\ngrain: [week, day]\ntarget: 3",
}

STANDARDS_A = """
standards:
  - name: std_points
    owner: lead@example.com
    model: source('shop', 'points')
    time: pt_at
    measure: avg(v)
    direction: lower_is_better
    grain: [month, quarter]
    tags: [ops, weekly_review]
    target: 5
    actions: Look into it
"""

DIRECTIONS_A = {"returned_orders": "lower", "returned_filled": "lower", "returned_share": "lower",
                "response_p90": "lower", "returned_lag": "lower", "st_low": "lower", "st_band_low": "lower",
                "st_tol10": "lower", "st_rel": "lower", "st_rel_val": "lower", "std_points": "lower"}

KPIS_B = {
    "b_count": ORD + "measure: count(*)\ngrain: [day, week, month, quarter, year]\ntarget: 10",
    "b_tickets_utc": TIX + "measure: count(*)\ngrain: [day, month]\ntarget: 10",
    "b_rev_ytd": ORD + """measure: sum(amount)
window: {to_date: year}
grain: [week, month, quarter]
target: {value: 50000, by: 2026-03-31, pace: linear}""",
    "b_cust_qtd": ORD + "measure: count(distinct customer_id)\nwindow: {to_date: quarter}\ngrain: [week, month]\ntarget: 30",
    "b_cust_fytd": ORD + "measure: count(distinct customer_id)\nwindow: {to_date: year}\ngrain: month\ntarget: 50",
    "b_cust_t2": ORD + "measure: count(distinct customer_id)\nwindow: {periods: 2}\ngrain: week\ntarget: 5",
}


def _kpis_file(kpis: dict[str, str], strategy: str) -> str:
    return "kpis:\n" + "".join(_kpi(n, strategy, body) for n, body in kpis.items())


DUCKDB_PROFILE = "oracle:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: wh.duckdb}\n"


def project_a_files(profiles: str = DUCKDB_PROFILE, source_schema: str = "main",
                    output_schema: str = "kpi") -> dict[str, str]:
    return {
        "kpimetrics.yml": f"""name: oracle_a
profile: oracle
dialect: duckdb
output_schema: {output_schema}
defaults: {{grain: month, lookback: 1}}
calendar: {{week_start: monday, fiscal_year_start_month: 1, timezone: {NY}}}
""",
        "profiles.yml": profiles,
        "strategy.yml": STRATEGY,
        "sources.yml": SOURCES.format(schema=source_schema),
        "kpis/orders.yml": _kpis_file(KPIS_ORDERS_A, "s_orders"),
        "kpis/tickets.yml": _kpis_file(KPIS_TICKETS_A, "s_tickets"),
        "kpis/points.yml": _kpis_file(KPIS_POINTS_A, "s_points"),
        "kpis/visits.yml": _kpis_file(KPIS_VISITS_A, "s_points"),
        "kpis/standards.yml": STANDARDS_A,
    }


def project_b_files(profiles: str = DUCKDB_PROFILE, source_schema: str = "main",
                    output_schema: str = "kpi") -> dict[str, str]:
    return {
        "kpimetrics.yml": f"""name: oracle_b
profile: oracle
dialect: duckdb
output_schema: {output_schema}
defaults: {{grain: month}}
calendar: {{week_start: sunday, fiscal_year_start_month: 4, timezone: UTC}}
""",
        "profiles.yml": profiles,
        "strategy.yml": STRATEGY,
        "sources.yml": SOURCES.format(schema=source_schema),
        "kpis/b.yml": _kpis_file(KPIS_B, "s_orders"),
    }


# --------------------------------------------------------------------------------------
# 8. Running a project and comparing tables (used by the test modules)
# --------------------------------------------------------------------------------------

SOURCE_TABLES = ("orders", "tickets", "points", "visits")


def run_project(root: Path, which: str, engine=None):
    """Write project A or B under `root`, load the data into the engine (tests/engines.py; DuckDB
    when None), run it there; return (result, connection to a DuckDB file holding the source data,
    the output tables as read back from the engine, and the oracle tables)."""
    from kpimetrics import Project

    import engines

    engine = engine or engines.duckdb_engine()
    make = project_a_files if which == "a" else project_b_files
    # one output schema per project (SPEC §11): B's own beside A's where the engine's warehouse is shared (Spark)
    output_schema = engine.output_schema if which == "a" or engine.embedded else f"{engine.output_schema}_{which}"
    write_project(root, make(engine.profiles_yml(root), engine.source_schema, output_schema))
    load_data(root / "wh.duckdb")
    project = Project.load(root)
    if not engine.embedded:
        adapter = project.connect()
        try:
            engines.copy_sources(root / "wh.duckdb", adapter, engine.source_schema, SOURCE_TABLES)
        finally:
            adapter.close()
    result = project.run(full_refresh=True, as_of=AS_OF)
    if not engine.embedded:
        adapter = project.connect()
        try:
            engines.copy_outputs(adapter, output_schema, root / "wh.duckdb")
        finally:
            adapter.close()
    con = duckdb.connect(str(root / "wh.duckdb"))
    if which == "a":
        build_oracle(con, MEASURES_A, CAL_A, targets_a(), DIRECTIONS_A, AS_OF, with_derived=True)
    else:
        build_oracle(con, MEASURES_B, CAL_B, targets_b(), {}, AS_OF, with_derived=False)
    return result, con


KEY_COLS = ("grain", "period_start", "dimension", "dimension_value")


def fetch(con, table: str, name: str, cols: tuple[str, ...], where: str = "true") -> dict[tuple, dict]:
    """{(grain, period_start, dimension, dimension_value): {col: value}} for one KPI."""
    sql = (f"select {', '.join(KEY_COLS + cols)} from {table} where name = ? and ({where}) "
           f"order by grain, period_start, dimension, dimension_value")
    out = {}
    for row in con.execute(sql, [name]).fetchall():
        key = row[:4]
        assert key not in out, f"duplicate row {name} {key} in {table}"
        out[key] = dict(zip(cols, row[4:]))
    return out


def same(a, b) -> bool:
    import math

    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def diff_rows(expected: dict, actual: dict, cols: tuple[str, ...], label: str, limit: int = 12) -> list[str]:
    """Differences between the oracle's rows and the product's rows on the oracle's keys."""
    out = []
    for key, exp in expected.items():
        act = actual.get(key)
        if act is None:
            out.append(f"{label} {key}: missing (expected {exp})")
            continue
        for c in cols:
            if not same(exp[c], act[c]):
                out.append(f"{label} {key} {c}: expected {exp[c]!r}, got {act[c]!r}")
    return out[:limit] + ([f"... {len(out) - limit} more"] if len(out) > limit else [])
