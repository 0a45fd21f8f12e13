"""Per-KPI compiled files, rendered once per shape.

Ten thousand KPIs are seldom ten thousand different queries: a large project repeats a few forms whose KPIs
differ in their names and in the constants they compare with (`amount > 40`, `region = 'EU'`). A KPI's
file is the query of its shape, built and rendered once by sqlglot with stand-in names and constants, with
this KPI's names and constants (each rendered by sqlglot in the dialect) put back in their places.

What makes a shape: everything the query is built from (form, grains, slices, window, fill, model, time
column, and the trees of the form's expressions and of the filter node by node), except the names of the KPIs and
the constants that are operands of comparisons and arithmetic. A constant anywhere else (a function's
argument such as a quantile, a lag, a date format) is part of the shape, since a dialect may rewrite it.
Stand-ins are tokens nothing else in a query can contain; the first KPI of each shape is also rendered
directly, and a shape whose filled-in text differs from that rendering by more than layout is rendered
directly for every KPI.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import Callable

from sqlglot import exp

from . import sqlgen
from .planner import KpiPlan, Plan

# a constant is stood in for only where it is an operand of these (its value cannot change the query's shape),
# directly or through parentheses and a minus sign
_OPERAND_OF = (exp.Binary, exp.In, exp.Between)
_WRAPPERS = (exp.Paren, exp.Neg)
_NUMBER_BASE = 90_710_000_000  # 11 digits: stand-in numbers are this + their index


def _name(i: int) -> str:
    return f"kpim{i}n"  # snake_case, and no stand-in name is part of another ('kpim1n' vs 'kpim12n')


def _stands_in(node: exp.Literal) -> bool:
    if not node.is_string and node.this in ("0", "1"):
        return False
    parent = node.parent
    while isinstance(parent, _WRAPPERS):
        parent = parent.parent
    return isinstance(parent, _OPERAND_OF)


def _number_kind(text: str) -> str:
    return "decimal" if any(c in text for c in ".eE") else "integer"


def _shape(node, constants: list[exp.Literal] | None, names: dict[str, int]):
    """`node` as nested tuples, with stood-in constants (appended to `constants`, in order) reduced to their
    kind, and columns naming a KPI (a derived KPI's inputs) to that KPI's place among the file's KPIs."""
    if isinstance(node, exp.Literal):
        if constants is not None and _stands_in(node):
            constants.append(node)
            return ("?", "string" if node.is_string else _number_kind(node.this))
        return ("lit", node.is_string, node.this)
    if isinstance(node, exp.Column) and names and not node.table and node.name in names:
        return ("kpi", names[node.name])
    if isinstance(node, exp.Expression):
        return (node.key, tuple(node.comments or ()),
                tuple((k, _shape(v, constants, names)) for k, v in node.args.items() if v is not None))
    if isinstance(node, list):
        return tuple(_shape(v, constants, names) for v in node)
    return node


@dataclass
class Fill:
    """One KPI's file as a shape (`key`) and what goes in its stand-ins' places."""

    key: tuple
    names: list[str]  # the KPIs of the file, in computing order (the KPI itself last)
    constants: list[exp.Literal]


def fill_of(plan: Plan, name: str, memo: dict[int, tuple] | None = None) -> Fill:
    """`memo` keeps each tree's shape and constants by its id: the planner shares one tree among the KPIs
    that wrote the same snippet (the trees live as long as the plan)."""
    pl = plan.kpis[name]
    names = [name] if pl.scanned else plan.closure(name)
    place = {n: i for i, n in enumerate(names)}
    constants: list[exp.Literal] = []
    key = tuple(_member_key(plan.kpis[n], constants, place, {} if memo is None else memo) for n in names)
    return Fill(key, names, constants)


def _member_key(pl: KpiPlan, constants: list[exp.Literal], place: dict[str, int], memo: dict[int, tuple]) -> tuple:
    def shape(tree: exp.Expression | None):
        if tree is None:
            return None
        got = memo.get(id(tree))
        if got is None:
            found: list[exp.Literal] = []
            got = memo[id(tree)] = (_shape(tree, found, {}), found)
        constants.extend(got[1])
        return got[0]

    # the form's expressions, then the filter: the order in which constants are numbered (as `_stand_in_plan`
    # replaces them); an expression over KPIs has the KPIs' places, and no constant stood in
    trees = pl.trees
    return (
        pl.form, pl.grains, pl.dimensions, pl.window, pl.kpi.fill,
        pl.relation.key if pl.relation is not None else None,
        pl.time_sql if pl.time is not None else None,
        tuple([_shape(trees[e.role], None, place) if e.kind == "kpis" else shape(trees[e.role])
               for e in pl.computation.expressions()]),
        shape(pl.filter),
        tuple((place[r.kpi], r.lag) for r in pl.inputs),
    )


class _Checked:
    """Templates by shape key. The first time a shape is met its filled-in template is compared with a direct
    rendering of the same thing; a shape whose texts differ by more than layout is rendered directly from then
    on (None in `templates`). The filled-in template is used even for that first one: a text must not depend on
    which of its shape came first."""

    def __init__(self):
        self.templates: dict[tuple, _Template | None] = {}

    def text(self, key: tuple, template: Callable[[], _Template], values: Callable[[], dict],
             direct: Callable[[], str]) -> str:
        if key not in self.templates:
            made, alone = template(), direct()
            filled = made.fill(values())
            self.templates[key] = made if _layout_free(filled) == _layout_free(alone) else None
            return filled if self.templates[key] is not None else alone
        made = self.templates[key]
        return direct() if made is None else made.fill(values())


class _Literals:
    """Names and constants rendered by sqlglot in one dialect, each text once. A text of letters, digits and
    underscores is put between the quotes a probe was rendered with (rendering each of 10,000 KPI names would
    cost more than filling them in)."""

    def __init__(self, dialect: str):
        self.dialect = dialect
        self._done: dict[tuple[str, str], str] = {}
        self._quotes: dict[str, list[str]] = {}

    def ident(self, name: str) -> str:
        return self._sql("ident", name, sqlgen.ident)

    def string(self, text: str) -> str:
        return self._sql("string", text, exp.Literal.string)

    def number(self, text: str) -> str:
        return self._sql("number", text, exp.Literal.number, plain=False)

    def date(self, day: dt.date) -> str:
        return self._sql("date", day.isoformat(), lambda _: sqlgen.lit(day), plain=False)

    def _sql(self, kind: str, text: str, node: Callable[[str], exp.Expression], plain: bool = True) -> str:
        got = self._done.get((kind, text))
        if got is None:
            if plain and _PLAIN.fullmatch(text):
                quotes = self._quotes.get(kind)
                if quotes is None:
                    quotes = self._quotes[kind] = node("kpimprobe").sql(dialect=self.dialect).split("kpimprobe")
                got = text.join(quotes)
            else:
                got = node(text).sql(dialect=self.dialect)
            self._done[(kind, text)] = got
        return got


_PLAIN = re.compile(r"[A-Za-z0-9_]+")


class Shapes:
    """The template of every shape met so far, for one plan and dialect; `text(name)` is a KPI's query."""

    def __init__(self, plan: Plan, dialect: str, render: Callable[[Plan, str], str]):
        self.plan, self.render = plan, render
        self._checked = _Checked()
        self.templates = self._checked.templates  # None: this shape is rendered directly
        self._literals = _Literals(dialect)
        self._shapes: dict[int, tuple] = {}

    def text(self, name: str) -> str:
        fill = fill_of(self.plan, name, self._shapes)
        values = {("name", i): n for i, n in enumerate(fill.names)}
        return self._checked.text(fill.key, lambda: self._template(fill),
                                  lambda: values | {("constant", i): self._constant(c) for i, c in enumerate(fill.constants)},
                                  lambda: self.render(self.plan, name))

    def _template(self, fill: Fill) -> _Template:
        """Render the shape with stand-ins: a plan of copies of the file's KPIs, renamed, their constants replaced."""
        rename = {n: _name(i) for i, n in enumerate(fill.names)}
        counter = iter(range(len(fill.constants)))
        kpis: dict[str, KpiPlan] = {}
        for n in fill.names:
            kpis[rename[n]] = _stand_in_plan(self.plan.kpis[n], rename, lambda lit: _stand_in_literal(lit, next(counter)))
        deps = {rename[n]: [rename[d] for d in self.plan.deps.get(n, [])] for n in fill.names}
        text = self.render(Plan(self.plan.project, kpis, deps), rename[fill.names[-1]])
        tokens = {("name", i): _name(i) for i in range(len(fill.names))}
        tokens |= {("constant", i): self._constant(_stand_in_literal(c, i)) for i, c in enumerate(fill.constants)}
        return _Template(text, tokens)

    def _constant(self, lit: exp.Literal) -> str:
        return self._literals.string(lit.this) if lit.is_string else self._literals.number(lit.this)


class _Template:
    """A text and the places of its stand-ins (`tokens`: key -> the stand-in's text), split once, filled by joining
    the pieces with each key's value."""

    def __init__(self, text: str, tokens: dict):
        by_text = {t: k for k, t in tokens.items()}
        if not by_text:
            self.parts, self.slots = [text], []
            return
        pattern = re.compile("(" + "|".join(re.escape(t) for t in sorted(by_text, key=len, reverse=True)) + ")")
        self.parts = pattern.split(text)
        self.slots = [(i, by_text[self.parts[i]]) for i in range(1, len(self.parts), 2)]

    def fill(self, values: dict) -> str:
        parts = self.parts.copy()
        for i, key in self.slots:
            parts[i] = values[key]
        return "".join(parts)


def _stand_in_literal(lit: exp.Literal, i: int) -> exp.Literal:
    if lit.is_string:
        return exp.Literal.string(f"kpim{i}c")
    number = str(_NUMBER_BASE + i)
    return exp.Literal.number(number + ".5" if _number_kind(lit.this) == "decimal" else number)


def _stand_in_plan(pl: KpiPlan, rename: dict[str, str], stand_in: Callable[[exp.Literal], exp.Literal]) -> KpiPlan:
    """A copy of `pl` under its stand-in name, its inputs renamed, and its constants replaced in the order
    `_shape` finds them (the form's expressions, then the filter, as `_member_key` numbers them; each depth-first in
    argument order)."""

    def constants_replaced(tree: exp.Expression | None) -> exp.Expression | None:
        if tree is None:
            return None
        tree = tree.copy()
        found: list[exp.Literal] = []
        _shape(tree, found, {})
        for lit in found:
            lit.replace(stand_in(lit))
        return tree

    def kpis_renamed(tree: exp.Expression | None) -> exp.Expression | None:
        if tree is None:
            return None
        tree = tree.copy()
        for column in tree.find_all(exp.Column):
            if not column.table and column.name in rename:
                column.set("this", exp.to_identifier(rename[column.name]))
        return tree

    kpi = pl.kpi.model_copy(update={"name": rename[pl.name]})
    trees = {e.role: (kpis_renamed if e.kind == "kpis" else constants_replaced)(pl.trees[e.role])
             for e in pl.computation.expressions()}
    return dataclasses.replace(
        pl,
        kpi=kpi,
        computation=kpi.computation,
        trees=trees,
        filter=constants_replaced(pl.filter),
        inputs=[dataclasses.replace(r, kpi=rename[r.kpi]) for r in pl.inputs],
    )


_LAYOUT = re.compile(r"\s+")


def _layout_free(text: str) -> str:
    return _LAYOUT.sub("", text)


class RowTexts:
    """A fused scan's output rows, rendered once per shape: `scan_query(..., rows=RowTexts(dialect))`.

    Each KPI adds a UNION ALL branch per grain and slice to its scan's final SELECT, most of the scan's text
    (three quarters of it at 9,000 KPIs), and KPIs of one form, grain and pattern of slices have the same
    branches but for names. A shape's branches are built with stand-in names by `sqlgen.kpi_rows` and rendered
    once; a KPI's are the shape's text with its own names put in, as one leaf of the tree (`exp.Var`), so the
    generator copies the text where the branches would go. Checked against a direct rendering as `Shapes` are.
    Only for dialects in `dialects.PARTS_RENDER_ALONE`, and only for rendering text: the leaf hides what the
    branches read from a tree walk.
    """

    def __init__(self, dialect: str):
        self.dialect = dialect
        self._checked = _Checked()
        self.templates = self._checked.templates  # None: this shape is rendered directly
        self._literals = _Literals(dialect)

    def __call__(self, spec: sqlgen.KpiRows) -> list[exp.Expression]:
        slots = {c: i for i, c in enumerate(spec.agg_slices)}
        key = (spec.form, spec.fill_zero, spec.grain, len(spec.agg_slices), tuple(slots[c] for _, c in spec.slices),
               tuple(k for k, _ in spec.refs), spec.since is None, spec.sets)
        text = self._checked.text(key, lambda: self._template(spec, slots), lambda: self._values(spec),
                                  lambda: self._render(sqlgen.kpi_rows(spec)))
        return [exp.Var(this=text)]

    def _render(self, branches: list[exp.Select]) -> str:
        from .dialects import generate

        return generate(sqlgen.union_all(branches), self.dialect, pretty=True, copy=False)

    def _template(self, spec: sqlgen.KpiRows, slots: dict[str, int]) -> _Template:
        """The shape's branches rendered with stand-in names (and a stand-in first period)."""
        stand_in = sqlgen.KpiRows(
            name="kpim0n", form=spec.form, fill_zero=spec.fill_zero, grain=spec.grain, agg="kpim0g",
            agg_slices=tuple(f"kpim{i}a" for i in range(len(spec.agg_slices))),
            slices=tuple((f"kpim{slots[c]}d", f"kpim{slots[c]}a") for _, c in spec.slices),
            refs=tuple((k, f"kpim{j}r") for j, (k, _) in enumerate(spec.refs)),
            spine="kpim0s", since=None if spec.since is None else _STAND_IN_DATE, sets=spec.sets,
        )
        return _Template(self._render(sqlgen.kpi_rows(stand_in)), self._values(stand_in))

    def _values(self, spec: sqlgen.KpiRows) -> dict:
        """Each name of `spec` as rendered, by its place: what a template's stand-ins are and what replaces them."""
        lit = self._literals
        slot = {c: i for i, c in enumerate(spec.agg_slices)}
        values = {"name": lit.string(spec.name), "agg": lit.ident(spec.agg), "spine": lit.ident(spec.spine)}
        values |= {("slice", i): lit.ident(c) for i, c in enumerate(spec.agg_slices)}
        values |= {("dimension", slot[c]): lit.string(d) for d, c in spec.slices}
        values |= {("ref", j): lit.ident(c) for j, (_, c) in enumerate(spec.refs)}
        if spec.since is not None:
            values["since"] = lit.date(spec.since)
        return values


_STAND_IN_DATE = dt.date(9071, 1, 1)
