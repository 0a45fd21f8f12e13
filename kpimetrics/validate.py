"""Cross-object rules: the checks that need the whole project (SPEC §3).

The loader has already checked each YAML entity's shape; here every rule is a
small function `(ProjectDef, Context) -> list[Issue]` listed in `RULES`, so all
problems are reported at once and a new rule is one function and one line.
Each issue points at the YAML line of the offending key or value.
Codes are listed, with their meaning and fix, in `codes.py`.
"""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError
from sqlglot.optimizer.qualify import qualify

from . import dag
from . import model as m
from .errors import Issue, Location, error, warning
from .loader import MODEL_CTE_PREFIX, ProjectDef, suggest
from .sqlexpr import aggregates, has_window, is_allowed_aggregate, nested_aggregate, parse_snippet
from .yamlio import LocDict, LocList, load_yaml

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_KPIS_PER_STRATEGY = 7
ALLOWED_AGGREGATES_TEXT = "sum, count, count(distinct ...), avg, min, max, median, quantile_cont / percentile_cont"

_PERCENT = re.compile(r"^\s*[+-]?\d+(\.\d+)?\s*%\s*$")
# The same grammar as runner.parse_duration, so what validates is what the runner understands.
_DURATION = re.compile(r"^\s*(\d+)\s*(minute|hour|day|week)s?\s*$", re.IGNORECASE)
_SOURCE_CALL = re.compile(r"""^\s*source\(\s*(['"])(?P<source>[^'"]*)\1\s*,\s*(['"])(?P<table>[^'"]*)\3\s*\)\s*$""")
_REF_CALL = re.compile(r"""^\s*ref\(\s*(['"])(?P<model>[^'"]*)\1\s*\)\s*$""")
_CALLED_WORD = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def parse_duration(text: Any) -> dt.timedelta | None:
    """'2 days', '12 hours', '35 days', '1 week' -> timedelta; None when it does not parse."""
    if not isinstance(text, str):
        return None
    match = _DURATION.match(text)
    if not match:
        return None
    return dt.timedelta(**{match.group(2).lower() + "s": int(match.group(1))})


def parse_percent(text: Any) -> float | None:
    """'-20%' -> -0.2; None when it is not a percent string."""
    if isinstance(text, str) and _PERCENT.match(text):
        return float(text.strip().rstrip("%")) / 100
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- context: what several rules need, computed once ----------------------------


@dataclass(frozen=True)
class ModelRef:
    """A KPI's `model:` parsed: source('s', 't') or ref('m')."""

    source: str | None = None
    table: str | None = None
    model: str | None = None

    def __str__(self) -> str:
        return f"model '{self.model}'" if self.model else f"source('{self.source}', '{self.table}')"


@dataclass(frozen=True)
class Columns:
    """The columns a KPI's model offers; `names` is None when they are not known (then `reason` says why)."""

    names: frozenset[str] | None
    declared: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class Snippet:
    """One SQL text of a KPI and where it was written (`node.value_loc(key)`, or item `index` of that list)."""

    role: str  # measure | filter | numerator | denominator | derived | time | dimension
    text: str
    node: m.Node
    key: str
    index: int | None = None

    def loc(self, ctx: "Context") -> Location | None:
        # A list item's line needs the raw YAML: looked up only when there is something to report.
        if self.index is None:
            return self.node.value_loc(self.key)
        return ctx.item_loc(self.node, self.key, self.index)

    @property
    def label(self) -> str:
        return {"numerator": "ratio.numerator", "denominator": "ratio.denominator"}.get(self.role, self.role)


class YamlIndex:
    """The raw LocDicts/LocLists of the project's files, found by where they start.

    pydantic turns per-grain mappings and lists into plain containers that forget
    their lines; re-reading the (small) file gives the exact line of each key and item.
    """

    def __init__(self, root: Path):
        self.root = root
        self._files: dict[str, dict[tuple[int, int], list[Any]]] = {}

    def node_at(self, loc: Location | None, kind: type) -> Any:
        if loc is None or not loc.line:
            return None
        if loc.path not in self._files:
            self._files[loc.path] = self._index(loc.path)
        for node in self._files[loc.path].get((loc.line, loc.col), []):
            if isinstance(node, kind):
                return node
        return None

    def _index(self, rel: str) -> dict[tuple[int, int], list[Any]]:
        out: dict[tuple[int, int], list[Any]] = {}
        path = self.root / rel
        if not path.is_file():
            return out
        data, issues = load_yaml(path, rel)
        stack = [] if issues else [data]
        while stack:
            node = stack.pop()
            if isinstance(node, (LocDict, LocList)) and node.loc is not None:
                out.setdefault((node.loc.line, node.loc.col), []).append(node)
            if isinstance(node, dict):
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
        return out


