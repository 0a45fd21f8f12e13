"""Targets per slice and targets from a warehouse table (SPEC §10), checked against hand-written SQL.

One small shop (three stores and orders with no store, January to June 2026) and a budget table
(finance.budget: one row per month and store for two KPIs, April missing, Denver never budgeted, February's
Brooklyn budget in two lines, one of them dated mid-month, a March line with no store) run on DuckDB,
PostgreSQL and Spark. The expected targets are written below as SQL from SPEC §2 and §10, not from the
generator: the statuses follow §2's rules (threshold = target - |target| * tolerance; value >= target:
on_track; value >= threshold: at_risk; else off_track; no target: no_target).

- rev_slices: per-slice targets: a number (Brooklyn), a schedule (Chicago), a per-grain mapping (Denver: a number
  for quarters, a relative target for months, whose baseline is Denver's own), and the slice of NULL stores
  (`null:` in YAML names the slice '(null)'); the total keeps its own per-grain target.
- rev_budget: a table target by store at month (block style, `table:` unquoted), with a filter; the total's
  target is the sum of all the month's rows; Chicago listed in slice_targets keeps its own target; quarter has
  none (a table gives targets at its grain only).
- rev_budget_model: the budget read through a model, `table: "ref('budget_lines')"` (its SQL joined in as a CTE).
- rev_budget_total: a table target without dimensions, `grain:` left to its default (the KPI's first grain,
  quarter), and `slice_targets: true`, so each store gets the quarter's total budget; month has none.
"""
from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

import engines
from helpers_projects import write_project
from helpers_run import kpi, kpis_yml, oracle_project, run_on_engine
from kpimetrics import Project
from kpimetrics.cli import main

AS_OF = dt.date(2026, 7, 1)
# each store's monthly revenue (January to June 2026); every month's amount is split over two orders
MONTHLY = {
    "Brooklyn": [40, 38, 30, 45, 39, 41],
    "Chicago": [30, 27, 31, 36, 33, 30],
    "Denver": [20, 22, 25, 18, 21, 24],
}
NULL_STORE = {2: 5.0}  # orders without a store: February only
# (kpi, period_start, store_name, amount): the budget lines
BUDGET = [
    *[("net_revenue", dt.date(2026, m, 1), "Brooklyn", a) for m, a in ((1, 40), (3, 32), (5, 40), (6, 40))],
    ("net_revenue", dt.date(2026, 2, 1), "Brooklyn", 20),
    ("net_revenue", dt.date(2026, 2, 15), "Brooklyn", 18),  # a second line of February, dated mid-month
    *[("net_revenue", dt.date(2026, m, 1), "Chicago", a) for m, a in ((1, 29), (2, 28), (3, 30), (5, 34), (6, 31))],
    ("net_revenue", dt.date(2026, 3, 1), None, 3),  # a line without a store: only the total's
    *[("other_kpi", dt.date(2026, m, 1), s, 1000) for m in range(1, 7) for s in ("Brooklyn", "Chicago", "Denver")],
]

KPIS = kpis_yml(
    kpi("rev_slices", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        grain: [month, quarter]
        dimensions: [store]
        target: {month: 100, quarter: 300}
        tolerance: 10%
        slice_targets:
          store:
            Brooklyn: 40
            Chicago:
              schedule:
                - {from: 2026-01-01, value: 30}
                - {from: 2026-04-01, value: 35}
            Denver:
              quarter: 65
              month: {baseline: {from: 2026-01-01, to: 2026-03-31}, change: 10%, by: 2026-06-30, path: step}
            null: {value: 4}
    """, strategy="s_targets"),
    kpi("rev_budget", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        grain: [month, quarter]
        dimensions: [store]
        target:
          table: source('finance', 'budget')
          period: period_start
          value: amount
          filter: kpi = 'net_revenue'
          grain: month
          dimensions: {store: store_name}
        tolerance: 5%
        slice_targets:
          store:
            Chicago: 25
    """, strategy="s_targets"),
    kpi("rev_budget_model", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        target: {table: "ref('budget_lines')", period: period_start, value: amount, filter: "kpi = 'net_revenue'"}
    """, strategy="s_targets"),
    kpi("rev_budget_total", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        grain: [quarter, month]
        dimensions: [store]
        target: {table: "source('finance', 'budget')", period: period_start, value: amount, filter: "kpi = 'net_revenue'"}
        slice_targets: true
    """, strategy="s_targets"),
)

