"""Schema migrations, for real: a warehouse written by the release whose tables are version 1 upgrades in place.

tests/fixtures/schema_v1/ holds what that release wrote (make_fixture.py says how it was recorded): the
statements with which it creates its tables on each engine, and the rows of every table after three runs
of the project beside them (in full; incrementally; with a definition changed). Each test builds that
warehouse on DuckDB, PostgreSQL and Spark from those statements and rows, then lets today's kpimetrics at it:

  - a run upgrades it: every row of every version-1 table is kept, kpi_definitions appears, filled with
    what version 1 can tell (migrations.definitions_from_v1), and kpi_meta says version 2;
  - later runs keep kpi_definitions: a hash seen again moves its last_seen_at, a new hash adds a row and
    leaves the old one, a KPI removed from the project leaves with its rows;
  - a warehouse newer than the code is refused (exit 1), nothing changed;
  - a run killed anywhere in the migration leaves version 1 exactly as it was (DuckDB at every step up to
    the commit, PostgreSQL at the migration's own steps and the commit); on Spark, which has no transaction,
    a migration stopped midway leaves version 1's tables as they were and the next run completes it;
  - a new warehouse starts at the current version;
  - version 3 (kpi_forecast, no backfill: a forecast is of its run's date) comes with the same run: a version-1
    warehouse takes migrations 2 and 3 in one publishing, and a version-2 warehouse (version 1's upgraded by
    migration 2 as the publisher applies it) takes 3, every row of every table kept; a run killed in either
    leaves the warehouse where it was, and on Spark the next run completes one stopped midway;
  - version 4 (kpi_notifications, empty: nothing was notified before) comes with the same run: a version-3
    warehouse takes it, every row kept, and `kpimetrics notify` then logs into it; the log outlives later runs
    (on Spark it is a plain table, appended to, which no run's publishing versions or drops).
  - version 5 (kpi_slice_members, empty: no combination of dimensions was computed before) comes with the same
    run: a version-4 warehouse takes it, every row of every table kept, and a KPI by region × channel fills it
    with one row per combination slice and member, equal to the orders' distinct (region, channel).
  - version 6 (kpi_catalog.metric, the first column a migration adds) comes with the same run: a version-5
    warehouse reads as before until then (the typed reader gives the column as NULL), the run adds it (on
    Spark to the versions beneath the view, and the view shows it) with every row kept and NULL in it, and the
    run's own catalog rows write it (test_metric_provenance checks a metric KPI's); a migration killed after
    the column was added is completed by the next run.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlglot import exp

import engines
from helpers_run import AS_OF, insert_orders, make_orders
from kpimetrics import Project, faults, migrations, tables
from kpimetrics.cli import main
from kpimetrics.dialects import generate
from kpimetrics.publish import OWNER_KEY, PUBLISHERS, Warehouse
from kpimetrics.tables import qualified

FIXTURE = Path(__file__).parent / "fixtures" / "schema_v1"
V1 = json.loads((FIXTURE / "rows.json").read_text())
V1_TABLES = [name for name in V1 if name != "kpi_meta"]  # the output tables of version 1
SCHEMA = "kpi"
# version 1's layout on Spark (spark.sql): each table a view of `<name>__versions` at kpi_version, kpi_runs of a log
V1_RUNS_LOG, V1_VERSION_COLUMN = "kpi_runs__log", "kpi_version"
# the fixture's orders (make_fixture.RUNS): what its runs read, and what the runs here read
ORDERS = ((dt.date(2025, 1, 1), dt.date(2025, 10, 1), 7, 1), (dt.date(2025, 10, 1), dt.date(2026, 1, 1), 8, 100_000))
BUYERS = """
  - name: buyers
    owner: sales@shop.example
    strategy: grow_sales
    indicator: leading
    actions: Call the sales team
    model: source('shop', 'orders')
    time: ordered_at
    measure: count(distinct customer_id)
    target: 40
"""
REVENUE_FILTER = "filter: status <> 'returned'"


def _typed(value, type_name: str):
    if value is None:
        return None
    if type_name == "DATE":
        return dt.date.fromisoformat(value)
    if type_name == "TIMESTAMP":
        return dt.datetime.fromisoformat(value)
    return value


def v1_rows(name: str) -> list[tuple]:
    """A version-1 table's rows as the fixture holds them, typed."""
    types = [t for _, t in V1[name]["columns"]]
    return ordered([tuple(_typed(v, t) for v, t in zip(r, types)) for r in V1[name]["rows"]])


def ordered(rows) -> list[tuple]:
    return sorted((tuple(r) for r in rows), key=lambda r: tuple((v is None, str(v)) for v in r))


def published_run() -> int:
    """The run whose tables the fixture holds: its last successful one."""
    return max(r[0] for r in v1_rows("kpi_runs") if r[3] == "success")


# --- a version-1 warehouse on each engine -------------------------------------------------------

