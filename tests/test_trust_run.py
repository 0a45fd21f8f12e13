"""Trust at the edges, the run and the CLI (SPEC §11, issue 18): KPIs removed from the project are named, one
output schema belongs to one project, target/ that cannot be written is never exit 3, SIGTERM is Ctrl-C, a
secret is masked in every form it is written in, and a mistyped DuckDB path is said to be a new file.

Each test reproduces a behaviour of the code before it (exit 0 or 3, a leak, silence) and fails on that code.
The hostile-input cases of these codes (KPI064, KPI094-KPI096) are in corpus_run.py.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from corpus import every_table
from helpers_run import AS_OF, insert_orders, kpi, kpis_yml, make_orders, ok, query, run, set_kpis, write_run_project
from kpimetrics import faults
from kpimetrics.cli import main
from kpimetrics.scaffold import init_project
from kpimetrics.tables import SCHEMA_VERSION


def cli(root: Path, *args: str, target: str | None = None):
    extra = ["--target", target] if target else []
    return CliRunner().invoke(main, [*args, "--project-dir", str(root), *extra])


REVENUE = kpi("revenue", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: sum(amount)
    target: 100
""")
ORDERS = kpi("orders", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: count(*)
    target: 10
""")
RETURNS = kpi("returns", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: count(*)
    filter: status = 'returned'
    target: 1
""")


@pytest.fixture
def shop(tmp_path) -> Path:
    root = write_run_project(tmp_path / "shop", kpis_yml(REVENUE, ORDERS, RETURNS))
    insert_orders(root, make_orders(dt.date(2025, 10, 1), dt.date(2025, 12, 1)))
    return root


# --- KPIs removed from the project --------------------------------------------------------------------------

def test_the_kpis_whose_rows_a_run_deleted_are_named(shop):
    """The spec deletes the rows of a KPI removed from the project. That stays, but never silently: the summary,
    run_results.json and kpi_runs name each of them. (Before: exit 0 and not a word.)"""
    ok(run(shop))
    set_kpis(shop, kpis_yml(REVENUE))
    out = cli(shop, "run", "--as-of", AS_OF.isoformat())
    assert out.exit_code == 0, out.output
    assert "deleted the rows of 2 KPI(s) removed from the project: orders, returns" in out.output
    results = json.loads((shop / "target" / "run_results.json").read_text())
    assert results["removed_kpis"] == ["orders", "returns"]
    assert query(shop, "SELECT DISTINCT name FROM kpi.kpi_values") == [("revenue",)]
    runs = query(shop, "SELECT status, message FROM kpi.kpi_runs ORDER BY run_id")
    assert runs[-1] == ("success", "deleted the rows of 2 KPI(s) removed from the project: orders, returns")
    # the next run has nothing to delete, and says nothing; -s never deletes
    again = run(shop)
    assert again.removed == [] and again.message is None
    set_kpis(shop, kpis_yml(ORDERS))
    selected = run(shop, "orders")
    assert selected.removed == [] and query(shop, "SELECT count(*) FROM kpi.kpi_values WHERE name = 'revenue'")[0][0] > 0


# --- one output schema, one project ---------------------------------------------------------------------------

def demo(tmp_path: Path, name: str, target: str, pg_output: dict | None) -> Path:
    """The `init` demo named `name`; its `pg` target (when given) beside the DuckDB one, sources in the
    target's default schema, the DuckDB warehouse shared with the other demos in tmp_path."""
    root = init_project(name, tmp_path)
    profiles = yaml.safe_load((root / "profiles.yml").read_text())
    outputs = next(iter(profiles.values()))["outputs"]
    outputs["dev"]["path"] = str(tmp_path / "shared.duckdb")
    if pg_output:
        outputs["pg"] = pg_output
    (root / "profiles.yml").write_text(yaml.safe_dump(profiles))
    sources = root / "sources.yml"
    sources.write_text(sources.read_text().replace("    schema: main\n", ""))
    return root


