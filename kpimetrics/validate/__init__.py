"""Cross-object rules: the checks that need the whole project (SPEC §3).

The loader has already checked each YAML entity's shape; here every rule is a
small function `(ProjectDef, Context) -> list[Issue]` listed in `RULES`, so all
problems are reported at once and a new rule is one function and one line.
Each issue points at the YAML line of the offending key or value.
Codes are listed, with their meaning and fix, in `codes.py`.

The rules live by concept, in code order: `names` (KPI010-029), `models`
(KPI030-039), `sql` (KPI040-049), `targets` (KPI050-059), `warnings`
(KPI070-079), `access` (KPI120-129, given the profile's `allowed_paths`); `context` holds what
several of them need, computed once.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

from ..collector import long_lived
from ..errors import Issue
from ..loader import ProjectDef
from .access import Allowed, AllowedPaths, machine_access
from .combinations import combinations_well_formed
from .context import Context, YamlIndex, known_dialect
from .metrics import metric_kpis
from .models import columns_exist, model_references, model_sql
from .reading import currencies, headline_targets
from .names import duplicate_definitions, kpi_form, kpi_names, owner_links, required_fields, strategy_links
from .sql import derived_grammar, derived_references, drives_known, filters_row_level, measures_aggregate, sql_parses
from .targets import (
    durations, pace_targets, parse_duration, per_grain_settings, relative_targets, risk_bands, schedules_in_order,
    slice_target_dimensions, table_targets, tolerances, windows,
)
from .warnings import actions_and_indicator, driven_lagging, reviews_due, strategy_health

__all__ = ["RULES", "AllowedPaths", "Rule", "parse_duration", "validate"]

Rule = Callable[[ProjectDef, Context], list[Issue]]


def notify_rules(project: ProjectDef, ctx: Context) -> list[Issue]:
    """kpimetrics.yml's notify: block (KPI160-167, kpimetrics/notify/check.py), whose module (and the templating it
    renders channels with) is imported only for a project that has the block: not on every run's path."""
    if project.config.notify is None:
        return []
    from ..notify.check import notify_rules as rules

    return rules(project, ctx)


RULES: tuple[Rule, ...] = (
    kpi_names,
    duplicate_definitions,
    required_fields,
    strategy_links,
    owner_links,
    kpi_form,
    metric_kpis,  # KPIs over dbt's semantic layer (KPI170-176)
    model_references,
    model_sql,
    columns_exist,
    combinations_well_formed,  # combinations of dimensions (KPI038, KPI039; their columns: KPI037)
    sql_parses,
    measures_aggregate,
    filters_row_level,
    derived_references,
    derived_grammar,
    drives_known,
    schedules_in_order,
    relative_targets,
    tolerances,
    risk_bands,
    per_grain_settings,
    pace_targets,
    slice_target_dimensions,
    table_targets,
    windows,
    durations,
    driven_lagging,
    actions_and_indicator,
    strategy_health,
    reviews_due,
    currencies,  # what a reader is shown: currencies (KPI155-156)
    headline_targets,  # and a target at the headline grain (KPI157)
    notify_rules,  # kpimetrics.yml's notify: block (KPI160-167)
)


@long_lived()
def validate(project: ProjectDef, *, today: dt.date, allowed_paths: Allowed = None) -> list[Issue]:
    """Every cross-object problem of a loaded project, in rule order; then what reads the machine, outside the
    profile's `allowed_paths` (`access`, KPI120-129)."""
    ctx = Context(project, today, known_dialect(project.config.dialect), YamlIndex(project.root))
    issues: list[Issue] = []
    for rule in RULES:
        issues.extend(rule(project, ctx))
    issues.extend(machine_access(project, ctx, allowed_paths))
    return issues
