"""Two runs at once, and readers during a run.

DuckDB: the second run fails at once with a message that names the file lock, the
first completes, and no row is duplicated. A reader cannot open the file while a run
writes it (DuckDB allows one writer or several readers per file; the README says so
under "Reliability guarantees").

PostgreSQL: the second run fails at once naming the advisory lock and the backend
holding it. BI readers are never blocked by a run, and every reader transaction sees
kpi_values and kpi_status exactly as the previous run or the new one left them:
checked with the run frozen (SIGSTOP) at steps before, inside and after its publishing
transaction, and with a reader polling while runs go at full speed.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import duckdb
import pytest
from click.testing import CliRunner

from kpimetrics import faults
from kpimetrics.cli import main
from helpers_run import WITHOUT_RUN_ID
from test_crash import AS_OF, Scenario, rows_of, run_subprocess, tables_of, warehouse_factory

KEY = "name, grain, period_start, dimension, dimension_value"


LOCK_MESSAGE = {"duckdb": "is locked by another process", "postgres": "the advisory lock 'kpimetrics:"}


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def scenario(request, tmp_path_factory) -> Scenario:
    made = Scenario(tmp_path_factory.mktemp(f"concurrency_{request.param}") / "project",
                    warehouse=warehouse_factory(request.param, request, tmp_path_factory))
    made.engine = request.param
    return made


def duplicates(scenario: Scenario) -> list:
    return scenario.rows(f"SELECT {KEY}, count(*) FROM kpi.kpi_values GROUP BY {KEY} HAVING count(*) > 1"
                         f" UNION ALL SELECT {KEY}, count(*) FROM kpi.kpi_status GROUP BY {KEY} HAVING count(*) > 1")


def frozen_run(scenario: Scenario, step: str) -> subprocess.Popen:
    """A run in another process, stopped (with its file lock) at `step`."""
    proc = scenario.start({faults.KILL_AT: step, faults.KILL_SIGNAL: "STOP"}, cli=True)
    scenario.wait_for(proc, step)
    return proc


def second_run(scenario: Scenario) -> subprocess.CompletedProcess:
    """`kpimetrics run` while another holds the lock: it fails at once, with no traceback."""
    began = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "kpimetrics", "run", "--project-dir", str(scenario.root), "--as-of", AS_OF.isoformat()],
        capture_output=True, text=True, timeout=60,
    )
    assert time.monotonic() - began < 20  # no waiting for the first run (Python start-up aside)
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stdout + second.stderr
    return second


def first_completes(scenario: Scenario, first: subprocess.Popen) -> None:
    """The frozen first run, let go, succeeds alone: the tables are its result, and the second run never started
    (only the earlier run and the first are logged)."""
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err.decode()
    assert tables_of(scenario.wh) == scenario.after
    assert duplicates(scenario) == []
    assert scenario.rows("SELECT run_id, status FROM kpi.kpi_runs ORDER BY run_id") == [(1, "success"), (2, "success")]


@pytest.mark.parametrize("scenario", ["duckdb"], indirect=True)
def test_a_second_run_fails_at_once_naming_the_lock(scenario):
    first = frozen_run(scenario, "publish.catalog:1")  # mid-publish, inside its transaction
    try:
        second = second_run(scenario)
        assert "is locked by another process" in second.stderr and f"held by process {first.pid}" in second.stderr
        assert "one writer at a time" in second.stderr

        # a BI tool cannot read the file meanwhile, and `status` says why
        with pytest.raises(duckdb.IOException, match="[Ll]ock"):
            duckdb.connect(str(scenario.root / "wh.duckdb"), read_only=True)
        status = CliRunner().invoke(main, ["status", "--project-dir", str(scenario.root)])
        assert status.exit_code == 1 and "is locked by another process" in status.output, status.output
    finally:
        first.send_signal(signal.SIGCONT)
    first_completes(scenario, first)


def test_runs_started_together_never_duplicate_rows(scenario):
    """Pairs of runs started at the same moment: each succeeds or fails on the lock; the tables stay whole."""
    scenario.reset()
    succeeded = 0
    for _ in range(4):
        procs = [run_subprocess(scenario.root, {}, cli=True) for _ in range(2)]
        for proc in procs:
            out, err = (s.decode() for s in proc.communicate(timeout=120))
            assert proc.returncode in (0, 1), err
            if proc.returncode == 1:
                assert LOCK_MESSAGE[scenario.engine] in err, err
            succeeded += proc.returncode == 0
    assert succeeded >= 4  # at least one of each pair
    assert duplicates(scenario) == []
    assert tables_of(scenario.wh, WITHOUT_RUN_ID) == scenario.after_any_run
    runs = scenario.rows("SELECT run_id, status FROM kpi.kpi_runs ORDER BY run_id")
    assert runs == [(i, "success") for i in range(1, succeeded + 2)]


# --- PostgreSQL ------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", ["postgres"], indirect=True)
def test_a_second_run_on_postgres_fails_at_once_naming_the_advisory_lock(scenario):
    first = frozen_run(scenario, "publish.catalog:1")
    try:
        [backend] = scenario.wh.run_backends()
        second = second_run(scenario)
        lock = f"the advisory lock 'kpimetrics:{scenario.wh.dbname}.kpi'"
        assert lock in second.stderr and f"held by PostgreSQL backend pid {backend}" in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
    first_completes(scenario, first)


class Reader:
    """A BI tool: one connection, each read of kpi_values and kpi_status in one REPEATABLE READ transaction
    (one snapshot for both), never waiting more than two seconds for a lock."""

    TABLES = ("kpi_values", "kpi_status")

    def __init__(self, scenario: Scenario):
        self.con = scenario.wh.server.connect(scenario.wh.dbname)
        self.con.execute("SET statement_timeout = '2s'")
        self.before = {t: scenario.before[t] for t in self.TABLES}
        self.after = {t: scenario.after[t] for t in self.TABLES}

    def select(self, query: str) -> tuple[list[str], list[tuple]]:
        cur = self.con.execute(query)
        return [d.name for d in cur.description], cur.fetchall()

    def read(self) -> str:
        """'before' or 'after': what one transaction saw (anything else fails the test)."""
        self.con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            seen = {t: rows_of(self, t, ("computed_at",)) for t in self.TABLES}
        finally:
            self.con.execute("ROLLBACK")
        assert seen in (self.before, self.after), "a reader saw a mix of the previous run and the new one"
        return "before" if seen == self.before else "after"

    def close(self) -> None:
        self.con.close()


FROZEN_AT = [  # (the step the run is frozen at, what a reader sees meanwhile)
    ("runs.insert:1", "before"),
    ("stage.ranges:2", "before"),      # staging
    ("publish.begin:1", "before"),
    ("sql.delete:2", "before"),        # the publishing transaction has deleted rows
    ("sql.insert:4", "before"),        # ... and inserted new ones
    ("publish.strategy:1", "before"),
    ("publish.commit:1", "before"),
    ("publish.committed:1", "after"),
    ("run.finish:1", "after"),
]


@pytest.mark.parametrize("scenario", ["postgres"], indirect=True)
def test_readers_during_a_run_see_the_previous_run_or_the_new_one(scenario):
    """The run is frozen at each step in turn, holding whatever it holds; a reader is not blocked and sees the
    previous run until the commit, the new one from then on."""
    for step, expected in FROZEN_AT:
        assert step in scenario.steps, step
        proc = frozen_run(scenario, step)
        reader = Reader(scenario)
        try:
            assert [reader.read() for _ in range(3)] == [expected] * 3, step
        finally:
            proc.send_signal(signal.SIGCONT)
        try:
            assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
            assert reader.read() == "after", step
        finally:
            reader.close()


@pytest.mark.parametrize("scenario", ["postgres"], indirect=True)
def test_a_reader_polling_during_runs_sees_only_complete_runs(scenario):
    """A reader in another thread reads as fast as it can while whole runs go at full speed."""
    seen = {"before": 0, "after": 0}
    for _ in range(3):
        proc = scenario.start({})
        reader, stop, failures = Reader(scenario), threading.Event(), []

        def poll():
            try:
                while not stop.is_set():
                    seen[reader.read()] += 1
            except BaseException as exc:  # noqa: BLE001 — reported by the test thread
                failures.append(exc)

        thread = threading.Thread(target=poll)
        thread.start()
        try:
            assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
        finally:
            stop.set()
            thread.join(timeout=30)
        assert failures == [], failures
        assert reader.read() == "after"
        reader.close()
    print(f"reader transactions: {seen}")
    assert seen["before"] > 0 and seen["after"] > 0
