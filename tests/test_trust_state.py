"""Trust at the edges (SPEC §11), two of its promises: a `diff --state` folder is untrusted input, and a trailing
window of any length runs incrementally.

Large windows: a trailing window reaching back before year 1 (800,000 days; 50,000 months) computed on a full
refresh, but every later incremental run failed computing the first day its windows read. The range now reaches
back to the first day a date can have, and incremental equals --full-refresh after each run.

State: nothing in an earlier target/ runs as written. A malformed state (corpus_state.STATE_FAULTS: no manifest,
not JSON, the wrong shape, SQL missing, not parsing, more than one SELECT, a data-modifying CTE, ...) is exit 1
naming its file and line or key, with every table of the warehouse, sources included, unchanged (DuckDB; the SQL
cases on PostgreSQL too). Earlier SQL that reads beyond the project is not run and the diff says so.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers_run import execute, insert_orders, kpi, kpi_result, kpis_yml, make_orders, ok, query, run, table, \
    write_run_project
from kpimetrics.cli import main

# --- large windows -------------------------------------------------------------------------------------------

LARGE_WINDOWS = kpis_yml(
    kpi("revenue_800k_days", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: day
        measure: sum(amount)
        window: {periods: 800000}
        target: 100
    """),
    kpi("revenue_50k_months", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: [month, week]
        measure: sum(amount - discount)
        dimensions: [channel]
        window: {periods: 50000}
        target: 100
    """),
    kpi("customers_50k_months", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: count(distinct customer_id)
        window: {periods: 50000}
        target: 10
    """),
    kpi("median_order_20k_weeks", """
        model: source('shop', 'orders')
        time: ordered_at
        grain: week
        measure: median(amount)
        window: {periods: 200000}
        target: 100
    """),
)
# a plain additive KPI: its scan keeps its pre-aggregate by day under late_rows, counted back from the newest day
PLAIN = kpi("revenue", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: sum(amount)
    target: 100
""")
LARGE = ("revenue_800k_days", "revenue_50k_months", "customers_50k_months", "median_order_20k_weeks")


def _same_as_full_refresh(root: Path, tmp: Path) -> None:
    full = tmp / f"full-{len(list(tmp.iterdir()))}"
    shutil.copytree(root, full, ignore=shutil.ignore_patterns("target"))
    ok(run(full, full_refresh=True))
    for name in ("kpi_values", "kpi_status", "kpi_targets"):
        assert table(root, name) == table(full, name), name


@pytest.mark.parametrize("lookback, late_rows", [(1, None), ("35 days", None), (100_000_000, None),
                                                 ("99999999 days", None), (1, "99999999 days")])
def test_a_window_reaching_before_year_1_runs_incrementally(tmp_path, lookback, late_rows):
    """A lookback or late_rows of 99,999,999 days fits a timedelta but reaches before year 1: the run failed with
    exit 3 (OverflowError) computing where its scan starts, and now recomputes (or re-reads) every period."""
    kpis = kpis_yml(PLAIN) if late_rows else LARGE_WINDOWS
    root = write_run_project(tmp_path / "inc", kpis, lookback=lookback, late_rows=late_rows)
    insert_orders(root, make_orders(dt.date(2025, 1, 1), dt.date(2025, 10, 1)))
    ok(first := run(root))
    assert {k.mode for k in first.kpis} == {"full"}
    _same_as_full_refresh(root, tmp_path)

    insert_orders(root, make_orders(dt.date(2025, 10, 1), dt.date(2025, 12, 12), seed=3, first_id=100_000))
    execute(root, "UPDATE main.orders SET amount = amount + 7 WHERE ordered_at >= '2025-09-29' AND order_id % 3 = 0")
    ok(second := run(root))
    # a lookback of 10^8 periods reaches before year 1 too: every period is recomputed
    if late_rows:
        assert kpi_result(second, "revenue").mode == "incremental"
        _same_as_full_refresh(root, tmp_path)
        return
    assert {kpi_result(second, n).mode for n in LARGE} == {"full" if lookback in (100_000_000, "99999999 days")
                                                            else "incremental"}
    _same_as_full_refresh(root, tmp_path)
    # the windows did reach back to the first order: the last day's trailing sum is every order's amount
    assert query(root, "SELECT value FROM kpi.kpi_values WHERE name = 'revenue_800k_days' AND dimension = '' "
                       "AND period_start = DATE '2025-12-11'") == query(root, "SELECT sum(amount) FROM main.orders")


def test_a_lookback_longer_than_a_timedelta_is_a_validation_error(tmp_path):
    """'9999999999 days' is past what a timedelta holds: validate failed with exit 3 (OverflowError)."""
    root = write_run_project(tmp_path, LARGE_WINDOWS, lookback="9999999999 days")
    out = CliRunner().invoke(main, ["validate", "--project-dir", str(root)])
    assert out.exit_code == 1, out.output
    assert "kpimetrics.yml:5:" in out.output and "error[KPI059]: lookback must be a whole number of periods" in out.output


# --- diff --state: untrusted input ---------------------------------------------------------------------------

import json  # noqa: E402

import duckdb  # noqa: E402

from corpus import PROFILES, broken_project, check_fault, every_table  # noqa: E402
from corpus_state import MANIFEST, SQL, STATE, STATE_FAULTS, earlier_sql, manifest, state_fault  # noqa: E402
from helpers_projects import TODAY, VALID_PROJECT, write_project  # noqa: E402
from kpimetrics import Project  # noqa: E402

SOURCES_DDL = (
    "CREATE TABLE main.orders (order_id INTEGER, customer_id INTEGER, ordered_at TIMESTAMP, region VARCHAR, "
    "channel VARCHAR, amount DOUBLE, discount DOUBLE, status VARCHAR)",
    "CREATE TABLE main.customers (customer_id INTEGER, name VARCHAR, region VARCHAR, segment VARCHAR, "
    "signed_up_at TIMESTAMP)",
    "CREATE TABLE main.support_tickets (ticket_id INTEGER, customer_id INTEGER, opened_at TIMESTAMP, "
    "closed_at TIMESTAMP, channel VARCHAR, first_response_seconds DOUBLE, resolution_seconds DOUBLE, "
    "wrap_up_seconds DOUBLE, csat DOUBLE)",
)
SOURCES_DATA = (
    "INSERT INTO main.orders SELECT i, i % 40, TIMESTAMP '2025-09-01' + to_days(i % 190) + to_minutes(i % 600), "
    "['north', 'south'][i % 2 + 1], ['web', 'mobile'][i % 2 + 1], 10 + i % 90, i % 3, "
    "['completed', 'completed', 'returned'][i % 3 + 1] FROM range(1, 3000) t(i)",
    "INSERT INTO main.customers SELECT i, 'c' || i, 'north', ['smb', 'enterprise'][i % 2 + 1], "
    "TIMESTAMP '2025-01-01' FROM range(0, 40) t(i)",
    "INSERT INTO main.support_tickets SELECT i, i % 40, TIMESTAMP '2025-09-01' + to_days(i % 190), "
    "TIMESTAMP '2025-09-02' + to_days(i % 190), 'chat', 30 + i % 50, 3600 + i, 40 + i % 30, (i % 5) / 4 "
    "FROM range(1, 1000) t(i)",
)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """The valid project's sources, and its output tables published by a run."""
    root = write_project(tmp_path_factory.mktemp("published"), {**VALID_PROJECT, "profiles.yml": PROFILES})
    con = duckdb.connect(str(root / "wh.duckdb"))
    for statement in SOURCES_DDL + SOURCES_DATA:
        con.execute(statement)
    con.close()
    ok(Project.load(root).run(as_of=TODAY))
    return root / "wh.duckdb"


def _diff(root: Path, *args: str):
    out = CliRunner().invoke(main, ["diff", "--project-dir", str(root), *args])
    return out, out.output


@pytest.mark.parametrize("fault", STATE_FAULTS, ids=lambda f: f.id)
def test_a_malformed_state_is_an_error_naming_its_file_and_runs_nothing(fault, tmp_path, warehouse, monkeypatch):
    root = broken_project(tmp_path, fault, warehouse)
    monkeypatch.chdir(root)  # --state state: relative to the working directory, as a user types it
    check_fault(fault, root)  # exit 1, file:line: error[code]: message, no traceback, every table unchanged


def test_the_state_of_the_issue_deletes_nothing(tmp_path, warehouse, monkeypatch):
    """The issue's state: `WITH d AS (DELETE FROM main.orders RETURNING *) SELECT ...` as net_revenue's earlier
    SQL, beside a manifest of the right shape. It used to run, deleting every order."""
    fault = next(f for f in STATE_FAULTS if f.code == "KPI135" and "'d' is a DELETE" in f.message)
    root = broken_project(tmp_path, fault, warehouse)
    monkeypatch.chdir(root)
    before = every_table(root / "wh.duckdb")
    assert len(before["main.orders"]) == 2999
    out, text = _diff(root, *STATE)
    assert out.exit_code == 1, text
    assert "state/compiled/duckdb/net_revenue.sql:3:15: error[KPI135]: the compiled SQL of KPI 'net_revenue' has a " \
           "data-modifying CTE: 'd' is a DELETE statement; nothing of the state was run" in text
    assert every_table(root / "wh.duckdb") == before


def test_a_link_out_of_the_state_folder_is_not_read(tmp_path, warehouse, monkeypatch):
    fault = state_fault("KPI133", {}, SQL, 0, "is a link out of the state folder")
    root = broken_project(tmp_path, fault, warehouse)
    secret = tmp_path.parent / f"{tmp_path.name}-secret.sql"
    secret.write_text("SELECT 'the secret' AS value")
    (root / SQL).unlink()
    (root / SQL).symlink_to(secret)
    monkeypatch.chdir(root)
    text = check_fault(fault, root)
    assert "the secret" not in text


def test_an_oversized_state_is_refused_before_it_is_read(tmp_path, warehouse, monkeypatch):
    from kpimetrics import diff

    monkeypatch.setattr(diff, "MAX_MANIFEST_BYTES", 100)
    fault = state_fault("KPI131", {MANIFEST: manifest(label="x" * 200)}, MANIFEST, 0, "more than the 100 it may have")
    root = broken_project(tmp_path, fault, warehouse)
    monkeypatch.chdir(root)
    check_fault(fault, root)
    monkeypatch.setattr(diff, "MAX_MANIFEST_BYTES", 10**9)
    monkeypatch.setattr(diff, "MAX_SQL_BYTES", 100)
    fault = state_fault("KPI133", {SQL: earlier_sql() + "-- " + "x" * 200 + "\n"}, SQL, 0,
                        "more than the 100 it may have")
    root = broken_project(tmp_path / "sql", fault, warehouse)
    monkeypatch.chdir(root)
    check_fault(fault, root)


# Earlier SQL of the right shape that reads or calls what the project does not: not run, the KPI's earlier values
# left out with a note, exit 0 (a source the pull request removed is read by main's SQL, and is no fault).
BEYOND = [
    ("SELECT read_text('/etc/passwd')", "calls `read_text`"),
    ("SELECT getenv('HOME')", "calls `getenv`"),
    ("SELECT count(*) FROM read_csv('/etc/passwd')", "calls `ReadCSV`"),
    ("SELECT count(*) FROM 'wh.duckdb'", "reads `wh.duckdb`"),
    ("SELECT count(*) FROM kpi.kpi_runs", "reads `kpi.kpi_runs`"),
    ("SELECT count(*) FROM duckdb_settings()", "calls `duckdb_settings`"),
    ("SELECT count(*) FROM query('DELETE FROM main.orders')", "calls `query`"),
    ("SELECT nextval('seq')", "calls `nextval`"),
    ("SELECT max(pg_catalog.pg_read_file('/etc/passwd'))", "calls `pg_catalog.pg_read_file`"),
    # a CTE hides a table of its name only in its own query, not in the query around it
    ("SELECT count(*) FROM (WITH secrets AS (SELECT 1 AS s) SELECT s FROM secrets) AS q CROSS JOIN secrets",
     "reads `secrets`"),
]


@pytest.mark.parametrize("select, note", BEYOND, ids=[n for _, n in BEYOND])
def test_earlier_sql_reading_beyond_the_project_is_not_run(select, note, tmp_path, warehouse, monkeypatch):
    fault = state_fault("KPI135", {SQL: earlier_sql(select)}, SQL, 0, "")
    root = broken_project(tmp_path, fault, warehouse)
    monkeypatch.chdir(root)
    before = every_table(root / "wh.duckdb")
    out, text = _diff(root, *STATE, "--output", "json", "--periods", "2")
    assert out.exit_code == 0, text
    net = next(k for k in json.loads(text)["changed"] if k["name"] == "net_revenue")
    assert net["note"] == (f"values before the change not computed: the earlier compiled SQL {note}, which this "
                           "project does not (a state's SQL may read only what the project reads)")
    assert [r["old"] for r in net["values"]] == [None, None] and all(r["new"] is not None for r in net["values"])
    assert every_table(root / "wh.duckdb") == before


def test_earlier_sql_of_the_project_is_still_run(tmp_path, warehouse, monkeypatch):
    """The check lets through what kpimetrics writes: the valid project's own compiled SQL, with its filter
    changed, gives the earlier values."""
    root = broken_project(tmp_path, state_fault("KPI135", {}, SQL, 0, ""), warehouse)
    (root / "state").rename(root / "hand-written")
    out = CliRunner().invoke(main, ["compile", "--project-dir", str(root)])
    assert out.exit_code == 0, out.output
    shutil.copytree(root / "target", root / "state")
    sales = root / "kpis" / "sales.yml"
    sales.write_text(sales.read_text().replace("filter: status <> 'returned'", "filter: status = 'completed'", 1))
    monkeypatch.chdir(root)
    out, text = _diff(root, *STATE, "--output", "json", "--periods", "2")
    assert out.exit_code == 0, text
    net = next(k for k in json.loads(text)["changed"] if k["name"] == "net_revenue")
    assert net["note"] is None and all(r["old"] is not None for r in net["values"])


# --- the same on PostgreSQL ----------------------------------------------------------------------------------

PG_SQL = "state/compiled/postgres/net_revenue.sql"
PG_SOURCES = (
    "CREATE SCHEMA main",
    "CREATE TABLE main.orders (order_id INTEGER, customer_id INTEGER, ordered_at TIMESTAMP, region TEXT, channel TEXT, "
    "amount DOUBLE PRECISION, discount DOUBLE PRECISION, status TEXT)",
    "CREATE TABLE main.customers (customer_id INTEGER, name TEXT, region TEXT, segment TEXT, signed_up_at TIMESTAMP)",
    "CREATE TABLE main.support_tickets (ticket_id INTEGER, customer_id INTEGER, opened_at TIMESTAMP, "
    "closed_at TIMESTAMP, channel TEXT, first_response_seconds DOUBLE PRECISION, resolution_seconds DOUBLE PRECISION, "
    "wrap_up_seconds DOUBLE PRECISION, csat DOUBLE PRECISION)",
    "INSERT INTO main.orders SELECT i, i % 40, TIMESTAMP '2025-09-01' + (i % 190) * INTERVAL '1 day', "
    "(ARRAY['north', 'south'])[i % 2 + 1], (ARRAY['web', 'mobile'])[i % 2 + 1], 10 + i % 90, i % 3, "
    "(ARRAY['completed', 'completed', 'returned'])[i % 3 + 1] FROM generate_series(1, 2999) i",
    "INSERT INTO main.customers SELECT i, 'c' || i, 'north', 'smb', TIMESTAMP '2025-01-01' FROM generate_series(0, 39) i",
)
PG_STATES = [  # (earlier SQL, the line it gives, or the note)
    (DML := "WITH d AS (\n  DELETE FROM main.orders RETURNING *\n)\nSELECT 'month' AS grain, '' AS dimension, "
     "DATE '2026-02-01' AS period_start, (SELECT count(*) FROM d) AS value",
     "state/compiled/postgres/net_revenue.sql:2:15: error[KPI135]: the compiled SQL of KPI 'net_revenue' has a "
     "data-modifying CTE: 'd' is a DELETE statement"),
    ("SELECT 1 AS value;\nTRUNCATE main.orders", "net_revenue.sql:2:10: error[KPI135]: the compiled SQL of KPI "
     "'net_revenue' holds 2 statements, not one SELECT"),
    ("UPDATE main.orders SET amount = 0", "error[KPI135]: the compiled SQL of KPI 'net_revenue' is an UPDATE statement"),
    ("SELECT 'month' AS grain, '' AS dimension, DATE '2026-02-01' AS period_start, count(*) AS value "
     "FROM main.orders FOR UPDATE", "error[KPI135]: the compiled SQL of KPI 'net_revenue' locks rows"),
    ("SELECT 'month' AS grain, '' AS dimension, DATE '2026-02-01' AS period_start, "
     "length(pg_read_file('/etc/passwd')) AS value", "the earlier compiled SQL calls `pg_read_file`"),
    ("SELECT 'month' AS grain, '' AS dimension, DATE '2026-02-01' AS period_start, "
     "count(*) AS value FROM pg_catalog.pg_authid", "the earlier compiled SQL reads `pg_catalog.pg_authid`"),
]


def pg_every_table(pg) -> dict[str, list[tuple]]:
    names = pg.sql("SELECT table_schema, table_name FROM information_schema.tables "
                   "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2")
    return {f"{s}.{t}": sorted(pg.sql(f'SELECT * FROM "{s}"."{t}"'), key=repr) for s, t in names}


@pytest.fixture
def pg_project(tmp_path, pg_server):
    import yaml

    from test_postgres import Pg

    pg = Pg(pg_server)
    for statement in PG_SOURCES:
        pg.sql(statement)
    profiles = yaml.safe_dump({"acme": {"target": "dev", "outputs": {"dev": pg.output}}})
    root = write_project(tmp_path / "project", {**VALID_PROJECT, "profiles.yml": profiles})
    ok(Project.load(root).run(as_of=TODAY))
    return root, pg


@pytest.mark.parametrize("sql, expected", PG_STATES, ids=["dml-cte", "two-statements", "update", "for-update",
                                                          "pg-read-file", "pg-authid"])
def test_a_hostile_state_changes_no_table_on_postgres(sql, expected, pg_project, monkeypatch):
    root, pg = pg_project
    write_project(root, {MANIFEST: manifest({"compiled_sql": {"postgres": "target/" + PG_SQL.removeprefix("state/")}})})
    (root / PG_SQL).parent.mkdir(parents=True)
    (root / PG_SQL).write_text(sql + "\n")
    before = pg_every_table(pg)
    assert len(before["main.orders"]) == 2999 and "kpi.kpi_values" in before
    monkeypatch.chdir(root)
    out, text = _diff(root, *STATE, "--output", "json", "--periods", "2")
    assert "Traceback" not in text and "internal error" not in text, text
    if "error[" in expected:
        assert out.exit_code == 1 and expected in text, text
    else:
        assert out.exit_code == 0, text
        net = next(k for k in json.loads(text)["changed"] if k["name"] == "net_revenue")
        assert expected in net["note"] and all(r["old"] is None for r in net["values"])
    assert pg_every_table(pg) == before
