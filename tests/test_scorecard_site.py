"""The scorecard as an executive reads it (issue 21, SPEC §6 and §10): definition changes marked on the charts,
the as-of date in the footer, gaps for periods with no value, slice tables headed by their dimension.

One project for the module: the demo run, net_revenue's formula changed, run again on the same as-of date
(net_revenue and the KPI derived from it get a second definition_hash), and the site generated.
Checked structurally against the output tables; tests/test_browser.py measures the same site in Chromium.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from kpimetrics.docs.site import dimension_label, slug

from test_docs import cli, make_demo, number, parse, query

AS_OF = "2026-11-21"


def make_changed_demo(parent: Path) -> Path:
    """The demo, run; net_revenue's measure changed (discounts no longer subtracted) and sliced by region × channel
    too, labels on a priority and a
    strategy, a currency in kpimetrics.yml; run again; docs generated."""
    path = make_demo(parent)
    kpis = path / "kpis" / "revenue.yml"
    text = kpis.read_text()
    old = "    measure: sum(amount - discount)\n    filter: status = 'completed'\n    dimensions: [region, channel]\n"
    assert text.count(old) == 1  # net_revenue's
    new = (old.replace("sum(amount - discount)", "sum(amount)")
           .replace("[region, channel]", "[region, channel, [region, channel]]"))
    kpis.write_text(text.replace(old, new))
    # a reader's names for a priority and a strategy, and the currency of currency KPIs (SPEC §10)
    strategy = path / "strategy.yml"
    text = strategy.read_text()
    for name, label in (("profitable_growth", "Profitable growth"), ("grow_repeat_purchases", "Grow repeat purchases")):
        line = next(ln for ln in text.splitlines() if ln.strip() == f"- name: {name}")
        text = text.replace(line + "\n", f"{line}\n{' ' * line.index('-')}  label: {label}\n", 1)
    strategy.write_text(text)
    config = path / "kpimetrics.yml"
    config.write_text(config.read_text() + "currency: EUR\n")
    result = cli("run", "--project-dir", str(path), "--as-of", AS_OF)
    assert result.exit_code == 0, result.output
    result = cli("docs", "generate", "--project-dir", str(path))
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def changed(tmp_path_factory) -> Path:
    return make_changed_demo(tmp_path_factory.mktemp("changed"))


def change_marks(page_path: Path) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """The definition-change marks of each chart of a KPI page, by (grain, variant): (period, hash)."""
    out: dict[tuple[str, str], list] = {}
    chart = None
    for tag, a in parse(page_path).tags:
        cls = (a.get("class") or "").split()
        if tag == "svg" and "chart" in cls:
            chart = out.setdefault((a["data-grain"], a["data-variant"]), [])
        elif "definition-change" in cls:
            chart.append((a["data-period"], a["data-hash"]))
    return out


def test_definition_changes_are_marked_where_the_new_hash_was_first_published(changed: Path):
    out = changed / "target" / "docs" / "kpi"
    hashes = query(changed, "SELECT name, definition_hash, first_run_id, first_seen_at FROM kpi.kpi_definitions "
                            "ORDER BY name, first_run_id")
    by_name: dict[str, list] = {}
    for name, h, run_id, seen in hashes:
        by_name.setdefault(name, []).append((h, run_id, seen))
    changed_names = {n for n, hs in by_name.items() if len(hs) > 1}
    # the measure changed: net_revenue, and the KPIs whose hash covers its hash (derived from it)
    assert {"net_revenue", "revenue_yoy_growth"} <= changed_names
    assert "active_customers" not in changed_names
    catalog = dict(query(changed, "SELECT name, definition_hash FROM kpi.kpi_catalog"))
    for name, hs in by_name.items():
        grains = [g for (g,) in query(changed, f"SELECT DISTINCT grain FROM kpi.kpi_status WHERE name = '{name}'")]
        drawn = change_marks(out / f"{slug(name)}.html")
        for grain in grains:
            expected = []
            for h, _, seen in hs[1:]:
                # the period the run published that holds the day it first ran, else the last one it published
                (period,) = query(changed, f"""SELECT max(period_start) FROM kpi.kpi_status WHERE name = '{name}'
                    AND grain = '{grain}' AND dimension = '' AND period_start <= DATE '{seen.date()}'""")[0]
                expected.append((period.isoformat(), h))
            for variant in ("wide", "narrow"):
                assert drawn[(grain, variant)] == expected, (name, grain, variant)
        if name in changed_names:
            assert hs[-1][0] == catalog[name]  # the mark names the hash the values are computed with
    page = (out / "net_revenue.html").read_text()
    assert "definition changed" in page and 'class="lg-definition"' in page  # the legend says what the mark is
    assert "a change in the formula, not in the business" in page
    assert "definition changed" not in (out / "active_customers.html").read_text()


def test_footer_names_the_as_of_date_of_the_values(changed: Path):
    docs = changed / "target" / "docs"
    for page in (docs / "index.html", docs / "kpi" / "net_revenue.html"):
        parsed = parse(page)
        assert [a["data-as-of"] for _, a in parsed.tags if "as-of" in (a.get("class") or "").split()] == [AS_OF]
        assert f"Values as of {AS_OF}" in " ".join("".join(parsed.text).split())


def test_a_period_with_no_value_is_a_gap_not_a_point_on_the_axis(changed: Path):
    missing = query(changed, """SELECT period_start FROM kpi.kpi_status WHERE name = 'revenue_yoy_growth'
        AND grain = 'month' AND dimension = '' AND value IS NULL ORDER BY 1""")
    lowest = query(changed, """SELECT min(least(value, target, at_risk_threshold)) FROM kpi.kpi_status
        WHERE name = 'revenue_yoy_growth' AND grain = 'month' AND dimension = ''""")[0][0]
    assert len(missing) == 12 and lowest > 0.2  # the first year has no year-earlier month
    page = parse(changed / "target" / "docs" / "kpi" / "revenue_yoy_growth.html")
    gaps, inside, y_labels, svg = [], False, [], 0
    for tag, a in page.tags:
        cls = (a.get("class") or "").split()
        if tag == "g" and "point" in cls:
            inside = "no-value" in cls
            if inside:
                gaps.append([a["data-period"], 0])
        elif tag == "g":
            inside = False
        elif inside and tag in ("circle", "path", "rect"):
            gaps[-1][1] += 1
        if tag == "svg":
            svg += 1
    assert [p for p, _ in gaps] == [p.isoformat() for (p,) in missing] * 2  # both variants
    assert all(shapes == 0 for _, shapes in gaps)  # no dot, no hollow circle
    assert svg == 2
    # the y axis spans the values there are: its lowest label is not 0 (a missing month stretches nothing)
    text = (changed / "target" / "docs" / "kpi" / "revenue_yoy_growth.html").read_text()
    assert 'text-anchor="end">0.0%</text>' not in text and 'text-anchor="end">20.0%</text>' in text


def test_slice_tables_are_headed_by_their_dimension(changed: Path):
    page = parse(changed / "target" / "docs" / "kpi" / "net_revenue.html")
    text = " ".join("".join(page.text).split())
    tables = [a["data-dimension"] for t, a in page.tags if t == "table" and "slices" in (a.get("class") or "")]
    combined = [d for (d,) in query(changed, "SELECT DISTINCT dimension FROM kpi.kpi_status WHERE name = 'net_revenue' "
                                             "AND dimension NOT IN ('', 'region', 'channel')")]
    assert len(combined) == 1 and tables == sorted(["channel", "region", combined[0]])
    assert "By region" in text and "By channel" in text and "By region × channel" in text
    assert "Value of it" not in text and "Dimension" not in text
    heads = (changed / "target" / "docs" / "kpi" / "net_revenue.html").read_text()
    assert '<th scope="col">Region × channel</th>' in heads
    assert '<th scope="col">Region</th>' in heads and '<th scope="col">Channel</th>' in heads


def test_dimension_labels_read_naturally():
    assert dimension_label("region") == "Region"
    assert dimension_label("sales_channel") == "Sales channel"
    assert dimension_label("region,channel") == "Region × channel"
    assert dimension_label("region × channel") == "Region × channel"


def test_kpis_are_listed_in_yaml_order_and_percent_changes_in_points(changed: Path):
    import yaml

    listed = [k["name"] for f in sorted((changed / "kpis").glob("*.yml"))
              for entries in yaml.safe_load(f.read_text()).values() for k in entries]
    index = parse(changed / "target" / "docs" / "index.html")
    tables: list[list[str]] = []  # the KPIs of each table (a strategy's, the standards'), top to bottom
    for tag, a in index.tags:
        if tag == "table" and "kpis" in (a.get("class") or "").split():
            tables.append([])
        elif "kpi-row" in (a.get("class") or "").split():
            tables[-1].append(a["data-kpi"])
    assert sorted(n for t in tables for n in t) == sorted(listed)
    for shown in tables:  # as the YAML lists them; the catalog's order is by name
        assert shown == sorted(shown, key=listed.index)
    assert any(shown != sorted(shown) for shown in tables)
    (change,) = query(changed, """SELECT change FROM kpi.kpi_status WHERE name = 'revenue_yoy_growth' AND grain = 'month'
        AND dimension = '' AND is_complete ORDER BY period_start DESC LIMIT 1""")[0]
    page = (changed / "target" / "docs" / "kpi" / "revenue_yoy_growth.html").read_text()
    points = f"{round(change * 100, 1):+.1f} pt"  # 74.0% against 91.4% a month earlier: -17.4 points, not -19%
    assert f'<span class="value small headline-change">{points}</span>' in page


def test_the_demo_shows_a_budget_table_per_region_targets_and_forecasts(changed: Path):
    """`kpimetrics init`'s demo (SPEC §10): net_revenue's targets come from the budget seed (its months' sums in
    total, each region's own rows per region), mobile_order_share has a target per region, forecasts are drawn."""
    import csv

    budget: dict[tuple[str, str], float] = {}
    with open(changed / "seeds" / "budget.csv", newline="") as f:
        for row in csv.DictReader(f):
            assert row["kpi"] == "net_revenue"
            for key in (("", row["month"]), (row["region"], row["month"])):
                budget[key] = budget.get(key, 0.0) + float(row["amount"])
    targets = query(changed, """SELECT coalesce(dimension_value, ''), period_start, target, target_source
        FROM kpi.kpi_targets WHERE name = 'net_revenue' AND grain = 'month' AND dimension IN ('', 'region')""")
    assert {s for *_, s in targets} == {"table"}
    got = {(v, p.isoformat()): t for v, p, t, _ in targets}
    assert got == {k: budget[k] for k in got} and len(got) == 22 * 5  # 22 months of values, the total and 4 regions
    assert got[("", "2026-10-01")] == 58000.0  # the budget adds up to the quarter's target the demo always had
    slices = query(changed, """SELECT dimension_value, target, target_source FROM kpi.kpi_targets
        WHERE name = 'mobile_order_share' AND dimension = 'region' AND period_start = DATE '2026-10-01'""")
    assert sorted(slices) == [("east", 0.3, "value"), ("north", 0.3, "value"), ("south", 0.25, "value"),
                              ("west", 0.3, "schedule")]
    assert query(changed, "SELECT count(*) FROM kpi.kpi_forecast WHERE name = 'net_revenue'")[0][0] >= 1
    page = parse(changed / "target" / "docs" / "kpi" / "mobile_order_share.html")
    rows = {a["data-dimension-value"] for t, a in page.tags if t == "tr" and a.get("data-dimension") == "region"}
    assert {"east", "north", "south", "west"} <= rows
    text = (changed / "target" / "docs" / "kpi" / "mobile_order_share.html").read_text()
    assert '<th scope="row">north</th><td class="num">' in text and "<td class=\"num\">30.0%</td>" in text
    assert 'class="projection' in (changed / "target" / "docs" / "kpi" / "net_revenue.html").read_text()


def test_priorities_and_strategies_by_label_and_currency_values_with_their_currency(changed: Path):
    docs = changed / "target" / "docs"
    index = (docs / "index.html").read_text()
    assert "<h2>Profitable growth</h2>" in index and ">Grow repeat purchases</a></h3>" in index
    assert "<h2>brand_loyalty</h2>" in index  # no label: its name
    kpi = (docs / "kpi" / "net_revenue.html").read_text()
    assert '">Profitable growth</a> › <a href="../strategy/grow_repeat_purchases.html">Grow repeat purchases</a>' in kpi
    assert "<h1>Grow repeat purchases</h1>" in (docs / "strategy" / "grow_repeat_purchases.html").read_text()
    (value, target), = query(changed, """SELECT value, target FROM kpi.kpi_status WHERE name = 'net_revenue'
        AND grain = 'month' AND dimension = '' AND is_complete ORDER BY period_start DESC LIMIT 1""")
    assert f'<span class="value headline-value">{value:,.0f} EUR</span>' in kpi
    assert f'<span class="value headline-target">{target:,.0f} EUR</span>' in kpi
    assert f'<td class="num value">{value:,.0f} EUR</td>' in index
    assert "By month, in EUR" in kpi
    share = (docs / "kpi" / "mobile_order_share.html").read_text()  # a percent KPI carries no currency
    assert "EUR" not in share.split("<h2>Definition</h2>")[0]
