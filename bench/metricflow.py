"""MetricFlow on the benchmark's data, timed the same way as kpimetrics (called from bench/run.py --metricflow).

    .venv/bin/python bench/metricflow.py --db bench/data/bench_1000000.duckdb   # alone

It builds its own venv (bench/.venv-metricflow, kept out of kpimetrics' dependencies) with
`dbt-metricflow[dbt-duckdb]` and `dbt-core<1.12` (1.12's parser package downloads a wheel
while it builds), writes a dbt project with the benchmark's KPIs as semantic models and
metrics (bench/data/metricflow_project), and times `mf query` for them, each as a whole
process, against the same DuckDB file. MetricFlow returns query results rather than
writing a table, so each query's output goes to a CSV file (`--csv`).

KPIs MetricFlow cannot express as kpimetrics defines them are left out (see SUBSET_NOTES);
the ratio is against the hand-written SQL's time for the whole project, so it flatters
MetricFlow, which computes less.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-metricflow"
PACKAGES = ["dbt-metricflow[dbt-duckdb]", "dbt-core<1.12"]

SUBSET_NOTES = {
    "net_revenue (slices)": "each slice is a separate group-by; MetricFlow has no 'total plus each dimension separately'",
    "median_discount": "MetricFlow's median is a percentile measure; kept as order_value_p90 only",
    "segment_revenue": "would need a join through the customer entity; left out",
    "tickets_per_order": "a derived metric across two semantic models at month grain works, left out for time",
    "no_data periods and kpi_status": "MetricFlow computes values only: no spine of empty periods, targets or status",
}

DBT_PROJECT = """
name: kpibench
version: "1.0"
profile: kpibench
model-paths: [models]
models:
  kpibench:
    +materialized: view
"""

PROFILES = """
kpibench:
  target: dev
  outputs:
    dev: {{type: duckdb, path: "{db}", schema: mf, threads: 2}}
"""

MODELS = {
    "mf_orders.sql": "select * from main.orders",
    "mf_tickets.sql": "select * from main.support_tickets",
    "metricflow_time_spine.sql": (
        "select cast(d as date) as date_day from generate_series(date '2020-01-01', date '2030-12-31', interval 1 day) t(d)"),
}

SEMANTIC = """
semantic_models:
  - name: orders
    model: ref('mf_orders')
    defaults: {agg_time_dimension: ordered_at}
    entities:
      - {name: order, type: primary, expr: order_id}
    dimensions:
      - {name: ordered_at, type: time, type_params: {time_granularity: day}}
      - {name: region, type: categorical}
      - {name: channel, type: categorical}
      - {name: status, type: categorical}
    measures:
      - {name: net_amount, agg: sum, expr: "case when status = 'completed' then amount - discount end"}
      - {name: completed_amount, agg: sum, expr: "case when status = 'completed' then amount end"}
      - {name: completed_orders, agg: sum, expr: "case when status = 'completed' then 1 else 0 end"}
      - {name: returned_orders, agg: sum, expr: "case when status = 'returned' then 1 else 0 end"}
      - {name: order_count, agg: count, expr: order_id}
      - {name: customers, agg: count_distinct, expr: customer_id}
      - {name: amount_p90, agg: percentile, expr: amount, agg_params: {percentile: 0.9, use_discrete_percentile: false}}
  - name: tickets
    model: ref('mf_tickets')
    defaults: {agg_time_dimension: opened_at}
    entities:
      - {name: ticket, type: primary, expr: ticket_id}
    dimensions:
      - {name: opened_at, type: time, type_params: {time_granularity: day}}
      - {name: ticket_channel, type: categorical, expr: channel}
    measures:
      - {name: ticket_count, agg: count, expr: ticket_id}
      - {name: satisfied, agg: sum, expr: "case when csat >= 4 then 1 else 0 end"}
      - {name: rated, agg: count, expr: csat}
      - {name: first_response_p90_m, agg: percentile, expr: first_response_seconds, agg_params: {percentile: 0.9, use_discrete_percentile: false}}

metrics:
  - {name: net_revenue, label: net_revenue, type: simple, type_params: {measure: net_amount}}
  - {name: orders, label: orders, type: simple, type_params: {measure: order_count}}
  - {name: active_customers, label: active_customers, type: simple, type_params: {measure: customers}}
  - name: avg_order_value
    label: avg_order_value
    type: ratio
    type_params: {numerator: completed_revenue_gross, denominator: completed_order_count}
  - {name: completed_revenue_gross, label: completed_revenue_gross, type: simple, type_params: {measure: completed_amount}}
  - {name: completed_order_count, label: completed_order_count, type: simple, type_params: {measure: completed_orders}}
  - {name: returned_order_count, label: returned_order_count, type: simple, type_params: {measure: returned_orders}}
  - name: return_rate
    label: return_rate
    type: ratio
    type_params: {numerator: returned_order_count, denominator: orders}
  - {name: order_value_p90, label: order_value_p90, type: simple, type_params: {measure: amount_p90}}
  - name: revenue_trailing_3m
    label: revenue_trailing_3m
    type: cumulative
    type_params: {measure: net_amount, cumulative_type_params: {window: 3 months}}
  - name: customers_ytd
    label: customers_ytd
    type: cumulative
    type_params: {measure: customers, cumulative_type_params: {grain_to_date: year}}
  - name: revenue_growth
    label: revenue_growth
    type: derived
    type_params:
      expr: net_revenue / prev - 1
      metrics:
        - {name: net_revenue}
        - {name: net_revenue, offset_window: 1 month, alias: prev}
  - {name: tickets, label: tickets, type: simple, type_params: {measure: ticket_count}}
  - {name: satisfied_count, label: satisfied_count, type: simple, type_params: {measure: satisfied}}
  - {name: rated_count, label: rated_count, type: simple, type_params: {measure: rated}}
  - name: csat
    label: csat
    type: ratio
    type_params: {numerator: satisfied_count, denominator: rated_count}
  - {name: first_response_p90, label: first_response_p90, type: simple, type_params: {measure: first_response_p90_m}}
