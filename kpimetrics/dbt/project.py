"""The dbt project a kpimetrics project lives in: where it is, what it owns, where its artifacts are.

Found from `dbt.project_dir` in kpimetrics.yml, else as the nearest folder at or above kpimetrics.yml that
holds a dbt_project.yml. Everything dbt owns (its files and the folders dbt_project.yml names) is left
alone by kpimetrics' walk of its own files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Issue, Location, error
from ..yamlio import load_yaml, shown

# dbt's files beside dbt_project.yml that are never kpimetrics files
DBT_FILES = ("dbt_project.yml", "dbt_project.yaml", "packages.yml", "dependencies.yml", "selectors.yml",
             "package-lock.yml")
# dbt_project.yml's path settings and their defaults (older names first-class too, as dbt still reads them)
_PATH_LISTS = {
    "model-paths": ["models"], "seed-paths": ["seeds"], "macro-paths": ["macros"],
    "snapshot-paths": ["snapshots"], "analysis-paths": ["analyses"], "test-paths": ["tests"],
    "docs-paths": [], "asset-paths": [],
}
_LEGACY = {"source-paths": "model-paths", "data-paths": "seed-paths"}
_PATHS = {"target-path": "target", "log-path": "logs", "packages-install-path": "dbt_packages"}


@dataclass(frozen=True)
class DbtProject:
    dir: Path  # the folder holding dbt_project.yml
    file: Path  # dbt_project.yml itself
    name: str | None
    profile: str | None  # the profile dbt_project.yml names
    target_path: Path  # where dbt writes manifest.json and catalog.json
    owned: tuple[Path, ...] = field(default=())  # dbt's files and folders, resolved

    def owns(self, path: Path) -> bool:
        return path in self.owned

    @property
    def manifest_path(self) -> Path:
        return self.target_path / "manifest.json"

    @property
    def catalog_path(self) -> Path:
        return self.target_path / "catalog.json"

    @property
    def semantic_manifest_path(self) -> Path:
        return self.target_path / "semantic_manifest.json"


def _project_file(folder: Path) -> Path | None:
    for name in ("dbt_project.yml", "dbt_project.yaml"):
        if (folder / name).is_file():
            return folder / name
    return None


def _nearest(root: Path) -> Path | None:
    for folder in (root, *root.parents):
        if _project_file(folder) is not None:
            return folder
    return None


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def find_dbt_project(root: Path, project_dir: str | None, where: Location | None) -> tuple[DbtProject | None, list[Issue]]:
    """The dbt project of the kpimetrics project at `root` (None when there is none), and what is wrong with it.
    `project_dir` is kpimetrics.yml's `dbt.project_dir` (relative to `root`); `where` is its location."""
    if project_dir is not None:
        folder = (root / project_dir).resolve()
        if _project_file(folder) is None:
            return None, [error("KPI140", f"dbt.project_dir {shown(project_dir)}: no dbt_project.yml in {folder}",
                                where, "name the folder that holds dbt_project.yml, relative to kpimetrics.yml")]
    else:
        found = _nearest(root)
        if found is None:
            return None, []
        folder = found
    file = _project_file(folder)
    assert file is not None
    display = os.path.relpath(file, root)
    data, issues = load_yaml(file, display)
    if issues:
        return None, issues
    if not isinstance(data, dict):
        return None, [error("KPI140", "dbt_project.yml is not a mapping", Location(display, 1, 1),
                            "fix dbt_project.yml (`dbt parse` checks it)")]
    settings: dict[str, list[str]] = {}
    problems: list[Issue] = []
    for key, default in {**_PATH_LISTS, **{k: [v] for k, v in _PATHS.items()}}.items():
        value = data.get(key, data.get(next((old for old, new in _LEGACY.items() if new == key), ""), default))
        paths = _strings(value)
        if paths is None or any("{" in p for p in paths):
            where_key = data.value_loc(key) if hasattr(data, "value_loc") and key in data else Location(display, 1, 1)
            problems.append(error("KPI140", f"dbt_project.yml: {key} must be a folder name or a list of them, "
                                  "without Jinja (kpimetrics reads it without dbt)", where_key,
                                  "write the path itself, or set DBT_TARGET_PATH for the target path"))
            paths = list(default)
        settings[key] = paths
    target = os.environ.get("DBT_TARGET_PATH") or settings["target-path"][0]
    target_path = (folder / target).resolve()
    owned = {(folder / name).resolve() for name in DBT_FILES}
    owned.update((folder / p).resolve() for paths in settings.values() for p in paths)
    owned.add(target_path)
    name, profile = data.get("name"), data.get("profile")
    return DbtProject(folder, file, name if isinstance(name, str) else None,
                      profile if isinstance(profile, str) else None, target_path, tuple(sorted(owned))), problems
