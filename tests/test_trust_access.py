"""Project SQL cannot read the machine (SPEC §11): refused at compile time on each engine, and on DuckDB
external access is off during a run, so a view made outside the project cannot read files either.

Before this, a DuckDB model could select read_text('/proc/self/environ') and publish a CI secret into
kpi_values for every BI reader; so could pg_read_file on PostgreSQL and reflect() or '${env:NAME}' on Spark.
The faults of tests/corpus_access.py run in test_error_catalog on DuckDB; here they run on PostgreSQL and
Spark too, and the run-time defence is checked with real processes whose environment holds a secret.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pytest
import yaml
from click.testing import CliRunner

import engines
from corpus import broken_project, every_table, where
from corpus_access import POSTGRES_FAULTS, SPARK_FAULTS
from helpers_projects import TODAY
from helpers_run import execute, insert_orders, kpi, kpis_yml, make_orders, query, write_run_project
from kpimetrics import Project
from kpimetrics.adapters.duckdb import DuckDBAdapter
from kpimetrics.cli import main
from kpimetrics.config import DuckDBOutput
from kpimetrics.errors import WarehouseError
from kpimetrics.validate import AllowedPaths

SECRET_NAME = "KPIMETRICS_TRUST_SECRET"
AS_OF = "2026-03-01"


def secret() -> str:
    return f"s3cr3t-{uuid.uuid4().hex}"


def kpimetrics_process(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`kpimetrics ARGS --project-dir root` in a process of its own: /proc/self/environ is its environment."""
    return subprocess.run([sys.executable, "-m", "kpimetrics", *args, "--project-dir", str(root)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **env})


def cells(tables: dict[str, list[tuple]]) -> str:
    """Every value of every table, as one text to search."""
    return "\n".join(repr(v) for rows in tables.values() for row in rows for v in row)


LEAK_KPI = kpi("leaked_rows", """
    model: ref('leak')
    time: ordered_at
    measure: count(*)
    dimensions: [leaked]
    target: 1
""")
REVENUE_KPI = kpi("revenue", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: sum(amount)
    target: 100
""")


# --- DuckDB: compile time -------------------------------------------------------------------------------

def test_a_model_reading_the_environment_is_refused_and_publishes_no_secret(tmp_path):
    """The issue's case: a model selecting read_text('/proc/self/environ'), run by a process holding a secret."""
    root = write_run_project(tmp_path, kpis_yml(REVENUE_KPI, LEAK_KPI), files={"models/leak.sql": """
        select o.ordered_at, e.content as leaked
        from {{ source('shop', 'orders') }} as o
        cross join read_text('/proc/self/environ') as e
    """})
    insert_orders(root, make_orders(dt.date(2026, 1, 1), dt.date(2026, 2, 1)))
    value = secret()
    out = kpimetrics_process(root, "run", "--as-of", AS_OF, env={SECRET_NAME: value})
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"^models/leak\.sql:3:\d+: error\[KPI120\]: model 'leak' calls `read_text\('/proc/self/environ'\)`",
                     out.stdout, re.M), out.stdout
    assert value not in cells(every_table(root / "wh.duckdb")) and value not in out.stdout + out.stderr


def test_reading_a_file_under_allowed_paths_validates_and_runs(tmp_path, monkeypatch):
    """What the profile lists is readable (at compile time and in the run); seed still loads its CSVs, and a
    second, incremental run (kept partials, the warehouse file) works as before. DuckDB reads a relative path
    from the working directory: the project folder here, as when kpimetrics runs from it."""
    root = write_run_project(tmp_path, kpis_yml(REVENUE_KPI, kpi("planned", """
        model: ref('plan')
        time: month
        measure: sum(planned)
        target: 1
    """)), files={
        "models/plan.sql": "select cast(month as timestamp) as month, planned from read_csv('data/plan.csv')\n",
        "data/plan.csv": "month,planned\n2026-01-01,10\n2026-02-01,20\n",
        "seeds/regions.csv": "region,manager\nnorth,ann\nsouth,bob\n",
    })
    profiles = root / "profiles.yml"
    profiles.write_text(profiles.read_text().replace("threads: 2}", "threads: 2, allowed_paths: [data]}"))
    insert_orders(root, make_orders(dt.date(2026, 1, 1), dt.date(2026, 2, 15)))
    monkeypatch.chdir(root)
    runner = CliRunner()
    seeded = runner.invoke(main, ["seed", "--project-dir", str(root)])
    assert seeded.exit_code == 0, seeded.output
    for _ in range(2):
        out = runner.invoke(main, ["run", "--as-of", AS_OF, "--project-dir", str(root)])
        assert out.exit_code == 0, out.output
    assert query(root, "SELECT count(*) FROM main.regions") == [(2,)]
    assert query(root, "SELECT period_start, value FROM kpi.kpi_values WHERE name = 'planned' AND dimension = '' "
                       "AND grain = 'month' ORDER BY 1") == [(dt.date(2026, 1, 1), 10.0), (dt.date(2026, 2, 1), 20.0)]