SOURCES = """
sources:
  - name: shop
    schema: {schema}
    tables:
      - name: orders
        columns: [order_id, ordered_at, store, amount]
  - name: finance
    schema: {schema}
    tables:
      - name: budget
        columns: [kpi, period_start, store_name, amount]
"""


def project_files(profiles: str, source_schema: str = "main", output_schema: str = "kpi", kpis: str = KPIS) -> dict:
    return oracle_project("slice_targets", "s_targets", SOURCES, kpis, profiles, source_schema, output_schema, files={
        "models/budget_lines.sql": "select kpi, period_start, store_name, amount from {{ source('finance', 'budget') }}"})


def order_rows(months: range = range(1, 7)) -> list[tuple]:
    rows, oid = [], 0
    for m in months:
        day = dt.datetime(2026, m, 3, 10)
        month = [(store, amounts[m - 1]) for store, amounts in MONTHLY.items()]
        month += [(None, NULL_STORE[m])] if m in NULL_STORE else []
        for store, amount in month:
            for half in (0, 1):
                oid += 1
                rows.append((oid, day + dt.timedelta(days=7 * half), store, amount / 2))
    return rows


def load_data(path: Path, months: range = range(1, 7)) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("create table if not exists main.orders (order_id integer, ordered_at timestamp, store varchar, "
                    "amount double)")
        con.executemany("insert into main.orders values (?, ?, ?, ?)", order_rows(months))
        con.execute("create table if not exists main.budget (kpi varchar, period_start date, store_name varchar, "
                    "amount double)")
        if not con.execute("select count(*) from main.budget").fetchone()[0]:
            con.executemany("insert into main.budget values (?, ?, ?, ?)", BUDGET)
    finally:
        con.close()


# --- the expected tables, by hand -------------------------------------------------------------------

EXPECTED_SQL = """
create or replace temp view x_values as
    select 'month' as grain, date_trunc('month', ordered_at)::date as period_start, '' as dimension,
           null::varchar as dimension_value, sum(amount) as value from main.orders group by all
    union all
    select 'month', date_trunc('month', ordered_at)::date, 'store', coalesce(store, '(null)'), sum(amount)
    from main.orders group by all
    union all
    select 'quarter', date_trunc('quarter', ordered_at)::date, '', null, sum(amount) from main.orders group by all
    union all
    select 'quarter', date_trunc('quarter', ordered_at)::date, 'store', coalesce(store, '(null)'), sum(amount)
    from main.orders group by all;

create or replace temp view x_budget as
    select date_trunc('month', period_start)::date as month, date_trunc('quarter', period_start)::date as quarter,
           store_name, amount
    from main.budget where kpi = 'net_revenue';

create or replace temp view x_targets as
    -- rev_slices: the total per grain; Brooklyn a number, Chicago a schedule, Denver per grain, NULL 4
    select 'rev_slices' as name, grain, period_start, dimension, dimension_value,
           case when dimension = '' then (case grain when 'month' then 100.0 else 300.0 end)
                when dimension_value = 'Brooklyn' then 40.0
                when dimension_value = 'Chicago' then (case when period_start >= date '2026-04-01' then 35.0 else 30.0 end)
                when dimension_value = 'Denver' and grain = 'quarter' then 65.0
                -- a relative target (step): 10% over the mean of Denver's own months of the first quarter
                when dimension_value = 'Denver' and period_start >= date '2026-04-01' then 1.1 * (
                    select avg(value) from x_values b where b.grain = 'month' and b.dimension_value = 'Denver'
                    and b.period_start < date '2026-04-01')
                when dimension_value = '(null)' then 4.0 end as target,
           0.10 as tolerance,
           case when dimension = '' then 'value' when dimension_value = 'Chicago' then 'schedule'
                when dimension_value = 'Denver' and grain = 'month' then 'relative' else 'value' end
               as target_source
    from x_values
    union all
    -- rev_budget: month only; the total from every line of the month, each store from its own lines, Chicago 25
    select 'rev_budget', v.grain, v.period_start, v.dimension, v.dimension_value,
           case when v.dimension = 'store' and v.dimension_value = 'Chicago' then 25.0
                when v.grain <> 'month' then null
                when v.dimension = '' then (select sum(amount) from x_budget b where b.month = v.period_start)
                else (select sum(amount) from x_budget b where b.month = v.period_start
                      and b.store_name = v.dimension_value) end,
           0.05,
           case when v.dimension_value = 'Chicago' then 'value' else 'table' end
    from x_values v
    union all
    -- rev_budget_model: the same lines through a model (ref()), for the total at month (its only grain)
    select 'rev_budget_model', v.grain, v.period_start, v.dimension, v.dimension_value,
           (select sum(amount) from x_budget b where b.month = v.period_start), 0.0, 'table'
    from x_values v where v.grain = 'month' and v.dimension = ''
    union all
    -- rev_budget_total: quarter only (its first grain); every store gets the quarter's total
    select 'rev_budget_total', v.grain, v.period_start, v.dimension, v.dimension_value,
           case when v.grain = 'quarter' then (select sum(amount) from x_budget b where b.quarter = v.period_start) end,
           0.0, 'table'
    from x_values v;

create or replace temp view x_status as
    select t.name, v.*, t.target, t.target_source, t.target - abs(t.target) * t.tolerance as at_risk_threshold,
           case when t.target is null then 'no_target'
                when v.value >= t.target then 'on_track'
                when v.value >= t.target - abs(t.target) * t.tolerance then 'at_risk'
                else 'off_track' end as status,
           v.value / nullif(t.target, 0) as attainment
    from x_values v join x_targets t on v.grain = t.grain and v.period_start = t.period_start
        and v.dimension = t.dimension and v.dimension_value is not distinct from t.dimension_value;
"""

