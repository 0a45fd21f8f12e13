"""`kpimetrics diff --state`: a changed definition, the KPIs it affects, and how their values move."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kpimetrics.diff import compare

from test_docs import cli, query

OLD_FILTER = "filter: status = 'completed'\n    dimensions: [region, channel]"
NEW_FILTER = "filter: status <> 'returned'\n    dimensions: [region, channel]"


@pytest.fixture(scope="module")
def changed(tmp_path_factory) -> tuple[Path, Path]:
    """The demo compiled (its target/ kept as the 'main' state), then net_revenue's filter changed."""
    parent = tmp_path_factory.mktemp("diff")
    assert cli("init", "demo", "--project-dir", str(parent)).exit_code == 0
    path = parent / "demo"
    assert cli("seed", "--project-dir", str(path)).exit_code == 0
    assert cli("compile", "--project-dir", str(path)).exit_code == 0
    state = parent / "main-target"
    shutil.copytree(path / "target", state)
    kpis = path / "kpis" / "revenue.yml"
    text = kpis.read_text()
    assert text.count(OLD_FILTER) == 1  # net_revenue's filter (revenue_trailing_3m has the same one)
    kpis.write_text(text.replace(OLD_FILTER, NEW_FILTER))
    return path, state


def hand_values(project: Path, where: str) -> dict[str, tuple[float, float | None]]:
    """Net revenue per month with a filter, and its year-over-year growth, by hand."""
    rows = query(project, f"""
        WITH m AS (
          SELECT CAST(date_trunc('month', ordered_at) AS DATE) AS month, sum(amount - discount) AS revenue
          FROM main.orders WHERE {where} GROUP BY 1)
        SELECT m.month, m.revenue, m.revenue / nullif(p.revenue, 0) - 1
        FROM m LEFT JOIN m AS p ON p.month = m.month - INTERVAL 12 MONTH""")
    return {str(month): (revenue, growth) for month, revenue, growth in rows}


def test_changed_filter_shows_the_kpi_and_what_derives_from_it(changed):
    path, state = changed
    result = cli("diff", "--project-dir", str(path), "--state", str(state), "--output", "json", "--periods", "4")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["added"] == [] and data["removed"] == []
    assert [k["name"] for k in data["changed"]] == ["net_revenue"]
    assert [k["name"] for k in data["affected"]] == ["revenue_yoy_growth"]
    net = data["changed"][0]
    assert net["fields"] == {"filter": {"old": "status = 'completed'", "new": "status <> 'returned'"}}
    growth = data["affected"][0]
    assert growth["upstream"] == ["net_revenue"] and growth["fields"] == {}

    old = hand_values(path, "status = 'completed'")
    new = hand_values(path, "status <> 'returned'")
    assert [r["period_start"] for r in net["values"]] == ["2026-07-01", "2026-08-01", "2026-09-01", "2026-10-01"]
    for r in net["values"]:
        assert r["old"] == pytest.approx(old[r["period_start"]][0], rel=1e-12)
        assert r["new"] == pytest.approx(new[r["period_start"]][0], rel=1e-12)
        assert r["old"] != pytest.approx(r["new"])  # the change moves every month
    for r in growth["values"]:
        assert r["old"] == pytest.approx(old[r["period_start"]][1], rel=1e-9)
        assert r["new"] == pytest.approx(new[r["period_start"]][1], rel=1e-9)


def test_markdown_for_a_pull_request_comment(changed):
    path, state = changed
    result = cli("diff", "--project-dir", str(path), "--state", str(state / "manifest.json"), "--periods", "2")
    assert result.exit_code == 0, result.output
    md = result.output
    assert "1 changed, 1 affected, 0 added, 0 removed" in md
    assert "| `net_revenue` | changed | filter |" in md
    assert "| `revenue_yoy_growth` | affected | derives from `net_revenue` |" in md
    assert "- `filter`: `status = 'completed'` → `status <> 'returned'`" in md
    old = hand_values(path, "status = 'completed'")["2026-10-01"][0]
    new = hand_values(path, "status <> 'returned'")["2026-10-01"][0]
    assert f"| 2026-10-01 | {old:,.0f} | {new:,.0f} | {(new - old) / old:+.1%} |" in md
    # the other KPIs are not mentioned
    for other in ("revenue_trailing_3m", "bookings_ytd", "csat", "active_customers"):
        assert other not in md


def test_an_unchanged_project_has_nothing_to_say(changed, tmp_path):
    path, _ = changed
    assert cli("compile", "--project-dir", str(path)).exit_code == 0
    state = tmp_path / "now"
    shutil.copytree(path / "target", state)
    result = cli("diff", "--project-dir", str(path), "--state", str(state))
    assert result.exit_code == 0 and "No KPI or standard changed." in result.output


def test_missing_state_files_are_explained(changed, tmp_path):
    path, state = changed
    result = cli("diff", "--project-dir", str(path), "--state", str(tmp_path))
    assert result.exit_code == 1 and f"{tmp_path}/manifest.json: error[KPI130]: no manifest.json there" in result.output
    only_manifest = tmp_path / "only"
    only_manifest.mkdir()
    shutil.copy(state / "manifest.json", only_manifest / "manifest.json")
    result = cli("diff", "--project-dir", str(path), "--state", str(only_manifest))
    assert result.exit_code == 1
    assert "net_revenue.sql: error[KPI133]: the compiled SQL of KPI 'net_revenue' is missing" in result.output
    assert "keep the whole target/ folder" in result.output


def test_earlier_sql_with_a_masked_secret_is_not_run(changed, tmp_path):
    """target/ keeps env_var() values masked: the earlier SQL cannot give the earlier values, so none are shown
    (running it would filter on the mask, or read a schema called ****)."""
    path, state = changed
    masked = tmp_path / "masked"
    shutil.copytree(state, masked)
    sql = masked / "compiled" / "duckdb" / "net_revenue.sql"
    sql.write_text(sql.read_text().replace("status = 'completed'", "status = '****'"))
    result = cli("diff", "--project-dir", str(path), "--state", str(masked), "--output", "json", "--periods", "2")
    assert result.exit_code == 0, result.output
    net = json.loads(result.output)["changed"][0]
    assert net["name"] == "net_revenue" and "env_var() values masked" in net["note"]
    assert [r["old"] for r in net["values"]] == [None, None] and all(r["new"] is not None for r in net["values"])


def test_compare_added_removed_and_metadata_only_changes():
    base = {"definition_hash": "a", "label": "A", "filter": None, "depends_on": {"kpis": []}, "location": "x:1:1"}
    old = {"a": base, "gone": base, "b": base | {"depends_on": {"kpis": ["a"]}}}
    new = {"a": base | {"label": "A2", "location": "x:9:1"}, "b": old["b"], "fresh": base}
    diffs = {d.name: d for d in compare(old, new)}
    assert diffs["fresh"].change == "added" and diffs["gone"].change == "removed"
    assert diffs["a"].change == "changed" and list(diffs["a"].fields) == ["label"]  # a moved line is no change
    assert diffs["a"].values_change is False and "b" not in diffs  # a label changes no values
    moved = {"a": base | {"definition_hash": "z"}, "b": old["b"] | {"definition_hash": "y"}}
    diffs = {d.name: d for d in compare({"a": base, "b": old["b"]}, moved)}
    assert diffs["a"].fields == {"definition_hash": {"old": "a", "new": "z"}}  # e.g. the model's SQL changed
    assert diffs["b"].change == "affected" and diffs["b"].upstream == ["a"]
