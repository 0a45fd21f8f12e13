"""Incremental runs over a long history of many slices: what publishing costs when the output tables are large.

    .venv/bin/python bench/publish.py                      # 2x10^6 orders, 2,000 customers, 3 incremental rounds
    .venv/bin/python bench/publish.py --rows 20000 --customers 50 --rounds 1 --check-only   # (tests/test_bench_smoke.py)

bench/run.py's project has 14 KPIs over 3-5 slice values each: its output tables hold about 16,000 rows, and an
incremental run's publishing costs the same whatever it keeps. A KPI sliced by customer at day grain over two
years, with slice targets, has 1.5 million rows in each of kpi_values, kpi_targets and kpi_status; an incremental
run recomputes a few days of them. This measures whether publishing grows with those days or with the history.

What it does: writes a project of its own (<data dir>/publish_project: one DuckDB warehouse, KPIs `revenue` by day
and `orders` by week, both by customer_id with `slice_targets: true`) and `--rows` orders spread over 2024-2025;
one `kpimetrics run`; then `--rounds` times: one more day of orders, an incremental run (timed as a whole process,
and in DuckDB's statements and in publishing as run_results.json records them). Then a copy of the project runs
`--full-refresh` and its kpi_values, kpi_targets and kpi_status must equal the incremental ones, every row.
Checks bench/run.py's incremental goal on DuckDB's statements (an incremental run within 5 % of a full one; not with
--check-only, for sizes where a run's fixed cost is all there is), writes <data dir>/results_publish.json and exits
1 on a missed goal or a differing row.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import textwrap
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py)

AS_OF = "2026-01-15"
RUN_COLUMNS = {"kpi_values": ("run_id", "computed_at"), "kpi_targets": (), "kpi_status": ("run_id",)}
TABLES = tuple(RUN_COLUMNS)
KPIS = """
kpis:
  - name: revenue
    owner: sales@shop.example
    strategy: grow_sales
    indicator: lagging
    actions: Call the customers whose revenue fell
    model: source('shop', 'orders')
    time: ordered_at
    grain: [day]
    measure: sum(amount)
    dimensions: [customer_id]
    target: 100
    tolerance: 10%
    slice_targets: true
  - name: orders
    owner: sales@shop.example
    strategy: grow_sales
    indicator: leading
    actions: Call the customers who stopped ordering
    model: source('shop', 'orders')
    time: ordered_at
    grain: [week]
    measure: count(*)
    dimensions: [customer_id]
    target: 5
    slice_targets: true
