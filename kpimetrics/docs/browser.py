"""Headless Chromium for screenshots and browser tests: the system's browser, never a download.

Needs the `playwright` Python package (not a runtime dependency of kpimetrics) and a Chromium
binary (Debian's `chromium`, at /usr/bin/chromium, or $KPIMETRICS_CHROMIUM).
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """The Chromium binary to drive, or None when the machine has none."""
    for candidate in (os.environ.get("KPIMETRICS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def missing() -> str | None:
    """Why the browser cannot run here (None when it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright; no browser download needed)"
    if chromium_path() is None:
        return "no Chromium at /usr/bin/chromium (apt-get install chromium) or $KPIMETRICS_CHROMIUM"
    return None


@contextlib.contextmanager
def chromium():
    """A launched headless Chromium (a playwright Browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page_path: Path, out: Path, *, width: int = 1280, height: int = 900, full_page: bool = True,
               scale: float = 1.0) -> Path:
    """A PNG of a local HTML file as Chromium renders it."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=scale)
        page.goto(page_path.resolve().as_uri())
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=full_page)
    return out
