"""Two runs at once on one DuckDB file: the second fails at once with a message that
names the lock, the first completes, and no row is duplicated. A reader cannot open
the file while a run writes it (DuckDB allows one writer or several readers per file;
the README says so under "Reliability guarantees").
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import duckdb
import pytest
from click.testing import CliRunner

from kpimetrics import faults
from kpimetrics.cli import main
from test_crash import AS_OF, Scenario, query, run_subprocess, tables_of

KEY = "name, grain, period_start, dimension, dimension_value"


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    return Scenario(tmp_path_factory.mktemp("concurrency") / "project")


def duplicates(scenario: Scenario) -> list:
    return query(scenario.root, f"SELECT {KEY}, count(*) FROM kpi.kpi_values GROUP BY ALL HAVING count(*) > 1"
                                f" UNION ALL SELECT {KEY}, count(*) FROM kpi.kpi_status GROUP BY ALL HAVING count(*) > 1")


def frozen_run(scenario: Scenario, step: str) -> subprocess.Popen:
    """A run in another process, stopped (with its file lock) at `step`."""
    proc = scenario.start({faults.KILL_AT: step, faults.KILL_SIGNAL: "STOP"}, cli=True)
    scenario.wait_for(proc, step)
    return proc


def test_a_second_run_fails_at_once_naming_the_lock(scenario):
    first = frozen_run(scenario, "publish.catalog:1")  # mid-publish, inside its transaction
    try:
        began = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "kpimetrics", "run", "--project-dir", str(scenario.root), "--as-of", AS_OF.isoformat()],
            capture_output=True, text=True, timeout=60,
        )
        assert time.monotonic() - began < 20  # no waiting for the first run (Python start-up aside)
        assert second.returncode == 1, second.stdout + second.stderr
        assert "is locked by another process" in second.stderr and f"held by process {first.pid}" in second.stderr
        assert "one writer at a time" in second.stderr and "Traceback" not in second.stderr

        # a BI tool cannot read the file meanwhile, and `status` says why
        with pytest.raises(duckdb.IOException, match="[Ll]ock"):
            duckdb.connect(str(scenario.root / "wh.duckdb"), read_only=True)
        status = CliRunner().invoke(main, ["status", "--project-dir", str(scenario.root)])
        assert status.exit_code == 1 and "is locked by another process" in status.output, status.output
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err.decode()
    assert tables_of(scenario.root) == scenario.after
    assert duplicates(scenario) == []
    # the second run never started: only the earlier run and the first are logged
    assert query(scenario.root, "SELECT run_id, status FROM kpi.kpi_runs ORDER BY run_id") == [
        (1, "success"), (2, "success")]


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
                assert "is locked by another process" in err, err
            succeeded += proc.returncode == 0
    assert succeeded >= 4  # at least one of each pair
    assert duplicates(scenario) == []
    assert tables_of(scenario.root, ("run_id", "computed_at", "updated_at")) == scenario.after_any_run
    runs = query(scenario.root, "SELECT run_id, status FROM kpi.kpi_runs ORDER BY run_id")
    assert runs == [(i, "success") for i in range(1, succeeded + 2)]
