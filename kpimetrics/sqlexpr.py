"""Parsing and inspecting the SQL snippets of a KPI (measure, filter, ratio, derived).

Snippets are parsed once with sqlglot in the project's dialect; the trees are
then inspected (aggregates, windows, nesting) and rewritten (filters pushed into
FILTER clauses, divisions made NULL-safe) by the SQL generator.

A snippet is one expression (SPEC §11): a `;`, a statement or a subquery in it is a
problem of its own code (KPI110, KPI111), found on the parsed tree and the tokens,
so nothing but an expression ever reaches the generator or the warehouse.
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


# Statements other than a query (sqlglot's classes; some exist only in some versions). A snippet or a model
# holding one of these anywhere is refused: a warehouse would run it, or fail on it at run time.
_STATEMENT_NAMES = (
    "DML", "DDL", "Drop", "Alter", "AlterTable", "TruncateTable", "Command", "Set", "Use", "Pragma", "Transaction",
    "Commit", "Rollback", "Grant", "Revoke", "Attach", "Detach", "Install", "Export", "Refresh", "Cache", "Uncache",
    "Analyze", "Kill", "LoadData", "Describe", "Show", "Summarize", "Block",
)
STATEMENTS: tuple[type[exp.Expression], ...] = tuple(
    {getattr(exp, n) for n in _STATEMENT_NAMES if isinstance(getattr(exp, n, None), type)})


@dataclass(frozen=True)
class SqlProblem:
    message: str
    offset: int | None = None  # 0-based character offset inside the snippet
    code: str = "KPI040"


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
    problem = grammar_problem(tree, text, dialect)
    if problem is not None:
        return None, problem
    if isinstance(tree, exp.Alias):
        return None, SqlProblem("expected a single SQL expression, not an aliased column")
    return positionless(tree), None


# Clauses that make a SELECT write: SELECT ... INTO creates a table, FOR UPDATE/SHARE locks rows.
WRITING_CLAUSES: tuple[type[exp.Expression], ...] = (exp.Into, exp.Lock)


def statement_name(node: exp.Expression) -> str:
    """How a message names a statement: DELETE, INSERT, ... (sqlglot's key is the class name)."""
    if isinstance(node, exp.Block):
        return "statements"
    if isinstance(node, exp.Into):
        return "SELECT ... INTO"
    if isinstance(node, exp.Lock):
        return "FOR UPDATE" if node.args.get("update") else "FOR SHARE"
    return node.key.upper().replace("TRUNCATETABLE", "TRUNCATE")


def grammar_problem(tree: exp.Expression, text: str, dialect: str) -> SqlProblem | None:
    """Why a parsed snippet is not one expression: a `;` (KPI110), a statement (KPI110) or a subquery (KPI111)."""
    semicolon = _first_token(text, dialect, "SEMICOLON") if ";" in text else None
    if semicolon is not None:
        return SqlProblem("holds a `;`: it must be one SQL expression, not statements", semicolon, "KPI110")
    statement = tree.find(*STATEMENTS)  # the tree itself included
    if statement is not None:
        return SqlProblem(f"holds a statement ({statement_name(statement)} ...): it must be one SQL expression",
                          _first_token(text, dialect, statement.key.upper()), "KPI110")
    if isinstance(tree, exp.Query) and not isinstance(tree, exp.Subquery):
        return SqlProblem("is a query: it must be one SQL expression, not a SELECT", 0, "KPI110")
    if tree.find(exp.Query, exp.Values, exp.Table) is not None:  # a VALUES list or a table is a relation too
        return SqlProblem("holds a subquery (SELECT ...): it must be one expression, which reads no other table",
                          _first_token(text, dialect, "SELECT", "WITH", "VALUES", "FROM"), "KPI111")
    return None


def model_problem(sql: str, statements: list[exp.Expression], dialect: str | None) -> SqlProblem | None:
    """Why a model's parsed statements are not one read-only query: a second statement (KPI112), or a statement
    that changes data anywhere in it, a data-modifying CTE say (KPI113). The offset is into `sql`."""
    if len(statements) > 1:
        return SqlProblem(f"holds {len(statements)} statements: a model is one SELECT, and nothing may follow its `;`",
                          _second_statement(sql, dialect), "KPI112")
    if not statements:
        return None
    statement = statements[0].find(*STATEMENTS, *WRITING_CLAUSES)
    if statement is not None:
        if statement is statements[0]:
            what = f"is {_a(statement_name(statement))} statement"
        else:
            what = f"holds {_a(statement_name(statement))} {'in a CTE' if statement.find_ancestor(exp.CTE) else 'in it'}"
        return SqlProblem(f"{what}: a model is one SELECT that only reads", _keyword_start(sql, dialect, statement),
                          "KPI113")
    return None


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'AEIOU' else 'a'} {word}"


