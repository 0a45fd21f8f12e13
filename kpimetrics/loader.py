"""Walk a project folder and turn its files into a `ProjectDef` plus issues.

Each YAML entity (a KPI, a source, a priority) is validated on its own, so one
broken KPI never hides the problems of the next; pydantic's errors become
issues at the line of the offending key, with a "did you mean" for typos.
"""
from __future__ import annotations

import difflib
import errno
import functools
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel, ValidationError

from . import model as m
from .collector import long_lived
from .dbt.project import DbtProject, find_dbt_project
from .config import ALL_DIALECTS, Calendar, DbtSettings, Defaults, Paths, ProjectConfig, SecretRegistry, known_time_zone, time_zones
from .errors import ConfigError, Issue, Location, error, warning
from .sqlexpr import quote_identifier, relation_sql
from .templating import TemplateContext, TemplateProblem, render
from .yamlio import ECHO_CHARS, LocDict, LocList, clip, load_yaml, read_text, shown, unreadable

if TYPE_CHECKING:  # dbt's manifest is read (and its module imported) only by a project inside a dbt project
    from .dbt.manifest import DbtNode, Manifest

SKIP_DIRS = {"node_modules", "dbt_packages", "logs", "spark-warehouse", "bench"}
SKIP_FILES = {"kpimetrics.yml", "kpimetrics.yaml", "profiles.yml", "profiles.yaml"}
MODEL_CTE_PREFIX = "__model_"


@dataclass
class ModelFile:
    """A SELECT in models/*.sql, rendered with Jinja (in the project's dialect)."""

    name: str
    path: str
    raw: str
    sql: str | None  # None when rendering failed
    refs: list[str] = field(default_factory=list)
    sources: list[tuple[str, str]] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    dbt_node: DbtNode | None = None  # an ephemeral dbt model, inlined from its compiled SQL
    dialect: str | None = None  # the dialect its SQL is in, where not the project's: dbt compiles for its adapter
    dbt_nodes: list[DbtNode] = field(default_factory=list)  # the relations dbt built that its ref()/source() name

    @property
    def loc(self) -> Location:
        return Location(self.path, 1, 1)


@dataclass(frozen=True)
class ProjectPaths:
    """kpimetrics' own folders, resolved (kpimetrics.yml's `paths:`; see config.Paths for the defaults)."""

    models: Path
    seeds: Path
    target: Path


def project_paths(root: Path, config: ProjectConfig, dbt: DbtProject | None) -> tuple[ProjectPaths, list[Issue]]:
    """Beside a dbt project (its dbt_project.yml in the same folder) the defaults keep out of dbt's folders.
    A path must stay inside the project and must not be one of dbt's."""
    beside = dbt is not None and dbt.dir == root
    issues: list[Issue] = []
    chosen: dict[str, Path] = {}
    for key, plain in (("models", "models"), ("seeds", "seeds"), ("target", "target")):
        written = getattr(config.paths, key)
        default = Path(root / (f"kpi_{plain}" if beside else plain))
        if written is None:
            chosen[key] = default
            continue
        where = config.paths.value_loc(key) or config.value_loc("paths")
        path = (root / written).resolve()
        if Path(written).is_absolute() or not path.is_relative_to(root) or path == root:
            issues.append(error("KPI084", f"paths.{key}: {shown(written)} is not a folder inside the project", where,
                                "a folder name relative to kpimetrics.yml, such as " + default.name))
            path = default
        elif dbt is not None and any(path == o or path.is_relative_to(o) for o in dbt.owned):
            issues.append(error("KPI084", f"paths.{key}: {shown(written)} is a folder of the dbt project "
                                f"({dbt.file.name} names it)", where,
                                f"keep kpimetrics' {key} apart from dbt's, such as {default.name}"))
            path = default
        chosen[key] = path
    return ProjectPaths(**chosen), issues


@dataclass(frozen=True)
class Resolved:
    """What a ref() or source() names: one of a model (by its key in `ProjectDef.models`), a declared source
    table, a relation dbt built; or the problem (code, message, hint) that it names none."""

    model: str | None = None
    source: tuple[m.Source, m.SourceTable] | None = None
    node: DbtNode | None = None
    problem: tuple[str, str, str | None] | None = None


def ref_label(name: str, package: str | None = None, version: str | None = None) -> str:
    args = ([f"'{package}'"] if package else []) + [f"'{name}'"] + ([f"v={version}"] if version is not None else [])
    return f"ref({', '.join(args)})"


