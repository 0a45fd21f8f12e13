"""dbt's profiles, unchanged (SPEC §8 "Profiles" and "debug").

Outputs written for dbt-duckdb, dbt-postgres and dbt-spark, with keys only dbt uses, connect for real; the
lookup order runs through kpimetrics' places and dbt's; the profile dbt_project.yml names is the default; dbt's
`config:` block is not a profile; dbt's Jinja filters give numbers, booleans and mappings; kpimetrics' own keys
stay strict (KPI082 at the key's line), and what kpimetrics cannot follow is KPI085 / KPI086.
"""
from __future__ import annotations

import json
import os
import textwrap
import uuid
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from engines import engine_unavailable, spark_missing
from kpimetrics import Project
from kpimetrics.cli import main
from kpimetrics.errors import ConfigError

KPI_YML = "name: shop_kpis\n"
DBT_PROJECT_YML = "name: jaffle_shop\nprofile: jaffle_shop\nversion: '1.0'\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def dbt_repo(tmp_path: Path, profiles: str | None = None, kpimetrics_yml: str = KPI_YML,
             dbt_project_yml: str = DBT_PROJECT_YML) -> Path:
    """A dbt repository (dbt_project.yml at its root, profiles.yml beside it as `dbt init` leaves it for CI)
    with kpimetrics in its kpi/ folder; the kpimetrics project folder."""
    files = {"dbt_project.yml": dbt_project_yml, "models/orders.sql": "select 1 as id\n", "kpi/kpimetrics.yml": kpimetrics_yml}
    if profiles is not None:
        files["profiles.yml"] = profiles
    write(tmp_path / "repo", files)
    return tmp_path / "repo" / "kpi"


def debug(root: Path, *args: str):
    out = CliRunner().invoke(main, ["debug", "--project-dir", str(root), *args])
    return out, out.output


def config_error(project: Project):
    with pytest.raises(ConfigError) as caught:
        project.profile()
    [issue] = caught.value.issues
    return issue


def ignored_line(output: str) -> set[str]:
    [line] = [line for line in output.splitlines() if line.startswith("ignored dbt settings: ")]
    return set(line.removeprefix("ignored dbt settings: ").split(", "))


# --- each adapter's profile, unchanged, connecting for real ---------------------------------------------


DBT_DUCKDB = """
config:
  send_anonymous_usage_stats: false
jaffle_shop:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: jaffle_shop.duckdb
      schema: main
      threads: 4
      extensions: [httpfs, parquet]
      settings:
        memory_limit: 1GB
        threads: 3
        preserve_insertion_order: false
      attach:
        - path: other.duckdb
          alias: other
      keep_open: true
"""


def test_a_dbt_duckdb_profile_connects_to_the_file_dbt_built(tmp_path):
    root = dbt_repo(tmp_path, DBT_DUCKDB)
    warehouse = root.parent / "jaffle_shop.duckdb"  # where `dbt run` in the repo writes it
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE TABLE orders AS SELECT * FROM (VALUES (1, 10.0), (2, 32.5)) t(id, amount)")

    out, text = debug(root)
    assert out.exit_code == 0, text
    assert f"dbt project: jaffle_shop at {root.parent} (found at or above kpimetrics.yml" in text
    assert f"profiles.yml: {root.parent / 'profiles.yml'} (found in the dbt project folder, step 5 of 7" in text
    assert "named by dbt_project.yml" in text
    assert f"resolves against the dbt project folder (where dbt runs: the profile is in one of dbt's places): {root.parent}" in text
    assert f"connection: OK (duckdb {duckdb.__version__} at {warehouse})" in text
    # dbt-duckdb's top-level threads is how many models dbt builds at once: DuckDB's own is settings.threads
    assert ignored_line(text) == {"threads", "extensions", "settings.preserve_insertion_order", "attach", "keep_open"}
    assert "dbt manifest: " in text and "missing: run `dbt parse`" in text

    project = Project.load(root)
    prof = project.profile()
    assert (prof.output.memory_limit, prof.output.threads, prof.output.schema_) == ("1GB", 3, "main")
    adapter = project.connect()
    try:
        assert adapter.fetchall("SELECT count(*), sum(amount) FROM orders") == [(2, 42.5)]
        assert adapter.fetchall("SELECT current_setting('threads')") == [(3,)]
    finally:
        adapter.close()


