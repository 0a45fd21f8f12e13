"""A small shop project run on DuckDB, for the run tests (test_run_*, test_fused_scans, test_crash, ...).

`write_run_project` writes the project into a temporary folder; its warehouse is `root/wh.duckdb`,
filled with `insert_orders(root, make_orders(...))` or `execute`, read back with `query` and `table`.
"""
from __future__ import annotations

import datetime as dt
import random
import re
import textwrap
from pathlib import Path
from typing import Callable

import duckdb

import engines
from helpers_projects import write_project
from kpimetrics import Project

AS_OF = dt.date(2026, 3, 1)  # after all the data, so freshness and strategy dates never get in the way
# the columns that name the run that wrote a row (kpi_definitions: the first and the last run of a hash)
WITHOUT_RUN_ID = ("run_id", "computed_at", "updated_at", "first_run_id", "first_seen_at", "last_seen_at")


def strategy_yml(names: list[str]) -> str:
    """A mission with one priority holding the strategies `names`."""
    entries = "".join(
        f"      - {{name: {n}, owner: sales@shop.example, starts: 2025-01-01, ends: 2030-12-31}}\n" for n in names
    )
    return "mission: Sell more to small businesses\npriorities:\n  - name: growth\n    owner: ceo@shop.example\n" \
           "    strategies:\n" + entries


def run_on_engine(root: Path, engine, sources: tuple[str, ...], as_of: dt.date, copy_back: bool = False,
                  also: Callable[[object, str, Path], None] | None = None) -> Project:
    """Run the project at `root` once in full on `engine` (tests/engines.py) from the sources its wh.duckdb holds
    (copied to the engine first unless it is DuckDB itself). `copy_back`: on another engine, its output tables
    are copied back into wh.duckdb, with `also(adapter, output_schema, wh)` for what engines.copy_outputs does
    not copy."""
    wh = root / "wh.duckdb"
    project = Project.load(root)
    if not engine.embedded:
        adapter = project.connect()
        try:
            engines.copy_sources(wh, adapter, engine.source_schema, sources)
        finally:
            adapter.close()
    result = project.run(full_refresh=True, as_of=as_of)
    assert result.status == "success", [(k.name, k.status, k.error) for k in result.kpis]
    if not engine.embedded and copy_back:
        adapter = project.connect()
        try:
            engines.copy_outputs(adapter, engine.output_schema, wh)
            if also is not None:
                also(adapter, engine.output_schema, wh)
        finally:
            adapter.close()
    return project


def oracle_project(name: str, strategy: str, sources: str, kpis: str, profiles: str, source_schema: str = "main",
                   output_schema: str = "kpi", config: str = "", files: dict[str, str] | None = None) -> dict[str, str]:
    """The files of a small project over the `oracle` profile of an engine (tests/engines.py): monthly with a
    lookback of one period, its KPIs under one strategy; `sources` names its schema as `{schema}`; `config`: one
    more line of kpimetrics.yml; `files`: more files, by path."""
    return {
        "kpimetrics.yml": f"""
            name: {name}
            profile: oracle
            dialect: duckdb
            output_schema: {output_schema}
            defaults: {{grain: month, lookback: 1}}
            {config}
        """,
        "profiles.yml": profiles,
        "strategy.yml": strategy_yml([strategy]),
        "sources.yml": sources.format(schema=source_schema),
        "kpis/kpis.yml": kpis,
        **(files or {}),
    }


ORDER_COLUMNS = ("order_id", "customer_id", "ordered_at", "region", "channel", "amount", "discount", "status", "code")

SOURCES_YML = f"""
    sources:
      - name: shop
        schema: main
        tables:
          - name: orders
            columns: [{", ".join(ORDER_COLUMNS)}]
"""

ORDERS_DDL = """
    CREATE TABLE IF NOT EXISTS main.orders (
        order_id INTEGER, customer_id INTEGER, ordered_at TIMESTAMP, region VARCHAR, channel VARCHAR,
        amount DOUBLE, discount DOUBLE, status VARCHAR, code VARCHAR
    )
"""


def kpi(name: str, body: str, *, strategy: str = "grow_sales", indicator: str = "leading") -> str:
    """One entry of a `kpis:` list: `body` (YAML) plus the fields every KPI needs."""
    head = (
        f"- name: {name}\n  owner: sales@shop.example\n  strategy: {strategy}\n  indicator: {indicator}\n"
        f"  actions: Call the sales team\n"
    )
    return head + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n"


def kpis_yml(*entries: str) -> str:
    return "kpis:\n" + textwrap.indent("".join(entries), "  ")