"""

# the queries kpimetrics' run answers, in MetricFlow's terms: (metrics, group by). The two cumulative metrics are
# queries of their own: at 10^7 rows MetricFlow joins every row to a daily time spine for them, which did not
# finish in minutes, and the other monthly metrics are timed without them.
QUERIES = [
    ("net_revenue", "metric_time__day"),
    ("net_revenue,orders,active_customers,avg_order_value,return_rate,order_value_p90,revenue_growth",
     "metric_time__month"),
    ("revenue_trailing_3m", "metric_time__month"),
    ("customers_ytd", "metric_time__month"),
    ("net_revenue", "metric_time__month,order__region"),
    ("net_revenue", "metric_time__month,order__channel"),
    ("active_customers", "metric_time__month,order__region"),
    ("orders,return_rate", "metric_time__month,order__channel"),
    ("orders", "metric_time__week"),
    ("csat", "metric_time__week"),
    ("csat,first_response_p90,tickets", "metric_time__month"),
]


def ensure_venv() -> Path:
    mf = VENV / "bin" / "mf"
    if not mf.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *PACKAGES], check=True)
    return mf


def write_project(folder: Path, db: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "models").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(DBT_PROJECT)
    (folder / "profiles.yml").write_text(PROFILES.format(db=db))
    for name, sql in MODELS.items():
        (folder / "models" / name).write_text(sql + "\n")
    (folder / "models" / "semantic.yml").write_text(SEMANTIC)
    (folder / "models" / "time_spine.yml").write_text(
        "models:\n  - name: metricflow_time_spine\n    time_spine:\n      standard_granularity_column: date_day\n"
        "    columns:\n      - {name: date_day, granularity: day}\n")
    return folder


QUERY_TIMEOUT = 300.0  # seconds one `mf query` process may take before it is stopped and reported as unfinished


class Unfinished(Exception):
    pass


def _run(cmd: list[str], folder: Path, timeout: float | None = None) -> float:
    env = {**os.environ, "DBT_PROFILES_DIR": str(folder), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    began = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Unfinished(f"{' '.join(cmd)} did not finish in {timeout:.0f} s") from None
    seconds = time.perf_counter() - began
    if out.returncode != 0 or "ERROR" in out.stdout:
        said = [line for line in (out.stdout + out.stderr).splitlines() if line.strip() and "Initiating query" not in line]
        raise RuntimeError(f"{' '.join(cmd)} failed after {seconds:.0f} s:\n" + "\n".join(said[-15:]))
    return seconds


def time_queries(mf: Path, folder: Path, timeout: float = QUERY_TIMEOUT) -> dict:
    """Every query once, each as a whole `mf query` process stopped after `timeout` seconds; the total of those
    that finished is MetricFlow's 'run' (on a subset when some did not)."""
    dbt = mf.parent / "dbt"
    setup = _run([str(dbt), "run", "-q"], folder) + _run([str(dbt), "parse", "-q"], folder)
    per_query: list[float | None] = []
    for i, (metrics, group_by) in enumerate(QUERIES):
        try:
            per_query.append(_run([str(mf), "query", "--metrics", metrics, "--group-by", group_by,
                                   "--csv", str(folder / f"q{i}.csv")], folder, timeout))
        except Unfinished as exc:
            print(f"  MetricFlow: {exc}", flush=True)
            per_query.append(None)
    unfinished = [f"{m} by {g}" for (m, g), t in zip(QUERIES, per_query) if t is None]
    return {"setup_s": setup, "queries_s": per_query, "total_s": sum(t for t in per_query if t is not None),
            "unfinished": unfinished, "timeout_s": timeout}


def bench(db: Path, repeat: int, runs: dict) -> dict:
    """MetricFlow's timings on `db`, and its ratio to the hand-written SQL (whole project)."""
    try:
        mf = ensure_venv()
        folder = write_project(db.parent / "metricflow_project", db)
        rounds = [time_queries(mf, folder) for _ in range(repeat)]
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"  MetricFlow could not be timed: {exc}", flush=True)
        return {"error": str(exc)[-3000:], "left_out": SUBSET_NOTES}
    totals = sorted(r["total_s"] for r in rounds)
    median = totals[len(totals) // 2]
    unfinished = sorted({q for r in rounds for q in r["unfinished"]})
    done = len(QUERIES) - len(unfinished)
    print(f"  MetricFlow: {done} of {len(QUERIES)} queries in {median:.2f} s (median of {repeat})"
          + (f"; not finished in {QUERY_TIMEOUT:.0f} s: {', '.join(unfinished)}" if unfinished else ""), flush=True)
    return {"total_s": median, "rounds": rounds, "left_out": SUBSET_NOTES, "unfinished": unfinished,
            "queries_timed": done, "ratio_vs_hand": median / runs["hand_written_s"],
            "ratio_vs_kpimetrics": median / runs["full_refresh_s"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, type=Path)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    mf = ensure_venv()
    folder = write_project(args.db.resolve().parent / "metricflow_project", args.db.resolve())
    for _ in range(args.repeat):
        print(time_queries(mf, folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