class V1Warehouse:
    """The fixture's project in `root`, its sources and its version-1 output tables on one engine."""

    def __init__(self, root: Path, engine: engines.Engine):
        self.root, self.engine = root, engine
        shutil.copytree(FIXTURE / "project", root)
        (root / "profiles.yml").write_text(engine.profiles_yml(root, "shop"))
        for start, end, seed, first_id in ORDERS:
            insert_orders(root, make_orders(start, end, seed=seed, first_id=first_id))
        adapter = Project.load(root).connect()
        try:
            if not engine.embedded:
                engines.copy_sources(root / "wh.duckdb", adapter, "main", ("orders",))
            self._load(adapter)
        finally:
            adapter.close()

    @property
    def dialect(self) -> str:
        return self.engine.name  # the engines' names are their dialects'

    def _load(self, adapter) -> None:
        adapter.execute(generate(exp.Create(this=exp.Table(this=exp.to_identifier(SCHEMA, quoted=True)), kind="SCHEMA",
                                            exists=True), self.dialect))
        for statement in (FIXTURE / f"{self.engine.name}.sql").read_text().split(";\n"):
            if statement.strip():
                adapter.execute(statement)
        versioned = self.engine.name == "spark"
        for name in V1:
            columns = [c for c, _ in V1[name]["columns"]]
            rows = [list(r) for r in v1_rows(name)]
            if not versioned:
                adapter.insert_rows(generate(qualified(SCHEMA, name), self.dialect), columns, rows)
            elif name == "kpi_runs":
                adapter.insert_rows(generate(qualified(SCHEMA, V1_RUNS_LOG), self.dialect), columns, rows)
            elif name != "kpi_meta":  # made with its row
                adapter.insert_rows(generate(qualified(SCHEMA, f"{name}__versions"), self.dialect),
                                    [*columns, V1_VERSION_COLUMN], [[*r, published_run()] for r in rows])

    def tables(self, names=None) -> dict[str, list[tuple] | None]:
        """Whole tables as a BI tool reads them (None for a missing one), every column."""
        names = names or [*V1_TABLES, "kpi_meta", tables.DEFINITIONS.name, tables.FORECAST.name]
        adapter = Project.load(self.root).connect()
        try:
            present = set(adapter.tables(SCHEMA))
            out = {}
            for name in names:
                if name not in present:
                    out[name] = None
                    continue
                columns = [c for c, _ in V1[name]["columns"]] if name in V1 else tables.BY_NAME[name].column_names
                query = exp.select(*[exp.column(c, quoted=True) for c in columns]).from_(qualified(SCHEMA, name))
                out[name] = ordered(adapter.fetchall(generate(query, self.dialect)))
            return out
        finally:
            adapter.close()

    def relations(self) -> list[str]:
        adapter = Project.load(self.root).connect()
        try:
            return sorted(adapter.tables(SCHEMA))
        finally:
            adapter.close()

    def execute(self, tree: exp.Expression) -> None:
        adapter = Project.load(self.root).connect()
        try:
            adapter.execute(generate(tree, self.dialect))
        finally:
            adapter.close()

    def set_kpis(self, text: str) -> None:
        (self.root / "kpis" / "kpis.yml").write_text(text, encoding="utf-8")

    def kpis(self) -> str:
        return (self.root / "kpis" / "kpis.yml").read_text(encoding="utf-8")

    def to_version_2(self) -> None:
        """The warehouse as version 2 left it: version 1's, upgraded by migration 2 as this engine's publisher applies
        it (in a transaction, or by versioned tables), kpi_meta saying 2."""
        adapter = Project.load(self.root).connect()
        try:
            def sql(tree: exp.Expression) -> str:
                return generate(tree, self.dialect)

            def insert(table: tables.Table, query: exp.Query) -> None:
                columns = [exp.to_identifier(c, quoted=True) for c in table.column_names]
                adapter.execute(sql(exp.Insert(this=exp.Schema(this=qualified(SCHEMA, table.name), expressions=columns),
                                               expression=query)))

            wh = Warehouse(adapter, SCHEMA, sql, lambda t: adapter.execute(sql(t)), lambda t: adapter.fetchall(sql(t)),
                           insert, "shop")
            publisher = PUBLISHERS[adapter.capabilities.publish](wh)
            two = tuple(m for m in migrations.MIGRATIONS if m.version == 2)
            if adapter.capabilities.publish == "transaction":
                adapter.begin()
                publisher._migrate(two)
                adapter.commit()
            else:
                publisher._migrate(two)
        finally:
            adapter.close()

    def run(self, select: str | None = None):
        result = Project.load(self.root).run(select, as_of=AS_OF)
        assert result.status == "success", (result.message, [(k.name, k.error) for k in result.kpis if k.error])
        return result


def make_engine(name: str, request, tmp_path_factory) -> engines.Engine:
    engine = engines.make_engine(name, request, tmp_path_factory)
    if name == "spark":  # the fixture's statements name schema `kpi`: a warehouse of its own
        folder = tmp_path_factory.mktemp("spark_v1") / "warehouse"
        engine = engines.Engine("spark", lambda root: {"type": "spark", "master": "local[2]", "warehouse_dir": str(folder)},
                                "main", SCHEMA)
    return engine


