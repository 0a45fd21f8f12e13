"""The KPI forms as typed values, and which fields of a KPI its definition_hash covers (SPEC §5).

Every field of `Kpi` (read from pydantic, so a new field is covered without editing this file) is declared in
model.py as changing values or not. Changing a value field in a sample project must change the KPI's
definition_hash; changing any other field must leave it as it was. A new field in neither declaration, or without
a sample change below, fails here.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from kpimetrics import Project
from kpimetrics import model as m
from kpimetrics.planner import HASHED_FIELDS
from corpus_semantic import METRICS, semantic_manifest
from dbt_manifest import DBT_PROJECT_YML

TODAY = dt.date(2026, 3, 15)

FILES = {
    # a dbt project with a semantic layer in dbt/, for the `metric` form (corpus_semantic's hand-written one)
    "kpimetrics.yml": "name: forms\nprofile: forms\ndialect: duckdb\ndefaults: {grain: month}\ndbt: {project_dir: dbt}\n",
    "dbt/dbt_project.yml": DBT_PROJECT_YML,
    "dbt/target/semantic_manifest.json": semantic_manifest(*METRICS),
    "strategy.yml": """\
mission: Sell more
priorities:
  - name: growth
    owner: ceo@shop.example
    strategies:
      - {name: grow_sales, owner: vp@shop.example}
      - {name: keep_customers, owner: vp@shop.example}
""",
    "sources.yml": """\
sources:
  - name: shop
    tables:
      - name: orders
        columns: [order_id, customer_id, ordered_at, shipped_at, region, amount, discount, status]
      - name: orders_archive
        columns: [order_id, customer_id, ordered_at, shipped_at, region, amount, discount, status]
