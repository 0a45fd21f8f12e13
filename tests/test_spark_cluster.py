"""Spark on a real multi-process cluster with a shared catalog (SPEC §13, issue 22): tests/spark_cluster.py
starts a standalone master and two workers on 127.0.0.1, one application on them serving Spark Connect and
the Thrift server, and a Hive metastore in the test PostgreSQL. Started once for the module.

- a selection of the value suite's project A run through Connect on the cluster equals DuckDB, and a driver of
  its own (`master: spark://...`, kpimetrics' cluster defaults) reading the same catalog equals it too;
- runs killed at the named publish steps leave one whole run (test_spark_connect's test, on the cluster);
- readers during a run (a second Connect session, and beeline over JDBC through the Thrift server as a BI
  tool connects) each see one complete run, never a mix;
- two runs started together on one output schema: one publishes, the other stops at once with KPI184 (the
  lease in the catalog, kpimetrics/adapters/spark_lease.py), nothing duplicated.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import duckdb
import pytest

import engines
import oracle_data as od
import spark_cluster
from engines import engine_unavailable
from helpers_projects import write_project
from helpers_run import ok
from kpimetrics import Project
from kpimetrics.adapters import spark_lease

pytestmark = [pytest.mark.spark, pytest.mark.postgres]

SELECTED_A = ("revenue", "customers_t3", "returned_share")
SERVER_PARTITIONS = "8"  # the server's own setting, as whoever runs it sizes it (Spark's 200 are slow here)


@pytest.fixture(scope="module")
def cluster(pg_server, tmp_path_factory):
    why = spark_cluster.missing()
    if why:
        engine_unavailable(why)
    began = time.monotonic()
    started = spark_cluster.SparkCluster.start(tmp_path_factory.mktemp("spark_cluster"), pg_server,
                                               {"spark.sql.shuffle.partitions": SERVER_PARTITIONS})
    print(f"Spark cluster up in {time.monotonic() - began:.1f} s: {started.master_url}, {started.url}")
    yield started
    started.stop()


def connect_engine(cluster, source_schema: str) -> engines.Engine:
    """Through the cluster's Connect server, an output schema of its own (the server's settings: no conf)."""
    return engines.Engine("spark_cluster", lambda root: {"type": "spark", "remote": cluster.url},
                          source_schema, f"kpi_{uuid.uuid4().hex[:8]}")


def driver_engine(cluster, source_schema: str) -> engines.Engine:
    """A driver of its own on the cluster (`master: spark://...`): the shared metastore and warehouse in conf,
    kpimetrics' defaults for a cluster master otherwise (shuffle partitions)."""
    conf = {k: v for k, v in cluster.conf.items() if k != "spark.sql.warehouse.dir"}
    return engines.Engine("spark_driver", lambda root: {"type": "spark", "master": cluster.master_url,
                                                        "warehouse_dir": str(cluster.warehouse), "conf": conf},
                          source_schema, f"kpi_{uuid.uuid4().hex[:8]}")


def _project(root: Path, engine: engines.Engine) -> Path:
    write_project(root, od.project_a_files(engine.profiles_yml(root), engine.source_schema, engine.output_schema))
    od.load_data(root / "wh.duckdb")
    return root


