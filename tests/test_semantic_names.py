"""A dimension of a metric KPI written other than as MetricFlow names it (`entity__dimension`) is KPI175 with
the name to write, also when the dimension is one entity join away: a new user writing `dimensions: [region]`
for the customers' region of an orders metric was told only the form, not `customer__region`."""
from __future__ import annotations

import pytest

from semantic_env import SemanticShop, semantic_shop  # noqa: F401  (the session's build)
from test_semantic import cli, errors_of, line_of, one


@pytest.mark.parametrize("written, meant", [
    ("region", "customer__region"),  # bare: the dimension of the model the orders' customer entity joins
    ("channel", "order__channel"),  # bare: the metric's own model's
    ("customer__regoin", "customer__region"),  # a typo after a joined entity
])
def test_a_dimension_not_named_as_metricflow_names_it_is_kpi175_with_the_name_to_write(
        semantic_shop: SemanticShop, tmp_path, written, meant):
    dbt = one(semantic_shop.copy(tmp_path), f"metric: revenue\ndimensions: [{written}]\ntarget: 1")
    [issue] = errors_of(cli(dbt, "validate"), "KPI175")
    assert (issue["path"], issue["line"]) == ("kpis/kpis.yml", line_of(dbt / "kpis" / "kpis.yml", f"[{written}]"))
    assert f"did you mean '{meant}'?" in issue["message"], issue
