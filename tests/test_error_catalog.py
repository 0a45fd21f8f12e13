"""The error catalog: for every code in codes.py a broken project, one fault each, run
through the CLI (`kpimetrics run --strict`, so warnings count): exit code 1, the code at
its file and line with its message, and the output tables of the warehouse unchanged.

The faults are data: the per-code cases of test_validation (each a few files changed on
the valid example project), the file-level faults below (empty, binary, not UTF-8, 10 MB,
deeply nested, unicode names, Windows line endings), and the profile and config faults.
A code that no project can produce is listed in NOT_FROM_A_PROJECT with the reason.
"""
from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers_projects import TODAY, VALID_PROJECT, kpi_yaml
from kpimetrics import Project
from kpimetrics.cli import main
from kpimetrics.codes import CODES
from helpers_run import insert_orders, kpi, kpis_yml, make_orders, ok, run, snapshot, write_run_project
from test_validation import CASES
import corpus_access
import corpus_dbt
import corpus_files
import corpus_run
import corpus_sql
import corpus_state
import corpus_targets
import corpus_notify
import corpus_semantic
import corpus_reading
from corpus import ANY_LINE, PROFILES, Fault, broken_project, check_fault, where



def from_validation_cases() -> list[Fault]:
    faults = []
    for case in CASES:
        path, line = case.expected_place()
        faults.append(Fault(case.code, case.files, path, line, case.message))
    return faults


CRLF_KPI = kpi_yaml(ownr="x").replace("\n", "\r\n")  # the unknown key on line 12
PADDING = "# " + "." * 98 + "\n"
FILE_FAULTS = [
    Fault("KPI004", {"kpis/empty.yml": b""}, "kpis/empty.yml", 1, "file is empty"),
    Fault("KPI004", {"kpis/blank.yml": b"\n\n   \n# nothing here\n"}, "kpis/blank.yml", 1, "file is empty"),
    Fault("KPI002", {"kpis/blob.yml": bytes(range(256)) * 8}, "kpis/blob.yml", 1, "binary, not YAML text (a NUL byte)"),
    Fault("KPI002", {"kpis/latin1.yml": "kpis:\n  - name: caf\xe9\n".encode("latin-1")}, "kpis/latin1.yml", 2,
          "file is not UTF-8 text (byte 0xe9"),
    Fault("KPI005", {"kpis/huge.yml": (PADDING * 100_000 + kpi_yaml(ownr="x")).encode()},  # 10 MB
          "kpis/huge.yml", 100_012, "unknown key 'ownr' in KPI 'broken'"),
    Fault("KPI001", {"kpis/deep.yml": b"kpis: " + (b"[" * 1_000 + b"\n  ") * 10 + (b"]" * 1_000 + b"\n  ") * 10 + b"\n"},
          "kpis/deep.yml", ANY_LINE, ""),  # PyYAML 6.0.4 stops these at its own depth limit, older ones by recursion
    Fault("KPI001", {"kpis/deep_map.yml": "".join("  " * i + f"k{i}:\n" for i in range(3_000)).encode()},
          "kpis/deep_map.yml", ANY_LINE, ""),
    Fault("KPI010", {"kpis/unicode.yml": kpi_yaml(name="umsätze_netto").encode()}, "kpis/unicode.yml", 2,
          "KPI 'umsätze_netto': name must be snake_case"),
    Fault("KPI023", {"kpis/unicode.yml": kpi_yaml(strategy="croissance_européenne").encode()}, "kpis/unicode.yml", 4,
          "unknown strategy 'croissance_européenne'"),
    Fault("KPI005", {"kpis/crlf.yml": CRLF_KPI.encode()}, "kpis/crlf.yml", 12, "unknown key 'ownr'"),
    Fault("KPI001", {"kpis/crlf_syntax.yml": b"kpis:\r\n  - name: x\r\n     owner: y\r\n"}, "kpis/crlf_syntax.yml", 3,
          "YAML syntax error"),
]
SPARK_OUTPUT = "acme:\n  target: dev\n  outputs:\n    dev:\n      type: spark\n"
CONFIG_FAULTS = [
    Fault("KPI080", {"profiles.yml": "other:\n  target: dev\n  outputs:\n    dev: {type: duckdb}\n"}, "profiles.yml", 1,
          "profile 'acme' not found"),
    Fault("KPI081", {}, "profiles.yml", 3, "target 'prod' not found in profile 'acme'", args=("--target", "prod")),
    Fault("KPI082", {"profiles.yml": PROFILES.replace("type: duckdb", "type: oracle")}, "profiles.yml", 4,
          "invalid output 'dev'"),
    Fault("KPI083", {"kpimetrics.yml": "name: acme\nprofile: acme\ndialect: klingon\n"}, "kpimetrics.yml", 3,
          "unknown dialect 'klingon'"),
    # dbt's profiles (test_dbt_profiles): a dbt-spark output over Thrift; dbt's as_number of what is not a number
    Fault("KPI085", {"profiles.yml": "acme:\n  target: dev\n  outputs:\n    dev:\n      type: spark\n      method: thrift\n"
                                     "      host: spark.example.com\n"}, "profiles.yml", 6,
          "method: 'thrift' is not a way kpimetrics reaches spark"),
    Fault("KPI086", {"profiles.yml": PROFILES.replace(
        "path: wh.duckdb", "path: wh.duckdb, threads: \"{{ env_var('KPIMETRICS_TEST_UNSET', 'many') | as_number }}\"")},
          "profiles.yml", 4, "as_number: the value (4 characters) is not a number"),
    # Spark profiles (SPEC §13): a Spark Connect server (`remote:`) or a driver (`master:`), at the key's line
    Fault("KPI180", {"profiles.yml": SPARK_OUTPUT + "      master: local[2]\n      remote: sc://127.0.0.1:15002\n"},
          "profiles.yml", 7, "remote: `remote` (a Spark Connect server) and `master` (a driver in this process)"),
    Fault("KPI181", {"profiles.yml": SPARK_OUTPUT + "      master: sc://127.0.0.1:15002\n"}, "profiles.yml", 6,
          "master: a Spark Connect URL (sc://) is not a master: write it as `remote: \"sc://host:port\"`"),
    Fault("KPI182", {"profiles.yml": SPARK_OUTPUT + "      remote: \"sc://127.0.0.1:15002;token="
                                                    "{{ env_var('KPIMETRICS_TEST_UNSET', 'sekret-token') }}\"\n"},
          "profiles.yml", 6, "remote: not a Spark Connect URL: write sc://host:port, with parameters after a slash"),
    Fault("KPI183", {"profiles.yml": SPARK_OUTPUT + "      remote: sc://127.0.0.1:15002\n      warehouse_dir: wh\n"},
          "profiles.yml", 7, "warehouse_dir: a Spark Connect server has its own warehouse"),
]
CORPUS = (corpus_files, corpus_sql, corpus_access, corpus_run, corpus_state, corpus_dbt, corpus_targets, corpus_notify,
          corpus_semantic, corpus_reading)
