"""Targets, tolerances, risk bands, grains, windows and durations (KPI050-059)."""
from __future__ import annotations

from typing import Any

from .. import dag
from .. import model as m
from ..errors import Issue, Location, error, warning
from ..loader import ProjectDef
from ..units import is_number as _is_number, parse_duration, parse_percent
from .context import Context, kpi_label


def _per_grain(kpi: m.Kpi, key: str) -> list[tuple[str | None, Any]]:
    """(grain or None, value) for a setting given once or per grain (`target`, `tolerance`)."""
    value = getattr(kpi, key)
    if value is None:
        return []
    if isinstance(value, dict):
        return list(value.items())
    return [(None, value)]


def _setting_loc(kpi: m.Kpi, key: str, grain: str | None, value: Any, ctx: Context) -> Location | None:
    """Where one value of a setting was written: its own mapping, its per-grain key, or the setting."""
    if isinstance(value, m.Node) and value.loc is not None:
        return value.loc
    return ctx.mapping_key_loc(kpi, key, grain) if grain else kpi.value_loc(key)


def schedules_in_order(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        for _, form in _per_grain(kpi, "target"):
            if not isinstance(form, m.ScheduleTarget):
                continue
            if not form.schedule:
                issues.append(error("KPI050", f"{kpi_label(kpi)}: target schedule is empty", form.value_loc("schedule")))
            for before, entry in zip(form.schedule, form.schedule[1:]):
                if entry.from_ <= before.from_:
                    word = "repeats the date of" if entry.from_ == before.from_ else "is not after"
                    issues.append(error("KPI050", f"{kpi_label(kpi)}: schedule entry from {entry.from_} {word} the previous "
                                                  f"entry (from {before.from_}); list the entries in date order",
                                        entry.value_loc("from_")))
    return issues


def relative_targets(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        for _, form in _per_grain(kpi, "target"):
            if isinstance(form, m.RelativeTarget):
                issues.extend(_relative_target_issues(kpi, form))
    return issues


def _relative_target_issues(kpi: m.Kpi, target: m.RelativeTarget) -> list[Issue]:
    issues: list[Issue] = []
    base = target.baseline
    by_range = base.from_ is not None and base.to is not None and base.value is None and base.as_of is None
    by_value = base.value is not None and base.as_of is not None and base.from_ is None and base.to is None
    if not (by_range or by_value):
        issues.append(error("KPI052", f"{kpi_label(kpi)}: a baseline needs `from` and `to` (a date range), or `value` and `as_of`",
                            base.loc))
    elif by_range and base.from_ > base.to:
        issues.append(error("KPI052", f"{kpi_label(kpi)}: baseline `from` {base.from_} is after `to` {base.to}", base.value_loc("from_")))
    end = base.to if by_range else base.as_of if by_value else None
    if end is not None and target.by <= end:
        issues.append(error("KPI051", f"{kpi_label(kpi)}: target `by` {target.by} is on or before the end of its baseline ({end})",
                            target.value_loc("by"), "the deadline must come after the baseline period"))
    if not _is_number(target.change) and parse_percent(target.change) is None:
        issues.append(error("KPI053", f"{kpi_label(kpi)}: `change` must be a number (-120) or a percent ('-20%'), "
                                      f"got {target.change!r}", target.value_loc("change")))
    return issues


def tolerances(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        for grain, value in _per_grain(kpi, "tolerance"):
            if not _valid_tolerance(value):
                issues.append(error("KPI054", f"{kpi_label(kpi)}: tolerance must be a non-negative number (0.05) or "
                                              f"percent ('5%'), got {value!r}", _setting_loc(kpi, "tolerance", grain, value, ctx)))
    return issues


def _valid_tolerance(value: Any) -> bool:
    fraction = value if _is_number(value) else parse_percent(value)
    return fraction is not None and fraction >= 0


def risk_bands(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        for key, fits, other in (("at_risk_below", "higher_is_better", "at_risk_above"),
                                 ("at_risk_above", "lower_is_better", "at_risk_below")):
            if getattr(kpi, key) is not None and kpi.direction != fits:
                issues.append(error("KPI055", f"{kpi_label(kpi)} is {kpi.direction}, so `{key}` does not apply",
                                    kpi.key_loc(key), f"use `{other}` (or `tolerance:`)"))
    return issues


def per_grain_settings(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    grains = dag.computed_grains(project.kpis, ctx.default_grain, dag.graph(project.kpis, ctx.dialect))
    for kpi in project.kpis:
        for key in ("target", "tolerance", "at_risk_below", "at_risk_above"):
            value = getattr(kpi, key)
            if not isinstance(value, dict):
                continue
            for grain in value:
                if grain not in grains[kpi.name]:
                    issues.append(warning("KPI056", f"{kpi_label(kpi)}: `{key}` sets grain '{grain}', but the KPI is computed at "
                                                    f"{', '.join(sorted(grains[kpi.name]))} only, so it is never used",
                                          ctx.mapping_key_loc(kpi, key, grain), "add the grain to `grain:` or remove the entry"))
    return issues


def pace_targets(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        if kpi.window is not None and kpi.window.to_date is not None:
            continue
        for grain, form in _per_grain(kpi, "target"):
            if isinstance(form, m.PaceTarget):
                issues.append(error("KPI057", f"{kpi_label(kpi)}: a pace target needs a to-date KPI (`window: {{to_date: year}}`, "
                                              "quarter or month)", _setting_loc(kpi, "target", grain, form, ctx)))
    return issues


def windows(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        window = kpi.window
        if window is None:
            continue
        if (window.periods is None) == (window.to_date is None):
            issues.append(error("KPI058", f"{kpi_label(kpi)}: `window` needs exactly one of `periods` or `to_date`", window.loc))
        elif window.periods is not None and window.periods < 1:
            issues.append(error("KPI058", f"{kpi_label(kpi)}: window `periods` must be 1 or more, got {window.periods}",
                                window.value_loc("periods")))
    return issues


def durations(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    defaults = project.config.defaults
    lookback = defaults.lookback
    valid = (_is_number(lookback) and lookback >= 0 and lookback == int(lookback)) or parse_duration(lookback) is not None
    if not valid:
        where = defaults.value_loc("lookback") or Location(project.config_path)
        issues.append(error("KPI059", f"lookback must be a whole number of periods (0 or more) or a duration such as "
                                      f"'35 days', got {lookback!r}", where))
    if defaults.late_rows is not None and parse_duration(defaults.late_rows) is None:
        where = defaults.value_loc("late_rows") or Location(project.config_path)
        issues.append(error("KPI059", f"late_rows must be a duration such as '1 day' or '12 hours', got "
                                      f"{defaults.late_rows!r}", where))
    for source in project.sources:
        holders = [(f"source '{source.name}'", source.freshness)]
        holders += [(f"table '{source.name}.{t.name}'", t.freshness) for t in source.tables]
        for what, freshness in holders:
            for key in ("warn_after", "error_after"):
                value = getattr(freshness, key) if freshness is not None else None
                if value is not None and parse_duration(value) is None:
                    issues.append(error("KPI059", f"{what}: freshness `{key}` must be a duration such as '2 days' or "
                                                  f"'12 hours', got {value!r}", freshness.value_loc(key)))
    return issues
