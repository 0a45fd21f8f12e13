"""The hostile-input corpus (SPEC §11): faults as data, and the one check every fault gets.

A `Fault` is a few files written over the valid example project (tests/projects/valid),
the code it must give and where (file and line). `check_fault` runs it through the CLI
in-process against a copy of a published DuckDB warehouse and asserts: its exit code (1
unless the fault says 2), the code at its file and line with its message, no traceback
and no "internal error", and every table of the warehouse (sources included) unchanged.

The faults live by area in corpus_*.py (files and limits, SQL grammar, machine access,
run-time, diff state); test_error_catalog runs each module's FAULTS and counts their
codes as covered, and each module's ELSEWHERE names codes tested by a test of their own.
"""
from __future__ import annotations

import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import duckdb
from click.testing import CliRunner

from helpers_projects import TODAY, VALID_PROJECT, write_project

ANY_LINE = -1
PROFILES = "acme:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: wh.duckdb}\n"


@dataclass
class Fault:
    code: str
    files: dict[str, str | bytes]  # written over the valid project (bytes as they are, text dedented)
    path: str
    line: int  # 0: the whole file; ANY_LINE: a line the parser chose (where a library gave up)
    message: str  # our own wording only; "" where the message quotes a library (PyYAML's, say), which may change
    args: tuple[str, ...] = ()  # extra global options
    exit_code: int = 1
    command: str = "run"

    @property
    def id(self) -> str:
        return f"{self.code}-{self.path.replace('/', '_')}-{'any' if self.line == ANY_LINE else self.line}"


def broken_project(root: Path, fault: Fault, warehouse: Path | None) -> Path:
    write_project(root, {**VALID_PROJECT, "profiles.yml": PROFILES})
    for rel, content in fault.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")
    if warehouse is not None:
        shutil.copy(warehouse, root / "wh.duckdb")
    return root


def where(fault: Fault) -> str:
    """The start of the error line: a regular expression for the fault's file and line."""
    if fault.line == ANY_LINE:
        return rf"{re.escape(fault.path)}:[1-9][0-9]*:"
    return re.escape(f"{fault.path}:{fault.line}:" if fault.line else f"{fault.path}: ")


def every_table(path: Path) -> dict[str, list[tuple]]:
    """Every table and view of a DuckDB file, all schemas (sources included), rows sorted."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                            "UNION ALL SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal "
                            "ORDER BY 1, 2").fetchall()
        return {f"{s}.{t}": sorted(con.execute(f'SELECT * FROM "{s}"."{t}"').fetchall(), key=repr) for s, t in names}
    finally:
        con.close()


def invoke(root: Path, fault: Fault):
    from kpimetrics.cli import main

    extra = {"run": ["--strict", "--as-of", TODAY.isoformat()], "validate": ["--strict"], "compile": ["--strict"]}
    out = CliRunner().invoke(main, [fault.command, *extra.get(fault.command, []), "--project-dir", str(root),
                                    *fault.args])
    return out, out.output.replace(f"{root}/", "")  # profiles.yml is named by its full path: it may be elsewhere


def check_fault(fault: Fault, root: Path) -> str:
    """Run the fault in `root` (written by broken_project) and assert everything a fault must give; the output."""
    before = every_table(root / "wh.duckdb") if (root / "wh.duckdb").exists() else None
    out, text = invoke(root, fault)
    assert out.exit_code == fault.exit_code, text
    lines = [line for line in text.splitlines() if f"error[{fault.code}]" in line]
    assert any(re.match(where(fault), line) and fault.message in line for line in lines), text
    assert "Traceback" not in text and "internal error" not in text, text
    if before is not None:
        assert every_table(root / "wh.duckdb") == before
    return text
