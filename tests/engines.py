"""The engines the cross-engine tests run on, held as data.

For each engine: the profile output of a fresh, isolated warehouse, and the
schemas a test project reads its sources from and writes its output to. Source
data always starts in a DuckDB file (the oracle computes from it); `copy_sources`
moves tables from there into the engine through kpimetrics' own adapter, with the
same column types (TIMESTAMPTZ included), and `copy_outputs` reads the output
tables back into that DuckDB file, so one comparison works for every engine.

An engine that is not available here fails the test when KPIMETRICS_REQUIRE_ENGINES
is set (as `make test` and CI do) and is skipped, with the reason, otherwise.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import duckdb
import pytest
from sqlglot import exp

from kpimetrics import tables
from kpimetrics.dialects import generate
from kpimetrics.tables import qualified

# The engines the value suites run on.
VALUE_ENGINES = ("duckdb", "postgres", "spark")

PG_USER_ENV, PG_PASSWORD_ENV = "KPIMETRICS_TEST_PGUSER", "KPIMETRICS_TEST_PGPASSWORD"


def engine_unavailable(reason: str) -> None:
    """Fail under KPIMETRICS_REQUIRE_ENGINES (CI must not skip silently), else skip."""
    if os.environ.get("KPIMETRICS_REQUIRE_ENGINES"):
        pytest.fail(f"required engine unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Engine:
    name: str
    output: Callable[[Path], dict[str, Any]]  # the profile output of a fresh warehouse for a project in that folder
    source_schema: str
    output_schema: str

    @property
    def embedded(self) -> bool:
        """The warehouse is the oracle's own DuckDB file: nothing to copy."""
        return self.name == "duckdb"

    def profiles_yml(self, root: Path, profile: str = "oracle") -> str:
        import yaml

        return yaml.safe_dump({profile: {"target": "dev", "outputs": {"dev": self.output(root)}}}, sort_keys=False)


def duckdb_engine() -> Engine:
    return Engine("duckdb", lambda root: {"type": "duckdb", "path": "wh.duckdb"}, "main", "kpi")


def postgres_engine(server) -> Engine:
    """A new database per project: nothing leaks between test projects."""
    os.environ[PG_USER_ENV] = server.user  # the profile reads them through env_var(), as a user's would
    os.environ[PG_PASSWORD_ENV] = server.password

    def output(root: Path) -> dict[str, Any]:
        dbname = server.create_database(f"kpi_{uuid.uuid4().hex[:12]}")
        return {"type": "postgres", "host": server.host, "port": server.port, "dbname": dbname,
                "user": f"{{{{ env_var('{PG_USER_ENV}') }}}}", "password": f"{{{{ env_var('{PG_PASSWORD_ENV}') }}}}"}

    return Engine("postgres", output, "main", "kpi")


def spark_engine(tmp: Path) -> Engine:
    """One local Spark per test process (a JVM is slow to start); a schema pair per project."""
    tag = uuid.uuid4().hex[:8]
    return Engine("spark", lambda root: {"type": "spark", "master": "local[2]", "warehouse_dir": str(tmp / "warehouse")},
                  f"src_{tag}", f"kpi_{tag}")


SPARK_TOKEN_ENV = "KPIMETRICS_TEST_SPARK_TOKEN"


def spark_connect_engine(server) -> Engine:
    """Spark through a Spark Connect server (tests/spark_connect_server.py), reached as a user would: its
    token through env_var(), kpimetrics' shuffle partitions for a small server in `conf`. Not one of
    VALUE_ENGINES (each of those multiplies the value suites' time): test_spark_connect runs project A on it."""
    tag = uuid.uuid4().hex[:8]
    url = f"sc://127.0.0.1:{server.port}"
    if server.token:
        os.environ[SPARK_TOKEN_ENV] = server.token
        # pyspark sends a token without TLS to localhost only (the server's loopback address)
        url = f"sc://localhost:{server.port}/;token={{{{ env_var('{SPARK_TOKEN_ENV}') }}}}"
    return Engine("spark_connect", lambda root: {"type": "spark", "remote": url,
                                                 "conf": {"spark.sql.shuffle.partitions": "4"}},
                  f"src_{tag}", f"kpi_{tag}")