def _keyword_start(sql: str, dialect: str | None, node: exp.Expression) -> int | None:
    """The offset of a statement's keyword (DELETE, ...): the last such token before the first position the parser
    recorded under it (identifiers, literals and stars carry one)."""
    starts = [n.meta["start"] for n in node.walk() if n._meta and "start" in n._meta]
    try:
        tokens = _dialect(dialect).tokenize(sql)
    except Exception:  # the parser already read it; a position is only a nicety
        return min(starts, default=None)
    if isinstance(node, exp.Lock):  # FOR UPDATE / FOR SHARE: nothing under it has a position
        return next((t.start for t, n in zip(tokens, tokens[1:])
                     if t.token_type.name == "FOR" and n.token_type.name in ("UPDATE", "SHARE", "NO")), None)
    if not starts:
        return None
    keyword = node.key.upper()
    found = [t.start for t in tokens if t.token_type.name == keyword and t.start <= min(starts)]
    return found[-1] if found else min(starts)


def _second_statement(sql: str, dialect: str | None) -> int | None:
    """The offset where a second statement starts: the first token after a `;` that is not one."""
    try:
        tokens = _dialect(dialect).tokenize(sql)
    except Exception:  # the parser already read it; a position is only a nicety
        return None
    after = False
    for token in tokens:
        if token.token_type.name == "SEMICOLON":
            after = True
        elif after:
            return token.start
    return None


def line_col(text: str, offset: int | None) -> tuple[int, int]:
    """1-based line and column of a character offset (1, 1 when there is none)."""
    if offset is None:
        return 1, 1
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _first_token(text: str, dialect: str, *kinds: str) -> int | None:
    """The offset of the first token of one of `kinds` (TokenType names) in `text`, if any."""
    try:
        tokens = _dialect(dialect).tokenize(text)
    except Exception:  # the parser already read it; a position is only a nicety
        return None
    return next((t.start for t in tokens if t.token_type.name in kinds), None)


def positionless(tree: exp.Expression) -> exp.Expression:
    """`tree` without the parser's positions (line, col, start, end on each identifier), in place. Nothing reads
    them (a parse error carries its own position), and every copy of a snippet while SQL is generated
    deep-copied them with Python's `copy` module: half the calls of building 1,000 KPIs' SQL."""
    for node in tree.walk():
        node._meta = None
    return tree


def aggregates(tree: exp.Expression) -> list[exp.AggFunc]:
    return [n for n in tree.find_all(exp.AggFunc)]


def lag_periods(node: exp.Lag) -> int | None:
    """How many periods back `lag(k[, n])` reads: n as written (1 when left out), None when n is not a whole number.

    sqlglot parses `-1` as a negation of 1; that is the whole number -1 (not allowed, but a number)."""
    off = node.args.get("offset")
    if off is None:
        return 1
    sign = 1
    if isinstance(off, exp.Neg):
        off, sign = off.this, -1
    if not isinstance(off, exp.Literal) or off.is_string:
        return None
    try:
        return sign * int(off.this)
    except ValueError:  # 1.5, 1e3
        return None


def is_allowed_aggregate(node: exp.Expression) -> bool:
    return isinstance(node, ALLOWED_AGGREGATES)


def has_window(tree: exp.Expression) -> bool:
    return tree.find(exp.Window) is not None


def nested_aggregate(tree: exp.Expression) -> bool:
    return any(a.find_ancestor(exp.AggFunc) is not None for a in tree.find_all(exp.AggFunc))
