"""The warnings of SPEC §1 (KPI070-079): a project that runs but does not yet say what matters."""
from __future__ import annotations

from collections import Counter

from ..errors import Issue, warning
from ..loader import ProjectDef
from .context import Context, kpi_label

MAX_KPIS_PER_STRATEGY = 7


def driven_lagging(project: ProjectDef, ctx: Context) -> list[Issue]:
    driven = {name for k in project.kpis if k.indicator == "leading" for name in k.drives}
    return [
        warning("KPI070", f"lagging {kpi_label(kpi)} is not driven by any leading KPI", kpi.value_loc("indicator"),
                f"add `drives: [{kpi.name}]` to the leading KPI that predicts it")
        for kpi in project.kpis if kpi.indicator == "lagging" and kpi.name not in driven
    ]


def actions_and_indicator(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        if kpi.kind != "kpi":
            continue
        if not kpi.actions:
            issues.append(warning("KPI071", f"{kpi_label(kpi)} has no `actions`: say what to do when it goes off track", kpi.loc))
        if kpi.indicator is None:
            issues.append(warning("KPI072", f"{kpi_label(kpi)} has no `indicator`: is it leading or lagging?", kpi.loc))
    return issues


def strategy_health(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    counts = Counter(k.strategy for k in project.kpis if k.kind == "kpi" and k.strategy)
    for ref in project.strategies.values():
        strategy = ref.strategy
        if counts[strategy.name] == 0:
            issues.append(warning("KPI073", f"strategy '{strategy.name}' has no KPI: nothing measures whether it works",
                                  strategy.value_loc("name")))
        elif counts[strategy.name] > MAX_KPIS_PER_STRATEGY:
            issues.append(warning("KPI075", f"strategy '{strategy.name}' has {counts[strategy.name]} KPIs (more than "
                                            f"{MAX_KPIS_PER_STRATEGY}): keep the few that tell whether it works",
                                  strategy.value_loc("name"), "move the rest to `standards:`"))
        if strategy.ends is not None and strategy.ends < ctx.today:
            issues.append(warning("KPI074", f"strategy '{strategy.name}' ended on {strategy.ends}",
                                  strategy.value_loc("ends"), "extend `ends`, or retire the strategy and its KPIs"))
    return issues


def reviews_due(project: ProjectDef, ctx: Context) -> list[Issue]:
    return [
        warning("KPI076", f"{kpi_label(kpi)} was due for review on {kpi.review_by}", kpi.value_loc("review_by"),
                "review the definition and move `review_by` forward")
        for kpi in project.kpis if kpi.review_by is not None and kpi.review_by < ctx.today
    ]
