"""Per-KPI files rendered once per shape (kpimetrics/shapes.py): KPIs that differ only in their names and the
constants they compare with share one rendering, and each file still returns exactly its KPI's values."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlglot import exp

from helpers_run import comparable, insert_orders, kpi, kpis_yml, make_orders, ok, read, run, table, write_run_project
from kpimetrics import Project, compiler
from kpimetrics.dialects import PARTS_RENDER_ALONE
from kpimetrics.shapes import RowTexts, Shapes, _layout_free

OVER_ORDERS = "model: source('shop', 'orders')\ntime: ordered_at\n"

# pairs of KPIs of one shape each, whose constants differ in kind and awkwardness: strings with a quote,
# negative and decimal numbers, a constant that is also a column's value, IN lists, BETWEEN, arithmetic
SAME_SHAPES = [
    ("big_orders_a", "measure: sum(amount)\nfilter: amount > 30 and status = 'completed'\ntarget: 10\n"),
    ("big_orders_b", "measure: sum(amount)\nfilter: amount > 55 and status = 'returned'\ntarget: 10\n"),
    ("odd_codes_a", "measure: count(*)\nfilter: code = 'it''s' or amount < -5 + 40\ndimensions: [region]\ntarget: 1\n"),
    ("odd_codes_b", "measure: count(*)\nfilter: code = 'x''y''z' or amount < -2 + 90\ndimensions: [region]\ntarget: 1\n"),
    ("share_a", "ratio: {numerator: \"count(*) filter (where region in ('north', 'south'))\", denominator: count(*)}\n"
                "filter: amount between 10.5 and 400\ntarget: 0.5\n"),
    ("share_b", "ratio: {numerator: \"count(*) filter (where region in ('east', 'west'))\", denominator: count(*)}\n"
                "filter: amount between 20.25 and 300\ntarget: 0.5\n"),
    ("net_a", "measure: sum(amount - discount * 2)\nfilter: discount >= 3\nwindow: {periods: 3}\ntarget: 1\n"),
    ("net_b", "measure: sum(amount - discount * 7)\nfilter: discount >= 4\nwindow: {periods: 3}\ntarget: 1\n"),
    ("p90_a", "measure: quantile_cont(amount, 0.9)\nfilter: customer_id % 10 <> 3\ntarget: 1\n"),
    ("p90_b", "measure: quantile_cont(amount, 0.9)\nfilter: customer_id % 10 <> 7\ntarget: 1\n"),
]
DERIVED = [
    ("growth_a", "derived: big_orders_a / lag(big_orders_a) - 1 + 0 * odd_codes_a\ntarget: 0.1\n"),
    ("growth_b", "derived: big_orders_b / lag(big_orders_b) - 1 + 0 * odd_codes_b\ntarget: 0.1\n"),
]


def make_project(root):
    entries = [kpi(n, OVER_ORDERS + body) for n, body in SAME_SHAPES] + [kpi(n, body) for n, body in DERIVED]
    write_run_project(root, kpis_yml(*entries))
    insert_orders(root, make_orders(dt.date(2025, 6, 1), dt.date(2025, 11, 1)))
    return root


def shapes_of(root, dialect: str) -> tuple[Shapes, dict[str, str]]:
    project = Project.load(root)
    plan = project.plan()
    shapes = Shapes(plan, dialect, lambda p, n: compiler.render(compiler.kpi_query(p, n), dialect))
    return shapes, {name: shapes.text(name) for name in project.select(None)}


@pytest.mark.parametrize("dialect", ["duckdb", "postgres", "spark", "snowflake", "bigquery"])
def test_kpis_of_one_shape_share_a_rendering_that_equals_each_rendered_alone(tmp_path, dialect):
    shapes, texts = shapes_of(make_project(tmp_path), dialect)
    assert len(shapes.templates) == len(texts) // 2  # each pair is one shape
    assert all(t is not None for t in shapes.templates.values())  # and none had to be rendered directly
    project = Project.load(tmp_path)
    plan = project.plan()
    for name, text in texts.items():
        alone = compiler.render(compiler.kpi_query(plan, name), dialect)
        assert _layout_free(text) == _layout_free(alone), name
        assert "kpim" not in text, name  # no stand-in is left
    # the constants went where they belong: the second of a pair has its own, not the first's
    quoted = lambda text: exp.Literal.string(text).sql(dialect=dialect)  # noqa: E731  each dialect escapes its way
    assert quoted("x'y'z") in texts["odd_codes_b"] and quoted("it's") not in texts["odd_codes_b"]
    assert re.search(r"\b20\.25\b", texts["share_b"]) and not re.search(r"\b10\.5\b", texts["share_b"])
    assert re.search(r"<> 7\b", texts["p90_b"]) and not re.search(r"<> 3\b", texts["p90_b"])


def test_each_compiled_file_returns_its_kpis_values(tmp_path):
    root = make_project(tmp_path)
    ok(run(root))
    values = table(root, "kpi_values", drop=("definition_hash", "run_id", "computed_at"))
    compiled = root / "target" / "compiled" / "duckdb"
    for name in [n for n, _ in SAME_SHAPES + DERIVED]:
        mine = [r for r in values if r[0] == name]
        assert len(mine) >= 5 and any(r[6] not in (None, 0) for r in mine), name
        assert comparable(*read(root, (compiled / f"{name}.sql").read_text())) == mine, name
    # the pairs really differ: the same shape does not mean the same numbers
    for a, b in [("big_orders_a", "big_orders_b"), ("share_a", "share_b"), ("net_a", "net_b")]:
        assert [r[6] for r in values if r[0] == a] != [r[6] for r in values if r[0] == b]


def test_a_shape_whose_stand_ins_do_not_come_back_is_rendered_directly(tmp_path):
    """Should a dialect rewrite a constant it was handed (so that the stand-in is not in the text to replace),
    the check against the first KPI rendered directly catches it, and every KPI of that shape is rendered alone."""
    root = make_project(tmp_path)
    plan = Project.load(root).plan()

    def render(p, name):
        text = compiler.render(compiler.kpi_query(p, name), "duckdb")
        return re.sub(r"\b90710000000\b", "31", text) if name.startswith("kpim") else text

    shapes = Shapes(plan, "duckdb", render)
    texts = {name: shapes.text(name) for name in ("big_orders_a", "big_orders_b")}
    assert list(shapes.templates.values()) == [None]
    for name, text in texts.items():
        assert text == compiler.render(compiler.kpi_query(plan, name), "duckdb")


def test_constants_that_are_function_arguments_are_part_of_the_shape(tmp_path):
    """A quantile (even in parentheses or negated) is a function's argument, which a dialect may rewrite: KPIs
    with different quantiles are different shapes, while their compared constants still share one."""
    entries = [kpi(f"q_{i}", OVER_ORDERS + f"measure: quantile_cont(amount, {q})\nfilter: amount > {lo}\ntarget: 1\n")
               for i, (q, lo) in enumerate([("0.9", 5), ("(0.9)", 6), ("0.5", 7), ("(0.5)", 8), ("0.5", 9)])]
    write_run_project(tmp_path, kpis_yml(*entries))
    shapes, texts = shapes_of(tmp_path, "spark")
    assert len(shapes.templates) == 4  # 0.9, (0.9), 0.5, (0.5): q_2 and q_4 share one
    assert all(t is not None for t in shapes.templates.values())
    assert "0.5" in texts["q_4"] and "> 9" in texts["q_4"]


def scan_texts(plan, dialect: str, rows=None, since: dt.date | None = None) -> list[str]:
    from kpimetrics import sqlgen

    cal = plan.project.config.calendar
    texts = []
    for scan in plan.scans(list(plan.kpis)):
        starts = None if since is None else {(pl.name, grain): since for pl, grain in scan.items}
        texts.append(compiler.render(sqlgen.scan_query(scan.items, cal, starts, rows=rows), dialect))
    return texts


@pytest.mark.parametrize("dialect", PARTS_RENDER_ALONE)
@pytest.mark.parametrize("since", [None, dt.date(2025, 9, 1)])
def test_a_scans_rows_rendered_by_shape_are_the_rows_rendered_in_the_whole_query(tmp_path, dialect, since):
    """run.sql's scans put each KPI's output rows (a UNION ALL branch per grain and slice) in from one rendering
    per shape: byte for byte what rendering each branch in the whole query gives, in every dialect it is used for,
    for a full refresh and for an incremental scan (whose branches start at a date)."""
    plan = Project.load(make_project(tmp_path)).plan()
    rows = RowTexts(dialect)
    by_shape = scan_texts(plan, dialect, rows, since)
    assert by_shape == scan_texts(plan, dialect, None, since)
    n_rows = sum(len(pl.grains) for pl in plan.kpis.values() if pl.form != "derived")
    assert 2 <= len(rows.templates) < n_rows / 2  # shared: pairs of KPIs, and grains of one KPI
    assert all(t is not None for t in rows.templates.values())
    assert not any("kpim" in text for text in by_shape)


def test_rows_of_a_shape_whose_stand_ins_do_not_come_back_are_built_for_every_kpi(tmp_path):
    """Should the dialect change a stand-in as it renders it, the check against the first KPI rendered directly
    catches it, and that shape's rows are built in the tree for every KPI."""
    class Changing(RowTexts):
        def _render(self, branches):
            return super()._render(branches).replace("kpim0n", "someone_else")

    plan = Project.load(make_project(tmp_path)).plan()
    rows = Changing("duckdb")
    assert scan_texts(plan, "duckdb", rows) == scan_texts(plan, "duckdb")
    assert rows.templates and all(t is None for t in rows.templates.values())


