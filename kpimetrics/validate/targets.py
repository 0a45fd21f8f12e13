"""Targets, tolerances, risk bands, grains, windows and durations (KPI050-059); targets per slice and from
tables (KPI150-154)."""
from __future__ import annotations

from typing import Any, Iterator

from sqlglot import exp

from .. import dag
from ..combinations import is_combination
from .. import model as m
from ..errors import Issue, Location, error, warning
from ..loader import ProjectDef, suggest
from ..sqlexpr import aggregates, has_window
from ..units import is_number as _is_number, parse_duration, parse_percent
from ..yamlio import LocDict
from .context import Columns, Context, kpi_label
from .models import _columns_in, kpi_columns, model_ref
from .sql import _caret


def _per_grain(kpi: m.Kpi, key: str) -> list[tuple[str | None, Any]]:
    """(grain or None, value) for a setting given once or per grain (`target`, `tolerance`)."""
    value = getattr(kpi, key)
    if value is None:
        return []
    if isinstance(value, dict):
        return list(value.items())
    return [(None, value)]


def _target_forms(kpi: m.Kpi) -> Iterator[tuple[str | None, Any]]:
    """(grain or None, form) of every target form the KPI writes: its `target`, and each slice's of `slice_targets`."""
    yield from _per_grain(kpi, "target")
    if isinstance(kpi.slice_targets, dict):
        for slices in kpi.slice_targets.values():
            for spec in slices.values():
                yield from (spec.items() if isinstance(spec, dict) else [(None, spec)])


def _setting_loc(kpi: m.Kpi, key: str, grain: str | None, value: Any, ctx: Context) -> Location | None:
    """Where one value of a setting was written: its own mapping, its per-grain key, or the setting."""
    if isinstance(value, m.Node) and value.loc is not None:
        return value.loc
    return ctx.mapping_key_loc(kpi, key, grain) if grain else kpi.value_loc(key)


