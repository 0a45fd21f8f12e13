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

from test_docs import cli, headline, make_demo


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    why = browser.missing()
    if why:
        if os.environ.get("KPIMETRICS_REQUIRE_ENGINES"):
            pytest.fail(f"browser tests required but cannot run: {why}")
        pytest.skip(why)
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
