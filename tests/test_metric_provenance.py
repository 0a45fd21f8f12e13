"""Where a metric KPI comes from, shown (issue 20): the scorecard's KPI page names the MetricFlow metric, its type
and its file:line in the dbt project, and defines it as dbt writes it (measures, filters with `Dimension()`,
offsets, windows), not as the measure it is planned as (kpimetrics' internal `__kpim_` columns); the compiled
manifest has a `metric` entry beside the resolved form, which it keeps for the tools that read it."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from helpers_run import kpi
from semantic_env import SemanticShop, semantic_shop  # noqa: F401  (the session's build)
from test_semantic import AS_OF, cli, kpimetrics_project, line_of

pytestmark = pytest.mark.dbt

KPIS = [
    kpi("web_share", "metric: web_share\ngrain: [month]\ntarget: 0.5"),  # ratio over a filtered simple metric
    kpi("revenue_growth", "metric: revenue_growth\ngrain: [month]\ntarget: 0"),  # derived, offset_window
    kpi("revenue_month_to_date", "metric: revenue_month_to_date\ngrain: [month, day]\ntarget: {month: 1000}"),
    kpi("large_web_orders", "metric: large_web_orders\ngrain: [month]\ntarget: 1"),  # metric and measure filters
]


@pytest.fixture(scope="module")
def documented(semantic_shop: SemanticShop, tmp_path_factory) -> Path:
    dbt = kpimetrics_project(semantic_shop.copy(tmp_path_factory.mktemp("provenance")), KPIS)
    for args in (("run", "--as-of", AS_OF), ("docs", "generate")):
        out = cli(dbt, *args)
        assert out.exit_code == 0, out.output
    return dbt


def page(dbt: Path, name: str) -> str:
    """The KPI page's text as a reader sees it, without its compiled SQL: SQL to paste into a BI tool, whose CTEs
    may name kpimetrics' internal columns (an offset's copy of the rows)."""
    text = (dbt / "kpi_target" / "docs" / "kpi" / f"{name}.html").read_text(encoding="utf-8")
    text, n = re.subn(r'<details class="sql">.*?</details>', "", text, flags=re.S)
    assert n == 1, name
    return html.unescape(text)


def defined_at(dbt: Path, metric: str) -> str:
    return f"models/semantic.yml:{line_of(dbt / 'models' / 'semantic.yml', f'- name: {metric}')}"


def test_the_kpi_page_names_the_metric_where_dbt_defines_it_and_its_definition(documented: Path):
    for name, kind in (("web_share", "ratio"), ("revenue_growth", "derived"), ("revenue_month_to_date", "cumulative"),
                       ("large_web_orders", "simple")):
        text = page(documented, name)
        assert "__kpim_" not in text, name
        assert f'data-metric="{name}"' in text and f"({kind})" in text, name
        assert defined_at(documented, name) in text, name
    share = page(documented, "web_share")
    # the ratio's numerator, a simple metric with its filter as dbt writes it, and the measure it sums
    assert "numerator: web_revenue" in share and "denominator: revenue" in share
    assert "{{ Dimension('order__channel') }} = 'web'" in share and "computes: sum(amount)" in share
    assert "offset_window: 1 month" in page(documented, "revenue_growth")
    assert "grain_to_date: month" in page(documented, "revenue_month_to_date")
    large = page(documented, "large_web_orders")
    assert "{{ Dimension('order__size') }} = 'large'" in large  # the metric's filter
    assert "{{ TimeDimension('order__ordered_at', 'day') }} >= '2025-02-01'" in large  # the measure's


def test_the_manifest_has_the_metric_beside_the_resolved_form(documented: Path):
    kpis = json.loads((documented / "kpi_target" / "manifest.json").read_text())["kpis"]
    share = kpis["web_share"]
    file, line = defined_at(documented, "web_share").split(":")
    assert {k: share["metric"][k] for k in ("name", "type", "label", "file", "line")} == {
        "name": "web_share", "type": "ratio", "label": "Web share of revenue", "file": file, "line": int(line)}
    assert share["metric"]["definition"]["numerator"] == "web_revenue"
    assert share["form"] == "ratio" and set(share["ratio"]) == {"numerator", "denominator"}  # kept for tools
    assert kpis["revenue_growth"]["metric"]["definition"]["metrics"][1] == {
        "name": "revenue", "offset_window": "1 month", "alias": "revenue_before"}


def test_ls_names_each_kpis_metric(documented: Path):
    """`ls --output json`: a metric KPI's form as written (`metric`) and the metric it reads, as kpi_catalog's
    metric column names it."""
    out = cli(documented, "ls", "--output", "json")
    assert out.exit_code == 0, out.output
    listed = {k["name"]: k for k in json.loads(out.output)}
    assert {n: (k["form"], k["metric"]) for n, k in listed.items()} == {n: ("metric", n) for n in listed}
    assert set(listed) == {"web_share", "revenue_growth", "revenue_month_to_date", "large_web_orders"}


def test_kpi_catalog_names_each_metric_beside_the_form_it_is_computed_as(documented: Path):
    """kpi_catalog.metric (schema version 6) is the metric a `metric:` KPI is computed from, and `form` its resolved
    form, as a BI tool reads them; a KPI written with a form of its own has no metric."""
    from kpimetrics import Project

    with Project.load(documented).outputs() as reader:
        rows = {r.name: (r.metric, r.form) for r in reader.catalog()}
    # a derived metric with an offset_window reads its rows once more, shifted (README design note (6)): a measure
    assert rows == {"web_share": ("web_share", "ratio"), "revenue_growth": ("revenue_growth", "measure"),
                    "revenue_month_to_date": ("revenue_month_to_date", "measure"),
                    "large_web_orders": ("large_web_orders", "measure")}
