"""Reading as an executive would (SPEC §10 "Readable by the people accountable", "Percent KPIs"): values with their
unit and currency, changes of percent KPIs in points, labels for priorities and strategies, YAML order, and what a
target change does to recent statuses."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers_run import insert_orders, kpi, kpis_yml, make_orders, ok, query, run, write_run_project
from kpimetrics import Project
from kpimetrics import model as m
from kpimetrics.cli import main
from kpimetrics.diff import earlier_judge
from kpimetrics.notify.messages import Notice
from kpimetrics.display import change_of, format_change, format_change_long, format_value


@pytest.mark.parametrize("value, unit, currency, shown", [
    (0.352, "percent", None, "35.2%"),
    (0.352, "percent", "EUR", "35.2%"),  # a currency only on a currency KPI
    (1234.4, "currency", "EUR", "1,234 EUR"),
    (-1234.4, "currency", "USD", "-1,234 USD"),
    (12.345, "currency", "EUR", "12.35 EUR"),
    (1234.4, "currency", None, "1,234"),
    (1234, "count", "EUR", "1,234"),
    (12.5, "seconds", None, "12.5 s"),
    (None, "currency", "EUR", "–"),
])
def test_a_value_reads_with_its_unit_and_currency(value, unit, currency, shown):
    assert format_value(value, unit, currency) == shown


def test_a_percent_kpi_changes_in_points_and_others_relatively():
    change, pct = change_of(0.350, 0.354)
    assert format_change(change, pct, "percent") == "+0.4 pt"  # not +1.1%, a percentage of a percentage
    assert format_change_long(change, pct, "percent") == "+0.4 pt"
    change, pct = change_of(0.354, 0.350)
    assert format_change(change, pct, "percent") == "-0.4 pt"
    assert format_change(*change_of(0.35, 0.35), "percent") == "+0.0 pt"  # never '-0.0 pt'
    change, pct = change_of(1000, 1032)
    assert format_change(change, pct, "currency") == "+3.2%"
    assert format_change_long(change, pct, "currency", "EUR") == "+32 EUR (+3.2%)"
    change, pct = change_of(-200, -100)  # relative to the earlier value's size: up is up
    assert format_change(change, pct, "number") == "+50.0%"
    assert format_change(*change_of(0, 10), "number") == ""  # no relative change from 0
    assert format_change_long(*change_of(0, 10), "number") == "+10"
    assert format_change(*change_of(None, 10), "percent") == ""



def notice(**fields) -> Notice:
    base = dict(name="revenue", label="Net revenue", grain="month", period_start=dt.date(2026, 2, 1),
                period_end=dt.date(2026, 3, 1), status="at_risk", value=1238.0, target=1300.0, change=38.0,
                change_pct=38.0 / 1200.0, unit="currency", owner=None, actions=None, check_in=None, forecasts=(),
                url=None, currency="EUR")
    return Notice(**(base | fields))


def test_a_notice_reads_with_its_currency_and_a_percent_kpi_in_points():
    facts = dict(notice().facts())
    assert facts["Value"] == "1,238 EUR against a target of 1,300 EUR"
    assert facts["Change"] == "+38 EUR (+3.2%) on the period before"
    facts = dict(notice(unit="percent", currency=None, value=0.354, target=0.4, change=0.004, change_pct=0.004 / 0.35)
                 .facts())
    assert facts["Value"] == "35.4% against a target of 40.0%" and facts["Change"] == "+0.4 pt on the period before"


# --- a small shop, run once: labels, currencies, a percent KPI, YAML order -------------------------------------

STRATEGY = """
    mission: Sell more to small businesses
    priorities:
      - name: zeta_growth
        label: Profitable growth
        owner: ceo@shop.example
        strategies:
          - {name: win_web, label: Win web shoppers, owner: sales@shop.example, starts: 2025-01-01, ends: 2030-12-31}
      - name: alpha_loyalty
        owner: ceo@shop.example
        strategies:
          - {name: keep_customers, label: Keep customers coming back, owner: sales@shop.example, starts: 2025-01-01,
             ends: 2030-12-31}