def write_run_project(root: Path, kpis: str, *, lookback: int | str = 1, sources: str = SOURCES_YML,
                      files: dict[str, str] | None = None, late_rows: str | None = None) -> Path:
    """A project in `root` whose DuckDB warehouse is `root/wh.duckdb` (create the data with `execute`).

    strategy.yml holds exactly the strategies the KPIs name, so that no strategy is left without a KPI.
    """
    defaults = f"grain: month, lookback: {lookback if isinstance(lookback, int) else repr(str(lookback))}"
    if late_rows is not None:
        defaults += f", late_rows: '{late_rows}'"
    write_project(root, {
        "kpimetrics.yml": f"""
            name: shop
            profile: shop
            dialect: duckdb
            output_schema: kpi
            defaults: {{{defaults}}}
        """,
        "profiles.yml": """
            shop:
              target: dev
              outputs:
                dev: {type: duckdb, path: wh.duckdb, threads: 2}
        """,
        "strategy.yml": strategy_yml(sorted(set(re.findall(r"^\s*strategy: (\w+)$", kpis, re.M)))),
        "sources.yml": sources,
    })
    (root / "kpis").mkdir(exist_ok=True)
    (root / "kpis" / "kpis.yml").write_text(kpis, encoding="utf-8")
    write_project(root, files or {})
    return root


def set_kpis(root: Path, kpis: str) -> None:
    (root / "kpis" / "kpis.yml").write_text(kpis, encoding="utf-8")


def execute(root: Path, *statements: str, file: str = "wh.duckdb") -> None:
    """Run statements on the project's warehouse (the connection is closed before any run)."""
    con = duckdb.connect(str(root / file))
    try:
        for sql in statements:
            con.execute(sql)
    finally:
        con.close()


def read(root: Path, sql: str, *, file: str = "wh.duckdb") -> tuple[list[str], list[tuple]]:
    """The column names and rows of `sql` on the project's DuckDB warehouse, opened read-only."""
    con = duckdb.connect(str(root / file), read_only=True)
    try:
        cur = con.execute(sql)
        return [d[0] for d in cur.description], cur.fetchall()
    finally:
        con.close()


def query(root: Path, sql: str, *, file: str = "wh.duckdb") -> list[tuple]:
    return read(root, sql, file=file)[1]


def comparable(names: list[str], rows: list[tuple], drop: tuple[str, ...] = ()) -> list[tuple]:
    """Rows as sorted tuples without the columns `drop`; floats rounded, so that sums in any order compare equal."""
    keep = [i for i, n in enumerate(names) if n not in drop]
    rows = [tuple(round(r[i], 9) if isinstance(r[i], float) else r[i] for i in keep) for r in rows]
    return sorted(rows, key=lambda r: tuple((v is None, str(v)) for v in r))


def make_orders(start: dt.date, end: dt.date, *, seed: int = 7, first_id: int = 1, per_day: int = 4) -> list[tuple]:
    """Orders from `start` to `end` (exclusive). Whole-number amounts so sums are exact in any order."""
    rnd = random.Random(seed)
    out, oid, day = [], first_id, start
    while day < end:
        for _ in range(rnd.randint(per_day - 2, per_day + 2)):
            at = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=rnd.randrange(24 * 60))
            out.append((
                oid, rnd.randrange(60), at, rnd.choice(["north", "south", "west", None]), rnd.choice(["web", "mobile"]),
                float(rnd.randrange(10, 500)), float(rnd.choice([0, 0, 5, 10])),
                rnd.choice(["completed", "completed", "completed", "returned", "cancelled"]), str(rnd.randrange(100)),
            ))
            oid += 1
        day += dt.timedelta(days=1)
    return out


def _sql_literal(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, dt.datetime):
        return f"TIMESTAMP '{v.isoformat(sep=' ')}'"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


def insert_orders(root: Path, rows: list[tuple]) -> None:
    """One INSERT of literal rows (much faster than executemany on DuckDB); the values are our own."""
    values = ",\n".join("(" + ", ".join(_sql_literal(v) for v in r) + ")" for r in rows)
    execute(root, ORDERS_DDL, f"INSERT INTO main.orders VALUES {values}")


def run(root: Path, select: str | None = None, **kw):
    kw.setdefault("as_of", AS_OF)
    return Project.load(root).run(select, **kw)


def table(root: Path, name: str, drop: tuple[str, ...] = WITHOUT_RUN_ID) -> list[tuple]:
    """A whole output table, comparable (see `comparable`), without the columns that name the run."""
    return comparable(*read(root, f"SELECT * FROM kpi.{name}"), drop)


def snapshot(root: Path) -> dict[str, list[tuple]]:
    """Every output table, whole (run_id and timestamps included), for before/after comparisons."""
    names = ("kpi_catalog", "kpi_strategy", "kpi_values", "kpi_status", "kpi_targets", "kpi_check_ins", "kpi_meta")
    return {n: table(root, n, drop=()) for n in names}


def ok(result) -> None:
    assert result.status == "success", (result.message, [(k.name, k.error) for k in result.kpis if k.error])


def kpi_result(result, name: str):
    return next(k for k in result.kpis if k.name == name)
