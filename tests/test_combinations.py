"""Combinations of dimensions (SPEC §9): a `dimensions` item that is a list slices a KPI by every combination of
its columns' values, beside the single-column slices, for every KPI form. Checked against hand-written SQL
(GROUP BY region, channel) on DuckDB, PostgreSQL and Spark, read as a BI tool reads the tables: kpi_values
joined to kpi_slice_members, one member filtered with plain SQL.

One small shop (January to April 2026): orders by region (one order with no region) and channel (one channel
with a '·' in its name, which the combination's text writes twice).
- rev: a sum, sliced by region and by region × channel, `slice_targets: true` (combination slices judged too);
- aov: a ratio by region × channel;
- buyers: count(distinct customer) by region × channel (the scan's non-additive aggregation);
- rev_3m: a trailing 3-month sum by region × channel (per-period partials);
- rev_per_buyer: derived rev / buyers, sliced by the combination both have.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

import engines
from helpers_projects import write_project
from helpers_run import kpi, kpis_yml, oracle_project, run_on_engine
from kpimetrics import Project, combinations, tables
from kpimetrics.dialects import generate
from kpimetrics.tables import qualified
from semantic_env import semantic_shop  # noqa: F401  (the session's dbt build, for the metric form)

AS_OF = dt.date(2026, 5, 1)
COMBO = "region × channel"

KPIS = kpis_yml(
    kpi("rev", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        dimensions: [region, [region, channel]]
        target: 100
        tolerance: 10%
        slice_targets: true
    """, strategy="s_combos"),
    kpi("aov", """
        model: source('shop', 'orders')
        time: ordered_at
        ratio: {numerator: sum(amount), denominator: count(*)}
        dimensions: [[region, channel]]
        target: 20
    """, strategy="s_combos"),
    kpi("buyers", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: count(distinct customer_id)
        dimensions: [[region, channel]]
        target: 2
    """, strategy="s_combos"),
    kpi("rev_3m", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        window: {periods: 3}
        dimensions: [[region, channel]]
        target: 300
    """, strategy="s_combos"),
    kpi("rev_per_buyer", """
        derived: rev / buyers
        target: 50
    """, strategy="s_combos"),
)

SOURCES = """
sources:
  - name: shop
    schema: {schema}
    tables:
      - name: orders
        columns: [order_id, ordered_at, region, channel, customer_id, amount]
"""


def project_files(profiles: str, source_schema: str = "main", output_schema: str = "kpi") -> dict:
    return oracle_project("combinations", "s_combos", SOURCES, KPIS, profiles, source_schema, output_schema)


REGIONS, CHANNELS = ("EU", "US", None), ("web", "store·front")


def order_rows(months: range = range(1, 5), first_id: int = 1) -> list[tuple]:
    rows, oid = [], first_id
    for m in months:
        for i, (region, channel) in enumerate((r, c) for r in REGIONS for c in CHANNELS):
            if region is None and channel == "web":
                continue  # the order with no region: store·front only
            for k in range((m + i) % 3 + 1):
                rows.append((oid, dt.datetime(2026, m, 2 + 3 * k, 9), region, channel, (oid * 7) % 5 + k, 10.0 + oid % 13))
                oid += 1
    return rows


def load_data(path: Path, rows: list[tuple]) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("create table if not exists main.orders (order_id integer, ordered_at timestamp, region varchar, "
                    "channel varchar, customer_id integer, amount double)")
        con.executemany("insert into main.orders values (?, ?, ?, ?, ?, ?)", rows)
    finally:
        con.close()


# --- the expected values, by hand: GROUP BY region, channel ----------------------------------------

EXPECTED_SQL = f"""
create or replace temp view x_month as
    select date_trunc('month', ordered_at)::date as period_start, coalesce(region, '(null)') as region, channel,
           sum(amount) as rev, count(*) as n, count(distinct customer_id) as buyers
    from main.orders group by all;
create or replace temp view x_expected as
    select 'rev' as name, period_start, region, channel, rev as value from x_month
    union all select 'aov', period_start, region, channel, rev / n from x_month
    union all select 'buyers', period_start, region, channel, buyers from x_month
    union all select 'rev_per_buyer', period_start, region, channel, rev / buyers from x_month
    union all
    -- every month from the first with orders, each combination's orders of it and the two months before
    select 'rev_3m', p.period_start, c.region, c.channel, sum(o.amount)
    from (select distinct period_start from x_month) p
    cross join (select distinct region, channel from x_month) c
    join main.orders o on coalesce(o.region, '(null)') = c.region and o.channel = c.channel
        and o.ordered_at >= p.period_start - interval 2 month and o.ordered_at < p.period_start + interval 1 month
    group by all;
"""

# kpi_values as a BI tool reads a combination: its members joined as columns, no string parsed
BI_SQL = f"""
select v.name, v.period_start, r.member_value as region, c.member_value as channel, v.value
from kpi.kpi_values v
join kpi.kpi_slice_members r on r.name = v.name and r.dimension = v.dimension
    and r.dimension_value = v.dimension_value and r.member = 'region'
join kpi.kpi_slice_members c on c.name = v.name and c.dimension = v.dimension
    and c.dimension_value = v.dimension_value and c.member = 'channel'
where v.grain = 'month' and v.dimension = '{COMBO}'
"""