def all_tables(root: Path, target: str) -> dict:
    """Every table of the warehouse, all schemas (sources included), through kpimetrics' own connection."""
    if target == "dev":
        profiles = yaml.safe_load((root / "profiles.yml").read_text())
        return every_table(Path(next(iter(profiles.values()))["outputs"]["dev"]["path"]))
    from kpimetrics import Project

    adapter = Project.load(root, target=target).connect()
    try:
        names = adapter.fetchall("SELECT table_schema, table_name FROM information_schema.tables "
                                 "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2")
        return {f"{s}.{t}": sorted(adapter.fetchall(f'SELECT * FROM "{s}"."{t}"'), key=repr) for s, t in names}
    finally:
        adapter.close()


@pytest.fixture(params=["duckdb", "postgres"])
def two_demos(request, tmp_path):
    """Two projects, `demo` (seeded and run) and `other`, on one warehouse, both with the default output schema."""
    target, pg_output = "dev", None
    if request.param == "postgres":
        from engines import postgres_engine

        target, pg_output = "pg", postgres_engine(request.getfixturevalue("pg_server")).output(tmp_path)
    first, second = (demo(tmp_path, n, target, pg_output) for n in ("demo", "other"))
    for args in (("seed",), ("run",)):
        out = cli(first, *args, target=target)
        assert out.exit_code == 0, out.output
    return first, second, target


def test_another_projects_run_into_the_output_schema_is_refused(two_demos):
    """Before: `other` replaced demo's KPIs, catalog and strategy tree with its own, exit 0."""
    first, second, target = two_demos
    before = all_tables(first, target)
    out = cli(second, "run", "--full-refresh", target=target)
    assert out.exit_code == 1, out.output
    assert ("kpimetrics.yml:7:1: error[KPI094]: output schema 'kpi' belongs to project 'demo', not to this project "
            "'other'") in out.output.replace(f"{second}/", "")
    assert "Set `output_schema` in kpimetrics.yml" in out.output and "Traceback" not in out.output
    assert all_tables(first, target) == before  # kpi_runs and kpi_meta included: nothing was written

    # with an output schema of its own it runs; and the owner still runs in its own
    config = second / "kpimetrics.yml"
    config.write_text(config.read_text().replace("output_schema: kpi", "output_schema: other_kpi"))
    assert cli(second, "run", target=target).exit_code == 0
    assert cli(first, "run", target=target).exit_code == 0
    owners = {k: v for k, v in before.items() if k.endswith(".kpi_meta")}
    assert owners == {"kpi.kpi_meta": [("project", "demo"), ("schema_version", str(SCHEMA_VERSION))]}
    assert all_tables(first, target)["other_kpi.kpi_meta"] == [
        ("project", "other"), ("schema_version", str(SCHEMA_VERSION))]


def test_a_schema_written_before_owners_were_recorded_is_adopted(two_demos):
    """An output schema from an earlier kpimetrics has no owner row: its next run adopts it, and from then on
    another project is refused."""
    first, second, target = two_demos
    from kpimetrics import Project

    adapter = Project.load(first, target=target).connect()
    try:
        adapter.execute("DELETE FROM kpi.kpi_meta WHERE key = 'project'")
    finally:
        adapter.close()
    out = cli(first, "run", target=target)
    assert out.exit_code == 0, out.output
    assert all_tables(first, target)["kpi.kpi_meta"] == [("project", "demo"), ("schema_version", str(SCHEMA_VERSION))]
    refused = cli(second, "run", target=target)
    assert refused.exit_code == 1 and "error[KPI094]" in refused.output, refused.output


def test_seed_never_writes_into_the_output_schema(shop):
    """A seed named kpi_values in the output schema would replace the published values. (Before: loaded.)"""
    ok(run(shop))
    (shop / "seeds").mkdir()
    (shop / "seeds" / "kpi_values.csv").write_text("name,value\nfake,1\n")
    config = shop / "kpimetrics.yml"
    config.write_text(config.read_text() + "seed_schema: kpi\n")
    before = every_table(shop / "wh.duckdb")
    out = cli(shop, "seed")
    assert out.exit_code == 1, out.output
    assert "kpimetrics.yml:6:1: error[KPI095]: seed would load into schema 'kpi', the output schema" in \
        out.output.replace(f"{shop}/", "")
    assert every_table(shop / "wh.duckdb") == before


