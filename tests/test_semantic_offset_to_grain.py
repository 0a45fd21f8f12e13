"""offset_to_grain of a derived metric's input (SPEC §9, issue 20), against real MetricFlow.

MetricFlow reads an input with `offset_to_grain: month` by the query's grain (dataflow_plan_builder,
JoinToTimeSpineNode): at or below month (day, month) the input's value in the period that starts at the month's
start (joined to the time spine after aggregation); above it (quarter), and at week always, the input over the
rows of the month's first day (joined before aggregation, each period's first day). The same rules read
`offset_to_grain: week` (a day: the week's Monday; a week: its Monday's rows; a month or quarter: the rows of the
Monday of the week that holds its first day, in the month before for February to June) and `day` (a
day: itself; a week, month or quarter: the rows of its first day). The suite's dbt project has
`revenue_at_month_start` (revenue, offset_to_grain month), `orders_on_year_start` (order_count less itself at
offset_to_grain year), `revenue_at_week_start` (revenue, week) and `revenue_after_first_day` (revenue less itself
at offset_to_grain day); every value of them at day, week, month and quarter, alone and by a dimension of orders
and one through the customers join, equals MetricFlow's within the data's range (semantic_env asks it, in the
session's one batch), as test_semantic compares the other metrics. The data has no orders on January 1st, so the
year offset is NULL at day and week on both sides (a grain above it, month and quarter, is compared).

An incremental run with late rows equals --full-refresh: for the month and year offsets one on a month's first
day, read by every day of that month; for the week and day offsets one on a Monday, read by every day of its week,
and one on the Monday that holds July's first day, read by July at month. The definition hash covers the offset's
grain.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from kpimetrics import Project
from semantic_env import TO_GRAIN_METRICS, SemanticShop, late_rows_runs  # noqa: F401
from semantic_env import semantic_shop  # noqa: F401  (the session's build)
from test_semantic import AS_OF, Case, cli, close, compare, fetch, kpimetrics_project, product

pytestmark = pytest.mark.dbt

DIMENSIONS = ("order__channel", "customer__region")
GRAINS = ("day", "week", "month", "quarter")
CASES = [Case("revenue_at_month_start", "revenue_at_month_start", GRAINS, DIMENSIONS),
         Case("orders_on_year_start", "orders_on_year_start", ("week", "month", "quarter"), DIMENSIONS),
         Case("revenue_at_week_start", "revenue_at_week_start", GRAINS, DIMENSIONS),
         Case("revenue_after_first_day", "revenue_after_first_day", GRAINS, DIMENSIONS)]
assert [c.metric for c in CASES] == TO_GRAIN_METRICS


@pytest.fixture(scope="module")
def ran(semantic_shop: SemanticShop, tmp_path_factory) -> Path:
    dbt = semantic_shop.copy(tmp_path_factory.mktemp("semantic_to_grain"))
    kpimetrics_project(dbt, [c.yaml() for c in CASES])
    out = cli(dbt, "run", "--as-of", AS_OF)
    assert out.exit_code == 0, out.output
    return dbt


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_value_equals_metricflows(case: Case, ran: Path, semantic_shop: SemanticShop):
    compared = {}
    for grain in case.grains:
        totals = [p for (p, _) in product(ran, case.name, grain)]
        assert totals, f"{case.name} at {grain}: no rows"
        lo, hi = min(totals), max(totals)
        for dimension in ("", *case.dimensions):
            assert (case.metric, grain, dimension) in semantic_shop.mf.values, (case.metric, grain, dimension)
            compared[grain] = compared.get(grain, 0) + compare(
                case, grain, dimension, product(ran, case.name, grain, dimension),
                semantic_shop.mf.of(case.metric, grain, dimension or None), lo, hi, True)
    # not vacuous: values at every grain (the year offset: at the grains above it that read January's orders)
    assert all(compared[g] >= 3 for g in case.grains if (case.metric, g) != ("orders_on_year_start", "week")), compared


def test_the_grains_read_the_offset_as_metricflow_does(ran: Path):
    """By hand, from the orders: a day reads the month's first day, a month itself, a quarter the first day of
    its first month; a week the first day of the month that holds its Monday."""
    revenue = {(g, p): v for g in ("day", "week", "month", "quarter")
               for (p, _), (v, _) in product(ran, "revenue_at_month_start", g).items()}
    day = dict(fetch(ran, "select cast(ordered_at as date), sum(amount) from main.orders group by 1"))
    month = dict(fetch(ran, "select cast(date_trunc('month', ordered_at) as date), sum(amount) from main.orders "
                            "group by 1"))
    may, april = dt.date(2025, 5, 1), dt.date(2025, 4, 1)
    assert close(revenue[("day", dt.date(2025, 5, 17))], day[may])
    assert close(revenue[("month", may)], month[may])
    assert close(revenue[("quarter", april)], day[april])
    assert close(revenue[("week", dt.date(2025, 5, 12))], day[may])  # Monday 12 May


def test_week_and_day_offsets_read_what_metricflow_does(ran: Path):
    """By hand, from the orders: offset_to_grain week reads a day's Monday, a week's Monday, and a month's or
    quarter's the Monday of the week that holds its first day (in the month before for May and the second
    quarter); offset_to_grain day reads a day itself and a longer period's first day."""
    def values(name: str) -> dict[tuple[str, dt.date], float | None]:
        return {(g, p): v for g in GRAINS for (p, _), (v, _) in product(ran, name, g).items()}

    week_start, after_first = values("revenue_at_week_start"), values("revenue_after_first_day")
    day = dict(fetch(ran, "select cast(ordered_at as date), sum(amount) from main.orders group by 1"))
    total = {g: dict(fetch(ran, f"select cast(date_trunc('{g}', ordered_at) as date), sum(amount) from main.orders "
                                "group by 1")) for g in ("week", "month", "quarter")}
    d = dt.date
    assert close(week_start[("day", d(2025, 5, 14))], day[d(2025, 5, 12)])  # a Wednesday: its Monday
    assert close(week_start[("week", d(2025, 5, 12))], day[d(2025, 5, 12)])
    assert close(week_start[("month", d(2025, 5, 1))], day[d(2025, 4, 28)])  # 1 May is in the week of 28 April
    assert close(week_start[("quarter", d(2025, 4, 1))], day[d(2025, 3, 31)])
    assert close(after_first[("day", d(2025, 5, 14))], 0)
    assert close(after_first[("week", d(2025, 5, 12))], total["week"][d(2025, 5, 12)] - day[d(2025, 5, 12)])
    assert close(after_first[("month", d(2025, 5, 1))], total["month"][d(2025, 5, 1)] - day[d(2025, 5, 1)])
    assert close(after_first[("quarter", d(2025, 4, 1))], total["quarter"][d(2025, 4, 1)] - day[d(2025, 4, 1)])
    # no orders on 30 December 2024 nor on 1 January: the first quarter has neither value, on both sides
    assert week_start.get(("quarter", d(2025, 1, 1))) is None and after_first.get(("quarter", d(2025, 1, 1))) is None


