"""An incremental run writes the statuses and targets of the periods it recomputes and keeps the others where nothing
they read can have changed (runner._kept_statuses): every target of the KPI an expression of the period, its
targets, owner, strategy and priority as kpi_catalog.status_hash recorded them, every kept period as complete or
incomplete as when its status was written. Whatever changed, kpi_status, kpi_targets and kpi_catalog equal a --full-refresh's.

Neither a status nor a target row names a run of its own (a status's run_id is its value's), so which rows a run
wrote is seen by marking every published row (attainment and at_risk_threshold -1) before it: a kept row keeps the
mark, a written one loses it.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from helpers_run import (
    AS_OF, execute, insert_orders, kpi, kpi_result, kpis_yml, make_orders, ok, query, run, table, write_run_project,
)

REVENUE = kpi("revenue", """
    model: source('shop', 'orders')
    time: ordered_at
    grain: [month, week]
    measure: sum(amount)
    dimensions: [channel]
    target: {month: {schedule: [{from: 2025-01-01, value: 9000}, {from: 2025-07-01, value: 9500}]}, week: 2100}
    tolerance: 5%
""")
# a relative target reads its baseline's values: kept where the baseline lies before the run's range
BUYERS = kpi("buyers", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: count(distinct customer_id)
    target:
      baseline: {from: 2025-01-01, to: 2025-03-31}
      change: 10%
      by: 2025-12-31
      path: linear
""", strategy="keep_customers")
# ... and all written again where the run recomputes a period of its baseline
RECENT_BUYERS = kpi("recent_buyers", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: count(distinct customer_id)
    target:
      baseline: {from: 2025-10-01, to: 2025-11-30}
      change: 5%
      by: 2026-06-30
""", strategy="keep_customers")
KPIS = kpis_yml(REVENUE, BUYERS, RECENT_BUYERS)
SINCE = {"month": dt.date(2025, 11, 1), "week": dt.date(2025, 12, 1)}  # lookback 1 from 2025-12 and 2025-12-08


def project(root: Path) -> Path:
    root = write_run_project(root, KPIS)
    insert_orders(root, make_orders(dt.date(2025, 1, 1), dt.date(2025, 12, 12)))
    return root


def add_late_rows(root: Path) -> None:
    insert_orders(root, make_orders(dt.date(2025, 12, 10), dt.date(2025, 12, 20), seed=11, first_id=100_000))


MARKS = {"kpi_status": "attainment", "kpi_targets": "at_risk_threshold"}  # the column each table's mark is in


def mark_statuses(root: Path, name: str | None = None) -> None:
    """Mark every status and target row (of `name`, when given: the rows of the others stay comparable with a full
    refresh's)."""
    for table, column in MARKS.items():
        execute(root, f"UPDATE kpi.{table} SET {column} = -1" + (f" WHERE name = '{name}'" if name else ""))


def marked(root: Path, name: str, table: str = "kpi_status") -> dict[tuple[str, dt.date, str | None], bool]:
    """Whether each row of `name` in `table` kept the mark: (grain, period_start, dimension_value) -> kept."""
    rows = query(root, f"SELECT grain, period_start, dimension_value, {MARKS[table]} = -1 FROM kpi.{table} "
                       f"WHERE name = '{name}'")
    assert rows, (name, table)
    return {(g, p, d): bool(m) for g, p, d, m in rows}


def assert_equals_full_refresh(root: Path, tmp_path: Path, as_of: dt.date) -> None:
    full = tmp_path / "full"
    shutil.copytree(root, full, ignore=shutil.ignore_patterns("target"))
    ok(run(full, full_refresh=True, as_of=as_of))
    for name in ("kpi_status", "kpi_targets", "kpi_catalog"):
        assert table(root, name) == table(full, name), name


def test_an_incremental_run_keeps_the_statuses_before_its_range_and_writes_the_rest(tmp_path):
    root = project(tmp_path / "p")
    ok(run(root))
    mark_statuses(root)
    add_late_rows(root)
    ok(second := run(root))
    assert {kpi_result(second, n).mode for n in ("revenue", "buyers", "recent_buyers")} == {"incremental"}
    for table in MARKS:
        for name in ("revenue", "buyers"):
            for (grain, start, _), kept in marked(root, name, table).items():
                assert kept == (start < SINCE[grain]), (table, name, grain, start)
        assert not any(marked(root, "recent_buyers", table).values()), table
    # the same run on an unmarked copy equals a full refresh
    clean = project(tmp_path / "clean")
    ok(run(clean))
    add_late_rows(clean)
    ok(run(clean))
    assert_equals_full_refresh(clean, tmp_path, AS_OF)
    assert query(clean, "SELECT count(DISTINCT status_hash), count(status_hash) FROM kpi.kpi_catalog") == [(3, 3)]


def _edit(root: Path, old: str, new: str, file: str = "kpis/kpis.yml") -> None:
    path = root / file
    text = path.read_text()
    assert old in text, (old, file)
    path.write_text(text.replace(old, new, 1))


# edits that change statuses but no value: each makes the next run write every status of `revenue`
EDITS = {
    "target": ("week: 2100", "week: 2300", "kpis/kpis.yml"),
    "schedule": ("value: 9500}", "value: 9900}", "kpis/kpis.yml"),
    "tolerance": ("tolerance: 5%", "tolerance: 20%", "kpis/kpis.yml"),
    "at_risk_below": ("tolerance: 5%", "at_risk_below: 1500", "kpis/kpis.yml"),
    "direction": ("tolerance: 5%", "tolerance: 5%\n    direction: lower_is_better", "kpis/kpis.yml"),
    "slice_targets": ("tolerance: 5%", "tolerance: 5%\n    slice_targets: true", "kpis/kpis.yml"),
    "owner": ("owner: sales@shop.example\n    strategy: grow_sales", "owner: ops@shop.example\n    strategy: grow_sales",
              "kpis/kpis.yml"),
    "priority": ("- name: growth", "- name: expansion", "strategy.yml"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_change_to_what_statuses_read_writes_them_all(tmp_path, edit):
    root = project(tmp_path / "p")
    ok(run(root))
    mark_statuses(root, "revenue")
    add_late_rows(root)
    _edit(root, *EDITS[edit])
    ok(second := run(root))
    assert kpi_result(second, "revenue").mode == "incremental"  # no value changed
    assert not any(marked(root, "revenue").values())
    assert not any(marked(root, "revenue", "kpi_targets").values())
    assert_equals_full_refresh(root, tmp_path, AS_OF)


@pytest.mark.parametrize("first_as_of, second_as_of", [
    # the first run judged October and later incomplete; the second judges them complete
    (dt.date(2025, 10, 15), AS_OF),
    # the second run's as_of lies before its range: kept periods become incomplete
    (AS_OF, dt.date(2025, 10, 15)),
])
def test_completeness_changed_since_the_statuses_were_written_writes_them_all(tmp_path, first_as_of, second_as_of):
    root = project(tmp_path / "p")
    ok(run(root, as_of=first_as_of))
    mark_statuses(root, "revenue")
    add_late_rows(root)
    ok(second := run(root, as_of=second_as_of))
    assert kpi_result(second, "revenue").mode == "incremental"
    assert not any(marked(root, "revenue").values())
    assert_equals_full_refresh(root, tmp_path, second_as_of)


def test_incomplete_statuses_before_the_range_are_kept_while_as_of_stays(tmp_path):
    """Periods that end after as_of are incomplete; a run with the same as_of keeps those before its range as they
    are, incomplete then and now."""
    as_of = dt.date(2025, 10, 15)
    root = project(tmp_path / "p")
    ok(run(root, as_of=as_of))
    mark_statuses(root)
    add_late_rows(root)
    ok(run(root, as_of=as_of))
    for table in MARKS:
        for (grain, start, _), kept in marked(root, "revenue", table).items():
            assert kept == (start < SINCE[grain]), (table, grain, start)
    assert query(root, "SELECT count(*) FROM kpi.kpi_status WHERE name = 'revenue' AND attainment = -1 "
                       "AND NOT is_complete")[0][0] > 0
    clean = project(tmp_path / "clean")
    ok(run(clean, as_of=as_of))
    add_late_rows(clean)
    ok(run(clean, as_of=as_of))
    assert_equals_full_refresh(clean, tmp_path, as_of)


def test_a_warehouse_without_status_hashes_writes_every_status_once(tmp_path):
    """Rows of kpi_catalog written before schema version 7 have no status_hash: the first run writes every
    status of their KPIs, and the run after it keeps them."""
    root = project(tmp_path / "p")
    ok(run(root))
    execute(root, "UPDATE kpi.kpi_catalog SET status_hash = NULL")
    mark_statuses(root, "revenue")
    add_late_rows(root)
    ok(run(root))
    assert not any(marked(root, "revenue").values())
    assert not any(marked(root, "revenue", "kpi_targets").values())
    assert_equals_full_refresh(root, tmp_path, AS_OF)
    mark_statuses(root, "revenue")
    ok(run(root))
    assert any(marked(root, "revenue").values())
    assert any(marked(root, "revenue", "kpi_targets").values())


def test_every_judged_field_changes_the_status_hash(tmp_path):
    """model.JUDGED_FIELDS are what kpi_status takes of a KPI besides its values; a change to any of them, or to
    its strategy's priority, is a new status_hash (targets.judgement_hash)."""
    from kpimetrics import Project
    from kpimetrics.model import JUDGED_FIELDS, NO_VALUE_FIELDS
    from kpimetrics.targets import judgement_hash

    assert JUDGED_FIELDS <= NO_VALUE_FIELDS  # a value field's change recomputes every period anyway
    defs = Project.load(project(tmp_path / "p")).definition
    revenue = next(k for k in defs.kpis if k.name == "revenue")
    other = {"owner": "ops@shop.example", "strategy": "keep_customers", "direction": "lower_is_better",
             "target": 1234, "tolerance": "20%", "at_risk_below": 5, "at_risk_above": 5, "slice_targets": True}
    assert set(other) == JUDGED_FIELDS
    base = judgement_hash(revenue, "growth", defs)
    assert judgement_hash(revenue, "expansion", defs) != base
    for field, value in other.items():
        assert judgement_hash(revenue.model_copy(update={field: value}), "growth", defs) != base, field
