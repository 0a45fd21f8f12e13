"""Spark on a real multi-process cluster with a shared catalog (SPEC §13, issue 22): tests/spark_cluster.py
starts a standalone master and two workers on 127.0.0.1, one application on them serving Spark Connect and
the Thrift server, and a Hive metastore in the test PostgreSQL. Started once for the module.

- a selection of the value suite's project A run through Connect on the cluster equals DuckDB, and a driver of
  its own (`master: spark://...`, kpimetrics' cluster defaults) reading the same catalog equals it too;
- runs killed at the named publish steps leave one whole run (test_spark_connect's test, on the cluster);
- readers during a run (a second Connect session, and beeline over JDBC through the Thrift server as a BI
  tool connects) each see one complete run, never a mix;
- a first run (killed at its set-up steps, then run in full) shows a reader on another client no row before its
  swap, and every output table whole after it (publish.VersionedViewsPublisher._ensure_tables' order);
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
from kpimetrics import Project, faults, publish
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


def _cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kpimetrics", *args, "--project-dir", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | (env or {}))


def _run(root: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return _cli(root, "run", "-s", " ".join(SELECTED_A), "--full-refresh", "--as-of", od.AS_OF.isoformat(), *extra,
                env=env)


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
    first = _first_run(cluster, root, engine.output_schema)
    return root, engine, first


# --- a first run, as a reader on another client sees it -------------------------------------------------

# kills in the first run's set-up, one after another into one schema (`sql.create:N`: the N-th CREATE of the
# process, CREATE SCHEMA the first; each run skips what the killed ones made): kpi_meta alone; then its tables
# beneath, the log and the pointer, no output table yet; then the first four output tables. Each: how many
# output tables a reader finds after it.
_POINTER = 1 + len(publish.VERSIONED) + 1 + 1  # in the second run (kpi_meta made): schema, versions, log, pointer
SETUP_KILLS = {"sql.create:3": 0, f"sql.create:{_POINTER + 1}": 0, "sql.create:6": 4}
FIRST_RUN_READS = 30  # at most, during the first run: enough to see it set up, compute and swap


def _first_run_seen(reader, schema: str) -> tuple[list[str], int | None, dict[str, int]]:
    """What a reader on another client sees of `schema`: the output tables it lists (in publish.FIRST_RUN_ORDER),
    kpi_current_version (None when missing), and in one query each table's rows (kpi_runs: its successes)."""
    if not reader.sql(f"SHOW SCHEMAS LIKE '{schema}'").collect():
        return [], None, {}
    names = {r[1] for r in reader.sql(f"SHOW TABLES IN `{schema}`").collect()}
    present = [n for n in publish.FIRST_RUN_ORDER if n in names]
    parts = [f"(SELECT version FROM `{schema}`.{publish.POINTER})" if publish.POINTER in names else "NULL"]
    parts += [f"(SELECT count_if(status = 'success') FROM `{schema}`.kpi_runs)" if n == "kpi_runs" else
              f"(SELECT count(*) FROM `{schema}`.`{n}`)" for n in present]
    row = reader.sql("SELECT " + ", ".join(parts)).collect()[0]
    return present, row[0], dict(zip(present, row[1:]))


def _first_run(cluster, root: Path, schema: str) -> dict:
    """The fixture's first run into a new output schema: killed at each of SETUP_KILLS (what a reader sees after
    each), then run in full with a reader polling through a second Connect session; the test asserts."""
    from pyspark.sql.connect.session import SparkSession  # not pyspark.sql's: it turns the process to Connect mode

    reader = SparkSession.builder.remote(cluster.url).create()
    try:
        killed = {}
        for step in SETUP_KILLS:
            proc = _run(root, env={faults.KILL_AT: step})
            killed[step] = (proc.wait(timeout=600), _first_run_seen(reader, schema))
        run, seen = _run(root), []
        while run.poll() is None and len(seen) < FIRST_RUN_READS:
            seen.append(_first_run_seen(reader, schema))
        _passed(run)
    finally:
        reader.stop()
    # a new session, as a BI tool's next connection: a session that read kpi_runs before keeps the log's file
    # list of then (Spark caches an unpartitioned table's per session), and would not see the run's end
    later = SparkSession.builder.remote(cluster.url).create()
    try:
        return {"killed": killed, "seen": seen, "after": _first_run_seen(later, schema)}
    finally:
        later.stop()


def _no_row_before_the_swap(present: list[str], version: int | None, rows: dict[str, int]) -> bool:
    """Before the first swap: output tables in FIRST_RUN_ORDER up to some point, kpi_current_version made before
    any of them and at 0, and not one row (no success in kpi_runs)."""
    return (present == list(publish.FIRST_RUN_ORDER[:len(present)]) and (version == 0 or not present)
            and not any(rows.values()))


def test_a_first_run_shows_readers_no_row_before_its_swap_and_every_table_after(published):
    """A reader on another client (a second Connect session on the shared metastore) during a first run, and
    after kills in its set-up, sees output tables appear one by one (the metastore has no multi-object
    transaction), in publish.FIRST_RUN_ORDER, all empty with kpi_current_version at 0; once the version is the
    first run's, every output table exists and holds that run whole. The next run completes a killed set-up."""
    first = published[2]
    print(f"after kills at {', '.join(first['killed'])}: {[v for _, v in first['killed'].values()]}; after: {first['after']}")
    after_present, after_version, after_rows = first["after"]
    assert after_present == list(publish.FIRST_RUN_ORDER) and after_version >= 1, first["after"]
    assert all(after_rows[n] for n in ("kpi_runs", "kpi_values", "kpi_status", "kpi_catalog", "kpi_targets")), after_rows
    for step, (code, (present, version, rows)) in first["killed"].items():
        assert code == -9, step
        assert _no_row_before_the_swap(present, version, rows), (step, present, version, rows)
        assert len(present) == SETUP_KILLS[step], (step, present)  # what that step had created, no more
    assert first["killed"][f"sql.create:{_POINTER + 1}"][1][1] == 0  # the pointer comes before any output table
    seen = first["seen"]
    assert seen, "no read during the first run"
    for present, version, rows in seen:
        if version is not None and version >= 1:  # swapped: the whole first run, never a part of it
            assert (present, version) == (after_present, after_version), (present, version)
            assert {n: rows[n] for n in rows if n != "kpi_runs"} == {n: after_rows[n] for n in rows if n != "kpi_runs"}
        else:
            assert _no_row_before_the_swap(present, version, rows), (present, version, rows)
    print(f"{len(seen)} reads during the first run: {sum(v is not None and v >= 1 for _, v, _ in seen)} after its swap")


def test_values_through_connect_on_the_cluster_equal_duckdb(published, duckdb_outputs):
    root, engine, _ = published
    rows = _outputs_of(root, engine)
    for table, expected in duckdb_outputs.items():
        assert {r[0] for r in rows[table]} == set(SELECTED_A), table
        assert rows[table] == expected, table


@pytest.mark.slow
def test_a_driver_of_its_own_on_the_cluster_equals_duckdb(cluster, published, duckdb_outputs, tmp_path):
    """`master: spark://...`: a driver in the kpimetrics process, executors on the workers, the catalog the
    Connect server wrote the sources into (the shared metastore), 64 shuffle partitions (spark.MODES)."""
    _, connect, _ = published
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
    root, engine, _ = published
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
    _, connect, _ = published
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