def _shown_path(project: "ProjectDef", path: Path) -> str:
    return os.path.relpath(path, project.root)


def _adapter_dialect(adapter_type: str | None) -> str | None:
    """The SQL dialect dbt compiled for: its adapter's, where sqlglot knows it (dbt-duckdb, dbt-postgres,
    dbt-spark, dbt-snowflake, ...); else the project's."""
    from sqlglot.dialects.dialect import Dialect

    if not adapter_type:
        return None
    try:
        Dialect.get_or_raise(adapter_type)
    except ValueError:
        return None
    return adapter_type


def _no_manifest(project: "ProjectDef", label: str) -> Resolved:
    if project.manifest_broken:  # said once, at the manifest (KPI142)
        return Resolved(problem=("", "", None))
    assert project.dbt is not None
    return Resolved(problem=("KPI141", f"{label} is not the project's own, and dbt's manifest "
                             f"{_shown_path(project, project.dbt.manifest_path)} is missing",
                             f"run `dbt parse` (or compile, run, build) in {_shown_path(project, project.dbt.dir)} "
                             "before kpimetrics"))


@dataclass
class StrategyRef:
    strategy: m.Strategy
    priority: m.Priority


@dataclass
class ProjectDef:
    root: Path
    config: ProjectConfig
    config_path: str
    paths: ProjectPaths = None  # type: ignore[assignment]  # set by load_project
    dbt: DbtProject | None = None
    mission: str | None = None
    mission_loc: Location | None = None
    priorities: list[m.Priority] = field(default_factory=list)
    sources: list[m.Source] = field(default_factory=list)
    kpis: list[m.Kpi] = field(default_factory=list)  # KPIs and standards, in file order
    owners: list[m.Owner] | None = None
    owners_loc: Location | None = None
    models: dict[str, ModelFile] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    secrets: SecretRegistry = field(default_factory=SecretRegistry)
    issues: list[Issue] = field(default_factory=list)
    # dbt's manifest, read at load when a ref() or source() is not the project's own (SPEC §8)
    manifest: Manifest | None = None
    manifest_read: bool = False
    manifest_broken: bool = False

    @property
    def strategies(self) -> dict[str, StrategyRef]:
        out: dict[str, StrategyRef] = {}
        for p in self.priorities:
            for s in p.strategies:
                out.setdefault(s.name, StrategyRef(s, p))
        return out

    @property
    def labels(self) -> dict[str, str]:
        """What a reader is shown for each priority and strategy: its `label`, else its name (SPEC §10)."""
        out: dict[str, str] = {}
        for p in self.priorities:
            out.setdefault(p.name, p.label or p.name)
            for s in p.strategies:
                out.setdefault(s.name, s.label or s.name)
        return out

    def currency_of(self, kpi: m.Kpi) -> str | None:
        """The ISO 4217 code shown with a KPI's values: a `unit: currency` KPI's own `currency`, else kpimetrics.yml's;
        None for any other unit (only currency values carry a currency)."""
        return (kpi.currency or self.config.currency) if kpi.unit == "currency" else None

    @property
    def kpi_by_name(self) -> dict[str, m.Kpi]:
        out: dict[str, m.Kpi] = {}
        for k in self.kpis:
            out.setdefault(k.name, k)
        return out

    def dbt_manifest(self) -> Manifest | None:
        """dbt's manifest, read on first need; a manifest that cannot be used is one issue (KPI142), once."""
        if not self.manifest_read and self.dbt is not None:
            from .dbt.manifest import load_manifest

            self.manifest_read = True
            self.manifest, problem = load_manifest(self.dbt, self.root)
            if problem is not None:
                self.manifest_broken = True
                self.issues.append(problem)
        return self.manifest

    def resolve_ref(self, name: str, package: str | None = None, version: str | None = None) -> Resolved:
        """What `ref()` names: the project's own model of that name, else the dbt model, seed or snapshot
        (an ephemeral one inlined as a model from its compiled SQL)."""
        if package is None and version is None and name in self.models:
            return Resolved(model=name)
        label = ref_label(name, package, version)
        if self.dbt is None:
            return Resolved(problem=("KPI031", f"unknown model {label}{suggest(name, self.models)}",
                                     "models are the .sql files under models/, named by file name"))
        manifest = self.dbt_manifest()
        if manifest is None:
            return _no_manifest(self, label)
        node, why = manifest.ref(name, package, version)
        if node is None:
            names = [*self.models, *manifest.refable]
            return Resolved(problem=("KPI031", why or f"unknown model {label}: not a kpimetrics model, nor a dbt model, seed "
                                     f"or snapshot in {manifest.display}{suggest(name, names)}",
                                     f"kpimetrics models are under {_shown_path(self, self.paths.models)}/; dbt's are in "
                                     f"its manifest (run `dbt parse` after adding one)"))
        if not node.ephemeral:
            return Resolved(node=node)
        if node.compiled_code is None:
            return Resolved(problem=("KPI144", f"{label} is an ephemeral dbt model ({node.file}) and {manifest.display} "
                                     "has no compiled SQL for it", "run `dbt compile` (or run, build) before kpimetrics"))
        key = name if package is None and version is None else f"{name}__{node.package}__v{node.version}"
        if key not in self.models:
            self.models[key] = ModelFile(key, node.file, node.compiled_code, node.compiled_code, dbt_node=node,
                                         dialect=_adapter_dialect(manifest.adapter_type),
                                         dbt_nodes=manifest.built_upstream(node))
        return Resolved(model=key)

    def resolve_source(self, source: str, table: str) -> Resolved:
        """What `source()` names: a table of the project's own `sources:`, else a dbt source."""
        if (found := self.source_table(source, table)) is not None:
            return Resolved(source=found)
        manifest = self.dbt_manifest() if self.dbt is not None else None
        node = manifest.sources.get((source, table)) if manifest is not None else None
        if node is not None:
            return Resolved(node=node)
        label = f"source('{source}', '{table}')"
        if self.dbt is not None and manifest is None:
            return _no_manifest(self, label)
        known = {s.name: {t.name for t in s.tables} for s in self.sources}
        for s_name, t_name in (manifest.sources if manifest is not None else {}):
            known.setdefault(s_name, set()).add(t_name)
        if source not in known:
            message = f"unknown source '{source}'{suggest(source, known)}"
        else:
            message = f"source '{source}' has no table '{table}'{suggest(table, known[source])}"
        return Resolved(problem=("KPI032", message, "declare the table under `sources:`"
                                 + (" (or in the dbt project's sources)" if self.dbt is not None else "")))

    def relations(self):
        """(catalog, schema, name) -> (a label, its columns or None), of every table source() or ref() can
        name: the project's sources and dbt's models, seeds, snapshots and sources."""
        out: dict[tuple[str, str, str], tuple[str, list[str] | None]] = {}
        manifest = self.manifest
        for node in (manifest.nodes() if manifest is not None else ()):
            if not node.ephemeral:  # documented columns alone may be a few: a model's `*` over them is unknown
                out[(node.database or "", node.schema or "", node.identifier)] = (
                    node.label, list(node.columns) if node.columns is not None and node.cataloged else None)
        for s in self.sources:
            for t in s.tables:
                out[(s.database or "", s.schema_ or "", t.identifier or t.name)] = (
                    f"source('{s.name}', '{t.name}')", t.columns)
        return out

    def source_table(self, source: str, table: str) -> tuple[m.Source, m.SourceTable] | None:
        for s in self.sources:
            if s.name == source:
                for t in s.tables:
                    if t.name == table:
                        return s, t
        return None


