"""Selection like dbt (SPEC §4, §8): `name+` (downstream), `+name+` (both ways), and `state:modified` /
`state:new` against an earlier target/ (`--state`), so that CI runs only what a pull request changed."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers_run import AS_OF, insert_orders, kpi, kpis_yml, make_orders, ok, query, run, set_kpis, write_run_project
from kpimetrics import Project
from kpimetrics.cli import main
from kpimetrics.errors import ConfigError, UsageError

# A chain of derived KPIs: revenue -> revenue_growth -> growth_gap; revenue and order_count -> aov.
REVENUE = kpi("revenue", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: sum(amount)
    target: 20000
    tags: [board]
""", indicator="lagging")
ORDER_COUNT = kpi("order_count", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: count(*)
    target: 100
""")
GROWTH = kpi("revenue_growth", """
    derived: revenue / lag(revenue) - 1
    target: 0.01
""")
GAP = kpi("growth_gap", """
    derived: revenue_growth - 0.01
    target: 0
""")
AOV = kpi("aov", """
    derived: revenue / order_count
    target: 50
""")
ALL = ["revenue", "order_count", "revenue_growth", "growth_gap", "aov"]


def kpis(revenue: str = REVENUE, order_count: str = ORDER_COUNT, *more: str) -> str:
    return kpis_yml(revenue, order_count, GROWTH, GAP, AOV, *more)


def cli(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def ls(root: Path, selector: str, *more: str) -> list[str]:
    result = cli("ls", "--project-dir", str(root), "-s", selector, *more)
    assert result.exit_code == 0, result.output
    return result.output.split()


@pytest.fixture
def project(tmp_path) -> tuple[Path, Path]:
    """The project run once, its target/ kept as the main branch's state (`main-target/`)."""
    root = write_run_project(tmp_path / "shop", kpis())
    insert_orders(root, make_orders(dt.date(2025, 1, 1), dt.date(2025, 7, 1)))
    ok(run(root))
    state = tmp_path / "main-target"
    shutil.copytree(Project.load(root).definition.paths.target, state)
    assert (state / "manifest.json").is_file()
    return root, state


# --- the graph: upstream, downstream, both -------------------------------------------------

def test_plus_after_a_name_selects_what_derives_from_it_transitively(project):
    root, _ = project
    assert ls(root, "revenue+") == ["revenue", "revenue_growth", "growth_gap", "aov"]
    assert ls(root, "revenue_growth+") == ["revenue_growth", "growth_gap"]
    assert ls(root, "order_count+") == ["order_count", "aov"]
    assert ls(root, "growth_gap+") == ["growth_gap"]  # nothing derives from it


def test_plus_before_and_after_selects_both_ways_and_no_sideways(project):
    root, _ = project
    assert ls(root, "+growth_gap") == ["revenue", "revenue_growth", "growth_gap"]
    assert ls(root, "+revenue_growth+") == ["revenue", "revenue_growth", "growth_gap"]  # not aov, a sibling
    # aov's inputs and nothing derived from them that aov does not read
    assert ls(root, "+aov+") == ["revenue", "order_count", "aov"]


def test_plus_works_on_every_method_and_terms_unite(project):
    root, _ = project
    assert ls(root, "tag:board+") == ["revenue", "revenue_growth", "growth_gap", "aov"]
    assert ls(root, "tag:board") == ["revenue"]
    assert ls(root, "order_count+ revenue_growth") == ["order_count", "revenue_growth", "aov"]


@pytest.mark.parametrize("selector", ["nope+", "+nope+", "+", "++", "tag:nope+"])
def test_plus_on_nothing_is_a_usage_error(project, selector):
    root, _ = project
    result = cli("ls", "--project-dir", str(root), "-s", selector)
    assert result.exit_code == 2, result.output
    assert "matches no KPI" in result.output


# --- state:modified ------------------------------------------------------------------------

def test_unchanged_project_has_nothing_modified(project):
    root, state = project
    assert ls(root, "state:modified", "--state", str(state)) == []
    assert ls(root, "state:modified+", "--state", str(state / "manifest.json")) == []
    assert ls(root, "state:modified order_count", "--state", str(state)) == ["order_count"]


def test_changed_measure_selects_the_kpi_and_with_plus_its_derived_readers(project):
    root, state = project
    set_kpis(root, kpis(REVENUE.replace("sum(amount)", "sum(amount - discount)")))
    assert ls(root, "state:modified", "--state", str(state)) == ["revenue"]
    assert ls(root, "state:modified+", "--state", str(state)) == ["revenue", "revenue_growth", "growth_gap", "aov"]
    assert ls(root, "state:new", "--state", str(state)) == []
    # the facade takes the same
    assert Project.load(root).select("state:modified+", state=state) == ["revenue", "revenue_growth", "growth_gap", "aov"]


def test_added_kpi_is_modified_and_new(project):
    root, state = project
    refunds = kpi("refunds", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        filter: status = 'returned'
        target: 100
    """)
    set_kpis(root, kpis(REVENUE, ORDER_COUNT, refunds))
    assert ls(root, "state:new", "--state", str(state)) == ["refunds"]
    assert ls(root, "state:modified", "--state", str(state)) == ["refunds"]
    assert ls(root, "state:modified+", "--state", str(state)) == ["refunds"]


def test_owner_change_counts_as_modified(project):
    """An owner is not in the definition_hash, but it is in kpi_catalog and kpi_status: a run must rewrite it."""
    root, state = project
    set_kpis(root, kpis(REVENUE, ORDER_COUNT.replace("owner: sales@shop.example", "owner: ops@shop.example")))
    assert ls(root, "state:modified", "--state", str(state)) == ["order_count"]
    assert ls(root, "state:modified+", "--state", str(state)) == ["order_count", "aov"]
    result = cli("run", "--project-dir", str(root), "-s", "state:modified", "--state", str(state),
                 "--as-of", AS_OF.isoformat(), "-q")
    assert result.exit_code == 0, result.output
    assert query(root, "SELECT name, owner FROM kpi.kpi_catalog WHERE name IN ('order_count', 'revenue') ORDER BY 1") == [
        ("order_count", "ops@shop.example"), ("revenue", "sales@shop.example")]


def test_state_selector_without_state_is_a_usage_error(project):
    root, _ = project
    for command in ("ls", "compile", "run", "status"):
        result = cli(command, "--project-dir", str(root), "-s", "state:modified+")
        assert result.exit_code == 2, (command, result.output)
        assert "pass --state PATH" in result.output
    with pytest.raises(UsageError, match="pass --state PATH"):
        Project.load(root).select("state:modified")
    result = cli("ls", "--project-dir", str(root), "-s", "state:changed", "--state", str(root))
    assert result.exit_code == 2 and "unknown state selector 'state:changed'" in result.output
    result = cli("ls", "--project-dir", str(root), "-s", "state:modified", "--state", str(root / "no-such-folder"))
    assert result.exit_code == 2  # click: the path does not exist, as for `diff --state`


@pytest.mark.parametrize(("text", "code", "line"), [
    (None, "KPI130", 0),  # no manifest.json in the folder
    ('{"kpis": {\n  "revenue": }}', "KPI131", 2),  # not JSON
    ('{"kpis": ["revenue"]}', "KPI132", 0),  # not the shape kpimetrics writes
])
def test_malformed_state_is_refused_with_diffs_codes(project, tmp_path, text, code, line):
    root, _ = project
    bad = tmp_path / "bad-target"
    bad.mkdir()
    manifest = bad / "manifest.json"
    if text is not None:
        manifest.write_text(text)
    result = cli("ls", "--project-dir", str(root), "-s", "state:modified", "--state", str(bad), "--log-format", "json")
    assert result.exit_code == 1, result.output
    issues = [json.loads(x) for x in result.output.splitlines() if x.startswith("{")]
    assert [(i["code"], i["path"], i["line"]) for i in issues] == [(code, str(manifest), line)]
    with pytest.raises(ConfigError) as caught:
        Project.load(root).select("state:modified", state=bad)
    assert [i.code for i in caught.value.issues] == [code]
    # a state that is never compared with is not read
    assert ls(root, "revenue", "--state", str(bad)) == ["revenue"]


# --- CI: run only what a pull request changed ----------------------------------------------

def run_ids(root: Path) -> dict[str, set[int]]:
    rows = query(root, "SELECT DISTINCT name, run_id FROM kpi.kpi_values")
    out: dict[str, set[int]] = {}
    for name, run_id in rows:
        out.setdefault(name, set()).add(run_id)
    return out


def test_run_state_modified_plus_touches_only_those_kpis(project):
    root, state = project
    before = run_ids(root)
    assert sorted(before) == sorted(ALL) and all(len(ids) == 1 for ids in before.values())
    untouched = query(root, "SELECT * FROM kpi.kpi_values WHERE name = 'order_count' ORDER BY ALL")
    set_kpis(root, kpis(REVENUE.replace("sum(amount)", "sum(amount - discount)")))

    result = cli("run", "--project-dir", str(root), "-s", "state:modified+", "--state", str(state),
                 "--as-of", AS_OF.isoformat(), "--log-format", "json")
    assert result.exit_code == 0, result.output
    summary = next(json.loads(x) for x in result.output.splitlines() if x.startswith('{"run_id"'))
    assert sorted(k["name"] for k in summary["results"]) == sorted(
        ["revenue", "revenue_growth", "growth_gap", "aov"])
    after = run_ids(root)
    assert after["order_count"] == before["order_count"]
    assert query(root, "SELECT * FROM kpi.kpi_values WHERE name = 'order_count' ORDER BY ALL") == untouched
    (new_run,) = after["revenue"]
    assert new_run not in before["revenue"]
    for name in ("revenue_growth", "growth_gap", "aov"):
        assert after[name] == {new_run}, name

    # the new definition's values, by hand
    hand = dict(query(root, """
        SELECT CAST(date_trunc('month', ordered_at) AS DATE), sum(amount - discount)
        FROM main.orders GROUP BY 1"""))
    got = dict(query(root, """
        SELECT period_start, value FROM kpi.kpi_values
        WHERE name = 'revenue' AND grain = 'month' AND dimension = ''"""))
    assert got == pytest.approx(hand)
    counts = dict(query(root, "SELECT CAST(date_trunc('month', ordered_at) AS DATE), count(*) FROM main.orders GROUP BY 1"))
    aov = dict(query(root, "SELECT period_start, value FROM kpi.kpi_values "
                           "WHERE name = 'aov' AND grain = 'month' AND dimension = ''"))
    assert aov == pytest.approx({m: hand[m] / counts[m] for m in hand})


def test_run_with_nothing_modified_computes_nothing(project):
    root, state = project
    before = query(root, "SELECT * FROM kpi.kpi_values ORDER BY ALL")
    result = cli("run", "--project-dir", str(root), "-s", "state:modified+", "--state", str(state),
                 "--as-of", AS_OF.isoformat())
    assert result.exit_code == 0, result.output
    assert "the selection picked no KPI" in result.output
    assert query(root, "SELECT * FROM kpi.kpi_values ORDER BY ALL") == before


def test_compile_and_status_take_state_too(project):
    root, state = project
    set_kpis(root, kpis(REVENUE.replace("sum(amount)", "sum(amount - discount)")))
    result = Project.load(root).compile("state:modified+", state=state, today=AS_OF)
    assert result.selected == ["revenue", "revenue_growth", "growth_gap", "aov"]
    result = cli("status", "--project-dir", str(root), "-s", "state:modified", "--state", str(state), "--format", "json")
    assert result.exit_code == 0, result.output
    assert [r["name"] for r in json.loads(result.output)] == ["revenue"]
