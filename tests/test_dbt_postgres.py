"""kpimetrics inside a dbt project built with dbt-postgres (SPEC §8, issue 19), on the suite's PostgreSQL.

The same dbt project as test_dbt_project.py (tests/dbt/shop), built by dbt-postgres into a database of the
throwaway server (dbt_env.dbt_pg_shop) through a profile written for dbt: the password from env_var(), and
keys kpimetrics has no use for (threads, keepalives_idle, connect_timeout, retries). kpimetrics uses that
profiles.yml unchanged, finds the profile name in dbt_project.yml, and its values equal hand-written SQL over
the tables dbt built (schemas analytics, analytics_marts and raw). The copies of the build share the one
database, so each test writes to an output schema of its own.
"""
from __future__ import annotations

import shutil
import uuid

from dbt_env import DbtShop, tree_digest
from test_dbt_project import (ACCOUNTS, AS_OF, ROOT_CASES, SUB_CASES, SUB_MODELS, Case, assert_ran, assert_values, cli,
                              json_run, root_project, write_kpis)


def pg_fetch(server, dbname: str):
    def fetch(sql: str) -> list[tuple]:
        with server.connect(dbname) as con:
            return con.execute(sql).fetchall()
    return fetch


def schema() -> str:
    return f"kpi_{uuid.uuid4().hex[:8]}"


def test_at_the_dbt_root_on_postgres_values_equal_hand_written_sql(dbt_pg_shop: DbtShop, pg_server, tmp_path):
    shop = dbt_pg_shop.copy(tmp_path)
    output = schema()
    root_project(shop, output_schema=output, dialect="postgres")
    dbt_target = tree_digest(shop / "target")

    out = cli(shop, "run", "--as-of", AS_OF)
    assert_ran(out)
    assert_values(pg_fetch(pg_server, dbt_pg_shop.dbname), ROOT_CASES, "analytics", output)
    assert tree_digest(shop / "target") == dbt_target
    # the password (from env_var() in dbt's profile) is nowhere kpimetrics writes
    password = pg_server.password
    assert password not in out.output
    for path in (shop / "kpi_target").rglob("*"):
        assert not path.is_file() or password not in path.read_text(encoding="utf-8", errors="replace"), path


def test_dbt_sql_keeps_the_warehouses_meaning_whatever_the_projects_dialect(dbt_pg_shop: DbtShop, pg_server,
                                                                           tmp_path):
    """kpimetrics.yml without `dialect:` (DuckDB, the default) over dbt-postgres: dbt's compiled SQL of an
    ephemeral model is PostgreSQL's, and its integer division (amount_cents / 100) must stay integer division,
    not be read as DuckDB's and rewritten as a division of doubles."""
    shop = dbt_pg_shop.copy(tmp_path)
    output = schema()
    cases = tuple(c for c in ROOT_CASES if c.name in ("whole_euros", "revenue", "completed_average"))
    root_project(shop, cases, output_schema=output, models={})
    (shop / "kpimetrics.yml").write_text(f"name: shop_kpis\noutput_schema: {output}\n", encoding="utf-8")
    assert_ran(cli(shop, "run", "--as-of", AS_OF))
    assert_values(pg_fetch(pg_server, dbt_pg_shop.dbname), cases, "analytics", output)


def test_a_dbt_source_identifier_dbt_does_not_quote_on_postgres(dbt_pg_shop: DbtShop, pg_server, tmp_path):
    """source('raw', 'accounts') has identifier Customer_Accounts with quoting: {identifier: false}: the manifest
    records "db"."raw".Customer_Accounts, which PostgreSQL folds to raw.customer_accounts. Quoted, the name
    would be a table that does not exist."""
    shop = dbt_pg_shop.copy(tmp_path)
    output = schema()
    root_project(shop, (ACCOUNTS,), output_schema=output, dialect="postgres", models={})
    assert_ran(cli(shop, "run", "--as-of", AS_OF))
    assert_values(pg_fetch(pg_server, dbt_pg_shop.dbname), (ACCOUNTS,), "analytics", output)


def test_in_a_subfolder_on_postgres_with_dbt_profiles_dir(dbt_pg_shop: DbtShop, pg_server, tmp_path, monkeypatch):
    shop = dbt_pg_shop.copy(tmp_path / "repo")
    profiles = tmp_path / "dbt_profiles"
    profiles.mkdir()
    shutil.move(shop / "profiles.yml", profiles / "profiles.yml")
    monkeypatch.setenv("DBT_PROFILES_DIR", str(profiles))
    output = schema()
    sub = write_kpis(shop / "analytics" / "kpi", SUB_CASES, name="sub_kpis", output_schema=output,
                     dialect="postgres", models=SUB_MODELS, models_dir="models")

    out = cli(sub, "run", "--as-of", AS_OF)
    assert_ran(out)
    assert_values(pg_fetch(pg_server, dbt_pg_shop.dbname), SUB_CASES, "analytics", output)



def test_a_relation_dbt_has_not_built_fails_its_kpi_and_the_others_publish_on_postgres(dbt_pg_shop: DbtShop, pg_server,
                                                                                       tmp_path):
    """The mart `refunds` is in the manifest but was left out of `dbt build`: its KPI fails with the dbt command
    to run (KPI145), and on PostgreSQL the failed read must not abort the transaction the other KPIs need."""
    shop = dbt_pg_shop.copy(tmp_path)
    output = schema()
    cases = tuple(c for c in ROOT_CASES if c.name in ("revenue", "signups"))
    refunds = Case("refunds", "ref('refunds')", "", "ordered_at", "sum(amount)")
    root_project(shop, (cases[0], refunds, cases[1]), output_schema=output, dialect="postgres", models={})
    code, result, _ = json_run(shop)
    assert code == 1 and result["status"] == "partial", result
    by_name = {k["name"]: k for k in result["results"]}
    assert by_name["refunds"]["status"] == "error", result
    assert by_name["refunds"]["error"].startswith("KPI145: dbt's ref('refunds') "), result  # the code, the node
    assert [by_name[c.name]["status"] for c in cases] == ["success", "success"], result
    assert_values(pg_fetch(pg_server, dbt_pg_shop.dbname), cases, "analytics", output)
