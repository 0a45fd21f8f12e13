"""What several rules need, computed once: the parsed models and the raw YAML lines.

pydantic models forget where list items and per-grain keys were written, and
several rules parse the same model SQL; `Context` keeps both, so each rule stays a
small function of the project. (Snippets need no cache here: `parse_snippet` has one.)
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from .. import model as m
from ..config import ALL_DIALECTS
from ..errors import Issue, Location, error
from ..loader import ProjectDef
from ..sqlexpr import SqlProblem, line_col, model_problem, parse_snippet
from ..yamlio import LocDict, LocList, load_yaml


@dataclass(frozen=True)
class Columns:
    """The columns a KPI's model offers; `names` is None when they are not known (then `reason` says why)."""

    names: frozenset[str] | None
    declared: tuple[str, ...] = ()
    reason: str = ""
    complete: bool = True  # False: a dbt model's documented columns alone, which are often a few of its columns


Snippet = m.Expression  # one SQL text of a KPI: its role, kind, text and where it was written


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
    _model_trees: dict[str, tuple[exp.Expression | None, Issue | None]] = field(default_factory=dict)
    # Filled by models.model_columns: inferring a model's columns is the models' concern, remembering them ours.
    columns_by_model: dict[str, Columns] = field(default_factory=dict)
    _snippets: dict[int, tuple[Snippet, ...]] = field(default_factory=dict)  # by id() of the KPI

    @property
    def default_grain(self) -> str:
        return self.project.config.defaults.grain

    def snippets(self, kpi: m.Kpi) -> tuple[Snippet, ...]:
        """The KPI's SQL texts (`Kpi.expressions`), made once however many rules ask (three, for every KPI)."""
        found = self._snippets.get(id(kpi))
        if found is None:
            found = self._snippets[id(kpi)] = kpi.expressions()
        return found

    def loc(self, snippet: Snippet) -> Location | None:
        """Where a snippet was written. A list item's line needs the raw YAML: looked up only when there is
        something to report."""
        if snippet.index is None:
            return snippet.node.value_loc(snippet.key)
        return self.item_loc(snippet.node, snippet.key, snippet.index)

    def tree(self, snippet: Snippet) -> tuple[exp.Expression | None, SqlProblem | None]:
        """The parsed snippet and its problem: parsed once per text however many rules (and the planner) ask."""
        return parse_snippet(snippet.text, self.dialect)

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
            self._model_trees[name] = parse_model(self.project.models[name], self.dialect)
        return self._model_trees[name]


def known_dialect(name: str) -> str | None:
    """The project's dialect, or sqlglot's generic one when the loader reported it unknown (KPI083).

    Parsing every snippet with an unknown dialect would only repeat that one mistake on every KPI.
    """
    return name if name in ALL_DIALECTS else None


def parse_model(model_file, dialect: str | None) -> tuple[exp.Expression | None, Issue | None]:
    """The model's rendered SQL as one query, or the issue saying why it is not one."""
    where = Location(model_file.path, 1, 1)
    try:
        dialect = model_file.dialect or dialect  # an ephemeral dbt model is in dbt's adapter's dialect
        statements = [s for s in sqlglot.parse(model_file.sql, read=dialect) if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        line, col = first.get("line") or 1, first.get("col") or 1
        desc = str(first.get("description", exc)).split(". Line")[0]
        return None, error("KPI034", f"model '{model_file.name}': SQL does not parse: {desc} (line {line}, column {col})",
                           Location(model_file.path, line, col))
    except Exception as exc:  # sqlglot's tokenizer raises its own errors for some inputs
        return None, error("KPI034", f"model '{model_file.name}': SQL does not parse: {exc}", where)
    problem = model_problem(model_file.sql, statements, dialect)  # a second statement, a data-modifying CTE
    if problem is not None:
        line, col = line_col(model_file.sql, problem.offset)
        return None, error(problem.code, f"model '{model_file.name}' {problem.message}", Location(model_file.path, line, col))
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        return None, error("KPI034", f"model '{model_file.name}' must be a single SELECT statement", where)
    return statements[0], None


def kpi_label(kpi: m.Kpi) -> str:
    """How messages name a KPI: "KPI 'x'" or "standard 'x'"."""
    return f"{'standard' if kpi.kind == 'standard' else 'KPI'} '{kpi.name}'"
