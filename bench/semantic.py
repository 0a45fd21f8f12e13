"""The semantic-layer benchmark (SPEC §9, issue 20): bench/project's 14 KPIs as metric KPIs over dbt's semantic layer.

    .venv/bin/python bench/semantic.py                                  # 10^7 orders, 5 alternating rounds
    .venv/bin/python bench/semantic.py --rows 10000 --check-only        # correctness only (tests/test_bench_smoke.py)
    .venv/bin/python bench/semantic.py --rows 1000000 --against-project # full refreshes beside bench/project's

The project (written to <data dir>/semantic_project at each run) is a dbt project with no models of its own:
dbt_project.yml and a target/semantic_manifest.json written from SEMANTIC below, by hand, in the shape dbt 1.11
writes it (semantic models over the benchmark's orders, support tickets and customers; a metric per KPI of
bench/project), and a kpimetrics project beside it whose KPIs are bench/project's with their computation replaced
by `metric:` (owners, strategies, grains, targets kept; dimensions in MetricFlow's names). Each metric computes
what its KPI computes, so the values are checked against bench/handwritten.sql's as bench/run.py checks its own:
every row of every KPI, to 1e-9 (dimensions compared by their column name, `order__region` as `region`).

It reuses bench/run.py's functions (data, timing, the hand-written runner, the ratios) and its goals: a full
refresh within 1.2x the hand-written SQL (each round's pair, alternating), an incremental run on one more day
within 5 % of a full refresh for the additive KPIs and trailing windows (bench/run.py's ADDITIVE: `-s` of the same
names; every KPI's incremental run is reported beside it) in DuckDB's statements, as bench/run.py checks it (at 10^8
rows there: `--rows 100000000`, where a process's fixed cost no longer hides the scans), and the CPU of each pair's
processes. Results go to <data dir>/results_semantic.json; exit 1 on a missed goal or a
differing value.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py)

OUTPUT_SCHEMA = "kpi_semantic"  # beside bench/project's `kpi` in the same warehouse (each project owns its schema)
COMPUTATION_KEYS = ("model", "time", "measure", "ratio", "derived", "filter", "window")
DIMENSIONS = {"orders": {"region": "order__region", "channel": "order__channel", "segment": "customer__segment"},
              "support": {"channel": "ticket__channel"}}
COMPLETED = "{{ Dimension('order__status') }} = 'completed'"


def _filter(*where: str) -> dict | None:
    return {"where_filters": [{"where_sql_template": w} for w in where]} if where else None


def _input(name: str, *where: str, alias: str | None = None, offset: dict | None = None) -> dict:
    return {"name": name, "filter": _filter(*where), "alias": alias, "offset_window": offset, "offset_to_grain": None}


def _metric(name: str, kind: str, *where: str, **params) -> dict:
    type_params = {"measure": None, "numerator": None, "denominator": None, "expr": None, "window": None,
                   "grain_to_date": None, "metrics": [], "conversion_type_params": None,
                   "cumulative_type_params": None, **params}
    return {"name": name, "description": None, "type": kind, "type_params": type_params, "filter": _filter(*where),
            "label": name.replace("_", " ").capitalize(), "metadata": None, "config": {"meta": {}}}


def _measure(name: str, *where: str) -> dict:
    return {"name": name, "filter": _filter(*where), "alias": None, "join_to_timespine": False, "fill_nulls_with": None}


def _dim(name: str, expr: str | None = None, time: bool = False) -> dict:
    return {"name": name, "type": "time" if time else "categorical", "expr": expr,
            "type_params": {"time_granularity": "day"} if time else None}


def _agg(name: str, agg: str, expr: str, percentile: float | None = None) -> dict:
    params = {"percentile": percentile, "use_discrete_percentile": False, "use_approximate_percentile": False}
    return {"name": name, "agg": agg, "expr": expr, "agg_params": params if percentile is not None else None,
            "non_additive_dimension": None, "agg_time_dimension": None}


def _model(name: str, time: str | None, entities: list[tuple[str, str, str]], dimensions: list[dict],
           measures: list[dict]) -> dict:
    return {"name": name, "description": None, "primary_entity": None,
            "defaults": {"agg_time_dimension": time} if time else None,
            "node_relation": {"alias": name, "schema_name": "main", "database": None},
            "entities": [{"name": n, "type": t, "expr": e} for n, t, e in entities],
            "dimensions": dimensions, "measures": measures}


SEMANTIC = {
    "semantic_models": [
        _model("orders", "ordered_at", [("order", "primary", "order_id"), ("customer", "foreign", "customer_id")],
               [_dim("ordered_at", time=True), _dim("region"), _dim("channel"), _dim("status"),
                _dim("has_discount", "discount > 0")],
               [_agg("net_amount", "sum", "amount - discount"), _agg("amount", "sum", "amount"),
                _agg("order_count", "count", "order_id"), _agg("buyers", "count_distinct", "customer_id"),
                _agg("amount_p90", "percentile", "amount", 0.9), _agg("median_discount", "median", "discount")]),
        _model("support_tickets", "opened_at", [("ticket", "primary", "ticket_id"), ("customer", "foreign", "customer_id")],
               [_dim("opened_at", time=True), _dim("channel"), _dim("csat_score", "csat")],
               [_agg("tickets", "count", "ticket_id"), _agg("rated_tickets", "count", "csat"),
                _agg("response_p90", "percentile", "first_response_seconds", 0.9)]),
        _model("customers", None, [("customer", "primary", "customer_id")], [_dim("segment")], []),
    ],
    "metrics": [
        _metric("net_revenue", "simple", COMPLETED, measure=_measure("net_amount")),
        _metric("orders", "simple", measure=_measure("order_count")),
        _metric("active_customers", "simple", measure=_measure("buyers")),
        _metric("gross_revenue", "simple", measure=_measure("amount")),
        _metric("avg_order_value", "ratio", COMPLETED, numerator=_input("gross_revenue"), denominator=_input("orders")),
        _metric("return_rate", "ratio", numerator=_input("orders", "{{ Dimension('order__status') }} = 'returned'",
                                                         alias="returned_orders"),
                denominator=_input("orders")),
        _metric("order_value_p90", "simple", measure=_measure("amount_p90")),
        _metric("median_discount", "simple", "{{ Dimension('order__has_discount') }}",
                measure=_measure("median_discount")),
        _metric("revenue_trailing_3m", "cumulative", measure=_measure("net_amount", COMPLETED),
                cumulative_type_params={"window": {"count": 3, "granularity": "month"}, "grain_to_date": None,
                                        "period_agg": "first"}),
        _metric("customers_ytd", "cumulative", measure=_measure("buyers"),
                cumulative_type_params={"window": None, "grain_to_date": "year", "period_agg": "first"}),
        _metric("revenue_growth", "derived", expr="net_revenue / net_revenue_before - 1",
                metrics=[_input("net_revenue"),
                         _input("net_revenue", alias="net_revenue_before", offset={"count": 1, "granularity": "month"})]),
        _metric("csat", "ratio", numerator=_input("tickets", "{{ Dimension('ticket__csat_score') }} >= 4",
                                                  alias="satisfied"),
                denominator=_input("rated_tickets")),
        _metric("first_response_p90", "simple", measure=_measure("response_p90")),
        _metric("tickets", "simple", measure=_measure("tickets")),
        _metric("rated_tickets", "simple", measure=_measure("rated_tickets")),
        # over two semantic models: support tickets by opened_at, orders by ordered_at
        _metric("tickets_per_order", "ratio", numerator=_input("tickets"), denominator=_input("orders")),
    ],
    "project_configuration": {},
}
METRIC_OF = {"segment_revenue": "gross_revenue"}  # every other KPI: the metric of its own name
# a derived KPI has its inputs' slices; a metric KPI names its dimensions
SLICES_OF = {"revenue_growth": ["order__region", "order__channel"]}


def write_project(data: Path) -> Path:
    """The dbt project with its semantic manifest, and bench/project's KPIs as metric KPIs beside it."""
    root = data / "semantic_project"
    (root / "target").mkdir(parents=True, exist_ok=True)
    (root / "kpis").mkdir(exist_ok=True)
    (root / "dbt_project.yml").write_text("name: bench_semantic\nversion: '1.0'\nconfig-version: 2\nprofile: bench\n",
                                          encoding="utf-8")
    (root / "target" / "semantic_manifest.json").write_text(json.dumps(SEMANTIC, indent=1), encoding="utf-8")
    config = (bench.PROJECT / "kpimetrics.yml").read_text(encoding="utf-8").replace(
        "name: bench", "name: bench_semantic").replace("output_schema: kpi", f"output_schema: {OUTPUT_SCHEMA}")
    (root / "kpimetrics.yml").write_text(config, encoding="utf-8")
    (root / "strategy.yml").write_text((bench.PROJECT / "strategy.yml").read_text(encoding="utf-8"), encoding="utf-8")
    for name, dims in DIMENSIONS.items():
        doc = yaml.safe_load((bench.PROJECT / "kpis" / f"{name}.yml").read_text(encoding="utf-8"))
        for kpi in doc["kpis"]:
            for key in COMPUTATION_KEYS:
                kpi.pop(key, None)
            kpi["metric"] = METRIC_OF.get(kpi["name"], kpi["name"])
            if "dimensions" in kpi or kpi["name"] in SLICES_OF:
                kpi["dimensions"] = SLICES_OF.get(kpi["name"]) or [dims[d] for d in kpi["dimensions"]]
        (root / "kpis" / f"{name}.yml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return root


# bench/run.py's comparison, a dimension compared by its column's name and a period past the data that only a
# derived metric's offset copy reaches (no value) not counted as a row of kpimetrics' own
COMPARE_SQL = bench.COMPARE_SQL.replace(
    "SELECT name, grain, period_start, dimension, coalesce(dimension_value, '') AS dv, value FROM kpi.kpi_values",
    "SELECT name, grain, period_start, regexp_replace(dimension, '^[a-z]+__', '') AS dimension, "
    f"coalesce(dimension_value, '') AS dv, value FROM {OUTPUT_SCHEMA}.kpi_values").replace(
    "count(*) FILTER (WHERE h.name IS NULL) AS only_kpimetrics",
    "count(*) FILTER (WHERE h.name IS NULL AND k.value IS NOT NULL) AS only_kpimetrics")
assert COMPARE_SQL.count("regexp_replace") == 1 and "k.value IS NOT NULL) AS only" in COMPARE_SQL


def check(db: Path, label: str) -> bool:
    return bench.check(db, label, COMPARE_SQL)


def run_results(project: Path) -> dict:
    """The last run's run_results.json: beside dbt_project.yml, kpimetrics' target folder is kpi_target/."""
    return json.loads((project / "kpi_target" / "run_results.json").read_text())


def run_kpimetrics(project: Path, db: Path, *flags: str, threads: int | None = None) -> bench.Timing:
    return bench.timed(bench.kpimetrics("run", "-q", "--project-dir", str(project), "--as-of", bench.AS_OF, *flags),
                       env=bench.bench_env(db, None, threads))


def bench_runs(project: Path, db: Path, repeat: int, threads: int | None, report: dict, check_only: bool = False) -> bool:
    full, hand, full_sql = [], [], []
    for i in range(repeat):  # alternating, so both see the same machine
        full.append(run_kpimetrics(project, db, "--full-refresh", threads=threads))
        full_sql.append(float(run_results(project)["timing"]["warehouse"]))
        hand.append(bench.run_hand(db, threads))
        print(f"  round {i + 1}: kpimetrics --full-refresh {full[-1].seconds:.2f} s, "
              f"hand-written {hand[-1].seconds:.2f} s", flush=True)
    ok = check(db, "full refresh")
    incremental, incremental_sql = [], []
    for i in range(repeat):
        bench.append_day(db)
        incremental.append(run_kpimetrics(project, db, threads=threads))
        incremental_sql.append(float(run_results(project)["timing"]["warehouse"]))
        print(f"  incremental, one more day {i + 1}: {incremental[-1].seconds:.2f} s", flush=True)
    modes = {r["mode"] for r in run_results(project)["results"]}
    if modes != {"incremental"}:
        print(f"the incremental run recomputed some KPIs in full: modes {sorted(modes)}")
        ok = False
    # the goal's subject, as bench/run.py times it: the additive KPIs and trailing windows (the same names here)
    full_add, full_add_sql, inc_add, inc_add_sql = [], [], [], []
    for i in range(0 if check_only else repeat):
        full_add.append(run_kpimetrics(project, db, "--full-refresh", "-s", bench.ADDITIVE, threads=threads))
        full_add_sql.append(float(run_results(project)["timing"]["warehouse"]))
    for i in range(0 if check_only else repeat):
        bench.append_day(db)
        inc_add.append(run_kpimetrics(project, db, "-s", bench.ADDITIVE, threads=threads))
        inc_add_sql.append(float(run_results(project)["timing"]["warehouse"]))
        print(f"  additive KPIs and trailing windows: full refresh {full_add[i].seconds:.2f} s, incremental on one "
              f"more day {inc_add[i].seconds:.2f} s", flush=True)
    if not check_only:
        run_kpimetrics(project, db, threads=threads)  # every KPI up to date again, for the check
    bench.run_hand(db, threads)
    ok = check(db, f"incremental, after {repeat} appended day(s)") and ok
    report["runs"] = bench.ratios(full, full_sql, incremental, incremental_sql) | {
        "hand_written_s": statistics.median(t.seconds for t in hand),
        "full_refresh_all_s": [round(t.seconds, 3) for t in full],
        "hand_written_all_s": [round(t.seconds, 3) for t in hand],
        "full_vs_hand_each_round": [round(f.seconds / h.seconds, 3) for f, h in zip(full, hand)],
        "full_vs_hand": statistics.median(f.seconds / h.seconds for f, h in zip(full, hand)),
        # the processes' CPU (user + system): what the two cost the machine, which a loaded machine's wall
        # time hides (each waits its turn for the cores)
        "full_vs_hand_cpu_each_round": [round(f.cpu_seconds / h.cpu_seconds, 3) for f, h in zip(full, hand)],
        "full_vs_hand_cpu": statistics.median(f.cpu_seconds / h.cpu_seconds for f, h in zip(full, hand)),
        "load_average": bench.load_average(),
        "values_equal": ok,
    }
    if full_add:
        report["runs"]["additive"] = bench.ratios(full_add, full_add_sql, inc_add, inc_add_sql)
    return ok


def against_project(project: Path, db: Path, repeat: int, threads: int | None, report: dict) -> None:
    """Full refreshes of this project and of bench/project, alternating on one database (outputs in kpi_semantic
    and kpi): the cost of computing the same 14 KPIs as metric KPIs, in wall time, process CPU and DuckDB's
    statements, each round's pair seeing the same machine."""
    rounds = []
    for i in range(repeat):
        semantic = run_kpimetrics(project, db, "--full-refresh", threads=threads)
        semantic_sql = float(run_results(project)["timing"]["warehouse"])
        plain = bench.run_kpimetrics(db, "--full-refresh", threads=threads)
        plain_sql = bench.warehouse_seconds()
        rounds.append({"wall": semantic.seconds / plain.seconds, "cpu": semantic.cpu_seconds / plain.cpu_seconds,
                       "warehouse": semantic_sql / plain_sql, "load_average": bench.load_average(),
                       "semantic_s": round(semantic.seconds, 3), "project_s": round(plain.seconds, 3)})
        print(f"  round {i + 1}: metric KPIs {semantic.seconds:.2f} s ({semantic.cpu_seconds:.2f} s CPU, "
              f"{semantic_sql:.2f} s in DuckDB), bench/project {plain.seconds:.2f} s ({plain.cpu_seconds:.2f} s CPU, "
              f"{plain_sql:.2f} s in DuckDB), load average {rounds[-1]['load_average']:.1f}", flush=True)
    report["against_project"] = {"rounds": rounds} | {
        key: statistics.median(r[key] for r in rounds) for key in ("wall", "cpu", "warehouse")}


def goals(report: dict) -> list[str]:
    runs, missed = report["runs"], []
    if not runs["values_equal"]:
        missed.append("values differ from the hand-written SQL")
    if runs["full_vs_hand"] > bench.GOALS["full_vs_hand"]:
        missed.append(f"full refresh {runs['full_vs_hand']:.2f}x the hand-written SQL (goal <= {bench.GOALS['full_vs_hand']}x)")
    # the goal's subject as bench/run.py checks it: the additive KPIs and trailing windows, on the time inside the
    # warehouse's statements (a process's fixed cost, interpreter, imports, connecting, publishing, is not a scan and
    # weighs less the larger the data: run this at 10^8 rows for the goal, as bench/run.py --huge does)
    additive = runs["additive"]["incremental_vs_full_warehouse"]
    if additive > bench.GOALS["incremental_vs_full"]:
        missed.append(f"incremental run of the additive KPIs and trailing windows spends {additive:.1%} of a full "
                      f"refresh's time in the warehouse at {report['rows']:,} rows "
                      f"(goal <= {bench.GOALS['incremental_vs_full']:.0%})")
    return missed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="metric KPIs over a semantic layer against hand-written SQL")
    ap.add_argument("--rows", type=int, default=10_000_000, help="orders rows (default 10^7)")
    ap.add_argument("--repeat", type=int, default=5, help="rounds of each timing (default 5; medians are reported)")
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    ap.add_argument("--check-only", action="store_true", help="only check values (full and incremental); no goals")
    ap.add_argument("--against-project", action="store_true",
                    help="only alternate full refreshes of this project and bench/project on one database")
    ap.add_argument("--data-dir", type=Path, default=bench.DATA, help="where generated data goes (default bench/data)")
    args = ap.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": bench.machine(), "rows": args.rows, "repeat": args.repeat, "project": "semantic"}
    project = write_project(args.data_dir)
    db = args.data_dir / f"bench_{args.rows}.duckdb"
    bench.generate(db, args.rows)
    if args.against_project:
        print(f"metric KPIs against bench/project's KPIs over {args.rows:,} orders, alternating:", flush=True)
        against_project(project, db, args.repeat, args.threads, report)
        a = report["against_project"]
        print(f"metric KPIs / bench/project, medians of each round's pair: wall {a['wall']:.2f}x, process CPU "
              f"{a['cpu']:.2f}x, DuckDB's statements {a['warehouse']:.2f}x")
        return bench.finish(report, [], args.data_dir / "results_semantic_against_project.json")
    print(f"metric KPIs over {args.rows:,} orders:", flush=True)
    ok = bench_runs(project, db, 1 if args.check_only else args.repeat, args.threads, report, args.check_only)
    if args.check_only:
        return 0 if ok else 1
    runs = report["runs"]
    print(f"\nfull refresh / hand-written SQL, each round: {', '.join(f'{r:.2f}x' for r in runs['full_vs_hand_each_round'])}; "
          f"median {runs['full_vs_hand']:.2f}x (goal <= {bench.GOALS['full_vs_hand']}x)")
    print(f"incremental / full refresh: {runs['incremental_s']:.2f} s / {runs['full_refresh_s']:.2f} s = "
          f"{runs['incremental_vs_full']:.1%} (in DuckDB's statements {runs['incremental_vs_full_warehouse']:.1%}; "
          f"every KPI)")
    a = runs["additive"]
    print(f"  additive KPIs and trailing windows: {a['incremental_s']:.2f} s / {a['full_refresh_s']:.2f} s = "
          f"{a['incremental_vs_full']:.1%} (in DuckDB's statements {a['incremental_vs_full_warehouse']:.1%}; "
          f"goal <= {bench.GOALS['incremental_vs_full']:.0%})")
    print(f"full refresh / hand-written SQL in process CPU, each round: "
          f"{', '.join(f'{r:.2f}x' for r in runs['full_vs_hand_cpu_each_round'])}; median {runs['full_vs_hand_cpu']:.2f}x; "
          f"load average {runs['load_average']:.1f}")
    return bench.finish(report, goals(report), args.data_dir / "results_semantic.json")


if __name__ == "__main__":
    sys.exit(main())
