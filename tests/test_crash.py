"""Crash safety: a run killed with SIGKILL at any moment leaves every output table
exactly as it was before the run or exactly as the run would have left it, never a
mix and never a table missing; the next run then succeeds and marks the killed one
`aborted`.

The kill points are the run's named steps (kpimetrics.faults): a clean run writes
the kill log, and the run is killed once at every step in it. Then it is killed at
random times. The seed is printed (and in every failure message); replay with
KPIMETRICS_CRASH_SEED=<seed>. KPIMETRICS_CRASH_RANDOM sets the number of random kills.

Every scenario runs on DuckDB and on PostgreSQL (tests/engines.py; a database of its
own, reset from a template database before each kill). On PostgreSQL the run also
loses its connection while publishing: frozen at a step, its backend is terminated
from another connection, and it must fail saying so, with the same guarantee.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

from typing import Any, Callable

import duckdb
import pytest
import yaml

import engines
from kpimetrics import Project, faults, tables
from test_run_incremental import (
    AS_OF, insert_orders, kpi, kpis_yml, make_orders, ok, run, set_kpis, write_run_project,
)
from test_run_incremental import query  # noqa: F401 — for the DuckDB-only tests that import it from here

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
ENGINES = ("duckdb", "postgres")
RUN_SCRIPT = (
    "import datetime, sys\n"
    "from kpimetrics import Project\n"
    "Project.load(sys.argv[1]).run(as_of=datetime.date.fromisoformat(sys.argv[2]))\n"
)


# --- the warehouse of a scenario, per engine: read it, save it, put it back -------------------

INFORMATION_SCHEMA_TABLES = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'kpi'"


class DuckDBWarehouse:
    """The project's own file, saved and put back by copying it."""

    def __init__(self, root: Path):
        self.root, self.saved = root, root.parent / "before.duckdb"

    def load_sources(self) -> None:
        """The orders are already in the file."""

    def select(self, sql: str) -> tuple[list[str], list[tuple]]:
        con = duckdb.connect(str(self.root / "wh.duckdb"), read_only=True)
        try:
            cur = con.execute(sql)
            return [d[0] for d in cur.description], cur.fetchall()
        finally:
            con.close()

    def table_names(self) -> set[str]:
        return {r[0] for r in self.select(INFORMATION_SCHEMA_TABLES)[1]}

    def save(self) -> None:
        shutil.copy(self.root / "wh.duckdb", self.saved)

    def restore(self) -> None:
        shutil.copy(self.saved, self.root / "wh.duckdb")
        for leftover in self.root.glob("wh.duckdb.wal"):
            leftover.unlink()

    def settle(self) -> None:
        """A killed process leaves nothing running."""


