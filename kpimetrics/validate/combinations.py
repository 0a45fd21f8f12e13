"""Combinations of dimensions (SPEC §9): a `dimensions` item that is a list is a flat list of two or more column
names (KPI039), no column twice in one and no combination twice (KPI038). Its columns are checked against the
model with every snippet (models.columns_exist: KPI037)."""
from __future__ import annotations

from typing import Any

from ..errors import Issue, error
from ..loader import ProjectDef
from .context import Context, kpi_label


def _shape_problem(item: list[Any]) -> str | None:
    if any(isinstance(c, list) for c in item):
        return "has a list inside it: a combination is one flat list of columns"
    if not all(isinstance(c, str) and c.strip() for c in item):
        return "has an item that is not a column name"
    if len(item) < 2:
        return f"lists {len(item)} column{'' if len(item) == 1 else 's'}: a combination lists two or more"
    return None


def combinations_well_formed(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        seen: dict[frozenset[str], int] = {}
        for i, item in enumerate(kpi.dimensions):
            if isinstance(item, str):
                continue
            where = ctx.item_loc(kpi, "dimensions", i)
            written = "[" + ", ".join(str(c) for c in item) + "]"
            problem = _shape_problem(item)
            if problem is not None:
                issues.append(error("KPI039", f"{kpi_label(kpi)}: the combination of dimensions {written} {problem}",
                                    where, "write a single column as a plain item (`region`), a combination as a "
                                           "flat list of two or more columns (`[region, channel]`)"))
                continue
            twice = sorted({c for c in item if item.count(c) > 1})
            if twice:
                issues.append(error("KPI038", f"{kpi_label(kpi)}: the combination of dimensions {written} names "
                                              f"{', '.join(repr(c) for c in twice)} twice", where,
                                    "name each column once in a combination"))
                continue
            key = frozenset(item)
            if key in seen:
                issues.append(error("KPI038", f"{kpi_label(kpi)}: the combination of dimensions {written} is listed "
                                              f"twice (item {seen[key] + 1} and item {i + 1} of `dimensions`)", where,
                                    "list each combination once: its slices are the same in any order"))
                continue
            seen[key] = i
    return issues
