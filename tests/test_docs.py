"""The scorecard site, checked structurally against the output tables it is made from."""
from __future__ import annotations

import re
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

import helpers_run
from kpimetrics import docs
from kpimetrics.cli import main
from kpimetrics.docs.site import slug
from kpimetrics.scorecard import format_value, rollup

HOSTILE_LABEL = '<script>alert("label")</script> & Co'
HOSTILE_NOTE = "<img src=x onerror=alert(1)> spike"


def cli(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def make_demo(parent: Path, hostile: bool = False) -> Path:
    """The demo project, seeded and run on a fixed date (optionally with hostile text in it)."""
    assert cli("init", "demo", "--project-dir", str(parent)).exit_code == 0
    path = parent / "demo"
    if hostile:
        kpis = path / "kpis" / "revenue.yml"
        text = kpis.read_text()
        text = text.replace("    label: Net revenue\n", f"    label: '{HOSTILE_LABEL}'\n", 1)
        old_note = "note: October is the best month yet but still short of the Q4 step-up to 58k}"
        assert old_note in text
        text = text.replace(old_note, f'note: "{HOSTILE_NOTE} October is the best month yet"}}', 1)
        kpis.write_text(text)
    assert cli("seed", "--project-dir", str(path)).exit_code == 0
    result = cli("run", "--project-dir", str(path), "--as-of", "2026-11-21")
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    path = make_demo(tmp_path_factory.mktemp("docs"), hostile=True)
    result = cli("docs", "generate", "--project-dir", str(path))
    assert result.exit_code == 0, result.output
    return path


def query(project: Path, sql: str) -> list[tuple]:
    """Rows from the demo's warehouse (its profile names the file warehouse.duckdb)."""
    return helpers_run.query(project, sql, file="warehouse.duckdb")


def headline(project: Path) -> dict[str, tuple]:
    """By hand: each entry's latest complete total at its first grain -> (period, value, target, status, unit)."""
    rows = query(project, """
        SELECT s.name, s.period_start, s.value, s.target, s.status, c.unit FROM kpi.kpi_status s
        JOIN kpi.kpi_catalog c ON c.name = s.name AND s.grain = json_extract_string(c.grains, '$[0]')
        WHERE s.dimension = '' AND s.is_complete
        QUALIFY row_number() OVER (PARTITION BY s.name ORDER BY s.period_start DESC) = 1""")
    return {r[0]: r[1:] for r in rows}


class Elements(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> Elements:
    p = Elements()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def with_class(page: Elements, cls: str) -> list[dict]:
    return [a for _, a in page.tags if cls in (a.get("class") or "").split()]


def number(text: str) -> float | None:
    return None if text == "" else float(text)


def test_every_kpi_strategy_and_owner_has_a_page(site: Path):
    out = site / "target" / "docs"
    names = [r[0] for r in query(site, "SELECT name FROM kpi.kpi_catalog")]
    assert len(names) == 12
    for n in names:
        assert (out / "kpi" / f"{slug(n)}.html").is_file()
    for (s,) in query(site, "SELECT name FROM kpi.kpi_strategy WHERE level = 'strategy'"):
        assert (out / "strategy" / f"{slug(s)}.html").is_file()
    owners = {r[0] for r in query(site, "SELECT owner FROM kpi.kpi_catalog UNION SELECT owner FROM kpi.kpi_strategy "
                                        "WHERE owner IS NOT NULL")}
    # the demo's owners registry maps every email to one person: one page each, named after the registry name
    owner_pages = {p.stem for p in (out / "owner").glob("*.html")}
    assert owner_pages == {o.split("@")[0] for o in owners}
    vp = parse(out / "owner" / "vp-sales.html")
    linked = {a["href"] for t, a in vp.tags if t == "a" and a.get("href", "").startswith("../kpi/")}
    mine = {r[0] for r in query(site, "SELECT name FROM kpi.kpi_catalog WHERE owner = 'vp-sales@acme.example'")}
    assert linked == {f"../kpi/{slug(n)}.html" for n in mine}


def test_every_link_resolves_and_nothing_leaves_the_machine(site: Path):
    out = site / "target" / "docs"
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert not re.search(r"https?:|//[a-z0-9]|@import|url\(", text, re.I), f
        for tag, attrs in parse(f).tags:
            for attr in ("href", "src"):
                ref = attrs.get(attr)
                if ref is None or ref.startswith("data:") or ref.startswith("#"):
                    continue
                target = (f.parent / ref.split("#")[0]).resolve()
                assert target.is_file(), f"{f.name}: {tag} {attr}={ref} does not resolve"
        assert "default-src 'none'" in text  # the CSP forbids every request


def test_chart_points_match_the_tables(site: Path):
    out = site / "target" / "docs"
    status = query(site, """
        SELECT s.name, s.grain, s.period_start, s.value, t.target, s.status
        FROM kpi.kpi_status s LEFT JOIN kpi.kpi_targets t
          ON t.name = s.name AND t.grain = s.grain AND t.period_start = s.period_start AND t.dimension = ''
        WHERE s.dimension = '' ORDER BY 1, 2, 3""")
    expected: dict[tuple[str, str], list] = {}
    for name, grain, period, value, target, st in status:
        expected.setdefault((name, grain), []).append((period.isoformat(), value, target, st))
    seen = set()
    for name in {k[0] for k in expected}:
        page = parse(out / "kpi" / f"{slug(name)}.html")
        chart = None
        points: dict[tuple[str, str], list] = {}
        for tag, a in page.tags:
            if tag == "svg" and "chart" in a.get("class", ""):
                chart = (a["data-grain"], a["data-variant"])
            if "point" in (a.get("class") or "").split():
                points.setdefault(chart, []).append(
                    (a["data-period"], number(a["data-value"]), number(a["data-target"]), a["data-status"]))
        for (g, variant), pts in points.items():
            assert pts == expected[(name, g)], (name, g, variant)
            seen.add((name, g, variant))
    # a chart for every KPI and grain in kpi_status, drawn wide and narrow (for phones)
    assert seen == {(n, g, v) for n, g in expected for v in ("wide", "narrow")}


def test_headline_values_targets_and_statuses_match_the_tables(site: Path):
    out = site / "target" / "docs"
    latest = [(n, v, t, st, u) for n, (_, v, t, st, u) in headline(site).items()]
    assert len(latest) == 12
    index = parse(out / "index.html")
    rows = {a["data-kpi"]: a for a in with_class(index, "kpi-row")}
    for name, value, target, st, unit in latest:
        assert rows[name]["data-status"] == st
        assert number(rows[name]["data-value"]) == value
        assert number(rows[name]["data-target"]) == target
        page = (out / "kpi" / f"{slug(name)}.html").read_text()
        assert f'<span class="value headline-value">{format_value(value, unit)}</span>' in page
        assert f'<span class="value headline-target">{format_value(target, unit)}</span>' in page
        assert f'<section class="page kpi" data-kpi="{name}" data-status="{st}">' in page
    net = next(r for r in latest if r[0] == "net_revenue")
    assert "55,787" in (out / "index.html").read_text() and net[3] == "at_risk"


def test_roll_up_per_strategy_and_priority(site: Path):
    out = site / "target" / "docs"
    latest = {n: r[3] for n, r in headline(site).items()}
    catalog = query(site, "SELECT name, strategy, priority FROM kpi.kpi_catalog WHERE kind = 'kpi'")
    index = parse(out / "index.html")
    strategies = {a["data-strategy"]: a["data-rollup"] for a in with_class(index, "strategy")}
    priorities = {a["data-priority"]: a["data-rollup"] for a in with_class(index, "priority") if "data-priority" in a}
    for s, got in strategies.items():
        assert got == rollup(latest[n] for n, st, _ in catalog if st == s).status
    for p, got in priorities.items():
        assert got == rollup(latest[n] for n, _, pr in catalog if pr == p).status
    # the demo: grow_repeat_purchases has an off-track KPI, win_mobile_shoppers only on-track ones
    assert strategies == {"grow_repeat_purchases": "off_track", "win_mobile_shoppers": "on_track",
                          "improve_customer_experience": "off_track"}


def test_rollup_rule():
    assert rollup(["on_track", "at_risk", "no_data"]).status == "at_risk"
    assert rollup(["on_track", "off_track", "at_risk"]).status == "off_track"
    assert rollup(["on_track", "no_target"]).status == "on_track"
    r = rollup(["no_target", "no_data", "no_data"])
    assert r.status == "no_target" and r.beside == {"no_target": 1, "no_data": 2}
    assert rollup([]).status == "no_data"


def test_headline_is_the_first_listed_grain_even_when_only_another_has_rows():
    """As `status` does (SPEC §6): weekly rows do not stand in for a missing month."""
    import dataclasses
    import datetime as dt

    from kpimetrics.docs.data import KpiPage, Point, Series

    week = Series("week", [Point(dt.date(2026, 10, 26), dt.date(2026, 11, 1), 5.0, 4.0, None, "on_track", True)])
    fields = {f.name: None for f in dataclasses.fields(KpiPage) if f.default is dataclasses.MISSING
              and f.default_factory is dataclasses.MISSING}
    page = KpiPage(**{**fields, "name": "k", "kind": "kpi", "label": "k", "grains": ["month", "week"]}, series=[week])
    assert page.headline_series is None and page.status == "no_data"  # the old rule showed the week
    page.grains = ["week", "month"]
    assert page.headline_series is week and page.status == "on_track"


def test_slices_actions_check_ins_definition_and_sql_on_the_kpi_page(site: Path):
    out = site / "target" / "docs"
    page = parse(out / "kpi" / "net_revenue.html")
    slices = {(a["data-dimension"], a["data-dimension-value"]): number(a["data-value"])
              for t, a in page.tags if t == "tr" and "data-dimension" in a}
    expected = query(site, """SELECT dimension, dimension_value, value FROM kpi.kpi_status
        WHERE name = 'net_revenue' AND grain = 'month' AND period_start = DATE '2026-10-01' AND dimension <> ''""")
    assert slices == {(d, v): x for d, v, x in expected}
    text = "".join(page.text)
    assert "Check which region and channel is behind" in text  # actions
    assert "October is the best month yet" in text  # a check-in
    assert "filter: status = 'completed'" in text  # the definition
    assert "slice_targets" not in text  # a key left unset is not shown (it showed `slice_targets: false`)
    assert 'SUM("amount" - "discount")' in text or "SUM(amount - discount)" in text.replace('"', "")  # compiled SQL
    assert "Marco Reyes" in text  # the owner, by the registry's full name


def test_hostile_text_is_escaped(site: Path):
    out = site / "target" / "docs"
    for f in out.rglob("*.html"):
        text = f.read_text(encoding="utf-8")
        assert "<script" not in text.lower(), f
        assert "<img" not in text.lower(), f
    page = (out / "kpi" / "net_revenue.html").read_text()
    assert "&lt;script&gt;alert(&#34;label&#34;)&lt;/script&gt; &amp; Co" in page
    assert "&lt;img src=x onerror=alert(1)&gt; spike" in page
    # and the parsed text reads as the user wrote it
    assert HOSTILE_LABEL in "".join(parse(out / "index.html").text)


def test_docs_serve_serves_the_site_on_localhost(site: Path):
    httpd = docs.server(site / "target" / "docs", port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = httpd.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/kpi/net_revenue.html", timeout=10) as r:
            assert r.status == 200 and b"headline-value" in r.read()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_docs_before_any_run_says_what_to_do(tmp_path: Path):
    assert cli("init", "fresh", "--project-dir", str(tmp_path)).exit_code == 0
    result = cli("docs", "generate", "--project-dir", str(tmp_path / "fresh"))
    assert result.exit_code == 1
    assert "run `kpimetrics run` first" in result.output
    serve = cli("docs", "serve", "--project-dir", str(tmp_path / "fresh"))
    assert serve.exit_code == 1 and "run `kpimetrics docs generate` first" in serve.output
