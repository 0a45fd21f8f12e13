"""PostgreSQL, for real: a throwaway server (tests/pg_server.py), one new database per test.

The demo project seeded and run on PostgreSQL equals the same project on DuckDB; an
incremental run equals a full refresh; publishing is one transaction (a failing KPI
keeps its rows, a crash while publishing changes nothing); a second run fails naming
the advisory lock; the password never shows; sources and outputs in schemas and
tables whose names need quotes.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from click.testing import CliRunner
from psycopg import sql

import engines
from kpimetrics import Project
from kpimetrics.adapters import connect
from kpimetrics.cli import main
from kpimetrics.config import PostgresOutput
from kpimetrics.errors import WarehouseError
from kpimetrics.runner import Runner
from kpimetrics.scaffold import init_project

AS_OF = dt.date(2026, 11, 21)  # the demo data ends on 2026-10-31
RUN_COLUMNS = {"run_id", "computed_at", "updated_at", "started_at", "finished_at"}
OUTPUTS = ("kpi_catalog", "kpi_strategy", "kpi_values", "kpi_status", "kpi_targets", "kpi_check_ins")


class Pg:
    """One fresh database on the session's server, and its profile output."""

    def __init__(self, server):
        self.server = server
        self.output = engines.postgres_engine(server).output(Path("."))
        self.dbname = self.output["dbname"]

    def sql(self, query, params=None) -> list[tuple]:
        with self.server.connect(self.dbname) as con:
            cur = con.execute(query, params)
            return cur.fetchall() if cur.description else []

    def table(self, schema: str, name: str, drop=RUN_COLUMNS) -> list[dict]:
        with self.server.connect(self.dbname) as con:
            cur = con.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, name)))
            cols = [d.name for d in cur.description]
            return _rows(cols, cur.fetchall(), drop)


@pytest.fixture
def pg(pg_server) -> Pg:
    return Pg(pg_server)


def _rows(cols: list[str], rows, drop) -> list[dict]:
    out = [{c: v for c, v in zip(cols, r) if c not in drop} for r in rows]
    return sorted(out, key=lambda r: tuple((v is None, str(v)) for v in r.values() if not isinstance(v, float)))


def assert_same_tables(expected: dict[str, list[dict]], actual: dict[str, list[dict]]) -> None:
    """Equal rows, floats within 1e-9 relative."""
    for name in expected:
        exp_rows, act_rows = expected[name], actual[name]
        assert len(exp_rows) == len(act_rows), f"{name}: {len(exp_rows)} rows expected, {len(act_rows)} found"
        for e, a in zip(exp_rows, act_rows):
            assert e.keys() == a.keys(), name
            for k in e:
                same = (math.isclose(e[k], a[k], rel_tol=1e-9, abs_tol=1e-12)
                        if isinstance(e[k], float) and isinstance(a[k], float) else e[k] == a[k])
                assert same, f"{name}.{k}: expected {e[k]!r}, got {a[k]!r} in {a}"


def demo_project(tmp_path: Path, pg: Pg) -> Path:
    """`kpimetrics init demo`, with a `pg` target beside its DuckDB one; sources in the target's default schema."""
    root = init_project("demo", tmp_path)
    profiles = yaml.safe_load((root / "profiles.yml").read_text())
    profiles["demo"]["outputs"]["pg"] = pg.output
    (root / "profiles.yml").write_text(yaml.safe_dump(profiles))
    sources = root / "sources.yml"
    sources.write_text(sources.read_text().replace("    schema: main\n", ""))
    return root


def cli(root: Path, *args: str, target: str = "pg"):
    return CliRunner().invoke(main, [*args, "--project-dir", str(root), "--target", target])


def pg_outputs(pg: Pg, schema: str = "kpi") -> dict[str, list[dict]]:
    return {t: pg.table(schema, t) for t in OUTPUTS}


# --- the demo, as a new user runs it ------------------------------------------------------------

