"""Small example projects for tests, written into a temporary folder from a dict of files.

`VALID_PROJECT` (tests/projects/valid/) is a realistic project that uses every KPI form (measure, ratio,
derived, standard) and every target form (number, value, schedule, relative,
pace, per grain); tests that want one mistake copy it and change one file.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import datetime as dt

# The date the example project is validated on: inside its strategies' dates and before every review_by.
TODAY = dt.date(2026, 3, 15)


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative path -> text, dedented) under `root`; return `root`."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def project_files(**changes: str | None) -> dict[str, str]:
    """VALID_PROJECT with some files replaced (a value of None removes the file)."""
    files = dict(VALID_PROJECT)
    for rel, text in changes.items():
        rel = rel.replace("__", "/").replace("_yml", ".yml").replace("_sql", ".sql")
        if text is None:
            files.pop(rel, None)
        else:
            files[rel] = text
    return files


# The example projects live as folders under tests/projects/; a test that wants one mistake copies
# one and changes a file. The constants below are those files' text, indented by four spaces as if
# written inline (write_project dedents), so a case can `.replace()` a line as it reads in the file.
PROJECTS = Path(__file__).parent / "projects"


def read_project(name: str) -> dict[str, str]:
    """{relative path: text} of tests/projects/<name>/, each text indented as write_project expects."""
    root = PROJECTS / name
    return {path.relative_to(root).as_posix(): "\n" + textwrap.indent(path.read_text(encoding="utf-8"), "    ")
            for path in sorted(root.rglob("*")) if path.is_file()}


VALID_PROJECT: dict[str, str] = read_project("valid")
KPIMETRICS_YML = VALID_PROJECT["kpimetrics.yml"]
STRATEGY_YML = VALID_PROJECT["strategy.yml"]
OWNERS_YML = VALID_PROJECT["owners.yml"]
SOURCES_YML = VALID_PROJECT["sources.yml"]
ORDERS_ENRICHED_SQL = VALID_PROJECT["models/orders_enriched.sql"]
SALES_YML = VALID_PROJECT["kpis/sales.yml"]
SUPPORT_YML = VALID_PROJECT["kpis/support.yml"]


# --- one broken KPI at a time ----------------------------------------------------

# A KPI with every field a KPI should have; cases override or drop (None) single fields.
GOOD_KPI: dict[str, str] = {
    "name": "broken",
    "owner": "vp-sales@acme.example",
    "strategy": "grow_repeat_purchases",
    "indicator": "leading",
    "drives": "[net_revenue]",
    "actions": "Call the team",
    "model": "source('shop', 'orders')",
    "time": "ordered_at",
    "measure": "sum(amount)",
    "target": "10",
}


def kpi_yaml(section: str = "kpis", **fields: str | None) -> str:
    """A YAML file with one entry: GOOD_KPI with `fields` replaced (None drops a key).

    A value with a newline is written as a nested block under its key.
    """
    entry = {**GOOD_KPI, **fields}
    lines = [f"{section}:"]
    for key, value in entry.items():
        if value is None:
            continue
        prefix = "  - " if len(lines) == 1 else "    "
        if "\n" in value:
            lines.append(f"{prefix}{key}:")
            lines += ["      " + line for line in textwrap.dedent(value).strip("\n").splitlines()]
        else:
            lines.append(f"{prefix}{key}: {value}")
    return "\n".join(lines) + "\n"