@pytest.fixture(params=engines.VALUE_ENGINES)
def v1(request, tmp_path, tmp_path_factory) -> V1Warehouse:
    return V1Warehouse(tmp_path / "project", make_engine(request.param, request, tmp_path_factory))


# --- what the backfill must hold, from the version-1 rows themselves ----------------------------

def column(name: str, table: str) -> int:
    return [c for c, _ in V1[table]["columns"]].index(name)


def backfilled(before: dict[str, list[tuple]]) -> list[tuple]:
    """kpi_definitions as migrations.definitions_from_v1 documents it, computed here in Python: per (name, hash)
    of kpi_values and kpi_catalog, the oldest surviving run and its time, and the catalog's last publication."""
    runs: dict[tuple, list[int]] = defaultdict(list)
    times: dict[tuple, list[dt.datetime]] = defaultdict(list)
    v = {c: column(c, "kpi_values") for c in ("name", "definition_hash", "run_id", "computed_at")}
    for r in before["kpi_values"]:
        key = (r[v["name"]], r[v["definition_hash"]])
        runs[key].append(r[v["run_id"]])
        times[key].append(r[v["computed_at"]])
    c = {n: column(n, "kpi_catalog") for n in ("name", "definition_hash", "updated_at")}
    for r in before["kpi_catalog"]:
        times[(r[c["name"]], r[c["definition_hash"]])].append(r[c["updated_at"]])
    return ordered((*key, min(runs[key]) if runs[key] else None, min(at), max(at)) for key, at in times.items())


def catalog(state: dict[str, list[tuple]]) -> dict[str, tuple[str, dt.datetime]]:
    """name -> (definition_hash, updated_at) of the catalog in `state`."""
    c = {n: column(n, "kpi_catalog") for n in ("name", "definition_hash", "updated_at")}
    return {r[c["name"]]: (r[c["definition_hash"]], r[c["updated_at"]]) for r in state["kpi_catalog"]}


def without(rows: list[tuple], table: str, names: set[str]) -> list[tuple]:
    i = column("name", table) if table in V1 and "name" in dict(V1[table]["columns"]) else None
    return rows if i is None else [r for r in rows if r[i] not in names]


def schema_version(state: dict[str, list[tuple]]) -> int | None:
    return migrations.parse_version([v for k, v in state["kpi_meta"] if k == migrations.VERSION_KEY])


# --- the tests -----------------------------------------------------------------------------------

def test_the_fixture_is_version_1_and_the_migrations_reach_the_code():
    assert V1["kpi_meta"]["rows"] == [["schema_version", "1"]]
    assert [m.version for m in migrations.MIGRATIONS] == list(range(2, tables.SCHEMA_VERSION + 1))
    assert migrations.pending(1, SCHEMA) == migrations.MIGRATIONS
    assert migrations.pending(tables.SCHEMA_VERSION, SCHEMA) == ()
    # the fixture is what this test file expects of it: every table has rows, and a KPI without values
    assert all(V1[n]["rows"] for n in V1)
    assert set(catalog({"kpi_catalog": v1_rows("kpi_catalog")})) - {r[0] for r in v1_rows("kpi_values")} == {"gift_cards"}


def test_a_new_warehouse_starts_at_the_current_version(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURE / "project", root)
    (root / "profiles.yml").write_text(engines.duckdb_engine().profiles_yml(root, "shop"))
    for start, end, seed, first_id in ORDERS:
        insert_orders(root, make_orders(start, end, seed=seed, first_id=first_id))
    result = Project.load(root).run(as_of=AS_OF)
    assert result.status == "success", result.message
    wh = V1Warehouse.__new__(V1Warehouse)
    wh.root, wh.engine = root, engines.duckdb_engine()
    state = wh.tables()
    # the version, and the project that owns the schema (SPEC §11: one output schema, one project)
    assert state["kpi_meta"] == ordered([(migrations.VERSION_KEY, str(tables.SCHEMA_VERSION)), (OWNER_KEY, "shop")])
    # one row per KPI: its hash, first and last seen by this run
    assert state["kpi_definitions"] == ordered((n, h, result.run_id, at, at) for n, (h, at) in catalog(state).items())


