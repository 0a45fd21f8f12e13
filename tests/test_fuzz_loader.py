"""Property: whatever text or YAML structure a project file holds, loading and validating
the project gives a list of issues (each with a code from codes.py and a place) or a
valid project, never an uncaught exception. An exception is a failure, and so is an
issue whose message says "internal error".

profiles.yml too: whatever it holds, resolving the profile gives an output or a
KpiMetricsError whose issues have codes and places, and `kpimetrics compile` (which reads
the profile for its dialect, without connecting) ends with exit 0 or 1, never exit 3 or
a traceback.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from click.testing import CliRunner

from corpus import PROFILES
from helpers_projects import TODAY, VALID_PROJECT, write_project
from kpimetrics import Project
from kpimetrics.cli import main
from kpimetrics.codes import CODES
from kpimetrics.errors import KpiMetricsError

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


# --- profiles.yml ---------------------------------------------------------------------------------------------

PROFILE_WORDS = ["acme", "target", "outputs", "dev", "prod", "type", "duckdb", "postgres", "spark", "oracle", "path",
                 "schema", "host", "port", "dbname", "user", "password", "threads", "memory_limit", "conf", "master",
                 "warehouse_dir", "allowed_paths", "sslmode", "connect_timeout", ":memory:", "wh.duckdb",
                 "{{ env_var('KPIMETRICS_FUZZ_UNSET') }}", "{{ env_var('HOME') }}", "{{ var('start_date') }}",
                 "{{ 1/0 }}", "{{ x.y }}", "{% for %}", "&a x", "*a"]
PROFILE_SCALARS = st.one_of(SCALARS, st.sampled_from(PROFILE_WORDS))
PROFILE_VALUES = st.recursive(
    PROFILE_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(st.sampled_from(PROFILE_WORDS), st.text(max_size=8)), inner,
                                            max_size=4)),
    max_leaves=15,
)
OUTPUT = st.one_of(
    PROFILE_VALUES,
    st.fixed_dictionaries({"type": st.one_of(st.sampled_from(["duckdb", "postgres", "spark", "oracle"]), PROFILE_SCALARS)},
                          optional={k: PROFILE_VALUES for k in ["schema", "threads", "memory_limit", "port", "dbname",
                                                                "host", "conf", "allowed_paths", "connect_timeout"]}),
)
PROFILE_DOCS = st.one_of(
    PROFILE_VALUES,
    st.fixed_dictionaries({"acme": st.fixed_dictionaries(
        {"target": st.one_of(st.sampled_from(["dev", "prod"]), PROFILE_VALUES),
         "outputs": st.one_of(PROFILE_VALUES, st.dictionaries(st.one_of(st.sampled_from(["dev", "prod"]),
                                                                         PROFILE_SCALARS), OUTPUT, max_size=3))})}),
)
PROFILE_TEXT = st.one_of(
    TEXT,
    PROFILE_DOCS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    # the valid profile with a line of text put in at random: aliases, tags, Jinja and binary bytes included
    st.tuples(st.integers(0, 4), TEXT).map(lambda p: "\n".join(PROFILES.splitlines()[:p[0]] + [p[1]]
                                                               + PROFILES.splitlines()[p[0]:])),
)


def _located(issues) -> None:
    for issue in issues:
        assert issue.code in CODES, issue.format()
        assert "internal error" not in issue.message.lower(), issue.format()
        assert issue.location is None or issue.location.path, issue.format()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example("acme:\n  target: [dev]\n  outputs: {dev: {type: duckdb}}\n")  # was exit 3: a list looked up as a name
@given(PROFILE_TEXT)
def test_any_content_in_profiles_yml(content):
    with tempfile.TemporaryDirectory() as folder:
        root = write_project(Path(folder), VALID_PROJECT)
        (root / "profiles.yml").write_bytes(content.encode("utf-8", "surrogatepass"))
        try:
            Project.load(root).profile()
        except KpiMetricsError as exc:
            assert exc.issues, repr(exc)
            _located(exc.issues)
        # no other exception may leave: that is what exit 3 is made of
        out = CliRunner().invoke(main, ["compile", "--project-dir", str(root)])
        assert out.exit_code in (0, 1), out.output
        assert "Traceback" not in out.output and "internal error" not in out.output, out.output