def test_demo_on_postgres_equals_duckdb(tmp_path, pg):
    import duckdb

    root = demo_project(tmp_path, pg)
    for target in ("dev", "pg"):
        out = cli(root, "seed", target=target)
        assert out.exit_code == 0, out.output
        assert "loaded 4750 rows into" in out.output
        out = cli(root, "run", "--as-of", AS_OF.isoformat(), target=target)
        assert out.exit_code == 0, out.output
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        on_duckdb = {}
        for t in OUTPUTS:
            cur = con.execute(f"SELECT * FROM kpi.{t}")
            on_duckdb[t] = _rows([d[0] for d in cur.description], cur.fetchall(), RUN_COLUMNS)
        # seeds get the same column types on both engines
        for table in ("orders", "support_tickets", "customers"):
            duck = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                    "WHERE table_name = ? ORDER BY ordinal_position", [table]).fetchall())
            on_pg = dict(pg.sql("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position", [table]))
            assert duck.keys() == on_pg.keys()
            assert all(engines.is_type("postgres", on_pg[c], duck[c]) for c in duck), (duck, on_pg)
    finally:
        con.close()
    assert len(on_duckdb["kpi_values"]) > 1000
    assert_same_tables(on_duckdb, pg_outputs(pg))
    status = cli(root, "status", "--format", "json")
    assert status.exit_code == 0, status.output
    assert {r["name"]: r["status"] for r in json.loads(status.output)}["net_revenue"] == "at_risk"


def test_seed_types_and_values(tmp_path, pg):
    root = demo_project(tmp_path, pg)
    for f in (root / "seeds").glob("*.csv"):
        f.unlink()
    (root / "seeds" / "mixed.csv").write_text(
        "id,amount,day,at,at_tz,flag,note\n"
        '1,2.5,2026-01-31,2026-01-31 23:30:00,2026-01-31 23:30:00+02,true,"a, ""quoted"" note"\n'
        "2,,2026-02-01,,2026-02-01 00:00:00-05,false,\n"
    )
    (root / "kpimetrics.yml").write_text((root / "kpimetrics.yml").read_text() + "seed_schema: Raw Seeds\n")
    out = cli(root, "seed")
    assert out.exit_code == 0, out.output
    assert "loaded 2 rows into Raw Seeds.mixed" in out.output
    types = dict(pg.sql("SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = 'Raw Seeds' AND table_name = 'mixed'"))
    assert types == {"id": "bigint", "amount": "double precision", "day": "date", "at": "timestamp without time zone",
                     "at_tz": "timestamp with time zone", "flag": "boolean", "note": "text"}
    rows = pg.sql('SELECT id, amount, day, at, at_tz, flag, note FROM "Raw Seeds".mixed ORDER BY id')
    utc = dt.timezone.utc
    assert rows == [
        (1, 2.5, dt.date(2026, 1, 31), dt.datetime(2026, 1, 31, 23, 30), dt.datetime(2026, 1, 31, 21, 30, tzinfo=utc),
         True, 'a, "quoted" note'),
        (2, None, dt.date(2026, 2, 1), None, dt.datetime(2026, 2, 1, 5, 0, tzinfo=utc), False, None),
    ]
    # seeding again replaces the table
    assert cli(root, "seed").exit_code == 0
    assert pg.sql('SELECT count(*) FROM "Raw Seeds".mixed') == [(2,)]


# --- incremental runs and atomic publishing ------------------------------------------------------