# --- DuckDB: the run itself -----------------------------------------------------------------------------

def test_a_view_made_outside_the_project_cannot_read_files_or_the_environment(tmp_path):
    """Defence in depth: SQL the compile-time check never sees (a view in the warehouse, made before the run)
    reads /etc/passwd and the process's environment. The run refuses those reads: that KPI fails cleanly
    (exit 1, not 3), the others publish, and no table holds the file's contents or the secret."""
    leak = kpi("leaked_rows", """
        model: source('shop', 'leaky')
        time: ordered_at
        measure: count(*)
        dimensions: [leaked]
        target: 1
    """)
    sources = """
        sources:
          - name: shop
            schema: main
            tables:
              - name: orders
              - name: leaky
    """
    root = write_run_project(tmp_path, kpis_yml(REVENUE_KPI, leak), sources=sources)
    insert_orders(root, make_orders(dt.date(2026, 1, 1), dt.date(2026, 2, 1)))
    execute(root, "CREATE VIEW main.leaky AS SELECT o.ordered_at, p.content || e.content AS leaked FROM main.orders AS o "
                  "CROSS JOIN read_text('/etc/passwd') AS p CROSS JOIN read_text('/proc/self/environ') AS e")
    value = secret()
    out = kpimetrics_process(root, "run", "--as-of", AS_OF, env={SECRET_NAME: value})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert "leaked_rows" in out.stdout and "external access" in out.stdout, out.stdout
    tables = cells({k: v for k, v in every_table(root / "wh.duckdb").items() if k.startswith("kpi.")})
    assert value not in tables and "root:" not in tables
    assert query(root, "SELECT count(*) FROM kpi.kpi_values WHERE name = 'revenue'")[0][0] > 0


def test_a_run_cannot_turn_external_access_back_on(tmp_path):
    root = write_run_project(tmp_path, kpis_yml(REVENUE_KPI))
    adapter = Project.load(root).connect()
    try:
        for sql in ("SET enable_external_access = true", "SET allowed_directories = ['/']",
                    "SET lock_configuration = false", "SELECT * FROM read_text('/etc/passwd')",
                    "SELECT * FROM read_csv('/etc/passwd', sep = ':')"):
            with pytest.raises(WarehouseError):
                adapter.fetchall(sql)
        assert adapter.fetchall("SELECT current_setting('TimeZone')") == [("UTC",)]  # its own settings still apply
    finally:
        adapter.close()


def test_connections_sharing_a_database_in_one_process(tmp_path):
    """DuckDB shares a file's database, and its settings, between the connections of a process: a second
    connection finds it closed and locked already, and still sets its own time zone; a database that other code
    locked with external access on is refused, not used as it is."""
    root = write_run_project(tmp_path, kpis_yml(REVENUE_KPI))
    path = str(root / "wh.duckdb")
    first = DuckDBAdapter(DuckDBOutput(type="duckdb", path=path), root, "UTC")
    second = DuckDBAdapter(DuckDBOutput(type="duckdb", path=path), root, "America/New_York")
    try:
        assert second.fetchall("SELECT current_setting('TimeZone')") == [("America/New_York",)]
        assert first.fetchall("SELECT current_setting('TimeZone')") == [("UTC",)]
        with pytest.raises(WarehouseError, match="external access"):
            second.fetchall("SELECT * FROM read_text('/etc/passwd')")
    finally:
        second.close()
        first.close()
    other = duckdb.connect(path)
    try:
        other.execute("SET lock_configuration = true")
        with pytest.raises(WarehouseError, match="already open in this process with external access on"):
            DuckDBAdapter(DuckDBOutput(type="duckdb", path=path), root, "UTC")
    finally:
        other.close()


# --- allowed_paths, resolved --------------------------------------------------------------------------------

