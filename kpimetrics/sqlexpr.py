"""Parsing and inspecting the SQL snippets of a KPI (measure, filter, ratio, derived).

Snippets are parsed once with sqlglot in the project's dialect; the trees are
then inspected (aggregates, windows, nesting) and rewritten (filters pushed into
FILTER clauses, divisions made NULL-safe) by the SQL generator.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError

ALLOWED_AGGREGATES: tuple[type[exp.Expression], ...] = (
    exp.Sum, exp.Count, exp.Avg, exp.Min, exp.Max, exp.Median, exp.PercentileCont, exp.Quantile,
)


@dataclass(frozen=True)
class SqlProblem:
    message: str
    offset: int | None = None  # 0-based character offset inside the snippet


def quote_identifier(name: str, dialect: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


def relation(source, table) -> exp.Table:
    """The warehouse table of a declared source table, every part quoted."""
    return exp.table_(
        exp.to_identifier(table.identifier or table.name, quoted=True),
        db=exp.to_identifier(source.schema_, quoted=True) if source.schema_ else None,
        catalog=exp.to_identifier(source.database, quoted=True) if source.database else None,
    )


def relation_sql(source, table, dialect: str) -> str:
    return relation(source, table).sql(dialect=dialect)


def _offset(text: str, line: int, col: int) -> int:
    lines = text.split("\n")
    return sum(len(l) + 1 for l in lines[: max(line - 1, 0)]) + max(col - 1, 0)


def parse_snippet(text: str, dialect: str) -> tuple[exp.Expression | None, SqlProblem | None]:
    """Parse one SQL expression; on failure say where in the text it broke.

    Parsed once per text and dialect (validation, the DAG and the planner all ask, and
    thousands of KPIs repeat the same `time` or measure): the tree is shared, so callers
    copy it before changing it.
    """
    if not isinstance(text, str):
        return None, SqlProblem("the expression is empty")
    return _parse_cached(text, dialect)


@functools.cache
def _dialect(name: str) -> Dialect:
    """One instance per dialect: sqlglot makes a new one for each parse given a name."""
    return Dialect.get_or_raise(name)


@functools.lru_cache(maxsize=65536)
def _parse_cached(text: str, dialect: str) -> tuple[exp.Expression | None, SqlProblem | None]:
    if not text.strip():
        return None, SqlProblem("the expression is empty")
    try:
        tree = sqlglot.parse_one(text, read=_dialect(dialect))
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        line, col = first.get("line", 1) or 1, first.get("col", 1) or 1
        off = _offset(text, line, col)
        desc = first.get("description", str(exc)).split(". Line")[0]
        if desc.startswith("Required keyword"):
            desc = "incomplete expression"
        near = first.get("highlight") or text[max(off - 1, 0): off + 10]
        return None, SqlProblem(f"SQL does not parse: {desc} at character {off} (near '{near}')", off)
    except TokenError as exc:
        return None, SqlProblem(f"SQL does not parse: {exc}")
    except Exception as exc:  # sqlglot raises plain errors for a few malformed inputs
        return None, SqlProblem(f"SQL does not parse: {exc}")
    if tree is None:
        return None, SqlProblem("the expression is empty")
    if isinstance(tree, (exp.Alias, exp.Query)) or isinstance(tree, exp.Command):
        return None, SqlProblem("expected a single SQL expression, not a statement or an aliased column")
    return positionless(tree), None


def positionless(tree: exp.Expression) -> exp.Expression:
    """`tree` without the parser's positions (line, col, start, end on each identifier), in place. Nothing reads
    them (a parse error carries its own position), and every copy of a snippet while SQL is generated
    deep-copied them with Python's `copy` module: half the calls of building 1,000 KPIs' SQL."""
    for node in tree.walk():
        node._meta = None
    return tree


def aggregates(tree: exp.Expression) -> list[exp.AggFunc]:
    return [n for n in tree.find_all(exp.AggFunc)]


def is_allowed_aggregate(node: exp.Expression) -> bool:
    return isinstance(node, ALLOWED_AGGREGATES)


def has_window(tree: exp.Expression) -> bool:
    return tree.find(exp.Window) is not None


def nested_aggregate(tree: exp.Expression) -> bool:
    return any(a.find_ancestor(exp.AggFunc) is not None for a in tree.find_all(exp.AggFunc))
