"""Validation: one broken project per code, each issue at its file and line.

Each case adds or replaces files of the valid example project (helpers_projects).
The line the issue must point at carries the marker `#!` (a YAML or SQL comment),
so a case reads like the mistake it shows; a case without a marker names its
file and expects no line (a problem with the whole file).
"""
from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers_projects import (
    SALES_YML, SOURCES_YML, STRATEGY_YML, TODAY, VALID_PROJECT, KPIMETRICS_YML, kpi_yaml, write_project,
)
from kpimetrics import Project
from kpimetrics.codes import CODES, errors_doc
from kpimetrics.errors import ConfigError, Level
from kpimetrics.validate import parse_duration

ROOT = Path(__file__).resolve().parent.parent
MARKER = "#!"


@dataclass
class Case:
    code: str
    files: dict[str, str]  # added to (or replacing files of) the valid project
    message: str  # a piece of the expected message
    path: str | None = None  # for a whole-file problem (no marker)

    def expected_place(self) -> tuple[str, int]:
        marked = [(path, n) for path, text in self.files.items()
                  for n, line in enumerate(textwrap.dedent(text).lstrip("\n").splitlines(), 1) if MARKER in line]
        if self.path is not None:
            assert not marked
            return self.path, 0
        assert len(marked) == 1, f"a case marks exactly one line, got {marked}"
        return marked[0]


def validate_files(tmp_path: Path, files: dict[str, str], *, strict: bool = False):
    write_project(tmp_path, {**VALID_PROJECT, **files})
    return Project.load(tmp_path).validate(strict=strict, today=TODAY)


STRATEGY_EXTRA = """
    priorities:
      - name: operational_excellence
        strategies:
          - name: automate_fulfilment  #!
"""

EIGHT_KPIS = "kpis:\n" + "".join(
    kpi_yaml(name=f"orders_{i}", strategy="automate_fulfilment").split("\n", 1)[1] for i in range(8)
)

