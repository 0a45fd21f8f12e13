"""KPIs over dbt's semantic layer (SPEC §9, issue 20), against real MetricFlow.

The suite's dbt project with a semantic layer (tests/dbt/semantic: its own orders and customers, semantic models
over both, MetricFlow's time spine, a metric of every kind) is built once by dbt-duckdb, and MetricFlow's own
`mf query --metrics M --group-by metric_time__<grain>[,dim] --csv` gives the expected values (semantic_env.py).
A kpimetrics project at the dbt project's root names each metric in a KPI, at day, week and month, alone and by
a dimension of the metric's semantic model; after `kpimetrics run`, every value in kpi_values equals
MetricFlow's within the data's range (relative 1e-9), and every value MetricFlow has there is in kpi_values.

Where kpimetrics deliberately differs (README, design notes): a cumulative metric at a grain coarser than a day is
the window that ends at the period's end, where MetricFlow reports the window of the period's first day, so it
is compared with MetricFlow's daily value on the period's last day; slices are sparse (a cumulative metric's slice
has a row only in periods with rows of that slice); MetricFlow's rows past the data (to the time spine's end)
are outside the comparison.

Bad metric KPIs exit 1 with their code at their file and line: in the kpimetrics YAML, or for what the metric
itself uses that kpimetrics does not compute, in the dbt project's YAML.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from helpers_run import kpi, kpis_yml, strategy_yml
from kpimetrics import Project
from kpimetrics.cli import main
from semantic_env import CROSS_METRICS, SemanticShop, late_rows_runs, run_mf, semantic_shop  # noqa: F401  (the session's build)
from dbt_env import run_dbt

pytestmark = pytest.mark.dbt

AS_OF = "2025-07-15"  # after the last order (June 2025)
ISSUE = re.compile(r"^(?P<path>[^\s:][^:]*?)(?::(?P<line>\d+):(?P<col>\d+))?: "
                   r"(?P<level>error|warning)\[(?P<code>[A-Z]+\d+)\]: (?P<message>.*)$")


JOINED = ("customer__region", "customer__area__country")  # through one entity join, and through two


@dataclass(frozen=True)
class Case:
    """A metric KPI: its name, the metric, its grains and its dimensions (MetricFlow's names)."""

    name: str
    metric: str
    grains: tuple[str, ...] = ("day", "week", "month")
    dimensions: tuple[str, ...] = ("order__channel", *JOINED)
    cumulative: bool = False
    fill: bool = False  # fill_nulls_with: 0

    def yaml(self) -> str:
        dims = f"\ndimensions: [{', '.join(self.dimensions)}]" if self.dimensions else ""
        return kpi(self.name, f"metric: {self.metric}\ngrain: [{', '.join(self.grains)}]{dims}\ntarget: 1")


SIMPLE = ["revenue", "discounts", "order_count", "buyers", "average_order_value", "smallest_order", "largest_order",
          "gift_orders", "median_order", "p90_order", "items_sold"]
FILTERED = ["web_revenue", "completed_revenue", "large_web_orders", "gift_orders_filled", "business_revenue",
            "spanish_orders"]
RATIO_DERIVED = ["return_rate", "orders_kept", "web_share", "net_revenue", "revenue_per_buyer"]
CROSS = CROSS_METRICS[:2]
CASES = (
    [Case(m, m, fill=m == "gift_orders_filled") for m in SIMPLE + FILTERED + RATIO_DERIVED]
    + [Case("signups", "signups", dimensions=("customer__region", "area__country"))]
    + [Case("cumulative_revenue", "cumulative_revenue", cumulative=True),
       Case("revenue_month_to_date", "revenue_month_to_date", ("day", "month"), cumulative=True),
       Case("revenue_trailing_7_days", "revenue_trailing_7_days", ("day",), cumulative=True),
       Case("revenue_trailing_week", "revenue_trailing_7_days", ("week",), cumulative=True),
       Case("buyers_trailing_2_months", "buyers_trailing_2_months", ("month",), cumulative=True)]
    + [Case("revenue_growth", "revenue_growth", ("month",)),  # offset_window: 1 month
       Case("orders_week_over_week", "orders_week_over_week", ("day", "week"))]  # offset_window: 1 week
    # inputs over orders and shipments, by a dimension of each and one both reach through a join
    + [Case(m, m, ("week", "month"), ("order__channel", "customer__region")) for m in CROSS]
    + [Case("shipments_less_orders_week_before", "shipments_less_orders_week_before", ("week",),
            ("order__channel", "customer__region"))]
)
# a KPI of kpimetrics' own form over the same dbt model: it shares the metric KPIs' scan
OWN_KPI = kpi("own_revenue", "model: ref('orders')\ntime: ordered_at\nmeasure: sum(amount)\ngrain: [day, week, month]\n"
                             "target: 1")


# a derived KPI over two metric KPIs: their slices, and targets per slice (validate/targets knows a metric KPI's)
DERIVED_KPI = kpi("revenue_per_order", "derived: revenue / order_count\ngrain: [month]\n"
                                       "slice_targets: {order__channel: {web: 50}}\ntarget: 60")


def kpimetrics_project(dbt: Path, entries: list[str]) -> Path:
    (dbt / "kpimetrics.yml").write_text("name: semantic_kpis\ndialect: duckdb\noutput_schema: kpi\n"
                                        "defaults: {grain: month, lookback: 1}\n", encoding="utf-8")
    (dbt / "strategy.yml").write_text(strategy_yml(["grow_sales"]), encoding="utf-8")
    (dbt / "kpis").mkdir(exist_ok=True)
    (dbt / "kpis" / "kpis.yml").write_text(kpis_yml(*entries), encoding="utf-8")
    return dbt


def cli(root: Path, *args: str):
    return CliRunner().invoke(main, [*args, "--project-dir", str(root)])


def issues(output: str) -> list[dict]:
    out = []
    for text in output.splitlines():
        m = ISSUE.match(text.strip())
        if m:
            out.append({**m.groupdict(), "line": int(m["line"] or 0)})
    return out


def line_of(path: Path, text: str) -> int:
    lines = [i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line]
    assert len(lines) == 1, (path, text, lines)
    return lines[0]


def fetch(dbt: Path, sql: str, *params) -> list[tuple]:
    con = duckdb.connect(str(dbt / "shop.duckdb"), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@pytest.fixture(scope="module")
def ran(semantic_shop: SemanticShop, tmp_path_factory) -> Path:
    """The session's build with a kpimetrics project of every case at its root, run once."""
    dbt = semantic_shop.copy(tmp_path_factory.mktemp("semantic_run"))
    kpimetrics_project(dbt, [c.yaml() for c in CASES] + [OWN_KPI, DERIVED_KPI])
    out = cli(dbt, "run", "--as-of", AS_OF)
    assert out.exit_code == 0, out.output
    assert not [i for i in issues(out.output) if i["level"] == "error"], out.output
    return dbt


def product(dbt: Path, name: str, grain: str, dimension: str = "") -> dict[tuple[dt.date, str | None],
                                                                          tuple[float | None, dt.date]]:
    """A KPI's total (dimension '') or one dimension's slices at a grain: (period, slice) -> (value, period end)."""
    rows = fetch(dbt, "select period_start, period_end, dimension_value, value from kpi.kpi_values "
                      "where name = ? and grain = ? and dimension = ?", name, grain, dimension)
    return {(p, member): (float(v) if v is not None else None, end) for p, end, member, v in rows}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_value_equals_metricflows(case: Case, ran: Path, semantic_shop: SemanticShop):
    mf = semantic_shop.mf
    compared = 0
    for grain in case.grains:
        totals = [p for (p, _) in product(ran, case.name, grain)]
        assert totals, f"{case.name} at {grain}: no rows"
        lo, hi = min(totals), max(totals)
        direct = not case.cumulative or grain == "day"
        for dimension in ("", *case.dimensions):
            if (case.metric, grain if direct else "day", dimension) not in mf.values:
                assert dimension in JOINED or case.metric in CROSS_METRICS, \
                    f"MetricFlow was not asked for {case.metric} by {dimension}"
                continue  # joined dimensions are asked of MetricFlow at week and month (each query takes seconds)
            compared += compare(case, grain, dimension, product(ran, case.name, grain, dimension),
                                mf.of(case.metric, grain if direct else "day", dimension or None), lo, hi, direct)
    assert compared >= 10, f"{case.name}: too few values compared ({compared})"


def compare(case: Case, grain: str, dimension: str, ours: dict, theirs: dict, lo: dt.date, hi: dt.date,
            direct: bool) -> int:
    """Every value of ours equals MetricFlow's (a cumulative metric's at a coarser grain: MetricFlow's daily value
    on the period's last day), and where ours has none MetricFlow has none; where `direct`, every value MetricFlow
    has within the data's range is ours too.
    The number of values compared."""
    where = f"{case.name} {grain} {dimension or 'total'}"
    compared = 0
    for (period, member), (value, end) in ours.items():
        at = period if direct else end - dt.timedelta(days=1)
        if value is None:  # no value here (no_data): MetricFlow has none either, a NULL or no row (README (3), (8))
            assert theirs.get((at, member)) is None, \
                f"{where} {period} {member}: kpimetrics has no value, MetricFlow {theirs[(at, member)]}"
            continue
        assert (at, member) in theirs, f"{where} {period} {member}: {value}, MetricFlow has no row"
        expected = theirs[(at, member)]
        assert expected is not None and close(value, expected), \
            f"{where} {period} {member}: kpimetrics {value}, MetricFlow {expected}"
        compared += 1
    if direct:
        for (period, member), expected in theirs.items():
            if expected is None or not lo <= period <= hi or (case.cumulative and member is not None):
                continue  # outside the data's range; a cumulative metric's slices are sparse
            if case.fill and member is not None and expected == 0:
                continue  # MetricFlow fills a slice's empty periods too; kpimetrics' slices are sparse (README)
            assert (period, member) in ours and ours[(period, member)][0] is not None, \
                f"{where} {period} {member}: MetricFlow has {expected}, kpimetrics none"
    return compared


def test_dimension_slices_were_compared(ran: Path, semantic_shop: SemanticShop):
    """The comparison is not vacuous: the revenue KPI has slices per channel, the NULL channel among them, and
    MetricFlow's web revenue equals the revenue KPI's 'web' slice (a metric filter against a dimension)."""
    ours = product(ran, "revenue", "month", "order__channel")
    members = {m for _, m in ours}
    assert {"web", "store", "app", "(null)"} <= members
    assert {m for _, m in product(ran, "revenue", "month", "customer__area__country")} == {"Ireland", "Norway", "Spain"}
    web = {p: v for (p, m), (v, _) in ours.items() if m == "web"}
    theirs = semantic_shop.mf.of("web_revenue", "month")
    assert web and all(close(v, theirs[(p, None)]) for p, v in web.items())


def test_a_counted_input_matching_no_row_of_a_period_with_rows_is_null_as_metricflows(ran: Path,
                                                                                      semantic_shop: SemanticShop):
    """A ratio (return_rate) and a derived metric (orders_kept) whose count input, order_count filtered to returned
    orders, matches no row in a period that has orders: MetricFlow has no row of that input there, so the metric is
    NULL, not 0 (the ratio) or the orders less 0 (the derived); kpimetrics' counted input is NULL over no rows
    (resolve.py), so its value is NULL too. Every such period, in total and by channel, at every grain."""
    mf = semantic_shop.mf
    wrong, empty = [], {}
    for metric in ("return_rate", "orders_kept"):
        case = next(c for c in CASES if c.name == metric)
        for grain in case.grains:
            for dimension in ("", "order__channel"):
                member = "coalesce(channel, '(null)')" if dimension else "null"
                # by hand: the periods (and channels) with orders, none of them returned
                keys = fetch(ran, f"select cast(date_trunc('{grain}', ordered_at) as date), {member} from main.orders "
                                  "group by all having count(*) filter (where status = 'returned') = 0")
                ours, theirs = product(ran, metric, grain, dimension), mf.of(metric, grain, dimension or None)
                for key in keys:
                    assert key in theirs and theirs[key] is None, (metric, grain, key, theirs.get(key, "no row"))
                    if key not in ours or ours[key][0] is not None:
                        wrong.append((metric, grain, dimension or "total", key, ours.get(key, "no row")))
                empty[metric] = empty.get(metric, 0) + len(keys)
                if not wrong:  # and every other value equals MetricFlow's
                    totals = [p for p, _ in product(ran, metric, grain)]
                    assert compare(case, grain, dimension, ours, theirs, min(totals), max(totals), True) > 0
    assert not wrong, (f"values where MetricFlow has NULL: {Counter(w[0] for w in wrong)}; the first: {wrong[:3]}")
    # most days have no returned order, three weeks have none, and two months none of the NULL channel
    assert all(n >= 100 for n in empty.values()) and len(empty) == 2, empty


def scans_of(dbt: Path) -> list[set[str]]:
    plan = Project.load(dbt).plan(today=dt.date.fromisoformat(AS_OF))
    return [{p.name for p in scan.plans} for scan in plan.scans(list(plan.kpis))]


def test_metric_kpis_over_one_semantic_model_share_one_scan(ran: Path):
    """Every metric KPI over orders in one scan, its joins (to customers, to areas) made once for all of them; the
    customers metric in another; the measure KPI over ref('orders') reads the table without the joins."""
    scans = scans_of(ran)
    # each reads the rows once more, shifted (a 1-week offset is 7 periods at day, 1 at week: no lag of the
    # order_count KPI's values); or the rows of orders and shipments. revenue_growth is a derived KPI over the
    # revenue KPI's values (planner._served_by_kpis): no scan of its own
    apart = {"orders_week_over_week", "shipments_less_orders_week_before", *CROSS}
    orders = {c.name for c in CASES if c.metric != "signups"} - apart - {"revenue_growth"}
    assert sorted(map(sorted, scans)) == sorted(map(sorted, [orders, {"signups"}, {"own_revenue"},
                                                             *({c} for c in apart)]))


def test_without_joins_metric_kpis_share_the_scan_of_a_measure_kpi(semantic_shop: SemanticShop, tmp_path):
    dbt = semantic_shop.copy(tmp_path)
    kpimetrics_project(dbt, [Case("revenue", "revenue", ("month",), ("order__channel",)).yaml(),
                             Case("return_rate", "return_rate", ("week", "month"), ()).yaml(), OWN_KPI])
    assert scans_of(dbt) == [{"revenue", "return_rate", "own_revenue"}]


def test_a_derived_kpi_over_metric_kpis_has_their_slices_and_slice_targets(ran: Path, semantic_shop: SemanticShop):
    ours = product(ran, "revenue_per_order", "month", "order__channel")
    revenue = semantic_shop.mf.of("revenue", "month", "order__channel")
    orders = semantic_shop.mf.of("order_count", "month", "order__channel")
    assert {m for _, m in ours} == {"web", "store", "app", "(null)"}
    for key, (value, _) in ours.items():
        assert value is not None and close(value, revenue[key] / orders[key]), key
    targets = fetch(ran, "select dimension_value, target from kpi.kpi_targets where name = 'revenue_per_order' "
                         "and grain = 'month' and dimension = 'order__channel' and target is not null")
    assert targets and set(targets) == {("web", 50.0)}


def test_labels_and_descriptions_come_from_the_metric(ran: Path):
    rows = dict((name, (label, description)) for name, label, description in fetch(
        ran, "select name, label, description from kpi.kpi_catalog where name in ('revenue', 'web_revenue')"))
    assert rows["revenue"] == ("Revenue", "Order amounts, returns included")
    assert rows["web_revenue"] == ("Web revenue", "Revenue of orders placed on the web")


def test_ls_metrics_lists_the_semantic_layer_and_its_kpis(ran: Path):
    out = cli(ran, "ls", "--metrics", "--output", "json")
    assert out.exit_code == 0, out.output
    listed = {m["name"]: m for m in json.loads(out.output)}
    assert listed["revenue_trailing_7_days"]["kpis"] == ["revenue_trailing_7_days", "revenue_trailing_week"]
    assert listed["repeat_buyers"]["type"] == "conversion" and listed["repeat_buyers"]["kpis"] == []
    assert listed["revenue"]["semantic_model"] == "orders"
    text = cli(ran, "ls", "--metrics")
    assert text.exit_code == 0 and "web_share" in text.output and "return_rate" in text.output


# --- definition hash -------------------------------------------------------------------------------

def test_a_metric_changed_in_dbt_changes_the_hash_and_recomputes(semantic_shop: SemanticShop, tmp_path):
    dbt = semantic_shop.copy(tmp_path)
    kpimetrics_project(dbt, [Case("web_revenue", "web_revenue", ("month",), None).yaml(),
                             Case("revenue", "revenue", ("month",), None).yaml()])
    out = cli(dbt, "run", "--as-of", AS_OF)
    assert out.exit_code == 0, out.output
    before = dict(fetch(dbt, "select name, definition_hash from kpi.kpi_catalog"))
    semantic = dbt / "models" / "semantic.yml"
    semantic.write_text(semantic.read_text(encoding="utf-8").replace(
        "\"{{ Dimension('order__channel') }} = 'web'\"\n    type_params:\n      measure: revenue",
        "\"{{ Dimension('order__channel') }} = 'app'\"\n    type_params:\n      measure: revenue"), encoding="utf-8")
    run_dbt(dbt, "parse")
    out = cli(dbt, "run", "--as-of", AS_OF)
    assert out.exit_code == 0, out.output
    after = dict(fetch(dbt, "select name, definition_hash from kpi.kpi_catalog"))
    assert after["web_revenue"] != before["web_revenue"] and after["revenue"] == before["revenue"]
    app = run_mf(dbt, ["revenue"], ["metric_time__month", "order__channel"], tmp_path / "app.csv")
    expected = {r["metric_time__month"][:10]: float(r["revenue"]) for r in app if r["order__channel"] == "app"}
    got = {str(p): v for p, v in fetch(dbt, "select period_start, value from kpi.kpi_values "
                                            "where name = 'web_revenue' and grain = 'month'")}
    assert got.keys() == expected.keys() and all(close(got[p], expected[p]) for p in got)


# --- bad metric KPIs -------------------------------------------------------------------------------

def one(dbt: Path, body: str, name: str = "bad") -> Path:
    return kpimetrics_project(dbt, [kpi(name, body)])


def errors_of(out, code: str) -> list[dict]:
    assert out.exit_code == 1, out.output
    found = [i for i in issues(out.output) if i["code"] == code]
    assert found, out.output
    return found


def test_no_semantic_manifest_is_kpi170_naming_dbt_parse(semantic_shop: SemanticShop, tmp_path):
    dbt = one(semantic_shop.copy(tmp_path), "metric: revenue\ntarget: 1")
    (dbt / "target" / "semantic_manifest.json").unlink()
    [issue] = errors_of(cli(dbt, "validate"), "KPI170")
    assert (issue["path"], issue["line"]) == ("kpis/kpis.yml", line_of(dbt / "kpis" / "kpis.yml", "metric: revenue"))
    assert "target/semantic_manifest.json is missing" in issue["message"]
    assert "dbt parse" in cli(dbt, "validate").output


def test_unknown_metric_is_kpi172_with_did_you_mean(semantic_shop: SemanticShop, tmp_path):
    dbt = one(semantic_shop.copy(tmp_path), "metric: revenu\ntarget: 1")
    [issue] = errors_of(cli(dbt, "validate"), "KPI172")
    assert (issue["path"], issue["line"]) == ("kpis/kpis.yml", line_of(dbt / "kpis" / "kpis.yml", "metric: revenu"))
    assert "unknown metric 'revenu'" in issue["message"] and "did you mean 'revenue'?" in issue["message"]


@pytest.mark.parametrize("metric, what", [
    ("repeat_buyers", "a conversion metric is not supported"),
    ("revenue_growth", "an offset_window of 1 month at grains week, month (an offset must be a whole number of "
                       "periods at each of the KPI's grains) is not supported"),
])
def test_unsupported_metric_is_kpi173_at_its_line_in_the_dbt_project(semantic_shop: SemanticShop, tmp_path,
                                                                      metric, what):
    dbt = one(semantic_shop.copy(tmp_path), f"metric: {metric}\ngrain: [week, month]\ntarget: 1")
    [issue] = errors_of(cli(dbt, "validate"), "KPI173")
    line = line_of(dbt / "models" / "semantic.yml", f"- name: {metric}")
    assert (issue["path"], issue["line"]) == ("models/semantic.yml", line)
    assert f"metric '{metric}' (models/semantic.yml:{line})" in issue["message"] and what in issue["message"]


def test_window_of_no_whole_periods_is_kpi173(semantic_shop: SemanticShop, tmp_path):
    dbt = one(semantic_shop.copy(tmp_path), "metric: revenue_trailing_7_days\ngrain: [day, month]\ntarget: 1")
    [issue] = errors_of(cli(dbt, "validate"), "KPI173")
    assert "a cumulative window of 7 day at grains day, month" in issue["message"]


def test_unknown_dimension_is_kpi175_with_did_you_mean(semantic_shop: SemanticShop, tmp_path):
    dbt = one(semantic_shop.copy(tmp_path), "metric: revenue\ndimensions: [order__chanel]\ntarget: 1")
    [issue] = errors_of(cli(dbt, "validate"), "KPI175")
    assert (issue["path"], issue["line"]) == ("kpis/kpis.yml", line_of(dbt / "kpis" / "kpis.yml", "order__chanel"))
    assert "did you mean 'order__channel'?" in issue["message"]


def test_a_dimension_one_input_model_cannot_reach_is_kpi175(semantic_shop: SemanticShop, tmp_path):
    """items_per_order reads shipments and orders: a dimension of shipments that orders reaches by no entity."""
    dbt = one(semantic_shop.copy(tmp_path), "metric: items_per_order\ndimensions: [shipment__shipped_at]\ntarget: 1")
    [issue] = errors_of(cli(dbt, "validate"), "KPI175")
    assert (issue["path"], issue["line"]) == ("kpis/kpis.yml", line_of(dbt / "kpis" / "kpis.yml", "shipment__shipped_at"))
    assert "semantic model 'orders' has no entity 'shipment'" in issue["message"], issue


def test_a_metric_kpi_takes_no_model_or_filter_kpi174(semantic_shop: SemanticShop, tmp_path):
    dbt = one(semantic_shop.copy(tmp_path), "metric: revenue\nmodel: ref('orders')\nfilter: amount > 1\ntarget: 1")
    found = errors_of(cli(dbt, "validate"), "KPI174")
    kpis = dbt / "kpis" / "kpis.yml"
    assert sorted(i["line"] for i in found) == [line_of(kpis, "model: ref"), line_of(kpis, "filter: amount")]


# --- incremental runs ------------------------------------------------------------------------------

def test_an_incremental_run_with_late_rows_equals_a_full_refresh(semantic_shop: SemanticShop, tmp_path):
    """Metric KPIs are planned as measure KPIs, so an incremental run keeps SPEC §5's promise for them too:
    cumulative, to-date and trailing ones, ones through entity joins, and ones over two semantic models included."""
    dbt = semantic_shop.copy(tmp_path)
    cases = [Case("revenue", "revenue", ("week", "month")), Case("cumulative_revenue", "cumulative_revenue",
                                                                   ("day", "month"), cumulative=True),
             Case("revenue_month_to_date", "revenue_month_to_date", ("day", "month"), cumulative=True),
             Case("revenue_trailing_7_days", "revenue_trailing_7_days", ("day",), cumulative=True),
             Case("return_rate", "return_rate", ("week",)), Case("spanish_orders", "spanish_orders", ("month",)),
             *(Case(m, m, ("week", "month"), ("order__channel",)) for m in CROSS)]  # over orders and shipments
    kpimetrics_project(dbt, [c.yaml() for c in cases])
    # late rows on the last day (inside lookback: 1 period at every grain), and a day after it
    first, incremental, full = late_rows_runs(dbt, lambda *args: cli(dbt, "run", "--as-of", AS_OF, *args), (
        "insert into main.orders values (9001, 3, timestamp '2025-06-27 10:00', 'web', 'returned', 250.0, "
        "0, false, 2), (9002, 5, timestamp '2025-06-28 09:00', 'app', 'completed', 80.5, 4.0, true, 1), "
        "(9003, 7, timestamp '2025-06-27 23:00', null, 'completed', 12.25, 0, false, 1)"),
        "insert into main.shipments values (9002, 5, timestamp '2025-06-30 09:00', 1), "
        "(9003, 7, timestamp '2025-06-29 23:00', 1)")
    june = {r[2]: r[5] for r in full if r[0] == "revenue" and r[1] == "month" and r[3] == ""}
    assert close(june[dt.date(2025, 6, 1)], 9370.52 + 250.0 + 80.5 + 12.25)

    def june_items_per_order(rows):
        return next(r[5] for r in rows if r[:5] == ("items_per_order", "month", dt.date(2025, 6, 1), "", None))

    assert not close(june_items_per_order(first), june_items_per_order(incremental))  # the late rows were read


def test_metrics_over_other_metric_kpis_values_read_no_rows_again(semantic_shop: SemanticShop, tmp_path):
    """A ratio over two semantic models and a derived metric with an offset_window, each beside metric KPIs of
    its inputs at its grains and slices, are derived KPIs over those KPIs' values (issue 20's speed point: no
    UNION ALL of orders and shipments, no shifted copy of orders): the orders and the shipments read once each,
    every value MetricFlow's, and an incremental run with late rows equal to a full refresh."""
    dbt = semantic_shop.copy(tmp_path)
    both = ("week", "month"), ("order__channel",)
    cases = [Case("items_per_order", "items_per_order", *both), Case("shipped_items", "shipped_items", *both),
             Case("order_count", "order_count", *both), Case("revenue", "revenue", ("month",), ("order__channel",)),
             Case("revenue_growth", "revenue_growth", ("month",), ("order__channel",))]
    kpimetrics_project(dbt, [c.yaml() for c in cases])
    plan = Project.load(dbt).plan(today=dt.date.fromisoformat(AS_OF))
    assert {n: plan.kpis[n].form for n in ("items_per_order", "revenue_growth")} == dict.fromkeys(
        ("items_per_order", "revenue_growth"), "derived")
    assert sorted(map(sorted, scans_of(dbt))) == [["order_count", "revenue"], ["shipped_items"]]
    assert cli(dbt, "run", "--as-of", AS_OF).exit_code == 0
    mf = semantic_shop.mf
    compared = sum(compare(case, grain, dimension, product(dbt, case.name, grain, dimension),
                           mf.of(case.metric, grain, dimension or None), lo, hi, True)
                   for case, grain, dimension in [(cases[0], "week", ""), (cases[0], "week", "order__channel"),
                                                  (cases[0], "month", ""), (cases[4], "month", ""),
                                                  (cases[4], "month", "order__channel")]
                   for lo, hi in [(min(p for p, _ in product(dbt, case.name, grain)),
                                   max(p for p, _ in product(dbt, case.name, grain)))])
    assert compared >= 40
    # late rows in the last week and month, and a shipment of an order of the month before
    first, incremental, _ = late_rows_runs(dbt, lambda *args: cli(dbt, "run", "--as-of", AS_OF, *args), (
        "insert into main.orders values (9001, 3, timestamp '2025-06-27 10:00', 'web', 'returned', 250.0, "
        "0, false, 2), (9002, 5, timestamp '2025-06-28 09:00', 'app', 'completed', 80.5, 4.0, true, 1)"),
        "insert into main.shipments values (9002, 5, timestamp '2025-06-30 09:00', 3)")
    before = {r[:5]: r[5] for r in first}
    changed = {r[:2] for r in incremental if r[:5] in before and r[5] != before[r[:5]]}
    assert {("items_per_order", "month"), ("revenue_growth", "month")} <= changed  # the late rows were read

