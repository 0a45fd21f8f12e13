"""Spark through Spark Connect (SPEC §13), for real: pyspark's own Connect server in a subprocess on
127.0.0.1 (tests/spark_connect_server.py: local mode, a Hive catalog in an embedded Derby metastore, a
bearer token), reached by `remote:` with the token through env_var().

- the value suite's project A (tests/oracle_data.py) run through Connect equals the oracle and DuckDB;
- every command (seed, run, status, show, docs, diff) through Connect, in processes that cannot start a JVM
  (no java anywhere on their PATH, JAVA_HOME wrong): nothing depends on the client's JVM; the token appears
  in no output and no file of target/;
- a run killed (SIGKILL) at the named publish steps leaves the previous run's tables or the new run's,
  never a mix, and the next run marks it aborted;
- an unreachable server, a static setting in `conf`, a server without a metastore: clear errors.

One server serves the module; each project has schemas of its own on it.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml

import engines
import oracle_data as od
import spark_connect_server as scs
from engines import engine_unavailable
from helpers_projects import write_project
from helpers_run import (
    WITHOUT_RUN_ID, comparable, insert_orders, kpi, kpis_yml, make_orders, ok, run, set_kpis, write_run_project,
)
from kpimetrics import Project, faults, tables
from kpimetrics.adapters import spark_connect
from kpimetrics.errors import WarehouseError
from test_crash import SMALL_SHOP, run_subprocess
from test_values import SLICED_A, _check_slices, _check_totals

pytestmark = pytest.mark.spark

TOKEN = "kpimetrics-test-token-5f1c2e"  # the server's bearer token: must appear nowhere kpimetrics writes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    missing = scs.missing()
    if missing:
        engine_unavailable(missing)
    began = time.monotonic()
    started = scs.ConnectServer.start(tmp_path_factory.mktemp("spark_connect"), token=TOKEN)
    print(f"Spark Connect server up in {time.monotonic() - began:.1f} s at {started.url}")
    yield started
    started.stop()


def engine_for(server) -> engines.Engine:
    """Spark through the module's server, with schemas of its own (an output schema belongs to one project)."""
    return engines.spark_connect_engine(server)


@pytest.fixture
def engine(server) -> engines.Engine:
    return engine_for(server)


def profiles(engine: engines.Engine, root: Path, name: str) -> str:
    return engine.profiles_yml(root, name)


# --- the value suite's project A, and every command, in processes without a JVM -------------------------

# A selection of project A: each statement costs a round trip to the server (seconds on a loaded machine),
# so not all 40 KPIs. Sums with a filter and two dimensions over five grains, a count distinct over a
# 3-period window, a ratio, and counts of TIMESTAMPTZ rows cut in the calendar's time zone.
SELECTED_A = ("revenue", "customers_t3", "returned_share", "ticket_count")
SEED = 'code,label,opened_on,weight\nA1,"first, with a comma",2025-01-03,1.5\nB2,"two\nlines",2025-02-04,2\n'
REVENUE_TARGET = "    grain: [day, week, month, quarter, year]\n    target: 1000\n"


def _no_java_env() -> dict[str, str]:
    """An environment in which pyspark cannot start a JVM: no java on PATH, JAVA_HOME pointing nowhere."""
    return {**os.environ, "PATH": str(Path(sys.executable).parent), "JAVA_HOME": "/nonexistent-java"}


def _cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kpimetrics", *args, "--project-dir", str(root)],
                          capture_output=True, text=True, env=env or _no_java_env(), timeout=900)


