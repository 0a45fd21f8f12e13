"""KPIs over dbt's semantic layer (SPEC §9, KPI170-176): each `metric:` KPI resolved against semantic_manifest.json
exactly as the planner will resolve it, so that everything the plan needs is checked at compile time."""
from __future__ import annotations

import dataclasses

from .. import dag
from .. import model as m
from ..errors import Issue, error
from ..loader import ProjectDef
from .access import _FIXES, _Checker
from .context import Context

# what a metric brings, so a metric KPI does not write it
TAKES_NO = ("model", "time", "filter", "window")


def _label(kpi: m.Kpi) -> str:
    return f"{'standard' if kpi.kind == 'standard' else 'KPI'} '{kpi.name}'"


def metric_kpis(project: ProjectDef, ctx: Context) -> list[Issue]:
    users = [k for k in project.kpis if isinstance(k.computation, m.MetricForm) and len(k.written_forms) == 1]
    if not users:
        return []
    issues: list[Issue] = []
    for kpi in users:
        for key in TAKES_NO:
            if key in kpi.model_fields_set and getattr(kpi, key) is not None:
                issues.append(error("KPI174", f"{_label(kpi)} takes its computation from metric '{kpi.metric}', so it "
                                              f"takes no `{key}`: the metric brings its semantic model, time "
                                              "dimension, filters and window", kpi.key_loc(key)))
    from ..dbt.resolve import resolve_metric  # dbt's semantic layer: loaded only for a project with metric KPIs
    from ..dbt.semantic import semantic_layer

    layer, problem = semantic_layer(project)
    if problem is not None:
        if problem.location is None:  # no semantic manifest: said at the first KPI that needs one
            problem = dataclasses.replace(problem, location=users[0].value_loc("metric"))
        return [*issues, problem]
    assert layer is not None
    grains = dag.computed_grains(project.kpis, project.config.defaults.grain, dag.graph(project.kpis, ctx.dialect))
    # the dbt project's SQL (measures', dimensions' and entities' exprs, filters) cannot read the machine either
    # (SPEC §11): checked as project SQL is, with no allowed_paths (a semantic model has no reason to read files)
    checker = _Checker(project.root, None, {(schema.lower(), name) for (_, schema, name) in project.relations()})
    for kpi in users:
        resolved, issue = resolve_metric(layer, kpi, tuple(grains[kpi.name]), ctx.dialect)
        if issue is not None:
            if issue.location is not None and issue.location != kpi.value_loc("metric") and issue.code != "KPI175":
                issue = dataclasses.replace(issue, message=f"{_label(kpi)}: {issue.message}")
            issues.append(issue)
            continue
        trees = [*resolved.trees.values(), resolved.time, resolved.filter, *resolved.dimension_exprs.values(),
                 *(tree for branch in resolved.branches for _, tree in branch.columns)]
        for tree in (t for t in trees if t is not None):
            for code, message in checker.problems(tree, tree.sql(dialect=ctx.dialect)):
                where = resolved.metric.where
                issues.append(error(code, f"{_label(kpi)}: metric '{resolved.metric.name}' ({where.path}:{where.line}) "
                                          f"{message}", where, _FIXES.get(code)))
    return issues