def test_a_version_1_warehouse_upgrades_in_place(v1):
    before = v1.tables()
    assert {n: before[n] for n in V1} == {n: v1_rows(n) for n in V1}, "the warehouse does not hold the fixture"
    assert before["kpi_definitions"] is None and before["kpi_forecast"] is None
    v1_hash = {n: h for n, (h, _) in catalog(before).items()}

    # a run of one new KPI: the migration, then nothing but that KPI's rows changes
    v1.set_kpis(v1.kpis() + BUYERS)
    result = v1.run("buyers")
    after = v1.tables()
    for name in V1_TABLES:
        if name == "kpi_runs":
            assert after[name][:len(before[name])] == before[name]
            assert [r[0] for r in after[name][len(before[name]):]] == [result.run_id]
        else:
            assert without(after[name], name, {"buyers"}) == before[name], name
    assert schema_version(after) == tables.SCHEMA_VERSION
    if v1.engine.name != "spark":  # an updated row; on Spark kpi_meta is a log whose highest version counts
        # version 1 recorded no owner: the first run adopts the schema
        assert after["kpi_meta"] == ordered([(migrations.VERSION_KEY, str(tables.SCHEMA_VERSION)), (OWNER_KEY, "shop")])
    # kpi_forecast: the run's forecasts, of the one KPI it published (test_forecast.py checks their values)
    assert {r[0] for r in after["kpi_forecast"]} == {"buyers"}
    buyers_hash, buyers_at = catalog(after)["buyers"]
    assert after["kpi_definitions"] == ordered(backfilled(before) + [("buyers", buyers_hash, result.run_id, buyers_at, buyers_at)])
    # what the backfill tells of this fixture: revenue's first run is the first run (the incremental runs kept
    # its early rows); completed_share's is the run that changed its definition (its first hash is lost);
    # gift_cards, without values, has no known first run
    first = {r[0]: r[2] for r in after["kpi_definitions"]}
    runs = [r[0] for r in before["kpi_runs"]]
    assert first["revenue"] == min(runs) and first["completed_share"] == max(runs) and first["gift_cards"] is None

    # the whole project: every KPI published again is seen again
    upgraded = after
    second = v1.run()
    after = v1.tables()
    hashes = catalog(after)
    assert set(hashes) == set(v1_hash) | {"buyers"}
    expected = []
    old = {(r[0], r[1]): r for r in upgraded["kpi_definitions"]}
    for name, (h, at) in hashes.items():
        row = old.get((name, h))
        expected.append((name, h, row[2], row[3], at) if row else (name, h, second.run_id, at, at))
    # a KPI whose hash today's code computes differently from version 1's keeps its old row as it was
    expected += [r for key, r in old.items() if hashes[key[0]][0] != key[1]]
    assert after["kpi_definitions"] == ordered(expected)
    assert {r[0] for r in after["kpi_forecast"]} == {"revenue", "completed_share", "revenue_growth", "buyers"}

    # revenue's definition changes: a new row, and the old hash keeps its first and last run; buyers leaves the
    # project, and kpi_definitions with it
    seen = after
    assert REVENUE_FILTER in v1.kpis() and BUYERS in v1.kpis()
    v1.set_kpis(v1.kpis().replace(REVENUE_FILTER, "filter: status not in ('returned', 'cancelled')").replace(BUYERS, ""))
    third = v1.run()
    after = v1.tables()
    hashes, was = catalog(after), catalog(seen)
    assert set(hashes) == set(was) - {"buyers"}
    changed = {n for n in hashes if hashes[n][0] != was[n][0]}
    assert changed == {"revenue", "revenue_growth"}  # revenue_growth is derived from it
    previous = {(r[0], r[1]): r for r in seen["kpi_definitions"] if r[0] != "buyers"}
    new_rows = [(n, hashes[n][0], third.run_id, hashes[n][1], hashes[n][1]) for n in sorted(changed)]
    again = [(*previous[(n, h)][:4], hashes[n][1]) for n, (h, _) in hashes.items() if n not in changed]
    kept = [r for (n, h), r in previous.items() if n in changed or h != hashes[n][0]]
    assert after["kpi_definitions"] == ordered(new_rows + again + kept)
    assert len([r for r in after["kpi_definitions"] if r[0] == "revenue"]) == len([r for r in seen["kpi_definitions"] if r[0] == "revenue"]) + 1
    assert "buyers" in {r[0] for r in seen["kpi_definitions"]} and "buyers" not in {r[0] for r in after["kpi_definitions"]}
    assert "buyers" not in {r[0] for r in after["kpi_forecast"]}


def test_a_version_2_warehouse_upgrades_in_place(v1):
    v1.to_version_2()
    before = v1.tables()
    assert {n: before[n] for n in V1 if n != "kpi_meta"} == {n: v1_rows(n) for n in V1 if n != "kpi_meta"}
    assert schema_version(before) == 2 and before["kpi_definitions"] == backfilled(before)
    assert before["kpi_forecast"] is None

    v1.set_kpis(v1.kpis() + BUYERS)
    result = v1.run("buyers")
    after = v1.tables()
    assert_kept_but_buyers(before, after, result.run_id, [*V1_TABLES, tables.DEFINITIONS.name])
    assert schema_version(after) == tables.SCHEMA_VERSION
    buyers_hash, buyers_at = catalog(after)["buyers"]
    assert [r for r in after["kpi_definitions"] if r[0] == "buyers"] == [("buyers", buyers_hash, result.run_id, buyers_at, buyers_at)]
    assert {r[0] for r in after["kpi_forecast"]} == {"buyers"}
    # the next run of the whole project forecasts every KPI
    v1.run()
    assert {r[0] for r in v1.tables([tables.FORECAST.name])["kpi_forecast"]} == {"revenue", "completed_share", "revenue_growth", "buyers"}