FAULTS = from_validation_cases() + FILE_FAULTS + CONFIG_FAULTS + [f for m in CORPUS for f in m.FAULTS]

NOT_FROM_A_PROJECT = {
    "KPI090": "a run-time warning about the data (a stale source), not a fault of the project; tested in test_run_misc",
    "KPI091": "a run-time warning about the data (no period in a baseline range); tested with relative targets",
    "KPI092": "a run-time warning when the warehouse refuses the kpi_runs update after publishing",
    "KPI093": "a run-time warning when the baseline check fails after publishing; tested in test_run_misc",
    **{code: why for m in CORPUS for code, why in m.ELSEWHERE.items()},
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """A DuckDB file holding published output tables (from a small project run once)."""
    root = write_run_project(tmp_path_factory.mktemp("published"), kpis_yml(kpi("revenue", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        target: 100
    """)))
    # published by the example project's name: the faults run that project over it, and an output schema belongs to
    # one project (another project's run is refused with KPI094 before it reaches anything else)
    config = root / "kpimetrics.yml"
    config.write_text(config.read_text().replace("name: shop", "name: acme_kpis"))
    insert_orders(root, make_orders(dt.date(2025, 10, 1), dt.date(2025, 12, 1)))
    ok(run(root))
    return root / "wh.duckdb"


@pytest.fixture(scope="module")
def published(warehouse) -> dict:
    return snapshot(warehouse.parent)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.id)
def test_each_fault_exits_1_with_its_code_and_changes_nothing(fault, tmp_path, warehouse, published, monkeypatch):
    monkeypatch.delenv("KPIMETRICS_TEST_UNSET", raising=False)
    root = broken_project(tmp_path, fault, warehouse)
    check_fault(fault, root)
    assert snapshot(root) == published


def test_every_code_is_in_the_catalog_or_explained():
    covered = {f.code for f in FAULTS} | {"KPI000"}  # KPI000, no project at all: below
    assert set(CODES) - covered == set(NOT_FROM_A_PROJECT)
    assert len(CODES) >= 40


def test_no_project_at_all(tmp_path):
    out = CliRunner().invoke(main, ["run", "--project-dir", str(tmp_path)])
    assert out.exit_code == 1 and f"{tmp_path}: error[KPI000]: no kpimetrics.yml found" in out.output, out.output


def test_windows_line_endings_and_a_bom_load_like_unix_ones(tmp_path):
    files = {rel: ("\ufeff" if rel.endswith(".yml") else "") + textwrap.dedent(text).lstrip("\n").replace("\n", "\r\n")
             for rel, text in VALID_PROJECT.items()}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(text.encode())
    project = Project.load(tmp_path)
    assert project.validate(today=TODAY) == []
    assert project.definition.kpi_by_name["net_revenue"].check_ins[0].note == "February dip is the delayed campaign"


@pytest.mark.parametrize("fault", [f for f in FILE_FAULTS if f.code in ("KPI002", "KPI001")][:3], ids=lambda f: f.id)
def test_real_processes_exit_1(fault, tmp_path, warehouse):
    root = broken_project(tmp_path, fault, warehouse)
    out = subprocess.run([sys.executable, "-m", "kpimetrics", "validate", "--project-dir", str(root)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert any(re.match(where(fault), line) and f"error[{fault.code}]" in line for line in out.stdout.splitlines())