def test_debug_reports_the_manifest_dbt_wrote(tmp_path):
    root = dbt_repo(tmp_path, DBT_DUCKDB)
    manifest = root.parent / "target" / "manifest.json"
    manifest.parent.mkdir()
    metadata = {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json", "dbt_version": "1.11.2",
                "generated_at": "2026-12-01T08:00:00.000000Z", "adapter_type": "postgres"}
    manifest.write_text(json.dumps({"metadata": metadata, "nodes": {}}))
    out, text = debug(root)
    assert out.exit_code == 0, text
    assert f"dbt manifest: {manifest}: dbt 1.11.2, generated at 2026-12-01T08:00:00.000000Z, adapter postgres" in text
    # a manifest of another adapter: its relation names are the other warehouse's
    assert "warning[KPI143]: dbt's manifest was written for the postgres adapter" in text


def test_a_dbt_postgres_profile_connects_with_dbt_only_keys(tmp_path, pg_server, monkeypatch):
    dbname = pg_server.create_database(f"dbt_{uuid.uuid4().hex[:10]}")
    with pg_server.connect(dbname) as con:
        con.execute("CREATE SCHEMA analytics")
        con.execute("CREATE TABLE analytics.orders AS SELECT 7 AS id, 12.5::float AS amount")
    monkeypatch.setenv("TEST_DBT_PG_USER", pg_server.user)
    monkeypatch.setenv("TEST_DBT_PG_PASSWORD", pg_server.password)
    monkeypatch.setenv("TEST_DBT_PG_PORT", str(pg_server.port))
    monkeypatch.delenv("TEST_DBT_UNSET_ROLE", raising=False)
    profiles = f"""
        config:
          partial_parse: true
        jaffle_shop:
          target: "{{{{ env_var('TEST_DBT_TARGET', 'dev') }}}}"
          outputs:
            dev:
              type: postgres
              host: {pg_server.host}
              port: "{{{{ env_var('TEST_DBT_PG_PORT') | as_number }}}}"
              user: "{{{{ env_var('TEST_DBT_PG_USER') }}}}"
              pass: "{{{{ env_var('TEST_DBT_PG_PASSWORD') }}}}"
              database: {dbname}
              schema: analytics
              threads: 4
              keepalives_idle: 0
              connect_timeout: 10
              retries: 3
              search_path: analytics,public
              role: "{{{{ env_var('TEST_DBT_UNSET_ROLE') }}}}"
              sslmode: prefer
              application_name: dbt
    """
    monkeypatch.setenv("DBT_PROFILES_DIR", str(write(tmp_path / "dbt_home", {"profiles.yml": profiles})))
    root = dbt_repo(tmp_path)
    out, text = debug(root)
    assert out.exit_code == 0, text
    assert "found in $DBT_PROFILES_DIR, step 4 of 7" in text
    assert "connection: OK (postgres" in text and f"/{dbname} " in text
    assert ignored_line(text) == {"threads", "keepalives_idle", "retries", "search_path", "role", "application_name"}
    assert pg_server.password not in text

    project = Project.load(root)
    prof = project.profile()
    assert (prof.output.port, prof.output.dbname, prof.output.schema_, prof.output.sslmode) == \
        (pg_server.port, dbname, "analytics", "prefer")
    adapter = project.connect()
    try:  # `schema` is the search path: the unqualified table is the one in analytics
        assert adapter.fetchall("SELECT current_database(), id, amount FROM orders") == [(dbname, 7, 12.5)]
    finally:
        adapter.close()