def test_a_warehouse_newer_than_the_code_is_refused(v1):
    newer = str(tables.SCHEMA_VERSION + 1)
    if v1.engine.name == "spark":  # kpi_meta takes no UPDATE there: a row more, as the migrations write it
        v1.execute(migrations.version_append(SCHEMA, tables.SCHEMA_VERSION + 1))
    else:
        v1.execute(migrations.version_update(SCHEMA, tables.SCHEMA_VERSION + 1))
    before, relations = v1.tables(), v1.relations()
    out = CliRunner().invoke(main, ["run", "--project-dir", str(v1.root), "--as-of", AS_OF.isoformat()])
    assert out.exit_code == 1, out.output
    assert "Traceback" not in out.output
    # the message names the warehouse's version, the code's, and what to do
    assert f"version {newer}" in out.output and f"version {tables.SCHEMA_VERSION}" in out.output
    assert "upgrade kpimetrics" in out.output.lower()
    assert v1.tables() == before and v1.relations() == relations


# --- killed while migrating ---------------------------------------------------------------------

RUN_SCRIPT = "import datetime, sys\nfrom kpimetrics import Project\nProject.load(sys.argv[1]).run(as_of=datetime.date.fromisoformat(sys.argv[2]))\n"


def run_process(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUN_SCRIPT, str(root), AS_OF.isoformat()], env={**os.environ, **env},
                          capture_output=True, text=True, cwd=Path(__file__).parent, timeout=300)


class Saved:
    """The version-1 warehouse saved and put back: the DuckDB file copied, or a PostgreSQL database recreated
    from a template of it."""

    def __init__(self, v1: V1Warehouse, request):
        self.v1 = v1
        if v1.engine.name == "postgres":
            self.server = request.getfixturevalue("pg_server")
            self.dbname = yaml.safe_load((v1.root / "profiles.yml").read_text())["shop"]["outputs"]["dev"]["dbname"]
            self._admin(f'CREATE DATABASE "{self.dbname}_v1" TEMPLATE "{self.dbname}"')
        else:
            shutil.copy(v1.root / "wh.duckdb", v1.root.parent / "v1.duckdb")

    def _admin(self, *statements: str) -> None:
        with self.server.connect() as con:
            for statement in statements:
                con.execute(statement)

    def restore(self) -> None:
        if self.v1.engine.name == "postgres":
            self._admin(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)',
                        f'CREATE DATABASE "{self.dbname}" TEMPLATE "{self.dbname}_v1"')
        else:
            shutil.copy(self.v1.root.parent / "v1.duckdb", self.v1.root / "wh.duckdb")
            (self.v1.root / "wh.duckdb.wal").unlink(missing_ok=True)


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_a_run_killed_while_migrating_leaves_version_1(engine, request, tmp_path, tmp_path_factory):
    v1 = V1Warehouse(tmp_path / "project", make_engine(engine, request, tmp_path_factory))
    v1.set_kpis(v1.kpis() + BUYERS)  # the run publishes something besides the migration
    before, relations = v1.tables(), v1.relations()
    saved = Saved(v1, request)
    log = tmp_path / "kill.log"
    done = run_process(v1.root, {faults.KILL_LOG: str(log)})
    assert done.returncode == 0, done.stderr
    upgraded = v1.tables([tables.DEFINITIONS.name])
    steps = faults.occurrences(log.read_text().split())
    # from the migration's first step to the commit: DuckDB at every one, PostgreSQL at the migration's own
    start, commit = steps.index("migrate.v2:1"), steps.index("publish.commit:1")
    killed = steps[start:commit + 1] if engine == "duckdb" else steps[start:start + 4] + [steps[commit]]
    assert len(killed) >= 4, killed
    for step in killed:
        saved.restore()
        proc = run_process(v1.root, {faults.KILL_AT: step})
        assert proc.returncode == -9, (step, proc.returncode, proc.stderr[-2000:])
        if engine == "postgres":
            wait_for_backends(saved)
        state = v1.tables()
        runs = state.pop("kpi_runs")
        assert state == {n: rows for n, rows in before.items() if n != "kpi_runs"}, step
        # kpi_runs is a log: the killed run's row, 'running', until the next run marks it aborted
        assert runs[:-1] == before["kpi_runs"] and runs[-1][3] == "running", step
        # and no table more, but the staging tables the next run drops
        assert [r for r in v1.relations() if not r.startswith("kpi_stage_")] == relations, step
    # the next run completes the upgrade, and marks the killed one aborted
    v1.run()
    after = v1.tables()
    assert schema_version(after) == tables.SCHEMA_VERSION
    assert after["kpi_forecast"] is not None
    assert [r[3] for r in after["kpi_runs"]][-2:] == ["aborted", "success"]
    assert {(r[0], r[1]) for r in after["kpi_definitions"]} == {(r[0], r[1]) for r in upgraded["kpi_definitions"]}