def test_names_that_need_quoting_are_rendered_by_sqlglot():
    names = RowTexts("spark")._literals
    assert names.ident("__d0") == "`__d0`" and names.ident("a`b") == "`a``b`"
    assert names.string("region") == "'region'" and names.string("it's") == exp.Literal.string("it's").sql("spark")


def test_run_sql_renders_a_scans_rows_by_shape(tmp_path, monkeypatch):
    """compile's run.sql goes through RowTexts where the dialect allows it: each shape's rows are built twice (with
    stand-ins, and directly for the check), not once per KPI and grain; elsewhere they are built for each."""
    from kpimetrics import sqlgen

    plan = Project.load(make_project(tmp_path)).plan()
    names = list(plan.kpis)
    built: list[str] = []
    real = sqlgen.kpi_rows
    monkeypatch.setattr(sqlgen, "kpi_rows", lambda spec: built.append(spec.name) or real(spec))
    scanned = [n for n in names if plan.kpis[n].form != "derived"]
    for dialect, by_shape in (("duckdb", True), ("snowflake", False)):
        built.clear()
        text = "".join(piece() for piece in compiler.run_pieces(plan, names, dialect))
        assert all(f"'{n}' AS" in text for n in scanned)
        if by_shape:  # stand-ins and the first KPI of each shape are built; the second of each pair is only filled in
            assert "kpim0n" in built and not any(n.endswith("_b") for n in built), built
            assert len(set(built)) - 1 < len(scanned) / 2
        else:
            assert sorted(set(built)) == sorted(scanned), built