"""
# YAML order, which is not the names' order: revenue, avg_order, web_share; then repeat_orders in kpis/loyalty.yml
KPIS = kpis_yml(
    kpi("revenue", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        unit: currency
        target: 20000
        tolerance: 10%
    """, strategy="win_web"),
    kpi("avg_order", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: avg(amount)
        unit: currency
        currency: USD
        target: 200
    """, strategy="win_web"),
    kpi("web_share", """
        model: source('shop', 'orders')
        time: ordered_at
        ratio: {numerator: "count(case when channel = 'web' then 1 end)", denominator: count(*)}
        unit: percent
        target: 0.4
    """, strategy="win_web"),
)
LOYALTY = kpis_yml(kpi("repeat_orders", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: count(*)
    unit: count
    target: 50
""", strategy="keep_customers"))
YAML_ORDER = ["revenue", "avg_order", "web_share", "repeat_orders"]  # kpis/kpis.yml, then kpis/loyalty.yml


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    root = write_run_project(tmp_path_factory.mktemp("reading"), KPIS,
                             files={"strategy.yml": STRATEGY, "kpis/loyalty.yml": LOYALTY})
    config = root / "kpimetrics.yml"
    config.write_text(config.read_text() + "currency: EUR\n")
    insert_orders(root, make_orders(dt.date(2025, 7, 1), dt.date(2026, 3, 1)))
    ok(run(root))
    return root


def cli(*args: str, columns: int = 160):
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns)}, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def monthly(root: Path, select: str) -> dict[dt.date, float]:
    """By hand: `select` over each month's orders."""
    rows = query(root, f"SELECT CAST(date_trunc('month', ordered_at) AS DATE) AS m, {select} FROM main.orders GROUP BY 1")
    return {m: v for m, v in rows}


def test_status_shows_labels_currencies_points_in_yaml_order(shop):
    result = cli("status", "--project-dir", str(shop))
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    firsts = [line.split("  ")[0].strip() for line in lines]
    # strategy.yml's order and labels (alpha_loyalty has none: its name); each strategy's KPIs in YAML order
    assert [f for f in firsts if f in ("Profitable growth", "Win web shoppers", "alpha_loyalty",
                                      "Keep customers coming back")] == [
        "Profitable growth", "Win web shoppers", "alpha_loyalty", "Keep customers coming back"]
    assert not any(name in result.output for name in ("zeta_growth", "win_web", "keep_customers"))
    shown = [f.split()[0] for f in firsts if f.split()[0] in YAML_ORDER]
    assert shown == YAML_ORDER

    feb, jan = dt.date(2026, 2, 1), dt.date(2026, 1, 1)
    row = {f.split()[0]: line for f, line in zip(firsts, lines) if f.split()[0] in YAML_ORDER}
    revenue = monthly(shop, "sum(amount)")[feb]
    assert f"{revenue:,.0f} EUR" in row["revenue"] and "20,000 EUR" in row["revenue"]  # kpimetrics.yml's currency
    avg = monthly(shop, "avg(amount)")[feb]
    assert f"{avg:,.0f} USD" in row["avg_order"] and "200 USD" in row["avg_order"]  # the KPI's own
    assert "EUR" not in row["repeat_orders"] and "EUR" not in row["web_share"]  # only currency values carry one
    share = monthly(shop, "count(case when channel = 'web' then 1 end) / count(*)")
    points = round((share[feb] - share[jan]) * 100, 1) + 0.0
    assert f"{share[feb]:.1%}" in row["web_share"] and f"{points:+.1f} pt" in row["web_share"]
    change = revenue / monthly(shop, "sum(amount)")[jan] - 1
    assert f"{change:+.1%}" in row["revenue"]


def test_ls_lists_kpis_in_yaml_order(shop):
    result = cli("ls", "--project-dir", str(shop))
    assert result.exit_code == 0 and result.output.split() == YAML_ORDER


def test_api_status_carries_the_forecast_status_shows(shop):
    rows = Project.load(shop).status()
    assert [r["name"] for r in rows] == YAML_ORDER
    by_hand = query(shop, """
        SELECT name, horizon, horizon_end, forecast, forecast_status FROM kpi.kpi_forecast WHERE grain = 'month'
        QUALIFY row_number() OVER (PARTITION BY name ORDER BY horizon = 'deadline' DESC) = 1""")
    assert len(by_hand) == len(YAML_ORDER)
    expected = {name: (horizon, end.isoformat(), forecast, status) for name, horizon, end, forecast, status in by_hand}
    got = {r["name"]: (r["forecast"]["horizon"], r["forecast"]["horizon_end"], r["forecast"]["forecast"],
                       r["forecast"]["forecast_status"]) for r in rows}
    assert got == expected
    revenue = rows[0]
    assert (revenue["unit"], revenue["currency"], revenue["priority_label"], revenue["strategy_label"]) == (
        "currency", "EUR", "Profitable growth", "Win web shoppers")
    assert revenue["forecast"]["course"] in ("on course", "off course")


