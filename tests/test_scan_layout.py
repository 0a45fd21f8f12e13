"""A fused scan's layout (kpimetrics/scan.py), decided before its SQL is rendered (sqlgen.render_scan): kept as
text snapshots for representative scans, beside SQL snapshots of the paths the demo's compiled files do not show
(an incremental scan, a kept pre-aggregate, late_rows). Regenerate with `--update-snapshots`, then review."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlglot import exp

from helpers_run import kpi, kpis_yml, write_run_project
from kpimetrics import Project, compiler, sqlgen
from kpimetrics.dialects import DISTINCT_MASKS
from kpimetrics.scan import Aggregation, PreAggregate, scan_layout

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots" / "scans"
ORDERS = "model: source('shop', 'orders')\ntime: ordered_at\n"


def entry(name: str, body: str) -> str:
    return kpi(name, ORDERS + body + "target: 1\n")


SUM = entry("revenue", "measure: sum(amount)\n")
SHARED = [
    entry("revenue", "grain: [month, quarter]\nmeasure: sum(amount - discount)\nfilter: status <> 'returned'\n"
                     "dimensions: [region, channel]\n"),
    entry("completion_rate", "grain: [month, quarter]\nratio:\n  numerator: count(*) filter (where status = 'completed')\n"
                             "  denominator: count(*)\ndimensions: [channel]\n"),
    entry("avg_order", "measure: avg(amount)\n"),
]
DISTINCT = [
    entry("buyers", "measure: count(distinct customer_id)\ndimensions: [region, channel]\n"),
    entry("order_p90", "measure: quantile_cont(amount, 0.9)\ndimensions: [region]\n"),
]
TO_DATE = [
    entry("buyers_ytd", "grain: [month, quarter]\nmeasure: count(distinct customer_id)\nwindow: {to_date: year}\n"
                        "dimensions: [region]\n"),
    entry("revenue_ytd", "grain: [month, quarter]\nmeasure: sum(amount)\nwindow: {to_date: year}\n"),
]
WINDOW = entry("revenue_trailing_3", "measure: sum(amount)\nwindow: {periods: 3}\ndimensions: [channel]\n")
WEEKS = [
    entry("revenue", "grain: [week, month]\nmeasure: sum(amount)\ndimensions: [region]\n"),
    entry("orders", "grain: [week, month]\nmeasure: count(*)\n"),
]
MIXED = [  # every kind of aggregation in one scan, at two grains
    entry("revenue", "grain: [month, week]\nmeasure: sum(amount)\ndimensions: [region]\n"),
    entry("orders", "measure: count(*)\nfilter: status = 'completed'\n"),
    entry("revenue_trailing_3", "grain: [month, week]\nmeasure: sum(amount)\nwindow: {periods: 3}\n"),
    entry("buyers", "measure: count(distinct customer_id)\ndimensions: [channel]\n"),
    entry("buyers_ytd", "measure: count(distinct customer_id)\nwindow: {to_date: year}\n"),
]
STAGED, KEPT = exp.table_("kpi_stage_pp", db="kpi"), exp.table_("kpi_partials_kept", db="kpi")
NOV, DEC = dt.date(2025, 11, 1), dt.date(2025, 12, 1)


def since_each_grain(day: dt.date):
    """Each KPI's recompute range from the period of its grain holding `day`; weeks a period earlier."""
    from kpimetrics import calendar as cal_

    def since(items, cal):
        out = {}
        for pl, grain in items:
            start = cal_.py_period_start(day, grain, cal)
            out[(pl.name, grain)] = cal_.py_add_periods(start, -1, grain) if grain == "week" else start
        return out
    return since


# name: (KPIs, the incremental starts, the kept pre-aggregate as (kept, late_rows' final day) or None)
CASES = {
    "single_additive": ([SUM], None, None),
    "additive_shared_pre_aggregate": (SHARED, None, None),
    "count_distinct_slices": (DISTINCT, None, None),
    "to_date": (TO_DATE, None, None),
    "window": ([WINDOW], None, None),
    "weeks_with_months": (WEEKS, None, None),
    "incremental": (MIXED, since_each_grain(NOV), None),
    "incremental_one_kpi_in_full": (MIXED, lambda items, cal: {**since_each_grain(NOV)(items, cal),
                                                                ("orders", "month"): None}, None),
    "pre_aggregate_first_run": (MIXED, None, (False, None)),
    "kept_pre_aggregate": (MIXED, since_each_grain(NOV), (True, None)),
    "late_rows": (MIXED, since_each_grain(NOV), (True, dt.date(2025, 11, 20))),
    "late_rows_single_kpi": ([SUM], since_each_grain(NOV), (True, dt.date(2025, 11, 20))),
    # count(DISTINCT x) from bit masks, as DuckDB runs it (dialects.DISTINCT_MASKS)
    "count_distinct_masks": (DISTINCT, None, None),
    "incremental_masks": (MIXED, since_each_grain(NOV), None),
}
MASKS = ("count_distinct_masks", "incremental_masks")
# the paths whose SQL the demo's snapshots (full refreshes) do not show
SQL_CASES = ("incremental", "kept_pre_aggregate", "late_rows", "late_rows_single_kpi", "incremental_masks")