def wait_for_backends(saved: Saved) -> None:
    """The killed run's PostgreSQL backend ends (rolling back) once it sees its connection gone."""
    import time

    deadline = time.monotonic() + 30
    while True:
        with saved.server.connect(saved.dbname) as con:
            busy = con.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND application_name = 'kpimetrics' AND pid <> pg_backend_pid()").fetchall()[0][0]
        if not busy:
            return
        assert time.monotonic() < deadline, "the killed run's backend does not end"
        time.sleep(0.05)


class DiesAfter:
    """A checkpoint that raises at the n-th step after `after`: the driver dying there, in this process (a Spark
    run in a process of its own starts a JVM, which costs more than the whole migration)."""

    def __init__(self, after: str, n: int):
        self.after, self.n, self.count, self.died_at = after, n, None, None

    def __call__(self, name: str) -> None:
        if name == self.after:
            self.count = 0
        elif self.count is not None:
            self.count += 1
            if self.count == self.n:
                self.died_at = name
                raise RuntimeError(f"the driver died at {name}")


@pytest.mark.spark  # its engine is no parameter, so conftest cannot see it (tests/engines.py)
def test_a_spark_migration_killed_midway_is_completed_by_the_next_run(request, tmp_path, tmp_path_factory, monkeypatch):
    """Spark has no transaction: each step of a migration can run again, and kpi_meta says its version only at its end."""
    import kpimetrics.runner  # noqa: F401 — every module that calls checkpoint(), loaded so it can be patched

    v1 = V1Warehouse(tmp_path / "project", make_engine("spark", request, tmp_path_factory))
    v1.set_kpis(v1.kpis() + BUYERS)
    before = v1.tables()
    callers = [m for name, m in sys.modules.items() if name.startswith("kpimetrics")
               and getattr(m, "checkpoint", None) is faults.checkpoint]
    # the steps are the new versioned table, its backfill, its view, kpi_meta's new version: dies before the view
    # (the backfill written), then before kpi_meta's version (created again, written again, the view made)
    for n in (3, 4):
        dies = DiesAfter("migrate.v2", n)
        for module in callers:
            monkeypatch.setattr(module, "checkpoint", dies)
        with pytest.raises(RuntimeError, match="the driver died"):
            Project.load(v1.root).run(as_of=AS_OF)
        assert dies.died_at is not None
        state = v1.tables()
        assert {t: state[t] for t in V1} == {t: before[t] for t in V1}, n  # version 1's tables, kpi_meta's 1 included
        if state["kpi_definitions"] is not None:  # visible once its view is made: filled already
            assert state["kpi_definitions"] == backfilled(before), n
        assert state["kpi_forecast"] is None
    # migration 3's steps: the versioned table, its view, kpi_meta's version: dies before the view, version 2 complete
    dies = DiesAfter("migrate.v3", 2)
    for module in callers:
        monkeypatch.setattr(module, "checkpoint", dies)
    with pytest.raises(RuntimeError, match="the driver died"):
        Project.load(v1.root).run(as_of=AS_OF)
    state = v1.tables()
    assert {t: state[t] for t in V1_TABLES} == {t: before[t] for t in V1_TABLES}
    assert schema_version(state) == 2 and state["kpi_definitions"] == backfilled(before) and state["kpi_forecast"] is None
    monkeypatch.undo()
    result = v1.run("buyers")
    after = v1.tables()
    assert schema_version(after) == tables.SCHEMA_VERSION
    assert {r[0] for r in after["kpi_forecast"]} == {"buyers"}
    buyers_hash, buyers_at = catalog(after)["buyers"]
    assert after["kpi_definitions"] == ordered(backfilled(before) + [("buyers", buyers_hash, result.run_id, buyers_at, buyers_at)])


def assert_kept_but_buyers(before: dict, after: dict, run_id: int, names: list[str]) -> None:
    """Every row of `names` as it was, but for the run's own: buyers' rows, and the run's row in kpi_runs."""
    for name in names:
        if name == "kpi_runs":
            assert after[name][:len(before[name])] == before[name]
            assert [r[0] for r in after[name][len(before[name]):]] == [run_id]
        else:  # every table's name is its first column
            assert [r for r in after[name] if r[0] != "buyers"] == before[name], name


# --- version 4: kpi_notifications ------------------------------------------------------------------

def migrate_to(v1: V1Warehouse, version: int) -> None:
    """The warehouse as `version` left it: version 1's, upgraded by the migrations up to `version` as this engine's
    publisher applies them (as V1Warehouse.to_version_2 does for version 2)."""
    adapter = Project.load(v1.root).connect()
    try:
        def sql(tree: exp.Expression) -> str:
            return generate(tree, v1.dialect)

        def insert(table: tables.Table, query: exp.Query) -> None:
            columns = [exp.to_identifier(c, quoted=True) for c in table.column_names]
            adapter.execute(sql(exp.Insert(this=exp.Schema(this=qualified(SCHEMA, table.name), expressions=columns),
                                           expression=query)))

        wh = Warehouse(adapter, SCHEMA, sql, lambda t: adapter.execute(sql(t)), lambda t: adapter.fetchall(sql(t)),
                       insert, "shop")
        publisher = PUBLISHERS[adapter.capabilities.publish](wh)
        steps = tuple(m for m in migrations.MIGRATIONS if m.version <= version)
        if adapter.capabilities.publish == "transaction":
            adapter.begin()
            publisher._migrate(steps)
            adapter.commit()
        else:
            publisher._migrate(steps)
    finally:
        adapter.close()


