"""kpimetrics inside a dbt project, end to end (SPEC §8, issue 19), against what real dbt built.

The session's dbt project (tests/dbt/shop, built by dbt-duckdb: see dbt_env.py) gets a kpimetrics project
at its root, in a subfolder, or beside it (`dbt.project_dir`). Their KPIs read the mart with `ref('orders')`,
the dbt source with `source('raw', ...)` (not declared in kpimetrics' own sources), the seed, the snapshot,
both versions of the versioned model, the local package's model, the ephemeral models and kpimetrics' own
models over dbt's; every value in kpi_values equals a hand-written query over the tables dbt built (the
relation written by hand, never taken from the manifest). dbt's profiles.yml is used unchanged (dbt-only keys,
a relative DuckDB path), found beside dbt_project.yml or through $DBT_PROFILES_DIR, the profile named by
dbt_project.yml; dbt's files are never read as kpimetrics', and dbt's target/ is left as dbt wrote it.
README's new-user flow (`dbt parse`, then kpimetrics) works. Bad inputs exit 1 with their code at their file
and line (parsed from the `path:line:col: error[CODE]` output, not matched on wording): unknown refs and
sources with "did you mean", column typos over dbt nodes, a missing or unsupported manifest, a manifest for
another adapter, an ephemeral model without compiled SQL, a relation dropped or never built by dbt.

Each test works on a copy of the build (DbtShop.copy), so the tests can run in any order and change it.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from dbt_env import DbtShop, run_dbt, tree_digest
from helpers_run import kpi, kpis_yml, strategy_yml
from kpimetrics.cli import main

AS_OF = "2026-03-15"  # after the shop's last order (February 2026)

# `path:line:col: level[CODE]: message` (a whole file: `path: level[CODE]: message`)
ISSUE = re.compile(r"^(?P<path>[^\s:][^:]*?)(?::(?P<line>\d+):(?P<col>\d+))?: "
                   r"(?P<level>error|warning)\[(?P<code>[A-Z]+\d+)\]: (?P<message>.*)$")


@dataclass(frozen=True)
class Shown:
    path: str
    line: int
    level: str
    code: str
    message: str


def issues(output: str) -> list[Shown]:
    """The issues printed in `output`; an issue's `hint:` line, which follows it, is part of what it says."""
    found: list[Shown] = []
    for text in output.splitlines():
        m = ISSUE.match(text.strip())
        if m:
            found.append(Shown(m["path"], int(m["line"] or 0), m["level"], m["code"], m["message"]))
        elif found and text.startswith("  hint: "):
            last = found[-1]
            found[-1] = Shown(last.path, last.line, last.level, last.code, f"{last.message}\n{text.strip()}")
    return found


def with_code(output: str, code: str) -> list[Shown]:
    return [i for i in issues(output) if i.code == code]


def cli(root: Path, *args: str):
    return CliRunner().invoke(main, [*args, "--project-dir", str(root)])


def json_run(root: Path, *args: str) -> tuple[int, dict, list[dict]]:
    """`kpimetrics run --log-format json`: exit code, the run's result and the issues it printed."""
    out = CliRunner().invoke(main, ["run", "--as-of", AS_OF, *args, "--project-dir", str(root), "--log-format", "json"])
    assert out.exception is None or isinstance(out.exception, SystemExit), out.output
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    result = next((line for line in lines if "run_id" in line and "results" in line), None)
    assert result is not None, out.output
    return out.exit_code, result, [line for line in lines if "code" in line and "level" in line]


def line_of(path: Path, text: str) -> int:
    """The 1-based line of `path` holding `text` (exactly one)."""
    lines = [i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line]
    assert len(lines) == 1, (path, text, lines)
    return lines[0]


