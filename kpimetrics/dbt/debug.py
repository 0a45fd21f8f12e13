"""What `kpimetrics debug` reports: the project, the dbt project and its manifest, the profile and where it was
found, the dbt settings it ignores, and the connection (SPEC §8).

`report` yields the lines one by one, so a connection that fails still leaves everything before it printed.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

from ..config import PROFILE_LOOKUP

if TYPE_CHECKING:
    from ..api import Project

MANIFEST_HEAD_BYTES = 1 << 16  # dbt writes `metadata` first: it is in the first few kilobytes
MANIFEST_MAX_BYTES = 1 << 28  # a manifest whose metadata is not at its head is read whole up to this size


@dataclass(frozen=True)
class Line:
    label: str
    text: str
    level: Literal["info", "ok", "warning"] = "info"


@dataclass(frozen=True)
class ManifestInfo:
    """dbt's manifest.json as debug sees it: its metadata, or why it has none."""

    path: Path
    dbt_version: str | None = None
    generated_at: str | None = None
    adapter_type: str | None = None
    problem: str | None = None  # missing, unreadable, not JSON, ...


def _text(meta: dict, key: str) -> str | None:
    value = meta.get(key)
    return value[:80] if isinstance(value, str) else None


def manifest_info(path: Path) -> ManifestInfo:
    """The metadata of dbt's manifest.json, read with json from the head of the file (where dbt writes it), or
    from the whole file when it is not there and the file is not too large."""
    if not path.is_file():
        return ManifestInfo(path, problem="missing: run `dbt parse` (or compile, run, build) in the dbt project")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(MANIFEST_HEAD_BYTES)
            start = re.match(rb'\s*\{\s*"metadata"\s*:\s*', head)
            meta: Any = None
            if start:
                try:
                    meta, _ = json.JSONDecoder().raw_decode(head.decode("utf-8", "ignore"), start.end())
                except (json.JSONDecodeError, RecursionError):
                    meta = None
            if meta is None:
                if size > MANIFEST_MAX_BYTES:
                    return ManifestInfo(path, problem=f"{size:,} bytes without its metadata at the start: not read")
                f.seek(0)
                meta = json.loads(f.read().decode("utf-8")).get("metadata")
    except OSError as exc:
        return ManifestInfo(path, problem=f"cannot be read: {exc.strerror or exc}")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError, AttributeError):
        return ManifestInfo(path, problem="not dbt's JSON: run `dbt parse` again")
    if not isinstance(meta, dict):
        return ManifestInfo(path, problem="has no metadata: run `dbt parse` again")
    return ManifestInfo(path, _text(meta, "dbt_version"), _text(meta, "generated_at"), _text(meta, "adapter_type"))


def _dbt_lines(project: "Project") -> tuple[list[Line], ManifestInfo | None]:
    d = project.definition
    dbt = d.dbt
    if dbt is None:
        return [Line("dbt project", "none (no dbt_project.yml at or above kpimetrics.yml, and no dbt.project_dir)")], None
    how = ("named by dbt.project_dir in kpimetrics.yml" if d.config.dbt and d.config.dbt.project_dir
           else "found at or above kpimetrics.yml")
    lines = [Line("dbt project", f"{dbt.name or '(no name)'} at {dbt.dir} ({how}; profile {dbt.profile or 'not named'})")]
    info = manifest_info(dbt.manifest_path)
    if info.problem:
        lines.append(Line("dbt manifest", f"{info.path}: {info.problem}", "warning"))
    else:
        lines.append(Line("dbt manifest", f"{info.path}: dbt {info.dbt_version or '?'}, generated at "
                                          f"{info.generated_at or '?'}, adapter {info.adapter_type or '?'}"))
    return lines, info


def report(project: "Project") -> Iterator[Line]:
    """Every line of `kpimetrics debug`, the connection last (it raises when the profile or the warehouse fails)."""
    from .. import __version__

    d = project.definition
    yield Line("kpimetrics", f"{__version__}, python {sys.version.split()[0]}")
    yield Line("project", f"{d.config.name} at {project.root}")
    dbt_lines, manifest = _dbt_lines(project)
    yield from dbt_lines
    prof = project.profile()
    yield Line("profile", f"{prof.profile} (target {prof.target}, type {prof.type}; named by {prof.named_by})")
    if prof.place is not None:
        step = [name for name, _ in PROFILE_LOOKUP].index(prof.place.step) + 1
        yield Line("profiles.yml", f"{prof.path} (found in {prof.place.step}, step {step} of {len(PROFILE_LOOKUP)} "
                                   "of the lookup order)")
    if prof.type == "duckdb" and prof.paths_from is not None:
        why = " (where dbt runs: the profile is in one of dbt's places)" if prof.paths_why.startswith("the dbt") else ""
        yield Line("relative paths", f"a relative DuckDB `path` resolves against {prof.paths_why}{why}: {prof.paths_from}")
    if prof.ignored:
        yield Line("ignored dbt settings", ", ".join(prof.ignored))
    if manifest is not None and manifest.adapter_type and manifest.adapter_type != prof.type:
        yield Line("warning[KPI143]", f"dbt's manifest was written for the {manifest.adapter_type} adapter, and this "
                   f"profile's warehouse is {prof.type}: the relations it names may not be here; run `dbt parse "
                   "--target T` with the dbt target that points at this warehouse", "warning")
    adapter = project.connect()
    try:
        adapter.fetchall("SELECT 1")
        yield Line("connection", f"OK ({adapter.describe()})", "ok")
        if getattr(adapter, "created", False):
            yield Line("warning", f"the DuckDB file {adapter.path} did not exist: connecting created it, empty. Is "
                       f"`path` in profiles.yml right (a relative path is from {prof.paths_why})?", "warning")
    finally:
        adapter.close()
