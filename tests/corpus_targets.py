"""Hostile-input corpus: targets per slice and from tables (SPEC §10, KPI150-154; see corpus.py). FAULTS run in
test_error_catalog; ELSEWHERE: code -> where it is tested. tests/test_slice_targets.py has more cases of each
code (a table target's filter, dimensions, a ref() to no model) on a project with a budget table.

Each fault is kpis/broken.yml (helpers_projects.kpi_yaml: its `target` on line 11, its first added key on 12)
reading the valid project's source('shop', 'orders'), whose columns are declared.
"""
from __future__ import annotations

from corpus import Fault
from helpers_projects import kpi_yaml

BROKEN = "kpis/broken.yml"
TABLE = "\"source('shop', 'orders')\""


def with_target(target: str) -> dict[str, str]:
    return {BROKEN: kpi_yaml(target=target)}


FAULTS = [
    Fault("KPI150", {BROKEN: kpi_yaml(dimensions="[region]", slice_targets="regoin:\n  north: 5")}, BROKEN, 14,
          "`slice_targets` names dimension 'regoin', which the KPI is not sliced by; did you mean 'region'?"),
    # a mapping keyed by a combination of dimensions (SPEC §9): not supported, `slice_targets: true` is
    Fault("KPI150", {BROKEN: kpi_yaml(dimensions="[region, [region, channel]]",
                                      slice_targets="'region × channel':\n  'north · web': 5")}, BROKEN, 14,
          "`slice_targets` names the combination of dimensions 'region × channel': targets per combination slice "
          "are not supported"),
    Fault("KPI151", with_target("{table: orders, period: ordered_at, value: amount}"), BROKEN, 11,
          "the target `table` must be source('source', 'table') or ref('model'), got 'orders'"),
    Fault("KPI152", with_target(f"{{table: {TABLE}, period: ordered_at, value: amonut}}"), BROKEN, 11,
          "column 'amonut' in `target.value` is not a column of source('shop', 'orders'); did you mean 'amount'?"),
    Fault("KPI153", with_target(f"{{month: {{table: {TABLE}, period: ordered_at, value: amount}}}}"), BROKEN, 11,
          "a table target must be written directly under `target:`, not per grain"),
    Fault("KPI154", with_target(f"{{table: {TABLE}, period: ordered_at, value: amount, grain: week}}"), BROKEN, 11,
          "the target table gives week periods, but the KPI is computed at month only"),
]

ELSEWHERE: dict[str, str] = {}
