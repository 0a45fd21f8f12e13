"""Deterministic benchmark data, generated inside DuckDB with SQL (no Python loops over rows).

    python bench/generate.py --db bench/data/bench.duckdb --orders 10000000
    python bench/generate.py --db bench/data/bench.duckdb --append-days 1

Tables in schema main, written in time order (as an append-only fact table is, so
zone maps on the time column let a range predicate skip row groups):
  orders(order_id, customer_id, ordered_at, region, channel, amount, discount, status)
  support_tickets(ticket_id, customer_id, opened_at, channel, first_response_seconds, csat)
  customers(customer_id, segment, signed_up_at)
Every value is a function of the row number (DuckDB's hash), so the same flags
give the same data. `--append-days N` adds N more days at the same daily volume
after the newest day in the tables.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import duckdb

START = dt.date(2023, 1, 1)
DAYS = 1095  # three years: 2023-01-01 .. 2025-12-30
TICKETS_PER_ORDER = 10  # one ticket for every 10 orders


def _u(i: str, salt: int) -> str:
    """A uniform number in [0, 1) from row number `i` (SQL text of a deterministic hash)."""
    return f"((hash({i}, {salt}) % 1000003) / 1000003.0)"


def _pick(i: str, salt: int, values: list[str]) -> str:
    """One of `values`, chosen by a hash of the row number."""
    cases = " ".join(f"WHEN {n} THEN '{v}'" for n, v in enumerate(values))
    return f"(CASE hash({i}, {salt}) % {len(values)} {cases} END)"


def _spread(first_id: int, n: int, start: dt.date, days: int) -> str:
    """Row i's time: the n rows spread evenly over `days` days from `start`, in row order."""
    return f"TIMESTAMP '{start}' + to_microseconds(CAST((i - {first_id}) * ({days * 86400}.0 * 1000000 / {n}) AS BIGINT))"


def orders_sql(first_id: int, n: int, start: dt.date, days: int, customers: int) -> str:
    i = "i"
    return f"""
    SELECT
        i AS order_id,
        CAST(1 + hash(i, 1) % {customers} AS INTEGER) AS customer_id,
        {_spread(first_id, n, start, days)} AS ordered_at,
        CASE WHEN hash(i, 2) % 100 = 0 THEN NULL
             ELSE {_pick(i, 3, ['north', 'south', 'east', 'west', 'central', 'islands'])} END AS region,
        {_pick(i, 4, ['web', 'web', 'mobile', 'phone', 'marketplace'])} AS channel,
        CAST(5 + 495 * {_u(i, 5)} * {_u(i, 6)} AS DECIMAL(10, 2)) AS amount,
        CAST(CASE WHEN hash(i, 7) % 4 = 0 THEN 20 * {_u(i, 8)} ELSE 0 END AS DECIMAL(10, 2)) AS discount,
        CASE WHEN hash(i, 9) % 100 < 85 THEN 'completed'
             WHEN hash(i, 9) % 100 < 93 THEN 'returned' ELSE 'cancelled' END AS status
    FROM range({first_id}, {first_id + n}) AS t(i)
    ORDER BY i
    """


def tickets_sql(first_id: int, n: int, start: dt.date, days: int, customers: int) -> str:
    i = "i"
    return f"""
    SELECT
        i AS ticket_id,
        CAST(1 + hash(i, 11) % {customers} AS INTEGER) AS customer_id,
        {_spread(first_id, n, start, days)} AS opened_at,
        {_pick(i, 12, ['email', 'chat', 'phone'])} AS channel,
        CAST(10 + 7200 * {_u(i, 13)} * {_u(i, 14)} * {_u(i, 15)} AS INTEGER) AS first_response_seconds,
        CASE WHEN hash(i, 16) % 10 < 3 THEN NULL ELSE CAST(1 + hash(i, 17) % 5 AS INTEGER) END AS csat
    FROM range({first_id}, {first_id + n}) AS t(i)
    ORDER BY i
    """


def customers_sql(n: int) -> str:
    return f"""
    SELECT
        CAST(i AS INTEGER) AS customer_id,
        {_pick('i', 21, ['small', 'small', 'small', 'medium', 'enterprise'])} AS segment,
        TIMESTAMP '2020-01-01' + to_days(CAST(hash(i, 22) % 1000 AS INTEGER)) AS signed_up_at
    FROM range(1, {n + 1}) AS t(i)
    """


def customers_for(orders: int) -> int:
    return max(100, orders // 20)


def generate(con: duckdb.DuckDBPyConnection, orders: int, start: dt.date = START, days: int = DAYS) -> None:
    customers = customers_for(orders)
    con.execute(f"CREATE OR REPLACE TABLE main.customers AS {customers_sql(customers)}")
    con.execute(f"CREATE OR REPLACE TABLE main.orders AS {orders_sql(1, orders, start, days, customers)}")
    tickets = max(1, orders // TICKETS_PER_ORDER)
    con.execute(f"CREATE OR REPLACE TABLE main.support_tickets AS {tickets_sql(1, tickets, start, days, customers)}")


def append_days(con: duckdb.DuckDBPyConnection, days: int) -> dt.date:
    """Add `days` more days of orders and tickets after the newest day, at the same daily volume."""
    first_day, last_day = con.execute("SELECT min(ordered_at)::DATE, max(ordered_at)::DATE FROM main.orders").fetchone()
    span = (last_day - first_day).days + 1
    customers = con.execute("SELECT count(*) FROM main.customers").fetchone()[0]
    start = last_day + dt.timedelta(days=1)
    for table, key, rows_sql in (("orders", "order_id", orders_sql), ("support_tickets", "ticket_id", tickets_sql)):
        n, last_id = con.execute(f"SELECT count(*), max({key}) FROM main.{table}").fetchone()
        per_day = max(1, round(n / span))
        con.execute(f"INSERT INTO main.{table} {rows_sql(last_id + 1, per_day * days, start, days, customers)}")
    return start + dt.timedelta(days=days - 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="DuckDB file to write (created if missing)")
    ap.add_argument("--orders", type=int, default=1_000_000, help="rows of orders over three years (default 10^6)")
    ap.add_argument("--days", type=int, default=DAYS, help=f"days of history (default {DAYS})")
    ap.add_argument("--append-days", type=int, default=0, help="append this many days to existing tables instead")
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory_limit while generating, e.g. 4GB")
    args = ap.parse_args(argv)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    config = {"memory_limit": args.memory_limit} if args.memory_limit else {}
    con = duckdb.connect(args.db, config=config)
    began = time.perf_counter()
    if args.append_days:
        last = append_days(con, args.append_days)
        print(f"appended {args.append_days} day(s) through {last} in {time.perf_counter() - began:.1f} s")
    else:
        generate(con, args.orders, START, args.days)
        print(f"generated {args.orders:,} orders over {args.days} days in {time.perf_counter() - began:.1f} s")
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