def _add_orders(pg: Pg, rows: list[tuple]) -> None:
    with pg.server.connect(pg.dbname) as con, con.cursor() as cur:
        cur.executemany("INSERT INTO public.orders (order_id, customer_id, ordered_at, region, channel, amount, "
                        "discount, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)


@pytest.mark.parametrize("late_rows", [None, "1 day"])
def test_incremental_run_equals_full_refresh(tmp_path, pg, late_rows):
    root = demo_project(tmp_path, pg)
    if late_rows:  # pre-aggregates by day, read again from the newest kept day less a day
        config = root / "kpimetrics.yml"
        config.write_text(config.read_text().replace("  lookback: 1", f"  late_rows: {late_rows}\n  lookback: 1", 1))
    assert cli(root, "seed").exit_code == 0
    project = Project.load(root, target="pg")
    assert project.run(as_of=dt.date(2026, 10, 20)).status == "success"
    newest = pg.sql("SELECT max(ordered_at)::date FROM public.orders")[0][0]
    # a late order in the last computed month, and a new month
    _add_orders(pg, [(900001, 5, dt.datetime(2026, 10, 30, 9), "north", "web", 120.0, 0.0, "completed"),
                     (900002, 6, dt.datetime(2026, 11, 3, 9), None, "mobile", 80.0, 5.0, "completed"),
                     (900003, 7, dt.datetime(2026, 11, 4, 9), "south", "mobile", 60.0, 0.0, "returned")])
    result = project.run(as_of=AS_OF)
    assert result.status == "success"
    assert {k.mode for k in result.kpis} == {"incremental"}
    # the orders scan's trailing window took its earlier months from the pre-aggregate the first run kept
    kept = [s for s in result.statements if s.startswith('INSERT INTO "kpi"."kpi_stage_') and '"kpi"."kpi_partials_' in s]
    assert any('"orders"' in s and "revenue_trailing_3m" in s for s in kept)
    if late_rows:
        pres = [s for s in result.statements if s.startswith('CREATE TABLE "kpi"."kpi_stage_pp_') and "orders" in s]
        since = f"ordered_at >= CAST('{newest - dt.timedelta(days=1)}' AS DATE)"
        assert pres and all(since in s for s in pres), (since, pres)
    incremental = pg_outputs(pg)
    assert project.run(full_refresh=True, as_of=AS_OF).status == "success"
    assert_same_tables(pg_outputs(pg), incremental)
    assert pg.sql("SELECT value FROM kpi.kpi_values WHERE name = 'net_revenue' AND grain = 'month' "
                  "AND dimension = '' AND period_start = DATE '2026-11-01'") == [(80.0 - 5.0,)]  # amount - discount, not returned


CODE_KPI = """
sources:
  - name: ops
    tables:
      - name: codes
kpis:
  - name: code_total
    owner: vp-sales@acme.example
    strategy: grow_repeat_purchases
    indicator: leading
    actions: Check the codes
    model: source('ops', 'codes')
    time: at
    measure: sum(cast(code as integer))
    target: 100
"""


def test_a_failing_kpi_keeps_its_rows_and_the_others_publish(tmp_path, pg):
    root = demo_project(tmp_path, pg)
    (root / "kpis" / "codes.yml").write_text(CODE_KPI)
    assert cli(root, "seed").exit_code == 0
    pg.sql("CREATE TABLE public.codes (at timestamp, code text)")
    pg.sql("INSERT INTO public.codes VALUES ('2026-09-01 10:00', '5'), ('2026-10-01 10:00', '7')")
    project = Project.load(root, target="pg")
    assert project.run(as_of=AS_OF).status == "success"
    before = pg.table("kpi", "kpi_values", drop=())
    before_code = [r for r in before if r["name"] == "code_total"]
    assert [r["value"] for r in before_code] == [5.0, 7.0]

    pg.sql("INSERT INTO public.codes VALUES ('2026-10-02 10:00', 'abc')")
    _add_orders(pg, [(900001, 5, dt.datetime(2026, 10, 30, 9), "north", "web", 120.0, 0.0, "completed")])
    result = project.run(as_of=AS_OF)
    assert result.status == "partial"
    bad = next(k for k in result.kpis if k.name == "code_total")
    assert 'invalid input syntax for type integer: "abc"' in bad.error  # PostgreSQL's own message
    after = pg.table("kpi", "kpi_values", drop=())
    assert [r for r in after if r["name"] == "code_total"] == before_code
    assert pg.sql("SELECT run_id FROM kpi.kpi_values WHERE name = 'net_revenue' AND grain = 'month' "
                  "AND dimension = '' AND period_start = DATE '2026-10-01'") == [(2,)]
    assert pg.sql("SELECT run_id, status, kpis_failed FROM kpi.kpi_runs ORDER BY run_id") == [
        (1, "success", 0), (2, "partial", 1)]


@pytest.mark.parametrize("exc, status", [(RuntimeError("disk full"), "error"), (KeyboardInterrupt(), "aborted")])
def test_a_crash_while_publishing_changes_nothing(tmp_path, pg, monkeypatch, exc, status):
    root = demo_project(tmp_path, pg)
    assert cli(root, "seed").exit_code == 0
    project = Project.load(root, target="pg")
    assert project.run(as_of=dt.date(2026, 10, 20)).status == "success"
    before = {t: pg.table("kpi", t, drop=()) for t in OUTPUTS}
    original = Runner.insert

    def insert_then_crash(self, table, query):
        original(self, table, query)
        if table.name == "kpi_values":  # old rows deleted, new ones in: inside the open transaction
            raise exc

    monkeypatch.setattr(Runner, "insert", insert_then_crash)
    with pytest.raises(type(exc)):
        project.run(as_of=AS_OF)
    assert {t: pg.table("kpi", t, drop=()) for t in OUTPUTS} == before
    assert pg.sql("SELECT status FROM kpi.kpi_runs WHERE run_id = 2") == [(status,)]
    assert pg.sql("SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'kpi_stage%%'") == [(0,)]
    monkeypatch.undo()
    assert project.run(as_of=AS_OF).run_id == 3


# --- the run lock ---------------------------------------------------------------------------------

def test_a_second_run_fails_at_once_naming_the_lock(tmp_path, pg):
    root = demo_project(tmp_path, pg)
    assert cli(root, "seed").exit_code == 0
    holder = Project.load(root, target="pg").connect()  # stands in for a run in progress
    try:
        holder.lock("kpi")
        pid = holder.fetchall("SELECT pg_backend_pid()")[0][0]
        out = cli(root, "run", "--as-of", AS_OF.isoformat())
        assert out.exit_code == 1, out.output
        text = " ".join(out.output.split())
        assert f"advisory lock 'kpimetrics:{pg.dbname}.kpi'" in text
        assert f"held by PostgreSQL backend pid {pid}" in text and "Traceback" not in text
        # another output schema is another lock
        holder2 = Project.load(root, target="pg").connect()
        holder2.lock("kpi_other")
        holder2.close()
    finally:
        holder.close()  # the lock goes with the session
    out = cli(root, "run", "--as-of", AS_OF.isoformat())
    assert out.exit_code == 0, out.output


# --- secrets ----------------------------------------------------------------------------------------

def test_password_never_in_errors_or_target(tmp_path, pg, monkeypatch):
    root = demo_project(tmp_path, pg)
    password = pg.server.password
    # a wrong password: the connection error names the server, never the password
    monkeypatch.setenv(engines.PG_PASSWORD_ENV, "wrong-" + password)
    out = cli(root, "debug")
    assert out.exit_code == 1
    assert "password authentication failed" in out.output and "wrong-" not in out.output
    monkeypatch.setenv(engines.PG_PASSWORD_ENV, password)
    out = cli(root, "debug")
    assert out.exit_code == 0, out.output
    assert f"connection: OK (postgres" in out.output and password not in out.output
    # a secret that ends up inside SQL (here as a schema name) is scrubbed from every message and file
    monkeypatch.setenv("SHOP_SCHEMA", password)
    sources = root / "sources.yml"
    sources.write_text(sources.read_text().replace(
        "  - name: shop\n", "  - name: shop\n    schema: \"{{ env_var('SHOP_SCHEMA') }}\"\n"))
    assert cli(root, "seed").exit_code == 0
    out = cli(root, "run", "--as-of", AS_OF.isoformat())
    assert out.exit_code == 1 and "does not exist" in out.output
    assert password not in out.output
    written = [p for p in (root / "target").rglob("*") if p.is_file()]
    assert written and not [p for p in written if password in p.read_text()]
    results = json.loads((root / "target" / "run_results.json").read_text())
    assert "****" in json.dumps(results)
    assert not pg.sql("SELECT message FROM kpi.kpi_runs WHERE position(%s in coalesce(message, '')) > 0", [password])
    # describe() names the connection without the password
    adapter = connect(PostgresOutput(**{**pg.output, "user": pg.server.user, "password": password}), root, "UTC")
    try:
        assert password not in adapter.describe() and pg.dbname in adapter.describe()
    finally:
        adapter.close()


def test_unknown_calendar_time_zone_is_a_clear_error(pg, tmp_path):
    output = PostgresOutput(**{**pg.output, "user": pg.server.user, "password": pg.server.password})
    with pytest.raises(WarehouseError, match="PostgreSQL does not know the calendar time zone 'Mars/Olympus'"):
        connect(output, tmp_path, "Mars/Olympus")


def test_jit_is_off_in_kpimetrics_session_alone(pg, tmp_path):
    """The generated statements are huge plans run once: no LLVM compile for them (bench/RESULTS.md, PostgreSQL),
    and the server's default, which other clients see, is left alone."""
    output = PostgresOutput(**{**pg.output, "user": pg.server.user, "password": pg.server.password})
    adapter = connect(output, tmp_path, "UTC")
    try:
        assert adapter.fetchall("SHOW jit") == [("off",)]
    finally:
        adapter.close()
    assert pg.sql("SHOW jit") == pg.sql("SELECT boot_val FROM pg_settings WHERE name = 'jit'") == [("on",)]


# --- schemas and identifiers that need quotes --------------------------------------------------------

QUOTED_PROJECT = {
    "kpimetrics.yml": "name: quoted\nprofile: p\noutput_schema: KPI Out\ncalendar: {timezone: Europe/Paris}\n",
    "strategy.yml": """
mission: Quote everything
priorities:
  - name: p1
    owner: a@example.com
    strategies:
      - {name: s1, owner: a@example.com}
""",
    "sources.yml": """
sources:
  - name: shop
    schema: Shop Data
    tables:
      - name: lines
        identifier: Order Lines
""",
    "kpis/k.yml": """
kpis:
  - name: net_amount
    owner: a@example.com
    strategy: s1
    indicator: leading
    actions: Look
    model: source('shop', 'lines')
    time: '"Ordered At"'
    measure: sum("Net Amount")
    filter: '"Order Status" <> ''void'''
    dimensions: ['"Region"']
    grain: [day, month]
    target: 10
""",
}


def test_sources_and_outputs_in_schemas_that_need_quotes(tmp_path, pg):
    for rel, text in QUOTED_PROJECT.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "profiles.yml").write_text(yaml.safe_dump({"p": {"target": "pg", "outputs": {"pg": pg.output}}}))
    pg.sql('CREATE SCHEMA "Shop Data"')
    pg.sql('CREATE TABLE "Shop Data"."Order Lines" ("Ordered At" timestamptz, "Net Amount" integer, '
           '"Order Status" text, "Region" text)')
    pg.sql("""INSERT INTO "Shop Data"."Order Lines" VALUES
        ('2026-01-31 22:30:00+00', 7, 'ok', 'North'),   -- 23:30 in Paris: January
        ('2026-01-31 23:30:00+00', 5, 'ok', NULL),      -- 00:30 on 1 February in Paris
        ('2026-02-10 12:00:00+00', 3, 'void', 'North'),
        ('2026-02-11 12:00:00+00', 2, 'ok', 'North'),
        (NULL, 100, 'ok', 'North')""")
    result = Project.load(tmp_path).run(as_of=dt.date(2026, 3, 1))
    assert result.status == "success", [(k.name, k.error) for k in result.kpis]
    got = {(r[0], r[1], r[2], r[3]): r[4] for r in pg.sql(
        'SELECT grain, period_start, dimension, dimension_value, value FROM "KPI Out".kpi_values')}
    # by hand, in PostgreSQL, in the calendar's time zone
    expected = {}
    for grain in ("day", "month"):
        rows = pg.sql(sql.SQL("""SELECT CAST(date_trunc({g}, "Ordered At" AT TIME ZONE 'Europe/Paris') AS date),
                                        sum("Net Amount") FILTER (WHERE "Order Status" <> 'void')
                                 FROM "Shop Data"."Order Lines" WHERE "Ordered At" IS NOT NULL GROUP BY 1""").format(
            g=sql.Literal(grain)))
        expected |= {(grain, d, "", None): v for d, v in rows}
    assert {k: v for k, v in got.items() if k[2] == "" and v is not None} == {
        k: float(v) for k, v in expected.items() if v is not None}
    region = '"Region"'  # `dimension` keeps the spelling of the YAML
    assert got[("month", dt.date(2026, 1, 1), region, "North")] == 7.0
    assert got[("month", dt.date(2026, 2, 1), region, "(null)")] == 5.0
    assert got[("month", dt.date(2026, 2, 1), region, "North")] == 2.0  # the void row is filtered out
    assert got[("month", dt.date(2026, 2, 1), "", None)] == 7.0