KEY = "name, grain, period_start, dimension, dimension_value"


def expected(con, sql: str) -> list[tuple]:
    con.execute(EXPECTED_SQL)
    return con.execute(sql).fetchall()


def rounded(rows: list[tuple]) -> list[tuple]:
    return sorted((tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in rows), key=repr)


def check_tables(con) -> None:
    """kpi_targets and kpi_status as the hand-written SQL has them."""
    want_targets = expected(con, f"select {KEY}, target, at_risk_threshold, target_source from x_status "
                                 "where target is not null")
    got_targets = con.execute(f"select {KEY}, target, at_risk_threshold, target_source from kpi.kpi_targets "
                              "where target is not null").fetchall()
    assert rounded(got_targets) == rounded(want_targets)
    want_status = expected(con, f"select {KEY}, value, target, at_risk_threshold, status, attainment from x_status")
    got_status = con.execute(f"select {KEY}, value, target, at_risk_threshold, status, attainment "
                             "from kpi.kpi_status").fetchall()
    assert rounded(got_status) == rounded(want_status)


# --- the project run on each engine -------------------------------------------------------------------

@pytest.fixture(scope="module", params=engines.VALUE_ENGINES)
def ran(request, tmp_path_factory):
    """The project run once on each engine; a DuckDB connection holding the sources and the output tables."""
    engine = engines.make_engine(request.param, request, tmp_path_factory)
    root = tmp_path_factory.mktemp(f"slice_targets_{engine.name}")
    write_project(root, project_files(engine.profiles_yml(root), engine.source_schema, engine.output_schema))
    load_data(root / "wh.duckdb")
    run_on_engine(root, engine, ("orders", "budget"), AS_OF, copy_back=True)
    con = duckdb.connect(str(root / "wh.duckdb"))
    yield con
    con.close()


def test_targets_and_statuses_match_the_hand_written_sql(ran):
    check_tables(ran)


