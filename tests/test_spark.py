"""Spark (local mode, for real): seed, run, incremental runs, publishing by versions, the lock.

One SparkSession serves the whole test process (the adapter keeps it between
connections); every test gets its own schemas in one shared warehouse, so the
JVM and its metastore start once. The demo project runs on Spark and on DuckDB
and every kpi_values and kpi_status row must agree.
"""
from __future__ import annotations

import csv
import datetime as dt
import math
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from sqlglot import exp

from engines import engine_unavailable, spark_missing
from helpers_projects import write_project
from kpimetrics import Project, publish as publish_mod, tables
from kpimetrics.errors import WarehouseError
from kpimetrics.tables import qualified
from test_run_atomic import CODE_TOTAL, REVENUE
from helpers_run import ORDER_COLUMNS, kpi, kpi_result, kpis_yml, make_orders, ok, strategy_yml

ROOT = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2026, 3, 1)
DEMO_AS_OF = dt.date(2026, 11, 21)
KEY = ("name", "grain", "period_start", "dimension", "dimension_value")


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory) -> Path:
    missing = spark_missing()
    if missing:
        engine_unavailable(missing)
    return tmp_path_factory.mktemp("spark") / "warehouse"


def spark_profile(warehouse: Path, name: str) -> str:
    return f"{name}:\n  target: spark\n  outputs:\n    spark: {{type: spark, master: 'local[2]', warehouse_dir: '{warehouse}'}}\n"


# --- reading the output tables, as a BI tool does -----------------------------------------

def read(root: Path, table: str, columns: list[str] | None = None, schema: str | None = None) -> list[tuple]:
    project = Project.load(root)
    schema = schema or project.definition.config.output_schema
    adapter = project.connect()
    try:
        cols = columns or tables.BY_NAME[table].column_names
        query = exp.select(*[exp.column(c, quoted=True) for c in cols]).from_(qualified(schema, table))
        rows = adapter.fetchall(query.sql(dialect=adapter.dialect))
    finally:
        adapter.close()
    return sorted(rows, key=lambda r: tuple((v is None, str(v)) for v in r))


def fetch(root: Path, sql: str) -> list[tuple]:
    adapter = Project.load(root).connect()
    try:
        return adapter.fetchall(sql)
    finally:
        adapter.close()


def partitions(root: Path, table: str = "kpi_values") -> list[int]:
    schema = Project.load(root).definition.config.output_schema
    rows = fetch(root, f"SHOW PARTITIONS `{schema}`.`{publish_mod.versions_name(table)}`")
    return sorted(int(r[0].rpartition("=")[2]) for r in rows)


def pointer(root: Path) -> int:
    schema = Project.load(root).definition.config.output_schema
    return fetch(root, f"SELECT version FROM `{schema}`.`{publish_mod.POINTER}`")[0][0]