def _passed(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def project_a(server, tmp_path_factory):
    """Project A with a seed file, seeded and run (the selection) through Connect by the CLI in processes
    without Java, its outputs read back beside the oracle's tables; and the same selection run on DuckDB."""
    engine = engine_for(server)
    remote = tmp_path_factory.mktemp("connect") / "project_a"
    write_project(remote, od.project_a_files(engine.profiles_yml(remote), engine.source_schema, engine.output_schema)
                  | {"seeds/codes.csv": SEED})
    with open(remote / "kpimetrics.yml", "a") as f:
        f.write(f"seed_schema: {engine.source_schema}\n")
    od.load_data(remote / "wh.duckdb")
    project = Project.load(remote)
    adapter = project.connect()
    try:
        engines.copy_sources(remote / "wh.duckdb", adapter, engine.source_schema, ("orders", "tickets"))
    finally:
        adapter.close()
    select = " ".join(SELECTED_A)
    outputs = {"seed": _passed(_cli(remote, "seed")),
               "run": _passed(_cli(remote, "run", "-s", select, "--full-refresh", "--as-of", od.AS_OF.isoformat()))}
    shutil.copytree(remote / "target", remote.parent / "state")
    adapter = project.connect()
    try:
        engines.copy_outputs(adapter, engine.output_schema, remote / "wh.duckdb")
    finally:
        adapter.close()
    duck = tmp_path_factory.mktemp("duckdb") / "project_a"
    write_project(duck, od.project_a_files())
    od.load_data(duck / "wh.duckdb")
    ok(Project.load(duck).run(select, full_refresh=True, as_of=od.AS_OF))
    return remote, duck, engine, outputs


def test_project_a_equals_the_oracle_and_duckdb(project_a):
    """Every row of the selection equals the oracle's (tests/oracle_data.py) and DuckDB's."""
    remote, duck, _, _ = project_a
    con = duckdb.connect(str(remote / "wh.duckdb"))
    try:
        od.build_oracle(con, {n: od.MEASURES_A[n] for n in SELECTED_A}, od.CAL_A, od.targets_a(), od.DIRECTIONS_A,
                        od.AS_OF, with_derived=False)
        problems = []
        for name in SELECTED_A:
            for check in (_check_totals, *([_check_slices] if name in SLICED_A else [])):
                try:
                    check(con, name)
                except AssertionError as exc:
                    problems.append(f"{name} ({check.__name__}): {exc}")
        assert not problems, "\n".join(problems)
        connect_rows = _outputs(con)
    finally:
        con.close()
    con = duckdb.connect(str(duck / "wh.duckdb"), read_only=True)
    try:
        duckdb_rows = _outputs(con)
    finally:
        con.close()
    for table, rows in connect_rows.items():
        assert {r[0] for r in rows} == set(SELECTED_A), table
        assert rows == duckdb_rows[table], table


def _outputs(con) -> dict[str, list[tuple]]:
    """kpi_values, kpi_status and kpi_targets (in the DuckDB file), comparable across engines."""
    out = {}
    for table in (tables.VALUES, tables.STATUS, tables.TARGETS):
        cur = con.execute(f"SELECT * FROM kpi.{table.name}")
        # definition_hash covers the model's SQL, which names each engine's own source schema
        out[table.name] = comparable([d[0] for d in cur.description], cur.fetchall(), (*WITHOUT_RUN_ID, "definition_hash"))
    return out


def test_seed_through_connect_loads_the_file_as_spark_reads_it(project_a):
    remote, _, engine, outputs = project_a
    assert f"loaded 2 rows into {engine.source_schema}.codes" in outputs["seed"]
    adapter = Project.load(remote).connect()
    try:
        rows = adapter.fetchall(f"SELECT code, label, opened_on, weight FROM `{engine.source_schema}`.codes ORDER BY code")
        types = dict((r[0], r[1]) for r in adapter.fetchall(f"DESCRIBE `{engine.source_schema}`.codes"))
    finally:
        adapter.close()
    assert rows == [("A1", "first, with a comma", dt.date(2025, 1, 3), 1.5), ("B2", "two\nlines", dt.date(2025, 2, 4), 2.0)]
    assert types == {"code": "string", "label": "string", "opened_on": "date", "weight": "double"}


def _table_rows(text: str) -> list[str]:
    """The rows of the boxes a command prints (its SQL, in each engine's dialect, left out)."""
    return [line.replace(" ", "") for line in text.splitlines() if line.startswith("│")]


def test_status_and_show_through_connect_equal_duckdb(project_a):
    remote, duck, _, _ = project_a
    assert Project.load(remote).status() == Project.load(duck).status()
    status = _passed(_cli(remote, "status"))
    assert _table_rows(status) == _table_rows(_passed(_cli(duck, "status", env=os.environ.copy())))
    show = _passed(_cli(remote, "show", "revenue"))
    assert "2026-02-01" in show
    assert _table_rows(show) == _table_rows(_passed(_cli(duck, "show", "revenue", env=os.environ.copy())))


def test_docs_and_diff_through_connect(project_a):
    remote, _, _, _ = project_a
    _passed(_cli(remote, "docs", "generate"))
    page = (remote / "target" / "docs" / "index.html").read_text()
    assert all(name in page for name in SELECTED_A)
    orders = (remote / "kpis" / "orders.yml").read_text()
    assert orders.count(REVENUE_TARGET) == 1
    (remote / "kpis" / "orders.yml").write_text(orders.replace(REVENUE_TARGET, REVENUE_TARGET.replace("1000", "1500")))
    try:
        diff = _passed(_cli(remote, "diff", "--state", str(remote.parent / "state"), "--output", "json"))
    finally:
        (remote / "kpis" / "orders.yml").write_text(orders)
    assert "revenue" in diff and "1500" in diff


def test_the_token_is_masked_everywhere(project_a):
    remote, _, _, outputs = project_a
    debug = _passed(_cli(remote, "debug"))
    assert "through Spark Connect (sc://localhost:" in debug and "token=****" in debug
    written = [p.read_text(errors="replace") for p in (remote / "target").rglob("*") if p.is_file()]
    for text in [debug, outputs["seed"], outputs["run"], *written]:
        assert TOKEN not in text


# --- kills at the named publish steps ------------------------------------------------------------------

# just before the pointer moves (every new version written), and just after
PUBLISH_KILLS = ("publish.swap:1", "publish.swapped:1")


def _state(root: Path, schema: str, drop: tuple[str, ...] = ("computed_at", "updated_at", "first_seen_at",
                                                              "last_seen_at")) -> dict[str, list[tuple] | None]:
    """Every output table of the project (a missing one None), comparable."""
    adapter = Project.load(root).connect()
    try:
        present = set(adapter.tables(schema))
        out = {}
        for table in tables.ALL_TABLES:
            if table.name == "kpi_runs":
                continue
            if table.name not in present:
                out[table.name] = None
                continue
            df = adapter.spark.sql(f"SELECT * FROM `{schema}`.`{table.name}`")
            out[table.name] = comparable(df.columns, [tuple(r) for r in df.collect()], drop)
        return out
    finally:
        adapter.close()


def _runs(root: Path, schema: str) -> list[str]:
    adapter = Project.load(root).connect()
    try:
        return [s for _, s in adapter.fetchall(f"SELECT run_id, status FROM `{schema}`.kpi_runs ORDER BY run_id")]
    finally:
        adapter.close()


def test_runs_killed_at_the_publish_steps(engine, tmp_path):
    """Killed before the pointer moves: the previous run's tables, exactly; killed after: the new run's,
    complete (the next run changes nothing but run ids). The next run marks the killed ones aborted."""
    root = tmp_path / "project"
    write_run_project(root, SMALL_SHOP.before_kpis)
    schema = engine.output_schema
    config = (root / "kpimetrics.yml").read_text().replace("output_schema: kpi", f"output_schema: {schema}")
    (root / "kpimetrics.yml").write_text(config)
    (root / "profiles.yml").write_text(profiles(engine, root, "shop"))
    (root / "sources.yml").write_text((root / "sources.yml").read_text().replace("schema: main",
                                                                                  f"schema: {engine.source_schema}"))

    def load_orders() -> None:
        adapter = Project.load(root).connect()
        try:
            engines.copy_sources(root / "wh.duckdb", adapter, engine.source_schema, ("orders",))
        finally:
            adapter.close()

    insert_orders(root, make_orders(dt.date(2025, 6, 1), dt.date(2025, 11, 20), per_day=SMALL_SHOP.orders_per_day))
    load_orders()
    ok(run(root))
    before = _state(root, schema)
    insert_orders(root, make_orders(dt.date(2025, 11, 20), dt.date(2025, 12, 20), seed=5, first_id=50_000,
                                    per_day=SMALL_SHOP.orders_per_day))
    load_orders()
    set_kpis(root, SMALL_SHOP.run_kpis)
    log = tmp_path / "kill.log"
    states = {}
    for step in PUBLISH_KILLS:
        log.unlink(missing_ok=True)
        proc = run_subprocess(root, {faults.KILL_LOG: str(log), faults.KILL_AT: step})
        assert proc.wait(timeout=600) == -9, proc.stderr.read().decode()
        assert faults.occurrences(log.read_text().split())[-1] == step
        states[step] = _state(root, schema)
    assert states["publish.swap:1"] == before
    published = states["publish.swapped:1"]
    assert published != before and published["kpi_values"]
    assert all(name != "old_buyers" for name, *_ in published["kpi_values"])  # the run under test removed it
    published_any_run = _state(root, schema, WITHOUT_RUN_ID)
    ok(run(root))
    assert _state(root, schema, WITHOUT_RUN_ID) == published_any_run
    assert _runs(root, schema) == ["success", "aborted", "aborted", "success"]


# --- clear errors ------------------------------------------------------------------------------------

REVENUE = kpis_yml(kpi("revenue", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: sum(amount)
"""))


def _connect(root: Path, output: dict) -> None:
    write_run_project(root, REVENUE)
    (root / "profiles.yml").write_text(yaml.safe_dump({"shop": {"target": "dev", "outputs": {"dev": output}}}))
    Project.load(root).connect().close()


def test_an_unreachable_server_is_named_at_once(tmp_path):
    port = scs.free_port()  # nothing listens there
    began = time.monotonic()
    with pytest.raises(WarehouseError, match=rf"cannot reach the Spark Connect server at 127\.0\.0\.1:{port} "
                                             r"\(Connection refused\): is it started"):
        _connect(tmp_path, {"type": "spark", "remote": f"sc://127.0.0.1:{port}"})
    assert time.monotonic() - began < 10  # not pyspark's ten minutes of retries


def test_a_static_setting_in_conf_is_the_servers(engine, tmp_path):
    output = engine.output(tmp_path) | {"conf": {"spark.sql.warehouse.dir": str(tmp_path / "elsewhere")}}
    with pytest.raises(WarehouseError, match=r"does not take the setting spark\.sql\.warehouse\.dir from a client "
                                             r"\(a static setting is set where the server starts\)") as caught:
        _connect(tmp_path, output)
    assert "token=****" in str(caught.value) and TOKEN not in str(caught.value)


def test_a_wrong_token_is_refused(server, tmp_path):
    with pytest.raises(WarehouseError) as caught:
        _connect(tmp_path, {"type": "spark", "remote": f"sc://localhost:{server.port}/;token=not-the-token"})
    assert "token=****" in str(caught.value) and "not-the-token" not in str(caught.value)


def test_shown_masks_every_parameter_value_but_harmless_ones():
    url = "sc://h.example:443/;use_ssl=true;token=abc123;x-databricks-cluster-id=0123;user_id=ann"
    assert spark_connect.shown(url) == "sc://h.example:443/;use_ssl=true;token=****;x-databricks-cluster-id=****;user_id=ann"
    assert spark_connect.shown("sc://127.0.0.1:15002") == "sc://127.0.0.1:15002"
    assert spark_connect.endpoint("sc://[::1]/;token=x") == ("::1", 15002)


# --- what each way of reaching Spark gets (spark.MODES) ------------------------------------------------

def _output(**settings):
    from kpimetrics.config import SparkOutput

    return SparkOutput(type="spark", **settings)


@pytest.mark.parametrize("settings, mode, partitions", [
    ({}, "local", "4"),
    ({"master": "local[4]"}, "local", "4"),
    ({"master": "spark://127.0.0.1:7077"}, "cluster", "64"),
    ({"master": "yarn"}, "cluster", "64"),
    ({"master": "spark://127.0.0.1:7077", "conf": {"spark.sql.shuffle.partitions": "400"}}, "cluster", "400"),
])
def test_a_driver_here_gets_the_shuffle_partitions_of_its_master(settings, mode, partitions):
    from kpimetrics.adapters import spark

    output = _output(**settings)
    assert spark.mode_of(output).name == mode and spark.mode_of(output).driver_here
    conf = spark._static_conf(output, spark.mode_of(output), "/tmp/wh", embedded=False)
    assert conf["spark.sql.shuffle.partitions"] == partitions
    assert conf["spark.sql.warehouse.dir"] == "/tmp/wh"


def test_a_connect_session_gets_session_settings_only():
    from kpimetrics.adapters import spark

    output = _output(remote="sc://127.0.0.1:15002", conf={"spark.sql.adaptive.enabled": "true"})
    mode = spark.mode_of(output)
    assert mode.name == "connect" and not mode.driver_here
    assert spark.session_settings(output, mode) == {"spark.sql.legacy.createHiveTableByDefault": "false",
                                                    "spark.sql.adaptive.enabled": "true"}


def test_a_server_without_a_metastore_is_refused(tmp_path):
    """A server whose catalog is in memory would lose the output tables when it stops: refused, saying what to
    start it with (a server of its own: the module's has a metastore)."""
    from kpimetrics.adapters.spark import SparkAdapter
    from kpimetrics.config import SparkOutput

    if scs.missing():
        engine_unavailable(scs.missing())
    server = scs.ConnectServer.start(tmp_path / "in_memory", conf={"spark.sql.catalogImplementation": "in-memory"})
    try:
        with pytest.raises(WarehouseError, match=r"keeps its catalog in memory \(spark\.sql\.catalogImplementation="
                                                 r"in-memory\).*Start the server with spark\.sql\.catalogImplementation"
                                                 r"=hive and a metastore"):
            SparkAdapter(SparkOutput(type="spark", remote=server.url), tmp_path, "UTC")
    finally:
        server.stop()


# --- one run at a time on a shared catalog: the lease (adapters/spark_lease.py) ---------------------------

def _lease_view(adapter, schema: str, generation: int, host: str, pid: int, expires_in: int) -> None:
    """A lease as another client would have left it."""
    adapter.execute(f"CREATE VIEW `{schema}`.kpi_lock__{generation} AS SELECT '{host}' AS host, {pid} AS pid, "
                    f"'other' AS token, CAST(unix_timestamp() + {expires_in} AS BIGINT) AS expires_at, false AS released")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_lease_on_a_shared_catalog(engine, tmp_path):
    """Two connections: the second is refused with KPI184 naming the first; released, it is free. A lease of a
    process gone from this host is taken over at once, one of another host only once expired, never while it
    runs; a run whose lease was taken over stops with KPI185 (before the pointer would move)."""
    import socket

    from kpimetrics.adapters.spark import SparkAdapter
    from kpimetrics.config import SparkOutput

    written = engine.output(tmp_path)  # the profile as a user writes it: the token as env_var(), which a profile
    written["remote"] = re.sub(r"\{\{ env_var\('(\w+)'\) \}\}", lambda m: os.environ[m[1]], written["remote"])
    output = SparkOutput(**written)  # ... renders (kpimetrics' profile reader); an adapter is given the rendered text
    schema = engine.output_schema
    first, second = (SparkAdapter(output, tmp_path, "UTC") for _ in range(2))
    try:
        first.lock(schema)
        with pytest.raises(WarehouseError) as caught:
            second.lock(schema)
        assert [i.code for i in caught.value.issues] == ["KPI184"]
        assert f"output schema '{schema}'" in str(caught.value) and f"process {os.getpid()} on host" in str(caught.value)
        first.lock(schema)  # its own: renewed
        first.close()
        second.lock(schema)  # released: free
        assert [n for n, _ in second.relations(schema)] == ["kpi_lock__2"]  # the older view dropped
        second.close()
        probe = SparkAdapter(output, tmp_path, "UTC")
        _lease_view(probe, schema, 3, socket.gethostname(), _dead_pid(), 600)  # killed here: free at once
        probe.lock(schema)
        assert probe._lease.generation == 4
        _lease_view(probe, schema, 5, "elsewhere.example", 1, 600)  # taken over (this one stalled): KPI185
        with pytest.raises(WarehouseError) as caught:
            probe.lock(schema)
        assert [i.code for i in caught.value.issues] == ["KPI185"] and "host elsewhere.example" in str(caught.value)
        probe.close()  # not its lease any more: left as it is
        with pytest.raises(WarehouseError, match="process 1 on host elsewhere.example") as caught:
            first = SparkAdapter(output, tmp_path, "UTC")
            first.lock(schema)  # another host's, running: not taken
        assert [i.code for i in caught.value.issues] == ["KPI184"]
        _lease_view(first, schema, 6, "elsewhere.example", 1, -1)  # expired
        first.lock(schema)
        assert first._lease.generation == 7
        assert [n for n, _ in first.relations(schema)] == ["kpi_lock__7"]
    finally:
        first.close()
        second.close()


def test_a_driver_here_in_a_connect_mode_environment_says_so(tmp_path, monkeypatch):
    """pyspark's builder goes to Spark Connect when SPARK_REMOTE or SPARK_CONNECT_MODE_ENABLED is set (pyspark.sql's
    Connect builder sets the second for good): a `master:` profile names the variable, not Java (no JVM started)."""
    from kpimetrics.adapters import spark

    monkeypatch.setattr(spark, "_live", None)
    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
    with pytest.raises(WarehouseError, match=r"cannot start Spark \(local\[2\]\): the environment sets "
                                             r"SPARK_CONNECT_MODE_ENABLED, which turns pyspark to Spark Connect"):
        spark._session("local[2]", {"spark.app.name": "kpimetrics"})