def schedules_in_order(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        for _, form in _target_forms(kpi):
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
        for _, form in _target_forms(kpi):
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
        for dimension, value, spec in _slice_specs(kpi):
            for grain in spec if isinstance(spec, dict) else ():
                if grain not in grains[kpi.name]:
                    issues.append(warning("KPI056", f"{kpi_label(kpi)}: `slice_targets` sets grain '{grain}' for "
                                                    f"{dimension} '{value}', but the KPI is computed at "
                                                    f"{', '.join(sorted(grains[kpi.name]))} only, so it is never used",
                                          _slice_grain_loc(ctx, kpi, dimension, value, grain),
                                          "add the grain to `grain:` or remove the entry"))
    return issues


def _slice_specs(kpi: m.Kpi) -> Iterator[tuple[str, str, Any]]:
    """(dimension, slice value, target spec) of each slice `slice_targets` lists."""
    if isinstance(kpi.slice_targets, dict):
        for dimension, slices in kpi.slice_targets.items():
            for value, spec in slices.items():
                yield dimension, value, spec


def _slice_grain_loc(ctx: Context, kpi: m.Kpi, dimension: str, value: str, grain: str) -> Location | None:
    """Where the per-grain target of one slice names `grain` (its slice's line, if the YAML cannot say)."""
    slices = ctx.yaml.node_at(kpi.value_loc("slice_targets"), LocDict)
    slices = ctx.yaml.node_at(slices.value_loc(dimension), LocDict) if slices is not None and dimension in slices else None
    written = next((k for k in (slices or {}) if m.slice_value_text(k) == value), None)
    spec = ctx.yaml.node_at(slices.value_loc(written), LocDict) if written is not None else None
    if spec is not None and grain in spec:
        return spec.key_loc(grain)
    return slices.key_loc(written) if written is not None else kpi.value_loc("slice_targets")


def pace_targets(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        if kpi.window is not None and kpi.window.to_date is not None:
            continue
        for grain, form in _target_forms(kpi):
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


# --- targets per slice and from tables (SPEC §10) -----------------------------------------------

def _dimensions(project: ProjectDef, ctx: Context) -> dict[str, tuple[str, ...]]:
    """The dimensions each KPI is sliced by: its own, or for a derived KPI those all its inputs have."""
    deps = dag.graph(project.kpis, ctx.dialect)
    by_name = project.kpi_by_name
    out: dict[str, tuple[str, ...]] = {}

    def of(name: str, trail: frozenset[str]) -> tuple[str, ...]:
        if name in out:
            return out[name]
        kpi = by_name.get(name)
        if kpi is None or name in trail:  # an unknown input or a cycle: reported elsewhere (KPI046, KPI047)
            return ()
        form = kpi.computation
        if form is None or form.reads_model or isinstance(form, m.MetricForm):  # a metric KPI: sliced as written
            found = kpi.slice_dimensions
        else:
            common: list[str] | None = None
            for i in deps.get(name, ()):
                theirs = of(i, trail | {name})
                common = list(theirs) if common is None else [d for d in common if d in theirs]
            found = tuple(common or ())
        out[name] = found
        return found

    for kpi in project.kpis:
        of(kpi.name, frozenset())
    return out


def _raw_key_loc(ctx: Context, node: m.Node, name: str, key: str) -> Location | None:
    """Where `key` of the mapping `name` of `node` was written; a key the model read as text (a YAML number or
    date naming a slice) found by its text."""
    raw = ctx.yaml.node_at(node.value_loc(name), LocDict)
    if raw is not None:
        for written in raw:
            if m.slice_value_text(written) == key:
                return raw.key_loc(written)
    return node.key_loc(name)


def _raw_value_loc(ctx: Context, node: m.Node, name: str, key: str) -> Location | None:
    raw = ctx.yaml.node_at(node.value_loc(name), LocDict)
    return raw.value_loc(key) if raw is not None and key in raw else node.value_loc(name)


def slice_target_dimensions(project: ProjectDef, ctx: Context) -> list[Issue]:
    """Each dimension `slice_targets` (or a table target's `dimensions`) names is one the KPI is sliced by (KPI150),
    and a table target is written directly under `target:`, not per grain or per slice (KPI153)."""
    dims: dict[str, tuple[str, ...]] | None = None  # worked out for the first KPI that names a dimension
    issues: list[Issue] = []
    for kpi in project.kpis:
        named: list[tuple[str, Location | None, str]] = []
        if isinstance(kpi.slice_targets, dict):
            named += [(d, _raw_key_loc(ctx, kpi, "slice_targets", d), "slice_targets") for d in kpi.slice_targets]
        if isinstance(kpi.target, m.TableTarget):
            named += [(d, _raw_key_loc(ctx, kpi.target, "dimensions", d), "target.dimensions")
                      for d in kpi.target.dimensions]
        if named:
            dims = dims if dims is not None else _dimensions(project, ctx)
            own = dims.get(kpi.name, ())
        for dimension, where, key in named:
            if dimension in own and is_combination(dimension):  # SPEC §9: a combination's slices share the total's
                issues.append(error("KPI150", f"{kpi_label(kpi)}: `{key}` names the combination of dimensions "
                                              f"'{dimension}': targets per combination slice are not supported", where,
                                    "write `slice_targets: true` to judge every slice, combinations included, "
                                    "against the total's target"))
            elif dimension not in own:
                has = f"its dimensions are {', '.join(own)}" if own else "it has no dimensions"
                issues.append(error("KPI150", f"{kpi_label(kpi)}: `{key}` names dimension '{dimension}', which the KPI "
                                              f"is not sliced by{suggest(dimension, own)}", where,
                                    f"{has}; add it to `dimensions:` or fix the name"))
        per_grain = [f for _, f in _per_grain(kpi, "target")] if isinstance(kpi.target, dict) else []
        for _, form in _target_forms(kpi):  # a table target anywhere but directly under `target:`
            if isinstance(form, m.TableTarget) and form is not kpi.target:
                where = "per grain" if any(form is f for f in per_grain) else "per slice (in `slice_targets`)"
                issues.append(error("KPI153", f"{kpi_label(kpi)}: a table target must be written directly under "
                                              f"`target:`, not {where}", form.loc or kpi.value_loc("target"),
                                    "give it `grain:` for the grain its periods are, and `dimensions:` for the "
                                    "slices its rows give"))
    return issues


def table_targets(project: ProjectDef, ctx: Context) -> list[Issue]:
    """A table target's table resolves as a KPI's `model:` does (KPI151, or the resolver's own code); `period`, `value` and its dimensions'
    columns are columns of it, and so are those its `filter` reads (KPI152); its `filter` is one row-level SQL
    condition (the grammar of a KPI's filter: KPI040, KPI110, KPI111, KPI042, KPI044); its `grain` is one the KPI
    is computed at (KPI154). What its SQL would read of the machine is checked with every snippet (access.py)."""
    wanted = [k for k in project.kpis if isinstance(k.target, m.TableTarget)]
    if not wanted:
        return []
    grains = dag.computed_grains(project.kpis, ctx.default_grain, dag.graph(project.kpis, ctx.dialect))
    issues: list[Issue] = []
    for kpi in wanted:
        target: m.TableTarget = kpi.target
        label = kpi_label(kpi)
        if target.grain is not None and target.grain not in grains.get(kpi.name, ()):
            issues.append(error("KPI154", f"{label}: the target table gives {target.grain} periods, but the KPI is "
                                          f"computed at {', '.join(sorted(grains.get(kpi.name, ())))} only",
                                target.value_loc("grain"), "set `grain:` to one of the KPI's grains, or add the grain "
                                                           "to the KPI's `grain:`"))
        probe = kpi.model_copy(update={"model": target.table})  # the KPI reading its table as its model
        unresolved = _table_issue(project, kpi, target, probe)
        if unresolved is not None:
            issues.append(unresolved)
            columns = Columns(None)
        else:
            columns = kpi_columns(project, ctx, probe)
        issues.extend(_table_snippet_issues(ctx, kpi, target, columns))
    return issues


def _table_issue(project: ProjectDef, kpi: m.Kpi, target: m.TableTarget, probe: m.Kpi) -> Issue | None:
    """Why the table cannot be read, resolved by the resolver of a KPI's `model:` (`probe` is the KPI reading it as
    its model); None when it can. A table that names nothing is ours, KPI151; the resolver's other problems (a dbt
    manifest missing, KPI141, ...) keep their codes."""
    where = target.value_loc("table")
    ref = model_ref(probe)
    if ref is None:
        hint = "write it without {{ }}" if "{{" in target.table else "in flow style quote it: \"source('s', 't')\""
        return error("KPI151", f"{kpi_label(kpi)}: the target `table` must be source('source', 'table') or "
                               f"ref('model'), got {target.table!r}", where, hint)
    problem = ref.resolve(project).problem
    if problem is None or not problem[0]:  # resolved, or said once at dbt's manifest (KPI142)
        return None
    code, message, hint = problem
    return error("KPI151" if code in ("KPI031", "KPI032") else code,
                 f"{kpi_label(kpi)}: the target `table` {target.table}: {message}", where, hint)


def _table_snippet_issues(ctx: Context, kpi: m.Kpi, target: m.TableTarget, columns: Columns) -> list[Issue]:
    issues: list[Issue] = []
    label = kpi_label(kpi)
    for snippet in target.expressions():
        where = (_raw_value_loc(ctx, target, "dimensions", snippet.path.rpartition(".")[2])
                 if snippet.key == "dimensions" else ctx.loc(snippet))
        tree, problem = ctx.tree(snippet)
        if problem is not None:
            issues.append(error(problem.code, f"{label}: `{snippet.label}`: {problem.message}", where,
                                _caret(snippet.text, problem.offset)))
            continue
        if snippet.role == "filter":
            if has_window(tree):
                issues.append(error("KPI044", f"{label}: `{snippet.label}` cannot use window functions (OVER ...)", where))
                continue
            if aggregates(tree):
                issues.append(error("KPI042", f"{label}: `{snippet.label}` uses an aggregate: a filter keeps or drops "
                                              "single rows of the target table, so it cannot aggregate", where))
                continue
        elif not isinstance(tree, exp.Column):
            issues.append(error("KPI152", f"{label}: `{snippet.label}` must name a column of {target.table}, got "
                                          f"{snippet.text!r}", where,
                                "to compute it, make a model (models/*.sql) that selects it and point `table:` at it"))
            continue
        if columns.names is None:
            continue  # columns not declared: nothing to check against (as for a KPI's model)
        for name in _columns_in(tree):
            if name.lower() not in columns.names:
                issues.append(error("KPI152", f"{label}: column '{name}' in `{snippet.label}` is not a column of "
                                              f"{target.table}{suggest(name, columns.declared)}", where,
                                    f"its columns: {', '.join(columns.declared)}"))
    return issues
