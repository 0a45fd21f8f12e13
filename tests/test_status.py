"""`kpimetrics status`: the terminal scorecard, its JSON and --fail-on, against the output tables."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kpimetrics.cli import main
from kpimetrics.scorecard import format_value, sparkline

from test_docs import headline, make_demo, query


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("status"))


def status(demo: Path, *args: str, columns: int = 160):
    result = CliRunner().invoke(main, ["status", "--project-dir", str(demo), *args], env={"COLUMNS": str(columns)},
                                catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def test_terminal_scorecard_groups_by_priority_and_strategy(demo: Path):
    result = status(demo)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    expected = headline(demo)
    assert len(expected) == 12
    for name, (period, value, target, st, unit) in expected.items():
        line = next(l for l in lines if l.strip().startswith(name + " "))
        assert str(period) in line and format_value(value, unit) in line and format_value(target, unit) in line
        assert {"on_track": "● on track", "at_risk": "▲ at risk", "off_track": "✖ off track"}[st] in line
    order = [l.strip().split()[0] for l in lines if l.strip()]
    # priorities, then their strategies, then their KPIs; standards last
    assert order.index("brand_loyalty") < order.index("improve_customer_experience") < order.index("csat")
    assert order.index("profitable_growth") < order.index("grow_repeat_purchases") < order.index("net_revenue")
    assert order.index("performance") > order.index("mobile_order_share")
    # a strategy heading carries its roll-up: the worst status of its KPIs
    heading = next(l for l in lines if l.strip().startswith("win_mobile_shoppers"))
    assert "● on track" in heading
    heading = next(l for l in lines if l.strip().startswith("grow_repeat_purchases"))
    assert "✖ off track" in heading


def test_sparkline_of_recent_complete_periods(demo: Path):
    values = [v for (v,) in query(demo, """
        SELECT value FROM kpi.kpi_status WHERE name = 'bookings_ytd' AND grain = 'month' AND dimension = ''
          AND is_complete ORDER BY period_start DESC LIMIT 8""")][::-1]
    line = next(l for l in status(demo).output.splitlines() if l.strip().startswith("bookings_ytd"))
    assert sparkline(values) in line
    assert sparkline([1, 2, None, 4]) == "▁▃ █"
    assert sparkline([5, 5]) == "▄▄" and sparkline([None]) == ""


def test_json_has_the_headline_and_recent_values(demo: Path):
    rows = json.loads(status(demo, "--format", "json").output)
    expected = headline(demo)
    assert {r["name"] for r in rows} == set(expected)
    for r in rows:
        period, value, target, st, _ = expected[r["name"]]
        assert (r["period_start"], r["value"], r["target"], r["status"]) == (period.isoformat(), value, target, st)
    net = next(r for r in rows if r["name"] == "net_revenue")
    recent = [v for (v,) in query(demo, """
        SELECT value FROM kpi.kpi_status WHERE name = 'net_revenue' AND grain = 'month' AND dimension = ''
          AND is_complete ORDER BY period_start DESC LIMIT 8""")][::-1]
    assert net["recent_values"] == recent and net["recent_values"][-1] == net["value"]


def test_fail_on_exit_codes(demo: Path):
    expected = headline(demo)
    off = sorted(n for n, r in expected.items() if r[3] == "off_track")
    risky = sorted(n for n, r in expected.items() if r[3] in ("off_track", "at_risk"))
    fine = sorted(n for n, r in expected.items() if r[3] == "on_track")
    assert off and len(risky) > len(off) and fine
    assert status(demo).exit_code == 0  # without --fail-on, statuses never fail the command
    failing = status(demo, "--fail-on", "off_track")
    assert failing.exit_code == 1
    assert f"{len(off)} KPI(s) off_track: " in failing.output
    named = failing.output.split("off_track: ")[-1].strip().replace(",", " ").split()
    assert sorted(named) == off
    risky_run = status(demo, "--fail-on", "at_risk")
    assert risky_run.exit_code == 1
    assert sorted(risky_run.output.split("at_risk: ")[-1].strip().replace(",", " ").split()) == risky
    assert status(demo, "--fail-on", "at_risk", "-s", " ".join(fine)).exit_code == 0
    assert status(demo, "--fail-on", "off_track", "--format", "json", "-s", off[0]).exit_code == 1


def test_narrow_terminal_drops_the_change_column(demo: Path):
    wide = status(demo, columns=160).output
    narrow = status(demo, columns=90).output
    assert "change" in wide.splitlines()[1] and "change" not in narrow.splitlines()[1]