def test_the_cases_written_out(ran):
    """A few rows literally, as a check on the hand-written SQL itself."""
    def row(name, grain, start, dimension="", value=None):
        found = ran.execute("select target, status from kpi.kpi_status where name = ? and grain = ? and period_start = ? "
                            "and dimension = ? and dimension_value is not distinct from ?",
                            [name, grain, start, dimension, value]).fetchall()
        assert len(found) == 1, (name, grain, start, dimension, value, found)
        return found[0]

    d = dt.date
    assert row("rev_slices", "month", d(2026, 2, 1), "store", "Brooklyn") == (40.0, "at_risk")  # 38 >= 36
    assert row("rev_slices", "month", d(2026, 2, 1), "store", "Chicago") == (30.0, "at_risk")  # 27: the threshold
    assert row("rev_slices", "month", d(2026, 6, 1), "store", "Chicago") == (35.0, "off_track")  # 30 < 31.5
    assert row("rev_slices", "month", d(2026, 1, 1), "store", "Denver") == (None, "no_target")  # in the baseline
    target, status = row("rev_slices", "month", d(2026, 5, 1), "store", "Denver")
    assert (round(target, 9), status) == (round(1.1 * (20 + 22 + 25) / 3, 9), "off_track")  # 21 < 24.57 * 0.9
    assert row("rev_slices", "quarter", d(2026, 4, 1), "store", "Denver") == (65.0, "at_risk")  # 63
    assert row("rev_slices", "month", d(2026, 2, 1), "store", "(null)") == (4.0, "on_track")  # 5
    assert row("rev_budget", "month", d(2026, 2, 1), "store", "Brooklyn") == (38.0, "on_track")  # 20 + 18
    assert row("rev_budget", "month", d(2026, 4, 1), "store", "Brooklyn") == (None, "no_target")  # no April line
    assert row("rev_budget", "month", d(2026, 3, 1)) == (32.0 + 30.0 + 3.0, "on_track")  # the line without a store too
    assert row("rev_budget", "month", d(2026, 5, 1), "store", "Denver") == (None, "no_target")
    assert row("rev_budget", "month", d(2026, 5, 1), "store", "Chicago") == (25.0, "on_track")
    assert row("rev_budget", "quarter", d(2026, 1, 1)) == (None, "no_target")
    assert row("rev_budget_total", "quarter", d(2026, 4, 1), "store", "Denver")[0] == 40 + 40 + 34 + 31
    assert row("rev_budget_total", "month", d(2026, 5, 1))[0] is None


# --- incremental runs -------------------------------------------------------------------------------

WITHOUT_RUN = {"kpi_targets": "*", "kpi_status": "* exclude (run_id)"}


def snapshot(root: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(root / "wh.duckdb"), read_only=True)
    try:
        return {t: rounded(con.execute(f"select {cols} from kpi.{t}").fetchall()) for t, cols in WITHOUT_RUN.items()}
    finally:
        con.close()


def test_an_incremental_run_equals_a_full_refresh(tmp_path):
    """Targets are recomputed from the YAML and the budget table on every run, values incrementally: after new
    orders and a new budget line, an incremental run writes what --full-refresh writes, and both what the
    hand-written SQL expects."""
    root = write_project(tmp_path, project_files(engines.duckdb_engine().profiles_yml(tmp_path)))
    load_data(root / "wh.duckdb", range(1, 4))
    project = Project.load(root)
    assert project.run(full_refresh=True, as_of=dt.date(2026, 4, 1)).status == "success"
    load_data(root / "wh.duckdb", range(4, 7))
    con = duckdb.connect(str(root / "wh.duckdb"))
    con.execute("insert into main.budget values ('net_revenue', date '2026-05-01', 'Denver', 19)")
    con.close()
    result = Project.load(root).run(as_of=AS_OF)
    assert result.status == "success" and {k.mode for k in result.kpis} == {"incremental"}
    incremental = snapshot(root)
    with duckdb.connect(str(root / "wh.duckdb")) as con:
        check_tables(con)
        assert con.execute("select target from kpi.kpi_targets where name = 'rev_budget' and grain = 'month' and "
                           "period_start = date '2026-05-01' and dimension_value = 'Denver'").fetchall() == [(19.0,)]
    assert Project.load(root).run(full_refresh=True, as_of=AS_OF).status == "success"
    assert snapshot(root) == incremental


def changed(old: str, new: str) -> str:
    """KPIS with the first `old` replaced by `new` (which must be there: a case that changes nothing tests nothing)."""
    assert old in KPIS, old
    return KPIS.replace(old, new, 1)


# --- the YAML: slice values as text -----------------------------------------------------------------