# --- target/ that cannot be written ---------------------------------------------------------------------------

def test_run_results_that_cannot_be_written_after_publishing_is_a_warning(shop):
    """target/run_results.json is a folder, so only the write after publishing fails. Before: exit 3, though the
    run had published."""
    (shop / "target" / "run_results.json").mkdir(parents=True)
    out = cli(shop, "run", "--as-of", AS_OF.isoformat())
    assert out.exit_code == 0, out.output
    assert "warning[KPI097]: could not write" in out.output and "run 1 is recorded in kpi_runs as 'success'" in out.output
    assert "internal error" not in out.output and "Traceback" not in out.output
    assert query(shop, "SELECT status FROM kpi.kpi_runs") == [("success",)]
    assert query(shop, "SELECT count(DISTINCT name) FROM kpi.kpi_values") == [(3,)]


def test_target_that_cannot_be_written_stops_the_run_before_the_warehouse(shop):
    """A file where target/ should be: exit 1 naming it, and the warehouse as it was (kpi_runs included).
    Before: exit 3."""
    ok(run(shop))
    shutil.rmtree(shop / "target")
    (shop / "target").write_text("not a folder\n")
    before = every_table(shop / "wh.duckdb")
    for command in ("run", "compile"):
        out = cli(shop, command)
        assert out.exit_code == 1, out.output
        assert f"{shop / 'target'}: error[KPI096]: cannot write" in out.output, out.output
    assert every_table(shop / "wh.duckdb") == before


# --- SIGTERM is Ctrl-C ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    from test_crash import Scenario

    return Scenario(tmp_path_factory.mktemp("sigterm") / "project")


def check_terminated(scenario, proc, how: str) -> str:
    out, err = (s.decode() for s in proc.communicate(timeout=120))
    assert proc.returncode == 130, f"{how}: exit {proc.returncode}\n{out}\n{err}"
    assert "interrupted" in err and "Traceback" not in out + err, f"{how}: {err}"
    statuses = [s for _, s in query(scenario.root, "SELECT run_id, status FROM kpi.kpi_runs ORDER BY run_id")]
    assert statuses[0] == "success" and statuses[1:] == ["aborted"], f"{how}: {statuses}"
    assert query(scenario.root, "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'kpi_stage%'") == []
    return scenario.check_killed(how)


@pytest.mark.slow
@pytest.mark.parametrize("step, state", [("sql.insert:1", "before"), ("sql.delete:3", "before"),
                                         ("publish.committed:1", "after")])
def test_sigterm_at_a_step(scenario, step, state):
    """Before: the process died of the signal (-15), its run left 'running' and its staging tables behind."""
    proc = scenario.start({faults.KILL_AT: step, faults.KILL_SIGNAL: "TERM"}, cli=True)
    assert check_terminated(scenario, proc, f"SIGTERM at {step}") == state


@pytest.mark.slow
def test_sigterm_from_outside(scenario):
    """A CI job cancelled while the run publishes (frozen at a step so the timing is certain)."""
    proc = scenario.start({faults.KILL_AT: "sql.delete:2", faults.KILL_SIGNAL: "STOP"}, cli=True)
    scenario.wait_for(proc, "sql.delete:2")
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    assert check_terminated(scenario, proc, "SIGTERM from outside") == "before"


# --- a secret in every form it is written in ------------------------------------------------------------------

QUOTED = "s3'cr\"et\\Pa55-91"  # a quote, a double quote and a backslash: escaped differently by SQL, JSON and repr
FORMS = {"as is": QUOTED, "SQL-escaped": QUOTED.replace("'", "''"), "JSON": json.dumps(QUOTED)[1:-1],
         "repr": repr(QUOTED)[1:-1], "backslash-escaped": QUOTED.replace("\\", "\\\\").replace("'", "\\'")}
