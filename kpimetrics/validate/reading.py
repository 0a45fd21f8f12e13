"""What a reader is shown (SPEC §10 "Readable by the people accountable", KPI155-156): the currency of currency values.

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