# --- the KPIs and their hand-written oracles ------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """A KPI of the test projects and the query that must give its values: `relation` is hand-written
    (the schema `{s}` is dbt's target schema: main on DuckDB, analytics on PostgreSQL), never taken from
    dbt's manifest, so a wrong resolution gives other numbers."""

    name: str
    model: str
    relation: str
    time: str
    measure: str
    where: str = "true"
    dimensions: tuple[str, ...] = ()

    def yaml(self) -> str:
        body = f"model: {self.model}\ntime: {self.time}\nmeasure: {self.measure}\n"
        if self.where != "true":
            body += f"filter: {self.where}\n"
        if self.dimensions:
            body += f"dimensions: [{', '.join(self.dimensions)}]\n"
        return kpi(self.name, body + "target: 1\n")

    def expected(self, fetch, schema: str) -> dict[tuple[str, str | None], dict]:
        """{(dimension, dimension_value): {period_start: value}} at the month grain, '' the total."""
        out = {}
        relation = self.relation.format(s=schema)
        for dim in ("", *self.dimensions):
            key = f"coalesce(cast({dim} as varchar), '(null)')" if dim else "cast(null as varchar)"
            rows = fetch(f"select cast(date_trunc('month', {self.time}) as date) as p, {key} as d, {self.measure} "
                         f"from {relation} where ({self.where}) and {self.time} is not null group by 1, 2")
            for period, value_of, value in rows:
                if value is not None:
                    out.setdefault((dim, value_of), {})[period] = round(float(value), 6)
        return out


ROOT_CASES = (
    Case("revenue", "ref('orders')", "{s}_marts.orders", "ordered_at", "sum(amount)", "is_completed",
         ("channel", "region_name")),
    Case("raw_returns", "source('raw', 'orders')", "raw.orders", "ordered_at", "count(*)", "status = 'returned'"),
    Case("signups", "source('raw', 'customers')", "raw.customer_accounts", "signed_up_at", "count(*)",
         dimensions=("tier",)),
    Case("regions_opened", "ref('regions')", "{s}.regions", "opened_on", "count(*)", dimensions=("country",)),
    Case("current_customers", "ref('customers_snapshot')", "{s}.customers_snapshot", "signed_up_at", "count(*)",
         "dbt_valid_to is null", ("tier",)),
    Case("customers_first_version", "ref('customers', v=1)", "{s}_marts.customers_v1", "signed_up_at", "count(*)",
         dimensions=("region_code",)),
    Case("premium_customers", "ref('customers')", "{s}_marts.customers_v2", "signed_up_at", "count(*)",
         "is_premium", ("region_name",)),
    Case("package_orders", "ref('shop_pkg', 'orders')", "{s}.pkg_orders", "ordered_at", "sum(amount)"),
    Case("tiers_latest", "ref('customer_tiers')", "{s}_marts.customer_tiers_v1", "signed_up_at", "count(*)",
         dimensions=("tier",)),
    Case("tiers_preview", "ref('customer_tiers', v=2)", "{s}_marts.customer_tiers_preview", "signed_up_at",
         "count(*)", "is_upper", ("tier",)),
    Case("package_revenue", "ref('shop_pkg', 'order_days')", '{s}."PkgOrderDays"', "order_date", "sum(revenue)"),
    Case("completed_average", "ref('completed_orders')",
         "(select * from {s}.stg_orders where status = 'completed') as c", "ordered_at", "avg(amount)",
         dimensions=("channel",)),
    Case("large_orders", "ref('large_completed_orders')",
         "(select * from {s}.stg_orders where status = 'completed' and amount >= 100) as l", "ordered_at",
         "sum(amount)", dimensions=("channel",)),
    Case("large_by_raw_channel", "ref('large_with_raw')",
         "(select c.order_id, c.ordered_at, c.amount, r.channel as raw_channel "
         "from (select * from {s}.stg_orders where status = 'completed' and amount >= 100) as c "
         "join raw.orders as r on r.id = c.order_id) as x", "ordered_at", "count(*)", dimensions=("raw_channel",)),
    Case("whole_euros", "ref('order_euros')",
         "(select id as order_id, ordered_at, amount_cents / 100 as whole_euros from raw.orders) as e", "ordered_at",
         "sum(whole_euros)"),
    Case("country_revenue", "ref('orders_by_country')",
         "{s}_marts.orders as o left join {s}.regions as r on r.region_name = o.region_name", "ordered_at",
         "sum(amount)", "is_completed", ("country",)),
)
# a dbt source whose identifier dbt does not quote (quoting: {identifier: false}): Customer_Accounts, unquoted
ACCOUNTS = Case("accounts", "source('raw', 'accounts')", "raw.customer_accounts", "signed_up_at", "count(*)")
# kpimetrics' own model at the root (kpi_models/ beside dbt_project.yml), over dbt's mart and seed
ORDERS_BY_COUNTRY_SQL = """\
select o.order_id, o.ordered_at, o.amount, o.is_completed, r.country
from {{ ref('orders') }} as o
left join {{ ref('regions') }} as r on r.region_name = o.region_name
"""
# ... and over dbt's ephemeral model (itself over another) and dbt's source
LARGE_WITH_RAW_SQL = """\
select c.order_id, c.ordered_at, c.amount, r.channel as raw_channel
from {{ ref('large_completed_orders') }} as c
join {{ source('raw', 'orders') }} as r on r.id = c.order_id
"""
ROOT_MODELS = {"orders_by_country.sql": ORDERS_BY_COUNTRY_SQL, "large_with_raw.sql": LARGE_WITH_RAW_SQL}

SUB_CASES = (
    Case("web_revenue", "ref('web_orders')", "(select * from {s}_marts.orders where channel = 'web') as w",
         "ordered_at", "sum(amount)"),
    # kpimetrics' own models/stg_orders.sql wins over dbt's model of that name
    Case("returned_amount", "ref('stg_orders')", "(select * from {s}_marts.orders where status = 'returned') as r",
         "ordered_at", "sum(amount)"),
    Case("orders_by_region", "ref('orders')", "{s}_marts.orders", "ordered_at", "count(*)",
         dimensions=("region_name",)),
    Case("raw_returns", "source('raw', 'orders')", "raw.orders", "ordered_at", "count(*)", "status = 'returned'"),
)
SUB_MODELS = {
    "web_orders.sql": "select order_id, ordered_at, amount from {{ ref('orders') }} where channel = 'web'\n",
    "stg_orders.sql": "select order_id, ordered_at, amount from {{ ref('orders') }} where status = 'returned'\n",
}


def kpimetrics_yml(name: str, output_schema: str, dialect: str = "duckdb") -> str:
    # no `profile:`: dbt_project.yml names it
    return textwrap.dedent(f"""\
        name: {name}
        dialect: {dialect}
        output_schema: {output_schema}
        defaults: {{grain: month, lookback: 1}}
    """)


def write_kpis(folder: Path, cases, *, name: str, output_schema: str, dialect: str = "duckdb",
               models: dict[str, str] | None = None, models_dir: str = "kpi_models") -> Path:
    """A kpimetrics project in `folder` (the dbt project's root, or a folder inside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kpimetrics.yml").write_text(kpimetrics_yml(name, output_schema, dialect), encoding="utf-8")
    (folder / "strategy.yml").write_text(strategy_yml(["grow_sales"]), encoding="utf-8")
    (folder / "kpis").mkdir(exist_ok=True)
    (folder / "kpis" / "shop.yml").write_text(kpis_yml(*(c.yaml() for c in cases)), encoding="utf-8")
    for file, sql in (models or {}).items():
        (folder / models_dir).mkdir(exist_ok=True)
        (folder / models_dir / file).write_text(sql, encoding="utf-8")
    return folder


def root_project(shop: Path, cases=ROOT_CASES, *, output_schema: str = "kpi", **kw) -> Path:
    kw.setdefault("models", ROOT_MODELS)
    return write_kpis(shop, cases, name="shop_kpis", output_schema=output_schema, **kw)


def product_values(fetch, name: str) -> dict[tuple[str, str | None], dict]:
    out = {}
    for dim, value_of, period, value in fetch(
            "select dimension, dimension_value, period_start, value from kpi_out.kpi_values "
            f"where name = '{name}' and grain = 'month' and value is not null"):
        out.setdefault((dim, value_of), {})[period] = round(float(value), 6)
    return out


def assert_values(fetch, cases, schema: str, output_schema: str) -> None:
    for case in cases:
        expected = case.expected(fetch, schema)
        assert expected and all(expected.values()), f"{case.name}: the oracle found no rows"
        actual = product_values(lambda sql: fetch(sql.replace("kpi_out.", f"{output_schema}.")), case.name)
        assert actual == expected, f"{case.name}: kpi_values differ from the hand-written query"


def duckdb_fetch(shop: Path):
    def fetch(sql: str) -> list[tuple]:
        con = duckdb.connect(str(shop / "shop.duckdb"), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    return fetch


def assert_ran(out) -> None:
    assert out.exit_code == 0, out.output
    assert not [i for i in issues(out.output) if i.level == "error"], out.output


# --- values --------------------------------------------------------------------------------------

def test_at_the_dbt_root_every_kind_of_dbt_node_gives_the_values_of_hand_written_sql(dbt_shop: DbtShop, tmp_path):
    shop = root_project(dbt_shop.copy(tmp_path))
    dbt_target = tree_digest(shop / "target")

    compiled = cli(shop, "compile")
    assert_ran(compiled)
    # dbt's files (dbt_project.yml, packages.yml, models/**/schema.yml, seeds/properties.yml, snapshots/, target/,
    # dbt_packages/, logs/) are not kpimetrics files: no issue at all points into them
    dbt_owned = ("dbt_project.yml", "packages.yml", "package-lock.yml", "models/", "seeds/", "snapshots/", "target/",
                 "dbt_packages/", "logs/")
    assert not [i for i in issues(compiled.output) if i.path.startswith(dbt_owned)], compiled.output

    out = cli(shop, "run", "--as-of", AS_OF)
    assert_ran(out)
    assert_values(duckdb_fetch(shop), ROOT_CASES, "main", "kpi")
    assert_ran(cli(shop, "docs", "generate"))

    # kpimetrics writes its own target beside dbt's and leaves dbt's as dbt wrote it
    assert (shop / "kpi_target" / "manifest.json").is_file()
    assert tree_digest(shop / "target") == dbt_target


def test_in_a_subfolder_with_dbt_profiles_dir(dbt_shop: DbtShop, tmp_path, monkeypatch):
    """A kpimetrics project in a folder of the dbt repo: the dbt project is found above it, the profile
    through $DBT_PROFILES_DIR (profiles.yml moved out of the repo) and named by dbt_project.yml; its own
    models/ and target/ are its folder's, and its model of a dbt model's name wins over dbt's."""
    shop = dbt_shop.copy(tmp_path / "repo")
    profiles = tmp_path / "dbt_profiles"
    profiles.mkdir()
    shutil.move(shop / "profiles.yml", profiles / "profiles.yml")
    monkeypatch.setenv("DBT_PROFILES_DIR", str(profiles))
    sub = write_kpis(shop / "analytics" / "kpi", SUB_CASES, name="sub_kpis", output_schema="kpi_sub",
                     models=SUB_MODELS, models_dir="models")
    dbt_target = tree_digest(shop / "target")

    out = cli(sub, "run", "--as-of", AS_OF)
    assert_ran(out)
    assert_values(duckdb_fetch(shop), SUB_CASES, "main", "kpi_sub")
    assert (sub / "target" / "manifest.json").is_file()
    assert tree_digest(shop / "target") == dbt_target
    assert not (shop / "kpi_target").exists()


def test_beside_the_dbt_project_through_dbt_project_dir(dbt_shop: DbtShop, tmp_path):
    """kpimetrics in a sibling folder of the dbt project (repo/kpis beside repo/shop), pointed at it by
    `dbt: {project_dir: ../shop}`."""
    shop = dbt_shop.copy(tmp_path / "repo")
    kpis = tmp_path / "repo" / "kpis"
    write_kpis(kpis, SUB_CASES, name="side_kpis", output_schema="kpi_side", models=SUB_MODELS, models_dir="models")
    with (kpis / "kpimetrics.yml").open("a", encoding="utf-8") as f:
        f.write("dbt: {project_dir: ../shop}\n")
    dbt_target = tree_digest(shop / "target")
    assert_ran(cli(kpis, "run", "--as-of", AS_OF))
    assert_values(duckdb_fetch(shop), SUB_CASES, "main", "kpi_side")
    assert (kpis / "target" / "manifest.json").is_file() and tree_digest(shop / "target") == dbt_target


@pytest.mark.parametrize("ref", ["ref('customers', v=1)", "ref('customers', version=1)",
                                 "ref('shop', 'customers', v=1)"])
def test_versioned_and_package_refs_inside_a_kpimetrics_model(dbt_shop: DbtShop, tmp_path, ref):
    """SPEC §8: ref('package', 'name') and ref('name', v=2) work "in a KPI's `model:` or in a kpimetrics
    model", as in dbt, whose ref() takes the package first and the version as v= or version=."""
    shop = dbt_shop.copy(tmp_path)
    cases = (
        Case("north_customers", "ref('north_customers')",
             "(select * from main_marts.customers_v1 where region_code = 'N') as n", "signed_up_at", "count(*)"),
        Case("package_days", "ref('package_days')", '(select * from main."PkgOrderDays" where orders > 1) as p',
             "order_date", "sum(revenue)"),
    )
    root_project(shop, cases, models={
        "north_customers.sql": f"select * from {{{{ {ref} }}}} where region_code = 'N'\n",
        "package_days.sql": "select * from {{ ref('shop_pkg', 'order_days') }} where orders > 1\n"})
    out = cli(shop, "run", "--as-of", AS_OF)
    assert_ran(out)
    assert_values(duckdb_fetch(shop), cases, "main", "kpi")


def test_dbts_folders_named_in_dbt_project_yml_are_left_alone(dbt_shop: DbtShop, tmp_path):
    """dbt_project.yml's own paths (here model-paths: [transform, more_models], seed-paths: [data]) are dbt's:
    their schema files, which kpimetrics would refuse (unknown keys `version`, `models`, `seeds`), are not
    read, while kpimetrics' own files beside them are."""
    shop = dbt_shop.copy(tmp_path)
    shutil.move(shop / "models", shop / "transform")
    shutil.move(shop / "seeds", shop / "data")
    (shop / "more_models").mkdir()
    shutil.copy(shop / "transform" / "marts" / "schema.yml", shop / "more_models" / "schema.yml")
    project_yml = shop / "dbt_project.yml"
    text = project_yml.read_text(encoding="utf-8").replace('model-paths: ["models"]',
                                                           "model-paths: [transform, more_models]")
    project_yml.write_text(text.replace('seed-paths: ["seeds"]', "seed-paths: [data]"), encoding="utf-8")
    root_project(shop, (REVENUE, SIGNUPS), models={})
    out = cli(shop, "run", "--as-of", AS_OF)
    assert_ran(out)
    assert not [i for i in issues(out.output) if i.path.startswith(("transform/", "more_models/", "data/"))], out.output
    assert_values(duckdb_fetch(shop), (REVENUE, SIGNUPS), "main", "kpi")

    # the same files in a folder dbt does not own are kpimetrics': the unknown keys are errors there
    shutil.copytree(shop / "more_models", shop / "notes")
    out = cli(shop, "compile")
    assert out.exit_code == 1 and [i for i in issues(out.output) if i.path == "notes/schema.yml"], out.output


def test_kpimetrics_seed_beside_dbt_loads_kpi_seeds_and_leaves_dbts_seeds(dbt_shop: DbtShop, tmp_path):
    """`kpimetrics seed` at the dbt root loads kpimetrics' own seeds folder (kpi_seeds/, the default beside
    dbt_project.yml) and not dbt's seeds/ (regions.csv stays dbt's: 4 rows, its own columns)."""
    shop = dbt_shop.copy(tmp_path)
    root_project(shop, (REVENUE,), models={})
    (shop / "kpi_seeds").mkdir()
    (shop / "kpi_seeds" / "channel_goals.csv").write_text("channel,goal\nweb,1000\nmobile,400\nstore,250\n",
                                                        encoding="utf-8")
    regions = duckdb_fetch(shop)("select * from main.regions order by region_code")
    out = cli(shop, "seed")
    assert out.exit_code == 0, out.output
    assert sorted(duckdb_fetch(shop)("select channel, goal from main.channel_goals")) == \
        [("mobile", 400), ("store", 250), ("web", 1000)]
    assert duckdb_fetch(shop)("select * from main.regions order by region_code") == regions


def test_subfolder_with_a_relative_duckdb_path_in_dbts_profile(dbt_shop: DbtShop, tmp_path):
    """dbt-duckdb resolves `path: shop.duckdb` against the folder dbt runs in, the dbt project's: so must
    kpimetrics for a profile it found in the dbt project folder, from a project in a subfolder of it (not a
    new, empty shop.duckdb in the subfolder)."""
    shop = dbt_shop.copy(tmp_path)
    (shop / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: shop.duckdb, threads: 4}\n", encoding="utf-8")
    sub = write_kpis(shop / "kpi", SUB_CASES, name="sub_kpis", output_schema="kpi_sub", models=SUB_MODELS,
                     models_dir="models")
    out = cli(sub, "run", "--as-of", AS_OF)
    assert_ran(out)
    assert_values(duckdb_fetch(shop), SUB_CASES, "main", "kpi_sub")
    assert not (sub / "shop.duckdb").exists()


def test_dbt_target_path_of_dbt_project_yml_and_dbt_target_path(dbt_shop: DbtShop, tmp_path, monkeypatch):
    """The manifest is read from the target path dbt_project.yml sets, and from $DBT_TARGET_PATH over it."""
    shop = dbt_shop.copy(tmp_path)
    project_yml = shop / "dbt_project.yml"
    project_yml.write_text(project_yml.read_text(encoding="utf-8").replace("target-path: target",
                                                                             "target-path: dbt_out"), encoding="utf-8")
    shutil.move(shop / "target", shop / "dbt_out")
    cases = (REVENUE, SIGNUPS)
    root_project(shop, cases, models={})
    assert_ran(cli(shop, "run", "--as-of", AS_OF))
    assert_values(duckdb_fetch(shop), cases, "main", "kpi")
    assert not (shop / "target").exists()

    shutil.move(shop / "dbt_out", shop / "elsewhere")
    monkeypatch.setenv("DBT_TARGET_PATH", "elsewhere")
    assert_ran(cli(shop, "compile"))


def test_kpimetrics_own_source_wins_over_dbts_source_of_that_name(dbt_shop: DbtShop, tmp_path):
    """source('raw', 'orders') is kpimetrics' own when its sources: declare it (here: the mart, which has
    `amount`; dbt's raw.orders has only amount_cents)."""
    shop = dbt_shop.copy(tmp_path)
    case = Case("own_source", "source('raw', 'orders')", "main_marts.orders", "ordered_at", "sum(amount)")
    root_project(shop, (case,), models={})
    (shop / "sources.yml").write_text(textwrap.dedent("""\
        sources:
          - name: raw
            schema: main_marts
            tables:
              - name: orders
                columns: [order_id, ordered_at, amount, status, channel]
    """), encoding="utf-8")
    assert_ran(cli(shop, "run", "--as-of", AS_OF))
    assert_values(duckdb_fetch(shop), (case,), "main", "kpi")


def test_a_dbt_source_identifier_dbt_does_not_quote(dbt_shop: DbtShop, tmp_path):
    shop = dbt_shop.copy(tmp_path)
    root_project(shop, (ACCOUNTS,), models={})
    assert_ran(cli(shop, "run", "--as-of", AS_OF))
    assert_values(duckdb_fetch(shop), (ACCOUNTS,), "main", "kpi")


def test_other_spellings_of_ref(dbt_shop: DbtShop, tmp_path):
    """dbt's other ways to write a ref: the root package named, `version=` for `v=`, a version as text."""
    shop = dbt_shop.copy(tmp_path)
    cases = (
        Case("root_package", "ref('shop', 'orders')", "main_marts.orders", "ordered_at", "sum(amount)"),
        Case("version_keyword", "ref('customers', version=1)", "main_marts.customers_v1", "signed_up_at",
             "count(*)", dimensions=("region_code",)),
        Case("version_text", "\"ref('customers', v='1')\"", "main_marts.customers_v1", "signed_up_at", "count(*)",
             dimensions=("region_code",)),
        Case("latest_named", "ref('customers', v=2)", "main_marts.customers_v2", "signed_up_at", "count(*)",
             dimensions=("region_name",)),
    )
    root_project(shop, cases, models={})
    assert_ran(cli(shop, "run", "--as-of", AS_OF))
    assert_values(duckdb_fetch(shop), cases, "main", "kpi")


def test_a_changed_ephemeral_model_recomputes_every_period(dbt_shop: DbtShop, tmp_path):
    """An ephemeral model is part of the KPI's definition (its SQL is inlined): when dbt's SQL for it changes,
    the next run, incremental, recomputes every period, not only the lookback (which would leave the
    earlier months computed by the old SQL)."""
    shop = dbt_shop.copy(tmp_path)
    case = next(c for c in ROOT_CASES if c.name == "large_orders")
    root_project(shop, (case,), models={})
    assert_ran(cli(shop, "run", "--as-of", AS_OF))
    assert_values(duckdb_fetch(shop), (case,), "main", "kpi")

    model = shop / "models" / "staging" / "large_completed_orders.sql"
    model.write_text(model.read_text(encoding="utf-8").replace("amount >= 100", "amount >= 200"), encoding="utf-8")
    run_dbt(shop, "compile")
    changed = Case(case.name, case.model, case.relation.replace("amount >= 100", "amount >= 200"), case.time,
                   case.measure, dimensions=case.dimensions)
    before, after = (c.expected(duckdb_fetch(shop), "main")[("", None)] for c in (case, changed))
    first = min(before)
    assert before[first] != after[first], "the change must move a month outside the lookback, or this proves nothing"
    assert_ran(cli(shop, "run", "--as-of", AS_OF))
    assert_values(duckdb_fetch(shop), (changed,), "main", "kpi")


def test_daily_dbt_build_then_an_incremental_run(dbt_shop: DbtShop, tmp_path):
    """The daily job: new raw rows, `dbt build`, `kpimetrics run`. Nothing of the definitions changed, so the
    run is incremental (dbt rewriting its manifest does not change a KPI's hash) and has March's values."""
    shop = dbt_shop.copy(tmp_path)
    cases = tuple(c for c in ROOT_CASES if c.name in ("revenue", "raw_returns", "package_revenue", "large_orders",
                                                       "country_revenue"))
    root_project(shop, cases)
    assert_ran(cli(shop, "run", "--as-of", AS_OF))
    con = duckdb.connect(str(shop / "shop.duckdb"))
    con.execute("insert into raw.orders values (900, 3, timestamp '2026-03-02 10:00:00', 'completed', 12345, 'web'), "
                "(901, 7, timestamp '2026-03-03 11:30:00', 'returned', 2200, 'store'), "
                "(902, 1, timestamp '2026-02-27 09:15:00', 'completed', 31000, 'mobile')")
    con.close()
    run_dbt(shop, "build", "--exclude", "refunds")
    code, result, _ = json_run(shop)
    assert code == 0 and result["status"] == "success", result
    assert {k["name"]: k["mode"] for k in result["results"]} == {c.name: "incremental" for c in cases}, result
    assert_values(duckdb_fetch(shop), cases, "main", "kpi")
    assert dt.date(2026, 3, 1) in product_values(lambda sql: duckdb_fetch(shop)(sql.replace("kpi_out.", "kpi.")),
                                              "revenue")[("", None)]


def test_a_new_user_after_dbt_parse_alone(dbt_shop: DbtShop, tmp_path):
    """README's worked example in a fresh checkout: `dbt parse` (no catalog.json, no compiled code), then a
    kpimetrics.yml of one line and one file of KPIs beside dbt_project.yml, then `kpimetrics run`. A column
    dbt's schema file does not document (channel) is a warning (KPI146) at its line, and the run works."""
    shop = dbt_shop.copy(tmp_path)
    shutil.rmtree(shop / "target")
    run_dbt(shop, "parse")
    assert not (shop / "target" / "catalog.json").exists()
    (shop / "kpimetrics.yml").write_text("name: shop_kpis\n", encoding="utf-8")
    kpis = shop / "kpis.yml"
    kpis.write_text(textwrap.dedent("""\
        mission: Make online shopping effortless for small businesses
        priorities:
          - name: growth
            owner: ceo@shop.example
            strategies:
              - {name: grow_repeat_purchases, owner: vp-sales@shop.example}
        kpis:
          - name: net_revenue
            owner: vp-sales@shop.example
            strategy: grow_repeat_purchases
            indicator: lagging
            model: ref('orders')
            time: ordered_at
            measure: sum(amount)
            filter: status = 'completed'
            dimensions: [channel]
            target: 100000
            actions: Review the promotion calendar with marketing
    """), encoding="utf-8")
    out = cli(shop, "run", "--as-of", AS_OF)
    assert_ran(out)
    warned = with_code(out.output, "KPI146")
    assert [(i.path, i.line, i.level) for i in warned] == [("kpis.yml", line_of(kpis, "dimensions: [channel]"),
                                                            "warning")], out.output
    case = Case("net_revenue", "", "main_marts.orders", "ordered_at", "sum(amount)", "status = 'completed'",
                ("channel",))
    assert_values(duckdb_fetch(shop), (case,), "main", "kpi")


# --- bad inputs: exit 1, the code, at its file and line ----------------------------------------------

REVENUE = next(c for c in ROOT_CASES if c.name == "revenue")
SIGNUPS = next(c for c in ROOT_CASES if c.name == "signups")


def one_kpi(shop: Path, case: Case) -> Path:
    root_project(shop, (case,), models={})
    return shop / "kpis" / "shop.yml"


def test_unknown_dbt_ref_is_kpi031_at_the_model_line_with_a_suggestion(dbt_shop: DbtShop, tmp_path):
    shop = dbt_shop.copy(tmp_path)
    kpis = one_kpi(shop, Case("typo", "ref('ordrs')", "", "ordered_at", "sum(amount)"))
    out = cli(shop, "compile")
    assert out.exit_code == 1, out.output
    [found] = with_code(out.output, "KPI031")
    assert (found.path, found.line) == ("kpis/shop.yml", line_of(kpis, "model: ref('ordrs')")), out.output
    assert found.level == "error" and "did you mean" in found.message.lower() and "orders" in found.message


@pytest.mark.parametrize("model, code, meant", [
    ("ref('customers', v=3)", "KPI031", "2"),             # a version the model does not have
    ("ref('shop_pkg', 'customers')", "KPI031", None),     # the root's model, named in the package
    ("source('raw', 'ordres')", "KPI032", "orders"),      # a dbt source's table
    ("source('rw', 'orders')", "KPI032", "raw"),          # a dbt source
])
def test_unknown_dbt_node_is_an_error_at_the_model_line(dbt_shop: DbtShop, tmp_path, model, code, meant):
    shop = dbt_shop.copy(tmp_path)
    kpis = one_kpi(shop, Case("typo", model, "", "ordered_at", "count(*)"))
    out = cli(shop, "compile")
    assert out.exit_code == 1, out.output
    [found] = with_code(out.output, code)
    assert (found.path, found.line, found.level) == ("kpis/shop.yml", line_of(kpis, f"model: {model}"), "error"), \
        out.output
    if meant:
        assert meant in found.message, out.output


TIME_OF = {"ref('orders')": "ordered_at", "ref('shop_pkg', 'order_days')": "order_date", "ref('regions')": "opened_on"}


@pytest.mark.parametrize("model, field, typo, meant", [
    ("ref('orders')", "measure", "sum(amout)", "amount"),                         # a documented column
    ("ref('orders')", "dimensions", "[chanel]", "channel"),                        # known from catalog.json only
    ("ref('customers', v=1)", "filter", "is_premium", None),                       # only the latest version has it
    ("ref('shop_pkg', 'order_days')", "measure", "sum(revenu)", "revenue"),         # the package's model
    ("source('raw', 'customers')", "time", "signed_up", "signed_up_at"),           # a dbt source (catalog.json)
    ("ref('customers_snapshot')", "filter", "dbt_valid_too is null", "dbt_valid_to"),  # the snapshot's own column
    ("ref('regions')", "dimensions", "[contry]", "country"),                      # the seed
])
def test_column_typo_over_a_dbt_model_is_kpi033_at_the_snippet(dbt_shop: DbtShop, tmp_path, model, field, typo, meant):
    shop = dbt_shop.copy(tmp_path)
    fields = {"model": model, "time": TIME_OF.get(model, "signed_up_at"), "measure": "count(*)", field: typo}
    body = "".join(f"{k}: {v}\n" for k, v in fields.items())
    root_project(shop, (), models={})
    kpis = shop / "kpis" / "shop.yml"
    kpis.write_text(kpis_yml(kpi("typo", body + "target: 1\n")), encoding="utf-8")
    out = cli(shop, "compile")
    assert out.exit_code == 1, out.output
    found = with_code(out.output, "KPI033")
    assert found, out.output
    assert {(i.path, i.line) for i in found} == {("kpis/shop.yml", line_of(kpis, f"{field}: {typo}"))}, out.output
    if meant:
        assert any(meant in i.message for i in found), out.output


def test_no_manifest_is_kpi141_naming_dbt_parse(dbt_shop: DbtShop, tmp_path):
    shop = dbt_shop.copy(tmp_path)
    shutil.rmtree(shop / "target")  # dbt never parsed this checkout
    kpis = one_kpi(shop, REVENUE)
    out = cli(shop, "compile")
    assert out.exit_code == 1, out.output
    found = with_code(out.output, "KPI141")
    assert found and all(i.level == "error" for i in found), out.output
    assert ("kpis/shop.yml", line_of(kpis, "model: ref('orders')")) in {(i.path, i.line) for i in found}, out.output
    assert all("dbt parse" in i.message for i in found), out.output


def edit_manifest(shop: Path, **metadata: str) -> Path:
    """Change keys of the manifest's `metadata`, the file kept as dbt writes it: one line of JSON, so an issue
    about the manifest as a whole is at its line 1."""
    path = shop / "target" / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["metadata"].update(metadata)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    assert "\n" not in path.read_text(encoding="utf-8")
    return path


def test_manifest_of_an_unsupported_dbt_version_is_kpi142_naming_both_versions(dbt_shop: DbtShop, tmp_path):
    shop = dbt_shop.copy(tmp_path)
    edit_manifest(shop, dbt_schema_version="https://schemas.getdbt.com/dbt/manifest/v9.json")
    one_kpi(shop, REVENUE)
    out = cli(shop, "compile")
    assert out.exit_code == 1, out.output
    [found] = with_code(out.output, "KPI142")
    assert (found.path, found.line) == ("target/manifest.json", 1), out.output
    assert found.level == "error" and "v9" in found.message and "v12" in found.message, out.output


def test_manifest_for_another_adapter_warns_kpi143_on_run(dbt_shop: DbtShop, tmp_path):
    shop = dbt_shop.copy(tmp_path)
    edit_manifest(shop, adapter_type="snowflake")
    root_project(shop, (REVENUE, SIGNUPS), models={})
    code, result, shown = json_run(shop)
    found = [i for i in shown if i["code"] == "KPI143"]
    assert found and all(i["level"] == "warning" for i in found), shown
    assert {(i["path"], i["line"]) for i in found} == {("target/manifest.json", 1)}, found
    assert all("snowflake" in i["message"] and "duckdb" in i["message"] for i in found), found
    # only a warning: the relations exist in the warehouse, so the run computes them
    assert code == 0 and result["status"] == "success", result


def test_relation_dropped_after_dbt_built_it_fails_that_kpi_kpi145(dbt_shop: DbtShop, tmp_path):
    shop = dbt_shop.copy(tmp_path)
    con = duckdb.connect(str(shop / "shop.duckdb"))
    con.execute("drop table main_marts.orders")
    con.close()
    root_project(shop, (REVENUE, SIGNUPS), models={})
    code, result, _ = json_run(shop)
    assert code == 1 and result["status"] == "partial", result
    by_name = {k["name"]: k for k in result["results"]}
    assert by_name["signups"]["status"] == "success", result
    assert by_name["revenue"]["status"] == "error", result
    assert by_name["revenue"]["error"].startswith("KPI145: dbt's ref('orders') "), result  # the code, the node
    # the other KPI is published, with the values of the hand-written query
    assert_values(duckdb_fetch(shop), (SIGNUPS,), "main", "kpi")


def test_relation_dbt_has_not_built_fails_that_kpi_kpi145(dbt_shop: DbtShop, tmp_path):
    """The mart `refunds` is in the manifest but was left out of `dbt build`."""
    shop = dbt_shop.copy(tmp_path)
    root_project(shop, (REVENUE, Case("refunds", "ref('refunds')", "", "ordered_at", "sum(amount)"), SIGNUPS),
                 models={})
    code, result, _ = json_run(shop)
    assert code == 1 and result["status"] == "partial", result
    by_name = {k["name"]: k for k in result["results"]}
    assert [by_name[n]["status"] for n in ("revenue", "refunds", "signups")] == ["success", "error", "success"]
    assert by_name["refunds"]["error"].startswith("KPI145: dbt's ref('refunds') "), result
    assert_values(duckdb_fetch(shop), (REVENUE, SIGNUPS), "main", "kpi")


def test_a_dropped_relation_under_an_ephemeral_model_is_kpi145_naming_it(dbt_shop: DbtShop, tmp_path):
    """The ephemeral model has no relation of its own: the one missing is the view it reads (stg_orders)."""
    shop = dbt_shop.copy(tmp_path)
    con = duckdb.connect(str(shop / "shop.duckdb"))
    con.execute("drop view main.stg_orders")
    con.close()
    completed = next(c for c in ROOT_CASES if c.name == "completed_average")
    root_project(shop, (completed, SIGNUPS), models={})
    code, result, _ = json_run(shop)
    assert code == 1 and result["status"] == "partial", result
    by_name = {k["name"]: k for k in result["results"]}
    assert (by_name["completed_average"]["status"], by_name["signups"]["status"]) == ("error", "success"), result
    error = by_name["completed_average"]["error"]
    assert error.startswith("KPI145: dbt's ref('stg_orders') "), result


def test_ephemeral_model_without_compiled_sql_is_kpi144(dbt_shop: DbtShop, tmp_path):
    shop = dbt_shop.copy(tmp_path)
    shutil.rmtree(shop / "target")
    run_dbt(shop, "parse")  # a manifest without compiled code
    manifest = json.loads((shop / "target" / "manifest.json").read_text(encoding="utf-8"))
    assert not manifest["nodes"]["model.shop.completed_orders"].get("compiled_code")
    kpis = one_kpi(shop, next(c for c in ROOT_CASES if c.name == "completed_average"))
    out = cli(shop, "compile")
    assert out.exit_code == 1, out.output
    found = with_code(out.output, "KPI144")
    assert found and all(i.level == "error" for i in found), out.output
    assert {(i.path, i.line) for i in found} == {("kpis/shop.yml", line_of(kpis, "model: ref('completed_orders')"))}, \
        out.output