# the model escapes the value for its SQL string, as a careful author does: the compiled SQL holds it SQL-escaped
QUOTED_MODEL = """select *, '{{ env_var("KPIM_QUOTED") | replace("'", "''") }}' as token
from {{ source('shop', 'orders') }}
"""


def test_a_secret_with_quotes_is_masked_in_every_form(tmp_path):
    """Before: compiled SQL held the secret SQL-escaped (''), past the mask, and run_results.json and JSON logs
    held it JSON-escaped."""
    root = write_run_project(tmp_path / "p", kpis_yml(
        kpi("leaky", "model: ref('quoted')\ntime: ordered_at\nmeasure: sum(amount)\ntarget: 10"),
        kpi("failing", "model: ref('quoted')\ntime: ordered_at\nmeasure: sum(cast(token as integer))\ntarget: 10"),
    ), files={"models/quoted.sql": QUOTED_MODEL})
    insert_orders(root, make_orders(dt.date(2025, 10, 1), dt.date(2025, 12, 1)))
    env = {**os.environ, "KPIM_QUOTED": QUOTED}

    def kpimetrics(*args):
        return subprocess.run([sys.executable, "-m", "kpimetrics", *args, "--project-dir", str(root)],
                              capture_output=True, text=True, env=env, timeout=180)

    outs = [kpimetrics("compile"), kpimetrics("run", "--as-of", AS_OF.isoformat()),
            kpimetrics("--log-format", "json", "run", "--as-of", AS_OF.isoformat()), kpimetrics("show", "leaky")]
    assert outs[0].returncode == 0 and outs[1].returncode == 1, outs[1].stdout + outs[1].stderr
    assert "****" in (root / "target" / "run.sql").read_text()
    assert "Could not convert" in outs[1].stdout + outs[1].stderr  # the warehouse's message, quoting the value
    for path in root.rglob("*"):
        if path.is_file() and not path.name.startswith("wh.duckdb"):
            text = path.read_text(errors="replace")
            for form, value in FORMS.items():
                assert value not in text, f"the secret ({form}) is in {path}"
    for out in outs:
        for form, value in FORMS.items():
            assert value not in out.stdout + out.stderr, f"the secret ({form}) is in the output of {out.args}"
    messages = " ".join(m or "" for (m,) in query(root, "SELECT message FROM kpi.kpi_runs"))
    assert all(value not in messages for value in FORMS.values())


# --- a mistyped DuckDB path -----------------------------------------------------------------------------------

def test_a_new_duckdb_file_is_said_to_be_new(shop):
    """Before: a mistyped path made an empty warehouse, and the run said only 'table orders does not exist' for
    every KPI, naming no file."""
    profiles = shop / "profiles.yml"
    profiles.write_text(profiles.read_text().replace("path: wh.duckdb", "path: wh_typo.duckdb"))
    typo = shop / "wh_typo.duckdb"
    out = cli(shop, "run", "--as-of", AS_OF.isoformat())
    assert out.exit_code == 1, out.output
    assert f"warehouse: duckdb" in out.output and f"at {typo} (a new, empty file: it did not exist)" in out.output
    assert f"{profiles}: warning[KPI098]: the DuckDB file {typo} did not exist: this run created it, empty" in out.output
    assert json.loads((shop / "target" / "run_results.json").read_text())["warnings"][0]["code"] == "KPI098"
    again = cli(shop, "run", "--as-of", AS_OF.isoformat())  # the file exists now: nothing to say but where it is
    assert f"at {typo}\n" in again.output and "KPI098" not in again.output

    typo.unlink()
    debug = cli(shop, "debug")
    assert debug.exit_code == 0, debug.output
    assert f"the DuckDB file {typo} did not exist: connecting created it, empty" in debug.output