def scan_of(tmp_path: Path, case: str):
    entries, since, kept = CASES[case]
    write_run_project(tmp_path, kpis_yml(*entries), late_rows=None if kept is None or kept[1] is None else "1 day")
    plan = Project.load(tmp_path).plan()
    cal = plan.project.config.calendar
    [scan] = plan.scans(list(plan.kpis))
    pre = None
    if kept is not None:
        pre = sqlgen.KeptPreAggregate(STAGED, KEPT if kept[0] else None, by_day=kept[1] is not None,
                                      settled_before=kept[1])
    return scan.items, cal, since and since(scan.items, cal), pre


def check(path: Path, text: str, update: bool) -> None:
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot {path.name}: run pytest {Path(__file__).name} --update-snapshots"
    assert text == path.read_text(), f"{path.name} changed: review, then --update-snapshots"


@pytest.mark.parametrize("case", CASES)
def test_scan_layout_matches_snapshot(tmp_path, case, update_snapshots):
    items, cal, since, pre = scan_of(tmp_path, case)
    layout = scan_layout(items, cal, since, pre=pre, masks=case in MASKS)
    check(SNAPSHOTS / f"{case}.txt", layout.describe(), update_snapshots)
    assert str(layout) == layout.describe()


@pytest.mark.parametrize("dialect, case", [(d, c) for d in ("duckdb", "postgres") for c in SQL_CASES
                                           if c not in MASKS or d in DISTINCT_MASKS])
def test_scan_sql_matches_snapshot(tmp_path, case, dialect, update_snapshots):
    """An incremental scan's SQL, and with a kept pre-aggregate (DuckDB and PostgreSQL keep them), its statement
    computing the pre-aggregate first."""
    items, cal, since, pre = scan_of(tmp_path, case)
    text = compiler.render(sqlgen.scan_query(items, cal, since, pre=pre, masks=case in MASKS), dialect) + ";\n"
    if pre is not None:
        assert pre.query is not None
        text = f"-- the pre-aggregate, from {pre.fresh_from or 'every period'} on\n" \
               + compiler.render(pre.query, dialect) + ";\n\n-- the scan\n" + text
    check(SNAPSHOTS / f"{case}.{dialect}.sql", text, update_snapshots)


@pytest.mark.parametrize("case", CASES)
def test_the_query_has_the_layouts_ctes_in_order(tmp_path, case):
    """The renderer builds what the layout decides, nothing else: its CTEs, in its order; each KPI and grain's rows
    from the aggregation the layout gives it."""
    items, cal, since, pre = scan_of(tmp_path, case)
    layout = scan_layout(items, cal, since, pre=pre, masks=case in MASKS)
    query = sqlgen.render_scan(layout, cal, pre)
    assert [c.alias for c in query.ctes] == [n for n, _ in layout.relation.ctes] + [c.name for c in layout.ctes]
    served = {(pl.name, a.grain) for a in layout.ctes if isinstance(a, Aggregation) for pl in a.kpis}
    assert served == {(pl.name, grain) for pl, grain in items}
    assert (layout.pre_aggregate is not None) == any(a.source == "pre-aggregate" for a in layout.aggregations)


def test_a_kept_pre_aggregate_reads_the_rows_from_the_first_recomputed_period_and_the_kept_rows_before(tmp_path):
    items, cal, since, pre = scan_of(tmp_path, "kept_pre_aggregate")
    pp = scan_layout(items, cal, since, pre=pre).pre_aggregate
    assert isinstance(pp, PreAggregate) and pp.statement
    # weeks start a week earlier than November: the first recomputed period is the week holding 2025-10-27
    assert pp.fresh_from == pp.reads_from == dt.date(2025, 10, 20)
    assert pp.kept_from == dt.date(2025, 1, 1)  # the to-date count distinct's year, read again from its rows
