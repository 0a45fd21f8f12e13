"""Walk a project folder and turn its files into a `ProjectDef` plus issues.

Each YAML entity (a KPI, a source, a priority) is validated on its own, so one
broken KPI never hides the problems of the next; pydantic's errors become
issues at the line of the offending key, with a "did you mean" for typos.
"""
from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from . import model as m
from .collector import long_lived
from .config import ALL_DIALECTS, Calendar, Defaults, ProjectConfig, SecretRegistry
from .errors import ConfigError, Issue, Location, error, warning
from .templating import TemplateContext, render
from .yamlio import LocDict, LocList, load_yaml

SKIP_DIRS = {"target", "seeds", "node_modules", "dbt_packages", "logs", "spark-warehouse", "bench"}
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

    @property
    def loc(self) -> Location:
        return Location(self.path, 1, 1)


@dataclass
class StrategyRef:
    strategy: m.Strategy
    priority: m.Priority


@dataclass
class ProjectDef:
    root: Path
    config: ProjectConfig
    config_path: str
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

    @property
    def strategies(self) -> dict[str, StrategyRef]:
        out: dict[str, StrategyRef] = {}
        for p in self.priorities:
            for s in p.strategies:
                out.setdefault(s.name, StrategyRef(s, p))
        return out

    @property
    def kpi_by_name(self) -> dict[str, m.Kpi]:
        out: dict[str, m.Kpi] = {}
        for k in self.kpis:
            out.setdefault(k.name, k)
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
    m.Baseline, m.PaceTarget, m.Source, m.SourceTable, m.Freshness, m.Priority, m.Strategy, m.Owner,
    ProjectConfig, Defaults, Calendar,
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


_FORM_MODELS = {"value": m.ValueTarget, "schedule": m.ScheduleTarget, "relative": m.RelativeTarget, "pace": m.PaceTarget}
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
    errors = sorted(exc.errors(include_url=False), key=lambda e: not e["type"].startswith("literal_error"))
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
            issue = error("KPI005", f"unknown key '{bad}' in {what}{suggest(bad, allowed)}", where,
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
            issue = error("KPI007", f"{what}: invalid value for '{_describe(path)}': {msg} (got {got!r})", where)
        sig = (issue.code, issue.location, _describe(path))
        if issue.code == "KPI007":
            sig = (issue.code, issue.location)  # one message per value, even when several union members fail
        if sig not in seen:
            seen.add(sig)
            issues.append(issue)
    return issues


# --- the walk -------------------------------------------------------------------


def project_files(root: Path) -> list[Path]:
    """The project's YAML files, in path order. Skipped folders are not walked at all (target/ holds a file per KPI)."""
    out: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (d.startswith(".") or d in SKIP_DIRS)]
        here = Path(folder)
        out.extend(here / f for f in files
                   if f.endswith((".yml", ".yaml")) and not (here == root and f in SKIP_FILES) and (here / f).is_file())
    return sorted(out)


def load_config(root: Path, vars_override: dict[str, Any] | None = None) -> tuple[ProjectConfig | None, str, list[Issue]]:
    for name in ("kpimetrics.yml", "kpimetrics.yaml"):
        path = root / name
        if path.is_file():
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
        project = ProjectDef(root=root, config=cfg, config_path=config_path, issues=list(issues))
        return project
    project = ProjectDef(root=root, config=config, config_path=config_path, vars=dict(config.vars))
    if config.dialect not in ALL_DIALECTS:
        where = config.value_loc("dialect") or Location(config_path, 1, 1)
        project.issues.append(error("KPI083", f"unknown dialect '{config.dialect}'{suggest(config.dialect, ALL_DIALECTS)}",
                                    where, f"the dialect your SQL is written in: one of {', '.join(ALL_DIALECTS)}"))
    for path in project_files(root):
        _load_file(project, path, str(path.relative_to(root)))
    _load_models(project)
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
        name = item.get("name")
        label = f"{what} '{name}'" if isinstance(name, str) else what
        try:
            out.append(cls.model_validate(item))
        except ValidationError as exc:
            project.issues.extend(validation_issues(exc, item, label, item_loc))
    return out


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
            project.issues.append(error("KPI005", f"unknown top-level key '{key}'{suggest(key, m.TOP_LEVEL_KEYS)}", data.key_loc(key),
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


def _load_models(project: ProjectDef) -> None:
    folder = project.root / "models"
    if not folder.is_dir():
        return
    paths = sorted(folder.rglob("*.sql"))
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
        try:
            raw = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            project.issues.append(error("KPI002", f"cannot read model: {exc}", Location(display)))
            continue
        refs: list[str] = []
        used_sources: list[tuple[str, str]] = []
        dialect = project.config.dialect

        def source_fn(s: str, t: str, _u=used_sources) -> str:
            from .templating import TemplateProblem
            from .sqlexpr import relation_sql
            found = project.source_table(s, t)
            if found is None:
                raise TemplateProblem("KPI032", f"unknown source table source('{s}', '{t}')",
                                      "declare it under `sources:` (a table of that source)")
            _u.append((s, t))
            return relation_sql(found[0], found[1], dialect)

        def ref_fn(r: str, _r=refs, _self=name) -> str:
            from .templating import TemplateProblem
            from .sqlexpr import quote_identifier
            if r not in names:
                raise TemplateProblem("KPI031", f"unknown model ref('{r}'){suggest(r, names)}",
                                      "models are the .sql files under models/, named by file name")
            if r == _self:
                raise TemplateProblem("KPI031", f"model '{r}' refers to itself")
            _r.append(r)
            return quote_identifier(MODEL_CTE_PREFIX + r, dialect)

        ctx = TemplateContext(vars=project.vars, secrets=project.secrets, source_fn=source_fn, ref_fn=ref_fn)
        sql, issues = render(raw, ctx, Location(display, 1, 1))
        project.issues.extend(issues)
        project.models[name] = ModelFile(name, display, raw, sql, refs, used_sources, dict(ctx.used_vars))