""",
}

ORDERS = {"model": "source('shop', 'orders')", "time": "ordered_at", "owner": "vp@shop.example",
          "strategy": "grow_sales", "indicator": "leading", "actions": "Review with sales", "target": 100}
KPIS = [
    {"name": "revenue", **ORDERS, "measure": "sum(amount)"},
    {"name": "order_count", **ORDERS, "measure": "count(*)"},
    {"name": "return_rate", **ORDERS, "target": 0.05, "direction": "lower_is_better",
     "ratio": {"numerator": "count(*) filter (where status = 'returned')", "denominator": "count(*)"}},
    {"name": "revenue_growth", "owner": "vp@shop.example", "strategy": "grow_sales", "indicator": "leading",
     "actions": "Review with sales", "target": 0.02, "derived": "revenue / lag(revenue) - 1"},
]

# field -> (the KPI changed, what is written differently); each change keeps the project valid
SAMPLES: dict[str, tuple[str, dict]] = {
    # fields that change values
    "measure": ("revenue", {"measure": "sum(amount - discount)"}),
    "ratio": ("return_rate", {"ratio": {"numerator": "count(*) filter (where status = 'cancelled')",
                                        "denominator": "count(*)"}}),
    "derived": ("revenue_growth", {"derived": "revenue / lag(revenue, 12) - 1"}),
    "model": ("revenue", {"model": "source('shop', 'orders_archive')"}),
    "time": ("revenue", {"time": "shipped_at"}),
    "grain": ("revenue", {"grain": ["month", "week"]}),
    "filter": ("revenue", {"filter": "status <> 'returned'"}),
    "dimensions": ("revenue", {"dimensions": ["region"]}),
    "window": ("revenue", {"window": {"periods": 3}}),
    "fill": ("revenue", {"fill": "zero"}),
    "metric": ("revenue", {"metric": "revenue", "measure": None, "model": None, "time": None}),
    # fields that do not
    "name": ("order_count", {"name": "orders_placed"}),
    "label": ("revenue", {"label": "Revenue"}),
    "description": ("revenue", {"description": "Order amounts"}),
    "owner": ("revenue", {"owner": "cfo@shop.example"}),
    "strategy": ("revenue", {"strategy": "keep_customers"}),
    "indicator": ("revenue", {"indicator": "lagging"}),
    "category": ("revenue", {"category": "financial"}),
    "unit": ("revenue", {"unit": "currency"}),
    "currency": ("revenue", {"currency": "USD"}),
    "direction": ("revenue", {"direction": "lower_is_better"}),
    "target": ("revenue", {"target": {"schedule": [{"from": "2026-01-01", "value": 200}]}}),
    "tolerance": ("revenue", {"tolerance": "5%"}),
    "at_risk_below": ("revenue", {"at_risk_below": 90}),
    "at_risk_above": ("return_rate", {"at_risk_above": 0.07}),
    "slice_targets": ("revenue", {"slice_targets": True}),
    "actions": ("revenue", {"actions": ["Call the top ten customers"]}),
    "drives": ("order_count", {"drives": ["revenue"]}),
    "tags": ("revenue", {"tags": ["board"]}),
    "review_by": ("revenue", {"review_by": "2030-01-31"}),
    "check_ins": ("revenue", {"check_ins": [{"date": "2026-03-02", "note": "February was short"}]}),
    "forecast": ("revenue", {"forecast": {"periods": 12}}),
}

# The hashes of the sample project as the first release computed them: a change to how a hash is computed would
# recompute every KPI of every user's warehouse.
FIRST_RELEASE_HASHES = {
    "revenue": "437d480ce27aafb9",
    "order_count": "5d36c55a9841c69e",
    "return_rate": "db5d0404049fd566",
    "revenue_growth": "a9ac70875baa8207",
}


def hashes(root: Path, kpis: list[dict]) -> dict[str, str]:
    for rel, text in {**FILES, "kpis/kpis.yml": yaml.safe_dump({"kpis": kpis}, sort_keys=False)}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    plan = Project.load(root).plan(today=TODAY)
    return {name: pl.definition_hash for name, pl in plan.kpis.items()}


def test_every_kpi_field_is_declared_as_changing_values_or_not():
    fields = set(m.Kpi.model_fields)
    both = m.VALUE_FIELDS & m.NO_VALUE_FIELDS
    assert not both, f"declared both as changing values and not: {sorted(both)}"
    missing = fields - m.VALUE_FIELDS - m.NO_VALUE_FIELDS
    assert not missing, (f"Kpi fields {sorted(missing)} are in neither model.VALUE_FIELDS nor model.NO_VALUE_FIELDS: "
                         "say whether they change a KPI's values (and so its definition_hash)")
    assert not (m.VALUE_FIELDS | m.NO_VALUE_FIELDS) - fields, "a declared field that Kpi does not have"


def test_every_value_field_enters_the_hash_as_a_form_or_a_hashed_field():
    assert set(HASHED_FIELDS) == m.VALUE_FIELDS - m.FORM_KEYS
    assert m.FORM_KEYS <= m.VALUE_FIELDS


def test_the_sample_project_keeps_its_first_release_hashes(tmp_path):
    assert hashes(tmp_path, KPIS) == FIRST_RELEASE_HASHES


@pytest.mark.parametrize("name", sorted(m.Kpi.model_fields))
def test_a_field_changes_the_hash_exactly_when_it_changes_values(tmp_path, name):
    assert name in SAMPLES, f"give Kpi field '{name}' a sample change in SAMPLES"
    kpi, change = SAMPLES[name]
    assert name in change
    before = hashes(tmp_path / "before", KPIS)[kpi]
    after = hashes(tmp_path / "after", [{**k, **change} if k["name"] == kpi else k for k in KPIS])[change.get("name", kpi)]
    if name in m.VALUE_FIELDS:
        assert after != before, f"changing `{name}` leaves {kpi}'s definition_hash as it was"
    else:
        assert after == before, f"changing `{name}` changes {kpi}'s definition_hash"


def test_each_form_knows_its_expressions():
    measure = m.Kpi(name="a", measure="sum(x)", filter="y > 1", time="t", dimensions=["r", "c"])
    ratio = m.Kpi(name="b", ratio={"numerator": "count(*)", "denominator": "count(x)"})
    derived = m.Kpi(name="c", derived="a / lag(a) - 1")

    def described(kpi):
        return [(e.role, e.kind, e.label, e.text) for e in kpi.expressions()]

    assert isinstance(measure.computation, m.MeasureForm) and measure.form == "measure"
    assert described(measure) == [
        ("measure", "aggregate", "measure", "sum(x)"), ("filter", "rows", "filter", "y > 1"),
        ("time", "rows", "time", "t"), ("dimension", "rows", "dimension", "r"), ("dimension", "rows", "dimension", "c"),
    ]
    assert isinstance(ratio.computation, m.RatioForm) and ratio.form == "ratio"
    assert described(ratio) == [("numerator", "aggregate", "ratio.numerator", "count(*)"),
                                ("denominator", "aggregate", "ratio.denominator", "count(x)")]
    assert isinstance(derived.computation, m.DerivedForm) and derived.form == "derived"
    assert described(derived) == [("derived", "kpis", "derived", "a / lag(a) - 1")]
    assert [f.reads_model for f in (measure.computation, ratio.computation, derived.computation)] == [True, True, False]


def test_forms_are_fields_of_kpi_and_a_copy_makes_its_own_form():
    assert all(f.key in m.Kpi.model_fields for f in m.FORMS)
    kpi = m.Kpi(name="a", measure="sum(x)")
    assert kpi.computation.key == "measure"
    copy = kpi.model_copy(update={"measure": None, "derived": "b + 1"})
    assert copy.form == "derived" and copy.computation.kpi is copy
    assert m.Kpi(name="none").computation is None and m.Kpi(name="none").form == "measure"