# --- pydantic errors to issues -------------------------------------------------

_ALL_MODELS: list[type[BaseModel]] = [
    m.Kpi, m.Ratio, m.Window, m.CheckIn, m.ValueTarget, m.ScheduleTarget, m.ScheduleEntry, m.RelativeTarget,
    m.Baseline, m.PaceTarget, m.TableTarget, m.Forecast, m.Source, m.SourceTable, m.Freshness, m.Priority, m.Strategy,
    m.Owner,
    ProjectConfig, Defaults, Calendar, Paths, DbtSettings,
]


@functools.cache
def _models_under(title: str) -> tuple[type[BaseModel], ...]:
    """The models a mapping inside an entry can be: those reachable from the entry's model (named by the
    error's title), in `_ALL_MODELS` order; all of them for a title that is not one of ours."""
    root = next((cls for cls in _ALL_MODELS if cls.__name__ == title), None)
    if root is None:
        return tuple(_ALL_MODELS)
    reachable: set[type] = set()
    todo: list[Any] = [root]
    while todo:
        tp = todo.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp not in reachable:
                reachable.add(tp)
                todo.extend(f.annotation for f in tp.model_fields.values())
        else:
            todo.extend(get_args(tp))  # unions, lists, per-grain dicts, Annotated
    return tuple(cls for cls in _ALL_MODELS if cls in reachable)


