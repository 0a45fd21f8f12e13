"""The suite's dbt project with a semantic layer (tests/dbt/semantic), built by real dbt-duckdb, and what real
MetricFlow (`mf query`, dbt-metricflow in the test-only dbt environment) computes from it (SPEC §9).

Once per session (per xdist worker; `make test` runs the tests that use it on one) `semantic_shop` copies
tests/dbt/semantic to a temporary folder, writes its profiles.yml, runs `dbt build` (seeds of its own data, the
orders and customers models, MetricFlow's time spine; it writes manifest.json and semantic_manifest.json), and
asks MetricFlow for every metric the tests compare, a query per group-by, each as CSV, all in one process
(run_mf_batch; run_mf is `mf query` itself). Nothing reaches the network: dbt's and MetricFlow's telemetry is
off (DO_NOT_TRACK) and the project has no packages. A test works on `copy(dest)`, never on the session's build.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

from dbt_env import DBT_DIR, QUIET_DBT, dbt_bin, run_dbt

SEMANTIC_DIR = DBT_DIR / "semantic"


def mf_bin() -> Path:
    """MetricFlow's CLI beside the test-only dbt."""
    path = dbt_bin().parent / "mf"
    if not path.is_file():
        from engines import engine_unavailable

        engine_unavailable(f"MetricFlow's mf is not installed at {path}: run `make dbt-env`")
    return path


def profiles_yml(project: Path) -> str:
    return yaml.safe_dump({"semantic_shop": {"target": "dev", "outputs": {"dev": {
        "type": "duckdb", "path": str(project / "shop.duckdb"), "threads": 1}}}}, sort_keys=False)


def mf_env(project: Path) -> dict[str, str]:
    """MetricFlow's environment in the dbt project: no DBT_ variables of ours, telemetry off, its profiles.yml."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    env.update(QUIET_DBT, DBT_PROFILES_DIR=str(project))
    return env


def run_mf(project: Path, metrics: list[str], group_by: list[str], out: Path) -> list[dict[str, str]]:
    """`mf query --metrics M,... --group-by G,... --csv out` in the dbt project; the rows as text by column."""
    env = mf_env(project)
    args = [str(mf_bin()), "query", "--metrics", ",".join(metrics), "--group-by", ",".join(group_by),
            "--csv", str(out)]
    proc = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not out.is_file():
        pytest.fail(f"mf query failed (exit {proc.returncode}): {' '.join(args[1:])}\n{proc.stdout[-4000:]}\n"
                    f"{proc.stderr[-2000:]}", pytrace=False)
    with open(out, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# MetricFlow's engine, as `mf query --csv` drives it (dbt_metricflow.cli.main.query), for many queries in one
# process: each `mf query` starts Python and loads dbt, the project and the semantic manifest again, most of its
# time (19 queries: 188 s in one process, 2475 s as 19 `mf query`, one after the other on a loaded machine; the
# same rows), and asks PyPI for a newer MetricFlow, which this does not. argv: a JSON file [[metrics, group_by],
# ...], the CSVs' folder.
MF_BATCH = """
import csv, json, sys
from pathlib import Path
from dbt_metricflow.cli.cli_configuration import CLIConfiguration
from metricflow.engine.metricflow_engine import MetricFlowQueryRequest

cfg = CLIConfiguration()
cfg.setup()
for i, (metrics, group_by) in enumerate(json.loads(Path(sys.argv[1]).read_text())):
    request = MetricFlowQueryRequest.create(metric_names=metrics, group_by_names=group_by)
    df = cfg.mf.query(mf_request=request).result_df
    if df is not None and df.row_count:  # as mf query, which writes no CSV for no rows
        with open(Path(sys.argv[2]) / f"q{i}.csv", "w") as f:
            writer = csv.writer(f)
            writer.writerow(df.column_names)
            writer.writerows(df.rows)
