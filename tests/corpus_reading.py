"""Hostile-input corpus: what a reader is shown (SPEC §10, KPI155-157; see corpus.py): a currency that is not an
ISO 4217 code, in kpimetrics.yml or on a KPI, a currency on a KPI whose values are not money, and a target that
misses the headline grain. FAULTS run in test_error_catalog (and test_validation counts them); tests/test_reading.py
shows currencies on a run project.

kpis/broken.yml is helpers_projects.kpi_yaml: its first added key on line 12, the next on 13.
"""
from __future__ import annotations

from corpus import Fault
from helpers_projects import KPIMETRICS_YML, kpi_yaml

BROKEN = "kpis/broken.yml"

FAULTS = [
    Fault("KPI155", {"kpimetrics.yml": KPIMETRICS_YML + "    currency: euro\n"}, "kpimetrics.yml", 8,
          "kpimetrics.yml: currency 'euro' is not an ISO 4217 code"),
    Fault("KPI155", {BROKEN: kpi_yaml(unit="currency", currency="'€'")}, BROKEN, 13,
          "KPI 'broken': currency '€' is not an ISO 4217 code"),
    Fault("KPI156", {BROKEN: kpi_yaml(unit="percent", currency="EUR")}, BROKEN, 13,
          "KPI 'broken' has a currency but its unit is percent: only the values of a `unit: currency` KPI carry a "
          "currency"),
    # the headline grain (the first) has no target while another has one: `status` reads 'no target' (issue 20)
    Fault("KPI157", {BROKEN: kpi_yaml(grain="[month, week]", target="{week: 10}")}, BROKEN, 11,
          "KPI 'broken': its headline grain 'month' (its first, which `status` and the scorecard show) has no target, "
          "while 'week' has one"),
    # the same where `slice_targets` gives a slice a target at the headline grain: the headline is the total's row,
    # which still reads 'no target'
    Fault("KPI157", {BROKEN: kpi_yaml(grain="[month, week]", dimensions="[region]", target="{week: 10}",
                                      slice_targets="{region: {north: {month: 5}}}")}, BROKEN, 11,
          "KPI 'broken': its headline grain 'month' (its first, which `status` and the scorecard show) has no target "
          "for its total, while 'week' has one: it reads 'no target' (the targets `slice_targets` gives region 'north' "
          "at 'month' judge those slices only)"),
]

ELSEWHERE: dict[str, str] = {}
