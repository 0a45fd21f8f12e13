"""The scorecard in a real headless Chromium, opened from the file system.

Uses the system's Chromium (/usr/bin/chromium) through the playwright package; never
downloads a browser. Skipped when either is missing, unless KPIMETRICS_REQUIRE_ENGINES
is set (as `make test` and CI do), where that is a failure.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from kpimetrics.docs import browser
from kpimetrics.docs.site import slug
from kpimetrics.scorecard import look

from test_docs import cli, headline, make_demo, query
from test_scorecard_site import make_changed_demo


def require_browser() -> None:
    """Skip when Chromium or playwright is missing; fail instead where the engines are required."""
    why = browser.missing()
    if why:
        if os.environ.get("KPIMETRICS_REQUIRE_ENGINES"):
            pytest.fail(f"browser tests required but cannot run: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    require_browser()
    path = make_demo(tmp_path_factory.mktemp("browser"))
    assert cli("docs", "generate", "--project-dir", str(path)).exit_code == 0
    return path


def open_page(browser_, path: Path, width: int = 1280):
    """A page loaded from file://, with every request and console error recorded."""
    page = browser_.new_page(viewport={"width": width, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, requests, errors


def test_index_and_kpi_page_render_offline(site: Path, tmp_path: Path):
    out = site / "target" / "docs"
    statuses = {n: r[3] for n, r in headline(site).items()}
    assert len(statuses) == 12
    with browser.chromium() as b:
        page, requests, errors = open_page(b, out / "index.html")
        rows = page.eval_on_selector_all(
            "tr.kpi-row", "els => els.map(e => [e.dataset.kpi, e.querySelector('.kpi-name').innerText,"
                          " e.querySelector('.status').innerText, e.querySelector('.status').getBoundingClientRect().width])")
        shown = {kpi: (name, status_text, width) for kpi, name, status_text, width in rows}
        assert set(shown) == set(statuses)
        for kpi, status in statuses.items():
            name, status_text, width = shown[kpi]
            assert name.strip() and page.is_visible(f"tr.kpi-row[data-kpi='{kpi}'] .kpi-name")
            assert " ".join(status_text.split()) == f"{look(status).symbol} {look(status).text}"
            assert width > 0  # laid out, not hidden
        page.screenshot(path=str(tmp_path / "index.png"), full_page=True)

        kpi_page, kpi_requests, kpi_errors = open_page(b, out / "kpi" / f"{slug('net_revenue')}.html")
        assert kpi_page.locator("svg.chart g.point").count() >= 20
        assert " ".join(kpi_page.inner_text(".headline .status").split()) == "▲ at risk"
        box = kpi_page.locator("svg.chart").first.bounding_box()
        assert box and box["width"] > 600  # the chart is drawn at a readable size
        kpi_page.screenshot(path=str(tmp_path / "kpi.png"), full_page=True)

        phone, phone_requests, phone_errors = open_page(b, out / "index.html", width=390)
        overflow = phone.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 390  # nothing sticks out sideways at phone width
        for kpi in statuses:
            assert phone.is_visible(f"tr.kpi-row[data-kpi='{kpi}'] .status")
    assert errors == [] and kpi_errors == [] and phone_errors == []
    assert requests and kpi_requests  # the recorder saw at least the pages' own loads
    for url in requests + kpi_requests + phone_requests:
        assert url.startswith("file://"), url
    assert (tmp_path / "index.png").stat().st_size > 10_000 and (tmp_path / "kpi.png").stat().st_size > 10_000


# Measured in the page: what overflows sideways, the effective size of the chart text that is shown (its CSS size
# times the SVG's scale: a 720-unit-wide chart in a 310 px box shrinks 11 px text to 5 px), table cells whose
# content is wider than the cell outside a scroll container, marks drawn for periods with no value, and the
# definition-change marks and legend a reader sees.
MEASURE = """() => {
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const scrolls = e => { for (let p = e.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') return true; } return false; };
  const charts = [...document.querySelectorAll('svg.chart')].filter(shown);
  const text = [];
  for (const svg of charts) {
    const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    for (const t of svg.querySelectorAll('text')) text.push(
        [t.textContent, parseFloat(getComputedStyle(t).fontSize) * scale, t.getBoundingClientRect().height]);
  }
  return {
    scrollWidth: document.documentElement.scrollWidth,
    variants: charts.map(s => s.dataset.variant),
    chartWidths: charts.map(s => s.getBoundingClientRect().width),
    text,
    clipped: [...document.querySelectorAll('td, th')].filter(shown)
        .filter(c => c.scrollWidth > c.clientWidth + 1 && !scrolls(c)).map(c => c.textContent),
    gaps: charts.map(s => [...s.querySelectorAll('g.point.no-value')]
        .map(g => g.querySelectorAll('circle, path, rect').length)),
    changes: charts.map(s => [...s.querySelectorAll('g.definition-change')].filter(shown).map(g => g.dataset.period)),
    legend: [...document.querySelectorAll('.legend .lg-definition')].filter(shown).map(e => e.textContent),
    wider: [...document.querySelectorAll('.table-wrap')].filter(shown).map(e => e.scrollWidth - e.clientWidth),
  };
}"""


@pytest.fixture(scope="module")
def changed_site(tmp_path_factory) -> Path:
    require_browser()
    return make_changed_demo(tmp_path_factory.mktemp("browser-changed"))


def test_kpi_page_reads_at_laptop_and_phone_width(changed_site: Path, tmp_path: Path):
    """revenue_yoy_growth: derived from net_revenue, whose formula changed (a definition-change mark), with a
    first year of months that have no value (gaps); one page load per width."""
    page_path = changed_site / "target" / "docs" / "kpi" / "revenue_yoy_growth.html"
    missing = len(query(changed_site, """SELECT 1 FROM kpi.kpi_status WHERE name = 'revenue_yoy_growth'
        AND grain = 'month' AND dimension = '' AND value IS NULL"""))
    assert missing == 12
    seen = {}
    with browser.chromium() as b:
        for width in (1280, 390):
            page, requests, errors = open_page(b, page_path, width=width)
            page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")  # every period
            seen[width] = page.evaluate(MEASURE)
            page.screenshot(path=str(tmp_path / f"kpi-{width}.png"), full_page=True)
            assert errors == [] and all(u.startswith("file://") for u in requests)
    for width, m in seen.items():
        assert m["scrollWidth"] <= width, (width, m["scrollWidth"])  # nothing overflows sideways
        assert m["clipped"] == [], width  # no table cell cuts its number off
        assert m["wider"] and set(m["wider"]) == {0}, width  # and its tables fit: nothing to scroll sideways to
        assert m["gaps"] == [[0] * missing], width  # one chart shown; its empty months have no mark at all
        assert len(m["changes"]) == 1 and len(m["changes"][0]) == 1, width  # the definition change, marked
        assert m["legend"] == ["definition changed"], width
        assert m["text"] and all(label.strip() for label, _, _ in m["text"])
    wide, phone = seen[1280], seen[390]
    assert wide["variants"] == ["wide"] and wide["chartWidths"][0] > 900  # the laptop layout, as before
    assert phone["variants"] == ["narrow"]
    small = [(label, round(size, 1)) for label, size, _ in phone["text"] if size < 11]
    assert small == []  # every axis label at least 11 px on the phone
    assert min(h for _, _, h in phone["text"]) >= 11
    assert min(size for _, size, _ in wide["text"]) >= 11