NOTIFY_YML = """notify:
  channels:
    - {name: hook, type: webhook, format: json, url: "{{ env_var('KPI_TEST_HOOK_URL') }}"}
  rules:
    - {when: [on_track, at_risk, off_track, no_target, no_data], channels: [hook]}
"""
LOG_COLUMNS = ("name", "grain", "period_start", "status", "channel", "recipient", "outcome")


def notification_log(v1: V1Warehouse) -> list[tuple]:
    adapter = Project.load(v1.root).connect()
    try:
        query = exp.select(*[exp.column(c, quoted=True) for c in LOG_COLUMNS]).from_(
            qualified(SCHEMA, tables.NOTIFICATIONS.name))
        return ordered(adapter.fetchall(generate(query, v1.dialect)))
    finally:
        adapter.close()


def test_a_version_3_warehouse_upgrades_to_4_and_notify_logs_into_it(v1, monkeypatch):
    from test_notify import Catcher

    migrate_to(v1, 3)
    names = [*V1_TABLES, "kpi_meta", tables.DEFINITIONS.name, tables.FORECAST.name, tables.NOTIFICATIONS.name]
    before = v1.tables(names)
    assert schema_version(before) == 3 and before["kpi_notifications"] is None
    assert before["kpi_definitions"] == backfilled(before)

    v1.set_kpis(v1.kpis() + BUYERS)
    result = v1.run("buyers")
    after = v1.tables(names)
    assert_kept_but_buyers(before, after, result.run_id, [*V1_TABLES, tables.DEFINITIONS.name])
    assert schema_version(after) == tables.SCHEMA_VERSION >= 4
    assert after["kpi_notifications"] == []
    # a plain table on every engine: on Spark no versioned table behind a view
    assert tables.NOTIFICATIONS.name in v1.relations() and "kpi_notifications__versions" not in v1.relations()

    # notify appends to it (in a transaction of its own, or on Spark by one append), once per notice
    catcher = Catcher()
    try:
        monkeypatch.setenv("KPI_TEST_HOOK_URL", catcher.url("/hooks/migrated"))
        config = v1.root / "kpimetrics.yml"
        config.write_text(config.read_text() + NOTIFY_YML)
        out = CliRunner().invoke(main, ["notify", "--project-dir", str(v1.root)])
        assert out.exit_code == 0, out.output
        (body,) = catcher.by_path("/hooks/migrated")
        sent = ordered((n["name"], n["grain"], dt.date.fromisoformat(n["period_start"]), n["status"], "hook", "", "sent")
                       for n in body["notices"])
        assert {r[0] for r in sent} == {"revenue", "completed_share", "revenue_growth", "buyers"}  # gift_cards: no value
        assert notification_log(v1) == sent
        # a later run of the whole project leaves the log as it was; a second notify sends only what is new (a
        # status today's code judges otherwise), never a notice logged as sent
        v1.run()
        assert notification_log(v1) == sent
        out = CliRunner().invoke(main, ["notify", "--project-dir", str(v1.root)])
        assert out.exit_code == 0, out.output
        again = [(n["name"], n["grain"], dt.date.fromisoformat(n["period_start"]), n["status"], "hook", "", "sent")
                 for _, b in catcher.received[1:] for n in b["notices"]]
        assert not set(again) & set(sent)
        assert notification_log(v1) == ordered(sent + again)
    finally:
        catcher.close()


# --- version 5: kpi_slice_members ------------------------------------------------------------------

BUYERS_BY_COMBINATION = BUYERS.replace("    target: 40\n", "    target: 40\n    dimensions: [[region, channel]]\n")


def test_a_version_4_warehouse_upgrades_to_5_and_combinations_fill_kpi_slice_members(v1):
    migrate_to(v1, 4)
    names = [*V1_TABLES, "kpi_meta", tables.DEFINITIONS.name, tables.FORECAST.name, tables.SLICE_MEMBERS.name]
    before = v1.tables(names)
    assert schema_version(before) == 4 and before["kpi_slice_members"] is None
    assert before["kpi_definitions"] == backfilled(before)

    assert BUYERS_BY_COMBINATION != BUYERS
    v1.set_kpis(v1.kpis() + BUYERS_BY_COMBINATION)
    result = v1.run("buyers")
    after = v1.tables(names)
    assert_kept_but_buyers(before, after, result.run_id, [*V1_TABLES, tables.DEFINITIONS.name, tables.FORECAST.name])
    assert schema_version(after) == tables.SCHEMA_VERSION >= 5
    # the combination's members, one row per slice and member: the orders' (region, channel) pairs
    import duckdb
    con = duckdb.connect(str(v1.root / "wh.duckdb"), read_only=True)
    try:
        pairs = con.execute("select distinct coalesce(region, '(null)'), coalesce(channel, '(null)') "
                            "from main.orders").fetchall()
    finally:
        con.close()
    members = after["kpi_slice_members"]
    assert {r[0] for r in members} == {"buyers"} and {r[1] for r in members} == {"region × channel"}
    by_slice = defaultdict(dict)
    for _, _, value, member, member_value in members:
        by_slice[value][member] = member_value
    assert sorted((m["region"], m["channel"]) for m in by_slice.values()) == sorted(pairs)
    assert len(members) == 2 * len(pairs)


