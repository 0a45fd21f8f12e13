"""offset_to_grain of a derived metric's input (SPEC §9, issue 20), against real MetricFlow.

MetricFlow reads an input with `offset_to_grain: month` by the query's grain (dataflow_plan_builder,
JoinToTimeSpineNode): at or below month (day, month) the input's value in the period that starts at the month's
start (joined to the time spine after aggregation); above it (quarter), and at week always, the input over the
rows of the month's first day (joined before aggregation, each period's first day). The suite's dbt project has
`revenue_at_month_start` (revenue, offset_to_grain month) and `orders_on_year_start` (order_count less itself at
offset_to_grain year); every value of them at day, week, month and quarter, alone and by a dimension of orders and
one through the customers join, equals MetricFlow's within the data's range (semantic_env asks it, in the
session's one batch), as test_semantic compares the other metrics. The data has no orders on January 1st, so the
year offset is NULL at day and week on both sides (a grain above it, month and quarter, is compared).

An incremental run with late rows (one on a month's first day, read by every day of that month) equals
--full-refresh; the definition hash covers the offset's grain.
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
CASES = [Case("revenue_at_month_start", "revenue_at_month_start", ("day", "week", "month", "quarter"), DIMENSIONS),
         Case("orders_on_year_start", "orders_on_year_start", ("week", "month", "quarter"), DIMENSIONS)]
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


def test_an_incremental_run_with_late_rows_equals_a_full_refresh(semantic_shop: SemanticShop, tmp_path):
    dbt = semantic_shop.copy(tmp_path)
    kpimetrics_project(dbt, [Case(c.name, c.metric, c.grains, ("order__channel",)).yaml() for c in CASES])
    # late rows on June's first day (read by every day and week of June) and on its last days
    first, _, full = late_rows_runs(dbt, lambda *args: cli(dbt, "run", "--as-of", AS_OF, *args), (
        "insert into main.orders values (9001, 3, timestamp '2025-06-01 10:00', 'web', 'returned', 250.0, 0, false, "
        "2), (9002, 5, timestamp '2025-06-28 09:00', 'app', 'completed', 80.5, 4.0, true, 1), (9003, 7, "
        "timestamp '2025-06-27 23:00', null, 'completed', 12.25, 0, false, 1)"))

    def at(rows, grain, period):
        return next(r[5] for r in rows if r[:5] == ("revenue_at_month_start", grain, period, "", None))

    for grain, period in (("day", dt.date(2025, 6, 20)), ("week", dt.date(2025, 6, 23))):
        assert close(at(full, grain, period), at(first, grain, period) + 250.0)  # the late row was read


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
