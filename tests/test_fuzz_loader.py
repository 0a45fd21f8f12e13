"""Property: whatever text or YAML structure a project file holds, loading and validating
the project gives a list of issues (each with a code from codes.py and a place) or a
valid project, never an uncaught exception. An exception is a failure, and so is an
issue whose message says "internal error".
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers_projects import TODAY, VALID_PROJECT, write_project
from kpimetrics import Project
from kpimetrics.codes import CODES

KEYS = ["kpis", "standards", "sources", "priorities", "mission", "owners", "name", "owner", "strategy", "target",
        "measure", "ratio", "derived", "model", "time", "grain", "window", "schedule", "baseline", "tables",
        "columns", "strategies", "from", "value", "by", "change", "dimensions", "check_ins", "tolerance"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.dates(),
    st.text(max_size=20), st.sampled_from(KEYS + ["sum(amount)", "source('shop', 'orders')", "month", "5%", "{{ x }}"]),
)
STRUCTURES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=5)),
    max_leaves=25,
)
TEXT = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.lists(st.sampled_from(["kpis:", "  - name: x", "    owner: [", "- ", ": :", "&a", "*a", "!!python/object:os.system",
                              "---", "\t", "'", '"', "{", "}", "? ", "%YAML 1.1", "<<: *a", "\r\n", "\ufeff"]),
             max_size=12).map("\n".join),
)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(rel: str, content: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = write_project(Path(folder), VALID_PROJECT)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        try:
            issues = Project.load(root).validate(today=TODAY)
        except Exception as exc:  # kpimetrics.yml is the one file whose problems may be raised (as ConfigError)
            from kpimetrics.errors import KpiMetricsError

            assert rel == "kpimetrics.yml" and isinstance(exc, KpiMetricsError) and exc.issues, repr(exc)
            issues = exc.issues
        for issue in issues:
            assert issue.code in CODES, issue.format()
            assert "internal error" not in issue.message.lower(), issue.format()
            assert issue.location is not None and issue.location.path, issue.format()


@SETTINGS
@given(TEXT)
def test_any_text_in_a_kpi_file(text):
    check("kpis/fuzz.yml", text)


@SETTINGS
@given(STRUCTURES)
def test_any_yaml_structure_in_a_kpi_file(data):
    check("kpis/fuzz.yml", yaml.safe_dump(data, allow_unicode=True))


@SETTINGS
@given(STRUCTURES)
def test_any_yaml_structure_under_kpis(data):
    check("kpis/fuzz.yml", yaml.safe_dump({"kpis": [data]}, allow_unicode=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(TEXT, STRUCTURES.map(lambda d: yaml.safe_dump(d, allow_unicode=True))))
def test_any_content_in_the_project_file(content):
    check("kpimetrics.yml", content)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_any_text_in_a_model(text):
    check("models/fuzz.sql", text)