def spark_missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "Java is not installed (Spark needs Java 17)"
    return None


def make_engine(name: str, request, tmp_path_factory) -> Engine:
    """The engine `name`, started if needed; skips or fails (see engine_unavailable) when it cannot be."""
    if name == "duckdb":
        return duckdb_engine()
    if name == "postgres":
        return postgres_engine(request.getfixturevalue("pg_server"))
    if name == "spark":
        missing = spark_missing()
        if missing:
            engine_unavailable(missing)
        return spark_engine(tmp_path_factory.mktemp("spark"))
    raise ValueError(f"unknown engine {name}")


# --- which engines a test needs: its pytest markers ---------------------------------------------

# Markers the suite sets by itself (conftest.py): `make test-fast` deselects all but DuckDB with them.
ENGINE_MARKERS = {
    "postgres": "needs the throwaway PostgreSQL server",
    "spark": "needs Spark (Java 17, pyspark)",
    "browser": "needs Chromium (headless scorecard tests)",
    "dbt": "needs dbt in .venv-dbt (make dbt-env), for the tests over the suite's dbt project",
}
_MODULE_ENGINES = {"test_postgres": "postgres", "test_spark": "spark", "test_browser": "browser"}
_FIXTURE_ENGINES = {"pg_server": "postgres", "dbt_shop": "dbt", "dbt_pg_shop": "dbt"}


def engines_of(item) -> set[str]:
    """The engines a collected test needs, from its module, its fixtures and its parameters (an engine's name
    as a parameter, direct or indirect, as the value and crash suites write them)."""
    found = {_MODULE_ENGINES[item.module.__name__]} if item.module.__name__ in _MODULE_ENGINES else set()
    found |= {engine for fixture, engine in _FIXTURE_ENGINES.items() if fixture in getattr(item, "fixturenames", ())}
    params = getattr(getattr(item, "callspec", None), "params", {})
    for value in params.values():
        name = value if isinstance(value, str) else getattr(value, "engine", None)
        name = getattr(name, "name", name)
        if name in ENGINE_MARKERS:
            found.add(name)
    return found


# --- which tests share a worker: the set-ups they share ------------------------------------------

# `make test` runs with `--dist loadgroup`: the tests of one group go to one xdist worker, so the set-up they
# share is made once per session, not once per worker as with `--dist load` (which deals tests out one by one).
# Session fixtures costlier than a worker's start, by name: their group. pg_server is left out: each worker
# needs its own for the rest of the PostgreSQL tests anyway.
SHARED_SESSION_SETUPS = {
    "value_engine": "values",  # a project A and a project B run per engine (tests/oracle_data.py)
    "semantic_shop": "semantic_shop",  # a dbt build, and MetricFlow's answers (tests/semantic_env.py)
    "dbt_shop": "dbt_shop",  # a dbt build (tests/dbt_env.py)
    "dbt_pg_shop": "dbt_pg_shop",
}


def shared_setup_group(item) -> str | None:
    """The xdist group of a collected test: its session set-up of SHARED_SESSION_SETUPS (with the engine of
    value_engine), else its module's module-scoped fixtures, each named with its parameter (the crash
    scenario on Spark is one group, on DuckDB another, and test_crash's first_run on Spark a third: two
    fixtures share no set-up, and one group of all the Spark crash tests would be half the suite on one
    worker), else none (the test is dealt out alone)."""
    names = getattr(item, "fixturenames", ())
    params = getattr(getattr(item, "callspec", None), "params", {})
    for fixture, group in SHARED_SESSION_SETUPS.items():
        if fixture in names:
            param = params.get(fixture)
            return f"{group}-{getattr(param, 'name', param)}" if param is not None else group
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    module = [name for name in names if name in defs and defs[name][-1].scope == "module"]
    if not module:
        return None
    ids = [f"{n}={getattr(params[n], 'name', params[n])}" for n in module if n in params]
    return item.module.__name__ + (f"[{'-'.join(ids)}]" if ids else "")


