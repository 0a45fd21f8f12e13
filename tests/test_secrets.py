"""Secrets: a value that comes from env_var() (in the profile, in a model, in a source's
schema) never appears in target/, run_results.json, stdout/stderr (text or JSON logs),
error messages, tracebacks (--debug) or the output tables, whether the command
succeeds or fails.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from kpimetrics import Project
from kpimetrics.errors import WarehouseError
from helpers_run import AS_OF, insert_orders, kpi, kpis_yml, make_orders, query, write_run_project

SECRET = "s3ntinel-Pa55word-7f3a9c"
ENV = {"KPIM_SECRET": SECRET}

# a KPI whose SQL carries the secret and fails in the warehouse with a message quoting it
LEAKY = kpi("leaky", """
    model: ref('secret_orders')
    time: ordered_at
    measure: sum(amount)
    target: 10
""")
FAILING = kpi("failing", """
    model: ref('secret_orders')
    time: ordered_at
    measure: sum(cast(token as integer))
    target: 10
""")
MODEL = """select *, '{{ env_var("KPIM_SECRET") }}' as token
from {{ source('shop', 'orders') }}
where status <> '{{ env_var("KPIM_SECRET") }}'
"""


def cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kpimetrics", *args, "--project-dir", str(root)],
                          capture_output=True, text=True, env={**os.environ, **ENV, **(env or {})}, timeout=120)


def assert_nowhere(root: Path, *outputs: subprocess.CompletedProcess) -> None:
    """The secret is in no file of the project but the warehouse, no output, and no output table."""
    for path in root.rglob("*"):
        if path.is_file() and not path.name.endswith((".duckdb", ".duckdb.wal")):  # the tables are queried below
            assert SECRET.encode() not in path.read_bytes(), f"the secret is in {path}"
    for out in outputs:
        assert SECRET not in out.stdout + out.stderr, f"the secret is in the output of {out.args}"
    if (root / "wh.duckdb").exists():
        text_columns = query(root, "SELECT table_name, column_name FROM information_schema.columns "
                                   "WHERE table_schema = 'kpi' AND data_type = 'VARCHAR'")
        for table, column in text_columns:
            found = query(root, f'SELECT count(*) FROM kpi."{table}" WHERE contains("{column}", \'{SECRET}\')')
            assert found == [(0,)], f"the secret is in kpi.{table}.{column}"


@pytest.fixture
def project(tmp_path) -> Path:
    root = write_run_project(tmp_path, kpis_yml(LEAKY, FAILING), files={"models/secret_orders.sql": MODEL})
    insert_orders(root, make_orders(dt.date(2025, 10, 1), dt.date(2025, 12, 1)))
    return root


@pytest.mark.slow  # left out of make test-fast
def test_a_secret_in_a_model_leaks_nowhere(project):
    as_of = ["--as-of", AS_OF.isoformat()]
    outs = [
        cli(project, "validate"), cli(project, "compile"), cli(project, "ls", "--output", "json"),
        cli(project, "run", *as_of), cli(project, "--log-format", "json", "run", *as_of),
        cli(project, "run", "--debug", "--fail-fast", *as_of), cli(project, "show", "leaky"),
        cli(project, "status", "--format", "json"),
    ]
    run = outs[3]
    assert run.returncode == 1 and "failing" in run.stdout + run.stderr and "****" in run.stdout + run.stderr
    assert (project / "target" / "run.sql").read_text().count("****") >= 2  # compiled, with the secret masked
    assert query(project, "SELECT count(*) FROM kpi.kpi_values WHERE name = 'leaky'")[0][0] > 0
    assert_nowhere(project, *outs)


def test_a_secret_in_a_validation_error_leaks_nowhere(project):
    (project / "models" / "secret_orders.sql").write_text(MODEL + "and (amount > '{{ env_var(\"KPIM_SECRET\") }}'\n")
    (project / "models" / "broken.sql").write_text("select {{ {}[env_var('KPIM_SECRET')] }} as x\n")
    outs = [cli(project, "validate"), cli(project, "--log-format", "json", "compile"), cli(project, "run", "--debug")]
    assert all(o.returncode == 1 for o in outs), [o.stderr for o in outs]
    assert "KPI034" in outs[0].stdout and "KPI065" in outs[0].stdout
    assert_nowhere(project, *outs)


@pytest.mark.slow  # left out of make test-fast
def test_a_secret_in_the_profile_leaks_nowhere(project):
    """The DuckDB path and a PostgreSQL password come from env_var(); connecting fails, then works."""
    bad_dir = project / f"missing-{SECRET}"
    (project / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n"
        "    dev: {type: duckdb, path: \"{{ env_var('KPIM_WH') }}\"}\n"
        "    pg: {type: postgres, host: 127.0.0.1, port: 9, dbname: x, user: kpim, connect_timeout: 2,\n"
        "         password: \"{{ env_var('KPIM_SECRET') }}\"}\n"
    )
    broken = {"KPIM_WH": str(bad_dir / "wh.duckdb")}
    outs = [cli(project, "debug", env=broken), cli(project, "run", env=broken),
            cli(project, "run", "--debug", env=broken), cli(project, "--target", "pg", "run"),
            cli(project, "--target", "pg", "debug", "--debug")]
    assert all(o.returncode != 0 for o in outs), [o.stdout + o.stderr for o in outs]
    assert "cannot" in outs[1].stderr and "****" in outs[1].stderr
    (project / "wh-dir").mkdir()
    works = {"KPIM_WH": str(project / "wh-dir" / f"{SECRET}.duckdb")}
    good = [cli(project, "debug", env=works), cli(project, "run", "--as-of", AS_OF.isoformat(), env=works)]
    assert good[0].returncode == 0, good[0].stderr
    assert_nowhere(project, *outs, *good)


def test_the_python_api_masks_secrets_as_the_cli_does(project, monkeypatch):
    """An orchestrator calling Project directly logs its errors and what show() returns: masked there too."""
    monkeypatch.setenv("KPIM_SECRET", SECRET)
    shown = Project.load(project).show("leaky")
    assert "****" in shown["sql"] and SECRET not in repr(shown)

    monkeypatch.setenv("KPIM_WH", str(project / f"missing-{SECRET}" / "wh.duckdb"))
    (project / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n"
        "    dev: {type: duckdb, path: \"{{ env_var('KPIM_WH') }}\"}\n"
        "    pg: {type: postgres, host: 127.0.0.1, port: 9, dbname: x, connect_timeout: 2,\n"
        "         user: \"{{ env_var('KPIM_SECRET') }}\"}\n"
    )
    failures = []
    for call in (lambda: Project.load(project).connect(), lambda: Project.load(project).run(as_of=AS_OF),
                 lambda: Project.load(project, target="pg").connect(),
                 lambda: Project.load(project, target="pg").run(as_of=AS_OF)):
        with pytest.raises(WarehouseError) as info:
            call()
        failures.append(info.value)
    for exc in failures:
        text = "".join(traceback.format_exception(exc))
        assert "cannot" in str(exc) and "****" in str(exc), str(exc)
        assert SECRET not in text, text


def test_the_python_api_masks_secrets_in_every_warehouse_call(tmp_path, pg_server, monkeypatch):
    """Not only connect() and run(): diff() runs SQL that holds env_var() values (here a source schema) too,
    and PostgreSQL's error quotes it."""
    from test_postgres import Pg, demo_project

    root = demo_project(tmp_path, Pg(pg_server))
    monkeypatch.setenv("SHOP_SCHEMA", SECRET)  # a schema that does not exist
    sources = root / "sources.yml"
    sources.write_text(sources.read_text().replace(
        "  - name: shop\n", "  - name: shop\n    schema: \"{{ env_var('SHOP_SCHEMA') }}\"\n"))
    Project.load(root, target="pg").compile()
    state = tmp_path / "main-target"
    shutil.copytree(root / "target", state)
    kpis = root / "kpis" / "revenue.yml"
    kpis.write_text(kpis.read_text().replace("filter: status = 'completed'", "filter: status <> 'returned'", 1))
    with pytest.raises(WarehouseError) as info:
        Project.load(root, target="pg").diff(state)
    text = "".join(traceback.format_exception(info.value))
    assert "does not exist" in str(info.value) and "****" in str(info.value)
    assert SECRET not in text, text