def _at(rows: list[tuple], name: str, grain: str, period: dt.date) -> float | None:
    """A KPI's total at one period in kpi_values' rows (late_rows_runs), None without one."""
    return next((r[5] for r in rows if r[:5] == (name, grain, period, "", None)), None)


# Late rows within what an incremental run recomputes (defaults.lookback: 1, and the offset's periods) of each
# group's KPIs: the month and year offsets reach back to June's first day at day and week, the week and day
# offsets a week at day (a row on June 1st is older than the lookback there, as for any KPI at day)
LATE = {
    "month_year": "insert into main.orders values (9001, 3, timestamp '2025-06-01 10:00', 'web', 'returned', 250.0, "
                  "0, false, 2), (9002, 5, timestamp '2025-06-28 09:00', 'app', 'completed', 80.5, 4.0, true, 1), "
                  "(9003, 7, timestamp '2025-06-27 23:00', null, 'completed', 12.25, 0, false, 1)",
    "week_day": "insert into main.orders values (9004, 2, timestamp '2025-06-23 08:30', 'web', 'completed', 40.0, 0, "
                "false, 1), (9002, 5, timestamp '2025-06-28 09:00', 'app', 'completed', 80.5, 4.0, true, 1), "
                "(9005, 4, timestamp '2025-06-30 11:00', 'store', 'completed', 19.5, 0, false, 1)",
}


@pytest.mark.parametrize("group", ["month_year", "week_day"])
def test_an_incremental_run_with_late_rows_equals_a_full_refresh(group: str, semantic_shop: SemanticShop, tmp_path):
    dbt = semantic_shop.copy(tmp_path)
    cases = CASES[:2] if group == "month_year" else CASES[2:]
    kpimetrics_project(dbt, [Case(c.name, c.metric, c.grains, ("order__channel",)).yaml() for c in cases])
    first, _, full = late_rows_runs(dbt, lambda *args: cli(dbt, "run", "--as-of", AS_OF, *args), LATE[group])

    def grew(name: str, grain: str, period: dt.date, by: float) -> bool:
        return close(_at(full, name, grain, period), _at(first, name, grain, period) + by)

    if group == "month_year":  # the row on June's first day is read by every day and week of June
        assert grew("revenue_at_month_start", "day", dt.date(2025, 6, 20), 250.0)
        assert grew("revenue_at_month_start", "week", dt.date(2025, 6, 23), 250.0)
        return
    # the row on Monday 23 June is read by every day of its week, and is its week's first day; Monday 30 June is
    # past the data: a week of its own, and read by July at month (the week that holds July's first day)
    assert grew("revenue_at_week_start", "day", dt.date(2025, 6, 25), 40.0)
    assert grew("revenue_after_first_day", "week", dt.date(2025, 6, 23), 80.5)
    july, last_week = dt.date(2025, 7, 1), dt.date(2025, 6, 30)
    assert _at(first, "revenue_at_week_start", "month", july) is None
    assert close(_at(full, "revenue_at_week_start", "month", july), 19.5)
    assert close(_at(full, "revenue_after_first_day", "week", last_week), 0.0)


def test_the_definition_hash_covers_the_offsets_grain(ran: Path):
    """The same metric with offset_to_grain quarter rather than month is another definition."""
    def hashes(dbt: Path) -> dict[str, str]:
        plan = Project.load(dbt).plan(today=dt.date.fromisoformat(AS_OF))
        return {n: p.definition_hash for n, p in plan.kpis.items()}

    before = hashes(ran)
    manifest = ran / "target" / "semantic_manifest.json"
    text = manifest.read_text(encoding="utf-8")
    doc = json.loads(text)
    [metric] = [m for m in doc["metrics"] if m["name"] == "revenue_at_month_start"]
    metric["type_params"]["metrics"][0]["offset_to_grain"] = "quarter"
    try:
        manifest.write_text(json.dumps(doc), encoding="utf-8")
        after = hashes(ran)
    finally:
        manifest.write_text(text, encoding="utf-8")
    assert after["revenue_at_month_start"] != before["revenue_at_month_start"]
    assert after["orders_on_year_start"] == before["orders_on_year_start"]