"""


def run_mf_batch(project: Path, queries: list[tuple[list[str], list[str]]], out: Path) -> list[list[dict[str, str]]]:
    """What `mf query --metrics M --group-by G --csv` gives for each (M, G) of `queries`, asked in one process."""
    env = mf_env(project)
    (out / "queries.json").write_text(json.dumps(queries), encoding="utf-8")
    proc = subprocess.run([str(mf_bin().parent / "python"), "-c", MF_BATCH, str(out / "queries.json"), str(out)],
                          cwd=project, env=env, capture_output=True, text=True, timeout=1200)
    missing = [q for i, q in enumerate(queries) if not (out / f"q{i}.csv").is_file()]
    if proc.returncode != 0 or missing:
        pytest.fail(f"MetricFlow's queries failed (exit {proc.returncode}; no rows for {missing})\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}", pytrace=False)
    answers = []
    for i in range(len(queries)):
        with open(out / f"q{i}.csv", newline="", encoding="utf-8") as f:
            answers.append(list(csv.DictReader(f)))
    return answers


Key = tuple[str, str, dt.date, str | None]  # metric, grain, period start (or day), dimension value (None: total)


@dataclass
class MetricFlowValues:
    """MetricFlow's values: (metric, grain, period, dimension value) -> value (None: MetricFlow's NULL)."""

    values: dict[tuple[str, str], dict[tuple[dt.date, str | None], float | None]] = field(default_factory=dict)

    def add(self, rows: list[dict[str, str]], metrics: list[str], grain: str, dimension: str | None) -> None:
        for row in rows:
            period = dt.date.fromisoformat(row[f"metric_time__{grain}"][:10])
            # MetricFlow writes a NULL dimension value as an empty cell; kpimetrics names that slice '(null)'
            member = None if dimension is None else (row[dimension] or "(null)")
            for metric in metrics:
                text = row[metric]
                self.values.setdefault((metric, grain, dimension or ""), {})[(period, member)] = \
                    float(text) if text != "" else None

    def of(self, metric: str, grain: str, dimension: str | None = None) -> dict[tuple[dt.date, str | None], float | None]:
        return self.values.get((metric, grain, dimension or ""), {})


@dataclass(frozen=True)
class SemanticShop:
    root: Path  # the session's build: root/semantic is the dbt project
    mf: MetricFlowValues

    @property
    def project(self) -> Path:
        return self.root / "semantic"

    def copy(self, dest: Path) -> Path:
        """A copy of the built project (artifacts and warehouse file) under `dest`; its dbt project folder."""
        shutil.copytree(self.root, dest, symlinks=True, dirs_exist_ok=True)
        project = dest / "semantic"
        (project / "profiles.yml").write_text(profiles_yml(project), encoding="utf-8")
        return project


# What the tests ask MetricFlow: metrics over the orders semantic model, and over customers; by each grain, alone
# and by a dimension of their own semantic model.
ORDER_METRICS = [
    "revenue", "discounts", "order_count", "buyers", "average_order_value", "smallest_order", "largest_order",
    "gift_orders", "median_order", "p90_order", "items_sold", "web_revenue", "completed_revenue",
    "large_web_orders", "gift_orders_filled", "return_rate", "orders_kept", "web_share", "net_revenue",
    "revenue_per_buyer", "cumulative_revenue", "revenue_month_to_date", "revenue_trailing_7_days",
    "buyers_trailing_2_months", "business_revenue", "spanish_orders", "revenue_growth", "orders_week_over_week",
]
CUSTOMER_METRICS = ["signups"]
# ratio and derived metrics whose inputs read both orders and shipments (by dimensions both reach)
CROSS_METRICS = ["items_per_order", "orders_less_web_shipments", "shipments_less_orders_week_before"]
# derived metrics with an offset_to_grain input (month; year; week; day), asked apart: at each grain MetricFlow
# reads them its own way, and the grain above month too (test_semantic_offset_to_grain.py); in the same queries
TO_GRAIN_METRICS = ["revenue_at_month_start", "orders_on_year_start", "revenue_at_week_start",
                    "revenue_after_first_day"]
GRAINS = ("day", "week", "month")
# dimensions of the metric's own semantic model at every grain; those reached through entity joins (one hop:
# orders to customers; two: orders to customers to areas) at week and month
QUERIES = [(ORDER_METRICS, grain, dim) for grain in GRAINS for dim in (None, "order__channel")] + \
          [(ORDER_METRICS, grain, dim) for grain in ("week", "month")
           for dim in ("customer__region", "customer__area__country")] + \
          [(CUSTOMER_METRICS, grain, dim) for grain in GRAINS for dim in (None, "customer__region", "area__country")] + \
          [(CROSS_METRICS, "week", dim) for dim in (None, "order__channel", "customer__region")] + \
          [(CROSS_METRICS[:2], "month", dim) for dim in (None, "customer__region")] + \
          [(TO_GRAIN_METRICS, grain, dim) for grain in ("day", "week", "month", "quarter")
           for dim in (None, "order__channel", "customer__region")]


@pytest.fixture(scope="session")
def semantic_shop(tmp_path_factory) -> SemanticShop:
    dbt_bin()
    mf_bin()
    root = tmp_path_factory.mktemp("dbt_semantic")
    project = root / "semantic"
    shutil.copytree(SEMANTIC_DIR, project)
    (project / "profiles.yml").write_text(profiles_yml(project), encoding="utf-8")
    run_dbt(project, "build")
    assert (project / "target" / "semantic_manifest.json").is_file()
    values = MetricFlowValues()
    out = root / "mf"
    out.mkdir()
    queries = [(metrics, [f"metric_time__{grain}"] + ([dim] if dim else [])) for metrics, grain, dim in QUERIES]
    for (metrics, grain, dim), rows in zip(QUERIES, run_mf_batch(project, queries, out)):
        values.add(rows, metrics, grain, dim)
    return SemanticShop(root, values)


VALUES_QUERY = ("select name, grain, period_start, dimension, dimension_value, value from kpi.kpi_values "
                "order by 1, 2, 3, 4, 5")


def late_rows_runs(dbt: Path, run: Callable[..., object], *late: str) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """kpi_values (VALUES_QUERY) after a first `run()`, after the statements `late` (late rows) and an incremental
    `run()`, and after `run("--full-refresh")`; the last two the same rows, values equal (relative 1e-9). `run`
    returns click's result (exit code 0 asserted)."""
    from helpers_run import execute, query

    def ok(*args: str) -> list[tuple]:
        out = run(*args)
        assert out.exit_code == 0, out.output
        return query(dbt, VALUES_QUERY, file="shop.duckdb")

    first = ok()
    execute(dbt, *late, file="shop.duckdb")
    incremental, full = ok(), ok("--full-refresh")
    assert [r[:5] for r in incremental] == [r[:5] for r in full]
    for a, b in zip(incremental, full):
        assert a[5] == b[5] or (a[5] is not None and b[5] is not None and
                                math.isclose(a[5], b[5], rel_tol=1e-9, abs_tol=1e-9)), (a, b)
    return first, incremental, full
