"""Crash safety: a run killed with SIGKILL at any moment leaves every output table
exactly as it was before the run or exactly as the run would have left it, never a
mix and never a table missing; the next run then succeeds and marks the killed one
`aborted`.

The kill points are the run's named steps (kpimetrics.faults): a clean run writes
the kill log, and the run is killed once at every step in it. Then it is killed at
random times. The seed is printed (and in every failure message); replay with
KPIMETRICS_CRASH_SEED=<seed>. KPIMETRICS_CRASH_RANDOM sets the number of random kills.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kpimetrics import faults, tables
from test_run_incremental import (
    AS_OF, insert_orders, kpi, kpis_yml, make_orders, ok, query, run, set_kpis, table, write_run_project,
)

REVENUE = kpi("revenue", """
    model: source('shop', 'orders')
    time: ordered_at
    grain: [month, week]
    measure: sum(amount - discount)
    filter: status <> 'returned'
    dimensions: [region]
    target: 20000
    check_ins:
      - {date: 2025-09-01, author: sales@shop.example, note: "it's fine; really"}
""")
SHARE = kpi("completed_share", """
    model: source('shop', 'orders')
    time: ordered_at
    ratio:
      numerator: count(*) filter (where status = 'completed')
      denominator: count(*)
    target: 0.6
""")
GROWTH = kpi("revenue_growth", """
    derived: revenue / lag(revenue) - 1
    target: 0.02
""")
OLD = kpi("old_buyers", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: count(distinct customer_id)
    target: 40
""")
BUYERS = kpi("buyers", """
    model: source('shop', 'orders')
    time: ordered_at
    grain: [month, quarter]
    measure: count(distinct customer_id)
    dimensions: [channel]
    target: 45
""")
BEFORE_KPIS = kpis_yml(REVENUE, SHARE, GROWTH, OLD)
# the run under test: new rows, a KPI removed, one added, a target changed
RUN_REVENUE = REVENUE.replace("target: 20000", "target: 21000") + (
    '    - {date: 2025-12-01, author: sales@shop.example, note: "December; new price list"}\n')
RUN_KPIS = kpis_yml(RUN_REVENUE, SHARE, GROWTH, BUYERS)

NAMES = [t.name for t in tables.ALL_TABLES if t.name != "kpi_runs"]  # kpi_runs is a log, checked apart
RUN_SCRIPT = (
    "import datetime, sys\n"
    "from kpimetrics import Project\n"
    "Project.load(sys.argv[1]).run(as_of=datetime.date.fromisoformat(sys.argv[2]))\n"
)