CASES: list[Case] = [
    # --- files and YAML (the loader) ---
    Case("KPI001", {"kpis/broken.yml": "kpis:\n  - name: broken\n     owner: x  #!\n"}, "YAML syntax error"),
    Case("KPI002", {"kpis/binary.yml": "kpis:\x00\x01  #!"}, "binary"),  # at the NUL's line
    Case("KPI003", {"kpis/broken.yml": "kpis:\n  - name: broken\n    owner: a\n    owner: b  #!\n"},
         "duplicate key 'owner' (first defined at line 3)"),
    Case("KPI004", {"kpis/empty.yml": "#!\n"}, "file is empty"),
    Case("KPI005", {"kpis/broken.yml": kpi_yaml(owner=None, ownr="vp-sales@acme.example  #!")},
         "unknown key 'ownr' in KPI 'broken'; did you mean 'owner'?"),
    Case("KPI006", {"kpis/broken.yml": kpi_yaml(name=None, owner="vp-sales@acme.example  #!")},
         "missing required key 'name'"),
    Case("KPI007", {"kpis/broken.yml": kpi_yaml(grain="fortnight  #!")}, "invalid value for 'grain"),
    Case("KPI008", {"kpis/broken.yml": "- net_revenue  #!\n"}, "a project file must be a mapping"),
    Case("KPI009", {"strategy_more.yml": "mission: Another mission  #!\n"}, "mission is defined twice"),
    # --- names and duplicates ---
    Case("KPI010", {"kpis/broken.yml": kpi_yaml(name="NetRevenue2  #!")},
         "KPI 'NetRevenue2': name must be snake_case"),
    Case("KPI011", {"kpis/support_more.yml": kpi_yaml(name="csat  #!")},
         "KPI 'csat' is defined twice (first defined at kpis/support.yml:2:5)"),
    Case("KPI012", {"strategy_more.yml": """
        priorities:
          - name: second_priority
            strategies:
              - name: grow_repeat_purchases  #!
        """}, "strategy 'grow_repeat_purchases' is defined twice (first defined at strategy.yml:15:9)"),
    Case("KPI013", {"strategy_more.yml": "priorities:\n  - name: brand_loyalty  #!\n"},
         "priority 'brand_loyalty' is defined twice"),
    Case("KPI014", {"sources_more.yml": "sources:\n  - name: shop  #!\n    tables: [{name: refunds}]\n"},
         "source 'shop' is defined twice"),
    Case("KPI015", {"sources_more.yml": """
        sources:
          - name: crm
            tables:
              - name: accounts
              - name: accounts  #!
        """}, "source 'crm' declares table 'accounts' twice"),
    Case("KPI016", {"owners_more.yml": "owners:\n  - {name: cmo, email: marketing@acme.example}  #!\n"},
         "owner 'cmo' is defined twice"),
    # --- required fields, links, form ---
    Case("KPI020", {"kpis/broken.yml": kpi_yaml(name="broken  #!", owner=None)},
         "KPI 'broken' has no owner"),
    Case("KPI021", {"kpis/broken.yml": kpi_yaml(name="broken  #!", target=None)}, "KPI 'broken' has no target"),
    Case("KPI022", {"kpis/broken.yml": kpi_yaml(name="broken  #!", strategy=None)},
         "KPI 'broken' is not linked to a strategy: link it with `strategy:`, or, if it is a performance "
         "standard, move it to `standards:`"),
    Case("KPI023", {"kpis/broken.yml": kpi_yaml(strategy="grow_repeat_purchase  #!")},
         "unknown strategy 'grow_repeat_purchase'; did you mean 'grow_repeat_purchases'?"),
    Case("KPI024", {"kpis/broken.yml": kpi_yaml(owner="vp-sale@acme.example  #!")},
         "unknown owner 'vp-sale@acme.example'; did you mean 'vp-sales@acme.example'?"),
    Case("KPI025", {"kpis/broken.yml": kpi_yaml(derived="net_revenue * 2  #!")},
         "KPI 'broken' has both `measure` and `derived`"),
    Case("KPI026", {"kpis/broken.yml": kpi_yaml(name="broken  #!", model=None)},
         "KPI 'broken' has a measure but no `model`"),
    Case("KPI027", {"kpis/broken.yml": kpi_yaml(name="broken  #!", time=None)},
         "KPI 'broken' has a measure but no `time`"),
    # --- models, sources, columns ---
    Case("KPI030", {"kpis/broken.yml": kpi_yaml(model="\"{{ source('shop', 'orders') }}\"  #!")},
         "model must be source('source', 'table') or ref('model')"),
    Case("KPI031", {"kpis/broken.yml": kpi_yaml(model="ref('orders_enrich')  #!")},
         "unknown model ref('orders_enrich'); did you mean 'orders_enriched'?"),
    Case("KPI031", {"models/broken.sql": "select *\nfrom {{ ref('orders_enrich') }}  -- #!\n"},
         "unknown model ref('orders_enrich'); did you mean 'orders_enriched'?"),
    Case("KPI032", {"kpis/broken.yml": kpi_yaml(model="source('shop', 'order')  #!")},
         "source 'shop' has no table 'order'; did you mean 'orders'?"),
    Case("KPI032", {"models/broken.sql": "select *\nfrom {{ source('shop', 'refunds') }}  -- #!\n"},
         "source 'shop' has no table 'refunds'"),
    Case("KPI033", {"kpis/broken.yml": kpi_yaml(measure="sum(amuont)  #!")},
         "KPI 'broken': column 'amuont' in `measure` is not a column of source('shop', 'orders'); "
         "did you mean 'amount'?"),
    Case("KPI033", {"kpis/broken.yml": kpi_yaml(time="opened_at  #!")},
         "KPI 'broken': time column 'opened_at' is not a column of source('shop', 'orders'); did you mean 'ordered_at'?"),
    Case("KPI033", {"kpis/broken.yml": kpi_yaml(model="ref('orders_enriched')", dimensions="[region, segmnt]  #!")},
         "column 'segmnt' in `dimension` is not a column of model 'orders_enriched'; did you mean 'segment'?"),
    Case("KPI037", {"kpis/broken.yml": kpi_yaml(model="ref('orders_enriched')", dimensions="[region, [region, segmnt]]  #!")},
         "KPI 'broken': column 'segmnt' in the combination of dimensions is not a column of model 'orders_enriched'; "
         "did you mean 'segment'?"),
    Case("KPI038", {"kpis/broken.yml": kpi_yaml(dimensions="[[region, channel], [channel, region]]  #!")},
         "KPI 'broken': the combination of dimensions [channel, region] is listed twice (item 1 and item 2"),
    Case("KPI038", {"kpis/broken.yml": kpi_yaml(dimensions="[channel, [region, region]]  #!")},
         "KPI 'broken': the combination of dimensions [region, region] names 'region' twice"),
    Case("KPI039", {"kpis/broken.yml": kpi_yaml(dimensions="[region, [channel]]  #!")},
         "KPI 'broken': the combination of dimensions [channel] lists 1 column: a combination lists two or more"),
    Case("KPI039", {"kpis/broken.yml": kpi_yaml(dimensions="[[region, [channel, status]]]  #!")},
         "has a list inside it: a combination is one flat list of columns"),
    Case("KPI034", {"models/broken.sql": "select order_id,\n  sum(amount as total  -- #!\nfrom {{ source('shop', 'orders') }}\n"},
         "model 'broken': SQL does not parse: Expecting )"),
    Case("KPI035", {
        "sources.yml": SOURCES_YML + "          - name: events\n",
        "models/all_events.sql": "select *  -- #!\nfrom {{ source('shop', 'events') }}\n",
        "kpis/broken.yml": kpi_yaml(model="ref('all_events')", time="happened_at"),
    }, "the columns of model 'all_events' could not be determined (it selects * from source('shop', 'events'), "
       "whose columns are not declared), so the columns used by broken were not checked"),
    Case("KPI036", {"models/first.sql": "select * from {{ ref('second') }}  -- #!\n",
                    "models/second.sql": "select * from {{ ref('first') }}\n"},
         "models refer to each other in a cycle: first -> second -> first"),
    # --- SQL ---
    Case("KPI040", {"kpis/broken.yml": kpi_yaml(measure="sum(amount  #!")},
         "KPI 'broken': `measure`: SQL does not parse: Expecting ) at character"),
    Case("KPI040", {"kpis/broken.yml": kpi_yaml(filter="status = = 'x'  #!")}, "`filter`: SQL does not parse"),
    Case("KPI041", {"kpis/broken.yml": kpi_yaml(measure="sum(amount) - discount  #!")},
         "KPI 'broken': `measure` is not an aggregate: 'discount' must sit inside one of sum, count"),
    Case("KPI041", {"kpis/broken.yml": kpi_yaml(measure="'42'  #!")}, "`measure` is not an aggregate expression"),
    Case("KPI042", {"kpis/broken.yml": kpi_yaml(filter="sum(amount) > 0  #!")},
         "`filter` uses the aggregate 'sum'"),
    Case("KPI043", {"kpis/broken.yml": kpi_yaml(measure="string_agg(status, ',')  #!")},
         "`measure` uses 'string_agg', which is not an allowed aggregate; use one of sum, count, count(distinct ...), avg, "
         "min, max, median, quantile_cont / percentile_cont"),
    Case("KPI043", {"kpis/broken.yml": kpi_yaml(measure=None, ratio="""
        numerator: approx_count_distinct(customer_id)  #!
        denominator: count(*)
        """)}, "`ratio.numerator` uses 'approx_count_distinct', which is not an allowed aggregate"),
    Case("KPI044", {"kpis/broken.yml": kpi_yaml(measure="sum(amount) over ()  #!")},
         "`measure` uses a window function (OVER ...), which is not allowed"),
    Case("KPI045", {"kpis/broken.yml": kpi_yaml(measure="sum(count(amount))  #!")}, "`measure` nests an aggregate inside another"),
    Case("KPI046", {"kpis/broken.yml": kpi_yaml(model=None, time=None, measure=None, derived="net_revenu / 2  #!")},
         "derived KPI 'broken' uses unknown KPI 'net_revenu'; did you mean 'net_revenue'?"),
    Case("KPI047", {"kpis/broken.yml": kpi_yaml(model=None, time=None, measure=None, derived="other + 1  #!")
                    + kpi_yaml(name="other", model=None, time=None, measure=None, derived="broken + 1").split("\n", 1)[1]},
         "derived KPIs form a cycle: broken -> other -> broken"),
    Case("KPI048", {"kpis/broken.yml": kpi_yaml(drives="[net_revenu]  #!")},
         "KPI 'broken' drives unknown KPI 'net_revenu'; did you mean 'net_revenue'?"),
    Case("KPI049", {"kpis/broken.yml": kpi_yaml(model=None, time=None, measure=None, derived="net_revenue * 2",
                                                window="{periods: 3}  #!")},
         "derived KPI 'broken' takes no `window`"),
    # --- targets, grains, windows, durations ---
    Case("KPI050", {"kpis/broken.yml": kpi_yaml(target="""
        schedule:
          - {from: 2026-07-01, value: 12}
          - {from: 2026-01-01, value: 10}  #!
        """)}, "schedule entry from 2026-01-01 is not after the previous entry (from 2026-07-01)"),
    Case("KPI051", {"kpis/broken.yml": kpi_yaml(target="""
        baseline: {from: 2026-01-01, to: 2026-03-31}
        change: 10%
        by: 2026-03-01  #!
        """)}, "target `by` 2026-03-01 is on or before the end of its baseline (2026-03-31)"),
    Case("KPI052", {"kpis/broken.yml": kpi_yaml(target="""
        baseline: {from: 2026-01-01}  #!
        change: 10%
        by: 2026-12-31
        """)}, "a baseline needs `from` and `to` (a date range), or `value` and `as_of`"),
    Case("KPI053", {"kpis/broken.yml": kpi_yaml(target="""
        baseline: {value: 10, as_of: 2025-12-31}
        change: a lot  #!
        by: 2026-12-31
        """)}, "`change` must be a number (-120) or a percent ('-20%'), got 'a lot'"),
    Case("KPI054", {"kpis/broken.yml": kpi_yaml(tolerance="five percent  #!")},
         "tolerance must be a non-negative number (0.05) or percent ('5%'), got 'five percent'"),
    Case("KPI054", {"kpis/broken.yml": kpi_yaml(grain="[week, month]", tolerance="""
        week: 5%
        month: -2%  #!
        """)}, "got '-2%'"),
    Case("KPI055", {"kpis/broken.yml": kpi_yaml(at_risk_above="12  #!")},
         "KPI 'broken' is higher_is_better, so `at_risk_above` does not apply"),
    Case("KPI056", {"kpis/broken.yml": kpi_yaml(target="""
        month: 100
        week: 25  #!
        """)}, "`target` sets grain 'week', but the KPI is computed at month only, so it is never used"),
    Case("KPI057", {"kpis/broken.yml": kpi_yaml(target="{value: 100, by: 2026-12-31, pace: linear}  #!")},
         "a pace target needs a to-date KPI"),
    Case("KPI058", {"kpis/broken.yml": kpi_yaml(window="{periods: 0}  #!")},
         "window `periods` must be 1 or more, got 0"),
    Case("KPI058", {"kpis/broken.yml": kpi_yaml(window="{periods: 3, to_date: year}  #!")},
         "`window` needs exactly one of `periods` or `to_date`"),
    Case("KPI059", {"kpimetrics.yml": KPIMETRICS_YML.replace(
        "defaults: {grain: month, lookback: 1}", "defaults:\n      grain: month\n      lookback: two weeks  #!")},
         "lookback must be a whole number of periods (0 or more) or a duration such as '35 days', got 'two weeks'"),
    Case("KPI059", {"kpimetrics.yml": KPIMETRICS_YML.replace(
        "defaults: {grain: month, lookback: 1}", "defaults:\n      grain: month\n      late_rows: a day  #!")},
         "late_rows must be a duration such as '1 day' or '12 hours', got 'a day'"),
    Case("KPI059", {"sources.yml": SOURCES_YML.replace(
        "freshness: {warn_after: 2 days, error_after: 7 days}",
        "freshness:\n          warn_after: 2 days\n          error_after: a week  #!")},
         "source 'shop': freshness `error_after` must be a duration such as '2 days' or '12 hours', got 'a week'"),
    # --- Jinja (templating, through the loader) ---
    Case("KPI060", {"models/broken.sql": "select *\nfrom {{ source('shop', 'orders') }}\nwhere ordered_at > '{{ var(\"since\") }}'  -- #!\n"},
         "var('since') is not defined"),
    Case("KPI061", {"models/broken.sql": "select *  -- {{ env_var('KPIMETRICS_TEST_UNSET') }} #!\nfrom {{ source('shop', 'orders') }}\n"},
         "environment variable 'KPIMETRICS_TEST_UNSET' is not set"),
    Case("KPI062", {"sources.yml": SOURCES_YML.replace("schema: main", "schema: \"{{ ref('x') }}\"  #!")},
         "ref() is not available here"),
    Case("KPI063", {"models/broken.sql": "select *\nfrom {{ source('shop', 'orders') }  -- #!\n"}, "Jinja syntax error"),
    Case("KPI064", {"models/broken.sql": "select *\nfrom {{ ''.__class__.__mro__ }}  -- #!\n"},
         "Jinja sandbox refused an unsafe operation"),
    Case("KPI065", {"models/broken.sql": "select *\nfrom {{ orders_table }}  -- #!\n"}, "'orders_table' is undefined"),
    Case("KPI066", {"models/orders-2.sql": "select 1\n"}, "model file name 'orders-2.sql' is not a valid identifier",
         path="models/orders-2.sql"),
    # --- the discipline warnings ---
    Case("KPI070", {"kpis/broken.yml": kpi_yaml(indicator="lagging  #!", drives=None)},
         "lagging KPI 'broken' is not driven by any leading KPI"),
    Case("KPI071", {"kpis/broken.yml": kpi_yaml(name="broken  #!", actions=None)},
         "KPI 'broken' has no `actions`: say what to do when it goes off track"),
    Case("KPI072", {"kpis/broken.yml": kpi_yaml(name="broken  #!", indicator=None, drives=None)},
         "KPI 'broken' has no `indicator`"),
    Case("KPI073", {"strategy_more.yml": STRATEGY_EXTRA},
         "strategy 'automate_fulfilment' has no KPI"),
    Case("KPI074", {"strategy.yml": STRATEGY_YML.replace("ends: 2026-12-31", "ends: 2026-02-28  #!")},
         "strategy 'improve_customer_experience' ended on 2026-02-28"),
    Case("KPI075", {"strategy_more.yml": STRATEGY_EXTRA, "kpis/many.yml": EIGHT_KPIS},
         "strategy 'automate_fulfilment' has 8 KPIs (more than 7)"),
    Case("KPI076", {"kpis/broken.yml": kpi_yaml(review_by="2026-03-01  #!")},
         "KPI 'broken' was due for review on 2026-03-01"),
    Case("KPI077", {"kpis/broken.yml": kpi_yaml("standards", strategy="grow_repeat_purchases  #!")},
         "standard 'broken' is linked to strategy 'grow_repeat_purchases'"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.code)
def test_code_is_reported_at_its_line(case: Case, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("KPIMETRICS_TEST_UNSET", raising=False)
    issues = validate_files(tmp_path, case.files)
    path, line = case.expected_place()
    found = [i for i in issues if i.code == case.code]
    # a set: pydantic may report one bad value once per member of a union (see KPI007)
    assert {(i.location.path, i.location.line) for i in found} == {(path, line)}, "\n".join(i.format() for i in issues)
    assert case.message in found[0].message
    assert found[0].level is CODES[case.code].level


def test_kpi000_no_project_file(tmp_path: Path):
    with pytest.raises(ConfigError) as caught:
        Project.load(tmp_path)
    [issue] = caught.value.issues
    assert issue.code == "KPI000" and issue.location.path == str(tmp_path) and issue.location.line == 0
    assert issue.message == "no kpimetrics.yml found"


def test_every_code_has_a_case():
    # SPEC §11: test_error_catalog
    import corpus_access, corpus_dbt, corpus_files, corpus_notify, corpus_run, corpus_sql, corpus_state, corpus_targets
    import corpus_reading, corpus_semantic

    corpus = (corpus_access, corpus_dbt, corpus_files, corpus_run, corpus_sql, corpus_state, corpus_targets, corpus_notify,
              corpus_semantic, corpus_reading)
    covered = {c.code for c in CASES} | {"KPI000"} | {f.code for m in corpus for f in m.FAULTS} | {
        code for m in corpus for code in m.ELSEWHERE}
    elsewhere = {"KPI080", "KPI081", "KPI082", "KPI083",  # profiles and config: tested with the profiles
                 "KPI085", "KPI086",  # dbt's profiles: test_dbt_profiles (and test_error_catalog)
                 "KPI180", "KPI181", "KPI182", "KPI183",  # Spark profiles: test_error_catalog's CONFIG_FAULTS
                 "KPI090", "KPI091", "KPI092", "KPI093"}  # found while running: tested with the runner
    assert set(CODES) - elsewhere - covered == set()


# --- whole projects ----------------------------------------------------------------


def test_valid_project_has_no_issues(tmp_path: Path):
    assert validate_files(tmp_path, {}) == []


def test_other_tools_hidden_yaml_files_are_not_project_files(tmp_path: Path):
    """dbt writes .user.yml beside the profiles.yml it uses (a dbt project's root, as often as not), and a dbt
    repository holds .pre-commit-config.yaml: read as project files, each failed the run with KPI005 (found
    trying the semantic layer as a new user). A KPI in a hidden file is not read either, as in a hidden folder."""
    hidden = {".user.yml": "id: 6f0cbb4b-7a52-4c3c-bc8e-2a3f0d0c3b9e\n",
              ".pre-commit-config.yaml": "repos:\n  - repo: https://github.com/sqlfluff/sqlfluff\n",
              "kpis/.draft.yml": "kpis:\n  - name: not_read\n"}
    assert validate_files(tmp_path, hidden) == []
    assert "not_read" not in {k.name for k in Project.load(tmp_path).definition.kpis}


def test_valid_project_uses_every_form(tmp_path: Path):
    write_project(tmp_path, VALID_PROJECT)
    project = Project.load(tmp_path).definition
    assert {k.form for k in project.kpis} == {"measure", "ratio", "derived"}
    assert {k.kind for k in project.kpis} == {"kpi", "standard"}
    targets = [k.target for k in project.kpis]
    kinds = {type(t).__name__ for t in targets} | {type(v).__name__ for t in targets if isinstance(t, dict) for v in t.values()}
    assert {"int", "float", "dict", "ValueTarget", "ScheduleTarget", "RelativeTarget", "PaceTarget"} <= kinds


def test_new_user_sees_all_mistakes_in_one_run(tmp_path: Path):
    """Three separate mistakes in two files: all reported at once, each with file and line, exit code 1."""
    sales = SALES_YML.replace("strategy: grow_repeat_purchases\n        indicator: lagging\n        category",
                              "strategy: grow_repeat_purchase\n        indicator: lagging\n        category")
    sales = sales.replace("measure: count(distinct customer_id)", "measure: customer_id")
    sources = SOURCES_YML.replace("warn_after: 2 days", "warn_after: 2 dayz")
    assert sales.count("grow_repeat_purchase\n") == 1 and sources != SOURCES_YML
    write_project(tmp_path, {**VALID_PROJECT, "kpis/sales.yml": sales, "sources.yml": sources})
    expected = [("kpis/sales.yml", 6, "KPI023"), ("kpis/sales.yml", 38, "KPI041"), ("sources.yml", 4, "KPI059")]

    issues = Project.load(tmp_path).validate(today=TODAY)
    assert sorted((i.location.path, i.location.line, i.code) for i in issues) == expected

    from click.testing import CliRunner

    from kpimetrics.cli import main

    result = CliRunner().invoke(main, ["validate", "--project-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    for path, line, code in expected:
        assert re.search(rf"{re.escape(path)}:{line}:\d+: error\[{code}\]", result.output), result.output


def test_strict_turns_warnings_into_errors(tmp_path: Path):
    write_project(tmp_path, {**VALID_PROJECT, "kpis/broken.yml": kpi_yaml(actions=None)})
    project = Project.load(tmp_path)
    relaxed = project.validate(today=TODAY)
    strict = project.validate(today=TODAY, strict=True)
    assert [(i.code, i.level) for i in relaxed] == [("KPI071", Level.WARNING)]
    assert [(i.code, i.level) for i in strict] == [("KPI071", Level.ERROR)]


def test_a_project_with_no_kpis_only_warns(tmp_path: Path):
    write_project(tmp_path, {"kpimetrics.yml": KPIMETRICS_YML, "strategy.yml": STRATEGY_YML})
    issues = Project.load(tmp_path).validate(today=TODAY)
    assert {i.code for i in issues} == {"KPI073"} and not any(i.is_error for i in issues)


def test_dates_are_judged_against_today(tmp_path: Path):
    write_project(tmp_path, VALID_PROJECT)
    later = Project.load(tmp_path).validate(today=dt.date(2027, 2, 1))
    assert {i.code for i in later} == {"KPI074", "KPI076"}


def test_unknown_dialect_does_not_flood_every_kpi(tmp_path: Path):
    issues = validate_files(tmp_path, {"kpimetrics.yml": KPIMETRICS_YML.replace("dialect: duckdb", "dialect: klingon")})
    assert not [i for i in issues if i.code == "KPI040"]


@pytest.mark.parametrize("text, expected", [
    ("2 days", dt.timedelta(days=2)), ("12 hours", dt.timedelta(hours=12)), ("1 week", dt.timedelta(weeks=1)),
    ("35 Days", dt.timedelta(days=35)), ("30 minutes", dt.timedelta(minutes=30)),
    ("two days", None), ("1.5 days", None), ("5", None), (5, None),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


# --- never crash on bad input ---------------------------------------------------------

_FIELDS = ["measure", "filter", "time", "model", "derived", "target", "tolerance", "grain", "window", "drives",
           "dimensions", "strategy", "owner", "at_risk_below", "review_by"]
_VALUES = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.sampled_from(["", "[]", "{}", "null", "-1", "0", "1e400", "'%'", "{periods: -1}", "{month: x}",
                     "ref('')", "source('', '')", "sum(", "lag(lag(net_revenue))", "[a, [b]]",
                     "{baseline: {}, change: x, by: 2020-01-01}", "{schedule: []}", "count(*) over ()"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_FIELDS), _VALUES), min_size=1, max_size=4))
def test_validation_never_crashes(changes):
    fields = {key: value.replace("\n", " ") or "''" for key, value in changes}
    with tempfile.TemporaryDirectory() as folder:
        write_project(Path(folder), {**VALID_PROJECT, "kpis/broken.yml": kpi_yaml(**fields)})
        issues = Project.load(folder).validate(today=TODAY)
        assert all(i.location is not None for i in issues)


def test_impossible_date_is_an_issue_not_a_crash(tmp_path: Path):
    issues = validate_files(tmp_path, {"kpis/broken.yml": kpi_yaml(review_by="2026-13-01  #!")})
    assert [(i.code, i.location.line) for i in issues if i.is_error] == [("KPI001", 12)]


# --- the registry and its document ------------------------------------------------------


def test_error_doc_is_up_to_date():
    doc = ROOT / "docs" / "errors.md"
    assert doc.read_text("utf-8") == errors_doc(), "run python scripts/gen_error_docs.py"
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_error_docs.py"), "--check"], capture_output=True)
    assert check.returncode == 0, check.stderr


def test_every_code_used_is_registered():
    used = {code for path in (ROOT / "kpimetrics").rglob("*.py") if path.name != "codes.py"
            for code in re.findall(r"\bKPI\d{3}\b", path.read_text("utf-8"))}
    assert used - set(CODES) == set()