def _cli(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kpimetrics", *args, "--project-dir", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def _run(root: Path, *extra: str) -> subprocess.Popen:
    return _cli(root, "run", "-s", " ".join(SELECTED_A), "--full-refresh", "--as-of", od.AS_OF.isoformat(), *extra)


def _passed(proc: subprocess.Popen, timeout: float = 900) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out + err
    return out + err


def _outputs_of(root: Path, engine: engines.Engine) -> dict[str, list[tuple]]:
    from test_spark_connect import _outputs

    adapter = Project.load(root).connect()
    try:
        engines.copy_outputs(adapter, engine.output_schema, root / "wh.duckdb")
    finally:
        adapter.close()
    con = duckdb.connect(str(root / "wh.duckdb"))
    try:
        return _outputs(con)
    finally:
        con.close()


@pytest.fixture(scope="module")
def duckdb_outputs(tmp_path_factory) -> dict[str, list[tuple]]:
    from test_spark_connect import _outputs

    root = tmp_path_factory.mktemp("duckdb") / "project_a"
    write_project(root, od.project_a_files())
    od.load_data(root / "wh.duckdb")
    ok(Project.load(root).run(" ".join(SELECTED_A), full_refresh=True, as_of=od.AS_OF))
    con = duckdb.connect(str(root / "wh.duckdb"), read_only=True)
    try:
        return _outputs(con)
    finally:
        con.close()


@pytest.fixture(scope="module")
def published(cluster, tmp_path_factory):
    """Project A's sources loaded into the shared catalog and the selection run through Connect (the CLI)."""
    engine = connect_engine(cluster, f"src_{uuid.uuid4().hex[:8]}")
    root = _project(tmp_path_factory.mktemp("connect") / "project_a", engine)
    adapter = Project.load(root).connect()
    try:
        engines.copy_sources(root / "wh.duckdb", adapter, engine.source_schema, ("orders", "tickets"))
    finally:
        adapter.close()
    _passed(_run(root))
    return root, engine


def test_values_through_connect_on_the_cluster_equal_duckdb(published, duckdb_outputs):
    root, engine = published
    rows = _outputs_of(root, engine)
    for table, expected in duckdb_outputs.items():
        assert {r[0] for r in rows[table]} == set(SELECTED_A), table
        assert rows[table] == expected, table


@pytest.mark.slow
def test_a_driver_of_its_own_on_the_cluster_equals_duckdb(cluster, published, duckdb_outputs, tmp_path):
    """`master: spark://...`: a driver in the kpimetrics process, executors on the workers, the catalog the
    Connect server wrote the sources into (the shared metastore), 64 shuffle partitions (spark.MODES)."""
    _, connect = published
    engine = driver_engine(cluster, connect.source_schema)
    root = _project(tmp_path / "project_a", engine)
    _passed(_run(root))
    # read back through Connect (the shared catalog), not by a driver of the test process's own
    reader = engines.Engine("spark_cluster", connect.output, engine.source_schema, engine.output_schema)
    (root / "profiles.yml").write_text(reader.profiles_yml(root))
    assert _outputs_of(root, reader) == duckdb_outputs


@pytest.mark.slow
def test_runs_killed_at_the_publish_steps(cluster, tmp_path):
    from test_spark_connect import test_runs_killed_at_the_publish_steps as killed

    killed(connect_engine(cluster, f"src_{uuid.uuid4().hex[:8]}"), tmp_path)


# --- readers during a run -------------------------------------------------------------------------------

def _read_sql(schema: str) -> str:
    """One read of two output views at once, as a dashboard's query joins them: the run ids each holds, and
    their row counts."""
    return (f"SELECT v.lo, v.hi, v.n, s.lo, s.hi, s.n FROM "
            f"(SELECT min(run_id) AS lo, max(run_id) AS hi, count(*) AS n FROM {schema}.kpi_values) v CROSS JOIN "
            f"(SELECT min(run_id) AS lo, max(run_id) AS hi, count(*) AS n FROM {schema}.kpi_status) s")


def test_readers_during_a_run_see_one_whole_run(cluster, published):
    root, engine = published
    schema = engine.output_schema
    from pyspark.sql.connect.session import SparkSession  # not pyspark.sql's: it turns the process to Connect mode

    reader = SparkSession.builder.remote(cluster.url).create()
    try:
        before = tuple(reader.sql(_read_sql(schema)).collect()[0])
        assert before[0] == before[1] == before[3] == before[4] and before[2] and before[5]
        run = _run(root)
        # beeline: the Hive JDBC driver through the Thrift server, reads one after another for the whole run
        bi = threading.Thread(target=lambda: seen_jdbc.append(cluster.beeline((_read_sql(schema) + ";\n") * 12)))
        seen_jdbc: list[subprocess.CompletedProcess] = []
        bi.start()
        seen: list[tuple] = []
        while run.poll() is None:
            seen.append(tuple(reader.sql(_read_sql(schema)).collect()[0]))
        _passed(run)
        bi.join(timeout=600)
        after = tuple(reader.sql(_read_sql(schema)).collect()[0])
    finally:
        reader.stop()
    assert after[0] == after[1] == after[3] == after[4] == before[0] + 1 and after[2] == before[2]
    whole = {before, after}
    assert seen and all(r in whole for r in seen), [r for r in seen if r not in whole]
    assert seen_jdbc and seen_jdbc[0].returncode == 0, seen_jdbc and seen_jdbc[0].stderr[-3000:]
    rows = [tuple(int(x) for x in line.split(",")) for line in seen_jdbc[0].stdout.splitlines()
            if line.strip() and line[0].isdigit()]
    assert len(rows) == 12 and all(r in whole for r in rows), rows
    print(f"{len(seen)} Connect reads and {len(rows)} JDBC reads during the run: "
          f"{sum(r == before for r in seen + rows)} of the previous run, {sum(r == after for r in seen + rows)} of the new")


# --- two runs at once ---------------------------------------------------------------------------------------

def test_two_runs_at_once_one_publishes_the_other_stops_with_kpi184(cluster, published, duckdb_outputs, tmp_path):
    """Two clients (CLI processes through Connect) run the same project into one output schema, started
    together: one publishes, the other fails at once with KPI184 naming the holder; the outputs are one run's,
    equal to DuckDB's, and the log holds one success and no run left 'running'."""
    _, connect = published
    engine = connect_engine(cluster, connect.source_schema)
    root = _project(tmp_path / "project_a", engine)
    first, second = _run(root), _run(root)
    results = [(p, *p.communicate(timeout=900)) for p in (first, second)]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 1], [(p.returncode, err[-2000:]) for p, _, err in results]
    lost = next(out + err for p, out, err in results if p.returncode == 1)
    assert "KPI184" in lost and f"output schema '{engine.output_schema}'" in lost and "Traceback" not in lost, lost
    assert _outputs_of(root, engine) == duckdb_outputs
    adapter = Project.load(root).connect()
    try:
        runs = adapter.fetchall(f"SELECT status FROM `{engine.output_schema}`.kpi_runs")
        leases = [n for n, _ in adapter.relations(engine.output_schema) if spark_lease.lease_view(n)]
        lease = adapter.fetchall(f"SELECT released FROM `{engine.output_schema}`.`{leases[0]}`")
    finally:
        adapter.close()
    assert runs == [("success",)]
    assert len(leases) == 1 and lease == [(True,)]  # the winner's, released
