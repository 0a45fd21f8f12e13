"""compile: snapshots of the generated SQL, parse-back per dialect, determinism,
the manifest, and the per-KPI files returning exactly what `run` writes."""
from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from pathlib import Path

import duckdb
import pytest
import sqlglot

from kpimetrics import Project
from kpimetrics.compiler import MANIFEST_SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots" / "demo"
DIALECTS = ("duckdb", "postgres", "spark", "snowflake", "bigquery", "trino", "databricks")
AS_OF = dt.date(2026, 11, 21)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo project, seeded and run once for the module."""
    path = tmp_path_factory.mktemp("compile") / "demo"
    shutil.copytree(ROOT / "project_template", path, ignore=shutil.ignore_patterns("target", "*.duckdb*"))
    project = Project.load(path)
    project.seed()
    result = project.run(full_refresh=True, as_of=AS_OF)
    assert result.status == "success", [k.to_dict() for k in result.kpis if k.status != "success"]
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_compiled_sql_matches_snapshot_and_parses_back(demo: Path, dialect: str, update_snapshots: bool):
    result = Project.load(demo).compile(dialect=dialect)
    assert result.dialect == dialect
    assert len(result.files) == 12
    expected_dir = SNAPSHOTS / dialect
    if update_snapshots:
        shutil.rmtree(expected_dir, ignore_errors=True)
        expected_dir.mkdir(parents=True)
    for path in result.files:
        text = path.read_text()
        # every compiled file is valid SQL in its own dialect
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
        assert len(statements) == 1, path.name
        snapshot = expected_dir / path.name
        if update_snapshots:
            snapshot.write_text(text)
        assert snapshot.exists(), f"no snapshot for {dialect}/{path.name}: run `make snapshots`"
        assert text == snapshot.read_text(), f"{dialect}/{path.name} changed: review, then `make snapshots`"
    run_sql = (demo / "target" / "run.sql").read_text()
    assert sqlglot.parse(run_sql, read=dialect)
    if dialect == "duckdb":
        snapshot = SNAPSHOTS / "run.duckdb.sql"
        if update_snapshots:
            snapshot.write_text(run_sql)
        assert run_sql == snapshot.read_text()


def test_compile_is_deterministic(demo: Path):
    target = demo / "target"
    Project.load(demo).compile(dialect="duckdb")
    first = _files(target / "compiled" / "duckdb") | {"run.sql": (target / "run.sql").read_bytes(),
                                           "manifest.json": (target / "manifest.json").read_bytes()}
    shutil.rmtree(target)
    Project.load(demo).compile(dialect="duckdb")
    second = _files(target / "compiled" / "duckdb") | {"run.sql": (target / "run.sql").read_bytes(),
                                            "manifest.json": (target / "manifest.json").read_bytes()}
    assert first == second


def test_each_compiled_file_returns_the_values_run_writes(demo: Path):
    Project.load(demo).compile(dialect="duckdb")
    con = duckdb.connect(str(demo / "warehouse.duckdb"), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        cols = "name, grain, period_start, period_end, dimension, dimension_value, value, numerator, denominator"
        for path in sorted((demo / "target" / "compiled" / "duckdb").glob("*.sql")):
            name = path.stem
            got = sorted(con.execute(path.read_text()).fetchall(), key=_key)
            written = sorted(con.execute(f"SELECT {cols} FROM kpi.kpi_values WHERE name = ?", [name]).fetchall(), key=_key)
            assert len(got) == len(written) > 0, name
            for a, b in zip(got, written):
                assert a[:6] == b[:6], name
                for x, y in zip(a[6:], b[6:]):
                    assert (x is None and y is None) or math.isclose(x, y, rel_tol=1e-12), (name, a, b)
    finally:
        con.close()


def _key(row):
    return tuple("" if v is None else str(v) for v in row[:6])


def test_manifest_describes_every_kpi(demo: Path):
    Project.load(demo).compile(dialect="duckdb")
    manifest = json.loads((demo / "target" / "manifest.json").read_text())
    assert manifest["manifest_schema_version"] == MANIFEST_SCHEMA_VERSION
    assert manifest["dialect"] == "duckdb"
    kpis = manifest["kpis"]
    assert len(kpis) == 12
    growth = kpis["revenue_yoy_growth"]
    assert growth["form"] == "derived"
    assert growth["depends_on"]["kpis"] == ["net_revenue"]
    assert growth["strategy_path"][1:] == ["profitable_growth", "grow_repeat_purchases"]
    assert kpis["call_wrap_up_seconds"]["kind"] == "standard"
    for name, entry in kpis.items():
        assert len(entry["definition_hash"]) == 16
        assert (demo / entry["compiled_sql"]["duckdb"]).is_file(), name
    assert kpis["active_customers"]["depends_on"]["models"] == ["orders_enriched"]
    assert "shop.orders" in kpis["active_customers"]["depends_on"]["sources"]


def test_select_compiles_only_the_selection(demo: Path, tmp_path: Path):
    copy = tmp_path / "p"
    shutil.copytree(demo, copy, ignore=shutil.ignore_patterns("target", "*.duckdb*"))
    result = Project.load(copy).compile("+revenue_yoy_growth", dialect="duckdb")
    assert sorted(p.stem for p in result.files) == ["net_revenue", "revenue_yoy_growth"]
    manifest = json.loads((copy / "target" / "manifest.json").read_text())
    assert sorted(manifest["kpis"]) == ["net_revenue", "revenue_yoy_growth"]


def _hashes(path: Path) -> dict[str, str]:
    plan = Project.load(path).plan()
    return {n: p.definition_hash for n, p in plan.kpis.items()}


def test_definition_hash_covers_values_only(demo: Path, tmp_path: Path):
    copy = tmp_path / "p"
    shutil.copytree(demo, copy, ignore=shutil.ignore_patterns("target", "*.duckdb*"))
    before = _hashes(copy)
    revenue = copy / "kpis" / "revenue.yml"
    text = revenue.read_text()
    # owner, label and targets change no values: same hashes
    changed = text.replace("label: Net revenue", "label: Net revenue (renamed)")
    assert changed != text
    revenue.write_text(changed)
    assert _hashes(copy) == before
    # a filter changes the KPI's values, and those of the KPIs derived from it
    revenue.write_text(changed.replace("filter: status = 'completed'", "filter: status <> 'cancelled'", 1))
    after = _hashes(copy)
    assert after["net_revenue"] != before["net_revenue"]
    assert after["revenue_yoy_growth"] != before["revenue_yoy_growth"]
    unchanged = {n for n in before if n not in ("net_revenue", "revenue_yoy_growth")}
    assert {n: after[n] for n in unchanged} == {n: before[n] for n in unchanged}


def test_nested_divisions_are_all_made_safe():
    """(a / b) / c: the inner division too gives NULL on a zero divisor and divides DOUBLEs (SPEC §2)."""
    from sqlglot import exp

    from kpimetrics.sqlgen import make_divisions_safe

    text = "sum(a) / sum(b) / count(*) + sum(x / (y / z))"
    tree = sqlglot.parse_one(text, read="duckdb")
    safe = make_divisions_safe(tree)
    divisions = list(safe.find_all(exp.Div))
    assert len(divisions) == 4
    assert all(isinstance(d.expression, exp.Nullif) and isinstance(d.this, exp.Cast) for d in divisions)
    assert tree.sql("duckdb") == sqlglot.parse_one(text, read="duckdb").sql("duckdb")  # a copy: parsed trees are shared