def test_slice_values_are_text(tmp_path):
    """YAML reads `7:` as a number and `2026-01-01:` as a date; a slice value is text, so they name '7' and
    '2026-01-01' (and `null:` the slice of NULL, '(null)')."""
    kpis = changed("        null: {value: 4}\n", "        null: {value: 4}\n        7: 1\n        2026-01-01: 2\n        true: 3\n")
    root = write_project(tmp_path, project_files(engines.duckdb_engine().profiles_yml(tmp_path), kpis=kpis))
    project = Project.load(root)
    assert [i for i in project.validate(today=AS_OF) if i.level.value == "error"] == []
    store = project.definition.kpi_by_name["rev_slices"].slice_targets["store"]
    assert list(store) == ["Brooklyn", "Chicago", "Denver", "(null)", "7", "2026-01-01", "true"]


# --- errors: code, file and line --------------------------------------------------------------------

def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line of `text` holding `needle`."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def errors_of(tmp_path: Path, kpis: str) -> list[str]:
    root = write_project(tmp_path, project_files(engines.duckdb_engine().profiles_yml(tmp_path), kpis=kpis))
    out = CliRunner().invoke(main, ["validate", "--project-dir", str(root)])
    assert out.exit_code == 1, out.output
    assert "Traceback" not in out.output
    return [line for line in out.output.replace(f"{root}/", "").splitlines() if "error[" in line]


def has_error(lines: list[str], code: str, line: int, message: str) -> bool:
    return any(l.startswith(f"kpis/kpis.yml:{line}:") and f"error[{code}]" in l and message in l for l in lines)


ERROR_CASES = [
    # (code, the change to KPIS, the text on the error's line, the message)
    ("KPI150", ("      store:\n        Brooklyn: 40", "      stor:\n        Brooklyn: 40"), "stor:",
     "`slice_targets` names dimension 'stor', which the KPI is not sliced by; did you mean 'store'?"),
    ("KPI005", ("      filter: kpi = 'net_revenue'\n", "      filtr: kpi = 'net_revenue'\n"), "filtr:",
     "unknown key 'filtr' in KPI 'rev_budget'; did you mean 'filter'?"),
    ("KPI007", ("      grain: month\n", "      grain: monthly\n"), "grain: monthly",
     "invalid value for 'target.grain': expected 'day', 'week', 'month', 'quarter' or 'year' (got 'monthly')"),
    ("KPI007", ("      store:\n        Chicago: 25", "      store: 25"), "store: 25",
     "invalid value for 'slice_targets.store': Input should be a valid dictionary"),
    ("KPI150", ("dimensions: {store: store_name}", "dimensions: {shop: store_name}"), "dimensions: {shop",
     "`target.dimensions` names dimension 'shop', which the KPI is not sliced by"),
    ("KPI151", ("table: source('finance', 'budget')", "table: budget"), "table: budget",
     "the target `table` must be source('source', 'table') or ref('model'), got 'budget'"),
    ("KPI151", ("table: source('finance', 'budget')", "table: source('finance', 'budgets')"), "'budgets'",
     "the target `table` source('finance', 'budgets'): source 'finance' has no table 'budgets'; did you mean "
     "'budget'?"),
    ("KPI151", ("table: source('finance', 'budget')", "table: ref('budget')"), "ref('budget')",
     "the target `table` ref('budget'): unknown model ref('budget')"),
    ("KPI152", ("value: amount\n", "value: amout\n"), "value: amout",
     "column 'amout' in `target.value` is not a column of source('finance', 'budget'); did you mean 'amount'?"),
    ("KPI152", ("dimensions: {store: store_name}", "dimensions: {store: store}"), "dimensions: {store: store}",
     "column 'store' in `target.dimensions.store` is not a column of source('finance', 'budget')"),
    ("KPI152", ("filter: kpi = 'net_revenue'\n", "filter: kpii = 'net_revenue'\n"), "filter: kpii",
     "column 'kpii' in `target.filter` is not a column of source('finance', 'budget'); did you mean 'kpi'?"),
    ("KPI152", ("value: amount\n", "value: amount * 1000\n"), "value: amount * 1000",
     "`target.value` must name a column of source('finance', 'budget'), got 'amount * 1000'"),
    ("KPI153", ("        Chicago: 25", "        Chicago: {table: \"source('finance', 'budget')\", period: "
                                          "period_start, value: amount}"), "Chicago: {table",
     "a table target must be written directly under `target:`, not per slice"),
    ("KPI154", ("      grain: month\n", "      grain: week\n"), "grain: week",
     "the target table gives week periods, but the KPI is computed at month, quarter only"),
    ("KPI042", ("filter: kpi = 'net_revenue'\n", "filter: sum(amount) > 0\n"), "filter: sum(amount)",
     "`target.filter` uses an aggregate"),
    ("KPI110", ("filter: kpi = 'net_revenue'\n", "filter: \"kpi = 'x'; drop table main.budget\"\n"), "drop table",
     "`target.filter`: holds a `;`"),
    ("KPI111", ("filter: kpi = 'net_revenue'\n", "filter: \"kpi in (select * from read_csv('/etc/passwd'))\"\n"),
     "read_csv", "`target.filter`: holds a subquery"),
    ("KPI120", ("filter: kpi = 'net_revenue'\n", "filter: \"length(read_text('/etc/passwd')) > 0\"\n"),
     "read_text", "`target.filter` calls `read_text('/etc/passwd')`, which reads files on the machine"),
]