def test_allowed_paths_are_folders_files_and_url_prefixes(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "plan.csv").write_text("a\n1\n")
    allowed = AllowedPaths.resolve(tmp_path, ["data", "plan.csv", "https://files.example/kpis"])
    yes = ["data/x.csv", "data/sub/y.parquet", "data/*.csv", str(tmp_path / "data" / "x.csv"), "plan.csv",
           "https://files.example/kpis/a.parquet"]
    no = ["data2/x.csv", "data/../secret.csv", "data/*/../../etc/passwd", "/etc/passwd", "plan.csv.bak", "*.csv",
          "https://files.example/kpis-other/a", "https://evil.example/kpis/a", "~/data/x.csv"]
    assert [p for p in yes if not allowed.allows(tmp_path, p)] == []
    assert [p for p in no if allowed.allows(tmp_path, p)] == []
    assert not AllowedPaths().allows(tmp_path, "data/x.csv")


# --- PostgreSQL and Spark: each engine's own ways, refused before the warehouse --------------------------------

def pg_profiles(server) -> tuple[str, str]:
    """profiles.yml of profile `acme` on a new database of the server, and that database's name."""
    output = engines.postgres_engine(server).output(Path("."))
    return yaml.safe_dump({"acme": {"target": "dev", "outputs": {"dev": output}}}, sort_keys=False), output["dbname"]


@pytest.mark.parametrize("fault", POSTGRES_FAULTS, ids=lambda f: f.id)
def test_postgres_refuses_server_files_and_settings(fault, tmp_path, pg_server):
    profiles, dbname = pg_profiles(pg_server)
    files = {**fault.files, "profiles.yml": profiles,
             "kpimetrics.yml": "name: acme_kpis\nprofile: acme\ndialect: postgres\noutput_schema: kpi\n"}
    root = broken_project(tmp_path, dataclasses.replace(fault, files=files), None)
    out = CliRunner().invoke(main, ["run", "--as-of", TODAY.isoformat(), "--project-dir", str(root)])
    assert out.exit_code == 1, out.output
    assert any(re.match(where(fault), line) and fault.message in line
               for line in out.output.splitlines() if f"error[{fault.code}]" in line), out.output
    with pg_server.connect(dbname) as con:  # nothing reached the warehouse
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'kpi'").fetchone() == (0,)


def test_postgres_model_cannot_publish_a_server_file(tmp_path, pg_server):
    """The run's role here is a superuser, which pg_read_file would serve: refused before the run starts."""
    profiles, dbname = pg_profiles(pg_server)
    with pg_server.connect(dbname) as con:
        con.execute("CREATE SCHEMA main")
        con.execute("CREATE TABLE main.orders (ordered_at timestamp, amount double precision)")
        con.execute("INSERT INTO main.orders VALUES ('2026-01-05', 10), ('2026-02-05', 20)")
    root = write_run_project(tmp_path, kpis_yml(REVENUE_KPI, LEAK_KPI), sources="""
        sources:
          - name: shop
            schema: main
            tables:
              - name: orders
    """, files={"models/leak.sql": """
        select o.ordered_at,
          pg_read_file('/etc/passwd') as leaked
        from {{ source('shop', 'orders') }} as o
    """})
    (root / "profiles.yml").write_text(profiles.replace("acme:", "shop:"))
    config = root / "kpimetrics.yml"
    config.write_text(config.read_text().replace("dialect: duckdb", "dialect: postgres"))
    out = CliRunner().invoke(main, ["run", "--as-of", AS_OF, "--project-dir", str(root)])
    assert out.exit_code == 1, out.output
    assert "models/leak.sql:2:" in out.output and "error[KPI124]" in out.output, out.output
    with pg_server.connect(dbname) as con:
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'kpi'").fetchone() == (0,)