class PostgresWarehouse:
    """A database of its own on the session's server, saved as a template database and recreated from it."""

    def __init__(self, root: Path, engine: engines.Engine, server):
        self.root, self.server = root, server
        (root / "profiles.yml").write_text(engine.profiles_yml(root, "shop"))
        self.dbname = yaml.safe_load((root / "profiles.yml").read_text())["shop"]["outputs"]["dev"]["dbname"]
        self.saved = f"{self.dbname}_before"

    def load_sources(self) -> None:
        adapter = Project.load(self.root).connect()
        try:
            engines.copy_sources(self.root / "wh.duckdb", adapter, "main", ("orders",))
        finally:
            adapter.close()

    def select(self, query: str) -> tuple[list[str], list[tuple]]:
        with self.server.connect(self.dbname) as con:
            cur = con.execute(query)
            return [d.name for d in cur.description], cur.fetchall()

    table_names = DuckDBWarehouse.table_names

    def _admin(self, *statements: str) -> None:
        with self.server.connect() as con:
            for statement in statements:
                con.execute(statement)

    def save(self) -> None:
        self.settle()
        self._admin(f'DROP DATABASE IF EXISTS "{self.saved}"', f'CREATE DATABASE "{self.saved}" TEMPLATE "{self.dbname}"')

    def restore(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)',
                    f'CREATE DATABASE "{self.dbname}" TEMPLATE "{self.saved}"')

    def run_backends(self) -> list[int]:
        """The server processes serving kpimetrics connections to this database."""
        return [pid for (pid,) in self.select(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'kpimetrics' AND pid <> pg_backend_pid()")[1]]

    def settle(self) -> None:
        """Wait until the server has finished with a killed run: its backend ends (rolling back, and releasing
        the run's advisory lock) once it sees the connection gone, which can take a moment."""
        deadline = time.monotonic() + 30
        while backends := self.run_backends():
            assert time.monotonic() < deadline, f"the killed run's backends {backends} do not end"
            time.sleep(0.02)


def rows_of(wh, name: str, drop: tuple[str, ...]) -> list[tuple]:
    """A whole output table as sorted tuples, without the columns `drop`; floats rounded."""
    names, rows = wh.select(f"SELECT * FROM kpi.{name}")
    keep = [i for i, n in enumerate(names) if n not in drop]
    rows = [tuple(round(r[i], 9) if isinstance(r[i], float) else r[i] for i in keep) for r in rows]
    return sorted(rows, key=lambda r: tuple((v is None, str(v)) for v in r))


def tables_of(wh, drop: tuple[str, ...] = ("computed_at", "updated_at")) -> dict[str, list[tuple] | None]:
    """Every output table (run_id included unless dropped; wall-clock columns left out); None for a missing one."""
    present = wh.table_names()
    return {n: rows_of(wh, n, drop) if n in present else None for n in NAMES}


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

    def __init__(self, root: Path, *, first_run: bool = False, warehouse: Callable[[Path], Any] = DuckDBWarehouse):
        """The run under test is the project's first (no output tables yet) or follows an earlier run.
        `warehouse(root)` makes the project's warehouse (DuckDB when not given) and points its profile there."""
        self.root = root
        write_run_project(root, BEFORE_KPIS)
        self.wh = warehouse(root)
        insert_orders(root, make_orders(dt.date(2025, 6, 1), dt.date(2025, 11, 20)))
        self.wh.load_sources()
        self.prior_runs = 0 if first_run else 1
        if not first_run:
            ok(run(root))
        insert_orders(root, make_orders(dt.date(2025, 11, 20), dt.date(2025, 12, 20), seed=5, first_id=50_000))
        self.wh.load_sources()
        set_kpis(root, RUN_KPIS)
        self.wh.save()
        self.before = tables_of(self.wh)
        self.log = root.parent / "kill.log"
        began = time.monotonic()
        proc = self.start({})
        assert proc.wait() == 0, proc.stderr.read().decode()
        self.run_seconds = time.monotonic() - began
        self.after = tables_of(self.wh)
        self.after_any_run = tables_of(self.wh, WITHOUT_RUN_ID)
        # a first run creates its tables in a transaction of their own: killed later, it leaves them empty
        self.empty = {n: [] for n in NAMES} | {"kpi_meta": self.after["kpi_meta"]} if first_run else self.before
        self.steps = faults.occurrences(self.log.read_text().split())

    def rows(self, sql: str) -> list[tuple]:
        return self.wh.select(sql)[1]

    def reset(self) -> None:
        self.wh.restore()
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
        self.wh.settle()
        state = tables_of(self.wh)
        assert state in (self.before, self.empty, self.after), f"{how}: the tables are a mix of before and after"
        which = "after" if state == self.after else "before"
        ok(run(self.root))
        assert tables_of(self.wh, WITHOUT_RUN_ID) == self.after_any_run, f"{how}: the next run differs"
        statuses = [s for _, s in self.rows("SELECT run_id, status FROM kpi.kpi_runs ORDER BY run_id")]
        prior, killed = statuses[:self.prior_runs], statuses[self.prior_runs:-1]
        assert prior + statuses[-1:] == ["success"] * (self.prior_runs + 1), f"{how}: {statuses}"
        allowed = {"aborted", "success"} if finished else {"aborted"}
        assert set(killed) <= allowed, f"{how}: the killed run's log: {statuses}"
        return which


def warehouse_factory(name: str, request, tmp_path_factory) -> Callable[[Path], Any]:
    """How a scenario on engine `name` makes its warehouse (skipped, or failed in CI, when the engine is missing)."""
    engine = engines.make_engine(name, request, tmp_path_factory)
    if name == "postgres":
        server = request.getfixturevalue("pg_server")
        return lambda root: PostgresWarehouse(root, engine, server)
    return DuckDBWarehouse


@pytest.fixture(scope="module", params=ENGINES)
def scenario(request, tmp_path_factory) -> Scenario:
    made = Scenario(tmp_path_factory.mktemp(f"crash_{request.param}") / "project",
                    warehouse=warehouse_factory(request.param, request, tmp_path_factory))
    print(f"{request.param}: {len(made.steps)} named steps; a whole run in a new process takes {made.run_seconds:.2f} s")
    return made


@pytest.fixture(scope="module", params=ENGINES)
def first_run(request, tmp_path_factory) -> Scenario:
    return Scenario(tmp_path_factory.mktemp(f"crash_first_{request.param}") / "project", first_run=True,
                    warehouse=warehouse_factory(request.param, request, tmp_path_factory))


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


# --- PostgreSQL: the connection lost while publishing ----------------------------------------------

@pytest.mark.parametrize("scenario", ["postgres"], indirect=True)
@pytest.mark.parametrize("step, state", [
    ("sql.delete:2", "before"),      # inside the publishing transaction
    ("publish.commit:1", "before"),  # the last statement before COMMIT
    ("publish.committed:1", "after"),
])
def test_a_lost_connection_on_postgres(scenario, step, state):
    """The run is frozen at a step (SIGSTOP), its backend is terminated from another connection, as a server
    restart or a network cut would, and the run resumes: it fails with a message that says so, and the
    tables are as before (or, once committed, as after); the next run succeeds."""
    proc = scenario.start({faults.KILL_AT: step, faults.KILL_SIGNAL: "STOP"}, cli=True)
    try:
        scenario.wait_for(proc, step)
        backends = scenario.wh.run_backends()
        assert len(backends) == 1, backends
        assert scenario.rows(f"SELECT pg_terminate_backend({backends[0]})") == [(True,)]
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = (s.decode() for s in proc.communicate(timeout=60))
    assert proc.returncode == 1, f"exit {proc.returncode}\n{out}\n{err}"
    assert f"lost the connection to PostgreSQL at ****@{scenario.wh.server.host}" in err, err  # the user is an env_var()
    assert "terminating connection due to administrator command" in err and "Traceback" not in out + err, err
    assert scenario.check_killed(f"connection lost at {step}") == state