def rounded(rows: list[tuple]) -> list[tuple]:
    return sorted((tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in rows), key=repr)


def copy_members(adapter, schema: str, path: Path) -> None:
    """kpi_slice_members from the engine into the DuckDB file (engines.copy_outputs copies the others)."""
    t = tables.SLICE_MEMBERS
    rows = adapter.fetchall(generate(exp_select_all(qualified(schema, t.name), t.column_names), adapter.dialect))
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema if not exists kpi")
        con.execute(f"create or replace table kpi.{t.name} (" + ", ".join(f'"{c}" {ty}' for c, ty in t.columns) + ")")
        if rows:
            engines.insert_many(con, f"kpi.{t.name}", [tuple(r) for r in rows])
    finally:
        con.close()


def exp_select_all(table, columns):
    from sqlglot import exp
    return exp.select(*[exp.column(c, quoted=True) for c in columns]).from_(table)


@pytest.fixture(scope="module", params=engines.VALUE_ENGINES)
def ran(request, tmp_path_factory):
    """The project run once on each engine; a DuckDB connection holding the sources and the output tables."""
    engine = engines.make_engine(request.param, request, tmp_path_factory)
    root = tmp_path_factory.mktemp(f"combinations_{engine.name}")
    write_project(root, project_files(engine.profiles_yml(root), engine.source_schema, engine.output_schema))
    load_data(root / "wh.duckdb", order_rows())
    run_on_engine(root, engine, ("orders",), AS_OF, copy_back=True, also=copy_members)
    con = duckdb.connect(str(root / "wh.duckdb"))
    con.execute(EXPECTED_SQL)
    yield con
    con.close()


def test_combination_values_equal_group_by_region_channel(ran):
    want = ran.execute("select name, period_start, region, channel, value from x_expected").fetchall()
    got = ran.execute(BI_SQL).fetchall()
    assert len(want) > 40
    assert rounded(got) == rounded(want)


def test_single_slices_and_totals_read_as_before(ran):
    """rev's region slices and totals are rows of their own, as without combinations; only the combinations have
    members, two each."""
    got = ran.execute("select period_start, dimension, dimension_value, value from kpi.kpi_values "
                      "where name = 'rev' and dimension <> ? ", [COMBO]).fetchall()
    want = ran.execute("select date_trunc('month', ordered_at)::date, 'region', coalesce(region, '(null)'), sum(amount) "
                       "from main.orders group by all union all select date_trunc('month', ordered_at)::date, '', "
                       "null, sum(amount) from main.orders group by all").fetchall()
    assert rounded(got) == rounded(want)
    assert ran.execute("select distinct dimension from kpi.kpi_slice_members").fetchall() == [(COMBO,)]
    per_slice = ran.execute("select count(*) from kpi.kpi_slice_members group by name, dimension_value").fetchall()
    assert {n for (n,) in per_slice} == {2}


def test_one_member_filtered_with_plain_sql(ran):
    """channel = 'store·front' within region × channel: a BI filter on one member, the value per region."""
    got = ran.execute(f"""
        select m.dimension_value, sum(v.value) from kpi.kpi_values v join kpi.kpi_slice_members m
            on m.name = v.name and m.dimension = v.dimension and m.dimension_value = v.dimension_value
        where v.name = 'rev' and v.grain = 'month' and m.member = 'channel' and m.member_value = 'store·front'
        group by 1""").fetchall()
    want = ran.execute("select coalesce(region, '(null)'), sum(amount) from main.orders where channel = 'store·front' "
                       "group by 1").fetchall()
    assert rounded([(combinations.members(v)[0], s) for v, s in got]) == rounded(want)
    assert ("(null) · store··front" in {v for v, _ in got})  # the '·' of a value is written twice in the text


def test_combination_slices_get_the_totals_target_and_status(ran):
    """slice_targets: true judges the combination slices against rev's target (100, 10% tolerance)."""
    got = ran.execute("select dimension_value, value, target, status from kpi.kpi_status "
                      "where name = 'rev' and dimension = ? and value is not null", [COMBO]).fetchall()
    assert got
    for _, value, target, status in got:
        assert target == 100.0
        assert status == ("on_track" if value >= 100 else "at_risk" if value >= 90 else "off_track")
    assert ran.execute("select count(*) from kpi.kpi_targets where name = 'rev' and dimension = ?", [COMBO]).fetchone()[0] \
        == len(got)


# --- DuckDB only: what does not differ by engine ----------------------------------------------------

def duckdb_project(root: Path, rows: list[tuple]) -> Project:
    write_project(root, project_files(engines.duckdb_engine().profiles_yml(root)))
    load_data(root / "wh.duckdb", rows)
    return Project.load(root)


