"""The SQL of a KPI: snippets parse as one expression each, measures aggregate, filters stay row-level, derived
KPIs resolve and read their inputs now or earlier (KPI040-049, KPI110-117)."""
from __future__ import annotations

import re

import sqlglot
from sqlglot import exp

from .. import dag
from ..errors import Issue, error
from ..loader import ProjectDef, suggest
from ..sqlexpr import aggregates, has_window, is_allowed_aggregate, lag_periods, nested_aggregate
from .context import Context, Snippet, kpi_label

ALLOWED_AGGREGATES_TEXT = "sum, count, count(distinct ...), avg, min, max, median, quantile_cont / percentile_cont"
_CALLED_WORD = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def sql_parses(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        for snippet in ctx.snippets(kpi):
            tree, problem = ctx.tree(snippet)
            if problem is not None:
                issues.append(error(problem.code, f"{kpi_label(kpi)}: `{snippet.label}`: {problem.message}", ctx.loc(snippet),
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
        for snippet in ctx.snippets(kpi):
            if snippet.kind != "aggregate":
                continue
            tree, _ = ctx.tree(snippet)
            if tree is None:
                continue
            for code, message in aggregate_problems(tree, snippet.text, ctx.dialect):
                issues.append(error(code, f"{kpi_label(kpi)}: `{snippet.label}` {message}", ctx.loc(snippet)))
    return issues


def filters_row_level(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        if kpi.filter is None:
            continue
        tree, _ = ctx.tree(Snippet("filter", kpi.filter, "rows", kpi, "filter"))
        if tree is None:
            continue
        if has_window(tree):
            issues.append(error("KPI044", f"{kpi_label(kpi)}: `filter` cannot use window functions (OVER ...)",
                                kpi.value_loc("filter")))
        elif aggregates(tree):
            name = _written_name(aggregates(tree)[0], kpi.filter, ctx.dialect)
            issues.append(error("KPI042", f"{kpi_label(kpi)}: `filter` uses the aggregate '{name}': a filter keeps or drops "
                                          "single rows, so it cannot aggregate", kpi.value_loc("filter"),
                                "put the condition inside the measure instead, e.g. count(*) filter (where ...)"))
    return issues


def derived_references(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    known = {k.name for k in project.kpis}
    for kpi in project.kpis:
        form = kpi.computation
        if form is None or form.reads_model:  # only a form computed from other KPIs' values names them
            continue
        for snippet in _kpi_references(kpi, ctx):
            for ref in dict.fromkeys(r.kpi for r in dag.derived_inputs(snippet.text, ctx.dialect)):
                if ref not in known:
                    issues.append(error("KPI046", f"{snippet.role} {kpi_label(kpi)} uses unknown KPI '{ref}'"
                                                  f"{suggest(ref, known)}", ctx.loc(snippet)))
    by_name = project.kpi_by_name
    for cycle in dag.find_cycles(dag.graph(project.kpis, ctx.dialect)):
        issues.append(error("KPI047", f"derived KPIs form a cycle: {' -> '.join(cycle)}",
                            ctx.loc(_kpi_references(by_name[cycle[0]], ctx)[0])))
    return issues


def derived_grammar(project: ProjectDef, ctx: Context) -> list[Issue]:
    """An expression over other KPIs' values reads them at its own period or `lag(k, n)` periods before
    (KPI114); it cannot look ahead (KPI115), aggregate them (KPI116) or use a window (KPI044), and it reads at
    least one (KPI117)."""
    issues: list[Issue] = []
    for kpi in project.kpis:
        for snippet in _kpi_references(kpi, ctx):
            tree, _ = ctx.tree(snippet)
            if tree is None:
                continue
            problem = _derived_problem(tree, snippet.text, ctx.dialect)
            if problem is not None:
                code, message, hint = problem
                issues.append(error(code, f"{kpi_label(kpi)}: `{snippet.label}` {message}", ctx.loc(snippet), hint))
    return issues


MAX_LAG = 10_000  # periods back: 27 years of days; beyond it the warehouses' date arithmetic overflows
_LAG_HINT = "write lag(kpi_name) for the previous period, or lag(kpi_name, n) for n periods earlier (n = 1, 2, ...)"


def _derived_problem(tree: exp.Expression, text: str, dialect: str | None) -> tuple[str, str, str | None] | None:
    """(code, message, hint) of the first way a derived expression leaves its grammar, or None."""
    if has_window(tree):
        return "KPI044", "uses a window function (OVER ...), which is not allowed", _LAG_HINT
    if tree.find(exp.Column) is None:
        return ("KPI117", "names no KPI: its periods and slices are those of the KPIs it reads, so it needs one",
                "write an expression over other KPIs' names, e.g. net_revenue / lag(net_revenue) - 1")
    for node in tree.walk():
        if isinstance(node, exp.Lead):
            return ("KPI115", "uses lead(), which reads later periods: a value can only depend on its own and "
                              "earlier periods", _LAG_HINT)
        if isinstance(node, exp.Lag):
            problem = _lag_problem(node)
            if problem is not None:
                return "KPI114", problem, _LAG_HINT
        elif isinstance(node, exp.AggFunc):
            return ("KPI116", f"uses the aggregate '{_written_name(node, text, dialect)}': a derived value is computed "
                              "from other KPIs' values in the same period, one row each, so there is nothing to "
                              "aggregate", "aggregate in the input KPIs' `measure` instead")
    return None


def _lag_problem(node: exp.Lag) -> str | None:
    """What is wrong with one lag(k[, n]), or None."""
    if not isinstance(node.this, exp.Column) or node.this.table:
        return "uses lag() on something that is not a KPI name"
    name = node.this.name
    if node.args.get("default") is not None:
        return f"gives lag({name}, ...) a third argument, which is not supported"
    periods = lag_periods(node)
    if periods is None:
        return f"gives lag({name}, ...) an offset that is not a whole number"
    if periods < 1:
        return f"gives lag({name}, {periods}) an offset below 1: it counts periods back, 1 or more"
    if periods > MAX_LAG:
        return (f"gives lag({name}, {periods}) an offset over {MAX_LAG:,} periods, which no calendar computes "
                "(the warehouse overflows)")
    return None


def _kpi_references(kpi, ctx: Context) -> list[Snippet]:
    """The KPI's expressions over other KPIs' values (a derived KPI's `derived`)."""
    return [s for s in ctx.snippets(kpi) if s.kind == "kpis"]


def drives_known(project: ProjectDef, ctx: Context) -> list[Issue]:
    known = {k.name for k in project.kpis}
    return [
        error("KPI048", f"{kpi_label(kpi)} drives unknown KPI '{name}'{suggest(name, known)}", ctx.item_loc(kpi, "drives", i))
        for kpi in project.kpis for i, name in enumerate(kpi.drives) if name not in known
    ]
