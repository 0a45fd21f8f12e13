"""Render the demo's scorecard to docs/img/scorecard.png with the system's headless Chromium.

    python scripts/screenshot.py [--project DIR] [--page index.html] [--out docs/img/scorecard.png]

Without --project it builds the demo in a temporary folder (init, seed, run --as-of 2026-11-21,
docs generate), so the README's screenshot always shows what the project's own tooling makes.
Needs the `playwright` package and /usr/bin/chromium (no browser download).
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

from kpimetrics import Project
from kpimetrics.docs import browser
from kpimetrics.scaffold import init_project

ROOT = Path(__file__).resolve().parent.parent
AS_OF = dt.date(2026, 11, 21)  # the date the README's tutorial runs on


def build_demo(parent: Path) -> Path:
    path = init_project("demo", parent)
    project = Project.load(path)
    project.seed()
    result = project.run(as_of=AS_OF)
    if result.status != "success":
        sys.exit(f"the demo run failed: {result.status}")
    project.docs_generate()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a project whose target/docs/ exists (default: build the demo)")
    parser.add_argument("--page", default="index.html", help="the page under target/docs/")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "scorecard.png")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--full-page", action="store_true", help="the whole page, not the first screen")
    args = parser.parse_args()
    why = browser.missing()
    if why:
        sys.exit(f"cannot take the screenshot: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        project = args.project or build_demo(Path(tmp))
        page = project / "target" / "docs" / args.page
        out = browser.screenshot(page, args.out, width=args.width, height=args.height, full_page=args.full_page)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