"""
FILES = {
    "kpimetrics.yml": "name: shop\nprofile: shop\ndialect: duckdb\noutput_schema: kpi\ndefaults: {grain: day, lookback: 1}\n",
    "profiles.yml": "shop:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: wh.duckdb}\n",
    "strategy.yml": textwrap.dedent("""
        mission: Serve every customer well
        priorities:
          - name: growth
            owner: ceo@shop.example
            strategies:
              - name: grow_sales
                owner: sales@shop.example
        """),
    "sources.yml": "sources:\n  - name: shop\n    schema: main\n    tables:\n      - name: orders\n",
    "kpis/kpis.yml": KPIS,
}


def make_project(root: Path, rows: int, customers: int) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    con = duckdb.connect(str(root / "wh.duckdb"))
    try:  # `rows` orders over 2024-01-01 .. 2025-12-31, spread evenly over the customers and the seconds
        con.execute(f"""CREATE TABLE orders AS SELECT i AS order_id, (i % {customers})::VARCHAR AS customer_id,
            TIMESTAMP '2024-01-01' + to_seconds((i * 7919) % (731 * 86400)) AS ordered_at,
            (i % 97)::DOUBLE AS amount FROM range({rows}) t(i)""")
    finally:
        con.close()


def add_day(root: Path, day: int, customers: int) -> None:
    con = duckdb.connect(str(root / "wh.duckdb"))
    try:
        con.execute(f"""INSERT INTO orders SELECT 1000000000 + {day} * 100000 + j, (j % {customers})::VARCHAR,
            TIMESTAMP '2026-01-01' + INTERVAL {day} DAY + to_seconds(j), (j % 13)::DOUBLE
            FROM range({customers}) t(j)""")
    finally:
        con.close()


def run(root: Path, *flags: str) -> tuple[float, dict]:
    took = bench.timed(bench.kpimetrics("run", "-q", "--project-dir", str(root), "--as-of", AS_OF, *flags))
    return took.seconds, json.loads((root / "target" / "run_results.json").read_text())["timing"]


def rows(root: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(root / "wh.duckdb"), read_only=True)
    try:  # every column but those naming the run that wrote a row and when
        return {t: con.execute(f"SELECT * EXCLUDE ({', '.join(RUN_COLUMNS[t])}) FROM kpi.{t} ORDER BY ALL"
                               if RUN_COLUMNS[t] else f"SELECT * FROM kpi.{t} ORDER BY ALL").fetchall() for t in TABLES}
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="incremental runs over large output tables")
    ap.add_argument("--rows", type=int, default=2_000_000, help="orders over two years (default 2x10^6)")
    ap.add_argument("--customers", type=int, default=2000, help="slices: distinct customer_id (default 2,000)")
    ap.add_argument("--rounds", type=int, default=3, help="incremental runs, one more day each (default 3)")
    ap.add_argument("--data-dir", type=Path, default=bench.DATA, help="where the project goes (default bench/data)")
    ap.add_argument("--check-only", action="store_true", help="only check the rows; no goal")
    args = ap.parse_args(argv)

    root = args.data_dir / "publish_project"
    make_project(root, args.rows, args.customers)
    full_s, full = run(root)
    sizes = {t: len(v) for t, v in rows(root).items()}
    print(f"first run: {full_s:.2f} s, {full['warehouse']:.2f} s in DuckDB's statements, {full['publish']:.2f} s "
          f"publishing; rows: " + ", ".join(f"{t} {n:,}" for t, n in sizes.items()), flush=True)
    incremental = []
    for day in range(args.rounds):
        add_day(root, day, args.customers)
        seconds, timing = run(root)
        incremental.append({"seconds": seconds, **timing})
        print(f"  incremental, one more day {day + 1}: {seconds:.2f} s, {timing['warehouse']:.2f} s in DuckDB's "
              f"statements, {timing['publish']:.2f} s publishing", flush=True)

    full_copy = args.data_dir / "publish_project_full"
    shutil.rmtree(full_copy, ignore_errors=True)
    shutil.copytree(root, full_copy, ignore=shutil.ignore_patterns("target"))
    refresh_s, refresh = run(full_copy, "--full-refresh")
    differ = [t for t, got in rows(root).items() if got != rows(full_copy)[t]]
    print(f"full refresh on the grown data: {refresh_s:.2f} s, {refresh['warehouse']:.2f} s in DuckDB's statements; "
          + (f"DIFFERENT from the incremental runs: {', '.join(differ)}" if differ else
             "kpi_values, kpi_targets and kpi_status equal the incremental runs', every row"))

    inc_wh = statistics.median(r["warehouse"] for r in incremental)
    ratio = inc_wh / refresh["warehouse"]
    print(f"incremental / full refresh in DuckDB's statements: {inc_wh:.2f} s / {refresh['warehouse']:.2f} s = "
          f"{ratio:.1%} (goal <= {bench.GOALS['incremental_vs_full']:.0%}); publishing {statistics.median(r['publish'] for r in incremental):.2f} s")
    report = {"machine": bench.machine(), "rows": args.rows, "customers": args.customers, "output_rows": sizes,
              "first_run": {"seconds": full_s, **full}, "incremental": incremental,
              "full_refresh": {"seconds": refresh_s, **refresh}, "incremental_vs_full_warehouse": ratio,
              "equal": not differ}
    out = args.data_dir / "results_publish.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {out}")
    missed = ratio > bench.GOALS["incremental_vs_full"] and not args.check_only
    return 1 if differ or missed else 0


if __name__ == "__main__":
    sys.exit(main())
