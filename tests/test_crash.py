"""Crash safety: a run killed with SIGKILL at any moment leaves every output table
exactly as it was before the run or exactly as the run would have left it, never a
mix and never a table missing; the next run then succeeds and marks the killed one
`aborted`.

The kill points are the run's named steps (kpimetrics.faults): a clean run writes
the kill log, and the run is killed once at every step in it. Then it is killed at
random times. The seed is printed (and in every failure message); replay with
KPIMETRICS_CRASH_SEED=<seed>. KPIMETRICS_CRASH_RANDOM sets the number of random kills.

Every scenario runs on DuckDB, on PostgreSQL (tests/engines.py; a database of its
own, reset from a template database before each kill) and on Spark (a warehouse
folder of its own, put back by copying it). On PostgreSQL the run also loses its
connection while publishing: frozen at a step, its backend is terminated from
another connection, and it must fail saying so, with the same guarantee.

On Spark every run starts a JVM (seconds), so its scenario is smaller (one KPI
kept, one removed, one grain) and the kills are a budget, KPIMETRICS_CRASH_SPARK_KILLS
(default SPARK_KILLS): every publish step and the first run's setup, then named
steps spread over the rest of the run, then random kills. The tables are read in
this process, whose SparkSession lives on between the child processes' runs.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import signal
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from typing import Any, Callable

import pytest
import yaml

import engines
from kpimetrics import Project, faults, tables
from kpimetrics.adapters import spark as spark_adapter
from helpers_run import (
    AS_OF, WITHOUT_RUN_ID, comparable, insert_orders, kpi, kpis_yml, make_orders, ok, read, run, set_kpis,
    write_run_project,
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
SMALL_REVENUE = kpi("revenue", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: sum(amount - discount)
    target: 20000
    check_ins:
      - {date: 2025-09-01, author: sales@shop.example, note: "it's fine; really"}
""")


def retargeted(revenue: str) -> str:
    """The revenue KPI as the run under test has it: another target, one more check-in."""
    return revenue.replace("target: 20000", "target: 21000") + (
        '    - {date: 2025-12-01, author: sales@shop.example, note: "December; new price list"}\n')


@dataclass(frozen=True)
class Shop:
    """The project before the run under test, and as that run has it: new rows, a KPI removed (and maybe one
    added), a target changed, a check-in added."""
    before_kpis: str
    run_kpis: str
    orders_per_day: int


SHOP = Shop(kpis_yml(REVENUE, SHARE, GROWTH, OLD), kpis_yml(retargeted(REVENUE), SHARE, GROWTH, BUYERS), 4)
SMALL_SHOP = Shop(kpis_yml(SMALL_REVENUE, OLD), kpis_yml(retargeted(SMALL_REVENUE)), 2)

NAMES = [t.name for t in tables.ALL_TABLES if t.name != "kpi_runs"]  # kpi_runs is a log, checked apart
ENGINES = ("duckdb", "postgres", "spark")
# Spark: kill points per run of the suite (named and random, first run included; see spark_named_steps). Each
# kill starts a JVM (the suite's costliest seconds); 30 still kills at every publish step, the first run's setup
# (first, second, middle, last step) and the swap, and spreads the rest: the other steps before publishing all
# take the same path (nothing published, the run marked aborted), which 50 kills only repeated
SPARK_KILLS = 30
# how long one killed run may take: a Spark run on a loaded 2-core machine (two test workers, each with its JVM)
# took over 120 s; a run that hangs still fails, a slow machine does not
RUN_TIMEOUT = 300
# the step from which a killed run has published: the commit on DuckDB and PostgreSQL, the view swap on Spark
PUBLISHED = ("publish.committed:1", "publish.swapped:1")
RUN_SCRIPT = (
    "import datetime, sys\n"
    "from kpimetrics import Project\n"
    "Project.load(sys.argv[1]).run(as_of=datetime.date.fromisoformat(sys.argv[2]))\n"
)


# --- the warehouse of a scenario, per engine: read it, save it, put it back -------------------

INFORMATION_SCHEMA_TABLES = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'kpi'"


class DuckDBWarehouse:
    """The project's own file, saved and put back by copying it."""

    reading = staticmethod(contextlib.nullcontext)  # each select connects: it is cheap

    def __init__(self, root: Path):
        self.root, self.saved = root, root.parent / "before.duckdb"

    def load_sources(self) -> None:
        """The orders are already in the file."""

    def select(self, sql: str) -> tuple[list[str], list[tuple]]:
        return read(self.root, sql)

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
    reading = DuckDBWarehouse.reading

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


