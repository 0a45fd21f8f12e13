"""Hostile input: names are checked identifiers and every identifier in generated SQL is
quoted; free text (labels, descriptions, owners, check-in notes, strategy text) holding
quotes, semicolons, newlines and SQL is stored verbatim and never executed; Jinja in
models runs sandboxed, and escapes (or attempts to exhaust memory) are refused with a
clear error at the template's line.
"""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import sqlglot
from sqlglot import exp

from helpers_projects import TODAY, VALID_PROJECT, kpi_yaml, write_project
from kpimetrics import Project
from helpers_run import execute, make_orders, ok, query, run, write_run_project

INJECTION = "x'); DROP TABLE main.canary; --"
TEXTS = {
    "label": 'Revenue "net"; of returns',
    "description": "Line one\nline two; it's -- not a comment\n/* nor this */ DELETE FROM kpi.kpi_values;",
    "owner": "o'brien+sales@shop.example",
    "note": INJECTION + "\n{{ 7 * 7 }} ${HOME} %s ?",
    "author": "Robert'); DROP TABLE kpi.kpi_runs;--",
    "actions": "Escalate; then `rm -rf /` is NOT an action",
    "strategy_description": "Grow \"fast\"; DROP SCHEMA kpi CASCADE; --",
}


def hostile_kpis() -> str:
    t = {k: json.dumps(v) for k, v in TEXTS.items()}  # a JSON string is a YAML double-quoted string
    return f"""kpis:
  - name: revenue
    label: {t['label']}
    description: {t['description']}
    owner: {t['owner']}
    strategy: grow_sales
    indicator: leading
    actions: {t['actions']}
    model: source('shop', 'weird orders')
    time: '"Ordered At"'
    measure: sum("amount; drop")
    filter: "\\"sta'tus\\" <> 'x''; DROP TABLE main.canary; --'"
    dimensions: ['"Reg''ion"']
    target: 100
    check_ins:
      - {{date: 2025-11-01, author: {t['author']}, note: {t['note']}}}
"""


@pytest.fixture
def hostile(tmp_path):
    """A project reading a table whose name and columns need quoting, full of hostile text; run once."""
    sources = """
        sources:
          - name: shop
            schema: main
            tables:
              - name: weird orders
                columns: ["Ordered At", "amount; drop", "sta'tus", "Reg'ion"]
    """
    root = write_run_project(tmp_path, hostile_kpis(), sources=sources)
    strategy = (root / "strategy.yml").read_text().replace(
        "owner: sales@shop.example", f"owner: sales@shop.example, description: {json.dumps(TEXTS['strategy_description'])}")
    (root / "strategy.yml").write_text(strategy)
    rows = [(r[2], r[5], r[7], r[3]) for r in make_orders(dt.date(2025, 9, 1), dt.date(2025, 12, 1))]
    execute(root, "CREATE TABLE main.canary AS SELECT 1 AS alive",
            'CREATE TABLE main."weird orders" ("Ordered At" TIMESTAMP, "amount; drop" DOUBLE, "sta\'tus" VARCHAR, '
            '"Reg\'ion" VARCHAR)')
    values = ", ".join(f"(TIMESTAMP '{a}', {b}, '{c}', {repr(d) if d else 'NULL'})" for a, b, c, d in rows)
    execute(root, f'INSERT INTO main."weird orders" VALUES {values}')
    ok(run(root))
    return root


def test_free_text_is_stored_verbatim_and_never_executed(hostile):
    assert query(hostile, "SELECT alive FROM main.canary") == [(1,)]
    assert query(hostile, "SELECT label, description, owner, actions FROM kpi.kpi_catalog") == [
        (TEXTS["label"], TEXTS["description"], TEXTS["owner"], TEXTS["actions"])]
    assert query(hostile, "SELECT author, note FROM kpi.kpi_check_ins") == [(TEXTS["author"], TEXTS["note"])]
    assert query(hostile, "SELECT description FROM kpi.kpi_strategy WHERE level = 'strategy'") == [
        (TEXTS["strategy_description"],)]
    assert query(hostile, "SELECT DISTINCT owner FROM kpi.kpi_status") == [(TEXTS["owner"],)]
    assert query(hostile, "SELECT status FROM kpi.kpi_runs") == [("success",)]


def test_quoted_names_compute_the_right_values(hostile):
    """The table, its columns and the dimension all need quoting; the values match a hand-written query."""
    expected = query(hostile, """
        SELECT date_trunc('month', "Ordered At")::DATE, "Reg'ion", sum("amount; drop")
        FROM main."weird orders" WHERE "sta'tus" <> 'x''; DROP TABLE main.canary; --'
        GROUP BY ALL ORDER BY ALL""")
    got = query(hostile, "SELECT period_start, dimension_value, value FROM kpi.kpi_values WHERE dimension <> ''")
    assert len(expected) > 6
    # the dimension is named as the YAML wrote it
    assert sorted(query(hostile, "SELECT DISTINCT dimension FROM kpi.kpi_values")) == [("",), ('"Reg\'ion"',)]
    assert sorted((p, v, round(x, 6)) for p, v, x in got) == sorted((p, v or "(null)", round(x, 6)) for p, v, x in expected)


def test_every_identifier_in_generated_sql_is_quoted(hostile):
    Project.load(hostile).compile()
    files = sorted((hostile / "target").rglob("*.sql"))
    assert len(files) >= 2
    for path in files:
        for tree in sqlglot.parse(path.read_text(), read="duckdb"):
            # sqlglot names an UNNEST that sqlgen leaves unnamed `_t0`: a fixed name of ours, not the user's
            bare = [i.name for i in tree.find_all(exp.Identifier) if not i.quoted and not re.fullmatch(r"_t\d+", i.name)]
            assert bare == [], f"{path.name}: unquoted identifiers {sorted(set(bare))}"


@pytest.mark.parametrize("name", ["net revenue", "drop;table", "x'y", 'q"q', "Ünïcode", "a-b", "1abc", "_x"])
def test_names_must_be_identifiers(tmp_path, name):
    write_project(tmp_path, {**VALID_PROJECT, "kpis/broken.yml": kpi_yaml(name=json.dumps(name))})
    issues = [i for i in Project.load(tmp_path).validate(today=TODAY) if i.is_error]
    assert [(i.code, i.location.path, i.location.line) for i in issues] == [("KPI010", "kpis/broken.yml", 2)]


ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ source.__self__.vars }}",
    "{{ env_var.__func__.__globals__['os'].system('true') }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'] }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ self._TemplateReference__context }}",
    "{{ 'x' * 1000000000 }}",  # memory exhaustion, not an escape, refused just the same
    "{{ 9 ** 9999999 }}",
    "{{ [0] * 100000000 }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_jinja_sandbox_refuses_escapes(tmp_path, payload):
    model = f"select *\nfrom {{{{ source('shop', 'orders') }}}}\nwhere {payload} is not null\n"
    write_project(tmp_path, {**VALID_PROJECT, "models/evil.sql": model})
    issues = [i for i in Project.load(tmp_path).validate(today=TODAY) if i.is_error]
    assert [(i.code, i.location.path, i.location.line) for i in issues] == [("KPI064", "models/evil.sql", 3)], \
        [i.format() for i in issues]
    assert "refused" in issues[0].message and issues[0].hint