# --- version 6: kpi_catalog.metric, the first column a migration adds ---------------------------

def catalog_columns(v1: V1Warehouse) -> list[str]:
    adapter = Project.load(v1.root).connect()
    try:
        return adapter.columns(SCHEMA, tables.CATALOG.name) or []
    finally:
        adapter.close()


def test_added_columns_are_declared_last_in_their_order():
    """An upgraded warehouse has the columns of a new one, in the same order: ALTER TABLE adds at the end."""
    for table in tables.ALL_TABLES:
        added = migrations.added_columns(table)
        assert tuple(table.column_names[len(table.column_names) - len(added):]) == added, table.name
    assert migrations.added_columns(tables.CATALOG) == ("metric", "status_hash")


def test_a_version_5_warehouse_upgrades_to_6_and_kpi_catalog_gains_its_metric_column(v1):
    migrate_to(v1, 5)
    names = [*V1_TABLES, "kpi_meta", tables.DEFINITIONS.name, tables.FORECAST.name]
    before = v1.tables(names)
    assert schema_version(before) == 5 and "metric" not in catalog_columns(v1)
    # read by this release before a run upgrades it: the new column NULL, every row as it is
    with Project.load(v1.root).outputs() as reader:
        read = reader.catalog()
    assert [r.name for r in read] == sorted(catalog(before)) and {r.metric for r in read} == {None}

    v1.set_kpis(v1.kpis() + BUYERS)
    result = v1.run("buyers")
    after = v1.tables(names)
    assert_kept_but_buyers(before, after, result.run_id, [*V1_TABLES, tables.DEFINITIONS.name, tables.FORECAST.name])
    assert schema_version(after) == tables.SCHEMA_VERSION >= 6
    # the table a BI tool reads has the column where a new warehouse has it: last
    assert catalog_columns(v1) == tables.CATALOG.column_names
    with Project.load(v1.root).outputs() as reader:
        read = {r.name: r for r in reader.catalog()}
    assert set(read) == set(catalog(before)) | {"buyers"}
    # no KPI of this project is a metric KPI: NULL in the kept rows and in the run's own
    assert {r.metric for r in read.values()} == {None} and read["buyers"].updated_at == catalog(after)["buyers"][1]
    v1.run()  # a run of the whole project rewrites every catalog row, with the column
    with Project.load(v1.root).outputs() as reader:
        assert {r.metric for r in reader.catalog()} == {None}


@pytest.mark.spark  # its engine is no parameter, so conftest cannot see it (tests/engines.py)
def test_a_spark_column_migration_killed_after_the_column_is_added_is_completed(request, tmp_path, tmp_path_factory,
                                                                                monkeypatch):
    """The column is on the versions beneath the view, the view not made again yet: the next run finds the column
    there, adds nothing, makes the view and says version 6."""
    import kpimetrics.runner  # noqa: F401 — every module that calls checkpoint(), loaded so it can be patched

    v1 = V1Warehouse(tmp_path / "project", make_engine("spark", request, tmp_path_factory))
    migrate_to(v1, 5)
    before = v1.tables()
    callers = [m for name, m in sys.modules.items() if name.startswith("kpimetrics")
               and getattr(m, "checkpoint", None) is faults.checkpoint]
    dies = DiesAfter("migrate.v6", 2)  # its steps: ALTER TABLE, the view made again, kpi_meta's version
    for module in callers:
        monkeypatch.setattr(module, "checkpoint", dies)
    with pytest.raises(RuntimeError, match="the driver died"):
        Project.load(v1.root).run(as_of=AS_OF)
    assert dies.died_at is not None
    adapter = Project.load(v1.root).connect()
    try:
        assert "metric" in adapter.columns(SCHEMA, "kpi_catalog__versions")
        assert "metric" not in adapter.columns(SCHEMA, tables.CATALOG.name)  # the view as version 5 made it
    finally:
        adapter.close()
    state = v1.tables()
    assert schema_version(state) == 5 and {t: state[t] for t in V1_TABLES} == {t: before[t] for t in V1_TABLES}
    monkeypatch.undo()
    v1.run()
    assert schema_version(v1.tables()) == tables.SCHEMA_VERSION and catalog_columns(v1) == tables.CATALOG.column_names