def _field_names(cls: type[BaseModel]) -> set[str]:
    return {f.alias or n for n, f in cls.model_fields.items()}


def suggest(word: str, candidates) -> str:
    match = difflib.get_close_matches(str(word), sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _allowed_keys(mapping: dict, bad_key: str, models: tuple[type[BaseModel], ...]) -> set[str]:
    """The keys of the model (of `models`) that best fits a mapping's other keys."""
    siblings = {k for k in mapping if k != bad_key}
    best, best_score = set(), (-1, False)
    for cls in models:
        names = _field_names(cls)
        # fit the siblings first; on a tie, a model with a field that looks like the bad key
        score = (len(siblings & names) - len(siblings - names),
                 bool(bad_key and difflib.get_close_matches(str(bad_key), names, n=1, cutoff=0.6)))
        if score > best_score:
            best, best_score = names, score
    return best


_FORM_MODELS = {"value": m.ValueTarget, "schedule": m.ScheduleTarget, "relative": m.RelativeTarget, "pace": m.PaceTarget,
                m.TABLE_TAG: m.TableTarget}
_FORM_TAGS = tuple(_FORM_MODELS)  # target-form tags, some of which are also field names


def _walk(data: Any, loc: tuple, models: tuple[type[BaseModel], ...]) -> tuple[Any, Any, Any, list]:
    """Follow a pydantic error path through the data, skipping the union tags it adds.

    Returns (parent, key, node, path): `path` holds only the keys really written in the YAML.
    """
    parent, key, node, path = None, None, data, []
    for part in loc:
        if isinstance(node, dict) and part in node:
            parent, key, node = node, part, node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            parent, key, node = node, part, node[part]
        elif not isinstance(node, dict) or _is_tag(part) or (part in _FORM_TAGS and part not in _allowed_keys(node, "", models)):
            continue
        else:  # a missing or unknown key of this mapping
            return node, part, None, path + [part]
        path.append(part)
    return parent, key, node, path


def _location_of(parent: Any, key: Any, fallback: Location | None, value: bool = True) -> Location | None:
    if isinstance(parent, LocDict):
        if key in parent:
            return parent.value_loc(key) if value else parent.key_loc(key)
        return parent.loc
    if isinstance(parent, LocList) and isinstance(key, int) and key < len(parent.item_locs):
        return parent.item_locs[key]
    return fallback


def _is_tag(part) -> bool:
    """Path parts pydantic adds for union members ('literal[...]', 'list[...]', our tags)."""
    return isinstance(part, str) and ("[" in part or part in ("single", "per_grain", "number"))


def _describe(path: list) -> str:
    return ".".join(str(p) for p in path) or "value"


def validation_issues(exc: ValidationError, data: Any, what: str, fallback: Location | None) -> list[Issue]:
    issues: list[Issue] = []
    seen: set[tuple] = set()
    models = _models_under(exc.title)
    # the literal error is the most useful of a union's failures: report it first
    errors = sorted(exc.errors(include_url=False),
                    key=lambda e: not e["type"].startswith(("literal_error", "finite_number")))
    for err in errors:
        loc, kind = tuple(err["loc"]), err["type"]
        parent, key, node, path = _walk(data, loc, models)
        if kind == "extra_forbidden":
            bad = loc[-1]
            container = parent if key == bad else node
            if isinstance(parent, dict) and bad in parent:
                container = parent
            form = _FORM_MODELS.get(loc[-2]) if len(loc) > 1 else None  # the target form pydantic tried
            allowed = _field_names(form) if form else _allowed_keys(container, bad, models) if isinstance(container, dict) else set()
            where = _location_of(container, bad, fallback, value=False)
            issue = error("KPI005", f"unknown key {shown(bad)} in {what}{suggest(bad, allowed)}", where,
                          f"allowed keys: {', '.join(sorted(allowed))}" if allowed else None)
        elif kind == "missing":
            container = parent if isinstance(parent, dict) and key not in (parent or {}) else node
            where = _location_of(parent if isinstance(parent, dict) else container, key, fallback)
            if isinstance(node, LocDict):
                where = node.loc
            issue = error("KPI006", f"{what}: missing required key '{loc[-1]}'", where)
        else:
            where = _location_of(parent, key, fallback)
            got = node if not isinstance(node, (dict, list)) else type(node).__name__.replace("Loc", "").lower()
            msg = err["msg"]
            if kind.startswith("literal_error"):
                msg = msg.replace("Input should be", "expected")
            if kind == "finite_number":
                msg = "must be a finite number"
            issue = error("KPI007", f"{what}: invalid value for '{_describe(path)}': {msg} (got {shown(got)})", where)
        sig = (issue.code, issue.location, _describe(path))
        if issue.code == "KPI007":
            sig = (issue.code, issue.location)  # one message per value, even when several union members fail
        if sig not in seen:
            seen.add(sig)
            issues.append(issue)
    return issues


# --- the walk -------------------------------------------------------------------


@dataclass
class ProjectFiles:
    yaml: list[Path] = field(default_factory=list)  # every .yml/.yaml but kpimetrics.yml and profiles.yml
    models: list[Path] = field(default_factory=list)  # models/**/*.sql
    issues: list[Issue] = field(default_factory=list)  # what could not be listed or followed


def project_files(root: Path, paths: ProjectPaths | None = None, dbt: DbtProject | None = None) -> ProjectFiles:
    """The project's files, in path order. Skipped folders are not walked at all (target/ holds a file
    per KPI). Nothing is skipped silently (SPEC §11): a folder that cannot be listed, a link that cannot
    be resolved or that loops back to a folder it is in, is an issue, so a run never takes the KPIs of an
    unreadable file for KPIs removed from the project. Links to folders are followed."""
    out = ProjectFiles()
    paths = paths or ProjectPaths(root / "models", root / "seeds", root / "target")
    # never walked: kpimetrics' seeds and target, and everything dbt owns (SPEC §8)
    skipped = {paths.seeds, paths.target, *(dbt.owned if dbt else ())}

    def display(path: Path) -> str:
        return str(path.relative_to(root))

    def walk(folder: Path, ancestors: frozenset, in_models: bool) -> None:
        try:
            with os.scandir(folder) as it:
                names = sorted(entry.name for entry in it)
        except OSError as exc:
            out.issues.append(unreadable_folder(folder, display(folder) if folder != root else ".", exc))
            return
        for name in names:
            path = folder / name
            if folder == root and name in SKIP_FILES:
                continue  # read by load_config and the profile lookup
            if name.startswith("."):
                continue  # hidden: other tools' files (dbt's .user.yml beside profiles.yml, .pre-commit-config.yaml)
            if path in skipped:
                continue
            try:
                st = os.stat(path)
            except OSError as exc:  # a broken link or a link loop (the entry itself was just listed)
                out.issues.append(unreadable(path, display(path), exc))
                continue
            if stat.S_ISDIR(st.st_mode):
                if name in SKIP_DIRS:
                    continue
                if (st.st_dev, st.st_ino) in ancestors:
                    out.issues.append(error("KPI100", "link loop: the link points to a folder that holds it",
                                            Location(display(path)), "make the link point elsewhere, or remove it"))
                    continue
                walk(path, ancestors | {(st.st_dev, st.st_ino)}, in_models or path == paths.models)
            elif name.endswith((".yml", ".yaml")):
                out.yaml.append(path)
            elif in_models and name.endswith(".sql"):
                out.models.append(path)

    top = os.stat(root)
    walk(root, frozenset({(top.st_dev, top.st_ino)}), False)
    return out


def unreadable_folder(folder: Path, display: str, exc: OSError) -> Issue:
    if exc.errno in (errno.ELOOP, errno.ENOENT):
        return unreadable(folder, display, exc)
    return error("KPI105", f"cannot list folder: {exc.strerror or exc}", Location(display),
                 "let the user that runs kpimetrics list and read it, or move it out of the project")


def load_config(root: Path, vars_override: dict[str, Any] | None = None) -> tuple[ProjectConfig | None, str, list[Issue]]:
    for name in ("kpimetrics.yml", "kpimetrics.yaml"):
        path = root / name
        if os.path.lexists(path):  # a link that cannot be followed is an error below, not "no project"
            break
    else:
        raise ConfigError(
            f"no kpimetrics.yml in {root}: not a kpimetrics project",
            [error("KPI000", "no kpimetrics.yml found", Location(str(root)),
                   "run inside a project, pass --project-dir, or create one with `kpimetrics init NAME`")],
        )
    display = name
    data, issues = load_yaml(path, display)
    if issues:
        return None, display, issues
    if not isinstance(data, dict):
        return None, display, [error("KPI008", "kpimetrics.yml must be a mapping", Location(display, 1, 1))]
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        return None, display, validation_issues(exc, data, "kpimetrics.yml", Location(display, 1, 1))
    if vars_override:
        config = config.model_copy(update={"vars": {**config.vars, **vars_override}})
    return config, display, []


@long_lived()
def load_project(root: Path, vars_override: dict[str, Any] | None = None) -> ProjectDef:
    root = root.resolve()
    config, config_path, issues = load_config(root, vars_override)
    if config is None:
        cfg = ProjectConfig(name=root.name)
        paths, _ = project_paths(root, cfg, None)
        project = ProjectDef(root=root, config=cfg, config_path=config_path, paths=paths, issues=list(issues))
        return project
    dbt, dbt_issues = find_dbt_project(root, config.dbt.project_dir if config.dbt else None,
                                       config.dbt.value_loc("project_dir") if config.dbt else None)
    paths, path_issues = project_paths(root, config, dbt)
    project = ProjectDef(root=root, config=config, config_path=config_path, paths=paths, dbt=dbt,
                         vars=dict(config.vars), issues=[*dbt_issues, *path_issues])
    if config.dialect not in ALL_DIALECTS:
        where = config.value_loc("dialect") or Location(config_path, 1, 1)
        project.issues.append(error("KPI083", f"unknown dialect {shown(config.dialect)}{suggest(config.dialect, ALL_DIALECTS)}",
                                    where, f"the dialect your SQL is written in: one of {', '.join(ALL_DIALECTS)}"))
    zone = config.calendar.timezone
    if not known_time_zone(zone):
        where = config.calendar.value_loc("timezone") or config.value_loc("calendar") or Location(config_path, 1, 1)
        zones = time_zones().values()
        project.issues.append(error("KPI107", f"unknown time zone {shown(zone)} in calendar.timezone"
                                    f"{suggest(zone, zones) if len(zone) <= 64 else ''}", where,
                                    "an IANA time zone name, such as UTC, Europe/Paris or America/New_York"))
    files = project_files(root, paths, dbt)
    project.issues.extend(files.issues)
    for path in files.yaml:
        _load_file(project, path, str(path.relative_to(root)))
    _load_models(project, files.models)
    _resolve_kpi_models(project)
    return project


def _entities(project: ProjectDef, value: Any, key: str, where: Location | None, cls, what: str):
    if value is None:
        return []
    if not isinstance(value, list):
        project.issues.append(error("KPI007", f"'{key}' must be a list of mappings", where))
        return []
    out = []
    for i, item in enumerate(value):
        item_loc = value.item_locs[i] if isinstance(value, LocList) and i < len(value.item_locs) else where
        if not isinstance(item, dict):
            project.issues.append(error("KPI007", f"each entry of '{key}' must be a mapping, got {type(item).__name__}", item_loc))
            continue
        long_names = _long_names(item, what)
        if long_names:  # refused here: a name is quoted by later messages and becomes a file name in target/
            project.issues.extend(long_names)
            continue
        name = item.get("name")
        label = f"{what} {shown(name)}" if isinstance(name, str) else what
        try:
            out.append(cls.model_validate(item))
        except ValidationError as exc:
            project.issues.extend(validation_issues(exc, item, label, item_loc))
    return out


MAX_NAME_CHARS = 128


def _long_names(item: dict, what: str) -> list[Issue]:
    """An issue for each `name` longer than MAX_NAME_CHARS in an entry and the entries it holds."""
    out: list[Issue] = []
    entries = [(item, what)]
    for key, kind in _NESTED.items():
        held = item.get(key)
        if isinstance(held, list):
            entries.extend((e, kind) for e in held if isinstance(e, dict))
    for entry, kind in entries:
        name = entry.get("name")
        if isinstance(name, str) and len(name) > MAX_NAME_CHARS:
            where = entry.value_loc("name") if isinstance(entry, LocDict) else None
            out.append(error("KPI106", f"{kind}: name {shown(name, 40)} is over the limit of {MAX_NAME_CHARS} characters",
                             where))
    return out


_NESTED = {"strategies": "strategy", "tables": "table"}  # the entries a priority and a source hold


def _load_file(project: ProjectDef, path: Path, display: str) -> None:
    data, issues = load_yaml(path, display)
    project.issues.extend(issues)
    if issues:
        return
    if data is None:
        project.issues.append(warning("KPI004", "file is empty", Location(display, 1, 1), "delete it or add definitions"))
        return
    if not isinstance(data, LocDict):
        project.issues.append(error("KPI008", f"a project file must be a mapping of {', '.join(m.TOP_LEVEL_KEYS)}; got a {type(data).__name__.replace('Loc', '').lower()}", Location(display, 1, 1)))
        return
    for key, value in data.items():
        where = data.value_loc(key)
        if key not in m.TOP_LEVEL_KEYS:
            project.issues.append(error("KPI005", f"unknown top-level key {shown(key)}{suggest(key, m.TOP_LEVEL_KEYS)}", data.key_loc(key),
                                        f"allowed: {', '.join(m.TOP_LEVEL_KEYS)}"))
        elif key == "mission":
            if project.mission is not None:
                project.issues.append(error("KPI009", f"mission is defined twice (first at {project.mission_loc})", data.key_loc(key)))
            elif not isinstance(value, str):
                project.issues.append(error("KPI007", "mission must be a text", where))
            else:
                project.mission, project.mission_loc = value, data.key_loc(key)
        elif key == "priorities":
            project.priorities.extend(_entities(project, value, key, where, m.Priority, "priority"))
        elif key == "sources":
            sources = _entities(project, value, key, where, m.Source, "source")
            project.sources.extend(_render_sources(project, sources))
        elif key in ("kpis", "standards"):
            for kpi in _entities(project, value, key, where, m.Kpi, "KPI" if key == "kpis" else "standard"):
                if key == "standards":
                    kpi._kind = "standard"
                project.kpis.append(kpi)
        elif key == "owners":
            owners = _entities(project, value, key, where, m.Owner, "owner")
            project.owners = (project.owners or []) + owners
            project.owners_loc = project.owners_loc or data.key_loc(key)


def _render_sources(project: ProjectDef, sources: list[m.Source]) -> list[m.Source]:
    """Render Jinja in a source's schema and database (e.g. env_var('SHOP_SCHEMA', 'main'))."""
    out = []
    for src in sources:
        updates = {}
        for fname in ("schema_", "database"):
            value = getattr(src, fname)
            if isinstance(value, str) and "{" in value:
                ctx = TemplateContext(vars=project.vars, secrets=project.secrets)
                text, issues = render(value, ctx, src.value_loc(fname) or src.loc)
                project.issues.extend(issues)
                updates[fname] = text.strip() if text is not None else None
        if updates:
            new = src.model_copy(update=updates)
            new._loc, new._key_locs, new._value_locs = src._loc, src._key_locs, src._value_locs
            src = new
        out.append(src)
    return out


_MODEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _load_models(project: ProjectDef, paths: list[Path]) -> None:
    names = {p.stem for p in paths}
    for path in paths:
        display = str(path.relative_to(project.root))
        name = path.stem
        if not _MODEL_NAME.match(name):
            project.issues.append(error("KPI066", f"model file name '{path.name}' is not a valid identifier", Location(display)))
            continue
        if name in project.models:
            project.issues.append(error("KPI009", f"model '{name}' is defined twice ({project.models[name].path})", Location(display)))
            continue
        raw, issues = read_text(path, display, "model")
        if raw is None:
            project.issues.extend(issues)
            continue
        nul = raw.find("\x00")
        if nul >= 0:
            line = raw.count("\n", 0, nul) + 1
            project.issues.append(error("KPI002", "model is binary, not SQL text (a NUL byte)",
                                        Location(display, line, nul - raw.rfind("\n", 0, nul))))
            continue
        refs: list[str] = []
        used_sources: list[tuple[str, str]] = []
        nodes: list[DbtNode] = []
        dialect = project.config.dialect

        def source_fn(s: str, t: str, _u=used_sources, _n=nodes) -> str:
            resolved = project.resolve_source(s, t)
            if resolved.source is not None:
                _u.append((s, t))
                return relation_sql(*resolved.source, dialect)
            return _relation_text(resolved, _n, dialect)

        def ref_fn(*args, v=None, version=None, _r=refs, _n=nodes, _self=name) -> str:
            if len(args) not in (1, 2) or not all(isinstance(a, str) for a in args):
                raise TemplateProblem("KPI031", "ref() takes a model name, or a package and a model name")
            package, ref_name = (None, args[0]) if len(args) == 1 else args
            if package is None and v is None and version is None and ref_name in names:
                if ref_name == _self:
                    raise TemplateProblem("KPI031", f"model '{ref_name}' refers to itself")
                _r.append(ref_name)
                return quote_identifier(MODEL_CTE_PREFIX + ref_name, dialect)
            if project.dbt is None:
                raise TemplateProblem("KPI031", f"unknown model {ref_label(ref_name, package)}{suggest(ref_name, names)}",
                                      "models are the .sql files under models/, named by file name")
            wanted = v if v is not None else version
            resolved = project.resolve_ref(ref_name, package, None if wanted is None else str(wanted))
            if resolved.model is not None:  # an ephemeral dbt model, inlined
                _r.append(resolved.model)
                return quote_identifier(MODEL_CTE_PREFIX + resolved.model, dialect)
            return _relation_text(resolved, _n, dialect)

        ctx = TemplateContext(vars=project.vars, secrets=project.secrets, source_fn=source_fn, ref_fn=ref_fn)
        sql, issues = render(raw, ctx, Location(display, 1, 1))
        project.issues.extend(issues)
        project.models[name] = ModelFile(name, display, raw, sql, refs, used_sources, dict(ctx.used_vars),
                                         dbt_nodes=nodes)


def _resolve_kpi_models(project: ProjectDef) -> None:
    """Resolve each KPI's `model:` once at load, so that dbt's manifest is read (and its problem reported)
    before validation, and an ephemeral dbt model a KPI reads is a model validation checks."""
    from .planner import parse_model_ref

    if project.dbt is None:
        return
    for kpi in project.kpis:
        parsed = parse_model_ref(kpi.model) if isinstance(kpi.model, str) else None
        if parsed is None:
            continue
        kind, args = parsed
        if kind == "source":
            project.resolve_source(*args)
        else:
            project.resolve_ref(args[0], args[1] or None, args[2] or None)


def _relation_text(resolved: Resolved, nodes: list[DbtNode], dialect: str) -> str:
    """A relation dbt built, as a model's SQL names it; or the reason it names none, as a template problem."""
    if resolved.node is None:
        code, message, hint = resolved.problem or ("KPI031", "unknown relation", None)
        raise TemplateProblem(code or "KPI142", message or "dbt's manifest cannot be used (see above)", hint)
    nodes.append(resolved.node)
    return resolved.node.table().sql(dialect=dialect)


# --- seeds -------------------------------------------------------------------------


def seed_issues(path: Path, display: str) -> list[Issue]:
    """Problems of a seeds/*.csv file, at their lines, before any warehouse reads it: the warehouses'
    CSV readers guess around a ragged file (DuckDB reads `a,b` with a row `1,2,3` as one column named
    'a,b') or stop with an error of their own. A seed is UTF-8, comma-separated, with one header row of
    distinct, non-empty names, and every row has as many fields as the header."""
    import csv
    import io

    try:
        st = os.stat(path)
    except OSError as exc:
        return [unreadable(path, display, exc)]
    if not stat.S_ISREG(st.st_mode):
        return [error("KPI103", "not a regular file", Location(display),
                      "a seed is a plain CSV file: replace it with one, or move it out of seeds/")]
    issues: list[Issue] = []

    def bad(message: str, line: int, col: int = 1) -> list[Issue]:
        return [error("KPI108", f"malformed seed: {message}", Location(display, line, col),
                      "a seed is UTF-8, comma-separated, with one header row; every row has as many fields as the header")]

    try:
        with open(path, "rb") as raw:
            line = 0
            for line, data in enumerate(raw, 1):
                if b"\x00" in data:
                    return bad("a NUL byte (the file is binary, not CSV text)", line, data.index(b"\x00") + 1)
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return bad(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", line, exc.start + 1)
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, strict=True)
            header, start = None, 1
            try:
                for row in reader:
                    start, at = reader.line_num + 1, start  # `at`: the line this record began on
                    if not row:
                        continue  # a blank line
                    if header is None:
                        header = row
                        names = [c.strip() for c in header]
                        empty = [i + 1 for i, c in enumerate(names) if not c]
                        if empty:
                            return bad(f"column {empty[0]} of the header has no name", at)
                        repeated = sorted({c for c in names if names.count(c) > 1})
                        if repeated:
                            return bad(f"column {shown(repeated[0])} is named twice in the header", at)
                        continue
                    if len(row) != len(header):
                        return bad(f"the row has {len(row)} field(s), the header {len(header)}", at)
            except csv.Error as exc:
                if "end of data" in str(exc):
                    return bad("a quoted field is not closed: it runs to the end of the file", start)
                if "field limit" in str(exc):
                    return bad(f"a field is longer than {csv.field_size_limit():,} characters", start)
                return bad(f"not CSV ({clip(str(exc), ECHO_CHARS)})", start)
            if header is None:
                return bad("no header row (the file is empty)", 1)
    except OSError as exc:
        return [unreadable(path, display, exc)]
    return issues
