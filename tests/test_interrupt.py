"""Ctrl-C: `kpimetrics run` interrupted by SIGINT at any step ends with a message and
exit code 130, logs the run as `aborted`, drops its staging tables, and leaves every
output table exactly as before the run or exactly as the run would have left it.

The SIGINT is sent by the run to itself at a named step (KPIMETRICS_KILL_SIGNAL=INT),
so each case is exact; one more case interrupts from outside, as a terminal does.
"""
from __future__ import annotations

import signal

import pytest

from helpers_run import query
from kpimetrics import faults
from test_crash import Scenario

pytestmark = pytest.mark.slow  # processes killed or interrupted one after another: left out of make test-fast

# (the step interrupted, the state it leaves)
STEPS = [
    ("run.start:1", "before"),
    ("runs.insert:1", "before"),
    ("sql.insert:1", "before"),  # staging the first scan
    ("stage.ranges:2", "before"),
    ("publish.begin:1", "before"),
    ("sql.delete:3", "before"),  # in the middle of publishing
    ("publish.catalog:1", "before"),
    ("publish.commit:1", "before"),
    ("publish.committed:1", "after"),
]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    return Scenario(tmp_path_factory.mktemp("interrupt") / "project")


def staging_tables(scenario: Scenario) -> list:
    return query(scenario.root, "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'kpi_stage%'")


def check_interrupted(scenario: Scenario, proc, how: str) -> str:
    out, err = (s.decode() for s in proc.communicate(timeout=60))
    assert proc.returncode == 130, f"{how}: exit {proc.returncode}\n{out}\n{err}"
    assert "interrupted" in err and "Traceback" not in out + err, f"{how}: {err}"
    statuses = [s for _, s in query(scenario.root, "SELECT run_id, status FROM kpi.kpi_runs ORDER BY run_id")]
    assert statuses[0] == "success" and set(statuses[1:]) <= {"aborted"}, f"{how}: {statuses}"
    assert staging_tables(scenario) == [], how
    return scenario.check_killed(how)


@pytest.mark.parametrize("step, state", STEPS)
def test_ctrl_c_at_a_step(scenario, step, state):
    assert step in scenario.steps
    proc = scenario.start({faults.KILL_AT: step, faults.KILL_SIGNAL: "INT"}, cli=True)
    assert check_interrupted(scenario, proc, f"SIGINT at {step}") == state


def test_ctrl_c_from_the_terminal(scenario):
    """SIGINT from outside while the run works (frozen at a step so the timing is certain)."""
    proc = scenario.start({faults.KILL_AT: "sql.delete:2", faults.KILL_SIGNAL: "STOP"}, cli=True)
    scenario.wait_for(proc, "sql.delete:2")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    assert check_interrupted(scenario, proc, "SIGINT from outside") == "before"