@dataclass
class Context:
    project: ProjectDef
    today: dt.date
    dialect: str | None
    yaml: YamlIndex
    _trees: dict[tuple[str, str], tuple[exp.Expression | None, Any]] = field(default_factory=dict)
    _model_trees: dict[str, tuple[exp.Expression | None, Issue | None]] = field(default_factory=dict)
    _model_columns: dict[str, Columns] = field(default_factory=dict)

    @property
    def default_grain(self) -> str:
        return self.project.config.defaults.grain

    def tree(self, snippet: Snippet) -> tuple[exp.Expression | None, Any]:
        """The parsed snippet and its SqlProblem; parsed once however many rules ask."""
        key = (snippet.role, snippet.text)
        if key not in self._trees:
            self._trees[key] = parse_snippet(snippet.text, self.dialect)
        return self._trees[key]

    def item_loc(self, node: m.Node, name: str, index: int) -> Location | None:
        raw = self.yaml.node_at(node.value_loc(name), LocList)
        if raw is not None and index < len(raw.item_locs):
            return raw.item_locs[index]
        return node.value_loc(name)

    def mapping_key_loc(self, node: m.Node, name: str, key: str) -> Location | None:
        raw = self.yaml.node_at(node.value_loc(name), LocDict)
        if raw is not None and key in raw:
            return raw.key_loc(key)
        return node.key_loc(name)

    def model_tree(self, name: str) -> tuple[exp.Expression | None, Issue | None]:
        if name not in self._model_trees:
            self._model_trees[name] = _parse_model(self.project.models[name], self.dialect)
        return self._model_trees[name]

    def model_columns(self, name: str, trail: tuple[str, ...] = ()) -> Columns:
        if name not in self._model_columns:
            self._model_columns[name] = _infer_model_columns(self, name, trail + (name,))
        return self._model_columns[name]


def _known_dialect(name: str) -> str | None:
    """The project's dialect, or sqlglot's generic one when the name is unknown.

    An unknown dialect is reported with the project config; parsing every snippet
    with it would only repeat that one mistake on every KPI.
    """
    try:
        sqlglot.Dialect.get_or_raise(name)
        return name
    except Exception:
        return None


# --- small helpers ----------------------------------------------------------------


def _what(kpi: m.Kpi) -> str:
    return f"{'standard' if kpi.kind == 'standard' else 'KPI'} '{kpi.name}'"


def _first_at(loc: Location | None) -> str:
    return f" (first defined at {loc})" if loc else ""


def model_ref(kpi: m.Kpi) -> ModelRef | None:
    if kpi.model is None:
        return None
    if match := _SOURCE_CALL.match(kpi.model):
        return ModelRef(source=match["source"], table=match["table"])
    if match := _REF_CALL.match(kpi.model):
        return ModelRef(model=match["model"])
    return None


def _snippets(kpi: m.Kpi) -> list[Snippet]:
    out: list[Snippet] = []
    for role in ("measure", "filter", "derived", "time"):
        text = getattr(kpi, role)
        if text is not None:
            out.append(Snippet(role, text, kpi, role))
    if kpi.ratio is not None:
        for role in ("numerator", "denominator"):
            out.append(Snippet(role, getattr(kpi.ratio, role), kpi.ratio, role))
    for i, dimension in enumerate(kpi.dimensions):
        out.append(Snippet("dimension", dimension, kpi, "dimensions", i))
    return out


def _columns_in(tree: exp.Expression) -> list[str]:
    """Column names a snippet reads; lambda parameters (x -> x > 1) are not columns."""
    seen: dict[str, None] = {}
    for col in tree.find_all(exp.Column):
        lam = col.find_ancestor(exp.Lambda)
        if lam is not None and col.name in {e.name for e in lam.expressions}:
            continue
        seen.setdefault(col.name, None)
    return list(seen)


def _duplicates(items, key: Callable, loc: Callable) -> Iterator[tuple[Any, Any, Location | None]]:
    """(item, name, where the name was first defined) for every repeat of a name."""
    first: dict[Any, Location | None] = {}
    for item in items:
        name = key(item)
        if name is None:
            continue
        if name in first:
            yield item, name, first[name]
        else:
            first[name] = loc(item)


# --- names and duplicates (KPI010-019) --------------------------------------------