def test_the_manifest_carries_labels_and_currencies(shop):
    assert cli("compile", "--project-dir", str(shop)).exit_code == 0
    doc = json.loads((shop / "target" / "manifest.json").read_text())
    assert [(p["name"], p["label"], [(s["name"], s["label"]) for s in p["strategies"]]) for p in doc["priorities"]] == [
        ("zeta_growth", "Profitable growth", [("win_web", "Win web shoppers")]),
        ("alpha_loyalty", "alpha_loyalty", [("keep_customers", "Keep customers coming back")])]
    assert {n: k["currency"] for n, k in doc["kpis"].items()} == {
        "revenue": "EUR", "avg_order": "USD", "web_share": None, "repeat_orders": None}


def hand_status(value: float, target: float, tolerance: float) -> str:
    """Higher is better: on track at the target, at risk within the tolerance below it, else off track."""
    return "on_track" if value >= target else "at_risk" if value >= target * (1 - tolerance) else "off_track"


def test_diff_shows_how_a_target_change_moves_recent_statuses(shop, tmp_path):
    project = tmp_path / "shop"
    shutil.copytree(shop, project)
    assert cli("compile", "--project-dir", str(project)).exit_code == 0
    state = tmp_path / "main-target"
    shutil.copytree(project / "target", state)
    kpis = project / "kpis" / "kpis.yml"
    kpis.write_text(kpis.read_text().replace("target: 20000", "target: 28000", 1))

    result = cli("diff", "--project-dir", str(project), "--state", str(state), "--output", "json")
    assert result.exit_code == 0, result.output
    [revenue] = json.loads(result.output)["changed"]
    assert revenue["name"] == "revenue" and revenue["fields"] == {"target": {"old": 20000, "new": 28000}}
    months = sorted(monthly(shop, "sum(amount)").items(), reverse=True)[:6]  # the last 6 complete months
    expected = [{"period_start": m.isoformat(), "value": v, "old_target": 20000.0, "new_target": 28000.0,
                 "old_status": hand_status(v, 20000, 0.1), "new_status": hand_status(v, 28000, 0.1)} for m, v in months]
    assert revenue["statuses"] == expected
    moves = Counter((e["old_status"], e["new_status"]) for e in expected if e["old_status"] != e["new_status"])
    assert moves  # the data moves some: else this test would show nothing

    markdown = cli("diff", "--project-dir", str(project), "--state", str(state)).output
    words = {"on_track": "on track", "at_risk": "at risk", "off_track": "off track"}
    for (old, new), n in moves.items():
        assert f"{n} of the last 6 complete months {'moves' if n == 1 else 'move'} {words[old]} → {words[new]}" in markdown
    feb = expected[0]
    assert (f"| 2026-02-01 | {feb['value']:,.0f} EUR | 20,000 EUR | 28,000 EUR | {words[feb['old_status']]} | "
            f"{words[feb['new_status']]} |") in markdown


def test_an_earlier_target_read_from_a_table_or_not_readable_is_not_run():
    """A state is untrusted (SPEC §11): of its earlier target only literals reach the warehouse."""
    current = m.Kpi.model_validate({"name": "revenue", "model": "source('shop', 'orders')", "time": "ordered_at",
                                    "measure": "sum(amount)", "target": 100, "tolerance": "10%"})
    earlier, why = earlier_judge(current, {"target": 90, "tolerance": None}, ["target", "tolerance"])
    assert why is None and (earlier.target, earlier.tolerance, earlier.measure) == (90, None, "sum(amount)")
    table = {"table": "source('shop', 'orders')", "period": "ordered_at", "value": "amount; drop table x"}
    assert earlier_judge(current, {"target": table}, ["target"]) == (
        None, "the earlier target is read from a table: its SQL is another branch's, and is not run")
    assert earlier_judge(current, {"target": {"schedule": "soon"}}, ["target"]) == (
        None, "the earlier definition's target is not one this release reads")


