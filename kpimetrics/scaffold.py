"""`kpimetrics init NAME`: a new project from project_template/, with its demo data."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from .errors import UsageError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def template_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "project_template", here.parent / "project_template"):
        if (candidate / "kpimetrics.yml").is_file():
            return candidate
    raise UsageError("project_template/ is missing from this installation of kpimetrics")


def init_project(name: str, parent: Path) -> Path:
    if not _NAME.match(name):
        raise UsageError(f"'{name}' is not a valid project name: use letters, digits, '_' and '-'")
    dest = parent / name
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"{dest} already exists and is not empty")
    src = template_dir()
    shutil.copytree(src, dest, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("target", "*.duckdb", "*.duckdb.wal", "__pycache__", ".gitkeep"))
    config = dest / "kpimetrics.yml"
    text = config.read_text()
    text = re.sub(r"^name:.*$", f"name: {name.replace('-', '_')}", text, count=1, flags=re.M)
    config.write_text(text)
    (dest / ".gitignore").write_text("target/\n*.duckdb\n*.duckdb.wal\n")
    return dest