# --- the slice key: a join PostgreSQL can hash ----------------------------------------------------------------------

def test_slice_values_join_as_is_not_distinct_from_and_on_a_hash_key(pg):
    """dimension_value is NULL on a KPI's total row. Rows of one slice are joined with a null-safe equality, which
    PostgreSQL can neither hash nor merge on: it compared every slice value of a dimension with every other, 27 s
    with 2,000 slice values over 60 days (dialects._postgres_hashable_null_safe). Rendered for PostgreSQL the
    equality matches what IS NOT DISTINCT FROM matches, and the join hashes on it."""
    from sqlglot import exp

    from kpimetrics.dialects import generate, null_safe_text_eq

    values = ["NULL", "''", "'a'", "'b'", "'(null)'"]
    side = " UNION ALL ".join(f"SELECT CAST({v} AS TEXT) AS dimension_value, {i} AS i" for i, v in enumerate(values))
    query = exp.select("l.i", "r.i").from_(f"({side}) AS l").join(
        f"({side}) AS r", on=null_safe_text_eq(exp.column("dimension_value", "l"), exp.column("dimension_value", "r")))
    text = generate(query, "postgres")
    assert "DISTINCT" not in text.upper()
    assert sorted(pg.sql(text)) == [(i, i) for i in range(len(values))]  # NULL matches NULL alone, '' matches ''
    with pg.server.connect(pg.dbname) as con:
        con.execute("SET enable_nestloop = off")
        con.execute("SET enable_mergejoin = off")
        plan = "\n".join(r[0] for r in con.execute("EXPLAIN " + text).fetchall())
    assert "Hash Cond" in plan and "COALESCE" in plan.upper() and "Join Filter" not in plan, plan