def same_rows(a: list[tuple], b: list[tuple], columns: list[str]) -> None:
    """Equal row for row: floats within 1e-9 relative, everything else exactly."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for c, u, v in zip(columns, x, y):
            assert close(u, v), (c, x, y)


# --- the demo project, on Spark and on DuckDB ---------------------------------------------

@pytest.fixture(scope="module")
def demo(warehouse, tmp_path_factory):
    """The demo seeded and run on both engines; yields (spark project root, duckdb project root, spark run)."""
    duck = tmp_path_factory.mktemp("demo_duckdb")
    spark = tmp_path_factory.mktemp("demo_spark")
    for root in (duck, spark):
        shutil.copytree(ROOT / "project_template", root, dirs_exist_ok=True)
    # seeds and sources in Spark's default schema, as the demo is; the outputs in a schema of their own
    config = (spark / "kpimetrics.yml").read_text().replace("output_schema: kpi ", "output_schema: kpi_demo ")
    (spark / "kpimetrics.yml").write_text(config)
    (spark / "profiles.yml").write_text(spark_profile(warehouse, "demo"))
    ok(_seed_and_run(duck))
    result = _seed_and_run(spark)
    ok(result)
    return spark, duck, result


def _seed_and_run(root: Path):
    project = Project.load(root)
    project.seed()
    return project.run(as_of=DEMO_AS_OF)


@pytest.mark.parametrize("table", [tables.VALUES, tables.STATUS, tables.TARGETS], ids=lambda t: t.name)
def test_demo_gives_the_same_rows_as_duckdb(demo, table):
    spark, duck, _ = demo
    columns = [c for c in table.column_names if c not in ("run_id", "computed_at")]
    rows = read(spark, table.name, columns)
    assert len(rows) > 100
    same_rows(rows, read(duck, table.name, columns), columns)


def test_demo_status_headline_matches_duckdb(demo):
    spark, duck, _ = demo
    got, expected = Project.load(spark).status(), Project.load(duck).status()
    assert [r["name"] for r in got] == [r["name"] for r in expected]
    for a, b in zip(got, expected):
        assert a.keys() == b.keys()
        for k in a:
            assert close(a[k], b[k]), (a["name"], k, a[k], b[k])


def close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):  # a status row's forecast
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return a == b


def test_demo_rerun_is_incremental_and_equals_the_full_run(demo):
    spark, duck, first = demo
    before = read(spark, "kpi_values")
    again = Project.load(spark).run(as_of=DEMO_AS_OF)
    ok(again)
    assert kpi_result(again, "net_revenue").mode == "incremental"
    columns = [c for c in tables.VALUES.column_names if c not in ("run_id", "computed_at")]
    same_rows(read(spark, "kpi_values", columns), read(duck, "kpi_values", columns), columns)
    # the statuses it kept (before the range, plain targets) and wrote (the rest, net_revenue's table target)
    columns = [c for c in tables.STATUS.column_names if c != "run_id"]
    same_rows(read(spark, "kpi_status", columns), read(duck, "kpi_status", columns), columns)
    # rows before the recompute range keep the run that computed them
    run_ids = {r[-2] for r in read(spark, "kpi_values")}
    assert run_ids == {first.run_id, again.run_id}
    assert len(before) == len(read(spark, "kpi_values"))
    # the views show the new version; the previous one is kept for readers still on it
    assert pointer(spark) == again.run_id
    assert partitions(spark) == [first.run_id, again.run_id]
    runs = read(spark, "kpi_runs", ["run_id", "status"])
    assert runs == [(first.run_id, "success"), (again.run_id, "success")]


# --- a small shop project, seeded from CSV --------------------------------------------------

P90 = kpi("amount_p90", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: quantile_cont(amount, 0.9)
    target: 400
""")


def shop_project(root: Path, warehouse: Path, orders: list[tuple], kpis: str = kpis_yml(REVENUE, CODE_TOTAL, P90)) -> Path:
    tag = uuid.uuid4().hex[:8]
    write_project(root, {
        "kpimetrics.yml": f"""
            name: shop
            profile: shop
            output_schema: kpi_{tag}
            seed_schema: raw_{tag}
            defaults: {{grain: month, lookback: 1}}
        """,
        "strategy.yml": strategy_yml(["grow_sales"]),
        "sources.yml": f"""
            sources:
              - name: shop
                schema: raw_{tag}
                tables:
                  - name: orders
                    columns: [{", ".join(ORDER_COLUMNS)}]
        """,
        "kpis/kpis.yml": kpis,
    })
    (root / "profiles.yml").write_text(spark_profile(warehouse, "shop"))
    write_orders(root, orders)
    Project.load(root).seed()
    return root