def tables_of(root: Path, drop: tuple[str, ...] = ("computed_at", "updated_at")) -> dict[str, list[tuple] | None]:
    """Every output table (run_id included unless dropped; wall-clock columns left out); None for a missing one."""
    present = {r[0] for r in query(root, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'kpi'")}
    return {n: table(root, n, drop=drop) if n in present else None for n in NAMES}


WITHOUT_RUN_ID = ("run_id", "computed_at", "updated_at")


def run_subprocess(root: Path, env: dict[str, str], *, cli: bool = False) -> subprocess.Popen:
    """`kpimetrics run` in a new process: through the CLI, or (faster to start) through the API."""
    as_of = AS_OF.isoformat()
    args = ["-m", "kpimetrics", "run", "--project-dir", str(root), "--as-of", as_of] if cli else ["-c", RUN_SCRIPT, str(root), as_of]
    return subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=Path(__file__).parent,
    )


class Scenario:
    """A project whose warehouse is reset to the before-state for every kill."""

    def __init__(self, root: Path, *, first_run: bool = False):
        """The run under test is the project's first (no output tables yet) or follows an earlier run."""
        self.root = root
        write_run_project(root, BEFORE_KPIS)
        insert_orders(root, make_orders(dt.date(2025, 6, 1), dt.date(2025, 11, 20)))
        self.prior_runs = 0 if first_run else 1
        if not first_run:
            ok(run(root))
        insert_orders(root, make_orders(dt.date(2025, 11, 20), dt.date(2025, 12, 20), seed=5, first_id=50_000))
        set_kpis(root, RUN_KPIS)
        self.saved = root.parent / "before.duckdb"
        shutil.copy(root / "wh.duckdb", self.saved)
        self.before = tables_of(root)
        self.log = root.parent / "kill.log"
        proc = self.start({})
        assert proc.wait() == 0, proc.stderr.read().decode()
        self.after = tables_of(root)
        self.after_any_run = tables_of(root, WITHOUT_RUN_ID)
        # a first run creates its tables in a transaction of their own: killed later, it leaves them empty
        self.empty = {n: [] for n in NAMES} | {"kpi_meta": self.after["kpi_meta"]} if first_run else self.before
        self.steps = faults.occurrences(self.log.read_text().split())

    def reset(self) -> None:
        shutil.copy(self.saved, self.root / "wh.duckdb")
        for leftover in self.root.glob("wh.duckdb.wal"):
            leftover.unlink()
        self.log.unlink(missing_ok=True)

    def start(self, env: dict[str, str], *, cli: bool = False) -> subprocess.Popen:
        self.reset()
        return run_subprocess(self.root, {faults.KILL_LOG: str(self.log), **env}, cli=cli)

    def wait_for(self, proc: subprocess.Popen, step: str) -> None:
        """Wait until the run in `proc` has reached `step` (as `name:n`), and a moment more to signal itself."""
        deadline = time.monotonic() + 30
        while not self.log.exists() or faults.occurrences(self.log.read_text().split())[-1:] != [step]:
            assert time.monotonic() < deadline and proc.poll() is None, f"the run did not reach {step}"
            time.sleep(0.01)
        time.sleep(0.1)

    def check_killed(self, how: str, *, finished: bool = False) -> str:
        """The state after a kill is the before- or the after-state; the next run repairs the log and succeeds.

        `finished`: the run reached its last step, so it may have recorded its success before the kill."""
        state = tables_of(self.root)
        assert state in (self.before, self.empty, self.after), f"{how}: the tables are a mix of before and after"
        which = "after" if state == self.after else "before"
        ok(result := run(self.root))
        assert tables_of(self.root, WITHOUT_RUN_ID) == self.after_any_run, f"{how}: the next run differs"
        statuses = [s for _, s in query(self.root, "SELECT run_id, status FROM kpi.kpi_runs ORDER BY run_id")]
        prior, killed = statuses[:self.prior_runs], statuses[self.prior_runs:-1]
        assert prior + statuses[-1:] == ["success"] * (self.prior_runs + 1), f"{how}: {statuses}"
        allowed = {"aborted", "success"} if finished else {"aborted"}
        assert set(killed) <= allowed, f"{how}: the killed run's log: {statuses}"
        return which


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    return Scenario(tmp_path_factory.mktemp("crash") / "project")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Scenario:
    return Scenario(tmp_path_factory.mktemp("crash_first") / "project", first_run=True)


def test_the_scenario_changes_every_table(scenario):
    assert len(scenario.steps) >= 40, scenario.steps
    for name in ("kpi_catalog", "kpi_values", "kpi_status", "kpi_targets", "kpi_check_ins"):
        assert scenario.before[name] != scenario.after[name], name
    reached = {s.rsplit(":", 1)[0] for s in scenario.steps}
    assert {"run.start", "runs.insert", "stage.ranges", "publish.begin", "publish.catalog", "publish.check_ins",
            "publish.strategy", "publish.commit", "publish.committed", "run.finish", "sql.insert",
            "sql.delete", "sql.create", "sql.drop", "sql.update"} <= reached


def test_sigkill_at_every_named_step(scenario):
    """Killed at each step: before the commit the tables are as before, from the commit on as after."""
    outcomes = {}
    for step in scenario.steps:
        proc = scenario.start({faults.KILL_AT: step})
        code = proc.wait(timeout=60)
        assert code == -9, f"{step}: the run was not killed ({code}): {proc.stderr.read().decode()[-2000:]}"
        assert scenario.log.read_text().split()[-1] == step.rsplit(":", 1)[0]
        outcomes[step] = scenario.check_killed(f"killed at {step}")
    commit = scenario.steps.index("publish.commit:1")
    expected = ["before"] * (commit + 1) + ["after"] * (len(scenario.steps) - commit - 1)
    assert list(outcomes.values()) == expected, outcomes


def test_sigkill_at_random_times(scenario):
    """Killed from outside at random moments: after a random step, a random few milliseconds into the next
    statement (so machine load does not bunch the kills at one end of the run)."""
    seed = int(os.environ.get("KPIMETRICS_CRASH_SEED", random.randrange(1 << 30)))
    count = int(os.environ.get("KPIMETRICS_CRASH_RANDOM", 12))
    print(f"crash seed {seed} (replay: KPIMETRICS_CRASH_SEED={seed})")
    rnd = random.Random(seed)
    seen = {"before": 0, "after": 0, "reached the end": 0}
    for i in range(count):
        after_step, delay = rnd.randrange(1, len(scenario.steps) + 1), rnd.uniform(0, 0.01)
        proc = scenario.start({})
        deadline = time.monotonic() + 60
        while proc.poll() is None and len(scenario.log.read_text().split() if scenario.log.exists() else []) < after_step:
            assert time.monotonic() < deadline, "the run does not progress"
            time.sleep(0.0005)
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=60)
        finished = len(scenario.log.read_text().split()) == len(scenario.steps)
        seen[scenario.check_killed(f"seed {seed}, kill {i} (after step {after_step} + {delay:.4f} s)",
                                   finished=finished)] += 1
        seen["reached the end"] += finished
    print(f"random kills: {seen}")


def test_a_killed_first_run_leaves_no_output_tables_or_all_of_them(first_run):
    """A first run creates all its tables (empty) in one transaction, or none: killed between two CREATE TABLEs
    it would leave kpi_* tables without kpi_meta, which no later run accepts. So a kill leaves no tables, empty
    ones, or the whole result."""
    assert set(first_run.before.values()) == {None}
    setup = first_run.steps[:first_run.steps.index("runs.insert:1") + 1]
    for step in setup + ["publish.commit:1", "publish.committed:1"]:
        proc = first_run.start({faults.KILL_AT: step})
        assert proc.wait(timeout=60) == -9, step
        assert first_run.check_killed(f"first run killed at {step}") == (
            "after" if step == "publish.committed:1" else "before")