# The tests that take minutes, with their seconds in the last full run (`make test`, -n 2, 2 cores), by
# node id under tests/. The scheduler (conftest.py) deals the units holding them out first, the longest
# first, so that they do not start at the end of the run while the other worker has nothing left to do.
# Add a test here when `--durations` shows it among the longest; test_scheduling checks each one exists.
LONG_TESTS = {
    "test_crash.py::test_sigkill_at_every_named_step[spark]": 1227,
    "test_crash.py::test_a_killed_first_run_leaves_no_output_tables_or_all_of_them[spark]": 466,
    "test_crash.py::test_sigkill_at_random_times[spark]": 360,
}


def expected_seconds(item) -> int:
    """How long a collected test is known to take (LONG_TESTS), 0 if it is not one of the long ones."""
    path, _, test = item.nodeid.partition("::")
    return LONG_TESTS.get(f"{Path(path).name}::{test}", 0)


# --- moving tables between the oracle's DuckDB file and the engine ---------------------------

def _create(adapter, table: exp.Table, columns: list[tuple[str, str]]) -> None:
    """CREATE TABLE in the engine's dialect, column types given as DuckDB spells them."""
    defs = [exp.ColumnDef(this=exp.to_identifier(c, quoted=True), kind=exp.DataType.build(t, dialect="duckdb"))
            for c, t in columns]
    adapter.execute(generate(exp.Drop(tables=[table.copy()], kind="TABLE", exists=True), adapter.dialect))
    adapter.execute(generate(exp.Create(this=exp.Schema(this=table.copy(), expressions=defs), kind="TABLE"),
                             adapter.dialect))


def copy_sources(duckdb_path: Path, adapter, schema: str, names: tuple[str, ...]) -> None:
    """Copy tables main.<name> of the DuckDB file into `schema` of the engine, typed as they are."""
    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        adapter.execute(generate(exp.Create(this=exp.Table(this=exp.to_identifier(schema, quoted=True)),
                                            kind="SCHEMA", exists=True), adapter.dialect))
        for name in names:
            rel = con.table(f"main.{name}")
            columns = list(zip(rel.columns, map(str, rel.types)))
            target = qualified(schema, name)
            _create(adapter, target, columns)
            adapter.insert_rows(generate(target, adapter.dialect), [c for c, _ in columns], _rows(con, name, columns))
    finally:
        con.close()


def _rows(con, name: str, columns: list[tuple[str, str]]) -> list[list]:
    """The rows of main.<name>; TIMESTAMPTZ values as aware UTC datetimes (without DuckDB's pytz)."""
    tz = [t == "TIMESTAMP WITH TIME ZONE" for _, t in columns]
    select = ", ".join(f"timezone('UTC', \"{c}\")" if z else f'"{c}"' for (c, _), z in zip(columns, tz))
    return [[v.replace(tzinfo=dt.timezone.utc) if z and v is not None else v for v, z in zip(r, tz)]
            for r in con.execute(f"SELECT {select} FROM main.{name}").fetchall()]


def copy_outputs(adapter, schema: str, duckdb_path: Path) -> None:
    """Read the output tables from the engine into schema `kpi` of the DuckDB file, as a BI tool reads them."""
    con = duckdb.connect(str(duckdb_path))
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS kpi")
        for table in (tables.VALUES, tables.STATUS, tables.TARGETS, tables.CATALOG, tables.RUNS):
            cols = ", ".join(f'"{c}" {t}' for c, t in table.columns)
            con.execute(f"CREATE OR REPLACE TABLE kpi.{table.name} ({cols})")
            query = exp.select(*[exp.column(c, quoted=True) for c in table.column_names]).from_(qualified(schema, table.name))
            insert_many(con, f"kpi.{table.name}", adapter.fetchall(generate(query, adapter.dialect)))
    finally:
        con.close()