def kpi_names(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues = [
        error("KPI010", f"{_what(k)}: name must be snake_case (lower-case letters, digits and _, starting with a letter)",
              k.value_loc("name"), f"for example '{_snake_case(k.name)}'")
        for k in project.kpis if not NAME_PATTERN.match(k.name)
    ]
    for kpi, name, first in _duplicates(project.kpis, lambda k: k.name, lambda k: k.key_loc("name")):
        issues.append(error("KPI011", f"{_what(kpi)} is defined twice{_first_at(first)}; names are unique across KPIs and standards",
                            kpi.value_loc("name")))
    return issues


def _snake_case(name: str) -> str:
    text = re.sub(r"[^a-z0-9]+", "_", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()).strip("_")
    return text if text and text[0].isalpha() else f"kpi_{text}"


def duplicate_definitions(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    strategies = [s for p in project.priorities for s in p.strategies]
    groups = [
        ("KPI012", "strategy", strategies),
        ("KPI013", "priority", project.priorities),
        ("KPI014", "source", project.sources),
        ("KPI016", "owner", project.owners or []),
    ]
    for code, what, items in groups:
        for item, name, first in _duplicates(items, lambda x: x.name, lambda x: x.key_loc("name")):
            issues.append(error(code, f"{what} '{name}' is defined twice{_first_at(first)}", item.value_loc("name")))
    for source in project.sources:
        for table, name, first in _duplicates(source.tables, lambda t: t.name, lambda t: t.key_loc("name")):
            issues.append(error("KPI015", f"source '{source.name}' declares table '{name}' twice{_first_at(first)}",
                                table.value_loc("name")))
    for owner, email, first in _duplicates(project.owners or [], lambda o: o.email, lambda o: o.key_loc("email")):
        issues.append(error("KPI016", f"owner email '{email}' is used by two owners{_first_at(first)}", owner.value_loc("email")))
    return issues


# --- required fields, links and form (KPI020-029) ---------------------------------


def required_fields(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        if not kpi.owner:
            issues.append(error("KPI020", f"{_what(kpi)} has no owner: someone must be accountable for it", kpi.loc,
                                "add `owner:` (a name from `owners:` or an email)"))
        if kpi.target is None:
            issues.append(error("KPI021", f"{_what(kpi)} has no target", kpi.loc,
                                "add `target:` (a number, {value}, {schedule}, a relative target, or per grain)"))
        if kpi.kind == "kpi" and not kpi.strategy:
            issues.append(error("KPI022", f"KPI '{kpi.name}' is not linked to a strategy: link it with `strategy:`, "
                                          "or, if it is a performance standard, move it to `standards:`", kpi.loc))
    return issues


def strategy_links(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    known = project.strategies
    for kpi in project.kpis:
        if not kpi.strategy:
            continue
        if kpi.strategy not in known:
            issues.append(error("KPI023", f"{_what(kpi)}: unknown strategy '{kpi.strategy}'{suggest(kpi.strategy, known)}",
                                kpi.value_loc("strategy"), "strategies are declared under `priorities:` (in strategy.yml)"))
        if kpi.kind == "standard":
            issues.append(warning("KPI077", f"standard '{kpi.name}' is linked to strategy '{kpi.strategy}': "
                                            "a measure tied to a strategy is a KPI", kpi.key_loc("strategy"),
                                  "move it to `kpis:`, or drop `strategy:` if it is a performance standard"))
    return issues


def owner_links(project: ProjectDef, ctx: Context) -> list[Issue]:
    if project.owners is None:  # the registry is optional; without it any owner is accepted
        return []
    known = {o.name for o in project.owners} | {o.email for o in project.owners if o.email}
    holders: list[tuple[str, m.Node]] = [(_what(k), k) for k in project.kpis]
    holders += [(f"priority '{p.name}'", p) for p in project.priorities]
    holders += [(f"strategy '{s.name}'", s) for p in project.priorities for s in p.strategies]
    return [
        error("KPI024", f"{what}: unknown owner '{node.owner}'{suggest(node.owner, known)}", node.value_loc("owner"),
              "an owner must be a name or an email listed under `owners:`")
        for what, node in holders if node.owner and node.owner not in known
    ]


def kpi_form(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        forms = [f for f in ("measure", "ratio", "derived") if getattr(kpi, f) is not None]
        if not forms:
            issues.append(error("KPI025", f"{_what(kpi)} needs one of `measure`, `ratio` or `derived`", kpi.loc))
            continue
        if len(forms) > 1:
            issues.append(error("KPI025", f"{_what(kpi)} has both `{forms[0]}` and `{forms[1]}`: "
                                          "use exactly one of measure, ratio, derived", kpi.key_loc(forms[1])))
            continue
        if forms[0] == "derived":
            for key in ("model", "time", "window", "filter", "dimensions"):
                if key in kpi.model_fields_set:
                    issues.append(error("KPI049", f"derived {_what(kpi)} takes no `{key}`: it is computed from "
                                                  "other KPIs' values, which bring their own", kpi.key_loc(key)))
            continue
        for key, code in (("model", "KPI026"), ("time", "KPI027")):
            if getattr(kpi, key) is None:
                issues.append(error(code, f"{_what(kpi)} has a {forms[0]} but no `{key}`", kpi.loc,
                                    "add `model: source('s', 't')` or `ref('m')`" if key == "model"
                                    else "add `time:`, the column that places each row in a period"))
    return issues


# --- models, sources and columns (KPI030-039) -------------------------------------


def model_references(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        if kpi.model is None or kpi.derived is not None:
            continue
        ref, where = model_ref(kpi), kpi.value_loc("model")
        if ref is None:
            hint = "write it without {{ }}" if "{{" in kpi.model else None
            issues.append(error("KPI030", f"{_what(kpi)}: model must be source('source', 'table') or ref('model'), "
                                          f"got {kpi.model!r}", where, hint))
        elif ref.model is not None and ref.model not in project.models:
            issues.append(error("KPI031", f"{_what(kpi)}: unknown model ref('{ref.model}'){suggest(ref.model, project.models)}",
                                where, "models are the .sql files under models/, named by file name"))
        elif ref.source is not None and project.source_table(ref.source, ref.table) is None:
            issues.append(error("KPI032", f"{_what(kpi)}: {_unknown_source_table(project, ref)}", where,
                                "declare the table under `sources:`"))
    return issues


def _unknown_source_table(project: ProjectDef, ref: ModelRef) -> str:
    sources = {s.name: s for s in project.sources}
    if ref.source not in sources:
        return f"unknown source '{ref.source}'{suggest(ref.source, sources)}"
    tables = {t.name for t in sources[ref.source].tables}
    return f"source '{ref.source}' has no table '{ref.table}'{suggest(ref.table, tables)}"


def _parse_model(model_file, dialect: str | None) -> tuple[exp.Expression | None, Issue | None]:
    """The model's rendered SQL as one query, or the issue saying why it is not one."""
    where = Location(model_file.path, 1, 1)
    try:
        statements = [s for s in sqlglot.parse(model_file.sql, read=dialect) if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        line, col = first.get("line") or 1, first.get("col") or 1
        desc = str(first.get("description", exc)).split(". Line")[0]
        return None, error("KPI034", f"model '{model_file.name}': SQL does not parse: {desc} (line {line}, column {col})",
                           Location(model_file.path, line, col))
    except Exception as exc:  # sqlglot's tokenizer raises its own errors for some inputs
        return None, error("KPI034", f"model '{model_file.name}': SQL does not parse: {exc}", where)
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        return None, error("KPI034", f"model '{model_file.name}' must be a single SELECT statement", where)
    return statements[0], None


def model_sql(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues = [ctx.model_tree(name)[1] for name, mf in project.models.items() if mf.sql is not None]
    deps = {name: list(mf.refs) for name, mf in project.models.items()}
    for cycle in dag.find_cycles(deps):
        issues.append(error("KPI036", f"models refer to each other in a cycle: {' -> '.join(cycle)}",
                            project.models[cycle[0]].loc))
    return [i for i in issues if i is not None]


def _source_relations(project: ProjectDef) -> dict[tuple[str, str, str], tuple[m.Source, m.SourceTable]]:
    """How source() renders each declared table (catalog, db, name), so a model's tables can be recognised."""
    return {
        (s.database or "", s.schema_ or "", t.identifier or t.name): (s, t)
        for s in project.sources for t in s.tables
    }


def _infer_model_columns(ctx: Context, name: str, trail: tuple[str, ...]) -> Columns:
    """A model's output columns, from its SQL qualified against the declared columns of what it reads."""
    model_file = ctx.project.models[name]
    if model_file.sql is None:
        return Columns(None, reason="its SQL did not render")
    tree, problem = ctx.model_tree(name)
    if tree is None:
        return Columns(None, reason="its SQL does not parse")
    tree = tree.copy()
    relations = _source_relations(ctx.project)
    schema: dict[str, dict[str, str]] = {}
    unknown: list[str] = []
    for table in list(tree.find_all(exp.Table)):
        label, cols = _table_columns(ctx, table, relations, trail)
        if label is None:
            continue  # a CTE, or a table the model names directly: qualify resolves what it can
        # Flatten every relation to one placeholder name so the schema has a single level.
        placeholder = f"__kpimetrics_rel_{len(schema) + len(unknown)}"
        if not table.alias:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(table.name)))
        table.set("this", exp.to_identifier(placeholder))
        table.set("db", None)
        table.set("catalog", None)
        if cols is None:
            unknown.append(label)
        else:
            schema[placeholder] = {c: "UNKNOWN" for c in cols}
    try:
        query = qualify(tree, schema=schema, dialect=ctx.dialect, validate_qualify_columns=False,
                        quote_identifiers=False, identify=False)
    except Exception as exc:  # sqlglot cannot resolve some SQL; say so rather than guess
        return Columns(None, reason=f"sqlglot could not resolve its SQL ({exc})")
    if any(isinstance(s, exp.Star) or (isinstance(s, exp.Column) and isinstance(s.this, exp.Star)) for s in query.selects):
        what = ", ".join(unknown) if unknown else "a table that is not a declared source or model"
        return Columns(None, reason=f"it selects * from {what}, whose columns are not declared")
    if any(s.find(exp.Columns) is not None for s in query.selects):  # DuckDB's COLUMNS(...) expands like a star
        return Columns(None, reason="it selects COLUMNS(...), whose columns are only known in the warehouse")
    return Columns(frozenset(n.lower() for n in query.named_selects), tuple(query.named_selects))


def _table_columns(ctx: Context, table: exp.Table, relations, trail) -> tuple[str | None, list[str] | None]:
    """(a label for the relation, its columns or None) for a declared source table or a ref()'d model."""
    key = (table.catalog or "", table.db or "", table.name)
    if key in relations:
        source, source_table = relations[key]
        return f"source('{source.name}', '{source_table.name}')", source_table.columns
    if not table.db and table.name.startswith(MODEL_CTE_PREFIX):
        ref = table.name[len(MODEL_CTE_PREFIX):]
        if ref not in ctx.project.models or ref in trail:
            return f"model '{ref}'", None
        cols = ctx.model_columns(ref, trail)
        return f"model '{ref}'", list(cols.declared) if cols.names is not None else None
    return None, None


def kpi_columns(project: ProjectDef, ctx: Context, kpi: m.Kpi) -> Columns:
    """The columns a KPI's model offers (names None: not known, nothing is checked)."""
    ref = model_ref(kpi)
    if ref is None:
        return Columns(None)
    if ref.model is not None:
        if ref.model not in project.models:
            return Columns(None)
        return ctx.model_columns(ref.model)
    found = project.source_table(ref.source, ref.table)
    if found is None or found[1].columns is None:
        return Columns(None)  # columns are optional on a source: declaring them is what turns the check on
    cols = found[1].columns
    return Columns(frozenset(c.lower() for c in cols), tuple(cols))


def columns_exist(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    unchecked: dict[str, list[str]] = {}
    for kpi in project.kpis:
        if kpi.derived is not None:
            continue
        cols = kpi_columns(project, ctx, kpi)
        if cols.names is None:
            ref = model_ref(kpi)
            if ref is not None and ref.model in project.models and project.models[ref.model].sql is not None:
                unchecked.setdefault(ref.model, []).append(kpi.name)
            continue
        for snippet in _snippets(kpi):
            tree, _ = ctx.tree(snippet)
            if tree is None:
                continue
            for name in _columns_in(tree):
                if name.lower() not in cols.names:
                    what = f"time column '{name}'" if snippet.role == "time" else f"column '{name}' in `{snippet.label}`"
                    issues.append(error("KPI033", f"{_what(kpi)}: {what} is not a column of "
                                                  f"{model_ref(kpi)}{suggest(name, cols.declared)}", snippet.loc(ctx),
                                        f"its columns: {', '.join(cols.declared)}"))
    for name, kpis in unchecked.items():
        reason = ctx.model_columns(name).reason
        issues.append(warning("KPI035", f"the columns of model '{name}' could not be determined ({reason}), so the columns "
                                        f"used by {', '.join(kpis)} were not checked", project.models[name].loc,
                              "declare the columns of the sources it reads, or list its columns instead of *"))
    return issues


# --- SQL (KPI040-049) -----------------------------------------------------------


def sql_parses(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        for snippet in _snippets(kpi):
            tree, problem = ctx.tree(snippet)
            if problem is not None:
                issues.append(error("KPI040", f"{_what(kpi)}: `{snippet.label}`: {problem.message}", snippet.loc(ctx),
                                    _caret(snippet.text, problem.offset)))
    return issues


def _caret(text: str, offset: int | None) -> str | None:
    """The expression with a caret under the character where it broke (as sqlglot underlines)."""
    if offset is None or "\n" in text:
        return None
    return f"\n    {text}\n    {' ' * min(offset, len(text))}^"


def _inside_aggregate(node: exp.Expression) -> bool:
    """Inside an aggregate call, its FILTER (WHERE ...) or its WITHIN GROUP (ORDER BY ...)."""
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.AggFunc):
            return True
        if isinstance(parent, (exp.Filter, exp.WithinGroup)) and isinstance(parent.this, exp.AggFunc):
            return True
        parent = parent.parent
    return False


def _written_name(node: exp.Expression, text: str, dialect: str | None) -> str:
    """The function name as the user wrote it (sqlglot renames string_agg to listagg, ...)."""
    if isinstance(node, exp.Anonymous):
        return node.name
    for word in dict.fromkeys(_CALLED_WORD.findall(text)):
        try:
            if type(sqlglot.parse_one(f"{word}(x)", read=dialect)) is type(node):
                return word
        except Exception:
            continue
    return node.sql_name().lower()


def aggregate_problems(tree: exp.Expression, text: str, dialect: str | None) -> list[tuple[str, str]]:
    """(code, message) for each way an expression is not an aggregate of the allowed functions."""
    if has_window(tree):
        return [("KPI044", "uses a window function (OVER ...), which is not allowed; use `window:` for trailing or to-date values")]
    found = aggregates(tree)
    for agg in found:
        if not is_allowed_aggregate(agg):
            return [("KPI043", f"uses '{_written_name(agg, text, dialect)}', which is not an allowed aggregate; "
                               f"use one of {ALLOWED_AGGREGATES_TEXT}")]
    if nested_aggregate(tree):
        return [("KPI045", "nests an aggregate inside another, which cannot be computed per period")]
    outside = [c for c in tree.find_all(exp.Column) if not _inside_aggregate(c)]
    for col in outside:
        call = col.find_ancestor(exp.Anonymous)
        if call is not None:
            return [("KPI043", f"uses '{call.name}', which is not an allowed aggregate; use one of {ALLOWED_AGGREGATES_TEXT}")]
    if outside:
        names = ", ".join(f"'{n}'" for n in dict.fromkeys(c.name for c in outside))
        return [("KPI041", f"is not an aggregate: {names} must sit inside one of {ALLOWED_AGGREGATES_TEXT}")]
    if not found:
        return [("KPI041", f"is not an aggregate expression: use one of {ALLOWED_AGGREGATES_TEXT}")]
    return []


def measures_aggregate(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        for snippet in _snippets(kpi):
            if snippet.role not in ("measure", "numerator", "denominator"):
                continue
            tree, _ = ctx.tree(snippet)
            if tree is None:
                continue
            for code, message in aggregate_problems(tree, snippet.text, ctx.dialect):
                issues.append(error(code, f"{_what(kpi)}: `{snippet.label}` {message}", snippet.loc(ctx)))
    return issues


def filters_row_level(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        if kpi.filter is None:
            continue
        tree, _ = ctx.tree(Snippet("filter", kpi.filter, kpi, "filter"))
        if tree is None:
            continue
        if has_window(tree):
            issues.append(error("KPI044", f"{_what(kpi)}: `filter` cannot use window functions (OVER ...)",
                                kpi.value_loc("filter")))
        elif aggregates(tree):
            name = _written_name(aggregates(tree)[0], kpi.filter, ctx.dialect)
            issues.append(error("KPI042", f"{_what(kpi)}: `filter` uses the aggregate '{name}': a filter keeps or drops "
                                          "single rows, so it cannot aggregate", kpi.value_loc("filter"),
                                "put the condition inside the measure instead, e.g. count(*) filter (where ...)"))
    return issues


def derived_references(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    known = {k.name for k in project.kpis}
    for kpi in project.kpis:
        if kpi.derived is None:
            continue
        for ref in dict.fromkeys(r.kpi for r in dag.derived_inputs(kpi.derived, ctx.dialect)):
            if ref not in known:
                issues.append(error("KPI046", f"derived {_what(kpi)} uses unknown KPI '{ref}'{suggest(ref, known)}",
                                    kpi.value_loc("derived")))
    by_name = project.kpi_by_name
    for cycle in dag.find_cycles(dag.graph(project.kpis, ctx.dialect)):
        issues.append(error("KPI047", f"derived KPIs form a cycle: {' -> '.join(cycle)}",
                            by_name[cycle[0]].value_loc("derived")))
    return issues


def drives_known(project: ProjectDef, ctx: Context) -> list[Issue]:
    known = {k.name for k in project.kpis}
    return [
        error("KPI048", f"{_what(kpi)} drives unknown KPI '{name}'{suggest(name, known)}", ctx.item_loc(kpi, "drives", i))
        for kpi in project.kpis for i, name in enumerate(kpi.drives) if name not in known
    ]


# --- targets, grains, windows, durations (KPI050-059) -----------------------------


def _target_forms(kpi: m.Kpi) -> list[tuple[str | None, Any]]:
    """(grain or None, target form) for a single or per-grain target."""
    if kpi.target is None:
        return []
    if isinstance(kpi.target, dict):
        return list(kpi.target.items())
    return [(None, kpi.target)]


def _target_loc(kpi: m.Kpi, grain: str | None, form: Any, ctx: Context) -> Location | None:
    if isinstance(form, m.Node) and form.loc is not None:
        return form.loc
    return ctx.mapping_key_loc(kpi, "target", grain) if grain else kpi.value_loc("target")


def schedules_in_order(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        for _, form in _target_forms(kpi):
            if not isinstance(form, m.ScheduleTarget):
                continue
            if not form.schedule:
                issues.append(error("KPI050", f"{_what(kpi)}: target schedule is empty", form.value_loc("schedule")))
            for before, entry in zip(form.schedule, form.schedule[1:]):
                if entry.from_ <= before.from_:
                    word = "repeats the date of" if entry.from_ == before.from_ else "is not after"
                    issues.append(error("KPI050", f"{_what(kpi)}: schedule entry from {entry.from_} {word} the previous "
                                                  f"entry (from {before.from_}); list the entries in date order",
                                        entry.value_loc("from_")))
    return issues


def relative_targets(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        for _, form in _target_forms(kpi):
            if isinstance(form, m.RelativeTarget):
                issues.extend(_relative_target_issues(kpi, form))
    return issues


def _relative_target_issues(kpi: m.Kpi, target: m.RelativeTarget) -> list[Issue]:
    issues: list[Issue] = []
    base = target.baseline
    by_range = base.from_ is not None and base.to is not None and base.value is None and base.as_of is None
    by_value = base.value is not None and base.as_of is not None and base.from_ is None and base.to is None
    if not (by_range or by_value):
        issues.append(error("KPI052", f"{_what(kpi)}: a baseline needs `from` and `to` (a date range), or `value` and `as_of`",
                            base.loc))
    elif by_range and base.from_ > base.to:
        issues.append(error("KPI052", f"{_what(kpi)}: baseline `from` {base.from_} is after `to` {base.to}", base.value_loc("from_")))
    end = base.to if by_range else base.as_of if by_value else None
    if end is not None and target.by <= end:
        issues.append(error("KPI051", f"{_what(kpi)}: target `by` {target.by} is on or before the end of its baseline ({end})",
                            target.value_loc("by"), "the deadline must come after the baseline period"))
    if not _is_number(target.change) and parse_percent(target.change) is None:
        issues.append(error("KPI053", f"{_what(kpi)}: `change` must be a number (-120) or a percent ('-20%'), "
                                      f"got {target.change!r}", target.value_loc("change")))
    return issues


def tolerances(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        if kpi.tolerance is None:
            continue
        per_grain = isinstance(kpi.tolerance, dict)
        items = kpi.tolerance.items() if per_grain else [(None, kpi.tolerance)]
        for grain, value in items:
            if _valid_tolerance(value):
                continue
            where = ctx.mapping_key_loc(kpi, "tolerance", grain) if per_grain else kpi.value_loc("tolerance")
            issues.append(error("KPI054", f"{_what(kpi)}: tolerance must be a non-negative number (0.05) or percent ('5%'), "
                                          f"got {value!r}", where))
    return issues


def _valid_tolerance(value: Any) -> bool:
    fraction = value if _is_number(value) else parse_percent(value)
    return fraction is not None and fraction >= 0


def risk_bands(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        for key, fits, other in (("at_risk_below", "higher_is_better", "at_risk_above"),
                                 ("at_risk_above", "lower_is_better", "at_risk_below")):
            if getattr(kpi, key) is not None and kpi.direction != fits:
                issues.append(error("KPI055", f"{_what(kpi)} is {kpi.direction}, so `{key}` does not apply",
                                    kpi.key_loc(key), f"use `{other}` (or `tolerance:`)"))
    return issues


def computed_grains(project: ProjectDef, default: str, deps: dict[str, list[str]]) -> dict[str, set[str]]:
    """The grains each KPI is computed at: its own, and those of the derived KPIs that read it (SPEC §2)."""
    grains = {k.name: set(k.declared_grains or (default,)) for k in project.kpis}
    changed = True
    while changed:  # a fixed point: derived KPIs may read derived KPIs
        changed = False
        for name, inputs in deps.items():
            for dep in inputs:
                if dep in grains and not grains[name] <= grains[dep]:
                    grains[dep] |= grains[name]
                    changed = True
    return grains


def per_grain_settings(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    grains = computed_grains(project, ctx.default_grain, dag.graph(project.kpis, ctx.dialect))
    for kpi in project.kpis:
        for key in ("target", "tolerance", "at_risk_below", "at_risk_above"):
            value = getattr(kpi, key)
            if not isinstance(value, dict):
                continue
            for grain in value:
                if grain not in grains[kpi.name]:
                    issues.append(warning("KPI056", f"{_what(kpi)}: `{key}` sets grain '{grain}', but the KPI is computed at "
                                                    f"{', '.join(sorted(grains[kpi.name]))} only, so it is never used",
                                          ctx.mapping_key_loc(kpi, key, grain), "add the grain to `grain:` or remove the entry"))
    return issues


def pace_targets(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        if kpi.window is not None and kpi.window.to_date is not None:
            continue
        for grain, form in _target_forms(kpi):
            if isinstance(form, m.PaceTarget):
                issues.append(error("KPI057", f"{_what(kpi)}: a pace target needs a to-date KPI (`window: {{to_date: year}}`, "
                                              "quarter or month)", _target_loc(kpi, grain, form, ctx)))
    return issues


def windows(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        window = kpi.window
        if window is None:
            continue
        if (window.periods is None) == (window.to_date is None):
            issues.append(error("KPI058", f"{_what(kpi)}: `window` needs exactly one of `periods` or `to_date`", window.loc))
        elif window.periods is not None and window.periods < 1:
            issues.append(error("KPI058", f"{_what(kpi)}: window `periods` must be 1 or more, got {window.periods}",
                                window.value_loc("periods")))
    return issues


def durations(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    defaults = project.config.defaults
    lookback = defaults.lookback
    valid = (_is_number(lookback) and lookback >= 0 and lookback == int(lookback)) or parse_duration(lookback) is not None
    if not valid:
        where = defaults.value_loc("lookback") or Location(project.config_path)
        issues.append(error("KPI059", f"lookback must be a whole number of periods (0 or more) or a duration such as "
                                      f"'35 days', got {lookback!r}", where))
    for source in project.sources:
        holders = [(f"source '{source.name}'", source.freshness)]
        holders += [(f"table '{source.name}.{t.name}'", t.freshness) for t in source.tables]
        for what, freshness in holders:
            for key in ("warn_after", "error_after"):
                value = getattr(freshness, key) if freshness is not None else None
                if value is not None and parse_duration(value) is None:
                    issues.append(error("KPI059", f"{what}: freshness `{key}` must be a duration such as '2 days' or "
                                                  f"'12 hours', got {value!r}", freshness.value_loc(key)))
    return issues


# --- the warnings of SPEC §1 (KPI070-079) ---------------------------------------


def driven_lagging(project: ProjectDef, ctx: Context) -> list[Issue]:
    driven = {name for k in project.kpis if k.indicator == "leading" for name in k.drives}
    return [
        warning("KPI070", f"lagging {_what(kpi)} is not driven by any leading KPI", kpi.value_loc("indicator"),
                f"add `drives: [{kpi.name}]` to the leading KPI that predicts it")
        for kpi in project.kpis if kpi.indicator == "lagging" and kpi.name not in driven
    ]


def actions_and_indicator(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        if kpi.kind != "kpi":
            continue
        if not kpi.actions:
            issues.append(warning("KPI071", f"{_what(kpi)} has no `actions`: say what to do when it goes off track", kpi.loc))
        if kpi.indicator is None:
            issues.append(warning("KPI072", f"{_what(kpi)} has no `indicator`: is it leading or lagging?", kpi.loc))
    return issues


def strategy_health(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    counts = Counter(k.strategy for k in project.kpis if k.kind == "kpi" and k.strategy)
    for ref in project.strategies.values():
        strategy = ref.strategy
        if counts[strategy.name] == 0:
            issues.append(warning("KPI073", f"strategy '{strategy.name}' has no KPI: nothing measures whether it works",
                                  strategy.value_loc("name")))
        elif counts[strategy.name] > MAX_KPIS_PER_STRATEGY:
            issues.append(warning("KPI075", f"strategy '{strategy.name}' has {counts[strategy.name]} KPIs (more than "
                                            f"{MAX_KPIS_PER_STRATEGY}): keep the few that tell whether it works",
                                  strategy.value_loc("name"), "move the rest to `standards:`"))
        if strategy.ends is not None and strategy.ends < ctx.today:
            issues.append(warning("KPI074", f"strategy '{strategy.name}' ended on {strategy.ends}",
                                  strategy.value_loc("ends"), "extend `ends`, or retire the strategy and its KPIs"))
    return issues


def reviews_due(project: ProjectDef, ctx: Context) -> list[Issue]:
    return [
        warning("KPI076", f"{_what(kpi)} was due for review on {kpi.review_by}", kpi.value_loc("review_by"),
                "review the definition and move `review_by` forward")
        for kpi in project.kpis if kpi.review_by is not None and kpi.review_by < ctx.today
    ]


# --- the entry point ------------------------------------------------------------

Rule = Callable[[ProjectDef, Context], list[Issue]]

RULES: tuple[Rule, ...] = (
    kpi_names,
    duplicate_definitions,
    required_fields,
    strategy_links,
    owner_links,
    kpi_form,
    model_references,
    model_sql,
    columns_exist,
    sql_parses,
    measures_aggregate,
    filters_row_level,
    derived_references,
    drives_known,
    schedules_in_order,
    relative_targets,
    tolerances,
    risk_bands,
    per_grain_settings,
    pace_targets,
    windows,
    durations,
    driven_lagging,
    actions_and_indicator,
    strategy_health,
    reviews_due,
)


def validate(project: ProjectDef, *, today: dt.date) -> list[Issue]:
    """Every cross-object problem of a loaded project, in rule order."""
    ctx = Context(project, today, _known_dialect(project.config.dialect), YamlIndex(project.root))
    issues: list[Issue] = []
    for rule in RULES:
        issues.extend(rule(project, ctx))
    return issues