def tables_of(root: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(root / "wh.duckdb"), read_only=True)
    try:
        return {t: rounded(con.execute(f"select * exclude (run_id{', computed_at' if t == 'kpi_values' else ''}) "
                                       f"from kpi.{t}").fetchall() if t != "kpi_targets" and t != "kpi_slice_members"
                           else con.execute(f"select * from kpi.{t}").fetchall())
                for t in ("kpi_values", "kpi_status", "kpi_targets", "kpi_slice_members")}
    finally:
        con.close()


def test_an_incremental_run_with_late_rows_equals_a_full_refresh(tmp_path):
    """Late orders in the last month (a new channel among them: new combination slices and members) and in the
    month before it (within lookback 1): the incremental run's tables equal a --full-refresh's."""
    late = [(9001, dt.datetime(2026, 4, 20), "EU", "phone", 3, 40.0), (9002, dt.datetime(2026, 3, 28), "US", "web", 1, 25.0),
            (9003, dt.datetime(2026, 4, 21), None, "phone", 2, 5.0)]
    roots = []
    for name in ("incremental", "full"):
        root = tmp_path / name
        project = duckdb_project(root, order_rows())
        assert project.run(as_of=AS_OF).status == "success"
        load_data(root / "wh.duckdb", late)
        assert Project.load(root).run(full_refresh=name == "full", as_of=AS_OF).status == "success"
        roots.append(root)
    incremental, full = (tables_of(r) for r in roots)
    assert incremental == full
    assert ("rev", COMBO, "EU · phone", "channel", "phone") in incremental["kpi_slice_members"]


def test_the_combinations_enter_the_definition_hash(tmp_path):
    project = duckdb_project(tmp_path / "p", order_rows(range(1, 2)))
    before = project.plan().kpis["rev"].definition_hash
    kpis = tmp_path / "p" / "kpis" / "kpis.yml"
    for changed in ("dimensions: [region, [channel, region]]", "dimensions: [region]", "dimensions: [region, [region, channel, customer_id]]"):
        kpis.write_text(KPIS.replace("dimensions: [region, [region, channel]]", changed), encoding="utf-8")
        assert Project.load(tmp_path / "p").plan().kpis["rev"].definition_hash != before, changed
    kpis.write_text(KPIS, encoding="utf-8")
    assert Project.load(tmp_path / "p").plan().kpis["rev"].definition_hash == before


def test_show_and_the_docs_data_label_a_combination(tmp_path):
    from click.testing import CliRunner

    from kpimetrics.cli import main
    from kpimetrics.docs.data import Slice

    root = tmp_path / "p"
    assert duckdb_project(root, order_rows()).run(as_of=AS_OF).status == "success"
    out = CliRunner().invoke(main, ["show", "rev", "--project-dir", str(root)], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "region=EU · channel=web" in out.output and "region=(null) · channel=store·front" in out.output
    assert "region=US " in out.output  # a single slice beside them
    s = Slice(COMBO, "(null) · store··front", dt.date(2026, 4, 1), 1.0, None, "no_target")
    assert s.members == [("region", "(null)"), ("channel", "store·front")]
    assert s.label == "region=(null) · channel=store·front"
    assert Slice("region", "EU", dt.date(2026, 4, 1), 1.0, None, "no_target").members == [("region", "EU")]


@pytest.mark.parametrize("values", [["EU", "web"], ["a · b", "·"], ["··", " · "], ["", ""], ["x·", "·y", "z"]])
def test_a_combination_text_decodes_to_its_members(values):
    assert combinations.members(combinations.encode(values)) == values


# --- the metric form: a metric of dbt's semantic layer, by a combination through an entity join -----------

@pytest.mark.dbt
def test_a_metric_kpi_by_a_combination_equals_group_by(semantic_shop, tmp_path):
    """MetricFlow's revenue (sum of amount) by order__channel × customer__region (a dimension through the
    customer entity's join): each slice equals the orders joined to their customers, GROUP BY channel, region."""
    from test_semantic import cli, fetch, kpimetrics_project

    dbt = semantic_shop.copy(tmp_path)
    kpimetrics_project(dbt, [kpi("revenue", "metric: revenue\ngrain: [month]\n"
                                            "dimensions: [order__channel, [order__channel, customer__region]]\ntarget: 1")])
    out = cli(dbt, "run", "--as-of", "2025-07-15")
    assert out.exit_code == 0, out.output
    combo = "order__channel × customer__region"
    got = fetch(dbt, f"""
        select v.period_start, c.member_value, r.member_value, v.value from kpi.kpi_values v
        join kpi.kpi_slice_members c on c.name = v.name and c.dimension = v.dimension
            and c.dimension_value = v.dimension_value and c.member = 'order__channel'
        join kpi.kpi_slice_members r on r.name = v.name and r.dimension = v.dimension
            and r.dimension_value = v.dimension_value and r.member = 'customer__region'
        where v.dimension = '{combo}'""")
    want = fetch(dbt, """
        select date_trunc('month', o.ordered_at)::date, coalesce(o.channel, '(null)'), coalesce(c.region, '(null)'),
               sum(o.amount)
        from main.orders o left join main.customers c on c.customer_id = o.customer_id group by all""")
    assert len(want) > 10 and rounded(got) == rounded(want)
