"""The one reader of the output tables (kpimetrics/outputs.py) and the one status vocabulary (kpimetrics/status.py).

The reader gives the same typed rows whichever engine holds the tables; the status words are spelled
in status.py alone, so a new status or a new look is one edit there.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from pathlib import Path

import pytest

import kpimetrics
from kpimetrics import Project
from kpimetrics.errors import ConfigError
from kpimetrics.scaffold import init_project
from kpimetrics.outputs import ROW_TYPES, CatalogRow, StatusRow, StrategyRow, as_dict, columns
from kpimetrics.status import FAIL_ON, ROLLUP_ORDER, Status, look

from test_docs import make_demo

PACKAGE = Path(kpimetrics.__file__).parent
VOCABULARY = PACKAGE / "status.py"
# A status word standing alone: `at_risk_threshold` and `at_risk_below` are column and key names, not the word.
WORD = re.compile(r"(?<![A-Za-z0-9_])(?:" + "|".join(s.value for s in Status) + r")(?![A-Za-z0-9_])")


# --- one vocabulary ----------------------------------------------------------------------------

def spelled(text: str) -> list[str]:
    return WORD.findall(text)


def test_the_status_words_are_spelled_only_in_the_enum():
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path != VOCABULARY
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if spelled(line)
    ]
    assert offenders == [], "use kpimetrics.status.Status instead of spelling a status word:\n" + "\n".join(offenders)
    assert set(spelled(VOCABULARY.read_text(encoding="utf-8"))) == {s.value for s in Status}


def test_the_check_catches_a_copy_in_python_sql_a_template_or_css():
    for copy in ("lit('off_track')", 'if r["status"] == "no_data":', "{% if p.status == 'at_risk' %}",
                 ".big.s-on_track { border-left: 5px }", "WHEN value IS NULL THEN 'no_target'"):
        assert spelled(copy), copy
    for name in ("at_risk_threshold", "at_risk_below", "s.at_risk_above", "Status.OFF_TRACK", "no targets"):
        assert not spelled(name), name


def test_order_and_fail_on_follow_the_roll_up():
    assert ROLLUP_ORDER == (Status.OFF_TRACK, Status.AT_RISK, Status.ON_TRACK)
    assert FAIL_ON == {Status.OFF_TRACK: (Status.OFF_TRACK,), Status.AT_RISK: (Status.OFF_TRACK, Status.AT_RISK)}
    # a member is the very word the table holds
    assert Status("at_risk") is Status.AT_RISK and Status.AT_RISK == "at_risk" and f"{Status.AT_RISK}" == "at_risk"
    assert Status.of("on_track") is Status.ON_TRACK and Status.of("someday") == "someday" and Status.of(None) is None
    assert look("someday").text == "unknown" and look(None).text == "unknown"
    assert len({look(s).symbol for s in Status}) == len(Status)  # told apart without colour


# --- one reader ----------------------------------------------------------------------------------

def test_each_row_type_is_its_tables_columns_in_order():
    """A column added to tables.py fails here until its row type reads it."""
    for row_type in ROW_TYPES:
        assert columns(row_type) == row_type.TABLE.column_names, row_type.__name__


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("outputs"))


def test_typed_rows_from_duckdb(demo: Path):
    project = Project.load(demo)
    with project.outputs() as out:
        catalog = {r.name: r for r in out.catalog()}
        headlines = out.headlines({"csat": "week", "net_revenue": "month", "bookings_ytd": "quarter"}, history=3)
        totals = out.totals()
        slices = out.latest_slices()
        runs = out.runs()
        strategies = out.strategies()
    assert catalog["csat"].grains == ("week", "month") and "board" in catalog["csat"].tags
    assert all(isinstance(r.status, Status) for r in totals + slices)
    assert all(r.is_total for r in totals) and not any(r.is_total for r in slices)
    # the headline is the latest complete period; `status` gives the same row as plain values
    net = headlines["net_revenue"]
    assert len(net.recent) == 3 and all(r.is_complete for r in net.recent)
    assert [r.period_start for r in net.recent] == sorted(r.period_start for r in net.recent)
    assert net.row.period_start == dt.date(2026, 10, 1) and net.status is Status.AT_RISK
    (row,) = project.status("net_revenue")
    assert row["status"] == "at_risk" and type(row["status"]) is str
    assert {k: row[k] for k in columns(StatusRow)} == {
        k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in as_dict(net.row).items()}
    assert row["recent_values"][-3:] == [r.value for r in net.recent]
    # a grain the KPI does not have: no row, so no_data
    assert headlines["bookings_ytd"].row is None and headlines["bookings_ytd"].status is Status.NO_DATA
    # slices only at the latest complete period of their KPI and grain
    latest = {(r.name, r.grain): r.period_start for r in totals if r.is_complete}
    assert slices and all(r.period_start == latest[(r.name, r.grain)] for r in slices)
    assert runs[-1].status == "success" and runs[-1].kpis_failed == 0
    assert {r.level for r in strategies} == {"mission", "priority", "strategy"}


def test_a_reader_asks_for_a_tables_columns_once(demo: Path):
    """kpi_catalog has columns a migration added (metric, status_hash): the reader asks which the warehouse has,
    once per table, not at every read of it."""
    with Project.load(demo).outputs() as out:
        asked = []
        columns_of = out.adapter.columns
        out.adapter.columns = lambda schema, table: asked.append(table) or columns_of(schema, table)
        first, again = out.catalog(), out.catalog()
    assert asked == ["kpi_catalog"]
    assert [as_dict(r) for r in first] == [as_dict(r) for r in again] and any(r.metric is None for r in first)


def test_a_schema_without_tables_is_a_clear_error(tmp_path: Path):
    root = init_project("demo", tmp_path)  # not run
    with Project.load(root).outputs() as out:
        with pytest.raises(ConfigError, match=r"no output tables in schema 'kpi' yet: run `kpimetrics run` first"):
            out.require(StatusRow)
        with pytest.raises(ConfigError, match=r"\(kpi_catalog, kpi_strategy, kpi_status missing\)"):
            out.require(CatalogRow, StrategyRow, StatusRow)


# --- the same rows from every engine -----------------------------------------------------------

BOOKKEEPING = {"run_id", "updated_at", "started_at", "finished_at"}


def _plain(rows) -> list[dict]:
    return [{k: v for k, v in dataclasses.asdict(r).items() if k not in BOOKKEEPING} for r in rows]


def assert_same_rows(expected: list, actual: list, what: str) -> None:
    expected, actual = _plain(expected), _plain(actual)
    assert len(expected) == len(actual) > 0, what
    for e, a in zip(expected, actual):
        for k in e:
            if isinstance(e[k], float) and isinstance(a[k], float):
                assert math.isclose(e[k], a[k], rel_tol=1e-9, abs_tol=1e-12), (what, k, e, a)
            else:
                assert (e[k], type(e[k])) == (a[k], type(a[k])), (what, k, e, a)


def read_everything(project: Project) -> dict[str, list]:
    grains = {"csat": "week", "net_revenue": "month", "revenue_yoy_growth": "month"}
    with project.outputs() as out:
        headlines = out.headlines(grains, history=4)
        return {
            "headlines": [r for h in headlines.values() for r in h.recent],
            "recent": out.recent_totals(["csat", "net_revenue"], 5, complete_only=False),
            "totals": out.totals(),
            "slices": out.latest_slices(),
            "catalog": out.catalog(),
            "strategies": sorted(out.strategies(), key=lambda r: r.name),
            "check_ins": out.check_ins(),
            "runs": out.runs(),
        }


def test_postgres_gives_the_same_typed_rows_as_duckdb(tmp_path, pg_server):
    from test_postgres import AS_OF, Pg, cli, demo_project

    root = demo_project(tmp_path, Pg(pg_server))
    for target in ("dev", "pg"):
        for args in (("seed",), ("run", "--as-of", AS_OF.isoformat())):
            result = cli(root, *args, target=target)
            assert result.exit_code == 0, result.output
    on_duckdb = read_everything(Project.load(root, target="dev"))
    on_postgres = read_everything(Project.load(root, target="pg"))
    for what, rows in on_duckdb.items():
        assert_same_rows(rows, on_postgres[what], what)