class SparkWarehouse:
    """A local warehouse of its own (table files and embedded metastore in one folder), saved and put back by
    copying the folder. Read in this process through kpimetrics' adapter: its SparkSession lives on between
    reads, as a long-lived process's does, and must see what the child processes' runs wrote meanwhile."""

    # no transactions: a first run killed while creating its tables leaves some of them (empty), which the
    # next run completes (kpi_meta comes first, with its row)
    atomic_setup = False

    def __init__(self, root: Path, engine: engines.Engine):
        self.root, self.adapter = root, None
        (root / "profiles.yml").write_text(engine.profiles_yml(root, "shop"))
        self.folder = Path(engine.output(root)["warehouse_dir"])
        self.saved = root.parent / "before-warehouse"

    load_sources = PostgresWarehouse.load_sources

    @contextlib.contextmanager
    def reading(self):
        """One connection for a batch of selects (each connection boots the metastore again)."""
        self.adapter = Project.load(self.root).connect()
        try:
            yield
        finally:
            self.adapter, adapter = None, self.adapter
            adapter.close()

    def select(self, query: str) -> tuple[list[str], list[tuple]]:
        if self.adapter is None:
            with self.reading():
                return self.select(query)
        df = self.adapter.spark.sql(query)
        return df.columns, [tuple(r) for r in df.collect()]

    def table_names(self) -> set[str]:
        if self.adapter is None:
            with self.reading():
                return self.table_names()
        return set(self.adapter.tables("kpi"))

    def save(self) -> None:
        shutil.rmtree(self.saved, ignore_errors=True)
        shutil.copytree(self.folder, self.saved)

    def restore(self) -> None:
        self.settle()
        shutil.rmtree(self.folder)
        shutil.copytree(self.saved, self.folder)

    def settle(self) -> None:
        """The killed run's JVM outlives it by a moment, the metastore still open: wait until it has gone."""
        spark_adapter.wait_for_metastore(self.folder / spark_adapter.METASTORE_DIR, timeout=60)


def rows_of(wh, name: str, drop: tuple[str, ...]) -> list[tuple]:
    """A whole output table of the scenario's warehouse, comparable, without the columns `drop`."""
    return comparable(*wh.select(f"SELECT * FROM kpi.{name}"), drop)


def tables_of(wh, drop: tuple[str, ...] = ("computed_at", "updated_at", "first_seen_at", "last_seen_at")) -> dict[str, list[tuple] | None]:
    """Every output table (run_id included unless dropped; wall-clock columns left out); None for a missing one."""
    with wh.reading():
        present = wh.table_names()
        return {n: rows_of(wh, n, drop) if n in present else None for n in NAMES}


def run_subprocess(root: Path, env: dict[str, str], *, cli: bool = False) -> subprocess.Popen:
    """`kpimetrics run` in a new process: through the CLI, or (faster to start) through the API."""
    as_of = AS_OF.isoformat()
    args = ["-m", "kpimetrics", "run", "--project-dir", str(root), "--as-of", as_of] if cli else ["-c", RUN_SCRIPT, str(root), as_of]
    return subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=Path(__file__).parent, preexec_fn=_terminal_signals,
    )