def test_postgres_least_privileges_of_the_readme_suffice(tmp_path, pg_server):
    """The README's least privileges, for real: a role that may create schemas in the database and only read
    the sources runs the project; a role that may only read the output schema runs `status` and `show`."""
    profiles, dbname = pg_profiles(pg_server)
    runner, reader, password = f"kpi_run_{uuid.uuid4().hex[:8]}", f"kpi_read_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with pg_server.connect(dbname) as con:
        for role in (runner, reader):
            con.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
            con.execute(f"GRANT CONNECT ON DATABASE {dbname} TO {role}")
        con.execute("CREATE SCHEMA main")
        con.execute("CREATE TABLE main.orders (ordered_at timestamp, amount double precision)")
        con.execute("INSERT INTO main.orders VALUES ('2026-01-05', 10), ('2026-02-05', 20)")
        con.execute(f"GRANT USAGE ON SCHEMA main TO {runner}")
        con.execute(f"GRANT SELECT ON main.orders TO {runner}")
        # run issues CREATE SCHEMA IF NOT EXISTS, which PostgreSQL checks against the database even when it exists
        con.execute(f"GRANT CREATE ON DATABASE {dbname} TO {runner}")
    root = write_run_project(tmp_path, kpis_yml(REVENUE_KPI), sources="""
        sources:
          - name: shop
            schema: main
            tables:
              - name: orders
    """)
    config = root / "kpimetrics.yml"
    config.write_text(config.read_text().replace("dialect: duckdb", "dialect: postgres"))
    output = yaml.safe_load(profiles)["acme"]["outputs"]["dev"]
    targets = {name: {**output, "user": role, "password": password} for name, role in (("run", runner), ("read", reader))}
    (root / "profiles.yml").write_text(yaml.safe_dump({"shop": {"target": "run", "outputs": targets}}))
    cli = CliRunner()
    out = cli.invoke(main, ["run", "--as-of", AS_OF, "--project-dir", str(root)])
    assert out.exit_code == 0, out.output
    with pg_server.connect(dbname) as con:
        con.execute(f"GRANT USAGE ON SCHEMA kpi TO {reader}")
        con.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA kpi TO {reader}")
    for command in (["status"], ["show", "revenue"]):
        out = cli.invoke(main, [*command, "--target", "read", "--project-dir", str(root)])
        assert out.exit_code == 0, out.output
    out = cli.invoke(main, ["run", "--as-of", AS_OF, "--target", "read", "--project-dir", str(root)])
    assert out.exit_code == 1 and "permission denied" in out.output, out.output  # the reader cannot publish


@pytest.fixture(scope="module")
def spark_available():
    missing = engines.spark_missing()
    if missing:
        engines.engine_unavailable(missing)


@pytest.mark.parametrize("engine", ["spark"])
def test_spark_model_cannot_publish_the_environment(engine, tmp_path, spark_available):
    """reflect() and '${env:NAME}' read a Spark driver's environment: refused before a session starts, so the
    warehouse holds nothing (before, the run published the secret)."""
    root = write_run_project(tmp_path, kpis_yml(kpi("leaked_rows", """
        model: ref('leak')
        time: ordered_at
        measure: count(*)
        dimensions: [leaked, substituted]
        target: 1
    """)), sources="sources: []\n", files={"models/leak.sql": f"""
        select current_timestamp() as ordered_at,
          reflect('java.lang.System', 'getenv', '{SECRET_NAME}') as leaked,
          '${{env:{SECRET_NAME}}}' as substituted
    """})
    warehouse = tmp_path / "warehouse"
    (root / "profiles.yml").write_text(yaml.safe_dump({"shop": {"target": "dev", "outputs": {"dev": {
        "type": "spark", "master": "local[1]", "warehouse_dir": str(warehouse)}}}}))
    config = root / "kpimetrics.yml"
    config.write_text(config.read_text().replace("dialect: duckdb", "dialect: spark"))
    value = secret()
    out = kpimetrics_process(root, "run", "--as-of", AS_OF, env={SECRET_NAME: value})
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"^models/leak\.sql:2:\d+: error\[KPI125\]: model 'leak' calls `reflect`", out.stdout, re.M)
    assert re.search(r"^models/leak\.sql:3:\d+: error\[KPI123\]", out.stdout, re.M), out.stdout
    assert not warehouse.exists() or not any(warehouse.rglob("*.parquet"))


@pytest.mark.parametrize("engine", ["spark"])
@pytest.mark.parametrize("fault", SPARK_FAULTS, ids=lambda f: f.id)
def test_spark_refuses_path_tables_jvm_calls_and_substitutions(engine, fault, tmp_path, spark_available):
    files = {**fault.files, "profiles.yml": yaml.safe_dump({"acme": {"target": "dev", "outputs": {"dev": {
        "type": "spark", "master": "local[1]", "warehouse_dir": str(tmp_path / "warehouse")}}}}),
        "kpimetrics.yml": "name: acme_kpis\nprofile: acme\ndialect: spark\noutput_schema: kpi\n"}
    root = broken_project(tmp_path, dataclasses.replace(fault, files=files), None)
    out = CliRunner().invoke(main, ["run", "--as-of", TODAY.isoformat(), "--project-dir", str(root)])
    assert out.exit_code == 1, out.output
    assert any(re.match(where(fault), line) and fault.message in line
               for line in out.output.splitlines() if f"error[{fault.code}]" in line), out.output
    assert not (tmp_path / "warehouse").exists()

