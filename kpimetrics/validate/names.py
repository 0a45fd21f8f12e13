"""Names, duplicates, required fields, links to strategies and owners, and a KPI's form (KPI010-029)."""
from __future__ import annotations

import re
from typing import Any, Callable, Iterator

from .. import model as m
from ..errors import Issue, Location, error, warning
from ..loader import ProjectDef, suggest
from .context import Context, kpi_label

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


def _first_at(loc: Location | None) -> str:
    return f" (first defined at {loc})" if loc else ""


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


def kpi_names(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues = [
        error("KPI010", f"{kpi_label(k)}: name must be snake_case (lower-case letters, digits and _, starting with a letter)",
              k.value_loc("name"), f"for example '{_snake_case(k.name)}'")
        for k in project.kpis if not NAME_PATTERN.match(k.name)
    ]
    for kpi, name, first in _duplicates(project.kpis, lambda k: k.name, lambda k: k.key_loc("name")):
        issues.append(error("KPI011", f"{kpi_label(kpi)} is defined twice{_first_at(first)}; names are unique across KPIs and standards",
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


def required_fields(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        if not kpi.owner:
            issues.append(error("KPI020", f"{kpi_label(kpi)} has no owner: someone must be accountable for it", kpi.loc,
                                "add `owner:` (a name from `owners:` or an email)"))
        if kpi.target is None:
            issues.append(error("KPI021", f"{kpi_label(kpi)} has no target", kpi.loc,
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
            issues.append(error("KPI023", f"{kpi_label(kpi)}: unknown strategy '{kpi.strategy}'{suggest(kpi.strategy, known)}",
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
    holders: list[tuple[str, m.Node]] = [(kpi_label(k), k) for k in project.kpis]
    holders += [(f"priority '{p.name}'", p) for p in project.priorities]
    holders += [(f"strategy '{s.name}'", s) for p in project.priorities for s in p.strategies]
    return [
        error("KPI024", f"{what}: unknown owner '{node.owner}'{suggest(node.owner, known)}", node.value_loc("owner"),
              "an owner must be a name or an email listed under `owners:`")
        for what, node in holders if node.owner and node.owner not in known
    ]


def kpi_form(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    keys = [f.key for f in m.FORMS]
    one_of = ", ".join(f"`{k}`" for k in keys[:-1]) + f" or `{keys[-1]}`"
    for kpi in project.kpis:
        forms = [f.key for f in kpi.written_forms]
        if not forms:
            issues.append(error("KPI025", f"{kpi_label(kpi)} needs one of {one_of}", kpi.loc))
            continue
        if len(forms) > 1:
            issues.append(error("KPI025", f"{kpi_label(kpi)} has both `{forms[0]}` and `{forms[1]}`: "
                                          f"use exactly one of {', '.join(keys)}", kpi.key_loc(forms[1])))
            continue
        form = kpi.computation
        if not form.reads_model:
            for key in form.takes_no:
                if key in kpi.model_fields_set:
                    issues.append(error("KPI049", f"{form.key} {kpi_label(kpi)} takes no `{key}`: it is computed from "
                                                  "other KPIs' values, which bring their own", kpi.key_loc(key)))
            continue
        for key, code in (("model", "KPI026"), ("time", "KPI027")):
            if getattr(kpi, key) is None:
                issues.append(error(code, f"{kpi_label(kpi)} has a {form.key} but no `{key}`", kpi.loc,
                                    "add `model: source('s', 't')` or `ref('m')`" if key == "model"
                                    else "add `time:`, the column that places each row in a period"))
    return issues