def _terminal_signals() -> None:
    """The run starts with Ctrl-C and Ctrl-\\ as a terminal delivers them. A child inherits ignored
    signals, and by the time a long test session gets here something in it (a library's child
    process handling) can have left SIGINT ignored, which would turn a Ctrl-C test into a no-op."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


class Scenario:
    """A project whose warehouse is reset to the before-state for every kill."""

    def __init__(self, root: Path, *, first_run: bool = False, warehouse: Callable[[Path], Any] = DuckDBWarehouse,
                 shop: Shop = SHOP):
        """The run under test is the project's first (no output tables yet) or follows an earlier run.
        `warehouse(root)` makes the project's warehouse (DuckDB when not given) and points its profile there."""
        self.root = root
        write_run_project(root, shop.before_kpis)
        self.wh = warehouse(root)
        per_day = shop.orders_per_day
        insert_orders(root, make_orders(dt.date(2025, 6, 1), dt.date(2025, 11, 20), per_day=per_day))
        self.wh.load_sources()
        self.prior_runs = 0 if first_run else 1
        if not first_run:
            ok(run(root))
        insert_orders(root, make_orders(dt.date(2025, 11, 20), dt.date(2025, 12, 20), seed=5, first_id=50_000,
                                        per_day=per_day))
        self.wh.load_sources()
        set_kpis(root, shop.run_kpis)
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
        self.published = next(s for s in self.steps if s in PUBLISHED)

    def outcome(self, step: str) -> str:
        """The state a kill at `step` must leave: the run has published from the commit (or the swap) on."""
        return "after" if self.steps.index(step) >= self.steps.index(self.published) else "before"

    def acceptable(self, state: dict[str, list[tuple] | None]) -> bool:
        if state in (self.before, self.empty, self.after):
            return True
        # without transactions, a killed first run may have created some of its tables: each is missing or empty
        return not self.prior_runs and not getattr(self.wh, "atomic_setup", True) and all(state[n] in (None, self.empty[n]) for n in NAMES)

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

    def check_killed(self, how: str, *, finished: bool = False, rerun: bool = True) -> str:
        """The state after a kill is the before- or the after-state; the next run (unless not `rerun`) repairs
        the log and succeeds.

        `finished`: the run reached its last step, so it may have recorded its success before the kill."""
        self.wh.settle()
        state = tables_of(self.wh)
        assert self.acceptable(state), f"{how}: the tables are a mix of before and after: {state}"
        which = "after" if state == self.after else "before"
        if not rerun:
            return which
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
    if name == "spark":
        return lambda root: SparkWarehouse(root, engine)
    return DuckDBWarehouse


def make_scenario(name: str, request, tmp_path_factory, *, first_run: bool = False) -> Scenario:
    made = Scenario(tmp_path_factory.mktemp(f"crash_{'first_' * first_run}{name}") / "project", first_run=first_run,
                    warehouse=warehouse_factory(name, request, tmp_path_factory),
                    shop=SMALL_SHOP if name == "spark" else SHOP)
    made.engine = name
    print(f"{name}{' (first run)' * first_run}: {len(made.steps)} named steps; "
          f"a whole run in a new process takes {made.run_seconds:.2f} s")
    return made


@pytest.fixture(scope="module", params=ENGINES)
def scenario(request, tmp_path_factory) -> Scenario:
    return make_scenario(request.param, request, tmp_path_factory)


@pytest.fixture(scope="module", params=ENGINES)
def first_run(request, tmp_path_factory) -> Scenario:
    return make_scenario(request.param, request, tmp_path_factory, first_run=True)


# --- the Spark budget: JVM start-up makes every kill cost seconds ------------------------------

def spark_kills() -> int:
    return int(os.environ.get("KPIMETRICS_CRASH_SPARK_KILLS", SPARK_KILLS))


def spread(steps: list[str], must: list[str], count: int) -> list[str]:
    """The steps `must`, and the others evenly spread over the run, `count` in all (at least `must`), in run order."""
    rest = [s for s in steps if s not in must]
    extra = min(max(count - len(must), 0), len(rest))
    picked = set(must) | {rest[round(i * (len(rest) - 1) / max(extra - 1, 1))] for i in range(extra)}
    return [s for s in steps if s in picked]


def swapping(steps: list[str]) -> list[str]:
    """Just before the pointer view's swap, in its statement, just after it."""
    swap = steps.index("publish.swap:1")
    return steps[swap:swap + 3]


def publishing(steps: list[str]) -> list[str]:
    """Each new version's step, and the swap."""
    return [s for s in steps if s.startswith("publish.version:")] + swapping(steps)