def write_orders(root: Path, orders: list[tuple]) -> None:
    (root / "seeds").mkdir(exist_ok=True)
    with open(root / "seeds" / "orders.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(ORDER_COLUMNS)
        out.writerows(["" if v is None else v for v in r] for r in orders)


ORDERS = make_orders(dt.date(2025, 1, 1), dt.date(2025, 5, 1), per_day=3)
MORE = make_orders(dt.date(2025, 5, 1), dt.date(2025, 6, 1), seed=11, first_id=10_000, per_day=3)


def fingerprint(root: Path) -> tuple:
    """What a reader sees in one query: each output table's row count and sum of values."""
    schema = Project.load(root).definition.config.output_schema
    parts = " UNION ALL ".join(
        f"SELECT '{t}' AS t, count(*) AS n, round(sum(coalesce({c}, 0)), 6) AS s FROM `{schema}`.`{t}`"
        for t, c in (("kpi_values", "value"), ("kpi_status", "value"), ("kpi_targets", "target"), ("kpi_catalog", "1"))
    )
    return tuple(sorted(fetch(root, parts)))


def test_failed_kpi_keeps_its_rows_and_the_others_publish(tmp_path, warehouse):
    root = shop_project(tmp_path, warehouse, ORDERS)
    first = Project.load(root).run(as_of=AS_OF)
    ok(first)
    code_rows = [r for r in read(root, "kpi_values") if r[0] == "code_total"]
    # Spark's exact percentile, interpolated as quantile_cont is (never percentile_approx)
    p90 = {r[2]: r[-1] for r in read(root, "kpi_values", list(KEY) + ["value"]) if r[0] == "amount_p90"}
    for month in (1, 2, 3, 4):
        amounts = sorted(o[5] for o in ORDERS if o[2].month == month)
        pos = 0.9 * (len(amounts) - 1)
        lo = math.floor(pos)
        assert p90[dt.date(2025, month, 1)] == pytest.approx(amounts[lo] + (amounts[lo + 1] - amounts[lo]) * (pos - lo), rel=1e-12)
    # a code that is not a number: the cast fails (ANSI mode), on this KPI only
    write_orders(root, ORDERS + MORE + [(99_999, 1, "2025-05-20 10:00:00", "north", "web", 10.0, 0.0, "completed", "abc")])
    Project.load(root).seed()
    second = Project.load(root).run(as_of=AS_OF)
    assert second.status == "partial"
    assert kpi_result(second, "code_total").status == "error"
    assert "abc" in kpi_result(second, "code_total").error
    assert [r for r in read(root, "kpi_values") if r[0] == "code_total"] == code_rows
    may = [r for r in read(root, "kpi_values", list(KEY) + ["value", "run_id"])
           if r[0] == "revenue" and r[1] == "month" and r[2] == dt.date(2025, 5, 1) and r[3] == ""]
    assert may[0][-1] == second.run_id
    assert may[0][-2] == pytest.approx(sum(o[5] for o in MORE) + 10.0)
    assert read(root, "kpi_runs", ["run_id", "status"]) == [(first.run_id, "success"), (second.run_id, "partial")]


def test_publishing_by_versions(tmp_path, warehouse, monkeypatch):
    """A failure before the swap changes nothing; a reader sees one whole run at every step; old versions go."""
    root = shop_project(tmp_path, warehouse, ORDERS)
    first = Project.load(root).run(as_of=AS_OF)
    ok(first)
    published = {t: read(root, t) for t in ("kpi_values", "kpi_status", "kpi_targets", "kpi_catalog", "kpi_strategy")}
    before = fingerprint(root)
    write_orders(root, ORDERS + MORE)
    Project.load(root).seed()
    real = publish_mod.checkpoint

    # 1. the driver dies after writing every new version, before moving the pointer
    def crash(name: str) -> None:
        if name == "publish.swap":
            raise RuntimeError("the driver died")

    monkeypatch.setattr(publish_mod, "checkpoint", crash)
    with pytest.raises(RuntimeError):
        Project.load(root).run(as_of=AS_OF)
    monkeypatch.setattr(publish_mod, "checkpoint", real)
    assert {t: read(root, t) for t in published} == published
    assert pointer(root) == first.run_id
    assert read(root, "kpi_runs", ["run_id", "status"]) == [(first.run_id, "success"), (first.run_id + 1, "error")]

    # 2. a BI tool reading between the steps of publishing sees the previous run, then the new one
    seen: list[tuple[str, tuple]] = []
    schema = Project.load(root).definition.config.output_schema
    staged: list[tuple] = []

    def reader(name: str) -> None:
        if name.startswith("publish."):
            seen.append((name, fingerprint(root)))
        if name == "publish.swap":  # the run's staged rows are its session's: the output schema holds none of them
            staged.extend(r for r in fetch(root, f"SHOW TABLES IN `{schema}`") if r[1].startswith("kpi_stage_") and not r[2])

    monkeypatch.setattr(publish_mod, "checkpoint", reader)
    third = Project.load(root).run(as_of=AS_OF)
    monkeypatch.setattr(publish_mod, "checkpoint", real)
    ok(third)
    after = fingerprint(root)
    assert before != after
    assert [n for n, _ in seen].count("publish.version") == len(publish_mod.VERSIONED)
    assert all(f == before for n, f in seen if n != "publish.swapped"), "a reader saw a partly published run"
    assert dict(seen)["publish.swapped"] == after
    assert "publish.swap" in dict(seen) and staged == []  # looked at the swap, and found no staging table
    # the failed run's half-written version is gone; the previous one stays for readers still on it
    assert partitions(root) == [first.run_id, third.run_id]
    assert not [r for r in fetch(root, f"SHOW TABLES IN `{schema}`") if r[1].startswith("kpi_stage_")]

    # the pointer says that no version below the published one is left: the next run drops without listing
    current = f"`{schema}`.`{publish_mod.POINTER}`"
    assert fetch(root, f"SELECT version, {publish_mod.OLDEST} FROM {current}") == [(third.run_id, first.run_id)]

    # 3. the next run drops it, from a pointer as an earlier release made it (no `oldest`: partitions listed)
    fetch(root, f"ALTER VIEW {current} AS SELECT CAST({third.run_id} AS BIGINT) AS version")
    fourth = Project.load(root).run(as_of=AS_OF)
    ok(fourth)
    assert fingerprint(root) == after
    for table in publish_mod.VERSIONED:
        assert set(partitions(root, table.name)) <= {third.run_id, fourth.run_id}
    assert partitions(root) == [third.run_id, fourth.run_id]
    assert fetch(root, f"SELECT version, {publish_mod.OLDEST} FROM {current}") == [(fourth.run_id, third.run_id)]


def test_quoted_identifiers_and_sources_in_another_schema(tmp_path, warehouse):
    """Columns that need quoting, a dimension named like a keyword, in a database other than the default."""
    tag = uuid.uuid4().hex[:8]
    kpis = kpis_yml(kpi("order_value", """
        model: source('raw', 'Orders')
        time: '"Ordered At"'
        measure: sum("Net Amount")
        dimensions: ['"group"']
        target: 100
    """))
    write_project(tmp_path, {
        "kpimetrics.yml": f"name: quoted\nprofile: q\noutput_schema: out_{tag}\n",
        "strategy.yml": strategy_yml(["grow_sales"]),
        "sources.yml": f"sources:\n  - name: raw\n    schema: landing_{tag}\n    tables:\n      - name: Orders\n",
        "kpis/kpis.yml": kpis,
    })
    (tmp_path / "profiles.yml").write_text(spark_profile(warehouse, "q"))
    project = Project.load(tmp_path)
    adapter = project.connect()
    try:
        adapter.execute(f"CREATE SCHEMA `landing_{tag}`")
        adapter.execute(f"CREATE TABLE `landing_{tag}`.`Orders` (`Ordered At` TIMESTAMP_NTZ, `Net Amount` DOUBLE, `group` STRING)")
        adapter.insert_rows(f"`landing_{tag}`.`Orders`", ["Ordered At", "Net Amount", "group"], [
            [dt.datetime(2025, 1, 5, 10), 10.0, "a"], [dt.datetime(2025, 1, 31, 23, 59), 5.5, None],
            [dt.datetime(2025, 3, 1), 2.0, "a"], [None, 100.0, "a"],
        ])
    finally:
        adapter.close()
    ok(project.run(as_of=AS_OF))
    rows = read(tmp_path, "kpi_values", list(KEY) + ["value"])
    got = {(r[2], r[3], r[4]): r[5] for r in rows}
    assert got == {
        (dt.date(2025, 1, 1), "", None): 15.5, (dt.date(2025, 2, 1), "", None): None, (dt.date(2025, 3, 1), "", None): 2.0,
        # the dimension is named as the KPI writes it
        (dt.date(2025, 1, 1), '"group"', "a"): 10.0, (dt.date(2025, 1, 1), '"group"', "(null)"): 5.5,
        (dt.date(2025, 3, 1), '"group"', "a"): 2.0,
    }


def test_inserted_rows_keep_their_values_and_types(tmp_path, warehouse):
    """insert_rows (YAML rows, the runs log) binds values as parameters cast to each column's type: a naive time
    into an instant column is a time of the calendar's zone, an aware one into a TIMESTAMP_NTZ column that zone's
    wall time, ints into DOUBLE, text that looks like SQL stays text, a column left out is NULL. And the relations
    of a schema, tables and views, as SHOW TABLES and SHOW VIEWS list them."""
    from kpimetrics.adapters.spark import SparkAdapter
    from kpimetrics.config import SparkOutput

    schema = f"ins_{uuid.uuid4().hex[:8]}"
    adapter = SparkAdapter(SparkOutput(type="spark", master="local[2]", warehouse_dir=str(warehouse)), tmp_path,
                           "America/New_York")
    try:
        adapter.execute(f"CREATE SCHEMA `{schema}`")
        adapter.execute(f"CREATE TABLE `{schema}`.t (s STRING, i BIGINT, x DOUBLE, d DECIMAL(18,2), day DATE, "
                        f"at TIMESTAMP, wall TIMESTAMP_NTZ, b BOOLEAN, unset STRING) USING parquet")
        adapter.execute(f"CREATE VIEW `{schema}`.v AS SELECT s FROM `{schema}`.t")
        utc = dt.timezone.utc
        adapter.insert_rows(f"`{schema}`.t", ["s", "i", "x", "d", "day", "at", "wall", "b"], [
            ["it's'); DROP TABLE t; --", 2**40, 3, "1.25", dt.date(2026, 2, 28), dt.datetime(2026, 3, 1, 12, 30),
             dt.datetime(2026, 3, 1, 17, 30, tzinfo=utc), True],
            [None, None, 0.1, None, None, dt.datetime(2026, 7, 1, 4, 0, tzinfo=utc), dt.datetime(2026, 7, 1, 4, 0), False],
        ])
        rows = adapter.fetchall(f"SELECT s, i, x, d, day, CAST(unix_timestamp(at) AS BIGINT), wall, b, unset "
                                f"FROM `{schema}`.t ORDER BY i NULLS LAST")
        relations = sorted(adapter.relations(schema))
    finally:
        adapter.close()
    from decimal import Decimal
    noon_in_new_york = int(dt.datetime(2026, 3, 1, 17, 30, tzinfo=utc).timestamp())  # EST is UTC-5 on 1 March
    assert rows == [
        ("it's'); DROP TABLE t; --", 2**40, 3.0, Decimal("1.25"), dt.date(2026, 2, 28), noon_in_new_york,
         dt.datetime(2026, 3, 1, 12, 30), True, None),
        (None, None, 0.1, None, None, int(dt.datetime(2026, 7, 1, 4, 0, tzinfo=utc).timestamp()),
         dt.datetime(2026, 7, 1, 4, 0), False, None),
    ]
    assert relations == [("t", "table"), ("v", "view")]


# --- the session and the lock ----------------------------------------------------------------

def test_closing_a_connection_keeps_the_session_for_the_next(tmp_path, warehouse):
    write_project(tmp_path, {"kpimetrics.yml": "name: s\nprofile: s\n", "strategy.yml": strategy_yml([])})
    (tmp_path / "profiles.yml").write_text(spark_profile(warehouse, "s"))
    first = Project.load(tmp_path).connect()
    session = first.spark
    first.close()
    second = Project.load(tmp_path).connect()
    try:
        assert second.spark is session
        assert second.fetchall("SELECT 1 + 1") == [(2,)]
        assert second.spark.conf.get("spark.sql.session.timeZone") == "UTC"
        assert second.spark.conf.get("spark.sql.ansi.enabled") == "true"
    finally:
        second.close()
    assert (warehouse / ".kpimetrics.lock").read_text() == ""  # released: nobody holds it


def test_a_second_process_fails_at_once_naming_the_holder(tmp_path):
    """The lock file is taken before Spark starts, so the check costs no JVM."""
    folder = tmp_path / "locked-warehouse"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from kpimetrics.adapters.spark import WarehouseLock
            WarehouseLock.take(Path({str(folder)!r}))
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        write_project(tmp_path / "p", {"kpimetrics.yml": "name: s\nprofile: s\n", "strategy.yml": strategy_yml([])})
        (tmp_path / "p" / "profiles.yml").write_text(spark_profile(folder, "s"))
        with pytest.raises(WarehouseError) as err:
            Project.load(tmp_path / "p").connect()
        message = str(err.value)
        assert f"pid {holder.pid}" in message and str(folder / ".kpimetrics.lock") in message
        assert "wait for that run to finish" in message
    finally:
        holder.kill()
        holder.wait()
    # the operating system released the dead holder's lock: no stale lock file to delete
    from kpimetrics.adapters.spark import WarehouseLock

    lock = WarehouseLock.take(folder)
    lock.release()


RUN_IN_A_CHILD = (
    "import datetime, sys\n"
    "from kpimetrics import Project\n"
    "result = Project.load(sys.argv[1]).run(as_of=datetime.date.fromisoformat(sys.argv[2]))\n"
    "print(result.status, result.run_id)\n"
)


def test_a_long_lived_process_lets_others_in_and_sees_their_runs(tmp_path, warehouse):
    """This process keeps its SparkSession between connections, but its last close() shuts the embedded
    metastore down (a Derby booted here would keep every other process out), and its next connection drops
    the relations and file listings it cached (it would read the version it saw before)."""
    from kpimetrics.adapters.spark import METASTORE_DIR, metastore_booted

    root = shop_project(tmp_path, warehouse, ORDERS)
    first = Project.load(root).run(as_of=AS_OF)
    ok(first)
    seen = read(root, "kpi_values", list(KEY) + ["value", "run_id"])  # cached in this session now
    assert not [r for r in seen if r[2] == dt.date(2025, 5, 1)]
    assert not metastore_booted(warehouse / METASTORE_DIR)
    write_orders(root, ORDERS + MORE)
    Project.load(root).seed()
    child = subprocess.run([sys.executable, "-c", RUN_IN_A_CHILD, str(root), AS_OF.isoformat()],
                           capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert child.returncode == 0 and child.stdout.split() == ["success", str(first.run_id + 1)], child.stderr[-3000:]
    assert pointer(root) == first.run_id + 1
    may = [r for r in read(root, "kpi_values", list(KEY) + ["value", "run_id"])
           if r[0] == "revenue" and r[1] == "month" and r[2] == dt.date(2025, 5, 1) and r[3] == ""]
    assert may == [("revenue", "month", dt.date(2025, 5, 1), "", None, pytest.approx(sum(o[5] for o in MORE)),
                    first.run_id + 1)]
    assert read(root, "kpi_runs", ["run_id", "status"]) == [(first.run_id, "success"), (first.run_id + 1, "success")]


def test_the_lock_waits_for_a_killed_runs_jvm_to_let_go_of_the_metastore(tmp_path, monkeypatch):
    """A killed run's JVM lives on for a moment with Derby booted (its lock on dbex.lck): the next process
    waits for it, and names it if it does not go."""
    from kpimetrics.adapters import spark as spark_adapter

    folder = tmp_path / "warehouse"
    (folder / spark_adapter.METASTORE_DIR).mkdir(parents=True)
    (folder / spark_adapter.METASTORE_DIR / "dbex.lck").write_text("")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, sys, time
            f = open({str(folder / spark_adapter.METASTORE_DIR / 'dbex.lck')!r}, "r+")
            fcntl.lockf(f, fcntl.LOCK_EX)  # as Derby's FileChannel.tryLock does
            print("booted", flush=True)
            time.sleep(float(sys.argv[1]))
        """), "1.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "booted"
        booted = time.monotonic()
        monkeypatch.setattr(spark_adapter, "METASTORE_WAIT", 0.2)
        with pytest.raises(WarehouseError, match="still open in another JVM"):
            spark_adapter.WarehouseLock.take(folder)
        monkeypatch.setattr(spark_adapter, "METASTORE_WAIT", 30.0)
        lock = spark_adapter.WarehouseLock.take(folder)  # waits until the holder has let go
        try:
            # the holder lets go as it exits; it may not be reaped yet (poll() raced with that), so wait for it
            assert holder.wait(timeout=10) == 0
            assert time.monotonic() - booted >= 1.0  # and take() did wait: the holder held on for 1.5 s
        finally:
            lock.release()  # a lock left held here would fail every later Spark test of this process
    finally:
        holder.kill()
        holder.wait()


def test_an_error_that_wraps_its_causes_keeps_the_first_cause():
    """Two stages of one query failing at once come as a wrapper line ending in ':' and the causes after it:
    the message says what is wrong, not only that something failed."""
    from kpimetrics.adapters.spark import _clean

    wrapped = Exception(
        "[STAGE_MATERIALIZATION_MULTIPLE_FAILURES] Multiple failures (2) in stage materialization:\n"
        "1. [CAST_INVALID_INPUT] The value 'x' of the type \"STRING\" cannot be cast to \"INT\". SQLSTATE: 22018\n"
        "2. [CAST_INVALID_INPUT] The value 'y' of the type \"STRING\" cannot be cast to \"INT\". SQLSTATE: 22018\n"
        "\tat org.apache.spark.sql.errors.QueryExecutionErrors$.invalidInputInCastToNumberError(...)\n"
        "JVM stacktrace:\norg.apache.spark.SparkException")
    assert _clean(wrapped) == (
        "[STAGE_MATERIALIZATION_MULTIPLE_FAILURES] Multiple failures (2) in stage materialization: "
        "1. [CAST_INVALID_INPUT] The value 'x' of the type \"STRING\" cannot be cast to \"INT\". SQLSTATE: 22018")
    plain = Exception("[TABLE_OR_VIEW_NOT_FOUND] The table `x` cannot be found.\n\tat org.apache.spark.Foo")
    assert _clean(plain) == "[TABLE_OR_VIEW_NOT_FOUND] The table `x` cannot be found."