def test_a_slice_target_for_a_grain_the_kpi_lacks_warns(tmp_path):
    """As a per-grain `target` does (KPI056): the warning names the slice, at the grain's line."""
    kpis = changed("      quarter: 65\n", "      quarter: 65\n          week: 5\n")
    root = write_project(tmp_path, project_files(engines.duckdb_engine().profiles_yml(tmp_path), kpis=kpis))
    out = CliRunner().invoke(main, ["validate", "--project-dir", str(root)])
    assert out.exit_code == 0, out.output
    assert f"kpis/kpis.yml:{line_of(kpis, 'week: 5')}:11: warning[KPI056]: KPI 'rev_slices': `slice_targets` sets grain " \
           "'week' for store 'Denver', but the KPI is computed at month, quarter only" in out.output.replace(f"{root}/", "")


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: f"{c[0]}-{c[2]}")
def test_errors_name_their_code_file_and_line(case, tmp_path):
    code, (old, new), on_line, message = case
    kpis = changed(old, new)
    lines = errors_of(tmp_path, kpis)
    assert has_error(lines, code, line_of(kpis, on_line), message), "\n".join(lines)


@pytest.mark.parametrize("engine_name", ["duckdb", "postgres"])
def test_a_target_table_missing_from_the_warehouse_fails_its_kpis_alone(engine_name, request, tmp_path_factory):
    """The table is read while publishing; one that is not there fails the KPIs whose target it is before then,
    with the warehouse's reason, and they keep their rows; the others publish (a partial run). On PostgreSQL too,
    where the failed read must not spoil the run's connection."""
    engine = engines.make_engine(engine_name, request, tmp_path_factory)
    root = tmp_path_factory.mktemp(f"missing_table_{engine_name}")
    write_project(root, project_files(engine.profiles_yml(root), engine.source_schema, engine.output_schema))
    load_data(root / "wh.duckdb")
    project = Project.load(root)
    adapter = project.connect()
    try:
        if not engine.embedded:
            engines.copy_sources(root / "wh.duckdb", adapter, engine.source_schema, ("orders", "budget"))
        assert project.run(full_refresh=True, as_of=AS_OF).status == "success"
        rows = f"select {KEY}, target from {engine.output_schema}.kpi_targets"
        before = rounded(adapter.fetchall(rows))
        adapter.execute(f"alter table {engine.source_schema}.budget rename to budget_old")
    finally:
        adapter.close()
    result = Project.load(root).run(full_refresh=True, as_of=AS_OF)
    assert result.status == "partial"
    failed = {k.name: k.error for k in result.kpis if k.status != "success"}
    assert set(failed) == {"rev_budget", "rev_budget_total", "rev_budget_model"}  # the model reads it too
    assert failed["rev_budget"].startswith("its target table source('finance', 'budget') cannot be read: ")
    assert failed["rev_budget_model"].startswith("its target table ref('budget_lines') cannot be read: ")
    adapter = project.connect()
    try:
        after = rounded(adapter.fetchall(rows))
    finally:
        adapter.close()
    assert [r for r in after if r[0] != "rev_slices"] == [r for r in before if r[0] != "rev_slices"]
    assert [r for r in after if r[0] == "rev_slices"] == [r for r in before if r[0] == "rev_slices"] != []
