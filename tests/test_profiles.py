"""Profiles and project config: KPI080-KPI083, each with its file, line and message."""
from __future__ import annotations

from pathlib import Path

import pytest

from kpimetrics import Project
from kpimetrics.errors import ConfigError

from helpers_projects import TODAY, VALID_PROJECT, write_project


def _project(tmp_path: Path, profiles: str | None, **changes: str) -> Project:
    files = dict(VALID_PROJECT) | changes
    if profiles is not None:
        files["profiles.yml"] = profiles
    write_project(tmp_path, files)
    return Project.load(tmp_path)


def _config_error(project: Project):
    with pytest.raises(ConfigError) as caught:
        project.connect()
    [issue] = caught.value.issues
    return issue


def test_kpi080_no_profiles_file(tmp_path: Path):
    issue = _config_error(_project(tmp_path, None))
    assert issue.code == "KPI080" and issue.message == "profiles.yml not found"
    assert "--profiles-dir" in issue.hint


def test_kpi080_profile_not_in_file(tmp_path: Path):
    issue = _config_error(_project(tmp_path, "other:\n  target: dev\n  outputs:\n    dev: {type: duckdb}\n"))
    assert issue.code == "KPI080"
    assert issue.message == "profile 'acme' not found (profiles: other)"
    assert issue.location.path.endswith("profiles.yml") and issue.location.line == 1


def test_kpi081_target_not_in_profile(tmp_path: Path):
    issue = _config_error(_project(tmp_path, "acme:\n  target: prod\n  outputs:\n    dev: {type: duckdb}\n"))
    assert issue.code == "KPI081"
    assert issue.message == "target 'prod' not found in profile 'acme' (targets: dev)"
    assert issue.location.line == 3


def test_kpi082_invalid_output_never_echoes_values(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("KPI_TEST_SECRET", "s3cr3t-value")
    profiles = ("acme:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n"
                "      password: \"{{ env_var('KPI_TEST_SECRET') }}\"\n      port: not-a-port\n")
    issue = _config_error(_project(tmp_path, profiles))
    assert issue.code == "KPI082"
    assert issue.location.line == 5
    assert "dbname" in issue.message and "port" in issue.message
    assert "s3cr3t-value" not in issue.message


@pytest.mark.parametrize("output, problem", [
    ("{type: mysql, path: x.db}", "type: unknown warehouse type 'mysql' (types: duckdb, postgres, spark)"),
    ("{path: x.db}", "type: missing (types: duckdb, postgres, spark)"),
    ("{type: duckdb, path: 3}", "path: Input should be a valid string"),
    ("{type: postgres, host: h}", "dbname: Field required"),
    ("{type: postgres, dbname: d, hots: h}", "hots: unknown setting; did you mean 'host'?"),
    ("just-a-string", "must be a mapping of settings"),
])
def test_kpi082_message_names_the_setting(tmp_path: Path, output, problem):
    issue = _config_error(_project(tmp_path, f"acme:\n  target: dev\n  outputs:\n    dev: {output}\n"))
    assert (issue.code, issue.location.line) == ("KPI082", 4)
    assert issue.message == f"invalid output 'dev' in profile 'acme': {problem}"


def test_kpi083_unknown_dialect(tmp_path: Path):
    project = _project(tmp_path, None, **{"kpimetrics.yml": "name: acme\nprofile: acme\ndialect: postgress\n"})
    issues = [i for i in project.validate(today=TODAY) if i.code == "KPI083"]
    assert [(i.location.path, i.location.line, i.message) for i in issues] == [
        ("kpimetrics.yml", 3, "unknown dialect 'postgress'; did you mean 'postgres'?")
    ]
