"""Project SQL is one expression or one SELECT, checked before anything reaches a warehouse (SPEC §11).

The corpus of corpus_sql.py runs on DuckDB through test_error_catalog. Here: a representative subset of it on
PostgreSQL and Spark (the project's dialect set to the engine's, so each parses the hostile SQL its own way),
with the engine's tables, sources and a canary included, read before and after; the grammar in every dialect
kpimetrics compiles to; and SQL that only looks hostile still running, so the checks refuse no honest project.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest
from sqlglot import exp

import engines
from corpus import Fault, broken_project, check_fault
from corpus_sql import ENGINE_FAULTS, SEMICOLON, SUBQUERY
from helpers_projects import TODAY, VALID_PROJECT, kpi_yaml, write_project
from helpers_run import insert_orders, kpi, kpis_yml, make_orders, ok, query, run, write_run_project
from kpimetrics import Project
from kpimetrics.config import ALL_DIALECTS
from kpimetrics.dialects import generate
from kpimetrics.sqlexpr import parse_snippet
from kpimetrics.tables import qualified

SOURCES = {
    "orders": "order_id INTEGER, customer_id INTEGER, ordered_at TIMESTAMP, region VARCHAR, channel VARCHAR, "
              "amount DOUBLE, discount DOUBLE, status VARCHAR",
    "customers": "customer_id INTEGER, name VARCHAR, region VARCHAR, segment VARCHAR, signed_up_at TIMESTAMP",
    "canary": "alive INTEGER",  # not a source: a table no project SQL may touch
}
# Spark starts a job for every query: a handful of cases there (a `;` before a DELETE, a subquery, a
# data-modifying CTE in a model); PostgreSQL takes the whole subset.
SPARK_FAULTS = [ENGINE_FAULTS[i] for i in (0, 2, 5)]


def source_file(path: Path) -> Path:
    """A DuckDB file holding a few rows of the sources the hostile SQL aims at, and the canary."""
    con = duckdb.connect(str(path))
    for name, columns in SOURCES.items():
        con.execute(f"CREATE TABLE main.{name} ({columns})")
    con.execute("INSERT INTO main.orders VALUES (1, 1, TIMESTAMP '2026-01-05 10:00', 'eu', 'web', 10, 1, 'completed'),"
                " (2, 2, TIMESTAMP '2026-02-07 11:00', 'us', 'store', 20, 0, 'returned')")
    con.execute("INSERT INTO main.customers VALUES (1, 'Ann', 'eu', 'vip', TIMESTAMP '2025-01-01 00:00'),"
                " (2, 'Bob', 'us', 'new', TIMESTAMP '2025-06-01 00:00')")
    con.execute("INSERT INTO main.canary VALUES (42)")
    con.close()
    return path


class EngineWarehouse:
    """A warehouse of the engine: the sources and the canary in schema `main`, the project's dialect the engine's."""

    def __init__(self, engine: engines.Engine, folder: Path):
        self.engine, self.folder = engine, folder
        self.profiles = engine.profiles_yml(folder, "acme")
        write_project(folder, {**VALID_PROJECT})
        (folder / "profiles.yml").write_text(self.profiles)
        adapter = Project.load(folder).connect()
        try:
            engines.copy_sources(source_file(folder / "sources.duckdb"), adapter, "main", tuple(SOURCES))
        finally:
            adapter.close()

    def files(self, fault: Fault) -> dict[str, str]:
        config = VALID_PROJECT["kpimetrics.yml"].replace("dialect: duckdb", f"dialect: {self.engine.name}")
        assert config != VALID_PROJECT["kpimetrics.yml"]
        return {**fault.files, "kpimetrics.yml": config, "profiles.yml": self.profiles}

    def tables(self) -> list[tuple]:
        """Each table of schemas `main` and `kpi` with its row count, the orders' total and the canary's value,
        in one query (one Spark job)."""
        adapter = Project.load(self.folder).connect()
        try:
            parts = [exp.select(exp.Literal.string(f"{schema}.{name}"), exp.func("count", exp.Star()))
                     .from_(qualified(schema, name))
                     for schema in ("main", "kpi") for name in sorted(adapter.tables(schema))]
            parts.append(exp.select(exp.Literal.string("orders.amount"), exp.cast(exp.func("sum", exp.column("amount")),
                                                                                  "bigint"))
                         .from_(qualified("main", "orders")))
            parts.append(exp.select(exp.Literal.string("canary"), exp.cast(exp.func("max", exp.column("alive")), "bigint"))
                         .from_(qualified("main", "canary")))
            union = parts[0]
            for part in parts[1:]:
                union = exp.union(union, part, distinct=False)
            return sorted(map(tuple, adapter.fetchall(generate(union, adapter.dialect))))
        finally:
            adapter.close()


@pytest.mark.parametrize("engine", ["postgres", "spark"])
def test_hostile_sql_is_refused_before_the_engine(engine, request, tmp_path_factory):
    """One warehouse per engine (Spark's set-up is slow), every case run against it; the tables read after each
    case on PostgreSQL, after the last on Spark (each read boots Spark's metastore)."""
    warehouse = EngineWarehouse(engines.make_engine(engine, request, tmp_path_factory),
                                tmp_path_factory.mktemp(f"trust_sql_{engine}"))
    before = warehouse.tables()
    assert ("canary", 42) in before and ("main.orders", 2) in before and ("orders.amount", 30) in before, before
    for fault in (SPARK_FAULTS if engine == "spark" else ENGINE_FAULTS):
        root = broken_project(tmp_path_factory.mktemp(fault.code), Fault(**{**fault.__dict__,
                                                                             "files": warehouse.files(fault)}), None)
        check_fault(fault, root)
        if engine != "spark":
            assert warehouse.tables() == before, fault.id
    assert warehouse.tables() == before


# --- every dialect, without a warehouse ------------------------------------------------------------

HOSTILE = [
    ("x > 1; delete from main.orders", "KPI110"),
    ("x > 1;", "KPI110"),
    ("delete from main.orders", "KPI110"),
    ("drop table main.orders", "KPI110"),
    ("select max(x) from main.orders", "KPI110"),
    ("x in (select x from main.orders)", "KPI111"),
    ("exists (select 1 from main.orders)", "KPI111"),
    ("x + (select max(x) from main.orders)", "KPI111"),
    ("(select max(x) from main.orders)", "KPI111"),
]


def test_every_dialect_refuses_statements_and_subqueries():
    for dialect in ALL_DIALECTS:
        for text, code in HOSTILE:
            tree, problem = parse_snippet(text, dialect)
            assert tree is None and problem is not None and problem.code == code, (dialect, text, problem)
        tree, problem = parse_snippet("sum(x) filter (where y = ';')", dialect)
        assert problem is None, (dialect, problem)


def test_the_caret_points_at_the_semicolon_and_the_subquery(tmp_path):
    from corpus_sql import snippet

    write_project(tmp_path, {**VALID_PROJECT, **snippet("filter", "amount > 1;  delete from main.orders")})
    issues = [i for i in Project.load(tmp_path).validate(today=TODAY) if i.code == "KPI110"]
    assert len(issues) == 1 and issues[0].message.endswith(SEMICOLON), issues
    assert issues[0].hint.splitlines()[-1] == "    " + " " * len("amount > 1") + "^"
    write_project(tmp_path, {**VALID_PROJECT, **snippet("filter", "customer_id in (select 1)")})
    issues = [i for i in Project.load(tmp_path).validate(today=TODAY) if i.code == "KPI111"]
    assert len(issues) == 1 and issues[0].message.endswith(SUBQUERY)
    assert issues[0].hint.splitlines()[-1] == "    " + " " * len("customer_id in (") + "^"


# --- SQL that only looks hostile still runs ----------------------------------------------------------

def test_honest_sql_that_looks_hostile_runs(tmp_path):
    """A `;` inside a string, a model ending in `;` with a subquery of its own, and lag(k, 2): all allowed."""
    root = write_run_project(tmp_path, kpis_yml(
        kpi("web_revenue", """
            model: ref('recent')
            time: ordered_at
            measure: sum(amount) filter (where channel <> 'a;b')
            filter: "status <> '; delete from main.orders'"
            target: 100
        """),
        kpi("web_growth", """
            derived: web_revenue / lag(web_revenue, 2) - 1
            target: 0.1
        """),
    ), files={"models/recent.sql": "with o as (\n  select * from {{ source('shop', 'orders') }}\n)\n"
                                   "select * from o where amount >= (select min(amount) from o);\n"})
    insert_orders(root, make_orders(dt.date(2025, 10, 1), dt.date(2026, 1, 31)))
    ok(run(root))
    months = query(root, "SELECT count(*) FROM kpi.kpi_values WHERE name = 'web_growth' AND grain = 'month' "
                         "AND dimension = '' AND value IS NOT NULL")
    assert months == [(2,)]  # December and January have a month two before them
