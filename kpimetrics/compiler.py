"""Compile: the plan rendered as SQL files and a manifest in target/.

`target/compiled/<dialect>/<kpi>.sql` is a self-contained query returning the
rows `run` writes to kpi_values for that KPI (users paste it into BI tools);
`target/run.sql` is every scan and derived query in execution order;
`target/manifest.json` describes every KPI. Output is byte-for-byte deterministic.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlglot import exp

from . import sqlgen
from .planner import KpiPlan, Plan

MANIFEST_SCHEMA_VERSION = 1


def _split(query: exp.Query) -> tuple[list[tuple[str, exp.Query]], exp.Query]:
    """A query's CTEs and its body without them."""
    q = query.copy()
    with_ = q.args.get("with_") or q.args.get("with")
    ctes: list[tuple[str, exp.Query]] = []
    if with_ is not None:
        ctes = [(c.alias, c.this) for c in with_.expressions]
        q.set("with_", None)
        q.set("with", None)
    return ctes, q


def _merge(ctes: list[tuple[str, exp.Query]], more: list[tuple[str, exp.Query]]) -> None:
    names = {n for n, _ in ctes}
    for n, q in more:
        if n not in names:
            ctes.append((n, q))
            names.add(n)


def kpi_parts(plan: Plan, name: str) -> tuple[list[tuple[str, exp.Query]], list[exp.Query]]:
    """CTEs and UNION ALL branches that compute one KPI at all its grains, self-contained."""
    pl = plan.kpis[name]
    cal = plan.project.config.calendar
    ctes: list[tuple[str, exp.Query]] = []
    bodies: list[exp.Query] = []
    if pl.form != "derived":
        for grain in pl.grains:
            q = sqlgen.scan_query([sqlgen.ScanKpi(pl)], grain, pl.relation, cal, prefix=f"{name}_{grain}")
            c, body = _split(q)
            _merge(ctes, c)
            bodies.append(body)
        return ctes, bodies
    in_bodies: list[exp.Query] = []
    for input_name in pl.input_names:
        c, b = kpi_parts(plan, input_name)
        _merge(ctes, c)
        in_bodies.extend(b)
    in_name = f"{name}__inputs"
    _merge(ctes, [(in_name, sqlgen.union_all(in_bodies))])
    dims = derived_dimensions(plan, name)
    for grain in pl.grains:
        bodies.append(sqlgen.derived_query(pl, grain, exp.Table(this=sqlgen.ident(in_name)), dims))
    return ctes, bodies


def derived_dimensions(plan: Plan, name: str) -> tuple[str, ...]:
    """A derived KPI is sliced only by the dimensions all its inputs have."""
    pl = plan.kpis[name]
    if pl.form != "derived":
        return pl.dimensions
    common: list[str] | None = None
    for i in pl.input_names:
        d = derived_dimensions(plan, i)
        common = list(d) if common is None else [x for x in common if x in d]
    return tuple(common or ())


def kpi_query(plan: Plan, name: str) -> exp.Query:
    ctes, bodies = kpi_parts(plan, name)
    body = sqlgen.union_all(bodies)
    if not isinstance(body, exp.Select):
        body = exp.select(*[sqlgen.col(c) for c in sqlgen.VALUE_COLUMNS]).from_(
            exp.Subquery(this=body, alias=exp.TableAlias(this=sqlgen.ident("__u")))
        )
    return sqlgen.cte_query(ctes, body)


def render(query: exp.Expression, dialect: str, pretty: bool = True) -> str:
    from .dialects import generate

    return generate(query, dialect, pretty=pretty)


def header(plan: Plan, pl: KpiPlan, dialect: str) -> str:
    tz = plan.project.config.calendar.timezone
    lines = [
        f"-- kpimetrics: {pl.kpi.kind} {pl.name} ({pl.form}), grains: {', '.join(pl.grains)}",
        f"-- definition_hash: {pl.definition_hash}",
        "-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.",
    ]
    if dialect in ("duckdb", "postgres", "spark"):
        lines.append(f"-- TIMESTAMPTZ values are cut into periods in time zone {tz}: run with the session time zone set to it.")
    return "\n".join(lines) + "\n"


@dataclass
class CompileResult:
    dialect: str
    files: list[Path] = field(default_factory=list)
    manifest_path: Path | None = None
    selected: list[str] = field(default_factory=list)