def insert_many(con, table: str, rows: list[tuple], chunk: int = 500) -> None:
    """Parameterised multi-row INSERTs into DuckDB (its executemany is row by row, and slow)."""
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        marks = "(" + ", ".join("?" for _ in part[0]) + ")"
        con.execute(f"INSERT INTO {table} VALUES " + ", ".join([marks] * len(part)), [v for r in part for v in r])


def column_types(adapter, schema: str, table: str) -> dict[str, str]:
    """{column: type name as the engine reports it}."""
    if adapter.dialect == "spark":
        rows = adapter.fetchall(generate(exp.Describe(this=qualified(schema, table)), "spark"))
        return {r[0]: r[1] for r in rows if r[0] and not r[0].startswith("#")}
    rows = adapter.fetchall(generate(
        exp.select("column_name", "data_type").from_("information_schema.columns").where(
            exp.and_(exp.column("table_schema").eq(exp.Literal.string(schema)),
                     exp.column("table_name").eq(exp.Literal.string(table)))), adapter.dialect))
    return dict(rows)


_SAME_TYPE = {exp.DataType.Type.VARCHAR: exp.DataType.Type.TEXT,
              exp.DataType.Type.TIMESTAMPNTZ: exp.DataType.Type.TIMESTAMP}


def is_type(engine: str, type_name: str, wanted: str) -> bool:
    """Whether an engine's type name is the type `wanted` as DuckDB spells it ('double precision' is DOUBLE)."""
    def kind(name: str, dialect: str):
        t = exp.DataType.build(name, dialect=dialect).this
        return _SAME_TYPE.get(t, t)

    return kind(type_name, engine) == kind(wanted, "duckdb")


# --- fixtures (imported by conftest.py) ---------------------------------------------------------

@dataclass
class OracleRun:
    """A project of tests/oracle_data.py run on one engine."""

    engine: Engine
    root: Path
    result: Any
    con: duckdb.DuckDBPyConnection  # source data, oracle tables, and the output tables read back

    def connect(self):
        from kpimetrics import Project

        return Project.load(self.root).connect()


@pytest.fixture(scope="session", params=VALUE_ENGINES)
def value_engine(request, tmp_path_factory) -> Engine:
    return make_engine(request.param, request, tmp_path_factory)


def _oracle_run(which: str, engine: Engine, tmp_path_factory):
    import oracle_data as od

    root = tmp_path_factory.mktemp(f"oracle_{which}_{engine.name}")
    result, con = od.run_project(root, which, engine)
    return OracleRun(engine, root, result, con)


@pytest.fixture(scope="session")
def oracle_a(value_engine, tmp_path_factory):
    """Project A (America/New_York, Monday weeks) run once per engine for every value and status test."""
    run = _oracle_run("a", value_engine, tmp_path_factory)
    yield run
    run.con.close()


@pytest.fixture(scope="session")
def oracle_b(value_engine, tmp_path_factory):
    """Project B (UTC, Sunday weeks, fiscal year from April) run once per engine."""
    run = _oracle_run("b", value_engine, tmp_path_factory)
    yield run
    run.con.close()


def _succeeded(run: OracleRun) -> duckdb.DuckDBPyConnection:
    failed = [(k.name, k.status, k.error) for k in run.result.kpis if k.status != "success"]
    assert run.result.status == "success" and not failed, failed
    return run.con


@pytest.fixture(scope="session")
def con_a(oracle_a) -> duckdb.DuckDBPyConnection:
    """Project A's source data, oracle tables and output tables, once its run has succeeded."""
    return _succeeded(oracle_a)


@pytest.fixture(scope="session")
def con_b(oracle_b) -> duckdb.DuckDBPyConnection:
    """The same for project B."""
    return _succeeded(oracle_b)