@pytest.mark.parametrize("engine", ["spark"])  # marks the test as Spark's (tests/engines.py)
def test_a_dbt_spark_session_profile_connects(tmp_path, engine, monkeypatch):
    if missing := spark_missing():
        engine_unavailable(missing)
    monkeypatch.delenv("TEST_DBT_DATABRICKS_TOKEN", raising=False)
    profiles = f"""
        jaffle_shop:
          target: dev
          outputs:
            dev:
              type: spark
              method: session
              host: NA
              schema: jaffle_{uuid.uuid4().hex[:8]}
              threads: 1
              connect_retries: 2
              token: "{{{{ env_var('TEST_DBT_DATABRICKS_TOKEN') }}}}"
              server_side_parameters:
                spark.sql.shuffle.partitions: "3"
                spark.sql.warehouse.dir: "{tmp_path / 'warehouse'}"
    """
    root = dbt_repo(tmp_path, profiles)
    project = Project.load(root)
    prof = project.profile()
    adapter = project.connect()
    try:
        assert adapter.fetchall("SELECT 1 + 1") == [(2,)]
        assert adapter.fetchall("SET spark.sql.shuffle.partitions") == [("spark.sql.shuffle.partitions", "3")]
        assert adapter.capabilities.default_schema == prof.output.schema_
    finally:
        adapter.close()
    out, text = debug(root)
    assert out.exit_code == 0, text
    assert "connection: OK (spark" in text
    assert ignored_line(text) == {"host", "threads", "connect_retries", "token"}


@pytest.mark.parametrize("method", ["thrift", "http", "odbc"])
def test_dbt_spark_over_thrift_http_or_odbc_is_kpi085_at_its_line(tmp_path, method):
    profiles = f"""
        jaffle_shop:
          target: dev
          outputs:
            dev:
              type: spark
              host: spark.example.com
              method: {method}
              port: 10001
              schema: analytics
    """
    issue = config_error(Project.load(dbt_repo(tmp_path, profiles)))
    assert (issue.code, Path(issue.location.path).name, issue.location.line) == ("KPI085", "profiles.yml", 7)
    assert f"method: '{method}' is not a way kpimetrics reaches spark" in issue.message


# --- the lookup order ---------------------------------------------------------------------------------


