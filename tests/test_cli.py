"""The command line as a user meets it: exit codes, messages, global options, profiles."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from kpimetrics.cli import main

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict | None = None):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    parent = tmp_path_factory.mktemp("cli")
    assert cli("init", "demo", "--project-dir", str(parent)).exit_code == 0
    path = parent / "demo"
    assert cli("seed", "--project-dir", str(path)).exit_code == 0
    result = cli("run", "--project-dir", str(path), "--as-of", "2026-11-21")
    assert result.exit_code == 0, result.output
    return path


def test_init_creates_a_runnable_project(demo: Path):
    assert "\nname: demo\n" in (demo / "kpimetrics.yml").read_text()
    con = duckdb.connect(str(demo / "warehouse.duckdb"), read_only=True)
    try:
        statuses = dict(con.execute(
            "SELECT status, count(*) FROM kpi.kpi_status s WHERE dimension = '' AND grain = 'month' "
            "AND period_start = DATE '2026-10-01' GROUP BY status").fetchall())
        runs = con.execute("SELECT status, kpis_ok, kpis_failed FROM kpi.kpi_runs").fetchall()
    finally:
        con.close()
    # the demo shows a mix of states at its latest complete month
    assert statuses.get("on_track", 0) >= 2 and statuses.get("at_risk", 0) >= 2 and statuses.get("off_track", 0) >= 2
    assert runs == [("success", 12, 0)]
    results = json.loads((demo / "target" / "run_results.json").read_text())
    assert results["status"] == "success" and len(results["results"]) == 12
    assert {r["status"] for r in results["results"]} == {"success"}
    assert all(r["rows"] > 0 for r in results["results"])


def test_init_refuses_an_existing_folder(demo: Path):
    result = cli("init", demo.name, "--project-dir", str(demo.parent))
    assert result.exit_code == 2
    assert "already exists" in result.output


def test_global_options_before_or_after_the_command(demo: Path):
    assert cli("--project-dir", str(demo), "validate").exit_code == 0
    assert cli("validate", "--project-dir", str(demo)).exit_code == 0


def test_status_json(demo: Path):
    result = cli("status", "--project-dir", str(demo), "--format", "json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    by_name = {r["name"]: r for r in rows}
    assert by_name["net_revenue"]["period_start"] == "2026-10-01"
    assert by_name["net_revenue"]["status"] == "at_risk"
    assert by_name["csat"]["grain"] == "week"  # the first listed grain
    monthly = json.loads(cli("status", "--project-dir", str(demo), "--grain", "month", "--format", "json", "-s", "csat").output)
    assert [(r["name"], r["grain"]) for r in monthly] == [("csat", "month")]
    # --fail-on is covered by tests/test_status.py::test_fail_on_exit_codes


def test_status_table_shows_every_kpi(demo: Path):
    result = CliRunner().invoke(main, ["status", "--project-dir", str(demo)], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("net_revenue", "csat", "call_wrap_up_seconds"):
        assert name in result.output
    assert "off track" in result.output and "at risk" in result.output


def test_ls_selection_and_json(demo: Path):
    names = cli("ls", "--project-dir", str(demo)).output.split()
    assert len(names) == 12
    strat = cli("ls", "--project-dir", str(demo), "-s", "strategy:improve_customer_experience").output.split()
    assert "csat" in strat and "net_revenue" not in strat
    plus = cli("ls", "--project-dir", str(demo), "-s", "+revenue_yoy_growth").output.split()
    assert sorted(plus) == ["net_revenue", "revenue_yoy_growth"]
    data = json.loads(cli("ls", "--project-dir", str(demo), "--output", "json", "-s", "tag:board").output)
    assert data and all("board" in d["tags"] for d in data)
    bad = cli("ls", "--project-dir", str(demo), "-s", "strategy:nope")
    assert bad.exit_code == 2 and "matches no KPI" in bad.output


def test_show_prints_definition_sql_and_recent_values(demo: Path):
    result = CliRunner().invoke(main, ["show", "net_revenue", "--project-dir", str(demo)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "sum(amount - discount)" in result.output
    assert "GROUP BY" in result.output
    assert "2026-10-01" in result.output
    missing = cli("show", "net_revenu", "--project-dir", str(demo))
    assert missing.exit_code == 2 and "did you mean 'net_revenue'" in missing.output


def test_debug_checks_the_connection(demo: Path):
    result = cli("debug", "--project-dir", str(demo))
    assert result.exit_code == 0
    assert "connection: OK" in result.output


def test_compile_usage_errors_exit_2(demo: Path):
    result = cli("compile", "--project-dir", str(demo), "--dialect", "oracle")
    assert result.exit_code == 2
    assert "unknown dialect" in result.output
    assert cli("compile", "--project-dir", str(demo), "--vars", "[1, 2]").exit_code == 2
    assert cli("no-such-command").exit_code == 2


def test_not_a_project(tmp_path: Path):
    result = cli("validate", "--project-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "no kpimetrics.yml" in result.output


def _copy(demo: Path, dest: Path) -> Path:
    shutil.copytree(demo, dest, ignore=shutil.ignore_patterns("target", "*.duckdb*"))
    return dest


def test_env_var_in_profile_missing_and_set(demo: Path, tmp_path: Path):
    project = _copy(demo, tmp_path / "p")
    (project / "profiles.yml").write_text(
        "demo:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: \"{{ env_var('KPI_TEST_WAREHOUSE') }}\"}\n"
    )
    missing = cli("seed", "--project-dir", str(project), env={"KPI_TEST_WAREHOUSE": None})
    assert missing.exit_code == 1
    assert "KPI_TEST_WAREHOUSE" in missing.output and "is not set" in missing.output
    assert "profiles.yml:4" in missing.output
    ok = cli("seed", "--project-dir", str(project), env={"KPI_TEST_WAREHOUSE": "from_env.duckdb"})
    assert ok.exit_code == 0, ok.output
    assert (project / "from_env.duckdb").exists()  # relative to the project, not the working directory


def test_target_and_profiles_dir(demo: Path, tmp_path: Path):
    project = _copy(demo, tmp_path / "p")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "profiles.yml").write_text(
        "demo:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: dev.duckdb}\n    ci: {type: duckdb, path: ci.duckdb}\n"
    )
    assert cli("seed", "--project-dir", str(project), "--profiles-dir", str(profiles), "--target", "ci").exit_code == 0
    assert (project / "ci.duckdb").exists() and not (project / "dev.duckdb").exists()
    wrong = cli("seed", "--project-dir", str(project), "--profiles-dir", str(profiles), "--target", "prod")
    assert wrong.exit_code == 1
    assert "target 'prod' not found" in wrong.output and "ci, dev" in wrong.output


def test_vars_override_kpimetrics_yml(demo: Path, tmp_path: Path):
    project = _copy(demo, tmp_path / "p")
    assert cli("seed", "--project-dir", str(project)).exit_code == 0
    late = cli("run", "--project-dir", str(project), "--as-of", "2026-11-21", "-s", "active_customers",
               "--vars", "{start_date: '2026-06-01'}")
    assert late.exit_code == 0, late.output
    con = duckdb.connect(str(project / "warehouse.duckdb"), read_only=True)
    try:
        first = con.execute("SELECT min(period_start) FROM kpi.kpi_values WHERE name = 'active_customers' "
                            "AND grain = 'month'").fetchone()[0]
    finally:
        con.close()
    assert first.isoformat() == "2026-06-01"


def test_json_log_format_for_validate(tmp_path: Path, demo: Path):
    project = _copy(demo, tmp_path / "p")
    kpis = project / "kpis" / "revenue.yml"
    kpis.write_text(kpis.read_text().replace("owner: vp-sales@acme.example", "owner: nobody@acme.example", 1))
    result = cli("validate", "--project-dir", str(project), "--log-format", "json")
    assert result.exit_code == 1
    issues = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert any(i["level"] == "error" and i["path"] == "kpis/revenue.yml" and i["line"] for i in issues)


def test_the_console_process_flushes_its_output_keeps_its_exit_code_and_leaves_the_warehouse_whole(demo: Path):
    """`python -m kpimetrics` (like the console script) leaves with os._exit once the command is done: everything it
    printed still reaches a pipe, its exit code is the command's, and what `run` wrote is in the warehouse file."""
    import subprocess
    import sys

    def process(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kpimetrics", *args], capture_output=True, text=True, timeout=300)

    ran = process("run", "--project-dir", str(demo), "--as-of", "2026-11-21", "--log-format", "json")
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout.strip().splitlines()[-1])  # the last line printed, whole
    assert summary["status"] == "success" and len(summary["results"]) == 12
    con = duckdb.connect(str(demo / "warehouse.duckdb"), read_only=True)
    try:
        last = con.execute("SELECT run_id, status FROM kpi.kpi_runs ORDER BY run_id DESC LIMIT 1").fetchone()
    finally:
        con.close()
    assert last == (summary["run_id"], "success")

    listed = process("ls", "--project-dir", str(demo), "--output", "json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) >= 12  # a long output, all of it

    failed = process("run", "--project-dir", str(demo), "-s", "no_such_kpi")
    assert failed.returncode == 2 and "no_such_kpi" in failed.stdout + failed.stderr  # a selection that matches nothing
    usage = process("compile", "--project-dir", str(demo), "--dialect", "nonsense")
    assert usage.returncode == 2 and "nonsense" in usage.stderr


def test_quiet_prints_no_warnings_and_no_count_of_them(demo: Path, tmp_path: Path):
    """-q keeps errors only: a run whose project has warnings prints neither them nor '0 error(s), N warning(s)'."""
    project = tmp_path / "demo"
    shutil.copytree(demo, project)
    kpis = project / "kpis" / "customers.yml"
    kpis.write_text(kpis.read_text().replace("    indicator: leading\n", "    review_by: 2020-01-01\n    indicator: leading\n", 1))
    loud = cli("validate", "--project-dir", str(project))
    assert loud.exit_code == 0 and "warning[KPI076]" in loud.output and "0 error(s), 1 warning(s)" in loud.output
    for command in (["validate"], ["run", "--as-of", "2026-11-21"]):
        quiet = cli("-q", *command, "--project-dir", str(project))
        assert quiet.exit_code == 0, quiet.output
        assert "KPI076" not in quiet.output and "warning(s)" not in quiet.output, quiet.output
