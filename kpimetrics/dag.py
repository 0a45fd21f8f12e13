"""The dependency graph between KPIs (derived KPIs and their inputs) and selection.

Selection syntax (SPEC §4, §8): a method (`name`, `strategy:X`, `priority:X`, `owner:X`, `tag:X`, `kind:X`,
`state:modified`, `state:new`), with `+` before it for the KPIs it derives from (upstream) and `+` after it for the
KPIs derived from it (downstream), as dbt writes them; several separated by spaces (their union).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from sqlglot import exp

from .errors import UsageError
from .sqlexpr import lag_periods, parse_snippet


@dataclass(frozen=True)
class InputRef:
    kpi: str
    lag: int  # 0 for the same period


def derived_inputs(derived: str, dialect: str) -> list[InputRef]:
    """The KPIs a derived expression reads: bare names, and lag(name[, n])."""
    tree, problem = parse_snippet(derived, dialect)
    if tree is None:
        return []
    refs: dict[InputRef, None] = {}
    for col in tree.find_all(exp.Column):
        lag_node = col.parent if isinstance(col.parent, exp.Lag) and col.parent.this is col else None
        n = 0
        if lag_node is not None:  # an offset that is not a whole number is KPI114; read it as 1 until then
            n = lag_periods(lag_node) or 1
        refs.setdefault(InputRef(col.name, n), None)
    return list(refs)


def kpi_inputs(kpi, dialect: str) -> list[InputRef]:
    """The KPIs a KPI reads, from its form's expressions over other KPIs' values (a derived KPI's `derived`)."""
    form = kpi.computation
    if form is None or form.reads_model:  # a form that scans rows reads no KPI
        return []
    return _form_inputs(form, dialect)


def _form_inputs(form, dialect: str) -> list[InputRef]:
    refs: dict[InputRef, None] = {}
    for e in form.expressions():
        if e.kind == "kpis":
            refs.update(dict.fromkeys(derived_inputs(e.text, dialect)))
    return list(refs)


def graph(kpis: Iterable, dialect: str) -> dict[str, list[str]]:
    """name -> the KPIs it derives from (in the order written)."""
    out: dict[str, list[str]] = {}
    for k in kpis:
        form = k.computation
        if form is not None and not form.reads_model:
            out[k.name] = list(dict.fromkeys(r.kpi for r in _form_inputs(form, dialect)))
        else:
            out.setdefault(k.name, [])
    return out


def computed_grains(kpis: Iterable, default: str, deps: dict[str, list[str]]) -> dict[str, list[str]]:
    """The grains each KPI is computed at: its own (or the default), plus those of every KPI derived from it."""
    grains = {k.name: list(k.declared_grains or (default,)) for k in kpis}
    changed = True
    while changed:  # a fixed point: derived KPIs may read derived KPIs
        changed = False
        for name, inputs in deps.items():
            for dep in inputs:
                for g in grains.get(name, []) if dep in grains else []:
                    if g not in grains[dep]:
                        grains[dep].append(g)
                        changed = True
    return grains


def find_cycles(deps: dict[str, list[str]]) -> list[list[str]]:
    """Each cycle once, as a path that starts and ends at its smallest name."""
    cycles: list[list[str]] = []
    seen_keys: set[tuple[str, ...]] = set()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in deps.get(node, []):
            if nxt not in deps:
                continue
            if state.get(nxt) == 1:
                cyc = stack[stack.index(nxt):]
                i = cyc.index(min(cyc))
                norm = tuple(cyc[i:] + cyc[:i])
                if norm not in seen_keys:
                    seen_keys.add(norm)
                    cycles.append(list(norm) + [norm[0]])
            elif state.get(nxt) is None:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in deps:
        if state.get(node) is None:
            visit(node)
    return cycles


def upstream(names: Iterable[str], deps: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n in out:
            continue
        out.add(n)
        todo.extend(d for d in deps.get(n, []) if d in deps)
    return out


def downstream(names: Iterable[str], deps: dict[str, list[str]]) -> set[str]:
    """`names` and every KPI derived from them, transitively: upstream() over the graph turned round."""
    readers: dict[str, list[str]] = {name: [] for name in deps}
    for name, inputs in deps.items():
        for d in inputs:
            readers.setdefault(d, []).append(name)
    return upstream(names, readers)


def topo_order(names: Iterable[str], deps: dict[str, list[str]]) -> list[str]:
    """Inputs before the KPIs derived from them; otherwise the given order. Assumes no cycles."""
    wanted = list(dict.fromkeys(names))
    wanted_set = set(wanted)
    out: list[str] = []
    done: set[str] = set()

    def visit(n: str, trail: tuple[str, ...] = ()) -> None:
        if n in done or n in trail:
            return
        for d in deps.get(n, []):
            if d in wanted_set:
                visit(d, trail + (n,))
        done.add(n)
        out.append(n)

    for n in wanted:
        visit(n)
    return out


@dataclass(frozen=True)
class StateChanges:
    """How the project differs from an earlier manifest (`--state`), KPI by KPI: what `state:` selects."""

    new: frozenset[str]  # not in the earlier manifest
    modified: frozenset[str]  # new, or its own manifest entry changed (see README, selection)


METHODS = "a name, strategy:, priority:, owner:, tag:, kind:, state:modified or state:new, with + before and/or after"


def select(kpis: list, selector: str | None, strategies: dict, dialect: str,
           state: Callable[[], StateChanges] | None = None) -> list[str]:
    """The names the selector picks, in project order. A term that matches nothing is a usage error, except a
    `state:` term (nothing changed is a valid answer: CI then runs nothing). `state` is called (once) only when
    a `state:` term is used; None means no --state was given."""
    names = [k.name for k in kpis]
    if not selector or not selector.strip():
        return names
    deps = graph(kpis, dialect)
    changes: StateChanges | None = None
    chosen: set[str] = set()
    for term in selector.split():
        up, down = term.startswith("+"), term.endswith("+") and len(term) > 1
        body = term[1 if up else 0:len(term) - 1 if down else len(term)]
        method, _, value = body.partition(":") if ":" in body else ("name", "", body)
        if method == "name":
            hits = {k.name for k in kpis if k.name == value}
        elif method == "strategy":
            hits = {k.name for k in kpis if k.strategy == value}
        elif method == "priority":
            hits = {k.name for k in kpis if k.strategy in strategies and strategies[k.strategy].priority.name == value}
        elif method == "owner":
            hits = {k.name for k in kpis if k.owner == value}
        elif method == "tag":
            hits = {k.name for k in kpis if value in (k.tags or [])}
        elif method == "kind":
            hits = {k.name for k in kpis if k.kind == value}
        elif method == "state":
            if value not in ("modified", "new"):
                raise UsageError(f"unknown state selector '{term}' (use state:modified or state:new)")
            if state is None:
                raise UsageError(f"'{term}' compares with an earlier compile: pass --state PATH (the target/ folder of "
                                 "an earlier `kpimetrics compile`, in CI the main branch's, or its manifest.json)")
            changes = changes or state()
            hits = set(changes.modified if value == "modified" else changes.new)
        else:
            raise UsageError(f"unknown selector method '{method}' in '{term}' (use {METHODS})")
        if not hits and method != "state":
            raise UsageError(f"selector '{term}' matches no KPI or standard")
        picked = set(hits)
        if up:
            picked |= upstream(hits, deps)
        if down:
            picked |= downstream(hits, deps)
        chosen |= picked
    return [n for n in names if n in chosen]
