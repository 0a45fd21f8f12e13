"""Partial compile: target/ files are rendered again only when what they depend on changed,
and what a warm compile leaves is byte for byte what a cold one writes."""
from __future__ import annotations

import shutil
from pathlib import Path

from kpimetrics import Project
from kpimetrics import compiler

ROOT = Path(__file__).resolve().parent.parent


def _demo(tmp_path: Path) -> Path:
    path = tmp_path / "demo"
    shutil.copytree(ROOT / "project_template", path, ignore=shutil.ignore_patterns("target", "*.duckdb*"))
    return path


def _files(target: Path) -> dict[str, bytes]:
    return {str(p.relative_to(target)): p.read_bytes() for p in sorted(target.rglob("*.sql"))}


def _rendered(monkeypatch) -> list[str]:
    """The KPIs whose per-KPI file the next compile renders (all in this process: no forked copy takes some)."""
    seen: list[str] = []
    monkeypatch.setattr(compiler, "_fork_safe", lambda: False)
    real = compiler.header  # written at the top of every per-KPI file, and nowhere else
    monkeypatch.setattr(compiler, "header", lambda plan, pl, dialect: seen.append(pl.name) or real(plan, pl, dialect))
    return seen


def test_warm_compile_renders_nothing_and_equals_cold(tmp_path: Path, monkeypatch):
    demo = _demo(tmp_path)
    Project.load(demo).compile(dialect="duckdb")
    cold = _files(demo / "target")
    seen = _rendered(monkeypatch)
    Project.load(demo).compile(dialect="duckdb")
    assert seen == []
    assert _files(demo / "target") == cold


def test_a_changed_kpi_is_rendered_again_with_what_derives_from_it(tmp_path: Path, monkeypatch):
    demo = _demo(tmp_path)
    Project.load(demo).compile(dialect="duckdb")
    kpis = demo / "kpis" / "revenue.yml"
    text = kpis.read_text()
    assert "filter: status = 'completed'" in text
    kpis.write_text(text.replace("filter: status = 'completed'", "filter: status <> 'returned'", 1))
    seen = _rendered(monkeypatch)
    Project.load(demo).compile(dialect="duckdb")
    assert "net_revenue" in seen and "revenue_yoy_growth" in seen  # the derived KPI inlines its input
    assert "csat" not in seen
    warm = _files(demo / "target")
    shutil.rmtree(demo / "target")
    Project.load(demo).compile(dialect="duckdb")
    assert _files(demo / "target") == warm


def test_another_dialect_or_generator_renders_everything(tmp_path: Path, monkeypatch):
    demo = _demo(tmp_path)
    Project.load(demo).compile(dialect="duckdb")
    seen = _rendered(monkeypatch)
    Project.load(demo).compile(dialect="postgres")
    assert len(seen) == 12
    seen.clear()
    monkeypatch.setattr(compiler, "generator_fingerprint", lambda: "changed")
    Project.load(demo).compile(dialect="postgres")
    assert len(seen) == 12


def test_a_removed_kpi_loses_its_file(tmp_path: Path):
    demo = _demo(tmp_path)
    Project.load(demo).compile(dialect="duckdb")
    stale = demo / "target" / "compiled" / "duckdb" / "gone.sql"
    stale.write_text("SELECT 1;\n")
    Project.load(demo).compile(dialect="duckdb")
    assert not stale.exists()


# `compile` renders in a forked copy of the process beside it: the copy takes run.sql's pieces from the front of
# a shared queue, this process per-KPI files from its back. Run in a fresh interpreter (no other threads, as in
# the CLI), which counts its forks and can make the copy fail: on a run.sql piece, or on the first per-KPI file
# it takes (the parent is slowed down so that the copy gets some).
FORKED_COMPILE = """
import os, sys, time
from kpimetrics import compiler
from kpimetrics.cli import main
parent, forks, mode = os.getpid(), [], sys.argv[2]
real_fork, real_pieces, real_query = os.fork, compiler.run_pieces, compiler.kpi_query
os.fork = lambda: forks.append(1) or real_fork()
def failing(piece):
    def run():
        if os.getpid() != parent:
            print("copy took a run.sql piece", flush=True)
            raise RuntimeError("the copy fails")
        return piece()
    return run
def pieces(*args, **kwargs):
    got = real_pieces(*args, **kwargs)
    return [failing(p) for p in got] if mode == "fail_run_sql" else got
def query(plan, name):
    if mode == "fail_kpis":
        if os.getpid() != parent:
            print("copy took", name, flush=True)
            raise RuntimeError("the copy fails")
        time.sleep(0.1)
    return real_query(plan, name)
compiler.run_pieces, compiler.kpi_query = pieces, query
try:
    main(["--project-dir", sys.argv[1], "compile", "-q"])
except SystemExit as exit:
    assert not exit.code, exit.code
print("forks", len(forks))
"""


def test_compile_renders_beside_and_redoes_what_a_failed_copy_took(tmp_path: Path):
    import subprocess
    import sys

    demo = _demo(tmp_path)
    Project.load(demo).compile(dialect="duckdb")
    expected = _files(demo / "target")  # from this process: maybe forked, maybe not; the content is what counts
    for mode in ("ok", "fail_run_sql", "fail_kpis"):
        shutil.rmtree(demo / "target")
        out = subprocess.run([sys.executable, "-c", FORKED_COMPILE, str(demo), mode], capture_output=True, text=True,
                             cwd=demo)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[-1] == "forks 1", mode  # rendered beside, in a forked copy
        if mode == "fail_kpis":
            assert "copy took" in out.stdout  # the copy took a KPI and failed on it
        if mode == "fail_run_sql":
            assert "copy took a run.sql piece" in out.stdout
        assert _files(demo / "target") == expected, mode  # the same files: what the copy took was done again
        assert not list((demo / "target").rglob("*.tmp")), mode