def spark_first_run_steps(first: Scenario) -> list[str]:
    """A quarter of the Spark budget: the setup's first, middle and last steps, and the swap."""
    setup = first.steps[:first.steps.index("runs.insert:1") + 1]
    ends = [setup[0], setup[1], setup[len(setup) // 2], setup[-1]]
    return spread(setup, ends, spark_kills() // 4) + swapping(first.steps)


def spark_named_steps(scenario: Scenario) -> list[str]:
    """Every publishing step, then others spread over the run: half the Spark budget."""
    return spread(scenario.steps, publishing(scenario.steps), spark_kills() // 2)


def kill_steps(scenario: Scenario) -> list[str]:
    return spark_named_steps(scenario) if scenario.engine == "spark" else scenario.steps


def test_the_scenario_changes_every_table(scenario):
    for name in ("kpi_catalog", "kpi_values", "kpi_status", "kpi_targets", "kpi_check_ins"):
        assert scenario.before[name] != scenario.after[name], name
    reached = {s.rsplit(":", 1)[0] for s in scenario.steps}
    assert {"run.start", "runs.insert", "stage.ranges", "run.finish", "sql.insert", "sql.create"} <= reached
    if scenario.engine == "spark":  # one KPI at one grain: fewer statements
        assert len(scenario.steps) >= 25, scenario.steps
        assert {"publish.version", "publish.swap", "publish.swapped", "sql.drop"} <= reached
        assert len(spark_named_steps(scenario)) == max(spark_kills() // 2, len(publishing(scenario.steps)))
    else:  # with the random and first-run kills, over 50 per engine
        assert len(scenario.steps) >= 30, scenario.steps
        assert {"publish.begin", "publish.catalog", "publish.check_ins", "publish.strategy", "publish.commit",
                "publish.committed", "sql.delete", "sql.drop", "sql.update"} <= reached


@pytest.mark.slow  # left out of make test-fast
def test_sigkill_at_every_named_step(scenario):
    """Killed at each step (on Spark, at the budget's): before the commit (the swap) the tables are as before,
    from the commit on as after."""
    outcomes, began = {}, time.monotonic()
    # on Spark a run costs most of a kill: the next run follows the kills while publishing only
    rerun = publishing(scenario.steps) if scenario.engine == "spark" else scenario.steps
    for step in kill_steps(scenario):
        proc = scenario.start({faults.KILL_AT: step})
        code = proc.wait(timeout=RUN_TIMEOUT)
        assert code == -9, f"{step}: the run was not killed ({code}): {proc.stderr.read().decode()[-2000:]}"
        assert scenario.log.read_text().split()[-1] == step.rsplit(":", 1)[0]
        outcomes[step] = scenario.check_killed(f"killed at {step}", rerun=step in rerun)
    print(f"{scenario.engine}: {len(outcomes)} kills at named steps, {(time.monotonic() - began) / len(outcomes):.1f} s each")
    assert outcomes == {step: scenario.outcome(step) for step in outcomes}, outcomes
    assert set(outcomes.values()) == {"before", "after"}


@pytest.mark.slow  # left out of make test-fast
def test_sigkill_at_random_times(scenario):
    """Killed from outside at random moments: after a random step, a random few milliseconds into the next
    statement (so machine load does not bunch the kills at one end of the run)."""
    seed = int(os.environ.get("KPIMETRICS_CRASH_SEED", random.randrange(1 << 30)))
    spark = max(spark_kills() - spark_kills() // 2 - spark_kills() // 4 - 3, 2)  # what named and first-run kills leave
    count = int(os.environ.get("KPIMETRICS_CRASH_RANDOM", spark if scenario.engine == "spark" else 12))
    print(f"crash seed {seed} (replay: KPIMETRICS_CRASH_SEED={seed})")
    rnd = random.Random(seed)
    seen = {"before": 0, "after": 0, "reached the end": 0}
    for i in range(count):
        after_step, delay = rnd.randrange(1, len(scenario.steps) + 1), rnd.uniform(0, 0.01)
        proc = scenario.start({})
        deadline = time.monotonic() + RUN_TIMEOUT
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


@pytest.mark.slow  # left out of make test-fast
def test_a_killed_first_run_leaves_no_output_tables_or_all_of_them(first_run):
    """A first run creates all its tables (empty) in one transaction, or none: killed between two CREATE TABLEs
    it would leave kpi_* tables without kpi_meta, which no later run accepts. So a kill leaves no tables, empty
    ones, or the whole result."""
    assert set(first_run.before.values()) == {None}
    if first_run.engine == "spark":
        steps = spark_first_run_steps(first_run)
    else:
        published = first_run.steps.index(first_run.published)
        steps = first_run.steps[:first_run.steps.index("runs.insert:1") + 1] + first_run.steps[published - 1:published + 1]
    for step in steps:
        proc = first_run.start({faults.KILL_AT: step})
        assert proc.wait(timeout=RUN_TIMEOUT) == -9, step
        assert first_run.check_killed(f"first run killed at {step}") == first_run.outcome(step)
    print(f"{first_run.engine}: {len(steps)} kills of a first run")


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