def test_each_step_of_the_lookup_wins_over_the_next(tmp_path, monkeypatch):
    root = dbt_repo(tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    steps = {  # in the order SPEC §8 gives
        "--profiles-dir": tmp_path / "cli",
        "$KPIMETRICS_PROFILES_DIR": tmp_path / "kpimetrics_env",
        "the kpimetrics project folder": root,
        "$DBT_PROFILES_DIR": tmp_path / "dbt_env",
        "the dbt project folder": root.parent,
        "~/.kpimetrics/": home / ".kpimetrics",
        "~/.dbt/": home / ".dbt",
    }
    for n, folder in enumerate(steps.values()):
        write(folder, {"profiles.yml": f"jaffle_shop:\n  target: dev\n  outputs:\n    dev: {{type: duckdb, path: /wh/{n}.duckdb}}\n"})
    monkeypatch.setenv("KPIMETRICS_PROFILES_DIR", str(steps["$KPIMETRICS_PROFILES_DIR"]))
    monkeypatch.setenv("DBT_PROFILES_DIR", str(steps["$DBT_PROFILES_DIR"]))
    for n, (step, folder) in enumerate(steps.items()):
        prof = Project.load(root, profiles_dir=steps["--profiles-dir"]).profile()
        assert (prof.place.step, prof.path, prof.output.path) == (step, folder / "profiles.yml", f"/wh/{n}.duckdb")
        (folder / "profiles.yml").unlink()  # the next step's file is found now
    issue = config_error(Project.load(root, profiles_dir=steps["--profiles-dir"]))
    assert issue.code == "KPI080" and issue.message == "profiles.yml not found"
    for step, folder in steps.items():  # where it looked, in order
        assert f"{folder} ({step})" in issue.hint


def test_the_dbt_project_folder_is_looked_in_only_when_there_is_one(tmp_path):
    write(tmp_path / "solo", {"kpimetrics.yml": KPI_YML})
    issue = config_error(Project.load(tmp_path / "solo"))
    assert issue.code == "KPI080"
    assert "(the dbt project folder)" not in issue.hint and "($DBT_PROFILES_DIR)" not in issue.hint  # unset: no step
    assert f"{tmp_path / 'solo'} (the kpimetrics project folder)" in issue.hint


def test_a_relative_duckdb_path_is_dbt_s_in_dbt_s_places_and_kpimetrics_in_its_own(tmp_path, monkeypatch):
    profile = "jaffle_shop:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: wh.duckdb}\n"
    root = dbt_repo(tmp_path, profile)  # in the dbt project folder: dbt's file, beside dbt_project.yml
    assert Project.load(root).profile().output.path == str(root.parent / "wh.duckdb")
    monkeypatch.setenv("DBT_PROFILES_DIR", str(write(tmp_path / "dbt_home", {"profiles.yml": profile})))
    assert Project.load(root).profile().output.path == str(root.parent / "wh.duckdb")
    write(root, {"profiles.yml": profile})  # kpimetrics' own folder: kpimetrics' file, as before
    adapter = Project.load(root).connect()
    try:
        assert adapter.path == str(root / "wh.duckdb")
    finally:
        adapter.close()


# --- the profile's name ----------------------------------------------------------------------------------


TWO_PROFILES = """
config:
  send_anonymous_usage_stats: false
other:
  target: dev
  outputs:
    dev: {type: duckdb, path: other.duckdb}
jaffle_shop:
  target: dev
  outputs:
    dev: {type: duckdb, path: jaffle.duckdb}
"""


def test_the_profile_dbt_project_yml_names_when_kpimetrics_yml_names_none(tmp_path):
    root = dbt_repo(tmp_path, TWO_PROFILES)
    prof = Project.load(root).profile()
    assert (prof.profile, prof.named_by, prof.output.path) == ("jaffle_shop", "dbt_project.yml",
                                                               str(root.parent / "jaffle.duckdb"))


def test_kpimetrics_yml_s_profile_wins_over_dbt_project_yml_s(tmp_path):
    root = dbt_repo(tmp_path, TWO_PROFILES, kpimetrics_yml="name: shop_kpis\nprofile: other\n")
    prof = Project.load(root).profile()
    assert (prof.profile, prof.named_by, prof.output.path) == ("other", "kpimetrics.yml", str(root.parent / "other.duckdb"))


def test_a_profile_dbt_project_yml_names_that_is_not_there_is_kpi080(tmp_path):
    root = dbt_repo(tmp_path, TWO_PROFILES, dbt_project_yml="name: jaffle_shop\nprofile: jaffle\n")
    issue = config_error(Project.load(root))
    assert issue.code == "KPI080" and issue.message == "profile 'jaffle' not found (profiles: jaffle_shop, other)"
    assert "dbt_project.yml names this one" in issue.hint


def test_dbt_s_config_block_is_not_a_profile(tmp_path):
    write(tmp_path / "p", {"kpimetrics.yml": KPI_YML, "profiles.yml": TWO_PROFILES.split("other:")[0] +
                           "jaffle_shop:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: j.duckdb}\n"})
    prof = Project.load(tmp_path / "p").profile()
    assert (prof.profile, prof.named_by) == ("jaffle_shop", "the only profile in the file")


# --- kpimetrics' keys stay strict; what kpimetrics cannot follow ------------------------------------------


@pytest.mark.parametrize("key, problem", [
    ("memory_limt: 1GB", "memory_limt: unknown setting; did you mean 'memory_limit'?"),
    ("keep_opn: true", "keep_opn: unknown setting; did you mean 'keep_open'?"),  # a dbt key mistyped
])
def test_a_typo_in_a_key_is_still_kpi082_at_its_line(tmp_path, key, problem):
    profiles = f"jaffle_shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: w.duckdb\n      {key}\n"
    issue = config_error(Project.load(dbt_repo(tmp_path, profiles)))
    assert (issue.code, Path(issue.location.path).name, issue.location.line) == ("KPI082", "profiles.yml", 7)
    assert issue.message == f"invalid output 'dev' in profile 'jaffle_shop': {problem}"


@pytest.mark.parametrize("output, problem", [
    ("{type: [duckdb]}", "type: unknown warehouse type \"['duckdb']\" (types: duckdb, postgres, spark)"),
    ("{type: postgres, dbname: d, pass: [1]}", "pass: "),  # named as written (pydantic's words after it)
    ("{type: spark, server_side_parameters: 5}", "server_side_parameters: "),
])
def test_a_wrong_value_is_kpi082_named_as_written(tmp_path, output, problem):
    issue = config_error(Project.load(dbt_repo(tmp_path, f"jaffle_shop:\n  target: dev\n  outputs:\n    dev: {output}\n")))
    assert (issue.code, issue.location.line) == ("KPI082", 4)
    assert issue.message.startswith(f"invalid output 'dev' in profile 'jaffle_shop': {problem}")


def test_two_names_of_one_setting_is_kpi082(tmp_path):
    profiles = ("jaffle_shop:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      dbname: a\n"
                "      database: b\n")
    issue = config_error(Project.load(dbt_repo(tmp_path, profiles)))
    assert (issue.code, issue.location.line) == ("KPI082", 7)
    assert "database and dbname both set dbname" in issue.message


def test_dbt_s_filters_give_numbers_and_mappings(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_DBT_THREADS", "3")
    monkeypatch.setenv("TEST_DBT_CONF", "{'spark.sql.ansi.enabled': 'false'}")
    profiles = """
        jaffle_shop:
          target: dev
          outputs:
            dev:
              type: duckdb
              settings: {threads: "{{ env_var('TEST_DBT_THREADS') | as_number }}"}
              path: "{{ env_var('TEST_DBT_THREADS') | as_text }}.duckdb"
            spark:
              type: spark
              conf: "{{ env_var('TEST_DBT_CONF') | as_native }}"
    """
    root = dbt_repo(tmp_path, profiles)
    output = Project.load(root).profile().output
    assert (output.threads, output.path) == (3, str(root.parent / "3.duckdb"))
    assert Project.load(root, target="spark").profile().output.conf == {"spark.sql.ansi.enabled": "false"}


@pytest.mark.parametrize("text, value", [
    ("{{ 'True' | as_bool }}", True), ("{{ 'false' | as_bool }}", False), ("{{ '8' | as_number }}", 8),
    ("{{ '2.5' | as_number }}", 2.5), ("{{ '[1, 2]' | as_native }}", [1, 2]), ("{{ '8' | as_text }}", "8"),
    ("{{ '8' }}", "8"), ("port {{ '8' | as_number }}", "port 8"),  # text unless one marked expression
])
def test_a_profile_value_is_native_only_where_a_dbt_filter_says_so(text, value):
    from kpimetrics.config import SecretRegistry
    from kpimetrics.errors import Location
    from kpimetrics.templating import TemplateContext, render

    rendered, issues = render(text, TemplateContext({}, SecretRegistry()), Location("profiles.yml", 3), native=True)
    assert issues == [] and rendered == value and type(rendered) is type(value)


@pytest.mark.parametrize("value", ["many", "true", "{'a': 1}"])
def test_as_number_of_what_is_not_a_number_is_kpi086_at_its_line(tmp_path, monkeypatch, value):
    monkeypatch.setenv("TEST_DBT_PORT", value)
    profiles = ("jaffle_shop:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      dbname: d\n"
                "      port: \"{{ env_var('TEST_DBT_PORT') | as_number }}\"\n")
    issue = config_error(Project.load(dbt_repo(tmp_path, profiles)))
    assert (issue.code, issue.location.line) == ("KPI086", 7)
    assert issue.message == f"as_number: the value ({len(value)} characters) is not a number"


def test_as_bool_of_what_is_not_true_or_false_is_kpi086():
    from kpimetrics.config import SecretRegistry
    from kpimetrics.errors import Location
    from kpimetrics.templating import TemplateContext, render

    _, [issue] = render("{{ 'yes' | as_bool }}", TemplateContext({}, SecretRegistry()), Location("profiles.yml", 9),
                        native=True)
    assert (issue.code, issue.location.line, issue.message) == ("KPI086", 9, "as_bool: the value (3 characters) is "
                                                                            "not true or false")


def test_a_secret_in_an_as_number_value_is_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_DBT_PORT", "s3cr3t-port")
    profiles = ("jaffle_shop:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      dbname: d\n"
                "      port: \"{{ env_var('TEST_DBT_PORT') | as_number }}\"\n")
    out, text = debug(dbt_repo(tmp_path, profiles))
    assert out.exit_code == 1 and "error[KPI086]" in text and "s3cr3t-port" not in text, text


def test_kpimetrics_own_profiles_see_no_change(tmp_path):
    write(tmp_path / "p", {"kpimetrics.yml": "name: shop\nprofile: acme\n",
                           "profiles.yml": "acme:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: wh.duckdb}\n"})
    out, text = debug(tmp_path / "p")
    assert out.exit_code == 0, text
    assert "dbt project: none" in text and "ignored dbt settings" not in text
    assert "resolves against the kpimetrics project folder: " + str(tmp_path / "p") in text
    assert os.path.exists(tmp_path / "p" / "wh.duckdb")