def test_a_target_change_moves_statuses_as_the_oracle_says_on_each_engine(oracle_a, con_a, tmp_path):
    """Project A, run once per engine (tests/engines.py), read by `diff` with st_tol_num's target 8 made 10 (tolerance
    0.25): the statuses before are the oracle's (tests/oracle_data.py), those after by hand from its values."""
    project = tmp_path / "oracle_a"
    shutil.copytree(oracle_a.root, project, ignore=shutil.ignore_patterns("*.duckdb", "*.wal", "target"))
    profiles = project / "profiles.yml"  # the same warehouse: an embedded DuckDB by its absolute path
    profiles.write_text(profiles.read_text().replace("path: wh.duckdb", f"path: {oracle_a.root / 'wh.duckdb'}"))
    Project.load(project).compile()
    state = tmp_path / "state"
    shutil.copytree(project / "target", state)
    points = project / "kpis" / "points.yml"
    text = points.read_text()
    block = text[text.index("name: st_tol_num"):]
    block = block[:block.index("tolerance: 0.25")]
    assert block.count("target: 8\n") == 1
    points.write_text(text.replace(block, block.replace("target: 8\n", "target: 10\n")))

    result = Project.load(project).diff(state, periods=6)
    [k] = result.kpis
    assert (k.name, k.change, list(k.fields), k.grain) == ("st_tol_num", "changed", ["target"], "month")
    oracle = con_a.execute("""
        SELECT period_start, value, target, status FROM oracle_status
        WHERE name = 'st_tol_num' AND grain = 'month' AND dimension = '' AND is_complete
        ORDER BY period_start DESC LIMIT 6""").fetchall()
    assert len(oracle) == 6 and {t for _, _, t, _ in oracle} == {8.0}
    assert [(r.period_start, r.value, r.old_target, r.new_target, r.old_status, r.new_status) for r in k.statuses] == [
        (p.isoformat(), v, 8.0, 10.0, status, hand_status(v, 10, 0.25)) for p, v, _, status in oracle]


# --- the headline's target (KPI157) ----------------------------------------------------------------------------

HEADLINE_KPIS = kpis_yml(
    # month, the headline, has targets for a slice only; week has one for the total
    kpi("sliced_headline", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        grain: [month, week]
        dimensions: [channel]
        target: {week: 5000}
        slice_targets: {channel: {web: {month: 10000}}}
    """, strategy="win_web"),
    # the headline's total has a target; a slice has one at week
    kpi("total_headline", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        grain: [month, week]
        dimensions: [channel]
        target: {month: 20000}
        slice_targets: {channel: {web: {week: 2500}}}
    """, strategy="win_web"),
)


def test_a_headline_with_targets_for_slices_only_reads_no_target_and_warns_kpi157(tmp_path):
    """`status` and the scorecard show a KPI's total at its first grain: where `slice_targets` gives only slices a
    target at that grain, the headline reads 'no target' while the slice is judged, and KPI157 warns at the KPI's
    target line, naming the slice; a KPI whose headline total has a target does not warn."""
    root = write_run_project(tmp_path, HEADLINE_KPIS, files={"strategy.yml": STRATEGY})
    insert_orders(root, make_orders(dt.date(2025, 12, 1), dt.date(2026, 3, 1)))
    result = cli("run", "--as-of", "2026-03-01", "--project-dir", str(root))
    assert result.exit_code == 0, result.output
    found = [line.strip() for line in result.output.splitlines() if "[KPI157]" in line]
    kpis = (root / "kpis" / "kpis.yml").read_text().splitlines()
    line = kpis.index("    target: {week: 5000}") + 1
    assert found == [f"kpis/kpis.yml:{line}:13: warning[KPI157]: KPI 'sliced_headline': its headline grain 'month' "
                     "(its first, which `status` and the scorecard show) has no target for its total, while 'week' has "
                     "one: it reads 'no target' (the targets `slice_targets` gives channel 'web' at 'month' judge "
                     "those slices only)"], result.output

    status = {r["name"]: r for r in Project.load(root).status()}
    feb = query(root, "SELECT sum(amount) FROM main.orders WHERE ordered_at >= DATE '2026-02-01'")[0][0]
    sliced, total = status["sliced_headline"], status["total_headline"]
    assert (sliced["grain"], sliced["period_start"], sliced["target"], sliced["status"]) == (
        "month", "2026-02-01", None, "no_target")
    assert sliced["value"] == feb
    assert (total["target"], total["status"]) == (20000.0, "on_track" if feb >= 20000 else "off_track")
    # the slice is judged at the headline grain; the total is not
    web = query(root, "SELECT target, status FROM kpi.kpi_status WHERE name = 'sliced_headline' AND grain = 'month' "
                      "AND period_start = DATE '2026-02-01' AND dimension = 'channel' AND dimension_value = 'web'")
    web_feb = query(root, "SELECT sum(amount) FROM main.orders WHERE ordered_at >= DATE '2026-02-01' "
                          "AND channel = 'web'")[0][0]
    assert web == [(10000.0, "on_track" if web_feb >= 10000 else "off_track")]
