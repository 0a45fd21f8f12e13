"""pydantic's errors inside nested target forms become issues at the right line, naming the YAML path."""
from __future__ import annotations

from pydantic import ValidationError

from kpimetrics.loader import validation_issues
from kpimetrics.model import Kpi
from kpimetrics.yamlio import parse_yaml


def _issues(text: str) -> list[str]:
    data, problems = parse_yaml(text, "k.yml")
    assert not problems
    try:
        Kpi.model_validate(data)
    except ValidationError as exc:
        return [i.format() for i in validation_issues(exc, data, "KPI x", None)]
    raise AssertionError("expected a validation error")


def test_bad_value_inside_a_schedule_names_its_path_and_line():
    [issue] = _issues("name: x\ntarget:\n  schedule:\n    - {from: 2026-01-01, value: abc}\n")
    assert issue.startswith("k.yml:4:33: error[KPI007]: KPI x: invalid value for 'target.schedule.0.value'")
    assert "(got 'abc')" in issue


def test_typo_inside_a_per_grain_schedule_suggests_the_field_of_that_form():
    issues = _issues("name: x\ntarget:\n  month:\n    schedule:\n      - {frm: 2026-01-01, value: 1}\n")
    assert "k.yml:5:10: error[KPI005]: unknown key 'frm' in KPI x; did you mean 'from'?" in issues[1]
    assert issues[0] == "k.yml:5:9: error[KPI006]: KPI x: missing required key 'from'"


def test_typo_in_a_value_target():
    issues = _issues("name: x\ntarget: {valeu: 3}\n")
    assert any("unknown key 'valeu' in KPI x; did you mean 'value'?" in i for i in issues)


def test_one_message_for_a_bad_grain():
    assert _issues("name: x\ngrain: fortnight\n") == [
        "k.yml:2:8: error[KPI007]: KPI x: invalid value for 'grain': expected 'day', 'week', 'month', 'quarter' "
        "or 'year' (got 'fortnight')"
    ]


def test_typo_in_the_project_config_suggests_a_config_key():
    """kpimetrics.yml's mappings are told apart from a KPI's: the hint lists the calendar's keys."""
    from kpimetrics.config import ProjectConfig

    data, _ = parse_yaml("name: acme\ncalendar: {week_strat: monday, timezone: UTC}\n", "kpimetrics.yml")
    try:
        ProjectConfig.model_validate(data)
    except ValidationError as exc:
        [issue] = validation_issues(exc, data, "kpimetrics.yml", None)
    assert issue.format().startswith("kpimetrics.yml:2:12: error[KPI005]: unknown key 'week_strat' in kpimetrics.yml; "
                                     "did you mean 'week_start'?")
    assert issue.hint == "allowed keys: fiscal_year_start_month, timezone, week_start"
