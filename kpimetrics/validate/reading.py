"""What a reader is shown (SPEC §10 "Readable by the people accountable", KPI155-157): the currency of currency values,
and a target at the headline grain.

A `currency` (in kpimetrics.yml for the project, or on a KPI) is an ISO 4217 code, three upper-case letters, shown
after every value of a `unit: currency` KPI (display.format_value); a KPI of another unit shows none.
"""
from __future__ import annotations

import re

from ..errors import Issue, Location, error, warning
from ..loader import ProjectDef
from .context import Context, kpi_label

ISO_4217 = re.compile(r"[A-Z]{3}")


def _bad_currency(code: str, whose: str, where: Location | None) -> Issue | None:
    if ISO_4217.fullmatch(code):
        return None
    hint = (f"write it in upper case: `currency: {code.upper()}`" if ISO_4217.fullmatch(code.upper())
            else "write the currency's ISO 4217 code: three upper-case letters, such as EUR, USD or GBP")
    return error("KPI155", f"{whose}: currency '{code}' is not an ISO 4217 code", where, hint)


def currencies(project: ProjectDef, ctx: Context) -> list[Issue]:
    config = project.config
    found = []
    if config.currency is not None:
        found.append(_bad_currency(config.currency, "kpimetrics.yml",
                                   config.value_loc("currency") or Location(project.config_path, 1, 1)))
    for kpi in project.kpis:
        if kpi.currency is None:
            continue
        found.append(_bad_currency(kpi.currency, kpi_label(kpi), kpi.value_loc("currency")))
        if kpi.unit != "currency":
            found.append(warning(
                "KPI156", f"{kpi_label(kpi)} has a currency but its unit is {kpi.unit or 'not set'}: only the values of "
                          "a `unit: currency` KPI carry a currency, so it is never shown", kpi.key_loc("currency"),
                "set `unit: currency` if its values are amounts of money; else remove `currency`"))
    return [i for i in found if i is not None]


def headline_targets(project: ProjectDef, ctx: Context) -> list[Issue]:
    """KPI157: a KPI whose first grain, the headline `status` and the scorecard show, has no target while another
    of its grains has one: it reads 'no target' where its author set one (issue 20, the README's own example).
    The headline is the total's row: targets that `slice_targets` gives its slices at that grain judge the slices
    only, so the headline still reads 'no target', and the warning says so."""
    from ..model import TableTarget
    from ..targets import first_grain, form_for_grain, slice_target_forms

    found = []
    for kpi in project.kpis:
        target = kpi.target
        if target is None:
            continue
        headline = first_grain(kpi, ctx.default_grain)
        grains = kpi.declared_grains or (headline,)
        if isinstance(target, TableTarget):  # a table gives targets at its own grain only (the first by default)
            others = [target.grain] if target.grain not in (None, headline) and target.grain in grains else []
        elif isinstance(target, dict) and form_for_grain(kpi, headline) is None:
            others = [g for g in grains if g != headline and target.get(g) is not None]
        else:
            continue
        if not others:
            continue
        rest = ", ".join(g for g in grains if g != others[0])
        slices = [f"{dimension} '{value}'" for dimension, value, _ in slice_target_forms(kpi, headline)]
        judged = "" if not slices else (
            f" (the targets `slice_targets` gives {', '.join(slices[:3])}{', ...' if len(slices) > 3 else ''} at "
            f"'{headline}' judge those slices only)")
        found.append(warning(
            "KPI157", f"{kpi_label(kpi)}: its headline grain '{headline}' (its first, which `status` and the scorecard "
                      f"show) has no target{' for its total' if slices else ''}, while '{others[0]}' has one: it "
                      f"reads 'no target'{judged}",
            kpi.value_loc("target") or kpi.loc,
            f"list '{others[0]}' first (`grain: [{others[0]}, {rest}]`), or add a target for '{headline}'"
            + (" to `target`" if slices else "")))
    return found
